//! Migration of anonymous folios, and what device-exclusive entries do to it in each
//! era (spec 4.6, 8 item 8).

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use svmkit::check::ExtraRefs;
use svmkit::mm::mmu_notifier::{
    MmuNotifierEvent, MmuNotifierOps, MmuNotifierRange, NotifierCallKind, RecordingNotifier,
};
use svmkit::mm::{Advice, GupFlags, MmUser, PMD_SIZE, PageFlags, Prot, Pte, swp_type};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, Pfn, Profile};

use common::{BASE, FIXED, P, RW, checked, checked_with, folio_at, system, va};

#[test]
fn migrate_small_folio_and_thp_keep_their_data_and_mappings() {
    let (sys, parent) = system(Profile::linux_6_15(), 4096);
    parent.mmap(BASE, 4 * P, RW, FIXED).unwrap();
    parent.write_u64(BASE + P, 41).unwrap();
    let child = sys.fork(&parent).unwrap();
    let old = folio_at(&sys, &parent, BASE + P);
    let rec = RecordingNotifier::new();
    parent.mmu_notifier_register(rec.clone()).unwrap();
    let new = sys.mem().migrate_folio(old).unwrap();
    assert_ne!(new.head(), old.head());
    // Both mms (a COW-shared page) now map the new frame; the old one is free.
    assert_eq!(parent.translate(va(BASE + P)), Some(new.head()));
    assert_eq!(child.translate(va(BASE + P)), Some(new.head()));
    assert!(sys.mem().is_free_frame(old.head()));
    assert_eq!(parent.read_u64(BASE + P).unwrap(), 41);
    assert_eq!(child.read_u64(BASE + P).unwrap(), 41);
    assert!(
        rec.take()
            .iter()
            .any(|c| c.kind == NotifierCallKind::Start && c.event == MmuNotifierEvent::Clear)
    );
    // COW still works afterwards.
    child.write_u64(BASE + P, 1).unwrap();
    assert_eq!(parent.read_u64(BASE + P).unwrap(), 41);
    checked(&sys);

    // A PMD-mapped THP: split for migration, moved whole, data intact.
    let h = BASE + 4 * PMD_SIZE;
    parent.mmap(h, PMD_SIZE, RW, FIXED).unwrap();
    parent.madvise(h, PMD_SIZE, Advice::HugePage).unwrap();
    for i in 0..512 {
        parent.write_u64(h + i * P, i).unwrap();
    }
    let thp = folio_at(&sys, &parent, h);
    assert_eq!(thp.order(), 9);
    let moved = sys.mem().migrate_folio(thp).unwrap();
    assert_eq!(moved.order(), 9);
    for i in 0..512 {
        assert_eq!(
            parent.translate(va(h + i * P)),
            Some(Pfn::new(moved.head().raw() + i))
        );
        assert_eq!(parent.read_u64(h + i * P).unwrap(), i);
    }
    checked(&sys);
}

#[test]
fn migrate_fails_with_eagain_while_gup_holds_a_reference() {
    let (sys, mm) = system(Profile::linux_6_15(), 1024);
    mm.mmap(BASE, P, RW, FIXED).unwrap();
    mm.write_u64(BASE, 7).unwrap();
    let pfns = {
        let mut g = mm.mmap_read_lock();
        mm.get_user_pages(&mut g, BASE, 1, GupFlags::GET).unwrap()
    };
    let f = folio_at(&sys, &mm, BASE);
    assert_eq!(sys.mem().migrate_folio(f), Err(Errno::EAGAIN));
    // Put back as it was.
    assert_eq!(mm.translate(va(BASE)), Some(f.head()));
    let mut extra = ExtraRefs::new();
    extra.insert(f, 1);
    if let Err(e) = sys.check_with(&extra) {
        panic!("{e}");
    }
    sys.mem().put_page(pfns[0]);
    let moved = sys.mem().migrate_folio(f).unwrap();
    assert_eq!(mm.translate(va(BASE)), Some(moved.head()));
    assert_eq!(mm.read_u64(BASE).unwrap(), 7);
    checked(&sys);
}

fn make_exclusive(mm: &MmUser, addr: u64) {
    let mut g = mm.mmap_read_lock();
    drop(
        mm.make_device_exclusive(&mut g, addr, None, &Task::new("drv"))
            .unwrap(),
    );
}

