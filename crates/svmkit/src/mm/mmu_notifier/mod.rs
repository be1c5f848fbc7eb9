//! MMU notifiers: how every CPU-side page-table change reaches secondary MMUs
//! (Linux: `mm/mmu_notifier.c`, `include/linux/mmu_notifier.h`; spec section 5).
//!
//! A device that mirrors a process's page table (a GPU, an IOMMU, dmirror) must drop
//! its copy of a translation before the CPU's changes. The mm brackets every such
//! change with an *invalidation*: [`MmuNotifierRange::invalidate_range_start`] before
//! touching the page tables and the returned guard's drop (`invalidate_range_end`)
//! after. Two kinds of listener exist:
//!
//! * **classic subscriptions** ([`Mm::mmu_notifier_register`]): `invalidate_range_start`,
//!   `invalidate_range_end` and `release` for the whole address space;
//! * **interval notifiers** ([`Mm::mmu_interval_notifier_insert`], in `interval.rs`): one
//!   callback per invalidation that overlaps the interval, plus a sequence count that
//!   lets a driver detect, under its own lock, that a translation it read may be stale
//!   (`read_begin` ... driver lock ... `read_retry`).
//!
//! Interval callbacks run before classic ones on start; on end the interval side is
//! closed first, then classic `invalidate_range_end`s run. Nouveau's locking relies on
//! this order.
//!
//! Each range carries an [`MmuNotifierEvent`] saying why it happens and an optional
//! [`Owner`], the token a driver passes to `make_device_exclusive` so that it can
//! recognise, and ignore, the invalidation its own request causes.
//!
//! # Invariants
//! * Every started range is ended exactly once (the guard's drop), also on error
//!   paths; a non-blocking start that fails has already undone itself.
//! * While any invalidation that hit at least one interval is running, the mm's
//!   sequence is odd and the interval tree does not change; inserts and removes made
//!   meanwhile are applied when the last such invalidation ends.

mod interval;
mod interval_tree;
mod recorder;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use interval::{
    FirstPass, InvalidateFinish, MmuIntervalNotifier, MmuIntervalNotifierOps, SetSeqUnderLock,
};
pub use interval_tree::{IntervalTree, NodeId, Overlapping};
pub use recorder::{NotifierCall, NotifierCallKind, RecordingNotifier};

use super::mm_types::Mm;
use crate::error::Errno;
use crate::sync::{Arc, Condvar, Mutex};
use interval::ItreeState;

/// Why a range is being invalidated (Linux: `enum mmu_notifier_event`).
#[doc(alias = "mmu_notifier_event")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MmuNotifierEvent {
    /// munmap, exit, or mremap moving the range (Linux: `MMU_NOTIFY_UNMAP`).
    Unmap,
    /// PTEs cleared: MADV_DONTNEED, COW break, reclaim, migration, THP split, and (6.15)
    /// the device-exclusive restore (Linux: `MMU_NOTIFY_CLEAR`).
    Clear,
    /// Protection change where the VMA's protection says it all: mprotect (Linux:
    /// `MMU_NOTIFY_PROTECTION_VMA`).
    ProtectionVma,
    /// Per-page protection change, look at the page table: fork's write-protect (Linux:
    /// `MMU_NOTIFY_PROTECTION_PAGE`).
    ProtectionPage,
    /// Soft-dirty clearing (Linux: `MMU_NOTIFY_SOFT_DIRTY`).
    SoftDirty,
    /// The address space is going away (Linux: `MMU_NOTIFY_RELEASE`).
    Release,
    /// Migration to or from device memory; owner = the pgmap owner (Linux:
    /// `MMU_NOTIFY_MIGRATE`).
    Migrate,
    /// A PTE is converted to device-exclusive; owner = the caller of
    /// `make_device_exclusive` (5.14 to 6.14 also: the restore, owner none) (Linux:
    /// `MMU_NOTIFY_EXCLUSIVE`).
    Exclusive,
}

