//! Swap for anonymous memory (Linux: `mm/swapfile.c`, `mm/swap_state.c`, the anon
//! half of `mm/vmscan.c`, and `do_swap_page()`'s swap-in), reduced to what device-
//! exclusive entries meet (spec 4.7).
//!
//! A swap device ([`PhysMem::swapon`]) has slots holding page contents and a use count
//! per slot (Linux: `swap_map`): one per swap PTE naming it. The swap cache maps a
//! slot to the folio that holds its contents while both exist (one folio reference
//! per slot; a large folio has a naturally aligned run of slots, one per page). A slot
//! no entry names stays with its cached folio (Linux: `SWAP_HAS_CACHE`) until the
//! folio leaves the cache, so that a clean folio can be reclaimed again without
//! being written.
//!
//! Reclaim ([`PhysMem::reclaim_folio`]) locks an anonymous folio, gives it slots in the
//! swap cache (a large one only if nothing but its mappings references it,
//! `can_split_folio()`), replaces every mapping with a swap entry (the swp-exclusive
//! bit kept from PageAnonExclusive), and only then writes the contents out if the
//! folio is dirty (cleaning it), so that no store can land after the copy; it frees
//! the folio only if it can freeze the refcount at its isolation and swap-cache
//! references, and otherwise leaves it in the swap cache, from where a fault maps it.
//! A lazily freed folio (MADV_FREE) gets no slot: it is dropped if still clean.
//! Swap-in reads the slot into a new folio (or takes the cached one), locks it
//! (waiting out a reclaim in flight), checks that it is still the slot's, maps it, and
//! keeps the slot with the cache unless the fault writes (Linux:
//! `should_try_to_free_swap()`). Whoever removes a folio from the swap cache puts the
//! cache's references, once each; zaps and COW reuse free the swap of a cached folio
//! they leave unmapped or make private (Linux: `free_swap_cache()`,
//! `wp_can_reuse_anon_folio()`).
//!
//! # The 5.14 walker flaw (spec 8 item 12)
//! A small folio with a device-exclusive entry looks unmapped (mapcount 0): reclaim
//! writes it out and keeps it (the entry's reference), clean, in the swap cache, and
//! 5.14's restore then marks its PTE dirty (spec 8 item 24). A large folio in the swap
//! cache whose other pages are mapped is walked: `try_to_unmap_one()` takes the
//! entry for a present PTE and its page from x86-64's `pte_pfn()` of the swap PTE
//! (`swp_misread.rs`); see `e1_unmap_entry_as_present()`.
//!
//! There is no background reclaim, no LRU, no writeback latency, and no split of a
//! large folio that finds no aligned run of slots (`ENOMEM`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::folio::Folio;
use super::mm_types::Mm;
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::page::PageFlags;
use super::page_alloc::{Gfp, PhysMem};
use super::pgtable::{Pte, PteFlags, SwapPte};
use super::rmap::PvmwHit;
use crate::error::Errno;
use crate::sync::Mutex;
use crate::types::{PAGE_SIZE, VirtAddr, WORDS_PER_PAGE};

/// One swap slot: the page's contents and how many swap entries name it.
struct Slot {
    data: Box<[u64]>,
    count: u32,
}

/// The swap device and the swap cache (Linux: `swap_info_struct` + the swap cache's
/// xarray).
#[derive(Default)]
pub(crate) struct SwapState {
    slots: Vec<Option<Slot>>,
    cache: BTreeMap<u64, Folio>,
    /// Slots no entry names any more whose cached folio was locked when the last
    /// entry went (Linux: a slot left at `SWAP_HAS_CACHE`): the lock holder frees them
    /// when it unlocks.
    orphans: BTreeSet<u64>,
    /// Pages written to the swap device so far (Linux: `pswpout` in `/proc/vmstat`).
    writeouts: u64,
}

impl SwapState {
    /// Removes `slot`'s cache entry (the caller puts the reference it held) and, with
    /// `free_slot`, the slot itself.
    ///
    /// Linux: `__delete_from_swap_cache()` (+ `put_swap_folio()`).
    fn delete_from_cache(&mut self, slot: u64, free_slot: bool) -> Option<Folio> {
        self.orphans.remove(&slot);
        if free_slot && let Some(s) = self.slots.get_mut(slot as usize) {
            *s = None;
        }
        self.cache.remove(&slot)
    }

    /// The slots whose swap-cache folio `folio` is, in order (a large folio has one
    /// per page, naturally aligned: slot `base + i` holds page `i`).
    fn folio_slots(&self, folio: Folio) -> Vec<u64> {
        self.cache
            .iter()
            .filter(|(_, f)| **f == folio)
            .map(|(s, _)| *s)
            .collect()
    }

    /// Whether a swap entry still names one of `folio`'s slots.
    ///
    /// Linux: `folio_swapped()`.
    fn folio_swapped(&self, folio: Folio) -> bool {
        self.folio_slots(folio).iter().any(|&sl| {
            self.slots
                .get(sl as usize)
                .and_then(Option::as_ref)
                .is_some_and(|s| s.count > 0)
        })
    }

    /// Takes `folio` out of the swap cache, every slot of it, freeing the slots no
    /// entry names; returns how many cache references the caller must put.
    ///
    /// Linux: `delete_from_swap_cache()` + `put_swap_folio()`.
    fn delete_folio(&mut self, folio: Folio) -> usize {
        let slots = self.folio_slots(folio);
        for &sl in &slots {
            let unused = self
                .slots
                .get(sl as usize)
                .and_then(Option::as_ref)
                .is_some_and(|s| s.count == 0);
            self.delete_from_cache(sl, unused);
        }
        slots.len()
    }

    /// Linux: `vm_swap_full()`: more than half of the swap space is in use, so the
    /// swap cache should not hold on to slots it could give up.
    fn swap_full(&self) -> bool {
        let used = self.slots.iter().flatten().count();
        used * 2 > self.slots.len()
    }
}

/// The swap layer's state, under one lock (Linux: `si->lock` and the swap cache lock),
/// how many orphaned slots it has (read without the lock on every folio unlock), and
/// how many swap-cache entries there are (read without the lock by every zap of an
/// anonymous page and every COW reuse test, which skip the swap lock when it is 0).
#[derive(Default)]
pub(crate) struct Swap(Mutex<SwapState>, AtomicUsize, AtomicUsize);

