//! `svmkit run FILE`: parse, run, print the account (or JSON), exit 0/1/2.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use svmkit_scenario::{RunOptions, parse, run};

/// Exit status for a file with mistakes (nothing ran).
const BAD_INPUT: u8 = 2;

pub fn main(file: &Path, profile: Option<&str>, json: bool, step_timeout: u64) -> ExitCode {
    let name = file.display().to_string();
    let source = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("svmkit: error: cannot read {name}: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let scenario = match parse(&name, &source) {
        Ok(s) => s,
        Err(e) => {
            eprint!("{}", e.render());
            eprintln!(
                "svmkit: {} mistake(s) in {name}; nothing ran",
                e.problems.len()
            );
            return ExitCode::from(BAD_INPUT);
        }
    };
    let opts = RunOptions {
        profile: profile.and_then(svmkit::Profile::by_name),
        step_timeout: std::time::Duration::from_secs(step_timeout),
    };
    let report = match run(&scenario, &source, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "svmkit: error: the scenario could not be set up: {}",
                e.name()
            );
            return ExitCode::from(BAD_INPUT);
        }
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let written = if json {
        serde_json::to_string_pretty(&report)
            .map_err(io::Error::other)
            .and_then(|j| writeln!(out, "{j}"))
    } else {
        write!(out, "{}", report.account())
    };
    if let Err(e) = written.and_then(|()| out.flush()) {
        eprintln!("svmkit: error: {e}");
        return ExitCode::FAILURE;
    }
    // The file documents how each era ends; a run matches when it ends that way (an
    // era it does not name must pass).
    let want = scenario.expected_outcome(&report.profile);
    let matches = match want {
        Some(w) => report.ends_as(w),
        None => report.passed,
    };
    if !json {
        match want {
            Some(w) => eprintln!(
                "svmkit: {} under {}: {} ({} documented: {}, source: {})",
                if matches {
                    "as documented"
                } else {
                    "NOT as documented"
                },
                report.profile,
                report.outcome().name(),
                report.profile,
                w.outcome.name(),
                w.source
            ),
            None => eprintln!(
                "svmkit: {} names no outcome for {}: it must pass",
                name, report.profile
            ),
        }
    }
    if matches {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
