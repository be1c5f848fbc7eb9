//! mlock, munlock and mlockall (Linux: mm/mlock.c), and what device-exclusive entries
//! do to an mlocked page in each era (spec 4.17 and 1.2).
//!
//! Sources of the expectations:
//! * Linux 6.12 (the unpacked Debian tree): `do_mlock()`, `apply_vma_lock_flags()`,
//!   `__mlock_posix_error_return()`, `apply_mlockall_flags()`, `mlock_pte_range()`
//!   (present PTEs only), `__mm_populate()`, `can_madv_lru_vma()`,
//!   `shrink_folio_list()` (an mlocked folio is not evictable), `try_to_unmap_one()`
//!   (a VM_LOCKED VMA restores the mlock and aborts), `dup_mmap()` (VM_LOCKED not
//!   inherited).
//! * 5.14 conversion: `page_remove_rmap()` munlocks with the last mapping; 5.14
//!   restore: `if (vma->vm_flags & VM_LOCKED) mlock_vma_page(page)` (the series'
//!   `restore_exclusive_pte()`, patch v6 5/8); 6.15: the entry keeps the mapcount and
//!   the restore adds no rmap (fixes v2 16/17), spec 1.2 "mlock unchanged".
//! * `derived`: what follows from those for an order of operations no source
//!   discusses (marked where it is used).

mod common;

use svmkit::mm::{Advice, MLOCK_ONFAULT, MapFlags, MmUser, Prot, Pte, VmFlags};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, Profile, System};

use common::{BASE, FIXED, P, RW, checked, folio_at, system, va};

fn sys(profile: Profile) -> (Arc<System>, MmUser) {
    let (sys, mm) = system(profile, 512);
    sys.mem().swapon(64).unwrap();
    (sys, mm)
}

fn make_exclusive(mm: &MmUser, addr: u64) {
    let mut g = mm.mmap_read_lock();
    drop(
        mm.make_device_exclusive(&mut g, addr, None, &Task::new("drv"))
            .unwrap(),
    );
}

fn is_exclusive(mm: &MmUser, addr: u64) -> bool {
    matches!(mm.pte_get_lockless(va(addr)), Pte::Swap(s) if s.is_device_exclusive())
}

/// The folio a device-exclusive entry or a present PTE at `addr` names.
fn folio_of(sys: &System, mm: &MmUser, addr: u64) -> svmkit::mm::Folio {
    match mm.pte_get_lockless(va(addr)) {
        Pte::Swap(s) => sys.mem().page_folio(s.pfn().unwrap()).unwrap(),
        _ => folio_at(sys, mm, addr),
    }
}

fn vma_flags(mm: &MmUser, addr: u64) -> VmFlags {
    mm.mmap_read_lock().find(va(addr)).unwrap().flags
}

/// mlock populates the range writable, marks every page mlocked (NR_MLOCK counts
/// them), and reclaim leaves them; munlock makes them evictable again (Linux 6.12
/// `do_mlock()` + `__mm_populate()`, `shrink_folio_list()`).
#[test]
fn mlock_populates_and_reclaim_skips_mlocked_pages() {
    let (sys, mm) = sys(Profile::linux_6_15());
    mm.mmap(BASE, 4 * P, RW, FIXED).unwrap();
    mm.write_u64(BASE, 7).unwrap();
    mm.mlock(BASE, 4 * P).unwrap();
    assert!(vma_flags(&mm, BASE).contains(VmFlags::LOCKED));
    assert_eq!(mm.locked_vm(), 4);
    // Every page is present and writable: the populate wrote-faulted the untouched
    // ones (a private writable mapping: FOLL_WRITE, populate_vma_page_range()).
    for i in 0..4 {
        assert!(
            matches!(mm.pte_get_lockless(va(BASE + i * P)), Pte::Present(p) if p.is_write()),
            "page {i}"
        );
        assert!(
            sys.mem()
                .folio_test_mlocked(folio_at(&sys, &mm, BASE + i * P))
        );
    }
    assert_eq!(sys.mem().nr_mlock(), 4);
    let f = folio_at(&sys, &mm, BASE);
    assert_eq!(sys.mem().reclaim_folio(f), Err(Errno::EAGAIN));
    assert_eq!(mm.reclaim_mm(16), 0, "nothing mlocked is reclaimed");
    // MADV_DONTNEED and MADV_PAGEOUT refuse mlocked memory (can_madv_lru_vma()).
    assert_eq!(mm.madvise(BASE, P, Advice::DontNeed), Err(Errno::EINVAL));
    assert_eq!(mm.madvise(BASE, P, Advice::PageOut), Err(Errno::EINVAL));
    checked(&sys);
    mm.munlock(BASE, 4 * P).unwrap();
    assert_eq!(sys.mem().nr_mlock(), 0);
    assert_eq!(mm.locked_vm(), 0);
    assert_eq!(sys.mem().reclaim_folio(f), Ok(()), "evictable again");
    assert_eq!(mm.read_u64(BASE).unwrap(), 7);
    checked(&sys);
}

