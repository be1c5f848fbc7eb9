//! hugetlb (`MAP_HUGETLB`, mm/hugetlb.rs) and the device-exclusive paths that meet
//! it per era (spec 4.12, 8 items 19 and 20).
//!
//! Sources: the hugetlb behaviour (a read fault allocates and maps read-only, a write
//! reuses an exclusive folio, COW copies all 2 MiB, mprotect does no write upgrade,
//! the 2 MiB alignment errnos) is read in mm/hugetlb.c, mm/mmap.c and mm/madvise.c of
//! the Debian 6.12.117 tree; the era behaviour in spec 4.12 and the two Debian trees
//! (mm/gup.c `check_vma_flags()`, mm/rmap.c `folio_make_device_exclusive()`); the
//! 5.14 consequence of item 20 is derived from 5.14's `page_make_device_exclusive_one()`
//! and the Debian 6.1.192 tree's `hugetlb_fault()` and `__unmap_hugepage_range()`
//! (which 5.14 shares): see each test.

mod common;

use svmkit::mm::{Advice, GupFlags, HugePte, MapFlags, MremapFlags, Pmd, Prot};
use svmkit::task::Task;
use svmkit::{Errno, FaultKind, Profile};

use common::{BASE, FIXED, P, RW, checked, system, va};

/// One huge page.
const H: u64 = 2 << 20;
/// Enough frames for a few 2 MiB folios.
const FRAMES: u64 = 8192;

fn hfixed() -> MapFlags {
    FIXED | MapFlags::HUGETLB
}

fn hugetlb_pmd(mm: &svmkit::mm::MmUser, a: u64) -> Option<svmkit::mm::PresentPte> {
    match mm.huge_ptep_get(va(a)) {
        HugePte::Present(p) => Some(p),
        _ => None,
    }
}

#[test]
fn a_hugetlb_fault_maps_one_2mib_folio_read_only_then_a_write_reuses_it() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let (sys, mm) = system(profile, FRAMES);
        let free = sys.mem().nr_free_pages();
        mm.mmap(BASE, H, RW, hfixed()).unwrap();
        // Derived (hugetlb_no_page(): no zero page, a private read maps read-only).
        assert_eq!(mm.read_u64(BASE + 5 * P).unwrap(), 0);
        let p = hugetlb_pmd(&mm, BASE).expect("a hugetlb PMD");
        assert!(!p.is_write(), "{}", profile.name);
        let folio = sys.mem().page_folio(p.pfn).unwrap();
        assert_eq!(folio.nr_pages(), 512);
        assert!(sys.mem().folio_test_hugetlb(folio));
        assert_eq!(sys.mem().page(p.pfn).unwrap().entire_mapcount(), 1);
        // Linux counts hugetlb pages in HugetlbPages, not MM_ANONPAGES.
        assert_eq!(mm.rss_anon(), 0);
        checked(&sys);
        // Derived (hugetlb_wp(): an exclusive anon folio is reused).
        mm.write_u64(BASE + 7 * P, 42).unwrap();
        let w = hugetlb_pmd(&mm, BASE).unwrap();
        assert!(w.is_write() && w.pfn == p.pfn, "{}", profile.name);
        assert_eq!(
            mm.translate(va(BASE + 7 * P)).unwrap().raw(),
            p.pfn.raw() + 7
        );
        // GUP hands out the subpage (follow_hugetlb_page() / follow_huge_pmd()).
        let mut g = mm.mmap_read_lock();
        let pages = mm
            .get_user_pages(&mut g, BASE + 9 * P, 2, GupFlags::GET)
            .unwrap();
        drop(g);
        assert_eq!(pages[0].raw(), p.pfn.raw() + 9);
        assert_eq!(pages[1].raw(), p.pfn.raw() + 10);
        for pfn in pages {
            sys.mem().put_page(pfn);
        }
        checked(&sys);
        mm.munmap(BASE, H).unwrap();
        assert_eq!(mm.huge_ptep_get(va(BASE)), HugePte::None);
        checked(&sys);
        assert_eq!(sys.mem().nr_free_pages(), free, "{}", profile.name);
    }
}

