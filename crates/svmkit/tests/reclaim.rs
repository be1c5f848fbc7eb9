//! Reclaim that depends on the swap cache keeping a slot (spec 8 item 24) and reclaim
//! of a PTE-mapped large folio with a device-exclusive entry (spec 8 item 12, 4.7).

mod common;

use svmkit::mm::mmu_notifier::{MmuNotifierEvent, RecordingNotifier};
use svmkit::mm::{Advice, Folio, MmUser, PMD_SIZE, PageFlags, Pte};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, Profile, System};

use common::{BASE, FIXED, P, RW, checked, folio_at, va};

/// A system with a 1024-slot swap device (room for two whole THPs).
fn system(profile: Profile) -> (Arc<System>, MmUser) {
    let (sys, mm) = common::system(profile, 4096);
    sys.mem().swapon(1024).unwrap();
    (sys, mm)
}

fn make_exclusive(mm: &MmUser, addr: u64) {
    let mut g = mm.mmap_read_lock();
    drop(
        mm.make_device_exclusive(&mut g, addr, None, &Task::new("drv"))
            .unwrap(),
    );
}

fn is_entry(mm: &MmUser, a: u64) -> bool {
    matches!(mm.pte_get_lockless(va(a)), Pte::Swap(s) if s.is_device_exclusive())
}

fn is_swap(mm: &MmUser, a: u64) -> bool {
    matches!(mm.pte_get_lockless(va(a)), Pte::Swap(s) if s.is_swap())
}

fn entry_folio(sys: &System, mm: &MmUser, a: u64) -> Folio {
    match mm.pte_get_lockless(va(a)) {
        Pte::Swap(s) => sys.mem().page_folio(s.pfn().unwrap()).unwrap(),
        other => panic!("want an entry, got {other:?}"),
    }
}

/// Spec 8 item 24: the E1 restore sets the PTE dirty even for a clean folio. The
/// clean folio with an entry comes from 5.14's reclaim: the folio looks unmapped, so
/// `pageout()` writes it (and cleans it, `clear_page_dirty_for_io()`), and the entry's
/// reference keeps it in the swap cache with its slot (Linux 6.12 mm/vmscan.c,
/// `activate_locked`). A CPU read then restores the entry as a dirty PTE (spec 3, E1
/// `restore_exclusive_pte()`: `pte_mkdirty()` for a writable entry), so the next
/// reclaim writes the page out again although nothing changed: two write-outs. 6.15
/// swaps the entry out at the first reclaim (spec 4.7); the read swaps the page back
/// in clean and leaves the slot with the swap cache (Linux 6.12 `do_swap_page()`,
/// `should_try_to_free_swap()` false for a read), so the second reclaim frees the
/// clean folio without I/O: one write-out.
#[test]
fn excl_restore_dirties_a_clean_folio_in_5_14_and_costs_a_write_out() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let name = profile.name;
        let (sys, mm) = system(profile);
        mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 3).unwrap();
        make_exclusive(&mm, BASE);
        let f = entry_folio(&sys, &mm, BASE);
        let first = sys.mem().reclaim_folio(f);
        assert_eq!(sys.mem().swap_writeouts(), 1, "{name}: written once");
        if name == "linux-5.14" {
            // spec 4.7: written out, not freed; derived: pageout() cleaned it.
            assert_eq!(first, Err(Errno::EAGAIN));
            assert!(is_entry(&mm, BASE));
            assert!(!sys.mem().folio_test(f, PageFlags::DIRTY), "cleaned");
            assert_eq!(sys.mem().swap_slots_used(), 1, "the slot stays cached");
        } else {
            // spec 4.7: an ordinary swap entry.
            assert_eq!(first, Ok(()));
            assert!(is_swap(&mm, BASE));
        }
        checked(&sys);
        // A read, no write.
        assert_eq!(mm.read_u64(BASE).unwrap(), 3);
        let pte = mm.pte_get_lockless(va(BASE)).present().unwrap();
        if name == "linux-5.14" {
            // spec 8 item 24 / spec 3: the restore dirties the clean folio's PTE.
            assert!(pte.is_dirty() && pte.is_write(), "{name}: {pte:?}");
        } else {
            // Linux do_swap_page() for a read: not dirty.
            assert!(!pte.is_dirty(), "{name}: {pte:?}");
        }
        checked(&sys);
        assert_eq!(
            sys.mem().reclaim_folio(folio_at(&sys, &mm, BASE)),
            Ok(()),
            "{name}"
        );
        let want = if name == "linux-5.14" { 2 } else { 1 };
        assert_eq!(sys.mem().swap_writeouts(), want, "{name}: write-outs");
        assert!(is_swap(&mm, BASE));
        assert_eq!(mm.read_u64(BASE).unwrap(), 3, "{name}: data");
        checked(&sys);
    }
}

