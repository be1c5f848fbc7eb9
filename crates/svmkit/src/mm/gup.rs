//! Getting and pinning user pages (Linux: `mm/gup.c`, the slow path).
//!
//! ```text
//! get_user_pages(guard, start, nr_pages, flags)     mmap lock held for read
//!   check_gup_flags                                 exactly one of GET / PIN
//!   for each page:
//!     VMA lookup + check_vma_flags                  once per VMA: EFAULT
//!     loop
//!       follow_page                                 walk; take the reference under
//!                                                   the PTL (or page_table_lock)
//!         huge PMD + SPLIT_PMD -> split_huge_pmd, walk again
//!       no page / not writable / must unshare
//!         -> faultin_page -> handle_mm_fault        no ALLOW_RETRY: the lock stays
//!   Ok(pages done); an error only if the first page failed
//! ```
//!
//! A reference is either a plain one (`FOLL_GET`, dropped with
//! [`PhysMem::put_page`]) or a pin (`FOLL_PIN`, dropped with
//! [`PhysMem::unpin_user_page`]): a pin adds [`GUP_PIN_COUNTING_BIAS`] to a small
//! folio's refcount, and 1 to a large folio's refcount and its `_pincount`, so
//! [`PhysMem::folio_maybe_dma_pinned`] can tell pinned folios apart; pinning also sets
//! the mm's `MMF_HAS_PINNED`, after which fork copies possibly pinned anon pages
//! instead of sharing them. A read-only pin of an anon page that is not
//! PageAnonExclusive first unshares it (`FAULT_FLAG_UNSHARE`), so the pin and the
//! page table keep pointing at the same page whatever COW does later.
//!
//! # Termination
//!
//! Linux retries follow → fault until the follow succeeds. Every fault the follow
//! asks for changes the entry it saw: none → mapped (zero page or new page),
//! read-only → writable (reuse or copy), shared anon → exclusive (reuse or copy),
//! huge PMD → reused or split. The fault handlers re-check the entry under its lock
//! and do nothing only when someone else changed it meanwhile, which is progress too.
//! A fault that changes nothing on an unchanged entry is a model bug; debug builds
//! assert after `GUP_NO_PROGRESS_LIMIT` such rounds in a row instead of hanging.

use std::sync::atomic::Ordering;

use bitflags::bitflags;

use super::folio::Folio;
use super::memory::{FaultFlags, VmFault, VmFaultError};
use super::mm_types::Mm;
use super::page::PageFlags;
use super::page_alloc::PhysMem;
use super::pgtable::{PMD_SIZE, Pmd, PresentPte, Pte};
use super::vma::{VmFlags, Vma, VmaTree};
use crate::error::Errno;
use crate::sync::MmapReadGuard;
use crate::types::{PAGE_SHIFT, PAGE_SIZE, Pfn, VirtAddr};

pub use super::memory::GUP_PIN_COUNTING_BIAS;

bitflags! {
    /// How to get user pages (Linux: `FOLL_*`, the subset the model uses).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct GupFlags: u32 {
        /// FOLL_WRITE: the caller will write to the pages; they are made writable
        /// (COW broken, the zero page replaced) first.
        const WRITE = 1 << 0;
        /// FOLL_GET: take a plain reference on each page ([`PhysMem::put_page`]).
        const GET = 1 << 2;
        /// FOLL_REMOTE: the mm is not the caller's own; faults carry
        /// `FAULT_FLAG_REMOTE`. Linux's `*_remote()` entry points set it themselves;
        /// here the caller says it.
        const REMOTE = 1 << 13;
        /// FOLL_SPLIT_PMD: split a PMD-mapped THP and return its pages through PTEs.
        /// On a hugetlb VMA it depends on the era: ignored (before 6.10), a
        /// `split_huge_pmd()` on the hugetlb PMD (6.10 to 6.14.1), `EOPNOTSUPP` (fixes v2
        /// 01/17), see [`Profile::gup_hugetlb_honours_split_pmd`](crate::Profile).
        const SPLIT_PMD = 1 << 11;
        /// FOLL_LONGTERM: the pin may be held indefinitely. Accepted with PIN and
        /// otherwise ignored: the model has no ZONE_MOVABLE/CMA to migrate out of, and
        /// it does not do what Linux's `gup_must_unshare()` does for non-anon pages in
        /// private mappings under a read-only long-term pin (replace the shared zero
        /// page by a private one), as its unshare fault leaves the zero page alone.
        const LONGTERM = 1 << 16;
        /// FOLL_PIN: pin each page ([`PhysMem::unpin_user_page`]).
        const PIN = 1 << 18;
    }
}

