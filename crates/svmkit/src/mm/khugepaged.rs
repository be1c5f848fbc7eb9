//! Collapsing PTE-mapped anonymous memory into PMD-mapped THPs (Linux:
//! `mm/khugepaged.c`): the khugepaged scan and `MADV_COLLAPSE`.
//!
//! ```text
//! hpage_collapse_scan_pmd     mmap lock (read): count none/zero, swap, shared PTEs;
//!                             a page locked, pinned or in use elsewhere stops it
//! collapse_huge_page          allocate the order-9 folio (no lock held)
//!   __collapse_huge_page_swapin   mmap lock (read): do_swap_page() on each swap PTE
//!   mmap lock (write), anon_vma lock (write)
//!   Clear range over the 2 MiB: the PMD is cleared (CPU, GUP and devices lose it)
//!   __collapse_huge_page_isolate  under the old table's PTL: lock each folio, check
//!                                 its references, take the isolation reference
//!   __collapse_huge_page_copy     copy 512 pages, drop the old mappings
//!   install the huge PMD; the old PTE table becomes its deposit
//! ```
//!
//! Device-exclusive entries (spec 4.9, 9.4, 10.1): before 6.19 the scan takes them for
//! swap entries (`is_swap_pte()`), so the swap-in step runs `do_swap_page()` on them,
//! which restores the entry and revokes the device; the collapse goes on (derived
//! from the 6.12 tree's mm/khugepaged.c). From 6.19 the scan stops at them with
//! `SCAN_PTE_NON_PRESENT` and leaves them
//! ([`Profile::khugepaged_aborts_on_non_swap_entries`](crate::Profile::khugepaged_aborts_on_non_swap_entries)).

use std::sync::atomic::Ordering;

use super::folio::Folio;
use super::huge_memory::HPAGE_PMD_NR;
use super::memory::{FaultFlags, VmFault};
use super::mm_types::{Mm, MmUser};
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::page::PageFlags;
use super::page_alloc::Gfp;
use super::pagewalk::PtlGuard;
use super::pgtable::{PMD_SIZE, Pmd, PresentPte, Pte, PteFlags};
use super::vma::{VmFlags, Vma};
use crate::error::Errno;
use crate::types::{HPAGE_PMD_ORDER, PAGE_SIZE, Pfn, VirtAddr};

/// khugepaged's default `max_ptes_none`: none or zero-page PTEs one collapse may fill
/// (Linux: `khugepaged_max_ptes_none = HPAGE_PMD_NR - 1`). MADV_COLLAPSE has no limit.
pub const KHUGEPAGED_MAX_PTES_NONE: u64 = HPAGE_PMD_NR - 1;
/// khugepaged's default `max_ptes_swap` (Linux: `HPAGE_PMD_NR / 8`).
pub const KHUGEPAGED_MAX_PTES_SWAP: u64 = HPAGE_PMD_NR / 8;
/// khugepaged's default `max_ptes_shared` (Linux: `HPAGE_PMD_NR / 2`).
pub const KHUGEPAGED_MAX_PTES_SHARED: u64 = HPAGE_PMD_NR / 2;

