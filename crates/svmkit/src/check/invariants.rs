//! The invariant checker: at a quiescent point, does the whole machine add up?
//!
//! It recomputes from the page tables what every frame's state must be and compares:
//! * every present PTE maps an allocated frame, inside a VMA that allows what the PTE
//!   allows; the zero page only read-only;
//! * each folio's refcount equals its mappings plus the references the caller says are
//!   held elsewhere; each page's mapcount equals the PTEs mapping it;
//! * every page-table frame belongs to exactly one mm and is marked as a table; no
//!   table covers only unmapped space (munmap freed it);
//! * VMAs are page-aligned and disjoint; each mm's anon and shmem RSS equal its anon
//!   and shmem PTEs;
//! * every anon page mapped by a PTE is found by `rmap_walk` from its folio; an
//!   anon-exclusive page is anon and mapped at most once; shmem folios sit in their
//!   object's cache at the offset their VMA maps, and the cache holds one reference;
//! * the buddy free lists are consistent and no allocated frame is unaccounted for
//!   (so once every mm is gone, every frame is free);
//! * no bad-page report is pending ([`PhysMem::bad_pages`]; a test that provoked one
//!   on purpose takes it with [`PhysMem::take_bad_pages`]);
//! * every translation of every registered device (`mm/secondary.rs`) is valid: the
//!   mm it mirrors is live and maps that frame at that address (present, huge PMD or
//!   device-exclusive), and an atomic translation's CPU entry is device-exclusive; a
//!   device whose mm has exited or is gone mirrors nothing, so each entry it still
//!   has is flagged;
//! * no device access went through a stale translation (each recorded one is
//!   reported until taken with `PhysMem::take_stale_device_accesses`).

use std::collections::BTreeMap;
use std::fmt;

use crate::mm::{
    Folio, HPAGE_PMD_NR, Mapping, Mm, PMD_SIZE, PageFlags, Pmd, PresentPte, Pte, PteFlags, SwapPte,
    VmFlags, audit_translation,
};
use crate::sync::Arc;
use crate::system::System;
use crate::types::{Pfn, VirtAddr};

/// One thing that does not add up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The mm concerned, if any.
    pub mm: Option<u64>,
    /// The virtual address concerned, if any.
    pub addr: Option<VirtAddr>,
    /// The frame concerned, if any.
    pub pfn: Option<Pfn>,
    /// What is wrong, with the numbers.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(mm) = self.mm {
            write!(f, "mm {mm}: ")?;
        }
        if let Some(a) = self.addr {
            write!(f, "{a}: ")?;
        }
        if let Some(p) = self.pfn {
            write!(f, "{p}: ")?;
        }
        f.write_str(&self.what)
    }
}

/// The checker's verdict when something is wrong: every violation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    /// What does not add up.
    pub violations: Vec<Violation>,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} invariant violation(s):", self.violations.len())?;
        for v in self.violations.iter().take(20) {
            writeln!(f, "  - {v}")?;
        }
        if self.violations.len() > 20 {
            writeln!(f, "  ... and {} more", self.violations.len() - 20)?;
        }
        Ok(())
    }
}

impl std::error::Error for CheckError {}

/// References held outside page tables (GUP, drivers, tests), per folio.
pub type ExtraRefs = BTreeMap<Folio, i32>;

#[derive(Default)]
struct Expect {
    refs: BTreeMap<Pfn, i32>,
    maps: BTreeMap<Pfn, i32>,
    /// Device-exclusive entries naming each page that its mapcount does not count
    /// (profiles that drop the mapcount at conversion).
    unmapped_entries: BTreeMap<Pfn, i32>,
    /// PMD mappings per folio head (Linux: the entire mapcount).
    entire: BTreeMap<Pfn, i32>,
    /// Swap PTEs naming each slot.
    swap: BTreeMap<u64, u32>,
    tables: BTreeMap<Pfn, u64>,
    /// Every present PTE mapping an anon page: (folio, mm, address, pfn), for the rmap
    /// reachability check.
    anon_ptes: Vec<(Folio, u64, VirtAddr, Pfn)>,
}

