//! The write-protect half of userfaultfd, reduced to setting and clearing the uffd-wp
//! bit (Linux: `mm/userfaultfd.c`, `UFFDIO_WRITEPROTECT` → `mwriteprotect_range()` →
//! `change_protection()` with `MM_CP_UFFD_WP` / `MM_CP_UFFD_WP_RESOLVE`).
//!
//! Enough to test what the bit does to other paths: a protected PTE is read-only and
//! is never made writable behind the tracker's back (`can_change_pte_writable()`); a
//! device-exclusive entry carries the bit in its swap-PTE form and the restore honours
//! it (spec 3, 4.15). Lifting the protection makes a PTE writable again where
//! mprotect's upgrade would (Linux 6.3 on, [`Profile::uffd_unprotect_upgrades_write`]).
//! There is no userfaultfd object, no registration (`VM_UFFD_WP`) and no fault
//! delivery: a write to a protected page takes the ordinary write-fault path.
//!
//! [`Profile::uffd_unprotect_upgrades_write`]: crate::Profile::uffd_unprotect_upgrades_write

use super::mm_types::MmUser;
use super::mmap::page_align;
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::pgtable::{Pte, PteFlags};
use super::vma::VmFlags;
use crate::error::Errno;
use crate::types::{PAGE_SIZE, VirtAddr};

impl MmUser {
    /// Sets (`protect`) or clears the uffd-wp bit on every PTE and swap-type entry of
    /// `[addr, addr + len)`; setting also write-protects present PTEs. `EINVAL` for an
    /// unaligned or empty range, `ENOENT` if part of it is not mapped (Linux's answers
    /// for an unregistered range differ; the model has no registration).
    ///
    /// Linux: `mwriteprotect_range()`.
    #[doc(alias = "mwriteprotect_range")]
    pub fn uffd_writeprotect(&self, addr: u64, len: u64, protect: bool) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_align(len).ok_or(Errno::EINVAL)?;
        let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
        let (Ok(start), Ok(end)) = (VirtAddr::try_new(addr), VirtAddr::try_new(end)) else {
            return Err(Errno::EINVAL);
        };
        let tree = self.mmap_read_lock();
        if !tree.covers(start, end) {
            return Err(Errno::ENOENT);
        }
        // Deviation (docs/ARCHITECTURE.md 46): Linux write-protects hugetlb PMDs too
        // (hugetlb_change_protection() with MM_CP_UFFD_WP); the model has no uffd-wp
        // bit on hugetlb mappings.
        if tree.intersecting(start, end).any(|v| v.is_hugetlb()) {
            return Err(Errno::EINVAL);
        }
        self.for_each_huge_pmd(start, end, |haddr, _| self.split_huge_pmd_address(haddr));
        // Linux 6.3 on: uffd_wp_range() adds MM_CP_TRY_CHANGE_WRITABLE when resolving
        // in a private writable VMA (vma_wants_manual_pte_write_upgrade()).
        let try_writable = !protect && self.profile().uffd_unprotect_upgrades_write;
        let range = MmuNotifierRange::new(
            self,
            MmuNotifierEvent::ProtectionVma,
            start.raw(),
            end.raw(),
        )
        .invalidate_range_start();
        self.for_each_pte_table(start, end, |ptl, s, e| {
            for a in (s.raw()..e.raw()).step_by(PAGE_SIZE as usize) {
                let va = VirtAddr::new_truncate(a);
                match ptl.get(va) {
                    Pte::Present(p) => {
                        let mut new = if protect {
                            p.without(PteFlags::WRITE).with(PteFlags::UFFD_WP)
                        } else {
                            p.without(PteFlags::UFFD_WP)
                        };
                        if try_writable
                            && !new.flags.contains(PteFlags::WRITE)
                            && let Some(vma) = tree.find(va)
                            && vma.flags.contains(VmFlags::WRITE)
                            && !vma.flags.contains(VmFlags::SHARED)
                            && self.can_change_pte_writable(vma, new)
                        {
                            new = new.with(PteFlags::WRITE);
                        }
                        if new != p {
                            ptl.set(va, Pte::Present(new));
                        }
                    }
                    Pte::Swap(sw) => {
                        // A change_protection() call: the 5.14 downgrade applies too.
                        let mut new = self.downgrade_exclusive_entry(sw).unwrap_or(sw);
                        new.uffd_wp = protect;
                        if new != sw {
                            ptl.set(va, Pte::Swap(new));
                        }
                    }
                    _ => {}
                }
            }
        });
        range.end();
        drop(tree);
        Ok(())
    }
}
