//! `hmm_range_fault` (Linux: mm/hmm.c) through the public API: snapshots and faults,
//! read and write requests, device-exclusive entries, errors, and the collision-retry
//! loop around it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use svmkit::mm::mmu_notifier::{MmuIntervalNotifier, RecordingNotifier};
use svmkit::mm::{Advice, HmmPfn, HmmRange, MapFlags, MmUser, PMD_SIZE, Prot, Pte};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Pfn, System, SystemConfig};

use common::va;

const RW: Prot = Prot::READ.union(Prot::WRITE);
const PRIVATE: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const BASE: u64 = 0x4000_0000;
const P: u64 = PAGE_SIZE;

fn system(frames: u64) -> (Arc<System>, MmUser) {
    let sys = System::new(SystemConfig::with_frames(frames)).unwrap();
    let mm = sys.create_mm().unwrap();
    (sys, mm)
}

fn notifier(mm: &MmUser) -> Arc<MmuIntervalNotifier> {
    mm.mm()
        .mmu_interval_notifier_insert(0, 1 << 47, RecordingNotifier::new())
        .unwrap()
}

/// `hmm_range_fault` in Linux's loop: a new read section after each `EBUSY` (the
/// faults it takes invalidate the range themselves: a COW or restore sends `Clear`).
fn once(
    mm: &MmUser,
    sub: &MmuIntervalNotifier,
    start: u64,
    npages: u64,
    req: HmmPfn,
) -> Result<Vec<HmmPfn>, Errno> {
    let mut range = HmmRange::new(sub, start, start + npages * P, req);
    for _ in 0..100 {
        range.notifier_seq = sub.read_begin();
        let mut g = mm.mmap_read_lock();
        match mm.hmm_range_fault(&mut g, &mut range) {
            Err(Errno::EBUSY) => continue,
            Err(e) => return Err(e),
            Ok(()) => return Ok(range.hmm_pfns),
        }
    }
    panic!("hmm_range_fault kept returning EBUSY");
}

#[test]
fn hmm_range_fault_snapshot_reports_without_faulting() {
    let (sys, mm) = system(1024);
    let sub = notifier(&mm);
    mm.mmap(BASE, 4 * P, RW, PRIVATE).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    assert_eq!(mm.read_u64(BASE + P).unwrap(), 0);
    let snap = once(&mm, &sub, BASE, 4, HmmPfn::request(false, false)).unwrap();
    // Page 0: a private writable page; page 1: the zero page, read-only; pages 2, 3:
    // nothing, and nothing was faulted in.
    assert_eq!(snap[0].pfn(), mm.translate(va(BASE)));
    assert!(snap[0].is_write());
    assert_eq!(snap[1].pfn(), Some(sys.mem().zero_pfn()));
    assert!(!snap[1].is_write());
    assert!(!snap[2].is_valid() && !snap[3].is_valid());
    assert!(mm.pte_get_lockless(va(BASE + 2 * P)).is_none());
    // Outside any VMA a snapshot reports an error, a fault request fails.
    let hole = once(&mm, &sub, BASE + 4 * P, 1, HmmPfn::request(false, false)).unwrap();
    assert!(hole[0].is_error());
    assert_eq!(
        once(&mm, &sub, BASE + 4 * P, 1, HmmPfn::request(true, false)).unwrap_err(),
        Errno::EFAULT
    );
    sub.remove().unwrap();
}

#[test]
fn hmm_range_fault_read_and_write_requests_fault_pages_in() {
    let (sys, mm) = system(1024);
    let sub = notifier(&mm);
    mm.mmap(BASE, 4 * P, RW, PRIVATE).unwrap();
    // A read request maps the zero page; a write request a private writable page.
    let r = once(&mm, &sub, BASE, 2, HmmPfn::request(true, false)).unwrap();
    assert_eq!(r[0].pfn(), Some(sys.mem().zero_pfn()));
    assert!(!r[0].is_write());
    let w = once(&mm, &sub, BASE, 2, HmmPfn::request(true, true)).unwrap();
    for p in &w {
        assert!(p.is_valid() && p.is_write());
        assert_ne!(p.pfn(), Some(sys.mem().zero_pfn()));
    }
    assert_eq!(w[1].pfn(), mm.translate(va(BASE + P)));
    // Per-page requests through pfn_flags_mask: only page 3 is faulted in.
    let mut range = HmmRange::new(&sub, BASE + 2 * P, BASE + 4 * P, HmmPfn::default());
    range.pfn_flags_mask = HmmPfn::VALID | HmmPfn::WRITE;
    range.hmm_pfns[1] = HmmPfn::request(true, true);
    range.notifier_seq = sub.read_begin();
    {
        let mut g = mm.mmap_read_lock();
        mm.hmm_range_fault(&mut g, &mut range).unwrap();
    }
    assert!(!range.hmm_pfns[0].is_valid());
    assert!(range.hmm_pfns[1].is_write());
    assert!(mm.pte_get_lockless(va(BASE + 2 * P)).is_none());
    // A write request in a read-only VMA: EPERM.
    mm.mprotect(BASE, 4 * P, Prot::READ).unwrap();
    assert_eq!(
        once(&mm, &sub, BASE, 1, HmmPfn::request(true, true)).unwrap_err(),
        Errno::EPERM
    );
    // PROT_NONE: no read either.
    mm.mprotect(BASE, 4 * P, Prot::empty()).unwrap();
    assert_eq!(
        once(&mm, &sub, BASE, 1, HmmPfn::request(true, false)).unwrap_err(),
        Errno::EFAULT
    );
    sub.remove().unwrap();
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}

