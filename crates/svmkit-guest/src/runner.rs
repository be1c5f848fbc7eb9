//! Runs one scenario file on the real kernel, on the schedule of `svmkit run`, and
//! writes the report `svmkit run --json` writes (`svmkit_scenario::RunReport`).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};
use svmkit::device::svm_atomic::SvmFlaws;
use svmkit::mm::{Advice, ThpMode};
use svmkit_scenario::ast::*;
use svmkit_scenario::engine::{EndCheck, RunReport, StepRecord};

use crate::pte::{self, Ctx, Entry, Kind};
use crate::sys::{self, PAGE, Pagemap};

/// What the runner learnt of the kernel at start.
#[derive(Debug)]
pub struct Env {
    /// How to decode pagemap entries.
    pub ctx: Ctx,
    /// Where the device-exclusive swap type came from (`flag` or `detected`).
    pub excl_source: &'static str,
    /// `uname -r`.
    pub kernel: String,
}

fn errno_name(e: sys::Errno) -> String {
    svmkit::Errno::ALL
        .iter()
        .find(|x| x.code() == e)
        .map_or_else(|| format!("errno {e}"), |x| x.name().to_string())
}

impl Env {
    /// Learns the zero page's pfn (a read of an untouched page maps it), the
    /// device-exclusive swap type (an EXCLUSIVE of a written page, unless `excl` gives
    /// it), and maps in every page of this program's text (so that a CPU step's fault
    /// count has no fault of the runner's own code in it).
    pub fn probe(excl: Option<u64>) -> Result<Env, String> {
        // SAFETY: mlockall/munlockall take no pointers; MCL_CURRENT faults in every
        // page mapped now (the program's text, data, stack); munlockall leaves them
        // mapped and unlocks them, so scenario mappings made later are not affected.
        let locked = unsafe { libc::mlockall(libc::MCL_CURRENT) } == 0;
        if locked {
            // SAFETY: as above.
            unsafe { libc::munlockall() };
        }
        let pm = Pagemap::open().map_err(|e| format!("cannot open /proc/self/pagemap: {e}"))?;
        let e = |e: sys::Errno| format!("probe: {}", errno_name(e));
        let a = sys::mmap(None, 2 * PAGE, 3, false).map_err(e)?;
        // Warm the paths the CPU steps take.
        let f0 = sys::faults_now();
        let _ = sys::load(a);
        sys::store(a + PAGE, 1);
        let _ = sys::fetch_add(a + PAGE, 1);
        let _ = sys::faults_now() - f0;
        let z = pm.entry(a);
        if z & (1 << 63) == 0 {
            return Err("probe: a read of an untouched page did not map the zero page".into());
        }
        let zero_pfn = z & ((1 << 55) - 1);
        if zero_pfn == 0 {
            return Err("probe: pagemap shows no pfns (not root?)".into());
        }
        let (excl_type, excl_source) = match excl {
            Some(x) => (x, "flag"),
            None => {
                let fd = sys::open_dmirror(0)
                    .map_err(|x| format!("probe: open /dev/hmm_dmirror0: {}", errno_name(x)))?;
                let mut cmd = sys::DmirrorCmd {
                    addr: a + PAGE,
                    npages: 1,
                    ..Default::default()
                };
                let mut buf = vec![0u64; 512];
                sys::dmirror_ioctl::<{ sys::HMM_DMIRROR_EXCLUSIVE }>(&fd, &mut cmd, &mut buf)
                    .map_err(|x| format!("probe: HMM_DMIRROR_EXCLUSIVE: {}", errno_name(x)))?;
                let d = pm.entry(a + PAGE);
                if d & (1 << 62) == 0 {
                    return Err(format!(
                        "probe: no swap-format entry after HMM_DMIRROR_EXCLUSIVE (pagemap {d:#x})"
                    ));
                }
                (d & 0x1f, "detected")
            }
        };
        sys::munmap(a, 2 * PAGE).map_err(e)?;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "?".into(), |s| s.trim().to_string());
        Ok(Env {
            ctx: Ctx {
                excl_type,
                zero_pfn,
            },
            excl_source,
            kernel,
        })
    }
}

/// The `oracle` field of the JSON: which kernel ran the file, and what the guest could
/// not check.
#[derive(Debug, Serialize)]
struct Header {
    runner: &'static str,
    kernel: String,
    config_sha256: Option<String>,
    exclusive_swap_type: u64,
    exclusive_swap_type_from: &'static str,
    era: String,
    /// Expectations of the file the guest cannot observe on a real kernel (not
    /// checked; `line N: expect_refcount`).
    unchecked: Vec<String>,
    /// Whether each step's `devices` lists every device's entry at its address: true
    /// when every device of the file is an svm_atomic one (`/dev/svmkit_loop` answers
    /// SVL_IOC_QUERY; dmirror has no such query), so a comparator may compare them.
    devices_observed: bool,
}

#[derive(Debug, Serialize)]
struct Out<'a> {
    oracle: Header,
    #[serde(flatten)]
    report: &'a RunReport,
}

/// A step's result: a value, nothing, or an error by name (`EBUSY`, `SIGSEGV`).
type StepResult = Result<Option<u64>, String>;

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Read { .. } => "read",
        Op::Write { .. } => "write",
        Op::FetchAdd { .. } => "fetch_add",
        Op::Mmap { .. } => "mmap",
        Op::Munmap { .. } => "munmap",
        Op::Mremap { .. } => "mremap",
        Op::Mprotect { .. } => "mprotect",
        Op::Madvise { .. } => "madvise",
        Op::Mlock { .. } => "mlock",
        Op::Munlock { .. } => "munlock",
        Op::NumaScan { .. } => "numa_scan",
        Op::NrMlock => "nr_mlock",
        Op::KsmScan => "ksm_scan",
        Op::Fork { .. } => "fork",
        Op::Exit { .. } => "exit",
        Op::ClearSoftDirty => "clear_soft_dirty",
        Op::Khugepaged => "khugepaged",
        Op::UffdWp { .. } => "uffd_wp",
        Op::MakeExclusive { .. } => "make_exclusive",
        Op::MakeExclusiveRange { .. } => "make_exclusive_range",
        Op::Kill { .. } => "kill",
        Op::Release { .. } => "release",
        Op::Gup { .. } => "gup",
        Op::Unpin { .. } => "unpin",
        Op::AtomicAdd { .. } => "atomic_add",
        Op::Dmirror { cmd, .. } => match cmd {
            DmirrorCmd::Read => "dmirror_read",
            DmirrorCmd::Write => "dmirror_write",
            DmirrorCmd::Exclusive => "dmirror_exclusive",
            DmirrorCmd::CheckExclusive => "dmirror_check_exclusive",
        },
        Op::Reclaim { .. } => "reclaim",
        Op::ReclaimFolio { .. } => "reclaim_folio",
        Op::Migrate { .. } => "migrate",
        Op::Fill { .. } => "fill",
        Op::Touch { .. } => "touch",
        Op::Compare { .. } => "compare",
    }
}