impl PhysMem {
    /// Turns on a swap device of `nr_slots` page-sized slots (replacing none: `EBUSY`
    /// if one is already on; `EINVAL` for zero slots).
    ///
    /// Linux: `swapon()`.
    pub fn swapon(&self, nr_slots: u64) -> Result<(), Errno> {
        let mut s = self.swap.0.lock();
        if !s.slots.is_empty() {
            return Err(Errno::EBUSY);
        }
        if nr_slots == 0 || nr_slots > 1 << 20 {
            return Err(Errno::EINVAL);
        }
        s.slots = (0..nr_slots).map(|_| None).collect();
        Ok(())
    }

    /// Slots in use (written and still named by an entry or cached).
    pub fn swap_slots_used(&self) -> usize {
        self.swap.0.lock().slots.iter().flatten().count()
    }

    /// Pages written to swap so far: one per page of each `pageout()` (a clean folio
    /// whose slot still holds its contents is not written again).
    ///
    /// Linux: the `pswpout` counter of `/proc/vmstat`.
    pub fn swap_writeouts(&self) -> u64 {
        self.swap.0.lock().writeouts
    }

    /// Publishes the counts the lock-free fast paths read.
    fn swap_sync_counts(&self, s: &SwapState) {
        self.swap.1.store(s.orphans.len(), Ordering::SeqCst);
        self.swap.2.store(s.cache.len(), Ordering::SeqCst);
    }

    /// `(slot, use count, cached folio)` for every slot in use, for the checker.
    pub fn swap_usage(&self) -> Vec<(u64, u32, Option<Folio>)> {
        let s = self.swap.0.lock();
        s.slots
            .iter()
            .enumerate()
            .filter_map(|(i, sl)| {
                sl.as_ref()
                    .map(|sl| (i as u64, sl.count, s.cache.get(&(i as u64)).copied()))
            })
            .collect()
    }

    /// One more entry names `slot`.
    ///
    /// Linux: `swap_duplicate()`.
    pub(crate) fn swap_duplicate(&self, slot: u64) {
        if let Some(Some(sl)) = self.swap.0.lock().slots.get_mut(slot as usize) {
            sl.count += 1;
        }
    }

    /// [`swap_duplicate`](Self::swap_duplicate) that says whether the slot is in use
    /// (Linux: `swap_duplicate()` < 0 for a free or bad slot).
    fn swap_duplicate_checked(&self, slot: u64) -> bool {
        match self.swap.0.lock().slots.get_mut(slot as usize) {
            Some(Some(sl)) => {
                sl.count += 1;
                true
            }
            _ => false,
        }
    }

    /// An entry naming `slot` went away. At zero the slot is freed, and the swap cache
    /// lets go of its folio if it can take the folio's lock and no entry names another
    /// slot of it (a large folio leaves the cache whole); if someone holds the lock
    /// (reclaim unmapping it, a fault swapping it in, migration), the slot stays, named
    /// by no entry, until that holder unlocks (Linux: `free_swap_and_cache()`'s
    /// trylock; the holder, or later reclaim, frees it: the model has no LRU, so the
    /// unlock does).
    ///
    /// Linux: `free_swap_and_cache()`.
    pub(crate) fn swap_free(&self, slot: u64) {
        let cached = {
            let mut s = self.swap.0.lock();
            let Some(Some(sl)) = s.slots.get_mut(slot as usize) else {
                return;
            };
            sl.count = sl.count.saturating_sub(1);
            if sl.count > 0 {
                return;
            }
            let cached = match s.cache.get(&slot).copied() {
                None => {
                    s.slots[slot as usize] = None;
                    None
                }
                Some(f) => match self.folio_trylock(f) {
                    Some(lock) => {
                        lock.leak();
                        let n = if s.folio_swapped(f) {
                            0
                        } else {
                            s.delete_folio(f)
                        };
                        Some((f, n))
                    }
                    None => {
                        s.orphans.insert(slot);
                        None
                    }
                },
            };
            self.swap_sync_counts(&s);
            cached
        };
        if let Some((f, n)) = cached {
            // Unlock without the orphan check (this slot is gone already).
            self.folio_unlock_raw(f);
            for _ in 0..n {
                self.folio_put(f);
            }
        }
    }

    /// An entry naming `slot`, whose swap-cache folio the caller holds locked, went
    /// away: the count drops, and the slot stays with the cache at zero (Linux:
    /// `SWAP_HAS_CACHE`) until [`folio_free_swap`](Self::folio_free_swap) or reclaim
    /// lets it go.
    ///
    /// Linux: `swap_free()` (`swap_free_nr()` from 6.10).
    fn swap_free_cached(&self, slot: u64) {
        if let Some(Some(sl)) = self.swap.0.lock().slots.get_mut(slot as usize) {
            sl.count = sl.count.saturating_sub(1);
        }
    }

    /// Takes the locked `folio` out of the swap cache and frees its slots, if no swap
    /// entry names any of them any more; returns whether it did.
    ///
    /// Linux: `folio_free_swap()`.
    pub(crate) fn folio_free_swap(&self, folio: Folio) -> bool {
        let n = {
            let mut s = self.swap.0.lock();
            if s.folio_swapped(folio) {
                return false;
            }
            let n = s.delete_folio(folio);
            self.swap_sync_counts(&s);
            n
        };
        // The caller holds a reference of its own: none of these is the last one.
        for _ in 0..n {
            self.folio_put(folio);
        }
        n > 0
    }

    /// Linux: `vm_swap_full()`.
    fn swap_full(&self) -> bool {
        self.swap.0.lock().swap_full()
    }

    /// How many swap-cache references `folio` holds (one per slot).
    pub(crate) fn swap_cache_refs(&self, folio: Folio) -> usize {
        if !self.swap_cache_in_use() {
            return 0;
        }
        self.swap.0.lock().folio_slots(folio).len()
    }

    /// Whether the swap cache holds anything at all, read without the swap lock (so
    /// that paths that would free a cached folio add no lock when there is none).
    pub(crate) fn swap_cache_in_use(&self) -> bool {
        self.swap.2.load(Ordering::SeqCst) > 0
    }

