//! Checking the model: invariants at quiescent points, and schedule exploration.
//!
//! [`System::check`](crate::system::System::check) recomputes what every frame's
//! state must be from the page tables and reports each mismatch as a [`Violation`].
//!
//! [`explore`] runs a closure under shuttle's random and PCT schedulers for a number of iterations each. Every facade lock operation and
//! every [`crate::sync::yield_now`] inside the closure is a point where the scheduler
//! may switch threads. A panic (a failed assertion) or a deadlock in any iteration ends
//! the exploration with an [`ExploreFailure`] carrying the schedule string that
//! [`replay`] reproduces deterministically. Both are in every build: the facade
//! ([`crate::sync`]) switches to shuttle's primitives at run time, inside the closure,
//! so the same binary runs the model on OS threads and explores it.
//!
//! Tests that explore are named `shuttle_*`; their files are compiled with the
//! `shuttle` feature, so they run with `cargo test -p svmkit --features shuttle shuttle`
//! and stay out of the plain `cargo test`.

mod explore;
mod invariants;

pub use explore::{ExploreConfig, ExploreFailure, ExploreReport, SchedulerKind, explore, replay};
pub use invariants::{CheckError, ExtraRefs, Violation};
