//! The `svmkit` binary as a user runs it.

use std::process::Command;

fn svmkit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_svmkit"))
        .args(args)
        .output()
        .expect("run svmkit")
}

#[test]
fn demo_json_exits_0_with_the_figures_the_tests_assert() {
    let out = svmkit(&[
        "demo",
        "--json",
        "--part",
        "story",
        "--part",
        "livelock",
        "--part",
        "two-devices",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["ok"], true);
    assert_eq!(json["mismatches"], 0);
    let parts = json["parts"].as_array().unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["story", "livelock", "two-devices"]);
    // Story: every counter exact.
    let story = &parts[0]["facts"];
    for t in story["counters"].as_array().unwrap() {
        assert_eq!(t, &story["expected_per_counter"]);
    }
    // Livelock: every pass retried, up to the bound.
    let ll = &parts[1]["facts"];
    assert_eq!(ll["passes_without_filter"], ll["bound"]);
    assert_eq!(ll["retries_without_filter"], ll["bound"]);
    let v: Vec<_> = parts[1]["verdicts"].as_array().unwrap().clone();
    assert!(v.iter().any(|v| v["model"] == "EBUSY" && v["ok"] == true));
    // Progress goes to stderr in JSON mode, never into the JSON.
    assert!(String::from_utf8_lossy(&out.stderr).contains("running part story"));
}

#[test]
fn demo_help_explains_each_part() {
    let out = svmkit(&["demo", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for part in [
        "foundation",
        "address-space",
        "fork",
        "exclusive",
        "story",
        "livelock",
        "two-devices",
        "selftests",
    ] {
        assert!(help.contains(part), "{part} missing from:\n{help}");
    }
    assert!(help.contains("--json"));
}

#[test]
fn demo_rejects_an_unknown_part_with_a_clear_error() {
    let out = svmkit(&["demo", "--part", "nonsense"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value 'nonsense'"), "{err}");
    assert!(err.contains("story"), "{err}");
}

#[test]
fn demo_profile_both_runs_each_era_and_prints_them_side_by_side() {
    let out = svmkit(&[
        "demo",
        "--profile",
        "both",
        "--part",
        "exclusive",
        "--part",
        "livelock",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[linux-5.14]") && text.contains("[linux-6.15]"),
        "{text}"
    );
    // The 5.14 restore is Exclusive with no owner, 6.15's is Clear.
    assert!(
        text.contains("that restore (MMU_NOTIFY_EXCLUSIVE)"),
        "{text}"
    );
    assert!(text.contains("that restore (MMU_NOTIFY_CLEAR)"), "{text}");
    // Under 5.14 the driver keeps the folio locked on retry and gets stuck, which is
    // what Linux did; the side-by-side table shows both columns matching.
    assert!(text.contains("made no progress"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("livelock "))
        .unwrap_or_else(|| panic!("no livelock row in:\n{text}"));
    assert!(row.matches("verdicts match").count() == 2, "{row}");
    let bad = svmkit(&["demo", "--profile", "linux-4.0"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("linux-5.14"));
}

fn example(name: &str) -> String {
    format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn run_exits_0_when_the_run_ends_as_documented_for_each_era() {
    let f = example("owner-filter-livelock.toml");
    // 6.15: every expectation holds (the file documents "pass").
    let out = svmkit(&["run", &f]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("PASS: every expectation held"), "{text}");
    assert!(text.contains("device atomic"), "{text}");
    assert!(text.contains("MMU_NOTIFY_EXCLUSIVE"), "{text}");
    // 5.14: the file documents a deadlock (spec 8 item 22); the run deadlocks, which
    // is what it documents, so the status is 0 too.
    let out = svmkit(&["run", "--profile", "linux-5.14", "--step-timeout", "1", &f]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("deadlock"), "{text}");
}

#[test]
fn run_json_is_one_object_with_the_steps() {
    let out = svmkit(&["run", "--json", &example("owner-filter-livelock.toml")]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["profile"], "linux-6.15");
    assert_eq!(json["passed"], true);
    let steps = json["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["result"] == "EBUSY"), "{json:#}");
}

#[test]
fn run_a_file_with_mistakes_exits_2_with_location_and_hint() {
    let dir = std::env::temp_dir().join(format!("svmkit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.toml");
    std::fs::write(
        &f,
        "[[process]]\nname = \"app\"\n\n[[thread]]\nname = \"t\"\nprocess = \"app\"\nsteps = [ { op = \"raed\", at = 0 } ]\n",
    )
    .unwrap();
    let out = svmkit(&["run", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:7:"), "{err}");
    assert!(err.contains("did you mean `read`?"), "{err}");
    assert!(err.contains("nothing ran"), "{err}");
    assert!(out.stdout.is_empty());
    // A file that does not exist is bad input too.
    let out = svmkit(&["run", dir.join("missing.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}
