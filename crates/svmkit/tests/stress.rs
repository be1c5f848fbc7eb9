//! A real-thread stress test (OS threads, not the schedule explorer): four workers do
//! random CPU reads, writes and atomics, mprotect, munmap, MADV_DONTNEED, MADV_PAGEOUT and
//! device atomics (svm_atomic, which makes pages device-exclusive) on memory each owns,
//! while background threads reclaim, migrate, fork and exit children, and flip the
//! THP policy. Every so often the world stops (the workers and background threads hold
//! a read lock per operation; the checker takes it for write) and the invariant
//! checker, the bad-page reports and every worker's shadow of its memory are checked.
//!
//! What the shadow expects is Linux's semantics, not the model's: a read returns the
//! last value stored by the CPU or the device (POSIX, and spec 3 for the device-
//! exclusive restore), private anonymous memory reads zero after MADV_DONTNEED
//! (madvise(2)), and reclaim, migration, THP changes and a fork never change what the
//! parent reads (spec 4.1, 4.6, 4.7). A forked child sees the parent's memory as it was
//! at fork and its own writes only (fork(2)).
//!
//! `SVMKIT_STRESS_SECS` sets how long it runs (default 10 s: CI's short version);
//! `SVMKIT_SEED` the seed of the workers' choices (the thread interleaving itself is
//! the OS's and not reproducible: a failure prints what it saw). To narrow a failure
//! down, `SVMKIT_STRESS_OFF` turns parts off, a comma-separated list of `reclaim`,
//! `migrate`, `fork`, `thp` (the background threads), `device`, `dontneed`,
//! `mprotect`, `pageout`, `munmap` (worker operations).
//!
//! It runs in every build, with or without the `shuttle` feature: outside a schedule
//! exploration the sync facade is std's, so these are real OS threads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::mm::{Advice, MapFlags, MmUser, PMD_SIZE, Prot, ThpMode};
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Profile, System, SystemConfig, VirtAddr};

const P: u64 = PAGE_SIZE;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
/// Workers, each owning one 2 MiB-aligned region (so THPs can form in it).
const WORKERS: usize = 4;
const REGION: u64 = 0x4000_0000;
const REGION_PAGES: u64 = PMD_SIZE / P;
/// Words per page the workers use.
const WORDS: u64 = 4;
/// A region nobody but forked children writes, with a known pattern.
const FROZEN: u64 = 0x3000_0000;
const FROZEN_PAGES: u64 = 16;

fn region(w: usize) -> u64 {
    REGION + w as u64 * PMD_SIZE
}

fn frozen_value(page: u64) -> u64 {
    0xf00d_0000 + page
}

/// Whether `SVMKIT_STRESS_OFF` turns `part` off.
fn off(part: &str) -> bool {
    std::env::var("SVMKIT_STRESS_OFF").is_ok_and(|v| v.split(',').any(|p| p.trim() == part))
}

fn env_u64(k: &str) -> Option<u64> {
    std::env::var(k).ok().and_then(|v| v.parse().ok())
}

/// One worker's view of what its region must read.
struct Shadow {
    words: Vec<u64>,
}

impl Shadow {
    fn slot(page: u64, word: u64) -> usize {
        (page * WORDS + word) as usize
    }
}

struct World {
    sys: Arc<System>,
    mm: MmUser,
    gpu: Arc<SvmAtomic>,
    /// Held for read by every operation, for write by the stop-the-world check.
    stw: RwLock<()>,
    /// Each worker's shadow, behind its own lock (the checker reads them all).
    shadows: Vec<std::sync::Mutex<Shadow>>,
    stop: AtomicBool,
    ops: AtomicU64,
    checks: AtomicU64,
    reclaimed: AtomicU64,
    migrated: AtomicU64,
    forks: AtomicU64,
    device_atomics: AtomicU64,
    /// Whether the migration thread may pick large folios (see
    /// `stress_real_threads_linux_5_14`).
    migrate_large: bool,
}