#[test]
fn excl_migrate_6_15_converts_the_entry_and_5_14_cannot_migrate() {
    for profile in Profile::ALL {
        let (sys, mm) = system(profile, 1024);
        mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 9).unwrap();
        make_exclusive(&mm, BASE);
        let f = match mm.pte_get_lockless(va(BASE)) {
            Pte::Swap(s) => sys.mem().page_folio(s.pfn().unwrap()).unwrap(),
            other => panic!("{other:?}"),
        };
        let rec = RecordingNotifier::new();
        mm.mmu_notifier_register(rec.clone()).unwrap();
        let r = sys.mem().migrate_folio(f);
        if profile.walkers_handle_entries {
            // 6.15: the entry became a readable migration entry (device told with
            // Clear), then an ordinary present PTE of the new frame.
            let new = r.unwrap();
            let pte = mm.pte_get_lockless(va(BASE)).present().unwrap();
            assert_eq!(pte.pfn, new.head());
            assert!(!pte.is_write());
            assert!(
                rec.take()
                    .iter()
                    .any(|c| c.event == MmuNotifierEvent::Clear)
            );
            assert_eq!(mm.read_u64(BASE).unwrap(), 9);
            mm.write_u64(BASE, 10).unwrap();
        } else {
            // 5.14: the small folio looks unmapped (mapcount 0) but the entry holds a
            // reference: EAGAIN, every time (spec 4.6, 8 item 8).
            assert_eq!(r, Err(Errno::EAGAIN));
            assert!(
                matches!(mm.pte_get_lockless(va(BASE)), Pte::Swap(s) if s.is_device_exclusive())
            );
            assert_eq!(mm.read_u64(BASE).unwrap(), 9);
        }
        checked(&sys);
    }
}

#[test]
fn excl_migrate_offline_loop_never_succeeds_under_5_14_and_succeeds_under_6_15() {
    for profile in Profile::ALL {
        let (sys, mm) = system(profile, 256);
        mm.mmap(BASE, 8 * P, RW, FIXED).unwrap();
        for i in 0..8 {
            mm.write_u64(BASE + i * P, i).unwrap();
        }
        make_exclusive(&mm, BASE + 3 * P);
        // The frames the buffer lives in, the exclusive page's included.
        let frame = |a: u64| match mm.pte_get_lockless(va(a)) {
            Pte::Present(p) => p.pfn,
            Pte::Swap(s) => s.pfn().unwrap(),
            Pte::None => panic!("nothing at {a:#x}"),
        };
        let lo = (0..8).map(|i| frame(BASE + i * P).raw()).min().unwrap();
        // "Offline" the block of frames the buffer lives in.
        let r = sys.mem().migrate_range(Pfn::new(lo), 64, 10);
        if profile.walkers_handle_entries {
            assert_eq!(r.map(|n| n >= 8), Ok(true), "{}", profile.name);
        } else {
            let e = r.unwrap_err();
            assert_eq!(
                (e.attempts, e.errno),
                (10, Errno::EAGAIN),
                "{}",
                profile.name
            );
        }
        for i in 0..8 {
            assert_eq!(mm.read_u64(BASE + i * P).unwrap(), i);
        }
        checked(&sys);
    }
}

/// Holds a migration between installing its migration entries and removing them
/// while fork copies them: fork's `ProtectionPage` start (its VMA already linked in the
/// anon_vma, no PTL held yet) lets the migration run, and waits until the migration's
/// `Clear` range has ended on the parent (the entries are in place, the folio locked);
/// that end callback then waits until the test says fork is done.
struct ForkDuringMigration {
    armed_fork: AtomicBool,
    armed_migration: AtomicBool,
    go: Mutex<Sender<()>>,
    installed_tx: Mutex<Sender<()>>,
    installed_rx: Mutex<Receiver<()>>,
    fork_done: Mutex<Receiver<()>>,
}

/// How long a gate waits before giving up (the test then fails on its assertions
/// instead of hanging).
const GATE: Duration = Duration::from_secs(10);

impl MmuNotifierOps for ForkDuringMigration {
    fn invalidate_range_start(&self, range: &MmuNotifierRange<'_>) -> Result<(), Errno> {
        if range.event == MmuNotifierEvent::ProtectionPage
            && self.armed_fork.swap(false, Ordering::SeqCst)
        {
            let _ = self.go.lock().unwrap().send(());
            let _ = self.installed_rx.lock().unwrap().recv_timeout(GATE);
        }
        Ok(())
    }

