//! Address spaces, page tables, faults, mmap/munmap/mprotect/madvise and the invariant
//! checker, through the public API.

mod common;

use svmkit::mm::{Advice, MapFlags, MmUser, PageFlags, Prot, Pte, VmFlags};
use svmkit::sync::Arc;
use svmkit::{Access, Errno, FaultKind, PAGE_SIZE, System, SystemConfig, VirtAddr};

use common::checked;

const RW: Prot = Prot::READ.union(Prot::WRITE);
const ANON: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);
const FIXED: MapFlags = ANON.union(MapFlags::FIXED);
const BASE: u64 = 0x4000_0000;

fn system(frames: u64) -> (Arc<System>, MmUser) {
    let sys = System::new(SystemConfig::with_frames(frames)).unwrap();
    let mm = sys.create_mm().unwrap();
    (sys, mm)
}

fn va(x: u64) -> VirtAddr {
    VirtAddr::try_new(x).unwrap()
}

fn pte(mm: &MmUser, addr: u64) -> Pte {
    mm.pte_get_lockless(va(addr))
}

fn present(mm: &MmUser, addr: u64) -> svmkit::mm::PresentPte {
    pte(mm, addr)
        .present()
        .unwrap_or_else(|| panic!("no present PTE at {addr:#x}: {:?}", pte(mm, addr)))
}

fn vmas(mm: &MmUser) -> Vec<(u64, u64, VmFlags)> {
    mm.mmap_read_lock()
        .iter()
        .map(|v| (v.start().raw(), v.end().raw(), v.flags))
        .collect()
}

fn table_frames(mm: &MmUser) -> usize {
    let mut n = 0;
    mm.walk_tables(|_| n += 1);
    n
}

#[test]
fn anon_fault_read_maps_zero_page_then_write_replaces_it() {
    let (sys, mm) = system(1024);
    let other = sys.create_mm().unwrap();
    let a = mm.mmap(0, 4 * PAGE_SIZE, RW, ANON).unwrap().raw();
    let b = other.mmap(0, PAGE_SIZE, Prot::READ, ANON).unwrap().raw();
    let zero = sys.mem().zero_pfn();

    assert_eq!(mm.read_u64(a).unwrap(), 0);
    assert_eq!(other.read_u64(b).unwrap(), 0);
    let (pa, pb) = (present(&mm, a), present(&other, b));
    assert_eq!(pa.pfn, zero, "a read of fresh memory maps the zero page");
    assert_eq!(pb.pfn, zero, "shared by every process");
    assert!(!pa.is_write() && pa.is_special());
    assert_eq!(mm.rss_anon(), 0);
    checked(&sys);

    mm.write_u64(a + 8, 0xabc).unwrap();
    let p = present(&mm, a);
    assert_ne!(p.pfn, zero, "the write replaced the zero page");
    assert!(p.is_write() && p.is_dirty() && p.is_young());
    assert_eq!(mm.read_u64(a + 8).unwrap(), 0xabc);
    assert_eq!(mm.read_u64(a).unwrap(), 0, "the new page is zeroed");
    let folio = sys.mem().page_folio(p.pfn).unwrap();
    assert!(sys.mem().folio_test(folio, PageFlags::ANON));
    let page = sys.mem().page(p.pfn).unwrap();
    assert!(page.test(PageFlags::ANON_EXCLUSIVE));
    assert_eq!((page.mapcount(), sys.mem().folio_ref_count(folio)), (1, 1));
    assert_eq!(mm.rss_anon(), 1);
    assert_eq!(
        present(&other, b).pfn,
        zero,
        "the other process still sees zeroes"
    );
    assert_eq!(other.read_u64(b).unwrap(), 0);

    // A first touch that is a write allocates directly.
    let faults = mm.stats().faults.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(mm.fetch_add_u64(a + PAGE_SIZE, 5).unwrap(), 0);
    assert_eq!(mm.fetch_add_u64(a + PAGE_SIZE, 5).unwrap(), 5);
    assert_eq!(mm.read_u64(a + PAGE_SIZE).unwrap(), 10);
    assert_eq!(
        mm.stats().faults.load(std::sync::atomic::Ordering::SeqCst),
        faults + 1,
        "one fault for the first touch, none after"
    );
    // Bytes across a page boundary.
    let msg = b"straddles two pages";
    let at = a + 3 * PAGE_SIZE - 7;
    mm.write_bytes(at, msg).unwrap();
    let mut back = [0u8; 19];
    mm.read_bytes(at, &mut back).unwrap();
    assert_eq!(&back, msg);
    assert_eq!(mm.rss_anon(), 4);
    checked(&sys);
}

