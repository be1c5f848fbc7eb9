//! Profiles: which Linux era's device-exclusive design the model follows.
//!
//! svmkit has one modern core mm (Linux 6.x: PageAnonExclusive, mprotect's direct
//! write upgrade, folio APIs). What the 2025 rework of device-exclusive entries
//! changed (spec "E1" = 5.14 ... 6.14, "E2" = 6.15) is a set of named switches in
//! [`Profile`]; code tests switches, never a profile's name. Each switch cites the spec
//! section and the Linux change behind it.
//!
//! [`Profile::linux_6_15`] (the default) is the 2025 design; [`Profile::linux_5_14`]
//! is the 2021 design as merged, with its real flaws, so that the checker and the
//! tests can be shown to catch them.

use std::fmt;

use crate::mm::mmu_notifier::MmuNotifierEvent;

/// Which event the CPU-fault restore of a device-exclusive entry sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestoreEvent {
    /// `MMU_NOTIFY_EXCLUSIVE` with owner none (5.14 to 6.14; Peter Xu's v9 review
    /// suggestion, spec 6.4).
    ExclusiveNoOwner,
    /// `MMU_NOTIFY_CLEAR`, owner none (6.15, cleanups v2 5/5,
    /// `<20250226132257.2826043-6-david@redhat.com>`).
    Clear,
}

impl RestoreEvent {
    /// The notifier event sent.
    pub fn event(self) -> MmuNotifierEvent {
        match self {
            RestoreEvent::ExclusiveNoOwner => MmuNotifierEvent::Exclusive,
            RestoreEvent::Clear => MmuNotifierEvent::Clear,
        }
    }
}

/// How the restored PTE's write permission is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestoreWritability {
    /// From the entry's write bit: a writable entry gives `maybe_mkwrite(pte_mkdirty())`
    /// (writable if the VMA is, always dirty) (5.14, spec 3).
    EntryBitAlwaysDirty,
    /// Writable iff `VM_WRITE` and `can_change_pte_writable()`; dirty iff the folio is
    /// (6.15, fixes v2 05/17, `<20250210193801.781278-6-david@redhat.com>`).
    CanChangePteWritable,
}

