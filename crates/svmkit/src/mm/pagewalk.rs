//! Walking, populating, locking and freeing page tables.
//!
//! Upper levels (PGD, PUD, PMD entries) are read locklessly and populated under the
//! mm's `page_table_lock`; each PTE table has its own lock (split PTLs), a bit lock in
//! the table page's flags. Tables are freed only with the mmap lock held for write
//! (munmap, exit), after every entry in them was zapped under their PTL, so a walker
//! holding the mmap lock for read, or holding a PTE table's PTL, never sees its table
//! freed under it.
//!
//! Lock order (DESIGN.md): mmap lock → folio lock → anon_vma lock →
//! `page_table_lock` (PMD) → PTE table PTL.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::folio::Folio;
use super::mm_types::Mm;
use super::page::PageFlags;
use super::page_alloc::{Gfp, PhysMem};
use super::pgtable::{
    PGDIR_SIZE, PMD_SIZE, PTRS_PER_TABLE, PUD_SIZE, Pmd, Pte, UpperEntry, pgd_index, pmd_index,
    pte_index, pud_index,
};
use super::vma::VmaTree;
use crate::error::Errno;
use crate::types::{Pfn, TASK_SIZE, VirtAddr};

impl PhysMem {
    /// Allocates a zeroed page-table frame.
    ///
    /// Linux: `pagetable_alloc()`.
    pub(crate) fn pgtable_alloc(&self) -> Result<Pfn, Errno> {
        let folio = self.folio_alloc(0, Gfp::ZERO)?;
        if let Some(p) = self.page(folio.head()) {
            p.set(PageFlags::PGTABLE);
        }
        Ok(folio.head())
    }

    /// Frees a page-table frame.
    ///
    /// Linux: `pagetable_free()`.
    pub(crate) fn pgtable_free(&self, pfn: Pfn) {
        if let Some(p) = self.page(pfn) {
            p.clear(PageFlags::PGTABLE);
        }
        self.folio_put(Folio::from_parts(pfn, 0));
    }

    #[inline(always)]
    pub(crate) fn pt_read(&self, table: Pfn, idx: usize) -> u64 {
        self.table_word(table, idx).load(Ordering::SeqCst)
    }

    #[inline(always)]
    pub(crate) fn pt_write(&self, table: Pfn, idx: usize, raw: u64) {
        self.table_word(table, idx).store(raw, Ordering::SeqCst);
        crate::sync::mode::model_changed();
    }

    fn table_is_empty(&self, table: Pfn) -> bool {
        let words = self.table_words(table);
        next_nonzero(words, 0, words.len()).is_none()
    }
}

/// Proof that a PTE table's lock is held; the only way to change a PTE. Dropping it
/// releases the lock.
///
/// Linux: the `spinlock_t *ptl` returned by `pte_offset_map_lock()`.
pub struct PtlGuard<'a> {
    mem: &'a PhysMem,
    /// The table's frame number, with [`PtlGuard::TRACED`] set if recording was on when
    /// the lock was taken: one word, so that the guard stays two, returned in
    /// registers as before tracing, and a PTE change with recording off tests a bit of
    /// it, not an atomic load through `mem` (which the compiler cannot hoist out of a
    /// loop over the table).
    table: u64,
    /// Not `Send`: a traced hold's changes wait in the locking thread's state until the
    /// release ([`crate::trace::Tracer::ptl_unlocked`]).
    _here: std::marker::PhantomData<*const ()>,
}

impl<'a> PtlGuard<'a> {
    /// Frame numbers stay far below this bit.
    const TRACED: u64 = 1 << 63;

    /// Takes the lock of PTE table `table` of `mm` (whose id is read only when
    /// recording: the lock's atomic keeps the compiler from sinking the load into the
    /// branch).
    pub(crate) fn lock(mem: &'a PhysMem, table: Pfn, mm: &Mm) -> Self {
        mem.bit_lock(table, PageFlags::PTL_LOCKED);
        let mut word = table.raw();
        if mem.tracer().on() {
            mem.tracer().ptl_locked(table.raw(), mm.id());
            word |= Self::TRACED;
        }
        PtlGuard {
            mem,
            table: word,
            _here: std::marker::PhantomData,
        }
    }

    #[inline(always)]
    fn traced(&self) -> bool {
        self.table & Self::TRACED != 0
    }

    #[inline(always)]
    fn pfn(&self) -> Pfn {
        Pfn::new(self.table & !Self::TRACED)
    }

