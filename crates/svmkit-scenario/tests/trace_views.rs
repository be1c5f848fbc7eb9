//! The four trace views of every corpus example under each era (issue 17's "done
//! when"), the nouveau starvation timeline read the way the issue asks, and traced
//! replays of failing schedules.

mod common;

use std::time::Duration;

use serde_json::Value;
use svmkit::Profile;
use svmkit::trace::html::Timeline;
use svmkit::trace::{Phase, TraceEvent, TraceInfo, TraceLevel, View, jsonl};
use svmkit_scenario::explore::{ExploreOptions, explore, replay, replay_traced};
use svmkit_scenario::{RunOptions, RunReport, parse, run};

use common::views::{html_data, validate_chrome};

fn example(name: &str) -> (svmkit_scenario::Scenario, String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let src = std::fs::read_to_string(&path).unwrap();
    let sc = parse(name, &src).unwrap_or_else(|e| panic!("{}", e.render()));
    (sc, src)
}

fn run_example(name: &str, profile: Profile) -> RunReport {
    let (sc, _) = example(name);
    let opts = RunOptions {
        profile: Some(profile),
        // A documented self-deadlock hangs a step until the timeout: keep it short.
        step_timeout: Duration::from_millis(500),
        trace: TraceLevel::Normal,
    };
    run(&sc, &opts).unwrap()
}

/// Checks one view of `events` the way its reader would read it.
fn check_view(view: View, events: &[TraceEvent], info: &TraceInfo, what: &str) {
    let out = view.render_with(events, info);
    match view {
        View::Text => {
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines.len(), events.len(), "{what}: one line per event");
            for (l, e) in lines.iter().zip(events) {
                assert!(
                    l.starts_with(&format!("t={}", e.t)),
                    "{what}: `{l}` is not event {}",
                    e.t
                );
            }
        }
        View::JsonLines => {
            assert_eq!(jsonl::parse(&out).unwrap(), events, "{what}");
        }
        View::Chrome => {
            let s = validate_chrome(&out).unwrap_or_else(|e| panic!("{what}: {e}"));
            let begins = events.iter().filter(|e| e.phase == Phase::Begin).count();
            assert_eq!(s.slices, begins, "{what}: a slice per operation");
            let tracks: std::collections::BTreeSet<&str> =
                events.iter().map(|e| &*e.track).collect();
            for t in tracks {
                assert!(
                    s.threads.values().any(|n| n == t),
                    "{what}: no track named {t}"
                );
            }
        }
        View::Html => {
            assert!(out.starts_with("<!DOCTYPE html>"), "{what}");
            let d = html_data(&out).unwrap_or_else(|e| panic!("{what}: {e}"));
            let not_ends = events.iter().filter(|e| e.phase != Phase::End).count();
            assert_eq!(
                d["items"].as_array().unwrap().len(),
                not_ends,
                "{what}: an item per operation and point event"
            );
            assert_eq!(d["events"], events.len(), "{what}");
        }
    }
}

