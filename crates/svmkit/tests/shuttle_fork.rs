//! Schedule exploration of copy-on-write: parent and child breaking COW on the same
//! page at once, and fork racing a write in the parent (run with
//! `cargo test -p svmkit --features shuttle shuttle`).
#![cfg(feature = "shuttle")]

use svmkit::sync::thread;
use svmkit::{PAGE_SIZE, Profile};

mod common;
use common::sched::{all_frames_free, explored, explored_mapping, explored_page, spawn_fork};
use common::{BASE as A, checked};

#[test]
fn shuttle_fork_parent_and_child_break_cow_on_the_same_page() {
    explored(600, || {
        let (sys, parent) = explored_page(Profile::linux_6_15(), 48, 1);
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
        all_frames_free(&sys);
    });
}

#[test]
fn shuttle_fork_races_a_write_in_the_parent() {
    explored(600, || {
        let (sys, parent) = explored_mapping(Profile::linux_6_15(), 48, 2 * PAGE_SIZE);
        parent.write_u64(A, 1).unwrap();
        let forker = spawn_fork(&sys, &parent);
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
        all_frames_free(&sys);
    });
}
