//! KSM (mm/ksm.c): MADV_MERGEABLE, one scan merging identical pages into a read-only
//! KSM page, COW on write, MADV_UNMERGEABLE; device-exclusive pages are never
//! candidates (spec 4.10, 4.16: the lookup treats entries as not present). The race
//! of spec 8 item 11 (a conversion between the lookup and `write_protect_page()`) is
//! explored in shuttle_ksm.rs.
//!
//! Sources: Linux 6.12 `ksm_madvise()` (shared VMAs ignored), `write_protect_page()`
//! (read-only, clean, PageAnonExclusive cleared; refused when references exceed
//! mappings + 1), `replace_page()` (the KSM page mapped with `vm_page_prot`),
//! `wp_can_reuse_anon_folio()` (never a KSM folio), `break_ksm()` (an unshare fault).

mod common;

use std::sync::atomic::Ordering;

use svmkit::mm::{Advice, GupFlags, Pte};
use svmkit::task::Task;
use svmkit::{Profile, System};

use common::{BASE, FIXED, P, RW, checked, system, va};

fn pfn(mm: &svmkit::mm::MmUser, a: u64) -> svmkit::Pfn {
    mm.translate(va(a)).unwrap()
}

fn ksm(sys: &System, mm: &svmkit::mm::MmUser, a: u64) -> bool {
    sys.mem().folio_test_ksm(common::folio_at(sys, mm, a))
}

#[test]
fn ksm_merges_identical_pages_and_cow_splits_them_again() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let (sys, mm) = system(profile, 256);
        mm.mmap(BASE, 4 * P, RW, FIXED).unwrap();
        for i in 0..3 {
            mm.write_u64(BASE + i * P, 42).unwrap();
        }
        mm.write_u64(BASE + 3 * P, 43).unwrap();
        assert_eq!(mm.ksm_scan(), 0, "nothing is mergeable yet");
        mm.madvise(BASE, 4 * P, Advice::Mergeable).unwrap();
        let free = sys.mem().nr_free_pages();
        assert_eq!(
            mm.ksm_scan(),
            2,
            "{}: two pages merged into the third",
            profile.name
        );
        assert_eq!(sys.mem().nr_free_pages(), free + 2);
        let k = pfn(&mm, BASE);
        for i in 0..3 {
            let p = mm.pte_get_lockless(va(BASE + i * P)).present().unwrap();
            assert_eq!(p.pfn, k);
            assert!(!p.is_write() && !p.is_dirty());
        }
        assert!(ksm(&sys, &mm, BASE));
        assert!(!ksm(&sys, &mm, BASE + 3 * P), "a different page stays");
        assert_eq!(sys.mem().page(k).unwrap().mapcount(), 3);
        assert_eq!(mm.rss_anon(), 4, "KSM pages still count in RSS");
        checked(&sys);
        // A second scan has nothing more to do.
        assert_eq!(mm.ksm_scan(), 0);
        // A write copies (a KSM folio is never reused); the others keep the KSM page.
        let copies = mm.stats().cow_copies.load(Ordering::Relaxed);
        mm.write_u64(BASE + P, 7).unwrap();
        assert_eq!(mm.stats().cow_copies.load(Ordering::Relaxed), copies + 1);
        assert_ne!(pfn(&mm, BASE + P), k);
        assert_eq!(mm.read_u64(BASE).unwrap(), 42);
        assert_eq!(mm.read_u64(BASE + P).unwrap(), 7);
        assert_eq!(sys.mem().page(k).unwrap().mapcount(), 2);
        checked(&sys);
        // MADV_UNMERGEABLE copies the rest back.
        mm.madvise(BASE, 4 * P, Advice::Unmergeable).unwrap();
        assert!(!ksm(&sys, &mm, BASE) && !ksm(&sys, &mm, BASE + 2 * P));
        assert_ne!(pfn(&mm, BASE), pfn(&mm, BASE + 2 * P));
        assert_eq!(mm.read_u64(BASE + 2 * P).unwrap(), 42);
        checked(&sys);
        // Reclaim and fork walk the KSM rmap (merge again first).
        mm.madvise(BASE, 4 * P, Advice::Mergeable).unwrap();
        assert_eq!(mm.ksm_scan(), 1);
        let child = sys.fork(&mm).unwrap();
        assert_eq!(pfn(&child, BASE), pfn(&mm, BASE));
        checked(&sys);
        drop(child);
        checked(&sys);
    }
}

