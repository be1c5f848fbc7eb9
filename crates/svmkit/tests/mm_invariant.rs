//! Random operation sequences over up to three address spaces (created, forked and
//! exited at random), checked after every step against the invariant checker and a
//! plain shadow model of what each process must read back.
//!
//! The shadow follows Linux: fork copies private memory (copy-on-write: each side
//! then sees its own writes) and shares `MAP_SHARED` memory (one shmem object, seen
//! by both); `MADV_DONTNEED` makes private pages read zero but keeps shared pages'
//! data in the shmem object; a shared page reads its object at the page offset it
//! had at mmap, whatever splitting `mprotect`/`munmap` did since.
//!
//! The window holds one whole 2 MiB-aligned range, so `MADV_HUGEPAGE` (or the
//! "always" policy) followed by a first write fault there maps an order-9 THP by a
//! PMD, which partial `mprotect`/`munmap`/`MADV_DONTNEED`, fork+COW and
//! `FOLL_SPLIT_PMD` later split. None of that changes what is read back (a THP is
//! zero-filled like a 4 KiB page), so the shadow ignores it; it only checks that a
//! huge PMD never covers what is not one private mapping of one protection.
//!
//! GUP takes references and pins (kept in a list of held references, released at
//! random and at the end of the case) and must agree with the shadow: pages done up
//! to the first one the VMA does not allow (`EFAULT` if that is the first), each the
//! frame the process maps there, holding what the process reads. The checker is told
//! about every held reference; a held page outlives munmap and exit.
//!
//! Migration (`migrate_pages()` of the folio mapped at an address, and offlining's
//! `migrate_range()` over a window of frames) never changes what a process reads, so
//! the shadow ignores it. It must move an anonymous folio to a new one that every mm
//! then maps at the addresses it mapped the old one, and it must fail only with
//! `EAGAIN` on a folio the test holds a GUP reference or pin on, or with `ENOMEM`.
//!
//! Each case has a swap device, and reclaim (of the folio mapped at an address, of an
//! mm's folios, or `MADV_PAGEOUT` of a range) never changes what a process reads
//! either: only small anonymous folios are written out (a THP or a shmem folio is
//! refused with `EINVAL` or skipped), every mapping of one becomes a swap entry, and
//! the frame is freed, unless the test holds it (`EAGAIN`: it stays in the swap
//! cache) or no slot is free (`ENOMEM`: nothing changes). A swap entry is copied by
//! fork (copy-on-write, like the page), dropped by `MADV_DONTNEED` (the page reads
//! zero) and munmap, and brought back by a fault; the checker matches every slot's
//! use count against the swap entries naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use proptest::prelude::*;
use svmkit::check::ExtraRefs;
use svmkit::mm::{
    Advice, Folio, GUP_PIN_COUNTING_BIAS, GupFlags, MapFlags, MigrateRangeError, MmUser, PMD_SIZE,
    PageFlags, Prot, Pte, ThpMode,
};
use svmkit::{Errno, FaultKind, PAGE_SIZE, Pfn, System, SystemConfig, VirtAddr};

const BASE: u64 = 0x7000_0000;
/// Pages of the window on either side of the 2 MiB-aligned range it contains.
const EDGE: u64 = 8;
/// Pages in a PMD (a 2 MiB THP).
const PMD_PAGES: u64 = PMD_SIZE / PAGE_SIZE;
/// Pages in the window the operations hit: `EDGE` pages, the whole 2 MiB-aligned
/// range `[EDGE, EDGE + PMD_PAGES)`, `EDGE` more (three PTE tables).
const PAGES: u64 = EDGE + PMD_PAGES + EDGE;
/// The window starts `EDGE` pages below a 2 MiB boundary.
const WINDOW_SPLIT: u64 = PMD_PAGES - EDGE;
const WORDS: u64 = 4;
/// Address-space slots: at most this many mms are alive at once.
const SLOTS: usize = 3;
/// Frames of the machine: room for a few order-9 folios besides the 4 KiB pages.
const FRAMES: u64 = 4096;
/// GUP is skipped while this many references are held, or fewer frames than this are
/// free (room to populate the whole window in every mm): the pages GUP holds outlive
/// their unmapping, and running out of memory would make faults fail where the shadow
/// expects none.
const MAX_HELD: usize = 1024;
const GUP_MIN_FREE: u64 = SLOTS as u64 * PAGES + 64;
/// Frames a [`Op::MigrateRange`] covers.
const MIGRATE_WINDOW: u64 = 64;
/// Tries per folio a [`Op::MigrateRange`] allows.
const MIGRATE_ATTEMPTS: usize = 3;
/// Slots of each case's swap device: fewer than the window's pages, so reclaim also
/// runs out of them.
const SWAP_SLOTS: usize = 256;

fn addr(page: u64, word: u64) -> u64 {
    BASE + (WINDOW_SPLIT + page) * PAGE_SIZE + word * 8
}

fn va(page: u64) -> VirtAddr {
    VirtAddr::try_new(addr(page, 0)).unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Mmap {
        mm: usize,
        page: u64,
        n: u64,
        prot: u8,
        shared: bool,
    },
    Munmap {
        mm: usize,
        page: u64,
        n: u64,
    },
    Mprotect {
        mm: usize,
        page: u64,
        n: u64,
        prot: u8,
    },
    DontNeed {
        mm: usize,
        page: u64,
        n: u64,
    },
    /// MADV_HUGEPAGE (`huge`) or MADV_NOHUGEPAGE.
    Madvise {
        mm: usize,
        page: u64,
        n: u64,
        huge: bool,
    },
    /// The machine-wide THP policy (`transparent_hugepage/enabled`).
    SetThp {
        mode: u8,
    },
    Read {
        mm: usize,
        page: u64,
        word: u64,
    },
    Write {
        mm: usize,
        page: u64,
        word: u64,
        value: u64,
    },
    FetchAdd {
        mm: usize,
        page: u64,
        word: u64,
        delta: u64,
    },
    /// Writes `value + i` to the i-th word of `[page, page + n)`, word by word (a
    /// memset that keeps going past faults).
    Fill {
        mm: usize,
        page: u64,
        n: u64,
        value: u64,
    },
    /// get_user_pages of `[page, page + n)`: a reference (GET) or a pin (PIN), for
    /// writing (WRITE) or not, splitting a huge PMD first (SPLIT_PMD) or not. The
    /// frames returned are held until a [`Op::Release`] or the end of the case.
    Gup {
        mm: usize,
        page: u64,
        n: u64,
        write: bool,
        pin: bool,
        split: bool,
    },
    /// Releases held reference `idx` (modulo how many are held).
    Release {
        idx: usize,
    },
    /// Forks the mm in slot `mm` (or the next live one) into a free slot; with no mm
    /// alive, creates a fresh one instead. Skipped when every slot is taken.
    Fork {
        mm: usize,
    },
    /// Drops the mm in slot `mm` (or the next live one): its last user, so exit_mmap.
    Exit {
        mm: usize,
    },
    /// Migrates the folio mapped at `page`, or at the next page (wrapping around) that
    /// maps an anonymous folio other than the zero page.
    Migrate {
        mm: usize,
        page: u64,
    },
    /// Migrates the frames `[start - back, start - back + MIGRATE_WINDOW)`, where
    /// `start` is a held frame (`held`, modulo how many are held; so also pages no mm
    /// maps any more), or else the frame [`Op::Migrate`] would pick for `page`.
    MigrateRange {
        mm: usize,
        page: u64,
        back: u64,
        held: Option<usize>,
    },
    /// Reclaims the folio mapped at `page`, or at the next page (wrapping around) that
    /// maps an anonymous folio other than the zero page; with `any`, whatever folio
    /// `page` maps (a shmem one too) but the zero page. With `readback`, every page
    /// that mapped it is then read back (a swap-in fault where it was swapped out).
    Reclaim {
        mm: usize,
        page: u64,
        any: bool,
        readback: bool,
    },
    /// Reclaims up to `n` folios of the mm (`reclaim_mm`).
    ReclaimMm {
        mm: usize,
        n: usize,
    },
    /// MADV_PAGEOUT of `[page, page + n)`.
    PageOut {
        mm: usize,
        page: u64,
        n: u64,
    },
    /// Reads every word of the window's edges, and of every 16th page (from `phase`)
    /// between them, in every live mm and compares it all with the shadow (faulting
    /// pages in as a side effect).
    Sweep {
        phase: u64,
    },
}

