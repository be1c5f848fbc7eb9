//! The structure the graphical views share: which operation each event sits in, where
//! each operation ends, which tracks and devices there are, which notifier range each
//! subscriber callback belongs to, which fault each restore is in, and where a
//! failing schedule's violation sits.

use std::collections::BTreeSet;

use super::{Payload, Phase, TraceEvent};

/// The nesting of a record, computed once.
pub(crate) struct Shape {
    /// For each event, the innermost operation of its track open around it (the
    /// index of its begin event).
    pub parent: Vec<Option<usize>>,
    /// For each begin event, the index of its end event (`None`: still open when the
    /// record ends, as a hung run's can be).
    pub end: Vec<Option<usize>>,
    /// For each end event, the index of its begin event.
    pub begin: Vec<Option<usize>>,
    /// The tracks, in the order they first appear.
    pub tracks: Vec<String>,
    /// For each event, its index in [`Shape::tracks`].
    pub track_of: Vec<usize>,
    /// The devices the record names (device entries, device faults, driver passes),
    /// sorted.
    pub devices: Vec<String>,
    /// One past the last logical time.
    pub t_end: u64,
}

impl Shape {
    pub(crate) fn of(events: &[TraceEvent]) -> Shape {
        let mut parent = vec![None; events.len()];
        let mut end = vec![None; events.len()];
        let mut begin = vec![None; events.len()];
        let mut tracks: Vec<String> = Vec::new();
        let mut track_of = Vec::with_capacity(events.len());
        let mut stacks: Vec<Vec<usize>> = Vec::new();
        let mut devices = BTreeSet::new();
        for (i, e) in events.iter().enumerate() {
            let k = match tracks.iter().position(|t| **t == *e.track) {
                Some(k) => k,
                None => {
                    tracks.push(e.track.to_string());
                    stacks.push(Vec::new());
                    tracks.len() - 1
                }
            };
            track_of.push(k);
            let stack = &mut stacks[k];
            match e.phase {
                Phase::End => {
                    if let Some(b) = stack.pop() {
                        end[b] = Some(i);
                        begin[i] = Some(b);
                        parent[i] = stack.last().copied();
                    }
                }
                Phase::Begin => {
                    parent[i] = stack.last().copied();
                    stack.push(i);
                }
                Phase::Instant => parent[i] = stack.last().copied(),
            }
            match &e.payload {
                Payload::DevEntry { device, .. }
                | Payload::DeviceFault { device, .. }
                | Payload::DriverPass { device, .. } => {
                    devices.insert(device.to_string());
                }
                _ => {}
            }
        }
        Shape {
            parent,
            end,
            begin,
            tracks,
            track_of,
            devices: devices.into_iter().collect(),
            t_end: events.last().map_or(0, |e| e.t + 1),
        }
    }

    /// The nearest operation around event `i` that `is` accepts.
    pub(crate) fn enclosing(
        &self,
        events: &[TraceEvent],
        i: usize,
        is: impl Fn(&Payload) -> bool,
    ) -> Option<usize> {
        let mut p = self.parent[i];
        while let Some(b) = p {
            if is(&events[b].payload) {
                return Some(b);
            }
            p = self.parent[b];
        }
        None
    }

    /// The notifier range a subscriber callback ran in.
    pub(crate) fn notifier_of(&self, events: &[TraceEvent], i: usize) -> Option<usize> {
        self.enclosing(events, i, |p| matches!(p, Payload::Notifier { .. }))
    }

    /// The page fault a restore ran in.
    pub(crate) fn fault_of(&self, events: &[TraceEvent], i: usize) -> Option<usize> {
        self.enclosing(events, i, |p| matches!(p, Payload::PageFault { .. }))
    }

    /// The device whose own track shows event `i`, if any: device entries, and the
    /// callbacks of a subscriber named after a device.
    pub(crate) fn device_of(&self, p: &Payload) -> Option<usize> {
        let name = match p {
            Payload::DevEntry { device, .. } => device,
            Payload::Subscriber { subscriber, .. } => subscriber,
            _ => return None,
        };
        self.devices.iter().position(|d| d == name)
    }

    /// The steps (begin events of kind `step`) before the violation, and the one it
    /// names (the last step of the thread the violation names), if any: the events a
    /// failing schedule's view highlights. The anchor is the logical time the
    /// violation is shown at.
    pub(crate) fn violation(&self, events: &[TraceEvent], violation: &str) -> ViolationAt {
        let steps: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.phase == Phase::Begin && matches!(e.payload, Payload::Step { .. }))
            .map(|(i, _)| i)
            .collect();
        let named = thread_named(violation);
        let failing = named.and_then(|name| {
            steps
                .iter()
                .rev()
                .copied()
                .find(|&i| &*events[i].track == name)
        });
        let anchor = failing
            .map(|i| self.end[i].map_or(self.t_end, |e| events[e].t))
            .unwrap_or(self.t_end.saturating_sub(1));
        ViolationAt {
            steps,
            failing,
            anchor,
        }
    }
}

/// Where a violation sits in a record.
pub(crate) struct ViolationAt {
    /// Every step's begin event, in order.
    pub steps: Vec<usize>,
    /// The step the violation names.
    pub failing: Option<usize>,
    /// The logical time to mark.
    pub anchor: u64,
}

/// The thread a violation names: `thread NAME,` (an expectation), `after thread
/// NAME's step` or `of thread NAME)` (an invariant, after a step or at a scheduling
/// point inside one).
fn thread_named(v: &str) -> Option<&str> {
    let rest = &v[v.find("thread ")? + "thread ".len()..];
    let end = rest.find([',', '\'', ' ', ')']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::thread_named;

    #[test]
    fn the_violations_thread() {
        assert_eq!(
            thread_named("expectation failed: thread gpu, line 3, `x` -> 1: expected 2"),
            Some("gpu")
        );
        assert_eq!(
            thread_named("invariant violated (after thread cpu-a's step at line 9): x"),
            Some("cpu-a")
        );
        assert_eq!(thread_named("deadlock"), None);
    }
}