    /// A page of an unmapped swap-cache folio was zapped: free its swap if the folio
    /// lock can be had and no entry names its slots (the model has no LRU to find it
    /// later, so the zap frees it, as Linux does for a page it batches); if someone
    /// holds the lock, its unlock does.
    ///
    /// Linux: `free_swap_cache()` from `free_pages_and_swap_cache()`.
    pub(crate) fn free_swap_cache(&self, folio: Folio) {
        if !self.swap_cache_in_use()
            || self.folio_mapped(folio)
            || self.swap_cache_slot(folio).is_none()
        {
            return;
        }
        if let Some(lock) = self.folio_trylock(folio) {
            self.folio_free_swap(folio);
            drop(lock);
            return;
        }
        // The lock holder (reclaim, a fault, migration) decides: its unlock frees the
        // slots no entry names (see swap_unlock_hook), as `free_swap_and_cache()`'s
        // trylock leaves them to it.
        let mut s = self.swap.0.lock();
        for sl in s.folio_slots(folio) {
            if s.slots
                .get(sl as usize)
                .and_then(Option::as_ref)
                .is_some_and(|x| x.count == 0)
            {
                s.orphans.insert(sl);
            }
        }
        self.swap_sync_counts(&s);
    }

    /// A swap-cache folio that nothing maps, no entry names and nothing but the cache
    /// references (its last other reference was just put) is unreachable: Linux's LRU
    /// would free it on its next pass (clean, unmapped: `__remove_mapping()`); the
    /// model has no LRU and frees it now. If its lock is held, the holder's unlock
    /// does.
    ///
    /// Linux: `shrink_folio_list()` on a clean, unmapped swap-cache folio.
    pub(crate) fn swap_release_unreachable(&self, folio: Folio) {
        if self.folio_mapped(folio) {
            return;
        }
        let n = {
            let mut s = self.swap.0.lock();
            let slots = s.folio_slots(folio);
            if slots.is_empty()
                || self.folio_ref_count(folio) != slots.len() as i32
                || s.folio_swapped(folio)
            {
                return;
            }
            let n = match self.folio_trylock(folio) {
                Some(lock) => {
                    lock.leak();
                    s.delete_folio(folio)
                }
                None => {
                    s.orphans.extend(slots);
                    0
                }
            };
            self.swap_sync_counts(&s);
            if n == 0 {
                return;
            }
            n
        };
        self.folio_unlock_raw(folio);
        for _ in 0..n {
            self.folio_put(folio);
        }
    }

    /// Called by every folio unlock, with the lock still held: frees the orphaned
    /// slots (see [`swap_free`](Self::swap_free)) whose cached folio this is, if no
    /// entry names another of its slots.
    ///
    /// Linux: `folio_free_swap()` by the lock holder.
    pub(crate) fn swap_unlock_hook(&self, folio: Folio) {
        if self.swap.1.load(Ordering::SeqCst) == 0 {
            return;
        }
        let freed = {
            let mut s = self.swap.0.lock();
            let mine: Vec<u64> = s
                .orphans
                .iter()
                .copied()
                .filter(|sl| s.cache.get(sl) == Some(&folio))
                .collect();
            let mut n = 0;
            if !mine.is_empty() {
                for sl in &mine {
                    s.orphans.remove(sl);
                }
                if !s.folio_swapped(folio) {
                    n = s.delete_folio(folio);
                }
            }
            self.swap_sync_counts(&s);
            n
        };
        // The unlocker holds a reference: none of these is the last one.
        for _ in 0..freed {
            self.folio_put(folio);
        }
    }

    /// Reclaims an anonymous folio to swap: give it a slot per page in the swap cache,
    /// unmap every mapping (each becomes a swap entry), write it out if it is dirty,
    /// and free it if nothing else holds it. `EAGAIN`: the folio is locked by someone
    /// else, mlocked, a large folio with references beyond its mappings (it cannot be
    /// split, so Linux does not try), or still mapped or referenced after the unmap
    /// (it then stays in the swap cache; a fault maps it from there). `ENOMEM`: no
    /// free slot (for a large folio: no naturally aligned run of them). `EINVAL`: not
    /// an anonymous folio (or already freed).
    ///
    /// Linux: `shrink_folio_list()` for one anon folio: `add_to_swap()`,
    /// `try_to_unmap()`, `pageout()`, `__remove_mapping()`.
    pub fn reclaim_folio(&self, folio: Folio) -> Result<(), Errno> {
        // The isolation reference first: with it the folio cannot be freed (and its
        // frame reused) while it is looked at.
        if !self.folio_try_get(folio) {
            return Err(Errno::EINVAL);
        }
        if !self.folio_test(folio, PageFlags::ANON) || self.page_folio(folio.head()) != Ok(folio) {
            self.folio_put(folio);
            return Err(Errno::EINVAL);
        }
        self.shrink_folio(folio)
    }

    /// [`reclaim_folio`](Self::reclaim_folio) for an anonymous folio the caller
    /// isolated (holds a reference on, which this consumes).
    ///
    /// Linux: `shrink_folio_list()`.
    pub(crate) fn shrink_folio(&self, folio: Folio) -> Result<(), Errno> {
        self.tracer().traced(
            || crate::trace::Payload::Reclaim {
                pfn: folio.head().raw(),
            },
            || self.shrink_folio_body(folio),
            |r| match r {
                Ok(()) => "freed".into(),
                Err(e) => e.name().into(),
            },
        )
    }

