//! Which backend the facade uses: std's on OS threads, shuttle's inside a schedule
//! exploration. Decided at run time, from the calling thread's context.
//!
//! # How the context is known
//!
//! Shuttle runs every task of an execution as a coroutine on the OS thread that called
//! the runner (`Runner::run` runs executions on the caller's thread; tasks are
//! `corosensei` coroutines switched on it; a unit test of `sync` checks it). So an OS
//! thread-local is shared by all tasks of an execution and by nothing else:
//!
//! * `check::explore` and `check::replay` set [`EXECUTION`] to a fresh id at the start
//!   of every execution (the first thing their wrapped closure does) and restore it
//!   when the runner returns. Reading it is one thread-local load: the facade checks it
//!   on every operation of a std-backed primitive.
//! * Any other shuttle runner (a test calling `shuttle::check_random` directly, a
//!   `PortfolioRunner`) is recognised through shuttle's own execution state
//!   (`ExecutionState::try_with`, which fails with `NotSet` outside an execution). That
//!   query is dearer, so it is consulted only when a primitive is created, a thread
//!   spawned or a blocking wait begins, never on an uncontended lock.
//!
//! # Mixed use
//!
//! A primitive keeps the backend it was created with. Using it from the other context
//! is a programming error that panics with a message naming the mistake, instead of
//! misbehaving silently:
//!
//! * a std-backed primitive used inside an exploration would be no scheduling point
//!   (the explorer would silently miss interleavings) and blocking on it would hang
//!   the OS thread all the tasks share; so every operation on one (lock, try-lock,
//!   wait, notify, join, and each operation of a wait queue or mmap lock) panics when
//!   [`EXECUTION`] is set, and a contended lock or a wait also panics under a foreign
//!   shuttle runner (where [`EXECUTION`] is not set);
//! * a shuttle-backed primitive records the execution that created it; used outside
//!   it (after the exploration, or in a later schedule, having escaped through a
//!   static) it panics before calling into shuttle, which would otherwise panic with
//!   its own, less specific message or, across executions, corrupt its bookkeeping.
//!
//! Dropping a primitive is never checked: it takes no lock, in either backend.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use shuttle_engine::runtime::execution::{ExecutionState, ExecutionStateBorrowError};

thread_local! {
    /// The id of the svmkit-run shuttle execution this OS thread is in, 0 outside any.
    static EXECUTION: Cell<u64> = const { Cell::new(0) };
}

thread_local! {
    /// Tasks of this OS thread's execution that have not finished: 1 at its start, one
    /// more per task [`spawn`](super::thread::spawn)ed, one less as each returns; 0
    /// outside an execution of svmkit's explorer (unknown: another runner's tasks are
    /// not counted).
    static LIVE_TASKS: Cell<usize> = const { Cell::new(0) };
    /// Tasks of this OS thread's execution blocked in the facade (on a
    /// [`coop`](super::coop) lock or condition variable, or joining a facade thread):
    /// with [`LIVE_TASKS`], whether the running task is the only runnable one, in two
    /// loads (see [`pass_lone_point`]).
    static BLOCKED_TASKS: Cell<usize> = const { Cell::new(0) };
    /// Scheduling points passed over by [`pass_lone_point`] in this execution.
    static LONE_PASSES: Cell<u32> = const { Cell::new(0) };
    /// What to run at every scheduling point of this OS thread's execution (see
    /// [`crate::check::at_every_scheduling_point`]).
    static HOOK: std::cell::RefCell<Option<std::rc::Rc<dyn Fn() -> bool>>> =
        const { std::cell::RefCell::new(None) };
    /// Whether [`HOOK`] reads only the model state [`MODEL_CHANGES`] counts changes
    /// of, and so is skipped where that count is what it was when the hook last
    /// returned true (see `crate::check::at_every_state_change`).
    static HOOK_ON_CHANGES: Cell<bool> = const { Cell::new(false) };
    /// Changes of the state the scheduling-point checks read (see [`model_changed`]),
    /// and their number when the hook last saw all of it.
    static MODEL_CHANGES: Cell<u64> = const { Cell::new(0) };
    static MODEL_CHANGES_SEEN: Cell<u64> = const { Cell::new(u64::MAX) };
    /// Told each choice of the execution's scheduler (see `set_schedule_hook`).
    static SCHEDULE_HOOK: std::cell::RefCell<Option<std::rc::Rc<ScheduleHook>>> =
        const { std::cell::RefCell::new(None) };
    /// Whether [`HOOK`] is set (one test on the hot path) and not running.
    static HOOK_ARMED: Cell<bool> = const { Cell::new(false) };
    /// Lock releases in this OS thread's execution so far, and their number when the
    /// hook last ran: the hook runs only after something was released (see
    /// [`at_scheduling_point`]).
    static RELEASES: Cell<u64> = const { Cell::new(0) };
    static RELEASES_SEEN: Cell<u64> = const { Cell::new(u64::MAX) };
}

