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

use svmkit::check::{ExploreConfig, explore};
use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::mm::{Advice, MapFlags, PMD_SIZE, Prot};
use svmkit::sync::{Arc, thread};
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Profile, System, SystemConfig, VirtAddr};

const A: u64 = 0x4000_0000;
const P: u64 = PAGE_SIZE;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);

/// Schedules per scheduler (random, then PCT): CI runs at least 1000 of each.
const ITERS: usize = 1000;

fn system(profile: Profile, frames: u64) -> Arc<System> {
    let mut config = SystemConfig::with_frames(frames);
    config.mem.wait_table_bits = 1;
    config.profile = profile;
    let sys = System::new(config).unwrap();
    sys.mem().swapon(16).unwrap();
    sys
}

fn folio_at(sys: &System, mm: &svmkit::mm::MmUser, a: u64) -> svmkit::mm::Folio {
    sys.mem()
        .page_folio(mm.translate(VirtAddr::try_new(a).unwrap()).unwrap())
        .unwrap()
}

/// Reclaim's answers that are not failures: freed, busy (locked, referenced, still
/// mapped), or the folio was already gone (freed and maybe reused) when reclaim looked.
fn reclaim_ok(r: Result<(), Errno>) {
    match r {
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINVAL) => {}
        Err(e) => panic!("reclaim: {e}"),
    }
}

/// The checker, the bad-page list, and (after `drop_all`) that every frame and slot
/// came back.
#[track_caller]
fn check_clean(sys: &System) {
    assert!(
        sys.mem().bad_pages().is_empty(),
        "{:?}",
        sys.mem().bad_pages()
    );
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}

#[track_caller]
fn check_nothing_left(sys: &System) {
    check_clean(sys);
    assert_eq!(sys.mem().swap_slots_used(), 0, "a swap slot leaked");
    assert_eq!(
        sys.mem().nr_free_pages(),
        sys.mem().nr_usable_pages(),
        "a frame leaked"
    );
}

fn explored(name: &str, f: impl Fn() + Send + Sync + 'static) {
    let report = explore(&ExploreConfig::new(ITERS), f).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(report.schedules() >= 2 * ITERS, "{name}: {report:?}");
}

/// Reclaim of a page while a CPU thread stores to it: the store survives (bug 1 of
/// issue 14: the contents used to be copied out before the unmap).
fn reclaim_vs_cpu_write(profile: Profile) {
    let sys = system(profile, 64);
    let mm = sys.create_mm().unwrap();
    mm.mmap(A, P, RW, FIXED).unwrap();
    mm.write_u64(A + 8, 1).unwrap();
    let folio = folio_at(&sys, &mm, A);
    let reclaimer = {
        let sys = sys.clone();
        thread::spawn(move || reclaim_ok(sys.mem().reclaim_folio(folio)))
    };
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
    let sys = system(profile, 64);
    let mm = sys.create_mm().unwrap();
    mm.mmap(A, P, RW, FIXED).unwrap();
    mm.write_u64(A, 5).unwrap();
    let folio = folio_at(&sys, &mm, A);
    let reclaimer = {
        let sys = sys.clone();
        thread::spawn(move || reclaim_ok(sys.mem().reclaim_folio(folio)))
    };
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
    let sys = system(profile, 64);
    let parent = sys.create_mm().unwrap();
    parent.mmap(A, P, RW, FIXED).unwrap();
    parent.write_u64(A, 3).unwrap();
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
    check_clean(&sys);
    drop(child);
    drop(parent);
    check_nothing_left(&sys);
}

/// Reclaim racing fork: whichever wins, both processes see the forked value and then
/// only their own writes.
fn reclaim_vs_fork(profile: Profile) {
    let sys = system(profile, 64);
    let parent = sys.create_mm().unwrap();
    parent.mmap(A, P, RW, FIXED).unwrap();
    parent.write_u64(A, 1).unwrap();
    let folio = folio_at(&sys, &parent, A);
    let reclaimer = {
        let sys = sys.clone();
        thread::spawn(move || reclaim_ok(sys.mem().reclaim_folio(folio)))
    };
    let forker = {
        let sys = sys.clone();
        let parent = parent.clone();
        thread::spawn(move || sys.fork(&parent).unwrap())
    };
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
    check_clean(&sys);
    drop(child);
    drop(parent);
    check_nothing_left(&sys);
}

