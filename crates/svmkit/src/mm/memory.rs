//! Page faults and zapping (Linux: `mm/memory.c`).
//!
//! ```text
//! handle_mm_fault(addr, flags)            mmap lock held for read
//!   pte_alloc                             populate PUD/PMD/PTE tables as needed
//!   handle_pte_fault
//!     none         -> do_anonymous_page   read: zero page, read-only
//!                                         write: new zeroed anon page, writable
//!     swap-type    -> do_swap_page        one place for every non-present entry kind
//!     present, write to read-only
//!                  -> do_wp_page          reuse if anon-exclusive (or only user),
//!                                         copy otherwise
//!     present, otherwise               -> spurious: mark young (and dirty)
//! ```
//!
//! Every PTE change happens under the PTE table's PTL, re-checking the entry first
//! (`pte_same`), because the mmap lock in read mode does not stop MADV_DONTNEED or
//! another fault on the same page.

use bitflags::bitflags;
use thiserror::Error;

use super::folio::Folio;
use super::huge_memory::haddr_of;
use super::mm_types::Mm;
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::page::PageFlags;
use super::page_alloc::Gfp;
use super::pagewalk::{PmdSlot, PtlGuard};
use super::pgtable::{PMD_SIZE, Pmd, PresentPte, Pte, PteFlags, SwapPte};
use super::rmap::AnonVma;
use super::vma::{VmFlags, Vma, VmaTree};
use crate::error::Errno;
use crate::profile::RestoreWritability;
use crate::sync::{Arc, MmapReadGuard};
use crate::types::{PAGE_SIZE, Pfn, VirtAddr};
use std::sync::atomic::Ordering;

bitflags! {
    /// Why and how a fault is handled (Linux: `FAULT_FLAG_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct FaultFlags: u32 {
        /// FAULT_FLAG_WRITE: the access was a write.
        const WRITE = 1 << 0;
        /// FAULT_FLAG_ALLOW_RETRY: the handler may drop the mmap lock and ask for a retry.
        const ALLOW_RETRY = 1 << 2;
        /// FAULT_FLAG_KILLABLE: sleeps may be ended by a fatal signal.
        const KILLABLE = 1 << 4;
        /// FAULT_FLAG_TRIED: this is the second attempt.
        const TRIED = 1 << 5;
        /// FAULT_FLAG_USER: the fault comes from user space.
        const USER = 1 << 6;
        /// FAULT_FLAG_REMOTE: the fault comes from GUP on another mm.
        const REMOTE = 1 << 7;
        /// FAULT_FLAG_UNSHARE: make a shared anon page exclusive without making it
        /// writable (what a read-only FOLL_PIN needs).
        const UNSHARE = 1 << 10;
    }
}

/// A handled fault (Linux: a `vm_fault_t` without error bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmFault {
    /// Handled (or found already handled): repeat the access.
    Done,
    /// The mmap lock was dropped and re-taken; repeat the fault with `TRIED`.
    ///
    /// Linux: `VM_FAULT_RETRY`.
    Retry,
}

/// A fault that cannot be handled (Linux: the error bits of `vm_fault_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VmFaultError {
    /// Linux: `VM_FAULT_OOM`.
    #[error("out of memory while handling the fault")]
    Oom,
    /// Linux: `VM_FAULT_SIGBUS` (e.g. a PTE holding an entry nothing understands).
    #[error("bus error: the entry cannot be faulted in")]
    Sigbus,
}

impl From<Errno> for VmFaultError {
    fn from(e: Errno) -> Self {
        match e {
            Errno::ENOMEM => VmFaultError::Oom,
            _ => VmFaultError::Sigbus,
        }
    }
}

impl Mm {
    /// Handles a fault at `addr` in `vma` (which the caller looked up under `guard` and
    /// checked against the access). The mmap lock stays held for read; a handler that
    /// must sleep drops and re-takes it and returns [`VmFault::Retry`].
    ///
    /// Linux: `handle_mm_fault()`.
    pub fn handle_mm_fault(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        vma: &Vma,
        addr: VirtAddr,
        flags: FaultFlags,
    ) -> Result<VmFault, VmFaultError> {
        self.mem.tracer().traced(
            || crate::trace::Payload::PageFault {
                mm: self.id(),
                addr: addr.page_align_down().raw(),
                write: flags.contains(FaultFlags::WRITE),
                tried: flags.contains(FaultFlags::TRIED),
            },
            || self.handle_mm_fault_body(guard, vma, addr, flags),
            |r| match r {
                Ok(VmFault::Done) => "done".into(),
                Ok(VmFault::Retry) => "retry".into(),
                Err(VmFaultError::Oom) => "OOM".into(),
                Err(VmFaultError::Sigbus) => "SIGBUS".into(),
            },
        )
    }

    /// [`handle_mm_fault`](Self::handle_mm_fault) without its trace operation.
    // Inlined into both of the traced wrapper's paths: with one caller it inlines
    // into the untraced path as it did before tracing (docs/TRACES.md, "Cost").
    #[inline(always)]
    fn handle_mm_fault_body(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        vma: &Vma,
        addr: VirtAddr,
        flags: FaultFlags,
    ) -> Result<VmFault, VmFaultError> {
        // The guard is the capability: holding it proves the mmap lock is held.
        let _ = &guard;
        self.stats().faults.fetch_add(1, Ordering::Relaxed);
        let addr = addr.page_align_down();
        // Linux: handle_mm_fault() hands hugetlb VMAs to hugetlb_fault().
        if vma.is_hugetlb() {
            return self.hugetlb_fault(guard, vma, addr, flags);
        }
        // Both anonymous write paths (first touch, COW copy) put a new folio under the
        // VMA's anon_vma; make sure it has one (Linux: vmf_anon_prepare()).
        let anon =
            if flags.intersects(FaultFlags::WRITE | FaultFlags::UNSHARE) && vma.shmem().is_none() {
                Some(self.anon_vma_prepare(guard, addr)?)
            } else {
                None
            };
        let write = flags.contains(FaultFlags::WRITE);
        // One walk for the whole fault, as __handle_mm_fault() allocates the upper
        // levels and keeps the PMD pointer.
        let slot = self.pmd_alloc(addr).map_err(VmFaultError::from)?;
        match self.pmd_read(slot) {
            Pmd::None if write && vma.thp_suitable(self.mem.thp_mode(), haddr_of(addr)) => {
                if let Some(anon) = &anon
                    && let Some(done) = self.do_huge_pmd_anonymous_page(vma, addr, anon)?
                {
                    return Ok(done);
                }
            }
            Pmd::Huge(h) => {
                let unshare = flags.contains(FaultFlags::UNSHARE);
                if (write || unshare) && !h.is_write() {
                    if let Some(done) = self.do_huge_pmd_wp_page(vma, addr, !write)? {
                        return Ok(done);
                    }
                    // Split: the PTE-level write fault below copies one page.
                } else {
                    self.huge_pmd_set_accessed(addr, write);
                    return Ok(VmFault::Done);
                }
            }
            _ => {}
        }
        let table = match self.pte_alloc_at(slot, addr) {
            Ok(t) => t,
            // A huge PMD appeared meanwhile: let the access retry.
            Err(Errno::EEXIST) => return Ok(VmFault::Done),
            Err(e) => return Err(e.into()),
        };
        match self.pte_read(table, addr) {
            Pte::None if vma.shmem().is_some() => self.do_shared_fault(vma, slot, addr, flags),
            Pte::None => self.do_anonymous_page(vma, slot, addr, flags, anon.as_ref()),
            Pte::Swap(_) => self.do_swap_page(guard, vma, addr, flags),
            Pte::Present(_) => self.handle_present_pte(vma, addr, flags, anon.as_ref()),
        }
    }

