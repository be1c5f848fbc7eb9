//! What a scenario file says, checked and resolved: every name refers to something
//! declared, every number is in range, every address expression is well formed. The
//! spans point back into the file for reports.

use svmkit::Profile;
use svmkit::mm::Prot;

/// A byte range of the scenario file (for diagnostics and the account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span of `s` in toml-span's terms.
    pub(crate) fn of(s: toml_span::Span) -> Span {
        Span {
            start: s.start,
            end: s.end,
        }
    }
}

/// A parsed scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// `scenario.name`.
    pub name: String,
    /// The era (a preset with overrides).
    pub profile: Profile,
    /// `scenario.frames`: frames of physical memory.
    pub frames: u64,
    /// `scenario.swap`: slots of the swap device (none if absent).
    pub swap: Option<u64>,
    /// `scenario.thp`: the THP policy.
    pub thp: Option<svmkit::mm::ThpMode>,
    /// Processes created at the start, in file order.
    pub processes: Vec<Process>,
    /// Mappings made at the start, in file order.
    pub maps: Vec<Mapping>,
    /// Devices opened at the start, in file order.
    pub devices: Vec<Device>,
    /// Threads, in file order (the turn order of `svmkit run`).
    pub threads: Vec<Thread>,
    /// What must hold at the end.
    pub expect: EndExpect,
    /// How a run ends under each era the file names (`[outcomes]`), with the source of
    /// that expectation; absent: its own profile passes.
    pub outcomes: Vec<EraOutcome>,
    /// What `svmkit explore` finds (`[explore]`).
    pub explore: ExploreSpec,
    /// Where a real kernel is known to differ from the model (`[oracle]`).
    pub oracle: Vec<Divergence>,
    /// Where each line of the file starts, for [`Scenario::line_of`].
    pub lines: LineIndex,
}

/// The byte offset of each line's start in a source text: a line number in one binary
/// search (a step's line is part of every record an account prints).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineIndex(Vec<usize>);

impl LineIndex {
    /// The index of `source`.
    pub fn new(source: &str) -> LineIndex {
        LineIndex(
            std::iter::once(0)
                .chain(source.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        )
    }

    /// The 1-based line of byte `offset` (the last line for an offset past the end).
    pub fn line_of(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset).max(1)
    }
}

/// `[oracle] divergences`: one observable where the golden of a real kernel differs
/// from the model, on purpose and with its reason; the oracle comparison accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The kernel (`6.12`, `6.1`) or `all`.
    pub kernel: String,
    /// The `id` of the step, or `end`.
    pub step: String,
    /// Which observable: `result`, `pte`, `soft_dirty`, `faults`, `cpages`, `devices`, `value`,
    /// `rss`.
    pub field: String,
    /// Why they differ.
    pub reason: String,
}

/// `[explore]`: what exploring the file's schedules finds, per era.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExploreSpec {
    /// The budget (schedules) the outcomes are claimed for.
    pub schedules: Option<usize>,
    /// Scheduling points after which a schedule counts as a livelock, for files whose
    /// schedules are long by nature (a whole-buffer step over a thousand pages).
    pub max_steps: Option<usize>,
    /// Per era; an era not named here is expected to end as `[outcomes]` says (a file
    /// whose threads run one after another has one schedule's worth of interleaving).
    pub outcomes: Vec<EraOutcome>,
}

/// The documented outcome of a scenario under one era.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EraOutcome {
    /// The preset's name.
    pub profile: String,
    /// `pass`, `fail` or `deadlock`.
    pub outcome: crate::engine::RunOutcome,
    /// Where the expectation comes from (a kernel, a spec section, or `derived`).
    pub source: String,
    /// For `fail`: the `id` of the step whose expectation must be the first to fail
    /// (`end` for the end checks).
    pub fails_at: Option<String>,
    /// For an explored `fail` or `deadlock`: text the violation must contain.
    pub finds: Option<String>,
    /// For `deadlock`: the hung-task report must show a self-deadlock (a task asleep
    /// on a folio lock it leaked itself), `diagnosis = "self-deadlock"`.
    pub self_deadlock: bool,
}

