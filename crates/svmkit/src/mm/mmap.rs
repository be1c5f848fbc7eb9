//! Creating and destroying mappings (Linux: `mm/mmap.c`, `mm/vma.c`): `mmap`,
//! `munmap`, and the teardown at the last `mmput` (`exit_mmap`).
//!
//! Validation follows Linux's, errno for errno, so a scenario that passes bad
//! arguments gets what the kernel would return.

use bitflags::bitflags;

use super::mm_types::{Mm, MmUser};
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::pgtable::PMD_SIZE;
use super::shmem::Shmem;
use super::vma::{VmFlags, Vma, VmaTree};
use crate::error::Errno;
use crate::sync::MmapWriteGuard;
use crate::types::{PAGE_SIZE, TASK_SIZE, VirtAddr};

/// Lowest address a fixed mapping may use (Linux: `vm.mmap_min_addr`, 64 KiB).
#[doc(alias = "mmap_min_addr")]
pub const MMAP_MIN_ADDR: u64 = 0x10000;
/// Where the top-down search for free space starts (Linux: `mm->mmap_base`, without
/// randomisation).
#[doc(alias = "mmap_base")]
pub const MMAP_BASE: u64 = 0x7fff_0000_0000;

bitflags! {
    /// Memory protection (Linux: `PROT_*`, x86-64 values). The empty set is
    /// `PROT_NONE`. Bits outside these can be passed with
    /// [`Prot::from_bits_retain`]; `mmap` ignores them and `mprotect` rejects them, as
    /// Linux does.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Prot: u32 {
        /// PROT_READ.
        const READ = 0x1;
        /// PROT_WRITE.
        const WRITE = 0x2;
        /// PROT_EXEC.
        const EXEC = 0x4;
        /// PROT_SEM: accepted by `mprotect` and `mmap`, no effect on x86.
        const SEM = 0x8;
        /// PROT_GROWSDOWN: `mprotect` extends the change down to the start of a
        /// grows-down VMA (the model has none, so it fails as Linux does then).
        const GROWSDOWN = 0x0100_0000;
        /// PROT_GROWSUP: `mprotect` extends the change up to the end of a grows-up VMA
        /// (x86 has none).
        const GROWSUP = 0x0200_0000;
    }
}

/// `MAP_TYPE`: the bits of the mmap flags that say which kind of mapping it is.
const MAP_TYPE: u32 = 0x0f;

bitflags! {
    /// mmap flags (Linux: `MAP_*`, x86-64 values). Unknown bits
    /// ([`MapFlags::from_bits_retain`]) are ignored, except inside `MAP_TYPE` (`0x0f`),
    /// which must say exactly private or shared.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct MapFlags: u32 {
        /// MAP_SHARED.
        const SHARED = 0x01;
        /// MAP_PRIVATE.
        const PRIVATE = 0x02;
        /// MAP_FIXED: use exactly `addr`, replacing what is there.
        const FIXED = 0x10;
        /// MAP_ANONYMOUS: not backed by a file.
        const ANONYMOUS = 0x20;
        /// MAP_LOCKED: the mapping is `VM_LOCKED` and populated, as after `mlock()`.
        const LOCKED = 0x2000;
        /// MAP_POPULATE: fault the whole mapping in before returning.
        const POPULATE = 0x8000;
        /// MAP_FIXED_NOREPLACE: like MAP_FIXED but fail with EEXIST instead of replacing.
        const FIXED_NOREPLACE = 0x10_0000;
        /// MAP_HUGETLB: back the mapping with 2 MiB hugetlb folios (`mm/hugetlb.rs`);
        /// private only in the model.
        const HUGETLB = 0x4_0000;
    }
}

/// Rounds `len` up to whole pages; `None` on overflow.
///
/// Linux: `PAGE_ALIGN()`.
pub(crate) fn page_align(len: u64) -> Option<u64> {
    len.checked_add(PAGE_SIZE - 1).map(|l| l & !(PAGE_SIZE - 1))
}

/// VMA flags for a new mapping (Linux: `calc_vm_prot_bits()` + `calc_vm_flag_bits()` +
/// the `VM_MAY*` defaults of `do_mmap()`).
fn vm_flags_for(prot: Prot, shared: bool) -> VmFlags {
    let mut vm = VmFlags::MAYREAD | VmFlags::MAYWRITE | VmFlags::MAYEXEC | VmFlags::SOFTDIRTY;
    vm |= prot_to_vm(prot);
    if shared {
        vm |= VmFlags::SHARED | VmFlags::MAYSHARE;
    }
    vm
}

