//! `svmkit explore FILE`, `svmkit replay FILE SCHEDULE`, `svmkit merge REPORT...`:
//! the explorer's front end. The work is `svmkit_scenario::explore`'s; this file reads
//! the inputs, shows progress, writes the schedule file and the report.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use svmkit::check::SchedulerKind;
use svmkit::trace::{TraceInfo, TraceLevel, View};
use svmkit_scenario::Scenario;
use svmkit_scenario::explore::{
    ExploreOptions, ExploreReport, Shard, explore_jobs, minimise, replay_traced,
};

use crate::run::TraceOut;

/// Exit status: no failure within the budget.
const CLEAN: u8 = 0;
/// Exit status: a failure was found (or replayed).
const FOUND: u8 = 1;
/// Exit status: bad input (nothing explored).
const BAD_INPUT: u8 = 2;

/// What `svmkit explore` was asked.
pub struct Args {
    pub file: PathBuf,
    pub profile: Option<String>,
    pub strategy: String,
    pub schedules: Option<usize>,
    pub time: Option<u64>,
    pub seed: u64,
    pub pct_depth: usize,
    pub preemption_bound: usize,
    pub max_steps: Option<usize>,
    pub jobs: usize,
    pub shard: Option<String>,
    pub json: bool,
    pub save: Option<PathBuf>,
    /// The view of the failing schedule's trace (an extension: html, json, jsonl,
    /// txt), or `off`.
    pub trace: String,
}

/// A saved failing schedule: what `svmkit replay` reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScheduleFile {
    /// Always `svmkit-schedule/1`.
    pub format: String,
    /// The scenario's name (a replay checks it is the same file).
    pub scenario: String,
    /// The profile it failed under.
    pub profile: String,
    /// The violation.
    pub violation: String,
    /// The encoded schedule.
    pub schedule: String,
    /// The step bound it was found under (absent: shuttle's default); the replay runs
    /// under it, so that a livelock at the bound reproduces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
}

const SCHEDULE_FORMAT: &str = "svmkit-schedule/1";

fn load(file: &Path) -> Result<(Scenario, String), ExitCode> {
    let name = file.display().to_string();
    let source = std::fs::read_to_string(file).map_err(|e| {
        eprintln!("svmkit: error: cannot read {name}: {e}");
        ExitCode::from(BAD_INPUT)
    })?;
    let sc = svmkit_scenario::parse(&name, &source).map_err(|e| {
        eprint!("{}", e.render());
        eprintln!(
            "svmkit: {} mistake(s) in {name}; nothing ran",
            e.problems.len()
        );
        ExitCode::from(BAD_INPUT)
    })?;
    Ok((sc, source))
}

fn bad(msg: impl std::fmt::Display, hint: &str) -> ExitCode {
    eprintln!("svmkit: error: {msg}\n  hint: {hint}");
    ExitCode::from(BAD_INPUT)
}

/// While alive, fd 2 goes to /dev/null: shuttle writes its own report of every
/// failing schedule there (the exploration's failures, and each candidate of the
/// minimisation), which means nothing to a user of `svmkit explore`. svmkit's own
/// progress goes to [`StderrHush::terminal`], the real stderr; dropping restores it.
struct StderrHush {
    saved: Option<std::os::fd::OwnedFd>,
}

impl StderrHush {
    fn new() -> StderrHush {
        use std::os::fd::AsFd;
        let saved = std::io::stderr().as_fd().try_clone_to_owned().ok();
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
        if let (Some(_), Ok(null)) = (&saved, null)
            && rustix::stdio::dup2_stderr(&null).is_ok()
        {
            return StderrHush { saved };
        }
        StderrHush { saved: None }
    }

    /// The real stderr, as a file.
    fn terminal(&self) -> Option<std::fs::File> {
        let fd = self.saved.as_ref()?.try_clone().ok()?;
        Some(std::fs::File::from(fd))
    }
}

