//! MADV_FREE, MADV_COLD and MADV_WILLNEED, alone and over device-exclusive entries,
//! in both eras (spec 4.5).

mod common;

use svmkit::mm::mmu_notifier::{MmuNotifierEvent, RecordingNotifier};
use svmkit::mm::{Advice, MapFlags, MmUser, PageFlags, Prot, Pte, PteFlags};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, Profile, System};

use common::{BASE, FIXED, P, RW, checked, folio_at, va};

fn system(profile: Profile) -> (Arc<System>, MmUser) {
    let (sys, mm) = common::system(profile, 512);
    sys.mem().swapon(64).unwrap();
    (sys, mm)
}

fn make_exclusive(mm: &MmUser, addr: u64) {
    let mut g = mm.mmap_read_lock();
    drop(
        mm.make_device_exclusive(&mut g, addr, None, &Task::new("drv"))
            .unwrap(),
    );
}

fn is_entry(mm: &MmUser, a: u64) -> bool {
    matches!(mm.pte_get_lockless(va(a)), Pte::Swap(s) if s.is_device_exclusive())
}

fn is_swap(mm: &MmUser, a: u64) -> bool {
    matches!(mm.pte_get_lockless(va(a)), Pte::Swap(s) if s.is_swap())
}

/// MADV_FREE without entries (both eras alike; Linux madvise(2): "the kernel can free
/// these pages ... if the page is subsequently written to, it will not be freed"):
/// a clean page is dropped by reclaim and reads zero, a page written since is swapped
/// out and keeps the write, a swapped-out page in the range is zapped (derived from
/// 6.12 mm/madvise.c madvise_free_pte_range() and mm/vmscan.c / mm/rmap.c for
/// folios without PG_swapbacked).
#[test]
fn madv_free_drops_clean_pages_at_reclaim_and_a_write_keeps_them() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let (sys, mm) = system(profile);
        mm.mmap(BASE, 3 * P, RW, FIXED).unwrap();
        for i in 0..3 {
            mm.write_u64(BASE + i * P, 1 + i).unwrap();
        }
        sys.mem()
            .reclaim_folio(folio_at(&sys, &mm, BASE + 2 * P))
            .unwrap();
        assert_eq!(sys.mem().swap_slots_used(), 1);
        mm.madvise(BASE, 3 * P, Advice::Free).unwrap();
        // Page 2's swap entry is gone with its slot.
        assert_eq!(mm.pte_get_lockless(va(BASE + 2 * P)), Pte::None);
        assert_eq!(sys.mem().swap_slots_used(), 0);
        let f0 = folio_at(&sys, &mm, BASE);
        assert!(sys.mem().folio_test(f0, PageFlags::LAZYFREE));
        assert!(!sys.mem().folio_test(f0, PageFlags::DIRTY));
        let pte = mm.pte_get_lockless(va(BASE)).present().unwrap();
        assert!(!pte.is_dirty() && !pte.flags.contains(PteFlags::ACCESSED));
        checked(&sys);
        // Page 1 is written again before reclaim comes.
        mm.write_u64(BASE + P, 22).unwrap();
        let free = sys.mem().nr_free_pages();
        assert_eq!(sys.mem().reclaim_folio(f0), Ok(()));
        assert_eq!(sys.mem().nr_free_pages(), free + 1);
        assert_eq!(mm.pte_get_lockless(va(BASE)), Pte::None, "dropped, no swap");
        assert_eq!(
            sys.mem().swap_writeouts(),
            1,
            "only page 2's earlier write-out"
        );
        let f1 = folio_at(&sys, &mm, BASE + P);
        assert_eq!(
            sys.mem().reclaim_folio(f1),
            Err(Errno::EAGAIN),
            "re-dirtied"
        );
        assert!(
            !sys.mem().folio_test(f1, PageFlags::LAZYFREE),
            "swap-backed again"
        );
        assert_eq!(sys.mem().reclaim_folio(f1), Ok(()));
        assert!(is_swap(&mm, BASE + P));
        checked(&sys);
        assert_eq!(mm.read_u64(BASE).unwrap(), 0);
        assert_eq!(mm.read_u64(BASE + P).unwrap(), 22);
        assert_eq!(mm.read_u64(BASE + 2 * P).unwrap(), 0);
        checked(&sys);
    }
}