impl System {
    /// Checks every invariant, assuming no references are held outside page tables.
    pub fn check(&self) -> Result<(), CheckError> {
        self.check_with(&ExtraRefs::new())
    }

    /// Checks every invariant, counting `extra` references (held by GUP, drivers or
    /// the test itself) on top of what the page tables account for.
    ///
    /// Call it at a quiescent point: it takes each mm's mmap lock for read but reads
    /// page tables without their PTLs.
    pub fn check_with(&self, extra: &ExtraRefs) -> Result<(), CheckError> {
        let mut out = Vec::new();
        let mut exp = Expect::default();
        for (folio, n) in extra {
            *exp.refs.entry(folio.head()).or_default() += n;
        }
        for mm in self.mms() {
            check_mm(&mm, &mut exp, &mut out);
        }
        self.check_shmem(&mut exp, &mut out);
        self.check_swap(&mut exp, &mut out);
        self.check_rmap(&exp, &mut out);
        self.check_frames(&exp, &mut out);
        self.check_devices(&mut out, false);
        if out.is_empty() {
            Ok(())
        } else {
            Err(CheckError { violations: out })
        }
    }

    /// The checks that hold at every moment, not only at a quiescent point: every
    /// device translation matches what the CPU maps there (an atomic one a
    /// device-exclusive entry for the same pfn, DESIGN.md's exclusivity invariant) and
    /// no device touched a frame it no longer mapped. Schedule exploration runs it at
    /// every scheduling point. It takes no lock (so it adds no scheduling point and
    /// may run inside one): a device whose driver lock is held at that moment is in the
    /// middle of changing its table and is skipped.
    pub fn check_devices_now(&self) -> Result<(), CheckError> {
        self.check_devices_now_complete().map(|_| ())
    }

    /// [`check_devices_now`](Self::check_devices_now), telling also whether it read
    /// every device table: `Ok(false)` if one was skipped, its driver lock held (a
    /// caller skipping checks of an unchanged model,
    /// [`check::at_every_state_change`](crate::check::at_every_state_change), checks
    /// again then).
    pub fn check_devices_now_complete(&self) -> Result<bool, CheckError> {
        let mut out = Vec::new();
        let complete = self.check_devices(&mut out, true);
        if out.is_empty() {
            Ok(complete)
        } else {
            Err(CheckError { violations: out })
        }
    }

    /// Each shmem object's page cache holds one reference per folio, and the folio
    /// names the object and its offset.
    fn check_shmem(&self, exp: &mut Expect, out: &mut Vec<Violation>) {
        let mem = self.mem();
        for shmem in mem.shmem_objects() {
            for (index, folio) in shmem.cached() {
                *exp.refs.entry(folio.head()).or_default() += 1;
                let head = mem.page(folio.head());
                let want = Some(Mapping::Shmem(shmem.id()));
                if head.map(|p| (p.mapping(), p.index())) != Some((want, index)) {
                    out.push(Violation {
                        mm: None,
                        addr: None,
                        pfn: Some(folio.head()),
                        what: format!(
                            "shmem {} caches {folio:?} at {index} but the folio says {:?}",
                            shmem.id(),
                            head.map(|p| (p.mapping(), p.index()))
                        ),
                    });
                }
            }
        }
    }

    /// Each swap slot in use is named by exactly as many swap PTEs as its count says
    /// (none leaked, none missing); a swap-cached folio holds one reference.
    fn check_swap(&self, exp: &mut Expect, out: &mut Vec<Violation>) {
        let mem = self.mem();
        let usage = mem.swap_usage();
        for &(slot, count, cached) in &usage {
            let named = exp.swap.get(&slot).copied().unwrap_or(0);
            if named != count || (count == 0 && cached.is_none()) {
                out.push(Violation {
                    mm: None,
                    addr: None,
                    pfn: cached.map(|f| f.head()),
                    what: format!(
                        "swap slot {slot}: count {count}, swap PTEs name it {named} time(s)"
                    ),
                });
            }
            if let Some(f) = cached {
                *exp.refs.entry(f.head()).or_default() += 1;
            }
        }
        for (&slot, &n) in &exp.swap {
            if !usage.iter().any(|u| u.0 == slot) {
                out.push(Violation {
                    mm: None,
                    addr: None,
                    pfn: None,
                    what: format!("{n} swap PTE(s) name free slot {slot}"),
                });
            }
        }
    }

