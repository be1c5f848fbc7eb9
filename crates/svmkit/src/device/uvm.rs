//! `uvm`: an NVIDIA-UVM-style driver serving device atomics on a multi-page region
//! (NVIDIA open-gpu-kernel-modules, `kernel-open/nvidia-uvm/uvm_hmm.c`: the atomic
//! path `hmm_block_atomic_fault_locked()`, its shim `hmm_make_device_exclusive_range()`
//! and the va_block notifier `hmm_invalidate()`; spec 10.2). Written from a reading of
//! that file; every consequence below is derived from code, not seen on hardware.
//!
//! ```text
//! atomic fault on [start, start + n pages) of one va_block (2 MiB):
//!   lock(driver); snapshot = changed; unlock(driver)      hmm_range_fault_begin()
//!   mmap_read_lock; pages = shim(start, n); unlock
//!     single-page API (6.15+): make_device_exclusive() page by page, every folio
//!       kept locked and referenced until all are released
//!     range API (5.14 to 6.14): make_device_exclusive_range() once
//!   lock(driver)
//!   error: EBUSY -> again; any other -> fail
//!   changed != snapshot, or a page is NULL: release all; again
//!   map every page atomically; unlock(driver); release all
//! ```
//!
//! UVM itself retries without bound (`UVM_VA_BLOCK_RETRY_LOCKED()` on
//! `NV_WARN_MORE_PROCESSING_REQUIRED`); the model stops after `max_passes` passes
//! with [`UvmError::Livelock`], so a livelock is an answer, not a hang.
//!
//! The invalidate callback ignores `Migrate` and `Exclusive` events carrying the
//! driver's own owner (UVM: `&g_uvm_global`; here the device's owner), the events its
//! own conversions cause; for every other event it bumps `changed`, sets the
//! sequence and unmaps the device in the range, under the driver lock.
//!
//! Consequences of the shim (derived from code, spec 10.2):
//! * single-page API, two pages of one large folio (a PTE-mapped THP after the first
//!   call's FOLL_SPLIT_PMD): the second `make_device_exclusive()` sleeps in
//!   `folio_lock_killable()` on the lock this thread took in the first call. Only a
//!   kill ends it.
//! * the shim's error path releases the pages it holds by reusing the variable that
//!   held the error, so `PTR_ERR()` reads a page pointer: an error after the first
//!   page comes back as no errno at all ([`UvmError::BadStatus`]), never as the
//!   `EBUSY` that would have retried or the `EINTR` of a kill.
//! * range API on a THP: tail pages come back NULL (spec 2.1), the pass is redone,
//!   and every pass finds the same: a livelock.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{DevPte, DevRights, Device, DeviceFault};
use crate::error::Errno;
use crate::mm::mmu_notifier::{
    MmuIntervalNotifier, MmuIntervalNotifierOps, MmuNotifierEvent, MmuNotifierRange,
};
use crate::mm::{ExclusiveFolio, Folio, HPAGE_PMD_SIZE, Mm, MmUser};
use crate::sync::Arc;
use crate::task::Task;
use crate::types::PAGE_SIZE;

/// Why an atomic fault failed (UVM: the `NV_STATUS` it returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UvmError {
    /// The conversion failed with this errno on the region's first page (UVM:
    /// `errno_to_nv_status()`).
    Errno(Errno),
    /// The conversion failed after the first page: the shim's `PTR_ERR()` read a
    /// page pointer, not an error pointer, so the status is no errno (derived from
    /// `hmm_make_device_exclusive_range()`: `page = pages[--npages]` before
    /// `npages = PTR_ERR(page)`).
    BadStatus,
    /// Every pass of the bound asked for more processing (UVM retries without end).
    Livelock,
}

impl fmt::Display for UvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UvmError::Errno(e) => write!(f, "{}", e.name()),
            UvmError::BadStatus => f.write_str("a status from PTR_ERR of a page pointer"),
            UvmError::Livelock => f.write_str("more processing required on every pass"),
        }
    }
}

/// The va_block notifier's state shared with the fault path: UVM's
/// `va_block->hmm.changed`, read and bumped under the driver lock.
#[derive(Debug, Default)]
struct Changed(AtomicU64);

