//! hugetlb (Linux: `mm/hugetlb.c`): `MAP_HUGETLB` private anonymous mappings backed by
//! 2 MiB folios, each mapped by one PMD (a "huge PTE") for its whole life.
//!
//! ```text
//! fault (read or write) on none       -> hugetlb_no_page: a zeroed order-9 folio,
//!                                        PageHuge, anon, entire mapcount 1
//! write/unshare on a read-only PMD    -> hugetlb_wp: reuse if exclusive, else copy
//!                                        all 2 MiB (never split)
//! munmap / DONTNEED / exit            -> unmap_hugepage_range (2 MiB aligned only)
//! fork                                -> copy_hugetlb_page_range (shared + wrprotect)
//! mprotect                            -> hugetlb_change_protection (no write upgrade)
//! GUP                                 -> the PMD's subpage; FOLL_SPLIT_PMD per era
//! ```
//!
//! The differences from Linux (docs/ARCHITECTURE.md 46): there is no hugetlbfs, pool,
//! reservation or surplus accounting (a fault allocates from the buddy allocator and
//! gets SIGBUS when it cannot, as Linux's fault does on an empty pool); only private
//! mappings exist (`MAP_SHARED | MAP_HUGETLB` is `EINVAL`); the pages are not counted
//! in the RSS (Linux counts them in `HugetlbPages`, not `MM_ANONPAGES`, either), and
//! there is no PMD sharing.
//!
//! # The non-present huge PTE
//!
//! Linux's hugetlb code stores swap-type entries (migration, hwpoison) in the PMD
//! slot; the model's generic PMD type has no non-present form. The only one the model
//! can create is the 5.14 conversion's device-exclusive entry written through the PTE
//! path (spec 4.12, 8 item 20), and it is stored with the PSE bit kept, so that the
//! generic walkers read "no table here" and only this file
//! ([`Mm::huge_ptep_get`]) and the checker decode it.

use std::ops::ControlFlow;

use super::folio::Folio;
use super::huge_memory::{HPAGE_PMD_NR, haddr_of};
use super::memory::{FaultFlags, VmFault, VmFaultError};
use super::mm_types::Mm;
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::page::PageFlags;
use super::page_alloc::{Gfp, PhysMem};
use super::pagewalk::PmdSlot;
use super::pgtable::{PMD_SIZE, Pmd, PresentPte, Pte, PteFlags, SwapPte};
use super::vma::{VmFlags, Vma, VmaTree};
use crate::error::Errno;
use crate::sync::MmapReadGuard;
use crate::types::{HPAGE_PMD_ORDER, PAGE_SIZE, Pfn, VirtAddr};

/// The PSE bit (x86-64 bit 7), kept on a non-present huge PTE (module docs).
const HUGE_PSE: u64 = 1 << 7;

/// A hugetlb PMD slot, decoded (Linux: `huge_ptep_get()` on a PMD-sized hstate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugePte {
    /// `huge_pte_none()`.
    None,
    /// A present 2 MiB mapping of the folio's head.
    Present(PresentPte),
    /// A swap-type entry in the PMD slot (only the 5.14 conversion makes one, spec 8
    /// item 20).
    NonPresent(SwapPte),
}

impl HugePte {
    /// Decodes a raw PMD word of a hugetlb VMA.
    pub const fn decode(raw: u64) -> HugePte {
        if raw == 0 {
            return HugePte::None;
        }
        match Pmd::decode(raw) {
            Pmd::Huge(p) => HugePte::Present(p),
            _ => match Pte::decode(raw & !HUGE_PSE) {
                Pte::Swap(s) => HugePte::NonPresent(s),
                _ => HugePte::None,
            },
        }
    }

    /// Encodes to a raw PMD word.
    pub const fn encode(self) -> u64 {
        match self {
            HugePte::None => 0,
            HugePte::Present(p) => Pmd::Huge(p).encode(),
            HugePte::NonPresent(s) => Pte::Swap(s).encode() | HUGE_PSE,
        }
    }
}

impl Vma {
    /// Whether this is a `MAP_HUGETLB` mapping.
    ///
    /// Linux: `is_vm_hugetlb_page()`.
    pub fn is_hugetlb(&self) -> bool {
        self.flags.contains(VmFlags::HUGETLB)
    }
}

