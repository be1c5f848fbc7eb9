//! `svm_atomic`: a GPU-style driver that serves device atomics on system memory by
//! making pages device-exclusive (Linux: nouveau's `nouveau_atomic_range_fault()` and
//! the notifiers of `drivers/gpu/drm/nouveau/nouveau_svm.c`; spec 6.2 to 6.4).
//!
//! A device atomic on a page the device does not map atomically raises a device
//! fault. The driver then, for that page:
//!
//! ```text
//! insert an interval notifier on the page
//! loop (bounded: Linux's 1 s timeout; here a pass count, then EBUSY):
//!     seq = read_begin
//!     mmap_read_lock; make_device_exclusive(page, owner = this device); unlock
//!     lock(driver)
//!     if read_retry(seq): unlock(driver); unlock + put the folio; again
//!     program an atomic device entry; unlock(driver); break
//! unlock + put the folio; remove the notifier; replay the atomic
//! ```
//!
//! Its interval callback returns without `set_seq` for `Exclusive` events carrying its
//! own owner, the invalidation its own `make_device_exclusive` causes (without that
//! filter every pass retries: the livelock of spec 6.3), and calls `set_seq` for
//! everything else. Its classic (whole-mm) notifier has no `Exclusive` filter and
//! clears the device entries in every invalidated range: that is how the CPU restore
//! (and another device's conversion) revokes the atomic mapping.
//!
//! # Lifetime: process exit and file close
//! Like nouveau's `nouveau_mn_ops`, the classic notifier has `invalidate_range_start`
//! only: **no `release`**. At the process's exit `mmu_notifier_release()` gives the
//! interval notifiers `Release`, calls the classic `release`s (none here) and unhooks
//! every classic subscription, so exit's unmap, which frees the process's pages,
//! reaches interval notifiers only, and this driver's per-fault interval notifiers
//! exist only while a fault is handled. The device table is cleared only when the
//! driver is closed ([`SvmAtomic::close`], or drop: Linux `nouveau_svmm_fini()` at the
//! DRM file's release, which stops serving, then the GPU VMM's destruction), and a
//! new fault after the exit fails (`mmget_not_zero()`, `EINVAL`).
//!
//! **Finding (derived from the Linux sources; no kernel run; not reported upstream as
//! far as we found).** When a nouveau process's mm exits while its DRM file stays
//! open (another process holds the file descriptor; do_exit's `exit_mm()` runs before
//! `exit_files()`, and the final `fput` is deferred, so the file's release comes later
//! in any case), the GPU page table keeps its PFN entries, with atomic rights, for
//! pages exit has freed: HMM PFN mappings hold no page references. Until the file is
//! closed, a GPU access through such an entry reads or writes a freed frame, or
//! whatever the allocator made of it (another process's page, a page table). The
//! model reproduces it faithfully: after the exit the entries stay, and a device
//! atomic through one is performed on the frame. It is not silent: the device audit
//! (`mm/secondary.rs`) records the access as a stale device access and the checker
//! flags both it and every entry left pointing into the exited mm. The reproduction is
//! the test `svm_atomic_device_entries_outlive_exit_derived` (tests/svm_atomic.rs) and
//! the explored `shuttle_exit_races_a_device_atomic_*` (tests/shuttle_device_exit.rs);
//! it should become a corpus scenario once the scenario format exists.
//!
//! [`SvmFlaws`] switches on design flaws for study; each is off by default and names
//! the spec item it reproduces.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{DevPte, DevRights, Device, DeviceFault};
use crate::error::Errno;
use crate::mm::mmu_notifier::{
    FirstPass, MmuIntervalNotifier, MmuIntervalNotifierOps, MmuNotifierEvent, MmuNotifierId,
    MmuNotifierOps, MmuNotifierRange,
};
use crate::mm::{Folio, HmmPfn, HmmRange, Mm, MmUser};
use crate::sync::{Arc, yield_now};
use crate::task::Task;
use crate::trace::Payload;
use crate::types::{PAGE_SIZE, Pfn};

