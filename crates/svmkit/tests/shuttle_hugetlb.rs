//! Schedule exploration of hugetlb mappings: after a fork, the parent and the child
//! both increment a counter in a shared hugetlb folio (racing COW copies and reuse,
//! `hugetlb_wp()`), while the parent faults in and unmaps a second huge page and, under
//! 6.15, a driver asks for the counter's page device-exclusive (run with
//! `cargo test -p svmkit --features shuttle --test shuttle_hugetlb`).
#![cfg(feature = "shuttle")]

use svmkit::mm::MapFlags;
use svmkit::mm::mmu_notifier::Owner;
use svmkit::sync::thread;
use svmkit::task::Task;
use svmkit::{Errno, FaultKind, Profile};

mod common;
use common::sched::{all_frames_free, check_clean, explored, explored_system};
use common::{BASE as A, FIXED, RW};

/// One huge page.
const H: u64 = 2 << 20;
/// Order-9 blocks for the folio, two COW copies and the second huge page, plus tables.
const FRAMES: u64 = 2600;
const PARENT_INCREMENTS: u64 = 3;
const CHILD_INCREMENTS: u64 = 2;

fn hugetlb_cow_races_in(profile: Profile) {
    explored(100, move || {
        let sys = explored_system(profile, FRAMES);
        let mm = sys.create_mm().unwrap();
        mm.mmap(A, 2 * H, RW, FIXED | MapFlags::HUGETLB).unwrap();
        mm.write_u64(A, 0).unwrap();
        let child = sys.fork(&mm).unwrap();
        let parent_cpu = {
            let mm = mm.clone();
            thread::spawn(move || {
                // The second huge page may be gone already (munmap below).
                match mm.write_u64(A + H, 1) {
                    Ok(()) => {}
                    Err(e) => assert_eq!(e.kind, FaultKind::Unmapped),
                }
                for _ in 0..PARENT_INCREMENTS {
                    mm.fetch_add_u64(A, 1).unwrap();
                }
            })
        };
        let child_cpu = {
            let child = child.clone();
            thread::spawn(move || {
                for _ in 0..CHILD_INCREMENTS {
                    child.fetch_add_u64(A, 1).unwrap();
                }
            })
        };
        let unmapper = {
            let mm = mm.clone();
            thread::spawn(move || assert_eq!(mm.munmap(A + H, H), Ok(())))
        };
        // Under 6.15 GUP refuses FOLL_SPLIT_PMD on hugetlb (spec 4.12); the 5.14
        // conversion of a hugetlb PMD is the flaw hugetlb.rs shows without a race.
        let driver = (!profile.convert_via_rmap_walk_whole_folio).then(|| {
            let mm = mm.clone();
            thread::spawn(move || {
                let (owner, task) = (Owner::new(), Task::new("driver"));
                let mut g = mm.mmap_read_lock();
                let r = mm.make_device_exclusive(&mut g, A, Some(owner), &task);
                assert_eq!(r.err(), Some(Errno::EOPNOTSUPP));
            })
        });
        parent_cpu.join().unwrap();
        child_cpu.join().unwrap();
        unmapper.join().unwrap();
        if let Some(d) = driver {
            d.join().unwrap();
        }
        // Derived: COW keeps both sides' increments apart and loses none.
        assert_eq!(
            mm.read_u64(A).unwrap(),
            PARENT_INCREMENTS,
            "{}",
            profile.name
        );
        assert_eq!(child.read_u64(A).unwrap(), CHILD_INCREMENTS);
        assert_eq!(mm.read_u64(A + H).unwrap_err().kind, FaultKind::Unmapped);
        check_clean(&sys);
        drop(child);
        check_clean(&sys);
        drop(mm);
        check_clean(&sys);
        all_frames_free(&sys);
    });
}

#[test]
fn shuttle_hugetlb_cow_fault_and_munmap_race_cpu_writers_6_15() {
    hugetlb_cow_races_in(Profile::linux_6_15());
}

#[test]
fn shuttle_hugetlb_cow_fault_and_munmap_race_cpu_writers_5_14() {
    hugetlb_cow_races_in(Profile::linux_5_14());
}
