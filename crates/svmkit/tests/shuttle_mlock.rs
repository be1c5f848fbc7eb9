//! Schedule exploration of mlock over a range a CPU increments in and a driver makes
//! device-exclusive (run with `cargo test -p svmkit --features shuttle --test
//! shuttle_mlock`).
#![cfg(feature = "shuttle")]

use svmkit::sync::thread;
use svmkit::{Errno, PAGE_SIZE, Profile};

mod common;
use common::sched::{
    all_frames_free, explored, explored_mapping, spawn_cpu_increments, spawn_exclusive_then_release,
};
use common::{BASE as A, checked, folio_at, va};

const INCREMENTS: u64 = 3;

fn mlock_races_cpu_and_device_in(profile: Profile) {
    explored(300, move || {
        let (sys, mm) = explored_mapping(profile, 64, 2 * PAGE_SIZE);
        sys.mem().swapon(8).unwrap();
        mm.write_u64(A, 0).unwrap();
        let cpu = spawn_cpu_increments(&mm, INCREMENTS);
        let driver = spawn_exclusive_then_release(&mm);
        let locker = {
            let mm = mm.clone();
            thread::spawn(move || {
                // Linux 6.12 do_mlock(): the range is mapped, the populate restores an
                // entry it meets (a write GUP), nothing fails.
                assert_eq!(mm.mlock(A, 2 * PAGE_SIZE), Ok(()));
            })
        };
        cpu.join().unwrap();
        driver.join().unwrap();
        locker.join().unwrap();
        checked(&sys);
        assert_eq!(mm.read_u64(A).unwrap(), INCREMENTS, "an increment was lost");
        // Page 1 only the populate touched: present, writable and mlocked.
        let p1 = mm.pte_get_lockless(va(A + PAGE_SIZE)).present();
        assert!(
            p1.is_some_and(|p| p.is_write()),
            "page 1 not populated: {p1:?}"
        );
        assert!(
            sys.mem()
                .folio_test_mlocked(folio_at(&sys, &mm, A + PAGE_SIZE))
        );
        // Page 0 is present again (the read restored any entry). Whatever the order,
        // reclaim does not take it, and after it looked both pages are mlocked:
        // 5.14's restore re-mlocked, 6.15's missed mlock is restored by
        // try_to_unmap_one()'s VM_LOCKED check (tests/mlock.rs; derived).
        let f0 = folio_at(&sys, &mm, A);
        assert_eq!(sys.mem().reclaim_folio(f0), Err(Errno::EAGAIN));
        assert!(sys.mem().folio_test_mlocked(f0));
        assert_eq!(sys.mem().nr_mlock(), 2);
        checked(&sys);
        drop(mm);
        assert_eq!(sys.mem().nr_mlock(), 0);
        checked(&sys);
        all_frames_free(&sys);
    });
}

#[test]
fn shuttle_mlock_races_cpu_increments_and_device_exclusive_6_15() {
    mlock_races_cpu_and_device_in(Profile::linux_6_15());
}

#[test]
fn shuttle_mlock_races_cpu_increments_and_device_exclusive_5_14() {
    mlock_races_cpu_and_device_in(Profile::linux_5_14());
}