/// The slot a clean swapped-in folio keeps goes when the page is written (Linux:
/// `wp_can_reuse_anon_folio()` → `folio_free_swap()`, or `do_swap_page()` for a write
/// fault) or unmapped (`free_swap_cache()`): nothing is left behind (derived).
#[test]
fn a_kept_slot_goes_at_a_write_fault_and_at_munmap() {
    let (sys, mm) = system(Profile::linux_6_15());
    mm.mmap(BASE, 3 * P, RW, FIXED).unwrap();
    for i in 0..3 {
        mm.write_u64(BASE + i * P, 10 + i).unwrap();
    }
    assert_eq!(mm.reclaim_mm(3), 3);
    assert_eq!(sys.mem().swap_slots_used(), 3);
    // Page 0: a write fault on the swap entry frees its slot at once.
    mm.write_u64(BASE, 20).unwrap();
    assert_eq!(sys.mem().swap_slots_used(), 2);
    // Page 1: read in (slot kept), then written.
    assert_eq!(mm.read_u64(BASE + P).unwrap(), 11);
    assert_eq!(sys.mem().swap_slots_used(), 2);
    mm.write_u64(BASE + P, 21).unwrap();
    checked(&sys);
    // Page 2: read in, then unmapped.
    assert_eq!(mm.read_u64(BASE + 2 * P).unwrap(), 12);
    checked(&sys);
    mm.munmap(BASE, 3 * P).unwrap();
    assert_eq!(sys.mem().swap_slots_used(), 0);
    checked(&sys);
    drop(mm);
    assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
}

/// A whole THP in a fresh mapping, PTE-mapped, its pages holding `1000 + i`.
fn thp(sys: &System, mm: &MmUser, h: u64) -> Folio {
    mm.mmap(h, PMD_SIZE, RW, FIXED).unwrap();
    mm.madvise(h, PMD_SIZE, Advice::HugePage).unwrap();
    for i in 0..512 {
        mm.write_u64(h + i * P, 1000 + i).unwrap();
    }
    let f = folio_at(sys, mm, h);
    assert_eq!(f.order(), 9);
    f
}

/// Large-folio reclaim without entries: the THP goes to 512 aligned slots at once, each
/// page's PTE naming its own slot, and comes back page by page (Linux 6.12 mm/vmscan.c
/// with THP_SWAP: `add_to_swap()` of the whole folio, `try_to_unmap(TTU_SPLIT_HUGE_PMD)`;
/// derived). Both eras.
#[test]
fn a_thp_is_reclaimed_whole_in_both_eras() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let (sys, mm) = system(profile);
        let h = BASE + 4 * PMD_SIZE;
        let f = thp(&sys, &mm, h);
        let free = sys.mem().nr_free_pages();
        assert_eq!(sys.mem().reclaim_folio(f), Ok(()));
        assert_eq!(sys.mem().swap_writeouts(), 512);
        assert!(sys.mem().nr_free_pages() >= free + 512);
        let slot0 = match mm.pte_get_lockless(va(h)) {
            Pte::Swap(s) if s.is_swap() => s.offset,
            other => panic!("{other:?}"),
        };
        assert_eq!(slot0 % 512, 0, "naturally aligned");
        for i in [1u64, 200, 511] {
            match mm.pte_get_lockless(va(h + i * P)) {
                Pte::Swap(s) => assert_eq!(s.offset, slot0 + i),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(mm.rss_anon(), 0);
        checked(&sys);
        for i in 0..512 {
            assert_eq!(mm.read_u64(h + i * P).unwrap(), 1000 + i);
        }
        checked(&sys);
        // A GUP reference on a THP means it cannot be split: not reclaimed
        // (can_split_folio(), `activate_locked`).
        let g = thp(&sys, &mm, h + PMD_SIZE);
        let held = {
            let mut guard = mm.mmap_read_lock();
            mm.get_user_pages(&mut guard, h + PMD_SIZE, 1, svmkit::mm::GupFlags::GET)
                .unwrap()
        };
        assert_eq!(sys.mem().reclaim_folio(g), Err(Errno::EAGAIN));
        assert!(mm.translate(va(h + PMD_SIZE)).is_some(), "still mapped");
        sys.mem().put_page(held[0]);
        checked(&sys);
    }
}

