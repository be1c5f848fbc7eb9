//! Non-poisoning [`Mutex`] and [`Condvar`] over the selected backend.

use std::fmt;
use std::ops::{Deref, DerefMut};

#[cfg(feature = "shuttle")]
use shuttle::sync as backend;
#[cfg(not(feature = "shuttle"))]
use std::sync as backend;

/// A mutual-exclusion lock (Linux: a `mutex` or a `spinlock_t`; the model does not
/// distinguish sleeping from spinning, only who may run).
///
/// Unlike `std::sync::Mutex` it does not poison: a task that panics while holding it
/// leaves the data as it was, which is what a post-mortem invariant check wants to see.
pub struct Mutex<T: ?Sized> {
    inner: backend::Mutex<T>,
}

/// Proof that a [`Mutex`] is held; the lock is released when it drops.
pub struct MutexGuard<'a, T: ?Sized + 'a> {
    inner: backend::MutexGuard<'a, T>,
}

impl<T> Mutex<T> {
    /// A new unlocked mutex holding `value`.
    pub fn new(value: T) -> Self {
        Mutex {
            inner: backend::Mutex::new(value),
        }
    }

    /// Consumes the mutex and returns the data.
    pub fn into_inner(self) -> T {
        self.inner.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Blocks until the lock is taken. A scheduling point under shuttle.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        MutexGuard {
            inner: self.inner.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Takes the lock if it is free, without blocking.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.inner.try_lock() {
            Ok(inner) => Some(MutexGuard { inner }),
            Err(backend::TryLockError::Poisoned(e)) => Some(MutexGuard {
                inner: e.into_inner(),
            }),
            Err(backend::TryLockError::WouldBlock) => None,
        }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T: ?Sized> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex").finish_non_exhaustive()
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A condition variable paired with a [`Mutex`].
#[derive(Default)]
pub struct Condvar {
    inner: backend::Condvar,
}

impl Condvar {
    /// A new condition variable with no waiters.
    pub fn new() -> Self {
        Condvar {
            inner: backend::Condvar::new(),
        }
    }

    /// Atomically releases the guard's lock and sleeps until notified; re-takes the
    /// lock before returning. Wake-ups may be spurious: callers loop on their condition.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        MutexGuard {
            inner: self
                .inner
                .wait(guard.inner)
                .unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.inner.notify_one();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.inner.notify_all();
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}