/// The 2 MiB rules of a hugetlb VMA and the calls the model refuses on it.
#[test]
fn hugetlb_mappings_keep_to_2mib_and_refuse_what_linux_refuses() {
    let (sys, mm) = system(Profile::linux_6_15(), FRAMES);
    // Linux: ksys_mmap_pgoff() rounds the length up; the area is 2 MiB aligned.
    let flags = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::HUGETLB;
    let a = mm.mmap(0, P, RW, flags).unwrap().raw();
    assert_eq!(a % H, 0);
    assert_eq!(mm.mmap_read_lock().find(va(a)).unwrap().len(), H);
    // Linux: prepare_hugepage_range() wants a 2 MiB-aligned fixed address.
    assert_eq!(mm.mmap(BASE + P, H, RW, hfixed()), Err(Errno::EINVAL));
    // Deviation (docs/ARCHITECTURE.md 46): no shared hugetlb.
    let shared = MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::HUGETLB;
    assert_eq!(mm.mmap(0, H, RW, shared), Err(Errno::EINVAL));
    mm.mmap(BASE, 2 * H, RW, hfixed()).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    mm.write_u64(BASE + H, 2).unwrap();
    // Linux: hugetlb_vm_op_split() refuses a cut off 2 MiB.
    assert_eq!(mm.munmap(BASE + P, P), Err(Errno::EINVAL));
    assert_eq!(mm.mprotect(BASE, P, Prot::READ), Err(Errno::EINVAL));
    assert_eq!(
        mm.madvise(BASE + P, P, Advice::HugePage),
        Err(Errno::EINVAL)
    );
    // Linux: madvise_dontneed_free_valid_vma(): an aligned start, the end aligned down.
    assert_eq!(
        mm.madvise(BASE + P, H, Advice::DontNeed),
        Err(Errno::EINVAL)
    );
    assert_eq!(mm.madvise(BASE, P, Advice::DontNeed), Ok(()));
    assert_eq!(
        mm.read_u64(BASE).unwrap(),
        1,
        "a 4 KiB DONTNEED zaps nothing"
    );
    // Linux: can_madv_lru_vma() and thp_vma_allowable_order() refuse hugetlb.
    assert_eq!(mm.madvise(BASE, H, Advice::PageOut), Err(Errno::EINVAL));
    assert_eq!(mm.madvise(BASE, H, Advice::Collapse), Err(Errno::EINVAL));
    // Linux 5.14 vma_to_resize(): EINVAL (the model keeps that, ARCHITECTURE.md 46).
    assert_eq!(
        mm.mremap(BASE, H, 2 * H, MremapFlags::MAYMOVE, 0),
        Err(Errno::EINVAL)
    );
    // Deviations (ARCHITECTURE.md 46): no uffd-wp nor uprobes on hugetlb.
    assert_eq!(mm.uffd_writeprotect(BASE, H, true), Err(Errno::EINVAL));
    assert_eq!(mm.uprobe_write_opcode(BASE, 0xcc), Err(Errno::EINVAL));
    // Linux: mlock_fixup() does not set VM_LOCKED on hugetlb (but populates).
    mm.mlock(BASE, 2 * H).unwrap();
    assert!(
        !mm.mmap_read_lock()
            .find(va(BASE))
            .unwrap()
            .flags
            .contains(svmkit::mm::VmFlags::LOCKED)
    );
    // Linux: ksm_madvise() leaves hugetlb VMAs alone, without an error.
    assert_eq!(mm.madvise(BASE, H, Advice::Mergeable), Ok(()));
    assert_eq!(mm.madvise(BASE, H, Advice::DontNeed), Ok(()));
    assert_eq!(mm.huge_ptep_get(va(BASE)), HugePte::None);
    assert_eq!(mm.read_u64(BASE + H).unwrap(), 2);
    mm.munmap(BASE, H).unwrap();
    assert_eq!(mm.read_u64(BASE + H).unwrap(), 2);
    checked(&sys);
}

