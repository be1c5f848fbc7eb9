//! Page-table entries: raw x86-64 words at the edge, enums everywhere else.
//!
//! Four levels (PGD → PUD → PMD → PTE), 512 entries of 8 bytes per table, each table a
//! frame of [`PhysMem`](super::PhysMem). Only [`Pte::decode`]/[`Pte::encode`] (and the
//! PMD and upper-level counterparts) see bits; the rest of the model matches on
//! [`Pte`], [`Pmd`] and [`UpperEntry`].
//!
//! Layout (x86-64 bit positions for present entries):
//!
//! ```text
//!  63   62..52  51..12  11  10  9   8    7   6 5   4 3  2  1  0
//!  NX   -       pfn     SD  UW  SP  PN   PS  D A   - -  U  W  P
//!  SD soft-dirty, UW uffd-wp, SP special (zero page), PN protnone (P clear,
//!  still "present" for the mm: PROT_NONE and NUMA hinting), PS huge (PMD level)
//! ```
//!
//! Non-present, non-none entries are *swap-type* entries (Linux: `swp_entry_t` stored
//! in a PTE): a 5-bit type in bits 58..=62 and a 46-bit offset (a swap slot, or a pfn
//! for migration and device entries) in bits 12..=57, with the PTE-level swap bits
//! soft-dirty (bit 1), uffd-wp (bit 2) and exclusive (bit 3) as on x86-64, and bit 4
//! always set so that no swap entry reads as none. x86-64 inverts the offset instead
//! (L1TF mitigation); the model does not, as nothing depends on it.

use std::fmt;

use bitflags::bitflags;

use crate::types::{PAGE_SHIFT, Pfn, VirtAddr};

/// Entries per table at every level.
pub const PTRS_PER_TABLE: usize = 512;
/// Bytes mapped by one PTE table (one PMD entry): 2 MiB.
pub const PMD_SIZE: u64 = 1 << PMD_SHIFT;
/// Bytes mapped by one PMD table (one PUD entry): 1 GiB.
pub const PUD_SIZE: u64 = 1 << PUD_SHIFT;
/// Bytes mapped by one PUD table (one PGD entry): 512 GiB.
pub const PGDIR_SIZE: u64 = 1 << PGDIR_SHIFT;
/// log2 of [`PMD_SIZE`].
pub const PMD_SHIFT: u32 = 21;
/// log2 of [`PUD_SIZE`].
pub const PUD_SHIFT: u32 = 30;
/// log2 of [`PGDIR_SIZE`].
pub const PGDIR_SHIFT: u32 = 39;

const P: u64 = 1 << 0;
const W: u64 = 1 << 1;
const U: u64 = 1 << 2;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const PROTNONE: u64 = 1 << 8;
const SPECIAL: u64 = 1 << 9;
const UFFD_WP: u64 = 1 << 10;
const SOFT_DIRTY: u64 = 1 << 11;
/// Hardware/software bit of a present PTE and the flag it decodes to.
const PRESENT_BITS: [(u64, PteFlags); 7] = [
    (W, PteFlags::WRITE),
    (U, PteFlags::USER),
    (A, PteFlags::ACCESSED),
    (D, PteFlags::DIRTY),
    (SPECIAL, PteFlags::SPECIAL),
    (UFFD_WP, PteFlags::UFFD_WP),
    (SOFT_DIRTY, PteFlags::SOFT_DIRTY),
];
const PFN_MASK: u64 = ((1 << 52) - 1) & !((1 << PAGE_SHIFT) - 1);
const SWP_SOFT_DIRTY: u64 = 1 << 1;
const SWP_UFFD_WP: u64 = 1 << 2;
const SWP_EXCLUSIVE: u64 = 1 << 3;
/// Set in every swap-type entry so that type 0, offset 0 is not `pte_none` (x86-64
/// gets the same effect from its inverted offset; the model uses the unused PCD bit).
const SWP_MARKER: u64 = 1 << 4;
const SWP_TYPE_SHIFT: u32 = 58;
const SWP_TYPE_MASK: u64 = 0x1f;
const SWP_OFFSET_MASK: u64 = (1 << 46) - 1;

