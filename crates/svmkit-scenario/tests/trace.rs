//! Traces of scenario runs (issue 17): the nouveau starvation examples read event by
//! event, the account's subscriber decisions, and tracing that changes no run.

mod common;

use std::time::Duration;

use svmkit::Profile;
use svmkit::trace::{Decision, Payload, TraceEvent, TraceLevel};
use svmkit_scenario::{RunOptions, RunOutcome, RunReport, parse, run};

#[path = "../../svmkit/tests/common/trace_ops.rs"]
mod trace_ops;
use trace_ops::{inside, ops};

fn run_file(file: &str, profile: Profile, trace: TraceLevel) -> RunReport {
    run_file_within(file, profile, trace, Duration::from_secs(3))
}

/// [`run_file`] with a step timeout (a hung step ends the run after it).
fn run_file_within(
    file: &str,
    profile: Profile,
    trace: TraceLevel,
    timeout: Duration,
) -> RunReport {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(file);
    let src = std::fs::read_to_string(&path).unwrap();
    let sc = parse(file, &src).unwrap_or_else(|e| panic!("{}", e.render()));
    let opts = RunOptions {
        profile: Some(profile),
        step_timeout: timeout,
        trace,
    };
    run(&sc, &opts).unwrap()
}

/// The frame of the device-exclusive entry a pass left (its conversion's PTE change),
/// and the frame whose entry it restored first.
fn pass_entries(pass: &[TraceEvent]) -> (Option<u64>, Option<u64>) {
    let mut restored = None;
    let mut left = None;
    for e in pass {
        if let Payload::Pte { old, new, .. } = &e.payload {
            if old.kind() == "device_exclusive" && new.kind() == "present" && restored.is_none() {
                restored = old.pfn();
            }
            if new.kind() == "device_exclusive" {
                left = new.pfn();
            }
        }
    }
    (left, restored)
}

/// The starving atomic under 6.15: every pass restores the entry the previous pass
/// left (the first pass: the entry the revocation left), the restore's unfiltered
/// MMU_NOTIFY_CLEAR makes the driver's interval notifier `set_seq`, and read_retry
/// then fails the pass, up to the bound.
fn assert_starvation(report: &RunReport, thread: &str, bound: usize) {
    let ev = &report.trace;
    let step = ops(ev, |p| matches!(p, Payload::Step { .. }))
        .into_iter()
        .find(|&i| &*ev[i].track == thread)
        .unwrap_or_else(|| panic!("no step of {thread}"));
    let in_step = inside(ev, step);
    let passes = ops(in_step, |p| matches!(p, Payload::DriverPass { .. }));
    assert_eq!(passes.len(), bound, "one pass per bound");
    let mut previous: Option<u64> = None;
    for (n, &p) in passes.iter().enumerate() {
        let pass = inside(in_step, p);
        let (left, restored) = pass_entries(pass);
        assert!(restored.is_some(), "pass {}: no restore", n + 1);
        if let Some(prev) = previous {
            assert_eq!(
                restored,
                Some(prev),
                "pass {} restores the entry pass {} left",
                n + 1,
                n
            );
        }
        assert!(left.is_some(), "pass {}: no new entry", n + 1);
        previous = left;
        let restore = ops(pass, |p| matches!(p, Payload::Restore { .. }));
        assert_eq!(restore.len(), 1, "pass {}", n + 1);
        let clear = ops(
            inside(pass, restore[0]),
            |p| matches!(p, Payload::Notifier { event, owner: None, .. } if event == "MMU_NOTIFY_CLEAR"),
        );
        assert_eq!(
            clear.len(),
            1,
            "pass {}: the restore's Clear, owner none",
            n + 1
        );
        let in_clear = inside(inside(pass, restore[0]), clear[0]);
        assert!(
            in_clear.iter().any(|e| matches!(&e.payload, Payload::Subscriber {
                subscriber, callback, decision: Decision::SetSeq, .. } if subscriber == "gpu" && callback == "interval")),
            "pass {}: the driver's interval notifier does not filter the restore: set_seq",
            n + 1
        );
        assert!(
            pass.iter()
                .any(|e| matches!(e.payload, Payload::ReadRetry { retry: true, .. })),
            "pass {}: read_retry says retry",
            n + 1
        );
        // The driver's own conversion is filtered (its Exclusive event, its owner).
        assert!(
            pass.iter()
                .any(|e| matches!(&e.payload, Payload::Subscriber {
            subscriber, decision: Decision::Ignored, .. } if subscriber == "gpu"))
        );
    }
    let end = &in_step[in_step.len() - 1];
    assert!(
        matches!(&end.payload, Payload::End { op, result } if op == "device_fault" && result.starts_with("EBUSY")),
        "{end:?}"
    );
}