impl Scenario {
    /// The 1-based line of byte `offset` of the file the scenario was parsed from.
    pub fn line_of(&self, offset: usize) -> usize {
        self.lines.line_of(offset)
    }

    /// The documented outcome under `profile` (by name), if the file gives one; a file
    /// without `[outcomes]` expects its own profile to pass.
    pub fn expected_outcome(&self, profile: &str) -> Option<&EraOutcome> {
        self.outcomes.iter().find(|o| o.profile == profile)
    }

    /// What exploring under `profile` must end with: `[explore.outcomes]`, else
    /// `[outcomes]`.
    pub fn expected_explore_outcome(&self, profile: &str) -> Option<&EraOutcome> {
        self.explore
            .outcomes
            .iter()
            .find(|o| o.profile == profile)
            .or_else(|| self.expected_outcome(profile))
    }
}

/// A process (an mm): declared by `[[process]]` (it exists from the start) or named
/// by a `fork` step (it exists once that step ran).
#[derive(Debug, Clone)]
pub struct Process {
    /// Its name.
    pub name: String,
    /// Whether it exists from the start (else a `fork` step creates it).
    pub at_start: bool,
    /// Where it was declared.
    pub span: Span,
}

/// A mapping made at the start.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Its name (used in address expressions).
    pub name: String,
    /// The process that maps it (index into [`Scenario::processes`]).
    pub process: usize,
    /// A fixed address, or chosen by the model.
    pub at: Option<u64>,
    /// Length in bytes (page-aligned up).
    pub len: u64,
    /// Protection.
    pub prot: Prot,
    /// `MAP_SHARED` anonymous memory instead of private.
    pub shared: bool,
    /// `MAP_HUGETLB`: 2 MiB hugetlb folios (private only).
    pub hugetlb: bool,
    /// madvise advice applied after the mmap.
    pub advice: Vec<svmkit::mm::Advice>,
    /// Where it was declared.
    pub span: Span,
}

/// Which driver a device runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// Linux's test driver (lib/test_hmm.c).
    Dmirror,
    /// The nouveau-style atomic fault driver, with its flaw switches and pass bound.
    SvmAtomic {
        /// Design flaws switched on.
        flaws: svmkit::device::svm_atomic::SvmFlaws,
        /// Bound of the fault loop.
        max_passes: u64,
    },
    /// The NVIDIA-UVM-style driver (`svmkit::device::uvm`): each atomic fault makes
    /// the aligned region of `batch` pages device-exclusive in one pass.
    Uvm {
        /// Pages per atomic fault (1 ..= 512, a power of two).
        batch: u64,
        /// Bound of the service loop (UVM itself retries without end).
        max_passes: u64,
    },
}

impl Driver {
    /// The name a scenario file gives it (`driver = "..."`).
    pub fn name(&self) -> &'static str {
        match self {
            Driver::Dmirror => "dmirror",
            Driver::SvmAtomic { .. } => "svm_atomic",
            Driver::Uvm { .. } => "uvm",
        }
    }
}

/// A device bound to a process.
#[derive(Debug, Clone)]
pub struct Device {
    /// Its name.
    pub name: String,
    /// The driver.
    pub driver: Driver,
    /// The process it mirrors.
    pub process: usize,
    /// Where it was declared.
    pub span: Span,
}

/// Who a thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A CPU thread of a process (index into [`Scenario::processes`]).
    Process(usize),
    /// A device's driver context (index into [`Scenario::devices`]).
    Device(usize),
}

