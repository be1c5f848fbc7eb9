//! Every example in `examples/` parses, and runs under every era its `[outcomes]`
//! names with the outcome it documents there (each outcome cites its source in the
//! file).

mod common;

use svmkit_scenario::parse;

#[test]
fn corpus_every_example_ends_as_documented_under_every_era_it_names() {
    let files = common::toml_files("../../examples");
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
            if let Err(e) = common::run_as_documented(&name, &sc, o) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
