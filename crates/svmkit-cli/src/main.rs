//! `svmkit`: the command-line front end of the svmkit model.
//!
//! Today it runs a guided tour of the foundation (`svmkit demo`); later issues add
//! scenarios, schedule exploration and traces.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;

/// svmkit: an executable model of Linux's device-exclusive memory access (HMM).
///
/// svmkit models the mm slice that device-exclusive entries live in: physical memory,
/// folios and their locks, and (as the project grows) page tables, faults, fork,
/// mprotect, munmap, GUP and MMU notifiers, so that driver logic can be run, raced and
/// inspected against it.
#[derive(Debug, Parser)]
#[command(name = "svmkit", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a short, narrated tour of the model and print what happens at each step.
    Demo {
        /// Number of 4 KiB frames of simulated physical memory (2..=1048576).
        #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(2..=1_048_576))]
        frames: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { frames } => {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            demo::run(&mut out, frames).and_then(|()| out.flush().map_err(Into::into))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("svmkit: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