/// A thread: an actor and its steps.
#[derive(Debug, Clone)]
pub struct Thread {
    /// Its name.
    pub name: String,
    /// Who runs the steps.
    pub actor: Actor,
    /// The steps, `repeat` expanded.
    pub steps: Vec<Step>,
    /// Threads (indices into [`Scenario::threads`]) that must have finished before
    /// this one takes its first turn.
    pub after: Vec<usize>,
    /// Where it was declared.
    pub span: Span,
}

/// An address expression: a mapping's start plus an offset, or an absolute address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    /// The mapping (index into [`Scenario::maps`]), or none for an absolute address.
    pub map: Option<usize>,
    /// Offset in bytes (from the mapping's start, or from 0).
    pub offset: u64,
    /// The text as written.
    pub text: String,
}

/// A scenario-level name for an mm a step acts on: the thread's own process or one
/// created by a `fork` step.
pub type ProcessRef = usize;

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// CPU load of the `u64` at an address.
    Read {
        /// The address (a page address for page operations).
        at: Addr,
    },
    /// CPU store.
    Write {
        /// The address (a page address for page operations).
        at: Addr,
        /// The value (stored, added, or written to every word).
        value: u64,
    },
    /// CPU atomic add; returns the old value.
    FetchAdd {
        /// The address (a page address for page operations).
        at: Addr,
        /// The value (stored, added, or written to every word).
        value: u64,
    },
    /// `mmap` of a new mapping named `name` (like a `[[map]]`, at run time).
    Mmap {
        /// The mapping (index into [`Scenario::maps`]).
        map: usize,
    },
    /// `munmap`.
    Munmap {
        /// The address (a page address for page operations).
        at: Addr,
        /// Length in bytes.
        len: u64,
    },
    /// `mremap`. When `at` names a mapping's start (no offset) and the call
    /// succeeds, the name follows the mapping to the address mremap returned.
    Mremap {
        /// The old address.
        at: Addr,
        /// Old length in bytes.
        len: u64,
        /// New length in bytes.
        new_len: u64,
        /// The new address (`new_addr`, used with FIXED; 0 when absent).
        to: Option<Addr>,
        /// The flags.
        flags: svmkit::mm::MremapFlags,
    },
    /// `mprotect`.
    Mprotect {
        /// The address (a page address for page operations).
        at: Addr,
        /// Length in bytes.
        len: u64,
        /// The new protection.
        prot: Prot,
    },
    /// `madvise`.
    Madvise {
        /// The address (a page address for page operations).
        at: Addr,
        /// Length in bytes.
        len: u64,
        /// The advice.
        advice: svmkit::mm::Advice,
    },
    /// `mlock` (or, with `onfault`, `mlock2(MLOCK_ONFAULT)`).
    Mlock {
        /// The address (a page address for page operations).
        at: Addr,
        /// Length in bytes.
        len: u64,
        /// `MLOCK_ONFAULT`: lock pages as they fault in, without populating.
        onfault: bool,
    },
    /// `munlock`.
    Munlock {
        /// The address (a page address for page operations).
        at: Addr,
        /// Length in bytes.
        len: u64,
    },
    /// One NUMA balancing scan (`task_numa_work()` → `change_prot_numa()`) over the
    /// range; returns how many entries it changed.
    NumaScan {
        /// The address (a page address for page operations).
        at: Addr,
        /// Length in bytes.
        len: u64,
    },
    /// Reads `NR_MLOCK` (meminfo's `Mlocked:`, in pages) of the system.
    NrMlock,
    /// One KSM pass over the process's `MADV_MERGEABLE` memory; returns the pages
    /// merged.
    KsmScan,
    /// `fork`: the thread's process forks; the child is process `child`.
    Fork {
        /// The child process.
        child: ProcessRef,
    },
    /// The thread's process (or `process`) exits: its last user goes away.
    Exit {
        /// The process.
        process: ProcessRef,
    },
    /// `/proc/pid/clear_refs` with 4: clear soft-dirty.
    ClearSoftDirty,
    /// One khugepaged pass over the thread's process (`khugepaged_scan_mm_slot()`);
    /// the value is the number of 2 MiB ranges it collapsed.
    Khugepaged,
    /// `UFFDIO_WRITEPROTECT` on or off.
    UffdWp {
        /// The address (a page address for page operations).
        at: Addr,
        /// Length in bytes.
        len: u64,
        /// Set (true) or clear the write protection.
        protect: bool,
    },
    /// `make_device_exclusive` (6.15) on the page at `at`, owner = the thread's device
    /// (or none); `hold` keeps the returned folio locked and referenced under that
    /// guard name until `release`.
    MakeExclusive {
        /// The address (a page address for page operations).
        at: Addr,
        /// The guard name under which the result is held.
        hold: Option<String>,
    },
    /// `make_device_exclusive_range` (the 2021 API) over `pages` pages.
    MakeExclusiveRange {
        /// The address (a page address for page operations).
        at: Addr,
        /// Number of pages.
        pages: u64,
    },
    /// `kill(tid, SIGKILL)` of another scenario thread's task. A killable sleep it is in
    /// (a `make_exclusive` waiting in `folio_lock_killable`) ends with `EINTR`; an
    /// uninterruptible one (a fault's or GUP's `folio_lock`) goes on until the lock is
    /// free. Either way the step it is in is its last: a task with a fatal signal
    /// pending never returns to user space.
    Kill {
        /// The thread (index into [`Scenario::threads`]).
        thread: usize,
    },
    /// Drops a held guard (`folio_unlock` + `folio_put`).
    Release {
        /// The guard to release.
        guard: String,
    },
    /// GUP: `get_user_pages` (FOLL_GET) of `pages` pages; `hold` names the references.
    Gup {
        /// The address (a page address for page operations).
        at: Addr,
        /// Number of pages.
        pages: u64,
        /// Pin (FOLL_PIN) instead of get (FOLL_GET).
        pin: bool,
        /// FOLL_WRITE.
        write: bool,
        /// The guard name under which the result is held.
        hold: String,
    },
    /// Drops the references or pins GUP took under `hold`.
    Unpin {
        /// The guard name under which the result is held.
        hold: String,
    },
    /// A device atomic add through svm_atomic; returns the old value.
    AtomicAdd {
        /// The address (a page address for page operations).
        at: Addr,
        /// The value (stored, added, or written to every word).
        value: u64,
    },
    /// A dmirror command over `pages` pages.
    Dmirror {
        /// The command.
        cmd: DmirrorCmd,
        /// The address (a page address for page operations).
        at: Addr,
        /// Number of pages.
        pages: u64,
        /// The value (stored, added, or written to every word).
        value: u64,
    },
    /// `MADV_PAGEOUT` is a madvise; this is `reclaim_mm(n)` of the thread's process.
    Reclaim {
        /// Number of pages.
        pages: u64,
    },
    /// Reclaim (swap-out) of the folio mapped at `at`.
    ReclaimFolio {
        /// The address (a page address for page operations).
        at: Addr,
    },
    /// Migration of the folio mapped at `at`.
    Migrate {
        /// The address (a page address for page operations).
        at: Addr,
    },
    /// The hmm selftests' buffer fill: word `i` of `pages` pages from `at` gets
    /// `value + i` (hmm-tests.c: `for (i = 0; i < size / sizeof(*ptr); ++i) ptr[i] = i;`).
    Fill {
        /// Where the buffer starts.
        at: Addr,
        /// Its length in pages.
        pages: u64,
        /// The first word's value.
        value: u64,
    },
    /// A user loop storing `value` to the first word of each of `pages` pages from `at`
    /// (`for (p = buf; p < end; p += 4096) *p = v;`): one first-touch write fault per
    /// page (Linux: `do_anonymous_page()`), without a buffer of the whole range.
    /// Returns the pages touched; stops at the first page that fails.
    Touch {
        /// Where the range starts.
        at: Addr,
        /// Its length in pages.
        pages: u64,
        /// The value stored.
        value: u64,
    },
    /// The selftests' check of a buffer against the fill pattern: how many words of
    /// `pages` pages from `at` are not `value + i` (0: the buffer is as filled).
    Compare {
        /// Where the buffer starts.
        at: Addr,
        /// Its length in pages.
        pages: u64,
        /// The first word's expected value.
        value: u64,
    },
}

