//! The exploration library on model code: the depth-first search and minimisation on
//! the foundation's folio-lock counter scenario (the same as `shuttle_foundation.rs`'s)
//! and an ABBA deadlock.

use std::time::Duration;

use svmkit::check::{ExploreConfig, SchedulerKind, explore, minimise, replay};

#[path = "common/explored.rs"]
mod explored;
use explored::*;

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