/// The va_block interval callback (UVM: `hmm_invalidate()`).
struct BlockOps {
    dev: Arc<Device>,
    changed: Arc<Changed>,
}

impl MmuIntervalNotifierOps for BlockOps {
    fn invalidate(
        &self,
        sub: &MmuIntervalNotifier,
        range: &MmuNotifierRange<'_>,
        cur_seq: u64,
    ) -> bool {
        if range.event == MmuNotifierEvent::SoftDirty || range.event == MmuNotifierEvent::Release {
            return true;
        }
        if !range.blockable {
            return false;
        }
        let own = Some(self.dev.owner());
        if matches!(
            range.event,
            MmuNotifierEvent::Migrate | MmuNotifierEvent::Exclusive
        ) && range.owner == own
        {
            return true;
        }
        let mut table = self.dev.lock();
        self.changed.0.fetch_add(1, Ordering::Relaxed);
        sub.set_seq(cur_seq);
        table.erase_range(range.start, range.end);
        true
    }

    fn trace_name(&self) -> Option<String> {
        Some(self.dev.name().to_string())
    }
}

/// One va_block: its notifier over the 2 MiB and the counter its callback bumps.
struct VaBlock {
    notifier: Arc<MmuIntervalNotifier>,
    changed: Arc<Changed>,
}

/// Counters of the driver's work.
#[derive(Debug, Default)]
pub struct UvmStats {
    /// Atomic faults serviced (each a region).
    pub faults: AtomicU64,
    /// Passes of the service loop, over all faults.
    pub passes: AtomicU64,
    /// Device atomics performed.
    pub atomics: AtomicU64,
}

/// A UVM-style device serving atomics on one process's memory, a region at a time.
pub struct Uvm {
    dev: Arc<Device>,
    mm: Arc<Mm>,
    /// Pages each atomic fault services, aligned: UVM services a batch of faults
    /// over a region of one va_block.
    batch: u64,
    max_passes: u64,
    /// va_blocks by start; a plain mutex never held across a model operation.
    blocks: std::sync::Mutex<BTreeMap<u64, Arc<VaBlock>>>,
    /// The folios the shim holds locked now, for a hang's report; a plain mutex
    /// never held across a model operation.
    holding: std::sync::Mutex<Vec<HeldFolio>>,
    /// The shim's conversions in progress: (task, page address).
    converting: std::sync::Mutex<Vec<(String, u64)>>,
    stats: UvmStats,
}

/// A folio the shim holds locked and referenced between a conversion and the
/// release of its region (what a hang's report names as the lock's holder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldFolio {
    /// The folio.
    pub folio: Folio,
    /// The page address the shim converted.
    pub addr: u64,
    /// The task whose atomic fault holds it.
    pub task: String,
}

impl Uvm {
    /// Binds a new device to the process. Each atomic fault services the aligned
    /// region of `batch` pages (1 ..= 512) around the faulting page; `max_passes`
    /// (at least 1) bounds its service loop.
    pub fn new(mm: &MmUser, name: &str, batch: u64, max_passes: u64) -> Uvm {
        Uvm {
            dev: Device::new(mm.mm(), name),
            mm: Arc::clone(mm.mm()),
            batch: batch.clamp(1, HPAGE_PMD_SIZE / PAGE_SIZE),
            max_passes: max_passes.max(1),
            blocks: std::sync::Mutex::default(),
            holding: std::sync::Mutex::default(),
            converting: std::sync::Mutex::default(),
            stats: UvmStats::default(),
        }
    }

    /// The device (its page table and owner).
    pub fn device(&self) -> &Arc<Device> {
        &self.dev
    }

    /// The process's mm it serves.
    pub fn mm(&self) -> &Arc<Mm> {
        &self.mm
    }

    /// The driver's counters.
    pub fn stats(&self) -> &UvmStats {
        &self.stats
    }

    /// The folios its atomic faults hold locked at this moment (between a
    /// conversion and the release of the region's pages).
    pub fn folios_held(&self) -> Vec<HeldFolio> {
        self.holding_list().clone()
    }

