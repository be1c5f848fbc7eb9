//! Devices that mirror a process's memory: a GPU or Linux's test device, reduced to
//! what the protocol needs.
//!
//! A [`Device`] has an owner token (what it passes as `owner` to
//! `make_device_exclusive` and filters in its notifiers), its own page table (virtual
//! page → frame, with read / write / atomic rights) and a driver lock protecting that
//! table. Device memory operations go through the table and hold the driver lock
//! across read, yield, write (DESIGN.md: this stands for the device's TLB), and every
//! invalidate callback takes the same lock, so a revocation waits for operations in
//! flight. A device operation on a page it does not map with the needed rights
//! returns a [`DeviceFault`] for its driver to handle.
//!
//! The device table holds no page references (like dmirror's xarray): drivers rely
//! on their notifiers to drop entries before the CPU side frees or changes a page.
//!
//! Each device mirrors one mm and registers with the physical memory as a
//! [`SecondaryMmu`], so the invariant checker compares its table with that mm's page
//! tables, and every device access audits the translation it uses
//! (`mm/secondary.rs`): an access through a stale entry (the mm exited, or the CPU no
//! longer maps that frame there) is performed, as the hardware would, and recorded as
//! a [`StaleDeviceAccess`] that the checker reports. Nothing of this has a Linux
//! counterpart; it makes a driver's stale entry visible instead of a silent corruption
//! of whatever the frame became.
//!
//! Drivers: [`dmirror`] (Linux's `lib/test_hmm.c`), with runnable ports of the hmm
//! selftests over it in [`hmm_tests`], [`svm_atomic`] (nouveau's atomic fault
//! path) and [`uvm`] (NVIDIA UVM's multi-page atomic path).

pub mod dmirror;
pub mod hmm_tests;
pub mod svm_atomic;
pub mod uvm;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Weak;

use bitflags::bitflags;

use crate::mm::mmu_notifier::Owner;
use crate::mm::{
    DeviceAccessKind, Mm, PhysMem, SecondaryMmu, SecondaryPte, StaleDeviceAccess, audit_translation,
};
use crate::sync::{Arc, Mutex, MutexGuard, yield_now};
use crate::types::{PAGE_SHIFT, PAGE_SIZE, Pfn, VirtAddr};

bitflags! {
    /// What a device entry allows.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct DevRights: u8 {
        /// Reads.
        const READ = 1 << 0;
        /// Writes.
        const WRITE = 1 << 1;
        /// Atomics (the page is device-exclusive to this device).
        const ATOMIC = 1 << 2;
    }
}

/// One device page-table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DevPte {
    /// The frame.
    pub pfn: Pfn,
    /// What the device may do with it.
    pub rights: DevRights,
}

/// Why a device operation could not complete: the driver's fault handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceFault {
    /// The page is not mapped in the device table.
    NotMapped,
    /// Mapped, but not with the rights the operation needs.
    Rights {
        /// What the entry allows.
        have: DevRights,
        /// What the operation needs.
        need: DevRights,
    },
    /// A misaligned or out-of-range access (never handled by faulting).
    BadAccess,
}

impl fmt::Display for DeviceFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceFault::NotMapped => f.write_str("device fault: page not mapped"),
            DeviceFault::Rights { have, need } => {
                write!(f, "device fault: have {have:?}, need {need:?}")
            }
            DeviceFault::BadAccess => f.write_str("device fault: bad access"),
        }
    }
}

impl std::error::Error for DeviceFault {}

/// The device page table, keyed by virtual page number.
#[derive(Debug, Default)]
pub struct DevTable {
    entries: BTreeMap<u64, DevPte>,
    /// Where its changes are traced: the system's memory and the device's name.
    trace: Option<TableTrace>,
}

struct TableTrace {
    mem: Arc<PhysMem>,
    device: String,
}

impl fmt::Debug for TableTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TableTrace").field(&self.device).finish()
    }
}

/// `rwa`-style rights, as traces show them.
fn rights_text(r: DevRights) -> String {
    [
        (DevRights::READ, 'r'),
        (DevRights::WRITE, 'w'),
        (DevRights::ATOMIC, 'a'),
    ]
    .iter()
    .filter(|(f, _)| r.contains(*f))
    .map(|(_, c)| *c)
    .collect()
}

impl DevTable {
    /// An empty table whose changes go to `mem`'s trace under `device`'s name.
    fn traced(mem: &Arc<PhysMem>, device: &str) -> DevTable {
        DevTable {
            entries: BTreeMap::new(),
            trace: Some(TableTrace {
                mem: Arc::clone(mem),
                device: device.to_string(),
            }),
        }
    }

    #[inline]
    fn trace(&self, addr: u64, change: &'static str, pte: DevPte) {
        if let Some(t) = &self.trace {
            t.mem.tracer().instant(|| crate::trace::Payload::DevEntry {
                device: t.device.clone().into(),
                addr: addr & !(PAGE_SIZE - 1),
                change: change.into(),
                pfn: pte.pfn.raw(),
                rights: if change == "unmap" {
                    String::new().into()
                } else {
                    rights_text(pte.rights).into()
                },
            });
        }
    }

