//! Schedule exploration of the UVM-style driver (device/uvm.rs) against CPU threads:
//! the exclusivity invariant (a device entry with atomic rights implies the CPU PTE is
//! a device-exclusive entry for the same frame) and no lost increment (run with
//! `cargo test -p svmkit --features shuttle --test shuttle_uvm`).
#![cfg(feature = "shuttle")]

use svmkit::device::DevRights;
use svmkit::device::uvm::{Uvm, UvmError};
use svmkit::mm::{MmUser, Pte};
use svmkit::sync::{Arc, thread};
use svmkit::task::Task;
use svmkit::{PAGE_SIZE, Profile};

mod common;
use common::sched::{all_frames_free, explored, explored_mapping};
use common::{BASE as A, checked};

/// DESIGN.md's exclusivity invariant, read under the driver lock (every invalidation
/// takes it before the CPU side changes).
fn check_exclusivity(gpu: &Uvm, mm: &MmUser) {
    let table = gpu.device().lock();
    for (va, pte) in table.range(0, 1 << 47) {
        if !pte.rights.contains(DevRights::ATOMIC) {
            continue;
        }
        let cpu = mm.pte_get_lockless(va);
        let ok = matches!(cpu, Pte::Swap(s) if s.is_device_exclusive() && s.pfn() == Some(pte.pfn));
        assert!(
            ok,
            "exclusivity violated at {va}: device {}, CPU {cpu:?}",
            pte.pfn
        );
    }
}

fn uvm_races_cpu_in(profile: Profile) {
    explored(300, move || {
        let (sys, mm) = explored_mapping(profile, 48, 2 * PAGE_SIZE);
        mm.write_u64(A, 0).unwrap();
        mm.write_u64(A + PAGE_SIZE, 0).unwrap();
        // A two-page region: each fault converts both pages.
        let gpu = Arc::new(Uvm::new(&mm, "uvm", 2, 3));
        let device = {
            let gpu = gpu.clone();
            thread::spawn(move || {
                let task = Task::new("uvm");
                (0..2)
                    .map(|_| gpu.atomic_fetch_add(&task, A, 1))
                    .filter(|r| {
                        // Derived: under contention a fault may give up (the model's
                        // bound on UVM's endless retry); nothing else may fail.
                        assert!(matches!(r, Ok(_) | Err(UvmError::Livelock)), "{r:?}");
                        r.is_ok()
                    })
                    .count() as u64
            })
        };
        let cpu = {
            let mm = mm.clone();
            thread::spawn(move || {
                mm.fetch_add_u64(A + PAGE_SIZE, 10).unwrap();
                mm.fetch_add_u64(A, 10).unwrap();
            })
        };
        let monitor = {
            let (gpu, mm) = (gpu.clone(), mm.clone());
            thread::spawn(move || {
                for _ in 0..3 {
                    check_exclusivity(&gpu, &mm);
                    svmkit::sync::yield_now();
                }
            })
        };
        let added = device.join().unwrap();
        cpu.join().unwrap();
        monitor.join().unwrap();
        check_exclusivity(&gpu, &mm);
        assert_eq!(mm.read_u64(A).unwrap(), 10 + added, "an increment was lost");
        assert_eq!(mm.read_u64(A + PAGE_SIZE).unwrap(), 10);
        checked(&sys);
        drop(gpu);
        drop(mm);
        checked(&sys);
        all_frames_free(&sys);
    });
}

#[test]
fn shuttle_uvm_exclusivity_and_no_lost_increment_6_15() {
    uvm_races_cpu_in(Profile::linux_6_15());
}

#[test]
fn shuttle_uvm_exclusivity_and_no_lost_increment_5_14() {
    uvm_races_cpu_in(Profile::linux_5_14());
}
