//! Checking the model: schedule exploration now; invariant checking and replayable
//! traces in later layers.
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

#[cfg(feature = "shuttle")]
pub use explore::{ExploreConfig, ExploreFailure, ExploreReport, SchedulerKind, explore, replay};