#[test]
fn every_example_traces_in_all_four_views_under_each_era() {
    let mut checked = 0;
    for f in common::toml_files("../../examples") {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        for profile in Profile::ALL {
            let report = run_example(&name, profile);
            let what = format!("{name} under {}", profile.name);
            if report.deadlock.is_none() {
                assert!(!report.trace.is_empty(), "{what}: empty trace");
            }
            let info = TraceInfo {
                title: what.clone(),
                violation: None,
            };
            for view in View::ALL {
                check_view(view, &report.trace, &info, &format!("{what}, {view:?}"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked} runs traced");
}

/// The item of a timeline at `i`, as (t, end, lane, row, kind, label).
fn item(tl: &Value, i: usize) -> (u64, Option<u64>, usize, u64, String, String) {
    let it = &tl["items"][i];
    (
        it[0].as_u64().unwrap(),
        it[1].as_u64(),
        it[2].as_u64().unwrap() as usize,
        it[3].as_u64().unwrap(),
        it[4].as_str().unwrap().to_string(),
        // The label, or the text when the label is left out as the same.
        Some(it[5].as_str().unwrap())
            .filter(|l| !l.is_empty())
            .unwrap_or(it[6].as_str().unwrap())
            .to_string(),
    )
}

/// The items inside item `p` (same lane, deeper, within its time).
fn within(tl: &Value, p: usize) -> Vec<usize> {
    let (t, end, lane, row, _, _) = item(tl, p);
    let end = end.expect("an operation");
    (0..tl["items"].as_array().unwrap().len())
        .filter(|&i| {
            let (ti, _, li, ri, _, _) = item(tl, i);
            li == lane && ri > row && ti > t && ti < end
        })
        .collect()
}

#[test]
fn the_nouveau_starvation_timeline_shows_each_pass_its_restore_the_unfiltered_clear_and_the_set_seq()
 {
    // Spec 10.3, 6.4: under 6.15 each of the 6 passes restores the entry the previous
    // pass left; the restore's MMU_NOTIFY_CLEAR (owner none) reaches the driver's
    // interval notifier unfiltered, which calls set_seq, and read_retry retries.
    let report = run_example(
        "nouveau-starvation-after-revocation.toml",
        Profile::linux_6_15(),
    );
    let tl = serde_json::to_value(Timeline::of(&report.trace, &TraceInfo::default())).unwrap();
    let lanes: Vec<&str> = tl["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    let starves = lanes.iter().position(|&l| l == "gpu-starves").unwrap();
    let device = lanes.iter().rposition(|&l| l == "gpu").unwrap();
    assert_eq!(tl["lanes"][device]["kind"], "device");
    let n = tl["items"].as_array().unwrap().len();
    let passes: Vec<usize> = (0..n)
        .filter(|&i| {
            let (_, _, lane, _, kind, _) = item(&tl, i);
            lane == starves && kind == "driver_pass"
        })
        .collect();
    assert_eq!(passes.len(), 6, "one bar per pass");
    let flows: Vec<(u64, u64)> = tl["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["from"].as_u64().unwrap(), f["to"].as_u64().unwrap()))
        .collect();
    let mut left_by_previous: Option<String> = None;
    for (k, &p) in passes.iter().enumerate() {
        assert_eq!(item(&tl, p).5, format!("driver pass {}", k + 1));
        let inner = within(&tl, p);
        let labels: Vec<String> = inner.iter().map(|&i| item(&tl, i).5).collect();
        let restore = inner
            .iter()
            .copied()
            .find(|&i| item(&tl, i).4 == "restore")
            .unwrap_or_else(|| panic!("pass {}: no restore: {labels:?}", k + 1));
        if let Some(prev) = &left_by_previous {
            assert_eq!(
                &item(&tl, restore).5,
                &format!("restore pfn {prev}"),
                "pass {} restores the entry pass {k} left",
                k + 1
            );
        }
        let clear = within(&tl, restore)
            .into_iter()
            .find(|&i| item(&tl, i).5 == "notifier CLEAR owner none")
            .unwrap_or_else(|| panic!("pass {}: the restore's unfiltered Clear", k + 1));
        let set_seq = flows
            .iter()
            .filter(|(from, _)| *from as usize == clear)
            .map(|(_, to)| item(&tl, *to as usize))
            .find(|it| it.5 == "gpu interval: set_seq")
            .unwrap_or_else(|| panic!("pass {}: no set_seq from the Clear", k + 1));
        assert_eq!(set_seq.2, device, "the callback is on the device's lane");
        assert!(
            labels.iter().any(|l| l == "read_retry: retry"),
            "pass {}: {labels:?}",
            k + 1
        );
        // The entry this pass leaves: its conversion's change to device-exclusive.
        let left = labels
            .iter()
            .rev()
            .find_map(|l| {
                l.strip_prefix("none -> device_exclusive(")
                    .map(|r| r.trim_end_matches(')').to_string())
            })
            .unwrap_or_else(|| panic!("pass {}: no new entry: {labels:?}", k + 1));
        left_by_previous = Some(left);
    }
    // The page's band: each pass restores the entry (device-exclusive, then
    // CPU-present) and converts again (none, then device-exclusive).
    let band = &tl["bands"][0];
    let states: Vec<&str> = band["segs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[2].as_str().unwrap())
        .collect();
    let cycles = states
        .windows(4)
        .filter(|w| w == &["excl", "cpu", "none", "excl"])
        .count();
    assert_eq!(cycles, 6, "{states:?}");
}

#[test]
fn the_chrome_validator_rejects_what_a_viewer_would_not_show() {
    let named = r#"{"ph":"M","name":"thread_name","pid":1,"tid":1,"args":{"name":"a"}}"#;
    let doc = |evs: &[&str]| format!("{{\"traceEvents\":[{named},{}]}}", evs.join(","));
    let b = r#"{"ph":"B","name":"op","ts":1,"pid":1,"tid":1}"#;
    let e = r#"{"ph":"E","name":"op","ts":2,"pid":1,"tid":1}"#;
    validate_chrome(&doc(&[b, e])).unwrap();
    for (bad, why) in [
        (doc(&[b]), "never ends"),
        (doc(&[e]), "E without B"),
        (
            doc(&[b, r#"{"ph":"E","name":"other","ts":2,"pid":1,"tid":1}"#]),
            "closes",
        ),
        (
            doc(&[
                r#"{"ph":"B","name":"op","ts":1,"pid":1,"tid":2}"#,
                r#"{"ph":"E","ts":2,"pid":1,"tid":2}"#,
            ]),
            "no thread_name",
        ),
        (
            doc(&[r#"{"ph":"s","id":1,"cat":"c","name":"n","ts":1,"pid":1,"tid":1}"#]),
            "0 end",
        ),
        (
            doc(&[r#"{"ph":"X","name":"x","ts":1,"pid":1,"tid":1}"#]),
            "dur",
        ),
        (
            doc(&[r#"{"ph":"C","name":"c","ts":1,"pid":1,"tid":0,"args":{"v":"x"}}"#]),
            "not numbers",
        ),
        (doc(&[r#"{"ph":"i","ts":1,"pid":1,"tid":1}"#]), "no name"),
    ] {
        let err = validate_chrome(&bad).unwrap_err();
        assert!(err.contains(why), "{why}: {err}");
    }
}

fn failing_example() -> (svmkit_scenario::Scenario, String) {
    example("lost-update-skip-set-seq.toml")
}

#[test]
fn a_traced_replay_reproduces_the_failing_schedule_byte_for_byte() {
    let (sc, _) = failing_example();
    let opts = ExploreOptions {
        schedules: 2000,
        ..ExploreOptions::default()
    };
    let found = explore(&sc, &opts, std::sync::Arc::new(|_| {}))
        .failure
        .expect("the file documents a failing schedule");
    // The explorer's account comes from a traced replay: it kept the trace.
    assert!(!found.trace.is_empty());
    let untraced = replay(&sc, None, &found.schedule, found.max_steps).unwrap_err();
    let (traced, events) = replay_traced(
        &sc,
        None,
        &found.schedule,
        found.max_steps,
        TraceLevel::Detail,
    );
    let traced = traced.unwrap_err();
    assert_eq!(untraced.account, found.account, "untraced replay");
    assert_eq!(traced.account, found.account, "traced replay");
    assert_eq!(traced.violation, found.violation);
    assert!(untraced.trace.is_empty(), "no trace unless asked");
    assert!(events.len() > found.trace.len(), "detail records more");
    // The timeline marks the violation at the step it names.
    let info = TraceInfo {
        title: "t".into(),
        violation: Some(found.violation.clone()),
    };
    let tl = Timeline::of(&found.trace, &info);
    let v = tl.violation.expect("marked");
    let failing = v.failing.expect("the violation names a thread's step");
    assert_eq!(tl.items[failing].kind, "step");
    // The thread the violation names (the one at whose scheduling point the checker
    // saw it) is the lane of the marked step.
    let named = found
        .violation
        .split("thread ")
        .nth(1)
        .and_then(|r| r.split([')', ',', '\'', ' ']).next())
        .expect("the violation names a thread");
    assert_eq!(&*tl.lanes[tl.items[failing].lane].name, named);
    assert!(v.steps.contains(&failing) && v.steps.len() >= 2);
    for view in View::ALL {
        check_view(
            view,
            &found.trace,
            &info,
            &format!("failing schedule, {view:?}"),
        );
    }
    let chrome = View::Chrome.render_with(&found.trace, &info);
    assert!(chrome.contains("\"cat\":\"violation\""));
}
