//! Device-exclusive entries on the 6.15 design (spec 2.4, 3, 4 "E2"), through the
//! public API: conversion, the CPU-fault restore, and every mm path that meets them.

mod common;

use svmkit::check::ExtraRefs;
use svmkit::mm::mmu_notifier::{
    MmuNotifierEvent, NotifierCall, NotifierCallKind, Owner, RecordingNotifier,
};
use svmkit::mm::{
    Advice, ExclusiveFolio, Folio, HPAGE_PMD_NR, MapFlags, MmUser, PMD_SIZE, PageFlags, Prot, Pte,
    PteFlags, SwapPte,
};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Pfn, Profile, System, SystemConfig};

use common::{checked, checked_with, va};

const RW: Prot = Prot::READ.union(Prot::WRITE);
const PRIVATE: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const BASE: u64 = 0x4000_0000;
const P: u64 = PAGE_SIZE;

fn system_with(profile: Profile, frames: u64) -> (Arc<System>, MmUser) {
    let mut config = SystemConfig::with_frames(frames);
    config.profile = profile;
    let sys = System::new(config).unwrap();
    let mm = sys.create_mm().unwrap();
    (sys, mm)
}

/// The restore's event under `profile` (5.14: Exclusive, 6.15: Clear; owner none).
fn restore_event(profile: Profile) -> MmuNotifierEvent {
    profile.restore_event.event()
}

/// The mapcount a converted small page has under `profile`.
fn entry_map(profile: Profile) -> i32 {
    i32::from(profile.mapcount_kept_on_entry)
}

fn make(mm: &MmUser, addr: u64, owner: Option<Owner>) -> Result<ExclusiveFolio, Errno> {
    let mut g = mm.mmap_read_lock();
    mm.make_device_exclusive(&mut g, addr, owner, &Task::new("driver"))
}

fn entry(mm: &MmUser, addr: u64) -> Option<SwapPte> {
    match mm.pte_get_lockless(va(addr)) {
        Pte::Swap(s) if s.is_device_exclusive() => Some(s),
        _ => None,
    }
}

fn present(mm: &MmUser, addr: u64) -> svmkit::mm::PresentPte {
    mm.pte_get_lockless(va(addr))
        .present()
        .unwrap_or_else(|| panic!("no present PTE at {addr:#x}"))
}

fn counts(sys: &System, pfn: Pfn) -> (i32, i32) {
    let f = sys.mem().page_folio(pfn).unwrap();
    (
        sys.mem().folio_ref_count(f),
        sys.mem().page(pfn).unwrap().mapcount(),
    )
}

/// (kind, event, start, end, owner) of the classic `start` calls.
fn starts(calls: &[NotifierCall]) -> Vec<(MmuNotifierEvent, u64, u64, Option<Owner>)> {
    calls
        .iter()
        .filter(|c| c.kind == NotifierCallKind::Start)
        .map(|c| (c.event, c.start, c.end, c.owner))
        .collect()
}

fn recorder(mm: &MmUser) -> Arc<RecordingNotifier> {
    let rec = RecordingNotifier::new();
    mm.mmu_notifier_register(rec.clone()).unwrap();
    rec
}

#[test]
fn excl_basic_convert_then_cpu_read_and_write_restore_one_page_each() {
    for profile in Profile::ALL {
        excl_basic_convert_then_cpu_read_and_write_restore_one_page_each_in(profile);
    }
}

