//! [`MmapLock`]: Linux's `mmap_lock`, a writer-preferring reader/writer semaphore.
//!
//! It is built from a mutex and a condition variable rather than taken from the
//! backend's `RwLock`, because shuttle's `RwLock` is unfair: with it, a stream of
//! readers could starve `munmap` under the explorer but not on OS threads. Here both
//! backends share one policy, the kernel's `rw_semaphore` one:
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
//! scheduling point, is in the backend's mutex and condition variable.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::mode::Backend;
use super::raw::{Dual, Raw, ShuttleRaw, StdRaw, on_backend};

#[derive(Debug, Default, Clone, Copy)]
struct RwState {
    readers: usize,
    writer: bool,
    waiting_writers: usize,
    waiting_readers: usize,
}

/// Linux's `mmap_lock`: a writer-preferring reader/writer semaphore protecting `T`.
///
/// Like [`Mutex`](super::Mutex), it belongs to the context that created it (inside or
/// outside a schedule exploration); used from the other, it panics. Each operation
/// dispatches once on the backend and then runs the admission protocol on that
/// backend's mutex and condition variable directly.
///
/// # Invariants
/// `readers > 0` and `writer` are never both true; the inner `RwLock` is only touched
/// by a holder admitted through the semaphore's state, so it never blocks.
#[doc(alias = "mmap_lock")]
pub struct MmapLock<T> {
    // The shuttle state is boxed here (unlike a wait queue's): inline it would push
    // `data` a few hundred bytes away, one more cache line per read lock on OS threads.
    sem: Dual<RwSem<StdRaw>, Box<RwSem<ShuttleRaw>>>,
    data: RwLock<T>,
}

/// The admission protocol on one backend: who holds and who waits.
struct RwSem<B: Raw> {
    state: B::Mutex<RwState>,
    changed: B::Condvar,
}

impl<B: Raw> RwSem<B> {
    fn new() -> Self {
        RwSem {
            state: B::mutex(RwState::default()),
            changed: B::condvar(),
        }
    }

    fn snapshot(&self) -> RwState {
        *B::lock(&self.state)
    }

    #[inline]
    fn acquire_read(&self) {
        let mut st = B::lock(&self.state);
        if st.writer || st.waiting_writers > 0 {
            st.waiting_readers += 1;
            while st.writer || st.waiting_writers > 0 {
                st = B::wait(&self.changed, st);
            }
            st.waiting_readers -= 1;
        }
        st.readers += 1;
    }

    fn try_acquire_read(&self) -> bool {
        let mut st = B::lock(&self.state);
        if st.writer || st.waiting_writers > 0 {
            return false;
        }
        st.readers += 1;
        true
    }

    fn acquire_write(&self) {
        let mut st = B::lock(&self.state);
        st.waiting_writers += 1;
        while st.writer || st.readers > 0 {
            st = B::wait(&self.changed, st);
        }
        st.waiting_writers -= 1;
        st.writer = true;
    }

    fn try_acquire_write(&self) -> bool {
        let mut st = B::lock(&self.state);
        if st.writer || st.readers > 0 {
            return false;
        }
        st.writer = true;
        true
    }

    #[inline]
    fn release_read(&self) {
        let mut st = B::lock(&self.state);
        st.readers -= 1;
        if st.readers == 0 && st.waiting_writers > 0 {
            B::notify_all(&self.changed);
        }
    }

    fn release_write(&self) {
        let mut st = B::lock(&self.state);
        st.writer = false;
        if st.waiting_writers + st.waiting_readers > 0 {
            B::notify_all(&self.changed);
        }
    }

    fn downgrade(&self) {
        let mut st = B::lock(&self.state);
        st.writer = false;
        st.readers += 1;
        if st.waiting_readers > 0 {
            B::notify_all(&self.changed);
        }
    }
}