impl Op {
    /// Whether this is a CPU access of user memory (a load, store or atomic, or a
    /// loop of them): what sleeps in a user page fault.
    pub fn is_cpu_access(&self) -> bool {
        matches!(
            self,
            Op::Read { .. }
                | Op::Write { .. }
                | Op::FetchAdd { .. }
                | Op::Fill { .. }
                | Op::Touch { .. }
                | Op::Compare { .. }
        )
    }
}

/// A dmirror ioctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmirrorCmd {
    /// `HMM_DMIRROR_READ`.
    Read,
    /// `HMM_DMIRROR_WRITE` (every word of the pages gets `value`).
    Write,
    /// `HMM_DMIRROR_EXCLUSIVE`.
    Exclusive,
    /// `HMM_DMIRROR_CHECK_EXCLUSIVE`.
    CheckExclusive,
}

/// What a step's PTE must look like afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PteKind {
    /// `pte_none`.
    None,
    /// Present (any permission).
    Present,
    /// Present and writable.
    PresentWritable,
    /// Present and read-only.
    PresentReadOnly,
    /// A device-exclusive entry.
    DeviceExclusive,
    /// A swap entry.
    Swap,
    /// A migration entry.
    Migration,
    /// A huge PMD (a PMD-mapped THP) covers the address.
    HugePmd,
    /// A present PTE mapping the shared zero page (`is_zero_pfn(pte_pfn(pte))`: a
    /// read fault of untouched anonymous memory, `do_anonymous_page()`).
    ZeroPage,
}