/// Why a collapse attempt ended (Linux: `enum scan_result`, the values the model
/// reaches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanResult {
    /// Collapsed (Linux: `SCAN_SUCCEED`).
    Succeed,
    /// No page table there (Linux: `SCAN_PMD_NULL`).
    PmdNull,
    /// Nothing mapped at the PMD at all (Linux: `SCAN_PMD_NONE`).
    PmdNone,
    /// Already a PMD-mapped THP (Linux: `SCAN_PMD_MAPPED`).
    PmdMapped,
    /// More none/zero PTEs than `max_ptes_none` (Linux: `SCAN_EXCEED_NONE_PTE`).
    ExceedNonePte,
    /// More swap PTEs than `max_ptes_swap` (Linux: `SCAN_EXCEED_SWAP_PTE`).
    ExceedSwapPte,
    /// More shared pages than `max_ptes_shared` (Linux: `SCAN_EXCEED_SHARED_PTE`).
    ExceedSharedPte,
    /// A non-present PTE that cannot be swapped in (Linux: `SCAN_PTE_NON_PRESENT`).
    PteNonPresent,
    /// A uffd-wp protected PTE (Linux: `SCAN_PTE_UFFD_WP`).
    PteUffdWp,
    /// No PTE was writable (Linux: `SCAN_PAGE_RO`).
    PageRo,
    /// khugepaged: too few recently used pages (Linux: `SCAN_LACK_REFERENCED_PAGE`).
    LackReferencedPage,
    /// A PTE maps no normal page (Linux: `SCAN_PAGE_NULL`).
    PageNull,
    /// A page is not anonymous (Linux: `SCAN_PAGE_ANON`).
    PageAnon,
    /// A folio is locked by someone else (Linux: `SCAN_PAGE_LOCK`).
    PageLock,
    /// A folio has references besides its mappings: GUP, a device, a migration
    /// (Linux: `SCAN_PAGE_COUNT`).
    PageCount,
    /// The VMA is gone or no longer eligible (Linux: `SCAN_VMA_CHECK`).
    VmaCheck,
    /// Page-in failed (Linux: `SCAN_FAIL`).
    Fail,
    /// No order-9 folio (Linux: `SCAN_ALLOC_HUGE_PAGE_FAIL`).
    AllocHugePageFail,
}

impl ScanResult {
    /// The errno MADV_COLLAPSE reports for a range that ended so.
    ///
    /// Linux: `madvise_collapse_errno()` (6.12 tree; `SCAN_PTE_NON_PRESENT` falls in
    /// its `default:` "trying again likely not to succeed" branch, `EINVAL`).
    pub fn madvise_collapse_errno(self) -> Errno {
        match self {
            ScanResult::AllocHugePageFail => Errno::ENOMEM,
            ScanResult::ExceedNonePte => Errno::EBUSY,
            ScanResult::PageCount | ScanResult::PageLock => Errno::EAGAIN,
            _ => Errno::EINVAL,
        }
    }

    /// Whether MADV_COLLAPSE goes on to the next PMD after this result (Linux: the
    /// "whitelisted set of results where continuing OK" of `madvise_collapse()`).
    fn madvise_continues(self) -> bool {
        matches!(
            self,
            ScanResult::Succeed
                | ScanResult::PmdMapped
                | ScanResult::PmdNull
                | ScanResult::PteNonPresent
                | ScanResult::PteUffdWp
                | ScanResult::PageRo
                | ScanResult::LackReferencedPage
                | ScanResult::PageNull
                | ScanResult::PageCount
                | ScanResult::PageLock
        )
    }
}

/// Who asked for the collapse (Linux: `struct collapse_control`).
#[derive(Debug, Clone, Copy)]
struct CollapseControl {
    /// khugepaged (limits and the referenced heuristic apply), else MADV_COLLAPSE.
    is_khugepaged: bool,
}

/// What the scan counted, for the collapse.
#[derive(Debug, Clone, Copy)]
struct Scanned {
    /// Swap-type PTEs the swap-in step must fault in.
    unmapped: u64,
}

impl Mm {
    /// Whether the VMA may hold a PMD-sized THP at `haddr` for this collapse: private
    /// anonymous, accessible, the 2 MiB inside it, not MADV_NOHUGEPAGE; khugepaged
    /// also needs the sysfs policy (MADV_COLLAPSE ignores it, Linux 6.1+).
    ///
    /// Linux: `thp_vma_allowable_order()` + `hugepage_vma_revalidate()`.
    fn collapse_vma_ok(&self, vma: &Vma, haddr: VirtAddr, cc: CollapseControl) -> bool {
        let fits = vma.shmem().is_none()
            && !vma.is_hugetlb()
            && vma.is_accessible()
            && haddr >= vma.start()
            && haddr.raw() + PMD_SIZE <= vma.end().raw()
            && !vma.flags.contains(VmFlags::NOHUGEPAGE);
        fits && (!cc.is_khugepaged || vma.thp_suitable(self.mem.thp_mode(), haddr))
    }