    /// Every PTE change goes through `set` or `clear`, so this is the one place that
    /// traces PTE transitions (as raw words, the old one as read from the table).
    fn trace_pte(&self, addr: VirtAddr, old: u64, new: u64) {
        if old != new {
            self.mem
                .tracer()
                .record_pte(self.pfn().raw(), addr.page_align_down().raw(), old, new);
        }
    }

    /// The locked PTE table's frame.
    pub fn table(&self) -> Pfn {
        self.pfn()
    }

    /// The PTE for `addr` (which must lie in this table's 2 MiB span).
    ///
    /// Linux: `ptep_get()`.
    pub fn get(&self, addr: VirtAddr) -> Pte {
        Pte::decode(self.mem.pt_read(self.pfn(), pte_index(addr)))
    }

    /// Installs `pte` for `addr`.
    ///
    /// Linux: `set_pte_at()`.
    #[inline]
    pub fn set(&mut self, addr: VirtAddr, pte: Pte) {
        if self.traced() {
            return self.set_traced(addr, pte);
        }
        self.mem.pt_write(self.pfn(), pte_index(addr), pte.encode());
    }

    // Out of line, so that with the hold untraced `set` stays as small as it was (the
    // old word is read only when recording).
    #[cold]
    #[inline(never)]
    fn set_traced(&mut self, addr: VirtAddr, pte: Pte) {
        let (idx, new) = (pte_index(addr), pte.encode());
        let old = self.mem.pt_read(self.pfn(), idx);
        self.mem.pt_write(self.pfn(), idx, new);
        self.trace_pte(addr, old, new);
    }

    #[cold]
    #[inline(never)]
    fn clear_traced(&mut self, addr: VirtAddr, old: u64) {
        self.trace_pte(addr, old, 0);
    }

    /// Clears the PTE for `addr` and returns what it was. The PTL stands for the TLB:
    /// once this returns and the lock drops, no CPU uses the old translation.
    ///
    /// Linux: `ptep_get_and_clear()` / `ptep_clear_flush()`.
    #[doc(alias = "ptep_clear_flush")]
    #[inline]
    pub fn clear(&mut self, addr: VirtAddr) -> Pte {
        let old = self
            .mem
            .table_word(self.pfn(), pte_index(addr))
            .swap(0, Ordering::SeqCst);
        crate::sync::mode::model_changed();
        if self.traced() {
            self.clear_traced(addr, old);
        }
        Pte::decode(old)
    }
}

impl Drop for PtlGuard<'_> {
    fn drop(&mut self) {
        // Before the unlock: whoever takes the lock next records after these changes.
        if self.traced() {
            self.mem.tracer().ptl_unlocked(self.pfn().raw());
        }
        self.mem.bit_unlock(self.pfn(), PageFlags::PTL_LOCKED);
    }
}

impl fmt::Debug for PtlGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PtlGuard")
            .field("table", &self.pfn())
            .finish()
    }
}

/// Where an upper-level walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PmdSlot {
    pub(crate) table: Pfn,
    pub(crate) idx: usize,
}

impl Mm {
    /// Writes a PMD entry (the caller holds `page_table_lock`, or the mmap lock in
    /// write mode for a table being freed). PMD changes all pass here so that traces
    /// see each transition; the old word is read only when recording.
    #[inline]
    pub(crate) fn set_pmd(&self, slot: PmdSlot, addr: VirtAddr, new: Pmd) {
        if self.mem.tracer().on() {
            return self.set_pmd_traced(slot, addr, new);
        }
        self.mem.pt_write(slot.table, slot.idx, new.encode());
    }

    #[cold]
    #[inline(never)]
    fn set_pmd_traced(&self, slot: PmdSlot, addr: VirtAddr, new: Pmd) {
        let old = Pmd::decode(self.mem.pt_read(slot.table, slot.idx));
        self.mem.pt_write(slot.table, slot.idx, new.encode());
        if old != new {
            self.mem.tracer().instant(|| crate::trace::Payload::Pmd {
                mm: self.id(),
                addr: addr.raw() & !(PMD_SIZE - 1),
                old: crate::trace::EntryView::of_pmd(old),
                new: crate::trace::EntryView::of_pmd(new),
            });
        }
    }

    #[inline]
    fn upper(&self, table: Pfn, idx: usize) -> UpperEntry {
        UpperEntry::decode(self.mem.pt_read(table, idx))
    }

