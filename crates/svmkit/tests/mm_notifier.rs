//! MMU notifiers and interval notifiers through the public API: which events each mm
//! path sends (against the recording subscriber), the interval sequence protocol, and
//! deferred insert/remove during invalidations.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use svmkit::mm::mmu_notifier::{
    FirstPass, MmuIntervalNotifier, MmuIntervalNotifierOps, MmuNotifierEvent, MmuNotifierOps,
    MmuNotifierRange, NotifierCall, NotifierCallKind, Owner, RecordingNotifier,
};
use svmkit::mm::{Advice, MapFlags, MmUser, PMD_SIZE, Prot};
use svmkit::sync::Arc;
use svmkit::{Errno, PAGE_SIZE, System, SystemConfig};

use common::checked;

const RW: Prot = Prot::READ.union(Prot::WRITE);
const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const BASE: u64 = 0x4000_0000;
const P: u64 = PAGE_SIZE;

fn system() -> (Arc<System>, MmUser) {
    let sys = System::new(SystemConfig::with_frames(4096)).unwrap();
    let mm = sys.create_mm().unwrap();
    (sys, mm)
}

/// One recorder subscribed both ways (classic, and an interval over all of user space),
/// so its log shows the relative order of interval and classic callbacks.
fn record_all(mm: &MmUser) -> (Arc<RecordingNotifier>, Arc<MmuIntervalNotifier>) {
    let rec = RecordingNotifier::new();
    mm.mmu_notifier_register(rec.clone()).unwrap();
    let sub = mm
        .mm()
        .mmu_interval_notifier_insert(0, 1 << 47, rec.clone())
        .unwrap();
    (rec, sub)
}

/// (kind, event, start, end, owner) of each call, without sequence numbers.
fn shape(calls: &[NotifierCall]) -> Vec<(&'static str, MmuNotifierEvent, u64, u64, Option<Owner>)> {
    calls
        .iter()
        .map(|c| {
            let kind = match c.kind {
                NotifierCallKind::Start => "start",
                NotifierCallKind::End => "end",
                NotifierCallKind::Release => "release",
                NotifierCallKind::Interval { .. } => "interval",
            };
            (kind, c.event, c.start, c.end, c.owner)
        })
        .collect()
}

/// The three calls one invalidation produces for [`record_all`]: interval first, then
/// classic start and end.
fn triple(
    event: MmuNotifierEvent,
    start: u64,
    end: u64,
) -> Vec<(&'static str, MmuNotifierEvent, u64, u64, Option<Owner>)> {
    vec![
        ("interval", event, start, end, None),
        ("start", event, start, end, None),
        ("end", event, start, end, None),
    ]
}

#[test]
fn notifier_events_munmap_sends_one_unmap_over_the_request() {
    let (sys, mm) = system();
    let (rec, sub) = record_all(&mm);
    mm.mmap(BASE, 4 * P, RW, FIXED).unwrap();
    mm.mmap(BASE + 6 * P, 2 * P, Prot::READ, FIXED).unwrap();
    for i in 0..4 {
        mm.write_u64(BASE + i * P, i).unwrap();
    }
    assert!(
        rec.take().is_empty(),
        "mmap and first-touch faults notify nobody"
    );
    // Two VMAs and a hole between them: Linux's unmap_vmas() sends one range over the
    // whole request.
    mm.munmap(BASE + 2 * P, 6 * P).unwrap();
    assert_eq!(
        shape(&rec.take()),
        triple(MmuNotifierEvent::Unmap, BASE + 2 * P, BASE + 8 * P)
    );
    // Unmapping nothing sends nothing.
    mm.munmap(BASE + 100 * P, P).unwrap();
    assert!(rec.take().is_empty());
    assert_eq!(mm.read_u64(BASE + P).unwrap(), 1);
    sub.remove().unwrap();
    checked(&sys);
}