fn excl_basic_convert_then_cpu_read_and_write_restore_one_page_each_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    mm.mmap(BASE, 4 * P, RW, PRIVATE).unwrap();
    for i in 0..4 {
        mm.write_u64(BASE + i * P, 100 + i).unwrap();
    }
    let rec = recorder(&mm);
    let owner = Owner::new();
    let page = present(&mm, BASE + P).pfn;
    let g = make(&mm, BASE + P + 123, Some(owner)).unwrap();
    assert_eq!((g.page(), g.addr()), (page, va(BASE + P)));
    // The entry: the same pfn, the writable type (6.15's only one), soft-dirty
    // carried (a fresh write made the PTE soft-dirty).
    let e = entry(&mm, BASE + P).unwrap();
    assert_eq!(e.pfn(), Some(page));
    assert!(e.is_writable_device_exclusive() && e.soft_dirty && !e.uffd_wp);
    // Spec 1.2: the entry holds the PTE's reference, the guard the GUP one; the
    // mapcount is kept (6.15) or dropped (5.14); the folio is locked and the PTE's
    // dirty bit moved to it.
    let f = g.folio();
    assert_eq!(counts(&sys, page), (2, entry_map(profile)));
    assert!(sys.mem().folio_test_locked(f));
    assert!(sys.mem().folio_test(f, PageFlags::DIRTY));
    assert_eq!(mm.rss_anon(), 4);
    assert_eq!(
        starts(&rec.take()),
        vec![(
            MmuNotifierEvent::Exclusive,
            BASE + P,
            BASE + 2 * P,
            Some(owner)
        )]
    );
    let mut extra = ExtraRefs::new();
    extra.insert(f, 1);
    checked_with(&sys, &extra);
    drop(g);
    assert_eq!(counts(&sys, page), (1, entry_map(profile)));
    assert!(!sys.mem().folio_test_locked(f));
    checked(&sys);

    // A CPU read restores exactly this page, with the era's event and no owner.
    assert_eq!(mm.read_u64(BASE + P).unwrap(), 101);
    assert_eq!(
        starts(&rec.take()),
        vec![(restore_event(profile), BASE + P, BASE + 2 * P, None)]
    );
    let pte = present(&mm, BASE + P);
    assert_eq!(pte.pfn, page);
    // 6.15: can_change_pte_writable (anon-exclusive, VMA writable, no tracking),
    // dirty because the folio is; 5.14: the entry was writable, so writable + dirty.
    assert!(pte.is_write() && pte.is_dirty());
    assert_eq!(counts(&sys, page), (1, 1));

    // A CPU write restores one page too and lands.
    drop(make(&mm, BASE + 2 * P, Some(owner)).unwrap());
    rec.take();
    mm.write_u64(BASE + 2 * P + 8, 7).unwrap();
    assert_eq!(
        starts(&rec.take()),
        vec![(restore_event(profile), BASE + 2 * P, BASE + 3 * P, None)]
    );
    assert_eq!(mm.read_u64(BASE + 2 * P).unwrap(), 102);
    assert_eq!(mm.read_u64(BASE + 2 * P + 8).unwrap(), 7);
    assert!(entry(&mm, BASE).is_none() && entry(&mm, BASE + 3 * P).is_none());
    checked(&sys);
}

#[test]
fn excl_basic_restore_writability_follows_soft_dirty_and_uffd_wp_tracking() {
    for profile in Profile::ALL {
        excl_basic_restore_writability_follows_soft_dirty_and_uffd_wp_tracking_in(profile);
    }
}

fn excl_basic_restore_writability_follows_soft_dirty_and_uffd_wp_tracking_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    mm.mmap(BASE, 4 * P, RW, PRIVATE).unwrap();
    for i in 0..4 {
        mm.write_u64(BASE + i * P, i).unwrap();
    }
    // Soft-dirty tracking turned on after conversion: the entry loses its soft-dirty
    // bit. 6.15: the restore may not make the PTE writable (a write must fault to be
    // tracked) and leaves it clean (spec 3; 4.14). 5.14: writable, dirty and, through
    // x86's pte_mkdirty, soft-dirty even for a read (over-reporting, spec 8 item 23).
    drop(make(&mm, BASE, None).unwrap());
    mm.clear_refs_soft_dirty();
    assert!(!entry(&mm, BASE).unwrap().soft_dirty);
    assert_eq!(mm.read_u64(BASE).unwrap(), 0);
    let pte = present(&mm, BASE);
    let e1 = profile.restore_writability == svmkit::RestoreWritability::EntryBitAlwaysDirty;
    assert_eq!(pte.is_write(), e1);
    assert_eq!(pte.flags.contains(PteFlags::SOFT_DIRTY), e1);
    assert_eq!(pte.flags.contains(PteFlags::DIRTY), e1);
    // The write faults, is reused in place, and is tracked.
    mm.write_u64(BASE, 9).unwrap();
    let pte = present(&mm, BASE);
    assert!(pte.is_write() && pte.flags.contains(PteFlags::SOFT_DIRTY));

    // uffd-wp set on the entry: the restore gives a read-only, uffd-wp PTE.
    drop(make(&mm, BASE + P, None).unwrap());
    mm.uffd_writeprotect(BASE + P, P, true).unwrap();
    assert!(entry(&mm, BASE + P).unwrap().uffd_wp);
    assert_eq!(mm.read_u64(BASE + P).unwrap(), 1);
    let pte = present(&mm, BASE + P);
    assert!(!pte.is_write() && pte.flags.contains(PteFlags::UFFD_WP));
    mm.uffd_writeprotect(BASE + P, P, false).unwrap();
    mm.write_u64(BASE + P, 2).unwrap();
    assert_eq!(mm.read_u64(BASE + P).unwrap(), 2);
    checked(&sys);
}

