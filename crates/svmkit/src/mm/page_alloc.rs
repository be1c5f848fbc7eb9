//! Physical memory: frames holding real bytes, their metadata, the buddy allocator and
//! the shared zero page.
//!
//! ```text
//!  pfn:   0          1 ..                                    frames-1
//!        [zero page][ buddy-managed frames, carved into aligned blocks of order <= 9 ]
//! ```
//!
//! * Contents are 512 `AtomicU64` words per frame. Byte accesses are read-modify-write
//!   of the containing word, so concurrent writers to *different* bytes of one word
//!   never lose each other's bytes, and an aligned `u64` access is single-copy atomic
//!   as on x86-64.
//! * The allocator is a binary buddy system over orders `0..=MAX_PAGE_ORDER`
//!   (Linux: `__rmqueue_smallest()` / `__free_one_page()`), with free lists kept as
//!   bitmaps of blocks ([`super::free_list`]) so that allocation is deterministic
//!   (lowest frame first): schedules replay exactly.
//! * The zero page (pfn 0) is reserved: never allocated, never freed, and references
//!   to it are not counted (Linux: `is_zero_pfn()` short-circuits refcounting).
//! * Freeing a folio that is still locked or mapped is reported, not executed (Linux:
//!   `bad_page()` leaves the page out of the allocator); [`PhysMem::bad_pages`] lists
//!   the reports for checkers and tests, and [`PhysMem::take_bad_pages`] hands them to
//!   a test that provoked them on purpose, so that later checks judge only what
//!   follows.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bitflags::bitflags;

use super::free_list::FreeList;
use thiserror::Error;

use super::folio::Folio;
use super::page::{FLAGS_CHECK_AT_FREE, Page, PageFlags};
use crate::error::Errno;
use crate::sync::{Arc, Mutex, WaitQueue};
use crate::types::{PAGE_SIZE, Pfn, WORDS_PER_PAGE};

/// The largest allocation order (a 2 MiB block).
///
/// Linux: `MAX_PAGE_ORDER` (10 on x86-64 since 6.8; the model stops at PMD size).
#[doc(alias = "MAX_ORDER")]
pub const MAX_PAGE_ORDER: u32 = 9;
/// Number of distinct orders.
pub const NR_PAGE_ORDERS: usize = MAX_PAGE_ORDER as usize + 1;
/// The most frames a model may have (64 GiB of simulated memory).
const MAX_FRAMES: u64 = 1 << 24;
/// Frame contents are allocated in chunks, each on its first access: one zeroed
/// allocation of the whole memory is refused by Linux's heuristic overcommit once it
/// exceeds the host's RAM (a 64 GiB model on a 24 GiB machine), while untouched chunks
/// cost nothing this way. A chunk is at most this many frames (64 KiB) unless
/// [`MAX_CHUNKS`] needs more.
const MAX_SMALL_CHUNK_FRAMES: usize = 16;
/// A smaller model has this many chunks, each of `frames / 256` frames (at least
/// one): a scenario's 64 frames, built afresh for every explored schedule, touch a
/// handful of frames, and zeroing a whole 64 KiB first chunk cost a schedule 70k of
/// its 320k instructions (cachegrind counts `rep stosb` by the byte; docs/EXPLORING.md
/// has the wall-clock figure).
const SMALL_TABLE_CHUNKS: usize = 256;
/// At most this many chunks (so at least 512 frames, 2 MiB, per chunk at 2^24 frames):
/// the chunk table is built eagerly, and a 64 GiB model keeps it at 768 KiB.
const MAX_CHUNKS: usize = 1 << 15;
/// Frame number of the shared zero page.
const ZERO_PFN: Pfn = Pfn::new(0);

bitflags! {
    /// Allocation flags (Linux: `gfp_t`, the part the model uses).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Gfp: u32 {
        /// Zero the frames before returning them (Linux: `__GFP_ZERO`).
        const ZERO = 1 << 0;
    }
}

/// Why an allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AllocError {
    /// No free block of the requested order or larger.
    #[error("out of memory: no free block of order {order}")]
    OutOfMemory {
        /// The order that was asked for.
        order: u32,
    },
    /// The order is above [`MAX_PAGE_ORDER`].
    #[error("invalid allocation order {order} (max {MAX_PAGE_ORDER})")]
    InvalidOrder {
        /// The order that was asked for.
        order: u32,
    },
}

impl From<AllocError> for Errno {
    fn from(e: AllocError) -> Errno {
        match e {
            AllocError::OutOfMemory { .. } => Errno::ENOMEM,
            AllocError::InvalidOrder { .. } => Errno::EINVAL,
        }
    }
}

/// A consistency violation found in the buddy free lists by [`PhysMem::check_free_lists`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("buddy free lists inconsistent at {pfn} (order {order}): {what}")]
pub struct BuddyError {
    /// First frame of the offending block.
    pub pfn: Pfn,
    /// Its order.
    pub order: u32,
    /// What is wrong.
    pub what: &'static str,
}

/// A page that the model refused to free or use because its state was wrong (Linux:
/// the `bad_page()` report, "BUG: Bad page state").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPage {
    /// The frame.
    pub pfn: Pfn,
    /// Why it was reported.
    pub reason: &'static str,
    /// Flags at the time of the report.
    pub flags: PageFlags,
    /// Reference count at the time of the report.
    pub refcount: i32,
    /// Mapcount at the time of the report.
    pub mapcount: i32,
}

