//! Virtual memory areas and the per-mm tree of them.
//!
//! A [`Vma`] is Linux's `vm_area_struct` reduced to what the model uses: a page-aligned
//! `[start, end)` range and its [`VmFlags`]. The [`VmaTree`] (Linux: the maple tree
//! `mm->mm_mt`) is an ordered map from start address; it lives inside the mm's
//! [`MmapLock`](crate::sync::MmapLock), so reading it needs the mmap lock in read mode
//! and changing it needs write mode.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{OnceLock, Weak};

use bitflags::bitflags;

use super::mm_types::Mm;
use super::pgtable::PteFlags;
use super::rmap::{AnonVma, VmaInfo};
use super::shmem::Shmem;
use crate::sync::Arc;
use crate::types::{PAGE_SHIFT, VirtAddr};

bitflags! {
    /// VMA flags (Linux: `vm_flags_t`, the `VM_*` bits the model uses).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct VmFlags: u64 {
        /// VM_READ.
        const READ = 1 << 0;
        /// VM_WRITE.
        const WRITE = 1 << 1;
        /// VM_EXEC.
        const EXEC = 1 << 2;
        /// VM_SHARED.
        const SHARED = 1 << 3;
        /// VM_MAYREAD: mprotect may add VM_READ.
        const MAYREAD = 1 << 4;
        /// VM_MAYWRITE: mprotect may add VM_WRITE. Set on every private mapping, which is
        /// what makes a private PROT_READ mapping a COW mapping.
        const MAYWRITE = 1 << 5;
        /// VM_MAYEXEC.
        const MAYEXEC = 1 << 6;
        /// VM_MAYSHARE.
        const MAYSHARE = 1 << 7;
        /// VM_LOCKED (0x2000): mlock()ed; pages are faulted in and kept in memory.
        const LOCKED = 1 << 13;
        /// VM_LOCKONFAULT (0x80000): with VM_LOCKED, pages are mlocked as they are
        /// faulted in, not populated up front (`mlock2(MLOCK_ONFAULT)`,
        /// `mlockall(MCL_ONFAULT)`).
        const LOCKONFAULT = 1 << 19;
        /// VM_HUGETLB (0x400000): a `MAP_HUGETLB` mapping backed by 2 MiB hugetlb
        /// folios (`mm/hugetlb.rs`); its pages are never split to PTEs.
        const HUGETLB = 1 << 22;
        /// VM_SOFTDIRTY: soft-dirty tracking is off for this VMA (every page counts as
        /// soft-dirty); set at mmap, cleared by clear_refs.
        const SOFTDIRTY = 1 << 27;
        /// VM_HUGEPAGE: MADV_HUGEPAGE was applied.
        const HUGEPAGE = 1 << 29;
        /// VM_NOHUGEPAGE: MADV_NOHUGEPAGE was applied.
        const NOHUGEPAGE = 1 << 30;
        /// VM_MERGEABLE: MADV_MERGEABLE was applied; KSM may merge its pages.
        const MERGEABLE = 1 << 31;
    }
}

/// The mlock bits of `vm_flags` (Linux: `VM_LOCKED_MASK`).
pub const VM_LOCKED_MASK: VmFlags = VmFlags::LOCKED.union(VmFlags::LOCKONFAULT);

/// The access bits of `vm_flags` (Linux: `VM_ACCESS_FLAGS`).
pub const VM_ACCESS_FLAGS: VmFlags = VmFlags::READ.union(VmFlags::WRITE).union(VmFlags::EXEC);

/// The base PTE bits for VMA flags `flags` (Linux: `vm_get_page_prot()`).
pub(crate) fn page_prot_of(flags: VmFlags) -> PteFlags {
    if !flags.intersects(VM_ACCESS_FLAGS) {
        return PteFlags::PROTNONE;
    }
    let mut f = PteFlags::USER;
    if flags.contains(VmFlags::SHARED | VmFlags::WRITE) {
        f |= PteFlags::WRITE;
    }
    f
}

/// A virtual memory area (Linux: `struct vm_area_struct`).
#[derive(Clone, PartialEq, Eq)]
pub struct Vma {
    start: VirtAddr,
    end: VirtAddr,
    /// The VMA's flags.
    pub flags: VmFlags,
    /// Linux: `vm_pgoff`: the page offset of `start` in the mapping (for private
    /// anonymous memory `start >> PAGE_SHIFT`, for shmem 0 at mmap).
    pgoff: u64,
    /// Linux: `vm_area_struct::anon_vma`, set by the first anonymous fault.
    anon_vma: AnonVmaSlot,
    /// Linux: `vm_file` of a shared anonymous mapping (the shmem object).
    shmem: Option<Arc<Shmem>>,
}