/// The named switches of one era's device-exclusive design.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Profile {
    /// Short name, for traces and the CLI.
    pub name: &'static str,
    /// `make_device_exclusive_range()`, the range API, exists (5.14 to 6.14, spec 2.1).
    /// Linux 6.15 replaced it with the single-page `make_device_exclusive()` (fixes v2
    /// 03/17, `<20250210193801.781278-4-david@redhat.com>`, spec 2.4): "the only real
    /// user (nouveau) asked for one page". Without it
    /// [`Mm::make_device_exclusive_range`](crate::mm::Mm::make_device_exclusive_range)
    /// fails with `ENOSYS` and drivers loop over single pages.
    pub has_range_api: bool,
    /// The range API locks each page with a trylock and gives up on failure, without
    /// retrying (5.14, spec 2.1; replaced by the killable lock and GUP retry of fixes v2
    /// 17/17 in 6.15).
    pub range_api_trylock_no_retry: bool,
    /// Conversion walks the rmap and converts every PTE of the whole folio in every VMA
    /// (5.14 `page_make_device_exclusive_one()`, spec 2.1; 6.15 converts exactly one PTE
    /// found by `folio_walk`, fixes v2 04/17).
    pub convert_via_rmap_walk_whole_folio: bool,
    /// Tail pages of a large folio are refused (5.14 `PageTail` check, spec 2.1, bug 7).
    pub reject_tail_pages: bool,
    /// The entry keeps the mapcount of the PTE it replaces (6.15, fixes v2 16/17); 5.14
    /// dropped it (`page_remove_rmap`), spec 1.2.
    pub mapcount_kept_on_entry: bool,
    /// Entries come in a readable and a writable type (5.14); 6.15 has one type
    /// (fixes v2 06/17).
    pub entry_has_write_bit: bool,
    /// `change_protection()` turns writable entries readable on every call (5.14 to
    /// 6.14, spec 4.2); 6.15 leaves entries alone (fixes v2 06/17).
    pub mprotect_downgrades_entries: bool,
    /// The event the restore sends (spec 3, 6.4).
    pub restore_event: RestoreEvent,
    /// The restore takes a folio reference before locking (6.3, `7c7b962938dd`, spec 8
    /// item 5).
    pub restore_takes_folio_ref: bool,
    /// How the restored PTE's writability is decided (spec 3).
    pub restore_writability: RestoreWritability,
    /// rmap walkers (`page_vma_mapped_walk` users) recognise entries by their pfn
    /// (6.15, fixes v2 07-15/17, spec 4.18); among them KSM's `write_protect_page()`
    /// gives up on a non-present PTE (09/17, spec 8 item 11: neither Debian tree has
    /// that check in mm/ksm.c). uprobes' 08/17 has its own switch,
    /// [`replace_page_retries_nonpresent`](Self::replace_page_retries_nonpresent),
    /// because the Debian 6.12 tree has that one backported.
    pub walkers_handle_entries: bool,
    /// dmirror maps atomically only when the whole chunk became exclusive (from
    /// `ed913b055a74`, 2022, spec 8 item 4).
    pub dmirror_map_only_full_chunks: bool,
    /// nouveau's atomic fault unlocks and puts the folio before retrying (6.14-rc,
    /// `b3fefbb30a16`, spec 8 item 22).
    pub svm_atomic_unlock_on_retry: bool,
    /// The range API's conversion succeeds only if no page of the whole folio is
    /// mapped any more (`folio_make_device_exclusive()`: `args.valid &&
    /// !folio_mapcount(folio)`, the 5.18 folio conversion; mm/rmap.c of the Debian 6.1
    /// and 6.12 trees); false: only the page asked for (5.14
    /// `page_make_device_exclusive()`: `!page_mapcount(page)`, the head's own count
    /// after FOLL_SPLIT_PMD). They differ when the rmap walk stopped early (at an entry
    /// an earlier conversion left) before a page of the folio that is still mapped:
    /// `oracle/corpus/svm-atomic-thp-partial.toml`, docs/FINDINGS.md 5. Not read
    /// without the range API (6.15 converts one PTE, fixes v2 04/17).
    pub exclusive_checks_folio_mapcount: bool,
    /// Lifting uffd-wp protection (`UFFDIO_WRITEPROTECT` without `MODE_WP`) makes a
    /// PTE writable again where mprotect's write upgrade would
    /// (`can_change_pte_writable()` in a private writable VMA), so the next write
    /// takes no fault; false: the PTE stays read-only and the write faults. A core-mm
    /// change, not a device-exclusive one: the series "mm: uffd-wp +
    /// change_protection() cleanups" (David Hildenbrand, Dec 2022, first patch
    /// `931298e103c2`), shown by `oracle/corpus/uffd-wp-exclusive.toml`'s goldens: the
    /// write after the unprotect takes no fault on 6.12.117, one on 6.1.192.
    pub uffd_unprotect_upgrades_write: bool,
    // --- issue 20: the kernels after 6.15 (keep these together) ---
    /// khugepaged's and MADV_COLLAPSE's scan (`hpage_collapse_scan_pmd()`) aborts with
    /// `SCAN_PTE_NON_PRESENT` on a non-present PTE that is not a real swap entry (a
    /// device-exclusive, migration or device-private entry, or a marker), leaving it
    /// in place; MADV_COLLAPSE then fails with `EINVAL` (`madvise_collapse_errno()`'s
    /// default). "mm/khugepaged: abort collapse scan on non-swap entries" (Lance Yang,
    /// v3 `<20251008032657.72406-1-lance.yang@linux.dev>`, 6.19, spec 10.1). False:
    /// the entry counts as a swap entry and the collapse's swap-in step
    /// (`__collapse_huge_page_swapin()` → `do_swap_page()`) restores it, revoking the
    /// device, before the collapse goes on (derived from the 6.12 tree's
    /// mm/khugepaged.c, spec 9.4).
    pub khugepaged_aborts_on_non_swap_entries: bool,
    // --- issue 19 paths (mlock, NUMA hinting, uprobes): switches of this block. ---
    /// uprobes' `__replace_page()` gives up on a non-present PTE its
    /// `page_vma_mapped_walk()` found (a device-exclusive entry converted after its
    /// GUP) and the caller retries GUP (6.15, fixes v2 08/17, spec 4.11, 8 item 10);
    /// false: it replaces the entry as if it were a present PTE (`pte_pfn()` of a
    /// swap PTE) and removes the page's rmap, which 5.14's conversion had already
    /// removed: the mapcount goes below zero (5.14 to 6.14: the Debian 6.1.192 tree's
    /// kernel/events/uprobes.c has no present check; the Debian 6.12.117 tree has the
    /// stable backport, "Handle PFN swap PTES, such as device-exclusive ones").
    pub replace_page_retries_nonpresent: bool,
    // --- issue 19, spec 8 items 1, 3, 6: pre-merge and 6.8-era flaws. ---
    /// Pre-merge flaw (spec 8 item 1, Jun 2021, never released): the range API's page
    /// loop compares an unsigned index with `npages`, which is negative when GUP fails
    /// on the first page, so the loop reads `pages[]` slots GUP never filled "until the
    /// kernel crashes". Fixed before 5.14 by Dan Carpenter's "mm/rmap: fix signedness
    /// bug in make_device_exclusive_range()" (`<YNIz5NVnZ5GiZ3u1@mwanda>`, spec 2.3):
    /// a signed index and an early return of the negative count. No preset has it.
    pub range_api_unsigned_index: bool,
    /// Pre-merge flaw (spec 8 item 3, patch v5 to v7, 2021, never released): fork
    /// copies a device-exclusive entry to the child (`get_page()`, RSS + 1, both
    /// entries made readable in a COW mapping) instead of restoring it in the parent.
    /// Read in `[PATCH v7 5/8] mm: Device exclusive memory access`
    /// (`<20210326000805.2518-6-apopple@nvidia.com>`), where Jason Gunthorpe answered
    /// that it "needs to have the same logic as we now have in copy_present_page()";
    /// v8 "Remove device exclusive entries on fork rather than copy them" (spec 4.1).
    /// The copy takes a reference and nothing else, so on the model's 5.19+ mm the
    /// page keeps PG_anon_exclusive while two mms name it (derived). No preset has it.
    pub fork_copies_exclusive_entries: bool,
    /// Pre-merge flaw (spec 8 item 3, patches v3 and v4, Feb-Mar 2021, never
    /// released): the range API's conversion does not check, inside the rmap walk,
    /// that the PTE it converts at the caller's `(mm, address)` was there and
    /// writable; the series checked the mappings outside the page table lock (after
    /// GUP, v3; v4's `check_device_exclusive_range()` after the conversion), which
    /// Jason Gunthorpe found racy. So a page a fork shared between GUP and the lock is
    /// converted in both mms and still reported exclusive. v5 added the check to the
    /// walk (`args->valid`, "Added a check to try_to_protect_one() to detect if the
    /// pages originally returned from get_user_pages() have been unmapped or not", in
    /// the changelog of `[PATCH v7 5/8]`, `<20210326000805.2518-6-apopple@nvidia.com>`;
    /// with Ralph Campbell's owner cookie, `<1795020.LnfgZAJ4CS@nvdebian>`, spec 8
    /// item 3). No preset has it.
    pub range_api_skips_target_check: bool,
    /// The restore asserts `VM_BUG_ON(pte_write(pte) && !(PageAnon(page) &&
    /// PageAnonExclusive(page)))` (5.19 to 6.14, spec 2.3, 3; read in
    /// `restore_exclusive_pte()`, mm/memory.c of the Debian 6.1.192 and 6.12.117
    /// trees). 5.14 had no PG_anon_exclusive and 6.15 deleted the check (cleanups v2
    /// 2/5, `<20250226132257.2826043-3-david@redhat.com>`, spec 8 item 6). The model
    /// records a firing check as a bad-page report.
    pub restore_checks_writable_is_anon_exclusive: bool,
    /// The check above has 6.8's misplaced `!`: `pte_write(pte) &&
    /// (!folio_test_anon(folio) && PageAnonExclusive(page))`, which never fires, since
    /// only anon pages are ever anon-exclusive (6.8 `b832a354d787` to 6.14, spec 8
    /// item 6; read in the Debian 6.12.117 tree). Only read when the check is there.
    pub restore_check_misplaced_not: bool,
    // --- issue 19: hugetlb (spec 4.12, 8 items 19 and 20) ---
    /// GUP walks hugetlb VMAs through the generic `follow_page_mask()`, so
    /// `FOLL_SPLIT_PMD` reaches `split_huge_pmd()` on a hugetlb PMD, which trips
    /// page_table_check (`9cb28da54643`, "mm/gup: handle hugetlb in the generic
    /// follow_page_mask code", 6.10; spec 4.12, 8 item 19). False: the hugetlb walk
    /// (`follow_hugetlb_page()`) ignores `FOLL_SPLIT_PMD` and hands out the subpage of
    /// the still PMD-mapped folio (5.14 to 6.9; the Debian 6.1.192 tree's mm/gup.c
    /// calls `follow_hugetlb_page()`).
    pub gup_hugetlb_honours_split_pmd: bool,
    /// `check_vma_flags()` refuses `FOLL_SPLIT_PMD` on a hugetlb VMA with `EOPNOTSUPP`
    /// (fixes v2 01/17, CVE-2025-22034: 6.15, and stable 6.14.2, 6.13.11, 6.12.23;
    /// spec 2.3, 4.12, 8 item 19; the Debian 6.12.117 tree's mm/gup.c has it, the
    /// 6.1.192 tree's has not).
    pub gup_rejects_split_pmd_on_hugetlb: bool,
    /// The conversion refuses hugetlb folios (fixes v2 02/17: 6.15
    /// `make_device_exclusive()` returns `EOPNOTSUPP`, spec 2.4 step 3; the stable
    /// backport in `folio_make_device_exclusive()` of the Debian 6.1.192 and 6.12.117
    /// trees' mm/rmap.c returns false). False: the E1 rmap walk reaches a hugetlb
    /// folio and converts its PMD as if it were a PTE (5.14, spec 4.12, 8 item 20).
    pub exclusive_rejects_hugetlb: bool,
}