/// The access bits of `vm_flags` for `prot`; every other bit of `prot` is ignored
/// (Linux: `calc_vm_prot_bits()`).
pub(crate) fn prot_to_vm(prot: Prot) -> VmFlags {
    let mut vm = VmFlags::empty();
    if prot.contains(Prot::READ) {
        vm |= VmFlags::READ;
    }
    if prot.contains(Prot::WRITE) {
        vm |= VmFlags::WRITE;
    }
    if prot.contains(Prot::EXEC) {
        vm |= VmFlags::EXEC;
    }
    vm
}

impl MmUser {
    /// Maps `len` bytes of anonymous memory (private, or shared with `MAP_SHARED`) and
    /// returns the address.
    ///
    /// Checked in Linux's order:
    /// * no `MAP_ANONYMOUS` → `EBADF` (there are no files; Linux's
    ///   `ksys_mmap_pgoff()` looks the descriptor up before anything else);
    /// * `len == 0` → `EINVAL`; a length that overflows when rounded to pages → `ENOMEM`;
    /// * fixed: past the end of user space → `ENOMEM`; `addr` unaligned → `EINVAL`;
    ///   below [`MMAP_MIN_ADDR`] → `EPERM` (Linux: `__get_unmapped_area()`); over an
    ///   existing mapping `MAP_FIXED_NOREPLACE` → `EEXIST`, while `MAP_FIXED`
    ///   replaces it (once every check has passed). Otherwise `addr` is a hint, used
    ///   if the range there is free; else the highest free range below [`MMAP_BASE`]
    ///   is taken (`ENOMEM` if none);
    /// * the mapping type (`flags & MAP_TYPE`) is neither `MAP_PRIVATE` nor
    ///   `MAP_SHARED` → `EINVAL` (`MAP_SHARED_VALIDATE` included, as for anonymous
    ///   memory in Linux; `MAP_DROPPABLE` of Linux 6.11 is not modelled).
    ///
    /// `prot` bits other than read, write and exec are ignored, as Linux's
    /// `do_mmap()` ignores them (`calc_vm_prot_bits()` translates only those three;
    /// x86 does not validate `prot` in mmap). `MAP_SHARED` anonymous memory gets its
    /// own shmem object ([`Shmem`]), shared with fork children and never COWed.
    ///
    /// Linux: `mmap()` → `do_mmap()` → `mmap_region()`.
    pub fn mmap(
        &self,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
    ) -> Result<VirtAddr, Errno> {
        // Linux: ksys_mmap_pgoff() fails a bad descriptor before do_mmap() runs.
        if !flags.contains(MapFlags::ANONYMOUS) {
            return Err(Errno::EBADF);
        }
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let hugetlb = flags.contains(MapFlags::HUGETLB);
        // Linux: ksys_mmap_pgoff() rounds a MAP_HUGETLB length up to the huge page
        // size; the model has no shared hugetlb (docs/ARCHITECTURE.md 46).
        let align = if hugetlb { PMD_SIZE } else { PAGE_SIZE };
        if hugetlb && flags.bits() & MAP_TYPE == MapFlags::SHARED.bits() {
            return Err(Errno::EINVAL);
        }
        let len = match len.checked_next_multiple_of(align) {
            Some(l) if l != 0 && (hugetlb || page_align(len).is_some()) => l,
            _ => return Err(Errno::ENOMEM),
        };
        let fixed = flags.intersects(MapFlags::FIXED | MapFlags::FIXED_NOREPLACE);
        let mut tree = self.mmap_write_lock();
        let (start, replace) = if fixed {
            // Linux: __get_unmapped_area(): the range, the alignment, then
            // security_mmap_addr()'s mmap_min_addr check.
            if len > TASK_SIZE || addr > TASK_SIZE - len {
                return Err(Errno::ENOMEM);
            }
            // Linux: hugetlb_get_unmapped_area() → prepare_hugepage_range() wants a
            // 2 MiB-aligned fixed address.
            if !addr.is_multiple_of(align) {
                return Err(Errno::EINVAL);
            }
            if addr < MMAP_MIN_ADDR {
                return Err(Errno::EPERM);
            }
            let (s, e) = (
                VirtAddr::new_truncate(addr),
                VirtAddr::new_truncate(addr + len),
            );
            let busy = !tree.is_free(s, e);
            if busy && flags.contains(MapFlags::FIXED_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if busy {
                super::hugetlb::check_hugetlb_split(&tree, s, e)?;
            }
            (s, busy)
        } else {
            (self.get_unmapped_area(&tree, addr, len, align)?, false)
        };
        // Linux: do_mmap()'s `switch (flags & MAP_TYPE)` for anonymous memory, after
        // the address was chosen; unknown bits outside MAP_TYPE are ignored.
        let shared = match flags.bits() & MAP_TYPE {
            t if t == MapFlags::SHARED.bits() => true,
            t if t == MapFlags::PRIVATE.bits() => false,
            _ => return Err(Errno::EINVAL),
        };
        let end = VirtAddr::new_truncate(start.raw() + len);
        if replace {
            // Linux: mmap_region() unmaps what MAP_FIXED replaces.
            self.do_munmap(&mut tree, start, end);
        }
        // Linux: do_mmap(): `vm_flags |= mm->def_flags` (mlockall's MCL_FUTURE) and
        // MAP_LOCKED's VM_LOCKED.
        let mut vm_flags = vm_flags_for(prot, shared) | self.def_flags();
        if flags.contains(MapFlags::LOCKED) {
            vm_flags |= VmFlags::LOCKED;
        }
        if hugetlb {
            // Linux: mmap_region() clears VM_LOCKED_MASK on hugetlb VMAs (they are not
            // counted as locked); the populate below still runs.
            let populate = vm_flags & (VmFlags::LOCKED | VmFlags::LOCKONFAULT) == VmFlags::LOCKED;
            vm_flags = (vm_flags - super::vma::VM_LOCKED_MASK) | VmFlags::HUGETLB;
            let vma = Vma::new(start, end, vm_flags);
            tree.insert(vma);
            drop(tree);
            if populate || flags.contains(MapFlags::POPULATE) {
                let _ = self.mm_populate(start.raw(), len, true);
            }
            return Ok(start);
        }
        let vma = if shared {
            // Linux: shmem_zero_setup() gives the mapping its own shmem object.
            Vma::new_shared(start, end, vm_flags, Shmem::new(&self.mem, len / PAGE_SIZE))
        } else {
            Vma::new(start, end, vm_flags)
        };
        tree.insert(vma);
        tree.merge_around(start, end);
        drop(tree);
        // Linux: do_mmap() asks for a populate of a VM_LOCKED (not on-fault) or
        // MAP_POPULATE mapping, which vm_mmap_pgoff() runs after the mmap lock is
        // dropped, ignoring its errors.
        let locked = vm_flags & (VmFlags::LOCKED | VmFlags::LOCKONFAULT) == VmFlags::LOCKED;
        if locked || flags.contains(MapFlags::POPULATE) {
            let _ = self.mm_populate(start.raw(), len, true);
        }
        Ok(start)
    }

    /// Unmaps `[addr, addr + len)`: splits the VMAs at the edges, zaps the pages and
    /// frees the page tables nothing maps any more. Unmapping unmapped space succeeds.
    ///
    /// `EINVAL` for an unaligned `addr`, a zero `len`, or a range leaving user space.
    ///
    /// Linux: `munmap()` → `do_vmi_munmap()`.
    pub fn munmap(&self, addr: u64, len: u64) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) || addr > TASK_SIZE || len > TASK_SIZE - addr {
            return Err(Errno::EINVAL);
        }
        let len = match page_align(len) {
            Some(l) if l != 0 => l,
            _ => return Err(Errno::EINVAL),
        };
        let (start, end) = (
            VirtAddr::new_truncate(addr),
            VirtAddr::new_truncate((addr + len).min(TASK_SIZE)),
        );
        let mut tree = self.mmap_write_lock();
        // Linux: the split at either end fails for a hugetlb VMA cut off 2 MiB
        // (hugetlb_vm_op_split()), and so does the munmap.
        super::hugetlb::check_hugetlb_split(&tree, start, end)?;
        self.do_munmap(&mut tree, start, end);
        Ok(())
    }

    /// A free range of `len` bytes: the hint if it is page-aligned, high enough and
    /// free, else top-down below [`MMAP_BASE`].
    ///
    /// Linux: `get_unmapped_area()` → `arch_get_unmapped_area_topdown()`.
    fn get_unmapped_area(
        &self,
        tree: &VmaTree,
        hint: u64,
        len: u64,
        align: u64,
    ) -> Result<VirtAddr, Errno> {
        if len > TASK_SIZE {
            return Err(Errno::ENOMEM);
        }
        if hint != 0
            && let Some(h) = hint
                .checked_next_multiple_of(align)
                .map(|h| h.max(MMAP_MIN_ADDR).next_multiple_of(align))
            && h <= TASK_SIZE - len
            && tree.is_free(VirtAddr::new_truncate(h), VirtAddr::new_truncate(h + len))
        {
            return Ok(VirtAddr::new_truncate(h));
        }
        if align == PAGE_SIZE {
            return tree
                .gap_top_down(len, MMAP_MIN_ADDR, MMAP_BASE)
                .ok_or(Errno::ENOMEM);
        }
        // Linux: hugetlb_get_unmapped_area() asks the top-down search for an aligned
        // start; the model finds a gap with room to align in and takes its highest
        // aligned start.
        let room = len.checked_add(align - PAGE_SIZE).ok_or(Errno::ENOMEM)?;
        let gap = tree
            .gap_top_down(room, MMAP_MIN_ADDR, MMAP_BASE)
            .ok_or(Errno::ENOMEM)?;
        let top = (gap.raw() + room - len) & !(align - 1);
        Ok(VirtAddr::new_truncate(
            top.max(gap.raw().next_multiple_of(align)),
        ))
    }
}

