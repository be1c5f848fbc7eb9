//! mlock, munlock, mlockall and the Mlocked folio state (Linux: `mm/mlock.c`).
//!
//! `VM_LOCKED` on a VMA keeps its pages in memory: `mlock()` sets the flag under the
//! mmap lock (write), marks every small folio already mapped there PG_mlocked
//! (`mlock_vma_pages_range()`), then faults the rest in under the mmap lock (read)
//! as GUP does ([`Mm::mm_populate`]). Folios the VMA maps later (a first touch, a
//! COW copy, a swap-in, a migration's new folio, the 5.14 restore of a
//! device-exclusive entry) are mlocked as their mapping is added; removing a mapping
//! (zap, COW, migration, the 5.14 conversion to a device-exclusive entry) munlocks.
//! Reclaim leaves mlocked folios alone. `NR_MLOCK` counts the mlocked pages
//! ([`PhysMem::nr_mlock`]).
//!
//! Device-exclusive entries (spec 4.17, 1.2):
//! * 5.14 to 6.14: the conversion removes the PTE's rmap, which munlocks the folio
//!   (5.14 `page_remove_rmap()` → `clear_page_mlock()` on the last unmap; 6.12
//!   `folio_remove_rmap_pte()` → `munlock_vma_folio()`); the restore re-mlocks it if
//!   the VMA is `VM_LOCKED` (the series' `restore_exclusive_pte()`: `if
//!   (vma->vm_flags & VM_LOCKED) mlock_vma_page(page)`, patch v6 5/8
//!   `<20210312083851.15981-6-apopple@nvidia.com>`; 6.12 `folio_add_anon_rmap_pte()`
//!   → `mlock_vma_folio()`). So while a device holds a page exclusively, the page is
//!   not mlocked and `NR_MLOCK` is one page short.
//! * 6.15: the entry keeps the mapcount, so nothing munlocks and nothing re-mlocks:
//!   the page stays mlocked throughout (spec 1.2, "mlock unchanged").
//! * Both: `mlock_pte_range()` looks at present PTEs only (spec 4.17), so a munlock
//!   over an entry leaves the folio as it is. Under 6.15 that strands its PG_mlocked
//!   until the folio is freed (derived from the 6.12/6.15 `mlock_pte_range()` and
//!   the restore that adds no rmap); under 5.14 it was already munlocked.

use bitflags::bitflags;

use super::folio::Folio;
use super::mm_types::{Mm, MmUser};
use super::page::PageFlags;
use super::page_alloc::PhysMem;
use super::pgtable::Pte;
use super::vma::{VM_LOCKED_MASK, VmFlags, VmaTree};
use crate::error::Errno;
use crate::types::{PAGE_SIZE, VirtAddr};
use std::sync::atomic::Ordering;

bitflags! {
    /// `mlockall()` flags (Linux: `MCL_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct MlockallFlags: u32 {
        /// MCL_CURRENT: lock every mapping there is now.
        const CURRENT = 1;
        /// MCL_FUTURE: lock every mapping made from now on (`mm->def_flags`).
        const FUTURE = 2;
        /// MCL_ONFAULT: lock pages as they are faulted in, not up front.
        const ONFAULT = 4;
    }
}

/// `mlock2()`'s only flag (Linux: `MLOCK_ONFAULT`).
pub const MLOCK_ONFAULT: u32 = 1;

impl PhysMem {
    /// Pages mlocked (Linux: the `NR_MLOCK` counter, meminfo's `Mlocked:`).
    pub fn nr_mlock(&self) -> i64 {
        self.nr_mlock.load(Ordering::SeqCst)
    }

    /// Whether `folio` is PG_mlocked.
    ///
    /// Linux: `folio_test_mlocked()`.
    pub fn folio_test_mlocked(&self, folio: Folio) -> bool {
        self.folio_test(folio, PageFlags::MLOCKED)
    }

    /// Counts one more `VM_LOCKED` mapping of `folio`: PG_mlocked set (and counted in
    /// `NR_MLOCK`) by the first.
    ///
    /// Linux: `mlock_folio()` → `__mlock_folio()`.
    pub(crate) fn mlock_folio(&self, folio: Folio) {
        let Some(head) = self.page(folio.head()) else {
            return;
        };
        if !head.set(PageFlags::MLOCKED).contains(PageFlags::MLOCKED) {
            self.nr_mlock
                .fetch_add(folio.nr_pages() as i64, Ordering::SeqCst);
            head.set_mlock_count(0);
        }
        head.set_mlock_count(head.mlock_count() + 1);
    }

