//! Schedule exploration over shuttle.
//!
//! The closure runs inside a shuttle execution; svmkit marks each execution for the
//! sync facade ([`crate::sync::in_explorer`]), so the locks and threads it creates are
//! shuttle's while the caller's stay std's.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shuttle::scheduler::{PctScheduler, RandomScheduler, ReplayScheduler};
use shuttle::{Config, Runner};
use shuttle_engine::runtime::execution::CurrentSchedule;
use shuttle_engine::scheduler::serialization::serialize_schedule;
use shuttle_engine::scheduler::{Schedule, Scheduler, Task, TaskId};

use super::dfs::{BoundedDfs, is_preemption};
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
    /// Bounded exhaustive search, depth first: every schedule with at most
    /// [`ExploreConfig::preemption_bound`] preemptions (switches away from a task that is
    /// still runnable and does not yield), up to [`ExploreConfig::iterations`] of them.
    /// Continuing a task that asked to yield while another could run, and waking a
    /// blocked task spuriously, also count against the bound, so that spin loops are
    /// explored finitely. The closure's random data is the same in every schedule.
    Dfs,
}

impl SchedulerKind {
    /// Every scheduler, in the order of their names.
    pub const ALL: [SchedulerKind; 3] = [
        SchedulerKind::Random,
        SchedulerKind::Pct,
        SchedulerKind::Dfs,
    ];

    /// The scheduler named `name` (`"random"`, `"pct"` or `"dfs"`, as [`Display`](fmt::Display)
    /// writes them), `None` for any other name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The scheduler's name.
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Random => "random",
            SchedulerKind::Pct => "pct",
            SchedulerKind::Dfs => "dfs",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How much to explore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExploreConfig {
    /// Iterations (schedules) per scheduler; for [`SchedulerKind::Dfs`], the most it runs
    /// before the bounded space is exhausted.
    pub iterations: usize,
    /// PCT bug depth.
    pub pct_depth: usize,
    /// Seed of the schedulers' random choices: the same seed explores the same schedules.
    pub seed: u64,
    /// Which schedulers to run, in order.
    pub schedulers: Vec<SchedulerKind>,
    /// Scheduling steps after which one iteration counts as a livelock failure.
    pub max_steps: usize,
    /// The most preemptions in a schedule [`SchedulerKind::Dfs`] explores.
    pub preemption_bound: usize,
    /// Wall-clock time after which the exploration stops, without failure, once the
    /// schedule running then has finished ([`ExploreReport::timed_out`]); `None`: no limit.
    pub time_limit: Option<Duration>,
}

impl ExploreConfig {
    /// Random then PCT (depth 3), `iterations` schedules each, a fixed seed; a
    /// preemption bound of 2 for a depth-first search, no time limit.
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
            preemption_bound: 2,
            time_limit: None,
        }
    }

    /// The most schedules this configuration runs.
    pub fn total_iterations(&self) -> usize {
        self.iterations.saturating_mul(self.schedulers.len())
    }
}

/// What a passing exploration covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExploreReport {
    /// Completed schedules per scheduler that ran (a time limit can leave later ones out).
    pub runs: Vec<(SchedulerKind, usize)>,
    /// Whether a [`SchedulerKind::Dfs`] run covered its whole bounded space (every
    /// schedule within the preemption bound) before its iteration limit.
    pub exhausted: bool,
    /// Whether the exploration stopped at [`ExploreConfig::time_limit`].
    pub timed_out: bool,
}

impl ExploreReport {
    /// Schedules explored in all.
    pub fn schedules(&self) -> usize {
        self.runs.iter().map(|r| r.1).sum()
    }
}

impl fmt::Display for ExploreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} schedules explored (", self.schedules())?;
        for (i, (kind, n)) in self.runs.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{kind} {n}")?;
        }
        f.write_str(")")?;
        if self.exhausted {
            f.write_str(", bounded space exhausted")?;
        }
        if self.timed_out {
            f.write_str(", stopped at the time limit")?;
        }
        Ok(())
    }
}

/// Progress of an exploration, reported after every completed schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExploreProgress {
    /// The scheduler running.
    pub scheduler: SchedulerKind,
    /// Schedules completed so far, by all schedulers.
    pub schedules: usize,
    /// Time since the exploration started.
    pub elapsed: Duration,
}

