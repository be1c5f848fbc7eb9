//! Schedule exploration of faults racing munmap and MADV_DONTNEED (run with
//! `cargo test -p svmkit --features shuttle shuttle`).
#![cfg(feature = "shuttle")]

use svmkit::mm::{Advice, MmUser};
use svmkit::sync::{Arc, thread};
use svmkit::{FaultKind, PAGE_SIZE, Profile, System};

mod common;
use common::sched::{all_frames_free, explored, explored_mapping};
use common::{BASE as A, checked};

/// A small system whose process maps `pages` pages at `A`, none touched yet.
fn small_mapping(pages: u64) -> (Arc<System>, MmUser) {
    explored_mapping(Profile::linux_6_15(), 32, pages * PAGE_SIZE)
}

#[test]
fn shuttle_read_and_write_faults_race_munmap_of_the_same_fresh_page() {
    explored(600, || {
        let (sys, mm) = small_mapping(1);
        let reader = {
            let mm = mm.clone();
            thread::spawn(move || mm.read_u64(A))
        };
        let writer = {
            let mm = mm.clone();
            thread::spawn(move || mm.write_u64(A, 7))
        };
        let unmapper = {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(A, PAGE_SIZE))
        };
        let read = reader.join().unwrap();
        let wrote = writer.join().unwrap();
        assert_eq!(unmapper.join().unwrap(), Ok(()));
        match read {
            Ok(v) => assert!(v == 0 || v == 7, "read {v}"),
            Err(e) => assert_eq!(e.kind, FaultKind::Unmapped),
        }
        if read == Ok(7) {
            assert_eq!(wrote, Ok(()), "saw a write that did not happen");
        }
        if let Err(e) = wrote {
            assert_eq!(e.kind, FaultKind::Unmapped);
        }
        // After the munmap everything is gone again.
        assert_eq!(mm.read_u64(A).unwrap_err().kind, FaultKind::Unmapped);
        checked(&sys);
        drop(mm);
        checked(&sys);
        all_frames_free(&sys);
    });
}

#[test]
fn shuttle_fetch_add_faults_race_dontneed_without_losing_the_mapping() {
    // DONTNEED runs under the mmap lock in read mode, concurrently with faults: the
    // PTL is what keeps them apart. Each increment either lands before the zap (and is
    // wiped) or after it (and survives); nothing else may happen.
    explored(600, || {
        let (sys, mm) = small_mapping(2);
        let adders: Vec<_> = (0..2)
            .map(|_| {
                let mm = mm.clone();
                thread::spawn(move || mm.fetch_add_u64(A, 1).unwrap())
            })
            .collect();
        let zapper = {
            let mm = mm.clone();
            thread::spawn(move || mm.madvise(A, PAGE_SIZE, Advice::DontNeed))
        };
        let mut olds: Vec<u64> = adders.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(zapper.join().unwrap(), Ok(()));
        let end = mm.read_u64(A).unwrap();
        olds.sort_unstable();
        // inc inc zap -> [0,1], 0 | zap inc inc -> [0,1], 2 | inc zap inc -> [0,0], 1
        let ok = matches!(
            (olds.as_slice(), end),
            ([0, 1], 0) | ([0, 1], 2) | ([0, 0], 1)
        );
        assert!(ok, "increments returned {olds:?}, final value {end}");
        checked(&sys);
    });
}