    /// Scans the 512 PTEs under `haddr` and, if they qualify, collapses them.
    ///
    /// Linux: `hpage_collapse_scan_pmd()`.
    fn hpage_collapse_scan_pmd(&self, haddr: VirtAddr, cc: CollapseControl) -> ScanResult {
        let scanned = {
            let tree = self.mmap_read_lock();
            let Some(vma) = tree.find(haddr) else {
                return ScanResult::VmaCheck;
            };
            if !self.collapse_vma_ok(vma, haddr, cc) {
                return ScanResult::VmaCheck;
            }
            match self.scan_ptes(haddr, cc) {
                Ok(s) => s,
                Err(r) => return r,
            }
        };
        self.collapse_huge_page(haddr, scanned, cc)
    }

    /// The PMD at `haddr`: a PTE table to collapse, or why not.
    ///
    /// Linux: `find_pmd_or_thp_or_none()`.
    fn find_pmd_or_thp_or_none(&self, haddr: VirtAddr) -> Result<Pfn, ScanResult> {
        if self.pmd_slot(haddr).is_none() {
            return Err(ScanResult::PmdNull);
        }
        match self.pmd_get_lockless(haddr) {
            Pmd::None => Err(ScanResult::PmdNone),
            Pmd::Huge(_) => Err(ScanResult::PmdMapped),
            Pmd::Table(t) => Ok(t),
        }
    }

    /// The scan proper, under the PTL: the counting and per-page checks of
    /// `hpage_collapse_scan_pmd()`. Caller holds the mmap lock.
    fn scan_ptes(&self, haddr: VirtAddr, cc: CollapseControl) -> Result<Scanned, ScanResult> {
        let mem = &self.mem;
        self.find_pmd_or_thp_or_none(haddr)?;
        let Some(ptl) = self.pte_offset_map_lock(haddr) else {
            return Err(ScanResult::PmdNull);
        };
        let aborts_on_non_swap = self.profile().khugepaged_aborts_on_non_swap_entries;
        let (mut none_or_zero, mut unmapped, mut shared, mut referenced) = (0, 0, 0, 0);
        let mut writable = false;
        for i in 0..HPAGE_PMD_NR {
            let addr = VirtAddr::new_truncate(haddr.raw() + i * PAGE_SIZE);
            let pte = match ptl.get(addr) {
                Pte::None => {
                    none_or_zero += 1;
                    if cc.is_khugepaged && none_or_zero > KHUGEPAGED_MAX_PTES_NONE {
                        return Err(ScanResult::ExceedNonePte);
                    }
                    continue;
                }
                Pte::Swap(entry) => {
                    // 6.19: only a real swap entry can be brought in; anything else
                    // (a device-exclusive entry among them) ends the scan. Before,
                    // every swap-type entry counted as swap.
                    if aborts_on_non_swap && !entry.is_swap() {
                        return Err(ScanResult::PteNonPresent);
                    }
                    unmapped += 1;
                    if cc.is_khugepaged && unmapped > KHUGEPAGED_MAX_PTES_SWAP {
                        return Err(ScanResult::ExceedSwapPte);
                    }
                    if entry.uffd_wp {
                        return Err(ScanResult::PteUffdWp);
                    }
                    continue;
                }
                Pte::Present(p) => p,
            };
            if pte.is_special() && mem.is_zero_pfn(pte.pfn) {
                none_or_zero += 1;
                if cc.is_khugepaged && none_or_zero > KHUGEPAGED_MAX_PTES_NONE {
                    return Err(ScanResult::ExceedNonePte);
                }
                continue;
            }
            if pte.flags.contains(PteFlags::UFFD_WP) {
                return Err(ScanResult::PteUffdWp);
            }
            writable |= pte.is_write();
            let folio = self.normal_anon_folio(pte)?;
            if mem.folio_mapcount(folio) > 1 {
                shared += 1;
                if cc.is_khugepaged && shared > KHUGEPAGED_MAX_PTES_SHARED {
                    return Err(ScanResult::ExceedSharedPte);
                }
            }
            if mem.folio_test_locked(folio) {
                return Err(ScanResult::PageLock);
            }
            if !self.is_refcount_suitable(folio) {
                return Err(ScanResult::PageCount);
            }
            // The model tracks youth in the PTE only (no folio young/referenced
            // flags, and secondary MMUs are not asked).
            if pte.is_young() {
                referenced += 1;
            }
        }
        if !writable {
            Err(ScanResult::PageRo)
        } else if cc.is_khugepaged
            && (referenced == 0 || (unmapped > 0 && referenced < HPAGE_PMD_NR / 2))
        {
            Err(ScanResult::LackReferencedPage)
        } else {
            Ok(Scanned { unmapped })
        }
    }

