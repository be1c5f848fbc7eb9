//! The model's side of the ledger: the operations of [`crate::real`] through svmkit's
//! public API, returning nanoseconds per the same unit.

use std::time::Instant;

use crate::Error;
use svmkit::mm::mmu_notifier::{
    MmuIntervalNotifier, MmuNotifierEvent, MmuNotifierRange, Owner, SetSeqUnderLock,
};
use svmkit::mm::{Advice, MapFlags, MmUser, Prot};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{PAGE_SIZE, System, SystemConfig};

const RW: Prot = Prot::READ.union(Prot::WRITE);
const ANON: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);

fn ns_since(t: Instant) -> f64 {
    t.elapsed().as_nanos() as f64
}

/// Frames for a model holding `pages` touched pages: the pages, their page tables
/// (one per 512 pages, plus the upper levels) and slack.
pub fn frames_for(pages: u64) -> u64 {
    pages + pages / 256 + 1024
}

/// A machine and one process on it.
#[derive(Debug)]
pub struct Machine {
    /// The machine.
    pub sys: Arc<System>,
    /// Its process.
    pub mm: MmUser,
}

impl Machine {
    /// A machine of `frames` frames and an empty process.
    pub fn new(frames: u64) -> Result<Self, Error> {
        let sys = System::new(SystemConfig::with_frames(frames))?;
        let mm = sys.create_mm()?;
        Ok(Machine { sys, mm })
    }

    /// Maps `pages` private anonymous pages and writes each once; the address.
    pub fn touched(&self, pages: u64) -> Result<u64, Error> {
        let addr = self.mm.mmap(0, pages * PAGE_SIZE, RW, ANON)?.raw();
        touch(&self.mm, addr, pages)?;
        Ok(addr)
    }
}

fn touch(mm: &MmUser, addr: u64, pages: u64) -> Result<(), Error> {
    for i in 0..pages {
        mm.write_u64(addr + i * PAGE_SIZE, i)?;
    }
    Ok(())
}

/// First-touch write faults: mmap `pages` pages, write one word per page, munmap;
/// nanoseconds per page.
pub fn first_touch(mm: &MmUser, pages: u64) -> Result<f64, Error> {
    let t = Instant::now();
    let len = pages * PAGE_SIZE;
    let addr = mm.mmap(0, len, RW, ANON)?.raw();
    touch(mm, addr, pages)?;
    mm.munmap(addr, len)?;
    Ok(ns_since(t) / pages as f64)
}

/// `mprotect(PROT_NONE)` then `mprotect(RW)` over a whole touched region.
#[derive(Debug)]
pub struct MprotectRange {
    m: Machine,
    addr: u64,
    pages: u64,
}

impl MprotectRange {
    /// A touched region of `pages` pages.
    pub fn new(pages: u64) -> Result<Self, Error> {
        let m = Machine::new(frames_for(pages))?;
        let addr = m.touched(pages)?;
        Ok(MprotectRange { m, addr, pages })
    }

    /// One NONE + RW pair; nanoseconds per page.
    pub fn sample(&self) -> Result<f64, Error> {
        let len = self.pages * PAGE_SIZE;
        let t = Instant::now();
        self.m.mm.mprotect(self.addr, len, Prot::empty())?;
        self.m.mm.mprotect(self.addr, len, RW)?;
        Ok(ns_since(t) / self.pages as f64)
    }
}

/// fork of a process with a touched region, against the fork of an empty process on
/// the same machine (the real side's `MADV_DONTFORK` twin): the difference is what the
/// region costs. The children exit outside the timing.
#[derive(Debug)]
pub struct Fork {
    m: Machine,
    empty: MmUser,
    pages: u64,
}

impl Fork {
    /// A process with `pages` touched pages, and an empty one.
    pub fn new(pages: u64) -> Result<Self, Error> {
        let m = Machine::new(frames_for(pages) + 1024)?;
        m.touched(pages)?;
        let empty = m.sys.create_mm()?;
        Ok(Fork { m, empty, pages })
    }

    /// One fork of each: (nanoseconds with the region, without).
    pub fn sample(&self) -> Result<(f64, f64), Error> {
        let t = Instant::now();
        let child = self.m.sys.fork(&self.m.mm)?;
        let with = ns_since(t);
        drop(child);
        let t = Instant::now();
        let child = self.m.sys.fork(&self.empty)?;
        let without = ns_since(t);
        drop(child);
        Ok((with, without))
    }

