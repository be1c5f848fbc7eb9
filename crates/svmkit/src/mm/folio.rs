//! Folios: handles to allocated groups of `2^order` frames, their references and the
//! folio lock.
//!
//! A [`Folio`] is a plain `Copy` handle (head frame + order), like Linux's
//! `struct folio *`: holding one does not keep the folio alive; a *reference*
//! ([`PhysMem::folio_get`] / [`PhysMem::folio_put`]) does, and the last put frees it.
//!
//! ## The folio lock
//! PG_locked in the head page plus a hashed wait queue (Linux: `folio_wait_table`).
//! The bit is only set or cleared under its queue's lock, so a waiter's "try to take
//! it, else sleep" and the holder's "clear it, then wake" cannot interleave badly.
//! Every lock operation, `trylock` included, takes that queue lock, so under shuttle
//! each one is a scheduling point.
//!
//! Lock order (DESIGN.md): mmap lock → **folio lock** → anon_vma lock → PTL. Never
//! take a folio lock while holding a PTL or a driver lock.

use std::fmt;

use super::page::PageFlags;
use super::page_alloc::PhysMem;
use crate::error::Errno;
use crate::task::Task;
use crate::types::{PAGE_SIZE, Pfn};

/// A handle to a folio: its head frame and its order.
///
/// Linux: `struct folio *`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Folio {
    head: Pfn,
    order: u8,
}

impl Folio {
    pub(super) const fn from_parts(head: Pfn, order: u32) -> Self {
        Folio {
            head,
            order: order as u8,
        }
    }

    /// The head frame.
    ///
    /// Linux: `folio_pfn()`.
    #[doc(alias = "folio_pfn")]
    pub const fn head(self) -> Pfn {
        self.head
    }

    /// log2 of the number of frames.
    ///
    /// Linux: `folio_order()`.
    #[doc(alias = "folio_order")]
    pub const fn order(self) -> u32 {
        self.order as u32
    }

    /// Number of frames.
    ///
    /// Linux: `folio_nr_pages()`.
    #[doc(alias = "folio_nr_pages")]
    pub const fn nr_pages(self) -> u64 {
        1 << self.order
    }

    /// Size in bytes.
    ///
    /// Linux: `folio_size()`.
    #[doc(alias = "folio_size")]
    pub const fn size(self) -> u64 {
        self.nr_pages() * PAGE_SIZE
    }

    /// Whether the folio has more than one frame.
    ///
    /// Linux: `folio_test_large()`.
    #[doc(alias = "folio_test_large")]
    pub const fn is_large(self) -> bool {
        self.order > 0
    }

    /// The `n`th frame, if `n < nr_pages()`.
    ///
    /// Linux: `folio_page()`.
    #[doc(alias = "folio_page")]
    pub fn page(self, n: u64) -> Option<Pfn> {
        (n < self.nr_pages()).then(|| Pfn::new(self.head.raw() + n))
    }

    /// Whether `pfn` is one of the folio's frames.
    pub fn contains(self, pfn: Pfn) -> bool {
        pfn >= self.head && pfn.raw() < self.head.raw() + self.nr_pages()
    }

    /// All frames, head first.
    pub fn pfns(self) -> impl Iterator<Item = Pfn> {
        (self.head.raw()..self.head.raw() + self.nr_pages()).map(Pfn::new)
    }
}

impl fmt::Debug for Folio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Folio({:#x}, order {})", self.head.raw(), self.order)
    }
}

impl PhysMem {
    /// The folio that frame `pfn` belongs to: tail pages resolve to their head. A free
    /// frame or the zero page is its own order-0 folio. `EINVAL` if there is no frame.
    ///
    /// Linux: `page_folio()`.
    pub fn page_folio(&self, pfn: Pfn) -> Result<Folio, Errno> {
        let page = self.page_ok(pfn)?;
        let head = page.compound_head().unwrap_or(pfn);
        let head_page = self.page_ok(head)?;
        let order = if head_page.test(PageFlags::HEAD) {
            head_page.order()
        } else {
            0
        };
        Ok(Folio::from_parts(head, order))
    }