impl MmuNotifierEvent {
    /// Every event, in Linux's numbering order.
    pub const ALL: [MmuNotifierEvent; 8] = [
        MmuNotifierEvent::Unmap,
        MmuNotifierEvent::Clear,
        MmuNotifierEvent::ProtectionVma,
        MmuNotifierEvent::ProtectionPage,
        MmuNotifierEvent::SoftDirty,
        MmuNotifierEvent::Release,
        MmuNotifierEvent::Migrate,
        MmuNotifierEvent::Exclusive,
    ];

    /// The value of the Linux enumerator.
    pub fn raw(self) -> u32 {
        self as u32
    }

    /// The Linux enumerator's name (`MMU_NOTIFY_CLEAR`, ...).
    pub fn linux_name(self) -> &'static str {
        match self {
            MmuNotifierEvent::Unmap => "MMU_NOTIFY_UNMAP",
            MmuNotifierEvent::Clear => "MMU_NOTIFY_CLEAR",
            MmuNotifierEvent::ProtectionVma => "MMU_NOTIFY_PROTECTION_VMA",
            MmuNotifierEvent::ProtectionPage => "MMU_NOTIFY_PROTECTION_PAGE",
            MmuNotifierEvent::SoftDirty => "MMU_NOTIFY_SOFT_DIRTY",
            MmuNotifierEvent::Release => "MMU_NOTIFY_RELEASE",
            MmuNotifierEvent::Migrate => "MMU_NOTIFY_MIGRATE",
            MmuNotifierEvent::Exclusive => "MMU_NOTIFY_EXCLUSIVE",
        }
    }
}

impl fmt::Display for MmuNotifierEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.linux_name())
    }
}

/// An opaque, comparable token naming who caused an invalidation (Linux: the
/// `void *owner` of a notifier range: nouveau passes its `drm->dev`, UVM its
/// `va_space`). Only equality matters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner(u64);

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

impl Owner {
    /// A token different from every other token `new` returned in this process.
    #[expect(
        clippy::new_without_default,
        reason = "a default token would have to be fresh too; `new` says so"
    )]
    pub fn new() -> Owner {
        Owner(NEXT_OWNER.fetch_add(1, Ordering::Relaxed))
    }

    /// A token with a chosen value (for scenarios that name owners by number). Tokens
    /// from [`Owner::new`] start at 1 and grow, so small hand-picked values can collide
    /// with them; pick values from the top of the range for hand-made owners.
    pub const fn from_raw(raw: u64) -> Owner {
        Owner(raw)
    }

    /// The token's value.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({:#x})", self.0)
    }
}

/// One invalidation: which mm, which addresses (`start..end`, end exclusive), why, on
/// whose behalf, and whether listeners may sleep.
///
/// Linux: `struct mmu_notifier_range`.
#[doc(alias = "mmu_notifier_range")]
#[derive(Clone, Copy)]
pub struct MmuNotifierRange<'a> {
    /// The address space whose page tables change.
    pub mm: &'a Mm,
    /// First address (inclusive).
    pub start: u64,
    /// End address (exclusive; `u64::MAX` stands for Linux's `ULONG_MAX`).
    pub end: u64,
    /// Why.
    pub event: MmuNotifierEvent,
    /// On whose behalf (none for almost every event).
    pub owner: Option<Owner>,
    /// Whether callbacks may sleep (Linux: `MMU_NOTIFIER_RANGE_BLOCKABLE`).
    pub blockable: bool,
}

impl<'a> MmuNotifierRange<'a> {
    /// A blockable range without owner.
    ///
    /// Linux: `mmu_notifier_range_init()`.
    #[doc(alias = "mmu_notifier_range_init")]
    pub fn new(mm: &'a Mm, event: MmuNotifierEvent, start: u64, end: u64) -> Self {
        MmuNotifierRange {
            mm,
            start,
            end,
            event,
            owner: None,
            blockable: true,
        }
    }

