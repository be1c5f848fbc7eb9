//! The Perfetto / Chrome trace-event view: a `{"traceEvents": [...]}` JSON document
//! that ui.perfetto.dev and chrome://tracing open as it is.
//!
//! * One process (`pid` 1) named after the run; a thread (`tid`) per track of the
//!   record (scenario threads, `setup`, `end`, OS threads or shuttle tasks), then one
//!   per device; each with `thread_name` and `thread_sort_index` metadata (`ph: "M"`).
//! * Operations are `B`/`E` slices on their track (an operation still open when the
//!   record ends, as in a hung run, is closed one tick after the last event, with
//!   result `open when the trace ended`).
//! * PTE and PMD changes, folio locks, sequences and the other point events are
//!   instants (`ph: "i"`, thread scope) on their track; device entry changes are
//!   instants on the device's track.
//! * Each subscriber callback is a short complete slice (`ph: "X"`) on its device's
//!   track (or, for a subscriber that is no device, inside the notifier on the
//!   calling track), with a flow arrow (`ph: "s"` → `ph: "f"`, `bp: "e"`, one id per
//!   pair) from the notifier range's begin. A page fault that restores a
//!   device-exclusive entry has a flow arrow to its restore.
//! * A counter track (`ph: "C"`) per interval subscriber, `seq NAME`: the sequence a
//!   `set_seq` installed, `read_begin` returned and `read_retry` found.
//! * The violation of a failing schedule is a global instant (`s: "g"`) at the end of
//!   the step it names.
//!
//! Time: the logical time `t`, 1 µs per event ([`US_PER_EVENT`]).

use serde_json::{Map, Value, json};

use super::shape::Shape;
use super::{Decision, Payload, Phase, TraceEvent, TraceInfo, text};

/// Microseconds of trace time per logical tick.
pub const US_PER_EVENT: f64 = 1.0;

/// The process id every track belongs to.
const PID: u64 = 1;

/// The name a slice or instant has in the viewer: the kind, with what tells
/// operations of one kind apart (the notifier event, the pass number, the step).
pub fn name_of(p: &Payload) -> String {
    match p {
        Payload::Step { step } => format!("step: {step}"),
        Payload::Notifier { event, .. } => {
            format!("notifier {}", event.trim_start_matches("MMU_NOTIFY_"))
        }
        Payload::DriverPass { pass, .. } => format!("driver pass {pass}"),
        Payload::PageFault { write, .. } => {
            format!("page fault ({})", if *write { "write" } else { "read" })
        }
        Payload::CpuAccess { access, .. } => format!("cpu {access}"),
        Payload::Pte { new, .. } => format!("pte -> {}", new.kind()),
        Payload::Pmd { new, .. } => format!("pmd -> {}", new.kind()),
        Payload::Subscriber {
            subscriber,
            decision,
            ..
        } => format!("{subscriber}: {}", decision.name()),
        Payload::DevEntry { change, rights, .. } => {
            if rights.is_empty() {
                format!("device {change}")
            } else {
                format!("device {change} {rights}")
            }
        }
        Payload::End { op, .. } => op.to_string(),
        other => other.kind_name().to_string(),
    }
}

/// The payload's fields as trace-event `args`, with the text view's line.
fn args_of(e: &TraceEvent) -> Value {
    let mut m = match serde_json::to_value(&e.payload) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    m.insert("t".into(), json!(e.t));
    m.insert("depth".into(), json!(e.depth));
    m.insert("text".into(), json!(text::describe(&e.payload)));
    Value::Object(m)
}

fn ts(t: u64) -> f64 {
    t as f64 * US_PER_EVENT
}

