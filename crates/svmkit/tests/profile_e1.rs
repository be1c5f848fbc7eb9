//! The 2021 design (`linux-5.14`) side by side with the 2025 one (`linux-6.15`): the
//! same operations, each era's results (spec 1.2, 2.1, 3, 4.2, 4.14, 7, 8).

mod common;

use std::sync::atomic::Ordering;

use svmkit::device::dmirror::{Dmirror, DmirrorIoctl, HmmDmirrorCmd};
use svmkit::device::hmm_tests::{self, HmmSelftest};
use svmkit::mm::mmu_notifier::{MmuNotifierEvent, NotifierCallKind, Owner, RecordingNotifier};
use svmkit::mm::{Advice, HPAGE_PMD_NR, MmUser, PMD_SIZE, Prot, Pte, PteFlags};
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Pfn, Profile, System, SystemConfig};

use common::{BASE, FIXED, P, RW, checked, system, va};

/// Converts the pages of `[start, start + n pages)` and drops the guards; returns which
/// pages came back. Through the range API where the era has one (5.14); 6.15 has none
/// (spec 2.4), so there one page at a time, each guard dropped before the next call,
/// as its callers do (spec 6.1, 6.2): a failing page gives `false`, a failing first
/// page the error (the range API's contract, for comparison).
fn convert(mm: &MmUser, start: u64, n: u64, owner: Option<Owner>) -> Result<Vec<bool>, Errno> {
    let mut g = mm.mmap_read_lock();
    let task = Task::new("drv");
    if mm.profile().has_range_api {
        let pages = mm.make_device_exclusive_range(&mut g, start, start + n * P, owner, &task)?;
        return Ok(pages.iter().map(Option::is_some).collect());
    }
    let mut got = Vec::new();
    for i in 0..n {
        match mm.make_device_exclusive(&mut g, start + i * P, owner, &task) {
            Ok(guard) => {
                drop(guard);
                got.push(true);
            }
            Err(e) if i == 0 => return Err(e),
            Err(_) => got.push(false),
        }
    }
    Ok(got)
}

fn entry(mm: &MmUser, a: u64) -> Option<svmkit::mm::SwapPte> {
    match mm.pte_get_lockless(va(a)) {
        Pte::Swap(s) if s.is_device_exclusive() => Some(s),
        _ => None,
    }
}

fn counts(sys: &System, pfn: Pfn) -> (i32, i32) {
    let f = sys.mem().page_folio(pfn).unwrap();
    (
        sys.mem().folio_ref_count(f),
        sys.mem().page(pfn).unwrap().mapcount(),
    )
}

#[test]
fn e1_counts_mapcount_dropped_in_5_14_kept_in_6_15() {
    for (profile, map_after) in [(Profile::linux_5_14(), 0), (Profile::linux_6_15(), 1)] {
        let (sys, mm) = system(profile, 256);
        mm.mmap(BASE, P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 1).unwrap();
        let page = mm.translate(va(BASE)).unwrap();
        assert_eq!(convert(&mm, BASE, 1, None).unwrap(), vec![true]);
        // One reference (the entry's) either way; the mapcount only in 6.15.
        assert_eq!(counts(&sys, page), (1, map_after), "{}", profile.name);
        checked(&sys);
        assert_eq!(mm.read_u64(BASE).unwrap(), 1);
        assert_eq!(counts(&sys, page), (1, 1), "{} after restore", profile.name);
        checked(&sys);
    }
}

#[test]
fn e1_events_of_conversion_and_restore() {
    let owner = Owner::new();
    for (profile, restore) in [
        (Profile::linux_5_14(), (MmuNotifierEvent::Exclusive, None)),
        (Profile::linux_6_15(), (MmuNotifierEvent::Clear, None)),
    ] {
        let (sys, mm) = system(profile, 256);
        mm.mmap(BASE, P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 1).unwrap();
        let rec = RecordingNotifier::new();
        mm.mmu_notifier_register(rec.clone()).unwrap();
        convert(&mm, BASE, 1, Some(owner)).unwrap();
        mm.read_u64(BASE).unwrap();
        let starts: Vec<_> = rec
            .take()
            .into_iter()
            .filter(|c| c.kind == NotifierCallKind::Start)
            .map(|c| (c.event, c.owner, c.start, c.end))
            .collect();
        assert_eq!(
            starts,
            vec![
                (MmuNotifierEvent::Exclusive, Some(owner), BASE, BASE + P),
                (restore.0, restore.1, BASE, BASE + P),
            ],
            "{}",
            profile.name
        );
        checked(&sys);
    }
}

