//! The deterministic workloads docs/TRACES.md "Cost" counts instructions of
//! (cachegrind), one per process: `trace_cost WORKLOAD [off|normal|detail]`.
//!
//! Built with the bench profile (`cargo build --profile bench --example trace_cost`)
//! so that it is the code the criterion benches time. The same file builds against the
//! tree before tracing existed once its two tracing lines are removed (the docs say
//! how), which is what "off against no tracing" compares.
//!
//! Workloads (the docs' table):
//! * `setup`: the system, mm and mapping alone (the others' common part);
//! * `first_touch`: 20 × 256 first-touch writes (faults, allocations, PTE installs);
//! * `write_present`: 200 × 256 writes to present pages;
//! * `mprotect`: 100 × `mprotect(PROT_NONE)` + `mprotect(RW)` over 256 touched pages;
//! * `exclusive`: 2000 × `make_device_exclusive` + the CPU write that restores it;
//! * `svm_atomic`: 1000 × a device atomic (fault, conversion, device map) + the CPU
//!   write that revokes it.

use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::mm::mmu_notifier::Owner;
use svmkit::mm::{MapFlags, Prot};
use svmkit::task::Task;
use svmkit::{PAGE_SIZE, System, SystemConfig};

const A: u64 = 0x4000_0000;
const PAGES: u64 = 256;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const FIXED: MapFlags = MapFlags::PRIVATE
    .union(MapFlags::ANONYMOUS)
    .union(MapFlags::FIXED);

fn main() {
    let mut args = std::env::args().skip(1);
    let workload = args.next().unwrap_or_default();
    let level = args.next().unwrap_or_else(|| "off".to_string());
    let sys = System::new(SystemConfig::with_frames(1024)).expect("system");
    // trace-only: `sed '/trace-only/,+2d'` removes these lines for the tree before tracing.
    let level = svmkit::trace::TraceLevel::from_name(&level).expect("off, normal or detail");
    sys.set_trace(level);
    let mm = sys.create_mm().expect("mm");
    let len = PAGES * PAGE_SIZE;
    let touch = || {
        for i in 0..PAGES {
            mm.write_u64(A + i * PAGE_SIZE, i).expect("write");
        }
    };
    mm.mmap(A, len, RW, FIXED).expect("mmap");
    match workload.as_str() {
        // The setup alone (system, mm, mapping, teardown): subtracted from the others
        // to compare the operations without what changed in building a system.
        "setup" => {}
        "first_touch" => {
            for _ in 0..20 {
                touch();
                mm.munmap(A, len).expect("munmap");
                mm.mmap(A, len, RW, FIXED).expect("mmap");
            }
        }
        "write_present" => {
            for _ in 0..200 {
                touch();
            }
        }
        "mprotect" => {
            touch();
            for _ in 0..100 {
                mm.mprotect(A, len, Prot::empty()).expect("mprotect none");
                mm.mprotect(A, len, RW).expect("mprotect rw");
            }
        }
        "exclusive" => {
            touch();
            let (owner, task) = (Owner::new(), Task::new("cost"));
            for i in 0..2000 {
                let mut guard = mm.mmap_read_lock();
                drop(
                    mm.make_device_exclusive(&mut guard, A, Some(owner), &task)
                        .expect("make_device_exclusive"),
                );
                drop(guard);
                mm.write_u64(A, i).expect("write");
            }
        }
        "svm_atomic" => {
            touch();
            let gpu = SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 16).expect("device");
            let task = Task::new("cost");
            for i in 0..1000 {
                gpu.atomic_fetch_add(&task, A, 1).expect("atomic");
                mm.write_u64(A, i).expect("write");
            }
        }
        other => {
            eprintln!(
                "unknown workload `{other}`: setup, first_touch, write_present, mprotect, exclusive or svm_atomic"
            );
            std::process::exit(2);
        }
    }
    // The record is dropped with the system, as a run's would be after its views.
    drop(sys);
}
