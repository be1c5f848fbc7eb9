//! khugepaged and MADV_COLLAPSE (mm/khugepaged.rs): 512 PTE-mapped pages become one
//! PMD-mapped THP with their data; the errnos of `madvise_collapse_errno()`; and a
//! device-exclusive entry in the range per era: restored (the device revoked) and
//! collapsed before 6.19, left alone with the collapse refused from 6.19 (spec 4.9,
//! 9.4, 10.1).

mod common;

use svmkit::device::DevRights;
use svmkit::device::dmirror::{Dmirror, DmirrorIoctl, HmmDmirrorCmd};
use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::mm::{Advice, GupFlags, HPAGE_PMD_SIZE, MmUser, Pte, ScanResult, ThpMode};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, Profile, System};

use common::{FIXED, P, RW, checked, system, va};

/// A 2 MiB-aligned base with room for two huge ranges.
const H: u64 = 0x4000_0000;
const LEN: u64 = HPAGE_PMD_SIZE;

/// A process with `[H, H + 2 MiB)` mapped and every page written with its index + 1
/// (THP mode `madvise` without MADV_HUGEPAGE: 512 small pages).
fn filled(profile: Profile) -> (Arc<System>, MmUser) {
    let (sys, mm) = system(profile, 2048);
    mm.mmap(H, LEN, RW, FIXED).unwrap();
    for i in 0..512 {
        mm.write_u64(H + i * P, i + 1).unwrap();
    }
    assert!(!mm.pmd_is_huge(va(H)));
    (sys, mm)
}

fn assert_data_kept(mm: &MmUser) {
    for i in 0..512 {
        assert_eq!(mm.read_u64(H + i * P).unwrap(), i + 1, "page {i}");
    }
}

