//! Migration of anonymous folios, and what device-exclusive entries do to it in each
//! era (spec 4.6, 8 item 8).

mod common;

use svmkit::check::ExtraRefs;
use svmkit::mm::mmu_notifier::{MmuNotifierEvent, NotifierCallKind, RecordingNotifier};
use svmkit::mm::{Advice, GupFlags, MmUser, PMD_SIZE, Pte};
use svmkit::task::Task;
use svmkit::{Errno, Pfn, Profile};

use common::{BASE, FIXED, P, RW, checked, folio_at, system, va};

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