    /// [`shrink_folio`](Self::shrink_folio) without its trace operation.
    fn shrink_folio_body(&self, folio: Folio) -> Result<(), Errno> {
        let Some(lock) = self.folio_trylock(folio) else {
            self.folio_put(folio);
            return Err(Errno::EAGAIN);
        };
        lock.leak();
        let give_up = |e: Errno| {
            self.folio_unlock(folio);
            self.folio_put(folio);
            Err(e)
        };
        // Linux: shrink_folio_list(): `if (!folio_evictable(folio)) goto
        // activate_locked;` an mlocked folio stays (on the unevictable list).
        if self.folio_test_mlocked(folio) {
            return give_up(Errno::EAGAIN);
        }
        // A lazily freed folio (MADV_FREE) gets no swap: it is dropped if still clean.
        if self.folio_test(folio, PageFlags::LAZYFREE) {
            return self.shrink_lazyfree_folio(folio);
        }
        // A folio already in the swap cache keeps its slots; others get new ones. The
        // contents are not written yet: the folio may still be mapped writable.
        let nr = folio.nr_pages();
        let slot = match self.swap_cache_slot(folio) {
            Some(s) => s - s % nr,
            None => {
                // Linux 6.12: a possibly pinned folio is not given swap
                // (`keep_locked`): a DMA write could land after the write-out.
                if self.folio_maybe_dma_pinned(folio) {
                    return give_up(Errno::EAGAIN);
                }
                if folio.is_large() {
                    // The model reclaims a large folio as Linux 6.12 does with a free
                    // aligned run of slots (THP_SWAP): whole, PMD mappings split by
                    // the unmap (TTU_SPLIT_HUGE_PMD). Before that,
                    // can_split_folio(folio, 1): references beyond the mappings and
                    // our own (GUP, and 5.14's device-exclusive entries, which keep
                    // the reference but not the mapcount) mean `activate_locked`.
                    let entire = self.page(folio.head()).map_or(0, |p| p.entire_mapcount());
                    if self.folio_ref_count(folio) != self.folio_mapcount(folio) + entire + 1 {
                        return give_up(Errno::EAGAIN);
                    }
                }
                match self.add_to_swap(folio) {
                    Ok(s) => s,
                    Err(e) => return give_up(e),
                }
            }
        };
        self.trace_step(folio, "add_to_swap", || format!("slot {slot}"));
        // Linux: only a mapped folio is unmapped; 5.14's device-exclusive small folios
        // look unmapped (mapcount 0) and are skipped here.
        if self.folio_mapped(folio) {
            self.try_to_unmap(folio, Some(slot));
            self.trace_step(folio, "try_to_unmap", || {
                format!("mapcount now {}", self.folio_mapcount(folio))
            });
        }
        let mapped = self.folio_mapped(folio);
        let dirty = self.folio_test(folio, PageFlags::DIRTY);
        let mut s = self.swap.0.lock();
        // Whether the cache still holds this folio for these slots. It does (swap_free
        // cannot take it from under our lock, it leaves an orphan for us), but say so
        // where the write-out and the freeze depend on it.
        let ours = (0..nr).all(|i| s.cache.get(&(slot + i)) == Some(&folio));
        // Linux: pageout() after try_to_unmap(), only for a dirty folio: with no PTE
        // mapping the folio, no store can come after this copy, and every store
        // before the unmap is in it. A clean folio's slots already hold what it holds
        // (it was read from them, or written out since its last store), so it goes
        // without I/O. pageout() cleans the folio (clear_page_dirty_for_io()), also
        // one that stays: 5.14's folio held by a device-exclusive entry is written
        // and cleaned, though the device can still write to it.
        let write = ours && !mapped && dirty;
        if write {
            for i in 0..nr {
                let pfn = crate::types::Pfn::new(folio.head().raw() + i);
                let data: Result<Vec<u64>, Errno> = (0..WORDS_PER_PAGE as u64)
                    .map(|w| self.read_u64(pfn, w * 8))
                    .collect();
                if let (Ok(data), Some(Some(sl))) = (data, s.slots.get_mut((slot + i) as usize)) {
                    sl.data.copy_from_slice(&data);
                }
            }
            s.writeouts += nr;
            self.folio_clear(folio, PageFlags::DIRTY);
        }
        // Linux: __remove_mapping(): freeze the count at ours + the swap cache's (one
        // per page), so that no one can take a reference any more, and only then
        // leave the cache.
        let frozen = ours && !mapped && self.folio_ref_freeze(folio, 1 + nr as i32);
        self.trace_step(folio, "pageout", || {
            if write {
                "written"
            } else if mapped || !ours {
                "skipped (still mapped)"
            } else {
                "skipped (clean)"
            }
            .to_string()
        });
        self.trace_step(folio, "remove_mapping", || {
            if frozen {
                "frozen, freed"
            } else {
                "references remain"
            }
            .to_string()
        });
        // Not freed: the folio stays in the swap cache with its slots (Linux:
        // `activate_locked` keeps it cached for a later pass), also where no entry
        // names them, as for 5.14's "unmapped" device-exclusive folios; a later
        // reclaim of a clean one needs no write-out.
        if frozen {
            for i in 0..nr {
                // A slot whose entries were all zapped meanwhile (orphaned under our
                // lock) goes with the cache entry.
                let unused = s
                    .slots
                    .get((slot + i) as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|sl| sl.count == 0);
                s.delete_from_cache(slot + i, unused);
            }
        }
        self.swap_sync_counts(&s);
        drop(s);
        if frozen {
            // All the references (ours and the cache's) went with the freeze.
            self.folio_unlock_raw(folio);
            self.free_frozen_folio(folio);
            return Ok(());
        }
        self.folio_unlock(folio);
        self.folio_put(folio); // ours
        Err(Errno::EAGAIN)
    }

    /// Reclaim of a locked, isolated lazily freed folio: unmap it (a dirty one turns
    /// swap-backed again and stays), then free it if it is clean and only our
    /// reference is left (`EAGAIN` otherwise).
    ///
    /// Linux: `shrink_folio_list()` for an anon folio without PG_swapbacked: no
    /// `add_to_swap()`, `try_to_unmap()`, then `folio_ref_freeze(folio, 1)` unless
    /// it is dirty.
    fn shrink_lazyfree_folio(&self, folio: Folio) -> Result<(), Errno> {
        if self.folio_mapped(folio) {
            self.try_to_unmap(folio, None);
        }
        let freed = self.folio_test(folio, PageFlags::LAZYFREE)
            && !self.folio_mapped(folio)
            && !self.folio_test(folio, PageFlags::DIRTY)
            && self.folio_ref_freeze(folio, 1);
        self.trace_step(folio, "lazyfree", || {
            if freed { "dropped" } else { "kept" }.to_string()
        });
        if freed {
            self.folio_unlock_raw(folio);
            self.free_frozen_folio(folio);
            return Ok(());
        }
        self.folio_unlock(folio);
        self.folio_put(folio);
        Err(Errno::EAGAIN)
    }

    /// Splits every huge PMD mapping `folio` (reclaim and migration work on PTEs).
    ///
    /// Linux: `TTU_SPLIT_HUGE_PMD` → `split_huge_pmd_locked()` in the rmap walk.
    pub(crate) fn split_huge_pmds_of(&self, folio: Folio) {
        self.rmap_walk(folio, |hit| {
            let mut a = hit.address.raw().max(hit.vma.start.raw());
            let end = (hit.address.raw() + (folio.nr_pages() << crate::types::PAGE_SHIFT))
                .min(hit.vma.end.raw());
            while a < end {
                hit.mm.split_huge_pmd_address(VirtAddr::new_truncate(a));
                a = (a & !(super::pgtable::PMD_SIZE - 1)) + super::pgtable::PMD_SIZE;
            }
            ControlFlow::Continue(())
        });
    }

