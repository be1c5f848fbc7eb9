//! The exploration library: the bounded depth-first search, progress reports, time
//! limits, failure statistics and minimisation. Not gated by the `shuttle` feature: the
//! sync facade switches to shuttle's primitives at run time, inside the explored closure,
//! and these closures are small.

use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use svmkit::check::{
    ExploreConfig, ExploreFailure, ExploreProgress, SchedulerKind, explore, explore_with_progress,
    minimise, replay,
};
use svmkit::sync::{Arc, Mutex, thread, yield_now};

/// A configuration running only `kinds`, `iterations` each (not `SVMKIT_ITERS`: the
/// expected numbers below depend on it).
fn config(kinds: &[SchedulerKind], iterations: usize) -> ExploreConfig {
    let mut config = ExploreConfig::new(iterations);
    config.iterations = iterations;
    config.schedulers = kinds.to_vec();
    config
}

fn dfs(bound: usize, iterations: usize) -> ExploreConfig {
    let mut config = config(&[SchedulerKind::Dfs], iterations);
    config.preemption_bound = bound;
    config
}

/// The main task spawns one thread; each then takes and releases one lock twice.
fn two_threads_two_pairs() {
    let m = Arc::new(Mutex::new(0u32));
    let m2 = Arc::clone(&m);
    let t = thread::spawn(move || {
        for _ in 0..2 {
            *m2.lock() += 1;
        }
    });
    for _ in 0..2 {
        *m.lock() += 1;
    }
    t.join().unwrap();
}

// How the expected schedule counts of `two_threads_two_pairs` are derived.
//
// Scheduling points (shuttle 0.9.10 / shuttle-engine 0.1.8): a spawn switches before it
// creates the task (only the main task T0 exists then); a lock switches before taking a
// free mutex, but not before blocking on a held one (shuttle's mutex is an unfair
// semaphore, which skips that switch as blocking commutes); an unlock switches before
// releasing, and the release wakes the waiters; a task that takes the mutex re-blocks
// the waiters woken for it; a woken waiter retakes it without switching; a join of an
// unfinished thread blocks without switching first (of a finished one, it switches);
// the main task switches before it exits, a spawned thread does not. With two tasks
// the non-preemptive choice is always unique (continue the current task, or run the
// only other one), so a schedule is fixed by its preemptions, and the count is
// 1 + (preemption opportunities on the non-preemptive schedule) + (opportunities after
// each first preemption) + ...; an opportunity is a switch point of a task where the
// other task is runnable.
//
// Non-preemptive schedule: T0 runs a L1, b U1, c L2, d U2 with T1 runnable (4
// opportunities), blocks in join; T1 runs alone (T0 blocked), finishes; T0 exits.
// Bound 0: 1 schedule. Bound 1: 1 + 4 = 5.
// After the first preemption, to T1:
//   at a (T0 has not taken the lock yet): T1 runs all 4 of its points with T0 runnable: 4;
//   at b (T0 holds it): T1 blocks on the lock without a switch, T0 releases it (waking
//     T1) and runs c with T1 runnable (1), retakes the lock (re-blocking T1), runs d with
//     T1 blocked, blocks in join; T1 runs alone: 1;
//   at c (T0 has released it, not retaken it): like a: 4;
//   at d (T0 holds it): T1 blocks, T0 releases, blocks in join; T1 alone: 0.
// Bound 2: 5 + 4 + 1 + 4 + 0 = 14.
const TWO_PAIRS_BOUND_0: usize = 1;
const TWO_PAIRS_BOUND_1: usize = 5;
const TWO_PAIRS_BOUND_2: usize = 14;

#[test]
fn dfs_covers_the_bounded_space_exactly() {
    for (bound, expected) in [
        (0, TWO_PAIRS_BOUND_0),
        (1, TWO_PAIRS_BOUND_1),
        (2, TWO_PAIRS_BOUND_2),
    ] {
        let report = explore(&dfs(bound, 10_000), two_threads_two_pairs).unwrap();
        assert_eq!(
            report.runs,
            vec![(SchedulerKind::Dfs, expected)],
            "bound {bound}"
        );
        assert!(report.exhausted, "bound {bound}");
        assert!(!report.timed_out);
    }
}

#[test]
fn dfs_stops_at_its_iterations_unexhausted() {
    let report = explore(&dfs(2, 7), two_threads_two_pairs).unwrap();
    assert_eq!(report.schedules(), 7);
    assert!(!report.exhausted);
    // Exactly as many iterations as the space has: covered, and known to be.
    let report = explore(&dfs(2, TWO_PAIRS_BOUND_2), two_threads_two_pairs).unwrap();
    assert_eq!(report.schedules(), TWO_PAIRS_BOUND_2);
    assert!(report.exhausted);
}

