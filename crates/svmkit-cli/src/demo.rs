//! `svmkit demo`: a narrated tour of what the model can do so far.
//!
//! Every number printed is read back from the model, not written into the text.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::bundled::{self, Ran};
use crate::report::{Part, PartOut, Report, Source};
use svmkit::device::svm_atomic::{SvmAtomic, SvmFlaws};
use svmkit::mm::mmu_notifier::{MmuNotifierEvent, Owner, RecordingNotifier};
use svmkit::mm::{
    Gfp, MAX_PAGE_ORDER, MapFlags, MmUser, PhysMem, PhysMemConfig, Prot, Pte, PteFlags,
};
use svmkit::sync::{Arc, MmapLock, thread};
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, Profile, System, SystemConfig, VirtAddr};
use svmkit_scenario::ast::Driver;
use svmkit_scenario::engine::StepRecord;

/// The parts of the demo, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub(crate) enum PartName {
    /// Physical memory, folios, the folio lock and the mmap lock.
    Foundation,
    /// An address space: faults, mprotect, munmap, the checker.
    AddressSpace,
    /// MMU notifiers, fork and copy-on-write, shared memory, the reverse map.
    Fork,
    /// One device-exclusive conversion and its CPU restore, with the owner filter.
    Exclusive,
    /// The story: a THP-backed buffer of counters, a GPU-style device and CPU threads
    /// incrementing them with atomics; the totals must be exact.
    Story,
    /// The owner filter turned off: every pass of the driver's loop retries until
    /// its bound returns EBUSY (the livelock of the 2021 review).
    Livelock,
    /// Two devices contending for one page: they starve each other until the CPU
    /// touches it (a finding of the model; see the issue notes).
    TwoDevices,
    /// Reclaim and migration of a page a device holds exclusively: swapped out and
    /// migrated under linux-6.15, stuck (EAGAIN, offline loops) under linux-5.14.
    Reclaim,
    /// Ports of Linux's hmm selftests for exclusive access, plain and on THP.
    Selftests,
}

impl PartName {
    /// Every part, in order.
    pub(crate) const ALL: [PartName; 9] = [
        PartName::Foundation,
        PartName::AddressSpace,
        PartName::Fork,
        PartName::Exclusive,
        PartName::Story,
        PartName::Livelock,
        PartName::TwoDevices,
        PartName::Reclaim,
        PartName::Selftests,
    ];

    fn name(self) -> &'static str {
        match self {
            PartName::Foundation => "foundation",
            PartName::AddressSpace => "address-space",
            PartName::Fork => "fork",
            PartName::Exclusive => "exclusive",
            PartName::Story => "story",
            PartName::Livelock => "livelock",
            PartName::TwoDevices => "two-devices",
            PartName::Reclaim => "reclaim",
            PartName::Selftests => "selftests",
        }
    }
}

/// Runs the chosen parts (all when `parts` is empty) on memories of `frames` frames.
/// `progress` gets one line per part as it starts (long runs say what they do). A
/// part that fails ends the run: the report keeps the parts so far (the failed one
/// too, with what it printed) and the error.
pub(crate) fn run(
    frames: u64,
    parts: &[PartName],
    profiles: &[Profile],
    progress: &mut dyn FnMut(&str),
) -> Report {
    if svmkit::sync::in_explorer() {
        return Report {
            error: Some("the demo runs on OS threads, not inside a schedule exploration".into()),
            ..Report::default()
        };
    }
    let chosen: Vec<PartName> = if parts.is_empty() {
        PartName::ALL.to_vec()
    } else {
        PartName::ALL
            .into_iter()
            .filter(|p| parts.contains(p))
            .collect()
    };
    let profiles: Vec<Profile> = if profiles.is_empty() {
        vec![Profile::default()]
    } else {
        profiles.to_vec()
    };
    let mut report = Report {
        profile: profiles
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(" + "),
        parts: Vec::new(),
        error: None,
    };
    for &profile in &profiles {
        for &part in &chosen {
            if part == PartName::Foundation && profile != profiles[0] {
                // Physical memory and locks do not depend on the era.
                continue;
            }
            progress(&format!("{} ({})", part.name(), profile.name));
            let mut out = PartOut::default();
            let r = run_part(part, profile, frames, &mut out)
                .with_context(|| format!("part {} ({})", part.name(), profile.name));
            report.parts.push(Part {
                name: part.name(),
                out,
            });
            if let Err(e) = r {
                report.error = Some(format!("{e:#}"));
                return report;
            }
        }
    }
    report
}

/// Runs one part into `out`.
fn run_part(part: PartName, profile: Profile, frames: u64, out: &mut PartOut) -> Result<()> {
    writeln!(out, "[{}]", profile.name)?;
    out.fact("profile", profile.name);
    match part {
        PartName::Foundation => foundation(out, frames),
        PartName::AddressSpace => address_space_tour(out, frames, profile),
        PartName::Fork => fork_tour(out, frames, profile),
        PartName::Exclusive => exclusive_tour(out, frames, profile),
        // The svm_atomic parts run under a watchdog in every era: a driver that
        // stops making progress gets a hung-task report read from the model.
        PartName::Story => watchdog_part(part, profile, out),
        PartName::Livelock => livelock(out, profile),
        PartName::TwoDevices => two_devices(out, profile),
        PartName::Reclaim => reclaim_tour(out, profile),
        PartName::Selftests => selftests_tour(out, profile),
    }
}

/// The Linux era a profile models, told by the profile's *name*: a verdict's
/// expectation is a fact of the era, never read from the switches the model code
/// reads (that would make every verdict agree with the model by construction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Era {
    /// The 2021 design as merged (spec E1), `linux-5.14`.
    E1,
    /// The 2025 rework (spec E2), `linux-6.15`.
    E2,
}

fn era(profile: Profile) -> Result<Era> {
    match profile.name {
        "linux-5.14" => Ok(Era::E1),
        "linux-6.15" => Ok(Era::E2),
        other => bail!("no era facts for profile {other}"),
    }
}

/// The same kernel with a nouveau-style driver loop.
const KERNEL_6_12_LOOP: &str = "6.12.117 (Debian, QEMU TCG) with a nouveau-style loop, spec 10.3";

/// The source of an expectation seen on 6.12.117 with a nouveau-style loop: that
/// kernel has the 2021 design (E1.x), so under E2 it is the model's prediction.
fn seen_on_6_12_loop(era: Era) -> Source {
    match era {
        Era::E1 => Source::kernel(KERNEL_6_12_LOOP),
        Era::E2 => Source::derived(
            "seen on 6.12.117 (E1.x design, spec 10.3); the same retry mechanism in 6.15 (spec 6.3 step 4) not run on a kernel",
        ),
    }
}

/// Of two bundled files about one behaviour, the one that documents that this era
/// passes (each file's own expectations are that era's facts).
fn documented_to_pass(runs: [Ran; 2]) -> Result<Ran> {
    let [a, b] = runs;
    if a.documented_pass()? {
        Ok(a)
    } else if b.documented_pass()? {
        Ok(b)
    } else {
        bail!(
            "neither {} nor {} documents a pass for {}",
            a.file,
            b.file,
            a.era
        )
    }
}