impl<T> MmapLock<T> {
    /// A new, unlocked semaphore protecting `value`.
    ///
    /// Linux: `mmap_init_lock()`.
    #[doc(alias = "mmap_init_lock")]
    pub fn new(value: T) -> Self {
        MmapLock {
            sem: Dual::new(Backend::current(), RwSem::new, || Box::new(RwSem::new())),
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
        if !on_backend!(self.sem, "MmapLock", |s| s.try_acquire_read()) {
            return None;
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
        on_backend!(self.sem, "MmapLock", |s| s.acquire_write());
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
        if !on_backend!(self.sem, "MmapLock", |s| s.try_acquire_write()) {
            return None;
        }
        Some(MmapWriteGuard {
            lock: self,
            data: Some(self.write_data()),
        })
    }

    fn snapshot(&self) -> RwState {
        on_backend!(self.sem, "MmapLock", |s| s.snapshot())
    }

    /// Number of readers holding the lock now (for assertions and views).
    pub fn readers(&self) -> usize {
        self.snapshot().readers
    }

    /// Whether a writer holds the lock now.
    pub fn is_write_locked(&self) -> bool {
        self.snapshot().writer
    }

    /// Number of writers queued behind the current holders.
    pub fn waiting_writers(&self) -> usize {
        self.snapshot().waiting_writers
    }

    /// Number of readers queued (behind a writer or a waiting writer).
    pub fn waiting_readers(&self) -> usize {
        self.snapshot().waiting_readers
    }

    #[inline]
    fn acquire_read(&self) {
        on_backend!(self.sem, "MmapLock", |s| s.acquire_read())
    }

    #[inline]
    fn release_read(&self) {
        on_backend!(self.sem, "MmapLock", |s| s.release_read())
    }

    fn release_write(&self) {
        on_backend!(self.sem, "MmapLock", |s| s.release_write())
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
        let st = self.snapshot();
        f.debug_struct("MmapLock")
            .field("readers", &st.readers)
            .field("writer", &st.writer)
            .field("waiting_writers", &st.waiting_writers)
            .field("waiting_readers", &st.waiting_readers)
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
        on_backend!(lock.sem, "MmapLock", |s| s.downgrade());
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::MmapLock;
    use crate::sync::{Arc, Mutex, thread};

    fn spin_until(cond: impl Fn() -> bool) {
        while !cond() {
            thread::yield_now();
        }
    }

    #[test]
    fn mmap_lock_readers_share() {
        let lock = MmapLock::new(7);
        let a = lock.read();
        let b = lock.read();
        let c = lock.try_read().expect("a third reader shares the lock");
        assert_eq!((*a, *b, *c), (7, 7, 7));
        assert_eq!(lock.readers(), 3);
        drop((a, b, c));
        assert_eq!(lock.readers(), 0);
    }

    #[test]
    fn mmap_lock_writer_excludes_readers_and_writers() {
        let lock = Arc::new(MmapLock::new(0));
        let mut w = lock.write();
        assert!(lock.try_read().is_none());
        assert!(lock.try_write().is_none());
        assert!(lock.is_write_locked());
        // A blocking reader waits until the writer is done, and then sees its write.
        let seen = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || *lock.read())
        };
        spin_until(|| lock.waiting_readers() == 1);
        *w = 42;
        drop(w);
        assert_eq!(seen.join().unwrap(), 42);
        let r = lock.read();
        assert!(lock.try_write().is_none(), "a reader excludes writers");
        drop(r);
        assert!(lock.try_write().is_some());
    }

    #[test]
    fn mmap_lock_waiting_writer_blocks_new_readers() {
        let lock = Arc::new(MmapLock::new(Vec::<&str>::new()));
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = lock.read();
        let writer = {
            let (lock, order) = (Arc::clone(&lock), Arc::clone(&order));
            thread::spawn(move || {
                let mut w = lock.write();
                w.push("writer");
                order.lock().push("writer");
            })
        };
        spin_until(|| lock.waiting_writers() == 1);
        assert!(
            lock.try_read().is_none(),
            "a queued writer must keep new readers out"
        );
        let reader = {
            let (lock, order) = (Arc::clone(&lock), Arc::clone(&order));
            thread::spawn(move || {
                let r = lock.read();
                order.lock().push("reader");
                r.clone()
            })
        };
        spin_until(|| lock.waiting_readers() == 1);
        // The first reader still holds the lock: nobody has run yet.
        assert!(order.lock().is_empty());
        drop(first);
        writer.join().unwrap();
        let seen_by_reader = reader.join().unwrap();
        assert_eq!(*order.lock(), vec!["writer", "reader"]);
        assert_eq!(seen_by_reader, vec!["writer"]);
    }

    #[test]
    fn mmap_lock_drop_and_retake_lets_a_waiting_writer_in() {
        let lock = Arc::new(MmapLock::new(0u32));
        let mut guard = lock.read();
        let writes = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (lock, writes) = (Arc::clone(&lock), Arc::clone(&writes));
            thread::spawn(move || {
                *lock.write() = 99;
                writes.fetch_add(1, Ordering::SeqCst);
            })
        };
        spin_until(|| lock.waiting_writers() == 1);
        assert_eq!(*guard, 0);
        let readers_inside = guard.drop_and_retake(|| lock.readers());
        assert_eq!(readers_inside, 0, "the lock is really released inside");
        // Writer preference: the queued writer ran before the retake completed.
        assert_eq!(*guard, 99);
        assert_eq!(lock.readers(), 1);
        drop(guard);
        writer.join().unwrap();
        assert_eq!(writes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn mmap_lock_write_downgrade_keeps_writers_out() {
        let lock = Arc::new(MmapLock::new(1));
        let mut w = lock.write();
        *w = 2;
        let r = w.downgrade();
        assert_eq!(*r, 2);
        assert_eq!(lock.readers(), 1);
        assert!(!lock.is_write_locked());
        assert!(lock.try_write().is_none());
        assert!(lock.try_read().is_some());
        drop(r);
        let mut w = lock.write();
        let inside = w.drop_and_retake(|| lock.try_read().map(|g| *g));
        assert_eq!(
            inside,
            Some(2),
            "write lock is released inside drop_and_retake"
        );
        *w = 3;
        drop(w);
        assert_eq!(*lock.read(), 3);
    }
}