const LOST_UPDATE: &str = "lost update";

/// Two threads increment a counter, reading it in one critical section and writing it
/// back in another: an update is lost if one reads between the other's read and write.
fn lost_update() {
    let m = Arc::new(Mutex::new(0u32));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let m = Arc::clone(&m);
            thread::spawn(move || {
                let v = *m.lock();
                *m.lock() = v + 1;
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*m.lock(), 2, "{LOST_UPDATE}");
}

#[test]
fn dfs_finds_a_lost_update_with_one_preemption() {
    // Without preemptions each thread runs its two critical sections back to back (it
    // never blocks: nothing else runs while it holds the lock).
    let report = explore(&dfs(0, 10_000), lost_update).unwrap();
    assert!(report.exhausted);
    // One preemption suffices: the first thread is switched away from between its
    // sections, the second runs whole, the first writes back a stale value.
    let failure = explore(&dfs(1, 10_000), lost_update).unwrap_err();
    assert_eq!(failure.scheduler, Some(SchedulerKind::Dfs));
    assert!(failure.message.contains(LOST_UPDATE), "{failure}");
    assert_eq!(failure.preemptions, 1, "{failure}");
    let replayed = replay(lost_update, &failure.schedule).unwrap_err();
    assert_eq!(replayed.message, failure.message);
    assert_eq!(
        (replayed.preemptions, replayed.steps),
        (failure.preemptions, failure.steps)
    );
}

/// The lost update among threads that only make noise: they take other locks and yield.
/// The incrementers yield between their critical sections.
fn noisy_lost_update() {
    noisy(true)
}

/// [`noisy_lost_update`] with incrementers that do not yield between their sections:
/// the lost update then needs a preemption.
fn noisy_lost_update_unyielding() {
    noisy(false)
}

fn noisy(yield_between: bool) {
    let m = Arc::new(Mutex::new(0u32));
    let noise = Arc::new(Mutex::new(0u32));
    let mut threads: Vec<_> = (0..2)
        .map(|_| {
            let m = Arc::clone(&m);
            let noise = Arc::clone(&noise);
            thread::spawn(move || {
                *noise.lock() += 1;
                let v = *m.lock();
                if yield_between {
                    yield_now();
                }
                *noise.lock() += 1;
                *m.lock() = v + 1;
            })
        })
        .collect();
    threads.extend((0..2).map(|_| {
        let noise = Arc::clone(&noise);
        thread::spawn(move || {
            for _ in 0..4 {
                *noise.lock() += 1;
                yield_now();
            }
        })
    }));
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*m.lock(), 2, "{LOST_UPDATE}");
}

fn first_random_failure(f: fn()) -> ExploreFailure {
    explore(&config(&[SchedulerKind::Random], 1_000), f).unwrap_err()
}

#[test]
fn failures_record_their_schedule_statistics() {
    let failure = first_random_failure(noisy_lost_update);
    assert!(failure.steps > 0);
    assert!(failure.preemptions <= failure.steps);
    let replayed = replay(noisy_lost_update, &failure.schedule).unwrap_err();
    assert_eq!(
        (replayed.preemptions, replayed.steps),
        (failure.preemptions, failure.steps)
    );
    assert_eq!(replayed.schedules_run, 1);
}

#[test]
fn minimise_shrinks_a_random_failure() {
    let failure = first_random_failure(noisy_lost_update);
    let started = Instant::now();
    let min = minimise(
        noisy_lost_update,
        &failure,
        |m| m.contains(LOST_UPDATE),
        Duration::from_secs(60),
    );
    eprintln!(
        "minimised in {:?}: {} preemptions, {} steps -> {} preemptions, {} steps",
        started.elapsed(),
        failure.preemptions,
        failure.steps,
        min.preemptions,
        min.steps
    );
    assert!(min.message.contains(LOST_UPDATE));
    assert!(
        (min.preemptions, min.steps) <= (failure.preemptions, failure.steps),
        "{min}"
    );
    // The incrementers yield between their critical sections, and a switch at a yield is
    // no preemption: the lost update needs none here (from a random schedule's many).
    assert_eq!(min.preemptions, 0, "{min}");
    let replayed = replay(noisy_lost_update, &min.schedule).unwrap_err();
    assert_eq!(replayed.message, min.message);
    assert_eq!(
        (replayed.preemptions, replayed.steps),
        (min.preemptions, min.steps)
    );
}