/// A VMA's anon_vma: empty until the first anonymous fault sets it (under the mm's
/// `page_table_lock`, as Linux's `__anon_vma_prepare()`), then fixed. Cloning a VMA
/// (split, fork, the fault path's copy) gives an empty slot a new empty slot, so each
/// piece is set on its own afterwards; a set slot never changes, so clones share it
/// (one reference count, not a new `OnceLock` initialisation per fault).
#[derive(Default)]
struct AnonVmaSlot(Arc<OnceLock<Arc<AnonVma>>>);

impl Clone for AnonVmaSlot {
    fn clone(&self) -> Self {
        if self.0.get().is_some() {
            AnonVmaSlot(Arc::clone(&self.0))
        } else {
            AnonVmaSlot::default()
        }
    }
}

impl PartialEq for AnonVmaSlot {
    fn eq(&self, other: &Self) -> bool {
        match (self.0.get(), other.0.get()) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for AnonVmaSlot {}

impl Vma {
    /// A VMA over `[start, end)`; both must be page-aligned with `start < end` (the
    /// callers validate user input before building one). Private anonymous: its page
    /// offset is `start >> PAGE_SHIFT`, as Linux's `do_mmap()` sets it.
    pub(crate) fn new(start: VirtAddr, end: VirtAddr, flags: VmFlags) -> Self {
        debug_assert!(start < end && start.is_page_aligned() && end.is_page_aligned());
        Vma {
            start,
            end,
            flags,
            pgoff: start.raw() >> PAGE_SHIFT,
            anon_vma: AnonVmaSlot::default(),
            shmem: None,
        }
    }

    /// A shared anonymous VMA mapping `shmem` from page offset 0.
    ///
    /// Linux: `shmem_zero_setup()`.
    pub(crate) fn new_shared(
        start: VirtAddr,
        end: VirtAddr,
        flags: VmFlags,
        shmem: Arc<Shmem>,
    ) -> Self {
        let mut v = Vma::new(start, end, flags);
        v.pgoff = 0;
        v.shmem = Some(shmem);
        v
    }

    /// A copy of this VMA placed at `[to, to + len)` that maps what `from` maps here:
    /// the same flags, anon_vma and shmem object, with the page offset of `from`, so
    /// every folio keeps its index and the rmap finds it at the new address.
    ///
    /// Linux: `copy_vma()` (the new VMA, `vm_pgoff = new_pgoff`).
    pub(crate) fn copy_to(&self, from: VirtAddr, to: VirtAddr, len: u64) -> Vma {
        let mut v = self.clone();
        v.start = to;
        v.end = VirtAddr::new_truncate(to.raw() + len);
        v.pgoff = self.linear_page_index(from);
        v
    }

    /// Linux: `vm_pgoff`.
    pub fn pgoff(&self) -> u64 {
        self.pgoff
    }

    /// The page offset of `addr` in the VMA's mapping.
    ///
    /// Linux: `linear_page_index()`.
    pub fn linear_page_index(&self, addr: VirtAddr) -> u64 {
        self.pgoff + ((addr.raw() - self.start.raw()) >> PAGE_SHIFT)
    }

    /// The anon_vma, once an anonymous fault has set it.
    pub fn anon_vma(&self) -> Option<&Arc<AnonVma>> {
        self.anon_vma.0.get()
    }

    /// Sets the anon_vma if none is set yet; returns the one in place.
    pub(crate) fn anon_vma_get_or_set(&self, av: &Arc<AnonVma>) -> Arc<AnonVma> {
        Arc::clone(self.anon_vma.0.get_or_init(|| Arc::clone(av)))
    }

    /// The shmem object of a shared anonymous VMA.
    pub fn shmem(&self) -> Option<&Arc<Shmem>> {
        self.shmem.as_ref()
    }

    /// What rmap walkers see of this VMA.
    pub fn info(&self) -> VmaInfo {
        VmaInfo {
            start: self.start,
            end: self.end,
            pgoff: self.pgoff,
            flags: self.flags,
        }
    }

    /// First address (Linux: `vm_start`).
    pub fn start(&self) -> VirtAddr {
        self.start
    }

    /// One past the last address (Linux: `vm_end`).
    pub fn end(&self) -> VirtAddr {
        self.end
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end.raw() - self.start.raw()
    }

    /// Always false: a VMA is never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `addr` is inside the VMA.
    pub fn contains(&self, addr: VirtAddr) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Whether any of the access bits is set.
    ///
    /// Linux: `vma_is_accessible()`.
    #[doc(alias = "vma_is_accessible")]
    pub fn is_accessible(&self) -> bool {
        self.flags.intersects(VM_ACCESS_FLAGS)
    }

    /// Private and may become writable: pages are shared copy-on-write at fork.
    ///
    /// Linux: `is_cow_mapping()`.
    pub fn is_cow_mapping(&self) -> bool {
        self.flags & (VmFlags::SHARED | VmFlags::MAYWRITE) == VmFlags::MAYWRITE
    }

    /// The base bits of a PTE in this VMA before any write upgrade (Linux:
    /// `vm_page_prot`, from `vm_get_page_prot()`): private mappings are read-only
    /// until a write fault, shared writable ones writable, PROT_NONE is protnone.
    #[doc(alias = "vm_page_prot")]
    pub fn page_prot(&self) -> PteFlags {
        page_prot_of(self.flags)
    }

    /// Whether soft-dirty tracking is active (clear_refs cleared VM_SOFTDIRTY).
    ///
    /// Linux: `vma_soft_dirty_enabled()`.
    #[doc(alias = "vma_soft_dirty_enabled")]
    pub fn soft_dirty_enabled(&self) -> bool {
        !self.flags.contains(VmFlags::SOFTDIRTY)
    }

    /// Whether two VMAs that touch could be one. VM_SOFTDIRTY does not prevent a merge.
    ///
    /// Linux: `is_mergeable_vma()` (anon_vma compatibility comes with rmap).
    pub(crate) fn can_merge_with(&self, next: &Vma) -> bool {
        let anon_ok = match (self.anon_vma(), next.anon_vma()) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => true,
        };
        let file_ok = match (&self.shmem, &next.shmem) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        // Linux: hugetlb VMAs carry VM_DONTEXPAND (hugetlbfs_file_mmap()), part of
        // VM_SPECIAL, which is_mergeable_vma() refuses.
        !self.flags.contains(VmFlags::HUGETLB)
            && self.end == next.start
            && (self.flags ^ next.flags)
                .difference(VmFlags::SOFTDIRTY)
                .is_empty()
            && anon_ok
            && file_ok
            && self.pgoff + (self.len() >> PAGE_SHIFT) == next.pgoff
    }
}

impl fmt::Debug for Vma {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Vma[{:#x}, {:#x}) {:?}",
            self.start.raw(),
            self.end.raw(),
            self.flags
        )?;
        if let Some(av) = self.anon_vma() {
            write!(f, " anon_vma {}", av.id())?;
        }
        if let Some(s) = &self.shmem {
            write!(f, " shmem {}", s.id())?;
        }
        Ok(())
    }
}

/// The VMAs of one mm, ordered by start address, never overlapping.
///
/// A tree that belongs to an mm keeps the anon_vmas of its VMAs in step: every VMA
/// with an anon_vma is linked there under its current geometry and flags (split,
/// merge and flag changes relink under the anon_vma's write lock), so rmap walkers,
/// which do not take the mmap lock, see each VMA either before or after a change.
/// Removed VMAs stay linked until `unlink_anon_vmas` (munmap and exit call
/// it after the zap, before freeing page tables).
///
/// Linux: the maple tree `mm->mm_mt` with `find_vma()`, `vma_lookup()`,
/// `split_vma()` and `vma_merge()`, plus the anon_vma_chain upkeep of `vma_adjust()`.
#[derive(Default)]
pub struct VmaTree {
    vmas: BTreeMap<VirtAddr, Vma>,
    owner: Option<TreeOwner>,
}

/// The mm a tree belongs to, for linking its VMAs into anon_vmas.
struct TreeOwner {
    id: u64,
    mm: Weak<Mm>,
}

impl VmaTree {
    /// An empty tree that belongs to no mm (its VMAs are never linked for rmap).
    pub fn new() -> Self {
        VmaTree::default()
    }

