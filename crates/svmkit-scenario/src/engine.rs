//! Runs a scenario on one deterministic schedule and writes down what happened.
//!
//! # The schedule of `svmkit run`
//! Threads take turns in file order, one whole step per turn (`repeat` already
//! expanded): thread 1's first step, thread 2's first step, ..., thread 1's second
//! step, and so on; a thread with no steps left drops out. Between steps nothing holds
//! a lock except what the scenario holds on purpose (a `make_exclusive` or `gup` step's
//! `hold`) and what a flawed driver leaked. A step that would sleep on such a lock (a
//! CPU touch or GUP of a device-exclusive page whose folio is locked, a conversion of a
//! page whose folio is locked) is not started: the thread waits, its turn passes, and
//! the account says on what; when the lock is released the step runs at the thread's
//! next turn. When every thread that has steps left waits, the run ends in a deadlock
//! report (who waits for which folio, held by whom). A thread with `after = [...]`
//! takes its first turn only once those threads have finished. The explorer
//! interleaves inside steps; this schedule is the one a reader follows.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use svmkit::device::DevRights;
use svmkit::device::dmirror::{Dmirror, DmirrorIoctl, HmmDmirrorCmd};
use svmkit::device::svm_atomic::SvmAtomic;
use svmkit::mm::mmu_notifier::{NotifierCallKind, RecordingNotifier};
use svmkit::mm::{ExclusiveFolio, GupFlags, MapFlags, MmUser, Pte};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Pfn, Profile, System, SystemConfig, VirtAddr};

use crate::ast::*;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run under this profile instead of the file's.
    pub profile: Option<Profile>,
    /// How long one step may take before the run is declared hung (a step of the model
    /// takes microseconds; only a sleep on a lock that is never released lasts).
    pub step_timeout: std::time::Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            profile: None,
            step_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// One step as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// Turn number (1-based).
    pub turn: usize,
    /// The thread.
    pub thread: String,
    /// Line of the step in the file.
    pub line: usize,
    /// The step as written, resolved (`write buf+0x10 (0x40000010) = 1`).
    pub step: String,
    /// What it returned (`ok`, `= 5`, `EBUSY`), or what it waits for.
    pub result: String,
    /// Whether the thread waited instead of running the step.
    pub waited: bool,
    /// The PTE at the step's address before and after (decoded), when it has one.
    pub pte: Option<(String, String)>,
    /// Notifier events the step caused, in order.
    pub events: Vec<String>,
    /// Device entries at the step's address after the step (`gpu: rwa`).
    pub devices: Vec<String>,
    /// The expectation it failed, if any.
    pub failed: Option<String>,
    /// The step's note.
    pub note: Option<String>,
    /// The step's `id`, if it has one.
    pub id: Option<String>,
}

/// One end-of-run check.
#[derive(Debug, Clone, Serialize)]
pub struct EndCheck {
    /// What was checked.
    pub what: String,
    /// Whether it held.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// Every expectation held.
    Pass,
    /// An expectation did not hold.
    Fail,
    /// Threads waited for each other (or a step never returned).
    Deadlock,
}

impl RunOutcome {
    /// `pass`, `fail` or `deadlock`, as scenario files name it.
    pub fn name(self) -> &'static str {
        match self {
            RunOutcome::Pass => "pass",
            RunOutcome::Fail => "fail",
            RunOutcome::Deadlock => "deadlock",
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The scenario's name.
    pub scenario: String,
    /// The profile it ran under.
    pub profile: String,
    /// Every turn.
    pub steps: Vec<StepRecord>,
    /// A deadlock, if the run ended in one: every thread with steps left waits for a
    /// lock the scenario holds (found before the steps started), or a step never
    /// returned (found by the step timeout).
    pub deadlock: Option<String>,
    /// The end checks.
    pub end: Vec<EndCheck>,
    /// Whether every expectation held.
    pub passed: bool,
}

impl RunReport {
    /// Where the run first failed: the `id` of the first step whose expectation failed
    /// (`"?"` for a step without one), or `"end"` when only end checks failed.
    pub fn first_failure(&self) -> Option<String> {
        if let Some(s) = self.steps.iter().find(|s| s.failed.is_some()) {
            return Some(s.id.clone().unwrap_or_else(|| format!("line {}", s.line)));
        }
        self.end.iter().any(|c| !c.ok).then(|| "end".to_string())
    }

    /// Whether the run ended as `want` documents (outcome, and for a documented
    /// failure, where it first failed).
    pub fn ends_as(&self, want: &EraOutcome) -> bool {
        self.outcome() == want.outcome
            && want
                .fails_at
                .as_ref()
                .is_none_or(|f| self.first_failure().as_ref() == Some(f))
    }

    /// How the run ended: every expectation held, one did not, or it deadlocked.
    pub fn outcome(&self) -> RunOutcome {
        if self.deadlock.is_some() {
            RunOutcome::Deadlock
        } else if self.passed {
            RunOutcome::Pass
        } else {
            RunOutcome::Fail
        }
    }

