//! `dmirror`: Linux's test device for HMM (Linux: `lib/test_hmm.c`, spec 6.1), the
//! driver the hmm selftests exercise.
//!
//! It mirrors the whole address space of the process that opened it into its device
//! table: READ and WRITE copy between a caller's buffer and the pages the table maps,
//! faulting missing (or, for WRITE, non-writable) entries in with `hmm_range_fault`;
//! EXCLUSIVE makes pages device-exclusive and maps them with atomic rights;
//! CHECK_EXCLUSIVE reports whether atomic entries remain.
//!
//! Its invalidate callback ignores only `Migrate` events carrying its own device owner
//! and erases every other invalidated range from its table (under its lock, with
//! `set_seq`). It has **no `Exclusive` filter**: it passes no owner to
//! `make_device_exclusive`, and its EXCLUSIVE path does **not** run inside a
//! `read_begin`/`read_retry` section, so its own conversion simply erases the old
//! entry before the atomic one is stored. That also leaves a window (spec 9.1): a
//! zap between `make_device_exclusive` and the atomic map (whose invalidation found
//! nothing to erase yet) leaves an atomic entry for a page the CPU no longer maps as
//! device-exclusive. Alistair Popple (2025) called this "probably wrong"; the
//! `dmirror_window` test shows the explorer finding it. A driver like nouveau's, which
//! maps under its lock only after `read_retry`, does not have it.
//!
//! At the process's exit its interval notifier, over the whole address space, gets
//! `Release` (from `mmu_notifier_release()`) and then exit's `Unmap`; both erase the
//! range, so the table is empty once the mm is gone and nothing of dmirror outlives
//! it (the checker's device audit finds nothing to flag). Commands after the exit fail
//! with `EINVAL` (`mmget_not_zero()` fails).
//!
//! Commands and counters follow `struct hmm_dmirror_cmd` (`addr`, `npages`, `cpages`,
//! `faults`; the buffer is passed separately), validated as test_hmm's ioctl
//! dispatcher does, and copied back only on success.

use std::fmt;

use super::{DevPte, DevRights, Device};
use crate::error::Errno;
use crate::mm::mmu_notifier::{
    MmuIntervalNotifier, MmuIntervalNotifierOps, MmuNotifierEvent, MmuNotifierRange, Owner,
};
use crate::mm::{DeviceAccessKind, HmmPfn, HmmRange, Mm, MmUser};
use crate::sync::Arc;
use crate::task::Task;
use crate::types::{PAGE_SHIFT, PAGE_SIZE};

/// Pages per `hmm_range_fault` call (Linux: `ARRAY_SIZE(pfns)` in `dmirror_fault()`).
const FAULT_CHUNK: u64 = 64;

/// The command block of every dmirror ioctl (Linux: `struct hmm_dmirror_cmd`; `ptr` is
/// the buffer argument of [`Dmirror::ioctl`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HmmDmirrorCmd {
    /// First address (page-aligned).
    pub addr: u64,
    /// Pages to act on.
    pub npages: u64,
    /// Out: pages copied.
    pub cpages: u64,
    /// Out: faults taken.
    pub faults: u64,
}

/// The dmirror ioctls modelled (Linux: `HMM_DMIRROR_*`; numbers per era in spec 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DmirrorIoctl {
    /// `HMM_DMIRROR_READ`: device reads into the buffer.
    Read,
    /// `HMM_DMIRROR_WRITE`: device writes from the buffer.
    Write,
    /// `HMM_DMIRROR_EXCLUSIVE`: make pages device-exclusive and read them back.
    Exclusive,
    /// `HMM_DMIRROR_CHECK_EXCLUSIVE`: `EPERM` while any atomic entry remains.
    CheckExclusive,
}

/// The interval-notifier callback (Linux: `dmirror_interval_invalidate()`).
struct DmirrorNotifier {
    dev: Arc<Device>,
    mdevice: Owner,
}

impl MmuIntervalNotifierOps for DmirrorNotifier {
    fn invalidate(
        &self,
        sub: &MmuIntervalNotifier,
        range: &MmuNotifierRange<'_>,
        cur_seq: u64,
    ) -> bool {
        // Ignore invalidations this device's own migration caused.
        if range.event == MmuNotifierEvent::Migrate && range.owner == Some(self.mdevice) {
            return true;
        }
        let lock = if range.blockable {
            Some(self.dev.lock())
        } else {
            self.dev.try_lock()
        };
        let Some(mut table) = lock else {
            return false;
        };
        sub.set_seq(cur_seq);
        // Linux: dmirror_do_update() erases with xa_for_each_range(start >> PAGE_SHIFT,
        // end >> PAGE_SHIFT), whose last index is inclusive, so the page at `end` goes
        // too (so since 2020; the goldens of oracle/corpus/munmap-exclusive.toml show
        // it on 6.12.117 and 6.1.192, docs/FINDINGS.md 3).
        table.erase_range(range.start, range.end.saturating_add(PAGE_SIZE));
        true
    }

