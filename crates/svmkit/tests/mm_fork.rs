//! fork, copy-on-write, shared anonymous memory and the reverse map, through the
//! public API.

mod common;

use std::sync::atomic::Ordering;

use svmkit::mm::mmu_notifier::{MmuNotifierEvent, NotifierCallKind, RecordingNotifier};
use svmkit::mm::{Advice, Folio, MapFlags, MmUser, PageFlags, Prot};
use svmkit::sync::Arc;
use svmkit::{Errno, PAGE_SIZE, Pfn, System, SystemConfig, VirtAddr};

use common::checked;

const RW: Prot = Prot::READ.union(Prot::WRITE);
const PRIVATE: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const SHARED: MapFlags = MapFlags::SHARED
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const BASE: u64 = 0x4000_0000;
const P: u64 = PAGE_SIZE;

fn system(frames: u64) -> (Arc<System>, MmUser) {
    let sys = System::new(SystemConfig::with_frames(frames)).unwrap();
    let mm = sys.create_mm().unwrap();
    (sys, mm)
}

fn pfn(mm: &MmUser, addr: u64) -> Pfn {
    mm.pte_get_lockless(VirtAddr::try_new(addr).unwrap())
        .present()
        .unwrap_or_else(|| panic!("no present PTE at {addr:#x}"))
        .pfn
}

fn writable(mm: &MmUser, addr: u64) -> bool {
    mm.pte_get_lockless(VirtAddr::try_new(addr).unwrap())
        .present()
        .is_some_and(|p| p.is_write())
}

fn folio(sys: &System, pfn: Pfn) -> Folio {
    sys.mem().page_folio(pfn).unwrap()
}

fn counts(sys: &System, pfn: Pfn) -> (i32, i32, bool) {
    let page = sys.mem().page(pfn).unwrap();
    (
        sys.mem().folio_ref_count(folio(sys, pfn)),
        page.mapcount(),
        page.test(PageFlags::ANON_EXCLUSIVE),
    )
}

#[test]
fn fork_cow_parent_and_child_keep_their_own_writes() {
    let (sys, parent) = system(1024);
    parent.mmap(BASE, 4 * P, RW, PRIVATE).unwrap();
    for i in 0..4 {
        parent.write_u64(BASE + i * P, 100 + i).unwrap();
    }
    let before: Vec<Pfn> = (0..4).map(|i| pfn(&parent, BASE + i * P)).collect();
    assert_eq!(counts(&sys, before[0]), (1, 1, true));

    let child = sys.fork(&parent).unwrap();
    checked(&sys);
    // Shared copy-on-write: same frames, read-only in both, counted twice, no longer
    // exclusive to either.
    for i in 0..4 {
        let a = BASE + i * P;
        assert_eq!(pfn(&child, a), before[i as usize]);
        assert!(!writable(&parent, a) && !writable(&child, a));
        assert_eq!(counts(&sys, before[i as usize]), (2, 2, false));
        assert_eq!(child.read_u64(a).unwrap(), 100 + i);
    }

    // Each writes its own page 0 and 1 values; each reads back its own.
    let copies = |mm: &MmUser| mm.stats().cow_copies.load(Ordering::Relaxed);
    parent.write_u64(BASE, 1).unwrap();
    child.write_u64(BASE, 2).unwrap();
    child.write_u64(BASE + P, 3).unwrap();
    assert_eq!(parent.read_u64(BASE).unwrap(), 1);
    assert_eq!(child.read_u64(BASE).unwrap(), 2);
    assert_eq!(parent.read_u64(BASE + P).unwrap(), 101);
    assert_eq!(child.read_u64(BASE + P).unwrap(), 3);
    assert_eq!((copies(&parent), copies(&child)), (1, 1));
    // The parent's write copied page 0; the child's then found itself the only user
    // and reused the original in place.
    assert_ne!(pfn(&parent, BASE), before[0]);
    assert_eq!(pfn(&child, BASE), before[0]);
    checked(&sys);

    // A page only read is never copied.
    assert_eq!(parent.read_u64(BASE + 2 * P).unwrap(), 102);
    assert_eq!(child.read_u64(BASE + 2 * P).unwrap(), 102);
    assert_eq!(pfn(&parent, BASE + 2 * P), pfn(&child, BASE + 2 * P));

    // After the child exits, the parent's next write reuses the page in place.
    drop(child);
    checked(&sys);
    let reuses = parent.stats().wp_reuses.load(Ordering::Relaxed);
    parent.write_u64(BASE + 3 * P, 7).unwrap();
    assert_eq!(pfn(&parent, BASE + 3 * P), before[3]);
    assert_eq!(parent.stats().wp_reuses.load(Ordering::Relaxed), reuses + 1);
    assert_eq!(copies(&parent), 1);
    assert_eq!(counts(&sys, before[3]), (1, 1, true));
    checked(&sys);
    drop(parent);
    assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
}

