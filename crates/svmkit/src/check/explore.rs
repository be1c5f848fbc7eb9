//! Schedule exploration over shuttle.
//!
//! The closure runs inside a shuttle execution; svmkit marks each execution for the
//! sync facade ([`crate::sync::in_explorer`]), so the locks and threads it creates are
//! shuttle's while the caller's stay std's.

use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use shuttle::scheduler::{PctScheduler, RandomScheduler, Scheduler};
use shuttle::{Config, Runner};
use shuttle_engine::runtime::execution::CurrentSchedule;
use shuttle_engine::scheduler::serialization::serialize_schedule;

use crate::sync::mode::ExplorationScope;

/// A schedule-exploration strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// Uniformly random choice at every scheduling point.
    Random,
    /// Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010): random thread
    /// priorities with `pct_depth - 1` priority-change points; finds bugs of small depth
    /// with a guaranteed probability per iteration.
    Pct,
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchedulerKind::Random => "random",
            SchedulerKind::Pct => "pct",
        })
    }
}

/// How much to explore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExploreConfig {
    /// Iterations (schedules) per scheduler.
    pub iterations: usize,
    /// PCT bug depth.
    pub pct_depth: usize,
    /// Seed of the schedulers' random choices: the same seed explores the same schedules.
    pub seed: u64,
    /// Which schedulers to run, in order.
    pub schedulers: Vec<SchedulerKind>,
    /// Scheduling steps after which one iteration counts as a livelock failure.
    pub max_steps: usize,
}

impl ExploreConfig {
    /// Random then PCT (depth 3), `iterations` schedules each, a fixed seed.
    ///
    /// The environment can raise or lower the effort without recompiling:
    /// `SVMKIT_ITERS` replaces `iterations` and `SVMKIT_SEED` the seed.
    pub fn new(iterations: usize) -> Self {
        let env_num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        ExploreConfig {
            iterations: env_num("SVMKIT_ITERS").map_or(iterations, |v| v as usize),
            pct_depth: 3,
            seed: env_num("SVMKIT_SEED").unwrap_or(0x5eed_0f5c_4ed0_1e00),
            schedulers: vec![SchedulerKind::Random, SchedulerKind::Pct],
            max_steps: 200_000,
        }
    }

    /// Total schedules this configuration runs.
    pub fn total_iterations(&self) -> usize {
        self.iterations * self.schedulers.len()
    }
}

/// What a passing exploration covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExploreReport {
    /// Completed schedules per scheduler.
    pub runs: Vec<(SchedulerKind, usize)>,
}

impl ExploreReport {
    /// Schedules explored in all.
    pub fn schedules(&self) -> usize {
        self.runs.iter().map(|r| r.1).sum()
    }
}

/// A failing schedule: what went wrong and how to reproduce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExploreFailure {
    /// The scheduler that found it (`None` for a replay).
    pub scheduler: Option<SchedulerKind>,
    /// The panic message (failed assertion, deadlock report, step bound).
    pub message: String,
    /// The schedule, encoded for [`replay`].
    pub schedule: String,
    /// Schedules this scheduler ran up to and including the failing one (1 for a
    /// replay): how hard the failure was to find.
    pub schedules_run: usize,
}

impl fmt::Display for ExploreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheduler {
            Some(k) => write!(
                f,
                "schedule exploration ({k}) failed at schedule {}: {}",
                self.schedules_run, self.message
            )?,
            None => write!(f, "replayed schedule failed: {}", self.message)?,
        }
        write!(
            f,
            "\nreplay with svmkit::check::replay(closure, \"{}\")",
            self.schedule
        )
    }
}

impl std::error::Error for ExploreFailure {}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

fn shuttle_config(max_steps: usize) -> Config {
    let mut config = Config::new();
    config.max_steps = shuttle::MaxSteps::FailAfter(max_steps);
    config
}

/// Runs `f` under a scheduler; on failure returns the message, the schedule of the
/// failing iteration (which shuttle keeps in a thread-local of the runner's thread) and
/// how many schedules ran.
fn run_one<S: Scheduler + 'static>(
    scheduler: S,
    config: Config,
    f: Arc<dyn Fn() + Send + Sync>,
) -> Result<usize, (String, String, usize)> {
    let runner = Runner::new(scheduler, config);
    let started = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&started);
    let scope = ExplorationScope::enter();
    let os_thread = scope.os_thread();
    match panic::catch_unwind(AssertUnwindSafe(move || {
        runner.run(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            ExplorationScope::begin_execution(os_thread);
            f()
        })
    })) {
        Ok(n) => Ok(n),
        Err(payload) => {
            let schedule = serialize_schedule(&CurrentSchedule::get_schedule());
            Err((
                panic_message(payload.as_ref()),
                schedule,
                started.load(Ordering::Relaxed),
            ))
        }
    }
}

/// Explores schedules of `f` with each configured scheduler. Returns the first failure
/// (also printed to stderr with its replay string) or a report of what was covered.
///
/// ```
/// use svmkit::check::{explore, ExploreConfig};
/// use svmkit::sync::{thread, Arc, Mutex};
///
/// let report = explore(&ExploreConfig::new(100), || {
///     let m = Arc::new(Mutex::new(0));
///     let m2 = Arc::clone(&m);
///     let t = thread::spawn(move || *m2.lock() += 1);
///     *m.lock() += 1;
///     t.join().unwrap();
///     assert_eq!(*m.lock(), 2);
/// })
/// .unwrap();
/// assert_eq!(report.schedules(), 200);
/// ```
pub fn explore<F>(config: &ExploreConfig, f: F) -> Result<ExploreReport, ExploreFailure>
where
    F: Fn() + Send + Sync + 'static,
{
    let f: Arc<dyn Fn() + Send + Sync> = Arc::new(f);
    let mut runs = Vec::new();
    for &kind in &config.schedulers {
        let sc = shuttle_config(config.max_steps);
        let result = match kind {
            SchedulerKind::Random => run_one(
                RandomScheduler::new_from_seed(config.seed, config.iterations),
                sc,
                Arc::clone(&f),
            ),
            SchedulerKind::Pct => run_one(
                PctScheduler::new_from_seed(config.seed, config.pct_depth, config.iterations),
                sc,
                Arc::clone(&f),
            ),
        };
        match result {
            Ok(n) => runs.push((kind, n)),
            Err((message, schedule, schedules_run)) => {
                let failure = ExploreFailure {
                    scheduler: Some(kind),
                    message,
                    schedule,
                    schedules_run,
                };
                eprintln!("svmkit: {failure}");
                return Err(failure);
            }
        }
    }
    Ok(ExploreReport { runs })
}

/// Runs `f` once under the schedule a failure reported, reproducing it.
pub fn replay<F>(f: F, schedule: &str) -> Result<(), ExploreFailure>
where
    F: Fn() + Send + Sync + 'static,
{
    let f: Arc<dyn Fn() + Send + Sync> = Arc::new(f);
    let schedule_owned = schedule.to_string();
    let scope = ExplorationScope::enter();
    let os_thread = scope.os_thread();
    match panic::catch_unwind(AssertUnwindSafe(move || {
        shuttle::replay(
            move || {
                ExplorationScope::begin_execution(os_thread);
                f()
            },
            &schedule_owned,
        )
    })) {
        Ok(()) => Ok(()),
        Err(payload) => Err(ExploreFailure {
            scheduler: None,
            message: panic_message(payload.as_ref()),
            schedule: schedule.to_string(),
            schedules_run: 1,
        }),
    }
}
