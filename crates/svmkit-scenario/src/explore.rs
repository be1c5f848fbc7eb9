//! Explores the schedules of a scenario: every thread of the file becomes a task of a
//! shuttle execution, interleaved at every lock the model takes, and each schedule is
//! checked.
//!
//! # What a schedule is checked for
//! * every step's expectations, when the step returns (the file's expectations are
//!   claims about every schedule; `svmkit run` checks them on one);
//! * at every scheduling point of every task (every lock taken, every yield:
//!   [`svmkit::check::at_every_scheduling_point`]), so at every state another task
//!   could observe, the checks that hold at every moment: DESIGN.md's exclusivity
//!   invariant (an atomic device entry has a device-exclusive CPU entry for the same
//!   pfn), no stale device translation, no device access to a frame it no longer maps
//!   ([`svmkit::System::check_devices_now`]), each process's interval-notifier state
//!   ([`svmkit::mm::Mm::check_notifiers_now`]) and no range end without its start;
//!   none takes a lock, so the checks add no scheduling point;
//! * at the end: the invariant checker, notifier start/end pairing, the values and
//!   the frames the file expects;
//! * deadlocks (shuttle sees every task blocked) and livelocks (a schedule past
//!   `max_steps` scheduling points).
//!
//! A failing schedule stops at its first violation. Its account lists the steps in
//! the order they returned, in the format of `svmkit run`; replaying the schedule
//! ([`replay`]) gives the same account and violation, byte for byte.
//!
//! # Traces
//! Explorations record no trace and write no step record (cost): a step's
//! expectations are checked, and only a failing one is written down. The replay that writes a failure's account
//! records one ([`FoundFailure::trace`]), and [`replay_traced`] replays a schedule with
//! its trace; the account is the same traced or not (it leaves out the per-step
//! `decided:` lines a traced `svmkit run` prints, which the trace holds).

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use svmkit::Profile;
use svmkit::check::{ExploreConfig, ExploreFailure, SchedulerKind};
use svmkit::sync::{Arc, Condvar, Mutex, thread};
use svmkit::trace::{TraceEvent, TraceLevel};

use crate::ast::{Op, Scenario};
use crate::engine::{EndCheck, RunReport, StepRecord, w_thread_process};
use crate::world::World;

/// How to explore.
#[derive(Debug, Clone)]
pub struct ExploreOptions {
    /// Explore under this profile instead of the file's.
    pub profile: Option<Profile>,
    /// The strategy.
    pub strategy: SchedulerKind,
    /// Schedules to run at most (`usize::MAX`: no count, the time bounds the run).
    pub schedules: usize,
    /// Stop after this long (no failure found within it is a pass of the budget).
    pub time: Option<Duration>,
    /// Seed of the strategy's random choices.
    pub seed: u64,
    /// PCT's bug depth.
    pub pct_depth: usize,
    /// DFS's preemption bound.
    pub preemption_bound: usize,
    /// Scheduling points after which a schedule counts as a livelock.
    pub max_steps: usize,
}

impl Default for ExploreOptions {
    fn default() -> Self {
        ExploreOptions {
            profile: None,
            strategy: SchedulerKind::Random,
            schedules: 1000,
            time: None,
            seed: 0x5eed,
            pct_depth: 3,
            preemption_bound: 2,
            max_steps: 100_000,
        }
    }
}

/// A failing schedule, with everything needed to show and reproduce it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FoundFailure {
    /// What went wrong (the first violation).
    pub violation: String,
    /// The schedule, encoded (shuttle's replay format).
    pub schedule: String,
    /// Schedules run up to and including this one.
    pub schedules_run: usize,
    /// The step-by-step account of the failing schedule.
    pub account: String,
    /// The seed of the stream that found it (the run's, or its chunk's:
    /// [`explore_jobs`]).
    pub seed: u64,
    /// Preemptions in the schedule (switches away from a task that could go on).
    pub preemptions: usize,
    /// Scheduling steps in the schedule.
    pub steps: usize,
    /// The step bound it was found under: a replay runs under the same bound, so that
    /// a failure at the bound (a livelock) reproduces.
    pub max_steps: Option<usize>,
    /// The trace of the replay that wrote the account (level `normal`), for the views
    /// of `svmkit::trace`. Not part of the JSON report (`svmkit explore` writes it
    /// beside the schedule file).
    #[serde(skip)]
    pub trace: Arc<[TraceEvent]>,
}