/// The trace's text for `flags` (`GupFlags(WRITE | GET | SPLIT_PMD)`), written once per
/// combination of the six flags and kept for the process (at most 64 short strings): a
/// traced GUP then formats and allocates nothing for it.
fn flags_text(flags: GupFlags) -> crate::trace::Text {
    static TEXT: [std::sync::OnceLock<&'static str>; 64] =
        [const { std::sync::OnceLock::new() }; 64];
    let index = <GupFlags as bitflags::Flags>::FLAGS
        .iter()
        .enumerate()
        .filter(|(_, f)| flags.contains(*f.value()))
        .fold(0, |i, (bit, _)| i | 1 << bit);
    match TEXT.get(index) {
        Some(text) if GupFlags::all().contains(flags) => {
            crate::trace::Text::Borrowed(text.get_or_init(|| format!("{flags:?}").leak()))
        }
        _ => format!("{flags:?}").into(),
    }
}

/// Rounds of "the fault changed nothing and the entry is the same" after which debug
/// builds report a fault handler that cannot make progress (see the module docs).
const GUP_NO_PROGRESS_LIMIT: u32 = 1000;

/// What the walk saw where a fault is needed (for the no-progress check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Pmd(Pmd),
    Pte(Pte),
}

/// The outcome of one [`Mm::follow_page`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// The page, with the reference taken.
    Page(Pfn),
    /// No page allowing the access (Linux: `NULL`), or, with `unshare`, a shared anon
    /// page a read-only pin must first make exclusive (Linux: `-EMLINK`).
    Fault { unshare: bool, seen: Seen },
    /// The page tables changed shape under the walk (a split, a PMD that stopped
    /// being huge): walk again.
    Again,
    /// A hard error.
    Err(Errno),
}

/// Why the walk over a range stopped early.
enum Stop {
    /// An error; returned if no page was done.
    Err(Errno),
    /// The fault dropped the mmap lock (Linux: `-EBUSY` without FOLL_UNLOCKABLE):
    /// the pages done so far are returned, possibly none.
    Busy,
}