    /// The PMD slot covering `addr`, if the PUD and PMD tables exist.
    #[inline]
    pub(crate) fn pmd_slot(&self, addr: VirtAddr) -> Option<PmdSlot> {
        let UpperEntry::Table(pud) = self.upper(self.pgd(), pgd_index(addr)) else {
            return None;
        };
        let UpperEntry::Table(pmd) = self.upper(pud, pud_index(addr)) else {
            return None;
        };
        Some(PmdSlot {
            table: pmd,
            idx: pmd_index(addr),
        })
    }

    /// The PMD entry covering `addr`, read without a lock.
    ///
    /// Linux: `pmdp_get_lockless()`.
    #[inline]
    pub fn pmd_get_lockless(&self, addr: VirtAddr) -> Pmd {
        match self.pmd_slot(addr) {
            Some(s) => self.pmd_read(s),
            None => Pmd::None,
        }
    }

    /// The PMD entry in `slot`, read without a lock.
    ///
    /// Linux: `pmdp_get_lockless(pmd)` on a PMD pointer the caller already walked to.
    #[inline(always)]
    pub(crate) fn pmd_read(&self, slot: PmdSlot) -> Pmd {
        Pmd::decode(self.mem.pt_read(slot.table, slot.idx))
    }

    /// The PTE for `addr` in PTE table `table`, read without a lock.
    ///
    /// Linux: `ptep_get_lockless(pte_offset_map(pmd, addr))`.
    #[inline(always)]
    pub(crate) fn pte_read(&self, table: Pfn, addr: VirtAddr) -> Pte {
        Pte::decode(self.mem.pt_read(table, pte_index(addr)))
    }

    /// Whether a huge PMD (a PMD-mapped THP) covers `addr` (lockless; for views).
    ///
    /// Linux: `pmd_trans_huge()`.
    pub fn pmd_is_huge(&self, addr: VirtAddr) -> bool {
        matches!(self.pmd_get_lockless(addr), Pmd::Huge(_))
    }

    /// The frame a present translation maps `addr` to, through a huge PMD or a PTE
    /// (lockless; for views and tests, not a CPU access).
    pub fn translate(&self, addr: VirtAddr) -> Option<Pfn> {
        match self.pmd_get_lockless(addr) {
            Pmd::Huge(h) => Some(Pfn::new(h.pfn.raw() + ((addr.raw() % PMD_SIZE) >> 12))),
            Pmd::Table(t) => Pte::decode(self.mem.pt_read(t, pte_index(addr)))
                .present()
                .map(|p| p.pfn),
            Pmd::None => None,
        }
    }

    /// The address of the first PMD in `[start, end)` that is not empty (a PTE table or
    /// a huge mapping), clipped to `start`; `None` if the range has no page tables.
    /// Empty upper levels are skipped whole.
    ///
    /// Linux: the `pmd_none()` / `pud_none()` skips of `change_protection()`'s walk,
    /// which start its notifier range lazily.
    pub(crate) fn first_populated_pmd(&self, start: VirtAddr, end: VirtAddr) -> Option<VirtAddr> {
        let (mut addr, end) = (start.raw(), end.raw());
        while addr < end {
            let at = VirtAddr::new_truncate(addr);
            let UpperEntry::Table(pud) = self.upper(self.pgd(), pgd_index(at)) else {
                addr = (addr & !(PGDIR_SIZE - 1)).saturating_add(PGDIR_SIZE);
                continue;
            };
            let UpperEntry::Table(pmd) = self.upper(pud, pud_index(at)) else {
                addr = (addr & !(PUD_SIZE - 1)).saturating_add(PUD_SIZE);
                continue;
            };
            if Pmd::decode(self.mem.pt_read(pmd, pmd_index(at))) != Pmd::None {
                return Some(at);
            }
            addr = (addr & !(PMD_SIZE - 1)).saturating_add(PMD_SIZE);
        }
        None
    }