/// How to build a [`PhysMem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysMemConfig {
    /// Number of 4 KiB frames, the zero page included (at least 2, at most 2^24).
    pub frames: u64,
    /// log2 of the number of folio wait queues (Linux: `PAGE_WAIT_TABLE_BITS`, 8).
    /// Waiters on different folios may share a queue, as in Linux.
    pub wait_table_bits: u32,
}

impl PhysMemConfig {
    /// `frames` frames and the default wait table.
    pub const fn with_frames(frames: u64) -> Self {
        PhysMemConfig {
            frames,
            wait_table_bits: 6,
        }
    }
}

impl Default for PhysMemConfig {
    /// 16 MiB: 4096 frames.
    fn default() -> Self {
        PhysMemConfig::with_frames(4096)
    }
}

/// The buddy allocator's free lists (Linux: `struct free_area[]` of a zone).
#[derive(Debug)]
struct FreeArea {
    /// Per order, its free blocks by block number (`pfn >> order`).
    lists: [FreeList; NR_PAGE_ORDERS],
    nr_free: u64,
}

/// The machine's physical memory.
///
/// Linux: `mem_map[]` plus one zone's buddy allocator.
pub struct PhysMem {
    nr_frames: u64,
    /// Frame contents, `1 << chunk_shift` frames per chunk, allocated zeroed on first
    /// access (a never-accessed chunk reads as zeroes either way).
    chunks: Box<[OnceLock<Box<[AtomicU64]>>]>,
    /// log2 of the frames per chunk (see [`MAX_SMALL_CHUNK_FRAMES`],
    /// [`SMALL_TABLE_CHUNKS`] and [`MAX_CHUNKS`]).
    chunk_shift: u32,
    pages: Box<[Page]>,
    /// Linux: `zone->lock`.
    free_area: Mutex<FreeArea>,
    /// First usable frame (everything before is reserved).
    first_usable: u64,
    /// Linux: `folio_wait_table[]`, hashed by frame number.
    pub(super) wait_table: Box<[Arc<WaitQueue>]>,
    wait_table_bits: u32,
    bad: Mutex<Vec<BadPage>>,
    /// The anon_vmas and shmem objects `folio->mapping` can name.
    pub(super) mappings: super::rmap::MappingRegistry,
    /// The THP policy (Linux: `transparent_hugepage/enabled`).
    pub(super) thp: super::huge_memory::ThpSetting,
    /// The swap device and swap cache.
    pub(super) swap: super::swap::Swap,
    /// The devices mirroring mms on this memory, for the checker.
    pub(super) secondary: super::secondary::SecondaryMmuRegistry,
    /// Linux: the `NR_MLOCK` zone counter (meminfo's `Mlocked:`), in pages.
    pub(super) nr_mlock: std::sync::atomic::AtomicI64,
    /// The system's trace record (off by default).
    trace: crate::trace::Tracer,
}

impl PhysMem {
    /// The trace record of the system this memory belongs to.
    #[inline(always)]
    pub fn tracer(&self) -> &crate::trace::Tracer {
        &self.trace
    }

    /// Builds physical memory with `config.frames` zeroed frames; frame 0 becomes the
    /// shared zero page and the rest goes to the buddy allocator.
    ///
    /// Fails with `EINVAL` for fewer than 2 or more than 2^24 frames, or a wait table
    /// of more than 2^12 queues.
    ///
    /// Linux: `free_area_init()` + `memblock_free_all()`.
    pub fn new(config: PhysMemConfig) -> Result<Arc<Self>, Errno> {
        if config.frames < 2 || config.frames > MAX_FRAMES || config.wait_table_bits > 12 {
            return Err(Errno::EINVAL);
        }
        let n = config.frames;
        // Zeroed allocations: the OS hands out zero pages lazily, so untouched frames
        // cost no memory and no time (a frame's words and a free Page are all zero);
        // the contents are allocated per chunk on first access (see SMALL_TABLE_CHUNKS).
        let chunk_frames = ((n as usize) / SMALL_TABLE_CHUNKS)
            .clamp(1, MAX_SMALL_CHUNK_FRAMES)
            .max((n as usize).div_ceil(MAX_CHUNKS))
            .next_power_of_two();
        let chunk_shift = chunk_frames.trailing_zeros();
        let chunks = (0..(n as usize).div_ceil(chunk_frames))
            .map(|_| OnceLock::new())
            .collect();
        let pages = bytemuck::allocation::zeroed_slice_box::<Page>(n as usize);
        let wait_table = (0..1usize << config.wait_table_bits)
            .map(|_| Arc::new(WaitQueue::new()))
            .collect();
        let mem = PhysMem {
            nr_frames: n,
            chunks,
            chunk_shift,
            pages,
            free_area: Mutex::new(FreeArea {
                lists: std::array::from_fn(|o| FreeList::new((n >> o) + 1)),
                nr_free: 0,
            }),
            first_usable: ZERO_PFN.raw() + 1,
            wait_table,
            wait_table_bits: config.wait_table_bits,
            bad: Mutex::new(Vec::new()),
            mappings: super::rmap::MappingRegistry::default(),
            thp: super::huge_memory::ThpSetting::new(),
            swap: super::swap::Swap::default(),
            secondary: super::secondary::SecondaryMmuRegistry::default(),
            nr_mlock: std::sync::atomic::AtomicI64::new(0),
            trace: crate::trace::Tracer::new(),
        };
        let zero = &mem.pages[ZERO_PFN.raw() as usize];
        zero.reset_flags(PageFlags::RESERVED);
        zero.set_refcount(1);
        {
            let mut area = mem.free_area.lock();
            let mut pfn = mem.first_usable;
            while pfn < n {
                let order = (0..=MAX_PAGE_ORDER)
                    .rev()
                    .find(|&o| Pfn::new(pfn).is_aligned(o) && pfn + (1 << o) <= n)
                    .unwrap_or(0);
                mem.insert_free(&mut area, pfn, order);
                pfn += 1 << order;
            }
        }
        Ok(Arc::new(mem))
    }