/// Linux: `is_valid_gup_args()` (the checks that apply to the model's flags).
fn check_gup_flags(flags: GupFlags) -> Result<(), Errno> {
    // Linux WARNs and fails with EINVAL: FOLL_GET and FOLL_PIN are mutually exclusive,
    // and an array of pages needs one of them.
    if flags.contains(GupFlags::GET) == flags.contains(GupFlags::PIN) {
        return Err(Errno::EINVAL);
    }
    // LONGTERM can only be specified when pinning.
    if flags.contains(GupFlags::LONGTERM) && !flags.contains(GupFlags::PIN) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Whether `vma` may be accessed as `flags` asks. The model has no VM_IO/VM_PFNMAP,
/// secretmem, shadow stacks or FOLL_FORCE, so only the permission bits matter, and,
/// with [`Profile::gup_rejects_split_pmd_on_hugetlb`](crate::Profile) (fixes v2 01/17,
/// CVE-2025-22034), `FOLL_SPLIT_PMD` on a hugetlb VMA (`EOPNOTSUPP`).
///
/// Linux: `check_vma_flags()`.
fn check_vma_flags(vma: &Vma, flags: GupFlags, profile: &crate::Profile) -> Result<(), Errno> {
    if flags.contains(GupFlags::SPLIT_PMD)
        && vma.is_hugetlb()
        && profile.gup_rejects_split_pmd_on_hugetlb
    {
        return Err(Errno::EOPNOTSUPP);
    }
    let need = if flags.contains(GupFlags::WRITE) {
        VmFlags::WRITE
    } else {
        VmFlags::READ
    };
    if vma.flags.contains(need) {
        Ok(())
    } else {
        Err(Errno::EFAULT)
    }
}

/// Whether a page found through a read-only entry must first be unshared: a
/// read-only pin of an anon page that is not exclusive.
///
/// Linux: `gup_must_unshare()` (the FOLL_WRITE/FOLL_PIN test; the page test is
/// [`Mm::must_unshare`]).
fn pin_may_need_unshare(flags: GupFlags) -> bool {
    flags & (GupFlags::WRITE | GupFlags::PIN) == GupFlags::PIN
}

impl Mm {
    /// Takes a reference (`GET`) or a pin (`PIN`) on each of `nr_pages` pages from
    /// `start`, faulting them in (writable, with `WRITE`) as needed, and returns their
    /// frames in order.
    ///
    /// The caller holds the mmap lock for read (`guard`); it is never dropped. An
    /// unaligned `start` means the page containing it, as in Linux (the slow path does
    /// not reject it). `EINVAL` unless exactly one of `GET`/`PIN` is set, or for
    /// `LONGTERM` without `PIN`. If a page fails, the pages done before it are returned
    /// (a short count); only a failure on the first page is an error: `EFAULT` (no
    /// VMA, a VMA that forbids the access, an entry that cannot be faulted in),
    /// `ENOMEM`. `nr_pages == 0` returns no pages.
    ///
    /// Each returned frame must be released with [`PhysMem::put_page`] (`GET`) or
    /// [`PhysMem::unpin_user_page`] (`PIN`).
    ///
    /// Linux: `get_user_pages_remote()` (`__get_user_pages_locked()` →
    /// `__get_user_pages()`, with `locked == NULL`).
    #[doc(alias = "get_user_pages_remote")]
    #[doc(alias = "__get_user_pages")]
    pub fn get_user_pages(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        start: u64,
        nr_pages: u64,
        flags: GupFlags,
    ) -> Result<Vec<Pfn>, Errno> {
        self.mem.tracer().traced(
            || crate::trace::Payload::Gup {
                mm: self.id(),
                start,
                nr_pages,
                flags: flags_text(flags),
            },
            || self.get_user_pages_body(guard, start, nr_pages, flags),
            |r| match r {
                // The one-page GUP of every conversion and fault-in, without formatting.
                Ok(v) if v.len() == 1 => "ok, 1 pages".into(),
                Ok(v) => format!("ok, {} pages", v.len()).into(),
                Err(e) => e.name().into(),
            },
        )
    }

    /// [`get_user_pages`](Self::get_user_pages) without its trace operation.
    // Inlined into both of the traced wrapper's paths: with one caller it inlines
    // into the untraced path as it did before tracing (docs/TRACES.md, "Cost").
    #[inline(always)]
    fn get_user_pages_body(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        start: u64,
        nr_pages: u64,
        flags: GupFlags,
    ) -> Result<Vec<Pfn>, Errno> {
        check_gup_flags(flags)?;
        if nr_pages == 0 {
            return Ok(Vec::new());
        }
        if flags.contains(GupFlags::PIN) {
            // Linux: mm_set_has_pinned_flag(), before any page is looked at.
            self.set_has_pinned();
        }
        let mut pages = Vec::with_capacity(nr_pages.min(512) as usize);
        let mut vma: Option<Vma> = None;
        for i in 0..nr_pages {
            match self.gup_one(guard, &mut vma, start, i, flags) {
                Ok(pfn) => pages.push(pfn),
                Err(Stop::Err(e)) if pages.is_empty() => return Err(e),
                Err(Stop::Err(_) | Stop::Busy) => break,
            }
        }
        Ok(pages)
    }

    /// Faults in the pages of `[start, start + len)` VMA by VMA, under the mmap lock
    /// for read, as mlock and `mmap(MAP_POPULATE | MAP_LOCKED)` do: writable in a
    /// private writable VMA (breaking COW, restoring device-exclusive entries),
    /// readable elsewhere; `VM_LOCKONFAULT` VMAs are skipped. Holes end the walk
    /// without an error. A `PROT_NONE` VMA or a page that cannot be faulted in gives
    /// `EFAULT` (or `ENOMEM`), unless `ignore_errors`, which goes on with the next
    /// VMA. The references GUP takes are dropped at once (Linux takes none).
    ///
    /// Linux: `__mm_populate()` → `populate_vma_page_range()`.
    pub fn mm_populate(&self, start: u64, len: u64, ignore_errors: bool) -> Result<(), Errno> {
        let end = start.saturating_add(len).min(crate::types::TASK_SIZE);
        let mut guard = self.mmap_read_lock();
        let mut addr = start;
        while addr < end {
            let (Ok(a), Ok(e)) = (VirtAddr::try_new(addr), VirtAddr::try_new(end)) else {
                break;
            };
            let Some(vma) = guard.intersecting(a, e).next().cloned() else {
                break;
            };
            let from = addr.max(vma.start().raw());
            let to = vma.end().raw().min(end);
            addr = to;
            if vma.flags.contains(VmFlags::LOCKONFAULT) {
                continue;
            }
            let r = if !vma.is_accessible() {
                Err(Errno::EFAULT)
            } else {
                let flags =
                    if vma.flags.contains(VmFlags::WRITE) && !vma.flags.contains(VmFlags::SHARED) {
                        GupFlags::GET | GupFlags::WRITE
                    } else {
                        GupFlags::GET
                    };
                self.populate_pages(&mut guard, from, to, flags)
            };
            match r {
                Ok(()) => {}
                Err(_) if ignore_errors => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// GUP over `[from, to)` in pieces until every page is in or one fails.
    fn populate_pages(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        from: u64,
        to: u64,
        flags: GupFlags,
    ) -> Result<(), Errno> {
        let mut at = from;
        while at < to {
            let pages = self.get_user_pages(guard, at, (to - at) / PAGE_SIZE, flags)?;
            for pfn in &pages {
                self.mem.put_page(*pfn);
            }
            at += pages.len() as u64 * PAGE_SIZE;
        }
        Ok(())
    }

    /// [`get_user_pages`](Self::get_user_pages) with `PIN` set (and `GET` cleared).
    ///
    /// Linux: `pin_user_pages_remote()`.
    pub fn pin_user_pages(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        start: u64,
        nr_pages: u64,
        flags: GupFlags,
    ) -> Result<Vec<Pfn>, Errno> {
        let flags = (flags - GupFlags::GET) | GupFlags::PIN;
        self.get_user_pages(guard, start, nr_pages, flags)
    }

    /// One page: the reference (per `flags`) and a copy of the VMA mapping it.
    ///
    /// Linux: `get_user_page_vma_remote()`.
    #[doc(alias = "get_user_page_vma_remote")]
    pub fn get_user_page(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        addr: u64,
        flags: GupFlags,
    ) -> Result<(Pfn, Vma), Errno> {
        let pages = self.get_user_pages(guard, addr, 1, flags)?;
        // Linux would hand back NULL for "0 pages" (a dropped mmap lock, which cannot
        // happen here without ALLOW_RETRY); make it an error.
        let Some(&pfn) = pages.first() else {
            return Err(Errno::EFAULT);
        };
        let vma = VirtAddr::try_new(addr)
            .ok()
            .and_then(|a| guard.find(a))
            .cloned();
        match vma {
            Some(vma) => Ok((pfn, vma)),
            None => {
                // Linux WARNs, puts the page and returns EINVAL.
                self.mem.gup_put(pfn, flags);
                Err(Errno::EINVAL)
            }
        }
    }

    /// Page `i` of the range: VMA lookup (when leaving the cached one), then
    /// follow/fault until the reference is taken.
    fn gup_one(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        vma: &mut Option<Vma>,
        start: u64,
        i: u64,
        flags: GupFlags,
    ) -> Result<Pfn, Stop> {
        let addr = i
            .checked_mul(PAGE_SIZE)
            .and_then(|off| start.checked_add(off))
            .ok_or(Stop::Err(Errno::EFAULT))
            .and_then(|a| VirtAddr::try_new(a).map_err(Stop::Err))?;
        // Linux: "first iteration or cross vma bound".
        if vma.as_ref().is_none_or(|v| !v.contains(addr)) {
            let found = guard.find(addr).cloned().ok_or(Stop::Err(Errno::EFAULT))?;
            check_vma_flags(&found, flags, self.profile()).map_err(Stop::Err)?;
            *vma = Some(found);
        }
        let Some(vma) = vma.as_ref() else {
            return Err(Stop::Err(Errno::EFAULT));
        };
        let mut stuck = 0u32;
        let mut last: Option<(bool, Seen)> = None;
        loop {
            let (unshare, seen) = match self.follow_page(vma, addr, flags) {
                Follow::Page(pfn) => return Ok(pfn),
                Follow::Err(e) => return Err(Stop::Err(e)),
                Follow::Again => {
                    last = None;
                    continue;
                }
                Follow::Fault { unshare, seen } => (unshare, seen),
            };
            if last == Some((unshare, seen)) {
                stuck += 1;
                debug_assert!(
                    stuck < GUP_NO_PROGRESS_LIMIT,
                    "GUP at {addr}: handle_mm_fault(unshare: {unshare}) keeps leaving \
                     {seen:?} as it is"
                );
            } else {
                stuck = 0;
            }
            last = Some((unshare, seen));
            match self.faultin_page(guard, vma, addr, flags, unshare) {
                Ok(VmFault::Done) => {}
                Ok(VmFault::Retry) => return Err(Stop::Busy),
                Err(VmFaultError::Oom) => return Err(Stop::Err(Errno::ENOMEM)),
                Err(VmFaultError::Sigbus) => return Err(Stop::Err(Errno::EFAULT)),
            }
        }
    }

    /// Faults the page in the way `flags` needs: a write fault for `WRITE`, an unshare
    /// fault for a read-only pin of a shared anon page. Without ALLOW_RETRY the
    /// handler keeps the mmap lock (Linux: GUP without `locked` may not drop it).
    ///
    /// Linux: `faultin_page()` (errors as `vm_fault_to_errno()`: OOM → `ENOMEM`,
    /// SIGBUS → `EFAULT`).
    fn faultin_page(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        vma: &Vma,
        addr: VirtAddr,
        flags: GupFlags,
        unshare: bool,
    ) -> Result<VmFault, VmFaultError> {
        let mut fault = FaultFlags::empty();
        if flags.contains(GupFlags::WRITE) {
            fault |= FaultFlags::WRITE;
        }
        if flags.contains(GupFlags::REMOTE) {
            fault |= FaultFlags::REMOTE;
        }
        if unshare {
            // Never together with WRITE: a write fault unshares anyway.
            fault |= FaultFlags::UNSHARE;
        }
        self.handle_mm_fault(guard, vma, addr, fault)
    }

    /// Looks up the page mapped at `addr` and, if the entry allows the access `flags`
    /// asks for, takes the reference while the entry's lock is held.
    ///
    /// Linux: `follow_page_mask()` → `follow_pmd_mask()` → `follow_page_pte()` /
    /// `follow_huge_pmd()`.
    fn follow_page(&self, vma: &Vma, addr: VirtAddr, flags: GupFlags) -> Follow {
        if vma.is_hugetlb() {
            return self.follow_hugetlb(addr, flags);
        }
        match self.pmd_get_lockless(addr) {
            // Linux: no_page_table() → NULL → fault.
            pmd @ Pmd::None => Follow::Fault {
                unshare: false,
                seen: Seen::Pmd(pmd),
            },
            Pmd::Table(_) => self.follow_page_pte(addr, flags),
            Pmd::Huge(_) if flags.contains(GupFlags::SPLIT_PMD) => {
                self.split_huge_pmd(vma, addr);
                // Linux: "if pmd was left empty, stuff a page table in there quickly".
                match self.pte_alloc(addr) {
                    // EEXIST: huge again (a racing THP fault); split that one too.
                    Ok(_) | Err(Errno::EEXIST) => Follow::Again,
                    Err(e) => Follow::Err(e),
                }
            }
            Pmd::Huge(_) => self.follow_huge_pmd(addr, flags),
        }
    }

    /// [`follow_page`](Self::follow_page) in a hugetlb VMA. Before 6.10 the hugetlb walk
    /// ignores `FOLL_SPLIT_PMD` and returns the subpage; from 6.10 the generic walk
    /// calls `split_huge_pmd()` on the hugetlb PMD, whose `pmdp_huge_clear_flush()`
    /// trips page_table_check's `BUG()` (spec 4.12, 8 item 19): the model reports it
    /// as a bad page and fails the GUP with `EFAULT`, leaving the PMD as it was
    /// (Linux oopses in the caller, docs/ARCHITECTURE.md 46). A non-present entry
    /// (the 5.14 conversion's, spec 8 item 20) makes Linux retry `hugetlb_fault()`
    /// forever, which returns without changing it; the model reports that livelock
    /// and fails with `EFAULT`.
    ///
    /// Linux: `follow_hugetlb_page()` (before 6.10), `follow_page_mask()` →
    /// `follow_pmd_mask()` (from 6.10).
    fn follow_hugetlb(&self, addr: VirtAddr, flags: GupFlags) -> Follow {
        match self.huge_ptep_get(addr) {
            super::HugePte::None => Follow::Fault {
                unshare: false,
                seen: Seen::Pmd(Pmd::None),
            },
            super::HugePte::NonPresent(e) => {
                self.mem.report_bad(
                    e.pfn().unwrap_or(Pfn::new(0)),
                    "GUP livelock: hugetlb_fault() leaves a non-present hugetlb entry",
                );
                Follow::Err(Errno::EFAULT)
            }
            super::HugePte::Present(h)
                if flags.contains(GupFlags::SPLIT_PMD)
                    && self.profile().gup_hugetlb_honours_split_pmd =>
            {
                self.mem.report_bad(
                    h.pfn,
                    "page_table_check BUG: split_huge_pmd() on a hugetlb PMD (FOLL_SPLIT_PMD)",
                );
                Follow::Err(Errno::EFAULT)
            }
            super::HugePte::Present(_) => self.follow_huge_pmd(addr, flags),
        }
    }

    /// The PTE level of [`follow_page`](Self::follow_page), under the PTE table's PTL.
    ///
    /// Linux: `follow_page_pte()`.
    fn follow_page_pte(&self, addr: VirtAddr, flags: GupFlags) -> Follow {
        let Some(ptl) = self.pte_offset_map_lock(addr) else {
            // The PMD changed after the lockless read: look again.
            return Follow::Again;
        };
        let pte = ptl.get(addr);
        let Pte::Present(p) = pte else {
            // None, or a swap-type entry: do_swap_page() decides.
            return Follow::Fault {
                unshare: false,
                seen: Seen::Pte(pte),
            };
        };
        // Without FOLL_FORCE only a writable PTE can be written (can_follow_write_pte()).
        // Protnone entries are followed: the model has no FOLL_HONOR_NUMA_FAULT, and
        // check_vma_flags() already refused PROT_NONE VMAs.
        if flags.contains(GupFlags::WRITE) && !p.is_write() {
            return Follow::Fault {
                unshare: false,
                seen: Seen::Pte(pte),
            };
        }
        if p.is_special() && !self.mem.is_zero_pfn(p.pfn) {
            // No struct page to reference (Linux: follow_pfn_pte() with FOLL_GET).
            return Follow::Err(Errno::EFAULT);
        }
        if pin_may_need_unshare(flags) && !p.is_write() && self.must_unshare(p) {
            return Follow::Fault {
                unshare: true,
                seen: Seen::Pte(pte),
            };
        }
        if let Err(e) = self.grab_and_touch(p, flags) {
            return Follow::Err(e);
        }
        drop(ptl);
        Follow::Page(p.pfn)
    }

    /// A PMD-mapped THP, under `page_table_lock` (the PMD's lock): the reference is on
    /// the folio, the frame returned the subpage `addr` falls in.
    ///
    /// Linux: the `pmd_lock()` part of `follow_pmd_mask()`, `follow_huge_pmd()`.
    fn follow_huge_pmd(&self, addr: VirtAddr, flags: GupFlags) -> Follow {
        let ptl = self.page_table_lock();
        let pmd = self
            .pmd_slot(addr)
            .map_or(Pmd::None, |s| Pmd::decode(self.mem.pt_read(s.table, s.idx)));
        let huge = match pmd {
            Pmd::None => {
                return Follow::Fault {
                    unshare: false,
                    seen: Seen::Pmd(pmd),
                };
            }
            // Split meanwhile: the PTE level has it.
            Pmd::Table(_) => return Follow::Again,
            Pmd::Huge(h) => h,
        };
        if flags.contains(GupFlags::WRITE) && !huge.is_write() {
            return Follow::Fault {
                unshare: false,
                seen: Seen::Pmd(pmd),
            };
        }
        // PageAnonExclusive of a PMD-mapped THP lives on the head page, which is the
        // page the PMD names.
        if pin_may_need_unshare(flags) && !huge.is_write() && self.must_unshare(huge) {
            return Follow::Fault {
                unshare: true,
                seen: Seen::Pmd(pmd),
            };
        }
        if let Err(e) = self.grab_and_touch(huge, flags) {
            return Follow::Err(e);
        }
        drop(ptl);
        Follow::Page(Pfn::new(
            huge.pfn.raw() + ((addr.raw() % PMD_SIZE) >> PAGE_SHIFT),
        ))
    }

    /// Takes the reference or pin on the folio `entry` maps, then FOLL_TOUCH (which
    /// every entry point here sets, as Linux's do): a page written through GUP behind a
    /// clean entry is marked dirty. (`folio_mark_accessed()` has no counterpart: the
    /// model has no LRU.)
    ///
    /// Linux: the `try_grab_folio()` + `touch_pte()`/`touch_pmd()` tail of
    /// `follow_page_pte()` and `follow_huge_pmd()`.
    fn grab_and_touch(&self, entry: PresentPte, flags: GupFlags) -> Result<(), Errno> {
        let folio = self.mem.page_folio(entry.pfn)?;
        let refs = self.mem.try_grab_folio(folio, flags)?;
        if flags.contains(GupFlags::WRITE)
            && !entry.is_dirty()
            && !entry.is_special()
            && !self.mem.folio_test(folio, PageFlags::DIRTY)
        {
            self.mem.folio_set(folio, PageFlags::DIRTY);
        }
        // Last, so that nothing is kept alive across the recording call (the dirty
        // bit records nothing, so the record reads as before).
        if refs != 0 {
            self.mem.trace_ref(folio, i64::from(refs));
        }
        Ok(())
    }
}

impl PhysMem {
    /// Takes a GET reference or a PIN on `folio`, which the caller found mapped under
    /// the entry's lock (so its refcount is positive; a zero one is a bug Linux WARNs
    /// about, and fails with `ENOMEM`). The zero page is neither counted nor pinned.
    /// Returns the references taken (0 on the zero page); the caller records them
    /// (`trace_ref`) once nothing of its own is left to do, so that with recording off
    /// its fast path keeps nothing alive across a call (docs/TRACES.md, "Cost").
    ///
    /// Linux: `try_grab_folio()`.
    #[inline(always)]
    pub(crate) fn try_grab_folio(&self, folio: Folio, flags: GupFlags) -> Result<i32, Errno> {
        if self.is_zero_pfn(folio.head()) {
            return Ok(0);
        }
        let refs = if flags.contains(GupFlags::PIN) && !folio.is_large() {
            GUP_PIN_COUNTING_BIAS
        } else {
            1
        };
        let Some(head) = self.page(folio.head()) else {
            return Err(Errno::EFAULT);
        };
        if head
            .refcount_atomic()
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                (c > 0).then_some(c + refs)
            })
            .is_err()
        {
            return Err(Errno::ENOMEM);
        }
        if flags.contains(GupFlags::PIN) && folio.is_large() {
            head.pincount_add(1);
        }
        Ok(refs)
    }

    /// Drops `refs` references at once; reaching zero frees the folio exactly as
    /// [`folio_put`](Self::folio_put) does. Dropping more than are held is reported
    /// ([`PhysMem::bad_pages`]) and not done. No-op on the zero page.
    ///
    /// Linux: `folio_put_refs()`.
    pub(crate) fn folio_put_refs(&self, folio: Folio, refs: i32) {
        if self.is_zero_pfn(folio.head()) {
            return;
        }
        let Some(head) = self.page(folio.head()) else {
            return;
        };
        match head
            .refcount_atomic()
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                (c >= refs).then_some(c - refs)
            }) {
            Ok(c) if c == refs => {
                self.trace_ref(folio, -i64::from(refs));
                self.free_folio(folio)
            }
            Ok(_) => self.trace_ref(folio, -i64::from(refs)),
            Err(_) => self.report_bad(folio.head(), "folio_put_refs below zero"),
        }
    }

    /// Drops a reference taken on frame `pfn` (e.g. by `GET`). A frame that does not
    /// exist, or that holds no reference, is reported ([`PhysMem::bad_pages`]).
    ///
    /// Linux: `put_page()` (`folio_put(page_folio(page))`).
    pub fn put_page(&self, pfn: Pfn) {
        match self.page_folio(pfn) {
            Ok(folio) => self.folio_put(folio),
            Err(_) => self.report_bad(pfn, "put_page of a frame that does not exist"),
        }
    }

    /// Releases one pin on frame `pfn`: a small folio loses
    /// [`GUP_PIN_COUNTING_BIAS`] references, a large one one reference and one
    /// `_pincount`; the last reference frees the folio. No-op on the zero page (never
    /// pinned). A frame that does not exist, a large folio without pins, or a small
    /// one with fewer references than a pin holds is reported
    /// ([`PhysMem::bad_pages`]) and changes nothing.
    ///
    /// Linux: `unpin_user_page()` → `gup_put_folio(folio, 1, FOLL_PIN)`.
    pub fn unpin_user_page(&self, pfn: Pfn) {
        let Ok(folio) = self.page_folio(pfn) else {
            self.report_bad(pfn, "unpin_user_page of a frame that does not exist");
            return;
        };
        if self.is_zero_pfn(folio.head()) {
            return;
        }
        if folio.is_large() {
            let Some(head) = self.page(folio.head()) else {
                return;
            };
            if head.pincount_add(-1) < 0 {
                head.pincount_add(1);
                self.report_bad(folio.head(), "unpin_user_page of an unpinned folio");
                return;
            }
            self.folio_put_refs(folio, 1);
        } else {
            self.folio_put_refs(folio, GUP_PIN_COUNTING_BIAS);
        }
    }

    /// [`unpin_user_page`](Self::unpin_user_page) on each frame.
    ///
    /// Linux: `unpin_user_pages()`.
    pub fn unpin_user_pages(&self, pfns: &[Pfn]) {
        for &pfn in pfns {
            self.unpin_user_page(pfn);
        }
    }

    /// Releases what GUP took with `flags` on `pfn`: a pin or a reference.
    ///
    /// Linux: `gup_put_folio()`.
    fn gup_put(&self, pfn: Pfn, flags: GupFlags) {
        if flags.contains(GupFlags::PIN) {
            self.unpin_user_page(pfn);
        } else {
            self.put_page(pfn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gup_flags_need_exactly_one_of_get_and_pin() {
        assert_eq!(check_gup_flags(GupFlags::WRITE), Err(Errno::EINVAL));
        assert_eq!(
            check_gup_flags(GupFlags::GET | GupFlags::PIN),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_gup_flags(GupFlags::GET | GupFlags::LONGTERM),
            Err(Errno::EINVAL)
        );
        assert_eq!(check_gup_flags(GupFlags::GET), Ok(()));
        assert_eq!(check_gup_flags(GupFlags::PIN | GupFlags::LONGTERM), Ok(()));
    }

    #[test]
    fn gup_must_unshare_only_for_read_only_pins() {
        assert!(pin_may_need_unshare(GupFlags::PIN));
        assert!(pin_may_need_unshare(GupFlags::PIN | GupFlags::LONGTERM));
        assert!(!pin_may_need_unshare(GupFlags::PIN | GupFlags::WRITE));
        assert!(!pin_may_need_unshare(GupFlags::GET));
    }
}
