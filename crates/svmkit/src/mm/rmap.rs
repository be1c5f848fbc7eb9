//! Reverse mapping (Linux: `mm/rmap.c`, `mm/page_vma_mapped.c`): from a folio to every
//! place that maps it.
//!
//! Two halves:
//! * **Bookkeeping** on the folio: mapcount per page, PageAnon/PageAnonExclusive, and
//!   `folio->mapping`/`folio->index` (which [`AnonVma`] or shmem object, which page
//!   offset), set when a folio is first mapped.
//! * **The walk**: an [`AnonVma`] lists every VMA, in every mm, that may map folios
//!   faulted in under it (Linux: the anon_vma's interval tree of anon_vma_chains).
//!   [`PhysMem::rmap_walk`] visits each such VMA at the address the folio's index
//!   gives there, and [`Mm::page_vma_mapped_walk`] finds the PTEs in that VMA that
//!   really map a page of the folio.
//!
//! The walk takes no mmap lock: the anon_vma's lock (a reader/writer semaphore, Linux:
//! `anon_vma->root->rwsem`) is what keeps the VMAs it lists, and their page tables,
//! alive. VMA changes relink under its write side; munmap and exit unlink after the
//! zap and before the page tables are freed, as Linux's `free_pgtables()` does.
//!
//! Lock order (DESIGN.md): mmap lock → folio lock → anon_vma lock → PTL.
//!
//! # Where the model is simpler than Linux
//! Linux gives each VMA its own anon_vma plus links to its ancestors' (so a walk from a
//! child's COW copy visits only the child's side of the fork tree). The model keeps
//! one anon_vma per fork family (Linux's root): a walk may visit VMAs that cannot map
//! the folio, and `page_vma_mapped_walk` finds nothing there. The set of mappings
//! found is the same; only the cost differs.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};

use super::folio::Folio;
use super::gup::GupFlags;
use super::mm_types::Mm;
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange, Owner};
use super::page::{Mapping, PageFlags};
use super::page_alloc::PhysMem;
use super::pagewalk::PtlGuard;
use super::pgtable::{PMD_SIZE, Pmd, PresentPte, Pte, PteFlags, SwapPte};
use super::shmem::Shmem;
use super::vma::VmFlags;
use crate::error::Errno;
use crate::sync::{Arc, MmapLock, MmapReadGuard, Mutex};
use crate::task::Task;
use crate::types::{PAGE_SHIFT, PAGE_SIZE, Pfn, VirtAddr};

/// What a walker needs of a VMA, copied when the VMA is linked (the anon_vma lock, not
/// the mmap lock, protects it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmaInfo {
    /// Linux: `vm_start`.
    pub start: VirtAddr,
    /// Linux: `vm_end`.
    pub end: VirtAddr,
    /// Linux: `vm_pgoff`: the page offset of `start` in the VMA's mapping.
    pub pgoff: u64,
    /// Linux: `vm_flags`.
    pub flags: VmFlags,
}

impl VmaInfo {
    /// Pages covered.
    pub fn nr_pages(&self) -> u64 {
        (self.end.raw() - self.start.raw()) >> PAGE_SHIFT
    }

    /// The address of page offset `pgoff` in this VMA, if it falls inside.
    ///
    /// Linux: `vma_address()` for one page.
    pub fn address_of(&self, pgoff: u64) -> Option<VirtAddr> {
        let rel = pgoff.checked_sub(self.pgoff)?;
        (rel < self.nr_pages())
            .then(|| VirtAddr::new_truncate(self.start.raw() + (rel << PAGE_SHIFT)))
    }
}

/// One VMA an anon_vma lists.
struct AvcEntry {
    mm: Weak<Mm>,
    vma: VmaInfo,
}

/// Linux: `struct anon_vma` (the root of a fork family): the VMAs, in every mm of the
/// family, that may map anonymous folios faulted in under it.
pub struct AnonVma {
    id: u64,
    mem: Weak<PhysMem>,
    /// Linux: `anon_vma->rb_root` under `anon_vma->root->rwsem`. Keyed by (mm id, vm_start).
    chain: MmapLock<BTreeMap<(u64, VirtAddr), AvcEntry>>,
}

impl AnonVma {
    /// A new, empty anon_vma registered with `mem`.
    ///
    /// Linux: `anon_vma_alloc()`.
    pub(crate) fn new(mem: &Arc<PhysMem>) -> Arc<AnonVma> {
        let id = mem.mappings.next_id();
        let av = Arc::new(AnonVma {
            id,
            mem: Arc::downgrade(mem),
            chain: MmapLock::new(BTreeMap::new()),
        });
        mem.mappings.anon.lock().insert(id, Arc::downgrade(&av));
        av
    }

    /// The id `folio->mapping` stores.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Number of VMAs linked.
    pub fn nr_vmas(&self) -> usize {
        self.chain.read().len()
    }

