//! The exploration library on model code: the depth-first search and minimisation on
//! the foundation's folio-lock counter scenario (the same as `shuttle_foundation.rs`'s)
//! and an ABBA deadlock.

use std::time::Duration;

use svmkit::Pfn;
use svmkit::check::{ExploreConfig, SchedulerKind, explore, minimise, replay};
use svmkit::mm::{Gfp, PhysMem, PhysMemConfig};
use svmkit::sync::{Arc, MmapLock, thread, yield_now};

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

fn dfs(bound: usize, iterations: usize) -> ExploreConfig {
    let mut config = ExploreConfig::new(iterations);
    config.iterations = iterations;
    config.schedulers = vec![SchedulerKind::Dfs];
    config.preemption_bound = bound;
    config
}

#[test]
fn dfs_covers_the_locked_counter_without_preemptions() {
    // Without preemptions a task switches only where it blocks, yields or ends; the
    // folio lock holds across each read-yield-write, so no schedule loses an update.
    let report = explore(&dfs(0, 100_000), || counter_scenario(true)).unwrap();
    assert!(report.exhausted, "{report}");
}

#[test]
fn dfs_finds_the_unlocked_increment_without_a_preemption() {
    // The increment yields between its read and its write: a switch there is free, so
    // the first depth-first schedule that switches at the first yield to the other
    // incrementer loses an update, with no preemption at all.
    let failure = explore(&dfs(0, 100_000), || counter_scenario(false)).unwrap_err();
    assert!(failure.message.contains("lost update"), "{failure}");
    assert_eq!(failure.preemptions, 0, "{failure}");
    let again = replay(|| counter_scenario(false), &failure.schedule).unwrap_err();
    assert_eq!(again.message, failure.message);
}

#[test]
fn minimise_a_random_lost_update_in_the_model() {
    let mut config = ExploreConfig::new(600);
    config.iterations = 600;
    config.schedulers = vec![SchedulerKind::Random];
    let failure = explore(&config, || counter_scenario(false)).unwrap_err();
    let min = minimise(
        || counter_scenario(false),
        &failure,
        |m| m.contains("lost update"),
        Duration::from_secs(60),
    );
    assert!(
        (min.preemptions, min.steps) <= (failure.preemptions, failure.steps),
        "{failure}\n{min}"
    );
    // As the depth-first search shows, none is needed.
    assert_eq!(min.preemptions, 0, "{min}");
    let again = replay(|| counter_scenario(false), &min.schedule).unwrap_err();
    assert_eq!(again.message, min.message);
    assert_eq!(
        (again.preemptions, again.steps),
        (min.preemptions, min.steps)
    );
}

/// Two folio locks taken in opposite orders by two tasks.
fn abba() {
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
}

#[test]
fn dfs_finds_the_abba_deadlock_with_one_preemption() {
    // Non-preemptively the main task takes and drops both locks before the thread
    // runs (it blocks only in join): no deadlock in the whole bound-0 space.
    let report = explore(&dfs(0, 100_000), abba).unwrap();
    assert!(report.exhausted, "{report}");
    // One preemption, of the main task holding `a`, lets the thread take `b`.
    let failure = explore(&dfs(1, 100_000), abba).unwrap_err();
    assert!(failure.message.contains("deadlock"), "{failure}");
    assert_eq!(failure.preemptions, 1, "{failure}");
}