    /// The anon_vma of the VMA at `addr`, allocated and linked on first use.
    ///
    /// Linux: `__anon_vma_prepare()`: allocate, then under the anon_vma's write lock
    /// and `mm->page_table_lock` set `vma->anon_vma` unless a racing fault did.
    pub(crate) fn anon_vma_prepare(
        &self,
        tree: &VmaTree,
        addr: VirtAddr,
    ) -> Result<Arc<AnonVma>, VmFaultError> {
        let Some(vma) = tree.find(addr) else {
            return Err(VmFaultError::Sigbus);
        };
        if let Some(av) = vma.anon_vma() {
            return Ok(Arc::clone(av));
        }
        let new = AnonVma::new(&self.mem);
        let set = {
            // Lock order as Linux: anon_vma lock, then page_table_lock. The new
            // anon_vma is not visible yet, so its lock is implied; the tree links the
            // VMA under the write lock below.
            let _ptl = self.page_table_lock();
            vma.anon_vma_get_or_set(&new)
        };
        if Arc::ptr_eq(&set, &new) {
            tree.link_anon_vma(vma);
        }
        Ok(set)
    }

    /// A first touch in a shared anonymous VMA: map the shmem object's folio at this
    /// offset (allocated zeroed on first use), writable if the VMA is.
    ///
    /// Linux: `do_fault()` → `do_read_fault()`/`do_shared_fault()` → `shmem_fault()`,
    /// `finish_fault()`.
    fn do_shared_fault(
        &self,
        vma: &Vma,
        slot: PmdSlot,
        addr: VirtAddr,
        flags: FaultFlags,
    ) -> Result<VmFault, VmFaultError> {
        let Some(shmem) = vma.shmem() else {
            return Err(VmFaultError::Sigbus);
        };
        let folio = shmem.get_folio(vma.linear_page_index(addr))?;
        let Some(mut ptl) = self.lock_none_pte_or_put(slot, addr, folio) else {
            return Ok(VmFault::Done);
        };
        let mut pte = PresentPte::new(folio.head(), vma.page_prot() | PteFlags::ACCESSED);
        if flags.contains(FaultFlags::WRITE) {
            pte = pte.mkdirty();
        }
        self.mem.folio_add_file_rmap_pte(folio.head());
        self.add_rss_shmem(1);
        ptl.set(addr, Pte::Present(pte));
        Ok(VmFault::Done)
    }

    /// A fault on a present PTE: a write to a read-only one (COW or reuse) or a
    /// spurious fault (already fixed by someone else; just mark young/dirty).
    ///
    /// Linux: the `pte_present()` half of `handle_pte_fault()`.
    fn handle_present_pte(
        &self,
        vma: &Vma,
        addr: VirtAddr,
        flags: FaultFlags,
        anon: Option<&Arc<AnonVma>>,
    ) -> Result<VmFault, VmFaultError> {
        let Some(mut ptl) = self.pte_offset_map_lock(addr) else {
            return Ok(VmFault::Done);
        };
        let Pte::Present(pte) = ptl.get(addr) else {
            return Ok(VmFault::Done);
        };
        // Linux: handle_pte_fault(): `if (pte_protnone() && vma_is_accessible(vma))
        // return do_numa_page()`.
        if pte.is_protnone() && vma.is_accessible() {
            self.do_numa_page(vma, addr, ptl, pte);
            return Ok(VmFault::Done);
        }
        if flags.contains(FaultFlags::WRITE) && !pte.is_write() {
            return self.do_wp_page(vma, addr, ptl, pte, anon, false);
        }
        if flags.contains(FaultFlags::UNSHARE) && self.must_unshare(pte) {
            return self.do_wp_page(vma, addr, ptl, pte, anon, true);
        }
        let mut young = pte.with(PteFlags::ACCESSED);
        if flags.contains(FaultFlags::WRITE) {
            young = young.mkdirty();
        }
        ptl.set(addr, Pte::Present(young));
        Ok(VmFault::Done)
    }

    /// A NUMA hinting fault: the protnone PTE a NUMA scan left gets the VMA's
    /// protection back, young, and writable where mprotect's upgrade would make it
    /// so (a private writable VMA and `can_change_pte_writable()`). The model has one
    /// node: nothing migrates. A write to a page that stays read-only faults again
    /// (COW or reuse).
    ///
    /// Linux: `do_numa_page()` (`numa_migrate_check()` finding no better node).
    fn do_numa_page(&self, vma: &Vma, addr: VirtAddr, mut ptl: PtlGuard<'_>, old: PresentPte) {
        self.stats()
            .numa_hint_faults
            .fetch_add(1, Ordering::Relaxed);
        // Linux: pte_modify(old_pte, vma->vm_page_prot) keeps the pfn and status bits.
        let keep = old.flags
            & (PteFlags::DIRTY | PteFlags::SPECIAL | PteFlags::SOFT_DIRTY | PteFlags::UFFD_WP);
        let mut pte = PresentPte::new(old.pfn, keep | vma.page_prot() | PteFlags::ACCESSED);
        if !pte.is_write()
            && vma.flags.contains(VmFlags::WRITE)
            && !vma.flags.contains(VmFlags::SHARED)
            && self.can_change_pte_writable(vma, pte)
        {
            pte = pte.with(PteFlags::WRITE);
        }
        ptl.set(addr, Pte::Present(pte));
    }