impl Profile {
    /// The 2025 design, Linux 6.15 (spec "E2").
    pub const fn linux_6_15() -> Profile {
        Profile {
            name: "linux-6.15",
            has_range_api: false,
            range_api_trylock_no_retry: false,
            convert_via_rmap_walk_whole_folio: false,
            reject_tail_pages: false,
            mapcount_kept_on_entry: true,
            entry_has_write_bit: false,
            mprotect_downgrades_entries: false,
            restore_event: RestoreEvent::Clear,
            restore_takes_folio_ref: true,
            restore_writability: RestoreWritability::CanChangePteWritable,
            walkers_handle_entries: true,
            dmirror_map_only_full_chunks: true,
            svm_atomic_unlock_on_retry: true,
            exclusive_checks_folio_mapcount: true,
            uffd_unprotect_upgrades_write: true,
            khugepaged_aborts_on_non_swap_entries: false,
            replace_page_retries_nonpresent: true,
            range_api_unsigned_index: false,
            fork_copies_exclusive_entries: false,
            range_api_skips_target_check: false,
            restore_checks_writable_is_anon_exclusive: false,
            restore_check_misplaced_not: false,
            gup_hugetlb_honours_split_pmd: true,
            gup_rejects_split_pmd_on_hugetlb: true,
            exclusive_rejects_hugetlb: true,
        }
    }
}

