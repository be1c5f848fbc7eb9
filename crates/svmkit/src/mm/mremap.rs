//! Resizing and moving mappings (Linux: `mm/mremap.c`).
//!
//! A shrink unmaps the tail; a growth extends the VMA in place when the range after
//! it is free, else (with [`MremapFlags::MAYMOVE`]) the mapping moves: a copy of the
//! VMA is placed at the new address with the old page offset (so every anonymous
//! folio keeps its index and anon_vma, and the rmap finds it at the new address),
//! the page tables' entries move to it under one `Unmap` notifier range over the old
//! range, and the old range is unmapped (which sends its own `Unmap`, as Linux's
//! `do_vmi_munmap()` after `move_page_tables()` does). Entries move verbatim, with
//! the soft-dirty bit set: present PTEs, swap entries, migration entries and
//! device-exclusive entries alike (spec 4.4), so a device that mirrored the old range
//! loses its mapping (the `Unmap`) and a CPU touch at the new address restores the
//! entry with one fault.
//!
//! # Where the model is simpler than Linux
//! * `MREMAP_DONTUNMAP` is not modelled: `EINVAL` once Linux's own flag checks pass.
//! * `old_len == 0` (duplicating a shared mapping) is `EINVAL` for every mapping;
//!   Linux refuses it only for private ones.
//! * Linux moves a whole PTE table (`move_normal_pmd()`) when source and target are
//!   PMD-aligned and the extent is 2 MiB; the model moves the entries one by one,
//!   which leaves the same entries at the same addresses.
//! * No uffd registration exists in the model, so uffd-wp bits move with the entries
//!   (Linux clears them when the VMA is registered without `UFFD_FEATURE_EVENT_REMAP`).
//! * Rmap locks are always taken around each moved extent (Linux: `need_rmap_locks`
//!   only when the new VMA could be walked before the old one).

use bitflags::bitflags;

use super::mm_types::{Mm, MmUser};
use super::mmap::MMAP_MIN_ADDR;
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::pgtable::{PMD_SIZE, Pmd, Pte};
use super::vma::{Vma, VmaTree};
use crate::error::Errno;
use crate::sync::MmapWriteGuard;
use crate::types::{PAGE_SIZE, TASK_SIZE, VirtAddr};

bitflags! {
    /// mremap flags (Linux: `MREMAP_*`, `include/uapi/linux/mman.h`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct MremapFlags: u32 {
        /// MREMAP_MAYMOVE: the mapping may move if it cannot grow in place.
        const MAYMOVE = 1;
        /// MREMAP_FIXED: move to exactly `new_addr`, unmapping what is there (needs
        /// MAYMOVE).
        const FIXED = 2;
        /// MREMAP_DONTUNMAP: move but leave the old range mapped (empty). Not modelled:
        /// `EINVAL`.
        const DONTUNMAP = 4;
    }
}