impl Drop for StderrHush {
    fn drop(&mut self) {
        if let Some(fd) = &self.saved {
            let _ = rustix::stdio::dup2_stderr(fd);
        }
    }
}

type Tick = Arc<dyn Fn(usize) + Send + Sync>;

/// Progress on the real stderr: a bar on a terminal, a line every 5 s otherwise.
fn progress_sink(total: usize, err: Option<std::fs::File>) -> (Tick, Box<dyn FnOnce()>) {
    let started = Instant::now();
    let Some(err) = err else {
        return (Arc::new(|_| {}), Box::new(|| {}));
    };
    // A time budget has no schedule count (`usize::MAX`): no length, no "of N".
    let bounded = total != usize::MAX;
    if err.is_terminal() {
        let term = console::Term::read_write_pair(std::io::stdin(), err);
        let bar = indicatif::ProgressBar::with_draw_target(
            bounded.then_some(total as u64),
            indicatif::ProgressDrawTarget::term(term, 10),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(if bounded {
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} schedules ({rate})"
            } else {
                "{spinner} [{elapsed_precise}] {pos} schedules ({rate})"
            })
            .map(|style| {
                // Whole schedules a second: `per_sec` prints four decimals.
                style.with_key(
                    "rate",
                    |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}/s", s.per_sec());
                    },
                )
            })
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let b = bar.clone();
        let f: Tick = Arc::new(move |n| {
            if n % 64 == 0 {
                b.set_position(n as u64);
            }
        });
        (f, Box::new(move || bar.finish_and_clear()))
    } else {
        let last = Arc::new(AtomicU64::new(0));
        let err = std::sync::Mutex::new(err);
        let f: Tick = Arc::new(move |n| {
            let secs = started.elapsed().as_secs();
            if secs >= last.load(Ordering::Relaxed) + 5 {
                last.store(secs, Ordering::Relaxed);
                let mut e = err.lock().unwrap_or_else(|e| e.into_inner());
                let of = if bounded {
                    format!(" of {total}")
                } else {
                    String::new()
                };
                let _ = writeln!(
                    e,
                    "svmkit: explored {n}{of} schedules in {secs} s ({:.0}/s)",
                    n as f64 / started.elapsed().as_secs_f64().max(1e-9)
                );
            }
        });
        (f, Box::new(|| {}))
    }
}

/// The view `--trace VIEW` names (`None` for `off`), or the exit for a name no view
/// has.
fn explore_trace_view(name: &str) -> Result<Option<View>, ExitCode> {
    if name.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    View::for_path(Path::new(&format!("trace.{name}")))
        .map(Some)
        .map_err(|_| {
            bad(
                format!("--trace {name}: no such trace view"),
                "--trace html (timeline, the default), json (Perfetto / Chrome), jsonl, txt, or off",
            )
        })
}

/// Where the failing schedule's trace goes: beside its schedule file,
/// `STEM.PROFILE.trace.EXT` for `STEM.PROFILE.schedule.json`.
pub fn trace_path_beside(schedule: &Path, view: View) -> PathBuf {
    let name = schedule
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("schedule.json");
    let stem = name
        .strip_suffix(".schedule.json")
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or(name);
    schedule.with_file_name(format!("{stem}.trace.{}", view.extension()))
}

