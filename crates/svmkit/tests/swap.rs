//! Swap-out and swap-in of anonymous pages, MADV_PAGEOUT, and what device-exclusive
//! entries do to reclaim in each era (spec 4.5, 4.7, 8 item 8).

mod common;

use svmkit::mm::mmu_notifier::{MmuNotifierEvent, RecordingNotifier};
use svmkit::mm::{Advice, GupFlags, MmUser, Pte};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, Profile, System, SystemConfig};

use common::{BASE, FIXED, P, RW, checked, folio_at, va};

/// A system with a 64-slot swap device.
fn system(profile: Profile) -> (Arc<System>, MmUser) {
    let (sys, mm) = common::system(profile, 512);
    sys.mem().swapon(64).unwrap();
    (sys, mm)
}

fn is_swap(mm: &MmUser, a: u64) -> bool {
    matches!(mm.pte_get_lockless(va(a)), Pte::Swap(s) if s.is_swap())
}

#[test]
fn swap_out_and_back_in_keeps_the_data() {
    let (sys, mm) = system(Profile::linux_6_15());
    mm.mmap(BASE, 4 * P, RW, FIXED).unwrap();
    mm.write_u64(BASE + P + 16, 77).unwrap();
    let f = folio_at(&sys, &mm, BASE + P);
    let free = sys.mem().nr_free_pages();
    let rec = RecordingNotifier::new();
    mm.mmu_notifier_register(rec.clone()).unwrap();
    sys.mem().reclaim_folio(f).unwrap();
    assert!(is_swap(&mm, BASE + P));
    assert_eq!(sys.mem().nr_free_pages(), free + 1, "the frame was freed");
    assert_eq!(sys.mem().swap_slots_used(), 1);
    assert_eq!(mm.rss_anon(), 0);
    assert!(
        rec.take()
            .iter()
            .any(|c| c.event == MmuNotifierEvent::Clear)
    );
    checked(&sys);
    // Swap-in on a read: the data is back; the slot stays with the swap cache
    // (Linux 6.12 do_swap_page(): should_try_to_free_swap() is false for a read
    // fault with swap less than half full).
    assert_eq!(mm.read_u64(BASE + P + 16).unwrap(), 77);
    assert_eq!(sys.mem().swap_slots_used(), 1);
    assert_eq!(mm.rss_anon(), 1);
    mm.write_u64(BASE + P, 1).unwrap();
    checked(&sys);
    // Without a swap device reclaim cannot write anything out.
    let sys2 = System::new(SystemConfig::with_frames(64)).unwrap();
    let mm2 = sys2.create_mm().unwrap();
    mm2.mmap(BASE, P, RW, FIXED).unwrap();
    mm2.write_u64(BASE, 1).unwrap();
    assert_eq!(
        sys2.mem().reclaim_folio(folio_at(&sys2, &mm2, BASE)),
        Err(Errno::ENOMEM)
    );
    assert_eq!(mm2.read_u64(BASE).unwrap(), 1);
}

#[test]
fn swap_slot_shared_across_fork_and_freed_at_munmap() {
    let (sys, parent) = system(Profile::linux_6_15());
    parent.mmap(BASE, 2 * P, RW, FIXED).unwrap();
    parent.write_u64(BASE, 5).unwrap();
    let child = sys.fork(&parent).unwrap();
    let f = folio_at(&sys, &parent, BASE);
    // Shared COW: both mappings become swap entries for one slot.
    sys.mem().reclaim_folio(f).unwrap();
    assert!(is_swap(&parent, BASE) && is_swap(&child, BASE));
    assert_eq!(sys.mem().swap_usage().len(), 1);
    assert_eq!(sys.mem().swap_usage()[0].1, 2);
    checked(&sys);
    // The child reads it in (from the slot into the swap cache); the parent then
    // finds the same folio in the swap cache.
    assert_eq!(child.read_u64(BASE).unwrap(), 5);
    assert_eq!(parent.read_u64(BASE).unwrap(), 5);
    assert_eq!(parent.translate(va(BASE)), child.translate(va(BASE)));
    // Both were reads: the slot stays with the cache (Linux: SWAP_HAS_CACHE).
    assert_eq!(sys.mem().swap_slots_used(), 1);
    checked(&sys);
    // Writes stay private.
    child.write_u64(BASE, 6).unwrap();
    assert_eq!(parent.read_u64(BASE).unwrap(), 5);
    // A swapped-out page that is unmapped frees its slot.
    sys.mem()
        .reclaim_folio(folio_at(&sys, &parent, BASE))
        .unwrap();
    assert_eq!(sys.mem().swap_slots_used(), 1);
    parent.munmap(BASE, 2 * P).unwrap();
    assert_eq!(sys.mem().swap_slots_used(), 0);
    checked(&sys);
    drop(child);
    drop(parent);
    checked(&sys);
    assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
}

