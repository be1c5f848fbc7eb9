//! Schedule exploration of THP splits racing CPU accesses (run with
//! `cargo test -p svmkit --features shuttle shuttle`).
#![cfg(feature = "shuttle")]

use svmkit::Profile;
use svmkit::mm::{Advice, Prot};
use svmkit::sync::thread;

mod common;
use common::sched::{THP_FRAMES, all_frames_free, explored, explored_system, map_thp};
use common::{BASE as H, P, checked, va};

#[test]
fn shuttle_thp_write_faults_race_a_split() {
    explored(500, || {
        let sys = explored_system(Profile::linux_6_15(), THP_FRAMES);
        let mm = sys.create_mm().unwrap();
        map_thp(&mm);
        mm.write_u64(H, 1).unwrap();
        assert!(mm.pmd_is_huge(va(H)));
        let adder = {
            let mm = mm.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    mm.fetch_add_u64(H + 3 * P, 1).unwrap();
                }
            })
        };
        let splitter = {
            let mm = mm.clone();
            // Partial mprotect: the huge PMD is split, then one PTE made read-only.
            thread::spawn(move || mm.mprotect(H + 7 * P, P, Prot::READ).unwrap())
        };
        let zapper = {
            let mm = mm.clone();
            thread::spawn(move || mm.madvise(H + 9 * P, P, Advice::DontNeed).unwrap())
        };
        adder.join().unwrap();
        splitter.join().unwrap();
        zapper.join().unwrap();
        assert_eq!(mm.read_u64(H + 3 * P).unwrap(), 2, "an increment was lost");
        assert_eq!(mm.read_u64(H).unwrap(), 1);
        assert!(!mm.pmd_is_huge(va(H)));
        assert_eq!(
            mm.write_u64(H + 7 * P, 1).unwrap_err().kind,
            svmkit::FaultKind::Protection
        );
        checked(&sys);
        drop(mm);
        checked(&sys);
        all_frames_free(&sys);
    });
}
