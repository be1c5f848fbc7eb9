//! get_user_pages / pin_user_pages through the public API: references and pins, COW
//! breaking and unsharing, short counts and errors, pins across munmap and fork.

mod common;

use svmkit::check::ExtraRefs;
use svmkit::mm::{
    Advice, Folio, GUP_PIN_COUNTING_BIAS, GupFlags, HPAGE_PMD_NR, MapFlags, MmUser, PMD_SIZE,
    PageFlags, Prot,
};
use svmkit::sync::Arc;
use svmkit::{Errno, PAGE_SIZE, Pfn, System, SystemConfig};

use common::{checked_with, va};

const RW: Prot = Prot::READ.union(Prot::WRITE);
const PRIVATE: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const BASE: u64 = 0x4000_0000;
const P: u64 = PAGE_SIZE;
const GET: GupFlags = GupFlags::GET;
const PIN: GupFlags = GupFlags::PIN;
const WRITE: GupFlags = GupFlags::WRITE;

fn system(frames: u64) -> (Arc<System>, MmUser) {
    let sys = System::new(SystemConfig::with_frames(frames)).unwrap();
    let mm = sys.create_mm().unwrap();
    (sys, mm)
}

#[track_caller]
fn checked(sys: &System) {
    checked_with(sys, &ExtraRefs::new());
}

fn pfn(mm: &MmUser, addr: u64) -> Pfn {
    mm.pte_get_lockless(va(addr))
        .present()
        .unwrap_or_else(|| panic!("no present PTE at {addr:#x}"))
        .pfn
}

fn writable(mm: &MmUser, addr: u64) -> bool {
    mm.pte_get_lockless(va(addr))
        .present()
        .is_some_and(|p| p.is_write())
}

fn folio(sys: &System, pfn: Pfn) -> Folio {
    sys.mem().page_folio(pfn).unwrap()
}

fn refcount(sys: &System, pfn: Pfn) -> i32 {
    sys.mem().folio_ref_count(folio(sys, pfn))
}

fn exclusive(sys: &System, pfn: Pfn) -> bool {
    sys.mem().page(pfn).unwrap().test(PageFlags::ANON_EXCLUSIVE)
}

fn gup(mm: &MmUser, start: u64, n: u64, flags: GupFlags) -> Result<Vec<Pfn>, Errno> {
    let mut guard = mm.mmap_read_lock();
    mm.get_user_pages(&mut guard, start, n, flags)
}

/// The references GUP holds on `pfns`, `per_page` each, for the checker.
fn extra(sys: &System, pfns: &[Pfn], per_page: i32) -> ExtraRefs {
    let mut refs = ExtraRefs::new();
    for &p in pfns {
        *refs.entry(folio(sys, p)).or_default() += per_page;
    }
    refs
}

/// `n` pages at `BASE`, each written with `100 + i`.
fn populated(mm: &MmUser, n: u64) {
    mm.mmap(BASE, n * P, RW, PRIVATE).unwrap();
    for i in 0..n {
        mm.write_u64(BASE + i * P, 100 + i).unwrap();
    }
}

#[test]
fn gup_get_returns_present_pages_and_takes_one_reference_each() {
    let (sys, mm) = system(1024);
    populated(&mm, 4);
    let mapped: Vec<Pfn> = (0..4).map(|i| pfn(&mm, BASE + i * P)).collect();
    let faults = mm.stats().faults.load(std::sync::atomic::Ordering::Relaxed);
    let got = gup(&mm, BASE, 4, GET).unwrap();
    assert_eq!(got, mapped);
    assert_eq!(
        mm.stats().faults.load(std::sync::atomic::Ordering::Relaxed),
        faults,
        "present pages need no fault"
    );
    for &p in &got {
        assert_eq!(refcount(&sys, p), 2);
    }
    assert!(
        sys.check().is_err(),
        "the GUP references are not in any PTE"
    );
    checked_with(&sys, &extra(&sys, &got, 1));
    assert!(!mm.has_pinned(), "FOLL_GET is not a pin");
    for &p in &got {
        sys.mem().put_page(p);
        assert_eq!(refcount(&sys, p), 1);
    }
    checked(&sys);
}