    /// What the CPU side maps `addr` to: a present PTE or a huge PMD (the frame of
    /// `addr`'s page), or a device-exclusive entry. Read without locks and without
    /// trusting the tables: each table frame is checked to be an allocated page table
    /// before it is read, so a walk racing a teardown answers stale, never reads past
    /// the memory (for the secondary-MMU audits, `secondary.rs`; not a CPU access).
    pub fn cpu_mapping_lockless(&self, addr: VirtAddr) -> Option<super::CpuMapping> {
        let mem = &self.mem;
        // PageTable is cleared before a table frame is freed (`pgtable_free`); the
        // allocator's lock is not taken (no scheduling point in an audit).
        let is_table = |t: Pfn| mem.page(t).is_some_and(|p| p.test(PageFlags::PGTABLE));
        let next = |t: Pfn, idx: usize| match UpperEntry::decode(mem.pt_read(t, idx)) {
            UpperEntry::Table(n) if is_table(n) => Some(n),
            _ => None,
        };
        if !is_table(self.pgd()) {
            return None;
        }
        let pud = next(self.pgd(), pgd_index(addr))?;
        let pmd = next(pud, pud_index(addr))?;
        match Pmd::decode(mem.pt_read(pmd, pmd_index(addr))) {
            Pmd::Huge(h) => Some(super::CpuMapping::Present(Pfn::new(
                h.pfn.raw() + ((addr.raw() % PMD_SIZE) >> 12),
            ))),
            Pmd::Table(t) if is_table(t) => match Pte::decode(mem.pt_read(t, pte_index(addr))) {
                Pte::Present(p) => Some(super::CpuMapping::Present(p.pfn)),
                Pte::Swap(s) if s.is_device_exclusive() => {
                    s.pfn().map(super::CpuMapping::DeviceExclusive)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The PTE for `addr`, read without a lock (may be stale by the time it is used).
    ///
    /// Linux: `ptep_get_lockless()`.
    #[inline]
    pub fn pte_get_lockless(&self, addr: VirtAddr) -> Pte {
        match self.pmd_get_lockless(addr) {
            Pmd::Table(t) => self.pte_read(t, addr),
            _ => Pte::None,
        }
    }

    /// Makes sure the upper-level entry `idx` of `table` points to a table, allocating
    /// one if needed, and returns it. The allocation happens outside the lock; a racing
    /// populator wins and our table is freed.
    fn upper_alloc(&self, table: Pfn, idx: usize) -> Result<Pfn, Errno> {
        if let UpperEntry::Table(t) = self.upper(table, idx) {
            return Ok(t);
        }
        let new = self.mem.pgtable_alloc()?;
        let _ptl = self.page_table_lock();
        match self.upper(table, idx) {
            UpperEntry::Table(t) => {
                self.mem.pgtable_free(new);
                Ok(t)
            }
            UpperEntry::None => {
                self.mem
                    .pt_write(table, idx, UpperEntry::Table(new).encode());
                Ok(new)
            }
        }
    }

    /// Walks to the PMD slot covering `addr`, allocating the PUD and PMD tables on the
    /// way (not the PTE table). `ENOMEM` if a table cannot be allocated.
    ///
    /// Linux: `pud_alloc()`, `pmd_alloc()`.
    pub(crate) fn pmd_alloc(&self, addr: VirtAddr) -> Result<PmdSlot, Errno> {
        let pud = self.upper_alloc(self.pgd(), pgd_index(addr))?;
        let pmd = self.upper_alloc(pud, pud_index(addr))?;
        Ok(PmdSlot {
            table: pmd,
            idx: pmd_index(addr),
        })
    }

    /// Walks to the PTE table covering `addr`, allocating missing tables on the way.
    /// `ENOMEM` if a table cannot be allocated; `EEXIST` if the PMD maps a huge page.
    ///
    /// Linux: `pud_alloc()`, `pmd_alloc()`, `pte_alloc()` (`__pte_alloc()`).
    pub(crate) fn pte_alloc(&self, addr: VirtAddr) -> Result<Pfn, Errno> {
        let slot = self.pmd_alloc(addr)?;
        self.pte_alloc_at(slot, addr)
    }

    /// [`pte_alloc`](Self::pte_alloc) below a PMD slot the caller walked to.
    ///
    /// Linux: `pte_alloc(mm, pmd)`.
    pub(crate) fn pte_alloc_at(&self, slot: PmdSlot, addr: VirtAddr) -> Result<Pfn, Errno> {
        match self.pmd_read(slot) {
            Pmd::Table(t) => return Ok(t),
            Pmd::Huge(_) => return Err(Errno::EEXIST),
            Pmd::None => {}
        }
        let new = self.mem.pgtable_alloc()?;
        let _ptl = self.page_table_lock();
        match self.pmd_read(slot) {
            Pmd::None => {
                self.set_pmd(slot, addr, Pmd::Table(new));
                Ok(new)
            }
            other => {
                self.mem.pgtable_free(new);
                match other {
                    Pmd::Table(t) => Ok(t),
                    _ => Err(Errno::EEXIST),
                }
            }
        }
    }

    /// Locks the PTE table covering `addr` and returns its guard, or `None` if there
    /// is no PTE table there. The PMD is re-checked under the lock, so the guard
    /// always belongs to the table the PMD points to.
    ///
    /// Linux: `pte_offset_map_lock()`.
    pub fn pte_offset_map_lock(&self, addr: VirtAddr) -> Option<PtlGuard<'_>> {
        self.pte_offset_map_lock_slot(self.pmd_slot(addr)?)
    }

    /// [`pte_offset_map_lock`](Self::pte_offset_map_lock) for a PMD slot the caller
    /// walked to.
    ///
    /// Linux: `pte_offset_map_lock(mm, pmd, addr, &ptl)` with the walk's `pmd`.
    pub(crate) fn pte_offset_map_lock_slot(&self, slot: PmdSlot) -> Option<PtlGuard<'_>> {
        let Pmd::Table(t) = self.pmd_read(slot) else {
            return None;
        };
        self.pte_lock_at(slot, t)
    }

    /// [`pte_offset_map_lock`](Self::pte_offset_map_lock) for a PMD slot the caller
    /// walked to and the PTE table `table` it read there (without a lock).
    ///
    /// Linux: `pte_offset_map_lock(mm, pmd, addr, &ptl)` with the walk's `pmd`.
    pub(crate) fn pte_lock_at(&self, slot: PmdSlot, table: Pfn) -> Option<PtlGuard<'_>> {
        // As Linux, the re-check reads the same PMD entry again rather than walking
        // from the top: the PUD and PMD tables outlive the caller's walk (they go only
        // in free_pgtables(), under the mmap lock held for write).
        let mut t = table;
        loop {
            let guard = PtlGuard::lock(&self.mem, t, self);
            match self.pmd_read(slot) {
                Pmd::Table(now) if now == t => return Some(guard),
                Pmd::Table(now) => t = now,
                _ => return None,
            }
        }
    }

    /// Runs `f` on each existing PTE table overlapping `[start, end)`, with its PTL held,
    /// passing the part of the range that table covers. Tables that do not exist are
    /// skipped (nothing is mapped there).
    ///
    /// Linux: the `pmd_addr_end()` loop of `zap_pmd_range()` / `change_pmd_range()`.
    pub(crate) fn for_each_pte_table(
        &self,
        start: VirtAddr,
        end: VirtAddr,
        mut f: impl FnMut(&mut PtlGuard<'_>, VirtAddr, VirtAddr),
    ) {
        let mut addr = start.raw();
        while addr < end.raw() {
            let next = ((addr & !(PMD_SIZE - 1)) + PMD_SIZE).min(end.raw());
            let at = VirtAddr::new_truncate(addr);
            if let Some(mut ptl) = self.pte_offset_map_lock(at) {
                f(&mut ptl, at, VirtAddr::new_truncate(next));
            }
            addr = next;
        }
    }

    /// Calls `f(haddr, whole)` for each huge PMD overlapping `[start, end)`; `whole`
    /// says whether the range covers all of its 2 MiB.
    pub(crate) fn for_each_huge_pmd(
        &self,
        start: VirtAddr,
        end: VirtAddr,
        mut f: impl FnMut(VirtAddr, bool),
    ) {
        let Some(mut addr) = self.first_populated_pmd(start, end).map(|a| a.raw()) else {
            return;
        };
        while addr < end.raw() {
            let haddr = addr & !(PMD_SIZE - 1);
            let next = (haddr + PMD_SIZE).min(end.raw());
            let at = VirtAddr::new_truncate(addr);
            if matches!(self.pmd_get_lockless(at), Pmd::Huge(_)) {
                let whole = haddr >= start.raw() && haddr + PMD_SIZE <= end.raw();
                f(VirtAddr::new_truncate(haddr), whole);
            }
            addr = next;
        }
    }

    /// Frees the page tables whose whole span lies outside every VMA of `tree`,
    /// within `[start, end)`. Tables still holding entries are left alone (that would
    /// be a zap bug; the checker reports it).
    ///
    /// Caller holds the mmap lock for write and has zapped the range.
    ///
    /// Linux: `free_pgtables()` / `free_pgd_range()`.
    pub(crate) fn free_pgtables(&self, tree: &VmaTree, start: VirtAddr, end: VirtAddr) {
        let unused = |lo: u64, size: u64| {
            let hi = lo.saturating_add(size).min(TASK_SIZE);
            tree.is_free(VirtAddr::new_truncate(lo), VirtAddr::new_truncate(hi))
        };
        let (start, end) = (start.raw(), end.raw().min(TASK_SIZE));
        // The indices of a table at `base` whose entries (of `size` bytes each)
        // overlap `[start, end)`.
        let span = |base: u64, size: u64| {
            let lo = ((start.max(base) - base) / size) as usize;
            let hi = if end > base {
                (end - base).div_ceil(size).min(PTRS_PER_TABLE as u64) as usize
            } else {
                0
            };
            (lo, hi)
        };
        // Each table's words through one look-up (`table_words`), and its empty
        // entries skipped by `next_nonzero`: an exit reaches every entry of its tables,
        // nearly all empty. Each word is read when the walk gets to it, so an entry
        // cleared or filled meanwhile reads as it is then.
        let pgd_words = self.mem.table_words(self.pgd());
        let (glo, ghi) = span(0, PGDIR_SIZE);
        let mut gnext = glo;
        while let Some((gi, graw)) = next_nonzero(pgd_words, gnext, ghi) {
            gnext = gi + 1;
            let UpperEntry::Table(pud) = UpperEntry::decode(graw) else {
                continue;
            };
            let g = gi as u64 * PGDIR_SIZE;
            let pud_words = self.mem.table_words(pud);
            let (ulo, uhi) = span(g, PUD_SIZE);
            let mut unext = ulo;
            while let Some((ui, uraw)) = next_nonzero(pud_words, unext, uhi) {
                unext = ui + 1;
                let UpperEntry::Table(pmd) = UpperEntry::decode(uraw) else {
                    continue;
                };
                let u = g + ui as u64 * PUD_SIZE;
                let pmd_words = self.mem.table_words(pmd);
                let (mlo, mhi) = span(u, PMD_SIZE);
                let mut mnext = mlo;
                while let Some((mi, mraw)) = next_nonzero(pmd_words, mnext, mhi) {
                    mnext = mi + 1;
                    let m = u + mi as u64 * PMD_SIZE;
                    if let Pmd::Table(pte) = Pmd::decode(mraw)
                        && unused(m, PMD_SIZE)
                        && self.mem.table_is_empty(pte)
                    {
                        let _ptl = self.page_table_lock();
                        self.set_pmd(
                            PmdSlot {
                                table: pmd,
                                idx: mi,
                            },
                            VirtAddr::new_truncate(m),
                            Pmd::None,
                        );
                        self.mem.pgtable_free(pte);
                    }
                }
                if unused(u, PUD_SIZE) && self.mem.table_is_empty(pmd) {
                    let _ptl = self.page_table_lock();
                    self.mem.pt_write(pud, ui, 0);
                    self.mem.pgtable_free(pmd);
                }
            }
            if unused(g, PGDIR_SIZE) && self.mem.table_is_empty(pud) {
                let _ptl = self.page_table_lock();
                self.mem.pt_write(self.pgd(), gi, 0);
                self.mem.pgtable_free(pud);
            }
        }
    }

    /// Frees the top-level table (after every lower table is gone).
    ///
    /// Linux: `pgd_free()`.
    pub(crate) fn pgd_free(&self) {
        self.mem.pgtable_free(self.pgd());
    }

    /// Visits every page-table frame of this mm, top level first, with its level
    /// (4 = PGD ... 1 = PTE table) and the first address it maps. Lockless: for
    /// quiescent checks and views.
    pub fn walk_tables(&self, mut visit: impl FnMut(TableVisit)) {
        visit(TableVisit {
            level: 4,
            pfn: self.pgd(),
            base: 0,
        });
        // Each table's words read through one look-up (`table_words`), its empty
        // entries skipped a block at a time (`nonzero_words`).
        let entries = |table: Pfn| nonzero_words(self.mem.table_words(table));
        for (gi, raw) in entries(self.pgd()) {
            let UpperEntry::Table(pud) = UpperEntry::decode(raw) else {
                continue;
            };
            let gbase = gi as u64 * PGDIR_SIZE;
            visit(TableVisit {
                level: 3,
                pfn: pud,
                base: gbase,
            });
            for (ui, raw) in entries(pud) {
                let UpperEntry::Table(pmd) = UpperEntry::decode(raw) else {
                    continue;
                };
                let ubase = gbase + ui as u64 * PUD_SIZE;
                visit(TableVisit {
                    level: 2,
                    pfn: pmd,
                    base: ubase,
                });
                for (mi, raw) in entries(pmd) {
                    if let Pmd::Table(pte) = Pmd::decode(raw) {
                        visit(TableVisit {
                            level: 1,
                            pfn: pte,
                            base: ubase + mi as u64 * PMD_SIZE,
                        });
                    }
                }
            }
        }
    }
}

/// One page-table frame found by [`Mm::walk_tables`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableVisit {
    /// 4 = PGD, 3 = PUD, 2 = PMD, 1 = PTE table.
    pub level: u8,
    /// The table's frame.
    pub pfn: Pfn,
    /// The first virtual address the table maps.
    pub base: u64,
}

impl TableVisit {
    /// Bytes of address space the table maps.
    pub fn span(&self) -> u64 {
        match self.level {
            1 => PMD_SIZE,
            2 => PUD_SIZE,
            3 => PGDIR_SIZE,
            _ => PGDIR_SIZE * PTRS_PER_TABLE as u64,
        }
    }

