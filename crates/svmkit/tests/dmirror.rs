//! The dmirror test driver (Linux: `lib/test_hmm.c`, spec 6.1) through its ioctl
//! interface: every command and counter, the invalidate callback, and ports of the
//! hmm selftests (`tools/testing/selftests/mm/hmm-tests.c`, spec 7), each with a
//! plain buffer and one backed by two PMD-mapped THPs.

mod common;

use svmkit::device::DevRights;
use svmkit::device::dmirror::{Dmirror, DmirrorIoctl, HmmDmirrorCmd};
use svmkit::mm::{Advice, MapFlags, MmUser, PMD_SIZE, Prot, Pte, SwapPte};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Pfn, Profile, System};

use common::{checked, system as system_with, va};

const RW: Prot = Prot::READ.union(Prot::WRITE);
const PRIVATE: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);
const FIXED: MapFlags = PRIVATE.union(MapFlags::FIXED);
const BASE: u64 = 0x4000_0000;
const P: u64 = PAGE_SIZE;
const PS: usize = PAGE_SIZE as usize;
/// Linux: `HMM_BUFFER_SIZE` (`1024 << 12`), in pages.
const HMM_NPAGES: u64 = 1024;
/// `int`s per page.
const INTS: usize = PS / 4;

use DmirrorIoctl::{CheckExclusive, Exclusive, Read, Write};

fn system(frames: u64) -> (Arc<System>, MmUser) {
    system_with(Profile::linux_6_15(), frames)
}

/// After everything is dropped, no frame may be left allocated.
#[track_caller]
fn all_free(sys: &System) {
    checked(sys);
    assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
}

/// The end of a test with a buffer of `len` bytes at `ptr`: the checker, then the
/// munmap erases the mirror (its invalidation), then [`close`].
#[track_caller]
fn unmap_and_close(sys: &System, dm: Dmirror, mm: MmUser, ptr: u64, len: u64) {
    checked(sys);
    mm.munmap(ptr, len).unwrap();
    assert!(dm.device().lock().is_empty());
    close(sys, dm, mm);
}

/// The end of a test: the checker, then the mirror is closed and the process exits,
/// and no frame is left allocated.
#[track_caller]
fn close<D>(sys: &System, dm: D, mm: MmUser) {
    checked(sys);
    drop(dm);
    drop(mm);
    all_free(sys);
}

fn task() -> Task {
    Task::new("test")
}

/// `hmm_dmirror_cmd()`: runs `req` over `npages` at `addr` with `buf` as the mirror;
/// on success returns the command block (`cpages`, `faults`).
fn cmd(
    dm: &Dmirror,
    req: DmirrorIoctl,
    addr: u64,
    npages: u64,
    buf: &mut [u8],
) -> Result<HmmDmirrorCmd, Errno> {
    let mut c = HmmDmirrorCmd {
        addr,
        npages,
        ..Default::default()
    };
    dm.ioctl(&task(), req, &mut c, buf)?;
    Ok(c)
}

/// The `int` array `v[i] = f(i)` for `npages` pages, native endian.
fn ints(npages: u64, f: impl Fn(i32) -> i32) -> Vec<u8> {
    (0..(npages as usize * INTS) as i32)
        .flat_map(|i| f(i).to_ne_bytes())
        .collect()
}

/// The CPU fills `[addr, addr + npages pages)` with `data`, a page at a time.
fn cpu_write(mm: &MmUser, addr: u64, data: &[u8]) {
    for (n, page) in data.chunks(PS).enumerate() {
        mm.write_bytes(addr + n as u64 * P, page).unwrap();
    }
}

/// The CPU reads `npages` pages at `addr`, a page at a time.
fn cpu_read(mm: &MmUser, addr: u64, npages: u64) -> Vec<u8> {
    let mut out = vec![0u8; npages as usize * PS];
    for (n, page) in out.chunks_mut(PS).enumerate() {
        mm.read_bytes(addr + n as u64 * P, page).unwrap();
    }
    out
}

fn excl_entry(mm: &MmUser, addr: u64) -> Option<SwapPte> {
    match mm.pte_get_lockless(va(addr)) {
        Pte::Swap(s) if s.is_device_exclusive() => Some(s),
        _ => None,
    }
}

/// The device-exclusive entry of each page of the selftest buffer at `ptr`.
fn excl_entries(mm: &MmUser, ptr: u64) -> Vec<SwapPte> {
    pages(ptr, HMM_NPAGES)
        .map(|a| excl_entry(mm, a).unwrap())
        .collect()
}

fn rights(dm: &Dmirror, addr: u64) -> Option<DevRights> {
    dm.device().lock().get(addr).map(|p| p.rights)
}

fn dev_pfn(dm: &Dmirror, addr: u64) -> Option<Pfn> {
    dm.device().lock().get(addr).map(|p| p.pfn)
}

fn pages(addr: u64, npages: u64) -> impl Iterator<Item = u64> {
    (0..npages).map(move |i| addr + i * P)
}

// ---------------------------------------------------------------------------------
// [dmirror]: every command and counter.
// ---------------------------------------------------------------------------------

#[test]
fn dmirror_read_mirrors_cpu_data_in_one_fault_pass() {
    for profile in Profile::ALL {
        dmirror_read_mirrors_cpu_data_in_one_fault_pass_in(profile);
    }
}

fn dmirror_read_mirrors_cpu_data_in_one_fault_pass_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    let dm = Dmirror::open(&mm).unwrap();
    let n = 100; // more than one 64-page hmm_range_fault chunk
    mm.mmap(BASE, n * P, RW, FIXED).unwrap();
    let data = ints(n, |i| i.wrapping_mul(7) ^ 0x5a5a);
    cpu_write(&mm, BASE, &data);

    let mut mirror = vec![0u8; n as usize * PS];
    let c = cmd(&dm, Read, BASE, n, &mut mirror).unwrap();
    assert_eq!((c.addr, c.npages, c.cpages, c.faults), (BASE, n, n, 1));
    assert_eq!(mirror, data);
    // The table mirrors the CPU's frames, writable as the CPU PTEs are.
    for a in pages(BASE, n) {
        assert_eq!(dev_pfn(&dm, a), mm.translate(va(a)));
        assert_eq!(rights(&dm, a), Some(DevRights::READ | DevRights::WRITE));
    }
    // A second READ is served from the table.
    let mut again = vec![0u8; n as usize * PS];
    let c = cmd(&dm, Read, BASE, n, &mut again).unwrap();
    assert_eq!((c.cpages, c.faults), (n, 0));
    assert_eq!(again, data);
    // The CPU changes a page: the table entry still maps the same frame (no COW), so
    // the device sees the new value without a fault.
    mm.write_u64(BASE + 5 * P, 0xdead_beef).unwrap();
    let c = cmd(&dm, Read, BASE + 5 * P, 1, &mut again).unwrap();
    assert_eq!((c.cpages, c.faults), (1, 0));
    assert_eq!(
        u64::from_ne_bytes(again[..8].try_into().unwrap()),
        0xdead_beef
    );
    close(&sys, dm, mm);
}