/// Design flaws to study; all off (`Default`) is the correct driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SvmFlaws {
    /// Ignore the driver's own `Exclusive` events in the interval callback (true, the
    /// default and what nouveau does). Turning it off reproduces the livelock of the
    /// seed review and spec 6.3: every pass retries until the bound returns `EBUSY`.
    pub filter_own_exclusive: bool,
    /// Treat every `Exclusive` event as the driver's own, whatever its owner, in both
    /// notifiers (spec 6.3 "filter correctness conditions"): a restore sent as
    /// `Exclusive` with no owner (the 5.14 design, spec 6.4) is swallowed and the
    /// device keeps a stale atomic mapping.
    pub filter_ignores_owner: bool,
    /// Return from the interval callback without `set_seq` for `Unmap` events: a
    /// munmap inside the read section goes unnoticed and the device maps a page the
    /// CPU no longer has.
    pub skip_set_seq_on_unmap: bool,
    /// On retry, keep the folio locked and referenced (nouveau before `b3fefbb30a16`,
    /// spec 8 item 22 and 9.6).
    pub leak_folio_on_retry: bool,
    /// Serve atomics through a plain writable mirror (`hmm_range_fault` with a write
    /// request) instead of a device-exclusive page: the device's read-modify-write
    /// races the CPU's, and updates are lost.
    pub atomics_through_write_entry: bool,
}

impl Default for SvmFlaws {
    fn default() -> Self {
        SvmFlaws {
            filter_own_exclusive: true,
            filter_ignores_owner: false,
            skip_set_seq_on_unmap: false,
            leak_folio_on_retry: false,
            atomics_through_write_entry: false,
        }
    }
}

/// Counters of what the driver did (all observable by tests and the demo).
#[derive(Debug, Default)]
pub struct SvmStats {
    /// Device faults handled (atomic fault handler runs).
    pub faults: AtomicU64,
    /// Passes of the acquire loop, over all faults.
    pub passes: AtomicU64,
    /// Passes that ended in `read_retry`.
    pub retries: AtomicU64,
    /// Faults that gave up with `EBUSY` (the bound).
    pub ebusy: AtomicU64,
    /// Atomics completed on the device.
    pub atomics: AtomicU64,
    /// Folios leaked on retry (with `leak_folio_on_retry`).
    pub leaked: AtomicU64,
}

/// A folio the driver left locked and referenced on a retry (nouveau before
/// `b3fefbb30a16`, spec 8 item 22): who leaked it, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakedFolio {
    /// The folio, still locked unless someone unlocked it since.
    pub folio: Folio,
    /// The page that was made exclusive.
    pub page: Pfn,
    /// The (page-aligned) address of the fault.
    pub addr: u64,
    /// The name of the task whose fault handler leaked it.
    pub task: String,
}

/// What a task's fault handler is doing now (for hung-task style reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultInFlight {
    /// The task's name.
    pub task: String,
    /// The (page-aligned) address of the fault.
    pub addr: u64,
    /// The pass of the acquire loop it is in (1 for the first).
    pub pass: u64,
    /// Whether it is inside `make_device_exclusive[_range]` (whose GUP may sleep on
    /// a folio lock), rather than elsewhere in the pass.
    pub in_make_exclusive: bool,
}

/// The driver's bookkeeping of leaks and faults in flight. A plain (not model)
/// mutex: it is never held across a model operation, so it adds no scheduling point.
#[derive(Debug, Default)]
struct Ledger {
    leaked: Vec<LeakedFolio>,
    in_flight: Vec<FaultInFlight>,
}

/// The interval callback (Linux: `nouveau_svm_range_invalidate()`).
struct IntervalOps {
    dev: Arc<Device>,
    flaws: SvmFlaws,
    /// Invalidate in two passes (Linux 7.1's `invalidate_start` and finish, as Xe does):
    /// the first sets the sequence, the second takes the device's entries away.
    two_pass: bool,
}

impl IntervalOps {
    fn ignores(&self, range: &MmuNotifierRange<'_>) -> bool {
        let own = Some(self.dev.owner());
        match range.event {
            MmuNotifierEvent::Exclusive if self.flaws.filter_ignores_owner => true,
            MmuNotifierEvent::Exclusive => self.flaws.filter_own_exclusive && range.owner == own,
            MmuNotifierEvent::Unmap => self.flaws.skip_set_seq_on_unmap,
            _ => false,
        }
    }
}

