//! Schedule exploration of reclaim (swap-out) racing the mm paths that meet the same
//! folio: a CPU store, MADV_DONTNEED, swap-in, fork, exit, a THP split, and a device
//! making the page exclusive, in both eras (run with
//! `cargo test -p svmkit --features shuttle shuttle`).
//!
//! Every scenario ends with the invariant checker, no bad-page report, a data check
//! (what was written is what is read) and, once everything is dropped, no leaked
//! frame or swap slot. Expected values: a store that completed before its thread was
//! joined is visible afterwards, and memory is private to its process after fork
//! (POSIX/Linux semantics, spec 4.7 for swap); zero after MADV_DONTNEED of private
//! anonymous memory (Linux madvise(2)).
#![cfg(feature = "shuttle")]

use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::mm::{Advice, Folio, MmUser, PMD_SIZE, Prot};
use svmkit::sync::Arc;
use svmkit::sync::thread::{self, JoinHandle};
use svmkit::{Errno, Profile, System};

mod common;
use common::sched::*;
use common::{BASE as A, FIXED, P, RW, folio_at, va};

/// [`explored_system`] with 16 swap slots, and a process that maps `len` bytes of
/// read-write private anonymous memory at `A`, none of it touched yet.
fn swap_mapping(profile: Profile, frames: u64, len: u64) -> (Arc<System>, MmUser) {
    let sys = explored_system(profile, frames);
    sys.mem().swapon(16).unwrap();
    let mm = sys.create_mm().unwrap();
    mm.mmap(A, len, RW, FIXED).unwrap();
    (sys, mm)
}

/// One page holding `value` at its start, in a system of 64 frames and 16 swap slots.
fn swap_page(profile: Profile, value: u64) -> (Arc<System>, MmUser) {
    let (sys, mm) = swap_mapping(profile, 64, P);
    mm.write_u64(A, value).unwrap();
    (sys, mm)
}

/// Reclaim's answers that are not failures: freed, busy (locked, referenced, still
/// mapped), or the folio was already gone (freed and maybe reused) when reclaim looked.
fn reclaim_ok(r: Result<(), Errno>) {
    match r {
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINVAL) => {}
        Err(e) => panic!("reclaim: {e}"),
    }
}

/// Parent and child exit: [`check_clean`] before, [`check_nothing_left`] after.
#[track_caller]
fn exit_both(sys: &System, parent: MmUser, child: MmUser) {
    check_clean(sys);
    drop(child);
    drop(parent);
    check_nothing_left(sys);
}

/// A thread reclaiming `folio`.
fn spawn_reclaim(sys: &Arc<System>, folio: Folio) -> JoinHandle<()> {
    let sys = sys.clone();
    thread::spawn(move || reclaim_ok(sys.mem().reclaim_folio(folio)))
}

/// Reclaim of a page while a CPU thread stores to it: the store survives (bug 1 of
/// issue 14: the contents used to be copied out before the unmap).
fn reclaim_vs_cpu_write(profile: Profile) {
    let (sys, mm) = swap_mapping(profile, 64, P);
    mm.write_u64(A + 8, 1).unwrap();
    let folio = folio_at(&sys, &mm, A);
    let reclaimer = spawn_reclaim(&sys, folio);
    let writer = {
        let mm = mm.clone();
        thread::spawn(move || mm.write_u64(A + 8, 2).unwrap())
    };
    reclaimer.join().unwrap();
    writer.join().unwrap();
    assert_eq!(
        mm.read_u64(A + 8).unwrap(),
        2,
        "a store was lost to reclaim"
    );
    check_clean(&sys);
    drop(mm);
    check_nothing_left(&sys);
}

