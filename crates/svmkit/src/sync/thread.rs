//! Threads of the model: OS threads by default, shuttle tasks under the `shuttle`
//! feature.
//!
//! A simulated CPU, a driver's fault handler or a test's racing operation is a thread
//! spawned here. [`yield_now`] marks a point where Linux could be preempted between two
//! steps that matter (between a device atomic's read and its write, between GUP and
//! the folio lock, ...): under shuttle it is a scheduling point, on OS threads a hint.

#[cfg(feature = "shuttle")]
pub use shuttle::thread::{JoinHandle, spawn};
#[cfg(not(feature = "shuttle"))]
pub use std::thread::{JoinHandle, spawn};

/// Lets the scheduler run another thread here.
///
/// Linux: `cond_resched()` (and any preemption point between two steps).
#[doc(alias = "cond_resched")]
pub fn yield_now() {
    #[cfg(feature = "shuttle")]
    shuttle::thread::yield_now();
    #[cfg(not(feature = "shuttle"))]
    std::thread::yield_now();
}