impl PteKind {
    /// The kind as a scenario file names it.
    pub fn name(self) -> &'static str {
        match self {
            PteKind::None => "none",
            PteKind::Present => "present",
            PteKind::PresentWritable => "present-rw",
            PteKind::PresentReadOnly => "present-ro",
            PteKind::DeviceExclusive => "device-exclusive",
            PteKind::Swap => "swap",
            PteKind::Migration => "migration",
            PteKind::HugePmd => "huge-pmd",
            PteKind::ZeroPage => "zero-page",
        }
    }
}

/// What a step must return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Success (with this value, if given).
    Ok(Option<u64>),
    /// Failure with one of these (errno names, `SIGSEGV`, `SIGBUS`, `ESRCH`).
    Err(Vec<crate::engine::StepError>),
    /// Either (the step's result is only reported).
    Any,
}

/// A value that may differ by era: one for every era, or one for each era named
/// (`{ "linux-5.14" = 1, "linux-6.15" = 2 }`; an era not named checks nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PerEra<T> {
    /// The same under every era.
    All(T),
    /// Per era, by profile name ([`svmkit::Profile::name`]), in file order.
    Eras(Vec<(String, T)>),
}

impl<T> PerEra<T> {
    /// The value under the era (profile name) `era`, if there is one to check.
    pub fn get(&self, era: &str) -> Option<&T> {
        match self {
            PerEra::All(v) => Some(v),
            PerEra::Eras(v) => v.iter().find(|(e, _)| e == era).map(|(_, v)| v),
        }
    }
}

/// A bit of a PTE (or of the non-present entry in its place) that `expect_pte` can
/// check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PteFlag {
    /// Writable: `pte_write()`; on a device-exclusive entry
    /// `is_writable_device_exclusive_entry()`, on a migration entry
    /// `is_writable_migration_entry()`.
    Write,
    /// `pte_dirty()` (a present PTE or huge PMD only: the entries have no dirty bit).
    Dirty,
    /// `pte_young()` (a present PTE or huge PMD only).
    Young,
    /// `pte_soft_dirty()`, or `pte_swp_soft_dirty()` on a non-present entry.
    SoftDirty,
    /// `pte_uffd_wp()`, or `pte_swp_uffd_wp()` on a non-present entry.
    UffdWp,
}