    /// Atomically (under the write lock) removes the entries of `mm` starting at
    /// `remove` and adds `add`.
    ///
    /// Linux: the `anon_vma_lock_write()` sections of `vma_adjust`/`anon_vma_clone`/
    /// `unlink_anon_vmas`.
    pub(crate) fn relink(&self, mm_id: u64, mm: &Weak<Mm>, remove: &[VirtAddr], add: &[VmaInfo]) {
        let mut chain = self.chain.write();
        for start in remove {
            chain.remove(&(mm_id, *start));
        }
        for v in add {
            chain.insert(
                (mm_id, v.start),
                AvcEntry {
                    mm: mm.clone(),
                    vma: *v,
                },
            );
        }
    }

    /// Takes the lock for writing: no rmap walk runs until the guard drops (mremap
    /// holds it while entries move between two VMAs of the anon_vma).
    ///
    /// Linux: `anon_vma_lock_write()`.
    pub(crate) fn lock_write(&self) -> AnonVmaWriteGuard<'_> {
        AnonVmaWriteGuard {
            _chain: self.chain.write(),
        }
    }

    /// Takes the lock for reading (for walks).
    ///
    /// Linux: `anon_vma_lock_read()`.
    pub fn lock_read(&self) -> AnonVmaReadGuard<'_> {
        AnonVmaReadGuard {
            chain: self.chain.read(),
        }
    }
}

/// Proof that an anon_vma's lock is held for writing (Linux: `anon_vma_lock_write()`
/// until `anon_vma_unlock_write()`).
pub(crate) struct AnonVmaWriteGuard<'a> {
    _chain: crate::sync::MmapWriteGuard<'a, BTreeMap<(u64, VirtAddr), AvcEntry>>,
}

impl Drop for AnonVma {
    fn drop(&mut self) {
        if let Some(mem) = self.mem.upgrade() {
            mem.mappings.anon.lock().remove(&self.id);
        }
    }
}

impl fmt::Debug for AnonVma {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnonVma")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The anon_vma lock held for reading.
pub struct AnonVmaReadGuard<'a> {
    chain: MmapReadGuard<'a, BTreeMap<(u64, VirtAddr), AvcEntry>>,
}

impl fmt::Debug for AnonVmaReadGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnonVmaReadGuard")
            .field("vmas", &self.chain.len())
            .finish()
    }
}

/// The registries `folio->mapping` ids resolve through.
#[derive(Default)]
pub(crate) struct MappingRegistry {
    next_id: AtomicU64,
    pub(super) anon: Mutex<BTreeMap<u64, Weak<AnonVma>>>,
    pub(super) shmem: Mutex<BTreeMap<u64, Weak<Shmem>>>,
    /// KSM stable nodes: where each KSM page is mapped, as (anon_vma id, address)
    /// rmap items (Linux: `stable_node->hlist` of `ksm_rmap_item`s).
    pub(super) ksm: Mutex<BTreeMap<u64, Vec<(u64, VirtAddr)>>>,
}

impl MappingRegistry {
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// One place a folio may be mapped, as a walk reports it.
#[derive(Debug)]
pub struct RmapHit<'a> {
    /// The mm.
    pub mm: &'a Arc<Mm>,
    /// The VMA (as linked).
    pub vma: VmaInfo,
    /// The address of the folio's first page there (Linux: `vma_address()`; may lie
    /// below `vma.start` for a large folio that only partly overlaps the VMA).
    pub address: VirtAddr,
}

impl PhysMem {
    /// The anon_vma with this id, if it still exists.
    pub fn anon_vma(&self, id: u64) -> Option<Arc<AnonVma>> {
        self.mappings.anon.lock().get(&id).and_then(Weak::upgrade)
    }

