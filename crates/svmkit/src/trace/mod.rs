//! Traces: what happened inside the model, event by event.
//!
//! Every [`System`](crate::System) has a [`Tracer`], off by default. Switched on
//! ([`System::set_trace`](crate::System::set_trace)), it records a [`TraceEvent`] at
//! each site of the mm that matters to device-exclusive access: CPU accesses and
//! their faults, every PTE and PMD change, THP splits, folio locks, notifier ranges
//! and each subscriber's decision, interval sequences, device entries, driver loop
//! passes, GUP, `make_device_exclusive`, restores, fork, exit, reclaim and migration.
//! [`TraceLevel::Detail`] adds refcount and mapcount changes.
//!
//! # What an event says
//! * `t`: logical time, the event's number in this system's record (the model never
//!   reads a clock, so a schedule traces the same way every time it runs).
//! * `track`: who did it, the name of the simulated thread: the name set with
//!   [`Tracer::set_track`] for the calling thread or task, else the thread's (or
//!   shuttle task's) own name, else `main`.
//! * `phase` and `depth`: an operation is a [`Phase::Begin`] event, the events inside
//!   it, then a [`Phase::End`] event ([`Payload::End`] with its result); `depth` is
//!   how many operations of the same track are open around the event.
//! * the typed payload ([`Payload`]).
//!
//! # Determinism and cost
//! Recording takes no facade lock: the record sits behind a std mutex that is held only
//! to push an event (or to merge in the PTE changes of one page-table lock hold, which
//! wait in the locking thread's state until its release, timed when they were made),
//! never across a model operation, so tracing adds no scheduling point and an
//! explored schedule is the same with tracing on or off. Under
//! exploration every task of an execution runs on one OS thread, so the calling task
//! is told apart through shuttle (its task id and name), not through an OS
//! thread-local. With tracing off each site costs one relaxed atomic load and a
//! branch; the event is built only when it is recorded.
//!
//! The views: [`text`] (one line per event, indented by nesting), [`jsonl`] (one
//! JSON object per line; schema in `docs/TRACES.md`), [`chrome`] (Perfetto / Chrome
//! trace-event JSON) and [`html`] (a single-file timeline).

pub mod chrome;
pub mod html;
pub mod jsonl;
mod shape;
pub mod text;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Text in an event: mostly fixed words (`MMU_NOTIFY_CLEAR`, `present`), borrowed so
/// that recording them allocates nothing; owned when built (a result with a count) or
/// read back from JSON.
pub type Text = std::borrow::Cow<'static, str>;

use crate::mm::{Pmd, Pte};

/// How much a [`Tracer`] records.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TraceLevel {
    /// Nothing (the default).
    #[default]
    Off,
    /// Operations, page-table transitions, locks, notifiers, device entries.
    Normal,
    /// Also every refcount and mapcount change.
    Detail,
}

impl TraceLevel {
    /// The level named `off`, `normal` or `detail`.
    pub fn from_name(name: &str) -> Option<TraceLevel> {
        match name {
            "off" => Some(TraceLevel::Off),
            "normal" => Some(TraceLevel::Normal),
            "detail" => Some(TraceLevel::Detail),
            _ => None,
        }
    }
}

/// Where an event sits in its track's nesting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// An operation starts; the events up to its [`Phase::End`] happen inside it.
    Begin,
    /// The innermost open operation of the track ends.
    End,
    /// A point event.
    Instant,
}

/// A page-table entry as a trace shows it: the raw word, decoded when it is looked at
/// (recording one is a copy of the word). Serialised as `{raw, kind, pfn, slot, flags}`
/// (docs/TRACES.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryView {
    raw: u64,
    /// A PMD's word (`table`, `huge`), not a PTE's; false for an empty entry.
    pmd: bool,
}

/// What kind of entry an [`EntryView`] is; serialised as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// No entry.
    None,
    /// A present PTE.
    Present,
    /// A device-exclusive entry.
    DeviceExclusive,
    /// A migration entry.
    Migration,
    /// A swap entry (a slot of the swap device).
    Swap,
    /// A swap-type entry of another type.
    SwapOther,
    /// A PMD pointing to a PTE table.
    Table,
    /// A PMD mapping a THP.
    Huge,
}

impl EntryKind {
    /// Its name, as serialised (`device_exclusive`).
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::None => "none",
            EntryKind::Present => "present",
            EntryKind::DeviceExclusive => "device_exclusive",
            EntryKind::Migration => "migration",
            EntryKind::Swap => "swap",
            EntryKind::SwapOther => "swap_other",
            EntryKind::Table => "table",
            EntryKind::Huge => "huge",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for EntryKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

bitflags::bitflags! {
    /// The flags of an [`EntryView`], a set that serialises as the list of their names
    /// in this order (a bitset: recording an entry allocates nothing).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct EntryFlags: u16 {
        /// Present: writable.
        const RW = 1 << 0;
        /// Present: read-only.
        const RO = 1 << 1;
        /// Present: dirty.
        const DIRTY = 1 << 2;
        /// Present: accessed.
        const YOUNG = 1 << 3;
        /// Soft-dirty (`pte_soft_dirty()`, `pte_swp_soft_dirty()`).
        const SOFT_DIRTY = 1 << 4;
        /// uffd-wp (`pte_uffd_wp()`, `pte_swp_uffd_wp()`).
        const UFFD_WP = 1 << 5;
        /// Present: PROT_NONE (NUMA hinting style).
        const PROTNONE = 1 << 6;
        /// Present: `pte_special()` (the zero page).
        const SPECIAL = 1 << 7;
        /// Non-present: the anon-exclusive bit.
        const EXCLUSIVE = 1 << 8;
        /// Non-present: a readable (not writable) device-exclusive entry.
        const RO_ENTRY = 1 << 9;
    }
}

