//! Swap and migration of one small anonymous folio, next to a baseline measured in
//! the same run (report ratios; these machines are noisy).
//!
//! * `reclaim/swap_out_and_in`: `reclaim_folio` of a written page (write-out, unmap,
//!   free) and the CPU read that swaps it back in.
//! * `reclaim/migrate_small_folio`: `migrate_folio` of a mapped page (unmap to a
//!   migration entry, copy, remap).
//! * `reclaim/first_touch_fault` (baseline): a first-touch write fault on a fresh page
//!   plus its munmap.

use criterion::{Criterion, criterion_group, criterion_main};
use svmkit::mm::{MapFlags, Prot};
use svmkit::{PAGE_SIZE, System, SystemConfig, VirtAddr};

const A: u64 = 0x4000_0000;
const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);

fn reclaim(c: &mut Criterion) {
    let sys = System::new(SystemConfig::with_frames(256)).expect("system");
    sys.mem().swapon(16).expect("swapon");
    let mm = sys.create_mm().expect("mm");
    mm.mmap(A, PAGE_SIZE, Prot::READ | Prot::WRITE, FIXED)
        .expect("mmap");
    mm.write_u64(A, 1).expect("write");
    let va = VirtAddr::try_new(A).expect("va");
    let folio = || {
        sys.mem()
            .page_folio(mm.translate(va).expect("mapped"))
            .expect("folio")
    };
    let mut g = c.benchmark_group("reclaim");
    g.bench_function("swap_out_and_in", |b| {
        b.iter(|| {
            sys.mem().reclaim_folio(folio()).expect("reclaim");
            mm.read_u64(A).expect("swap-in")
        })
    });
    g.bench_function("migrate_small_folio", |b| {
        b.iter(|| sys.mem().migrate_folio(folio()).expect("migrate"))
    });
    let b2 = A + 0x10_0000;
    g.bench_function("first_touch_fault", |b| {
        b.iter(|| {
            mm.mmap(b2, PAGE_SIZE, Prot::READ | Prot::WRITE, FIXED)
                .expect("mmap");
            mm.write_u64(b2, 1).expect("write");
            mm.munmap(b2, PAGE_SIZE).expect("munmap");
        })
    });
    g.finish();
}

criterion_group!(benches, reclaim);
criterion_main!(benches);
