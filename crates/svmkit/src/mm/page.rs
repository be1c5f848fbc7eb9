//! Per-page metadata: Linux's `struct page` reduced to what this model needs.
//!
//! Every frame has one [`Page`]. A folio's state (refcount, most flags, order) lives in
//! its head page; each page keeps its own mapcount and PageAnonExclusive bit, as in
//! Linux. All fields are std atomics: they are read on hot paths (every fault, every
//! get/put) and are not scheduling points; the folio lock's bit is only changed under
//! its wait queue's lock (see `folio.rs`).

use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use bitflags::bitflags;

use crate::types::Pfn;

bitflags! {
    /// Page flags (Linux: `enum pageflags` plus the compound-page markers).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct PageFlags: u32 {
        /// PG_locked: the folio lock bit. Only the head page's bit is used.
        const LOCKED = 1 << 0;
        /// PG_dirty: the contents differ from backing store (none, for anon).
        const DIRTY = 1 << 1;
        /// PageAnon: an anonymous folio (Linux encodes it in `folio->mapping`).
        const ANON = 1 << 2;
        /// PG_anon_exclusive: this page of an anon folio is mapped by exactly one process,
        /// so it may be written without copying. Per page, not per folio.
        const ANON_EXCLUSIVE = 1 << 3;
        /// PG_head: first page of a large folio.
        const HEAD = 1 << 4;
        /// A tail page of a large folio (Linux: bit 0 of `compound_head`).
        const TAIL = 1 << 5;
        /// PageBuddy: the first page of a free block in the buddy allocator.
        const BUDDY = 1 << 6;
        /// PG_reserved: never allocated or freed (the shared zero page).
        const RESERVED = 1 << 7;
        /// PageTable: the frame holds a page table (Linux: the `PGTY_table` page type).
        const PGTABLE = 1 << 8;
        /// The split page-table lock of a PTE table (Linux: `ptdesc->ptl`), a bit lock
        /// in the table's own page.
        const PTL_LOCKED = 1 << 9;
        /// PG_mlocked: some `VM_LOCKED` VMA maps the folio, so reclaim leaves it in
        /// memory (counted in `NR_MLOCK`, meminfo's `Mlocked:`). Head page only.
        const MLOCKED = 1 << 10;
        /// PG_idle: not accessed since user space marked it idle (page_idle, DAMON).
        /// Linux keeps it per folio (the head's bit).
        const IDLE = 1 << 11;
        /// PG_young: an access was seen (a young bit cleared) while it was idle, for
        /// reclaim's aging to count later (`folio_test_clear_young()`).
        const YOUNG = 1 << 12;
        /// A lazily freed anonymous folio (Linux: an anon folio *without*
        /// PG_swapbacked, after MADV_FREE): reclaim drops it instead of swapping it
        /// out if it is still clean, and makes it swap-backed again if it is dirty.
        /// Head page only.
        const LAZYFREE = 1 << 13;
        /// The folio is a hugetlb folio (head page only; Linux: `folio_test_hugetlb()`,
        /// the page type `PGTY_hugetlb`). Never on an LRU: reclaim, migration,
        /// page_idle and DAMON leave it alone.
        const HUGETLB = 1 << 14;
    }
}

/// Flags that must be clear when a folio is freed (Linux: `PAGE_FLAGS_CHECK_AT_FREE`,
/// the subset this model has).
pub(crate) const FLAGS_CHECK_AT_FREE: PageFlags = PageFlags::LOCKED
    .union(PageFlags::RESERVED)
    .union(PageFlags::PTL_LOCKED);

/// Metadata of one physical frame (Linux: `struct page`). All zero is a free frame
/// (`PhysMem::new` allocates them zeroed).
#[derive(bytemuck::Zeroable)]
pub struct Page {
    flags: AtomicU32,
    /// Folio reference count; meaningful on the head (tails stay 0, as in Linux).
    refcount: AtomicI32,
    /// Number of page-table entries mapping this page (Linux keeps `_mapcount` offset
    /// by -1; the model stores the count itself).
    mapcount: AtomicI32,
    /// For a tail page: the head's frame number.
    head: AtomicU64,
    /// For a head (or a free block's first page): the order.
    order: AtomicU32,
    /// Linux: `folio->mapping` (on the head): which anon_vma or shmem object the folio
    /// belongs to, as a [`Mapping`] encoded by `Mapping::encode` (0: none).
    mapping: AtomicU64,
    /// Linux: `folio->index` (on the head): the page offset, in its mapping, of the
    /// folio's first page.
    index: AtomicU64,
    /// Linux: `folio->_entire_mapcount` (on the head of a large folio): how many PMDs
    /// map the whole folio. Stored as the count itself.
    entire_mapcount: AtomicI32,
    /// Linux: `folio->_pincount` (on the head of a large folio): FOLL_PIN pins. Small
    /// folios count pins in the refcount instead (`GUP_PIN_COUNTING_BIAS`).
    pincount: AtomicI32,
    /// Linux: `folio->mlock_count` (on the head): how many `VM_LOCKED` mappings
    /// mlocked the folio; PG_mlocked is cleared when it drops to 0.
    mlock_count: AtomicI32,
}

/// What `folio->mapping` names: the anon_vma an anonymous folio was faulted in under,
/// or the shmem object a shared anonymous folio lives in. Both are named by id;
/// [`PhysMem::anon_vma`](super::PhysMem::anon_vma) and
/// [`PhysMem::shmem_objects`](super::PhysMem::shmem_objects) resolve them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mapping {
    /// Linux: `PAGE_MAPPING_ANON` | `anon_vma`.
    Anon(u64),
    /// Linux: `folio->mapping = inode->i_mapping` of the shmem file.
    Shmem(u64),
    /// Linux: `PAGE_MAPPING_KSM` | the KSM `stable_node`: a page KSM merged, mapped
    /// read-only wherever its rmap items say (`PageKsm`).
    Ksm(u64),
}

