//! NUMA hinting: the balancing scan (`task_numa_work()` → `change_prot_numa()`,
//! `MM_CP_PROT_NUMA`) and the hinting fault (`do_numa_page()`), and what the scan does
//! to device-exclusive entries in each era (spec 4.2, 9 item 5).
//!
//! Sources of the expectations:
//! * Linux 6.12 (the Debian tree): `change_pte_range()` with `MM_CP_PROT_NUMA` skips
//!   the zero page and PTEs already protnone, makes the others protnone; its
//!   non-present branch turns a writable device-exclusive entry readable whatever
//!   the flags (so NUMA scans too: spec 4.2, 9 item 5 "derived from code");
//!   `change_pmd_range()` sends `MMU_NOTIFY_PROTECTION_VMA`; `do_numa_page()` gives
//!   the PTE the VMA's protection back, writable where `can_change_pte_writable()`
//!   allows; `task_numa_work()` skips inaccessible VMAs.
//! * 6.15 (fixes v2 06/17): entries are left alone; the notifier still revokes the
//!   device's mapping (test_hmm's invalidate callback filters only its own
//!   `MIGRATE`), so the driver must fault again.

mod common;

use std::sync::atomic::Ordering;

use svmkit::device::DevRights;
use svmkit::device::dmirror::{Dmirror, DmirrorIoctl, HmmDmirrorCmd};
use svmkit::mm::mmu_notifier::{MmuNotifierEvent, RecordingNotifier};
use svmkit::mm::{MmUser, Prot, Pte};
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Profile};

use common::{BASE, FIXED, P, RW, checked, system, va};

fn present(mm: &MmUser, a: u64) -> svmkit::mm::PresentPte {
    mm.pte_get_lockless(va(a)).present().unwrap()
}

fn faults(mm: &MmUser) -> u64 {
    mm.stats().faults.load(Ordering::Relaxed)
}

fn dmirror_exclusive(dm: &Dmirror, addr: u64) {
    let mut c = HmmDmirrorCmd {
        addr,
        npages: 1,
        ..Default::default()
    };
    let mut buf = vec![0u8; PAGE_SIZE as usize];
    dm.ioctl(
        &Task::new("test"),
        DmirrorIoctl::Exclusive,
        &mut c,
        &mut buf,
    )
    .unwrap();
    assert_eq!(c.cpages, 1);
}

/// The scan makes present PTEs protnone (still mapped, RSS and mapcount unchanged),
/// skips the zero page and PROT_NONE VMAs, sends one ProtectionVma range; the next
/// access takes one hinting fault and finds the page writable again (6.12
/// `do_numa_page()`); a later write takes no fault.
#[test]
fn numa_scan_marks_ptes_and_the_hinting_fault_restores_them() {
    let (sys, mm) = system(Profile::linux_6_15(), 256);
    mm.mmap(BASE, 3 * P, RW, FIXED).unwrap();
    mm.mmap(BASE + 3 * P, P, Prot::empty(), FIXED).unwrap();
    mm.write_u64(BASE, 11).unwrap();
    mm.read_u64(BASE + P).unwrap(); // the zero page
    let pfn = present(&mm, BASE).pfn;
    let rec = RecordingNotifier::new();
    mm.mmu_notifier_register(rec.clone()).unwrap();
    assert_eq!(mm.numa_scan(BASE, 4 * P), Ok(1), "only the anon page");
    let calls = rec.take();
    assert!(
        calls
            .iter()
            .any(|c| c.event == MmuNotifierEvent::ProtectionVma)
    );
    let p = present(&mm, BASE);
    assert!(p.is_protnone() && !p.is_write());
    assert_eq!(p.pfn, pfn);
    assert!(
        !present(&mm, BASE + P).is_protnone(),
        "the zero page is skipped"
    );
    assert_eq!(mm.rss_anon(), 1);
    assert_eq!(sys.mem().page(pfn).unwrap().mapcount(), 1);
    checked(&sys);
    // A second scan changes nothing: already hinting entries.
    assert_eq!(mm.numa_scan(BASE, 4 * P), Ok(0));
    let (f, h) = (
        faults(&mm),
        mm.stats().numa_hint_faults.load(Ordering::Relaxed),
    );
    assert_eq!(mm.read_u64(BASE).unwrap(), 11);
    assert_eq!(faults(&mm) - f, 1);
    assert_eq!(mm.stats().numa_hint_faults.load(Ordering::Relaxed) - h, 1);
    let p = present(&mm, BASE);
    assert!(!p.is_protnone() && p.is_write(), "{p:?}");
    let f = faults(&mm);
    mm.write_u64(BASE, 12).unwrap();
    assert_eq!(faults(&mm) - f, 0, "writable since the hinting fault");
    assert_eq!(mm.numa_scan(BASE + 1, P), Err(Errno::EINVAL));
    assert_eq!(mm.numa_scan(BASE, u64::MAX), Err(Errno::EINVAL));
    checked(&sys);
}