/// fork shares the folio write-protected; the first write copies all 2 MiB, the
/// other side then reuses its now unshared folio (derived: copy_hugetlb_page_range(),
/// hugetlb_wp()).
#[test]
fn fork_shares_a_hugetlb_folio_and_a_write_copies_all_of_it() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let (sys, mm) = system(profile, FRAMES);
        mm.mmap(BASE, H, RW, hfixed()).unwrap();
        mm.write_u64(BASE, 1).unwrap();
        mm.write_u64(BASE + H - 8, 2).unwrap();
        let child = sys.fork(&mm).unwrap();
        let (pp, cp) = (
            hugetlb_pmd(&mm, BASE).unwrap(),
            hugetlb_pmd(&child, BASE).unwrap(),
        );
        assert_eq!(pp.pfn, cp.pfn);
        assert!(!pp.is_write() && !cp.is_write(), "{}", profile.name);
        assert_eq!(sys.mem().page(pp.pfn).unwrap().entire_mapcount(), 2);
        checked(&sys);
        child.write_u64(BASE, 10).unwrap();
        let c2 = hugetlb_pmd(&child, BASE).unwrap();
        assert_ne!(c2.pfn, pp.pfn);
        assert!(c2.is_write());
        assert_eq!(child.read_u64(BASE + H - 8).unwrap(), 2, "all 2 MiB copied");
        assert_eq!(mm.read_u64(BASE).unwrap(), 1);
        mm.write_u64(BASE, 11).unwrap();
        assert_eq!(hugetlb_pmd(&mm, BASE).unwrap().pfn, pp.pfn, "reused");
        assert_eq!(child.read_u64(BASE).unwrap(), 10);
        checked(&sys);
        drop(child);
        checked(&sys);
    }
}

/// A pinned hugetlb folio is copied for the child at fork, so the pin keeps seeing
/// what the parent writes (derived: copy_hugetlb_page_range()'s
/// folio_try_dup_anon_rmap() failure path).
#[test]
fn fork_copies_a_pinned_hugetlb_folio_for_the_child() {
    let (sys, mm) = system(Profile::linux_6_15(), FRAMES);
    mm.mmap(BASE, H, RW, hfixed()).unwrap();
    mm.write_u64(BASE + 3 * P, 5).unwrap();
    let mut g = mm.mmap_read_lock();
    let pins = mm
        .pin_user_pages(&mut g, BASE + 3 * P, 1, GupFlags::WRITE)
        .unwrap();
    drop(g);
    let child = sys.fork(&mm).unwrap();
    let (pp, cp) = (
        hugetlb_pmd(&mm, BASE).unwrap(),
        hugetlb_pmd(&child, BASE).unwrap(),
    );
    assert_ne!(pp.pfn, cp.pfn);
    assert!(pp.is_write(), "the parent keeps its writable mapping");
    assert_eq!(child.read_u64(BASE + 3 * P).unwrap(), 5);
    mm.write_u64(BASE + 3 * P, 6).unwrap();
    assert_eq!(mm.translate(va(BASE + 3 * P)), Some(pins[0]));
    assert_eq!(child.read_u64(BASE + 3 * P).unwrap(), 5);
    sys.mem().unpin_user_pages(&pins);
    checked(&sys);
}

