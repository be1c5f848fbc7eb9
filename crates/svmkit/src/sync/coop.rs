//! The shuttle backend's lock and condition variable, written on shuttle's engine
//! directly: a task blocks and is made runnable again through the engine's task
//! states, and each lock operation is one scheduling point.
//!
//! # Why not shuttle's own `Mutex` and `Condvar`
//!
//! Shuttle runs every task of an execution as a coroutine on one OS thread, so the
//! code between two scheduling points runs alone: a lock needs no atomic protocol of
//! its own, only a flag, a list of sleepers and the engine's `block`/`unblock`.
//! Shuttle's `Mutex` is a semaphore with permits, vector clocks and an
//! async-`Acquire` future polled by `block_on`; its `Condvar::wait` releases and
//! re-takes that semaphore with a scheduling point each. The facade's composite locks
//! ([`WaitQueue`](super::WaitQueue), [`MmapLock`](super::MmapLock)) take such an inner
//! mutex for every operation, so one PTL or folio lock and unlock cost four of
//! shuttle's scheduling points (inner lock and inner release, twice) where the model
//! has two operations. Here each operation is one: [`CoopLock::lock`] and
//! [`CoopLock::unlock`] each switch once, before they act, as shuttle puts a
//! scheduling point before every visible operation. So the interleavings the model's
//! lock operations allow are the same; what is gone are the points *inside* one
//! composite operation, where no other task could observe anything different (its
//! state is only touched under that inner lock).
//!
//! Deadlocks are still shuttle's to find: a task that blocks here is `Blocked` in the
//! engine, and when no task is runnable shuttle reports the deadlock with its usual
//! account.

use std::sync::TryLockError;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use shuttle_engine::runtime::execution::ExecutionState;
use shuttle_engine::runtime::task::{Task, TaskId};
use shuttle_engine::runtime::thread::continuation;

use super::mode;

/// Blocks `t` in the engine, counting it among the facade's blocked tasks if it was
/// runnable (see [`mode::pass_lone_point`]).
fn block(t: &mut Task) {
    if t.runnable() {
        mode::task_blocked();
    }
    t.block(false);
}

/// Makes `t` runnable, uncounting it if it was blocked.
fn unblock(t: &mut Task) {
    if t.blocked() {
        mode::task_unblocked();
    }
    t.unblock();
}

/// The scheduling point before a lock operation, passed over where no other task is
/// runnable ([`mode::pass_lone_point`]).
#[inline]
fn switch() {
    if !mode::pass_lone_point() {
        continuation::switch();
    }
}

/// [`switch`], except where an abandoned execution is torn down.
#[inline]
fn switch_if_not_stopping() {
    if !mode::pass_lone_point() {
        continuation::switch_if_not_stopping();
    }
}

/// The switch after the running task blocked itself: never passed over.
#[inline]
fn sleep() {
    continuation::switch();
}

/// A list of task ids with its length readable without taking its lock: most lock
/// releases and takes find nobody waiting, and the length's plain load spares them
/// the lock's two atomic read-modify-writes (perf: those were most of a release).
#[derive(Default)]
struct TaskList {
    ids: std::sync::Mutex<Vec<TaskId>>,
    len: AtomicUsize,
}

impl TaskList {
    /// Whether the list is empty (one load: the tasks share one OS thread, and the
    /// length changes only under the lock).
    #[inline]
    fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    /// Runs `f` on the list under its lock and records its new length.
    fn with<R>(&self, f: impl FnOnce(&mut Vec<TaskId>) -> R) -> R {
        // Never contended: the tasks share one OS thread and never switch while holding it.
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut ids);
        self.len.store(ids.len(), Ordering::Relaxed);
        r
    }
}

/// Tasks blocked until something they wait for changes.
#[derive(Default)]
struct Sleepers(TaskList);

