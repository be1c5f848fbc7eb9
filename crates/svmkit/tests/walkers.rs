//! The rmap walkers of spec 4.18 that read accessed bits (page_idle, DAMON's
//! physical-address sampling, reclaim aging) meeting device-exclusive entries, per era
//! (spec 8 items 15-18). The model's architecture is x86-64, where the accessed bit of
//! a swap word is always clear and `pte_pfn()` of one is the offset shifted right by
//! three (`crates/svmkit/src/mm/swp_misread.rs`, derived from the kernel's macros).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use svmkit::mm::mmu_notifier::MmuNotifierOps;
use svmkit::mm::{Advice, Folio, Mm, MmUser, PMD_SIZE, PageFlags, Pte};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, Pfn, Profile, System};

use common::{BASE, FIXED, P, RW, checked, folio_at, system, va};

const ERAS: [Profile; 2] = [Profile::linux_5_14(), Profile::linux_6_15()];

/// A device that accessed the page at `addr` (a classic notifier subscriber with the
/// young callbacks, as KVM has; dmirror and nouveau have none).
struct YoungDevice {
    addr: u64,
    accessed: AtomicBool,
}

impl MmuNotifierOps for YoungDevice {
    fn clear_young(&self, _mm: &Mm, start: u64, end: u64) -> bool {
        (start..end).contains(&self.addr) && self.accessed.swap(false, Ordering::SeqCst)
    }

    fn test_young(&self, _mm: &Mm, addr: u64) -> bool {
        addr == self.addr && self.accessed.load(Ordering::SeqCst)
    }
}