#[test]
fn excl_thp_converts_single_ptes_of_a_pte_mapped_thp() {
    for profile in Profile::ALL {
        excl_thp_converts_single_ptes_of_a_pte_mapped_thp_in(profile);
    }
}

fn excl_thp_converts_single_ptes_of_a_pte_mapped_thp_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 2048);
    mm.mmap(BASE, PMD_SIZE, RW, PRIVATE).unwrap();
    mm.madvise(BASE, PMD_SIZE, Advice::HugePage).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    assert!(mm.pmd_is_huge(va(BASE)));
    let thp = sys
        .mem()
        .page_folio(mm.translate(va(BASE)).unwrap())
        .unwrap();
    if profile.reject_tail_pages {
        // 5.14: a tail page is refused (spec 2.1, bug 7), after FOLL_SPLIT_PMD has
        // PTE-mapped the THP; nothing is converted.
        assert_eq!(make(&mm, BASE + 7 * P, None).unwrap_err(), Errno::EBUSY);
        assert!(!mm.pmd_is_huge(va(BASE)));
        assert!((0..HPAGE_PMD_NR).all(|i| entry(&mm, BASE + i * P).is_none()));
        checked(&sys);
        return;
    }
    let rec = recorder(&mm);
    // One subpage: FOLL_SPLIT_PMD PTE-maps the THP (the folio stays large); exactly
    // that PTE becomes an entry.
    let g = make(&mm, BASE + 7 * P, None).unwrap();
    assert_eq!(g.folio(), thp);
    assert_eq!(g.page(), Pfn::new(thp.head().raw() + 7));
    assert!(!mm.pmd_is_huge(va(BASE)));
    for i in 0..HPAGE_PMD_NR {
        let a = BASE + i * P;
        if i == 7 {
            assert_eq!(entry(&mm, a).unwrap().pfn(), Some(g.page()));
        } else {
            assert_eq!(present(&mm, a).pfn, Pfn::new(thp.head().raw() + i));
        }
    }
    assert_eq!(
        starts(&rec.take()),
        vec![
            (MmuNotifierEvent::Clear, BASE, BASE + PMD_SIZE, None),
            (
                MmuNotifierEvent::Exclusive,
                BASE + 7 * P,
                BASE + 8 * P,
                None
            ),
        ]
    );
    drop(g);
    // All 512, page by page (the one already exclusive is restored and converted
    // again).
    for i in 0..HPAGE_PMD_NR {
        drop(make(&mm, BASE + i * P, None).unwrap());
    }
    assert!((0..HPAGE_PMD_NR).all(|i| entry(&mm, BASE + i * P).is_some()));
    assert_eq!(sys.mem().folio_ref_count(thp), HPAGE_PMD_NR as i32);
    checked(&sys);
    assert_eq!(mm.read_u64(BASE).unwrap(), 1);
    checked(&sys);
}

#[test]
fn excl_again_restores_first_then_converts() {
    for profile in Profile::ALL {
        excl_again_restores_first_then_converts_in(profile);
    }
}

fn excl_again_restores_first_then_converts_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    mm.mmap(BASE, P, RW, PRIVATE).unwrap();
    mm.write_u64(BASE, 5).unwrap();
    let (a, b) = (Owner::new(), Owner::new());
    drop(make(&mm, BASE, Some(a)).unwrap());
    let rec = recorder(&mm);
    let g = make(&mm, BASE, Some(b)).unwrap();
    // GUP met A's entry and faulted: the restore told A (no owner), then B's
    // conversion (Exclusive, owner B).
    assert_eq!(
        starts(&rec.take()),
        vec![
            (restore_event(profile), BASE, BASE + P, None),
            (MmuNotifierEvent::Exclusive, BASE, BASE + P, Some(b)),
        ]
    );
    assert!(entry(&mm, BASE).is_some());
    drop(g);
    assert_eq!(mm.read_u64(BASE).unwrap(), 5);
    checked(&sys);
}

#[test]
fn excl_fork_restores_in_the_parent_and_cows() {
    for profile in Profile::ALL {
        excl_fork_restores_in_the_parent_and_cows_in(profile);
    }
}