/// A page the device holds exclusively is not present: the lookup never finds it,
/// in either era (spec 4.10); a pinned page is not merged (write_protect_page()'s
/// reference check); shared mappings are ignored by MADV_MERGEABLE.
#[test]
fn ksm_skips_device_exclusive_pinned_and_shared_pages() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let (sys, mm) = system(profile, 256);
        mm.mmap(BASE, 3 * P, RW, FIXED).unwrap();
        for i in 0..3 {
            mm.write_u64(BASE + i * P, 9).unwrap();
        }
        {
            let mut g = mm.mmap_read_lock();
            drop(
                mm.make_device_exclusive(&mut g, BASE, None, &Task::new("drv"))
                    .unwrap(),
            );
        }
        let pinned = {
            let mut g = mm.mmap_read_lock();
            mm.pin_user_pages(&mut g, BASE + P, 1, GupFlags::WRITE)
                .unwrap()
        };
        mm.madvise(BASE, 3 * P, Advice::Mergeable).unwrap();
        assert_eq!(mm.ksm_scan(), 0, "{}", profile.name);
        assert!(matches!(mm.pte_get_lockless(va(BASE)), Pte::Swap(s) if s.is_device_exclusive()));
        assert!(!ksm(&sys, &mm, BASE + P) && !ksm(&sys, &mm, BASE + 2 * P));
        sys.mem().unpin_user_pages(&pinned);
        // Unpinned: the pinned page and the third merge; the entry stays out.
        assert_eq!(mm.ksm_scan(), 1, "{}", profile.name);
        assert!(matches!(mm.pte_get_lockless(va(BASE)), Pte::Swap(s) if s.is_device_exclusive()));
        checked(&sys);
    }
    let (sys, mm) = system(Profile::linux_6_15(), 256);
    let shared = svmkit::mm::MapFlags::SHARED | svmkit::mm::MapFlags::ANONYMOUS;
    let a = mm.mmap(0, 2 * P, RW, shared).unwrap().raw();
    mm.write_u64(a, 1).unwrap();
    mm.write_u64(a + P, 1).unwrap();
    mm.madvise(a, 2 * P, Advice::Mergeable).unwrap();
    assert_eq!(mm.ksm_scan(), 0);
    checked(&sys);
}

/// mremap moving a mergeable VMA first copies its KSM pages back (Linux
/// `move_vma()`: "Advise KSM to break any KSM pages in the area to be moved"), so no
/// rmap item names an address the page left.
#[test]
fn ksm_mremap_breaks_ksm_pages_before_moving() {
    use svmkit::mm::MremapFlags;
    let (sys, mm) = system(Profile::linux_6_15(), 256);
    mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
    mm.write_u64(BASE, 3).unwrap();
    mm.write_u64(BASE + P, 3).unwrap();
    mm.madvise(BASE, 2 * P, Advice::Mergeable).unwrap();
    assert_eq!(mm.ksm_scan(), 1);
    let to = BASE + 64 * P;
    mm.mremap(
        BASE + P,
        P,
        P,
        MremapFlags::MAYMOVE | MremapFlags::FIXED,
        to,
    )
    .unwrap();
    assert!(
        ksm(&sys, &mm, BASE),
        "the page that stayed is still the KSM page"
    );
    assert!(!ksm(&sys, &mm, to), "the moved one was copied back first");
    assert_eq!(mm.read_u64(to).unwrap(), 3);
    checked(&sys);
}