impl FoundFailure {
    /// How the failing schedule ended, as scenario files name it: `deadlock` when
    /// every task blocked (shuttle's report says so), else `fail`.
    pub fn outcome(&self) -> crate::RunOutcome {
        if self.violation.to_lowercase().contains("deadlock") {
            crate::RunOutcome::Deadlock
        } else {
            crate::RunOutcome::Fail
        }
    }
}

/// What one stream of schedules, from one seed, covered and found.
#[derive(Debug, Clone)]
pub struct Exploration {
    /// The scenario's name.
    pub scenario: String,
    /// The profile explored.
    pub profile: String,
    /// The strategy's name.
    pub strategy: String,
    /// The seed.
    pub seed: u64,
    /// Schedules run.
    pub schedules: usize,
    /// Seconds spent.
    pub seconds: f64,
    /// Whether a DFS covered its whole bounded space.
    pub exhausted: bool,
    /// The failure found, if any.
    pub failure: Option<FoundFailure>,
}

/// What an exploration (one or more workers, one or more shards) covered and found:
/// the `--json` report, and what `svmkit merge` combines.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExploreReport {
    /// The scenario's name.
    pub scenario: String,
    /// The profile explored.
    pub profile: String,
    /// The strategy.
    pub strategy: String,
    /// The shards this report covers (`K/N` each; empty for an unsharded run).
    pub shards: Vec<String>,
    /// Workers that ran (summed over shards).
    pub jobs: usize,
    /// The seed of each stream explored: the run's for one worker, each chunk's for
    /// several ([`explore_jobs`]).
    pub seeds: Vec<u64>,
    /// Schedules run in all.
    pub schedules: usize,
    /// Wall-clock seconds (the longest shard's, once merged).
    pub seconds: f64,
    /// Schedules per second (summed over shards, which run side by side).
    pub schedules_per_sec: f64,
    /// Whether a DFS covered its whole bounded space.
    pub exhausted: bool,
    /// The failures found (at most one per worker: a worker stops at its first).
    pub failures: Vec<FoundFailure>,
}