    /// The same range carrying `owner`.
    ///
    /// Linux: `mmu_notifier_range_init_owner()`.
    #[doc(alias = "mmu_notifier_range_init_owner")]
    pub fn with_owner(mut self, owner: Owner) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Whether callbacks may sleep.
    ///
    /// Linux: `mmu_notifier_range_blockable()`.
    #[doc(alias = "mmu_notifier_range_blockable")]
    pub fn is_blockable(&self) -> bool {
        self.blockable
    }

    /// Whether `[start, last]` (inclusive) overlaps this range.
    pub fn overlaps(&self, start: u64, last: u64) -> bool {
        start < self.end && last >= self.start && start <= last
    }

    /// Tells every listener the range is about to change and returns the guard whose
    /// drop tells them it has changed. Callbacks may sleep; the caller must not hold a
    /// page-table lock or a driver lock.
    ///
    /// Linux: `mmu_notifier_invalidate_range_start()`.
    #[doc(alias = "mmu_notifier_invalidate_range_start")]
    pub fn invalidate_range_start(mut self) -> InvalidateRange<'a> {
        self.blockable = true;
        let span = self.trace_span();
        let active = self.mm.mmu_notifiers().invalidate_start(&self);
        debug_assert!(active.is_ok(), "a blockable start cannot be refused");
        InvalidateRange {
            range: self,
            active: active.unwrap_or_default(),
            _span: span,
        }
    }

    /// The trace's `notifier` operation, from the start to the end of the range.
    fn trace_span(&self) -> crate::trace::Span<'a> {
        let mm: &'a Mm = self.mm;
        let tracer = mm.mem().tracer();
        tracer.span(|| crate::trace::Payload::Notifier {
            mm: mm.id(),
            event: self.event.linux_name().into(),
            owner: self.owner.map(|o| tracer.owner_name(o)),
            start: self.start,
            end: self.end,
            blockable: self.blockable,
        })
    }

    /// Like [`invalidate_range_start`](Self::invalidate_range_start) but listeners may
    /// not sleep and may refuse with `EAGAIN`; on refusal everything already started is
    /// undone and there is nothing to end.
    ///
    /// Linux: `mmu_notifier_invalidate_range_start_nonblock()`.
    #[doc(alias = "mmu_notifier_invalidate_range_start_nonblock")]
    pub fn invalidate_range_start_nonblock(mut self) -> Result<InvalidateRange<'a>, Errno> {
        self.blockable = false;
        let mut span = self.trace_span();
        let active = match self.mm.mmu_notifiers().invalidate_start(&self) {
            Ok(a) => a,
            Err(e) => {
                span.result(|| e.name().into());
                return Err(e);
            }
        };
        Ok(InvalidateRange {
            range: self,
            active,
            _span: span,
        })
    }
}

impl fmt::Debug for MmuNotifierRange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmuNotifierRange")
            .field("mm", &self.mm.id())
            .field("start", &format_args!("{:#x}", self.start))
            .field("end", &format_args!("{:#x}", self.end))
            .field("event", &self.event)
            .field("owner", &self.owner)
            .field("blockable", &self.blockable)
            .finish()
    }
}

/// What a started invalidation must undo at its end.
#[derive(Debug, Default, Clone, Copy)]
struct Started {
    /// The interval side was entered (`active_invalidate_ranges` raised).
    itree: bool,
    /// Classic subscribers were told to start.
    classic: bool,
}

/// A started invalidation; dropping it ends it (Linux:
/// `mmu_notifier_invalidate_range_end()`), so starts and ends always pair.
#[must_use = "dropping the guard ends the invalidation at once"]
pub struct InvalidateRange<'a> {
    range: MmuNotifierRange<'a>,
    active: Started,
    /// The trace's operation; a field, so it ends after `Drop` ran the end callbacks.
    _span: crate::trace::Span<'a>,
}

