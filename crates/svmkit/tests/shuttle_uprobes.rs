//! Schedule exploration of uprobes' page replacement racing a device-exclusive
//! conversion of the same page (spec 4.11, 8 item 10; run with `cargo test -p svmkit
//! --features shuttle --test shuttle_uprobes`).
//!
//! The conversion can land between `uprobe_write_opcode()`'s GUP and
//! `__replace_page()`'s folio lock. 5.14's `__replace_page()` then replaces the entry
//! as if it were a present PTE and removes the rmap 5.14's conversion had already
//! removed: the explorer must find the mapcount underflow (a bad page). 6.15 gives up
//! on the non-present PTE and retries GUP: no schedule may break the checker, and
//! the breakpoint is where it was written with the rest of the page intact.
#![cfg(feature = "shuttle")]

use svmkit::check::{ExploreConfig, explore};
use svmkit::mm::mmu_notifier::Owner;
use svmkit::sync::thread;
use svmkit::task::Task;
use svmkit::{PAGE_SIZE, Profile};

mod common;
use common::BASE as A;
use common::sched::{all_frames_free, check_clean, explored_mapping};

fn uprobe_vs_conversion(profile: Profile) {
    let (sys, mm) = explored_mapping(profile, 48, PAGE_SIZE);
    mm.write_u64(A, 5).unwrap();
    let driver = {
        let mm = mm.clone();
        thread::spawn(move || {
            let (owner, task) = (Owner::new(), Task::new("driver"));
            let mut g = mm.mmap_read_lock();
            // 5.14's trylock may fail (spec 8 item 21): then there is no race.
            let excl = mm.make_device_exclusive(&mut g, A, Some(owner), &task);
            drop(g);
            drop(excl);
        })
    };
    let uprobe = {
        let mm = mm.clone();
        thread::spawn(move || {
            mm.uprobe_write_opcode(A + 8, 0xcc).unwrap();
        })
    };
    driver.join().unwrap();
    uprobe.join().unwrap();
    check_clean(&sys);
    assert_eq!(mm.read_u64(A).unwrap(), 5, "the copy lost the page's data");
    assert_eq!(
        mm.read_u64(A + 8).unwrap(),
        0xcc,
        "the breakpoint is missing"
    );
    check_clean(&sys);
    drop(mm);
    all_frames_free(&sys);
}

#[test]
fn shuttle_uprobes_5_14_replaces_an_entry_and_underflows_the_mapcount() {
    let failure = explore(&ExploreConfig::new(500), || {
        uprobe_vs_conversion(Profile::linux_5_14())
    })
    .expect_err("5.14's __replace_page() must be seen replacing a device-exclusive entry");
    assert!(failure.message.contains("mapcount underflow"), "{failure}");
}

#[test]
fn shuttle_uprobes_6_15_retries_gup_on_an_entry() {
    let report = explore(&ExploreConfig::new(300), || {
        uprobe_vs_conversion(Profile::linux_6_15())
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 600, "{report:?}");
}
