//! [`MmapLock`]: Linux's `mmap_lock`, a writer-preferring reader/writer semaphore.
//!
//! It is built from the facade's [`Mutex`] and [`Condvar`] rather than taken from the
//! backend's `RwLock`, because shuttle's `RwLock` is unfair: with it, a stream of
//! readers could starve `munmap` under the explorer but not on OS threads. Here both
//! builds share one policy, the kernel's `rw_semaphore` one:
//!
//! * readers share the lock;
//! * a writer excludes readers and other writers;
//! * **a waiting writer blocks new readers** (writer preference), so a reader that
//!   drops the lock and re-takes it (the fault-retry path, [`MmapReadGuard::drop_and_retake`])
//!   lets a queued writer in first.
//!
//! The protected value (the VMA tree, later) lives in a `std::sync::RwLock` that the
//! admission protocol guarantees is never contended: it is there only so that safe code
//! can hand out `&T` to readers and `&mut T` to the writer. All blocking, and so every
//! scheduling point, is in the facade mutex.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{Condvar, Mutex};

#[derive(Debug, Default, Clone, Copy)]
struct RwState {
    readers: usize,
    writer: bool,
    waiting_writers: usize,
}

/// Linux's `mmap_lock`: a writer-preferring reader/writer semaphore protecting `T`.
///
/// # Invariants
/// `readers > 0` and `writer` are never both true; the inner `RwLock` is only touched
/// by a holder admitted through `state`, so it never blocks.
#[doc(alias = "mmap_lock")]
pub struct MmapLock<T> {
    state: Mutex<RwState>,
    changed: Condvar,
    data: RwLock<T>,
}

impl<T> MmapLock<T> {
    /// A new, unlocked semaphore protecting `value`.
    ///
    /// Linux: `mmap_init_lock()`.
    #[doc(alias = "mmap_init_lock")]
    pub fn new(value: T) -> Self {
        MmapLock {
            state: Mutex::new(RwState::default()),
            changed: Condvar::new(),
            data: RwLock::new(value),
        }
    }

    /// Takes the lock in read (shared) mode, waiting for the writer and for any
    /// waiting writer to finish.
    ///
    /// Linux: `mmap_read_lock()`.
    #[doc(alias = "mmap_read_lock")]
    pub fn read(&self) -> MmapReadGuard<'_, T> {
        self.acquire_read();
        MmapReadGuard {
            lock: self,
            data: Some(self.read_data()),
        }
    }

    /// Takes the lock in read mode if that needs no waiting.
    ///
    /// Linux: `mmap_read_trylock()`.
    #[doc(alias = "mmap_read_trylock")]
    pub fn try_read(&self) -> Option<MmapReadGuard<'_, T>> {
        {
            let mut st = self.state.lock();
            if st.writer || st.waiting_writers > 0 {
                return None;
            }
            st.readers += 1;
        }
        Some(MmapReadGuard {
            lock: self,
            data: Some(self.read_data()),
        })
    }

    /// Takes the lock in write (exclusive) mode.
    ///
    /// Linux: `mmap_write_lock()`.
    #[doc(alias = "mmap_write_lock")]
    pub fn write(&self) -> MmapWriteGuard<'_, T> {
        {
            let mut st = self.state.lock();
            st.waiting_writers += 1;
            while st.writer || st.readers > 0 {
                st = self.changed.wait(st);
            }
            st.waiting_writers -= 1;
            st.writer = true;
        }
        MmapWriteGuard {
            lock: self,
            data: Some(self.write_data()),
        }
    }

    /// Takes the lock in write mode if it is free.
    ///
    /// Linux: `mmap_write_trylock()`.
    #[doc(alias = "mmap_write_trylock")]
    pub fn try_write(&self) -> Option<MmapWriteGuard<'_, T>> {
        {
            let mut st = self.state.lock();
            if st.writer || st.readers > 0 {
                return None;
            }
            st.writer = true;
        }
        Some(MmapWriteGuard {
            lock: self,
            data: Some(self.write_data()),
        })
    }

    /// Number of readers holding the lock now (for assertions and views).
    pub fn readers(&self) -> usize {
        self.state.lock().readers
    }

    /// Whether a writer holds the lock now.
    pub fn is_write_locked(&self) -> bool {
        self.state.lock().writer
    }

    /// Number of writers queued behind the current holders.
    pub fn waiting_writers(&self) -> usize {
        self.state.lock().waiting_writers
    }

    fn acquire_read(&self) {
        let mut st = self.state.lock();
        while st.writer || st.waiting_writers > 0 {
            st = self.changed.wait(st);
        }
        st.readers += 1;
    }

    fn release_read(&self) {
        let mut st = self.state.lock();
        st.readers -= 1;
        if st.readers == 0 {
            self.changed.notify_all();
        }
    }

    fn release_write(&self) {
        let mut st = self.state.lock();
        st.writer = false;
        self.changed.notify_all();
    }

    // The admission protocol above guarantees these never block; poisoning (a holder
    // panicked) is ignored like everywhere in the facade.
    fn read_data(&self) -> RwLockReadGuard<'_, T> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_data(&self) -> RwLockWriteGuard<'_, T> {
        self.data.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Default> Default for MmapLock<T> {
    fn default() -> Self {
        MmapLock::new(T::default())
    }
}

impl<T> fmt::Debug for MmapLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = *self.state.lock();
        f.debug_struct("MmapLock")
            .field("readers", &st.readers)
            .field("writer", &st.writer)
            .field("waiting_writers", &st.waiting_writers)
            .finish()
    }
}

