//! The model a scenario runs on and the steps it can take: shared by `svmkit run`'s
//! deterministic schedule ([`crate::engine`]) and the explorer ([`crate::explore`]),
//! so a step means the same thing, is checked the same way and is written down the
//! same way in both.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};

use svmkit::device::DevRights;
use svmkit::device::dmirror::{Dmirror, DmirrorIoctl, HmmDmirrorCmd};
use svmkit::device::svm_atomic::SvmAtomic;
use svmkit::device::uvm::Uvm;
use svmkit::mm::mmu_notifier::{NotifierCallKind, RecordingNotifier};
use svmkit::mm::{ExclusiveFolio, GupFlags, MapFlags, MmUser, Pte, PteFlags, SwapPte};
use svmkit::sync::Arc;
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Pfn, Profile, System, SystemConfig, VirtAddr};

use crate::ast::*;
use crate::engine::{EndCheck, FolioCounts, Hang, RunReport, StepError, StepRecord};

/// What a thread holds across steps.
pub(crate) enum Held {
    Exclusive(ExclusiveFolio),
    Pages { pfns: Vec<Pfn>, pin: bool },
}

pub(crate) enum Dev {
    Dmirror(Dmirror),
    Svm(SvmAtomic),
    Uvm(Uvm),
}

impl Dev {
    fn device(&self) -> &Arc<svmkit::device::Device> {
        match self {
            Dev::Dmirror(d) => d.device(),
            Dev::Svm(s) => s.device(),
            Dev::Uvm(u) => u.device(),
        }
    }
}

/// The model a scenario runs on, and what the scenario's threads share.
///
/// Every field a step changes sits behind a std mutex held only to read or swap a
/// value, never across a model call: under exploration the threads are shuttle tasks
/// on one OS thread, switched only at the model's (facade) locks, so these mutexes are
/// never contended and add no scheduling points; under `svmkit run` one thread runs.
/// Values the model drops (an exiting mm, a released guard, a closed device) are taken
/// out first and dropped after the mutex is released, since dropping them locks.
pub(crate) struct World {
    pub(crate) sc: Arc<Scenario>,
    pub(crate) sys: Arc<System>,
    /// Processes by index; `None` before a fork created it or after it exited.
    procs: Mutex<Vec<Option<MmUser>>>,
    recorders: Mutex<Vec<Option<Arc<RecordingNotifier>>>>,
    /// Whether each process has been created (at the start or by a fork).
    created: Mutex<Vec<bool>>,
    /// Mapping start addresses, once mapped.
    map_at: Mutex<Vec<Option<u64>>>,
    devs: Mutex<Vec<Option<Arc<Dev>>>>,
    /// Guards held: (thread, name) → what.
    held: Mutex<BTreeMap<(usize, String), Held>>,
    tasks: Vec<Task>,
    /// Notifier range starts minus ends seen so far (they pair up once nothing runs).
    open_ranges: std::sync::atomic::AtomicI64,
    /// The era the run uses (its profile's name): which per-era values apply.
    era: &'static str,
}

/// Locks one of the world's mutexes; a panic elsewhere never leaves them inconsistent
/// (each critical section is a read or a swap), so poisoning is ignored.
fn lk<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A zeroed buffer of `pages` pages for a buffer-wide step (at most 64 MiB, what the
/// dmirror steps allow too).
fn buffer(pages: u64) -> Result<Vec<u8>, StepError> {
    let bytes = usize::try_from(pages.saturating_mul(PAGE_SIZE)).map_err(|_| Errno::EINVAL)?;
    if bytes > 64 << 20 {
        return Err(Errno::EINVAL.into());
    }
    Ok(vec![0u8; bytes])
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
            "present pfn {:#x}{} {}{}{}{}",
            p.pfn.raw(),
            if p.is_special() { " zero-page" } else { "" },
            if p.is_write() { "rw" } else { "ro" },
            if p.is_dirty() { " dirty" } else { "" },
            if p.flags.contains(PteFlags::SOFT_DIRTY) {
                " soft-dirty"
            } else {
                ""
            },
            if p.flags.contains(PteFlags::UFFD_WP) {
                " uffd-wp"
            } else {
                ""
            }
        ),
        Pte::Swap(s) if s.is_device_exclusive() => format!(
            "device-exclusive pfn {:#x}{}{}",
            s.pfn().map_or(0, |p| p.raw()),
            swp_bits(s),
            if s.is_writable_device_exclusive() {
                ""
            } else {
                " ro"
            }
        ),
        Pte::Swap(s) if s.is_migration() => {
            format!(
                "migration pfn {:#x}{}",
                s.pfn().map_or(0, |p| p.raw()),
                swp_bits(s)
            )
        }
        Pte::Swap(s) => format!("swap slot {}{}", s.offset, swp_bits(s)),
    }
}

/// The PTE-level bits of a non-present entry, as the account prints them.
fn swp_bits(s: SwapPte) -> String {
    format!(
        "{}{}",
        if s.soft_dirty { " soft-dirty" } else { "" },
        if s.uffd_wp { " uffd-wp" } else { "" }
    )
}

/// Bit `f` of the entry, or why it has none.
fn entry_flag(e: Entry, f: PteFlag) -> Result<bool, &'static str> {
    let present = |p: svmkit::mm::PresentPte| match f {
        PteFlag::Write => p.is_write(),
        PteFlag::Dirty => p.is_dirty(),
        PteFlag::Young => p.is_young(),
        PteFlag::SoftDirty => p.flags.contains(PteFlags::SOFT_DIRTY),
        PteFlag::UffdWp => p.flags.contains(PteFlags::UFFD_WP),
    };
    match e {
        Entry::HugePmd(p) | Entry::Pte(Pte::Present(p)) => Ok(present(p)),
        Entry::Pte(Pte::None) => Err("a none PTE has no bits"),
        Entry::Pte(Pte::Swap(s)) => match f {
            PteFlag::SoftDirty => Ok(s.soft_dirty),
            PteFlag::UffdWp => Ok(s.uffd_wp),
            PteFlag::Write if s.is_device_exclusive() => Ok(s.is_writable_device_exclusive()),
            PteFlag::Write if s.is_migration() => {
                Ok(s.swp_type == svmkit::mm::swp_type::SWP_MIGRATION_WRITE)
            }
            PteFlag::Write => Err("a swap entry has no write bit"),
            PteFlag::Dirty | PteFlag::Young => Err("a non-present entry has no dirty or young bit"),
        },
    }
}

