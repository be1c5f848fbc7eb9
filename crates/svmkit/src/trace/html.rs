//! The HTML timeline view: one self-contained file (CSS, script and data inline, no
//! network) that a browser opens as it is.
//!
//! * A lane per track of the record (scenario threads, `setup`, `end`) with its
//!   operations as nested bars and its point events as ticks, then a lane per device
//!   (its entry changes and its notifier callbacks, with a line from the notifier
//!   range that called each).
//! * A band per page (per PTE, and per PMD that was huge): its ownership over time,
//!   derived from the events ([`Timeline::of`]): `cpu` (CPU-present), `excl`
//!   (device-exclusive), `atomic` (device-exclusive and mapped atomically by a device),
//!   `swap`, `migration`, `none`, and for a PMD `huge` / `table`.
//! * Hovering shows an event's line of the text view, its time, track and result.
//! * For a failing schedule, the violation is a red line at the end of the step it
//!   names, and the steps that led to it are listed and outlined in order.
//!
//! The data is the [`Timeline`], embedded as JSON; the script draws it as SVG and, when
//! done, marks `<body data-rendered="ok">` with the counts it drew (`data-lanes`,
//! `data-bands`, `data-items`, `data-render-ms`); a script error sets `data-error`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::shape::Shape;
use super::{EntryView, Payload, Phase, TraceEvent, TraceInfo, text};

/// A lane of the timeline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Lane {
    /// The track's or device's name.
    pub name: String,
    /// `thread` (a track of the record) or `device`.
    pub kind: String,
    /// Rows (nesting depth + 1).
    pub rows: u32,
}

/// One bar (an operation) or tick (a point event) of a lane: serialised as an array
/// `[t, end, lane, row, kind, label, text, result]` to keep the file small (`label`
/// empty when it is the same as `text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Logical time of the event (an operation's begin).
    pub t: u64,
    /// An operation's end time (`None` for a point event).
    pub end: Option<u64>,
    /// Index into [`Timeline::lanes`].
    pub lane: usize,
    /// Nesting row in the lane.
    pub row: u32,
    /// The payload's kind (`driver_pass`, `pte`, ...).
    pub kind: &'static str,
    /// A short label (`driver pass 2`, `notifier CLEAR owner none`).
    pub label: String,
    /// The text view's line.
    pub text: String,
    /// An operation's result (empty for a point event).
    pub result: String,
}

impl Serialize for Item {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            self.t,
            self.end,
            self.lane,
            self.row,
            self.kind,
            if self.label == self.text {
                ""
            } else {
                &self.label
            },
            &self.text,
            &self.result,
        )
            .serialize(s)
    }
}

/// A stretch of a page's ownership: serialised as `[t0, t1, state, text]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// From (logical time).
    pub t0: u64,
    /// To (exclusive).
    pub t1: u64,
    /// `cpu`, `excl`, `atomic`, `swap`, `migration`, `none`, `huge`, `table`, `other`.
    pub state: &'static str,
    /// The entry and the device mappings, in words.
    pub text: String,
}

impl Serialize for Segment {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.t0, self.t1, self.state, &self.text).serialize(s)
    }
}

/// One page's ownership band.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Band {
    /// `mm1 0x7ffefffff000` (`... pmd` for a PMD).
    pub label: String,
    /// Its stretches, in time order, covering `[0, t_end)`.
    pub segs: Vec<Segment>,
}

/// A line from a notifier range to a subscriber callback, or from a fault to its
/// restore: indices into [`Timeline::items`].
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Flow {
    /// The notifier's or fault's item.
    pub from: usize,
    /// The callback's or restore's item.
    pub to: usize,
}

/// The violation of a failing schedule, placed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ViolationMark {
    /// The violation.
    pub text: String,
    /// The logical time it is marked at (the end of the step it names, else the end).
    pub t: u64,
    /// The steps up to it, in order (items).
    pub steps: Vec<usize>,
    /// The step it names (an item), if any.
    pub failing: Option<usize>,
}

/// Everything the page draws.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Timeline {
    /// The run (scenario and era).
    pub title: String,
    /// Events in the record.
    pub events: usize,
    /// One past the last logical time.
    pub t_end: u64,
    /// Thread lanes, then device lanes.
    pub lanes: Vec<Lane>,
    /// Bars and ticks.
    pub items: Vec<Item>,
    /// Ownership bands, per page.
    pub bands: Vec<Band>,
    /// Notifier → callback and fault → restore lines.
    pub flows: Vec<Flow>,
    /// A failing schedule's violation.
    pub violation: Option<ViolationMark>,
}