fn prot_of(p: u8) -> Prot {
    [Prot::empty(), Prot::READ, Prot::READ | Prot::WRITE][p as usize % 3]
}

/// A protection index for [`prot_of`], biased toward read-write so data gets written.
fn prot() -> impl Strategy<Value = u8> {
    prop_oneof![1 => Just(0u8), 1 => Just(1u8), 3 => Just(2u8)]
}

/// A page of the window, biased toward its edges (where VMAs and PMDs end).
fn page() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => 0..2 * EDGE,
        2 => PAGES - 2 * EDGE..PAGES,
        3 => 0..PAGES,
    ]
}

/// A range `(page, n)`: mostly a few pages, sometimes one covering the whole 2 MiB
/// range (what a THP needs), sometimes a large arbitrary one.
fn span() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        4 => (page(), 1u64..6),
        4 => (0..=EDGE, EDGE + PMD_PAGES..=PAGES).prop_map(|(s, e)| (s, e - s)),
        1 => (page(), 16..PAGES),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let mm = 0..SLOTS;
    prop_oneof![
        4 => (mm.clone(), span(), prot(), prop_oneof![2 => Just(false), 1 => Just(true)])
            .prop_map(|(mm, (page, n), prot, shared)| Op::Mmap { mm, page, n, prot, shared }),
        1 => (mm.clone(), span()).prop_map(|(mm, (page, n))| Op::Munmap { mm, page, n }),
        2 => (mm.clone(), span(), prot()).prop_map(|(mm, (page, n), prot)| Op::Mprotect { mm, page, n, prot }),
        2 => (mm.clone(), span()).prop_map(|(mm, (page, n))| Op::DontNeed { mm, page, n }),
        2 => (mm.clone(), span(), prop_oneof![4 => Just(true), 1 => Just(false)])
            .prop_map(|(mm, (page, n), huge)| Op::Madvise { mm, page, n, huge }),
        1 => (0u8..3).prop_map(|mode| Op::SetThp { mode }),
        4 => (mm.clone(), page(), 0..WORDS).prop_map(|(mm, page, word)| Op::Read { mm, page, word }),
        4 => (mm.clone(), page(), 0..WORDS, any::<u64>()).prop_map(|(mm, page, word, value)| Op::Write { mm, page, word, value }),
        2 => (mm.clone(), page(), 0..WORDS, 1u64..1000).prop_map(|(mm, page, word, delta)| Op::FetchAdd { mm, page, word, delta }),
        2 => (mm.clone(), span(), any::<u64>()).prop_map(|(mm, (page, n), value)| Op::Fill { mm, page, n, value }),
        4 => (mm.clone(), span(), any::<bool>(), any::<bool>(), prop_oneof![3 => Just(false), 1 => Just(true)])
            .prop_map(|(mm, (page, n), write, pin, split)| Op::Gup { mm, page, n, write, pin, split }),
        2 => any::<usize>().prop_map(|idx| Op::Release { idx }),
        3 => (mm.clone(), page()).prop_map(|(mm, page)| Op::Migrate { mm, page }),
        1 => (mm.clone(), page(), 0..MIGRATE_WINDOW / 2, proptest::option::of(any::<usize>()))
            .prop_map(|(mm, page, back, held)| Op::MigrateRange { mm, page, back, held }),
        3 => (mm.clone(), page(), prop_oneof![5 => Just(false), 1 => Just(true)], any::<bool>())
            .prop_map(|(mm, page, any, readback)| Op::Reclaim { mm, page, any, readback }),
        1 => (mm.clone(), prop_oneof![1 => 1usize..4, 1 => 4usize..600])
            .prop_map(|(mm, n)| Op::ReclaimMm { mm, n }),
        2 => (mm.clone(), span()).prop_map(|(mm, (page, n))| Op::PageOut { mm, page, n }),
        1 => mm.clone().prop_map(|mm| Op::Fork { mm }),
        1 => mm.prop_map(|mm| Op::Exit { mm }),
        1 => (0u64..16).prop_map(|phase| Op::Sweep { phase }),
    ]
}

/// What backs one mapped page of the shadow.
#[derive(Clone)]
enum Backing {
    /// Private anonymous memory: the process's own words (copied at fork).
    Private([u64; WORDS as usize]),
    /// Page `off` of shared object `obj` (an index into [`Model::objs`]).
    Shared { obj: usize, off: u64 },
}

#[derive(Clone)]
struct Page {
    prot: Prot,
    backing: Backing,
}

/// One live process: its address space and the shadow of what it must see.
struct Proc {
    user: MmUser,
    pages: BTreeMap<u64, Page>,
}

impl Proc {
    fn access(&self, page: u64, write: bool) -> Result<(), FaultKind> {
        match self.pages.get(&page) {
            None => Err(FaultKind::Unmapped),
            Some(p) if write && !p.prot.contains(Prot::WRITE) => Err(FaultKind::Protection),
            Some(p) if p.prot.is_empty() => Err(FaultKind::Protection),
            Some(_) => Ok(()),
        }
    }
}

/// The shadow of the whole machine: the process slots and every shared object ever
/// created (objects are never reclaimed from the shadow; nothing can reach a dead one).
struct Model {
    procs: Vec<Option<Proc>>,
    objs: Vec<Vec<[u64; WORDS as usize]>>,
}

impl Model {
    /// The live slot an op aimed at `mm` runs on: `mm` itself, else the next live one.
    fn resolve(&self, mm: usize) -> Option<usize> {
        (0..SLOTS)
            .map(|i| (mm + i) % SLOTS)
            .find(|&s| self.procs[s].is_some())
    }

    fn proc(&mut self, slot: usize) -> &mut Proc {
        self.procs[slot].as_mut().unwrap()
    }

    /// The word a read of `(page, word)` in `slot` must return (the page is mapped).
    fn load(&self, slot: usize, page: u64, word: u64) -> u64 {
        match &self.procs[slot].as_ref().unwrap().pages[&page].backing {
            Backing::Private(w) => w[word as usize],
            Backing::Shared { obj, off } => self.objs[*obj][*off as usize][word as usize],
        }
    }

    fn store(&mut self, slot: usize, page: u64, word: u64, value: u64) {
        let Model { procs, objs } = self;
        let p = procs[slot].as_mut().unwrap().pages.get_mut(&page).unwrap();
        match &mut p.backing {
            Backing::Private(w) => w[word as usize] = value,
            Backing::Shared { obj, off } => objs[*obj][*off as usize][word as usize] = value,
        }
    }
}

/// A reference GUP returned and the test holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    pfn: Pfn,
    pin: bool,
}

/// What the checker must add to the page tables' count for the held references: one
/// per GET; per PIN, [`GUP_PIN_COUNTING_BIAS`] on a small folio and one on a large
/// one. The zero page is never counted.
fn extra_refs(sys: &System, held: &[Held]) -> ExtraRefs {
    let mut extra = ExtraRefs::new();
    for h in held {
        let folio = sys.mem().page_folio(h.pfn).unwrap();
        if sys.mem().is_zero_pfn(folio.head()) {
            continue;
        }
        let n = if h.pin && folio.order() == 0 {
            GUP_PIN_COUNTING_BIAS
        } else {
            1
        };
        *extra.entry(folio).or_default() += n;
    }
    extra
}