    /// The conversions the shim is inside now, as (task, page address): a task
    /// asleep in one of them, on a folio it holds itself, is the self-deadlock of
    /// two pages of one large folio.
    pub fn conversions_in_flight(&self) -> Vec<(String, u64)> {
        self.converting_list().clone()
    }

    fn converting_list(&self) -> std::sync::MutexGuard<'_, Vec<(String, u64)>> {
        self.converting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn holding_list(&self) -> std::sync::MutexGuard<'_, Vec<HeldFolio>> {
        self.holding.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn note_held(&self, task: &Task, addr: u64, excl: &ExclusiveFolio) {
        self.holding_list().push(HeldFolio {
            folio: excl.folio(),
            addr,
            task: task.name().to_string(),
        });
    }

    /// Forgets what `task` held, as its pages are released.
    fn released(&self, task: &Task) {
        self.holding_list().retain(|h| h.task != task.name());
    }

    /// The va_block covering `addr`, created with its notifier on first use.
    ///
    /// UVM: `hmm_va_block_find_create()` (`mmu_interval_notifier_insert()` over the
    /// aligned 2 MiB).
    fn va_block(&self, addr: u64) -> Result<Arc<VaBlock>, Errno> {
        let start = addr & !(HPAGE_PMD_SIZE - 1);
        if let Some(b) = self.blocks_map().get(&start) {
            return Ok(Arc::clone(b));
        }
        let changed = Arc::new(Changed::default());
        let notifier = self.mm.mmu_interval_notifier_insert(
            start,
            HPAGE_PMD_SIZE,
            Arc::new(BlockOps {
                dev: Arc::clone(&self.dev),
                changed: Arc::clone(&changed),
            }),
        )?;
        let block = Arc::new(VaBlock { notifier, changed });
        let raced = {
            let mut map = self.blocks_map();
            match map.get(&start) {
                Some(b) => Some(Arc::clone(b)),
                None => {
                    map.insert(start, Arc::clone(&block));
                    None
                }
            }
        };
        match raced {
            Some(existing) => {
                let _ = block.notifier.remove();
                Ok(existing)
            }
            None => Ok(block),
        }
    }

    fn blocks_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<VaBlock>>> {
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A device atomic add on the `u64` at `addr`: on the device if it maps the page
    /// atomically, else after an atomic fault over the region around it, then replayed
    /// once. Returns the old value.
    pub fn atomic_fetch_add(&self, task: &Task, addr: u64, delta: u64) -> Result<u64, UvmError> {
        for replay in 0..2 {
            match self.dev.fetch_add_u64(addr, delta) {
                Ok(old) => {
                    self.stats.atomics.fetch_add(1, Ordering::Relaxed);
                    return Ok(old);
                }
                Err(DeviceFault::BadAccess) => return Err(UvmError::Errno(Errno::EINVAL)),
                Err(_) if replay == 1 => break,
                Err(_) => {
                    let span = self.batch * PAGE_SIZE;
                    let start = addr & !(span - 1);
                    self.atomic_fault(task, start, self.batch)?;
                }
            }
        }
        Err(UvmError::Livelock)
    }

    /// Services an atomic fault on `npages` pages from `start` (one va_block): makes
    /// them device-exclusive through the shim and maps them atomically.
    ///
    /// UVM: `hmm_block_atomic_fault_locked()` under `UVM_VA_BLOCK_RETRY_LOCKED()`.
    pub fn atomic_fault(&self, task: &Task, start: u64, npages: u64) -> Result<(), UvmError> {
        self.stats.faults.fetch_add(1, Ordering::Relaxed);
        let start = start & !(PAGE_SIZE - 1);
        let end = npages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| start.checked_add(len));
        // A region is inside one va_block.
        let inside =
            end.is_some_and(|e| npages > 0 && (e - 1) / HPAGE_PMD_SIZE == start / HPAGE_PMD_SIZE);
        if !inside {
            return Err(UvmError::Errno(Errno::EINVAL));
        }
        let block = self.va_block(start).map_err(UvmError::Errno)?;
        for _ in 0..self.max_passes {
            self.stats.passes.fetch_add(1, Ordering::Relaxed);
            // UVM: hmm_range_fault_begin() under the va_block lock.
            let snapshot = {
                let _table = self.dev.lock();
                block.changed.0.load(Ordering::Relaxed)
            };
            let pages = {
                let Some(user) = self.mm.mmget_not_zero() else {
                    return Err(UvmError::Errno(Errno::EINVAL));
                };
                self.make_device_exclusive_shim(&user, task, start, npages)
            };
            let pages = match pages {
                Err(UvmError::Errno(Errno::EBUSY)) => continue,
                Err(e) => return Err(e),
                Ok(p) => p,
            };
            let mut table = self.dev.lock();
            // UVM: hmm_range_fault_retry(), then a NULL page "isn't exclusive":
            // release everything, more processing required.
            if block.changed.0.load(Ordering::Relaxed) != snapshot
                || pages.iter().any(Option::is_none)
            {
                drop(table);
                drop(pages);
                self.released(task);
                continue;
            }
            for (i, excl) in pages.iter().flatten().enumerate() {
                table.set(
                    start + i as u64 * PAGE_SIZE,
                    DevPte {
                        pfn: excl.page(),
                        rights: DevRights::READ | DevRights::WRITE | DevRights::ATOMIC,
                    },
                );
            }
            drop(table);
            // UVM: hmm_release_atomic_pages().
            drop(pages);
            self.released(task);
            return Ok(());
        }
        Err(UvmError::Livelock)
    }