impl EntryFlags {
    const NAMES: [(EntryFlags, &'static str); 10] = [
        (EntryFlags::RW, "rw"),
        (EntryFlags::RO, "ro"),
        (EntryFlags::DIRTY, "dirty"),
        (EntryFlags::YOUNG, "young"),
        (EntryFlags::SOFT_DIRTY, "soft_dirty"),
        (EntryFlags::UFFD_WP, "uffd_wp"),
        (EntryFlags::PROTNONE, "protnone"),
        (EntryFlags::SPECIAL, "special"),
        (EntryFlags::EXCLUSIVE, "exclusive"),
        (EntryFlags::RO_ENTRY, "ro"),
    ];

    /// The names of the flags set, in the documented order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }
}

impl Serialize for EntryFlags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for EntryFlags {
    /// From the list of names; `ro` first is a present entry's, after another flag a
    /// device-exclusive entry's (the orders [`EntryView::of_pte`] writes).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names: Vec<std::borrow::Cow<'de, str>> = Vec::deserialize(d)?;
        let mut out = EntryFlags::empty();
        for (i, n) in names.iter().enumerate() {
            let f = match &**n {
                "ro" if i == 0 => EntryFlags::RO,
                "ro" => EntryFlags::RO_ENTRY,
                other => EntryFlags::NAMES
                    .iter()
                    .find(|(_, name)| *name == other)
                    .map(|(f, _)| *f)
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!("unknown entry flag `{other}`"))
                    })?,
            };
            out |= f;
        }
        Ok(out)
    }
}

impl EntryView {
    /// The view of a PTE.
    #[inline]
    pub fn of_pte(p: Pte) -> EntryView {
        EntryView {
            raw: p.encode(),
            pmd: false,
        }
    }

    /// The view of a PMD.
    #[inline]
    pub fn of_pmd(p: Pmd) -> EntryView {
        let raw = p.encode();
        // An empty entry is the same at either level (and parses back as a PTE's).
        EntryView { raw, pmd: raw != 0 }
    }

    /// The raw x86-64 style word.
    pub fn raw(&self) -> u64 {
        self.raw
    }

    /// `none`, `present`, `device_exclusive`, `migration`, `swap`, `swap_other` (a
    /// swap-type entry of another type), `table` (a PMD pointing to a PTE table) or
    /// `huge` (a PMD mapping a THP).
    pub fn kind(&self) -> EntryKind {
        self.decoded().0
    }

    /// The frame it names, if any (the swap slot is not a frame: see `slot`).
    pub fn pfn(&self) -> Option<u64> {
        self.decoded().1
    }

    /// The swap slot of a `swap` entry.
    pub fn slot(&self) -> Option<u64> {
        self.decoded().2
    }

    /// Its flags: `rw`/`ro`, `dirty`, `young`, `soft_dirty`, `uffd_wp`, `protnone`,
    /// `special` (present); `soft_dirty`, `uffd_wp`, `exclusive`, `ro` (non-present).
    pub fn flags(&self) -> EntryFlags {
        self.decoded().3
    }

    fn decoded(&self) -> (EntryKind, Option<u64>, Option<u64>, EntryFlags) {
        if self.pmd {
            return match Pmd::decode(self.raw) {
                Pmd::None => (EntryKind::None, None, None, EntryFlags::empty()),
                Pmd::Table(t) => (EntryKind::Table, Some(t.raw()), None, EntryFlags::empty()),
                Pmd::Huge(h) => {
                    let (_, pfn, slot, flags) = Self::of_pte(Pte::Present(h)).decoded();
                    (EntryKind::Huge, pfn, slot, flags)
                }
            };
        }
        match Pte::decode(self.raw) {
            Pte::None => (EntryKind::None, None, None, EntryFlags::empty()),
            Pte::Present(pp) => {
                let mut flags = if pp.is_write() {
                    EntryFlags::RW
                } else {
                    EntryFlags::RO
                };
                for (on, f) in [
                    (pp.is_dirty(), EntryFlags::DIRTY),
                    (pp.is_young(), EntryFlags::YOUNG),
                    (
                        pp.flags.contains(crate::mm::PteFlags::SOFT_DIRTY),
                        EntryFlags::SOFT_DIRTY,
                    ),
                    (
                        pp.flags.contains(crate::mm::PteFlags::UFFD_WP),
                        EntryFlags::UFFD_WP,
                    ),
                    (pp.is_protnone(), EntryFlags::PROTNONE),
                    (pp.is_special(), EntryFlags::SPECIAL),
                ] {
                    flags.set(f, on);
                }
                (EntryKind::Present, Some(pp.pfn.raw()), None, flags)
            }
            Pte::Swap(s) => {
                let (kind, pfn, slot) = if s.is_device_exclusive() {
                    (EntryKind::DeviceExclusive, s.pfn(), None)
                } else if s.is_migration() {
                    (EntryKind::Migration, s.pfn(), None)
                } else if s.swp_type < crate::mm::swp_type::MAX_SWAPFILES {
                    (EntryKind::Swap, None, Some(s.offset))
                } else {
                    (EntryKind::SwapOther, s.pfn(), None)
                };
                let mut flags = EntryFlags::empty();
                for (on, f) in [
                    (s.soft_dirty, EntryFlags::SOFT_DIRTY),
                    (s.uffd_wp, EntryFlags::UFFD_WP),
                    (s.exclusive, EntryFlags::EXCLUSIVE),
                    (
                        s.is_device_exclusive() && !s.is_writable_device_exclusive(),
                        EntryFlags::RO_ENTRY,
                    ),
                ] {
                    flags.set(f, on);
                }
                (kind, pfn.map(|p| p.raw()), slot, flags)
            }
        }
    }
}

impl Serialize for EntryView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (kind, pfn, slot, flags) = self.decoded();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("raw", &self.raw)?;
        m.serialize_entry("kind", &kind)?;
        m.serialize_entry("pfn", &pfn)?;
        if let Some(slot) = slot {
            m.serialize_entry("slot", &slot)?;
        }
        m.serialize_entry("flags", &flags)?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for EntryView {
    /// From the serialised form: the raw word is the entry; `table` and `huge` say it
    /// is a PMD's (the other fields are its decoding, recomputed).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            raw: u64,
            kind: EntryKind,
        }
        let w = Wire::deserialize(d)?;
        Ok(EntryView {
            raw: w.raw,
            pmd: matches!(w.kind, EntryKind::Table | EntryKind::Huge),
        })
    }
}

