//! How many schedules per second `check::explore` runs with the random scheduler on a
//! trivial two-thread closure: the cost of svmkit's wrapping of shuttle. Ignored (a
//! measurement, not a check); run it in release mode:
//!
//! `cargo test --release -p svmkit --test explore_throughput -- --ignored --nocapture`

use std::time::Instant;

use svmkit::check::{ExploreConfig, SchedulerKind, explore};
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