    /// Total frames, the zero page included.
    pub fn nr_frames(&self) -> u64 {
        self.nr_frames
    }

    /// Frames the allocator manages (all but the zero page).
    pub fn nr_usable_pages(&self) -> u64 {
        self.nr_frames - self.first_usable
    }

    /// Frames currently free in the buddy allocator.
    ///
    /// Linux: `nr_free_pages()`.
    pub fn nr_free_pages(&self) -> u64 {
        self.free_area.lock().nr_free
    }

    /// Number of free blocks of each order (Linux: the columns of `/proc/buddyinfo`).
    pub fn buddyinfo(&self) -> [usize; NR_PAGE_ORDERS] {
        let area = self.free_area.lock();
        std::array::from_fn(|o| area.lists[o].len())
    }

    /// The frame number of the shared zero page.
    ///
    /// Linux: `my_zero_pfn()`.
    #[doc(alias = "my_zero_pfn")]
    pub fn zero_pfn(&self) -> Pfn {
        ZERO_PFN
    }

    /// Whether `pfn` is the shared zero page.
    ///
    /// Linux: `is_zero_pfn()`.
    pub fn is_zero_pfn(&self, pfn: Pfn) -> bool {
        pfn == ZERO_PFN
    }

    /// Whether `pfn` names a frame of this memory.
    ///
    /// Linux: `pfn_valid()`.
    pub fn pfn_valid(&self, pfn: Pfn) -> bool {
        pfn.raw() < self.nr_frames
    }

    /// The metadata of frame `pfn`, or `None` if there is no such frame.
    ///
    /// Linux: `pfn_to_page()`.
    #[doc(alias = "pfn_to_page")]
    pub fn page(&self, pfn: Pfn) -> Option<&Page> {
        self.pages.get(usize::try_from(pfn.raw()).ok()?)
    }

    pub(super) fn page_ok(&self, pfn: Pfn) -> Result<&Page, Errno> {
        self.page(pfn).ok_or(Errno::EINVAL)
    }

    /// Every report made so far (and not yet taken) of a page whose state was wrong
    /// when it was freed or allocated, or of a caller bug such as a stray unlock or a
    /// double unpin, oldest first. The invariant checker fails while this is not
    /// empty.
    pub fn bad_pages(&self) -> Vec<BadPage> {
        self.bad.lock().clone()
    }

    /// Returns the reports [`bad_pages`](Self::bad_pages) lists, oldest first, and
    /// clears them, so that a test that provoked a caller bug on purpose can assert it
    /// was reported and still run the invariant checker afterwards. Reports made later
    /// are recorded as before.
    ///
    /// Taking a report repairs nothing: a stray unlock or a double unpin changed no
    /// state and leaves none to repair, but a folio whose free was refused (still
    /// locked or mapped) stays out of the allocator, and the checker judges that state
    /// on its own.
    ///
    /// Linux has no counterpart: `bad_page()` prints and taints the kernel once and
    /// for all.
    pub fn take_bad_pages(&self) -> Vec<BadPage> {
        std::mem::take(&mut *self.bad.lock())
    }

    pub(super) fn report_bad(&self, pfn: Pfn, reason: &'static str) {
        let (flags, refcount, mapcount) = match self.page(pfn) {
            Some(p) => (p.flags(), p.refcount(), p.mapcount()),
            None => (PageFlags::empty(), 0, 0),
        };
        self.bad.lock().push(BadPage {
            pfn,
            reason,
            flags,
            refcount,
            mapcount,
        });
    }

    pub(super) fn wait_queue(&self, pfn: Pfn) -> &Arc<WaitQueue> {
        // Linux hashes the folio address; a multiplicative hash of the pfn spreads
        // neighbouring folios over the table the same way.
        let h = pfn.raw().wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let idx = if self.wait_table_bits == 0 {
            0
        } else {
            (h >> (64 - self.wait_table_bits)) as usize
        };
        &self.wait_table[idx]
    }

    // ---------------------------------------------------------------- allocation