    fn invalidate_range_end(&self, range: &MmuNotifierRange<'_>) {
        if range.event == MmuNotifierEvent::Clear
            && self.armed_migration.swap(false, Ordering::SeqCst)
        {
            let _ = self.installed_tx.lock().unwrap().send(());
            let _ = self.fork_done.lock().unwrap().recv_timeout(GATE);
        }
    }
}

/// Bug 4 of issue 14: fork copies the migration entry of an anon-exclusive page that is
/// mapped read-only (SWP_MIGRATION_READ_EXCLUSIVE). Linux's `copy_nonpresent_pte()`
/// turns it readable in parent and child for a COW mapping; copied as is, the migration
/// would map the new page anon-exclusive in both and the child's write would reach the
/// parent.
#[test]
fn fork_copies_a_readable_exclusive_migration_entry_as_readable_in_both() {
    for profile in Profile::ALL {
        let (sys, parent) = system(profile, 1024);
        parent.mmap(BASE, P, RW, FIXED).unwrap();
        parent.write_u64(BASE, 1).unwrap();
        // Anon-exclusive but mapped read-only: migration makes it READ_EXCLUSIVE.
        parent.mprotect(BASE, P, Prot::READ).unwrap();
        let old = folio_at(&sys, &parent, BASE);
        assert!(
            sys.mem()
                .page(old.head())
                .unwrap()
                .test(PageFlags::ANON_EXCLUSIVE)
        );

        let (go_tx, go_rx) = channel();
        let (installed_tx, installed_rx) = channel();
        let (done_tx, done_rx) = channel();
        parent
            .mmu_notifier_register(Arc::new(ForkDuringMigration {
                armed_fork: AtomicBool::new(true),
                armed_migration: AtomicBool::new(true),
                go: Mutex::new(go_tx),
                installed_tx: Mutex::new(installed_tx),
                installed_rx: Mutex::new(installed_rx),
                fork_done: Mutex::new(done_rx),
            }))
            .unwrap();
        let migrator = {
            let mem = Arc::clone(sys.mem());
            std::thread::spawn(move || {
                go_rx.recv_timeout(GATE).expect("fork never started");
                mem.migrate_folio(old)
            })
        };
        let child = sys.fork(&parent).unwrap();
        // Fork ran inside the migration: both hold a migration entry now.
        let entries = [&parent, &child].map(|mm| mm.pte_get_lockless(va(BASE)));
        done_tx.send(()).unwrap();
        let new = migrator.join().unwrap().unwrap();
        assert_eq!(parent.translate(va(BASE)), Some(new.head()));
        assert_eq!(child.translate(va(BASE)), Some(new.head()));

        // Writable again, then the child writes: the page is shared, so the write must
        // break COW and the parent keep its value (derived: fork semantics).
        parent.mprotect(BASE, P, RW).unwrap();
        child.mprotect(BASE, P, RW).unwrap();
        child.write_u64(BASE, 2).unwrap();
        assert_eq!(parent.read_u64(BASE).unwrap(), 1, "{}", profile.name);
        assert_eq!(child.read_u64(BASE).unwrap(), 2, "{}", profile.name);
        parent.write_u64(BASE, 3).unwrap();
        assert_eq!(child.read_u64(BASE).unwrap(), 2, "{}", profile.name);

        // The mechanism: for a COW mapping the copied entry is the readable,
        // non-exclusive one in both (Linux: copy_nonpresent_pte(), "a previously
        // exclusive entry is now shared").
        for (who, pte) in ["parent", "child"].iter().zip(entries) {
            match pte {
                Pte::Swap(s) if s.is_migration() => assert_eq!(
                    s.swp_type,
                    swp_type::SWP_MIGRATION_READ,
                    "{}: {who}'s entry",
                    profile.name
                ),
                other => panic!(
                    "{}: {who} had {other:?}, not a migration entry",
                    profile.name
                ),
            }
        }
        checked(&sys);
        assert!(
            sys.mem().bad_pages().is_empty(),
            "{:?}",
            sys.mem().bad_pages()
        );
        drop(child);
        drop(parent);
        assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
    }
}