    /// The entries of a PMD table (level 2) that are not empty, decoded, with their
    /// addresses.
    pub fn pmds<'a>(&self, mem: &'a PhysMem) -> impl Iterator<Item = (VirtAddr, Pmd)> + 'a {
        // The table's words through one look-up, as in `Mm::walk_tables`.
        let base = self.base;
        let words: &[AtomicU64] = if self.level == 2 {
            mem.table_words(self.pfn)
        } else {
            &[]
        };
        nonzero_words(words).map(move |(i, raw)| {
            (
                VirtAddr::new_truncate(base + (i as u64) * PMD_SIZE),
                Pmd::decode(raw),
            )
        })
    }

    /// The entries of a PTE table (level 1) that are not empty, decoded, with their
    /// addresses.
    pub fn ptes<'a>(&self, mem: &'a PhysMem) -> impl Iterator<Item = (VirtAddr, Pte)> + 'a {
        // The table's words through one look-up, as in `Mm::walk_tables`.
        let base = self.base;
        let words: &[AtomicU64] = if self.level == 1 {
            mem.table_words(self.pfn)
        } else {
            &[]
        };
        nonzero_words(words).map(move |(i, raw)| {
            (
                VirtAddr::new_truncate(base + (i as u64) * crate::types::PAGE_SIZE),
                Pte::decode(raw),
            )
        })
    }
}

