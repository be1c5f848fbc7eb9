//! Device-exclusive conversion and restore (6.15 design), next to a baseline measured
//! in the same run so that figures are reported as ratios (these machines are noisy).
//! The real-kernel anchor for one exclusive → CPU fault → restore cycle on this machine
//! kind is about 3.3 µs (../shared/reference/perf-anchors.md, the uffd-based physical
//! limit; a real GPU cycle is far slower).
//!
//! * `exclusive/make_device_exclusive`: convert one present page (GUP, folio lock,
//!   notifier range, PTE swap) and drop the guard; the restore that makes the page
//!   present again runs in the untimed setup.
//! * `exclusive/convert_fault_restore_cycle`: the same conversion, then a CPU write
//!   that faults and restores the PTE.
//! * `exclusive/cpu_write_present` (baseline): a CPU write to a present, writable page.
//! * `exclusive/svm_atomic_fault_and_atomic`: one device atomic on a page the device
//!   does not map: the device fault, svm_atomic's acquire loop (interval notifier
//!   insert, read_begin, make_device_exclusive, read_retry, device entry), the
//!   replayed atomic; baseline `exclusive/svm_atomic_mapped`: the atomic alone.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::mm::MapFlags;
use svmkit::mm::Prot;
use svmkit::mm::mmu_notifier::Owner;
use svmkit::task::Task;
use svmkit::{PAGE_SIZE, System, SystemConfig};

const A: u64 = 0x4000_0000;

fn exclusive(c: &mut Criterion) {
    let sys = System::new(SystemConfig::with_frames(256)).expect("system");
    let mm = sys.create_mm().expect("mm");
    mm.mmap(
        A,
        PAGE_SIZE,
        Prot::READ | Prot::WRITE,
        MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED,
    )
    .expect("mmap");
    mm.write_u64(A, 1).expect("write");
    let (owner, task) = (Owner::new(), Task::new("bench"));
    let convert = || {
        let mut g = mm.mmap_read_lock();
        drop(
            mm.make_device_exclusive(&mut g, A, Some(owner), &task)
                .expect("make_device_exclusive"),
        );
    };
    let mut g = c.benchmark_group("exclusive");
    g.bench_function("make_device_exclusive", |b| {
        b.iter_batched(
            || mm.read_u64(A).expect("restore"),
            |_| convert(),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("convert_fault_restore_cycle", |b| {
        b.iter(|| {
            convert();
            mm.write_u64(A, 2).expect("write");
        })
    });
    g.bench_function("cpu_write_present", |b| {
        b.iter(|| mm.write_u64(A, 3).expect("write"))
    });
    // One device atomic that faults and is resolved by svm_atomic (the CPU read in the
    // untimed setup takes the page back first), next to one on a page the device
    // already maps atomically.
    let gpu = SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 1000).expect("gpu");
    g.bench_function("svm_atomic_fault_and_atomic", |b| {
        b.iter_batched(
            || mm.read_u64(A).expect("restore"),
            |_| gpu.atomic_fetch_add(&task, A, 1).expect("atomic"),
            BatchSize::PerIteration,
        )
    });
    gpu.atomic_fetch_add(&task, A, 1).expect("atomic");
    g.bench_function("svm_atomic_mapped", |b| {
        b.iter(|| gpu.atomic_fetch_add(&task, A, 1).expect("atomic"))
    });
    g.finish();
}

criterion_group!(benches, exclusive);
criterion_main!(benches);
