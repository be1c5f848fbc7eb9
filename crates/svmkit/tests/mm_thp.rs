//! Transparent huge pages through the public API: PMD-mapped faults, the split into a
//! PTE-mapped THP, fork, and the reverse map of both shapes.

mod common;

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use svmkit::mm::mmu_notifier::{MmuNotifierEvent, NotifierCallKind, RecordingNotifier};
use svmkit::mm::{
    Advice, Folio, HPAGE_PMD_NR, MapFlags, MmUser, PMD_SIZE, PageFlags, Prot, PvmwHit, ThpMode,
};
use svmkit::sync::Arc;
use svmkit::{PAGE_SIZE, Pfn, System, SystemConfig};

use common::{checked, va};

const RW: Prot = Prot::READ.union(Prot::WRITE);
const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const P: u64 = PAGE_SIZE;
/// 2 MiB-aligned, with room for a 2 MiB VMA on either side.
const H: u64 = 0x4000_0000;

fn system(frames: u64) -> (Arc<System>, MmUser) {
    let sys = System::new(SystemConfig::with_frames(frames)).unwrap();
    let mm = sys.create_mm().unwrap();
    (sys, mm)
}

/// A MADV_HUGEPAGE mapping of `len` at `H`, first-touched by a write at `H`.
fn thp(mm: &MmUser, len: u64) -> u64 {
    mm.mmap(H, len, RW, FIXED).unwrap();
    mm.madvise(H, len, Advice::HugePage).unwrap();
    for i in 0..len / PMD_SIZE {
        mm.write_u64(H + i * PMD_SIZE, 0xa0 + i).unwrap();
    }
    H
}

fn folio_at(sys: &System, mm: &MmUser, a: u64) -> Folio {
    let pfn = mm
        .translate(va(a))
        .unwrap_or_else(|| panic!("nothing mapped at {a:#x}"));
    sys.mem().page_folio(pfn).unwrap()
}

fn pte_mapped(mm: &MmUser, a: u64) -> bool {
    mm.pte_get_lockless(va(a)).present().is_some()
}

#[test]
fn thp_fault_maps_one_order9_folio_by_pmd() {
    let (sys, mm) = system(2048);
    let a = thp(&mm, 2 * PMD_SIZE);
    let f = folio_at(&sys, &mm, a);
    assert_eq!((f.order(), f.head()), (9, mm.translate(va(a)).unwrap()));
    assert!(!pte_mapped(&mm, a), "mapped by the PMD, no PTE table");
    assert!(mm.pmd_is_huge(va(a)));
    let head = sys.mem().page(f.head()).unwrap();
    assert_eq!(
        (
            sys.mem().folio_ref_count(f),
            head.entire_mapcount(),
            head.mapcount()
        ),
        (1, 1, 0)
    );
    assert!(head.test(PageFlags::ANON_EXCLUSIVE));
    // Every subpage is the folio's, zero-filled, and writable without further faults.
    let faults = mm.stats().faults.load(Ordering::Relaxed);
    assert_eq!(mm.read_u64(a + 511 * P + 8).unwrap(), 0);
    mm.write_u64(a + 300 * P, 7).unwrap();
    assert_eq!(mm.stats().faults.load(Ordering::Relaxed), faults);
    assert_eq!(
        mm.translate(va(a + 300 * P)),
        Some(Pfn::new(f.head().raw() + 300))
    );
    assert_eq!(mm.rss_anon(), 2 * HPAGE_PMD_NR as i64);
    assert_eq!(mm.stats().thp_faults.load(Ordering::Relaxed), 2);
    checked(&sys);
    drop(mm);
    checked(&sys);
    assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
}

