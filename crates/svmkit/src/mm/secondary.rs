//! Secondary MMUs as the model audits them: devices that mirror a process's page
//! table (a GPU, Linux's test device) register with the physical memory they map, so
//! that the invariant checker can compare what they map with what the CPU maps, and
//! so that a device access through a stale translation is recorded instead of
//! corrupting memory silently.
//!
//! There is no Linux counterpart: Linux trusts its drivers to drop their
//! translations when their notifiers say so, and a device table holds no page
//! references (dmirror's xarray, nouveau's GPU page table). The model keeps that
//! (nothing here takes a reference or a lock of the mm) and adds two audits.
//!
//! # What a valid translation is
//! A device translation `addr → pfn` is *valid* while the mm it mirrors maps `pfn` at
//! `addr`: by a present PTE, a huge PMD covering `addr`, or a device-exclusive entry
//! ([`Mm::cpu_mapping_lockless`]). It is *stale* otherwise:
//! * the mm's struct is gone ([`Staleness::MmGone`]);
//! * the mm has exited: its last user is gone, so exit has unmapped everything
//!   ([`Staleness::MmExited`]); an exited mm mirrors nothing, so at a quiescent point
//!   every translation still pointing into it is stale;
//! * the CPU maps another frame there, or nothing ([`Staleness::Mismatch`]).
//!
//! # The two audits
//! * [`System::check`](crate::System::check) flags every stale translation of every
//!   registered device, and an atomic translation whose CPU entry is not
//!   device-exclusive (DESIGN.md: a valid atomic device entry implies the CPU entry is
//!   device-exclusive for the same pfn).
//! * A device access (read, write, atomic) audits its translation before and after it
//!   touches the frame. A stale one is **still performed**, as the hardware would
//!   (the device writes whatever frame its table names), and recorded as a
//!   [`StaleDeviceAccess`] in [`PhysMem::stale_device_accesses`], which the checker
//!   reports until a test takes the reports
//!   ([`PhysMem::take_stale_device_accesses`]). Auditing on both sides catches an
//!   unmap that races the access. It cannot tell apart a frame that was freed and
//!   mapped again at the same address of the same mm during one access (derived: it
//!   needs a refault of that very pfn inside one device operation).
//!
//! The audits read page tables without locks (they must not take the mmap lock or a
//! PTL under a driver lock, DESIGN.md lock order) and without trusting them: every
//! table frame is checked to be an allocated page table before it is read, so a walk
//! racing a teardown gives a stale answer, never a panic.

use std::fmt;
use std::sync::{Mutex as StdMutex, MutexGuard as StdMutexGuard, Weak};

use super::mm_types::Mm;
use super::page_alloc::PhysMem;
use crate::sync::Arc;
use crate::types::{Pfn, VirtAddr};

/// What the CPU page table maps at an address, as far as a mirror cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuMapping {
    /// A present PTE or a huge PMD maps this frame.
    Present(Pfn),
    /// A device-exclusive entry names this frame.
    DeviceExclusive(Pfn),
}

impl CpuMapping {
    /// The frame.
    pub fn pfn(self) -> Pfn {
        match self {
            CpuMapping::Present(p) | CpuMapping::DeviceExclusive(p) => p,
        }
    }

    /// Whether it is a device-exclusive entry.
    pub fn is_device_exclusive(self) -> bool {
        matches!(self, CpuMapping::DeviceExclusive(_))
    }
}

/// Why a device translation is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Staleness {
    /// The mirrored mm's struct no longer exists.
    MmGone,
    /// The mirrored mm has exited (no users; exit unmapped everything); what the CPU
    /// side still showed at the audit.
    MmExited {
        /// The CPU mapping at the address (none once exit has unmapped it).
        cpu: Option<CpuMapping>,
    },
    /// The mm is live but maps another frame, or nothing, at the address.
    Mismatch {
        /// The CPU mapping at the address.
        cpu: Option<CpuMapping>,
    },
}

impl fmt::Display for Staleness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Staleness::MmGone => f.write_str("the mirrored mm is gone"),
            Staleness::MmExited { cpu } => {
                write!(f, "the mirrored mm has exited (CPU side: {cpu:?})")
            }
            Staleness::Mismatch { cpu } => write!(f, "the CPU maps {cpu:?} there"),
        }
    }
}

/// One translation of a device table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecondaryPte {
    /// The (page-aligned) virtual address.
    pub addr: VirtAddr,
    /// The frame the device uses for it.
    pub pfn: Pfn,
    /// Whether the device may run atomics on it (it holds the page exclusively).
    pub atomic: bool,
}

