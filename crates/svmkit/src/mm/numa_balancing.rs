//! NUMA balancing's scan (Linux: `task_numa_work()` in `kernel/sched/fair.c`), as an
//! explicit call.
//!
//! The scan turns the present PTEs of a range into NUMA hinting entries
//! (`change_prot_numa()`: protnone, still mapped and counted); the next CPU or
//! GUP access to such a page takes a NUMA hinting fault (`do_numa_page()`,
//! `mm/memory.c`), which makes the PTE accessible again. The model has one node, so
//! the fault never migrates; every scan acts as Linux's does when the page may be on
//! another node (Linux skips a page already on the scanning CPU's node in a
//! single-user mm; the model does not).
//!
//! Device-exclusive entries (spec 4.2, 9 item 5): the scan's `ProtectionVma` range
//! revokes every device mapping of the range in both eras. Under 5.14 to 6.14 the
//! scan also turns a writable entry readable, as mprotect does, so the restore after
//! the driver's re-fault maps the page read-only and a CPU write costs one more
//! fault; under 6.15 the entry is left as it is and the driver's re-fault restores
//! and converts it again.

use super::mm_types::MmUser;
use crate::error::Errno;
use crate::types::{PAGE_SIZE, VirtAddr};

impl MmUser {
    /// One NUMA balancing scan over `[addr, addr + len)`: every accessible VMA piece
    /// gets `change_prot_numa()` (`PROT_NONE` VMAs are
    /// skipped, so that their entries are not taken for hinting ones). Returns how
    /// many entries changed (Linux: the `numa_pte_updates` vmstat). Runs under the
    /// mmap lock for read, concurrently with faults, as `task_numa_work()` does.
    /// `EINVAL` for an unaligned `addr` or a range that wraps; unmapped parts are
    /// skipped.
    ///
    /// Linux: `task_numa_work()` (one pass, without its rate limits).
    pub fn numa_scan(&self, addr: u64, len: u64) -> Result<u64, Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let end = super::mmap::page_align(len)
            .and_then(|l| addr.checked_add(l))
            .ok_or(Errno::EINVAL)?;
        let (Ok(start), Ok(end)) = (VirtAddr::try_new(addr), VirtAddr::try_new(end)) else {
            return Err(Errno::EINVAL);
        };
        let tree = self.mmap_read_lock();
        let mut changed = 0;
        for vma in tree.intersecting(start, end) {
            // Linux: "Skip inaccessible VMAs to avoid any confusion between PROT_NONE
            // and NUMA hinting ptes".
            if !vma.is_accessible() {
                continue;
            }
            // Linux: task_numa_work() skips is_vm_hugetlb_page() VMAs.
            if vma.is_hugetlb() {
                continue;
            }
            let (s, e) = (vma.start().max(start), vma.end().min(end));
            changed += self.change_prot_numa(vma, s, e);
        }
        Ok(changed)
    }
}