#[test]
fn dmirror_read_of_untouched_memory_maps_the_zero_page() {
    for profile in Profile::ALL {
        dmirror_read_of_untouched_memory_maps_the_zero_page_in(profile);
    }
}

fn dmirror_read_of_untouched_memory_maps_the_zero_page_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    let dm = Dmirror::open(&mm).unwrap();
    mm.mmap(BASE, 8 * P, RW, FIXED).unwrap();
    let free = sys.mem().nr_free_pages();
    let mut mirror = vec![0xffu8; 8 * PS];
    let c = cmd(&dm, Read, BASE, 8, &mut mirror).unwrap();
    assert_eq!((c.cpages, c.faults), (8, 1));
    assert!(mirror.iter().all(|&b| b == 0));
    for a in pages(BASE, 8) {
        let pte = mm.pte_get_lockless(va(a)).present().unwrap();
        assert!(sys.mem().is_zero_pfn(pte.pfn) && !pte.is_write());
        assert_eq!(dev_pfn(&dm, a), Some(pte.pfn));
        assert_eq!(rights(&dm, a), Some(DevRights::READ));
    }
    // Only page tables were allocated, no data frames.
    assert!(free - sys.mem().nr_free_pages() <= 3);
    assert_eq!(mm.rss_anon(), 0);
    close(&sys, dm, mm);
}

#[test]
fn dmirror_write_lands_and_maps_the_device_writable() {
    for profile in Profile::ALL {
        dmirror_write_lands_and_maps_the_device_writable_in(profile);
    }
}

fn dmirror_write_lands_and_maps_the_device_writable_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    let dm = Dmirror::open(&mm).unwrap();
    let n = 70;
    mm.mmap(BASE, n * P, RW, FIXED).unwrap();
    let mut data = ints(n, |i| !i);
    let c = cmd(&dm, Write, BASE, n, &mut data).unwrap();
    assert_eq!((c.cpages, c.faults), (n, 1));
    assert_eq!(cpu_read(&mm, BASE, n), data);
    for a in pages(BASE, n) {
        let pte = mm.pte_get_lockless(va(a)).present().unwrap();
        assert!(pte.is_write() && !sys.mem().is_zero_pfn(pte.pfn));
        assert_eq!(dev_pfn(&dm, a), Some(pte.pfn));
        assert_eq!(rights(&dm, a), Some(DevRights::READ | DevRights::WRITE));
    }
    // A second WRITE needs no fault.
    let mut data2 = ints(n, |i| i ^ 0x1234);
    let c = cmd(&dm, Write, BASE, n, &mut data2).unwrap();
    assert_eq!((c.cpages, c.faults), (n, 0));
    assert_eq!(cpu_read(&mm, BASE, n), data2);

    // READ first (zero page, read-only entries), then WRITE: the read-only entries
    // count as missing, the write fault COWs the zero page (whose invalidation erases
    // them) and the new frames are mapped writable.
    mm.mmap(BASE + PMD_SIZE, 4 * P, RW, FIXED).unwrap();
    let mut buf = vec![0u8; 4 * PS];
    let c = cmd(&dm, Read, BASE + PMD_SIZE, 4, &mut buf).unwrap();
    assert_eq!((c.cpages, c.faults), (4, 1));
    assert_eq!(rights(&dm, BASE + PMD_SIZE), Some(DevRights::READ));
    let mut data3 = ints(4, |i| i + 1);
    let c = cmd(&dm, Write, BASE + PMD_SIZE, 4, &mut data3).unwrap();
    assert_eq!((c.cpages, c.faults), (4, 1));
    assert_eq!(cpu_read(&mm, BASE + PMD_SIZE, 4), data3);
    for a in pages(BASE + PMD_SIZE, 4) {
        let pfn = mm.translate(va(a)).unwrap();
        assert!(!sys.mem().is_zero_pfn(pfn));
        assert_eq!(dev_pfn(&dm, a), Some(pfn));
        assert_eq!(rights(&dm, a), Some(DevRights::READ | DevRights::WRITE));
    }
    close(&sys, dm, mm);
}

#[test]
fn dmirror_write_into_read_only_vma_is_eperm_and_leaves_cmd_unchanged() {
    for profile in Profile::ALL {
        dmirror_write_into_read_only_vma_is_eperm_and_leaves_cmd_unchanged_in(profile);
    }
}

fn dmirror_write_into_read_only_vma_is_eperm_and_leaves_cmd_unchanged_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    let dm = Dmirror::open(&mm).unwrap();
    mm.mmap(BASE, 4 * P, Prot::READ, FIXED).unwrap();
    let mut data = ints(4, |i| i);
    let mut c = HmmDmirrorCmd {
        addr: BASE,
        npages: 4,
        cpages: 11,
        faults: 22,
    };
    let before = c;
    assert_eq!(
        dm.ioctl(&task(), Write, &mut c, &mut data),
        Err(Errno::EPERM)
    );
    assert_eq!(c, before);
    // Nothing was written; the device maps nothing writable.
    assert!(cpu_read(&mm, BASE, 4).iter().all(|&b| b == 0));
    for a in pages(BASE, 4) {
        assert!(!rights(&dm, a).is_some_and(|r| r.contains(DevRights::WRITE)));
    }
    // Reading is fine.
    let c = cmd(&dm, Read, BASE, 4, &mut data).unwrap();
    assert_eq!((c.cpages, c.faults), (4, 1));
    close(&sys, dm, mm);
}

#[test]
fn dmirror_exclusive_converts_and_a_cpu_touch_revokes_one_page() {
    for profile in Profile::ALL {
        dmirror_exclusive_converts_and_a_cpu_touch_revokes_one_page_in(profile);
    }
}

