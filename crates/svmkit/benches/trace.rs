//! The cost of the trace record (issue 17), measured in one run as ratios: the same
//! mm operations with the record off, at `normal` and at `detail` level.
//!
//! * `trace/first_touch_write/{off,normal,detail}`: a write to a never-touched page
//!   (fault, allocation, PTE install), per 64 pages.
//! * `trace/write_present/{off,...}`: a write to a present page (walk, PTL, access).
//! * `trace/mprotect_touched/{off,...}`: `mprotect(PROT_NONE)` then `mprotect(RW)`
//!   over the 64 touched pages (a PTE transition per page each way).
//! * `trace/exclusive_cycle/{off,...}`: `make_device_exclusive` of one page, then a
//!   CPU write that faults and restores it (notifier ranges, folio lock, two PTE
//!   transitions each way).
//!
//! The record is emptied in each iteration's untimed setup (`Tracer::clear`, which
//! keeps its memory), so it never grows past one iteration's events: this is the cost
//! of recording into memory already written once, as a long run's record is once it
//! has grown. A record growing into fresh memory also pays the page faults of that
//! memory (`Tracer::take` gives the memory back; docs/TRACES.md "Cost"). "Off" against code without any tracing is measured across
//! builds (instruction counts; docs/TRACES.md "Cost").

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use svmkit::mm::mmu_notifier::Owner;
use svmkit::mm::{MapFlags, Prot};
use svmkit::task::Task;
use svmkit::trace::TraceLevel;
use svmkit::{PAGE_SIZE, System, SystemConfig};

const A: u64 = 0x4000_0000;
const PAGES: u64 = 64;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);

const LEVELS: [(&str, TraceLevel); 3] = [
    ("off", TraceLevel::Off),
    ("normal", TraceLevel::Normal),
    ("detail", TraceLevel::Detail),
];

fn trace(c: &mut Criterion) {
    let sys = System::new(SystemConfig::with_frames(1024)).expect("system");
    let mm = sys.create_mm().expect("mm");
    let mut g = c.benchmark_group("trace");
    for (name, level) in LEVELS {
        sys.set_trace(level);
        g.bench_function(format!("first_touch_write/{name}"), |b| {
            b.iter_batched(
                || {
                    let _ = mm.munmap(A, PAGES * PAGE_SIZE);
                    mm.mmap(A, PAGES * PAGE_SIZE, RW, FIXED).expect("mmap");
                    sys.trace().clear();
                },
                |()| {
                    for i in 0..PAGES {
                        mm.write_u64(A + i * PAGE_SIZE, i).expect("write");
                    }
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function(format!("write_present/{name}"), |b| {
            b.iter_batched(
                || sys.trace().clear(),
                |()| {
                    for i in 0..PAGES {
                        mm.write_u64(A + i * PAGE_SIZE, i).expect("write");
                    }
                },
                BatchSize::PerIteration,
            )
        });
        // Mapped and touched whether or not the benches above ran (a filter).
        let _ = mm.munmap(A, PAGES * PAGE_SIZE);
        mm.mmap(A, PAGES * PAGE_SIZE, RW, FIXED).expect("mmap");
        for i in 0..PAGES {
            mm.write_u64(A + i * PAGE_SIZE, i).expect("write");
        }
        g.bench_function(format!("mprotect_touched/{name}"), |b| {
            b.iter_batched(
                || sys.trace().clear(),
                |()| {
                    mm.mprotect(A, PAGES * PAGE_SIZE, Prot::empty())
                        .expect("mprotect none");
                    mm.mprotect(A, PAGES * PAGE_SIZE, RW).expect("mprotect rw");
                },
                BatchSize::PerIteration,
            )
        });
        let (owner, task) = (Owner::new(), Task::new("bench"));
        g.bench_function(format!("exclusive_cycle/{name}"), |b| {
            b.iter_batched(
                || sys.trace().clear(),
                |()| {
                    let mut guard = mm.mmap_read_lock();
                    drop(
                        mm.make_device_exclusive(&mut guard, A, Some(owner), &task)
                            .expect("make_device_exclusive"),
                    );
                    drop(guard);
                    mm.write_u64(A, 2).expect("write");
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, trace);
criterion_main!(benches);