#[test]
fn mprotect_read_only_makes_writes_fail_with_the_protection_error() {
    let (sys, mm) = system(1024);
    let a = mm.mmap(0, 2 * PAGE_SIZE, RW, ANON).unwrap().raw();
    mm.write_u64(a, 41).unwrap();
    mm.mprotect(a, 2 * PAGE_SIZE, Prot::READ).unwrap();
    let err = mm.write_u64(a, 42).unwrap_err();
    assert_eq!(
        (err.kind, err.access, err.addr),
        (FaultKind::Protection, Access::Write, va(a))
    );
    assert_eq!(
        mm.fetch_add_u64(a, 1).unwrap_err().kind,
        FaultKind::Protection
    );
    assert_eq!(
        mm.read_u64(a).unwrap(),
        41,
        "reads still work; value unchanged"
    );
    assert!(!present(&mm, a).is_write());
    checked(&sys);
}

#[test]
fn mprotect_partial_splits_the_vma_and_restoring_merges_it() {
    let (sys, mm) = system(1024);
    let a = mm.mmap(0, 4 * PAGE_SIZE, RW, ANON).unwrap().raw();
    // Faulted before the split: every piece shares the VMA's anon_vma.
    mm.write_u64(a, 1).unwrap();
    mm.mprotect(a + PAGE_SIZE, PAGE_SIZE, Prot::READ).unwrap();
    let v = vmas(&mm);
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!((v[1].0, v[1].1), (a + PAGE_SIZE, a + 2 * PAGE_SIZE));
    assert!(!v[1].2.contains(VmFlags::WRITE) && v[0].2.contains(VmFlags::WRITE));
    assert_eq!(
        mm.write_u64(a + PAGE_SIZE, 1).unwrap_err().kind,
        FaultKind::Protection
    );
    mm.write_u64(a + 2 * PAGE_SIZE, 1).unwrap();
    mm.mprotect(a + PAGE_SIZE, PAGE_SIZE, RW).unwrap();
    let v = vmas(&mm);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!((v[0].0, v[0].1), (a, a + 4 * PAGE_SIZE));
    mm.write_u64(a + PAGE_SIZE, 1).unwrap();
    checked(&sys);

    // As in Linux, pieces first faulted *after* a split get anon_vmas of their own
    // (the read-only middle piece is no compatible neighbour to borrow from), and
    // VMAs with different anon_vmas never merge again.
    let mm = sys.create_mm().unwrap();
    let b = mm.mmap(0, 3 * PAGE_SIZE, RW, ANON).unwrap().raw();
    mm.mprotect(b + PAGE_SIZE, PAGE_SIZE, Prot::READ).unwrap();
    mm.write_u64(b, 1).unwrap();
    mm.write_u64(b + 2 * PAGE_SIZE, 1).unwrap();
    mm.mprotect(b + PAGE_SIZE, PAGE_SIZE, RW).unwrap();
    let v = vmas(&mm);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!((v[0].0, v[1].1), (b, b + 3 * PAGE_SIZE));
    checked(&sys);
}