impl<'a> InvalidateRange<'a> {
    /// The range being invalidated.
    pub fn range(&self) -> &MmuNotifierRange<'a> {
        &self.range
    }

    /// Ends the invalidation now (the same as dropping the guard).
    ///
    /// Linux: `mmu_notifier_invalidate_range_end()`.
    #[doc(alias = "mmu_notifier_invalidate_range_end")]
    pub fn end(self) {}
}

impl Drop for InvalidateRange<'_> {
    fn drop(&mut self) {
        self.range
            .mm
            .mmu_notifiers()
            .invalidate_end(&self.range, self.active);
    }
}

impl fmt::Debug for InvalidateRange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InvalidateRange").field(&self.range).finish()
    }
}

/// A classic, whole-address-space subscriber (Linux: `struct mmu_notifier_ops`).
///
/// Callbacks run without page-table locks held but possibly under the mmap lock and a
/// folio lock: they may take their driver's lock, never the mmap lock or a folio lock.
pub trait MmuNotifierOps: Send + Sync {
    /// Before the range changes. In a non-blockable range (`!range.blockable`) a
    /// subscriber that would have to sleep returns `Err(Errno::EAGAIN)`; any other error
    /// is a bug of the subscriber (Linux WARNs) and is treated as success.
    ///
    /// Linux: `invalidate_range_start`.
    fn invalidate_range_start(&self, range: &MmuNotifierRange<'_>) -> Result<(), Errno> {
        let _ = range;
        Ok(())
    }

    /// After the range changed.
    ///
    /// Linux: `invalidate_range_end`.
    fn invalidate_range_end(&self, range: &MmuNotifierRange<'_>) {
        let _ = range;
    }

    /// The address space is being torn down (or this subscriber unregistered while it
    /// was still live): drop every mirrored translation. Runs while the subscription
    /// is still hooked (other invalidations may still reach it); as in Linux, an
    /// unregister racing the exit may call it a second time. Subscribers without a
    /// `release` (nouveau's) keep the default, which does nothing.
    ///
    /// Linux: `release`.
    fn release(&self, mm: &Mm) {
        let _ = mm;
    }

    /// Whether the device accessed any page of `[start, end)` since it was last
    /// asked, forgetting it (the device's accessed bits are cleared). Subscribers
    /// without the op keep the default, which says no: Linux's interval notifiers
    /// (dmirror's, nouveau's) never get this call, and only classic subscribers that
    /// track access (KVM) implement it.
    ///
    /// Linux: `clear_young` (and `clear_flush_young`, which only adds a TLB flush).
    fn clear_young(&self, mm: &Mm, start: u64, end: u64) -> bool {
        let _ = (mm, start, end);
        false
    }

    /// Whether the device accessed the page at `addr`, without forgetting it.
    ///
    /// Linux: `test_young`.
    fn test_young(&self, mm: &Mm, addr: u64) -> bool {
        let _ = (mm, addr);
        false
    }

    /// The subscriber's name in traces (a device's name); `None` (the default) shows
    /// it as `classic#N`, N its registration number.
    fn trace_name(&self) -> Option<String> {
        None
    }
}

/// A classic subscriber's name in traces.
fn classic_name(id: MmuNotifierId, ops: &Arc<dyn MmuNotifierOps>) -> String {
    ops.trace_name()
        .unwrap_or_else(|| format!("classic#{}", id.0))
}

/// Names one classic registration, for [`Mm::mmu_notifier_unregister`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MmuNotifierId(u64);

/// Classic subscribers plus the SRCU-like count of callers walking them.
#[derive(Default)]
struct ClassicList {
    subs: Vec<(MmuNotifierId, Arc<dyn MmuNotifierOps>)>,
    /// Walks in progress (Linux: SRCU read sides); unregister waits for zero.
    walkers: usize,
}

