//! `explore_jobs`: several workers share a run in chunks, each chunk a stream of
//! schedules from its own seed. What a run covers does not depend on how many workers
//! ran it, a chunk is what a one-worker run from its seed explores, shards cover
//! disjoint chunks, and the budget (schedules or time) is the process's.

use std::sync::Arc;
use std::time::Duration;

use svmkit_scenario::explore::{ExploreOptions, Shard, explore, explore_jobs};
use svmkit_scenario::{Scenario, parse};

fn example(name: &str) -> Scenario {
    let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).unwrap();
    parse(&path, &src).unwrap_or_else(|e| panic!("{}", e.render()))
}

fn opts(schedules: usize) -> ExploreOptions {
    ExploreOptions {
        schedules,
        ..ExploreOptions::default()
    }
}

#[test]
fn workers_share_the_budget_in_chunks_that_do_not_depend_on_their_number() {
    let sc = example("race-counter.toml");
    // 300 schedules in chunks of 64 (the smallest chunk): five streams, the last of 44.
    let two = explore_jobs(&sc, &opts(300), 2, None, Arc::new(|_| {}));
    let three = explore_jobs(&sc, &opts(300), 3, None, Arc::new(|_| {}));
    for r in [&two, &three] {
        assert_eq!(r.schedules, 300, "the budget is the process's, run exactly");
        assert_eq!(r.seeds.len(), 5, "{:?}", r.seeds);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
    }
    assert_eq!(two.jobs, 2);
    assert_eq!(three.jobs, 3);
    assert_eq!(
        two.seeds, three.seeds,
        "the chunks depend on the worker count"
    );
    let distinct: std::collections::BTreeSet<_> = two.seeds.iter().collect();
    assert_eq!(
        distinct.len(),
        5,
        "two chunks share a seed: {:?}",
        two.seeds
    );
    // A budget below one chunk is one chunk.
    let small = explore_jobs(&sc, &opts(10), 2, None, Arc::new(|_| {}));
    assert_eq!((small.schedules, small.seeds.len()), (10, 1));
}

#[test]
fn a_chunk_finds_what_one_worker_from_its_seed_finds() {
    // The flaw needs a few hundred schedules (docs/EXPLORING.md's corpus table), so
    // it is found in some chunk after the first.
    let sc = example("lost-update-skip-set-seq.toml");
    let r = explore_jobs(&sc, &opts(4000), 2, None, Arc::new(|_| {}));
    let found = r
        .failures
        .first()
        .expect("two workers find the lost update");
    assert!(
        found.violation.contains("stale device entry"),
        "{}",
        found.violation
    );
    assert!(found.schedules_run <= r.schedules);
    // The chunk's stream, run alone: the same first failure, the same schedule.
    let alone = explore(
        &sc,
        &ExploreOptions {
            seed: found.seed,
            ..opts(64)
        },
        Arc::new(|_| {}),
    );
    let again = alone.failure.expect("the chunk's seed alone finds it");
    assert_eq!(again.schedule, found.schedule);
    assert_eq!(again.violation, found.violation);
    assert_eq!(again.account, found.account);
}

#[test]
fn shards_explore_disjoint_chunks() {
    let sc = example("race-counter.toml");
    let shard = |index| {
        explore_jobs(
            &sc,
            &opts(200),
            2,
            Some(Shard { index, count: 2 }),
            Arc::new(|_| {}),
        )
    };
    let (a, b) = (shard(1), shard(2));
    assert_eq!((a.schedules, b.schedules), (200, 200));
    assert_eq!(a.shards, vec!["1/2".to_string()]);
    assert!(
        a.seeds.iter().all(|s| !b.seeds.contains(s)),
        "{:?} and {:?}",
        a.seeds,
        b.seeds
    );
}

#[test]
fn a_time_budget_without_a_schedule_count_runs_until_its_time() {
    let sc = example("race-counter.toml");
    let o = ExploreOptions {
        time: Some(Duration::from_secs(1)),
        ..opts(usize::MAX)
    };
    for jobs in [1, 2] {
        let r = explore_jobs(&sc, &o, jobs, None, Arc::new(|_| {}));
        assert!(
            r.seconds >= 1.0,
            "jobs {jobs}: stopped after {} s",
            r.seconds
        );
        assert!(r.seconds < 60.0, "jobs {jobs}: ran {} s", r.seconds);
        assert!(r.schedules > 0 && r.failures.is_empty(), "{r:?}");
    }
}
