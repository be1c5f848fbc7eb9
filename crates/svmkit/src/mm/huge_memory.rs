//! Transparent huge pages (Linux: `mm/huge_memory.c`): PMD-mapped order-9 anonymous
//! folios, and splitting their PMD into a table of 512 PTEs.
//!
//! ```text
//! first write fault in a 2 MiB-aligned range fully inside an eligible VMA
//!   -> one order-9 folio, mapped by one PMD; a PTE table is deposited beside it
//! split_huge_pmd (partial mprotect/munmap/DONTNEED, FOLL_SPLIT_PMD, COW on the PMD)
//!   -> the deposited table takes the PMD's place, 512 PTEs map the subpages of the
//!      same, still large, folio: a PTE-mapped THP
//! ```
//!
//! Counting follows Linux: a PMD mapping holds one folio reference and one *entire*
//! mapcount (head page); after the split each PTE holds one reference and one
//! per-page mapcount. PageAnonExclusive of a PMD-mapped THP lives on the head page
//! and is handed to every subpage at the split.
//!
//! Huge PMDs are changed under `mm->page_table_lock` (the model has no split PMD
//! locks); a CPU access through a huge PMD holds it, so, as for PTEs, a change made
//! under it means no CPU still uses the old translation.
//!
//! Read faults do not map the huge zero page: they fall back to 4 KiB pages (Linux
//! with `transparent_hugepage/use_zero_page = 0`), so a range first read is never
//! made huge later.

use std::sync::atomic::{AtomicU8, Ordering};

use super::mm_types::Mm;
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::page::{Mapping, PageFlags};
use super::page_alloc::{Gfp, PhysMem};
use super::pgtable::{PMD_SIZE, PTRS_PER_TABLE, Pmd, PresentPte, Pte, PteFlags};
use super::rmap::AnonVma;
use super::vma::{VmFlags, Vma};
use super::{VmFault, VmFaultError};
use crate::error::Errno;
use crate::types::{HPAGE_PMD_ORDER, PAGE_SHIFT, PAGE_SIZE, Pfn, VirtAddr};

/// Pages in a PMD-sized folio (Linux: `HPAGE_PMD_NR`).
pub const HPAGE_PMD_NR: u64 = 1 << HPAGE_PMD_ORDER;

/// The system-wide THP policy (Linux: `/sys/kernel/mm/transparent_hugepage/enabled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ThpMode {
    /// Every eligible anonymous VMA (unless MADV_NOHUGEPAGE).
    Always,
    /// Only VMAs with MADV_HUGEPAGE.
    #[default]
    Madvise,
    /// Never.
    Never,
}

impl ThpMode {
    fn to_raw(self) -> u8 {
        match self {
            ThpMode::Always => 0,
            ThpMode::Madvise => 1,
            ThpMode::Never => 2,
        }
    }

    fn from_raw(raw: u8) -> ThpMode {
        match raw {
            0 => ThpMode::Always,
            2 => ThpMode::Never,
            _ => ThpMode::Madvise,
        }
    }
}

/// The THP setting, kept with physical memory (a machine-wide knob).
#[derive(Debug, Default)]
pub(crate) struct ThpSetting(AtomicU8);

impl ThpSetting {
    pub(crate) fn new() -> Self {
        ThpSetting(AtomicU8::new(ThpMode::Madvise.to_raw()))
    }
}

impl PhysMem {
    /// The THP policy.
    pub fn thp_mode(&self) -> ThpMode {
        ThpMode::from_raw(self.thp.0.load(Ordering::Relaxed))
    }

    /// Sets the THP policy (Linux: writing `transparent_hugepage/enabled`).
    pub fn set_thp_mode(&self, mode: ThpMode) {
        self.thp.0.store(mode.to_raw(), Ordering::Relaxed);
    }
}