#[test]
fn gup_get_faults_in_missing_pages_and_follows_an_unaligned_start() {
    let (sys, mm) = system(1024);
    mm.mmap(BASE, 2 * P, RW, PRIVATE).unwrap();
    // Read-only GET of untouched memory maps the zero page, which is not counted.
    let zero = gup(&mm, BASE + 8, 1, GET).unwrap();
    assert_eq!(zero, vec![sys.mem().zero_pfn()]);
    assert_eq!(pfn(&mm, BASE), sys.mem().zero_pfn());
    checked(&sys);
    sys.mem().put_page(zero[0]);
    // A write GET of untouched memory allocates the page, writable.
    let got = gup(&mm, BASE + P + 100, 1, GET | WRITE).unwrap();
    assert_eq!(got, vec![pfn(&mm, BASE + P)]);
    assert!(writable(&mm, BASE + P));
    checked_with(&sys, &extra(&sys, &got, 1));
    sys.mem().put_page(got[0]);
    checked(&sys);
    assert!(sys.mem().bad_pages().is_empty());
}

#[test]
fn gup_write_replaces_the_zero_page_with_a_private_page() {
    let (sys, mm) = system(1024);
    mm.mmap(BASE, P, RW, PRIVATE).unwrap();
    assert_eq!(mm.read_u64(BASE).unwrap(), 0);
    assert_eq!(pfn(&mm, BASE), sys.mem().zero_pfn());
    let got = gup(&mm, BASE, 1, GET | WRITE).unwrap();
    assert_ne!(got[0], sys.mem().zero_pfn());
    assert_eq!(pfn(&mm, BASE), got[0], "the PTE maps the returned page");
    assert!(writable(&mm, BASE));
    assert!(exclusive(&sys, got[0]));
    assert_eq!(sys.mem().read_u64(got[0], 0).unwrap(), 0);
    // A write through the reference is what the process reads.
    sys.mem().write_u64(got[0], 0, 7).unwrap();
    assert_eq!(mm.read_u64(BASE).unwrap(), 7);
    checked_with(&sys, &extra(&sys, &got, 1));
    sys.mem().put_page(got[0]);
    checked(&sys);
}

#[test]
fn gup_write_breaks_cow_after_fork() {
    let (sys, parent) = system(1024);
    populated(&parent, 2);
    let shared = pfn(&parent, BASE);
    let child = sys.fork(&parent).unwrap();
    assert_eq!(pfn(&child, BASE), shared);
    assert!(!writable(&parent, BASE));

    let got = gup(&parent, BASE, 1, GET | WRITE).unwrap();
    assert_ne!(got[0], shared, "the parent got a copy");
    assert_eq!(pfn(&parent, BASE), got[0]);
    assert!(writable(&parent, BASE));
    assert!(exclusive(&sys, got[0]));
    assert_eq!(
        sys.mem().read_u64(got[0], 0).unwrap(),
        100,
        "copied contents"
    );
    assert_eq!(pfn(&child, BASE), shared, "the child keeps the original");
    assert_eq!(refcount(&sys, shared), 1);
    checked_with(&sys, &extra(&sys, &got, 1));

    sys.mem().write_u64(got[0], 0, 555).unwrap();
    assert_eq!(parent.read_u64(BASE).unwrap(), 555);
    assert_eq!(
        child.read_u64(BASE).unwrap(),
        100,
        "the child's value is unchanged"
    );
    sys.mem().put_page(got[0]);
    checked(&sys);
}

#[test]
fn gup_pin_adds_the_bias_and_marks_the_mm_pinned() {
    let (sys, mm) = system(1024);
    populated(&mm, 2);
    assert!(!mm.has_pinned());
    let pinned = {
        let mut guard = mm.mmap_read_lock();
        mm.pin_user_pages(&mut guard, BASE, 2, GupFlags::empty())
            .unwrap()
    };
    assert!(mm.has_pinned());
    for &p in &pinned {
        assert_eq!(refcount(&sys, p), 1 + GUP_PIN_COUNTING_BIAS);
        assert!(sys.mem().folio_maybe_dma_pinned(folio(&sys, p)));
        assert!(exclusive(&sys, p));
    }
    checked_with(&sys, &extra(&sys, &pinned, GUP_PIN_COUNTING_BIAS));
    sys.mem().unpin_user_pages(&pinned);
    for &p in &pinned {
        assert_eq!(refcount(&sys, p), 1);
        assert!(!sys.mem().folio_maybe_dma_pinned(folio(&sys, p)));
    }
    assert!(mm.has_pinned(), "MMF_HAS_PINNED is never cleared");
    checked(&sys);
}