    /// First touch of an anonymous page: a read maps the shared zero page read-only; a
    /// write maps a new zeroed, anon-exclusive page writable and dirty.
    ///
    /// Linux: `do_anonymous_page()`.
    fn do_anonymous_page(
        &self,
        vma: &Vma,
        slot: PmdSlot,
        addr: VirtAddr,
        flags: FaultFlags,
        anon: Option<&Arc<AnonVma>>,
    ) -> Result<VmFault, VmFaultError> {
        if !flags.contains(FaultFlags::WRITE) {
            let Some(mut ptl) = self.pte_offset_map_lock_slot(slot) else {
                return Ok(VmFault::Done);
            };
            if ptl.get(addr).is_none() {
                let zero =
                    PresentPte::new(self.mem.zero_pfn(), vma.page_prot() | PteFlags::SPECIAL);
                ptl.set(addr, Pte::Present(zero));
            }
            return Ok(VmFault::Done);
        }
        let Some(anon) = anon else {
            return Err(VmFaultError::Sigbus);
        };
        let folio = self
            .mem
            .folio_alloc(0, Gfp::ZERO)
            .map_err(|_| VmFaultError::Oom)?;
        let Some(mut ptl) = self.lock_none_pte_or_put(slot, addr, folio) else {
            return Ok(VmFault::Done);
        };
        self.mem
            .folio_add_new_anon_rmap(folio, anon, vma.linear_page_index(addr));
        // Linux: folio_add_lru_vma() → mlock_new_folio() in a VM_LOCKED VMA.
        self.mem.mlock_vma_folio(folio, vma.flags);
        self.add_rss_anon(1);
        ptl.set(addr, Pte::Present(new_anon_pte(vma, folio)));
        Ok(VmFault::Done)
    }

