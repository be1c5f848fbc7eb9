//! The performance ledger: the real kernel on this machine and the svmkit model,
//! measured side by side in one process and one run, and reported as ratios.
//!
//! These machines are noisy (shared, virtualised), so a ratio only means something
//! when both sides were measured at the same time: every [`Row`] takes its real and
//! its model sample in the same round, alternating which goes first, and reports the
//! minimum and median of each side and the ratio of the medians. Run it with
//! `cargo bench -p svmkit-ledger --bench ledger` (docs/PERFORMANCE.md).
//!
//! * [`real`]: the real kernel (the only module of the workspace outside
//!   svmkit-guest with `unsafe`: mappings, fork, signal handlers, userfaultfd).
//! * [`model`]: the same operations through svmkit's public API.

pub mod model;
pub mod real;

use std::fmt::Write as _;
use std::time::Instant;

/// Any failure of a measurement (an errno from either side, or a check that failed).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One sample: nanoseconds per unit.
pub type Sampler<'a> = Box<dyn FnMut() -> Result<f64, Error> + 'a>;

/// One line of the ledger: a real-kernel measurement and the model's, sampled in the
/// same rounds.
pub struct Row<'a> {
    /// What is measured.
    pub name: String,
    /// The unit of one sample ("page", "MiB", "cycle", ...).
    pub unit: &'static str,
    /// The goal on model/real, if the issue sets one.
    pub goal: Option<f64>,
    real: Result<Sampler<'a>, String>,
    model: Sampler<'a>,
    /// Real-kernel samples, ns per unit.
    pub real_samples: Vec<f64>,
    /// Model samples, ns per unit.
    pub model_samples: Vec<f64>,
}

impl std::fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<'a> Row<'a> {
    /// A row with both sides; `real` is `Err(why)` when the real side cannot run here
    /// (then only the model is sampled and the reason printed).
    pub fn new(
        name: impl Into<String>,
        unit: &'static str,
        goal: Option<f64>,
        real: Result<Sampler<'a>, String>,
        model: Sampler<'a>,
    ) -> Self {
        Row {
            name: name.into(),
            unit,
            goal,
            real,
            model,
            real_samples: Vec::new(),
            model_samples: Vec::new(),
        }
    }

    /// A row with the model side only.
    pub fn model_only(name: impl Into<String>, unit: &'static str, model: Sampler<'a>) -> Self {
        Row::new(name, unit, None, Err(String::new()), model)
    }

    fn sample(&mut self, real_first: bool, keep: bool) -> Result<(), Error> {
        let real = |row: &mut Self| -> Result<(), Error> {
            if let Ok(f) = &mut row.real {
                let v = f().map_err(|e| format!("{} (real): {e}", row.name))?;
                if keep {
                    row.real_samples.push(v);
                }
            }
            Ok(())
        };
        let model = |row: &mut Self| -> Result<(), Error> {
            let v = (row.model)().map_err(|e| format!("{} (model): {e}", row.name))?;
            if keep {
                row.model_samples.push(v);
            }
            Ok(())
        };
        if real_first {
            real(self)?;
            model(self)
        } else {
            model(self)?;
            real(self)
        }
    }

    /// Median model / median real, when both sides ran.
    pub fn ratio(&self) -> Option<f64> {
        Some(median(&self.model_samples)? / median(&self.real_samples)?)
    }

    /// Whether the row misses its goal (None: no goal or no ratio).
    pub fn misses_goal(&self) -> Option<bool> {
        Some(self.ratio()? > self.goal?)
    }
}

/// Runs `rounds` rounds over `rows` after one warm-up round that is thrown away (the
/// first touches of a fresh region cost host-side faults on this VM); in each round
/// every row takes one real and one model sample, the order alternating by round.
pub fn run(rows: &mut [Row<'_>], rounds: usize) -> Result<(), Error> {
    for round in 0..=rounds {
        for row in rows.iter_mut() {
            row.sample(round % 2 == 0, round > 0)?;
        }
    }
    Ok(())
}

/// The median (upper median for an even count), None for no samples.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied()
}

/// The minimum, None for no samples.
pub fn min(v: &[f64]) -> Option<f64> {
    v.iter().copied().min_by(f64::total_cmp)
}

/// Nanoseconds as a short human figure ("812 ns", "3.27 µs", "1.20 ms").
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn opt_ns(v: Option<f64>) -> String {
    v.map(fmt_ns).unwrap_or_else(|| "—".into())
}

