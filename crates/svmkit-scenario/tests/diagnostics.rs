//! Mistakes in scenario files are reported as `file:line:col`, the offending text
//! with a caret, and a hint; nothing runs. And no input makes the parser panic: random
//! bytes and random mutations of every bundled example (proptest).

use proptest::prelude::*;
use svmkit_scenario::parse;

const GOOD: &str = r#"
[scenario]
name = "t"

[[process]]
name = "app"

[[map]]
name = "buf"
process = "app"
len = "2 pages"

[[thread]]
name = "cpu"
process = "app"
steps = [
  { op = "write", at = "buf+8", value = 1 },
  { op = "read", at = "buf[page 1]", expect = 0 },
]
"#;

fn error_of(src: &str) -> String {
    let e = parse("t.toml", src).unwrap_err();
    e.render()
}

#[test]
fn diagnostics_a_good_file_parses() {
    let sc = parse("t.toml", GOOD).unwrap();
    assert_eq!(sc.threads[0].steps.len(), 2);
}

#[test]
fn diagnostics_unknown_step_has_location_caret_and_suggestion() {
    let src = GOOD.replace("op = \"write\"", "op = \"wrte\"");
    let e = parse("t.toml", &src).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
    let r = e.render();
    // Line 17 of GOOD (the first step; GOOD starts with a newline), the column of
    // the misspelt name inside its quotes.
    assert!(r.contains("t.toml:17:11"), "{r}");
    assert!(r.contains("unknown step `wrte`"), "{r}");
    assert!(r.contains("did you mean `write`?"), "{r}");
    assert!(
        r.contains('^') || r.contains('─'),
        "a caret or underline: {r}"
    );
    assert!(r.contains("{ op = \"wrte\""), "the offending text: {r}");
}

#[test]
fn diagnostics_unknown_names_keys_and_bad_values() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "at = \"buf+8\"",
            "at = \"bfu+8\"",
            "no mapping is called `bfu`",
        ),
        ("at = \"buf+8\"", "at = \"buf+zz\"", "is not an address"),
        (
            "process = \"app\"\nlen",
            "process = \"ap\"\nlen",
            "no process is called `ap`",
        ),
        ("len = \"2 pages\"", "len = \"2 MB\"", "is not a length"),
        ("value = 1 }", "value = -1 }", "out of range"),
        (
            "expect = 0 }",
            "expect = 0, expext_pte = \"none\" }",
            "unknown key `expext_pte`",
        ),
        (
            "name = \"t\"",
            "name = \"t\"\nprofile = \"linux-6.51\"",
            "unknown profile",
        ),
        (
            "name = \"t\"",
            "name = \"t\"\nframes = 3",
            "at least 16 frames",
        ),
        (
            "expect = 0 }",
            "expect = 0 },\n  { op = \"kill\", thread = \"cpy\" }",
            "no thread is called `cpy`",
        ),
        (
            "expect = 0 }",
            "expect = 0 },\n  { op = \"kill\" }",
            "`thread`",
        ),
        (
            "expect = 0 }",
            "expect = 0 },\n  { op = \"touch\", at = \"buf\", pages = -2 }",
            "out of range",
        ),
        ("expect = 0 }", "expect = 0, source = 3 }", "source"),
        (
            "expect = 0 },\n]",
            "expect = 0 },\n]\n[expect]\nrss = 8",
            "`rss` must be an array of tables",
        ),
        (
            "expect = 0 },\n]",
            "expect = 0 },\n]\n[expect]\nrss = [{ process = \"app\", at = \"buf\", kb = 8 }]",
            "unknown key `kb`",
        ),
        (
            "expect = 0 },\n]",
            "expect = 0 },\n]\n[expect]\nrss = [{ process = \"app\", at = \"buf\", kib = -8 }]",
            "out of range",
        ),
    ];
    for (from, to, want) in cases {
        let src = GOOD.replacen(from, to, 1);
        assert_ne!(src, GOOD, "{from}");
        let r = error_of(&src);
        assert!(r.contains(want), "{to}: {r}");
        assert!(r.contains("t.toml:"), "{r}");
    }
}