/// Part `reclaim`: what reclaim and migration do to a page a device holds
/// exclusively (spec 4.6, 4.7, 8 item 8): examples/reclaim-stuck-5.14.toml,
/// reclaim-swapped-6.15.toml, offline-loop-5.14.toml and migrate-migrated-6.15.toml,
/// each under this era.
fn reclaim_tour(out: &mut PartOut, profile: Profile) -> Result<()> {
    writeln!(
        out,
        "svmkit demo: reclaim and migration of a device-exclusive page"
    )?;
    writeln!(out)?;
    let [stuck, swapped, offline, migrated] = bundled::RECLAIM
        .each_ref()
        .map(|b| bundled::run(b, profile, LONG_STEP_TIMEOUT));
    let runs = [stuck?, swapped?, offline?, migrated?];
    for r in &runs {
        r.outcome_verdict(out, &format!("{} ends as documented", r.file))?;
    }
    let [stuck, swapped, offline, migrated] = runs;
    let reclaim = documented_to_pass([stuck, swapped])?;
    let offline = documented_to_pass([offline, migrated])?;
    writeln!(out, "reclaim ({}):", reclaim.file)?;
    writeln!(out, "R1. {}", reclaim.line("mirror", 0)?)?;
    let steps = reclaim
        .sc
        .threads
        .iter()
        .find(|t| t.name == "reclaim")
        .map_or(0, |t| t.steps.len());
    for n in 0..steps {
        writeln!(out, "R{}. {}", 2 + n, reclaim.line("reclaim", n)?)?;
        if let (_, Some(rec)) = reclaim.step("reclaim", n)? {
            changes(out, rec)?;
        }
    }
    writeln!(out, "    {}", reclaim.line("check", 0)?)?;
    writeln!(out, "    {}", reclaim.line("toucher", 0)?)?;
    ending(out, &reclaim)?;
    writeln!(out, "offline ({}):", offline.file)?;
    let attempts = offline
        .report
        .steps
        .iter()
        .filter(|s| s.thread == "offline" && !s.waited)
        .collect::<Vec<_>>();
    writeln!(
        out,
        "O1. {} migration attempt(s) of the frame: {}",
        attempts.len(),
        attempts
            .iter()
            .map(|s| s.result.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    if let (_, Some(rec)) = offline.step("offline", 0)? {
        changes(out, rec)?;
    }
    let toucher = offline
        .sc
        .threads
        .iter()
        .find(|t| t.name == "toucher")
        .map_or(0, |t| t.steps.len());
    for n in 0..toucher {
        writeln!(out, "O{}. {}", 2 + n, offline.line("toucher", n)?)?;
    }
    ending(out, &offline)?;
    let exclusive_before = reclaim
        .step("reclaim", 1)?
        .1
        .and_then(|r| r.pte.as_ref())
        .is_some_and(|(before, _)| before.starts_with("device-exclusive"));
    out.fact("reclaimed_while_device_exclusive", exclusive_before);
    let src = reclaim.source()?;
    let (e, o) = reclaim.pte_kind("reclaim", 0)?;
    out.verdict(
        "MADV_PAGEOUT skips the device-exclusive page (PTE after)",
        e,
        o,
        src.clone(),
    );
    let ((e, o), (pe, po)) = (
        reclaim.result("reclaim", 1)?,
        reclaim.pte_kind("reclaim", 1)?,
    );
    out.verdict(
        "reclaim of a device-exclusive page",
        format!("{e}; PTE {pe}"),
        format!("{o}; PTE {po}"),
        src.clone(),
    );
    let (e, o) = reclaim.result("toucher", 0)?;
    out.verdict("the CPU reads the page back", e, o, src);
    let src = offline.source()?;
    let ((e, o), (pe, po)) = (
        offline.result("offline", 0)?,
        offline.pte_kind("offline", 0)?,
    );
    out.verdict(
        "offline of the frame of a device-exclusive small folio",
        format!("{e}; PTE {pe}"),
        format!("{o}; PTE {po}"),
        src,
    );
    Ok(())
}

/// How long the drivers of a part may make no progress before it is reported stuck.
const STUCK_AFTER: Duration = Duration::from_secs(3);
/// How long a part may run at all (a stall with no driver to watch).
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);
/// The 5.14-era driver's fate on its first retry, as the observed text of a verdict.
const SELF_DEADLOCK: &str =
    "self-deadlock: the driver thread sleeps on the folio lock it leaked itself on retry";

/// What the watchdog may look at while a part runs: the part's machine and drivers,
/// held weakly so that the part's own drops still tear them down.
#[derive(Default)]
pub(crate) struct Watch {
    sys: Option<std::sync::Weak<System>>,
    drivers: Vec<std::sync::Weak<SvmAtomic>>,
}

type Watched = Arc<std::sync::Mutex<Watch>>;

fn watch_lock(w: &Watched) -> std::sync::MutexGuard<'_, Watch> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

fn watch_system(w: &Watched, sys: &Arc<System>) {
    watch_lock(w).sys = Some(Arc::downgrade(sys));
}

fn watch_driver(w: &Watched, drv: &Arc<SvmAtomic>) {
    watch_lock(w).drivers.push(Arc::downgrade(drv));
}

/// The drivers' progress counters, summed (any change is progress).
fn progress_of(w: &Watched) -> u64 {
    watch_lock(w)
        .drivers
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .map(|d| {
            let s = d.stats();
            s.passes.load(Ordering::Relaxed)
                + s.atomics.load(Ordering::Relaxed)
                + s.faults.load(Ordering::Relaxed)
        })
        .sum()
}

/// A hung-task report read from the model, and whether it shows the 5.14-era
/// self-deadlock.
struct Diagnosis {
    lines: Vec<String>,
    /// The task that sleeps on the lock of a folio it leaked itself, and that folio.
    self_deadlock: Option<(String, svmkit::mm::Folio)>,
    /// One line for a verdict when it is not the self-deadlock.
    summary: String,
}

/// Reads the stalled part's state: every folio locked now; for each fault a driver
/// is handling, where it is, what the PTE at its address is, which folio lock that
/// PTE's restore needs, who sleeps on that folio's queue and whether the driver
/// itself leaked that lock.
fn diagnose(w: &Watched, stalled: Duration) -> Diagnosis {
    let (sys, drivers) = {
        let g = watch_lock(w);
        (
            g.sys.as_ref().and_then(std::sync::Weak::upgrade),
            g.drivers
                .iter()
                .filter_map(std::sync::Weak::upgrade)
                .collect::<Vec<_>>(),
        )
    };
    let mut lines = Vec::new();
    let Some(sys) = sys else {
        return Diagnosis {
            lines,
            self_deadlock: None,
            summary: "stalled; the part's machine is gone".into(),
        };
    };
    let mem = sys.mem();
    let mut locked = Vec::new();
    for raw in 0..mem.nr_frames() {
        let pfn = svmkit::Pfn::new(raw);
        if let Ok(f) = mem.page_folio(pfn)
            && f.head() == pfn
            && !mem.is_free_frame(pfn)
            && mem.folio_test_locked(f)
        {
            locked.push(f);
        }
    }
    lines.push(format!(
        "folios locked now: {}",
        if locked.is_empty() {
            "none".to_string()
        } else {
            locked
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    let mut self_deadlock = None;
    let mut summary = "stalled with no device fault in flight".to_string();
    for d in &drivers {
        let s = d.stats();
        let leaked = d.leaked_folios();
        lines.push(format!(
            "driver {}: {} passes, {} retried, {} folio(s) leaked locked on retry{}",
            d.device().name(),
            s.passes.load(Ordering::Relaxed),
            s.retries.load(Ordering::Relaxed),
            s.leaked.load(Ordering::Relaxed),
            leaked
                .iter()
                .map(|l| format!(" [{:?} at {:#x} by task {}]", l.folio, l.addr, l.task))
                .collect::<String>()
        ));
        for f in d.faults_in_flight() {
            lines.push(format!(
                "INFO: task {}:{} blocked for more than {} seconds: device fault at {:#x}, pass {}, {}",
                f.task,
                d.device().name(),
                stalled.as_secs(),
                f.addr,
                f.pass,
                if f.in_make_exclusive {
                    "in make_device_exclusive (its GUP)"
                } else {
                    "outside make_device_exclusive"
                }
            ));
            let pte = VirtAddr::try_new(f.addr).map_or(Pte::None, |a| d.mm().pte_get_lockless(a));
            let needed = match pte {
                Pte::Swap(e) if e.is_device_exclusive() => {
                    e.pfn().and_then(|p| mem.page_folio(p).ok())
                }
                _ => None,
            };
            let Some(folio) = needed else {
                lines.push(format!(
                    "  the PTE at {:#x} is not a device-exclusive entry ({pte:?}): nothing there needs a folio lock",
                    f.addr
                ));
                summary = format!(
                    "stalled: task {} in a fault, no folio lock involved",
                    f.task
                );
                continue;
            };
            let sleepers = mem.folio_wait_queue_sleepers(folio);
            let is_locked = mem.folio_test_locked(folio);
            lines.push(format!(
                "  the PTE at {:#x} is a device-exclusive entry of {folio:?}: GUP must restore it, and the restore takes that folio's lock (spec 3)",
                f.addr
            ));
            lines.push(format!(
                "  {folio:?}: locked {is_locked}, refcount {}, sleepers on its wait queue {sleepers}",
                mem.folio_ref_count(folio)
            ));
            let holder = leaked.iter().find(|l| l.folio == folio);
            match holder {
                Some(l) => lines.push(format!(
                    "  lock holder: task {} (driver {} left it locked and referenced on a retry at {:#x}, spec 8 item 22)",
                    l.task,
                    d.device().name(),
                    l.addr
                )),
                None => lines.push(
                    "  lock holder: not a folio this driver leaked (unknown)".to_string(),
                ),
            }
            let own = holder.is_some_and(|l| l.task == f.task);
            if f.in_make_exclusive && is_locked && sleepers > 0 && own {
                lines.push(format!(
                    "  => task {} waits for a lock only it can release: self-deadlock",
                    f.task
                ));
                self_deadlock = Some((f.task.clone(), folio));
            } else {
                summary = format!(
                    "stalled: task {} waits on {folio:?} (locked {is_locked}, sleepers {sleepers}), {}",
                    f.task,
                    match holder {
                        Some(l) if l.task != f.task =>
                            format!("leaked by another task, {}", l.task),
                        Some(_) => "its own leak, but not asleep in make_device_exclusive".into(),
                        None => "not leaked by the driver".into(),
                    }
                );
            }
        }
    }
    Diagnosis {
        lines,
        self_deadlock,
        summary,
    }
}

/// Runs an svm_atomic part on its own thread, watching its drivers' progress. A part
/// whose drivers make no progress for [`STUCK_AFTER`] is stalled: the watchdog reads a
/// hung-task report from the model ([`diagnose`]). Under 5.14, nouveau's retry path
/// kept the folio locked (before `b3fefbb30a16`, spec 8 item 22), and the next
/// pass's GUP sleeps on that lock (spec 9.6): the expected outcome is that
/// self-deadlock, and it matches only if the report shows the driver thread asleep on
/// the lock it leaked itself. Under 6.15 the part must finish. The stuck thread is
/// left blocked; the process ends without it.
fn watchdog_part(part: PartName, profile: Profile, out: &mut PartOut) -> Result<()> {
    let era = era(profile)?;
    let watch = Watched::default();
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let watch = watch.clone();
        std::thread::spawn(move || {
            let mut inner = PartOut::default();
            let r = story(&mut inner, profile, &watch);
            let _ = tx.send((inner, r.map_err(|e| format!("{e:#}"))));
        });
    }
    let started = std::time::Instant::now();
    let mut last = (progress_of(&watch), started);
    let finished = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(done) => break Some(done),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the part's thread panicked")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let now = progress_of(&watch);
                if now != last.0 {
                    last = (now, std::time::Instant::now());
                } else if last.1.elapsed() >= STUCK_AFTER || started.elapsed() >= GIVE_UP_AFTER {
                    break None;
                }
            }
        }
    };
    // Linux 5.14's nouveau (spec 8 item 22, 9.6: a reading of the code; the 6.12.117
    // kernel of spec 10.3 already has the fix, so it was not observed).
    let deadlock_source = || {
        Source::derived(
            "spec 8 item 22 and 9.6, a reading of the code; not observed (6.12.117 has the fix, spec 10.3)",
        )
    };
    match finished {
        Some((inner, r)) => {
            out.absorb(inner);
            if let Err(e) = r {
                bail!("{e}");
            }
            if era == Era::E1 {
                out.verdict(
                    "driver on its first retry",
                    SELF_DEADLOCK,
                    "the part finished",
                    deadlock_source(),
                );
            }
        }
        None => {
            let stalled = last.1.elapsed();
            let d = diagnose(&watch, stalled);
            writeln!(
                out,
                "{}: the drivers made no progress for {} s; hung-task report read from the model:",
                part.name(),
                stalled.as_secs()
            )?;
            for l in &d.lines {
                writeln!(out, "   {l}")?;
            }
            if let Some((task, folio)) = &d.self_deadlock {
                out.fact("deadlocked_task", task.as_str());
                out.fact("deadlocked_on_folio", format!("{:#x}", folio.head().raw()));
            }
            let observed = if d.self_deadlock.is_some() {
                SELF_DEADLOCK.to_string()
            } else {
                d.summary
            };
            match era {
                Era::E1 => out.verdict(
                    "driver on its first retry",
                    SELF_DEADLOCK,
                    observed,
                    deadlock_source(),
                ),
                Era::E2 => out.verdict(
                    "the part finishes (6.14-rc's fix unlocks and puts the folio on retry)",
                    "finishes",
                    observed,
                    Source::spec("8 item 22"),
                ),
            }
        }
    }
    Ok(())
}