    /// The folio's reference count (the zero page's is fixed and not counted).
    ///
    /// Linux: `folio_ref_count()`.
    pub fn folio_ref_count(&self, folio: Folio) -> i32 {
        self.page(folio.head()).map_or(0, |p| p.refcount())
    }

    /// Sum of the mapcounts of the folio's pages.
    ///
    /// Linux: `folio_mapcount()`.
    pub fn folio_mapcount(&self, folio: Folio) -> i32 {
        folio
            .pfns()
            .filter_map(|p| self.page(p))
            .map(|p| p.mapcount())
            .sum()
    }

    /// Whether any page of the folio is mapped, by a PTE or (the whole folio) by a
    /// PMD.
    ///
    /// Linux: `folio_mapped()`.
    pub fn folio_mapped(&self, folio: Folio) -> bool {
        self.folio_mapcount(folio) > 0
            || self
                .page(folio.head())
                .is_some_and(|p| p.entire_mapcount() > 0)
    }

    /// Takes a reference on a folio the caller already holds one on (or knows to be
    /// alive). A get on a folio with no references is a use-after-free: it is reported
    /// ([`PhysMem::bad_pages`]) and not performed. No-op on the zero page.
    ///
    /// Linux: `folio_get()`.
    pub fn folio_get(&self, folio: Folio) {
        if !self.folio_try_get(folio) && !self.is_zero_pfn(folio.head()) {
            self.report_bad(folio.head(), "folio_get on a folio with no references");
        }
    }

    /// Takes a reference unless the count is already zero (the folio is being freed).
    /// Always succeeds on the zero page, without counting.
    ///
    /// Linux: `folio_try_get()`.
    pub fn folio_try_get(&self, folio: Folio) -> bool {
        self.folio_try_get_as::<true>(folio)
    }