#[test]
fn notifier_events_dontneed_sends_clear_per_vma_piece() {
    let (sys, mm) = system();
    let (rec, sub) = record_all(&mm);
    mm.mmap(BASE, 4 * P, RW, FIXED).unwrap();
    mm.mmap(BASE + 4 * P, 4 * P, Prot::READ, FIXED).unwrap();
    mm.write_u64(BASE, 5).unwrap();
    mm.madvise(BASE + P, 6 * P, Advice::DontNeed).unwrap();
    let mut want = triple(MmuNotifierEvent::Clear, BASE + P, BASE + 4 * P);
    want.extend(triple(MmuNotifierEvent::Clear, BASE + 4 * P, BASE + 7 * P));
    assert_eq!(shape(&rec.take()), want);
    sub.remove().unwrap();
    checked(&sys);
}

#[test]
fn notifier_events_mprotect_starts_at_the_first_populated_pmd() {
    let (sys, mm) = system();
    let (rec, sub) = record_all(&mm);
    let len = 4 * PMD_SIZE;
    mm.mmap(BASE, len, RW, FIXED).unwrap();
    // Nothing populated: no notifier at all, but the protection changes.
    mm.mprotect(BASE, len, Prot::READ).unwrap();
    assert!(rec.take().is_empty());
    mm.mprotect(BASE, len, RW).unwrap();
    assert!(rec.take().is_empty());
    // Populate only the third PMD's range.
    mm.write_u64(BASE + 2 * PMD_SIZE + 3 * P, 9).unwrap();
    mm.mprotect(BASE, len, Prot::READ).unwrap();
    assert_eq!(
        shape(&rec.take()),
        triple(
            MmuNotifierEvent::ProtectionVma,
            BASE + 2 * PMD_SIZE,
            BASE + len
        )
    );
    // The same protection again changes no flags: Linux does not call
    // change_protection(), so nothing is sent.
    mm.mprotect(BASE, len, Prot::READ).unwrap();
    assert!(rec.take().is_empty());
    // A range starting inside the populated PMD starts there, not at the PMD.
    mm.mprotect(BASE + 2 * PMD_SIZE + P, P, RW).unwrap();
    assert_eq!(
        shape(&rec.take()),
        triple(
            MmuNotifierEvent::ProtectionVma,
            BASE + 2 * PMD_SIZE + P,
            BASE + 2 * PMD_SIZE + 2 * P
        )
    );
    assert_eq!(mm.read_u64(BASE + 2 * PMD_SIZE + 3 * P).unwrap(), 9);
    sub.remove().unwrap();
    checked(&sys);
}

#[test]
fn notifier_events_cow_break_sends_clear_over_one_page() {
    let (sys, mm) = system();
    let (rec, sub) = record_all(&mm);
    mm.mmap(BASE, 4 * P, RW, FIXED).unwrap();
    // Read: the zero page; write: replaced by a private copy (wp_page_copy).
    assert_eq!(mm.read_u64(BASE + P).unwrap(), 0);
    assert!(rec.take().is_empty());
    mm.write_u64(BASE + P + 8, 3).unwrap();
    assert_eq!(
        shape(&rec.take()),
        triple(MmuNotifierEvent::Clear, BASE + P, BASE + 2 * P)
    );
    // A write to the now writable page, and a first-touch write: no notifier.
    mm.write_u64(BASE + P, 4).unwrap();
    mm.write_u64(BASE + 2 * P, 4).unwrap();
    assert!(rec.take().is_empty());
    sub.remove().unwrap();
    checked(&sys);
}