/// Reclaim racing MADV_DONTNEED of the same page: the swap-cache reference is put
/// exactly once (bug 2 of issue 14), and the page reads zero afterwards.
fn reclaim_vs_dontneed(profile: Profile) {
    let (sys, mm) = swap_page(profile, 5);
    let folio = folio_at(&sys, &mm, A);
    let reclaimer = spawn_reclaim(&sys, folio);
    let zapper = {
        let mm = mm.clone();
        thread::spawn(move || mm.madvise(A, P, Advice::DontNeed).unwrap())
    };
    reclaimer.join().unwrap();
    zapper.join().unwrap();
    check_clean(&sys);
    assert_eq!(
        mm.read_u64(A).unwrap(),
        0,
        "DONTNEED of private memory reads zero"
    );
    drop(mm);
    check_nothing_left(&sys);
}

/// A page swapped out and shared by parent and child (one slot, two entries): the
/// child's swap-in, a reclaim of what the child maps, and the parent's write race.
fn reclaim_vs_swapin(profile: Profile) {
    let (sys, parent) = swap_page(profile, 3);
    let child = sys.fork(&parent).unwrap();
    sys.mem().reclaim_folio(folio_at(&sys, &parent, A)).unwrap();
    let reader = {
        let child = child.clone();
        thread::spawn(move || child.read_u64(A).unwrap())
    };
    let reclaimer = {
        let child = child.clone();
        thread::spawn(move || {
            child.reclaim_mm(1);
        })
    };
    let writer = {
        let parent = parent.clone();
        thread::spawn(move || parent.write_u64(A, 4).unwrap())
    };
    assert_eq!(reader.join().unwrap(), 3, "the child sees what was forked");
    reclaimer.join().unwrap();
    writer.join().unwrap();
    assert_eq!(parent.read_u64(A).unwrap(), 4);
    assert_eq!(
        child.read_u64(A).unwrap(),
        3,
        "the parent's write reached the child"
    );
    exit_both(&sys, parent, child);
}

/// Reclaim racing fork: whichever wins, both processes see the forked value and then
/// only their own writes.
fn reclaim_vs_fork(profile: Profile) {
    let (sys, parent) = swap_page(profile, 1);
    let folio = folio_at(&sys, &parent, A);
    let reclaimer = spawn_reclaim(&sys, folio);
    let forker = spawn_fork(&sys, &parent);
    reclaimer.join().unwrap();
    let child = forker.join().unwrap();
    child.write_u64(A, 2).unwrap();
    assert_eq!(
        parent.read_u64(A).unwrap(),
        1,
        "the child's write reached the parent"
    );
    parent.write_u64(A, 3).unwrap();
    assert_eq!(
        child.read_u64(A).unwrap(),
        2,
        "the parent's write reached the child"
    );
    exit_both(&sys, parent, child);
}

/// A process exits while reclaim works on its page (shared with a forked child, so
/// the folio outlives one of the two): nothing leaks, nothing is freed twice, and the
/// survivor keeps the data.
fn reclaim_vs_exit(profile: Profile) {
    let (sys, parent) = swap_page(profile, 9);
    let child = sys.fork(&parent).unwrap();
    let folio = folio_at(&sys, &parent, A);
    let reclaimer = spawn_reclaim(&sys, folio);
    let exiter = thread::spawn(move || drop(child));
    reclaimer.join().unwrap();
    exiter.join().unwrap();
    assert_eq!(parent.read_u64(A).unwrap(), 9);
    check_clean(&sys);
    drop(parent);
    check_nothing_left(&sys);
}