/// A write to a hinting entry: one hinting fault, and the write goes through
/// (writable again for an exclusive anon page), no COW copy.
#[test]
fn numa_hinting_fault_on_a_write_reuses_the_page() {
    let (sys, mm) = system(Profile::linux_6_15(), 256);
    mm.mmap(BASE, P, RW, FIXED).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    let pfn = present(&mm, BASE).pfn;
    mm.numa_scan(BASE, P).unwrap();
    let f = faults(&mm);
    mm.write_u64(BASE, 2).unwrap();
    assert_eq!(faults(&mm) - f, 1);
    assert_eq!(present(&mm, BASE).pfn, pfn);
    assert_eq!(mm.stats().cow_copies.load(Ordering::Relaxed), 0);
    assert_eq!(mm.read_u64(BASE).unwrap(), 2);
    checked(&sys);
}

/// A NUMA scan over a page dmirror holds exclusively: both eras send ProtectionVma,
/// which erases the device's atomic mapping. 5.14 also turns the entry readable
/// (the restore then maps it read-only: the CPU write takes two faults, a NUMA
/// scan's cost of spec 8 item 23); 6.15 leaves the entry writable (one fault).
#[test]
fn excl_numa_scan_downgrades_the_entry_in_5_14_and_only_revokes_in_6_15() {
    // (profile, entries the scan changed, entry still writable, faults of the write)
    for (profile, changed, writable, write_faults) in [
        (Profile::linux_5_14(), 1, false, 2),
        (Profile::linux_6_15(), 0, true, 1),
    ] {
        let (sys, mm) = system(profile, 256);
        mm.mmap(BASE, P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 5).unwrap();
        let dm = Dmirror::open(&mm).unwrap();
        dmirror_exclusive(&dm, BASE);
        let rights = |dm: &Dmirror| dm.device().lock().get(BASE).map(|p| p.rights);
        assert!(rights(&dm).unwrap().contains(DevRights::ATOMIC));
        let rec = RecordingNotifier::new();
        mm.mmu_notifier_register(rec.clone()).unwrap();
        assert_eq!(mm.numa_scan(BASE, P), Ok(changed), "{}", profile.name);
        assert!(
            rec.take()
                .iter()
                .any(|c| c.event == MmuNotifierEvent::ProtectionVma),
            "{}",
            profile.name
        );
        assert_eq!(
            rights(&dm),
            None,
            "{}: the device lost its mapping",
            profile.name
        );
        let Pte::Swap(e) = mm.pte_get_lockless(va(BASE)) else {
            panic!("{}: the entry is still there", profile.name);
        };
        assert!(e.is_device_exclusive());
        assert_eq!(
            e.is_writable_device_exclusive(),
            writable,
            "{}",
            profile.name
        );
        checked(&sys);
        let f = faults(&mm);
        mm.write_u64(BASE, 6).unwrap();
        assert_eq!(faults(&mm) - f, write_faults, "{}", profile.name);
        assert_eq!(mm.read_u64(BASE).unwrap(), 6);
        checked(&sys);
        drop(dm);
    }
}
