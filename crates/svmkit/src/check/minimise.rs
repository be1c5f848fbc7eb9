//! Shrinking a failing schedule: fewer preemptions, then fewer steps.
//!
//! A candidate schedule is a list of task choices, one per scheduling decision, run by a
//! tolerant [`Guided`] scheduler: where the listed task is not runnable, or the list has
//! run out, it takes the non-preemptive default (the current task if it is runnable and
//! does not yield, else the lowest-id runnable task). What it actually chose is what
//! shuttle records as the execution's schedule, with the same seed, so shuttle's own
//! `ReplayScheduler` (behind [`replay`](super::replay)) reproduces it exactly.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use shuttle::{Config, FailurePersistence, MaxSteps, Runner};
use shuttle_engine::runtime::execution::CurrentSchedule;
use shuttle_engine::scheduler::data::DataSource;
use shuttle_engine::scheduler::serialization::{deserialize_schedule, serialize_schedule};
use shuttle_engine::scheduler::{
    RandomDataSource, Schedule, ScheduleStep, Scheduler, Task, TaskId,
};

use super::dfs::{current_runnable, is_preemption};
use super::explore::{ExploreFailure, panic_message};
use crate::sync::mode::ExplorationScope;

thread_local! {
    /// Whether panics on this thread are candidate runs' failures, not to be printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Wraps the process's panic hook (by then shuttle's, which prints the failing task and
/// schedule before the standard report) in one that stays silent while this thread runs
/// a candidate: minimisation runs many failing executions, all caught. The wrapper
/// passes every other panic on unchanged.
fn install_quiet_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.get() {
                previous(info);
            }
        }));
    });
}

/// Consecutive sideways moves (no better failure found) before minimisation gives up.
const MAX_SIDEWAYS: usize = 16;

/// One decision the guided scheduler made.
#[derive(Debug, Clone, Copy)]
struct Decision {
    /// The task it ran.
    task: TaskId,
    /// The task that ran before (`None` at the first decision).
    previous: Option<TaskId>,
    /// Whether it was a preemption ([`is_preemption`]).
    preemption: bool,
    /// Whether it differs from the non-preemptive default.
    deviates: bool,
}

/// The non-preemptive default: the current task if it is runnable and does not yield,
/// else the lowest-id other runnable task (the current one if it is alone).
fn default_choice(runnable: &[&Task], current: Option<TaskId>, is_yielding: bool) -> TaskId {
    let cur_runnable = current_runnable(runnable, current);
    if cur_runnable && !is_yielding {
        return current.expect("a runnable current task");
    }
    runnable
        .iter()
        .filter(|t| t.runnable() && Some(t.id()) != current)
        .map(|t| t.id())
        .min_by_key(|&id| usize::from(id))
        .or(if cur_runnable { current } else { None })
        .unwrap_or_else(|| runnable[0].id())
}

/// Follows a list of choices tolerantly (see the module documentation), recording its
/// decisions.
#[derive(Debug)]
struct Guided {
    choices: Vec<TaskId>,
    step: usize,
    seed: u64,
    started: bool,
    data_source: RandomDataSource,
    decisions: Rc<RefCell<Vec<Decision>>>,
}

impl Scheduler for Guided {
    fn new_execution(&mut self) -> Option<Schedule> {
        if std::mem::replace(&mut self.started, true) {
            return None;
        }
        self.data_source = RandomDataSource::initialize(self.seed);
        Some(Schedule::new(self.data_source.reinitialize()))
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> Option<TaskId> {
        let default = default_choice(runnable, current, is_yielding);
        let task = self
            .choices
            .get(self.step)
            .copied()
            .filter(|&want| runnable.iter().any(|t| t.id() == want))
            .unwrap_or(default);
        self.step += 1;
        self.decisions.borrow_mut().push(Decision {
            task,
            previous: current,
            preemption: is_preemption(runnable, current, is_yielding, task),
            deviates: task != default,
        });
        Some(task)
    }

    fn next_u64(&mut self) -> u64 {
        self.data_source.next_u64()
    }
}

/// A failing guided run.
#[derive(Debug, Clone)]
struct Candidate {
    message: String,
    schedule: String,
    decisions: Vec<Decision>,
    preemptions: usize,
}

impl Candidate {
    fn steps(&self) -> usize {
        self.decisions.len()
    }