    /// Locks the PTE at `addr` for installing `folio` there, or, if the table is gone
    /// or someone populated the PTE first, drops our reference to `folio` and returns
    /// `None` (the access then retries and finds their work).
    fn lock_none_pte_or_put(
        &self,
        slot: PmdSlot,
        addr: VirtAddr,
        folio: Folio,
    ) -> Option<PtlGuard<'_>> {
        let ptl = self.pte_offset_map_lock_slot(slot);
        if let Some(ptl) = ptl
            && ptl.get(addr).is_none()
        {
            return Some(ptl);
        }
        // The PTL (if any) is released above; put the folio outside it.
        self.mem.folio_put(folio);
        None
    }

    /// A non-present, non-none PTE. Later layers add the device-exclusive, migration
    /// and swap cases here; an entry no layer understands is a bus error.
    ///
    /// Linux: `do_swap_page()`.
    pub(crate) fn do_swap_page(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        vma: &Vma,
        addr: VirtAddr,
        flags: FaultFlags,
    ) -> Result<VmFault, VmFaultError> {
        match self.pte_get_lockless(addr) {
            Pte::Swap(entry) if entry.is_device_exclusive() => {
                self.remove_device_exclusive_entry(guard, vma, addr, flags, entry)
            }
            Pte::Swap(entry) if entry.is_migration() => {
                self.migration_entry_wait(entry);
                Ok(VmFault::Done)
            }
            Pte::Swap(entry) if entry.is_swap() => {
                let anon = self.anon_vma_prepare(guard, addr).ok();
                Ok(self.do_swap_page_swapin(guard, vma, addr, flags, entry, anon.as_deref())?)
            }
            Pte::Swap(_) => Err(VmFaultError::Sigbus),
            // Changed under us (pte_unmap_same() failed): let the CPU retry.
            _ => Ok(VmFault::Done),
        }
    }

    /// A CPU fault (or GUP, or `hmm_range_fault` asked to fault) on a device-exclusive
    /// entry: revoke the device's exclusivity and put the PTE back (spec 3).
    ///
    /// Takes a folio reference first where the profile says so (6.3+: without it the
    /// folio may be freed while this fault waits for its lock), locks the folio or
    /// retries, notifies with the profile's restore event (6.15: `Clear`, owner none)
    /// even if the entry turns out to have changed, then restores it if it is still the
    /// one that faulted.
    ///
    /// Linux: `remove_device_exclusive_entry()`.
    fn remove_device_exclusive_entry(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        vma: &Vma,
        addr: VirtAddr,
        flags: FaultFlags,
        orig: SwapPte,
    ) -> Result<VmFault, VmFaultError> {
        if self.mem.tracer().on() {
            return self.remove_device_exclusive_entry_traced(guard, vma, addr, flags, orig);
        }
        self.remove_device_exclusive_entry_body::<false>(guard, vma, addr, flags, orig)
    }

    // With recording on, the operation and the folio sites record; out of line, so
    // that the untraced restore keeps nothing alive across a recording call
    // (docs/TRACES.md, "Cost").
    #[cold]
    #[inline(never)]
    fn remove_device_exclusive_entry_traced(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        vma: &Vma,
        addr: VirtAddr,
        flags: FaultFlags,
        orig: SwapPte,
    ) -> Result<VmFault, VmFaultError> {
        self.mem.tracer().traced(
            || crate::trace::Payload::Restore {
                mm: self.id(),
                addr: addr.raw(),
                pfn: orig.pfn().map_or(0, |p| p.raw()),
            },
            || self.remove_device_exclusive_entry_body::<true>(guard, vma, addr, flags, orig),
            |r| match r {
                Ok(VmFault::Done) => "done".into(),
                Ok(VmFault::Retry) => "retry (folio locked: mmap lock dropped, waited)".into(),
                Err(_) => "SIGBUS".into(),
            },
        )
    }

    /// [`remove_device_exclusive_entry`](Self::remove_device_exclusive_entry) without its
    /// trace operation; its folio operations record only if `TRACE`.
    #[inline(always)]
    fn remove_device_exclusive_entry_body<const TRACE: bool>(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        vma: &Vma,
        addr: VirtAddr,
        flags: FaultFlags,
        orig: SwapPte,
    ) -> Result<VmFault, VmFaultError> {
        let mem = &self.mem;
        let profile = *self.profile();
        let Some(folio) = orig.pfn().and_then(|p| mem.page_folio(p).ok()) else {
            return Err(VmFaultError::Sigbus);
        };
        if profile.restore_takes_folio_ref && !mem.folio_try_get_as::<TRACE>(folio) {
            // Freed already: the entry must be gone too; let the access retry.
            return Ok(VmFault::Done);
        }
        if !self.folio_lock_or_retry_as::<TRACE>(guard, folio, flags) {
            if profile.restore_takes_folio_ref {
                mem.folio_put_as::<TRACE>(folio);
            }
            return Ok(VmFault::Retry);
        }
        let range = MmuNotifierRange::new(
            self,
            profile.restore_event.event(),
            addr.raw(),
            addr.raw() + PAGE_SIZE,
        )
        .invalidate_range_start();
        if let Some(mut ptl) = self.pte_offset_map_lock(addr)
            && ptl.get(addr) == Pte::Swap(orig)
        {
            self.restore_exclusive_pte(vma, folio, addr, &mut ptl, orig);
        }
        mem.folio_unlock_as::<TRACE>(folio);
        if profile.restore_takes_folio_ref {
            mem.folio_put_as::<TRACE>(folio);
        }
        range.end();
        Ok(VmFault::Done)
    }

    /// Locks `folio` for a fault, or, on the first attempt of a retryable fault, drops
    /// the mmap lock, waits for the folio to be unlocked, takes the mmap lock again and
    /// returns false (the caller returns `Retry`). A second attempt, or a fault that
    /// may not retry (GUP), sleeps until it has the lock.
    ///
    /// Linux: `folio_lock_or_retry()`.
    pub(crate) fn folio_lock_or_retry(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        folio: Folio,
        flags: FaultFlags,
    ) -> bool {
        self.folio_lock_or_retry_as::<true>(guard, folio, flags)
    }

    /// [`folio_lock_or_retry`](Self::folio_lock_or_retry), its trylock recording only
    /// if `TRACE` (the sleeping paths always record).
    #[inline(always)]
    pub(crate) fn folio_lock_or_retry_as<const TRACE: bool>(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        folio: Folio,
        flags: FaultFlags,
    ) -> bool {
        let mem = &self.mem;
        if let Some(lock) = mem.folio_trylock_as::<TRACE>(folio) {
            lock.leak();
            return true;
        }
        if flags.contains(FaultFlags::ALLOW_RETRY) && !flags.contains(FaultFlags::TRIED) {
            guard.drop_and_retake(|| mem.folio_wait_locked(folio));
            return false;
        }
        mem.folio_lock(folio).leak();
        true
    }

    /// Puts a present PTE back in place of a device-exclusive entry: the same page, old
    /// (not young), soft-dirty and uffd-wp carried over; writable per the profile
    /// (6.15: iff the VMA is writable and `can_change_pte_writable()` allows it, dirty
    /// iff the folio is; 5.14: from the entry's write bit, always dirty); the mapcount
    /// re-added where the profile dropped it at conversion.
    ///
    /// Caller holds the folio lock and the PTL.
    ///
    /// Linux: `restore_exclusive_pte()`.
    pub(crate) fn restore_exclusive_pte(
        &self,
        vma: &Vma,
        folio: Folio,
        addr: VirtAddr,
        ptl: &mut PtlGuard<'_>,
        entry: SwapPte,
    ) {
        let mem = &self.mem;
        debug_assert!(mem.folio_test_locked(folio));
        let Some(pfn) = entry.pfn() else {
            return;
        };
        let profile = self.profile();
        let mut flags = vma.page_prot();
        if entry.soft_dirty {
            flags |= PteFlags::SOFT_DIRTY;
        }
        if entry.uffd_wp {
            flags |= PteFlags::UFFD_WP;
        }
        let mut pte = PresentPte::new(pfn, flags);
        match profile.restore_writability {
            RestoreWritability::CanChangePteWritable => {
                if vma.flags.contains(VmFlags::WRITE) && self.can_change_pte_writable(vma, pte) {
                    if mem.folio_test(folio, PageFlags::DIRTY) {
                        pte = pte.mkdirty();
                    }
                    pte = pte.with(PteFlags::WRITE);
                }
            }
            RestoreWritability::EntryBitAlwaysDirty => {
                if !entry.uffd_wp && entry.is_writable_device_exclusive() {
                    pte = pte.mkdirty();
                    if vma.flags.contains(VmFlags::WRITE) {
                        pte = pte.with(PteFlags::WRITE);
                    }
                }
            }
        }
        self.restore_sanity_check(folio, pfn, pte);
        ptl.set(addr, Pte::Present(pte));
        if !profile.mapcount_kept_on_entry {
            mem.folio_add_anon_rmap_pte(pfn);
            // 5.14: `if (vma->vm_flags & VM_LOCKED) mlock_vma_page(page)` after the
            // rmap add; 6.12: inside folio_add_anon_rmap_pte() (mlock.rs docs). 6.15
            // adds no rmap, and the folio never stopped being mlocked.
            mem.mlock_vma_folio(folio, vma.flags);
        }
    }

    /// The restore's assertion that a writable PTE maps an anon-exclusive page, as each
    /// era had it (spec 8 item 6): absent before PG_anon_exclusive (5.14) and after
    /// its deletion (6.15), working from 5.19, and from 6.8 to 6.14 written with a
    /// misplaced `!` that only a non-anon anon-exclusive page could trip, which does
    /// not exist. A firing check is a `VM_BUG_ON` (CONFIG_DEBUG_VM); the model records
    /// it as a bad-page report and goes on, so the checker sees the state it left.
    ///
    /// Linux 5.19-6.14: `VM_BUG_ON()` in `restore_exclusive_pte()`.
    fn restore_sanity_check(&self, folio: Folio, pfn: Pfn, pte: PresentPte) {
        let profile = self.profile();
        if !profile.restore_checks_writable_is_anon_exclusive || !pte.is_write() {
            return;
        }
        let mem = &self.mem;
        let anon = mem.folio_test(folio, PageFlags::ANON);
        let exclusive = mem
            .page(pfn)
            .is_some_and(|p| p.test(PageFlags::ANON_EXCLUSIVE));
        let fires = if profile.restore_check_misplaced_not {
            !anon && exclusive
        } else {
            !(anon && exclusive)
        };
        if fires {
            mem.report_bad(
                pfn,
                "VM_BUG_ON: restore_exclusive_pte() made a writable PTE on a page that is not anon-exclusive",
            );
        }
    }

    /// A write to a present, read-only PTE in a writable VMA: reuse the page if this
    /// mapping is its only user, else copy it (COW break, or zero page → own page).
    ///
    /// Linux: `do_wp_page()`, `wp_can_reuse_anon_folio()`, `wp_page_reuse()`.
    fn do_wp_page(
        &self,
        vma: &Vma,
        addr: VirtAddr,
        mut ptl: PtlGuard<'_>,
        pte: PresentPte,
        anon: Option<&Arc<AnonVma>>,
        unshare: bool,
    ) -> Result<VmFault, VmFaultError> {
        let mem = &self.mem;
        if unshare && !self.must_unshare(pte) {
            return Ok(VmFault::Done);
        }
        if vma.flags.contains(VmFlags::SHARED) {
            // Linux: wp_page_shared(): shared pages are never copied.
            let new = pte.with(PteFlags::ACCESSED | PteFlags::WRITE).mkdirty();
            ptl.set(addr, Pte::Present(new));
            return Ok(VmFault::Done);
        }
        if !pte.is_special() {
            let folio = mem.page_folio(pte.pfn)?;
            let exclusive = mem
                .page(pte.pfn)
                .is_some_and(|p| p.test(PageFlags::ANON_EXCLUSIVE));
            if mem.folio_test(folio, PageFlags::ANON)
                && (exclusive || self.wp_can_reuse_anon_folio(folio))
            {
                if let Some(p) = mem.page(pte.pfn) {
                    p.set(PageFlags::ANON_EXCLUSIVE);
                }
                if unshare {
                    // Exclusive now; writability is left to a later write fault.
                    return Ok(VmFault::Done);
                }
                // Linux: wp_page_reuse(): maybe_mkwrite(pte_mkdirty(pte)).
                let mut new = pte.with(PteFlags::ACCESSED).mkdirty();
                if vma.flags.contains(VmFlags::WRITE) {
                    new = new.with(PteFlags::WRITE);
                }
                ptl.set(addr, Pte::Present(new));
                self.stats().wp_reuses.fetch_add(1, Ordering::Relaxed);
                return Ok(VmFault::Done);
            }
        }
        drop(ptl);
        let Some(anon) = anon else {
            return Err(VmFaultError::Sigbus);
        };
        self.wp_page_copy(vma, addr, pte, anon, unshare)
    }

    /// An unshare fault on the present PTE at `addr` of `vma` (which has an
    /// anon_vma): a page this mapping does not own exclusively (a KSM page, one
    /// shared with a fork child) is copied into a private, read-only one. For callers
    /// holding the mmap lock for write (`MADV_UNMERGEABLE`).
    ///
    /// Linux: `handle_mm_fault(FAULT_FLAG_UNSHARE)` → `do_wp_page()`, as `break_ksm()`
    /// calls it.
    pub(crate) fn unshare_anon_page(
        &self,
        vma: &Vma,
        addr: VirtAddr,
    ) -> Result<VmFault, VmFaultError> {
        let Some(anon) = vma.anon_vma().cloned() else {
            return Ok(VmFault::Done);
        };
        let Some(ptl) = self.pte_offset_map_lock(addr) else {
            return Ok(VmFault::Done);
        };
        let Pte::Present(pte) = ptl.get(addr) else {
            return Ok(VmFault::Done);
        };
        self.do_wp_page(vma, addr, ptl, pte, Some(&anon), true)
    }

    /// Whether a read-only FOLL_PIN must first make this page exclusive: an anon page
    /// that is not PageAnonExclusive (the zero page and shmem pages are pinned as
    /// they are).
    ///
    /// Linux: `gup_must_unshare()`.
    pub(crate) fn must_unshare(&self, pte: PresentPte) -> bool {
        let mem = &self.mem;
        !pte.is_special()
            && mem
                .page_folio(pte.pfn)
                .is_ok_and(|f| mem.folio_test(f, PageFlags::ANON))
            && !mem
                .page(pte.pfn)
                .is_some_and(|p| p.test(PageFlags::ANON_EXCLUSIVE))
    }

    /// Whether an anon folio mapped read-only here can be reused in place: nobody else
    /// holds a reference (so no other mapping, no GUP), but for the swap cache, which
    /// then lets go of it.
    ///
    /// Linux: `wp_can_reuse_anon_folio()`.
    fn wp_can_reuse_anon_folio(&self, folio: Folio) -> bool {
        let mem = &self.mem;
        // Linux: a KSM folio is never reused, whoever maps it; beyond our mapping only
        // the swap cache's reference may be there (small folios only: a large one is
        // never reused whole).
        let refs = mem.folio_ref_count(folio);
        let cached = refs == 2 && !folio.is_large() && mem.swap_cache_refs(folio) == 1;
        if mem.folio_test_ksm(folio) || (refs != 1 && !cached) {
            return false;
        }
        // Linux trylocks the folio to stabilise the swap cache state, and drops a slot
        // no entry names (folio_free_swap()): the slot's copy is stale after the write.
        let Some(lock) = mem.folio_trylock(folio) else {
            return false;
        };
        if cached {
            mem.folio_free_swap(folio);
        }
        let reuse = mem.folio_ref_count(folio) == 1;
        drop(lock);
        reuse
    }

    /// Copies the page mapped read-only at `addr` (or zero-fills, for the zero page)
    /// into a new anon page and maps that writable, if the PTE is still the one we saw.
    ///
    /// Linux: `wp_page_copy()`.
    fn wp_page_copy(
        &self,
        vma: &Vma,
        addr: VirtAddr,
        orig: PresentPte,
        anon: &Arc<AnonVma>,
        unshare: bool,
    ) -> Result<VmFault, VmFaultError> {
        let mem = &self.mem;
        let old = (!orig.is_special())
            .then(|| mem.page_folio(orig.pfn))
            .transpose()?;
        // Hold the old page while copying, as Linux does with folio_get().
        if let Some(old) = old
            && !mem.folio_try_get(old)
        {
            return Ok(VmFault::Done);
        }
        let put_old = |mem: &super::PhysMem| {
            if let Some(old) = old {
                mem.folio_put(old);
            }
        };
        let new = match mem.folio_alloc(0, Gfp::empty()) {
            Ok(f) => f,
            Err(_) => {
                put_old(mem);
                return Err(VmFaultError::Oom);
            }
        };
        let copied = match old {
            Some(_) => mem.copy_page(new.head(), orig.pfn),
            None => mem.clear_page(new.head()),
        };
        if copied.is_err() {
            mem.folio_put(new);
            put_old(mem);
            return Err(VmFaultError::Sigbus);
        }
        // Linux: the Clear range over the page is started before the PTE is re-checked
        // and ended after the PTL is dropped, also when the re-check fails.
        let range = MmuNotifierRange::new(
            self,
            MmuNotifierEvent::Clear,
            addr.raw(),
            addr.raw() + PAGE_SIZE,
        )
        .invalidate_range_start();
        let Some(mut ptl) = self.pte_offset_map_lock(addr) else {
            drop(range);
            mem.folio_put(new);
            put_old(mem);
            return Ok(VmFault::Done);
        };
        if ptl.get(addr) != Pte::Present(orig) {
            drop(ptl);
            drop(range);
            mem.folio_put(new);
            put_old(mem);
            return Ok(VmFault::Done);
        }
        mem.folio_add_new_anon_rmap(new, anon, vma.linear_page_index(addr));
        mem.mlock_vma_folio(new, vma.flags);
        let entry = if unshare {
            // Linux: an unshare copy keeps the old PTE's read-only state and tracking bits.
            PresentPte::new(
                new.head(),
                vma.page_prot()
                    | PteFlags::ACCESSED
                    | (orig.flags & (PteFlags::SOFT_DIRTY | PteFlags::UFFD_WP)),
            )
        } else {
            new_anon_pte(vma, new)
        };
        ptl.set(addr, Pte::Present(entry));
        match old {
            Some(old) => {
                mem.folio_remove_rmap_pte(orig.pfn);
                mem.munlock_vma_folio(old, vma.flags);
                // The old mapping's reference.
                mem.folio_put(old);
            }
            None => self.add_rss_anon(1),
        }
        drop(ptl);
        range.end();
        put_old(mem);
        self.stats().cow_copies.fetch_add(1, Ordering::Relaxed);
        Ok(VmFault::Done)
    }

    /// Clears every entry in `[start, end)` (within one VMA, whose flags are
    /// `vm_flags`), dropping the mappings' references and rmap counts (munlocking in
    /// a `VM_LOCKED` VMA). Empty page tables stay; munmap frees them.
    ///
    /// Caller holds the mmap lock (read mode suffices).
    ///
    /// Linux: `unmap_page_range()` → `zap_pte_range()`.
    #[doc(alias = "zap_pte_range")]
    pub(crate) fn unmap_page_range(&self, start: VirtAddr, end: VirtAddr, vm_flags: VmFlags) {
        // Linux: unmap_single_vma() → __unmap_hugepage_range() for hugetlb VMAs.
        if vm_flags.contains(VmFlags::HUGETLB) {
            return self.unmap_hugepage_range(start, end);
        }
        // Linux: zap_pmd_range(): a huge PMD wholly inside goes at once, one partly
        // inside is split first.
        self.for_each_huge_pmd(start, end, |haddr, whole| {
            if whole {
                self.zap_huge_pmd(haddr);
            } else {
                self.split_huge_pmd_address(haddr);
            }
        });
        self.for_each_pte_table(start, end, |ptl, s, e| {
            for a in (s.raw()..e.raw()).step_by(PAGE_SIZE as usize) {
                self.zap_one(ptl, VirtAddr::new_truncate(a), vm_flags);
            }
        });
    }

    fn zap_one(&self, ptl: &mut PtlGuard<'_>, addr: VirtAddr, vm_flags: VmFlags) {
        match ptl.get(addr) {
            Pte::None => {}
            Pte::Present(p) => {
                ptl.clear(addr);
                if p.is_special() {
                    return;
                }
                let mem = &self.mem;
                if let Ok(folio) = mem.page_folio(p.pfn) {
                    if p.is_dirty() {
                        mem.folio_set(folio, PageFlags::DIRTY);
                    }
                    mem.folio_remove_rmap_pte(p.pfn);
                    mem.munlock_vma_folio(folio, vm_flags);
                    if mem.folio_test(folio, PageFlags::ANON) {
                        self.add_rss_anon(-1);
                        mem.free_swap_cache(folio);
                    } else {
                        self.add_rss_shmem(-1);
                    }
                    mem.folio_put(folio);
                }
            }
            // Linux: zap_nonpresent_ptes(). A device-exclusive entry holds the reference
            // (and, in 6.15, the mapcount) of the PTE it replaced. No folio lock is
            // taken: a driver may still hold it; the frame lives until its last put.
            Pte::Swap(e) if e.is_device_exclusive() => {
                ptl.clear(addr);
                let mem = &self.mem;
                if let Some(pfn) = e.pfn()
                    && let Ok(folio) = mem.page_folio(pfn)
                {
                    self.add_rss_anon(-1);
                    if self.profile().mapcount_kept_on_entry {
                        mem.folio_remove_rmap_pte(pfn);
                        mem.munlock_vma_folio(folio, vm_flags);
                    }
                    // A folio 5.14's reclaim wrote out but could not free stays in the
                    // swap cache; Linux's LRU would free it once unmapped, the model
                    // (no LRU) frees it here (docs/ARCHITECTURE.md item 27).
                    mem.free_swap_cache(folio);
                    mem.folio_put(folio);
                }
            }
            // A migration entry holds no reference and no mapcount (the migration
            // took them); only the RSS still counts it.
            Pte::Swap(e) if e.is_migration() => {
                ptl.clear(addr);
                self.add_rss_anon(-1);
            }
            // A swap entry: the slot loses a user (Linux: free_swap_and_cache()).
            Pte::Swap(e) if e.is_swap() => {
                ptl.clear(addr);
                self.mem.swap_free(e.offset);
            }
            // Other entry kinds: their layers add their accounting here.
            Pte::Swap(_) => {
                ptl.clear(addr);
            }
        }
    }
}

