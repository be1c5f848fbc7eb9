//! Wait queues: Linux's `wait_queue_head_t`, built from the facade's [`Mutex`] and
//! [`Condvar`].
//!
//! The protocol is the kernel's: a waiter evaluates its condition under the queue lock
//! and sleeps atomically with releasing it; a waker changes the state it guards and then
//! calls [`WaitQueue::wake_up_all`], which takes the same lock. So a wake-up cannot fall
//! between a waiter's check and its sleep. State that must change *atomically with* the
//! check (a lock bit handed to exactly one waiter) is changed inside
//! [`WaitQueue::with_lock`].

use std::fmt;

use super::{Arc, Condvar, Mutex};
use crate::error::Errno;
use crate::task::Task;

/// A queue of sleeping threads waiting for a condition.
///
/// Linux: `wait_queue_head_t`.
#[doc(alias = "wait_queue_head_t")]
#[derive(Default)]
pub struct WaitQueue {
    /// Guards the sleepers' count; waking with nobody asleep skips the condvar (a
    /// futex syscall on Linux hosts), the common case on every unlock.
    lock: Mutex<usize>,
    cond: Condvar,
}

impl WaitQueue {
    /// An empty queue.
    ///
    /// Linux: `init_waitqueue_head()`.
    #[doc(alias = "init_waitqueue_head")]
    pub fn new() -> Self {
        WaitQueue {
            lock: Mutex::new(0),
            cond: Condvar::new(),
        }
    }

    /// Sleeps until `condition` returns true. The condition runs under the queue lock,
    /// so it may also *claim* what it tests (a lock bit): exactly one waiter wins.
    ///
    /// Linux: `wait_event()`.
    pub fn wait_event(&self, mut condition: impl FnMut() -> bool) {
        let mut guard = self.lock.lock();
        while !condition() {
            *guard += 1;
            guard = self.cond.wait(guard);
            *guard -= 1;
        }
    }

    /// Like [`wait_event`](Self::wait_event), but gives up with `EINTR` once `task` has a
    /// fatal signal pending ([`Task::kill`]). As in Linux, a condition that is already
    /// true wins over a pending signal.
    ///
    /// Linux: `wait_event_killable()`.
    pub fn wait_event_killable(
        self: &Arc<Self>,
        task: &Task,
        mut condition: impl FnMut() -> bool,
    ) -> Result<(), Errno> {
        // Publish where we sleep before looking at the signal, so that a concurrent
        // kill either is seen by our check or finds us here and wakes this queue.
        task.set_sleeping_on(Some(Arc::clone(self)));
        let result = {
            let mut guard = self.lock.lock();
            loop {
                if condition() {
                    break Ok(());
                }
                if task.fatal_signal_pending() {
                    break Err(Errno::EINTR);
                }
                *guard += 1;
                guard = self.cond.wait(guard);
                *guard -= 1;
            }
        };
        task.set_sleeping_on(None);
        result
    }

    /// Runs `f` under the queue lock (without sleeping). Used to claim or release the
    /// state a waiter's condition tests, atomically with respect to its check.
    pub fn with_lock<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.lock.lock();
        f()
    }

    /// Wakes every sleeper so that each re-evaluates its condition.
    ///
    /// Linux: `wake_up_all()`.
    pub fn wake_up_all(&self) {
        let sleepers = self.lock.lock();
        if *sleepers > 0 {
            self.cond.notify_all();
        }
    }

    /// Runs `f` under the queue lock, then wakes every sleeper: the "change the state,
    /// then wake" step in one call (Linux: the clear-bit-then-`wake_up_bit` pattern).
    pub fn update_and_wake<R>(&self, f: impl FnOnce() -> R) -> R {
        let sleepers = self.lock.lock();
        let r = f();
        if *sleepers > 0 {
            self.cond.notify_all();
        }
        r
    }
}

impl fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitQueue").finish_non_exhaustive()
    }
}
