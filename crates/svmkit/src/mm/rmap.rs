//! Reverse-mapping bookkeeping: mapcounts and the anon flags a mapping sets.
//!
//! This layer keeps the per-page mapcount and PageAnon/PageAnonExclusive in step with
//! the page tables. The anon_vma tree that lets a walker find a page's mappings comes
//! with the fork/rmap layer.

use super::folio::Folio;
use super::page::PageFlags;
use super::page_alloc::PhysMem;
use crate::types::Pfn;

impl PhysMem {
    /// Accounts the first mapping of a freshly allocated anonymous folio: PageAnon on
    /// the folio, PageAnonExclusive and mapcount 1 on each page.
    ///
    /// Linux: `folio_add_new_anon_rmap()` (with `RMAP_EXCLUSIVE`).
    pub(crate) fn folio_add_new_anon_rmap(&self, folio: Folio) {
        self.folio_set(folio, PageFlags::ANON);
        for pfn in folio.pfns() {
            if let Some(p) = self.page(pfn) {
                p.set(PageFlags::ANON_EXCLUSIVE);
                p.set_mapcount(1);
            }
        }
    }

    /// Accounts one more PTE mapping of an existing anon page.
    ///
    /// Linux: `folio_add_anon_rmap_pte()`.
    #[expect(dead_code, reason = "used by fork (the rmap layer)")]
    pub(crate) fn folio_add_anon_rmap_pte(&self, pfn: Pfn) {
        if let Some(p) = self.page(pfn) {
            p.mapcount_add(1);
        }
    }

    /// Accounts the removal of one PTE mapping of `pfn`. Reports a mapcount that would
    /// go negative instead of storing it.
    ///
    /// Linux: `folio_remove_rmap_pte()`.
    pub(crate) fn folio_remove_rmap_pte(&self, pfn: Pfn) {
        if let Some(p) = self.page(pfn)
            && p.mapcount_add(-1) < 0
        {
            p.mapcount_add(1);
            self.report_bad(pfn, "mapcount underflow");
        }
    }
}
