//! Every example in `examples/` parses, and runs under every era its `[outcomes]`
//! names with the outcome it documents there (each outcome cites its source in the
//! file).

use std::path::PathBuf;
use std::time::Duration;

use svmkit::Profile;
use svmkit_scenario::{RunOptions, parse, run};

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn corpus_every_example_ends_as_documented_under_every_era_it_names() {
    let files = examples();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let sc = match parse(&name, &src) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{name} does not parse:\n{}", e.render()));
                continue;
            }
        };
        for o in &sc.outcomes {
            let opts = RunOptions {
                profile: Profile::by_name(&o.profile),
                step_timeout: Duration::from_secs(3),
            };
            let report = run(&sc, &src, &opts).unwrap();
            if !report.ends_as(o) {
                failures.push(format!(
                    "{name} under {}: {} at {:?} (documented: {} at {:?}, {})\n{}",
                    o.profile,
                    report.outcome().name(),
                    report.first_failure(),
                    o.outcome.name(),
                    o.fails_at,
                    o.source,
                    report.account()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
