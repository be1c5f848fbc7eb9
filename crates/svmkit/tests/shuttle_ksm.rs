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
