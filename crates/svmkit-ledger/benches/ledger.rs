//! The performance ledger (issue 21): `cargo bench -p svmkit-ledger --bench ledger`.
//!
//! Prints, in Markdown, the machine, the main table (real kernel and model side by
//! side, interleaved rounds, min/median, model/real of the medians, the issue's
//! goals), the scale rows (how each cost grows with size) and the model's
//! footprint at 2^18, 2^20 and 2^24 frames. `LEDGER_ROUNDS` sets the rounds of the
//! main table (default 21) and `LEDGER_SCALE_ROUNDS` those of the scale rows
//! (default 11); `LEDGER_SKIP_1GIB=1` leaves out the 1 GiB fork rows and the 2^24
//! model (for machines without a few GiB free).

use std::cell::RefCell;

use svmkit_ledger::model::{self, Machine};
use svmkit_ledger::{Error, Row, Sampler, fmt_mib, fmt_ns, median, real, run, table};

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sampler<'a>(f: impl FnMut() -> Result<f64, Error> + 'a) -> Sampler<'a> {
    Box::new(f)
}

fn machine_description(cpu: usize) -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model_name = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let ncpu = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem = read("/proc/meminfo")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let kernel = read("/proc/sys/kernel/osrelease");
    let thp = read("/sys/kernel/mm/transparent_hugepage/enabled");
    format!(
        "- CPU: {ncpu} × {model_name} (measuring thread pinned to CPU {cpu})\n\
         - {}\n- kernel {} (THP {})\n- load average at start: {}",
        mem.split_whitespace().collect::<Vec<_>>().join(" "),
        kernel.trim(),
        thp.trim(),
        read("/proc/loadavg").trim(),
    )
}

