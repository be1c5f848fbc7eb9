//! The racy check of patches v3/v4 (spec 8 item 3, switch
//! `range_api_skips_target_check`), found by schedule exploration (run with
//! `cargo test -p svmkit --features shuttle --test shuttle_premerge`).
//!
//! A fork that lands between the range API's GUP and its folio lock shares the page
//! copy-on-write with the child; the rmap walk then converts the PTEs of both mms.
//! The merged code (v5 on) reports that page as not exclusive, because the parent's
//! PTE at the caller's address was no longer writable (`args.valid`, spec 2.1). Without
//! that in-walk check the call reports it exclusive: a device would own a page the
//! child maps too. The contract checked: a page the call returns locked is mapped by
//! no other mm (spec 2.1: "Page i is exclusive iff pages[i] != NULL").
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
    let (sys, parent) = explored_page(profile, 48, 1);
    let forker = {
        let (sys, parent) = (sys.clone(), parent.clone());
        // ENOMEM: fork met the entry while the driver held its folio (spec 4.1).
        thread::spawn(move || match sys.fork(&parent) {
            Ok(child) => Some(child),
            Err(Errno::ENOMEM) => None,
            Err(e) => panic!("fork: {e}"),
        })
    };
    let slots = {
        let mut g = parent.mmap_read_lock();
        parent
            .make_device_exclusive_range(&mut g, A, A + PAGE_SIZE, None, &Task::new("driver"))
            .unwrap()
    };
    let child = forker.join().unwrap();
    if let (Some(Some(guard)), Some(child)) = (slots.first(), &child) {
        let page = guard.page();
        let shared = match child.pte_get_lockless(va(A)) {
            Pte::Present(p) => p.pfn == page,
            Pte::Swap(s) => s.pfn() == Some(page),
            Pte::None => false,
        };
        assert!(
            !shared,
            "reported exclusive, but the child maps {page} too (v3 racy check)"
        );
    }
    drop(slots);
    // Data: each process keeps its own value after the race.
    parent.write_u64(A, 2).unwrap();
    if let Some(child) = &child {
        assert_eq!(child.read_u64(A).unwrap(), 1, "child saw the parent's write");
    }
    assert_eq!(parent.read_u64(A).unwrap(), 2);
    check_clean(&sys);
}

/// v3/v4: the explorer finds a schedule where the call reports a page exclusive that
/// the child maps too.
#[test]
fn shuttle_v3_target_check_missing_reports_a_shared_page_exclusive() {
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

/// The merged check (v5 on, 5.14 as released): no schedule reports a shared page
/// exclusive, and no data is lost.
#[test]
fn shuttle_merged_target_check_never_reports_a_shared_page() {
    explored(600, || scenario(Profile::linux_5_14()));
}
