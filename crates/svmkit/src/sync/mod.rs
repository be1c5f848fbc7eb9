//! The concurrency facade: every lock, condition variable, thread and scheduling point
//! of the model comes from here.
//!
//! On a normal build the primitives are `std`'s and the model runs on OS threads. With
//! the `shuttle` cargo feature they are [shuttle]'s, so every lock operation (and every
//! explicit [`yield_now`]) becomes a scheduling point that `check::explore`
//! can interleave differently on each iteration. Model code never names `std::sync`
//! locks directly; it imports them from this module so that both builds run the same
//! code.
//!
//! What is *not* a scheduling point, on purpose (see `docs/ARCHITECTURE.md`):
//! frame contents and page-table words are plain `std` atomics, because a 4 KiB copy
//! must not become a thousand scheduling points. Where Linux could be preempted
//! between two steps that matter, the model calls [`yield_now`] explicitly.
//!
//! The locks built here:
//! * [`Mutex`] and [`Condvar`]: non-poisoning wrappers (a panicking task does not make
//!   the lock unusable for the checker's post-mortem).
//! * [`WaitQueue`]: Linux's `wait_queue_head_t` with `wait_event`/`wake_up_all`,
//!   killable waits included; the folio lock and (later) the notifier's `wq` use it.
//! * [`MmapLock`]: a writer-preferring reader/writer semaphore, Linux's `mmap_lock`.
//!
//! [shuttle]: https://docs.rs/shuttle

mod mmap_lock;
mod mutex;
pub mod thread;
mod wait;

pub use mmap_lock::{MmapLock, MmapReadGuard, MmapWriteGuard};
pub use mutex::{Condvar, Mutex, MutexGuard};
pub use std::sync::Arc;
pub use thread::yield_now;
pub use wait::WaitQueue;

/// Whether the facade is built on shuttle's primitives (the `shuttle` feature).
pub const IS_SHUTTLE: bool = cfg!(feature = "shuttle");
