//! Explored scenarios more than one test binary runs: the foundation's folio-lock
//! counter and ABBA deadlock (tests/shuttle_foundation.rs, tests/explore_model.rs)
//! and the svm_atomic exclusivity race (tests/shuttle_svm.rs, and
//! crates/svmkit-scenario/benches/explore.rs as the library baseline of the scenario
//! explorer, which includes this file by path).
#![allow(dead_code)]

use svmkit::device::DevRights;
use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::mm::{Gfp, MapFlags, MmUser, PhysMem, PhysMemConfig, Prot, Pte};
use svmkit::sync::{Arc, MmapLock, thread, yield_now};
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Pfn, Profile, System, SystemConfig};

/// Where the svm_atomic scenarios map their two pages.
pub const A: u64 = 0x4000_0000;
/// One page.
pub const P: u64 = PAGE_SIZE;

pub const COUNTER: u64 = 0;

pub fn small_mem() -> Arc<PhysMem> {
    PhysMem::new(PhysMemConfig {
        frames: 8,
        wait_table_bits: 1,
    })
    .unwrap()
}

/// The racy increment the lock must protect: read, let others run, write back.
pub fn read_yield_write(mem: &PhysMem, pfn: Pfn) {
    let v = mem.read_u64(pfn, COUNTER).unwrap();
    yield_now();
    mem.write_u64(pfn, COUNTER, v + 1).unwrap();
}

/// Two threads increment a counter in a folio's frame under the folio lock while a
/// third takes the mmap lock as writer. `locked == false` is the deliberately broken
/// variant.
pub fn counter_scenario(locked: bool) {
    let mem = small_mem();
    let folio = mem.folio_alloc(0, Gfp::ZERO).unwrap();
    let mmap = Arc::new(MmapLock::new(0u64));
    let incrementers: Vec<_> = (0..2)
        .map(|_| {
            let mem = Arc::clone(&mem);
            thread::spawn(move || {
                for _ in 0..2 {
                    if locked {
                        let guard = mem.folio_lock(folio);
                        read_yield_write(&mem, guard.folio().head());
                    } else {
                        read_yield_write(&mem, folio.head());
                    }
                }
            })
        })
        .collect();
    let writer = {
        let (mmap, mem) = (Arc::clone(&mmap), Arc::clone(&mem));
        thread::spawn(move || {
            let mut w = mmap.write();
            yield_now();
            *w = mem.read_u64(folio.head(), COUNTER).unwrap() + 100;
        })
    };
    // Main thread: a reader of the mmap lock, racing the writer.
    {
        let r = mmap.read();
        assert!(*r == 0 || *r >= 100, "reader saw a torn write: {}", *r);
    }
    for t in incrementers {
        t.join().unwrap();
    }
    writer.join().unwrap();
    assert_eq!(
        mem.read_u64(folio.head(), COUNTER).unwrap(),
        4,
        "lost update"
    );
    assert!(!mem.folio_test_locked(folio));
    mem.folio_put(folio);
    assert_eq!(mem.nr_free_pages(), mem.nr_usable_pages());
    assert!(mem.bad_pages().is_empty());
}

/// Two folio locks taken in opposite orders by two tasks: the classic ABBA deadlock
/// that the lock-order rule forbids.
pub fn abba() {
    let mem = small_mem();
    let a = mem.folio_alloc(0, Gfp::empty()).unwrap();
    let b = mem.folio_alloc(0, Gfp::empty()).unwrap();
    let t = {
        let mem = Arc::clone(&mem);
        thread::spawn(move || {
            let _gb = mem.folio_lock(b);
            let _ga = mem.folio_lock(a);
        })
    };
    {
        let _ga = mem.folio_lock(a);
        let _gb = mem.folio_lock(b);
    }
    t.join().unwrap();
}

pub fn setup(profile: Profile) -> (Arc<System>, MmUser) {
    let mut config = SystemConfig::with_frames(64);
    config.mem.wait_table_bits = 1;
    config.profile = profile;
    let sys = System::new(config).unwrap();
    let mm = sys.create_mm().unwrap();
    mm.mmap(
        A,
        2 * P,
        Prot::READ | Prot::WRITE,
        MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED,
    )
    .unwrap();
    mm.write_u64(A, 0).unwrap();
    mm.write_u64(A + P, 0).unwrap();
    (sys, mm)
}

/// DESIGN.md: a valid atomic device entry implies the CPU entry is device-exclusive
/// for the same pfn. Checked under the driver lock (invalidations take it before
/// changing the CPU side).
pub fn check_exclusivity(gpu: &SvmAtomic, mm: &MmUser) {
    let table = gpu.device().lock();
    for (va, pte) in table.range(0, 1 << 47) {
        if !pte.rights.contains(DevRights::ATOMIC) {
            continue;
        }
        let cpu = mm.pte_get_lockless(va);
        let ok = matches!(cpu, Pte::Swap(s) if s.is_device_exclusive() && s.pfn() == Some(pte.pfn));
        assert!(
            ok,
            "exclusivity violated at {va}: the device maps {} atomically, the CPU has {cpu:?}",
            pte.pfn
        );
    }
}

/// A device doing atomics, a CPU thread touching, a munmap of the neighbour page, a
/// fork, and a monitor checking exclusivity at its scheduling points.
pub fn exclusivity_scenario(profile: Profile, flaws: SvmFlaws) {
    exclusivity_scenario_with(profile, flaws, false);
}

/// [`exclusivity_scenario`], with the device's interval notifiers in Linux 7.1's
/// two-pass form if `two_pass`.
pub fn exclusivity_scenario_with(profile: Profile, flaws: SvmFlaws, two_pass: bool) {
    let (sys, mm) = setup(profile);
    let gpu = Arc::new(SvmAtomic::new(&mm, "gpu", flaws, 4).unwrap());
    gpu.use_two_pass_notifier(two_pass);
    let device = {
        let gpu = gpu.clone();
        thread::spawn(move || {
            let task = Task::new("gpu");
            (0..2)
                .filter(|_| gpu.atomic_fetch_add(&task, A, 1).is_ok())
                .count() as u64
        })
    };
    let cpu = {
        let mm = mm.clone();
        thread::spawn(move || mm.fetch_add_u64(A, 10).unwrap())
    };
    let other = {
        let (sys, mm) = (sys.clone(), mm.clone());
        thread::spawn(move || {
            mm.munmap(A + P, P).unwrap();
            // Fork fails with ENOMEM when the driver holds the folio lock (spec 4.1).
            match sys.fork(&mm) {
                Ok(child) => drop(child),
                Err(e) => assert_eq!(e, Errno::ENOMEM),
            }
        })
    };
    let monitor = {
        let (gpu, mm) = (gpu.clone(), mm.clone());
        thread::spawn(move || {
            for _ in 0..3 {
                check_exclusivity(&gpu, &mm);
                yield_now();
            }
        })
    };
    let done = device.join().unwrap();
    cpu.join().unwrap();
    other.join().unwrap();
    monitor.join().unwrap();
    check_exclusivity(&gpu, &mm);
    assert_eq!(mm.read_u64(A).unwrap(), 10 + done, "an update was lost");
    drop(gpu);
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}
