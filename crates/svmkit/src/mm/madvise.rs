//! Advice on ranges (Linux: `mm/madvise.c`): `MADV_DONTNEED` zaps (`EINVAL` on
//! mlocked memory, as for `MADV_PAGEOUT`, `MADV_COLD` and `MADV_FREE`), `MADV_FREE`
//! makes clean pages lazily freed (reclaim drops them; swap entries in the range are
//! zapped), `MADV_COLD` clears young bits (deactivation: the model has no LRU),
//! `MADV_WILLNEED` reads swapped-out pages into the swap cache; all three leave
//! device-exclusive entries alone in every era (spec 4.5). `MADV_HUGEPAGE` and
//! `MADV_NOHUGEPAGE` set VMA flags for the THP layer, `MADV_PAGEOUT` reclaims,
//! `MADV_POPULATE_READ`/`_WRITE` fault pages in as GUP does (so a device-exclusive
//! entry in the range is restored, revoking the device: spec 4.5's "fault" rule),
//! `MADV_COLLAPSE` collapses whole 2 MiB ranges into THPs (`khugepaged.rs`).

use super::gup::GupFlags;
use super::mm_types::{Mm, MmUser};
use super::mmap::page_align;
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::page::PageFlags;
use super::pgtable::{PMD_SIZE, Pte, PteFlags};
use super::vma::{VmFlags, VmaTree};
use crate::error::Errno;
use crate::types::{PAGE_SIZE, VirtAddr};

/// The advice values the model understands (Linux: `MADV_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Advice {
    /// MADV_WILLNEED (3): the pages will be needed: read swapped-out ones into the
    /// swap cache now (swap-in readahead).
    WillNeed,
    /// MADV_DONTNEED (4): drop the pages; the next access sees zeroes.
    DontNeed,
    /// MADV_FREE (8, Linux 4.5): the contents may be dropped: clean pages become
    /// lazily freed (reclaim frees them without swap, and they then read zero); a
    /// write before that keeps them.
    Free,
    /// MADV_MERGEABLE (12): KSM may merge identical pages here (`VM_MERGEABLE`).
    Mergeable,
    /// MADV_UNMERGEABLE (13): no more merging, and every KSM page here is copied
    /// back into a private page (`break_ksm()`).
    Unmergeable,
    /// MADV_HUGEPAGE (14): prefer transparent huge pages here.
    HugePage,
    /// MADV_NOHUGEPAGE (15): never use transparent huge pages here.
    NoHugePage,
    /// MADV_COLD (20, Linux 5.4): the pages are cold: age them (young bits cleared).
    Cold,
    /// MADV_PAGEOUT (21): reclaim the range's anonymous pages to swap now.
    PageOut,
    /// MADV_POPULATE_READ (22, Linux 5.14): fault the range in readable, as a read
    /// would (the zero page where nothing is mapped).
    PopulateRead,
    /// MADV_POPULATE_WRITE (23, Linux 5.14): fault the range in writable, as a write
    /// would (breaking COW), without writing.
    PopulateWrite,
    /// MADV_COLLAPSE (25, Linux 6.1): collapse each whole 2 MiB of the range into a
    /// PMD-mapped THP now, synchronously (`mm/khugepaged.c`).
    Collapse,
}

impl Advice {
    /// The advice for a Linux `MADV_*` number; `EINVAL` for any other.
    pub fn from_raw(raw: i32) -> Result<Self, Errno> {
        match raw {
            3 => Ok(Advice::WillNeed),
            4 => Ok(Advice::DontNeed),
            8 => Ok(Advice::Free),
            12 => Ok(Advice::Mergeable),
            13 => Ok(Advice::Unmergeable),
            14 => Ok(Advice::HugePage),
            15 => Ok(Advice::NoHugePage),
            20 => Ok(Advice::Cold),
            21 => Ok(Advice::PageOut),
            22 => Ok(Advice::PopulateRead),
            23 => Ok(Advice::PopulateWrite),
            25 => Ok(Advice::Collapse),
            _ => Err(Errno::EINVAL),
        }
    }

    /// The Linux `MADV_*` number.
    pub fn raw(self) -> i32 {
        match self {
            Advice::WillNeed => 3,
            Advice::DontNeed => 4,
            Advice::Free => 8,
            Advice::Mergeable => 12,
            Advice::Unmergeable => 13,
            Advice::HugePage => 14,
            Advice::NoHugePage => 15,
            Advice::Cold => 20,
            Advice::PageOut => 21,
            Advice::PopulateRead => 22,
            Advice::PopulateWrite => 23,
            Advice::Collapse => 25,
        }
    }
}

