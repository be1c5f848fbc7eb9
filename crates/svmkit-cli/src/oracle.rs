//! `svmkit oracle FILE --kernel K`: the scenario on a real kernel and on the model, side
//! by side. The kernel side is a golden (`--golden`, what `oracle/run` wrote), or a boot
//! of the cached kernel through `oracle/run` (docs/ORACLE.md); the model runs the file
//! under the kernel's preset (`linux-6.12`, `linux-6.1`). Every observable is printed
//! with both values; exit 0 iff every difference is one the file documents in
//! `[oracle] divergences`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use svmkit_scenario::oracle::{Comparison, compare};
use svmkit_scenario::{RunOptions, parse, run};

/// Exit status for bad input (nothing compared).
const BAD_INPUT: u8 = 2;

/// What `svmkit oracle` was asked.
pub struct Args {
    pub file: PathBuf,
    pub kernel: String,
    pub golden: Option<PathBuf>,
    pub json: bool,
}

fn bad(msg: String) -> ExitCode {
    eprintln!("svmkit: error: {msg}");
    ExitCode::from(BAD_INPUT)
}

/// `oracle/run` of this source tree (the scripts are not installed with the binary).
fn oracle_run() -> PathBuf {
    std::env::var_os("SVMKIT_ORACLE_RUN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../oracle/run"),
        PathBuf::from,
    )
}

/// The kernel's JSON for `file`: the golden, or a boot of the cached kernel.
fn kernel_side(args: &Args) -> Result<serde_json::Value, String> {
    let text = match &args.golden {
        Some(g) => std::fs::read_to_string(g)
            .map_err(|e| format!("cannot read the golden {}: {e}", g.display()))?,
        None => {
            let script = oracle_run();
            eprintln!(
                "svmkit: booting Linux {} through {} (a few seconds once the kernel is built; docs/ORACLE.md)",
                args.kernel,
                script.display()
            );
            let out = Command::new(&script)
                .arg("--kernel")
                .arg(&args.kernel)
                .arg(&args.file)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !out.status.success() && out.stdout.is_empty() {
                return Err(format!(
                    "{} failed ({}): {}",
                    script.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            String::from_utf8_lossy(&out.stdout).to_string()
        }
    };
    serde_json::from_str(&text).map_err(|e| format!("the kernel side is not a run report: {e}"))
}

fn print_text(out: &mut dyn Write, c: &Comparison, kernel: &str) -> io::Result<()> {
    let linux = format!("Linux {kernel}");
    // Columns as wide as their widest cell, so long step texts keep the table aligned.
    let width = |head: &str, cell: fn(&svmkit_scenario::oracle::Observed) -> &str| {
        c.observed
            .iter()
            .map(|o| cell(o).chars().count())
            .chain([head.chars().count()])
            .max()
            .unwrap_or(0)
    };
    let (at, field, kern) = (
        width("at", |o| &o.at),
        width("field", |o| &o.field),
        width(&linux, |o| &o.kernel),
    );
    writeln!(
        out,
        "{:<6} {:<at$} {:<field$} {:<kern$} model",
        "", "at", "field", linux
    )?;
    for o in &c.observed {
        let mark = match (o.agrees(), &o.divergence) {
            (true, _) => "  ok",
            (false, Some(_)) => "known",
            (false, None) => "DIFF",
        };
        writeln!(
            out,
            "{mark:<6} {:<at$} {:<field$} {:<kern$} {}",
            o.at, o.field, o.kernel, o.model
        )?;
        if let (false, Some(r)) = (o.agrees(), &o.divergence) {
            writeln!(out, "{:<6} documented: {r}", "")?;
        }
    }
    for p in &c.problems {
        writeln!(out, "FAIL   {p}")?;
    }
    let known = c
        .observed
        .iter()
        .filter(|o| !o.agrees() && o.divergence.is_some())
        .count();
    writeln!(
        out,
        "{}/{} observables agree, {known} documented divergence(s), {} unexplained",
        c.agreeing(),
        c.observed.len(),
        c.unexplained().len()
    )
}

pub fn main(args: &Args) -> ExitCode {
    let profile = match args.kernel.as_str() {
        "6.12" => svmkit::Profile::linux_6_12(),
        "6.1" => svmkit::Profile::linux_6_1(),
        k => return bad(format!("--kernel {k}: the oracle boots 6.12 and 6.1")),
    };
    let name = args.file.display().to_string();
    let source = match std::fs::read_to_string(&args.file) {
        Ok(s) => s,
        Err(e) => return bad(format!("cannot read {name}: {e}")),
    };
    let sc = match parse(&name, &source) {
        Ok(s) => s,
        Err(e) => {
            eprint!("{}", e.render());
            return bad(format!(
                "{} mistake(s) in {name}; nothing ran",
                e.problems.len()
            ));
        }
    };
    let kernel = match kernel_side(args) {
        Ok(k) => k,
        Err(e) => return bad(e),
    };
    let opts = RunOptions {
        profile: Some(profile),
        ..RunOptions::default()
    };
    let model = match run(&sc, &opts) {
        Ok(r) => r,
        Err(e) => return bad(format!("the scenario could not be set up: {}", e.name())),
    };
    let model = match serde_json::to_value(&model) {
        Ok(v) => v,
        Err(e) => return bad(format!("the model's report: {e}")),
    };
    let c = compare(&sc, &args.kernel, &kernel, &model);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let written = if args.json {
        serde_json::to_string_pretty(&serde_json::json!({
            "scenario": sc.name,
            "kernel": args.kernel,
            "profile": profile.name,
            "observed": c.observed,
            "problems": c.problems,
            "agree": c.agreeing(),
            "unexplained": c.unexplained(),
        }))
        .map_err(io::Error::other)
        .and_then(|j| writeln!(out, "{j}"))
    } else {
        print_text(&mut out, &c, &args.kernel)
    };
    if let Err(e) = written.and_then(|()| out.flush()) {
        eprintln!("svmkit: error: {e}");
        return ExitCode::FAILURE;
    }
    if c.unexplained().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