    /// The order minimisation improves: fewer preemptions, then fewer steps.
    fn key(&self) -> (usize, usize) {
        (self.preemptions, self.steps())
    }

    fn choices(&self) -> Vec<TaskId> {
        self.decisions.iter().map(|d| d.task).collect()
    }
}

/// Runs `f` once under a guided scheduler; `Some` if it failed. `quiet`: without the
/// panic hook's report (see [`install_quiet_hook`]).
fn run_guided(
    f: &Arc<dyn Fn() + Send + Sync>,
    choices: Vec<TaskId>,
    seed: u64,
    max_steps: usize,
    quiet: bool,
) -> Option<Candidate> {
    let decisions = Rc::new(RefCell::new(Vec::new()));
    let scheduler = Guided {
        choices,
        step: 0,
        seed,
        started: false,
        data_source: RandomDataSource::initialize(seed),
        decisions: Rc::clone(&decisions),
    };
    let mut config = Config::new();
    config.max_steps = MaxSteps::FailAfter(max_steps);
    config.failure_persistence = FailurePersistence::None;
    let runner = Runner::new(scheduler, config);
    let scope = ExplorationScope::enter();
    let os_thread = scope.os_thread();
    let f = Arc::clone(f);
    let was_quiet = QUIET.replace(quiet);
    let result = panic::catch_unwind(AssertUnwindSafe(move || {
        runner.run(move || {
            ExplorationScope::begin_execution(os_thread);
            f()
        })
    }));
    QUIET.set(was_quiet);
    drop(scope);
    let payload = result.err()?;
    let decisions = decisions.take();
    Some(Candidate {
        message: panic_message(payload.as_ref()),
        schedule: serialize_schedule(&CurrentSchedule::get_schedule()),
        preemptions: decisions.iter().filter(|d| d.preemption).count(),
        decisions,
    })
}

/// The candidate choice lists derived from `best`, most promising first.
fn candidates(best: &Candidate) -> Vec<Vec<TaskId>> {
    let choices = best.choices();
    let mut out = Vec::new();
    // Cut the list at a deviation from the default: from there on the run is
    // non-preemptive. The earliest cut simplifies most.
    for (i, d) in best.decisions.iter().enumerate() {
        if d.deviates {
            out.push(choices[..i].to_vec());
        }
    }
    let preemptions: Vec<(usize, TaskId)> = best
        .decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.preemption)
        .filter_map(|(i, d)| Some((i, d.previous?)))
        .collect();
    // At each preemption, from the last, let the preempted task go on: move its next run
    // of steps forward to the preemption point. Every task keeps its steps and the other
    // tasks their order, so the failure is likely to survive.
    for &(i, previous) in preemptions.iter().rev() {
        if let Some(k) = (i + 1..choices.len()).find(|&k| choices[k] == previous) {
            let m = (k..choices.len())
                .find(|&m| choices[m] != previous)
                .unwrap_or(choices.len());
            let mut hoisted = choices[..i].to_vec();
            hoisted.extend_from_slice(&choices[k..m]);
            hoisted.extend_from_slice(&choices[i..k]);
            hoisted.extend_from_slice(&choices[m..]);
            out.push(hoisted);
        }
    }
    // Cruder edits at each preemption: replace the switch by the preempted task, drop
    // it, or delay it by one step.
    for &(i, previous) in preemptions.iter().rev() {
        let mut replaced = choices.clone();
        replaced[i] = previous;
        out.push(replaced);
        let mut dropped = choices.clone();
        dropped.remove(i);
        out.push(dropped);
        let mut delayed = choices.clone();
        delayed.insert(i, previous);
        out.push(delayed);
    }
    out
}

