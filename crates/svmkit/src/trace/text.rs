//! The text view: one line per event, indented by nesting, for a kernel engineer to
//! read top to bottom.
//!
//! ```text
//! t=41    gpu-starves  driver pass 2 gpu 0x7f0000000000
//! t=42    gpu-starves    read_begin gpu seq=8
//! t=43    gpu-starves    make_device_exclusive mm1 [0x7f0000000000, 0x7f0000001000) owner gpu
//! t=52    gpu-starves      pte mm1 0x7f0000000000: device-exclusive(pfn 0x12) -> present(pfn 0x12) rw,dirty
//! ```
//!
//! Each line is `t=<time> <track> <two spaces per open operation><event>`; an
//! operation's end line says `end <op>: <result>` at the operation's own indentation.

use std::fmt::Write as _;

use super::{Payload, TraceEvent};

/// One event as a line of text, without the time, track and indentation.
pub fn describe(p: &Payload) -> String {
    match p {
        Payload::Step { step } => format!("step {step}"),
        Payload::CpuAccess { mm, access, addr } => format!("cpu {access} mm{mm} {addr:#x}"),
        Payload::PageFault {
            mm,
            addr,
            write,
            tried,
        } => format!(
            "page fault mm{mm} {addr:#x} {}{}",
            if *write { "write" } else { "read" },
            if *tried { " (tried)" } else { "" }
        ),
        Payload::Gup {
            mm,
            start,
            nr_pages,
            flags,
        } => format!("gup mm{mm} {start:#x} x{nr_pages} {flags}"),
        Payload::MakeDeviceExclusive {
            mm,
            start,
            end,
            owner,
        } => format!(
            "make_device_exclusive mm{mm} [{start:#x}, {end:#x}){}",
            owner_text(owner)
        ),
        Payload::Restore { mm, addr, pfn } => {
            format!("restore device-exclusive entry mm{mm} {addr:#x} pfn {pfn:#x}")
        }
        Payload::Notifier {
            mm,
            event,
            owner,
            start,
            end,
            blockable,
        } => format!(
            "notifier {event} mm{mm} [{start:#x}, {end:#x}){}{}",
            owner_text(owner),
            if *blockable { "" } else { " nonblock" }
        ),
        Payload::ThpSplit { mm, addr } => format!("thp split mm{mm} {addr:#x}"),
        Payload::DeviceFault { device, addr } => format!("device fault {device} {addr:#x}"),
        Payload::DriverPass { device, addr, pass } => {
            format!("driver pass {pass} {device} {addr:#x}")
        }
        Payload::Schedule {
            chosen,
            runnable,
            preemption,
        } => format!(
            "schedule -> {chosen} (runnable: {}){}",
            runnable.join(", "),
            if *preemption { ", preempting" } else { "" }
        ),
        Payload::Fork { parent, child } => format!("fork mm{parent} -> mm{child}"),
        Payload::Exit { mm } => format!("exit mm{mm}"),
        Payload::Reclaim { pfn } => format!("reclaim folio {pfn:#x}"),
        Payload::Migrate { pfn } => format!("migrate folio {pfn:#x}"),
        Payload::End { op, result } => format!("end {op}: {result}"),
        Payload::Pte { mm, addr, old, new } => format!("pte mm{mm} {addr:#x}: {old} -> {new}"),
        Payload::Pmd { mm, addr, old, new } => format!("pmd mm{mm} {addr:#x}: {old} -> {new}"),
        Payload::FolioLock { pfn, op, outcome } => format!("folio {pfn:#x} {op}: {outcome}"),
        Payload::FolioUnlock { pfn } => format!("folio {pfn:#x} unlock"),
        Payload::FolioWait { pfn } => format!("folio {pfn:#x} wait for unlock"),
        Payload::Refcount { pfn, delta, count } => {
            format!("folio {pfn:#x} refcount {delta:+} = {count}")
        }
        Payload::Mapcount { pfn, delta, count } => {
            format!("page {pfn:#x} mapcount {delta:+} = {count}")
        }
        Payload::Subscriber {
            subscriber,
            callback,
            cur_seq,
            decision,
        } => format!(
            "subscriber {subscriber} {callback}{}: {}",
            cur_seq.map_or(String::new(), |s| format!(" seq={s}")),
            decision.name()
        ),
        Payload::ReadBegin {
            subscriber,
            seq,
            waited,
        } => format!(
            "read_begin {subscriber} seq={seq}{}",
            if *waited { " (waited)" } else { "" }
        ),
        Payload::ReadRetry {
            subscriber,
            seq,
            now,
            retry,
        } => format!(
            "read_retry {subscriber} seq={seq} now={now}: {}",
            if *retry { "retry" } else { "valid" }
        ),
        Payload::DevEntry {
            device,
            addr,
            change,
            pfn,
            rights,
        } => format!(
            "device {device} {change} {addr:#x} pfn {pfn:#x}{}",
            if rights.is_empty() {
                String::new()
            } else {
                format!(" {rights}")
            }
        ),
        Payload::KernelStep { pfn, step, outcome } => {
            format!("{step} folio {pfn:#x}: {outcome}")
        }
    }
}

fn owner_text(owner: &Option<super::Text>) -> String {
    owner
        .as_ref()
        .map_or(String::new(), |o| format!(" owner {o}"))
}

/// One event as a line (without the newline).
pub fn line(e: &TraceEvent, track_width: usize) -> String {
    let indent = "  ".repeat(e.depth as usize);
    format!(
        "t={:<5} {:<w$} {indent}{}",
        e.t,
        e.track,
        describe(&e.payload),
        w = track_width
    )
}

/// The whole record as text, one line per event.
pub fn render(events: &[TraceEvent]) -> String {
    let w = events
        .iter()
        .map(|e| e.track.chars().count())
        .max()
        .unwrap_or(0)
        .min(16);
    let mut out = String::new();
    for e in events {
        let _ = writeln!(out, "{}", line(e, w));
    }
    out
}