impl PhysMem {
    /// Whether `folio` is a hugetlb folio.
    ///
    /// Linux: `folio_test_hugetlb()`.
    pub fn folio_test_hugetlb(&self, folio: Folio) -> bool {
        self.folio_test(folio, PageFlags::HUGETLB)
    }
}

/// Whether `[start, end)` would split the hugetlb VMA `vma` at an address that is not
/// 2 MiB aligned (Linux: `hugetlb_vm_op_split()` refuses with `EINVAL`, so munmap,
/// mprotect and mmap over it fail).
pub(crate) fn hugetlb_split_unaligned(vma: &Vma, start: VirtAddr, end: VirtAddr) -> bool {
    let inside = |a: VirtAddr| a > vma.start() && a < vma.end();
    vma.is_hugetlb()
        && [start, end]
            .into_iter()
            .any(|a| inside(a) && !a.raw().is_multiple_of(PMD_SIZE))
}

/// `EINVAL` if any VMA of `tree` in `[start, end)` is hugetlb and would be split off
/// its 2 MiB alignment (see [`hugetlb_split_unaligned`]).
pub(crate) fn check_hugetlb_split(
    tree: &VmaTree,
    start: VirtAddr,
    end: VirtAddr,
) -> Result<(), Errno> {
    if tree
        .intersecting(start, end)
        .any(|v| hugetlb_split_unaligned(v, start, end))
    {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

impl Mm {
    /// The hugetlb PMD slot covering `addr`, if the upper tables exist.
    fn huge_pte_offset(&self, addr: VirtAddr) -> Option<PmdSlot> {
        self.pmd_slot(haddr_of(addr))
    }

    /// The hugetlb entry covering `addr`, read without a lock.
    ///
    /// Linux: `huge_ptep_get(huge_pte_offset())`.
    pub fn huge_ptep_get(&self, addr: VirtAddr) -> HugePte {
        self.huge_pte_offset(addr)
            .map_or(HugePte::None, |s| self.huge_slot_get(s))
    }

    fn huge_slot_get(&self, slot: PmdSlot) -> HugePte {
        HugePte::decode(self.mem.pt_read(slot.table, slot.idx))
    }

    /// Linux: `set_huge_pte_at()`.
    fn set_huge_pte_at(&self, slot: PmdSlot, addr: VirtAddr, new: HugePte) {
        match new {
            HugePte::NonPresent(_) => self.mem.pt_write(slot.table, slot.idx, new.encode()),
            HugePte::None => self.set_pmd(slot, addr, Pmd::None),
            HugePte::Present(p) => self.set_pmd(slot, addr, Pmd::Huge(p)),
        }
    }

    /// A fault in a hugetlb VMA. The hugetlb fault mutex of Linux is replaced by
    /// allocating outside `page_table_lock` and re-checking under it (a racing fault
    /// that won frees the loser's folio).
    ///
    /// A non-present entry (the 5.14 conversion's, spec 8 item 20) is left alone and
    /// the fault reports success, as Linux's `if (!pte_present(entry)) goto
    /// out_mutex` does (Debian 6.1.192 mm/hugetlb.c): the access faults again, forever
    /// (the CPU side bounds it, `cpu.rs`).
    ///
    /// Linux: `hugetlb_fault()`.
    pub(crate) fn hugetlb_fault(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        vma: &Vma,
        addr: VirtAddr,
        flags: FaultFlags,
    ) -> Result<VmFault, VmFaultError> {
        let haddr = haddr_of(addr);
        let slot = self.pmd_alloc(haddr)?;
        let write = flags.contains(FaultFlags::WRITE);
        let unshare = flags.contains(FaultFlags::UNSHARE);
        match self.huge_slot_get(slot) {
            HugePte::None => self.hugetlb_no_page(guard, vma, slot, haddr, write),
            HugePte::NonPresent(_) => Ok(VmFault::Done),
            HugePte::Present(h) if (write || unshare) && !h.is_write() => {
                self.hugetlb_wp(guard, vma, slot, haddr, h, unshare)
            }
            HugePte::Present(_) => {
                let _ptl = self.page_table_lock();
                if let HugePte::Present(h) = self.huge_slot_get(slot) {
                    let mut new = h.with(PteFlags::ACCESSED);
                    if write {
                        new = new.mkdirty();
                    }
                    if new != h {
                        self.set_huge_pte_at(slot, haddr, HugePte::Present(new));
                    }
                }
                Ok(VmFault::Done)
            }
        }
    }

    /// A new zeroed hugetlb folio, marked as one; SIGBUS when no 2 MiB block is free
    /// (Linux: `alloc_hugetlb_folio()` failing on an empty pool, `VM_FAULT_SIGBUS`).
    fn alloc_hugetlb_folio(&self, gfp: Gfp) -> Result<Folio, VmFaultError> {
        let folio = self
            .mem
            .folio_alloc(HPAGE_PMD_ORDER, gfp)
            .map_err(|_| VmFaultError::Sigbus)?;
        self.mem.folio_set(folio, PageFlags::HUGETLB);
        Ok(folio)
    }

    /// First touch: map a new zeroed folio, writable (and dirty) for a write fault,
    /// read-only otherwise; hugetlb has no zero page, so a read allocates too.
    ///
    /// Linux: `hugetlb_no_page()` (private: `hugetlb_add_new_anon_rmap()`, then
    /// `hugetlb_wp()` for a write, which reuses the exclusive folio).
    fn hugetlb_no_page(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        vma: &Vma,
        slot: PmdSlot,
        haddr: VirtAddr,
        write: bool,
    ) -> Result<VmFault, VmFaultError> {
        let anon = self.anon_vma_prepare(guard, haddr)?;
        let folio = self.alloc_hugetlb_folio(Gfp::ZERO)?;
        let ptl = self.page_table_lock();
        if self.huge_slot_get(slot) != HugePte::None {
            drop(ptl);
            self.mem.folio_put(folio);
            return Ok(VmFault::Done);
        }
        self.mem
            .folio_add_new_anon_rmap_pmd(folio, &anon, vma.linear_page_index(haddr));
        let mut pte = PresentPte::new(folio.head(), vma.page_prot() | PteFlags::ACCESSED);
        if write {
            pte = pte.mkdirty().with(PteFlags::WRITE);
        }
        self.set_huge_pte_at(slot, haddr, HugePte::Present(pte));
        drop(ptl);
        Ok(VmFault::Done)
    }

    /// A write (or an unshare) on a read-only hugetlb PMD: reuse the folio if this
    /// mapping owns it (an unshare only marks it exclusive), else copy all 2 MiB into
    /// a new folio (writable for a write, read-only for an unshare) under one
    /// `Clear` range over the 2 MiB.
    ///
    /// Linux: `hugetlb_wp()`.
    fn hugetlb_wp(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        vma: &Vma,
        slot: PmdSlot,
        haddr: VirtAddr,
        old: PresentPte,
        unshare: bool,
    ) -> Result<VmFault, VmFaultError> {
        let mem = &self.mem;
        let folio = mem.page_folio(old.pfn)?;
        {
            let _ptl = self.page_table_lock();
            if self.huge_slot_get(slot) != HugePte::Present(old) {
                return Ok(VmFault::Done);
            }
            let head = mem.page(folio.head());
            let exclusive = head.is_some_and(|p| p.test(PageFlags::ANON_EXCLUSIVE));
            let only_user =
                mem.folio_ref_count(folio) == 1 && head.is_some_and(|p| p.entire_mapcount() == 1);
            if mem.folio_test(folio, PageFlags::ANON) && (exclusive || only_user) {
                if let Some(h) = head {
                    h.set(PageFlags::ANON_EXCLUSIVE);
                }
                if !unshare {
                    let new = old.with(PteFlags::ACCESSED | PteFlags::WRITE).mkdirty();
                    self.set_huge_pte_at(slot, haddr, HugePte::Present(new));
                }
                return Ok(VmFault::Done);
            }
            // Hold the old folio while copying (Linux: folio_get() before the copy).
            mem.folio_get(folio);
        }
        let anon = match self.anon_vma_prepare(guard, haddr) {
            Ok(a) => a,
            Err(e) => {
                mem.folio_put(folio);
                return Err(e);
            }
        };
        let new = match self.alloc_hugetlb_folio(Gfp::empty()) {
            Ok(f) => f,
            Err(e) => {
                mem.folio_put(folio);
                return Err(e);
            }
        };
        let copied = (0..HPAGE_PMD_NR).try_for_each(|i| {
            mem.copy_page(
                Pfn::new(new.head().raw() + i),
                Pfn::new(folio.head().raw() + i),
            )
        });
        if copied.is_err() {
            mem.folio_put(new);
            mem.folio_put(folio);
            return Err(VmFaultError::Sigbus);
        }
        let range = MmuNotifierRange::new(
            self,
            MmuNotifierEvent::Clear,
            haddr.raw(),
            haddr.raw() + PMD_SIZE,
        )
        .invalidate_range_start();
        let ptl = self.page_table_lock();
        if self.huge_slot_get(slot) != HugePte::Present(old) {
            drop(ptl);
            drop(range);
            mem.folio_put(new);
            mem.folio_put(folio);
            return Ok(VmFault::Done);
        }
        mem.folio_add_new_anon_rmap_pmd(new, &anon, vma.linear_page_index(haddr));
        let mut pte = PresentPte::new(new.head(), vma.page_prot() | PteFlags::ACCESSED);
        if !unshare {
            pte = pte.mkdirty().with(PteFlags::WRITE);
        }
        self.set_huge_pte_at(slot, haddr, HugePte::Present(pte));
        if let Some(h) = mem.page(folio.head()) {
            h.entire_mapcount_add(-1);
        }
        drop(ptl);
        range.end();
        // The old mapping's reference and the one held for the copy.
        mem.folio_put_refs(folio, 2);
        Ok(VmFault::Done)
    }

    /// Zaps the hugetlb mappings of `[start, end)` (2 MiB aligned): a present PMD
    /// drops its folio's entire mapcount and reference (the dirty bit goes to the
    /// folio); a non-present one is only cleared, as Linux does for migration and
    /// hwpoison entries whose reference is "already dropped": the 5.14 conversion's
    /// entry kept the mapping's reference, which is then never dropped (spec 8 item
    /// 20; Debian 6.1.192 `__unmap_hugepage_range()`).
    ///
    /// Linux: `unmap_hugepage_range()` → `__unmap_hugepage_range()`.
    pub(crate) fn unmap_hugepage_range(&self, start: VirtAddr, end: VirtAddr) {
        let mem = &self.mem;
        let mut a = haddr_of(start).raw();
        while a < end.raw() {
            let at = VirtAddr::new_truncate(a);
            a += PMD_SIZE;
            let Some(slot) = self.huge_pte_offset(at) else {
                continue;
            };
            let ptl = self.page_table_lock();
            let old = self.huge_slot_get(slot);
            if old == HugePte::None {
                continue;
            }
            self.set_huge_pte_at(slot, at, HugePte::None);
            drop(ptl);
            let HugePte::Present(p) = old else {
                continue;
            };
            let Ok(folio) = mem.page_folio(p.pfn) else {
                continue;
            };
            if p.is_dirty() {
                mem.folio_set(folio, PageFlags::DIRTY);
            }
            if let Some(head) = mem.page(folio.head())
                && head.entire_mapcount_add(-1) < 0
            {
                head.entire_mapcount_add(1);
                mem.report_bad(folio.head(), "entire mapcount underflow");
            }
            mem.folio_put(folio);
        }
    }

    /// Copies the hugetlb mappings of `src_vma` into the child at fork: each folio is
    /// shared (one more reference and entire mapcount, PageAnonExclusive cleared, both
    /// PMDs write-protected in a COW mapping), or, if possibly pinned, copied into a
    /// new folio for the child. A non-present entry would be read as present by
    /// Linux's copy (`pte_page()` of a swap entry: neither migration nor hwpoison);
    /// the model reports that and copies nothing.
    ///
    /// Lock order: the child's `page_table_lock`, then the parent's.
    ///
    /// Linux: `copy_hugetlb_page_range()`.
    pub(crate) fn copy_hugetlb_page_range(
        &self,
        dst: &Mm,
        dst_vma: &Vma,
        src_vma: &Vma,
    ) -> Result<(), Errno> {
        let mem = &self.mem;
        let cow = src_vma.is_cow_mapping();
        // Linux: a Clear range over the VMA while write-protecting a COW mapping.
        let _range = cow.then(|| {
            MmuNotifierRange::new(
                self,
                MmuNotifierEvent::Clear,
                src_vma.start().raw(),
                src_vma.end().raw(),
            )
            .invalidate_range_start()
        });
        let mut a = src_vma.start().raw();
        while a < src_vma.end().raw() {
            let at = VirtAddr::new_truncate(a);
            a += PMD_SIZE;
            let Some(src_slot) = self.huge_pte_offset(at) else {
                continue;
            };
            if self.huge_slot_get(src_slot) == HugePte::None {
                continue;
            }
            let dst_slot = dst.pmd_alloc(at)?;
            let dst_ptl = dst.page_table_lock();
            let src_ptl = self.page_table_lock();
            let p = match self.huge_slot_get(src_slot) {
                HugePte::None => continue,
                HugePte::NonPresent(e) => {
                    mem.report_bad(
                        e.pfn().unwrap_or(Pfn::new(0)),
                        "copy_hugetlb_page_range: pte_page() of a non-present hugetlb entry",
                    );
                    continue;
                }
                HugePte::Present(p) => p,
            };
            let folio = mem.page_folio(p.pfn)?;
            if self.has_pinned() && mem.folio_maybe_dma_pinned(folio) {
                drop((src_ptl, dst_ptl));
                self.copy_pinned_hugetlb_folio(dst, dst_vma, at, dst_slot, p, folio)?;
                continue;
            }
            mem.folio_get(folio);
            if let Some(head) = mem.page(folio.head()) {
                head.clear(PageFlags::ANON_EXCLUSIVE);
                head.entire_mapcount_add(1);
            }
            let mut pte = p;
            if cow && p.is_write() {
                pte = pte.without(PteFlags::WRITE);
                self.set_huge_pte_at(src_slot, at, HugePte::Present(pte));
            }
            dst.set_huge_pte_at(dst_slot, at, HugePte::Present(pte));
            drop((src_ptl, dst_ptl));
        }
        Ok(())
    }

    /// The child's own copy of a possibly pinned hugetlb folio at fork, mapped
    /// writable where the VMA is.
    ///
    /// Linux: the `folio_try_dup_anon_rmap()` failure path of
    /// `copy_hugetlb_page_range()` (`copy_user_large_folio()` +
    /// `hugetlb_install_folio()`).
    fn copy_pinned_hugetlb_folio(
        &self,
        dst: &Mm,
        dst_vma: &Vma,
        at: VirtAddr,
        dst_slot: PmdSlot,
        p: PresentPte,
        folio: Folio,
    ) -> Result<(), Errno> {
        let mem = &self.mem;
        let new = dst
            .alloc_hugetlb_folio(Gfp::empty())
            .map_err(|_| Errno::ENOMEM)?;
        let copied = (0..HPAGE_PMD_NR).try_for_each(|i| {
            mem.copy_page(
                Pfn::new(new.head().raw() + i),
                Pfn::new(folio.head().raw() + i),
            )
        });
        let (Ok(()), Some(anon)) = (copied, dst_vma.anon_vma()) else {
            mem.folio_put(new);
            return Err(Errno::ENOMEM);
        };
        let _dst_ptl = dst.page_table_lock();
        mem.folio_add_new_anon_rmap_pmd(new, anon, dst_vma.linear_page_index(at));
        let mut pte = PresentPte::new(new.head(), dst_vma.page_prot() | PteFlags::ACCESSED);
        if dst_vma.flags.contains(VmFlags::WRITE) {
            pte = pte.mkdirty().with(PteFlags::WRITE);
        }
        pte = pte.with(p.flags & PteFlags::SOFT_DIRTY);
        dst.set_huge_pte_at(dst_slot, at, HugePte::Present(pte));
        Ok(())
    }

    /// Applies `vma`'s protection to the hugetlb PMDs of `[start, end)`; returns how
    /// many changed. Unlike `change_huge_pmd()` there is no write upgrade: a private
    /// writable VMA's protection is read-only and the next write takes
    /// `hugetlb_wp()`. A non-present entry would be turned into a present one by
    /// `huge_pte_modify()` (Linux handles only migration, hwpoison and markers
    /// before it); the model reports that and leaves the entry.
    ///
    /// Linux: `hugetlb_change_protection()`.
    pub(crate) fn hugetlb_change_protection(
        &self,
        vma: &Vma,
        start: VirtAddr,
        end: VirtAddr,
    ) -> u64 {
        let mut changed = 0;
        let range = MmuNotifierRange::new(
            self,
            MmuNotifierEvent::ProtectionVma,
            start.raw(),
            end.raw(),
        )
        .invalidate_range_start();
        let mut a = haddr_of(start).raw();
        while a < end.raw() {
            let at = VirtAddr::new_truncate(a);
            a += PMD_SIZE;
            let Some(slot) = self.huge_pte_offset(at) else {
                continue;
            };
            let _ptl = self.page_table_lock();
            match self.huge_slot_get(slot) {
                HugePte::None => {}
                HugePte::NonPresent(e) => self.mem.report_bad(
                    e.pfn().unwrap_or(Pfn::new(0)),
                    "hugetlb_change_protection: huge_pte_modify() of a non-present entry",
                ),
                HugePte::Present(old) => {
                    let keep = old.flags
                        & (PteFlags::ACCESSED
                            | PteFlags::DIRTY
                            | PteFlags::SOFT_DIRTY
                            | PteFlags::UFFD_WP);
                    let new = PresentPte::new(old.pfn, keep | vma.page_prot());
                    if new != old {
                        self.set_huge_pte_at(slot, at, HugePte::Present(new));
                        changed += 1;
                    }
                }
            }
        }
        range.end();
        changed
    }

    /// What the 5.14 conversion does when its rmap walk meets a hugetlb folio: Linux's
    /// `page_vma_mapped_walk()` hands the hugetlb PMD over as a `pte_t *`, and
    /// `page_make_device_exclusive_one()` treats it as a PTE: clears it, writes a
    /// device-exclusive entry for the head into the PMD slot (keeping the mapping's
    /// reference) and removes a *PTE* mapping of the head with
    /// `page_remove_rmap(subpage, false)`, which hugetlb never counted (the model
    /// reports the mapcount underflow). Returns whether the PMD was writable. The
    /// caller holds `page_table_lock` (the walk's lock).
    ///
    /// Linux 5.14: `page_make_device_exclusive_one()` on a hugetlb VMA (spec 4.12, 8
    /// item 20).
    pub(crate) fn hugetlb_convert_as_pte(
        &self,
        folio: Folio,
        haddr: VirtAddr,
        pmd: PresentPte,
        remove_rmap: bool,
    ) -> bool {
        let mem = &self.mem;
        let Some(slot) = self.huge_pte_offset(haddr) else {
            return false;
        };
        if pmd.is_dirty() {
            mem.folio_set(folio, PageFlags::DIRTY);
        }
        let mut entry = SwapPte::device_exclusive(pmd.pfn, pmd.is_write());
        entry.soft_dirty = pmd.flags.contains(PteFlags::SOFT_DIRTY);
        entry.uffd_wp = pmd.flags.contains(PteFlags::UFFD_WP);
        self.set_huge_pte_at(slot, haddr, HugePte::NonPresent(entry));
        if remove_rmap {
            mem.folio_remove_rmap_pte(pmd.pfn);
        }
        pmd.is_write()
    }

    /// Calls `f` for every non-present hugetlb entry of this mm (for the checker):
    /// the 2 MiB address and the entry.
    pub(crate) fn for_each_nonpresent_hugetlb_entry(
        &self,
        tree: &VmaTree,
        mut f: impl FnMut(VirtAddr, SwapPte) -> ControlFlow<()>,
    ) {
        for vma in tree.iter().filter(|v| v.is_hugetlb()) {
            let mut a = vma.start().raw();
            while a < vma.end().raw() {
                let at = VirtAddr::new_truncate(a);
                a += PMD_SIZE;
                if let HugePte::NonPresent(e) = self.huge_ptep_get(at)
                    && f(at, e).is_break()
                {
                    return;
                }
            }
        }
    }
}

/// Bytes a hugetlb mapping's length is rounded up to (Linux: `huge_page_size()` of
/// the default hstate, 2 MiB on x86-64).
pub const HUGETLB_PAGE_SIZE: u64 = PAGE_SIZE << HPAGE_PMD_ORDER;