/// A THP in the swap cache whose head is a device-exclusive entry and whose other
/// pages are mapped: reclaim meets the entry in `try_to_unmap_one()`. The folio gets
/// there as Linux's does: a first reclaim gave it slots and could not unmap it (a
/// VM_LOCKED VMA aborts the walk, the folio stays cached), then the mapping was
/// munlocked and the head made exclusive (5.14: the head's conversion converts every
/// PTE, spec 8 item 7, and CPU reads restore all but page 0).
///
/// 6.15 (fixes v2 10/17, spec 4.7): the entry becomes a swap entry for page 0's slot,
/// the device is told (Clear), the whole THP is written and freed, and the data
/// comes back. 5.14 to 6.14 (spec 8 item 12): the walk hands the entry over as a
/// present PTE, the subpage is x86-64's `pte_pfn()` of the swap PTE, the entry's pfn
/// shifted right by three (derived, `swp_misread.rs`), whose `page_swap_entry()` is 0
/// (that page is not in the swap cache): `swap_duplicate()` fails, the entry is put
/// back and the walk aborts (derived from 6.12 mm/rmap.c's present-PTE path). The
/// device was revoked all the same, reclaim fails and nothing is written.
#[test]
fn excl_thp_reclaim_misreads_the_entry_in_5_14_and_swaps_it_in_6_15() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let name = profile.name;
        let (sys, mm) = system(profile);
        let h = BASE + 4 * PMD_SIZE;
        let f = thp(&sys, &mm, h);
        mm.mlock(h, PMD_SIZE).unwrap();
        assert_eq!(sys.mem().reclaim_folio(f), Err(Errno::EAGAIN), "{name}");
        assert_eq!(
            sys.mem().swap_slots_used(),
            512,
            "{name}: cached, not written"
        );
        assert_eq!(sys.mem().swap_writeouts(), 0);
        mm.munlock(h, PMD_SIZE).unwrap();
        make_exclusive(&mm, h);
        for i in 1..512 {
            assert_eq!(mm.read_u64(h + i * P).unwrap(), 1000 + i);
        }
        assert!(is_entry(&mm, h), "{name}");
        checked(&sys);
        let rec = RecordingNotifier::new();
        mm.mmu_notifier_register(rec.clone()).unwrap();
        let r = sys.mem().reclaim_folio(f);
        assert!(
            rec.take()
                .iter()
                .any(|c| c.event == MmuNotifierEvent::Clear),
            "{name}: the device is told"
        );
        if name == "linux-6.15" {
            assert_eq!(r, Ok(()));
            assert_eq!(sys.mem().swap_writeouts(), 512);
            for i in 0..512 {
                assert!(is_swap(&mm, h + i * P), "{i}");
            }
            assert_eq!(mm.rss_anon(), 0);
            checked(&sys);
            for i in 0..512 {
                assert_eq!(mm.read_u64(h + i * P).unwrap(), 1000 + i);
            }
        } else {
            assert_eq!(r, Err(Errno::EAGAIN));
            assert_eq!(sys.mem().swap_writeouts(), 0, "nothing written");
            assert!(is_entry(&mm, h), "the entry is put back");
            assert!(mm.pte_get_lockless(va(h + P)).present().is_some());
            assert_eq!(mm.rss_anon(), 512, "RSS stays");
            checked(&sys);
            assert_eq!(mm.read_u64(h).unwrap(), 1000);
        }
        checked(&sys);
    }
}

