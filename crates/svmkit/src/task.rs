//! Simulated tasks: who is running an operation, and whether it has been killed.
//!
//! Linux decides whether a killable sleep ends early by asking `fatal_signal_pending
//! (current)`. The model passes the [`Task`] explicitly instead of keeping a hidden
//! "current", so a test can kill exactly the thread it means to.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sync::{Arc, WaitQueue};

/// A simulated thread of a process (Linux: `struct task_struct`), cheap to clone; clones
/// name the same task.
#[derive(Clone)]
pub struct Task {
    inner: Arc<TaskInner>,
}

struct TaskInner {
    name: String,
    killed: AtomicBool,
    /// The queue this task sleeps on in a killable wait, so that [`Task::kill`] can wake it.
    /// Bookkeeping, not a lock of Linux's (there the waiter's entry is on the queue
    /// itself): a std mutex, never held across a scheduling point, so it adds none (the
    /// notifier recorder's log is kept the same way).
    sleeping_on: std::sync::Mutex<Option<Arc<WaitQueue>>>,
}

impl Task {
    /// A new, live task.
    pub fn new(name: impl Into<String>) -> Self {
        Task {
            inner: Arc::new(TaskInner {
                name: name.into(),
                killed: AtomicBool::new(false),
                sleeping_on: std::sync::Mutex::new(None),
            }),
        }
    }

    /// The task's name, for traces.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Sends the task a fatal signal: its current and future killable sleeps end with
    /// `EINTR`.
    ///
    /// Linux: `send_sig(SIGKILL, task, 0)`.
    #[doc(alias = "send_sig")]
    pub fn kill(&self) {
        self.inner.killed.store(true, Ordering::SeqCst);
        let queue = self.sleeping_on().clone();
        if let Some(queue) = queue {
            queue.wake_up_all();
        }
    }

    /// Whether a fatal signal is pending.
    ///
    /// Linux: `fatal_signal_pending()`.
    pub fn fatal_signal_pending(&self) -> bool {
        self.inner.killed.load(Ordering::SeqCst)
    }

    pub(crate) fn set_sleeping_on(&self, queue: Option<Arc<WaitQueue>>) {
        *self.sleeping_on() = queue;
    }

    fn sleeping_on(&self) -> std::sync::MutexGuard<'_, Option<Arc<WaitQueue>>> {
        self.inner
            .sleeping_on
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether two handles name the same task.
    pub fn same_as(&self, other: &Task) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.inner.name)
            .field("killed", &self.fatal_signal_pending())
            .finish()
    }
}