#[test]
fn notifier_events_exit_sends_release_then_unmap_to_intervals_only() {
    let (sys, mm) = system();
    let (rec, sub) = record_all(&mm);
    let id = mm.mm().id();
    mm.mmap(BASE, 2 * P, RW, FIXED).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    let keep = mm.mm().clone();
    drop(mm); // the last user: exit_mmap
    let calls = rec.take();
    assert!(calls.iter().all(|c| c.mm == id));
    assert_eq!(
        shape(&calls),
        vec![
            ("interval", MmuNotifierEvent::Release, 0, u64::MAX, None),
            ("release", MmuNotifierEvent::Release, 0, u64::MAX, None),
            // Classic subscribers are gone; the interval notifier sees the teardown.
            ("interval", MmuNotifierEvent::Unmap, 0, u64::MAX, None),
        ]
    );
    assert_eq!(keep.mmu_notifier_count(), 0);
    // No users left: new notifiers are refused.
    assert_eq!(
        keep.mmu_interval_notifier_insert(BASE, P, RecordingNotifier::new())
            .unwrap_err(),
        Errno::EINVAL
    );
    assert_eq!(
        keep.mmu_notifier_register(RecordingNotifier::new())
            .unwrap_err(),
        Errno::EINVAL
    );
    sub.remove().unwrap();
    assert_eq!(sub.remove(), Err(Errno::ENOENT));
    // The notifier handle pins the mm struct (Linux: mmgrab) until it goes too.
    drop(sub);
    drop(keep);
    checked(&sys);
    assert_eq!(sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
}

/// A classic subscriber that notes, in its `release`, how many classic subscriptions
/// are still hooked, and counts the invalidations that reach it.
struct CountingRelease {
    hooked_at_release: AtomicU64,
    starts: AtomicU64,
}

impl MmuNotifierOps for CountingRelease {
    fn invalidate_range_start(&self, _range: &MmuNotifierRange<'_>) -> Result<(), Errno> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn release(&self, mm: &svmkit::mm::Mm) {
        self.hooked_at_release
            .store(mm.mmu_notifier_count() as u64, Ordering::SeqCst);
    }
}

fn counting() -> Arc<CountingRelease> {
    Arc::new(CountingRelease {
        hooked_at_release: AtomicU64::new(u64::MAX),
        starts: AtomicU64::new(0),
    })
}

/// Linux's `mn_hlist_release()` calls every `->release` while all classic
/// subscriptions are still on the list, and only then unhooks them all; exit's unmap
/// that follows reaches no classic subscriber (Linux mm/mmu_notifier.c, exit_mmap()).
#[test]
fn notifier_release_runs_with_every_classic_subscription_still_hooked() {
    let (sys, mm) = system();
    let (a, b) = (counting(), counting());
    mm.mmu_notifier_register(a.clone()).unwrap();
    mm.mmu_notifier_register(b.clone()).unwrap();
    mm.mmap(BASE, P, RW, FIXED).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    let keep = mm.mm().clone();
    drop(mm);
    // Both releases saw both subscriptions hooked; afterwards none is.
    assert_eq!(a.hooked_at_release.load(Ordering::SeqCst), 2);
    assert_eq!(b.hooked_at_release.load(Ordering::SeqCst), 2);
    assert_eq!(keep.mmu_notifier_count(), 0);
    // The exit's Unmap reached neither.
    assert_eq!(a.starts.load(Ordering::SeqCst), 0);
    drop(keep);
    checked(&sys);
}

/// Linux's `mmu_notifier_unregister()` runs `->release` before unhooking (the
/// subscription is still hooked during it); `mmu_notifier_put()` unhooks without
/// any `->release`, and a put of a subscription exit already unhooked is harmless.
#[test]
fn notifier_unregister_releases_while_hooked_and_put_does_not_release() {
    let (sys, mm) = system();
    let (a, b) = (counting(), counting());
    let ia = mm.mmu_notifier_register(a.clone()).unwrap();
    let ib = mm.mmu_notifier_register(b.clone()).unwrap();
    mm.mmu_notifier_unregister(ia).unwrap();
    assert_eq!(a.hooked_at_release.load(Ordering::SeqCst), 2);
    assert_eq!(mm.mmu_notifier_count(), 1);
    mm.mmu_notifier_put(ib);
    assert_eq!(
        b.hooked_at_release.load(Ordering::SeqCst),
        u64::MAX,
        "no release"
    );
    assert_eq!(mm.mmu_notifier_count(), 0);
    // Unhooked: invalidations no longer reach it, and a second put or an
    // unregister of a put id finds nothing.
    mm.mmap(BASE, P, RW, FIXED).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    mm.madvise(BASE, P, Advice::DontNeed).unwrap();
    assert_eq!(b.starts.load(Ordering::SeqCst), 0);
    mm.mmu_notifier_put(ib);
    assert_eq!(mm.mmu_notifier_unregister(ib), Err(Errno::ENOENT));
    // Put after exit: exit ran its release (with it the only one hooked) and
    // unhooked it; the put finds nothing to do.
    let c = counting();
    let ic = mm.mmu_notifier_register(c.clone()).unwrap();
    let keep = mm.mm().clone();
    drop(mm);
    assert_eq!(c.hooked_at_release.load(Ordering::SeqCst), 1);
    keep.mmu_notifier_put(ic);
    assert_eq!(keep.mmu_notifier_count(), 0);
    drop(keep);
    checked(&sys);
}

#[test]
fn notifier_events_exclusive_range_carries_its_owner_and_unregister_releases() {
    let (_sys, mm) = system();
    let rec = RecordingNotifier::new();
    let id = mm.mmu_notifier_register(rec.clone()).unwrap();
    let owner = Owner::new();
    assert_ne!(owner, Owner::new());
    let g = MmuNotifierRange::new(&mm, MmuNotifierEvent::Exclusive, BASE, BASE + P)
        .with_owner(owner)
        .invalidate_range_start();
    assert_eq!(g.range().owner, Some(owner));
    g.end();
    let calls = rec.take();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.owner == Some(owner) && c.blockable));
    mm.mmu_notifier_unregister(id).unwrap();
    assert_eq!(shape(&rec.take())[0].0, "release");
    assert_eq!(mm.mmu_notifier_unregister(id), Err(Errno::ENOENT));
    // Unregistered: nothing more arrives.
    drop(
        MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, BASE, BASE + P)
            .invalidate_range_start(),
    );
    assert!(rec.take().is_empty());
}

