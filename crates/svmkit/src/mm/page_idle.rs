//! Idle page tracking (Linux: `mm/page_idle.c`, `/sys/kernel/mm/page_idle/bitmap`):
//! user space marks frames idle by pfn, and later reads back which are still idle,
//! i.e. not accessed since, by the CPU (a PTE's accessed bit) or a device (the MMU
//! notifier's `clear_young`).
//!
//! Both directions first clear the accessed bits of every mapping of the folio (an
//! rmap walk, [`PhysMem::page_idle_clear_pte_refs`]): an access seen there clears the
//! folio's idle flag. That walk can meet device-exclusive entries (spec 4.18, 8 item
//! 15). E1 (5.14 to 6.14) test-and-cleared the accessed bit of the swap PTE as if it
//! were present; the 6.15 fix (fixes v2 13/17) tests only present PTEs, and asks the
//! notifier in both cases. On x86-64 the swap word's accessed bit is always clear
//! (`swp_misread.rs`), so both eras give the same answer there: the entry is "old" for
//! the CPU and the device answers for itself (derived).
//!
//! The model has no LRU: frames Linux would skip as not on an LRU list
//! (`folio_test_lru()`) are, here, the ones that are neither anonymous nor shmem
//! folios (free frames, page tables, the zero page).

use std::ops::ControlFlow;

use super::folio::Folio;
use super::mm_types::Mm;
use super::page::PageFlags;
use super::page_alloc::PhysMem;
use super::pagewalk::PtlGuard;
use super::pgtable::{Pmd, PresentPte, Pte, PteFlags};
use super::rmap::PvmwHit;
use super::swp_misread;
use crate::error::Errno;
use crate::types::{PAGE_SIZE, Pfn, VirtAddr};

/// Frames per bitmap word (Linux: `BITMAP_CHUNK_BITS`); reads and writes start at a
/// multiple of it.
pub const PAGE_IDLE_CHUNK_BITS: u64 = 64;

impl PhysMem {
    /// The folio at `pfn` with a reference, if it is a user folio whose head (or small
    /// page) `pfn` is.
    ///
    /// Linux: `page_idle_get_folio()`.
    fn page_idle_get_folio(&self, pfn: Pfn) -> Option<Folio> {
        let page = self.page(pfn)?;
        if page.test(PageFlags::TAIL) {
            return None;
        }
        self.lru_folio_get(pfn)
    }

    /// The folio containing `pfn` with a reference, if it is a user (anonymous or
    /// shmem) folio: the model's stand-in for "on an LRU list".
    ///
    /// Linux: `damon_get_folio()` (and the LRU half of `page_idle_get_folio()`).
    pub(super) fn lru_folio_get(&self, pfn: Pfn) -> Option<Folio> {
        if !self.pfn_valid(pfn) || self.is_free_frame(pfn) {
            return None;
        }
        let folio = self.page_folio(pfn).ok()?;
        // hugetlb folios are never on an LRU (Linux: folio_test_lru() fails).
        if self.folio_test_hugetlb(folio) {
            return None;
        }
        let user = self.folio_test(folio, PageFlags::ANON)
            || self
                .page(folio.head())
                .is_some_and(|h| h.mapping().is_some());
        if !user || self.is_zero_pfn(folio.head()) || !self.folio_try_get(folio) {
            return None;
        }
        if self.page_folio(pfn) != Ok(folio) {
            self.folio_put(folio);
            return None;
        }
        Some(folio)
    }

    /// Clears the accessed bits of every mapping of `folio` (and asks the devices); if
    /// any was set, the folio is no longer idle and becomes young.
    ///
    /// Linux: `page_idle_clear_pte_refs()` + `page_idle_clear_pte_refs_one()`.
    pub fn page_idle_clear_pte_refs(&self, folio: Folio) {
        let mapped = self
            .page(folio.head())
            .is_some_and(|h| h.mapping().is_some());
        if !self.folio_mapped(folio) || !mapped {
            return;
        }
        let mut referenced = false;
        self.rmap_walk(folio, |hit| {
            let handles = hit.mm.profile().walkers_handle_entries;
            let _ = hit
                .mm
                .page_vma_mapped_walk(folio, &hit.vma, hit.address, |found| {
                    match found {
                        PvmwHit::Pte { ptl, addr, pte } => {
                            if handles {
                                // 6.15: "old" from a CPU perspective unless present.
                                if pte.present().is_some() {
                                    referenced |= ptep_test_and_clear_young(ptl, addr, pte);
                                }
                            } else {
                                referenced |= ptep_test_and_clear_young(ptl, addr, pte);
                            }
                            referenced |= hit
                                .mm
                                .mmu_notifier_clear_young(addr.raw(), addr.raw() + PAGE_SIZE);
                        }
                        PvmwHit::Pmd { addr, pmd } => {
                            referenced |= hit.mm.pmdp_test_and_clear_young(addr, pmd);
                            referenced |= hit
                                .mm
                                .mmu_notifier_clear_young(addr.raw(), addr.raw() + super::PMD_SIZE);
                        }
                    }
                    ControlFlow::Continue(())
                });
            ControlFlow::Continue(())
        });
        if referenced {
            self.folio_clear(folio, PageFlags::IDLE);
            self.folio_set(folio, PageFlags::YOUNG);
        }
    }