impl ExploreReport {
    /// Combines reports of the same scenario, profile and strategy (shards of one
    /// exploration): schedules and throughput add up, failures are kept.
    pub fn merge(reports: &[ExploreReport]) -> Result<ExploreReport, String> {
        let Some(first) = reports.first() else {
            return Err("no reports to merge".into());
        };
        let mut out = first.clone();
        for r in &reports[1..] {
            for (what, a, b) in [
                ("scenario", &first.scenario, &r.scenario),
                ("profile", &first.profile, &r.profile),
                ("strategy", &first.strategy, &r.strategy),
            ] {
                if a != b {
                    return Err(format!(
                        "the reports explore different {what}s: `{a}` and `{b}`"
                    ));
                }
            }
            out.shards.extend(r.shards.iter().cloned());
            out.jobs += r.jobs;
            out.seeds.extend(&r.seeds);
            out.schedules += r.schedules;
            out.seconds = out.seconds.max(r.seconds);
            out.schedules_per_sec += r.schedules_per_sec;
            out.exhausted |= r.exhausted;
            out.failures.extend(r.failures.iter().cloned());
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &out.shards {
            if !seen.insert(s) {
                return Err(format!("shard {s} appears twice"));
            }
        }
        Ok(out)
    }
}

/// What one schedule wrote down, kept outside the execution (std's mutex: it outlives
/// each schedule, and is never held across a scheduling point).
#[derive(Default)]
struct Sink {
    steps: Vec<StepRecord>,
    end: Vec<EndCheck>,
    /// The schedule's system, kept when it is traced: its record is read once the
    /// execution is over, whichever way it ended (a panic, a deadlock).
    traced: Option<Arc<svmkit::System>>,
}

/// The explored closure: the whole scenario, once, on the schedule shuttle chooses.
/// Panics with the violation on a failure (shuttle's way of failing a schedule).
///
/// Only with `record` does it write down each step for the account (a replay does);
/// an exploration checks the same and, when a schedule fails, replays it to write the
/// account.
fn body(
    sc: Arc<Scenario>,
    record: bool,
    profile: Profile,
    sink: Arc<std::sync::Mutex<Sink>>,
    trace: TraceLevel,
) -> impl Fn() + Send + Sync + 'static {
    move || {
        *sink.lock().unwrap_or_else(|e| e.into_inner()) = Sink::default();
        let w = match World::new(sc.clone(), profile) {
            Ok(w) => Arc::new(w),
            Err(e) => panic!("setup failed: {}", e.name()),
        };
        if trace != TraceLevel::Off {
            w.sys.set_trace(trace);
            w.sys.trace().set_track(Some("setup"));
            sink.lock().unwrap_or_else(|e| e.into_inner()).traced = Some(w.sys.clone());
            // Which task each scheduling point chose, on track `scheduler`.
            let sys = Arc::downgrade(&w.sys);
            svmkit::check::on_every_schedule_choice(move |chosen, runnable, preempts| {
                if let Some(sys) = sys.upgrade() {
                    sys.trace().schedule_choice(chosen, runnable, preempts);
                }
            });
        }
        match w.setup() {
            Ok(None) => {}
            Ok(Some(c)) => panic!("setup failed: {}: {}", c.what, c.detail),
            Err(e) => panic!("setup failed: {}", e.name()),
        }
        // The device invariants and the notifier state at every scheduling point from
        // here on: at every state another task could see (where the model changed
        // since the hook last read all of it). A weak reference: the hook outlives
        // the execution.
        let world = Arc::downgrade(&w);
        svmkit::check::at_every_state_change(move || {
            let Some(w) = world.upgrade() else {
                return true;
            };
            let (bad, complete) = match w.sys.check_devices_now_complete() {
                Err(e) => (Some(first(&e)), true),
                Ok(devices) => match w.check_notifiers_now() {
                    Err(e) => (Some(e), true),
                    Ok(notifiers) => (None, devices && notifiers),
                },
            };
            if let Some(bad) = bad {
                let who = shuttle::thread::current();
                let who = who
                    .name()
                    .map_or_else(|| "the main task".to_string(), |n| format!("thread {n}"));
                panic!("invariant violated (at a scheduling point of {who}): {bad}");
            }
            complete
        });
        let n = sc.threads.len();
        let gate = Arc::new((Mutex::new(vec![false; n]), Condvar::new()));
        let turn = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..n)
            .map(|t| {
                let (w, gate, turn, sink) = (w.clone(), gate.clone(), turn.clone(), sink.clone());
                let name = w.sc.threads[t].name.clone();
                thread::spawn_named(&name, move || {
                    run_thread(t, &w, &gate, &turn, &sink, record);
                })
            })
            .collect();
        for h in handles {
            if let Err(p) = h.join() {
                panic::resume_unwind(p);
            }
        }
        w.sys.trace().set_track(Some("end"));
        let mut report = RunReport::new(&sc.name, profile.name);
        w.end_checks(&mut report, true);
        w.teardown(&mut report);
        let bad = report.end.iter().find(|c| !c.ok).cloned();
        sink.lock().unwrap_or_else(|e| e.into_inner()).end = report.end;
        if let Some(c) = bad {
            panic!("end check failed: {}: {}", c.what, c.detail);
        }
    }
}

/// The first line of a checker report (the first violation).
fn first(e: &svmkit::check::CheckError) -> String {
    e.violations
        .first()
        .map_or_else(|| e.to_string(), |v| v.to_string())
}

