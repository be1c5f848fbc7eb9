//! Non-poisoning [`Mutex`] and [`Condvar`], on std's or shuttle's primitives as chosen
//! when each is created (see [`super::mode`]).
//!
//! # Representation
//!
//! A [`Mutex`] keeps its data in a `std::sync::Mutex` in both backends. Inside an
//! exploration it also has a boxed cooperative lock word (`coop::CoopLock`), the
//! *gate*: `lock` takes the
//! gate first (the scheduling point, where shuttle blocks, interleaves and detects
//! deadlocks) and then the std mutex, which nothing else can hold at that moment, so
//! that never waits. On OS threads the gate is absent (a null pointer) and the std
//! mutex is all there is.
//!
//! So on OS threads `lock` costs std's lock plus one test (the gate pointer and the
//! thread's execution id, or-ed: both must be zero, which is also the mixed-use
//! check), a guard drop costs std's plus a null test, and the guard dereferences to the
//! std guard with no branch at all. (A guard that is an enum of the two backends'
//! guards measured dearer: every dereference branches.) The composite locks,
//! [`WaitQueue`](super::WaitQueue) and [`MmapLock`](super::MmapLock), do not use this
//! type: they dispatch once per operation and run on a backend's primitives directly.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::TryLockError;

use super::coop::{CoopCondvar, CoopLock, data_behind_lock};
use super::mode::{self, Backend};
use super::raw::{Dual, DualRef, Explored, Raw, StdRaw};

/// A mutual-exclusion lock (Linux: a `mutex` or a `spinlock_t`; the model does not
/// distinguish sleeping from spinning, only who may run).
///
/// Unlike `std::sync::Mutex` it does not poison: a task that panics while holding it
/// leaves the data as it was, which is what a post-mortem invariant check wants to see.
///
/// Its backend is fixed when it is created: shuttle's inside a schedule exploration
/// ([`in_explorer`](super::in_explorer)), std's otherwise. Using it from the other
/// context panics (see the [module docs](super#one-binary-two-backends)).
// `repr(C)` with the gate first: the fast path reads the gate pointer and then the
// std mutex's futex word, so they share a cache line (left to itself, rustc put the
// pointer after the data, 256 bytes on for the buddy allocator's free lists: one more
// line per lock).
#[repr(C)]
pub struct Mutex<T> {
    gate: Option<Box<Explored<CoopLock>>>,
    data: std::sync::Mutex<T>,
}

/// Proof that a [`Mutex`] is held; the lock is released when it drops.
pub struct MutexGuard<'a, T: 'a> {
    // Field order is drop order: the data lock is released before the gate, so the
    // next task through the gate finds the data lock free.
    data: std::sync::MutexGuard<'a, T>,
    gate: Gate<'a, T>,
}

/// The held gate, if any. Its own `Drop` keeps the guard's drop small enough to be
/// inlined on the OS-thread path (a null test), with the release out of line.
/// `None` also for a shuttle mutex taken without its gate by the only task of an
/// execution ([`mode::single_task`]).
struct Gate<'a, T>(Option<&'a Mutex<T>>);

impl<T> Drop for Gate<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if let Some(hold) = self.0.take() {
            release_gate(hold);
        }
    }
}

#[cold]
#[inline(never)]
fn release_gate<T>(held: &Mutex<T>) {
    held.held_gate().unlock();
    mode::released();
}

impl<T> Mutex<T> {
    /// A new unlocked mutex holding `value`, on the backend of the calling context.
    #[inline]
    pub fn new(value: T) -> Self {
        Mutex {
            gate: match Backend::current() {
                Backend::Std => None,
                Backend::Shuttle(exec) => Some(new_gate(exec)),
            },
            data: std::sync::Mutex::new(value),
        }
    }

    /// Consumes the mutex and returns the data (in any context: no lock is taken).
    pub fn into_inner(self) -> T {
        self.data.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until the lock is taken. A scheduling point under shuttle.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if !self.on_os_threads_here() {
            return self.lock_explored();
        }
        MutexGuard {
            data: StdRaw::lock(&self.data),
            gate: Gate(None),
        }
    }