impl Profile {
    /// The 2021 design as merged, Linux 5.14 (spec "E1"), with the 5.18 folio
    /// conversion's order of checks (tail pages refused before the trylock).
    pub const fn linux_5_14() -> Profile {
        Profile {
            name: "linux-5.14",
            has_range_api: true,
            range_api_trylock_no_retry: true,
            convert_via_rmap_walk_whole_folio: true,
            reject_tail_pages: true,
            mapcount_kept_on_entry: false,
            entry_has_write_bit: true,
            mprotect_downgrades_entries: true,
            restore_event: RestoreEvent::ExclusiveNoOwner,
            restore_takes_folio_ref: false,
            restore_writability: RestoreWritability::EntryBitAlwaysDirty,
            walkers_handle_entries: false,
            dmirror_map_only_full_chunks: false,
            svm_atomic_unlock_on_retry: false,
            exclusive_checks_folio_mapcount: false,
            uffd_unprotect_upgrades_write: false,
            khugepaged_aborts_on_non_swap_entries: false,
            replace_page_retries_nonpresent: false,
            range_api_unsigned_index: false,
            fork_copies_exclusive_entries: false,
            range_api_skips_target_check: false,
            restore_checks_writable_is_anon_exclusive: false,
            restore_check_misplaced_not: false,
            gup_hugetlb_honours_split_pmd: false,
            gup_rejects_split_pmd_on_hugetlb: false,
            exclusive_rejects_hugetlb: false,
        }
    }

