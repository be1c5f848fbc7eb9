//! The pre-merge flaws of the 2021 series and the 6.8-era restore check (spec 8 items
//! 1, 3, 6), each behind a profile switch no preset turns on (items 1, 3) or in the
//! presets whose trees have it (item 6): the flaw's observable consequence with the
//! switch on, the released behaviour with it off.

mod common;

use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::mm::{MapFlags, MmUser, PageFlags, Prot, Pte, SwapPte};
use svmkit::profile::RestoreEvent;
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Profile, System, SystemConfig};

use common::{checked, va};

const RW: Prot = Prot::READ.union(Prot::WRITE);
const PRIVATE: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const BASE: u64 = 0x4000_0000;
const P: u64 = PAGE_SIZE;

fn system_with(profile: Profile, frames: u64) -> (Arc<System>, MmUser) {
    let mut config = SystemConfig::with_frames(frames);
    config.profile = profile;
    let sys = System::new(config).unwrap();
    let mm = sys.create_mm().unwrap();
    (sys, mm)
}

fn make(mm: &MmUser, addr: u64) {
    let mut g = mm.mmap_read_lock();
    drop(
        mm.make_device_exclusive(&mut g, addr, None, &Task::new("driver"))
            .unwrap(),
    );
}

fn entry(mm: &MmUser, addr: u64) -> Option<SwapPte> {
    match mm.pte_get_lockless(va(addr)) {
        Pte::Swap(s) if s.is_device_exclusive() => Some(s),
        _ => None,
    }
}

/// Every violation the checker reports, as text.
fn violations(sys: &System) -> Vec<String> {
    match sys.check() {
        Ok(()) => Vec::new(),
        Err(e) => e.violations.iter().map(|v| v.what.clone()).collect(),
    }
}

fn with(mut p: Profile, set: impl FnOnce(&mut Profile)) -> Profile {
    set(&mut p);
    p
}

// --- item 1 -----------------------------------------------------------------------

/// Spec 8 item 1: before Dan Carpenter's fix (Jun 2021, `<YNIz5NVnZ5GiZ3u1@mwanda>`)
/// a range starting in a hole made GUP fail on the first page, and the unsigned loop
/// index walked `pages[]` past what GUP filled until the kernel crashed. With the
/// switch the model reports the bogus access (the checker fails); without it the
/// merged code returns GUP's errno at once (spec 2.1: "if npages < 0, return it") and
/// nothing is wrong. EFAULT: GUP of an address in no VMA (spec 2.4's typical errors).
#[test]
fn range_api_unsigned_index_overruns_pages_before_the_june_2021_fix() {
    for (profile, flawed) in [
        (Profile::linux_5_14(), false),
        (
            with(Profile::linux_5_14(), |p| p.range_api_unsigned_index = true),
            true,
        ),
    ] {
        let (sys, mm) = system_with(profile, 256);
        mm.mmap(BASE, P, RW, PRIVATE).unwrap();
        mm.write_u64(BASE, 7).unwrap();
        let err = {
            let mut g = mm.mmap_read_lock();
            mm.make_device_exclusive_range(&mut g, BASE + P, BASE + 3 * P, None, &Task::new("d"))
                .unwrap_err()
        };
        assert_eq!(err, Errno::EFAULT, "flawed {flawed}");
        let bad = sys.mem().take_bad_pages();
        if flawed {
            assert_eq!(bad.len(), 1, "{bad:?}");
            assert!(bad[0].reason.contains("negative npages"), "{bad:?}");
        } else {
            assert!(bad.is_empty(), "{bad:?}");
        }
        // Nothing was converted either way: the mapped page is untouched.
        assert!(entry(&mm, BASE).is_none());
        assert_eq!(mm.read_u64(BASE).unwrap(), 7);
        checked(&sys);
    }
}

// --- item 3: v5-v7 fork ---------------------------------------------------------