pub fn explore(a: Args) -> ExitCode {
    let trace_view = match explore_trace_view(&a.trace) {
        Ok(v) => v,
        Err(c) => return c,
    };
    if let Some(save) = &a.save {
        let dir = save
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return bad(
                format!(
                    "--save {}: no directory {} to save the schedule (and its trace) in",
                    save.display(),
                    dir.display()
                ),
                "give a path in an existing directory",
            );
        }
    }
    let (sc, _) = match load(&a.file) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let Some(strategy) = SchedulerKind::from_name(&a.strategy) else {
        return bad(
            format!("unknown strategy `{}`", a.strategy),
            "strategies: random, pct, dfs",
        );
    };
    let shard = match a.shard.as_deref().map(Shard::parse) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            return bad(
                format!("--shard: {e}"),
                "--shard 1/4 explores the first of 4 shares",
            );
        }
    };
    if strategy == SchedulerKind::Dfs && (a.jobs > 1 || shard.is_some()) {
        return bad(
            "dfs explores one fixed space; --jobs and --shard split seeds",
            "use --strategy random or pct to explore in parallel",
        );
    }
    let profile = a.profile.as_deref().and_then(svmkit::Profile::by_name);
    let opts = ExploreOptions {
        profile,
        strategy,
        // `--time` alone is a time budget: the file's schedule count, or the default,
        // would end the run long before it.
        schedules: match (a.schedules, a.time) {
            (Some(n), _) => n,
            (None, Some(_)) => usize::MAX,
            (None, None) => sc.explore.schedules.unwrap_or(1000),
        },
        time: a.time.map(Duration::from_secs),
        seed: a.seed,
        pct_depth: a.pct_depth,
        preemption_bound: a.preemption_bound,
        max_steps: a.max_steps.or(sc.explore.max_steps).unwrap_or(100_000),
    };
    let mut shrunk = None;
    let report = {
        let hush = StderrHush::new();
        let (tick, finish) = progress_sink(opts.schedules, hush.terminal());
        let mut report = explore_jobs(&sc, &opts, a.jobs, shard, tick);
        finish();
        if let Some(f) = report.failures.first_mut() {
            let found = (f.steps, f.preemptions);
            let t = Instant::now();
            *f = minimise(&sc, opts.profile, f, Duration::from_secs(5));
            shrunk = Some((found, t.elapsed()));
        }
        report
    };
    let profile_name = report.profile.clone();
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut write = |s: &str| {
        let _ = out.write_all(s.as_bytes());
    };
    if a.json {
        write(&serde_json::to_string_pretty(&report).unwrap_or_default());
        write("\n");
    } else {
        write(&format!(
            "explored {} schedule(s) of {} under {} ({}{}) in {:.2} s: {:.0} schedules/s{}\n",
            report.schedules,
            report.scenario,
            report.profile,
            report.strategy,
            if report.jobs > 1 {
                format!(", {} jobs", report.jobs)
            } else {
                String::new()
            },
            report.seconds,
            report.schedules_per_sec,
            if report.exhausted {
                "; the bounded space is exhausted"
            } else {
                ""
            },
        ));
    }
    let status = match report.failures.first() {
        None => {
            if !a.json {
                write("no failure found within the budget\n");
            }
            CLEAN
        }
        Some(f) => {
            let path = a
                .save
                .clone()
                .unwrap_or_else(|| default_save_path(&a.file, &profile_name));
            let saved = ScheduleFile {
                format: SCHEDULE_FORMAT.into(),
                scenario: sc.name.clone(),
                profile: profile_name.clone(),
                violation: f.violation.clone(),
                schedule: f.schedule.clone(),
                max_steps: f.max_steps,
            };
            let saved_ok = serde_json::to_string_pretty(&saved)
                .map_err(std::io::Error::other)
                .and_then(|j| std::fs::write(&path, j + "\n"));
            if !a.json {
                write(&format!(
                    "FAILURE after {} schedule(s) (seed {:#x}): {}\n",
                    f.schedules_run, f.seed, f.violation
                ));
                if let Some(((steps, preemptions), took)) = shrunk {
                    write(&format!(
                        "schedule: {} scheduling steps, {} preemptions (as found: {steps}, {preemptions}; shrunk in {:.2} s)\n",
                        f.steps,
                        f.preemptions,
                        took.as_secs_f64()
                    ));
                }
                write(&format!("\n{}", f.account));
            }
            match saved_ok {
                Ok(()) => eprintln!(
                    "svmkit: schedule saved to {}\nreplay with: svmkit replay {} {}{}",
                    path.display(),
                    a.file.display(),
                    path.display(),
                    a.profile
                        .as_deref()
                        .map_or(String::new(), |p| format!(" --profile {p}"))
                ),
                Err(e) => eprintln!(
                    "svmkit: error: cannot save the schedule to {}: {e}",
                    path.display()
                ),
            }
            if let Some(view) = trace_view {
                let out = trace_path_beside(&path, view);
                let info = TraceInfo {
                    title: format!("{} under {} (failing schedule)", sc.name, profile_name),
                    violation: Some(f.violation.clone()),
                };
                match std::fs::write(&out, view.render_with(&f.trace, &info)) {
                    Ok(()) => eprintln!(
                        "svmkit: trace of the failing schedule ({}, {} events) written to {}",
                        view.description(),
                        f.trace.len(),
                        out.display()
                    ),
                    Err(e) => eprintln!(
                        "svmkit: error: cannot write the trace to {}: {e}",
                        out.display()
                    ),
                }
            }
            FOUND
        }
    };
    documented(&sc, &report);
    ExitCode::from(status)
}