    /// [`folio_try_get`](Self::folio_try_get), recording only if `TRACE` (see
    /// [`folio_put_as`](Self::folio_put_as)).
    #[inline(always)]
    pub(crate) fn folio_try_get_as<const TRACE: bool>(&self, folio: Folio) -> bool {
        if self.is_zero_pfn(folio.head()) {
            return true;
        }
        let Some(page) = self.page(folio.head()) else {
            return false;
        };
        let got = page
            .refcount_atomic()
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |c| (c > 0).then_some(c + 1),
            )
            .is_ok();
        if TRACE && got {
            self.trace_ref(folio, 1);
        }
        got
    }

    /// Drops a reference; the last one frees the folio to the buddy allocator (after
    /// the free-time checks). A put on a folio with no references is reported, not
    /// performed. No-op on the zero page.
    ///
    /// Linux: `folio_put()`.
    #[inline(always)]
    pub fn folio_put(&self, folio: Folio) {
        self.folio_put_as::<true>(folio);
    }

    /// [`folio_put`](Self::folio_put), recording its refcount event only if `TRACE`:
    /// `false` for a caller that has checked recording is off and keeps its fast path
    /// free of recording calls (docs/TRACES.md, "Cost").
    #[inline(always)]
    pub(crate) fn folio_put_as<const TRACE: bool>(&self, folio: Folio) {
        if self.is_zero_pfn(folio.head()) {
            return;
        }
        let Some(page) = self.page(folio.head()) else {
            return;
        };
        match page.refcount_atomic().fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |c| (c > 0).then_some(c - 1),
        ) {
            // One recording site for both outcomes, and the rare work out of line:
            // the put stays small enough to inline into zap and the other hot paths
            // (docs/TRACES.md, "Cost").
            Ok(n) => {
                if TRACE {
                    self.trace_ref(folio, -1);
                }
                if n == 1 {
                    self.free_folio(folio)
                } else if n - 1 <= folio.nr_pages() as i32 {
                    self.folio_put_cached(folio);
                }
            }
            Err(_) => self.report_bad(folio.head(), "folio_put on a folio with no references"),
        }
    }

    /// The end of a put that left `folio` with at most one reference per page: those
    /// may be the swap cache's alone (see `swap_release_unreachable`); the atomic
    /// test keeps swapless systems out.
    #[inline(never)]
    fn folio_put_cached(&self, folio: Folio) {
        if self.swap_cache_in_use() {
            self.swap_release_unreachable(folio);
        }
    }

    /// Sets the reference count to zero if it is exactly `count`, so that no
    /// `folio_try_get` can succeed any more: the caller then owns the folio outright
    /// (and frees it, or unfreezes it). False, changing nothing, for any other count.
    ///
    /// Linux: `folio_ref_freeze()`.
    pub(crate) fn folio_ref_freeze(&self, folio: Folio, count: i32) -> bool {
        if self.is_zero_pfn(folio.head()) || count <= 0 {
            return false;
        }
        self.page(folio.head()).is_some_and(|p| {
            p.refcount_atomic()
                .compare_exchange(
                    count,
                    0,
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                )
                .is_ok()
        })
    }

    /// Frees a folio whose references were frozen away by [`folio_ref_freeze`]
    /// (after the free-time checks, as the last `folio_put` would).
    ///
    /// Linux: `free_unref_folios()` after `__remove_mapping()`.
    ///
    /// [`folio_ref_freeze`]: Self::folio_ref_freeze
    pub(crate) fn free_frozen_folio(&self, folio: Folio) {
        if self.folio_ref_count(folio) == 0 {
            self.free_folio(folio);
        } else {
            self.report_bad(folio.head(), "free of a folio that is not frozen");
        }
    }

    /// Whether all of `flags` are set on the folio's head page.
    ///
    /// Linux: `folio_test_*()` (e.g. `folio_test_anon()`, `folio_test_dirty()`).
    #[doc(alias = "folio_test_anon")]
    #[doc(alias = "folio_test_dirty")]
    pub fn folio_test(&self, folio: Folio, flags: PageFlags) -> bool {
        self.page(folio.head()).is_some_and(|p| p.test(flags))
    }

    /// Sets `flags` on the folio's head page. PG_locked is refused (it belongs to the
    /// folio lock) and ignored.
    ///
    /// Linux: `folio_set_*()` / `folio_mark_dirty()`.
    #[doc(alias = "folio_mark_dirty")]
    pub fn folio_set(&self, folio: Folio, flags: PageFlags) {
        if let Some(p) = self.page(folio.head()) {
            p.set(flags.difference(PageFlags::LOCKED));
        }
    }

    /// Clears `flags` on the folio's head page (PG_locked excepted).
    ///
    /// Linux: `folio_clear_*()`.
    pub fn folio_clear(&self, folio: Folio, flags: PageFlags) {
        if let Some(p) = self.page(folio.head()) {
            p.clear(flags.difference(PageFlags::LOCKED));
        }
    }

    // ---------------------------------------------------------------- folio lock

    /// Sets `bit` in frame `pfn`'s flags if it was clear; false if already set.
    fn try_set_bit(&self, pfn: Pfn, bit: PageFlags) -> bool {
        self.page(pfn).is_some_and(|p| !p.set(bit).contains(bit))
    }

    /// Takes a lock bit in a frame's flags without sleeping (Linux: `bit_spin_trylock()`
    /// and `folio_trylock()` are both this shape). Goes through the frame's wait queue
    /// so that it is a scheduling point under shuttle.
    pub(crate) fn bit_trylock(&self, pfn: Pfn, bit: PageFlags) -> bool {
        self.wait_queue(pfn)
            .with_lock(|| self.try_set_bit(pfn, bit))
    }

    /// Takes a lock bit in a frame's flags, sleeping until it is free.
    pub(crate) fn bit_lock(&self, pfn: Pfn, bit: PageFlags) {
        self.wait_queue(pfn)
            .wait_event(|| self.try_set_bit(pfn, bit));
    }

    /// Releases a lock bit and wakes the frame's waiters; false if it was not held.
    pub(crate) fn bit_unlock(&self, pfn: Pfn, bit: PageFlags) -> bool {
        self.wait_queue(pfn)
            .update_and_wake(|| self.page(pfn).is_some_and(|p| p.clear(bit).contains(bit)))
    }

    /// Whether the folio lock is held.
    ///
    /// Linux: `folio_test_locked()`.
    pub fn folio_test_locked(&self, folio: Folio) -> bool {
        self.folio_test(folio, PageFlags::LOCKED)
    }

    /// How many threads sleep on the wait queue the folio hashes to (waiting for its
    /// lock, or for it to be unlocked): a hung-task report's evidence. The queues are
    /// hashed, so a sleeper may wait for another folio of the same queue.
    ///
    /// Linux: `folio_test_waiters()` (PG_waiters), as a count.
    #[doc(alias = "folio_test_waiters")]
    pub fn folio_wait_queue_sleepers(&self, folio: Folio) -> usize {
        self.wait_queue(folio.head()).sleepers()
    }

    /// Takes the folio lock if it is free.
    ///
    /// Linux: `folio_trylock()`.
    pub fn folio_trylock(&self, folio: Folio) -> Option<FolioLockGuard<'_>> {
        self.folio_trylock_as::<true>(folio)
    }

    /// [`folio_trylock`](Self::folio_trylock), recording only if `TRACE` (see
    /// [`folio_put_as`](Self::folio_put_as)).
    #[inline(always)]
    pub(crate) fn folio_trylock_as<const TRACE: bool>(
        &self,
        folio: Folio,
    ) -> Option<FolioLockGuard<'_>> {
        let got = self.bit_trylock(folio.head(), PageFlags::LOCKED);
        if TRACE {
            self.trace_lock(folio, "trylock", if got { "acquired" } else { "busy" });
        }
        got.then(|| FolioLockGuard::new(self, folio))
    }

    /// A folio-lock event; `waits` is recorded before a lock that will sleep, so a
    /// trace that ends in a hang shows who sleeps on which folio.
    #[inline(always)]
    fn trace_lock(&self, folio: Folio, op: &'static str, outcome: &'static str) {
        self.tracer().instant(|| crate::trace::Payload::FolioLock {
            pfn: folio.head().raw(),
            op: op.into(),
            outcome: outcome.into(),
        });
    }

    /// Before a sleeping lock: records `waits` if the folio is locked now.
    #[inline(always)]
    fn trace_lock_wait(&self, folio: Folio, op: &'static str) {
        if self.tracer().on() && self.folio_test_locked(folio) {
            self.trace_lock(folio, op, "waits");
        }
    }

    /// Detail level: a folio's reference count changed by `delta`.
    #[inline(always)]
    pub(crate) fn trace_ref(&self, folio: Folio, delta: i64) {
        self.tracer()
            .detail_instant(|| crate::trace::Payload::Refcount {
                pfn: folio.head().raw(),
                delta,
                count: i64::from(self.folio_ref_count(folio)),
            });
    }

    /// Detail level: a page's mapcount changed by `delta`.
    #[inline(always)]
    pub(crate) fn trace_mapcount(&self, pfn: Pfn, delta: i64) {
        self.tracer()
            .detail_instant(|| crate::trace::Payload::Mapcount {
                pfn: pfn.raw(),
                delta,
                count: self.page(pfn).map_or(0, |p| i64::from(p.mapcount())),
            });
    }

    /// Takes the folio lock, sleeping until it is free.
    ///
    /// Linux: `folio_lock()`.
    pub fn folio_lock(&self, folio: Folio) -> FolioLockGuard<'_> {
        self.trace_lock_wait(folio, "lock");
        self.bit_lock(folio.head(), PageFlags::LOCKED);
        self.trace_lock(folio, "lock", "acquired");
        FolioLockGuard::new(self, folio)
    }

    /// Takes the folio lock, sleeping until it is free or `task` is killed. An
    /// uncontended lock is taken even if a fatal signal is pending, as in Linux.
    ///
    /// Linux: `folio_lock_killable()`.
    pub fn folio_lock_killable(
        &self,
        folio: Folio,
        task: &Task,
    ) -> Result<FolioLockGuard<'_>, Errno> {
        if self.tracer().on() {
            return self.folio_lock_killable_traced(folio, task);
        }
        self.folio_lock_killable_as::<false>(folio, task)
    }

    // The recording form out of line: with recording off the lock makes no call
    // that needs its values kept across it (docs/TRACES.md, "Cost").
    #[cold]
    #[inline(never)]
    fn folio_lock_killable_traced(
        &self,
        folio: Folio,
        task: &Task,
    ) -> Result<FolioLockGuard<'_>, Errno> {
        self.folio_lock_killable_as::<true>(folio, task)
    }

    #[inline(always)]
    fn folio_lock_killable_as<const TRACE: bool>(
        &self,
        folio: Folio,
        task: &Task,
    ) -> Result<FolioLockGuard<'_>, Errno> {
        if TRACE {
            self.trace_lock_wait(folio, "lock_killable");
        }
        let r = self
            .wait_queue(folio.head())
            .wait_event_killable(task, || self.try_set_bit(folio.head(), PageFlags::LOCKED));
        if TRACE {
            self.trace_lock(
                folio,
                "lock_killable",
                if r.is_ok() { "acquired" } else { "EINTR" },
            );
        }
        r?;
        Ok(FolioLockGuard::new(self, folio))
    }

    /// Releases a folio lock taken earlier and kept past its guard
    /// ([`FolioLockGuard::leak`]), and wakes its waiters. Unlocking a folio that is not
    /// locked is reported ([`PhysMem::bad_pages`]) and changes nothing.
    ///
    /// Linux: `folio_unlock()`.
    pub fn folio_unlock(&self, folio: Folio) {
        self.folio_unlock_as::<true>(folio);
    }

    /// [`folio_unlock`](Self::folio_unlock), recording its event only if `TRACE` (see
    /// [`folio_put_as`](Self::folio_put_as)).
    #[inline(always)]
    pub(crate) fn folio_unlock_as<const TRACE: bool>(&self, folio: Folio) {
        if self.folio_test_locked(folio) {
            // A swap slot the last entry left while we held the lock is ours to free.
            self.swap_unlock_hook(folio);
        }
        self.folio_unlock_raw_as::<TRACE>(folio);
    }

    /// [`folio_unlock`](Self::folio_unlock) without the swap-cache step, for the swap
    /// code itself.
    pub(crate) fn folio_unlock_raw(&self, folio: Folio) {
        self.folio_unlock_raw_as::<true>(folio);
    }

    #[inline(always)]
    fn folio_unlock_raw_as<const TRACE: bool>(&self, folio: Folio) {
        if !self.bit_unlock(folio.head(), PageFlags::LOCKED) {
            self.report_bad(folio.head(), "folio_unlock of an unlocked folio");
        } else if TRACE {
            self.tracer()
                .instant(|| crate::trace::Payload::FolioUnlock {
                    pfn: folio.head().raw(),
                });
        }
    }

    /// Sleeps until the folio is unlocked, without taking the lock.
    ///
    /// Linux: `folio_wait_locked()`.
    pub fn folio_wait_locked(&self, folio: Folio) {
        self.tracer().instant(|| crate::trace::Payload::FolioWait {
            pfn: folio.head().raw(),
        });
        self.wait_queue(folio.head())
            .wait_event(|| !self.folio_test_locked(folio));
    }

    /// Sleeps until the folio is unlocked or `task` is killed (`EINTR`).
    ///
    /// Linux: `folio_wait_locked_killable()`.
    pub fn folio_wait_locked_killable(&self, folio: Folio, task: &Task) -> Result<(), Errno> {
        self.tracer().instant(|| crate::trace::Payload::FolioWait {
            pfn: folio.head().raw(),
        });
        self.wait_queue(folio.head())
            .wait_event_killable(task, || !self.folio_test_locked(folio))
    }
}

