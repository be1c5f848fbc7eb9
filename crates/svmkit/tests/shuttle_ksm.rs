//! Schedule exploration of a KSM scan racing a device-exclusive conversion of one of
//! two identical pages (spec 4.10, 8 item 11; run with `cargo test -p svmkit
//! --features shuttle --test shuttle_ksm`).
//!
//! The conversion can land between the scan's lookup of the page and
//! `write_protect_page()`. 5.14's `write_protect_page()` then reads the write and
//! dirty bits of the entry (none), and `replace_page()` maps the KSM page over the
//! entry and removes the rmap 5.14's conversion had already removed: the explorer
//! must find the mapcount underflow. 6.15 gives up on the non-present PTE: no schedule
//! may break the checker, and both pages keep their contents.
//!
//! Also: the swap-ins of a reclaimed KSM page's two addresses, which share one slot,
//! racing each other and reclaim (Linux: `ksm_might_need_to_copy()`).
#![cfg(feature = "shuttle")]

use svmkit::check::{ExploreConfig, explore};
use svmkit::mm::Advice;
use svmkit::mm::mmu_notifier::Owner;
use svmkit::sync::thread;
use svmkit::task::Task;
use svmkit::{PAGE_SIZE, Profile};

mod common;
use common::BASE as A;
use common::sched::{all_frames_free, check_clean, explored_mapping};

fn ksm_vs_conversion(profile: Profile) {
    let (sys, mm) = explored_mapping(profile, 48, 2 * PAGE_SIZE);
    mm.write_u64(A, 9).unwrap();
    mm.write_u64(A + PAGE_SIZE, 9).unwrap();
    mm.madvise(A, 2 * PAGE_SIZE, Advice::Mergeable).unwrap();
    let driver = {
        let mm = mm.clone();
        thread::spawn(move || {
            let (owner, task) = (Owner::new(), Task::new("driver"));
            let mut g = mm.mmap_read_lock();
            // 5.14's trylock may fail against KSM's (spec 8 item 21): no race then.
            let excl = mm.make_device_exclusive(&mut g, A + PAGE_SIZE, Some(owner), &task);
            drop(g);
            drop(excl);
        })
    };
    let scanner = {
        let mm = mm.clone();
        thread::spawn(move || {
            mm.ksm_scan();
        })
    };
    driver.join().unwrap();
    scanner.join().unwrap();
    check_clean(&sys);
    assert_eq!(mm.read_u64(A).unwrap(), 9);
    assert_eq!(mm.read_u64(A + PAGE_SIZE).unwrap(), 9);
    check_clean(&sys);
    drop(mm);
    all_frames_free(&sys);
}

#[test]
fn shuttle_ksm_5_14_merges_over_an_entry_and_underflows_the_mapcount() {
    let failure = explore(&ExploreConfig::new(500), || {
        ksm_vs_conversion(Profile::linux_5_14())
    })
    .expect_err("5.14's write_protect_page() must be seen taking a device-exclusive entry");
    assert!(failure.message.contains("mapcount underflow"), "{failure}");
}

#[test]
fn shuttle_ksm_6_15_gives_up_on_an_entry() {
    let report = explore(&ExploreConfig::new(300), || {
        ksm_vs_conversion(Profile::linux_6_15())
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 600, "{report:?}");
}

/// Two CPU threads read back the two addresses of a reclaimed KSM page, which share
/// one swap slot, while a third reclaims whatever the swap cache holds again. The
/// first swap-in maps the swap-cache page under its own anon_vma and index; the
/// other address must get a copy (Linux 6.12 `do_swap_page()` →
/// `ksm_might_need_to_copy()`), in every order: each thread reads the merged value,
/// and the checker (every present anon PTE found by rmap, every slot's count matching
/// its entries, every reference accounted) holds after every schedule.
fn ksm_swapins_race(profile: Profile) {
    let (sys, mm) = explored_mapping(profile, 48, 2 * PAGE_SIZE);
    sys.mem().swapon(8).unwrap();
    mm.write_u64(A, 7).unwrap();
    mm.write_u64(A + PAGE_SIZE, 7).unwrap();
    mm.madvise(A, 2 * PAGE_SIZE, Advice::Mergeable).unwrap();
    assert_eq!(mm.ksm_scan(), 1);
    let k = common::folio_at(&sys, &mm, A);
    sys.mem().reclaim_folio(k).unwrap();
    let readers: Vec<_> = [A, A + PAGE_SIZE]
        .into_iter()
        .map(|a| {
            let mm = mm.clone();
            thread::spawn(move || mm.read_u64(a).unwrap())
        })
        .collect();
    let reclaimer = {
        let mm = mm.clone();
        thread::spawn(move || {
            mm.reclaim_mm(2);
        })
    };
    for r in readers {
        assert_eq!(r.join().unwrap(), 7);
    }
    reclaimer.join().unwrap();
    check_clean(&sys);
    assert_eq!(mm.read_u64(A).unwrap(), 7);
    assert_eq!(mm.read_u64(A + PAGE_SIZE).unwrap(), 7);
    let (p0, p1) = (
        mm.translate(common::va(A)),
        mm.translate(common::va(A + PAGE_SIZE)),
    );
    assert!(p0.is_some() && p1.is_some() && p0 != p1, "{p0:?} {p1:?}");
    check_clean(&sys);
    drop(mm);
    all_frames_free(&sys);
}

#[test]
fn shuttle_ksm_swapins_of_a_shared_slot_copy_for_the_other_address() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let report = explore(&ExploreConfig::new(300), move || ksm_swapins_race(profile))
            .unwrap_or_else(|f| panic!("{}: {f}", profile.name));
        assert!(report.schedules() >= 300, "{report:?}");
    }
}
