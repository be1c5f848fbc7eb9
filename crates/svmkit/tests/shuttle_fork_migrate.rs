//! Schedule exploration of migration racing fork, in both eras (run with
//! `cargo test -p svmkit --features shuttle --test shuttle_fork_migrate`).
//!
//! The page is anon-exclusive but mapped read-only when it is migrated, so migration
//! installs a readable-exclusive entry (SWP_MIGRATION_READ_EXCLUSIVE). A fork that
//! copies it must make it readable in both processes (Linux: `copy_nonpresent_pte()`),
//! or the migration maps the new page exclusive in both and the child's write reaches
//! the parent (issue 14, bug 4).
#![cfg(feature = "shuttle")]

use svmkit::check::{ExploreConfig, explore};
use svmkit::mm::{MapFlags, Prot};
use svmkit::sync::thread;
use svmkit::{Errno, PAGE_SIZE, Profile, System, SystemConfig, VirtAddr};

const A: u64 = 0x4000_0000;
const RW: Prot = Prot::READ.union(Prot::WRITE);

fn scenario(profile: Profile) {
    let mut config = SystemConfig::with_frames(64);
    config.mem.wait_table_bits = 1;
    config.profile = profile;
    let sys = System::new(config).unwrap();
    let parent = sys.create_mm().unwrap();
    parent
        .mmap(
            A,
            PAGE_SIZE,
            RW,
            MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED,
        )
        .unwrap();
    parent.write_u64(A, 1).unwrap();
    // Still anon-exclusive, now mapped read-only: the migration entry is
    // readable-exclusive (Linux: try_to_migrate_one()).
    parent.mprotect(A, PAGE_SIZE, Prot::READ).unwrap();
    let folio = sys
        .mem()
        .page_folio(parent.translate(VirtAddr::try_new(A).unwrap()).unwrap())
        .unwrap();
    let migrator = {
        let sys = sys.clone();
        thread::spawn(move || {
            // A folio that cannot be moved now (EAGAIN) or is no longer an anonymous
            // folio (EINVAL) is an answer, not a failure: nothing was migrated.
            match sys.mem().migrate_folio(folio) {
                Ok(_) | Err(Errno::EAGAIN) | Err(Errno::EINVAL) => {}
                Err(e) => panic!("{e}"),
            }
        })
    };
    let forker = {
        let (sys, parent) = (sys.clone(), parent.clone());
        thread::spawn(move || sys.fork(&parent).unwrap())
    };
    migrator.join().unwrap();
    let child = forker.join().unwrap();
    parent.mprotect(A, PAGE_SIZE, RW).unwrap();
    child.mprotect(A, PAGE_SIZE, RW).unwrap();
    child.write_u64(A, 2).unwrap();
    // Derived: fork shares private memory copy-on-write; neither sees the other's
    // writes, whatever migration did meanwhile.
    assert_eq!(
        parent.read_u64(A).unwrap(),
        1,
        "the child's write reached the parent"
    );
    assert_eq!(child.read_u64(A).unwrap(), 2, "the child's write was lost");
    parent.write_u64(A, 3).unwrap();
    assert_eq!(
        child.read_u64(A).unwrap(),
        2,
        "the parent's write reached the child"
    );
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
    assert!(
        sys.mem().bad_pages().is_empty(),
        "{:?}",
        sys.mem().bad_pages()
    );
    drop(child);
    drop(parent);
    assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
}

#[test]
fn shuttle_migration_races_fork_6_15() {
    let report = explore(
        &ExploreConfig::new(1000),
        || scenario(Profile::linux_6_15()),
    )
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 2000);
}

#[test]
fn shuttle_migration_races_fork_5_14() {
    let report = explore(
        &ExploreConfig::new(1000),
        || scenario(Profile::linux_5_14()),
    )
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.schedules() >= 2000);
}