/// Proof that the [`MmapLock`] is held for read; functions that need the mmap lock take
/// this guard (or the write guard) as an argument. Released on drop.
///
/// Linux: the state between `mmap_read_lock()` and `mmap_read_unlock()`.
pub struct MmapReadGuard<'a, T> {
    lock: &'a MmapLock<T>,
    /// `None` only transiently inside [`drop_and_retake`](Self::drop_and_retake).
    data: Option<RwLockReadGuard<'a, T>>,
}

impl<'a, T> MmapReadGuard<'a, T> {
    /// Releases the lock, runs `f` without it, and takes it again in read mode before
    /// returning. A writer that was waiting gets the lock in between, so anything read
    /// under the old hold must be looked up again afterwards.
    ///
    /// Linux: the fault-retry pattern, `mmap_read_unlock(mm); ...; mmap_read_lock(mm)`
    /// (what `folio_lock_or_retry()` does before returning `VM_FAULT_RETRY`).
    #[doc(alias = "mmap_read_unlock")]
    pub fn drop_and_retake<R>(&mut self, f: impl FnOnce() -> R) -> R {
        drop(self.data.take());
        self.lock.release_read();
        let r = f();
        self.lock.acquire_read();
        self.data = Some(self.lock.read_data());
        r
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &'a MmapLock<T> {
        self.lock
    }
}

impl<T> Deref for MmapReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // INVARIANT: `data` is `Some` outside `drop_and_retake`, which holds `&mut self`.
        self.data
            .as_deref()
            .expect("mmap read guard holds its data")
    }
}

impl<T> Drop for MmapReadGuard<'_, T> {
    fn drop(&mut self) {
        if self.data.take().is_some() {
            self.lock.release_read();
        }
    }
}

impl<T> fmt::Debug for MmapReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmapReadGuard").finish_non_exhaustive()
    }
}

/// Proof that the [`MmapLock`] is held for write. Released on drop.
///
/// Linux: the state between `mmap_write_lock()` and `mmap_write_unlock()`.
pub struct MmapWriteGuard<'a, T> {
    lock: &'a MmapLock<T>,
    data: Option<RwLockWriteGuard<'a, T>>,
}

impl<'a, T> MmapWriteGuard<'a, T> {
    /// Turns the write hold into a read hold without letting any writer in between.
    /// Readers that were waiting (and not behind a queued writer) may now enter.
    ///
    /// Linux: `mmap_write_downgrade()`.
    #[doc(alias = "mmap_write_downgrade")]
    pub fn downgrade(mut self) -> MmapReadGuard<'a, T> {
        let lock = self.lock;
        drop(self.data.take());
        {
            let mut st = lock.state.lock();
            st.writer = false;
            st.readers += 1;
            lock.changed.notify_all();
        }
        MmapReadGuard {
            lock,
            data: Some(lock.read_data()),
        }
    }

    /// Releases the lock, runs `f` without it, and takes it again in write mode.
    pub fn drop_and_retake<R>(&mut self, f: impl FnOnce() -> R) -> R {
        drop(self.data.take());
        self.lock.release_write();
        let r = f();
        let retaken = self.lock.write();
        // Move the fresh hold into `self` without running the temporary's Drop.
        self.data = retaken.into_data();
        r
    }

    fn into_data(mut self) -> Option<RwLockWriteGuard<'a, T>> {
        self.data.take()
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &'a MmapLock<T> {
        self.lock
    }
}

impl<T> Deref for MmapWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // INVARIANT: `data` is `Some` outside `drop_and_retake`/`downgrade`.
        self.data
            .as_deref()
            .expect("mmap write guard holds its data")
    }
}

impl<T> DerefMut for MmapWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.data
            .as_deref_mut()
            .expect("mmap write guard holds its data")
    }
}

impl<T> Drop for MmapWriteGuard<'_, T> {
    fn drop(&mut self) {
        if self.data.take().is_some() {
            self.lock.release_write();
        }
    }
}

impl<T> fmt::Debug for MmapWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmapWriteGuard").finish_non_exhaustive()
    }
}