    /// The step-by-step account as text.
    pub fn account(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario {} under {}", self.scenario, self.profile);
        for s in &self.steps {
            let mark = if s.failed.is_some() {
                "FAIL"
            } else if s.waited {
                "wait"
            } else {
                "  ok"
            };
            let _ = writeln!(
                out,
                "{mark} [{:>3}] {:<8} {} -> {}  (line {})",
                s.turn, s.thread, s.step, s.result, s.line
            );
            if let Some(n) = &s.note {
                let _ = writeln!(out, "             # {n}");
            }
            if let Some((a, b)) = &s.pte
                && a != b
            {
                let _ = writeln!(out, "             pte: {a} -> {b}");
            }
            for e in &s.events {
                let _ = writeln!(out, "             notifier: {e}");
            }
            for d in &s.devices {
                let _ = writeln!(out, "             device: {d}");
            }
            if let Some(f) = &s.failed {
                let _ = writeln!(out, "             expected {f}");
            }
        }
        if let Some(d) = &self.deadlock {
            let _ = writeln!(out, "FAIL deadlock: {d}");
        }
        for c in &self.end {
            let _ = writeln!(
                out,
                "{} end: {}: {}",
                if c.ok { "  ok" } else { "FAIL" },
                c.what,
                c.detail
            );
        }
        let _ = writeln!(
            out,
            "{}",
            if self.passed {
                "PASS: every expectation held"
            } else {
                "FAIL: an expectation did not hold"
            }
        );
        out
    }
}

/// What a thread holds across steps.
enum Held {
    Exclusive(ExclusiveFolio),
    Pages { pfns: Vec<Pfn>, pin: bool },
}

enum Dev {
    Dmirror(Dmirror),
    Svm(SvmAtomic),
}

impl Dev {
    fn device(&self) -> &Arc<svmkit::device::Device> {
        match self {
            Dev::Dmirror(d) => d.device(),
            Dev::Svm(s) => s.device(),
        }
    }
}

struct World<'a> {
    sc: &'a Scenario,
    sys: Arc<System>,
    /// Processes by index; `None` before a fork created it or after it exited.
    procs: Vec<Option<MmUser>>,
    recorders: Vec<Option<Arc<RecordingNotifier>>>,
    /// Mapping start addresses, once mapped.
    map_at: Vec<Option<u64>>,
    devs: Vec<Option<Dev>>,
    /// Guards held: (thread, name) → what.
    held: BTreeMap<(usize, String), Held>,
    tasks: Vec<Task>,
}

/// The line of a byte offset.
fn line_of(src: &str, off: usize) -> usize {
    src.get(..off.min(src.len()))
        .map_or(1, |s| s.matches('\n').count() + 1)
}

/// What maps an address: a PTE, or a huge PMD over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Pte(Pte),
    HugePmd(svmkit::mm::PresentPte),
}

fn entry_text(e: Entry) -> String {
    match e {
        Entry::Pte(p) => pte_text(p),
        Entry::HugePmd(p) => format!(
            "huge pmd pfn {:#x} {}",
            p.pfn.raw(),
            if p.is_write() { "rw" } else { "ro" }
        ),
    }
}

fn entry_is(e: Entry, k: PteKind) -> bool {
    match e {
        Entry::Pte(p) => pte_is(p, k),
        Entry::HugePmd(p) => match k {
            PteKind::HugePmd | PteKind::Present => true,
            PteKind::PresentWritable => p.is_write(),
            PteKind::PresentReadOnly => !p.is_write(),
            _ => false,
        },
    }
}

fn pte_text(p: Pte) -> String {
    match p {
        Pte::None => "none".into(),
        Pte::Present(p) => format!(
            "present pfn {:#x} {}{}",
            p.pfn.raw(),
            if p.is_write() { "rw" } else { "ro" },
            if p.is_dirty() { " dirty" } else { "" }
        ),
        Pte::Swap(s) if s.is_device_exclusive() => {
            format!("device-exclusive pfn {:#x}", s.pfn().map_or(0, |p| p.raw()))
        }
        Pte::Swap(s) if s.is_migration() => {
            format!("migration pfn {:#x}", s.pfn().map_or(0, |p| p.raw()))
        }
        Pte::Swap(s) => format!("swap slot {}", s.offset),
    }
}

fn pte_is(p: Pte, k: PteKind) -> bool {
    match (k, p) {
        (PteKind::None, Pte::None) => true,
        (PteKind::Present, Pte::Present(_)) => true,
        (PteKind::PresentWritable, Pte::Present(p)) => p.is_write(),
        (PteKind::PresentReadOnly, Pte::Present(p)) => !p.is_write(),
        (PteKind::DeviceExclusive, Pte::Swap(s)) => s.is_device_exclusive(),
        (PteKind::Migration, Pte::Swap(s)) => s.is_migration(),
        (PteKind::Swap, Pte::Swap(s)) => !s.is_device_exclusive() && !s.is_migration(),
        _ => false,
    }
}

fn rights_text(r: DevRights) -> String {
    let mut s = String::new();
    if r.contains(DevRights::READ) {
        s.push('r');
    }
    if r.contains(DevRights::WRITE) {
        s.push('w');
    }
    if r.contains(DevRights::ATOMIC) {
        s.push('a');
    }
    s
}

/// Why a step failed: an errno, a signal a CPU access raised, or a process that is not
/// there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepError {
    /// The call failed with this errno.
    Errno(Errno),
    /// A CPU access raised SIGSEGV (no VMA, or the VMA forbids it).
    Sigsegv,
    /// A CPU access raised SIGBUS.
    Sigbus,
    /// The step names a process that does not exist (exited, or not forked yet).
    NoProcess,
}

impl StepError {
    /// How a scenario file names it (`expect_err = "..."`).
    pub fn name(self) -> &'static str {
        match self {
            StepError::Errno(e) => e.name(),
            StepError::Sigsegv => "SIGSEGV",
            StepError::Sigbus => "SIGBUS",
            StepError::NoProcess => "ESRCH",
        }
    }
}

impl From<Errno> for StepError {
    fn from(e: Errno) -> Self {
        StepError::Errno(e)
    }
}

/// A step's result: a value, or a failure, or nothing.
type StepResult = Result<Option<u64>, StepError>;

