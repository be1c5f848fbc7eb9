//! The GPU-style atomic fault driver (nouveau's pattern) on OS threads: the owner
//! filter and the livelock without it, the CPU restore revoking the device, and two
//! devices contending for one page.

mod common;

use std::sync::atomic::Ordering;

use svmkit::device::DevRights;
use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::mm::{MapFlags, MmUser, Prot, Pte};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Profile, System, SystemConfig, VirtAddr};

use common::checked;

const A: u64 = 0x4000_0000;
const P: u64 = PAGE_SIZE;

fn setup() -> (Arc<System>, MmUser) {
    setup_with(Profile::linux_6_15())
}

fn setup_with(profile: Profile) -> (Arc<System>, MmUser) {
    let mut config = SystemConfig::with_frames(256);
    config.profile = profile;
    let sys = System::new(config).unwrap();
    let mm = sys.create_mm().unwrap();
    mm.mmap(
        A,
        4 * P,
        Prot::READ | Prot::WRITE,
        MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED,
    )
    .unwrap();
    mm.write_u64(A, 100).unwrap();
    (sys, mm)
}

fn exclusive_pfn(mm: &MmUser, addr: u64) -> Option<svmkit::Pfn> {
    match mm.pte_get_lockless(VirtAddr::try_new(addr).unwrap()) {
        Pte::Swap(s) if s.is_device_exclusive() => s.pfn(),
        _ => None,
    }
}

fn atomic_rights(gpu: &SvmAtomic, addr: u64) -> bool {
    gpu.device()
        .lock()
        .get(addr)
        .is_some_and(|p| p.rights.contains(DevRights::ATOMIC))
}

#[test]
fn owner_filter_lets_the_fault_succeed_in_one_pass() {
    // Both eras: 5.14's range API over one page and 6.15's make_device_exclusive;
    // nothing retries, so 5.14's leak-on-retry never triggers.
    for profile in Profile::ALL {
        owner_filter_lets_the_fault_succeed_in_one_pass_in(profile);
    }
}

fn owner_filter_lets_the_fault_succeed_in_one_pass_in(profile: Profile) {
    let (sys, mm) = setup_with(profile);
    let gpu = SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 16).unwrap();
    let task = Task::new("gpu-fault");
    assert_eq!(gpu.atomic_fetch_add(&task, A, 1), Ok(100));
    let s = gpu.stats();
    assert_eq!(
        (
            s.faults.load(Ordering::Relaxed),
            s.passes.load(Ordering::Relaxed),
            s.retries.load(Ordering::Relaxed)
        ),
        (1, 1, 0)
    );
    // The device maps it atomically; the CPU entry is device-exclusive for the same pfn.
    let dev = gpu.device().lock().get(A).unwrap();
    assert!(dev.rights.contains(DevRights::ATOMIC));
    assert_eq!(exclusive_pfn(&mm, A), Some(dev.pfn));
    // Further atomics run on the device without faults.
    assert_eq!(gpu.atomic_fetch_add(&task, A, 1), Ok(101));
    assert_eq!(gpu.stats().faults.load(Ordering::Relaxed), 1);

    // A CPU restore is never filtered: after a CPU touch the device entry is gone and
    // the next atomic faults again.
    assert_eq!(mm.read_u64(A).unwrap(), 102);
    assert_eq!(gpu.device().lock().get(A), None);
    assert_eq!(gpu.atomic_fetch_add(&task, A, 1), Ok(102));
    assert_eq!(gpu.stats().faults.load(Ordering::Relaxed), 2);
    assert_eq!(mm.read_u64(A).unwrap(), 103);
    drop(gpu);
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}

