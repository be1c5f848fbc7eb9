//! Interval notifiers (Linux: the `mmu_interval_notifier` half of
//! `mm/mmu_notifier.c`; spec section 5.3).
//!
//! A driver mirrors `[start, last]` of an mm. To use a translation it read from the CPU
//! page table it follows the collision-retry pattern:
//!
//! ```text
//! seq = sub.read_begin()            waits while an invalidation that hit us runs
//! read the CPU page table (hmm_range_fault, make_device_exclusive, ...)
//! lock(driver)
//! if sub.read_retry(seq) { unlock; go again }
//! program the device
//! unlock(driver)
//! ```
//!
//! It works because every invalidation overlapping the interval first makes the mm's
//! sequence odd, then calls the driver's callback with that odd value, and the
//! callback, under the same driver lock, stores it with [`MmuIntervalNotifier::set_seq`].
//! A callback that returns without `set_seq` *ignores* the event: that is how a driver
//! filters the `Exclusive` invalidation its own `make_device_exclusive` causes.
//!
//! While the sequence is odd the tree of intervals is frozen: inserts and removes are
//! queued and applied by the last invalidation to end, which makes the sequence even
//! again and wakes everyone waiting in `read_begin` or `remove`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::interval_tree::{IntervalTree, NodeId};
use super::{MmuNotifierEvent, MmuNotifierRange, MmuNotifierSubscriptions};
use crate::error::Errno;
use crate::mm::mm_types::Mm;
use crate::sync::Arc;

/// The smallest correct interval-notifier driver: every invalidation makes readers
/// retry, `set_seq` under the driver's own lock, and nothing else (no device mapping to
/// drop). For benchmarks and examples that need a listener that costs what a real
/// driver's lock and sequence update cost.
///
/// ```
/// use svmkit::mm::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange, SetSeqUnderLock};
/// use svmkit::sync::Arc;
/// use svmkit::{PAGE_SIZE, System, SystemConfig};
///
/// let sys = System::new(SystemConfig::with_frames(64)).unwrap();
/// let mm = sys.create_mm().unwrap();
/// let sub = mm
///     .mm()
///     .mmu_interval_notifier_insert(0x1000_0000, PAGE_SIZE, Arc::new(SetSeqUnderLock::new()))
///     .unwrap();
/// let seq = sub.read_begin();
/// // An invalidation of the interval makes the reader retry.
/// drop(
///     MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, 0x1000_0000, 0x1000_1000)
///         .invalidate_range_start(),
/// );
/// assert!(sub.read_retry(seq));
/// assert!(!sub.read_retry(sub.read_begin()));
/// ```
#[derive(Debug, Default)]
pub struct SetSeqUnderLock(crate::sync::Mutex<()>);

impl SetSeqUnderLock {
    /// A driver with its own (unlocked) driver lock.
    pub fn new() -> Self {
        Self::default()
    }
}

impl MmuIntervalNotifierOps for SetSeqUnderLock {
    fn invalidate(
        &self,
        sub: &MmuIntervalNotifier,
        _: &MmuNotifierRange<'_>,
        cur_seq: u64,
    ) -> bool {
        let _g = self.0.lock();
        sub.set_seq(cur_seq);
        true
    }
}

/// A driver's callback for invalidations overlapping its interval (Linux: `struct
/// mmu_interval_notifier_ops`).
///
/// Called with the odd sequence value of this invalidation. To make readers retry,
/// take the driver lock and call `sub.set_seq(cur_seq)` under it; returning without
/// doing so ignores the event. Return `false` only when the range is not blockable and
/// the driver lock could not be taken without sleeping (Linux: `-EAGAIN` for the OOM
/// reaper); `false` from a blockable range is a driver bug that is counted and ignored.
///
/// Closures `Fn(&MmuIntervalNotifier, &MmuNotifierRange, u64) -> bool` implement it.
pub trait MmuIntervalNotifierOps: Send + Sync {
    /// Linux: `invalidate`.
    fn invalidate(
        &self,
        sub: &MmuIntervalNotifier,
        range: &MmuNotifierRange<'_>,
        cur_seq: u64,
    ) -> bool;

