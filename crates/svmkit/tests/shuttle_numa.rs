//! Schedule exploration of NUMA balancing scans racing CPU increments and device
//! atomics on one counter (run with `cargo test -p svmkit --features shuttle --test
//! shuttle_numa`).
//!
//! The scan's ProtectionVma range revokes the device's atomic mapping in both eras
//! (5.14 also downgrades the entry), so the driver must fault again; the CPU's next
//! access to a hinting entry takes `do_numa_page()`. A device fault after a scan
//! that left the driver's own entry in place can starve (each pass's GUP restores
//! the entry the previous pass installed, and the restore's owner-less event bumps
//! the sequence: `EBUSY` at the bound, as after mprotect in
//! `examples/nouveau-starvation-after-revocation.toml`, spec 10.3), so the device
//! counts only the adds that succeeded. Whatever the interleaving, no increment may
//! be lost and the checker must pass.
#![cfg(feature = "shuttle")]

use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::sync::{Arc, thread};
use svmkit::task::Task;
use svmkit::{Errno, Profile};

mod common;
use common::sched::{
    all_frames_free, check_clean, explored, explored_page, linux_5_14_fixed_driver,
};
use common::{BASE as A, P};

const EACH: u64 = 2;

fn numa_scan_races_cpu_and_device_in(profile: Profile, allowed: &'static [Errno]) {
    explored(300, move || {
        let (sys, mm) = explored_page(profile, 48, 0);
        let gpu = Arc::new(SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 4).unwrap());
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let device = {
            let (gpu, done) = (gpu.clone(), done.clone());
            thread::spawn(move || {
                let task = Task::new("gpu");
                for _ in 0..EACH {
                    match gpu.atomic_fetch_add(&task, A, 1) {
                        Ok(_) => {
                            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(e) => assert!(allowed.contains(&e), "{e:?}"),
                    }
                }
            })
        };
        let cpu = {
            let mm = mm.clone();
            thread::spawn(move || {
                for _ in 0..EACH {
                    mm.fetch_add_u64(A, 1).unwrap();
                }
            })
        };
        let scanner = {
            let mm = mm.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    mm.numa_scan(A, P).unwrap();
                }
            })
        };
        device.join().unwrap();
        cpu.join().unwrap();
        scanner.join().unwrap();
        check_clean(&sys);
        let gpu_adds = done.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            mm.read_u64(A).unwrap(),
            EACH + gpu_adds,
            "an increment was lost"
        );
        // The read took any hinting fault: the PTE is accessible again.
        let p = mm.pte_get_lockless(common::va(A)).present();
        assert!(p.is_some_and(|p| !p.is_protnone()), "{p:?}");
        drop(gpu);
        check_clean(&sys);
        drop(mm);
        all_frames_free(&sys);
    });
}

#[test]
fn shuttle_numa_scan_races_cpu_and_device_atomics_6_15() {
    // EBUSY: the starvation the module docs describe.
    numa_scan_races_cpu_and_device_in(Profile::linux_6_15(), &[Errno::EBUSY]);
}

/// 5.14 with nouveau's 2025 retry fix: the scan's invalidation makes the driver
/// retry, and the pre-fix driver self-deadlocks on any retry (spec 8 item 22,
/// shuttle_svm.rs), which would hide the mm path under test. Besides the starvation,
/// 5.14's range API fails spuriously (the driver's EINVAL, spec 8 item 21): its
/// trylock meets the folio locked by the CPU's restore, or the scan made the PTE
/// protnone between its GUP and its conversion, which then finds no writable PTE
/// (6.15 waits for the lock and retries GUP instead; derived).
#[test]
fn shuttle_numa_scan_races_cpu_and_device_atomics_5_14() {
    numa_scan_races_cpu_and_device_in(linux_5_14_fixed_driver(), &[Errno::EBUSY, Errno::EINVAL]);
}
