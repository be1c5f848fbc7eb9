//! Benchmarks of the mm core, each next to a baseline measured in the same run so that
//! figures can be reported as ratios (these machines are noisy).
//!
//! * `fault/first_touch_write`: a write to a never-touched 4 KiB page (fault: table
//!   walk, page allocation, zeroing, PTE install), per page; baseline
//!   `fault/write_present`: the same write to a page already mapped writable.
//! * `mprotect/64MiB_touched`: `mprotect(PROT_NONE)` then `mprotect(RW)` over 64 MiB
//!   of touched memory, per page; baseline `mprotect/64MiB_untouched`: the same over
//!   64 MiB with no PTEs (VMA work only).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use svmkit::mm::{MapFlags, MmUser, Prot};
use svmkit::sync::Arc;
use svmkit::{PAGE_SIZE, System, SystemConfig};

const RW: Prot = Prot::READ.union(Prot::WRITE);
const ANON: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);
const TOUCH_PAGES: u64 = 256;
const BIG_PAGES: u64 = 16 * 1024; // 64 MiB

/// A mapping that is unmapped when dropped (outside the timed part).
struct Mapping {
    mm: MmUser,
    addr: u64,
    len: u64,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let _ = self.mm.munmap(self.addr, self.len);
    }
}

fn setup(frames: u64) -> (Arc<System>, MmUser) {
    let sys = System::new(SystemConfig::with_frames(frames)).expect("system");
    let mm = sys.create_mm().expect("mm");
    (sys, mm)
}

fn faults(c: &mut Criterion) {
    let (_sys, mm) = setup(4096);
    let mut g = c.benchmark_group("fault");
    g.throughput(Throughput::Elements(TOUCH_PAGES));
    g.bench_function("first_touch_write", |b| {
        b.iter_batched(
            || {
                let len = TOUCH_PAGES * PAGE_SIZE;
                let addr = mm.mmap(0, len, RW, ANON).expect("mmap").raw();
                Mapping {
                    mm: mm.clone(),
                    addr,
                    len,
                }
            },
            |m| {
                for i in 0..TOUCH_PAGES {
                    m.mm.write_u64(m.addr + i * PAGE_SIZE, i).expect("write");
                }
                m
            },
            BatchSize::PerIteration,
        )
    });
    let len = TOUCH_PAGES * PAGE_SIZE;
    let addr = mm.mmap(0, len, RW, ANON).expect("mmap").raw();
    for i in 0..TOUCH_PAGES {
        mm.write_u64(addr + i * PAGE_SIZE, i).expect("write");
    }
    g.bench_function("write_present", |b| {
        b.iter(|| {
            for i in 0..TOUCH_PAGES {
                mm.write_u64(addr + i * PAGE_SIZE, i).expect("write");
            }
        })
    });
    g.finish();
}

fn mprotect(c: &mut Criterion) {
    let (_sys, mm) = setup(BIG_PAGES + 1024);
    let len = BIG_PAGES * PAGE_SIZE;
    let touched = mm.mmap(0, len, RW, ANON).expect("mmap").raw();
    for i in 0..BIG_PAGES {
        mm.write_u64(touched + i * PAGE_SIZE, i).expect("write");
    }
    let untouched = mm.mmap(0, len, RW, ANON).expect("mmap").raw();
    let mut g = c.benchmark_group("mprotect");
    g.throughput(Throughput::Elements(BIG_PAGES));
    g.sample_size(20);
    for (name, addr) in [("64MiB_touched", touched), ("64MiB_untouched", untouched)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                mm.mprotect(addr, len, Prot::empty())
                    .expect("mprotect none");
                mm.mprotect(addr, len, RW).expect("mprotect rw");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, faults, mprotect);
criterion_main!(benches);
