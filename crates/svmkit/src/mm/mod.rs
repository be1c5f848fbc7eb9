//! The memory-management model. Files mirror Linux's `mm/` so a kernel engineer finds
//! things where they expect them:
//!
//! | file | Linux | what |
//! |---|---|---|
//! | `page.rs` | `include/linux/mm_types.h`, `page-flags.h` | per-page metadata ([`Page`], [`PageFlags`]) |
//! | `page_alloc.rs` | `mm/page_alloc.c` | physical memory ([`PhysMem`]): frames with real bytes, the buddy allocator, the zero page |
//! | `folio.rs` | `mm/filemap.c`, `include/linux/mm.h` | [`Folio`] handles: references and the folio lock |
//!
//! Later layers add address spaces, page tables, faults, rmap, GUP, fork, mprotect,
//! munmap and the MMU notifiers, each in the file named after its Linux counterpart.

mod folio;
mod page;
mod page_alloc;

pub use folio::{Folio, FolioLockGuard};
pub use page::{Page, PageFlags};
pub use page_alloc::{
    AllocError, BadPage, BuddyError, Gfp, MAX_PAGE_ORDER, NR_PAGE_ORDERS, PhysMem, PhysMemConfig,
};