#[test]
fn madv_collapse_makes_one_pmd_mapped_thp_with_the_data_in_every_era() {
    for profile in [
        Profile::linux_5_14(),
        Profile::linux_6_15(),
        Profile::linux_7_1(),
    ] {
        let (sys, mm) = filled(profile);
        let free_before = sys.mem().nr_free_pages();
        // Linux (mm/khugepaged.c, madvise_collapse()): 0 when every range collapsed.
        assert_eq!(
            mm.madvise(H, LEN, Advice::Collapse),
            Ok(()),
            "{}",
            profile.name
        );
        assert!(mm.pmd_is_huge(va(H)), "{}", profile.name);
        assert_data_kept(&mm);
        // Derived: 512 RSS pages stay 512, now one folio; the 512 old pages are freed
        // and one order-9 folio taken (the old PTE table stays, as the deposit).
        assert_eq!(mm.rss_anon(), 512);
        assert_eq!(sys.mem().nr_free_pages(), free_before);
        assert_eq!(
            mm.stats()
                .thp_collapses
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        checked(&sys);
        // Linux: an already PMD-mapped range counts as collapsed (SCAN_PMD_MAPPED).
        assert_eq!(mm.madvise(H, LEN, Advice::Collapse), Ok(()));
    }
}

#[test]
fn madv_collapse_fills_holes_with_zeroes_and_counts_them() {
    let (sys, mm) = system(Profile::linux_6_15(), 2048);
    mm.mmap(H, LEN, RW, FIXED).unwrap();
    mm.write_u64(H + 7 * P, 70).unwrap();
    mm.read_u64(H + 9 * P).unwrap(); // the zero page
    assert_eq!(mm.rss_anon(), 1);
    // Linux: MADV_COLLAPSE has no max_ptes_none limit (cc->is_khugepaged false).
    assert_eq!(mm.madvise(H, LEN, Advice::Collapse), Ok(()));
    assert!(mm.pmd_is_huge(va(H)));
    assert_eq!(mm.read_u64(H + 7 * P).unwrap(), 70);
    assert_eq!(mm.read_u64(H + 9 * P).unwrap(), 0);
    assert_eq!(mm.read_u64(H + 100 * P).unwrap(), 0);
    // Linux: __collapse_huge_page_copy_succeeded() adds MM_ANONPAGES for each none
    // or zero-page PTE the THP now maps.
    assert_eq!(mm.rss_anon(), 512);
    checked(&sys);
}

#[test]
fn madv_collapse_errnos_as_madvise_collapse_errno() {
    let (sys, mm) = filled(Profile::linux_6_15());
    // Linux: a range inside one PMD that holds no whole 2 MiB: hend < hstart, the
    // count never matches, SCAN_FAIL's errno EINVAL.
    assert_eq!(
        mm.madvise(H + P, 2 * P, Advice::Collapse),
        Err(Errno::EINVAL)
    );
    // Linux: do_madvise(): an unaligned start is EINVAL before any VMA is looked at.
    assert_eq!(mm.madvise(H + 1, LEN, Advice::Collapse), Err(Errno::EINVAL));
    // A pinned page: references beyond its mappings, SCAN_PAGE_COUNT: EAGAIN
    // ("resource temporarily unavailable", madvise_collapse_errno()).
    let pinned = {
        let mut g = mm.mmap_read_lock();
        mm.get_user_pages(&mut g, H + 3 * P, 1, GupFlags::PIN | GupFlags::WRITE)
            .unwrap()
    };
    assert_eq!(mm.madvise(H, LEN, Advice::Collapse), Err(Errno::EAGAIN));
    assert!(!mm.pmd_is_huge(va(H)));
    assert_data_kept(&mm);
    for pfn in pinned {
        sys.mem().unpin_user_page(pfn);
    }
    checked(&sys);
    // MADV_NOHUGEPAGE forbids it: thp_vma_allowable_order() false, EINVAL.
    assert_eq!(mm.madvise(H, LEN, Advice::NoHugePage), Ok(()));
    assert_eq!(mm.madvise(H, LEN, Advice::Collapse), Err(Errno::EINVAL));
    assert!(!mm.pmd_is_huge(va(H)));
    assert_eq!(mm.madvise(H, LEN, Advice::HugePage), Ok(()));
    // Linux: a hole in the range is ENOMEM (madvise_walk_vmas()), after the advice
    // was applied to the mapped part: that part is collapsed.
    assert_eq!(mm.madvise(H, 2 * LEN, Advice::Collapse), Err(Errno::ENOMEM));
    assert!(mm.pmd_is_huge(va(H)));
    assert_data_kept(&mm);
    checked(&sys);
}

#[test]
fn madv_collapse_of_a_read_only_range_is_einval() {
    let (sys, mm) = system(Profile::linux_6_15(), 2048);
    mm.mmap(H, LEN, RW, FIXED).unwrap();
    // Only the zero page: no PTE is writable, SCAN_PAGE_RO, whose errno is the
    // default EINVAL (madvise_collapse_errno()).
    mm.read_u64(H).unwrap();
    assert_eq!(mm.madvise(H, LEN, Advice::Collapse), Err(Errno::EINVAL));
    checked(&sys);
}

#[test]
fn khugepaged_collapses_only_where_the_policy_allows_within_its_limits() {
    let (sys, mm) = filled(Profile::linux_6_15());
    // THP mode madvise without MADV_HUGEPAGE: khugepaged does not look at the VMA
    // (hugepage_vma_check() with TVA_ENFORCE_SYSFS).
    assert_eq!(mm.khugepaged_scan(), vec![]);
    assert_eq!(mm.madvise(H, LEN, Advice::HugePage), Ok(()));
    // All 512 PTEs young (just written): SCAN_SUCCEED.
    assert_eq!(mm.khugepaged_scan(), vec![(H, ScanResult::Succeed)]);
    assert!(mm.pmd_is_huge(va(H)));
    assert_data_kept(&mm);
    checked(&sys);
    // Already huge next time.
    assert_eq!(mm.khugepaged_scan(), vec![(H, ScanResult::PmdMapped)]);
    // With THP off nothing is scanned.
    sys.mem().set_thp_mode(ThpMode::Never);
    assert_eq!(mm.khugepaged_scan(), vec![]);
}

#[test]
fn khugepaged_leaves_a_range_with_no_page_under_its_max_ptes_none() {
    let (sys, mm) = system(Profile::linux_6_15(), 2048);
    mm.mmap(H, LEN, RW, FIXED).unwrap();
    mm.madvise(H, LEN, Advice::HugePage).unwrap();
    // A read fault maps the zero page (no THP for reads in the model).
    for i in 0..512 {
        mm.read_u64(H + i * P).unwrap();
    }
    // Linux: 512 zero-page PTEs exceed khugepaged_max_ptes_none (511).
    assert_eq!(mm.khugepaged_scan(), vec![(H, ScanResult::ExceedNonePte)]);
    assert!(!mm.pmd_is_huge(va(H)));
    checked(&sys);
}

/// A GPU doing an atomic on page 5 of the range: the PTE is device-exclusive and the
/// device maps the page atomically.
fn with_device_atomic(mm: &MmUser) -> SvmAtomic {
    let gpu = SvmAtomic::new(mm, "gpu", SvmFlaws::default(), 4).unwrap();
    gpu.atomic_fetch_add(&Task::new("gpu"), H + 5 * P, 1000)
        .unwrap();
    assert!(exclusive(mm, H + 5 * P));
    assert!(atomic_rights(&gpu, H + 5 * P));
    gpu
}

fn exclusive(mm: &MmUser, a: u64) -> bool {
    matches!(mm.pte_get_lockless(va(a)), Pte::Swap(s) if s.is_device_exclusive())
}

fn atomic_rights(gpu: &SvmAtomic, a: u64) -> bool {
    gpu.device()
        .lock()
        .get(a)
        .is_some_and(|p| p.rights.contains(DevRights::ATOMIC))
}

/// Before 6.19: the entry counts as a swap entry, the swap-in's do_swap_page()
/// restores it (the device is told and drops its atomic mapping), and the collapse
/// goes on. Derived from the 6.12 tree's mm/khugepaged.c (spec 9.4: derived).
fn collapse_revokes_the_device_in(profile: Profile, after_collapse: Result<u64, Errno>) {
    let (sys, mm) = filled(profile);
    let gpu = with_device_atomic(&mm);
    assert_eq!(
        mm.madvise(H, LEN, Advice::Collapse),
        Ok(()),
        "{}",
        profile.name
    );
    assert!(mm.pmd_is_huge(va(H)), "{}", profile.name);
    assert!(
        !atomic_rights(&gpu, H + 5 * P),
        "{}: the device kept its mapping",
        profile.name
    );
    // The device's add is in the new THP.
    assert_eq!(mm.read_u64(H + 5 * P).unwrap(), 6 + 1000);
    checked(&sys);
    // The device faults again, now on a PMD-mapped THP: what the 6.19 patch calls
    // counter-productive ("the next conversion will PTE-map it again").
    let again = gpu.atomic_fetch_add(&Task::new("gpu"), H + 5 * P, 1);
    assert_eq!(again, after_collapse, "{}", profile.name);
    assert!(!mm.pmd_is_huge(va(H)), "FOLL_SPLIT_PMD split the new THP");
    gpu.close();
    checked(&sys);
}

/// 5.14: page 5 is a tail page of the new THP, which the range API refuses (spec
/// 2.1, bug 7): EINVAL from nouveau's fault.
#[test]
fn before_6_19_madv_collapse_restores_the_exclusive_entry_and_collapses_5_14() {
    collapse_revokes_the_device_in(Profile::linux_5_14(), Err(Errno::EINVAL));
}

/// 6.15: the split inside the read section makes the pass retry, and each later
/// pass's GUP restores the entry the previous one left: EBUSY at the bound, as
/// examples/nouveau-starvation-thp.toml (spec 10.3, seen on 6.12; derived here).
#[test]
fn before_6_19_madv_collapse_restores_the_exclusive_entry_and_collapses_6_15() {
    collapse_revokes_the_device_in(Profile::linux_6_15(), Err(Errno::EBUSY));
}

/// From 6.19 ("mm/khugepaged: abort collapse scan on non-swap entries"): the scan
/// stops at the entry with SCAN_PTE_NON_PRESENT, leaves it and the device's mapping,
/// and MADV_COLLAPSE answers EINVAL (madvise_collapse_errno()'s default).
#[test]
fn from_6_19_madv_collapse_leaves_the_exclusive_entry_and_fails_einval_7_1() {
    let (sys, mm) = filled(Profile::linux_7_1());
    let gpu = with_device_atomic(&mm);
    assert_eq!(mm.madvise(H, LEN, Advice::Collapse), Err(Errno::EINVAL));
    assert!(!mm.pmd_is_huge(va(H)));
    assert!(exclusive(&mm, H + 5 * P));
    assert!(
        atomic_rights(&gpu, H + 5 * P),
        "the device lost its mapping"
    );
    // The device's next atomic needs no fault.
    let faults = gpu
        .stats()
        .faults
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        gpu.atomic_fetch_add(&Task::new("gpu"), H + 5 * P, 1)
            .unwrap(),
        1006
    );
    assert_eq!(
        gpu.stats()
            .faults
            .load(std::sync::atomic::Ordering::Relaxed),
        faults
    );
    // khugepaged stops at the same place (spec 10.1).
    mm.madvise(H, LEN, Advice::HugePage).unwrap();
    assert_eq!(mm.khugepaged_scan(), vec![(H, ScanResult::PteNonPresent)]);
    assert!(exclusive(&mm, H + 5 * P));
    checked(&sys);
    // Once the CPU takes the page back, the range collapses.
    assert_eq!(mm.read_u64(H + 5 * P).unwrap(), 1007);
    assert_eq!(mm.madvise(H, LEN, Advice::Collapse), Ok(()));
    assert!(mm.pmd_is_huge(va(H)));
    gpu.close();
    checked(&sys);
}