fn release(sys: &System, h: Held) {
    if h.pin {
        sys.mem().unpin_user_page(h.pfn);
    } else {
        sys.mem().put_page(h.pfn);
    }
}

/// The folios the test holds references or pins on (the zero page aside).
fn held_folios(sys: &System, held: &[Held]) -> BTreeSet<Folio> {
    extra_refs(sys, held).into_keys().collect()
}

/// The first page from `page` on (wrapping around the window) that `proc` maps to an
/// anonymous folio other than the zero page, and its frame.
fn anon_page(sys: &System, proc: &Proc, page: u64) -> Option<(u64, Pfn)> {
    (page..page + PAGES).map(|p| p % PAGES).find_map(|p| {
        let pfn = proc.user.translate(va(p))?;
        let folio = sys.mem().page_folio(pfn).ok()?;
        (!sys.mem().is_zero_pfn(pfn) && sys.mem().folio_test(folio, PageFlags::ANON))
            .then_some((p, pfn))
    })
}

/// What every live mm maps in the window: `(slot, page)` → frame.
type Mapped = BTreeMap<(usize, u64), Pfn>;

fn mapped(m: &Model) -> Mapped {
    let mut out = Mapped::new();
    for (s, proc) in m.procs.iter().enumerate() {
        let Some(proc) = proc else { continue };
        for p in 0..PAGES {
            if let Some(pfn) = proc.user.translate(va(p)) {
                out.insert((s, p), pfn);
            }
        }
    }
    out
}

/// After a migration: the same pages are mapped as `before`, each to the frame `want`
/// gives for its old one (`None`: any frame, for one a migration may have moved).
fn check_remapped(
    before: &Mapped,
    after: &Mapped,
    want: impl Fn(Pfn) -> Option<Pfn>,
    ctx: &str,
) -> Result<(), TestCaseError> {
    for (&(s, p), &old) in before {
        let got = after.get(&(s, p)).copied();
        prop_assert!(got.is_some(), "{}: slot {} page {} unmapped", ctx, s, p);
        if let Some(want) = want(old) {
            prop_assert_eq!(
                got,
                Some(want),
                "{}: slot {} page {} mapped {:?} before",
                ctx,
                s,
                p,
                old
            );
        }
    }
    if let Some((s, p)) = after.keys().find(|k| !before.contains_key(k)) {
        prop_assert!(
            false,
            "{}: slot {} page {} mapped by a migration",
            ctx,
            s,
            p
        );
    }
    Ok(())
}

/// The frame each page of `after` that `which` selects maps holds what the process
/// must read there.
fn check_frames(
    sys: &System,
    m: &Model,
    after: &Mapped,
    which: impl Fn((usize, u64), Pfn) -> bool,
    ctx: &str,
) -> Result<(), TestCaseError> {
    for (&(s, p), &pfn) in after.iter().filter(|&(&k, &pfn)| which(k, pfn)) {
        prop_assert!(
            m.procs[s].as_ref().unwrap().pages.contains_key(&p),
            "{}: slot {} page {} mapped outside any mapping",
            ctx,
            s,
            p
        );
        for word in 0..WORDS {
            prop_assert_eq!(
                sys.mem().read_u64(pfn, word * 8),
                Ok(m.load(s, p, word)),
                "{}: slot {} page {} word {} in frame {:?}",
                ctx,
                s,
                p,
                word,
                pfn
            );
        }
    }
    Ok(())
}

/// The folios the swap cache holds: migration moves them with their cache entry, and
/// reclaim writes them out again under the slot they already have.
fn cached_folios(sys: &System) -> BTreeSet<Folio> {
    sys.mem()
        .swap_usage()
        .into_iter()
        .filter_map(|(_, _, f)| f)
        .collect()
}

/// The small anonymous folios (the zero page aside) `which` selects of `before`: what
/// reclaim may write out.
fn reclaimable(
    sys: &System,
    before: &Mapped,
    which: impl Fn((usize, u64)) -> bool,
) -> BTreeSet<Folio> {
    let mem = sys.mem();
    before
        .iter()
        .filter(|&(&k, &pfn)| which(k) && !mem.is_zero_pfn(pfn))
        .map(|(_, &pfn)| mem.page_folio(pfn).unwrap())
        .filter(|&f| f.order() == 0 && mem.folio_test(f, PageFlags::ANON))
        .collect()
}

/// After a reclaim that may have written out folios of `tried` (computed before it):
/// no page got mapped, every page that went unmapped mapped one of `tried` in a
/// private mapping and now holds a swap entry, a folio that lost a mapping lost them
/// all, and each such folio is either freed or still in the swap cache. Returns the
/// folios freed and those left in the swap cache.
fn check_reclaimed(
    sys: &System,
    m: &Model,
    before: &Mapped,
    after: &Mapped,
    tried: &BTreeSet<Folio>,
    ctx: &str,
) -> Result<(BTreeSet<Folio>, BTreeSet<Folio>), TestCaseError> {
    if let Some((s, p)) = after.keys().find(|k| !before.contains_key(k)) {
        prop_assert!(false, "{}: slot {} page {} mapped by reclaim", ctx, s, p);
    }
    let mut gone = BTreeSet::new();
    for (&(s, p), &old) in before {
        match after.get(&(s, p)) {
            Some(&new) => {
                prop_assert_eq!(new, old, "{}: slot {} page {} remapped", ctx, s, p);
            }
            None => {
                let folio = tried.iter().find(|f| f.contains(old)).copied();
                prop_assert!(
                    folio.is_some(),
                    "{}: slot {} page {} ({:?}) unmapped, not a reclaim candidate",
                    ctx,
                    s,
                    p,
                    old
                );
                gone.insert(folio.unwrap());
                let proc = m.procs[s].as_ref().unwrap();
                prop_assert!(
                    matches!(
                        proc.pages.get(&p),
                        Some(Page {
                            backing: Backing::Private(_),
                            ..
                        })
                    ),
                    "{}: slot {} page {} reclaimed from a shared mapping",
                    ctx,
                    s,
                    p
                );
                let pte = proc.user.pte_get_lockless(va(p));
                prop_assert!(
                    matches!(pte, Pte::Swap(e) if e.is_swap()),
                    "{}: slot {} page {} reclaimed, PTE {:?}",
                    ctx,
                    s,
                    p,
                    pte
                );
            }
        }
    }
    let cached = cached_folios(sys);
    let (mut freed, mut kept) = (BTreeSet::new(), BTreeSet::new());
    for &f in &gone {
        if let Some((&(s, p), _)) = after.iter().find(|&(_, &pfn)| f.contains(pfn)) {
            prop_assert!(
                false,
                "{}: {:?} still mapped at slot {} page {} after reclaim",
                ctx,
                f,
                s,
                p
            );
        }
        if cached.contains(&f) {
            kept.insert(f);
        } else {
            prop_assert!(
                sys.mem().is_free_frame(f.head()),
                "{}: {:?} unmapped by reclaim, neither freed nor in the swap cache",
                ctx,
                f
            );
            freed.insert(f);
        }
    }
    Ok((freed, kept))
}

/// Reads every word of `page` in `slot` and compares it with the shadow.
fn read_back(m: &Model, s: usize, p: u64, ctx: &str) -> Result<(), TestCaseError> {
    let proc = m.procs[s].as_ref().unwrap();
    for word in 0..WORDS {
        let got = proc.user.read_u64(addr(p, word)).map_err(|e| e.kind);
        let want = proc.access(p, false).map(|()| m.load(s, p, word));
        prop_assert_eq!(
            got,
            want,
            "{}: read back slot {} page {} word {}",
            ctx,
            s,
            p,
            word
        );
    }
    Ok(())
}