    /// The first pass of a two-pass notifier (Linux 7.1: `invalidate_start()`, spec
    /// 10.1): start the invalidation (a device preemption or TLB flush) and hand back
    /// its second pass, which runs once every overlapping notifier's first pass has,
    /// before the range's start returns. Returning [`FirstPass::Done`] means the whole
    /// invalidation is done (or, `false`, refused in a non-blockable range), as
    /// [`invalidate`](Self::invalidate) would. The sequence protocol is the same:
    /// `set_seq` under the driver lock, in either pass.
    ///
    /// The default is one pass: [`invalidate`](Self::invalidate).
    fn invalidate_start(
        &self,
        sub: &MmuIntervalNotifier,
        range: &MmuNotifierRange<'_>,
        cur_seq: u64,
    ) -> FirstPass {
        FirstPass::Done(self.invalidate(sub, range, cur_seq))
    }

    /// The subscriber's name in traces (a device's name); `None` (the default) shows
    /// it as `interval#N`, N its insertion number.
    fn trace_name(&self) -> Option<String> {
        None
    }
}

/// The second pass of a two-pass interval notifier (Linux 7.1: what
/// `invalidate_finish()` does with the object `invalidate_start()` handed back), called
/// with the same notifier, range and sequence as the first.
pub type InvalidateFinish =
    Box<dyn FnOnce(&MmuIntervalNotifier, &MmuNotifierRange<'_>, u64) + Send>;

/// What a first pass returns ([`MmuIntervalNotifierOps::invalidate_start`]).
pub enum FirstPass {
    /// Done in one pass; `false` only for a refused non-blockable range.
    Done(bool),
    /// Started: this finishes it after every first pass.
    Started(InvalidateFinish),
}

impl fmt::Debug for FirstPass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirstPass::Done(ok) => write!(f, "Done({ok})"),
            FirstPass::Started(_) => f.write_str("Started(..)"),
        }
    }
}

