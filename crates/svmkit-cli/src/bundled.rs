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
use svmkit_scenario::ast::{EraOutcome, Outcome, Step};
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
/// `step_timeout` ends the run as a deadlock.
pub(crate) fn run(b: &Bundled, profile: Profile, step_timeout: Duration) -> Result<Ran> {
    let sc = svmkit_scenario::parse(b.file, b.src)
        .map_err(|e| anyhow::anyhow!("{}", e.render()))
        .with_context(|| format!("bundled scenario {}", b.file))?;
    let opts = RunOptions {
        profile: Some(profile),
        step_timeout,
        ..RunOptions::default()
    };
    let report = svmkit_scenario::run(&sc, b.src, &opts)
        .map_err(|e| anyhow::anyhow!("{} could not be set up: {}", b.file, e.name()))?;
    Ok(Ran {
        file: b.file,
        sc,
        report,
        era: profile.name,
    })
}

/// `pass`, `deadlock`, `fail`, or `fail at ID` when the failure's place matters.
fn outcome_text(outcome: RunOutcome, at: Option<&str>) -> String {
    match (outcome, at) {
        (RunOutcome::Fail, Some(at)) => format!("fail at {at}"),
        (o, _) => o.name().to_string(),
    }
}

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

    /// How the run ended, in the documented outcome's terms.
    pub(crate) fn observed(&self) -> Result<String> {
        let want = self.documented()?;
        let at = want.fails_at.as_ref().and(self.report.first_failure());
        Ok(outcome_text(self.report.outcome(), at.as_deref()))
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
        out.verdict(
            what,
            outcome_text(want.outcome, want.fails_at.as_deref()),
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
        let got = rec
            .and_then(|r| r.pte.as_ref())
            .and_then(|(_, after)| after.split_whitespace().next())
            .unwrap_or("never ran");
        Ok((want.name().to_string(), got.to_string()))
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
