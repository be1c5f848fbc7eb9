//! How many schedules per second `check::explore` runs with the random scheduler on a
//! trivial two-thread closure: the cost of svmkit's wrapping of shuttle. Ignored (a
//! measurement, not a check); run it in release mode:
//!
//! `cargo test --release -p svmkit --test explore_throughput -- --ignored --nocapture`

use std::time::Instant;

use svmkit::check::{ExploreConfig, SchedulerKind, explore, explore_with_progress};
use svmkit::sync::{Arc, Mutex, thread};

/// Two tasks, one lock each way: the smallest closure with a real scheduling choice.
fn trivial() {
    let m = Arc::new(Mutex::new(0u32));
    let m2 = Arc::clone(&m);
    let t = thread::spawn(move || *m2.lock() += 1);
    *m.lock() += 1;
    t.join().unwrap();
    assert_eq!(*m.lock(), 2);
}

#[test]
#[ignore = "a measurement: run in release mode with --ignored --nocapture"]
fn random_schedules_per_second() {
    let iterations = 50_000;
    let mut config = ExploreConfig::new(iterations);
    config.schedulers = vec![SchedulerKind::Random];
    // Warm up (the continuation pool, the allocator).
    let mut warm = config.clone();
    warm.iterations = 2_000;
    explore(&warm, trivial).unwrap();
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let report = explore(&config, trivial).unwrap();
        let rate = report.schedules() as f64 / start.elapsed().as_secs_f64();
        best = best.max(rate);
    }
    println!(
        "explore(Random), trivial two-thread closure: {best:.0} schedules/s (best of 3 x {iterations})"
    );
}

#[test]
#[ignore = "a measurement: run in release mode with --ignored --nocapture"]
fn progress_and_dfs_schedules_per_second() {
    let iterations = 50_000;
    let mut config = ExploreConfig::new(iterations);
    config.iterations = iterations;
    config.schedulers = vec![SchedulerKind::Random];
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let report = explore_with_progress(&config, trivial, Arc::new(|_| {})).unwrap();
        best = best.max(report.schedules() as f64 / start.elapsed().as_secs_f64());
    }
    println!("explore_with_progress(Random, no-op callback): {best:.0} schedules/s");
    // The depth-first search of a closure with a space larger than the iterations.
    let wide = || {
        let m = Arc::new(Mutex::new(0u32));
        let ts: Vec<_> = (0..3)
            .map(|_| {
                let m = Arc::clone(&m);
                thread::spawn(move || {
                    for _ in 0..3 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
    };
    config.schedulers = vec![SchedulerKind::Dfs];
    config.preemption_bound = 3;
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let report = explore(&config, wide).unwrap();
        best = best.max(report.schedules() as f64 / start.elapsed().as_secs_f64());
    }
    println!("explore(Dfs, bound 3), three threads x 3 locks: {best:.0} schedules/s");
}
