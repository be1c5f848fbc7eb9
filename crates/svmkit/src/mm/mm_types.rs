//! The address space of one simulated process: [`Mm`] (Linux: `struct mm_struct`) and
//! [`MmUser`], a counted user of it.
//!
//! Two counts, as in Linux:
//! * `mm_users`: processes/threads and temporary users (`mmget_not_zero`). When it
//!   drops to zero the address space is torn down ([`MmUser`]'s drop = `mmput()`):
//!   every VMA unmapped, every page table freed.
//! * `mm_count`: the `Arc<Mm>` count; the struct lives while anyone holds one (a
//!   driver that remembers the mm, the system registry's weak handle does not count).
//!
//! Syscall-level operations (`mmap`, `munmap`, `mprotect`, `madvise`, CPU accesses)
//! are methods of [`MmUser`], so they can only run on a live address space; the
//! lower-level operations that need locks take the lock guards.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

use super::mmu_notifier::MmuNotifierSubscriptions;
use super::page_alloc::PhysMem;
use super::vma::VmaTree;
use crate::error::Errno;
use crate::profile::Profile;
use crate::sync::{Arc, MmapLock, MmapReadGuard, MmapWriteGuard, Mutex, MutexGuard};
use crate::types::Pfn;

/// Event counters of one mm (for views, demos and benchmarks; not used for decisions).
#[derive(Debug, Default)]
pub struct MmStats {
    /// Page faults handled (Linux: the `PGFAULT` event).
    pub faults: AtomicU64,
    /// Write faults that copied a page (COW break or zero-page replacement).
    pub cow_copies: AtomicU64,
    /// Write faults that reused the page in place.
    pub wp_reuses: AtomicU64,
    /// Faults that mapped a new PMD-sized THP (Linux: `THP_FAULT_ALLOC`).
    pub thp_faults: AtomicU64,
    /// THP faults that fell back to 4 KiB pages (Linux: `THP_FAULT_FALLBACK`).
    pub thp_fallbacks: AtomicU64,
    /// Huge PMDs split into PTE tables (Linux: `THP_SPLIT_PMD`).
    pub thp_split_pmds: AtomicU64,
    /// PTE tables collapsed into PMD-mapped THPs, by khugepaged or MADV_COLLAPSE
    /// (Linux: `THP_COLLAPSE_ALLOC`).
    pub thp_collapses: AtomicU64,
    /// NUMA hinting faults handled (Linux: `NUMA_HINT_FAULTS`).
    pub numa_hint_faults: AtomicU64,
}

/// An address space (Linux: `struct mm_struct`).
pub struct Mm {
    id: u64,
    pub(crate) mem: Arc<PhysMem>,
    mm_users: AtomicU32,
    mmap_lock: MmapLock<VmaTree>,
    /// Linux: `mm->page_table_lock`, protecting the upper page-table levels, huge PMDs
    /// and the PTE tables deposited for splitting them (keyed by the huge PMD's address;
    /// Linux: `pgtable_trans_huge_deposit()`).
    page_table_lock: Mutex<BTreeMap<u64, Pfn>>,
    /// The top-level table; freed at exit.
    pgd: Pfn,
    /// Linux: `mm->rss_stat[MM_ANONPAGES]`.
    rss_anon: AtomicI64,
    /// Linux: `mm->rss_stat[MM_SHMEMPAGES]`.
    rss_shmem: AtomicI64,
    stats: MmStats,
    /// Linux: `MMF_HAS_PINNED`: some page of this mm was ever pinned (FOLL_PIN).
    has_pinned: AtomicBool,
    /// Linux: `mm->def_flags`: VMA flags every new mapping gets (`VM_LOCKED` and
    /// `VM_LOCKONFAULT` after `mlockall(MCL_FUTURE)`), as [`VmFlags`](super::VmFlags)
    /// bits.
    pub(crate) def_flags: AtomicU64,
    /// The device-exclusive design this mm follows.
    profile: Profile,
    /// Linux: `mm->notifier_subscriptions`.
    pub(crate) notifiers: MmuNotifierSubscriptions,
}

impl Mm {
    /// A new, empty address space with one user. Fails with `ENOMEM` if the top-level
    /// table cannot be allocated.
    ///
    /// Linux: `mm_alloc()` (with `mm_init()` and `pgd_alloc()`).
    pub(crate) fn alloc(mem: Arc<PhysMem>, id: u64, profile: Profile) -> Result<Arc<Mm>, Errno> {
        let pgd = mem.pgtable_alloc()?;
        crate::sync::mode::model_changed();
        Ok(Arc::new_cyclic(|me| Mm {
            id,
            mem,
            mm_users: AtomicU32::new(1),
            mmap_lock: MmapLock::new(VmaTree::for_mm(id, me.clone())),
            page_table_lock: Mutex::new(BTreeMap::new()),
            pgd,
            rss_anon: AtomicI64::new(0),
            rss_shmem: AtomicI64::new(0),
            stats: MmStats::default(),
            has_pinned: AtomicBool::new(false),
            def_flags: AtomicU64::new(0),
            profile,
            notifiers: MmuNotifierSubscriptions::new(),
        }))
    }

    /// A small number naming this mm in traces and errors.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The physical memory this mm maps.
    pub fn mem(&self) -> &Arc<PhysMem> {
        &self.mem
    }

    /// The top-level page table.
    pub fn pgd(&self) -> Pfn {
        self.pgd
    }

    /// Whether the mm's interval-notifier state is consistent right now (spec 5.3:
    /// an odd sequence only while an invalidation runs, no deferred change left after
    /// the last one ends, every interval's sequence odd and no newer than the mm's).
    /// It takes no lock, so it adds no scheduling point: schedule exploration runs it at
    /// every one. `Ok` also while the lock is held (the state is mid-change then).
    pub fn check_notifiers_now(&self) -> Result<(), String> {
        self.notifiers.check_now().unwrap_or(Ok(()))
    }