/// One scenario thread: wait for what it runs `after` and for its process, then its
/// steps, each checked.
fn run_thread(
    t: usize,
    w: &World,
    gate: &(Mutex<Vec<bool>>, Condvar),
    turn: &AtomicUsize,
    sink: &std::sync::Mutex<Sink>,
    record: bool,
) {
    let sc = w.sc.clone();
    let th = &sc.threads[t];
    let p = w_thread_process(&sc, t);
    let starts_with_exit = matches!(th.steps.first().map(|s| &s.op), Some(Op::Exit { .. }));
    // The gate is the harness's, not the model's: a thread that waits for nothing
    // passes it without its two scheduling points, which would only repeat the state
    // of its first step's (its first model operation takes a lock before it reads).
    if !(th.after.is_empty() && (starts_with_exit || w.was_created(p))) {
        let (m, cv) = gate;
        let mut done = m.lock();
        while !(th.after.iter().all(|&j| done[j]) && (starts_with_exit || w.was_created(p))) {
            done = cv.wait(done);
        }
    }
    for step in &th.steps {
        // A task with a fatal signal pending never returns to user space.
        if w.killed(t) {
            break;
        }
        let n = turn.fetch_add(1, Ordering::Relaxed) + 1;
        let rec = w.perform_maybe_recorded(t, step, n, record);
        if w.killed(t) && step.op.is_cpu_access() {
            // Killed during a user access: Linux's fault ends in its killable wait
            // and the task dies; whatever the model's access returned, it does not.
            if let Some(mut rec) = rec.filter(|_| record) {
                rec.result = "killed in the step: it does not return".into();
                rec.failed = None;
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .steps
                    .push(rec);
            }
            break;
        }
        if let Some(rec) = rec {
            let failed = rec.failed.clone().map(|f| {
                format!(
                    "expectation failed: thread {}, line {}, `{}` -> {}: expected {f}",
                    rec.thread, rec.line, rec.step, rec.result
                )
            });
            if record {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .steps
                    .push(rec);
            }
            if let Some(f) = failed {
                panic!("{f}");
            }
        }
        if matches!(step.op, Op::Fork { .. }) {
            gate.1.notify_all();
        }
    }
    // Nobody to tell when no thread runs `after` this one.
    if sc.threads.iter().any(|o| o.after.contains(&t)) {
        let (m, cv) = gate;
        m.lock()[t] = true;
        cv.notify_all();
    }
}

/// The account of a failing schedule: its steps in the order they returned, the end
/// checks it reached, and the violation. The same traced or not: the subscriber
/// decisions a traced step records are left out.
fn account_of(sc: &Scenario, profile: &str, sink: &Sink, violation: &str) -> String {
    let mut steps = sink.steps.clone();
    for s in &mut steps {
        s.decisions.clear();
    }
    let report = RunReport {
        steps,
        end: sink.end.clone(),
        passed: false,
        ..RunReport::new(&sc.name, profile)
    };
    let mut text = report.account();
    // The run's closing line says an expectation failed; say what failed instead.
    if let Some(i) = text.trim_end().rfind('\n') {
        text.truncate(i + 1);
    }
    text.push_str(&format!("FAIL: {violation}\n"));
    text
}

/// The class of a violation: its text with numbers blanked, so that a shorter
/// schedule failing the same way (another pfn, another count) counts as the same
/// failure.
pub fn violation_class(v: &str) -> String {
    let mut out = String::new();
    let mut in_num = false;
    for c in v.lines().next().unwrap_or("").chars() {
        if c.is_ascii_hexdigit() && (in_num || c.is_ascii_digit()) || (in_num && c == 'x') {
            if !in_num {
                out.push('#');
                in_num = true;
            }
        } else {
            in_num = false;
            out.push(c);
        }
    }
    out
}

fn config_of(opts: &ExploreOptions, seed: u64) -> ExploreConfig {
    let mut c = ExploreConfig::new(opts.schedules);
    c.iterations = opts.schedules;
    c.seed = seed;
    c.pct_depth = opts.pct_depth;
    c.schedulers = vec![opts.strategy];
    c.max_steps = opts.max_steps;
    c.preemption_bound = opts.preemption_bound;
    c.time_limit = opts.time;
    c
}

/// Explores `sc`'s schedules as `opts` says; `progress` is called after every
/// schedule with the number run so far. Returns what was covered and the first
/// failure, with its account (taken by replaying the failing schedule).
pub fn explore(
    sc: &Scenario,
    opts: &ExploreOptions,
    progress: Arc<dyn Fn(usize) + Send + Sync>,
) -> Exploration {
    explore_until(sc, opts, progress, Arc::new(AtomicBool::new(false)))
}