#[test]
fn gup_pinned_and_referenced_pages_survive_munmap_until_released() {
    for flags in [PIN, GET] {
        let (sys, mm) = system(1024);
        let free0 = sys.mem().nr_free_pages();
        populated(&mm, 3);
        let got = gup(&mm, BASE, 3, flags).unwrap();
        mm.munmap(BASE, 3 * P).unwrap();
        let per_page = if flags == PIN {
            GUP_PIN_COUNTING_BIAS
        } else {
            1
        };
        for (i, &p) in got.iter().enumerate() {
            assert_eq!(refcount(&sys, p), per_page, "{flags:?}");
            assert_eq!(sys.mem().page(p).unwrap().mapcount(), 0);
            assert_eq!(sys.mem().read_u64(p, 0).unwrap(), 100 + i as u64);
        }
        checked_with(&sys, &extra(&sys, &got, per_page));
        assert!(sys.mem().nr_free_pages() < free0);
        if flags == PIN {
            sys.mem().unpin_user_pages(&got);
        } else {
            got.iter().for_each(|&p| sys.mem().put_page(p));
        }
        assert_eq!(
            sys.mem().nr_free_pages(),
            free0,
            "{flags:?}: freed at release"
        );
        assert!(got.iter().all(|&p| sys.mem().is_free_frame(p)));
        checked(&sys);
        assert!(sys.mem().bad_pages().is_empty());
    }
}

#[test]
fn gup_pinned_page_outlives_the_process() {
    let (sys, mm) = system(1024);
    let free0 = sys.mem().nr_free_pages();
    let mm2 = sys.create_mm().unwrap();
    populated(&mm2, 1);
    let got = gup(&mm2, BASE, 1, PIN | WRITE).unwrap();
    drop(mm2);
    assert_eq!(sys.mem().read_u64(got[0], 0).unwrap(), 100);
    checked_with(&sys, &extra(&sys, &got, GUP_PIN_COUNTING_BIAS));
    sys.mem().unpin_user_page(got[0]);
    checked(&sys);
    drop(mm);
    assert_eq!(
        sys.mem().nr_free_pages(),
        free0 + 1,
        "the first mm's PGD too"
    );
}

#[test]
fn gup_partly_unmapped_range_returns_a_short_count() {
    let (sys, mm) = system(1024);
    populated(&mm, 4);
    mm.munmap(BASE + 2 * P, P).unwrap();
    let got = gup(&mm, BASE, 4, GET).unwrap();
    assert_eq!(got, vec![pfn(&mm, BASE), pfn(&mm, BASE + P)]);
    checked_with(&sys, &extra(&sys, &got, 1));
    got.iter().for_each(|&p| sys.mem().put_page(p));
    // A VMA that forbids the access stops the walk the same way.
    mm.mmap(BASE + 2 * P, P, Prot::READ, PRIVATE).unwrap();
    let got = gup(&mm, BASE, 4, PIN | WRITE).unwrap();
    assert_eq!(got.len(), 2);
    sys.mem().unpin_user_pages(&got);
    checked(&sys);
}

#[test]
fn gup_first_page_unmapped_is_efault() {
    let (sys, mm) = system(1024);
    mm.mmap(BASE + P, P, RW, PRIVATE).unwrap();
    assert_eq!(gup(&mm, BASE, 2, GET), Err(Errno::EFAULT));
    assert_eq!(gup(&mm, BASE + 2 * P, 1, PIN), Err(Errno::EFAULT));
    assert_eq!(
        gup(&mm, 1 << 47, 1, GET),
        Err(Errno::EFAULT),
        "beyond user space"
    );
    // Linux sets MMF_HAS_PINNED before looking at any page.
    assert!(mm.has_pinned());
    checked(&sys);
}

#[test]
fn gup_checks_the_vma_permissions() {
    let (sys, mm) = system(1024);
    mm.mmap(BASE, P, Prot::READ, PRIVATE).unwrap();
    mm.mmap(BASE + P, P, Prot::empty(), PRIVATE).unwrap();
    mm.mmap(BASE + 2 * P, P, Prot::WRITE, PRIVATE).unwrap();
    assert_eq!(gup(&mm, BASE, 1, GET | WRITE), Err(Errno::EFAULT));
    assert_eq!(gup(&mm, BASE, 1, PIN | WRITE), Err(Errno::EFAULT));
    assert_eq!(gup(&mm, BASE + P, 1, GET), Err(Errno::EFAULT), "PROT_NONE");
    // Linux's check_vma_flags() wants VM_READ for a read (x86 PROT_WRITE lacks it).
    assert_eq!(gup(&mm, BASE + 2 * P, 1, GET), Err(Errno::EFAULT));
    let w = gup(&mm, BASE + 2 * P, 1, GET | WRITE).unwrap();
    sys.mem().put_page(w[0]);
    // A read of the read-only VMA is fine (the zero page).
    assert_eq!(gup(&mm, BASE, 1, GET).unwrap(), vec![sys.mem().zero_pfn()]);
    checked(&sys);
}

