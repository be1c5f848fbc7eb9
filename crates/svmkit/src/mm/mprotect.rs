//! Changing protections (Linux: `mm/mprotect.c`).
//!
//! Linux 6.x behaviour: when write permission is granted to a private mapping, PTEs of
//! pages this process owns exclusively (PageAnonExclusive) become writable at once;
//! everything else (the zero page, pages shared with a fork child) stays read-only and
//! takes a write fault later. PROT_NONE turns present PTEs into protnone ones (the
//! page stays mapped and counted; the hardware sees nothing).

use super::mm_types::{Mm, MmUser};
use super::mmap::{Prot, page_align, prot_to_vm};
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::page::PageFlags;
use super::pgtable::{PresentPte, Pte, PteFlags, SwapPte};
use super::vma::{VM_ACCESS_FLAGS, VmFlags, Vma};
use crate::error::Errno;
use crate::types::{PAGE_SIZE, VirtAddr};

impl MmUser {
    /// Sets the protection of `[addr, addr + len)` to `prot`.
    ///
    /// As Linux, in its order:
    /// * both `PROT_GROWSDOWN` and `PROT_GROWSUP` → `EINVAL`; an unaligned `addr` →
    ///   `EINVAL`;
    /// * a zero `len` succeeds and changes nothing, whatever `prot` holds;
    /// * a range that wraps → `ENOMEM`;
    /// * `prot` bits other than read, write, exec and `PROT_SEM` (accepted, no effect)
    ///   → `EINVAL` (Linux: the generic `arch_validate_prot()`, which x86 does not
    ///   override);
    /// * under the mmap lock: nothing mapped in the range → `ENOMEM`; with
    ///   `PROT_GROWSUP` a hole at the start → `ENOMEM`; otherwise `PROT_GROWSDOWN` or
    ///   `PROT_GROWSUP` → `EINVAL` (no VMA of the model grows down; none on x86 grows
    ///   up);
    /// * a hole at the start → `ENOMEM` with nothing changed; a hole further on →
    ///   `ENOMEM` *after* the VMAs before the hole were changed (Linux does not roll
    ///   back).
    ///
    /// Linux: `mprotect()` → `do_mprotect_pkey()` → `mprotect_fixup()`.
    pub fn mprotect(&self, addr: u64, len: u64, prot: Prot) -> Result<(), Errno> {
        let grows = prot & (Prot::GROWSDOWN | Prot::GROWSUP);
        let prot = prot - (Prot::GROWSDOWN | Prot::GROWSUP);
        if grows == Prot::GROWSDOWN | Prot::GROWSUP {
            return Err(Errno::EINVAL);
        }
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_align(len).ok_or(Errno::ENOMEM)?;
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        // Linux: arch_validate_prot() (include/linux/mman.h).
        if !prot
            .difference(Prot::READ | Prot::WRITE | Prot::EXEC | Prot::SEM)
            .is_empty()
        {
            return Err(Errno::EINVAL);
        }
        let (Ok(start), Ok(end)) = (VirtAddr::try_new(addr), VirtAddr::try_new(end)) else {
            return Err(Errno::ENOMEM);
        };
        let new_access = prot_to_vm(prot);
        let mut tree = self.mmap_write_lock();
        // Linux: vma_modify_flags() → split_vma() → hugetlb_vm_op_split(): EINVAL
        // when a hugetlb VMA would be cut off 2 MiB.
        super::hugetlb::check_hugetlb_split(&tree, start, end)?;
        if !grows.is_empty() {
            // Linux: the first VMA in the range must exist; PROT_GROWSDOWN then needs
            // VM_GROWSDOWN, PROT_GROWSUP a VMA starting at or below `start` and
            // VM_GROWSUP. No VMA of the model has either flag.
            let first = tree.intersecting(start, end).next().map(|v| v.start());
            return match first {
                None => Err(Errno::ENOMEM),
                Some(s) if grows == Prot::GROWSUP && s > start => Err(Errno::ENOMEM),
                Some(_) => Err(Errno::EINVAL),
            };
        }
        // The VMAs we may change: the run without holes starting at `start`.
        let mut pieces: Vec<Vma> = Vec::new();
        let mut at = start;
        for v in tree.intersecting(start, end) {
            if v.start() > at {
                break;
            }
            pieces.push(v.clone());
            at = v.end();
        }
        if pieces.is_empty() {
            return Err(Errno::ENOMEM);
        }
        let covered_to = at.min(end);
        for v in &pieces {
            let newflags = (v.flags - VM_ACCESS_FLAGS) | new_access;
            // Linux: the new access bits must be allowed by the VM_MAY* bits.
            if !newflags
                .difference(VmFlags::from_bits_retain(newflags.bits() >> 4))
                .intersection(VM_ACCESS_FLAGS)
                .is_empty()
            {
                return Err(Errno::EACCES);
            }
        }
        for v in &pieces {
            if (v.flags & VM_ACCESS_FLAGS) == new_access {
                continue;
            }
            let (s, e) = (v.start().max(start), v.end().min(covered_to));
            self.vma_adjust_trans_huge(s, e);
            tree.update_flags(s, e, |f| (f - VM_ACCESS_FLAGS) | new_access);
            if let Some(changed) = tree.find(s).cloned() {
                self.change_protection(&changed, s, e);
            }
        }
        tree.merge_around(start, covered_to);
        if covered_to < end {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }
}

impl Mm {
    /// Rewrites the present PTEs of `[start, end)` inside `vma` (whose flags are
    /// already the new ones) to the VMA's protection, upgrading to writable where
    /// [`can_change_pte_writable`](Self::can_change_pte_writable) allows.
    ///
    /// Linux: `change_protection()` → `change_pte_range()`.
    pub(crate) fn change_protection(&self, vma: &Vma, start: VirtAddr, end: VirtAddr) -> u64 {
        self.change_protection_flags(vma, start, end, false)
    }

