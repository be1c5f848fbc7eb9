//! Helpers the integration tests share: a system with one process, the checker, and
//! the constants most tests map with.
//!
//! Each test binary compiles its own copy and uses a part of it. [`sched`] holds what
//! the schedule-explored suites (tests/shuttle_*.rs) share.
#![allow(dead_code)]

pub mod sched;

use svmkit::check::ExtraRefs;
use svmkit::mm::{Folio, MapFlags, MmUser, Prot};
use svmkit::sync::Arc;
use svmkit::{PAGE_SIZE, Profile, System, SystemConfig, VirtAddr};

/// Read and write.
pub const RW: Prot = Prot::READ.union(Prot::WRITE);
/// Private anonymous memory at a fixed address.
pub const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
/// Where the tests map their buffers.
pub const BASE: u64 = 0x4000_0000;
/// One page.
pub const P: u64 = PAGE_SIZE;

/// A system of `frames` frames under `profile`, with one process.
pub fn system(profile: Profile, frames: u64) -> (Arc<System>, MmUser) {
    let mut config = SystemConfig::with_frames(frames);
    config.profile = profile;
    let sys = System::new(config).unwrap();
    let mm = sys.create_mm().unwrap();
    (sys, mm)
}

/// Panics with the checker's report if any invariant is broken.
#[track_caller]
pub fn checked(sys: &System) {
    if let Err(e) = sys.check() {
        panic!("{e}");
    }
}

/// Panics with the checker's report if any invariant is broken, counting `extra`
/// references the test holds.
#[track_caller]
pub fn checked_with(sys: &System, extra: &ExtraRefs) {
    if let Err(e) = sys.check_with(extra) {
        panic!("{e}");
    }
}

/// The address `a`, which the test knows to be valid.
pub fn va(a: u64) -> VirtAddr {
    VirtAddr::try_new(a).unwrap()
}

/// The folio `mm` maps at `a`.
pub fn folio_at(sys: &System, mm: &MmUser, a: u64) -> Folio {
    sys.mem().page_folio(mm.translate(va(a)).unwrap()).unwrap()
}