/// A short label for an item.
fn label_of(p: &Payload) -> String {
    match p {
        Payload::Notifier { event, owner, .. } => format!(
            "notifier {} owner {}",
            event.trim_start_matches("MMU_NOTIFY_"),
            owner.as_deref().unwrap_or("none")
        ),
        Payload::Subscriber {
            subscriber,
            callback,
            decision,
            ..
        } => format!("{subscriber} {callback}: {}", decision.name()),
        Payload::Restore { pfn, .. } => format!("restore pfn {pfn:#x}"),
        Payload::Pte { old, new, .. } | Payload::Pmd { old, new, .. } => {
            format!("{} -> {}", entry_short(old), entry_short(new))
        }
        Payload::ReadRetry { retry, .. } => {
            format!("read_retry: {}", if *retry { "retry" } else { "valid" })
        }
        Payload::ReadBegin { seq, .. } => format!("read_begin seq={seq}"),
        Payload::FolioLock { .. }
        | Payload::FolioUnlock { .. }
        | Payload::FolioWait { .. }
        | Payload::Refcount { .. }
        | Payload::Mapcount { .. }
        | Payload::KernelStep { .. }
        | Payload::DevEntry { .. } => text::describe(p),
        other => super::chrome::name_of(other),
    }
}

fn entry_short(e: &EntryView) -> String {
    match e.pfn() {
        Some(p) => format!("{}({p:#x})", e.kind()),
        None => e.kind().to_string(),
    }
}

/// A page's key: (mm, address, is a PMD).
type PageKey = (u64, u64, bool);

struct PageState {
    entry: EntryView,
    since: u64,
    state: &'static str,
    text: String,
    band: usize,
}

fn state_of(entry: &EntryView, pmd: bool, atomic: Option<&str>) -> &'static str {
    match entry.kind().as_str() {
        "present" => "cpu",
        "device_exclusive" if atomic.is_some() => "atomic",
        "device_exclusive" => "excl",
        "swap" => "swap",
        "migration" => "migration",
        "none" => "none",
        "huge" => "huge",
        "table" if pmd => "table",
        _ => "other",
    }
}

impl Timeline {
    /// The timeline of a record.
    pub fn of(events: &[TraceEvent], info: &TraceInfo) -> Timeline {
        let shape = Shape::of(events);
        let threads = shape.tracks.len();
        let mut lanes: Vec<Lane> = shape
            .tracks
            .iter()
            .map(|name| Lane {
                name: name.clone(),
                kind: "thread".into(),
                rows: 1,
            })
            .chain(shape.devices.iter().map(|d| Lane {
                name: d.clone(),
                kind: "device".into(),
                rows: 1,
            }))
            .collect();
        let mut items = Vec::with_capacity(events.len());
        let mut item_of = vec![usize::MAX; events.len()];
        let mut flows = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if e.phase == Phase::End {
                continue;
            }
            let (lane, row) = match shape.device_of(&e.payload) {
                Some(d) => (threads + d, 0),
                None => (shape.track_of[i], e.depth),
            };
            lanes[lane].rows = lanes[lane].rows.max(row + 1);
            let (end, result) = if e.phase == Phase::Begin {
                match shape.end[i] {
                    Some(j) => (
                        Some(events[j].t),
                        match &events[j].payload {
                            Payload::End { result, .. } => result.to_string(),
                            _ => String::new(),
                        },
                    ),
                    None => (Some(shape.t_end), "open when the trace ended".to_string()),
                }
            } else {
                (None, String::new())
            };
            item_of[i] = items.len();
            items.push(Item {
                t: e.t,
                end,
                lane,
                row,
                kind: e.payload.kind_name(),
                label: label_of(&e.payload),
                text: text::describe(&e.payload),
                result,
            });
            let from = match e.payload {
                Payload::Subscriber { .. } => shape.notifier_of(events, i),
                Payload::Restore { .. } => shape.fault_of(events, i),
                _ => None,
            };
            if let Some(f) = from.filter(|&f| item_of[f] != usize::MAX) {
                flows.push(Flow {
                    from: item_of[f],
                    to: item_of[i],
                });
            }
        }
        let bands = bands_of(events, shape.t_end);
        let violation = info.violation.as_ref().map(|v| {
            let at = shape.violation(events, v);
            ViolationMark {
                text: v.clone(),
                t: at.anchor,
                steps: at
                    .steps
                    .iter()
                    .filter(|&&s| events[s].t <= at.anchor)
                    .map(|&s| item_of[s])
                    .collect(),
                failing: at.failing.map(|s| item_of[s]),
            }
        });
        Timeline {
            title: info.title.clone(),
            events: events.len(),
            t_end: shape.t_end,
            lanes,
            items,
            bands,
            flows,
            violation,
        }
    }
}