impl World<'_> {
    fn thread_process(&self, t: usize) -> usize {
        match self.sc.threads[t].actor {
            Actor::Process(p) => p,
            Actor::Device(d) => self.sc.devices[d].process,
        }
    }

    fn resolve(&self, a: &Addr) -> Option<u64> {
        match a.map {
            None => Some(a.offset),
            Some(m) => self.map_at[m].map(|base| base.wrapping_add(a.offset)),
        }
    }

    fn entry(&self, p: usize, addr: u64) -> Entry {
        if let (Some(mm), Ok(va)) = (&self.procs[p], VirtAddr::try_new(addr))
            && let svmkit::mm::Pmd::Huge(h) = mm.pmd_get_lockless(va)
        {
            return Entry::HugePmd(h);
        }
        Entry::Pte(self.pte(p, addr))
    }

    fn pte(&self, p: usize, addr: u64) -> Pte {
        match (&self.procs[p], VirtAddr::try_new(addr)) {
            (Some(mm), Ok(va)) => mm.pte_get_lockless(va.page_align_down()),
            _ => Pte::None,
        }
    }

    /// The folio a locking step on `addr` would lock, if it is locked now (by a held
    /// guard or a leak): what the thread would sleep on.
    fn would_block(&self, t: usize, step: &Step) -> Option<String> {
        let p = self.thread_process(t);
        let (at, pages, locks_present) = match &step.op {
            Op::Read { at } | Op::Write { at, .. } | Op::FetchAdd { at, .. } => (at, 1, false),
            Op::Gup { at, pages, .. } => (at, *pages, false),
            Op::MakeExclusive { at, .. } | Op::AtomicAdd { at, .. } => (at, 1, true),
            Op::Dmirror { cmd, at, pages, .. } => {
                (at, *pages, matches!(cmd, DmirrorCmd::Exclusive))
            }
            _ => return None,
        };
        let start = self.resolve(at)? & !(PAGE_SIZE - 1);
        let mem = self.sys.mem();
        for i in 0..pages.min(4096) {
            let addr = start.wrapping_add(i * PAGE_SIZE);
            let pfn = match self.pte(p, addr) {
                Pte::Swap(s) if s.is_device_exclusive() => s.pfn(),
                Pte::Present(pp) if locks_present => Some(pp.pfn),
                _ => None,
            };
            let Some(pfn) = pfn else { continue };
            let Ok(folio) = mem.page_folio(pfn) else {
                continue;
            };
            if mem.folio_test_locked(folio) {
                let holder = self
                    .held
                    .iter()
                    .find(|(_, h)| matches!(h, Held::Exclusive(g) if g.folio() == folio))
                    .map(|((th, name), _)| {
                        format!("guard `{name}` of thread {}", self.sc.threads[*th].name)
                    })
                    .unwrap_or_else(|| "nobody the scenario knows (a leaked lock)".into());
                return Some(format!(
                    "the lock of folio {:#x} (page {addr:#x}), held by {holder}",
                    folio.head().raw()
                ));
            }
        }
        None
    }

    fn describe(&self, op: &Op) -> String {
        let a = |a: &Addr| match self.resolve(a) {
            Some(v) if a.map.is_some() => format!("{} ({v:#x})", a.text),
            _ => a.text.clone(),
        };
        match op {
            Op::Read { at } => format!("read {}", a(at)),
            Op::Write { at, value } => format!("write {} = {value}", a(at)),
            Op::FetchAdd { at, value } => format!("fetch_add {} += {value}", a(at)),
            Op::Mmap { map } => format!("mmap {}", self.sc.maps[*map].name),
            Op::Munmap { at, len } => format!("munmap {} len {len:#x}", a(at)),
            Op::Mprotect { at, len, prot } => format!("mprotect {} len {len:#x} {prot:?}", a(at)),
            Op::Madvise { at, len, advice } => format!("madvise {} len {len:#x} {advice:?}", a(at)),
            Op::Fork { child } => format!("fork -> {}", self.sc.processes[*child].name),
            Op::Exit { process } => format!("exit {}", self.sc.processes[*process].name),
            Op::ClearSoftDirty => "clear_refs soft-dirty".into(),
            Op::UffdWp { at, len, protect } => format!("uffd_wp {} len {len:#x} {protect}", a(at)),
            Op::MakeExclusive { at, hold } => format!(
                "make_device_exclusive {}{}",
                a(at),
                hold.as_ref()
                    .map_or(String::new(), |h| format!(" hold {h}"))
            ),
            Op::MakeExclusiveRange { at, pages } => {
                format!("make_device_exclusive_range {} pages {pages}", a(at))
            }
            Op::Release { guard } => format!("release {guard}"),
            Op::Gup {
                at,
                pages,
                pin,
                write,
                hold,
            } => format!(
                "{} {} pages {pages}{} hold {hold}",
                if *pin {
                    "pin_user_pages"
                } else {
                    "get_user_pages"
                },
                a(at),
                if *write { " write" } else { "" }
            ),
            Op::Unpin { hold } => format!("unpin {hold}"),
            Op::AtomicAdd { at, value } => format!("device atomic {} += {value}", a(at)),
            Op::Dmirror {
                cmd,
                at,
                pages,
                value,
            } => format!(
                "dmirror {} {} pages {pages}{}",
                match cmd {
                    DmirrorCmd::Read => "READ",
                    DmirrorCmd::Write => "WRITE",
                    DmirrorCmd::Exclusive => "EXCLUSIVE",
                    DmirrorCmd::CheckExclusive => "CHECK_EXCLUSIVE",
                },
                a(at),
                if matches!(cmd, DmirrorCmd::Write) {
                    format!(" = {value}")
                } else {
                    String::new()
                }
            ),
            Op::Reclaim { pages } => format!("reclaim up to {pages} pages"),
            Op::ReclaimFolio { at } => format!("reclaim folio at {}", a(at)),
            Op::Migrate { at } => format!("migrate folio at {}", a(at)),
        }
    }

    fn mm(&self, p: usize) -> Result<&MmUser, StepError> {
        self.procs[p].as_ref().ok_or(StepError::NoProcess)
    }

    fn folio_at(&self, p: usize, addr: u64) -> Result<svmkit::mm::Folio, StepError> {
        let mm = self.mm(p)?;
        let va = VirtAddr::try_new(addr).map_err(|_| Errno::EFAULT)?;
        let pfn = match mm.pte_get_lockless(va.page_align_down()) {
            Pte::Present(p) => p.pfn,
            Pte::Swap(s) if s.pfn().is_some() => s.pfn().ok_or(Errno::EFAULT)?,
            _ => mm.translate(va).ok_or(Errno::EFAULT)?,
        };
        Ok(self.sys.mem().page_folio(pfn)?)
    }

    fn map(&mut self, m: usize) -> Result<u64, StepError> {
        let map = &self.sc.maps[m];
        let mm = self.mm(map.process)?.clone();
        let mut flags = MapFlags::ANONYMOUS
            | if map.shared {
                MapFlags::SHARED
            } else {
                MapFlags::PRIVATE
            };
        if map.at.is_some() {
            flags |= MapFlags::FIXED;
        }
        let addr = mm
            .mmap(map.at.unwrap_or(0), map.len, map.prot, flags)?
            .raw();
        for a in &map.advice {
            mm.madvise(addr, map.len, *a)?;
        }
        self.map_at[m] = Some(addr);
        Ok(addr)
    }

    fn run_step(&mut self, t: usize, step: &Step) -> StepResult {
        let p = self.thread_process(t);
        let task = &self.tasks[t];
        let addr = |w: &World<'_>, a: &Addr| w.resolve(a).ok_or(StepError::Errno(Errno::EFAULT));
        let cpu = |r: Result<u64, svmkit::FaultError>| -> StepResult {
            r.map(Some).map_err(|e| match e.kind {
                svmkit::FaultKind::Unmapped | svmkit::FaultKind::Protection => StepError::Sigsegv,
                svmkit::FaultKind::Bus => StepError::Sigbus,
                svmkit::FaultKind::OutOfMemory => StepError::Errno(Errno::ENOMEM),
                svmkit::FaultKind::Misaligned => StepError::Errno(Errno::EINVAL),
            })
        };
        let owner = match self.sc.threads[t].actor {
            Actor::Device(d) => self.devs[d].as_ref().map(|d| d.device().owner()),
            Actor::Process(_) => None,
        };
        match &step.op {
            Op::Read { at } => cpu(self.mm(p)?.read_u64(addr(self, at)?)),
            Op::Write { at, value } => {
                cpu(self.mm(p)?.write_u64(addr(self, at)?, *value).map(|()| 0)).map(|_| None)
            }
            Op::FetchAdd { at, value } => cpu(self.mm(p)?.fetch_add_u64(addr(self, at)?, *value)),
            Op::Mmap { map } => self.map(*map).map(Some),
            Op::Munmap { at, len } => {
                Ok(self.mm(p)?.munmap(addr(self, at)?, *len).map(|()| None)?)
            }
            Op::Mprotect { at, len, prot } => Ok(self
                .mm(p)?
                .mprotect(addr(self, at)?, *len, *prot)
                .map(|()| None)?),
            Op::Madvise { at, len, advice } => Ok(self
                .mm(p)?
                .madvise(addr(self, at)?, *len, *advice)
                .map(|()| None)?),
            Op::Fork { child } => {
                let parent = self.mm(p)?.clone();
                let c = self.sys.fork(&parent)?;
                let rec = RecordingNotifier::passive();
                c.mmu_notifier_register(rec.clone())?;
                self.procs[*child] = Some(c);
                self.recorders[*child] = Some(rec);
                Ok(None)
            }
            Op::Exit { process } => {
                let mm = self.procs[*process].take().ok_or(StepError::NoProcess)?;
                drop(mm);
                Ok(None)
            }
            Op::ClearSoftDirty => {
                self.mm(p)?.clear_refs_soft_dirty();
                Ok(None)
            }
            Op::UffdWp { at, len, protect } => Ok(self
                .mm(p)?
                .uffd_writeprotect(addr(self, at)?, *len, *protect)
                .map(|()| None)?),
            Op::MakeExclusive { at, hold } => {
                let a = addr(self, at)?;
                let mm = self.mm(p)?.clone();
                let g = {
                    let mut guard = mm.mmap_read_lock();
                    mm.make_device_exclusive(&mut guard, a, owner, task)?
                };
                let page = g.page().raw();
                match hold {
                    Some(h) => {
                        self.held.insert((t, h.clone()), Held::Exclusive(g));
                    }
                    None => drop(g),
                }
                Ok(Some(page))
            }
            Op::MakeExclusiveRange { at, pages } => {
                let a = addr(self, at)?;
                let mm = self.mm(p)?.clone();
                let got = {
                    let mut guard = mm.mmap_read_lock();
                    mm.make_device_exclusive_range(
                        &mut guard,
                        a,
                        a.saturating_add(pages * PAGE_SIZE),
                        owner,
                        task,
                    )?
                };
                Ok(Some(got.iter().filter(|g| g.is_some()).count() as u64))
            }
            Op::Release { guard } => match self.held.remove(&(t, guard.clone())) {
                Some(h) => {
                    self.release(h);
                    Ok(None)
                }
                None => Err(StepError::Errno(Errno::ENOENT)),
            },
            Op::Gup {
                at,
                pages,
                pin,
                write,
                hold,
            } => {
                let a = addr(self, at)?;
                let mm = self.mm(p)?.clone();
                let flags = if *write {
                    GupFlags::WRITE
                } else {
                    GupFlags::empty()
                };
                let pfns = {
                    let mut guard = mm.mmap_read_lock();
                    if *pin {
                        mm.pin_user_pages(&mut guard, a, *pages, flags)?
                    } else {
                        mm.get_user_pages(&mut guard, a, *pages, flags | GupFlags::GET)?
                    }
                };
                let n = pfns.len() as u64;
                self.held
                    .insert((t, hold.clone()), Held::Pages { pfns, pin: *pin });
                Ok(Some(n))
            }
            Op::Unpin { hold } => match self.held.remove(&(t, hold.clone())) {
                Some(h) => {
                    self.release(h);
                    Ok(None)
                }
                None => Err(StepError::Errno(Errno::ENOENT)),
            },
            Op::AtomicAdd { at, value } => {
                let a = addr(self, at)?;
                let Actor::Device(d) = self.sc.threads[t].actor else {
                    return Err(Errno::EINVAL.into());
                };
                match self.devs[d].as_ref() {
                    Some(Dev::Svm(s)) => Ok(s.atomic_fetch_add(task, a, *value).map(Some)?),
                    _ => Err(Errno::EINVAL.into()),
                }
            }
            Op::Dmirror {
                cmd,
                at,
                pages,
                value,
            } => {
                let a = addr(self, at)?;
                let Actor::Device(d) = self.sc.threads[t].actor else {
                    return Err(Errno::EINVAL.into());
                };
                let Some(Dev::Dmirror(dm)) = self.devs[d].as_ref() else {
                    return Err(Errno::EINVAL.into());
                };
                let bytes =
                    usize::try_from(pages.saturating_mul(PAGE_SIZE)).map_err(|_| Errno::EINVAL)?;
                if bytes > 64 << 20 {
                    return Err(Errno::EINVAL.into());
                }
                let mut buf = vec![0u8; bytes];
                if matches!(cmd, DmirrorCmd::Write) {
                    for w in buf.chunks_exact_mut(8) {
                        w.copy_from_slice(&value.to_le_bytes());
                    }
                }
                let mut c = HmmDmirrorCmd {
                    addr: a,
                    npages: *pages,
                    cpages: 0,
                    faults: 0,
                };
                let req = match cmd {
                    DmirrorCmd::Read => DmirrorIoctl::Read,
                    DmirrorCmd::Write => DmirrorIoctl::Write,
                    DmirrorCmd::Exclusive => DmirrorIoctl::Exclusive,
                    DmirrorCmd::CheckExclusive => DmirrorIoctl::CheckExclusive,
                };
                dm.ioctl(task, req, &mut c, &mut buf)?;
                // READ and EXCLUSIVE return the first word read; the others the pages.
                Ok(Some(match cmd {
                    DmirrorCmd::Read | DmirrorCmd::Exclusive => {
                        u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]))
                    }
                    _ => c.cpages,
                }))
            }
            Op::Reclaim { pages } => Ok(Some(self.mm(p)?.reclaim_mm(*pages as usize) as u64)),
            Op::ReclaimFolio { at } => {
                let f = self.folio_at(p, addr(self, at)?)?;
                Ok(self.sys.mem().reclaim_folio(f).map(|()| None)?)
            }
            Op::Migrate { at } => {
                let f = self.folio_at(p, addr(self, at)?)?;
                Ok(self
                    .sys
                    .mem()
                    .migrate_folio(f)
                    .map(|n| Some(n.head().raw()))?)
            }
        }
    }

    fn release(&self, h: Held) {
        match h {
            Held::Exclusive(g) => drop(g),
            Held::Pages { pfns, pin } => {
                if pin {
                    self.sys.mem().unpin_user_pages(&pfns);
                } else {
                    for p in pfns {
                        self.sys.mem().put_page(p);
                    }
                }
            }
        }
    }

    fn step_addr(&self, op: &Op) -> Option<u64> {
        match op {
            Op::Read { at }
            | Op::Write { at, .. }
            | Op::FetchAdd { at, .. }
            | Op::Munmap { at, .. }
            | Op::Mprotect { at, .. }
            | Op::Madvise { at, .. }
            | Op::UffdWp { at, .. }
            | Op::MakeExclusive { at, .. }
            | Op::MakeExclusiveRange { at, .. }
            | Op::Gup { at, .. }
            | Op::AtomicAdd { at, .. }
            | Op::Dmirror { at, .. }
            | Op::ReclaimFolio { at }
            | Op::Migrate { at } => self.resolve(at),
            Op::Mmap { map } => self.map_at[*map],
            _ => None,
        }
    }

    fn owner_name(&self, raw: u64) -> String {
        self.sc
            .devices
            .iter()
            .zip(&self.devs)
            .find(|(_, d)| d.as_ref().is_some_and(|d| d.device().owner().raw() == raw))
            .map_or_else(|| format!("{raw:#x}"), |(d, _)| d.name.clone())
    }

    fn take_events(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, r) in self.recorders.iter().enumerate() {
            let Some(r) = r else { continue };
            for c in r.take() {
                if c.kind != NotifierCallKind::Start && c.kind != NotifierCallKind::Release {
                    continue;
                }
                let owner = c.owner.map_or(String::new(), |o| {
                    format!(" owner {}", self.owner_name(o.raw()))
                });
                out.push(format!(
                    "{} {} [{:#x}, {:#x}){owner}",
                    self.sc.processes[i].name,
                    c.event.linux_name(),
                    c.start,
                    c.end
                ));
            }
        }
        out
    }
}

