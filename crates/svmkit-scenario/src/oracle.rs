//! The model against a real kernel: a golden (what `oracle/run` printed for a scenario
//! file on a booted kernel, the `svmkit run --json` schema) compared with the model's
//! run of the same file, observable by observable.
//!
//! What is compared, for each step that ran, in order (both sides follow the schedule
//! of `svmkit run`): its thread, its `result` (`ok`, `= N`, an errno, a signal), the
//! kind of entry it left at its address (`pte`: the first word of the after text,
//! `none`, `present`, `device-exclusive`, `swap`, ...; a huge PMD counts as present,
//! as `/proc/self/pagemap` shows it) and, when there is an entry and the file has
//! cleared soft-dirty once (before that pagemap reports every entry of a new VMA as
//! soft-dirty, `VM_SOFTDIRTY`), its soft-dirty bit (pagemap bit 55), its `faults` and
//! `cpages` when both sides count them (an `atomic_add`'s `faults` are the passes of
//! the svm_atomic fault loop); the device entries at its address (`devices`, each
//! device's name and rights, no frame) when the golden says it observed them
//! (`oracle.devices_observed`: every device of the file is an svm_atomic one, which
//! the kernel module `/dev/svmkit_loop` can be asked); at the end, every value
//! the file expects (`value`) and every resident size (`rss`, smaps's `Rss:`). Frame numbers are not compared: the two memories differ.
//! A difference the file documents in `[oracle] divergences` is accepted with its
//! reason.

use serde::Serialize;
use serde_json::Value;

use crate::ast::Scenario;

/// One observable compared.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Observed {
    /// Where: `thread line N step TEXT` or `end`.
    pub at: String,
    /// The step's `id`, if it has one (what a divergence names).
    pub id: Option<String>,
    /// `result`, `pte`, `soft_dirty`, `faults`, `cpages`, `devices`, `value` or `rss`.
    pub field: String,
    /// The kernel's.
    pub kernel: String,
    /// The model's.
    pub model: String,
    /// The documented reason, when they differ on purpose.
    pub divergence: Option<String>,
}

impl Observed {
    /// Whether the two sides agree.
    pub fn agrees(&self) -> bool {
        self.kernel == self.model
    }
}

/// The comparison of one golden with the model's run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Comparison {
    /// Every observable compared.
    pub observed: Vec<Observed>,
    /// What could not be compared at all (a step one side ran and the other did not,
    /// a golden that is not a run report).
    pub problems: Vec<String>,
}

impl Comparison {
    /// Observables that agree.
    pub fn agreeing(&self) -> usize {
        self.observed.iter().filter(|o| o.agrees()).count()
    }

    /// Differences no divergence documents, and every problem: what fails a check.
    pub fn unexplained(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .observed
            .iter()
            .filter(|o| !o.agrees() && o.divergence.is_none())
            .map(|o| {
                format!(
                    "{} {}: kernel {}, model {}",
                    o.at, o.field, o.kernel, o.model
                )
            })
            .collect();
        out.extend(self.problems.iter().cloned());
        out
    }
}

/// The kind of entry an account's PTE text names, as pagemap can tell it.
fn entry_kind(text: &str) -> String {
    let first = text.split_whitespace().next().unwrap_or("none");
    match first {
        "huge" => "present".to_string(),
        other => other.to_string(),
    }
}

fn steps(report: &Value) -> Vec<&Value> {
    report["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| !s["waited"].as_bool().unwrap_or(false))
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".to_string(),
        other => other.to_string(),
    }
}

