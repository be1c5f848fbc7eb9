//! Schedule exploration of device-exclusive conversion racing CPU atomics and a
//! neighbouring munmap (run with `cargo test -p svmkit --features shuttle shuttle`).
#![cfg(feature = "shuttle")]

use svmkit::mm::mmu_notifier::Owner;
use svmkit::sync::thread;
use svmkit::task::Task;
use svmkit::{PAGE_SIZE, Profile};

mod common;
use common::sched::{all_frames_free, explored, explored_mapping};
use common::{BASE as A, checked};

const INCREMENTS: u64 = 3;

#[test]
fn shuttle_exclusive_conversions_never_lose_a_cpu_increment() {
    explored(600, || {
        let (sys, mm) = explored_mapping(Profile::linux_6_15(), 48, 2 * PAGE_SIZE);
        mm.write_u64(A, 0).unwrap();
        mm.write_u64(A + PAGE_SIZE, 0).unwrap();
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
                for _ in 0..2 {
                    let mut g = mm.mmap_read_lock();
                    let excl = mm
                        .make_device_exclusive(&mut g, A, Some(owner), &task)
                        .unwrap();
                    drop(g);
                    // The device would program its mapping here, under the folio lock.
                    svmkit::sync::yield_now();
                    drop(excl);
                }
            })
        };
        let unmapper = {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(A + PAGE_SIZE, PAGE_SIZE).unwrap())
        };
        cpu.join().unwrap();
        driver.join().unwrap();
        unmapper.join().unwrap();
        assert_eq!(mm.read_u64(A).unwrap(), INCREMENTS, "an increment was lost");
        checked(&sys);
        drop(mm);
        checked(&sys);
        all_frames_free(&sys);
    });
}