fn excl_fork_restores_in_the_parent_and_cows_in(profile: Profile) {
    let (sys, parent) = system_with(profile, 1024);
    parent.mmap(BASE, 2 * P, RW, PRIVATE).unwrap();
    parent.write_u64(BASE, 1).unwrap();
    parent.write_u64(BASE + P, 2).unwrap();
    drop(make(&parent, BASE, None).unwrap());
    let rec = recorder(&parent);
    let child = sys.fork(&parent).unwrap();
    // The fork's ProtectionPage range is the revocation; the restore adds nothing.
    assert_eq!(
        starts(&rec.take()),
        vec![(MmuNotifierEvent::ProtectionPage, BASE, BASE + 2 * P, None)]
    );
    // Restored in the parent, then shared COW: no entry anywhere.
    assert!(entry(&parent, BASE).is_none() && entry(&child, BASE).is_none());
    assert_eq!(present(&parent, BASE).pfn, present(&child, BASE).pfn);
    assert!(!present(&parent, BASE).is_write());
    parent.write_u64(BASE, 10).unwrap();
    child.write_u64(BASE, 20).unwrap();
    assert_eq!(parent.read_u64(BASE).unwrap(), 10);
    assert_eq!(child.read_u64(BASE).unwrap(), 20);
    checked(&sys);
    drop(child);

    // A driver still holds the folio lock (a leaked guard): fork cannot restore the
    // entry, fails with ENOMEM, and the child is gone.
    let (folio, page): (Folio, Pfn) = make(&parent, BASE + P, None).unwrap().leak();
    let mms = sys.mms().len();
    assert_eq!(sys.fork(&parent).unwrap_err(), Errno::ENOMEM);
    assert_eq!(sys.mms().len(), mms);
    assert_eq!(entry(&parent, BASE + P).unwrap().pfn(), Some(page));
    let mut extra = ExtraRefs::new();
    extra.insert(folio, 1);
    checked_with(&sys, &extra);
    sys.mem().folio_unlock(folio);
    sys.mem().folio_put(folio);
    // Now fork works, and the parent's value survived.
    let child = sys.fork(&parent).unwrap();
    assert_eq!(child.read_u64(BASE + P).unwrap(), 2);
    checked(&sys);
}

#[test]
fn excl_mprotect_leaves_entries_and_the_restore_follows_the_vma() {
    for profile in Profile::ALL {
        excl_mprotect_leaves_entries_and_the_restore_follows_the_vma_in(profile);
    }
}

fn excl_mprotect_leaves_entries_and_the_restore_follows_the_vma_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    mm.mmap(BASE, 2 * P, RW, PRIVATE).unwrap();
    mm.write_u64(BASE, 3).unwrap();
    drop(make(&mm, BASE, None).unwrap());
    let before = entry(&mm, BASE).unwrap();
    mm.mprotect(BASE, 2 * P, Prot::READ).unwrap();
    // 6.15: no downgrade, the entry is untouched; 5.14: turned readable.
    let after = entry(&mm, BASE).unwrap();
    if profile.mprotect_downgrades_entries {
        assert!(!after.is_writable_device_exclusive());
        assert_eq!(
            (after.pfn(), after.soft_dirty),
            (before.pfn(), before.soft_dirty)
        );
    } else {
        assert_eq!(after, before);
    }
    assert_eq!(mm.read_u64(BASE).unwrap(), 3);
    assert!(!present(&mm, BASE).is_write(), "VM_WRITE is gone");
    mm.mprotect(BASE, 2 * P, RW).unwrap();
    mm.write_u64(BASE, 4).unwrap();
    assert_eq!(mm.read_u64(BASE).unwrap(), 4);
    checked(&sys);
}

#[test]
fn excl_zap_munmap_dontneed_and_exit_while_the_guard_is_held() {
    for profile in Profile::ALL {
        excl_zap_munmap_dontneed_and_exit_while_the_guard_is_held_in(profile);
    }
}