/// Table index of `addr` at the PGD level.
pub const fn pgd_index(addr: VirtAddr) -> usize {
    ((addr.raw() >> PGDIR_SHIFT) & 511) as usize
}
/// Table index of `addr` at the PUD level.
pub const fn pud_index(addr: VirtAddr) -> usize {
    ((addr.raw() >> PUD_SHIFT) & 511) as usize
}
/// Table index of `addr` at the PMD level.
pub const fn pmd_index(addr: VirtAddr) -> usize {
    ((addr.raw() >> PMD_SHIFT) & 511) as usize
}
/// Table index of `addr` at the PTE level.
pub const fn pte_index(addr: VirtAddr) -> usize {
    ((addr.raw() >> PAGE_SHIFT) & 511) as usize
}

bitflags! {
    /// The software view of a present PTE's bits (besides the pfn).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct PteFlags: u32 {
        /// Writable (`_PAGE_RW`).
        const WRITE = 1 << 0;
        /// User-accessible (`_PAGE_USER`); always set on user mappings.
        const USER = 1 << 1;
        /// Accessed (`_PAGE_ACCESSED`), set by the CPU on any access.
        const ACCESSED = 1 << 2;
        /// Dirty (`_PAGE_DIRTY`), set by the CPU on a write.
        const DIRTY = 1 << 3;
        /// Special mapping without a refcounted page (`_PAGE_SPECIAL`): the zero page.
        const SPECIAL = 1 << 4;
        /// userfaultfd write-protected (`_PAGE_UFFD_WP`).
        const UFFD_WP = 1 << 5;
        /// Soft-dirty (`_PAGE_SOFT_DIRTY`).
        const SOFT_DIRTY = 1 << 6;
        /// PROT_NONE: present to the mm, not to the hardware (`_PAGE_PROTNONE`).
        const PROTNONE = 1 << 7;
    }
}

/// A present mapping: a frame and its permission and status bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PresentPte {
    /// The mapped frame.
    pub pfn: Pfn,
    /// Permission and status bits.
    pub flags: PteFlags,
}

impl PresentPte {
    /// A mapping of `pfn` with `flags`.
    pub const fn new(pfn: Pfn, flags: PteFlags) -> Self {
        PresentPte { pfn, flags }
    }

    /// Linux: `pte_write()`.
    #[doc(alias = "pte_write")]
    pub const fn is_write(self) -> bool {
        self.flags.contains(PteFlags::WRITE)
    }

    /// Linux: `pte_dirty()`.
    #[doc(alias = "pte_dirty")]
    pub const fn is_dirty(self) -> bool {
        self.flags.contains(PteFlags::DIRTY)
    }

    /// Linux: `pte_young()`.
    #[doc(alias = "pte_young")]
    pub const fn is_young(self) -> bool {
        self.flags.contains(PteFlags::ACCESSED)
    }

    /// Linux: `pte_special()`.
    #[doc(alias = "pte_special")]
    pub const fn is_special(self) -> bool {
        self.flags.contains(PteFlags::SPECIAL)
    }

    /// Linux: `pte_protnone()`.
    #[doc(alias = "pte_protnone")]
    pub const fn is_protnone(self) -> bool {
        self.flags.contains(PteFlags::PROTNONE)
    }

    /// Marks the PTE dirty the way software does on x86-64, which sets the soft-dirty
    /// bit too (only the CPU's own dirty-bit update leaves soft-dirty alone).
    ///
    /// Linux: `pte_mkdirty()`.
    #[doc(alias = "pte_mkdirty")]
    pub const fn mkdirty(self) -> Self {
        self.with(PteFlags::DIRTY.union(PteFlags::SOFT_DIRTY))
    }

    /// The same mapping with `f` added.
    pub const fn with(self, f: PteFlags) -> Self {
        PresentPte {
            pfn: self.pfn,
            flags: self.flags.union(f),
        }
    }

    /// The same mapping with `f` removed.
    pub const fn without(self, f: PteFlags) -> Self {
        PresentPte {
            pfn: self.pfn,
            flags: self.flags.difference(f),
        }
    }
}

impl fmt::Debug for PresentPte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {:?}", self.pfn, self.flags)
    }
}