#[test]
fn mprotect_granting_write_upgrades_exclusive_anon_pages_without_a_fault() {
    let (sys, mm) = system(1024);
    let a = mm.mmap(0, 2 * PAGE_SIZE, RW, ANON).unwrap().raw();
    mm.write_u64(a, 7).unwrap(); // own page, anon-exclusive
    mm.read_u64(a + PAGE_SIZE).unwrap(); // zero page
    mm.mprotect(a, 2 * PAGE_SIZE, Prot::READ).unwrap();
    assert!(!present(&mm, a).is_write());
    mm.mprotect(a, 2 * PAGE_SIZE, RW).unwrap();
    assert!(
        present(&mm, a).is_write(),
        "exclusive anon page upgraded directly"
    );
    assert!(
        !present(&mm, a + PAGE_SIZE).is_write(),
        "the zero page stays read-only"
    );
    let faults = mm.stats().faults.load(std::sync::atomic::Ordering::SeqCst);
    mm.write_u64(a, 8).unwrap();
    assert_eq!(
        mm.stats().faults.load(std::sync::atomic::Ordering::SeqCst),
        faults,
        "the write went through without a fault"
    );
    mm.write_u64(a + PAGE_SIZE, 9).unwrap();
    assert_eq!(
        mm.stats().faults.load(std::sync::atomic::Ordering::SeqCst),
        faults + 1,
        "the zero page needed its write fault"
    );
    assert_eq!(
        (mm.read_u64(a).unwrap(), mm.read_u64(a + PAGE_SIZE).unwrap()),
        (8, 9)
    );
    checked(&sys);
}

#[test]
fn mprotect_none_keeps_pages_mapped_but_inaccessible() {
    let (sys, mm) = system(1024);
    let a = mm.mmap(0, PAGE_SIZE, RW, ANON).unwrap().raw();
    mm.write_u64(a, 99).unwrap();
    let pfn = present(&mm, a).pfn;
    mm.mprotect(a, PAGE_SIZE, Prot::empty()).unwrap();
    let p = present(&mm, a);
    assert!(p.is_protnone() && p.pfn == pfn, "{p:?}");
    assert_eq!(mm.read_u64(a).unwrap_err().kind, FaultKind::Protection);
    checked(&sys);
    mm.mprotect(a, PAGE_SIZE, Prot::READ).unwrap();
    assert_eq!(mm.read_u64(a).unwrap(), 99);
    assert_eq!(present(&mm, a).pfn, pfn);
    checked(&sys);
}

#[test]
fn munmap_makes_access_fail_and_frees_frames_and_page_tables() {
    let (sys, mm) = system(1024);
    let free0 = sys.mem().nr_free_pages();
    let tables0 = table_frames(&mm);
    let a = mm.mmap(0, 8 * PAGE_SIZE, RW, ANON).unwrap().raw();
    for i in 0..8 {
        mm.write_u64(a + i * PAGE_SIZE, i + 1).unwrap();
    }
    assert_eq!(table_frames(&mm), tables0 + 3, "PUD, PMD and PTE tables");
    // Partial: the middle two pages.
    mm.munmap(a + 3 * PAGE_SIZE, 2 * PAGE_SIZE).unwrap();
    assert_eq!(
        mm.read_u64(a + 3 * PAGE_SIZE).unwrap_err().kind,
        FaultKind::Unmapped
    );
    assert_eq!(
        mm.write_u64(a + 4 * PAGE_SIZE, 0).unwrap_err().kind,
        FaultKind::Unmapped
    );
    for i in [0, 1, 2, 5, 6, 7] {
        assert_eq!(
            mm.read_u64(a + i * PAGE_SIZE).unwrap(),
            i + 1,
            "page {i} kept"
        );
    }
    assert_eq!(vmas(&mm).len(), 2);
    assert_eq!(sys.mem().nr_free_pages(), free0 - 3 - 6);
    checked(&sys);
    // The rest: frames and every now-empty table go back.
    mm.munmap(a, 8 * PAGE_SIZE).unwrap();
    assert_eq!(mm.read_u64(a).unwrap_err().kind, FaultKind::Unmapped);
    assert_eq!(table_frames(&mm), tables0, "empty page tables freed");
    assert_eq!(sys.mem().nr_free_pages(), free0);
    assert_eq!(mm.rss_anon(), 0);
    checked(&sys);
    // Unmapping nothing succeeds, as in Linux.
    mm.munmap(a, PAGE_SIZE).unwrap();
}