fn worker(world: &World, w: usize, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed ^ (w as u64).wrapping_mul(0x9e37_79b9));
    let task = Task::new(format!("cpu{w}"));
    let base = region(w);
    let mm = &world.mm;
    while !world.stop.load(Ordering::Relaxed) {
        let _g = world.stw.read().unwrap_or_else(|e| e.into_inner());
        let mut sh = world.shadows[w].lock().unwrap_or_else(|e| e.into_inner());
        let page = rng.gen_range(0..REGION_PAGES);
        let word = rng.gen_range(0..WORDS);
        let a = base + page * P + word * 8;
        let slot = Shadow::slot(page, word);
        match rng.gen_range(0..100) {
            0..30 => {
                let v = rng.r#gen::<u64>();
                mm.write_u64(a, v).unwrap();
                sh.words[slot] = v;
            }
            30..50 => {
                let got = mm.read_u64(a).unwrap();
                assert_eq!(got, sh.words[slot], "worker {w}: read {a:#x}");
            }
            50..60 => {
                let d = rng.gen_range(1..100);
                let old = mm.fetch_add_u64(a, d).unwrap();
                assert_eq!(old, sh.words[slot], "worker {w}: fetch_add {a:#x}");
                sh.words[slot] = old.wrapping_add(d);
            }
            60..75 if off("device") => {}
            75..82 if off("dontneed") => {}
            82..90 if off("mprotect") => {}
            90..95 if off("pageout") => {}
            60..75 => match world.gpu.atomic_fetch_add(&task, a, 1) {
                Ok(old) => {
                    assert_eq!(old, sh.words[slot], "worker {w}: device atomic {a:#x}");
                    sh.words[slot] = old.wrapping_add(1);
                    world.device_atomics.fetch_add(1, Ordering::Relaxed);
                }
                // The fault loop's bound (the CPU kept taking the page back), or a
                // conversion that failed: no update happened (svm_atomic's contract).
                Err(Errno::EBUSY | Errno::EINVAL) => {}
                Err(e) => panic!("worker {w}: device atomic: {e}"),
            },
            75..82 => {
                let n = if rng.gen_bool(0.1) {
                    REGION_PAGES - page
                } else {
                    rng.gen_range(1..=16).min(REGION_PAGES - page)
                };
                mm.madvise(base + page * P, n * P, Advice::DontNeed)
                    .unwrap();
                for p in page..page + n {
                    for wd in 0..WORDS {
                        sh.words[Shadow::slot(p, wd)] = 0;
                    }
                }
            }
            82..90 => {
                let n = rng.gen_range(1..=8).min(REGION_PAGES - page);
                mm.mprotect(base + page * P, n * P, Prot::READ).unwrap();
                let got = mm.read_u64(a).unwrap();
                assert_eq!(got, sh.words[slot], "worker {w}: read-only read {a:#x}");
                mm.mprotect(base + page * P, n * P, RW).unwrap();
            }
            90..95 => {
                let n = rng.gen_range(1..=32).min(REGION_PAGES - page);
                mm.madvise(base + page * P, n * P, Advice::PageOut).unwrap();
            }
            95 if !off("munmap") => {
                // The region goes away (its page tables freed under a reclaim that may
                // be walking them) and comes back empty.
                mm.munmap(base, PMD_SIZE).unwrap();
                mm.mmap(base, PMD_SIZE, RW, FIXED).unwrap();
                mm.madvise(base, PMD_SIZE, Advice::HugePage).unwrap();
                sh.words.iter_mut().for_each(|x| *x = 0);
            }
            _ => {
                let huge = rng.gen_bool(0.7);
                let adv = if huge {
                    Advice::HugePage
                } else {
                    Advice::NoHugePage
                };
                mm.madvise(base, PMD_SIZE, adv).unwrap();
            }
        }
        world.ops.fetch_add(1, Ordering::Relaxed);
    }
}

