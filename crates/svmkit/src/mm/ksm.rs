//! Kernel samepage merging (Linux: `mm/ksm.c`), one explicit pass at a time.
//!
//! `MADV_MERGEABLE` marks VMAs `VM_MERGEABLE`; [`MmUser::ksm_scan`] looks up every
//! small anonymous page mapped by a present PTE there (`folio_walk`: non-present
//! entries, device-exclusive ones included, are never candidates), groups the pages
//! by content, and merges each group into one KSM page: write-protected in every
//! mapping (`write_protect_page()`), then mapped read-only in place of the others
//! (`replace_page()`). A write to a KSM page copies it (COW; a KSM folio is never
//! reused). `MADV_UNMERGEABLE` copies every KSM page of the range back
//! (`break_ksm()`). The model merges within one mm per scan and keeps no unstable
//! tree between scans (docs/ARCHITECTURE.md 39).
//!
//! Device-exclusive entries (spec 4.10, 8 item 11): a page converted after the
//! lookup is met again by `write_protect_page()`'s `page_vma_mapped_walk()`, which
//! returns the entry:
//! * 5.14 to 6.14: it reads the write and dirty bits of the non-present PTE (none
//!   set in a swap PTE), so it leaves the entry as it is and hands it to
//!   `replace_page()` as the PTE to replace, which maps the KSM page over the entry
//!   and removes the page's rmap, already removed by 5.14's conversion: the mapcount
//!   goes below zero (a bad page the checker reports), and the device's page is gone
//!   from the CPU's view.
//! * 6.15 (fixes v2 09/17): it gives up on a non-present PTE, "just like the next
//!   folio_walk would", and the page is not merged.

use std::ops::ControlFlow;

use super::folio::Folio;
use super::mm_types::{Mm, MmUser};
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::page::{Mapping, PageFlags};
use super::page_alloc::PhysMem;
use super::pgtable::{PresentPte, Pte, PteFlags};
use super::rmap::PvmwHit;
use super::vma::{VmFlags, Vma, VmaTree};
use crate::error::Errno;
use crate::types::{PAGE_SIZE, Pfn, VirtAddr, WORDS_PER_PAGE};

impl PhysMem {
    /// Whether `folio` is a KSM page.
    ///
    /// Linux: `folio_test_ksm()`.
    pub fn folio_test_ksm(&self, folio: Folio) -> bool {
        matches!(
            self.page(folio.head()).and_then(|p| p.mapping()),
            Some(Mapping::Ksm(_))
        )
    }

    /// Whether one of KSM page `folio`'s rmap items names `addr` (in any mm): where
    /// `rmap_walk_ksm()` looks for its mappings. False for a folio that is not KSM.
    pub fn ksm_item_at(&self, folio: Folio, addr: VirtAddr) -> bool {
        let Some(Mapping::Ksm(node)) = self.page(folio.head()).and_then(|p| p.mapping()) else {
            return false;
        };
        self.mappings
            .ksm
            .lock()
            .get(&node)
            .is_some_and(|items| items.iter().any(|&(_, a)| a == addr))
    }

    fn page_words(&self, pfn: Pfn) -> Option<Vec<u64>> {
        (0..WORDS_PER_PAGE as u64)
            .map(|i| self.read_u64(pfn, i * 8).ok())
            .collect()
    }
}

/// A candidate the scan found, with a reference taken under the PTL.
struct Candidate {
    vma: Vma,
    addr: VirtAddr,
    folio: Folio,
}

impl MmUser {
    /// One KSM pass over this mm's `VM_MERGEABLE` VMAs: pages with the same contents
    /// become one read-only KSM page. Returns how many pages were merged into
    /// another (Linux: the growth of `pages_sharing` plus new `pages_shared`).
    ///
    /// Linux: `ksm_do_scan()` → `cmp_and_merge_page()` →
    /// `try_to_merge_with_ksm_page()` / `try_to_merge_two_pages()`.
    pub fn ksm_scan(&self) -> u64 {
        let guard = self.mmap_read_lock();
        let cands = self.ksm_candidates(&guard);
        let mem = self.mem();
        // Group by contents; a KSM page of a group is its target.
        let mut groups: Vec<(Vec<u64>, Vec<usize>)> = Vec::new();
        for (i, c) in cands.iter().enumerate() {
            let Some(words) = mem.page_words(c.folio.head()) else {
                continue;
            };
            match groups.iter_mut().find(|(w, _)| *w == words) {
                Some((_, members)) => members.push(i),
                None => groups.push((words, vec![i])),
            }
        }
        let mut merged = 0;
        for (_, members) in groups {
            let ksm = members
                .iter()
                .copied()
                .find(|&i| mem.folio_test_ksm(cands[i].folio));
            let mut kpage = ksm.map(|i| cands[i].folio);
            // A page promoted here, and whether anything merged into it yet.
            let mut promoted: Option<(Folio, Mapping)> = None;
            let mut merged_here = 0;
            for &i in &members {
                let c = &cands[i];
                if Some(c.folio) == kpage {
                    continue;
                }
                crate::sync::yield_now();
                match kpage {
                    None => {
                        // The first of a group becomes the KSM page.
                        let was = mem.page(c.folio.head()).and_then(|p| p.mapping());
                        if members.len() > 1
                            && let Some(was) = was
                            && self
                                .try_to_merge_one_page(&c.vma, c.addr, c.folio, None)
                                .is_ok()
                        {
                            kpage = Some(c.folio);
                            promoted = Some((c.folio, was));
                        }
                    }
                    Some(k) => {
                        if self
                            .try_to_merge_one_page(&c.vma, c.addr, c.folio, Some(k))
                            .is_ok()
                        {
                            merged_here += 1;
                        }
                    }
                }
            }
            merged += merged_here;
            // Linux: try_to_merge_two_pages() undoes the first page's promotion when
            // the second does not merge (break_cow()); the model gives the page its
            // anon identity back (it stays write-protected: the next write reuses it).
            if merged_here == 0
                && let Some((f, was)) = promoted
                && let Some(h) = mem.page(f.head())
                && let Some(Mapping::Ksm(node)) = h.mapping()
            {
                h.set_mapping(Some(was), h.index());
                mem.mappings.ksm.lock().remove(&node);
            }
        }
        for c in cands {
            mem.folio_put(c.folio);
        }
        merged
    }
}