    /// The anonymous folio a present PTE maps, or why it cannot be collapsed.
    ///
    /// Linux: `vm_normal_page()` + `folio_test_anon()`.
    fn normal_anon_folio(&self, pte: PresentPte) -> Result<Folio, ScanResult> {
        let mem = &self.mem;
        if pte.is_special() {
            return Err(ScanResult::PageNull);
        }
        let folio = mem.page_folio(pte.pfn).map_err(|_| ScanResult::PageNull)?;
        if !mem.folio_test(folio, PageFlags::ANON) {
            return Err(ScanResult::PageAnon);
        }
        Ok(folio)
    }

    /// Whether the folio's references are exactly its mappings (plus the swap cache's
    /// one per page): nothing else (GUP, a migration, a driver) holds it.
    ///
    /// Linux: `is_refcount_suitable()`.
    fn is_refcount_suitable(&self, folio: Folio) -> bool {
        let mem = &self.mem;
        let mut expected = mem.folio_mapcount(folio);
        if mem.swap_cache_slot(folio).is_some() {
            expected += folio.nr_pages() as i32;
        }
        mem.folio_ref_count(folio) == expected
    }

    /// Collapses the range the scan passed: allocate, swap in, then under the mmap
    /// lock for write clear the PMD inside a `Clear` range, isolate, copy and install.
    ///
    /// Linux: `collapse_huge_page()`.
    fn collapse_huge_page(
        &self,
        haddr: VirtAddr,
        scanned: Scanned,
        cc: CollapseControl,
    ) -> ScanResult {
        let mem = &self.mem;
        let Ok(new) = mem.folio_alloc(HPAGE_PMD_ORDER, Gfp::ZERO) else {
            return ScanResult::AllocHugePageFail;
        };
        let result = self.collapse_into(haddr, new, scanned, cc);
        if result != ScanResult::Succeed {
            mem.folio_put(new);
        }
        result
    }

