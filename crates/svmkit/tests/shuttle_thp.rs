//! Schedule exploration of THP splits racing CPU accesses (run with
//! `cargo test -p svmkit --features shuttle shuttle`).
#![cfg(feature = "shuttle")]

use svmkit::check::{ExploreConfig, explore};
use svmkit::mm::{Advice, MapFlags, PMD_SIZE, Prot};
use svmkit::sync::thread;
use svmkit::{PAGE_SIZE, System, SystemConfig, VirtAddr};

const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const H: u64 = 0x4000_0000;
const P: u64 = PAGE_SIZE;

fn thp_system() -> std::sync::Arc<System> {
    // One free order-9 block (frames 512..1024) plus small ones for tables.
    let mut config = SystemConfig::with_frames(1100);
    config.mem.wait_table_bits = 1;
    System::new(config).unwrap()
}

#[track_caller]
fn checked(sys: &System) {
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}

#[test]
fn shuttle_thp_write_faults_race_a_split() {
    let report = explore(&ExploreConfig::new(500), || {
        let sys = thp_system();
        let mm = sys.create_mm().unwrap();
        mm.mmap(H, PMD_SIZE, Prot::READ | Prot::WRITE, FIXED)
            .unwrap();
        mm.madvise(H, PMD_SIZE, Advice::HugePage).unwrap();
        mm.write_u64(H, 1).unwrap();
        assert!(mm.pmd_is_huge(VirtAddr::try_new(H).unwrap()));
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
        assert!(!mm.pmd_is_huge(VirtAddr::try_new(H).unwrap()));
        assert_eq!(
            mm.write_u64(H + 7 * P, 1).unwrap_err().kind,
            svmkit::FaultKind::Protection
        );
        checked(&sys);
        drop(mm);
        checked(&sys);
        assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 1000);
}