impl Mm {
    /// Removes the VMAs in `[start, end)`, zaps their pages and frees the page tables
    /// that no remaining VMA needs.
    ///
    /// Linux: `do_vmi_align_munmap()` → `unmap_region()` (`unmap_vmas()` +
    /// `free_pgtables()`).
    pub(crate) fn do_munmap(
        &self,
        tree: &mut MmapWriteGuard<'_, VmaTree>,
        start: VirtAddr,
        end: VirtAddr,
    ) {
        if !tree.is_free(start, end) {
            self.vma_adjust_trans_huge(start, end);
        }
        let removed = tree.remove_range(start, end);
        let (Some(first), Some(last)) = (removed.first(), removed.last()) else {
            return;
        };
        // Linux: unmap_vmas() brackets the whole request, holes included, with one
        // Unmap range.
        let range = MmuNotifierRange::new(self, MmuNotifierEvent::Unmap, start.raw(), end.raw())
            .invalidate_range_start();
        for vma in &removed {
            self.unmap_page_range(vma.start(), vma.end(), vma.flags);
        }
        range.end();
        tree.unlink_anon_vmas(&removed);
        self.free_pgtables(tree, first.start(), last.end());
    }

    /// Tears the address space down after its last user is gone: every mapping is
    /// zapped and every page table but the top level freed (that one goes with the
    /// struct, at `mmdrop`).
    ///
    /// Linux: `exit_mmap()`.
    pub(crate) fn exit_mmap(&self) {
        let _span = self
            .mem
            .tracer()
            .span(|| crate::trace::Payload::Exit { mm: self.id() });
        // Listeners drop their mirrors before the teardown (and classic ones are gone
        // after this); interval notifiers still registered see the Unmap below.
        self.mmu_notifier_release();
        let mut tree = self.mmap_write_lock();
        let all = tree.remove_range(VirtAddr::ZERO, VirtAddr::new_truncate(TASK_SIZE));
        if !all.is_empty() {
            // Linux: unmap_vmas(..., 0, ULONG_MAX, ...).
            let range = MmuNotifierRange::new(self, MmuNotifierEvent::Unmap, 0, u64::MAX)
                .invalidate_range_start();
            for vma in &all {
                self.unmap_page_range(vma.start(), vma.end(), vma.flags);
            }
            range.end();
        }
        tree.unlink_anon_vmas(&all);
        self.free_pgtables(&tree, VirtAddr::ZERO, VirtAddr::new_truncate(TASK_SIZE));
    }
}