    /// [`collapse_huge_page`](Self::collapse_huge_page) after the allocation; on
    /// success `new` is mapped and its reference is the mapping's.
    fn collapse_into(
        &self,
        haddr: VirtAddr,
        new: Folio,
        scanned: Scanned,
        cc: CollapseControl,
    ) -> ScanResult {
        if scanned.unmapped > 0
            && let Err(r) = self.collapse_huge_page_swapin(haddr, cc)
        {
            return r;
        }
        let tree = self.mmap_write_lock();
        let Some(vma) = tree.find(haddr) else {
            return ScanResult::VmaCheck;
        };
        if !self.collapse_vma_ok(vma, haddr, cc) {
            return ScanResult::VmaCheck;
        }
        let Some(anon) = vma.anon_vma().cloned() else {
            return ScanResult::VmaCheck;
        };
        let table = match self.find_pmd_or_thp_or_none(haddr) {
            Ok(t) => t,
            Err(r) => return r,
        };
        // Lock order: mmap lock, anon_vma lock (rmap walkers wait: the pages are about
        // to lose their PTEs), then page_table_lock, then the PTE table's PTL.
        let _rmap = anon.lock_write();
        let range = MmuNotifierRange::new(
            self,
            MmuNotifierEvent::Clear,
            haddr.raw(),
            haddr.raw() + PMD_SIZE,
        )
        .invalidate_range_start();
        let Some(slot) = self.pmd_slot(haddr) else {
            return ScanResult::PmdNull;
        };
        {
            let _pmd_ptl = self.page_table_lock();
            // Linux: pmdp_collapse_flush(): from here no walk reaches the table.
            self.set_pmd(slot, haddr, Pmd::None);
        }
        range.end();
        let mut ptl = PtlGuard::lock(&self.mem, table, self);
        let isolated = match self.collapse_huge_page_isolate(&ptl, haddr, cc) {
            Ok(i) => i,
            Err(r) => {
                drop(ptl);
                let _pmd_ptl = self.page_table_lock();
                self.set_pmd(slot, haddr, Pmd::Table(table));
                return r;
            }
        };
        let filled = self.collapse_huge_page_copy(&mut ptl, haddr, new, &isolated);
        drop(ptl);
        let mut pmd = PresentPte::new(new.head(), vma.page_prot() | PteFlags::ACCESSED).mkdirty();
        if vma.flags.contains(VmFlags::WRITE) {
            pmd = pmd.with(PteFlags::WRITE);
        }
        {
            let mut deposits = self.page_table_lock();
            // Linux: folio_add_new_anon_rmap(RMAP_EXCLUSIVE) for the PMD mapping.
            self.mem
                .folio_add_new_anon_rmap_pmd(new, &anon, vma.linear_page_index(haddr));
            deposits.insert(haddr.raw(), table);
            self.set_pmd(slot, haddr, Pmd::Huge(pmd));
        }
        // The new folio maps the pages that were none or the zero page too.
        self.add_rss_anon(filled as i64);
        self.stats().thp_collapses.fetch_add(1, Ordering::Relaxed);
        drop(tree);
        ScanResult::Succeed
    }

    /// Faults in every swap-type PTE of the range through `do_swap_page()`: swap
    /// entries are read back, device-exclusive entries restored (the device loses
    /// them: spec 9.4, derived), migration entries waited for. From 6.19 a non-swap
    /// entry found here (one made since the scan) ends the collapse instead.
    ///
    /// Linux: `__collapse_huge_page_swapin()`.
    fn collapse_huge_page_swapin(
        &self,
        haddr: VirtAddr,
        cc: CollapseControl,
    ) -> Result<(), ScanResult> {
        let mut guard = self.mmap_read_lock();
        let Some(vma) = guard.find(haddr).cloned() else {
            return Err(ScanResult::VmaCheck);
        };
        if !self.collapse_vma_ok(&vma, haddr, cc) {
            return Err(ScanResult::VmaCheck);
        }
        for i in 0..HPAGE_PMD_NR {
            let addr = VirtAddr::new_truncate(haddr.raw() + i * PAGE_SIZE);
            let Pte::Swap(entry) = self.pte_get_lockless(addr) else {
                continue;
            };
            if self.profile().khugepaged_aborts_on_non_swap_entries && !entry.is_swap() {
                return Err(ScanResult::PteNonPresent);
            }
            // Linux: FAULT_FLAG_ALLOW_RETRY, and a retry is taken for a failure
            // (the entry would stay and the isolation fail later).
            match self.do_swap_page(&mut guard, &vma, addr, FaultFlags::ALLOW_RETRY) {
                Ok(VmFault::Done) => {}
                Ok(VmFault::Retry) => return Err(ScanResult::PageLock),
                Err(_) => return Err(ScanResult::Fail),
            }
        }
        Ok(())
    }