    /// Every present PTE mapping an anon page is found by `rmap_walk` from its folio.
    fn check_rmap(&self, exp: &Expect, out: &mut Vec<Violation>) {
        let mem = self.mem();
        let mut found: BTreeMap<Folio, Vec<(u64, VirtAddr, Pfn)>> = BTreeMap::new();
        for &(folio, mm, addr, pfn) in &exp.anon_ptes {
            let hits = found
                .entry(folio)
                .or_insert_with(|| mem.rmap_mappings(folio));
            // Linux: rmap_walk_ksm() visits only the addresses of the page's rmap
            // items (in every VMA of their anon_vmas there, forks included); a KSM
            // page a fork's unmergeable VMA moved elsewhere (mremap, where
            // ksm_madvise(MADV_UNMERGEABLE) does nothing) stays mapped out of rmap's
            // reach, as in Linux (derived from mm/ksm.c and mm/mremap.c).
            let reachable = !mem.folio_test_ksm(folio) || mem.ksm_item_at(folio, addr);
            if reachable && hits.binary_search(&(mm, addr, pfn)).is_err() {
                out.push(Violation {
                    mm: Some(mm),
                    addr: Some(addr),
                    pfn: Some(pfn),
                    what: format!("anon PTE that rmap_walk of {folio:?} does not find"),
                });
            }
        }
    }

    /// Every device translation is valid, and no device access used a stale one.
    /// `now`: without taking the driver locks (see [`System::check_devices_now`]).
    /// Whether every device table was read (`now`: a held driver lock skips one).
    fn check_devices(&self, out: &mut Vec<Violation>, now: bool) -> bool {
        let mem = self.mem();
        let mut complete = true;
        // On a copy of the list: an mm dropped here (its last reference being the one
        // `mirrored_mm` gave) takes facade locks, which must not happen under the
        // registry's std lock.
        let mut audit = |dev: &dyn crate::mm::SecondaryMmu| {
            let translations = if now {
                match dev.translations_now() {
                    Some(t) => t,
                    None => {
                        complete = false;
                        return;
                    }
                }
            } else {
                dev.translations()
            };
            if translations.is_empty() {
                return;
            }
            let id = dev.mirrored_mm_id();
            let mm = dev.mirrored_mm();
            for t in translations {
                let v = |what: String| Violation {
                    mm: Some(id),
                    addr: Some(t.addr),
                    pfn: Some(t.pfn),
                    what: format!("device {}: {what}", dev.name()),
                };
                // An exited mm mirrors nothing: exit unmapped every page.
                if let Some(mm) = mm.as_ref().filter(|m| m.mm_users() == 0) {
                    let cpu = mm.cpu_mapping_lockless(t.addr);
                    out.push(v(format!(
                        "stale device entry: mm {id} has exited (CPU side: {cpu:?})"
                    )));
                    continue;
                }
                match audit_translation(mm.as_deref(), t.addr, t.pfn) {
                    Err(why) => out.push(v(format!("stale device entry: {why}"))),
                    Ok(cpu) if t.atomic && !cpu.is_device_exclusive() => out.push(v(format!(
                        "atomic device entry but the CPU entry is {cpu:?}, not device-exclusive"
                    ))),
                    Ok(_) => {}
                }
            }
        };
        for dev in mem.secondary_mmus() {
            audit(&*dev);
        }
        if !mem.has_stale_device_accesses() {
            return complete;
        }
        for a in mem.stale_device_accesses() {
            out.push(Violation {
                mm: Some(a.mm),
                addr: Some(a.addr),
                pfn: Some(a.pfn),
                what: format!("stale device access: {a}"),
            });
        }
        complete
    }