/// mprotect back to writable leaves the PMD read-only (no write upgrade in
/// hugetlb_change_protection()): the next write takes one fault (derived).
#[test]
fn mprotect_on_hugetlb_has_no_write_upgrade() {
    let (sys, mm) = system(Profile::linux_6_15(), FRAMES);
    mm.mmap(BASE, H, RW, hfixed()).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    mm.mprotect(BASE, H, Prot::READ).unwrap();
    assert_eq!(
        mm.write_u64(BASE, 2).unwrap_err().kind,
        FaultKind::Protection
    );
    mm.mprotect(BASE, H, RW).unwrap();
    assert!(!hugetlb_pmd(&mm, BASE).unwrap().is_write());
    let mut faults = 0;
    mm.write_u64_counting(BASE, 3, &mut faults).unwrap();
    assert_eq!(faults, 1);
    assert_eq!(mm.read_u64(BASE).unwrap(), 3);
    checked(&sys);
}

/// Spec 8 item 19, fixed: GUP refuses FOLL_SPLIT_PMD on a hugetlb VMA with
/// EOPNOTSUPP (fixes v2 01/17), so the conversion returns it: 6.15's
/// `make_device_exclusive()` (spec 2.4 step 2) and the 6.12.117 preset's range API
/// (the Debian tree's `check_vma_flags()`; the range API returns GUP's error when
/// the first page fails). The mapping is untouched.
#[test]
fn exclusive_on_hugetlb_is_eopnotsupp_with_the_gup_fix() {
    for profile in [
        Profile::linux_6_12(),
        Profile::linux_6_15(),
        Profile::linux_7_1(),
    ] {
        let (sys, mm) = system(profile, FRAMES);
        mm.mmap(BASE, H, RW, hfixed()).unwrap();
        mm.write_u64(BASE, 9).unwrap();
        let before = hugetlb_pmd(&mm, BASE).unwrap();
        let task = Task::new("t");
        let mut g = mm.mmap_read_lock();
        let r = if profile.has_range_api {
            mm.make_device_exclusive_range(&mut g, BASE, BASE + P, None, &task)
                .map(|_| ())
        } else {
            mm.make_device_exclusive(&mut g, BASE, None, &task)
                .map(|_| ())
        };
        drop(g);
        assert_eq!(r, Err(Errno::EOPNOTSUPP), "{}", profile.name);
        assert_eq!(hugetlb_pmd(&mm, BASE), Some(before));
        assert_eq!(mm.read_u64(BASE).unwrap(), 9);
        assert!(sys.mem().bad_pages().is_empty());
        checked(&sys);
    }
}

/// Spec 8 item 19, the flaw: with 6.10's generic GUP walk and without 01/17
/// (`gup_rejects_split_pmd_on_hugetlb` off: Linux 6.10 to 6.14.1, 6.12.0 to 6.12.22
/// on this 6.12 base), FOLL_SPLIT_PMD calls `split_huge_pmd()` on the hugetlb PMD,
/// which trips page_table_check's BUG (CVE-2025-22034). The model reports it as a
/// bad page, which the checker flags, and fails the GUP (EFAULT).
#[test]
fn exclusive_on_hugetlb_hits_the_page_table_check_bug_before_the_gup_fix() {
    let mut profile = Profile::linux_6_12();
    profile.gup_rejects_split_pmd_on_hugetlb = false;
    let (sys, mm) = system(profile, FRAMES);
    mm.mmap(BASE, H, RW, hfixed()).unwrap();
    mm.write_u64(BASE, 9).unwrap();
    let task = Task::new("t");
    let mut g = mm.mmap_read_lock();
    let r = mm
        .make_device_exclusive_range(&mut g, BASE, BASE + P, None, &task)
        .map(|_| ());
    drop(g);
    assert_eq!(r, Err(Errno::EFAULT));
    let e = sys.check().unwrap_err();
    assert!(
        e.violations
            .iter()
            .any(|v| v.what.contains("page_table_check BUG")),
        "{e}"
    );
    let bad = sys.mem().take_bad_pages();
    assert_eq!(bad.len(), 1);
    assert!(bad[0].reason.starts_with("page_table_check BUG"));
    checked(&sys);
}