/// Spec 8 item 12's worse outcome under 5.14: the garbage page `pte_pfn()` names is a
/// small anonymous page that is in the swap cache, so `page_swap_entry()` hands over
/// its slot, `swap_duplicate()` succeeds, and the THP's address gets a swap entry for
/// another page's contents; the garbage page's mapcount is dropped although its own
/// PTE still maps it, and the THP, its entry's reference put, is written out and freed
/// (derived from 6.12 mm/rmap.c's present-PTE path and x86-64's swap encoding,
/// `swp_misread.rs`). The checker sees the mapcount, a read of the THP's page sees
/// the other page's data. The test puts a small page, swapped in and so still cached,
/// at the frame `pfn >> 3` of one THP page and makes that page the entry.
#[test]
fn excl_thp_reclaim_5_14_installs_another_pages_slot() {
    let (sys, mm) = system(Profile::linux_5_14());
    // Small pages first: they take the low frames the misread lands on.
    let small = BASE;
    mm.mmap(small, 256 * P, RW, FIXED).unwrap();
    for i in 0..256 {
        mm.write_u64(small + i * P, 0x5000 + i).unwrap();
    }
    let h = BASE + 4 * PMD_SIZE;
    let f = thp(&sys, &mm, h);
    let head = f.head().raw();
    // A small page at a frame g with head <= 8g < head + 512.
    let (ga, g) = (0..256)
        .filter_map(|i| {
            let pfn = mm.translate(va(small + i * P))?.raw();
            (8 * pfn >= head && 8 * pfn < head + 512).then_some((small + i * P, pfn))
        })
        .next()
        .expect("a small page in the frames the misread reaches");
    let k = 8 * g - head;
    // The small page goes to swap and comes back on a read: cached, slot kept.
    let gf = folio_at(&sys, &mm, ga);
    sys.mem().reclaim_folio(gf).unwrap();
    let gval = mm.read_u64(ga).unwrap();
    assert_eq!(
        mm.translate(va(ga)).map(|p| p.raw()),
        Some(g),
        "read back in place"
    );
    // The THP into the swap cache (VM_LOCKED stops the unmap), then page k an entry.
    mm.mlock(h, PMD_SIZE).unwrap();
    assert_eq!(sys.mem().reclaim_folio(f), Err(Errno::EAGAIN));
    mm.munlock(h, PMD_SIZE).unwrap();
    make_exclusive(&mm, h);
    for i in (0..512).filter(|&i| i != k) {
        assert_eq!(mm.read_u64(h + i * P).unwrap(), 1000 + i);
    }
    assert!(is_entry(&mm, h + k * P));
    checked(&sys);
    let _ = sys.mem().reclaim_folio(f);
    // derived: page k's address names the small page's slot.
    let slot_of = |a: u64| match mm.pte_get_lockless(va(a)) {
        Pte::Swap(s) if s.is_swap() => Some(s.offset),
        _ => None,
    };
    let g_slot = sys
        .mem()
        .swap_usage()
        .into_iter()
        .find(|(_, _, c)| c.is_some_and(|c| c.head().raw() == g))
        .map(|(s, _, _)| s);
    assert!(g_slot.is_some(), "the small page is still cached");
    assert_eq!(slot_of(h + k * P), g_slot, "another page's slot");
    let err = sys
        .check()
        .expect_err("5.14: the checker sees the mapcount");
    assert!(
        err.violations
            .iter()
            .any(|v| v.pfn.map(|p| p.raw()) == Some(g)),
        "{err}"
    );
    // The THP's page k now reads what the small page holds.
    assert_eq!(mm.read_u64(h + k * P).unwrap(), gval);
    assert_ne!(gval, 1000 + k);
}