/// A classic subscriber that refuses non-blocking ranges.
struct Refuser;

impl MmuNotifierOps for Refuser {
    fn invalidate_range_start(&self, range: &MmuNotifierRange<'_>) -> Result<(), Errno> {
        if range.blockable {
            Ok(())
        } else {
            Err(Errno::EAGAIN)
        }
    }
}

#[test]
fn notifier_events_nonblock_refusal_undoes_what_started() {
    let (_sys, mm) = system();
    let rec = RecordingNotifier::new();
    mm.mmu_notifier_register(rec.clone()).unwrap();
    mm.mmu_notifier_register(Arc::new(Refuser)).unwrap();
    let sub = mm
        .mm()
        .mmu_interval_notifier_insert(BASE, P, RecordingNotifier::passive())
        .unwrap();
    let r = MmuNotifierRange::new(&mm, MmuNotifierEvent::Unmap, BASE, BASE + P)
        .invalidate_range_start_nonblock();
    assert_eq!(r.unwrap_err(), Errno::EAGAIN);
    // The recorder, registered first, started and got its end back; the interval side
    // is closed again (sequence even).
    let calls = rec.take();
    assert_eq!(
        calls.iter().map(|c| c.kind).collect::<Vec<_>>(),
        vec![NotifierCallKind::Start, NotifierCallKind::End]
    );
    assert!(calls.iter().all(|c| !c.blockable));
    assert_eq!(mm.mmu_interval_seq() % 2, 0);
    // A blockable range is never refused.
    drop(
        MmuNotifierRange::new(&mm, MmuNotifierEvent::Unmap, BASE, BASE + P)
            .invalidate_range_start(),
    );
    assert_eq!(rec.take().len(), 2);
    sub.remove().unwrap();
}