/// A swap-type entry in a non-present PTE (Linux: `swp_entry_t` plus the PTE-level
/// swap bits; from 6.19 `softleaf_t`, whose helpers rename those for non-swap entries
/// and change nothing they do, spec 10.1). Later layers give
/// the types meaning (swap, migration, device-exclusive).
#[doc(alias = "swp_entry_t")]
#[doc(alias = "softleaf_t")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SwapPte {
    /// The swap type (Linux: `swp_type()`), 0..32.
    pub swp_type: u8,
    /// The offset (Linux: `swp_offset()`): a swap slot or a pfn.
    pub offset: u64,
    /// `pte_swp_soft_dirty()`.
    pub soft_dirty: bool,
    /// `pte_swp_uffd_wp()`.
    pub uffd_wp: bool,
    /// `pte_swp_exclusive()`.
    pub exclusive: bool,
}

impl fmt::Debug for SwapPte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "swp(type {}, off {:#x}", self.swp_type, self.offset)?;
        if self.soft_dirty {
            f.write_str(", sd")?;
        }
        if self.uffd_wp {
            f.write_str(", uffd-wp")?;
        }
        if self.exclusive {
            f.write_str(", excl")?;
        }
        f.write_str(")")
    }
}

/// The swap types of non-swap ("special") entries, above the real swap files, in
/// Linux's order for x86-64 with device-private memory, migration, memory failure and
/// PTE markers (Linux: `include/linux/swap.h`, the 5.14 layout with four device types;
/// 6.15 keeps only the first exclusive type, as `SWP_DEVICE_EXCLUSIVE`).
pub mod swp_type {
    /// Linux: `MAX_SWAPFILES` (32 minus the special types).
    pub const MAX_SWAPFILES: u8 = 23;
    /// Linux: `SWP_HWPOISON`.
    pub const SWP_HWPOISON: u8 = MAX_SWAPFILES;
    /// Linux: `SWP_MIGRATION_READ`.
    pub const SWP_MIGRATION_READ: u8 = MAX_SWAPFILES + 1;
    /// Linux: `SWP_MIGRATION_READ_EXCLUSIVE`.
    pub const SWP_MIGRATION_READ_EXCLUSIVE: u8 = MAX_SWAPFILES + 2;
    /// Linux: `SWP_MIGRATION_WRITE`.
    pub const SWP_MIGRATION_WRITE: u8 = MAX_SWAPFILES + 3;
    /// Linux: `SWP_DEVICE_WRITE` (device-private).
    pub const SWP_DEVICE_WRITE: u8 = MAX_SWAPFILES + 4;
    /// Linux: `SWP_DEVICE_READ` (device-private).
    pub const SWP_DEVICE_READ: u8 = MAX_SWAPFILES + 5;
    /// Linux 5.14: `SWP_DEVICE_EXCLUSIVE_WRITE`; 6.15: `SWP_DEVICE_EXCLUSIVE`, the only
    /// device-exclusive type.
    pub const SWP_DEVICE_EXCLUSIVE_WRITE: u8 = MAX_SWAPFILES + 6;
    /// Linux 6.15: `SWP_DEVICE_EXCLUSIVE` (6.19: `SOFTLEAF_DEVICE_EXCLUSIVE`).
    #[doc(alias = "SOFTLEAF_DEVICE_EXCLUSIVE")]
    pub const SWP_DEVICE_EXCLUSIVE: u8 = SWP_DEVICE_EXCLUSIVE_WRITE;
    /// Linux 5.14: `SWP_DEVICE_EXCLUSIVE_READ` (gone in 6.15).
    pub const SWP_DEVICE_EXCLUSIVE_READ: u8 = MAX_SWAPFILES + 7;
    /// Linux: `SWP_PTE_MARKER`.
    pub const SWP_PTE_MARKER: u8 = MAX_SWAPFILES + 8;
}

impl SwapPte {
    /// A device-exclusive entry for `pfn` (6.15's single type, 5.14's writable one when
    /// `writable`, else 5.14's readable one), with no PTE-level bits.
    ///
    /// Linux: `make_device_exclusive_entry()`, `make_writable_device_exclusive_entry()`,
    /// `make_readable_device_exclusive_entry()`.
    pub const fn device_exclusive(pfn: Pfn, writable: bool) -> SwapPte {
        SwapPte {
            swp_type: if writable {
                swp_type::SWP_DEVICE_EXCLUSIVE_WRITE
            } else {
                swp_type::SWP_DEVICE_EXCLUSIVE_READ
            },
            offset: pfn.raw(),
            soft_dirty: false,
            uffd_wp: false,
            exclusive: false,
        }
    }