impl Mm {
    /// Copies the page-table entries of `src_vma` (a VMA of `self`) into the child
    /// `dst`, whose copy of the VMA is `dst_vma`. Anonymous pages are shared
    /// copy-on-write (write-protected in both, mapcount and refcount raised,
    /// anon-exclusive cleared), except possibly pinned ones, which are copied at once.
    /// For a COW mapping the whole source VMA is bracketed by a `ProtectionPage`
    /// invalidation, which is what revokes device mappings at fork. `ENOMEM` when a
    /// page table or a copied page cannot be allocated; what was copied so far stays
    /// (the caller tears the child down).
    ///
    /// Caller holds both mmap locks for write.
    ///
    /// Linux: `copy_page_range()` → `copy_pte_range()`.
    pub(crate) fn copy_page_range(
        &self,
        dst: &Mm,
        dst_vma: &Vma,
        src_vma: &Vma,
    ) -> Result<(), Errno> {
        // Linux: vma_needs_copy(): a VMA that never had an anonymous fault has nothing
        // private to copy, and shared memory is faulted in afresh by the child.
        if src_vma.anon_vma().is_none() || src_vma.shmem().is_some() {
            return Ok(());
        }
        if src_vma.is_hugetlb() {
            return self.copy_hugetlb_page_range(dst, dst_vma, src_vma);
        }
        let (start, end) = (src_vma.start().raw(), src_vma.end().raw());
        let _range = src_vma.is_cow_mapping().then(|| {
            MmuNotifierRange::new(self, MmuNotifierEvent::ProtectionPage, start, end)
                .invalidate_range_start()
        });
        let mut addr = start;
        while addr < end {
            let next = ((addr & !(PMD_SIZE - 1)) + PMD_SIZE).min(end);
            let at = VirtAddr::new_truncate(addr);
            if matches!(self.pmd_get_lockless(at), Pmd::Huge(_)) {
                match self.copy_huge_pmd(dst, src_vma, at) {
                    // Split because possibly pinned: copy its PTEs below.
                    Err(Errno::EAGAIN) => {}
                    other => {
                        other?;
                        addr = next;
                        continue;
                    }
                }
            }
            if matches!(self.pmd_get_lockless(at), Pmd::Table(_)) {
                dst.pte_alloc(at)?;
                // Lock order: the child's PTL, then the parent's (Linux:
                // pte_alloc_map_lock() on dst, then spin_lock_nested() on src).
                let mut dst_ptl = dst.pte_offset_map_lock(at).ok_or(Errno::ENOMEM)?;
                if let Some(mut src_ptl) = self.pte_offset_map_lock(at) {
                    for a in (addr..next).step_by(PAGE_SIZE as usize) {
                        let va = VirtAddr::new_truncate(a);
                        match src_ptl.get(va) {
                            Pte::None => {}
                            Pte::Swap(e)
                                if e.is_device_exclusive()
                                    && self.profile().fork_copies_exclusive_entries =>
                            {
                                self.copy_exclusive_entry_v7(
                                    dst,
                                    src_vma,
                                    &mut dst_ptl,
                                    &mut src_ptl,
                                    va,
                                    e,
                                )?;
                            }
                            Pte::Swap(e) if e.is_device_exclusive() => {
                                // Linux: copy_nonpresent_pte() → try_restore_exclusive_pte()
                                // and -ENOENT: restore in the parent, then copy the now
                                // present PTE the COW way.
                                self.try_restore_exclusive_pte(src_vma, &mut src_ptl, va, e)?;
                                if let Pte::Present(p) = src_ptl.get(va) {
                                    self.copy_present_pte(
                                        dst,
                                        dst_vma,
                                        src_vma,
                                        &mut dst_ptl,
                                        &mut src_ptl,
                                        va,
                                        p,
                                    )?;
                                }
                            }
                            Pte::Swap(_) => self.copy_nonpresent_pte(
                                dst,
                                src_vma,
                                &mut dst_ptl,
                                &mut src_ptl,
                                va,
                            )?,
                            Pte::Present(p) => self.copy_present_pte(
                                dst,
                                dst_vma,
                                src_vma,
                                &mut dst_ptl,
                                &mut src_ptl,
                                va,
                                p,
                            )?,
                        }
                    }
                }
            }
            addr = next;
        }
        Ok(())
    }