    /// An empty tree for mm `id`.
    pub(crate) fn for_mm(id: u64, mm: Weak<Mm>) -> Self {
        VmaTree {
            vmas: BTreeMap::new(),
            owner: Some(TreeOwner { id, mm }),
        }
    }

    /// Relinks in `av`: drops the entries starting at `remove`, adds `add`.
    fn relink(&self, av: Option<&Arc<AnonVma>>, remove: &[VirtAddr], add: &[&Vma]) {
        if let (Some(o), Some(av)) = (&self.owner, av) {
            let add: Vec<VmaInfo> = add.iter().map(|v| v.info()).collect();
            av.relink(o.id, &o.mm, remove, &add);
        }
    }

    /// Links a VMA whose anon_vma was just set (by the first anonymous fault).
    ///
    /// Linux: the `anon_vma_chain_link()` of `__anon_vma_prepare()`.
    pub(crate) fn link_anon_vma(&self, vma: &Vma) {
        self.relink(vma.anon_vma(), &[], &[vma]);
    }

    /// Unlinks removed VMAs from their anon_vmas.
    ///
    /// Linux: `unlink_anon_vmas()` (from `free_pgtables()`).
    pub(crate) fn unlink_anon_vmas(&self, removed: &[Vma]) {
        for v in removed {
            self.relink(v.anon_vma(), &[v.start], &[]);
        }
    }