#[test]
fn munmap_keeps_tables_a_neighbouring_vma_still_uses() {
    let (sys, mm) = system(1024);
    let a = mm.mmap(BASE, 2 * PAGE_SIZE, RW, FIXED).unwrap().raw();
    mm.mmap(BASE + 4 * PAGE_SIZE, PAGE_SIZE, Prot::READ, FIXED)
        .unwrap();
    mm.write_u64(a, 1).unwrap();
    mm.read_u64(BASE + 4 * PAGE_SIZE).unwrap();
    let tables = table_frames(&mm);
    mm.munmap(a, 2 * PAGE_SIZE).unwrap();
    assert_eq!(
        table_frames(&mm),
        tables,
        "the PTE table still serves the other VMA"
    );
    assert_eq!(mm.read_u64(BASE + 4 * PAGE_SIZE).unwrap(), 0);
    checked(&sys);
}

#[test]
fn dontneed_makes_the_range_read_zero_and_frees_frames() {
    let (sys, mm) = system(1024);
    let a = mm.mmap(0, 4 * PAGE_SIZE, RW, ANON).unwrap().raw();
    for i in 0..4 {
        mm.write_u64(a + i * PAGE_SIZE + 16, 0x5a5a + i).unwrap();
    }
    let free = sys.mem().nr_free_pages();
    mm.madvise(a + PAGE_SIZE, 2 * PAGE_SIZE, Advice::DontNeed)
        .unwrap();
    assert_eq!(sys.mem().nr_free_pages(), free + 2);
    assert!(pte(&mm, a + PAGE_SIZE).is_none());
    assert_eq!(mm.read_u64(a + PAGE_SIZE + 16).unwrap(), 0);
    assert_eq!(mm.read_u64(a + 2 * PAGE_SIZE + 16).unwrap(), 0);
    assert_eq!(
        mm.read_u64(a + 16).unwrap(),
        0x5a5a,
        "outside the range: kept"
    );
    assert_eq!(mm.read_u64(a + 3 * PAGE_SIZE + 16).unwrap(), 0x5a5d);
    assert_eq!(vmas(&mm).len(), 1, "the mapping itself stays");
    assert_eq!(mm.rss_anon(), 2);
    checked(&sys);
}

#[test]
fn madvise_hugepage_flags_split_and_merge() {
    let (sys, mm) = system(256);
    let a = mm.mmap(0, 4 * PAGE_SIZE, RW, ANON).unwrap().raw();
    mm.madvise(a, 2 * PAGE_SIZE, Advice::HugePage).unwrap();
    let v = vmas(&mm);
    assert_eq!(v.len(), 2);
    assert!(v[0].2.contains(VmFlags::HUGEPAGE) && !v[1].2.contains(VmFlags::HUGEPAGE));
    mm.madvise(a, 2 * PAGE_SIZE, Advice::NoHugePage).unwrap();
    assert!(vmas(&mm)[0].2.contains(VmFlags::NOHUGEPAGE));
    assert_eq!(Advice::from_raw(14), Ok(Advice::HugePage));
    assert_eq!(Advice::from_raw(99), Err(Errno::EINVAL));
    checked(&sys);
}

#[test]
fn mm_exit_at_last_user_frees_everything() {
    let (sys, mm) = system(1024);
    let a = mm.mmap(0, 16 * PAGE_SIZE, RW, ANON).unwrap().raw();
    for i in 0..16 {
        mm.write_u64(a + i * PAGE_SIZE, i).unwrap();
    }
    let second = mm.clone();
    assert_eq!(mm.mm_users(), 2);
    let weak = Arc::clone(mm.mm());
    drop(mm);
    assert_eq!(
        second.read_u64(a + 5 * PAGE_SIZE).unwrap(),
        5,
        "still one user"
    );
    assert!(weak.mmget_not_zero().is_some());
    drop(second);
    assert_eq!(weak.mm_users(), 0);
    assert!(weak.mmget_not_zero().is_none(), "no users: no new ones");
    checked(&sys);
    assert_eq!(
        sys.mem().nr_free_pages(),
        sys.mem().nr_usable_pages() - 1,
        "only the PGD left"
    );
    drop(weak);
    assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
    checked(&sys);
}

