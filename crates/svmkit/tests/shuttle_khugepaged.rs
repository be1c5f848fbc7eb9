//! Schedule exploration of MADV_COLLAPSE over a 2 MiB range a CPU increments in and a
//! driver makes device-exclusive (run with
//! `cargo test -p svmkit --features shuttle --test shuttle_khugepaged`).
#![cfg(feature = "shuttle")]

use std::sync::atomic::{AtomicUsize, Ordering};

use svmkit::mm::Advice;
use svmkit::sync::thread;
use svmkit::{Errno, Profile};

mod common;
use common::sched::{
    THP_FRAMES, all_frames_free, explored, explored_mapping, spawn_cpu_increments,
    spawn_exclusive_then_release,
};
use common::{BASE as A, P, checked};
use svmkit::mm::PMD_SIZE;

const INCREMENTS: u64 = 3;

/// What MADV_COLLAPSE may answer under `profile`, by where the race leaves the range
/// (madvise_collapse_errno(), mm/khugepaged.c): `Ok`; `EAGAIN` when the driver holds
/// the folio locked or referenced (SCAN_PAGE_LOCK, SCAN_PAGE_COUNT); `EINVAL` when an
/// entry stops the scan or the isolation (SCAN_PTE_NON_PRESENT: every era when the
/// driver converts between the swap-in and the isolation, and 6.19+ whenever the
/// scan meets an entry). Derived.
fn allowed(r: Result<(), Errno>) -> bool {
    matches!(r, Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINVAL))
}

fn collapse_races_cpu_and_device_in(profile: Profile) {
    // Schedules whose collapse succeeded: the race must reach the collapse itself,
    // not only its refusals.
    let collapsed = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = collapsed.clone();
    explored(200, move || {
        let (sys, mm) = explored_mapping(profile, THP_FRAMES, PMD_SIZE);
        mm.write_u64(A, 0).unwrap();
        mm.write_u64(A + P, 7).unwrap();
        let cpu = spawn_cpu_increments(&mm, INCREMENTS);
        let driver = spawn_exclusive_then_release(&mm);
        let collapse = {
            let mm = mm.clone();
            thread::spawn(move || mm.madvise(A, PMD_SIZE, Advice::Collapse))
        };
        cpu.join().unwrap();
        driver.join().unwrap();
        let r = collapse.join().unwrap();
        assert!(allowed(r), "{}: MADV_COLLAPSE answered {r:?}", profile.name);
        if r.is_ok() {
            seen.fetch_add(1, Ordering::Relaxed);
        }
        assert_eq!(mm.read_u64(A).unwrap(), INCREMENTS, "an increment was lost");
        assert_eq!(mm.read_u64(A + P).unwrap(), 7, "page 1's data was lost");
        assert_eq!(mm.read_u64(A + 100 * P).unwrap(), 0);
        checked(&sys);
        drop(mm);
        checked(&sys);
        all_frames_free(&sys);
    });
    assert!(
        collapsed.load(Ordering::Relaxed) > 0,
        "no schedule collapsed"
    );
}

#[test]
fn shuttle_khugepaged_collapse_races_cpu_increments_and_device_exclusive_5_14() {
    collapse_races_cpu_and_device_in(Profile::linux_5_14());
}

#[test]
fn shuttle_khugepaged_collapse_races_cpu_increments_and_device_exclusive_6_15() {
    collapse_races_cpu_and_device_in(Profile::linux_6_15());
}

#[test]
fn shuttle_khugepaged_collapse_races_cpu_increments_and_device_exclusive_7_1() {
    collapse_races_cpu_and_device_in(Profile::linux_7_1());
}
