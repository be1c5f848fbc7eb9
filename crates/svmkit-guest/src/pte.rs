//! Decoding a /proc/self/pagemap entry into the model's words
//! (`fs/proc/task_mmu.c`, `pte_to_pagemap_entry()`):
//!
//! * bit 63 present, 62 swap (any non-present swap-format entry), 57 uffd-wp, 56
//!   exclusively mapped (`folio_precise_page_mapcount() == 1`, present only), 55
//!   soft-dirty (the entry's bit, OR the VMA's `VM_SOFTDIRTY`);
//! * present: bits 0-54 the pfn;
//! * swap: bits 0-4 the swap type, 5-54 the offset, which is the pfn for pfn entries
//!   (migration, device-private, device-exclusive).
//!
//! pagemap has no write bit and no dirty bit. `rw`/`ro` of a present PTE is
//! inferred: `rw` when the VMA is writable, the page is not the zero page, it is
//! mapped exclusively (bit 56), bit 55 is set and bit 57 is clear (x86's
//! `pte_mkuffd_wp()` write-protects, and `can_change_pte_writable()` refuses a
//! uffd-wp PTE); `ro` otherwise. (Bit 55 clear means
//! the VMA tracks soft-dirty, VM_SOFTDIRTY clear, and then a writable PTE is always
//! soft-dirty: clear_refs write-protects what it cleans, and every way back to
//! writable, a write fault or can_change_pte_writable(), sets or needs the bit.)
//! `dirty` and `young` are never shown.

/// The kinds an entry can have, as the guest sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing mapped (pagemap shows neither present nor swap).
    None,
    /// A present PTE.
    Present {
        /// The frame.
        pfn: u64,
        /// The shared zero page.
        zero: bool,
        /// Writable (inferred, see the module docs).
        write: bool,
    },
    /// A device-exclusive entry (SWP_DEVICE_EXCLUSIVE_WRITE or _READ).
    DeviceExclusive {
        /// The frame.
        pfn: u64,
        /// SWP_DEVICE_EXCLUSIVE_WRITE.
        write: bool,
    },
    /// A migration entry.
    Migration {
        /// The frame.
        pfn: u64,
        /// SWP_MIGRATION_WRITE.
        write: bool,
    },
    /// A device-private entry.
    DevicePrivate {
        /// The frame.
        pfn: u64,
    },
    /// A swap entry of a swap device.
    Swap {
        /// Swap type (the device).
        swp_type: u64,
        /// Slot.
        offset: u64,
    },
    /// Any other non-present entry (a PTE marker, hwpoison).
    Other {
        /// Swap type.
        swp_type: u64,
        /// Offset.
        offset: u64,
    },
}

/// A decoded entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: Kind,
    /// Bit 55.
    pub soft_dirty: bool,
    /// Bit 57.
    pub uffd_wp: bool,
    /// The raw pagemap word.
    pub raw: u64,
}

/// What decoding needs to know of the build and the address.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// SWP_DEVICE_EXCLUSIVE_WRITE of this build (SWP_DEVICE_EXCLUSIVE_READ is one
    /// more; migration READ, READ_EXCLUSIVE, WRITE are 5, 4, 3 less; device-private
    /// WRITE and READ 2 and 1 less: include/linux/swap.h).
    pub excl_type: u64,
    /// The zero page's pfn.
    pub zero_pfn: u64,
}

const PFN_MASK: u64 = (1 << 55) - 1;