impl fmt::Display for EntryView {
    /// `none`, `present(pfn 0x12) rw,dirty`, `device-exclusive(pfn 0x12)`,
    /// `swap(slot 3) exclusive`, `table(pfn 0x5)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, pfn, slot, flags) = self.decoded();
        f.write_str(&kind.as_str().replace('_', "-"))?;
        if let Some(p) = pfn {
            write!(f, "(pfn {p:#x})")?;
        } else if let Some(s) = slot {
            write!(f, "(slot {s})")?;
        }
        for (i, n) in flags.names().enumerate() {
            f.write_str(if i == 0 { " " } else { "," })?;
            f.write_str(n)?;
        }
        Ok(())
    }
}

/// What a notifier subscriber did with one callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// An interval callback called `set_seq`: the subscriber's readers will retry.
    SetSeq,
    /// An interval callback returned without `set_seq`: the event was filtered out
    /// (ignored) by the subscriber.
    Ignored,
    /// The callback refused a non-blockable range (`EAGAIN`): the invalidation fails.
    Eagain,
    /// An interval callback returned false in a blockable range (a driver bug; counted
    /// and ignored, as Linux WARNs).
    BadReturn,
    /// A classic `invalidate_range_start` or `invalidate_range_end` returned.
    Done,
}

impl Decision {
    /// How the text view and `svmkit run` name it.
    pub fn name(self) -> &'static str {
        match self {
            Decision::SetSeq => "set_seq",
            Decision::Ignored => "ignored",
            Decision::Eagain => "EAGAIN",
            Decision::BadReturn => "bad return",
            Decision::Done => "done",
        }
    }
}

/// What happened: one variant per kind of event. Operations (`Begin` events) are the
/// variants documented as such; every operation ends with [`Payload::End`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    /// Operation: a step of a scenario (recorded by the scenario engine).
    Step {
        /// The step as written, resolved.
        step: Text,
    },
    /// Operation: a CPU load, store or atomic on one page.
    CpuAccess {
        /// The mm's id.
        mm: u64,
        /// `read` or `write`.
        access: Text,
        /// The address.
        addr: u64,
    },
    /// Operation: one call of the fault handler (`handle_mm_fault`).
    PageFault {
        /// The mm's id.
        mm: u64,
        /// The faulting address.
        addr: u64,
        /// A write fault.
        write: bool,
        /// The retried attempt (`FAULT_FLAG_TRIED`).
        tried: bool,
    },
    /// Operation: `get_user_pages` (and pin).
    Gup {
        /// The mm's id.
        mm: u64,
        /// First address.
        start: u64,
        /// Pages asked for.
        nr_pages: u64,
        /// The GUP flags (`GET|WRITE|SPLIT_PMD`).
        flags: Text,
    },
    /// Operation: `make_device_exclusive` of one page (or, 5.14, the range API).
    MakeDeviceExclusive {
        /// The mm's id.
        mm: u64,
        /// First address.
        start: u64,
        /// End address (exclusive).
        end: u64,
        /// The owner passed (a device name when the owner is a device's).
        owner: Option<Text>,
    },
    /// Operation: the restore of a device-exclusive entry by a fault
    /// (`remove_device_exclusive_entry`).
    Restore {
        /// The mm's id.
        mm: u64,
        /// The address.
        addr: u64,
        /// The entry's frame.
        pfn: u64,
    },
    /// Operation: a notifier range, from `invalidate_range_start` to its end.
    Notifier {
        /// The mm's id.
        mm: u64,
        /// The Linux event name (`MMU_NOTIFY_CLEAR`).
        event: Text,
        /// The range's owner (a device name when the owner is a device's).
        owner: Option<Text>,
        /// First address.
        start: u64,
        /// End (exclusive).
        end: u64,
        /// Whether callbacks may sleep.
        blockable: bool,
    },
    /// Operation: a THP split (`split_huge_pmd`).
    ThpSplit {
        /// The mm's id.
        mm: u64,
        /// The 2 MiB aligned address.
        addr: u64,
    },
    /// Operation: a device fault handled by a driver (svm_atomic's atomic fault).
    DeviceFault {
        /// The device.
        device: Text,
        /// The page address.
        addr: u64,
    },
    /// Operation: one pass of a driver's acquire loop.
    DriverPass {
        /// The device.
        device: Text,
        /// The page address.
        addr: u64,
        /// The pass number (1 for the first).
        pass: u64,
    },
    /// Under exploration: the task a scheduling point chose, among the runnable ones
    /// (on track `scheduler`). A preemption is a switch away from a task that could
    /// have gone on.
    Schedule {
        /// The task that runs next.
        chosen: Text,
        /// Every runnable task, the chosen one included.
        runnable: Vec<Text>,
        /// Whether the choice preempts the running task.
        preemption: bool,
    },
    /// Operation: fork (`dup_mmap`).
    Fork {
        /// The parent's mm id.
        parent: u64,
        /// The child's mm id.
        child: u64,
    },
    /// Operation: the teardown of an address space (`exit_mmap`).
    Exit {
        /// The mm's id.
        mm: u64,
    },
    /// Operation: reclaim of one folio (`shrink_folio_list`).
    Reclaim {
        /// The folio's head frame.
        pfn: u64,
    },
    /// Operation: migration of one folio.
    Migrate {
        /// The folio's head frame.
        pfn: u64,
    },
    /// The end of the innermost open operation of the track.
    End {
        /// The operation's kind (`cpu_access`, `notifier`, ...).
        op: Text,
        /// What it returned (`ok`, `retry`, `EBUSY`, ...).
        result: Text,
    },
    /// A PTE changed.
    Pte {
        /// The mm's id (0 when the change was made through a table no mm is known for).
        mm: u64,
        /// The address the PTE maps.
        addr: u64,
        /// Before.
        old: EntryView,
        /// After.
        new: EntryView,
    },
    /// A PMD changed (huge mappings, tables installed or removed).
    Pmd {
        /// The mm's id.
        mm: u64,
        /// The 2 MiB aligned address.
        addr: u64,
        /// Before.
        old: EntryView,
        /// After.
        new: EntryView,
    },
    /// A folio lock attempt: `op` is `lock`, `lock_killable` or `trylock`; `outcome`
    /// is `acquired`, `contended` (it slept first), `busy` (a trylock failed) or
    /// `EINTR` (a killable lock interrupted).
    FolioLock {
        /// The folio's head frame.
        pfn: u64,
        /// Which call.
        op: Text,
        /// What came of it.
        outcome: Text,
    },
    /// A folio unlocked.
    FolioUnlock {
        /// The folio's head frame.
        pfn: u64,
    },
    /// A wait for a folio to be unlocked (`folio_wait_locked`, the fault-retry wait).
    FolioWait {
        /// The folio's head frame.
        pfn: u64,
    },
    /// Detail level: a folio's reference count changed.
    Refcount {
        /// The folio's head frame.
        pfn: u64,
        /// The change.
        delta: i64,
        /// The count after it.
        count: i64,
    },
    /// Detail level: a page's mapcount changed.
    Mapcount {
        /// The page's frame.
        pfn: u64,
        /// The change.
        delta: i64,
        /// The count after it.
        count: i64,
    },
    /// A notifier subscriber's callback ran and decided (inside the `notifier`
    /// operation it belongs to).
    Subscriber {
        /// The subscriber's name (a device name, or `interval#N` / `classic#N`).
        subscriber: Text,
        /// `interval`, `start`, `end` or `release`.
        callback: Text,
        /// The odd sequence an interval callback was given.
        cur_seq: Option<u64>,
        /// What it did.
        decision: Decision,
    },
    /// `mmu_interval_read_begin` returned `seq`; `waited` when it slept first for a
    /// running invalidation.
    ReadBegin {
        /// The subscriber.
        subscriber: Text,
        /// The sequence returned.
        seq: u64,
        /// Whether it slept.
        waited: bool,
    },
    /// `mmu_interval_read_retry(seq)`: the subscriber's sequence is `now`; `retry`
    /// when they differ.
    ReadRetry {
        /// The subscriber.
        subscriber: Text,
        /// The sequence of the read section.
        seq: u64,
        /// The subscriber's sequence now.
        now: u64,
        /// Whether the section must be retried.
        retry: bool,
    },
    /// A device page-table entry changed: `change` is `map` (installed or replaced)
    /// or `unmap`.
    DevEntry {
        /// The device.
        device: Text,
        /// The page address.
        addr: u64,
        /// `map` or `unmap`.
        change: Text,
        /// The frame.
        pfn: u64,
        /// The rights after (`rwa`; empty when unmapped).
        rights: Text,
    },
    /// A step of reclaim or migration (`add_to_swap`, `try_to_unmap`, `pageout`,
    /// `remove_mapping`, `try_to_migrate`, `copy`, `remove_migration_ptes`) and what
    /// came of it.
    KernelStep {
        /// The folio's head frame.
        pfn: u64,
        /// The step.
        step: Text,
        /// Its outcome.
        outcome: Text,
    },
}

