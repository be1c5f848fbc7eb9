//! Schedule exploration of MADV_POPULATE_WRITE over a range a CPU increments in and a
//! driver makes device-exclusive (run with
//! `cargo test -p svmkit --features shuttle --test shuttle_populate`).
#![cfg(feature = "shuttle")]

use svmkit::mm::Advice;
use svmkit::mm::mmu_notifier::Owner;
use svmkit::sync::thread;
use svmkit::task::Task;
use svmkit::{PAGE_SIZE, Profile};

mod common;
use common::sched::{all_frames_free, explored, explored_mapping};
use common::{BASE as A, checked, va};

const INCREMENTS: u64 = 3;

fn populate_races_cpu_and_device_in(profile: Profile) {
    explored(300, move || {
        let (sys, mm) = explored_mapping(profile, 48, 2 * PAGE_SIZE);
        mm.write_u64(A, 0).unwrap();
        let cpu = {
            let mm = mm.clone();
            thread::spawn(move || {
                for _ in 0..INCREMENTS {
                    mm.fetch_add_u64(A, 1).unwrap();
                }
            })
        };
        let driver = {
            let mm = mm.clone();
            thread::spawn(move || {
                let (owner, task) = (Owner::new(), Task::new("driver"));
                let mut g = mm.mmap_read_lock();
                let excl = mm.make_device_exclusive(&mut g, A, Some(owner), &task);
                drop(g);
                svmkit::sync::yield_now();
                drop(excl);
            })
        };
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