fn dmirror_exclusive_converts_and_a_cpu_touch_revokes_one_page_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    let dm = Dmirror::open(&mm).unwrap();
    let n = 8;
    mm.mmap(BASE, n * P, RW, FIXED).unwrap();
    let data = ints(n, |i| 3 * i);
    cpu_write(&mm, BASE, &data);
    let frames: Vec<Pfn> = pages(BASE, n)
        .map(|a| mm.translate(va(a)).unwrap())
        .collect();

    let mut mirror = vec![0u8; n as usize * PS];
    let c = cmd(&dm, Exclusive, BASE, n, &mut mirror).unwrap();
    assert_eq!((c.cpages, c.faults), (n, 0));
    assert_eq!(mirror, data);
    for (i, a) in pages(BASE, n).enumerate() {
        assert_eq!(excl_entry(&mm, a).unwrap().pfn(), Some(frames[i]));
        assert_eq!(dev_pfn(&dm, a), Some(frames[i]));
        assert!(rights(&dm, a).unwrap().contains(DevRights::ATOMIC));
    }
    assert_eq!(
        cmd(&dm, CheckExclusive, BASE, n, &mut []),
        Err(Errno::EPERM)
    );
    checked(&sys);

    // A device READ is served from its own (atomic) mirror: no fault, the CPU entries
    // stay device-exclusive and the tags stay.
    let mut again = vec![0u8; n as usize * PS];
    let c = cmd(&dm, Read, BASE, n, &mut again).unwrap();
    assert_eq!((c.cpages, c.faults), (n, 0));
    assert_eq!(again, data);
    assert!(pages(BASE, n).all(|a| excl_entry(&mm, a).is_some()));

    // The CPU reads page 3: restored, and the restore's invalidation erased that
    // page's atomic entry and, as test_hmm's dmirror_do_update() does (its
    // xa_for_each_range end is inclusive; the 6.12.117 and 6.1.192 goldens of
    // oracle/corpus/munmap-exclusive.toml), page 4's: page 4's CPU entry stays.
    let mut w = [0u8; 8];
    mm.read_bytes(BASE + 3 * P + 8, &mut w).unwrap();
    assert_eq!(w, data[3 * PS + 8..3 * PS + 16]);
    let pte = mm.pte_get_lockless(va(BASE + 3 * P)).present().unwrap();
    assert_eq!(pte.pfn, frames[3]);
    assert!(!rights(&dm, BASE + 3 * P).is_some_and(|r| r.contains(DevRights::ATOMIC)));
    assert_eq!(rights(&dm, BASE + 4 * P), None);
    assert!(excl_entry(&mm, BASE + 4 * P).is_some());
    for i in (0..n).filter(|&i| i != 3 && i != 4) {
        assert!(excl_entry(&mm, BASE + i * P).is_some());
        assert!(
            rights(&dm, BASE + i * P)
                .unwrap()
                .contains(DevRights::ATOMIC)
        );
    }
    assert_eq!(
        cmd(&dm, CheckExclusive, BASE, n, &mut []),
        Err(Errno::EPERM)
    );
    assert_eq!(
        cmd(&dm, CheckExclusive, BASE + 3 * P, 1, &mut []),
        Ok(HmmDmirrorCmd {
            addr: BASE + 3 * P,
            npages: 1,
            ..Default::default()
        })
    );
    checked(&sys);

    // A CPU write to page 5 restores it too; the data lands in the same frame.
    mm.write_u64(BASE + 5 * P, 77).unwrap();
    assert_eq!(mm.translate(va(BASE + 5 * P)), Some(frames[5]));
    assert!(rights(&dm, BASE + 5 * P).is_none());
    assert_eq!(
        cmd(&dm, CheckExclusive, BASE, n, &mut []),
        Err(Errno::EPERM)
    );

    // A device WRITE: an atomic entry is not writable, so it faults (write), which
    // restores the CPU entries; the device ends up mapping them writable.
    let mut w = ints(2, |i| -i);
    let c = cmd(&dm, Write, BASE, 2, &mut w).unwrap();
    assert_eq!((c.cpages, c.faults), (2, 1));
    for a in pages(BASE, 2) {
        assert!(excl_entry(&mm, a).is_none());
        assert_eq!(rights(&dm, a), Some(DevRights::READ | DevRights::WRITE));
    }
    assert_eq!(cpu_read(&mm, BASE, 2), w);

    // Touching the rest clears the last atomic entries: page 7's goes with page 6's
    // restore (the inclusive erase), its CPU entry with its own touch.
    for i in [2, 4, 6] {
        assert_eq!(
            cmd(&dm, CheckExclusive, BASE, n, &mut []),
            Err(Errno::EPERM)
        );
        mm.read_u64(BASE + i * P).unwrap();
    }
    cmd(&dm, CheckExclusive, BASE, n, &mut []).unwrap();
    assert!(excl_entry(&mm, BASE + 7 * P).is_some());
    mm.read_u64(BASE + 7 * P).unwrap();
    assert!(pages(BASE, n).all(|a| excl_entry(&mm, a).is_none()));
    close(&sys, dm, mm);
}

#[test]
fn dmirror_exclusive_on_shared_anonymous_memory_is_eopnotsupp() {
    for profile in Profile::ALL {
        dmirror_exclusive_on_shared_anonymous_memory_in(profile);
    }
}

/// 6.15: EOPNOTSUPP (a shmem folio is not anon); 5.14: the range API gave NULL pages
/// and dmirror EBUSY (spec 7, the historical `exclusive_shared`).
fn dmirror_exclusive_on_shared_anonymous_memory_in(profile: Profile) {
    let want = if profile.convert_via_rmap_walk_whole_folio {
        Errno::EBUSY
    } else {
        Errno::EOPNOTSUPP
    };
    let (sys, mm) = system_with(profile, 1024);
    let dm = Dmirror::open(&mm).unwrap();
    let shared = MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED;
    mm.mmap(BASE, 4 * P, RW, shared).unwrap();
    let data = ints(4, |i| i);
    cpu_write(&mm, BASE, &data);
    let mut mirror = vec![0u8; 4 * PS];
    let mut c = HmmDmirrorCmd {
        addr: BASE,
        npages: 4,
        cpages: 5,
        faults: 6,
    };
    assert_eq!(dm.ioctl(&task(), Exclusive, &mut c, &mut mirror), Err(want));
    assert_eq!((c.cpages, c.faults), (5, 6));
    assert!(pages(BASE, 4).all(|a| excl_entry(&mm, a).is_none()));
    assert!(dm.device().lock().is_empty());
    cmd(&dm, CheckExclusive, BASE, 4, &mut []).unwrap();
    // READ and WRITE work on shared memory.
    let c = cmd(&dm, Read, BASE, 4, &mut mirror).unwrap();
    assert_eq!((c.cpages, c.faults), (4, 1));
    assert_eq!(mirror, data);
    close(&sys, dm, mm);
}

