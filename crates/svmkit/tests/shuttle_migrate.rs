//! Schedule exploration of migration racing a CPU fault and a device atomic under
//! svm_atomic, in both eras (run with `cargo test -p svmkit --features shuttle shuttle`).
#![cfg(feature = "shuttle")]

use svmkit::Profile;
use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::sync::Arc;

mod common;
use common::sched::*;
use common::{BASE as A, checked, folio_at};

fn scenario(profile: Profile) {
    let (sys, mm) = explored_page(profile, 64, 0);
    let folio = folio_at(&sys, &mm, A);
    let gpu = Arc::new(SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 3).unwrap());
    let device = spawn_device_add(&gpu);
    let cpu = spawn_cpu_add(&mm, 10);
    let migrator = spawn_migrate(&sys, folio);
    let done = device.join().unwrap();
    cpu.join().unwrap();
    migrator.join().unwrap();
    assert_eq!(mm.read_u64(A).unwrap(), 10 + done, "lost update");
    assert!(
        sys.mem().bad_pages().is_empty(),
        "{:?}",
        sys.mem().bad_pages()
    );
    drop(gpu);
    checked(&sys);
    drop(mm);
    all_frames_free(&sys);
}

#[test]
fn shuttle_migrate_races_a_cpu_fault_and_a_device_atomic_6_15() {
    explored(ITERS, || scenario(Profile::linux_6_15()));
}

#[test]
fn shuttle_migrate_races_a_cpu_fault_and_a_device_atomic_5_14() {
    // The 2021 design with nouveau's 2025 retry fix, to isolate migration: the
    // pre-fix driver self-deadlocks on any retry (shuttle_leak_on_retry_*).
    explored(ITERS, || scenario(linux_5_14_fixed_driver()));
}