#[test]
fn e1_thp_exclusive_over_a_thp_buffer_fails_in_5_14_and_works_in_6_15() {
    // One PMD-mapped THP; a 64-page range over its start.
    for profile in Profile::ALL {
        let (sys, mm) = system(profile, 2048);
        mm.mmap(BASE, PMD_SIZE, RW, FIXED).unwrap();
        mm.madvise(BASE, PMD_SIZE, Advice::HugePage).unwrap();
        mm.write_u64(BASE, 1).unwrap();
        let head = mm.translate(va(BASE)).unwrap();
        let got = convert(&mm, BASE, 64, None).unwrap();
        assert_eq!(got.len(), 64);
        if profile.convert_via_rmap_walk_whole_folio {
            // 5.14: tail pages come back NULL; the head's rmap walk converted all 512
            // PTEs of the THP, and dropped their mapcounts.
            assert_eq!(got.iter().filter(|g| **g).count(), 1);
            assert!(got[0]);
            assert!((0..HPAGE_PMD_NR).all(|i| entry(&mm, BASE + i * P).is_some()));
            assert!(
                (0..HPAGE_PMD_NR).all(|i| sys
                    .mem()
                    .page(Pfn::new(head.raw() + i))
                    .unwrap()
                    .mapcount()
                    == 0)
            );
        } else {
            // 6.15: page by page, exactly the 64 requested.
            assert!(got.iter().all(|g| *g));
            assert_eq!(
                (0..HPAGE_PMD_NR)
                    .filter(|i| entry(&mm, BASE + i * P).is_some())
                    .count(),
                64
            );
        }
        checked(&sys);
        assert_eq!(mm.read_u64(BASE).unwrap(), 1);
        checked(&sys);
    }
    // Through dmirror, and through the selftest port on a THP buffer.
    for (profile, want) in [
        (Profile::linux_5_14(), Err(Errno::EBUSY)),
        (Profile::linux_6_15(), Ok(())),
    ] {
        let (sys, mm) = system(profile, 4096);
        mm.mmap(BASE, 2 * PMD_SIZE, RW, FIXED).unwrap();
        mm.madvise(BASE, 2 * PMD_SIZE, Advice::HugePage).unwrap();
        mm.write_u64(BASE, 1).unwrap();
        mm.write_u64(BASE + PMD_SIZE, 1).unwrap();
        let dm = Dmirror::open(&mm).unwrap();
        let mut cmd = HmmDmirrorCmd {
            addr: BASE,
            npages: 1024,
            ..Default::default()
        };
        let mut buf = vec![0u8; 1024 * PAGE_SIZE as usize];
        let r = dm.ioctl(&Task::new("t"), DmirrorIoctl::Exclusive, &mut cmd, &mut buf);
        assert_eq!(r, want, "{}", profile.name);
        drop(dm);
        checked(&sys);
        let mut config = SystemConfig::with_frames(8192);
        config.profile = profile;
        let port = hmm_tests::run(HmmSelftest::Exclusive, config, true);
        assert_eq!(port.is_ok(), want.is_ok(), "{}: {port:?}", profile.name);
        // Without THP both eras pass the port.
        hmm_tests::run(HmmSelftest::Exclusive, config, false)
            .unwrap_or_else(|e| panic!("{}: {e}", profile.name));
    }
}

#[test]
fn e1_mprotect_downgrade_costs_a_write_fault_in_5_14() {
    for profile in Profile::ALL {
        let (sys, mm) = system(profile, 256);
        mm.mmap(BASE, P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 1).unwrap();
        convert(&mm, BASE, 1, None).unwrap();
        mm.mprotect(BASE, P, Prot::READ).unwrap();
        mm.mprotect(BASE, P, RW).unwrap();
        let e = entry(&mm, BASE).unwrap();
        assert_eq!(
            e.is_writable_device_exclusive(),
            !profile.mprotect_downgrades_entries,
            "{}",
            profile.name
        );
        let faults = mm.stats().faults.load(Ordering::Relaxed);
        mm.write_u64(BASE, 2).unwrap();
        let took = mm.stats().faults.load(Ordering::Relaxed) - faults;
        // 5.14: the restore gives a read-only PTE, the write faults again (reuse);
        // 6.15: writable at restore.
        let want = if profile.mprotect_downgrades_entries {
            2
        } else {
            1
        };
        assert_eq!(took, want, "{}", profile.name);
        assert_eq!(mm.read_u64(BASE).unwrap(), 2);
        checked(&sys);
    }
}

