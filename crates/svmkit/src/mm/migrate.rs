//! Migration of anonymous folios to new frames (Linux: `mm/migrate.c`, with
//! `try_to_migrate_one()` from `mm/rmap.c`): what compaction, NUMA balancing and memory
//! offlining do, and what device-exclusive entries got in the way of (spec 4.6).
//!
//! ```text
//! migrate_folio(folio)
//!   isolate (a reference), lock the folio
//!   try_to_migrate: rmap walk; every mapping becomes a migration entry (Clear range);
//!                   huge PMDs are split first; 6.15 also converts device-exclusive
//!                   entries (readable migration entry); 5.14 walkers leave them alone
//!   expected-refcount check: only our isolation reference may remain, else EAGAIN
//!   copy to a new folio, move mapping/index/flags
//!   remove_migration_ptes: every migration entry becomes a present PTE of the new
//!                          folio (or, on failure, of the old one again)
//!   unlock, drop the isolation reference (the old folio is freed)
//! ```
//!
//! A fault on a migration entry waits for the folio lock (the migration's) and
//! retries, as Linux's `migration_entry_wait()` does.
//!
//! # The 5.14 walker flaws
//! * A small folio whose PTE is a device-exclusive entry has mapcount 0: the walk never
//!   runs, the entry's reference fails the refcount check, `EAGAIN` every time (spec
//!   8 item 8, offlining loops).
//! * In a large folio whose other pages are still mapped, `try_to_migrate_one()` met
//!   the entry and took its page from `pte_pfn()` of the swap PTE (spec 8 item 13).
//!   The model computes what x86-64 computes (`swp_misread.rs`: the pfn shifted right
//!   by three) and does with that frame what Linux did: a migration entry naming it,
//!   its mapcount dropped, the folio's reference put. Migration then succeeds and a
//!   migration entry for a frame outside the folio stays in the page table, which
//!   the checker reports (docs/ARCHITECTURE.md, deliberate differences).
//!   E1 kernels never walk a small folio with an entry (its mapcount is 0). Under a
//!   profile that keeps the mapcount but not the walker fixes (no Linux had both),
//!   the model leaves a small folio's entry in place instead: the misread would leave
//!   a migration entry no access gets past (a fault on it waits and retries for
//!   ever), which would hang any scenario run under such a profile.
//! * `remove_migration_ptes()` took a device-exclusive entry of the folio for a
//!   migration entry (spec 8 item 9) and mapped the page present again, without
//!   telling the device and without putting the entry's reference.

use std::ops::ControlFlow;

use super::folio::Folio;
use super::mm_types::Mm;
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::page::PageFlags;
use super::page_alloc::{Gfp, PhysMem};
use super::pgtable::{PMD_SIZE, PresentPte, Pte, PteFlags, SwapPte, swp_type};
use super::rmap::PvmwHit;
use crate::error::Errno;
use crate::types::{PAGE_SHIFT, PAGE_SIZE, Pfn, VirtAddr};

impl SwapPte {
    /// A migration entry for `pfn`: writable, read-exclusive or read.
    ///
    /// Linux: `make_writable_migration_entry()`,
    /// `make_readable_exclusive_migration_entry()`, `make_readable_migration_entry()`.
    pub const fn migration(pfn: Pfn, writable: bool, exclusive: bool) -> SwapPte {
        SwapPte {
            swp_type: if writable {
                swp_type::SWP_MIGRATION_WRITE
            } else if exclusive {
                swp_type::SWP_MIGRATION_READ_EXCLUSIVE
            } else {
                swp_type::SWP_MIGRATION_READ
            },
            offset: pfn.raw(),
            soft_dirty: false,
            uffd_wp: false,
            exclusive: false,
        }
    }

    /// Linux: `is_migration_entry()`.
    pub const fn is_migration(&self) -> bool {
        self.swp_type >= swp_type::SWP_MIGRATION_READ
            && self.swp_type <= swp_type::SWP_MIGRATION_WRITE
    }
}