impl<F> MmuIntervalNotifierOps for F
where
    F: Fn(&MmuIntervalNotifier, &MmuNotifierRange<'_>, u64) -> bool + Send + Sync,
{
    fn invalidate(
        &self,
        sub: &MmuIntervalNotifier,
        range: &MmuNotifierRange<'_>,
        cur_seq: u64,
    ) -> bool {
        self(sub, range, cur_seq)
    }
}

/// One interval subscription (Linux: `struct mmu_interval_notifier`). Created by
/// [`Mm::mmu_interval_notifier_insert`], ended by [`MmuIntervalNotifier::remove`].
///
/// It holds its mm's struct (Linux: `mmgrab()`) until removed, so a notifier that is
/// never removed keeps the mm's last page table from being freed, as in Linux.
pub struct MmuIntervalNotifier {
    id: u64,
    mm: Arc<Mm>,
    start: u64,
    last: u64,
    ops: Arc<dyn MmuIntervalNotifierOps>,
    /// Linux: `interval_sub->invalidate_seq`.
    invalidate_seq: AtomicU64,
    /// `set_seq` calls while tracing, so a trace can tell which callback called it.
    traced_set_seqs: AtomicU64,
}

/// A queued change to the tree, applied when the sequence becomes even.
enum Deferred {
    Insert(Arc<MmuIntervalNotifier>),
    Remove(u64),
}

/// The interval side of the per-mm state, under `subscriptions->lock`.
pub(crate) struct ItreeState {
    /// Linux: `subscriptions->invalidate_seq`: even when idle, odd while an
    /// invalidation that hit at least one interval runs.
    invalidate_seq: u64,
    /// Linux: `active_invalidate_ranges`.
    active: usize,
    tree: IntervalTree<Arc<MmuIntervalNotifier>>,
    /// Where each inserted notifier sits in `tree` (absent: not in the tree; Linux:
    /// `RB_EMPTY_NODE`).
    nodes: std::collections::BTreeMap<u64, NodeId>,
    /// Linux: `deferred_list`.
    deferred: Vec<Deferred>,
    /// Sleepers on `wq`; waking nobody skips the condvar (a futex call on Linux hosts),
    /// the common case at the end of every invalidation.
    waiters: usize,
}

impl ItreeState {
    pub(super) fn new() -> Self {
        ItreeState {
            invalidate_seq: 2,
            active: 0,
            tree: IntervalTree::new(),
            nodes: std::collections::BTreeMap::new(),
            deferred: Vec::new(),
            waiters: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.tree.len()
    }

    pub(super) fn invalidate_seq(&self) -> u64 {
        self.invalidate_seq
    }

    fn is_invalidating(&self) -> bool {
        self.invalidate_seq & 1 == 1
    }

    /// What holds whenever the lock is free (spec 5.3): the sequence is odd only while
    /// an invalidation runs; nothing stays deferred once none does; and every interval
    /// in the tree has an odd sequence no newer than the mm's (`set_seq` stores the odd
    /// `cur_seq` of a running invalidation, an insert the mm's sequence or one less).
    /// Linux asserts none of this; it is what `mn_itree_inv_start_range()`,
    /// `mn_itree_inv_end()` and `mmu_interval_notifier_insert()` keep between them.
    pub(super) fn check(&self) -> Result<(), String> {
        let seq = self.invalidate_seq;
        if self.is_invalidating() && self.active == 0 {
            return Err(format!(
                "the interval sequence is odd ({seq}) with no invalidation running"
            ));
        }
        if self.active == 0 && !self.deferred.is_empty() {
            return Err(format!(
                "{} deferred insert(s)/remove(s) left with no invalidation running",
                self.deferred.len()
            ));
        }
        for (_, _, _, sub) in self.tree.iter() {
            let sub_seq = sub.invalidate_seq.load(Ordering::Acquire);
            if sub_seq & 1 == 0 || sub_seq > seq {
                return Err(format!(
                    "interval notifier [{:#x}, {:#x}] has sequence {sub_seq}, the mm {seq} \
                     (an interval's is odd and never newer)",
                    sub.start, sub.last
                ));
            }
        }
        Ok(())
    }

    fn tree_insert(&mut self, sub: Arc<MmuIntervalNotifier>) {
        let (id, start, last) = (sub.id, sub.start, sub.last);
        if let Some(node) = self.tree.insert(start, last, sub) {
            self.nodes.insert(id, node);
        }
    }

    fn tree_remove(&mut self, id: u64) {
        if let Some(node) = self.nodes.remove(&id) {
            self.tree.remove(node);
        }
    }
}

/// The second passes of an invalidation's two-pass notifiers, in order.
fn run_finishes(
    range: &MmuNotifierRange<'_>,
    cur_seq: u64,
    finishes: Vec<(&Arc<MmuIntervalNotifier>, InvalidateFinish)>,
) {
    for (sub, finish) in finishes {
        let before = sub.traced_set_seqs.load(Ordering::Relaxed);
        finish(sub, range, cur_seq);
        trace_decision(range, sub, "interval finish", cur_seq, true, before);
    }
}

/// Records what an interval callback decided: `before` is the notifier's count of
/// traced `set_seq` calls before the callback ran.
fn trace_decision(
    range: &MmuNotifierRange<'_>,
    sub: &MmuIntervalNotifier,
    callback: &'static str,
    cur_seq: u64,
    ok: bool,
    before: u64,
) {
    range.mm.mem().tracer().instant(|| {
        let decision = if !ok && range.blockable {
            crate::trace::Decision::BadReturn
        } else if !ok {
            crate::trace::Decision::Eagain
        } else if sub.traced_set_seqs.load(Ordering::Relaxed) != before {
            crate::trace::Decision::SetSeq
        } else {
            crate::trace::Decision::Ignored
        };
        crate::trace::Payload::Subscriber {
            subscriber: sub.trace_name().into(),
            callback: callback.into(),
            cur_seq: Some(cur_seq),
            decision,
        }
    });
}

impl MmuNotifierSubscriptions {
    /// Starts the interval side of an invalidation and runs the overlapping callbacks.
    /// On `EAGAIN` (a non-blockable range refused) the interval side is already ended.
    ///
    /// Linux: `mn_itree_invalidate()` (with `mn_itree_inv_start_range()`).
    pub(super) fn itree_invalidate(&self, range: &MmuNotifierRange<'_>) -> Result<(), Errno> {
        let (hits, cur_seq) = self.itree_inv_start_range(range);
        // Linux 7.1: every first pass, then every second pass (in the order of the
        // first), then the range goes on.
        let mut finishes: Vec<(&Arc<MmuIntervalNotifier>, InvalidateFinish)> = Vec::new();
        for sub in &hits {
            let before = sub.traced_set_seqs.load(Ordering::Relaxed);
            let (ok, callback) = match sub.ops.invalidate_start(sub, range, cur_seq) {
                FirstPass::Done(ok) => (ok, "interval"),
                FirstPass::Started(finish) => {
                    finishes.push((sub, finish));
                    (true, "interval start")
                }
            };
            trace_decision(range, sub, callback, cur_seq, ok, before);
            if ok {
                continue;
            }
            if range.blockable {
                self.bad_returns.fetch_add(1, Ordering::Relaxed);
            } else {
                // What was started is finished before the range fails (derived: a
                // driver must not be left with a started device flush).
                run_finishes(range, cur_seq, finishes);
                self.itree_inv_end();
                return Err(Errno::EAGAIN);
            }
        }
        run_finishes(range, cur_seq, finishes);
        Ok(())
    }

    /// Linux: `mn_itree_inv_start_range()`.
    fn itree_inv_start_range(
        &self,
        range: &MmuNotifierRange<'_>,
    ) -> (Vec<Arc<MmuIntervalNotifier>>, u64) {
        let mut st = self.itree.lock();
        crate::sync::mode::model_changed();
        st.active += 1;
        let hits: Vec<Arc<MmuIntervalNotifier>> = if range.end > range.start {
            st.tree
                .overlapping(range.start, range.end - 1)
                .map(|(_, _, _, sub)| Arc::clone(sub))
                .collect()
        } else {
            Vec::new()
        };
        if !hits.is_empty() {
            st.invalidate_seq |= 1;
        }
        (hits, st.invalidate_seq)
    }

    /// Linux: `mn_itree_inv_end()`.
    pub(super) fn itree_inv_end(&self) {
        let wake = {
            let mut st = self.itree.lock();
            crate::sync::mode::model_changed();
            st.active -= 1;
            if st.active > 0 || !st.is_invalidating() {
                return;
            }
            st.invalidate_seq += 1;
            for d in std::mem::take(&mut st.deferred) {
                match d {
                    Deferred::Insert(sub) => st.tree_insert(sub),
                    Deferred::Remove(id) => st.tree_remove(id),
                }
            }
            st.waiters > 0
        };
        if wake {
            self.wq.notify_all();
        }
    }

    /// Sleeps on `wq` until the mm's sequence is no longer `seq`.
    fn wait_seq_change<'a>(
        &'a self,
        mut st: crate::sync::MutexGuard<'a, ItreeState>,
        seq: u64,
    ) -> crate::sync::MutexGuard<'a, ItreeState> {
        while st.invalidate_seq == seq {
            st.waiters += 1;
            st = self.wq.wait(st);
            st.waiters -= 1;
        }
        st
    }

    /// Every interval gets `Release` over the whole address space.
    ///
    /// Linux: `mn_itree_release()`.
    pub(super) fn itree_release(&self, mm: &Mm) {
        let range = MmuNotifierRange::new(mm, MmuNotifierEvent::Release, 0, u64::MAX);
        let (hits, cur_seq) = self.itree_inv_start_range(&range);
        let tracer = mm.mem().tracer();
        for sub in &hits {
            let before = sub.traced_set_seqs.load(Ordering::Relaxed);
            let ok = sub.ops.invalidate(sub, &range, cur_seq);
            if !ok {
                self.bad_returns.fetch_add(1, Ordering::Relaxed);
            }
            tracer.instant(|| crate::trace::Payload::Subscriber {
                subscriber: sub.trace_name().into(),
                callback: "interval release".into(),
                cur_seq: Some(cur_seq),
                decision: if !ok {
                    crate::trace::Decision::BadReturn
                } else if sub.traced_set_seqs.load(Ordering::Relaxed) != before {
                    crate::trace::Decision::SetSeq
                } else {
                    crate::trace::Decision::Ignored
                },
            });
        }
        self.itree_inv_end();
    }
}