    /// Debian's Linux 6.1 (`linux-source-6.1`, 6.1.192, the kernel `oracle/` boots):
    /// the 2021 design with the later fixes that tree has, each read in the unpacked
    /// Debian source. Every other switch is 5.14's: `make_device_exclusive_range()`
    /// with `PageTail(pages[i]) || !folio_trylock(folio)` and the rmap walk
    /// `folio_make_device_exclusive()` (mm/rmap.c), `change_pte_range()` turning
    /// writable entries readable (mm/mprotect.c), the restore's
    /// `MMU_NOTIFY_EXCLUSIVE` with owner NULL and `maybe_mkwrite(pte_mkdirty())` of a
    /// writable entry (mm/memory.c, `remove_device_exclusive_entry()`,
    /// `restore_exclusive_pte()`).
    /// * `restore_takes_folio_ref`: `remove_device_exclusive_entry()` calls
    ///   `folio_try_get()` before `folio_lock_or_retry()` (mm/memory.c).
    /// * `dmirror_map_only_full_chunks`: `dmirror_exclusive()` calls
    ///   `dmirror_atomic_map()` only when every page of the chunk was returned
    ///   (lib/test_hmm.c).
    /// * `svm_atomic_unlock_on_retry`: `nouveau_atomic_range_fault()` does
    ///   `folio_unlock(); folio_put();` before retrying after
    ///   `mmu_interval_read_retry()` (drivers/gpu/drm/nouveau/nouveau_svm.c).
    /// * `exclusive_checks_folio_mapcount`: `folio_make_device_exclusive()` returns
    ///   `args.valid && !folio_mapcount(folio)` (mm/rmap.c; shown by both kernels'
    ///   goldens of `oracle/corpus/svm-atomic-thp-partial.toml`).
    /// * `restore_checks_writable_is_anon_exclusive`: `restore_exclusive_pte()` has
    ///   5.19's `VM_BUG_ON(pte_write(pte) && !(PageAnon(page) &&
    ///   PageAnonExclusive(page)))` (mm/memory.c).
    /// * `exclusive_rejects_hugetlb`: `folio_make_device_exclusive()` returns false
    ///   for `folio_test_hugetlb()` (mm/rmap.c, the stable backport of fixes v2 02/17).
    pub const fn linux_6_1() -> Profile {
        Profile {
            name: "linux-6.1",
            restore_takes_folio_ref: true,
            dmirror_map_only_full_chunks: true,
            svm_atomic_unlock_on_retry: true,
            exclusive_checks_folio_mapcount: true,
            restore_checks_writable_is_anon_exclusive: true,
            exclusive_rejects_hugetlb: true,
            ..Profile::linux_5_14()
        }
    }