#[test]
fn gup_needs_exactly_one_of_get_and_pin() {
    let (sys, mm) = system(1024);
    populated(&mm, 1);
    assert_eq!(gup(&mm, BASE, 1, GupFlags::empty()), Err(Errno::EINVAL));
    assert_eq!(gup(&mm, BASE, 1, WRITE), Err(Errno::EINVAL));
    assert_eq!(gup(&mm, BASE, 1, GET | PIN), Err(Errno::EINVAL));
    assert_eq!(
        gup(&mm, BASE, 1, GET | GupFlags::LONGTERM),
        Err(Errno::EINVAL),
        "LONGTERM only with PIN"
    );
    assert_eq!(gup(&mm, BASE, 0, GupFlags::empty()), Err(Errno::EINVAL));
    assert_eq!(gup(&mm, BASE, 0, GET), Ok(vec![]));
    assert!(!mm.has_pinned());
    let p = gup(&mm, BASE, 1, PIN | GupFlags::LONGTERM | GupFlags::REMOTE).unwrap();
    sys.mem().unpin_user_pages(&p);
    checked(&sys);
}

#[test]
fn gup_read_only_pin_unshares_a_cow_page_without_making_it_writable() {
    let (sys, parent) = system(1024);
    populated(&parent, 1);
    let shared = pfn(&parent, BASE);
    let child = sys.fork(&parent).unwrap();
    assert!(!exclusive(&sys, shared));

    let pinned = gup(&parent, BASE, 1, PIN).unwrap()[0];
    assert_eq!(
        pfn(&parent, BASE),
        pinned,
        "the parent maps the pinned page"
    );
    assert!(exclusive(&sys, pinned), "unshared: exclusive to the parent");
    assert!(
        !writable(&parent, BASE),
        "an unshare does not make the PTE writable"
    );
    assert_ne!(pinned, pfn(&child, BASE));
    assert_eq!(sys.mem().read_u64(pinned, 0).unwrap(), 100);
    checked_with(&sys, &extra(&sys, &[pinned], GUP_PIN_COUNTING_BIAS));

    // The pin stays coherent: the parent's next write reuses the exclusive page.
    parent.write_u64(BASE, 9).unwrap();
    assert_eq!(pfn(&parent, BASE), pinned);
    assert_eq!(sys.mem().read_u64(pinned, 0).unwrap(), 9);
    assert_eq!(child.read_u64(BASE).unwrap(), 100);
    // A read-only GET takes the shared page as it is.
    let got = gup(&child, BASE, 1, GET).unwrap();
    assert_eq!(got, vec![pfn(&child, BASE)]);
    sys.mem().put_page(got[0]);
    sys.mem().unpin_user_page(pinned);
    checked(&sys);
}

#[test]
fn gup_pinned_page_is_copied_at_fork() {
    let (sys, parent) = system(1024);
    populated(&parent, 2);
    let pinned = gup(&parent, BASE, 1, PIN).unwrap()[0];
    let other = pfn(&parent, BASE + P);
    let child = sys.fork(&parent).unwrap();
    let copy = pfn(&child, BASE);
    assert_ne!(copy, pinned, "the child gets its own copy");
    assert_eq!(sys.mem().read_u64(copy, 0).unwrap(), 100);
    assert_eq!(pfn(&parent, BASE), pinned);
    assert!(exclusive(&sys, pinned) && exclusive(&sys, copy));
    assert_eq!(pfn(&child, BASE + P), other, "unpinned pages are shared");
    checked_with(&sys, &extra(&sys, &[pinned], GUP_PIN_COUNTING_BIAS));
    // Writes on either side stay on their side; the pin sees the parent's.
    parent.write_u64(BASE, 1).unwrap();
    child.write_u64(BASE, 2).unwrap();
    assert_eq!(sys.mem().read_u64(pinned, 0).unwrap(), 1);
    assert_eq!(child.read_u64(BASE).unwrap(), 2);
    sys.mem().unpin_user_page(pinned);
    checked(&sys);
}

