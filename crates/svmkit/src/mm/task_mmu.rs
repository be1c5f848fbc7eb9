//! What `fs/proc/task_mmu.c` shows and does: soft-dirty tracking from user space
//! (writing `4` to `/proc/PID/clear_refs`) and a VMA's resident size as
//! `/proc/PID/smaps` counts it.
//!
//! Clearing soft-dirty write-protects every present PTE and clears its soft-dirty bit,
//! clears the swap-PTE soft-dirty bit of non-present entries (device-exclusive ones
//! included, spec 4.14), and turns tracking on for every VMA (clears
//! `VM_SOFTDIRTY`). The next write to a page then faults and marks it soft-dirty again.
//! The whole address space is bracketed by one `SoftDirty` notifier range.

use super::mm_types::MmUser;
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::pgtable::{PMD_SIZE, Pte, PteFlags};
use super::vma::VmFlags;
use crate::types::{PAGE_SIZE, VirtAddr};

impl MmUser {
    /// Clears the soft-dirty bits of the whole address space.
    ///
    /// Linux: `clear_refs_write()` with `CLEAR_REFS_SOFT_DIRTY`.
    #[doc(alias = "clear_refs_write")]
    pub fn clear_refs_soft_dirty(&self) {
        let mut tree = self.mmap_write_lock();
        let pieces: Vec<_> = tree.iter().map(|v| (v.start(), v.end())).collect();
        let hugetlb: Vec<_> = tree.iter().map(|v| v.is_hugetlb()).collect();
        for ((s, e), hugetlb) in pieces.iter().zip(hugetlb) {
            // THPs go to PTEs first; the model tracks soft-dirty per 4 KiB page.
            // hugetlb mappings are left as they are (Linux: clear_refs_walk_ops has
            // no hugetlb_entry, so the walk skips them).
            if !hugetlb {
                self.for_each_huge_pmd(*s, *e, |haddr, _| self.split_huge_pmd_address(haddr));
            }
            tree.update_flags(*s, *e, |f| f - VmFlags::SOFTDIRTY);
        }
        let range = MmuNotifierRange::new(self, MmuNotifierEvent::SoftDirty, 0, u64::MAX)
            .invalidate_range_start();
        for (s, e) in &pieces {
            self.clear_soft_dirty_range(*s, *e);
        }
        range.end();
    }

    /// Linux: `clear_refs_pte_range()` over one VMA.
    fn clear_soft_dirty_range(&self, lo: VirtAddr, hi: VirtAddr) {
        self.for_each_pte_table(lo, hi, |ptl, s, e| {
            for a in (s.raw()..e.raw()).step_by(PAGE_SIZE as usize) {
                let va = VirtAddr::new_truncate(a);
                match ptl.get(va) {
                    // Linux: clear_soft_dirty(): pte_wrprotect() + pte_clear_soft_dirty().
                    Pte::Present(p) => {
                        let new = p.without(PteFlags::WRITE | PteFlags::SOFT_DIRTY);
                        if new != p {
                            ptl.set(va, Pte::Present(new));
                        }
                    }
                    Pte::Swap(mut sw) if sw.soft_dirty => {
                        sw.soft_dirty = false;
                        ptl.set(va, Pte::Swap(sw));
                    }
                    _ => {}
                }
            }
        });
    }

    /// The `Rss:` of `/proc/PID/smaps` for the VMA containing `addr`, in bytes; `None`
    /// when no VMA contains it. Counted as smaps counts: a present PTE of a normal page
    /// (the zero page is not, `vm_normal_page()` gives none), a PMD-mapped THP (2 MiB),
    /// and a pfn swap entry, whose page stays resident: device-exclusive, migration,
    /// device-private (6.12 `smaps_pte_entry()`: `is_pfn_swap_entry()` gives the page,
    /// and `smaps_account()` adds it to `resident` whether present or not). Swap slots
    /// count as `Swap:`, not here.
    ///
    /// Linux: `smap_gather_stats()` → `smaps_pte_entry()`, `smaps_pmd_entry()`.
    #[doc(alias = "smap_gather_stats")]
    pub fn smaps_rss(&self, addr: u64) -> Option<u64> {
        let va = VirtAddr::try_new(addr).ok()?;
        let tree = self.mmap_read_lock();
        let vma = tree.find(va)?;
        let (start, end) = (vma.start(), vma.end());
        let mut rss = 0;
        self.for_each_huge_pmd(start, end, |_, _| rss += PMD_SIZE);
        self.for_each_pte_table(start, end, |ptl, s, e| {
            for a in (s.raw()..e.raw()).step_by(PAGE_SIZE as usize) {
                let resident = match ptl.get(VirtAddr::new_truncate(a)) {
                    Pte::Present(p) => !p.is_special(),
                    Pte::Swap(sw) => sw.pfn().is_some(),
                    Pte::None => false,
                };
                rss += if resident { PAGE_SIZE } else { 0 };
            }
        });
        drop(tree);
        Some(rss)
    }
}