impl MmuIntervalNotifierOps for IntervalOps {
    fn invalidate(
        &self,
        sub: &MmuIntervalNotifier,
        range: &MmuNotifierRange<'_>,
        cur_seq: u64,
    ) -> bool {
        if self.ignores(range) {
            return true;
        }
        let lock = if range.blockable {
            Some(self.dev.lock())
        } else {
            self.dev.try_lock()
        };
        let Some(_table) = lock else {
            return false;
        };
        sub.set_seq(cur_seq);
        true
    }

    /// Linux 7.1 (a driver option here, modelled on Xe's userptr notifier): the first
    /// pass sets the sequence under the driver lock and starts the device's
    /// invalidation; the second, after every overlapping notifier's first pass, waits
    /// for it, that is takes the device's entries in the range away. A non-blockable
    /// range is done in one pass (the second would sleep).
    fn invalidate_start(
        &self,
        sub: &MmuIntervalNotifier,
        range: &MmuNotifierRange<'_>,
        cur_seq: u64,
    ) -> FirstPass {
        if !self.two_pass || !range.blockable {
            return FirstPass::Done(self.invalidate(sub, range, cur_seq));
        }
        if self.ignores(range) {
            return FirstPass::Done(true);
        }
        let table = self.dev.lock();
        sub.set_seq(cur_seq);
        drop(table);
        let dev = Arc::clone(&self.dev);
        FirstPass::Started(Box::new(move |_, range, _| {
            dev.lock().erase_range(range.start, range.end);
        }))
    }

    fn trace_name(&self) -> Option<String> {
        Some(self.dev.name().to_string())
    }
}

/// The whole-mm notifier (Linux: `nouveau_mn_ops`, whose only callbacks are
/// `invalidate_range_start` and `free_notifier`): clears the device's entries in every
/// invalidated range; no `Exclusive` filter (unless the `filter_ignores_owner` flaw
/// makes it skip every `Exclusive` event); no `release`. Its `Drop`, when the
/// subscription is put and no invalidation runs it any more, is the `free_notifier`.
struct ClassicOps {
    dev: Arc<Device>,
    flaws: SvmFlaws,
    /// Linux: `svmm->vmm != NULL`, read and cleared under the driver lock.
    vmm: Arc<AtomicBool>,
}

impl MmuNotifierOps for ClassicOps {
    /// Linux: `nouveau_svmm_invalidate_range_start()`.
    fn invalidate_range_start(&self, range: &MmuNotifierRange<'_>) -> Result<(), Errno> {
        if !range.blockable {
            return Err(Errno::EAGAIN);
        }
        let mut table = self.dev.lock();
        if !self.vmm.load(Ordering::Acquire) {
            // Closed (nouveau_svmm_fini() set svmm->vmm = NULL): nothing to clear.
            return Ok(());
        }
        let own = Some(self.dev.owner());
        let skip = (range.event == MmuNotifierEvent::Migrate && range.owner == own)
            || (range.event == MmuNotifierEvent::Exclusive && self.flaws.filter_ignores_owner);
        if !skip {
            table.erase_range(range.start, range.end);
        }
        Ok(())
    }

    fn trace_name(&self) -> Option<String> {
        Some(self.dev.name().to_string())
    }
}

/// A GPU-style device serving atomics on one process's memory.
pub struct SvmAtomic {
    dev: Arc<Device>,
    mm: Arc<Mm>,
    classic: MmuNotifierId,
    /// Shared with the classic notifier: false once closed.
    vmm: Arc<AtomicBool>,
    flaws: SvmFlaws,
    max_passes: u64,
    /// New faults' interval notifiers invalidate in two passes
    /// ([`use_two_pass_notifier`](SvmAtomic::use_two_pass_notifier)).
    two_pass: AtomicBool,
    stats: SvmStats,
    ledger: std::sync::Mutex<Ledger>,
}