/// A THP split (partial mprotect) and a CPU increment race MADV_PAGEOUT and reclaim of
/// the range: the model does not swap large folios, but none of the paths may lose the
/// increment or corrupt the split.
fn reclaim_vs_thp_split(profile: Profile) {
    let (sys, mm) = swap_mapping(profile, THP_FRAMES, PMD_SIZE);
    mm.madvise(A, PMD_SIZE, Advice::HugePage).unwrap();
    mm.write_u64(A + 3 * P, 1).unwrap();
    assert!(mm.pmd_is_huge(va(A)));
    let splitter = {
        let mm = mm.clone();
        thread::spawn(move || mm.mprotect(A + 7 * P, P, Prot::READ).unwrap())
    };
    let adder = {
        let mm = mm.clone();
        thread::spawn(move || mm.fetch_add_u64(A + 3 * P, 1).unwrap())
    };
    let reclaimer = {
        let mm = mm.clone();
        thread::spawn(move || {
            mm.madvise(A, PMD_SIZE, Advice::PageOut).unwrap();
            mm.reclaim_mm(4);
        })
    };
    splitter.join().unwrap();
    adder.join().unwrap();
    reclaimer.join().unwrap();
    assert_eq!(mm.read_u64(A + 3 * P).unwrap(), 2, "an increment was lost");
    check_clean(&sys);
    drop(mm);
    check_nothing_left(&sys);
}

/// A device atomic (svm_atomic: make_device_exclusive inside its notifier section)
/// and a CPU add race reclaim of the page: 6.15's walkers turn the entry into a swap
/// entry (revoking the device), 5.14 cannot reclaim it (spec 4.7; 8 item 8: a small
/// folio looked unmapped, so reclaim never swapped it out); in both no update is lost.
fn reclaim_vs_device_exclusive(profile: Profile) {
    let (sys, mm) = swap_page(profile, 0);
    let folio = folio_at(&sys, &mm, A);
    let gpu = Arc::new(SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 3).unwrap());
    let device = spawn_device_add(&gpu);
    let cpu = spawn_cpu_add(&mm, 10);
    let reclaimer = spawn_reclaim(&sys, folio);
    let done = device.join().unwrap();
    cpu.join().unwrap();
    reclaimer.join().unwrap();
    assert_eq!(mm.read_u64(A).unwrap(), 10 + done, "lost update");
    check_clean(&sys);
    drop(gpu);
    check_clean(&sys);
    drop(mm);
    check_nothing_left(&sys);
}

macro_rules! both_eras {
    ($scenario:ident, $t615:ident, $t514:ident) => {
        #[test]
        fn $t615() {
            explored(ITERS, || $scenario(Profile::linux_6_15()));
        }

        #[test]
        fn $t514() {
            explored(ITERS, || $scenario(linux_5_14_fixed_driver()));
        }
    };
}

both_eras!(
    reclaim_vs_cpu_write,
    shuttle_reclaim_races_a_cpu_write_6_15,
    shuttle_reclaim_races_a_cpu_write_5_14
);
both_eras!(
    reclaim_vs_dontneed,
    shuttle_reclaim_races_dontneed_6_15,
    shuttle_reclaim_races_dontneed_5_14
);
both_eras!(
    reclaim_vs_swapin,
    shuttle_reclaim_races_swapin_6_15,
    shuttle_reclaim_races_swapin_5_14
);
both_eras!(
    reclaim_vs_fork,
    shuttle_reclaim_races_fork_6_15,
    shuttle_reclaim_races_fork_5_14
);
both_eras!(
    reclaim_vs_exit,
    shuttle_reclaim_races_exit_6_15,
    shuttle_reclaim_races_exit_5_14
);
both_eras!(
    reclaim_vs_thp_split,
    shuttle_reclaim_races_a_thp_split_6_15,
    shuttle_reclaim_races_a_thp_split_5_14
);
both_eras!(
    reclaim_vs_device_exclusive,
    shuttle_reclaim_races_device_exclusive_6_15,
    shuttle_reclaim_races_device_exclusive_5_14
);