    fn check_frames(&self, exp: &Expect, out: &mut Vec<Violation>) {
        let mem = self.mem();
        let v = |pfn: Pfn, what: String| Violation {
            mm: None,
            addr: None,
            pfn: Some(pfn),
            what,
        };
        if let Err(e) = mem.check_free_lists() {
            out.push(v(e.pfn, e.to_string()));
        }
        for b in mem.bad_pages() {
            out.push(v(
                b.pfn,
                format!(
                    "bad page reported: {} (flags {:?}, refcount {}, mapcount {})",
                    b.reason, b.flags, b.refcount, b.mapcount
                ),
            ));
        }
        let free = mem.free_frame_bitmap();
        let mut raw = 1u64;
        while raw < mem.nr_frames() {
            let pfn = Pfn::new(raw);
            if free[raw as usize] {
                raw += 1;
                continue;
            }
            let Some(page) = mem.page(pfn) else { break };
            if page.test(PageFlags::PGTABLE) {
                if !exp.tables.contains_key(&pfn) {
                    out.push(v(pfn, "page-table frame that no mm uses (leaked)".into()));
                }
                if page.refcount() != 1 {
                    out.push(v(
                        pfn,
                        format!("page table with refcount {}", page.refcount()),
                    ));
                }
                raw += 1;
                continue;
            }
            let Ok(folio) = mem.page_folio(pfn) else {
                break;
            };
            if folio.head() != pfn {
                // A tail whose head is this folio was handled with the head.
                raw += 1;
                continue;
            }
            let want = exp.refs.get(&pfn).copied().unwrap_or(0);
            let have = mem.folio_ref_count(folio);
            if want == 0 && have > 0 {
                out.push(v(
                    pfn,
                    format!(
                        "allocated {folio:?} (refcount {have}) that nothing references (leaked)"
                    ),
                ));
            } else if have != want {
                out.push(v(
                    pfn,
                    format!(
                        "{folio:?} refcount {have}, mappings and references account for {want}"
                    ),
                ));
            }
            let want_entire = exp.entire.get(&pfn).copied().unwrap_or(0);
            let have_entire = page.entire_mapcount();
            if have_entire != want_entire {
                out.push(v(
                    pfn,
                    format!(
                        "entire mapcount {have_entire}, huge PMDs map it {want_entire} time(s)"
                    ),
                ));
            }
            for p in folio.pfns() {
                let want = exp.maps.get(&p).copied().unwrap_or(0) + want_entire;
                let have = mem.page(p).map_or(0, |pg| pg.mapcount()) + want_entire;
                if have != want {
                    out.push(v(
                        p,
                        format!("mapcount {have}, page tables map it {want} time(s)"),
                    ));
                }
                // Linux: PageAnonExclusive means one mm owns the page: it is anon and
                // mapped at most once. An entry of a profile that dropped the
                // mapcount still names the page for its mm, so it counts here too.
                let named = want + exp.unmapped_entries.get(&p).copied().unwrap_or(0);
                if mem
                    .page(p)
                    .is_some_and(|pg| pg.test(PageFlags::ANON_EXCLUSIVE))
                    && (named > 1 || !mem.folio_test(folio, PageFlags::ANON))
                {
                    out.push(v(
                        p,
                        format!("anon-exclusive page mapped {named} time(s) or not anon"),
                    ));
                }
            }
            raw += folio.nr_pages();
        }
        for (&pfn, _) in exp.tables.iter() {
            if free.get(pfn.raw() as usize).copied().unwrap_or(true) {
                out.push(v(pfn, "page table in use is free in the allocator".into()));
            } else if !mem.page(pfn).is_some_and(|p| p.test(PageFlags::PGTABLE)) {
                out.push(v(pfn, "page table frame not marked PageTable".into()));
            }
        }
    }
}

