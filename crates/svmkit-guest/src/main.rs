//! `svmkit-guest`: the oracle's guest runner. It runs svmkit scenario files on the real
//! kernel it boots on (issue 18) and prints, for each file, the JSON object of
//! `svmkit run --json` (docs/SCENARIOS.md), with one more top-level field, `oracle`,
//! naming the kernel.
//!
//! ```text
//! svmkit-guest [--era NAME] [--exclusive-type N] [--config-sha256 HEX] [--markers] FILE...
//! ```
//!
//! The steps run on one OS thread per process in the order `svmkit run` uses
//! (threads take turns in file order, one whole step per turn; `after`; a thread of a
//! process not yet forked waits). A `fork` step forks the runner: the child runs the
//! steps of the forked process's threads when the runner tells it to, over a pipe
//! pair, and sends back each step's record (one JSON line each). The steps use real
//! syscalls: mmap, munmap, mprotect, madvise, CPU loads and stores through the mapping,
//! `/proc/self/clear_refs`, the dmirror ioctls on `/dev/hmm_dmirror<N>` (one open
//! file per dmirror `[[device]]`), and `atomic_add` through the nouveau-style loop of
//! `/dev/svmkit_loop` (oracle/kernel/svmkit_loop.c; one open, one device, per
//! svm_atomic `[[device]]`). The PTE of a step's address is read from
//! `/proc/self/pagemap` before and after the step, fault counts from getrusage.
//! A file with a step the kernel runner cannot run is rejected before anything runs,
//! naming the step (exit status 2).
//!
//! Exit status: 0 when every file passed, 1 when an expectation failed, 2 when a file
//! could not be run (it does not parse, or it uses what the runner cannot do).
//!
//! This crate is the one place of the workspace that allows `unsafe` code (its own
//! `[lints]`): a real kernel's memory is reached through raw pointers into mmap'd
//! memory and through ioctls. All of it is in the `sys` module, each block small with a
//! `// SAFETY:` comment.

mod pte;
mod runner;
mod sys;

use std::process::ExitCode;

/// Command-line options.
#[derive(Debug, Default)]
pub struct Options {
    /// The era (profile name) whose per-era expectations are checked; the file's
    /// profile when absent.
    pub era: Option<String>,
    /// The device-exclusive swap type (SWP_DEVICE_EXCLUSIVE_WRITE) of this build;
    /// detected at start when absent.
    pub exclusive_type: Option<u64>,
    /// The config hash to name in the `oracle` header.
    pub config_sha256: Option<String>,
    /// Print `===SVMKIT-GUEST-BEGIN/END===` lines around each file's JSON.
    pub markers: bool,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: svmkit-guest [--era NAME] [--exclusive-type N] [--config-sha256 HEX] [--markers] FILE..."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut opts = Options::default();
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--era" => match args.next() {
                Some(v) => opts.era = Some(v),
                None => return usage(),
            },
            "--exclusive-type" => match args.next().and_then(|v| v.parse().ok()) {
                Some(v) => opts.exclusive_type = Some(v),
                None => return usage(),
            },
            "--config-sha256" => match args.next() {
                Some(v) => opts.config_sha256 = Some(v),
                None => return usage(),
            },
            "--markers" => opts.markers = true,
            "-h" | "--help" => return usage(),
            s if s.starts_with('-') => return usage(),
            _ => files.push(a),
        }
    }
    if files.is_empty() {
        return usage();
    }
    let env = match runner::Env::probe(opts.exclusive_type) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("svmkit-guest: {e}");
            return ExitCode::from(2);
        }
    };
    let mut worst = 0u8;
    for f in &files {
        let rc = runner::run_file(f, &opts, &env);
        worst = worst.max(rc);
    }
    ExitCode::from(worst)
}