    /// Every shmem object still alive, in creation order.
    pub fn shmem_objects(&self) -> Vec<Arc<Shmem>> {
        self.mappings
            .shmem
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Calls `f` for every VMA that may map `folio`, with the anon_vma lock held for
    /// reading, until `f` breaks. Folios without an anon mapping (free, shmem, page
    /// tables) have no anon rmap and yield nothing.
    ///
    /// Linux: `rmap_walk()` → `rmap_walk_anon()`.
    pub fn rmap_walk(&self, folio: Folio, mut f: impl FnMut(&RmapHit<'_>) -> ControlFlow<()>) {
        let Some(head) = self.page(folio.head()) else {
            return;
        };
        let id = match head.mapping() {
            Some(Mapping::Anon(id)) => id,
            Some(Mapping::Ksm(node)) => return self.rmap_walk_ksm(node, f),
            _ => return,
        };
        let Some(av) = self.anon_vma(id) else {
            return;
        };
        let first = head.index();
        let last = first + folio.nr_pages() - 1;
        let guard = av.lock_read();
        for entry in guard.chain.values() {
            let v = entry.vma;
            if v.pgoff > last || v.pgoff + v.nr_pages() <= first {
                continue;
            }
            let Some(mm) = entry.mm.upgrade() else {
                continue;
            };
            let address = VirtAddr::new_truncate(
                (v.start.raw() as i128 + ((first as i128 - v.pgoff as i128) << PAGE_SHIFT)) as u64,
            );
            if f(&RmapHit {
                mm: &mm,
                vma: v,
                address,
            })
            .is_break()
            {
                return;
            }
        }
    }

    /// [`rmap_walk`](Self::rmap_walk) of a KSM page: every VMA, in the anon_vma of each
    /// rmap item, that covers the item's address.
    ///
    /// Linux: `rmap_walk_ksm()`.
    fn rmap_walk_ksm(&self, node: u64, mut f: impl FnMut(&RmapHit<'_>) -> ControlFlow<()>) {
        let items = self
            .mappings
            .ksm
            .lock()
            .get(&node)
            .cloned()
            .unwrap_or_default();
        for (av_id, address) in items {
            let Some(av) = self.anon_vma(av_id) else {
                continue;
            };
            let guard = av.lock_read();
            for entry in guard.chain.values() {
                let v = entry.vma;
                if address < v.start || address >= v.end {
                    continue;
                }
                let Some(mm) = entry.mm.upgrade() else {
                    continue;
                };
                if f(&RmapHit {
                    mm: &mm,
                    vma: v,
                    address,
                })
                .is_break()
                {
                    return;
                }
            }
        }
    }

    /// Every (mm id, address, pfn) at which some page of `folio` is mapped (present PTE,
    /// huge PMD or device-exclusive entry), found through the rmap walk (for the checker
    /// and tests).
    pub fn rmap_mappings(&self, folio: Folio) -> Vec<(u64, VirtAddr, Pfn)> {
        let mut out = Vec::new();
        self.rmap_walk(folio, |hit| {
            let _ = hit
                .mm
                .page_vma_mapped_walk(folio, &hit.vma, hit.address, |found| {
                    match found {
                        PvmwHit::Pte { addr, pte, .. } => {
                            if let Some(pfn) = mapped_pfn(pte) {
                                out.push((hit.mm.id(), addr, pfn));
                            }
                        }
                        PvmwHit::Pmd { addr, pmd } => out.push((hit.mm.id(), addr, pmd.pfn)),
                    }
                    ControlFlow::Continue(())
                });
            ControlFlow::Continue(())
        });
        out.sort();
        out
    }

    /// Accounts the first mapping of a freshly allocated anonymous folio: PageAnon and
    /// `mapping`/`index` on the folio, PageAnonExclusive and mapcount 1 on each page.
    ///
    /// Linux: `folio_add_new_anon_rmap()` (with `RMAP_EXCLUSIVE`).
    pub(crate) fn folio_add_new_anon_rmap(&self, folio: Folio, anon_vma: &AnonVma, index: u64) {
        self.folio_set(folio, PageFlags::ANON);
        if let Some(head) = self.page(folio.head()) {
            head.set_mapping(Some(Mapping::Anon(anon_vma.id())), index);
        }
        for pfn in folio.pfns() {
            if let Some(p) = self.page(pfn) {
                p.set(PageFlags::ANON_EXCLUSIVE);
                p.set_mapcount(1);
                self.trace_mapcount(pfn, 1);
            }
        }
    }

    /// Accounts one more PTE mapping of an anon page shared at fork: mapcount + 1 and
    /// PageAnonExclusive cleared (neither mm owns it alone any more).
    ///
    /// Linux: `folio_try_dup_anon_rmap_pte()` (which fails only for possibly pinned
    /// pages; the caller copies those instead).
    pub(crate) fn folio_dup_anon_rmap_pte(&self, pfn: Pfn) {
        if let Some(p) = self.page(pfn) {
            p.clear(PageFlags::ANON_EXCLUSIVE);
            p.mapcount_add(1);
            self.trace_mapcount(pfn, 1);
        }
    }

    /// Accounts one more PTE mapping of an existing anon page (restoring a mapping the
    /// 5.14 design dropped at conversion).
    ///
    /// Linux: `folio_add_anon_rmap_pte()`.
    pub(crate) fn folio_add_anon_rmap_pte(&self, pfn: Pfn) {
        if let Some(p) = self.page(pfn) {
            p.mapcount_add(1);
            self.trace_mapcount(pfn, 1);
        }
    }

    /// Accounts one more PTE mapping of a page-cache (shmem) page.
    ///
    /// Linux: `folio_add_file_rmap_pte()`.
    pub(crate) fn folio_add_file_rmap_pte(&self, pfn: Pfn) {
        if let Some(p) = self.page(pfn) {
            p.mapcount_add(1);
            self.trace_mapcount(pfn, 1);
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
        } else {
            self.trace_mapcount(pfn, -1);
        }
    }
}

/// The pfn an entry maps, for the entry kinds a page_vma_mapped walk recognises:
/// present PTEs and device-exclusive entries (both eras return those; what a walker
/// then does with a non-present entry is the era's business, spec 4.18). Migration
/// entries are recognised only by migration walks (not modelled yet).
///
/// Linux: `check_pte()`'s pfn extraction.
fn mapped_pfn(pte: Pte) -> Option<Pfn> {
    match pte {
        Pte::Present(p) => Some(p.pfn),
        Pte::Swap(s) if s.is_device_exclusive() => s.pfn(),
        _ => None,
    }
}

/// One mapping [`Mm::page_vma_mapped_walk`] found.
#[derive(Debug)]
pub enum PvmwHit<'g, 'a> {
    /// A PTE mapping a page of the folio; its table's PTL is held.
    Pte {
        /// The PTL, for changing the entry.
        ptl: &'g mut PtlGuard<'a>,
        /// Where.
        addr: VirtAddr,
        /// The entry.
        pte: Pte,
    },
    /// A huge PMD mapping the whole folio; `page_table_lock` is held.
    Pmd {
        /// The 2 MiB-aligned address.
        addr: VirtAddr,
        /// The PMD's entry.
        pmd: PresentPte,
    },
}

impl Mm {
    /// Calls `f`, with the right lock held, for every PTE inside `vma` that maps a page
    /// of `folio` and for a huge PMD mapping it, `address` being where the folio's
    /// first page would be (from [`PhysMem::rmap_walk`]); stops when `f` breaks and
    /// says so.
    ///
    /// Linux: `page_vma_mapped_walk()`.
    pub fn page_vma_mapped_walk(
        &self,
        folio: Folio,
        vma: &VmaInfo,
        address: VirtAddr,
        mut f: impl FnMut(PvmwHit<'_, '_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let lo = address.raw().max(vma.start.raw());
        let hi = (address.raw().saturating_add(folio.nr_pages() << PAGE_SHIFT)).min(vma.end.raw());
        let mut a = lo;
        while a < hi {
            let table_end = ((a & !(PMD_SIZE - 1)) + PMD_SIZE).min(hi);
            let at = VirtAddr::new_truncate(a);
            if let Pmd::Huge(_) = self.pmd_get_lockless(at) {
                let _deposits = self.page_table_lock();
                if let Pmd::Huge(pmd) = self.pmd_get_lockless(at)
                    && folio.contains(pmd.pfn)
                {
                    f(PvmwHit::Pmd {
                        addr: VirtAddr::new_truncate(a & !(PMD_SIZE - 1)),
                        pmd,
                    })?;
                }
                a = table_end;
                continue;
            }
            if let Some(mut ptl) = self.pte_offset_map_lock(at) {
                while a < table_end {
                    let va = VirtAddr::new_truncate(a);
                    let pte = ptl.get(va);
                    if mapped_pfn(pte).is_some_and(|pfn| folio.contains(pfn)) {
                        f(PvmwHit::Pte {
                            ptl: &mut ptl,
                            addr: va,
                            pte,
                        })?;
                    }
                    a += PAGE_SIZE;
                }
            }
            a = table_end;
        }
        ControlFlow::Continue(())
    }
}

/// A folio made device-exclusive by [`Mm::make_device_exclusive`]: locked and
/// referenced while the driver programs its device. Dropping the guard unlocks and puts
/// it (Linux: the caller's `folio_unlock()` + `folio_put()`); from then on a CPU access
/// revokes the device's exclusivity. [`leak`](Self::leak) keeps both, to reproduce a
/// driver that forgets them.
#[must_use = "dropping the guard unlocks and puts the folio at once"]
pub struct ExclusiveFolio {
    mem: Arc<PhysMem>,
    folio: Folio,
    page: Pfn,
    addr: VirtAddr,
    armed: bool,
}

impl ExclusiveFolio {
    /// The page made exclusive (Linux: the returned `struct page *`).
    pub fn page(&self) -> Pfn {
        self.page
    }

    /// Its folio (Linux: `*foliop`).
    pub fn folio(&self) -> Folio {
        self.folio
    }

    /// The (page-aligned) address converted.
    pub fn addr(&self) -> VirtAddr {
        self.addr
    }

    /// Keeps the folio locked and referenced past the guard (nouveau's retry path
    /// before `b3fefbb30a16`); only an explicit `folio_unlock` + `folio_put` undoes it.
    pub fn leak(mut self) -> (Folio, Pfn) {
        self.armed = false;
        (self.folio, self.page)
    }
}

impl Drop for ExclusiveFolio {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.mem.tracer().on() {
            return release_traced(&self.mem, self.folio);
        }
        self.mem.folio_unlock_as::<false>(self.folio);
        self.mem.folio_put_as::<false>(self.folio);
    }
}

/// An [`ExclusiveFolio`]'s release while recording, out of line so that the untraced
/// drop keeps nothing alive across a call (docs/TRACES.md, "Cost").
#[cold]
#[inline(never)]
fn release_traced(mem: &PhysMem, folio: Folio) {
    mem.folio_unlock(folio);
    mem.folio_put(folio);
}

impl fmt::Debug for ExclusiveFolio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExclusiveFolio")
            .field("folio", &self.folio)
            .field("page", &self.page)
            .field("addr", &self.addr)
            .field("armed", &self.armed)
            .finish()
    }
}

impl Mm {
    /// Replaces the PTE mapping `addr` (aligned down) with a device-exclusive entry and
    /// returns the page's folio locked and referenced, for the caller to program its
    /// device before dropping the guard (spec 2.4, the 6.15 design).
    ///
    /// * The caller holds the mmap lock for read (`guard` proves it).
    /// * GUP with `FOLL_GET|FOLL_WRITE|FOLL_SPLIT_PMD` first: it faults the page in
    ///   writable (breaking COW, replacing the zero page), PTE-maps a PMD-mapped THP
    ///   (the folio stays large), and restores an existing entry, which notifies that
    ///   entry's owner. Its errors are returned (`EFAULT` outside a VMA or in one
    ///   without write permission, `ENOMEM`).
    /// * Only anonymous folios: `EOPNOTSUPP` for shared memory.
    /// * The folio lock is taken killably (`EINTR` if `task` is killed).
    /// * An `Exclusive` notifier range carrying `owner` covers exactly the page: a
    ///   driver must filter its own event (or it livelocks, spec 6.3).
    /// * If the PTE changed since GUP (not the same page, not writable, not at PTE
    ///   level), everything is undone and GUP retried.
    /// * The entry keeps the PTE's reference and mapcount; the PTE's dirty bit moves to
    ///   the folio; soft-dirty is carried; the entry is "clean" and "old".
    ///
    /// Under a 5.14 profile (`convert_via_rmap_walk_whole_folio`), which had no
    /// single-page API, this is the range API over the one page, with a page that did
    /// not become exclusive reported as `EBUSY`.
    ///
    /// A caller converting several pages calls this once per page and drops each
    /// guard before the next call, as nouveau (one page per fault) and test_hmm's
    /// `dmirror_exclusive()` (6.15: `folio_unlock()` + `folio_put()` before the next
    /// address) do. Holding a guard across the conversion of another page of the same
    /// large folio self-deadlocks, as in Linux: the later call's GUP may have to restore
    /// an entry of that folio, and the restore waits for the folio lock the caller
    /// holds.
    ///
    /// Linux: `make_device_exclusive()`.
    pub fn make_device_exclusive(
        &self,
        guard: &mut MmapReadGuard<'_, super::VmaTree>,
        addr: u64,
        owner: Option<Owner>,
        task: &Task,
    ) -> Result<ExclusiveFolio, Errno> {
        self.mem.tracer().traced(
            || crate::trace::Payload::MakeDeviceExclusive {
                mm: self.id(),
                start: addr & !(PAGE_SIZE - 1),
                end: (addr & !(PAGE_SIZE - 1)) + PAGE_SIZE,
                owner: owner.map(|o| self.mem.tracer().owner_name(o)),
            },
            || self.make_device_exclusive_body(guard, addr, owner, task),
            crate::trace::result_text,
        )
    }