/// Issue 14 item 7: the bound on faults must not also bound the replay. With
/// `max_passes` 1 an uncontended atomic takes one fault of one pass, then the replay
/// runs on the device (derived: nouveau replays a handled GPU fault; before the fix
/// the replay was never reached and every such atomic returned EBUSY).
#[test]
fn max_passes_one_uncontended_atomic_faults_once_and_replays() {
    for profile in Profile::ALL {
        let (sys, mm) = setup_with(profile);
        let gpu = SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 1).unwrap();
        let task = Task::new("gpu-fault");
        // 100: the value setup wrote.
        assert_eq!(
            gpu.atomic_fetch_add(&task, A, 5),
            Ok(100),
            "{}",
            profile.name
        );
        let s = gpu.stats();
        assert_eq!(
            (
                s.faults.load(Ordering::Relaxed),
                s.passes.load(Ordering::Relaxed),
                s.retries.load(Ordering::Relaxed),
                s.ebusy.load(Ordering::Relaxed),
                s.atomics.load(Ordering::Relaxed),
            ),
            (1, 1, 0, 0, 1),
            "{}",
            profile.name
        );
        // Mapped now: the next atomic needs no fault.
        assert_eq!(gpu.atomic_fetch_add(&task, A, 5), Ok(105));
        assert_eq!(gpu.stats().faults.load(Ordering::Relaxed), 1);
        assert_eq!(mm.read_u64(A).unwrap(), 110);
        drop(gpu);
        if let Err(e) = sys.check() {
            panic!("{e}");
        }
    }
}

/// Under 5.14 the first retry keeps the folio locked (nouveau before 6.14-rc), and the
/// next pass's GUP blocks on that lock forever: the livelock becomes a self-deadlock.
/// That outcome is explored in `shuttle_leak_on_retry_*`; here the 6.15 driver.
#[test]
fn owner_filter_off_livelocks_until_the_bound() {
    let (sys, mm) = setup();
    let flaws = SvmFlaws {
        filter_own_exclusive: false,
        ..SvmFlaws::default()
    };
    let bound = 12;
    let gpu = SvmAtomic::new(&mm, "gpu", flaws, bound).unwrap();
    // Every pass's own conversion invalidates its own read section (spec 6.3): the
    // bound ends it with EBUSY, after exactly `bound` passes, all retried.
    assert_eq!(
        gpu.atomic_fetch_add(&Task::new("t"), A, 1),
        Err(Errno::EBUSY)
    );
    let s = gpu.stats();
    assert_eq!(s.passes.load(Ordering::Relaxed), bound);
    assert_eq!(s.retries.load(Ordering::Relaxed), bound);
    assert_eq!(s.ebusy.load(Ordering::Relaxed), 1);
    assert!(!atomic_rights(&gpu, A));
    // The value is untouched; the page is left device-exclusive by the last pass and
    // comes back on the next CPU touch.
    assert_eq!(mm.read_u64(A).unwrap(), 100);
    drop(gpu);
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}

/// Spec 9.14 asks what two GPUs contending for one page do; the model answers: they
/// starve each other until the CPU touches the page. A fault that starts while the
/// page is already device-exclusive (the other device's entry, or this device's own
/// entry left by a retried pass) restores that entry inside its own read section:
/// the restore's `Clear` (owner none, never filtered) makes `read_retry` true, the
/// retry leaves this pass's new entry in place, and the next pass restores *that*
/// one. Every pass retries until the bound. Values stay exact throughout.
#[test]
fn two_devices_starve_each_other_until_a_cpu_touch() {
    let (sys, mm) = setup();
    let bound = 8;
    let a = SvmAtomic::new(&mm, "gpu-a", SvmFlaws::default(), bound).unwrap();
    let b = SvmAtomic::new(&mm, "gpu-b", SvmFlaws::default(), bound).unwrap();
    let task = Task::new("t");
    assert_eq!(a.atomic_fetch_add(&task, A, 1), Ok(100));
    assert!(atomic_rights(&a, A));
    // B: the first pass restores A's entry (A is revoked by its classic notifier) and
    // converts for B; the restore invalidated B's section, so B retries; every later
    // pass restores B's own entry from the pass before. EBUSY at the bound.
    assert_eq!(b.atomic_fetch_add(&task, A, 10), Err(Errno::EBUSY));
    let s = b.stats();
    assert_eq!(s.passes.load(Ordering::Relaxed), bound);
    assert_eq!(s.retries.load(Ordering::Relaxed), bound);
    assert!(!atomic_rights(&a, A) && !atomic_rights(&b, A));
    assert!(exclusive_pfn(&mm, A).is_some(), "B's last conversion stays");
    // A starves the same way now.
    assert_eq!(a.atomic_fetch_add(&task, A, 10), Err(Errno::EBUSY));
    // A CPU touch restores the entry outside any device's read section...
    assert_eq!(mm.read_u64(A).unwrap(), 101);
    assert!(exclusive_pfn(&mm, A).is_none());
    // ...after which one fault succeeds in one pass.
    let passes = b.stats().passes.load(Ordering::Relaxed);
    assert_eq!(b.atomic_fetch_add(&task, A, 10), Ok(101));
    assert_eq!(b.stats().passes.load(Ordering::Relaxed), passes + 1);
    assert!(atomic_rights(&b, A) && !atomic_rights(&a, A));
    assert_eq!(
        exclusive_pfn(&mm, A),
        b.device().lock().get(A).map(|p| p.pfn)
    );
    // And A, contending again, starves again; the value is exact.
    assert_eq!(a.atomic_fetch_add(&task, A, 100), Err(Errno::EBUSY));
    assert_eq!(mm.read_u64(A).unwrap(), 111);
    drop((a, b));
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}