/// Says on stderr whether the exploration ended as the file documents.
fn documented(sc: &Scenario, report: &ExploreReport) {
    let Some(want) = sc.expected_explore_outcome(&report.profile) else {
        return;
    };
    let got = report
        .failures
        .first()
        .map_or(svmkit_scenario::RunOutcome::Pass, |f| f.outcome());
    let finds_ok = match (&want.finds, report.failures.first()) {
        (Some(w), Some(f)) => f.violation.contains(w.as_str()),
        _ => true,
    };
    let ok = got == want.outcome && finds_ok;
    eprintln!(
        "svmkit: {} under {}: {} (documented: {}{}, source: {})",
        if ok {
            "as documented"
        } else {
            "NOT as documented"
        },
        report.profile,
        got.name(),
        want.outcome.name(),
        want.finds
            .as_ref()
            .map_or(String::new(), |f| format!(", finding `{f}`")),
        want.source
    );
}

fn default_save_path(file: &Path, profile: &str) -> PathBuf {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("scenario");
    PathBuf::from(format!("{stem}.{profile}.schedule.json"))
}

/// What `svmkit replay` was asked.
pub struct ReplayArgs {
    pub file: PathBuf,
    pub schedule: PathBuf,
    pub profile: Option<String>,
    pub json: bool,
    pub trace: Option<PathBuf>,
    pub trace_level: String,
}

