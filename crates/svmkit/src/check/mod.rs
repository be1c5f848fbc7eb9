//! Checking the model: invariants at quiescent points, and schedule exploration.
//!
//! [`System::check`](crate::system::System::check) recomputes what every frame's
//! state must be from the page tables and reports each mismatch as a [`Violation`].
//!
//! [`explore`] runs a closure under shuttle's random and PCT schedulers, or a
//! preemption-bounded depth-first search ([`SchedulerKind::Dfs`]), for a number of
//! iterations each (or until a time limit). Every facade lock operation and
//! every [`crate::sync::yield_now`] inside the closure is a point where the scheduler
//! may switch threads. A panic (a failed assertion) or a deadlock in any iteration ends
//! the exploration with an [`ExploreFailure`] carrying the schedule string that
//! [`replay`] reproduces deterministically. Both are in every build: the facade
//! ([`crate::sync`]) switches to shuttle's primitives at run time, inside the closure,
//! so the same binary runs the model on OS threads and explores it. A failure records its
//! schedule's steps and preemptions; [`minimise`] shrinks it to fewer preemptions (then
//! fewer steps) with the same kind of failure.
//!
//! Tests that explore are named `shuttle_*`; their files are compiled with the
//! `shuttle` feature, so they run with `cargo test -p svmkit --features shuttle shuttle`
//! and stay out of the plain `cargo test`; the exploration library's own tests
//! (`tests/explore_lib.rs`, `tests/explore_model.rs`) are small and run in it.

mod dfs;
mod explore;
mod invariants;
mod minimise;

pub use explore::{
    ExploreConfig, ExploreFailure, ExploreProgress, ExploreReport, ProgressFn, SchedulerKind,
    at_every_scheduling_point, at_every_state_change, explore, explore_with_progress,
    model_changed, model_generation, on_every_schedule_choice, replay, replay_bounded,
};
pub use invariants::{CheckError, ExtraRefs, Violation};
pub use minimise::minimise;