/// A facade lock of the execution was released.
#[inline]
pub(crate) fn released() {
    RELEASES.set(RELEASES.get().wrapping_add(1));
}

/// The model changed state that the scheduling-point checks read: a page-table word,
/// frame contents, a device table, an interval-notifier tree, a notifier recorder, an
/// mm's users, the device registry or its stale accesses (the list is in
/// `crate::check::model_changed`). One thread-local add: every execution runs on one
/// OS thread, and outside an exploration nobody reads it.
#[inline(always)]
pub(crate) fn model_changed() {
    MODEL_CHANGES.set(MODEL_CHANGES.get().wrapping_add(1));
}

/// The number of [`model_changed`] calls on this OS thread so far.
pub(crate) fn model_changes() -> u64 {
    MODEL_CHANGES.get()
}

/// Runs the execution's scheduling-point hook, if any, unless it is running already
/// (a facade lock taken by the hook itself does not recurse) or no lock was released
/// since it last ran: the model changes what another task can see only under a lock,
/// so nothing another task could observe has changed since.
/// Nor does it run while no other task is runnable: no one could observe the state
/// here, and it lasts until a later scheduling point where someone can. A hook on
/// model changes is skipped, too, where the model is as it last saw all of it.
#[inline]
pub(crate) fn at_scheduling_point() {
    if HOOK_ARMED.get()
        && RELEASES.get() != RELEASES_SEEN.get()
        && !(HOOK_ON_CHANGES.get() && MODEL_CHANGES.get() == MODEL_CHANGES_SEEN.get())
        && others_runnable_now()
    {
        RELEASES_SEEN.set(RELEASES.get());
        run_hook();
    }
}

/// Whether a task other than the running one is runnable, from the facade's counts
/// where they are kept (svmkit's own explorer), from the engine's task states
/// otherwise.
#[inline]
fn others_runnable_now() -> bool {
    counted_lone().map_or_else(others_runnable, |lone| !lone)
}

/// From the facade's counts, whether every task other than the running one is
/// blocked in the facade, or there is none (a scenario's set-up, end checks and
/// teardown run alone); `None` outside svmkit's own explorer, which keeps no counts.
#[inline]
fn counted_lone() -> Option<bool> {
    match LIVE_TASKS.get() {
        0 => None,
        live => Some(BLOCKED_TASKS.get() == live - 1),
    }
}

/// Whether a task other than the running one is runnable (not blocked, not finished).
fn others_runnable() -> bool {
    use shuttle_engine::runtime::task::TaskId;
    ExecutionState::try_with(|s| {
        let me = s.try_current().map(|t| t.id());
        (0usize..)
            .map(TaskId::from)
            .map_while(|id| s.try_get(id))
            .any(|t| Some(t.id()) != me && t.runnable())
    })
    .unwrap_or(true)
}

#[cold]
#[inline(never)]
fn run_hook() {
    // A task unwinding (from the hook's own panic, say) takes locks in its drops: a
    // second panic there would abort the process.
    if std::thread::panicking() {
        return;
    }
    let Some(hook) = HOOK.with(|h| h.borrow().clone()) else {
        return;
    };
    struct Rearm;
    impl Drop for Rearm {
        fn drop(&mut self) {
            HOOK_ARMED.set(HOOK.with(|h| h.borrow().is_some()));
        }
    }
    HOOK_ARMED.set(false);
    let _rearm = Rearm;
    // Counted before the hook reads: a change it makes itself (none should) or one
    // it misses being read now runs it again.
    let changes = MODEL_CHANGES.get();
    if hook() {
        MODEL_CHANGES_SEEN.set(changes);
    }
}

/// What a schedule hook is told: the chosen task's name, every runnable task's, and
/// whether the choice is a preemption.
pub(crate) type ScheduleHook = dyn Fn(&str, &[String], bool);

/// Sets (or clears) the schedule hook of the running execution.
pub(crate) fn set_schedule_hook(hook: Option<std::rc::Rc<ScheduleHook>>) {
    let old = SCHEDULE_HOOK.with(|h| h.replace(hook));
    drop(old);
}