impl Mm {
    /// Subscribes `ops` to invalidations overlapping `[start, start + length)`.
    ///
    /// * `length == 0` or a range past `u64::MAX` → `EOVERFLOW`; an mm without users →
    ///   `EINVAL` (Linux WARNs and fails the same way).
    /// * During an invalidation that already hit an interval (sequence odd) the insert
    ///   is queued until it ends; during one that hit nothing, the sequence is made odd
    ///   and the insert done at once. Either way the new notifier's sequence equals the
    ///   mm's, so its first `read_begin` waits for the running invalidations.
    /// * The first notifier of an mm takes the mmap lock in write mode once (Linux:
    ///   `mmu_notifier_register()`), so the caller must not hold it.
    ///
    /// Linux: `mmu_interval_notifier_insert()`.
    pub fn mmu_interval_notifier_insert(
        self: &Arc<Self>,
        start: u64,
        length: u64,
        ops: Arc<dyn MmuIntervalNotifierOps>,
    ) -> Result<Arc<MmuIntervalNotifier>, Errno> {
        let last = length
            .checked_sub(1)
            .and_then(|l| start.checked_add(l))
            .ok_or(Errno::EOVERFLOW)?;
        if self.mm_users() == 0 {
            return Err(Errno::EINVAL);
        }
        self.mmu_notifier_mark_registered();
        let subs = self.mmu_notifiers();
        let mut sub = MmuIntervalNotifier {
            id: subs.next_id(),
            mm: Arc::clone(self),
            start,
            last,
            ops,
            invalidate_seq: AtomicU64::new(0),
            traced_set_seqs: AtomicU64::new(0),
        };
        let mut st = subs.itree.lock();
        crate::sync::mode::model_changed();
        if st.active > 0 {
            // Linux queues the insert only when the sequence was already odd; when no
            // running invalidation hit an interval, this insert makes it odd itself and
            // goes straight in.
            let defer = st.is_invalidating();
            st.invalidate_seq |= 1;
            *sub.invalidate_seq.get_mut() = st.invalidate_seq;
            let sub = Arc::new(sub);
            if defer {
                st.deferred.push(Deferred::Insert(Arc::clone(&sub)));
            } else {
                st.tree_insert(Arc::clone(&sub));
            }
            Ok(sub)
        } else {
            *sub.invalidate_seq.get_mut() = st.invalidate_seq - 1;
            let sub = Arc::new(sub);
            st.tree_insert(Arc::clone(&sub));
            Ok(sub)
        }
    }
}