fn range(page: u64, n: u64) -> std::ops::Range<u64> {
    page..(page + n).min(PAGES)
}

/// The pages a [`Op::Sweep`] reads.
fn sweep_pages(phase: u64) -> impl Iterator<Item = u64> {
    (0..PAGES).filter(move |&p| !(2 * EDGE..PAGES - 2 * EDGE).contains(&p) || p % 16 == phase % 16)
}

/// What a case did (for [`invariant_thp_and_gup_sequence`], which checks that the
/// operations reach what they are meant to).
#[derive(Debug, Default)]
struct Stats {
    /// Steps after which some mm mapped the window's 2 MiB range by a huge PMD.
    huge_steps: u64,
    /// GUP calls that returned pages.
    gups: u64,
    /// Huge PMDs split, over every mm.
    splits: u64,
    /// Most references held at once on large folios.
    large_held: usize,
    /// Folios [`Op::Migrate`] moved, and of them large ones.
    migrated: u64,
    migrated_large: u64,
    /// [`Op::Migrate`]s refused (EAGAIN) because the test held the folio.
    migrate_busy: u64,
    /// Folios [`Op::MigrateRange`] moved, and how many ranges stopped at a held folio.
    range_moved: u64,
    range_busy: u64,
    /// [`Op::Reclaim`]s that freed the folio, that left it in the swap cache (EAGAIN),
    /// and that were refused for a large or non-anonymous folio (EINVAL).
    reclaimed: u64,
    reclaim_busy: u64,
    /// Of those, the ones refused because the page was pinned and mapped exclusively.
    reclaim_pinned: u64,
    reclaim_invalid: u64,
    /// Folios [`Op::ReclaimMm`] and [`Op::PageOut`] freed.
    reclaimed_many: u64,
    /// Most swap slots in use after a step.
    max_swapped: usize,
    /// Swap-cache folios [`Op::Migrate`] tried and [`Op::Reclaim`] freed.
    migrated_cached: u64,
    reclaimed_cached: u64,
}

/// How a case starts: the THP policy, and for each of the first two mms either
/// nothing or the whole window mapped as one VMA (`MADV_HUGEPAGE` or not), so that
/// the operations mostly hit mapped memory.
#[derive(Debug, Clone)]
struct Init {
    always: bool,
    maps: [Option<InitMap>; 2],
}

#[derive(Debug, Clone, Copy)]
struct InitMap {
    prot: u8,
    shared: bool,
    huge: bool,
}

fn init_map() -> impl Strategy<Value = Option<InitMap>> {
    let prot = prop_oneof![1 => Just(0u8), 1 => Just(1u8), 6 => Just(2u8)];
    let huge = prop_oneof![1 => Just(false), 2 => Just(true)];
    let map = (prot, prop_oneof![3 => Just(false), 1 => Just(true)], huge)
        .prop_map(|(prot, shared, huge)| InitMap { prot, shared, huge });
    proptest::option::weighted(0.75, map)
}

fn init() -> impl Strategy<Value = Init> {
    (
        prop_oneof![3 => Just(false), 1 => Just(true)],
        [init_map(), init_map()],
    )
        .prop_map(|(always, maps)| Init { always, maps })
}

impl Stats {
    /// Adds what an exiting mm's counters say.
    fn count(&mut self, mm: &MmUser) {
        let st = mm.stats();
        self.splits += st.thp_split_pmds.load(Ordering::Relaxed);
    }
}