fn device(mm: &MmUser, addr: u64) -> Arc<YoungDevice> {
    let d = Arc::new(YoungDevice {
        addr,
        accessed: AtomicBool::new(false),
    });
    mm.mmu_notifier_register(d.clone()).unwrap();
    d
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

/// A THP at `h`, PTE-mapped, page 0 a device-exclusive entry, the others present
/// (5.14: the head's conversion converts every PTE, spec 2.1, and the reads restore
/// pages 1..512; 6.15 converts page 0 only, spec 2.4).
fn thp_with_entry_at_head(sys: &System, mm: &MmUser, h: u64) -> Folio {
    mm.mmap(h, PMD_SIZE, RW, FIXED).unwrap();
    mm.madvise(h, PMD_SIZE, Advice::HugePage).unwrap();
    for i in 0..512 {
        mm.write_u64(h + i * P, i).unwrap();
    }
    let thp = folio_at(sys, mm, h);
    assert_eq!(thp.order(), 9);
    make_exclusive(mm, h);
    for i in 1..512 {
        mm.read_u64(h + i * P).unwrap();
    }
    assert!(is_entry(mm, h));
    thp
}

fn flags(sys: &System, f: Folio) -> (bool, bool) {
    let head = sys.mem().page(f.head()).unwrap();
    (head.test(PageFlags::IDLE), head.test(PageFlags::YOUNG))
}

/// Spec 8 item 17 (`damon_ptep_mkold`). Small pages fill the low frames first so that
/// the frame E1 computes from the entry (its pfn >> 3) holds one of them. With the
/// present PTEs made old and the folio's young flag cleared, a device access to page 0
/// is reported by the notifier for the entry's address. 6.15 (fixes v2 15/17): the
/// THP becomes young. E1: the answer goes to the folio at pfn >> 3 (derived from
/// x86-64's `pte_pfn()`), which becomes idle and young while the THP stays not young.
#[test]
fn damon_mkold_marks_the_folio_at_pfn_shr_3_in_5_14_and_the_entry_folio_in_6_15() {
    for profile in ERAS {
        let (sys, mm) = system(profile, 4096);
        let small = BASE + 16 * PMD_SIZE;
        mm.mmap(small, 600 * P, RW, FIXED).unwrap();
        for i in 0..600 {
            mm.write_u64(small + i * P, i).unwrap();
        }
        let h = BASE + 4 * PMD_SIZE;
        let thp = thp_with_entry_at_head(&sys, &mm, h);
        let garbage = sys
            .mem()
            .page_folio(Pfn::new(thp.head().raw() >> 3))
            .unwrap();
        assert!(
            sys.mem().folio_test(garbage, PageFlags::ANON) && garbage.order() == 0,
            "precondition: frame {:?} holds one of the small pages",
            garbage
        );
        let dev = device(&mm, h);
        sys.mem().damon_pa_mkold(thp.head());
        sys.mem().folio_clear(thp, PageFlags::YOUNG);
        sys.mem()
            .folio_clear(garbage, PageFlags::IDLE | PageFlags::YOUNG);
        dev.accessed.store(true, Ordering::SeqCst);
        sys.mem().damon_pa_mkold(thp.head());
        if profile.name == "linux-6.15" {
            // spec 4.18: pfn from the entry, notifier clear_young.
            assert_eq!(flags(&sys, thp), (true, true));
            assert_eq!(flags(&sys, garbage), (false, false));
        } else {
            // derived: the THP is marked idle through its present PTEs, but the
            // device's access was credited to the folio at pfn >> 3.
            assert_eq!(flags(&sys, thp), (true, false));
            assert_eq!(flags(&sys, garbage), (true, true));
        }
        checked(&sys);
    }
}

/// Spec 8 item 16 (`damon_folio_young_one`): after mkold, nothing accessed the THP:
/// both eras say "not accessed" (x86-64: the entry's accessed bit reads 0, derived;
/// 6.15 skips non-present PTEs, spec 4.18). A device access (notifier test_young) or
/// a CPU access makes it "accessed" in both.
#[test]
fn damon_young_reads_an_entry_as_old_in_both_eras() {
    for profile in ERAS {
        let (sys, mm) = system(profile, 4096);
        let h = BASE + 4 * PMD_SIZE;
        let thp = thp_with_entry_at_head(&sys, &mm, h);
        let dev = device(&mm, h);
        sys.mem().damon_pa_mkold(thp.head());
        assert_eq!(
            sys.mem().damon_pa_young(thp.head()),
            Some(false),
            "{}",
            profile.name
        );
        dev.accessed.store(true, Ordering::SeqCst);
        assert_eq!(
            sys.mem().damon_pa_young(thp.head()),
            Some(true),
            "{}",
            profile.name
        );
        dev.accessed.store(false, Ordering::SeqCst);
        mm.read_u64(h + 7 * P).unwrap();
        assert_eq!(
            sys.mem().damon_pa_young(thp.head()),
            Some(true),
            "{}",
            profile.name
        );
        // Not a user folio: DAMON cannot sample it (damon_get_folio() returns NULL).
        assert_eq!(sys.mem().damon_pa_young(Pfn::new(0)), None);
        checked(&sys);
    }
}

/// Spec 8 item 15 (`page_idle_clear_pte_refs_one`) on a THP: both eras report the
/// THP idle when nothing accessed it and not idle after a device access (E1's
/// `ptep_clear_young_notify()` also asks the notifier; x86-64: the entry's accessed
/// bit reads 0, derived; 6.15: spec 4.18).
#[test]
fn page_idle_thp_with_an_entry_is_idle_until_the_device_accesses_it_in_both_eras() {
    for profile in ERAS {
        let (sys, mm) = system(profile, 4096);
        let h = BASE + 4 * PMD_SIZE;
        let thp = thp_with_entry_at_head(&sys, &mm, h);
        let dev = device(&mm, h);
        let first = thp.head().raw() & !63;
        let bit = 1u64 << (thp.head().raw() - first);
        assert_eq!(sys.mem().page_idle_bitmap_write(first, &[bit]), Ok(1));
        assert_eq!(
            sys.mem().page_idle_bitmap_read(first, 1).unwrap()[0] & bit,
            bit,
            "{}",
            profile.name
        );
        dev.accessed.store(true, Ordering::SeqCst);
        assert_eq!(
            sys.mem().page_idle_bitmap_read(first, 1).unwrap()[0] & bit,
            0,
            "{}",
            profile.name
        );
        assert!(sys.mem().folio_test(thp, PageFlags::YOUNG));
        // A tail frame is never reported (page_idle_get_folio() refuses tails).
        assert_eq!(
            sys.mem().page_idle_bitmap_read(first, 1).unwrap()[0] & (bit << 1),
            0
        );
        checked(&sys);
    }
}

/// What the page_idle walk sees of a small folio whose only PTE is an entry, after a
/// device access. 6.15: the mapcount is kept (fixes v2 16/17), the walk asks the
/// notifier, the page is not idle. 5.14: the folio looks unmapped (spec 8 item 8), the
/// walk never runs, and the page is reported idle although the device used it
/// (derived: `page_idle_clear_pte_refs()` returns early for an unmapped folio).
#[test]
fn page_idle_small_folio_with_an_entry_idle_in_5_14_accessed_in_6_15() {
    for profile in ERAS {
        let (sys, mm) = system(profile, 1024);
        mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 1).unwrap();
        make_exclusive(&mm, BASE);
        let pfn = match mm.pte_get_lockless(va(BASE)) {
            Pte::Swap(s) => s.pfn().unwrap(),
            other => panic!("{other:?}"),
        };
        let dev = device(&mm, BASE);
        let first = pfn.raw() & !63;
        let bit = 1u64 << (pfn.raw() - first);
        sys.mem().page_idle_bitmap_write(first, &[bit]).unwrap();
        dev.accessed.store(true, Ordering::SeqCst);
        let idle = sys.mem().page_idle_bitmap_read(first, 1).unwrap()[0] & bit != 0;
        assert_eq!(idle, profile.name == "linux-5.14", "{}", profile.name);
        // Item 18 on the same page (folio_referenced, unchanged in every era): 6.15
        // counts the device's access plus the young flag the page_idle walk left
        // (folio_test_clear_young(), derived); 5.14 sees an unmapped folio (0).
        dev.accessed.store(true, Ordering::SeqCst);
        let f = sys.mem().page_folio(pfn).unwrap();
        let refs = sys.mem().folio_referenced(f);
        assert_eq!(
            refs,
            if profile.name == "linux-5.14" { 0 } else { 2 },
            "{}",
            profile.name
        );
        assert!(is_entry(&mm, BASE));
        checked(&sys);
    }
}