/// A machine of `frames` frames following `profile`.
fn config(frames: u64, profile: Profile) -> SystemConfig {
    let mut c = SystemConfig::with_frames(frames);
    c.profile = profile;
    c
}

/// The story's machine: enough memory for a THP-backed buffer and its copies.
fn story_system(profile: Profile) -> Result<(Arc<System>, MmUser)> {
    let sys = System::new(config(4096, profile))?;
    let mm = sys.create_mm()?;
    Ok((sys, mm))
}

const STORY_BUF: u64 = 0x4000_0000;
const STORY_COUNTERS: u64 = 8;
const STORY_ROUNDS: u64 = 200;
const STORY_FIRST_BOUND: u64 = 20;

/// Part `story`: counters in a THP-backed buffer, incremented by a GPU-style device
/// (through device-exclusive pages) and two CPU threads at once.
fn story(out: &mut PartOut, profile: Profile, watch: &Watched) -> Result<()> {
    let era = era(profile)?;
    let (sys, mm) = story_system(profile)?;
    watch_system(watch, &sys);
    writeln!(
        out,
        "svmkit demo: the story: a GPU and two CPU threads increment shared counters"
    )?;
    writeln!(out)?;
    let len = svmkit::mm::PMD_SIZE;
    mm.mmap(
        STORY_BUF,
        len,
        Prot::READ | Prot::WRITE,
        MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED,
    )?;
    mm.madvise(STORY_BUF, len, svmkit::mm::Advice::HugePage)?;
    for i in 0..STORY_COUNTERS {
        mm.write_u64(STORY_BUF + i * 64 * PAGE_SIZE, 0)?;
    }
    let huge = mm.pmd_is_huge(VirtAddr::try_new(STORY_BUF)?);
    writeln!(
        out,
        "S1. a process maps 2 MiB with MADV_HUGEPAGE and zeroes {STORY_COUNTERS} counters, one every 64 pages: PMD-mapped THP: {huge}"
    )?;
    let counters: Vec<u64> = (0..STORY_COUNTERS)
        .map(|i| STORY_BUF + i * 64 * PAGE_SIZE)
        .collect();
    // The first device atomic on a PMD-mapped THP: GUP's FOLL_SPLIT_PMD splits the
    // PMD inside the driver's read section, and that split's Clear makes it retry;
    // every later pass then restores the entry its previous pass installed.
    let first = Arc::new(SvmAtomic::new(
        &mm,
        "gpu",
        SvmFlaws::default(),
        STORY_FIRST_BOUND,
    )?);
    watch_driver(watch, &first);
    let r = first.atomic_fetch_add(&Task::new("gpu"), counters[0], 1);
    let first_passes = first.stats().passes.load(Ordering::Relaxed);
    let first_result = r.map_or_else(|e| e.name().to_string(), |_| "ok".to_string());
    let split = !mm.pmd_is_huge(VirtAddr::try_new(STORY_BUF)?);
    writeln!(
        out,
        "S2. the GPU's first atomic on the THP: {first_result} after {first_passes} passes (bound {STORY_FIRST_BOUND}); the PMD was split (FOLL_SPLIT_PMD): {split}"
    )?;
    writeln!(
        out,
        "    the split's Clear hit the driver's read section, and each retry restored the entry its previous pass installed (a finding of the model: nouveau's loop cannot take a PMD-mapped THP page until the CPU touches it)"
    )?;
    drop(first);
    for &c in &counters {
        mm.read_u64(c)?;
    }
    writeln!(
        out,
        "    the CPU reads the counters (restoring that entry); now the pages are PTE-mapped and present"
    )?;
    out.verdict(
        "first device atomic on a PMD-mapped THP page",
        "EBUSY",
        &first_result,
        seen_on_6_12_loop(era),
    );
    // Every pass retries until the timeout (spec 10.3); the bound stands for it.
    out.verdict(
        "passes until the bound",
        STORY_FIRST_BOUND,
        first_passes,
        seen_on_6_12_loop(era),
    );
    let gpu = Arc::new(SvmAtomic::new(&mm, "gpu", SvmFlaws::default(), 100_000)?);
    watch_driver(watch, &gpu);
    let device = {
        let (gpu, counters) = (gpu.clone(), counters.clone());
        thread::spawn(move || -> Result<(), Errno> {
            let task = Task::new("gpu");
            for _ in 0..STORY_ROUNDS {
                for &c in &counters {
                    gpu.atomic_fetch_add(&task, c, 1)?;
                }
            }
            Ok(())
        })
    };
    // After their increments the CPU threads keep reading until the GPU is done: a
    // GPU fault that starts on its own stale entry only ends when a CPU touch restores
    // the page in between two passes (S2), so a GPU left alone could spin to its bound.
    let gpu_done = Arc::new(AtomicBool::new(false));
    let cpus: Vec<_> = (0..2)
        .map(|_| {
            let (mm, counters, done) = (mm.clone(), counters.clone(), gpu_done.clone());
            thread::spawn(move || -> Result<u64, svmkit::FaultError> {
                for _ in 0..STORY_ROUNDS {
                    for &c in &counters {
                        mm.fetch_add_u64(c, 1)?;
                    }
                }
                let mut reads = 0;
                while !done.load(Ordering::Acquire) {
                    for &c in &counters {
                        mm.read_u64(c)?;
                        reads += 1;
                    }
                    thread::yield_now();
                }
                Ok(reads)
            })
        })
        .collect();
    let gpu_result = device
        .join()
        .map_err(|_| anyhow::anyhow!("device thread panicked"));
    gpu_done.store(true, Ordering::Release);
    let mut extra_reads = 0;
    for c in cpus {
        extra_reads += c
            .join()
            .map_err(|_| anyhow::anyhow!("CPU thread panicked"))??;
    }
    gpu_result??;
    let s = gpu.stats();
    let (faults, passes, retries) = (
        s.faults.load(Ordering::Relaxed),
        s.passes.load(Ordering::Relaxed),
        s.retries.load(Ordering::Relaxed),
    );
    writeln!(
        out,
        "S3. the GPU (svm_atomic, owner filter on) and 2 CPU threads each add 1 to every counter {STORY_ROUNDS} times"
    )?;
    writeln!(
        out,
        "    GPU: {} atomics, {faults} device faults resolved in {passes} passes ({retries} retried: a CPU restore hit the read section)",
        s.atomics.load(Ordering::Relaxed)
    )?;
    writeln!(
        out,
        "    after their increments the CPU threads read the counters {extra_reads} more times until the GPU finished (reads change no value)"
    )?;
    let want = 3 * STORY_ROUNDS;
    let mut totals = Vec::new();
    for &c in &counters {
        totals.push(mm.read_u64(c)?);
    }
    writeln!(
        out,
        "S4. totals: {totals:?} (each must be {want}, counter 0 too: the first atomic never ran)"
    )?;
    drop(gpu);
    drop(mm);
    let verdict = checker_verdict(&sys);
    out.fact("counters", totals.clone());
    out.fact("expected_per_counter", want);
    out.fact("gpu_faults", faults);
    out.fact("gpu_passes", passes);
    out.fact("gpu_retries", retries);
    for (i, t) in totals.iter().enumerate() {
        out.verdict(
            &format!("counter {i} total"),
            want,
            t,
            Source::spec(
                "3, 6.2 (exclusive access lasts until the driver unlocks: atomics are exact)",
            ),
        );
    }
    out.verdict(
        "checker after exit",
        "all invariants hold",
        &verdict,
        checker_source(),
    );
    Ok(())
}