/// Bad values of the step expectations of issue 15 (expect_pte's table form,
/// expect_refcount, expect_mapcount, expect_faults, per-era values): each is reported
/// at its place with a hint, and nothing else is.
#[test]
fn diagnostics_bad_step_expectations_are_located_with_a_hint() {
    // (replace the read step's `expect = 0 }` with this, what the message says, what
    // the hint says)
    let cases: &[(&str, &str, &str)] = &[
        (
            "expect = 0, expect_pte = { kind = \"present\", sof_dirty = true }",
            "unknown key `sof_dirty` in expect_pte",
            "did you mean `soft_dirty`?",
        ),
        (
            "expect = 0, expect_pte = { write = true }",
            "expect_pte needs `kind`",
            "no `kind` here",
        ),
        (
            "expect = 0, expect_pte = { kind = \"presnt\" }",
            "unknown PTE kind `presnt`",
            "did you mean `present`?",
        ),
        (
            "expect = 0, expect_pte = { kind = \"present\", dirty = 1 }",
            "dirty must be true or false",
            "expected a boolean",
        ),
        (
            "expect = 0, expect_pte = { kind = \"device-exclusive\", dirty = true }",
            "a device-exclusive entry has no dirty or young bit",
            "spec 1.1",
        ),
        (
            "expect = 0, expect_pte = { kind = \"none\", at = \"bfu\" }",
            "no mapping is called `bfu`",
            "declare it with [[map]]",
        ),
        (
            "expect = 0, expect_refcount = -1",
            "expect_refcount -1 is out of range",
            "use a value from 0 to",
        ),
        (
            "expect = 0, expect_mapcount = { at = \"buf\" }",
            "expect_mapcount needs `value`",
            "no `value` here",
        ),
        (
            "expect = 0, expect_mapcount = { at = \"buf\", valeu = 1, value = 1 }",
            "unknown key `valeu` in expect_mapcount",
            "did you mean `value`?",
        ),
        (
            "expect = 0, expect_refcount = { \"linux-6.51\" = 1 }",
            "unknown era `linux-6.51` in expect_refcount",
            "did you mean `linux-6.15`?",
        ),
        (
            "expect = 0, expect_faults = { }",
            "expect_faults names no era",
            "one per era",
        ),
        (
            "expect = 0, expect_faults = \"one\"",
            "expect_faults must be an integer",
            "expected an integer",
        ),
        (
            "expect = { \"linux-5.14\" = 0, \"linux-6.15\" = \"zero\" }",
            "`zero` is not an expected result",
            "expect = N, \"ok\" or \"any\"",
        ),
        (
            "expect = { \"linux-6.15\" = 0 }, expect_err = { \"linux-6.15\" = \"EBUSY\" }",
            "era `linux-6.15` expects a value and an error",
            "not both",
        ),
        (
            "expect = { \"linux-6.15\" = 0 }, expect_err = { \"linux-5.14\" = \"EBSY\" }",
            "unknown error `EBSY`",
            "did you mean `EBUSY`?",
        ),
        (
            "expect = 0, expect_events = { \"linux-5.41\" = [\"EXCLUSIVE\"] }",
            "unknown era `linux-5.41` in expect_events",
            "did you mean `linux-5.14`?",
        ),
        (
            "expect = 0, expect_events = { \"linux-5.14\" = \"EXCLUSIVE\" }",
            "expect_events is a list of events",
            "one list per era",
        ),
    ];
    for (to, want, hint) in cases {
        let src = GOOD.replacen("expect = 0 }", &format!("{to} }}"), 1);
        assert_ne!(src, GOOD);
        let e = parse("t.toml", &src).unwrap_err();
        let r = e.render();
        assert_eq!(e.problems.len(), 1, "{to}: {r}");
        assert!(r.contains(want), "{to}: {r}");
        assert!(r.contains(hint), "{to}: {r}");
        assert!(
            r.contains("t.toml:18:"),
            "{to}: located on the step's line: {r}"
        );
    }
    // Expectations a step cannot have: no address to look at, nothing to count.
    let no_addr = GOOD.replacen(
        "{ op = \"write\", at = \"buf+8\", value = 1 },",
        "{ op = \"write\", at = \"buf+8\", value = 1 },\n  { op = \"clear_soft_dirty\", expect_refcount = 1 },",
        1,
    );
    let r = error_of(&no_addr);
    assert!(
        r.contains("`clear_soft_dirty` has no address for expect_refcount"),
        "{r}"
    );
    assert!(r.contains("expect_refcount = { at = \"buf\""), "{r}");
    let no_faults = GOOD.replacen(
        "{ op = \"write\", at = \"buf+8\", value = 1 },",
        "{ op = \"write\", at = \"buf+8\", value = 1 },\n  { op = \"munmap\", at = \"buf\", len = 4096, expect_faults = 0 },",
        1,
    );
    let r = error_of(&no_faults);
    assert!(r.contains("`munmap` counts no faults"), "{r}");
    assert!(r.contains("atomic_add"), "{r}");
    // cpages belongs to the dmirror ioctls.
    let no_cpages = GOOD.replacen(
        "{ op = \"write\", at = \"buf+8\", value = 1 },",
        "{ op = \"write\", at = \"buf+8\", value = 1, expect_cpages = 1 },",
        1,
    );
    let r = error_of(&no_cpages);
    assert!(
        r.contains("`write` is no dmirror ioctl: it has no cpages"),
        "{r}"
    );
    assert!(r.contains("t.toml:17:"), "{r}");
    assert!(r.contains("expect_cpages goes with dmirror_read"), "{r}");
}

