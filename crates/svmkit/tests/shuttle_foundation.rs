//! Schedule exploration of the foundation's locks (run with
//! `cargo test -p svmkit --features shuttle shuttle`).
#![cfg(feature = "shuttle")]

use svmkit::Errno;
use svmkit::check::{ExploreConfig, SchedulerKind, explore, replay};
use svmkit::mm::Gfp;
use svmkit::sync::{Arc, MmapLock, thread, yield_now};
use svmkit::task::Task;

#[path = "common/explored.rs"]
mod explored;
use explored::*;

#[test]
fn shuttle_folio_lock_protects_the_frame_counter() {
    let config = ExploreConfig::new(600);
    let report = explore(&config, || counter_scenario(true)).unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 1000, "{report:?}");
    assert_eq!(
        report.runs.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![SchedulerKind::Random, SchedulerKind::Pct]
    );
}

#[test]
fn shuttle_explorer_catches_the_unlocked_increment() {
    let config = ExploreConfig::new(600);
    let failure = explore(&config, || counter_scenario(false)).expect_err(
        "an increment split into read, yield, write without the lock must lose updates",
    );
    assert!(failure.message.contains("lost update"), "{failure}");
    assert!(!failure.schedule.is_empty());
    // The reported schedule reproduces the failure deterministically, twice.
    for _ in 0..2 {
        let again = replay(|| counter_scenario(false), &failure.schedule)
            .expect_err("replay must reproduce the failure");
        assert!(again.message.contains("lost update"), "{again}");
    }
    // And the same schedule is harmless for the correct variant (it only fails the
    // broken one), i.e. the failure is the race, not the schedule.
    let _ = replay(|| counter_scenario(true), &failure.schedule);
}

#[test]
fn shuttle_explorer_reports_a_deadlock() {
    // Two folio locks taken in opposite orders: the classic ABBA deadlock that the
    // lock-order rule forbids. The explorer must find it rather than hang.
    let config = ExploreConfig::new(300);
    let failure = explore(&config, abba).expect_err("ABBA must deadlock in some schedule");
    assert!(
        failure.message.to_lowercase().contains("deadlock"),
        "{failure}"
    );
}

#[test]
fn shuttle_killable_folio_lock_ends_with_the_lock_or_eintr() {
    let config = ExploreConfig::new(500);
    explore(&config, || {
        let mem = small_mem();
        let folio = mem.folio_alloc(0, Gfp::ZERO).unwrap();
        let task = Task::new("victim");
        let holder = {
            let mem = Arc::clone(&mem);
            thread::spawn(move || {
                let g = mem.folio_lock(folio);
                yield_now();
                drop(g);
            })
        };
        let victim = {
            let (mem, task) = (Arc::clone(&mem), task.clone());
            thread::spawn(move || match mem.folio_lock_killable(folio, &task) {
                Ok(g) => {
                    read_yield_write(&mem, g.folio().head());
                    Ok(())
                }
                Err(e) => Err(e),
            })
        };
        task.kill();
        let outcome = victim.join().unwrap();
        holder.join().unwrap();
        let counter = mem.read_u64(folio.head(), COUNTER).unwrap();
        match outcome {
            Ok(()) => assert_eq!(counter, 1),
            Err(e) => {
                assert_eq!(e, Errno::EINTR);
                assert_eq!(counter, 0);
            }
        }
        assert!(!mem.folio_test_locked(folio), "no lock left behind");
        mem.folio_put(folio);
        assert!(mem.bad_pages().is_empty());
    })
    .unwrap_or_else(|f| panic!("{f}"));
}

#[test]
fn shuttle_mmap_lock_drop_and_retake_under_a_writer() {
    let config = ExploreConfig::new(500);
    explore(&config, || {
        let lock = Arc::new(MmapLock::new(0u32));
        let writer = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || *lock.write() += 1)
        };
        let mut g = lock.read();
        let before = *g;
        g.drop_and_retake(yield_now);
        let after = *g;
        drop(g);
        writer.join().unwrap();
        assert!(before <= after && after <= 1);
        assert_eq!(*lock.read(), 1);
        assert_eq!(lock.readers(), 0);
    })
    .unwrap_or_else(|f| panic!("{f}"));
}
