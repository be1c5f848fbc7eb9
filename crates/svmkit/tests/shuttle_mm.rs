//! Schedule exploration of faults racing munmap and MADV_DONTNEED (run with
//! `cargo test -p svmkit --features shuttle shuttle`).
#![cfg(feature = "shuttle")]

use svmkit::check::{ExploreConfig, explore};
use svmkit::mm::{Advice, MapFlags, Prot};
use svmkit::sync::thread;
use svmkit::{FaultKind, PAGE_SIZE, System, SystemConfig};

const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const A: u64 = 0x4000_0000;

fn small_system() -> std::sync::Arc<System> {
    let mut config = SystemConfig::with_frames(32);
    config.mem.wait_table_bits = 1;
    System::new(config).unwrap()
}

#[test]
fn shuttle_read_and_write_faults_race_munmap_of_the_same_fresh_page() {
    let report = explore(&ExploreConfig::new(600), || {
        let sys = small_system();
        let mm = sys.create_mm().unwrap();
        mm.mmap(A, PAGE_SIZE, Prot::READ | Prot::WRITE, FIXED)
            .unwrap();
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

#[test]
fn shuttle_fetch_add_faults_race_dontneed_without_losing_the_mapping() {
    // DONTNEED runs under the mmap lock in read mode, concurrently with faults: the
    // PTL is what keeps them apart. Each increment either lands before the zap (and is
    // wiped) or after it (and survives); nothing else may happen.
    let report = explore(&ExploreConfig::new(600), || {
        let sys = small_system();
        let mm = sys.create_mm().unwrap();
        mm.mmap(A, 2 * PAGE_SIZE, Prot::READ | Prot::WRITE, FIXED)
            .unwrap();
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
        if let Err(e) = sys.check() {
            panic!("{e}");
        }
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 1000);
}