/// Why the file cannot run on the kernel, if it cannot: the first step (or
/// declaration) the runner has no real counterpart for.
fn unsupported(sc: &Scenario, path: &str) -> Option<String> {
    let at_start = sc.processes.iter().filter(|p| p.at_start).count();
    if at_start != 1 || !sc.processes[0].at_start {
        return Some(format!(
            "{path}: {at_start} processes at the start: the kernel runner is one process; the others must come from a `fork` of it"
        ));
    }
    for d in &sc.devices {
        if matches!(d.driver, Driver::Uvm { .. }) {
            // NVIDIA's driver is out of tree and needs NVIDIA hardware; the model's
            // uvm is a reading of its code (spec 10.2), with nothing to compare to here.
            return Some(format!(
                "{path}:{}: device `{}` (uvm) has no kernel counterpart in the guest: NVIDIA's \
                 UVM driver is out of tree and needs its hardware",
                sc.line_of(d.span.start),
                d.name
            ));
        }
        if let Driver::SvmAtomic { flaws, max_passes } = &d.driver
            && let Err(why) = svl_flags(flaws, *max_passes)
        {
            return Some(format!(
                "{path}:{}: device `{}` (svm_atomic) cannot run on /dev/svmkit_loop: {why}",
                sc.line_of(d.span.start),
                d.name
            ));
        }
    }
    let dmirrors = sc
        .devices
        .iter()
        .filter(|d| matches!(d.driver, Driver::Dmirror))
        .count();
    if dmirrors > 2 {
        return Some(format!(
            "{path}: {dmirrors} dmirror devices: the kernel has two (hmm_dmirror0, 1) without --spm",
        ));
    }
    let mut forked = vec![false; sc.processes.len()];
    let uffd = sc
        .threads
        .iter()
        .flat_map(|th| &th.steps)
        .any(|s| matches!(s.op, Op::UffdWp { .. }));
    for th in &sc.threads {
        for s in &th.steps {
            let why = match &s.op {
                Op::Fork { .. } if !matches!(th.actor, Actor::Process(0)) => {
                    Some("only the first process forks (the runner itself; no nested fork yet)")
                }
                // Without UFFD_FEATURE_EVENT_FORK the child's VMAs lose the registration
                // and its PTEs the uffd-wp bit; the model has no registration to lose.
                Op::Fork { .. } if uffd => Some(
                    "fork in a file with uffd_wp (the child's userfaultfd registration is not modelled)",
                ),
                Op::Fork { child } if std::mem::replace(&mut forked[*child], true) => {
                    Some("the child is forked twice")
                }
                Op::Exit { process: 0 } => {
                    Some("the first process is the runner itself: only a forked process can exit")
                }
                Op::UffdWp { .. } if !matches!(th.actor, Actor::Process(0)) => Some(
                    "only the first process (the runner itself) registers with userfaultfd yet",
                ),
                Op::MakeExclusive { .. } | Op::MakeExclusiveRange { .. } => Some(
                    "make_device_exclusive is a kernel-internal call; only dmirror's EXCLUSIVE reaches it from user space",
                ),
                Op::Kill { .. } => Some("the runner has one OS thread: nothing to kill"),
                Op::Release { .. } | Op::Gup { .. } | Op::Unpin { .. } => {
                    Some("GUP holds are kernel-internal (no user-space counterpart yet)")
                }
                Op::AtomicAdd { .. }
                    if !matches!(
                        th.actor,
                        Actor::Device(d) if matches!(sc.devices[d].driver, Driver::SvmAtomic { .. })
                    ) =>
                {
                    Some("atomic_add needs a thread of an svm_atomic device")
                }
                Op::Dmirror { .. }
                    if !matches!(
                        th.actor,
                        Actor::Device(d) if matches!(sc.devices[d].driver, Driver::Dmirror)
                    ) =>
                {
                    Some("a dmirror ioctl needs a thread of a dmirror device")
                }
                Op::Reclaim { .. } | Op::ReclaimFolio { .. } => {
                    Some("targeted reclaim has no user-space counterpart (use madvise pageout)")
                }
                Op::Migrate { .. } => Some("migrate of one folio is not supported yet"),
                Op::Khugepaged => {
                    Some("khugepaged runs on its own schedule; use madvise collapse instead")
                }
                Op::NumaScan { .. } => Some(
                    "a NUMA balancing scan cannot be asked for from user space (task_numa_work runs on its own schedule)",
                ),
                Op::KsmScan => Some(
                    "a KSM pass cannot be asked for from user space (ksmd scans on its own schedule)",
                ),
                Op::Mlock { .. } | Op::Munlock { .. } | Op::NrMlock => {
                    Some("mlock and NR_MLOCK are not run on the real kernel yet")
                }
                _ => None,
            };
            if let Some(why) = why {
                return Some(format!(
                    "{path}:{}: step `{}` of thread {} cannot run on the real kernel: {why}",
                    sc.line_of(s.span.start),
                    op_name(&s.op),
                    th.name
                ));
            }
        }
    }
    None
}

/// The `svl_atomic.flags` of an svm_atomic device, or why `/dev/svmkit_loop` cannot be
/// it: the module has the correct filter and its owner-blind variant, and the pass
/// bound up to `SVL_MAX_PASSES`; the model's other flaw switches have no counterpart.
fn svl_flags(flaws: &SvmFlaws, max_passes: u64) -> Result<u32, String> {
    if max_passes > sys::SVL_MAX_PASSES as u64 {
        return Err(format!(
            "max_passes {max_passes} > {} (SVL_MAX_PASSES)",
            sys::SVL_MAX_PASSES
        ));
    }
    let plain = SvmFlaws {
        filter_ignores_owner: flaws.filter_ignores_owner,
        ..SvmFlaws::default()
    };
    if *flaws != plain {
        return Err(format!(
            "flaws {flaws:?}: the module has only filter_ignores_owner (SVL_SKIP_ANY_EXCLUSIVE)"
        ));
    }
    Ok(if flaws.filter_ignores_owner {
        sys::SVL_SKIP_ANY_EXCLUSIVE
    } else {
        0
    })
}