    /// Allocates a folio of `2^order` frames with one reference.
    ///
    /// Fails with [`AllocError::OutOfMemory`] when no block is free (never panics) and
    /// [`AllocError::InvalidOrder`] above [`MAX_PAGE_ORDER`].
    ///
    /// Linux: `folio_alloc()`.
    pub fn folio_alloc(&self, order: u32, gfp: Gfp) -> Result<Folio, AllocError> {
        if order > MAX_PAGE_ORDER {
            return Err(AllocError::InvalidOrder { order });
        }
        let head = {
            let mut area = self.free_area.lock();
            let from = (order..=MAX_PAGE_ORDER)
                .find(|&o| !area.lists[o as usize].is_empty())
                .ok_or(AllocError::OutOfMemory { order })?;
            let pfn = self.remove_free(&mut area, from, None);
            // Linux: expand(): give back the upper halves until the block fits.
            let mut o = from;
            while o > order {
                o -= 1;
                self.insert_free(&mut area, pfn + (1 << o), o);
            }
            pfn
        };
        let folio = Folio::from_parts(Pfn::new(head), order);
        self.prep_new_folio(folio, gfp);
        Ok(folio)
    }

    /// Linux: `check_new_pages()` + `prep_new_page()` + `prep_compound_page()`.
    fn prep_new_folio(&self, folio: Folio, gfp: Gfp) {
        for pfn in folio.pfns() {
            let page = &self.pages[pfn.raw() as usize];
            if !page.flags().is_empty() || page.refcount() != 0 || page.mapcount() != 0 {
                self.report_bad(pfn, "allocated page had stale state");
            }
            page.set_refcount(0);
            page.set_mapcount(0);
            page.set_order(0);
            page.set_mapping(None, 0);
            page.entire_mapcount_add(-page.entire_mapcount());
            page.pincount_add(-page.pincount());
            if pfn == folio.head() {
                page.reset_flags(if folio.order() > 0 {
                    PageFlags::HEAD
                } else {
                    PageFlags::empty()
                });
                page.set_order(folio.order());
            } else {
                page.reset_flags(PageFlags::TAIL);
                page.set_compound_head(folio.head());
            }
            if gfp.contains(Gfp::ZERO) {
                self.clear_frame(pfn);
            }
        }
        self.pages[folio.head().raw() as usize].set_refcount(1);
    }

    /// Returns a folio whose last reference was dropped to the allocator, after the
    /// free-time checks (Linux: `free_pages_prepare()`, then `__free_one_page()`).
    pub(super) fn free_folio(&self, folio: Folio) {
        let mut bad = false;
        for pfn in folio.pfns() {
            let page = &self.pages[pfn.raw() as usize];
            if page.flags().intersects(FLAGS_CHECK_AT_FREE) {
                self.report_bad(pfn, "freed while locked or reserved");
                bad = true;
            } else if page.mapcount() != 0 || page.entire_mapcount() != 0 {
                self.report_bad(pfn, "freed while still mapped");
                bad = true;
            }
        }
        if bad {
            // Linux leaves a bad page out of the allocator rather than corrupt it.
            return;
        }
        // Linux 6.12: free_pages_prepare() clears a PG_mlocked nobody munlocked
        // (UNEVICTABLE_PGCLEARED) and takes it out of NR_MLOCK.
        self.mlock_clear_at_free(folio);
        for pfn in folio.pfns() {
            let page = &self.pages[pfn.raw() as usize];
            page.reset_flags(PageFlags::empty());
            page.set_order(0);
            page.set_mapping(None, 0);
        }
        let mut area = self.free_area.lock();
        let mut pfn = folio.head().raw();
        let mut order = folio.order();
        while order < MAX_PAGE_ORDER {
            let buddy = pfn ^ (1 << order);
            if buddy < self.first_usable
                || buddy + (1 << order) > self.nr_frames
                || !area.lists[order as usize].contains(buddy >> order)
            {
                break;
            }
            self.remove_free(&mut area, order, Some(buddy));
            pfn = pfn.min(buddy);
            order += 1;
        }
        self.insert_free(&mut area, pfn, order);
    }

    fn insert_free(&self, area: &mut FreeArea, pfn: u64, order: u32) {
        area.lists[order as usize].insert(pfn >> order);
        area.nr_free += 1 << order;
        let page = &self.pages[pfn as usize];
        page.reset_flags(PageFlags::BUDDY);
        page.set_order(order);
    }

    /// Removes `which` (or the lowest block) from the order's list.
    fn remove_free(&self, area: &mut FreeArea, order: u32, which: Option<u64>) -> u64 {
        let list = &mut area.lists[order as usize];
        let pfn = match which {
            Some(p) => {
                list.remove(p >> order);
                p
            }
            None => list.pop_first().unwrap_or_default() << order,
        };
        area.nr_free -= 1 << order;
        let page = &self.pages[pfn as usize];
        page.clear(PageFlags::BUDDY);
        page.set_order(0);
        pfn
    }