    /// [`make_device_exclusive`](Self::make_device_exclusive) without its trace operation.
    // Inlined into both of the traced wrapper's paths: with one caller it inlines
    // into the untraced path as it did before tracing (docs/TRACES.md, "Cost").
    #[inline(always)]
    fn make_device_exclusive_body(
        &self,
        guard: &mut MmapReadGuard<'_, super::VmaTree>,
        addr: u64,
        owner: Option<Owner>,
        task: &Task,
    ) -> Result<ExclusiveFolio, Errno> {
        if self.profile().convert_via_rmap_walk_whole_folio {
            // 5.14 had only the range API: one page of it, a NULL page reported as
            // EBUSY (what its callers turned it into).
            let start = addr & !(PAGE_SIZE - 1);
            let mut pages = self.make_device_exclusive_range_e1(guard, start, 1, owner)?;
            return pages.pop().flatten().ok_or(Errno::EBUSY);
        }
        let addr = addr & !(PAGE_SIZE - 1);
        let va = VirtAddr::try_new(addr).map_err(|_| Errno::EFAULT)?;
        let mem = &self.mem;
        loop {
            let (page, _vma) = self.get_user_page(
                guard,
                addr,
                GupFlags::GET | GupFlags::WRITE | GupFlags::SPLIT_PMD,
            )?;
            let folio = match mem.page_folio(page) {
                Ok(f) => f,
                Err(e) => {
                    mem.put_page(page);
                    return Err(e);
                }
            };
            // Linux: "!folio_test_anon(folio) || folio_test_hugetlb(folio)" (fixes v2
            // 02/17 came with this API: no kernel has one without the other).
            if !mem.folio_test(folio, PageFlags::ANON) || mem.folio_test_hugetlb(folio) {
                mem.folio_put(folio);
                return Err(Errno::EOPNOTSUPP);
            }
            match mem.folio_lock_killable(folio, task) {
                Ok(lock) => {
                    lock.leak();
                }
                Err(e) => {
                    mem.folio_put(folio);
                    return Err(e);
                }
            }
            // Inform secondary MMUs that this PTE becomes device-exclusive, so they
            // unmap it now; the caller filters this event by its owner.
            let mut range =
                MmuNotifierRange::new(self, MmuNotifierEvent::Exclusive, addr, addr + PAGE_SIZE);
            range.owner = owner;
            let range = range.invalidate_range_start();
            // Linux: folio_walk_start(): the same page, at PTE level, writable.
            let converted = self
                .pte_offset_map_lock(va)
                .and_then(|mut ptl| match ptl.get(va) {
                    Pte::Present(p) if p.pfn == page && p.is_write() => {
                        // Linux: ptep_clear_flush(), then the dirty bit goes to the folio.
                        ptl.clear(va);
                        if p.is_dirty() {
                            mem.folio_set(folio, PageFlags::DIRTY);
                        }
                        let mut entry = SwapPte::device_exclusive(page, true);
                        entry.soft_dirty = p.flags.contains(PteFlags::SOFT_DIRTY);
                        ptl.set(va, Pte::Swap(entry));
                        Some(())
                    }
                    _ => None,
                });
            range.end();
            if converted.is_some() {
                return Ok(ExclusiveFolio {
                    mem: Arc::clone(mem),
                    folio,
                    page,
                    addr: va,
                    armed: true,
                });
            }
            // Raced with a change of the PTE: undo and start over from GUP.
            mem.folio_unlock(folio);
            mem.folio_put(folio);
            crate::sync::yield_now();
        }
    }