/// Proof that a folio lock is held; dropping it unlocks the folio and wakes waiters.
///
/// Linux: the state between `folio_lock()` and `folio_unlock()`.
#[must_use = "dropping the guard unlocks the folio at once"]
pub struct FolioLockGuard<'a> {
    mem: &'a PhysMem,
    folio: Folio,
    armed: bool,
}

impl<'a> FolioLockGuard<'a> {
    fn new(mem: &'a PhysMem, folio: Folio) -> Self {
        // Every locker holds a reference (Linux's callers do); a folio locked with
        // none was freed under its locker (5.14's restore without a reference, spec
        // 8 item 5, is one way): say so, rather than let the lock bit land on
        // whatever the frame becomes next.
        if mem.folio_ref_count(folio) == 0 && !mem.is_zero_pfn(folio.head()) {
            mem.report_bad(
                folio.head(),
                "folio locked with no references (use after free)",
            );
        }
        FolioLockGuard {
            mem,
            folio,
            armed: true,
        }
    }

    /// The locked folio.
    pub fn folio(&self) -> Folio {
        self.folio
    }

    /// The memory the folio lives in.
    pub fn mem(&self) -> &'a PhysMem {
        self.mem
    }

    /// Keeps the folio locked past the guard: the lock is then released only by an
    /// explicit [`PhysMem::folio_unlock`]. This is how a driver that forgets to unlock
    /// (nouveau before `b3fefbb30a16`) is reproduced.
    pub fn leak(mut self) -> Folio {
        self.armed = false;
        self.folio
    }
}