/// The schedule hook of the running execution, if one is set.
pub(crate) fn schedule_hook() -> Option<std::rc::Rc<ScheduleHook>> {
    SCHEDULE_HOOK.with(|h| h.borrow().clone())
}

/// Sets (or clears) the hook of the running execution; `on_changes`: it is skipped
/// where the model has not changed since it last returned true.
pub(crate) fn set_hook(hook: Option<std::rc::Rc<dyn Fn() -> bool>>, on_changes: bool) {
    HOOK_ARMED.set(hook.is_some());
    HOOK_ON_CHANGES.set(on_changes);
    RELEASES_SEEN.set(u64::MAX);
    MODEL_CHANGES_SEEN.set(u64::MAX);
    let old = HOOK.with(|h| h.replace(hook));
    drop(old);
}

/// Ids of executions: each one svmkit starts gets a new one, never 0.
static NEXT_EXECUTION: AtomicU64 = AtomicU64::new(1);

/// The execution id recorded by primitives created under a shuttle runner that is not
/// svmkit's (where [`EXECUTION`] is 0).
const FOREIGN: u64 = 0;

/// The backend a new primitive gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// std's primitives: OS threads.
    Std,
    /// shuttle's primitives, belonging to the execution with this id ([`FOREIGN`] when
    /// the runner is not svmkit's).
    Shuttle(u64),
}

impl Backend {
    /// The backend for a primitive created (or a thread spawned) here and now.
    #[inline]
    pub(crate) fn current() -> Backend {
        match EXECUTION.get() {
            0 if foreign_execution() => Backend::Shuttle(FOREIGN),
            0 => Backend::Std,
            exec => Backend::Shuttle(exec),
        }
    }
}

/// Whether the calling thread runs inside a shuttle execution, so that the facade's
/// primitives created now are shuttle's and every lock operation is a scheduling point.
///
/// True inside the closure given to [`check::explore`](crate::check::explore) or
/// [`check::replay`](crate::check::replay) (and in the threads it spawns through
/// [`thread::spawn`](super::thread::spawn)), and inside any other shuttle runner's
/// execution; false on OS threads.
pub fn in_explorer() -> bool {
    EXECUTION.get() != 0 || foreign_execution()
}

/// Whether shuttle has an execution running on this OS thread (whoever started it).
fn foreign_execution() -> bool {
    !matches!(
        ExecutionState::try_with(|_| ()),
        Err(ExecutionStateBorrowError::NotSet)
    )
}

/// An exploration run on this thread: svmkit's runners hold one around `Runner::run`
/// (it restores the thread's execution id when dropped) and call
/// [`ExplorationScope::begin_execution`] first thing in every execution.
pub(crate) struct ExplorationScope {
    previous: u64,
    os_thread: std::thread::ThreadId,
}

impl ExplorationScope {
    /// Enters an exploration run by the calling thread.
    pub(crate) fn enter() -> Self {
        ExplorationScope {
            previous: EXECUTION.get(),
            os_thread: std::thread::current().id(),
        }
    }

    /// Called by the explored closure's wrapper at the start of each execution: gives
    /// the execution its id. Panics (failing that schedule) if shuttle runs it on
    /// another OS thread than the runner's, which the detection relies on.
    pub(crate) fn begin_execution(os_thread: std::thread::ThreadId) {
        assert_eq!(
            std::thread::current().id(),
            os_thread,
            "svmkit::sync: shuttle ran an execution on another OS thread than its runner's; \
             the facade's backend detection relies on one thread per exploration"
        );
        EXECUTION.set(NEXT_EXECUTION.fetch_add(1, Ordering::Relaxed));
        LIVE_TASKS.set(1);
        BLOCKED_TASKS.set(0);
        LONE_PASSES.set(0);
        set_hook(None, false);
        set_schedule_hook(None);
    }

    /// The runner's OS thread, to hand to [`begin_execution`](Self::begin_execution).
    pub(crate) fn os_thread(&self) -> std::thread::ThreadId {
        self.os_thread
    }
}

impl Drop for ExplorationScope {
    fn drop(&mut self) {
        EXECUTION.set(self.previous);
        LIVE_TASKS.set(0);
        BLOCKED_TASKS.set(0);
        set_hook(None, false);
        set_schedule_hook(None);
    }
}

/// Whether the running execution has a single task left (or yet): then no other task
/// can run between two of its steps, and a facade [`Mutex`](super::Mutex) is taken
/// without a scheduling point. A schedule is the same without them (there is nothing
/// to switch to), but a scenario's set-up, end checks and teardown, which run alone,
/// no longer pay the explorer's cost for each lock.
#[inline]
pub(crate) fn single_task() -> bool {
    LIVE_TASKS.get() == 1
}