#[test]
fn fork_cow_read_only_private_mapping_is_shared_then_copied_after_mprotect() {
    let (sys, parent) = system(1024);
    parent.mmap(BASE, 2 * P, RW, PRIVATE).unwrap();
    parent.write_u64(BASE, 5).unwrap();
    parent.mprotect(BASE, 2 * P, Prot::READ).unwrap();
    let orig = pfn(&parent, BASE);
    let child = sys.fork(&parent).unwrap();
    // PROT_READ private is still a COW mapping (VM_MAYWRITE): shared, not copied.
    assert_eq!(pfn(&child, BASE), orig);
    assert_eq!(counts(&sys, orig), (2, 2, false));
    child.mprotect(BASE, 2 * P, RW).unwrap();
    // Not anon-exclusive any more: mprotect does not make it writable...
    assert!(!writable(&child, BASE));
    // ...and the write copies it.
    child.write_u64(BASE, 6).unwrap();
    assert_ne!(pfn(&child, BASE), orig);
    assert_eq!(parent.read_u64(BASE).unwrap(), 5);
    assert_eq!(child.read_u64(BASE).unwrap(), 6);
    assert_eq!(counts(&sys, orig), (1, 1, false));
    checked(&sys);
}

#[test]
fn fork_events_protection_page_per_cow_vma_and_clear_per_cow_break() {
    let (sys, parent) = system(1024);
    let rec = RecordingNotifier::new();
    parent.mmap_notifier_setup(&rec);
    parent.mmap(BASE, 2 * P, RW, PRIVATE).unwrap();
    parent
        .mmap(BASE + 4 * P, 2 * P, Prot::READ, PRIVATE)
        .unwrap();
    parent.mmap(BASE + 8 * P, 2 * P, RW, SHARED).unwrap();
    parent.mmap(BASE + 12 * P, 2 * P, RW, PRIVATE).unwrap();
    parent.write_u64(BASE, 1).unwrap();
    parent.write_u64(BASE + 8 * P, 1).unwrap();
    // The read-only VMA gets an anon page before being made read-only.
    parent.mprotect(BASE + 4 * P, 2 * P, RW).unwrap();
    parent.write_u64(BASE + 4 * P, 1).unwrap();
    parent.mprotect(BASE + 4 * P, 2 * P, Prot::READ).unwrap();
    rec.take();

    let child = sys.fork(&parent).unwrap();
    let calls = rec.take();
    let classic: Vec<_> = calls
        .iter()
        .filter(|c| c.kind == NotifierCallKind::Start)
        .map(|c| (c.event, c.start, c.end, c.owner))
        .collect();
    // One ProtectionPage range over each whole COW source VMA that has anon pages;
    // nothing for the shared VMA or the never-faulted private one.
    assert_eq!(
        classic,
        vec![
            (MmuNotifierEvent::ProtectionPage, BASE, BASE + 2 * P, None),
            (
                MmuNotifierEvent::ProtectionPage,
                BASE + 4 * P,
                BASE + 6 * P,
                None
            ),
        ]
    );
    assert!(calls.iter().all(|c| c.mm == parent.mm().id()));

    // A COW break in the parent: Clear over exactly one page.
    parent.write_u64(BASE + 8, 2).unwrap();
    let calls = rec.take();
    assert!(
        calls
            .iter()
            .all(|c| c.event == MmuNotifierEvent::Clear && (c.start, c.end) == (BASE, BASE + P))
    );
    assert_eq!(calls.len(), 3, "interval, start, end: {calls:?}");
    // Writes to shared memory never copy, so never notify.
    child.write_u64(BASE + 8 * P, 3).unwrap();
    parent.write_u64(BASE + 8 * P + 8, 3).unwrap();
    assert!(rec.take().is_empty());
    parent.mmap_notifier_teardown();
    checked(&sys);
}