/// A step's device entries without frame numbers: `gpu: rwa, gpu-b: rwa`, or `none`.
fn device_entries(step: &Value) -> String {
    let v: Vec<String> = step["devices"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    let t = text(d);
                    t.split(" pfn ").next().unwrap_or(&t).to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// Compares the kernel's golden `kernel` (the JSON `oracle/run` wrote) for `kernel_name`
/// (`6.12`, `6.1`) with the model's report `model` (`svmkit run --json` of the same file
/// under the matching profile), accepting the divergences `sc` documents.
pub fn compare(sc: &Scenario, kernel_name: &str, kernel: &Value, model: &Value) -> Comparison {
    let mut c = Comparison::default();
    let (ks, ms) = (steps(kernel), steps(model));
    if kernel["steps"].as_array().is_none() {
        c.problems
            .push("the golden has no `steps`: not a run report".to_string());
        return c;
    }
    if ks.len() != ms.len() {
        c.problems.push(format!(
            "the kernel ran {} step(s), the model {}",
            ks.len(),
            ms.len()
        ));
    }
    let divergence = |id: &Option<String>, field: &str| -> Option<String> {
        let step = id.as_deref().unwrap_or("");
        sc.oracle
            .iter()
            .find(|d| {
                (d.kernel == kernel_name || d.kernel == "all") && d.step == step && d.field == field
            })
            .map(|d| d.reason.clone())
    };
    // Until a process's first clear_refs, pagemap reports every entry of a VMA as
    // soft-dirty (VM_SOFTDIRTY, set on new VMAs): the bit says something only after.
    let mut cleared = false;
    let devices_observed = kernel["oracle"]["devices_observed"]
        .as_bool()
        .unwrap_or(false);
    for (k, m) in ks.iter().zip(&ms) {
        cleared |= text(&m["step"]).starts_with("clear_refs");
        let at = format!(
            "{} line {} `{}`",
            text(&m["thread"]),
            m["line"],
            text(&m["step"])
        );
        if k["thread"] != m["thread"] || k["line"] != m["line"] {
            c.problems.push(format!(
                "{at}: the kernel ran thread {} line {} here",
                text(&k["thread"]),
                k["line"]
            ));
            continue;
        }
        let id = m["id"].as_str().map(str::to_string);
        let mut push = |field: &str, kv: String, mv: String| {
            let divergence = (kv != mv).then(|| divergence(&id, field)).flatten();
            c.observed.push(Observed {
                at: at.clone(),
                id: id.clone(),
                field: field.to_string(),
                kernel: kv,
                model: mv,
                divergence,
            });
        };
        push("result", text(&k["result"]), text(&m["result"]));
        if let (Some(kp), Some(mp)) = (k["pte"].as_array(), m["pte"].as_array())
            && let (Some(ka), Some(ma)) = (kp.get(1), mp.get(1))
        {
            let (ka, ma) = (text(ka), text(ma));
            push("pte", entry_kind(&ka), entry_kind(&ma));
            // pagemap has the soft-dirty bit of every entry that is not none.
            if cleared && entry_kind(&ka) != "none" {
                push(
                    "soft_dirty",
                    format!("soft-dirty {}", ka.contains("soft-dirty")),
                    format!("soft-dirty {}", ma.contains("soft-dirty")),
                );
            }
        }
        for field in ["faults", "cpages"] {
            if !k[field].is_null() && !m[field].is_null() {
                push(field, text(&k[field]), text(&m[field]));
            }
        }
        if devices_observed {
            push("devices", device_entries(k), device_entries(m));
        }
    }
    let ends = |r: &Value, marker: &str| -> Vec<(String, String)> {
        r["end"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| text(&e["what"]).contains(marker))
                    .map(|e| (text(&e["what"]), text(&e["detail"])))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (marker, field) in [(" reads ", "value"), (" Rss of the VMA at ", "rss")] {
        for (kr, mr) in ends(kernel, marker).iter().zip(ends(model, marker).iter()) {
            let divergence = (kr.1 != mr.1)
                .then(|| divergence(&Some("end".into()), field))
                .flatten();
            c.observed.push(Observed {
                at: format!("end {}", mr.0),
                id: None,
                field: field.into(),
                kernel: kr.1.clone(),
                model: mr.1.clone(),
                divergence,
            });
        }
    }
    c
}