impl Payload {
    /// The snake-case name of the variant (`cpu_access`): the JSON `kind`, and the
    /// `op` of an operation's [`Payload::End`].
    pub fn kind_name(&self) -> &'static str {
        match self {
            Payload::Step { .. } => "step",
            Payload::CpuAccess { .. } => "cpu_access",
            Payload::PageFault { .. } => "page_fault",
            Payload::Gup { .. } => "gup",
            Payload::MakeDeviceExclusive { .. } => "make_device_exclusive",
            Payload::Restore { .. } => "restore",
            Payload::Notifier { .. } => "notifier",
            Payload::ThpSplit { .. } => "thp_split",
            Payload::DeviceFault { .. } => "device_fault",
            Payload::DriverPass { .. } => "driver_pass",
            Payload::Schedule { .. } => "schedule",
            Payload::Fork { .. } => "fork",
            Payload::Exit { .. } => "exit",
            Payload::Reclaim { .. } => "reclaim",
            Payload::Migrate { .. } => "migrate",
            Payload::End { .. } => "end",
            Payload::Pte { .. } => "pte",
            Payload::Pmd { .. } => "pmd",
            Payload::FolioLock { .. } => "folio_lock",
            Payload::FolioUnlock { .. } => "folio_unlock",
            Payload::FolioWait { .. } => "folio_wait",
            Payload::Refcount { .. } => "refcount",
            Payload::Mapcount { .. } => "mapcount",
            Payload::Subscriber { .. } => "subscriber",
            Payload::ReadBegin { .. } => "read_begin",
            Payload::ReadRetry { .. } => "read_retry",
            Payload::DevEntry { .. } => "dev_entry",
            Payload::KernelStep { .. } => "kernel_step",
        }
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Logical time: the event's number in the system's record, from 0.
    pub t: u64,
    /// Who: the simulated thread (see the module docs).
    pub track: std::sync::Arc<str>,
    /// Operations of the same track open around this event.
    pub depth: u32,
    /// Begin, end or instant.
    pub phase: Phase,
    /// What.
    #[serde(flatten)]
    pub payload: Payload,
}

/// Identifies the calling thread: an OS thread, or a shuttle task of the running
/// execution (all of which share one OS thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskKey {
    Os(std::thread::ThreadId),
    Shuttle(usize),
    /// The schedule explorer's choices (track `scheduler`).
    Scheduler,
}

impl TaskKey {
    fn current() -> TaskKey {
        // Shuttle's execution state, when there is one on this OS thread, names the
        // running task; asking it is no scheduling point. It is absent outside an
        // execution and while an execution tears its tasks down (values dropped then
        // are traced on the OS thread's track).
        let task = shuttle_engine::runtime::execution::ExecutionState::try_with(|s| {
            usize::from(s.current().id())
        });
        match task {
            Ok(id) => TaskKey::Shuttle(id),
            Err(_) => {
                thread_local! {
                    // std::thread::current() clones the thread's handle: ask once.
                    static ID: std::thread::ThreadId = std::thread::current().id();
                }
                TaskKey::Os(ID.with(|id| *id))
            }
        }
    }

    /// The thread's or task's own name, asked once per track.
    fn own_name(self) -> std::sync::Arc<str> {
        let name = match self {
            TaskKey::Shuttle(_) => {
                shuttle_engine::runtime::execution::ExecutionState::try_with(|s| s.current().name())
                    .ok()
                    .flatten()
            }
            TaskKey::Os(_) => std::thread::current().name().map(str::to_string),
            TaskKey::Scheduler => Some("scheduler".to_string()),
        };
        name.unwrap_or_else(|| "main".to_string()).into()
    }
}

#[derive(Debug)]
struct TrackState {
    key: TaskKey,
    /// The name set with `set_track`, else the thread's own: an index into
    /// [`Record::names`].
    name: u32,
    depth: u32,
}

