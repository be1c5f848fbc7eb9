//! The CPU side: loads, stores and atomics of a simulated process, through its page
//! tables, with the hardware's rules (Linux: the MMU, plus `arch/x86/mm/fault.c`).
//!
//! An access:
//! 1. walks the page table under the mmap lock in read mode (the stand-in for what
//!    protects a hardware walk against page-table freeing) and locks the PTE table's
//!    PTL;
//! 2. if the PTE is present and allows the access: drops the mmap lock, sets the
//!    accessed (and, for writes, dirty) bit as the hardware does, and performs the
//!    access **while still holding the PTL**. The PTL stands for the TLB: a PTE change
//!    (zap, mprotect, COW, device-exclusive conversion) takes the PTL, so once it
//!    returns no CPU still uses the old translation;
//! 3. otherwise it faults: `do_user_addr_fault` checks the VMA and the access
//!    (SIGSEGV), calls [`Mm::handle_mm_fault`], and the access starts over.

use std::fmt;

use thiserror::Error;

use crate::mm::{FaultFlags, Mm, MmUser, PhysMem, Pmd, Pte, PteFlags, VmFault, VmFaultError, Vma};
use crate::types::{PAGE_SIZE, Pfn, VirtAddr};

/// The kind of a CPU access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// A load.
    Read,
    /// A store or a read-modify-write.
    Write,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
        })
    }
}

/// Why an access could not complete (what the process would get as a signal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// No VMA at the address (SIGSEGV, `SEGV_MAPERR`).
    Unmapped,
    /// The VMA does not allow the access (SIGSEGV, `SEGV_ACCERR`).
    Protection,
    /// The fault handler ran out of memory (`VM_FAULT_OOM`).
    OutOfMemory,
    /// The fault handler gave up on the entry (SIGBUS).
    Bus,
    /// A `u64` access not aligned to 8 bytes (the model requires natural alignment
    /// for word accesses so that they are single-copy atomic).
    Misaligned,
    /// The fault handler kept reporting success without making the access possible,
    /// [`FAULT_LIVELOCK_LIMIT`] times in a row: on Linux the process would fault on
    /// that instruction forever (until killed). Only a 5.14 hugetlb conversion leads
    /// here (`hugetlb_fault()` returns 0 on a non-present entry, spec 8 item 20).
    Livelock,
}

/// Faults one access may take before it counts as a [`FaultKind::Livelock`]: far more
/// than any handler needs (a retry, a racing change or two).
pub const FAULT_LIVELOCK_LIMIT: u64 = 1000;

/// A failed CPU access: where, what kind of access, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[error("{kind:?} fault on {access} at {addr}")]
pub struct FaultError {
    /// The faulting address.
    pub addr: VirtAddr,
    /// The access that faulted.
    pub access: Access,
    /// Why it could not be handled.
    pub kind: FaultKind,
}

/// Whether `vma` forbids the access.
///
/// Linux: `access_error()` (x86: writes need VM_WRITE; reads need any access bit).
fn access_error(access: Access, vma: &Vma) -> bool {
    match access {
        Access::Write => !vma.flags.contains(crate::mm::VmFlags::WRITE),
        Access::Read => !vma.is_accessible(),
    }
}

impl Mm {
    /// Performs one access inside one page: finds a translation that allows it
    /// (faulting as needed) and runs `op` on the frame while holding the PTL. Adds the
    /// page faults it took to `faults`: one per hardware fault, a handler's
    /// `VM_FAULT_RETRY` and its second try being one fault (Linux: what
    /// `mm_account_fault()` adds to `current->min_flt + maj_flt`, and
    /// `PERF_COUNT_SW_PAGE_FAULTS`, counted once per entry to `do_user_addr_fault()`).
    fn access_page<R>(
        &self,
        addr: VirtAddr,
        access: Access,
        faults: &mut u64,
        op: impl FnOnce(&PhysMem, Pfn) -> R,
    ) -> Result<R, FaultError> {
        if self.mem().tracer().on() {
            return self.access_page_traced(addr, access, faults, op);
        }
        self.access_page_body(addr, access, faults, op)
    }