/// One pass of the module's loop as a line of a step's `decisions`.
fn pass_text(dev: &str, n: usize, p: &sys::SvlPass) -> String {
    if p.what & sys::SVL_PASS_TIMEOUT != 0 {
        return format!("{dev}: the 1 s timeout before pass {n}");
    }
    let ended = if p.what & sys::SVL_PASS_MAPPED != 0 {
        "mapped"
    } else if p.what & sys::SVL_PASS_RETRIED != 0 {
        "retry"
    } else if p.what & sys::SVL_PASS_EINVAL != 0 {
        "EINVAL (no page)"
    } else {
        "?"
    };
    let mut s = format!("{dev} pass {n}: {ended}");
    if p.what & sys::SVL_PASS_SEQ_SET != 0 {
        s.push_str(", set_seq");
    }
    let events = [
        ("EXCLUSIVE own", p.excl_own),
        ("EXCLUSIVE other", p.excl_other),
        ("EXCLUSIVE NULL", p.excl_null),
        ("CLEAR", p.clear),
        ("UNMAP", p.unmap),
        ("PROTECTION_VMA", p.prot_vma),
        ("other", p.other),
    ];
    let seen: Vec<String> = events
        .iter()
        .filter(|(_, c)| *c > 0)
        .map(|(e, c)| format!("{e} x{c}"))
        .collect();
    s.push_str("; interval: ");
    s.push_str(&if seen.is_empty() {
        "none".to_string()
    } else {
        seen.join(", ")
    });
    s
}

/// Runs the file at `path`; prints its JSON; returns the exit status (0 passed, 1
/// failed, 2 not run).
pub fn run_file(path: &str, opts: &crate::Options, env: &Env) -> u8 {
    if opts.markers {
        println!("===SVMKIT-GUEST-BEGIN {path}===");
    }
    let rc = run_file_inner(path, opts, env);
    if opts.markers {
        println!("===SVMKIT-GUEST-END {path} rc={rc}===");
    }
    rc
}

fn run_file_inner(path: &str, opts: &crate::Options, env: &Env) -> u8 {
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("svmkit-guest: {path}: {e}");
            return 2;
        }
    };
    let sc = match svmkit_scenario::parse(path, &src) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("svmkit-guest: {e}");
            return 2;
        }
    };
    if let Some(why) = unsupported(&sc, path) {
        eprintln!("svmkit-guest: {why}");
        return 2;
    }
    let era = opts
        .era
        .clone()
        .unwrap_or_else(|| sc.profile.name.to_string());
    if let Some(mode) = sc.thp {
        let m = match mode {
            ThpMode::Always => "always",
            ThpMode::Madvise => "madvise",
            ThpMode::Never => "never",
        };
        if let Err(e) = std::fs::write("/sys/kernel/mm/transparent_hugepage/enabled", m) {
            eprintln!("svmkit-guest: {path}: cannot set THP mode {m}: {e}");
            return 2;
        }
    }
    let pm = match Pagemap::open() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("svmkit-guest: /proc/self/pagemap: {e}");
            return 2;
        }
    };
    let mut run = Run {
        sc: &sc,
        env,
        era: era.clone(),
        pm,
        map_at: vec![None; sc.maps.len()],
        fds: Vec::new(),
        unchecked: Vec::new(),
        vmas: Vec::new(),
        vm_softdirty: vec![false; sc.maps.len()],
        decisions: Vec::new(),
        me: 0,
        uffd: None,
        wp_registered: Vec::new(),
        created: (0..sc.processes.len()).map(|p| p == 0).collect(),
        children: (0..sc.processes.len()).map(|_| None).collect(),
    };
    let report = run.go();
    let out = Out {
        oracle: Header {
            runner: "svmkit-guest",
            kernel: env.kernel.clone(),
            config_sha256: opts.config_sha256.clone(),
            exclusive_swap_type: env.ctx.excl_type,
            exclusive_swap_type_from: env.excl_source,
            era,
            unchecked: std::mem::take(&mut run.unchecked),
            devices_observed: run.devices_observed(),
        },
        report: &report,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&out).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    );
    run.teardown();
    if report.passed { 0 } else { 1 }
}

struct Run<'a> {
    sc: &'a Scenario,
    env: &'a Env,
    era: String,
    pm: Pagemap,
    /// Where each mapping was placed (None until mapped).
    map_at: Vec<Option<u64>>,
    /// One open file per device, in file order: /dev/hmm_dmirror<N> for the N-th
    /// dmirror device, /dev/svmkit_loop (a fresh open: a device of its own) for an
    /// svm_atomic one.
    fds: Vec<OwnedFd>,
    /// What the current step's svm_atomic passes did (its record's `decisions`).
    decisions: Vec<String>,
    unchecked: Vec<String>,
    /// /proc/self/maps as read at the start of the current step.
    vmas: Vec<sys::Vma>,
    /// Per mapping: whether its VMA still has VM_SOFTDIRTY (set by mmap, cleared by
    /// clear_refs), which pagemap ORs into every entry's bit 55.
    vm_softdirty: Vec<bool>,
    /// The scenario process this OS process is: 0 (the first one) in the runner, the
    /// child's index in a forked child.
    me: usize,
    /// The runner's userfaultfd, opened by the first `uffd_wp` step.
    uffd: Option<sys::Uffd>,
    /// Start addresses of the VMAs registered with it in write-protect mode.
    wp_registered: Vec<u64>,
    /// Per scenario process: whether it was forked (the first one is there from the
    /// start; as the model's `was_created`, it stays true after an exit).
    created: Vec<bool>,
    /// Per scenario process: the forked child that runs its threads' steps, while it
    /// lives (in the runner only).
    children: Vec<Option<Child>>,
}

/// A forked scenario process, driven by the runner over a pipe pair: the runner sends
/// a [`Cmd`] line, the child runs it and answers one [`Reply`] line (JSON).
struct Child {
    pid: i32,
    to: std::io::PipeWriter,
    from: BufReader<std::io::PipeReader>,
}

/// What the runner asks a forked child to do.
#[derive(Debug, Serialize, Deserialize)]
enum Cmd {
    /// Run step `pc` of thread `t` as turn `turn`.
    Step { t: usize, pc: usize, turn: usize },
    /// Read the `i`-th value of `[expect] values` (the end check).
    Value { i: usize },
    /// Read the smaps `Rss:` of the `i`-th entry of `[expect] rss` (the end check).
    Rss { i: usize },
    /// `exit`: end the process.
    Exit,
}

/// A forked child's answer.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// The step's record, and what it could not check.
    Step {
        rec: Box<StepRecord>,
        unchecked: Vec<String>,
    },
    /// The value (or `Rss:` in KiB) read, or why not.
    Value(Result<u64, String>),
}

fn expect_text(e: &Outcome) -> String {
    match e {
        Outcome::Ok(Some(v)) => format!("= {v}"),
        Outcome::Ok(None) => "success".into(),
        Outcome::Err(v) => v.iter().map(|e| e.name()).collect::<Vec<_>>().join(" or "),
        Outcome::Any => "anything".into(),
    }
}

fn result_text(r: &StepResult) -> String {
    match r {
        Ok(Some(v)) => format!("= {v}"),
        Ok(None) => "ok".into(),
        Err(e) => e.clone(),
    }
}

fn outcome_holds(e: &Outcome, r: &StepResult) -> bool {
    match (e, r) {
        (Outcome::Any, _) => true,
        (Outcome::Ok(None), Ok(_)) => true,
        (Outcome::Ok(Some(v)), Ok(Some(got))) => v == got,
        (Outcome::Err(list), Err(e)) => list.iter().any(|x| x.name() == e),
        _ => false,
    }
}

