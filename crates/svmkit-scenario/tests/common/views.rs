//! Checks of the graphical trace views as a consumer reads them: the Chrome
//! trace-event JSON by the rules of the format (what ui.perfetto.dev and
//! chrome://tracing need), the HTML timeline by its embedded data and its being one
//! self-contained file. Shared with svmkit-cli's tests (`#[path]`).
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;

/// What a valid trace-event document holds.
#[derive(Debug, Default)]
pub struct ChromeSummary {
    /// Thread names by tid.
    pub threads: BTreeMap<u64, String>,
    /// Complete B/E pairs.
    pub slices: usize,
    /// X slices.
    pub complete: usize,
    /// Instants.
    pub instants: usize,
    /// Paired flows.
    pub flows: usize,
    /// Counter samples, by counter name.
    pub counters: BTreeMap<String, usize>,
    /// Names of the B slices.
    pub slice_names: Vec<String>,
}

fn num(e: &Value, k: &str) -> Result<f64, String> {
    e[k].as_f64()
        .ok_or_else(|| format!("`{k}` is not a number in {e}"))
}

/// Validates a Chrome trace-event document: required fields per phase, B/E balanced
/// and nested per track, flow ids paired (one `s`, one `f`, in time order, same name
/// and category), counters numeric, every track named.
pub fn validate_chrome(text: &str) -> Result<ChromeSummary, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = doc["traceEvents"]
        .as_array()
        .ok_or("no traceEvents array")?;
    let mut s = ChromeSummary::default();
    let mut stacks: BTreeMap<(u64, u64), Vec<(f64, String)>> = BTreeMap::new();
    let mut flows: BTreeMap<String, (Vec<&Value>, Vec<&Value>)> = BTreeMap::new();
    let mut used_tids = BTreeMap::new();
    for e in list {
        let ph = e["ph"].as_str().ok_or_else(|| format!("no ph: {e}"))?;
        let pid = e["pid"].as_u64().ok_or_else(|| format!("no pid: {e}"))?;
        let tid = e["tid"].as_u64().ok_or_else(|| format!("no tid: {e}"))?;
        if ph != "E" && e["name"].as_str().is_none() {
            return Err(format!("no name: {e}"));
        }
        if ph != "M" {
            let ts = num(e, "ts")?;
            if ts < 0.0 {
                return Err(format!("negative ts: {e}"));
            }
        }
        match ph {
            "M" => {
                let name = e["name"].as_str().unwrap_or_default();
                match name {
                    "thread_name" | "process_name" => {
                        let n = e["args"]["name"]
                            .as_str()
                            .ok_or_else(|| format!("metadata without args.name: {e}"))?;
                        if name == "thread_name" {
                            s.threads.insert(tid, n.to_string());
                        }
                    }
                    "thread_sort_index" | "process_sort_index" => {
                        num(&e["args"], "sort_index")?;
                    }
                    other => return Err(format!("unknown metadata {other}")),
                }
            }
            "B" => {
                used_tids.insert(tid, ());
                s.slice_names
                    .push(e["name"].as_str().unwrap_or_default().to_string());
                stacks
                    .entry((pid, tid))
                    .or_default()
                    .push((num(e, "ts")?, e["name"].as_str().unwrap_or_default().into()));
            }
            "E" => {
                let (b, name) = stacks
                    .entry((pid, tid))
                    .or_default()
                    .pop()
                    .ok_or_else(|| format!("E without B on tid {tid}: {e}"))?;
                if num(e, "ts")? < b {
                    return Err(format!("E before its B ({name}): {e}"));
                }
                if let Some(n) = e["name"].as_str()
                    && n != name
                {
                    return Err(format!("E `{n}` closes B `{name}`"));
                }
                s.slices += 1;
            }
            "X" => {
                used_tids.insert(tid, ());
                if num(e, "dur")? < 0.0 {
                    return Err(format!("negative dur: {e}"));
                }
                s.complete += 1;
            }
            "i" | "I" => {
                if let Some(sc) = e.get("s") {
                    let sc = sc.as_str().unwrap_or_default();
                    if !["t", "p", "g"].contains(&sc) {
                        return Err(format!("instant scope `{sc}`: {e}"));
                    }
                    if sc == "t" {
                        used_tids.insert(tid, ());
                    }
                }
                s.instants += 1;
            }
            "s" | "f" => {
                used_tids.insert(tid, ());
                let id = match &e["id"] {
                    Value::Number(n) => n.to_string(),
                    Value::String(x) => x.clone(),
                    _ => return Err(format!("flow without id: {e}")),
                };
                e["cat"]
                    .as_str()
                    .ok_or_else(|| format!("flow without cat: {e}"))?;
                let slot = flows.entry(id).or_default();
                if ph == "s" {
                    slot.0.push(e);
                } else {
                    slot.1.push(e);
                }
            }
            "C" => {
                let args = e["args"]
                    .as_object()
                    .ok_or_else(|| format!("counter without args: {e}"))?;
                if args.is_empty() || !args.values().all(Value::is_number) {
                    return Err(format!("counter args not numbers: {e}"));
                }
                *s.counters
                    .entry(e["name"].as_str().unwrap_or_default().to_string())
                    .or_default() += 1;
            }
            other => return Err(format!("unknown phase {other}")),
        }
    }
    for ((_, tid), st) in &stacks {
        if let Some((_, name)) = st.last() {
            return Err(format!("B `{name}` on tid {tid} never ends"));
        }
    }
    for (id, (starts, ends)) in &flows {
        if starts.len() != 1 || ends.len() != 1 {
            return Err(format!(
                "flow id {id}: {} start(s), {} end(s)",
                starts.len(),
                ends.len()
            ));
        }
        let (a, b) = (starts[0], ends[0]);
        if a["name"] != b["name"] || a["cat"] != b["cat"] {
            return Err(format!("flow id {id}: {a} and {b} differ"));
        }
        if num(b, "ts")? < num(a, "ts")? {
            return Err(format!("flow id {id} ends before it starts"));
        }
        s.flows += 1;
    }
    for tid in used_tids.keys() {
        if !s.threads.contains_key(tid) {
            return Err(format!("tid {tid} has no thread_name"));
        }
    }
    Ok(s)
}