impl MmUser {
    /// Applies `advice` to `[addr, addr + len)`.
    ///
    /// As Linux: `EINVAL` for an unaligned `addr` or a length that overflows when
    /// rounded; a zero `len` succeeds; unmapped parts of the range give `ENOMEM`
    /// *after* the advice was applied to the mapped parts.
    ///
    /// `DontNeed`, `PageOut` and the populates run under the mmap lock in read mode,
    /// concurrently with faults; the others change VMA flags (splitting and merging
    /// VMAs) under write mode. The populates answer as Linux's `madvise_populate()`:
    /// `ENOMEM` at the first page no VMA covers, `EINVAL` for a VMA without the access
    /// (`PROT_NONE`, or read-only for `PopulateWrite`), `EFAULT` for a page that cannot
    /// be faulted in; the pages before it stay populated.
    ///
    /// Linux: `madvise()` → `do_madvise()`.
    pub fn madvise(&self, addr: u64, len: u64, advice: Advice) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let len = page_align(len).ok_or(Errno::EINVAL)?;
        let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
        if end == addr {
            return Ok(());
        }
        let (Ok(start), Ok(end)) = (VirtAddr::try_new(addr), VirtAddr::try_new(end)) else {
            return Err(Errno::ENOMEM);
        };
        // The mapped pieces of the range, and whether there was a hole.
        let pieces = |tree: &VmaTree| -> (Vec<(VirtAddr, VirtAddr, VmFlags)>, bool) {
            let ranges = tree
                .intersecting(start, end)
                .map(|v| (v.start().max(start), v.end().min(end), v.flags))
                .collect();
            (ranges, tree.covers(start, end))
        };
        let covered = match advice {
            Advice::PopulateRead | Advice::PopulateWrite => {
                return self.madvise_populate(start, end, advice == Advice::PopulateWrite);
            }
            Advice::Collapse => {
                // Linux: madvise_walk_vmas() calls madvise_collapse() once per VMA
                // piece; the first failure is the answer, a hole ENOMEM at the end.
                let (ranges, covered) = pieces(&self.mmap_read_lock());
                for (s, e, _) in ranges {
                    self.madvise_collapse(s, e)?;
                }
                covered
            }
            Advice::DontNeed => {
                let tree = self.mmap_read_lock();
                let (ranges, covered) = pieces(&tree);
                for (s, mut e, flags) in ranges {
                    // Linux: madvise_dontneed_free_valid_vma() → can_madv_lru_vma():
                    // not on mlocked memory.
                    if flags.contains(VmFlags::LOCKED) {
                        return Err(Errno::EINVAL);
                    }
                    // Linux: the same function on a hugetlb VMA: the start must be
                    // 2 MiB aligned, the end is aligned down.
                    if flags.contains(VmFlags::HUGETLB) {
                        if !s.raw().is_multiple_of(PMD_SIZE) {
                            return Err(Errno::EINVAL);
                        }
                        e = VirtAddr::new_truncate(e.raw() & !(PMD_SIZE - 1));
                        if e <= s {
                            continue;
                        }
                    }
                    // Linux: zap_page_range_single(), one Clear range per VMA piece.
                    let range =
                        MmuNotifierRange::new(self, MmuNotifierEvent::Clear, s.raw(), e.raw())
                            .invalidate_range_start();
                    self.unmap_page_range(s, e, flags);
                    range.end();
                }
                covered
            }
            Advice::PageOut | Advice::Cold | Advice::Free => {
                let tree = self.mmap_read_lock();
                let (ranges, covered) = pieces(&tree);
                for (s, e, flags) in ranges {
                    // Linux: can_madv_lru_vma() (madvise_pageout(), madvise_cold(),
                    // madvise_dontneed_free_valid_vma()).
                    if flags.intersects(VmFlags::LOCKED | VmFlags::HUGETLB) {
                        return Err(Errno::EINVAL);
                    }
                    match advice {
                        Advice::PageOut => self.madvise_pageout(s, e),
                        Advice::Cold => self.madvise_cold(s, e),
                        _ => {
                            // Linux: madvise_free_single_vma(): anonymous memory only.
                            if flags.contains(VmFlags::SHARED) {
                                return Err(Errno::EINVAL);
                            }
                            self.madvise_free(s, e);
                        }
                    }
                }
                covered
            }
            Advice::WillNeed => {
                let tree = self.mmap_read_lock();
                let (ranges, covered) = pieces(&tree);
                for (s, e, flags) in ranges {
                    // Linux: madvise_willneed() reads swap only for anonymous VMAs
                    // (shmem's readahead reads its page cache, which is not modelled).
                    if !flags.contains(VmFlags::SHARED) {
                        self.madvise_willneed(s, e);
                    }
                }
                covered
            }
            Advice::Mergeable | Advice::Unmergeable => {
                let mut tree = self.mmap_write_lock();
                let (ranges, covered) = pieces(&tree);
                for (s, e, flags) in ranges {
                    // Linux: ksm_madvise() leaves shared and hugetlb VMAs alone (no
                    // error).
                    if flags.intersects(VmFlags::SHARED | VmFlags::HUGETLB) {
                        continue;
                    }
                    // Linux: madvise_update_vma() splits the VMA, and __split_vma()
                    // splits a huge PMD across the new boundary first.
                    self.vma_adjust_trans_huge(s, e);
                    if advice == Advice::Mergeable {
                        tree.update_flags(s, e, |f| f | VmFlags::MERGEABLE);
                    } else {
                        self.break_ksm(&tree, s, e);
                        tree.update_flags(s, e, |f| f - VmFlags::MERGEABLE);
                    }
                }
                tree.merge_around(start, end);
                covered
            }
            Advice::HugePage | Advice::NoHugePage => {
                let (set, clear) = if advice == Advice::HugePage {
                    (VmFlags::HUGEPAGE, VmFlags::NOHUGEPAGE)
                } else {
                    (VmFlags::NOHUGEPAGE, VmFlags::HUGEPAGE)
                };
                let mut tree = self.mmap_write_lock();
                // Linux: the VMA split refuses to cut a hugetlb VMA off 2 MiB.
                super::hugetlb::check_hugetlb_split(&tree, start, end)?;
                let (ranges, covered) = pieces(&tree);
                for (s, e, _) in ranges {
                    self.vma_adjust_trans_huge(s, e);
                    tree.update_flags(s, e, |f| (f | set) - clear);
                }
                tree.merge_around(start, end);
                covered
            }
        };
        if covered { Ok(()) } else { Err(Errno::ENOMEM) }
    }

    /// Faults `[start, end)` in, page by page, as GUP does without taking references
    /// (the model's GUP takes one per page, dropped at once: no state remains).
    ///
    /// Linux: `madvise_populate()` → `faultin_page_range()`.
    fn madvise_populate(&self, start: VirtAddr, end: VirtAddr, write: bool) -> Result<(), Errno> {
        let mut guard = self.mmap_read_lock();
        let (need, flags) = if write {
            (VmFlags::WRITE, GupFlags::GET | GupFlags::WRITE)
        } else {
            (VmFlags::READ, GupFlags::GET)
        };
        let mut addr = start.raw();
        while addr < end.raw() {
            let Some(vma) = guard.find(VirtAddr::new_truncate(addr)) else {
                return Err(Errno::ENOMEM);
            };
            if !vma.flags.contains(need) {
                return Err(Errno::EINVAL);
            }
            let piece_end = vma.end().raw().min(end.raw());
            let nr = (piece_end - addr) / PAGE_SIZE;
            // A short count (the fault dropped the mmap lock, or failed past the first
            // page) goes on from the first page not done; only a failure on it is
            // the answer.
            let pages = self
                .get_user_pages(&mut guard, addr, nr, flags)
                .map_err(|e| match e {
                    Errno::ENOMEM | Errno::EINTR => e,
                    _ => Errno::EFAULT,
                })?;
            for pfn in &pages {
                self.mem.put_page(*pfn);
            }
            addr += pages.len() as u64 * PAGE_SIZE;
        }
        Ok(())
    }
}