/// The source of a "checker after exit" verdict: the model's own invariants.
fn checker_source() -> Source {
    Source::derived("the model's invariant checker (spec 1.2's invariants among them)")
}

/// What the invariant checker says of `sys`: "all invariants hold", or the first
/// violation.
fn checker_verdict(sys: &System) -> String {
    sys.check()
        .map_or_else(|e| e.to_string(), |()| "all invariants hold".into())
}

/// How long a step of a bundled scenario may take before its run counts as hung: a
/// driver's self-deadlock ends the run after this (a model step takes microseconds).
const DRIVER_STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// The bound of the fault loop of device `name` in a bundled file.
fn max_passes(r: &Ran, name: &str) -> Result<u64> {
    match r
        .sc
        .devices
        .iter()
        .find(|d| d.name == name)
        .map(|d| &d.driver)
    {
        Some(Driver::SvmAtomic { max_passes, .. }) => Ok(*max_passes),
        _ => bail!("{} has no svm_atomic device {name}", r.file),
    }
}

/// Prints the PTE change, the notifier events and the device entries of a step.
fn changes(out: &mut PartOut, rec: &StepRecord) -> Result<()> {
    if let Some((before, after)) = &rec.pte
        && before != after
    {
        writeln!(out, "    pte: {before} -> {after}")?;
    }
    if rec.events.len() <= 2 {
        for e in &rec.events {
            writeln!(out, "    notifier: {e}")?;
        }
    } else {
        // Many invalidations (a retrying fault loop): counted by event and owner.
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for e in &rec.events {
            let key = e
                .split_whitespace()
                .filter(|w| !w.contains(['[', ')']))
                .collect::<Vec<_>>()
                .join(" ");
            match kinds.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => kinds.push((key, 1)),
            }
        }
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} x {k}")).collect();
        writeln!(
            out,
            "    notifier: {} invalidations: {}",
            rec.events.len(),
            list.join(", ")
        )?;
    }
    for d in &rec.devices {
        writeln!(out, "    device: {d}")?;
    }
    Ok(())
}

