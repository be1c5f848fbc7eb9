//! Transparent huge pages, each figure next to a baseline in the same run (report
//! ratios; these machines are noisy), and comparable with the real kernel's figures on
//! this machine kind (../shared/reference/perf-anchors.md: 230–240 µs per 2 MiB THP
//! fault, 8.5–8.6 µs to mprotect one 4 KiB subpage of a PMD-mapped THP).
//!
//! * `thp/first_touch_2MiB`: the first write to a 2 MiB-aligned MADV_HUGEPAGE range
//!   (order-9 allocation, zeroing 2 MiB, PMD install); baseline
//!   `thp/first_touch_512x4KiB`: the same 2 MiB faulted in as 512 small pages.
//! * `thp/mprotect_one_subpage_splits`: `mprotect(PROT_READ)` of one 4 KiB page of a
//!   PMD-mapped THP (VMA split, `split_huge_pmd`, one PTE changed); baseline
//!   `thp/mprotect_one_page_4KiB`: the same on a range of small pages.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use svmkit::mm::{Advice, MapFlags, MmUser, PMD_SIZE, Prot};
use svmkit::sync::Arc;
use svmkit::{PAGE_SIZE, System, SystemConfig};

const RW: Prot = Prot::READ.union(Prot::WRITE);
const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);
const H: u64 = 0x4000_0000;

/// A 2 MiB mapping at `H`, unmapped when dropped (outside the timed part).
struct Region(MmUser);

impl Drop for Region {
    fn drop(&mut self) {
        let _ = self.0.munmap(H, PMD_SIZE);
    }
}

fn region(mm: &MmUser, huge: bool, touch: bool) -> Region {
    mm.mmap(H, PMD_SIZE, RW, FIXED).expect("mmap");
    if huge {
        mm.madvise(H, PMD_SIZE, Advice::HugePage).expect("madvise");
    }
    if touch {
        for i in 0..PMD_SIZE / PAGE_SIZE {
            mm.write_u64(H + i * PAGE_SIZE, i).expect("write");
        }
    }
    Region(mm.clone())
}

fn setup() -> (Arc<System>, MmUser) {
    let sys = System::new(SystemConfig::with_frames(4096)).expect("system");
    let mm = sys.create_mm().expect("mm");
    (sys, mm)
}

fn thp(c: &mut Criterion) {
    let (_sys, mm) = setup();
    let mut g = c.benchmark_group("thp");
    g.bench_function("first_touch_2MiB", |b| {
        b.iter_batched(
            || region(&mm, true, false),
            |r| {
                r.0.write_u64(H, 1).expect("write");
                r
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("first_touch_512x4KiB", |b| {
        b.iter_batched(
            || region(&mm, false, false),
            |r| {
                for i in 0..PMD_SIZE / PAGE_SIZE {
                    r.0.write_u64(H + i * PAGE_SIZE, 1).expect("write");
                }
                r
            },
            BatchSize::PerIteration,
        )
    });
    for (name, huge) in [
        ("mprotect_one_subpage_splits", true),
        ("mprotect_one_page_4KiB", false),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || region(&mm, huge, true),
                |r| {
                    r.0.mprotect(H + 5 * PAGE_SIZE, PAGE_SIZE, Prot::READ)
                        .expect("mprotect");
                    r
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, thp);
criterion_main!(benches);
