//! uprobes' page replacement (`uprobe_write_opcode()` → `__replace_page()`,
//! kernel/events/uprobes.c), without races; the race with a device-exclusive
//! conversion (spec 4.11, 8 item 10) is explored in shuttle_uprobes.rs.
//!
//! Sources: `__replace_page()` of the Debian 6.12 tree (a new anon page, exclusive,
//! mapped with the VMA's protection: read-only in a private mapping; the old page's
//! rmap and reference dropped; a `MMU_NOTIFY_CLEAR` range over the page); its GUP
//! with `FOLL_SPLIT_PMD` faults a device-exclusive entry back (spec 4.11, "Its GUP
//! restores the entry first"). Errnos for bad input are the model's (derived: Linux
//! has no anonymous uprobes).

mod common;

use std::sync::atomic::Ordering;

use svmkit::device::dmirror::{Dmirror, DmirrorIoctl, HmmDmirrorCmd};
use svmkit::mm::{MapFlags, Pte};
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Profile};

use common::{BASE, FIXED, P, RW, checked, system, va};

#[test]
fn uprobe_replaces_the_page_with_a_read_only_copy() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let (sys, mm) = system(profile, 256);
        mm.mmap(BASE, P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 1).unwrap();
        mm.write_u64(BASE + 8, 2).unwrap();
        let old = mm.translate(va(BASE)).unwrap();
        let free = sys.mem().nr_free_pages();
        let new = mm.uprobe_write_opcode(BASE + 8, 0xcc).unwrap();
        assert_ne!(new, old);
        let p = mm.pte_get_lockless(va(BASE)).present().unwrap();
        assert_eq!(p.pfn, new);
        assert!(!p.is_write(), "mapped with vm_page_prot: read-only");
        assert_eq!(mm.read_u64(BASE).unwrap(), 1, "the copy");
        assert_eq!(mm.read_u64(BASE + 8).unwrap(), 0xcc, "the breakpoint");
        assert_eq!(sys.mem().nr_free_pages(), free, "one page in, one out");
        assert_eq!(sys.mem().page(new).unwrap().mapcount(), 1);
        assert_eq!(mm.rss_anon(), 1);
        checked(&sys);
        // The new page is exclusive (RMAP_EXCLUSIVE): a write reuses it.
        mm.write_u64(BASE, 3).unwrap();
        assert_eq!(mm.translate(va(BASE)), Some(new), "{}", profile.name);
        assert_eq!(mm.stats().cow_copies.load(Ordering::Relaxed), 0);
        checked(&sys);
    }
}

/// Without a race the GUP restores a device-exclusive entry first (revoking the
/// device), in both eras, and the replacement then works as on any page.
#[test]
fn uprobe_on_a_device_exclusive_page_restores_it_first() {
    for profile in [Profile::linux_5_14(), Profile::linux_6_15()] {
        let (sys, mm) = system(profile, 256);
        mm.mmap(BASE, P, RW, FIXED).unwrap();
        mm.write_u64(BASE, 7).unwrap();
        let dm = Dmirror::open(&mm).unwrap();
        let mut c = HmmDmirrorCmd {
            addr: BASE,
            npages: 1,
            ..Default::default()
        };
        let mut buf = vec![0u8; PAGE_SIZE as usize];
        dm.ioctl(&Task::new("t"), DmirrorIoctl::Exclusive, &mut c, &mut buf)
            .unwrap();
        assert!(matches!(mm.pte_get_lockless(va(BASE)), Pte::Swap(s) if s.is_device_exclusive()));
        mm.uprobe_write_opcode(BASE + 16, 9).unwrap();
        assert!(dm.device().lock().get(BASE).is_none(), "{}", profile.name);
        assert_eq!(mm.read_u64(BASE).unwrap(), 7);
        assert_eq!(mm.read_u64(BASE + 16).unwrap(), 9);
        assert!(sys.mem().bad_pages().is_empty());
        checked(&sys);
        drop(dm);
    }
}

#[test]
fn uprobe_bad_input_fails_without_changing_anything() {
    let (sys, mm) = system(Profile::linux_6_15(), 256);
    mm.mmap(BASE, P, RW, FIXED).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    let old = mm.translate(va(BASE));
    assert_eq!(mm.uprobe_write_opcode(BASE + 3, 0), Err(Errno::EINVAL));
    assert_eq!(mm.uprobe_write_opcode(BASE + 4 * P, 0), Err(Errno::EFAULT));
    assert_eq!(mm.uprobe_write_opcode(!7, 0), Err(Errno::EFAULT));
    let shared = MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED;
    mm.mmap(BASE + 8 * P, P, RW, shared).unwrap();
    assert_eq!(mm.uprobe_write_opcode(BASE + 8 * P, 0), Err(Errno::EINVAL));
    assert_eq!(mm.translate(va(BASE)), old);
    checked(&sys);
}
