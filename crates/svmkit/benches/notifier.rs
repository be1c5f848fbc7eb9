//! Benchmarks of the MMU-notifier machinery, each next to a baseline measured in the
//! same run so that figures can be reported as ratios (these machines are noisy).
//!
//! * `invalidate_one_page/N`: start and end an invalidation of one page that hits one
//!   interval notifier, with N = 1, 1,000 and 100,000 notifiers registered (disjoint
//!   one-page intervals, the hit one in the middle). It must grow like log N (the
//!   interval tree), not N. Baseline `invalidate_one_page/unlistened`: the same on an
//!   mm nobody listens to (one load).
//! * `read_side/read_begin_retry`: one `read_begin` + `read_retry` pair with no
//!   invalidation running; baseline `read_side/mutex_lock_unlock`: one uncontended
//!   lock/unlock of the facade mutex (read_begin takes one such lock).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use svmkit::mm::mmu_notifier::{MmuNotifierEvent, MmuNotifierRange, SetSeqUnderLock};
use svmkit::sync::{Arc, Mutex};
use svmkit::{PAGE_SIZE, System, SystemConfig};

const BASE: u64 = 0x1000_0000;

fn invalidate(c: &mut Criterion) {
    let sys = System::new(SystemConfig::with_frames(256)).expect("system");
    let mut g = c.benchmark_group("invalidate_one_page");
    {
        let mm = sys.create_mm().expect("mm");
        g.bench_function("unlistened", |b| {
            b.iter(|| {
                drop(
                    MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, BASE, BASE + PAGE_SIZE)
                        .invalidate_range_start(),
                )
            })
        });
    }
    for n in [1u64, 1_000, 100_000] {
        let mm = sys.create_mm().expect("mm");
        let driver = Arc::new(SetSeqUnderLock::new());
        let subs: Vec<_> = (0..n)
            .map(|i| {
                mm.mm()
                    .mmu_interval_notifier_insert(
                        BASE + 2 * i * PAGE_SIZE,
                        PAGE_SIZE,
                        driver.clone(),
                    )
                    .expect("insert")
            })
            .collect();
        let hit = BASE + 2 * (n / 2) * PAGE_SIZE;
        g.bench_with_input(BenchmarkId::from_parameter(n), &hit, |b, &hit| {
            b.iter(|| {
                drop(
                    MmuNotifierRange::new(&mm, MmuNotifierEvent::Clear, hit, hit + PAGE_SIZE)
                        .invalidate_range_start(),
                )
            })
        });
        for s in subs {
            s.remove().expect("remove");
        }
    }
    g.finish();
}

fn read_side(c: &mut Criterion) {
    let sys = System::new(SystemConfig::with_frames(256)).expect("system");
    let mm = sys.create_mm().expect("mm");
    let driver = Arc::new(SetSeqUnderLock::new());
    let sub = mm
        .mm()
        .mmu_interval_notifier_insert(BASE, PAGE_SIZE, driver.clone())
        .expect("insert");
    let mut g = c.benchmark_group("read_side");
    g.bench_function("read_begin_retry", |b| {
        b.iter(|| {
            let seq = sub.read_begin();
            black_box(sub.read_retry(seq))
        })
    });
    let lock = Mutex::new(0u64);
    g.bench_function("mutex_lock_unlock", |b| {
        b.iter(|| {
            *lock.lock() += 1;
        })
    });
    g.finish();
    sub.remove().expect("remove");
}

criterion_group!(benches, invalidate, read_side);
criterion_main!(benches);