fn run(init: Init, ops: Vec<Op>) -> Result<Stats, TestCaseError> {
    // Three mms with up to 528 pages each, their page tables, shmem objects that
    // outlive partial unmaps and pages GUP holds after their unmap: far below this,
    // with room for several order-9 folios (a THP allocation that fails falls back to
    // 4 KiB pages anyway).
    let sys = System::new(SystemConfig::with_frames(FRAMES)).unwrap();
    prop_assert_eq!(sys.mem().swapon(SWAP_SLOTS as u64), Ok(()));
    let mut stats = Stats::default();
    let mut held: Vec<Held> = Vec::new();
    let mut m = Model {
        procs: (0..SLOTS)
            .map(|i| {
                (i < 2).then(|| Proc {
                    user: sys.create_mm().unwrap(),
                    pages: BTreeMap::new(),
                })
            })
            .collect(),
        objs: Vec::new(),
    };
    let private = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED;
    let shared = MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED;
    if init.always {
        sys.mem().set_thp_mode(ThpMode::Always);
    }
    for (s, map) in init.maps.iter().enumerate() {
        let Some(map) = *map else { continue };
        let flags = if map.shared { shared } else { private };
        let len = PAGES * PAGE_SIZE;
        let proc = m.proc(s);
        prop_assert_eq!(
            proc.user
                .mmap(addr(0, 0), len, prot_of(map.prot), flags)
                .map(|a| a.raw()),
            Ok(addr(0, 0))
        );
        if map.huge {
            prop_assert_eq!(proc.user.madvise(addr(0, 0), len, Advice::HugePage), Ok(()));
        }
        let obj = m.objs.len();
        if map.shared {
            m.objs.push(vec![[0; WORDS as usize]; PAGES as usize]);
        }
        for p in 0..PAGES {
            let backing = if map.shared {
                Backing::Shared { obj, off: p }
            } else {
                Backing::Private([0; WORDS as usize])
            };
            let prot = prot_of(map.prot);
            m.proc(s).pages.insert(p, Page { prot, backing });
        }
    }
    for (step, op) in ops.into_iter().enumerate() {
        let target = match &op {
            Op::Mmap { mm, .. }
            | Op::Munmap { mm, .. }
            | Op::Mprotect { mm, .. }
            | Op::DontNeed { mm, .. }
            | Op::Madvise { mm, .. }
            | Op::Read { mm, .. }
            | Op::Write { mm, .. }
            | Op::FetchAdd { mm, .. }
            | Op::Fill { mm, .. }
            | Op::Gup { mm, .. }
            | Op::Migrate { mm, .. }
            | Op::MigrateRange { mm, .. }
            | Op::Reclaim { mm, .. }
            | Op::ReclaimMm { mm, .. }
            | Op::PageOut { mm, .. }
            | Op::Fork { mm }
            | Op::Exit { mm } => m.resolve(*mm),
            Op::Sweep { .. } | Op::SetThp { .. } | Op::Release { .. } => None,
        };
        let ctx = format!("step {step}: {op:?} on slot {target:?}");
        match (op, target) {
            (Op::Sweep { phase }, _) => {
                for s in (0..SLOTS).filter(|&s| m.procs[s].is_some()) {
                    for page in sweep_pages(phase) {
                        for word in 0..WORDS {
                            let proc = m.procs[s].as_ref().unwrap();
                            let got = proc.user.read_u64(addr(page, word)).map_err(|e| e.kind);
                            let want = proc.access(page, false).map(|()| m.load(s, page, word));
                            prop_assert_eq!(
                                got,
                                want,
                                "{}: slot {} page {} word {}",
                                ctx,
                                s,
                                page,
                                word
                            );
                        }
                    }
                }
            }
            (Op::SetThp { mode }, _) => {
                let mode = [ThpMode::Madvise, ThpMode::Always, ThpMode::Never][mode as usize % 3];
                sys.mem().set_thp_mode(mode);
            }
            (Op::Release { idx }, _) => {
                if !held.is_empty() {
                    let h = held.swap_remove(idx % held.len());
                    release(&sys, h);
                }
            }
            (Op::Fork { .. }, None) => {
                // Every process exited: start a fresh one.
                m.procs[0] = Some(Proc {
                    user: sys.create_mm().unwrap(),
                    pages: BTreeMap::new(),
                });
            }
            (Op::Fork { .. }, Some(parent)) => {
                let Some(free) = m.procs.iter().position(Option::is_none) else {
                    continue;
                };
                let p = m.procs[parent].as_ref().unwrap();
                let child = sys.fork(&p.user);
                prop_assert!(child.is_ok(), "{}: fork failed: {:?}", ctx, child.err());
                // Private pages copied, shared ones naming the same objects (pinned
                // pages are copied at once rather than shared: the same values).
                let pages = p.pages.clone();
                m.procs[free] = Some(Proc {
                    user: child.unwrap(),
                    pages,
                });
            }
            (Op::Exit { .. }, Some(slot)) => {
                if let Some(p) = m.procs[slot].take() {
                    stats.count(&p.user);
                }
            }
            (
                Op::MigrateRange {
                    page,
                    back,
                    held: h,
                    ..
                },
                target,
            ) => {
                // From a held frame (mapped or not), else from an anonymous page mapped
                // at or after `page`.
                let start = match (h, target) {
                    (Some(i), _) if !held.is_empty() => held[i % held.len()].pfn,
                    (_, Some(s)) => match anon_page(&sys, m.procs[s].as_ref().unwrap(), page) {
                        Some((_, pfn)) => pfn,
                        None => continue,
                    },
                    _ => continue,
                };
                let mem = sys.mem();
                let first = Pfn::new(start.raw().saturating_sub(back));
                // The anonymous folios with a frame in the range: each must be moved
                // unless the test holds it (EAGAIN) or memory runs out.
                let mut folios = BTreeSet::new();
                for raw in first.raw()..first.raw() + MIGRATE_WINDOW {
                    let pfn = Pfn::new(raw);
                    if !mem.pfn_valid(pfn) || mem.is_free_frame(pfn) || mem.is_zero_pfn(pfn) {
                        continue;
                    }
                    let folio = mem.page_folio(pfn).unwrap();
                    if mem.folio_test(folio, PageFlags::ANON) {
                        folios.insert(folio);
                    }
                }
                let busy: BTreeSet<Folio> = held_folios(&sys, &held)
                    .intersection(&folios)
                    .copied()
                    .collect();
                let before = mapped(&m);
                let got = mem.migrate_range(first, MIGRATE_WINDOW, MIGRATE_ATTEMPTS);
                let after = mapped(&m);
                match got {
                    Ok(moved) => {
                        stats.range_moved += moved as u64;
                        prop_assert!(
                            busy.is_empty(),
                            "{}: moved {:?} though GUP holds them",
                            ctx,
                            busy
                        );
                        prop_assert!(
                            moved >= folios.len(),
                            "{}: moved {} of {:?}",
                            ctx,
                            moved,
                            folios
                        );
                    }
                    Err(MigrateRangeError {
                        pfn,
                        attempts,
                        errno,
                    }) => {
                        prop_assert_eq!(attempts, MIGRATE_ATTEMPTS, "{}", ctx);
                        stats.range_busy += u64::from(errno == Errno::EAGAIN);
                        match errno {
                            Errno::EAGAIN => prop_assert!(
                                busy.iter().any(|f| f.head() == pfn),
                                "{}: EAGAIN on {:?}, which the test does not hold (holds {:?})",
                                ctx,
                                pfn,
                                busy
                            ),
                            Errno::ENOMEM => {
                                let order =
                                    folios.iter().find(|f| f.head() == pfn).map(|f| f.order());
                                if order == Some(0) {
                                    prop_assert_eq!(mem.nr_free_pages(), 0, "{}: ENOMEM", ctx);
                                }
                            }
                            e => prop_assert!(false, "{}: failed at {:?}: {:?}", ctx, pfn, e),
                        }
                    }
                }
                let touched = |pfn: Pfn| folios.iter().any(|f| f.contains(pfn));
                check_remapped(&before, &after, |old| (!touched(old)).then_some(old), &ctx)?;
                check_frames(&sys, &m, &after, |k, _| touched(before[&k]), &ctx)?;
            }
            (_, None) => continue,
            (Op::Migrate { page, .. }, Some(s)) => {
                let mem = sys.mem();
                let Some((page, pfn)) = anon_page(&sys, m.procs[s].as_ref().unwrap(), page) else {
                    continue;
                };
                let folio = mem.page_folio(pfn).unwrap();
                let busy = held_folios(&sys, &held).contains(&folio);
                stats.migrated_cached += u64::from(cached_folios(&sys).contains(&folio));
                let before = mapped(&m);
                let got = mem.migrate_folio(folio);
                let after = mapped(&m);
                match got {
                    Ok(new) => {
                        // Every mapping of the old folio now maps the same page of the
                        // new one; the old one is freed.
                        prop_assert!(!busy, "{}: moved {:?} though GUP holds it", ctx, folio);
                        stats.migrated += 1;
                        stats.migrated_large += u64::from(folio.is_large());
                        prop_assert_eq!(new.order(), folio.order(), "{}", ctx);
                        prop_assert!(
                            !folio.contains(new.head()) && !new.contains(folio.head()),
                            "{}: {:?} moved onto itself: {:?}",
                            ctx,
                            folio,
                            new
                        );
                        let moved = |old: Pfn| {
                            if folio.contains(old) {
                                Pfn::new(new.head().raw() + (old.raw() - folio.head().raw()))
                            } else {
                                old
                            }
                        };
                        check_remapped(&before, &after, |old| Some(moved(old)), &ctx)?;
                        prop_assert_eq!(
                            after.get(&(s, page)).copied(),
                            Some(moved(pfn)),
                            "{}",
                            ctx
                        );
                        prop_assert!(
                            folio.pfns().all(|p| mem.is_free_frame(p)),
                            "{}: {:?} not freed after its migration",
                            ctx,
                            folio
                        );
                        check_frames(&sys, &m, &after, |_, f| new.contains(f), &ctx)?;
                    }
                    Err(e) => {
                        // Held by GUP: EAGAIN whatever memory is left; else only no frame
                        // of that order left stops it. Every mapping is put back.
                        let want = if busy { Errno::EAGAIN } else { Errno::ENOMEM };
                        prop_assert_eq!(e, want, "{}: {:?}", ctx, folio);
                        stats.migrate_busy += u64::from(busy);
                        if e == Errno::ENOMEM && folio.order() == 0 {
                            prop_assert_eq!(mem.nr_free_pages(), 0, "{}: ENOMEM", ctx);
                        }
                        check_remapped(&before, &after, Some, &ctx)?;
                        check_frames(&sys, &m, &after, |_, f| folio.contains(f), &ctx)?;
                    }
                }
            }
            (
                Op::Reclaim {
                    page,
                    any,
                    readback,
                    ..
                },
                Some(s),
            ) => {
                let mem = sys.mem();
                let proc = m.procs[s].as_ref().unwrap();
                let pick = if any {
                    proc.user
                        .translate(va(page))
                        .filter(|&pfn| !mem.is_zero_pfn(pfn))
                        .map(|pfn| (page, pfn))
                } else {
                    anon_page(&sys, proc, page)
                };
                let Some((page, pfn)) = pick else {
                    continue;
                };
                let folio = mem.page_folio(pfn).unwrap();
                let busy = held_folios(&sys, &held).contains(&folio);
                let cached = cached_folios(&sys).contains(&folio);
                let pinned_excl = mem.folio_maybe_dma_pinned(folio)
                    && mem
                        .page(pfn)
                        .is_some_and(|pg| pg.test(PageFlags::ANON_EXCLUSIVE))
                    && matches!(proc.user.pte_get_lockless(va(page)), Pte::Present(_));
                stats.reclaim_pinned += u64::from(pinned_excl);
                // Linux: only a small anon folio; a folio already in the swap cache
                // keeps its slot, any other needs a free one; then only the mappings'
                // references may remain.
                let want = if folio.order() > 0 || !mem.folio_test(folio, PageFlags::ANON) {
                    Err(Errno::EINVAL)
                } else if !cached && mem.swap_slots_used() == SWAP_SLOTS {
                    Err(Errno::ENOMEM)
                } else if busy || pinned_excl {
                    Err(Errno::EAGAIN)
                } else {
                    Ok(())
                };
                // A possibly pinned page the process maps exclusively is not unmapped
                // (Linux: folio_try_share_anon_rmap_pte() fails, try_to_unmap() gives up).
                let tried = if want == Err(Errno::EINVAL) || pinned_excl {
                    BTreeSet::new()
                } else {
                    BTreeSet::from([folio])
                };
                let before = mapped(&m);
                let got = mem.reclaim_folio(folio);
                let after = mapped(&m);
                stats.reclaimed_cached += u64::from(cached && got.is_ok());
                prop_assert_eq!(got, want, "{}: {:?} at page {}", ctx, folio, page);
                let (freed, kept) = check_reclaimed(&sys, &m, &before, &after, &tried, &ctx)?;
                let (want_freed, want_kept) = match got {
                    Ok(()) => (tried.clone(), BTreeSet::new()),
                    Err(Errno::EAGAIN) => (BTreeSet::new(), tried.clone()),
                    Err(_) => (BTreeSet::new(), BTreeSet::new()),
                };
                prop_assert_eq!(freed, want_freed, "{}: freed", ctx);
                prop_assert_eq!(kept, want_kept, "{}: left in the swap cache", ctx);
                stats.reclaimed += u64::from(got.is_ok());
                stats.reclaim_busy += u64::from(got == Err(Errno::EAGAIN));
                stats.reclaim_invalid += u64::from(got == Err(Errno::EINVAL));
                if readback {
                    for &(s, p) in before
                        .iter()
                        .filter(|&(_, &f)| folio.contains(f))
                        .map(|(k, _)| k)
                    {
                        read_back(&m, s, p, &ctx)?;
                    }
                }
            }
            (Op::ReclaimMm { n, .. }, Some(s)) => {
                let mem = sys.mem();
                let before = mapped(&m);
                let tried = reclaimable(&sys, &before, |(t, _)| t == s);
                let busy = held_folios(&sys, &held);
                let got = m.proc(s).user.reclaim_mm(n);
                let after = mapped(&m);
                prop_assert!(got <= n, "{}: reclaimed {}", ctx, got);
                let (freed, kept) = check_reclaimed(&sys, &m, &before, &after, &tried, &ctx)?;
                prop_assert_eq!(freed.len(), got, "{}: freed {:?}", ctx, freed);
                prop_assert!(kept.is_subset(&busy), "{}: {:?} left cached", ctx, kept);
                // Short of `n`: every candidate was tried, so each one not held was
                // freed, unless the slots ran out.
                if got < n && mem.swap_slots_used() < SWAP_SLOTS {
                    let missed: Vec<_> = tried
                        .difference(&busy)
                        .filter(|f| !freed.contains(f))
                        .collect();
                    prop_assert!(missed.is_empty(), "{}: not reclaimed: {:?}", ctx, missed);
                }
                stats.reclaimed_many += got as u64;
            }
            (Op::PageOut { page, n, .. }, Some(s)) => {
                let mem = sys.mem();
                let r = range(page, n);
                let before = mapped(&m);
                let tried = reclaimable(&sys, &before, |(t, p)| t == s && r.contains(&p));
                let busy = held_folios(&sys, &held);
                let proc = m.procs[s].as_ref().unwrap();
                let got = proc.user.madvise(
                    addr(r.start, 0),
                    (r.end - r.start) * PAGE_SIZE,
                    Advice::PageOut,
                );
                let after = mapped(&m);
                // Linux: applied to every mapped piece; ENOMEM if there was a hole.
                let want = if r.clone().all(|p| proc.pages.contains_key(&p)) {
                    Ok(())
                } else {
                    Err(Errno::ENOMEM)
                };
                prop_assert_eq!(got, want, "{}", ctx);
                let (freed, kept) = check_reclaimed(&sys, &m, &before, &after, &tried, &ctx)?;
                prop_assert!(kept.is_subset(&busy), "{}: {:?} left cached", ctx, kept);
                if mem.swap_slots_used() < SWAP_SLOTS {
                    let missed: Vec<_> = tried
                        .difference(&busy)
                        .filter(|f| !freed.contains(f))
                        .collect();
                    prop_assert!(missed.is_empty(), "{}: not reclaimed: {:?}", ctx, missed);
                }
                stats.reclaimed_many += freed.len() as u64;
            }
            (
                Op::Mmap {
                    page,
                    n,
                    prot,
                    shared: is_shared,
                    ..
                },
                Some(s),
            ) => {
                let r = range(page, n);
                let npages = r.end - r.start;
                let got = m.proc(s).user.mmap(
                    addr(r.start, 0),
                    npages * PAGE_SIZE,
                    prot_of(prot),
                    if is_shared { shared } else { private },
                );
                prop_assert_eq!(got.map(|a| a.raw()), Ok(addr(r.start, 0)), "{}", ctx);
                let obj = m.objs.len();
                if is_shared {
                    m.objs.push(vec![[0; WORDS as usize]; npages as usize]);
                }
                for p in r.clone() {
                    let backing = if is_shared {
                        Backing::Shared {
                            obj,
                            off: p - r.start,
                        }
                    } else {
                        Backing::Private([0; WORDS as usize])
                    };
                    m.proc(s).pages.insert(
                        p,
                        Page {
                            prot: prot_of(prot),
                            backing,
                        },
                    );
                }
            }
            (Op::Munmap { page, n, .. }, Some(s)) => {
                let r = range(page, n);
                let proc = m.proc(s);
                prop_assert_eq!(
                    proc.user
                        .munmap(addr(r.start, 0), (r.end - r.start) * PAGE_SIZE),
                    Ok(()),
                    "{}",
                    ctx
                );
                for p in r {
                    proc.pages.remove(&p);
                }
            }
            (Op::Mprotect { page, n, prot, .. }, Some(s)) => {
                let r = range(page, n);
                let proc = m.proc(s);
                let got = proc.user.mprotect(
                    addr(r.start, 0),
                    (r.end - r.start) * PAGE_SIZE,
                    prot_of(prot),
                );
                // Linux: applied to the mapped run from the start; ENOMEM at a hole.
                let mut want = Ok(());
                for p in r {
                    match proc.pages.get_mut(&p) {
                        Some(pg) => pg.prot = prot_of(prot),
                        None => {
                            want = Err(Errno::ENOMEM);
                            break;
                        }
                    }
                }
                prop_assert_eq!(got, want, "{}", ctx);
            }
            (Op::DontNeed { page, n, .. }, Some(s)) => {
                let r = range(page, n);
                let proc = m.proc(s);
                let got = proc.user.madvise(
                    addr(r.start, 0),
                    (r.end - r.start) * PAGE_SIZE,
                    Advice::DontNeed,
                );
                // Linux: applied to every mapped piece; ENOMEM if there was a hole.
                // Private pages read zero afterwards; shared ones keep their data in
                // the shmem object.
                let mut want = Ok(());
                for p in r {
                    match proc.pages.get_mut(&p) {
                        Some(Page {
                            backing: Backing::Private(w),
                            ..
                        }) => *w = [0; WORDS as usize],
                        Some(_) => {}
                        None => want = Err(Errno::ENOMEM),
                    }
                }
                prop_assert_eq!(got, want, "{}", ctx);
            }
            (Op::Madvise { page, n, huge, .. }, Some(s)) => {
                let r = range(page, n);
                let proc = m.proc(s);
                let advice = if huge {
                    Advice::HugePage
                } else {
                    Advice::NoHugePage
                };
                let got =
                    proc.user
                        .madvise(addr(r.start, 0), (r.end - r.start) * PAGE_SIZE, advice);
                // Linux: applied to every mapped piece; ENOMEM if there was a hole.
                // Nothing a process reads changes.
                let want = if r.clone().all(|p| proc.pages.contains_key(&p)) {
                    Ok(())
                } else {
                    Err(Errno::ENOMEM)
                };
                prop_assert_eq!(got, want, "{}", ctx);
            }
            (Op::Read { page, word, .. }, Some(s)) => {
                let proc = m.proc(s);
                let got = proc.user.read_u64(addr(page, word)).map_err(|e| e.kind);
                let want = proc.access(page, false).map(|()| m.load(s, page, word));
                prop_assert_eq!(got, want, "{}", ctx);
            }
            (
                Op::Write {
                    page, word, value, ..
                },
                Some(s),
            ) => {
                let proc = m.proc(s);
                let got = proc
                    .user
                    .write_u64(addr(page, word), value)
                    .map_err(|e| e.kind);
                let want = proc.access(page, true);
                if want.is_ok() {
                    m.store(s, page, word, value);
                }
                prop_assert_eq!(got, want, "{}", ctx);
            }
            (Op::Fill { page, n, value, .. }, Some(s)) => {
                for (i, (p, word)) in range(page, n)
                    .flat_map(|p| (0..WORDS).map(move |w| (p, w)))
                    .enumerate()
                {
                    let v = value.wrapping_add(i as u64);
                    let proc = m.proc(s);
                    let got = proc.user.write_u64(addr(p, word), v).map_err(|e| e.kind);
                    let want = proc.access(p, true);
                    if want.is_ok() {
                        m.store(s, p, word, v);
                    }
                    prop_assert_eq!(got, want, "{}: page {} word {}", ctx, p, word);
                }
            }
            (
                Op::FetchAdd {
                    page, word, delta, ..
                },
                Some(s),
            ) => {
                let proc = m.proc(s);
                let got = proc
                    .user
                    .fetch_add_u64(addr(page, word), delta)
                    .map_err(|e| e.kind);
                let want = proc.access(page, true).map(|()| {
                    let old = m.load(s, page, word);
                    m.store(s, page, word, old.wrapping_add(delta));
                    old
                });
                prop_assert_eq!(got, want, "{}", ctx);
            }
            (
                Op::Gup {
                    page,
                    n,
                    write,
                    pin,
                    split,
                    ..
                },
                Some(s),
            ) => {
                if held.len() >= MAX_HELD || sys.mem().nr_free_pages() < GUP_MIN_FREE {
                    continue;
                }
                let mut flags = if pin { GupFlags::PIN } else { GupFlags::GET };
                if write {
                    flags |= GupFlags::WRITE;
                }
                if split {
                    flags |= GupFlags::SPLIT_PMD;
                }
                let proc = m.proc(s);
                let got = {
                    let mut guard = proc.user.mmap_read_lock();
                    proc.user
                        .get_user_pages(&mut guard, addr(page, 0), n, flags)
                };
                // Pages up to the first one the VMA does not allow (no VMA, PROT_NONE,
                // or read-only for WRITE); EFAULT if that is the first.
                let done = (page..page + n)
                    .take_while(|&p| proc.access(p, write).is_ok())
                    .count();
                let pfns = match got {
                    Ok(pfns) => pfns,
                    Err(e) => {
                        prop_assert_eq!((e, done), (Errno::EFAULT, 0), "{}", ctx);
                        continue;
                    }
                };
                held.extend(pfns.iter().map(|&pfn| Held { pfn, pin }));
                prop_assert_eq!(pfns.len(), done, "{}: pages done", ctx);
                stats.gups += 1;
                // Each frame is the one the process maps there (a fault made it
                // writable, or unshared it, if needed) and holds what it reads.
                for (p, &pfn) in (page..).zip(&pfns) {
                    let proc = m.procs[s].as_ref().unwrap();
                    prop_assert_eq!(
                        proc.user.translate(va(p)),
                        Some(pfn),
                        "{}: page {} mapped elsewhere",
                        ctx,
                        p
                    );
                    for word in 0..WORDS {
                        let got = sys.mem().read_u64(pfn, word * 8);
                        prop_assert_eq!(
                            got,
                            Ok(m.load(s, p, word)),
                            "{}: page {} word {} through GUP",
                            ctx,
                            p,
                            word
                        );
                    }
                }
            }
        }
        // A huge PMD only ever maps the window's 2 MiB-aligned range, wholly one
        // private mapping of one protection.
        for proc in m.procs.iter().flatten() {
            prop_assert!(
                !proc.user.pmd_is_huge(va(0)) && !proc.user.pmd_is_huge(va(PAGES - 1)),
                "after {}: a huge PMD straddles the window's edge",
                ctx
            );
            if proc.user.pmd_is_huge(va(EDGE)) {
                stats.huge_steps += 1;
                let first = proc.pages.get(&EDGE).map(|p| p.prot);
                let whole = (EDGE..EDGE + PMD_PAGES).all(|p| {
                    matches!(
                        proc.pages.get(&p),
                        Some(Page { prot, backing: Backing::Private(_) }) if Some(*prot) == first
                    )
                });
                prop_assert!(
                    whole,
                    "after {}: a huge PMD maps what is not one private mapping",
                    ctx
                );
            }
        }
        if let Err(e) = sys.check_with(&extra_refs(&sys, &held)) {
            prop_assert!(false, "after {}: {}", ctx, e);
        }
        stats.max_swapped = stats.max_swapped.max(sys.mem().swap_slots_used());
        let large = held
            .iter()
            .filter(|h| sys.mem().page_folio(h.pfn).unwrap().order() > 0)
            .count();
        stats.large_held = stats.large_held.max(large);
    }
    // Exit with the references still held: the held pages outlive their mms.
    for p in m.procs.into_iter().flatten() {
        stats.count(&p.user);
    }
    if let Err(e) = sys.check_with(&extra_refs(&sys, &held)) {
        prop_assert!(false, "after exit: {}", e);
    }
    for h in held.drain(..) {
        release(&sys, h);
    }
    if let Err(e) = sys.check() {
        prop_assert!(false, "after exit and release: {}", e);
    }
    prop_assert_eq!(
        sys.mem().nr_free_pages(),
        sys.mem().nr_usable_pages(),
        "every frame free after exit and release"
    );
    prop_assert_eq!(
        sys.mem().swap_slots_used(),
        0,
        "every swap slot free after exit and release"
    );
    Ok(stats)
}