/// Prints how a bundled run ended when it did not pass (the deadlock, or the first
/// failed expectation).
fn ending(out: &mut PartOut, r: &Ran) -> Result<()> {
    if let Some(d) = &r.report.deadlock {
        writeln!(out, "    deadlock: {d}")?;
    } else if let Some(s) = r.report.steps.iter().find(|s| s.failed.is_some()) {
        writeln!(
            out,
            "    {} (line {}): expected {}",
            s.step,
            s.line,
            s.failed.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

/// The end values of a bundled run as verdicts.
fn value_verdicts(out: &mut PartOut, r: &Ran, source: &Source) {
    for (at, want, got) in r.end_values() {
        out.verdict(&format!("value at {at}"), want, got, source.clone());
    }
}

/// Part `livelock`: the owner filter off (examples/owner-filter-livelock.toml).
fn livelock(out: &mut PartOut, profile: Profile) -> Result<()> {
    let r = bundled::run(&bundled::OWNER_FILTER, profile, DRIVER_STEP_TIMEOUT)?;
    writeln!(
        out,
        "svmkit demo: without the owner filter (the 2021 review's argument, spec 6.3; {})",
        r.file
    )?;
    writeln!(out)?;
    let bound = max_passes(&r, "blind")?;
    writeln!(out, "L1. {}", r.line("blind", 0)?)?;
    if let (_, Some(rec)) = r.step("blind", 0)? {
        let own = rec
            .events
            .iter()
            .filter(|e| e.contains("EXCLUSIVE") && e.contains("owner blind"))
            .count();
        if let Some(p) = rec.faults {
            writeln!(
                out,
                "    the driver without the filter: {p} passes (bound {bound}; Linux: 1 s), {own} Exclusive invalidations of its own, each moving its read section's sequence"
            )?;
        }
    }
    writeln!(out, "L2. {}", r.line("gpu", 0)?)?;
    if let (_, Some(rec)) = r.step("gpu", 0)? {
        if let Some(p) = rec.faults {
            writeln!(out, "    the driver with the filter: {p} pass(es)")?;
        }
        changes(out, rec)?;
    }
    for n in 0..2 {
        writeln!(out, "L{}. {}", 3 + n, r.line("reader", n)?)?;
    }
    ending(out, &r)?;
    out.fact("bound", bound);
    if let Some(p) = r.step("blind", 0)?.1.and_then(|rec| rec.faults) {
        out.fact("passes_without_filter", p);
    }
    r.outcome_verdict(out, "owner-filter-livelock.toml ends as documented")?;
    if r.documented_pass()? {
        let src = r.source()?;
        let (e, o) = r.result("blind", 0)?;
        out.verdict("atomic fault without the owner filter", e, o, src.clone());
        let (e, o) = r.faults("blind", 0)?;
        out.verdict("passes until the bound", e, show(o), src.clone());
        let (e, o) = r.result("gpu", 0)?;
        out.verdict("atomic fault with the owner filter", e, o, src.clone());
        let (e, o) = r.faults("gpu", 0)?;
        out.verdict("passes with the owner filter", e, show(o), src.clone());
        let (e, o) = r.pte_kind("gpu", 0)?;
        out.verdict("PTE after the filtered atomic", e, o, src.clone());
        value_verdicts(out, &r, &src);
    }
    Ok(())
}

/// A count a step may not have recorded.
fn show(n: Option<u64>) -> String {
    n.map_or_else(|| "none".to_string(), |n| n.to_string())
}

/// Part `two-devices`: two GPUs contending for one page
/// (examples/two-devices-one-page.toml).
fn two_devices(out: &mut PartOut, profile: Profile) -> Result<()> {
    let r = bundled::run(&bundled::TWO_DEVICES, profile, DRIVER_STEP_TIMEOUT)?;
    writeln!(
        out,
        "svmkit demo: two GPUs and one page (spec 9.14, which no upstream test covers; {})",
        r.file
    )?;
    writeln!(out)?;
    for (i, thread) in ["a", "b", "a-again", "cpu", "b-again"].iter().enumerate() {
        writeln!(out, "T{}. {}", i + 1, r.line(thread, 0)?)?;
        if let (_, Some(rec)) = r.step(thread, 0)? {
            if let Some(p) = rec.faults.filter(|_| thread.starts_with(['a', 'b'])) {
                writeln!(out, "    {p} pass(es) of the fault loop")?;
            }
            changes(out, rec)?;
        }
    }
    ending(out, &r)?;
    r.outcome_verdict(out, "two-devices-one-page.toml ends as documented")?;
    if r.documented_pass()? {
        let src = r.source()?;
        for (what, thread) in [
            ("first device", "a"),
            ("second device while the first holds the page", "b"),
            ("first device while an entry remains", "a-again"),
            ("the CPU reads the counter", "cpu"),
            ("second device after a CPU touch", "b-again"),
        ] {
            let (e, o) = r.result(thread, 0)?;
            out.verdict(what, e, o, src.clone());
        }
        let (e, o) = r.pte_kind("b", 0)?;
        out.verdict("PTE after the second device gave up", e, o, src.clone());
        value_verdicts(out, &r, &src);
    }
    Ok(())
}

/// Part `foundation`: physical memory, folios and the locks.
fn foundation(out: &mut PartOut, frames: u64) -> Result<()> {
    let mem = PhysMem::new(PhysMemConfig::with_frames(frames))
        .with_context(|| format!("cannot build a memory of {frames} frames"))?;
    writeln!(
        out,
        "svmkit demo: the foundation (physical memory, folios, locks)"
    )?;
    writeln!(out)?;

    writeln!(
        out,
        "1. Physical memory: {} frames of {} KiB; the zero page is {}; {} frames free",
        mem.nr_frames(),
        PAGE_SIZE / 1024,
        mem.zero_pfn(),
        mem.nr_free_pages()
    )?;
    writeln!(
        out,
        "   buddyinfo (free blocks per order 0..={MAX_PAGE_ORDER}): {:?}",
        mem.buddyinfo()
    )?;

    let small = mem.folio_alloc(0, Gfp::ZERO)?;
    mem.write_u64(small.head(), 0, 0xdead_beef)?;
    writeln!(
        out,
        "2. folio_alloc(order 0) -> {:?}, refcount {}; wrote 0xdeadbeef, read back {:#x}",
        small,
        mem.folio_ref_count(small),
        mem.read_u64(small.head(), 0)?
    )?;
    writeln!(
        out,
        "   buddyinfo after splitting a block for it: {:?}",
        mem.buddyinfo()
    )?;

    match mem.folio_alloc(MAX_PAGE_ORDER, Gfp::empty()) {
        Ok(thp) => {
            let tail = thp.page(thp.nr_pages() - 1).unwrap_or(thp.head());
            writeln!(
                out,
                "3. folio_alloc(order {MAX_PAGE_ORDER}) -> {:?} ({} KiB); tail {} resolves to head {:?}",
                thp,
                thp.size() / 1024,
                tail,
                mem.page_folio(tail)?
            )?;
            mem.folio_put(thp);
        }
        Err(e) => writeln!(
            out,
            "3. folio_alloc(order {MAX_PAGE_ORDER}) -> {e} (memory too small)"
        )?,
    }

    mem.folio_get(small);
    let after_get = mem.folio_ref_count(small);
    mem.folio_put(small);
    let after_put = mem.folio_ref_count(small);
    mem.folio_put(small);
    writeln!(
        out,
        "4. folio_get -> refcount {after_get}; folio_put -> {after_put}; last folio_put frees it: {} frames free again, buddies merged: {:?}",
        mem.nr_free_pages(),
        mem.buddyinfo()
    )?;
    mem.folio_get(mem.page_folio(mem.zero_pfn())?);
    mem.folio_put(mem.page_folio(mem.zero_pfn())?);
    mem.folio_put(mem.page_folio(mem.zero_pfn())?);
    writeln!(
        out,
        "   get/put on the zero page are not counted: it is still reserved, refcount {}",
        mem.folio_ref_count(mem.page_folio(mem.zero_pfn())?)
    )?;

    folio_lock_tour(out, &mem)?;
    killable_tour(out, &mem)?;
    mmap_lock_tour(out)?;

    let mut n = 0u64;
    let err = loop {
        match mem.folio_alloc(0, Gfp::empty()) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    writeln!(
        out,
        "8. Allocating order-0 folios until none is left: {n} succeeded, then {err} ({})",
        Errno::from(err).name()
    )?;
    let bad = mem.bad_pages();
    writeln!(out, "   bad-page reports during the tour: {}", bad.len())?;
    out.fact("frames", mem.nr_frames());
    out.fact("allocated_until_oom", n);
    out.verdict(
        "allocation until exhaustion",
        "ENOMEM",
        Errno::from(err).name(),
        Source::derived("the generic page allocator's failure; not in the spec"),
    );
    out.verdict(
        "bad-page reports",
        0,
        bad.len(),
        Source::derived("the model's bad-page checks"),
    );
    Ok(())
}

fn describe(mm: &MmUser, addr: u64) -> String {
    match mm.pte_get_lockless(VirtAddr::try_new(addr).unwrap_or(VirtAddr::ZERO)) {
        Pte::None => "none".to_string(),
        Pte::Swap(s) if s.is_device_exclusive() => {
            let pfn = s.pfn().map_or_else(|| "?".to_string(), |p| p.to_string());
            format!("device-exclusive entry for {pfn}")
        }
        Pte::Swap(s) => format!("{s:?}"),
        Pte::Present(p) => {
            let what = if p.is_special() {
                "zero page"
            } else if mm
                .mem()
                .page_folio(p.pfn)
                .is_ok_and(|f| mm.mem().folio_test(f, svmkit::mm::PageFlags::ANON))
            {
                "anon page"
            } else {
                "shmem page"
            };
            let mut bits = Vec::new();
            for (flag, name) in [
                (PteFlags::WRITE, "W"),
                (PteFlags::DIRTY, "D"),
                (PteFlags::ACCESSED, "A"),
                (PteFlags::PROTNONE, "PROT_NONE"),
            ] {
                if p.flags.contains(flag) {
                    bits.push(name);
                }
            }
            format!("{} ({what}) [{}]", p.pfn, bits.join(" "))
        }
    }
}

fn faults(mm: &MmUser) -> u64 {
    mm.stats().faults.load(Ordering::SeqCst)
}

/// The address-space half of the tour: map, fault, mprotect, fault again, munmap.
fn address_space_tour(out: &mut PartOut, frames: u64, profile: Profile) -> Result<()> {
    let sys = System::new(config(frames, profile))?;
    let mm = sys.create_mm()?;
    let free0 = sys.mem().nr_free_pages();
    writeln!(
        out,
        "svmkit demo: an address space (page tables, faults, mprotect, munmap)"
    )?;
    writeln!(out)?;
    let len = 4 * PAGE_SIZE;
    let a = mm
        .mmap(
            0,
            len,
            Prot::READ | Prot::WRITE,
            MapFlags::PRIVATE | MapFlags::ANONYMOUS,
        )?
        .raw();
    writeln!(
        out,
        "9. mmap(4 pages, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS) -> {a:#x}; PTE: {}",
        describe(&mm, a)
    )?;
    let v = mm.read_u64(a)?;
    writeln!(
        out,
        "10. CPU read at {a:#x} -> {v} after {} fault; PTE: {}",
        faults(&mm),
        describe(&mm, a)
    )?;
    mm.write_u64(a, 0x1234)?;
    writeln!(
        out,
        "11. CPU write 0x1234 -> write fault replaces the zero page ({} faults, {} copy); PTE: {}; rss {}",
        faults(&mm),
        mm.stats().cow_copies.load(Ordering::SeqCst),
        describe(&mm, a),
        mm.rss_anon()
    )?;
    mm.mprotect(a, len, Prot::READ)?;
    let denied = mm.write_u64(a, 1).err();
    writeln!(
        out,
        "12. mprotect(PROT_READ): PTE {}; a write now fails: {}",
        describe(&mm, a),
        denied.map_or("succeeded (BUG)".to_string(), |e| e.to_string())
    )?;
    let before = faults(&mm);
    mm.mprotect(a, len, Prot::READ | Prot::WRITE)?;
    mm.write_u64(a, 0x5678)?;
    writeln!(
        out,
        "13. mprotect(PROT_READ|PROT_WRITE) upgrades the exclusive page at once: PTE {}; write 0x5678 took {} fault(s); read back {:#x}",
        describe(&mm, a),
        faults(&mm) - before,
        mm.read_u64(a)?
    )?;
    let mut tables = 0;
    mm.walk_tables(|_| tables += 1);
    let used_before = free0 - sys.mem().nr_free_pages();
    mm.munmap(a, len)?;
    let mut after = 0;
    mm.walk_tables(|_| after += 1);
    writeln!(
        out,
        "14. munmap: access now fails: {}; page tables {tables} -> {after}; frames in use (pages and tables) {} -> {}",
        mm.read_u64(a)
            .err()
            .map_or("succeeded (BUG)".to_string(), |e| e.to_string()),
        used_before,
        free0 - sys.mem().nr_free_pages()
    )?;
    drop(mm);
    let verdict = checker_verdict(&sys);
    writeln!(
        out,
        "15. process exit; checker: {verdict}; free frames {} of {}",
        sys.mem().nr_free_pages(),
        sys.mem().nr_usable_pages()
    )?;
    out.verdict(
        "checker after exit",
        "all invariants hold",
        &verdict,
        checker_source(),
    );
    out.verdict(
        "frames free after exit",
        sys.mem().nr_usable_pages(),
        sys.mem().nr_free_pages(),
        Source::derived("the model's frame accounting"),
    );
    Ok(())
}

/// Prints each callback the recorder got since the last call, one per line.
fn print_calls(out: &mut dyn Write, rec: &RecordingNotifier) -> Result<()> {
    let calls = rec.take();
    if calls.is_empty() {
        writeln!(out, "      (no notifier callback)")?;
    }
    for c in calls {
        writeln!(out, "      notifier: {c}")?;
    }
    Ok(())
}

/// The notifier and fork half of the tour: a device-like listener watches what
/// munmap, fork, COW breaks and shared memory send it.
fn fork_tour(out: &mut PartOut, frames: u64, profile: Profile) -> Result<()> {
    let sys = System::new(config(frames, profile))?;
    let parent = sys.create_mm()?;
    writeln!(
        out,
        "svmkit demo: MMU notifiers, fork and copy-on-write, shared memory, rmap"
    )?;
    writeln!(out)?;
    let rec = RecordingNotifier::new();
    parent.mmu_notifier_register(rec.clone())?;
    let sub = parent
        .mm()
        .mmu_interval_notifier_insert(0, 1 << 47, rec.clone())?;
    let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
    let rw = Prot::READ | Prot::WRITE;
    let a = parent.mmap(0, 2 * PAGE_SIZE, rw, anon)?.raw();
    let s = parent
        .mmap(0, PAGE_SIZE, rw, MapFlags::SHARED | MapFlags::ANONYMOUS)?
        .raw();
    parent.write_u64(a, 1)?;
    parent.write_u64(s, 2)?;
    writeln!(
        out,
        "16. a listener subscribes (classic + interval notifier); mmap private {a:#x} and shared {s:#x}, write both:"
    )?;
    print_calls(out, &rec)?;
    let seq = sub.read_begin();
    let child = sys.fork(&parent)?;
    let page = parent
        .pte_get_lockless(VirtAddr::try_new(a)?)
        .present()
        .context("parent page")?
        .pfn;
    let folio = sys.mem().page_folio(page)?;
    writeln!(
        out,
        "17. fork: the private page is now shared copy-on-write (parent PTE {}, child PTE {}; refcount {}, mapcount {}); the listener's read section must retry: {}",
        describe(&parent, a),
        describe(&child, a),
        sys.mem().folio_ref_count(folio),
        sys.mem().page(page).map_or(0, |p| p.mapcount()),
        sub.read_retry(seq)
    )?;
    print_calls(out, &rec)?;
    let found: Vec<String> = sys
        .mem()
        .rmap_mappings(folio)
        .iter()
        .map(|(mm, addr, _)| format!("mm {mm} at {addr}"))
        .collect();
    writeln!(
        out,
        "    rmap_walk of {folio:?} finds: {}",
        found.join(", ")
    )?;
    parent.write_u64(a, 10)?;
    writeln!(
        out,
        "18. the parent writes: COW break copies the page (parent PTE {}); the child still reads {}",
        describe(&parent, a),
        child.read_u64(a)?
    )?;
    print_calls(out, &rec)?;
    child.write_u64(s, 3)?;
    writeln!(
        out,
        "19. the child writes 3 to the shared page; the parent reads {} (no copy, no notifier)",
        parent.read_u64(s)?
    )?;
    print_calls(out, &rec)?;
    drop(child);
    parent.munmap(a, 2 * PAGE_SIZE)?;
    writeln!(
        out,
        "20. the child exits; the parent unmaps the private range:"
    )?;
    print_calls(out, &rec)?;
    drop(parent);
    writeln!(
        out,
        "21. the parent exits: release first, then the teardown:"
    )?;
    print_calls(out, &rec)?;
    sub.remove()?;
    drop(sub);
    let verdict = checker_verdict(&sys);
    writeln!(
        out,
        "    checker: {verdict}; free frames {} of {}",
        sys.mem().nr_free_pages(),
        sys.mem().nr_usable_pages()
    )?;
    out.verdict(
        "checker after exit",
        "all invariants hold",
        &verdict,
        checker_source(),
    );
    Ok(())
}

/// The device-exclusive half of the tour (the 6.15 design): a driver makes a page
/// exclusive inside its read section, filters its own event, and the CPU takes the
/// page back.
fn exclusive_tour(out: &mut PartOut, frames: u64, profile: Profile) -> Result<()> {
    let sys = System::new(config(frames, profile))?;
    let mm = sys.create_mm()?;
    writeln!(
        out,
        "svmkit demo: device-exclusive access ({} profile)",
        sys.profile().name
    )?;
    writeln!(out)?;
    let a = mm
        .mmap(
            0,
            PAGE_SIZE,
            Prot::READ | Prot::WRITE,
            MapFlags::PRIVATE | MapFlags::ANONYMOUS,
        )?
        .raw();
    mm.write_u64(a, 41)?;
    let owner = Owner::new();
    // The driver's interval notifier ignores Exclusive events carrying its own owner
    // and makes readers retry for everything else (nouveau's filter).
    let drv = RecordingNotifier::ignoring(MmuNotifierEvent::Exclusive, Some(owner));
    let sub = mm
        .mm()
        .mmu_interval_notifier_insert(a, PAGE_SIZE, drv.clone())?;
    let seq = sub.read_begin();
    let excl = {
        let mut g = mm.mmap_read_lock();
        mm.make_device_exclusive(&mut g, a, Some(owner), &Task::new("driver"))?
    };
    let retry = sub.read_retry(seq);
    let folio = excl.folio();
    writeln!(
        out,
        "22. make_device_exclusive({a:#x}, owner {:#x}): PTE {}; refcount {} (entry + driver), mapcount {}, folio locked: {}",
        owner.raw(),
        describe(&mm, a),
        sys.mem().folio_ref_count(folio),
        sys.mem().page(excl.page()).map_or(0, |p| p.mapcount()),
        sys.mem().folio_test_locked(folio)
    )?;
    print_calls(out, &drv)?;
    writeln!(
        out,
        "    the driver's read section must retry: {retry} (its own event was filtered); it programs the device and drops the guard"
    )?;
    drop(excl);
    mm.fetch_add_u64(a, 1)?;
    writeln!(
        out,
        "23. the CPU does fetch_add on the page: the fault restores it ({}), value {}",
        describe(&mm, a),
        mm.read_u64(a)?
    )?;
    print_calls(out, &drv)?;
    writeln!(
        out,
        "    that restore ({}) revokes the device: a read section begun before it must retry: {}",
        profile.restore_event.event(),
        sub.read_retry(seq)
    )?;
    sub.remove()?;
    drop(sub);
    drop(mm);
    let verdict = checker_verdict(&sys);
    writeln!(
        out,
        "24. exit; checker: {verdict}; free frames {} of {}",
        sys.mem().nr_free_pages(),
        sys.mem().nr_usable_pages()
    )?;
    out.verdict(
        "driver's read section after its own conversion",
        "no retry",
        if retry { "retry" } else { "no retry" },
        Source::spec("6.3 (the owner filter), 6.2"),
    );
    out.verdict(
        "checker after exit",
        "all invariants hold",
        &verdict,
        checker_source(),
    );
    Ok(())
}

/// How long a step of a bundled scenario without a flawed driver may take (a step
/// over a 1024-page buffer in a debug build takes a while; none sleeps).
const LONG_STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Part `selftests`: the ports of Linux's hmm selftests for exclusive access over
/// dmirror, plain and on a THP-backed buffer (examples/hmm-exclusive*.toml).
fn selftests_tour(out: &mut PartOut, profile: Profile) -> Result<()> {
    writeln!(
        out,
        "svmkit demo: Linux's hmm selftests for exclusive access, over dmirror (examples/hmm-exclusive*.toml)"
    )?;
    writeln!(out)?;
    for (n, (b, label)) in bundled::SELFTESTS.iter().enumerate() {
        let r = bundled::run(b, profile, LONG_STEP_TIMEOUT)?;
        let ran = r.report.steps.iter().filter(|s| !s.waited).count();
        let mark = if r.report.passed { "[ OK ]" } else { "[FAIL]" };
        writeln!(out, "{}. {mark} {label} ({}): {ran} steps", 25 + n, r.file)?;
        if r.report.passed {
            if let Some(c) = r
                .report
                .steps
                .iter()
                .rfind(|s| s.step.contains("CHECK_EXCLUSIVE"))
            {
                writeln!(out, "    {} -> {}", c.step, c.result)?;
            }
        } else {
            ending(out, &r)?;
        }
        r.outcome_verdict(out, &format!("selftest {label}"))?;
    }
    Ok(())
}

fn folio_lock_tour(out: &mut dyn Write, mem: &Arc<PhysMem>) -> Result<()> {
    let folio = mem.folio_alloc(0, Gfp::ZERO)?;
    let guard = mem.folio_trylock(folio).context("first trylock")?;
    let second = mem.folio_trylock(folio).is_some();
    writeln!(
        out,
        "5. folio_trylock({folio:?}) -> locked; a second trylock while held -> {}",
        if second { "succeeded (BUG)" } else { "fails" }
    )?;
    let started = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (mem, started) = (Arc::clone(mem), Arc::clone(&started));
        thread::spawn(move || {
            started.store(true, Ordering::SeqCst);
            let g = mem.folio_lock(folio);
            let old = mem.fetch_add_u64(g.folio().head(), 0, 1);
            drop(g);
            old
        })
    };
    while !started.load(Ordering::SeqCst) {
        thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(20));
    let held_value = mem.read_u64(folio.head(), 0)?;
    drop(guard);
    let old = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("waiter panicked"))??;
    writeln!(
        out,
        "   a waiter thread sleeps in folio_lock (counter in the frame still {held_value}); on unlock it wakes, takes the lock and increments {old} -> {}",
        mem.read_u64(folio.head(), 0)?
    )?;
    mem.folio_put(folio);
    Ok(())
}

fn killable_tour(out: &mut dyn Write, mem: &Arc<PhysMem>) -> Result<()> {
    let folio = mem.folio_alloc(0, Gfp::empty())?;
    let guard = mem.folio_lock(folio);
    let task = Task::new("victim");
    let waiter = {
        let (mem, task) = (Arc::clone(mem), task.clone());
        thread::spawn(move || mem.folio_lock_killable(folio, &task).map(|g| g.folio()))
    };
    std::thread::sleep(Duration::from_millis(20));
    task.kill();
    let res = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("waiter panicked"))?;
    writeln!(
        out,
        "6. folio_lock_killable by task '{}' blocks on the held lock; kill -> {}; the holder still has it: {}",
        task.name(),
        match res {
            Ok(_) => "acquired (BUG)".to_string(),
            Err(e) => e.name().to_string(),
        },
        mem.folio_test_locked(folio)
    )?;
    drop(guard);
    mem.folio_put(folio);
    Ok(())
}

fn mmap_lock_tour(out: &mut dyn Write) -> Result<()> {
    let lock = Arc::new(MmapLock::new(0u32));
    let r1 = lock.read();
    let r2 = lock.try_read().context("second reader")?;
    writeln!(
        out,
        "7. mmap_lock: two readers share it (readers = {}); try_write -> {}",
        lock.readers(),
        if lock.try_write().is_some() {
            "succeeded (BUG)"
        } else {
            "fails"
        }
    )?;
    let writer = {
        let lock = Arc::clone(&lock);
        thread::spawn(move || {
            let mut w = lock.write();
            *w += 1;
        })
    };
    while lock.waiting_writers() == 0 {
        thread::yield_now();
    }
    let new_reader = lock.try_read().is_some();
    writeln!(
        out,
        "   a writer queues (waiting writers = {}); a new reader now {} (writer preference)",
        lock.waiting_writers(),
        if new_reader {
            "gets in (BUG)"
        } else {
            "must wait"
        }
    )?;
    drop(r1);
    drop(r2);
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))?;
    writeln!(
        out,
        "   readers leave, the writer runs: value {}",
        *lock.read()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::PartName;
    use serde_json::Value;
    use svmkit::Profile;

    /// Every demo test runs under both eras.
    const BOTH: [Profile; 2] = Profile::ALL;

    fn text(parts: &[PartName]) -> String {
        let report = super::run(1024, parts, &BOTH, &mut |_| {});
        assert!(report.ok(), "{:?}", report.to_json());
        let mut out = Vec::new();
        report.write_text(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The parts of `json` run under the profile named `profile`.
    fn parts_of<'a>(json: &'a Value, profile: &str) -> Vec<&'a Value> {
        json["parts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["facts"]["profile"] == profile)
            .collect()
    }

    fn part<'a>(json: &'a Value, profile: &str, name: &str) -> &'a Value {
        parts_of(json, profile)
            .into_iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no part {name} ({profile}) in {json}"))
    }

    fn verdict<'a>(part: &'a Value, what: &str) -> &'a Value {
        part["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["what"] == what)
            .unwrap_or_else(|| panic!("no verdict {what} in {part}"))
    }

    /// The source kinds counted from the verdicts themselves: (total, kernel, spec,
    /// derived), every verdict having one of the three kinds and a citation.
    fn count_sources(json: &Value) -> (u64, u64, u64, u64) {
        let (mut n, mut k, mut s, mut d) = (0, 0, 0, 0);
        for p in json["parts"].as_array().unwrap() {
            for v in p["verdicts"].as_array().unwrap() {
                n += 1;
                assert!(!v["source"]["cite"].as_str().unwrap().is_empty(), "{v}");
                match v["source"]["kind"].as_str().unwrap() {
                    "kernel" => k += 1,
                    "spec" => s += 1,
                    "derived" => d += 1,
                    other => panic!("source kind {other} in {v}"),
                }
            }
        }
        (n, k, s, d)
    }

    #[test]
    fn demo_tour_prints_values_read_from_the_model() {
        let text = text(&[
            PartName::Foundation,
            PartName::AddressSpace,
            PartName::Fork,
            PartName::Exclusive,
        ]);
        assert!(text.contains("[linux-5.14]") && text.contains("[linux-6.15]"));
        assert!(text.contains("read back 0xdeadbeef"), "{text}");
        assert!(
            text.contains("a second trylock while held -> fails"),
            "{text}"
        );
        assert!(text.contains("kill -> EINTR"), "{text}");
        assert!(text.contains("a new reader now must wait"), "{text}");
        assert!(text.contains("increments 0 -> 1"), "{text}");
        assert!(text.contains("then out of memory"), "{text}");
        assert!(
            text.contains("bad-page reports during the tour: 0"),
            "{text}"
        );
        assert!(!text.contains("BUG"), "{text}");
        assert!(text.contains("(zero page)"), "{text}");
        assert!(
            text.contains("write 0x5678 took 0 fault(s); read back 0x5678"),
            "{text}"
        );
        assert!(text.contains("Protection fault on write"), "{text}");
        assert!(text.contains("Unmapped fault on read"), "{text}");
        assert!(text.contains("all invariants hold"), "{text}");
        assert!(text.contains("MMU_NOTIFY_PROTECTION_PAGE"), "{text}");
        assert!(text.contains("must retry: true"), "{text}");
        assert!(text.contains("the parent reads 3"), "{text}");
        assert!(text.contains("MMU_NOTIFY_RELEASE"), "{text}");
        assert!(!text.contains("violation"), "{text}");
        assert!(text.contains("PTE device-exclusive entry"), "{text}");
        assert!(
            text.contains("must retry: false (its own event was filtered)"),
            "{text}"
        );
        assert!(text.contains("value 42"), "{text}");
        // The restore's event per era: 5.14 Exclusive with no owner, 6.15 Clear.
        assert!(
            text.contains("that restore (MMU_NOTIFY_EXCLUSIVE)"),
            "{text}"
        );
        assert!(text.contains("that restore (MMU_NOTIFY_CLEAR)"), "{text}");
        assert!(text.contains("(source: spec 6.3"), "{text}");
        assert!(text.contains("(source: derived "), "{text}");
        assert!(text.contains("PASS"), "{text}");
    }

    #[test]
    fn demo_story_livelock_and_two_devices_verdicts_match_linux() {
        let report = super::run(
            1024,
            &[PartName::Story, PartName::Livelock, PartName::TwoDevices],
            &BOTH,
            &mut |_| {},
        );
        let json = report.to_json();
        assert_eq!(json["ok"], true, "{json}");
        // 6.15: the parts run to their end.
        let story = part(&json, "linux-6.15", "story");
        for t in story["facts"]["counters"].as_array().unwrap() {
            assert_eq!(t, &story["facts"]["expected_per_counter"]);
        }
        // Livelock, from examples/owner-filter-livelock.toml: every pass retried, up
        // to the bound, and 6.15's source names the livelock reproduced on 6.12.
        let livelock = part(&json, "linux-6.15", "livelock");
        assert_eq!(
            livelock["facts"]["passes_without_filter"],
            livelock["facts"]["bound"]
        );
        assert_eq!(livelock["facts"]["bound"], 4);
        assert_eq!(livelock["facts"]["outcome"], "pass");
        let v = verdict(livelock, "atomic fault without the owner filter");
        assert_eq!(
            (&v["linux"], &v["model"]),
            (&"EBUSY".into(), &"EBUSY".into())
        );
        // 6.12.117 showed the livelock with the 2021 design (spec 10.3): for the 6.15
        // era the file derives it.
        assert_eq!(v["source"]["kind"], "derived", "{v}");
        // 5.14: the blind driver sleeps on the folio lock it kept on retry (spec 8
        // item 22): the engine's watchdog reports the step that never returned.
        let livelock = part(&json, "linux-5.14", "livelock");
        assert_eq!(livelock["facts"]["outcome"], "deadlock", "{livelock}");
        let d = livelock["facts"]["deadlock"].as_str().unwrap();
        assert!(d.contains("thread blind sleeps in"), "{d}");
        let v = verdict(livelock, "owner-filter-livelock.toml ends as documented");
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(
            (&v["source"]["kind"], &v["source"]["cite"]),
            (&"spec".into(), &"8 item 22".into())
        );
        // Two devices, from examples/two-devices-one-page.toml, whose 6.15 source
        // derives it from what a real 6.12 kernel (the 2021 design) showed, spec 10.3.
        let two = part(&json, "linux-6.15", "two-devices");
        let v = verdict(two, "second device while the first holds the page");
        assert_eq!(
            (&v["linux"], &v["model"]),
            (&"EBUSY".into(), &"EBUSY".into())
        );
        assert_eq!(v["source"]["kind"], "derived", "{v}");
        assert_eq!(verdict(two, "value at buf")["model"], "11");
        // 5.14: B's first retry keeps the folio locked and its next pass sleeps on it
        // (spec 8 item 22, 9.6, derived from code).
        let two = part(&json, "linux-5.14", "two-devices");
        assert_eq!(two["facts"]["outcome"], "deadlock", "{two}");
        let d = two["facts"]["deadlock"].as_str().unwrap();
        assert!(d.contains("thread b sleeps in"), "{d}");
        let v = verdict(two, "two-devices-one-page.toml ends as documented");
        assert_eq!(v["source"]["kind"], "derived", "{v}");
        // 5.14: each part is the driver's self-deadlock, diagnosed from the model:
        // the driver task sleeps on the folio lock it leaked itself.
        let p = part(&json, "linux-5.14", "story");
        assert_eq!(p["facts"]["deadlocked_task"], "gpu", "{p}");
        let v = verdict(p, "driver on its first retry");
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["source"]["kind"], "derived", "{v}");
        let lines = p["lines"].to_string();
        assert!(lines.contains("blocked for more than"), "{lines}");
        assert!(lines.contains("lock holder: task gpu"), "{lines}");
    }

    #[test]
    fn demo_sources_and_summary_counts_agree_with_the_verdicts() {
        let report = super::run(
            1024,
            &[PartName::Foundation, PartName::Exclusive, PartName::Reclaim],
            &BOTH,
            &mut |_| {},
        );
        let json = report.to_json();
        assert_eq!(json["ok"], true, "{json}");
        let (n, k, s, d) = count_sources(&json);
        assert_eq!(json["verdicts"], n);
        assert_eq!(json["sources"]["kernel"], k);
        assert_eq!(json["sources"]["spec"], s);
        assert_eq!(json["sources"]["derived"], d);
        let mut out = Vec::new();
        report.write_text(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let summary = format!("{n} verdicts: {k} kernel, {s} spec, {d} derived; 0 mismatches");
        assert!(text.contains(&summary), "{summary} not in:\n{text}");
        // The text gives every verdict its source too.
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("verdict [")).collect();
        assert_eq!(lines.len() as u64, n);
        assert!(lines.iter().all(|l| l.contains("(source: ")), "{text}");
        // Reclaim acts on a page that is device-exclusive at that moment.
        // 5.14 cannot free it, the entry stays (examples/reclaim-stuck-5.14.toml);
        // 6.15 swaps it out (examples/reclaim-swapped-6.15.toml).
        for (profile, want) in [
            ("linux-5.14", "EAGAIN; PTE device-exclusive"),
            ("linux-6.15", "ok; PTE swap"),
        ] {
            let p = part(&json, profile, "reclaim");
            assert_eq!(p["facts"]["reclaimed_while_device_exclusive"], true);
            let v = verdict(p, "reclaim of a device-exclusive page");
            assert_eq!(v["model"], want, "{v}");
            assert_eq!(v["source"]["kind"], "spec", "{v}");
        }
    }

    /// A verdict's expectation is a fact of the era (the profile's name), not the
    /// switch the model reads: a 6.15-named profile with a 5.14 switch mismatches.
    #[test]
    fn demo_expectations_do_not_follow_the_profile_switches() {
        let odd = Profile {
            walkers_handle_entries: false,
            ..Profile::linux_6_15()
        };
        let report = super::run(1024, &[PartName::Reclaim], &[odd], &mut |_| {});
        assert!(report.error.is_none(), "{:?}", report.error);
        assert!(!report.ok(), "{}", report.to_json());
        // A 5.14-named profile whose driver unlocks on retry does not self-deadlock:
        // the expected self-deadlock is then a mismatch, not a copied string.
        let fixed = Profile {
            svm_atomic_unlock_on_retry: true,
            ..Profile::linux_5_14()
        };
        let report = super::run(1024, &[PartName::Livelock], &[fixed], &mut |_| {});
        let json = report.to_json();
        assert_eq!(json["ok"], false, "{json}");
        let v = verdict(
            &json["parts"][0],
            "owner-filter-livelock.toml ends as documented",
        );
        assert_eq!(
            (&v["linux"], &v["model"]),
            (&"deadlock".into(), &"pass".into())
        );
    }
}