#[test]
fn minimise_shrinks_to_the_one_preemption_needed() {
    // Without preemptions the unyielding lost update cannot happen: a bound-0 search of
    // it passes, exhaustively.
    let report = explore(&dfs(0, 1_000_000), noisy_lost_update_unyielding).unwrap();
    assert!(report.exhausted);
    eprintln!("bound-0 space of the unyielding noisy lost update: {report}");
    let failure = first_random_failure(noisy_lost_update_unyielding);
    let min = minimise(
        noisy_lost_update_unyielding,
        &failure,
        |m| m.contains(LOST_UPDATE),
        Duration::from_secs(60),
    );
    eprintln!(
        "minimised: {} preemptions, {} steps -> {} preemptions, {} steps",
        failure.preemptions, failure.steps, min.preemptions, min.steps
    );
    assert!(failure.preemptions > 1, "{failure}");
    assert_eq!(min.preemptions, 1, "{min}");
    let replayed = replay(noisy_lost_update_unyielding, &min.schedule).unwrap_err();
    assert_eq!(replayed.message, min.message);
    assert_eq!(
        (replayed.preemptions, replayed.steps),
        (min.preemptions, min.steps)
    );
}

#[test]
fn minimise_returns_an_unreproducible_failure_unchanged() {
    let failure = first_random_failure(noisy_lost_update);
    // `same` rejects every message: nothing to shrink towards.
    let min = minimise(
        noisy_lost_update,
        &failure,
        |_| false,
        Duration::from_secs(5),
    );
    assert_eq!(min, failure);
}

#[test]
fn time_limit_stops_a_long_exploration_without_failure() {
    let mut config = config(&[SchedulerKind::Random, SchedulerKind::Pct], usize::MAX);
    config.time_limit = Some(Duration::from_millis(300));
    let started = Instant::now();
    let report = explore(&config, two_threads_two_pairs).unwrap();
    let elapsed = started.elapsed();
    assert!(report.timed_out);
    assert!(!report.exhausted);
    // The random run used all the time: the PCT one never started.
    assert_eq!(report.runs.len(), 1);
    assert!(report.schedules() > 0);
    assert!(elapsed >= Duration::from_millis(300));
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
}

#[test]
fn progress_is_reported_once_per_schedule() {
    let mut config = config(
        &[
            SchedulerKind::Random,
            SchedulerKind::Pct,
            SchedulerKind::Dfs,
        ],
        10,
    );
    config.preemption_bound = 2;
    let seen: Arc<StdMutex<Vec<ExploreProgress>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let report = {
        let (seen, calls) = (Arc::clone(&seen), Arc::clone(&calls));
        explore_with_progress(
            &config,
            two_threads_two_pairs,
            Arc::new(move |p: ExploreProgress| {
                calls.fetch_add(1, Ordering::Relaxed);
                seen.lock().unwrap().push(p);
            }),
        )
        .unwrap()
    };
    // 10 random, 10 PCT, 10 of the 14 depth-first schedules.
    assert_eq!(report.schedules(), 30);
    assert_eq!(calls.load(Ordering::Relaxed), 30);
    let seen = seen.lock().unwrap();
    for (i, p) in seen.iter().enumerate() {
        assert_eq!(p.schedules, i + 1);
        let kind = [
            SchedulerKind::Random,
            SchedulerKind::Pct,
            SchedulerKind::Dfs,
        ][i / 10];
        assert_eq!(p.scheduler, kind);
        if i > 0 {
            assert!(p.elapsed >= seen[i - 1].elapsed);
        }
    }
}

#[test]
fn progress_stops_at_a_failure() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let failure = explore_with_progress(
        &dfs(1, 10_000),
        lost_update,
        Arc::new(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        }),
    )
    .unwrap_err();
    // Every schedule before the failing one completed.
    assert_eq!(calls.load(Ordering::Relaxed), failure.schedules_run - 1);
}

#[test]
fn scheduler_names_round_trip() {
    for kind in [
        SchedulerKind::Random,
        SchedulerKind::Pct,
        SchedulerKind::Dfs,
    ] {
        assert_eq!(SchedulerKind::from_name(&kind.to_string()), Some(kind));
    }
    assert_eq!(SchedulerKind::from_name("bfs"), None);
    assert_eq!(SchedulerKind::from_name("DFS"), None);
}

#[test]
fn an_unreadable_schedule_is_a_failure_not_a_panic() {
    let failure = replay(lost_update, "not a schedule").unwrap_err();
    assert!(failure.message.contains("invalid schedule"), "{failure}");
    assert_eq!(failure.steps, 0);
    let mut garbled = first_random_failure(lost_update);
    garbled.schedule = String::new();
    let min = minimise(lost_update, &garbled, |_| true, Duration::from_secs(1));
    assert_eq!(min, garbled);
}