/// Test helper: subscribes a recorder to the mm (classic and over all of user space)
/// and forgets about removal until teardown.
trait NotifierSetup {
    fn mmap_notifier_setup(&self, rec: &Arc<RecordingNotifier>);
    fn mmap_notifier_teardown(&self);
}

thread_local! {
    static SUBS: std::cell::RefCell<Vec<Arc<svmkit::mm::mmu_notifier::MmuIntervalNotifier>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl NotifierSetup for MmUser {
    fn mmap_notifier_setup(&self, rec: &Arc<RecordingNotifier>) {
        self.mmu_notifier_register(rec.clone()).unwrap();
        let sub = self
            .mm()
            .mmu_interval_notifier_insert(0, 1 << 47, rec.clone())
            .unwrap();
        SUBS.with(|s| s.borrow_mut().push(sub));
    }

    fn mmap_notifier_teardown(&self) {
        SUBS.with(|s| {
            for sub in s.borrow_mut().drain(..) {
                sub.remove().unwrap();
            }
        });
    }
}

#[test]
fn shared_anon_stays_shared_across_fork() {
    let (sys, parent) = system(1024);
    parent.mmap(BASE, 4 * P, RW, SHARED).unwrap();
    parent.write_u64(BASE + P, 11).unwrap();
    let page = pfn(&parent, BASE + P);
    assert!(writable(&parent, BASE + P));
    assert!(!sys.mem().folio_test(folio(&sys, page), PageFlags::ANON));
    let child = sys.fork(&parent).unwrap();
    // Not copied at fork: the child faults the same page in.
    assert!(
        child
            .pte_get_lockless(VirtAddr::try_new(BASE + P).unwrap())
            .is_none()
    );
    assert_eq!(child.read_u64(BASE + P).unwrap(), 11);
    assert_eq!(pfn(&child, BASE + P), page);
    // A write in one is seen by the other, in place: cache + two mappings.
    child.write_u64(BASE + P, 12).unwrap();
    assert_eq!(parent.read_u64(BASE + P).unwrap(), 12);
    parent.write_u64(BASE + 2 * P, 13).unwrap();
    assert_eq!(child.read_u64(BASE + 2 * P).unwrap(), 13);
    assert_eq!(pfn(&child, BASE + P), page);
    assert_eq!(counts(&sys, page), (3, 2, false));
    assert_eq!(
        (parent.rss_shmem(), child.rss_shmem(), parent.rss_anon()),
        (2, 2, 0)
    );
    checked(&sys);
    // DONTNEED drops the mapping, not the data.
    parent.madvise(BASE, 4 * P, Advice::DontNeed).unwrap();
    assert_eq!(parent.rss_shmem(), 0);
    assert_eq!(parent.read_u64(BASE + P).unwrap(), 12);
    checked(&sys);
    // The object outlives the parent's mapping while the child maps it.
    parent.munmap(BASE, 4 * P).unwrap();
    assert_eq!(child.read_u64(BASE + 2 * P).unwrap(), 13);
    drop(child);
    checked(&sys);
    drop(parent);
    assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
}

#[test]
fn rmap_finds_every_mapping_across_fork_generations() {
    let (sys, a) = system(1024);
    a.mmap(BASE, 2 * P, RW, PRIVATE).unwrap();
    a.write_u64(BASE + P, 1).unwrap();
    let page = pfn(&a, BASE + P);
    let b = sys.fork(&a).unwrap();
    let c = sys.fork(&b).unwrap();
    let ids = |mms: &[&MmUser]| -> Vec<(u64, VirtAddr, Pfn)> {
        let mut v: Vec<_> = mms
            .iter()
            .map(|m| (m.mm().id(), VirtAddr::try_new(BASE + P).unwrap(), page))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        sys.mem().rmap_mappings(folio(&sys, page)),
        ids(&[&a, &b, &c])
    );
    assert_eq!(counts(&sys, page), (3, 3, false));

    // After B breaks COW, the old page is found in A and C only, B's copy in B only.
    b.write_u64(BASE + P, 2).unwrap();
    let copy = pfn(&b, BASE + P);
    assert_ne!(copy, page);
    assert_eq!(sys.mem().rmap_mappings(folio(&sys, page)), ids(&[&a, &c]));
    assert_eq!(
        sys.mem().rmap_mappings(folio(&sys, copy)),
        vec![(b.mm().id(), VirtAddr::try_new(BASE + P).unwrap(), copy)]
    );
    // A split VMA (mprotect) and a moved-away mm keep the walk exact.
    a.mprotect(BASE, P, Prot::READ).unwrap();
    drop(c);
    assert_eq!(sys.mem().rmap_mappings(folio(&sys, page)), ids(&[&a]));
    checked(&sys);
    // An unmapped page has no rmap.
    a.munmap(BASE, 2 * P).unwrap();
    assert!(sys.mem().page(page).is_none_or(|p| p.mapcount() == 0));
    checked(&sys);
}

#[test]
fn fork_out_of_memory_tears_the_child_down_and_keeps_the_parent() {
    let (sys, parent) = system(64);
    // Three VMAs in three different 2 MiB ranges: the child needs a PTE table each.
    for i in 0..3 {
        parent.mmap(BASE + i * (2 << 20), P, RW, PRIVATE).unwrap();
        parent.write_u64(BASE + i * (2 << 20), i + 1).unwrap();
    }
    // Eat memory until a fault fails, then give two frames back.
    let filler = 0x5000_0000;
    parent.mmap(filler, 64 * P, RW, PRIVATE).unwrap();
    let mut touched = 0;
    while parent.write_u64(filler + touched * P, 1).is_ok() {
        touched += 1;
    }
    parent.madvise(filler, 2 * P, Advice::DontNeed).unwrap();
    let free = sys.mem().nr_free_pages();
    assert_eq!(free, 2);
    let mms = sys.mms().len();
    assert_eq!(sys.fork(&parent).unwrap_err(), Errno::ENOMEM);
    checked(&sys);
    assert_eq!(
        sys.mem().nr_free_pages(),
        free,
        "the child's tables went back"
    );
    assert_eq!(sys.mms().len(), mms, "the child is gone");
    for i in 0..3 {
        assert_eq!(parent.read_u64(BASE + i * (2 << 20)).unwrap(), i + 1);
    }
}

#[test]
fn fork_copies_possibly_pinned_pages_at_once() {
    let (sys, parent) = system(1024);
    parent.mmap(BASE, 2 * P, RW, PRIVATE).unwrap();
    parent.write_u64(BASE, 9).unwrap();
    parent.write_u64(BASE + P, 10).unwrap();
    let pinned = pfn(&parent, BASE);
    let f = folio(&sys, pinned);
    // What a FOLL_PIN does to a small folio: a bias of 1024 references, and the mm
    // remembers it ever pinned.
    for _ in 0..1024 {
        sys.mem().folio_get(f);
    }
    parent.set_has_pinned();
    let child = sys.fork(&parent).unwrap();
    // The possibly pinned page was copied for the child; the other one is shared.
    assert_ne!(pfn(&child, BASE), pinned);
    assert!(writable(&parent, BASE) && writable(&child, BASE));
    assert_eq!(child.read_u64(BASE).unwrap(), 9);
    assert_eq!(pfn(&child, BASE + P), pfn(&parent, BASE + P));
    child.write_u64(BASE, 1).unwrap();
    assert_eq!(parent.read_u64(BASE).unwrap(), 9);
    let mut extra = svmkit::check::ExtraRefs::new();
    extra.insert(f, 1024);
    if let Err(e) = sys.check_with(&extra) {
        panic!("{e}");
    }
    for _ in 0..1024 {
        sys.mem().folio_put(f);
    }
    checked(&sys);
}
