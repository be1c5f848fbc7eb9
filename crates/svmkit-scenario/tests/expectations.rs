//! The step expectations of issue 15 (PTE flags, refcount and mapcount, fault counts,
//! per-era values), one passing and one failing file each in `tests/expectations/`:
//! each runs under every era its `[outcomes]` names and ends as documented there, and
//! a file whose header says `# failure: TEXT` fails with a failure text containing
//! TEXT under every era it documents as failing.

mod common;

use svmkit_scenario::{RunOutcome, parse};

fn files() -> Vec<std::path::PathBuf> {
    common::toml_files("tests/expectations")
}

#[test]
fn expectations_each_has_a_passing_and_a_failing_file() {
    let names: Vec<String> = files()
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    for what in [
        "pte-flags",
        "counts",
        "faults",
        "per-era",
        "buffer",
        "invariant",
        "zero-page",
        "cpages",
        "kill",
    ] {
        for end in ["pass", "fail"] {
            let n = format!("{what}-{end}");
            assert!(names.contains(&n), "tests/expectations/{n}.toml is missing");
        }
    }
}

#[test]
fn expectations_end_as_documented_with_the_documented_failure_text() {
    let mut failures = Vec::new();
    for f in files() {
        let src = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let sc = match parse(&name, &src) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{name} does not parse:\n{}", e.render()));
                continue;
            }
        };
        let text = src
            .lines()
            .find_map(|l| l.strip_prefix("# failure: "))
            .map(str::trim);
        if name.ends_with("-fail.toml") {
            assert!(text.is_some(), "{name} has no `# failure:` line");
            assert!(
                sc.outcomes.iter().any(|o| o.outcome == RunOutcome::Fail),
                "{name} documents no failing era"
            );
        }
        for o in &sc.outcomes {
            let report = match common::run_as_documented(&name, &sc, o) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            if o.outcome == RunOutcome::Fail
                && let Some(text) = text
            {
                let failed: Vec<&str> = report
                    .steps
                    .iter()
                    .filter_map(|s| s.failed.as_deref())
                    .collect();
                if !failed.iter().any(|f| f.contains(text)) {
                    failures.push(format!(
                        "{name} under {}: no failure says `{text}`: {failed:?}",
                        o.profile
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