#[test]
fn gup_get_user_page_returns_the_page_and_its_vma() {
    let (sys, mm) = system(1024);
    populated(&mm, 2);
    let (p, vma) = {
        let mut guard = mm.mmap_read_lock();
        mm.get_user_page(&mut guard, BASE + P, GET | WRITE | GupFlags::REMOTE)
            .unwrap()
    };
    assert_eq!(p, pfn(&mm, BASE + P));
    assert_eq!((vma.start(), vma.end()), (va(BASE), va(BASE + 2 * P)));
    sys.mem().put_page(p);
    let mut guard = mm.mmap_read_lock();
    assert_eq!(
        mm.get_user_page(&mut guard, BASE + 2 * P, GET)
            .map(|(p, _)| p),
        Err(Errno::EFAULT)
    );
    drop(guard);
    checked(&sys);
}

#[test]
fn gup_release_of_a_bad_frame_is_reported_not_a_panic() {
    let (sys, mm) = system(64);
    populated(&mm, 1);
    let p = pfn(&mm, BASE);
    sys.mem().unpin_user_page(Pfn::new(1 << 30));
    sys.mem().put_page(Pfn::new(1 << 30));
    // Never pinned: fewer references than a pin holds.
    sys.mem().unpin_user_page(p);
    assert_eq!(refcount(&sys, p), 1, "nothing changed");
    // The zero page is never counted.
    sys.mem().unpin_user_page(sys.mem().zero_pfn());
    sys.mem().put_page(sys.mem().zero_pfn());
    let reasons: Vec<_> = sys.mem().bad_pages().iter().map(|b| b.reason).collect();
    assert_eq!(
        reasons,
        [
            "unpin_user_page of a frame that does not exist",
            "put_page of a frame that does not exist",
            "folio_put_refs below zero",
        ]
    );
}

/// A MADV_HUGEPAGE mapping of one 2 MiB-aligned PMD, first touched by a write.
fn thp(mm: &MmUser) {
    mm.mmap(BASE, PMD_SIZE, RW, PRIVATE).unwrap();
    mm.madvise(BASE, PMD_SIZE, Advice::HugePage).unwrap();
    mm.write_u64(BASE, 0xa0).unwrap();
    assert!(mm.pmd_is_huge(va(BASE)), "a PMD-mapped THP");
}

#[test]
fn gup_pin_of_a_pmd_mapped_thp_counts_pins_in_pincount() {
    let (sys, mm) = system(4096);
    thp(&mm);
    let pinned = gup(&mm, BASE, HPAGE_PMD_NR, PIN | WRITE).unwrap();
    let f = folio(&sys, pinned[0]);
    assert_eq!(f.order(), 9);
    for (i, &p) in pinned.iter().enumerate() {
        assert_eq!(p, f.page(i as u64).unwrap());
    }
    assert!(mm.pmd_is_huge(va(BASE)), "not split");
    let head = sys.mem().page(f.head()).unwrap();
    assert_eq!(head.pincount(), HPAGE_PMD_NR as i32);
    assert_eq!(sys.mem().folio_ref_count(f), 1 + HPAGE_PMD_NR as i32);
    assert!(sys.mem().folio_maybe_dma_pinned(f));
    checked_with(&sys, &extra(&sys, &pinned, 1));
    sys.mem().unpin_user_pages(&pinned);
    assert_eq!(head.pincount(), 0);
    assert_eq!(sys.mem().folio_ref_count(f), 1);
    checked(&sys);
}

#[test]
fn gup_split_pmd_returns_the_subpages_of_the_same_folio_through_ptes() {
    let (sys, mm) = system(4096);
    thp(&mm);
    let got = gup(&mm, BASE, HPAGE_PMD_NR, GET | GupFlags::SPLIT_PMD).unwrap();
    assert!(!mm.pmd_is_huge(va(BASE)), "split");
    let f = folio(&sys, got[0]);
    assert_eq!(f.order(), 9, "the folio stays large");
    for (i, &p) in got.iter().enumerate() {
        assert_eq!(p, f.page(i as u64).unwrap());
        assert_eq!(pfn(&mm, BASE + i as u64 * P), p, "mapped by a PTE");
    }
    checked_with(&sys, &extra(&sys, &got, 1));
    got.iter().for_each(|&p| sys.mem().put_page(p));
    checked(&sys);
}