#[test]
fn dmirror_exclusive_stops_with_efault_at_a_hole_after_converting_what_precedes_it() {
    for profile in Profile::ALL {
        dmirror_exclusive_stops_with_efault_at_a_hole_after_converting_what_precedes_it_in(profile);
    }
}

fn dmirror_exclusive_stops_with_efault_at_a_hole_after_converting_what_precedes_it_in(
    profile: Profile,
) {
    let (sys, mm) = system_with(profile, 1024);
    let dm = Dmirror::open(&mm).unwrap();
    mm.mmap(BASE, 3 * P, RW, FIXED).unwrap();
    mm.mmap(BASE + 4 * P, 3 * P, RW, FIXED).unwrap();
    let data = ints(3, |i| i);
    cpu_write(&mm, BASE, &data);
    cpu_write(&mm, BASE + 4 * P, &data);
    let mut mirror = vec![0u8; 7 * PS];
    let mut c = HmmDmirrorCmd {
        addr: BASE,
        npages: 7,
        ..Default::default()
    };
    // 6.15: the precise errno; 5.14: the chunk came back short, so EBUSY (spec 6.1).
    let want = if profile.convert_via_rmap_walk_whole_folio {
        Errno::EBUSY
    } else {
        Errno::EFAULT
    };
    assert_eq!(dm.ioctl(&task(), Exclusive, &mut c, &mut mirror), Err(want));
    assert_eq!((c.cpages, c.faults), (0, 0));
    // Both: the pages before the hole stay converted and mapped atomically (5.14
    // mapped the short chunk: `dmirror_map_only_full_chunks` came in 2022); nothing
    // after it was touched.
    for a in pages(BASE, 3) {
        assert!(excl_entry(&mm, a).is_some());
        assert!(rights(&dm, a).unwrap().contains(DevRights::ATOMIC));
    }
    for a in pages(BASE + 3 * P, 4) {
        assert!(excl_entry(&mm, a).is_none());
        assert!(rights(&dm, a).is_none());
    }
    assert!(mirror.iter().all(|&b| b == 0), "no read-back on failure");
    assert_eq!(
        cmd(&dm, CheckExclusive, BASE, 7, &mut []),
        Err(Errno::EPERM)
    );
    checked(&sys);
    // The CPU gets its data back.
    assert_eq!(cpu_read(&mm, BASE, 3), data);
    cmd(&dm, CheckExclusive, BASE, 7, &mut []).unwrap();
    close(&sys, dm, mm);
}

#[test]
fn dmirror_validation_einval_efault_and_cmd_unchanged_on_failure() {
    for profile in Profile::ALL {
        dmirror_validation_einval_efault_and_cmd_unchanged_on_failure_in(profile);
    }
}

fn dmirror_validation_einval_efault_and_cmd_unchanged_on_failure_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    let dm = Dmirror::open(&mm).unwrap();
    mm.mmap(BASE, 4 * P, RW, FIXED).unwrap();
    cpu_write(&mm, BASE, &ints(4, |i| i));
    let mut big = vec![0u8; 4 * PS];
    let all = [Read, Write, Exclusive, CheckExclusive];
    let bad: [(u64, u64, Errno); 6] = [
        (BASE + 8, 1, Errno::EINVAL),                    // unaligned
        (BASE + P - 1, 1, Errno::EINVAL),                // unaligned
        (BASE, 0, Errno::EINVAL),                        // no pages
        (!(P - 1), 1, Errno::EINVAL),                    // end wraps to 0
        (!(P - 1) - P, 3, Errno::EINVAL),                // end wraps past 0
        (BASE, u64::MAX / PAGE_SIZE + 1, Errno::EINVAL), // npages * PAGE_SIZE overflows
    ];
    for req in all {
        for &(addr, npages, errno) in &bad {
            let mut c = HmmDmirrorCmd {
                addr,
                npages,
                cpages: 123,
                faults: 456,
            };
            let before = c;
            assert_eq!(
                dm.ioctl(&task(), req, &mut c, &mut big),
                Err(errno),
                "{req:?} addr {addr:#x} npages {npages}"
            );
            assert_eq!(c, before, "{req:?}: cmd changed on failure");
        }
    }
    // A bigger buffer than needed is fine, and cpages/faults are zeroed on success.
    let mut bigger = vec![0u8; 8 * PS];
    let mut c = HmmDmirrorCmd {
        addr: BASE,
        npages: 4,
        cpages: 99,
        faults: 99,
    };
    dm.ioctl(&task(), Read, &mut c, &mut bigger).unwrap();
    assert_eq!((c.cpages, c.faults), (4, 1));
    let mut c = HmmDmirrorCmd {
        addr: BASE,
        npages: 4,
        cpages: 99,
        faults: 99,
    };
    dm.ioctl(&task(), CheckExclusive, &mut c, &mut []).unwrap();
    assert_eq!((c.cpages, c.faults), (0, 0));
    // READ of a range with no VMA is EFAULT (hmm_range_fault), cmd unchanged.
    let mut c = HmmDmirrorCmd {
        addr: BASE + 16 * P,
        npages: 1,
        cpages: 7,
        faults: 8,
    };
    assert_eq!(
        dm.ioctl(&task(), Read, &mut c, &mut big),
        Err(Errno::EFAULT)
    );
    assert_eq!((c.cpages, c.faults), (7, 8));
    // A buffer too small for npages: EFAULT (copy_to/from_user), cmd unchanged. (Last:
    // Linux would fail READ/EXCLUSIVE only at the final copy_to_user, after the work;
    // the model checks up front. Either way nothing below depends on it.)
    for req in [Read, Write, Exclusive] {
        let mut c = HmmDmirrorCmd {
            addr: BASE,
            npages: 4,
            cpages: 1,
            faults: 2,
        };
        let before = c;
        assert_eq!(
            dm.ioctl(&task(), req, &mut c, &mut big[..4 * PS - 1]),
            Err(Errno::EFAULT),
            "{req:?}"
        );
        assert_eq!(c, before);
    }
    close(&sys, dm, mm);
}

