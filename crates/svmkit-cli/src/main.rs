//! `svmkit`: the command-line front end of the svmkit model.
//!
//! Today it runs a guided tour of the foundation (`svmkit demo`); later issues add
//! scenarios, schedule exploration and traces.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod report;
mod run;

/// svmkit: an executable model of Linux's device-exclusive memory access (HMM).
///
/// svmkit models the mm slice that device-exclusive entries live in: physical memory,
/// folios and their locks, page tables, faults, fork and COW, mprotect, munmap, GUP,
/// THP, MMU notifiers, swap and migration, in Linux 5.14's and 6.15's designs, so that
/// driver logic can be run, raced and inspected against it.
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
        /// Number of 4 KiB frames for the tour parts (2..=1048576).
        #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(2..=1_048_576))]
        frames: u64,
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
    /// Run a scenario file on one deterministic schedule and print a step-by-step
    /// account: each step, its thread, what it returned, what changed (the PTE, device
    /// entries, notifier events with their owners). Exit status 0 when every
    /// expectation holds, 1 when one fails, 2 when the file has mistakes (each reported
    /// as file:line:col with the text and a hint). The format: docs/SCENARIOS.md;
    /// examples: examples/*.toml.
    Run {
        /// The scenario file.
        file: std::path::PathBuf,
        /// Run under this era instead of the file's profile (linux-5.14, linux-6.15).
        #[arg(long, value_parser = ["linux-5.14", "linux-6.15"])]
        profile: Option<String>,
        /// Print the run as JSON (schema in docs/SCENARIOS.md) instead of text.
        #[arg(long)]
        json: bool,
        /// Seconds one step may take before the run is reported as hung (a model step
        /// takes microseconds; only a sleep on a lock nobody releases lasts).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
        step_timeout: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            file,
            profile,
            json,
            step_timeout,
        } => run::main(&file, profile.as_deref(), json, step_timeout),
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
            let report = match demo::run(frames, &parts, &profiles, &mut progress) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("svmkit: error: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
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
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