    /// The entry for the page containing `addr`.
    pub fn get(&self, addr: u64) -> Option<DevPte> {
        self.entries.get(&(addr >> PAGE_SHIFT)).copied()
    }

    /// Installs (or replaces) the entry for the page containing `addr`.
    pub fn set(&mut self, addr: u64, pte: DevPte) {
        self.entries.insert(addr >> PAGE_SHIFT, pte);
        crate::sync::mode::model_changed();
        self.trace(addr, "map", pte);
    }

    /// Removes every entry in `[start, end)`; returns how many there were.
    pub fn erase_range(&mut self, start: u64, end: u64) -> usize {
        let (lo, hi) = (start >> PAGE_SHIFT, end.div_ceil(PAGE_SIZE));
        let keys: Vec<u64> = self.entries.range(lo..hi).map(|(k, _)| *k).collect();
        for k in &keys {
            if let Some(old) = self.entries.remove(k) {
                crate::sync::mode::model_changed();
                self.trace(k << PAGE_SHIFT, "unmap", old);
            }
        }
        keys.len()
    }

    /// The entries in `[start, end)`, by address.
    pub fn range(&self, start: u64, end: u64) -> Vec<(VirtAddr, DevPte)> {
        let (lo, hi) = (start >> PAGE_SHIFT, end.div_ceil(PAGE_SIZE));
        self.entries
            .range(lo..hi)
            .map(|(k, v)| (VirtAddr::new_truncate(k << PAGE_SHIFT), *v))
            .collect()
    }

    /// Removes every entry; returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.entries.len();
        crate::sync::mode::model_changed();
        for (k, old) in std::mem::take(&mut self.entries) {
            self.trace(k << PAGE_SHIFT, "unmap", old);
        }
        n
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A device mirroring one mm's memory through its own page table.
pub struct Device {
    name: String,
    owner: Owner,
    mem: Arc<PhysMem>,
    /// The mm it mirrors (weak: the mm's notifiers hold the device's callbacks, which
    /// hold the device) and that mm's id.
    mm: Weak<Mm>,
    mm_id: u64,
    /// The driver lock (Linux: `dmirror->mutex`, `svmm->mutex`) and the table it guards.
    table: Mutex<DevTable>,
}

/// The driver lock held: the device table, readable and writable.
pub struct DriverLock<'a>(MutexGuard<'a, DevTable>);

impl Deref for DriverLock<'_> {
    type Target = DevTable;
    fn deref(&self) -> &DevTable {
        &self.0
    }
}

impl DerefMut for DriverLock<'_> {
    fn deref_mut(&mut self) -> &mut DevTable {
        &mut self.0
    }
}

impl fmt::Debug for DriverLock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DriverLock").field(&self.0.len()).finish()
    }
}

impl Device {
    /// A new device mirroring `mm`, with a fresh owner token and an empty table,
    /// registered with `mm`'s physical memory for the checker's audit.
    pub fn new(mm: &Arc<Mm>, name: impl Into<String>) -> Arc<Device> {
        let name = name.into();
        let owner = Owner::new();
        mm.mem().tracer().name_owner(owner, &name);
        let dev = Arc::new(Device {
            table: Mutex::new(DevTable::traced(mm.mem(), &name)),
            name,
            owner,
            mem: Arc::clone(mm.mem()),
            mm: Arc::downgrade(mm),
            mm_id: mm.id(),
        });
        let weak: Weak<Device> = Arc::downgrade(&dev);
        dev.mem
            .register_secondary_mmu(weak as Weak<dyn SecondaryMmu>);
        dev
    }

    /// The id of the mm this device mirrors.
    pub fn mm_id(&self) -> u64 {
        self.mm_id
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The owner token it passes to `make_device_exclusive` and filters.
    pub fn owner(&self) -> Owner {
        self.owner
    }

    /// Takes the driver lock.
    pub fn lock(&self) -> DriverLock<'_> {
        DriverLock(self.table.lock())
    }

    /// The entry for the page containing `addr`, read without taking the driver lock
    /// (no scheduling point under exploration, so an account or a checker can look
    /// without changing the schedules it watches): `None` while the lock is held,
    /// `Some(None)` if there is no entry.
    pub fn peek_entry(&self, addr: u64) -> Option<Option<DevPte>> {
        self.table.peek(|t| t.get(addr))
    }