#[test]
fn dmirror_commands_after_the_last_user_is_gone_are_einval() {
    for profile in Profile::ALL {
        dmirror_commands_after_the_last_user_is_gone_are_einval_in(profile);
    }
}

fn dmirror_commands_after_the_last_user_is_gone_are_einval_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    let dm = Dmirror::open(&mm).unwrap();
    mm.mmap(BASE, 4 * P, RW, FIXED).unwrap();
    cpu_write(&mm, BASE, &ints(4, |i| i));
    let mut buf = vec![0u8; 4 * PS];
    cmd(&dm, Read, BASE, 2, &mut buf).unwrap();
    cmd(&dm, Exclusive, BASE + 2 * P, 2, &mut buf).unwrap();
    assert_eq!(dm.device().lock().len(), 4);
    // The checker audits the open device: read entries on present PTEs, atomic ones
    // on device-exclusive entries, all valid.
    checked(&sys);
    let other = mm.clone();
    drop(mm);
    // Another user keeps the address space.
    assert_eq!(cmd(&dm, Read, BASE, 4, &mut buf).unwrap().cpages, 4);
    drop(other);
    // exit_mmap: the release/unmap invalidations emptied the table (test_hmm's
    // interval notifier covers the whole address space, spec 6.1).
    assert!(dm.device().lock().is_empty());
    // Nothing of dmirror outlives the mm: no stale entry, no stale access, while the
    // device is still open.
    checked(&sys);
    for req in [Read, Write, Exclusive] {
        let mut c = HmmDmirrorCmd {
            addr: BASE,
            npages: 4,
            cpages: 3,
            faults: 4,
        };
        assert_eq!(
            dm.ioctl(&task(), req, &mut c, &mut buf),
            Err(Errno::EINVAL),
            "{req:?}"
        );
        assert_eq!((c.cpages, c.faults), (3, 4));
    }
    assert!(dm.device().lock().is_empty());
    drop(dm);
    all_free(&sys);
}

/// The checker's device audit is not vacuous: an entry dmirror's notifier would have
/// erased, planted by hand, is flagged, and so is an atomic entry on a page the CPU
/// maps present (derived: the checker's rules, mm/secondary.rs); a device read
/// through the planted entry is performed and recorded, not refused.
#[test]
fn dmirror_checker_flags_entries_the_cpu_does_not_map() {
    let (sys, mm) = system(256);
    let dm = Dmirror::open(&mm).unwrap();
    mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
    cpu_write(&mm, BASE, &ints(2, |i| i));
    let mut buf = vec![0u8; 2 * PS];
    cmd(&dm, Read, BASE, 2, &mut buf).unwrap();
    checked(&sys);
    let (p0, p1) = (dev_pfn(&dm, BASE).unwrap(), dev_pfn(&dm, BASE + P).unwrap());
    // Page 0's translation now names page 1's frame; page 1's claims atomic rights.
    {
        let mut t = dm.device().lock();
        t.set(
            BASE,
            svmkit::device::DevPte {
                pfn: p1,
                rights: DevRights::READ,
            },
        );
        t.set(
            BASE + P,
            svmkit::device::DevPte {
                pfn: p1,
                rights: DevRights::READ | DevRights::ATOMIC,
            },
        );
    }
    let err = sys.check().unwrap_err();
    let whats: Vec<(u64, Pfn, bool)> = err
        .violations
        .iter()
        .map(|v| {
            (
                v.addr.unwrap().raw(),
                v.pfn.unwrap(),
                v.what.contains("stale device entry"),
            )
        })
        .collect();
    assert_eq!(
        whats,
        vec![(BASE, p1, true), (BASE + P, p1, false)],
        "{err}"
    );
    assert!(
        err.violations[1].what.contains("not device-exclusive"),
        "{err}"
    );
    // A device read through the stale entry reads page 1's frame: recorded.
    assert_eq!(cmd(&dm, Read, BASE, 1, &mut buf).unwrap().cpages, 1);
    assert_eq!(buf[..PS], ints(2, |i| i)[PS..]);
    let stale = sys.mem().take_stale_device_accesses();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!((stale[0].addr.raw(), stale[0].pfn), (BASE, p1));
    // Put right again, the checker is satisfied.
    dm.device().lock().set(
        BASE,
        svmkit::device::DevPte {
            pfn: p0,
            rights: DevRights::READ,
        },
    );
    dm.device().lock().erase_range(BASE + P, BASE + 2 * P);
    close(&sys, dm, mm);
}

#[test]
fn dmirror_invalidate_erases_on_munmap_dontneed_and_mprotect() {
    for profile in Profile::ALL {
        dmirror_invalidate_erases_on_munmap_dontneed_and_mprotect_in(profile);
    }
}

fn dmirror_invalidate_erases_on_munmap_dontneed_and_mprotect_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    let dm = Dmirror::open(&mm).unwrap();
    let n = 16;
    mm.mmap(BASE, n * P, RW, FIXED).unwrap();
    cpu_write(&mm, BASE, &ints(n, |i| i));
    let mut buf = vec![0u8; n as usize * PS];
    let c = cmd(&dm, Read, BASE, n, &mut buf).unwrap();
    assert_eq!((c.cpages, c.faults), (n, 1));
    // The last four pages are mapped atomically.
    cmd(&dm, Exclusive, BASE + 12 * P, 4, &mut buf).unwrap();
    assert_eq!(dm.device().lock().len(), n as usize);

    let mapped = |lo: u64, hi: u64| -> Vec<bool> {
        (lo..hi)
            .map(|i| rights(&dm, BASE + i * P).is_some())
            .collect()
    };
    // Each invalidation also erases the page at its end (dmirror_do_update()'s
    // inclusive xa_for_each_range, as the kernels' goldens show).
    mm.munmap(BASE, 4 * P).unwrap();
    assert_eq!(mapped(0, 5), [false; 5]);
    assert_eq!(mapped(5, n), [true; 11]);
    checked(&sys);

    mm.madvise(BASE + 4 * P, 4 * P, Advice::DontNeed).unwrap();
    assert_eq!(mapped(4, 9), [false; 5]);
    assert_eq!(mapped(9, n), [true; 7]);
    checked(&sys);

    mm.mprotect(BASE + 8 * P, 4 * P, Prot::READ).unwrap();
    assert_eq!(mapped(8, 13), [false; 5]);
    assert_eq!(mapped(13, n), [true; 3]);
    checked(&sys);

    // mprotect over device-exclusive entries: 6.15 leaves the CPU entries alone, 5.14
    // turns them readable; either way change_protection's notifier range revokes the
    // device mapping.
    let before: Vec<SwapPte> = pages(BASE + 12 * P, 4)
        .map(|a| excl_entry(&mm, a).unwrap())
        .collect();
    mm.mprotect(BASE + 12 * P, 4 * P, Prot::READ).unwrap();
    let after: Vec<SwapPte> = pages(BASE + 12 * P, 4)
        .map(|a| excl_entry(&mm, a).unwrap())
        .collect();
    if profile.mprotect_downgrades_entries {
        for (b, a) in before.iter().zip(&after) {
            assert!(b.is_writable_device_exclusive() && !a.is_writable_device_exclusive());
            assert_eq!(b.pfn(), a.pfn());
        }
    } else {
        assert_eq!(before, after);
    }
    assert_eq!(mapped(12, n), [false; 4]);
    assert!(dm.device().lock().is_empty());
    cmd(&dm, CheckExclusive, BASE, n, &mut []).unwrap();
    checked(&sys);
    // The entries are restored read-only (VM_WRITE is gone), with the data.
    assert_eq!(cpu_read(&mm, BASE + 12 * P, 4), ints(16, |i| i)[12 * PS..]);
    for a in pages(BASE + 12 * P, 4) {
        assert!(!mm.pte_get_lockless(va(a)).present().unwrap().is_write());
    }
    close(&sys, dm, mm);
}

