//! Runs a scenario on one deterministic schedule and writes down what happened.
//!
//! # The schedule of `svmkit run`
//! Threads take turns in file order, one whole step per turn (`repeat` already
//! expanded): thread 1's first step, thread 2's first step, ..., thread 1's second
//! step, and so on; a thread with no steps left drops out. Between steps nothing holds
//! a lock except what the scenario holds on purpose (a `make_exclusive` or `gup` step's
//! `hold`) and what a flawed driver leaked. A step that would sleep on such a lock (a
//! CPU touch or GUP of a device-exclusive page whose folio is locked, a conversion of a
//! page whose folio is locked) is not started: the thread waits, its turn passes, and
//! the account says on what; when the lock is released the step runs at the thread's
//! next turn. When every thread that has steps left waits, the run ends in a deadlock
//! report (who waits for which folio, held by whom). A thread with `after = [...]`
//! takes its first turn only once those threads have finished. The explorer
//! interleaves inside steps; this schedule is the one a reader follows.
//!
//! After every step the engine checks what must hold at every moment, as the explorer
//! does ([`svmkit::System::check_devices_now`]), and that every notifier range the step
//! started it also ended; a violation fails that step. The whole invariant checker
//! runs at the end.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use svmkit::sync::Arc;
use svmkit::trace::{TraceEvent, TraceLevel};
use svmkit::{Errno, Profile};

use crate::ast::*;
use crate::world::World;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run under this profile instead of the file's.
    pub profile: Option<Profile>,
    /// How long one step may take before the run is declared hung (a step of the model
    /// takes microseconds; only a sleep on a lock that is never released lasts).
    pub step_timeout: std::time::Duration,
    /// What the run records in its trace ([`RunReport::trace`]); at `normal` or above
    /// the account also shows each notifier subscriber's decision.
    pub trace: TraceLevel,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            profile: None,
            step_timeout: std::time::Duration::from_secs(10),
            trace: TraceLevel::Normal,
        }
    }
}

/// One step as it happened. (`Deserialize`: the oracle's guest runner gets the records
/// of a forked process's steps back from the child it forked, as JSON.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    /// Turn number (1-based).
    pub turn: usize,
    /// The thread.
    pub thread: String,
    /// Line of the step in the file.
    pub line: usize,
    /// The step as written, resolved (`write buf+0x10 (0x40000010) = 1`).
    pub step: String,
    /// What it returned (`ok`, `= 5`, `EBUSY`), or what it waits for.
    pub result: String,
    /// Whether the thread waited instead of running the step.
    pub waited: bool,
    /// The PTE at the step's address before and after (decoded), when it has one.
    pub pte: Option<(String, String)>,
    /// Notifier events the step caused, in order.
    pub events: Vec<String>,
    /// For each notifier range the step caused (when the run is traced), what each
    /// subscriber decided: `MMU_NOTIFY_CLEAR [0x..., 0x...): gpu interval seq=5
    /// set_seq, gpu start done`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<String>,
    /// Device entries at the step's address after the step (`gpu: rwa`).
    pub devices: Vec<String>,
    /// The faults it took, for the steps that count them (`expect_faults`): CPU page
    /// faults of a read, write or fetch_add, passes of svm_atomic's fault loop for an
    /// atomic_add; `None` for other steps and for a step that did not return.
    pub faults: Option<u64>,
    /// `cpages` of a dmirror ioctl that returned (the pages the driver reports done);
    /// `None` for other steps.
    pub cpages: Option<u64>,
    /// The folio mapped at the step's address after the step, with its counts, when
    /// the step expects them or they changed (`None` for the zero page or an unmapped
    /// address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folio: Option<FolioCounts>,
    /// The expectation it failed, if any.
    pub failed: Option<String>,
    /// The step's note.
    pub note: Option<String>,
    /// The step's `id`, if it has one.
    pub id: Option<String>,
}

impl StepRecord {
    /// A record of a turn in which the thread ran nothing (its `result` says why): what
    /// a runner of the schedule writes for a step that waits (the guest runner too).
    pub fn waited(turn: usize, thread: &str, line: usize, step: String) -> StepRecord {
        StepRecord {
            turn,
            thread: thread.to_string(),
            line,
            step,
            result: String::new(),
            waited: true,
            pte: None,
            events: Vec::new(),
            decisions: Vec::new(),
            devices: Vec::new(),
            faults: None,
            cpages: None,
            folio: None,
            failed: None,
            note: None,
            id: None,
        }
    }
}