/// Spec 8 item 3, 4.1: patches v5 to v7 copied a device-exclusive entry to the child
/// (`get_page()`, RSS + 1, readable in both; `[PATCH v7 5/8]`,
/// `<20210326000805.2518-6-apopple@nvidia.com>`), which Jason Gunthorpe rejected for
/// not doing what `copy_present_page()` does; v8 restored in the parent instead. With
/// the switch the child gets an entry for the parent's anon-exclusive page: the checker
/// sees one page owned by two mms, and the parent's next write reuses the page
/// (`do_wp_page()` trusts PG_anon_exclusive), so the child reads the parent's write
/// (derived: the copy never unshares the page). Without it, the released fork restores
/// in the parent and COW keeps the two apart (spec 4.1). Both designs.
#[test]
fn v7_fork_copies_the_entry_and_the_child_sees_the_parents_write() {
    for base in Profile::ALL {
        for flawed in [false, true] {
            let profile = with(base, |p| p.fork_copies_exclusive_entries = flawed);
            let (sys, parent) = system_with(profile, 512);
            parent.mmap(BASE, P, RW, PRIVATE).unwrap();
            parent.write_u64(BASE, 1).unwrap();
            make(&parent, BASE);
            let child = sys.fork(&parent).unwrap();
            let what = format!("{} flawed {flawed}", base.name);
            if flawed {
                let (pe, ce) = (entry(&parent, BASE), entry(&child, BASE));
                assert_eq!(pe.and_then(|e| e.pfn()), ce.and_then(|e| e.pfn()), "{what}");
                assert!(ce.is_some(), "{what}");
                let v = violations(&sys);
                assert!(
                    v.iter()
                        .any(|w| w.starts_with("anon-exclusive page mapped 2 time(s)")),
                    "{what}: {v:?}"
                );
            } else {
                assert!(entry(&parent, BASE).is_none() && entry(&child, BASE).is_none());
                checked(&sys);
            }
            parent.write_u64(BASE, 10).unwrap();
            // Spec 4.1 (released): the child keeps its own copy, 1; the v7 copy: 10.
            let want = if flawed { 10 } else { 1 };
            assert_eq!(child.read_u64(BASE).unwrap(), want, "{what}");
            assert_eq!(parent.read_u64(BASE).unwrap(), 10, "{what}");
        }
    }
}

// --- item 3: v1-v9 restore event -----------------------------------------------

/// Spec 8 item 3, 6.4: up to v9 the restore sent `MMU_NOTIFY_CLEAR`; Peter Xu's v9
/// review (`<YK+Y+aAZHDv8+w+Q@t490s>`, /work/shared/seed/ 2021 review: "How about
/// sending EXCLUSIVE for both mark/restore? Just that when restore we notify with
/// owner==NULL") made v10 and 5.14 send EXCLUSIVE with owner NULL. The owner-filter
/// consequence: a driver whose filter skips every EXCLUSIVE event, whatever its
/// owner (svm_atomic's `filter_ignores_owner`), swallows 5.14's restore and keeps a
/// stale atomic mapping of a page the CPU maps again (the checker's device audit,
/// as `owner-blind-filter-stale-mapping.toml`), while v1-v9's CLEAR, like 6.15's, is
/// not skipped and revokes it. The 5.14 design with only the restore event changed.
#[test]
fn v1_v9_restore_clear_revokes_an_owner_blind_driver_5_14s_exclusive_does_not() {
    for (event, stale) in [
        (RestoreEvent::ExclusiveNoOwner, true),
        (RestoreEvent::Clear, false),
    ] {
        let profile = with(Profile::linux_5_14(), |p| {
            p.restore_event = event;
            p.svm_atomic_unlock_on_retry = true;
        });
        let (sys, mm) = system_with(profile, 256);
        mm.mmap(BASE, P, RW, PRIVATE).unwrap();
        mm.write_u64(BASE, 41).unwrap();
        let flaws = SvmFlaws {
            filter_ignores_owner: true,
            ..SvmFlaws::default()
        };
        let gpu = SvmAtomic::new(&mm, "gpu", flaws, 4).unwrap();
        assert_eq!(
            gpu.atomic_fetch_add(&Task::new("gpu"), BASE, 1).unwrap(),
            41
        );
        mm.write_u64(BASE, 50).unwrap();
        let v = violations(&sys);
        assert_eq!(!v.is_empty(), stale, "{event:?}: {v:?}");
        drop(gpu);
        checked(&sys);
    }
}

