//! Helpers of the schedule-explored suites (tests/shuttle_*.rs): a small system whose
//! folio waits collide, a mapped page, the end-of-scenario checks, the threads several
//! scenarios race, and the exploration run with its schedule count.

use svmkit::check::{ExploreConfig, ExploreReport, explore};
use svmkit::device::dmirror::{Dmirror, DmirrorIoctl, HmmDmirrorCmd};
use svmkit::device::svm_atomic::SvmAtomic;
use svmkit::mm::mmu_notifier::Owner;
use svmkit::mm::{Advice, Folio, MmUser, PMD_SIZE};
use svmkit::sync::Arc;
use svmkit::sync::thread::{self, JoinHandle};
use svmkit::task::Task;
use svmkit::{Errno, Profile, System, SystemConfig};

use super::{BASE, FIXED, P, RW, checked};

/// Schedules per scheduler (random, then PCT) of the suites that race the mm paths in
/// both eras: CI runs at least 1000 of each.
pub const ITERS: usize = 1000;

/// A system of `frames` frames under `profile` with a wait table of two buckets
/// (`wait_table_bits = 1`), so that waits on different folios share a queue as they
/// can in Linux and the explorer sees those wake-ups.
pub fn explored_system(profile: Profile, frames: u64) -> Arc<System> {
    let mut config = SystemConfig::with_frames(frames);
    config.mem.wait_table_bits = 1;
    config.profile = profile;
    System::new(config).unwrap()
}

/// [`explored_system`] with one process that maps `len` bytes of read-write private
/// anonymous memory at [`BASE`], none of it touched yet.
pub fn explored_mapping(profile: Profile, frames: u64, len: u64) -> (Arc<System>, MmUser) {
    let sys = explored_system(profile, frames);
    let mm = sys.create_mm().unwrap();
    mm.mmap(BASE, len, RW, FIXED).unwrap();
    (sys, mm)
}

/// [`explored_mapping`] of one page that has `value` written at its start.
pub fn explored_page(profile: Profile, frames: u64, value: u64) -> (Arc<System>, MmUser) {
    let (sys, mm) = explored_mapping(profile, frames, P);
    mm.write_u64(BASE, value).unwrap();
    (sys, mm)
}

/// Frames for a system with a THP: one free order-9 block (frames 512..1024) plus
/// small ones for tables.
pub const THP_FRAMES: u64 = 1100;

/// Maps a PMD-sized read-write range at [`BASE`] (PMD-aligned) with MADV_HUGEPAGE:
/// its first write faults in a THP.
pub fn map_thp(mm: &MmUser) {
    mm.mmap(BASE, PMD_SIZE, RW, FIXED).unwrap();
    mm.madvise(BASE, PMD_SIZE, Advice::HugePage).unwrap();
}

/// Explores `f` (random, then PCT, `iters` schedules each) and panics with the
/// failure; every schedule of both schedulers must have run.
#[track_caller]
pub fn explored(iters: usize, f: impl Fn() + Send + Sync + 'static) -> ExploreReport {
    let report = explore(&ExploreConfig::new(iters), f).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.schedules() >= 2 * iters, "{report:?}");
    report
}

/// The 2021 design with nouveau's 2025 retry fix, to isolate the mm paths: the
/// pre-fix driver self-deadlocks on any retry (shuttle_svm's leak-on-retry tests,
/// `shuttle_leak_on_retry_*`).
pub fn linux_5_14_fixed_driver() -> Profile {
    Profile {
        svm_atomic_unlock_on_retry: true,
        ..Profile::linux_5_14()
    }
}

/// No bad-page report, and the invariant checker passes.
#[track_caller]
pub fn check_clean(sys: &System) {
    assert!(
        sys.mem().bad_pages().is_empty(),
        "{:?}",
        sys.mem().bad_pages()
    );
    checked(sys);
}

