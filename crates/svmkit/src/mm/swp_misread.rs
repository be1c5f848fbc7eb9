//! What the present-PTE accessors (`pte_pfn()`, `pte_young()`, `pte_dirty()`,
//! `pte_write()`, `pte_soft_dirty()`, `pte_uffd_wp()`) return when a walker hands them a
//! swap PTE, as the E1 (5.14 to 6.14) rmap walkers did with device-exclusive entries
//! (spec 4.18, 8 items 12-17).
//!
//! The answer depends on the architecture's swap encoding, so it is computed from the
//! real x86-64 one (Linux: `__swp_entry()` of `arch/x86/include/asm/pgtable_64.h`,
//! L1TF inversion of `pte_pfn()` in `arch/x86/include/asm/pgtable-invert.h`), not from
//! the model's own raw words (`pgtable.rs`, which does not invert the offset): the
//! model's words would hand back the entry's real pfn and hide the flaw. For an
//! entry of offset `o` (the pfn) and type `t`:
//!
//! ```text
//!  word = (!o << 14 >> 5) | t << 59 | swp bits (soft-dirty 1, uffd-wp 2, exclusive 3)
//!  pte_pfn        = (!word & bits 12..51) >> 12 = (o >> 3) mod 2^40   (not present: inverted)
//!  pte_young      = bit 5 = 0   pte_dirty = bit 6 = 0   (bits 0..8 of the offset part are 0)
//!  pte_write      = bit 1 = the swap soft-dirty bit    (_PAGE_SWP_SOFT_DIRTY is _PAGE_RW)
//!  pte_uffd_wp    = bit 10 = !o bit 1                   pte_soft_dirty = bit 11 = !o bit 2
//! ```
//!
//! So on x86-64 a young test of an entry reads "old", as the 6.15 fixes decide on purpose,
//! while every pfn taken from it is the entry's pfn shifted right by three: a frame far
//! below the folio.

use super::pgtable::SwapPte;
use crate::types::Pfn;

/// Linux x86-64: `SWP_TYPE_BITS`.
const SWP_TYPE_BITS: u32 = 5;
/// Linux x86-64: `SWP_OFFSET_SHIFT` (`_PAGE_BIT_PROTNONE + 1 + SWP_TYPE_BITS`).
const SWP_OFFSET_SHIFT: u32 = 14;
/// Linux x86-64: `PTE_PFN_MASK` (bits 12..51).
const PTE_PFN_MASK: u64 = ((1 << 52) - 1) & !((1 << 12) - 1);

/// The x86-64 word of a swap PTE.
///
/// Linux: `swp_entry_to_pte(swp_entry(type, offset))` plus `pte_swp_mksoft_dirty()`,
/// `pte_swp_mkuffd_wp()`, `pte_swp_mkexclusive()`.
pub(crate) const fn x86_64_word(s: SwapPte) -> u64 {
    let mut w = ((!s.offset) << SWP_OFFSET_SHIFT >> SWP_TYPE_BITS)
        | ((s.swp_type as u64) << (64 - SWP_TYPE_BITS));
    if s.soft_dirty {
        w |= 1 << 1;
    }
    if s.uffd_wp {
        w |= 1 << 2;
    }
    if s.exclusive {
        w |= 1 << 3;
    }
    w
}

/// Linux x86-64: `pte_pfn()` of a swap PTE (inverted, since it is not present).
pub(crate) const fn pte_pfn(s: SwapPte) -> Pfn {
    Pfn::new(((!x86_64_word(s)) & PTE_PFN_MASK) >> 12)
}

/// Linux x86-64: `pte_young()` of a swap PTE (`_PAGE_ACCESSED`, bit 5).
pub(crate) const fn pte_young(s: SwapPte) -> bool {
    x86_64_word(s) & (1 << 5) != 0
}

/// Linux x86-64: `pte_dirty()` of a swap PTE (`_PAGE_DIRTY`, bit 6).
pub(crate) const fn pte_dirty(s: SwapPte) -> bool {
    x86_64_word(s) & (1 << 6) != 0
}

/// Linux x86-64: `pte_write()` of a swap PTE (`_PAGE_RW`, bit 1).
pub(crate) const fn pte_write(s: SwapPte) -> bool {
    x86_64_word(s) & (1 << 1) != 0
}

/// Linux x86-64: `pte_soft_dirty()` of a swap PTE (`_PAGE_SOFT_DIRTY`, bit 11).
pub(crate) const fn pte_soft_dirty(s: SwapPte) -> bool {
    x86_64_word(s) & (1 << 11) != 0
}

/// Linux x86-64: `pte_uffd_wp()` of a swap PTE (`_PAGE_UFFD_WP`, bit 10).
pub(crate) const fn pte_uffd_wp(s: SwapPte) -> bool {
    x86_64_word(s) & (1 << 10) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_accessors_of_a_device_exclusive_entry() {
        // derived: from the x86-64 macros quoted in the module docs.
        let e = SwapPte::device_exclusive(Pfn::new(0x1236), true);
        assert_eq!(pte_pfn(e), Pfn::new(0x246));
        assert!(!pte_young(e));
        assert!(!pte_dirty(e));
        assert!(!pte_write(e));
        // 0x1236: offset bits 1 and 2 set, so the inverted bits 10 and 11 read 0.
        assert!(!pte_uffd_wp(e));
        assert!(!pte_soft_dirty(e));
        let e = SwapPte::device_exclusive(Pfn::new(0x1000), true);
        assert!(pte_uffd_wp(e));
        assert!(pte_soft_dirty(e));
        let sd = SwapPte {
            soft_dirty: true,
            ..e
        };
        assert!(pte_write(sd));
        // Round trip through the real macros: the type and offset come back.
        let w = x86_64_word(e);
        assert_eq!(w >> (64 - SWP_TYPE_BITS), e.swp_type as u64);
        assert_eq!(!w << SWP_TYPE_BITS >> SWP_OFFSET_SHIFT, 0x1000);
    }
}