    /// The 2021 range API (spec 2.1): makes each page of `[start, end)`
    /// device-exclusive and returns one slot per page GUP found, `Some` (locked,
    /// referenced) for pages that became exclusive, `None` for the others; `Err` only
    /// when the first page cannot be looked up (Linux returns the negative count).
    /// Fewer slots than pages means GUP stopped early.
    ///
    /// One GUP of the whole range (which stops at the first page it cannot get, so a
    /// range ending far beyond the mappings, up to `u64::MAX`, costs what the mapped
    /// pages cost), then per page a trylock (no retry), the anon and tail-page checks,
    /// and an rmap walk converting every PTE of the whole folio in every VMA that maps
    /// it; failures are not rolled back. An `end` at or below `start` converts nothing.
    ///
    /// Only profiles with the range API have it ([`Profile::has_range_api`]: 5.14 to
    /// 6.14). Linux 6.15 removed it in favour of [`make_device_exclusive`] (fixes v2
    /// 03/17, spec 2.4): under such a profile this returns `ENOSYS`, the errno for
    /// an operation the kernel does not implement, and changes nothing. Callers loop
    /// over [`make_device_exclusive`] one page at a time instead.
    ///
    /// Linux 5.14 to 6.14: `make_device_exclusive_range()`.
    ///
    /// [`make_device_exclusive`]: Self::make_device_exclusive
    /// [`Profile::has_range_api`]: crate::Profile::has_range_api
    pub fn make_device_exclusive_range(
        &self,
        guard: &mut MmapReadGuard<'_, super::VmaTree>,
        start: u64,
        end: u64,
        owner: Option<Owner>,
        task: &Task,
    ) -> Result<Vec<Option<ExclusiveFolio>>, Errno> {
        self.mem.tracer().traced(
            || crate::trace::Payload::MakeDeviceExclusive {
                mm: self.id(),
                start,
                end,
                owner: owner.map(|o| self.mem.tracer().owner_name(o)),
            },
            || self.make_device_exclusive_range_body(guard, start, end, owner, task),
            |r| match r {
                Ok(v) => format!(
                    "ok, {} of {} pages exclusive",
                    v.iter().filter(|p| p.is_some()).count(),
                    v.len()
                )
                .into(),
                Err(e) => e.name().into(),
            },
        )
    }