/// [`explore`], ending early (without a failure) once `stop` is set: the schedules
/// left run nothing and are not counted.
fn explore_until(
    sc: &Scenario,
    opts: &ExploreOptions,
    progress: Arc<dyn Fn(usize) + Send + Sync>,
    stop: Arc<AtomicBool>,
) -> Exploration {
    let profile = opts.profile.unwrap_or(sc.profile);
    let sc = Arc::new(sc.clone());
    let sink = Arc::new(std::sync::Mutex::new(Sink::default()));
    let started = Instant::now();
    let count = Arc::new(AtomicUsize::new(0));
    let f = {
        let (inner, count, progress) = (
            body(sc.clone(), false, profile, sink.clone(), TraceLevel::Off),
            count.clone(),
            progress.clone(),
        );
        move || {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            progress(n);
            inner()
        }
    };
    let result = quiet(|| {
        svmkit::check::explore_with_progress(&config_of(opts, opts.seed), f, Arc::new(|_| {}))
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut summary = Exploration {
        scenario: sc.name.clone(),
        profile: profile.name.to_string(),
        strategy: opts.strategy.to_string(),
        seed: opts.seed,
        schedules: count.load(Ordering::Relaxed),
        seconds,
        exhausted: result.as_ref().is_ok_and(|r| r.exhausted),
        failure: None,
    };
    if let Err(fail) = result {
        let mut found = replay_failure(&sc, profile, &fail);
        found.seed = opts.seed;
        summary.failure = Some(found);
    }
    summary
}

/// Replays `fail`'s schedule, traced, to write its account and keep its trace.
fn replay_failure(sc: &Arc<Scenario>, profile: Profile, fail: &ExploreFailure) -> FoundFailure {
    let (r, trace) = replay_schedule(
        sc,
        profile,
        &fail.schedule,
        fail.max_steps,
        TraceLevel::Normal,
    );
    FoundFailure {
        violation: fail.message.clone(),
        schedule: fail.schedule.clone(),
        schedules_run: fail.schedules_run,
        account: r.map_or_else(|e| e.account, |()| String::new()),
        seed: 0,
        preemptions: fail.preemptions,
        steps: fail.steps,
        max_steps: fail.max_steps,
        trace: trace.into(),
    }
}

/// Shrinks a failing schedule: fewer preemptions, then fewer scheduling steps, as
/// long as it fails the same way ([`violation_class`]), within `budget`. Returns the
/// shorter failure with its account (or `found` itself if nothing shorter fails).
pub fn minimise(
    sc: &Scenario,
    profile: Option<Profile>,
    found: &FoundFailure,
    budget: Duration,
) -> FoundFailure {
    let profile = profile.unwrap_or(sc.profile);
    let sc = Arc::new(sc.clone());
    let sink = Arc::new(std::sync::Mutex::new(Sink::default()));
    let f = body(sc.clone(), false, profile, sink, TraceLevel::Off);
    let class = violation_class(&found.violation);
    let input = ExploreFailure {
        scheduler: None,
        message: found.violation.clone(),
        schedule: found.schedule.clone(),
        schedules_run: found.schedules_run,
        preemptions: found.preemptions,
        steps: found.steps,
        max_steps: found.max_steps,
    };
    let small =
        quiet(|| svmkit::check::minimise(f, &input, |m| violation_class(m) == class, budget));
    let mut out = replay_failure(&sc, profile, &small);
    if out.account.is_empty() {
        // The shrunk schedule did not fail on replay: keep the original.
        return found.clone();
    }
    out.seed = found.seed;
    out.schedules_run = found.schedules_run;
    out
}

/// What a replayed schedule did: `Ok` if it passed, else its failure.
pub type ReplayResult = Result<(), FoundFailure>;

fn replay_schedule(
    sc: &Arc<Scenario>,
    profile: Profile,
    schedule: &str,
    max_steps: Option<usize>,
    trace: TraceLevel,
) -> (ReplayResult, Vec<TraceEvent>) {
    let sink = Arc::new(std::sync::Mutex::new(Sink::default()));
    let f = body(sc.clone(), true, profile, sink.clone(), trace);
    let r = quiet(|| svmkit::check::replay_bounded(f, schedule, max_steps));
    let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
    let events = s
        .traced
        .take()
        .map_or_else(Vec::new, |sys| sys.trace().take());
    let r = match r {
        Ok(()) => Ok(()),
        Err(fail) => Err(FoundFailure {
            account: account_of(sc, profile.name, &s, &fail.message),
            violation: fail.message,
            schedule: schedule.to_string(),
            schedules_run: 1,
            seed: 0,
            preemptions: 0,
            steps: 0,
            max_steps,
            trace: events.as_slice().into(),
        }),
    };
    (r, events)
}

/// Runs `sc` once on `schedule` (as [`explore`] reported it), under the step bound it
/// was found under ([`FoundFailure::max_steps`]): the same violation and the same
/// account, every time.
#[expect(
    clippy::result_large_err,
    reason = "the failure is what a replay is for, returned once per run"
)]
pub fn replay(
    sc: &Scenario,
    profile: Option<Profile>,
    schedule: &str,
    max_steps: Option<usize>,
) -> ReplayResult {
    replay_traced(sc, profile, schedule, max_steps, TraceLevel::Off).0
}