/// Faults in a VM_LOCKED VMA mlock the new page (Linux: `folio_add_lru_vma()` →
/// `mlock_new_folio()`), a COW copy mlocks the copy and munlocks nothing of the
/// child's, munmap takes the pages out of NR_MLOCK, and fork does not inherit
/// VM_LOCKED (`dup_mmap()`).
#[test]
fn mlock_onfault_fault_cow_fork_and_munmap() {
    let (sys, mm) = sys(Profile::linux_6_15());
    mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
    mm.mlock2(BASE, 2 * P, MLOCK_ONFAULT).unwrap();
    assert!(vma_flags(&mm, BASE).contains(VmFlags::LOCKED | VmFlags::LOCKONFAULT));
    // On fault: nothing populated yet.
    assert_eq!(mm.pte_get_lockless(va(BASE)), Pte::None);
    assert_eq!(sys.mem().nr_mlock(), 0);
    mm.write_u64(BASE, 1).unwrap();
    assert_eq!(sys.mem().nr_mlock(), 1);
    let child = sys.fork(&mm).unwrap();
    assert!(!vma_flags(&child, BASE).contains(VmFlags::LOCKED));
    // The parent's write copies: the copy is mlocked, the shared page keeps its one
    // mlock (the child's VMA is not locked), NR_MLOCK counts both.
    mm.write_u64(BASE, 2).unwrap();
    assert_eq!(
        sys.mem().nr_mlock(),
        1,
        "the old page lost the parent's mlock"
    );
    assert!(sys.mem().folio_test_mlocked(folio_at(&sys, &mm, BASE)));
    assert!(!sys.mem().folio_test_mlocked(folio_at(&sys, &child, BASE)));
    assert_eq!(child.read_u64(BASE).unwrap(), 1);
    mm.munmap(BASE, 2 * P).unwrap();
    assert_eq!(sys.mem().nr_mlock(), 0);
    drop(child);
    checked(&sys);
}

/// mlockall(MCL_FUTURE) locks (and populates) mappings made later; munlockall
/// clears it. The errnos are Linux's: unknown flags and MCL_ONFAULT alone are EINVAL
/// (`mlockall()`); mlock2 with an unknown flag is EINVAL.
#[test]
fn mlockall_future_locks_new_mappings() {
    let (sys, mm) = sys(Profile::linux_6_15());
    assert_eq!(mm.mlockall(0), Err(Errno::EINVAL));
    assert_eq!(mm.mlockall(4), Err(Errno::EINVAL), "MCL_ONFAULT alone");
    assert_eq!(mm.mlockall(8), Err(Errno::EINVAL));
    assert_eq!(mm.mlock2(BASE, P, 2), Err(Errno::EINVAL));
    mm.mmap(BASE, P, RW, FIXED).unwrap();
    mm.mlockall(2).unwrap();
    assert!(mm.def_flags().contains(VmFlags::LOCKED));
    assert!(
        !vma_flags(&mm, BASE).contains(VmFlags::LOCKED),
        "MCL_FUTURE alone leaves current mappings"
    );
    let a = mm.mmap(BASE + 16 * P, 2 * P, RW, FIXED).unwrap();
    assert!(vma_flags(&mm, a.raw()).contains(VmFlags::LOCKED));
    assert_eq!(sys.mem().nr_mlock(), 2, "populated and mlocked at mmap");
    mm.mlockall(1).unwrap();
    assert!(
        !mm.def_flags().contains(VmFlags::LOCKED),
        "MCL_CURRENT clears MCL_FUTURE"
    );
    assert_eq!(sys.mem().nr_mlock(), 3);
    mm.munlockall().unwrap();
    assert_eq!(sys.mem().nr_mlock(), 0);
    assert_eq!(mm.locked_vm(), 0);
    // MAP_LOCKED does what mlock does.
    let b = mm
        .mmap(BASE + 32 * P, P, RW, FIXED | MapFlags::LOCKED)
        .unwrap();
    assert!(sys.mem().folio_test_mlocked(folio_at(&sys, &mm, b.raw())));
    checked(&sys);
}

