//! A subscriber that writes down every callback it gets, in order: for tests that
//! assert which events an operation sends, and for traces.

use std::fmt;

use super::interval::{MmuIntervalNotifier, MmuIntervalNotifierOps};
use super::{MmuNotifierEvent, MmuNotifierOps, MmuNotifierRange, Owner};
use crate::mm::mm_types::Mm;
use std::sync::Mutex as StdMutex;

use crate::sync::Arc;

/// Which callback ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifierCallKind {
    /// A classic `invalidate_range_start`.
    Start,
    /// A classic `invalidate_range_end`.
    End,
    /// A classic `release` (range `0..u64::MAX`, event `Release`).
    Release,
    /// An interval notifier's `invalidate`, with the sequence value it was given and
    /// whether the recorder called `set_seq` with it.
    Interval {
        /// The odd sequence value of the invalidation.
        cur_seq: u64,
        /// Whether `set_seq` was called (false: the event was ignored).
        set_seq: bool,
    },
}

/// One recorded callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NotifierCall {
    /// Which callback.
    pub kind: NotifierCallKind,
    /// The mm's id.
    pub mm: u64,
    /// Range start.
    pub start: u64,
    /// Range end (exclusive).
    pub end: u64,
    /// The range's event.
    pub event: MmuNotifierEvent,
    /// The range's owner.
    pub owner: Option<Owner>,
    /// Whether the range was blockable.
    pub blockable: bool,
}

impl NotifierCall {
    fn of(kind: NotifierCallKind, range: &MmuNotifierRange<'_>) -> Self {
        NotifierCall {
            kind,
            mm: range.mm.id(),
            start: range.start,
            end: range.end,
            event: range.event,
            owner: range.owner,
            blockable: range.blockable,
        }
    }
}

impl fmt::Display for NotifierCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            NotifierCallKind::Start => "start".to_string(),
            NotifierCallKind::End => "end".to_string(),
            NotifierCallKind::Release => "release".to_string(),
            NotifierCallKind::Interval { cur_seq, set_seq } => {
                format!(
                    "interval seq={cur_seq}{}",
                    if set_seq { "" } else { " ignored" }
                )
            }
        };
        write!(
            f,
            "mm{} {kind} {} [{:#x}, {:#x})",
            self.mm, self.event, self.start, self.end
        )?;
        if let Some(o) = self.owner {
            write!(f, " owner={:#x}", o.raw())?;
        }
        Ok(())
    }
}

/// Records every callback. As an interval notifier it calls `set_seq` for every event
/// except the `(event, owner)` pair it was told to ignore (the way nouveau filters its
/// own `Exclusive` events).
///
/// Its log is behind a std mutex, held only to push or read, so recording adds no
/// scheduling point: an observed schedule is the schedule it would be unobserved.
pub struct RecordingNotifier {
    log: StdMutex<Vec<NotifierCall>>,
    ignore: Option<(MmuNotifierEvent, Option<Owner>)>,
    set_seq: bool,
}

impl RecordingNotifier {
    /// A recorder whose interval callback calls `set_seq` on every event.
    pub fn new() -> Arc<Self> {
        Arc::new(RecordingNotifier {
            log: StdMutex::new(Vec::new()),
            ignore: None,
            set_seq: true,
        })
    }

    /// A recorder that ignores (does not `set_seq` for) ranges with this event and
    /// owner, and calls `set_seq` for everything else.
    pub fn ignoring(event: MmuNotifierEvent, owner: Option<Owner>) -> Arc<Self> {
        Arc::new(RecordingNotifier {
            log: StdMutex::new(Vec::new()),
            ignore: Some((event, owner)),
            set_seq: true,
        })
    }

    /// A recorder that never calls `set_seq`: it watches without making readers retry.
    pub fn passive() -> Arc<Self> {
        Arc::new(RecordingNotifier {
            log: StdMutex::new(Vec::new()),
            ignore: None,
            set_seq: false,
        })
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Vec<NotifierCall>> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Everything recorded so far.
    pub fn calls(&self) -> Vec<NotifierCall> {
        self.log().clone()
    }

    /// Everything recorded so far, clearing the log.
    pub fn take(&self) -> Vec<NotifierCall> {
        crate::sync::mode::model_changed();
        std::mem::take(&mut *self.log())
    }

    /// Appends a call to the log (a change the scheduling-point checks read).
    fn record(&self, call: NotifierCall) {
        self.log().push(call);
        crate::sync::mode::model_changed();
    }

    /// Range starts minus range ends in the log (what [`take`](Self::take) has not
    /// taken yet): how many invalidations it saw begin and not end, negative if it
    /// saw an end without its start. Its own std lock is never held across a
    /// scheduling point, so an exploration's hook may read it at any.
    pub fn open_ranges(&self) -> i64 {
        self.log().iter().fold(0, |n, c| match c.kind {
            NotifierCallKind::Start => n + 1,
            NotifierCallKind::End => n - 1,
            _ => n,
        })
    }
}

impl MmuNotifierOps for RecordingNotifier {
    fn invalidate_range_start(&self, range: &MmuNotifierRange<'_>) -> Result<(), crate::Errno> {
        self.record(NotifierCall::of(NotifierCallKind::Start, range));
        Ok(())
    }

    fn invalidate_range_end(&self, range: &MmuNotifierRange<'_>) {
        self.record(NotifierCall::of(NotifierCallKind::End, range));
    }

    fn release(&self, mm: &Mm) {
        let range = MmuNotifierRange::new(mm, MmuNotifierEvent::Release, 0, u64::MAX);
        self.record(NotifierCall::of(NotifierCallKind::Release, &range));
    }

    fn trace_name(&self) -> Option<String> {
        Some("recorder".into())
    }
}

impl MmuIntervalNotifierOps for RecordingNotifier {
    fn invalidate(
        &self,
        sub: &MmuIntervalNotifier,
        range: &MmuNotifierRange<'_>,
        cur_seq: u64,
    ) -> bool {
        let set_seq = self.set_seq && self.ignore != Some((range.event, range.owner));
        if set_seq {
            sub.set_seq(cur_seq);
        }
        self.record(NotifierCall::of(
            NotifierCallKind::Interval { cur_seq, set_seq },
            range,
        ));
        true
    }

    fn trace_name(&self) -> Option<String> {
        Some("recorder".into())
    }
}

impl fmt::Debug for RecordingNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingNotifier")
            .field("calls", &self.log().len())
            .field("ignore", &self.ignore)
            .field("set_seq", &self.set_seq)
            .finish()
    }
}