impl SvmAtomic {
    /// Binds a new device to the process (Linux: `nouveau_svmm_init()`, which
    /// registers the whole-mm notifier). `max_passes` (at least 1) bounds each fault's
    /// acquire loop (Linux: `HMM_RANGE_DEFAULT_TIMEOUT`, 1 s) and the number of faults
    /// one atomic takes (see [`atomic_fetch_add`](Self::atomic_fetch_add)).
    pub fn new(
        mm: &MmUser,
        name: &str,
        flaws: SvmFlaws,
        max_passes: u64,
    ) -> Result<SvmAtomic, Errno> {
        let dev = Device::new(mm.mm(), name);
        let vmm = Arc::new(AtomicBool::new(true));
        let classic = mm.mmu_notifier_register(Arc::new(ClassicOps {
            dev: Arc::clone(&dev),
            flaws,
            vmm: Arc::clone(&vmm),
        }))?;
        Ok(SvmAtomic {
            dev,
            mm: Arc::clone(mm.mm()),
            classic,
            vmm,
            flaws,
            max_passes: max_passes.max(1),
            two_pass: AtomicBool::new(false),
            stats: SvmStats::default(),
            ledger: std::sync::Mutex::default(),
        })
    }

    /// Whether the interval notifiers of faults from now on use Linux 7.1's two-pass
    /// form (spec 10.1, as Xe does): the first pass sets the sequence and the second
    /// takes the device's entries away, after every overlapping notifier's first pass.
    /// Off by default (nouveau's one pass, whose entries go in the whole-mm notifier).
    pub fn use_two_pass_notifier(&self, on: bool) {
        self.two_pass.store(on, Ordering::Relaxed);
    }

    /// The process's mm this driver serves.
    pub fn mm(&self) -> &Arc<Mm> {
        &self.mm
    }

    /// The folios the driver left locked and referenced on a retry, oldest first
    /// (each also counted in [`SvmStats::leaked`]).
    pub fn leaked_folios(&self) -> Vec<LeakedFolio> {
        self.ledger().leaked.clone()
    }

