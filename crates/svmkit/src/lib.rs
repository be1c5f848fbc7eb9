//! # svmkit: an executable model of Linux's device-exclusive memory access
//!
//! svmkit models the slice of the Linux mm that *device-exclusive entries* live in:
//! the HMM machinery that lets a device (a GPU) take exclusive ownership of a
//! process's anonymous pages so it can run atomics on them, while any CPU touch of
//! such a page faults, tells the device through an MMU notifier to drop its mapping
//! and gets the original mapping back.
//!
//! The crate is layered (see `docs/ARCHITECTURE.md` in the repository):
//!
//! 1. [`sync`]: the concurrency facade. Every lock the model takes goes through it,
//!    so the same code, in one build, runs on OS threads or under the schedule
//!    explorer ([`check`]): its primitives are shuttle's inside an exploration.
//! 2. [`mm`]: physical memory (frames holding real bytes, per-page metadata, a buddy
//!    allocator, folios and the folio lock), and later the address spaces built on it.
//! 3. [`check`]: schedule exploration and (later) invariant checking.
//!
//! Every operation with a Linux counterpart names it in a `Linux:` line of its docs
//! and carries a `#[doc(alias)]` with the C name, so rustdoc search finds
//! `folio_lock` as well as [`mm::PhysMem::folio_lock`].
//!
//! ```
//! use svmkit::mm::{Gfp, PhysMem, PhysMemConfig};
//!
//! let mem = PhysMem::new(PhysMemConfig::with_frames(1024)).unwrap();
//! let folio = mem.folio_alloc(0, Gfp::ZERO).unwrap();
//! mem.write_u64(folio.head(), 0, 42).unwrap();
//! assert_eq!(mem.read_u64(folio.head(), 0).unwrap(), 42);
//! mem.folio_put(folio); // the last reference: the frame goes back to the buddy allocator
//! assert_eq!(mem.nr_free_pages(), mem.nr_usable_pages());
//! ```
#![forbid(unsafe_code)]

pub mod check;
pub mod cpu;
pub mod device;
pub mod error;
pub mod mm;
pub mod profile;
pub mod sync;
pub mod system;
pub mod task;
pub mod trace;
pub mod types;

pub use cpu::{Access, FAULT_LIVELOCK_LIMIT, FaultError, FaultKind};
pub use error::Errno;
pub use profile::{Profile, RestoreEvent, RestoreWritability};
pub use system::{System, SystemConfig};
pub use trace::{TraceEvent, TraceLevel, Tracer};
pub use types::{PAGE_SHIFT, PAGE_SIZE, Pfn, VirtAddr};