// --- item 6: the restore's check ----------------------------------------------------

/// Spec 8 item 6. The route to a writable restore of a page that is not
/// anon-exclusive (derived; no released kernel has one, which is why nobody saw the
/// check go dead): the v7 fork copy above leaves the page anon-exclusive in two mms, a
/// new conversion in the parent (after its write reused the page) turns the parent's
/// PTE into a writable entry and the child's into a readable one; the child reads
/// (restores) and forks, and that fork's `copy_present_pte()` clears
/// PG_anon_exclusive while the parent's writable entry still names the page. The
/// parent's next access restores a writable PTE on it.
///
/// Per era (each read in `restore_exclusive_pte()`, mm/memory.c): the 6.1 tree's
/// working `VM_BUG_ON(pte_write && !(anon && AE))` fires (a bad-page report); the 6.12
/// tree's misplaced `!` (6.8-6.14) does not; 5.14 has no check. In every era the
/// checker's own invariant, "writable PTE on a page that is not anon-exclusive",
/// reports the state.
#[test]
fn the_restore_check_fires_in_6_1_and_not_with_6_8s_misplaced_not() {
    for (base, fires) in [
        (Profile::linux_5_14(), false),
        (Profile::linux_6_1(), true),
        (Profile::linux_6_12(), false),
    ] {
        let profile = with(base, |p| p.fork_copies_exclusive_entries = true);
        let (sys, parent) = system_with(profile, 512);
        parent.mmap(BASE, P, RW, PRIVATE).unwrap();
        parent.write_u64(BASE, 1).unwrap();
        make(&parent, BASE);
        let child = sys.fork(&parent).unwrap();
        parent.write_u64(BASE, 2).unwrap();
        make(&parent, BASE);
        assert!(
            entry(&parent, BASE).is_some_and(|e| e.is_writable_device_exclusive()),
            "{}",
            base.name
        );
        assert_eq!(child.read_u64(BASE).unwrap(), 2);
        let grandchild = sys.fork(&child).unwrap();
        let pfn = entry(&parent, BASE).and_then(|e| e.pfn()).unwrap();
        assert!(!sys.mem().page(pfn).unwrap().test(PageFlags::ANON_EXCLUSIVE));
        sys.mem().take_bad_pages();
        assert_eq!(parent.read_u64(BASE).unwrap(), 2);
        let pte = parent.pte_get_lockless(va(BASE)).present().unwrap();
        assert!(pte.is_write(), "{}", base.name);
        let bad = sys.mem().take_bad_pages();
        assert_eq!(
            bad.iter().any(|b| b.reason.starts_with("VM_BUG_ON")),
            fires,
            "{}: {bad:?}",
            base.name
        );
        let v = violations(&sys);
        assert!(
            v.iter()
                .any(|w| w == "writable PTE on a page that is not anon-exclusive"),
            "{}: {v:?}",
            base.name
        );
        drop(grandchild);
    }
}

/// Without a flawed fork no route reaches the check: the same steps under the
/// released fork (restore in the parent, spec 4.1) leave every restored writable PTE
/// on an anon-exclusive page, in every preset that has the check (derived).
#[test]
fn without_the_v7_fork_the_same_steps_never_trip_the_check() {
    for profile in [Profile::linux_6_1(), Profile::linux_6_12()] {
        let (sys, parent) = system_with(profile, 512);
        parent.mmap(BASE, P, RW, PRIVATE).unwrap();
        parent.write_u64(BASE, 1).unwrap();
        make(&parent, BASE);
        let child = sys.fork(&parent).unwrap();
        parent.write_u64(BASE, 2).unwrap();
        make(&parent, BASE);
        assert_eq!(child.read_u64(BASE).unwrap(), 1);
        let grandchild = sys.fork(&child).unwrap();
        assert_eq!(parent.read_u64(BASE).unwrap(), 2);
        assert!(sys.mem().bad_pages().is_empty(), "{}", profile.name);
        checked(&sys);
        drop(grandchild);
    }
}