    /// A non-present entry at fork (device-exclusive entries are handled by the
    /// caller): a swap entry gains a user and loses its exclusive bit; a migration
    /// entry is copied, made readable in both first when it is writable or
    /// readable-exclusive in a COW mapping; any other entry is copied as is.
    ///
    /// Linux: `copy_nonpresent_pte()`.
    fn copy_nonpresent_pte(
        &self,
        dst: &Mm,
        src_vma: &Vma,
        dst_ptl: &mut PtlGuard<'_>,
        src_ptl: &mut PtlGuard<'_>,
        va: VirtAddr,
    ) -> Result<(), Errno> {
        let mut entry = src_ptl.get(va);
        if let Pte::Swap(s) = entry
            && s.is_swap()
        {
            // Linux: swap_duplicate(); neither copy is exclusive any more.
            self.mem.swap_duplicate(s.offset);
            if s.exclusive {
                let mut r = s;
                r.exclusive = false;
                src_ptl.set(va, Pte::Swap(r));
                entry = Pte::Swap(r);
            }
        }
        if let Pte::Swap(s) = entry
            && s.is_migration()
        {
            // The child's mapping is counted when the migration puts PTEs back. For a
            // COW mapping, a writable or readable-exclusive entry turns readable in
            // both: the page is shared from now on, so `remove_migration_ptes` must map
            // it neither writable nor anon-exclusive in either (Linux:
            // `!is_readable_migration_entry()` → `make_readable_migration_entry()`).
            dst.add_rss_anon(1);
            if s.swp_type != super::pgtable::swp_type::SWP_MIGRATION_READ
                && src_vma.is_cow_mapping()
                && let Some(pfn) = s.pfn()
            {
                let mut r = SwapPte::migration(pfn, false, false);
                r.soft_dirty = s.soft_dirty;
                r.uffd_wp = s.uffd_wp;
                src_ptl.set(va, Pte::Swap(r));
                entry = Pte::Swap(r);
            }
        }
        dst_ptl.set(va, entry);
        Ok(())
    }