// ---------------------------------------------------------------------------------
// Ports of hmm-tests.c basics: anon_read, anon_read_prot, anon_write,
// anon_write_prot, anon_write_huge.
// ---------------------------------------------------------------------------------

#[test]
fn dmirror_selftest_anon_read() {
    for profile in Profile::ALL {
        dmirror_selftest_anon_read_in(profile);
    }
}

fn dmirror_selftest_anon_read_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 4096);
    let dm = Dmirror::open(&mm).unwrap();
    let npages = HMM_NPAGES;
    let size = npages * P;
    let ptr = mm.mmap(0, size, RW, PRIVATE).unwrap().raw();
    // Leave the first two pages zero (pte_none and the zero page).
    let data = ints(npages, |i| if (i as usize) < 2 * INTS { 0 } else { i });
    cpu_write(&mm, ptr + 2 * P, &data[2 * PS..]);
    mm.mprotect(ptr, size, Prot::READ).unwrap();
    // Populate the CPU page table with the zero page.
    assert_eq!(mm.read_u64(ptr + P).unwrap(), 0);
    let mut mirror = vec![0u8; size as usize];
    let c = cmd(&dm, Read, ptr, npages, &mut mirror).unwrap();
    assert_eq!((c.cpages, c.faults), (npages, 1));
    assert_eq!(mirror, data);
    unmap_and_close(&sys, dm, mm, ptr, size);
}

#[test]
fn dmirror_selftest_anon_read_prot() {
    for profile in Profile::ALL {
        dmirror_selftest_anon_read_prot_in(profile);
    }
}

fn dmirror_selftest_anon_read_prot_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 4096);
    let dm = Dmirror::open(&mm).unwrap();
    let npages = HMM_NPAGES;
    let size = npages * P;
    let ptr = mm.mmap(0, size, RW, PRIVATE).unwrap().raw();
    let data = ints(npages, |i| i);
    cpu_write(&mm, ptr, &data);
    // Initialise the mirror so we can verify it is not written.
    let mut mirror = ints(npages, |i| -i);
    mm.mprotect(ptr, size, Prot::empty()).unwrap();
    let mut c = HmmDmirrorCmd {
        addr: ptr,
        npages,
        ..Default::default()
    };
    assert_eq!(
        dm.ioctl(&task(), Read, &mut c, &mut mirror),
        Err(Errno::EFAULT)
    );
    mm.mprotect(ptr, size, Prot::READ).unwrap();
    assert_eq!(cpu_read(&mm, ptr, npages), data);
    assert_eq!(mirror, ints(npages, |i| -i));
    close(&sys, dm, mm);
}

#[test]
fn dmirror_selftest_anon_write() {
    for profile in Profile::ALL {
        dmirror_selftest_anon_write_in(profile);
    }
}

fn dmirror_selftest_anon_write_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 4096);
    let dm = Dmirror::open(&mm).unwrap();
    let npages = HMM_NPAGES;
    let size = npages * P;
    let ptr = mm.mmap(0, size, RW, PRIVATE).unwrap().raw();
    let mut mirror = ints(npages, |i| i);
    let c = cmd(&dm, Write, ptr, npages, &mut mirror).unwrap();
    assert_eq!((c.cpages, c.faults), (npages, 1));
    assert_eq!(cpu_read(&mm, ptr, npages), mirror);
    close(&sys, dm, mm);
}

#[test]
fn dmirror_selftest_anon_write_prot() {
    for profile in Profile::ALL {
        dmirror_selftest_anon_write_prot_in(profile);
    }
}

fn dmirror_selftest_anon_write_prot_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 1024);
    let dm = Dmirror::open(&mm).unwrap();
    let npages = 2;
    let size = npages * P;
    let ptr = mm.mmap(0, size, Prot::READ, PRIVATE).unwrap().raw();
    // A device reading the zero page.
    let mut mirror = vec![0u8; size as usize];
    let c = cmd(&dm, Read, ptr, 1, &mut mirror).unwrap();
    assert_eq!((c.cpages, c.faults), (1, 1));
    let mut mirror = ints(npages, |i| i);
    assert_eq!(cmd(&dm, Write, ptr, npages, &mut mirror), Err(Errno::EPERM));
    assert!(cpu_read(&mm, ptr, npages).iter().all(|&b| b == 0));
    // Allow writing: the zero page is replaced.
    mm.mprotect(ptr, size, RW).unwrap();
    let c = cmd(&dm, Write, ptr, npages, &mut mirror).unwrap();
    assert_eq!((c.cpages, c.faults), (npages, 1));
    assert_eq!(cpu_read(&mm, ptr, npages), mirror);
    close(&sys, dm, mm);
}

#[test]
fn dmirror_selftest_anon_write_huge() {
    for profile in Profile::ALL {
        dmirror_selftest_anon_write_huge_in(profile);
    }
}

