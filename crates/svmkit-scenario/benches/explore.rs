//! Schedules per second of `svmkit explore`, next to baselines measured in the same
//! run (these machines are noisy: read the ratios).
//!
//! * `explore/library_exclusivity_4_threads` (baseline): the exclusivity race written
//!   in Rust against the library (crates/svmkit/tests/shuttle_svm.rs's
//!   `exclusivity_scenario`: a device doing 2 atomics, a CPU increment, munmap of the
//!   neighbour page and fork, a monitor), explored with `svmkit::check::explore`.
//! * `explore/scenario_exclusivity_4_threads`: the same race as a scenario file
//!   (examples/race-exclusivity.toml) through the scenario explorer, which also
//!   records every step for the account and checks the device invariants after each.
//! * `explore/scenario_counter_2_threads`: examples/race-counter.toml, one CPU thread
//!   and one svm_atomic device incrementing one counter twice each.
//! * `explore/counter_jobs_1` and `explore/counter_jobs_2`: the counter with one and
//!   two workers (`--jobs`), same total schedules; their ratio is the parallel speedup.
//!
//! Each iteration is one schedule (criterion's throughput is schedules/s); a
//! measurement explores a batch and divides.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use svmkit::Profile;
use svmkit::check::{ExploreConfig, SchedulerKind};
use svmkit::device::svm_atomic::SvmFlaws;
use svmkit_scenario::explore::{ExploreOptions, explore, explore_jobs};

/// The allocator of the `svmkit` binary (crates/svmkit-cli/src/main.rs), so that the
/// rates are the command's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The library baseline is the very scenario crates/svmkit/tests/shuttle_svm.rs
// explores.
#[path = "../../svmkit/tests/common/explored.rs"]
mod explored;

fn scenario(name: &str) -> svmkit_scenario::Scenario {
    let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).unwrap();
    svmkit_scenario::parse(&path, &src).unwrap()
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("explore");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(10);
    let batch = |iters: u64| (iters as usize).max(1);
    g.bench_function("library_exclusivity_4_threads", |b| {
        b.iter_custom(|iters| {
            let mut config = ExploreConfig::new(batch(iters));
            config.schedulers = vec![SchedulerKind::Random];
            let t = Instant::now();
            svmkit::check::explore(&config, || {
                explored::exclusivity_scenario(Profile::linux_6_15(), SvmFlaws::default())
            })
            .unwrap();
            t.elapsed()
        })
    });
    for (id, file) in [
        ("scenario_exclusivity_4_threads", "race-exclusivity.toml"),
        ("scenario_counter_2_threads", "race-counter.toml"),
    ] {
        let sc = scenario(file);
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let opts = ExploreOptions {
                    schedules: batch(iters),
                    ..ExploreOptions::default()
                };
                let t = Instant::now();
                let r = explore(&sc, &opts, Arc::new(|_| {}));
                assert!(r.failure.is_none());
                t.elapsed()
            })
        });
    }
    let sc = scenario("race-counter.toml");
    for jobs in [1usize, 2] {
        g.bench_function(format!("counter_jobs_{jobs}"), |b| {
            b.iter_custom(|iters| {
                let opts = ExploreOptions {
                    schedules: batch(iters).max(2000),
                    ..ExploreOptions::default()
                };
                let t = Instant::now();
                let r = explore_jobs(&sc, &opts, jobs, None, Arc::new(|_| {}));
                assert!(r.failures.is_empty());
                // Per schedule, whatever the batch was rounded up to.
                t.elapsed()
                    .mul_f64(batch(iters) as f64 / r.schedules as f64)
            })
        });
    }
    g.finish();
}

criterion_group!(explore_benches, benches);
criterion_main!(explore_benches);