#[test]
fn thp_fault_falls_back_without_advice_or_memory() {
    // No MADV_HUGEPAGE (policy "madvise"): 4 KiB pages.
    let (sys, mm) = system(2048);
    mm.mmap(H, PMD_SIZE, RW, FIXED).unwrap();
    mm.write_u64(H, 1).unwrap();
    assert_eq!(folio_at(&sys, &mm, H).order(), 0);
    assert!(pte_mapped(&mm, H));
    // Policy "always": huge without advice; MADV_NOHUGEPAGE still wins.
    sys.mem().set_thp_mode(ThpMode::Always);
    mm.mmap(H + 2 * PMD_SIZE, PMD_SIZE, RW, FIXED).unwrap();
    mm.write_u64(H + 2 * PMD_SIZE, 1).unwrap();
    assert_eq!(folio_at(&sys, &mm, H + 2 * PMD_SIZE).order(), 9);
    mm.mmap(H + 4 * PMD_SIZE, PMD_SIZE, RW, FIXED).unwrap();
    mm.madvise(H + 4 * PMD_SIZE, PMD_SIZE, Advice::NoHugePage)
        .unwrap();
    mm.write_u64(H + 4 * PMD_SIZE, 1).unwrap();
    assert_eq!(folio_at(&sys, &mm, H + 4 * PMD_SIZE).order(), 0);
    // A range not wholly inside the VMA: 4 KiB.
    mm.mmap(H + 6 * PMD_SIZE, PMD_SIZE - P, RW, FIXED).unwrap();
    mm.write_u64(H + 6 * PMD_SIZE, 1).unwrap();
    assert_eq!(folio_at(&sys, &mm, H + 6 * PMD_SIZE).order(), 0);
    // A read first: the 4 KiB zero page (no huge zero page), and stays 4 KiB.
    mm.mmap(H + 8 * PMD_SIZE, PMD_SIZE, RW, FIXED).unwrap();
    assert_eq!(mm.read_u64(H + 8 * PMD_SIZE).unwrap(), 0);
    mm.write_u64(H + 8 * PMD_SIZE, 1).unwrap();
    assert_eq!(folio_at(&sys, &mm, H + 8 * PMD_SIZE).order(), 0);
    checked(&sys);

    // The order-9 allocation fails (no free 2 MiB block): 4 KiB pages.
    let (sys, mm) = system(1100);
    sys.mem().set_thp_mode(ThpMode::Always);
    let hog = sys.mem().folio_alloc(9, svmkit::mm::Gfp::empty()).unwrap();
    sys.mem()
        .folio_alloc(9, svmkit::mm::Gfp::empty())
        .unwrap_err();
    mm.mmap(H, PMD_SIZE, RW, FIXED).unwrap();
    mm.write_u64(H, 1).unwrap();
    assert_eq!(folio_at(&sys, &mm, H).order(), 0);
    assert_eq!(mm.stats().thp_fallbacks.load(Ordering::Relaxed), 1);
    let mut extra = svmkit::check::ExtraRefs::new();
    extra.insert(hog, 1);
    if let Err(e) = sys.check_with(&extra) {
        panic!("{e}");
    }
    sys.mem().folio_put(hog);
}

#[test]
fn split_pmd_by_partial_mprotect_keeps_the_folio_and_notifies_clear_first() {
    let (sys, mm) = system(2048);
    let a = thp(&mm, PMD_SIZE);
    for i in 0..HPAGE_PMD_NR {
        mm.write_u64(a + i * P + 16, i).unwrap();
    }
    let f = folio_at(&sys, &mm, a);
    let rec = RecordingNotifier::new();
    mm.mmu_notifier_register(rec.clone()).unwrap();
    mm.mprotect(a + 5 * P, P, Prot::READ).unwrap();
    // A PTE-mapped THP: the same order-9 folio, 512 PTEs, one read-only.
    assert!(!mm.pmd_is_huge(va(a)));
    for i in 0..HPAGE_PMD_NR {
        let pte = mm.pte_get_lockless(va(a + i * P)).present().unwrap();
        assert_eq!(pte.pfn, Pfn::new(f.head().raw() + i));
        assert_eq!(pte.is_write(), i != 5, "page {i}");
        assert_eq!(mm.read_u64(a + i * P + 16).unwrap(), i);
    }
    assert_eq!(folio_at(&sys, &mm, a + 100 * P), f);
    let head = sys.mem().page(f.head()).unwrap();
    assert_eq!(
        (
            sys.mem().folio_ref_count(f),
            head.entire_mapcount(),
            head.mapcount()
        ),
        (HPAGE_PMD_NR as i32, 0, 1)
    );
    let starts: Vec<_> = rec
        .take()
        .into_iter()
        .filter(|c| c.kind == NotifierCallKind::Start)
        .map(|c| (c.event, c.start, c.end))
        .collect();
    assert_eq!(
        starts,
        vec![
            (MmuNotifierEvent::Clear, a, a + PMD_SIZE),
            (MmuNotifierEvent::ProtectionVma, a + 5 * P, a + 6 * P),
        ]
    );
    assert_eq!(mm.stats().thp_split_pmds.load(Ordering::Relaxed), 1);
    checked(&sys);
}