/// The per-mm notifier state (Linux: `struct mmu_notifier_subscriptions`).
pub(crate) struct MmuNotifierSubscriptions {
    /// Linux: `mm_has_notifiers()`; set once, under the mmap lock in write mode, by the
    /// first registration, so invalidations of an mm nobody listens to cost one load.
    registered: AtomicBool,
    classic: Mutex<ClassicList>,
    classic_idle: Condvar,
    next_id: AtomicU64,
    /// Linux: `subscriptions->lock` and what it protects.
    pub(super) itree: Mutex<ItreeState>,
    /// Linux: `subscriptions->wq`: read_begin and remove wait here for the sequence to
    /// move on.
    pub(super) wq: Condvar,
    /// Interval callbacks that returned false in a blockable range (Linux WARNs).
    bad_returns: AtomicU64,
}

impl MmuNotifierSubscriptions {
    pub(crate) fn new() -> Self {
        MmuNotifierSubscriptions {
            registered: AtomicBool::new(false),
            classic: Mutex::new(ClassicList::default()),
            classic_idle: Condvar::new(),
            next_id: AtomicU64::new(1),
            itree: Mutex::new(ItreeState::new()),
            wq: Condvar::new(),
            bad_returns: AtomicU64::new(0),
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The interval state's invariants ([`ItreeState::check`]), read without taking
    /// the lock: `None` while it is held (the state may be mid-change).
    pub(crate) fn check_now(&self) -> Option<Result<(), String>> {
        self.itree.peek(ItreeState::check)
    }

    /// Linux: `__mmu_notifier_invalidate_range_start()`.
    fn invalidate_start(&self, range: &MmuNotifierRange<'_>) -> Result<Started, Errno> {
        if !self.registered.load(Ordering::Acquire) {
            return Ok(Started::default());
        }
        self.itree_invalidate(range)?;
        let mut started = Started {
            itree: true,
            classic: false,
        };
        match self.classic_start(range) {
            Ok(()) => started.classic = true,
            Err(e) => {
                // The caller will not call end: close the interval side ourselves.
                self.itree_inv_end();
                return Err(e);
            }
        }
        Ok(started)
    }

    /// Linux: `__mmu_notifier_invalidate_range_end()`.
    fn invalidate_end(&self, range: &MmuNotifierRange<'_>, started: Started) {
        if started.itree {
            self.itree_inv_end();
        }
        if started.classic {
            self.classic_walk(|_, ops| ops.invalidate_range_end(range));
        }
    }

    /// Runs `f` on a snapshot of the classic list, counted as an SRCU read side.
    fn classic_walk(&self, mut f: impl FnMut(MmuNotifierId, &Arc<dyn MmuNotifierOps>)) {
        let subs: Vec<(MmuNotifierId, Arc<dyn MmuNotifierOps>)> = {
            let mut list = self.classic.lock();
            if list.subs.is_empty() {
                return;
            }
            list.walkers += 1;
            list.subs
                .iter()
                .map(|(id, s)| (*id, Arc::clone(s)))
                .collect()
        };
        for (id, s) in &subs {
            f(*id, s);
        }
        let mut list = self.classic.lock();
        list.walkers -= 1;
        if list.walkers == 0 {
            self.classic_idle.notify_all();
        }
    }

    /// Linux: `mn_hlist_invalidate_range_start()`: on a refusal, the subscribers that
    /// already started get their end so that nothing stays half-open.
    fn classic_start(&self, range: &MmuNotifierRange<'_>) -> Result<(), Errno> {
        let mut started: Vec<Arc<dyn MmuNotifierOps>> = Vec::new();
        let mut refused = None;
        let tracer = range.mm.mem().tracer();
        self.classic_walk(|id, ops| {
            if refused.is_some() {
                return;
            }
            let decision = match ops.invalidate_range_start(range) {
                Err(Errno::EAGAIN) if !range.blockable => {
                    refused = Some(Errno::EAGAIN);
                    crate::trace::Decision::Eagain
                }
                _ => {
                    started.push(Arc::clone(ops));
                    crate::trace::Decision::Done
                }
            };
            tracer.instant(|| crate::trace::Payload::Subscriber {
                subscriber: classic_name(id, ops).into(),
                callback: "start".into(),
                cur_seq: None,
                decision,
            });
        });
        match refused {
            None => Ok(()),
            Some(e) => {
                for ops in started {
                    ops.invalidate_range_end(range);
                }
                Err(e)
            }
        }
    }

    /// Waits until no invalidation is walking the classic list (Linux:
    /// `synchronize_srcu()`).
    fn synchronize(&self) {
        let mut list = self.classic.lock();
        while list.walkers > 0 {
            list = self.classic_idle.wait(list);
        }
    }
}

impl fmt::Debug for MmuNotifierSubscriptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let classic = self.classic.lock().subs.len();
        let it = self.itree.lock();
        f.debug_struct("MmuNotifierSubscriptions")
            .field("classic", &classic)
            .field("intervals", &it.len())
            .field("invalidate_seq", &it.invalidate_seq())
            .finish_non_exhaustive()
    }
}