/// The first index in `from..to` whose word is not zero, with the word. A model's
/// tables are nearly all empty and the checker and exit reach every entry, so aligned
/// blocks of 64 and then of 8 are tested first, with one branch for each block; the
/// word returned is read when the scan reaches it, as an entry-by-entry walk reads it
/// (a block that looked non-empty is read again in smaller blocks and word by word,
/// so an entry cleared or filled meanwhile reads as it is then).
#[inline]
fn next_nonzero(words: &[AtomicU64], from: usize, to: usize) -> Option<(usize, u64)> {
    let words = &words[..to.min(words.len())];
    let mut i = from;
    while i < words.len() {
        if let Some(skip) = [64, 8]
            .into_iter()
            .find(|&n| i.is_multiple_of(n) && words.get(i..i + n).is_some_and(all_zero))
        {
            i += skip;
            continue;
        }
        let raw = words[i].load(Ordering::SeqCst);
        if raw != 0 {
            return Some((i, raw));
        }
        i += 1;
    }
    None
}

/// Whether every word of `block` is zero, with one branch: the loads are or-ed.
#[inline(always)]
fn all_zero(block: &[AtomicU64]) -> bool {
    block
        .iter()
        .fold(0, |any, w| any | w.load(Ordering::SeqCst))
        == 0
}

/// The words of a table that are not zero, with their indices, in order (an empty
/// entry is a zero word at every level), found by [`next_nonzero`].
fn nonzero_words(words: &[AtomicU64]) -> impl Iterator<Item = (usize, u64)> + '_ {
    let mut next = 0;
    std::iter::from_fn(move || {
        let (i, raw) = next_nonzero(words, next, words.len())?;
        next = i + 1;
        Some((i, raw))
    })
}
