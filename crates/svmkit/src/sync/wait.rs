//! Wait queues: Linux's `wait_queue_head_t`, a mutex and a condition variable.
//!
//! The protocol is the kernel's: a waiter evaluates its condition under the queue lock
//! and sleeps atomically with releasing it; a waker changes the state it guards and then
//! calls [`WaitQueue::wake_up_all`], which takes the same lock. So a wake-up cannot fall
//! between a waiter's check and its sleep. State that must change *atomically with* the
//! check (a lock bit handed to exactly one waiter) is changed inside
//! [`WaitQueue::with_lock`].
//!
//! The queue is on std's or shuttle's primitives, as the context that creates it
//! ([`super::in_explorer`]); each operation dispatches once and then runs on that
//! backend's mutex and condition variable directly (see `raw.rs`): every PTL and folio
//! lock goes through here, so the OS-thread path is kept to std's cost.

use std::fmt;

use super::Arc;
use super::mode::Backend;
use super::raw::{Dual, Raw, ShuttleRaw, StdRaw, on_backend};
use crate::error::Errno;
use crate::task::Task;

/// A queue of sleeping threads waiting for a condition.
///
/// Linux: `wait_queue_head_t`.
///
/// Like [`Mutex`](super::Mutex), it belongs to the context that created it: used from
/// the other (inside or outside a schedule exploration), it panics.
#[doc(alias = "wait_queue_head_t")]
pub struct WaitQueue {
    inner: Dual<Queue<StdRaw>, Queue<ShuttleRaw>>,
}

/// The queue on one backend.
struct Queue<B: Raw> {
    /// Guards the sleepers' count; waking with nobody asleep skips the condvar (a
    /// futex syscall on Linux hosts), the common case on every unlock.
    lock: B::Mutex<usize>,
    cond: B::Condvar,
}

impl<B: Raw> Queue<B> {
    fn new() -> Self {
        Queue {
            lock: B::mutex(0),
            cond: B::condvar(),
        }
    }

    #[inline]
    fn wait_event(&self, mut condition: impl FnMut() -> bool) {
        let mut guard = B::lock(&self.lock);
        while !condition() {
            *guard += 1;
            guard = B::wait(&self.cond, guard);
            *guard -= 1;
        }
    }

    /// Returns, besides the outcome, whether `publish` ran: it runs once, under the
    /// queue lock, before the first signal check, and only if the condition was false.
    fn wait_event_killable(
        &self,
        task: &Task,
        mut condition: impl FnMut() -> bool,
        publish: impl FnOnce(),
    ) -> (Result<(), Errno>, bool) {
        let mut guard = B::lock(&self.lock);
        let mut publish = Some(publish);
        let r = loop {
            if condition() {
                break Ok(());
            }
            if let Some(publish) = publish.take() {
                publish();
            }
            if task.fatal_signal_pending() {
                break Err(Errno::EINTR);
            }
            *guard += 1;
            guard = B::wait(&self.cond, guard);
            *guard -= 1;
        };
        (r, publish.is_none())
    }

    #[inline]
    fn with_lock<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = B::lock(&self.lock);
        f()
    }

    fn sleepers(&self) -> usize {
        *B::lock(&self.lock)
    }

    #[inline]
    fn update_and_wake<R>(&self, f: impl FnOnce() -> R) -> R {
        let sleepers = B::lock(&self.lock);
        let r = f();
        if *sleepers > 0 {
            B::notify_all(&self.cond);
        }
        r
    }
}

impl WaitQueue {
    /// An empty queue.
    ///
    /// Linux: `init_waitqueue_head()`.
    #[doc(alias = "init_waitqueue_head")]
    pub fn new() -> Self {
        WaitQueue {
            inner: Dual::new(Backend::current(), Queue::new, Queue::new),
        }
    }

    /// Sleeps until `condition` returns true. The condition runs under the queue lock,
    /// so it may also *claim* what it tests (a lock bit): exactly one waiter wins.
    ///
    /// Linux: `wait_event()`.
    #[inline]
    pub fn wait_event(&self, condition: impl FnMut() -> bool) {
        on_backend!(self.inner, "WaitQueue", |q| q.wait_event(condition))
    }

    /// Like [`wait_event`](Self::wait_event), but gives up with `EINTR` once `task` has a
    /// fatal signal pending ([`Task::kill`]). As in Linux, a condition that is already
    /// true wins over a pending signal.
    ///
    /// Linux: `wait_event_killable()`.
    pub fn wait_event_killable(
        self: &Arc<Self>,
        task: &Task,
        condition: impl FnMut() -> bool,
    ) -> Result<(), Errno> {
        // Publish where we sleep before looking at the signal, so that a concurrent
        // kill either is seen by our check or finds us here and wakes this queue.
        // Only a wait that may sleep publishes, under the queue lock as Linux adds
        // its entry to the queue: a condition true at once (an uncontended folio
        // lock) costs the queue lock alone.
        let publish = || task.set_sleeping_on(Some(Arc::clone(self)));
        let (result, published) = on_backend!(self.inner, "WaitQueue", |q| q
            .wait_event_killable(task, condition, publish));
        if published {
            task.set_sleeping_on(None);
        }
        result
    }

    /// Runs `f` under the queue lock (without sleeping). Used to claim or release the
    /// state a waiter's condition tests, atomically with respect to its check.
    #[inline]
    pub fn with_lock<R>(&self, f: impl FnOnce() -> R) -> R {
        on_backend!(self.inner, "WaitQueue", |q| q.with_lock(f))
    }

    /// How many threads sleep on the queue now (Linux: `waitqueue_active()`, as a
    /// count).
    pub fn sleepers(&self) -> usize {
        on_backend!(self.inner, "WaitQueue", |q| q.sleepers())
    }

    /// Wakes every sleeper so that each re-evaluates its condition.
    ///
    /// Linux: `wake_up_all()`.
    #[inline]
    pub fn wake_up_all(&self) {
        self.update_and_wake(|| ())
    }

    /// Runs `f` under the queue lock, then wakes every sleeper: the "change the state,
    /// then wake" step in one call (Linux: the clear-bit-then-`wake_up_bit` pattern).
    #[inline]
    pub fn update_and_wake<R>(&self, f: impl FnOnce() -> R) -> R {
        on_backend!(self.inner, "WaitQueue", |q| q.update_and_wake(f))
    }
}

impl Default for WaitQueue {
    fn default() -> Self {
        WaitQueue::new()
    }
}

impl fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitQueue").finish_non_exhaustive()
    }
}