impl Vma {
    /// Whether a PMD-sized THP may back `haddr` (2 MiB-aligned) in this VMA: private
    /// anonymous and not hugetlb, allowed by the policy and the VMA's advice, and the whole 2 MiB
    /// inside the VMA.
    ///
    /// Linux: `thp_vma_allowable_order()` + `thp_vma_suitable_order()`.
    pub fn thp_suitable(&self, mode: ThpMode, haddr: VirtAddr) -> bool {
        let allowed = match mode {
            ThpMode::Always => !self.flags.contains(VmFlags::NOHUGEPAGE),
            ThpMode::Madvise => self.flags.contains(VmFlags::HUGEPAGE),
            ThpMode::Never => false,
        };
        allowed
            && !self.flags.contains(VmFlags::HUGETLB)
            && self.shmem().is_none()
            && self.is_accessible()
            && haddr >= self.start()
            && haddr.raw() + PMD_SIZE <= self.end().raw()
    }
}

/// The 2 MiB-aligned address below `addr`.
pub(crate) fn haddr_of(addr: VirtAddr) -> VirtAddr {
    VirtAddr::new_truncate(addr.raw() & !(PMD_SIZE - 1))
}

impl PhysMem {
    /// Accounts the first (PMD) mapping of a new anonymous THP: PageAnon and the
    /// anon_vma on the folio, entire mapcount 1, PageAnonExclusive on the head.
    ///
    /// Linux: `folio_add_new_anon_rmap()` for a PMD-mappable folio.
    pub(crate) fn folio_add_new_anon_rmap_pmd(
        &self,
        folio: super::Folio,
        anon_vma: &AnonVma,
        index: u64,
    ) {
        self.folio_set(folio, PageFlags::ANON);
        if let Some(head) = self.page(folio.head()) {
            head.set_mapping(Some(Mapping::Anon(anon_vma.id())), index);
            head.set(PageFlags::ANON_EXCLUSIVE);
            head.entire_mapcount_add(1);
        }
    }
}

impl Mm {
    /// A first write fault in a THP-eligible 2 MiB range: allocate an order-9 folio
    /// and map it by one PMD. `Ok(None)`: fall back to 4 KiB pages (the order-9 or the
    /// deposit allocation failed).
    ///
    /// Linux: `do_huge_pmd_anonymous_page()`.
    pub(crate) fn do_huge_pmd_anonymous_page(
        &self,
        vma: &Vma,
        addr: VirtAddr,
        anon: &AnonVma,
    ) -> Result<Option<VmFault>, VmFaultError> {
        let haddr = haddr_of(addr);
        let slot = self.pmd_alloc(haddr)?;
        let mem = &self.mem;
        let fallback = || {
            self.stats().thp_fallbacks.fetch_add(1, Ordering::Relaxed);
            Ok(None)
        };
        let Ok(folio) = mem.folio_alloc(HPAGE_PMD_ORDER, Gfp::ZERO) else {
            return fallback();
        };
        let Ok(deposit) = mem.pgtable_alloc() else {
            mem.folio_put(folio);
            return fallback();
        };
        let mut deposits = self.page_table_lock();
        if Pmd::decode(mem.pt_read(slot.table, slot.idx)) != Pmd::None {
            drop(deposits);
            mem.pgtable_free(deposit);
            mem.folio_put(folio);
            return Ok(Some(VmFault::Done));
        }
        mem.folio_add_new_anon_rmap_pmd(folio, anon, vma.linear_page_index(haddr));
        let mut pmd = PresentPte::new(folio.head(), vma.page_prot() | PteFlags::ACCESSED);
        if vma.flags.contains(VmFlags::WRITE) {
            pmd = pmd.mkdirty().with(PteFlags::WRITE);
        }
        self.set_pmd(slot, haddr, Pmd::Huge(pmd));
        deposits.insert(haddr.raw(), deposit);
        drop(deposits);
        self.add_rss_anon(HPAGE_PMD_NR as i64);
        self.stats().thp_faults.fetch_add(1, Ordering::Relaxed);
        Ok(Some(VmFault::Done))
    }