/// Good forms of the new expectations parse to what they say.
#[test]
fn diagnostics_new_expectation_forms_parse() {
    use svmkit_scenario::ast::{Outcome, PerEra, PteFlag, PteKind};
    let src = GOOD.replacen(
        "expect = 0 }",
        "expect = { \"linux-5.14\" = 0 }, expect_err = { \"linux-6.15\" = \"EBUSY\" }, \
         expect_pte = { kind = \"present\", soft_dirty = { \"linux-5.14\" = true }, at = \"buf\" }, \
         expect_refcount = 1, expect_mapcount = { at = \"buf\", value = 1 }, expect_faults = 0 }",
        1,
    );
    let sc = parse("t.toml", &src).unwrap_or_else(|e| panic!("{}", e.render()));
    let st = &sc.threads[0].steps[1];
    assert_eq!(st.expect.get("linux-5.14"), Some(&Outcome::Ok(Some(0))));
    assert!(matches!(st.expect.get("linux-6.15"), Some(Outcome::Err(_))));
    let pte = st.expect_pte.as_ref().unwrap();
    assert_eq!(pte.kind, PerEra::All(PteKind::Present));
    assert_eq!(pte.flags[0].0, PteFlag::SoftDirty);
    assert_eq!(pte.flags[0].1.get("linux-6.15"), None);
    assert!(pte.at.is_some());
    assert_eq!(st.expect_refcount.as_ref().unwrap().value, PerEra::All(1));
    assert!(st.expect_mapcount.as_ref().unwrap().at.is_some());
    assert_eq!(st.expect_faults, Some(PerEra::All(0)));
}