    /// Turns the present PTEs of `[start, end)` inside `vma` into NUMA hinting
    /// entries (protnone: mapped and counted, but the next access faults into
    /// `do_numa_page()`), skipping the zero page and PTEs already protnone. Huge PMDs
    /// are left as they are (the model does not mark them). Non-present entries get
    /// what every `change_protection()` call does to them: under 5.14 to 6.14 a
    /// writable device-exclusive entry becomes readable, as with mprotect, because
    /// that branch does not look at `MM_CP_PROT_NUMA` (spec 4.2, 9 item 5); 6.15
    /// leaves it alone. Both send the `ProtectionVma` range, which revokes device
    /// mappings of the range, entries included. Returns how many entries changed
    /// (Linux: `NUMA_PTE_UPDATES`).
    ///
    /// Linux: `change_prot_numa()` → `change_protection(MM_CP_PROT_NUMA)`.
    pub(crate) fn change_prot_numa(&self, vma: &Vma, start: VirtAddr, end: VirtAddr) -> u64 {
        self.change_protection_flags(vma, start, end, true)
    }

    /// [`change_protection`](Self::change_protection), or with `prot_numa` its
    /// `MM_CP_PROT_NUMA` flavour ([`change_prot_numa`](Self::change_prot_numa)).
    fn change_protection_flags(
        &self,
        vma: &Vma,
        start: VirtAddr,
        end: VirtAddr,
        prot_numa: bool,
    ) -> u64 {
        // Linux: change_protection() → hugetlb_change_protection(); task_numa_work()
        // skips hugetlb VMAs.
        if vma.is_hugetlb() {
            return if prot_numa {
                0
            } else {
                self.hugetlb_change_protection(vma, start, end)
            };
        }
        let prot = if prot_numa {
            PteFlags::PROTNONE
        } else {
            vma.page_prot()
        };
        let try_writable =
            vma.flags.contains(VmFlags::WRITE) && !vma.flags.contains(VmFlags::SHARED);
        let mut changed = 0;
        // Linux: the ProtectionVma range starts at the first populated PMD and is not
        // sent at all when nothing in the range is populated.
        let Some(first) = self.first_populated_pmd(start, end) else {
            return 0;
        };
        let range = MmuNotifierRange::new(
            self,
            MmuNotifierEvent::ProtectionVma,
            first.raw(),
            end.raw(),
        )
        .invalidate_range_start();
        self.for_each_huge_pmd(first, end, |haddr, whole| {
            if prot_numa {
                // Deviation: a NUMA scan leaves huge PMDs alone.
            } else if whole {
                changed += u64::from(self.change_huge_pmd(vma, haddr));
            } else {
                self.split_huge_pmd(vma, haddr);
            }
        });
        self.for_each_pte_table(first, end, |ptl, s, e| {
            for a in (s.raw()..e.raw()).step_by(PAGE_SIZE as usize) {
                let va = VirtAddr::new_truncate(a);
                let old = match ptl.get(va) {
                    Pte::Present(old) => old,
                    Pte::Swap(e) => {
                        if let Some(r) = self.downgrade_exclusive_entry(e) {
                            ptl.set(va, Pte::Swap(r));
                            changed += 1;
                        }
                        continue;
                    }
                    Pte::None => continue,
                };
                // Linux: change_pte_range() with MM_CP_PROT_NUMA skips the zero page
                // and PTEs that already are NUMA hinting entries.
                if prot_numa && (old.is_protnone() || old.is_special()) {
                    continue;
                }
                // Linux: pte_modify() keeps pfn and status bits, takes the rest from the
                // new vm_page_prot.
                let keep = old.flags
                    & (PteFlags::ACCESSED
                        | PteFlags::DIRTY
                        | PteFlags::SPECIAL
                        | PteFlags::SOFT_DIRTY
                        | PteFlags::UFFD_WP);
                let mut new = PresentPte::new(old.pfn, keep | prot);
                if !prot_numa && try_writable && self.can_change_pte_writable(vma, new) {
                    new = new.with(PteFlags::WRITE);
                }
                if new != old {
                    ptl.set(va, Pte::Present(new));
                    changed += 1;
                }
            }
        });
        range.end();
        changed
    }