    /// Debian's Linux 6.12 (`linux-source-6.12`, 6.12.117, the kernel `oracle/`
    /// boots): the same switches as [`Profile::linux_6_1`], read in the same files and
    /// functions of that tree (6.12 has the 2021 design too; the 2025 rework is 6.15),
    /// and the 6.3 core-mm change `uffd_unprotect_upgrades_write` (`uffd_wp_range()`
    /// in mm/mprotect.c of that tree passes `MM_CP_TRY_CHANGE_WRITABLE`), and the
    /// stable backport of fixes v2 08/17 `replace_page_retries_nonpresent`
    /// (`__replace_page()` in kernel/events/uprobes.c of that tree checks
    /// `pte_present()` and goes to `unlock`), 6.8's misplaced `!` in the restore's
    /// check, `restore_check_misplaced_not` (`VM_BUG_ON_FOLIO(pte_write(pte) &&
    /// (!folio_test_anon(folio) && PageAnonExclusive(page)), folio)` in
    /// `restore_exclusive_pte()`, mm/memory.c of that tree), and the two GUP switches of hugetlb:
    /// 6.10's generic hugetlb walk (`follow_page_mask()` in mm/gup.c of that tree has
    /// no `follow_hugetlb_page()`) and its stable fix 01/17 (`check_vma_flags()`
    /// returns `-EOPNOTSUPP` for `FOLL_SPLIT_PMD` on `is_vm_hugetlb_page()`), so
    /// `gup_rejects_split_pmd_on_hugetlb` off stands for 6.12.0 to 6.12.22.
    pub const fn linux_6_12() -> Profile {
        Profile {
            name: "linux-6.12",
            uffd_unprotect_upgrades_write: true,
            replace_page_retries_nonpresent: true,
            restore_check_misplaced_not: true,
            gup_hugetlb_honours_split_pmd: true,
            gup_rejects_split_pmd_on_hugetlb: true,
            ..Profile::linux_6_1()
        }
    }

    /// Linux 7.1 (2026): the 2025 design of [`Profile::linux_6_15`] plus the
    /// device-exclusive changes merged since (spec 10.1), each cited:
    /// * `khugepaged_aborts_on_non_swap_entries`: "mm/khugepaged: abort collapse scan
    ///   on non-swap entries" (6.19).
    ///
    /// What else moved between 6.15 and 7.1 needs no switch: the two-pass interval
    /// notifiers ("mm/mmu_notifier: Allow two-pass struct mmu_interval_notifiers",
    /// 7.1) are a notifier kind any profile offers
    /// ([`MmuIntervalNotifierOps::invalidate_start`](crate::mm::mmu_notifier::MmuIntervalNotifierOps::invalidate_start)),
    /// chosen by the driver; 6.19's `softleaf_t` names are renames (doc aliases on
    /// [`SwapPte`](crate::mm::SwapPte)); no in-tree user of `make_device_exclusive()`
    /// was added (spec 10.1).
    pub const fn linux_7_1() -> Profile {
        let mut p = Profile::linux_6_15();
        p.name = "linux-7.1";
        p.khugepaged_aborts_on_non_swap_entries = true;
        p
    }

    /// The preset called `name`: one of [`Profile::PRESETS`].
    pub fn by_name(name: &str) -> Option<Profile> {
        Profile::PRESETS.into_iter().find(|p| p.name == name)
    }

    /// The two designs, oldest first: the 2021 design as merged and the 2025 one
    /// (what "both eras" means in the CLI and the tests).
    pub const ALL: [Profile; 2] = [Profile::linux_5_14(), Profile::linux_6_15()];

    /// Every nameable preset, oldest first: the two designs, the two Debian kernels
    /// the oracle boots (`linux-6.1`, `linux-6.12`) and the 2026 kernel (`linux-7.1`).
    pub const PRESETS: [Profile; 5] = [
        Profile::linux_5_14(),
        Profile::linux_6_1(),
        Profile::linux_6_12(),
        Profile::linux_6_15(),
        Profile::linux_7_1(),
    ];
}

/// One boolean switch of [`Profile`], by name, for tools that read profiles from files
/// (scenario files name presets and override switches).
#[derive(Clone, Copy)]
pub struct Switch {
    /// The field's name.
    pub name: &'static str,
    /// Reads it.
    pub get: fn(&Profile) -> bool,
    /// Sets it.
    pub set: fn(&mut Profile, bool),
}

impl fmt::Debug for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Switch").field(&self.name).finish()
    }
}

