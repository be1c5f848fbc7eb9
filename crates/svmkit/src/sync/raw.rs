//! The two backends as types, for the facade's composite locks ([`WaitQueue`],
//! [`MmapLock`]): their algorithm is written once, generic over [`Raw`], and
//! monomorphised for std and for shuttle; a [`Dual`] holds one instance and every
//! public operation dispatches once, at its top, with the mixed-use check. Inside, the
//! code runs on plain std (or shuttle) mutexes, with no per-lock branch.
//!
//! [`WaitQueue`]: super::WaitQueue
//! [`MmapLock`]: super::MmapLock

use std::ops::DerefMut;
use std::sync::TryLockError;

use super::coop::{CoopCondvar, CoopGuard, CoopMutex};
use super::mode::{self, Backend};

/// A backend's mutex, guard and condition variable (non-poisoning use).
pub(crate) trait Raw {
    /// Its mutex.
    type Mutex<T>;
    /// Its mutex guard.
    type Guard<'a, T: 'a>: DerefMut<Target = T>;
    /// Its condition variable.
    type Condvar;
    /// A new mutex.
    fn mutex<T>(value: T) -> Self::Mutex<T>;
    /// A new condition variable.
    fn condvar() -> Self::Condvar;
    /// Takes the lock.
    fn lock<T>(m: &Self::Mutex<T>) -> Self::Guard<'_, T>;
    /// Releases the guard's lock and sleeps until notified.
    fn wait<'a, T>(c: &Self::Condvar, g: Self::Guard<'a, T>) -> Self::Guard<'a, T>;
    /// Wakes every waiter.
    fn notify_all(c: &Self::Condvar);
}

/// std's primitives (OS threads).
#[derive(Debug)]
pub(crate) enum StdRaw {}

/// shuttle's primitives (inside an exploration).
#[derive(Debug)]
pub(crate) enum ShuttleRaw {}

impl Raw for StdRaw {
    type Mutex<T> = std::sync::Mutex<T>;
    type Guard<'a, T: 'a> = std::sync::MutexGuard<'a, T>;
    type Condvar = std::sync::Condvar;

    #[inline]
    fn mutex<T>(value: T) -> Self::Mutex<T> {
        std::sync::Mutex::new(value)
    }

    #[inline]
    fn condvar() -> Self::Condvar {
        std::sync::Condvar::new()
    }

    #[inline]
    fn lock<T>(m: &Self::Mutex<T>) -> Self::Guard<'_, T> {
        match m.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => lock_std_contended(m),
        }
    }

    fn wait<'a, T>(c: &Self::Condvar, g: Self::Guard<'a, T>) -> Self::Guard<'a, T> {
        mode::check_std_blocking("Condvar");
        c.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    fn notify_all(c: &Self::Condvar) {
        c.notify_all();
    }
}

/// The slow path of a std lock: the lock is held by another thread, so this blocks the
/// OS thread, which must not be a shuttle runner's (see [`mode::check_std_blocking`]).
#[cold]
#[inline(never)]
fn lock_std_contended<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mode::check_std_blocking("Mutex");
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Raw for ShuttleRaw {
    type Mutex<T> = CoopMutex<T>;
    type Guard<'a, T: 'a> = CoopGuard<'a, T>;
    type Condvar = CoopCondvar;

    fn mutex<T>(value: T) -> Self::Mutex<T> {
        CoopMutex::new(value)
    }

    fn condvar() -> Self::Condvar {
        CoopCondvar::new()
    }

    fn lock<T>(m: &Self::Mutex<T>) -> Self::Guard<'_, T> {
        mode::at_scheduling_point();
        m.lock()
    }

    fn wait<'a, T>(c: &Self::Condvar, g: Self::Guard<'a, T>) -> Self::Guard<'a, T> {
        c.wait(g)
    }

    fn notify_all(c: &Self::Condvar) {
        c.notify_all();
    }
}

/// A shuttle-backed value and the execution that created it.
pub(crate) struct Explored<P> {
    pub(crate) exec: u64,
    pub(crate) prim: P,
}

/// A lock's state on the backend it was created on: `S` on std, `X` on shuttle.
///
/// Both are inline, so a std [`WaitQueue`](super::WaitQueue) is as large as a shuttle
/// one (a few hundred bytes): boxing the shuttle side made every queue an explored
/// schedule creates an allocation (the wait table alone is 64 queues), which cost the
/// explorer about 3% of its instructions, for no gain on OS threads. A lock whose
/// neighbours matter boxes it itself (`X = Box<...>`, as [`MmapLock`](super::MmapLock)
/// does, to keep its data on the semaphore's cache line). The tag
/// is laid out first (`repr(u8)`), next to the std state, so that the OS-thread path
/// reads one cache line (a niche deep in the shuttle state would be the default).
#[repr(u8)]
pub(crate) enum Dual<S, X> {
    Std(S),
    Shuttle(Explored<X>),
}

/// [`Dual::get`]'s answer.
pub(crate) enum DualRef<'a, S, X> {
    Std(&'a S),
    Shuttle(&'a X),
}

impl<S, X> Dual<S, X> {
    /// Builds the state for `backend`.
    #[inline]
    pub(crate) fn new(
        backend: Backend,
        std: impl FnOnce() -> S,
        shuttle: impl FnOnce() -> X,
    ) -> Self {
        match backend {
            Backend::Std => Dual::Std(std()),
            Backend::Shuttle(exec) => Dual::Shuttle(Explored {
                exec,
                prim: shuttle(),
            }),
        }
    }

    /// The state, after the mixed-use check (`what` names the lock in the panic).
    #[inline(always)]
    pub(crate) fn get(&self, what: &'static str) -> DualRef<'_, S, X> {
        match self {
            Dual::Std(s) => {
                mode::check_std(what);
                DualRef::Std(s)
            }
            Dual::Shuttle(x) => {
                mode::check_shuttle(x.exec, what);
                DualRef::Shuttle(&x.prim)
            }
        }
    }
}

/// The shuttle arm of [`on_backend!`]: the check and the operation, out of line and
/// cold, so that the OS-thread path around it stays small.
#[cold]
#[inline(never)]
pub(crate) fn on_shuttle<X, R>(x: &Explored<X>, what: &'static str, f: impl FnOnce(&X) -> R) -> R {
    mode::check_shuttle(x.exec, what);
    let r = f(&x.prim);
    // A composite lock's operation (a wait queue's, the mmap lock's) may have released
    // what it guards.
    mode::released();
    r
}

/// Runs `$body` on the state of `$dual` with `$c` bound to it, for either backend:
/// one dispatch per public operation, after the mixed-use check (`$what` names the
/// lock in its panic).
macro_rules! on_backend {
    ($dual:expr, $what:expr, |$c:ident| $body:expr) => {
        match &$dual {
            $crate::sync::raw::Dual::Std($c) => {
                $crate::sync::mode::check_std($what);
                $body
            }
            $crate::sync::raw::Dual::Shuttle(x) => {
                $crate::sync::raw::on_shuttle(x, $what, |$c| $body)
            }
        }
    };
}
pub(crate) use on_backend;