#[test]
fn errors_at_every_public_entry_point_leave_state_unchanged() {
    let (sys, mm) = system(1024);
    let a = mm.mmap(BASE, 4 * PAGE_SIZE, RW, FIXED).unwrap().raw();
    mm.write_u64(a, 1).unwrap();
    let before = vmas(&mm);
    let free = sys.mem().nr_free_pages();
    let cases: Vec<(&str, Result<(), Errno>, Errno)> = vec![
        (
            "mmap zero length",
            mm.mmap(0, 0, RW, ANON).map(drop),
            Errno::EINVAL,
        ),
        (
            "mmap length overflow",
            mm.mmap(0, u64::MAX, RW, ANON).map(drop),
            Errno::ENOMEM,
        ),
        (
            "mmap unaligned fixed",
            mm.mmap(BASE + 1, PAGE_SIZE, RW, FIXED).map(drop),
            Errno::EINVAL,
        ),
        (
            "mmap fixed past user space",
            mm.mmap(1 << 47, PAGE_SIZE, RW, FIXED).map(drop),
            Errno::ENOMEM,
        ),
        (
            "mmap fixed below mmap_min_addr",
            mm.mmap(0x1000, PAGE_SIZE, RW, FIXED).map(drop),
            Errno::EPERM,
        ),
        (
            "mmap fixed_noreplace over a mapping",
            mm.mmap(a, PAGE_SIZE, RW, ANON | MapFlags::FIXED_NOREPLACE)
                .map(drop),
            Errno::EEXIST,
        ),
        (
            "mmap private and shared",
            mm.mmap(0, PAGE_SIZE, RW, ANON | MapFlags::SHARED).map(drop),
            Errno::EINVAL,
        ),
        (
            "mmap neither private nor shared",
            mm.mmap(0, PAGE_SIZE, RW, MapFlags::ANONYMOUS).map(drop),
            Errno::EINVAL,
        ),
        (
            "mmap of a file",
            mm.mmap(0, PAGE_SIZE, RW, MapFlags::PRIVATE).map(drop),
            Errno::EBADF,
        ),
        (
            // Linux: ksys_mmap_pgoff() fails the descriptor before do_mmap() looks at
            // the length.
            "mmap of a file with zero length",
            mm.mmap(0, 0, RW, MapFlags::PRIVATE).map(drop),
            Errno::EBADF,
        ),
        (
            // Linux: do_mmap() switches on `flags & MAP_TYPE` (0x0f): 0x06 is no type.
            "mmap unknown mapping type",
            mm.mmap(0, PAGE_SIZE, RW, ANON | MapFlags::from_bits_retain(0x04))
                .map(drop),
            Errno::EINVAL,
        ),
        (
            // Linux: __get_unmapped_area() checks the range before the alignment.
            "mmap unaligned fixed past user space",
            mm.mmap((1 << 47) + 1, PAGE_SIZE, RW, FIXED).map(drop),
            Errno::ENOMEM,
        ),
        (
            // Linux: the address is chosen (and refused) before the MAP_TYPE switch.
            "mmap fixed past user space, private and shared",
            mm.mmap(1 << 47, PAGE_SIZE, RW, FIXED | MapFlags::SHARED)
                .map(drop),
            Errno::ENOMEM,
        ),
        (
            // Linux: do_mmap()'s MAP_FIXED_NOREPLACE check precedes the MAP_TYPE switch.
            "mmap fixed_noreplace over a mapping, private and shared",
            mm.mmap(
                a,
                PAGE_SIZE,
                RW,
                ANON | MapFlags::SHARED | MapFlags::FIXED_NOREPLACE,
            )
            .map(drop),
            Errno::EEXIST,
        ),
        (
            // Linux: the MAP_TYPE switch fails before mmap_region() unmaps anything.
            "mmap fixed over a mapping, private and shared",
            mm.mmap(a, PAGE_SIZE, RW, FIXED | MapFlags::SHARED)
                .map(drop),
            Errno::EINVAL,
        ),
        (
            "munmap unaligned",
            mm.munmap(a + 1, PAGE_SIZE),
            Errno::EINVAL,
        ),
        ("munmap zero length", mm.munmap(a, 0), Errno::EINVAL),
        (
            "munmap length overflow",
            mm.munmap(a, u64::MAX),
            Errno::EINVAL,
        ),
        (
            "munmap past user space",
            mm.munmap(1 << 47, PAGE_SIZE),
            Errno::EINVAL,
        ),
        (
            "mprotect unaligned",
            mm.mprotect(a + 8, PAGE_SIZE, Prot::READ),
            Errno::EINVAL,
        ),
        (
            // Linux: do_mprotect_pkey() → arch_validate_prot() (generic, not
            // overridden on x86): only READ, WRITE, EXEC and SEM.
            "mprotect unknown prot bit",
            mm.mprotect(a, PAGE_SIZE, Prot::from_bits_retain(0x80)),
            Errno::EINVAL,
        ),
        (
            // Linux: do_mprotect_pkey(): "can't be both", before any other check.
            "mprotect growsdown and growsup",
            mm.mprotect(a, 0, Prot::READ | Prot::GROWSDOWN | Prot::GROWSUP),
            Errno::EINVAL,
        ),
        (
            // Linux: do_mprotect_pkey(): PROT_GROWSDOWN on a VMA without VM_GROWSDOWN.
            "mprotect growsdown",
            mm.mprotect(a, PAGE_SIZE, Prot::READ | Prot::GROWSDOWN),
            Errno::EINVAL,
        ),
        (
            // Linux: do_mprotect_pkey(): no VMA in the range comes first.
            "mprotect growsdown unmapped",
            mm.mprotect(BASE + (1 << 30), PAGE_SIZE, Prot::READ | Prot::GROWSDOWN),
            Errno::ENOMEM,
        ),
        (
            // Linux: do_mprotect_pkey(): PROT_GROWSUP needs VM_GROWSUP (VM_NONE on x86).
            "mprotect growsup",
            mm.mprotect(a, PAGE_SIZE, Prot::READ | Prot::GROWSUP),
            Errno::EINVAL,
        ),
        (
            // Linux: do_mprotect_pkey(): a VMA starting above `start` is a hole first.
            "mprotect growsup hole at start",
            mm.mprotect(a - PAGE_SIZE, 2 * PAGE_SIZE, Prot::READ | Prot::GROWSUP),
            Errno::ENOMEM,
        ),
        (
            // Linux: do_mprotect_pkey() checks the wrap before arch_validate_prot().
            "mprotect wrapping range, unknown prot bit",
            mm.mprotect(a, u64::MAX - a, Prot::from_bits_retain(0x80)),
            Errno::ENOMEM,
        ),
        (
            "mprotect wrapping range",
            mm.mprotect(a, u64::MAX - a, Prot::READ),
            Errno::ENOMEM,
        ),
        (
            "mprotect unmapped",
            mm.mprotect(BASE + (1 << 30), PAGE_SIZE, Prot::READ),
            Errno::ENOMEM,
        ),
        (
            "mprotect hole at start",
            mm.mprotect(a - PAGE_SIZE, 2 * PAGE_SIZE, Prot::READ),
            Errno::ENOMEM,
        ),
        (
            "madvise unaligned",
            mm.madvise(a + 1, PAGE_SIZE, Advice::DontNeed),
            Errno::EINVAL,
        ),
        (
            "madvise length overflow",
            mm.madvise(a, u64::MAX, Advice::DontNeed),
            Errno::EINVAL,
        ),
        (
            "madvise unmapped",
            mm.madvise(BASE + (1 << 30), PAGE_SIZE, Advice::DontNeed),
            Errno::ENOMEM,
        ),
    ];
    for (what, got, want) in cases {
        assert_eq!(got, Err(want), "{what}");
    }
    // Linux accepts these zero-length calls and does nothing (do_mprotect_pkey()
    // returns 0 for a zero length before it validates prot).
    assert_eq!(mm.mprotect(a, 0, Prot::READ), Ok(()));
    assert_eq!(mm.mprotect(a, 0, Prot::from_bits_retain(0x80)), Ok(()));
    assert_eq!(mm.mprotect(a, 0, Prot::READ | Prot::GROWSDOWN), Ok(()));
    assert_eq!(mm.madvise(a, 0, Advice::DontNeed), Ok(()));
    assert_eq!(vmas(&mm), before, "no error changed the VMAs");
    assert_eq!(sys.mem().nr_free_pages(), free);
    assert_eq!(mm.read_u64(a).unwrap(), 1);
    // CPU access errors.
    let e = mm.read_u64(BASE - PAGE_SIZE).unwrap_err();
    assert_eq!((e.kind, e.access), (FaultKind::Unmapped, Access::Read));
    assert_eq!(mm.read_u64(a + 4).unwrap_err().kind, FaultKind::Misaligned);
    assert_eq!(
        mm.fetch_add_u64(1 << 50, 1).unwrap_err().kind,
        FaultKind::Unmapped
    );
    assert_eq!(
        mm.write_bytes(a + 4 * PAGE_SIZE - 2, &[1; 4])
            .unwrap_err()
            .addr,
        va(a + 4 * PAGE_SIZE)
    );
    checked(&sys);
}

