//! The memory-management model. Files mirror Linux's `mm/` so a kernel engineer finds
//! things where they expect them:
//!
//! | file | Linux | what |
//! |---|---|---|
//! | `page.rs` | `include/linux/mm_types.h`, `page-flags.h` | per-page metadata ([`Page`], [`PageFlags`]) |
//! | `page_alloc.rs` | `mm/page_alloc.c` | physical memory ([`PhysMem`]): frames with real bytes, the buddy allocator, the zero page |
//! | `free_list.rs` | `struct free_area` of `include/linux/mmzone.h` | one order's buddy free list, as a bitmap (lowest block first) |
//! | `folio.rs` | `mm/filemap.c`, `include/linux/mm.h` | [`Folio`] handles: references and the folio lock |
//! | `mm_types.rs` | `include/linux/mm_types.h`, `kernel/fork.c` | [`Mm`] and [`MmUser`] (mm_users/mm_count) |
//! | `vma.rs` | `mm/vma.c` | [`Vma`], [`VmFlags`], the [`VmaTree`] |
//! | `pgtable.rs` | `arch/x86/include/asm/pgtable*.h` | entries: [`Pte`], [`Pmd`], encode/decode |
//! | `pagewalk.rs` | `mm/pagewalk.c`, `mm/pgtable-generic.c` | walking, populating, locking (split PTLs) and freeing tables |
//! | `huge_memory.rs` | `mm/huge_memory.c` | THP: huge PMD faults, split, zap, mprotect, fork, COW |
//! | `hugetlb.rs` | `mm/hugetlb.c` | `MAP_HUGETLB` private mappings: 2 MiB folios mapped by one PMD, their faults, COW, zap, fork, mprotect |
//! | `khugepaged.rs` | `mm/khugepaged.c` | collapsing 512 PTEs into a PMD-mapped THP: the khugepaged scan, `MADV_COLLAPSE` |
//! | `memory.rs` | `mm/memory.c` | faults (`handle_mm_fault`, `do_anonymous_page`, `do_wp_page`, `do_swap_page`) and zap |
//! | `rmap.rs` | `mm/rmap.c`, `mm/page_vma_mapped.c` | mapcounts, anon_vmas, `rmap_walk`, `page_vma_mapped_walk` |
//! | `swap.rs` | `mm/swapfile.c`, `mm/swap_state.c`, `mm/vmscan.c` (anon) | swap device, swap cache, reclaim, swap-in, MADV_PAGEOUT |
//! | `page_idle.rs` | `mm/page_idle.c` | idle page tracking (`/sys/kernel/mm/page_idle/bitmap`) |
//! | `damon.rs` | `mm/damon/paddr.c`, `mm/damon/ops-common.c` | DAMON's physical-address access sampling (mkold, young) |
//! | `swp_misread.rs` | `arch/x86/include/asm/pgtable_64.h` | what present-PTE accessors read from an x86-64 swap PTE (the E1 walkers' misreads) |
//! | `shmem.rs` | `mm/shmem.c` | shared anonymous memory objects |
//! | `migrate.rs` | `mm/migrate.c`, `try_to_migrate_one()` | migrating anonymous folios |
//! | `mmap.rs` | `mm/mmap.c`, `mm/vma.c` | `mmap`, `munmap`, `exit_mmap` |
//! | `mremap.rs` | `mm/mremap.c` | `mremap`: shrink, grow in place, move (`move_vma`, `move_page_tables`, `move_ptes`, `move_huge_pmd`) |
//! | `mprotect.rs` | `mm/mprotect.c` | `mprotect`, `change_protection`, `can_change_pte_writable` |
//! | `numa_balancing.rs` | `task_numa_work()`, `kernel/sched/fair.c` | the NUMA balancing scan, as an explicit call |
//! | `uprobes.rs` | `kernel/events/uprobes.c` (`__replace_page`) | uprobes' page replacement |
//! | `ksm.rs` | `mm/ksm.c` | KSM: `MADV_MERGEABLE` pages merged by an explicit scan |
//! | `mlock.rs` | `mm/mlock.c` | `mlock`, `munlock`, `mlockall`, PG_mlocked and `NR_MLOCK` |
//! | `mmu_notifier/` | `mm/mmu_notifier.c`, `include/linux/mmu_notifier.h` | MMU notifiers: ranges, classic subscriptions, interval notifiers |
//! | `task_mmu.rs` | `fs/proc/task_mmu.c` | `clear_refs` soft-dirty clearing, smaps `Rss:` |
//! | `userfaultfd.rs` | `mm/userfaultfd.c` | the uffd-wp bit (`UFFDIO_WRITEPROTECT`) |
//! | `gup.rs` | `mm/gup.c` | get_user_pages, pin/unpin |
//! | `secondary.rs` | (none: the model's audit) | devices mirroring an mm, as the checker sees them |
//! | `hmm.rs` | `mm/hmm.c` | `hmm_range_fault` |
//! | `madvise.rs` | `mm/madvise.c` | `MADV_DONTNEED`, `MADV_HUGEPAGE`, `MADV_NOHUGEPAGE`, `MADV_COLLAPSE` |