/// A reclaimed KSM page leaves one swap slot named by every address that mapped it.
/// The first fault brings the page into the swap cache under its own anon_vma and
/// index; every other address gets a copy, so that rmap finds each mapping (Linux
/// 6.12 `do_swap_page()` → `ksm_might_need_to_copy()`: a swap-cache folio whose
/// index or anon_vma root differs from the faulting VMA's is copied). Found by the
/// invariant proptest in CI (2026-12-02): before, every address mapped the one
/// swapped-in page and rmap found only the first.
#[test]
fn ksm_page_swapped_out_and_back_in_is_copied_for_every_other_address() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let (sys, mm) = system(profile, 256);
        sys.mem().swapon(64).unwrap();
        mm.mmap(BASE, 4 * P, RW, FIXED).unwrap();
        for i in 0..4 {
            mm.write_u64(BASE + i * P, 42 + 100 * u64::from(i == 3))
                .unwrap();
        }
        mm.madvise(BASE, 4 * P, Advice::Mergeable).unwrap();
        assert_eq!(mm.ksm_scan(), 2, "{}", profile.name);
        let k = common::folio_at(&sys, &mm, BASE);
        assert!(sys.mem().folio_test_ksm(k));
        sys.mem().reclaim_folio(k).unwrap();
        let slots: Vec<u64> = (0..3)
            .map(|i| match mm.pte_get_lockless(va(BASE + i * P)) {
                Pte::Swap(s) => s.offset,
                other => panic!("{}: page {i}: {other:?}, not a swap entry", profile.name),
            })
            .collect();
        assert!(slots.iter().all(|&s| s == slots[0]), "one slot: {slots:?}");
        checked(&sys);
        for i in 0..3 {
            assert_eq!(mm.read_u64(BASE + i * P).unwrap(), 42, "{}", profile.name);
        }
        let pfns: Vec<_> = (0..3).map(|i| pfn(&mm, BASE + i * P)).collect();
        assert!(
            pfns[0] != pfns[1] && pfns[1] != pfns[2] && pfns[0] != pfns[2],
            "{}: a copy per address after the first: {pfns:?}",
            profile.name
        );
        for i in 0..3 {
            assert!(!ksm(&sys, &mm, BASE + i * P), "{}", profile.name);
        }
        checked(&sys);
        assert_eq!(mm.read_u64(BASE + 3 * P).unwrap(), 142);
    }
}

/// A fork's VMA, not mergeable (the fork came before MADV_MERGEABLE), maps the
/// parent's KSM page at the same address, where rmap_walk_ksm() finds it; mremap
/// moves it (`ksm_madvise(MADV_UNMERGEABLE)` does nothing for a VMA without
/// VM_MERGEABLE), and at the new address no rmap item names it: reclaim's unmap
/// misses it and the page stays mapped there with its contents (derived from Linux
/// 6.12 mm/ksm.c `rmap_walk_ksm()` and mm/mremap.c `move_vma()`; the checker accepts
/// such a mapping and still reports a KSM mapping at an address an item names that
/// rmap misses).
#[test]
fn ksm_page_a_fork_moves_is_out_of_rmap_reach_and_stays_mapped() {
    use svmkit::mm::MremapFlags;
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let (sys, mm) = system(profile, 256);
        sys.mem().swapon(64).unwrap();
        mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 5).unwrap();
        mm.write_u64(BASE + P, 5).unwrap();
        let child = sys.fork(&mm).unwrap();
        mm.madvise(BASE, 2 * P, Advice::Mergeable).unwrap();
        assert_eq!(mm.ksm_scan(), 1, "{}", profile.name);
        let k = pfn(&mm, BASE);
        assert_eq!(
            pfn(&child, BASE),
            k,
            "{}: the child maps the KSM page",
            profile.name
        );
        let to = BASE + 64 * P;
        child
            .mremap(BASE, P, P, MremapFlags::MAYMOVE | MremapFlags::FIXED, to)
            .unwrap();
        assert_eq!(pfn(&child, to), k, "{}: moved as it is", profile.name);
        checked(&sys);
        let f = common::folio_at(&sys, &mm, BASE);
        assert!(sys.mem().reclaim_folio(f).is_err(), "{}", profile.name);
        assert_eq!(pfn(&child, to), k, "{}: still mapped", profile.name);
        assert_eq!(child.read_u64(to).unwrap(), 5);
        assert!(matches!(mm.pte_get_lockless(va(BASE)), Pte::Swap(_)));
        assert_eq!(mm.read_u64(BASE).unwrap(), 5);
        checked(&sys);
        drop(child);
        checked(&sys);
    }
}