#[test]
fn swap_reclaim_mm_and_pageout_skip_what_they_cannot_free() {
    let (sys, mm) = system(Profile::linux_6_15());
    mm.mmap(BASE, 8 * P, RW, FIXED).unwrap();
    for i in 0..8 {
        mm.write_u64(BASE + i * P, i).unwrap();
    }
    // A GUP reference keeps one page from being freed.
    let held = {
        let mut g = mm.mmap_read_lock();
        mm.get_user_pages(&mut g, BASE, 1, GupFlags::GET).unwrap()
    };
    assert_eq!(mm.reclaim_mm(100), 7);
    for i in 1..8 {
        assert!(is_swap(&mm, BASE + i * P));
    }
    sys.mem().put_page(held[0]);
    // MADV_PAGEOUT of the rest of the range.
    mm.madvise(BASE, 8 * P, Advice::PageOut).unwrap();
    assert!(is_swap(&mm, BASE));
    for i in 0..8 {
        assert_eq!(mm.read_u64(BASE + i * P).unwrap(), i);
    }
    checked(&sys);
}

fn make_exclusive(mm: &MmUser, addr: u64) {
    let mut g = mm.mmap_read_lock();
    drop(
        mm.make_device_exclusive(&mut g, addr, None, &Task::new("drv"))
            .unwrap(),
    );
}

#[test]
fn excl_reclaim_per_profile() {
    for profile in Profile::ALL {
        let (sys, mm) = system(profile);
        mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 3).unwrap();
        make_exclusive(&mm, BASE);
        // MADV_PAGEOUT skips non-present entries in both eras: the device keeps it.
        mm.madvise(BASE, 2 * P, Advice::PageOut).unwrap();
        assert!(matches!(mm.pte_get_lockless(va(BASE)), Pte::Swap(s) if s.is_device_exclusive()));
        let f = match mm.pte_get_lockless(va(BASE)) {
            Pte::Swap(s) => sys.mem().page_folio(s.pfn().unwrap()).unwrap(),
            other => panic!("{other:?}"),
        };
        let free = sys.mem().nr_free_pages();
        let r = sys.mem().reclaim_folio(f);
        if profile.walkers_handle_entries {
            // 6.15: the entry becomes an ordinary swap entry, the frame is freed, the
            // device was told with Clear; the data comes back on the next touch.
            assert_eq!(r, Ok(()));
            assert!(is_swap(&mm, BASE));
            assert_eq!(sys.mem().nr_free_pages(), free + 1);
        } else {
            // 5.14: the folio looks unmapped, its extra reference (the entry's) keeps
            // it: reclaim cannot free it and RSS never drops (spec 4.7).
            assert_eq!(r, Err(Errno::EAGAIN));
            assert!(
                matches!(mm.pte_get_lockless(va(BASE)), Pte::Swap(s) if s.is_device_exclusive())
            );
            assert_eq!(mm.rss_anon(), 1);
            // It was written out all the same and stays in the swap cache with its
            // slot (Linux: pageout() before __remove_mapping() fails, then
            // activate_locked).
            assert_eq!(sys.mem().swap_slots_used(), 1);
        }
        checked(&sys);
        assert_eq!(mm.read_u64(BASE).unwrap(), 3, "{}", profile.name);
        checked(&sys);
    }
}

/// A page pinned for DMA that the process maps exclusively stays mapped: reclaim
/// must not leave the pin pointing at a frame the process no longer sees.
#[test]
fn swap_reclaim_leaves_a_pinned_exclusive_page_mapped() {
    let (sys, mm) = system(Profile::linux_6_15());
    mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
    mm.write_u64(BASE, 5).unwrap();
    mm.write_u64(BASE + P, 6).unwrap();
    let pinned = {
        let mut guard = mm.mmap_read_lock();
        mm.pin_user_pages(&mut guard, BASE, 1, GupFlags::WRITE)
            .unwrap()
    };
    let f = folio_at(&sys, &mm, BASE);
    assert_eq!(sys.mem().reclaim_folio(f), Err(Errno::EAGAIN));
    assert_eq!(mm.translate(va(BASE)), Some(pinned[0]), "still mapped");
    assert_eq!(sys.mem().swap_slots_used(), 0, "nothing left written out");
    // The unpinned neighbour goes; the pinned one stays.
    assert_eq!(mm.reclaim_mm(16), 1);
    assert!(is_swap(&mm, BASE + P));
    assert_eq!(mm.translate(va(BASE)), Some(pinned[0]));
    // A DMA write through the pin is what the process reads.
    sys.mem().write_u64(pinned[0], 0, 9).unwrap();
    assert_eq!(mm.read_u64(BASE).unwrap(), 9);
    sys.mem().unpin_user_pages(&pinned);
    checked(&sys);
    sys.mem().reclaim_folio(f).unwrap();
    assert!(is_swap(&mm, BASE));
    assert_eq!(mm.read_u64(BASE).unwrap(), 9);
    assert_eq!(mm.read_u64(BASE + P).unwrap(), 6);
    checked(&sys);
}

