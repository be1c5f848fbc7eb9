//! Address and frame-number newtypes shared by every layer.
//!
//! Raw integers stay at the edges: an address inside the model is a [`VirtAddr`], a
//! frame is a [`Pfn`]. Both print in hex, the way a kernel engineer reads them.

use std::fmt;

use crate::error::Errno;

/// log2 of the base page size (x86-64: 4 KiB pages).
pub const PAGE_SHIFT: u32 = 12;
/// The base page size in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// 64-bit words per base page.
pub const WORDS_PER_PAGE: usize = (PAGE_SIZE / 8) as usize;
/// The order of a PMD-sized folio (2 MiB with 4 KiB pages).
pub const HPAGE_PMD_ORDER: u32 = 9;
/// One past the highest canonical lower-half address (x86-64, 4-level paging).
pub const USER_VA_LIMIT: u64 = 1 << 47;
/// One past the highest address a user mapping may cover: 128 TiB minus a guard page.
///
/// Linux: `TASK_SIZE_MAX` on x86-64.
#[doc(alias = "TASK_SIZE_MAX")]
pub const TASK_SIZE: u64 = USER_VA_LIMIT - PAGE_SIZE;

/// A physical frame number: the index of a 4 KiB frame in the model's physical memory.
///
/// Linux: `unsigned long pfn`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Pfn(u64);

impl Pfn {
    /// Wraps a raw frame number. Whether the frame exists is checked where it is used.
    pub const fn new(raw: u64) -> Self {
        Pfn(raw)
    }

    /// The raw frame number.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The frame `n` frames after this one, or `None` on overflow.
    pub const fn checked_add(self, n: u64) -> Option<Pfn> {
        match self.0.checked_add(n) {
            Some(v) => Some(Pfn(v)),
            None => None,
        }
    }

    /// The physical address of the first byte of the frame.
    ///
    /// Linux: `PFN_PHYS()`.
    #[doc(alias = "PFN_PHYS")]
    pub const fn phys_addr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }

    /// Whether this frame number is a multiple of `2^order`.
    pub const fn is_aligned(self, order: u32) -> bool {
        order < 64 && self.0 & ((1u64 << order) - 1) == 0
    }
}

impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pfn({:#x})", self.0)
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pfn {:#x}", self.0)
    }
}

/// A user virtual address of a simulated process: the x86-64 lower half, below
/// [`USER_VA_LIMIT`] (so [`TASK_SIZE`] itself is representable, as the end of a range).
///
/// The field is private: every `VirtAddr` is canonical, so page-table index arithmetic
/// never sees a kernel address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct VirtAddr(u64);

impl VirtAddr {
    /// Address zero.
    pub const ZERO: VirtAddr = VirtAddr(0);

    /// A user address, or `EFAULT` if it is not below [`USER_VA_LIMIT`].
    pub const fn try_new(raw: u64) -> Result<Self, Errno> {
        if raw < USER_VA_LIMIT {
            Ok(VirtAddr(raw))
        } else {
            Err(Errno::EFAULT)
        }
    }

    /// The address with the bits above the lower half dropped (for values already
    /// known to be in range, such as computed table spans).
    pub const fn new_truncate(raw: u64) -> Self {
        VirtAddr(raw & (USER_VA_LIMIT - 1))
    }

    /// The raw address.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Rounds down to a page boundary.
    ///
    /// Linux: `PAGE_ALIGN_DOWN()`.
    #[doc(alias = "PAGE_ALIGN_DOWN")]
    pub const fn page_align_down(self) -> Self {
        VirtAddr(self.0 & !(PAGE_SIZE - 1))
    }

    /// Whether the address is on a page boundary.
    ///
    /// Linux: `PAGE_ALIGNED()`.
    #[doc(alias = "PAGE_ALIGNED")]
    pub const fn is_page_aligned(self) -> bool {
        self.0 & (PAGE_SIZE - 1) == 0
    }

    /// The byte offset inside its page.
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }

    /// The address `bytes` further on, or `EFAULT` if that leaves user space.
    pub const fn checked_add(self, bytes: u64) -> Result<Self, Errno> {
        match self.0.checked_add(bytes) {
            Some(v) => VirtAddr::try_new(v),
            None => Err(Errno::EFAULT),
        }
    }
}

impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#x})", self.0)
    }
}

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virt_addr_rejects_kernel_half_and_aligns() {
        assert_eq!(VirtAddr::try_new(USER_VA_LIMIT), Err(Errno::EFAULT));
        assert_eq!(VirtAddr::try_new(TASK_SIZE).unwrap().raw(), TASK_SIZE);
        let a = VirtAddr::try_new(0x1234).unwrap();
        assert_eq!(a.page_align_down().raw(), 0x1000);
        assert_eq!(a.page_offset(), 0x234);
        assert!(!a.is_page_aligned());
        assert_eq!(a.checked_add(u64::MAX), Err(Errno::EFAULT));
        assert_eq!(format!("{a:?}"), "VirtAddr(0x1234)");
    }

    #[test]
    fn pfn_alignment_and_phys() {
        let p = Pfn::new(512);
        assert!(p.is_aligned(9));
        assert!(!Pfn::new(513).is_aligned(1));
        assert_eq!(p.phys_addr(), 512 * PAGE_SIZE);
        assert_eq!(Pfn::new(u64::MAX).checked_add(1), None);
    }
}
