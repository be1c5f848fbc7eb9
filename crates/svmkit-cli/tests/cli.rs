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
