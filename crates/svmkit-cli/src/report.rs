//! What a demo run found: parts, each with its narrated lines, its figures and its
//! verdicts (what Linux does against what the model did), printed as text or JSON.

use std::fmt::Display;
use std::io::{self, Write};

use serde_json::{Map, Value, json};

/// One check of a part: the behaviour Linux has, and what the model showed.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub(crate) what: String,
    pub(crate) expected: String,
    pub(crate) observed: String,
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
    /// The narrated text so far.
    pub(crate) fn text_bytes(&self) -> Vec<u8> {
        self.text.clone()
    }

    /// Records a figure for the JSON output.
    pub(crate) fn fact(&mut self, key: &str, value: impl Into<Value>) {
        self.facts.insert(key.to_string(), value.into());
    }

    /// Records a verdict: `expected` is what Linux does, `observed` what the model did.
    pub(crate) fn verdict(&mut self, what: &str, expected: impl Display, observed: impl Display) {
        self.verdicts.push(Verdict {
            what: what.to_string(),
            expected: expected.to_string(),
            observed: observed.to_string(),
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
}

impl Report {
    /// Whether every verdict of every part matched.
    pub(crate) fn ok(&self) -> bool {
        self.parts
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
                    "   verdict [{mark}] {}: Linux {}, model {}",
                    v.what, v.expected, v.observed
                )?;
            }
            writeln!(w)?;
        }
        self.write_side_by_side(w)?;
        let (n, bad) = self.counts();
        writeln!(
            w,
            "{} verdict(s), {} mismatch(es) with Linux ({} profile): {}",
            n,
            bad,
            self.profile,
            if bad == 0 { "PASS" } else { "FAIL" }
        )
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
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let (n, bad) = self.counts();
        json!({
            "profile": self.profile,
            "parts": parts,
            "verdicts": n,
            "mismatches": bad,
            "ok": bad == 0,
        })
    }
}
