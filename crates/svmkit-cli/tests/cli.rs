//! The `svmkit` binary as a user runs it.

#[path = "../../svmkit-scenario/tests/common/views.rs"]
mod views;

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
    assert_eq!(ll["scenario"], "owner-filter-livelock.toml");
    let v: Vec<_> = parts[1]["verdicts"].as_array().unwrap().clone();
    assert!(v.iter().any(|v| v["model"] == "EBUSY" && v["ok"] == true));
    // The file's 6.15 source: the spec's argument (6.3) and the livelock reproduced
    // on a real 6.12 kernel, which has the 2021 design (spec 10.3): derived for 6.15.
    let without: Vec<_> = v
        .iter()
        .filter(|v| v["what"] == "atomic fault without the owner filter")
        .collect();
    assert_eq!(without.len(), 1, "{v:?}");
    assert_eq!(without[0]["source"]["kind"], "derived", "{v:?}");
    assert!(
        without[0]["source"]["cite"]
            .as_str()
            .is_some_and(|c| c.contains("reproduced on 6.12")),
        "{v:?}"
    );
    assert_source_counts(&json);
    // Progress goes to stderr in JSON mode, never into the JSON.
    assert!(String::from_utf8_lossy(&out.stderr).contains("running part story"));
}

/// Counts the verdicts' source kinds from the JSON itself and checks the report's
/// totals against them.
fn assert_source_counts(json: &serde_json::Value) -> [u64; 3] {
    let mut counts = [0u64; 3];
    let mut n = 0u64;
    for p in json["parts"].as_array().unwrap() {
        for v in p["verdicts"].as_array().unwrap() {
            n += 1;
            let kind = v["source"]["kind"].as_str().unwrap();
            let i = ["kernel", "spec", "derived"]
                .iter()
                .position(|k| *k == kind)
                .unwrap_or_else(|| panic!("source kind {kind} in {v}"));
            counts[i] += 1;
            assert!(v["source"]["cite"].as_str().is_some_and(|c| !c.is_empty()));
        }
    }
    assert_eq!(json["verdicts"], n);
    assert_eq!(json["sources"]["kernel"], counts[0]);
    assert_eq!(json["sources"]["spec"], counts[1]);
    assert_eq!(json["sources"]["derived"], counts[2]);
    counts
}

#[test]
fn demo_json_names_each_source_and_the_text_summary_counts_them() {
    let args = [
        "demo",
        "--profile",
        "both",
        "--part",
        "exclusive",
        "--part",
        "reclaim",
        "--part",
        "selftests",
        "--part",
        "two-devices",
    ];
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let out = svmkit(&with_json);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let [k, s, d] = assert_source_counts(&json);
    // What 6.12.117 showed through dmirror backs the 5.14 selftests; the 6.15 ones
    // rest on the spec.
    for p in json["parts"].as_array().unwrap() {
        if p["name"] != "selftests" {
            continue;
        }
        let kind = if p["facts"]["profile"] == "linux-5.14" {
            "kernel"
        } else {
            "spec"
        };
        for v in p["verdicts"].as_array().unwrap() {
            assert_eq!(v["source"]["kind"], kind, "{v}");
        }
    }
    assert!(k > 0 && s > 0 && d > 0, "{k} {s} {d}");
    let text = svmkit(&args);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    let n = k + s + d;
    let summary = format!("{n} verdicts: {k} kernel, {s} spec, {d} derived; 0 mismatches");
    assert!(text.contains(&summary), "{summary} not in:\n{text}");
    // Counted from the text lines too.
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("verdict [")).collect();
    assert_eq!(lines.len() as u64, n);
    for (kind, want) in [("kernel", k), ("spec", s), ("derived", d)] {
        let got = lines
            .iter()
            .filter(|l| l.contains(&format!("(source: {kind} ")))
            .count() as u64;
        assert_eq!(got, want, "{kind}");
    }
}