    /// Counts one `VM_LOCKED` mapping of `folio` less: PG_mlocked cleared (and taken
    /// out of `NR_MLOCK`) with the last.
    ///
    /// Linux: `munlock_folio()` → `__munlock_folio()`.
    pub(crate) fn munlock_folio(&self, folio: Folio) {
        let Some(head) = self.page(folio.head()) else {
            return;
        };
        if !head.test(PageFlags::MLOCKED) {
            return;
        }
        let left = (head.mlock_count() - 1).max(0);
        head.set_mlock_count(left);
        // Linux: "assume that was the last mlock: reclaim will fix it if not".
        if left == 0 && head.clear(PageFlags::MLOCKED).contains(PageFlags::MLOCKED) {
            self.nr_mlock
                .fetch_sub(folio.nr_pages() as i64, Ordering::SeqCst);
        }
    }

    /// Mlocks a small `folio` just mapped into a VMA with `flags`, if it is
    /// `VM_LOCKED` (large folios are left to reclaim, as Linux does).
    ///
    /// Linux: `mlock_vma_folio()` (and `mlock_new_folio()` for a new folio).
    pub(crate) fn mlock_vma_folio(&self, folio: Folio, flags: VmFlags) {
        if flags.contains(VmFlags::LOCKED) && !folio.is_large() {
            self.mlock_folio(folio);
        }
    }

    /// Munlocks `folio` after one of its mappings in a VMA with `flags` went away, if
    /// that VMA is `VM_LOCKED`.
    ///
    /// Linux: `munlock_vma_folio()`.
    pub(crate) fn munlock_vma_folio(&self, folio: Folio, flags: VmFlags) {
        if flags.contains(VmFlags::LOCKED) {
            self.munlock_folio(folio);
        }
    }

    /// Drops a stranded PG_mlocked of a folio being freed.
    ///
    /// Linux 6.12: the mlocked branch of `free_pages_prepare()`.
    pub(super) fn mlock_clear_at_free(&self, folio: Folio) {
        if let Some(head) = self.page(folio.head())
            && head.clear(PageFlags::MLOCKED).contains(PageFlags::MLOCKED)
        {
            head.set_mlock_count(0);
            self.nr_mlock
                .fetch_sub(folio.nr_pages() as i64, Ordering::SeqCst);
        }
    }
}

/// Page-aligns `[start, start + len)` as mlock and munlock do: the start rounded
/// down, the length grown by the offset and rounded up, wrapping as C does (a wrap
/// to 0 is an empty range).
///
/// Linux: `len = PAGE_ALIGN(len + offset_in_page(start)); start &= PAGE_MASK;`.
fn mlock_range(start: u64, len: u64) -> (u64, u64) {
    let len = len
        .wrapping_add(start % PAGE_SIZE)
        .wrapping_add(PAGE_SIZE - 1)
        & !(PAGE_SIZE - 1);
    (start & !(PAGE_SIZE - 1), len)
}

/// mlock's errno for a populate failure (Linux: `__mlock_posix_error_return()`).
fn mlock_posix_error(e: Errno) -> Errno {
    match e {
        Errno::EFAULT => Errno::ENOMEM,
        Errno::ENOMEM => Errno::EAGAIN,
        e => e,
    }
}

impl MmUser {
    /// Locks `[addr, addr + len)` in memory: sets `VM_LOCKED` on its VMAs, mlocks
    /// the pages already there, then faults every page in (writable in a private
    /// writable mapping, so COW is broken and a device-exclusive entry is restored,
    /// revoking the device).
    ///
    /// As Linux (`RLIMIT_MEMLOCK` is not modelled: the caller may lock anything, as
    /// with `CAP_IPC_LOCK`): `addr` is rounded down and `len` up, never `EINVAL` for
    /// alignment; a range whose end wraps → `EINVAL`; an empty one succeeds; a hole
    /// → `ENOMEM` (the VMAs before it stay locked); a page that cannot be faulted in
    /// (`PROT_NONE`) → `ENOMEM`, out of memory → `EAGAIN`, the flags staying set.
    ///
    /// Linux: `mlock()` → `do_mlock(VM_LOCKED)`.
    pub fn mlock(&self, addr: u64, len: u64) -> Result<(), Errno> {
        self.do_mlock(addr, len, VmFlags::LOCKED)
    }