    /// [`check_notifiers_now`](Self::check_notifiers_now), `None` while the lock is
    /// held (nothing read: a caller skipping checks of an unchanged model,
    /// [`check::at_every_state_change`](crate::check::at_every_state_change), checks
    /// again then).
    pub fn check_notifiers_now_complete(&self) -> Option<Result<(), String>> {
        self.notifiers.check_now()
    }

    /// Current number of users (0 once torn down).
    pub fn mm_users(&self) -> u32 {
        self.mm_users.load(Ordering::SeqCst)
    }

    /// Anonymous pages mapped (Linux: `get_mm_counter(mm, MM_ANONPAGES)`).
    #[doc(alias = "get_mm_counter")]
    pub fn rss_anon(&self) -> i64 {
        self.rss_anon.load(Ordering::SeqCst)
    }

    pub(crate) fn add_rss_anon(&self, delta: i64) {
        self.rss_anon.fetch_add(delta, Ordering::SeqCst);
    }

    /// Shared-memory pages mapped (Linux: `get_mm_counter(mm, MM_SHMEMPAGES)`).
    pub fn rss_shmem(&self) -> i64 {
        self.rss_shmem.load(Ordering::SeqCst)
    }

    pub(crate) fn add_rss_shmem(&self, delta: i64) {
        self.rss_shmem.fetch_add(delta, Ordering::SeqCst);
    }

    /// Whether a page of this mm was ever pinned (Linux: `MMF_HAS_PINNED`); fork then
    /// copies possibly pinned anon pages instead of sharing them.
    pub fn has_pinned(&self) -> bool {
        self.has_pinned.load(Ordering::SeqCst)
    }

    /// Marks the mm as having had a pin (set by FOLL_PIN; never cleared, as in Linux).
    pub fn set_has_pinned(&self) {
        self.has_pinned.store(true, Ordering::SeqCst);
    }

    /// The PTE tables deposited for huge PMDs (for the checker and views).
    pub fn deposited_tables(&self) -> Vec<(u64, Pfn)> {
        self.page_table_lock()
            .iter()
            .map(|(&a, &p)| (a, p))
            .collect()
    }

    /// The device-exclusive design this mm follows.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Event counters.
    pub fn stats(&self) -> &MmStats {
        &self.stats
    }

    /// Takes the mmap lock for read.
    ///
    /// Linux: `mmap_read_lock()`.
    pub fn mmap_read_lock(&self) -> MmapReadGuard<'_, VmaTree> {
        self.mmap_lock.read()
    }

    /// Takes the mmap lock for write.
    ///
    /// Linux: `mmap_write_lock()`.
    pub fn mmap_write_lock(&self) -> MmapWriteGuard<'_, VmaTree> {
        self.mmap_lock.write()
    }

    /// The mmap lock itself (for try variants and introspection).
    pub fn mmap_lock(&self) -> &MmapLock<VmaTree> {
        &self.mmap_lock
    }

    /// Takes the lock of the upper page-table levels.
    ///
    /// Linux: `spin_lock(&mm->page_table_lock)` (`pmd_lock()` without split PMD locks).
    #[doc(alias = "pmd_lock")]
    pub(crate) fn page_table_lock(&self) -> MutexGuard<'_, BTreeMap<u64, Pfn>> {
        self.page_table_lock.lock()
    }

    /// Takes a user reference if the mm still has users.
    ///
    /// Linux: `mmget_not_zero()`.
    pub fn mmget_not_zero(self: &Arc<Self>) -> Option<MmUser> {
        self.mm_users
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                (u > 0).then_some(u + 1)
            })
            .ok()
            .map(|_| MmUser {
                mm: Arc::clone(self),
            })
    }
}

impl fmt::Debug for Mm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mm")
            .field("id", &self.id)
            .field("mm_users", &self.mm_users())
            .field("rss_anon", &self.rss_anon())
            .field("rss_shmem", &self.rss_shmem())
            .finish_non_exhaustive()
    }
}

/// A counted user of an [`Mm`] (one `mm_users` reference). Cloning is `mmget()`;
/// dropping is `mmput()`, and the last drop tears the address space down.
///
/// Linux: a task's `mm` pointer, or a reference from `mmget_not_zero()`.
pub struct MmUser {
    mm: Arc<Mm>,
}

impl MmUser {
    /// Wraps the first user of a freshly allocated mm.
    pub(crate) fn first(mm: Arc<Mm>) -> Self {
        MmUser { mm }
    }

    /// The underlying mm (an `mm_count` reference: it keeps the struct, not the
    /// address space, alive).
    ///
    /// Linux: `mmgrab()`.
    #[doc(alias = "mmgrab")]
    pub fn mm(&self) -> &Arc<Mm> {
        &self.mm
    }

    /// Drops this user explicitly.
    ///
    /// Linux: `mmput()`.
    pub fn mmput(self) {}
}

impl Clone for MmUser {
    /// Linux: `mmget()`.
    fn clone(&self) -> Self {
        self.mm.mm_users.fetch_add(1, Ordering::SeqCst);
        MmUser {
            mm: Arc::clone(&self.mm),
        }
    }
}

impl Drop for MmUser {
    fn drop(&mut self) {
        if self.mm.mm_users.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The checker tells an exited mm's device entries apart.
            crate::sync::mode::model_changed();
            self.mm.exit_mmap();
        }
    }
}

impl Deref for MmUser {
    type Target = Mm;
    fn deref(&self) -> &Mm {
        &self.mm
    }
}

impl fmt::Debug for MmUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MmUser").field(&self.mm).finish()
    }
}