fn dmirror_selftest_anon_write_huge_in(profile: Profile) {
    let (sys, mm) = system_with(profile, 4096);
    let dm = Dmirror::open(&mm).unwrap();
    let npages = PMD_SIZE / P;
    // Linux: mmap 2 * TWOMEG and align; here MAP_FIXED at an aligned address.
    let ptr = mm.mmap(BASE, PMD_SIZE, RW, FIXED).unwrap().raw();
    mm.madvise(ptr, PMD_SIZE, Advice::HugePage).unwrap();
    let mut mirror = ints(npages, |i| i);
    let c = cmd(&dm, Write, ptr, npages, &mut mirror).unwrap();
    assert_eq!((c.cpages, c.faults), (npages, 1));
    // The write fault allocated a THP; the device maps its subpages.
    assert!(mm.pmd_is_huge(va(ptr)));
    for a in pages(ptr, npages) {
        assert_eq!(dev_pfn(&dm, a), mm.translate(va(a)));
        assert_eq!(rights(&dm, a), Some(DevRights::READ | DevRights::WRITE));
    }
    assert_eq!(cpu_read(&mm, ptr, npages), mirror);
    let mut back = vec![0u8; PMD_SIZE as usize];
    let c = cmd(&dm, Read, ptr, npages, &mut back).unwrap();
    assert_eq!((c.cpages, c.faults), (npages, 0));
    assert_eq!(back, mirror);
    close(&sys, dm, mm);
}

// ---------------------------------------------------------------------------------
// Ports of hmm-tests.c exclusive, exclusive_mprotect and exclusive_cow.
// ---------------------------------------------------------------------------------

/// The selftest buffer: 1024 pages, `ptr[i] = i`. With `thp`, 2 MiB-aligned and
/// `MADV_HUGEPAGE` before filling, so two PMD-mapped THPs back it. Returns the
/// address and the frame of every page.
fn selftest_buffer(mm: &MmUser, thp: bool) -> (u64, Vec<Pfn>) {
    let size = HMM_NPAGES * P;
    let ptr = if thp {
        let p = mm.mmap(BASE, size, RW, FIXED).unwrap().raw();
        assert!(p.is_multiple_of(PMD_SIZE));
        mm.madvise(p, size, Advice::HugePage).unwrap();
        p
    } else {
        mm.mmap(0, size, RW, PRIVATE).unwrap().raw()
    };
    cpu_write(mm, ptr, &ints(HMM_NPAGES, |i| i));
    if thp {
        assert!(mm.pmd_is_huge(va(ptr)) && mm.pmd_is_huge(va(ptr + PMD_SIZE)));
    }
    let frames = pages(ptr, HMM_NPAGES)
        .map(|a| mm.translate(va(a)).unwrap())
        .collect();
    (ptr, frames)
}

/// EXCLUSIVE over the whole buffer: `ret == 0`, `cpages == npages`, mirror == i, and
/// every CPU PTE is a device-exclusive entry for the same frame (PTE-mapped now).
fn selftest_make_exclusive(sys: &System, mm: &MmUser, dm: &Dmirror, ptr: u64, frames: &[Pfn]) {
    let mut mirror = vec![0u8; (HMM_NPAGES * P) as usize];
    let c = cmd(dm, Exclusive, ptr, HMM_NPAGES, &mut mirror).unwrap();
    assert_eq!(c.cpages, HMM_NPAGES);
    assert_eq!(mirror, ints(HMM_NPAGES, |i| i));
    for (i, a) in pages(ptr, HMM_NPAGES).enumerate() {
        let e = excl_entry(mm, a).unwrap_or_else(|| panic!("page {i} not device-exclusive"));
        assert_eq!(e.pfn(), Some(frames[i]), "page {i}");
        assert!(rights(dm, a).unwrap().contains(DevRights::ATOMIC));
    }
    for half in [ptr, ptr + PMD_SIZE] {
        assert!(!mm.pmd_is_huge(va(half)));
    }
    assert_eq!(
        cmd(dm, CheckExclusive, ptr, HMM_NPAGES, &mut []),
        Err(Errno::EPERM)
    );
    checked(sys);
}

/// `ASSERT_EQ(ptr[i]++, i)` for all i, a page at a time, then `ptr[i] == i + 1`.
fn selftest_increment(mm: &MmUser, ptr: u64) {
    let mut page = vec![0u8; PS];
    let expect = ints(HMM_NPAGES, |i| i);
    for n in 0..HMM_NPAGES as usize {
        let a = ptr + (n * PS) as u64;
        mm.read_bytes(a, &mut page).unwrap();
        assert_eq!(page, expect[n * PS..(n + 1) * PS], "page {n}");
        for w in page.chunks_mut(4) {
            let v = i32::from_ne_bytes(w.try_into().unwrap());
            w.copy_from_slice(&(v + 1).to_ne_bytes());
        }
        mm.write_bytes(a, &page).unwrap();
    }
    assert_eq!(cpu_read(mm, ptr, HMM_NPAGES), ints(HMM_NPAGES, |i| i + 1));
}

fn selftest_exclusive(thp: bool) {
    let (sys, mm) = system(8192);
    let dm = Dmirror::open(&mm).unwrap();
    let (ptr, frames) = selftest_buffer(&mm, thp);
    let thp_folios: Vec<_> = frames
        .iter()
        .map(|&f| sys.mem().page_folio(f).unwrap())
        .collect();
    selftest_make_exclusive(&sys, &mm, &dm, ptr, &frames);

    selftest_increment(&mm, ptr);
    // Restored in place: present, writable, the same frames (and folios).
    for (i, a) in pages(ptr, HMM_NPAGES).enumerate() {
        let pte = mm
            .pte_get_lockless(va(a))
            .present()
            .unwrap_or_else(|| panic!("page {i} not restored"));
        assert!(pte.is_write(), "page {i}");
        assert_eq!(pte.pfn, frames[i], "page {i}");
        assert_eq!(sys.mem().page_folio(pte.pfn).unwrap(), thp_folios[i]);
        if thp {
            assert!(thp_folios[i].is_large());
        }
        assert!(!rights(&dm, a).is_some_and(|r| r.contains(DevRights::ATOMIC)));
    }
    cmd(&dm, CheckExclusive, ptr, HMM_NPAGES, &mut []).unwrap();
    unmap_and_close(&sys, dm, mm, ptr, HMM_NPAGES * P);
}

#[test]
fn selftest_exclusive_plain() {
    selftest_exclusive(false);
}