/// An event as recorded: its track by the index of its name (no reference count
/// touched per event); [`Record::event`] gives it its name when it is read.
#[derive(Debug, Clone)]
struct Stored {
    t: u64,
    track: u32,
    depth: u32,
    /// The recording task, an index into [`Record::tracks`]: a batch merged later finds
    /// its task's operations among the events recorded meanwhile by it (two tasks may
    /// share a track name).
    task: u32,
    phase: Phase,
    payload: Payload,
}

/// A PTE change waiting in its [`Hold`]: its logical time is taken when it happens.
#[derive(Debug, Clone, Copy)]
struct PendingPte {
    t: u64,
    mm: u64,
    addr: u64,
    old: u64,
    new: u64,
}

/// The PTE changes made under one traced hold of a page-table lock, joined to the
/// record when the lock is released ([`Tracer::ptl_unlocked`]): one lock of the record
/// per hold instead of one per change. Each change takes its logical time when it is
/// made, so the record reads exactly as if each had been pushed at once.
#[derive(Debug)]
struct Hold {
    /// [`Tracer::id`] of the tracer recording it; 0 for a free slot.
    tracer: u64,
    /// The locked PTE table's frame.
    table: u64,
    mm: u64,
    pending: Vec<PendingPte>,
}

thread_local! {
    /// The traced page-table lock holds of this OS thread (under exploration, of every
    /// task of the execution, which all run on it; a table's lock has one holder, so
    /// tracer and table name a hold). Kept here rather than in the lock's guard so that
    /// the guard stays two words, returned in registers, as it was before tracing.
    /// A released hold's slot is reused, its memory with it: usually one slot is all a
    /// thread needs.
    static HOLDS: std::cell::RefCell<Vec<Hold>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Tracer ids, unique in the process: a hold left behind by a task that never
/// released its lock (an exploration abandons a deadlocked execution) never matches
/// another system's tracer.
static NEXT_TRACER_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Default)]
struct Record {
    /// Sorted by `t`: pushes take their time under the record's lock, and a batch is
    /// merged in by time.
    events: Vec<Stored>,
    tracks: Vec<TrackState>,
    /// Every track name used so far (a name is added once, when a track takes it).
    names: Vec<std::sync::Arc<str>>,
    /// Owner names, shared across systems ([`static_name`]).
    owners: BTreeMap<u64, &'static str>,
}

impl Record {
    /// The index of `name` in [`Record::names`], adding it if it is new.
    fn intern(&mut self, name: std::sync::Arc<str>) -> u32 {
        let i = match self.names.iter().position(|n| *n == name) {
            Some(i) => i,
            None => {
                self.names.push(name);
                self.names.len() - 1
            }
        };
        u32::try_from(i).unwrap_or(u32::MAX)
    }

    /// A stored event as the API shows it.
    fn event(&self, s: Stored) -> TraceEvent {
        TraceEvent {
            t: s.t,
            track: self
                .names
                .get(s.track as usize)
                .cloned()
                .unwrap_or_else(|| "?".into()),
            depth: s.depth,
            phase: s.phase,
            payload: s.payload,
        }
    }

    /// The index of `key`'s track state in [`Record::tracks`], adding it if new.
    fn task(&mut self, key: TaskKey) -> usize {
        match self.tracks.iter().position(|t| t.key == key) {
            Some(i) => i,
            None => {
                let name = self.intern(key.own_name());
                self.tracks.push(TrackState {
                    key,
                    name,
                    depth: 0,
                });
                self.tracks.len() - 1
            }
        }
    }

    fn track(&mut self, key: TaskKey) -> &mut TrackState {
        let i = self.task(key);
        &mut self.tracks[i]
    }

    /// Merges `key`'s batch of PTE changes into the events by time. Usually nothing was
    /// recorded since the batch's first change and the batch is appended; otherwise
    /// (the task's own refcount events under the lock, or another thread's events) it
    /// is interleaved, each change at the depth its task had at its time.
    fn merge_ptes(&mut self, key: TaskKey, pending: &[PendingPte]) {
        let Some(first) = pending.first() else {
            return;
        };
        let task = self.task(key);
        let (track, depth_now) = (self.tracks[task].name, self.tracks[task].depth);
        let task = u32::try_from(task).unwrap_or(u32::MAX);
        let from = self.events.partition_point(|e| e.t < first.t);
        let later = self.events.split_off(from);
        // The task's depth just before each later event (the depth a change made then
        // had): from the end, where it is the task's depth now, back through the task's
        // own operations.
        let mut depth_before = vec![depth_now; later.len()];
        let mut d = depth_now;
        for (i, e) in later.iter().enumerate().rev() {
            if e.task == task {
                d = match e.phase {
                    Phase::End => e.depth + 1,
                    Phase::Begin | Phase::Instant => e.depth,
                };
            }
            depth_before[i] = d;
        }
        self.events.reserve(pending.len() + later.len());
        let mut later = later.into_iter().zip(depth_before).peekable();
        for p in pending {
            while let Some((e, _)) = later.next_if(|(e, _)| e.t < p.t) {
                self.events.push(e);
            }
            let depth = later.peek().map_or(depth_now, |(_, d)| *d);
            self.events.push(Stored {
                t: p.t,
                track,
                depth,
                task,
                phase: Phase::Instant,
                payload: Payload::Pte {
                    mm: p.mm,
                    addr: p.addr,
                    old: EntryView {
                        raw: p.old,
                        pmd: false,
                    },
                    new: EntryView {
                        raw: p.new,
                        pmd: false,
                    },
                },
            });
        }
        self.events.extend(later.map(|(e, _)| e));
    }
}

/// `name` as a string that lives for the process, kept once per distinct name: owner
/// names are device names, a few per program however many systems it builds (an
/// exploration builds one per schedule), and an event can then borrow one instead of
/// copying it.
fn static_name(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    match names.get(name) {
        Some(kept) => kept,
        None => {
            let kept: &'static str = name.to_string().leak();
            names.insert(kept);
            kept
        }
    }
}

/// A system's event record (see the module docs).
pub struct Tracer {
    level: AtomicU8,
    id: u64,
    /// The next event's logical time, outside the lock: a batched PTE change takes its
    /// time when it is made and joins the record when its lock is released ([`Hold`]).
    next_t: AtomicU64,
    record: std::sync::Mutex<Record>,
}