    /// A step of reclaim or migration, for traces.
    #[inline(always)]
    pub(crate) fn trace_step(
        &self,
        folio: Folio,
        step: &'static str,
        outcome: impl FnOnce() -> String,
    ) {
        self.tracer().instant(|| crate::trace::Payload::KernelStep {
            pfn: folio.head().raw(),
            step: step.into(),
            outcome: outcome().into(),
        });
    }

    /// The slot whose swap-cache folio `folio` is, if any.
    ///
    /// Linux: `folio_test_swapcache()` + `folio->swap`.
    pub(crate) fn swap_cache_slot(&self, folio: Folio) -> Option<u64> {
        self.swap
            .0
            .lock()
            .cache
            .iter()
            .find(|(_, f)| **f == folio)
            .map(|(s, _)| *s)
    }

    /// Whether `folio` is the swap cache's folio for `slot`.
    ///
    /// Linux: `folio_test_swapcache(folio) && folio->swap.val == entry.val`.
    fn swap_cache_holds(&self, slot: u64, folio: Folio) -> bool {
        self.swap.0.lock().cache.get(&slot) == Some(&folio)
    }

    /// Points the swap cache entries of `old` (every slot of it) at `new` (migration),
    /// moving the cache's references. A folio whose slots were orphaned (no entry names
    /// them) leaves the cache instead.
    ///
    /// Linux: the swap-cache half of `folio_migrate_mapping()`.
    pub(crate) fn swap_cache_replace(&self, old: Folio, new: Folio) {
        let (replaced, deleted) = {
            let mut s = self.swap.0.lock();
            let slots = s.folio_slots(old);
            let orphaned = slots.iter().any(|sl| s.orphans.contains(sl));
            let r = if orphaned && !s.folio_swapped(old) {
                (0, s.delete_folio(old))
            } else {
                for sl in &slots {
                    s.orphans.remove(sl);
                    s.cache.insert(*sl, new);
                }
                (slots.len(), 0)
            };
            self.swap_sync_counts(&s);
            r
        };
        for _ in 0..replaced {
            self.folio_get(new);
            self.folio_put(old);
        }
        for _ in 0..deleted {
            self.folio_put(old);
        }
    }

    /// Gives `folio` a free slot per page (a naturally aligned run for a large folio,
    /// as Linux's swap clusters do) and puts it in the swap cache (one reference per
    /// slot), marking it dirty. The contents are written later, once the folio is
    /// unmapped.
    ///
    /// Linux: `add_to_swap()` (`folio_alloc_swap()`, `add_to_swap_cache()`,
    /// `folio_mark_dirty()`).
    fn add_to_swap(&self, folio: Folio) -> Result<u64, Errno> {
        let nr = folio.nr_pages();
        let mut s = self.swap.0.lock();
        let total = s.slots.len() as u64;
        let base = (0..total / nr)
            .map(|c| c * nr)
            .find(|&b| (b..b + nr).all(|i| s.slots[i as usize].is_none()))
            .ok_or(Errno::ENOMEM)?;
        for i in base..base + nr {
            s.slots[i as usize] = Some(Slot {
                data: vec![0u64; WORDS_PER_PAGE].into_boxed_slice(),
                count: 0,
            });
            s.cache.insert(i, folio);
            // Under the swap lock: a swapin that finds the folio in the cache can only
            // take its reference after this one exists.
            self.folio_get(folio);
        }
        self.swap_sync_counts(&s);
        drop(s);
        // Linux: "the folio will be dirtied in unmap because its pte should be dirty"
        // (add_to_swap()), so that a new slot is always written.
        self.folio_set(folio, PageFlags::DIRTY);
        Ok(base)
    }