/// The ownership bands: each page's entry over time (from its `pte` / `pmd` events,
/// the first one's `old` entry before it), device-exclusive entries that a device maps
/// atomically (a `dev_entry` with `a` in its rights for the same address and frame)
/// shown as `atomic`.
fn bands_of(events: &[TraceEvent], t_end: u64) -> Vec<Band> {
    let mut bands: Vec<Band> = Vec::new();
    let mut pages: BTreeMap<PageKey, PageState> = BTreeMap::new();
    // (device, addr) -> (pfn, rights)
    let mut dev: BTreeMap<(String, u64), (u64, String)> = BTreeMap::new();
    let atomic_of = |dev: &BTreeMap<(String, u64), (u64, String)>, addr: u64, pfn: Option<u64>| {
        dev.iter()
            .find(|((_, a), (p, r))| *a == addr && Some(*p) == pfn && r.contains('a'))
            .map(|((d, _), _)| d.clone())
    };
    let describe = |entry: &EntryView, atomic: &Option<String>| match atomic {
        Some(d) => format!("{entry}; mapped atomically by {d}"),
        None => entry.to_string(),
    };
    let close = |bands: &mut Vec<Band>, s: &PageState, t: u64| {
        if t > s.since {
            bands[s.band].segs.push(Segment {
                t0: s.since,
                t1: t,
                state: s.state,
                text: s.text.clone(),
            });
        }
    };
    for e in events {
        match &e.payload {
            Payload::Pte { mm, addr, old, new } | Payload::Pmd { mm, addr, old, new } => {
                let pmd = matches!(e.payload, Payload::Pmd { .. });
                // A PMD that never maps a THP is bookkeeping (tables come and go): no band.
                if pmd && !pages.contains_key(&(*mm, *addr, true)) && new.kind() != "huge" {
                    continue;
                }
                let key = (*mm, *addr, pmd);
                let s = pages.entry(key).or_insert_with(|| {
                    bands.push(Band {
                        label: format!("mm{mm} {addr:#x}{}", if pmd { " pmd" } else { "" }),
                        segs: Vec::new(),
                    });
                    let atomic = atomic_of(&dev, *addr, old.pfn());
                    PageState {
                        state: state_of(old, pmd, atomic.as_deref()),
                        text: describe(old, &atomic),
                        entry: *old,
                        since: 0,
                        band: bands.len() - 1,
                    }
                });
                close(&mut bands, s, e.t);
                let atomic = atomic_of(&dev, *addr, new.pfn());
                s.entry = *new;
                s.state = state_of(new, pmd, atomic.as_deref());
                s.text = describe(new, &atomic);
                s.since = e.t;
            }
            Payload::DevEntry {
                device,
                addr,
                change,
                pfn,
                rights,
            } => {
                if change == "unmap" || rights.is_empty() {
                    dev.remove(&(device.to_string(), *addr));
                } else {
                    dev.insert((device.to_string(), *addr), (*pfn, rights.to_string()));
                }
                for (key, s) in pages.iter_mut() {
                    if key.1 != *addr || key.2 {
                        continue;
                    }
                    let atomic = atomic_of(&dev, *addr, s.entry.pfn());
                    let state = state_of(&s.entry, false, atomic.as_deref());
                    if state != s.state {
                        close(&mut bands, s, e.t);
                        s.state = state;
                        s.text = describe(&s.entry, &atomic);
                        s.since = e.t;
                    }
                }
            }
            _ => {}
        }
    }
    for s in pages.values() {
        close(&mut bands, s, t_end);
    }
    bands
}

const CSS: &str = include_str!("timeline.css");
const SCRIPT: &str = include_str!("timeline.js");

/// HTML-escapes text for an element's content.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The record as one HTML file.
pub fn render(events: &[TraceEvent], info: &TraceInfo) -> String {
    let tl = Timeline::of(events, info);
    // `<` only occurs inside JSON strings, where \u003c means the same: the data can
    // then never close its script element.
    let data = serde_json::to_string(&tl)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c");
    let title = if tl.title.is_empty() {
        "svmkit trace".to_string()
    } else {
        format!("svmkit trace: {}", tl.title)
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{t}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n\
         <header><h1>{t}</h1><div id=\"summary\"></div><div id=\"controls\"></div></header>\n\
         <div id=\"violation\"></div>\n<div id=\"legend\"></div>\n\
         <div id=\"timeline\"><div id=\"names\"></div><div id=\"scroll\"></div></div>\n\
         <div id=\"tip\"></div>\n\
         <script type=\"application/json\" id=\"trace-data\">{data}</script>\n\
         <script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        t = escape(&title),
    )
}