#[test]
fn interval_seq_retry_only_after_an_overlapping_set_seq() {
    let (_sys, mm) = system();
    let owner = Owner::new();
    let rec = RecordingNotifier::ignoring(MmuNotifierEvent::Exclusive, Some(owner));
    let sub = mm
        .mm()
        .mmu_interval_notifier_insert(BASE, 4 * P, rec.clone())
        .unwrap();
    assert_eq!((sub.start(), sub.last()), (BASE, BASE + 4 * P - 1));
    let idle = mm.mmu_interval_seq();
    assert_eq!(idle % 2, 0);

    // No invalidation: no retry.
    let seq = sub.read_begin();
    assert!(!sub.read_retry(seq));

    // A non-overlapping invalidation (touching the end): no callback, the sequence
    // stays even, no retry.
    drop(
        MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, BASE + 4 * P, BASE + 8 * P)
            .invalidate_range_start(),
    );
    assert!(rec.take().is_empty());
    assert_eq!(mm.mmu_interval_seq(), idle);
    assert!(!sub.read_retry(seq));

    // Overlapping, and the callback ignores it (its own Exclusive event): the mm's
    // sequence moved, the reader does not retry.
    drop(
        MmuNotifierRange::new(&mm, MmuNotifierEvent::Exclusive, BASE, BASE + P)
            .with_owner(owner)
            .invalidate_range_start(),
    );
    let calls = rec.take();
    assert_eq!(calls.len(), 1);
    let NotifierCallKind::Interval { cur_seq, set_seq } = calls[0].kind else {
        panic!("{calls:?}");
    };
    assert_eq!((cur_seq, set_seq), (idle + 1, false));
    assert_eq!(mm.mmu_interval_seq(), idle + 2);
    assert!(!sub.read_retry(seq));

    // Another owner's Exclusive event is not filtered: retry.
    drop(
        MmuNotifierRange::new(&mm, MmuNotifierEvent::Exclusive, BASE + 3 * P, BASE + 9 * P)
            .with_owner(Owner::new())
            .invalidate_range_start(),
    );
    assert!(sub.read_retry(seq));
    assert!(sub.check_retry(seq));
    let calls = rec.take();
    assert!(matches!(
        calls[0].kind,
        NotifierCallKind::Interval { cur_seq, set_seq: true } if cur_seq == idle + 3
    ));

    // A fresh section after it is clean again.
    let seq = sub.read_begin();
    assert!(!sub.read_retry(seq));
    // During an overlapping invalidation the sequence is odd and the callback sees it.
    let g = MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, BASE, BASE + P)
        .invalidate_range_start();
    assert_eq!(mm.mmu_interval_seq() % 2, 1);
    assert!(sub.read_retry(seq));
    drop(g);
    assert_eq!(mm.mmu_interval_seq() % 2, 0);
    sub.remove().unwrap();
}

/// A two-pass notifier for the tests below: logs `name start` and `name finish`
/// (with the range's end) to `log`, and sets the sequence in its first pass; in a
/// non-blockable range it refuses if `refuse`.
struct TwoPass {
    name: &'static str,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    refuse: bool,
}

impl MmuIntervalNotifierOps for TwoPass {
    fn invalidate(&self, _: &MmuIntervalNotifier, _: &MmuNotifierRange<'_>, _: u64) -> bool {
        unreachable!("a two-pass notifier is called through invalidate_start")
    }

    fn invalidate_start(
        &self,
        sub: &MmuIntervalNotifier,
        range: &MmuNotifierRange<'_>,
        cur_seq: u64,
    ) -> FirstPass {
        if self.refuse && !range.blockable {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} refuses", self.name));
            return FirstPass::Done(false);
        }
        sub.set_seq(cur_seq);
        self.log
            .lock()
            .unwrap()
            .push(format!("{} start", self.name));
        let (name, log) = (self.name, self.log.clone());
        FirstPass::Started(Box::new(move |_, range, seq| {
            assert_eq!(
                seq, cur_seq,
                "the second pass gets the first pass's sequence"
            );
            log.lock()
                .unwrap()
                .push(format!("{name} finish {:#x}", range.end));
        }))
    }
}