/// A task of this execution went from runnable to blocked in the facade.
#[inline]
pub(crate) fn task_blocked() {
    BLOCKED_TASKS.set(BLOCKED_TASKS.get() + 1);
}

/// A task of this execution blocked in the facade is runnable again.
#[inline]
pub(crate) fn task_unblocked() {
    BLOCKED_TASKS.set(BLOCKED_TASKS.get().saturating_sub(1));
}

/// How often a task alone among blocked ones still reaches the engine at a scheduling
/// point it could pass over: the engine counts its steps against the step bound, so a
/// task that spins while every other waits (a livelock with one runner) still meets
/// the bound, after this many times its steps.
const LONE_ENGINE_EVERY: u32 = 64;

/// Whether the scheduling point the running task is at can be passed over: it is
/// alone in its execution, or the other tasks are alive but every one is blocked in
/// the facade, so the scheduler has no choice to make (it would pick the running
/// task) and the schedule is the same without the point. A task alone thus passes its
/// PTL, folio and mmap lock points over as a facade Mutex alone takes none
/// ([`single_task`]). Every [`LONE_ENGINE_EVERY`]th such point still goes to the
/// engine (its step bound). Debug builds check the count against the engine's task
/// states at every point.
#[inline]
pub(crate) fn pass_lone_point() -> bool {
    let Some(lone) = counted_lone() else {
        return false;
    };
    #[cfg(debug_assertions)]
    if !ExecutionState::should_stop() {
        debug_assert_eq!(
            lone,
            !others_runnable(),
            "svmkit::sync: the facade's count of blocked tasks ({} of {} live) \
             disagrees with the engine",
            BLOCKED_TASKS.get(),
            LIVE_TASKS.get()
        );
    }
    if !lone {
        return false;
    }
    let n = LONE_PASSES.get().wrapping_add(1);
    LONE_PASSES.set(n);
    !n.is_multiple_of(LONE_ENGINE_EVERY)
}

/// A task is about to be spawned in this execution.
pub(crate) fn task_spawned() {
    let live = LIVE_TASKS.get();
    if live != 0 {
        LIVE_TASKS.set(live + 1);
    }
}

/// A spawned task of this execution has returned (or unwound).
pub(crate) fn task_finished() {
    let live = LIVE_TASKS.get();
    if live > 1 {
        LIVE_TASKS.set(live - 1);
    }
}

/// The id of the svmkit execution this thread is in, 0 outside any (one load).
#[inline(always)]
pub(crate) fn current_execution() -> u64 {
    EXECUTION.get()
}

/// Before an operation on a std-backed primitive that cannot block (an uncontended
/// lock, a try-lock, a notify): one thread-local load.
#[inline(always)]
pub(crate) fn check_std(what: &'static str) {
    if EXECUTION.get() != 0 {
        std_inside_explorer(what);
    }
}

/// Before a std-backed operation that blocks the OS thread (a contended lock, a wait,
/// a join): also catches foreign shuttle runners.
#[inline]
pub(crate) fn check_std_blocking(what: &'static str) {
    if in_explorer() {
        std_inside_explorer(what);
    }
}

/// Before an operation on a shuttle-backed primitive created in execution `exec`.
#[inline]
pub(crate) fn check_shuttle(exec: u64, what: &'static str) {
    let now = EXECUTION.get();
    if now != exec || (exec == FOREIGN && !foreign_execution()) {
        shuttle_outside_its_execution(what, exec, now);
    }
}

#[cold]
#[inline(never)]
fn std_inside_explorer(what: &'static str) -> ! {
    panic!(
        "svmkit::sync: a {what} created outside a schedule exploration was used inside one; \
         it is std's, so its operations are no scheduling points and blocking on it would \
         hang the explorer. Create the model's objects inside the explored closure (keep \
         bookkeeping shared across schedules in std::sync types or atomics)"
    );
}

#[cold]
#[inline(never)]
fn shuttle_outside_its_execution(what: &'static str, exec: u64, now: u64) -> ! {
    let place = if now == 0 && (exec == FOREIGN || !foreign_execution()) {
        "outside any exploration"
    } else {
        "in another execution (schedule) than the one that created it"
    };
    panic!(
        "svmkit::sync: a {what} created inside a schedule exploration was used {place}; \
         shuttle's primitives only work inside the execution that created them, so model \
         objects must not escape the explored closure"
    );
}