    /// The pre-merge fork of patches v5 to v7 (spec 4.1, 8 item 3; switch
    /// `fork_copies_exclusive_entries`): the child inherits the entry. The copy takes a
    /// reference and an RSS count, and in a COW mapping a writable entry turns
    /// readable in both, as fork does for a writable migration entry. Nothing
    /// unshares the page: the 2021 code predates PG_anon_exclusive, so in the model's
    /// 5.19+ mm the page stays anon-exclusive while two mms name it, which the
    /// checker reports, and the parent's next write reuses a page the child still
    /// sees (derived). The device's own mapping is revoked by fork's `ProtectionPage`
    /// range either way. Where the profile keeps a mapcount on entries (6.15), the
    /// child's entry gets one too, so that the counts stay what the entries say.
    ///
    /// Linux (v7, `<20210326000805.2518-6-apopple@nvidia.com>`, never merged):
    /// `copy_nonpresent_pte()`, its `is_device_exclusive_entry()` branch.
    fn copy_exclusive_entry_v7(
        &self,
        dst: &Mm,
        src_vma: &Vma,
        dst_ptl: &mut PtlGuard<'_>,
        src_ptl: &mut PtlGuard<'_>,
        va: VirtAddr,
        entry: SwapPte,
    ) -> Result<(), Errno> {
        let mem = &self.mem;
        let pfn = entry.pfn().ok_or(Errno::EFAULT)?;
        let folio = mem.page_folio(pfn)?;
        mem.folio_get(folio);
        if self.profile().mapcount_kept_on_entry {
            mem.folio_add_anon_rmap_pte(pfn);
        }
        dst.add_rss_anon(1);
        let mut copy = entry;
        if self.profile().entry_has_write_bit
            && entry.is_writable_device_exclusive()
            && src_vma.is_cow_mapping()
        {
            copy = SwapPte::device_exclusive(pfn, false);
            copy.soft_dirty = entry.soft_dirty;
            copy.uffd_wp = entry.uffd_wp;
            src_ptl.set(va, Pte::Swap(copy));
        }
        dst_ptl.set(va, Pte::Swap(copy));
        Ok(())
    }