#[test]
fn selftest_exclusive_thp() {
    selftest_exclusive(true);
}

fn selftest_exclusive_mprotect(thp: bool) {
    let (sys, mm) = system(8192);
    let dm = Dmirror::open(&mm).unwrap();
    let (ptr, frames) = selftest_buffer(&mm, thp);
    let size = HMM_NPAGES * P;
    selftest_make_exclusive(&sys, &mm, &dm, ptr, &frames);

    let before: Vec<SwapPte> = excl_entries(&mm, ptr);
    mm.mprotect(ptr, size, Prot::READ).unwrap();
    // 6.15: no downgrade, the entries are untouched.
    let after: Vec<SwapPte> = excl_entries(&mm, ptr);
    assert_eq!(before, after);
    checked(&sys);

    let mut mirror = ints(HMM_NPAGES, |i| i);
    let mut c = HmmDmirrorCmd {
        addr: ptr,
        npages: HMM_NPAGES,
        ..Default::default()
    };
    assert_eq!(
        dm.ioctl(&task(), Write, &mut c, &mut mirror),
        Err(Errno::EPERM)
    );
    assert_eq!(c.cpages, 0);
    // The permission check precedes the fault: nothing was restored, and the CPU
    // still reads its data (read-only now).
    let still: Vec<SwapPte> = excl_entries(&mm, ptr);
    assert_eq!(still, before);
    checked(&sys);
    assert_eq!(cpu_read(&mm, ptr, HMM_NPAGES), ints(HMM_NPAGES, |i| i));
    assert!(pages(ptr, HMM_NPAGES).all(|a| {
        let pte = mm.pte_get_lockless(va(a)).present().unwrap();
        !pte.is_write()
    }));
    unmap_and_close(&sys, dm, mm, ptr, size);
}

#[test]
fn selftest_exclusive_mprotect_plain() {
    selftest_exclusive_mprotect(false);
}

#[test]
fn selftest_exclusive_mprotect_thp() {
    selftest_exclusive_mprotect(true);
}

fn selftest_exclusive_cow(thp: bool) {
    let (sys, parent) = system(8192);
    let dm = Dmirror::open(&parent).unwrap();
    let (ptr, frames) = selftest_buffer(&parent, thp);
    selftest_make_exclusive(&sys, &parent, &dm, ptr, &frames);

    let child = sys.fork(&parent).unwrap();
    // fork restored every entry in the parent (the folios were unlocked after the
    // ioctl) and shared the pages COW; the child inherited no entry.
    for (i, a) in pages(ptr, HMM_NPAGES).enumerate() {
        let pte = parent
            .pte_get_lockless(va(a))
            .present()
            .unwrap_or_else(|| panic!("page {i} not restored by fork"));
        assert_eq!(pte.pfn, frames[i]);
        assert!(!pte.is_write(), "page {i}: COW");
        assert!(excl_entry(&child, a).is_none());
        assert_eq!(child.translate(va(a)), Some(frames[i]));
    }
    // The fork's invalidation revoked the device.
    cmd(&dm, CheckExclusive, ptr, HMM_NPAGES, &mut []).unwrap();
    checked(&sys);

    selftest_increment(&parent, ptr);
    selftest_increment(&child, ptr);
    // Each sees its own copy.
    assert_eq!(
        cpu_read(&parent, ptr, HMM_NPAGES),
        ints(HMM_NPAGES, |i| i + 1)
    );
    checked(&sys);
    parent.munmap(ptr, HMM_NPAGES * P).unwrap();
    child.munmap(ptr, HMM_NPAGES * P).unwrap();
    checked(&sys);
    drop(child);
    drop(dm);
    drop(parent);
    all_free(&sys);
}

#[test]
fn selftest_exclusive_cow_plain() {
    selftest_exclusive_cow(false);
}

#[test]
fn selftest_exclusive_cow_thp() {
    selftest_exclusive_cow(true);
}

#[test]
fn dmirror_two_devices_on_one_mm_revoke_each_other() {
    for profile in Profile::ALL {
        dmirror_two_devices_on_one_mm_revoke_each_other_in(profile);
    }
}

fn dmirror_two_devices_on_one_mm_revoke_each_other_in(profile: Profile) {
    // Spec 6.1 and 9.14: a READ by another device faults, and the fault restores the
    // CPU entry, revoking the holder; that device's EXCLUSIVE then takes the page.
    let (sys, mm) = system_with(profile, 1024);
    mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
    cpu_write(&mm, BASE, &ints(2, |i| i));
    let a = Dmirror::open(&mm).unwrap();
    let b = Dmirror::open(&mm).unwrap();
    let mut buf = vec![0u8; 2 * PS];
    cmd(&a, Exclusive, BASE, 2, &mut buf).unwrap();
    assert!(rights(&a, BASE).is_some_and(|r| r.contains(DevRights::ATOMIC)));
    // B reads page 0: it faults, which restores the CPU PTE and erases A's entry.
    let c = cmd(&b, Read, BASE, 1, &mut buf[..PS]).unwrap();
    assert_eq!(c.faults, 1);
    assert!(excl_entry(&mm, BASE).is_none());
    assert_eq!(rights(&a, BASE), None);
    // The restore's invalidation of page 0 erases A's page 1 too (dmirror_do_update()'s
    // inclusive end, as the kernels' goldens show); page 1's CPU entry stays A's.
    assert_eq!(rights(&a, BASE + P), None);
    assert!(excl_entry(&mm, BASE + P).is_some());
    assert_eq!(
        a.ioctl(
            &task(),
            CheckExclusive,
            &mut HmmDmirrorCmd {
                addr: BASE,
                npages: 1,
                ..Default::default()
            },
            &mut []
        ),
        Ok(())
    );
    // B takes page 1 exclusively: its GUP restores A's entry, B's conversion follows.
    cmd(&b, Exclusive, BASE + P, 1, &mut buf[..PS]).unwrap();
    assert_eq!(rights(&a, BASE + P), None);
    assert!(rights(&b, BASE + P).is_some_and(|r| r.contains(DevRights::ATOMIC)));
    assert_eq!(
        excl_entry(&mm, BASE + P).and_then(|e| e.pfn()),
        dev_pfn(&b, BASE + P)
    );
    assert_eq!(cpu_read(&mm, BASE, 2), ints(2, |i| i));
    drop((a, b));
    drop(mm);
    all_free(&sys);
}
