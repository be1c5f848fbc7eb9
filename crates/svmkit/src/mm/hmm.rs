//! Heterogeneous memory management: mirroring a range of CPU page tables into a
//! device (Linux: `mm/hmm.c`, `hmm_range_fault()`).
//!
//! A driver fills an [`HmmRange`] with one request per page (fault it in? writable?),
//! and, inside an interval-notifier read section, calls [`Mm::hmm_range_fault`],
//! which reports for each page its frame and whether it is valid and writable,
//! faulting in what was requested. The result may be used only if
//! `read_retry(notifier_seq)` is false under the driver lock:
//!
//! ```text
//! loop {
//!     range.notifier_seq = sub.read_begin();
//!     mmap_read_lock; r = hmm_range_fault(range); mmap_read_unlock
//!     if r == EBUSY { continue }              an invalidation hit the range
//!     lock(driver); if sub.read_retry(seq) { unlock; continue }
//!     program the device from range.hmm_pfns; unlock(driver); break
//! }
//! ```
//!
//! Device-exclusive entries read as "not valid" in a snapshot and are restored
//! through the fault path (notifying their owner) when a fault is requested (spec
//! 4.16).

use std::fmt;

use super::mm_types::Mm;
use super::mmu_notifier::MmuIntervalNotifier;
use super::pgtable::{PMD_SIZE, Pmd, Pte};
use super::vma::{VmFlags, Vma, VmaTree};
use super::{FaultFlags, VmFaultError};
use crate::error::Errno;
use crate::sync::MmapReadGuard;
use crate::types::{PAGE_SHIFT, PAGE_SIZE, Pfn, VirtAddr};

/// One page's request or result (Linux: an `unsigned long` of `range->hmm_pfns`: the
/// pfn in the low bits and flags at the top).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HmmPfn(u64);

impl HmmPfn {
    /// Linux: `HMM_PFN_VALID` (as a request: `HMM_PFN_REQ_FAULT`).
    pub const VALID: u64 = 1 << 63;
    /// Linux: `HMM_PFN_WRITE` (as a request: `HMM_PFN_REQ_WRITE`).
    pub const WRITE: u64 = 1 << 62;
    /// Linux: `HMM_PFN_ERROR`.
    pub const ERROR: u64 = 1 << 61;
    const FLAGS: u64 = Self::VALID | Self::WRITE | Self::ERROR;

    /// A request: fault the page in (`fault`), writable (`write`, which implies fault).
    pub const fn request(fault: bool, write: bool) -> HmmPfn {
        let mut v = 0;
        if fault || write {
            v |= Self::VALID;
        }
        if write {
            v |= Self::WRITE;
        }
        HmmPfn(v)
    }

    /// The raw word.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// From a raw word.
    pub const fn from_raw(raw: u64) -> HmmPfn {
        HmmPfn(raw)
    }

    /// Whether the CPU maps the page (the frame is meaningful).
    pub const fn is_valid(self) -> bool {
        self.0 & Self::VALID != 0
    }

    /// Whether the CPU maps it writable.
    pub const fn is_write(self) -> bool {
        self.0 & Self::WRITE != 0
    }

    /// Whether the page cannot be mirrored (no VMA, no access).
    pub const fn is_error(self) -> bool {
        self.0 & Self::ERROR != 0
    }

    /// The frame (Linux: `hmm_pfn_to_page()`), if valid.
    pub const fn pfn(self) -> Option<Pfn> {
        if self.is_valid() {
            Some(Pfn::new(self.0 & !Self::FLAGS))
        } else {
            None
        }
    }

    const fn mapped(pfn: Pfn, write: bool) -> HmmPfn {
        HmmPfn(pfn.raw() | Self::VALID | if write { Self::WRITE } else { 0 })
    }
}

impl fmt::Debug for HmmPfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_error() {
            return f.write_str("HmmPfn(error)");
        }
        match self.pfn() {
            Some(p) => write!(f, "HmmPfn({p}{})", if self.is_write() { " W" } else { "" }),
            None => f.write_str("HmmPfn(-)"),
        }
    }
}