/// Whether `events` contain the expected ones in order: each expectation is a set of
/// words (an event name may drop its `MMU_NOTIFY_` prefix; case does not matter) that
/// one event line must all contain, the next expectation matching a later event. An
/// empty list expects no event at all.
fn events_match(want: &[String], events: &[String]) -> Result<(), String> {
    if want.is_empty() {
        return if events.is_empty() {
            Ok(())
        } else {
            Err(format!("no notifier event, got {}", events.join("; ")))
        };
    }
    let words = |e: &str| -> Vec<String> {
        e.split_whitespace()
            .map(|w| w.trim_start_matches("MMU_NOTIFY_").to_ascii_lowercase())
            .collect()
    };
    let mut it = events.iter();
    for w in want {
        let need = words(w);
        if !it.any(|e| {
            let have = words(e);
            need.iter().all(|n| have.contains(n))
        }) {
            return Err(format!(
                "a notifier event `{w}` (in order), got {}",
                if events.is_empty() {
                    "none".to_string()
                } else {
                    events.join("; ")
                }
            ));
        }
    }
    Ok(())
}

fn expect_text(e: &Outcome) -> String {
    match e {
        Outcome::Ok(Some(v)) => format!("= {v}"),
        Outcome::Ok(None) => "success".into(),
        Outcome::Err(v) => v.iter().map(|e| e.name()).collect::<Vec<_>>().join(" or "),
        Outcome::Any => "anything".into(),
    }
}