/// The same mechanism with one device: an invalidation that revokes the device
/// without restoring the CPU entry (6.15 mprotect leaves entries, the classic notifier
/// clears the device) leaves the page device-exclusive with no device mapping it, and
/// the device's next fault starves until the CPU touches the page.
#[test]
fn owner_filter_one_device_starves_after_mprotect_until_a_cpu_touch() {
    let (sys, mm) = setup();
    let gpu = SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 8).unwrap();
    let task = Task::new("t");
    assert_eq!(gpu.atomic_fetch_add(&task, A, 1), Ok(100));
    mm.mprotect(A, P, Prot::READ).unwrap();
    mm.mprotect(A, P, Prot::READ | Prot::WRITE).unwrap();
    assert!(!atomic_rights(&gpu, A), "mprotect revoked the device");
    assert!(
        exclusive_pfn(&mm, A).is_some(),
        "the CPU entry stays (6.15)"
    );
    assert_eq!(gpu.atomic_fetch_add(&task, A, 1), Err(Errno::EBUSY));
    assert_eq!(mm.read_u64(A).unwrap(), 101);
    assert_eq!(gpu.atomic_fetch_add(&task, A, 1), Ok(101));
    drop(gpu);
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}

/// One device and two CPU threads add to one counter on OS threads; every add that
/// returned `Ok` is in the final value, every `EBUSY` left it unchanged.
///
/// A CPU touch that lands inside a device pass's read section makes the pass retry,
/// and from then on each pass's GUP restores the entry the pass before installed: the
/// device starves until the next CPU touch (spec 10.3, seen on 6.12.117). So the CPU
/// threads keep touching until the device has its adds, and the device retries a
/// fault that gave up with `EBUSY`, the way a test that must finish has to; with the
/// CPU threads stopped, a starving device would spin to its bound (CI saw this).
#[test]
fn owner_filter_device_and_cpu_threads_hammering_one_counter_stay_exact() {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    let (sys, mm) = setup();
    mm.write_u64(A, 0).unwrap();
    let gpu = Arc::new(SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 10_000).unwrap());
    let per = 300u64;
    let device_done = Arc::new(AtomicBool::new(false));
    let device = {
        let gpu = gpu.clone();
        let done = device_done.clone();
        std::thread::spawn(move || {
            let task = Task::new("gpu");
            let mut ebusy = 0u64;
            let mut ok = 0;
            while ok < per {
                match gpu.atomic_fetch_add(&task, A, 1) {
                    Ok(_) => ok += 1,
                    Err(Errno::EBUSY) => ebusy += 1,
                    Err(e) => panic!("device atomic failed with {e:?}"),
                }
            }
            done.store(true, Ordering::Release);
            ebusy
        })
    };
    let cpu_adds = Arc::new(AtomicU64::new(0));
    let cpus: Vec<_> = (0..2)
        .map(|_| {
            let mm = mm.clone();
            let done = device_done.clone();
            let adds = cpu_adds.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while n < per || !done.load(Ordering::Acquire) {
                    mm.fetch_add_u64(A, 1).unwrap();
                    n += 1;
                }
                adds.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let ebusy = device.join().unwrap();
    for c in cpus {
        c.join().unwrap();
    }
    let cpu = cpu_adds.load(Ordering::Relaxed);
    assert!(cpu >= 2 * per);
    assert_eq!(
        mm.read_u64(A).unwrap(),
        cpu + per,
        "{ebusy} device faults gave up"
    );
    assert_eq!(gpu.stats().ebusy.load(Ordering::Relaxed), ebusy);
    assert_eq!(gpu.stats().atomics.load(Ordering::Relaxed), per);
    drop(gpu);
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}

/// The same mechanism on a PMD-mapped THP: the first make_device_exclusive's GUP
/// splits the PMD (FOLL_SPLIT_PMD) inside the read section, the split's `Clear`
/// makes the pass retry, and every later pass restores its predecessor's entry.
#[test]
fn owner_filter_first_fault_on_a_pmd_mapped_thp_starves_until_a_cpu_touch() {
    let sys = System::new(SystemConfig::with_frames(2048)).unwrap();
    let mm = sys.create_mm().unwrap();
    let len = svmkit::mm::PMD_SIZE;
    mm.mmap(
        A,
        len,
        Prot::READ | Prot::WRITE,
        MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED,
    )
    .unwrap();
    mm.madvise(A, len, svmkit::mm::Advice::HugePage).unwrap();
    mm.write_u64(A, 7).unwrap();
    assert!(mm.pmd_is_huge(VirtAddr::try_new(A).unwrap()));
    let gpu = SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 6).unwrap();
    let task = Task::new("t");
    assert_eq!(gpu.atomic_fetch_add(&task, A, 1), Err(Errno::EBUSY));
    assert_eq!(gpu.stats().retries.load(Ordering::Relaxed), 6);
    assert!(!mm.pmd_is_huge(VirtAddr::try_new(A).unwrap()));
    assert!(exclusive_pfn(&mm, A).is_some());
    assert_eq!(mm.read_u64(A).unwrap(), 7);
    assert_eq!(gpu.atomic_fetch_add(&task, A, 1), Ok(7));
    assert_eq!(mm.read_u64(A).unwrap(), 8);
    drop(gpu);
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}