/// A range to mirror (Linux: `struct hmm_range`).
pub struct HmmRange<'a> {
    /// The interval notifier whose read section this runs in.
    pub notifier: &'a MmuIntervalNotifier,
    /// The sequence from `read_begin()`.
    pub notifier_seq: u64,
    /// First address (page-aligned).
    pub start: u64,
    /// End address (exclusive, page-aligned).
    pub end: u64,
    /// One entry per page: in, the request (masked by `pfn_flags_mask`); out, the
    /// result.
    pub hmm_pfns: Vec<HmmPfn>,
    /// Request flags applied to every page (Linux: `default_flags`).
    pub default_flags: HmmPfn,
    /// Which bits of each `hmm_pfns` entry count as its request (Linux:
    /// `pfn_flags_mask`).
    pub pfn_flags_mask: u64,
}

impl<'a> HmmRange<'a> {
    /// A range whose every page carries the same request (`default_flags`).
    pub fn new(
        notifier: &'a MmuIntervalNotifier,
        start: u64,
        end: u64,
        default_flags: HmmPfn,
    ) -> Self {
        let n = (end.saturating_sub(start) >> PAGE_SHIFT) as usize;
        HmmRange {
            notifier,
            notifier_seq: 0,
            start,
            end,
            hmm_pfns: vec![HmmPfn::default(); n],
            default_flags,
            pfn_flags_mask: 0,
        }
    }
}

impl fmt::Debug for HmmRange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmmRange")
            .field("start", &format_args!("{:#x}", self.start))
            .field("end", &format_args!("{:#x}", self.end))
            .field("notifier_seq", &self.notifier_seq)
            .field("hmm_pfns", &self.hmm_pfns)
            .finish()
    }
}

/// What the walk of one page needs.
enum Step {
    /// Filled in; go on.
    Done,
    /// Fault it in (writable or not), then walk again from here.
    Fault { write: bool },
}

impl Mm {
    /// Fills `range.hmm_pfns` with the CPU's translations of `[start, end)`, faulting in
    /// the pages whose request asks for it. The caller holds the mmap lock for read.
    ///
    /// * `EBUSY`: an invalidation hit the range since `read_begin` (the caller begins
    ///   a new read section and calls again).
    /// * `EFAULT`: a page whose fault was requested has no VMA, a VMA without read
    ///   permission, or cannot be faulted in.
    /// * `EPERM`: a write was requested in a VMA without `VM_WRITE`.
    /// * `EINVAL`: an unaligned or inverted range, or `hmm_pfns` of the wrong length.
    ///
    /// Linux: `hmm_range_fault()`.
    pub fn hmm_range_fault(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        range: &mut HmmRange<'_>,
    ) -> Result<(), Errno> {
        if !range.start.is_multiple_of(PAGE_SIZE)
            || !range.end.is_multiple_of(PAGE_SIZE)
            || range.end < range.start
            || range.hmm_pfns.len() as u64 != (range.end - range.start) >> PAGE_SHIFT
        {
            return Err(Errno::EINVAL);
        }
        let mut from = range.start;
        loop {
            if range.notifier.check_retry(range.notifier_seq) {
                return Err(Errno::EBUSY);
            }
            match self.hmm_walk(guard, range, from)? {
                None => return Ok(()),
                Some(last) => from = last,
            }
        }
    }