/// A possibly pinned anon-exclusive page is not migrated, and its mapping is left as it
/// was: a present PTE stays present, and (6.15) a device-exclusive entry stays an
/// entry, because try_to_migrate_one() → folio_try_share_anon_rmap_pte() refuses the
/// page before touching the PTE (Linux 6.15 mm/rmap.c; 5.14's walker does not look at
/// entries at all, spec 8 item 13). Found by the mm_invariant soak: the model used to
/// turn the entry into a migration entry and, on the expected EAGAIN, put back a
/// present PTE.
#[test]
fn migrate_leaves_a_pinned_exclusive_page_and_its_entry_in_place() {
    for profile in Profile::ALL {
        let (sys, mm) = system(profile, 512);
        mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 5).unwrap();
        mm.write_u64(BASE + P, 6).unwrap();
        let pin = |a: u64| {
            let mut g = mm.mmap_read_lock();
            mm.pin_user_pages(&mut g, a, 1, GupFlags::WRITE).unwrap()
        };
        let pinned = [pin(BASE)[0], pin(BASE + P)[0]];
        // Page 0 stays present; page 1 becomes device-exclusive.
        {
            let mut g = mm.mmap_read_lock();
            drop(
                mm.make_device_exclusive(&mut g, BASE + P, None, &Task::new("drv"))
                    .unwrap(),
            );
        }
        let before = [
            mm.pte_get_lockless(va(BASE)),
            mm.pte_get_lockless(va(BASE + P)),
        ];
        assert!(
            matches!(before[1], Pte::Swap(s) if s.is_device_exclusive()),
            "{}",
            profile.name
        );
        for (i, a) in [BASE, BASE + P].into_iter().enumerate() {
            let f = sys.mem().page_folio(pinned[i]).unwrap();
            assert_eq!(
                sys.mem().migrate_folio(f),
                Err(Errno::EAGAIN),
                "{}",
                profile.name
            );
            assert_eq!(
                mm.pte_get_lockless(va(a)),
                before[i],
                "{}: PTE at page {i} unchanged",
                profile.name
            );
        }
        assert_eq!(mm.read_u64(BASE).unwrap(), 5);
        assert_eq!(mm.read_u64(BASE + P).unwrap(), 6);
        sys.mem().unpin_user_pages(&pinned);
        checked(&sys);
    }
}

/// A PMD-sized THP at `h`, written with its page numbers, PTE-mapped with a
/// device-exclusive entry at page 0 and every other page present: under 5.14 the
/// head's conversion turns every PTE into an entry (spec 2.1) and reading pages
/// 1..512 restores them; under 6.15 only page 0 is converted (spec 2.4).
fn thp_with_entry_at_head(sys: &svmkit::System, mm: &MmUser, h: u64) -> svmkit::mm::Folio {
    mm.mmap(h, PMD_SIZE, RW, FIXED).unwrap();
    mm.madvise(h, PMD_SIZE, Advice::HugePage).unwrap();
    for i in 0..512 {
        mm.write_u64(h + i * P, 1000 + i).unwrap();
    }
    let thp = folio_at(sys, mm, h);
    assert_eq!(thp.order(), 9);
    make_exclusive(mm, h);
    for i in 1..512 {
        assert_eq!(mm.read_u64(h + i * P).unwrap(), 1000 + i);
    }
    assert!(matches!(mm.pte_get_lockless(va(h)), Pte::Swap(s) if s.is_device_exclusive()));
    assert!(mm.pte_get_lockless(va(h + P)).present().is_some());
    thp
}