/// The frame the entry maps (a present PTE, a huge PMD's head, a device-exclusive or
/// migration entry's pfn).
fn entry_pfn(e: Entry) -> Option<Pfn> {
    match e {
        Entry::HugePmd(p) | Entry::Pte(Pte::Present(p)) => Some(p.pfn),
        Entry::Pte(Pte::Swap(s)) => s.pfn(),
        Entry::Pte(Pte::None) => None,
    }
}

/// An expected PTE as the failure text says it: `present-rw, dirty, not soft_dirty`.
fn pte_expect_text(kind: PteKind, flags: &[(PteFlag, bool)]) -> String {
    let mut s = kind.name().to_string();
    for (f, b) in flags {
        s.push_str(if *b { ", " } else { ", not " });
        s.push_str(f.key());
    }
    s
}

fn pte_is(p: Pte, k: PteKind) -> bool {
    match (k, p) {
        (PteKind::None, Pte::None) => true,
        (PteKind::Present, Pte::Present(_)) => true,
        // Only the zero page is mapped special (`pte_special()`, `do_anonymous_page()`).
        (PteKind::ZeroPage, Pte::Present(p)) => p.is_special(),
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

/// A step's result: a value, or a failure, or nothing.
pub(crate) type StepResult = Result<Option<u64>, StepError>;

impl World {
    fn thread_process(&self, t: usize) -> usize {
        crate::engine::w_thread_process(&self.sc, t)
    }

    pub(crate) fn resolve(&self, a: &Addr) -> Option<u64> {
        match a.map {
            None => Some(a.offset),
            Some(m) => lk(&self.map_at)[m].map(|base| base.wrapping_add(a.offset)),
        }
    }

    /// The process's mm, if it exists now.
    fn proc(&self, p: usize) -> Option<MmUser> {
        lk(&self.procs)[p].clone()
    }

    /// Whether process `p` was ever created (it may have exited since).
    pub(crate) fn was_created(&self, p: usize) -> bool {
        lk(&self.created)[p]
    }

    fn dev(&self, d: usize) -> Option<Arc<Dev>> {
        lk(&self.devs)[d].clone()
    }

    fn entry(&self, p: usize, addr: u64) -> Entry {
        if let (Some(mm), Ok(va)) = (self.proc(p), VirtAddr::try_new(addr))
            && let svmkit::mm::Pmd::Huge(h) = mm.pmd_get_lockless(va)
        {
            return Entry::HugePmd(h);
        }
        Entry::Pte(self.pte(p, addr))
    }

    fn pte(&self, p: usize, addr: u64) -> Pte {
        match (self.proc(p), VirtAddr::try_new(addr)) {
            (Some(mm), Ok(va)) => mm.pte_get_lockless(va.page_align_down()),
            _ => Pte::None,
        }
    }

    /// Whether thread `t`'s task has been sent SIGKILL (a `kill` step).
    pub(crate) fn killed(&self, t: usize) -> bool {
        self.tasks[t].fatal_signal_pending()
    }

    /// The folio a locking step on `addr` would lock, if it is locked now (by a held
    /// guard or a leak): what the thread would sleep on.
    pub(crate) fn would_block(&self, t: usize, step: &Step) -> Option<String> {
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
            // make_device_exclusive locks a mapped page's folio with
            // folio_lock_killable: a killed task does not sleep there, it returns EINTR.
            let killable = locks_present && matches!(self.pte(p, addr), Pte::Present(_));
            if killable && self.killed(t) {
                continue;
            }
            if mem.folio_test_locked(folio) {
                let holder = lk(&self.held)
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

    pub(crate) fn describe(&self, op: &Op) -> String {
        crate::describe::describe(&self.sc, op, |a| self.resolve(a))
    }

    fn mm(&self, p: usize) -> Result<MmUser, StepError> {
        self.proc(p).ok_or(StepError::NoProcess)
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

    fn map(&self, m: usize) -> Result<u64, StepError> {
        let map = &self.sc.maps[m];
        let mm = self.mm(map.process)?;
        let mut flags = MapFlags::ANONYMOUS
            | if map.shared {
                MapFlags::SHARED
            } else {
                MapFlags::PRIVATE
            };
        if map.at.is_some() {
            flags |= MapFlags::FIXED;
        }
        if map.hugetlb {
            flags |= MapFlags::HUGETLB;
        }
        let addr = mm
            .mmap(map.at.unwrap_or(0), map.len, map.prot, flags)?
            .raw();
        for a in &map.advice {
            mm.madvise(addr, map.len, *a)?;
        }
        lk(&self.map_at)[m] = Some(addr);
        Ok(addr)
    }

    /// Runs the step; adds the faults it took to `faults` (CPU page faults of a read,
    /// write or fetch_add; fault-loop passes of an atomic_add) and sets `cpages` to a
    /// dmirror ioctl's `cpages` when it returns.
    fn run_step(
        &self,
        t: usize,
        step: &Step,
        faults: &mut u64,
        cpages: &mut Option<u64>,
    ) -> StepResult {
        let p = self.thread_process(t);
        let task = &self.tasks[t];
        let addr = |w: &World, a: &Addr| w.resolve(a).ok_or(StepError::Errno(Errno::EFAULT));
        let cpu = |r: Result<u64, svmkit::FaultError>| -> StepResult {
            r.map(Some).map_err(|e| match e.kind {
                svmkit::FaultKind::Unmapped | svmkit::FaultKind::Protection => StepError::Sigsegv,
                svmkit::FaultKind::Bus => StepError::Sigbus,
                svmkit::FaultKind::OutOfMemory => StepError::Errno(Errno::ENOMEM),
                svmkit::FaultKind::Misaligned => StepError::Errno(Errno::EINVAL),
                svmkit::FaultKind::Livelock => StepError::Livelock,
            })
        };
        let owner = match self.sc.threads[t].actor {
            Actor::Device(d) => self.dev(d).map(|d| d.device().owner()),
            Actor::Process(_) => None,
        };
        match &step.op {
            Op::Read { at } => cpu(self.mm(p)?.read_u64_counting(addr(self, at)?, faults)),
            Op::Write { at, value } => cpu(self
                .mm(p)?
                .write_u64_counting(addr(self, at)?, *value, faults)
                .map(|()| 0))
            .map(|_| None),
            Op::FetchAdd { at, value } => {
                cpu(self
                    .mm(p)?
                    .fetch_add_u64_counting(addr(self, at)?, *value, faults))
            }
            Op::Mmap { map } => self.map(*map).map(Some),
            Op::Munmap { at, len } => {
                Ok(self.mm(p)?.munmap(addr(self, at)?, *len).map(|()| None)?)
            }
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
                let r = self.mm(p)?.mremap(old, *len, *new_len, *flags, new_addr)?;
                // The mapping's name follows a move of its start.
                if let (Some(m), 0) = (at.map, at.offset) {
                    lk(&self.map_at)[m] = Some(r);
                }
                Ok(Some(r))
            }
            Op::Mprotect { at, len, prot } => Ok(self
                .mm(p)?
                .mprotect(addr(self, at)?, *len, *prot)
                .map(|()| None)?),
            Op::Madvise { at, len, advice } => Ok(self
                .mm(p)?
                .madvise(addr(self, at)?, *len, *advice)
                .map(|()| None)?),
            Op::Mlock { at, len, onfault } => {
                let flags = if *onfault {
                    svmkit::mm::MLOCK_ONFAULT
                } else {
                    0
                };
                Ok(self
                    .mm(p)?
                    .mlock2(addr(self, at)?, *len, flags)
                    .map(|()| None)?)
            }
            Op::Munlock { at, len } => {
                Ok(self.mm(p)?.munlock(addr(self, at)?, *len).map(|()| None)?)
            }
            Op::NumaScan { at, len } => Ok(Some(self.mm(p)?.numa_scan(addr(self, at)?, *len)?)),
            Op::NrMlock => Ok(Some(self.sys.mem().nr_mlock().max(0) as u64)),
            Op::KsmScan => Ok(Some(self.mm(p)?.ksm_scan())),
            Op::Fork { child } => {
                let parent = self.mm(p)?;
                let c = self.sys.fork(&parent)?;
                let rec = RecordingNotifier::passive();
                c.mmu_notifier_register(rec.clone())?;
                lk(&self.recorders)[*child] = Some(rec);
                let old = lk(&self.procs)[*child].replace(c);
                // The scheduling-point checks read every process's notifiers.
                svmkit::check::model_changed();
                lk(&self.created)[*child] = true;
                drop(old);
                Ok(None)
            }
            Op::Exit { process } => {
                let mm = lk(&self.procs)[*process].take();
                svmkit::check::model_changed();
                let mm = mm.ok_or(StepError::NoProcess)?;
                drop(mm);
                Ok(None)
            }
            Op::ClearSoftDirty => {
                self.mm(p)?.clear_refs_soft_dirty();
                Ok(None)
            }
            Op::Khugepaged => {
                let results = self.mm(p)?.khugepaged_scan();
                let collapsed = results
                    .iter()
                    .filter(|(_, r)| *r == svmkit::mm::ScanResult::Succeed)
                    .count();
                Ok(Some(collapsed as u64))
            }
            Op::UffdWp { at, len, protect } => Ok(self
                .mm(p)?
                .uffd_writeprotect(addr(self, at)?, *len, *protect)
                .map(|()| None)?),
            Op::MakeExclusive { at, hold } => {
                let a = addr(self, at)?;
                let mm = self.mm(p)?;
                let g = {
                    let mut guard = mm.mmap_read_lock();
                    mm.make_device_exclusive(&mut guard, a, owner, task)?
                };
                let page = g.page().raw();
                match hold {
                    Some(h) => {
                        let old = lk(&self.held).insert((t, h.clone()), Held::Exclusive(g));
                        if let Some(old) = old {
                            self.release(old);
                        }
                    }
                    None => drop(g),
                }
                Ok(Some(page))
            }
            Op::MakeExclusiveRange { at, pages } => {
                let a = addr(self, at)?;
                let mm = self.mm(p)?;
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
            Op::Kill { thread } => {
                self.tasks[*thread].kill();
                Ok(None)
            }
            Op::Release { guard } => match self.take_held(t, guard) {
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
                let mm = self.mm(p)?;
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
                let old = lk(&self.held).insert((t, hold.clone()), Held::Pages { pfns, pin: *pin });
                if let Some(old) = old {
                    self.release(old);
                }
                Ok(Some(n))
            }
            Op::Unpin { hold } => match self.take_held(t, hold) {
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
                match self.dev(d).as_deref() {
                    Some(Dev::Svm(s)) => Ok(s
                        .atomic_fetch_add_counting(task, a, *value, faults)
                        .map(Some)?),
                    Some(Dev::Uvm(u)) => {
                        // One device thread per device: the passes counted meanwhile
                        // are this atomic's.
                        let before = u.stats().passes.load(Ordering::Relaxed);
                        let r = u.atomic_fetch_add(task, a, *value);
                        *faults += u.stats().passes.load(Ordering::Relaxed) - before;
                        Ok(r.map(Some)?)
                    }
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
                let dev = self.dev(d);
                let Some(Dev::Dmirror(dm)) = dev.as_deref() else {
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
                *cpages = Some(c.cpages);
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
            Op::Fill { at, pages, value } => {
                let a = addr(self, at)?;
                let mut buf = buffer(*pages)?;
                for (i, w) in buf.chunks_exact_mut(8).enumerate() {
                    w.copy_from_slice(&value.wrapping_add(i as u64).to_le_bytes());
                }
                cpu(self.mm(p)?.write_bytes(a, &buf).map(|()| 0))?;
                Ok(Some(buf.len() as u64 / 8))
            }
            Op::Touch { at, pages, value } => {
                let a = addr(self, at)?;
                let mm = self.mm(p)?;
                for i in 0..*pages {
                    let page = a.checked_add(i * PAGE_SIZE).ok_or(Errno::EFAULT)?;
                    cpu(mm.write_u64_counting(page, *value, faults).map(|()| 0))?;
                }
                Ok(Some(*pages))
            }
            Op::Compare { at, pages, value } => {
                let a = addr(self, at)?;
                let mut buf = buffer(*pages)?;
                cpu(self.mm(p)?.read_bytes(a, &mut buf).map(|()| 0))?;
                let differ = buf
                    .chunks_exact(8)
                    .enumerate()
                    .filter(|(i, w)| {
                        u64::from_le_bytes((*w).try_into().unwrap_or([0; 8]))
                            != value.wrapping_add(*i as u64)
                    })
                    .count();
                Ok(Some(differ as u64))
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
            | Op::Mlock { at, .. }
            | Op::Munlock { at, .. }
            | Op::NumaScan { at, .. }
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
            Op::Mmap { map } => lk(&self.map_at)[*map],
            _ => None,
        }
    }

    fn owner_name(&self, raw: u64) -> String {
        let devs = lk(&self.devs);
        self.sc
            .devices
            .iter()
            .zip(devs.iter())
            .find(|(_, d)| d.as_ref().is_some_and(|d| d.device().owner().raw() == raw))
            .map_or_else(|| format!("{raw:#x}"), |(d, _)| d.name.clone())
    }

    /// The notifier state at this moment, for an exploration's hook at every
    /// scheduling point (it takes no facade lock): every process's interval-notifier
    /// state ([`svmkit::mm::Mm::check_notifiers_now`]), and pairing so far: no
    /// recorder saw more range ends than starts. `Ok(false)`: a process's notifier
    /// lock was held, its state not read.
    pub(crate) fn check_notifiers_now(&self) -> Result<bool, String> {
        let mut complete = true;
        // Under the world's lock rather than on a copy: dropping a copied MmUser is
        // an mmput, which must not run inside the hook.
        for (p, mm) in lk(&self.procs).iter().enumerate() {
            if let Some(mm) = mm {
                match mm.check_notifiers_now_complete() {
                    None => complete = false,
                    Some(r) => {
                        r.map_err(|e| format!("process {}: {e}", self.sc.processes[p].name))?;
                    }
                }
            }
        }
        // Under the lock too (no copy: this runs at every scheduling point), which
        // only each recorder's own std lock nests in.
        let open = self.open_ranges.load(Ordering::Relaxed)
            + lk(&self.recorders)
                .iter()
                .flatten()
                .map(|r| r.open_ranges())
                .sum::<i64>();
        if open < 0 {
            return Err(format!(
                "notifier ranges: {} more invalidate_range_end than start",
                -open
            ));
        }
        Ok(complete)
    }

    /// Notifier range starts minus ends seen so far (`take_events` counts them).
    pub(crate) fn ranges_open(&self) -> i64 {
        self.open_ranges.load(Ordering::Relaxed)
    }

    /// The events are written out only if `text` (counting them is all an unrecorded
    /// step needs).
    pub(crate) fn take_events(&self, text: bool) -> Vec<String> {
        let mut out = Vec::new();
        let recorders: Vec<_> = lk(&self.recorders).clone();
        for (i, r) in recorders.iter().enumerate() {
            let Some(r) = r else { continue };
            for c in r.take() {
                match c.kind {
                    NotifierCallKind::Start => {
                        self.open_ranges.fetch_add(1, Ordering::Relaxed);
                    }
                    NotifierCallKind::End => {
                        self.open_ranges.fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
                    NotifierCallKind::Release => {}
                    _ => continue,
                }
                if !text {
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

impl World {
    /// A hung-task report of a run whose current step never returned (read from
    /// another thread while the step sleeps: the world's mutexes are never held across
    /// a model call). It lists every folio locked now and who holds it (a guard of the
    /// scenario, or a lock a driver leaked on a retry), and for each device fault in
    /// flight, what the PTE there needs: a device-exclusive entry's restore takes its
    /// folio's lock (spec 3). A task asleep on a lock it leaked itself is a
    /// self-deadlock (spec 8 item 22, 9.6).
    pub(crate) fn diagnose_hang(&self, stalled: std::time::Duration) -> Hang {
        let mem = self.sys.mem();
        let devs: Vec<Option<Arc<Dev>>> = lk(&self.devs).clone();
        let drivers: Vec<&SvmAtomic> = devs
            .iter()
            .filter_map(|d| match d.as_deref() {
                Some(Dev::Svm(s)) => Some(s),
                _ => None,
            })
            .collect();
        let leaked: Vec<(String, svmkit::device::svm_atomic::LeakedFolio)> = drivers
            .iter()
            .flat_map(|d| {
                d.leaked_folios()
                    .into_iter()
                    .map(|l| (d.device().name().to_string(), l))
            })
            .collect();
        let uvm_held: Vec<(String, svmkit::device::uvm::HeldFolio)> = devs
            .iter()
            .filter_map(|d| match d.as_deref() {
                Some(Dev::Uvm(u)) => Some(u),
                _ => None,
            })
            .flat_map(|u| {
                u.folios_held()
                    .into_iter()
                    .map(|h| (u.device().name().to_string(), h))
            })
            .collect();
        let holder_of = |folio: svmkit::mm::Folio| -> Option<String> {
            if let Some((dev, l)) = leaked.iter().find(|(_, l)| l.folio == folio) {
                return Some(format!(
                    "task {} (driver {dev} left it locked and referenced on a retry at {:#x}, spec 8 item 22)",
                    l.task, l.addr
                ));
            }
            if let Some((dev, h)) = uvm_held.iter().find(|(_, h)| h.folio == folio) {
                return Some(format!(
                    "task {} (driver {dev}'s shim holds it from converting {:#x} until the region is released)",
                    h.task, h.addr
                ));
            }
            lk(&self.held)
                .iter()
                .find(|(_, h)| matches!(h, Held::Exclusive(g) if g.folio() == folio))
                .map(|((th, name), _)| {
                    format!("guard `{name}` of thread {}", self.sc.threads[*th].name)
                })
        };
        let mut lines = Vec::new();
        let mut locked = Vec::new();
        for raw in 0..mem.nr_frames() {
            let pfn = Pfn::new(raw);
            if let Ok(f) = mem.page_folio(pfn)
                && f.head() == pfn
                && !mem.is_free_frame(pfn)
                && mem.folio_test_locked(f)
            {
                locked.push(format!(
                    "{:#x} (held by {})",
                    f.head().raw(),
                    holder_of(f).unwrap_or_else(|| "nobody the scenario knows".into())
                ));
            }
        }
        lines.push(format!(
            "folios locked now: {}",
            if locked.is_empty() {
                "none".to_string()
            } else {
                locked.join(", ")
            }
        ));
        let mut hang = Hang {
            lines: Vec::new(),
            task: None,
            folio: None,
            holder: None,
            self_deadlock: false,
            held_since: None,
        };
        for d in &drivers {
            let name = d.device().name();
            for f in d.faults_in_flight() {
                lines.push(format!(
                    "INFO: task {}:{name} blocked for more than {} seconds: device fault at {:#x}, pass {}, {}",
                    f.task,
                    stalled.as_secs(),
                    f.addr,
                    f.pass,
                    if f.in_make_exclusive {
                        "in make_device_exclusive (its GUP)"
                    } else {
                        "outside make_device_exclusive"
                    }
                ));
                hang.task.get_or_insert_with(|| f.task.clone());
                let pte = VirtAddr::try_new(f.addr)
                    .map_or(Pte::None, |a| d.mm().pte_get_lockless(a.page_align_down()));
                let needed = match pte {
                    Pte::Swap(e) if e.is_device_exclusive() => {
                        e.pfn().and_then(|p| mem.page_folio(p).ok())
                    }
                    _ => None,
                };
                let Some(folio) = needed else {
                    lines.push(format!(
                        "  the entry at {:#x} is {}: no folio lock is needed there",
                        f.addr,
                        pte_text(pte)
                    ));
                    continue;
                };
                let is_locked = mem.folio_test_locked(folio);
                lines.push(format!(
                    "  the entry at {:#x} is a device-exclusive entry of folio {:#x}: GUP restores it under that folio's lock (spec 3); locked {is_locked}, sleepers on its wait queue {}",
                    f.addr,
                    folio.head().raw(),
                    mem.folio_wait_queue_sleepers(folio)
                ));
                let holder = leaked.iter().find(|(_, l)| l.folio == folio);
                lines.push(format!(
                    "  lock holder: {}",
                    holder_of(folio).unwrap_or_else(|| "unknown".into())
                ));
                if f.in_make_exclusive && is_locked && holder.is_some_and(|(_, l)| l.task == f.task)
                {
                    lines.push(format!(
                        "  => task {} waits for a lock only it can release: self-deadlock",
                        f.task
                    ));
                    hang.task = Some(f.task.clone());
                    hang.folio = Some(folio.head().raw());
                    hang.holder = Some(f.task.clone());
                    hang.self_deadlock = true;
                } else if hang.folio.is_none() {
                    hang.folio = Some(folio.head().raw());
                    hang.holder = holder.map(|(_, l)| l.task.clone());
                }
            }
        }
        self.diagnose_uvm(&devs, &mut lines, &mut hang);
        hang.lines = lines;
        hang
    }

    /// The uvm shim's part of a hang: a task asleep in a conversion of a page whose
    /// folio it holds locked itself, from an earlier page of the same region (two
    /// pages of one large folio on the single-page API: derived, spec 10.2).
    fn diagnose_uvm(&self, devs: &[Option<Arc<Dev>>], lines: &mut Vec<String>, hang: &mut Hang) {
        let mem = self.sys.mem();
        for d in devs.iter().flatten() {
            let Dev::Uvm(u) = &**d else { continue };
            let held = u.folios_held();
            for (task, addr) in u.conversions_in_flight() {
                let folio = match VirtAddr::try_new(addr).map(|a| u.mm().pte_get_lockless(a)) {
                    Ok(Pte::Present(p)) => mem.page_folio(p.pfn).ok(),
                    Ok(Pte::Swap(e)) if e.is_device_exclusive() => {
                        e.pfn().and_then(|p| mem.page_folio(p).ok())
                    }
                    _ => None,
                };
                let Some(folio) = folio else { continue };
                let Some(h) = held.iter().find(|h| h.folio == folio && h.task == task) else {
                    continue;
                };
                lines.push(format!(
                    "  task {task}:{} converts {addr:#x} (make_device_exclusive) and sleeps on folio {:#x}, which it locked itself converting {:#x} of the same region: self-deadlock (only a kill ends it)",
                    u.device().name(),
                    folio.head().raw(),
                    h.addr
                ));
                hang.task = Some(task.clone());
                hang.folio = Some(folio.head().raw());
                hang.holder = Some(task);
                hang.self_deadlock = true;
                hang.held_since = Some(format!(
                    "locked itself converting {:#x}, an earlier page of the same region",
                    h.addr
                ));
            }
        }
    }
}

/// For each notifier range in `events`, one line: the range and what each subscriber
/// (other than the engine's own recorder) decided, in callback order.
fn decisions(events: &[svmkit::trace::TraceEvent], names: &[(u64, String)]) -> Vec<String> {
    use svmkit::trace::{Payload, Phase};
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Payload::Notifier {
            mm,
            event,
            owner,
            start,
            end,
            ..
        } = &e.payload
        else {
            continue;
        };
        let mut said = Vec::new();
        for inner in &events[i + 1..] {
            if inner.track != e.track {
                continue;
            }
            if inner.depth <= e.depth {
                break;
            }
            if inner.depth == e.depth + 1
                && inner.phase == Phase::Instant
                && let Payload::Subscriber {
                    subscriber,
                    callback,
                    cur_seq,
                    decision,
                } = &inner.payload
                && subscriber != "recorder"
            {
                said.push(format!(
                    "{subscriber} {callback}{} {}",
                    cur_seq.map_or(String::new(), |s| format!(" seq={s}")),
                    decision.name()
                ));
            }
        }
        let process = names
            .iter()
            .find(|(id, _)| id == mm)
            .map_or_else(|| format!("mm{mm}"), |(_, n)| n.clone());
        out.push(format!(
            "{process} {event} [{start:#x}, {end:#x}){}: {}",
            owner
                .as_ref()
                .map_or(String::new(), |o| format!(" owner {o}")),
            if said.is_empty() {
                "no subscriber".to_string()
            } else {
                said.join(", ")
            }
        ));
    }
    out
}

/// Whether `events` contain the expected ones in order: each expectation is a set of
/// words (an event name may drop its `MMU_NOTIFY_` prefix; case does not matter) that
/// one event line must all contain, the next expectation matching a later event. An
/// empty list expects no event at all.
pub(crate) fn events_match(want: &[String], events: &[String]) -> Result<(), String> {
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
        (
            Op::Mmap { .. } | Op::Mremap { .. } | Op::MakeExclusive { .. } | Op::Migrate { .. },
            Ok(Some(v)),
        ) => {
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

impl World {
    /// The system of `sc` under `profile`, with the processes that exist from the start
    /// (each with a passive notifier recording what happens to it).
    pub(crate) fn new(sc: Arc<Scenario>, profile: Profile) -> Result<World, StepError> {
        let mut config = SystemConfig::with_frames(sc.frames);
        config.profile = profile;
        if svmkit::sync::in_explorer() {
            // Two folio wait queues instead of 64: every schedule builds the system
            // afresh, and each queue is a primitive shuttle registers. Sharing a
            // queue only adds wake-ups that the sleepers re-check (Linux's hashed
            // folio_waitqueue does the same).
            config.mem.wait_table_bits = 1;
        }
        let sys = System::new(config)?;
        if let Some(slots) = sc.swap {
            sys.mem().swapon(slots.max(1))?;
        }
        if let Some(m) = sc.thp {
            sys.mem().set_thp_mode(m);
        }
        let n = sc.processes.len();
        let w = World {
            sys,
            procs: Mutex::new(vec![None; n]),
            recorders: Mutex::new(vec![None; n]),
            created: Mutex::new(vec![false; n]),
            map_at: Mutex::new(vec![None; sc.maps.len()]),
            devs: Mutex::new(Vec::new()),
            held: Mutex::new(BTreeMap::new()),
            tasks: sc
                .threads
                .iter()
                .map(|t| Task::new(t.name.clone()))
                .collect(),
            open_ranges: std::sync::atomic::AtomicI64::new(0),
            era: profile.name,
            sc,
        };
        for (i, p) in w.sc.processes.iter().enumerate() {
            if p.at_start {
                let mm = w.sys.create_mm()?;
                let rec = RecordingNotifier::passive();
                mm.mmu_notifier_register(rec.clone())?;
                lk(&w.procs)[i] = Some(mm);
                lk(&w.recorders)[i] = Some(rec);
                lk(&w.created)[i] = true;
            }
        }
        Ok(w)
    }

    /// The mappings no `mmap` step makes, then the devices. A mapping that fails is
    /// an end check that failed (the run stops there); a device that cannot be opened
    /// is an error of the setup.
    pub(crate) fn setup(&self) -> Result<Option<EndCheck>, StepError> {
        let sc = &self.sc;
        let by_step: Vec<usize> = sc
            .threads
            .iter()
            .flat_map(|t| t.steps.iter())
            .filter_map(|s| match s.op {
                Op::Mmap { map } => Some(map),
                _ => None,
            })
            .collect();
        for m in 0..sc.maps.len() {
            if !by_step.contains(&m)
                && let Err(e) = self.map(m)
            {
                return Ok(Some(EndCheck {
                    what: format!("map {}", sc.maps[m].name),
                    ok: false,
                    detail: format!("setup mmap failed: {}", e.name()),
                }));
            }
        }
        for d in &sc.devices {
            let mm = self.mm(d.process)?;
            let dev = match &d.driver {
                Driver::Dmirror => Dev::Dmirror(Dmirror::open(&mm)?),
                Driver::SvmAtomic { flaws, max_passes } => {
                    Dev::Svm(SvmAtomic::new(&mm, &d.name, *flaws, *max_passes)?)
                }
                Driver::Uvm { batch, max_passes } => {
                    Dev::Uvm(Uvm::new(&mm, &d.name, *batch, *max_passes))
                }
            };
            lk(&self.devs).push(Some(Arc::new(dev)));
        }
        let _ = self.take_events(false);
        Ok(None)
    }

    fn take_held(&self, t: usize, name: &str) -> Option<Held> {
        lk(&self.held).remove(&(t, name.to_string()))
    }

    /// Runs `step` of thread `t` and writes down what it returned, what changed at its
    /// address and which of its expectations failed.
    pub(crate) fn perform(&self, t: usize, step: &Step, turn: usize) -> StepRecord {
        self.perform_maybe_recorded(t, step, turn, true)
            .unwrap_or_else(|| unreachable!("a recorded step always has its record"))
    }

    /// [`World::perform`], or with `record` false (an exploration, which replays a
    /// failing schedule to write its account) the same checks with nothing written
    /// down: `None` unless an expectation failed. Both ways take the same facade locks
    /// in the same order (what only the record reads is read without one), so a
    /// schedule found without the record replays the same with it.
    pub(crate) fn perform_maybe_recorded(
        &self,
        t: usize,
        step: &Step,
        turn: usize,
        record: bool,
    ) -> Option<StepRecord> {
        let sc = &self.sc;
        let p = self.thread_process(t);
        let a = self.step_addr(&step.op);
        let tracer = self.sys.trace();
        let record = record || tracer.on();
        let before = a.filter(|_| record).map(|a| self.entry(p, a));
        let counts_before = a.filter(|_| record).and_then(|a| self.folio_counts(p, a));
        let text = if record {
            self.describe(&step.op)
        } else {
            String::new()
        };
        let mut faults = 0;
        let mut cpages = None;
        // Only a traced run (svmkit run) reads its record back.
        let since = if tracer.on() { tracer.now() } else { 0 };
        let span = tracer.span(|| svmkit::trace::Payload::Step {
            step: text.clone().into(),
        });
        let r = self.run_step(t, step, &mut faults, &mut cpages);
        drop(span);
        let decisions = if tracer.on() {
            let names: Vec<(u64, String)> = lk(&self.procs)
                .iter()
                .zip(&self.sc.processes)
                .filter_map(|(m, p)| Some((m.as_ref()?.mm().id(), p.name.clone())))
                .collect();
            decisions(&tracer.events_since(since), &names)
        } else {
            Vec::new()
        };
        let after = a.map(|a| self.entry(p, a));
        let counts = a.filter(|_| record).and_then(|a| self.folio_counts(p, a));
        let mut failed = None;
        let expect = step.expect.get(self.era).unwrap_or(&Outcome::Ok(None));
        if !outcome_holds(expect, &r) {
            failed = Some(format!("{}, got {}", expect_text(expect), result_text(&r)));
        }
        if failed.is_none()
            && let Some(e) = &step.expect_pte
        {
            failed = self.check_pte(p, e, a, after);
        }
        let devs: Vec<Option<Arc<Dev>>> = lk(&self.devs).clone();
        if failed.is_none()
            && let Some(a) = a
        {
            for (d, want) in &step.expect_device {
                let got = devs[*d]
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
        let events = self.take_events(record || step.expect_events.is_some());
        if failed.is_none()
            && let Some(want) = step.expect_events.as_ref().and_then(|e| e.get(self.era))
            && let Err(missing) = events_match(want, &events)
        {
            failed = Some(missing);
        }
        for (what, e) in [
            ("refcount", &step.expect_refcount),
            ("mapcount", &step.expect_mapcount),
        ] {
            if failed.is_none()
                && let Some(e) = e
            {
                failed = self.check_count(p, what, e, a);
            }
        }
        if failed.is_none()
            && let Some(want) = step.expect_faults.as_ref().and_then(|f| f.get(self.era))
            && faults != *want
        {
            let what = if matches!(step.op, Op::AtomicAdd { .. }) {
                "fault-loop passes"
            } else {
                "page faults"
            };
            failed = Some(format!("{what}: {want}, got {faults}"));
        }
        if failed.is_none()
            && let Some(want) = step.expect_cpages.as_ref().and_then(|c| c.get(self.era))
            && cpages != Some(*want)
        {
            failed = Some(format!(
                "cpages {want}, got {}",
                cpages.map_or_else(|| "none (the ioctl failed)".to_string(), |c| c.to_string())
            ));
        }
        if !record && failed.is_none() {
            return None;
        }
        let text = if record {
            text
        } else {
            self.describe(&step.op)
        };
        // Read without the driver lock: the record takes no facade lock (see above).
        // While a task that is switched out holds it, the entry is not known.
        let devices = a.filter(|_| record).map_or_else(Vec::new, |a| {
            sc.devices
                .iter()
                .zip(&devs)
                .filter_map(|(d, dev)| match dev.as_ref()?.device().peek_entry(a) {
                    None => Some(format!("{}: (its driver lock is held)", d.name)),
                    Some(e) => e.map(|e| {
                        format!(
                            "{}: {} pfn {:#x}",
                            d.name,
                            rights_text(e.rights),
                            e.pfn.raw()
                        )
                    }),
                })
                .collect()
        });
        Some(StepRecord {
            turn,
            thread: sc.threads[t].name.clone(),
            line: sc.line_of(step.span.start),
            step: text,
            result: result_text_of(&step.op, &r),
            waited: false,
            pte: before
                .zip(after)
                .map(|(b, a)| (entry_text(b), entry_text(a))),
            events,
            decisions,
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
            folio: counts.filter(|c| {
                step.expect_refcount.is_some()
                    || step.expect_mapcount.is_some()
                    || counts_before.as_ref() != Some(c)
            }),
            failed,
            note: step.note.clone(),
            id: step.id.clone(),
        })
    }

    /// Where an expectation with an optional `at` looks: `at`, else the step's address.
    fn expect_addr(&self, at: Option<&Addr>, step_addr: Option<u64>) -> Result<u64, String> {
        match at {
            Some(at) => self
                .resolve(at)
                .ok_or_else(|| format!("{} to be mapped, it is not", at.text)),
            None => step_addr.ok_or_else(|| "an address, the step has none".to_string()),
        }
    }

    /// `expect_pte` under this run's era: the failure text, if it does not hold.
    fn check_pte(
        &self,
        p: usize,
        e: &PteExpect,
        step_addr: Option<u64>,
        after: Option<Entry>,
    ) -> Option<String> {
        let kind = *e.kind.get(self.era)?;
        let flags: Vec<(PteFlag, bool)> = e
            .flags
            .iter()
            .filter_map(|(f, b)| b.get(self.era).map(|b| (*f, *b)))
            .collect();
        let (entry, where_) = match &e.at {
            None => (after?, String::new()),
            Some(at) => match self.expect_addr(Some(at), step_addr) {
                Ok(a) => (self.entry(p, a), format!(" at {}", at.text)),
                Err(why) => return Some(format!("the PTE: {why}")),
            },
        };
        let want = pte_expect_text(kind, &flags);
        let got = entry_text(entry);
        if !entry_is(entry, kind) {
            return Some(format!("the PTE{where_} to be {want}, got {got}"));
        }
        for (f, b) in flags {
            match entry_flag(entry, f) {
                Ok(have) if have == b => {}
                Ok(_) => return Some(format!("the PTE{where_} to be {want}, got {got}")),
                Err(why) => {
                    return Some(format!("the PTE{where_} to be {want}, got {got} ({why})"));
                }
            }
        }
        None
    }

    /// The folio mapped at `addr` of process `p` with its counts (the zero page and a
    /// page that is not mapped have none).
    fn folio_counts(&self, p: usize, addr: u64) -> Option<FolioCounts> {
        let mem = self.sys.mem();
        let pfn = entry_pfn(self.entry(p, addr))?;
        if pfn == mem.zero_pfn() {
            return None;
        }
        let folio = mem.page_folio(pfn).ok()?;
        Some(FolioCounts {
            folio: folio.head().raw(),
            refcount: i64::from(mem.folio_ref_count(folio)),
            mapcount: i64::from(mem.folio_mapcount(folio))
                + mem
                    .page(folio.head())
                    .map_or(0, |h| i64::from(h.entire_mapcount())),
        })
    }

    /// `expect_refcount` / `expect_mapcount` under this run's era: the failure text,
    /// if it does not hold. The mapcount is Linux's `folio_mapcount()` (5.14:
    /// `total_mapcount()`): every PTE mapping of one of its pages plus every PMD
    /// mapping of the whole folio.
    fn check_count(
        &self,
        p: usize,
        what: &str,
        e: &CountExpect,
        step_addr: Option<u64>,
    ) -> Option<String> {
        let want = *e.value.get(self.era)?;
        let where_ =
            e.at.as_ref()
                .map_or_else(String::new, |a| format!(" at {}", a.text));
        let addr = match self.expect_addr(e.at.as_ref(), step_addr) {
            Ok(a) => a,
            Err(why) => return Some(format!("{what} {want}: {why}")),
        };
        let entry = self.entry(p, addr);
        let mem = self.sys.mem();
        let Some(folio) = entry_pfn(entry).and_then(|pfn| mem.page_folio(pfn).ok()) else {
            return Some(format!(
                "{what} {want} of the folio mapped{where_}, got no folio ({})",
                entry_text(entry)
            ));
        };
        let Some(counts) = self.folio_counts(p, addr) else {
            return Some(format!(
                "{what} {want} of the folio mapped{where_}, got the zero page ({})",
                entry_text(entry)
            ));
        };
        let got = if what == "refcount" {
            counts.refcount
        } else {
            counts.mapcount
        };
        (got != want as i64).then(|| {
            format!(
                "{what} {want} of the folio mapped{where_} ({:#x}), got {got}",
                folio.head().raw()
            )
        })
    }

    /// The end checks, with everything still in place: the invariant checker (counting
    /// what the scenario holds) and notifier pairing if `with_checker` (not after a
    /// deadlock, whose sleepers hold locks and ranges), and the values the file expects.
    pub(crate) fn end_checks(&self, report: &mut RunReport, with_checker: bool) {
        let sc = &self.sc;
        if sc.expect.checker && with_checker {
            let extra = self.extra_refs();
            let r = self.sys.check_with(&extra);
            report.end.push(EndCheck {
                what: "invariant checker".into(),
                ok: r.is_ok(),
                detail: r.map_or_else(|e| e.to_string().trim().to_string(), |()| "clean".into()),
            });
            let _ = self.take_events(false);
            let open = self.open_ranges.load(Ordering::Relaxed);
            report.end.push(EndCheck {
                what: "notifier ranges paired".into(),
                ok: open == 0,
                detail: if open == 0 {
                    "every invalidate_range_start had its end".into()
                } else {
                    format!("{open} range(s) started and not ended")
                },
            });
        }
        for (p, at, want, _) in &sc.expect.values {
            let got = match (self.proc(*p), self.resolve(at)) {
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
        for (p, at, want, _) in &sc.expect.rss {
            let got = match (self.proc(*p), self.resolve(at)) {
                (Some(mm), Some(a)) => mm
                    .smaps_rss(a)
                    .map(|b| b / 1024)
                    .ok_or_else(|| format!("no VMA contains {}", at.text)),
                (None, _) => Err(format!("process {} does not exist", sc.processes[*p].name)),
                (_, None) => Err(format!("{} is not mapped", at.text)),
            };
            report
                .end
                .push(EndCheck::rss(&sc.processes[*p].name, &at.text, *want, got));
        }
    }

    /// Releases what the scenario holds, closes the devices, exits every process, and
    /// checks that every frame came back if the file expects it.
    pub(crate) fn teardown(&self, report: &mut RunReport) {
        let held: Vec<Held> = std::mem::take(&mut *lk(&self.held)).into_values().collect();
        for h in held {
            self.release(h);
        }
        let devs = std::mem::take(&mut *lk(&self.devs));
        drop(devs);
        let procs = std::mem::take(&mut *lk(&self.procs));
        drop(procs);
        let recs = std::mem::take(&mut *lk(&self.recorders));
        drop(recs);
        if self.sc.expect.all_freed {
            let mem = self.sys.mem();
            let (free, usable) = (mem.nr_free_pages(), mem.nr_usable_pages());
            report.end.push(EndCheck {
                what: "every frame free after exit".into(),
                ok: free == usable,
                detail: format!("{free} of {usable} free"),
            });
        }
    }

    /// Leaves everything in place without dropping it: a deadlocked run keeps its
    /// locks, and tearing down would sleep on them.
    pub(crate) fn abandon(&self) {
        std::mem::forget(std::mem::take(&mut *lk(&self.held)));
        std::mem::forget(std::mem::take(&mut *lk(&self.devs)));
        std::mem::forget(std::mem::take(&mut *lk(&self.procs)));
    }

    /// The references the scenario holds on purpose, for the checker: one per guard and
    /// per GET; per PIN, `GUP_PIN_COUNTING_BIAS` on a small folio and one on a large
    /// one.
    fn extra_refs(&self) -> svmkit::check::ExtraRefs {
        let mem = self.sys.mem();
        let mut extra = svmkit::check::ExtraRefs::default();
        for h in lk(&self.held).values() {
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
}