impl Default for Tracer {
    fn default() -> Tracer {
        Tracer::new()
    }
}

impl Tracer {
    /// A tracer that records nothing until [`set_level`](Self::set_level).
    pub fn new() -> Tracer {
        Tracer {
            level: AtomicU8::new(TraceLevel::Off as u8),
            id: NEXT_TRACER_ID.fetch_add(1, Ordering::Relaxed),
            next_t: AtomicU64::new(0),
            record: std::sync::Mutex::default(),
        }
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts, changes or stops recording.
    pub fn set_level(&self, level: TraceLevel) {
        self.level.store(level as u8, Ordering::Relaxed);
    }

    /// The current level.
    pub fn level(&self) -> TraceLevel {
        match self.level.load(Ordering::Relaxed) {
            0 => TraceLevel::Off,
            1 => TraceLevel::Normal,
            _ => TraceLevel::Detail,
        }
    }

    /// Whether anything is recorded: the one load a site pays with tracing off.
    #[inline(always)]
    pub fn on(&self) -> bool {
        // Built with `--cfg svmkit_no_trace`, every site folds away: the baseline that
        // docs/TRACES.md's "Cost" compares the normal build against.
        !cfg!(svmkit_no_trace) && self.level.load(Ordering::Relaxed) != 0
    }

    /// Whether refcount and mapcount changes are recorded.
    #[inline(always)]
    pub fn detail(&self) -> bool {
        !cfg!(svmkit_no_trace) && self.level.load(Ordering::Relaxed) >= TraceLevel::Detail as u8
    }

    /// Names the calling thread's (or shuttle task's) track from now on; `None` goes
    /// back to the thread's own name. The scenario engine, which runs every scenario
    /// thread's steps on one OS thread, names the track before each step.
    pub fn set_track(&self, name: Option<&str>) {
        let key = TaskKey::current();
        let mut r = self.record();
        let name = r.intern(name.map_or_else(|| key.own_name(), Into::into));
        r.track(key).name = name;
    }

    /// Gives an owner token a name (a device's), used wherever the owner is shown.
    pub fn name_owner(&self, owner: crate::mm::mmu_notifier::Owner, name: &str) {
        self.record().owners.insert(owner.raw(), static_name(name));
    }

    /// The name of an owner token: its device's name, or its value in hex.
    pub fn owner_name(&self, owner: crate::mm::mmu_notifier::Owner) -> Text {
        match self.record().owners.get(&owner.raw()) {
            Some(name) => Text::Borrowed(name),
            None => format!("{:#x}", owner.raw()).into(),
        }
    }

    /// Records an instant event built by `f`, if recording.
    #[inline(always)]
    pub fn instant(&self, f: impl FnOnce() -> Payload) {
        if self.on() {
            self.instant_slow(f);
        }
    }

    /// Records a detail-level instant event built by `f`, if recording at that level.
    #[inline(always)]
    pub fn detail_instant(&self, f: impl FnOnce() -> Payload) {
        if self.detail() {
            self.instant_slow(f);
        }
    }

    // Building the payload out of line keeps the recording site small, so tracing does
    // not change how the mm's hot paths inline.
    #[cold]
    #[inline(never)]
    fn instant_slow(&self, f: impl FnOnce() -> Payload) {
        self.push(Phase::Instant, f());
    }

    /// Begins an operation built by `f`, if recording; the returned span ends it when
    /// dropped (with the result given to [`Span::result`], else `done`).
    #[inline(always)]
    pub fn span(&self, f: impl FnOnce() -> Payload) -> Span<'_> {
        if self.on() {
            self.span_slow(f)
        } else {
            Span { open: None }
        }
    }

