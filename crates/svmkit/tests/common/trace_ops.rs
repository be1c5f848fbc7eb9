//! Reading a trace record in tests: an operation's inner events, and the operations of
//! a kind. Shared by crates/svmkit/tests/trace.rs and (by path) the scenario crate's
//! trace tests.

use svmkit::trace::{Payload, Phase, TraceEvent};

/// The events between the operation that begins at `events[begin]` and its end, on
/// the same track (the operation's own begin and end excluded).
pub fn inside(events: &[TraceEvent], begin: usize) -> &[TraceEvent] {
    let b = &events[begin];
    assert_eq!(b.phase, Phase::Begin, "{b:?} is no operation");
    let end = events[begin + 1..]
        .iter()
        .position(|e| e.track == b.track && e.depth == b.depth && e.phase == Phase::End)
        .map_or(events.len(), |i| begin + 1 + i);
    &events[begin + 1..end]
}

/// Indices of the operations whose payload `is` accepts.
pub fn ops(events: &[TraceEvent], is: impl Fn(&Payload) -> bool) -> Vec<usize> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.phase == Phase::Begin && is(&e.payload))
        .map(|(i, _)| i)
        .collect()
}
