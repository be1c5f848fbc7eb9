//! What a demo run found: parts, each with its narrated lines, its figures and its
//! verdicts (what Linux does against what the model did, and where that expectation
//! comes from), printed as text or JSON.

use std::fmt::Display;
use std::io::{self, Write};

use serde_json::{Map, Value, json};

/// Where a verdict's expectation comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Observed on a real kernel; the citation names it (e.g. "6.12.117 via dmirror").
    Kernel(String),
    /// Stated by the spec (../shared/spec/device-exclusive.md); the citation is the
    /// section (e.g. "4.7").
    Spec(String),
    /// The model's own prediction, not observed on a kernel yet; the citation says
    /// what it rests on.
    Derived(String),
}

impl Source {
    /// Every kind, in the order the summary counts them.
    pub(crate) const KINDS: [&'static str; 3] = ["kernel", "spec", "derived"];

    pub(crate) fn kernel(cite: impl Into<String>) -> Source {
        Source::Kernel(cite.into())
    }

    pub(crate) fn spec(cite: impl Into<String>) -> Source {
        Source::Spec(cite.into())
    }

    pub(crate) fn derived(cite: impl Into<String>) -> Source {
        Source::Derived(cite.into())
    }

    /// "kernel", "spec" or "derived".
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Source::Kernel(_) => "kernel",
            Source::Spec(_) => "spec",
            Source::Derived(_) => "derived",
        }
    }

    /// The citation.
    pub(crate) fn cite(&self) -> &str {
        match self {
            Source::Kernel(c) | Source::Spec(c) | Source::Derived(c) => c,
        }
    }
}

impl Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // "derived (the model ...)" says its kind already.
        if self.cite().to_ascii_lowercase().starts_with(self.kind()) {
            return f.write_str(self.cite());
        }
        write!(f, "{} {}", self.kind(), self.cite())
    }
}

/// One check of a part: the behaviour Linux has, what the model showed, and where
/// the expectation comes from.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub(crate) what: String,
    pub(crate) expected: String,
    pub(crate) observed: String,
    pub(crate) source: Source,
}

impl Verdict {
    pub(crate) fn ok(&self) -> bool {
        self.expected == self.observed
    }
}

/// The output of one part while it runs: narrated text (it is a `Write`), figures
/// and verdicts.
#[derive(Debug, Default)]
pub(crate) struct PartOut {
    text: Vec<u8>,
    facts: Map<String, Value>,
    verdicts: Vec<Verdict>,
}

impl PartOut {
    /// Records a figure for the JSON output.
    pub(crate) fn fact(&mut self, key: &str, value: impl Into<Value>) {
        self.facts.insert(key.to_string(), value.into());
    }

    /// Records a verdict: `expected` is what Linux does (a fact of the era, never
    /// computed from the profile switches the model reads), `observed` what the model
    /// did, `source` where the expectation comes from.
    pub(crate) fn verdict(
        &mut self,
        what: &str,
        expected: impl Display,
        observed: impl Display,
        source: Source,
    ) {
        self.verdicts.push(Verdict {
            what: what.to_string(),
            expected: expected.to_string(),
            observed: observed.to_string(),
            source,
        });
    }
}

impl Write for PartOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A finished part.
#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) name: &'static str,
    pub(crate) out: PartOut,
}

/// A whole run.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) profile: String,
    pub(crate) parts: Vec<Part>,
    /// Why the run stopped early (a part failed): the parts before it are kept.
    pub(crate) error: Option<String>,
}

impl Report {
    /// Whether the run completed and every verdict of every part matched.
    pub(crate) fn ok(&self) -> bool {
        self.error.is_none()
            && self
                .parts
                .iter()
                .all(|p| p.out.verdicts.iter().all(Verdict::ok))
    }