/// spec 10.1 (Linux 7.1, "mm/mmu_notifier: Allow two-pass struct
/// mmu_interval_notifiers"): every first pass runs, then every second pass in the same
/// order, all before the range's start returns; a one-pass notifier in between is
/// called once; readers retry as with one pass.
#[test]
fn interval_two_pass_notifiers_finish_after_every_first_pass() {
    let (_sys, mm) = system();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let two = |name| {
        Arc::new(TwoPass {
            name,
            log: log.clone(),
            refuse: false,
        })
    };
    // Tree order is by start: a, then the one-pass b, then c.
    let a = mm
        .mm()
        .mmu_interval_notifier_insert(BASE, 4 * P, two("a"))
        .unwrap();
    let b_log = log.clone();
    let b = mm
        .mm()
        .mmu_interval_notifier_insert(
            BASE + P,
            4 * P,
            Arc::new(
                move |_: &MmuIntervalNotifier, _: &MmuNotifierRange<'_>, _: u64| {
                    b_log.lock().unwrap().push("b".to_string());
                    true
                },
            ),
        )
        .unwrap();
    let c = mm
        .mm()
        .mmu_interval_notifier_insert(BASE + 2 * P, 4 * P, two("c"))
        .unwrap();
    let seq = a.read_begin();
    let g = MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, BASE, BASE + 3 * P)
        .invalidate_range_start();
    let end = BASE + 3 * P;
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "a start".to_string(),
            "b".into(),
            "c start".into(),
            format!("a finish {end:#x}"),
            format!("c finish {end:#x}"),
        ]
    );
    assert!(a.read_retry(seq));
    assert_eq!(mm.check_notifiers_now(), Ok(()));
    drop(g);
    for s in [a, b, c] {
        s.remove().unwrap();
    }
}

/// A non-blockable range refused by a later notifier still finishes what an earlier
/// first pass started (derived: the range fails with EAGAIN, and no device is left
/// with a started invalidation), and the interval side ends.
#[test]
fn interval_two_pass_refusal_finishes_what_started() {
    let (_sys, mm) = system();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (first, refuser) = ("first", "refuser");
    let a = mm
        .mm()
        .mmu_interval_notifier_insert(
            BASE,
            P,
            Arc::new(TwoPass {
                name: first,
                log: log.clone(),
                refuse: false,
            }),
        )
        .unwrap();
    let b = mm
        .mm()
        .mmu_interval_notifier_insert(
            BASE,
            2 * P,
            Arc::new(TwoPass {
                name: refuser,
                log: log.clone(),
                refuse: true,
            }),
        )
        .unwrap();
    let r = MmuNotifierRange::new(&mm, MmuNotifierEvent::Unmap, BASE, BASE + P)
        .invalidate_range_start_nonblock();
    assert_eq!(r.unwrap_err(), Errno::EAGAIN);
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "first start".to_string(),
            "refuser refuses".into(),
            format!("first finish {:#x}", BASE + P),
        ]
    );
    assert_eq!(mm.mmu_interval_seq() % 2, 0);
    assert_eq!(mm.check_notifiers_now(), Ok(()));
    a.remove().unwrap();
    b.remove().unwrap();
}