/// A progress callback ([`explore_with_progress`]).
pub type ProgressFn = Arc<dyn Fn(ExploreProgress) + Send + Sync>;

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
    /// Preemptions in the schedule: switches away from a task that was still runnable
    /// and had not asked to yield.
    pub preemptions: usize,
    /// Scheduling decisions (task steps) in the schedule.
    pub steps: usize,
    /// The step bound the schedule ran under (`None`: shuttle's default). A replay or a
    /// minimisation must run under the same bound, or a failure at the bound (a
    /// livelock) would not reproduce: the schedule would end before the bound does.
    pub max_steps: Option<usize>,
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
            "\n({} steps, {} preemptions) replay with svmkit::check::replay(closure, \"{}\")",
            self.steps, self.preemptions, self.schedule
        )
    }
}

impl std::error::Error for ExploreFailure {}

pub(super) fn panic_message(payload: &(dyn Any + Send)) -> String {
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
    // svmkit reports a failing schedule itself (ExploreFailure carries it).
    config.failure_persistence = shuttle::FailurePersistence::None;
    config.max_steps = shuttle::MaxSteps::FailAfter(max_steps);
    config
}

/// What a [`Tracked`] scheduler tells its caller, who cannot reach it inside shuttle's
/// runner (and who reads it after a failing execution has unwound out of the runner).
#[derive(Debug, Default)]
struct Tally {
    /// Executions started.
    started: Cell<usize>,
    /// Task steps of the current execution.
    steps: Cell<usize>,
    /// Preemptions of the current execution ([`is_preemption`]).
    preemptions: Cell<usize>,
    /// Whether the deadline stopped the run.
    timed_out: Cell<bool>,
}

/// Where a tracked run reports progress.
struct Progress {
    report: ProgressFn,
    scheduler: SchedulerKind,
    /// Schedules completed by the schedulers that ran before.
    before: usize,
    start: Instant,
}

/// Wraps a scheduler: counts the steps and preemptions of each execution, reports each
/// completed one, and stops at a deadline between executions.
struct Tracked<S> {
    inner: S,
    tally: Rc<Tally>,
    progress: Option<Progress>,
    deadline: Option<Instant>,
}