    /// The narrated text, each part followed by its verdicts, then a summary line.
    pub(crate) fn write_text(&self, w: &mut dyn Write) -> io::Result<()> {
        for part in &self.parts {
            w.write_all(&part.out.text)?;
            for v in &part.out.verdicts {
                let mark = if v.ok() { "ok" } else { "MISMATCH" };
                writeln!(
                    w,
                    "   verdict [{mark}] {}: Linux {}, model {} (source: {})",
                    v.what, v.expected, v.observed, v.source
                )?;
            }
            writeln!(w)?;
        }
        self.write_side_by_side(w)?;
        if let Some(e) = &self.error {
            writeln!(w, "stopped early: {e}")?;
        }
        let (n, bad) = self.counts();
        let kinds = self.kind_counts();
        writeln!(
            w,
            "{n} verdicts: {}; {bad} mismatches ({} profile): {}",
            Source::KINDS
                .iter()
                .zip(kinds)
                .map(|(k, c)| format!("{c} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.profile,
            if self.ok() { "PASS" } else { "FAIL" }
        )
    }

    /// How many verdicts have each source kind, in [`Source::KINDS`] order.
    fn kind_counts(&self) -> [usize; 3] {
        let mut counts = [0; 3];
        for v in self.parts.iter().flat_map(|p| &p.out.verdicts) {
            if let Some(i) = Source::KINDS.iter().position(|k| *k == v.source.kind()) {
                counts[i] += 1;
            }
        }
        counts
    }

    /// With more than one profile: one row per part, one column per profile.
    fn write_side_by_side(&self, w: &mut dyn Write) -> io::Result<()> {
        let profile_of = |p: &Part| {
            p.out
                .facts
                .get("profile")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let mut profiles: Vec<String> = Vec::new();
        for p in &self.parts {
            let name = profile_of(p);
            if !profiles.contains(&name) {
                profiles.push(name);
            }
        }
        if profiles.len() < 2 {
            return Ok(());
        }
        let mut names: Vec<&str> = Vec::new();
        for p in &self.parts {
            if !names.contains(&p.name) {
                names.push(p.name);
            }
        }
        write!(w, "{:<14}", "part")?;
        for pr in &profiles {
            write!(w, " {pr:<26}")?;
        }
        writeln!(w)?;
        for name in names {
            write!(w, "{name:<14}")?;
            for pr in &profiles {
                let cell = match self
                    .parts
                    .iter()
                    .find(|p| p.name == name && profile_of(p) == *pr)
                {
                    None => "-".to_string(),
                    Some(p) if p.out.verdicts.is_empty() => "skipped".to_string(),
                    Some(p) => {
                        let bad = p.out.verdicts.iter().filter(|v| !v.ok()).count();
                        if bad == 0 {
                            format!("{} verdicts match", p.out.verdicts.len())
                        } else {
                            format!("{bad} MISMATCH")
                        }
                    }
                };
                write!(w, " {cell:<26}")?;
            }
            writeln!(w)?;
        }
        writeln!(w)
    }

    fn counts(&self) -> (usize, usize) {
        let all = self.parts.iter().flat_map(|p| &p.out.verdicts);
        let n = all.clone().count();
        (n, all.filter(|v| !v.ok()).count())
    }

    /// The same as JSON: every part's lines, figures and verdicts.
    pub(crate) fn to_json(&self) -> Value {
        let parts: Vec<Value> = self
            .parts
            .iter()
            .map(|p| {
                let text = String::from_utf8_lossy(&p.out.text);
                json!({
                    "name": p.name,
                    "lines": text.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(),
                    "facts": p.out.facts,
                    "verdicts": p.out.verdicts.iter().map(|v| json!({
                        "what": v.what,
                        "linux": v.expected,
                        "model": v.observed,
                        "ok": v.ok(),
                        "source": {"kind": v.source.kind(), "cite": v.source.cite()},
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let (n, bad) = self.counts();
        let sources: Map<String, Value> = Source::KINDS
            .iter()
            .zip(self.kind_counts())
            .map(|(k, c)| (k.to_string(), json!(c)))
            .collect();
        json!({
            "profile": self.profile,
            "parts": parts,
            "verdicts": n,
            "sources": sources,
            "mismatches": bad,
            "ok": self.ok(),
            "error": self.error,
        })
    }
}
