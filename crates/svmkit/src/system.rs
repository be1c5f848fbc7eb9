//! The simulated machine: physical memory and every address space on it.

use std::fmt;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Errno;
use crate::mm::{Mm, MmUser, PhysMem, PhysMemConfig};
use crate::profile::Profile;
use crate::sync::{Arc, Mutex};

/// How to build a [`System`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SystemConfig {
    /// Physical memory.
    pub mem: PhysMemConfig,
    /// Which Linux era's device-exclusive design the mms follow.
    pub profile: Profile,
}

impl SystemConfig {
    /// A system with `frames` frames of memory.
    pub const fn with_frames(frames: u64) -> Self {
        SystemConfig {
            mem: PhysMemConfig::with_frames(frames),
            profile: Profile::linux_6_15(),
        }
    }
}

/// Physical memory plus the registry of address spaces, which the invariant checker
/// walks ([`System::check`]).
pub struct System {
    mem: Arc<PhysMem>,
    profile: Profile,
    mms: Mutex<Vec<Weak<Mm>>>,
    next_mm_id: AtomicU64,
}

impl System {
    /// A new machine. `EINVAL` for an unusable memory configuration.
    pub fn new(config: SystemConfig) -> Result<Arc<System>, Errno> {
        Ok(Arc::new(System {
            mem: PhysMem::new(config.mem)?,
            profile: config.profile,
            mms: Mutex::new(Vec::new()),
            next_mm_id: AtomicU64::new(1),
        }))
    }

    /// The physical memory.
    pub fn mem(&self) -> &Arc<PhysMem> {
        &self.mem
    }

    /// Starts, changes or stops recording this machine's trace (off by default; see
    /// [`crate::trace`]).
    pub fn set_trace(&self, level: crate::trace::TraceLevel) {
        self.mem.tracer().set_level(level);
    }

    /// This machine's trace record.
    pub fn trace(&self) -> &crate::trace::Tracer {
        self.mem.tracer()
    }

    /// The device-exclusive design every mm of this machine follows.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// A new, empty address space with one user (a new process). `ENOMEM` if its
    /// top-level page table cannot be allocated.
    ///
    /// Linux: `mm_alloc()` (as `execve()` does).
    pub fn create_mm(&self) -> Result<MmUser, Errno> {
        let id = self.next_mm_id.fetch_add(1, Ordering::Relaxed);
        let mm = Mm::alloc(Arc::clone(&self.mem), id, self.profile)?;
        self.register(&mm);
        Ok(MmUser::first(mm))
    }

    /// Forks `parent`: a new address space with a copy of its mappings, private memory
    /// shared copy-on-write and shared memory shared. `ENOMEM` if memory runs out on
    /// the way; the half-built child is then torn down and the parent stays
    /// consistent.
    ///
    /// Linux: `copy_process()` → `copy_mm()` → `dup_mm()` → `dup_mmap()`.
    pub fn fork(&self, parent: &MmUser) -> Result<MmUser, Errno> {
        let child = self.create_mm()?;
        parent.dup_mmap(&child)?;
        Ok(child)
    }

    pub(crate) fn register(&self, mm: &Arc<Mm>) {
        let mut mms = self.mms.lock();
        mms.retain(|w| w.strong_count() > 0);
        mms.push(Arc::downgrade(mm));
    }

    /// Every address space whose struct is still alive (exited ones included until
    /// their last `Arc<Mm>` goes), in creation order.
    pub fn mms(&self) -> Vec<Arc<Mm>> {
        self.mms.lock().iter().filter_map(Weak::upgrade).collect()
    }
}

impl fmt::Debug for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("System")
            .field("mem", &self.mem)
            .field("mms", &self.mms().len())
            .finish()
    }
}