/// The same for a pinned page the process maps by a device-exclusive entry: 6.15's
/// try_to_unmap_one() takes the normal anon path for the entry, whose
/// folio_try_share_anon_rmap_pte() refuses a possibly pinned anon-exclusive page, so
/// the entry is put back and the walk aborts (spec 4.7; derived from
/// torvalds/linux:mm/rmap.c at 6.15); 5.14 does not unmap the entry at all. Found by
/// the mm_invariant soak: the model turned the entry into a swap entry, and fork then
/// shared the pinned folio with the child through the swap cache, so a DMA write
/// through the parent's pin showed in the child.
#[test]
fn swap_reclaim_leaves_a_pinned_device_exclusive_page_mapped() {
    for profile in Profile::ALL {
        let (sys, mm) = system(profile);
        mm.mmap(BASE, P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 5).unwrap();
        let pinned = {
            let mut guard = mm.mmap_read_lock();
            mm.pin_user_pages(&mut guard, BASE, 1, GupFlags::WRITE)
                .unwrap()
        };
        make_exclusive(&mm, BASE);
        let entry = |mm: &MmUser| match mm.pte_get_lockless(va(BASE)) {
            Pte::Swap(s) if s.is_device_exclusive() => s.pfn(),
            _ => None,
        };
        assert_eq!(entry(&mm), Some(pinned[0]), "{}", profile.name);
        let f = sys.mem().page_folio(pinned[0]).unwrap();
        assert_eq!(
            sys.mem().reclaim_folio(f),
            Err(Errno::EAGAIN),
            "{}",
            profile.name
        );
        assert_eq!(entry(&mm), Some(pinned[0]), "{}: entry kept", profile.name);
        assert_eq!(sys.mem().swap_slots_used(), 0, "{}", profile.name);
        // Fork restores the entry and copies the pinned page for the child (Linux:
        // folio_try_dup_anon_rmap_pte() refuses a possibly pinned page): a DMA write
        // through the pin is the parent's alone.
        let child = sys.fork(&mm).unwrap();
        assert_eq!(child.read_u64(BASE).unwrap(), 5, "{}", profile.name);
        sys.mem().write_u64(pinned[0], 0, 9).unwrap();
        assert_eq!(mm.read_u64(BASE).unwrap(), 9, "{}", profile.name);
        assert_eq!(child.read_u64(BASE).unwrap(), 5, "{}: child", profile.name);
        sys.mem().unpin_user_pages(&pinned);
        checked(&sys);
        drop(child);
        checked(&sys);
    }
}

/// Migrating a folio that sits in the swap cache moves the cache entry with it: the
/// next swap-in of the same slot finds the new folio.
#[test]
fn swap_cache_folio_migrates_and_the_cache_follows() {
    let (sys, parent) = system(Profile::linux_6_15());
    parent.mmap(BASE, P, RW, FIXED).unwrap();
    parent.write_u64(BASE, 5).unwrap();
    let child = sys.fork(&parent).unwrap();
    sys.mem()
        .reclaim_folio(folio_at(&sys, &parent, BASE))
        .unwrap();
    // The child's swap-in leaves the folio in the swap cache: the parent still
    // names the slot.
    assert_eq!(child.read_u64(BASE).unwrap(), 5);
    assert!(is_swap(&parent, BASE));
    let old = folio_at(&sys, &child, BASE);
    let new = sys.mem().migrate_folio(old).unwrap();
    assert_ne!(new, old);
    assert_eq!(child.translate(va(BASE)), Some(new.head()));
    checked(&sys);
    // The parent's swap-in finds the migrated folio, not a stale frame.
    assert_eq!(parent.read_u64(BASE).unwrap(), 5);
    assert_eq!(parent.translate(va(BASE)), Some(new.head()));
    // Read faults: the slot stays with the (migrated) cache folio.
    assert_eq!(sys.mem().swap_slots_used(), 1);
    checked(&sys);
    drop(child);
    drop(parent);
    checked(&sys);
    assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
}