    /// Locks and takes an isolation reference on every folio the 512 PTEs map (each
    /// large folio once), checking its references first; undoes it all on failure.
    /// Caller holds the detached table's PTL.
    ///
    /// Linux: `__collapse_huge_page_isolate()`.
    fn collapse_huge_page_isolate(
        &self,
        ptl: &PtlGuard<'_>,
        haddr: VirtAddr,
        cc: CollapseControl,
    ) -> Result<Vec<Folio>, ScanResult> {
        let mem = &self.mem;
        let mut isolated: Vec<Folio> = Vec::new();
        let release = |isolated: &[Folio]| {
            for &f in isolated {
                mem.folio_unlock(f);
                mem.folio_put(f);
            }
        };
        let (mut none_or_zero, mut shared, mut referenced) = (0, 0, 0);
        let mut writable = false;
        for i in 0..HPAGE_PMD_NR {
            let addr = VirtAddr::new_truncate(haddr.raw() + i * PAGE_SIZE);
            let pte = match ptl.get(addr) {
                Pte::Present(p) if !(p.is_special() && mem.is_zero_pfn(p.pfn)) => p,
                Pte::Swap(_) => {
                    release(&isolated);
                    return Err(ScanResult::PteNonPresent);
                }
                _ => {
                    none_or_zero += 1;
                    if cc.is_khugepaged && none_or_zero > KHUGEPAGED_MAX_PTES_NONE {
                        release(&isolated);
                        return Err(ScanResult::ExceedNonePte);
                    }
                    continue;
                }
            };
            let mut step = || -> Result<Option<Folio>, ScanResult> {
                if pte.flags.contains(PteFlags::UFFD_WP) {
                    return Err(ScanResult::PteUffdWp);
                }
                let folio = self.normal_anon_folio(pte)?;
                if mem.folio_mapcount(folio) > 1 {
                    shared += 1;
                    if cc.is_khugepaged && shared > KHUGEPAGED_MAX_PTES_SHARED {
                        return Err(ScanResult::ExceedSharedPte);
                    }
                }
                if isolated.contains(&folio) {
                    return Ok(None);
                }
                let Some(lock) = mem.folio_trylock(folio) else {
                    return Err(ScanResult::PageLock);
                };
                if !self.is_refcount_suitable(folio) {
                    return Err(ScanResult::PageCount);
                }
                // Linux: folio_isolate_lru() takes a reference; the lock stays held
                // until the copy is done.
                mem.folio_get(folio);
                lock.leak();
                Ok(Some(folio))
            };
            match step() {
                Ok(Some(f)) => isolated.push(f),
                Ok(None) => {}
                Err(r) => {
                    release(&isolated);
                    return Err(r);
                }
            }
            writable |= pte.is_write();
            if pte.is_young() {
                referenced += 1;
            }
        }
        if !writable {
            release(&isolated);
            Err(ScanResult::PageRo)
        } else if cc.is_khugepaged && referenced == 0 {
            release(&isolated);
            Err(ScanResult::LackReferencedPage)
        } else {
            Ok(isolated)
        }
    }

    /// Copies each mapped page into its place in `new` (the rest stays zero), clears
    /// the old PTEs with their mapcounts and references, and releases the isolated
    /// folios (freeing them: nothing else holds them). Returns how many PTEs were none
    /// or the zero page.
    ///
    /// Linux: `__collapse_huge_page_copy()` + `__collapse_huge_page_copy_succeeded()`.
    fn collapse_huge_page_copy(
        &self,
        ptl: &mut PtlGuard<'_>,
        haddr: VirtAddr,
        new: Folio,
        isolated: &[Folio],
    ) -> u64 {
        let mem = &self.mem;
        let mut filled = 0;
        for i in 0..HPAGE_PMD_NR {
            let addr = VirtAddr::new_truncate(haddr.raw() + i * PAGE_SIZE);
            let dst = Pfn::new(new.head().raw() + i);
            match ptl.get(addr) {
                Pte::Present(p) if !p.is_special() => {
                    if mem.copy_page(dst, p.pfn).is_err() {
                        mem.report_bad(p.pfn, "collapse: copy of an isolated page failed");
                    }
                    ptl.clear(addr);
                    mem.folio_remove_rmap_pte(p.pfn);
                    if let Ok(f) = mem.page_folio(p.pfn) {
                        if p.is_dirty() {
                            mem.folio_set(f, PageFlags::DIRTY);
                        }
                        // The mapping's reference; the isolation's keeps it alive.
                        mem.folio_put(f);
                    }
                }
                Pte::Present(_) => {
                    ptl.clear(addr);
                    filled += 1;
                }
                _ => filled += 1,
            }
        }
        for &f in isolated {
            // Linux: free_page_and_swap_cache() of each source page: one swapped in for
            // the collapse (or kept in the swap cache since) lets go of its slot.
            if !mem.folio_mapped(f) && mem.swap_cache_in_use() {
                mem.folio_free_swap(f);
            }
            mem.folio_unlock(f);
            mem.folio_put(f);
        }
        filled
    }
}