/// `[outcomes]`'s `diagnosis`: only `self-deadlock`, only with outcome `deadlock`;
/// located at the value with a hint. And a good one parses to what it says.
#[test]
fn diagnostics_outcome_diagnosis_is_checked() {
    let with = |outcome: &str| {
        format!(
            "{GOOD}\n[outcomes]\n\"linux-5.14\" = {{ outcome = \"{outcome}\", source = \"spec 8 item 22\" }}\n"
        )
    };
    for (outcome, diag, want, hint, col) in [
        (
            "deadlock",
            "self-dedlock",
            "unknown diagnosis `self-dedlock`",
            "diagnosis = \"self-deadlock\"",
            "t.toml:22:",
        ),
        (
            "pass",
            "self-deadlock",
            "`diagnosis` goes with outcome \"deadlock\"",
            "drop the diagnosis",
            "t.toml:22:",
        ),
    ] {
        let src =
            with(outcome).replacen("source =", &format!("diagnosis = \"{diag}\", source ="), 1);
        let e = parse("t.toml", &src).unwrap_err();
        let r = e.render();
        assert_eq!(e.problems.len(), 1, "{r}");
        assert!(r.contains(want), "{r}");
        assert!(r.contains(hint), "{r}");
        assert!(r.contains(col), "{r}");
    }
    let src = with("deadlock").replacen("source =", "diagnosis = \"self-deadlock\", source =", 1);
    let sc = parse("t.toml", &src).unwrap_or_else(|e| panic!("{}", e.render()));
    assert!(sc.outcomes[0].self_deadlock);
    let sc = parse("t.toml", &with("deadlock")).unwrap();
    assert!(!sc.outcomes[0].self_deadlock);
}

/// `expect_events` per era parses to one list per era.
#[test]
fn diagnostics_per_era_events_parse() {
    use svmkit_scenario::ast::PerEra;
    let src = GOOD.replacen(
        "expect = 0 }",
        "expect = 0, expect_events = { \"linux-5.14\" = [\"EXCLUSIVE\"], \"linux-6.15\" = [] } }",
        1,
    );
    let sc = parse("t.toml", &src).unwrap_or_else(|e| panic!("{}", e.render()));
    let ev = sc.threads[0].steps[1].expect_events.as_ref().unwrap();
    assert_eq!(ev.get("linux-5.14"), Some(&vec!["EXCLUSIVE".to_string()]));
    assert_eq!(ev.get("linux-6.15"), Some(&Vec::new()));
    let src = GOOD.replacen("expect = 0 }", "expect = 0, expect_events = [] }", 1);
    let sc = parse("t.toml", &src).unwrap();
    assert_eq!(
        sc.threads[0].steps[1].expect_events,
        Some(PerEra::All(Vec::new()))
    );
}

#[test]
fn diagnostics_syntax_errors_are_located() {
    let r = error_of("[scenario\nname = 1\n");
    assert!(r.contains("t.toml:1:"), "{r}");
    assert!(r.contains("not valid TOML"), "{r}");
}

#[test]
fn diagnostics_every_problem_is_reported_not_only_the_first() {
    let src = GOOD
        .replace("op = \"write\"", "op = \"wrte\"")
        .replace("at = \"buf[page 1]\"", "at = \"nope\"");
    let e = parse("t.toml", &src).unwrap_err();
    assert_eq!(e.problems.len(), 2, "{e}");
}

fn corpus() -> Vec<String> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    v.push(GOOD.to_string());
    v
}

/// Mutated examples that still parse also run without a panic (bad values reach the
/// model's Linux-named functions, which answer with errnos).
#[test]
fn diagnostics_mutated_examples_that_parse_run_without_panicking() {
    use proptest::test_runner::{Config, TestRunner};
    let corpus = corpus();
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let strategy = (
        any::<prop::sample::Index>(),
        proptest::collection::vec(
            (any::<prop::sample::Index>(), "[0-9a-z_+\\[\\] -]{1,3}"),
            1..4,
        ),
    );
    runner
        .run(&strategy, |(pick, edits)| {
            let mut s = corpus[pick.index(corpus.len())].clone();
            for (at, text) in edits {
                let mut i = at.index(s.len().max(1));
                while i > 0 && !s.is_char_boundary(i) {
                    i -= 1;
                }
                s.insert_str(i, &text);
            }
            if let Ok(sc) = parse("mut.toml", &s) {
                let opts = svmkit_scenario::RunOptions {
                    profile: None,
                    step_timeout: std::time::Duration::from_millis(300),
                    ..Default::default()
                };
                let _ = svmkit_scenario::run(&sc, &opts);
            }
            Ok(())
        })
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn diagnostics_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = parse("fuzz.toml", &s).map_err(|e| e.render());
    }

    #[test]
    fn diagnostics_mutated_examples_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<char>()), 1..8),
    ) {
        let corpus = corpus();
        let mut s: Vec<char> = corpus[pick.index(corpus.len())].chars().collect();
        for (at, kind, c) in edits {
            if s.is_empty() {
                break;
            }
            let i = at.index(s.len());
            match kind {
                0 => { s.remove(i); }
                1 => s.insert(i, c),
                2 => s[i] = c,
                _ => {
                    // Duplicate a slice (repeats keys and tables).
                    let j = (i + 40).min(s.len());
                    let dup: Vec<char> = s[i..j].to_vec();
                    for (k, d) in dup.into_iter().enumerate() {
                        s.insert(j + k, d);
                    }
                }
            }
        }
        let text: String = s.into_iter().collect();
        if let Err(e) = parse("mut.toml", &text) {
            let r = e.render();
            prop_assert!(r.contains("mut.toml:"), "{}", r);
        }
    }
}