    // Every CPU access passes here: the traced path stays out of line so that, with
    // tracing off, the body inlines into the load or store as it did before tracing.
    #[cold]
    #[inline(never)]
    fn access_page_traced<R>(
        &self,
        addr: VirtAddr,
        access: Access,
        faults: &mut u64,
        op: impl FnOnce(&PhysMem, Pfn) -> R,
    ) -> Result<R, FaultError> {
        self.mem().tracer().traced(
            || crate::trace::Payload::CpuAccess {
                mm: self.id(),
                access: match access {
                    Access::Read => "read".into(),
                    Access::Write => "write".into(),
                },
                addr: addr.raw(),
            },
            || self.access_page_body(addr, access, faults, op),
            |r| match r {
                Ok(_) => "ok".into(),
                Err(e) => format!("{:?}", e.kind).into(),
            },
        )
    }

    /// [`access_page`](Self::access_page) without its trace operation.
    #[inline(always)]
    fn access_page_body<R>(
        &self,
        addr: VirtAddr,
        access: Access,
        faults: &mut u64,
        op: impl FnOnce(&PhysMem, Pfn) -> R,
    ) -> Result<R, FaultError> {
        let fail = |kind| FaultError { addr, access, kind };
        let write = access == Access::Write;
        let mut guard = self.mmap_read_lock();
        let mut flags = FaultFlags::USER | FaultFlags::ALLOW_RETRY | FaultFlags::KILLABLE;
        if write {
            flags |= FaultFlags::WRITE;
        }
        let mut op = Some(op);
        let mut retrying = false;
        let mut tries = 0u64;
        loop {
            // One hardware walk per try: the PMD slot found here is the one the PTL
            // re-check reads (the upper tables outlive the mmap read lock held).
            let slot = self.pmd_slot(addr);
            let pmd = match slot {
                Some(s) => self.pmd_read(s),
                None => Pmd::None,
            };
            if matches!(pmd, Pmd::Huge(_))
                && let Some(r) =
                    self.access_huge_pmd(addr, write, |mem, pfn| op.take().map(|op| op(mem, pfn)))
                && let Some(r) = r
            {
                return Ok(r);
            }
            // The hardware walk takes no lock: a PTE it reads as not present faults
            // at once (a PTE that becomes present meanwhile makes it a spurious fault,
            // which the handler finds done). Only a present one is used under the
            // PTL, for the access to be atomic with respect to PTE changes.
            if let (Some(slot), Pmd::Table(table)) = (slot, pmd)
                && matches!(self.pte_read(table, addr), Pte::Present(_))
                && let Some(mut ptl) = self.pte_lock_at(slot, table)
                && let Pte::Present(pte) = ptl.get(addr)
                && !pte.is_protnone()
                && (!write || pte.is_write())
            {
                drop(guard);
                let mut hw = pte.with(PteFlags::ACCESSED);
                if write {
                    // The hardware sets the dirty bit only; soft-dirty is software's.
                    hw = hw.with(PteFlags::DIRTY);
                }
                if hw != pte {
                    ptl.set(addr, Pte::Present(hw));
                }
                let Some(op) = op.take() else {
                    return Err(fail(FaultKind::Bus));
                };
                let r = op(self.mem(), pte.pfn);
                drop(ptl);
                return Ok(r);
            }
            // Linux: do_user_addr_fault().
            let Some(vma) = guard.find(addr).cloned() else {
                return Err(fail(FaultKind::Unmapped));
            };
            if access_error(access, &vma) {
                return Err(fail(FaultKind::Protection));
            }
            if !std::mem::replace(&mut retrying, false) {
                *faults += 1;
            }
            tries += 1;
            if tries > FAULT_LIVELOCK_LIMIT {
                return Err(fail(FaultKind::Livelock));
            }
            match self.handle_mm_fault(&mut guard, &vma, addr, flags) {
                Ok(VmFault::Done) => {}
                Ok(VmFault::Retry) => {
                    flags |= FaultFlags::TRIED;
                    retrying = true;
                }
                Err(VmFaultError::Oom) => return Err(fail(FaultKind::OutOfMemory)),
                Err(VmFaultError::Sigbus) => return Err(fail(FaultKind::Bus)),
            }
        }
    }