/// The same switch on its own, over the 6.15 base: only it changes the outcome.
#[test]
fn the_switch_alone_decides_the_6_19_behaviour() {
    let mut p = Profile::linux_6_15();
    p.khugepaged_aborts_on_non_swap_entries = true;
    let (sys, mm) = filled(p);
    let gpu = with_device_atomic(&mm);
    // As linux-7.1 above (the 6.19 patch): EINVAL, the entry kept.
    assert_eq!(mm.madvise(H, LEN, Advice::Collapse), Err(Errno::EINVAL));
    assert!(exclusive(&mm, H + 5 * P));
    gpu.close();
    checked(&sys);
}

/// khugepaged before 6.19 with one exclusive entry: it counts as swap (1 <= 64), and
/// with every other PTE young (>= 256 referenced) the collapse runs and restores it.
/// Derived from hpage_collapse_scan_pmd() of the 6.12 tree (spec 9.4: derived).
#[test]
fn before_6_19_khugepaged_restores_the_exclusive_entry_and_collapses_6_15() {
    let (sys, mm) = filled(Profile::linux_6_15());
    mm.madvise(H, LEN, Advice::HugePage).unwrap();
    let gpu = with_device_atomic(&mm);
    assert_eq!(mm.khugepaged_scan(), vec![(H, ScanResult::Succeed)]);
    assert!(!atomic_rights(&gpu, H + 5 * P));
    assert_eq!(mm.read_u64(H + 5 * P).unwrap(), 1006);
    gpu.close();
    checked(&sys);
}