/// Spec 8 item 20 under 5.14 (derived, see the module docs): GUP ignores
/// FOLL_SPLIT_PMD on hugetlb, the head passes the tail check (a tail page gives
/// NULL), and the rmap walk converts the hugetlb PMD as if it were a PTE: a
/// device-exclusive entry lands in the PMD slot, `page_remove_rmap(head, false)`
/// drops a PTE mapcount hugetlb never had (the model reports the underflow), and the
/// conversion counts as a success. The checker flags the entry; a CPU access then
/// faults forever (`hugetlb_fault()` returns 0 on a non-present entry: the model's
/// `Livelock`); munmap clears the entry without dropping the mapping's reference, so
/// the folio is never freed.
#[test]
fn e1_converts_a_hugetlb_pmd_as_a_pte_in_5_14() {
    let (sys, mm) = system(Profile::linux_5_14(), FRAMES);
    let free = sys.mem().nr_free_pages();
    mm.mmap(BASE, H, RW, hfixed()).unwrap();
    mm.write_u64(BASE, 9).unwrap();
    let head = hugetlb_pmd(&mm, BASE).unwrap().pfn;
    let task = Task::new("t");
    let mut g = mm.mmap_read_lock();
    let pages = mm
        .make_device_exclusive_range(&mut g, BASE, BASE + 2 * P, None, &task)
        .unwrap();
    drop(g);
    assert_eq!(pages.len(), 2);
    assert!(pages[1].is_none(), "a tail page gives NULL");
    assert_eq!(pages[0].as_ref().map(|f| f.page()), Some(head));
    drop(pages);
    match mm.huge_ptep_get(va(BASE)) {
        HugePte::NonPresent(e) => {
            assert!(e.is_device_exclusive() && e.pfn() == Some(head), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(mm.pmd_get_lockless(va(BASE)), Pmd::None);
    let bad = sys.mem().take_bad_pages();
    assert_eq!(
        bad.iter().map(|b| b.reason).collect::<Vec<_>>(),
        ["mapcount underflow"]
    );
    let e = sys.check().unwrap_err();
    assert!(
        e.violations
            .iter()
            .any(|v| v.what.contains("in a hugetlb PMD")),
        "{e}"
    );
    assert_eq!(mm.read_u64(BASE).unwrap_err().kind, FaultKind::Livelock);
    mm.munmap(BASE, H).unwrap();
    assert!(sys.mem().bad_pages().is_empty());
    // The mapping's reference is never dropped: the 512 frames stay allocated and the
    // checker finds a folio nothing accounts for.
    assert!(sys.check().is_err());
    assert_eq!(sys.mem().nr_free_pages() + 512, free);
}

/// Spec 8 item 20, fixed: the Debian 6.1.192 tree's `folio_make_device_exclusive()`
/// refuses hugetlb folios (stable backport of 02/17), so the range API gives NULL
/// for the page and the mapping is untouched; before 6.10 its GUP still ignores
/// FOLL_SPLIT_PMD (no page_table_check BUG either).
#[test]
fn e1_refuses_hugetlb_folios_in_6_1() {
    let (sys, mm) = system(Profile::linux_6_1(), FRAMES);
    mm.mmap(BASE, H, RW, hfixed()).unwrap();
    mm.write_u64(BASE, 9).unwrap();
    let before = hugetlb_pmd(&mm, BASE).unwrap();
    let task = Task::new("t");
    let mut g = mm.mmap_read_lock();
    let pages = mm
        .make_device_exclusive_range(&mut g, BASE, BASE + P, None, &task)
        .unwrap();
    drop(g);
    assert_eq!(pages.len(), 1);
    assert!(pages[0].is_none());
    drop(pages);
    assert_eq!(hugetlb_pmd(&mm, BASE), Some(before));
    assert_eq!(mm.read_u64(BASE).unwrap(), 9);
    assert!(sys.mem().bad_pages().is_empty());
    checked(&sys);
}
