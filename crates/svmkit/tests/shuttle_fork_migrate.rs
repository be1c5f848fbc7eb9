//! Schedule exploration of migration racing fork, in both eras (run with
//! `cargo test -p svmkit --features shuttle --test shuttle_fork_migrate`).
//!
//! The page is anon-exclusive but mapped read-only when it is migrated, so migration
//! installs a readable-exclusive entry (SWP_MIGRATION_READ_EXCLUSIVE). A fork that
//! copies it must make it readable in both processes (Linux: `copy_nonpresent_pte()`),
//! or the migration maps the new page exclusive in both and the child's write reaches
//! the parent (issue 14, bug 4).
#![cfg(feature = "shuttle")]

use svmkit::mm::Prot;
use svmkit::{PAGE_SIZE, Profile};

mod common;
use common::sched::*;
use common::{BASE as A, RW, checked, folio_at};

fn scenario(profile: Profile) {
    let (sys, parent) = explored_page(profile, 64, 1);
    // Still anon-exclusive, now mapped read-only: the migration entry is
    // readable-exclusive (Linux: try_to_migrate_one()).
    parent.mprotect(A, PAGE_SIZE, Prot::READ).unwrap();
    let folio = folio_at(&sys, &parent, A);
    let migrator = spawn_migrate(&sys, folio);
    let forker = spawn_fork(&sys, &parent);
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
    checked(&sys);
    assert!(
        sys.mem().bad_pages().is_empty(),
        "{:?}",
        sys.mem().bad_pages()
    );
    drop(child);
    drop(parent);
    all_frames_free(&sys);
}

#[test]
fn shuttle_migration_races_fork_6_15() {
    explored(ITERS, || scenario(Profile::linux_6_15()));
}

#[test]
fn shuttle_migration_races_fork_5_14() {
    explored(ITERS, || scenario(Profile::linux_5_14()));
}