    /// Takes the driver lock if it is free (for non-blockable invalidations).
    pub fn try_lock(&self) -> Option<DriverLock<'_>> {
        self.table.try_lock().map(DriverLock)
    }

    fn entry_for(
        &self,
        table: &DevTable,
        addr: u64,
        need: DevRights,
    ) -> Result<(Pfn, u64), DeviceFault> {
        if !addr.is_multiple_of(8) {
            return Err(DeviceFault::BadAccess);
        }
        let pte = table.get(addr).ok_or(DeviceFault::NotMapped)?;
        if !pte.rights.contains(need) {
            return Err(DeviceFault::Rights {
                have: pte.rights,
                need,
            });
        }
        Ok((pte.pfn, addr % PAGE_SIZE))
    }

    /// Audits the translation `addr → pfn` this device is about to use, or has just
    /// used, and records a [`StaleDeviceAccess`] of `kind` if the translation is stale
    /// (`mm/secondary.rs`). Returns whether it was stale. Drivers that touch frames
    /// themselves (dmirror's copies) call it under the driver lock before and after the
    /// access; the access is performed either way.
    pub fn audit_access(&self, addr: u64, pfn: Pfn, kind: DeviceAccessKind) -> bool {
        let va = VirtAddr::new_truncate(addr & !(PAGE_SIZE - 1));
        let mm = self.mm.upgrade();
        let Err(why) = audit_translation(mm.as_deref(), va, pfn) else {
            return false;
        };
        self.mem.report_stale_device_access(StaleDeviceAccess {
            device: self.name.clone(),
            mm: self.mm_id,
            addr: va,
            pfn,
            kind,
            why,
        });
        true
    }

    /// Runs `access` on the frame of `addr`, audited before and after: one report at
    /// most per access.
    fn audited<T>(
        &self,
        addr: u64,
        pfn: Pfn,
        kind: DeviceAccessKind,
        access: impl FnOnce() -> T,
    ) -> T {
        let stale = self.audit_access(addr, pfn, kind);
        let r = access();
        if !stale {
            self.audit_access(addr, pfn, kind);
        }
        r
    }

    /// A device load of the `u64` at `addr` through the device table.
    pub fn read_u64(&self, addr: u64) -> Result<u64, DeviceFault> {
        let table = self.lock();
        let (pfn, off) = self.entry_for(&table, addr, DevRights::READ)?;
        self.audited(addr, pfn, DeviceAccessKind::Read, || {
            self.mem.read_u64(pfn, off)
        })
        .map_err(|_| DeviceFault::BadAccess)
    }

    /// A device store through the device table (needs write rights).
    pub fn write_u64(&self, addr: u64, value: u64) -> Result<(), DeviceFault> {
        let table = self.lock();
        let (pfn, off) = self.entry_for(&table, addr, DevRights::WRITE)?;
        self.audited(addr, pfn, DeviceAccessKind::Write, || {
            self.mem.write_u64(pfn, off, value)
        })
        .map_err(|_| DeviceFault::BadAccess)
    }

    /// A device atomic add (needs atomic rights): read, yield, write, all under the
    /// driver lock, so an invalidation cannot revoke the page half-way (and a CPU
    /// access cannot interleave: the CPU must first fault the page back, which revokes
    /// through the notifier, which takes this lock). Returns the old value.
    pub fn fetch_add_u64(&self, addr: u64, delta: u64) -> Result<u64, DeviceFault> {
        self.read_modify_write(addr, delta, DevRights::ATOMIC)
    }

    /// Read, yield, write of the `u64` at `addr` under the driver lock, through an
    /// entry with `need` rights. Returns the old value.
    pub(crate) fn read_modify_write(
        &self,
        addr: u64,
        delta: u64,
        need: DevRights,
    ) -> Result<u64, DeviceFault> {
        let table = self.lock();
        let (pfn, off) = self.entry_for(&table, addr, need)?;
        let old = self.audited(addr, pfn, DeviceAccessKind::Atomic, || {
            let old = self
                .mem
                .read_u64(pfn, off)
                .map_err(|_| DeviceFault::BadAccess)?;
            yield_now();
            self.mem
                .write_u64(pfn, off, old.wrapping_add(delta))
                .map_err(|_| DeviceFault::BadAccess)?;
            Ok(old)
        })?;
        drop(table);
        Ok(old)
    }
}

impl SecondaryMmu for Device {
    fn name(&self) -> &str {
        &self.name
    }

    fn mirrored_mm_id(&self) -> u64 {
        self.mm_id
    }

    fn mirrored_mm(&self) -> Option<Arc<Mm>> {
        self.mm.upgrade()
    }

    fn translations(&self) -> Vec<SecondaryPte> {
        secondary_ptes(&self.lock())
    }

    fn translations_now(&self) -> Option<Vec<SecondaryPte>> {
        self.table.peek(secondary_ptes)
    }
}

/// A device table's entries as the checker sees them.
fn secondary_ptes(table: &DevTable) -> Vec<SecondaryPte> {
    table
        .entries
        .iter()
        .map(|(&page, pte)| SecondaryPte {
            addr: VirtAddr::new_truncate(page << PAGE_SHIFT),
            pfn: pte.pfn,
            atomic: pte.rights.contains(DevRights::ATOMIC),
        })
        .collect()
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("mm", &self.mm_id)
            .finish_non_exhaustive()
    }
}