/// Spec 4.5: MADV_FREE, MADV_COLD and MADV_WILLNEED leave a device-exclusive entry
/// alone in both eras (FREE touches only genuine swap, hwpoison and poison entries;
/// COLD skips non-present PTEs; WILLNEED skips non-swap entries), so the page is
/// neither made lazily freed nor aged, and its data survives reclaim. MADV_FREE still
/// brackets the range with a Clear invalidation (derived from 6.12
/// madvise_free_single_vma()), which revokes the device although the entry stays.
/// What reclaim does afterwards is item 8's per-era answer (spec 4.7).
#[test]
fn madv_free_cold_willneed_leave_an_entry_in_both_eras() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let name = profile.name;
        let (sys, mm) = system(profile);
        mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 5).unwrap();
        make_exclusive(&mm, BASE);
        let rec = RecordingNotifier::new();
        mm.mmu_notifier_register(rec.clone()).unwrap();
        for advice in [Advice::Free, Advice::Cold, Advice::WillNeed] {
            mm.madvise(BASE, 2 * P, advice).unwrap();
            assert!(is_entry(&mm, BASE), "{name}: {advice:?}");
        }
        let events: Vec<_> = rec.take().iter().map(|c| c.event).collect();
        assert!(
            !events.is_empty() && events.iter().all(|e| *e == MmuNotifierEvent::Clear),
            "{name}: MADV_FREE's range only: {events:?}"
        );
        let f = match mm.pte_get_lockless(va(BASE)) {
            Pte::Swap(s) => sys.mem().page_folio(s.pfn().unwrap()).unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(!sys.mem().folio_test(f, PageFlags::LAZYFREE), "{name}");
        assert!(sys.mem().folio_test(f, PageFlags::DIRTY), "{name}");
        checked(&sys);
        let r = sys.mem().reclaim_folio(f);
        if name == "linux-5.14" {
            assert_eq!(r, Err(Errno::EAGAIN), "spec 4.7: stuck");
        } else {
            assert_eq!(r, Ok(()), "spec 4.7: swapped");
        }
        assert_eq!(mm.read_u64(BASE).unwrap(), 5, "{name}: the data survives");
        checked(&sys);
    }
}

/// A page made lazily free and then device-exclusive: the conversion's GUP
/// (`FOLL_WRITE`, `FOLL_TOUCH`) dirties the folio, so no era drops it. 6.15's
/// try_to_unmap_one() meets the entry, finds the lazily freed folio dirty, puts the
/// entry back and makes it swap-backed again (`EAGAIN`); the next reclaim swaps it
/// out. 5.14's folio looks unmapped and the entry's reference keeps it: stuck. Derived
/// from 6.12 mm/rmap.c (the MADV_FREE check) and mm/gup.c (`follow_page_pte()`'s
/// `folio_mark_dirty()`), spec 4.7.
#[test]
fn a_lazily_freed_page_made_exclusive_is_kept_in_both_eras() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let name = profile.name;
        let (sys, mm) = system(profile);
        mm.mmap(BASE, P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 7).unwrap();
        mm.madvise(BASE, P, Advice::Free).unwrap();
        let f = folio_at(&sys, &mm, BASE);
        assert!(sys.mem().folio_test(f, PageFlags::LAZYFREE));
        make_exclusive(&mm, BASE);
        assert!(
            sys.mem().folio_test(f, PageFlags::DIRTY),
            "{name}: GUP's touch"
        );
        assert_eq!(sys.mem().reclaim_folio(f), Err(Errno::EAGAIN), "{name}");
        assert!(is_entry(&mm, BASE), "{name}");
        let second = sys.mem().reclaim_folio(f);
        if name == "linux-6.15" {
            assert!(!sys.mem().folio_test(f, PageFlags::LAZYFREE) || second.is_ok());
            assert_eq!(second, Ok(()));
            assert!(is_swap(&mm, BASE));
        } else {
            assert_eq!(second, Err(Errno::EAGAIN));
            assert!(is_entry(&mm, BASE));
        }
        checked(&sys);
        assert_eq!(mm.read_u64(BASE).unwrap(), 7, "{name}: not dropped");
        checked(&sys);
    }
}