/// [`replay`], recording the replayed schedule's trace at `level` (its account and
/// violation are the same as untraced); returns the trace too, failing or not.
pub fn replay_traced(
    sc: &Scenario,
    profile: Option<Profile>,
    schedule: &str,
    max_steps: Option<usize>,
    level: TraceLevel,
) -> (ReplayResult, Vec<TraceEvent>) {
    let profile = profile.unwrap_or(sc.profile);
    replay_schedule(&Arc::new(sc.clone()), profile, schedule, max_steps, level)
}

thread_local! {
    /// Whether panics on this OS thread are an exploration's failing schedules (all
    /// of an execution's tasks run on the thread that runs the explorer).
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's panic messages silenced: a failing schedule panics by
/// design, and the explorer reports it; the default hook would print each one. Other
/// threads' panics still print.
fn quiet<R>(f: impl FnOnce() -> R) -> R {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        // Shuttle installs its own hook (which prints the failing schedule) at its
        // first execution; run a trivial one first so that ours wraps it and can
        // silence it too.
        shuttle::Runner::new(
            shuttle::scheduler::RandomScheduler::new(1),
            Default::default(),
        )
        .run(|| {});
        let prev = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.get() {
                prev(info);
            }
        }));
    });
    let was = QUIET.replace(true);
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.set(was);
    match r {
        Ok(r) => r,
        Err(p) => panic::resume_unwind(p),
    }
}

/// A stream's seed: the base seed mixed with the stream's index over all shards (a
/// shard's, or a chunk's: [`explore_jobs`]) by splitmix64, so that shards and chunks
/// explore from different seeds.
pub fn worker_seed(base: u64, index: usize) -> u64 {
    let mut z = base ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Which share of the seed space a process explores: shard `index` (1-based) of
/// `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub index: usize,
    /// How many shards there are.
    pub count: usize,
}

impl Shard {
    /// `K/N` with 1 <= K <= N.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not K/N (for example 2/8)"))?;
        let (k, n) = (
            k.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{k}` is not a number"))?,
            n.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{n}` is not a number"))?,
        );
        if n == 0 || k == 0 || k > n {
            return Err(format!("shard {k}/{n}: K must be from 1 to N"));
        }
        Ok(Shard { index: k, count: n })
    }
}