    /// [`mlock`](Self::mlock) with `flags`: `MLOCK_ONFAULT` locks pages as they are
    /// faulted in instead of populating; any other bit → `EINVAL`.
    ///
    /// Linux: `mlock2()`.
    pub fn mlock2(&self, addr: u64, len: u64, flags: u32) -> Result<(), Errno> {
        if flags & !MLOCK_ONFAULT != 0 {
            return Err(Errno::EINVAL);
        }
        let mut vm = VmFlags::LOCKED;
        if flags & MLOCK_ONFAULT != 0 {
            vm |= VmFlags::LOCKONFAULT;
        }
        self.do_mlock(addr, len, vm)
    }

    /// Unlocks `[addr, addr + len)`: clears `VM_LOCKED` and munlocks the pages
    /// present there. Errors as [`mlock`](Self::mlock)'s range checks.
    ///
    /// Linux: `munlock()`.
    pub fn munlock(&self, addr: u64, len: u64) -> Result<(), Errno> {
        let (start, len) = mlock_range(addr, len);
        let mut tree = self.mmap_write_lock();
        self.apply_vma_lock_flags(&mut tree, start, len, VmFlags::empty())
    }

    /// Locks every current mapping (`MCL_CURRENT`, populating them unless
    /// `MCL_ONFAULT`) and/or every future one (`MCL_FUTURE`: `mm->def_flags`).
    /// `EINVAL` for no flags, an unknown bit, or `MCL_ONFAULT` alone. Failures to
    /// populate are ignored, as Linux's `mm_populate()` does.
    ///
    /// Linux: `mlockall()` → `apply_mlockall_flags()`.
    pub fn mlockall(&self, flags: u32) -> Result<(), Errno> {
        let Some(f) = MlockallFlags::from_bits(flags) else {
            return Err(Errno::EINVAL);
        };
        if f.is_empty() || f == MlockallFlags::ONFAULT {
            return Err(Errno::EINVAL);
        }
        {
            let mut tree = self.mmap_write_lock();
            self.apply_mlockall_flags(&mut tree, f);
        }
        if f.contains(MlockallFlags::CURRENT) {
            let _ = self.mm_populate(0, crate::types::TASK_SIZE, true);
        }
        Ok(())
    }

    /// Unlocks every mapping and clears `MCL_FUTURE`.
    ///
    /// Linux: `munlockall()` → `apply_mlockall_flags(0)`.
    pub fn munlockall(&self) -> Result<(), Errno> {
        let mut tree = self.mmap_write_lock();
        self.apply_mlockall_flags(&mut tree, MlockallFlags::empty());
        Ok(())
    }

    /// Linux: `do_mlock()`.
    fn do_mlock(&self, addr: u64, len: u64, flags: VmFlags) -> Result<(), Errno> {
        let (start, len) = mlock_range(addr, len);
        {
            let mut tree = self.mmap_write_lock();
            self.apply_vma_lock_flags(&mut tree, start, len, flags)?;
        }
        // The mmap lock is dropped in between, as Linux's is: a racing munmap or
        // munlock may change the range before the pages are faulted in.
        self.mm_populate(start, len, false)
            .map_err(mlock_posix_error)
    }
}

impl Mm {
    /// Pages in `VM_LOCKED` VMAs (Linux: `mm->locked_vm`, which the model derives
    /// from the VMAs instead of keeping a counter).
    pub fn locked_vm(&self) -> u64 {
        let tree = self.mmap_read_lock();
        tree.iter()
            .filter(|v| v.flags.contains(VmFlags::LOCKED))
            .map(|v| v.len() / PAGE_SIZE)
            .sum()
    }

    /// The flags every new mapping gets (Linux: `mm->def_flags`).
    pub fn def_flags(&self) -> VmFlags {
        VmFlags::from_bits_retain(self.def_flags.load(Ordering::SeqCst))
    }