    /// Fork meets a device-exclusive entry: the child never inherits one, so restore it
    /// in the parent first. Fork holds the PTLs and can only trylock the folio; when
    /// that fails (a driver holds it), fork fails: Linux's `-EBUSY`, turned into
    /// `ENOMEM` by `copy_pmd_range()`, which is what `fork()` returns (spec 4.1, 9.13).
    /// The revocation is fork's own `ProtectionPage` range; this sends nothing.
    ///
    /// Linux: `try_restore_exclusive_pte()`.
    fn try_restore_exclusive_pte(
        &self,
        src_vma: &Vma,
        src_ptl: &mut PtlGuard<'_>,
        va: VirtAddr,
        entry: SwapPte,
    ) -> Result<(), Errno> {
        let mem = &self.mem;
        let folio = entry
            .pfn()
            .ok_or(Errno::EFAULT)
            .and_then(|p| mem.page_folio(p))?;
        let Some(lock) = mem.folio_trylock(folio) else {
            return Err(Errno::ENOMEM);
        };
        self.restore_exclusive_pte(src_vma, folio, va, src_ptl, entry);
        drop(lock);
        Ok(())
    }

    /// One present PTE at fork.
    ///
    /// Linux: `copy_present_ptes()` / `__copy_present_ptes()`.
    #[expect(clippy::too_many_arguments, reason = "mirrors copy_present_ptes()")]
    fn copy_present_pte(
        &self,
        dst: &Mm,
        dst_vma: &Vma,
        src_vma: &Vma,
        dst_ptl: &mut PtlGuard<'_>,
        src_ptl: &mut PtlGuard<'_>,
        va: VirtAddr,
        p: PresentPte,
    ) -> Result<(), Errno> {
        let mem = &self.mem;
        if !p.is_special() {
            let folio = mem.page_folio(p.pfn)?;
            if mem.folio_test(folio, PageFlags::ANON) {
                if self.folio_needs_cow_for_dma(folio) {
                    return self.copy_present_page(dst, dst_vma, dst_ptl, va, p);
                }
                mem.folio_get(folio);
                mem.folio_dup_anon_rmap_pte(p.pfn);
                dst.add_rss_anon(1);
            } else {
                mem.folio_get(folio);
                mem.folio_add_file_rmap_pte(p.pfn);
                dst.add_rss_shmem(1);
            }
        }
        let mut pte = p;
        if src_vma.is_cow_mapping() && p.is_write() {
            // Linux: ptep_set_wrprotect() on the parent, pte_wrprotect() for the child.
            pte = pte.without(PteFlags::WRITE);
            src_ptl.set(va, Pte::Present(pte));
        }
        let mut child = pte.without(PteFlags::ACCESSED);
        if src_vma.flags.contains(VmFlags::SHARED) {
            child = child.without(PteFlags::DIRTY);
        }
        dst_ptl.set(va, Pte::Present(child));
        Ok(())
    }

    /// A possibly pinned page at fork: the child gets its own copy at once, so the pin
    /// keeps pointing at the parent's page.
    ///
    /// Linux: `copy_present_page()`.
    fn copy_present_page(
        &self,
        dst: &Mm,
        dst_vma: &Vma,
        dst_ptl: &mut PtlGuard<'_>,
        va: VirtAddr,
        p: PresentPte,
    ) -> Result<(), Errno> {
        let mem = &self.mem;
        let Some(anon) = dst_vma.anon_vma() else {
            return Err(Errno::EFAULT);
        };
        let new = mem
            .folio_alloc(0, Gfp::empty())
            .map_err(|_| Errno::ENOMEM)?;
        if let Err(e) = mem.copy_page(new.head(), p.pfn) {
            mem.folio_put(new);
            return Err(e);
        }
        mem.folio_add_new_anon_rmap(new, anon, dst_vma.linear_page_index(va));
        dst.add_rss_anon(1);
        dst_ptl.set(va, Pte::Present(new_anon_pte(dst_vma, new)));
        Ok(())
    }

    /// Whether an anon folio may be pinned for DMA, so that fork must copy it instead of
    /// sharing it: only in an mm that ever pinned (`MMF_HAS_PINNED`), and then judged by
    /// the refcount, which pins raise by a large bias (false positives included, as in
    /// Linux).
    ///
    /// Linux: `folio_needs_cow_for_dma()` / `folio_maybe_dma_pinned()`.
    fn folio_needs_cow_for_dma(&self, folio: Folio) -> bool {
        self.has_pinned() && self.mem.folio_maybe_dma_pinned(folio)
    }
}

/// What one FOLL_PIN adds to a small folio's refcount (Linux: `GUP_PIN_COUNTING_BIAS`).
pub const GUP_PIN_COUNTING_BIAS: i32 = 1024;

impl super::PhysMem {
    /// Whether the folio may be pinned for DMA: a large folio counts pins exactly
    /// (`_pincount`); a small one is judged by its refcount, which each pin raises by
    /// [`GUP_PIN_COUNTING_BIAS`] (so a thousand plain references look pinned too, as
    /// in Linux).
    ///
    /// Linux: `folio_maybe_dma_pinned()`.
    pub fn folio_maybe_dma_pinned(&self, folio: Folio) -> bool {
        if folio.order() > 0 {
            self.page(folio.head()).is_some_and(|p| p.pincount() > 0)
        } else {
            self.folio_ref_count(folio) >= GUP_PIN_COUNTING_BIAS
        }
    }
}

/// The PTE of a freshly mapped, exclusively owned anon page: young (the fault is the
/// first access) and, in a writable VMA, writable and dirty.
///
/// Linux: `mk_pte()` + `maybe_mkwrite(pte_mkdirty())`.
fn new_anon_pte(vma: &Vma, folio: Folio) -> PresentPte {
    let pte = PresentPte::new(folio.head(), vma.page_prot() | PteFlags::ACCESSED);
    if vma.flags.contains(VmFlags::WRITE) {
        pte.mkdirty().with(PteFlags::WRITE)
    } else {
        pte
    }
}