/// Fork, a child's COW write and exit, the parent's write, and reclaim of the
/// parent's memory, all at once (what the real-thread stress test does).
fn reclaim_vs_fork_child_cow_exit(profile: Profile) {
    let (sys, parent) = swap_mapping(profile, 64, 2 * P);
    parent.write_u64(A, 1).unwrap();
    parent.write_u64(A + P, 7).unwrap();
    let forker = {
        let sys = sys.clone();
        let parent = parent.clone();
        thread::spawn(move || {
            let child = sys.fork(&parent).unwrap();
            child.fetch_add_u64(A, 10).unwrap();
            assert_eq!(child.read_u64(A + P).unwrap(), 7);
            drop(child);
        })
    };
    let writer = {
        let parent = parent.clone();
        thread::spawn(move || parent.write_u64(A, 2).unwrap())
    };
    let reclaimer = {
        let parent = parent.clone();
        thread::spawn(move || {
            parent.reclaim_mm(2);
            parent.madvise(A, 2 * P, Advice::PageOut).unwrap();
        })
    };
    forker.join().unwrap();
    writer.join().unwrap();
    reclaimer.join().unwrap();
    assert_eq!(parent.read_u64(A).unwrap(), 2);
    assert_eq!(parent.read_u64(A + P).unwrap(), 7);
    check_clean(&sys);
    drop(parent);
    check_nothing_left(&sys);
}

both_eras!(
    reclaim_vs_fork_child_cow_exit,
    shuttle_reclaim_races_fork_cow_and_exit_6_15,
    shuttle_reclaim_races_fork_cow_and_exit_5_14
);

/// A folio in the swap cache (swapped in by the parent, its slot still named by the
/// child's entry) is reclaimed again while the child drops that last other entry: the
/// slot must not be freed under the reclaim that is turning the parent's PTE into an
/// entry for it (Linux: free_swap_and_cache() only trylocks the folio; a slot whose
/// cached folio is locked stays until the lock holder frees it).
fn reclaim_of_a_cached_folio_vs_the_last_other_entry(profile: Profile) {
    let (sys, parent) = swap_page(profile, 6);
    let child = sys.fork(&parent).unwrap();
    sys.mem().reclaim_folio(folio_at(&sys, &parent, A)).unwrap();
    // The parent swaps it in: mapped by the parent, cached, the slot named by the
    // child's entry only.
    assert_eq!(parent.read_u64(A).unwrap(), 6);
    assert_eq!(sys.mem().swap_slots_used(), 1);
    let folio = folio_at(&sys, &parent, A);
    let reclaimer = spawn_reclaim(&sys, folio);
    let zapper = {
        let child = child.clone();
        thread::spawn(move || child.madvise(A, P, Advice::DontNeed).unwrap())
    };
    reclaimer.join().unwrap();
    zapper.join().unwrap();
    check_clean(&sys);
    assert_eq!(parent.read_u64(A).unwrap(), 6);
    assert_eq!(
        child.read_u64(A).unwrap(),
        0,
        "DONTNEED of private memory reads zero"
    );
    exit_both(&sys, parent, child);
}

both_eras!(
    reclaim_of_a_cached_folio_vs_the_last_other_entry,
    shuttle_reclaim_of_a_cached_folio_races_the_last_other_entry_6_15,
    shuttle_reclaim_of_a_cached_folio_races_the_last_other_entry_5_14
);

/// reclaim_mm's scan of an mm racing munmap (which frees the page tables the scan
/// reads) and a new mapping faulted in where the old one was. The scan holds the mmap
/// lock for read and each PTL, as Linux's page-table walks do, and takes a reference
/// on each candidate, so it neither reads a freed table nor reclaims a frame reused
/// since. (The scan's table reads are plain atomics, not scheduling points: what this
/// explores is the scan against the whole munmap and the fault, not a read inside it.)
fn reclaim_mm_vs_munmap(profile: Profile) {
    let (sys, mm) = swap_mapping(profile, 64, 2 * P);
    mm.write_u64(A, 1).unwrap();
    mm.write_u64(A + P, 2).unwrap();
    let reclaimer = {
        let mm = mm.clone();
        thread::spawn(move || {
            mm.reclaim_mm(2);
        })
    };
    let remapper = {
        let mm = mm.clone();
        thread::spawn(move || {
            mm.munmap(A, P).unwrap();
            mm.mmap(A, P, RW, FIXED).unwrap();
            mm.write_u64(A, 3).unwrap();
        })
    };
    reclaimer.join().unwrap();
    remapper.join().unwrap();
    assert_eq!(mm.read_u64(A).unwrap(), 3);
    assert_eq!(mm.read_u64(A + P).unwrap(), 2);
    check_clean(&sys);
    drop(mm);
    check_nothing_left(&sys);
}