    /// Checks the free lists: blocks aligned, inside memory, disjoint, marked
    /// PageBuddy with their order, no two free buddies left unmerged, and the free
    /// count equal to the blocks' sizes.
    pub fn check_free_lists(&self) -> Result<(), BuddyError> {
        let area = self.free_area.lock();
        let mut blocks: Vec<(u64, u32)> = Vec::new();
        for (o, list) in area.lists.iter().enumerate() {
            let o = o as u32;
            for pfn in list.iter().map(|b| b << o) {
                let err = |what| BuddyError {
                    pfn: Pfn::new(pfn),
                    order: o,
                    what,
                };
                if !Pfn::new(pfn).is_aligned(o) {
                    return Err(err("block not aligned to its order"));
                }
                if pfn < self.first_usable || pfn + (1 << o) > self.nr_frames {
                    return Err(err("block outside usable memory"));
                }
                let page = &self.pages[pfn as usize];
                if !page.test(PageFlags::BUDDY) || page.order() != o {
                    return Err(err("block head not marked PageBuddy with its order"));
                }
                if o < MAX_PAGE_ORDER && list.contains((pfn ^ (1 << o)) >> o) {
                    return Err(err("free buddies not merged"));
                }
                blocks.push((pfn, o));
            }
        }
        blocks.sort_unstable();
        let mut total = 0;
        for w in blocks.windows(2) {
            let ((a, ao), (b, _)) = (w[0], w[1]);
            if a + (1 << ao) > b {
                return Err(BuddyError {
                    pfn: Pfn::new(b),
                    order: ao,
                    what: "free blocks overlap",
                });
            }
        }
        for &(_, o) in &blocks {
            total += 1u64 << o;
        }
        if total != area.nr_free {
            return Err(BuddyError {
                pfn: Pfn::new(0),
                order: 0,
                what: "nr_free differs from the blocks on the lists",
            });
        }
        Ok(())
    }

    /// Whether `pfn` lies inside a free buddy block.
    pub fn is_free_frame(&self, pfn: Pfn) -> bool {
        let area = self.free_area.lock();
        (0..=MAX_PAGE_ORDER).any(|o| {
            let start = pfn.raw() & !((1u64 << o) - 1);
            area.lists[o as usize].contains(start >> o)
        })
    }

    // ---------------------------------------------------------------- contents

    /// The `idx`th 64-bit word of frame `pfn`, for page-table entries. Callers pass
    /// frames they allocated as page tables and `idx < 512`.
    #[inline(always)]
    pub(super) fn table_word(&self, pfn: Pfn, idx: usize) -> &AtomicU64 {
        &self.frame(pfn.raw() as usize)[idx]
    }

    /// The 512 words of page-table frame `pfn`, for walks that read a whole table
    /// (one chunk look-up instead of one per entry). Callers pass frames they
    /// allocated as page tables.
    pub(super) fn table_words(&self, pfn: Pfn) -> &[AtomicU64] {
        self.frame(pfn.raw() as usize)
    }

    /// The 512 words of frame `pfn`, its chunk allocated (zeroed) on first access.
    /// Callers have checked `pfn` (a frame never spans two chunks).
    #[inline(always)]
    fn frame(&self, pfn: usize) -> &[AtomicU64] {
        let shift = self.chunk_shift;
        let ci = pfn >> shift;
        // Every page-table read passes here: the allocation stays out of line, so
        // that the hot path builds no closure and spills nothing (cachegrind: about
        // 50 instructions per read with `get_or_init` inline, 15 without).
        let chunk = match self.chunks[ci].get() {
            Some(c) => c,
            None => self.chunk_init(ci),
        };
        let base = (pfn & ((1 << shift) - 1)) * WORDS_PER_PAGE;
        &chunk[base..base + WORDS_PER_PAGE]
    }

    /// Chunk `ci` of the frame contents, allocated zeroed now if no access has yet.
    #[cold]
    #[inline(never)]
    fn chunk_init(&self, ci: usize) -> &[AtomicU64] {
        let shift = self.chunk_shift;
        self.chunks[ci].get_or_init(|| {
            // The last chunk holds only the frames that exist.
            let first = ci << shift;
            let frames = (self.nr_frames as usize - first).min(1 << shift);
            bytemuck::allocation::zeroed_slice_box::<AtomicU64>(frames * WORDS_PER_PAGE)
        })
    }

    /// The word at flat index `i` (`pfn * 512 + word`).
    #[inline]
    fn word(&self, i: usize) -> &AtomicU64 {
        &self.frame(i / WORDS_PER_PAGE)[i % WORDS_PER_PAGE]
    }

    /// Frames that are inside free buddy blocks, as a bitmap indexed by pfn.
    pub(crate) fn free_frame_bitmap(&self) -> Vec<bool> {
        let mut map = vec![false; self.nr_frames as usize];
        let area = self.free_area.lock();
        for (o, list) in area.lists.iter().enumerate() {
            for pfn in list.iter().map(|b| b << o) {
                for p in pfn..pfn + (1 << o) {
                    map[p as usize] = true;
                }
            }
        }
        map
    }