/// What a device access did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceAccessKind {
    /// A load.
    Read,
    /// A store.
    Write,
    /// A read-modify-write.
    Atomic,
}

/// A device access through a translation that was stale when it ran: it was
/// performed on `pfn` anyway (as the hardware would) and recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleDeviceAccess {
    /// The device's name.
    pub device: String,
    /// The id of the mm the device mirrors.
    pub mm: u64,
    /// The address accessed.
    pub addr: VirtAddr,
    /// The frame the device table named (and the access touched).
    pub pfn: Pfn,
    /// What the access did.
    pub kind: DeviceAccessKind,
    /// Why the translation was stale.
    pub why: Staleness,
}

impl fmt::Display for StaleDeviceAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "device {} ({:?}) of mm {} at {} touched {} through a stale translation: {}",
            self.device, self.kind, self.mm, self.addr, self.pfn, self.why
        )
    }
}

/// A device that mirrors one mm's page table: what the checker needs to see of it.
pub trait SecondaryMmu: Send + Sync {
    /// A name for reports.
    fn name(&self) -> &str;
    /// The id of the mm it mirrors.
    fn mirrored_mm_id(&self) -> u64;
    /// The mm it mirrors, while that mm's struct exists.
    fn mirrored_mm(&self) -> Option<Arc<Mm>>;
    /// Its translations now, by address (takes the driver lock).
    fn translations(&self) -> Vec<SecondaryPte>;
    /// Its translations if the driver lock is free at this moment, read without
    /// taking it (no scheduling point: the explorer calls this at every one); `None`
    /// while the lock is held, that is while the table is being changed.
    fn translations_now(&self) -> Option<Vec<SecondaryPte>> {
        Some(self.translations())
    }
}

/// The devices registered on one physical memory, and the stale accesses they made.
#[derive(Default)]
pub(crate) struct SecondaryMmuRegistry {
    mmus: StdMutex<Vec<Weak<dyn SecondaryMmu>>>,
    stale: StdMutex<Vec<StaleDeviceAccess>>,
}

/// Checker bookkeeping uses std locks, not the facade's: it must add no scheduling
/// point to what it audits. A poisoned lock (a panicking test) still holds good data.
fn std_lock<T>(m: &StdMutex<T>) -> StdMutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PhysMem {
    /// Registers a device so that the checker audits its translations; it stays
    /// registered while it exists.
    pub fn register_secondary_mmu(&self, mmu: Weak<dyn SecondaryMmu>) {
        let mut mmus = std_lock(&self.secondary.mmus);
        mmus.retain(|w| w.strong_count() > 0);
        mmus.push(mmu);
        crate::sync::mode::model_changed();
    }

    /// Every registered device that still exists, in registration order.
    pub fn secondary_mmus(&self) -> Vec<Arc<dyn SecondaryMmu>> {
        std_lock(&self.secondary.mmus)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Records a device access through a stale translation.
    pub fn report_stale_device_access(&self, access: StaleDeviceAccess) {
        std_lock(&self.secondary.stale).push(access);
        crate::sync::mode::model_changed();
    }

    /// Whether a stale device access has been recorded (and not taken).
    pub fn has_stale_device_accesses(&self) -> bool {
        !std_lock(&self.secondary.stale).is_empty()
    }

    /// The stale device accesses recorded so far (the checker reports each).
    pub fn stale_device_accesses(&self) -> Vec<StaleDeviceAccess> {
        std_lock(&self.secondary.stale).clone()
    }

    /// Takes (and clears) the stale device accesses recorded so far, so that later
    /// checks judge only what happens next.
    pub fn take_stale_device_accesses(&self) -> Vec<StaleDeviceAccess> {
        crate::sync::mode::model_changed();
        std::mem::take(&mut *std_lock(&self.secondary.stale))
    }
}

/// Whether the translation `addr → pfn` of a device mirroring `mm` (none: its struct
/// is gone) is valid now, per the module docs: `Ok` with the CPU mapping if the CPU
/// maps `pfn` at `addr`, else why it is stale. Lockless; an mm in the middle of its
/// exit still counts as mapping what its page tables still map.
pub fn audit_translation(
    mm: Option<&Mm>,
    addr: VirtAddr,
    pfn: Pfn,
) -> Result<CpuMapping, Staleness> {
    let Some(mm) = mm else {
        return Err(Staleness::MmGone);
    };
    match mm.cpu_mapping_lockless(addr) {
        Some(cpu) if cpu.pfn() == pfn => Ok(cpu),
        cpu if mm.mm_users() == 0 => Err(Staleness::MmExited { cpu }),
        cpu => Err(Staleness::Mismatch { cpu }),
    }
}