impl Mm {
    /// Copies every KSM page mapped in `[start, end)` back into a private page (an
    /// unshare fault), as `MADV_UNMERGEABLE` does.
    ///
    /// Linux: `unmerge_ksm_pages()` → `break_ksm()`.
    pub(crate) fn break_ksm(&self, tree: &VmaTree, start: VirtAddr, end: VirtAddr) {
        for vma in tree.intersecting(start, end) {
            let (s, e) = (vma.start().max(start), vma.end().min(end));
            for a in (s.raw()..e.raw()).step_by(PAGE_SIZE as usize) {
                let va = VirtAddr::new_truncate(a);
                let Pte::Present(p) = self.pte_get_lockless(va) else {
                    continue;
                };
                let ksm = self
                    .mem()
                    .page_folio(p.pfn)
                    .is_ok_and(|f| self.mem().folio_test_ksm(f));
                if ksm {
                    let _ = self.unshare_anon_page(vma, va);
                }
            }
        }
    }

    /// The small anonymous pages mapped by present PTEs in mergeable private VMAs,
    /// each with a reference.
    ///
    /// Linux: `scan_get_next_rmap_item()` → `folio_walk_start()`.
    fn ksm_candidates(&self, tree: &VmaTree) -> Vec<Candidate> {
        let mem = &self.mem;
        let mut out = Vec::new();
        for vma in tree.iter() {
            if !vma.flags.contains(VmFlags::MERGEABLE) || vma.flags.contains(VmFlags::SHARED) {
                continue;
            }
            self.for_each_pte_table(vma.start(), vma.end(), |ptl, s, e| {
                for a in (s.raw()..e.raw()).step_by(PAGE_SIZE as usize) {
                    let va = VirtAddr::new_truncate(a);
                    let Pte::Present(p) = ptl.get(va) else {
                        continue;
                    };
                    if p.is_special() {
                        continue;
                    }
                    if let Ok(f) = mem.page_folio(p.pfn)
                        && !f.is_large()
                        && mem.folio_test(f, PageFlags::ANON)
                        && mem.folio_try_get(f)
                    {
                        out.push(Candidate {
                            vma: vma.clone(),
                            addr: va,
                            folio: f,
                        });
                    }
                }
            });
        }
        out
    }

    /// Write-protects `folio` at `addr` and maps `kpage` there instead, or with no
    /// `kpage` makes `folio` the KSM page. `EBUSY`/`EFAULT`: not merged.
    ///
    /// Linux: `try_to_merge_one_page()`.
    fn try_to_merge_one_page(
        &self,
        vma: &Vma,
        addr: VirtAddr,
        folio: Folio,
        kpage: Option<Folio>,
    ) -> Result<(), Errno> {
        let mem = &self.mem;
        let Some(lock) = mem.folio_trylock(folio) else {
            return Err(Errno::EBUSY);
        };
        let r = self
            .write_protect_page(vma, addr, folio)
            .and_then(|orig| match kpage {
                None => {
                    let node = mem.mappings.next_id();
                    let av = vma.anon_vma().map(|a| a.id()).ok_or(Errno::EFAULT)?;
                    mem.mappings.ksm.lock().insert(node, vec![(av, addr)]);
                    if let Some(h) = mem.page(folio.head()) {
                        h.set_mapping(Some(Mapping::Ksm(node)), h.index());
                    }
                    Ok(())
                }
                Some(k) => {
                    let same = mem.page_words(folio.head()) == mem.page_words(k.head());
                    if !same {
                        return Err(Errno::EBUSY);
                    }
                    self.replace_page(vma, addr, folio, k, orig)
                }
            });
        drop(lock);
        r
    }