fn excl_zap_munmap_dontneed_and_exit_while_the_guard_is_held_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    mm.mmap(BASE, 4 * P, RW, PRIVATE).unwrap();
    for i in 0..4 {
        mm.write_u64(BASE + i * P, i).unwrap();
    }
    let rec = recorder(&mm);
    let g1 = make(&mm, BASE, None).unwrap();
    let g2 = make(&mm, BASE + P, None).unwrap();
    let g3 = make(&mm, BASE + 2 * P, None).unwrap();
    rec.take();
    // Zap takes no folio lock: it proceeds while the driver holds it.
    mm.munmap(BASE, P).unwrap();
    mm.madvise(BASE + P, P, Advice::DontNeed).unwrap();
    assert_eq!(
        starts(&rec.take()),
        vec![
            (MmuNotifierEvent::Unmap, BASE, BASE + P, None),
            (MmuNotifierEvent::Clear, BASE + P, BASE + 2 * P, None),
        ]
    );
    // The entries are gone, the frames live on with the guards' references only.
    assert!(entry(&mm, BASE + P).is_none());
    assert_eq!(mm.read_u64(BASE + P).unwrap(), 0);
    for g in [&g1, &g2] {
        assert_eq!(counts(&sys, g.page()), (1, 0));
    }
    let mut extra = ExtraRefs::new();
    for g in [&g1, &g2, &g3] {
        extra.insert(g.folio(), 1);
    }
    checked_with(&sys, &extra);
    let free = sys.mem().nr_free_pages();
    drop(g1);
    drop(g2);
    assert_eq!(
        sys.mem().nr_free_pages(),
        free + 2,
        "freed at the guards' drop"
    );
    // Exit with a guard still held: Release, then Unmap; freed at the drop.
    let keep = mm.mm().clone();
    drop(mm);
    let calls = rec.take();
    assert_eq!(
        calls.last().map(|c| c.kind),
        Some(NotifierCallKind::Release)
    );
    drop(keep);
    let mut extra = ExtraRefs::new();
    extra.insert(g3.folio(), 1);
    checked_with(&sys, &extra);
    drop(g3);
    checked(&sys);
    assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
}

#[test]
fn excl_errors_are_linux_errnos_and_change_nothing() {
    for profile in Profile::ALL {
        excl_errors_are_linux_errnos_and_change_nothing_in(profile);
    }
}

fn excl_errors_are_linux_errnos_and_change_nothing_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    mm.mmap(BASE, P, RW, PRIVATE).unwrap();
    mm.mmap(BASE + 2 * P, P, Prot::READ, PRIVATE).unwrap();
    mm.mmap(
        BASE + 4 * P,
        P,
        RW,
        MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED,
    )
    .unwrap();
    mm.write_u64(BASE, 1).unwrap();
    mm.write_u64(BASE + 4 * P, 1).unwrap();
    let free = sys.mem().nr_free_pages();
    // Outside any VMA; in a VMA without write permission; a kernel address.
    assert_eq!(make(&mm, BASE + P, None).unwrap_err(), Errno::EFAULT);
    assert_eq!(make(&mm, BASE + 2 * P, None).unwrap_err(), Errno::EFAULT);
    assert_eq!(
        make(&mm, 0xffff_8000_0000_0000, None).unwrap_err(),
        Errno::EFAULT
    );
    assert_eq!(make(&mm, u64::MAX, None).unwrap_err(), Errno::EFAULT);
    // Shared anonymous memory is not anonymous to the mm: 6.15 says EOPNOTSUPP, 5.14
    // gave a NULL page (EBUSY here, as its callers reported it).
    let want = if profile.convert_via_rmap_walk_whole_folio {
        Errno::EBUSY
    } else {
        Errno::EOPNOTSUPP
    };
    assert_eq!(make(&mm, BASE + 4 * P, None).unwrap_err(), want);
    // A killed task that would have to wait for the folio lock.
    let page = mm.translate(va(BASE)).unwrap();
    let folio = sys.mem().page_folio(page).unwrap();
    let held = sys.mem().folio_lock(folio).leak();
    let task = Task::new("victim");
    task.kill();
    let err = {
        let mut g = mm.mmap_read_lock();
        mm.make_device_exclusive(&mut g, BASE, None, &task)
            .unwrap_err()
    };
    // 6.15 waits killably and is interrupted; 5.14 only tried the lock.
    let want = if profile.range_api_trylock_no_retry {
        Errno::EBUSY
    } else {
        Errno::EINTR
    };
    assert_eq!(err, want);
    sys.mem().folio_unlock(held);
    // Nothing changed: no entry, no leaked reference or frame.
    assert!(entry(&mm, BASE).is_none());
    assert_eq!(sys.mem().nr_free_pages(), free);
    checked(&sys);
    // What Linux accepts is accepted: an unaligned address is aligned down.
    let g = make(&mm, BASE + 17, None).unwrap();
    assert_eq!(g.addr(), va(BASE));
    // The range API (5.14 to 6.14): one slot per page GUP found, None where the page
    // could not be converted; an error only when the first page fails. 6.15 has no
    // range API (spec 2.4): ENOSYS, nothing converted.
    drop(g);
    let range = |start: u64| {
        let mut g = mm.mmap_read_lock();
        mm.make_device_exclusive_range(&mut g, start, start + 3 * P, None, &Task::new("d"))
    };
    if profile.has_range_api {
        let results = range(BASE).unwrap();
        assert_eq!(results[0].as_ref().map(|g| g.addr()), Some(va(BASE)));
        // 5.14 (spec 2.1): one GUP of the range stops at the hole: a short count.
        assert_eq!(results.len(), 1);
        drop(results);
        assert_eq!(range(BASE + P).unwrap_err(), Errno::EFAULT);
    } else {
        let before = mm.pte_get_lockless(va(BASE));
        assert_eq!(range(BASE).unwrap_err(), Errno::ENOSYS);
        // Nothing changed: the entry the unaligned call made is still in place.
        assert_eq!(mm.pte_get_lockless(va(BASE)), before);
        assert!(entry(&mm, BASE).is_some());
    }
    checked(&sys);
}