    /// The region's size in MiB.
    pub fn mib(&self) -> f64 {
        (self.pages * PAGE_SIZE) as f64 / (1 << 20) as f64
    }
}

/// `MADV_DONTNEED`, one call per page, over a region touched again before each batch
/// (outside the timing).
#[derive(Debug)]
pub struct DontneedPerPage {
    m: Machine,
    addr: u64,
    pages: u64,
}

impl DontneedPerPage {
    /// A region of `pages` pages.
    pub fn new(pages: u64) -> Result<Self, Error> {
        let m = Machine::new(frames_for(pages))?;
        let addr = m.mm.mmap(0, pages * PAGE_SIZE, RW, ANON)?.raw();
        Ok(DontneedPerPage { m, addr, pages })
    }

    /// Touches every page, then times the per-page calls; nanoseconds per page.
    pub fn sample(&self) -> Result<f64, Error> {
        touch(&self.m.mm, self.addr, self.pages)?;
        let t = Instant::now();
        for i in 0..self.pages {
            self.m
                .mm
                .madvise(self.addr + i * PAGE_SIZE, PAGE_SIZE, Advice::DontNeed)?;
        }
        Ok(ns_since(t) / self.pages as f64)
    }
}

/// The exclusive → CPU fault → restore cycle: `make_device_exclusive` of one present
/// page (the guard dropped at once, as a driver does after installing its entry), then
/// a CPU write that faults and restores the PTE.
#[derive(Debug)]
pub struct Cycle {
    m: Machine,
    addr: u64,
    pages: u64,
    owner: Owner,
    task: Task,
}

impl Cycle {
    /// A touched region of `pages` pages.
    pub fn new(pages: u64) -> Result<Self, Error> {
        let m = Machine::new(frames_for(pages))?;
        let addr = m.touched(pages)?;
        Ok(Cycle {
            m,
            addr,
            pages,
            owner: Owner::new(),
            task: Task::new("ledger"),
        })
    }

    /// One cycle per page; nanoseconds per cycle.
    pub fn sample(&self) -> Result<f64, Error> {
        let mm = &self.m.mm;
        let t = Instant::now();
        for i in 0..self.pages {
            let a = self.addr + i * PAGE_SIZE;
            {
                let mut g = mm.mmap_read_lock();
                drop(mm.make_device_exclusive(&mut g, a, Some(self.owner), &self.task)?);
            }
            mm.write_u64(a, i)?;
        }
        Ok(ns_since(t) / self.pages as f64)
    }
}

const NOTIFIER_BASE: u64 = 0x1000_0000;

/// Invalidation of one page that hits one interval notifier, with `n` disjoint
/// one-page notifiers registered (the hit one in the middle).
#[derive(Debug)]
pub struct Invalidation {
    m: Machine,
    subs: Vec<Arc<MmuIntervalNotifier>>,
    hit: u64,
}

impl Invalidation {
    /// Registers `n` notifiers.
    pub fn new(n: u64) -> Result<Self, Error> {
        let m = Machine::new(256)?;
        let driver = Arc::new(SetSeqUnderLock::new());
        let subs = (0..n)
            .map(|i| {
                m.mm.mm().mmu_interval_notifier_insert(
                    NOTIFIER_BASE + 2 * i * PAGE_SIZE,
                    PAGE_SIZE,
                    driver.clone(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hit = NOTIFIER_BASE + 2 * (n / 2) * PAGE_SIZE;
        Ok(Invalidation { m, subs, hit })
    }

    /// `reps` start/end pairs; nanoseconds per invalidation.
    pub fn sample(&self, reps: u32) -> f64 {
        let t = Instant::now();
        for _ in 0..reps {
            drop(
                MmuNotifierRange::new(
                    &self.m.mm,
                    MmuNotifierEvent::Clear,
                    self.hit,
                    self.hit + PAGE_SIZE,
                )
                .invalidate_range_start(),
            );
        }
        ns_since(t) / f64::from(reps)
    }
}

impl Drop for Invalidation {
    fn drop(&mut self) {
        for s in self.subs.drain(..) {
            let _ = s.remove();
        }
    }
}