    /// The huge PMD covering `addr`, read under `page_table_lock`.
    fn huge_pmd_locked(&self, addr: VirtAddr) -> Option<(super::pagewalk::PmdSlot, PresentPte)> {
        let slot = self.pmd_slot(addr)?;
        match Pmd::decode(self.mem.pt_read(slot.table, slot.idx)) {
            Pmd::Huge(p) => Some((slot, p)),
            _ => None,
        }
    }

    /// Splits the huge PMD covering `addr`, if there is one, into a PTE table mapping
    /// the same folio's 512 subpages (the folio stays large). Sends `Clear` over the
    /// 2 MiB range. Never fails: the PTE table was deposited when the PMD was mapped.
    ///
    /// Linux: `split_huge_pmd()` → `__split_huge_pmd()` → `__split_huge_pmd_locked()`.
    pub(crate) fn split_huge_pmd(&self, vma: &Vma, addr: VirtAddr) {
        if vma.shmem().is_some() {
            // Only anonymous THPs exist in the model.
            return;
        }
        self.split_huge_pmd_address(addr);
    }

    /// [`split_huge_pmd`](Self::split_huge_pmd) for callers that walk page tables
    /// without a VMA at hand (zap).
    pub(crate) fn split_huge_pmd_address(&self, addr: VirtAddr) {
        if !matches!(self.pmd_get_lockless(addr), Pmd::Huge(_)) {
            return;
        }
        let haddr = haddr_of(addr);
        let _split = self.mem.tracer().span(|| crate::trace::Payload::ThpSplit {
            mm: self.id(),
            addr: haddr.raw(),
        });
        let range = MmuNotifierRange::new(
            self,
            MmuNotifierEvent::Clear,
            haddr.raw(),
            haddr.raw() + PMD_SIZE,
        )
        .invalidate_range_start();
        let mem = &self.mem;
        let mut deposits = self.page_table_lock();
        let Some((slot, huge)) = self.huge_pmd_locked(haddr) else {
            return;
        };
        let Some(table) = deposits.remove(&haddr.raw()) else {
            mem.report_bad(huge.pfn, "huge PMD without a deposited page table");
            return;
        };
        let Ok(folio) = mem.page_folio(huge.pfn) else {
            return;
        };
        let exclusive = mem
            .page(folio.head())
            .is_some_and(|p| p.test(PageFlags::ANON_EXCLUSIVE));
        for i in 0..PTRS_PER_TABLE {
            let pfn = Pfn::new(huge.pfn.raw() + i as u64);
            let pte = PresentPte::new(pfn, huge.flags);
            mem.pt_write(table, i, Pte::Present(pte).encode());
            if let Some(p) = mem.page(pfn) {
                p.mapcount_add(1);
                if exclusive {
                    p.set(PageFlags::ANON_EXCLUSIVE);
                }
            }
        }
        // The PMD's one reference becomes one per PTE.
        for _ in 1..HPAGE_PMD_NR {
            mem.folio_get(folio);
        }
        if let Some(head) = mem.page(folio.head()) {
            head.entire_mapcount_add(-1);
        }
        self.set_pmd(slot, haddr, Pmd::Table(table));
        drop(deposits);
        self.stats().thp_split_pmds.fetch_add(1, Ordering::Relaxed);
        range.end();
    }

    /// Splits the huge PMDs that straddle `start` or `end` (VMA boundaries about to be
    /// created), so no huge PMD crosses a VMA edge.
    ///
    /// Linux: `vma_adjust_trans_huge()`.
    pub(crate) fn vma_adjust_trans_huge(&self, start: VirtAddr, end: VirtAddr) {
        for a in [start, end] {
            if a.raw() % PMD_SIZE != 0 {
                self.split_huge_pmd_address(a);
            }
        }
    }

