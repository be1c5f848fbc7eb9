//! Checking the model: invariants at quiescent points, and schedule exploration.
//!
//! [`System::check`](crate::system::System::check) recomputes what every frame's
//! state must be from the page tables and reports each mismatch as a [`Violation`].
//!
//! `explore` (with the `shuttle` feature) runs a closure under shuttle's random and
//! PCT schedulers for a number of iterations each. Every facade lock operation and
//! every [`crate::sync::yield_now`] inside the closure is a point where the scheduler
//! may switch threads. A panic (a failed assertion) or a deadlock in any iteration ends
//! the exploration with an `ExploreFailure` carrying the schedule string that
//! `replay` reproduces deterministically.
//!
//! Tests that explore are named `shuttle_*` and run with
//! `cargo test -p svmkit --features shuttle shuttle`.

#[cfg(feature = "shuttle")]
mod explore;
mod invariants;

#[cfg(feature = "shuttle")]
pub use explore::{ExploreConfig, ExploreFailure, ExploreReport, SchedulerKind, explore, replay};
pub use invariants::{CheckError, ExtraRefs, Violation};
