//! The model against the real kernels' goldens (issue 18): every file of
//! `oracle/corpus/` has a golden per kernel under `oracle/golden/<kernel>/`, written on a
//! booted Debian kernel by `oracle/regen --corpus` (docs/ORACLE.md); the model runs the
//! same file under the kernel's profile (`linux-6.12`, `linux-6.1`) and must agree on
//! every observable `svmkit_scenario::oracle` compares, except the divergences the file
//! documents in `[oracle]`. CI builds no kernel: the goldens are checked in.

use std::path::{Path, PathBuf};

use svmkit::Profile;
use svmkit_scenario::oracle::compare;
use svmkit_scenario::{RunOptions, parse, run};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("oracle/corpus"))
        .expect("oracle/corpus")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn oracle_goldens_every_corpus_file_agrees_with_both_kernels() {
    let files = corpus();
    assert!(files.len() >= 12, "oracle/corpus has {} files", files.len());
    let mut bad = Vec::new();
    let mut summary = Vec::new();
    for (kernel, profile) in [
        ("6.12", Profile::linux_6_12()),
        ("6.1", Profile::linux_6_1()),
    ] {
        let (mut agree, mut total, mut documented) = (0, 0, 0);
        for f in &files {
            let stem = f.file_stem().unwrap().to_string_lossy().to_string();
            let golden = root().join(format!("oracle/golden/{kernel}/{stem}.json"));
            let Ok(text) = std::fs::read_to_string(&golden) else {
                bad.push(format!(
                    "{stem}: no golden for {kernel} ({})",
                    golden.display()
                ));
                continue;
            };
            let k: serde_json::Value = serde_json::from_str(&text).expect("golden JSON");
            let src = std::fs::read_to_string(f).unwrap();
            let sc = parse(&f.to_string_lossy(), &src).unwrap_or_else(|e| panic!("{}", e.render()));
            let opts = RunOptions {
                profile: Some(profile),
                ..RunOptions::default()
            };
            let r = run(&sc, &opts).unwrap();
            let m = serde_json::to_value(&r).unwrap();
            let c = compare(&sc, kernel, &k, &m);
            agree += c.agreeing();
            total += c.observed.len();
            documented += c.observed.iter().filter(|o| o.divergence.is_some()).count();
            for u in c.unexplained() {
                bad.push(format!("{stem} on {kernel}: {u}"));
            }
        }
        summary.push(format!(
            "{kernel}: {} files, {agree}/{total} observables agree, {documented} documented divergence(s)",
            files.len()
        ));
    }
    eprintln!("{}", summary.join("\n"));
    assert!(bad.is_empty(), "{}\n{}", summary.join("\n"), bad.join("\n"));
}