mod damon;
mod folio;
mod free_list;
mod gup;
mod hmm;
mod huge_memory;
mod hugetlb;
mod khugepaged;
mod ksm;
mod madvise;
mod memory;
mod migrate;
mod mlock;
mod mm_types;
mod mmap;
pub mod mmu_notifier;
mod mprotect;
mod mremap;
mod numa_balancing;
mod page;
mod page_alloc;
mod page_idle;
mod pagewalk;
mod pgtable;
mod rmap;
mod secondary;
mod shmem;
mod swap;
mod swp_misread;
mod task_mmu;
mod uprobes;
mod userfaultfd;
mod vma;

pub use folio::{Folio, FolioLockGuard};
pub use gup::{GUP_PIN_COUNTING_BIAS, GupFlags};
pub use hmm::{HmmPfn, HmmRange};
pub use huge_memory::{HPAGE_PMD_NR, HPAGE_PMD_SIZE, ThpMode};
pub use hugetlb::{HUGETLB_PAGE_SIZE, HugePte};
pub use khugepaged::{
    KHUGEPAGED_MAX_PTES_NONE, KHUGEPAGED_MAX_PTES_SHARED, KHUGEPAGED_MAX_PTES_SWAP, ScanResult,
};
pub use madvise::Advice;
pub use memory::{FaultFlags, VmFault, VmFaultError};
pub use migrate::MigrateRangeError;
pub use mlock::{MLOCK_ONFAULT, MlockallFlags};
pub use mm_types::{Mm, MmStats, MmUser};
pub use mmap::{MMAP_BASE, MMAP_MIN_ADDR, MapFlags, Prot};
pub use mremap::MremapFlags;
pub use page::{Mapping, Page, PageFlags};
pub use page_alloc::{
    AllocError, BadPage, BuddyError, Gfp, MAX_PAGE_ORDER, NR_PAGE_ORDERS, PhysMem, PhysMemConfig,
};
pub use page_idle::PAGE_IDLE_CHUNK_BITS;
pub use pagewalk::{PtlGuard, TableVisit};
pub use pgtable::{
    PMD_SIZE, PTRS_PER_TABLE, PUD_SIZE, Pmd, PresentPte, Pte, PteFlags, SwapPte, UpperEntry,
    swp_type,
};
pub use rmap::{AnonVma, AnonVmaReadGuard, ExclusiveFolio, PvmwHit, RmapHit, VmaInfo};
pub use secondary::{
    CpuMapping, DeviceAccessKind, SecondaryMmu, SecondaryPte, StaleDeviceAccess, Staleness,
    audit_translation,
};
pub use shmem::Shmem;
pub use vma::{VM_ACCESS_FLAGS, VM_LOCKED_MASK, VmFlags, Vma, VmaTree};