impl Mm {
    /// MADV_COLD over `[start, end)`: each small or large page mapped by a present PTE
    /// of a folio no other process maps gets its young bit cleared (Linux also moves
    /// the folio to the inactive LRU, `folio_deactivate()`; the model has no LRU).
    /// Non-present entries (swap, migration, device-exclusive) are skipped in both
    /// eras (spec 4.5), and no notifier is called: a device keeps what it has, and
    /// its own accessed state (`clear_young`) is not touched. Huge PMDs are left alone
    /// (Linux clears the PMD's young bit).
    ///
    /// Caller holds the mmap lock for read.
    ///
    /// Linux: `madvise_cold()` → `madvise_cold_or_pageout_pte_range()` with
    /// `pageout == false`.
    pub(crate) fn madvise_cold(&self, start: VirtAddr, end: VirtAddr) {
        let mem = &self.mem;
        self.for_each_pte_table(start, end, |ptl, s, e| {
            for a in (s.raw()..e.raw()).step_by(PAGE_SIZE as usize) {
                let addr = VirtAddr::new_truncate(a);
                let Pte::Present(p) = ptl.get(addr) else {
                    continue;
                };
                if p.is_special() || !p.flags.contains(PteFlags::ACCESSED) {
                    continue;
                }
                // Linux 6.12: `folio_likely_mapped_shared()` folios are skipped.
                let shared = mem.page(p.pfn).is_some_and(|pg| pg.mapcount() > 1);
                if mem.page_folio(p.pfn).is_err() || shared {
                    continue;
                }
                ptl.set(addr, Pte::Present(p.without(PteFlags::ACCESSED)));
            }
        });
    }