fn pte_expect_text(kind: PteKind, flags: &[(PteFlag, bool)]) -> String {
    let mut s = kind.name().to_string();
    for (f, b) in flags {
        s.push_str(if *b { ", " } else { ", not " });
        s.push_str(f.key());
    }
    s
}

/// Whether the entry is of `kind`; `None` when the guest cannot tell.
fn entry_is(e: &Entry, kind: PteKind) -> Option<bool> {
    Some(match (kind, e.kind) {
        (PteKind::None, Kind::None) => true,
        (PteKind::Present, Kind::Present { .. }) => true,
        (PteKind::ZeroPage, Kind::Present { zero, .. }) => zero,
        (PteKind::PresentWritable, Kind::Present { write, .. }) => write,
        (PteKind::PresentReadOnly, Kind::Present { write, .. }) => !write,
        (PteKind::DeviceExclusive, Kind::DeviceExclusive { .. }) => true,
        (PteKind::Migration, Kind::Migration { .. }) => true,
        (PteKind::Swap, Kind::Swap { .. }) => true,
        // pagemap does not say whether a PMD maps the page.
        (PteKind::HugePmd, _) => return None,
        _ => false,
    })
}

/// Bit `f` of the entry; `Err(None)` when pagemap does not show it.
fn entry_flag(e: &Entry, f: PteFlag) -> Result<bool, Option<&'static str>> {
    match (e.kind, f) {
        (Kind::None, _) => Err(Some("a none PTE has no bits")),
        (_, PteFlag::SoftDirty) => Ok(e.soft_dirty),
        (_, PteFlag::UffdWp) => Ok(e.uffd_wp),
        (Kind::Present { write, .. }, PteFlag::Write) => Ok(write),
        (Kind::DeviceExclusive { write, .. }, PteFlag::Write) => Ok(write),
        (Kind::Migration { write, .. }, PteFlag::Write) => Ok(write),
        (_, PteFlag::Write) => Err(Some("a swap entry has no write bit")),
        (Kind::Present { .. }, PteFlag::Dirty | PteFlag::Young) => Err(None),
        (_, PteFlag::Dirty | PteFlag::Young) => {
            Err(Some("a non-present entry has no dirty or young bit"))
        }
    }
}

/// `madvise(at, len, a)` on the kernel.
fn madvise(at: u64, len: u64, a: Advice) -> Result<(), sys::Errno> {
    match advice(a) {
        Some(a) => sys::madvise(at, len, a),
        None => sys::madvise_collapse(at, len),
    }
}

/// rustix's name for the advice; `None` for MADV_COLLAPSE, which it lacks.
fn advice(a: Advice) -> Option<rustix::mm::Advice> {
    Some(match a {
        Advice::Collapse => return None,
        Advice::WillNeed => rustix::mm::Advice::WillNeed,
        Advice::DontNeed => rustix::mm::Advice::LinuxDontNeed,
        Advice::Free => rustix::mm::Advice::LinuxFree,
        Advice::Cold => rustix::mm::Advice::LinuxCold,
        Advice::HugePage => rustix::mm::Advice::LinuxHugepage,
        Advice::NoHugePage => rustix::mm::Advice::LinuxNoHugepage,
        Advice::PageOut => rustix::mm::Advice::LinuxPageOut,
        Advice::PopulateRead => rustix::mm::Advice::LinuxPopulateRead,
        Advice::PopulateWrite => rustix::mm::Advice::LinuxPopulateWrite,
        Advice::Mergeable => rustix::mm::Advice::LinuxMergeable,
        Advice::Unmergeable => rustix::mm::Advice::LinuxUnmergeable,
    })
}