/// mlock's range rules (Linux 6.12 `do_mlock()`, `apply_vma_lock_flags()`,
/// `__mlock_posix_error_return()`): an unaligned start is rounded down (no EINVAL),
/// an end that wraps is EINVAL, a length that wraps to 0 when rounded succeeds with
/// nothing done, a hole is ENOMEM (what precedes it stays locked, unpopulated), and PROT_NONE
/// cannot be populated: ENOMEM with the VMA locked all the same.
#[test]
fn mlock_errnos_are_linuxs() {
    let (sys, mm) = sys(Profile::linux_6_15());
    mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
    mm.mmap(BASE + 3 * P, P, Prot::empty(), FIXED).unwrap();
    mm.mlock(BASE + 5, 1).unwrap();
    assert!(sys.mem().folio_test_mlocked(folio_at(&sys, &mm, BASE)));
    assert_eq!(sys.mem().nr_mlock(), 1, "only the page holding the byte");
    assert_eq!(mm.mlock(BASE, u64::MAX - 2 * P), Err(Errno::EINVAL));
    assert_eq!(mm.mlock(BASE, u64::MAX), Ok(()), "PAGE_ALIGN wraps to 0");
    assert_eq!(mm.munlock(BASE, u64::MAX - 2 * P), Err(Errno::EINVAL));
    assert_eq!(
        mm.mlock(BASE, 3 * P),
        Err(Errno::ENOMEM),
        "a hole after 2 pages"
    );
    // The VMAs before the hole are locked, but do_mlock() returns before the populate.
    assert!(vma_flags(&mm, BASE + P).contains(VmFlags::LOCKED));
    assert_eq!(mm.pte_get_lockless(va(BASE + P)), Pte::None);
    assert_eq!(sys.mem().nr_mlock(), 1);
    assert_eq!(
        mm.mlock(BASE + 2 * P, P),
        Err(Errno::ENOMEM),
        "starts in the hole"
    );
    assert_eq!(
        mm.mlock(BASE + 3 * P, P),
        Err(Errno::ENOMEM),
        "PROT_NONE: EFAULT→ENOMEM"
    );
    assert!(vma_flags(&mm, BASE + 3 * P).contains(VmFlags::LOCKED));
    assert_eq!(mm.munlock(BASE + 2 * P, P), Err(Errno::ENOMEM));
    assert_eq!(mm.mlock(BASE, 0), Ok(()));
    checked(&sys);
}

/// Converting an mlocked page to a device-exclusive entry: 5.14 drops the mapcount
/// and with it the mlock (the page is not mlocked, NR_MLOCK one short, while the
/// device holds it), and the restore re-mlocks (5.14 `restore_exclusive_pte()`);
/// 6.15 keeps both (spec 1.2, 4.17).
#[test]
fn excl_mlock_conversion_munlocks_in_5_14_and_keeps_it_in_6_15() {
    // (profile, mlocked while exclusive, NR_MLOCK while exclusive)
    for (profile, locked_excl, nr_excl) in [
        (Profile::linux_5_14(), false, 0),
        (Profile::linux_6_15(), true, 1),
    ] {
        let (sys, mm) = sys(profile);
        mm.mmap(BASE, P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 3).unwrap();
        mm.mlock(BASE, P).unwrap();
        assert_eq!(sys.mem().nr_mlock(), 1);
        make_exclusive(&mm, BASE);
        assert!(is_exclusive(&mm, BASE));
        let f = folio_of(&sys, &mm, BASE);
        assert_eq!(
            sys.mem().folio_test_mlocked(f),
            locked_excl,
            "{}",
            profile.name
        );
        assert_eq!(sys.mem().nr_mlock(), nr_excl, "{}", profile.name);
        checked(&sys);
        // The CPU access restores; both eras end mlocked.
        assert_eq!(mm.read_u64(BASE).unwrap(), 3);
        assert!(sys.mem().folio_test_mlocked(f), "{}", profile.name);
        assert_eq!(sys.mem().nr_mlock(), 1, "{}", profile.name);
        assert_eq!(sys.mem().reclaim_folio(f), Err(Errno::EAGAIN));
        checked(&sys);
    }
}