impl Sleepers {
    /// Marks the current task blocked on this list; it stops at its next scheduling
    /// point and runs again once woken.
    fn block_current(&self) {
        let me = ExecutionState::with(|s| {
            let t = s.current_mut();
            block(t);
            t.id()
        });
        self.0.with(|l| l.push(me));
    }

    /// Makes every sleeper runnable (each re-checks what it waits for).
    fn wake_all(&self) {
        if self.0.is_empty() {
            return;
        }
        let woken = self.0.with(std::mem::take);
        Self::unblock(&woken);
    }

    /// Makes the longest sleeper runnable.
    fn wake_one(&self) {
        if self.0.is_empty() {
            return;
        }
        let woken = self.0.with(|l| l.remove(0));
        Self::unblock(&[woken]);
    }

    fn unblock(ids: &[TaskId]) {
        // An abandoned execution (stopped at a failure, being torn down) has no
        // scheduling left to do, and its sleepers may be finished already.
        if ExecutionState::should_stop() {
            return;
        }
        unblock_all(ids);
    }
}

/// Makes every unfinished task of `ids` runnable.
fn unblock_all(ids: &[TaskId]) {
    ExecutionState::with(|s| {
        for &id in ids {
            if let Some(t) = s.try_get_mut(id)
                && !t.finished()
            {
                unblock(t);
            }
        }
    });
}

/// A lock word with its waiters: the scheduling point, the blocking and the deadlock
/// detection of a mutex, without data (the facade keeps data in a std mutex).
///
/// As shuttle's own mutex does, a release makes every waiter runnable and a take
/// blocks again the waiters that have not run since: a woken waiter that finds the
/// lock taken would only block again, so it must not count as runnable (it would add
/// schedules that differ in nothing but that futile step).
#[derive(Default)]
pub(crate) struct CoopLock {
    held: AtomicBool,
    waiters: TaskList,
}

impl CoopLock {
    /// A free lock.
    pub(crate) fn new() -> Self {
        CoopLock::default()
    }

    /// Takes the lock, sleeping while another task holds it. One scheduling point,
    /// before the attempt, except when the attempt will block: then the sleep is the
    /// only one (shuttle's "double-yield" rule, `continuation::switch`: blocking
    /// commutes with every other operation on the lock, so a switch before it adds
    /// only schedules equivalent to others).
    pub(crate) fn lock(&self) {
        if !self.held.load(Ordering::Relaxed) {
            switch();
        }
        self.acquire_after_switch();
    }

    /// Sets the lock word, returning whether it was set already. A load and a store,
    /// not a swap: the tasks share one OS thread and none runs between the two, and a
    /// read-modify-write costs several times a plain access.
    #[inline]
    fn test_and_set(&self) -> bool {
        let was = self.held.load(Ordering::Acquire);
        if !was {
            self.held.store(true, Ordering::Relaxed);
        }
        was
    }

    /// The attempt and the sleeps of [`lock`](Self::lock), after its scheduling point.
    fn acquire_after_switch(&self) {
        while self.test_and_set() {
            if ExecutionState::should_stop() {
                // Teardown of an abandoned execution: its destructors take locks as if
                // they were free (shuttle's own mutex does the same), since the tasks
                // that hold them will never run again.
                return;
            }
            let me = ExecutionState::with(|s| {
                let t = s.current_mut();
                block(t);
                t.id()
            });
            self.waiters.with(|w| {
                if !w.contains(&me) {
                    w.push(me);
                }
            });
            sleep();
        }
        self.taken();
    }

    /// The current task took the lock: it waits no more, and the waiters a release
    /// woke sleep again.
    fn taken(&self) {
        if self.waiters.is_empty() || ExecutionState::should_stop() {
            return;
        }
        self.waiters.with(|w| {
            ExecutionState::with(|s| {
                let me = s.current().id();
                w.retain(|&id| id != me);
                for &id in w.iter() {
                    if let Some(t) = s.try_get_mut(id)
                        && !t.finished()
                    {
                        block(t);
                    }
                }
            })
        });
    }

