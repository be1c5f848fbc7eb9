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
        /// Where the task and its joiner meet (see [`JoinState`]).
        state: std::sync::Arc<JoinState>,
    },
}

/// Whether a facade task has finished and whether its joiner waits for it, so that the
/// facade counts the joiner among its blocked tasks while it waits (see
/// `mode::pass_lone_point`).
#[derive(Default)]
struct JoinState(std::sync::atomic::AtomicU8);

impl JoinState {
    const RUNNING: u8 = 0;
    const JOINER_BLOCKED: u8 = 1;
    const FINISHED: u8 = 2;

    /// The joiner is about to wait: counted blocked unless the task has finished (the
    /// engine then lets the join return without blocking).
    fn joining(&self) {
        use std::sync::atomic::Ordering;
        if self
            .0
            .compare_exchange(
                Self::RUNNING,
                Self::JOINER_BLOCKED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            mode::task_blocked();
        }
    }

    /// The task returned: its joiner, if it waits, runs again as the task ends (no
    /// scheduling point of the facade falls in between).
    fn finished(&self) {
        use std::sync::atomic::Ordering;
        if self.0.swap(Self::FINISHED, Ordering::Relaxed) == Self::JOINER_BLOCKED {
            mode::task_unblocked();
        }
    }
}

impl<T> JoinHandle<T> {
    /// Waits for the thread to finish; `Err` carries its panic payload, as in std.
    pub fn join(self) -> std::thread::Result<T> {
        match self.inner {
            JoinImpl::Std(handle) => {
                mode::check_std_blocking("JoinHandle");
                handle.join()
            }
            JoinImpl::Shuttle {
                handle,
                exec,
                state,
            } => {
                mode::check_shuttle(exec, "JoinHandle");
                state.joining();
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
        Backend::Shuttle(exec) => {
            let state = std::sync::Arc::new(JoinState::default());
            JoinImpl::Shuttle {
                handle: shuttle::thread::spawn(counted(f, std::sync::Arc::clone(&state))),
                exec,
                state,
            }
        }
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
        Backend::Shuttle(exec) => {
            let state = std::sync::Arc::new(JoinState::default());
            JoinImpl::Shuttle {
                handle: shuttle::thread::Builder::new()
                    .name(name.to_string())
                    .spawn(counted(f, std::sync::Arc::clone(&state)))
                    .unwrap_or_else(|e| panic!("cannot spawn task {name}: {e}")),
                exec,
                state,
            }
        }
    };
    JoinHandle { inner }
}

/// `f`, counted among its execution's live tasks until it returns or unwinds (see
/// [`mode::single_task`]); then its joiner, if waiting, is counted runnable again.
fn counted<F, T>(f: F, state: std::sync::Arc<JoinState>) -> impl FnOnce() -> T + Send + 'static
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    struct Finished(std::sync::Arc<JoinState>);
    impl Drop for Finished {
        fn drop(&mut self) {
            mode::task_finished();
            self.0.finished();
        }
    }
    mode::task_spawned();
    move || {
        let _finished = Finished(state);
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
        if mode::pass_lone_point() {
            // Every other task waits: the scheduler would pick this one again.
            return;
        }
        mode::at_scheduling_point();
        shuttle::thread::yield_now();
    } else {
        std::thread::yield_now();
    }
}