fn check_mm(mm: &Arc<Mm>, exp: &mut Expect, out: &mut Vec<Violation>) {
    let mem = mm.mem();
    let id = mm.id();
    let tree = mm.mmap_read_lock();
    let viol = |addr: Option<VirtAddr>, pfn: Option<Pfn>, what: String| Violation {
        mm: Some(id),
        addr,
        pfn,
        what,
    };
    let mut prev_end = 0;
    for vma in tree.iter() {
        if !vma.start().is_page_aligned() || !vma.end().is_page_aligned() {
            out.push(viol(Some(vma.start()), None, format!("unaligned {vma:?}")));
        }
        if vma.start().raw() < prev_end || vma.start() >= vma.end() {
            out.push(viol(
                Some(vma.start()),
                None,
                format!("overlapping or empty {vma:?}"),
            ));
        }
        prev_end = vma.end().raw();
    }
    let mut rss = 0i64;
    let mut rss_shmem = 0i64;
    let mut huge = Vec::new();
    let mut visits = Vec::new();
    mm.walk_tables(|t| visits.push(t));
    for t in visits {
        if let Some(other) = exp.tables.insert(t.pfn, id) {
            out.push(viol(
                None,
                Some(t.pfn),
                format!("page table also used by mm {other}"),
            ));
        }
        if t.level == 4 {
            continue;
        }
        if t.level == 2 {
            for (addr, pmd) in t.pmds(mem) {
                if let Pmd::Huge(p) = pmd {
                    // hugetlb PMDs have no deposited table (mm/hugetlb.rs).
                    if !tree.find(addr).is_some_and(|v| v.is_hugetlb()) {
                        huge.push(addr.raw());
                    }
                    check_huge_pmd(mm, &tree, addr, p, exp, &mut rss, out);
                }
            }
        }
        let lo = VirtAddr::new_truncate(t.base);
        let hi = VirtAddr::new_truncate((t.base + t.span()).min(crate::types::TASK_SIZE));
        if tree.is_free(lo, hi) {
            out.push(viol(
                Some(lo),
                Some(t.pfn),
                format!(
                    "level-{} page table over unmapped space was not freed",
                    t.level
                ),
            ));
        }
        for (addr, pte) in t.ptes(mem) {
            let p = match pte {
                Pte::None => continue,
                Pte::Swap(s) if s.is_device_exclusive() => {
                    check_exclusive_entry(mm, &tree, addr, s, exp, &mut rss, out);
                    continue;
                }
                Pte::Swap(s) if s.is_swap() => {
                    *exp.swap.entry(s.offset).or_default() += 1;
                    if tree.find(addr).is_none_or(|v| v.shmem().is_some()) {
                        out.push(viol(
                            Some(addr),
                            None,
                            format!("swap entry {s:?} outside a private VMA"),
                        ));
                    }
                    continue;
                }
                Pte::Swap(s) => {
                    out.push(viol(
                        Some(addr),
                        None,
                        format!("unexpected swap-type entry {s:?}"),
                    ));
                    continue;
                }
                Pte::Present(p) => p,
            };
            let Some(vma) = tree.find(addr) else {
                out.push(viol(
                    Some(addr),
                    Some(p.pfn),
                    "present PTE outside any VMA".into(),
                ));
                continue;
            };
            if p.is_write() && !vma.flags.contains(VmFlags::WRITE) {
                out.push(viol(
                    Some(addr),
                    Some(p.pfn),
                    format!("writable PTE in {vma:?}"),
                ));
            }
            // A PROT_NONE VMA maps only protnone PTEs; an accessible one may hold
            // protnone ones too, NUMA hinting entries (never writable).
            if (!vma.is_accessible() && !p.is_protnone()) || (p.is_protnone() && p.is_write()) {
                out.push(viol(
                    Some(addr),
                    Some(p.pfn),
                    format!("PTE protnone={} in {vma:?}", p.is_protnone()),
                ));
            }
            if mem.is_zero_pfn(p.pfn) {
                if p.is_write() || !p.flags.contains(PteFlags::SPECIAL) {
                    out.push(viol(
                        Some(addr),
                        Some(p.pfn),
                        "zero page mapped writable or not special".into(),
                    ));
                }
                continue;
            }
            if p.is_special() {
                out.push(viol(
                    Some(addr),
                    Some(p.pfn),
                    "special PTE on a normal page".into(),
                ));
            }
            if !mem.pfn_valid(p.pfn) {
                out.push(viol(
                    Some(addr),
                    Some(p.pfn),
                    "PTE maps a frame that does not exist".into(),
                ));
                continue;
            }
            let Ok(folio) = mem.page_folio(p.pfn) else {
                continue;
            };
            *exp.refs.entry(folio.head()).or_default() += 1;
            *exp.maps.entry(p.pfn).or_default() += 1;
            let anon = mem.folio_test(folio, PageFlags::ANON);
            if let Some(shmem) = vma.shmem() {
                rss_shmem += 1;
                let want = (
                    Some(Mapping::Shmem(shmem.id())),
                    vma.linear_page_index(addr),
                );
                let have = mem.page(folio.head()).map(|pg| (pg.mapping(), pg.index()));
                if anon || have != Some(want) {
                    out.push(viol(
                        Some(addr),
                        Some(p.pfn),
                        format!(
                            "{folio:?} in a shared VMA: anon {anon}, mapping/index {have:?}, want {want:?}"
                        ),
                    ));
                }
                continue;
            }
            if anon {
                rss += 1;
                exp.anon_ptes.push((folio, id, addr, p.pfn));
            } else {
                out.push(viol(
                    Some(addr),
                    Some(p.pfn),
                    format!("{folio:?} mapped in an anon VMA is not PageAnon"),
                ));
            }
            if p.is_write()
                && !mem
                    .page(p.pfn)
                    .is_some_and(|pg| pg.test(PageFlags::ANON_EXCLUSIVE))
            {
                out.push(viol(
                    Some(addr),
                    Some(p.pfn),
                    "writable PTE on a page that is not anon-exclusive".into(),
                ));
            }
        }
    }
    check_hugetlb_entries(mm, &tree, exp, out);
    let deposited = mm.deposited_tables();
    for &(addr, table) in &deposited {
        if let Some(other) = exp.tables.insert(table, id) {
            out.push(viol(
                Some(VirtAddr::new_truncate(addr)),
                Some(table),
                format!("deposited page table also used by mm {other}"),
            ));
        }
    }
    let deposits: Vec<u64> = deposited.iter().map(|d| d.0).collect();
    if deposits != huge {
        out.push(viol(
            None,
            None,
            format!("huge PMDs at {huge:x?} but page tables deposited for {deposits:x?}"),
        ));
    }
    if rss_shmem != mm.rss_shmem() {
        out.push(viol(
            None,
            None,
            format!(
                "shmem RSS counter {} but {} shmem pages mapped",
                mm.rss_shmem(),
                rss_shmem
            ),
        ));
    }
    if rss != mm.rss_anon() {
        out.push(viol(
            None,
            None,
            format!(
                "anon RSS counter {} but {} anon pages mapped",
                mm.rss_anon(),
                rss
            ),
        ));
    }
}