    /// Takes the lock if it is free, without blocking.
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        if !self.on_os_threads_here() {
            return self.try_lock_explored();
        }
        self.try_lock_data()
    }

    /// Reads the data if no one holds the lock at this moment, without taking it: no
    /// scheduling point, in either backend, so an observer (the checker, a trace) can
    /// look without changing the schedules it observes. `None` while the lock is held
    /// (the data may be in the middle of a change).
    pub fn peek<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        match self.data.try_lock() {
            Ok(g) => Some(f(&g)),
            Err(TryLockError::Poisoned(e)) => Some(f(&e.into_inner())),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Whether this is a std mutex used outside any exploration, the fast path: one
    /// test for both conditions (the gate pointer and the thread's execution id are
    /// both zero).
    #[inline(always)]
    fn on_os_threads_here(&self) -> bool {
        let gate = self
            .gate
            .as_deref()
            .map_or(0, |g| g as *const Explored<_> as usize as u64);
        gate | mode::current_execution() == 0
    }

    /// The slow path: a shuttle mutex (or a std one misused inside an exploration).
    #[cold]
    #[inline(never)]
    fn lock_explored(&self) -> MutexGuard<'_, T> {
        let gate = self.gate();
        if mode::single_task() {
            // Alone: nothing to switch to, so no scheduling point (see
            // `mode::single_task`).
            return self.try_lock_data().unwrap_or_else(|| {
                panic!("deadlock: the only task of the execution takes a Mutex it already holds")
            });
        }
        mode::at_scheduling_point();
        gate.lock();
        MutexGuard {
            data: relock_behind_gate(&self.data),
            gate: Gate(Some(self)),
        }
    }

    #[cold]
    #[inline(never)]
    fn try_lock_explored(&self) -> Option<MutexGuard<'_, T>> {
        let gate = self.gate();
        if mode::single_task() {
            return self.try_lock_data();
        }
        mode::at_scheduling_point();
        if !gate.try_lock() {
            return None;
        }
        Some(MutexGuard {
            data: relock_behind_gate(&self.data),
            gate: Gate(Some(self)),
        })
    }

    /// The data lock alone, without a gate: std's try_lock on OS threads, and the only
    /// task's lock inside an execution. There, the data lock is held
    /// exactly when the gate is (a condvar wait releases both), so if it is free the gate
    /// is too, and stays so: a task spawned later takes the gate first (and finds the
    /// data lock held, and says so, if this guard is still alive: see
    /// [`relock_behind_gate`]). `None` if it is held (by this task).
    #[inline]
    fn try_lock_data(&self) -> Option<MutexGuard<'_, T>> {
        let data = match self.data.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(MutexGuard {
            data,
            gate: Gate(None),
        })
    }

    /// The gate of a mutex whose guard holds it (checked when it was taken).
    fn held_gate(&self) -> &CoopLock {
        &self
            .gate
            .as_ref()
            .expect("a guard holds the gate only of a shuttle mutex")
            .prim
    }

    /// The gate, after the mixed-use check (which panics for a std mutex: this is
    /// reached for one only inside an exploration).
    fn gate(&self) -> &CoopLock {
        match &self.gate {
            None => {
                mode::check_std("Mutex");
                unreachable!("a std mutex takes the slow path only inside an exploration")
            }
            Some(gate) => {
                mode::check_shuttle(gate.exec, "Mutex");
                &gate.prim
            }
        }
    }
}

#[cold]
#[inline(never)]
fn new_gate(exec: u64) -> Box<Explored<CoopLock>> {
    Box::new(Explored {
        exec,
        prim: CoopLock::new(),
    })
}

/// The data lock behind a held gate: nobody else can hold it.
fn relock_behind_gate<T>(data: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Behind the gate nobody else holds it, unless a task alone in its execution took
    // it without the gate and still held it when it spawned another (which panics).
    data_behind_lock(data)
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = if self.gate.is_some() {
            "shuttle"
        } else {
            "std"
        };
        f.debug_struct("Mutex")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.data
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.data
    }
}

impl<T: fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A condition variable paired with a [`Mutex`] of the same backend.
///
/// Like [`Mutex`], its backend is fixed when it is created; waiting on it with the
/// guard of a mutex of the other backend panics.
pub struct Condvar {
    inner: Dual<std::sync::Condvar, CoopCondvar>,
}

impl Condvar {
    /// A new condition variable with no waiters, on the backend of the calling context.
    #[inline]
    pub fn new() -> Self {
        Condvar {
            inner: Dual::new(Backend::current(), StdRaw::condvar, CoopCondvar::new),
        }
    }

    /// Atomically releases the guard's lock and sleeps until notified; re-takes the
    /// lock before returning. Wake-ups may be spurious: callers loop on their condition.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        let MutexGuard { data, mut gate } = guard;
        match (self.inner.get("Condvar"), gate.0.take()) {
            (DualRef::Std(c), None) => MutexGuard {
                data: StdRaw::wait(c, data),
                gate,
            },
            (DualRef::Shuttle(c), Some(hold)) => {
                // Behind the gate nobody waits for the data lock: release it, sleep on
                // the gate (released and re-taken atomically with the sleep), then take
                // the data lock again, which is free.
                drop(data);
                c.wait_on(hold.held_gate());
                mode::released();
                let relocked = relock_behind_gate(&hold.data);
                gate.0 = Some(hold);
                MutexGuard {
                    data: relocked,
                    gate,
                }
            }
            (DualRef::Shuttle(_), None) if mode::single_task() => {
                panic!("deadlock: the only task of the execution waits on a condition variable")
            }
            (DualRef::Std(_), Some(_)) => mixed_wait("std", "shuttle"),
            (DualRef::Shuttle(_), None) => mixed_wait("shuttle", "std"),
        }
    }

    /// Wakes one waiter.
    #[inline]
    pub fn notify_one(&self) {
        match self.inner.get("Condvar") {
            DualRef::Std(c) => c.notify_one(),
            DualRef::Shuttle(c) => c.notify_one(),
        }
    }

    /// Wakes every waiter.
    #[inline]
    pub fn notify_all(&self) {
        match self.inner.get("Condvar") {
            DualRef::Std(c) => StdRaw::notify_all(c),
            DualRef::Shuttle(c) => c.notify_all(),
        }
    }
}

#[cold]
#[inline(never)]
fn mixed_wait(condvar: &str, mutex: &str) -> ! {
    panic!(
        "svmkit::sync: Condvar::wait on a {condvar} condition variable with the guard of a \
         {mutex} mutex; a condition variable and its mutex must be created in the same \
         context (both inside or both outside a schedule exploration)"
    );
}

impl Default for Condvar {
    fn default() -> Self {
        Condvar::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}