impl MmuIntervalNotifier {
    /// The first address covered.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The last address covered (inclusive).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The mm this notifier watches.
    pub fn mm(&self) -> &Arc<Mm> {
        &self.mm
    }

    /// The notifier's name in traces: its ops' [`trace_name`](
    /// MmuIntervalNotifierOps::trace_name), else `interval#N`.
    pub fn trace_name(&self) -> String {
        self.ops
            .trace_name()
            .unwrap_or_else(|| format!("interval#{}", self.id))
    }

    /// Begins a read-side critical section: returns the sequence to hand to
    /// [`read_retry`](Self::read_retry), after waiting for every running invalidation
    /// that already called this notifier to end (so the caller never reads page tables
    /// such an invalidation is still changing).
    ///
    /// Linux: `mmu_interval_read_begin()`.
    #[doc(alias = "mmu_interval_read_begin")]
    pub fn read_begin(&self) -> u64 {
        let subs = self.mm.mmu_notifiers();
        let st = subs.itree.lock();
        let seq = self.invalidate_seq.load(Ordering::Acquire);
        let waited = st.invalidate_seq == seq;
        drop(subs.wait_seq_change(st, seq));
        self.mm
            .mem()
            .tracer()
            .instant(|| crate::trace::Payload::ReadBegin {
                subscriber: self.trace_name().into(),
                seq,
                waited,
            });
        seq
    }