/// Every frame is free again.
#[track_caller]
pub fn all_frames_free(sys: &System) {
    assert_eq!(
        sys.mem().nr_free_pages(),
        sys.mem().nr_usable_pages(),
        "a frame leaked"
    );
}

/// After everything is dropped: [`check_clean`], and every swap slot and frame came
/// back.
#[track_caller]
pub fn check_nothing_left(sys: &System) {
    check_clean(sys);
    assert_eq!(
        sys.mem().swap_slots_used(),
        0,
        "a swap slot leaked: {:?}",
        sys.mem().swap_usage()
    );
    all_frames_free(sys);
}

/// A device thread doing one svm_atomic add of 1 at [`BASE`]: 1 if it happened, 0 if
/// it did not.
pub fn spawn_device_add(gpu: &Arc<SvmAtomic>) -> JoinHandle<u64> {
    let gpu = gpu.clone();
    thread::spawn(
        move || match gpu.atomic_fetch_add(&Task::new("gpu"), BASE, 1) {
            Ok(_) => 1,
            // The bound (starvation) or a failed conversion: no update happened.
            Err(Errno::EBUSY | Errno::EINVAL) => 0,
            Err(e) => panic!("{e}"),
        },
    )
}

/// dmirror's EXCLUSIVE ioctl on the page at [`BASE`], reading it back into `buf` (a
/// page).
pub fn dmirror_exclusive(dm: &Dmirror, buf: &mut [u8]) -> Result<(), Errno> {
    let mut cmd = HmmDmirrorCmd {
        addr: BASE,
        npages: 1,
        ..Default::default()
    };
    dm.ioctl(&Task::new("test"), DmirrorIoctl::Exclusive, &mut cmd, buf)
}

/// A CPU thread adding `delta` at [`BASE`].
pub fn spawn_cpu_add(mm: &MmUser, delta: u64) -> JoinHandle<u64> {
    let mm = mm.clone();
    thread::spawn(move || mm.fetch_add_u64(BASE, delta).unwrap())
}

/// A CPU thread adding 1 at [`BASE`] `times` times (the data check counts them).
pub fn spawn_cpu_increments(mm: &MmUser, times: u64) -> JoinHandle<()> {
    let mm = mm.clone();
    thread::spawn(move || {
        for _ in 0..times {
            mm.fetch_add_u64(BASE, 1).unwrap();
        }
    })
}

/// A driver thread making the page at [`BASE`] device-exclusive for its own owner,
/// yielding while it holds the folio, then releasing it (whatever the conversion
/// answered: the race decides).
pub fn spawn_exclusive_then_release(mm: &MmUser) -> JoinHandle<()> {
    let mm = mm.clone();
    thread::spawn(move || {
        let (owner, task) = (Owner::new(), Task::new("driver"));
        let mut g = mm.mmap_read_lock();
        let excl = mm.make_device_exclusive(&mut g, BASE, Some(owner), &task);
        drop(g);
        svmkit::sync::yield_now();
        drop(excl);
    })
}

/// A thread forking `parent`; it returns the child.
pub fn spawn_fork(sys: &Arc<System>, parent: &MmUser) -> JoinHandle<MmUser> {
    let (sys, parent) = (sys.clone(), parent.clone());
    thread::spawn(move || sys.fork(&parent).unwrap())
}

/// A thread migrating `folio`. The folio may be busy (locked by the driver,
/// referenced by an entry the era's walkers cannot convert: EAGAIN) or no longer an
/// anonymous folio (EINVAL): an answer, not a failure; nothing was migrated.
pub fn spawn_migrate(sys: &Arc<System>, folio: Folio) -> JoinHandle<()> {
    let sys = sys.clone();
    thread::spawn(move || match sys.mem().migrate_folio(folio) {
        Ok(_) | Err(Errno::EAGAIN) | Err(Errno::EINVAL) => {}
        Err(e) => panic!("{e}"),
    })
}