impl PteFlag {
    /// Every flag with its key in a scenario file.
    pub const ALL: [(&'static str, PteFlag); 5] = [
        ("write", PteFlag::Write),
        ("dirty", PteFlag::Dirty),
        ("young", PteFlag::Young),
        ("soft_dirty", PteFlag::SoftDirty),
        ("uffd_wp", PteFlag::UffdWp),
    ];

    /// The flag's key in a scenario file.
    pub fn key(self) -> &'static str {
        PteFlag::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(k, _)| k)
    }
}

/// `expect_pte`: what the entry at an address must be after the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PteExpect {
    /// Its kind.
    pub kind: PerEra<PteKind>,
    /// Bits that must be set (true) or clear (false).
    pub flags: Vec<(PteFlag, PerEra<bool>)>,
    /// Another address than the step's (`at`).
    pub at: Option<Addr>,
}

/// `expect_refcount` / `expect_mapcount`: a count of the folio mapped at an address
/// after the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountExpect {
    /// The count.
    pub value: PerEra<u64>,
    /// Another address than the step's (`at`).
    pub at: Option<Addr>,
}

/// One step of a thread.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The operation.
    pub op: Op,
    /// What it must return (per era if the file says so).
    pub expect: PerEra<Outcome>,
    /// What the PTE at the step's address (or `at`) must be afterwards.
    pub expect_pte: Option<PteExpect>,
    /// Device entries at the step's address afterwards: (device, rights), rights
    /// `None` for no entry; the device is the thread's own when not named.
    pub expect_device: Vec<(usize, Option<svmkit::device::DevRights>)>,
    /// Notifier events the step must cause, in order (each a set of words the event's
    /// account line must contain), one list or one per era; an empty list: none at
    /// all.
    pub expect_events: Option<PerEra<Vec<String>>>,
    /// `folio_ref_count()` of the folio mapped at the address afterwards.
    pub expect_refcount: Option<CountExpect>,
    /// `folio_mapcount()` of the folio mapped at the address afterwards.
    pub expect_mapcount: Option<CountExpect>,
    /// Faults the step took: CPU page faults of a read, write or fetch_add; passes of
    /// svm_atomic's fault loop for an atomic_add.
    pub expect_faults: Option<PerEra<u64>>,
    /// `cpages` of a dmirror ioctl: the pages the driver reports done in `struct
    /// hmm_dmirror_cmd` (what the selftests check, `ASSERT_EQ(buffer->cpages, npages)`).
    pub expect_cpages: Option<PerEra<u64>>,
    /// A note printed with the step.
    pub note: Option<String>,
    /// Where this step's expectations come from (a kernel, a spec section, or
    /// `derived`), when not from the file's `[outcomes]` source; one or one per era.
    pub source: Option<PerEra<String>>,
    /// A label `[outcomes]` can name (`fails_at`).
    pub id: Option<String>,
    /// Where it was written.
    pub span: Span,
}

/// What must hold at the end.
#[derive(Debug, Clone, Default)]
pub struct EndExpect {
    /// The invariant checker passes at the end (default true).
    pub checker: bool,
    /// After every process has exited and every device is closed, every frame is free
    /// (default true).
    pub all_freed: bool,
    /// Values that CPU reads must return at the end.
    pub values: Vec<(ProcessRef, Addr, u64, Span)>,
    /// Resident sizes at the end, in KiB: the `Rss:` of `/proc/PID/smaps` for the VMA
    /// containing the address.
    pub rss: Vec<(ProcessRef, Addr, u64, Span)>,
}
