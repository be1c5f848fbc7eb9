//! Schedule exploration of a process's exit racing its devices (issue 14 item 5; run
//! with `cargo test -p svmkit --features shuttle --test shuttle_device_exit`).
//!
//! svm_atomic (nouveau's pattern): one thread runs a device atomic, the other drops
//! the process's last user (exit). nouveau's whole-mm notifier has no `release` and
//! exit unhooks it before the unmap, so an atomic that completed keeps its entry, for
//! a freed frame, until the driver is closed: the finding documented in
//! `svm_atomic`'s module docs (derived from the Linux sources). The checker must then
//! flag exactly that stale entry (and, if the atomic's replay ran on the freed frame,
//! that stale access), and nothing else; an atomic that lost the race maps nothing
//! and the checker passes.
//!
//! dmirror (test_hmm): its interval notifier over the whole address space gets exit's
//! `Release` and `Unmap` and erases its table, so the checker never has anything to
//! flag, whatever the interleaving.
#![cfg(feature = "shuttle")]

use svmkit::device::DevRights;
use svmkit::device::dmirror::Dmirror;
use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::mm::MmUser;
use svmkit::sync::{Arc, thread};
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Profile, System};

mod common;
use common::BASE as A;
use common::sched::*;

/// The process and its page, 41 written at its start.
fn setup(profile: Profile) -> (Arc<System>, MmUser) {
    explored_page(profile, 48, 41)
}

fn exit_vs_device_atomic(profile: Profile) {
    let (sys, mm) = setup(profile);
    let gpu = Arc::new(SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 3).unwrap());
    let device = {
        let gpu = gpu.clone();
        thread::spawn(move || gpu.atomic_fetch_add(&Task::new("gpu"), A, 1))
    };
    let exit = thread::spawn(move || drop(mm));
    let r = device.join().unwrap();
    exit.join().unwrap();
    // 41: written before either thread ran. An atomic that lost the race to the exit
    // fails its fault (mmget_not_zero, EINVAL); a retry forced by the exit's Release
    // of its interval notifier ends the same way on the next pass.
    assert!(matches!(r, Ok(41) | Err(Errno::EINVAL)), "atomic: {r:?}");
    let entry = gpu.device().lock().get(A);
    // Derived (nouveau_mn_ops has no .release): a completed atomic's entry survives
    // the exit; a failed one programmed nothing.
    assert_eq!(entry.is_some(), r.is_ok(), "atomic {r:?}, entry {entry:?}");
    assert!(
        sys.mem().bad_pages().is_empty(),
        "{:?}",
        sys.mem().bad_pages()
    );
    match (entry, sys.check()) {
        (None, Ok(())) => {}
        (None, Err(e)) => panic!("no device entry, yet: {e}"),
        (Some(e), Ok(())) => panic!("the stale entry {e:?} went unflagged"),
        (Some(e), Err(err)) => {
            assert!(e.rights.contains(DevRights::ATOMIC));
            let mut entry_flagged = false;
            for v in &err.violations {
                assert_eq!(
                    (v.addr.map(|a| a.raw()), v.pfn),
                    (Some(A), Some(e.pfn)),
                    "a violation other than the stale entry: {err}"
                );
                if v.what.contains("stale device entry") {
                    entry_flagged = true;
                } else {
                    assert!(v.what.contains("stale device access"), "{err}");
                }
            }
            assert!(entry_flagged, "{err}");
            // At most the one replay ran on the freed frame.
            assert!(sys.mem().stale_device_accesses().len() <= 1, "{err}");
        }
    }
    // File close: the table goes; what remains is only the record of a stale access.
    drop(gpu);
    sys.mem().take_stale_device_accesses();
    if let Err(e) = sys.check() {
        panic!("after close: {e}");
    }
    all_frames_free(&sys);
}

#[test]
fn shuttle_exit_races_a_device_atomic_6_15() {
    explored(ITERS, || exit_vs_device_atomic(Profile::linux_6_15()));
}

#[test]
fn shuttle_exit_races_a_device_atomic_5_14() {
    // The 2021 design with nouveau's 2025 retry fix: the pre-fix driver
    // self-deadlocks on any retry (shuttle_leak_on_retry_*), and the exit's Release
    // can cause one.
    explored(ITERS, || exit_vs_device_atomic(linux_5_14_fixed_driver()));
}

/// dmirror's EXCLUSIVE racing the exit: the ioctl holds a user for its conversion, so
/// the exit's teardown runs when the later of the two drops it, possibly inside the
/// ioctl before its read-back (which then finds the table erased: `ENOENT`, as
/// Linux's `dmirror_do_read()` after the `mmput()`). Either way the exit erases the
/// table and the checker has nothing to flag.
#[test]
fn shuttle_exit_races_a_dmirror_exclusive_6_15() {
    explored(ITERS, || {
        let (sys, mm) = setup(Profile::linux_6_15());
        let dm = Arc::new(Dmirror::open(&mm).unwrap());
        let driver = {
            let dm = dm.clone();
            thread::spawn(move || {
                let mut buf = vec![0u8; PAGE_SIZE as usize];
                let r = dmirror_exclusive(&dm, &mut buf);
                (r, buf[0])
            })
        };
        let exit = thread::spawn(move || drop(mm));
        let (r, first) = driver.join().unwrap();
        exit.join().unwrap();
        // Ok with the data read back (41, written above); EINVAL if the exit came
        // first; ENOENT if the teardown ran between conversion and read-back.
        match r {
            Ok(()) => assert_eq!(first, 41),
            Err(Errno::EINVAL | Errno::ENOENT) => {}
            Err(e) => panic!("EXCLUSIVE: {e}"),
        }
        assert!(dm.device().lock().is_empty(), "the exit erased the mirror");
        if let Err(e) = sys.check() {
            panic!("dmirror open after the exit: {e}");
        }
        drop(dm);
        all_frames_free(&sys);
    });
}
