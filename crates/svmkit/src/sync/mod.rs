//! The concurrency facade: every lock, condition variable, thread and scheduling point
//! of the model comes from here.
//!
//! # One binary, two backends
//!
//! Each primitive is either `std`'s or [shuttle]'s, decided at **run time** from the
//! context it is created in: inside a shuttle execution (the closure given to
//! [`check::explore`](crate::check::explore) or [`check::replay`](crate::check::replay),
//! or any other shuttle runner's) it is shuttle's (svmkit's cooperative locks on
//! shuttle's engine, `coop.rs`: one scheduling point per lock operation), so every
//! lock operation (and every
//! explicit [`yield_now`]) is a scheduling point that the explorer can interleave
//! differently on each schedule; anywhere else it is std's and the model runs on OS
//! threads. [`in_explorer`] says which context the caller is in. So one build of the
//! crate runs scenarios on OS threads, explores their schedules and runs the demo;
//! there is no cargo feature to switch (the `shuttle` feature only compiles the
//! explored test suites).
//!
//! * [`Mutex`], [`Condvar`], [`WaitQueue`] and [`MmapLock`] pick their backend when
//!   they are created and keep it; [`thread::spawn`] and [`yield_now`] decide at each
//!   call.
//! * Shuttle runs all the tasks of an execution as coroutines on the runner's OS
//!   thread, so a thread-local set by svmkit's explore and replay for each execution
//!   tells the context apart with one load; other shuttle runners are recognised
//!   through shuttle's execution state.
//! * Using a primitive from the other context is a programming error and panics with
//!   a message saying so: a std lock used inside an exploration (it would be no
//!   scheduling point, and blocking on it would hang the explorer), a shuttle lock used
//!   after its execution ended or in a later one (it escaped the explored closure),
//!   a condition variable waited on with a guard of the other backend. So objects of
//!   the model are created inside the explored closure; bookkeeping a test shares
//!   across schedules uses `std::sync` types or atomics, which are not facade types.
//! * The cost on OS threads is kept to a test and a thread-local load per operation.
//!   [`WaitQueue`] and [`MmapLock`], which every PTL, folio and mmap lock goes through,
//!   are written once over a backend trait and monomorphised for each backend: an
//!   operation dispatches once, then runs on plain std primitives. [`Mutex`] keeps its
//!   data in a std mutex in both backends, behind a boxed cooperative "gate" inside
//!   explorations, so its guard dereferences without a branch. `benches/sync.rs`
//!   measures each against raw std primitives.
//!
//! What is *not* a scheduling point, on purpose (see `docs/ARCHITECTURE.md`):
//! frame contents and page-table words are plain `std` atomics, because a 4 KiB copy
//! must not become a thousand scheduling points. Where Linux could be preempted
//! between two steps that matter, the model calls [`yield_now`] explicitly.
//!
//! The locks built here:
//! * [`Mutex`] and [`Condvar`]: non-poisoning wrappers (a panicking task does not make
//!   the lock unusable for the checker's post-mortem).
//! * [`WaitQueue`]: Linux's `wait_queue_head_t` with `wait_event`/`wake_up_all`,
//!   killable waits included; the folio lock and (later) the notifier's `wq` use it.
//! * [`MmapLock`]: a writer-preferring reader/writer semaphore, Linux's `mmap_lock`.
//!
//! [shuttle]: https://docs.rs/shuttle

mod coop;
mod mmap_lock;
pub(crate) mod mode;
mod mutex;
mod raw;
pub mod thread;
mod wait;

pub use mmap_lock::{MmapLock, MmapReadGuard, MmapWriteGuard};
pub use mode::in_explorer;
pub use mutex::{Condvar, Mutex, MutexGuard};
pub use std::sync::Arc;
pub use thread::yield_now;
pub use wait::WaitQueue;

#[cfg(test)]
mod tests {
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::Mutex as StdMutex;

    use super::{Arc, Condvar, MmapLock, Mutex, WaitQueue, in_explorer, thread, yield_now};
    use crate::check::{ExploreConfig, explore};

    fn config(iterations: usize) -> ExploreConfig {
        let mut config = ExploreConfig::new(iterations);
        config.iterations = iterations; // not SVMKIT_ITERS: these check the facade only
        config
    }