    /// Number of VMAs (Linux: `mm->map_count`).
    #[doc(alias = "map_count")]
    pub fn len(&self) -> usize {
        self.vmas.len()
    }

    /// Whether there are no VMAs.
    pub fn is_empty(&self) -> bool {
        self.vmas.is_empty()
    }

    /// All VMAs in address order.
    pub fn iter(&self) -> impl Iterator<Item = &Vma> {
        self.vmas.values()
    }

    /// The VMA containing `addr`.
    ///
    /// Linux: `vma_lookup()`.
    #[doc(alias = "vma_lookup")]
    pub fn find(&self, addr: VirtAddr) -> Option<&Vma> {
        self.vmas
            .range(..=addr)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.contains(addr))
    }

    /// The first VMA that ends after `addr` (it may start after it).
    ///
    /// Linux: `find_vma()`.
    pub fn find_vma(&self, addr: VirtAddr) -> Option<&Vma> {
        self.find(addr)
            .or_else(|| self.vmas.range(addr..).next().map(|(_, v)| v))
    }

    /// VMAs intersecting `[start, end)`, in order.
    pub fn intersecting(&self, start: VirtAddr, end: VirtAddr) -> impl Iterator<Item = &Vma> {
        let first = self.find(start).map_or(start, |v| v.start);
        self.vmas
            .range(first..end)
            .map(|(_, v)| v)
            .filter(move |v| v.end > start)
    }

    /// Whether `[start, end)` intersects no VMA.
    pub fn is_free(&self, start: VirtAddr, end: VirtAddr) -> bool {
        self.intersecting(start, end).next().is_none()
    }

    /// Whether `[start, end)` is covered by VMAs without holes.
    pub fn covers(&self, start: VirtAddr, end: VirtAddr) -> bool {
        let mut at = start;
        for v in self.intersecting(start, end) {
            if v.start > at {
                return false;
            }
            at = v.end;
        }
        at >= end
    }

    /// Splits the VMA that strictly contains `addr` into `[start, addr)` and
    /// `[addr, end)`. No-op when `addr` is a VMA boundary or unmapped.
    ///
    /// Linux: `split_vma()`.
    #[doc(alias = "split_vma")]
    pub(crate) fn split_at(&mut self, addr: VirtAddr) {
        let Some(v) = self.find(addr).cloned() else {
            return;
        };
        if v.start == addr {
            return;
        }
        let mut low = v.clone();
        low.end = addr;
        let mut high = v.clone();
        high.start = addr;
        high.pgoff = v.linear_page_index(addr);
        self.relink(v.anon_vma(), &[v.start], &[&low, &high]);
        self.vmas.insert(low.start, low);
        self.vmas.insert(high.start, high);
    }

    /// Inserts a VMA; the caller has made room for it.
    pub(crate) fn insert(&mut self, vma: Vma) {
        debug_assert!(self.is_free(vma.start, vma.end));
        self.relink(vma.anon_vma(), &[], &[&vma]);
        self.vmas.insert(vma.start, vma);
    }

    /// Removes and returns the VMAs inside `[start, end)`, splitting the ones that
    /// straddle its edges first. They stay linked in their anon_vmas until
    /// [`unlink_anon_vmas`](Self::unlink_anon_vmas).
    pub(crate) fn remove_range(&mut self, start: VirtAddr, end: VirtAddr) -> Vec<Vma> {
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<VirtAddr> = self.intersecting(start, end).map(|v| v.start).collect();
        keys.into_iter()
            .filter_map(|k| self.vmas.remove(&k))
            .collect()
    }

    /// Gives every VMA inside `[start, end)` (split at the edges) the flags `f(old)`.
    pub(crate) fn update_flags(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        f: impl Fn(VmFlags) -> VmFlags,
    ) {
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<VirtAddr> = self.intersecting(start, end).map(|v| v.start).collect();
        for k in keys {
            let Some(v) = self.vmas.get_mut(&k) else {
                continue;
            };
            v.flags = f(v.flags);
            if let Some(v) = self.vmas.get(&k) {
                self.relink(v.anon_vma(), &[k], &[v]);
            }
        }
    }

