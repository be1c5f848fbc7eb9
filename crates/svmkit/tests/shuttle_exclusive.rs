//! Schedule exploration of device-exclusive conversion racing CPU atomics and a
//! neighbouring munmap (run with `cargo test -p svmkit --features shuttle shuttle`).
#![cfg(feature = "shuttle")]

use svmkit::check::{ExploreConfig, explore};
use svmkit::mm::mmu_notifier::Owner;
use svmkit::mm::{MapFlags, Prot};
use svmkit::sync::thread;
use svmkit::task::Task;
use svmkit::{PAGE_SIZE, System, SystemConfig};

const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const A: u64 = 0x4000_0000;
const INCREMENTS: u64 = 3;

#[test]
fn shuttle_exclusive_conversions_never_lose_a_cpu_increment() {
    let report = explore(&ExploreConfig::new(600), || {
        let mut config = SystemConfig::with_frames(48);
        config.mem.wait_table_bits = 1;
        let sys = System::new(config).unwrap();
        let mm = sys.create_mm().unwrap();
        mm.mmap(A, 2 * PAGE_SIZE, Prot::READ | Prot::WRITE, FIXED)
            .unwrap();
        mm.write_u64(A, 0).unwrap();
        mm.write_u64(A + PAGE_SIZE, 0).unwrap();
        let cpu = {
            let mm = mm.clone();
            thread::spawn(move || {
                for _ in 0..INCREMENTS {
                    mm.fetch_add_u64(A, 1).unwrap();
                }
            })
        };
        let driver = {
            let mm = mm.clone();
            thread::spawn(move || {
                let (owner, task) = (Owner::new(), Task::new("driver"));
                for _ in 0..2 {
                    let mut g = mm.mmap_read_lock();
                    let excl = mm
                        .make_device_exclusive(&mut g, A, Some(owner), &task)
                        .unwrap();
                    drop(g);
                    // The device would program its mapping here, under the folio lock.
                    svmkit::sync::yield_now();
                    drop(excl);
                }
            })
        };
        let unmapper = {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(A + PAGE_SIZE, PAGE_SIZE).unwrap())
        };
        cpu.join().unwrap();
        driver.join().unwrap();
        unmapper.join().unwrap();
        assert_eq!(mm.read_u64(A).unwrap(), INCREMENTS, "an increment was lost");
        if let Err(e) = sys.check() {
            panic!("{e}");
        }
        drop(mm);
        if let Err(e) = sys.check() {
            panic!("{e}");
        }
        assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 1000);
}