/// Shrinks a failing schedule of `f`: returns a failure whose message satisfies `same`
/// and whose schedule has no more preemptions than `failure`'s (at equal preemptions, no
/// more steps), replayable byte-exactly by [`replay`](super::replay). Only `failure`'s
/// schedule is read (its statistics are recounted by running it, as `replay` counts
/// them), and its `scheduler` and `schedules_run`, which the result keeps.
///
/// Greedy passes try, on the schedule reached, cutting it at each decision that deviates
/// from the non-preemptive default, and at each preemption letting the preempted task
/// continue (moving its next steps forward, or cruder edits); the first candidate that
/// still fails with a message satisfying `same` and is better is taken. When none is,
/// the search moves sideways to one with as many preemptions, a few times in a row at
/// most. Stops when nothing is left to try or when `budget` is spent, and returns the
/// best failure seen.
///
/// Each candidate is one execution of `f`, under an exploration scope like
/// [`explore`](super::explore)'s; a failing one panics, caught. The first run, of
/// `failure`'s own schedule, reports its panic as usual; then a wrapper around the
/// process's panic hook mutes the candidates' reports (on this thread only), leaving the
/// one line shuttle prints itself for each failing execution.
///
/// If `failure`'s schedule cannot be read, or does not fail with a message satisfying
/// `same` when run again, `failure` is returned unchanged.
pub fn minimise<F>(
    f: F,
    failure: &ExploreFailure,
    same: impl Fn(&str) -> bool,
    budget: Duration,
) -> ExploreFailure
where
    F: Fn() + Send + Sync + 'static,
{
    let start = Instant::now();
    // `deserialize_schedule` indexes its input's first byte: an empty string panics.
    let Some(schedule) = Some(&failure.schedule)
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| deserialize_schedule(s))
    else {
        return failure.clone();
    };
    let f: Arc<dyn Fn() + Send + Sync> = Arc::new(f);
    let original: Vec<TaskId> = schedule
        .steps
        .iter()
        .filter_map(|s| match s {
            ScheduleStep::Task(t) => Some(*t),
            ScheduleStep::Random => None,
        })
        .collect();
    // Under the bound the failure was found under, so that a failure at the bound (a
    // livelock) stays one; else generous: a candidate with fewer preemptions may need
    // more steps.
    let max_steps = failure
        .max_steps
        .unwrap_or_else(|| original.len().saturating_mul(10).max(10_000));
    // The first run, of the schedule as it is, gives its statistics (as a replay counts
    // them); it reports its failure as usual, and has shuttle install its panic hook,
    // which the quiet one must wrap.
    let Some(mut best) =
        run_guided(&f, original, schedule.seed, max_steps, false).filter(|c| same(&c.message))
    else {
        return failure.clone();
    };
    // The search walks from `current`; `best` is the best failure seen. When no candidate
    // improves on `current`, it may move sideways, to an unvisited candidate with as many
    // preemptions (and maybe more steps): moving a preemption later can take a step but
    // open the way to dropping another one.
    install_quiet_hook();
    let mut current = best.clone();
    let mut visited: HashSet<Vec<TaskId>> = HashSet::from([current.choices()]);
    let mut sideways = 0;
    'pass: while sideways <= MAX_SIDEWAYS {
        let mut lateral = None;
        for choices in candidates(&current) {
            if start.elapsed() >= budget {
                break 'pass;
            }
            let Some(c) = run_guided(&f, choices, schedule.seed, max_steps, true) else {
                continue;
            };
            if !same(&c.message) || !visited.insert(c.choices()) {
                continue;
            }
            if c.key() < current.key() {
                if c.key() < best.key() {
                    best = c.clone();
                    sideways = 0;
                }
                current = c;
                continue 'pass;
            }
            if lateral.is_none() && c.preemptions == current.preemptions {
                lateral = Some(c);
            }
        }
        match lateral {
            Some(c) => {
                current = c;
                sideways += 1;
            }
            None => break,
        }
    }
    ExploreFailure {
        scheduler: failure.scheduler,
        message: best.message.clone(),
        schedule: best.schedule.clone(),
        schedules_run: failure.schedules_run,
        preemptions: best.preemptions,
        steps: best.steps(),
        max_steps: Some(max_steps),
    }
}