both_eras!(
    reclaim_mm_vs_munmap,
    shuttle_reclaim_mm_races_munmap_6_15,
    shuttle_reclaim_mm_races_munmap_5_14
);

/// A THP in the swap cache (a first reclaim gave it slots but could not unmap it, its
/// VMA being VM_LOCKED then), holding `1000 + i` in page `i`, with 512 swap slots.
fn cached_thp(profile: Profile) -> (Arc<System>, MmUser, Folio) {
    let sys = explored_system(profile, THP_FRAMES);
    sys.mem().swapon(512).unwrap();
    let mm = sys.create_mm().unwrap();
    map_thp(&mm);
    for i in 0..512 {
        mm.write_u64(A + i * P, 1000 + i).unwrap();
    }
    let thp = folio_at(&sys, &mm, A);
    assert_eq!(thp.order(), 9);
    mm.mlock(A, PMD_SIZE).unwrap();
    assert_eq!(sys.mem().reclaim_folio(thp), Err(Errno::EAGAIN));
    mm.munlock(A, PMD_SIZE).unwrap();
    assert_eq!(sys.mem().swap_slots_used(), 512);
    (sys, mm, thp)
}

/// Reclaim of a swap-cached THP racing a CPU incrementer of page 0 and a driver making
/// page 0 device-exclusive (5.14: the head's conversion converts every PTE of the THP,
/// spec 8 item 7; 6.15: that PTE only). Whatever the order, reclaim meets present
/// PTEs, swap entries and device-exclusive entries of one large folio: 6.15 swaps the
/// entry (spec 4.7), 5.14 reads it as a present PTE and gives up at the first entry
/// (spec 8 item 12, `swp_misread.rs`). No store may be lost (every increment that
/// returned is in the page) and every other page keeps its value (derived), and the
/// checker finds nothing wrong.
fn reclaim_of_a_thp_vs_cpu_write_and_device_exclusive(profile: Profile) {
    let (sys, mm, thp) = cached_thp(profile);
    let reclaimer = spawn_reclaim(&sys, thp);
    let cpu = spawn_cpu_increments(&mm, 2);
    let driver = spawn_exclusive_then_release(&mm);
    reclaimer.join().unwrap();
    cpu.join().unwrap();
    driver.join().unwrap();
    check_clean(&sys);
    assert_eq!(mm.read_u64(A).unwrap(), 1002, "a store was lost");
    for i in [1u64, 7, 8, 255, 511] {
        assert_eq!(mm.read_u64(A + i * P).unwrap(), 1000 + i, "page {i}");
    }
    check_clean(&sys);
    drop(mm);
    check_nothing_left(&sys);
}

/// Schedules per scheduler for the THP race: each one walks 512 PTEs several times.
const THP_ITERS: usize = 30;

#[test]
fn shuttle_reclaim_of_a_thp_races_a_cpu_write_and_a_conversion_6_15() {
    explored(THP_ITERS, || {
        reclaim_of_a_thp_vs_cpu_write_and_device_exclusive(Profile::linux_6_15())
    });
}

#[test]
fn shuttle_reclaim_of_a_thp_races_a_cpu_write_and_a_conversion_5_14() {
    explored(THP_ITERS, || {
        reclaim_of_a_thp_vs_cpu_write_and_device_exclusive(linux_5_14_fixed_driver())
    });
}
