//! Schedule exploration of mremap moving a range while a CPU increments in it and a
//! driver makes it device-exclusive (run with
//! `cargo test -p svmkit --features shuttle --test shuttle_mremap`).
#![cfg(feature = "shuttle")]

use svmkit::mm::MremapFlags;
use svmkit::mm::mmu_notifier::Owner;
use svmkit::sync::thread;
use svmkit::task::Task;
use svmkit::{PAGE_SIZE, Profile};

mod common;
use common::sched::{all_frames_free, explored, explored_mapping};
use common::{BASE as A, checked};

const INCREMENTS: u64 = 3;
/// Where the mapping moves (MREMAP_FIXED).
const TO: u64 = 0x6000_0000;

/// One increment of the counter wherever the mapping is: at `A` until the move, at
/// `TO` after it (derived: the move keeps every value, spec 4.4).
fn increment(mm: &svmkit::mm::MmUser) {
    if mm.fetch_add_u64(A, 1).is_err() {
        mm.fetch_add_u64(TO, 1).unwrap();
    }
}

fn mremap_races_cpu_and_device_in(profile: Profile) {
    explored(300, move || {
        let (sys, mm) = explored_mapping(profile, 48, 2 * PAGE_SIZE);
        mm.write_u64(A, 0).unwrap();
        mm.write_u64(A + PAGE_SIZE, 7).unwrap();
        let cpu = {
            let mm = mm.clone();
            thread::spawn(move || {
                for _ in 0..INCREMENTS {
                    increment(&mm);
                }
            })
        };
        let driver = {
            let mm = mm.clone();
            thread::spawn(move || {
                let (owner, task) = (Owner::new(), Task::new("driver"));
                let mut g = mm.mmap_read_lock();
                // EFAULT once the range has moved.
                let excl = mm.make_device_exclusive(&mut g, A, Some(owner), &task);
                drop(g);
                svmkit::sync::yield_now();
                drop(excl);
            })
        };
        let mover = {
            let mm = mm.clone();
            thread::spawn(move || {
                let flags = MremapFlags::MAYMOVE | MremapFlags::FIXED;
                assert_eq!(
                    mm.mremap(A, 2 * PAGE_SIZE, 2 * PAGE_SIZE, flags, TO),
                    Ok(TO)
                );
            })
        };
        cpu.join().unwrap();
        driver.join().unwrap();
        mover.join().unwrap();
        assert_eq!(
            mm.read_u64(TO).unwrap(),
            INCREMENTS,
            "an increment was lost"
        );
        assert_eq!(mm.read_u64(TO + PAGE_SIZE).unwrap(), 7);
        assert!(mm.read_u64(A).is_err(), "the old range is unmapped");
        checked(&sys);
        drop(mm);
        checked(&sys);
        all_frames_free(&sys);
    });
}

#[test]
fn shuttle_mremap_races_cpu_increments_and_device_exclusive_6_15() {
    mremap_races_cpu_and_device_in(Profile::linux_6_15());
}

#[test]
fn shuttle_mremap_races_cpu_increments_and_device_exclusive_5_14() {
    mremap_races_cpu_and_device_in(Profile::linux_5_14());
}