    /// MADV_FREE over `[start, end)` of a private anonymous VMA, inside a `Clear`
    /// range: a swap entry is zapped (its slot loses a user: the page will read
    /// zero); a small anonymous folio this mapping alone maps is cleaned (folio and PTE:
    /// not dirty, not young), loses a swap-cache slot no entry names, and becomes
    /// lazily freed, so that reclaim drops it unless it is written first. Device-
    /// exclusive and migration entries are left alone in both eras (spec 4.5: only
    /// genuine swap, hwpoison and poison entries are touched), so a page a device holds
    /// stays dirty and swap-backed. Large folios are left as they are (Linux splits a
    /// partly covered one and frees a wholly covered one as one).
    ///
    /// Caller holds the mmap lock for read.
    ///
    /// Linux: `madvise_free_single_vma()` → `madvise_free_pte_range()`.
    pub(crate) fn madvise_free(&self, start: VirtAddr, end: VirtAddr) {
        let mem = &self.mem;
        let range = MmuNotifierRange::new(self, MmuNotifierEvent::Clear, start.raw(), end.raw())
            .invalidate_range_start();
        self.for_each_pte_table(start, end, |ptl, s, e| {
            for a in (s.raw()..e.raw()).step_by(PAGE_SIZE as usize) {
                let addr = VirtAddr::new_truncate(a);
                let p = match ptl.get(addr) {
                    Pte::Present(p) => p,
                    // Linux: free_swap_and_cache_nr() + clear_not_present_full_ptes().
                    Pte::Swap(sw) if sw.is_swap() => {
                        ptl.clear(addr);
                        mem.swap_free(sw.offset);
                        continue;
                    }
                    _ => continue,
                };
                if p.is_special() {
                    continue;
                }
                let Ok(folio) = mem.page_folio(p.pfn) else {
                    continue;
                };
                if folio.is_large() || !mem.folio_test(folio, PageFlags::ANON) {
                    continue;
                }
                let cached = mem.swap_cache_in_use() && mem.swap_cache_slot(folio).is_some();
                if cached || mem.folio_test(folio, PageFlags::DIRTY) {
                    // Linux trylocks under the PTL; a busy folio is left alone.
                    let Some(lock) = mem.folio_trylock(folio) else {
                        continue;
                    };
                    if mem.folio_mapcount(folio) != 1 || (cached && !mem.folio_free_swap(folio)) {
                        drop(lock);
                        continue;
                    }
                    mem.folio_clear(folio, PageFlags::DIRTY);
                    drop(lock);
                }
                let clean = p.without(PteFlags::ACCESSED).without(PteFlags::DIRTY);
                if clean != p {
                    ptl.set(addr, Pte::Present(clean));
                }
                // Linux: folio_mark_lazyfree() only moves a swap-backed, uncached,
                // evictable folio (lru_lazyfree_fn() clears PG_swapbacked).
                let uncached = !mem.swap_cache_in_use() || mem.swap_cache_slot(folio).is_none();
                if !mem.folio_test_mlocked(folio) && uncached {
                    mem.folio_set(folio, PageFlags::LAZYFREE);
                }
            }
        });
        range.end();
    }

    /// MADV_WILLNEED over `[start, end)` of a private anonymous VMA: every page named
    /// by a swap entry is read into the swap cache (where a later fault finds it
    /// without reading the slot); present PTEs and non-swap entries (device-exclusive,
    /// migration) are skipped in both eras (spec 4.5: "skips non-swap entries"). The
    /// PTL is dropped before the reads, as Linux's walk does.
    ///
    /// Caller holds the mmap lock for read.
    ///
    /// Linux: `madvise_willneed()` → `swapin_walk_pmd_entry()` +
    /// `read_swap_cache_async()` (5.14: `force_swapin_readahead()`).
    pub(crate) fn madvise_willneed(&self, start: VirtAddr, end: VirtAddr) {
        let mut slots = Vec::new();
        self.for_each_pte_table(start, end, |ptl, s, e| {
            for a in (s.raw()..e.raw()).step_by(PAGE_SIZE as usize) {
                if let Pte::Swap(sw) = ptl.get(VirtAddr::new_truncate(a))
                    && sw.is_swap()
                {
                    slots.push(sw.offset);
                }
            }
        });
        for slot in slots {
            // ENOMEM or a slot freed meanwhile: readahead is only a hint.
            if let Ok(Some(folio)) = self.mem.swapin(slot) {
                self.mem.folio_put(folio);
            }
        }
    }
}