    fn trace_name(&self) -> Option<String> {
        Some(self.dev.name().to_string())
    }
}

/// One open dmirror device (Linux: `struct dmirror`, one per open file).
pub struct Dmirror {
    dev: Arc<Device>,
    mm: Arc<Mm>,
    notifier: Arc<MmuIntervalNotifier>,
    /// Passes of the fault retry loop before giving up with `EBUSY` (Linux: the 1 s
    /// `HMM_RANGE_DEFAULT_TIMEOUT`).
    fault_passes: usize,
}

impl Dmirror {
    /// Opens the device for the calling process: a device table and an interval
    /// notifier over the whole address space (`[0, ULONG_MAX & PAGE_MASK)`).
    ///
    /// Linux: `dmirror_fops_open()`.
    pub fn open(mm: &MmUser) -> Result<Dmirror, Errno> {
        let dev = Device::new(mm.mm(), "dmirror");
        let ops = Arc::new(DmirrorNotifier {
            dev: Arc::clone(&dev),
            mdevice: Owner::new(),
        });
        // Linux: length `ULONG_MAX & PAGE_MASK`.
        let notifier = mm
            .mm()
            .mmu_interval_notifier_insert(0, !(PAGE_SIZE - 1), ops)?;
        Ok(Dmirror {
            dev,
            mm: Arc::clone(mm.mm()),
            notifier,
            fault_passes: 1000,
        })
    }

    /// The device (its table and owner).
    pub fn device(&self) -> &Arc<Device> {
        &self.dev
    }

    /// The interval notifier (for tests that watch its sequence).
    pub fn notifier(&self) -> &Arc<MmuIntervalNotifier> {
        &self.notifier
    }

    /// Sets the bound of the fault retry loop.
    pub fn set_fault_passes(&mut self, passes: usize) {
        self.fault_passes = passes.max(1);
    }