#[test]
fn diagnostics_mremap_parses_and_bad_flags_are_located() {
    use svmkit::mm::MremapFlags;
    use svmkit_scenario::ast::Op;
    let good = GOOD.replace(
        "{ op = \"read\", at = \"buf[page 1]\", expect = 0 },",
        "{ op = \"mremap\", at = \"buf\", len = \"2 pages\", new_len = \"2 pages\", to = 0x60000000, flags = \"maymove|fixed\" },",
    );
    let sc = parse("t.toml", &good).unwrap();
    match &sc.threads[0].steps[1].op {
        Op::Mremap {
            len,
            new_len,
            to,
            flags,
            ..
        } => {
            assert_eq!((*len, *new_len), (8192, 8192));
            assert_eq!(to.as_ref().map(|t| t.offset), Some(0x6000_0000));
            assert_eq!(*flags, MremapFlags::MAYMOVE | MremapFlags::FIXED);
        }
        other => panic!("{other:?}"),
    }
    let r = error_of(&good.replace("maymove|fixed", "maymove|fixd"));
    assert!(r.contains("t.toml:18:"), "{r}");
    assert!(r.contains("unknown mremap flag `fixd`"), "{r}");
    assert!(r.contains("did you mean `fixed`?"), "{r}");
    let r = error_of(&good.replace(", new_len = \"2 pages\"", ""));
    assert!(r.contains("new_len"), "{r}");
}

/// A uvm device: `batch` must be a power of two up to 512, belongs to uvm only, and
/// uvm has no flaw switches; each mistake is located and explained.
#[test]
fn diagnostics_uvm_device_keys() {
    let with_device = |dev: &str| {
        GOOD.replace(
            "[[thread]]",
            &format!("[[device]]\nname = \"gpu\"\nprocess = \"app\"\n{dev}\n\n[[thread]]"),
        )
    };
    let good = with_device("driver = \"uvm\"\nbatch = 4");
    let sc = parse("t.toml", &good).unwrap();
    assert_eq!(
        sc.devices[0].driver,
        svmkit_scenario::ast::Driver::Uvm {
            batch: 4,
            max_passes: 16
        }
    );
    let cases: &[(&str, &str)] = &[
        (
            "driver = \"uvm\"\nbatch = 3",
            "batch 3 is not a power of two",
        ),
        ("driver = \"uvm\"\nbatch = 1024", "batch"),
        (
            "driver = \"svm_atomic\"\nbatch = 2",
            "svm_atomic has no batch",
        ),
        (
            "driver = \"uvm\"\nflaws = { leak_folio_on_retry = true }",
            "uvm has no flaw switches",
        ),
        ("driver = \"uvn\"", "did you mean `uvm`?"),
    ];
    for (dev, want) in cases {
        let r = error_of(&with_device(dev));
        assert!(r.contains(want), "{dev}: {r}");
        assert!(r.contains("t.toml:"), "located: {r}");
    }
}