fn reclaimer(world: &World) {
    while !world.stop.load(Ordering::Relaxed) {
        {
            let _g = world.stw.read().unwrap_or_else(|e| e.into_inner());
            let n = world.mm.reclaim_mm(8);
            world.reclaimed.fetch_add(n as u64, Ordering::Relaxed);
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn migrator(world: &World, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x6d69_6772);
    while !world.stop.load(Ordering::Relaxed) {
        {
            let _g = world.stw.read().unwrap_or_else(|e| e.into_inner());
            let w = rng.gen_range(0..WORKERS);
            let a = region(w) + rng.gen_range(0..REGION_PAGES) * P;
            // A lockless translation may name a folio that is freed (or reused) by
            // the time migration looks at it: EINVAL then, as for any non-anon frame.
            if let Some(pfn) = world.mm.translate(VirtAddr::try_new(a).unwrap())
                && let Ok(folio) = world.sys.mem().page_folio(pfn)
                && (world.migrate_large || folio.order() == 0)
            {
                match world.sys.mem().migrate_folio(folio) {
                    Ok(_) => {
                        world.migrated.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Errno::EAGAIN | Errno::EINVAL | Errno::ENOMEM) => {}
                    Err(e) => panic!("migrate: {e}"),
                }
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn forker(world: &World, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x666f_726b);
    while !world.stop.load(Ordering::Relaxed) {
        {
            let _g = world.stw.read().unwrap_or_else(|e| e.into_inner());
            let child = match world.sys.fork(&world.mm) {
                Ok(c) => c,
                // Fork fails when a driver holds the lock of a device-exclusive folio
                // it must restore (spec 4.1: -EBUSY turned into ENOMEM).
                Err(Errno::ENOMEM) => continue,
                Err(e) => panic!("fork: {e}"),
            };
            world.forks.fetch_add(1, Ordering::Relaxed);
            let page = rng.gen_range(0..FROZEN_PAGES);
            let a = FROZEN + page * P;
            assert_eq!(child.read_u64(a).unwrap(), frozen_value(page), "child read");
            child.write_u64(a, 1).unwrap();
            assert_eq!(child.read_u64(a).unwrap(), 1, "child's own write");
            // A child also touches the workers' memory (COW breaks, swap-ins of
            // shared slots), without expectations on the values: they race.
            let w = rng.gen_range(0..WORKERS);
            let _ = child.fetch_add_u64(region(w) + rng.gen_range(0..REGION_PAGES) * P, 1);
            drop(child);
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn thp_flipper(world: &World, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x0074_6870);
    let modes = [ThpMode::Always, ThpMode::Madvise, ThpMode::Never];
    while !world.stop.load(Ordering::Relaxed) {
        world
            .sys
            .mem()
            .set_thp_mode(modes[rng.gen_range(0..modes.len())]);
        thread::sleep(Duration::from_millis(5));
    }
}

/// Stops the world and checks everything: the checker, bad pages, every shadow, the
/// frozen region.
fn check_world(world: &World) {
    let _g = world.stw.write().unwrap_or_else(|e| e.into_inner());
    let bad = world.sys.mem().bad_pages();
    assert!(bad.is_empty(), "bad pages: {bad:?}");
    if let Err(e) = world.sys.check() {
        panic!("checker: {e}");
    }
    for (w, sh) in world.shadows.iter().enumerate() {
        let sh = sh.lock().unwrap_or_else(|e| e.into_inner());
        for page in 0..REGION_PAGES {
            for word in 0..WORDS {
                let a = region(w) + page * P + word * 8;
                let got = world.mm.read_u64(a).unwrap();
                assert_eq!(
                    got,
                    sh.words[Shadow::slot(page, word)],
                    "stop-the-world read {a:#x}"
                );
            }
        }
    }
    for page in 0..FROZEN_PAGES {
        assert_eq!(
            world.mm.read_u64(FROZEN + page * P).unwrap(),
            frozen_value(page),
            "a child's write reached the parent"
        );
    }
    world.checks.fetch_add(1, Ordering::Relaxed);
}

fn stress(profile: Profile, migrate_large: bool) {
    let secs = env_u64("SVMKIT_STRESS_SECS").unwrap_or(10);
    let seed = env_u64("SVMKIT_SEED").unwrap_or(0x5eed_57e5);
    let mut config = SystemConfig::with_frames(16384);
    config.profile = profile;
    let sys = System::new(config).unwrap();
    sys.mem().swapon(2048).unwrap();
    let mm = sys.create_mm().unwrap();
    mm.mmap(FROZEN, FROZEN_PAGES * P, RW, FIXED).unwrap();
    for page in 0..FROZEN_PAGES {
        mm.write_u64(FROZEN + page * P, frozen_value(page)).unwrap();
    }
    for w in 0..WORKERS {
        mm.mmap(region(w), PMD_SIZE, RW, FIXED).unwrap();
        mm.madvise(region(w), PMD_SIZE, Advice::HugePage).unwrap();
    }
    let gpu = Arc::new(SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 8).unwrap());
    let world = Arc::new(World {
        sys: sys.clone(),
        mm,
        gpu,
        stw: RwLock::new(()),
        shadows: (0..WORKERS)
            .map(|_| {
                std::sync::Mutex::new(Shadow {
                    words: vec![0; (REGION_PAGES * WORDS) as usize],
                })
            })
            .collect(),
        migrate_large,
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        checks: AtomicU64::new(0),
        reclaimed: AtomicU64::new(0),
        migrated: AtomicU64::new(0),
        forks: AtomicU64::new(0),
        device_atomics: AtomicU64::new(0),
    });
    // Each thread reports its end (or its panic) here, so that a hang is a failure
    // with a message rather than a test that never ends.
    let (done_tx, done_rx) = mpsc::channel::<(String, thread::Result<()>)>();
    let mut names = Vec::new();
    let mut spawn = |name: String, f: Box<dyn FnOnce(&World) + Send>| {
        let world = Arc::clone(&world);
        let tx = done_tx.clone();
        names.push(name.clone());
        thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&world)));
                if r.is_err() {
                    world.stop.store(true, Ordering::Relaxed);
                }
                let _ = tx.send((name, r));
            })
            .unwrap();
    };
    for w in 0..WORKERS {
        spawn(
            format!("worker{w}"),
            Box::new(move |wd| worker(wd, w, seed)),
        );
    }
    if !off("reclaim") {
        spawn("reclaim".into(), Box::new(reclaimer));
    }
    if !off("migrate") {
        spawn("migrate".into(), Box::new(move |wd| migrator(wd, seed)));
    }
    if !off("fork") {
        spawn("fork".into(), Box::new(move |wd| forker(wd, seed)));
    }
    if !off("thp") {
        spawn("thp".into(), Box::new(move |wd| thp_flipper(wd, seed)));
    }
    spawn(
        "checker".into(),
        Box::new(|wd| {
            while !wd.stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(500));
                check_world(wd);
            }
        }),
    );
    drop(done_tx);
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline && !world.stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(50));
    }
    world.stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    let mut finished = Vec::new();
    for _ in 0..names.len() {
        match done_rx.recv_timeout(Duration::from_secs(120)) {
            Ok((name, r)) if r.is_ok() => finished.push(name),
            Ok((name, Err(p))) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{name}: {msg}"));
                finished.push(name);
            }
            Ok(_) => unreachable!(),
            Err(_) => panic!(
                "{}: threads {:?} did not finish within 120 s of the stop (a hang); ops so \
                 far {}; failures {failures:#?}",
                profile.name,
                names
                    .iter()
                    .filter(|n| !finished.contains(n))
                    .collect::<Vec<_>>(),
                world.ops.load(Ordering::Relaxed)
            ),
        }
    }
    assert!(failures.is_empty(), "{}: {failures:#?}", profile.name);
    check_world(&world);
    eprintln!(
        "stress {}: {} s, {} ops, {} device atomics, {} reclaimed, {} migrated, {} forks, {} stop-the-world checks",
        profile.name,
        secs,
        world.ops.load(Ordering::Relaxed),
        world.device_atomics.load(Ordering::Relaxed),
        world.reclaimed.load(Ordering::Relaxed),
        world.migrated.load(Ordering::Relaxed),
        world.forks.load(Ordering::Relaxed),
        world.checks.load(Ordering::Relaxed),
    );
    assert!(
        world.checks.load(Ordering::Relaxed) >= 2,
        "too few checks ran"
    );
    // Teardown: the device first (its notifier), then the process: nothing may leak.
    let world = Arc::try_unwrap(world).unwrap_or_else(|_| panic!("threads still hold the world"));
    drop(world.gpu);
    drop(world.mm);
    let bad = sys.mem().bad_pages();
    assert!(bad.is_empty(), "bad pages: {bad:?}");
    if let Err(e) = sys.check() {
        panic!("checker: {e}");
    }
    assert_eq!(sys.mem().swap_slots_used(), 0, "a swap slot leaked");
    assert_eq!(
        sys.mem().nr_free_pages(),
        sys.mem().nr_usable_pages(),
        "a frame leaked"
    );
}

#[test]
fn stress_real_threads_linux_6_15() {
    stress(Profile::linux_6_15(), true);
}

#[test]
fn stress_real_threads_linux_5_14() {
    // The 2021 design with two later fixes, so that what fails is the model and not
    // a flaw Linux had: nouveau's 2025 retry fix (the pre-fix driver deadlocks on its
    // own leaked folio lock at the first retry, shuttle_svm shows that) and 6.3's
    // folio reference in the restore (without it a racing zap frees the folio under
    // the restoring fault, spec 8 item 5: this test then reports "folio locked with no
    // references (use after free)" within seconds, which is Linux 5.14's bug).
    // Migration picks small folios only: 5.14's try_to_migrate_one() on a PTE-mapped
    // THP with an entry takes a garbage subpage from pte_pfn() of the swap PTE and
    // leaves a migration entry naming it (spec 8 item 13, modelled: migrate.rs), so
    // every later access to that page waits for ever; a CI run hung on it.
    stress(
        Profile {
            svm_atomic_unlock_on_retry: true,
            restore_takes_folio_ref: true,
            ..Profile::linux_5_14()
        },
        false,
    );
}