/// Issue 14 item 6: the range API up to `u64::MAX` must stop at the first page GUP
/// cannot get, not walk or allocate a slot per page of the range (spec 2.1: GUP
/// returns a short count, "the tail of the range was not even looked up").
#[test]
fn excl_range_api_to_u64_max_stops_at_the_first_hole_in_5_14() {
    let (sys, mm) = system_with(Profile::linux_5_14(), 256);
    mm.mmap(BASE, 4 * P, RW, PRIVATE).unwrap();
    for i in 0..4 {
        mm.write_u64(BASE + i * P, i).unwrap();
    }
    let results = {
        let mut g = mm.mmap_read_lock();
        mm.make_device_exclusive_range(&mut g, BASE, u64::MAX, None, &Task::new("d"))
            .unwrap()
    };
    // Four mapped pages, then the hole (spec 2.1): four slots, all converted.
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(Option::is_some));
    drop(results);
    assert!((0..4).all(|i| entry(&mm, BASE + i * P).is_some()));
    // A range that starts in the hole: the first page fails, so GUP's EFAULT.
    let mut g = mm.mmap_read_lock();
    assert_eq!(
        mm.make_device_exclusive_range(&mut g, BASE + 4 * P, u64::MAX, None, &Task::new("d"))
            .unwrap_err(),
        Errno::EFAULT
    );
    // An empty range (end at or below start): nothing (derived: GUP of 0 pages).
    assert!(
        mm.make_device_exclusive_range(&mut g, BASE, BASE, None, &Task::new("d"))
            .unwrap()
            .is_empty()
    );
    drop(g);
    for i in 0..4 {
        assert_eq!(mm.read_u64(BASE + i * P).unwrap(), i);
    }
    checked(&sys);
}

/// 6.15 removed `make_device_exclusive_range()` (fixes v2 03/17, spec 2.4): the model
/// refuses it with ENOSYS under the 6.15 profile, for any range, and changes nothing.
#[test]
fn excl_range_api_is_enosys_in_6_15() {
    let (sys, mm) = system_with(Profile::linux_6_15(), 256);
    mm.mmap(BASE, 2 * P, RW, PRIVATE).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    let free = sys.mem().nr_free_pages();
    let mut g = mm.mmap_read_lock();
    for (start, end) in [(BASE, BASE + P), (BASE, u64::MAX), (0, 0), (u64::MAX, 0)] {
        assert_eq!(
            mm.make_device_exclusive_range(&mut g, start, end, None, &Task::new("d"))
                .unwrap_err(),
            Errno::ENOSYS
        );
    }
    drop(g);
    assert!(entry(&mm, BASE).is_none() && entry(&mm, BASE + P).is_none());
    assert_eq!(sys.mem().nr_free_pages(), free);
    checked(&sys);
}

