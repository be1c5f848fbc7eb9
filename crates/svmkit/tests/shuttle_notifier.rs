//! Schedule exploration of the interval-notifier read side racing munmap and mprotect
//! (run with `cargo test -p svmkit --features shuttle shuttle`).
//!
//! A mirror driver follows Linux's collision-retry pattern: `read_begin`, read the CPU
//! PTE (under the mmap lock, as `hmm_range_fault` does), take the driver lock,
//! `read_retry`, and only then record the translation. Its invalidate callback takes
//! the same lock, calls `set_seq` and drops its copy. The invariant: whatever it
//! records is still the CPU's translation when it releases the driver lock.
#![cfg(feature = "shuttle")]

use svmkit::check::{ExploreConfig, explore};
use svmkit::mm::mmu_notifier::{MmuIntervalNotifier, MmuIntervalNotifierOps, MmuNotifierRange};
use svmkit::mm::{Prot, Pte};
use svmkit::sync::{Arc, Mutex, thread, yield_now};
use svmkit::{PAGE_SIZE, Profile};

mod common;
use common::sched::{all_frames_free, explored, explored_page};
use common::{BASE as A, checked};

/// The device's copy of the translation of `A`, behind the driver lock.
struct Mirror {
    dev: Mutex<Option<Pte>>,
    /// false: the broken driver that never makes readers retry.
    set_seq: bool,
}

impl MmuIntervalNotifierOps for Mirror {
    fn invalidate(
        &self,
        sub: &MmuIntervalNotifier,
        _range: &MmuNotifierRange<'_>,
        cur_seq: u64,
    ) -> bool {
        let mut dev = self.dev.lock();
        if self.set_seq {
            sub.set_seq(cur_seq);
        }
        *dev = None;
        true
    }
}

fn scenario(set_seq: bool) {
    let (sys, mm) = explored_page(Profile::linux_6_15(), 32, 1);
    let mirror = Arc::new(Mirror {
        dev: Mutex::new(None),
        set_seq,
    });
    let sub = mm
        .mm()
        .mmu_interval_notifier_insert(A, PAGE_SIZE, mirror.clone())
        .unwrap();
    let va = common::va(A);

    let reader = {
        let (mm, sub, mirror) = (mm.clone(), sub.clone(), mirror.clone());
        thread::spawn(move || {
            for _ in 0..8 {
                let seq = sub.read_begin();
                let seen = {
                    let _read = mm.mmap_read_lock();
                    mm.pte_get_lockless(va)
                };
                yield_now();
                let mut dev = mirror.dev.lock();
                if sub.read_retry(seq) {
                    drop(dev);
                    continue;
                }
                *dev = Some(seen);
                yield_now();
                let now = mm.pte_get_lockless(va);
                assert_eq!(
                    now, seen,
                    "stale translation recorded: the device kept {seen:?}, the CPU has {now:?}"
                );
                drop(dev);
                return true;
            }
            false
        })
    };
    let unmapper = {
        let mm = mm.clone();
        thread::spawn(move || mm.munmap(A, PAGE_SIZE))
    };
    let protector = {
        let mm = mm.clone();
        thread::spawn(move || mm.mprotect(A, PAGE_SIZE, Prot::READ))
    };
    reader.join().unwrap();
    assert_eq!(unmapper.join().unwrap(), Ok(()));
    let _ = protector.join().unwrap();
    sub.remove().unwrap();
    drop(sub);
    checked(&sys);
    drop(mm);
    all_frames_free(&sys);
}

#[test]
fn shuttle_interval_reader_never_keeps_a_stale_translation() {
    explored(600, || scenario(true));
}

#[test]
fn shuttle_interval_reader_without_set_seq_is_caught() {
    let failure = explore(&ExploreConfig::new(600), || scenario(false))
        .expect_err("a callback that never calls set_seq must let a stale translation through");
    assert!(failure.message.contains("stale translation"), "{failure}");
}