/// The rows as a Markdown table: min and median of each side, model/real of the
/// medians, the goal and whether it is met.
pub fn table(rows: &[Row<'_>]) -> String {
    let mut s = String::from(
        "| measurement | unit | real min | real median | model min | model median | model/real | goal |\n\
         |---|---|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let (rmin, rmed) = match &r.real {
            Ok(_) => (
                opt_ns(min(&r.real_samples)),
                opt_ns(median(&r.real_samples)),
            ),
            Err(why) if why.is_empty() => ("—".into(), "—".into()),
            Err(why) => (format!("refused: {why}"), "—".into()),
        };
        let ratio = r.ratio().map_or("—".into(), |x| format!("{x:.3}×"));
        let goal = match (r.goal, r.misses_goal()) {
            (Some(g), Some(true)) => format!("≤ {g}× **missed**"),
            (Some(g), Some(false)) => format!("≤ {g}× met"),
            (Some(g), None) => format!("≤ {g}×"),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {rmin} | {rmed} | {} | {} | {ratio} | {goal} |",
            r.name,
            r.unit,
            opt_ns(min(&r.model_samples)),
            opt_ns(median(&r.model_samples)),
        );
    }
    s
}

/// What a model [`svmkit::System`] of some size costs to create and to use.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    /// Frames of the model.
    pub frames: u64,
    /// Median creation time (`System::new`), ns.
    pub create_ns: f64,
    /// Peak RSS growth while creating it, bytes.
    pub create_peak: u64,
    /// Bytes of model memory then touched (one write per page).
    pub touched: u64,
    /// Median ns per touched page (first-touch faults in the big model).
    pub touch_ns_per_page: f64,
    /// Peak RSS growth from before creation to after the touches, bytes.
    pub touched_peak: u64,
    /// The per-frame metadata the model keeps for every frame (`struct page`s:
    /// `frames × size_of::<Page>()`), the part a real kernel also keeps resident.
    pub metadata: u64,
}

impl Footprint {
    /// The goal on [`Footprint::touched_peak`]: 1.5 × touched + metadata.
    pub fn goal(&self) -> u64 {
        self.touched * 3 / 2 + self.metadata
    }
}

/// Creates a model of `frames` frames `creates` times (timed; median), then once more
/// with the peak RSS reset before it, maps `touch` bytes in one process and writes one
/// word per page. Refused (with the errno) if the model does not take that many
/// frames.
pub fn footprint(frames: u64, touch: u64, creates: usize) -> Result<Footprint, Error> {
    let mut times = Vec::new();
    for _ in 0..creates {
        let t = Instant::now();
        let sys = svmkit::System::new(svmkit::SystemConfig::with_frames(frames))?;
        times.push(t.elapsed().as_nanos() as f64);
        drop(sys);
    }
    real::reset_peak_rss()?;
    let (_, rss0) = real::rss()?;
    let m = model::Machine::new(frames)?;
    let (hwm1, _) = real::rss()?;
    let pages = touch / svmkit::PAGE_SIZE;
    let t = Instant::now();
    m.touched(pages)?;
    let touch_ns = t.elapsed().as_nanos() as f64;
    let (hwm2, _) = real::rss()?;
    drop(m);
    Ok(Footprint {
        frames,
        create_ns: median(&times).unwrap_or(f64::NAN),
        create_peak: hwm1.saturating_sub(rss0),
        touched: touch,
        touch_ns_per_page: touch_ns / pages.max(1) as f64,
        touched_peak: hwm2.saturating_sub(rss0),
        metadata: frames * size_of::<svmkit::mm::Page>() as u64,
    })
}

/// [`footprint`] in a forked child process (see [`real::in_child`]), so that each size
/// starts from the same, fresh heap. The error of a refused size is the child's
/// failure; run [`footprint`] directly to see its errno.
pub fn footprint_in_child(frames: u64, touch: u64, creates: usize) -> Result<Footprint, Error> {
    let [
        create_ns,
        create_peak,
        touched,
        touch_ns,
        touched_peak,
        metadata,
    ] = real::in_child(|| {
        let f = footprint(frames, touch, creates).ok()?;
        Some([
            f.create_ns,
            f.create_peak as f64,
            f.touched as f64,
            f.touch_ns_per_page,
            f.touched_peak as f64,
            f.metadata as f64,
        ])
    })?;
    Ok(Footprint {
        frames,
        create_ns,
        create_peak: create_peak as u64,
        touched: touched as u64,
        touch_ns_per_page: touch_ns,
        touched_peak: touched_peak as u64,
        metadata: metadata as u64,
    })
}

/// Bytes as MiB with one decimal.
pub fn fmt_mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}