/// One huge PMD: inside a private anonymous VMA that allows it, mapping the head of an
/// order-9 anon folio; counted as one reference, one entire mapping, 512 RSS pages.
fn check_huge_pmd(
    mm: &Arc<Mm>,
    tree: &crate::mm::VmaTree,
    addr: VirtAddr,
    p: PresentPte,
    exp: &mut Expect,
    rss: &mut i64,
    out: &mut Vec<Violation>,
) {
    let mem = mm.mem();
    let viol = |what: String| Violation {
        mm: Some(mm.id()),
        addr: Some(addr),
        pfn: Some(p.pfn),
        what,
    };
    let Some(vma) = tree.find(addr) else {
        out.push(viol("huge PMD outside any VMA".into()));
        return;
    };
    if vma.end().raw() < addr.raw() + PMD_SIZE || vma.shmem().is_some() {
        out.push(viol(format!(
            "huge PMD not wholly inside a private {vma:?}"
        )));
    }
    if p.is_write() && !vma.flags.contains(VmFlags::WRITE) {
        out.push(viol(format!("writable huge PMD in {vma:?}")));
    }
    if p.is_protnone() == vma.is_accessible() {
        out.push(viol(format!(
            "huge PMD protnone={} in {vma:?}",
            p.is_protnone()
        )));
    }
    let Ok(folio) = mem.page_folio(p.pfn) else {
        out.push(viol("huge PMD maps a frame that does not exist".into()));
        return;
    };
    if folio.head() != p.pfn || folio.nr_pages() != HPAGE_PMD_NR {
        out.push(viol(format!(
            "huge PMD maps {folio:?}, not the head of a PMD-sized folio"
        )));
        return;
    }
    if !mem.folio_test(folio, PageFlags::ANON) {
        out.push(viol(format!("huge PMD maps non-anon {folio:?}")));
    }
    if mem.folio_test_hugetlb(folio) != vma.is_hugetlb() {
        out.push(viol(format!(
            "huge PMD of {folio:?} (hugetlb {}) in {vma:?}",
            mem.folio_test_hugetlb(folio)
        )));
    }
    if p.is_write()
        && !mem
            .page(p.pfn)
            .is_some_and(|pg| pg.test(PageFlags::ANON_EXCLUSIVE))
    {
        out.push(viol(
            "writable huge PMD on a THP that is not anon-exclusive".into(),
        ));
    }
    *exp.refs.entry(folio.head()).or_default() += 1;
    *exp.entire.entry(folio.head()).or_default() += 1;
    // hugetlb pages are not in the RSS (Linux: HugetlbPages, not MM_ANONPAGES).
    if !vma.is_hugetlb() {
        *rss += HPAGE_PMD_NR as i64;
    }
    exp.anon_ptes.push((folio, mm.id(), addr, p.pfn));
}

