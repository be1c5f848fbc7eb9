//! Schedule exploration of migration racing a CPU fault and a device atomic under
//! svm_atomic, in both eras (run with `cargo test -p svmkit --features shuttle shuttle`).
#![cfg(feature = "shuttle")]

use svmkit::check::{ExploreConfig, explore};
use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::mm::{MapFlags, Prot};
use svmkit::sync::{Arc, thread};
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Profile, System, SystemConfig, VirtAddr};

const A: u64 = 0x4000_0000;

fn scenario(profile: Profile) {
    let mut config = SystemConfig::with_frames(64);
    config.mem.wait_table_bits = 1;
    config.profile = profile;
    let sys = System::new(config).unwrap();
    let mm = sys.create_mm().unwrap();
    mm.mmap(
        A,
        PAGE_SIZE,
        Prot::READ | Prot::WRITE,
        MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED,
    )
    .unwrap();
    mm.write_u64(A, 0).unwrap();
    let folio = sys
        .mem()
        .page_folio(mm.translate(VirtAddr::try_new(A).unwrap()).unwrap())
        .unwrap();
    let gpu = Arc::new(SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 3).unwrap());
    let device = {
        let gpu = gpu.clone();
        thread::spawn(
            move || match gpu.atomic_fetch_add(&Task::new("gpu"), A, 1) {
                Ok(_) => 1,
                // The bound (starvation) or a failed conversion: no update happened.
                Err(Errno::EBUSY | Errno::EINVAL) => 0,
                Err(e) => panic!("{e}"),
            },
        )
    };
    let cpu = {
        let mm = mm.clone();
        thread::spawn(move || mm.fetch_add_u64(A, 10).unwrap())
    };
    let migrator = {
        let sys = sys.clone();
        thread::spawn(move || {
            // The folio may be busy (locked by the driver, referenced by an entry the
            // era's walkers cannot convert): EAGAIN is an answer, not a failure.
            match sys.mem().migrate_folio(folio) {
                Ok(_) | Err(Errno::EAGAIN) | Err(Errno::EINVAL) => {}
                Err(e) => panic!("{e}"),
            }
        })
    };
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
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
    drop(mm);
    assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
}

#[test]
fn shuttle_migrate_races_a_cpu_fault_and_a_device_atomic_6_15() {
    let report = explore(
        &ExploreConfig::new(1000),
        || scenario(Profile::linux_6_15()),
    )
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 2000);
}

#[test]
fn shuttle_migrate_races_a_cpu_fault_and_a_device_atomic_5_14() {
    // The 2021 design with nouveau's 2025 retry fix, to isolate migration: the
    // pre-fix driver self-deadlocks on any retry (shuttle_leak_on_retry_*).
    let profile = Profile {
        svm_atomic_unlock_on_retry: true,
        ..Profile::linux_5_14()
    };
    let report = explore(&ExploreConfig::new(1000), move || scenario(profile))
        .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 2000);
}