/// `PAGE_ALIGN()` as the kernel computes it: wrapping, so a length near `u64::MAX`
/// becomes 0.
fn page_align_wrapping(len: u64) -> u64 {
    len.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

impl MmUser {
    /// Resizes and/or moves the mapping at `old_addr` (`old_len` bytes) to `new_len`
    /// bytes; returns its (possibly new) address.
    ///
    /// Checked in Linux's order (6.12 `mremap()`):
    /// * flags outside MAYMOVE, FIXED and DONTUNMAP, FIXED without MAYMOVE,
    ///   DONTUNMAP without MAYMOVE or with a size change → `EINVAL`; DONTUNMAP
    ///   otherwise → `EINVAL` (not modelled);
    /// * `old_addr` unaligned → `EINVAL`; `new_len` zero once page-aligned → `EINVAL`;
    /// * no VMA at `old_addr` → `EFAULT`;
    /// * FIXED (`mremap_to()`): `new_addr` unaligned, the new range leaving user space
    ///   or overlapping the old one → `EINVAL`; then the target is unmapped, a shrink
    ///   unmaps the old tail, the old range must lie in one VMA (`EFAULT`), and a
    ///   target below [`MMAP_MIN_ADDR`] → `EPERM` (after the unmaps, as Linux);
    /// * a shrink (or same size) in place unmaps the tail and always succeeds (across
    ///   VMAs too: it is a munmap);
    /// * a growth: `old_len == 0` → `EINVAL`; the old range past its VMA's end →
    ///   `EFAULT`; grown in place if the range reaches the VMA's end and the space
    ///   after it is free; else moved to a free range with MAYMOVE (`ENOMEM` if there
    ///   is none), else `ENOMEM`.
    ///
    /// Linux: `mremap()`.
    pub fn mremap(
        &self,
        old_addr: u64,
        old_len: u64,
        new_len: u64,
        flags: MremapFlags,
        new_addr: u64,
    ) -> Result<u64, Errno> {
        let known = MremapFlags::MAYMOVE | MremapFlags::FIXED | MremapFlags::DONTUNMAP;
        if !flags.difference(known).is_empty() {
            return Err(Errno::EINVAL);
        }
        let maymove = flags.contains(MremapFlags::MAYMOVE);
        // Linux 5.14: vma_to_resize() refuses hugetlb VMAs with EINVAL (later kernels
        // move 2 MiB-aligned ones; the model does not, docs/ARCHITECTURE.md 46).
        if VirtAddr::try_new(old_addr)
            .ok()
            .and_then(|a| self.mmap_read_lock().find(a).map(|v| v.is_hugetlb()))
            == Some(true)
        {
            return Err(Errno::EINVAL);
        }
        if flags.contains(MremapFlags::FIXED) && !maymove {
            return Err(Errno::EINVAL);
        }
        if flags.contains(MremapFlags::DONTUNMAP) {
            // Linux: DONTUNMAP needs MAYMOVE and the same size; past that, the model
            // does not implement it.
            return Err(Errno::EINVAL);
        }
        if !old_addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let old_len = page_align_wrapping(old_len);
        let new_len = page_align_wrapping(new_len);
        if new_len == 0 {
            return Err(Errno::EINVAL);
        }
        let mut tree = self.mmap_write_lock();
        let Ok(addr) = VirtAddr::try_new(old_addr) else {
            return Err(Errno::EFAULT);
        };
        if tree.find(addr).is_none() {
            return Err(Errno::EFAULT);
        }
        if flags.contains(MremapFlags::FIXED) {
            return self.mremap_to(&mut tree, addr, old_len, new_addr, new_len);
        }
        if old_len >= new_len {
            if old_len == new_len {
                return Ok(old_addr);
            }
            // Linux: do_vmi_munmap() of the tail, with its range checks.
            let tail = old_addr + new_len;
            if old_len - new_len > TASK_SIZE.saturating_sub(tail) {
                return Err(Errno::EINVAL);
            }
            self.do_munmap(
                &mut tree,
                VirtAddr::new_truncate(tail),
                VirtAddr::new_truncate(old_addr + old_len),
            );
            return Ok(old_addr);
        }
        let vma = vma_to_resize(&tree, addr, old_len, new_len)?;
        let delta = new_len - old_len;
        if old_addr + old_len == vma.end().raw() && vma_expandable(&tree, &vma, delta) {
            // Linux: vma_merge_extend(): the VMA grows by `delta`.
            let grown = vma.copy_to(vma.end(), vma.end(), delta);
            tree.insert(grown);
            tree.merge_around(vma.start(), VirtAddr::new_truncate(vma.end().raw() + delta));
            return Ok(old_addr);
        }
        if !maymove {
            return Err(Errno::ENOMEM);
        }
        let to = self.get_unmapped_area_for(&tree, 0, new_len)?;
        self.move_vma(&mut tree, &vma, addr, old_len, to, new_len)
    }

    /// The FIXED half of [`mremap`](Self::mremap).
    ///
    /// Linux: `mremap_to()`.
    fn mremap_to(
        &self,
        tree: &mut MmapWriteGuard<'_, VmaTree>,
        addr: VirtAddr,
        mut old_len: u64,
        new_addr: u64,
        new_len: u64,
    ) -> Result<u64, Errno> {
        if !new_addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        if new_len > TASK_SIZE || new_addr > TASK_SIZE - new_len {
            return Err(Errno::EINVAL);
        }
        // Linux: the old and new ranges may not overlap.
        if addr.raw().saturating_add(old_len) > new_addr && new_addr + new_len > addr.raw() {
            return Err(Errno::EINVAL);
        }
        let (to, to_end) = (
            VirtAddr::new_truncate(new_addr),
            VirtAddr::new_truncate(new_addr + new_len),
        );
        // Linux: do_munmap() of the target first.
        self.do_munmap(tree, to, to_end);
        if old_len > new_len {
            let tail = addr.raw() + new_len;
            if old_len - new_len > TASK_SIZE.saturating_sub(tail) {
                return Err(Errno::EINVAL);
            }
            self.do_munmap(
                tree,
                VirtAddr::new_truncate(tail),
                VirtAddr::new_truncate(addr.raw() + old_len),
            );
            old_len = new_len;
        }
        let vma = vma_to_resize(tree, addr, old_len, new_len)?;
        // Linux: get_unmapped_area(MAP_FIXED) → security_mmap_addr().
        if new_addr < MMAP_MIN_ADDR {
            return Err(Errno::EPERM);
        }
        self.move_vma(tree, &vma, addr, old_len, to, new_len)
    }

    /// A free range of `len` bytes for a moving mremap.
    ///
    /// Linux: `get_unmapped_area()` (no hint).
    fn get_unmapped_area_for(
        &self,
        tree: &VmaTree,
        hint: u64,
        len: u64,
    ) -> Result<VirtAddr, Errno> {
        if len > TASK_SIZE {
            return Err(Errno::ENOMEM);
        }
        if hint != 0 && hint <= TASK_SIZE - len {
            let (s, e) = (
                VirtAddr::new_truncate(hint),
                VirtAddr::new_truncate(hint + len),
            );
            if tree.is_free(s, e) {
                return Ok(s);
            }
        }
        tree.gap_top_down(len, MMAP_MIN_ADDR, super::mmap::MMAP_BASE)
            .ok_or(Errno::ENOMEM)
    }
}

/// The VMA holding `[addr, addr + old_len)`, checked for a resize to `new_len`:
/// `old_len == 0` → `EINVAL` (see the module notes), the range past the VMA's end →
/// `EFAULT`, a page offset that would overflow → `EINVAL`.
///
/// Linux: `vma_to_resize()`.
fn vma_to_resize(tree: &VmaTree, addr: VirtAddr, old_len: u64, new_len: u64) -> Result<Vma, Errno> {
    let vma = tree.find(addr).cloned().ok_or(Errno::EFAULT)?;
    if old_len == 0 {
        return Err(Errno::EINVAL);
    }
    if old_len > vma.end().raw() - addr.raw() {
        return Err(Errno::EFAULT);
    }
    if new_len == old_len {
        return Ok(vma);
    }
    if vma
        .linear_page_index(addr)
        .checked_add(new_len / PAGE_SIZE)
        .is_none()
    {
        return Err(Errno::EINVAL);
    }
    Ok(vma)
}

/// Whether `vma` can grow by `delta` bytes in place: the range after it is free and
/// inside user space.
///
/// Linux: `vma_expandable()`.
fn vma_expandable(tree: &VmaTree, vma: &Vma, delta: u64) -> bool {
    let Some(end) = vma.end().raw().checked_add(delta) else {
        return false;
    };
    if end > TASK_SIZE {
        return false;
    }
    tree.is_free(vma.end(), VirtAddr::new_truncate(end))
}

impl Mm {
    /// Moves `[old, old + old_len)` of `vma` to a new VMA at `[to, to + new_len)`:
    /// the copy is inserted, the page tables move, the old range is unmapped and the
    /// new VMA merged with its neighbours. If the tables cannot all move (no memory
    /// for a page table) what moved goes back, the copy is removed and `ENOMEM`
    /// returned.
    ///
    /// Linux: `move_vma()`.
    fn move_vma(
        &self,
        tree: &mut MmapWriteGuard<'_, VmaTree>,
        vma: &Vma,
        old: VirtAddr,
        old_len: u64,
        to: VirtAddr,
        new_len: u64,
    ) -> Result<u64, Errno> {
        // Linux: "Advise KSM to break any KSM pages in the area to be moved" (their
        // rmap items name the old addresses); the VMA stays mergeable.
        if vma.flags.contains(super::VmFlags::MERGEABLE) {
            self.break_ksm(tree, old, VirtAddr::new_truncate(old.raw() + old_len));
        }
        let new_vma = vma.copy_to(old, to, new_len);
        let to_end = new_vma.end();
        tree.insert(new_vma.clone());
        let moved = self.move_page_tables(vma, old, &new_vma, to, old_len);
        if moved < old_len {
            // Linux: move back what moved, then unmap the new VMA.
            self.move_page_tables(&new_vma, to, vma, old, moved);
            self.do_munmap(tree, to, to_end);
            return Err(Errno::ENOMEM);
        }
        self.do_munmap(tree, old, VirtAddr::new_truncate(old.raw() + old_len));
        tree.merge_around(to, to_end);
        Ok(to.raw())
    }

    /// Moves the entries of `[old, old + len)` (in `vma`) to `[new, new + len)` (in
    /// `new_vma`), under one `Unmap` range over the old range; returns how many bytes
    /// moved (less than `len` only when a page table could not be allocated). A huge
    /// PMD moves whole when both addresses are PMD-aligned and all of it moves, else
    /// it is split first.
    ///
    /// Linux: `move_page_tables()`.
    pub(crate) fn move_page_tables(
        &self,
        vma: &Vma,
        old: VirtAddr,
        new_vma: &Vma,
        new: VirtAddr,
        len: u64,
    ) -> u64 {
        if len == 0 {
            return 0;
        }
        let old_end = old.raw() + len;
        // Linux: mmu_notifier_range_init(&range, MMU_NOTIFY_UNMAP, 0, mm, old_addr,
        // old_end).
        let range = MmuNotifierRange::new(self, MmuNotifierEvent::Unmap, old.raw(), old_end)
            .invalidate_range_start();
        let mut done = 0;
        while done < len {
            let (o, n) = (old.raw() + done, new.raw() + done);
            let extent = (PMD_SIZE - o % PMD_SIZE)
                .min(PMD_SIZE - n % PMD_SIZE)
                .min(len - done);
            let (ova, nva) = (VirtAddr::new_truncate(o), VirtAddr::new_truncate(n));
            match self.pmd_get_lockless(ova) {
                Pmd::None => {
                    done += extent;
                    continue;
                }
                Pmd::Huge(_) => {
                    if extent == PMD_SIZE {
                        match self.move_huge_pmd(vma, ova, nva) {
                            Ok(true) => {
                                done += extent;
                                continue;
                            }
                            Ok(false) => {}
                            Err(_) => break,
                        }
                    }
                    self.split_huge_pmd(vma, ova);
                }
                Pmd::Table(_) => {}
            }
            if matches!(self.pmd_get_lockless(ova), Pmd::None) {
                done += extent;
                continue;
            }
            if self.move_ptes(vma, ova, nva, new_vma, extent).is_err() {
                break;
            }
            done += extent;
        }
        range.end();
        done
    }

    /// Moves the PTEs of `[old, old + extent)` (one PTE table's worth at most) to
    /// `new`, with the anon_vma lock held for writing and both PTLs (old then new;
    /// one lock when both ranges lie in the same table). Each word moves verbatim with
    /// the soft-dirty bit set. `ENOMEM` if the new PTE table cannot be allocated.
    ///
    /// Lock order: anon_vma (write) → old PTL → new PTL (Linux:
    /// `spin_lock_nested(new_ptl, SINGLE_DEPTH_NESTING)`).
    ///
    /// Linux: `move_ptes()` (with `move_soft_dirty_pte()`).
    fn move_ptes(
        &self,
        vma: &Vma,
        old: VirtAddr,
        new: VirtAddr,
        new_vma: &Vma,
        extent: u64,
    ) -> Result<(), Errno> {
        let new_table = self.pte_alloc(new)?;
        let _rmap = vma
            .anon_vma()
            .or(new_vma.anon_vma())
            .map(|av| av.lock_write());
        let Some(mut old_ptl) = self.pte_offset_map_lock(old) else {
            return Ok(());
        };
        let mut new_ptl = if old_ptl.table() == new_table {
            None
        } else {
            let Some(g) = self.pte_offset_map_lock(new) else {
                return Err(Errno::ENOMEM);
            };
            Some(g)
        };
        for off in (0..extent).step_by(PAGE_SIZE as usize) {
            let (o, n) = (
                VirtAddr::new_truncate(old.raw() + off),
                VirtAddr::new_truncate(new.raw() + off),
            );
            let pte = match old_ptl.clear(o) {
                Pte::None => continue,
                Pte::Present(p) => Pte::Present(p.with(super::pgtable::PteFlags::SOFT_DIRTY)),
                Pte::Swap(mut s) => {
                    s.soft_dirty = true;
                    Pte::Swap(s)
                }
            };
            match new_ptl.as_mut() {
                Some(g) => g.set(n, pte),
                None => old_ptl.set(n, pte),
            }
        }
        Ok(())
    }

    /// Moves the huge PMD at `old` to `new` (both PMD-aligned) with its deposited page
    /// table, under `page_table_lock`, setting the soft-dirty bit. `Ok(false)` when
    /// the target PMD is not empty or the source is no longer huge (the caller
    /// splits); `ENOMEM` if the target's upper tables cannot be allocated.
    ///
    /// Lock order: anon_vma (write) → `page_table_lock`.
    ///
    /// Linux: `move_huge_pmd()`.
    fn move_huge_pmd(&self, vma: &Vma, old: VirtAddr, new: VirtAddr) -> Result<bool, Errno> {
        let new_slot = self.pmd_alloc(new)?;
        let _rmap = vma.anon_vma().map(|av| av.lock_write());
        let mut deposits = self.page_table_lock();
        let Some(old_slot) = self.pmd_slot(old) else {
            return Ok(false);
        };
        let Pmd::Huge(huge) = Pmd::decode(self.mem.pt_read(old_slot.table, old_slot.idx)) else {
            return Ok(false);
        };
        if Pmd::decode(self.mem.pt_read(new_slot.table, new_slot.idx)) != Pmd::None {
            return Ok(false);
        }
        self.set_pmd(old_slot, old, Pmd::None);
        let moved = huge.with(super::pgtable::PteFlags::SOFT_DIRTY);
        self.set_pmd(new_slot, new, Pmd::Huge(moved));
        if let Some(t) = deposits.remove(&old.raw()) {
            deposits.insert(new.raw(), t);
        }
        Ok(true)
    }
}
