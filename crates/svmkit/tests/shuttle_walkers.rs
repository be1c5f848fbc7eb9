//! Schedule exploration of the accessed-bit rmap walkers (page_idle, DAMON's
//! physical-address mkold/young, folio_referenced) racing CPU increments and a driver
//! making the page device-exclusive (run with
//! `cargo test -p svmkit --features shuttle --test shuttle_walkers`).
#![cfg(feature = "shuttle")]

use svmkit::mm::mmu_notifier::Owner;
use svmkit::sync::thread;
use svmkit::task::Task;
use svmkit::{PAGE_SIZE, Profile};

mod common;
use common::sched::{all_frames_free, explored, explored_mapping};
use common::{BASE as A, checked, va};

const INCREMENTS: u64 = 3;

fn walkers_race_cpu_and_device_in(profile: Profile) {
    explored(300, move || {
        let (sys, mm) = explored_mapping(profile, 48, 2 * PAGE_SIZE);
        mm.write_u64(A, 0).unwrap();
        let pfn = mm.translate(va(A)).unwrap();
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
        let walker = {
            let sys = sys.clone();
            thread::spawn(move || {
                let mem = sys.mem();
                let first = pfn.raw() & !63;
                let bit = 1u64 << (pfn.raw() - first);
                // Derived: the bitmap calls fail only for bad offsets.
                assert_eq!(mem.page_idle_bitmap_write(first, &[bit]), Ok(1));
                mem.damon_pa_mkold(pfn);
                let _ = mem.damon_pa_young(pfn);
                let _ = mem.page_folio(pfn).map(|f| mem.folio_referenced(f));
                assert!(mem.page_idle_bitmap_read(first, 1).is_ok());
            })
        };
        cpu.join().unwrap();
        driver.join().unwrap();
        walker.join().unwrap();
        // Derived: aging only clears accessed bits; the PTE still maps the page the
        // increments went to, and none was lost.
        assert_eq!(mm.read_u64(A).unwrap(), INCREMENTS, "an increment was lost");
        assert_eq!(mm.translate(va(A)), Some(pfn));
        checked(&sys);
        drop(mm);
        checked(&sys);
        all_frames_free(&sys);
    });
}

#[test]
fn shuttle_walkers_race_cpu_increments_and_device_exclusive_6_15() {
    walkers_race_cpu_and_device_in(Profile::linux_6_15());
}

#[test]
fn shuttle_walkers_race_cpu_increments_and_device_exclusive_5_14() {
    walkers_race_cpu_and_device_in(Profile::linux_5_14());
}
