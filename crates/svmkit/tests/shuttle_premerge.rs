//! The racy check of patches v3/v4 (spec 8 item 3, switch
//! `range_api_skips_target_check`), found by schedule exploration (run with
//! `cargo test -p svmkit --features shuttle --test shuttle_premerge`).
//!
//! The caller of the range API holds the mmap lock for read, so what can change the
//! page at the caller's address between the API's GUP and its folio lock is what
//! runs beside it: here reclaim, whose `try_to_unmap()` replaces the PTE by a swap
//! entry before it finds the GUP reference and keeps the folio in the swap cache.
//! The rmap walk then finds nothing to convert. The merged code (v5 on) reports the
//! page as not exclusive, because no writable PTE at the caller's address was
//! converted (`args.valid`, spec 2.1). Without that in-walk check the call reports it
//! exclusive while the CPU holds a swap entry that a fault turns back into a present
//! PTE, with no notifier for the device. The contract checked (spec 2.1: "Page i is
//! exclusive iff pages[i] != NULL"; 5.14 reclaim cannot touch an entry's folio, spec
//! 4.7, 8 item 8): while the driver holds a page the call returned, the CPU PTE at
//! that address is a device-exclusive entry naming it. (A fork cannot land in that
//! window: it takes the mmap lock for write.)
#![cfg(feature = "shuttle")]

use std::sync::atomic::{AtomicUsize, Ordering};

use svmkit::check::{ExploreConfig, explore};
use svmkit::mm::Pte;
use svmkit::sync::thread;
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Profile};

mod common;
use common::sched::{check_clean, explored, explored_page};
use common::{BASE as A, va};

static SCHEDULES: AtomicUsize = AtomicUsize::new(0);

fn scenario(profile: Profile) {
    SCHEDULES.fetch_add(1, Ordering::Relaxed);
    let (sys, mm) = explored_page(profile, 64, 1);
    sys.mem().swapon(16).unwrap();
    let folio = {
        let pfn = mm.pte_get_lockless(va(A)).present().unwrap().pfn;
        sys.mem().page_folio(pfn).unwrap()
    };
    let reclaimer = {
        let sys = sys.clone();
        thread::spawn(move || match sys.mem().reclaim_folio(folio) {
            Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINVAL) => {}
            Err(e) => panic!("reclaim: {e}"),
        })
    };
    let slots = {
        let mut g = mm.mmap_read_lock();
        mm.make_device_exclusive_range(&mut g, A, A + PAGE_SIZE, None, &Task::new("driver"))
            .unwrap()
    };
    if let Some(Some(guard)) = slots.first() {
        let page = guard.page();
        let cpu = mm.pte_get_lockless(va(A));
        assert!(
            matches!(cpu, Pte::Swap(s) if s.is_device_exclusive() && s.pfn() == Some(page)),
            "reported exclusive, but the CPU PTE is {cpu:?} (v3 racy check)"
        );
    }
    reclaimer.join().unwrap();
    drop(slots);
    // Data: the page keeps its value through conversion, reclaim and swap-in.
    assert_eq!(mm.read_u64(A).unwrap(), 1, "value lost");
    check_clean(&sys);
}

/// v3/v4: the explorer finds a schedule where the call reports a page exclusive that
/// the CPU no longer maps through an entry.
#[test]
fn shuttle_v3_target_check_missing_reports_an_unmapped_page_exclusive() {
    let flawed = Profile {
        range_api_skips_target_check: true,
        ..Profile::linux_5_14()
    };
    SCHEDULES.store(0, Ordering::Relaxed);
    let failure = explore(&ExploreConfig::new(600), move || scenario(flawed))
        .expect_err("the explorer must find the v3 window (spec 8 item 3)");
    println!(
        "found after {} schedule(s): {}",
        SCHEDULES.load(Ordering::Relaxed),
        failure.message
    );
    assert!(failure.message.contains("v3 racy check"), "{failure}");
}

/// The merged check (v5 on, 5.14 as released): no schedule breaks the contract, and
/// no data is lost.
#[test]
fn shuttle_merged_target_check_keeps_the_contract() {
    explored(600, || scenario(Profile::linux_5_14()));
}