    #[cold]
    #[inline(never)]
    fn span_slow(&self, f: impl FnOnce() -> Payload) -> Span<'_> {
        let p = f();
        let op = p.kind_name();
        self.push(Phase::Begin, p);
        Span {
            open: Some(Box::new(OpenSpan {
                tracer: self,
                op,
                result: None,
            })),
        }
    }

    /// Runs `body` as an operation: with recording off, just `body()` (one load and a
    /// branch); on, between the begin event `payload()` and an end whose result is
    /// `result(&what body returned)`.
    ///
    /// With recording off the site keeps one null word alive across `body` and tests
    /// it after (cachegrind, docs/TRACES.md "Cost"). A panic inside `body` ends the
    /// operation with `done` as the span unwinds (the run failed anyway).
    #[inline(always)]
    pub fn traced<R>(
        &self,
        payload: impl FnOnce() -> Payload,
        body: impl FnOnce() -> R,
        result: impl FnOnce(&R) -> Text,
    ) -> R {
        // `body` has this one call site, so it inlines here whatever its size; a
        // second one on a recording path made the compiler keep it out of line
        // (docs/TRACES.md, "Cost"). With recording off the span is a null word.
        let mut span = self.span(payload);
        let r = body();
        span.result(|| result(&r));
        r
    }

    /// Records that a scheduling point of an exploration chose `chosen` among
    /// `runnable`, on track `scheduler` (called from the explorer's scheduler, where no
    /// task is running; see [`crate::check::on_every_schedule_choice`]).
    pub fn schedule_choice(&self, chosen: &str, runnable: &[String], preemption: bool) {
        if self.on() {
            self.push_as(
                TaskKey::Scheduler,
                Phase::Instant,
                Payload::Schedule {
                    chosen: chosen.to_string().into(),
                    runnable: runnable.iter().map(|r| r.clone().into()).collect(),
                    preemption,
                },
            );
        }
    }

    #[cold]
    #[inline(never)]
    fn push(&self, phase: Phase, payload: Payload) {
        self.push_as(TaskKey::current(), phase, payload);
    }

    fn push_as(&self, key: TaskKey, phase: Phase, payload: Payload) {
        let mut r = self.record();
        // Taken under the lock, so pushed events stay in time order; only a batch's
        // changes, timed without it, are merged in later.
        let t = self.next_t.fetch_add(1, Ordering::Relaxed);
        let task = r.task(key);
        let task_index = u32::try_from(task).unwrap_or(u32::MAX);
        let tr = &mut r.tracks[task];
        if phase == Phase::End {
            tr.depth = tr.depth.saturating_sub(1);
        }
        let depth = tr.depth;
        if phase == Phase::Begin {
            tr.depth += 1;
        }
        let track = tr.name;
        r.events.push(Stored {
            t,
            track,
            depth,
            task: task_index,
            phase,
            payload,
        });
    }

    /// The lock of PTE table `table` of mm `mm` was taken with recording on: the PTE
    /// changes of this hold are recorded ([`record_pte`](Self::record_pte)) and join
    /// the record when it is released ([`ptl_unlocked`](Self::ptl_unlocked)).
    #[cold]
    #[inline(never)]
    pub(crate) fn ptl_locked(&self, table: u64, mm: u64) {
        HOLDS.with_borrow_mut(|holds| {
            let hold = Hold {
                tracer: self.id,
                table,
                mm,
                pending: Vec::new(),
            };
            match holds.iter_mut().find(|h| h.tracer == 0) {
                Some(free) => {
                    (free.tracer, free.table, free.mm) = (hold.tracer, hold.table, hold.mm);
                }
                None => holds.push(hold),
            }
        });
    }

    /// Records the change of the PTE for `addr` (page aligned) in locked table `table`
    /// from the raw word `old` to `new`, if the hold is traced and recording is on. It
    /// takes its logical time now and joins the record when the lock is released.
    #[cold]
    #[inline(never)]
    pub(crate) fn record_pte(&self, table: u64, addr: u64, old: u64, new: u64) {
        if !self.on() {
            return;
        }
        HOLDS.with_borrow_mut(|holds| {
            if let Some(h) = holds
                .iter_mut()
                .find(|h| h.tracer == self.id && h.table == table)
            {
                let t = self.next_t.fetch_add(1, Ordering::Relaxed);
                h.pending.push(PendingPte {
                    t,
                    mm: h.mm,
                    addr,
                    old,
                    new,
                });
            }
        });
    }

    /// The lock of table `table` is about to be released: its hold's changes join the
    /// record (one lock of it), on the track of the calling task, the one that made
    /// them; called before the release, so that whoever takes the lock next records
    /// after them. Nothing happens if the hold was not traced.
    #[cold]
    #[inline(never)]
    pub(crate) fn ptl_unlocked(&self, table: u64) {
        HOLDS.with_borrow_mut(|holds| {
            let Some(h) = holds
                .iter_mut()
                .find(|h| h.tracer == self.id && h.table == table)
            else {
                return;
            };
            h.tracer = 0;
            if !h.pending.is_empty() {
                self.record().merge_ptes(TaskKey::current(), &h.pending);
                h.pending.clear();
            }
        });
    }

    /// Every event recorded so far. The PTE changes made under a page-table lock that
    /// another thread still holds are not among them yet: they join the record, at
    /// their times, when that lock is released.
    pub fn events(&self) -> Vec<TraceEvent> {
        let r = self.record();
        r.events.iter().map(|s| r.event(s.clone())).collect()
    }

    /// Every event recorded so far, clearing the record (logical time goes on).
    pub fn take(&self) -> Vec<TraceEvent> {
        let mut r = self.record();
        // Keep the room: a caller that takes the record in rounds should not pay for
        // growing it again each round.
        let room = r.events.capacity();
        let stored = std::mem::replace(&mut r.events, Vec::with_capacity(room));
        stored.into_iter().map(|s| r.event(s)).collect()
    }

    /// Drops every event recorded so far, keeping the record's memory for the next
    /// ones (logical time goes on): for a caller that records in rounds and reads
    /// each round where it is, with [`events_since`](Self::events_since).
    pub fn clear(&self) {
        self.record().events.clear();
    }

    /// How many events have been recorded (the next event's `t`).
    pub fn now(&self) -> u64 {
        self.next_t.load(Ordering::Relaxed)
    }

    /// The events from logical time `since` on.
    pub fn events_since(&self, since: u64) -> Vec<TraceEvent> {
        let r = self.record();
        // Times only grow: the events since `since` are a tail of the record.
        let from = r.events.partition_point(|e| e.t < since);
        r.events[from..]
            .iter()
            .map(|s| r.event(s.clone()))
            .collect()
    }
}

impl fmt::Debug for Tracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracer")
            .field("level", &self.level())
            .field("events", &self.record().events.len())
            .finish()
    }
}

/// An open operation of a [`Tracer`]; dropping it records the operation's end.
#[must_use = "dropping the span ends the operation at once"]
pub struct Span<'a> {
    // One word: with recording off a span is a null pointer that every notifier range
    // carries and drops with a test (a span of its three fields cost some 25
    // instructions per range; docs/TRACES.md, "Cost"). Recording pays an allocation
    // per operation.
    open: Option<Box<OpenSpan<'a>>>,
}

/// What a recording span keeps until its end.
struct OpenSpan<'a> {
    tracer: &'a Tracer,
    op: &'static str,
    result: Option<Text>,
}

impl Span<'_> {
    /// Whether the operation is being recorded (to skip building a result).
    #[inline(always)]
    pub fn is_recording(&self) -> bool {
        self.open.is_some()
    }

    /// Sets the result its end records, built by `f` only if recording.
    #[inline(always)]
    pub fn result(&mut self, f: impl FnOnce() -> Text) {
        if let Some(open) = &mut self.open {
            open.result = Some(f());
        }
    }
}

impl Drop for Span<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.open.is_some() {
            self.end();
        }
    }
}

impl Span<'_> {
    // Out of line, so that with recording off dropping a span is a test of `open`.
    #[cold]
    #[inline(never)]
    fn end(&mut self) {
        if let Some(open) = self.open.take() {
            let OpenSpan { tracer, op, result } = *open;
            tracer.push(
                Phase::End,
                Payload::End {
                    op: op.into(),
                    result: result.unwrap_or(Text::Borrowed("done")),
                },
            );
        }
    }
}

impl fmt::Debug for Span<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Span")
            .field("op", &self.open.as_ref().map(|o| o.op))
            .finish()
    }
}

/// The result text of a `Result` whose error has a Linux name.
pub(crate) fn result_text<T>(r: &Result<T, crate::Errno>) -> Text {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.name().into(),
    }
}

