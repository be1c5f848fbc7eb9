//! The scenario files the demo runs: bundled from `examples/` (one file per
//! behaviour, the same files `svmkit run` and CI run), run through the scenario engine
//! under a part's profile, and read back for the narration and the verdicts. Every
//! expectation a verdict states comes from the file: its documented outcome for the
//! era (`[outcomes]`), or a step's `expect`, `expect_err`, `expect_pte` or
//! `expect_faults`; the verdict's source is the file's `[outcomes]` source string,
//! classified by [`classify`].

use std::time::Duration;

use anyhow::{Context, Result, bail};
use svmkit::Profile;
use svmkit_scenario::ast::{EraOutcome, Outcome, PteKind, Step};
use svmkit_scenario::engine::StepRecord;
use svmkit_scenario::{RunOptions, RunOutcome, RunReport, Scenario};

use crate::report::{PartOut, Source};

/// A scenario file compiled into the binary.
#[derive(Debug)]
pub(crate) struct Bundled {
    /// Its name in `examples/`.
    pub(crate) file: &'static str,
    /// Its text.
    pub(crate) src: &'static str,
}

macro_rules! bundle {
    ($file:literal) => {
        Bundled {
            file: $file,
            src: include_str!(concat!("../../../examples/", $file)),
        }
    };
}

/// The zero page, folios, a THP, the folio lock, memory running out (part
/// `foundation`).
pub(crate) const FOUNDATION: Bundled = bundle!("foundation-folios-and-locks.toml");
/// The owner-filter livelock (part `livelock`).
pub(crate) const OWNER_FILTER: Bundled = bundle!("owner-filter-livelock.toml");
/// The hmm selftest ports (part `selftests`), with the selftest's name.
pub(crate) const SELFTESTS: [(Bundled, &str); 6] = [
    (bundle!("hmm-exclusive.toml"), "exclusive"),
    (bundle!("hmm-exclusive-thp.toml"), "exclusive (THP buffer)"),
    (bundle!("hmm-exclusive-mprotect.toml"), "exclusive_mprotect"),
    (
        bundle!("hmm-exclusive-mprotect-thp.toml"),
        "exclusive_mprotect (THP buffer)",
    ),
    (bundle!("hmm-exclusive-cow.toml"), "exclusive_cow"),
    (
        bundle!("hmm-exclusive-cow-thp.toml"),
        "exclusive_cow (THP buffer)",
    ),
];
/// Reclaim and migration of a device-exclusive page (part `reclaim`): each era's
/// reclaim file, then each era's migration file.
pub(crate) const RECLAIM: [Bundled; 4] = [
    bundle!("reclaim-stuck-5.14.toml"),
    bundle!("reclaim-swapped-6.15.toml"),
    bundle!("offline-loop-5.14.toml"),
    bundle!("migrate-migrated-6.15.toml"),
];
/// Two GPUs on one page (part `two-devices`).
pub(crate) const TWO_DEVICES: Bundled = bundle!("two-devices-one-page.toml");
/// An anonymous mapping's faults, mprotect and munmap (part `address-space`).
pub(crate) const ADDRESS_SPACE: Bundled = bundle!("anon-fault-mprotect-munmap.toml");
/// fork, copy-on-write and shared memory as notifiers see them (part `fork`).
pub(crate) const FORK: Bundled = bundle!("fork-cow-notifiers.toml");
/// One conversion and its restore, and a filtered device atomic (part `exclusive`).
pub(crate) const EXCLUSIVE: Bundled = bundle!("exclusive-conversion-restore.toml");
/// A GPU and two CPU threads counting in a THP (part `story`).
pub(crate) const STORY: Bundled = bundle!("story-gpu-and-cpus-count.toml");