#[test]
fn demo_json_reports_a_failed_part_as_json_and_exits_non_zero() {
    // Two frames are too few for an address space: the first part fails (`--frames`
    // sizes every part's memory, the bundled scenarios' too) and the run stops there.
    let out = svmkit(&[
        "demo",
        "--json",
        "--frames",
        "2",
        "--part",
        "foundation",
        "--part",
        "address-space",
    ]);
    assert!(!out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["ok"], false);
    let err = json["error"].as_str().expect("an error field");
    assert!(err.contains("part foundation"), "{err}");
    let names: Vec<&str> = json["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["foundation"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("error"));
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
    // The 5.14 restore is Exclusive with no owner, 6.15's is Clear (spec 6.4): the
    // account lines of examples/exclusive-conversion-restore.toml's restore step.
    let restore_event = |era: &str| -> String {
        let section = text
            .split("[linux-")
            .filter(|s| s.starts_with(era))
            .find(|s| s.contains("exclusive-conversion-restore.toml"))
            .unwrap_or_else(|| panic!("no exclusive part for {era} in:\n{text}"));
        section
            .lines()
            .skip_while(|l| !l.contains("restore: fetch_add"))
            .find(|l| l.contains("notifier:"))
            .unwrap_or_else(|| panic!("no restore event in:\n{section}"))
            .trim()
            .to_string()
    };
    assert_eq!(
        restore_event("5.14"),
        "notifier: app MMU_NOTIFY_EXCLUSIVE [0x7ffeffffe000, 0x7ffefffff000)"
    );
    assert_eq!(
        restore_event("6.15"),
        "notifier: app MMU_NOTIFY_CLEAR [0x7ffeffffe000, 0x7ffefffff000)"
    );
    // Under 5.14 the driver keeps the folio locked on retry and gets stuck (spec 8
    // item 22, 9.6); the scenario engine's watchdog names the thread asleep and the
    // folio locked; the side-by-side table shows both columns matching.
    assert!(text.contains("deadlock: thread blind sleeps in"), "{text}");
    assert!(text.contains("folios locked now"), "{text}");
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

#[test]
fn explore_finds_the_lost_update_saves_it_and_replay_reproduces_it_byte_for_byte() {
    let dir = tempdir();
    let save = dir.join("lost.schedule.json");
    let file = example("lost-update-write-entry.toml");
    let out = svmkit(&["explore", &file, "--save", save.to_str().unwrap()]);
    // Exit 1: a failure found (spec 2: a read-modify-write through a plain write
    // entry races the CPU; derived, shuttle_svm.rs finds it in Rust).
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("FAILURE after"), "{text}");
    assert!(
        text.contains("end check failed: app reads counter = 4"),
        "{text}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("replay with: svmkit replay"), "{stderr}");
    assert!(stderr.contains("as documented"), "{stderr}");
    let account = &text[text.find("scenario ").unwrap()..];
    assert_replays_to(&file, &save, &[], account);
    // The failing schedule's timeline, beside the schedule file, named on stderr.
    let beside = dir.join("lost.trace.html");
    assert!(
        stderr.contains(&format!("written to {}", beside.display())),
        "{stderr}"
    );
    let html = std::fs::read_to_string(&beside).unwrap();
    let data = views::html_data(&html).unwrap();
    assert!(
        data["violation"]["text"]
            .as_str()
            .unwrap()
            .contains("end check failed")
    );
    // A traced replay reproduces the same account, byte for byte, and writes its trace.
    for (name, check) in [
        ("replayed.html", "html"),
        ("replayed.json", "json"),
        ("replayed.txt", "txt"),
    ] {
        let out_file = dir.join(name);
        let r = svmkit(&[
            "replay",
            &file,
            save.to_str().unwrap(),
            "--trace",
            out_file.to_str().unwrap(),
        ]);
        assert_eq!(r.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            account,
            "traced replay, {name}"
        );
        let written = std::fs::read_to_string(&out_file).unwrap();
        match check {
            "html" => {
                views::html_data(&written).unwrap();
            }
            "json" => {
                let s = views::validate_chrome(&written).unwrap();
                assert!(s.slices > 0 && s.instants > 0);
                assert!(written.contains("\"cat\":\"violation\""));
            }
            _ => assert!(written.lines().all(|l| l.starts_with("t="))),
        }
    }
}

/// Replays `save` twice: each time exit 1 with "reproduced", and stdout equal to
/// `account` (the explorer's), byte for byte.
fn assert_replays_to(file: &str, save: &std::path::Path, extra: &[&str], account: &str) {
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut args = vec!["replay", file, save.to_str().unwrap()];
        args.extend_from_slice(extra);
        let r = svmkit(&args);
        assert_eq!(
            r.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(String::from_utf8_lossy(&r.stderr).contains("reproduced"));
        seen.push(String::from_utf8_lossy(&r.stdout).to_string());
    }
    assert_eq!(seen[0], seen[1], "two replays differ");
    assert_eq!(
        seen[0], account,
        "the replay differs from the explored account"
    );
}

#[test]
fn explore_trace_picks_the_view_or_none_and_rejects_an_unknown_one() {
    let dir = tempdir();
    let file = example("lost-update-skip-set-seq.toml");
    let save = dir.join("skip.linux-6.15.schedule.json");
    let out = svmkit(&[
        "explore",
        &file,
        "--save",
        save.to_str().unwrap(),
        "--trace",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json = dir.join("skip.linux-6.15.trace.json");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Perfetto / Chrome trace-event JSON")
            && stderr.contains(&json.display().to_string()),
        "{stderr}"
    );
    let s = views::validate_chrome(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(s.threads.values().any(|t| t == "gpu"), "{:?}", s.threads);
    assert!(!dir.join("skip.linux-6.15.trace.html").exists());
    let o = svmkit(&["explore", &file, "--save", "/nonexistent-svmkit-dir/s.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("hint:"));
    for bad in ["csv", "perfetto"] {
        let o = svmkit(&["explore", &file, "--trace", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("hint:") && err.contains("html"), "{err}");
        assert!(o.stdout.is_empty(), "nothing explored");
    }
}

#[test]
fn trace_to_an_unwritable_path_exits_2_with_a_hint_before_running() {
    let f = example("owner-filter-livelock.toml");
    let out = "/nonexistent-svmkit-dir/x.html";
    let o = svmkit(&["run", &f, "--trace", out]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot write there") && err.contains("hint:"),
        "{err}"
    );
    assert!(o.stdout.is_empty(), "nothing ran");
    let dir = tempdir();
    let schedule = dir.join("s.json");
    let run: serde_json::Value =
        serde_json::from_slice(&svmkit(&["run", &f, "--json"]).stdout).unwrap();
    let saved = serde_json::json!({
        "format": "svmkit-schedule/1", "scenario": run["scenario"], "profile": "linux-6.15",
        "violation": "v", "schedule": "00",
    });
    std::fs::write(&schedule, saved.to_string()).unwrap();
    for (trace, want) in [(out, "cannot write there"), ("x.csv", "no trace view")] {
        let o = svmkit(&["replay", &f, schedule.to_str().unwrap(), "--trace", trace]);
        assert_eq!(o.status.code(), Some(2), "{trace}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(want), "{trace}");
    }
}

#[test]
fn run_trace_writes_the_perfetto_and_html_views() {
    let dir = tempdir();
    let f = example("nouveau-starvation-after-revocation.toml");
    let json = dir.join("n.json");
    let o = svmkit(&["run", &f, "--trace", json.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = views::validate_chrome(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for track in ["gpu-starves", "device gpu"] {
        assert!(s.threads.values().any(|t| t == track), "{:?}", s.threads);
    }
    assert!(s.slice_names.iter().any(|n| n == "driver pass 6"));
    assert!(s.counters.contains_key("seq gpu"), "{:?}", s.counters);
    assert!(s.flows >= 12, "notifier and restore flows: {}", s.flows);
    let html = dir.join("n.HTML");
    let o = svmkit(&["run", &f, "--trace", html.to_str().unwrap()]);
    assert!(o.status.success());
    let d = views::html_data(&std::fs::read_to_string(&html).unwrap()).unwrap();
    assert!(d["title"].as_str().unwrap().contains("linux-6.15"));
}

#[test]
fn a_failure_at_the_step_bound_replays_to_the_same_step() {
    // A schedule bound below what the 4-thread exclusivity race needs turns its first
    // schedule into a step-bound failure, as a livelock would be: the replay must stop
    // at the same bound with the same account, not run out of schedule. (100, the
    // smallest bound the CLI takes: since a task alone or among blocked ones passes
    // its points over, the starvation example this used takes fewer than 100 engine
    // steps and the race more; derived.)
    let dir = tempdir();
    let save = dir.join("bound.schedule.json");
    let file = example("race-exclusivity.toml");
    let args = ["--profile", "linux-6.15"];
    let out = svmkit(&[
        "explore",
        &file,
        args[0],
        args[1],
        "--max-steps",
        "100",
        "--save",
        save.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("exceeded max_steps bound 100"), "{text}");
    assert!(!text.contains("schedule ended early"), "{text}");
    let saved = std::fs::read_to_string(&save).unwrap();
    assert!(saved.contains("\"max_steps\": 100"), "{saved}");
    let account = &text[text.find("scenario ").unwrap()..];
    assert!(
        account.contains("exceeded max_steps bound 100"),
        "{account}"
    );
    assert_replays_to(&file, &save, &args, account);
}

#[test]
fn explore_a_clean_file_exits_0_and_reports_json() {
    let json = json_of_success(&[
        "explore",
        &example("race-counter.toml"),
        "--schedules",
        "200",
        "--json",
    ]);
    assert_eq!(json["schedules"], 200);
    assert_eq!(json["failures"].as_array().unwrap().len(), 0);
    assert_eq!(json["strategy"], "random");
}

#[test]
fn explore_dfs_exhausts_a_small_space() {
    let json = json_of_success(&[
        "explore",
        &example("race-counter.toml"),
        "--strategy",
        "dfs",
        "--preemption-bound",
        "0",
        "--schedules",
        "100000",
        "--json",
    ]);
    assert_eq!(json["exhausted"], true, "{json}");
    assert!(json["schedules"].as_u64().unwrap() > 1);
}

#[test]
fn explore_time_alone_is_the_budget() {
    // A file that claims its outcomes for 5 schedules: with --time and no
    // --schedules, the run lasts the time, not the file's 5 schedules.
    let dir = tempdir();
    let file = dir.join("counter-5.toml");
    let src = std::fs::read_to_string(example("race-counter.toml")).unwrap();
    std::fs::write(&file, format!("{src}\n[explore]\nschedules = 5\n")).unwrap();
    let file = file.to_str().unwrap();
    for jobs in ["1", "2"] {
        let json = json_of_success(&["explore", file, "--time", "1", "--jobs", jobs, "--json"]);
        assert!(json["seconds"].as_f64().unwrap() >= 1.0, "{json}");
        assert!(json["schedules"].as_u64().unwrap() > 5, "{json}");
    }
    // --schedules still bounds a timed run.
    let json = json_of_success(&[
        "explore",
        file,
        "--time",
        "60",
        "--schedules",
        "7",
        "--json",
    ]);
    assert_eq!(json["schedules"], 7, "{json}");
}

#[test]
fn explore_bad_input_exits_2_with_a_hint() {
    let out = svmkit(&["explore", &example("race-counter.toml"), "--shard", "3/2"]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("K must be from 1 to N") && e.contains("hint"),
        "{e}"
    );
    let out = svmkit(&[
        "explore",
        &example("race-counter.toml"),
        "--strategy",
        "dfs",
        "--jobs",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn explore_two_shards_under_gnu_parallel_merge_into_one_report() {
    let dir = tempdir();
    let bin = env!("CARGO_BIN_EXE_svmkit");
    let file = example("race-counter.toml");
    let status = Command::new("parallel")
        .arg("-j2")
        .arg(format!(
            "{bin} explore --json --shard {{}}/2 --schedules 100 {file} > {}/shard-{{}}.json",
            dir.display()
        ))
        .arg(":::")
        .args(["1", "2"])
        .status()
        .expect("GNU parallel (Debian package `parallel`; .ci/run installs it)");
    assert!(status.success());
    let a = dir.join("shard-1.json");
    let b = dir.join("shard-2.json");
    let json = json_of_success(&["merge", "--json", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(json["schedules"], 200);
    assert_eq!(json["shards"], serde_json::json!(["1/2", "2/2"]));
    let seeds = json["seeds"].as_array().unwrap();
    assert_eq!(seeds.len(), 2);
    assert_ne!(seeds[0], seeds[1], "the shards explored from the same seed");
    // The same shard twice is refused.
    let out = svmkit(&["merge", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

/// Runs `svmkit args`, which must exit 0, and parses its standard output as JSON.
fn json_of_success(args: &[&str]) -> serde_json::Value {
    let out = svmkit(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn tempdir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "svmkit-cli-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn run_trace_writes_the_view_the_extension_names() {
    let dir = std::env::temp_dir().join(format!("svmkit-cli-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = example("nouveau-starvation-after-revocation.toml");
    let jsonl = dir.join("t.jsonl");
    let out = svmkit(&["run", &f, "--trace", jsonl.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(events.iter().any(|e| e["kind"] == "driver_pass"));
    assert!(events.iter().any(|e| e["kind"] == "subscriber"
        && e["decision"] == "set_seq"
        && e["subscriber"] == "gpu"));
    // Detail adds refcount changes; normal has none.
    assert!(!events.iter().any(|e| e["kind"] == "refcount"));
    let detail = dir.join("d.jsonl");
    let out = svmkit(&[
        "run",
        &f,
        "--trace",
        detail.to_str().unwrap(),
        "--trace-level",
        "detail",
    ]);
    assert!(out.status.success());
    assert!(
        std::fs::read_to_string(&detail)
            .unwrap()
            .contains("\"kind\":\"refcount\"")
    );
    // The text view, and the account's decisions on stdout.
    let txt = dir.join("t.txt");
    let out = svmkit(&["run", &f, "--trace", txt.to_str().unwrap()]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(&txt).unwrap();
    assert!(text.contains("restore device-exclusive entry"), "{text}");
    assert!(text.contains("subscriber gpu interval seq="), "{text}");
    let account = String::from_utf8_lossy(&out.stdout);
    assert!(
        account.contains("decided: app MMU_NOTIFY_CLEAR"),
        "{account}"
    );
}

#[test]
fn run_trace_with_an_unknown_extension_exits_2_with_a_hint() {
    let f = example("owner-filter-livelock.toml");
    for (out, want) in [
        ("x.csv", "no trace view"),
        ("x.htm", "no trace view"),
        ("x", "no trace view"),
    ] {
        let o = svmkit(&["run", &f, "--trace", out]);
        assert_eq!(o.status.code(), Some(2), "{out}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want) && err.contains(".jsonl"), "{out}: {err}");
        assert!(o.stdout.is_empty(), "nothing ran");
        assert!(!std::path::Path::new(out).exists());
    }
}

fn repo(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

/// `svmkit oracle` against a checked-in golden: every observable side by side, the
/// documented divergence accepted with its reason (docs/FINDINGS.md 4), exit 0.
#[test]
fn oracle_against_a_golden_prints_both_sides_and_accepts_documented_divergences() {
    let out = svmkit(&[
        "oracle",
        &repo("oracle/corpus/mprotect-r-rw-write.toml"),
        "--kernel",
        "6.1",
        "--golden",
        &repo("oracle/golden/6.1/mprotect-r-rw-write.json"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Linux 6.1"), "{text}");
    assert!(text.contains("known  cpu2 line 54"), "{text}");
    assert!(
        text.contains("documented: 6.1's can_change_pte_writable()"),
        "{text}"
    );
    assert!(
        text.contains("1 documented divergence(s), 0 unexplained"),
        "{text}"
    );
}

/// A golden that says otherwise than the model fails (exit 1) and names the
/// observable; a kernel the oracle does not boot is bad input (exit 2).
#[test]
fn oracle_a_difference_fails_and_an_unknown_kernel_is_bad_input() {
    let golden = repo("oracle/golden/6.12/exclusive-twice.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&golden).unwrap()).unwrap();
    let steps = v["steps"].as_array_mut().unwrap();
    let s = steps
        .iter_mut()
        .find(|s| s["cpages"].is_u64())
        .expect("a dmirror step");
    s["cpages"] = serde_json::json!(99);
    let dir = std::env::temp_dir().join(format!("svmkit-cli-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tampered = dir.join("exclusive-twice.json");
    std::fs::write(&tampered, v.to_string()).unwrap();
    let out = svmkit(&[
        "oracle",
        &repo("oracle/corpus/exclusive-twice.toml"),
        "--kernel",
        "6.12",
        "--golden",
        tampered.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("DIFF"), "{text}");
    // The tampered observable is the DIFF row: field `cpages`, kernel side 99.
    assert!(
        text.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.first() == Some(&"DIFF") && cells.windows(2).any(|w| w == ["cpages", "99"])
        }),
        "{text}"
    );
    let out = svmkit(&[
        "oracle",
        &repo("oracle/corpus/exclusive-twice.toml"),
        "--kernel",
        "5.14",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