/// The scenario that self-deadlocked the model's old 6.15 range form (issue 14 item 6):
/// pages 0 and 1 of one PTE-mapped large folio, page 1 already device-exclusive from
/// an earlier call whose guard was dropped. Converting page 0, then page 1, one page at
/// a time with each guard dropped before the next call (as nouveau and 6.15 test_hmm
/// do, spec 6.1, 6.2) completes: page 1's GUP restores its entry, which can take the
/// folio lock because nobody holds it any more (spec 2.4, 3).
#[test]
fn excl_per_page_over_a_large_folio_with_an_entry_already_completes_in_6_15() {
    let (sys, mm) = system_with(Profile::linux_6_15(), 2048);
    mm.mmap(BASE, PMD_SIZE, RW, PRIVATE).unwrap();
    mm.madvise(BASE, PMD_SIZE, Advice::HugePage).unwrap();
    mm.write_u64(BASE, 10).unwrap();
    mm.write_u64(BASE + P, 11).unwrap();
    let thp = sys
        .mem()
        .page_folio(mm.translate(va(BASE)).unwrap())
        .unwrap();
    assert_eq!(thp.nr_pages(), HPAGE_PMD_NR);
    // The earlier call: page 1 (FOLL_SPLIT_PMD PTE-maps the THP; the folio stays
    // large, spec 2.4).
    drop(make(&mm, BASE + P, None).unwrap());
    assert!(entry(&mm, BASE + P).is_some());
    let rec = recorder(&mm);
    for a in [BASE, BASE + P] {
        let g = make(&mm, a, None).unwrap();
        assert_eq!(g.folio(), thp);
        drop(g);
    }
    // Page 1's entry was restored (a Clear, owner none: the 6.15 restore, spec 3)
    // and converted again; page 0 converted once.
    assert_eq!(
        starts(&rec.take()),
        vec![
            (MmuNotifierEvent::Exclusive, BASE, BASE + P, None),
            (MmuNotifierEvent::Clear, BASE + P, BASE + 2 * P, None),
            (MmuNotifierEvent::Exclusive, BASE + P, BASE + 2 * P, None),
        ]
    );
    assert!(entry(&mm, BASE).is_some() && entry(&mm, BASE + P).is_some());
    assert!(!sys.mem().folio_test(thp, PageFlags::LOCKED));
    checked(&sys);
    assert_eq!(mm.read_u64(BASE).unwrap(), 10);
    assert_eq!(mm.read_u64(BASE + P).unwrap(), 11);
    checked(&sys);
}

/// Lifting uffd-wp from a restored PTE, on the two Debian kernels' presets. The
/// expectations are what the kernels did with `oracle/corpus/uffd-wp-exclusive.toml`
/// (goldens `oracle/golden/6.12/` and `6.1/`, the write after the unprotect): 6.12.117
/// took no fault, the PTE was writable again; 6.1.192 took one.
#[test]
fn excl_basic_uffd_unprotect_of_a_restored_pte_upgrades_write_on_6_12_not_6_1() {
    for (profile, writable_again) in [(Profile::linux_6_12(), true), (Profile::linux_6_1(), false)]
    {
        let (sys, mm) = system_with(profile, 256);
        mm.mmap(BASE, P, RW, PRIVATE).unwrap();
        mm.write_u64(BASE, 1).unwrap();
        let mut g = mm.mmap_read_lock();
        let held = mm.make_device_exclusive_range(&mut g, BASE, BASE + P, None, &Task::new("d"));
        drop((held, g));
        assert!(entry(&mm, BASE).is_some(), "{}", profile.name);
        mm.uffd_writeprotect(BASE, P, true).unwrap();
        assert_eq!(mm.read_u64(BASE).unwrap(), 1);
        assert!(!present(&mm, BASE).is_write(), "{}", profile.name);
        mm.uffd_writeprotect(BASE, P, false).unwrap();
        let pte = present(&mm, BASE);
        assert!(!pte.flags.contains(PteFlags::UFFD_WP), "{}", profile.name);
        assert_eq!(pte.is_write(), writable_again, "{}", profile.name);
        mm.write_u64(BASE, 2).unwrap();
        assert_eq!(mm.read_u64(BASE).unwrap(), 2);
        checked(&sys);
    }
}