#[test]
fn e1_softdirty_restore_over_reports_in_5_14_and_tracks_in_6_15() {
    for profile in Profile::ALL {
        let (sys, mm) = system(profile, 256);
        mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 1).unwrap();
        mm.write_u64(BASE + P, 1).unwrap();
        convert(&mm, BASE, 2, None).unwrap();
        let rec = RecordingNotifier::new();
        mm.mmu_notifier_register(rec.clone()).unwrap();
        mm.clear_refs_soft_dirty();
        assert!(
            rec.take()
                .iter()
                .any(|c| c.event == MmuNotifierEvent::SoftDirty)
        );
        assert!(!entry(&mm, BASE).unwrap().soft_dirty);
        // A read of one page, a write of the other.
        mm.read_u64(BASE).unwrap();
        let read = mm.pte_get_lockless(va(BASE)).present().unwrap();
        let faults = mm.stats().faults.load(Ordering::Relaxed);
        mm.write_u64(BASE + P, 2).unwrap();
        let write_faults = mm.stats().faults.load(Ordering::Relaxed) - faults;
        let written = mm.pte_get_lockless(va(BASE + P)).present().unwrap();
        let bits = |p: svmkit::mm::PresentPte| {
            (
                p.is_write(),
                p.flags.contains(PteFlags::DIRTY),
                p.flags.contains(PteFlags::SOFT_DIRTY),
            )
        };
        if profile.name == "linux-5.14" {
            // pte_mkdirty sets soft-dirty on x86: the read is reported soft-dirty.
            assert_eq!(bits(read), (true, true, true));
            assert_eq!(write_faults, 1);
        } else {
            assert_eq!(bits(read), (false, false, false));
            // Restored read-only, then a write-protect fault marks it.
            assert_eq!(write_faults, 2);
        }
        assert_eq!(bits(written), (true, true, true), "{}", profile.name);
        checked(&sys);
    }
}

#[test]
fn e1_no_rollback_of_a_partly_failed_range_in_5_14() {
    let (sys, mm) = system(Profile::linux_5_14(), 2048);
    mm.mmap(BASE, PMD_SIZE, RW, FIXED).unwrap();
    mm.madvise(BASE, PMD_SIZE, Advice::HugePage).unwrap();
    mm.write_u64(BASE + 5 * P, 5).unwrap();
    // Pages 4..8 of the THP: all are tails, so every slot is NULL and the range
    // reports failure everywhere...
    let got = convert(&mm, BASE + 4 * P, 4, None).unwrap();
    assert_eq!(got, vec![false; 4]);
    // ...and nothing was converted (tails never reach the walk).
    assert!(entry(&mm, BASE + 5 * P).is_none());
    // Now a range starting at the head: the head succeeds and converts the whole
    // THP, the tails fail, and the conversions of pages 1.. stay although their slots
    // are NULL.
    let got = convert(&mm, BASE, 3, None).unwrap();
    assert_eq!(got, vec![true, false, false]);
    assert!(entry(&mm, BASE + P).is_some() && entry(&mm, BASE + 100 * P).is_some());
    // dmirror turns that into EBUSY, keeping the entries in place.
    let dm = Dmirror::open(&mm).unwrap();
    mm.read_u64(BASE).unwrap();
    let mut cmd = HmmDmirrorCmd {
        addr: BASE,
        npages: 3,
        ..Default::default()
    };
    let mut buf = vec![0u8; 3 * PAGE_SIZE as usize];
    assert_eq!(
        dm.ioctl(&Task::new("t"), DmirrorIoctl::Exclusive, &mut cmd, &mut buf),
        Err(Errno::EBUSY)
    );
    assert!(entry(&mm, BASE + 2 * P).is_some());
    assert_eq!(mm.read_u64(BASE + 5 * P).unwrap(), 5);
    drop(dm);
    checked(&sys);
}