impl Mm {
    /// Gives `child` (a new, empty mm) a copy of every VMA of this one and of their
    /// page tables as fork does: private memory shared copy-on-write, shared memory
    /// shared. On failure (out of memory) the error is returned and the caller drops
    /// the child, which tears down whatever was copied; this mm stays consistent
    /// (pages write-protected so far stay so, as in Linux).
    ///
    /// Lock order: this mm's mmap lock, then the child's (Linux:
    /// `mmap_write_lock_nested()`).
    ///
    /// Linux: `dup_mmap()`.
    pub(crate) fn dup_mmap(&self, child: &Mm) -> Result<(), Errno> {
        self.mem.tracer().traced(
            || crate::trace::Payload::Fork {
                parent: self.id(),
                child: child.id(),
            },
            || self.dup_mmap_body(child),
            crate::trace::result_text,
        )
    }

    /// [`dup_mmap`](Self::dup_mmap) without its trace operation.
    fn dup_mmap_body(&self, child: &Mm) -> Result<(), Errno> {
        let tree = self.mmap_write_lock();
        let mut ctree = child.mmap_write_lock();
        for vma in tree.iter() {
            // The copy shares the anon_vma (anon_vma_fork()) and the shmem object;
            // mlock is not inherited (dup_mmap(): vm_flags_clear(VM_LOCKED_MASK)).
            let mut copy = vma.clone();
            copy.flags -= super::vma::VM_LOCKED_MASK;
            ctree.insert(copy.clone());
            self.copy_page_range(child, &copy, vma)?;
        }
        Ok(())
    }
}

impl Drop for Mm {
    /// Linux: `__mmdrop()` → `mm_free_pgd()`.
    fn drop(&mut self) {
        self.pgd_free();
    }
}