#[test]
fn gup_write_on_a_cow_shared_thp_copies_one_page() {
    let (sys, parent) = system(4096);
    thp(&parent);
    let head = parent.translate(va(BASE)).unwrap();
    let child = sys.fork(&parent).unwrap();
    let got = gup(&parent, BASE + 3 * P, 1, GET | WRITE).unwrap();
    assert_ne!(got[0], Pfn::new(head.raw() + 3), "a private copy");
    assert_eq!(folio(&sys, got[0]).order(), 0);
    assert_eq!(parent.translate(va(BASE + 3 * P)), Some(got[0]));
    assert_eq!(
        child.translate(va(BASE + 3 * P)),
        Some(Pfn::new(head.raw() + 3))
    );
    checked_with(&sys, &extra(&sys, &got, 1));
    sys.mem().put_page(got[0]);
    checked(&sys);
}

#[test]
fn gup_read_only_pin_of_a_cow_shared_thp_unshares_it() {
    let (sys, mm) = system(4096);
    let len = PMD_SIZE;
    mm.mmap(BASE, len, RW, PRIVATE).unwrap();
    mm.madvise(BASE, len, Advice::HugePage).unwrap();
    mm.write_u64(BASE + 3 * P, 1).unwrap();
    assert!(mm.pmd_is_huge(va(BASE)));
    let child = sys.fork(&mm).unwrap();
    // The unshare fault on the shared, read-only huge PMD splits it and copies the
    // one page for the pinning mm, read-only and exclusive; the child keeps the THP.
    let pins = gup(&mm, BASE + 3 * P, 1, PIN).unwrap();
    assert_eq!(pins.len(), 1);
    assert!(exclusive(&sys, pins[0]));
    assert!(!writable(&mm, BASE + 3 * P));
    assert!(child.pmd_is_huge(va(BASE)));
    assert_eq!(mm.read_u64(BASE + 3 * P).unwrap(), 1);
    sys.mem().unpin_user_pages(&pins);
    checked(&sys);
}

/// Issue 14, bug 9: a double unpin and a stray unlock are caller bugs the model reports
/// (and does not execute); a test that provokes them takes the reports, and the checker
/// judges what follows.
#[test]
fn gup_double_unpin_and_stray_unlock_are_reported_and_can_be_taken() {
    let (sys, mm) = system(1024);
    populated(&mm, 1);
    let pinned = {
        let mut guard = mm.mmap_read_lock();
        mm.pin_user_pages(&mut guard, BASE, 1, GupFlags::empty())
            .unwrap()
    };
    let p = pinned[0];
    sys.mem().unpin_user_pages(&pinned);
    // The second unpin would take GUP_PIN_COUNTING_BIAS references from a page that
    // holds one (its mapping): reported, not done (derived: folio_put_refs()).
    sys.mem().unpin_user_pages(&pinned);
    assert_eq!(refcount(&sys, p), 1, "the mapping's reference is intact");
    // Unlocking a folio nobody locked: reported, nothing changes (derived:
    // folio_unlock()).
    sys.mem().folio_unlock(folio(&sys, p));
    assert!(!sys.mem().page(p).unwrap().test(PageFlags::LOCKED));

    // Derived: the model's report texts, oldest first.
    let reasons = |v: &[svmkit::mm::BadPage]| -> Vec<(Pfn, &'static str)> {
        v.iter().map(|b| (b.pfn, b.reason)).collect()
    };
    let want = vec![
        (p, "folio_put_refs below zero"),
        (p, "folio_unlock of an unlocked folio"),
    ];
    assert_eq!(reasons(&sys.mem().bad_pages()), want);
    // Derived: the checker lists every pending report as a violation.
    let err = sys.check().unwrap_err().to_string();
    assert_eq!(err.matches("bad page reported").count(), 2, "{err}");
    assert_eq!(reasons(&sys.mem().take_bad_pages()), want);
    assert!(sys.mem().bad_pages().is_empty());
    assert!(sys.mem().take_bad_pages().is_empty(), "taken once");
    checked(&sys);

    // Later reports are recorded as before.
    sys.mem().folio_unlock(folio(&sys, p));
    assert_eq!(
        reasons(&sys.mem().bad_pages()),
        vec![(p, "folio_unlock of an unlocked folio")]
    );
    assert_eq!(sys.mem().take_bad_pages().len(), 1);
    mm.write_u64(BASE, 9).unwrap();
    assert_eq!(mm.read_u64(BASE).unwrap(), 9);
    checked(&sys);
    drop(mm);
    assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
}