/// Non-present hugetlb PMDs: entries exist only at PTE level (spec 4.13), so each one
/// is flagged. The only one the model makes is the 5.14 conversion's
/// device-exclusive entry written through the PTE path into a hugetlb PMD (spec 4.12,
/// 8 item 20); it still holds the mapping's reference and entire mapcount, which are
/// counted so that the frame checks do not report them a second time.
fn check_hugetlb_entries(
    mm: &Arc<Mm>,
    tree: &crate::mm::VmaTree,
    exp: &mut Expect,
    out: &mut Vec<Violation>,
) {
    let mem = mm.mem();
    mm.for_each_nonpresent_hugetlb_entry(tree, |addr, entry| {
        out.push(Violation {
            mm: Some(mm.id()),
            addr: Some(addr),
            pfn: entry.pfn(),
            what: format!(
                "{entry:?} in a hugetlb PMD: a hugetlb folio converted through the PTE path"
            ),
        });
        if let Some(pfn) = entry.pfn()
            && let Ok(folio) = mem.page_folio(pfn)
        {
            *exp.refs.entry(folio.head()).or_default() += 1;
            *exp.entire.entry(folio.head()).or_default() += 1;
        }
        std::ops::ControlFlow::Continue(())
    });
}

/// One device-exclusive entry: inside a private VMA, naming a page of an anon folio;
/// it holds the reference (and, where the profile keeps it, the mapcount) of the PTE
/// it replaced, and stays in the RSS.
fn check_exclusive_entry(
    mm: &Arc<Mm>,
    tree: &crate::mm::VmaTree,
    addr: VirtAddr,
    entry: SwapPte,
    exp: &mut Expect,
    rss: &mut i64,
    out: &mut Vec<Violation>,
) {
    let mem = mm.mem();
    let pfn = entry.pfn();
    let viol = |what: String| Violation {
        mm: Some(mm.id()),
        addr: Some(addr),
        pfn,
        what,
    };
    match tree.find(addr) {
        None => out.push(viol("device-exclusive entry outside any VMA".into())),
        Some(v) if v.shmem().is_some() => {
            out.push(viol(format!("device-exclusive entry in shared {v:?}")));
        }
        Some(_) => {}
    }
    if !mm.profile().entry_has_write_bit && !entry.is_writable_device_exclusive() {
        out.push(viol(format!(
            "{entry:?}: a read-only type the profile does not have"
        )));
    }
    let Some(pfn) = pfn.filter(|p| mem.pfn_valid(*p) && !mem.is_free_frame(*p)) else {
        out.push(viol(format!(
            "{entry:?} names a frame that is not allocated"
        )));
        return;
    };
    let Ok(folio) = mem.page_folio(pfn) else {
        return;
    };
    if !mem.folio_test(folio, PageFlags::ANON) {
        out.push(viol(format!("{entry:?} names non-anon {folio:?}")));
    }
    *exp.refs.entry(folio.head()).or_default() += 1;
    if mm.profile().mapcount_kept_on_entry {
        *exp.maps.entry(pfn).or_default() += 1;
    } else {
        *exp.unmapped_entries.entry(pfn).or_default() += 1;
    }
    *rss += 1;
    exp.anon_ptes.push((folio, mm.id(), addr, pfn));
}