#[test]
fn minimise_reads_only_the_schedule() {
    // A failure known only by its schedule string (say, saved by a previous run).
    let found = first_random_failure(noisy_lost_update_unyielding);
    let bare = ExploreFailure {
        scheduler: None,
        message: String::new(),
        schedule: found.schedule.clone(),
        schedules_run: 1,
        preemptions: 0,
        steps: 0,
        max_steps: None,
    };
    let min = minimise(
        noisy_lost_update_unyielding,
        &bare,
        |m| m.contains(LOST_UPDATE),
        Duration::from_secs(60),
    );
    assert!(min.message.contains(LOST_UPDATE));
    assert!((min.preemptions, min.steps) <= (found.preemptions, found.steps));
    assert_eq!(min.preemptions, 1, "{min}");
}

#[test]
fn a_task_alone_takes_locks_without_scheduling_points() {
    // 1000 lock round trips by the main task before it spawns and after it joins,
    // under a bound of 100 scheduling steps: alone, the task has no one to switch to,
    // so its locks are no scheduling points (derived: the facade's design) and the
    // bound holds; the two tasks' locks in between still are.
    let mut c = config(&[SchedulerKind::Random], 50);
    c.max_steps = 100;
    let alone = |m: &Mutex<u32>| {
        for _ in 0..1000 {
            *m.lock() += 1;
        }
    };
    explore(&c, move || {
        let m = Arc::new(Mutex::new(0u32));
        alone(&m);
        let m2 = Arc::clone(&m);
        let t = thread::spawn(move || *m2.lock() += 1);
        *m.lock() += 1;
        t.join().unwrap();
        alone(&m);
        assert_eq!(*m.lock(), 2002);
    })
    .unwrap();
    // Round trips with a second task alive still meet the bound. The main task waits
    // in join, so the worker is the only runnable task and its points reach the
    // engine one in 64 times (derived: `sync::mode::pass_lone_point`): 10,000 round
    // trips are 20,000 points, some 312 engine steps.
    let failure = explore(&c, || {
        let m = Arc::new(Mutex::new(0u32));
        let t = thread::spawn(move || {
            for _ in 0..10_000 {
                *m.lock() += 1;
            }
        });
        t.join().unwrap();
    })
    .unwrap_err();
    assert!(failure.message.contains("max_steps"), "{}", failure.message);
    assert_eq!(failure.max_steps, Some(100));
}

#[test]
fn the_scheduling_point_hook_sees_a_state_between_two_locks() {
    // A task breaks an "invariant" under one lock and repairs it under another,
    // taking a third in between; no assertion at the end can see it, the hook at
    // every scheduling point does (where a lock was released and another task could
    // run: the main task, still taking its own locks).
    let body = |hooked: bool| {
        move || {
            let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
            if hooked {
                let b = Arc::clone(&broken);
                svmkit::check::at_every_scheduling_point(move || {
                    assert!(!b.load(Ordering::Relaxed), "invariant broken");
                });
            }
            let (a, m) = (Arc::new(Mutex::new(())), Arc::new(Mutex::new(0u32)));
            let (a2, m2, b2) = (Arc::clone(&a), Arc::clone(&m), Arc::clone(&broken));
            let t = thread::spawn(move || {
                {
                    let _a = a2.lock();
                    b2.store(true, Ordering::Relaxed);
                }
                *m2.lock() += 1;
                let _a = a2.lock();
                b2.store(false, Ordering::Relaxed);
            });
            for _ in 0..3 {
                *m.lock() += 1;
            }
            t.join().unwrap();
        }
    };
    let c = config(&[SchedulerKind::Random], 200);
    explore(&c, body(false)).unwrap();
    let failure = explore(&c, body(true)).unwrap_err();
    assert!(
        failure.message.contains("invariant broken"),
        "{}",
        failure.message
    );
    // Outside an exploration the hook is not installed: nothing runs, nothing fails.
    svmkit::check::at_every_scheduling_point(|| panic!("ran outside an exploration"));
    let m = Mutex::new(1);
    assert_eq!(*m.lock(), 1);
}

