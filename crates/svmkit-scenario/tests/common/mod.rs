//! What the scenario test binaries share: the files of a folder, and running a file
//! under one era against its documented outcome.
#![allow(dead_code)]

pub mod views;

use std::path::{Path, PathBuf};
use std::time::Duration;

use svmkit::Profile;
use svmkit_scenario::ast::EraOutcome;
use svmkit_scenario::{RunOptions, RunReport, Scenario, run};

/// The `.toml` files of `dir` (relative to this crate), sorted.
pub fn toml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// Runs `sc` under the era `want` names; `Err` says how it ended otherwise, with the
/// account.
pub fn run_as_documented(
    name: &str,
    sc: &Scenario,
    want: &EraOutcome,
) -> Result<RunReport, String> {
    let opts = RunOptions {
        // The file's own profile (with any switches it sets) for the era it names;
        // the plain preset for the others.
        profile: if want.profile == sc.profile.name {
            Some(sc.profile)
        } else {
            Profile::by_name(&want.profile)
        },
        step_timeout: Duration::from_secs(3),
        ..RunOptions::default()
    };
    let report = run(sc, &opts).map_err(|e| format!("{name}: setup failed: {}", e.name()))?;
    if report.ends_as(want) {
        Ok(report)
    } else {
        Err(format!(
            "{name} under {}: {} at {:?} (documented: {} at {:?}, {})\n{}",
            want.profile,
            report.outcome().name(),
            report.first_failure(),
            want.outcome.name(),
            want.fails_at,
            want.source,
            report.account()
        ))
    }
}