/// Issue 14, bug 8: Linux's mmap ignores prot bits it does not know, mprotect rejects
/// them but accepts PROT_SEM.
#[test]
fn mmap_ignores_unknown_prot_bits_and_mprotect_accepts_prot_sem() {
    let (sys, mm) = system(1024);
    // Linux: do_mmap() never validates prot; calc_vm_prot_bits() translates only
    // PROT_READ/WRITE/EXEC, so the VMA is an ordinary read-write one.
    let a = mm
        .mmap(0, PAGE_SIZE, Prot::from_bits_retain(0x40) | RW, ANON)
        .unwrap()
        .raw();
    let b = mm
        .mmap(0, PAGE_SIZE, Prot::READ | Prot::SEM | Prot::GROWSDOWN, ANON)
        .unwrap()
        .raw();
    let access = |x: u64| {
        vmas(&mm)
            .into_iter()
            .find(|v| v.0 <= x && x < v.1)
            .map(|v| v.2 & (VmFlags::READ | VmFlags::WRITE | VmFlags::EXEC))
    };
    assert_eq!(access(a), Some(VmFlags::READ | VmFlags::WRITE));
    assert_eq!(access(b), Some(VmFlags::READ));
    mm.write_u64(a, 5).unwrap();
    assert_eq!(mm.read_u64(a).unwrap(), 5);
    assert_eq!(
        mm.write_u64(b, 1).unwrap_err().kind,
        FaultKind::Protection,
        "PROT_SEM grants nothing"
    );
    // Linux: arch_validate_prot() admits PROT_SEM, which changes nothing on x86.
    mm.mprotect(a, PAGE_SIZE, Prot::READ | Prot::SEM).unwrap();
    assert_eq!(access(a), Some(VmFlags::READ));
    assert_eq!(mm.read_u64(a).unwrap(), 5);
    // Bits outside MAP_TYPE that the model does not know are ignored too (Linux:
    // do_mmap() for anonymous MAP_PRIVATE; 0x4000 is MAP_NORESERVE).
    let c = mm
        .mmap(0, PAGE_SIZE, RW, ANON | MapFlags::from_bits_retain(0x4000))
        .unwrap()
        .raw();
    assert_eq!(access(c), Some(VmFlags::READ | VmFlags::WRITE));
    checked(&sys);
}

