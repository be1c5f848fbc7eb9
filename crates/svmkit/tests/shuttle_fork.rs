//! Schedule exploration of copy-on-write: parent and child breaking COW on the same
//! page at once, and fork racing a write in the parent (run with
//! `cargo test -p svmkit --features shuttle shuttle`).
#![cfg(feature = "shuttle")]

use svmkit::check::{ExploreConfig, explore};
use svmkit::mm::{MapFlags, Prot};
use svmkit::sync::thread;
use svmkit::{PAGE_SIZE, System, SystemConfig};

const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const A: u64 = 0x4000_0000;

fn small_system() -> std::sync::Arc<System> {
    let mut config = SystemConfig::with_frames(48);
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
fn shuttle_fork_parent_and_child_break_cow_on_the_same_page() {
    let report = explore(&ExploreConfig::new(600), || {
        let sys = small_system();
        let parent = sys.create_mm().unwrap();
        parent
            .mmap(A, PAGE_SIZE, Prot::READ | Prot::WRITE, FIXED)
            .unwrap();
        parent.write_u64(A, 1).unwrap();
        let child = sys.fork(&parent).unwrap();
        let tp = {
            let mm = parent.clone();
            thread::spawn(move || mm.fetch_add_u64(A, 10))
        };
        let tc = {
            let mm = child.clone();
            thread::spawn(move || mm.fetch_add_u64(A, 100))
        };
        assert_eq!(tp.join().unwrap(), Ok(1));
        assert_eq!(tc.join().unwrap(), Ok(1));
        assert_eq!(parent.read_u64(A).unwrap(), 11, "parent's write lost");
        assert_eq!(child.read_u64(A).unwrap(), 101, "child's write lost");
        checked(&sys);
        drop(child);
        drop(parent);
        checked(&sys);
        assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 1000);
}

#[test]
fn shuttle_fork_races_a_write_in_the_parent() {
    let report = explore(&ExploreConfig::new(600), || {
        let sys = small_system();
        let parent = sys.create_mm().unwrap();
        parent
            .mmap(A, 2 * PAGE_SIZE, Prot::READ | Prot::WRITE, FIXED)
            .unwrap();
        parent.write_u64(A, 1).unwrap();
        let forker = {
            let (sys, mm) = (sys.clone(), parent.clone());
            thread::spawn(move || sys.fork(&mm).unwrap())
        };
        let writer = {
            let mm = parent.clone();
            thread::spawn(move || {
                mm.fetch_add_u64(A, 10).unwrap();
                // A first touch too: fork may copy the new page or not see it at all.
                mm.write_u64(A + PAGE_SIZE, 7).unwrap();
            })
        };
        writer.join().unwrap();
        let child = forker.join().unwrap();
        assert_eq!(parent.read_u64(A).unwrap(), 11, "parent's write lost");
        let seen = child.read_u64(A).unwrap();
        assert!(seen == 1 || seen == 11, "child saw {seen}");
        let second = child.read_u64(A + PAGE_SIZE).unwrap();
        assert!(second == 0 || second == 7, "child saw {second}");
        // Writes after the fork stay private.
        child.write_u64(A, 5).unwrap();
        parent.write_u64(A + PAGE_SIZE, 8).unwrap();
        assert_eq!(parent.read_u64(A).unwrap(), 11);
        assert_eq!(child.read_u64(A + PAGE_SIZE).unwrap(), second);
        checked(&sys);
        drop(child);
        drop(parent);
        assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 1000);
}