/// A step's result as the account prints it: addresses and frame numbers in hex.
fn result_text_of(op: &Op, r: &StepResult) -> String {
    match (op, r) {
        (Op::Mmap { .. } | Op::MakeExclusive { .. } | Op::Migrate { .. }, Ok(Some(v))) => {
            format!("= {v:#x}")
        }
        _ => result_text(r),
    }
}

fn result_text(r: &StepResult) -> String {
    match r {
        Ok(Some(v)) => format!("= {v}"),
        Ok(None) => "ok".into(),
        Err(e) => e.name().into(),
    }
}

fn outcome_holds(e: &Outcome, r: &StepResult) -> bool {
    match (e, r) {
        (Outcome::Any, _) => true,
        (Outcome::Ok(None), Ok(_)) => true,
        (Outcome::Ok(Some(v)), Ok(Some(got))) => v == got,
        (Outcome::Err(list), Err(e)) => list.contains(e),
        _ => false,
    }
}

/// What the watchdog can see of a run in progress.
#[derive(Default)]
struct Progress {
    steps: Vec<StepRecord>,
    current: Option<(String, String, usize)>,
    /// When the current step started.
    since: Option<std::time::Instant>,
    sys: Option<Arc<System>>,
    scenario: String,
    profile: String,
}

/// Runs `sc` on the deterministic schedule described in the module docs. `source` is
/// the file's text (for line numbers in the account).
///
/// The run happens on a thread of its own, watched: a step that does not return
/// within `opts.step_timeout` (it sleeps on a lock nobody will release, as a flawed
/// driver's self-deadlock does) ends the run with a deadlock report naming the step
/// and every locked folio; that thread and the model it holds are then abandoned (they
/// cannot be torn down while asleep).
pub fn run(sc: &Scenario, source: &str, opts: &RunOptions) -> Result<RunReport, StepError> {
    let progress = Arc::new(std::sync::Mutex::new(Progress::default()));
    let (tx, rx) = std::sync::mpsc::channel();
    let (sc2, src2, opts2, prog2) = (
        sc.clone(),
        source.to_string(),
        opts.clone(),
        Arc::clone(&progress),
    );
    let handle = std::thread::Builder::new()
        .name(format!("scenario {}", sc.name))
        .spawn(move || {
            let r = run_on(&sc2, &src2, &opts2, &prog2);
            let _ = tx.send(r);
        })
        .map_err(|_| StepError::Errno(Errno::ENOMEM))?;
    let tick = opts.step_timeout.min(std::time::Duration::from_millis(100));
    loop {
        match rx.recv_timeout(tick) {
            Ok(r) => return r,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // The run panicked: a bug of the model or the engine, not the
                // scenario's; pass it on rather than hide it.
                match handle.join() {
                    Err(payload) => std::panic::resume_unwind(payload),
                    Ok(()) => return Err(StepError::Errno(Errno::EFAULT)),
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let p = progress.lock().unwrap_or_else(|e| e.into_inner());
                if p.since.is_some_and(|t| t.elapsed() >= opts.step_timeout) {
                    return Ok(hung_report(&p, opts.step_timeout));
                }
            }
        }
    }
}