impl PhysMem {
    /// Migrates an anonymous folio to a newly allocated one of the same order and
    /// returns the new folio. `EAGAIN` when the folio is locked by someone else or
    /// references other than its mappings remain (GUP, a driver, a device-exclusive
    /// entry the profile's walkers do not convert); `ENOMEM` when no frame is free;
    /// `EINVAL` for a frame that is not an allocated anonymous folio. On failure every
    /// mapping is put back as it was.
    ///
    /// Linux: `migrate_pages()` → `migrate_folio_unmap()` + `migrate_folio_move()`.
    pub fn migrate_folio(&self, folio: Folio) -> Result<Folio, Errno> {
        self.tracer().traced(
            || crate::trace::Payload::Migrate {
                pfn: folio.head().raw(),
            },
            || self.migrate_folio_body(folio),
            |r| match r {
                Ok(f) => format!("moved to {:#x}", f.head().raw()).into(),
                Err(e) => e.name().into(),
            },
        )
    }

    /// [`migrate_folio`](Self::migrate_folio) without its trace operation.
    fn migrate_folio_body(&self, folio: Folio) -> Result<Folio, Errno> {
        // The isolation reference first, then the checks: without it the frame could
        // be freed and reused (as a page table, say) between the check and the get.
        if !self.folio_try_get(folio) {
            return Err(Errno::EINVAL);
        }
        // Deviation (docs/ARCHITECTURE.md 46): hugetlb migration
        // (migrate_hugetlbs()) is not modelled.
        if !self.folio_test(folio, PageFlags::ANON)
            || self.folio_test_hugetlb(folio)
            || self.page_folio(folio.head()) != Ok(folio)
        {
            self.folio_put(folio);
            return Err(Errno::EINVAL);
        }
        // The isolation reference is ours from here on.
        let Some(lock) = self.folio_trylock(folio) else {
            self.folio_put(folio);
            return Err(Errno::EAGAIN);
        };
        lock.leak();
        // Linux: migrate_folio_unmap() unmaps only a mapped folio (folio_mapped()); a
        // 5.14 small folio held by a device-exclusive entry has mapcount 0, so it sends
        // no invalidation and keeps the device's mapping (spec 4.6).
        let was_mapped = self.folio_mapped(folio);
        if was_mapped {
            self.try_to_migrate(folio);
            self.trace_step(folio, "try_to_migrate", || {
                format!("mapcount now {}", self.folio_mapcount(folio))
            });
        }
        // Linux: folio_migrate_mapping()'s expected-refcount check: our isolation
        // reference, plus the swap cache's if the folio is in it.
        let cached = self.swap_cache_refs(folio);
        let expected = 1 + cached as i32;
        let result = if self.folio_ref_count(folio) != expected || self.folio_mapcount(folio) != 0 {
            Err(Errno::EAGAIN)
        } else {
            self.folio_alloc(folio.order(), Gfp::empty())
                .map_err(|_| Errno::ENOMEM)
                .and_then(|new| {
                    self.move_to_new_folio(folio, new)?;
                    if cached > 0 {
                        self.swap_cache_replace(folio, new);
                    }
                    Ok(new)
                })
        };
        let target = *result.as_ref().unwrap_or(&folio);
        // Linux: only a folio that was unmapped gets its migration entries removed
        // (`page_was_mapped`).
        if was_mapped {
            self.trace_step(folio, "remove_migration_ptes", || {
                format!("map {:#x}", target.head().raw())
            });
            self.remove_migration_ptes(folio, target);
        }
        if let Ok(new) = result {
            // The new folio's mappings hold their references; drop the allocation's.
            self.folio_put(new);
        }
        self.folio_unlock(folio);
        self.folio_put(folio);
        result
    }