impl Mapping {
    fn encode(m: Option<Mapping>) -> u64 {
        match m {
            None => 0,
            Some(Mapping::Anon(id)) => id << 2,
            Some(Mapping::Shmem(id)) => (id << 2) | 1,
            Some(Mapping::Ksm(id)) => (id << 2) | 2,
        }
    }

    fn decode(raw: u64) -> Option<Mapping> {
        match (raw >> 2, raw & 3) {
            (0, _) => None,
            (id, 0) => Some(Mapping::Anon(id)),
            (id, 1) => Some(Mapping::Shmem(id)),
            (id, _) => Some(Mapping::Ksm(id)),
        }
    }
}

impl Page {
    /// The page's flags.
    pub fn flags(&self) -> PageFlags {
        PageFlags::from_bits_retain(self.flags.load(Ordering::SeqCst))
    }

    /// Whether all of `flags` are set.
    pub fn test(&self, flags: PageFlags) -> bool {
        self.flags().contains(flags)
    }

    /// Sets `flags`, returning the flags as they were before.
    pub fn set(&self, flags: PageFlags) -> PageFlags {
        PageFlags::from_bits_retain(self.flags.fetch_or(flags.bits(), Ordering::SeqCst))
    }

    /// Clears `flags`, returning the flags as they were before.
    pub fn clear(&self, flags: PageFlags) -> PageFlags {
        PageFlags::from_bits_retain(self.flags.fetch_and(!flags.bits(), Ordering::SeqCst))
    }

    pub(crate) fn reset_flags(&self, flags: PageFlags) {
        self.flags.store(flags.bits(), Ordering::SeqCst);
    }

    /// The raw reference count (Linux: `page_ref_count()`).
    #[doc(alias = "page_ref_count")]
    pub fn refcount(&self) -> i32 {
        self.refcount.load(Ordering::SeqCst)
    }

    pub(crate) fn refcount_atomic(&self) -> &AtomicI32 {
        &self.refcount
    }

    /// How many page-table entries map this page (Linux: `page_mapcount()`).
    #[doc(alias = "page_mapcount")]
    pub fn mapcount(&self) -> i32 {
        self.mapcount.load(Ordering::SeqCst)
    }

    /// Adds `delta` to the mapcount and returns the new value.
    pub(crate) fn mapcount_add(&self, delta: i32) -> i32 {
        self.mapcount.fetch_add(delta, Ordering::SeqCst) + delta
    }

    pub(crate) fn set_refcount(&self, v: i32) {
        self.refcount.store(v, Ordering::SeqCst);
    }

    pub(crate) fn set_mapcount(&self, v: i32) {
        self.mapcount.store(v, Ordering::SeqCst);
    }

    /// For a tail page, its head; for any other page, `None`.
    pub fn compound_head(&self) -> Option<Pfn> {
        self.test(PageFlags::TAIL)
            .then(|| Pfn::new(self.head.load(Ordering::SeqCst)))
    }

    pub(crate) fn set_compound_head(&self, head: Pfn) {
        self.head.store(head.raw(), Ordering::SeqCst);
    }

    /// The order stored in this page: the folio order for a head page, the block order
    /// for the first page of a free buddy block, 0 otherwise.
    pub fn order(&self) -> u32 {
        self.order.load(Ordering::SeqCst)
    }

    pub(crate) fn set_order(&self, order: u32) {
        self.order.store(order, Ordering::SeqCst);
    }
}

impl Page {
    /// The folio's mapping (meaningful on the head page).
    pub fn mapping(&self) -> Option<Mapping> {
        Mapping::decode(self.mapping.load(Ordering::SeqCst))
    }

    /// The folio's index in its mapping (meaningful on the head page).
    pub fn index(&self) -> u64 {
        self.index.load(Ordering::SeqCst)
    }

    /// PMD mappings of the whole folio (head page only).
    ///
    /// Linux: `folio_entire_mapcount()`.
    pub fn entire_mapcount(&self) -> i32 {
        self.entire_mapcount.load(Ordering::SeqCst)
    }

    pub(crate) fn entire_mapcount_add(&self, delta: i32) -> i32 {
        self.entire_mapcount.fetch_add(delta, Ordering::SeqCst) + delta
    }

    /// FOLL_PIN pins of a large folio (head page only).
    ///
    /// Linux: `folio->_pincount`.
    pub fn pincount(&self) -> i32 {
        self.pincount.load(Ordering::SeqCst)
    }

    pub(crate) fn pincount_add(&self, delta: i32) -> i32 {
        self.pincount.fetch_add(delta, Ordering::SeqCst) + delta
    }

    /// Linux: `folio->mlock_count` (meaningful on the head of an mlocked folio).
    pub fn mlock_count(&self) -> i32 {
        self.mlock_count.load(Ordering::SeqCst)
    }

    pub(crate) fn set_mlock_count(&self, v: i32) {
        self.mlock_count.store(v, Ordering::SeqCst);
    }

    pub(crate) fn set_mapping(&self, mapping: Option<Mapping>, index: u64) {
        self.index.store(index, Ordering::SeqCst);
        self.mapping
            .store(Mapping::encode(mapping), Ordering::SeqCst);
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page")
            .field("flags", &self.flags())
            .field("refcount", &self.refcount())
            .field("mapcount", &self.mapcount())
            .field("compound_head", &self.compound_head())
            .field("order", &self.order())
            .finish()
    }
}