/// The finding documented in `svm_atomic`'s module docs and docs/ARCHITECTURE.md
/// (issue 14 item 5; derived from the Linux sources, no kernel run): nouveau's
/// whole-mm notifier has no `release`, and exit unhooks it before the unmap, so the
/// device keeps its atomic entry for a frame the exit freed until the driver is
/// closed. A device atomic through it still runs, on the freed frame. The model
/// performs it and reports it: the checker flags the stale entry and the stale
/// access, nothing panics, and closing the driver clears the table. Should become a
/// corpus case once the scenario format exists.
#[test]
fn svm_atomic_device_entries_outlive_exit_derived() {
    for profile in Profile::ALL {
        let (sys, mm) = setup_with(profile);
        let gpu = SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 4).unwrap();
        let task = Task::new("gpu");
        // 100: written by setup.
        assert_eq!(gpu.atomic_fetch_add(&task, A, 1), Ok(100));
        let pfn = gpu.device().lock().get(A).unwrap().pfn;
        checked(&sys);
        drop(mm); // the last user: exit_mmap
        // Derived (nouveau_mn_ops has no .release; exit's unmap reaches interval
        // notifiers only): the entry is still there, and its frame was freed.
        let dev = gpu.device().lock().get(A).unwrap();
        assert_eq!(dev.pfn, pfn);
        assert!(dev.rights.contains(DevRights::ATOMIC));
        assert!(sys.mem().is_free_frame(pfn), "{}", profile.name);
        let err = sys.check().unwrap_err();
        assert_eq!(err.violations.len(), 1, "{err}");
        let v = &err.violations[0];
        assert_eq!((v.addr.map(|a| a.raw()), v.pfn), (Some(A), Some(pfn)));
        assert!(v.what.contains("stale device entry") && v.what.contains("exited"));
        // The GPU's atomic through the stale entry: performed on the freed frame
        // (derived: the frame still holds 101, nothing reused it), and recorded.
        assert_eq!(gpu.atomic_fetch_add(&task, A, 1), Ok(101));
        assert_eq!(sys.mem().read_u64(pfn, 0).unwrap(), 102);
        let err = sys.check().unwrap_err();
        assert_eq!(err.violations.len(), 2, "{err}");
        assert!(
            err.violations
                .iter()
                .all(|v| v.pfn == Some(pfn) && v.addr.map(|a| a.raw()) == Some(A))
        );
        let stale = sys.mem().take_stale_device_accesses();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].kind, svmkit::mm::DeviceAccessKind::Atomic);
        assert!(matches!(
            stale[0].why,
            svmkit::mm::Staleness::MmExited { cpu: None }
        ));
        // A new fault after the exit fails (nouveau: mmget_not_zero(); the model's
        // interval insert refuses a dead mm with EINVAL), and maps nothing.
        assert_eq!(
            gpu.atomic_fetch_add(&task, A + P, 1),
            Err(Errno::EINVAL),
            "{}",
            profile.name
        );
        assert_eq!(gpu.device().lock().len(), 1);
        // File close (nouveau_svmm_fini, then the GPU VMM's destruction): the table
        // goes, and with it the last violation.
        gpu.close();
        checked(&sys);
        assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
    }
}

