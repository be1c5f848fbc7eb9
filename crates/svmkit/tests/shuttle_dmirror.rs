//! The window in dmirror's EXCLUSIVE path (spec 9.1), found by schedule exploration
//! (run with `cargo test -p svmkit --features shuttle shuttle`).
//!
//! dmirror maps a page atomically after `make_device_exclusive` returns, without a
//! `read_begin`/`read_retry` section around it. A MADV_DONTNEED that runs in between
//! zaps the entry and sends its `Clear` while dmirror's table has nothing to erase
//! yet; dmirror then stores the atomic entry for a page the CPU no longer maps as
//! device-exclusive. svm_atomic (nouveau's pattern) programs its device only after
//! `read_retry` under its lock, so the same DONTNEED would make it retry instead.
#![cfg(feature = "shuttle")]

use std::sync::atomic::{AtomicUsize, Ordering};

use svmkit::check::{ExploreConfig, explore, replay};
use svmkit::device::DevRights;
use svmkit::device::dmirror::Dmirror;
use svmkit::mm::{Advice, Pte};
use svmkit::sync::thread;
use svmkit::{PAGE_SIZE, Profile};

mod common;
use common::sched::{dmirror_exclusive, explored_page};
use common::{BASE as A, checked, va};

static SCHEDULES: AtomicUsize = AtomicUsize::new(0);

fn scenario() {
    SCHEDULES.fetch_add(1, Ordering::Relaxed);
    let (sys, mm) = explored_page(Profile::linux_6_15(), 48, 1);
    let dm = std::sync::Arc::new(Dmirror::open(&mm).unwrap());
    let driver = {
        let dm = dm.clone();
        thread::spawn(move || dmirror_exclusive(&dm, &mut vec![0u8; PAGE_SIZE as usize]))
    };
    let zapper = {
        let mm = mm.clone();
        thread::spawn(move || mm.madvise(A, PAGE_SIZE, Advice::DontNeed).unwrap())
    };
    let r = driver.join().unwrap();
    zapper.join().unwrap();
    assert_eq!(r, Ok(()));
    let dev = dm.device().lock().get(A);
    let cpu = mm.pte_get_lockless(va(A));
    if let Some(d) = dev
        && d.rights.contains(DevRights::ATOMIC)
    {
        let exclusive_here =
            matches!(cpu, Pte::Swap(s) if s.is_device_exclusive() && s.pfn() == Some(d.pfn));
        assert!(
            exclusive_here,
            "dmirror window: the device maps {} atomically but the CPU PTE is {cpu:?}",
            d.pfn
        );
    }
    drop(dm);
    checked(&sys);
}

#[test]
fn shuttle_dmirror_window_is_found_by_the_explorer() {
    SCHEDULES.store(0, Ordering::Relaxed);
    let failure = explore(&ExploreConfig::new(2000), scenario)
        .expect_err("the explorer must find dmirror's EXCLUSIVE window (spec 9.1)");
    let needed = SCHEDULES.load(Ordering::Relaxed);
    println!(
        "dmirror window found after {needed} schedule(s): {}",
        failure.message
    );
    assert!(failure.message.contains("dmirror window"), "{failure}");
    // The reported schedule reproduces it.
    let again = replay(scenario, &failure.schedule).expect_err("replay reproduces the window");
    assert!(again.message.contains("dmirror window"), "{again}");
}