pub fn replay_main(a: &ReplayArgs) -> ExitCode {
    let (file, schedule, profile, json) = (
        a.file.as_path(),
        a.schedule.as_path(),
        a.profile.as_deref(),
        a.json,
    );
    if let Some(out) = &a.trace
        && let Err(e) = crate::run::trace_view(out)
    {
        eprintln!("{e}");
        return ExitCode::from(BAD_INPUT);
    }
    let (sc, _) = match load(file) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let text = match std::fs::read_to_string(schedule) {
        Ok(t) => t,
        Err(e) => {
            return bad(
                format!("cannot read {}: {e}", schedule.display()),
                "give the file `svmkit explore` saved",
            );
        }
    };
    let saved: ScheduleFile = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            return bad(
                format!(
                    "{}:{}:{}: not a schedule file: {e}",
                    schedule.display(),
                    e.line(),
                    e.column()
                ),
                "give the JSON file `svmkit explore` saved (format svmkit-schedule/1)",
            );
        }
    };
    if saved.format != SCHEDULE_FORMAT {
        return bad(
            format!("schedule format `{}`", saved.format),
            "this svmkit reads svmkit-schedule/1",
        );
    }
    if saved.scenario != sc.name {
        return bad(
            format!(
                "the schedule is of scenario `{}`, the file is `{}`",
                saved.scenario, sc.name
            ),
            "replay a schedule with the file it was found in",
        );
    }
    let profile_name = profile.unwrap_or(saved.profile.as_str()).to_string();
    let profile = svmkit::Profile::by_name(&profile_name);
    let trace_out = match a.trace.as_deref().map(TraceOut::create).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let level = match &trace_out {
        Some(_) => TraceLevel::from_name(&a.trace_level).unwrap_or(TraceLevel::Normal),
        None => TraceLevel::Off,
    };
    let r = {
        let _hush = StderrHush::new();
        std::panic::catch_unwind(|| {
            replay_traced(&sc, profile, &saved.schedule, saved.max_steps, level)
        })
    };
    let (r, trace) = match r {
        Ok(r) => r,
        Err(_) => {
            return bad(
                "the schedule does not fit this scenario (it was found with another version of the file or of svmkit)",
                "explore again to get a fresh schedule",
            );
        }
    };
    if let Err(f) = &r {
        // The replay scheduler's own complaints: the schedule is not this file's.
        let v = f.violation.as_str();
        if v.starts_with("invalid schedule") {
            return bad(
                format!("{}: the schedule string cannot be read", schedule.display()),
                "give the file `svmkit explore` saved, unedited",
            );
        }
        if v.contains("scheduled task is not runnable")
            || v.contains("schedule ended early")
            || v.contains("expected random choice")
            || v.contains("expected context switch")
        {
            return bad(
                format!(
                    "{}: the schedule does not fit this scenario ({v})",
                    schedule.display()
                ),
                "it was found with another version of the file or of svmkit: explore again",
            );
        }
    }
    if let Some(t) = trace_out {
        let info = TraceInfo {
            title: format!("{} under {} (replayed schedule)", sc.name, profile_name),
            violation: r.as_ref().err().map(|f| f.violation.clone()),
        };
        let (path, view) = (t.path.clone(), t.view);
        match t.write(&trace, &info) {
            Ok(()) => eprintln!(
                "svmkit: trace ({}, {} events) written to {}",
                view.description(),
                trace.len(),
                path.display()
            ),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    match r {
        Err(f) => {
            let same = f.violation == saved.violation;
            if json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&f).unwrap_or_default()
                );
            } else {
                let _ = write!(out, "{}", f.account);
            }
            eprintln!(
                "svmkit: {}",
                if same {
                    "reproduced: the same violation as saved".to_string()
                } else {
                    format!("a DIFFERENT violation than saved (`{}`)", saved.violation)
                }
            );
            ExitCode::from(FOUND)
        }
        Ok(()) => {
            eprintln!(
                "svmkit: the schedule passed: it did not reproduce `{}`",
                saved.violation
            );
            ExitCode::from(CLEAN)
        }
    }
}

pub fn merge_main(files: &[PathBuf], json: bool) -> ExitCode {
    let mut reports = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                return bad(
                    format!("cannot read {}: {e}", f.display()),
                    "give the --json reports of svmkit explore",
                );
            }
        };
        match serde_json::from_str::<ExploreReport>(&text) {
            Ok(r) => reports.push(r),
            Err(e) => {
                return bad(
                    format!(
                        "{}:{}:{}: not an explore report: {e}",
                        f.display(),
                        e.line(),
                        e.column()
                    ),
                    "give the --json reports of svmkit explore",
                );
            }
        }
    }
    let merged = match ExploreReport::merge(&reports) {
        Ok(m) => m,
        Err(e) => return bad(e, "merge the shards of one exploration"),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&merged).unwrap_or_default()
        );
    } else {
        println!(
            "{} report(s), shards {}: {} schedule(s) of {} under {} ({}), {:.0} schedules/s, {} failure(s)",
            reports.len(),
            if merged.shards.is_empty() {
                "-".to_string()
            } else {
                merged.shards.join(", ")
            },
            merged.schedules,
            merged.scenario,
            merged.profile,
            merged.strategy,
            merged.schedules_per_sec,
            merged.failures.len()
        );
        for f in &merged.failures {
            println!("  seed {:#x}: {}", f.seed, f.violation);
        }
    }
    ExitCode::from(if merged.failures.is_empty() {
        CLEAN
    } else {
        FOUND
    })
}