fn main() -> Result<(), Error> {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let rounds = env_usize("LEDGER_ROUNDS", 21);
    let scale_rounds = env_usize("LEDGER_SCALE_ROUNDS", 11);
    let skip_big = std::env::var("LEDGER_SKIP_1GIB").is_ok_and(|v| v == "1");
    // Pinned first, so that the fork servers inherit the CPU too; the servers next,
    // while this process is still small (real::ForkServer).
    let cpu = real::pin_to_current_cpu();
    let fork_sizes: &[u64] = if skip_big { &[1, 64] } else { &[1, 64, 1024] };
    let servers = fork_sizes
        .iter()
        .map(|&mib| real::ForkServer::spawn((mib * MIB) as usize))
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "# svmkit performance ledger\n\n{}\n",
        machine_description(cpu)
    );

    // The footprints first, while this process is small and has one thread, each in
    // a child of its own: freed memory the allocator keeps resident would hide what
    // a model costs.
    let sizes: &[(u32, u64)] = if skip_big {
        &[(18, 512 * MIB), (20, 1024 * MIB)]
    } else {
        &[(18, 512 * MIB), (20, 1024 * MIB), (24, 1024 * MIB)]
    };
    let footprints: Vec<_> = sizes
        .iter()
        .map(|&(bits, touched)| {
            let frames = 1u64 << bits;
            (
                bits,
                frames,
                svmkit_ledger::footprint_in_child(frames, touched, 3),
            )
        })
        .collect();

    // ---------------------------------------------------------------- main table
    let touch = Machine::new(model::frames_for(4096))?;
    let real_mprotect = real::MprotectRange::new((64 * MIB) as usize)?;
    let model_mprotect = model::MprotectRange::new(64 * MIB / PAGE)?;
    let real_fork = &servers[1];
    let model_fork = model::Fork::new(64 * MIB / PAGE)?;
    let real_dontneed = real::DontneedPerPage::new(1024)?;
    let model_dontneed = model::DontneedPerPage::new(1024)?;
    let uffd = real::UffdCycle::new(256).map_err(|e| e.to_string());
    let segv = real::SegvCycle::new(256)?;
    let model_cycle = model::Cycle::new(256)?;
    // Each fork sample gives "with" and "without" at once; the fixed-cost row reads
    // the "without" of the same sample.
    let fork_fixed: RefCell<(f64, f64)> = RefCell::new((0.0, 0.0));

    let mut rows = vec![
        Row::new(
            "first-touch write fault (mmap + touch + munmap of 256 pages)",
            "page",
            Some(0.3),
            Ok(sampler(|| Ok(real::first_touch(256)?))),
            sampler(|| model::first_touch(&touch.mm, 256)),
        ),
        Row::new(
            "mprotect(PROT_NONE) + mprotect(RW), one call each over 64 MiB touched",
            "page",
            Some(0.3),
            Ok(sampler(|| Ok(real_mprotect.sample()?))),
            sampler(|| model_mprotect.sample()),
        ),
        Row::new(
            "fork, 64 MiB touched (marginal: fork − the same fork with the 64 MiB MADV_DONTFORK)",
            "MiB",
            Some(0.3),
            Ok(sampler(|| {
                let (with, without) = real_fork.sample()?;
                fork_fixed.borrow_mut().0 = without;
                Ok((with - without) / real_fork.mib())
            })),
            sampler(|| {
                let (with, without) = model_fork.sample()?;
                fork_fixed.borrow_mut().1 = without;
                Ok((with - without) / model_fork.mib())
            }),
        ),
        Row::new(
            "fork without the region (real: the fork server, region MADV_DONTFORK; model: an empty mm)",
            "fork",
            None,
            Ok(sampler(|| Ok(fork_fixed.borrow().0))),
            sampler(|| Ok(fork_fixed.borrow().1)),
        ),
        Row::new(
            "MADV_DONTNEED, one call per page, 1024 touched anon pages",
            "page",
            Some(0.3),
            Ok(sampler(|| Ok(real_dontneed.sample()?))),
            sampler(|| model_dontneed.sample()),
        ),
        Row::new(
            "exclusive → CPU write fault → restore; real: uffd MINOR + SIGBUS + CONTINUE",
            "cycle",
            Some(0.3),
            match &uffd {
                Ok(u) => Ok(sampler(|| Ok(u.sample()?))),
                Err(why) => Err(why.clone()),
            },
            sampler(|| model_cycle.sample()),
        ),
        Row::new(
            "exclusive → CPU write fault → restore; real: mprotect(NONE) + SIGSEGV + mprotect(RW)",
            "cycle",
            None,
            Ok(sampler(|| Ok(segv.sample()?))),
            sampler(|| model_cycle.sample()),
        ),
    ];
    run(&mut rows, rounds)?;
    println!(
        "## Real kernel and model, interleaved ({rounds} rounds after one warm-up)\n\n{}",
        table(&rows)
    );
    let missed: Vec<_> = rows
        .iter()
        .filter(|r| r.misses_goal() == Some(true))
        .map(|r| r.name.clone())
        .collect();
    println!(
        "Goals missed: {}\n",
        if missed.is_empty() {
            "none".to_string()
        } else {
            missed.join("; ")
        }
    );
    drop(rows);
    drop((
        real_mprotect,
        model_mprotect,
        model_fork,
        real_dontneed,
        model_dontneed,
        uffd,
        segv,
        model_cycle,
    ));

    // ---------------------------------------------------------------- scale rows
    let model_forks = fork_sizes
        .iter()
        .map(|&mib| model::Fork::new(mib * MIB / PAGE))
        .collect::<Result<Vec<_>, _>>()?;
    let notifier_counts = [1u64, 1_000, 100_000, 1_000_000];
    let invalidations = notifier_counts
        .iter()
        .map(|&n| model::Invalidation::new(n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut scale = Vec::new();
    for pages in [1u64, 64, 4096] {
        // At least 4096 pages per sample, so that one sample is long enough to time.
        let reps = (4096 / pages).max(1);
        let m = &touch.mm;
        scale.push(Row::new(
            format!("first touch, {pages} page(s) per mmap"),
            "page",
            None,
            Ok(sampler(move || {
                let mut s = 0.0;
                for _ in 0..reps {
                    s += real::first_touch(pages as usize)?;
                }
                Ok(s / reps as f64)
            })),
            sampler(move || {
                let mut s = 0.0;
                for _ in 0..reps {
                    s += model::first_touch(m, pages)?;
                }
                Ok(s / reps as f64)
            }),
        ));
    }
    for (r, m) in servers.iter().zip(&model_forks) {
        scale.push(Row::new(
            format!("fork, {} MiB touched (marginal)", r.mib()),
            "MiB",
            None,
            Ok(sampler(move || {
                let (with, without) = r.sample()?;
                Ok((with - without) / r.mib())
            })),
            sampler(move || {
                let (with, without) = m.sample()?;
                Ok((with - without) / m.mib())
            }),
        ));
    }
    for (n, inv) in notifier_counts.iter().zip(&invalidations) {
        scale.push(Row::model_only(
            format!("invalidate one page, {n} interval notifier(s)"),
            "invalidation",
            sampler(move || Ok(inv.sample(10_000))),
        ));
    }
    run(&mut scale, scale_rounds)?;
    println!(
        "## Scale ({scale_rounds} rounds after one warm-up)\n\n{}",
        table(&scale)
    );
    let growth = |a: usize, b: usize| -> String {
        match (
            median(&scale[a].model_samples),
            median(&scale[b].model_samples),
        ) {
            (Some(x), Some(y)) => format!("{:.2}×", y / x),
            _ => "—".into(),
        }
    };
    let real_growth = |a: usize, b: usize| -> String {
        match (
            median(&scale[a].real_samples),
            median(&scale[b].real_samples),
        ) {
            (Some(x), Some(y)) => format!("{:.2}×", y / x),
            _ => "—".into(),
        }
    };
    let nf = fork_sizes.len();
    let inv0 = 3 + nf;
    println!(
        "Growth of the per-unit median (largest size / smallest; ≤ 1× is linear or better):\n\n\
         - first touch per page, 4096 vs 1 page: model {}, real {}; 4096 vs 64 pages: model {}, real {}\n\
         - fork per MiB, {} vs 1 MiB: model {}, real {}; {} vs 64 MiB: model {}, real {}\n\
         - invalidation, 1M vs 1 notifier: model {} (goal ≤ 2.5×); 100k vs 1: {}\n",
        growth(0, 2),
        real_growth(0, 2),
        growth(1, 2),
        real_growth(1, 2),
        fork_sizes[nf - 1],
        growth(3, 3 + nf - 1),
        real_growth(3, 3 + nf - 1),
        fork_sizes[nf - 1],
        growth(4, 3 + nf - 1),
        real_growth(4, 3 + nf - 1),
        growth(inv0, inv0 + 3),
        growth(inv0, inv0 + 2),
    );
    drop(scale);
    drop(model_forks);
    drop(servers);
    drop(invalidations);
    drop(touch);

    // ---------------------------------------------------------------- footprint
    println!(
        "## Model footprint (System::new, then one process touching one word per page)\n\n\
         | frames | model size | create (median of 3) | peak RSS after create | touched | touch per page | peak RSS after touch | goal (1.5 × touched + frames × size_of::<Page>()) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for (bits, frames, f) in footprints {
        match f {
            Ok(f) => println!(
                "| 2^{bits} | {} | {} | {} | {} | {} | {} | ≤ {} {} |",
                fmt_mib(frames * PAGE),
                fmt_ns(f.create_ns),
                fmt_mib(f.create_peak),
                fmt_mib(f.touched),
                fmt_ns(f.touch_ns_per_page),
                fmt_mib(f.touched_peak),
                fmt_mib(f.goal()),
                if f.touched_peak <= f.goal() {
                    "met"
                } else {
                    "**missed**"
                },
            ),
            Err(e) => println!(
                "| 2^{bits} | {} | refused: {e} | | | | | |",
                fmt_mib(frames * PAGE)
            ),
        }
    }
    println!(
        "\nsize_of::<Page>() = {} bytes. Load average at the end: {}",
        size_of::<svmkit::mm::Page>(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    Ok(())
}