    /// Merges compatible neighbours among the VMAs touching `[start, end]`.
    ///
    /// Linux: `vma_merge_new_range()` / `vma_modify()` merging with prev and next.
    pub(crate) fn merge_around(&mut self, start: VirtAddr, end: VirtAddr) {
        let from = self
            .vmas
            .range(..start)
            .next_back()
            .map_or(start, |(k, _)| *k);
        let keys: Vec<VirtAddr> = self.vmas.range(from..=end).map(|(k, _)| *k).collect();
        let mut cur: Option<VirtAddr> = None;
        for k in keys {
            let Some(prev_key) = cur else {
                cur = Some(k);
                continue;
            };
            let mergeable = match (self.vmas.get(&prev_key), self.vmas.get(&k)) {
                (Some(p), Some(n)) => p.can_merge_with(n),
                _ => false,
            };
            if !mergeable {
                cur = Some(k);
                continue;
            }
            let (Some(n), Some(mut p)) = (self.vmas.remove(&k), self.vmas.remove(&prev_key)) else {
                continue;
            };
            p.end = n.end;
            // Linux: vma_merge() ORs VM_SOFTDIRTY into the merged VMA.
            p.flags |= n.flags & VmFlags::SOFTDIRTY;
            // A VMA without anon_vma takes its neighbour's (is_mergeable_anon_vma()).
            if p.anon_vma().is_none()
                && let Some(av) = n.anon_vma()
            {
                p.anon_vma_get_or_set(av);
            }
            self.relink(p.anon_vma(), &[p.start, n.start], &[&p]);
            self.vmas.insert(p.start, p);
        }
    }

    /// The highest gap of `len` bytes that ends at or below `below` and starts at or
    /// above `floor` (Linux: `unmapped_area_topdown()`).
    #[doc(alias = "unmapped_area_topdown")]
    pub(crate) fn gap_top_down(&self, len: u64, floor: u64, below: u64) -> Option<VirtAddr> {
        let mut ceiling = below;
        for v in self.vmas.values().rev() {
            if v.start.raw() >= ceiling {
                continue;
            }
            if v.end.raw() < ceiling && ceiling - v.end.raw() >= len {
                let start = ceiling - len;
                if start >= floor {
                    return VirtAddr::try_new(start).ok();
                }
                return None;
            }
            ceiling = v.start.raw();
        }
        (ceiling >= floor + len).then(|| VirtAddr::try_new(ceiling - len).ok())?
    }
}

impl fmt::Debug for VmaTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.vmas.values()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn va(x: u64) -> VirtAddr {
        VirtAddr::try_new(x).unwrap()
    }

    fn rw() -> VmFlags {
        VmFlags::READ | VmFlags::WRITE | VmFlags::MAYREAD | VmFlags::MAYWRITE
    }

    #[test]
    fn vma_tree_split_merge_and_find() {
        let mut t = VmaTree::new();
        t.insert(Vma::new(va(0x10000), va(0x20000), rw()));
        t.insert(Vma::new(va(0x30000), va(0x40000), rw()));
        assert_eq!(t.find(va(0x1ffff)).unwrap().start(), va(0x10000));
        assert!(t.find(va(0x20000)).is_none());
        assert_eq!(t.find_vma(va(0x20000)).unwrap().start(), va(0x30000));
        assert!(!t.covers(va(0x10000), va(0x40000)));
        assert!(t.covers(va(0x11000), va(0x13000)));
        t.update_flags(va(0x12000), va(0x13000), |f| f - VmFlags::WRITE);
        assert_eq!(t.len(), 4);
        t.update_flags(va(0x12000), va(0x13000), |f| f | VmFlags::WRITE);
        t.merge_around(va(0x12000), va(0x13000));
        assert_eq!(t.len(), 2);
        let removed = t.remove_range(va(0x18000), va(0x38000));
        assert_eq!(removed.len(), 2);
        assert_eq!(
            t.iter()
                .map(|v| (v.start().raw(), v.end().raw()))
                .collect::<Vec<_>>(),
            vec![(0x10000, 0x18000), (0x38000, 0x40000)]
        );
        assert_eq!(t.gap_top_down(0x8000, 0x10000, 0x40000), Some(va(0x30000)));
        assert_eq!(t.gap_top_down(0x30000, 0x10000, 0x40000), None);
        assert_eq!(t.gap_top_down(0x1000, 0x10000, 0x50000), Some(va(0x4f000)));
    }
}