    /// Replaces every mapping of `folio` with a swap entry for its page's slot
    /// (`base` + the page's index in the folio). A lazily freed folio (`base` None)
    /// loses each mapping outright while it is clean and referenced only by its
    /// mappings and the caller; a dirty one becomes swap-backed again and the walk
    /// stops (Linux: the MADV_FREE check).
    ///
    /// Linux: `try_to_unmap()` → `try_to_unmap_one()`.
    fn try_to_unmap(&self, folio: Folio, base: Option<u64>) {
        if folio.is_large() {
            self.split_huge_pmds_of(folio);
        }
        self.rmap_walk(folio, |hit| {
            let start = hit.address.raw().max(hit.vma.start.raw());
            let end = (hit.address.raw() + (folio.nr_pages() << crate::types::PAGE_SHIFT))
                .min(hit.vma.end.raw());
            let range = MmuNotifierRange::new(hit.mm, MmuNotifierEvent::Clear, start, end)
                .invalidate_range_start();
            let handles_entries = hit.mm.profile().walkers_handle_entries;
            let vma_locked = hit.vma.flags.contains(super::VmFlags::LOCKED);
            let mut hit_locked = false;
            let _ = hit
                .mm
                .page_vma_mapped_walk(folio, &hit.vma, hit.address, |found| {
                    let PvmwHit::Pte { ptl, addr, pte } = found else {
                        return ControlFlow::Continue(());
                    };
                    // Linux: try_to_unmap_one(): a mapping in a VM_LOCKED VMA aborts
                    // the walk, restoring the mlock that was missed (a page mapped
                    // before mlock reached it).
                    if vma_locked {
                        hit_locked = true;
                        return ControlFlow::Break(());
                    }
                    let (pfn, soft_dirty, uffd_wp, mapped_count) = match pte {
                        // Linux: folio_try_share_anon_rmap_pte() refuses a possibly pinned
                        // exclusive page and try_to_unmap_one() gives up: the pin keeps pointing
                        // at what the process maps.
                        Pte::Present(p)
                            if self
                                .page(p.pfn)
                                .is_some_and(|pg| pg.test(PageFlags::ANON_EXCLUSIVE))
                                && self.folio_maybe_dma_pinned(folio) =>
                        {
                            return ControlFlow::Break(());
                        }
                        // 6.15 takes the same anon path for an entry, so the same check
                        // puts the entry back and gives up (try_to_unmap_one() since
                        // fixes v2 10/17; spec 4.7).
                        Pte::Swap(s)
                            if s.is_device_exclusive()
                                && handles_entries
                                && s.pfn()
                                    .and_then(|pfn| self.page(pfn))
                                    .is_some_and(|pg| pg.test(PageFlags::ANON_EXCLUSIVE))
                                && self.folio_maybe_dma_pinned(folio) =>
                        {
                            return ControlFlow::Break(());
                        }
                        Pte::Present(p) => {
                            if p.is_dirty() {
                                self.folio_set(folio, PageFlags::DIRTY);
                            }
                            (
                                p.pfn,
                                p.flags.contains(PteFlags::SOFT_DIRTY),
                                p.flags.contains(PteFlags::UFFD_WP),
                                true,
                            )
                        }
                        // 6.15 (fixes v2 10/17): the pfn comes from the entry, the entry
                        // is cleared without dirty transfer, and it becomes an ordinary
                        // swap entry with the entry's own soft-dirty and uffd-wp bits.
                        Pte::Swap(s) if s.is_device_exclusive() && handles_entries => {
                            let Some(pfn) = s.pfn() else {
                                return ControlFlow::Continue(());
                            };
                            (
                                pfn,
                                s.soft_dirty,
                                s.uffd_wp,
                                hit.mm.profile().mapcount_kept_on_entry,
                            )
                        }
                        // 5.14 to 6.14: the walk hands over the entry of a large folio
                        // as if it were a present PTE (spec 8 item 12). A small folio
                        // with an entry looks unmapped (no walk).
                        Pte::Swap(s) if s.is_device_exclusive() && folio.is_large() => {
                            return self.e1_unmap_entry_as_present(folio, hit.mm, ptl, addr, s);
                        }
                        _ => return ControlFlow::Continue(()),
                    };
                    let Some(base) = base else {
                        // Linux: `ref_count == 1 + map_count` and not dirty: discard
                        // (the address reads zero from now on); else swap-backed again.
                        let clean = !self.folio_test(folio, PageFlags::DIRTY);
                        if clean && self.folio_ref_count(folio) == 1 + self.folio_mapcount(folio) {
                            ptl.clear(addr);
                            if mapped_count {
                                self.folio_remove_rmap_pte(pfn);
                            }
                            hit.mm.add_rss_anon(-1);
                            self.folio_put(folio);
                            return ControlFlow::Continue(());
                        }
                        self.folio_clear(folio, PageFlags::LAZYFREE);
                        return ControlFlow::Break(());
                    };
                    ptl.clear(addr);
                    let exclusive = self
                        .page(pfn)
                        .is_some_and(|p| p.test(PageFlags::ANON_EXCLUSIVE));
                    let entry = SwapPte {
                        swp_type: 0,
                        offset: base + (pfn.raw() - folio.head().raw()),
                        soft_dirty,
                        uffd_wp,
                        exclusive,
                    };
                    ptl.set(addr, Pte::Swap(entry));
                    self.swap_duplicate(entry.offset);
                    if mapped_count {
                        self.folio_remove_rmap_pte(pfn);
                    }
                    hit.mm.add_rss_anon(-1);
                    self.folio_put(folio);
                    ControlFlow::Continue(())
                });
            range.end();
            if hit_locked {
                self.mlock_vma_folio(folio, hit.vma.flags);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
    }

    /// What `try_to_unmap_one()` of 5.14 to 6.14 does with a device-exclusive entry of
    /// a large folio, which its walk hands over as a present PTE (spec 8 item 12): the
    /// subpage from `pte_pfn()` of the swap PTE (x86-64: the entry's pfn shifted right
    /// by three, `swp_misread.rs`), the entry cleared, and the swap entry taken from
    /// that page's folio (`page_swap_entry()`: its swap-cache slot). A page outside
    /// the swap cache has none (`folio->swap` is 0: type 0, offset 0, the swap
    /// header, which `swap_duplicate()` refuses with `ENOENT`), so the entry is put
    /// back and the walk aborts: the device was already told (the walk's Clear
    /// range), reclaim fails. A page in the swap cache hands over its own slot: the
    /// address then names another page's contents, that page's mapcount is dropped
    /// and the folio's reference put.
    ///
    /// Linux 5.14 to 6.14: the present-PTE path of `try_to_unmap_one()`.
    fn e1_unmap_entry_as_present(
        &self,
        folio: Folio,
        mm: &Mm,
        ptl: &mut super::pagewalk::PtlGuard<'_>,
        addr: VirtAddr,
        entry: SwapPte,
    ) -> ControlFlow<()> {
        use super::swp_misread as x86;
        let subpage = x86::pte_pfn(entry);
        // A frame beyond the model's memory (docs/ARCHITECTURE.md item 40).
        let Some(page) = self.page(subpage) else {
            return ControlFlow::Continue(());
        };
        let anon_exclusive = page.test(PageFlags::ANON_EXCLUSIVE);
        ptl.clear(addr);
        if x86::pte_dirty(entry) {
            self.folio_set(folio, PageFlags::DIRTY);
        }
        // Linux: page_swap_entry(subpage): the slot of the subpage's folio.
        let slot = self.page_folio(subpage).ok().and_then(|f| {
            self.swap_cache_slot(f).map(|s| {
                let nr = f.nr_pages();
                s - s % nr + (subpage.raw() - f.head().raw())
            })
        });
        let Some(slot) = slot.filter(|&sl| self.swap_duplicate_checked(sl)) else {
            ptl.set(addr, Pte::Swap(entry));
            return ControlFlow::Break(());
        };
        if anon_exclusive {
            // Linux: folio_try_share_anon_rmap_pte(folio, subpage), on the wrong page.
            if self.folio_maybe_dma_pinned(folio) {
                self.swap_free(slot);
                ptl.set(addr, Pte::Swap(entry));
                return ControlFlow::Break(());
            }
            page.clear(PageFlags::ANON_EXCLUSIVE);
        }
        let swp = SwapPte {
            swp_type: 0,
            offset: slot,
            soft_dirty: x86::pte_soft_dirty(entry),
            uffd_wp: x86::pte_uffd_wp(entry),
            exclusive: anon_exclusive,
        };
        ptl.set(addr, Pte::Swap(swp));
        mm.add_rss_anon(-1);
        self.folio_remove_rmap_pte(subpage);
        self.folio_put(folio);
        ControlFlow::Continue(())
    }

    /// The folio holding `slot`'s contents: the cached one (with a new reference), or
    /// a new folio read from the slot and added to the cache. `None`: no such slot.
    ///
    /// Linux: `swapin_readahead()` → `__read_swap_cache_async()` for one page
    /// (MADV_WILLNEED: `read_swap_cache_async()`).
    pub(crate) fn swapin(&self, slot: u64) -> Result<Option<Folio>, Errno> {
        let mut s = self.swap.0.lock();
        if let Some(&f) = s.cache.get(&slot) {
            self.folio_get(f);
            return Ok(Some(f));
        }
        let Some(Some(sl)) = s.slots.get(slot as usize) else {
            return Ok(None);
        };
        let new = self
            .folio_alloc(0, Gfp::empty())
            .map_err(|_| Errno::ENOMEM)?;
        for (i, w) in sl.data.iter().enumerate() {
            self.write_u64(new.head(), i as u64 * 8, *w)?;
        }
        self.folio_set(new, PageFlags::ANON);
        s.cache.insert(slot, new);
        self.swap_sync_counts(&s);
        drop(s);
        self.folio_get(new); // the caller's; the allocation's is the cache's
        Ok(Some(new))
    }
}

/// The PTE a swap-in maps `pfn` with: the VMA's protection, young, the entry's
/// soft-dirty and uffd-wp bits, and writable and dirty for a write that may map it
/// so (`writable`: an exclusive page, or a fresh copy) unless the VMA forbids it or
/// uffd-wp protects it.
///
/// Linux: `do_swap_page()`'s `mk_pte()` and `maybe_mkwrite()`.
fn swapin_pte(
    vma: &super::Vma,
    pfn: crate::types::Pfn,
    entry: SwapPte,
    writable: bool,
) -> super::PresentPte {
    let mut flags = vma.page_prot() | PteFlags::ACCESSED;
    if entry.soft_dirty {
        flags |= PteFlags::SOFT_DIRTY;
    }
    if entry.uffd_wp {
        flags |= PteFlags::UFFD_WP;
    }
    let pte = super::PresentPte::new(pfn, flags);
    if writable && vma.flags.contains(super::VmFlags::WRITE) && !entry.uffd_wp {
        pte.with(PteFlags::WRITE).mkdirty()
    } else {
        pte
    }
}

impl Mm {
    /// A copy of the small swap-cache folio `folio` for mapping at `addr`, if it
    /// belongs to another anon_vma family or index (rmap would not find it there);
    /// `None`: map `folio` itself (a large folio, a KSM page, a page with no identity
    /// yet, or one that already sits at this index).
    ///
    /// Linux: `ksm_might_need_to_copy()`.
    fn ksm_might_need_to_copy(
        &self,
        folio: Folio,
        vma: &super::Vma,
        addr: VirtAddr,
        anon: Option<&super::AnonVma>,
    ) -> Result<Option<Folio>, Errno> {
        let mem = &self.mem;
        if folio.is_large() {
            return Ok(None);
        }
        let Some(head) = mem.page(folio.head()) else {
            return Ok(None);
        };
        let (Some(super::page::Mapping::Anon(id)), Some(av)) = (head.mapping(), anon) else {
            return Ok(None);
        };
        if id == av.id() && head.index() == vma.linear_page_index(addr) {
            return Ok(None);
        }
        let new = mem
            .folio_alloc(0, Gfp::empty())
            .map_err(|_| Errno::ENOMEM)?;
        if mem.copy_page(new.head(), folio.head()).is_err() {
            mem.folio_put(new);
            return Err(Errno::EFAULT);
        }
        Ok(Some(new))
    }
}

impl SwapPte {
    /// A real swap entry (a slot of a swap device), not a special one.
    ///
    /// Linux: `!non_swap_entry()`.
    pub const fn is_swap(&self) -> bool {
        self.swp_type < super::pgtable::swp_type::MAX_SWAPFILES
    }
}

impl Mm {
    /// Reclaims up to `n` small anonymous folios this mm maps, in address order;
    /// returns how many were freed.
    ///
    /// The candidates are isolated (each gets a reference) under the mmap lock for
    /// read and each table's PTL, as Linux's LRU isolation does; reclaim proper runs
    /// after both are dropped, from the folio side (the rmap walk), so it races
    /// faults, zaps and fork the way Linux's does.
    ///
    /// Linux: what `shrink_node()` would pick, as an explicit call.
    pub fn reclaim_mm(&self, n: usize) -> usize {
        let candidates = {
            let tree = self.mmap_read_lock();
            let mut found = Vec::new();
            for vma in tree.iter() {
                self.isolate_anon_folios(vma.start(), vma.end(), true, &mut found);
            }
            found
        };
        let mut freed = 0;
        for f in candidates {
            if freed < n {
                if self.mem.shrink_folio(f).is_ok() {
                    freed += 1;
                }
            } else {
                self.mem.folio_put(f);
            }
        }
        freed
    }

    /// Appends to `out` each folio mapped by a present PTE in `[start, end)` (small
    /// anonymous ones only if `small_anon_only`), once, with a reference taken under
    /// the PTL so that it cannot be freed before its reclaim looks at it.
    ///
    /// Linux: `folio_isolate_lru()` from a page-table walk.
    fn isolate_anon_folios(
        &self,
        start: VirtAddr,
        end: VirtAddr,
        small_anon_only: bool,
        out: &mut Vec<Folio>,
    ) {
        self.for_each_pte_table(start, end, |ptl, s, e| {
            for a in (s.raw()..e.raw()).step_by(PAGE_SIZE as usize) {
                if let Pte::Present(p) = ptl.get(VirtAddr::new_truncate(a))
                    && !p.is_special()
                    && let Ok(f) = self.mem.page_folio(p.pfn)
                    && (!small_anon_only
                        || (f.order() == 0 && self.mem.folio_test(f, PageFlags::ANON)))
                    && !out.contains(&f)
                    && self.mem.folio_try_get(f)
                {
                    out.push(f);
                }
            }
        });
    }

    /// MADV_PAGEOUT over `[start, end)`: reclaims the small anonymous folios mapped by
    /// present PTEs; non-present entries (swap, migration, device-exclusive) are
    /// skipped, in both eras, so a device keeps its exclusive pages (spec 4.5).
    ///
    /// Caller holds the mmap lock for read.
    ///
    /// Linux: `madvise_pageout()` → `madvise_cold_or_pageout_pte_range()` +
    /// `reclaim_pages()`.
    pub(crate) fn madvise_pageout(&self, start: VirtAddr, end: VirtAddr) {
        let mut folios = Vec::new();
        self.isolate_anon_folios(start, end, false, &mut folios);
        for f in folios {
            if f.order() == 0 && self.mem.folio_test(f, PageFlags::ANON) {
                let _ = self.mem.shrink_folio(f);
            } else {
                // Linux: reclaim_pages() does not swap large or file folios here
                // (the model's reclaim does not split them).
                self.mem.folio_put(f);
            }
        }
    }

    /// A fault on a swap entry: bring the page in (from the swap cache or the slot),
    /// lock it (or retry, as any fault waiting for a folio lock), check that it is
    /// still the slot's and that the entry is still there, map it (writable only for a
    /// write to a page the entry says is exclusive), and drop the slot when no entry
    /// names it any more.
    ///
    /// Linux: `do_swap_page()` (the swap half).
    pub(crate) fn do_swap_page_swapin(
        &self,
        guard: &mut crate::sync::MmapReadGuard<'_, super::VmaTree>,
        vma: &super::Vma,
        addr: VirtAddr,
        flags: super::FaultFlags,
        entry: SwapPte,
        anon: Option<&super::AnonVma>,
    ) -> Result<super::VmFault, Errno> {
        let mem = &self.mem;
        let write = flags.contains(super::FaultFlags::WRITE);
        let Some(folio) = mem.swapin(entry.offset)? else {
            // No such slot any more: the entry changed under us (zapped, or swapped
            // in by another fault); the access retries and sees what is there now.
            return Ok(super::VmFault::Done);
        };
        // Lock order: mmap lock, folio lock, PTL. Reclaim holds the folio lock from
        // before the unmap until the folio is written out and frozen.
        if !self.folio_lock_or_retry(guard, folio, flags) {
            mem.folio_put(folio);
            return Ok(super::VmFault::Retry);
        }
        let unlock_put = || {
            mem.folio_unlock(folio);
            mem.folio_put(folio);
        };
        // The folio left the swap cache while we waited for its lock (a racing
        // swap-in mapped it and dropped the slot, or the last entry was zapped, or
        // migration replaced it): start over (Linux: the same check, then `goto out`).
        if !mem.swap_cache_holds(entry.offset, folio) {
            unlock_put();
            return Ok(super::VmFault::Done);
        }
        // Linux: ksm_might_need_to_copy(): a swap-cache page that another mapping
        // brought in under its own anon_vma or index (the slot of a KSM page, which
        // several addresses share) is copied, so that rmap finds every mapping.
        let copy = match self.ksm_might_need_to_copy(folio, vma, addr, anon) {
            Ok(c) => c,
            Err(e) => {
                unlock_put();
                return Err(e);
            }
        };
        let ptl = self
            .pte_offset_map_lock(addr)
            .filter(|ptl| ptl.get(addr) == Pte::Swap(entry));
        let Some(mut ptl) = ptl else {
            if let Some(new) = copy {
                mem.folio_put(new);
            }
            unlock_put();
            return Ok(super::VmFault::Done);
        };
        // A copy exists only for a VMA with an anon_vma (ksm_might_need_to_copy()).
        if let Some((new, av)) = copy.zip(anon) {
            // Linux: do_swap_page(): "a fresh page that is not exposed to the
            // swapcache -> certainly exclusive"; folio_add_new_anon_rmap().
            mem.folio_add_new_anon_rmap(new, av, vma.linear_page_index(addr));
            mem.mlock_vma_folio(new, vma.flags);
            let pte = swapin_pte(vma, new.head(), entry, write);
            ptl.set(addr, Pte::Present(pte));
            self.add_rss_anon(1);
            drop(ptl);
            // The allocation's reference is the PTE's; the swap-cache page keeps the
            // slot for the other entries.
            mem.swap_free_cached(entry.offset);
            unlock_put();
            return Ok(super::VmFault::Done);
        }
        // The folio's identity: the anon_vma of this VMA if it is new.
        if let Some(h) = mem.page(folio.head())
            && h.mapping().is_none()
            && let Some(av) = anon
        {
            h.set_mapping(
                Some(super::page::Mapping::Anon(av.id())),
                vma.linear_page_index(addr),
            );
        }
        // The page of the folio this slot holds (a large folio's slots are a
        // naturally aligned run, one per page).
        let pfn = crate::types::Pfn::new(folio.head().raw() + entry.offset % folio.nr_pages());
        let page = mem.page(pfn);
        let mapped = page.map_or(0, |p| p.mapcount());
        if entry.exclusive && mapped == 0 {
            if let Some(p) = page {
                p.set(PageFlags::ANON_EXCLUSIVE);
            }
        } else if let Some(p) = page {
            p.clear(PageFlags::ANON_EXCLUSIVE);
        }
        if let Some(p) = page {
            p.mapcount_add(1);
        }
        // Linux: folio_add_anon_rmap_pte() → mlock_vma_folio().
        mem.mlock_vma_folio(folio, vma.flags);
        let exclusive = page.is_some_and(|p| p.test(PageFlags::ANON_EXCLUSIVE));
        let pte = swapin_pte(vma, pfn, entry, write && exclusive);
        ptl.set(addr, Pte::Present(pte));
        self.add_rss_anon(1);
        drop(ptl);
        // Our reference is now the PTE's. The slot loses this entry's use but stays
        // with the swap cache (Linux: swap_free(), SWAP_HAS_CACHE), so that a clean
        // folio can be reclaimed again without being written. Linux lets go of the
        // swap only when should_try_to_free_swap() says so: a write fault (the folio
        // is about to be dirty, the slot's copy stale), an mlocked folio (never
        // reclaimed), or more than half of swap in use (vm_swap_full()).
        mem.swap_free_cached(entry.offset);
        let locked = vma.flags.contains(super::VmFlags::LOCKED) || mem.folio_test_mlocked(folio);
        if (write && !mem.folio_test_ksm(folio)) || locked || mem.swap_full() {
            mem.folio_free_swap(folio);
        }
        mem.folio_unlock(folio);
        Ok(super::VmFault::Done)
    }
}