proptest! {
    // Integration tests have no lib.rs for proptest's default persistence to find:
    // keep regressions beside this file (mm_invariant.proptest-regressions).
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::with_cases(96)
    })]

    #[test]
    fn invariant_random_operations_keep_the_machine_consistent(
        init in init(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        run(init, ops)?;
    }
}

/// A fixed sequence through the THP and GUP paths the random cases reach only
/// sometimes: a THP made by a first write, pinned, read through GUP, shared by fork and
/// COWed, split by a partial mprotect, `FOLL_SPLIT_PMD` and a partial munmap, then its
/// mms exit with the pins held.
#[test]
fn invariant_thp_and_gup_sequence() {
    let huge = Some(InitMap {
        prot: 2,
        shared: false,
        huge: true,
    });
    let gup = |mm, page, n, write, pin, split| Op::Gup {
        mm,
        page,
        n,
        write,
        pin,
        split,
    };
    let ops = vec![
        Op::Write {
            mm: 0,
            page: EDGE + 3,
            word: 1,
            value: 0x51,
        },
        gup(0, EDGE, 4, false, true, false),
        gup(0, EDGE + 100, 2, true, false, false),
        Op::Write {
            mm: 1,
            page: 300,
            word: 0,
            value: 0x52,
        },
        Op::Fork { mm: 1 },
        Op::Write {
            mm: 2,
            page: 301,
            word: 2,
            value: 0x53,
        },
        gup(1, 299, 3, false, true, false),
        Op::Mprotect {
            mm: 1,
            page: 400,
            n: 2,
            prot: 1,
        },
        gup(1, 398, 6, true, false, false),
        Op::Fork { mm: 0 },
        gup(0, EDGE + 200, 3, false, false, true),
        Op::Munmap {
            mm: 0,
            page: EDGE + 4,
            n: 1,
        },
        gup(0, EDGE + 2, 4, false, false, false),
        Op::Sweep { phase: 3 },
        Op::Release { idx: 1 },
        Op::Exit { mm: 0 },
    ];
    let init = Init {
        always: false,
        maps: [huge, huge],
    };
    let stats = run(init, ops).unwrap_or_else(|e| panic!("{e}"));
    assert!(stats.huge_steps > 0, "{stats:?}");
    assert!(stats.splits >= 3, "{stats:?}");
    assert!(stats.large_held > 0, "{stats:?}");
    assert_eq!(stats.gups, 6, "{stats:?}");
}