    /// One walk from `from`; `Ok(Some(addr))` after a fault at `addr` (Linux:
    /// `-EBUSY` from `hmm_vma_fault()`, the walk restarts at `hmm_vma_walk->last`).
    fn hmm_walk(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        range: &mut HmmRange<'_>,
        from: u64,
    ) -> Result<Option<u64>, Errno> {
        let mut addr = from;
        while addr < range.end {
            let i = ((addr - range.start) >> PAGE_SHIFT) as usize;
            let req = (range.hmm_pfns[i].0 & range.pfn_flags_mask) | range.default_flags.0;
            let (need_fault, need_write) = (req & HmmPfn::VALID != 0, req & HmmPfn::WRITE != 0);
            let va = VirtAddr::try_new(addr).map_err(|_| Errno::EFAULT)?;
            let Some(vma) = guard.find(va).cloned() else {
                // Linux: hmm_vma_walk_hole() without a VMA.
                if need_fault {
                    return Err(Errno::EFAULT);
                }
                range.hmm_pfns[i] = HmmPfn(HmmPfn::ERROR);
                addr += PAGE_SIZE;
                continue;
            };
            if !vma.flags.contains(VmFlags::READ) {
                // Linux: hmm_vma_walk_test().
                if need_fault {
                    return Err(Errno::EFAULT);
                }
                range.hmm_pfns[i] = HmmPfn(HmmPfn::ERROR);
                addr += PAGE_SIZE;
                continue;
            }
            match self.hmm_vma_handle(va, need_fault, need_write, &mut range.hmm_pfns[i])? {
                Step::Done => addr += PAGE_SIZE,
                Step::Fault { write } => {
                    self.hmm_vma_fault(guard, &vma, va, write)?;
                    return Ok(Some(addr));
                }
            }
        }
        Ok(None)
    }

    /// The translation of one page, or the fault it needs.
    ///
    /// Linux: `hmm_vma_handle_pmd()` / `hmm_vma_handle_pte()`.
    fn hmm_vma_handle(
        &self,
        va: VirtAddr,
        need_fault: bool,
        need_write: bool,
        out: &mut HmmPfn,
    ) -> Result<Step, Errno> {
        let fault_or = |out: &mut HmmPfn, v: HmmPfn| {
            if need_fault {
                Step::Fault { write: need_write }
            } else {
                *out = v;
                Step::Done
            }
        };
        match self.pmd_get_lockless(va) {
            Pmd::None => Ok(fault_or(out, HmmPfn(0))),
            Pmd::Huge(h) => {
                if h.is_protnone() || (need_write && !h.is_write()) {
                    return Ok(fault_or(out, HmmPfn(0)));
                }
                let pfn = Pfn::new(h.pfn.raw() + ((va.raw() % PMD_SIZE) >> PAGE_SHIFT));
                *out = HmmPfn::mapped(pfn, h.is_write());
                Ok(Step::Done)
            }
            Pmd::Table(_) => match self.pte_get_lockless(va) {
                Pte::None => Ok(fault_or(out, HmmPfn(0))),
                Pte::Present(p) if p.is_protnone() => Ok(fault_or(out, HmmPfn(0))),
                Pte::Present(p) => {
                    if need_write && !p.is_write() {
                        return Ok(Step::Fault { write: true });
                    }
                    *out = HmmPfn::mapped(p.pfn, p.is_write());
                    Ok(Step::Done)
                }
                // A snapshot reports an entry as not valid; a fault request restores
                // a device-exclusive one (spec 4.16). Anything else is an error.
                Pte::Swap(_) if !need_fault => {
                    *out = HmmPfn(0);
                    Ok(Step::Done)
                }
                // A migration entry: the fault waits for the migration (Linux:
                // migration_entry_wait() and -EBUSY).
                Pte::Swap(s) if s.is_device_exclusive() || s.is_migration() || s.is_swap() => {
                    Ok(Step::Fault { write: need_write })
                }
                Pte::Swap(_) => Err(Errno::EFAULT),
            },
        }
    }

    /// Faults one page in for the walk.
    ///
    /// Linux: `hmm_vma_fault()`.
    fn hmm_vma_fault(
        &self,
        guard: &mut MmapReadGuard<'_, VmaTree>,
        vma: &Vma,
        va: VirtAddr,
        write: bool,
    ) -> Result<(), Errno> {
        let mut flags = FaultFlags::REMOTE;
        if write {
            if !vma.flags.contains(VmFlags::WRITE) {
                return Err(Errno::EPERM);
            }
            flags |= FaultFlags::WRITE;
        }
        match self.handle_mm_fault(guard, vma, va, flags) {
            Ok(_) => Ok(()),
            Err(VmFaultError::Oom | VmFaultError::Sigbus) => Err(Errno::EFAULT),
        }
    }
}