/// What a view says about the record beyond its events: the graphical views show a
/// title and mark a failing schedule's violation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceInfo {
    /// The run, for a title (`nouveau-starvation-after-revocation under linux-6.15`).
    pub title: String,
    /// The violation of a failing schedule (explore, replay), as the explorer words it.
    pub violation: Option<String>,
}

/// A view of a record, chosen by the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// `.txt`: [`text::render`].
    Text,
    /// `.jsonl`: [`jsonl::render`].
    JsonLines,
    /// `.json`: [`chrome::render`] (Perfetto / Chrome trace events).
    Chrome,
    /// `.html`: [`html::render`] (the timeline).
    Html,
}

/// Why no view fits a file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// No view has this extension (or there is none).
    #[error(
        "no trace view for `{0}`; the extension picks it: .txt (text), .jsonl (JSON lines), .json (Perfetto / Chrome trace events) or .html (timeline)"
    )]
    Unknown(String),
}

impl View {
    /// Every view, in the order the docs list them.
    pub const ALL: [View; 4] = [View::Text, View::JsonLines, View::Chrome, View::Html];

    /// The view for an output file, from its extension (case-insensitive): the one
    /// place that maps extensions to views.
    pub fn for_path(path: &std::path::Path) -> Result<View, ViewError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("txt") => Ok(View::Text),
            Some("jsonl") => Ok(View::JsonLines),
            Some("json") => Ok(View::Chrome),
            Some("html") => Ok(View::Html),
            _ => Err(ViewError::Unknown(path.display().to_string())),
        }
    }

    /// The extension of this view's files (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            View::Text => "txt",
            View::JsonLines => "jsonl",
            View::Chrome => "json",
            View::Html => "html",
        }
    }

    /// What the view is, in words (`HTML timeline`).
    pub fn description(self) -> &'static str {
        match self {
            View::Text => "text",
            View::JsonLines => "JSON lines",
            View::Chrome => "Perfetto / Chrome trace-event JSON",
            View::Html => "HTML timeline",
        }
    }

    /// The record in this view, untitled.
    pub fn render(self, events: &[TraceEvent]) -> String {
        self.render_with(events, &TraceInfo::default())
    }

    /// The record in this view, with a title and a violation for the views that show
    /// them (the text and JSON-lines views are the events alone).
    pub fn render_with(self, events: &[TraceEvent], info: &TraceInfo) -> String {
        match self {
            View::Text => text::render(events),
            View::JsonLines => jsonl::render(events),
            View::Chrome => chrome::render(events, info),
            View::Html => html::render(events, info),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pte_t(events: &[TraceEvent]) -> Vec<(u64, u32, u64)> {
        events
            .iter()
            .filter_map(|e| match e.payload {
                Payload::Pte { addr, .. } => Some((e.t, e.depth, addr)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_hold_joins_the_record_at_its_times_and_depths() {
        let tr = Tracer::new();
        tr.set_level(TraceLevel::Normal);
        let outer = tr.span(|| Payload::Exit { mm: 1 });
        tr.ptl_locked(5, 1);
        tr.record_pte(5, 0x1000, 0, 0x1003);
        // Recorded by the same task while the hold is open: an instant, then an
        // operation that is still open at the next change, then its end.
        tr.instant(|| Payload::FolioUnlock { pfn: 7 });
        let inner = tr.span(|| Payload::Reclaim { pfn: 7 });
        tr.record_pte(5, 0x2000, 0x1003, 0);
        drop(inner);
        tr.record_pte(5, 0x3000, 0, 0x3003);
        // Another thread's event, recorded while the hold is open, keeps its place too.
        std::thread::scope(|s| {
            s.spawn(|| tr.instant(|| Payload::FolioWait { pfn: 9 }));
        });
        // A table this thread holds untraced: its changes are not recorded.
        tr.record_pte(6, 0x5000, 0, 0x5003);
        tr.record_pte(5, 0x4000, 0, 0x4003);
        assert_eq!(pte_t(&tr.events()), []);
        tr.ptl_unlocked(5);
        drop(outer);
        let ev = tr.events();
        let times: Vec<u64> = ev.iter().map(|e| e.t).collect();
        assert_eq!(times, (0..10).collect::<Vec<_>>());
        assert_eq!(
            pte_t(&ev),
            [
                (1, 1, 0x1000),
                (4, 2, 0x2000),
                (6, 1, 0x3000),
                (8, 1, 0x4000)
            ]
        );
        assert_eq!(ev[7].payload.kind_name(), "folio_wait");
        assert_ne!(ev[7].track, ev[8].track);
        assert_eq!(
            ev.iter().map(|e| e.payload.kind_name()).collect::<Vec<_>>(),
            [
                "exit",
                "pte",
                "folio_unlock",
                "reclaim",
                "pte",
                "end",
                "pte",
                "folio_wait",
                "pte",
                "end"
            ]
        );
        // The hold is gone: releasing it again records nothing.
        tr.ptl_unlocked(5);
        assert_eq!(tr.events().len(), 10);
    }

    #[test]
    fn holds_of_two_tracers_on_one_thread_stay_apart() {
        let (a, b) = (Tracer::new(), Tracer::new());
        a.set_level(TraceLevel::Normal);
        b.set_level(TraceLevel::Normal);
        a.ptl_locked(5, 1);
        b.ptl_locked(5, 2);
        a.record_pte(5, 0x1000, 0, 0x1003);
        b.record_pte(5, 0x2000, 0, 0x2003);
        b.ptl_unlocked(5);
        a.ptl_unlocked(5);
        let mm_addr = |tr: &Tracer| {
            tr.events()
                .iter()
                .filter_map(|e| match e.payload {
                    Payload::Pte { mm, addr, .. } => Some((mm, addr)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(mm_addr(&a), [(1, 0x1000)]);
        assert_eq!(mm_addr(&b), [(2, 0x2000)]);
    }

    #[test]
    fn a_change_is_not_recorded_once_recording_is_off() {
        let tr = Tracer::new();
        tr.set_level(TraceLevel::Normal);
        tr.ptl_locked(5, 1);
        tr.set_level(TraceLevel::Off);
        tr.record_pte(5, 0x1000, 0, 0x1003);
        tr.ptl_unlocked(5);
        assert!(tr.events().is_empty());
        assert_eq!(tr.now(), 0);
    }
}