#[test]
fn hmm_range_fault_device_exclusive_entries_snapshot_invalid_fault_restores() {
    let (sys, mm) = system(1024);
    let sub = notifier(&mm);
    mm.mmap(BASE, 2 * P, RW, PRIVATE).unwrap();
    mm.write_u64(BASE, 7).unwrap();
    let page = mm.translate(va(BASE)).unwrap();
    {
        let mut g = mm.mmap_read_lock();
        drop(
            mm.make_device_exclusive(&mut g, BASE, None, &Task::new("d"))
                .unwrap(),
        );
    }
    // A snapshot: not valid, entry left alone.
    let snap = once(&mm, &sub, BASE, 1, HmmPfn::request(false, false)).unwrap();
    assert!(!snap[0].is_valid() && !snap[0].is_error());
    assert!(matches!(mm.pte_get_lockless(va(BASE)), Pte::Swap(s) if s.is_device_exclusive()));
    // A fault request restores it through the fault path (notifying with Clear).
    let before = sub.read_begin();
    // The first pass faults (restores, invalidating the range: EBUSY), the second
    // mirrors the restored PTE.
    let r = once(&mm, &sub, BASE, 1, HmmPfn::request(true, false)).unwrap();
    assert_eq!(r[0].pfn(), Some(page));
    assert!(mm.pte_get_lockless(va(BASE)).present().is_some());
    assert!(sub.read_retry(before), "the restore invalidated the range");
    assert_eq!(mm.read_u64(BASE).unwrap(), 7);
    sub.remove().unwrap();
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}

#[test]
fn hmm_range_fault_reports_subpages_of_a_pmd_mapped_thp() {
    let (sys, mm) = system(2048);
    let sub = notifier(&mm);
    mm.mmap(BASE, PMD_SIZE, RW, PRIVATE).unwrap();
    mm.madvise(BASE, PMD_SIZE, Advice::HugePage).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    let head = mm.translate(va(BASE)).unwrap();
    let r = once(&mm, &sub, BASE + 8 * P, 3, HmmPfn::request(true, true)).unwrap();
    for (i, p) in r.iter().enumerate() {
        assert_eq!(p.pfn(), Some(Pfn::new(head.raw() + 8 + i as u64)));
        assert!(p.is_write());
    }
    assert!(mm.pmd_is_huge(va(BASE)), "mirroring does not split");
    sub.remove().unwrap();
    drop(sys);
}

#[test]
fn hmm_range_fault_ebusy_after_an_invalidation_and_the_retry_loop_succeeds() {
    let (sys, mm) = system(1024);
    let sub = notifier(&mm);
    mm.mmap(BASE, 4 * P, RW, PRIVATE).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    // An invalidation between read_begin and hmm_range_fault: EBUSY.
    let mut range = HmmRange::new(&sub, BASE, BASE + 4 * P, HmmPfn::request(true, false));
    range.notifier_seq = sub.read_begin();
    mm.madvise(BASE + 3 * P, P, Advice::DontNeed).unwrap();
    {
        let mut g = mm.mmap_read_lock();
        assert_eq!(
            mm.hmm_range_fault(&mut g, &mut range).unwrap_err(),
            Errno::EBUSY
        );
    }

    // Linux's loop, racing a thread that keeps invalidating part of the range.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let churn = {
        let (mm, stop, done) = (mm.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) && done.load(Ordering::SeqCst) < 10_000 {
                mm.madvise(BASE + 2 * P, P, Advice::DontNeed).unwrap();
                done.fetch_add(1, Ordering::SeqCst);
            }
            done.load(Ordering::SeqCst)
        })
    };
    while done.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let mut passes = 0;
    let mirrored = loop {
        passes += 1;
        assert!(passes < 100_000, "the retry loop never succeeded");
        range.notifier_seq = sub.read_begin();
        let r = {
            let mut g = mm.mmap_read_lock();
            mm.hmm_range_fault(&mut g, &mut range)
        };
        match r {
            Err(Errno::EBUSY) => continue,
            Err(e) => panic!("{e}"),
            Ok(()) => {}
        }
        // The driver lock of the recorder stands for the device's; read_retry under it.
        if sub.read_retry(range.notifier_seq) {
            continue;
        }
        break range.hmm_pfns.clone();
    };
    stop.store(true, Ordering::SeqCst);
    let invalidations = churn.join().unwrap();
    assert!(mirrored.iter().all(|p| p.is_valid()));
    assert_eq!(mirrored[0].pfn(), mm.translate(va(BASE)));
    assert!(invalidations > 0);
    sub.remove().unwrap();
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}