/// The report of a run whose current step never returned.
fn hung_report(p: &Progress, timeout: std::time::Duration) -> RunReport {
    let (thread, step, line) = p
        .current
        .clone()
        .unwrap_or_else(|| ("?".into(), "?".into(), 0));
    let mut locked = Vec::new();
    if let Some(sys) = &p.sys {
        let mem = sys.mem();
        let frames = mem.nr_frames();
        for raw in 0..frames {
            let pfn = Pfn::new(raw);
            if let Ok(f) = mem.page_folio(pfn)
                && f.head() == pfn
                && !mem.is_free_frame(pfn)
                && mem.folio_test_locked(f)
            {
                locked.push(format!("{:#x}", f.head().raw()));
            }
        }
    }
    let mut steps = p.steps.clone();
    steps.push(StepRecord {
        turn: steps.last().map_or(1, |s| s.turn + 1),
        thread: thread.clone(),
        line,
        step: step.clone(),
        result: format!("did not return within {} s", timeout.as_secs_f64()),
        waited: false,
        pte: None,
        events: Vec::new(),
        devices: Vec::new(),
        failed: Some("the step to return".into()),
        note: None,
        id: None,
    });
    RunReport {
        scenario: p.scenario.clone(),
        profile: p.profile.clone(),
        steps,
        deadlock: Some(format!(
            "thread {thread} sleeps in `{step}` (line {line}) and nothing will wake it; \
             folios locked now: {}",
            if locked.is_empty() {
                "none".to_string()
            } else {
                locked.join(", ")
            }
        )),
        end: Vec::new(),
        passed: false,
    }
}