impl Mm {
    /// Asks every classic subscriber whether the device accessed `[start, end)`,
    /// clearing its accessed state; true if any says so (all are asked).
    ///
    /// Linux: `mmu_notifier_clear_young()` (also stands for
    /// `mmu_notifier_clear_flush_young()`).
    pub fn mmu_notifier_clear_young(&self, start: u64, end: u64) -> bool {
        let mut young = false;
        self.notifiers
            .classic_walk(|_, ops| young |= ops.clear_young(self, start, end));
        young
    }

    /// Asks the classic subscribers whether the device accessed `addr`; stops at the
    /// first yes.
    ///
    /// Linux: `mmu_notifier_test_young()`.
    pub fn mmu_notifier_test_young(&self, addr: u64) -> bool {
        let mut young = false;
        self.notifiers.classic_walk(|_, ops| {
            if !young {
                young = ops.test_young(self, addr);
            }
        });
        young
    }

    pub(crate) fn mmu_notifiers(&self) -> &MmuNotifierSubscriptions {
        &self.notifiers
    }

    /// Marks the mm as listened to (Linux: the allocation of
    /// `mm->notifier_subscriptions` in `__mmu_notifier_register()`, done under the mmap
    /// lock in write mode so that no invalidation is half-way through when listeners
    /// appear).
    fn mmu_notifier_mark_registered(&self) {
        let subs = self.mmu_notifiers();
        if !subs.registered.load(Ordering::Acquire) {
            let _w = self.mmap_write_lock();
            subs.registered.store(true, Ordering::Release);
        }
    }

    /// Subscribes `ops` to every invalidation of this mm and to its release. `EINVAL` if
    /// the mm has no users any more (Linux BUGs).
    ///
    /// Takes the mmap lock in write mode the first time anything subscribes to this mm,
    /// so the caller must not hold it.
    ///
    /// Linux: `mmu_notifier_register()`.
    pub fn mmu_notifier_register(
        &self,
        ops: Arc<dyn MmuNotifierOps>,
    ) -> Result<MmuNotifierId, Errno> {
        if self.mm_users() == 0 {
            return Err(Errno::EINVAL);
        }
        self.mmu_notifier_mark_registered();
        let subs = self.mmu_notifiers();
        let id = MmuNotifierId(subs.next_id());
        subs.classic.lock().subs.push((id, ops));
        Ok(id)
    }