    /// UVM's multi-page shim over whichever API the kernel has: each returned page
    /// is locked and referenced until the guard is dropped; `None` is a page the
    /// range API did not convert.
    ///
    /// UVM: `hmm_make_device_exclusive_range()`.
    fn make_device_exclusive_shim(
        &self,
        user: &MmUser,
        task: &Task,
        start: u64,
        npages: u64,
    ) -> Result<Vec<Option<ExclusiveFolio>>, UvmError> {
        let owner = Some(self.dev.owner());
        let mut g = user.mmap_read_lock();
        if user.profile().has_range_api {
            let end = start + npages * PAGE_SIZE;
            let mut pages = user
                .make_device_exclusive_range(&mut g, start, end, owner, task)
                .map_err(UvmError::Errno)?;
            // UVM pads a short count with NULL pages.
            pages.resize_with(npages as usize, || None);
            for (i, p) in pages.iter().enumerate() {
                if let Some(excl) = p {
                    self.note_held(task, start + i as u64 * PAGE_SIZE, excl);
                }
            }
            return Ok(pages);
        }
        let mut pages = Vec::with_capacity(npages as usize);
        for i in 0..npages {
            let addr = start + i * PAGE_SIZE;
            self.converting_list().push((task.name().to_string(), addr));
            let r = user.make_device_exclusive(&mut g, addr, owner, task);
            self.converting_list()
                .retain(|(t, a)| (t.as_str(), *a) != (task.name(), addr));
            match r {
                Ok(excl) => {
                    self.note_held(task, addr, &excl);
                    pages.push(Some(excl));
                }
                Err(e) if pages.is_empty() => return Err(UvmError::Errno(e)),
                Err(_) => {
                    // The pages are released (unlock + put, the guards' drop), and
                    // the error is lost with the overwritten pointer.
                    drop(pages);
                    self.released(task);
                    return Err(UvmError::BadStatus);
                }
            }
        }
        Ok(pages)
    }

    /// Closes the driver: the device table is cleared and the va_block notifiers
    /// removed. Dropping it does the same.
    ///
    /// UVM: `uvm_hmm_va_space_destroy()`.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for Uvm {
    fn drop(&mut self) {
        let blocks: Vec<Arc<VaBlock>> = std::mem::take(&mut *self.blocks_map())
            .into_values()
            .collect();
        for b in blocks {
            let _ = b.notifier.remove();
        }
        self.dev.lock().clear();
    }
}

impl fmt::Debug for Uvm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Uvm")
            .field("dev", &self.dev)
            .field("batch", &self.batch)
            .field("max_passes", &self.max_passes)
            .finish_non_exhaustive()
    }
}