impl Drop for FolioLockGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.mem.folio_unlock(self.folio);
        }
    }
}

impl fmt::Debug for FolioLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FolioLockGuard")
            .field("folio", &self.folio)
            .field("armed", &self.armed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::mm::page_alloc::{Gfp, PhysMemConfig};
    use crate::sync::{Arc, thread};

    fn mem(frames: u64) -> Arc<PhysMem> {
        PhysMem::new(PhysMemConfig::with_frames(frames)).unwrap()
    }

    #[test]
    fn folio_refcount_get_put_frees_at_zero() {
        let m = mem(64);
        let free0 = m.nr_free_pages();
        let f = m.folio_alloc(2, Gfp::empty()).unwrap();
        assert_eq!(m.folio_ref_count(f), 1);
        m.folio_get(f);
        m.folio_get(f);
        assert_eq!(m.folio_ref_count(f), 3);
        m.folio_put(f);
        m.folio_put(f);
        assert_eq!(m.folio_ref_count(f), 1);
        assert_eq!(
            m.nr_free_pages(),
            free0 - 4,
            "still allocated with one reference"
        );
        m.folio_put(f);
        assert_eq!(m.folio_ref_count(f), 0);
        assert_eq!(m.nr_free_pages(), free0, "freed at zero");
        assert!(f.pfns().all(|p| m.is_free_frame(p)));
        assert!(m.bad_pages().is_empty());
    }

    #[test]
    fn folio_try_get_fails_once_freed_and_double_put_is_reported() {
        let m = mem(64);
        let f = m.folio_alloc(0, Gfp::empty()).unwrap();
        assert!(m.folio_try_get(f));
        m.folio_put(f);
        m.folio_put(f);
        assert!(!m.folio_try_get(f), "try_get on a freed folio must fail");
        let free = m.nr_free_pages();
        m.folio_put(f);
        m.folio_get(f);
        assert_eq!(m.nr_free_pages(), free, "bad put/get changed nothing");
        assert_eq!(m.folio_ref_count(f), 0);
        let bad = m.bad_pages();
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].reason, "folio_put on a folio with no references");
        assert_eq!(bad[1].reason, "folio_get on a folio with no references");
        m.check_free_lists().unwrap();
    }

    #[test]
    fn folio_tail_pages_resolve_to_their_head() {
        let m = mem(2048);
        let f = m.folio_alloc(9, Gfp::empty()).unwrap();
        assert_eq!(f.nr_pages(), 512);
        assert_eq!(f.size(), 2 << 20);
        for n in [0u64, 1, 77, 511] {
            let p = f.page(n).unwrap();
            assert_eq!(m.page_folio(p).unwrap(), f, "page {n}");
            let meta = m.page(p).unwrap();
            assert_eq!(meta.test(PageFlags::TAIL), n != 0);
            assert_eq!(meta.compound_head(), (n != 0).then_some(f.head()));
        }
        assert_eq!(f.page(512), None);
        assert!(!f.contains(Pfn::new(f.head().raw() + 512)));
        // A reference through any page is a reference on the folio.
        let via_tail = m.page_folio(f.page(300).unwrap()).unwrap();
        m.folio_get(via_tail);
        assert_eq!(m.folio_ref_count(f), 2);
        assert_eq!(m.page(f.page(300).unwrap()).unwrap().refcount(), 0);
        m.folio_put(via_tail);
        m.folio_put(f);
        assert!(m.is_free_frame(f.page(300).unwrap()));
        // After the free, the old tail is an ordinary free frame again.
        assert_eq!(
            m.page_folio(f.page(300).unwrap()).unwrap().head(),
            f.page(300).unwrap()
        );
        assert_eq!(m.page_folio(Pfn::new(4096)), Err(Errno::EINVAL));
    }

    #[test]
    fn folio_zero_page_is_never_freed_or_counted() {
        let m = mem(8);
        let z = m.page_folio(m.zero_pfn()).unwrap();
        let rc = m.folio_ref_count(z);
        for _ in 0..5 {
            m.folio_put(z);
        }
        m.folio_get(z);
        assert!(m.folio_try_get(z));
        assert_eq!(
            m.folio_ref_count(z),
            rc,
            "zero page references are not counted"
        );
        assert!(m.folio_test(z, PageFlags::RESERVED));
        assert!(!m.is_free_frame(m.zero_pfn()));
        // Exhausting memory never hands out the zero page.
        while let Ok(f) = m.folio_alloc(0, Gfp::empty()) {
            assert_ne!(f.head(), m.zero_pfn());
        }
        assert!(m.bad_pages().is_empty());
    }

    #[test]
    fn folio_freed_while_locked_is_reported_and_kept_out_of_the_allocator() {
        let m = mem(16);
        let f = m.folio_alloc(0, Gfp::empty()).unwrap();
        let leaked = m.folio_lock(f).leak();
        let free = m.nr_free_pages();
        m.folio_put(f);
        assert_eq!(m.nr_free_pages(), free, "a locked folio is not freed");
        assert_eq!(m.bad_pages()[0].reason, "freed while locked or reserved");
        assert!(m.bad_pages()[0].flags.contains(PageFlags::LOCKED));
        m.folio_unlock(leaked);
        m.check_free_lists().unwrap();
    }

    #[test]
    fn folio_flags_set_test_clear() {
        let m = mem(16);
        let f = m.folio_alloc(0, Gfp::empty()).unwrap();
        m.folio_set(f, PageFlags::ANON | PageFlags::DIRTY | PageFlags::LOCKED);
        assert!(m.folio_test(f, PageFlags::ANON | PageFlags::DIRTY));
        assert!(!m.folio_test_locked(f), "the lock bit is not a plain flag");
        m.folio_clear(f, PageFlags::DIRTY);
        assert!(!m.folio_test(f, PageFlags::DIRTY));
        assert!(m.folio_test(f, PageFlags::ANON));
        m.folio_put(f);
        // Flags do not survive a free and a new allocation.
        let g = m.folio_alloc(0, Gfp::empty()).unwrap();
        assert_eq!(g, f);
        assert!(!m.folio_test(g, PageFlags::ANON));
    }

    #[test]
    fn folio_lock_trylock_fails_while_held() {
        let m = mem(16);
        let f = m.folio_alloc(0, Gfp::empty()).unwrap();
        let other = m.folio_alloc(0, Gfp::empty()).unwrap();
        let g = m.folio_trylock(f).expect("free lock");
        assert!(m.folio_test_locked(f));
        assert!(m.folio_trylock(f).is_none());
        let task = Task::new("t");
        task.kill();
        assert_eq!(
            m.folio_lock_killable(f, &task).err(),
            Some(Errno::EINTR),
            "contended + killed"
        );
        // Another folio's lock is independent (even if it shares a wait queue).
        assert!(m.folio_trylock(other).is_some());
        drop(g);
        assert!(!m.folio_test_locked(f));
        assert!(m.folio_trylock(f).is_some());
        assert!(m.bad_pages().is_empty());
    }

    #[test]
    fn folio_lock_waiter_wakes_on_unlock() {
        let m = mem(16);
        let f = m.folio_alloc(0, Gfp::ZERO).unwrap();
        let g = m.folio_lock(f);
        let started = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (m, started) = (Arc::clone(&m), Arc::clone(&started));
            thread::spawn(move || {
                started.store(true, Ordering::SeqCst);
                let g = m.folio_lock(f);
                m.fetch_add_u64(g.folio().head(), 0, 1).unwrap()
            })
        };
        while !started.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        assert_eq!(m.read_u64(f.head(), 0).unwrap(), 0, "waiter ran while held");
        drop(g);
        assert_eq!(waiter.join().unwrap(), 0);
        assert_eq!(m.read_u64(f.head(), 0).unwrap(), 1);
        assert!(!m.folio_test_locked(f), "waiter's guard unlocked on drop");
    }

    #[test]
    fn folio_lock_killable_returns_eintr_when_its_task_is_killed() {
        let m = mem(16);
        let f = m.folio_alloc(0, Gfp::empty()).unwrap();
        let g = m.folio_lock(f);
        let task = Task::new("victim");
        let bystander = Task::new("bystander");
        let (victim, other) = {
            let (m1, t1) = (Arc::clone(&m), task.clone());
            let (m2, t2) = (Arc::clone(&m), bystander.clone());
            (
                thread::spawn(move || m1.folio_lock_killable(f, &t1).map(|g| g.leak())),
                thread::spawn(move || m2.folio_lock_killable(f, &t2).map(|g| g.folio())),
            )
        };
        std::thread::sleep(std::time::Duration::from_millis(10));
        task.kill();
        assert_eq!(victim.join().unwrap(), Err(Errno::EINTR));
        assert!(m.folio_test_locked(f), "the holder keeps the lock");
        assert!(!bystander.fatal_signal_pending());
        drop(g);
        assert_eq!(
            other.join().unwrap(),
            Ok(f),
            "the live waiter still gets it"
        );
        assert!(m.bad_pages().is_empty());
    }

    #[test]
    fn folio_lock_killable_uncontended_wins_over_a_pending_signal() {
        let m = mem(16);
        let f = m.folio_alloc(0, Gfp::empty()).unwrap();
        let task = Task::new("dying");
        task.kill();
        let g = m
            .folio_lock_killable(f, &task)
            .expect("uncontended lock is taken");
        assert!(m.folio_test_locked(f));
        assert_eq!(m.folio_wait_locked_killable(f, &task), Err(Errno::EINTR));
        drop(g);
        assert_eq!(m.folio_wait_locked_killable(f, &task), Ok(()));
    }

    #[test]
    fn folio_lock_wait_locked_does_not_take_the_lock() {
        let m = mem(16);
        let f = m.folio_alloc(0, Gfp::empty()).unwrap();
        let leaked = m.folio_lock(f).leak();
        let waiter = {
            let m = Arc::clone(&m);
            thread::spawn(move || {
                m.folio_wait_locked(f);
                m.folio_test_locked(f)
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(5));
        m.folio_unlock(leaked);
        assert!(!waiter.join().unwrap(), "waiting does not lock");
        assert!(!m.folio_test_locked(f));
        m.folio_unlock(f);
        assert_eq!(m.bad_pages()[0].reason, "folio_unlock of an unlocked folio");
    }
}