impl MmUser {
    /// One khugepaged pass over this mm: every PMD-aligned 2 MiB of every VMA the THP
    /// policy allows (`transparent_hugepage/enabled`, MADV_HUGEPAGE), scanned and
    /// collapsed with khugepaged's default limits. Returns each range's start and
    /// result, in address order.
    ///
    /// Linux: `khugepaged_scan_mm_slot()` → `hpage_collapse_scan_pmd()`.
    pub fn khugepaged_scan(&self) -> Vec<(u64, ScanResult)> {
        let cc = CollapseControl {
            is_khugepaged: true,
        };
        let ranges: Vec<VirtAddr> = {
            let tree = self.mmap_read_lock();
            let mode = self.mem.thp_mode();
            tree.iter()
                .flat_map(|v| {
                    let first = v.start().raw().next_multiple_of(PMD_SIZE);
                    (first..v.end().raw())
                        .step_by(PMD_SIZE as usize)
                        .map(VirtAddr::new_truncate)
                        .filter(move |&h| v.thp_suitable(mode, h))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        ranges
            .into_iter()
            .map(|h| (h.raw(), self.hpage_collapse_scan_pmd(h, cc)))
            .collect()
    }

    /// MADV_COLLAPSE over `[start, end)` of one VMA (the part the madvise range
    /// covers): each whole 2 MiB inside it is collapsed; `Ok` if every one is a
    /// PMD-mapped THP afterwards, else the errno of the last failure.
    ///
    /// Linux: `madvise_collapse()`.
    pub(crate) fn madvise_collapse(&self, start: VirtAddr, end: VirtAddr) -> Result<(), Errno> {
        let cc = CollapseControl {
            is_khugepaged: false,
        };
        {
            let tree = self.mmap_read_lock();
            let Some(vma) = tree.find(start) else {
                return Err(Errno::ENOMEM);
            };
            // Linux: thp_vma_allowable_order() refuses hugetlb VMAs.
            if vma.shmem().is_some() || vma.flags.intersects(VmFlags::NOHUGEPAGE | VmFlags::HUGETLB)
            {
                return Err(Errno::EINVAL);
            }
        }
        let hstart = start.raw().next_multiple_of(PMD_SIZE);
        let hend = end.raw() & !(PMD_SIZE - 1);
        if hend < hstart {
            // Linux: the count of ranges wraps, never matches, and SCAN_FAIL's
            // errno is the answer.
            return Err(ScanResult::Fail.madvise_collapse_errno());
        }
        let (mut thps, mut last_fail) = (0, ScanResult::Fail);
        for h in (hstart..hend).step_by(PMD_SIZE as usize) {
            let r = self.hpage_collapse_scan_pmd(VirtAddr::new_truncate(h), cc);
            match r {
                ScanResult::Succeed | ScanResult::PmdMapped => thps += 1,
                r if r.madvise_continues() => last_fail = r,
                r => {
                    last_fail = r;
                    break;
                }
            }
        }
        if thps == (hend - hstart) / PMD_SIZE {
            Ok(())
        } else {
            Err(last_fail.madvise_collapse_errno())
        }
    }
}