impl Run<'_> {
    fn resolve(&self, a: &Addr) -> Option<u64> {
        match a.map {
            None => Some(a.offset),
            Some(m) => self.map_at[m].map(|b| b.wrapping_add(a.offset)),
        }
    }

    fn entry(&self, addr: u64) -> Entry {
        let w = sys::vma_of(&self.vmas, addr).is_some_and(|v| v.write);
        pte::decode(self.pm.entry(addr), &self.env.ctx, w)
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
            | Op::Migrate { at }
            | Op::Fill { at, .. }
            | Op::Touch { at, .. }
            | Op::Compare { at, .. } => self.resolve(at),
            Op::Mremap { at, to, .. } => self.resolve(to.as_ref().unwrap_or(at)),
            Op::Mmap { map } => self.map_at[*map],
            _ => None,
        }
    }

    /// The step as `svmkit run` writes it.
    fn describe(&self, op: &Op) -> String {
        svmkit_scenario::describe::describe(self.sc, op, |a| self.resolve(a))
    }

    /// Maps the file's `[[map]]`s (not those a `mmap` step makes) and opens the devices.
    fn setup(&mut self, report: &mut RunReport) -> bool {
        let by_step: Vec<usize> = self
            .sc
            .threads
            .iter()
            .flat_map(|t| t.steps.iter())
            .filter_map(|s| match s.op {
                Op::Mmap { map } => Some(map),
                _ => None,
            })
            .collect();
        for m in 0..self.sc.maps.len() {
            if !by_step.contains(&m)
                && let Err(e) = self.map(m)
            {
                report.end.push(EndCheck {
                    what: format!("map {}", self.sc.maps[m].name),
                    ok: false,
                    detail: format!("setup mmap failed: {e}"),
                });
                return false;
            }
        }
        let mut dmirrors = 0;
        for d in &self.sc.devices {
            let (opened, node) = match d.driver {
                Driver::Dmirror => {
                    dmirrors += 1;
                    (
                        sys::open_dmirror(dmirrors - 1),
                        format!("/dev/hmm_dmirror{}", dmirrors - 1),
                    )
                }
                Driver::SvmAtomic { .. } => {
                    (sys::open_svmkit_loop(), "/dev/svmkit_loop".to_string())
                }
                // Refused before the run (`unsupported`).
                Driver::Uvm { .. } => (Err(svmkit::Errno::EINVAL.code()), "uvm".to_string()),
            };
            match opened {
                Ok(fd) => self.fds.push(fd),
                Err(e) => {
                    report.end.push(EndCheck {
                        what: format!("device {}", d.name),
                        ok: false,
                        detail: format!("open {node} failed: {}", errno_name(e)),
                    });
                    return false;
                }
            }
        }
        true
    }

    fn map(&mut self, m: usize) -> Result<u64, String> {
        let map = &self.sc.maps[m];
        let addr = sys::mmap(map.at, map.len, map.prot.bits(), map.shared).map_err(errno_name)?;
        for a in &map.advice {
            madvise(addr, map.len, *a).map_err(errno_name)?;
        }
        self.map_at[m] = Some(addr);
        self.vm_softdirty[m] = true;
        Ok(addr)
    }

    /// Whether every device of the file can say what it maps (see
    /// [`Header::devices_observed`]).
    fn devices_observed(&self) -> bool {
        !self.sc.devices.is_empty()
            && self
                .sc
                .devices
                .iter()
                .all(|d| matches!(d.driver, Driver::SvmAtomic { .. }))
    }

    /// The svm_atomic device `d`'s entry at `addr`, as the model's records write it
    /// (`gpu: rwa pfn 0x..`; the module maps with read, write and atomic rights);
    /// `None` for no entry or a dmirror device.
    fn device_entry(&self, d: usize, addr: u64) -> Option<String> {
        if !matches!(self.sc.devices[d].driver, Driver::SvmAtomic { .. }) {
            return None;
        }
        let q = sys::svl_query(&self.fds[d], addr).ok()?;
        (q.mapped != 0).then(|| format!("{}: rwa pfn {:#x}", self.sc.devices[d].name, q.pfn))
    }

    fn teardown(&mut self) {
        for p in 0..self.children.len() {
            self.end_child(p);
        }
        self.fds.clear();
        for m in 0..self.sc.maps.len() {
            if let Some(a) = self.map_at[m].take() {
                let _ = sys::munmap(a, self.sc.maps[m].len);
            }
        }
    }

    /// The schedule of `svmkit run` (docs/SCENARIOS.md), without locks: nothing in a
    /// file the runner accepts holds one, so a thread only waits for `after`.
    fn go(&mut self) -> RunReport {
        let sc = self.sc;
        let mut report = RunReport::new(&sc.name, &self.era);
        if !self.setup(&mut report) {
            report.passed = false;
            return report;
        }
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
                turn += 1;
                let unfinished: Vec<&str> = th
                    .after
                    .iter()
                    .filter(|&&j| pc[j] < sc.threads[j].steps.len())
                    .map(|&j| sc.threads[j].name.as_str())
                    .collect();
                if !unfinished.is_empty() {
                    let b = format!("thread {} to finish (after)", unfinished.join(", "));
                    waiting.push(format!("{} waits for {b}", th.name));
                    let line = self.sc.line_of(step.span.start);
                    report.note_wait(turn, &th.name, line, || self.describe(&step.op), &b);
                    continue;
                }
                let p = thread_process(sc, t);
                if !self.created[p] && !matches!(step.op, Op::Exit { .. }) {
                    let b = format!("process {} (not forked yet)", sc.processes[p].name);
                    waiting.push(format!("{} waits for {b}", th.name));
                    let line = self.sc.line_of(step.span.start);
                    report.note_wait(turn, &th.name, line, || self.describe(&step.op), &b);
                    continue;
                }
                progressed = true;
                // `exit` of a forked process is the runner's to do (it ends the child).
                let rec = if p == self.me || matches!(step.op, Op::Exit { .. }) {
                    self.perform(t, step, turn)
                } else {
                    self.remote(p, t, pc[t], turn)
                };
                if rec.failed.is_some() {
                    report.passed = false;
                }
                report.steps.push(rec);
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
        self.vmas = sys::vmas();
        for (i, (p, at, want, _)) in sc.expect.values.iter().enumerate() {
            let got = self.end_read(*p, Cmd::Value { i }, |r| r.read_value(at));
            report.end.push(EndCheck {
                what: format!("{} reads {} = {want}", sc.processes[*p].name, at.text),
                ok: got.as_ref().is_ok_and(|g| g == want),
                detail: match got {
                    Ok(g) => format!("read {g}"),
                    Err(e) => e,
                },
            });
        }
        for (i, (p, at, want, _)) in sc.expect.rss.iter().enumerate() {
            let got = self.end_read(*p, Cmd::Rss { i }, |r| r.read_rss(at));
            report
                .end
                .push(EndCheck::rss(&sc.processes[*p].name, &at.text, *want, got));
        }
        if report.end.iter().any(|c| !c.ok) {
            report.passed = false;
        }
        report
    }

    /// An end-of-run reading of scenario process `p`: `here` in this process, else
    /// `cmd` asked of the forked child that is `p`.
    fn end_read(
        &mut self,
        p: usize,
        cmd: Cmd,
        here: impl FnOnce(&mut Self) -> Result<u64, String>,
    ) -> Result<u64, String> {
        if p == self.me {
            return here(self);
        }
        if self.children[p].is_none() {
            return Err(format!(
                "process {} is not there",
                self.sc.processes[p].name
            ));
        }
        match self.ask(p, &cmd) {
            Ok(Reply::Value(v)) => v,
            Ok(_) => Err("the child answered out of turn".into()),
            Err(e) => Err(e),
        }
    }

    /// The smaps `Rss:` (KiB) of the VMA containing `at`, in this process.
    fn read_rss(&self, at: &Addr) -> Result<u64, String> {
        let a = self
            .resolve(at)
            .ok_or_else(|| format!("{} is not mapped", at.text))?;
        sys::smaps_rss_kib(a).ok_or_else(|| format!("no VMA contains {}", at.text))
    }

    /// A CPU read of `at` for the end check, in this process.
    fn read_value(&mut self, at: &Addr) -> Result<u64, String> {
        self.vmas = sys::vmas();
        match self.resolve(at) {
            None => Err(format!("{} is not mapped", at.text)),
            Some(a) => self.cpu_ok(a, false).map(|()| sys::load(a)),
        }
    }

    /// The scenario's mappings in this process, which [`sys::prefault_self`] skips.
    fn scenario_ranges(&self) -> Vec<(u64, u64)> {
        self.map_at
            .iter()
            .zip(&self.sc.maps)
            .filter_map(|(a, m)| a.map(|a| (a, a + m.len)))
            .collect()
    }

    /// `fork` of the scenario's process `child`: the real process forks (fork's
    /// copy of the page tables, with its restore of device-exclusive entries, is the
    /// kernel's); the child becomes the runner of `child`'s threads and never returns
    /// from here: it answers the runner's [`Cmd`]s until `exit` or the end of the file.
    fn fork(&mut self, child: usize) -> Result<(), String> {
        let io = |e: std::io::Error| e.raw_os_error().map_or_else(|| e.to_string(), errno_name);
        let (c_rx, p_tx) = std::io::pipe().map_err(io)?;
        let (p_rx, c_tx) = std::io::pipe().map_err(io)?;
        match sys::fork().map_err(errno_name)? {
            Some(pid) => {
                drop((c_rx, c_tx));
                // fork write-protected every private page of the runner: fault its own
                // pages in again so that the next step counts only its own faults.
                sys::prefault_self(&self.scenario_ranges());
                self.children[child] = Some(Child {
                    pid,
                    to: p_tx,
                    from: BufReader::new(p_rx),
                });
                self.created[child] = true;
                Ok(())
            }
            None => {
                drop((p_rx, p_tx));
                self.me = child;
                // The children of the parent are not ours (their pipes stay open here,
                // unused).
                for c in &mut self.children {
                    std::mem::forget(c.take());
                }
                self.created[child] = true;
                // What the runner could not check so far is the runner's to report.
                self.unchecked.clear();
                self.serve(BufReader::new(c_rx), c_tx)
            }
        }
    }

    /// The forked child's loop: one [`Cmd`] line in, one [`Reply`] line out.
    fn serve(&mut self, rx: BufReader<std::io::PipeReader>, mut tx: std::io::PipeWriter) -> ! {
        // /proc/self/pagemap opened by the parent reads the parent's page tables.
        match Pagemap::open() {
            Ok(pm) => self.pm = pm,
            Err(e) => {
                eprintln!("svmkit-guest: child: /proc/self/pagemap: {e}");
                sys::exit_now(3);
            }
        }
        sys::prefault_self(&self.scenario_ranges());
        for line in rx.lines() {
            let Ok(line) = line else { break };
            let reply = match serde_json::from_str::<Cmd>(&line) {
                Ok(Cmd::Step { t, pc, turn }) => {
                    let sc = self.sc;
                    let rec = self.perform(t, &sc.threads[t].steps[pc], turn);
                    Reply::Step {
                        rec: Box::new(rec),
                        unchecked: std::mem::take(&mut self.unchecked),
                    }
                }
                Ok(Cmd::Value { i }) => {
                    let at = &self.sc.expect.values[i].1;
                    Reply::Value(self.read_value(at))
                }
                Ok(Cmd::Rss { i }) => {
                    let at = &self.sc.expect.rss[i].1;
                    Reply::Value(self.read_rss(at))
                }
                Ok(Cmd::Exit) | Err(_) => break,
            };
            let Ok(mut text) = serde_json::to_string(&reply) else {
                break;
            };
            text.push('\n');
            if tx.write_all(text.as_bytes()).is_err() {
                break;
            }
        }
        sys::exit_now(0)
    }

    /// Sends `cmd` to the child of process `p` and reads its answer.
    fn ask(&mut self, p: usize, cmd: &Cmd) -> Result<Reply, String> {
        let c = self.children[p]
            .as_mut()
            .ok_or_else(|| "ESRCH".to_string())?;
        let mut text = serde_json::to_string(cmd).map_err(|e| e.to_string())?;
        text.push('\n');
        c.to.write_all(text.as_bytes())
            .map_err(|e| format!("the child process died ({e})"))?;
        let mut line = String::new();
        match c.from.read_line(&mut line) {
            Ok(0) | Err(_) => Err("the child process died".into()),
            Ok(_) => serde_json::from_str(&line).map_err(|e| format!("the child's answer: {e}")),
        }
    }

    /// A step of a thread of the forked process `p`, run in it.
    fn remote(&mut self, p: usize, t: usize, pc: usize, turn: usize) -> StepRecord {
        let step = &self.sc.threads[t].steps[pc];
        match self.ask(p, &Cmd::Step { t, pc, turn }) {
            Ok(Reply::Step { rec, unchecked }) => {
                self.unchecked.extend(unchecked);
                *rec
            }
            other => {
                let why = match other {
                    Err(e) => e,
                    Ok(_) => "the child answered out of turn".into(),
                };
                // The model's answer for a step of a process that is not there.
                let r: StepResult = Err(if self.children[p].is_none() {
                    "ESRCH".into()
                } else {
                    why.clone()
                });
                let expect = step.expect.get(&self.era).unwrap_or(&Outcome::Ok(None));
                StepRecord {
                    result: result_text(&r),
                    waited: false,
                    failed: (!outcome_holds(expect, &r))
                        .then(|| format!("{}, got {}", expect_text(expect), why)),
                    note: step.note.clone(),
                    id: step.id.clone(),
                    ..StepRecord::waited(
                        turn,
                        &self.sc.threads[t].name,
                        self.sc.line_of(step.span.start),
                        self.describe(&step.op),
                    )
                }
            }
        }
    }

    /// Ends the forked child of process `p`, if it lives: `exit`, then wait for it.
    fn end_child(&mut self, p: usize) {
        if let Some(mut c) = self.children[p].take() {
            let _ = c.to.write_all(
                format!(
                    "{}\n",
                    serde_json::to_string(&Cmd::Exit).unwrap_or_default()
                )
                .as_bytes(),
            );
            drop(c.to);
            sys::wait_child(c.pid);
        }
    }

    /// Whether a CPU access at `addr` would complete: aligned (else EINVAL, as the
    /// model), inside a VMA of /proc/self/maps that permits it (else SIGSEGV, which the
    /// kernel would raise: `bad_area()` before `handle_mm_fault()`, so no fault counts).
    fn cpu_ok(&self, addr: u64, write: bool) -> Result<(), String> {
        if !addr.is_multiple_of(8) {
            return Err("EINVAL".into());
        }
        match sys::vma_of(&self.vmas, addr) {
            Some(v) if v.write || (!write && v.read) => {}
            _ => return Err("SIGSEGV".into()),
        }
        // Registered in WP mode with UFFD_FEATURE_SIGBUS, the write would be a
        // userfault killing the runner; the model has no userfault to deliver, so this
        // is a divergence to report, not a step to run.
        if write && self.uffd.is_some() && self.entry(addr).uffd_wp {
            return Err("userfault (not run: the page is uffd-wp protected)".into());
        }
        Ok(())
    }

    /// `UFFDIO_WRITEPROTECT`, registering the VMA of `addr` in write-protect mode
    /// first (once; the whole VMA, so that registration splits nothing). `ENOENT` if
    /// nothing is mapped at `addr`, as the model answers.
    fn uffd_writeprotect(&mut self, addr: u64, len: u64, protect: bool) -> Result<(), String> {
        let Some(vma) = sys::vma_of(&self.vmas, addr) else {
            return Err("ENOENT".into());
        };
        if self.uffd.is_none() {
            self.uffd = Some(sys::Uffd::open().map_err(errno_name)?);
        }
        let uffd = self.uffd.as_ref().ok_or("EINVAL")?;
        if !self.wp_registered.contains(&vma.start) {
            uffd.register_wp(vma.start, vma.end - vma.start)
                .map_err(errno_name)?;
            self.wp_registered.push(vma.start);
        }
        uffd.writeprotect(addr, len, protect).map_err(errno_name)
    }

    fn run_step(
        &mut self,
        t: usize,
        step: &Step,
        faults: &mut u64,
        cpages: &mut Option<u64>,
    ) -> StepResult {
        let addr = |r: &Self, a: &Addr| r.resolve(a).ok_or_else(|| "EFAULT".to_string());
        match &step.op {
            Op::Read { at } => {
                let a = addr(self, at)?;
                self.cpu_ok(a, false)?;
                let f0 = sys::faults_now();
                let v = sys::load(a);
                *faults = sys::faults_now() - f0;
                Ok(Some(v))
            }
            Op::Write { at, value } => {
                let a = addr(self, at)?;
                self.cpu_ok(a, true)?;
                let f0 = sys::faults_now();
                sys::store(a, *value);
                *faults = sys::faults_now() - f0;
                Ok(None)
            }
            Op::FetchAdd { at, value } => {
                let a = addr(self, at)?;
                self.cpu_ok(a, true)?;
                let f0 = sys::faults_now();
                let v = sys::fetch_add(a, *value);
                *faults = sys::faults_now() - f0;
                Ok(Some(v))
            }
            Op::Mmap { map } => self.map(*map).map(Some),
            Op::Munmap { at, len } => sys::munmap(addr(self, at)?, *len)
                .map(|()| None)
                .map_err(errno_name),
            Op::Mremap {
                at,
                len,
                new_len,
                to,
                flags,
            } => {
                let old = addr(self, at)?;
                let new_addr = match to {
                    Some(t) => addr(self, t)?,
                    None => 0,
                };
                let r =
                    sys::mremap(old, *len, *new_len, flags.bits(), new_addr).map_err(errno_name)?;
                // As the model's world: the mapping's name follows a move of its start.
                if let (Some(m), 0) = (at.map, at.offset) {
                    self.map_at[m] = Some(r);
                }
                Ok(Some(r))
            }
            Op::Mprotect { at, len, prot } => sys::mprotect(addr(self, at)?, *len, prot.bits())
                .map(|()| None)
                .map_err(errno_name),
            Op::Madvise { at, len, advice: a } => madvise(addr(self, at)?, *len, *a)
                .map(|()| None)
                .map_err(errno_name),
            Op::Fork { child } => self.fork(*child).map(|()| None),
            Op::Exit { process } => {
                if self.children[*process].is_none() {
                    return Err("ESRCH".into());
                }
                self.end_child(*process);
                Ok(None)
            }
            Op::UffdWp { at, len, protect } => self
                .uffd_writeprotect(addr(self, at)?, *len, *protect)
                .map(|()| None),
            Op::ClearSoftDirty => {
                std::fs::write("/proc/self/clear_refs", "4")
                    .map_err(|e| e.raw_os_error().map_or_else(|| e.to_string(), errno_name))?;
                self.vm_softdirty.fill(false);
                Ok(None)
            }
            // unsupported() turns such files away before they run.
            Op::Khugepaged => Err("khugepaged has no user-space trigger".into()),
            Op::Dmirror {
                cmd,
                at,
                pages,
                value,
            } => {
                let a = addr(self, at)?;
                let Actor::Device(d) = self.sc.threads[t].actor else {
                    return Err("EINVAL".into());
                };
                if pages.saturating_mul(PAGE) > 64 << 20 {
                    return Err("EINVAL".into());
                }
                let mut buf = vec![0u64; (*pages * PAGE / 8) as usize];
                if matches!(cmd, DmirrorCmd::Write) {
                    buf.fill(*value);
                }
                let mut c = sys::DmirrorCmd {
                    addr: a,
                    npages: *pages,
                    ..Default::default()
                };
                let fd = &self.fds[d];
                let r = match cmd {
                    DmirrorCmd::Read => {
                        sys::dmirror_ioctl::<{ sys::HMM_DMIRROR_READ }>(fd, &mut c, &mut buf)
                    }
                    DmirrorCmd::Write => {
                        sys::dmirror_ioctl::<{ sys::HMM_DMIRROR_WRITE }>(fd, &mut c, &mut buf)
                    }
                    DmirrorCmd::Exclusive => {
                        sys::dmirror_ioctl::<{ sys::HMM_DMIRROR_EXCLUSIVE }>(fd, &mut c, &mut buf)
                    }
                    DmirrorCmd::CheckExclusive => sys::dmirror_ioctl::<
                        { sys::HMM_DMIRROR_CHECK_EXCLUSIVE },
                    >(fd, &mut c, &mut buf),
                };
                r.map_err(errno_name)?;
                *cpages = Some(c.cpages);
                Ok(Some(match cmd {
                    DmirrorCmd::Read | DmirrorCmd::Exclusive => buf.first().copied().unwrap_or(0),
                    _ => c.cpages,
                }))
            }
            Op::Fill { at, pages, value } => {
                let a = addr(self, at)?;
                if pages.saturating_mul(PAGE) > 64 << 20 {
                    return Err("EINVAL".into());
                }
                let mut i = 0u64;
                for p in 0..*pages {
                    let page = a + p * PAGE;
                    self.cpu_ok(page, true)?;
                    for w in 0..PAGE / 8 {
                        sys::store(page + w * 8, value.wrapping_add(i));
                        i += 1;
                    }
                }
                Ok(Some(i))
            }
            Op::Touch { at, pages, value } => {
                let a = addr(self, at)?;
                let ok = (0..*pages)
                    .take_while(|p| self.cpu_ok(a + p * PAGE, true).is_ok())
                    .count() as u64;
                let f0 = sys::faults_now();
                for p in 0..ok {
                    sys::store(a + p * PAGE, *value);
                }
                *faults = sys::faults_now() - f0;
                if ok < *pages {
                    return self.cpu_ok(a + ok * PAGE, true).map(|()| None);
                }
                Ok(Some(*pages))
            }
            Op::Compare { at, pages, value } => {
                let a = addr(self, at)?;
                if pages.saturating_mul(PAGE) > 64 << 20 {
                    return Err("EINVAL".into());
                }
                let mut i = 0u64;
                let mut differ = 0u64;
                for p in 0..*pages {
                    let page = a + p * PAGE;
                    self.cpu_ok(page, false)?;
                    for w in 0..PAGE / 8 {
                        if sys::load(page + w * 8) != value.wrapping_add(i) {
                            differ += 1;
                        }
                        i += 1;
                    }
                }
                Ok(Some(differ))
            }
            Op::AtomicAdd { at, value } => {
                let a = addr(self, at)?;
                let Actor::Device(d) = self.sc.threads[t].actor else {
                    return Err("EINVAL".into());
                };
                let Driver::SvmAtomic { flaws, max_passes } = &self.sc.devices[d].driver else {
                    return Err("EINVAL".into());
                };
                let mut c = sys::SvlAtomic {
                    addr: a,
                    delta: *value,
                    max_passes: *max_passes as u32,
                    flags: svl_flags(flaws, *max_passes)?,
                    ..Default::default()
                };
                let r = sys::svl_atomic(&self.fds[d], &mut c);
                let n = (c.npasses as usize).min(sys::SVL_MAX_PASSES);
                let name = &self.sc.devices[d].name;
                // `faults` of an atomic_add is the passes of the fault loop over all
                // its faults, as the model counts them (a timeout record is no pass).
                *faults = c.passes[..n]
                    .iter()
                    .filter(|p| p.what & sys::SVL_PASS_TIMEOUT == 0)
                    .count() as u64;
                self.decisions = c.passes[..n]
                    .iter()
                    .enumerate()
                    .map(|(i, p)| pass_text(name, i + 1, p))
                    .collect();
                if c.nfaults > 1 {
                    self.decisions
                        .push(format!("{name}: {} device faults", c.nfaults));
                }
                if c.classic_clears > 0 {
                    self.decisions.push(format!(
                        "{name}: the whole-mm notifier dropped {} device mapping(s)",
                        c.classic_clears
                    ));
                }
                r.map_err(errno_name)?;
                Ok(Some(c.old))
            }
            other => Err(format!("{} is not supported", op_name(other))),
        }
    }

    fn perform(&mut self, t: usize, step: &Step, turn: usize) -> StepRecord {
        let line = self.sc.line_of(step.span.start);
        let a = self.step_addr(&step.op);
        self.vmas = sys::vmas();
        let before = a.map(|a| self.entry(a));
        let text = self.describe(&step.op);
        let mut faults = 0;
        let mut cpages = None;
        self.decisions.clear();
        let r = self.run_step(t, step, &mut faults, &mut cpages);
        self.vmas = sys::vmas();
        let after = a.map(|a| self.entry(a));
        let era = self.era.clone();
        let mut failed = None;
        let expect = step.expect.get(&era).unwrap_or(&Outcome::Ok(None));
        if !outcome_holds(expect, &r) {
            failed = Some(format!("{}, got {}", expect_text(expect), result_text(&r)));
        }
        if failed.is_none()
            && let Some(e) = &step.expect_pte
        {
            failed = self.check_pte(e, a, after.as_ref(), line);
        }
        let devices: Vec<String> = a.map_or_else(Vec::new, |a| {
            (0..self.sc.devices.len())
                .filter_map(|d| self.device_entry(d, a))
                .collect()
        });
        // An svm_atomic device answers what it maps; a dmirror one cannot be asked.
        let mut device_unchecked = false;
        for (d, want) in &step.expect_device {
            if !matches!(self.sc.devices[*d].driver, Driver::SvmAtomic { .. }) {
                device_unchecked = true;
                continue;
            }
            let name = &self.sc.devices[*d].name;
            let got = a.and_then(|a| self.device_entry(*d, a)).is_some();
            // The module maps with read, write and atomic rights or not at all.
            let want_some = want.is_some();
            if failed.is_none() && got != want_some {
                failed = Some(format!(
                    "{name}'s entry to be {}, got {}",
                    if want_some { "mapped" } else { "none" },
                    if got { "rwa" } else { "none" }
                ));
            }
        }
        for (what, present) in [
            ("expect_device", device_unchecked),
            ("expect_events", step.expect_events.is_some()),
            ("expect_refcount", step.expect_refcount.is_some()),
            ("expect_mapcount", step.expect_mapcount.is_some()),
        ] {
            if present {
                self.unchecked.push(format!("line {line}: {what}"));
            }
        }
        if failed.is_none()
            && let Some(want) = step.expect_faults.as_ref().and_then(|f| f.get(&era))
            && faults != *want
        {
            failed = Some(format!("page faults: {want}, got {faults}"));
        }
        if failed.is_none()
            && let Some(want) = step.expect_cpages.as_ref().and_then(|c| c.get(&era))
            && cpages != Some(*want)
        {
            failed = Some(format!(
                "cpages {want}, got {}",
                cpages.map_or_else(|| "none (the ioctl failed)".to_string(), |c| c.to_string())
            ));
        }
        let result = match (&step.op, &r) {
            (Op::Mmap { .. } | Op::Mremap { .. }, Ok(Some(v))) => format!("= {v:#x}"),
            _ => result_text(&r),
        };
        StepRecord {
            turn,
            thread: self.sc.threads[t].name.clone(),
            line,
            step: text,
            result,
            waited: false,
            pte: before.zip(after).map(|(b, a)| (b.text(), a.text())),
            events: Vec::new(),
            decisions: std::mem::take(&mut self.decisions),
            devices,
            faults: matches!(
                step.op,
                Op::Read { .. }
                    | Op::Write { .. }
                    | Op::FetchAdd { .. }
                    | Op::Touch { .. }
                    | Op::AtomicAdd { .. }
            )
            .then_some(faults),
            cpages,
            folio: None,
            failed,
            note: step.note.clone(),
            id: step.id.clone(),
        }
    }

    fn check_pte(
        &mut self,
        e: &PteExpect,
        step_addr: Option<u64>,
        after: Option<&Entry>,
        line: usize,
    ) -> Option<String> {
        let kind = *e.kind.get(&self.era)?;
        let flags: Vec<(PteFlag, bool)> = e
            .flags
            .iter()
            .filter_map(|(f, b)| b.get(&self.era).map(|b| (*f, *b)))
            .collect();
        let (entry, where_) = match &e.at {
            None => (*after?, String::new()),
            Some(at) => match self.resolve(at) {
                Some(a) => (self.entry(a), format!(" at {}", at.text)),
                None => return Some(format!("the PTE: {} to be mapped, it is not", at.text)),
            },
        };
        let want = pte_expect_text(kind, &flags);
        let got = entry.text();
        match entry_is(&entry, kind) {
            Some(false) => return Some(format!("the PTE{where_} to be {want}, got {got}")),
            None => self
                .unchecked
                .push(format!("line {line}: expect_pte kind {}", kind.name())),
            Some(true) => {}
        }
        let addr = match &e.at {
            None => step_addr,
            Some(at) => self.resolve(at),
        };
        let vm_softdirty = addr.is_some_and(|a| {
            self.sc.maps.iter().enumerate().any(|(m, map)| {
                self.vm_softdirty[m]
                    && self.map_at[m].is_some_and(|base| base <= a && a < base + map.len)
            })
        });
        for (f, b) in flags {
            match entry_flag(&entry, f) {
                Ok(have) if have == b => {}
                // pagemap ORs the VMA's VM_SOFTDIRTY in: the entry's own bit is unknown.
                Ok(true) if f == PteFlag::SoftDirty && vm_softdirty => {
                    self.unchecked.push(format!(
                        "line {line}: expect_pte soft_dirty = false (the VMA has VM_SOFTDIRTY)"
                    ))
                }
                Ok(_) => return Some(format!("the PTE{where_} to be {want}, got {got}")),
                Err(Some(why)) => {
                    return Some(format!("the PTE{where_} to be {want}, got {got} ({why})"));
                }
                Err(None) => self
                    .unchecked
                    .push(format!("line {line}: expect_pte {}", f.key())),
            }
        }
        None
    }
}

/// The scenario process a thread acts in: its own, or its device's.
fn thread_process(sc: &Scenario, t: usize) -> usize {
    match sc.threads[t].actor {
        Actor::Process(p) => p,
        Actor::Device(d) => sc.devices[d].process,
    }
}