    fn panic_text(f: impl FnOnce()) -> String {
        let payload = panic::catch_unwind(AssertUnwindSafe(f)).expect_err("it must panic");
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    #[test]
    fn facade_lock_is_std_lock_plus_a_pointer() {
        // On OS threads the shuttle part is one null pointer, in the lock and the guard.
        use std::mem::size_of;
        let ptr = size_of::<usize>();
        assert_eq!(
            size_of::<Mutex<u64>>(),
            size_of::<std::sync::Mutex<u64>>() + ptr
        );
        assert_eq!(
            size_of::<super::MutexGuard<'_, u64>>(),
            size_of::<std::sync::MutexGuard<'_, u64>>() + ptr
        );
    }

    #[test]
    fn facade_backend_follows_the_execution_context() {
        assert!(!in_explorer());
        let os_thread = std::thread::current().id();
        let report = explore(&config(20), move || {
            assert!(in_explorer());
            let m = Arc::new(Mutex::new(0));
            assert!(format!("{m:?}").contains("shuttle"));
            let tasks: Vec<_> = (0..2)
                .map(|_| {
                    let m = Arc::clone(&m);
                    thread::spawn(move || {
                        // Every task is a coroutine on the runner's OS thread: what the
                        // thread-local detection relies on.
                        assert_eq!(std::thread::current().id(), os_thread);
                        assert!(in_explorer());
                        let v = *m.lock();
                        yield_now();
                        *m.lock() = v + 1;
                    })
                })
                .collect();
            for t in tasks {
                t.join().unwrap();
            }
            assert_eq!(*m.lock(), 2, "lost update");
        });
        // The unlocked read-yield-write loses an update in some schedule: shuttle's
        // scheduler really interleaves the facade's tasks.
        let failure = report.expect_err("a lost update must be found");
        assert!(
            failure.message.contains("lost update"),
            "{}",
            failure.message
        );
        assert!(!in_explorer(), "the context is restored after exploring");
        let m = Mutex::new(1);
        assert!(format!("{m:?}").contains("std"));
        assert_eq!(*m.lock(), 1);
    }

    #[test]
    fn facade_explores_a_correct_closure_without_failure() {
        let report = explore(&config(50), || {
            let wq = Arc::new(WaitQueue::new());
            let flag = Arc::new(Mutex::new(false));
            let lock = Arc::new(MmapLock::new(0u32));
            let waker = {
                let (wq, flag, lock) = (Arc::clone(&wq), Arc::clone(&flag), Arc::clone(&lock));
                thread::spawn(move || {
                    *lock.write() += 1;
                    wq.update_and_wake(|| *flag.lock() = true);
                })
            };
            wq.wait_event(|| *flag.lock());
            assert_eq!(*lock.read(), 1);
            waker.join().unwrap();
        })
        .expect("no schedule fails");
        assert_eq!(report.schedules(), 100);
    }

    #[test]
    fn facade_std_object_used_inside_an_exploration_panics() {
        let outside = Arc::new(Mutex::new(0u32));
        let failure = explore(&config(1), move || {
            *outside.lock() += 1;
        })
        .expect_err("a std mutex inside the explorer must be refused");
        assert!(
            failure
                .message
                .contains("created outside a schedule exploration was used inside one"),
            "{}",
            failure.message
        );

        let wq = Arc::new(WaitQueue::new());
        let failure = explore(&config(1), move || wq.wake_up_all())
            .expect_err("a std wait queue inside the explorer must be refused");
        assert!(
            failure.message.contains("a WaitQueue created outside"),
            "{}",
            failure.message
        );

        let mmap = Arc::new(MmapLock::new(0));
        let failure = explore(&config(1), move || drop(mmap.read()))
            .expect_err("a std mmap lock inside the explorer must be refused");
        assert!(
            failure.message.contains("a MmapLock created outside"),
            "{}",
            failure.message
        );

        let cv = Arc::new(Condvar::new());
        let failure = explore(&config(1), move || {
            let m = Mutex::new(());
            drop(cv.wait(m.lock()));
        })
        .expect_err("a std condvar inside the explorer must be refused");
        assert!(
            failure
                .message
                .contains("a Condvar created outside a schedule exploration"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn facade_condvar_with_a_mutex_of_the_other_backend_panics() {
        // Under a foreign runner (no svmkit execution id), an uncontended std lock is
        // not caught, but waiting with its guard on a shuttle condvar is.
        let outside = Arc::new(Mutex::new(()));
        let text = panic_text(move || {
            shuttle::check_random(
                move || {
                    let cv = Condvar::new();
                    drop(cv.wait(outside.lock()));
                },
                1,
            )
        });
        assert!(
            text.contains(
                "Condvar::wait on a shuttle condition variable with the guard of a std mutex"
            ),
            "{text}"
        );
    }

    #[test]
    fn facade_explored_object_used_outside_its_execution_panics() {
        let escaped: Arc<StdMutex<Vec<Arc<Mutex<u32>>>>> = Arc::default();
        let sink = Arc::clone(&escaped);
        let failure = explore(&config(2), move || {
            let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = sink.first() {
                // The second schedule meets the first one's mutex.
                *old.lock() += 1;
            }
            sink.push(Arc::new(Mutex::new(0)));
        })
        .expect_err("a mutex from an earlier execution must be refused");
        assert!(
            failure.message.contains("in another execution"),
            "{}",
            failure.message
        );
        let m = Arc::clone(&escaped.lock().unwrap_or_else(|e| e.into_inner())[0]);
        let text = panic_text(|| drop(m.lock()));
        assert!(text.contains("used outside any exploration"), "{text}");
        // Dropping an escaped primitive is harmless.
        escaped.lock().unwrap_or_else(|e| e.into_inner()).clear();
        drop(m);
    }

    #[test]
    fn facade_under_a_foreign_shuttle_runner_uses_shuttle() {
        shuttle::check_random(
            || {
                assert!(in_explorer());
                let m = Arc::new(Mutex::new(0));
                assert!(format!("{m:?}").contains("shuttle"));
                let m2 = Arc::clone(&m);
                let t = thread::spawn(move || *m2.lock() += 1);
                *m.lock() += 1;
                t.join().unwrap();
                assert_eq!(*m.lock(), 2);
            },
            20,
        );
        assert!(!in_explorer());
    }
}