    /// Removes the huge PMD at `haddr` (the whole 2 MiB is being zapped): its deposited
    /// table is freed, the mapping's counts and reference dropped.
    ///
    /// Linux: `zap_huge_pmd()`.
    pub(crate) fn zap_huge_pmd(&self, haddr: VirtAddr) {
        let mem = &self.mem;
        let mut deposits = self.page_table_lock();
        let Some((slot, huge)) = self.huge_pmd_locked(haddr) else {
            return;
        };
        self.set_pmd(slot, haddr, Pmd::None);
        if let Some(t) = deposits.remove(&haddr.raw()) {
            mem.pgtable_free(t);
        }
        drop(deposits);
        let Ok(folio) = mem.page_folio(huge.pfn) else {
            return;
        };
        if huge.is_dirty() {
            mem.folio_set(folio, PageFlags::DIRTY);
        }
        if let Some(head) = mem.page(folio.head())
            && head.entire_mapcount_add(-1) < 0
        {
            head.entire_mapcount_add(1);
            mem.report_bad(folio.head(), "entire mapcount underflow");
        }
        self.add_rss_anon(-(HPAGE_PMD_NR as i64));
        mem.folio_put(folio);
    }

    /// Applies `vma`'s protection to the huge PMD at `haddr`, making it writable where
    /// the folio is exclusively ours. Returns whether it changed.
    ///
    /// Linux: `change_huge_pmd()`.
    pub(crate) fn change_huge_pmd(&self, vma: &Vma, haddr: VirtAddr) -> bool {
        let _deposits = self.page_table_lock();
        let Some((slot, old)) = self.huge_pmd_locked(haddr) else {
            return false;
        };
        let keep = old.flags
            & (PteFlags::ACCESSED | PteFlags::DIRTY | PteFlags::SOFT_DIRTY | PteFlags::UFFD_WP);
        let mut new = PresentPte::new(old.pfn, keep | vma.page_prot());
        if vma.flags.contains(VmFlags::WRITE)
            && !vma.flags.contains(VmFlags::SHARED)
            && self.can_change_pte_writable(vma, new)
        {
            new = new.with(PteFlags::WRITE);
        }
        if new == old {
            return false;
        }
        self.set_pmd(slot, haddr, Pmd::Huge(new));
        true
    }

    /// Copies the huge PMD at `haddr` into the child at fork: the THP is shared by PMD
    /// (one more reference and entire mapcount, PageAnonExclusive cleared, both PMDs
    /// write-protected), with a PTE table deposited for the child. A possibly pinned
    /// THP is split instead and `EAGAIN` tells the caller to copy its PTEs.
    ///
    /// Lock order: the child's `page_table_lock`, then the parent's.
    ///
    /// Linux: `copy_huge_pmd()`.
    pub(crate) fn copy_huge_pmd(
        &self,
        dst: &Mm,
        src_vma: &Vma,
        haddr: VirtAddr,
    ) -> Result<(), Errno> {
        let mem = &self.mem;
        let dst_slot = dst.pmd_alloc(haddr)?;
        let deposit = mem.pgtable_alloc()?;
        let mut dst_deposits = dst.page_table_lock();
        let src_deposits = self.page_table_lock();
        let Some((slot, huge)) = self.huge_pmd_locked(haddr) else {
            drop((src_deposits, dst_deposits));
            mem.pgtable_free(deposit);
            return Ok(());
        };
        let folio = mem.page_folio(huge.pfn)?;
        if self.has_pinned() && mem.folio_maybe_dma_pinned(folio) {
            drop((src_deposits, dst_deposits));
            mem.pgtable_free(deposit);
            self.split_huge_pmd(src_vma, haddr);
            return Err(Errno::EAGAIN);
        }
        mem.folio_get(folio);
        if let Some(head) = mem.page(folio.head()) {
            head.clear(PageFlags::ANON_EXCLUSIVE);
            head.entire_mapcount_add(1);
        }
        let mut pmd = huge;
        if src_vma.is_cow_mapping() && huge.is_write() {
            pmd = pmd.without(PteFlags::WRITE);
            self.set_pmd(slot, haddr, Pmd::Huge(pmd));
        }
        dst.set_pmd(dst_slot, haddr, Pmd::Huge(pmd.without(PteFlags::ACCESSED)));
        dst_deposits.insert(haddr.raw(), deposit);
        drop((src_deposits, dst_deposits));
        dst.add_rss_anon(HPAGE_PMD_NR as i64);
        Ok(())
    }