    /// Runs one command. `buf` is the user buffer (`cmd.ptr`): READ and EXCLUSIVE fill
    /// it, WRITE reads it; it must hold `npages` pages (`EFAULT` otherwise, as
    /// `copy_to/from_user` fails). `EINVAL` for an unaligned `addr`, a zero or
    /// overflowing range, or a process without users. `cmd` is updated only on
    /// success, as the ioctl copies it back only then; `task` is the caller (whose
    /// kill ends a killable wait).
    ///
    /// Linux: `dmirror_fops_unlocked_ioctl()`.
    pub fn ioctl(
        &self,
        task: &Task,
        req: DmirrorIoctl,
        cmd: &mut HmmDmirrorCmd,
        buf: &mut [u8],
    ) -> Result<(), Errno> {
        let mut c = *cmd;
        if c.addr & (PAGE_SIZE - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let size = c
            .npages
            .checked_mul(PAGE_SIZE)
            .filter(|s| c.addr.checked_add(*s).is_some_and(|e| e > c.addr))
            .ok_or(Errno::EINVAL)?;
        c.cpages = 0;
        c.faults = 0;
        let end = c.addr + size;
        let bytes = usize::try_from(size).map_err(|_| Errno::EINVAL)?;
        if req != DmirrorIoctl::CheckExclusive && buf.len() < bytes {
            return Err(Errno::EFAULT);
        }
        match req {
            DmirrorIoctl::Read => self.read(&mut c, end, &mut buf[..bytes])?,
            DmirrorIoctl::Write => self.write(&mut c, end, &buf[..bytes])?,
            DmirrorIoctl::Exclusive => self.exclusive(task, &mut c, end, &mut buf[..bytes])?,
            DmirrorIoctl::CheckExclusive => self.check_atomic(c.addr, end)?,
        }
        *cmd = c;
        Ok(())
    }

    /// Copies what the table maps (any rights) into `bounce` until a page is missing.
    ///
    /// Linux: `dmirror_do_read()`.
    fn do_read(
        &self,
        start: u64,
        end: u64,
        bounce: &mut [u8],
        cpages: &mut u64,
    ) -> Result<(), Errno> {
        let table = self.dev.lock();
        let mut addr = start + (*cpages << PAGE_SHIFT);
        while addr < end {
            let Some(pte) = table.get(addr) else {
                return Err(Errno::ENOENT);
            };
            let off = ((addr - start) >> PAGE_SHIFT) as usize * PAGE_SIZE as usize;
            let stale = self.dev.audit_access(addr, pte.pfn, DeviceAccessKind::Read);
            self.mm
                .mem()
                .read_bytes(pte.pfn, 0, &mut bounce[off..off + PAGE_SIZE as usize])?;
            if !stale {
                self.dev.audit_access(addr, pte.pfn, DeviceAccessKind::Read);
            }
            *cpages += 1;
            addr += PAGE_SIZE;
        }
        Ok(())
    }

    /// Linux: `dmirror_read()`.
    fn read(&self, c: &mut HmmDmirrorCmd, end: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let _user = self.mm.mmget_not_zero().ok_or(Errno::EINVAL)?;
        loop {
            match self.do_read(c.addr, end, buf, &mut c.cpages) {
                Err(Errno::ENOENT) => {}
                other => return other,
            }
            let start = c.addr + (c.cpages << PAGE_SHIFT);
            self.fault(start, end, false)?;
            c.faults += 1;
        }
    }

    /// Copies `bounce` into the pages the table maps writable until one is missing or
    /// not writable (an atomic entry counts as missing).
    ///
    /// Linux: `dmirror_do_write()`.
    fn do_write(&self, start: u64, end: u64, bounce: &[u8], cpages: &mut u64) -> Result<(), Errno> {
        let table = self.dev.lock();
        let mut addr = start + (*cpages << PAGE_SHIFT);
        while addr < end {
            match table.get(addr) {
                Some(pte) if pte.rights.contains(DevRights::WRITE) => {
                    let off = ((addr - start) >> PAGE_SHIFT) as usize * PAGE_SIZE as usize;
                    let stale = self
                        .dev
                        .audit_access(addr, pte.pfn, DeviceAccessKind::Write);
                    self.mm.mem().write_bytes(
                        pte.pfn,
                        0,
                        &bounce[off..off + PAGE_SIZE as usize],
                    )?;
                    if !stale {
                        self.dev
                            .audit_access(addr, pte.pfn, DeviceAccessKind::Write);
                    }
                }
                _ => return Err(Errno::ENOENT),
            }
            *cpages += 1;
            addr += PAGE_SIZE;
        }
        Ok(())
    }

    /// Linux: `dmirror_write()`.
    fn write(&self, c: &mut HmmDmirrorCmd, end: u64, buf: &[u8]) -> Result<(), Errno> {
        let _user = self.mm.mmget_not_zero().ok_or(Errno::EINVAL)?;
        loop {
            match self.do_write(c.addr, end, buf, &mut c.cpages) {
                Err(Errno::ENOENT) => {}
                other => return other,
            }
            let start = c.addr + (c.cpages << PAGE_SHIFT);
            self.fault(start, end, true)?;
            c.faults += 1;
        }
    }

    /// Mirrors `[start, end)` with `hmm_range_fault` in chunks, faulting pages in
    /// (writable for `write`).
    ///
    /// Linux: `dmirror_fault()`.
    fn fault(&self, start: u64, end: u64, write: bool) -> Result<(), Errno> {
        let mut addr = start;
        while addr < end {
            let next = (addr + (FAULT_CHUNK << PAGE_SHIFT)).min(end);
            let mut range = HmmRange::new(&self.notifier, addr, next, HmmPfn::request(true, write));
            self.range_fault(&mut range)?;
            addr = next;
        }
        Ok(())
    }

    /// The collision-retry loop around `hmm_range_fault`, then the device table update
    /// under the driver lock.
    ///
    /// Linux: `dmirror_range_fault()` + `dmirror_do_fault()`.
    fn range_fault(&self, range: &mut HmmRange<'_>) -> Result<(), Errno> {
        for _ in 0..self.fault_passes {
            range.notifier_seq = self.notifier.read_begin();
            let r = {
                let mut g = self.mm.mmap_read_lock();
                self.mm.hmm_range_fault(&mut g, range)
            };
            match r {
                Err(Errno::EBUSY) => continue,
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            let mut table = self.dev.lock();
            if self.notifier.read_retry(range.notifier_seq) {
                continue;
            }
            let mut addr = range.start;
            for p in &range.hmm_pfns {
                if let Some(pfn) = p.pfn() {
                    let rights = if p.is_write() {
                        DevRights::READ | DevRights::WRITE
                    } else if range.default_flags.is_write() {
                        // Linux WARNs: a write was requested and not granted.
                        return Err(Errno::EFAULT);
                    } else {
                        DevRights::READ
                    };
                    table.set(addr, DevPte { pfn, rights });
                }
                addr += PAGE_SIZE;
            }
            return Ok(());
        }
        Err(Errno::EBUSY)
    }

    /// Makes each page device-exclusive and maps it atomically, then reads the range
    /// back into `buf` (6.15 form: page by page, the first error returned as is).
    ///
    /// Linux: `dmirror_exclusive()` + `dmirror_atomic_map()`.
    fn exclusive(
        &self,
        task: &Task,
        c: &mut HmmDmirrorCmd,
        end: u64,
        buf: &mut [u8],
    ) -> Result<(), Errno> {
        let user = self.mm.mmget_not_zero().ok_or(Errno::EINVAL)?;
        if user.profile().has_range_api {
            self.exclusive_chunks(task, &user, c.addr, end)?;
            drop(user);
            return self.do_read(c.addr, end, buf, &mut c.cpages);
        }
        {
            let mut g = user.mmap_read_lock();
            let mut addr = c.addr;
            while addr < end {
                let excl = user.make_device_exclusive(&mut g, addr, None, task)?;
                // No read_retry here (spec 9.1): the entry is stored whatever happened
                // since make_device_exclusive returned.
                crate::sync::yield_now();
                self.dev.lock().set(
                    addr,
                    DevPte {
                        pfn: excl.page(),
                        rights: DevRights::READ | DevRights::ATOMIC,
                    },
                );
                drop(excl);
                addr += PAGE_SIZE;
            }
        }
        drop(user);
        self.do_read(c.addr, end, buf, &mut c.cpages)
    }

    /// The 5.14 form of EXCLUSIVE: chunks of 64 pages through the range API; the chunk
    /// is mapped atomically (each page that became exclusive) only if the range API
    /// returned the whole chunk (since 2022; before, unconditionally), and any page
    /// short gives `EBUSY` (pages already mapped stay mapped).
    ///
    /// Linux 5.14: `dmirror_exclusive()` + `dmirror_atomic_map()`.
    fn exclusive_chunks(
        &self,
        task: &Task,
        user: &MmUser,
        start: u64,
        end: u64,
    ) -> Result<(), Errno> {
        let mut g = user.mmap_read_lock();
        let mut addr = start;
        while addr < end {
            let next = (addr + (FAULT_CHUNK << PAGE_SHIFT)).min(end);
            let n = (next - addr) >> PAGE_SHIFT;
            let pages = user
                .make_device_exclusive_range(&mut g, addr, next, None, task)
                .unwrap_or_default();
            let mut mapped = 0;
            if !user.profile().dmirror_map_only_full_chunks || pages.len() as u64 == n {
                crate::sync::yield_now();
                let mut table = self.dev.lock();
                for (i, p) in pages.iter().enumerate() {
                    if let Some(p) = p {
                        table.set(
                            addr + i as u64 * PAGE_SIZE,
                            DevPte {
                                pfn: p.page(),
                                rights: DevRights::READ | DevRights::ATOMIC,
                            },
                        );
                        mapped += 1;
                    }
                }
            }
            drop(pages);
            if mapped < n {
                return Err(Errno::EBUSY);
            }
            addr = next;
        }
        Ok(())
    }

    /// `EPERM` if any page of `[start, end)` is mapped atomically.
    ///
    /// Linux: `dmirror_check_atomic()`.
    fn check_atomic(&self, start: u64, end: u64) -> Result<(), Errno> {
        let table = self.dev.lock();
        if table
            .range(start, end)
            .iter()
            .any(|(_, p)| p.rights.contains(DevRights::ATOMIC))
        {
            return Err(Errno::EPERM);
        }
        Ok(())
    }
}

impl Drop for Dmirror {
    /// Closing the device file: the notifier goes, then the device table.
    ///
    /// Linux: `dmirror_fops_release()` (`mmu_interval_notifier_remove()`, then
    /// `xa_destroy()` of the table).
    fn drop(&mut self) {
        let _ = self.notifier.remove();
        self.dev.lock().clear();
    }
}

impl fmt::Debug for Dmirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dmirror")
            .field("dev", &self.dev)
            .field("mm", &self.mm.id())
            .finish_non_exhaustive()
    }
}