/// A folio's counts, as `expect_refcount` and `expect_mapcount` read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolioCounts {
    /// Its head pfn.
    pub folio: u64,
    /// `folio_ref_count()`.
    pub refcount: i64,
    /// `folio_mapcount()` plus the PMD mappings of the whole folio (5.14:
    /// `total_mapcount()`).
    pub mapcount: i64,
}

/// One end-of-run check.
#[derive(Debug, Clone, Serialize)]
pub struct EndCheck {
    /// What was checked.
    pub what: String,
    /// Whether it held.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

impl EndCheck {
    /// The check of an `[expect] rss` entry, `got` the `Rss:` in KiB or why there is
    /// none (the guest runner writes the same): `what` holds " Rss of the VMA at ",
    /// which the oracle's comparator looks for.
    pub fn rss(process: &str, at: &str, want_kib: u64, got: Result<u64, String>) -> EndCheck {
        EndCheck {
            what: format!("{process} Rss of the VMA at {at} = {want_kib} kB"),
            ok: got.as_ref().is_ok_and(|g| *g == want_kib),
            detail: match got {
                Ok(g) => format!("Rss {g} kB"),
                Err(e) => e,
            },
        }
    }
}

/// A hung-task report: what the model shows of a step that never returned.
#[derive(Debug, Clone, Serialize)]
pub struct Hang {
    /// The report, line by line (locked folios and their holders; each device fault
    /// in flight, the entry it needs and that entry's folio lock).
    pub lines: Vec<String>,
    /// The task asleep in a device fault, if one is.
    pub task: Option<String>,
    /// The folio (head pfn) whose lock it sleeps on, if one is named.
    pub folio: Option<u64>,
    /// The task holding that lock (a driver leaked it on a retry), if known.
    pub holder: Option<String>,
    /// Whether the sleeper holds the lock it sleeps on (a self-deadlock: the driver
    /// leaked its folio lock on a retry and its next pass's GUP waits for it).
    pub self_deadlock: bool,
    /// How the sleeper came to hold that lock, for the summary (`None`: a driver
    /// leaked it on a retry, the svm_atomic case).
    pub held_since: Option<String>,
}

impl Hang {
    /// One line for the deadlock report: who waits for which lock, held by whom.
    pub fn summary(&self) -> String {
        match (&self.task, self.folio, &self.holder) {
            (Some(t), Some(f), Some(h)) if self.self_deadlock && t == h => format!(
                "task {t} waits for the lock of folio {f:#x}, which it {}: self-deadlock",
                self.held_since
                    .as_deref()
                    .unwrap_or("left locked itself on a retry")
            ),
            (Some(t), Some(f), Some(h)) => {
                format!("task {t} waits for the lock of folio {f:#x}, held by task {h}")
            }
            (Some(t), Some(f), None) => {
                format!("task {t} waits for the lock of folio {f:#x}, holder unknown")
            }
            (Some(t), None, _) => {
                format!("task {t} is stuck in a device fault, no folio lock named")
            }
            _ => "no device fault in flight".to_string(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// Every expectation held.
    Pass,
    /// An expectation did not hold.
    Fail,
    /// Threads waited for each other (or a step never returned).
    Deadlock,
}

impl RunOutcome {
    /// `pass`, `fail` or `deadlock`, as scenario files name it.
    pub fn name(self) -> &'static str {
        match self {
            RunOutcome::Pass => "pass",
            RunOutcome::Fail => "fail",
            RunOutcome::Deadlock => "deadlock",
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The scenario's name.
    pub scenario: String,
    /// The profile it ran under.
    pub profile: String,
    /// Every turn.
    pub steps: Vec<StepRecord>,
    /// A deadlock, if the run ended in one: every thread with steps left waits for a
    /// lock the scenario holds (found before the steps started), or a step never
    /// returned (found by the step timeout).
    pub deadlock: Option<String>,
    /// The hung-task report of a step that never returned.
    pub hang: Option<Hang>,
    /// The end checks.
    pub end: Vec<EndCheck>,
    /// Whether every expectation held.
    pub passed: bool,
    /// The run's trace (empty unless [`RunOptions::trace`] records): what happened
    /// inside every step, for the views of `svmkit::trace`. Not part of the JSON
    /// report (`svmkit run --trace FILE` writes it).
    #[serde(skip)]
    pub trace: Vec<TraceEvent>,
}

impl RunReport {
    /// A report with no steps yet, every expectation holding so far.
    pub fn new(scenario: &str, profile: &str) -> RunReport {
        RunReport {
            scenario: scenario.to_string(),
            profile: profile.to_string(),
            steps: Vec::new(),
            deadlock: None,
            hang: None,
            end: Vec::new(),
            passed: true,
            trace: Vec::new(),
        }
    }

    /// Records that `thread` waits for `blocker` at this turn (`waits for ...`), once
    /// per stretch of waiting: nothing when its last record is already that wait.
    /// `step` describes the step it waits to run, asked for only when recorded.
    pub fn note_wait(
        &mut self,
        turn: usize,
        thread: &str,
        line: usize,
        step: impl FnOnce() -> String,
        blocker: &str,
    ) {
        let last_wait = self
            .steps
            .iter()
            .rev()
            .find(|s| s.thread == thread)
            .is_some_and(|s| s.waited && s.result.strip_prefix("waits for ") == Some(blocker));
        if !last_wait {
            self.steps.push(StepRecord {
                result: format!("waits for {blocker}"),
                ..StepRecord::waited(turn, thread, line, step())
            });
        }
    }

    /// Where the run first failed: the `id` of the first step whose expectation failed
    /// (`"?"` for a step without one), or `"end"` when only end checks failed.
    pub fn first_failure(&self) -> Option<String> {
        if let Some(s) = self.steps.iter().find(|s| s.failed.is_some()) {
            return Some(s.id.clone().unwrap_or_else(|| format!("line {}", s.line)));
        }
        self.end.iter().any(|c| !c.ok).then(|| "end".to_string())
    }

    /// Whether the run ended as `want` documents (outcome; for a documented failure,
    /// where it first failed; for a documented self-deadlock, a hung-task report that
    /// shows one).
    pub fn ends_as(&self, want: &EraOutcome) -> bool {
        self.outcome() == want.outcome
            && want
                .fails_at
                .as_ref()
                .is_none_or(|f| self.first_failure().as_ref() == Some(f))
            && (!want.self_deadlock || self.hang.as_ref().is_some_and(|h| h.self_deadlock))
    }

    /// How the run ended: every expectation held, one did not, or it deadlocked.
    pub fn outcome(&self) -> RunOutcome {
        if self.deadlock.is_some() {
            RunOutcome::Deadlock
        } else if self.passed {
            RunOutcome::Pass
        } else {
            RunOutcome::Fail
        }
    }

    /// The step-by-step account as text.
    pub fn account(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario {} under {}", self.scenario, self.profile);
        for s in &self.steps {
            let mark = if s.failed.is_some() {
                "FAIL"
            } else if s.waited {
                "wait"
            } else {
                "  ok"
            };
            let _ = writeln!(
                out,
                "{mark} [{:>3}] {:<8} {} -> {}  (line {})",
                s.turn, s.thread, s.step, s.result, s.line
            );
            if let Some(n) = &s.note {
                let _ = writeln!(out, "             # {n}");
            }
            if let Some(c) = s.cpages {
                let _ = writeln!(out, "             cpages: {c}");
            }
            if let Some((a, b)) = &s.pte
                && a != b
            {
                let _ = writeln!(out, "             pte: {a} -> {b}");
            }
            for e in &s.events {
                let _ = writeln!(out, "             notifier: {e}");
            }
            for d in &s.decisions {
                let _ = writeln!(out, "             decided: {d}");
            }
            for d in &s.devices {
                let _ = writeln!(out, "             device: {d}");
            }
            if let Some(c) = &s.folio {
                let _ = writeln!(
                    out,
                    "             folio {:#x}: refcount {}, mapcount {}",
                    c.folio, c.refcount, c.mapcount
                );
            }
            if let Some(f) = &s.failed {
                let _ = writeln!(out, "             expected {f}");
            }
        }
        if let Some(d) = &self.deadlock {
            let _ = writeln!(out, "FAIL deadlock: {d}");
        }
        if let Some(h) = &self.hang {
            for l in &h.lines {
                let _ = writeln!(out, "             {l}");
            }
        }
        for c in &self.end {
            let _ = writeln!(
                out,
                "{} end: {}: {}",
                if c.ok { "  ok" } else { "FAIL" },
                c.what,
                c.detail
            );
        }
        let _ = writeln!(
            out,
            "{}",
            if self.passed {
                "PASS: every expectation held"
            } else {
                "FAIL: an expectation did not hold"
            }
        );
        out
    }
}

/// Why a step failed: an errno, a signal a CPU access raised, or a process that is not
/// there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepError {
    /// The call failed with this errno.
    Errno(Errno),
    /// A CPU access raised SIGSEGV (no VMA, or the VMA forbids it).
    Sigsegv,
    /// A CPU access raised SIGBUS.
    Sigbus,
    /// The step names a process that does not exist (exited, or not forked yet).
    NoProcess,
    /// A uvm atomic fault returned a status that is no errno: its shim's
    /// `PTR_ERR()` read a page pointer (`svmkit::device::uvm::UvmError::BadStatus`,
    /// derived from code).
    BadStatus,
    /// No progress: a uvm atomic fault used up its pass bound (UVM itself retries
    /// without end), or a CPU access kept faulting (`svmkit::FaultKind::Livelock`: on
    /// Linux the process would spin in the fault until killed).
    Livelock,
}

impl StepError {
    /// How a scenario file names it (`expect_err = "..."`).
    pub fn name(self) -> &'static str {
        match self {
            StepError::Errno(e) => e.name(),
            StepError::Sigsegv => "SIGSEGV",
            StepError::Sigbus => "SIGBUS",
            StepError::NoProcess => "ESRCH",
            StepError::BadStatus => "BAD_STATUS",
            StepError::Livelock => "LIVELOCK",
        }
    }
}

impl From<Errno> for StepError {
    fn from(e: Errno) -> Self {
        StepError::Errno(e)
    }
}

impl From<svmkit::device::uvm::UvmError> for StepError {
    fn from(e: svmkit::device::uvm::UvmError) -> Self {
        use svmkit::device::uvm::UvmError;
        match e {
            UvmError::Errno(e) => StepError::Errno(e),
            UvmError::BadStatus => StepError::BadStatus,
            UvmError::Livelock => StepError::Livelock,
        }
    }
}

/// What the watchdog can see of a run in progress.
#[derive(Default)]
struct Progress {
    steps: Vec<StepRecord>,
    current: Option<(String, String, usize)>,
    /// When the current step started.
    since: Option<std::time::Instant>,
    world: Option<Arc<World>>,
    scenario: String,
    profile: String,
}

/// Runs `sc` on the deterministic schedule described in the module docs.
///
/// The run happens on a thread of its own, watched: a step that does not return
/// within `opts.step_timeout` (it sleeps on a lock nobody will release, as a flawed
/// driver's self-deadlock does) ends the run with a deadlock report naming the step
/// and every locked folio; that thread and the model it holds are then abandoned (they
/// cannot be torn down while asleep).
pub fn run(sc: &Scenario, opts: &RunOptions) -> Result<RunReport, StepError> {
    let progress = Arc::new(std::sync::Mutex::new(Progress::default()));
    let (tx, rx) = std::sync::mpsc::channel();
    let (sc2, opts2, prog2) = (sc.clone(), opts.clone(), Arc::clone(&progress));
    let handle = std::thread::Builder::new()
        .name(format!("scenario {}", sc.name))
        .spawn(move || {
            let r = run_on(&sc2, &opts2, &prog2);
            let _ = tx.send(r);
        })
        .map_err(|_| StepError::Errno(Errno::ENOMEM))?;
    let tick = opts.step_timeout.min(std::time::Duration::from_millis(100));
    loop {
        match rx.recv_timeout(tick) {
            Ok(r) => return r,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // The run panicked: a bug of the model or the engine, not the
                // scenario's; pass it on rather than hide it.
                match handle.join() {
                    Err(payload) => std::panic::resume_unwind(payload),
                    Ok(()) => return Err(StepError::Errno(Errno::EFAULT)),
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let p = progress.lock().unwrap_or_else(|e| e.into_inner());
                if p.since.is_some_and(|t| t.elapsed() >= opts.step_timeout) {
                    return Ok(hung_report(&p, opts.step_timeout));
                }
            }
        }
    }
}

/// The report of a run whose current step never returned, with a hung-task report
/// read from the model.
fn hung_report(p: &Progress, timeout: std::time::Duration) -> RunReport {
    let (thread, step, line) = p
        .current
        .clone()
        .unwrap_or_else(|| ("?".into(), "?".into(), 0));
    let stalled = p.since.map_or(timeout, |t| t.elapsed());
    let hang = p.world.as_ref().map(|w| w.diagnose_hang(stalled));
    let mut steps = p.steps.clone();
    steps.push(StepRecord {
        turn: steps.last().map_or(1, |s| s.turn + 1),
        thread: thread.clone(),
        line,
        step: step.clone(),
        result: format!("did not return within {} s", timeout.as_secs_f64()),
        waited: false,
        pte: None,
        events: Vec::new(),
        decisions: Vec::new(),
        devices: Vec::new(),
        faults: None,
        cpages: None,
        folio: None,
        failed: Some("the step to return".into()),
        note: None,
        id: None,
    });
    let why = hang.as_ref().map_or_else(
        || "folios locked now: unknown".to_string(),
        |h| {
            if h.task.is_some() {
                h.summary()
            } else {
                h.lines.first().cloned().unwrap_or_default()
            }
        },
    );
    RunReport {
        steps,
        deadlock: Some(format!(
            "thread {thread} sleeps in `{step}` (line {line}) and nothing will wake it: {why}"
        )),
        hang,
        passed: false,
        trace: p
            .world
            .as_ref()
            .map_or_else(Vec::new, |w| w.sys.trace().events()),
        ..RunReport::new(&p.scenario, &p.profile)
    }
}

fn run_on(
    sc: &Scenario,
    opts: &RunOptions,
    progress: &std::sync::Mutex<Progress>,
) -> Result<RunReport, StepError> {
    let profile = opts.profile.unwrap_or(sc.profile);
    let w = Arc::new(World::new(Arc::new(sc.clone()), profile)?);
    w.sys.set_trace(opts.trace);
    w.sys.trace().set_track(Some("setup"));
    {
        let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
        p.world = Some(w.clone());
        p.scenario = sc.name.clone();
        p.profile = profile.name.to_string();
    }
    let mut report = RunReport::new(&sc.name, profile.name);
    if let Some(failed) = w.setup()? {
        report.end.push(failed);
        report.passed = false;
        return Ok(report);
    }
    let mut pc = vec![0usize; sc.threads.len()];
    let mut turn = 0;
    loop {
        let mut progressed = false;
        let mut waiting = Vec::new();
        for t in 0..sc.threads.len() {
            let th = &sc.threads[t];
            let Some(step) = th.steps.get(pc[t]) else {
                continue;
            };
            let p = w_thread_process(sc, t);
            turn += 1;
            // A killed task runs no further step, except the one it sleeps in (that
            // step ends with EINTR if the sleep is killable, or when its lock is free).
            let sleeping = report
                .steps
                .iter()
                .rev()
                .find(|s| s.thread == th.name)
                .is_some_and(|s| s.waited);
            if w.killed(t) && !sleeping {
                skip_the_rest(&mut report, &w, th, &mut pc[t], turn);
                continue;
            }
            let unfinished: Vec<&str> = th
                .after
                .iter()
                .filter(|&&j| pc[j] < sc.threads[j].steps.len())
                .map(|&j| sc.threads[j].name.as_str())
                .collect();
            let blocker = if !unfinished.is_empty() {
                Some(format!(
                    "thread {} to finish (after)",
                    unfinished.join(", ")
                ))
            } else if !w.was_created(p) && !matches!(step.op, Op::Exit { .. }) {
                Some(format!("process {} (not forked yet)", sc.processes[p].name))
            } else {
                w.would_block(t, step)
            };
            // A killed task asleep where a fatal signal wakes it (a user page fault's
            // folio wait is killable, FAULT_FLAG_KILLABLE; a thread waiting for
            // another is in user space) dies there; GUP's folio_lock goes on sleeping.
            if w.killed(t)
                && let Some(b) = &blocker
                && (!unfinished.is_empty() || !w.was_created(p) || step.op.is_cpu_access())
            {
                let left = th.steps.len() - pc[t];
                let result = if step.op.is_cpu_access() && unfinished.is_empty() && w.was_created(p)
                {
                    format!(
                        "killed in its page fault, asleep on {b}: the step does not return, {} more step(s) do not run",
                        left - 1
                    )
                } else {
                    format!("killed while it waited for {b}: its {left} step(s) do not run")
                };
                report.steps.push(StepRecord {
                    result,
                    ..StepRecord::waited(
                        turn,
                        &th.name,
                        w.sc.line_of(step.span.start),
                        w.describe(&step.op),
                    )
                });
                pc[t] = th.steps.len();
                progressed = true;
                continue;
            }
            if let Some(b) = blocker {
                waiting.push(format!("{} waits for {b}", th.name));
                let line = w.sc.line_of(step.span.start);
                report.note_wait(turn, &th.name, line, || w.describe(&step.op), &b);
                continue;
            }
            progressed = true;
            {
                let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                p.current = Some((
                    th.name.clone(),
                    w.describe(&step.op),
                    w.sc.line_of(step.span.start),
                ));
                p.since = Some(std::time::Instant::now());
                let known = p.steps.len();
                p.steps.extend_from_slice(&report.steps[known..]);
            }
            w.sys.trace().set_track(Some(&th.name));
            let mut rec = w.perform(t, step, turn);
            check_invariants(&w, &mut rec);
            if rec.failed.is_some() {
                report.passed = false;
            }
            report.steps.push(rec);
            pc[t] += 1;
            if w.killed(t) && pc[t] < th.steps.len() {
                skip_the_rest(&mut report, &w, th, &mut pc[t], turn);
            }
        }
        if !progressed {
            if !waiting.is_empty() {
                report.deadlock = Some(waiting.join("; "));
                report.passed = false;
            }
            break;
        }
    }
    // The end: checker and values with everything still in place, then teardown.
    w.sys.trace().set_track(Some("end"));
    let clean = report.deadlock.is_none();
    w.end_checks(&mut report, clean);
    if report.deadlock.is_none() {
        w.teardown(&mut report);
    } else {
        w.abandon();
    }
    if report.end.iter().any(|c| !c.ok) {
        report.passed = false;
    }
    report.trace = w.sys.trace().take();
    Ok(report)
}

/// A killed thread's steps from `*pc` on do not run (a task with a fatal signal pending
/// never returns to user space): one record says so, and the thread is done.
fn skip_the_rest(report: &mut RunReport, w: &World, th: &Thread, pc: &mut usize, turn: usize) {
    let next = &th.steps[*pc];
    report.steps.push(StepRecord {
        result: format!(
            "killed: its {} remaining step(s) do not run",
            th.steps.len() - *pc
        ),
        ..StepRecord::waited(
            turn,
            &th.name,
            w.sc.line_of(next.span.start),
            w.describe(&next.op),
        )
    });
    *pc = th.steps.len();
}

/// The checks that hold at every moment, run after every step as the explorer runs
/// them ([`svmkit::System::check_devices_now`]: DESIGN.md's exclusivity invariant, no stale
/// device translation, no device access to a frame it no longer maps), the
/// interval-notifier state ([`World::check_notifiers_now`]), and, since no step is in
/// flight between two turns, notifier start/end pairing. A violation fails
/// the step that left it, after the step's own expectations.
fn check_invariants(w: &World, rec: &mut StepRecord) {
    let mut bad = Vec::new();
    if let Err(e) = w.sys.check_devices_now() {
        bad.push(
            e.violations
                .first()
                .map_or_else(|| e.to_string(), |v| v.to_string()),
        );
    }
    if let Err(e) = w.check_notifiers_now() {
        bad.push(e);
    }
    let open = w.ranges_open();
    if open != 0 {
        bad.push(format!(
            "{open} notifier range(s) started and not ended (invalidate_range_start without its end)"
        ));
    }
    if bad.is_empty() {
        return;
    }
    let text = format!(
        "the invariants to hold after the step, got: {}",
        bad.join("; ")
    );
    rec.failed = Some(match rec.failed.take() {
        None => text,
        Some(f) => format!("{f}; and {text}"),
    });
}

/// The process a thread acts in: its own, or its device's.
pub(crate) fn w_thread_process(sc: &Scenario, t: usize) -> usize {
    match sc.threads[t].actor {
        Actor::Process(p) => p,
        Actor::Device(d) => sc.devices[d].process,
    }
}