    /// [`make_device_exclusive_range`](Self::make_device_exclusive_range) without its trace operation.
    fn make_device_exclusive_range_body(
        &self,
        guard: &mut MmapReadGuard<'_, super::VmaTree>,
        start: u64,
        end: u64,
        owner: Option<Owner>,
        task: &Task,
    ) -> Result<Vec<Option<ExclusiveFolio>>, Errno> {
        let _ = task; // 5.14 never waited for a folio lock: nothing to kill.
        if !self.profile().has_range_api {
            return Err(Errno::ENOSYS);
        }
        let start = start & !(PAGE_SIZE - 1);
        let npages = end.saturating_sub(start).div_ceil(PAGE_SIZE);
        self.make_device_exclusive_range_e1(guard, start, npages, owner)
    }

    /// The pre-fix loop of June 2021 (spec 8 item 1, switch `range_api_unsigned_index`)
    /// after GUP failed on the first page: `npages` is `-errno`, the unsigned index
    /// compares it as a huge count, and the loop starts on `pages[0]`, a slot GUP never
    /// wrote, going on until the kernel crashes. The model cannot follow a garbage
    /// pointer: it records the first bogus access as a bad-page report (at an invalid
    /// frame number, since the slot names no frame) and the caller gets the errno, so
    /// the checker fails where Linux would have crashed.
    ///
    /// Linux (Jun 2021, before Dan Carpenter's fix): the `for (i = 0; i < npages; i++)`
    /// loop of `make_device_exclusive_range()`.
    fn range_api_unsigned_index_overrun(&self) {
        self.mem.report_bad(
            Pfn::new(u64::MAX),
            "make_device_exclusive_range(): unsigned index against a negative npages reads pages[] GUP never filled",
        );
    }