/// The record as trace-event JSON values, in the order they are written.
pub fn trace_events(events: &[TraceEvent], info: &TraceInfo) -> Vec<Value> {
    let shape = Shape::of(events);
    let threads = shape.tracks.len() as u64;
    let device_tid = |d: usize| threads + 1 + d as u64;
    let mut out = Vec::with_capacity(events.len() * 2 + 16);
    out.push(json!({
        "ph": "M", "name": "process_name", "pid": PID, "tid": 0,
        "args": {"name": if info.title.is_empty() { "svmkit".to_string() } else { format!("svmkit: {}", info.title) }},
    }));
    let names = shape
        .tracks
        .iter()
        .cloned()
        .chain(shape.devices.iter().map(|d| format!("device {d}")));
    for (i, name) in names.enumerate() {
        let tid = i as u64 + 1;
        out.push(json!({"ph": "M", "name": "thread_name", "pid": PID, "tid": tid, "args": {"name": name}}));
        out.push(json!({"ph": "M", "name": "thread_sort_index", "pid": PID, "tid": tid, "args": {"sort_index": tid}}));
    }
    let mut flow = 0u64;
    let mut open: Vec<(u64, usize)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let tid = shape.track_of[i] as u64 + 1;
        let t = ts(e.t);
        match e.phase {
            Phase::Begin => {
                out.push(json!({
                    "ph": "B", "name": name_of(&e.payload), "cat": e.payload.kind_name(),
                    "ts": t, "pid": PID, "tid": tid, "args": args_of(e),
                }));
                if shape.end[i].is_none() {
                    open.push((tid, i));
                }
                if matches!(e.payload, Payload::Restore { .. })
                    && let Some(f) = shape.fault_of(events, i)
                {
                    flow += 1;
                    let ftid = shape.track_of[f] as u64 + 1;
                    out.push(json!({"ph": "s", "id": flow, "name": "fault -> restore", "cat": "restore", "ts": ts(events[f].t), "pid": PID, "tid": ftid}));
                    out.push(json!({"ph": "f", "bp": "e", "id": flow, "name": "fault -> restore", "cat": "restore", "ts": t, "pid": PID, "tid": tid}));
                }
            }
            Phase::End => {
                let result = match &e.payload {
                    Payload::End { result, .. } => result.to_string(),
                    _ => String::new(),
                };
                // An end whose begin is not in the record (taken before it) closes
                // nothing here.
                let Some(b) = shape.begin[i] else {
                    continue;
                };
                let name = name_of(&events[b].payload);
                out.push(json!({
                    "ph": "E", "name": name, "ts": t, "pid": PID, "tid": tid,
                    "args": {"result": result, "t": e.t},
                }));
            }
            Phase::Instant => {
                let on = shape.device_of(&e.payload).map_or(tid, device_tid);
                if let Payload::Subscriber {
                    subscriber,
                    cur_seq,
                    decision,
                    ..
                } = &e.payload
                {
                    out.push(json!({
                        "ph": "X", "name": name_of(&e.payload), "cat": "subscriber",
                        "ts": t, "dur": US_PER_EVENT / 2.0, "pid": PID, "tid": on, "args": args_of(e),
                    }));
                    if let Some(n) = shape.notifier_of(events, i) {
                        flow += 1;
                        let ntid = shape.track_of[n] as u64 + 1;
                        out.push(json!({"ph": "s", "id": flow, "name": "notify", "cat": "notifier", "ts": ts(events[n].t), "pid": PID, "tid": ntid}));
                        out.push(json!({"ph": "f", "bp": "e", "id": flow, "name": "notify", "cat": "notifier", "ts": t, "pid": PID, "tid": on}));
                    }
                    if let (Decision::SetSeq, Some(s)) = (decision, cur_seq) {
                        out.push(counter(subscriber, t, *s));
                    }
                } else {
                    out.push(json!({
                        "ph": "i", "s": "t", "name": name_of(&e.payload), "cat": e.payload.kind_name(),
                        "ts": t, "pid": PID, "tid": on, "args": args_of(e),
                    }));
                    match &e.payload {
                        Payload::ReadBegin {
                            subscriber, seq, ..
                        } => out.push(counter(subscriber, t, *seq)),
                        Payload::ReadRetry {
                            subscriber, now, ..
                        } => out.push(counter(subscriber, t, *now)),
                        _ => {}
                    }
                }
            }
        }
    }
    // Operations a hung thread left open: closed after the last event, innermost first.
    for (tid, b) in open.into_iter().rev() {
        out.push(json!({
            "ph": "E", "name": name_of(&events[b].payload), "ts": ts(shape.t_end), "pid": PID, "tid": tid,
            "args": {"result": "open when the trace ended"},
        }));
    }
    if let Some(v) = &info.violation {
        let at = shape.violation(events, v);
        out.push(json!({
            "ph": "i", "s": "g", "name": format!("violation: {v}"), "cat": "violation",
            "ts": ts(at.anchor), "pid": PID, "tid": 0, "args": {"violation": v},
        }));
    }
    out
}

fn counter(subscriber: &str, t: f64, seq: u64) -> Value {
    json!({"ph": "C", "name": format!("seq {subscriber}"), "ts": t, "pid": PID, "tid": 0, "args": {"seq": seq}})
}

/// The record as a trace-event JSON document (one event per line, so that a large
/// trace stays readable and diffable).
pub fn render(events: &[TraceEvent], info: &TraceInfo) -> String {
    let list = trace_events(events, info);
    let mut out = String::from("{\"displayTimeUnit\":\"ms\",\"otherData\":");
    out.push_str(
        &json!({
            "generator": "svmkit",
            "title": info.title,
            "time": "logical: 1 us per event",
        })
        .to_string(),
    );
    out.push_str(",\"traceEvents\":[\n");
    for (i, v) in list.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        out.push_str(&v.to_string());
    }
    out.push_str("\n]}\n");
    out
}