/// MADV_COLD clears the young bit of pages only this process maps (derived from 6.12
/// madvise_cold_or_pageout_pte_range(): `folio_likely_mapped_shared()` folios are
/// skipped); the data and the dirty bit stay.
#[test]
fn madv_cold_ages_pages_this_process_alone_maps() {
    let (sys, mm) = system(Profile::linux_6_15());
    mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    mm.write_u64(BASE + P, 2).unwrap();
    let child = sys.fork(&mm).unwrap();
    // Page 0 is made private again in the parent (COW break); page 1 stays shared.
    mm.write_u64(BASE, 3).unwrap();
    let young = |a: u64| {
        mm.pte_get_lockless(va(a))
            .present()
            .unwrap()
            .flags
            .contains(PteFlags::ACCESSED)
    };
    assert!(young(BASE) && young(BASE + P));
    mm.madvise(BASE, 2 * P, Advice::Cold).unwrap();
    assert!(!young(BASE), "aged");
    assert!(young(BASE + P), "shared: skipped");
    assert!(mm.pte_get_lockless(va(BASE)).present().unwrap().is_dirty());
    assert_eq!(mm.read_u64(BASE).unwrap(), 3);
    assert_eq!(child.read_u64(BASE).unwrap(), 1);
    checked(&sys);
}

/// MADV_WILLNEED reads a swapped-out page into the swap cache: a frame is used at
/// once, the PTE stays a swap entry, and the fault then maps the cached folio
/// without another frame (derived from 6.12 swapin_walk_pmd_entry() +
/// read_swap_cache_async(); 5.14 force_swapin_readahead()).
#[test]
fn madv_willneed_reads_swap_into_the_swap_cache() {
    let (sys, mm) = system(Profile::linux_5_14());
    mm.mmap(BASE, P, RW, FIXED).unwrap();
    mm.write_u64(BASE, 9).unwrap();
    sys.mem().reclaim_folio(folio_at(&sys, &mm, BASE)).unwrap();
    let free = sys.mem().nr_free_pages();
    mm.madvise(BASE, P, Advice::WillNeed).unwrap();
    assert_eq!(sys.mem().nr_free_pages(), free - 1);
    assert!(is_swap(&mm, BASE));
    checked(&sys);
    assert_eq!(mm.read_u64(BASE).unwrap(), 9);
    assert_eq!(
        sys.mem().nr_free_pages(),
        free - 1,
        "the cached folio, no new one"
    );
    checked(&sys);
}

/// Errors (Linux mm/madvise.c): `EINVAL` for MADV_FREE and MADV_COLD on mlocked
/// memory (can_madv_lru_vma()) and for MADV_FREE on a shared mapping
/// (madvise_free_single_vma()), `EINVAL` for an unaligned start, `ENOMEM` for a hole
/// (after the mapped part was advised).
#[test]
fn madv_free_cold_willneed_errors() {
    let (sys, mm) = system(Profile::linux_6_15());
    mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    assert_eq!(mm.madvise(BASE + 1, P, Advice::Free), Err(Errno::EINVAL));
    assert_eq!(
        mm.madvise(BASE, 4 * P, Advice::WillNeed),
        Err(Errno::ENOMEM)
    );
    assert_eq!(mm.madvise(BASE, 4 * P, Advice::Free), Err(Errno::ENOMEM));
    assert!(
        sys.mem()
            .folio_test(folio_at(&sys, &mm, BASE), PageFlags::LAZYFREE)
    );
    let shared = BASE + 16 * P;
    let sh = MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED;
    mm.mmap(shared, P, Prot::READ | Prot::WRITE, sh).unwrap();
    assert_eq!(mm.madvise(shared, P, Advice::Free), Err(Errno::EINVAL));
    mm.mlock(BASE, P).unwrap();
    assert_eq!(mm.madvise(BASE, P, Advice::Cold), Err(Errno::EINVAL));
    assert_eq!(mm.madvise(BASE, P, Advice::Free), Err(Errno::EINVAL));
    assert_eq!(Advice::from_raw(8), Ok(Advice::Free));
    assert_eq!(Advice::from_raw(20), Ok(Advice::Cold));
    assert_eq!(Advice::from_raw(3), Ok(Advice::WillNeed));
    checked(&sys);
}
