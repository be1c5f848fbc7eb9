//! Schedule exploration of the foundation's locks (run with
//! `cargo test -p svmkit --features shuttle shuttle`).
#![cfg(feature = "shuttle")]

use svmkit::check::{ExploreConfig, SchedulerKind, explore, replay};
use svmkit::mm::{Gfp, PhysMem, PhysMemConfig};
use svmkit::sync::{Arc, MmapLock, thread, yield_now};
use svmkit::task::Task;
use svmkit::{Errno, Pfn};

const COUNTER: u64 = 0;

fn small_mem() -> Arc<PhysMem> {
    PhysMem::new(PhysMemConfig {
        frames: 8,
        wait_table_bits: 1,
    })
    .unwrap()
}

/// The racy increment the lock must protect: read, let others run, write back.
fn read_yield_write(mem: &PhysMem, pfn: Pfn) {
    let v = mem.read_u64(pfn, COUNTER).unwrap();
    yield_now();
    mem.write_u64(pfn, COUNTER, v + 1).unwrap();
}

/// Two threads increment a counter in a folio's frame under the folio lock while a
/// third takes the mmap lock as writer. `locked == false` is the deliberately broken
/// variant.
fn counter_scenario(locked: bool) {
    let mem = small_mem();
    let folio = mem.folio_alloc(0, Gfp::ZERO).unwrap();
    let mmap = Arc::new(MmapLock::new(0u64));
    let incrementers: Vec<_> = (0..2)
        .map(|_| {
            let mem = Arc::clone(&mem);
            thread::spawn(move || {
                for _ in 0..2 {
                    if locked {
                        let guard = mem.folio_lock(folio);
                        read_yield_write(&mem, guard.folio().head());
                    } else {
                        read_yield_write(&mem, folio.head());
                    }
                }
            })
        })
        .collect();
    let writer = {
        let (mmap, mem) = (Arc::clone(&mmap), Arc::clone(&mem));
        thread::spawn(move || {
            let mut w = mmap.write();
            yield_now();
            *w = mem.read_u64(folio.head(), COUNTER).unwrap() + 100;
        })
    };
    // Main thread: a reader of the mmap lock, racing the writer.
    {
        let r = mmap.read();
        assert!(*r == 0 || *r >= 100, "reader saw a torn write: {}", *r);
    }
    for t in incrementers {
        t.join().unwrap();
    }
    writer.join().unwrap();
    assert_eq!(
        mem.read_u64(folio.head(), COUNTER).unwrap(),
        4,
        "lost update"
    );
    assert!(!mem.folio_test_locked(folio));
    mem.folio_put(folio);
    assert_eq!(mem.nr_free_pages(), mem.nr_usable_pages());
    assert!(mem.bad_pages().is_empty());
}

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
    let failure = explore(&config, || {
        let mem = small_mem();
        let a = mem.folio_alloc(0, Gfp::empty()).unwrap();
        let b = mem.folio_alloc(0, Gfp::empty()).unwrap();
        let t = {
            let mem = Arc::clone(&mem);
            thread::spawn(move || {
                let _gb = mem.folio_lock(b);
                let _ga = mem.folio_lock(a);
            })
        };
        {
            let _ga = mem.folio_lock(a);
            let _gb = mem.folio_lock(b);
        }
        t.join().unwrap();
    })
    .expect_err("ABBA must deadlock in some schedule");
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