/// spec 5.3: the interval state is consistent whenever its lock is free, idle or in
/// the middle of an invalidation, with a deferred insert queued, and after the end
/// applied it; the recorder saw every start ended.
#[test]
fn interval_state_is_consistent_between_the_steps_of_an_invalidation() {
    let (_sys, mm) = system();
    let rec = RecordingNotifier::new();
    let sub = mm
        .mm()
        .mmu_interval_notifier_insert(BASE, 4 * P, rec.clone())
        .unwrap();
    assert_eq!(mm.check_notifiers_now(), Ok(()));
    let g = MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, BASE, BASE + P)
        .invalidate_range_start();
    assert_eq!(mm.mmu_interval_seq() % 2, 1);
    assert_eq!(mm.check_notifiers_now(), Ok(()));
    // Inserted while the sequence is odd: deferred to the end.
    let late = mm
        .mm()
        .mmu_interval_notifier_insert(BASE + 8 * P, P, RecordingNotifier::new())
        .unwrap();
    assert_eq!(mm.check_notifiers_now(), Ok(()));
    drop(g);
    assert_eq!(mm.check_notifiers_now(), Ok(()));
    assert_eq!(rec.open_ranges(), 0);
    late.remove().unwrap();
    sub.remove().unwrap();
    assert_eq!(mm.check_notifiers_now(), Ok(()));
}

#[test]
fn interval_seq_insert_validates_like_linux() {
    let (_sys, mm) = system();
    let ops = RecordingNotifier::new();
    assert_eq!(
        mm.mm()
            .mmu_interval_notifier_insert(BASE, 0, ops.clone())
            .unwrap_err(),
        Errno::EOVERFLOW
    );
    assert_eq!(
        mm.mm()
            .mmu_interval_notifier_insert(u64::MAX - 1, 3, ops.clone())
            .unwrap_err(),
        Errno::EOVERFLOW
    );
    let whole = mm
        .mm()
        .mmu_interval_notifier_insert(0, u64::MAX, ops.clone())
        .unwrap();
    assert_eq!(whole.last(), u64::MAX - 1);
    whole.remove().unwrap();
    assert_eq!(mm.mmu_interval_notifier_count(), 0);
}

/// Runs `f` on another thread and reports whether it finished within a short while
/// (used only to show that something *blocks*; a slow machine can only make the
/// "still blocked" observation weaker, never wrong).
fn spawn_flagged<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> (std::thread::JoinHandle<T>, Arc<AtomicBool>) {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let h = std::thread::spawn(move || {
        let r = f();
        flag.store(true, Ordering::SeqCst);
        r
    });
    (h, done)
}

#[test]
fn interval_deferred_insert_and_remove_apply_when_the_invalidation_ends() {
    let (_sys, mm) = system();
    let a_rec = RecordingNotifier::new();
    let a = mm
        .mm()
        .mmu_interval_notifier_insert(BASE, P, a_rec.clone())
        .unwrap();
    // An invalidation hits `a`: the sequence goes odd and stays odd while it runs.
    let g = MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, BASE, BASE + P)
        .invalidate_range_start();
    let odd = mm.mmu_interval_seq();
    assert_eq!(odd % 2, 1);

    // Insert now: queued, not in the tree; a nested invalidation does not call it.
    let b_rec = RecordingNotifier::new();
    let b = mm
        .mm()
        .mmu_interval_notifier_insert(BASE, P, b_rec.clone())
        .unwrap();
    assert_eq!(mm.mmu_interval_notifier_count(), 1);
    drop(
        MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, BASE, BASE + P)
            .invalidate_range_start(),
    );
    assert!(b_rec.take().is_empty());
    assert_eq!(mm.mmu_interval_seq(), odd, "nested end keeps it odd");

    // `b`'s first read_begin waits for the running invalidation.
    let b2 = b.clone();
    let (reader, read_done) = spawn_flagged(move || b2.read_begin());
    // Removing `a` now is queued too and waits for the end.
    let a2 = a.clone();
    let (remover, remove_done) = spawn_flagged(move || a2.remove());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !read_done.load(Ordering::SeqCst),
        "read_begin returned mid-invalidation"
    );
    assert!(
        !remove_done.load(Ordering::SeqCst),
        "remove returned mid-invalidation"
    );
    a_rec.take();

    drop(g);
    let seq = reader.join().unwrap();
    assert_eq!(remover.join().unwrap(), Ok(()));
    assert_eq!(mm.mmu_interval_seq(), odd + 1);
    assert!(!b.read_retry(seq));
    // Now `b` is in the tree and `a` is gone.
    assert_eq!(mm.mmu_interval_notifier_count(), 1);
    drop(
        MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, BASE, BASE + P)
            .invalidate_range_start(),
    );
    assert_eq!(b_rec.take().len(), 1);
    assert!(a_rec.take().is_empty());
    assert!(b.read_retry(seq));
    b.remove().unwrap();
}