/// A fixed sequence through migration: a COW-shared page and a COW-shared THP moved
/// (then written on one side), a pinned page refused, a range stopping at a held page
/// no mm maps any more, then a range moved once it is released.
#[test]
fn invariant_migration_sequence() {
    let init = Init {
        always: false,
        maps: [
            Some(InitMap {
                prot: 2,
                shared: false,
                huge: true,
            }),
            None,
        ],
    };
    let write = |mm, page, value| Op::Write {
        mm,
        page,
        word: 0,
        value,
    };
    let read = |mm, page| Op::Read { mm, page, word: 0 };
    let ops = vec![
        write(0, EDGE + 5, 0x61),
        write(0, 2, 0x62),
        // Into slot 2: both map page 2 and the THP copy-on-write.
        Op::Fork { mm: 0 },
        Op::Migrate { mm: 0, page: 2 },
        write(2, 2, 0x63),
        read(0, 2),
        Op::Migrate {
            mm: 2,
            page: EDGE + 5,
        },
        write(0, EDGE + 5, 0x64),
        read(2, EDGE + 5),
        Op::Gup {
            mm: 0,
            page: 3,
            n: 1,
            write: true,
            pin: true,
            split: false,
        },
        Op::Migrate { mm: 0, page: 3 },
        Op::Munmap {
            mm: 0,
            page: 3,
            n: 1,
        },
        Op::MigrateRange {
            mm: 0,
            page: 0,
            back: 0,
            held: Some(0),
        },
        Op::Release { idx: 0 },
        Op::MigrateRange {
            mm: 0,
            page: 0,
            back: 8,
            held: None,
        },
        Op::Sweep { phase: 5 },
    ];
    let stats = run(init, ops).unwrap_or_else(|e| panic!("{e}"));
    assert!(stats.migrated >= 2, "{stats:?}");
    assert!(stats.migrated_large >= 1, "{stats:?}");
    assert_eq!(stats.migrate_busy, 1, "{stats:?}");
    assert_eq!(stats.range_busy, 1, "{stats:?}");
    assert!(stats.range_moved >= 1, "{stats:?}");
}