    /// The device faults being handled now, one per task inside
    /// [`atomic_range_fault`](Self::atomic_range_fault).
    pub fn faults_in_flight(&self) -> Vec<FaultInFlight> {
        self.ledger().in_flight.clone()
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records (or, with `None`, forgets) what `task`'s fault handler is doing.
    fn set_in_flight(&self, task: &Task, now: Option<(u64, u64, bool)>) {
        let mut l = self.ledger();
        l.in_flight.retain(|f| f.task != task.name());
        if let Some((addr, pass, in_make_exclusive)) = now {
            l.in_flight.push(FaultInFlight {
                task: task.name().to_string(),
                addr,
                pass,
                in_make_exclusive,
            });
        }
    }

    /// The device.
    pub fn device(&self) -> &Arc<Device> {
        &self.dev
    }

    /// What the driver did so far.
    pub fn stats(&self) -> &SvmStats {
        &self.stats
    }

    /// A device atomic add on the `u64` at `addr`: runs on the device if it maps the
    /// page atomically, else takes a device fault, resolves it with
    /// [`atomic_range_fault`](Self::atomic_range_fault) and replays. Returns the old
    /// value, or the fault handler's error (`EBUSY` at the bound, `EINVAL` when
    /// `make_device_exclusive` fails, as nouveau reports).
    ///
    /// A resolved fault is always followed by a replay (the GPU replays the faulting
    /// access once the fault buffer entry is handled). `max_passes` bounds each
    /// fault's acquire loop and, separately, the number of faults one atomic may take
    /// (a replay that faults again because the page was revoked in between starts a
    /// new fault); past that the atomic gives up with `EBUSY`. So with `max_passes`
    /// 1 an uncontended atomic takes one fault of one pass and one replay.
    pub fn atomic_fetch_add(&self, task: &Task, addr: u64, delta: u64) -> Result<u64, Errno> {
        self.atomic_fetch_add_counting(task, addr, delta, &mut 0)
    }

    /// [`atomic_fetch_add`](Self::atomic_fetch_add), adding the passes of the fault
    /// loop this atomic took, over all its faults, to `passes` (what
    /// [`SvmStats::passes`] counts for the whole device; 0 when the device already
    /// mapped the page atomically). A pass that gives up (`EINVAL` from the conversion)
    /// counts; the bound's `EBUSY` check before a pass does not.
    pub fn atomic_fetch_add_counting(
        &self,
        task: &Task,
        addr: u64,
        delta: u64,
        passes: &mut u64,
    ) -> Result<u64, Errno> {
        let mut faults = 0;
        loop {
            let r = if self.flaws.atomics_through_write_entry {
                // A read-modify-write through a plain write entry: correct against
                // other device operations (the driver lock), not against the CPU.
                self.dev.read_modify_write(addr, delta, DevRights::WRITE)
            } else {
                self.dev.fetch_add_u64(addr, delta)
            };
            match r {
                Ok(old) => {
                    self.stats.atomics.fetch_add(1, Ordering::Relaxed);
                    return Ok(old);
                }
                Err(DeviceFault::BadAccess) => return Err(Errno::EINVAL),
                Err(_) if faults == self.max_passes => {
                    self.stats.ebusy.fetch_add(1, Ordering::Relaxed);
                    return Err(Errno::EBUSY);
                }
                Err(_) => {
                    faults += 1;
                    if self.flaws.atomics_through_write_entry {
                        self.write_fault(addr, passes)?;
                    } else {
                        self.atomic_range_fault_counting(task, addr, passes)?;
                    }
                }
            }
        }
    }

    /// The device fault handler for an atomic: make the page device-exclusive inside
    /// an interval-notifier read section and program an atomic entry. Returns the
    /// passes it took.
    ///
    /// Linux: `nouveau_atomic_range_fault()` (6.15 form: `make_device_exclusive()`).
    pub fn atomic_range_fault(&self, task: &Task, addr: u64) -> Result<u64, Errno> {
        let mut passes = 0;
        self.atomic_range_fault_counting(task, addr, &mut passes)
            .map(|()| passes)
    }

    /// [`atomic_range_fault`](Self::atomic_range_fault), adding its passes to `passes`
    /// whether it succeeds or not.
    fn atomic_range_fault_counting(
        &self,
        task: &Task,
        addr: u64,
        counted: &mut u64,
    ) -> Result<(), Errno> {
        self.stats.faults.fetch_add(1, Ordering::Relaxed);
        let start = addr & !(PAGE_SIZE - 1);
        let tracer = self.mm.mem().tracer();
        let mut fault_span = tracer.span(|| Payload::DeviceFault {
            device: self.dev.name().to_string().into(),
            addr: start,
        });
        let notifier = self.mm.mmu_interval_notifier_insert(
            start,
            PAGE_SIZE,
            Arc::new(IntervalOps {
                dev: Arc::clone(&self.dev),
                flaws: self.flaws,
                two_pass: self.two_pass.load(Ordering::Relaxed),
            }),
        )?;
        let mut passes = 0;
        let result = loop {
            if passes == self.max_passes {
                self.stats.ebusy.fetch_add(1, Ordering::Relaxed);
                break Err(Errno::EBUSY);
            }
            passes += 1;
            *counted += 1;
            self.stats.passes.fetch_add(1, Ordering::Relaxed);
            let mut pass_span = tracer.span(|| Payload::DriverPass {
                device: self.dev.name().to_string().into(),
                addr: start,
                pass: passes,
            });
            let seq = notifier.read_begin();
            self.set_in_flight(task, Some((start, passes, true)));
            let made = {
                let Some(user) = self.mm.mmget_not_zero() else {
                    break Err(Errno::EINVAL);
                };
                let mut g = user.mmap_read_lock();
                let owner = Some(self.dev.owner());
                if user.profile().has_range_api {
                    // 5.14 form: the range API over one page; `ret <= 0 || !page`
                    // is EINVAL.
                    user.make_device_exclusive_range(&mut g, start, start + PAGE_SIZE, owner, task)
                        .ok()
                        .and_then(|mut v| v.pop().flatten())
                        .ok_or(Errno::EINVAL)
                } else {
                    user.make_device_exclusive(&mut g, start, owner, task)
                }
            };
            self.set_in_flight(task, Some((start, passes, false)));
            let Ok(excl) = made else {
                pass_span.result(|| "EINVAL (make_device_exclusive failed)".into());
                break Err(Errno::EINVAL);
            };
            yield_now();
            let mut table = self.dev.lock();
            if notifier.read_retry(seq) {
                drop(table);
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                if self.flaws.leak_folio_on_retry || !self.mm.profile().svm_atomic_unlock_on_retry {
                    let (folio, page) = excl.leak();
                    self.ledger().leaked.push(LeakedFolio {
                        folio,
                        page,
                        addr: start,
                        task: task.name().to_string(),
                    });
                    self.stats.leaked.fetch_add(1, Ordering::Relaxed);
                    pass_span.result(|| "retry (read_retry; folio left locked)".into());
                } else {
                    drop(excl);
                    pass_span.result(|| "retry (read_retry)".into());
                }
                drop(pass_span);
                continue;
            }
            table.set(
                start,
                DevPte {
                    pfn: excl.page(),
                    rights: DevRights::READ | DevRights::WRITE | DevRights::ATOMIC,
                },
            );
            drop(table);
            drop(excl);
            pass_span.result(|| "mapped atomic".into());
            break Ok(());
        };
        self.set_in_flight(task, None);
        let _ = notifier.remove();
        fault_span.result(|| match &result {
            Ok(()) => format!("ok after {passes} passes").into(),
            Err(e) => format!("{} after {passes} passes", e.name()).into(),
        });
        result
    }

    /// The flawed alternative: mirror the page writable with `hmm_range_fault`
    /// (no exclusivity), the way a plain device write fault would.
    fn write_fault(&self, addr: u64, passes: &mut u64) -> Result<(), Errno> {
        self.stats.faults.fetch_add(1, Ordering::Relaxed);
        let start = addr & !(PAGE_SIZE - 1);
        let notifier = self.mm.mmu_interval_notifier_insert(
            start,
            PAGE_SIZE,
            Arc::new(IntervalOps {
                dev: Arc::clone(&self.dev),
                flaws: self.flaws,
                two_pass: self.two_pass.load(Ordering::Relaxed),
            }),
        )?;
        let result = (|| {
            for _ in 0..self.max_passes {
                *passes += 1;
                self.stats.passes.fetch_add(1, Ordering::Relaxed);
                let mut range = HmmRange::new(
                    &notifier,
                    start,
                    start + PAGE_SIZE,
                    HmmPfn::request(true, true),
                );
                range.notifier_seq = notifier.read_begin();
                let r = {
                    let user = self.mm.mmget_not_zero().ok_or(Errno::EINVAL)?;
                    let mut g = user.mmap_read_lock();
                    user.hmm_range_fault(&mut g, &mut range)
                };
                match r {
                    Err(Errno::EBUSY) => continue,
                    Err(e) => return Err(e),
                    Ok(()) => {}
                }
                let mut table = self.dev.lock();
                if notifier.read_retry(range.notifier_seq) {
                    continue;
                }
                if let Some(pfn) = range.hmm_pfns[0].pfn() {
                    table.set(
                        start,
                        DevPte {
                            pfn,
                            rights: DevRights::READ | DevRights::WRITE,
                        },
                    );
                }
                return Ok(());
            }
            Err(Errno::EBUSY)
        })();
        let _ = notifier.remove();
        result
    }
}

impl SvmAtomic {
    /// Closes the driver (the DRM file's release): under the driver lock it stops
    /// serving (the classic notifier turns into a no-op) and the device page table is
    /// torn down, every entry gone; then the classic subscription is put, without a
    /// `release` (none exists). Dropping the driver does the same.
    ///
    /// Linux: `nouveau_svmm_fini()` (`svmm->vmm = NULL` under `svmm->mutex`,
    /// `mmu_notifier_put()`), then the GPU VMM's destruction in `nouveau_cli_fini()`.
    pub fn close(self) {
        drop(self);
    }

    fn teardown(&mut self) {
        {
            let mut table = self.dev.lock();
            self.vmm.store(false, Ordering::Release);
            table.clear();
        }
        self.mm.mmu_notifier_put(self.classic);
    }
}

impl Drop for SvmAtomic {
    /// [`SvmAtomic::close`].
    fn drop(&mut self) {
        self.teardown();
    }
}

impl fmt::Debug for SvmAtomic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvmAtomic")
            .field("dev", &self.dev)
            .field("flaws", &self.flaws)
            .field("max_passes", &self.max_passes)
            .finish_non_exhaustive()
    }
}
