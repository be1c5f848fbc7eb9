//! The UVM-style multi-page driver (device/uvm.rs; NVIDIA's uvm_hmm.c, spec 10.2) on
//! OS threads: a region made exclusive in one pass thanks to its owner filter, the CPU
//! revoking one page, and the shim's consequences per era, all derived from the
//! driver's code (spec 10.2: "All derived from code").

mod common;

use std::time::{Duration, Instant};

use svmkit::device::DevRights;
use svmkit::device::uvm::{Uvm, UvmError};
use svmkit::mm::{Advice, HPAGE_PMD_SIZE, MmUser, Prot, Pte};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, Profile};

use common::{FIXED, P, RW, checked, folio_at, system, va};

const H: u64 = 0x4000_0000;

fn exclusive(mm: &MmUser, a: u64) -> bool {
    matches!(mm.pte_get_lockless(va(a)), Pte::Swap(s) if s.is_device_exclusive())
}

fn atomic(gpu: &Uvm, a: u64) -> bool {
    gpu.device()
        .lock()
        .get(a)
        .is_some_and(|p| p.rights.contains(DevRights::ATOMIC))
}

/// Four small pages, both APIs: the driver's own Exclusive events are filtered by
/// owner (UVM: `range->owner == &g_uvm_global`), so one pass converts and maps all
/// four. Derived from hmm_invalidate() and hmm_block_atomic_fault_locked().
#[test]
fn a_region_becomes_exclusive_in_one_pass_in_both_eras() {
    for profile in Profile::ALL {
        let (sys, mm) = system(profile, 256);
        mm.mmap(H, 4 * P, RW, FIXED).unwrap();
        for i in 0..4 {
            mm.write_u64(H + i * P, 10 * i).unwrap();
        }
        let gpu = Uvm::new(&mm, "uvm", 4, 4);
        let task = Task::new("uvm");
        assert_eq!(
            gpu.atomic_fetch_add(&task, H + 2 * P, 5),
            Ok(20),
            "{}",
            profile.name
        );
        for i in 0..4 {
            assert!(exclusive(&mm, H + i * P), "{} page {i}", profile.name);
            assert!(atomic(&gpu, H + i * P), "{} page {i}", profile.name);
        }
        let passes = gpu
            .stats()
            .passes
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(passes, 1, "{}", profile.name);
        // Mapped atomically: the next atomic on another page of the region needs no
        // fault.
        assert_eq!(gpu.atomic_fetch_add(&task, H, 1), Ok(0));
        assert_eq!(
            gpu.stats()
                .faults
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // A CPU read restores page 1 (Clear in 6.15, Exclusive with no owner in 5.14:
        // neither is the driver's own, spec 3, 6.4): the device loses that page only.
        assert_eq!(mm.read_u64(H + P).unwrap(), 10);
        assert!(!atomic(&gpu, H + P), "{}", profile.name);
        assert!(atomic(&gpu, H + 3 * P), "{}", profile.name);
        checked(&sys);
        gpu.close();
        checked(&sys);
    }
}

/// An error on the region's first page is reported as it is (the shim's loop never
/// ran, `PTR_ERR()` of the error pointer): EFAULT from GUP on a read-only VMA
/// (make_device_exclusive needs a writable VMA, spec 2.4).
#[test]
fn an_error_on_the_first_page_is_a_real_errno() {
    for profile in Profile::ALL {
        let (sys, mm) = system(profile, 256);
        mm.mmap(H, 2 * P, Prot::READ, FIXED).unwrap();
        let gpu = Uvm::new(&mm, "uvm", 2, 4);
        let r = gpu.atomic_fault(&Task::new("uvm"), H, 2);
        assert_eq!(r, Err(UvmError::Errno(Errno::EFAULT)), "{}", profile.name);
        gpu.close();
        checked(&sys);
    }
}

/// A region whose second page cannot be converted (a read-only VMA after a writable
/// one). 6.15's single-page shim fails on page 2 and its error path overwrites the
/// error pointer with page 1's pointer: no errno comes back (BadStatus), page 1 is
/// released (unlocked, put) but stays device-exclusive. 5.14's range API returns
/// page 1 and a short count, the shim pads NULL, and every pass finds the NULL
/// again: a livelock (UVM retries without end). Derived from
/// hmm_make_device_exclusive_range() and hmm_block_atomic_fault_locked().
#[test]
fn an_error_after_the_first_page_is_no_errno_6_15_and_a_livelock_5_14() {
    for (profile, want) in [
        (Profile::linux_6_15(), Err(UvmError::BadStatus)),
        (Profile::linux_5_14(), Err(UvmError::Livelock)),
    ] {
        let (sys, mm) = system(profile, 256);
        mm.mmap(H, P, RW, FIXED).unwrap();
        mm.mmap(H + P, P, Prot::READ, FIXED).unwrap();
        mm.write_u64(H, 1).unwrap();
        let gpu = Uvm::new(&mm, "uvm", 2, 4);
        assert_eq!(
            gpu.atomic_fault(&Task::new("uvm"), H, 2),
            want,
            "{}",
            profile.name
        );
        assert!(exclusive(&mm, H), "{}", profile.name);
        assert!(!atomic(&gpu, H), "{}", profile.name);
        assert!(!sys.mem().folio_test_locked(folio_of_entry(&mm, H, &sys)));
        gpu.close();
        checked(&sys);
    }
}

fn folio_of_entry(mm: &MmUser, a: u64, sys: &svmkit::System) -> svmkit::mm::Folio {
    let Pte::Swap(s) = mm.pte_get_lockless(va(a)) else {
        panic!("no entry at {a:#x}");
    };
    sys.mem().page_folio(s.pfn().unwrap()).unwrap()
}

/// A PMD-mapped THP, a region of its first two pages. 6.15's single-page shim: the
/// first make_device_exclusive() splits the PMD (FOLL_SPLIT_PMD) and returns the
/// folio locked; the second finds a page of the same folio and sleeps in
/// folio_lock_killable() on that lock, held by its own thread: a self-deadlock only a
/// kill ends, and the kill's EINTR is lost too (BadStatus). Derived (spec 10.2).
#[test]
fn two_pages_of_one_thp_self_deadlock_until_killed_6_15() {
    let (sys, mm) = system(Profile::linux_6_15(), 2048);
    mm.mmap(H, HPAGE_PMD_SIZE, RW, FIXED).unwrap();
    mm.madvise(H, HPAGE_PMD_SIZE, Advice::HugePage).unwrap();
    mm.write_u64(H, 1).unwrap();
    assert!(mm.pmd_is_huge(va(H)));
    let folio = folio_at(&sys, &mm, H);
    let gpu = Arc::new(Uvm::new(&mm, "uvm", 2, 4));
    let task = Task::new("uvm");
    let fault = {
        let (gpu, task) = (gpu.clone(), task.clone());
        std::thread::spawn(move || gpu.atomic_fault(&task, H, 2))
    };
    // The fault thread sleeps on the folio lock it holds itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sys.mem().folio_wait_queue_sleepers(folio) == 0 {
        assert!(Instant::now() < deadline, "the second call never slept");
        assert!(
            !fault.is_finished(),
            "the fault returned: {:?}",
            fault.join()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(!fault.is_finished(), "not a deadlock");
    task.kill();
    assert_eq!(fault.join().unwrap(), Err(UvmError::BadStatus));
    assert!(exclusive(&mm, H));
    assert!(!sys.mem().folio_test_locked(folio));
    assert!(!atomic(&gpu, H));
    drop(gpu);
    checked(&sys);
}

/// The same region under 5.14's range API: tail pages are refused (NULL, spec 2.1),
/// so every pass has a NULL page and asks for more processing: a livelock. Derived.
#[test]
fn a_thp_region_livelocks_on_the_range_api_5_14() {
    let (sys, mm) = system(Profile::linux_5_14(), 2048);
    mm.mmap(H, HPAGE_PMD_SIZE, RW, FIXED).unwrap();
    mm.madvise(H, HPAGE_PMD_SIZE, Advice::HugePage).unwrap();
    mm.write_u64(H, 1).unwrap();
    let gpu = Uvm::new(&mm, "uvm", 2, 5);
    assert_eq!(
        gpu.atomic_fault(&Task::new("uvm"), H, 2),
        Err(UvmError::Livelock)
    );
    assert_eq!(
        gpu.stats()
            .passes
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
    assert!(!atomic(&gpu, H));
    drop(gpu);
    checked(&sys);
}

/// Bad input never panics: a region crossing a va_block, or empty, is EINVAL.
#[test]
fn a_region_outside_one_va_block_is_einval() {
    let (_sys, mm) = system(Profile::linux_6_15(), 256);
    let gpu = Uvm::new(&mm, "uvm", 2, 4);
    let task = Task::new("uvm");
    let r = gpu.atomic_fault(&task, H + HPAGE_PMD_SIZE - P, 2);
    assert_eq!(r, Err(UvmError::Errno(Errno::EINVAL)));
    assert_eq!(
        gpu.atomic_fault(&task, H, 0),
        Err(UvmError::Errno(Errno::EINVAL))
    );
    assert_eq!(
        gpu.atomic_fault(&task, u64::MAX - P, 4),
        Err(UvmError::Errno(Errno::EINVAL))
    );
}