/// smaps `Rss:` counts device-exclusive entries as resident and the zero page not
/// (fs/proc/task_mmu.c of the Debian 6.12 tree, `smaps_pte_entry()`; the goldens of
/// `oracle/corpus/rss-exclusive.toml` show it on 6.12.117 and 6.1.192).
#[test]
fn excl_basic_smaps_rss_counts_entries_not_the_zero_page() {
    for profile in Profile::ALL {
        let (sys, mm) = system_with(profile, 256);
        mm.mmap(BASE, 4 * P, RW, PRIVATE).unwrap();
        assert_eq!(mm.smaps_rss(BASE), Some(0), "{}", profile.name);
        mm.write_u64(BASE, 1).unwrap();
        mm.write_u64(BASE + P, 2).unwrap();
        assert_eq!(mm.read_u64(BASE + 2 * P).unwrap(), 0);
        assert_eq!(mm.smaps_rss(BASE + 3 * P), Some(2 * P), "{}", profile.name);
        drop(make(&mm, BASE, None).unwrap());
        assert!(entry(&mm, BASE).is_some());
        assert_eq!(mm.smaps_rss(BASE), Some(2 * P), "{}", profile.name);
        mm.madvise(BASE + P, P, Advice::DontNeed).unwrap();
        assert_eq!(mm.smaps_rss(BASE), Some(P), "{}", profile.name);
        // No VMA there, or no address at all: nothing to show.
        assert_eq!(mm.smaps_rss(BASE + 4 * P), None);
        assert_eq!(mm.smaps_rss(1 << 63), None);
        checked(&sys);
    }
}

/// MADV_POPULATE_WRITE over device-exclusive entries faults them in as GUP does: each
/// is restored (with the restore's notifier, which revokes the device) and left
/// present and writable; MADV_POPULATE_READ maps the zero page where nothing was. The
/// errnos are `madvise_populate()`'s (mm/madvise.c and mm/gup.c of the Debian 6.12
/// tree: no VMA ENOMEM, an access the VMA forbids EINVAL). Restore: spec 3; the
/// populate itself: derived.
#[test]
fn excl_basic_madvise_populate_restores_entries() {
    for profile in Profile::ALL {
        let (sys, mm) = system_with(profile, 256);
        mm.mmap(BASE, 4 * P, RW, PRIVATE).unwrap();
        mm.write_u64(BASE, 1).unwrap();
        mm.write_u64(BASE + P, 2).unwrap();
        drop(make(&mm, BASE, None).unwrap());
        drop(make(&mm, BASE + P, None).unwrap());
        let rec = recorder(&mm);
        mm.madvise(BASE, 2 * P, Advice::PopulateWrite).unwrap();
        let restores: Vec<_> = starts(&rec.take())
            .into_iter()
            .filter(|s| s.0 == restore_event(profile))
            .collect();
        assert_eq!(restores.len(), 2, "{}: {restores:?}", profile.name);
        for i in 0..2 {
            assert!(entry(&mm, BASE + i * P).is_none(), "{}", profile.name);
            assert!(present(&mm, BASE + i * P).is_write(), "{}", profile.name);
        }
        // Read populate of untouched pages: the zero page, read-only.
        mm.madvise(BASE + 2 * P, 2 * P, Advice::PopulateRead)
            .unwrap();
        let z = present(&mm, BASE + 3 * P);
        assert!(z.is_special() && !z.is_write(), "{}", profile.name);
        assert_eq!(mm.read_u64(BASE).unwrap(), 1);
        assert_eq!(mm.read_u64(BASE + P).unwrap(), 2);
        // Errors: a read-only VMA for a write populate, a PROT_NONE one, a hole.
        mm.mmap(BASE + 8 * P, P, Prot::READ, PRIVATE).unwrap();
        mm.mmap(BASE + 9 * P, P, Prot::empty(), PRIVATE).unwrap();
        assert_eq!(
            mm.madvise(BASE + 8 * P, P, Advice::PopulateWrite),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            mm.madvise(BASE + 9 * P, P, Advice::PopulateRead),
            Err(Errno::EINVAL)
        );
        assert_eq!(mm.madvise(BASE + 8 * P, P, Advice::PopulateRead), Ok(()));
        // The hole at BASE + 4 pages: the pages before it are populated, then ENOMEM.
        mm.mmap(BASE + 10 * P, P, RW, PRIVATE).unwrap();
        assert_eq!(
            mm.madvise(BASE + 3 * P, 3 * P, Advice::PopulateWrite),
            Err(Errno::ENOMEM)
        );
        assert!(present(&mm, BASE + 3 * P).is_write());
        assert_eq!(
            mm.madvise(BASE + 1, P, Advice::PopulateRead),
            Err(Errno::EINVAL)
        );
        assert_eq!(mm.madvise(BASE, 0, Advice::PopulateWrite), Ok(()));
        checked(&sys);
    }
}