    /// A write (or, with `unshare`, a read-only FOLL_PIN's unshare) fault on a
    /// read-only huge PMD: reuse the THP if this mapping owns it alone (an unshare only
    /// marks it exclusive, without making it writable), else split the PMD and let the
    /// 4 KiB path copy just the faulting page. `Ok(None)`: fall back to the PTE level.
    ///
    /// Linux: `do_huge_pmd_wp_page()`.
    pub(crate) fn do_huge_pmd_wp_page(
        &self,
        vma: &Vma,
        addr: VirtAddr,
        unshare: bool,
    ) -> Result<Option<VmFault>, VmFaultError> {
        let mem = &self.mem;
        {
            let _deposits = self.page_table_lock();
            let Some((slot, huge)) = self.huge_pmd_locked(addr) else {
                return Ok(Some(VmFault::Done));
            };
            if huge.is_write() {
                return Ok(Some(VmFault::Done));
            }
            let folio = mem.page_folio(huge.pfn)?;
            let head = mem.page(folio.head());
            let exclusive = head.is_some_and(|p| p.test(PageFlags::ANON_EXCLUSIVE));
            let only_user = mem.folio_ref_count(folio) == 1
                && head.is_some_and(|p| p.entire_mapcount() == 1)
                && folio
                    .pfns()
                    .all(|p| mem.page(p).is_some_and(|pg| pg.mapcount() == 0));
            if mem.folio_test(folio, PageFlags::ANON) && (exclusive || only_user) {
                if let Some(h) = head {
                    h.set(PageFlags::ANON_EXCLUSIVE);
                }
                if unshare {
                    return Ok(Some(VmFault::Done));
                }
                let new = huge.with(PteFlags::ACCESSED | PteFlags::WRITE).mkdirty();
                self.set_pmd(slot, addr, Pmd::Huge(new));
                self.stats().wp_reuses.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(VmFault::Done));
            }
        }
        self.split_huge_pmd(vma, addr);
        Ok(None)
    }

    /// A fault on a huge PMD that already allows the access (another thread fixed it,
    /// or only the accessed/dirty bits were missing).
    ///
    /// Linux: `huge_pmd_set_accessed()`.
    pub(crate) fn huge_pmd_set_accessed(&self, addr: VirtAddr, write: bool) {
        let _deposits = self.page_table_lock();
        let Some((slot, huge)) = self.huge_pmd_locked(addr) else {
            return;
        };
        let mut new = huge.with(PteFlags::ACCESSED);
        if write {
            new = new.mkdirty();
        }
        if new != huge {
            self.set_pmd(slot, addr, Pmd::Huge(new));
        }
    }

    /// Runs `op` on the frame `addr` maps through a huge PMD, holding
    /// `page_table_lock` (the PMD's PTL) as a CPU access does; sets the accessed and,
    /// for writes, dirty bits as the hardware does. `None` if there is no huge PMD
    /// there or it does not allow the access.
    pub(crate) fn access_huge_pmd<R>(
        &self,
        addr: VirtAddr,
        write: bool,
        op: impl FnOnce(&PhysMem, Pfn) -> R,
    ) -> Option<R> {
        let _deposits = self.page_table_lock();
        let (slot, huge) = self.huge_pmd_locked(addr)?;
        if huge.is_protnone() || (write && !huge.is_write()) {
            return None;
        }
        let mut hw = huge.with(PteFlags::ACCESSED);
        if write {
            hw = hw.with(PteFlags::DIRTY);
        }
        if hw != huge {
            self.set_pmd(slot, addr, Pmd::Huge(hw));
        }
        let pfn = Pfn::new(huge.pfn.raw() + ((addr.raw() % PMD_SIZE) >> PAGE_SHIFT));
        Some(op(&self.mem, pfn))
    }
}

/// Bytes in a PMD-sized folio.
pub const HPAGE_PMD_SIZE: u64 = PAGE_SIZE << HPAGE_PMD_ORDER;