    /// Makes the PTE mapping `folio` at `addr` read-only and clean (the dirty bit
    /// goes to the folio, PageAnonExclusive is cleared), unless the folio has more
    /// references than mappings (a GUP pin); returns the PTE as it is now, for
    /// `replace_page()` to check. A non-present PTE: 6.15 gives up (`EFAULT`); 5.14
    /// reads its write and dirty bits (none) and returns it unchanged (spec 8 item
    /// 11).
    ///
    /// Linux: `write_protect_page()`.
    fn write_protect_page(&self, vma: &Vma, addr: VirtAddr, folio: Folio) -> Result<Pte, Errno> {
        let mem = &self.mem;
        let gives_up = self.profile().walkers_handle_entries;
        let range = MmuNotifierRange::new(
            self,
            MmuNotifierEvent::Clear,
            addr.raw(),
            addr.raw() + PAGE_SIZE,
        )
        .invalidate_range_start();
        let mut out = Err(Errno::EFAULT);
        let _ = self.page_vma_mapped_walk(folio, &vma.info(), addr, |hit| {
            let PvmwHit::Pte { ptl, addr: at, pte } = hit else {
                return ControlFlow::Break(());
            };
            let p = match pte {
                Pte::Present(p) => p,
                // 6.15 (fixes v2 09/17): "just like the next folio_walk would".
                _ if gives_up => return ControlFlow::Break(()),
                // 5.14: pte_write()/pte_dirty() of a swap PTE are false: nothing to
                // protect, and the entry is what replace_page() will check.
                other => {
                    out = Ok(other);
                    return ControlFlow::Break(());
                }
            };
            let exclusive = mem
                .page(p.pfn)
                .is_some_and(|pg| pg.test(PageFlags::ANON_EXCLUSIVE));
            if p.is_write() || p.is_dirty() || exclusive {
                ptl.clear(at);
                // Linux: the mapcount + 1 (our reference) must be all there is.
                if mem.folio_mapcount(folio) + 1 != mem.folio_ref_count(folio)
                    || (exclusive && mem.folio_maybe_dma_pinned(folio))
                {
                    ptl.set(at, Pte::Present(p));
                    out = Err(Errno::EBUSY);
                    return ControlFlow::Break(());
                }
                if let Some(pg) = mem.page(p.pfn) {
                    pg.clear(PageFlags::ANON_EXCLUSIVE);
                }
                if p.is_dirty() {
                    mem.folio_set(folio, PageFlags::DIRTY);
                }
                let ro = p.without(PteFlags::WRITE).without(PteFlags::DIRTY);
                ptl.set(at, Pte::Present(ro));
                out = Ok(Pte::Present(ro));
            } else {
                out = Ok(Pte::Present(p));
            }
            ControlFlow::Break(())
        });
        range.end();
        out
    }

    /// Maps `kpage` read-only at `addr` in place of `folio`, if the PTE is still
    /// `orig`; the KSM page gains an rmap item, `folio` loses its mapping (rmap and
    /// reference).
    ///
    /// Linux: `replace_page()`.
    fn replace_page(
        &self,
        vma: &Vma,
        addr: VirtAddr,
        folio: Folio,
        kpage: Folio,
        orig: Pte,
    ) -> Result<(), Errno> {
        let mem = &self.mem;
        let Some(Mapping::Ksm(node)) = mem.page(kpage.head()).and_then(|p| p.mapping()) else {
            return Err(Errno::EFAULT);
        };
        let av = vma.anon_vma().map(|a| a.id()).ok_or(Errno::EFAULT)?;
        let range = MmuNotifierRange::new(
            self,
            MmuNotifierEvent::Clear,
            addr.raw(),
            addr.raw() + PAGE_SIZE,
        )
        .invalidate_range_start();
        let done = self.pte_offset_map_lock(addr).and_then(|mut ptl| {
            if ptl.get(addr) != orig {
                return None;
            }
            mem.folio_get(kpage);
            mem.folio_add_anon_rmap_pte(kpage.head());
            mem.mlock_vma_folio(kpage, vma.flags);
            ptl.clear(addr);
            ptl.set(
                addr,
                Pte::Present(PresentPte::new(kpage.head(), vma.page_prot())),
            );
            mem.mappings
                .ksm
                .lock()
                .entry(node)
                .or_default()
                .push((av, addr));
            // The page's mapping goes: its rmap (5.14: already gone for an entry, so
            // it underflows) and the reference the PTE or entry held.
            let pfn = match orig {
                Pte::Present(p) => p.pfn,
                Pte::Swap(s) => s.pfn().unwrap_or(folio.head()),
                Pte::None => folio.head(),
            };
            mem.folio_remove_rmap_pte(pfn);
            mem.munlock_vma_folio(folio, vma.flags);
            mem.folio_put(folio);
            Some(())
        });
        range.end();
        done.ok_or(Errno::EFAULT)
    }
}