#[test]
fn interval_deferred_insert_during_a_miss_goes_in_at_once_and_waits() {
    let (_sys, mm) = system();
    // A notifier elsewhere: the mm is listened to (an mm nobody listens to skips the
    // whole protocol, Linux's mm_has_notifiers()).
    let far = mm
        .mm()
        .mmu_interval_notifier_insert(BASE + 100 * P, P, RecordingNotifier::passive())
        .unwrap();
    // An invalidation that hits no interval leaves the sequence even...
    let g = MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, BASE, BASE + P)
        .invalidate_range_start();
    let even = mm.mmu_interval_seq();
    assert_eq!(even % 2, 0);
    // ...so an insert makes it odd and goes straight into the tree.
    let rec = RecordingNotifier::new();
    let sub = mm
        .mm()
        .mmu_interval_notifier_insert(BASE, P, rec.clone())
        .unwrap();
    assert_eq!(mm.mmu_interval_seq(), even + 1);
    assert_eq!(mm.mmu_interval_notifier_count(), 2);
    drop(
        MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, BASE, BASE + P)
            .invalidate_range_start(),
    );
    assert_eq!(rec.take().len(), 1);
    // Its read_begin waits for the outer invalidation, then starts clean.
    let s2 = sub.clone();
    let (reader, done) = spawn_flagged(move || s2.read_begin());
    std::thread::sleep(Duration::from_millis(100));
    assert!(!done.load(Ordering::SeqCst));
    drop(g);
    let seq = reader.join().unwrap();
    assert_eq!(mm.mmu_interval_seq(), even + 2);
    assert!(!sub.read_retry(seq));
    // Removing a notifier whose insert is still queued just drops it from the queue.
    let hit = mm
        .mm()
        .mmu_interval_notifier_insert(BASE, P, RecordingNotifier::passive())
        .unwrap();
    let g = MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, BASE, BASE + P)
        .invalidate_range_start();
    let queued = mm
        .mm()
        .mmu_interval_notifier_insert(BASE, P, RecordingNotifier::new())
        .unwrap();
    assert_eq!(queued.remove(), Ok(()));
    drop(g);
    assert_eq!(mm.mmu_interval_notifier_count(), 3);
    for s in [sub, hit, far] {
        s.remove().unwrap();
    }
    assert_eq!(mm.mmu_interval_notifier_count(), 0);
}

#[test]
fn interval_seq_callback_sees_the_invalidation_in_progress() {
    let (_sys, mm) = system();
    let seen = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    let sub = mm
        .mm()
        .mmu_interval_notifier_insert(
            BASE,
            P,
            Arc::new(
                move |sub: &MmuIntervalNotifier, range: &MmuNotifierRange<'_>, cur: u64| {
                    // The range's mm is this notifier's, and its sequence is the odd one.
                    assert_eq!(range.mm.id(), sub.mm().id());
                    assert_eq!(range.mm.mmu_interval_seq(), cur);
                    s.store(cur, Ordering::SeqCst);
                    sub.set_seq(cur);
                    true
                },
            ),
        )
        .unwrap();
    let seq = sub.read_begin();
    mm.mmap(BASE, P, RW, FIXED).unwrap();
    mm.write_u64(BASE, 1).unwrap();
    mm.munmap(BASE, P).unwrap();
    assert_eq!(seen.load(Ordering::SeqCst) % 2, 1);
    assert!(sub.read_retry(seq));
    sub.remove().unwrap();
}
