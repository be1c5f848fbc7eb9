//! Preemption-bounded depth-first search over schedules (Musuvathi and Qadeer, "Iterative
//! context bounding for systematic testing of multithreaded programs", PLDI 2007).
//!
//! Every scheduling decision has a *cost*: 0 for the choices a non-preemptive scheduler
//! could make, 1 for a deviation (see [`choice_cost`]). The search enumerates, depth
//! first, every schedule whose decisions cost at most the bound in all; with bound 0
//! that is every non-preemptive schedule.

use std::cell::Cell;
use std::rc::Rc;

use shuttle_engine::scheduler::data::DataSource;
use shuttle_engine::scheduler::{RandomDataSource, Schedule, Scheduler, Task, TaskId};

/// Whether `current` is among `runnable` and really runnable (not a blocked task offered
/// only for a spurious wake-up).
pub(super) fn current_runnable(runnable: &[&Task], current: Option<TaskId>) -> bool {
    current.is_some_and(|c| runnable.iter().any(|t| t.id() == c && t.runnable()))
}

/// Whether running `choice` next is a preemption in the sense of the failure statistics:
/// a switch away from a task that is still runnable and has not asked to yield.
#[inline]
pub(super) fn is_preemption(
    runnable: &[&Task],
    current: Option<TaskId>,
    is_yielding: bool,
    choice: TaskId,
) -> bool {
    !is_yielding && current.is_some_and(|c| c != choice) && current_runnable(runnable, current)
}

/// The cost the bounded search charges for running `task` next: 1 for a preemption
/// ([`is_preemption`]), for continuing a task that asked to yield while another could
/// run (so that a spin loop is explored for `bound` extra rounds at most, not forever),
/// and for a spurious wake-up of a blocked task; 0 otherwise.
fn choice_cost(
    runnable: &[&Task],
    current: Option<TaskId>,
    is_yielding: bool,
    task: &Task,
) -> usize {
    if !task.runnable() {
        return 1; // a spurious wake-up
    }
    let cur_runnable = current_runnable(runnable, current);
    if !cur_runnable {
        return 0;
    }
    let is_current = current == Some(task.id());
    let others = runnable
        .iter()
        .any(|t| t.runnable() && Some(t.id()) != current);
    match (is_yielding, is_current) {
        (false, false) => 1,
        (true, true) if others => 1,
        _ => 0,
    }
}

/// One scheduling decision of the current path: the choices open there (each with its
/// cost, cost-0 ones first) and which one the path takes.
#[derive(Debug)]
struct Level {
    choices: Vec<(TaskId, usize)>,
    index: usize,
}

/// The bounded depth-first scheduler. `exhausted` is set when the whole bounded space has
/// been covered.
#[derive(Debug)]
pub(super) struct BoundedDfs {
    bound: usize,
    max_iterations: usize,
    iterations: usize,
    levels: Vec<Level>,
    step: usize,
    spent: usize,
    seed: u64,
    data_source: RandomDataSource,
    exhausted: Rc<Cell<bool>>,
}

impl BoundedDfs {
    /// A search of at most `max_iterations` schedules, each of cost at most `bound`; the
    /// closure's random data is the same stream (from `seed`) in every schedule.
    pub(super) fn new(
        bound: usize,
        max_iterations: usize,
        seed: u64,
        exhausted: Rc<Cell<bool>>,
    ) -> Self {
        BoundedDfs {
            bound,
            max_iterations,
            iterations: 0,
            levels: Vec::new(),
            step: 0,
            spent: 0,
            seed,
            data_source: RandomDataSource::initialize(seed),
            exhausted,
        }
    }

    /// Moves the path to the next one in depth-first order; false when there is none.
    fn advance(&mut self) -> bool {
        while let Some(level) = self.levels.last_mut() {
            if level.index + 1 < level.choices.len() {
                level.index += 1;
                return true;
            }
            self.levels.pop();
        }
        false
    }
}

impl Scheduler for BoundedDfs {
    fn new_execution(&mut self) -> Option<Schedule> {
        if self.iterations > 0 && !self.advance() {
            self.exhausted.set(true);
            return None;
        }
        if self.iterations >= self.max_iterations {
            return None;
        }
        self.iterations += 1;
        self.step = 0;
        self.spent = 0;
        // The same random data in every execution, so that a path's prefix replays.
        self.data_source = RandomDataSource::initialize(self.seed);
        Some(Schedule::new(self.data_source.reinitialize()))
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> Option<TaskId> {
        let step = self.step;
        self.step += 1;
        if let Some(level) = self.levels.get(step) {
            let (task, cost) = level.choices[level.index];
            assert!(
                runnable.iter().any(|t| t.id() == task),
                "svmkit::check: the explored closure is not deterministic: the depth-first search \
                 replayed a schedule prefix and task {task:?} was not runnable at step {step} \
                 (runnable: {:?})",
                runnable.iter().map(|t| t.id()).collect::<Vec<_>>()
            );
            self.spent += cost;
            return Some(task);
        }
        let budget = self.bound - self.spent;
        let mut choices: Vec<(TaskId, usize)> = runnable
            .iter()
            .map(|t| (t.id(), choice_cost(runnable, current, is_yielding, t)))
            .filter(|&(_, cost)| cost <= budget)
            .collect();
        // Cost 0 first (among them the current task first), each group in task order.
        choices.sort_by_key(|&(id, cost)| (cost, Some(id) != current, usize::from(id)));
        // There is always a cost-0 choice: a runnable task if the current one is not, the
        // current one if it is and does not yield, another one if it yields.
        let (task, cost) = choices[0];
        debug_assert_eq!(cost, 0);
        self.levels.push(Level { choices, index: 0 });
        Some(task)
    }

    fn next_u64(&mut self) -> u64 {
        self.data_source.next_u64()
    }
}
