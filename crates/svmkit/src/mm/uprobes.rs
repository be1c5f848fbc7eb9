//! uprobes' page replacement (Linux: `kernel/events/uprobes.c`, the mm part):
//! `uprobe_write_opcode()` writes a breakpoint into a copy of the page and maps the
//! copy in place of the page with `__replace_page()`.
//!
//! The other `FOLL_SPLIT_PMD` user besides device-exclusive conversion (spec 4.11).
//! Its GUP restores a device-exclusive entry first, but a conversion can come
//! between that GUP and `__replace_page()`'s folio lock, and its
//! `page_vma_mapped_walk()` then finds the entry:
//! * 5.14 to 6.14 (spec 8 item 10): it treats the entry as a present PTE
//!   (`pte_pfn()` of a swap PTE), maps the new page over it, and removes the old
//!   page's rmap, which 5.14's conversion had already removed: the mapcount goes
//!   below zero (a bad page the checker reports).
//! * 6.15 (fixes v2 08/17) and the Debian 6.12 tree: it gives up on a non-present
//!   PTE and the caller retries GUP, which restores the entry.
//!
//! Deliberate differences (docs/ARCHITECTURE.md): Linux places uprobes in
//! file-backed executable mappings and registers them under the mmap lock held for
//! write; the model has no files, so it replaces a page of a private anonymous
//! mapping, under the mmap lock held for read, which is what lets a conversion
//! (which needs it for read) come between the GUP and the folio lock as spec 8 item
//! 10 describes.

use std::ops::ControlFlow;

use super::mm_types::MmUser;
use super::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange};
use super::page::PageFlags;
use super::page_alloc::Gfp;
use super::pgtable::{PresentPte, Pte, PteFlags};
use super::rmap::PvmwHit;
use super::{GupFlags, VmFlags};
use crate::error::Errno;
use crate::types::{PAGE_SHIFT, PAGE_SIZE, VirtAddr};

/// What one `__replace_page()` attempt did.
enum Replace {
    Done,
    /// Linux: `-EAGAIN`: the PTE was not the page GUP returned (or, where the era
    /// says so, not present): GUP again.
    Again,
}

impl MmUser {
    /// Writes `value` at `addr` (8-byte aligned) the way uprobes installs a
    /// breakpoint: GUP the page (restoring a device-exclusive entry), copy it into a
    /// new page with `value` written, and map the copy read-only in its place
    /// (`Clear` notifier range over the page), dropping the old page's mapping. A
    /// racing change of the PTE makes it start over from GUP (6.15 also for a
    /// non-present PTE, see the module docs). Returns the new page's frame.
    ///
    /// `EINVAL` for an unaligned `addr` or a shared mapping (uprobes needs a private
    /// copy), `EFAULT` where nothing is mapped or the VMA cannot be read, `ENOMEM`
    /// when no page can be allocated.
    ///
    /// Linux: `uprobe_write_opcode()` → `__replace_page()`.
    pub fn uprobe_write_opcode(&self, addr: u64, value: u64) -> Result<crate::Pfn, Errno> {
        if !addr.is_multiple_of(8) {
            return Err(Errno::EINVAL);
        }
        let page_addr = addr & !(PAGE_SIZE - 1);
        let va = VirtAddr::try_new(page_addr).map_err(|_| Errno::EFAULT)?;
        let mem = self.mem();
        loop {
            let mut guard = self.mmap_read_lock();
            // Deviation (docs/ARCHITECTURE.md 46): uprobes replace 4 KiB pages, which
            // a hugetlb mapping does not have (Linux's probed text is never hugetlb).
            if guard.find(va).is_some_and(|v| v.is_hugetlb()) {
                return Err(Errno::EINVAL);
            }
            let (old_page, vma) =
                self.get_user_page(&mut guard, page_addr, GupFlags::GET | GupFlags::SPLIT_PMD)?;
            let put_old = || mem.put_page(old_page);
            if vma.flags.contains(VmFlags::SHARED) {
                put_old();
                return Err(Errno::EINVAL);
            }
            // Linux: the opcode is checked and the new page prepared between GUP and
            // the folio lock; a conversion may come in between.
            crate::sync::yield_now();
            let new = match mem.folio_alloc(0, Gfp::empty()) {
                Ok(f) => f,
                Err(_) => {
                    put_old();
                    return Err(Errno::ENOMEM);
                }
            };
            let written = mem
                .copy_page(new.head(), old_page)
                .and_then(|()| mem.write_u64(new.head(), addr % PAGE_SIZE, value));
            if let Err(e) = written {
                mem.folio_put(new);
                put_old();
                return Err(e);
            }
            let r = self.replace_page(&vma, va, old_page, new);
            mem.folio_put(new); // ours; the mapping holds its own
            put_old();
            drop(guard);
            match r {
                Ok(Replace::Done) => return Ok(new.head()),
                Ok(Replace::Again) => crate::sync::yield_now(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Maps `new` at `addr` in place of `old_page`, if the walk finds `old_page`
    /// mapped there.
    ///
    /// Linux: `__replace_page()`.
    fn replace_page(
        &self,
        vma: &super::Vma,
        addr: VirtAddr,
        old_page: crate::Pfn,
        new: super::Folio,
    ) -> Result<Replace, Errno> {
        let mem = self.mem();
        let old = mem.page_folio(old_page)?;
        if mem.is_zero_pfn(old_page) || !mem.folio_test(old, PageFlags::ANON) {
            // The zero page or a shmem page: nothing of the model maps those here
            // (private anonymous VMAs only), so only a racing remap gets here.
            return Ok(Replace::Again);
        }
        let Some(anon) = vma.anon_vma().cloned() else {
            return Ok(Replace::Again);
        };
        let range = MmuNotifierRange::new(
            self,
            MmuNotifierEvent::Clear,
            addr.raw(),
            addr.raw() + PAGE_SIZE,
        );
        let lock = mem.folio_lock(old);
        let range = range.invalidate_range_start();
        let retries = self.profile().replace_page_retries_nonpresent;
        let first = VirtAddr::new_truncate(
            addr.raw() - ((old_page.raw() - old.head().raw()) << PAGE_SHIFT),
        );
        let mut outcome = Replace::Again;
        let _ = self.page_vma_mapped_walk(old, &vma.info(), first, |hit| {
            let PvmwHit::Pte { ptl, addr: at, pte } = hit else {
                return ControlFlow::Continue(());
            };
            if at != addr {
                return ControlFlow::Continue(());
            }
            if !matches!(pte, Pte::Present(_)) && retries {
                // 6.15: "Handle PFN swap PTES, such as device-exclusive ones, that
                // actually map pages: simply trigger GUP again to fix it up."
                return ControlFlow::Break(());
            }
            // 5.14: a device-exclusive entry is taken for a present PTE here
            // (pte_pfn() of a swap PTE only feeds a cache flush on x86).
            mem.folio_get(new);
            mem.folio_add_new_anon_rmap(new, &anon, vma.linear_page_index(addr));
            mem.mlock_vma_folio(new, vma.flags);
            ptl.clear(at);
            let pte = PresentPte::new(new.head(), vma.page_prot() | PteFlags::ACCESSED);
            ptl.set(at, Pte::Present(pte));
            // The old page's mapping goes: its rmap (already gone for a 5.14 entry:
            // the mapcount underflows) and the reference the PTE or entry held.
            mem.folio_remove_rmap_pte(old_page);
            mem.munlock_vma_folio(old, vma.flags);
            mem.folio_put(old);
            outcome = Replace::Done;
            ControlFlow::Break(())
        });
        range.end();
        drop(lock);
        Ok(outcome)
    }
}