    /// What `change_protection()` does to a swap-type entry: a writable migration
    /// entry becomes readable (all eras); 5.14 to 6.14 also turn a writable
    /// device-exclusive entry readable, keeping its soft-dirty and uffd-wp bits
    /// ("protection check is difficult so just be safe and disable write", spec 4.2);
    /// 6.15 leaves those alone. `None` when nothing changes.
    ///
    /// Linux 5.14: the device-exclusive branch of `change_pte_range()`.
    pub(crate) fn downgrade_exclusive_entry(&self, e: SwapPte) -> Option<SwapPte> {
        if e.is_migration() && e.swp_type == super::pgtable::swp_type::SWP_MIGRATION_WRITE {
            // All eras: a writable migration entry becomes readable(-exclusive, anon).
            let mut r = SwapPte::migration(e.pfn()?, false, true);
            r.soft_dirty = e.soft_dirty;
            r.uffd_wp = e.uffd_wp;
            return Some(r);
        }
        if !self.profile().mprotect_downgrades_entries || !e.is_writable_device_exclusive() {
            return None;
        }
        let pfn = e.pfn()?;
        let mut r = SwapPte::device_exclusive(pfn, false);
        r.soft_dirty = e.soft_dirty;
        r.uffd_wp = e.uffd_wp;
        Some(r)
    }

    /// Whether a read-only PTE in a private writable VMA may be made writable without
    /// a fault: not protnone, not uffd-wp protected, not under soft-dirty tracking
    /// unless already soft-dirty, and mapping a page of an anon folio this process owns
    /// exclusively (the zero page never qualifies).
    ///
    /// Linux: `can_change_pte_writable()`.
    pub fn can_change_pte_writable(&self, vma: &Vma, pte: PresentPte) -> bool {
        if pte.is_protnone() || pte.flags.contains(PteFlags::UFFD_WP) || pte.is_special() {
            return false;
        }
        if vma.soft_dirty_enabled() && !pte.flags.contains(PteFlags::SOFT_DIRTY) {
            return false;
        }
        let mem = &self.mem;
        mem.page_folio(pte.pfn)
            .is_ok_and(|f| mem.folio_test(f, PageFlags::ANON))
            && mem
                .page(pte.pfn)
                .is_some_and(|p| p.test(PageFlags::ANON_EXCLUSIVE))
    }
}
