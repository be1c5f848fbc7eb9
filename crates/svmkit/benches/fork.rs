//! fork of touched anonymous memory, next to a baseline in the same run so figures can
//! be reported as ratios (these machines are noisy), and comparable per MiB with the
//! real kernel's 4.6–5.7 µs/MiB on this machine kind (../shared/reference/perf-anchors.md).
//!
//! * `fork/64MiB_touched`: fork (and the child's exit, outside the timing) of an mm
//!   with 64 MiB of written private anonymous memory; throughput in bytes.
//! * `fork/empty`: the same fork of an mm with no mappings (the fixed cost).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use svmkit::mm::{MapFlags, Prot};
use svmkit::{PAGE_SIZE, System, SystemConfig};

const PAGES: u64 = 16 * 1024; // 64 MiB

fn fork(c: &mut Criterion) {
    let sys = System::new(SystemConfig::with_frames(PAGES + 2048)).expect("system");
    let touched = sys.create_mm().expect("mm");
    let len = PAGES * PAGE_SIZE;
    let a = touched
        .mmap(
            0,
            len,
            Prot::READ | Prot::WRITE,
            MapFlags::PRIVATE | MapFlags::ANONYMOUS,
        )
        .expect("mmap")
        .raw();
    for i in 0..PAGES {
        touched.write_u64(a + i * PAGE_SIZE, i).expect("write");
    }
    let empty = sys.create_mm().expect("mm");
    let mut g = c.benchmark_group("fork");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(len));
    g.bench_function("64MiB_touched", |b| {
        b.iter_batched(
            || (),
            |()| sys.fork(&touched).expect("fork"),
            // The child is dropped (exit_mmap) outside the timed part.
            BatchSize::PerIteration,
        )
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("empty", |b| {
        b.iter_batched(
            || (),
            |()| sys.fork(&empty).expect("fork"),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, fork);
criterion_main!(benches);
