//! The cost of the sync facade's run-time backend choice on OS threads: each facade
//! operation next to the same operation on raw std primitives, in the same run, so
//! that figures are reported as ratios (these machines are noisy). Single-threaded
//! and uncontended: the branch and the mixed-use check are all that differ.
//!
//! * `mutex/facade_lock_unlock` against `mutex/std_lock_unlock`: lock, increment,
//!   unlock a `Mutex<u64>`.
//! * `mutex/facade_new` against `mutex/std_new`: create (and drop) a mutex, where the
//!   facade asks which context it is in.
//! * `wait_queue/facade_wake_no_sleepers` against `wait_queue/std_wake_no_sleepers`:
//!   `WaitQueue::wake_up_all` with nobody asleep (every folio and PTL unlock does it),
//!   against the same protocol on a std `Mutex<usize>` and `Condvar`.
//! * `mmap_lock/facade_read` against `mmap_lock/std_read`: take and release
//!   `MmapLock::read`, against the same admission protocol on std primitives
//!   (`mmap_lock/std_rwlock_read`, std's own `RwLock`, for scale).

use std::hint::black_box;
use std::sync::{Condvar as StdCondvar, Mutex as StdMutex, RwLock, RwLockReadGuard};

use criterion::{Criterion, criterion_group, criterion_main};
use svmkit::sync::{MmapLock, Mutex, WaitQueue};

/// `WaitQueue::wake_up_all` on raw std primitives.
struct StdWaitQueue {
    lock: StdMutex<usize>,
    cond: StdCondvar,
}

impl StdWaitQueue {
    fn wake_up_all(&self) {
        let sleepers = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if *sleepers > 0 {
            self.cond.notify_all();
        }
    }
}

#[derive(Default)]
struct RwState {
    readers: usize,
    writer: bool,
    waiting_writers: usize,
    waiting_readers: usize,
}

/// `MmapLock`'s read side on raw std primitives (the same admission protocol).
struct StdMmapLock<T> {
    state: StdMutex<RwState>,
    changed: StdCondvar,
    data: RwLock<T>,
}

struct StdReadGuard<'a, T> {
    lock: &'a StdMmapLock<T>,
    data: Option<RwLockReadGuard<'a, T>>,
}

impl<T> StdMmapLock<T> {
    fn read(&self) -> StdReadGuard<'_, T> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.writer || st.waiting_writers > 0 {
            st.waiting_readers += 1;
            while st.writer || st.waiting_writers > 0 {
                st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.waiting_readers -= 1;
        }
        st.readers += 1;
        drop(st);
        StdReadGuard {
            lock: self,
            data: Some(self.data.read().unwrap_or_else(|e| e.into_inner())),
        }
    }
}

impl<T> Drop for StdReadGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.data.take());
        let mut st = self.lock.state.lock().unwrap_or_else(|e| e.into_inner());
        st.readers -= 1;
        if st.readers == 0 && st.waiting_writers > 0 {
            self.lock.changed.notify_all();
        }
    }
}

fn mutex(c: &mut Criterion) {
    let mut g = c.benchmark_group("mutex");
    let std_m = StdMutex::new(0u64);
    g.bench_function("std_lock_unlock", |b| {
        b.iter(|| *black_box(&std_m).lock().unwrap() += 1)
    });
    let facade_m = Mutex::new(0u64);
    g.bench_function("facade_lock_unlock", |b| {
        b.iter(|| *black_box(&facade_m).lock() += 1)
    });
    g.bench_function("std_new", |b| b.iter(|| StdMutex::new(black_box(1u64))));
    g.bench_function("facade_new", |b| b.iter(|| Mutex::new(black_box(1u64))));
    g.finish();
}

fn wait_queue(c: &mut Criterion) {
    let mut g = c.benchmark_group("wait_queue");
    let std_wq = StdWaitQueue {
        lock: StdMutex::new(0),
        cond: StdCondvar::new(),
    };
    g.bench_function("std_wake_no_sleepers", |b| {
        b.iter(|| black_box(&std_wq).wake_up_all())
    });
    let facade_wq = WaitQueue::new();
    g.bench_function("facade_wake_no_sleepers", |b| {
        b.iter(|| black_box(&facade_wq).wake_up_all())
    });
    g.finish();
}

fn mmap_lock(c: &mut Criterion) {
    let mut g = c.benchmark_group("mmap_lock");
    let std_lock = StdMmapLock {
        state: StdMutex::new(RwState::default()),
        changed: StdCondvar::new(),
        data: RwLock::new(7u64),
    };
    g.bench_function("std_read", |b| {
        b.iter(|| *black_box(&std_lock).read().data.as_deref().unwrap())
    });
    let facade_lock = MmapLock::new(7u64);
    g.bench_function("facade_read", |b| {
        b.iter(|| *black_box(&facade_lock).read())
    });
    let rw = RwLock::new(7u64);
    g.bench_function("std_rwlock_read", |b| {
        b.iter(|| *black_box(&rw).read().unwrap())
    });
    g.finish();
}

criterion_group!(benches, mutex, wait_queue, mmap_lock);
criterion_main!(benches);