    /// Migrates every anonymous folio with a frame in `[first, first + nr)`, trying
    /// each up to `attempts` times, as memory offlining does. Returns the number of
    /// folios moved, or the first frame that could not be moved. Hugetlb folios are
    /// passed over (their migration is not modelled: docs/ARCHITECTURE.md 46).
    ///
    /// Linux: `offline_pages()` → `do_migrate_range()` (which retries without bound;
    /// the model bounds it and reports).
    pub fn migrate_range(
        &self,
        first: Pfn,
        nr: u64,
        attempts: usize,
    ) -> Result<usize, MigrateRangeError> {
        let mut moved = 0;
        let mut raw = first.raw();
        while raw < first.raw().saturating_add(nr) {
            let pfn = Pfn::new(raw);
            let Ok(folio) = self.page_folio(pfn) else {
                raw += 1;
                continue;
            };
            if self.is_free_frame(pfn) || !self.folio_test(folio, PageFlags::ANON) {
                raw += 1;
                continue;
            }
            // Deviation (docs/ARCHITECTURE.md 46): hugetlb migration is not modelled,
            // so a hugetlb folio is passed over (Linux: isolate_hugetlb() and
            // migrate_hugetlbs()).
            if self.folio_test_hugetlb(folio) {
                raw = folio.head().raw() + folio.nr_pages();
                continue;
            }
            let mut last = Errno::EAGAIN;
            let mut done = false;
            for _ in 0..attempts.max(1) {
                match self.migrate_folio(folio) {
                    Ok(_) => {
                        done = true;
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            if !done {
                return Err(MigrateRangeError {
                    pfn: folio.head(),
                    attempts: attempts.max(1),
                    errno: last,
                });
            }
            moved += 1;
            raw = folio.head().raw() + folio.nr_pages();
        }
        Ok(moved)
    }

    /// Replaces every mapping of `folio` with a migration entry (splitting huge PMDs
    /// first), dropping the mappings' counts and references.
    ///
    /// Linux: `try_to_migrate()` → `try_to_migrate_one()`.
    fn try_to_migrate(&self, folio: Folio) {
        // Huge PMDs first: the model migrates PTE-mapped (Linux: TTU_SPLIT_HUGE_PMD).
        self.rmap_walk(folio, |hit| {
            let mut a = hit.address.raw().max(hit.vma.start.raw());
            let end = (hit.address.raw() + (folio.nr_pages() << PAGE_SHIFT)).min(hit.vma.end.raw());
            while a < end {
                hit.mm.split_huge_pmd_address(VirtAddr::new_truncate(a));
                a = (a & !(PMD_SIZE - 1)) + PMD_SIZE;
            }
            ControlFlow::Continue(())
        });
        self.rmap_walk(folio, |hit| {
            let start = hit.address.raw().max(hit.vma.start.raw());
            let end = (hit.address.raw() + (folio.nr_pages() << PAGE_SHIFT)).min(hit.vma.end.raw());
            let range = MmuNotifierRange::new(hit.mm, MmuNotifierEvent::Clear, start, end)
                .invalidate_range_start();
            let handles_entries = hit.mm.profile().walkers_handle_entries;
            let _ = hit
                .mm
                .page_vma_mapped_walk(folio, &hit.vma, hit.address, |found| {
                    let PvmwHit::Pte { ptl, addr, pte } = found else {
                        return ControlFlow::Continue(());
                    };
                    // Linux: try_to_migrate_one() → folio_try_share_anon_rmap_pte()
                    // refuses a possibly pinned anon-exclusive page: the PTE (or, in 6.15,
                    // the device-exclusive entry, which takes the same path) stays and the
                    // walk gives up, so the pin keeps pointing at what the process maps.
                    let pinned_exclusive = |pfn: Pfn| {
                        self.page(pfn)
                            .is_some_and(|pg| pg.test(PageFlags::ANON_EXCLUSIVE))
                            && self.folio_maybe_dma_pinned(folio)
                    };
                    match pte {
                        Pte::Present(p) if pinned_exclusive(p.pfn) => {
                            return ControlFlow::Break(());
                        }
                        Pte::Swap(s)
                            if s.is_device_exclusive()
                                && handles_entries
                                && s.pfn().is_some_and(pinned_exclusive) =>
                        {
                            return ControlFlow::Break(());
                        }
                        Pte::Present(p) => {
                            ptl.clear(addr);
                            if p.is_dirty() {
                                self.folio_set(folio, PageFlags::DIRTY);
                            }
                            let exclusive = self
                                .page(p.pfn)
                                .is_some_and(|pg| pg.test(PageFlags::ANON_EXCLUSIVE));
                            let mut e = SwapPte::migration(p.pfn, p.is_write(), exclusive);
                            e.soft_dirty = p.flags.contains(PteFlags::SOFT_DIRTY);
                            e.uffd_wp = p.flags.contains(PteFlags::UFFD_WP);
                            ptl.set(addr, Pte::Swap(e));
                            self.folio_remove_rmap_pte(p.pfn);
                            self.munlock_vma_folio(folio, hit.vma.flags);
                            self.folio_put(folio);
                        }
                        // 6.15 (fixes v2 11/17): the pfn comes from the entry, the entry is
                        // cleared without flush or dirty transfer, and the migration entry
                        // is readable (exclusive if the page is).
                        Pte::Swap(s) if s.is_device_exclusive() && handles_entries => {
                            let Some(pfn) = s.pfn() else {
                                return ControlFlow::Continue(());
                            };
                            ptl.clear(addr);
                            let exclusive = self
                                .page(pfn)
                                .is_some_and(|pg| pg.test(PageFlags::ANON_EXCLUSIVE));
                            let mut e = SwapPte::migration(pfn, false, exclusive);
                            e.soft_dirty = s.soft_dirty;
                            e.uffd_wp = s.uffd_wp;
                            ptl.set(addr, Pte::Swap(e));
                            if hit.mm.profile().mapcount_kept_on_entry {
                                self.folio_remove_rmap_pte(pfn);
                                self.munlock_vma_folio(folio, hit.vma.flags);
                            }
                            self.folio_put(folio);
                        }
                        // 5.14 to 6.14: the walk hands over the entry of a large folio
                        // as if it were a present PTE (spec 8 item 13); see the module
                        // docs for small folios.
                        Pte::Swap(s) if s.is_device_exclusive() && folio.is_large() => {
                            return self.e1_migrate_entry_as_present(folio, ptl, addr, s);
                        }
                        _ => {}
                    }
                    ControlFlow::Continue(())
                });
            range.end();
            ControlFlow::Continue(())
        });
    }

    /// What `try_to_migrate_one()` of 5.14 to 6.14 does with a device-exclusive entry of
    /// a large folio, which its walk hands over as a present PTE: the subpage from
    /// `pte_pfn()` of the swap PTE (x86-64: the entry's pfn shifted right by three, see
    /// `swp_misread.rs`), the entry cleared, a migration entry naming that garbage
    /// frame (writable, soft-dirty and uffd-wp read from the wrong bits), the garbage
    /// page's mapcount dropped, and the folio's reference put. The folio then looks
    /// unmapped, migration succeeds, and the migration entry outlives it (spec 4.6,
    /// 8 item 13).
    ///
    /// Linux 5.14 to 6.14: the present-PTE path of `try_to_migrate_one()`.
    fn e1_migrate_entry_as_present(
        &self,
        folio: Folio,
        ptl: &mut super::pagewalk::PtlGuard<'_>,
        addr: VirtAddr,
        entry: SwapPte,
    ) -> ControlFlow<()> {
        use super::swp_misread as x86;
        let subpage = x86::pte_pfn(entry);
        let anon_exclusive = self
            .page(subpage)
            .is_some_and(|pg| pg.test(PageFlags::ANON_EXCLUSIVE));
        ptl.clear(addr);
        if x86::pte_dirty(entry) {
            self.folio_set(folio, PageFlags::DIRTY);
        }
        if anon_exclusive {
            // Linux: folio_try_share_anon_rmap_pte(folio, subpage), on the wrong page.
            let pinned = self
                .page_folio(subpage)
                .is_ok_and(|f| self.folio_maybe_dma_pinned(f));
            if pinned {
                ptl.set(addr, Pte::Swap(entry));
                return ControlFlow::Break(());
            }
            if let Some(pg) = self.page(subpage) {
                pg.clear(PageFlags::ANON_EXCLUSIVE);
            }
        }
        let mut e = SwapPte::migration(subpage, x86::pte_write(entry), anon_exclusive);
        e.soft_dirty = x86::pte_soft_dirty(entry);
        e.uffd_wp = x86::pte_uffd_wp(entry);
        ptl.set(addr, Pte::Swap(e));
        self.folio_remove_rmap_pte(subpage);
        self.folio_put(folio);
        ControlFlow::Continue(())
    }

    /// Copies the contents and moves the identity (anon_vma, index, flags) of `old` to
    /// `new`.
    ///
    /// Linux: `move_to_new_folio()` → `folio_migrate_mapping()` + `folio_migrate_copy()`.
    fn move_to_new_folio(&self, old: Folio, new: Folio) -> Result<(), Errno> {
        for i in 0..old.nr_pages() {
            let (src, dst) = (
                Pfn::new(old.head().raw() + i),
                Pfn::new(new.head().raw() + i),
            );
            self.copy_page(dst, src)?;
            let exclusive = self
                .page(src)
                .is_some_and(|p| p.test(PageFlags::ANON_EXCLUSIVE));
            if let Some(p) = self.page(dst)
                && exclusive
            {
                p.set(PageFlags::ANON_EXCLUSIVE);
            }
        }
        let (mapping, index) = self
            .page(old.head())
            .map_or((None, 0), |p| (p.mapping(), p.index()));
        if let Some(h) = self.page(new.head()) {
            h.set_mapping(mapping, index);
        }
        self.folio_set(new, PageFlags::ANON);
        if self.folio_test(old, PageFlags::DIRTY) {
            self.folio_set(new, PageFlags::DIRTY);
        }
        Ok(())
    }

    /// Turns every migration entry naming a page of `old` back into a present PTE of
    /// the same page of `target` (the new folio, or `old` itself after a failure).
    ///
    /// Linux: `remove_migration_ptes()` → `remove_migration_pte()`.
    fn remove_migration_ptes(&self, old: Folio, target: Folio) {
        self.rmap_walk(old, |hit| {
            let start = hit.address.raw().max(hit.vma.start.raw());
            let end = (hit.address.raw() + (old.nr_pages() << PAGE_SHIFT)).min(hit.vma.end.raw());
            // 5.14 to 6.14: the PVMW_MIGRATION walk's check_pte() took a device-exclusive
            // entry for a migration entry (spec 8 item 9; fixes v2 07/17 stopped it).
            let e1_accepts_entries = !hit.mm.profile().walkers_handle_entries;
            let mut a = start;
            while a < end {
                let va = VirtAddr::new_truncate(a);
                if let Some(mut ptl) = hit.mm.pte_offset_map_lock(va)
                    && let Pte::Swap(s) = ptl.get(va)
                    && (s.is_migration() || (e1_accepts_entries && s.is_device_exclusive()))
                    && let Some(pfn) = s.pfn()
                    && old.contains(pfn)
                {
                    let sub = Pfn::new(target.head().raw() + (pfn.raw() - old.head().raw()));
                    let mut flags = super::vma::page_prot_of(hit.vma.flags);
                    if s.soft_dirty {
                        flags |= PteFlags::SOFT_DIRTY;
                    }
                    if s.uffd_wp {
                        flags |= PteFlags::UFFD_WP;
                    }
                    let mut pte = PresentPte::new(sub, flags);
                    if s.swp_type == swp_type::SWP_MIGRATION_WRITE {
                        pte = pte.with(PteFlags::WRITE);
                    }
                    if self.folio_test(target, PageFlags::DIRTY) && pte.is_write() {
                        pte = pte.mkdirty();
                    }
                    let exclusive = s.swp_type != swp_type::SWP_MIGRATION_READ;
                    self.folio_get(target);
                    if let Some(p) = self.page(sub) {
                        p.mapcount_add(1);
                        if exclusive {
                            p.set(PageFlags::ANON_EXCLUSIVE);
                        } else {
                            p.clear(PageFlags::ANON_EXCLUSIVE);
                        }
                    }
                    ptl.set(va, Pte::Present(pte));
                    // Linux: folio_add_anon_rmap_pte() → mlock_vma_folio().
                    self.mlock_vma_folio(target, hit.vma.flags);
                }
                a += PAGE_SIZE;
            }
            ControlFlow::Continue(())
        });
    }
}

/// A folio [`PhysMem::migrate_range`] could not move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("could not migrate the folio at {pfn} after {attempts} attempt(s): {errno}")]
pub struct MigrateRangeError {
    /// Its head frame.
    pub pfn: Pfn,
    /// How many times it was tried.
    pub attempts: usize,
    /// The last error.
    pub errno: Errno,
}

impl Mm {
    /// A fault on a migration entry: wait until the migration that installed it ends
    /// (it holds the folio lock), then let the access retry.
    ///
    /// Linux: `migration_entry_wait()`.
    pub(crate) fn migration_entry_wait(&self, entry: SwapPte) {
        if let Some(pfn) = entry.pfn()
            && let Ok(folio) = self.mem.page_folio(pfn)
            && self.mem.folio_try_get(folio)
        {
            self.mem.folio_wait_locked(folio);
            self.mem.folio_put(folio);
        }
    }
}