    /// Takes the lock if it is free. One scheduling point, before the attempt.
    pub(crate) fn try_lock(&self) -> bool {
        switch();
        let got = !self.test_and_set();
        if got {
            self.taken();
        }
        got
    }

    /// Releases the lock and wakes its waiters. One scheduling point, before the
    /// release (none while an abandoned execution is torn down).
    pub(crate) fn unlock(&self) {
        switch_if_not_stopping();
        self.release();
    }

    fn release(&self) {
        self.held.store(false, Ordering::Release);
        if self.waiters.is_empty() || ExecutionState::should_stop() {
            return;
        }
        self.waiters.with(|w| unblock_all(w));
    }
}

/// A mutex on a [`CoopLock`]: the shuttle backend's `Raw::Mutex`.
pub(crate) struct CoopMutex<T> {
    lock: CoopLock,
    data: std::sync::Mutex<T>,
}

/// A held [`CoopMutex`].
pub(crate) struct CoopGuard<'a, T> {
    // Released before the lock word, so the next holder finds the data lock free.
    data: Option<std::sync::MutexGuard<'a, T>>,
    mutex: &'a CoopMutex<T>,
}

impl<T> CoopMutex<T> {
    pub(crate) fn new(value: T) -> Self {
        CoopMutex {
            lock: CoopLock::new(),
            data: std::sync::Mutex::new(value),
        }
    }

    pub(crate) fn lock(&self) -> CoopGuard<'_, T> {
        self.lock.lock();
        self.guard()
    }

    fn guard(&self) -> CoopGuard<'_, T> {
        CoopGuard {
            data: Some(data_behind_lock(&self.data)),
            mutex: self,
        }
    }
}

/// The data lock behind a held lock word: nobody else can hold it, except in an
/// abandoned execution's teardown, where a task that will never run again may.
pub(crate) fn data_behind_lock<T>(data: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match data.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => {
            if ExecutionState::should_stop() {
                // Only a destructor of the teardown gets here; blocking the OS thread
                // would hang it, and the holder never runs again.
                panic!("svmkit::sync: a lock held by an abandoned task taken in teardown");
            }
            panic!(
                "svmkit::sync: a Mutex taken while its task was alone in the execution was \
                 still held when another task took it; release such locks before spawning"
            )
        }
    }
}

impl<T> std::ops::Deref for CoopGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data.as_ref().expect("a live guard holds its data")
    }
}

impl<T> std::ops::DerefMut for CoopGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.data.as_mut().expect("a live guard holds its data")
    }
}

impl<T> Drop for CoopGuard<'_, T> {
    fn drop(&mut self) {
        if self.data.take().is_some() {
            self.mutex.lock.unlock();
        }
    }
}

/// A condition variable for [`CoopMutex`] and the facade's gate.
#[derive(Default)]
pub(crate) struct CoopCondvar {
    sleepers: Sleepers,
}

impl CoopCondvar {
    pub(crate) fn new() -> Self {
        CoopCondvar::default()
    }

    /// Releases `lock`, sleeps until notified and takes `lock` again: one scheduling
    /// point (the sleep), after which the task re-takes the lock, sleeping again while
    /// another holds it. The release and the sleep are one step, so no notification
    /// falls between them.
    pub(crate) fn wait_on(&self, lock: &CoopLock) {
        self.sleepers.block_current();
        lock.release();
        sleep();
        lock.acquire_after_switch();
    }

    /// [`wait_on`](Self::wait_on) for a held [`CoopMutex`].
    pub(crate) fn wait<'a, T>(&self, mut guard: CoopGuard<'a, T>) -> CoopGuard<'a, T> {
        let mutex = guard.mutex;
        drop(guard.data.take());
        drop(guard);
        self.wait_on(&mutex.lock);
        mutex.guard()
    }

    pub(crate) fn notify_all(&self) {
        self.sleepers.wake_all();
    }

    pub(crate) fn notify_one(&self) {
        self.sleepers.wake_one();
    }
}
