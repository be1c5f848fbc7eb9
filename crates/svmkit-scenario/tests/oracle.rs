//! The oracle comparison (issue 18): a golden that says what the model says agrees; one
//! observable changed is a difference, unless the file documents it in `[oracle]`.

use svmkit_scenario::oracle::compare;
use svmkit_scenario::{RunOptions, parse, run};

const SRC: &str = r#"
[scenario]
name = "oracle compare"
profile = "linux-6.12"
frames = 64

[[process]]
name = "app"

[[map]]
name = "buf"
process = "app"
len = "1 page"

[[device]]
name = "mirror"
driver = "dmirror"
process = "app"

[[thread]]
name = "cpu"
process = "app"
steps = [
  { op = "write", at = "buf", value = 5, id = "first", expect_faults = 1 },
]

[[thread]]
name = "mirror"
device = "mirror"
after = "cpu"
steps = [
  { op = "dmirror_exclusive", at = "buf", expect = 5, expect_cpages = 1, expect_pte = "device-exclusive" },
]

[expect]
values = [{ process = "app", at = "buf", value = 5 }]
"#;

fn model(src: &str) -> (svmkit_scenario::Scenario, serde_json::Value) {
    let sc = parse("t.toml", src).unwrap();
    let r = run(&sc, &RunOptions::default()).unwrap();
    assert!(r.passed, "{}", r.account());
    let v = serde_json::to_value(&r).unwrap();
    (sc, v)
}

#[test]
fn oracle_a_golden_equal_to_the_model_agrees_on_every_observable() {
    let (sc, m) = model(SRC);
    let c = compare(&sc, "6.12", &m, &m);
    assert!(c.unexplained().is_empty(), "{:?}", c.unexplained());
    // write: result, pte, faults; exclusive: result, pte, cpages; the end value (no
    // soft-dirty bit: the file never clears it).
    assert_eq!(c.observed.len(), 7, "{:#?}", c.observed);
    assert_eq!(c.agreeing(), 7);
}

#[test]
fn oracle_a_changed_observable_differs_unless_documented() {
    let (sc, m) = model(SRC);
    let mut k = m.clone();
    let steps = k["steps"].as_array_mut().unwrap();
    let first = steps
        .iter_mut()
        .find(|s| s["id"] == "first")
        .expect("the labelled step");
    first["faults"] = serde_json::json!(2);
    let c = compare(&sc, "6.12", &k, &m);
    let bad = c.unexplained();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("faults: kernel 2, model 1"), "{bad:?}");

    // Documented for 6.12: accepted with its reason, still counted as a difference.
    let src = format!(
        "{SRC}\n[oracle]\ndivergences = [{{ kernel = \"6.12\", step = \"first\", field = \"faults\", reason = \"the kernel counts the zero-page fault too\" }}]\n"
    );
    let (sc, m) = model(&src);
    let c = compare(&sc, "6.12", &k, &m);
    assert!(c.unexplained().is_empty(), "{:?}", c.unexplained());
    assert_eq!(c.agreeing(), c.observed.len() - 1);
    // Not for 6.1.
    assert_eq!(compare(&sc, "6.1", &k, &m).unexplained().len(), 1);
}

#[test]
fn oracle_a_step_the_kernel_did_not_run_is_a_problem() {
    let (sc, m) = model(SRC);
    let mut k = m.clone();
    k["steps"].as_array_mut().unwrap().pop();
    let c = compare(&sc, "6.12", &k, &m);
    assert!(
        c.unexplained()
            .iter()
            .any(|p| p.contains("the kernel ran 1 step(s), the model 2")),
        "{:?}",
        c.unexplained()
    );
}

#[test]
fn oracle_divergences_are_checked_when_parsed() {
    for (bad, want) in [
        (
            "kernel = \"6.13\", step = \"first\", field = \"faults\", reason = \"r\"",
            "no oracle kernel",
        ),
        (
            "kernel = \"6.12\", step = \"frist\", field = \"faults\", reason = \"r\"",
            "no step has id `frist`",
        ),
        (
            "kernel = \"6.12\", step = \"first\", field = \"pfn\", reason = \"r\"",
            "not an observable",
        ),
        (
            "kernel = \"6.12\", step = \"first\", field = \"faults\"",
            "reason",
        ),
    ] {
        let src = format!("{SRC}\n[oracle]\ndivergences = [{{ {bad} }}]\n");
        let e = parse("t.toml", &src).unwrap_err().render();
        assert!(e.contains(want), "{bad}: {e}");
        assert!(e.contains("t.toml:"), "{e}");
    }
}

const SVM: &str = r#"
[scenario]
name = "oracle compare svm_atomic"
profile = "linux-6.12"
frames = 64

[[process]]
name = "app"

[[map]]
name = "buf"
process = "app"
len = "1 page"

[[device]]
name = "gpu"
driver = "svm_atomic"
process = "app"
max_passes = 4

[[thread]]
name = "gpu"
device = "gpu"
steps = [
  { op = "atomic_add", at = "buf", value = 1, id = "atomic", expect = 0, expect_faults = 1 },
]
"#;

#[test]
fn oracle_devices_are_compared_only_when_the_golden_observed_them() {
    let (sc, m) = model(SVM);
    let step = m["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "atomic")
        .unwrap();
    // The model's entry carries a frame; the comparison keeps name and rights only.
    assert!(
        step["devices"][0]
            .as_str()
            .unwrap()
            .starts_with("gpu: rwa pfn ")
    );
    let mut k = m.clone();
    // Without `oracle.devices_observed` (a dmirror golden) `devices` is not compared.
    let plain = compare(&sc, "6.12", &k, &m);
    assert!(plain.observed.iter().all(|o| o.field != "devices"));
    k["oracle"] = serde_json::json!({ "devices_observed": true });
    let s = k["steps"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["id"] == "atomic")
        .unwrap();
    s["devices"] = serde_json::json!(["gpu: rwa pfn 0x1234"]);
    let c = compare(&sc, "6.12", &k, &m);
    assert!(c.unexplained().is_empty(), "{:?}", c.unexplained());
    let d = c.observed.iter().find(|o| o.field == "devices").unwrap();
    assert_eq!(
        (d.kernel.as_str(), d.model.as_str()),
        ("gpu: rwa", "gpu: rwa")
    );
    // The kernel's device no longer maps the page: a difference.
    k["steps"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["id"] == "atomic")
        .unwrap()["devices"] = serde_json::json!([]);
    let bad = compare(&sc, "6.12", &k, &m).unexplained();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].contains("devices: kernel none, model gpu: rwa"),
        "{bad:?}"
    );
}
