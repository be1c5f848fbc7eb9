//! `svmkit run FILE`: parse, run, print the account (or JSON), exit 0/1/2.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use svmkit::trace::{TraceInfo, TraceLevel, View};
use svmkit_scenario::{RunOptions, parse, run};

/// Exit status for a file with mistakes (nothing ran).
const BAD_INPUT: u8 = 2;

/// What `svmkit run` was asked.
pub struct Args {
    pub file: PathBuf,
    pub profile: Option<String>,
    pub json: bool,
    pub step_timeout: u64,
    pub trace: Option<PathBuf>,
    pub trace_level: String,
}

/// The view for `--trace OUT`, or the message for an extension no view has (a bad
/// argument: exit 2, nothing runs).
pub fn trace_view(out: &Path) -> Result<View, String> {
    View::for_path(out).map_err(|e| format!("svmkit: error: --trace {}: {e}", out.display()))
}

/// A trace file to write once the run is over, created before anything runs so that
/// an unwritable path is a bad argument (exit 2), not a lost run.
pub struct TraceOut {
    /// Where.
    pub path: PathBuf,
    /// Which view.
    pub view: View,
    file: std::fs::File,
}

impl TraceOut {
    /// Picks the view from the extension and creates the file; the message (with a
    /// hint) when either fails.
    pub fn create(path: &Path) -> Result<TraceOut, String> {
        let view = trace_view(path)?;
        let file = std::fs::File::create(path).map_err(|e| {
            format!(
                "svmkit: error: --trace {}: cannot write there: {e}\n  hint: give a path in a directory you can write to",
                path.display()
            )
        })?;
        Ok(TraceOut {
            path: path.to_path_buf(),
            view,
            file,
        })
    }

    /// Writes the record in the view; the message when it cannot.
    pub fn write(
        mut self,
        events: &[svmkit::trace::TraceEvent],
        info: &TraceInfo,
    ) -> Result<(), String> {
        self.file
            .write_all(self.view.render_with(events, info).as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| {
                format!(
                    "svmkit: error: cannot write the trace to {}: {e}",
                    self.path.display()
                )
            })
    }
}

pub fn main(args: &Args) -> ExitCode {
    let (file, json, step_timeout) = (args.file.as_path(), args.json, args.step_timeout);
    let profile = args.profile.as_deref();
    if let Err(e) = args.trace.as_deref().map(trace_view).transpose() {
        eprintln!("{e}");
        return ExitCode::from(BAD_INPUT);
    }
    let level = if args.trace.is_some() {
        TraceLevel::from_name(&args.trace_level).unwrap_or(TraceLevel::Normal)
    } else {
        TraceLevel::Normal
    };
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
    // Created before the run: an unwritable path is a bad argument, not a lost run.
    let trace_out = match args.trace.as_deref().map(TraceOut::create).transpose() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let opts = RunOptions {
        profile: profile.and_then(svmkit::Profile::by_name),
        step_timeout: std::time::Duration::from_secs(step_timeout),
        trace: level,
    };
    let report = match run(&scenario, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "svmkit: error: the scenario could not be set up: {}",
                e.name()
            );
            return ExitCode::from(BAD_INPUT);
        }
    };
    if let Some(out) = trace_out {
        let info = TraceInfo {
            title: format!("{} under {}", report.scenario, report.profile),
            violation: None,
        };
        if let Err(e) = out.write(&report.trace, &info) {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
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