/// munlock while the device holds the page: `mlock_pte_range()` skips the entry in
/// both eras. 5.14 had already munlocked at conversion and the restore in the
/// now-unlocked VMA does not mlock: the page ends evictable. 6.15 never munlocked and
/// never restores the rmap: the page stays mlocked after munlock (stranded, until it
/// is freed; derived from 6.15's `mlock_pte_range()` and restore).
#[test]
fn excl_munlock_over_an_entry_strands_the_mlock_in_6_15() {
    // (profile, mlocked after munlock and restore, NR_MLOCK then)
    for (profile, locked_after, nr_after) in [
        (Profile::linux_5_14(), false, 0),
        (Profile::linux_6_15(), true, 1),
    ] {
        let (sys, mm) = sys(profile);
        mm.mmap(BASE, P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 4).unwrap();
        mm.mlock(BASE, P).unwrap();
        make_exclusive(&mm, BASE);
        mm.munlock(BASE, P).unwrap();
        assert!(is_exclusive(&mm, BASE), "munlock does not touch the entry");
        assert_eq!(mm.read_u64(BASE).unwrap(), 4);
        let f = folio_at(&sys, &mm, BASE);
        assert_eq!(
            sys.mem().folio_test_mlocked(f),
            locked_after,
            "{}",
            profile.name
        );
        assert_eq!(sys.mem().nr_mlock(), nr_after, "{}", profile.name);
        // Freeing the page clears a stranded mlock (free_pages_prepare()).
        mm.munmap(BASE, P).unwrap();
        assert_eq!(sys.mem().nr_mlock(), 0, "{}", profile.name);
        checked(&sys);
    }
}

/// mlock over a page the device holds: the populate's write GUP restores the entry
/// (the device loses it, both eras). 5.14's restore adds the rmap in a VM_LOCKED VMA
/// and so mlocks; 6.15's restore adds none, so the page is present in a VM_LOCKED
/// VMA but not mlocked until reclaim meets it, and `try_to_unmap_one()`'s VM_LOCKED
/// check mlocks it and gives up (derived from 6.15's restore and 6.12's
/// `mlock_pte_range()` + `try_to_unmap_one()`).
#[test]
fn excl_mlock_over_an_entry_mlocks_only_at_reclaim_in_6_15() {
    // (profile, mlocked right after mlock)
    for (profile, locked_now) in [
        (Profile::linux_5_14(), true),
        (Profile::linux_6_15(), false),
    ] {
        let (sys, mm) = sys(profile);
        mm.mmap(BASE, P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 5).unwrap();
        make_exclusive(&mm, BASE);
        mm.mlock(BASE, P).unwrap();
        assert!(!is_exclusive(&mm, BASE), "the populate restored the entry");
        let f = folio_at(&sys, &mm, BASE);
        assert_eq!(
            sys.mem().folio_test_mlocked(f),
            locked_now,
            "{}",
            profile.name
        );
        // Reclaim does not take it in either era, and leaves it mlocked.
        assert_eq!(
            sys.mem().reclaim_folio(f),
            Err(Errno::EAGAIN),
            "{}",
            profile.name
        );
        assert!(sys.mem().folio_test_mlocked(f), "{}", profile.name);
        assert_eq!(sys.mem().nr_mlock(), 1, "{}", profile.name);
        assert_eq!(mm.read_u64(BASE).unwrap(), 5);
        checked(&sys);
    }
}