    /// Linux: `is_device_exclusive_entry()` (6.19: `softleaf_is_device_exclusive()`).
    #[doc(alias = "is_device_exclusive_entry")]
    #[doc(alias = "softleaf_is_device_exclusive")]
    pub const fn is_device_exclusive(&self) -> bool {
        self.swp_type == swp_type::SWP_DEVICE_EXCLUSIVE_WRITE
            || self.swp_type == swp_type::SWP_DEVICE_EXCLUSIVE_READ
    }

    /// Linux: `is_writable_device_exclusive_entry()` (5.14; always true for 6.15's type).
    pub const fn is_writable_device_exclusive(&self) -> bool {
        self.swp_type == swp_type::SWP_DEVICE_EXCLUSIVE_WRITE
    }

    /// The frame of an entry that names one (device-exclusive, device-private,
    /// migration, hwpoison).
    ///
    /// Linux: `is_pfn_swap_entry()` + `swp_offset_pfn()` (6.19: `softleaf_has_pfn()` +
    /// `softleaf_to_pfn()`).
    #[doc(alias = "swp_offset_pfn")]
    #[doc(alias = "softleaf_to_pfn")]
    #[doc(alias = "softleaf_has_pfn")]
    pub const fn pfn(&self) -> Option<Pfn> {
        if self.swp_type >= swp_type::SWP_HWPOISON && self.swp_type < swp_type::SWP_PTE_MARKER {
            Some(Pfn::new(self.offset))
        } else {
            None
        }
    }
}

/// A PTE, decoded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Pte {
    /// Nothing mapped (Linux: `pte_none()`).
    #[default]
    None,
    /// A present mapping (Linux: `pte_present()`, protnone included).
    Present(PresentPte),
    /// A swap-type entry (Linux: `is_swap_pte()`).
    Swap(SwapPte),
}

impl Pte {
    /// Decodes a raw PTE word.
    pub const fn decode(raw: u64) -> Pte {
        if raw == 0 {
            return Pte::None;
        }
        if raw & (P | PROTNONE) != 0 {
            let mut flags = PteFlags::empty();
            let bits = PRESENT_BITS;
            let mut i = 0;
            while i < bits.len() {
                if raw & bits[i].0 != 0 {
                    flags = flags.union(bits[i].1);
                }
                i += 1;
            }
            if raw & P == 0 {
                flags = flags.union(PteFlags::PROTNONE);
            }
            return Pte::Present(PresentPte {
                pfn: Pfn::new((raw & PFN_MASK) >> PAGE_SHIFT),
                flags,
            });
        }
        Pte::Swap(SwapPte {
            swp_type: ((raw >> SWP_TYPE_SHIFT) & SWP_TYPE_MASK) as u8,
            offset: (raw >> PAGE_SHIFT) & SWP_OFFSET_MASK,
            soft_dirty: raw & SWP_SOFT_DIRTY != 0,
            uffd_wp: raw & SWP_UFFD_WP != 0,
            exclusive: raw & SWP_EXCLUSIVE != 0,
        })
    }

    /// Encodes to a raw PTE word.
    pub const fn encode(self) -> u64 {
        match self {
            Pte::None => 0,
            Pte::Present(p) => {
                let f = p.flags;
                let mut raw = (p.pfn.raw() << PAGE_SHIFT) & PFN_MASK;
                raw |= if f.contains(PteFlags::PROTNONE) {
                    PROTNONE
                } else {
                    P
                };
                let bits = PRESENT_BITS;
                let mut i = 0;
                while i < bits.len() {
                    if f.contains(bits[i].1) {
                        raw |= bits[i].0;
                    }
                    i += 1;
                }
                raw
            }
            Pte::Swap(s) => {
                let mut raw = ((s.swp_type as u64 & SWP_TYPE_MASK) << SWP_TYPE_SHIFT)
                    | ((s.offset & SWP_OFFSET_MASK) << PAGE_SHIFT);
                if s.soft_dirty {
                    raw |= SWP_SOFT_DIRTY;
                }
                if s.uffd_wp {
                    raw |= SWP_UFFD_WP;
                }
                if s.exclusive {
                    raw |= SWP_EXCLUSIVE;
                }
                raw | SWP_MARKER
            }
        }
    }

    /// Linux: `pte_none()`.
    #[doc(alias = "pte_none")]
    pub const fn is_none(self) -> bool {
        matches!(self, Pte::None)
    }