/// A fixed sequence through swap: reclaim and swap-in; reclaim of a page fork left
/// copy-on-write shared, swapped in from both sides (then written on one); DONTNEED of
/// a swapped-out page; reclaim of a page GUP holds (EAGAIN: unmapped, left in the swap
/// cache, read back from it); a THP and a shmem page refused; MADV_PAGEOUT, fork of
/// swap entries, reclaim of a whole mm and munmap of swapped-out pages.
#[test]
fn invariant_swap_sequence() {
    let map = |huge| {
        Some(InitMap {
            prot: 2,
            shared: false,
            huge,
        })
    };
    let init = Init {
        always: false,
        maps: [map(false), map(true)],
    };
    let write = |mm, page, value| Op::Write {
        mm,
        page,
        word: 1,
        value,
    };
    let read = |mm, page| Op::Read { mm, page, word: 1 };
    let reclaim = |mm, page, any, readback| Op::Reclaim {
        mm,
        page,
        any,
        readback,
    };
    let gup = |page, pin| Op::Gup {
        mm: 0,
        page,
        n: 1,
        write: pin,
        pin,
        split: false,
    };
    let ops = vec![
        write(0, 3, 0x71),
        reclaim(0, 3, false, true),
        // Into slot 2: page 5 copy-on-write shared, then swapped out of both.
        write(0, 5, 0x72),
        Op::Fork { mm: 0 },
        reclaim(0, 5, false, false),
        // The child's swap-in leaves the folio in the swap cache (the parent still
        // names the slot): it migrates with its cache entry, then is written out
        // again under the same slot.
        read(2, 5),
        Op::Migrate { mm: 2, page: 5 },
        reclaim(2, 5, false, true),
        read(0, 5),
        write(2, 5, 0x73),
        read(0, 5),
        read(2, 5),
        // DONTNEED drops the swap entry: the page reads zero.
        write(0, 7, 0x74),
        reclaim(0, 7, false, false),
        Op::DontNeed {
            mm: 0,
            page: 7,
            n: 1,
        },
        read(0, 7),
        // Held by GUP: unmapped but left in the swap cache.
        write(0, 9, 0x75),
        gup(9, false),
        reclaim(0, 9, false, true),
        Op::Release { idx: 0 },
        // Pinned and mapped exclusively: not unmapped at all.
        write(0, 11, 0x76),
        gup(11, true),
        reclaim(0, 11, false, false),
        Op::Release { idx: 0 },
        read(0, 11),
        // A THP and a shmem page are not swapped.
        write(1, EDGE + 1, 0x77),
        reclaim(1, EDGE + 1, false, true),
        Op::Mmap {
            mm: 1,
            page: 0,
            n: 2,
            prot: 2,
            shared: true,
        },
        write(1, 0, 0x78),
        reclaim(1, 0, true, true),
        // MADV_PAGEOUT, then fork with the swap entries (into slot 1).
        Op::Fill {
            mm: 2,
            page: 0,
            n: 4,
            value: 0x80,
        },
        Op::PageOut {
            mm: 2,
            page: 0,
            n: 8,
        },
        Op::Exit { mm: 1 },
        Op::Fork { mm: 2 },
        read(1, 2),
        write(1, 2, 0x79),
        read(2, 2),
        Op::ReclaimMm { mm: 0, n: 600 },
        Op::Munmap {
            mm: 0,
            page: 0,
            n: 16,
        },
        Op::Sweep { phase: 1 },
    ];
    let stats = run(init, ops).unwrap_or_else(|e| panic!("{e}"));
    assert!(stats.reclaimed >= 3, "{stats:?}");
    assert_eq!(stats.reclaim_busy, 2, "{stats:?}");
    assert_eq!(stats.reclaim_pinned, 1, "{stats:?}");
    assert_eq!(stats.migrated_cached, 1, "{stats:?}");
    assert_eq!(stats.migrated, 1, "{stats:?}");
    assert_eq!(stats.reclaimed_cached, 1, "{stats:?}");
    assert_eq!(stats.reclaim_invalid, 2, "{stats:?}");
    assert!(stats.reclaimed_many >= 5, "{stats:?}");
    assert!(stats.max_swapped >= 2, "{stats:?}");
}