/// Every boolean switch of [`Profile`] (the restore event and writability are enums,
/// set through the presets).
pub const SWITCHES: [Switch; 23] = [
    Switch {
        name: "has_range_api",
        get: |p| p.has_range_api,
        set: |p, v| p.has_range_api = v,
    },
    Switch {
        name: "range_api_trylock_no_retry",
        get: |p| p.range_api_trylock_no_retry,
        set: |p, v| p.range_api_trylock_no_retry = v,
    },
    Switch {
        name: "convert_via_rmap_walk_whole_folio",
        get: |p| p.convert_via_rmap_walk_whole_folio,
        set: |p, v| p.convert_via_rmap_walk_whole_folio = v,
    },
    Switch {
        name: "reject_tail_pages",
        get: |p| p.reject_tail_pages,
        set: |p, v| p.reject_tail_pages = v,
    },
    Switch {
        name: "mapcount_kept_on_entry",
        get: |p| p.mapcount_kept_on_entry,
        set: |p, v| p.mapcount_kept_on_entry = v,
    },
    Switch {
        name: "entry_has_write_bit",
        get: |p| p.entry_has_write_bit,
        set: |p, v| p.entry_has_write_bit = v,
    },
    Switch {
        name: "mprotect_downgrades_entries",
        get: |p| p.mprotect_downgrades_entries,
        set: |p, v| p.mprotect_downgrades_entries = v,
    },
    Switch {
        name: "restore_takes_folio_ref",
        get: |p| p.restore_takes_folio_ref,
        set: |p, v| p.restore_takes_folio_ref = v,
    },
    Switch {
        name: "walkers_handle_entries",
        get: |p| p.walkers_handle_entries,
        set: |p, v| p.walkers_handle_entries = v,
    },
    Switch {
        name: "dmirror_map_only_full_chunks",
        get: |p| p.dmirror_map_only_full_chunks,
        set: |p, v| p.dmirror_map_only_full_chunks = v,
    },
    Switch {
        name: "svm_atomic_unlock_on_retry",
        get: |p| p.svm_atomic_unlock_on_retry,
        set: |p, v| p.svm_atomic_unlock_on_retry = v,
    },
    Switch {
        name: "exclusive_checks_folio_mapcount",
        get: |p| p.exclusive_checks_folio_mapcount,
        set: |p, v| p.exclusive_checks_folio_mapcount = v,
    },
    Switch {
        name: "uffd_unprotect_upgrades_write",
        get: |p| p.uffd_unprotect_upgrades_write,
        set: |p, v| p.uffd_unprotect_upgrades_write = v,
    },
    // --- issue 20: the kernels after 6.15 ---
    Switch {
        name: "khugepaged_aborts_on_non_swap_entries",
        get: |p| p.khugepaged_aborts_on_non_swap_entries,
        set: |p, v| p.khugepaged_aborts_on_non_swap_entries = v,
    },
    // issue 19 paths
    Switch {
        name: "replace_page_retries_nonpresent",
        get: |p| p.replace_page_retries_nonpresent,
        set: |p, v| p.replace_page_retries_nonpresent = v,
    },
    // issue 19, spec 8 items 1, 3, 6
    Switch {
        name: "range_api_unsigned_index",
        get: |p| p.range_api_unsigned_index,
        set: |p, v| p.range_api_unsigned_index = v,
    },
    Switch {
        name: "fork_copies_exclusive_entries",
        get: |p| p.fork_copies_exclusive_entries,
        set: |p, v| p.fork_copies_exclusive_entries = v,
    },
    Switch {
        name: "range_api_skips_target_check",
        get: |p| p.range_api_skips_target_check,
        set: |p, v| p.range_api_skips_target_check = v,
    },
    Switch {
        name: "restore_checks_writable_is_anon_exclusive",
        get: |p| p.restore_checks_writable_is_anon_exclusive,
        set: |p, v| p.restore_checks_writable_is_anon_exclusive = v,
    },
    Switch {
        name: "restore_check_misplaced_not",
        get: |p| p.restore_check_misplaced_not,
        set: |p, v| p.restore_check_misplaced_not = v,
    },
    // issue 19: hugetlb
    Switch {
        name: "gup_hugetlb_honours_split_pmd",
        get: |p| p.gup_hugetlb_honours_split_pmd,
        set: |p, v| p.gup_hugetlb_honours_split_pmd = v,
    },
    Switch {
        name: "gup_rejects_split_pmd_on_hugetlb",
        get: |p| p.gup_rejects_split_pmd_on_hugetlb,
        set: |p, v| p.gup_rejects_split_pmd_on_hugetlb = v,
    },
    Switch {
        name: "exclusive_rejects_hugetlb",
        get: |p| p.exclusive_rejects_hugetlb,
        set: |p, v| p.exclusive_rejects_hugetlb = v,
    },
];

