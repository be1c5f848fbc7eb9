//! Schedule exploration of MADV_POPULATE_WRITE over a range a CPU increments in and a
//! driver makes device-exclusive (run with
//! `cargo test -p svmkit --features shuttle --test shuttle_populate`).
#![cfg(feature = "shuttle")]

use svmkit::mm::Advice;
use svmkit::sync::thread;
use svmkit::{PAGE_SIZE, Profile};

mod common;
use common::sched::{
    all_frames_free, explored, explored_mapping, spawn_cpu_increments, spawn_exclusive_then_release,
};
use common::{BASE as A, checked, va};

const INCREMENTS: u64 = 3;

fn populate_races_cpu_and_device_in(profile: Profile) {
    explored(300, move || {
        let (sys, mm) = explored_mapping(profile, 48, 2 * PAGE_SIZE);
        mm.write_u64(A, 0).unwrap();
        let cpu = spawn_cpu_increments(&mm, INCREMENTS);
        let driver = spawn_exclusive_then_release(&mm);
        let populate = {
            let mm = mm.clone();
            thread::spawn(move || {
                // Derived (madvise_populate(), spec 4.5's fault rule): the whole range
                // is mapped, an entry is restored, nothing fails.
                assert_eq!(mm.madvise(A, 2 * PAGE_SIZE, Advice::PopulateWrite), Ok(()));
            })
        };
        cpu.join().unwrap();
        driver.join().unwrap();
        populate.join().unwrap();
        // Page 1 only the populate touched: present and writable, as a write would leave it.
        let p1 = mm.pte_get_lockless(va(A + PAGE_SIZE)).present();
        assert!(
            p1.is_some_and(|p| p.is_write()),
            "page 1 not populated: {p1:?}"
        );
        assert_eq!(mm.read_u64(A).unwrap(), INCREMENTS, "an increment was lost");
        assert_eq!(mm.read_u64(A + PAGE_SIZE).unwrap(), 0);
        checked(&sys);
        drop(mm);
        checked(&sys);
        all_frames_free(&sys);
    });
}

#[test]
fn shuttle_populate_races_cpu_increments_and_device_exclusive_6_15() {
    populate_races_cpu_and_device_in(Profile::linux_6_15());
}

#[test]
fn shuttle_populate_races_cpu_increments_and_device_exclusive_5_14() {
    populate_races_cpu_and_device_in(Profile::linux_5_14());
}
