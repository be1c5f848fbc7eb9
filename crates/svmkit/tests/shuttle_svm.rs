//! Schedule exploration of the GPU-style atomic driver (run with
//! `cargo test -p svmkit --features shuttle shuttle`): the exclusivity invariant,
//! lost updates, two devices, and the pre-2025 retry leak.
#![cfg(feature = "shuttle")]

use std::sync::atomic::{AtomicUsize, Ordering};

use svmkit::check::{ExploreConfig, explore};
use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::mm::Advice;
use svmkit::sync::{Arc, thread};
use svmkit::task::Task;
use svmkit::{Errno, Profile, RestoreEvent};

#[path = "common/explored.rs"]
mod explored;
use explored::*;

#[test]
fn shuttle_svm_exclusivity_invariant_holds() {
    let report = explore(&ExploreConfig::new(500), || {
        exclusivity_scenario(Profile::linux_6_15(), SvmFlaws::default())
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 1000);
}

/// spec 10.1: with Linux 7.1's two-pass interval notifiers (the first pass sets the
/// sequence, the second takes the device's entries away after every first pass), the
/// exclusivity invariant and the counter hold in every explored schedule (derived).
#[test]
fn shuttle_svm_exclusivity_invariant_holds_with_two_pass_notifiers() {
    let report = explore(&ExploreConfig::new(500), || {
        exclusivity_scenario_with(Profile::linux_6_15(), SvmFlaws::default(), true)
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 1000);
}

#[test]
fn shuttle_svm_exclusivity_broken_by_an_owner_blind_filter_and_an_exclusive_restore() {
    // The 5.14 restore event (Exclusive, owner none) against a filter that ignores
    // the owner: the restore is swallowed and the device keeps a stale atomic entry.
    let profile = Profile {
        restore_event: RestoreEvent::ExclusiveNoOwner,
        ..Profile::linux_6_15()
    };
    owner_blind_filter_goes_stale(
        profile,
        "the explorer must find the stale device mapping",
        200,
    );
}

/// A driver whose filter ignores the owner, under `stale` (a profile with the 5.14
/// restore event): the explorer must find it losing exclusivity (`why` if it does
/// not). The same driver with 6.15's Clear restore is revoked correctly (`clean_iters`
/// schedules per scheduler).
fn owner_blind_filter_goes_stale(stale: Profile, why: &str, clean_iters: usize) {
    let flaws = SvmFlaws {
        filter_ignores_owner: true,
        ..SvmFlaws::default()
    };
    let failure = explore(&ExploreConfig::new(500), move || {
        exclusivity_scenario(stale, flaws)
    })
    .expect_err(why);
    assert!(
        failure.message.contains("exclusivity violated") || failure.message.contains("lost"),
        "{failure}"
    );
    explore(&ExploreConfig::new(clean_iters), move || {
        exclusivity_scenario(Profile::linux_6_15(), flaws)
    })
    .unwrap_or_else(|f| panic!("{f}"));
}

static SCHEDULES: AtomicUsize = AtomicUsize::new(0);

/// CPU threads and the device increment one counter.
fn counter_scenario(flaws: SvmFlaws) {
    SCHEDULES.fetch_add(1, Ordering::Relaxed);
    let (sys, mm) = setup(Profile::linux_6_15());
    let gpu = Arc::new(SvmAtomic::new(&mm, "gpu", flaws, 1000).unwrap());
    let device = {
        let gpu = gpu.clone();
        thread::spawn(move || {
            let task = Task::new("gpu");
            for _ in 0..2 {
                gpu.atomic_fetch_add(&task, A, 1).unwrap();
            }
        })
    };
    let cpu = {
        let mm = mm.clone();
        thread::spawn(move || {
            for _ in 0..2 {
                mm.fetch_add_u64(A, 1).unwrap();
            }
        })
    };
    device.join().unwrap();
    cpu.join().unwrap();
    assert_eq!(mm.read_u64(A).unwrap(), 4, "lost update");
    drop(gpu);
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}

#[test]
fn shuttle_svm_lost_update_never_with_exclusive_atomics() {
    let report = explore(&ExploreConfig::new(500), || {
        counter_scenario(SvmFlaws::default())
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 1000);
}

#[test]
fn shuttle_svm_lost_update_found_with_atomics_through_a_write_entry() {
    SCHEDULES.store(0, Ordering::Relaxed);
    let flaws = SvmFlaws {
        atomics_through_write_entry: true,
        ..SvmFlaws::default()
    };
    let failure = explore(&ExploreConfig::new(1000), move || counter_scenario(flaws))
        .expect_err("a read-modify-write through a plain write entry must lose updates");
    println!(
        "lost update found after {} schedule(s)",
        SCHEDULES.load(Ordering::Relaxed)
    );
    assert!(failure.message.contains("lost update"), "{failure}");
}

#[test]
fn shuttle_two_devices_contend_and_values_stay_exact() {
    let report = explore(&ExploreConfig::new(500), || {
        let (sys, mm) = setup(Profile::linux_6_15());
        let a = Arc::new(SvmAtomic::new(&mm, "gpu-a", SvmFlaws::default(), 3).unwrap());
        let b = Arc::new(SvmAtomic::new(&mm, "gpu-b", SvmFlaws::default(), 3).unwrap());
        let run = |gpu: Arc<SvmAtomic>, delta: u64| {
            thread::spawn(move || {
                let task = Task::new("gpu");
                match gpu.atomic_fetch_add(&task, A, delta) {
                    Ok(_) => delta,
                    // Starvation (see tests/svm_atomic.rs): the bound ends the fault.
                    Err(Errno::EBUSY) => 0,
                    Err(e) => panic!("{e}"),
                }
            })
        };
        let ta = run(a.clone(), 1);
        let tb = run(b.clone(), 10);
        let cpu = {
            let mm = mm.clone();
            thread::spawn(move || mm.fetch_add_u64(A, 100).unwrap())
        };
        let done = ta.join().unwrap() + tb.join().unwrap();
        cpu.join().unwrap();
        assert_eq!(mm.read_u64(A).unwrap(), 100 + done, "lost update");
        check_exclusivity(&a, &mm);
        check_exclusivity(&b, &mm);
        drop((a, b));
        if let Err(e) = sys.check() {
            panic!("{e}");
        }
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 1000);
}

#[test]
fn shuttle_leak_on_retry_self_deadlocks_when_the_entry_stays() {
    // Pre-2025 nouveau (spec 8 item 22, 9.6): a retry keeps the folio locked. If the
    // entry is still in place, the next pass's GUP restores it and blocks on the
    // folio lock this very thread holds: a self-deadlock (uninterruptible before 6.5).
    let flaws = SvmFlaws {
        filter_own_exclusive: false,
        leak_folio_on_retry: true,
        ..SvmFlaws::default()
    };
    let failure = explore(&ExploreConfig::new(50), move || {
        let (_sys, mm) = setup(Profile::linux_6_15());
        let gpu = SvmAtomic::new(&mm, "gpu", flaws, 4).unwrap();
        let _ = gpu.atomic_fetch_add(&Task::new("gpu"), A, 1);
    })
    .expect_err("the leaked folio lock must deadlock the next pass");
    assert!(
        failure.message.to_lowercase().contains("deadlock"),
        "{failure}"
    );
}

#[test]
fn shuttle_leak_on_retry_leaks_or_deadlocks_when_a_zap_causes_the_retry() {
    // Spec 9.6: which outcome the pre-2025 retry leak has depends on what caused the
    // retry. A zap (MADV_DONTNEED) that removed the entry before the next pass: that
    // pass converts a new page and the old folio stays locked and referenced forever
    // (a leak). A zap whose invalidation ran but whose PTE clear had not happened yet
    // when the next pass's GUP met the entry: the restore blocks on the folio lock
    // this thread still holds (a self-deadlock). Explore with several seeds until both
    // are seen.
    let flaws = SvmFlaws {
        leak_folio_on_retry: true,
        ..SvmFlaws::default()
    };
    let scenario = move || {
        let (sys, mm) = setup(Profile::linux_6_15());
        let gpu = Arc::new(SvmAtomic::new(&mm, "gpu", flaws, 8).unwrap());
        let device = {
            let gpu = gpu.clone();
            thread::spawn(move || gpu.atomic_fetch_add(&Task::new("gpu"), A, 1))
        };
        let zapper = {
            let mm = mm.clone();
            thread::spawn(move || mm.madvise(A, P, Advice::DontNeed).unwrap())
        };
        let r = device.join().unwrap();
        zapper.join().unwrap();
        assert_eq!(r.map(|_| ()), Ok(()));
        let leaked = gpu.stats().leaked.load(Ordering::Relaxed);
        drop(gpu);
        if let Err(e) = sys.check() {
            panic!("leaked {leaked} folio(s) on retry: {e}");
        }
    };
    let (mut leak, mut deadlock, mut schedules) = (false, false, 0);
    for seed in 0..64u64 {
        let mut config = ExploreConfig::new(200);
        config.seed = 0x1eaf_0000 + seed;
        schedules += config.total_iterations();
        match explore(&config, scenario) {
            Ok(_) => {}
            Err(f) if f.message.contains("leaked 1 folio") => leak = true,
            Err(f) if f.message.to_lowercase().contains("deadlock") => deadlock = true,
            Err(f) => panic!("unexpected failure: {f}"),
        }
        if leak && deadlock {
            break;
        }
    }
    println!("leak-on-retry: leak {leak}, self-deadlock {deadlock}, within {schedules} schedules");
    assert!(leak, "no schedule leaked the folio");
    assert!(deadlock, "no schedule deadlocked");
}

#[test]
fn shuttle_e1_filter_owner_blind_driver_goes_stale_under_5_14_not_6_15() {
    // The same owner-blind driver under each era's restore event. svm_atomic's
    // pre-2025 retry leak is turned off here to isolate the filter (spec 6.4).
    let e1 = Profile {
        svm_atomic_unlock_on_retry: true,
        ..Profile::linux_5_14()
    };
    owner_blind_filter_goes_stale(e1, "under 5.14 the Exclusive restore is swallowed", 300);
}

/// Spec 8 item 5: before 6.3 the restore did not take a folio reference before
/// locking. A zap racing the restore (MADV_DONTNEED runs under the mmap lock in read
/// mode, beside faults) can then free the folio while the fault still holds its lock:
/// Linux's PAGE_FLAGS_CHECK_AT_FREE warning, the model's bad-page report. With the
/// 6.3 reference (6.15 profile) it never happens.
fn restore_vs_munmap(profile: Profile) {
    let (sys, mm) = setup(profile);
    {
        let mut g = mm.mmap_read_lock();
        drop(
            mm.make_device_exclusive(&mut g, A, None, &Task::new("drv"))
                .unwrap(),
        );
    }
    let toucher = {
        let mm = mm.clone();
        thread::spawn(move || {
            let _ = mm.read_u64(A);
        })
    };
    let zapper = {
        let mm = mm.clone();
        thread::spawn(move || mm.madvise(A, P, Advice::DontNeed).unwrap())
    };
    toucher.join().unwrap();
    zapper.join().unwrap();
    let bad = sys.mem().bad_pages();
    assert!(bad.is_empty(), "bad page: {bad:?}");
}

#[test]
fn shuttle_e1_restore_without_a_reference_frees_a_locked_folio() {
    let e1 = Profile::linux_5_14();
    let failure = explore(&ExploreConfig::new(1000), move || restore_vs_munmap(e1))
        .expect_err("5.14's restore must be able to see its folio freed under its lock");
    assert!(failure.message.contains("bad page"), "{failure}");
    explore(&ExploreConfig::new(500), || {
        restore_vs_munmap(Profile::linux_6_15())
    })
    .unwrap_or_else(|f| panic!("{f}"));
}