#[test]
fn trace_nouveau_starvation_after_revocation_shows_each_pass_and_the_set_seq() {
    // Spec 10.3 (each later pass's GUP restores the entry the previous pass left),
    // 6.4 (6.15's restore notifies MMU_NOTIFY_CLEAR, owner none, unfiltered), 4.2
    // (mprotect leaves the entry). The file's bound is 6 passes.
    let report = run_file(
        "nouveau-starvation-after-revocation.toml",
        Profile::linux_6_15(),
        TraceLevel::Normal,
    );
    assert!(report.passed, "{}", report.account());
    assert_starvation(&report, "gpu-starves", 6);
    // The account shows each range's decisions too (issue 15).
    let account = report.account();
    let decided: Vec<&str> = account
        .lines()
        .filter(|l| l.contains("decided: app MMU_NOTIFY_CLEAR"))
        .collect();
    assert!(
        decided
            .iter()
            .filter(|l| l.contains("gpu interval seq=") && l.contains("set_seq"))
            .count()
            >= 6,
        "{account}"
    );
    assert!(
        account.contains("owner gpu: gpu interval seq="),
        "{account}"
    );
    assert!(
        !account.contains("recorder"),
        "the engine's own listener is not shown"
    );
}

#[test]
fn trace_nouveau_starvation_thp_shows_the_split_then_the_starvation() {
    let file = "nouveau-starvation-thp.toml";
    let report = run_file(file, Profile::linux_6_15(), TraceLevel::Normal);
    let ev = &report.trace;
    // derived (spec 2.4: FOLL_SPLIT_PMD): the first pass splits the huge PMD under a
    // Clear range that the driver's interval notifier does not filter.
    let split = ops(ev, |p| matches!(p, Payload::ThpSplit { .. }));
    assert!(!split.is_empty(), "{file}: no THP split");
    let in_split = inside(ev, split[0]);
    assert!(in_split.iter().any(|e| matches!(&e.payload, Payload::Pmd { old, new, .. } if old.kind() == "huge" && new.kind() == "table")));
    assert!(in_split.iter().any(|e| matches!(
        &e.payload,
        Payload::Subscriber {
            decision: Decision::SetSeq,
            ..
        }
    )));
    let retry = ev
        .iter()
        .position(|e| matches!(e.payload, Payload::ReadRetry { retry: true, .. }))
        .expect("a pass retries");
    assert!(retry > split[0]);
}

#[test]
fn trace_on_or_off_every_example_runs_the_same() {
    // derived: tracing only observes. Every example, under each era it names, gives
    // the same step results, PTEs, notifier events, device entries and end checks
    // with the record off and at detail level.
    let strip = |r: &RunReport| {
        let steps: Vec<String> = r
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{} {} {:?} {:?} {:?} {:?} {:?}",
                    s.thread, s.result, s.pte, s.events, s.devices, s.faults, s.failed
                )
            })
            .collect();
        let end: Vec<String> = r
            .end
            .iter()
            .map(|c| format!("{} {} {}", c.what, c.ok, c.detail))
            .collect();
        (steps, end, r.deadlock.clone(), r.passed)
    };
    let mut checked = 0;
    for f in common::toml_files("../../examples") {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(&f).unwrap();
        let sc = parse(&name, &src).unwrap();
        for o in &sc.outcomes {
            let Some(profile) = Profile::by_name(&o.profile) else {
                continue;
            };
            // A documented self-deadlock hangs a step until the timeout (its report is
            // stable: nothing moves while it sleeps). Any other run gets a timeout far
            // above its slowest step (a 1024-page dmirror EXCLUSIVE takes seconds in a
            // debug build on a loaded machine), or a slow step would read as a hang
            // whose report depends on the moment it was taken.
            let t = if o.outcome == RunOutcome::Deadlock {
                Duration::from_secs(3)
            } else {
                Duration::from_secs(60)
            };
            let off = run_file_within(&name, profile, TraceLevel::Off, t);
            let on = run_file_within(&name, profile, TraceLevel::Detail, t);
            assert!(off.trace.is_empty(), "{name}: recorded with tracing off");
            assert!(off.steps.iter().all(|s| s.decisions.is_empty()));
            if off.deadlock.is_none() {
                assert!(!on.trace.is_empty(), "{name}");
            }
            assert_eq!(strip(&off), strip(&on), "{name} under {}", o.profile);
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked} runs compared");
}