#[test]
fn errors_mprotect_over_a_later_hole_applies_up_to_the_hole_like_linux() {
    let (sys, mm) = system(1024);
    mm.mmap(BASE, PAGE_SIZE, RW, FIXED).unwrap();
    mm.mmap(BASE + 2 * PAGE_SIZE, PAGE_SIZE, RW, FIXED).unwrap();
    assert_eq!(
        mm.mprotect(BASE, 3 * PAGE_SIZE, Prot::READ),
        Err(Errno::ENOMEM)
    );
    let v = vmas(&mm);
    assert!(!v[0].2.contains(VmFlags::WRITE), "changed before the hole");
    assert!(v[1].2.contains(VmFlags::WRITE), "not after it");
    // madvise over a hole applies to the mapped parts and reports ENOMEM.
    mm.write_u64(BASE + 2 * PAGE_SIZE, 3).unwrap();
    assert_eq!(
        mm.madvise(BASE, 3 * PAGE_SIZE, Advice::DontNeed),
        Err(Errno::ENOMEM)
    );
    assert_eq!(mm.read_u64(BASE + 2 * PAGE_SIZE).unwrap(), 0);
    checked(&sys);
}

#[test]
fn errors_out_of_memory_during_a_fault_is_reported_and_consistent() {
    let (sys, mm) = system(64);
    let a = mm.mmap(0, 128 * PAGE_SIZE, RW, ANON).unwrap().raw();
    let mut touched = 0;
    let err = loop {
        match mm.write_u64(a + touched * PAGE_SIZE, touched) {
            Ok(()) => touched += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind, FaultKind::OutOfMemory);
    assert_eq!(err.addr, va(a + touched * PAGE_SIZE));
    assert_eq!(sys.mem().nr_free_pages(), 0);
    assert!(
        pte(&mm, a + touched * PAGE_SIZE).is_none(),
        "nothing half-mapped"
    );
    checked(&sys);
    for i in 0..touched {
        assert_eq!(mm.read_u64(a + i * PAGE_SIZE).unwrap(), i);
    }
    // Reads still work: they map the zero page, which needs no memory.
    mm.munmap(a + PAGE_SIZE, PAGE_SIZE).unwrap();
    assert_eq!(mm.read_u64(a + 127 * PAGE_SIZE).unwrap_or(7), 0);
    checked(&sys);
    // And the checker does catch a leak: take a reference nobody accounts for.
    let folio = sys.mem().page_folio(present(&mm, a).pfn).unwrap();
    sys.mem().folio_get(folio);
    let e = sys.check().unwrap_err();
    assert!(e.to_string().contains("refcount 2"), "{e}");
    let mut extra = svmkit::check::ExtraRefs::new();
    extra.insert(folio, 1);
    sys.check_with(&extra).unwrap();
    sys.mem().folio_put(folio);
    checked(&sys);
}

#[test]
fn mmap_hint_fixed_replace_and_top_down_placement() {
    let (sys, mm) = system(256);
    let hinted = mm.mmap(BASE, PAGE_SIZE, RW, ANON).unwrap();
    assert_eq!(hinted.raw(), BASE, "a free, aligned hint is used");
    let again = mm.mmap(BASE, PAGE_SIZE, RW, ANON).unwrap();
    assert_ne!(again.raw(), BASE, "an occupied hint is not");
    assert_eq!(
        again.raw(),
        svmkit::mm::MMAP_BASE - PAGE_SIZE,
        "top-down from mmap_base"
    );
    let next = mm.mmap(0, PAGE_SIZE, RW, ANON).unwrap();
    assert_eq!(next.raw(), svmkit::mm::MMAP_BASE - 2 * PAGE_SIZE);
    assert_eq!(vmas(&mm).len(), 2, "adjacent compatible mappings merged");
    mm.write_u64(BASE, 5).unwrap();
    // MAP_FIXED over it replaces the old mapping (and its contents).
    mm.mmap(BASE, PAGE_SIZE, Prot::READ, FIXED).unwrap();
    assert_eq!(mm.read_u64(BASE).unwrap(), 0);
    assert_eq!(
        mm.write_u64(BASE, 1).unwrap_err().kind,
        FaultKind::Protection
    );
    checked(&sys);
}