    /// Gives the VMAs of `[start, start + len)` the mlock bits `flags` (`VM_LOCKED`,
    /// `VM_LOCKONFAULT`, or none to unlock). `EINVAL` when the end wraps, `ENOMEM`
    /// when no VMA starts the range or a hole follows (what came before it stays
    /// changed).
    ///
    /// Linux: `apply_vma_lock_flags()`.
    fn apply_vma_lock_flags(
        &self,
        tree: &mut VmaTree,
        start: u64,
        len: u64,
        flags: VmFlags,
    ) -> Result<(), Errno> {
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
        if end == start {
            return Ok(());
        }
        let (Ok(s), Ok(e)) = (VirtAddr::try_new(start), VirtAddr::try_new(end)) else {
            return Err(Errno::ENOMEM);
        };
        if tree.find(s).is_none() {
            return Err(Errno::ENOMEM);
        }
        let mut at = s;
        let pieces: Vec<(VirtAddr, VirtAddr)> = tree
            .intersecting(s, e)
            .map(|v| (v.start(), v.end()))
            .collect();
        for (vs, ve) in pieces {
            if vs > at {
                return Err(Errno::ENOMEM);
            }
            let to = ve.min(e);
            self.mlock_fixup(tree, at, to, flags);
            at = to;
        }
        if at < e {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// Sets the mlock bits of `[start, end)` (inside one VMA) to `lock`, mlocking
    /// or munlocking the pages present there when `VM_LOCKED` changes.
    ///
    /// Linux: `mlock_fixup()`.
    fn mlock_fixup(&self, tree: &mut VmaTree, start: VirtAddr, end: VirtAddr, lock: VmFlags) {
        let Some(old) = tree.find(start).map(|v| v.flags) else {
            return;
        };
        let new = (old - VM_LOCKED_MASK) | lock;
        // Linux: "don't set VM_LOCKED or VM_LOCKONFAULT and don't count" for hugetlb
        // VMAs (their pages are never reclaimed anyway).
        if new == old || old.contains(VmFlags::HUGETLB) {
            return;
        }
        // Linux: vma_modify_flags() splits the VMA, and __split_vma() splits a huge
        // PMD across the new boundary first (vma_adjust_trans_huge()).
        self.vma_adjust_trans_huge(start, end);
        tree.update_flags(start, end, |f| (f - VM_LOCKED_MASK) | lock);
        // Linux: "No work to do, and mlocking twice would be wrong" when only
        // VM_LOCKONFAULT changes.
        if old.contains(VmFlags::LOCKED) != new.contains(VmFlags::LOCKED) {
            self.mlock_vma_pages_range(start, end, new.contains(VmFlags::LOCKED));
        }
        tree.merge_around(start, end);
    }

    /// Mlocks (or munlocks) every small folio mapped by a present PTE in
    /// `[start, end)`; non-present entries (swap, migration, device-exclusive) are
    /// skipped, as are the zero page and large folios.
    ///
    /// Caller holds the mmap lock for write.
    ///
    /// Linux: `mlock_vma_pages_range()` → `mlock_pte_range()`.
    fn mlock_vma_pages_range(&self, start: VirtAddr, end: VirtAddr, lock: bool) {
        let mem = &self.mem;
        self.for_each_pte_table(start, end, |ptl, s, e| {
            for a in (s.raw()..e.raw()).step_by(PAGE_SIZE as usize) {
                let Pte::Present(p) = ptl.get(VirtAddr::new_truncate(a)) else {
                    continue;
                };
                if p.is_special() {
                    continue;
                }
                let Ok(folio) = mem.page_folio(p.pfn) else {
                    continue;
                };
                if folio.is_large() {
                    continue;
                }
                if lock {
                    mem.mlock_folio(folio);
                } else {
                    mem.munlock_folio(folio);
                }
            }
        });
    }

    /// Applies `mlockall()`'s `flags` (or `munlockall()`'s none) to `def_flags` and
    /// every VMA.
    ///
    /// Linux: `apply_mlockall_flags()`.
    fn apply_mlockall_flags(&self, tree: &mut VmaTree, flags: MlockallFlags) {
        let mut def = self.def_flags() - VM_LOCKED_MASK;
        if flags.contains(MlockallFlags::FUTURE) {
            def |= VmFlags::LOCKED;
            if flags.contains(MlockallFlags::ONFAULT) {
                def |= VmFlags::LOCKONFAULT;
            }
        }
        self.def_flags.store(def.bits(), Ordering::SeqCst);
        if flags.contains(MlockallFlags::FUTURE) && !flags.contains(MlockallFlags::CURRENT) {
            return;
        }
        let mut to_add = VmFlags::empty();
        if flags.contains(MlockallFlags::CURRENT) {
            to_add |= VmFlags::LOCKED;
            if flags.contains(MlockallFlags::ONFAULT) {
                to_add |= VmFlags::LOCKONFAULT;
            }
        }
        let vmas: Vec<(VirtAddr, VirtAddr)> = tree.iter().map(|v| (v.start(), v.end())).collect();
        for (s, e) in vmas {
            self.mlock_fixup(tree, s, e, to_add);
        }
    }
}
