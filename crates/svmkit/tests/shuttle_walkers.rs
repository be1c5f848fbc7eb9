//! Schedule exploration of the rmap walkers that meet device-exclusive entries: the
//! accessed-bit ones (page_idle, DAMON's physical-address mkold/young,
//! folio_referenced) racing CPU increments and a driver making the page
//! device-exclusive, and (6.15) migration of a PTE-mapped THP with an entry racing
//! both (run with `cargo test -p svmkit --features shuttle --test shuttle_walkers`).
#![cfg(feature = "shuttle")]

use svmkit::mm::mmu_notifier::Owner;
use svmkit::sync::thread;
use svmkit::task::Task;
use svmkit::{PAGE_SIZE, Profile};

mod common;
use common::sched::{
    all_frames_free, explored, explored_mapping, explored_system, map_thp, spawn_cpu_increments,
    spawn_exclusive_then_release,
};
use common::{BASE as A, checked, va};

const INCREMENTS: u64 = 3;

fn walkers_race_cpu_and_device_in(profile: Profile) {
    explored(300, move || {
        let (sys, mm) = explored_mapping(profile, 48, 2 * PAGE_SIZE);
        mm.write_u64(A, 0).unwrap();
        let pfn = mm.translate(va(A)).unwrap();
        let cpu = spawn_cpu_increments(&mm, INCREMENTS);
        let driver = spawn_exclusive_then_release(&mm);
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
                assert_eq!(mem.page_idle_bitmap_read(first, 1).map(|w| w.len()), Ok(1));
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

/// 6.15: migrating a PTE-mapped THP whose page 0 is an entry, while the CPU
/// increments pages 0 and 1 (restoring page 0's entry) and a driver converts page 1.
/// Derived (spec 4.6, fixes v2 11/17): whatever the order, no increment is lost, the
/// checker is clean and every frame comes back. The 5.14 walker has no explored
/// variant: its migration leaves page 0 a migration entry for a frame outside the
/// folio (spec 8 item 13, `excl_migrate_thp_entry_garbage_subpage_*` in migrate.rs),
/// and any later access to page 0 waits on it for ever.
#[test]
fn shuttle_migrate_thp_with_an_entry_races_cpu_and_device_6_15() {
    explored(100, || {
        // Two order-9 blocks: the THP and its migration target.
        let sys = explored_system(Profile::linux_6_15(), 1700);
        let mm = sys.create_mm().unwrap();
        map_thp(&mm);
        mm.write_u64(A, 0).unwrap();
        let thp = sys.mem().page_folio(mm.translate(va(A)).unwrap()).unwrap();
        assert_eq!(thp.order(), 9);
        {
            let mut g = mm.mmap_read_lock();
            drop(
                mm.make_device_exclusive(&mut g, A, None, &Task::new("drv"))
                    .unwrap(),
            );
        }
        let migrator = {
            let sys = sys.clone();
            thread::spawn(move || {
                let _ = sys.mem().migrate_folio(thp);
            })
        };
        let cpu = {
            let mm = mm.clone();
            thread::spawn(move || {
                mm.fetch_add_u64(A, 1).unwrap();
                mm.fetch_add_u64(A + PAGE_SIZE, 1).unwrap();
                mm.fetch_add_u64(A, 1).unwrap();
            })
        };
        let driver = {
            let mm = mm.clone();
            thread::spawn(move || {
                let (owner, task) = (Owner::new(), Task::new("driver"));
                let mut g = mm.mmap_read_lock();
                let excl = mm.make_device_exclusive(&mut g, A + PAGE_SIZE, Some(owner), &task);
                drop(g);
                drop(excl);
            })
        };
        migrator.join().unwrap();
        cpu.join().unwrap();
        driver.join().unwrap();
        assert_eq!(
            mm.read_u64(A).unwrap(),
            2,
            "an increment of page 0 was lost"
        );
        assert_eq!(
            mm.read_u64(A + PAGE_SIZE).unwrap(),
            1,
            "page 1's increment was lost"
        );
        checked(&sys);
        drop(mm);
        checked(&sys);
        all_frames_free(&sys);
    });
}