    /// Marks idle every frame whose bit is set in `bits`, frame `first + 64 * i + b`
    /// for bit `b` of word `i`, after clearing their accessed bits; frames that are not
    /// the head of a user folio are skipped. `EINVAL` if `first` is not a multiple of
    /// [`PAGE_IDLE_CHUNK_BITS`]; `ENXIO` if it is at or beyond the last frame. Words
    /// beyond the last frame are ignored. Returns the number of words consumed.
    ///
    /// Linux: `page_idle_bitmap_write()`.
    pub fn page_idle_bitmap_write(&self, first: u64, bits: &[u64]) -> Result<usize, Errno> {
        let words = self.page_idle_words(first, bits.len())?;
        for (i, &w) in bits.iter().take(words).enumerate() {
            for b in 0..PAGE_IDLE_CHUNK_BITS {
                if w & (1 << b) == 0 {
                    continue;
                }
                let pfn = Pfn::new(first + i as u64 * PAGE_IDLE_CHUNK_BITS + b);
                if let Some(folio) = self.page_idle_get_folio(pfn) {
                    self.page_idle_clear_pte_refs(folio);
                    self.folio_set(folio, PageFlags::IDLE);
                    self.folio_put(folio);
                }
            }
        }
        Ok(words)
    }

    /// Reads `nr_words` words of the idle bitmap from frame `first`: a bit is set iff
    /// the frame is the head of a user folio that is still idle after its accessed bits
    /// were cleared (an access since it was marked makes it non-idle). `EINVAL` if
    /// `first` is not a multiple of [`PAGE_IDLE_CHUNK_BITS`]; nothing (end of file) from
    /// the last frame on; words beyond it are not returned.
    ///
    /// Linux: `page_idle_bitmap_read()`.
    pub fn page_idle_bitmap_read(&self, first: u64, nr_words: usize) -> Result<Vec<u64>, Errno> {
        let words = match self.page_idle_words(first, nr_words) {
            Err(Errno::ENXIO) => return Ok(Vec::new()),
            r => r?,
        };
        let mut out = vec![0u64; words];
        for (i, w) in out.iter_mut().enumerate() {
            for b in 0..PAGE_IDLE_CHUNK_BITS {
                let pfn = Pfn::new(first + i as u64 * PAGE_IDLE_CHUNK_BITS + b);
                let Some(folio) = self.page_idle_get_folio(pfn) else {
                    continue;
                };
                if self.folio_test(folio, PageFlags::IDLE) {
                    self.page_idle_clear_pte_refs(folio);
                    if self.folio_test(folio, PageFlags::IDLE) {
                        *w |= 1 << b;
                    }
                }
                self.folio_put(folio);
            }
        }
        Ok(out)
    }

    /// How many of `nr_words` words from `first` lie below the last frame (`ENXIO`:
    /// none, as the write reports it).
    fn page_idle_words(&self, first: u64, nr_words: usize) -> Result<usize, Errno> {
        if !first.is_multiple_of(PAGE_IDLE_CHUNK_BITS) {
            return Err(Errno::EINVAL);
        }
        let end = self.nr_frames();
        if first >= end {
            return Err(Errno::ENXIO);
        }
        Ok(((end - first).div_ceil(PAGE_IDLE_CHUNK_BITS) as usize).min(nr_words))
    }
}

/// Test-and-clear of the accessed bit of what a page_vma_mapped walk handed over: a
/// present PTE loses its accessed bit. A device-exclusive entry reaches here only from
/// an E1 walker, which treated it as present: on x86-64 its accessed bit (bit 5 of the
/// swap word) is always clear (`swp_misread.rs`), so the answer is false and the word
/// is left as it is.
///
/// Linux: `ptep_test_and_clear_young()`.
pub(super) fn ptep_test_and_clear_young(ptl: &mut PtlGuard<'_>, addr: VirtAddr, pte: Pte) -> bool {
    match pte {
        Pte::Present(p) if p.is_young() => {
            ptl.set(addr, Pte::Present(p.without(PteFlags::ACCESSED)));
            true
        }
        Pte::Swap(s) => swp_misread::pte_young(s),
        _ => false,
    }
}

impl Mm {
    /// Clears the accessed bit of the huge PMD at `haddr` (the caller holds
    /// `page_table_lock`, as a page_vma_mapped walk's PMD hit does); whether it was set.
    ///
    /// Linux: `pmdp_test_and_clear_young()`.
    pub(super) fn pmdp_test_and_clear_young(&self, haddr: VirtAddr, pmd: PresentPte) -> bool {
        if !pmd.is_young() {
            return false;
        }
        let Some(slot) = self.pmd_slot(haddr) else {
            return false;
        };
        self.set_pmd(slot, haddr, Pmd::Huge(pmd.without(PteFlags::ACCESSED)));
        true
    }
}