    /// Removes a classic subscription. If it is still hooked (the mm was not yet
    /// released), the subscriber's `release` runs first, while it is still hooked, and
    /// then it is unhooked (as Linux does); when this returns no callback of it is
    /// running or will run. `ENOENT` if `id` is not hooked (already unregistered or
    /// put, or unhooked at exit).
    ///
    /// Linux: `mmu_notifier_unregister()`.
    pub fn mmu_notifier_unregister(&self, id: MmuNotifierId) -> Result<(), Errno> {
        let subs = self.mmu_notifiers();
        let ops = {
            let mut list = subs.classic.lock();
            let ops = list
                .subs
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, s)| Arc::clone(s))
                .ok_or(Errno::ENOENT)?;
            // Linux: the release runs inside an SRCU read side, so exit waits for it.
            list.walkers += 1;
            ops
        };
        ops.release(self);
        {
            let mut list = subs.classic.lock();
            list.walkers -= 1;
            if list.walkers == 0 {
                subs.classic_idle.notify_all();
            }
            // Exit may have unhooked it meanwhile (Linux: hlist_del_init_rcu()).
            list.subs.retain(|(i, _)| *i != id);
        }
        subs.synchronize();
        Ok(())
    }

    /// Drops a classic subscription without calling its `release`: it is unhooked (if
    /// exit has not unhooked it already) and freed once no invalidation still runs its
    /// callbacks (Linux: after an SRCU grace period, `free_notifier`; here the last
    /// reference to the ops goes, so their `Drop` is the `free_notifier`). Does not
    /// wait. An id that is not hooked is ignored, as Linux's put of a subscription
    /// that exit already unhooked.
    ///
    /// Linux: `mmu_notifier_put()`.
    pub fn mmu_notifier_put(&self, id: MmuNotifierId) {
        let removed = {
            let mut list = self.mmu_notifiers().classic.lock();
            list.subs
                .iter()
                .position(|(i, _)| *i == id)
                .map(|pos| list.subs.remove(pos))
        };
        drop(removed);
    }

    /// Number of classic subscriptions.
    pub fn mmu_notifier_count(&self) -> usize {
        self.mmu_notifiers().classic.lock().subs.len()
    }

    /// The mm-wide interval sequence (Linux: `subscriptions->invalidate_seq`): even
    /// while no invalidation that hit an interval runs, odd otherwise.
    pub fn mmu_interval_seq(&self) -> u64 {
        self.mmu_notifiers().itree.lock().invalidate_seq()
    }

    /// Number of interval notifiers in the tree (queued inserts not counted).
    pub fn mmu_interval_notifier_count(&self) -> usize {
        self.mmu_notifiers().itree.lock().len()
    }

    /// Interval callbacks that returned `false` from a blockable range (a driver bug;
    /// Linux WARNs and carries on, as the model does).
    pub fn mmu_notifier_bad_returns(&self) -> u64 {
        self.mmu_notifiers().bad_returns.load(Ordering::Relaxed)
    }

    /// The address space is going away: every interval notifier gets `Release` over
    /// the whole space; then every classic subscriber its `release`, while all of them
    /// are still hooked; then every classic subscription is unhooked, so exit's later
    /// unmap reaches interval notifiers only. Interval notifiers stay registered (their
    /// drivers remove them). A classic subscriber without a `release` (nouveau's) is
    /// told nothing and keeps whatever it mirrors.
    ///
    /// Linux: `mmu_notifier_release()` (`mn_itree_release()`, then
    /// `mn_hlist_release()`: the `->release` calls under SRCU, the
    /// `hlist_del_init_rcu()` of every subscription, `synchronize_srcu()`).
    pub(crate) fn mmu_notifier_release(&self) {
        let subs = self.mmu_notifiers();
        if !subs.registered.load(Ordering::Acquire) {
            return;
        }
        subs.itree_release(self);
        let tracer = self.mem().tracer();
        subs.classic_walk(|id, s| {
            s.release(self);
            tracer.instant(|| crate::trace::Payload::Subscriber {
                subscriber: classic_name(id, s).into(),
                callback: "release".into(),
                cur_seq: None,
                decision: crate::trace::Decision::Done,
            });
        });
        let unhooked = std::mem::take(&mut subs.classic.lock().subs);
        subs.synchronize();
        drop(unhooked);
    }
}