/// Explores with `jobs` workers side by side (OS threads), as shard `shard` of a
/// larger exploration; the budget (`opts.schedules`, `opts.time`) is this process's.
/// A failure found by one worker stops the others.
///
/// One worker explores one stream of schedules from one seed (`opts.seed`, or the
/// shard's). Several take the budget in chunks ([`chunk_len`]) from a common count,
/// each chunk a stream from its own seed ([`worker_seed`] of the chunk's index over
/// all shards), so that a worker slowed by the machine takes fewer chunks instead of
/// holding the others up at the end, and the chunks (their seeds and lengths) are
/// the same whatever the number of workers. A chunk is what
/// `svmkit explore --seed SEED --schedules LEN` explores.
pub fn explore_jobs(
    sc: &Scenario,
    opts: &ExploreOptions,
    jobs: usize,
    shard: Option<Shard>,
    progress: Arc<dyn Fn(usize) + Send + Sync>,
) -> ExploreReport {
    let jobs = jobs.max(1);
    let (index, count) = shard.map_or((0, 1), |s| (s.index - 1, s.count));
    let started = Instant::now();
    let runs = if jobs == 1 {
        let mut o = opts.clone();
        if shard.is_some() {
            o.seed = worker_seed(opts.seed, index);
        }
        vec![explore_until(
            sc,
            &o,
            progress,
            Arc::new(AtomicBool::new(false)),
        )]
    } else {
        explore_chunks(sc, opts, jobs, (index, count), started, progress)
    };
    let seconds = started.elapsed().as_secs_f64();
    let schedules = runs.iter().map(|r| r.schedules).sum();
    ExploreReport {
        scenario: sc.name.clone(),
        profile: opts.profile.unwrap_or(sc.profile).name.to_string(),
        strategy: opts.strategy.to_string(),
        shards: shard.map_or_else(Vec::new, |s| vec![format!("{}/{}", s.index, s.count)]),
        jobs,
        seeds: runs.iter().map(|r| r.seed).collect(),
        schedules,
        seconds,
        schedules_per_sec: if seconds > 0.0 {
            schedules as f64 / seconds
        } else {
            0.0
        },
        exhausted: runs.iter().any(|r| r.exhausted),
        failures: runs.into_iter().filter_map(|r| r.failure).collect(),
    }
}

/// The schedules of one chunk of a run of `schedules` on several workers: a
/// sixty-fourth of the run, so that the last chunk, which one worker may run while the
/// others have none left, is a small part of it; at least 64, so that a chunk's set-up
/// (its explorer, its copy of the scenario) stays below a percent of its time; at
/// most 4,096 (a time-bounded run has no schedule budget to divide). It does not
/// depend on the number of workers, so neither do the chunks.
pub fn chunk_len(schedules: usize) -> usize {
    (schedules / 64).clamp(64, 4096)
}

/// [`explore_jobs`]'s workers on chunks of the budget: the streams explored, in chunk
/// order (a chunk that a failure or the deadline cut before its first schedule is
/// left out).
fn explore_chunks(
    sc: &Scenario,
    opts: &ExploreOptions,
    jobs: usize,
    (shard_index, shards): (usize, usize),
    started: Instant,
    progress: Arc<dyn Fn(usize) + Send + Sync>,
) -> Vec<Exploration> {
    let len = chunk_len(opts.schedules);
    let chunks = opts.schedules.div_ceil(len);
    let deadline = opts.time.map(|t| started + t);
    let next = AtomicUsize::new(0);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let worker = || {
        let mut mine = Vec::new();
        // This worker's schedules before the current chunk: a failure counts its
        // worker's schedules up to it.
        let mut ran = 0;
        while !stop.load(Ordering::Relaxed) {
            let c = next.fetch_add(1, Ordering::Relaxed);
            if c >= chunks {
                break;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                break;
            }
            let mut o = opts.clone();
            o.seed = worker_seed(opts.seed, shard_index + shards * c);
            o.schedules = len.min(opts.schedules - c * len);
            o.time = left;
            let last = AtomicUsize::new(0);
            let (done, progress) = (done.clone(), progress.clone());
            let tick: Arc<dyn Fn(usize) + Send + Sync> = Arc::new(move |n| {
                let new = n - last.swap(n, Ordering::Relaxed);
                progress(done.fetch_add(new, Ordering::Relaxed) + new);
            });
            let mut e = explore_until(sc, &o, tick, stop.clone());
            if let Some(f) = &mut e.failure {
                f.schedules_run += ran;
                stop.store(true, Ordering::Relaxed);
            }
            ran += e.schedules;
            if e.schedules > 0 || e.failure.is_some() {
                mine.push((c, e));
            }
        }
        mine
    };
    let mut runs: Vec<(usize, Exploration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs).map(|_| scope.spawn(worker)).collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| panic::resume_unwind(p)))
            .collect()
    });
    runs.sort_by_key(|&(c, _)| c);
    runs.into_iter().map(|(_, e)| e).collect()
}