impl Default for Profile {
    /// [`Profile::linux_6_15`].
    fn default() -> Self {
        Profile::linux_6_15()
    }
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("restore_event", &self.restore_event)
            .field("mapcount_kept_on_entry", &self.mapcount_kept_on_entry)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::{Profile, SWITCHES};

    #[test]
    fn every_preset_is_nameable_by_its_own_name() {
        for p in Profile::PRESETS {
            assert_eq!(Profile::by_name(p.name), Some(p), "{}", p.name);
        }
        assert_eq!(Profile::by_name("linux-6.13"), None);
    }

    /// The Debian kernels are the 2021 design plus exactly the fixes read in their
    /// trees (the docs of `Profile::linux_6_1`), and the 5.18 folio conversion's
    /// whole-folio mapcount the oracle showed (`exclusive_checks_folio_mapcount`): a
    /// switch changed by mistake, or a preset built from the wrong base, shows here.
    #[test]
    fn the_debian_kernels_are_the_2021_design_with_the_fixes_read_in_their_trees() {
        let e1 = Profile::linux_5_14();
        let fixes = [
            "restore_takes_folio_ref",
            "dmirror_map_only_full_chunks",
            "svm_atomic_unlock_on_retry",
            "exclusive_checks_folio_mapcount",
            "restore_checks_writable_is_anon_exclusive",
        ];
        // Both have the stable backport of fixes v2 02/17 (read in their mm/rmap.c).
        let with_hugetlb = [fixes.as_slice(), &["exclusive_rejects_hugetlb"]].concat();
        // 6.12 also has the 6.3 core-mm uffd-wp change (both kernels' goldens), the
        // uprobes backport and 6.8's misplaced `!` (both read in its tree), and 6.10's
        // generic hugetlb GUP walk with its stable fix 01/17 (read in its mm/gup.c).
        // In SWITCHES order.
        let with_uffd = [
            &fixes[..4],
            &[
                "uffd_unprotect_upgrades_write",
                "replace_page_retries_nonpresent",
            ],
            &fixes[4..],
            &[
                "restore_check_misplaced_not",
                "gup_hugetlb_honours_split_pmd",
                "gup_rejects_split_pmd_on_hugetlb",
                "exclusive_rejects_hugetlb",
            ],
        ]
        .concat();
        for (k, want) in [
            (Profile::linux_6_1(), with_hugetlb),
            (Profile::linux_6_12(), with_uffd),
        ] {
            let differ: Vec<&str> = SWITCHES
                .iter()
                .filter(|s| (s.get)(&k) != (s.get)(&e1))
                .map(|s| s.name)
                .collect();
            assert_eq!(differ, want, "{}", k.name);
            assert_eq!(k.restore_event, e1.restore_event, "{}", k.name);
            assert_eq!(k.restore_writability, e1.restore_writability, "{}", k.name);
        }
    }

    /// Linux 7.1 is 6.15 plus exactly the 6.19 khugepaged abort (spec 10.1).
    #[test]
    fn linux_7_1_is_the_2025_design_with_the_khugepaged_abort() {
        let (e2, k) = (Profile::linux_6_15(), Profile::linux_7_1());
        let differ: Vec<&str> = SWITCHES
            .iter()
            .filter(|s| (s.get)(&k) != (s.get)(&e2))
            .map(|s| s.name)
            .collect();
        assert_eq!(differ, ["khugepaged_aborts_on_non_swap_entries"]);
        assert_eq!(k.restore_event, e2.restore_event);
        assert_eq!(k.restore_writability, e2.restore_writability);
        assert_eq!(Profile::by_name("linux-7.1"), Some(k));
    }
}