    /// Runs `op(frame, offset in page, range in buf)` for each page `[addr, addr+len)`
    /// touches, faulting pages in as needed. Stops at the first failing page; bytes
    /// before it have been accessed, as with a real `memcpy` that faults.
    fn access_range(
        &self,
        addr: u64,
        len: usize,
        access: Access,
        mut op: impl FnMut(&PhysMem, Pfn, u64, std::ops::Range<usize>),
    ) -> Result<(), FaultError> {
        let mut done = 0usize;
        while done < len {
            let at = addr.checked_add(done as u64);
            let va = at
                .and_then(|a| VirtAddr::try_new(a).ok())
                .ok_or(FaultError {
                    addr: VirtAddr::new_truncate(addr),
                    access,
                    kind: FaultKind::Unmapped,
                })?;
            let off = va.page_offset();
            let n = ((PAGE_SIZE - off) as usize).min(len - done);
            self.access_page(va, access, &mut 0, |mem, pfn| {
                op(mem, pfn, off, done..done + n)
            })?;
            done += n;
        }
        Ok(())
    }
}

fn word_addr(addr: u64, access: Access) -> Result<VirtAddr, FaultError> {
    let va = VirtAddr::try_new(addr).map_err(|_| FaultError {
        addr: VirtAddr::new_truncate(addr),
        access,
        kind: FaultKind::Unmapped,
    })?;
    if !addr.is_multiple_of(8) {
        return Err(FaultError {
            addr: va,
            access,
            kind: FaultKind::Misaligned,
        });
    }
    Ok(va)
}

impl MmUser {
    /// Loads `buf.len()` bytes from `addr` (a CPU read, faulting as needed).
    pub fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> Result<(), FaultError> {
        let len = buf.len();
        self.access_range(addr, len, Access::Read, |mem, pfn, off, r| {
            // The frame exists and `off + r.len() <= PAGE_SIZE` by construction.
            let _ = mem.read_bytes(pfn, off, &mut buf[r]);
        })
    }

    /// Stores `data` at `addr` (a CPU write, faulting as needed).
    pub fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), FaultError> {
        self.access_range(addr, data.len(), Access::Write, |mem, pfn, off, r| {
            let _ = mem.write_bytes(pfn, off, &data[r]);
        })
    }

    /// Loads the naturally aligned `u64` at `addr`.
    pub fn read_u64(&self, addr: u64) -> Result<u64, FaultError> {
        self.read_u64_counting(addr, &mut 0)
    }

    /// Stores the naturally aligned `u64` at `addr`.
    pub fn write_u64(&self, addr: u64, value: u64) -> Result<(), FaultError> {
        self.write_u64_counting(addr, value, &mut 0)
    }

    /// Atomically adds `delta` to the naturally aligned `u64` at `addr` and returns the
    /// old value (`lock xadd`; needs write permission like any store).
    pub fn fetch_add_u64(&self, addr: u64, delta: u64) -> Result<u64, FaultError> {
        self.fetch_add_u64_counting(addr, delta, &mut 0)
    }

    /// [`read_u64`](Self::read_u64), adding the page faults the load took to `faults`
    /// (Linux: what the access adds to the task's `min_flt + maj_flt`; a fault handler's
    /// retry is part of one fault).
    pub fn read_u64_counting(&self, addr: u64, faults: &mut u64) -> Result<u64, FaultError> {
        let va = word_addr(addr, Access::Read)?;
        self.access_page(va, Access::Read, faults, |mem, pfn| {
            mem.read_u64(pfn, va.page_offset()).unwrap_or_default()
        })
    }

    /// [`write_u64`](Self::write_u64), adding the page faults the store took to
    /// `faults` (as [`read_u64_counting`](Self::read_u64_counting)).
    pub fn write_u64_counting(
        &self,
        addr: u64,
        value: u64,
        faults: &mut u64,
    ) -> Result<(), FaultError> {
        let va = word_addr(addr, Access::Write)?;
        self.access_page(va, Access::Write, faults, |mem, pfn| {
            let _ = mem.write_u64(pfn, va.page_offset(), value);
        })
    }

    /// [`fetch_add_u64`](Self::fetch_add_u64), adding the page faults the atomic took
    /// to `faults` (as [`read_u64_counting`](Self::read_u64_counting)).
    pub fn fetch_add_u64_counting(
        &self,
        addr: u64,
        delta: u64,
        faults: &mut u64,
    ) -> Result<u64, FaultError> {
        let va = word_addr(addr, Access::Write)?;
        self.access_page(va, Access::Write, faults, |mem, pfn| {
            mem.fetch_add_u64(pfn, va.page_offset(), delta)
                .unwrap_or_default()
        })
    }
}
