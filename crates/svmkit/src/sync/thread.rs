//! Threads of the model: OS threads on OS threads, shuttle tasks inside a schedule
//! exploration, chosen at each [`spawn`] from the calling context.
//!
//! A simulated CPU, a driver's fault handler or a test's racing operation is a thread
//! spawned here. [`yield_now`] marks a point where Linux could be preempted between two
//! steps that matter (between a device atomic's read and its write, between GUP and
//! the folio lock, ...): under shuttle it is a scheduling point, on OS threads a hint.
//!
//! There is no object to remember a backend in, so these functions decide per call
//! (a thread spawn or an OS `sched_yield` costs far more than the check).

use std::fmt;

use super::mode::{self, Backend};

/// An owned permission to join a thread spawned by [`spawn`] (wait for it to end).
///
/// It belongs to the context that spawned the thread: joining an OS thread from inside
/// a schedule exploration, or a shuttle task from outside its execution, panics.
pub struct JoinHandle<T> {
    inner: JoinImpl<T>,
}

enum JoinImpl<T> {
    Std(std::thread::JoinHandle<T>),
    Shuttle {
        handle: shuttle::thread::JoinHandle<T>,
        exec: u64,
    },
}

impl<T> JoinHandle<T> {
    /// Waits for the thread to finish; `Err` carries its panic payload, as in std.
    pub fn join(self) -> std::thread::Result<T> {
        match self.inner {
            JoinImpl::Std(handle) => {
                mode::check_std_blocking("JoinHandle");
                handle.join()
            }
            JoinImpl::Shuttle { handle, exec } => {
                mode::check_shuttle(exec, "JoinHandle");
                handle.join()
            }
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.inner {
            JoinImpl::Std(_) => "std",
            JoinImpl::Shuttle { .. } => "shuttle",
        };
        f.debug_struct("JoinHandle")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

/// Spawns a thread running `f`: a shuttle task inside a schedule exploration, an OS
/// thread otherwise.
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let inner = match Backend::current() {
        Backend::Std => JoinImpl::Std(std::thread::spawn(f)),
        Backend::Shuttle(exec) => JoinImpl::Shuttle {
            handle: shuttle::thread::spawn(counted(f)),
            exec,
        },
    };
    JoinHandle { inner }
}

/// [`spawn`] with a name: the OS thread's name, or the shuttle task's (which the
/// explorer's deadlock reports print).
#[track_caller]
pub fn spawn_named<F, T>(name: &str, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let inner = match Backend::current() {
        Backend::Std => JoinImpl::Std(
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(f)
                .unwrap_or_else(|e| panic!("cannot spawn thread {name}: {e}")),
        ),
        Backend::Shuttle(exec) => JoinImpl::Shuttle {
            handle: shuttle::thread::Builder::new()
                .name(name.to_string())
                .spawn(counted(f))
                .unwrap_or_else(|e| panic!("cannot spawn task {name}: {e}")),
            exec,
        },
    };
    JoinHandle { inner }
}

/// `f`, counted among its execution's live tasks until it returns or unwinds (see
/// [`mode::single_task`]).
fn counted<F, T>(f: F) -> impl FnOnce() -> T + Send + 'static
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    struct Finished;
    impl Drop for Finished {
        fn drop(&mut self) {
            mode::task_finished();
        }
    }
    mode::task_spawned();
    move || {
        let _finished = Finished;
        f()
    }
}

/// Lets the scheduler run another thread here.
///
/// Linux: `cond_resched()` (and any preemption point between two steps).
#[doc(alias = "cond_resched")]
pub fn yield_now() {
    if mode::single_task() {
        // Alone in an exploration: nothing to yield to (see `mode::single_task`).
        return;
    }
    if mode::in_explorer() {
        mode::at_scheduling_point();
        shuttle::thread::yield_now();
    } else {
        std::thread::yield_now();
    }
}