/// A process exits while reclaim works on its page (shared with a forked child, so
/// the folio outlives one of the two): nothing leaks, nothing is freed twice, and the
/// survivor keeps the data.
fn reclaim_vs_exit(profile: Profile) {
    let sys = system(profile, 64);
    let parent = sys.create_mm().unwrap();
    parent.mmap(A, P, RW, FIXED).unwrap();
    parent.write_u64(A, 9).unwrap();
    let child = sys.fork(&parent).unwrap();
    let folio = folio_at(&sys, &parent, A);
    let reclaimer = {
        let sys = sys.clone();
        thread::spawn(move || reclaim_ok(sys.mem().reclaim_folio(folio)))
    };
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
    // One free order-9 block (frames 512..1024) plus small ones for tables.
    let sys = system(profile, 1100);
    let mm = sys.create_mm().unwrap();
    mm.mmap(A, PMD_SIZE, RW, FIXED).unwrap();
    mm.madvise(A, PMD_SIZE, Advice::HugePage).unwrap();
    mm.write_u64(A + 3 * P, 1).unwrap();
    assert!(mm.pmd_is_huge(VirtAddr::try_new(A).unwrap()));
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
/// entry (revoking the device), 5.14 cannot reclaim it (spec 4.7, 8 item 12); in both
/// no update is lost.
fn reclaim_vs_device_exclusive(profile: Profile) {
    let sys = system(profile, 64);
    let mm = sys.create_mm().unwrap();
    mm.mmap(A, P, RW, FIXED).unwrap();
    mm.write_u64(A, 0).unwrap();
    let folio = folio_at(&sys, &mm, A);
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
    let reclaimer = {
        let sys = sys.clone();
        thread::spawn(move || reclaim_ok(sys.mem().reclaim_folio(folio)))
    };
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

/// The 2021 design with nouveau's 2025 retry fix, to isolate the mm paths: the
/// pre-fix driver self-deadlocks on any retry (shuttle_svm's leak-on-retry tests).
fn linux_5_14_fixed_driver() -> Profile {
    Profile {
        svm_atomic_unlock_on_retry: true,
        ..Profile::linux_5_14()
    }
}

macro_rules! both_eras {
    ($scenario:ident, $t615:ident, $t514:ident) => {
        #[test]
        fn $t615() {
            explored(stringify!($t615), || $scenario(Profile::linux_6_15()));
        }

        #[test]
        fn $t514() {
            explored(stringify!($t514), || $scenario(linux_5_14_fixed_driver()));
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
    let sys = system(profile, 64);
    let parent = sys.create_mm().unwrap();
    parent.mmap(A, 2 * P, RW, FIXED).unwrap();
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
    let sys = system(profile, 64);
    let parent = sys.create_mm().unwrap();
    parent.mmap(A, P, RW, FIXED).unwrap();
    parent.write_u64(A, 6).unwrap();
    let child = sys.fork(&parent).unwrap();
    sys.mem().reclaim_folio(folio_at(&sys, &parent, A)).unwrap();
    // The parent swaps it in: mapped by the parent, cached, the slot named by the
    // child's entry only.
    assert_eq!(parent.read_u64(A).unwrap(), 6);
    assert_eq!(sys.mem().swap_slots_used(), 1);
    let folio = folio_at(&sys, &parent, A);
    let reclaimer = {
        let sys = sys.clone();
        thread::spawn(move || reclaim_ok(sys.mem().reclaim_folio(folio)))
    };
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
    check_clean(&sys);
    drop(child);
    drop(parent);
    check_nothing_left(&sys);
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
    let sys = system(profile, 64);
    let mm = sys.create_mm().unwrap();
    mm.mmap(A, 2 * P, RW, FIXED).unwrap();
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