/// Spec 8 item 18 (`folio_referenced_one`, unfixed in every era, spec 9.3): the entry
/// of a THP is tested as if present. On x86-64 it reads old (derived), so with the
/// present PTEs aged only the device's answer counts, in both eras.
#[test]
fn folio_referenced_counts_the_device_not_the_entry_bits_in_both_eras() {
    for profile in ERAS {
        let (sys, mm) = system(profile, 4096);
        let h = BASE + 4 * PMD_SIZE;
        let thp = thp_with_entry_at_head(&sys, &mm, h);
        let dev = device(&mm, h);
        // The reads and writes left 511 young PTEs.
        assert_eq!(sys.mem().folio_referenced(thp), 511, "{}", profile.name);
        assert_eq!(sys.mem().folio_referenced(thp), 0, "{}", profile.name);
        dev.accessed.store(true, Ordering::SeqCst);
        assert_eq!(sys.mem().folio_referenced(thp), 1, "{}", profile.name);
        assert!(is_entry(&mm, h), "{}: aging leaves the entry", profile.name);
        checked(&sys);
    }
}

/// Bad input: the bitmap's start must be a multiple of 64 frames (EINVAL); at or
/// beyond the last frame a write fails with ENXIO and a read returns nothing (end of
/// file), as Linux's `page_idle_bitmap_write()/read()` do (mm/page_idle.c).
#[test]
fn page_idle_bitmap_rejects_unaligned_and_out_of_range_offsets() {
    let (sys, _mm) = system(Profile::linux_6_15(), 1024);
    assert_eq!(
        sys.mem().page_idle_bitmap_write(3, &[1]),
        Err(Errno::EINVAL)
    );
    assert_eq!(sys.mem().page_idle_bitmap_read(3, 1), Err(Errno::EINVAL));
    assert_eq!(
        sys.mem().page_idle_bitmap_write(1024, &[1]),
        Err(Errno::ENXIO)
    );
    assert_eq!(sys.mem().page_idle_bitmap_read(1 << 40, 1), Ok(vec![]));
    // Words past the last frame are not consumed.
    assert_eq!(sys.mem().page_idle_bitmap_read(960, 5).unwrap().len(), 1);
    // Frames that are not user folios are never idle.
    assert_eq!(sys.mem().page_idle_bitmap_write(0, &[!0]), Ok(1));
    assert_eq!(sys.mem().page_idle_bitmap_read(0, 1).unwrap(), vec![0]);
}
