//! Advice on ranges (Linux: `mm/madvise.c`): `MADV_DONTNEED` zaps, `MADV_HUGEPAGE` and
//! `MADV_NOHUGEPAGE` set VMA flags for the THP layer.

use super::mm_types::MmUser;
use super::mmap::page_align;
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::vma::{VmFlags, VmaTree};
use crate::error::Errno;
use crate::types::{PAGE_SIZE, VirtAddr};

/// The advice values the model understands (Linux: `MADV_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Advice {
    /// MADV_DONTNEED (4): drop the pages; the next access sees zeroes.
    DontNeed,
    /// MADV_HUGEPAGE (14): prefer transparent huge pages here.
    HugePage,
    /// MADV_NOHUGEPAGE (15): never use transparent huge pages here.
    NoHugePage,
    /// MADV_PAGEOUT (21): reclaim the range's anonymous pages to swap now.
    PageOut,
}

impl Advice {
    /// The advice for a Linux `MADV_*` number; `EINVAL` for any other.
    pub fn from_raw(raw: i32) -> Result<Self, Errno> {
        match raw {
            4 => Ok(Advice::DontNeed),
            14 => Ok(Advice::HugePage),
            15 => Ok(Advice::NoHugePage),
            21 => Ok(Advice::PageOut),
            _ => Err(Errno::EINVAL),
        }
    }

    /// The Linux `MADV_*` number.
    pub fn raw(self) -> i32 {
        match self {
            Advice::DontNeed => 4,
            Advice::HugePage => 14,
            Advice::NoHugePage => 15,
            Advice::PageOut => 21,
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
    /// `DontNeed` runs under the mmap lock in read mode, concurrently with faults; the
    /// others change VMA flags (splitting and merging VMAs) under write mode.
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
        let pieces = |tree: &VmaTree| -> (Vec<(VirtAddr, VirtAddr)>, bool) {
            let ranges = tree
                .intersecting(start, end)
                .map(|v| (v.start().max(start), v.end().min(end)))
                .collect();
            (ranges, tree.covers(start, end))
        };
        let covered = match advice {
            Advice::DontNeed => {
                let tree = self.mmap_read_lock();
                let (ranges, covered) = pieces(&tree);
                for (s, e) in ranges {
                    // Linux: zap_page_range_single(), one Clear range per VMA piece.
                    let range =
                        MmuNotifierRange::new(self, MmuNotifierEvent::Clear, s.raw(), e.raw())
                            .invalidate_range_start();
                    self.unmap_page_range(s, e);
                    range.end();
                }
                covered
            }
            Advice::PageOut => {
                let tree = self.mmap_read_lock();
                let (ranges, covered) = pieces(&tree);
                for (s, e) in ranges {
                    self.madvise_pageout(s, e);
                }
                covered
            }
            Advice::HugePage | Advice::NoHugePage => {
                let (set, clear) = if advice == Advice::HugePage {
                    (VmFlags::HUGEPAGE, VmFlags::NOHUGEPAGE)
                } else {
                    (VmFlags::NOHUGEPAGE, VmFlags::HUGEPAGE)
                };
                let mut tree = self.mmap_write_lock();
                let (ranges, covered) = pieces(&tree);
                for (s, e) in ranges {
                    self.vma_adjust_trans_huge(s, e);
                    tree.update_flags(s, e, |f| (f | set) - clear);
                }
                tree.merge_around(start, end);
                covered
            }
        };
        if covered { Ok(()) } else { Err(Errno::ENOMEM) }
    }
}