#[test]
fn split_pmd_by_partial_munmap_and_dontneed_keeps_the_rest() {
    let (sys, mm) = system(2048);
    let a = thp(&mm, 2 * PMD_SIZE);
    let f = folio_at(&sys, &mm, a);
    mm.write_u64(a + 7 * P, 77).unwrap();
    mm.munmap(a + 3 * P, P).unwrap();
    assert_eq!(
        mm.read_u64(a + 3 * P).unwrap_err().kind,
        svmkit::FaultKind::Unmapped
    );
    assert_eq!(mm.read_u64(a + 7 * P).unwrap(), 77);
    let mapped = (0..HPAGE_PMD_NR)
        .filter(|i| pte_mapped(&mm, a + i * P))
        .count();
    assert_eq!(mapped, 511);
    assert_eq!(sys.mem().folio_ref_count(f), 511);
    assert_eq!(mm.rss_anon(), 511 + 512);
    // DONTNEED of one page of the second THP splits it too; its data is gone, the
    // neighbours keep theirs.
    let g = a + PMD_SIZE;
    mm.write_u64(g + 9 * P, 99).unwrap();
    mm.madvise(g + 8 * P, P, Advice::DontNeed).unwrap();
    assert!(!mm.pmd_is_huge(va(g)));
    assert_eq!(mm.read_u64(g + 9 * P).unwrap(), 99);
    checked(&sys);
    // Unmapping a whole PMD-mapped THP zaps the PMD and frees the folio at once.
    let (sys2, mm2) = system(2048);
    let b = thp(&mm2, PMD_SIZE);
    let free_before = sys2.mem().nr_free_pages();
    mm2.munmap(b, PMD_SIZE).unwrap();
    assert_eq!(mm2.stats().thp_split_pmds.load(Ordering::Relaxed), 0);
    assert!(sys2.mem().nr_free_pages() >= free_before + HPAGE_PMD_NR);
    checked(&sys2);
    checked(&sys);
}

#[test]
fn thp_fork_shares_by_pmd_and_a_child_write_copies_one_page() {
    let (sys, parent) = system(4096);
    let a = thp(&parent, PMD_SIZE);
    parent.write_u64(a + 10 * P, 10).unwrap();
    let f = folio_at(&sys, &parent, a);
    let child = sys.fork(&parent).unwrap();
    assert!(parent.pmd_is_huge(va(a)) && child.pmd_is_huge(va(a)));
    assert_eq!(folio_at(&sys, &child, a), f);
    let head = sys.mem().page(f.head()).unwrap();
    assert_eq!(
        (sys.mem().folio_ref_count(f), head.entire_mapcount()),
        (2, 2)
    );
    assert!(!head.test(PageFlags::ANON_EXCLUSIVE));
    checked(&sys);
    // The child writes: its PMD is split and one 4 KiB page copied.
    child.write_u64(a + 10 * P, 11).unwrap();
    assert!(!child.pmd_is_huge(va(a)));
    assert_eq!(child.stats().cow_copies.load(Ordering::Relaxed), 1);
    assert_ne!(folio_at(&sys, &child, a + 10 * P), f);
    assert_eq!(folio_at(&sys, &child, a + 11 * P), f);
    assert_eq!(child.read_u64(a + 10 * P).unwrap(), 11);
    // The parent's THP is intact, still PMD-mapped, its data unchanged.
    assert!(parent.pmd_is_huge(va(a)));
    assert_eq!(parent.read_u64(a + 10 * P).unwrap(), 10);
    checked(&sys);
    // Once the child is gone the parent reuses the THP in place on write.
    drop(child);
    parent.write_u64(a, 1).unwrap();
    assert!(parent.pmd_is_huge(va(a)));
    assert_eq!(folio_at(&sys, &parent, a), f);
    checked(&sys);
}

#[test]
fn rmap_thp_walk_visits_the_pmd_or_all_512_ptes() {
    let (sys, mm) = system(2048);
    let a = thp(&mm, PMD_SIZE);
    let f = folio_at(&sys, &mm, a);
    let visit = |mm: &MmUser| {
        let mut pmds = Vec::new();
        let mut ptes = Vec::new();
        sys.mem().rmap_walk(f, |hit| {
            assert_eq!(hit.mm.id(), mm.mm().id());
            let _ = hit
                .mm
                .page_vma_mapped_walk(f, &hit.vma, hit.address, |found| {
                    match found {
                        PvmwHit::Pmd { addr, pmd } => pmds.push((addr.raw(), pmd.pfn)),
                        PvmwHit::Pte { addr, pte, .. } => {
                            ptes.push((addr.raw(), pte.present().map(|p| p.pfn)))
                        }
                    }
                    ControlFlow::Continue(())
                });
            ControlFlow::Continue(())
        });
        (pmds, ptes)
    };
    let (pmds, ptes) = visit(&mm);
    assert_eq!(pmds, vec![(a, f.head())]);
    assert!(ptes.is_empty());
    mm.mprotect(a, P, Prot::READ).unwrap();
    let (pmds, ptes) = visit(&mm);
    assert!(pmds.is_empty());
    assert_eq!(ptes.len(), HPAGE_PMD_NR as usize);
    for (i, (addr, pfn)) in ptes.iter().enumerate() {
        assert_eq!(*addr, a + i as u64 * P);
        assert_eq!(*pfn, Some(Pfn::new(f.head().raw() + i as u64)));
    }
    checked(&sys);
}
