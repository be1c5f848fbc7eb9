//! DAMON's physical-address operations (Linux: `mm/damon/paddr.c`,
//! `mm/damon/ops-common.c`): sampling whether a frame was accessed by clearing the
//! accessed bits of its mappings ("mkold") and checking them later ("young").
//!
//! Both are rmap walks that can meet device-exclusive entries (spec 4.18, 8 items 16
//! and 17):
//! * `damon_ptep_mkold()` took the folio to mark from `pte_pfn()` of the PTE. For a
//!   device-exclusive entry E1 (5.14 to 6.14) read it from the swap PTE: on x86-64 the
//!   entry's pfn shifted right by three (`swp_misread.rs`), so an unrelated folio was
//!   marked idle (and young, if the device said it accessed the page), and the
//!   entry's own folio was not. 6.15 (fixes v2 15/17) takes the pfn from the entry and
//!   clears the accessed bit only of a present PTE.
//! * `damon_folio_young_one()` tested `pte_young()` of the entry; 6.15 (fixes v2
//!   14/17) tests present PTEs only. On x86-64 the swap word's accessed bit is always
//!   clear, so both eras give the same answer there (derived).
//!
//! Linux 5.14 itself had only DAMON's virtual-address operations (whose page walk
//! skips non-present PTEs); the physical-address ones came in 5.16. The `linux-5.14`
//! profile stands for the whole E1 design (5.14 to 6.14), whose walkers these are.

use std::ops::ControlFlow;

use super::folio::Folio;
use super::page::PageFlags;
use super::page_alloc::PhysMem;
use super::page_idle::ptep_test_and_clear_young;
use super::pgtable::Pte;
use super::rmap::PvmwHit;
use super::swp_misread;
use crate::types::{PAGE_SIZE, Pfn};

impl PhysMem {
    /// Clears the accessed bits of every mapping of the folio containing `pfn`,
    /// marking the folio each mapping names idle (young first if the mapping was
    /// accessed, by the CPU or, through the MMU notifier, a device). An unmapped user
    /// folio is simply marked idle; other frames are left alone.
    ///
    /// Linux: `damon_pa_mkold()` → `damon_folio_mkold()` → `damon_folio_mkold_one()`.
    pub fn damon_pa_mkold(&self, pfn: Pfn) {
        let Some(folio) = self.lru_folio_get(pfn) else {
            return;
        };
        let anon_mapped = self
            .page(folio.head())
            .is_some_and(|h| h.mapping().is_some());
        if !self.folio_mapped(folio) || !anon_mapped {
            self.folio_set(folio, PageFlags::IDLE);
            self.folio_put(folio);
            return;
        }
        self.rmap_walk(folio, |hit| {
            let handles = hit.mm.profile().walkers_handle_entries;
            let _ = hit
                .mm
                .page_vma_mapped_walk(folio, &hit.vma, hit.address, |found| {
                    match found {
                        PvmwHit::Pte { ptl, addr, pte } => {
                            // Linux: damon_ptep_mkold().
                            let target = match pte {
                                Pte::Present(p) => Some(p.pfn),
                                Pte::Swap(s) if handles => s.pfn(),
                                // E1: pte_pfn() of a swap PTE.
                                Pte::Swap(s) => Some(swp_misread::pte_pfn(s)),
                                Pte::None => None,
                            };
                            let Some(marked) = target.and_then(|t| self.lru_folio_get(t)) else {
                                return ControlFlow::Continue(());
                            };
                            let mut young = if handles && pte.present().is_none() {
                                false
                            } else {
                                ptep_test_and_clear_young(ptl, addr, pte)
                            };
                            young |= hit
                                .mm
                                .mmu_notifier_clear_young(addr.raw(), addr.raw() + PAGE_SIZE);
                            if young {
                                self.folio_set(marked, PageFlags::YOUNG);
                            }
                            self.folio_set(marked, PageFlags::IDLE);
                            self.folio_put(marked);
                        }
                        PvmwHit::Pmd { addr, pmd } => {
                            // Linux: damon_pmdp_mkold().
                            let Some(marked) = self.lru_folio_get(pmd.pfn) else {
                                return ControlFlow::Continue(());
                            };
                            let mut young = hit.mm.pmdp_test_and_clear_young(addr, pmd);
                            young |= hit
                                .mm
                                .mmu_notifier_clear_young(addr.raw(), addr.raw() + super::PMD_SIZE);
                            if young {
                                self.folio_set(marked, PageFlags::YOUNG);
                            }
                            self.folio_set(marked, PageFlags::IDLE);
                            self.folio_put(marked);
                        }
                    }
                    ControlFlow::Continue(())
                });
            ControlFlow::Continue(())
        });
        self.folio_put(folio);
    }

    /// Whether the folio containing `pfn` was accessed since its last mkold: a young
    /// mapping, the folio no longer idle, or a device saying so through the MMU
    /// notifier; the walk stops at the first yes. `None` for a frame DAMON cannot
    /// sample (not a user folio). An unmapped folio was accessed iff it is not idle.
    ///
    /// Linux: `damon_pa_young()` → `damon_folio_young()` → `damon_folio_young_one()`.
    pub fn damon_pa_young(&self, pfn: Pfn) -> Option<bool> {
        let folio = self.lru_folio_get(pfn)?;
        let accessed = self.damon_folio_young(folio);
        self.folio_put(folio);
        Some(accessed)
    }

    /// [`damon_pa_young`](Self::damon_pa_young) on a referenced folio.
    ///
    /// Linux: `damon_folio_young()`.
    fn damon_folio_young(&self, folio: Folio) -> bool {
        let anon_mapped = self
            .page(folio.head())
            .is_some_and(|h| h.mapping().is_some());
        if !self.folio_mapped(folio) || !anon_mapped {
            return !self.folio_test(folio, PageFlags::IDLE);
        }
        let mut accessed = false;
        self.rmap_walk(folio, |hit| {
            let handles = hit.mm.profile().walkers_handle_entries;
            let _ = hit
                .mm
                .page_vma_mapped_walk(folio, &hit.vma, hit.address, |found| {
                    let (cpu_young, addr) = match found {
                        PvmwHit::Pte { addr, pte, .. } => (
                            match pte {
                                Pte::Present(p) => p.is_young(),
                                // 6.15: a PFN swap PTE is "old" for the CPU.
                                Pte::Swap(_) if handles => false,
                                // E1: pte_young() of the swap word.
                                Pte::Swap(s) => swp_misread::pte_young(s),
                                Pte::None => false,
                            },
                            addr,
                        ),
                        PvmwHit::Pmd { addr, pmd } => (pmd.is_young(), addr),
                    };
                    accessed = cpu_young
                        || !self.folio_test(folio, PageFlags::IDLE)
                        || hit.mm.mmu_notifier_test_young(addr.raw());
                    if accessed {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
            if accessed {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        accessed
    }
}