    /// The body of the 2021 range API over `npages` pages from `start` (spec 2.1).
    ///
    /// Linux 5.14: `make_device_exclusive_range()`.
    fn make_device_exclusive_range_e1(
        &self,
        guard: &mut MmapReadGuard<'_, super::VmaTree>,
        start: u64,
        npages: u64,
        owner: Option<Owner>,
    ) -> Result<Vec<Option<ExclusiveFolio>>, Errno> {
        let mem = &self.mem;
        let pages = match self.get_user_pages(
            guard,
            start,
            npages,
            GupFlags::GET | GupFlags::WRITE | GupFlags::SPLIT_PMD,
        ) {
            Ok(pages) => pages,
            Err(e) if self.profile().range_api_unsigned_index => {
                self.range_api_unsigned_index_overrun();
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::with_capacity(pages.len());
        for (i, &page) in pages.iter().enumerate() {
            let addr = VirtAddr::new_truncate(start + i as u64 * PAGE_SIZE);
            let Ok(folio) = mem.page_folio(page) else {
                mem.put_page(page);
                out.push(None);
                continue;
            };
            // 5.18 moved the tail check before the trylock; in 5.14 the trylock of a
            // tail (its head) came first. Either way a tail page gives NULL.
            if self.profile().reject_tail_pages && page != folio.head() {
                mem.put_page(page);
                out.push(None);
                continue;
            }
            let Some(lock) = mem.folio_trylock(folio) else {
                mem.put_page(page);
                out.push(None);
                continue;
            };
            lock.leak();
            if self.page_make_device_exclusive(folio, addr, owner) {
                out.push(Some(ExclusiveFolio {
                    mem: Arc::clone(mem),
                    folio,
                    page,
                    addr,
                    armed: true,
                }));
            } else {
                mem.folio_unlock(folio);
                mem.put_page(page);
                out.push(None);
            }
        }
        Ok(out)
    }

    /// Converts every PTE mapping `folio`, in every VMA of every mm (the rmap walk),
    /// to a device-exclusive entry; true iff this mm's PTE at `addr` was writable and
    /// nothing maps the folio any more. A non-present PTE met on the way (an entry an
    /// earlier conversion left) ends the walk (`rmap_one` returns false); what was
    /// converted stays converted, and the walk's end does not decide the result: the
    /// caller returns `args.valid && !mapcount` whatever `rmap_one` said (5.14, and
    /// `folio_make_device_exclusive()` of mm/rmap.c in the Debian 6.1 and 6.12 trees).
    /// So a PTE-mapped THP whose other pages are still entries from an earlier call
    /// converts its restored head again (the kernels' goldens of
    /// `oracle/corpus/svm-atomic-thp-head.toml`: every pass succeeds and retries).
    ///
    /// The mapcount checked is the head page's (5.14: `page_mapcount(page)`, the page
    /// asked for, never a tail) or, with
    /// [`Profile::exclusive_checks_folio_mapcount`](crate::Profile::exclusive_checks_folio_mapcount)
    /// (6.1, 6.12), the whole folio's (`folio_mapcount(folio)`). They differ when a
    /// page of the folio is still present after the walk stopped early
    /// (`oracle/corpus/svm-atomic-thp-partial.toml`).
    ///
    /// Linux 5.14: `page_make_device_exclusive()` + `page_make_device_exclusive_one()`.
    fn page_make_device_exclusive(
        &self,
        folio: Folio,
        addr: VirtAddr,
        owner: Option<Owner>,
    ) -> bool {
        let mem = &self.mem;
        let hugetlb = mem.folio_test_hugetlb(folio);
        if !mem.folio_test(folio, PageFlags::ANON)
            || (hugetlb && self.profile().exclusive_rejects_hugetlb)
        {
            return false;
        }
        let (mut valid, mut ok) = (false, true);
        let folio_bytes = folio.nr_pages() << PAGE_SHIFT;
        mem.rmap_walk(folio, |hit| {
            // One Exclusive range per VMA mapping the folio, carrying the owner.
            let rstart = hit.address.raw().max(hit.vma.start.raw());
            let rend = (hit.address.raw() + folio_bytes).min(hit.vma.end.raw());
            let mut range =
                MmuNotifierRange::new(hit.mm, MmuNotifierEvent::Exclusive, rstart, rend);
            range.owner = owner;
            let range = range.invalidate_range_start();
            let walked = hit
                .mm
                .page_vma_mapped_walk(folio, &hit.vma, hit.address, |found| {
                    let (ptl, at, pte) = match found {
                        PvmwHit::Pte { ptl, addr, pte } => (ptl, addr, pte),
                        // A hugetlb PMD, which GUP did not split before 6.10: Linux's
                        // walk hands it over as a pte_t * (spec 8 item 20).
                        PvmwHit::Pmd { addr: at, pmd } if hugetlb => {
                            let write = hit.mm.hugetlb_convert_as_pte(
                                folio,
                                at,
                                pmd,
                                !hit.mm.profile().mapcount_kept_on_entry,
                            );
                            if hit.mm.id() == self.id() && at == addr && write {
                                valid = true;
                            }
                            return ControlFlow::Continue(());
                        }
                        // A THP's PMD-level hit cannot happen after FOLL_SPLIT_PMD
                        // (Linux: VM_BUG_ON).
                        PvmwHit::Pmd { .. } => return ControlFlow::Continue(()),
                    };
                    let Pte::Present(p) = pte else {
                        // Already exclusive (or another entry): fail, keep what was done.
                        ok = false;
                        return ControlFlow::Break(());
                    };
                    ptl.clear(at);
                    if p.is_dirty() {
                        mem.folio_set(folio, PageFlags::DIRTY);
                    }
                    if hit.mm.id() == self.id() && at == addr && p.is_write() {
                        valid = true;
                    }
                    let mut entry = SwapPte::device_exclusive(p.pfn, p.is_write());
                    entry.soft_dirty = p.flags.contains(PteFlags::SOFT_DIRTY);
                    entry.uffd_wp = p.flags.contains(PteFlags::UFFD_WP);
                    ptl.set(at, Pte::Swap(entry));
                    if !hit.mm.profile().mapcount_kept_on_entry {
                        // The reference passes to the entry; the mapping count does not,
                        // and with it goes the mlock (spec 4.17; mlock.rs docs).
                        mem.folio_remove_rmap_pte(p.pfn);
                        mem.munlock_vma_folio(folio, hit.vma.flags);
                    }
                    ControlFlow::Continue(())
                });
            range.end();
            if walked.is_break() || !ok || mem.folio_mapcount(folio) == 0 {
                // Linux: rmap_one returned false, or done(): page_not_mapped().
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        // `ok` only stopped the walk (above); it is not part of the result.
        let unmapped = if self.profile().exclusive_checks_folio_mapcount {
            mem.folio_mapcount(folio) == 0
        } else {
            mem.page(folio.head()).is_some_and(|p| p.mapcount() == 0)
        };
        // v3/v4 (switch): no in-walk target check, only the mapcount.
        (valid || self.profile().range_api_skips_target_check) && unmapped
    }
}

impl PhysMem {
    /// How many mappings of `folio` were accessed since the last call (clearing their
    /// accessed bits and asking the devices), plus one if the folio's young flag was
    /// set (which is cleared); an access clears the folio's idle flag. Unmapped folios
    /// count 0.
    ///
    /// Every era hands a device-exclusive entry to the PTE test as if it were present
    /// (spec 4.18, 8 item 18: the 6.15 fix was proposed and dropped, spec 9.3). On
    /// x86-64 the swap word's accessed bit is always clear (`swp_misread.rs`), so the
    /// entry counts as old for the CPU and the devices answer through the notifier,
    /// the behaviour spec 9.3 asks the model for.
    ///
    /// Linux: `folio_referenced()` + `folio_referenced_one()`.
    pub fn folio_referenced(&self, folio: Folio) -> u32 {
        let mapped = self
            .page(folio.head())
            .is_some_and(|h| h.mapping().is_some());
        if !self.folio_mapped(folio) || !mapped {
            return 0;
        }
        let mut total = 0;
        self.rmap_walk(folio, |hit| {
            let mut referenced = 0;
            let _ = hit
                .mm
                .page_vma_mapped_walk(folio, &hit.vma, hit.address, |found| {
                    // Linux: ptep_clear_flush_young_notify() / pmdp_clear_flush_young_notify().
                    let (cpu, start, len) = match found {
                        PvmwHit::Pte { ptl, addr, pte } => (
                            super::page_idle::ptep_test_and_clear_young(ptl, addr, pte),
                            addr,
                            PAGE_SIZE,
                        ),
                        PvmwHit::Pmd { addr, pmd } => {
                            (hit.mm.pmdp_test_and_clear_young(addr, pmd), addr, PMD_SIZE)
                        }
                    };
                    let dev = hit
                        .mm
                        .mmu_notifier_clear_young(start.raw(), start.raw() + len);
                    if cpu || dev {
                        referenced += 1;
                    }
                    ControlFlow::Continue(())
                });
            if referenced > 0 {
                self.folio_clear(folio, PageFlags::IDLE);
            }
            if self.folio_test(folio, PageFlags::YOUNG) {
                self.folio_clear(folio, PageFlags::YOUNG);
                referenced += 1;
            }
            total += referenced;
            ControlFlow::Continue(())
        });
        total
    }
}