/// Classifies an `[outcomes]` source string: a source that mentions a run on a real
/// kernel is `kernel`, else one that says `derived` is `derived`, else one that names
/// a spec section (`spec N`) is `spec`. A spec source's citation drops the leading
/// `spec `; the others keep the whole string.
pub(crate) fn classify(source: &str) -> Result<Source> {
    let s = source.to_ascii_lowercase();
    // "derived from ... (seen on 6.12)": an observation on another design than the
    // era's, carried over by argument, is the model's prediction for this era.
    if s.trim_start().starts_with("derived") {
        return Ok(Source::derived(source));
    }
    let kernel = s.contains("kernel:")
        || (s.contains("real") && s.contains("kernel"))
        || ["reproduced on", "observed on", "matched on", "seen on"]
            .iter()
            .any(|w| s.contains(w));
    if kernel {
        return Ok(Source::kernel(source));
    }
    if s.contains("derived") {
        return Ok(Source::derived(source));
    }
    let names_section = s
        .match_indices("spec ")
        .any(|(i, w)| s[i + w.len()..].starts_with(|c: char| c.is_ascii_digit()));
    if names_section {
        let cite = source
            .strip_prefix("spec ")
            .or_else(|| source.strip_prefix("Spec "))
            .unwrap_or(source);
        return Ok(Source::spec(cite));
    }
    bail!("source `{source}` names no kernel run, spec section or derivation")
}

/// A bundled file, run under one profile.
pub(crate) struct Ran {
    pub(crate) file: &'static str,
    pub(crate) sc: Scenario,
    pub(crate) report: RunReport,
    /// The era's name (the profile's name: a preset with switches keeps it).
    pub(crate) era: &'static str,
}

/// Parses and runs `b` under `profile`; a step that does not return within
/// `step_timeout` ends the run as a deadlock. `frames`, when given, replaces the
/// file's machine size (`svmkit demo --frames`).
pub(crate) fn run(
    b: &Bundled,
    profile: Profile,
    step_timeout: Duration,
    frames: Option<u64>,
) -> Result<Ran> {
    let mut sc = svmkit_scenario::parse(b.file, b.src)
        .map_err(|e| anyhow::anyhow!("{}", e.render()))
        .with_context(|| format!("bundled scenario {}", b.file))?;
    if let Some(n) = frames {
        // The bound the file format itself has (`frames`, docs/SCENARIOS.md).
        if !(16..=svmkit_scenario::parse::MAX_FRAMES).contains(&n) {
            bail!(
                "{}: a scenario's memory has 16 to 1048576 frames, --frames gives {n}",
                b.file
            );
        }
        sc.frames = n;
    }
    let opts = RunOptions {
        profile: Some(profile),
        step_timeout,
        ..RunOptions::default()
    };
    let report = svmkit_scenario::run(&sc, &opts)
        .map_err(|e| anyhow::anyhow!("{} could not be set up: {}", b.file, e.name()))?;
    Ok(Ran {
        file: b.file,
        sc,
        report,
        era: profile.name,
    })
}

/// `pass`, `deadlock`, `fail`, or `fail at ID` when the failure's place matters, or
/// `deadlock (WHY)` when the kind of deadlock matters.
fn outcome_text(outcome: RunOutcome, at: Option<&str>, why: Option<&str>) -> String {
    match (outcome, at, why) {
        (RunOutcome::Fail, Some(at), _) => format!("fail at {at}"),
        (RunOutcome::Deadlock, _, Some(why)) => format!("deadlock ({why})"),
        (o, _, _) => o.name().to_string(),
    }
}

/// How the documented self-deadlock reads in a verdict.
const SELF_DEADLOCK: &str = "self-deadlock";

