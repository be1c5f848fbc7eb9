//! `svmkit demo`: a narrated tour of what the model can do so far.
//!
//! Every number printed is read back from the model, not written into the text.
//! Every part runs bundled scenario files from `examples/` ([`crate::bundled`])
//! through the scenario engine, the same files `svmkit run` and CI run; this module
//! only narrates their accounts and states their verdicts, each expectation taken
//! from the file with the source the file gives it.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::bundled::{self, Bundled, Ran};
use crate::report::{Part, PartOut, Report, Source};
use svmkit::Profile;
use svmkit_scenario::ast::Driver;
use svmkit_scenario::engine::StepRecord;

/// The parts of the demo, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub(crate) enum PartName {
    /// The zero page, folios and their references, a THP, the folio lock (a sleeper
    /// that wakes, a killable one that is killed), memory running out.
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

/// Runs the chosen parts (all when `parts` is empty). `frames`, when given, is the
/// size of every part's memory (every bundled scenario's, instead of the file's).
/// `progress` gets one line per part as it starts (long runs say what they do). A
/// part that fails ends the run: the report keeps the parts so far (the failed one
/// too, with what it printed) and the error.
pub(crate) fn run(
    frames: Option<u64>,
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
fn run_part(
    part: PartName,
    profile: Profile,
    frames: Option<u64>,
    out: &mut PartOut,
) -> Result<()> {
    writeln!(out, "[{}]", profile.name)?;
    out.fact("profile", profile.name);
    match part {
        PartName::Foundation => scenario_tour(
            out,
            &bundled::FOUNDATION,
            profile,
            frames,
            "",
            "the foundation (the zero page, folios and references, a THP, the folio lock, memory running out)",
        ),
        PartName::AddressSpace => scenario_tour(
            out,
            &bundled::ADDRESS_SPACE,
            profile,
            frames,
            "A",
            "an address space (page tables, faults, mprotect, munmap)",
        ),
        PartName::Fork => scenario_tour(
            out,
            &bundled::FORK,
            profile,
            frames,
            "F",
            "MMU notifiers, fork and copy-on-write, shared memory",
        ),
        PartName::Exclusive => scenario_tour(
            out,
            &bundled::EXCLUSIVE,
            profile,
            frames,
            "E",
            "device-exclusive access: a conversion, its restore, the owner filter",
        ),
        PartName::Story => story(out, profile, frames),
        PartName::Livelock => livelock(out, profile, frames),
        PartName::TwoDevices => two_devices(out, profile, frames),
        PartName::Reclaim => reclaim_tour(out, profile, frames),
        PartName::Selftests => selftests_tour(out, profile, frames),
    }
}

/// A bundled file run and narrated: each step that ran, numbered `PREFIX1.`,
/// `PREFIX2.`, ... with what it changed, how the run ended, the verdict that it ended
/// as the file documents for this era, and (when the era is documented to pass) a
/// verdict for each labelled step and each end value.
fn scenario_tour(
    out: &mut PartOut,
    b: &Bundled,
    profile: Profile,
    frames: Option<u64>,
    prefix: &str,
    title: &str,
) -> Result<()> {
    let r = bundled::run(b, profile, LONG_STEP_TIMEOUT, frames)?;
    writeln!(out, "svmkit demo: {title} ({}, {})", r.file, r.sc.name)?;
    writeln!(out)?;
    narrate(out, &r, prefix)?;
    ending(out, &r)?;
    for c in &r.report.end {
        writeln!(
            out,
            "    end: {}: {}{}",
            c.what,
            c.detail,
            if c.ok { "" } else { " (FAILED)" }
        )?;
    }
    r.outcome_verdict(out, &format!("{} ends as documented", r.file))?;
    if r.documented_pass()? {
        r.labelled_verdicts(out)?;
        value_verdicts(out, &r, &r.source()?);
    }
    Ok(())
}

/// Every step of a run that ran, in order, with its note, the faults it took and
/// what it changed.
fn narrate(out: &mut PartOut, r: &Ran, prefix: &str) -> Result<()> {
    for (i, rec) in r.report.steps.iter().filter(|s| !s.waited).enumerate() {
        writeln!(
            out,
            "{prefix}{}. {}: {} -> {}{}",
            i + 1,
            rec.thread,
            rec.step,
            rec.result,
            rec.note
                .as_ref()
                .map_or_else(String::new, |n| format!("  # {n}"))
        )?;
        // A failed access's count says nothing (a SIGSEGV is no fault the task
        // accounts); a successful one's, zero included, is what the step cost. A
        // touch loop's faults up to its failure are the pages it got.
        if rec.step.starts_with("touch") && rec.result.starts_with('E') {
            if let Some(f) = rec.faults {
                writeln!(out, "    {f} page fault(s) served, then {}", rec.result)?;
            }
        } else if let Some(f) = rec.faults.filter(|_| !rec.result.starts_with(['E', 'S'])) {
            writeln!(
                out,
                "    {f} {}",
                if rec.step.starts_with("device atomic") {
                    "pass(es) of the fault loop"
                } else {
                    "page fault(s)"
                }
            )?;
        }
        changes(out, rec)?;
    }
    Ok(())
}

/// Part `story`: a GPU and two CPU threads count in a THP-backed buffer
/// (examples/story-gpu-and-cpus-count.toml).
fn story(out: &mut PartOut, profile: Profile, frames: Option<u64>) -> Result<()> {
    let r = bundled::run(&bundled::STORY, profile, DRIVER_STEP_TIMEOUT, frames)?;
    writeln!(
        out,
        "svmkit demo: the story: a GPU and two CPU threads increment shared counters ({})",
        r.file
    )?;
    writeln!(out)?;
    let zeroes =
        r.sc.threads
            .iter()
            .find(|t| t.name == "zero")
            .map_or(0, |t| t.steps.len());
    writeln!(out, "S1. {}", r.line("zero", 0)?)?;
    if let (_, Some(rec)) = r.step("zero", 0)? {
        changes(out, rec)?;
    }
    writeln!(
        out,
        "    and {} more counters, one every 64 pages",
        zeroes.saturating_sub(1)
    )?;
    let bound = max_passes(&r, "gpu-first")?;
    writeln!(out, "S2. {}", r.line("first", 0)?)?;
    if let (_, Some(rec)) = r.step("first", 0)? {
        if let Some(p) = rec.faults {
            writeln!(out, "    {p} passes of the fault loop (bound {bound})")?;
        }
        if let Some((before, after)) = &rec.pte {
            let split = before.starts_with("huge") && !after.starts_with("huge");
            writeln!(out, "    the PMD was split (FOLL_SPLIT_PMD): {split}")?;
            out.fact("first_atomic_split_the_pmd", split);
        }
        changes(out, rec)?;
    }
    if r.report.deadlock.is_some() {
        // The first atomic never returned: nothing after it ran.
        ending(out, &r)?;
        r.outcome_verdict(out, "story-gpu-and-cpus-count.toml ends as documented")?;
        return Ok(());
    }
    writeln!(out, "S3. {}", r.line("touch", 0)?)?;
    let ran = |thread: &str| -> Vec<&StepRecord> {
        r.report
            .steps
            .iter()
            .filter(|s| s.thread == thread && !s.waited && s.failed.is_none())
            .collect()
    };
    let gpu = ran("gpu");
    let passes: u64 = gpu.iter().filter_map(|s| s.faults).sum();
    let retried = gpu
        .iter()
        .filter(|s| s.faults.is_some_and(|f| f > 1))
        .count();
    let cpu = ran("cpu1").len() + ran("cpu2").len();
    writeln!(
        out,
        "S4. the GPU (svm_atomic, owner filter on) did {} atomics in {passes} passes of its fault loop ({retried} needed more than one); the two CPU threads {cpu} fetch_adds, one whole step per turn",
        gpu.len()
    )?;
    let values = r.end_values();
    let totals: Vec<String> = values.iter().map(|(_, _, got)| got.clone()).collect();
    writeln!(
        out,
        "S5. totals: [{}] (the file expects {} each)",
        totals.join(", "),
        values
            .first()
            .map_or_else(|| "?".to_string(), |(_, want, _)| want.to_string())
    )?;
    ending(out, &r)?;
    out.fact(
        "counters",
        totals
            .iter()
            .map(|t| t.parse::<u64>().ok())
            .collect::<Vec<_>>(),
    );
    if let Some((_, want, _)) = values.first() {
        out.fact("expected_per_counter", *want);
    }
    out.fact("gpu_atomics", gpu.len());
    out.fact("gpu_passes", passes);
    r.outcome_verdict(out, "story-gpu-and-cpus-count.toml ends as documented")?;
    if r.documented_pass()? {
        r.labelled_verdicts(out)?;
        value_verdicts(out, &r, &r.source()?);
    }
    Ok(())
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
fn reclaim_tour(out: &mut PartOut, profile: Profile, frames: Option<u64>) -> Result<()> {
    writeln!(
        out,
        "svmkit demo: reclaim and migration of a device-exclusive page"
    )?;
    writeln!(out)?;
    let [stuck, swapped, offline, migrated] = bundled::RECLAIM
        .each_ref()
        .map(|b| bundled::run(b, profile, LONG_STEP_TIMEOUT, frames));
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
    if let Some(c) = &rec.folio {
        writeln!(
            out,
            "    folio {:#x}: refcount {}, mapcount {}",
            c.folio, c.refcount, c.mapcount
        )?;
    }
    Ok(())
}

/// Prints how a bundled run ended when it did not pass (the deadlock, or the first
/// failed expectation).
fn ending(out: &mut PartOut, r: &Ran) -> Result<()> {
    if let Some(d) = &r.report.deadlock {
        writeln!(out, "    deadlock: {d}")?;
        if let Some(h) = &r.report.hang {
            writeln!(out, "    hung-task report read from the model:")?;
            for l in &h.lines {
                writeln!(out, "      {l}")?;
            }
        }
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
fn livelock(out: &mut PartOut, profile: Profile, frames: Option<u64>) -> Result<()> {
    let r = bundled::run(&bundled::OWNER_FILTER, profile, DRIVER_STEP_TIMEOUT, frames)?;
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
fn two_devices(out: &mut PartOut, profile: Profile, frames: Option<u64>) -> Result<()> {
    let r = bundled::run(&bundled::TWO_DEVICES, profile, DRIVER_STEP_TIMEOUT, frames)?;
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

/// How long a step of a bundled scenario without a flawed driver may take (a step
/// over a 1024-page buffer in a debug build takes a while; none sleeps).
const LONG_STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Part `selftests`: the ports of Linux's hmm selftests for exclusive access over
/// dmirror, plain and on a THP-backed buffer (examples/hmm-exclusive*.toml).
fn selftests_tour(out: &mut PartOut, profile: Profile, frames: Option<u64>) -> Result<()> {
    writeln!(
        out,
        "svmkit demo: Linux's hmm selftests for exclusive access, over dmirror (examples/hmm-exclusive*.toml)"
    )?;
    writeln!(out)?;
    for (n, (b, label)) in bundled::SELFTESTS.iter().enumerate() {
        let r = bundled::run(b, profile, LONG_STEP_TIMEOUT, frames)?;
        let ran = r.report.steps.iter().filter(|s| !s.waited).count();
        let mark = if r.report.passed { "[ OK ]" } else { "[FAIL]" };
        writeln!(out, "H{}. {mark} {label} ({}): {ran} steps", n + 1, r.file)?;
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

#[cfg(test)]
mod tests {
    use super::PartName;
    use serde_json::Value;
    use svmkit::Profile;

    /// Every demo test runs under both eras.
    const BOTH: [Profile; 2] = Profile::ALL;

    fn text(parts: &[PartName]) -> String {
        let report = super::run(None, parts, &BOTH, &mut |_| {});
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

    /// The lines a part printed under one profile, joined.
    fn lines(json: &Value, profile: &str, name: &str) -> String {
        part(json, profile, name)["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n")
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
        // The foundation (examples/foundation-folios-and-locks.toml): the counts
        // and results the model returned, under each era.
        assert!(
            text.contains("folio 0x5: refcount 1025, mapcount 1"),
            "{text}"
        );
        assert!(text.contains("-> = 3735928559"), "{text}");
        assert!(text.contains("thp[page 1] (0x40001000) -> EINTR"), "{text}");
        assert!(text.contains("thp[page 1] (0x40001000) -> EBUSY"), "{text}");
        assert!(text.contains("page fault(s) served, then ENOMEM"), "{text}");
        assert!(text.contains("every frame free after exit"), "{text}");
        assert!(!text.contains("BUG"), "{text}");
        assert!(!text.contains("FAILED"), "{text}");
        assert!(text.contains("(source: spec 4.2"), "{text}");
        assert!(text.contains("(source: derived "), "{text}");
        assert!(text.contains("PASS"), "{text}");
    }

    /// The tours run their bundled files through the engine: what each part prints is
    /// the engine's account of the file's steps, under each era.
    #[test]
    fn demo_tours_narrate_the_bundled_scenarios_per_era() {
        let report = super::run(
            None,
            &[PartName::AddressSpace, PartName::Fork, PartName::Exclusive],
            &BOTH,
            &mut |_| {},
        );
        let json = report.to_json();
        assert_eq!(json["ok"], true, "{json}");
        for profile in ["linux-5.14", "linux-6.15"] {
            let a = lines(&json, profile, "address-space");
            assert!(a.contains("anon-fault-mprotect-munmap.toml"), "{a}");
            // The read maps the zero page, the write replaces it (wp_page_copy's Clear).
            assert!(
                a.contains("pte: none -> present pfn 0x0 zero-page ro"),
                "{a}"
            );
            assert!(a.contains("zero-page ro -> present pfn"), "{a}");
            assert!(a.contains("MMU_NOTIFY_PROTECTION_VMA"), "{a}");
            assert!(a.contains("= 1 -> SIGSEGV"), "{a}");
            assert!(a.contains("-> = 22136"), "{a}");
            assert!(a.contains("MMU_NOTIFY_UNMAP"), "{a}");
            assert!(a.contains("end: every frame free after exit"), "{a}");
            let p = part(&json, profile, "address-space");
            assert_eq!(verdict(p, "read: PTE after")["model"], "zero-page");
            assert_eq!(verdict(p, "denied: result")["model"], "SIGSEGV");
            let f = lines(&json, profile, "fork");
            assert!(
                f.contains("notifier: parent MMU_NOTIFY_PROTECTION_PAGE"),
                "{f}"
            );
            assert!(f.contains("notifier: parent MMU_NOTIFY_CLEAR"), "{f}");
            assert!(f.contains("child-again: read priv"), "{f}");
            assert!(f.contains("parent-ends: read shm (0x"), "{f}");
            assert!(f.contains("notifier: child MMU_NOTIFY_RELEASE"), "{f}");
            let p = part(&json, profile, "fork");
            assert_eq!(verdict(p, "child-keeps: result")["model"], "= 1");
            assert_eq!(verdict(p, "shared-read: result")["model"], "= 3");
            let e = lines(&json, profile, "exclusive");
            assert!(
                e.contains("MMU_NOTIFY_EXCLUSIVE [0x7ffeffffe000, 0x7ffefffff000) owner gpu"),
                "{e}"
            );
            assert!(e.contains("device: gpu: rwa"), "{e}");
            assert!(e.contains("1 pass(es) of the fault loop"), "{e}");
            let p = part(&json, profile, "exclusive");
            assert_eq!(verdict(p, "atomic: faults")["model"], "1");
            assert_eq!(verdict(p, "value at buf")["model"], "42");
        }
        // The restore's event per era (spec 6.4): 5.14 Exclusive with no owner, 6.15
        // Clear; the account line under the restore step says which.
        let restore = |profile: &str| -> String {
            let e = lines(&json, profile, "exclusive");
            let mut it = e.lines().skip_while(|l| !l.contains("restore: fetch_add"));
            it.find(|l| l.contains("notifier:"))
                .unwrap_or_default()
                .to_string()
        };
        let old = restore("linux-5.14");
        assert!(
            old.contains("MMU_NOTIFY_EXCLUSIVE") && !old.contains("owner"),
            "{old}"
        );
        assert!(restore("linux-6.15").contains("MMU_NOTIFY_CLEAR"), "{json}");
    }

    #[test]
    fn demo_story_livelock_and_two_devices_verdicts_match_linux() {
        let report = super::run(
            None,
            &[PartName::Story, PartName::Livelock, PartName::TwoDevices],
            &BOTH,
            &mut |_| {},
        );
        let json = report.to_json();
        assert_eq!(json["ok"], true, "{json}");
        // 6.15: the story runs to its end, every counter exact
        // (examples/story-gpu-and-cpus-count.toml).
        let story = part(&json, "linux-6.15", "story");
        let counters = story["facts"]["counters"].as_array().unwrap();
        assert_eq!(counters.len(), 8, "{story}");
        for t in counters {
            assert_eq!(t, &story["facts"]["expected_per_counter"]);
        }
        assert_eq!(story["facts"]["first_atomic_split_the_pmd"], true);
        assert_eq!(verdict(story, "first: result")["model"], "EBUSY");
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
        assert_eq!(
            livelock["facts"]["outcome"], "deadlock (self-deadlock)",
            "{livelock}"
        );
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
        assert_eq!(two["facts"]["outcome"], "deadlock (self-deadlock)", "{two}");
        let d = two["facts"]["deadlock"].as_str().unwrap();
        assert!(d.contains("thread b sleeps in"), "{d}");
        let v = verdict(two, "two-devices-one-page.toml ends as documented");
        assert_eq!(v["source"]["kind"], "derived", "{v}");
        // 5.14: the story's first atomic is the driver's self-deadlock, diagnosed from
        // the model: the driver task sleeps on the folio lock it leaked itself.
        let p = part(&json, "linux-5.14", "story");
        assert_eq!(p["facts"]["deadlocked_task"], "first", "{p}");
        let v = verdict(p, "story-gpu-and-cpus-count.toml ends as documented");
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["model"], "deadlock (self-deadlock)", "{v}");
        assert_eq!(v["source"]["kind"], "derived", "{v}");
        let lines = p["lines"].to_string();
        assert!(lines.contains("blocked for more than"), "{lines}");
        assert!(lines.contains("lock holder: task first"), "{lines}");
    }

    #[test]
    fn demo_sources_and_summary_counts_agree_with_the_verdicts() {
        let report = super::run(
            None,
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
        let report = super::run(None, &[PartName::Reclaim], &[odd], &mut |_| {});
        assert!(report.error.is_none(), "{:?}", report.error);
        assert!(!report.ok(), "{}", report.to_json());
        // A 5.14-named profile whose driver unlocks on retry does not self-deadlock:
        // the expected self-deadlock is then a mismatch, not a copied string.
        let fixed = Profile {
            svm_atomic_unlock_on_retry: true,
            ..Profile::linux_5_14()
        };
        let report = super::run(None, &[PartName::Livelock], &[fixed], &mut |_| {});
        let json = report.to_json();
        assert_eq!(json["ok"], false, "{json}");
        let v = verdict(
            &json["parts"][0],
            "owner-filter-livelock.toml ends as documented",
        );
        assert_eq!(
            (&v["linux"], &v["model"]),
            (&"deadlock (self-deadlock)".into(), &"pass".into())
        );
    }

    /// The self-deadlock verdict names the folio the hung-task report found: the
    /// THP's head, whose lock the first atomic's retry leaked.
    #[test]
    fn demo_story_self_deadlock_names_the_folio_of_the_hung_task_report() {
        let report = super::run(
            None,
            &[PartName::Story],
            &[Profile::linux_5_14()],
            &mut |_| {},
        );
        let json = report.to_json();
        let p = &json["parts"][0];
        let v = verdict(p, "story-gpu-and-cpus-count.toml ends as documented");
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(p["facts"]["deadlocked_on_folio"], "0x200", "{p}");
    }
}