/// The same finding where it hurts: after the exit, the freed frame becomes another
/// process's page, and the GPU's atomic through the stale entry changes that
/// process's memory (derived: what a real GPU with a stale PFN entry would do). The
/// model performs the write, and the checker names the frame: no silent corruption.
#[test]
fn svm_atomic_stale_entry_into_a_reused_frame_is_reported_derived() {
    let (sys, mm) = setup();
    let gpu = SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 4).unwrap();
    let task = Task::new("gpu");
    assert_eq!(gpu.atomic_fetch_add(&task, A, 1), Ok(100));
    let pfn = gpu.device().lock().get(A).unwrap().pfn;
    // Another process, its page tables already in place.
    let other = sys.create_mm().unwrap();
    let b = 0x7000_0000u64;
    let n = 32;
    other
        .mmap(
            b,
            n * P,
            Prot::READ | Prot::WRITE,
            MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED,
        )
        .unwrap();
    other.write_u64(b, 0).unwrap();
    drop(mm); // exit: the frame goes back to the allocator
    for i in 1..n {
        other.write_u64(b + i * P, 1000 + i).unwrap();
    }
    // Derived: the buddy allocator hands out the lowest free frame first, so the
    // other process now uses the freed frame for one of its pages.
    let at = (1..n)
        .find(|&i| other.translate(VirtAddr::try_new(b + i * P).unwrap()) == Some(pfn))
        .expect("the freed frame is reused by the other process");
    assert_eq!(gpu.atomic_fetch_add(&task, A, 5), Ok(1000 + at));
    // The other process's memory changed under it...
    assert_eq!(other.read_u64(b + at * P).unwrap(), 1005 + at);
    // ...and the checker says which frame, and why.
    let err = sys.check().unwrap_err();
    assert!(
        err.violations
            .iter()
            .any(|v| v.pfn == Some(pfn) && v.what.contains("stale device access")),
        "{err}"
    );
    assert!(
        err.violations
            .iter()
            .any(|v| v.pfn == Some(pfn) && v.what.contains("stale device entry")),
        "{err}"
    );
    assert_eq!(err.violations.len(), 2, "{err}");
    gpu.close();
    assert_eq!(sys.mem().take_stale_device_accesses().len(), 1);
    checked(&sys);
}