impl<S: Scheduler> Scheduler for Tracked<S> {
    fn new_execution(&mut self) -> Option<Schedule> {
        let tally = &self.tally;
        if self.progress.is_some() || self.deadline.is_some() {
            let now = Instant::now();
            // An execution started and the runner asks for the next one: it passed.
            if let Some(p) = &self.progress
                && tally.started.get() > 0
            {
                (p.report)(ExploreProgress {
                    scheduler: p.scheduler,
                    schedules: p.before + tally.started.get(),
                    elapsed: now.duration_since(p.start),
                });
            }
            if self.deadline.is_some_and(|d| now >= d) {
                tally.timed_out.set(true);
                return None;
            }
        }
        let schedule = self.inner.new_execution()?;
        tally.started.set(tally.started.get() + 1);
        tally.steps.set(0);
        tally.preemptions.set(0);
        Some(schedule)
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> Option<TaskId> {
        let choice = self.inner.next_task(runnable, current, is_yielding)?;
        let tally = &self.tally;
        tally.steps.set(tally.steps.get() + 1);
        let preempts = is_preemption(runnable, current, is_yielding, choice);
        if preempts {
            tally.preemptions.set(tally.preemptions.get() + 1);
        }
        // Only a choice among several tasks is a decision worth recording.
        if runnable.len() > 1
            && let Some(hook) = crate::sync::mode::schedule_hook()
        {
            let name = |t: &Task| t.name().unwrap_or_else(|| format!("task {:?}", t.id()));
            let names: Vec<String> = runnable.iter().map(|t| name(t)).collect();
            let chosen = runnable
                .iter()
                .find(|t| t.id() == choice)
                .map_or_else(|| format!("task {choice:?}"), |t| name(t));
            hook(&chosen, &names, preempts);
        }
        Some(choice)
    }

    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
}

/// How a passing tracked run ended.
struct RunOutcome {
    schedules: usize,
    timed_out: bool,
}

/// Runs `f` under `scheduler` (each execution in an [`ExplorationScope`]); on failure
/// returns the message, the schedule of the failing execution (which shuttle keeps in a
/// thread-local of the runner's thread), its statistics and how many schedules ran.
fn run_tracked<S: Scheduler + 'static>(
    scheduler: S,
    kind: Option<SchedulerKind>,
    config: Config,
    f: Arc<dyn Fn() + Send + Sync>,
    progress: Option<Progress>,
    deadline: Option<Instant>,
) -> Result<RunOutcome, ExploreFailure> {
    let tally = Rc::new(Tally::default());
    let tracked = Tracked {
        inner: scheduler,
        tally: Rc::clone(&tally),
        progress,
        deadline,
    };
    let max_steps = match config.max_steps {
        shuttle::MaxSteps::FailAfter(n) | shuttle::MaxSteps::ContinueAfter(n) => Some(n),
        _ => None,
    };
    let runner = Runner::new(tracked, config);
    let scope = ExplorationScope::enter();
    let os_thread = scope.os_thread();
    let result = panic::catch_unwind(AssertUnwindSafe(move || {
        runner.run(move || {
            ExplorationScope::begin_execution(os_thread);
            f()
        })
    }));
    drop(scope);
    match result {
        Ok(schedules) => Ok(RunOutcome {
            schedules,
            timed_out: tally.timed_out.get(),
        }),
        Err(payload) => Err(ExploreFailure {
            scheduler: kind,
            message: panic_message(payload.as_ref()),
            schedule: serialize_schedule(&CurrentSchedule::get_schedule()),
            schedules_run: tally.started.get(),
            preemptions: tally.preemptions.get(),
            steps: tally.steps.get(),
            max_steps,
        }),
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
    explore_impl(config, Arc::new(f), None)
}

/// [`explore`], calling `progress` after every completed schedule (from the exploring
/// thread, between schedules: keep it cheap, it delays the next one).
pub fn explore_with_progress<F>(
    config: &ExploreConfig,
    f: F,
    progress: ProgressFn,
) -> Result<ExploreReport, ExploreFailure>
where
    F: Fn() + Send + Sync + 'static,
{
    explore_impl(config, Arc::new(f), Some(progress))
}

fn explore_impl(
    config: &ExploreConfig,
    f: Arc<dyn Fn() + Send + Sync>,
    progress: Option<ProgressFn>,
) -> Result<ExploreReport, ExploreFailure> {
    let start = Instant::now();
    let deadline = config.time_limit.map(|t| start + t);
    let mut report = ExploreReport {
        runs: Vec::new(),
        exhausted: false,
        timed_out: false,
    };
    let quiet = progress.is_some();
    for &kind in &config.schedulers {
        let progress = progress.as_ref().map(|report_fn| Progress {
            report: Arc::clone(report_fn),
            scheduler: kind,
            before: report.schedules(),
            start,
        });
        let sc = shuttle_config(config.max_steps);
        let f = Arc::clone(&f);
        let exhausted = Rc::new(Cell::new(false));
        let result = match kind {
            SchedulerKind::Random => run_tracked(
                RandomScheduler::new_from_seed(config.seed, config.iterations),
                Some(kind),
                sc,
                f,
                progress,
                deadline,
            ),
            SchedulerKind::Pct => run_tracked(
                PctScheduler::new_from_seed(config.seed, config.pct_depth, config.iterations),
                Some(kind),
                sc,
                f,
                progress,
                deadline,
            ),
            SchedulerKind::Dfs => run_tracked(
                BoundedDfs::new(
                    config.preemption_bound,
                    config.iterations,
                    config.seed,
                    Rc::clone(&exhausted),
                ),
                Some(kind),
                sc,
                f,
                progress,
                deadline,
            ),
        };
        match result {
            Ok(outcome) => {
                report.runs.push((kind, outcome.schedules));
                report.exhausted |= exhausted.get();
                if outcome.timed_out {
                    report.timed_out = true;
                    break;
                }
            }
            Err(failure) => {
                // Tests call `explore` and print nothing else: say how to replay. A
                // caller with a progress callback reports the failure itself.
                if !quiet {
                    eprintln!("svmkit: {failure}");
                }
                return Err(failure);
            }
        }
    }
    Ok(report)
}

/// Runs `hook` at every scheduling point of the running execution from now on, just
/// before the scheduler chooses who runs next: every lock taken, every yield, of every
/// task, except where no facade lock was released since the hook last ran (the model
/// changes what other tasks see only under locks, so nothing new could be seen there).
/// A panic in `hook` fails the schedule there, as a failed assertion would. This
/// is how an invariant is checked at every state another task could observe; the hook
/// must take no facade lock that could block (read with [`Mutex::peek`](crate::sync::Mutex::peek)
/// and atomics: [`System::check_devices_now`](crate::System::check_devices_now) does),
/// and should hold only weak references to model objects, since it is dropped when
/// the execution ends. A facade lock the hook takes does not run it again.
///
/// Outside an exploration (on OS threads) it does nothing.
pub fn at_every_scheduling_point(hook: impl Fn() + 'static) {
    if crate::sync::mode::current_execution() != 0 {
        crate::sync::mode::set_hook(
            Some(Rc::new(move || {
                hook();
                true
            })),
            false,
        );
    }
}

/// [`at_every_scheduling_point`] for a hook that reads only the model state whose
/// changes [`model_changed`] counts (device tables and the page tables they mirror,
/// interval-notifier trees, notifier recorders, as
/// [`System::check_devices_now_complete`](crate::System::check_devices_now_complete)
/// and [`Mm::check_notifiers_now_complete`](crate::mm::Mm::check_notifiers_now_complete)
/// read): it is also skipped where no such change happened since it last returned
/// `true`, since it would read what it read then. It returns `false` when it could
/// not read everything (a lock it peeks was held), to run again at the next point.
///
/// Outside an exploration (on OS threads) it does nothing.
pub fn at_every_state_change(hook: impl Fn() -> bool + 'static) {
    if crate::sync::mode::current_execution() != 0 {
        crate::sync::mode::set_hook(Some(Rc::new(hook)), true);
    }
}

/// Counts a change of state that [`at_every_state_change`] hooks may read. The model
/// calls it wherever it changes that state: a page-table word, a frame's contents, a
/// device table entry, an interval-notifier tree or sequence, a notifier recorder's
/// open ranges, an mm's user count reaching zero, an mm created or freed, a device
/// registered, a stale device access recorded or taken. Code outside svmkit that
/// keeps state such a hook reads (its own [`SecondaryMmu`](crate::mm::SecondaryMmu),
/// say) calls it on each change of that state. One thread-local add.
#[inline]
pub fn model_changed() {
    crate::sync::mode::model_changed();
}

/// How many [`model_changed`] calls this OS thread has made (an exploration's tasks
/// all run on one): equal values mean no change in between.
pub fn model_generation() -> u64 {
    crate::sync::mode::model_changes()
}

/// Inside an exploration (or a replay): calls `hook` at every choice the scheduler
/// makes from now on in this execution among two or more runnable tasks, with the
/// chosen task's name, every runnable
/// task's name and whether the choice preempts the running task. The hook runs in the
/// scheduler, between two task steps: it must not take a facade lock (a trace record
/// is the use: [`crate::trace::Tracer::schedule_choice`]). Does nothing outside an
/// exploration.
pub fn on_every_schedule_choice(hook: impl Fn(&str, &[String], bool) + 'static) {
    if crate::sync::mode::current_execution() != 0 {
        crate::sync::mode::set_schedule_hook(Some(Rc::new(hook)));
    }
}

/// Runs `f` once under the schedule a failure reported, reproducing it. The failure it
/// returns carries the schedule's statistics (steps and preemptions). A schedule that
/// cannot be read is a failure too (with no steps). Runs under shuttle's default step
/// bound; a failure found at an exploration's own bound needs [`replay_bounded`].
pub fn replay<F>(f: F, schedule: &str) -> Result<(), ExploreFailure>
where
    F: Fn() + Send + Sync + 'static,
{
    replay_bounded(f, schedule, None)
}

/// [`replay`] under a step bound: give the [`ExploreFailure::max_steps`] the failure
/// was found under, so that a failure at the bound (a livelock) fails at the same step
/// again instead of running out of schedule.
pub fn replay_bounded<F>(
    f: F,
    schedule: &str,
    max_steps: Option<usize>,
) -> Result<(), ExploreFailure>
where
    F: Fn() + Send + Sync + 'static,
{
    let mut config = Config::default();
    if let Some(n) = max_steps {
        config.max_steps = shuttle::MaxSteps::FailAfter(n);
    }
    let scheduler = panic::catch_unwind(|| ReplayScheduler::new_from_encoded(schedule));
    let result = match scheduler {
        Ok(scheduler) => run_tracked(scheduler, None, config, Arc::new(f), None, None).map(|_| ()),
        Err(payload) => Err(ExploreFailure {
            scheduler: None,
            message: panic_message(payload.as_ref()),
            schedule: String::new(),
            schedules_run: 0,
            preemptions: 0,
            steps: 0,
            max_steps,
        }),
    };
    result.map_err(|failure| ExploreFailure {
        schedule: schedule.to_string(),
        schedules_run: 1,
        ..failure
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::{ExploreConfig, ExploreReport, SchedulerKind, explore};
    use crate::sync::{Arc, Mutex, thread, yield_now};

    fn dfs(bound: usize) -> ExploreConfig {
        let mut config = ExploreConfig::new(10_000);
        config.iterations = 10_000; // not SVMKIT_ITERS
        config.schedulers = vec![SchedulerKind::Dfs];
        config.preemption_bound = bound;
        config
    }

    #[test]
    fn config_defaults() {
        let config = ExploreConfig::new(7);
        assert_eq!(config.preemption_bound, 2);
        assert_eq!(config.time_limit, None);
        assert_eq!(
            config.schedulers,
            vec![SchedulerKind::Random, SchedulerKind::Pct]
        );
    }

    #[test]
    fn scheduler_names() {
        for kind in SchedulerKind::ALL {
            assert_eq!(SchedulerKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(SchedulerKind::from_name("dfs"), Some(SchedulerKind::Dfs));
        assert_eq!(SchedulerKind::from_name("round-robin"), None);
    }

    #[test]
    fn report_display() {
        let report = ExploreReport {
            runs: vec![(SchedulerKind::Random, 3), (SchedulerKind::Dfs, 14)],
            exhausted: true,
            timed_out: false,
        };
        assert_eq!(
            report.to_string(),
            "17 schedules explored (random 3, dfs 14), bounded space exhausted"
        );
    }

    /// The main task spins on a flag (yielding) that a thread sets.
    fn spin_on_flag() {
        let flag = Arc::new(AtomicBool::new(false));
        let setter = Arc::clone(&flag);
        let t = thread::spawn(move || setter.store(true, Ordering::Relaxed));
        while !flag.load(Ordering::Relaxed) {
            yield_now();
        }
        t.join().unwrap();
    }

    #[test]
    fn dfs_explores_a_spin_loop_finitely() {
        // The only choices are at the main task's yields: switching to the thread is
        // free, spinning once more while it could run costs one preemption. The thread
        // has no scheduling point before it sets the flag and exits. So with bound b the
        // main task spins 0..=b extra rounds: b + 1 schedules (an unbounded search would
        // spin until the step bound).
        for bound in 0..4 {
            let report = explore(&dfs(bound), spin_on_flag).unwrap();
            assert_eq!(report.schedules(), bound + 1, "bound {bound}");
            assert!(report.exhausted);
        }
    }

    #[test]
    fn dfs_branches_on_every_non_preemptive_choice() {
        // Main spawns two threads (each: one lock and unlock) and joins them in order.
        // Non-preemptively main runs until it blocks joining the first; then either
        // thread may run. First thread first: when it finishes, main (woken) or the second
        // thread may run: 2 schedules. Second thread first: when it finishes, main is
        // still blocked, so the first runs, then main: 1 schedule. 3 in all.
        let report = explore(&dfs(0), || {
            let m = Arc::new(Mutex::new(0));
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let m = Arc::clone(&m);
                    thread::spawn(move || *m.lock() += 1)
                })
                .collect();
            for t in ts {
                t.join().unwrap();
            }
        })
        .unwrap();
        assert_eq!(report.schedules(), 3);
        assert!(report.exhausted);
    }
}