    fn word_index(&self, pfn: Pfn, offset: u64, len: u64) -> Result<usize, Errno> {
        if !self.pfn_valid(pfn) || offset.checked_add(len).is_none_or(|end| end > PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        Ok(pfn.raw() as usize * WORDS_PER_PAGE + (offset / 8) as usize)
    }

    fn writable_word_index(&self, pfn: Pfn, offset: u64, len: u64) -> Result<usize, Errno> {
        if self.is_zero_pfn(pfn) && len > 0 {
            // The zero page must stay zero: writing it is a model bug.
            return Err(Errno::EPERM);
        }
        self.word_index(pfn, offset, len)
    }

    fn u64_index(&self, pfn: Pfn, offset: u64, write: bool) -> Result<usize, Errno> {
        if !offset.is_multiple_of(8) {
            return Err(Errno::EINVAL);
        }
        if write {
            self.writable_word_index(pfn, offset, 8)
        } else {
            self.word_index(pfn, offset, 8)
        }
    }

    /// Reads the aligned `u64` at byte `offset` of frame `pfn` (`EINVAL` if `offset` is
    /// unaligned or outside the page, or the frame does not exist).
    pub fn read_u64(&self, pfn: Pfn, offset: u64) -> Result<u64, Errno> {
        let i = self.u64_index(pfn, offset, false)?;
        Ok(self.word(i).load(Ordering::SeqCst))
    }

    /// Writes the aligned `u64` at byte `offset` of frame `pfn`.
    pub fn write_u64(&self, pfn: Pfn, offset: u64, value: u64) -> Result<(), Errno> {
        let i = self.u64_index(pfn, offset, true)?;
        self.word(i).store(value, Ordering::SeqCst);
        // The frame may be a page table (a stale mapping of a freed one, say).
        crate::sync::mode::model_changed();
        Ok(())
    }

    /// Atomically adds `delta` (wrapping) to the aligned `u64` at byte `offset` and
    /// returns the old value (x86-64 `lock xadd`).
    pub fn fetch_add_u64(&self, pfn: Pfn, offset: u64, delta: u64) -> Result<u64, Errno> {
        let i = self.u64_index(pfn, offset, true)?;
        crate::sync::mode::model_changed();
        Ok(self.word(i).fetch_add(delta, Ordering::SeqCst))
    }

    /// Copies `buf.len()` bytes starting at byte `offset` of frame `pfn` into `buf`.
    pub fn read_bytes(&self, pfn: Pfn, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.word_index(pfn, offset, buf.len() as u64)?;
        let frame = self.frame(pfn.raw() as usize);
        for (k, b) in buf.iter_mut().enumerate() {
            let byte = offset as usize + k;
            let word = frame[byte / 8].load(Ordering::SeqCst);
            *b = word.to_le_bytes()[byte % 8];
        }
        Ok(())
    }

    /// Writes `data` starting at byte `offset` of frame `pfn`. Each touched word is
    /// updated atomically, so bytes of the word that are not written are preserved
    /// even against a concurrent writer.
    pub fn write_bytes(&self, pfn: Pfn, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.writable_word_index(pfn, offset, data.len() as u64)?;
        crate::sync::mode::model_changed();
        let frame = self.frame(pfn.raw() as usize);
        let mut k = 0;
        while k < data.len() {
            let byte = offset as usize + k;
            let (w, first) = (byte / 8, byte % 8);
            let n = (8 - first).min(data.len() - k);
            let chunk = &data[k..k + n];
            let word = &frame[w];
            let mut cur = word.load(Ordering::SeqCst);
            loop {
                let mut bytes = cur.to_le_bytes();
                bytes[first..first + n].copy_from_slice(chunk);
                match word.compare_exchange_weak(
                    cur,
                    u64::from_le_bytes(bytes),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
            k += n;
        }
        Ok(())
    }

    /// Copies frame `src` to frame `dst`, word by word.
    ///
    /// Linux: `copy_highpage()`.
    #[doc(alias = "copy_highpage")]
    pub fn copy_page(&self, dst: Pfn, src: Pfn) -> Result<(), Errno> {
        self.writable_word_index(dst, 0, PAGE_SIZE)?;
        self.word_index(src, 0, PAGE_SIZE)?;
        let (d, s) = (
            self.frame(dst.raw() as usize),
            self.frame(src.raw() as usize),
        );
        // Relaxed: the copy is published by what installs it (a PTE store under the
        // PTL, a lock release), which orders these accesses for every later reader;
        // SeqCst per word would cost a locked instruction each.
        for (d, s) in d.iter().zip(s) {
            d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        crate::sync::mode::model_changed();
        Ok(())
    }

    /// Fills frame `pfn` with zeroes.
    ///
    /// Linux: `clear_highpage()`.
    #[doc(alias = "clear_highpage")]
    pub fn clear_page(&self, pfn: Pfn) -> Result<(), Errno> {
        self.writable_word_index(pfn, 0, PAGE_SIZE)?;
        self.clear_frame(pfn);
        Ok(())
    }

    fn clear_frame(&self, pfn: Pfn) {
        // A chunk never accessed reads as zeroes already: clearing it would only
        // allocate it (every page table is allocated zeroed).
        if self.chunks[pfn.raw() as usize >> self.chunk_shift]
            .get()
            .is_none()
        {
            return;
        }
        // Relaxed for the same reason as in `copy_page`: a fresh frame becomes visible
        // only through a later, ordered publication.
        for w in self.frame(pfn.raw() as usize) {
            w.store(0, Ordering::Relaxed);
        }
        crate::sync::mode::model_changed();
    }
}

impl fmt::Debug for PhysMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhysMem")
            .field("frames", &self.nr_frames)
            .field("free", &self.nr_free_pages())
            .field("buddyinfo", &self.buddyinfo())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn mem(frames: u64) -> Arc<PhysMem> {
        PhysMem::new(PhysMemConfig::with_frames(frames)).unwrap()
    }

    /// The largest model (64 GiB) builds although the host may have less memory:
    /// frame contents are allocated per chunk on first access, and a frame of a chunk
    /// nobody touched reads as zeroes.
    #[test]
    fn max_frames_model_is_lazy() {
        let m = PhysMem::new(PhysMemConfig::with_frames(MAX_FRAMES)).unwrap();
        assert_eq!(m.nr_free_pages(), MAX_FRAMES - 1);
        let last = Pfn::new(MAX_FRAMES - 1);
        assert_eq!(m.read_u64(last, 8).unwrap(), 0);
        m.write_u64(last, 8, 42).unwrap();
        assert_eq!(m.read_u64(last, 8).unwrap(), 42);
        // A neighbouring frame in the same chunk is untouched by that write.
        assert_eq!(m.read_u64(Pfn::new(MAX_FRAMES - 2), 8).unwrap(), 0);
        m.check_free_lists().unwrap();
    }

    #[test]
    fn buddy_config_validation() {
        assert_eq!(
            PhysMem::new(PhysMemConfig::with_frames(1)).err(),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            PhysMem::new(PhysMemConfig::with_frames(MAX_FRAMES + 1)).err(),
            Some(Errno::EINVAL)
        );
        let cfg = PhysMemConfig {
            frames: 16,
            wait_table_bits: 13,
        };
        assert_eq!(PhysMem::new(cfg).err(), Some(Errno::EINVAL));
        let m = mem(2);
        assert_eq!(m.nr_usable_pages(), 1);
        assert_eq!(m.nr_free_pages(), 1);
    }

    #[test]
    fn buddy_initial_carving_covers_all_usable_frames() {
        let m = mem(1024);
        // pfn 0 is the zero page, so [1, 512) is carved into one block of each order
        // 0..=8 and [512, 1024) is one order-9 block.
        assert_eq!(m.buddyinfo(), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(m.nr_free_pages(), 1023);
        m.check_free_lists().unwrap();
        assert!(!m.is_free_frame(m.zero_pfn()));
        assert!(m.is_free_frame(Pfn::new(1)) && m.is_free_frame(Pfn::new(1023)));
    }

    #[test]
    fn buddy_alloc_and_free_at_every_order() {
        let m = mem(4096);
        let initial = m.buddyinfo();
        for order in 0..=MAX_PAGE_ORDER {
            let before = m.nr_free_pages();
            let f = m.folio_alloc(order, Gfp::empty()).unwrap();
            assert_eq!(f.order(), order);
            assert!(f.head().is_aligned(order), "{f:?} not aligned");
            assert_eq!(m.nr_free_pages(), before - (1 << order));
            assert!(f.pfns().all(|p| !m.is_free_frame(p)));
            assert_eq!(m.folio_ref_count(f), 1);
            if order > 0 {
                assert!(m.page(f.head()).unwrap().test(PageFlags::HEAD));
            }
            m.check_free_lists().unwrap();
            m.folio_put(f);
            assert_eq!(m.nr_free_pages(), before);
            assert!(f.pfns().all(|p| m.is_free_frame(p)));
            assert_eq!(m.buddyinfo(), initial, "order {order} did not merge back");
        }
        assert!(m.bad_pages().is_empty());
    }

    #[test]
    fn buddy_split_and_merge_back_to_initial_state() {
        let m = mem(2048);
        let initial = m.buddyinfo();
        // 600 single frames: splits the order-9 blocks.
        let mut folios: Vec<_> = (0..600)
            .map(|_| m.folio_alloc(0, Gfp::empty()).unwrap())
            .collect();
        assert_ne!(m.buddyinfo(), initial);
        m.check_free_lists().unwrap();
        // Free in an interleaved order so merges happen out of sequence.
        let (even, odd): (Vec<_>, Vec<_>) =
            folios.drain(..).enumerate().partition(|(i, _)| i % 2 == 0);
        for (_, f) in odd.into_iter().rev().chain(even) {
            m.folio_put(f);
            m.check_free_lists().unwrap();
        }
        assert_eq!(m.buddyinfo(), initial);
        assert_eq!(m.nr_free_pages(), m.nr_usable_pages());
    }

    #[test]
    fn buddy_exhaustion_returns_the_error() {
        let m = mem(64);
        let mut got = Vec::new();
        loop {
            match m.folio_alloc(0, Gfp::empty()) {
                Ok(f) => got.push(f),
                Err(e) => {
                    assert_eq!(e, AllocError::OutOfMemory { order: 0 });
                    assert_eq!(Errno::from(e), Errno::ENOMEM);
                    break;
                }
            }
        }
        assert_eq!(got.len() as u64, m.nr_usable_pages());
        assert_eq!(m.nr_free_pages(), 0);
        // Fragmentation: free every other frame; 31 pages are free but no order-1 block.
        for f in got.iter().skip(1).step_by(2) {
            m.folio_put(*f);
        }
        assert!(m.nr_free_pages() >= 2);
        assert_eq!(
            m.folio_alloc(1, Gfp::empty()),
            Err(AllocError::OutOfMemory { order: 1 })
        );
        assert_eq!(
            m.folio_alloc(MAX_PAGE_ORDER + 1, Gfp::empty()),
            Err(AllocError::InvalidOrder { order: 10 })
        );
        assert_eq!(
            Errno::from(AllocError::InvalidOrder { order: 10 }),
            Errno::EINVAL
        );
        m.check_free_lists().unwrap();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(u32),
        Free(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop_oneof![5 => 0u32..=2, 2 => 3u32..=6, 1 => 7u32..=MAX_PAGE_ORDER].prop_map(Op::Alloc),
            3 => any::<usize>().prop_map(Op::Free),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The allocator against a set of handed-out frames: no frame is handed out
        /// twice, every block is aligned, counts agree, and freeing everything restores
        /// the initial free lists.
        #[test]
        fn buddy_proptest_against_a_set_model(ops in proptest::collection::vec(op(), 1..200)) {
            let m = mem(2048);
            let initial = m.buddyinfo();
            let mut live: Vec<Folio> = Vec::new();
            let mut handed_out: BTreeSet<u64> = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Alloc(order) => {
                        let free_before = m.nr_free_pages();
                        match m.folio_alloc(order, Gfp::ZERO) {
                            Ok(f) => {
                                prop_assert!(f.head().is_aligned(order));
                                for p in f.pfns() {
                                    prop_assert!(p != m.zero_pfn(), "zero page handed out");
                                    prop_assert!(handed_out.insert(p.raw()), "{p} handed out twice");
                                    prop_assert_eq!(m.read_u64(p, 4088).unwrap(), 0);
                                }
                                // Scribble so a later double hand-out would show stale data.
                                m.write_u64(f.head(), 4088, 0xffff).unwrap();
                                live.push(f);
                            }
                            Err(AllocError::OutOfMemory { .. }) => {
                                // Only legitimate if no block of that order or above is free.
                                let info = m.buddyinfo();
                                prop_assert!(info[order as usize..].iter().all(|&n| n == 0));
                                prop_assert_eq!(m.nr_free_pages(), free_before);
                            }
                            Err(e) => prop_assert!(false, "unexpected {e}"),
                        }
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let f = live.swap_remove(i % live.len());
                        for p in f.pfns() {
                            handed_out.remove(&p.raw());
                        }
                        m.folio_put(f);
                    }
                    Op::Free(_) => {}
                }
                prop_assert_eq!(m.nr_free_pages(), m.nr_usable_pages() - handed_out.len() as u64);
                prop_assert!(m.check_free_lists().is_ok(), "{:?}", m.check_free_lists());
            }
            for f in live.drain(..) {
                m.folio_put(f);
            }
            prop_assert_eq!(m.buddyinfo(), initial);
            prop_assert!(m.bad_pages().is_empty());
        }
    }

    #[test]
    fn frame_contents_bytes_words_and_atomics() {
        let m = mem(16);
        let f = m.folio_alloc(1, Gfp::ZERO).unwrap();
        let p = f.head();
        m.write_bytes(p, 5, b"hello, frame").unwrap();
        let mut buf = [0u8; 12];
        m.read_bytes(p, 5, &mut buf).unwrap();
        assert_eq!(&buf, b"hello, frame");
        // Bytes around the write are untouched.
        let mut around = [0xaau8; 2];
        m.read_bytes(p, 3, &mut around).unwrap();
        assert_eq!(around, [0, 0]);
        m.write_u64(p, 4088, u64::MAX).unwrap();
        assert_eq!(m.fetch_add_u64(p, 4088, 2).unwrap(), u64::MAX);
        assert_eq!(m.read_u64(p, 4088).unwrap(), 1);
        let q = f.page(1).unwrap();
        m.copy_page(q, p).unwrap();
        let mut copy = [0u8; 12];
        m.read_bytes(q, 5, &mut copy).unwrap();
        assert_eq!(&copy, b"hello, frame");
        m.clear_page(q).unwrap();
        assert_eq!(m.read_u64(q, 8).unwrap(), 0);
        m.folio_put(f);
    }

    #[test]
    fn frame_contents_bad_offsets_and_zero_page_writes_are_errors() {
        let m = mem(16);
        let p = m.folio_alloc(0, Gfp::ZERO).unwrap().head();
        assert_eq!(m.read_u64(p, 3), Err(Errno::EINVAL));
        assert_eq!(m.read_u64(p, 4096), Err(Errno::EINVAL));
        assert_eq!(m.write_u64(p, 4100, 1), Err(Errno::EINVAL));
        assert_eq!(m.write_bytes(p, 4090, &[0; 7]), Err(Errno::EINVAL));
        assert_eq!(m.read_bytes(p, u64::MAX, &mut [0; 2]), Err(Errno::EINVAL));
        assert_eq!(m.read_u64(Pfn::new(16), 0), Err(Errno::EINVAL));
        let z = m.zero_pfn();
        assert_eq!(m.write_u64(z, 0, 1), Err(Errno::EPERM));
        assert_eq!(m.write_bytes(z, 0, b"x"), Err(Errno::EPERM));
        assert_eq!(m.fetch_add_u64(z, 0, 1), Err(Errno::EPERM));
        assert_eq!(m.copy_page(z, p), Err(Errno::EPERM));
        assert_eq!(m.clear_page(Pfn::new(99)), Err(Errno::EINVAL));
        assert_eq!(m.read_u64(z, 0), Ok(0));
        // Nothing above changed the frame.
        assert_eq!(m.read_u64(p, 0), Ok(0));
    }
}