/// What an expected step result looks like in the account (`= 41`, `EBUSY`, `ok`).
fn expected_result(e: &Outcome) -> String {
    match e {
        Outcome::Ok(Some(v)) => format!("= {v}"),
        Outcome::Ok(None) => "ok".into(),
        Outcome::Any => "any".into(),
        Outcome::Err(list) => list
            .iter()
            .map(|e| e.name())
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// The kind of the entry an account line shows (`present pfn 0x5 rw dirty`), as
/// `expect_pte` names kinds, at the detail `want` asks for: `present` for any present
/// entry when that is what is expected, `present-ro` for the zero page, and so on
/// (the engine's own matching).
fn kind_of(want: PteKind, after: &str) -> String {
    let mut words = after.split_whitespace();
    let first = words.next().unwrap_or("none");
    let rw = after.split_whitespace().any(|w| w == "rw");
    let exact = match first {
        "present" if after.contains("zero-page") => "zero-page",
        "present" if rw => "present-rw",
        "present" => "present-ro",
        "huge" => "huge-pmd",
        other => other,
    };
    let present = matches!(
        exact,
        "present-rw" | "present-ro" | "zero-page" | "huge-pmd"
    );
    match want {
        PteKind::Present if present => "present",
        PteKind::PresentWritable | PteKind::PresentReadOnly if present => {
            if rw {
                "present-rw"
            } else {
                "present-ro"
            }
        }
        _ => exact,
    }
    .to_string()
}

impl Ran {
    /// The file's documented outcome for this era.
    pub(crate) fn documented(&self) -> Result<&EraOutcome> {
        self.sc
            .expected_outcome(self.era)
            .with_context(|| format!("{} documents no outcome for {}", self.file, self.era))
    }

    /// Whether the file documents that this era passes.
    pub(crate) fn documented_pass(&self) -> Result<bool> {
        Ok(self.documented()?.outcome == RunOutcome::Pass)
    }

    /// The documented outcome's source, classified.
    pub(crate) fn source(&self) -> Result<Source> {
        classify(&self.documented()?.source)
    }

    /// How the run ended, in the documented outcome's terms: where it failed if the
    /// file names the step; if the file documents a self-deadlock, what the hung-task
    /// report shows (the self-deadlock, or who waits for what instead).
    pub(crate) fn observed(&self) -> Result<String> {
        let want = self.documented()?;
        let at = want.fails_at.as_ref().and(self.report.first_failure());
        let why = want.self_deadlock.then(|| match &self.report.hang {
            Some(h) if h.self_deadlock => SELF_DEADLOCK.to_string(),
            Some(h) => h.summary(),
            None => "no step hung".to_string(),
        });
        Ok(outcome_text(
            self.report.outcome(),
            at.as_deref(),
            why.as_deref(),
        ))
    }

    /// The verdict that the run ends as the file documents for the era, and the
    /// figures `scenario`, `outcome` and (on a deadlock) `deadlock`.
    pub(crate) fn outcome_verdict(&self, out: &mut PartOut, what: &str) -> Result<()> {
        let want = self.documented()?;
        let observed = self.observed()?;
        out.fact("scenario", self.file);
        out.fact("outcome", observed.as_str());
        if let Some(d) = &self.report.deadlock {
            out.fact("deadlock", d.as_str());
        }
        if let Some(h) = &self.report.hang {
            if let Some(t) = &h.task {
                out.fact("deadlocked_task", t.as_str());
            }
            if let Some(f) = h.folio {
                out.fact("deadlocked_on_folio", format!("{f:#x}"));
            }
        }
        out.verdict(
            what,
            outcome_text(
                want.outcome,
                want.fails_at.as_deref(),
                want.self_deadlock.then_some(SELF_DEADLOCK),
            ),
            observed,
            self.source()?,
        );
        Ok(())
    }

    /// Step `n` (0-based, `repeat` expanded) of thread `thread` as the file says it,
    /// and its record if it ran (or hung).
    pub(crate) fn step(&self, thread: &str, n: usize) -> Result<(&Step, Option<&StepRecord>)> {
        let t = self
            .sc
            .threads
            .iter()
            .find(|t| t.name == thread)
            .with_context(|| format!("{} has no thread {thread}", self.file))?;
        let step = t
            .steps
            .get(n)
            .with_context(|| format!("{}: thread {thread} has no step {n}", self.file))?;
        let rec = self
            .report
            .steps
            .iter()
            .filter(|s| s.thread == thread && !s.waited)
            .nth(n);
        Ok((step, rec))
    }

    /// The step's expected result under this era, and what it returned (`never ran`
    /// when it did not; a success stands as `ok` when the file expects no value).
    pub(crate) fn result(&self, thread: &str, n: usize) -> Result<(String, String)> {
        let (step, rec) = self.step(thread, n)?;
        let want = step.expect.get(self.era).unwrap_or(&Outcome::Ok(None));
        let got = match rec {
            None => "never ran".to_string(),
            Some(r) if matches!(want, Outcome::Ok(None)) && r.result.starts_with("= ") => {
                "ok".to_string()
            }
            Some(r) => r.result.clone(),
        };
        Ok((expected_result(want), got))
    }

    /// The step's expected PTE kind under this era, and the kind of the entry after
    /// it (the first word of the account's PTE).
    pub(crate) fn pte_kind(&self, thread: &str, n: usize) -> Result<(String, String)> {
        let (step, rec) = self.step(thread, n)?;
        let want = step
            .expect_pte
            .as_ref()
            .and_then(|p| p.kind.get(self.era))
            .with_context(|| format!("{}: step {n} of {thread} expects no PTE", self.file))?;
        let got = rec.and_then(|r| r.pte.as_ref()).map_or_else(
            || "never ran".to_string(),
            |(_, after)| kind_of(*want, after),
        );
        Ok((want.name().to_string(), got))
    }

    /// The step's `expect_faults` under this era, and the faults it took.
    pub(crate) fn faults(&self, thread: &str, n: usize) -> Result<(u64, Option<u64>)> {
        let (step, rec) = self.step(thread, n)?;
        let want = step
            .expect_faults
            .as_ref()
            .and_then(|f| f.get(self.era))
            .with_context(|| format!("{}: step {n} of {thread} expects no faults", self.file))?;
        Ok((*want, rec.and_then(|r| r.faults)))
    }

    /// Every step the file labels with an `id`: (thread, index in the thread, id).
    pub(crate) fn labelled(&self) -> Vec<(&str, usize, &str)> {
        self.sc
            .threads
            .iter()
            .flat_map(|t| {
                t.steps
                    .iter()
                    .enumerate()
                    .filter_map(|(n, s)| s.id.as_deref().map(|id| (t.name.as_str(), n, id)))
            })
            .collect()
    }

    /// A verdict for each labelled step's expectations under this era, each against
    /// what the step did: its result, the kind of PTE it left (if the file expects
    /// one) and the faults it took (if the file counts them). The expectations are the
    /// file's, the source its documented outcome's.
    pub(crate) fn labelled_verdicts(&self, out: &mut PartOut) -> Result<()> {
        let file_src = self.source()?;
        for (thread, n, id) in self.labelled() {
            let (step, rec) = self.step(thread, n)?;
            // A step's own `source` wins over the file's.
            let src = match step.source.as_ref().and_then(|s| s.get(self.era)) {
                Some(s) => classify(s)?,
                None => file_src.clone(),
            };
            let (e, o) = self.result(thread, n)?;
            out.verdict(&format!("{id}: result"), e, o, src.clone());
            if step
                .expect_pte
                .as_ref()
                .is_some_and(|p| p.at.is_none() && p.kind.get(self.era).is_some())
            {
                let (e, o) = self.pte_kind(thread, n)?;
                out.verdict(&format!("{id}: PTE after"), e, o, src.clone());
            }
            if step
                .expect_faults
                .as_ref()
                .is_some_and(|f| f.get(self.era).is_some())
            {
                let (e, o) = self.faults(thread, n)?;
                out.verdict(
                    &format!("{id}: faults"),
                    e,
                    o.map_or_else(|| "none".to_string(), |n| n.to_string()),
                    src.clone(),
                );
            }
            for (what, e) in [
                ("refcount", &step.expect_refcount),
                ("mapcount", &step.expect_mapcount),
            ] {
                let Some(want) = e
                    .as_ref()
                    .filter(|e| e.at.is_none())
                    .and_then(|e| e.value.get(self.era))
                else {
                    continue;
                };
                let got = match rec.map(|r| r.folio) {
                    None => "never ran".to_string(),
                    Some(None) => "no folio".to_string(),
                    Some(Some(c)) if what == "refcount" => c.refcount.to_string(),
                    Some(Some(c)) => c.mapcount.to_string(),
                };
                out.verdict(&format!("{id}: {what}"), want, got, src.clone());
            }
        }
        Ok(())
    }

    /// The end values the file expects (`[expect] values`), each with what the run
    /// read.
    pub(crate) fn end_values(&self) -> Vec<(String, u64, String)> {
        let reads = self
            .report
            .end
            .iter()
            .filter(|c| c.what.contains(" reads "));
        self.sc
            .expect
            .values
            .iter()
            .zip(reads)
            .map(|((_, at, want, _), c)| {
                let got = c.detail.strip_prefix("read ").unwrap_or(&c.detail);
                (at.text.clone(), *want, got.to_string())
            })
            .collect()
    }

    /// One account line of a step: what ran, what it returned, and its note.
    pub(crate) fn line(&self, thread: &str, n: usize) -> Result<String> {
        let (_, rec) = self.step(thread, n)?;
        Ok(match rec {
            None => format!("{thread}: step {} never ran", n + 1),
            Some(r) => format!(
                "{}: {} -> {}{}",
                r.thread,
                r.step,
                r.result,
                r.note
                    .as_ref()
                    .map_or_else(String::new, |n| format!("  # {n}"))
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn classify_sorts_sources_into_kernel_spec_and_derived() {
        for (source, kind, cite) in [
            ("spec 7", "spec", "7"),
            (
                "spec 4.6, 8 item 8 (EAGAIN every attempt)",
                "spec",
                "4.6, 8 item 8 (EAGAIN every attempt)",
            ),
            (
                "spec 7; kernel: Debian 6.12.117 under QEMU matched (spec 10.3)",
                "kernel",
                "spec 7; kernel: Debian 6.12.117 under QEMU matched (spec 10.3)",
            ),
            (
                "spec 10.3 (seen on a real 6.12 kernel), 9.14, 6.4",
                "kernel",
                "spec 10.3 (seen on a real 6.12 kernel), 9.14, 6.4",
            ),
            (
                "derived from spec 10.3 (seen on a real 6.12 kernel, the 2021 design)",
                "derived",
                "derived from spec 10.3 (seen on a real 6.12 kernel, the 2021 design)",
            ),
            (
                "spec 6.3 (the filter), 10 (livelock reproduced on 6.12)",
                "kernel",
                "spec 6.3 (the filter), 10 (livelock reproduced on 6.12)",
            ),
            (
                "spec 8 item 22, 9.6 (derived from code)",
                "derived",
                "spec 8 item 22, 9.6 (derived from code)",
            ),
            (
                "derived (whole-step turns)",
                "derived",
                "derived (whole-step turns)",
            ),
        ] {
            let s = classify(source).unwrap();
            assert_eq!((s.kind(), s.cite()), (kind, cite), "{source}");
        }
        for bad in ["", "the model says so", "spec", "spectrum 4"] {
            assert!(classify(bad).is_err(), "{bad}");
        }
    }

    /// A documented self-deadlock matches only a hung-task report that shows one: a
    /// run that hangs with another task holding the lock reads as that, a mismatch.
    #[test]
    fn a_deadlock_of_another_kind_is_not_the_documented_self_deadlock() {
        use svmkit_scenario::RunReport;
        use svmkit_scenario::engine::Hang;
        let b = &super::OWNER_FILTER;
        let sc = svmkit_scenario::parse(b.file, b.src).unwrap();
        let hang = |self_deadlock: bool, holder: &str| Hang {
            lines: Vec::new(),
            task: Some("blind".into()),
            folio: Some(5),
            holder: Some(holder.into()),
            self_deadlock,
            held_since: None,
        };
        let ran = |h: Hang| super::Ran {
            file: b.file,
            sc: sc.clone(),
            report: RunReport {
                deadlock: Some("thread blind sleeps".into()),
                hang: Some(h),
                passed: false,
                ..RunReport::new("t", "linux-5.14")
            },
            era: "linux-5.14",
        };
        let want = "deadlock (self-deadlock)";
        let mut out = crate::report::PartOut::default();
        let same = ran(hang(true, "blind"));
        assert_eq!(same.observed().unwrap(), want);
        same.outcome_verdict(&mut out, "x").unwrap();
        let other = ran(hang(false, "gpu"));
        let got = other.observed().unwrap();
        assert_ne!(got, want);
        assert!(got.contains("held by task gpu"), "{got}");
        other.outcome_verdict(&mut out, "y").unwrap();
        let json = crate::report::Report {
            parts: vec![crate::report::Part { name: "t", out }],
            ..Default::default()
        }
        .to_json();
        assert_eq!(json["mismatches"], 1, "{json}");
    }

    /// Every source string of every example classifies (the demo may bundle any).
    #[test]
    fn every_example_source_classifies() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            let sc = svmkit_scenario::parse(&path.display().to_string(), &src).unwrap();
            for o in sc.outcomes.iter().chain(&sc.explore.outcomes) {
                classify(&o.source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n > 20, "{n} sources");
    }
}