    /// The present mapping, if any.
    pub const fn present(self) -> Option<PresentPte> {
        match self {
            Pte::Present(p) => Some(p),
            _ => None,
        }
    }
}

/// A PMD entry, decoded. Huge (PMD-mapped THP) entries come with the THP layer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Pmd {
    /// No PTE table.
    #[default]
    None,
    /// Points to a PTE table.
    Table(Pfn),
    /// A 2 MiB mapping (PSE set): a PMD-mapped THP.
    Huge(PresentPte),
}

const TABLE_BITS: u64 = P | W | U | A | D;

impl Pmd {
    /// Decodes a raw PMD word.
    pub const fn decode(raw: u64) -> Pmd {
        if raw == 0 {
            Pmd::None
        } else if raw & PS != 0 {
            match Pte::decode(raw & !PS) {
                Pte::Present(p) => Pmd::Huge(p),
                _ => Pmd::None,
            }
        } else {
            Pmd::Table(Pfn::new((raw & PFN_MASK) >> PAGE_SHIFT))
        }
    }

    /// Encodes to a raw PMD word.
    pub const fn encode(self) -> u64 {
        match self {
            Pmd::None => 0,
            Pmd::Table(pfn) => ((pfn.raw() << PAGE_SHIFT) & PFN_MASK) | TABLE_BITS,
            Pmd::Huge(p) => Pte::Present(p).encode() | PS,
        }
    }
}

/// A PGD or PUD entry, decoded: the model has no 512 GiB or 1 GiB mappings.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum UpperEntry {
    /// No next-level table.
    #[default]
    None,
    /// Points to the next-level table.
    Table(Pfn),
}

impl UpperEntry {
    /// Decodes a raw PGD/PUD word.
    pub const fn decode(raw: u64) -> UpperEntry {
        if raw & P == 0 {
            UpperEntry::None
        } else {
            UpperEntry::Table(Pfn::new((raw & PFN_MASK) >> PAGE_SHIFT))
        }
    }

    /// Encodes to a raw PGD/PUD word.
    pub const fn encode(self) -> u64 {
        match self {
            UpperEntry::None => 0,
            UpperEntry::Table(pfn) => ((pfn.raw() << PAGE_SHIFT) & PFN_MASK) | TABLE_BITS,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn pte_encoding_matches_x86_64_bit_positions() {
        let p = PresentPte::new(
            Pfn::new(0x1234),
            PteFlags::WRITE | PteFlags::USER | PteFlags::DIRTY | PteFlags::ACCESSED,
        );
        assert_eq!(Pte::Present(p).encode(), 0x0123_4000 | 0x67);
        assert_eq!(Pte::decode(0), Pte::None);
        let protnone = p.with(PteFlags::PROTNONE).without(PteFlags::WRITE);
        let raw = Pte::Present(protnone).encode();
        assert_eq!(raw & 1, 0, "protnone is not present to the hardware");
        assert_eq!(Pte::decode(raw), Pte::Present(protnone));
        assert_eq!(Pmd::Table(Pfn::new(7)).encode(), 0x7067);
        assert_eq!(Pmd::decode(0x7067), Pmd::Table(Pfn::new(7)));
    }

    fn present() -> impl Strategy<Value = PresentPte> {
        (0u64..(1 << 40), 0u32..256)
            .prop_map(|(pfn, f)| PresentPte::new(Pfn::new(pfn), PteFlags::from_bits_truncate(f)))
    }

    proptest! {
        #[test]
        fn pte_encode_decode_roundtrip(p in present(), t in 0u8..32, off in 0u64..(1 << 46),
                                       sd: bool, uw: bool, ex: bool) {
            prop_assert_eq!(Pte::decode(Pte::Present(p).encode()), Pte::Present(p));
            let s = SwapPte { swp_type: t, offset: off, soft_dirty: sd, uffd_wp: uw, exclusive: ex };
            let raw = Pte::Swap(s).encode();
            prop_assert!(raw & 1 == 0 && raw & (1 << 8) == 0 && raw != 0);
            prop_assert_eq!(Pte::decode(raw), Pte::Swap(s));
            let huge = p.without(PteFlags::PROTNONE);
            prop_assert_eq!(Pmd::decode(Pmd::Huge(huge).encode()), Pmd::Huge(huge));
        }
    }
}
