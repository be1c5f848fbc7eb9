//! `svmkit`: the command-line front end of the svmkit model.
//!
//! `svmkit run` runs a scenario file on one schedule, `svmkit explore` explores its
//! schedules, `svmkit replay` reproduces a failing one, `svmkit merge` combines the
//! reports of explore shards, and `svmkit demo` is the guided tour.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Explorations allocate a few hundred small objects per schedule (shuttle's tasks,
/// the model's tables, the checks); mimalloc serves them at a fraction of glibc's cost.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bundled;
mod demo;
mod explore;
mod oracle;
mod report;
mod run;

/// svmkit: an executable model of Linux's device-exclusive memory access (HMM).
///
/// svmkit models the mm slice that device-exclusive entries live in: physical memory,
/// folios and their locks, page tables, faults, fork and COW, mprotect, munmap, GUP,
/// THP, MMU notifiers, swap and migration, in Linux 5.14's and 6.15's designs, so that
/// driver logic can be run, raced and inspected against it.
/// Every preset's name (`svmkit::Profile::PRESETS`), for `--profile`.
const PRESETS: [&str; 5] = [
    "linux-5.14",
    "linux-6.1",
    "linux-6.12",
    "linux-6.15",
    "linux-7.1",
];

#[derive(Debug, Parser)]
#[command(name = "svmkit", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the narrated demo: the mm model, device-exclusive access, a GPU-style driver
    /// and CPU threads sharing counters, the owner-filter livelock, two GPUs on one
    /// page, and Linux's hmm selftests. Every figure is read back from the model; each
    /// part ends with verdicts comparing what the model did with what Linux does. Exit
    /// status 0 only when every verdict matches.
    Demo {
        /// Number of 4 KiB frames of every part's memory (2..=1048576): the foundation's
        /// (4096 when not given) and each bundled scenario's instead of the file's own.
        #[arg(long, value_parser = clap::value_parser!(u64).range(2..=1_048_576))]
        frames: Option<u64>,
        /// Print the report as JSON (parts, lines, figures, verdicts) instead of text.
        #[arg(long)]
        json: bool,
        /// Run only these parts (repeatable); all by default.
        #[arg(long = "part", value_enum)]
        parts: Vec<demo::PartName>,
        /// Which Linux era's device-exclusive design: linux-6.15 (the 2025 rework, the
        /// default), linux-5.14 (the 2021 design as merged), or both, one after the
        /// other with a side-by-side summary.
        #[arg(long, default_value = "linux-6.15", value_parser = ["linux-6.15", "linux-5.14", "both"])]
        profile: String,
    },
    /// Compare a scenario file's run on a real Linux kernel with the model's, observable
    /// by observable (result, entry kind, soft-dirty, faults, cpages, end values). The
    /// kernel side is a golden (--golden, from oracle/run) or a boot of the cached
    /// Debian kernel through oracle/run (docs/ORACLE.md); the model runs the file under
    /// the kernel's preset. Exit status 0 when every difference is one the file
    /// documents in [oracle] divergences, 1 otherwise, 2 on bad input.
    Oracle {
        /// The scenario file.
        file: std::path::PathBuf,
        /// Which kernel: 6.12 (Debian 6.12.117) or 6.1 (6.1.192).
        #[arg(long, value_parser = ["6.12", "6.1"])]
        kernel: String,
        /// The kernel's output for this file, instead of booting (for example
        /// oracle/golden/6.12/NAME.json).
        #[arg(long)]
        golden: Option<std::path::PathBuf>,
        /// Print the comparison as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario file on one deterministic schedule and print a step-by-step
    /// account: each step, its thread, what it returned, what changed (the PTE, device
    /// entries, notifier events with their owners). Exit status 0 when every
    /// expectation holds, 1 when one fails, 2 when the file has mistakes (each reported
    /// as file:line:col with the text and a hint). The format: docs/SCENARIOS.md;
    /// examples: examples/*.toml.
    Run {
        /// The scenario file.
        file: std::path::PathBuf,
        /// Run under this preset instead of the file's profile: a design (linux-5.14,
        /// linux-6.15, linux-7.1) or a Debian kernel the oracle boots (linux-6.1,
        /// linux-6.12).
        #[arg(long, value_parser = PRESETS)]
        profile: Option<String>,
        /// Print the run as JSON (schema in docs/SCENARIOS.md) instead of text.
        #[arg(long)]
        json: bool,
        /// Seconds one step may take before the run is reported as hung (a model step
        /// takes microseconds; only a sleep on a lock nobody releases lasts).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
        step_timeout: u64,
        /// Write the run's trace, event by event, to this file; the extension picks the
        /// view: .txt (text, indented by nesting), .jsonl (JSON lines, schema in
        /// docs/TRACES.md), .json (Perfetto / Chrome trace events: open it in
        /// ui.perfetto.dev) or .html (a single-file timeline for a browser).
        #[arg(long, value_name = "OUT")]
        trace: Option<std::path::PathBuf>,
        /// What the trace records: normal, or detail (adds every refcount and
        /// mapcount change).
        #[arg(long, default_value = "normal", value_parser = ["normal", "detail"])]
        trace_level: String,
    },
    /// Explore the schedules of a scenario file: every thread becomes a task, and the
    /// explorer interleaves them at every lock the model takes, checking each schedule
    /// (every expectation, the exclusivity invariant at every scheduling point, the
    /// end checks, deadlocks, livelocks). On a
    /// failure it shrinks the schedule, saves it, and prints the violation, the
    /// failing schedule's account and the command that replays it. Exit status 0 when
    /// no failure is found within the budget, 1 when one is, 2 for bad input. Guide:
    /// docs/EXPLORING.md.
    Explore {
        /// The scenario file.
        file: std::path::PathBuf,
        /// Explore under this preset instead of the file's profile.
        #[arg(long, value_parser = PRESETS)]
        profile: Option<String>,
        /// random (uniform choice at every point), pct (probabilistic concurrency
        /// testing, bug depth --pct-depth), or dfs (every schedule with at most
        /// --preemption-bound preemptions).
        #[arg(long, default_value = "random", value_parser = ["random", "pct", "dfs"])]
        strategy: String,
        /// Schedules to run at most (default: none with --time, which is then the
        /// budget; else the file's [explore] schedules, else 1000).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
        schedules: Option<u64>,
        /// Stop after this many seconds (no failure within them: exit 0).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=604_800))]
        time: Option<u64>,
        /// Seed of the strategy's random choices (decimal or 0x-hex).
        #[arg(long, default_value = "0x5eed", value_parser = parse_seed)]
        seed: u64,
        /// PCT's bug depth.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
        pct_depth: u64,
        /// DFS's preemption bound.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=16))]
        preemption_bound: u64,
        /// Scheduling points after which a schedule counts as a livelock (default: the
        /// file's [explore] max_steps, else 100000).
        #[arg(long, value_parser = clap::value_parser!(u64).range(100..=1_000_000_000))]
        max_steps: Option<u64>,
        /// Exploration workers in this process; several share the budget in chunks, each
        /// explored from its own seed.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
        jobs: u64,
        /// Explore only share K of N of the seed space (for N independent processes;
        /// combine their --json reports with `svmkit merge`).
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
        /// Print the report as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Where to save a failing schedule (default: FILE-STEM.PROFILE.schedule.json).
        #[arg(long)]
        save: Option<std::path::PathBuf>,
        /// The view of the failing schedule's trace, written beside the schedule file
        /// as STEM.PROFILE.trace.VIEW: html (the timeline), json (Perfetto / Chrome
        /// trace events), jsonl, txt, or off.
        #[arg(long, value_name = "VIEW", default_value = "html")]
        trace: String,
    },
    /// Replay a schedule `svmkit explore` saved: the same violation and the same
    /// account, byte for byte. Exit status 1 when the schedule fails (the failure is
    /// reproduced), 0 when it passes, 2 for bad input.
    Replay {
        /// The scenario file the schedule was found in.
        file: std::path::PathBuf,
        /// The saved schedule (JSON).
        schedule: std::path::PathBuf,
        /// Replay under this preset instead of the one saved.
        #[arg(long, value_parser = PRESETS)]
        profile: Option<String>,
        /// Print the failure as JSON instead of the account.
        #[arg(long)]
        json: bool,
        /// Write the replayed schedule's trace to this file; the extension picks the
        /// view: .txt, .jsonl, .json (Perfetto / Chrome trace events) or .html (the
        /// timeline, with the violation marked).
        #[arg(long, value_name = "OUT")]
        trace: Option<std::path::PathBuf>,
        /// What the trace records: normal, or detail (adds every refcount and
        /// mapcount change).
        #[arg(long, default_value = "normal", value_parser = ["normal", "detail"])]
        trace_level: String,
    },
    /// Merge the --json reports of explore shards into one: schedules and throughput
    /// add up, failures are kept. Exit status 1 when any shard found a failure.
    Merge {
        /// The reports.
        #[arg(required = true)]
        reports: Vec<std::path::PathBuf>,
        /// Print the merged report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_seed(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(&h.replace('_', ""), 16),
        None => s.replace('_', "").parse(),
    };
    r.map_err(|_| format!("`{s}` is not a number (decimal, or hex with 0x)"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Explore {
            file,
            profile,
            strategy,
            schedules,
            time,
            seed,
            pct_depth,
            preemption_bound,
            max_steps,
            jobs,
            shard,
            json,
            save,
            trace,
        } => explore::explore(explore::Args {
            file,
            profile,
            strategy,
            schedules: schedules.map(|n| n as usize),
            time,
            seed,
            pct_depth: pct_depth as usize,
            preemption_bound: preemption_bound as usize,
            max_steps: max_steps.map(|n| n as usize),
            jobs: jobs as usize,
            shard,
            json,
            save,
            trace,
        }),
        Command::Replay {
            file,
            schedule,
            profile,
            json,
            trace,
            trace_level,
        } => explore::replay_main(&explore::ReplayArgs {
            file,
            schedule,
            profile,
            json,
            trace,
            trace_level,
        }),
        Command::Merge { reports, json } => explore::merge_main(&reports, json),
        Command::Oracle {
            file,
            kernel,
            golden,
            json,
        } => oracle::main(&oracle::Args {
            file,
            kernel,
            golden,
            json,
        }),
        Command::Run {
            file,
            profile,
            json,
            step_timeout,
            trace,
            trace_level,
        } => run::main(&run::Args {
            file,
            profile,
            json,
            step_timeout,
            trace,
            trace_level,
        }),
        Command::Demo {
            frames,
            json,
            parts,
            profile,
        } => {
            let profiles: Vec<svmkit::Profile> = match profile.as_str() {
                "both" => svmkit::Profile::ALL.to_vec(),
                name => svmkit::Profile::by_name(name).into_iter().collect(),
            };
            let mut progress = |name: &str| {
                if json {
                    eprintln!("svmkit: running part {name}");
                }
            };
            let report = demo::run(frames, &parts, &profiles, &mut progress);
            let stdout = io::stdout();
            let mut out = stdout.lock();
            let written = if json {
                writeln!(out, "{:#}", report.to_json())
            } else {
                report.write_text(&mut out)
            };
            if let Err(e) = written.and_then(|()| out.flush()) {
                eprintln!("svmkit: error: {e}");
                return ExitCode::FAILURE;
            }
            if let Some(e) = &report.error {
                eprintln!("svmkit: error: {e}");
            }
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn profile_choices_are_every_preset() {
        let names: Vec<&str> = svmkit::Profile::PRESETS.iter().map(|p| p.name).collect();
        assert_eq!(super::PRESETS.to_vec(), names);
    }
}