/// The main task spawns one thread (then calls `model_changed` if `change`); each
/// takes and releases one lock five times.
fn two_tasks_lock_five_times(change: bool) {
    let m = Arc::new(Mutex::new(0u32));
    let m2 = Arc::clone(&m);
    let t = thread::spawn(move || {
        for _ in 0..5 {
            *m2.lock() += 1;
        }
    });
    if change {
        svmkit::check::model_changed();
    }
    for _ in 0..5 {
        *m.lock() += 1;
    }
    t.join().unwrap();
}

/// Runs of a state-change hook in the non-preemptive schedule of two phases: two
/// tasks taking one lock five times each, the model unchanged; then the same after one
/// `model_changed`. The hook answers `first` at its first run, `true` after.
fn state_change_hook_runs(first: bool) -> (usize, usize) {
    let seen = Arc::new(StdMutex::new((0, 0)));
    let out = Arc::clone(&seen);
    explore(&dfs(0, 1), move || {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&runs);
        svmkit::check::at_every_state_change(move || {
            r.fetch_add(1, Ordering::Relaxed) > 0 || first
        });
        two_tasks_lock_five_times(false);
        let before = runs.load(Ordering::Relaxed);
        two_tasks_lock_five_times(true);
        *out.lock().unwrap() = (before, runs.load(Ordering::Relaxed));
    })
    .unwrap();
    seen.lock().map(|runs| *runs).unwrap()
}

#[test]
fn a_state_change_hook_runs_again_only_after_a_model_change_or_an_incomplete_read() {
    // Derived from the rule (crates/svmkit/src/sync/mode.rs, `at_scheduling_point`):
    // the first point after a release with another task runnable runs the hook; then
    // only a `model_changed` (or a `false` answer) makes a later such point run it.
    // Main's first lock after spawning is such a point in both phases.
    assert_eq!(state_change_hook_runs(true), (1, 2));
    // `false`: it read only part of the state, so the next such point runs it again.
    assert_eq!(state_change_hook_runs(false), (2, 3));
    // The plain hook, on the same schedule, runs at many more points.
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    explore(&dfs(0, 1), move || {
        let r = Arc::clone(&r);
        svmkit::check::at_every_scheduling_point(move || {
            r.fetch_add(1, Ordering::Relaxed);
        });
        two_tasks_lock_five_times(false);
    })
    .unwrap();
    assert!(runs.load(Ordering::Relaxed) > 2, "{runs:?}");
}

#[test]
fn peek_reads_a_free_mutex_and_not_a_held_one() {
    let m = Mutex::new(7);
    assert_eq!(m.peek(|v| *v), Some(7));
    let g = m.lock();
    assert_eq!(m.peek(|v| *v), None);
    drop(g);
    // Inside an exploration too, and without a scheduling point: under a bound of
    // 20 steps, 1000 peeks with a second task alive still pass.
    let mut c = config(&[SchedulerKind::Random], 20);
    c.max_steps = 20;
    explore(&c, || {
        let t = thread::spawn(|| {
            let m = Mutex::new(3);
            for _ in 0..1000 {
                assert_eq!(m.peek(|v| *v), Some(3));
            }
        });
        t.join().unwrap();
    })
    .unwrap();
}

/// The schedule hook (issue 17's `schedule` events) sees every choice among two or
/// more runnable tasks, names tasks as they were spawned, and the chosen one is runnable;
/// a choice that switches away from a running task that could go on is a preemption.
#[test]
fn the_schedule_hook_sees_each_choice_among_runnable_tasks() {
    static SEEN: StdMutex<Vec<(String, Vec<String>, bool)>> = StdMutex::new(Vec::new());
    SEEN.lock().unwrap().clear();
    let report = explore(&config(&[SchedulerKind::Random], 20), || {
        svmkit::check::on_every_schedule_choice(|chosen, runnable, preempts| {
            SEEN.lock()
                .unwrap()
                .push((chosen.to_string(), runnable.to_vec(), preempts));
        });
        let m = Arc::new(Mutex::new(0u32));
        let hs: Vec<_> = ["left", "right"]
            .into_iter()
            .map(|n| {
                let m = Arc::clone(&m);
                thread::spawn_named(n, move || {
                    for _ in 0..3 {
                        *m.lock() += 1;
                        yield_now();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock(), 6);
    })
    .unwrap();
    assert_eq!(report.schedules(), 20);
    let seen = SEEN.lock().unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|(c, r, _)| r.len() >= 2 && r.contains(c)),
        "{seen:?}"
    );
    assert!(seen.iter().any(|(c, _, _)| c == "left"), "{seen:?}");
    assert!(seen.iter().any(|(c, _, _)| c == "right"), "{seen:?}");
    assert!(
        seen.iter().any(|(_, _, p)| *p),
        "no preemption in 20 random schedules"
    );
}