/// Spec 8 item 13: migrating a PTE-mapped THP with a device-exclusive entry. 6.15
/// (fixes v2 11/17, spec 4.6): the entry becomes a readable migration entry, then a
/// read-only present PTE of the new folio, with the data. 5.14 to 6.14: the walker
/// takes the subpage from `pte_pfn()` of the swap PTE, which on x86-64 is the entry's
/// pfn shifted right by three (derived, `swp_misread.rs`): the migration entry names
/// that frame, the folio looks unmapped, migration succeeds, and the entry outlives
/// it, which the checker reports.
#[test]
fn excl_migrate_thp_entry_garbage_subpage_in_5_14_migration_entry_in_6_15() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let (sys, mm) = system(profile, 4096);
        let h = BASE + 4 * PMD_SIZE;
        let thp = thp_with_entry_at_head(&sys, &mm, h);
        let entry_pfn = thp.head();
        let rec = RecordingNotifier::new();
        mm.mmu_notifier_register(rec.clone()).unwrap();
        let new = sys.mem().migrate_folio(thp).unwrap();
        assert!(
            rec.take()
                .iter()
                .any(|c| c.event == MmuNotifierEvent::Clear),
            "{}: the device is told (spec 4.6)",
            profile.name
        );
        for i in 1..512 {
            assert_eq!(
                mm.translate(va(h + i * P)),
                Some(Pfn::new(new.head().raw() + i))
            );
        }
        if profile.name == "linux-6.15" {
            // spec 4.6: readable migration entry, then an ordinary present PTE.
            let pte = mm.pte_get_lockless(va(h)).present().unwrap();
            assert_eq!(pte.pfn, new.head());
            assert!(!pte.is_write());
            assert_eq!(mm.read_u64(h).unwrap(), 1000);
            checked(&sys);
        } else {
            // derived: x86-64 pte_pfn() of the entry = pfn >> 3.
            match mm.pte_get_lockless(va(h)) {
                Pte::Swap(s) => {
                    assert!(s.is_migration(), "{s:?}");
                    assert_eq!(s.pfn(), Some(Pfn::new(entry_pfn.raw() >> 3)));
                }
                other => panic!("5.14: want a stale migration entry, got {other:?}"),
            }
            // The old folio is gone (migration succeeded) but its address still
            // holds a migration entry naming a frame outside it.
            assert!(sys.mem().is_free_frame(entry_pfn));
            let err = sys
                .check()
                .expect_err("5.14: the checker sees the stale entry");
            assert!(
                err.violations
                    .iter()
                    .any(|v| v.what.contains("unexpected swap-type entry")),
                "{err}"
            );
            // Zap it so the system can go (a CPU access would wait on the garbage
            // frame's folio forever, as migration_entry_wait() would).
            mm.munmap(h, PMD_SIZE).unwrap();
        }
    }
}

/// Spec 8 item 9: `remove_migration_ptes()` after a failed migration of a THP whose
/// page 0 is pinned (the walk gives up there, fixes for pinned pages: spec 4.6) and
/// page 1 is a device-exclusive entry. 6.15 (fixes v2 07/17): the PVMW_MIGRATION walk
/// matches migration entries only, the entry stays. 5.14 to 6.14: `check_pte()` took
/// the entry for a migration entry (mm/page_vma_mapped.c), so the page is mapped
/// present again (read-only, not a writable migration entry) with a new reference and
/// the entry's reference is never put: a refcount the checker sees (derived).
#[test]
fn excl_remove_migration_ptes_maps_an_entry_in_5_14_and_leaves_it_in_6_15() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let (sys, mm) = system(profile, 4096);
        let h = BASE + 4 * PMD_SIZE;
        let thp = thp_with_entry_at_head(&sys, &mm, h);
        if profile.name == "linux-6.15" {
            make_exclusive(&mm, h + P);
        } else {
            // 5.14 refuses the tail (spec 8 item 7): entries come from the head's
            // conversion, which converts every PTE again.
            make_exclusive(&mm, h);
        }
        // The pin restores page 0 (GUP faults on the entry).
        let pinned = {
            let mut g = mm.mmap_read_lock();
            mm.pin_user_pages(&mut g, h, 1, GupFlags::WRITE).unwrap()
        };
        assert!(mm.pte_get_lockless(va(h)).present().is_some());
        assert!(matches!(mm.pte_get_lockless(va(h + P)), Pte::Swap(s) if s.is_device_exclusive()));
        assert_eq!(sys.mem().migrate_folio(thp), Err(Errno::EAGAIN));
        let pte1 = mm.pte_get_lockless(va(h + P));
        let mut extra = ExtraRefs::new();
        extra.insert(thp, 1);
        if profile.name == "linux-6.15" {
            assert!(
                matches!(pte1, Pte::Swap(s) if s.is_device_exclusive()),
                "{pte1:?}"
            );
            checked_with(&sys, &extra);
        } else {
            let p = pte1
                .present()
                .expect("5.14: the entry became a present PTE");
            assert_eq!(p.pfn, Pfn::new(thp.head().raw() + 1));
            assert!(!p.is_write());
            let err = sys
                .check_with(&extra)
                .expect_err("5.14: the entry's reference leaked");
            assert!(
                err.violations.iter().any(|v| v.what.contains("ref")),
                "{err}"
            );
        }
        assert_eq!(mm.read_u64(h + P).unwrap(), 1001);
        sys.mem().unpin_user_pages(&pinned);
    }
}