fn run_on(
    sc: &Scenario,
    source: &str,
    opts: &RunOptions,
    progress: &std::sync::Mutex<Progress>,
) -> Result<RunReport, StepError> {
    let profile = opts.profile.unwrap_or(sc.profile);
    let mut config = SystemConfig::with_frames(sc.frames);
    config.profile = profile;
    let sys = System::new(config)?;
    if let Some(slots) = sc.swap {
        sys.mem().swapon(slots.max(1))?;
    }
    if let Some(m) = sc.thp {
        sys.mem().set_thp_mode(m);
    }
    {
        let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
        p.sys = Some(sys.clone());
        p.scenario = sc.name.clone();
        p.profile = profile.name.to_string();
    }
    let mut w = World {
        sc,
        sys: sys.clone(),
        procs: vec![None; sc.processes.len()],
        recorders: vec![None; sc.processes.len()],
        map_at: vec![None; sc.maps.len()],
        devs: Vec::new(),
        held: BTreeMap::new(),
        tasks: sc
            .threads
            .iter()
            .map(|t| Task::new(t.name.clone()))
            .collect(),
    };
    for (i, p) in sc.processes.iter().enumerate() {
        if p.at_start {
            let mm = sys.create_mm()?;
            let rec = RecordingNotifier::passive();
            mm.mmu_notifier_register(rec.clone())?;
            w.procs[i] = Some(mm);
            w.recorders[i] = Some(rec);
        }
    }
    let mut report = RunReport {
        scenario: sc.name.clone(),
        profile: profile.name.to_string(),
        steps: Vec::new(),
        deadlock: None,
        end: Vec::new(),
        passed: true,
    };
    let mmap_steps: Vec<usize> = sc
        .threads
        .iter()
        .flat_map(|t| t.steps.iter())
        .filter_map(|s| match s.op {
            Op::Mmap { map } => Some(map),
            _ => None,
        })
        .collect();
    for m in 0..sc.maps.len() {
        if !mmap_steps.contains(&m)
            && let Err(e) = w.map(m)
        {
            report.end.push(EndCheck {
                what: format!("map {}", sc.maps[m].name),
                ok: false,
                detail: format!("setup mmap failed: {}", e.name()),
            });
            report.passed = false;
            return Ok(report);
        }
    }
    for d in &sc.devices {
        let mm = w.mm(d.process)?.clone();
        let dev = match &d.driver {
            Driver::Dmirror => Dev::Dmirror(Dmirror::open(&mm)?),
            Driver::SvmAtomic { flaws, max_passes } => {
                Dev::Svm(SvmAtomic::new(&mm, &d.name, *flaws, *max_passes)?)
            }
        };
        w.devs.push(Some(dev));
    }
    let _ = w.take_events();
    let mut pc = vec![0usize; sc.threads.len()];
    let mut turn = 0;
    loop {
        let mut progressed = false;
        let mut waiting = Vec::new();
        for t in 0..sc.threads.len() {
            let th = &sc.threads[t];
            let Some(step) = th.steps.get(pc[t]) else {
                continue;
            };
            let p = w.thread_process(t);
            let unfinished: Vec<&str> = th
                .after
                .iter()
                .filter(|&&j| pc[j] < sc.threads[j].steps.len())
                .map(|&j| sc.threads[j].name.as_str())
                .collect();
            let blocker = if !unfinished.is_empty() {
                Some(format!(
                    "thread {} to finish (after)",
                    unfinished.join(", ")
                ))
            } else if w.procs[p].is_none()
                && !sc.processes[p].at_start
                && !matches!(step.op, Op::Exit { .. })
                && !was_forked(&report, &sc.processes[p].name)
            {
                Some(format!("process {} (not forked yet)", sc.processes[p].name))
            } else {
                w.would_block(t, step)
            };
            turn += 1;
            if let Some(b) = blocker {
                waiting.push(format!("{} waits for {b}", th.name));
                // One wait record per stretch of waiting, not one per turn.
                let last_wait = report
                    .steps
                    .iter()
                    .rev()
                    .find(|s| s.thread == th.name)
                    .is_some_and(|s| s.waited);
                if !last_wait {
                    report.steps.push(StepRecord {
                        turn,
                        thread: th.name.clone(),
                        line: line_of(source, step.span.start),
                        step: w.describe(&step.op),
                        result: format!("waits for {b}"),
                        waited: true,
                        pte: None,
                        events: Vec::new(),
                        devices: Vec::new(),
                        failed: None,
                        note: None,
                        id: None,
                    });
                }
                continue;
            }
            progressed = true;
            {
                let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                p.current = Some((
                    th.name.clone(),
                    w.describe(&step.op),
                    line_of(source, step.span.start),
                ));
                p.since = Some(std::time::Instant::now());
                let known = p.steps.len();
                p.steps.extend_from_slice(&report.steps[known..]);
            }
            let a = w.step_addr(&step.op);
            let before = a.map(|a| w.entry(p, a));
            let text = w.describe(&step.op);
            let r = w.run_step(t, step);
            let after = a.map(|a| w.entry(p, a));
            let mut failed = None;
            if !outcome_holds(&step.expect, &r) {
                failed = Some(format!(
                    "{}, got {}",
                    expect_text(&step.expect),
                    result_text(&r)
                ));
            }
            if let (Some(k), Some(after)) = (step.expect_pte, after)
                && failed.is_none()
                && !entry_is(after, k)
            {
                failed = Some(format!("the PTE to be {k:?}, got {}", entry_text(after)));
            }
            if failed.is_none()
                && let Some(a) = a
            {
                for (d, want) in &step.expect_device {
                    let got = w.devs[*d]
                        .as_ref()
                        .and_then(|dev| dev.device().lock().get(a))
                        .map(|e| e.rights);
                    if got != *want {
                        failed = Some(format!(
                            "{}'s entry to be {}, got {}",
                            sc.devices[*d].name,
                            want.map_or("none".into(), rights_text),
                            got.map_or("none".into(), rights_text)
                        ));
                        break;
                    }
                }
            }
            let events = w.take_events();
            if failed.is_none()
                && let Some(want) = &step.expect_events
                && let Err(missing) = events_match(want, &events)
            {
                failed = Some(missing);
            }
            let devices = a.map_or_else(Vec::new, |a| {
                sc.devices
                    .iter()
                    .zip(&w.devs)
                    .filter_map(|(d, dev)| {
                        dev.as_ref()?.device().lock().get(a).map(|e| {
                            format!(
                                "{}: {} pfn {:#x}",
                                d.name,
                                rights_text(e.rights),
                                e.pfn.raw()
                            )
                        })
                    })
                    .collect()
            });
            if failed.is_some() {
                report.passed = false;
            }
            report.steps.push(StepRecord {
                turn,
                thread: th.name.clone(),
                line: line_of(source, step.span.start),
                step: text,
                result: result_text_of(&step.op, &r),
                waited: false,
                pte: before
                    .zip(after)
                    .map(|(b, a)| (entry_text(b), entry_text(a))),
                events,
                devices,
                failed,
                note: step.note.clone(),
                id: step.id.clone(),
            });
            pc[t] += 1;
        }
        if !progressed {
            if !waiting.is_empty() {
                report.deadlock = Some(waiting.join("; "));
                report.passed = false;
            }
            break;
        }
    }
    // The end: checker and values with everything still in place, then teardown.
    if sc.expect.checker && report.deadlock.is_none() {
        let extra = extra_refs(&w);
        let r = sys.check_with(&extra);
        report.end.push(EndCheck {
            what: "invariant checker".into(),
            ok: r.is_ok(),
            detail: r.map_or_else(|e| e.to_string().trim().to_string(), |()| "clean".into()),
        });
    }
    for (p, at, want, _) in &sc.expect.values {
        let got = match (&w.procs[*p], w.resolve(at)) {
            (Some(mm), Some(a)) => mm.read_u64(a).map_err(|e| e.to_string()),
            (None, _) => Err(format!("process {} does not exist", sc.processes[*p].name)),
            (_, None) => Err(format!("{} is not mapped", at.text)),
        };
        report.end.push(EndCheck {
            what: format!("{} reads {} = {want}", sc.processes[*p].name, at.text),
            ok: got.as_ref().is_ok_and(|g| g == want),
            detail: match got {
                Ok(g) => format!("read {g}"),
                Err(e) => e,
            },
        });
    }
    if report.deadlock.is_none() {
        let held: Vec<Held> = std::mem::take(&mut w.held).into_values().collect();
        for h in held {
            w.release(h);
        }
        w.devs.clear();
        w.procs.iter_mut().for_each(|p| *p = None);
        w.recorders.clear();
        if sc.expect.all_freed {
            let (free, usable) = (sys.mem().nr_free_pages(), sys.mem().nr_usable_pages());
            report.end.push(EndCheck {
                what: "every frame free after exit".into(),
                ok: free == usable,
                detail: format!("{free} of {usable} free"),
            });
        }
    } else {
        // A deadlocked run keeps its locks: tearing down would sleep on them.
        std::mem::forget(w.held);
        std::mem::forget(w.devs);
        std::mem::forget(w.procs);
    }
    if report.end.iter().any(|c| !c.ok) {
        report.passed = false;
    }
    Ok(report)
}

fn was_forked(report: &RunReport, name: &str) -> bool {
    report
        .steps
        .iter()
        .any(|s| !s.waited && s.step.ends_with(&format!("fork -> {name}")))
}

/// The references the scenario holds on purpose, for the checker: one per guard and
/// per GET; per PIN, `GUP_PIN_COUNTING_BIAS` on a small folio and one on a large one.
fn extra_refs(w: &World<'_>) -> svmkit::check::ExtraRefs {
    let mem = w.sys.mem();
    let mut extra = svmkit::check::ExtraRefs::default();
    for h in w.held.values() {
        match h {
            Held::Exclusive(g) => *extra.entry(g.folio()).or_default() += 1,
            Held::Pages { pfns, pin } => {
                for p in pfns {
                    let Ok(folio) = mem.page_folio(*p) else {
                        continue;
                    };
                    if mem.is_zero_pfn(folio.head()) {
                        continue;
                    }
                    let n = if *pin && folio.order() == 0 {
                        svmkit::mm::GUP_PIN_COUNTING_BIAS
                    } else {
                        1
                    };
                    *extra.entry(folio).or_default() += n;
                }
            }
        }
    }
    extra
}