    /// Whether the critical section begun with `seq` must be retried: some
    /// invalidation called [`set_seq`](Self::set_seq) since. Call it under the same
    /// driver lock the callback takes around `set_seq`; a `false` then stays true until
    /// that lock is released.
    ///
    /// Linux: `mmu_interval_read_retry()`.
    #[doc(alias = "mmu_interval_read_retry")]
    pub fn read_retry(&self, seq: u64) -> bool {
        let now = self.invalidate_seq.load(Ordering::Acquire);
        self.mm
            .mem()
            .tracer()
            .instant(|| crate::trace::Payload::ReadRetry {
                subscriber: self.trace_name().into(),
                seq,
                now,
                retry: now != seq,
            });
        now != seq
    }

    /// The same test without the driver lock: only a hint that the section is already
    /// doomed, to bail out early.
    ///
    /// Linux: `mmu_interval_check_retry()`.
    #[doc(alias = "mmu_interval_check_retry")]
    pub fn check_retry(&self, seq: u64) -> bool {
        self.invalidate_seq.load(Ordering::Acquire) != seq
    }

    /// Called by the invalidate callback, under the driver lock, to make current
    /// readers retry.
    ///
    /// Linux: `mmu_interval_set_seq()`.
    #[doc(alias = "mmu_interval_set_seq")]
    pub fn set_seq(&self, cur_seq: u64) {
        self.invalidate_seq.store(cur_seq, Ordering::Release);
        crate::sync::mode::model_changed();
        if self.mm.mem().tracer().on() {
            self.traced_set_seqs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends the subscription. During an invalidation the removal is queued and this
    /// waits until the invalidation ends; when it returns, no callback of this notifier
    /// is running or will run. Must not be called from the notifier's own callback
    /// (it would wait for itself, as in Linux). `ENOENT` if already removed.
    ///
    /// Linux: `mmu_interval_notifier_remove()`.
    #[doc(alias = "mmu_interval_notifier_remove")]
    pub fn remove(&self) -> Result<(), Errno> {
        let subs = self.mm.mmu_notifiers();
        let mut st = subs.itree.lock();
        crate::sync::mode::model_changed();
        let in_tree = st.nodes.contains_key(&self.id);
        let queued_insert = st
            .deferred
            .iter()
            .position(|d| matches!(d, Deferred::Insert(s) if s.id == self.id));
        let queued_remove = st
            .deferred
            .iter()
            .any(|d| matches!(d, Deferred::Remove(id) if *id == self.id));
        if st.is_invalidating() {
            if let Some(pos) = queued_insert {
                st.deferred.remove(pos);
                return Ok(());
            }
            if !in_tree || queued_remove {
                return Err(Errno::ENOENT);
            }
            st.deferred.push(Deferred::Remove(self.id));
            let seq = st.invalidate_seq;
            drop(subs.wait_seq_change(st, seq));
            Ok(())
        } else if in_tree {
            st.tree_remove(self.id);
            Ok(())
        } else {
            Err(Errno::ENOENT)
        }
    }
}

impl fmt::Debug for MmuIntervalNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmuIntervalNotifier")
            .field("mm", &self.mm.id())
            .field("start", &format_args!("{:#x}", self.start))
            .field("last", &format_args!("{:#x}", self.last))
            .field(
                "invalidate_seq",
                &self.invalidate_seq.load(Ordering::Relaxed),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The states `check` must refuse cannot be reached through the API (that is the
    // point of it), so they are built here.
    #[test]
    fn the_state_check_refuses_an_odd_sequence_or_a_deferral_with_nothing_running() {
        let mut st = ItreeState::new();
        assert_eq!(st.check(), Ok(()));
        st.invalidate_seq = 3;
        assert!(st.check().unwrap_err().contains("odd (3)"));
        st.active = 1;
        assert_eq!(st.check(), Ok(()));
        st.invalidate_seq = 4;
        st.active = 0;
        st.deferred.push(Deferred::Remove(7));
        assert!(st.check().unwrap_err().contains("1 deferred"));
    }
}