/// The data an HTML timeline embeds, checked to be one self-contained file.
pub fn html_data(html: &str) -> Result<Value, String> {
    for banned in ["<script src", "<link", "@import", "url(", "<iframe", "<img"] {
        if html.contains(banned) {
            return Err(format!("the page loads something: `{banned}`"));
        }
    }
    let open = "<script type=\"application/json\" id=\"trace-data\">";
    let start = html.find(open).ok_or("no embedded data")? + open.len();
    let len = html[start..].find("</script>").ok_or("data not closed")?;
    let data: Value =
        serde_json::from_str(&html[start..start + len]).map_err(|e| format!("data: {e}"))?;
    let lanes = data["lanes"].as_array().ok_or("no lanes")?;
    let t_end = data["t_end"].as_u64().ok_or("no t_end")?;
    let items = data["items"].as_array().ok_or("no items")?;
    for it in items {
        let lane = it[2].as_u64().ok_or("item lane")? as usize;
        let row = it[3].as_u64().ok_or("item row")?;
        let ln = lanes
            .get(lane)
            .ok_or_else(|| format!("item {it} on no lane"))?;
        if row >= ln["rows"].as_u64().unwrap_or(0) {
            return Err(format!("item {it} below its lane's rows"));
        }
        if let Some(end) = it[1].as_u64()
            && end < it[0].as_u64().unwrap_or(0)
        {
            return Err(format!("item {it} ends before it begins"));
        }
    }
    for b in data["bands"].as_array().ok_or("no bands")? {
        let mut at = 0;
        for seg in b["segs"].as_array().ok_or("band without segs")? {
            let (t0, t1) = (
                seg[0].as_u64().unwrap_or(u64::MAX),
                seg[1].as_u64().unwrap_or(0),
            );
            if t0 != at || t1 <= t0 {
                return Err(format!("band {}: segment {seg} after t={at}", b["label"]));
            }
            at = t1;
        }
        if at != t_end {
            return Err(format!("band {} ends at {at}, not {t_end}", b["label"]));
        }
    }
    for f in data["flows"].as_array().ok_or("no flows")? {
        let (a, b) = (f["from"].as_u64(), f["to"].as_u64());
        let (Some(a), Some(b)) = (a, b) else {
            return Err(format!("flow {f}"));
        };
        if a as usize >= items.len() || b as usize >= items.len() || a > b {
            return Err(format!("flow {f} out of order or range"));
        }
    }
    Ok(data)
}