/// A PTE-mapped THP with an entry. 5.14's conversion walks the rmap and converts
/// every PTE of the folio (spec 2.1): all 512 are entries, no PTE is present and
/// writable, the scan ends with SCAN_PAGE_RO and MADV_COLLAPSE answers EINVAL; the
/// device keeps the page. 6.15 converts one PTE and keeps its mapcount (spec 1.2,
/// 4.13): the swap-in restores it and the collapse goes on. Derived from
/// hpage_collapse_scan_pmd() and madvise_collapse_errno() (6.12 tree) and those spec
/// sections. (dmirror, whose exclusive ioctl has no retry loop to starve on a THP.)
#[test]
fn a_pte_mapped_thp_with_an_entry_collapses_6_15_but_is_busy_5_14() {
    for (profile, entries, want) in [
        (Profile::linux_5_14(), 512, Err(Errno::EINVAL)),
        (Profile::linux_6_15(), 1, Ok(())),
    ] {
        let (sys, mm) = system(profile, 4096);
        mm.mmap(H, LEN, RW, FIXED).unwrap();
        mm.madvise(H, LEN, Advice::HugePage).unwrap();
        mm.write_u64(H, 1).unwrap();
        assert!(mm.pmd_is_huge(va(H)));
        let dm = Dmirror::open(&mm).unwrap();
        let mut buf = vec![0u8; P as usize];
        // Page 0, the head: both eras convert it (5.14 refuses tail pages).
        dmirror_exclusive(&dm, &mut buf).unwrap();
        assert!(exclusive(&mm, H), "{}", profile.name);
        let converted = (0..512).filter(|i| exclusive(&mm, H + i * P)).count();
        assert_eq!(converted, entries, "{}", profile.name);
        assert_eq!(
            mm.madvise(H, LEN, Advice::Collapse),
            want,
            "{}",
            profile.name
        );
        assert_eq!(exclusive(&mm, H), want.is_err(), "{}", profile.name);
        assert_eq!(mm.pmd_is_huge(va(H)), want.is_ok(), "{}", profile.name);
        assert_eq!(mm.read_u64(H).unwrap(), 1);
        drop(dm);
        checked(&sys);
    }
}

fn dmirror_exclusive(dm: &Dmirror, buf: &mut [u8]) -> Result<(), Errno> {
    let mut cmd = HmmDmirrorCmd {
        addr: H,
        npages: 1,
        ..Default::default()
    };
    dm.ioctl(&Task::new("test"), DmirrorIoctl::Exclusive, &mut cmd, buf)
}