/// Decodes `raw`, the entry at an address in a VMA that is writable or not.
pub fn decode(raw: u64, ctx: &Ctx, vma_writable: bool) -> Entry {
    let soft_dirty = raw & (1 << 55) != 0;
    let uffd_wp = raw & (1 << 57) != 0;
    let exclusive = raw & (1 << 56) != 0;
    let kind = if raw & (1 << 63) != 0 {
        let pfn = raw & PFN_MASK;
        let zero = pfn == ctx.zero_pfn;
        Kind::Present {
            pfn,
            zero,
            write: vma_writable && !zero && exclusive && soft_dirty && !uffd_wp,
        }
    } else if raw & (1 << 62) != 0 {
        let t = raw & 0x1f;
        let offset = (raw & PFN_MASK) >> 5;
        let x = ctx.excl_type;
        if t == x || t == x + 1 {
            Kind::DeviceExclusive {
                pfn: offset,
                write: t == x,
            }
        } else if x >= 5 && (x - 5..=x - 3).contains(&t) {
            Kind::Migration {
                pfn: offset,
                write: t == x - 3,
            }
        } else if x >= 2 && (t == x - 2 || t == x - 1) {
            Kind::DevicePrivate { pfn: offset }
        } else if x >= 5 && t < x - 5 {
            Kind::Swap {
                swp_type: t,
                offset,
            }
        } else {
            Kind::Other {
                swp_type: t,
                offset,
            }
        }
    } else {
        Kind::None
    };
    Entry {
        kind,
        soft_dirty,
        uffd_wp,
        raw,
    }
}

impl Entry {
    /// The entry in the words of the model's account (`present pfn 0x1a2 rw
    /// soft-dirty`, `device-exclusive pfn 0x1a2 soft-dirty`, `none`).
    pub fn text(&self) -> String {
        let bits = format!(
            "{}{}",
            if self.soft_dirty { " soft-dirty" } else { "" },
            if self.uffd_wp { " uffd-wp" } else { "" }
        );
        match self.kind {
            Kind::None => "none".into(),
            Kind::Present { pfn, zero, write } => format!(
                "present pfn {pfn:#x}{} {}{bits}",
                if zero { " zero-page" } else { "" },
                if write { "rw" } else { "ro" }
            ),
            Kind::DeviceExclusive { pfn, write } => format!(
                "device-exclusive pfn {pfn:#x}{bits}{}",
                if write { "" } else { " ro" }
            ),
            Kind::Migration { pfn, .. } => format!("migration pfn {pfn:#x}{bits}"),
            Kind::DevicePrivate { pfn } => format!("device-private pfn {pfn:#x}{bits}"),
            Kind::Swap { swp_type, offset } => {
                if swp_type == 0 {
                    format!("swap slot {offset}{bits}")
                } else {
                    format!("swap slot {offset} type {swp_type}{bits}")
                }
            }
            Kind::Other { swp_type, offset } => {
                format!("non-present swap type {swp_type} offset {offset:#x}{bits}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Ctx = Ctx {
        excl_type: 29,
        zero_pfn: 0x10,
    };

    #[test]
    fn decodes_device_exclusive_and_present() {
        let de = (1 << 62) | (1 << 55) | (0x1234 << 5) | 29;
        assert_eq!(
            decode(de, &CTX, true).text(),
            "device-exclusive pfn 0x1234 soft-dirty"
        );
        let p = (1 << 63) | (1 << 56) | (1 << 55) | 0x99;
        assert_eq!(
            decode(p, &CTX, true).text(),
            "present pfn 0x99 rw soft-dirty"
        );
        assert_eq!(
            decode(p, &CTX, false).text(),
            "present pfn 0x99 ro soft-dirty"
        );
        // uffd-wp protected: never writable, whatever else the bits say.
        assert_eq!(
            decode(p | (1 << 57), &CTX, true).text(),
            "present pfn 0x99 ro soft-dirty uffd-wp"
        );
        let clean = (1 << 63) | (1 << 56) | 0x99;
        assert_eq!(decode(clean, &CTX, true).text(), "present pfn 0x99 ro");
        let z = (1 << 63) | (1 << 55) | 0x10;
        assert_eq!(
            decode(z, &CTX, true).text(),
            "present pfn 0x10 zero-page ro soft-dirty"
        );
        assert_eq!(decode(1 << 55, &CTX, true).text(), "none");
        assert_eq!(
            decode((1 << 62) | (7 << 5), &CTX, true).text(),
            "swap slot 7"
        );
    }
}
