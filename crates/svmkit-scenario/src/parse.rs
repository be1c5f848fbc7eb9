//! From text to a checked [`Scenario`]: TOML (toml-span, which keeps every value's
//! span), then a walk that resolves names and checks every key, collecting every
//! problem rather than stopping at the first.

use std::collections::BTreeMap;

use svmkit::device::svm_atomic::SvmFlaws;
use svmkit::mm::{Advice, Prot, ThpMode};
use svmkit::{Errno, PAGE_SIZE, Profile};
use toml_span::value::ValueInner;

use crate::ast::*;
use crate::diag::{ParseError, Problem, did_you_mean};
use crate::engine::StepError;

/// The largest machine a scenario may ask for (frames): 4 GiB, enough for any story and
/// small enough that a typo cannot exhaust the host.
pub const MAX_FRAMES: u64 = 1 << 20;
/// The largest length a mapping or a step may name.
pub const MAX_LEN: u64 = 1 << 40;
/// The most times a `repeat` may run (after nesting).
pub const MAX_EXPANDED_STEPS: usize = 100_000;

/// An owned TOML value with its span.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) span: Span,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Str(String),
    Int(i64),
    Float,
    Bool(bool),
    Array(Vec<Node>),
    /// Keys with their spans, in file order.
    Table(Vec<(String, Span, Node)>),
}

impl Node {
    fn from_toml(mut v: toml_span::Value<'_>) -> Node {
        let span = Span::of(v.span);
        let kind = match v.take() {
            ValueInner::String(s) => Kind::Str(s.into_owned()),
            ValueInner::Integer(i) => Kind::Int(i),
            ValueInner::Float(_) => Kind::Float,
            ValueInner::Boolean(b) => Kind::Bool(b),
            ValueInner::Array(a) => Kind::Array(a.into_iter().map(Node::from_toml).collect()),
            ValueInner::Table(t) => {
                let mut entries: Vec<(String, Span, Node)> = t
                    .into_iter()
                    .map(|(k, v)| (k.name.into_owned(), Span::of(k.span), Node::from_toml(v)))
                    .collect();
                entries.sort_by_key(|e| e.1.start);
                Kind::Table(entries)
            }
        };
        Node { kind, span }
    }

    fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Str(_) => "a string",
            Kind::Int(_) => "an integer",
            Kind::Float => "a float",
            Kind::Bool(_) => "a boolean",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }
}

/// Collects problems while walking.
#[derive(Default)]
pub(crate) struct Ctx {
    pub(crate) problems: Vec<Problem>,
}

impl Ctx {
    fn err(&mut self, p: Problem) {
        self.problems.push(p);
    }

    fn want_str(&mut self, n: &Node, what: &str) -> Option<String> {
        match &n.kind {
            Kind::Str(s) => Some(s.clone()),
            _ => {
                self.err(
                    Problem::new(
                        n.span,
                        format!("{what} must be a string, not {}", n.type_name()),
                    )
                    .label("expected a string"),
                );
                None
            }
        }
    }

    fn want_u64(&mut self, n: &Node, what: &str, max: u64) -> Option<u64> {
        match n.kind {
            Kind::Int(i) if i >= 0 && (i as u64) <= max => Some(i as u64),
            Kind::Int(i) => {
                self.err(
                    Problem::new(n.span, format!("{what} {i} is out of range"))
                        .label("out of range")
                        .help(format!("use a value from 0 to {max}")),
                );
                None
            }
            _ => {
                self.err(
                    Problem::new(
                        n.span,
                        format!("{what} must be an integer, not {}", n.type_name()),
                    )
                    .label("expected an integer"),
                );
                None
            }
        }
    }

    fn want_bool(&mut self, n: &Node, what: &str) -> Option<bool> {
        match n.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.err(
                    Problem::new(
                        n.span,
                        format!("{what} must be true or false, not {}", n.type_name()),
                    )
                    .label("expected a boolean"),
                );
                None
            }
        }
    }

    /// A length: an integer (bytes) or a string with a unit (`4KiB`, `2MiB`, `1GiB`,
    /// `3 pages`, `0x1000`).
    fn want_len(&mut self, n: &Node, what: &str) -> Option<u64> {
        let v = match &n.kind {
            Kind::Int(_) => self.want_u64(n, what, MAX_LEN)?,
            Kind::Str(s) => match parse_len(s) {
                Some(v) if v <= MAX_LEN => v,
                Some(_) => {
                    self.err(
                        Problem::new(n.span, format!("{what} `{s}` is too large"))
                            .label("too large")
                            .help(format!("at most {MAX_LEN} bytes")),
                    );
                    return None;
                }
                None => {
                    self.err(
                        Problem::new(n.span, format!("{what} `{s}` is not a length"))
                            .label("not a length")
                            .help("write bytes (4096, 0x1000) or a number with a unit: 4KiB, 2MiB, 1GiB, 3 pages"),
                    );
                    return None;
                }
            },
            _ => {
                self.err(
                    Problem::new(
                        n.span,
                        format!("{what} must be a length, not {}", n.type_name()),
                    )
                    .label("expected a length")
                    .help("write bytes (4096) or a string with a unit (\"2MiB\", \"3 pages\")"),
                );
                return None;
            }
        };
        Some(v)
    }
}

/// Parses a length with an optional unit.
pub(crate) fn parse_len(s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("pages").or_else(|| t.strip_suffix("page")) {
        (n.trim(), PAGE_SIZE)
    } else if let Some(n) = t.strip_suffix("KiB") {
        (n.trim(), 1 << 10)
    } else if let Some(n) = t.strip_suffix("MiB") {
        (n.trim(), 1 << 20)
    } else if let Some(n) = t.strip_suffix("GiB") {
        (n.trim(), 1 << 30)
    } else {
        (t, 1)
    };
    parse_int(num)?.checked_mul(mult)
}

/// A decimal or `0x` hexadecimal integer, `_` allowed between digits.
pub(crate) fn parse_int(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// A table's entries, each key taken once; what is left is an unknown key.
struct Tbl<'a> {
    entries: Vec<(&'a str, Span, &'a Node)>,
    taken: Vec<bool>,
    span: Span,
    what: String,
}

impl<'a> Tbl<'a> {
    fn new(cx: &mut Ctx, n: &'a Node, what: &str) -> Option<Tbl<'a>> {
        match &n.kind {
            Kind::Table(t) => Some(Tbl {
                entries: t.iter().map(|(k, s, v)| (k.as_str(), *s, v)).collect(),
                taken: vec![false; t.len()],
                span: n.span,
                what: what.to_string(),
            }),
            _ => {
                cx.err(
                    Problem::new(
                        n.span,
                        format!("{what} must be a table, not {}", n.type_name()),
                    )
                    .label("expected a table"),
                );
                None
            }
        }
    }

    fn get(&mut self, key: &str) -> Option<&'a Node> {
        let i = self.entries.iter().position(|e| e.0 == key)?;
        self.taken[i] = true;
        Some(self.entries[i].2)
    }

    fn require(&mut self, cx: &mut Ctx, key: &str) -> Option<&'a Node> {
        let n = self.get(key);
        if n.is_none() {
            cx.err(
                Problem::new(self.span, format!("{} needs `{key}`", self.what))
                    .label(format!("no `{key}` here")),
            );
        }
        n
    }

    /// Reports every key not taken, with a suggestion among `known`.
    fn finish(self, cx: &mut Ctx, known: &[&str]) {
        for (i, (k, s, _)) in self.entries.iter().enumerate() {
            if !self.taken[i] {
                let mut p = Problem::new(*s, format!("unknown key `{k}` in {}", self.what))
                    .label("unknown key");
                p = match did_you_mean(k, known.iter().copied()) {
                    Some(h) => p.help(h),
                    None => p.help(format!("{} takes: {}", self.what, known.join(", "))),
                };
                cx.err(p);
            }
        }
    }
}

/// Names declared so far, for resolving references.
#[derive(Default)]
struct Names {
    processes: Vec<Process>,
    /// Every `[[thread]]`'s name, in file order (a `kill` step names one).
    threads: Vec<String>,
    maps: Vec<Mapping>,
    devices: Vec<Device>,
}

impl Names {
    fn process(&self, cx: &mut Ctx, n: &Node) -> Option<usize> {
        let name = cx.want_str(n, "a process")?;
        let i = self.processes.iter().position(|p| p.name == name);
        if i.is_none() {
            let mut p = Problem::new(n.span, format!("no process is called `{name}`"))
                .label("unknown process");
            if let Some(h) = did_you_mean(&name, self.processes.iter().map(|p| p.name.as_str())) {
                p = p.help(h);
            } else {
                p = p.help("declare it with [[process]] or create it with a fork step");
            }
            cx.err(p);
        }
        i
    }

    fn device(&self, cx: &mut Ctx, n: &Node) -> Option<usize> {
        let name = cx.want_str(n, "a device")?;
        let i = self.devices.iter().position(|d| d.name == name);
        if i.is_none() {
            let mut p = Problem::new(n.span, format!("no device is called `{name}`"))
                .label("unknown device");
            if let Some(h) = did_you_mean(&name, self.devices.iter().map(|d| d.name.as_str())) {
                p = p.help(h);
            } else {
                p = p.help("declare it with [[device]]");
            }
            cx.err(p);
        }
        i
    }

    /// `buf`, `buf+0x1000`, `buf[page 3]`, `buf[page 3]+8`, or an absolute `0x4000_0000`
    /// (a string or an integer).
    fn addr(&self, cx: &mut Ctx, n: &Node) -> Option<Addr> {
        let text = match &n.kind {
            Kind::Int(i) if *i >= 0 => {
                return Some(Addr {
                    map: None,
                    offset: *i as u64,
                    text: format!("{i:#x}"),
                });
            }
            Kind::Str(s) => s.clone(),
            _ => {
                cx.err(
                    Problem::new(n.span, format!("an address must be a string like \"buf+0x10\", not {}", n.type_name()))
                        .label("expected an address")
                        .help("write a mapping name with an optional [page N] and +offset, or an absolute address"),
                );
                return None;
            }
        };
        match parse_addr(&text) {
            Ok((None, off)) => Some(Addr {
                map: None,
                offset: off,
                text,
            }),
            Ok((Some(name), off)) => {
                let i = self.maps.iter().position(|m| m.name == name);
                match i {
                    Some(i) => Some(Addr {
                        map: Some(i),
                        offset: off,
                        text,
                    }),
                    None => {
                        let mut p = Problem::new(n.span, format!("no mapping is called `{name}`"))
                            .label("unknown mapping");
                        if let Some(h) =
                            did_you_mean(&name, self.maps.iter().map(|m| m.name.as_str()))
                        {
                            p = p.help(h);
                        } else {
                            p = p.help(
                                "declare it with [[map]] or an mmap step before its first use",
                            );
                        }
                        cx.err(p);
                        None
                    }
                }
            }
            Err(why) => {
                cx.err(
                    Problem::new(n.span, format!("`{text}` is not an address: {why}"))
                        .label("bad address")
                        .help("forms: buf, buf+0x1000, buf[page 3], buf[page 3]+8, 0x40000000"),
                );
                None
            }
        }
    }
}

/// Splits an address expression into an optional mapping name and an offset.
pub(crate) fn parse_addr(s: &str) -> Result<(Option<String>, u64), String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if let Some(v) = parse_int(s) {
        return Ok((None, v));
    }
    let name_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let name = &s[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("it must start with a mapping name or be a number".into());
    }
    let mut rest = s[name_end..].trim_start();
    let mut off: u64 = 0;
    if let Some(r) = rest.strip_prefix('[') {
        let close = r.find(']').ok_or("`[` without `]`")?;
        let inner = r[..close].trim();
        let page = inner
            .strip_prefix("page")
            .ok_or("inside [...] write `page N`")?;
        let page = parse_int(page).ok_or("the page number is not a number")?;
        off = page
            .checked_mul(PAGE_SIZE)
            .ok_or("the page number is too large")?;
        rest = r[close + 1..].trim_start();
    }
    while !rest.is_empty() {
        let (plus, r) = if let Some(r) = rest.strip_prefix('+') {
            (true, r)
        } else if let Some(r) = rest.strip_prefix('-') {
            (false, r)
        } else {
            return Err(format!("unexpected `{rest}`"));
        };
        if r.trim().is_empty() {
            return Err("a number must follow `+` or `-`".into());
        }
        let end = r
            .char_indices()
            .skip(1)
            .find(|(_, c)| *c == '+' || *c == '-')
            .map_or(r.len(), |(i, _)| i);
        let v =
            parse_int(&r[..end]).ok_or_else(|| format!("`{}` is not a number", r[..end].trim()))?;
        off = if plus {
            off.checked_add(v).ok_or("the offset overflows")?
        } else {
            off.checked_sub(v)
                .ok_or("the offset goes below the mapping's start")?
        };
        rest = r[end..].trim_start();
    }
    Ok((Some(name.to_string()), off))
}

fn prot_of(cx: &mut Ctx, n: &Node) -> Option<Prot> {
    let s = cx.want_str(n, "prot")?;
    let mut p = Prot::empty();
    if s != "none" {
        for c in s.chars() {
            match c {
                'r' => p |= Prot::READ,
                'w' => p |= Prot::WRITE,
                'x' => p |= Prot::EXEC,
                _ => {
                    cx.err(
                        Problem::new(n.span, format!("`{s}` is not a protection"))
                            .label("bad protection")
                            .help("write `none` or letters from r, w, x (\"rw\", \"r\")"),
                    );
                    return None;
                }
            }
        }
    }
    Some(p)
}

const MREMAP_FLAGS: [(&str, svmkit::mm::MremapFlags); 3] = [
    ("maymove", svmkit::mm::MremapFlags::MAYMOVE),
    ("fixed", svmkit::mm::MremapFlags::FIXED),
    ("dontunmap", svmkit::mm::MremapFlags::DONTUNMAP),
];

/// `"maymove|fixed"`: flag names joined by `|` (`""` or `"none"` for no flags).
fn mremap_flags_of(cx: &mut Ctx, n: &Node) -> Option<svmkit::mm::MremapFlags> {
    let s = cx.want_str(n, "flags")?;
    let mut f = svmkit::mm::MremapFlags::empty();
    if s.trim().is_empty() || s.trim() == "none" {
        return Some(f);
    }
    for part in s.split('|').map(str::trim) {
        match MREMAP_FLAGS.iter().find(|(k, _)| *k == part) {
            Some((_, v)) => f |= *v,
            None => {
                let mut p = Problem::new(n.span, format!("unknown mremap flag `{part}`"))
                    .label("unknown flag");
                p = match did_you_mean(part, MREMAP_FLAGS.iter().map(|a| a.0)) {
                    Some(h) => p.help(h),
                    None => p.help("mremap flags: maymove, fixed, dontunmap, joined by `|`"),
                };
                cx.err(p);
                return None;
            }
        }
    }
    Some(f)
}

const ADVICE: [(&str, Advice); 12] = [
    ("willneed", Advice::WillNeed),
    ("dontneed", Advice::DontNeed),
    ("free", Advice::Free),
    ("cold", Advice::Cold),
    ("mergeable", Advice::Mergeable),
    ("unmergeable", Advice::Unmergeable),
    ("hugepage", Advice::HugePage),
    ("nohugepage", Advice::NoHugePage),
    ("pageout", Advice::PageOut),
    ("populate_read", Advice::PopulateRead),
    ("populate_write", Advice::PopulateWrite),
    ("collapse", Advice::Collapse),
];

fn advice_of(cx: &mut Ctx, n: &Node) -> Option<Advice> {
    let s = cx.want_str(n, "advice")?;
    let a = ADVICE.iter().find(|(k, _)| *k == s).map(|(_, a)| *a);
    if a.is_none() {
        let mut p = Problem::new(n.span, format!("unknown advice `{s}`")).label("unknown advice");
        p = match did_you_mean(&s, ADVICE.iter().map(|a| a.0)) {
            Some(h) => p.help(h),
            None => p.help(
                "advice: dontneed, hugepage, nohugepage, pageout, populate_read, populate_write, collapse",
            ),
        };
        cx.err(p);
    }
    a
}

fn errno_of(cx: &mut Ctx, n: &Node) -> Option<StepError> {
    let s = cx.want_str(n, "an errno")?;
    let all: Vec<StepError> = Errno::ALL
        .iter()
        .map(|e| StepError::Errno(*e))
        .chain([
            StepError::Sigsegv,
            StepError::Sigbus,
            StepError::NoProcess,
            StepError::BadStatus,
            StepError::Livelock,
        ])
        .collect();
    let e = all.iter().copied().find(|e| e.name() == s);
    if e.is_none() {
        let mut p = Problem::new(n.span, format!("unknown error `{s}`")).label("unknown error");
        p = match did_you_mean(&s, all.iter().map(|e| e.name())) {
            Some(h) => p.help(h),
            None => p.help(format!(
                "errors: {}",
                all.iter().map(|e| e.name()).collect::<Vec<_>>().join(", ")
            )),
        };
        cx.err(p);
    }
    e
}

const PTE_KINDS: [(&str, PteKind); 9] = [
    ("huge-pmd", PteKind::HugePmd),
    ("none", PteKind::None),
    ("present", PteKind::Present),
    ("present-rw", PteKind::PresentWritable),
    ("present-ro", PteKind::PresentReadOnly),
    ("device-exclusive", PteKind::DeviceExclusive),
    ("swap", PteKind::Swap),
    ("migration", PteKind::Migration),
    ("zero-page", PteKind::ZeroPage),
];

fn pte_kind_of(cx: &mut Ctx, n: &Node) -> Option<PteKind> {
    let s = cx.want_str(n, "expect_pte")?;
    let k = PTE_KINDS.iter().find(|(k, _)| *k == s).map(|(_, k)| *k);
    if k.is_none() {
        let mut p = Problem::new(n.span, format!("unknown PTE kind `{s}`")).label("unknown kind");
        p = match did_you_mean(&s, PTE_KINDS.iter().map(|k| k.0)) {
            Some(h) => p.help(h),
            None => p.help(format!(
                "kinds: {}",
                PTE_KINDS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
            )),
        };
        cx.err(p);
    }
    k
}

/// The profile: a preset name, or a table `{ preset = "...", <switch> = <bool> }`.
fn profile_of(cx: &mut Ctx, n: &Node) -> Option<Profile> {
    let names: Vec<&str> = Profile::PRESETS.iter().map(|p| p.name).collect();
    let by_name = |cx: &mut Ctx, n: &Node| -> Option<Profile> {
        let s = cx.want_str(n, "profile")?;
        let p = Profile::by_name(&s);
        if p.is_none() {
            let mut pr =
                Problem::new(n.span, format!("unknown profile `{s}`")).label("unknown profile");
            pr = match did_you_mean(&s, names.iter().copied()) {
                Some(h) => pr.help(h),
                None => pr.help(format!("profiles: {}", names.join(", "))),
            };
            cx.err(pr);
        }
        p
    };
    match &n.kind {
        Kind::Str(_) => by_name(cx, n),
        Kind::Table(_) => {
            let mut t = Tbl::new(cx, n, "profile")?;
            let mut p = t.require(cx, "preset").and_then(|v| by_name(cx, v))?;
            let switches = svmkit::profile::SWITCHES;
            let mut known: Vec<&str> = vec!["preset"];
            known.extend(switches.iter().map(|s| s.name));
            for s in switches {
                if let Some(v) = t.get(s.name)
                    && let Some(b) = cx.want_bool(v, s.name)
                {
                    (s.set)(&mut p, b);
                }
            }
            t.finish(cx, &known);
            Some(p)
        }
        _ => {
            cx.err(
                Problem::new(n.span, "profile must be a preset name or a table")
                    .label("bad profile")
                    .help(format!("profile = \"{}\" or profile = {{ preset = \"linux-5.14\", restore_takes_folio_ref = true }}", names[0])),
            );
            None
        }
    }
}

fn thp_of(cx: &mut Ctx, n: &Node) -> Option<ThpMode> {
    let s = cx.want_str(n, "thp")?;
    match s.as_str() {
        "always" => Some(ThpMode::Always),
        "madvise" => Some(ThpMode::Madvise),
        "never" => Some(ThpMode::Never),
        _ => {
            cx.err(
                Problem::new(n.span, format!("unknown THP policy `{s}`"))
                    .label("unknown policy")
                    .help("thp = \"always\", \"madvise\" or \"never\""),
            );
            None
        }
    }
}

const SCENARIO_KEYS: [&str; 5] = ["name", "profile", "frames", "swap", "thp"];
const TOP_KEYS: [&str; 9] = [
    "scenario", "process", "map", "device", "thread", "expect", "outcomes", "explore", "oracle",
];
const MAP_KEYS: [&str; 8] = [
    "name", "process", "at", "len", "prot", "shared", "hugetlb", "advice",
];
const DEVICE_KEYS: [&str; 6] = ["name", "driver", "process", "max_passes", "flaws", "batch"];
const THREAD_KEYS: [&str; 5] = ["name", "process", "device", "after", "steps"];
const EXPECT_KEYS: [&str; 4] = ["checker", "all_freed", "values", "rss"];

/// Every step name and the keys it takes (besides the common `op`, `id`, `expect`,
/// `expect_err`, `expect_pte`, `expect_device`, `expect_events`, `expect_refcount`,
/// `expect_mapcount`, `expect_faults`, `expect_cpages`, `note`).
pub const STEPS: &[(&str, &[&str])] = &[
    ("read", &["at"]),
    ("write", &["at", "value"]),
    ("fetch_add", &["at", "value"]),
    (
        "mmap",
        &["name", "at", "len", "prot", "shared", "hugetlb", "advice"],
    ),
    ("munmap", &["at", "len"]),
    ("mprotect", &["at", "len", "prot"]),
    ("mremap", &["at", "len", "new_len", "to", "flags"]),
    ("madvise", &["at", "len", "advice"]),
    ("mlock", &["at", "len", "onfault"]),
    ("munlock", &["at", "len"]),
    ("numa_scan", &["at", "len"]),
    ("nr_mlock", &[]),
    ("ksm_scan", &[]),
    ("fork", &["child"]),
    ("exit", &["process"]),
    ("clear_soft_dirty", &[]),
    ("khugepaged", &[]),
    ("uffd_wp", &["at", "len", "protect"]),
    ("make_exclusive", &["at", "hold"]),
    ("make_exclusive_range", &["at", "pages"]),
    ("kill", &["thread"]),
    ("release", &["guard"]),
    ("gup", &["at", "pages", "pin", "write", "hold"]),
    ("unpin", &["hold"]),
    ("atomic_add", &["at", "value"]),
    ("dmirror_read", &["at", "pages"]),
    ("dmirror_write", &["at", "pages", "value"]),
    ("dmirror_exclusive", &["at", "pages"]),
    ("dmirror_check_exclusive", &["at", "pages"]),
    ("reclaim", &["pages"]),
    ("reclaim_folio", &["at"]),
    ("migrate", &["at"]),
    ("fill", &["at", "pages", "value"]),
    ("touch", &["at", "pages", "value"]),
    ("compare", &["at", "pages", "value"]),
    ("repeat", &["times", "steps"]),
];
const COMMON_STEP_KEYS: [&str; 13] = [
    "op",
    "id",
    "expect",
    "expect_err",
    "expect_pte",
    "expect_device",
    "expect_events",
    "expect_refcount",
    "expect_mapcount",
    "expect_faults",
    "expect_cpages",
    "note",
    "source",
];

/// Parses and checks a scenario file. `file` is only used in messages.
pub fn parse(file: &str, source: &str) -> Result<Scenario, ParseError> {
    let fail = |problems: Vec<Problem>| ParseError {
        file: file.to_string(),
        source: source.to_string(),
        problems,
    };
    let root = match toml_span::parse(source) {
        Ok(v) => Node::from_toml(v),
        Err(e) => {
            let span = Span::of(e.span);
            return Err(fail(vec![
                Problem::new(span, format!("not valid TOML: {}", e.kind))
                    .label("here")
                    .help(
                        "see docs/SCENARIOS.md for the format; every example in examples/ parses",
                    ),
            ]));
        }
    };
    let mut cx = Ctx::default();
    let scenario = build(&mut cx, &root);
    match scenario {
        Some(mut s) if cx.problems.is_empty() => {
            s.lines = LineIndex::new(source);
            Ok(s)
        }
        _ => {
            if cx.problems.is_empty() {
                cx.problems
                    .push(Problem::new(root.span, "the scenario is incomplete"));
            }
            cx.problems.sort_by_key(|p| p.span.start);
            Err(fail(cx.problems))
        }
    }
}

fn array_of<'a>(cx: &mut Ctx, t: &mut Tbl<'a>, key: &str) -> Vec<&'a Node> {
    match t.get(key) {
        None => Vec::new(),
        Some(n) => match &n.kind {
            Kind::Array(a) => a.iter().collect(),
            _ => {
                cx.err(
                    Problem::new(
                        n.span,
                        format!("`{key}` must be an array of tables ([[{key}]])"),
                    )
                    .label("expected [[...]] entries"),
                );
                Vec::new()
            }
        },
    }
}

fn unique(cx: &mut Ctx, kind: &str, name: &str, span: Span, taken: &mut BTreeMap<String, Span>) {
    if taken.insert(name.to_string(), span).is_some() {
        cx.err(
            Problem::new(span, format!("two {kind}s are called `{name}`"))
                .label("second declaration")
                .help("names must be unique among processes, mappings, devices, threads and guards of one kind"),
        );
    }
}

fn build(cx: &mut Ctx, root: &Node) -> Option<Scenario> {
    let mut top = Tbl::new(cx, root, "the file")?;
    let mut names = Names::default();
    let mut name = String::from("unnamed");
    let mut profile = Profile::default();
    let mut frames = 4096;
    let mut swap = None;
    let mut thp = None;
    if let Some(sc) = top.get("scenario")
        && let Some(mut t) = Tbl::new(cx, sc, "[scenario]")
    {
        if let Some(n) = t.get("name").and_then(|n| cx.want_str(n, "name")) {
            name = n;
        }
        if let Some(p) = t.get("profile").and_then(|n| profile_of(cx, n)) {
            profile = p;
        }
        if let Some(n) = t.get("frames")
            && let Some(f) = cx.want_u64(n, "frames", MAX_FRAMES)
        {
            if f < 16 {
                cx.err(
                    Problem::new(n.span, "a machine needs at least 16 frames").label("too small"),
                );
            }
            frames = f;
        }
        if let Some(n) = t.get("swap") {
            swap = cx.want_u64(n, "swap slots", 1 << 20);
        }
        if let Some(n) = t.get("thp") {
            thp = thp_of(cx, n);
        }
        t.finish(cx, &SCENARIO_KEYS);
    }
    let mut seen = BTreeMap::new();
    for p in array_of(cx, &mut top, "process") {
        let Some(mut t) = Tbl::new(cx, p, "[[process]]") else {
            continue;
        };
        if let Some(n) = t
            .require(cx, "name")
            .and_then(|n| cx.want_str(n, "name").map(|s| (s, n.span)))
        {
            unique(cx, "process", &n.0, n.1, &mut seen);
            names.processes.push(Process {
                name: n.0,
                at_start: true,
                span: p.span,
            });
        }
        t.finish(cx, &["name"]);
    }
    // Fork children are processes too; collect them before the threads refer to them.
    let thread_nodes = array_of(cx, &mut top, "thread");
    for t in &thread_nodes {
        collect_fork_children(cx, t, &mut names, &mut seen);
    }
    let mut seen_maps = BTreeMap::new();
    for m in array_of(cx, &mut top, "map") {
        if let Some(map) = mapping(cx, &names, m, None) {
            unique(cx, "mapping", &map.name, map.span, &mut seen_maps);
            names.maps.push(map);
        }
    }
    // mmap steps declare mappings too (usable by later steps).
    for t in &thread_nodes {
        collect_mmap_steps(cx, t, &mut names, &mut seen_maps);
    }
    let mut seen_devs = BTreeMap::new();
    for d in array_of(cx, &mut top, "device") {
        if let Some(dev) = device(cx, &names, d) {
            unique(cx, "device", &dev.name, dev.span, &mut seen_devs);
            names.devices.push(dev);
        }
    }
    names.threads = thread_nodes
        .iter()
        .map(|t| match &t.kind {
            Kind::Table(e) => e
                .iter()
                .find(|e| e.0 == "name")
                .and_then(|e| match &e.2.kind {
                    Kind::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default(),
            _ => String::new(),
        })
        .collect();
    let mut threads = Vec::new();
    let mut seen_threads = BTreeMap::new();
    let mut kept_nodes = Vec::new();
    for t in &thread_nodes {
        if let Some(th) = thread(cx, &names, t) {
            unique(cx, "thread", &th.name, th.span, &mut seen_threads);
            threads.push(th);
            kept_nodes.push(*t);
        }
    }
    resolve_after(cx, &kept_nodes, &mut threads);
    let expect = match top.get("expect") {
        None => EndExpect {
            checker: true,
            all_freed: true,
            values: Vec::new(),
            rss: Vec::new(),
        },
        Some(e) => end_expect(cx, &names, e),
    };
    let mut outcomes = Vec::new();
    if let Some(o) = top.get("outcomes") {
        outcomes = outcomes_of(cx, o, false);
    }
    let explore = match top.get("explore") {
        None => ExploreSpec::default(),
        Some(e) => explore_spec(cx, e),
    };
    if outcomes.is_empty() {
        outcomes.push(EraOutcome {
            profile: profile.name.to_string(),
            outcome: crate::engine::RunOutcome::Pass,
            source: "the file's own expectations".into(),
            fails_at: None,
            finds: None,
            self_deadlock: false,
        });
    }
    let ids: Vec<&str> = threads
        .iter()
        .flat_map(|t| t.steps.iter())
        .filter_map(|s| s.id.as_deref())
        .collect();
    for o in &outcomes {
        if let Some(f) = &o.fails_at
            && f != "end"
            && !ids.contains(&f.as_str())
        {
            let span = top.get("outcomes").map_or(root.span, |n| n.span);
            let mut p = Problem::new(
                span,
                format!("no step has id `{f}` (fails_at of {})", o.profile),
            )
            .label("unknown step id");
            p = match did_you_mean(f, ids.iter().copied()) {
                Some(h) => p.help(h),
                None => p.help("give the step `id = \"...\"`, or use \"end\" for the end checks"),
            };
            cx.err(p);
        }
    }
    let oracle = top
        .get("oracle")
        .map_or_else(Vec::new, |o| oracle_spec(cx, o, &ids));
    top.finish(cx, &TOP_KEYS);
    if threads.is_empty() && cx.problems.is_empty() {
        cx.err(
            Problem::new(root.span, "the scenario has no [[thread]]")
                .label("nothing runs")
                .help("add [[thread]] with a name, a process or device, and steps"),
        );
    }
    Some(Scenario {
        name,
        profile,
        frames,
        swap,
        thp,
        processes: names.processes,
        maps: names.maps,
        devices: names.devices,
        threads,
        expect,
        outcomes,
        explore,
        oracle,
        lines: LineIndex::default(),
    })
}

/// The observables an oracle comparison looks at, as `[oracle] divergences` names them.
pub const ORACLE_FIELDS: [&str; 8] = [
    "result",
    "pte",
    "soft_dirty",
    "faults",
    "cpages",
    "devices",
    "value",
    "rss",
];

/// `[oracle]`: `divergences = [{ kernel = "6.12", step = "ID", field = "faults",
/// reason = "..." }]`, the observables where a real kernel's golden is known to differ
/// from the model.
fn oracle_spec(cx: &mut Ctx, n: &Node, ids: &[&str]) -> Vec<Divergence> {
    let mut out = Vec::new();
    let Some(mut t) = Tbl::new(cx, n, "[oracle]") else {
        return out;
    };
    let list: Vec<&Node> = match t.get("divergences").map(|d| &d.kind) {
        Some(Kind::Array(a)) => a.iter().collect(),
        Some(_) => {
            if let Some(d) = t.get("divergences") {
                cx.err(
                    Problem::new(d.span, "divergences must be a list of tables")
                        .label("expected a list")
                        .help("divergences = [{ kernel = \"6.12\", step = \"ID\", field = \"faults\", reason = \"...\" }]"),
                );
            }
            Vec::new()
        }
        None => Vec::new(),
    };
    for d in list {
        let Some(mut e) = Tbl::new(cx, d, "a divergence") else {
            continue;
        };
        let get = |cx: &mut Ctx, e: &mut Tbl<'_>, k: &str| {
            e.require(cx, k)
                .and_then(|v| cx.want_str(v, k).map(|s| (s, v.span)))
        };
        let kernel = get(cx, &mut e, "kernel");
        let step = get(cx, &mut e, "step");
        let field = get(cx, &mut e, "field");
        let reason = get(cx, &mut e, "reason");
        if let Some((k, span)) = &kernel
            && !["6.12", "6.1", "all"].contains(&k.as_str())
        {
            cx.err(
                Problem::new(*span, format!("no oracle kernel is called `{k}`"))
                    .label("unknown kernel")
                    .help("the oracle boots 6.12 and 6.1; `all` names both"),
            );
        }
        if let Some((st, span)) = &step
            && st != "end"
            && !ids.contains(&st.as_str())
        {
            let mut p =
                Problem::new(*span, format!("no step has id `{st}`")).label("unknown step id");
            p = match did_you_mean(st, ids.iter().copied()) {
                Some(h) => p.help(h),
                None => p.help("give the step `id = \"...\"`, or use \"end\" for the end values"),
            };
            cx.err(p);
        }
        if let Some((f, span)) = &field
            && !ORACLE_FIELDS.contains(&f.as_str())
        {
            cx.err(
                Problem::new(
                    *span,
                    format!("`{f}` is not an observable the oracle compares"),
                )
                .label("unknown field")
                .help(format!("one of: {}", ORACLE_FIELDS.join(", "))),
            );
        }
        e.finish(cx, &["kernel", "step", "field", "reason"]);
        if let (Some(kernel), Some(step), Some(field), Some(reason)) = (kernel, step, field, reason)
        {
            out.push(Divergence {
                kernel: kernel.0,
                step: step.0,
                field: field.0,
                reason: reason.0,
            });
        }
    }
    t.finish(cx, &["divergences"]);
    out
}

/// `[explore]`: `schedules` (the budget the outcomes are claimed for), `max_steps`
/// (the livelock bound), and
/// `[explore.outcomes]` (what `svmkit explore` finds under each era).
fn explore_spec(cx: &mut Ctx, n: &Node) -> ExploreSpec {
    let mut spec = ExploreSpec::default();
    let Some(mut t) = Tbl::new(cx, n, "[explore]") else {
        return spec;
    };
    if let Some(x) = t.get("schedules") {
        match &x.kind {
            Kind::Int(v) if (1..=100_000_000).contains(v) => spec.schedules = Some(*v as usize),
            _ => cx.err(
                Problem::new(
                    x.span,
                    "schedules must be a whole number from 1 to 100000000",
                )
                .label("bad budget"),
            ),
        }
    }
    if let Some(x) = t.get("max_steps") {
        match &x.kind {
            Kind::Int(v) if (100..=1_000_000_000).contains(v) => spec.max_steps = Some(*v as usize),
            _ => cx.err(
                Problem::new(
                    x.span,
                    "max_steps must be a whole number from 100 to 1000000000",
                )
                .label("bad bound"),
            ),
        }
    }
    if let Some(o) = t.get("outcomes") {
        spec.outcomes = outcomes_of(cx, o, true);
    }
    t.finish(cx, &["schedules", "max_steps", "outcomes"]);
    spec
}

/// `[outcomes]`: `"linux-5.14" = "deadlock"` or `"linux-5.14" = { outcome =
/// "deadlock", source = "spec 8 item 22" }`.
/// With `explore`, an outcome may say what the violation contains (`finds`) and may
/// not name a step (`fails_at`: a failing schedule stops at its first violation).
fn outcomes_of(cx: &mut Ctx, n: &Node, explore: bool) -> Vec<EraOutcome> {
    let mut out = Vec::new();
    let Kind::Table(entries) = &n.kind else {
        cx.err(
            Problem::new(n.span, "[outcomes] must be a table of era = outcome")
                .label("expected a table"),
        );
        return out;
    };
    let names: Vec<&str> = Profile::PRESETS.iter().map(|p| p.name).collect();
    for (era, span, v) in entries {
        if Profile::by_name(era).is_none() {
            let mut p = Problem::new(*span, format!("unknown era `{era}`")).label("unknown era");
            p = match did_you_mean(era, names.iter().copied()) {
                Some(h) => p.help(h),
                None => p.help(format!("eras: {}", names.join(", "))),
            };
            cx.err(p);
            continue;
        }
        let mut fails_at = None;
        let mut finds = None;
        let mut self_deadlock = false;
        let (word, source) = match &v.kind {
            Kind::Str(s) => (Some((s.clone(), v.span)), String::from("(no source given)")),
            Kind::Table(_) => {
                let Some(mut t) = Tbl::new(cx, v, "an outcome") else {
                    continue;
                };
                let w = t
                    .require(cx, "outcome")
                    .and_then(|x| cx.want_str(x, "outcome").map(|s| (s, x.span)));
                let src = t
                    .require(cx, "source")
                    .and_then(|x| cx.want_str(x, "source"))
                    .unwrap_or_default();
                if explore {
                    finds = t.get("finds").and_then(|x| cx.want_str(x, "finds"));
                    t.finish(cx, &["outcome", "source", "finds"]);
                } else {
                    fails_at = t.get("fails_at").and_then(|x| cx.want_str(x, "fails_at"));
                    if let Some(d) = t.get("diagnosis") {
                        match cx.want_str(d, "diagnosis").as_deref() {
                            Some("self-deadlock") => self_deadlock = true,
                            Some(other) => cx.err(
                                Problem::new(d.span, format!("unknown diagnosis `{other}`"))
                                    .label("unknown diagnosis")
                                    .help(
                                        "diagnosis = \"self-deadlock\": the hung-task report shows a task asleep on a folio lock it leaked itself",
                                    ),
                            ),
                            None => {}
                        }
                        if self_deadlock && w.as_ref().is_some_and(|(w, _)| w != "deadlock") {
                            cx.err(
                                Problem::new(d.span, "`diagnosis` goes with outcome \"deadlock\"")
                                    .label("not a deadlock")
                                    .help("write outcome = \"deadlock\", or drop the diagnosis"),
                            );
                        }
                    }
                    t.finish(cx, &["outcome", "source", "fails_at", "diagnosis"]);
                }
                (w, src)
            }
            _ => {
                cx.err(
                    Problem::new(v.span, "an outcome is \"pass\", \"fail\" or \"deadlock\"")
                        .label("bad outcome"),
                );
                continue;
            }
        };
        let Some((w, wspan)) = word else { continue };
        let outcome = match w.as_str() {
            "pass" => crate::engine::RunOutcome::Pass,
            "fail" => crate::engine::RunOutcome::Fail,
            "deadlock" => crate::engine::RunOutcome::Deadlock,
            _ => {
                cx.err(
                    Problem::new(wspan, format!("unknown outcome `{w}`"))
                        .label("unknown outcome")
                        .help("outcomes: pass, fail, deadlock"),
                );
                continue;
            }
        };
        if fails_at.is_some() && outcome != crate::engine::RunOutcome::Fail {
            cx.err(
                Problem::new(v.span, "`fails_at` goes with outcome \"fail\"")
                    .label("not a failing outcome"),
            );
        }
        out.push(EraOutcome {
            profile: era.clone(),
            outcome,
            source,
            fails_at,
            finds,
            self_deadlock,
        });
    }
    out
}

fn step_tables(n: &Node) -> Vec<&Node> {
    let mut out = Vec::new();
    if let Kind::Table(t) = &n.kind
        && let Some((_, _, steps)) = t.iter().find(|e| e.0 == "steps")
        && let Kind::Array(a) = &steps.kind
    {
        for s in a {
            out.push(s);
            // Nested repeat steps.
            out.extend(step_tables(s));
        }
    }
    out
}

fn op_name(n: &Node) -> Option<&str> {
    if let Kind::Table(t) = &n.kind
        && let Some((_, _, op)) = t.iter().find(|e| e.0 == "op")
        && let Kind::Str(s) = &op.kind
    {
        return Some(s);
    }
    None
}

fn collect_fork_children(
    cx: &mut Ctx,
    thread: &Node,
    names: &mut Names,
    seen: &mut BTreeMap<String, Span>,
) {
    for s in step_tables(thread) {
        if op_name(s) == Some("fork")
            && let Kind::Table(t) = &s.kind
            && let Some((_, _, c)) = t.iter().find(|e| e.0 == "child")
            && let Kind::Str(name) = &c.kind
        {
            unique(cx, "process", name, c.span, seen);
            names.processes.push(Process {
                name: name.clone(),
                at_start: false,
                span: c.span,
            });
        }
    }
}

fn collect_mmap_steps(
    cx: &mut Ctx,
    thread: &Node,
    names: &mut Names,
    seen: &mut BTreeMap<String, Span>,
) {
    // The process an mmap step maps into is its thread's.
    let process = match &thread.kind {
        Kind::Table(t) => t
            .iter()
            .find(|e| e.0 == "process")
            .and_then(|e| match &e.2.kind {
                Kind::Str(s) => names.processes.iter().position(|p| &p.name == s),
                _ => None,
            }),
        _ => None,
    };
    for s in step_tables(thread) {
        if op_name(s) == Some("mmap") {
            let Some(process) = process else {
                cx.err(
                    Problem::new(s.span, "an mmap step runs in a process thread")
                        .label("not in a process")
                        .help("put it in a [[thread]] with `process = \"...\"`"),
                );
                continue;
            };
            if let Some(m) = mapping(cx, names, s, Some(process)) {
                unique(cx, "mapping", &m.name, m.span, seen);
                names.maps.push(m);
            }
        }
    }
}

/// A `[[map]]` table, or an `mmap` step (`process` given: the thread's; its other keys
/// are the step's and not checked here).
fn mapping(cx: &mut Ctx, names: &Names, n: &Node, process: Option<usize>) -> Option<Mapping> {
    let mut t = Tbl::new(
        cx,
        n,
        if process.is_some() {
            "an mmap step"
        } else {
            "[[map]]"
        },
    )?;
    let name = t.require(cx, "name").and_then(|v| {
        let s = cx.want_str(v, "name")?;
        let ident = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident {
            cx.err(
                Problem::new(v.span, format!("`{s}` cannot name a mapping"))
                    .label("not an identifier")
                    .help("a mapping name is letters, digits and _, starting with a letter (it is used in address expressions like buf+0x10)"),
            );
            return None;
        }
        Some(s)
    });
    let process = match process {
        Some(p) => Some(p),
        None => t.require(cx, "process").and_then(|v| names.process(cx, v)),
    };
    let at = t.get("at").and_then(|v| match &v.kind {
        Kind::Str(s) => match parse_int(s) {
            Some(a) => Some(a),
            None => {
                cx.err(
                    Problem::new(v.span, format!("`{s}` is not an address"))
                        .label("expected a number"),
                );
                None
            }
        },
        _ => cx.want_u64(v, "at", u64::MAX >> 1),
    });
    let len = t.require(cx, "len").and_then(|v| cx.want_len(v, "len"));
    let prot = t
        .get("prot")
        .map_or(Some(Prot::READ | Prot::WRITE), |v| prot_of(cx, v));
    let shared = t
        .get("shared")
        .map_or(Some(false), |v| cx.want_bool(v, "shared"));
    let hugetlb = t
        .get("hugetlb")
        .map_or(Some(false), |v| cx.want_bool(v, "hugetlb"));
    let mut advice = Vec::new();
    if let Some(v) = t.get("advice") {
        match &v.kind {
            Kind::Array(a) => advice.extend(a.iter().filter_map(|x| advice_of(cx, x))),
            _ => advice.extend(advice_of(cx, v)),
        }
    }
    if process.is_none() || n.span == Span::default() {
        // fallthrough: reported above
    }
    if let Some(len) = len
        && len == 0
    {
        cx.err(Problem::new(n.span, "a mapping needs a non-zero length").label("empty mapping"));
    }
    if process.is_some_and(|p| names.processes.get(p).is_some_and(|p| !p.at_start))
        && !matches!(op_name(n), Some("mmap"))
    {
        cx.err(
            Problem::new(n.span, "a [[map]] is made at the start, before any fork")
                .label("forked process")
                .help(
                    "map in the parent before the fork, or use an mmap step in the child's thread",
                ),
        );
    }
    if op_name(n).is_none() {
        t.finish(cx, &MAP_KEYS);
    }
    Some(Mapping {
        name: name?,
        process: process?,
        at,
        len: len?,
        prot: prot?,
        shared: shared?,
        hugetlb: hugetlb?,
        advice,
        span: n.span,
    })
}

const FLAW_NAMES: [&str; 5] = [
    "filter_own_exclusive",
    "filter_ignores_owner",
    "skip_set_seq_on_unmap",
    "leak_folio_on_retry",
    "atomics_through_write_entry",
];

fn device(cx: &mut Ctx, names: &Names, n: &Node) -> Option<Device> {
    let mut t = Tbl::new(cx, n, "[[device]]")?;
    let name = t.require(cx, "name").and_then(|v| cx.want_str(v, "name"));
    let process = t.require(cx, "process").and_then(|v| names.process(cx, v));
    let driver_node = t.require(cx, "driver");
    let driver_name = driver_node.and_then(|v| cx.want_str(v, "driver"));
    let max_passes = t
        .get("max_passes")
        .map_or(Some(16), |v| cx.want_u64(v, "max_passes", 1_000_000));
    let mut flaws = SvmFlaws::default();
    if let Some(f) = t.get("flaws")
        && let Some(mut ft) = Tbl::new(cx, f, "flaws")
    {
        for k in FLAW_NAMES {
            if let Some(v) = ft.get(k)
                && let Some(b) = cx.want_bool(v, k)
            {
                match k {
                    "filter_own_exclusive" => flaws.filter_own_exclusive = b,
                    "filter_ignores_owner" => flaws.filter_ignores_owner = b,
                    "skip_set_seq_on_unmap" => flaws.skip_set_seq_on_unmap = b,
                    "leak_folio_on_retry" => flaws.leak_folio_on_retry = b,
                    _ => flaws.atomics_through_write_entry = b,
                }
            }
        }
        ft.finish(cx, &FLAW_NAMES);
    }
    let driver = match driver_name.as_deref() {
        Some("dmirror") => {
            if let Some(f) = t.get("flaws") {
                cx.err(
                    Problem::new(f.span, "dmirror has no flaw switches").label("svm_atomic only"),
                );
            }
            Some(Driver::Dmirror)
        }
        Some("svm_atomic") => Some(Driver::SvmAtomic {
            flaws,
            max_passes: max_passes.unwrap_or(16),
        }),
        Some("uvm") => {
            if let Some(f) = t.get("flaws") {
                cx.err(
                    Problem::new(f.span, "uvm has no flaw switches")
                        .label("svm_atomic only")
                        .help("uvm's consequences come from the kernel's API, i.e. the profile"),
                );
            }
            let batch = t.get("batch").map_or(Some(1), |v| {
                let b = cx.want_u64(v, "batch", 512)?;
                if b == 0 || !b.is_power_of_two() {
                    cx.err(
                        Problem::new(
                            v.span,
                            format!("batch {b} is not a power of two in 1 ..= 512"),
                        )
                        .label("pages per atomic fault")
                        .help("a uvm fault services an aligned region: batch = 1, 2, 4, ... 512"),
                    );
                    return None;
                }
                Some(b)
            });
            batch.map(|batch| Driver::Uvm {
                batch,
                max_passes: max_passes.unwrap_or(16),
            })
        }
        Some(other) => {
            let mut p = Problem::new(
                driver_node.map_or(n.span, |d| d.span),
                format!("unknown driver `{other}`"),
            )
            .label("unknown driver");
            p = match did_you_mean(other, ["dmirror", "svm_atomic", "uvm"]) {
                Some(h) => p.help(h),
                None => p.help("drivers: dmirror, svm_atomic, uvm"),
            };
            cx.err(p);
            None
        }
        None => None,
    };
    if let Some(b) = t.get("batch")
        && let Some(d) = &driver
        && !matches!(d, Driver::Uvm { .. })
    {
        cx.err(
            Problem::new(b.span, format!("{} has no batch", d.name()))
                .label("uvm only")
                .help("batch is the region a uvm atomic fault services"),
        );
    }
    if let Some(p) = process
        && !names.processes[p].at_start
    {
        cx.err(
            Problem::new(
                n.span,
                format!(
                    "devices are opened at the start, before `{}` is forked",
                    names.processes[p].name
                ),
            )
            .label("forked process")
            .help("bind the device to a process declared with [[process]]"),
        );
    }
    t.finish(cx, &DEVICE_KEYS);
    Some(Device {
        name: name?,
        driver: driver?,
        process: process?,
        span: n.span,
    })
}

fn thread(cx: &mut Ctx, names: &Names, n: &Node) -> Option<Thread> {
    let mut t = Tbl::new(cx, n, "[[thread]]")?;
    let name = t.require(cx, "name").and_then(|v| cx.want_str(v, "name"));
    let actor = match (t.get("process"), t.get("device")) {
        (Some(p), None) => names.process(cx, p).map(Actor::Process),
        (None, Some(d)) => names.device(cx, d).map(Actor::Device),
        (Some(_), Some(d)) => {
            cx.err(
                Problem::new(
                    d.span,
                    "a thread runs in a process or on a device, not both",
                )
                .label("second actor")
                .help("drop `process` or `device`"),
            );
            None
        }
        (None, None) => {
            cx.err(
                Problem::new(n.span, "a [[thread]] needs `process` or `device`")
                    .label("no actor")
                    .help(
                        "process = \"app\" for a CPU thread, device = \"gpu\" for a driver context",
                    ),
            );
            None
        }
    };
    let mut steps = Vec::new();
    let mut guards = BTreeMap::new();
    if let Some(s) = t.require(cx, "steps") {
        match &s.kind {
            Kind::Array(a) => {
                for st in a {
                    step(cx, names, actor, st, &mut steps, &mut guards, 0);
                }
            }
            _ => cx.err(
                Problem::new(s.span, "`steps` must be an array of step tables")
                    .label("expected [ {...}, ... ]")
                    .help("steps = [ { op = \"write\", at = \"buf\", value = 1 } ]"),
            ),
        }
    }
    let _ = t.get("after"); // resolved once every thread is known
    t.finish(cx, &THREAD_KEYS);
    if steps.len() > MAX_EXPANDED_STEPS {
        cx.err(
            Problem::new(
                n.span,
                format!("this thread expands to {} steps", steps.len()),
            )
            .label("too many steps")
            .help(format!("at most {MAX_EXPANDED_STEPS} after repeat")),
        );
        steps.truncate(MAX_EXPANDED_STEPS);
    }
    Some(Thread {
        name: name?,
        actor: actor?,
        steps,
        after: Vec::new(),
        span: n.span,
    })
}

/// Resolves each thread's `after` list (names of threads that must finish first).
fn resolve_after(cx: &mut Ctx, nodes: &[&Node], threads: &mut [Thread]) {
    let names: Vec<String> = threads.iter().map(|t| t.name.clone()).collect();
    for (i, n) in nodes.iter().enumerate() {
        let Kind::Table(t) = &n.kind else { continue };
        let Some((_, _, after)) = t.iter().find(|e| e.0 == "after") else {
            continue;
        };
        let list: Vec<&Node> = match &after.kind {
            Kind::Array(a) => a.iter().collect(),
            _ => vec![after],
        };
        let mut deps = Vec::new();
        for a in list {
            let Some(name) = cx.want_str(a, "after") else {
                continue;
            };
            match names.iter().position(|x| *x == name) {
                Some(j) if j == i => cx.err(
                    Problem::new(a.span, "a thread cannot wait for itself to finish")
                        .label("itself"),
                ),
                Some(j) => deps.push(j),
                None => {
                    let mut p = Problem::new(a.span, format!("no thread is called `{name}`"))
                        .label("unknown thread");
                    if let Some(h) = did_you_mean(&name, names.iter().map(String::as_str)) {
                        p = p.help(h);
                    }
                    cx.err(p);
                }
            }
        }
        if let Some(th) = threads.get_mut(i) {
            th.after = deps;
        }
    }
    // A cycle would never start: report it.
    for start in 0..threads.len() {
        let mut seen = vec![false; threads.len()];
        let mut stack = threads[start].after.clone();
        while let Some(j) = stack.pop() {
            if j == start {
                cx.err(
                    Problem::new(
                        threads[start].span,
                        format!(
                            "thread `{}` waits for itself through `after`",
                            threads[start].name
                        ),
                    )
                    .label("a cycle of after")
                    .help("remove one `after` of the cycle"),
                );
                break;
            }
            if !std::mem::replace(&mut seen[j], true) {
                stack.extend(threads[j].after.iter().copied());
            }
        }
    }
}

/// A value that may differ by era: what `inner` reads from the node, or a table
/// `{ "linux-5.14" = ..., "linux-6.15" = ... }` of such values keyed by profile name.
fn per_era<T>(
    cx: &mut Ctx,
    n: &Node,
    what: &str,
    mut inner: impl FnMut(&mut Ctx, &Node) -> Option<T>,
) -> Option<PerEra<T>> {
    let Kind::Table(entries) = &n.kind else {
        return inner(cx, n).map(PerEra::All);
    };
    let names: Vec<&str> = Profile::PRESETS.iter().map(|p| p.name).collect();
    if entries.is_empty() {
        cx.err(
            Problem::new(n.span, format!("{what} names no era"))
                .label("empty table")
                .help(format!(
                    "write one value, or one per era: {what} = {{ \"{}\" = ... }}",
                    names[0]
                )),
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (era, span, v) in entries {
        if Profile::by_name(era).is_none() {
            let mut p =
                Problem::new(*span, format!("unknown era `{era}` in {what}")).label("unknown era");
            p = match did_you_mean(era, names.iter().copied()) {
                Some(h) => p.help(h),
                None => p.help(format!(
                    "a per-era value is a table of era = value; eras: {}",
                    names.join(", ")
                )),
            };
            cx.err(p);
            ok = false;
            continue;
        }
        match inner(cx, v) {
            Some(x) => out.push((era.clone(), x)),
            None => ok = false,
        }
    }
    ok.then_some(PerEra::Eras(out))
}

/// `expect` (N, `"ok"`, `"any"`) and `expect_err` (an error or a list), each one value
/// or one per era; both may be given per era for different eras. An era neither
/// names expects success (no value check).
fn outcome(cx: &mut Ctx, t: &mut Tbl<'_>) -> PerEra<Outcome> {
    let value = t.get("expect").and_then(|v| {
        per_era(cx, v, "expect", |cx, v| match &v.kind {
            Kind::Str(s) if s == "any" => Some(Outcome::Any),
            Kind::Str(s) if s == "ok" => Some(Outcome::Ok(None)),
            Kind::Str(s) => {
                cx.err(
                    Problem::new(v.span, format!("`{s}` is not an expected result"))
                        .label("bad expect")
                        .help("expect = N, \"ok\" or \"any\"; an error is expect_err = \"EBUSY\""),
                );
                None
            }
            _ => cx
                .want_u64(v, "expect", u64::MAX >> 1)
                .map(|x| Outcome::Ok(Some(x))),
        })
        .map(|p| (p, v.span))
    });
    let err = t.get("expect_err").and_then(|e| {
        per_era(cx, e, "expect_err", |cx, e| {
            let list: Vec<StepError> = match &e.kind {
                Kind::Array(a) => a.iter().filter_map(|x| errno_of(cx, x)).collect(),
                _ => errno_of(cx, e).into_iter().collect(),
            };
            Some(Outcome::Err(list))
        })
        .map(|p| (p, e.span))
    });
    match (value, err) {
        (Some((PerEra::Eras(mut a), _)), Some((PerEra::Eras(b), espan))) => {
            for (era, o) in b {
                if a.iter().any(|(e, _)| *e == era) {
                    cx.err(
                        Problem::new(espan, format!("era `{era}` expects a value and an error"))
                            .label("second expectation")
                            .help("name each era in `expect` or in `expect_err`, not both"),
                    );
                } else {
                    a.push((era, o));
                }
            }
            PerEra::Eras(a)
        }
        (Some(_), Some((_, espan))) => {
            cx.err(
                Problem::new(espan, "a step expects a value or an error, not both")
                    .label("second expectation")
                    .help("per era, both may be tables naming different eras"),
            );
            PerEra::All(Outcome::Any)
        }
        (Some((v, _)), None) | (None, Some((v, _))) => v,
        (None, None) => PerEra::All(Outcome::Ok(None)),
    }
}

/// Steps with an address of their own (what `expect_pte`, `expect_refcount` and
/// `expect_mapcount` look at when they give no `at`).
const ADDRESSED_STEPS: [&str; 25] = [
    "mremap",
    "read",
    "write",
    "fetch_add",
    "touch",
    "mmap",
    "munmap",
    "mprotect",
    "madvise",
    "mlock",
    "munlock",
    "numa_scan",
    "uffd_wp",
    "make_exclusive",
    "make_exclusive_range",
    "gup",
    "atomic_add",
    "dmirror_read",
    "dmirror_write",
    "dmirror_exclusive",
    "dmirror_check_exclusive",
    "reclaim_folio",
    "migrate",
    "fill",
    "compare",
];

/// Steps whose faults `expect_faults` counts.
const FAULTING_STEPS: [&str; 5] = ["read", "write", "fetch_add", "touch", "atomic_add"];

/// Reports an expectation about "the step's address" on a step without one.
fn needs_addr(cx: &mut Ctx, op: &str, key: &str, span: Span) {
    if !ADDRESSED_STEPS.contains(&op) {
        cx.err(
            Problem::new(span, format!("`{op}` has no address for {key} to look at"))
                .label("whose entry?")
                .help(format!("name one: {key} = {{ at = \"buf\", ... }}")),
        );
    }
}

/// `expect_pte = "present"` or `{ kind = "present", write = true, dirty = true,
/// soft_dirty = false, uffd_wp = false, young = true, at = "buf+0x1000" }` (each
/// value may be per era).
fn pte_expect_of(cx: &mut Ctx, names: &Names, op: &str, n: &Node) -> Option<PteExpect> {
    if let Kind::Str(_) = n.kind {
        needs_addr(cx, op, "expect_pte", n.span);
        return pte_kind_of(cx, n).map(|k| PteExpect {
            kind: PerEra::All(k),
            flags: Vec::new(),
            at: None,
        });
    }
    let mut t = Tbl::new(cx, n, "expect_pte")?;
    let kind = t
        .require(cx, "kind")
        .and_then(|v| per_era(cx, v, "kind", pte_kind_of));
    let mut flags = Vec::new();
    let mut ok = true;
    for (key, f) in PteFlag::ALL {
        if let Some(v) = t.get(key) {
            match per_era(cx, v, key, |cx, v| cx.want_bool(v, key)) {
                Some(b) => {
                    if let Some(PerEra::All(k)) = &kind
                        && let Some(why) = flag_impossible(*k, f)
                    {
                        cx.err(
                            Problem::new(v.span, format!("{why}: `{key}` cannot be checked"))
                                .label("no such bit")
                                .help(
                                    "a present PTE has write, dirty, young, soft_dirty, uffd_wp; \
                                     device-exclusive and migration entries write, soft_dirty, \
                                     uffd_wp; swap entries soft_dirty, uffd_wp (spec 1.1)",
                                ),
                        );
                        ok = false;
                    }
                    flags.push((f, b));
                }
                None => ok = false,
            }
        }
    }
    let at = t.get("at");
    let at_addr = at.and_then(|v| names.addr(cx, v));
    if at.is_none() {
        needs_addr(cx, op, "expect_pte", n.span);
    }
    let mut known = vec!["kind", "at"];
    known.extend(PteFlag::ALL.iter().map(|f| f.0));
    t.finish(cx, &known);
    if at.is_some() && at_addr.is_none() {
        return None;
    }
    let kind = kind?;
    ok.then_some(PteExpect {
        kind,
        flags,
        at: at_addr,
    })
}

/// Why an entry of kind `k` has no bit `f` (Linux's encodings, spec 1.1), if it has
/// none.
fn flag_impossible(k: PteKind, f: PteFlag) -> Option<&'static str> {
    match (k, f) {
        (PteKind::None, _) => Some("a none PTE has no bits"),
        (PteKind::DeviceExclusive, PteFlag::Dirty | PteFlag::Young) => {
            Some("a device-exclusive entry has no dirty or young bit")
        }
        (PteKind::Migration, PteFlag::Dirty | PteFlag::Young) => {
            Some("the model's migration entries carry no dirty or young bit")
        }
        (PteKind::Swap, PteFlag::Write | PteFlag::Dirty | PteFlag::Young) => {
            Some("a swap entry has no write, dirty or young bit")
        }
        _ => None,
    }
}

/// `expect_refcount = N`, per era, or `{ at = "buf+0x1000", value = N }`.
fn count_expect_of(
    cx: &mut Ctx,
    names: &Names,
    op: &str,
    key: &str,
    n: &Node,
) -> Option<CountExpect> {
    let value =
        |cx: &mut Ctx, v: &Node| per_era(cx, v, key, |cx, v| cx.want_u64(v, key, i32::MAX as u64));
    let addressed =
        matches!(&n.kind, Kind::Table(e) if e.iter().any(|(k, _, _)| k == "at" || k == "value"));
    if !addressed {
        needs_addr(cx, op, key, n.span);
        return value(cx, n).map(|value| CountExpect { value, at: None });
    }
    let mut t = Tbl::new(cx, n, key)?;
    let v = t.require(cx, "value").and_then(|v| value(cx, v));
    let at = t.get("at");
    let at_addr = at.and_then(|v| names.addr(cx, v));
    if at.is_none() {
        needs_addr(cx, op, key, n.span);
    }
    t.finish(cx, &["at", "value"]);
    if at.is_some() && at_addr.is_none() {
        return None;
    }
    v.map(|value| CountExpect { value, at: at_addr })
}

fn step(
    cx: &mut Ctx,
    names: &Names,
    actor: Option<Actor>,
    n: &Node,
    out: &mut Vec<Step>,
    guards: &mut BTreeMap<String, Span>,
    depth: usize,
) {
    let Some(mut t) = Tbl::new(cx, n, "a step") else {
        return;
    };
    let Some(opn) = t.require(cx, "op") else {
        return;
    };
    let Some(op) = cx.want_str(opn, "op") else {
        return;
    };
    let Some((_, keys)) = STEPS.iter().find(|(k, _)| *k == op) else {
        let mut p = Problem::new(opn.span, format!("unknown step `{op}`")).label("unknown step");
        p = match did_you_mean(&op, STEPS.iter().map(|s| s.0)) {
            Some(h) => p.help(h),
            None => p.help("see docs/SCENARIOS.md for the steps"),
        };
        cx.err(p);
        return;
    };
    let mut known: Vec<&str> = COMMON_STEP_KEYS.to_vec();
    known.extend(keys.iter().copied());
    if op == "repeat" {
        let times = t
            .require(cx, "times")
            .and_then(|v| cx.want_u64(v, "times", MAX_EXPANDED_STEPS as u64));
        let mut body = Vec::new();
        if let Some(s) = t.require(cx, "steps") {
            if depth > 8 {
                cx.err(Problem::new(s.span, "repeat nests too deeply").label("depth > 8"));
            } else if let Kind::Array(a) = &s.kind {
                for st in a {
                    step(cx, names, actor, st, &mut body, guards, depth + 1);
                }
            } else {
                cx.err(Problem::new(s.span, "`steps` must be an array").label("expected an array"));
            }
        }
        t.finish(cx, &["op", "times", "steps", "note"]);
        if let Some(times) = times {
            for _ in 0..times {
                if out.len() + body.len() > MAX_EXPANDED_STEPS + 1 {
                    out.push(body[0].clone());
                    break;
                }
                out.extend(body.iter().cloned());
            }
        }
        return;
    }
    let expect = outcome(cx, &mut t);
    let expect_pte = t
        .get("expect_pte")
        .and_then(|v| pte_expect_of(cx, names, &op, v));
    let expect_refcount = t
        .get("expect_refcount")
        .and_then(|v| count_expect_of(cx, names, &op, "expect_refcount", v));
    let expect_mapcount = t
        .get("expect_mapcount")
        .and_then(|v| count_expect_of(cx, names, &op, "expect_mapcount", v));
    let expect_faults = t.get("expect_faults").and_then(|v| {
        if !FAULTING_STEPS.contains(&op.as_str()) {
            cx.err(
                Problem::new(v.span, format!("`{op}` counts no faults"))
                    .label("nothing to count")
                    .help("expect_faults goes with read, write, fetch_add, touch (CPU page faults) and atomic_add (svm_atomic fault-loop passes)"),
            );
        }
        per_era(cx, v, "expect_faults", |cx, v| {
            cx.want_u64(v, "expect_faults", 1 << 20)
        })
    });
    let expect_cpages = t.get("expect_cpages").and_then(|v| {
        if !op.starts_with("dmirror_") {
            cx.err(
                Problem::new(v.span, format!("`{op}` is no dmirror ioctl: it has no cpages"))
                    .label("no cpages here")
                    .help("expect_cpages goes with dmirror_read, dmirror_write, dmirror_exclusive and dmirror_check_exclusive"),
            );
        }
        per_era(cx, v, "expect_cpages", |cx, v| {
            cx.want_u64(v, "expect_cpages", 1 << 24)
        })
    });
    let expect_device = t
        .get("expect_device")
        .map_or_else(Vec::new, |v| device_expect_of(cx, names, actor, v));
    let expect_events = t.get("expect_events").and_then(|v| {
        per_era(cx, v, "expect_events", |cx, v| match &v.kind {
            Kind::Array(a) => Some(
                a.iter()
                    .filter_map(|x| cx.want_str(x, "an event"))
                    .collect(),
            ),
            _ => {
                cx.err(
                    Problem::new(v.span, "expect_events is a list of events")
                        .label("expected a list")
                        .help(
                            "expect_events = [\"EXCLUSIVE owner gpu\", \"CLEAR\"], [] for none, \
                             or one list per era: { \"linux-6.15\" = [\"CLEAR\"] }",
                        ),
                );
                None
            }
        })
    });
    let note = t.get("note").and_then(|v| cx.want_str(v, "note"));
    let source = t
        .get("source")
        .and_then(|v| per_era(cx, v, "source", |cx, v| cx.want_str(v, "source")));
    let id = t.get("id").and_then(|v| cx.want_str(v, "id"));
    let process_only = |cx: &mut Ctx| {
        if let Some(Actor::Device(_)) = actor {
            cx.err(
                Problem::new(
                    opn.span,
                    format!("`{op}` is a CPU or system-call step: it runs in a process thread"),
                )
                .label("in a device thread")
                .help("move it to a [[thread]] with `process = \"...\"`"),
            );
        }
    };
    let device_only = |cx: &mut Ctx, drivers: &[&str]| {
        let ok = match actor {
            Some(Actor::Device(d)) => names
                .devices
                .get(d)
                .is_some_and(|d| drivers.contains(&d.driver.name())),
            _ => false,
        };
        if !ok && actor.is_some() {
            let driver = drivers.join(" or ");
            cx.err(
                Problem::new(opn.span, format!("`{op}` runs on a {driver} device"))
                    .label("wrong thread")
                    .help(format!(
                        "put it in a [[thread]] with `device = \"...\"` naming a {driver} device"
                    )),
            );
        }
    };
    let at = |cx: &mut Ctx, t: &mut Tbl<'_>| t.require(cx, "at").and_then(|v| names.addr(cx, v));
    let value = |cx: &mut Ctx, t: &mut Tbl<'_>| {
        t.get("value")
            .map_or(Some(1), |v| cx.want_u64(v, "value", u64::MAX >> 1))
    };
    let pages = |cx: &mut Ctx, t: &mut Tbl<'_>| {
        t.get("pages")
            .map_or(Some(1), |v| cx.want_u64(v, "pages", 1 << 28))
    };
    let len =
        |cx: &mut Ctx, t: &mut Tbl<'_>| t.require(cx, "len").and_then(|v| cx.want_len(v, "len"));
    let op_v: Option<Op> = match op.as_str() {
        "read" => {
            process_only(cx);
            at(cx, &mut t).map(|at| Op::Read { at })
        }
        "write" | "fetch_add" => {
            process_only(cx);
            let a = at(cx, &mut t);
            let v = t
                .require(cx, "value")
                .and_then(|v| cx.want_u64(v, "value", u64::MAX >> 1));
            match (a, v) {
                (Some(at), Some(value)) if op == "write" => Some(Op::Write { at, value }),
                (Some(at), Some(value)) => Some(Op::FetchAdd { at, value }),
                _ => None,
            }
        }
        "mmap" => {
            process_only(cx);
            // Declared in the first pass; find it by name.
            let name = t.get("name").and_then(|v| cx.want_str(v, "name"));
            for k in ["at", "len", "prot", "shared", "hugetlb", "advice"] {
                let _ = t.get(k);
            }
            name.and_then(|nm| names.maps.iter().position(|m| m.name == nm))
                .map(|map| Op::Mmap { map })
        }
        "munmap" => {
            process_only(cx);
            let a = at(cx, &mut t);
            let l = len(cx, &mut t);
            a.zip(l).map(|(at, len)| Op::Munmap { at, len })
        }
        "mremap" => {
            process_only(cx);
            let a = at(cx, &mut t);
            let l = len(cx, &mut t);
            let nl = t
                .require(cx, "new_len")
                .and_then(|v| cx.want_len(v, "new_len"));
            let to = match t.get("to") {
                Some(v) => names.addr(cx, v).map(Some),
                None => Some(None),
            };
            let f = t
                .get("flags")
                .map_or(Some(svmkit::mm::MremapFlags::empty()), |v| {
                    mremap_flags_of(cx, v)
                });
            match (a, l, nl, to, f) {
                (Some(at), Some(len), Some(new_len), Some(to), Some(flags)) => Some(Op::Mremap {
                    at,
                    len,
                    new_len,
                    to,
                    flags,
                }),
                _ => None,
            }
        }
        "mprotect" => {
            process_only(cx);
            let a = at(cx, &mut t);
            let l = len(cx, &mut t);
            let p = t.require(cx, "prot").and_then(|v| prot_of(cx, v));
            match (a, l, p) {
                (Some(at), Some(len), Some(prot)) => Some(Op::Mprotect { at, len, prot }),
                _ => None,
            }
        }
        "madvise" => {
            process_only(cx);
            let a = at(cx, &mut t);
            let l = len(cx, &mut t);
            let adv = t.require(cx, "advice").and_then(|v| advice_of(cx, v));
            match (a, l, adv) {
                (Some(at), Some(len), Some(advice)) => Some(Op::Madvise { at, len, advice }),
                _ => None,
            }
        }
        "mlock" => {
            process_only(cx);
            let a = at(cx, &mut t);
            let l = len(cx, &mut t);
            let onfault = t
                .get("onfault")
                .map_or(Some(false), |v| cx.want_bool(v, "onfault"));
            match (a, l, onfault) {
                (Some(at), Some(len), Some(onfault)) => Some(Op::Mlock { at, len, onfault }),
                _ => None,
            }
        }
        "munlock" | "numa_scan" => {
            process_only(cx);
            let a = at(cx, &mut t);
            let l = len(cx, &mut t);
            match (a, l) {
                (Some(at), Some(len)) if op == "munlock" => Some(Op::Munlock { at, len }),
                (Some(at), Some(len)) => Some(Op::NumaScan { at, len }),
                _ => None,
            }
        }
        "nr_mlock" => Some(Op::NrMlock),
        "ksm_scan" => {
            process_only(cx);
            Some(Op::KsmScan)
        }
        "fork" => {
            process_only(cx);
            t.require(cx, "child")
                .and_then(|v| names.process(cx, v))
                .map(|child| Op::Fork { child })
        }
        "exit" => {
            let p = match t.get("process") {
                Some(v) => names.process(cx, v),
                None => match actor {
                    Some(Actor::Process(p)) => Some(p),
                    Some(Actor::Device(d)) => names.devices.get(d).map(|d| d.process),
                    None => None,
                },
            };
            p.map(|process| Op::Exit { process })
        }
        "clear_soft_dirty" => {
            process_only(cx);
            Some(Op::ClearSoftDirty)
        }
        "khugepaged" => {
            process_only(cx);
            Some(Op::Khugepaged)
        }
        "uffd_wp" => {
            process_only(cx);
            let a = at(cx, &mut t);
            let l = len(cx, &mut t);
            let p = t
                .get("protect")
                .map_or(Some(true), |v| cx.want_bool(v, "protect"));
            match (a, l, p) {
                (Some(at), Some(len), Some(protect)) => Some(Op::UffdWp { at, len, protect }),
                _ => None,
            }
        }
        "make_exclusive" => {
            let a = at(cx, &mut t);
            let hold = t
                .get("hold")
                .and_then(|v| cx.want_str(v, "hold").map(|s| (s, v.span)));
            if let Some((h, s)) = &hold {
                unique(cx, "guard", h, *s, guards);
            }
            a.map(|at| Op::MakeExclusive {
                at,
                hold: hold.map(|h| h.0),
            })
        }
        "make_exclusive_range" => {
            let a = at(cx, &mut t);
            let p = pages(cx, &mut t);
            a.zip(p)
                .map(|(at, pages)| Op::MakeExclusiveRange { at, pages })
        }
        "kill" => {
            let v = t.require(cx, "thread");
            v.and_then(|v| {
                let name = cx.want_str(v, "thread")?;
                match names.threads.iter().position(|x| *x == name) {
                    Some(thread) => Some(Op::Kill { thread }),
                    None => {
                        let mut p = Problem::new(v.span, format!("no thread is called `{name}`"))
                            .label("unknown thread");
                        if let Some(h) =
                            did_you_mean(&name, names.threads.iter().map(String::as_str))
                        {
                            p = p.help(h);
                        }
                        cx.err(p);
                        None
                    }
                }
            })
        }
        "release" => {
            let g = t
                .require(cx, "guard")
                .and_then(|v| cx.want_str(v, "guard").map(|s| (s, v.span)));
            if let Some((g, s)) = &g
                && !guards.contains_key(g)
            {
                cx.err(
                    Problem::new(*s, format!("no earlier step of this thread holds `{g}`"))
                        .label("unknown guard")
                        .help("a make_exclusive or gup step with `hold = \"...\"` names a guard"),
                );
            }
            g.map(|g| Op::Release { guard: g.0 })
        }
        "gup" => {
            let a = at(cx, &mut t);
            let p = pages(cx, &mut t);
            let pin = t.get("pin").map_or(Some(false), |v| cx.want_bool(v, "pin"));
            let write = t
                .get("write")
                .map_or(Some(false), |v| cx.want_bool(v, "write"));
            let hold = t
                .require(cx, "hold")
                .and_then(|v| cx.want_str(v, "hold").map(|s| (s, v.span)));
            if let Some((h, s)) = &hold {
                unique(cx, "guard", h, *s, guards);
            }
            match (a, p, pin, write, hold) {
                (Some(at), Some(pages), Some(pin), Some(write), Some((hold, _))) => Some(Op::Gup {
                    at,
                    pages,
                    pin,
                    write,
                    hold,
                }),
                _ => None,
            }
        }
        "unpin" => {
            let g = t
                .require(cx, "hold")
                .and_then(|v| cx.want_str(v, "hold").map(|s| (s, v.span)));
            if let Some((g, s)) = &g
                && !guards.contains_key(g)
            {
                cx.err(
                    Problem::new(
                        *s,
                        format!("no earlier gup step of this thread holds `{g}`"),
                    )
                    .label("unknown references"),
                );
            }
            g.map(|g| Op::Unpin { hold: g.0 })
        }
        "atomic_add" => {
            device_only(cx, &["svm_atomic", "uvm"]);
            let a = at(cx, &mut t);
            let v = value(cx, &mut t);
            a.zip(v).map(|(at, value)| Op::AtomicAdd { at, value })
        }
        "dmirror_read" | "dmirror_write" | "dmirror_exclusive" | "dmirror_check_exclusive" => {
            device_only(cx, &["dmirror"]);
            let a = at(cx, &mut t);
            let p = pages(cx, &mut t);
            let v = if op == "dmirror_write" {
                value(cx, &mut t)
            } else {
                Some(0)
            };
            let cmd = match op.as_str() {
                "dmirror_read" => DmirrorCmd::Read,
                "dmirror_write" => DmirrorCmd::Write,
                "dmirror_exclusive" => DmirrorCmd::Exclusive,
                _ => DmirrorCmd::CheckExclusive,
            };
            match (a, p, v) {
                (Some(at), Some(pages), Some(value)) => Some(Op::Dmirror {
                    cmd,
                    at,
                    pages,
                    value,
                }),
                _ => None,
            }
        }
        "reclaim" => {
            process_only(cx);
            pages(cx, &mut t).map(|pages| Op::Reclaim { pages })
        }
        "reclaim_folio" => at(cx, &mut t).map(|at| Op::ReclaimFolio { at }),
        "migrate" => at(cx, &mut t).map(|at| Op::Migrate { at }),
        "touch" => {
            process_only(cx);
            let a = at(cx, &mut t);
            let p = pages(cx, &mut t);
            let v = t
                .get("value")
                .map_or(Some(1), |v| cx.want_u64(v, "value", u64::MAX >> 1));
            match (a, p, v) {
                (Some(at), Some(pages), Some(value)) => Some(Op::Touch { at, pages, value }),
                _ => None,
            }
        }
        "fill" | "compare" => {
            process_only(cx);
            let a = at(cx, &mut t);
            let p = pages(cx, &mut t);
            // The selftests' pattern starts at 0.
            let v = t
                .get("value")
                .map_or(Some(0), |v| cx.want_u64(v, "value", u64::MAX >> 1));
            match (a, p, v) {
                (Some(at), Some(pages), Some(value)) if op == "fill" => {
                    Some(Op::Fill { at, pages, value })
                }
                (Some(at), Some(pages), Some(value)) => Some(Op::Compare { at, pages, value }),
                _ => None,
            }
        }
        _ => None,
    };
    t.finish(cx, &known);
    if let Some(op) = op_v {
        out.push(Step {
            op,
            expect,
            expect_pte,
            expect_device,
            expect_events,
            expect_refcount,
            expect_mapcount,
            expect_faults,
            expect_cpages,
            note,
            source,
            id,
            span: n.span,
        });
    }
}

/// Device rights as written: letters from r, w, a, or `none` (no entry).
fn rights_of(cx: &mut Ctx, n: &Node) -> Option<Option<svmkit::device::DevRights>> {
    use svmkit::device::DevRights;
    let s = cx.want_str(n, "device rights")?;
    if s == "none" {
        return Some(None);
    }
    let mut r = DevRights::empty();
    for c in s.chars() {
        r |= match c {
            'r' => DevRights::READ,
            'w' => DevRights::WRITE,
            'a' => DevRights::ATOMIC,
            _ => {
                cx.err(
                    Problem::new(n.span, format!("`{s}` is not a set of device rights"))
                        .label("bad rights")
                        .help(
                            "letters from r (read), w (write), a (atomic), or `none` for no entry",
                        ),
                );
                return None;
            }
        };
    }
    Some(Some(r))
}

/// `expect_device = "ra"` (the thread's device) or `{ gpu = "rwa", other = "none" }`.
fn device_expect_of(
    cx: &mut Ctx,
    names: &Names,
    actor: Option<Actor>,
    n: &Node,
) -> Vec<(usize, Option<svmkit::device::DevRights>)> {
    match &n.kind {
        Kind::Str(_) => match actor {
            Some(Actor::Device(d)) => rights_of(cx, n).map(|r| vec![(d, r)]).unwrap_or_default(),
            _ => {
                cx.err(
                    Problem::new(n.span, "this thread has no device of its own")
                        .label("whose entry?")
                        .help("name the device: expect_device = { gpu = \"rwa\" }"),
                );
                Vec::new()
            }
        },
        Kind::Table(entries) => {
            let mut out = Vec::new();
            for (k, span, v) in entries {
                match names.devices.iter().position(|d| &d.name == k) {
                    Some(d) => {
                        if let Some(r) = rights_of(cx, v) {
                            out.push((d, r));
                        }
                    }
                    None => {
                        let mut p = Problem::new(*span, format!("no device is called `{k}`"))
                            .label("unknown device");
                        if let Some(h) =
                            did_you_mean(k, names.devices.iter().map(|d| d.name.as_str()))
                        {
                            p = p.help(h);
                        }
                        cx.err(p);
                    }
                }
            }
            out
        }
        _ => {
            cx.err(
                Problem::new(
                    n.span,
                    "expect_device is rights or a table of device = rights",
                )
                .label("bad expect_device"),
            );
            Vec::new()
        }
    }
}

fn end_expect(cx: &mut Ctx, names: &Names, n: &Node) -> EndExpect {
    let mut e = EndExpect {
        checker: true,
        all_freed: true,
        values: Vec::new(),
        rss: Vec::new(),
    };
    let Some(mut t) = Tbl::new(cx, n, "[expect]") else {
        return e;
    };
    if let Some(v) = t.get("checker").and_then(|v| cx.want_bool(v, "checker")) {
        e.checker = v;
    }
    if let Some(v) = t
        .get("all_freed")
        .and_then(|v| cx.want_bool(v, "all_freed"))
    {
        e.all_freed = v;
    }
    for (key, what, field, max) in [
        ("values", "an expected value", "value", u64::MAX >> 1),
        ("rss", "an expected resident size", "kib", 1 << 40),
    ] {
        let Some(v) = t.get(key) else { continue };
        let Kind::Array(a) = &v.kind else {
            cx.err(
                Problem::new(v.span, format!("`{key}` must be an array of tables"))
                    .label("expected an array")
                    .help(format!(
                        "{key} = [{{ process = \"app\", at = \"buf\", {field} = 1 }}]"
                    )),
            );
            continue;
        };
        for x in a {
            let Some(mut vt) = Tbl::new(cx, x, what) else {
                continue;
            };
            let p = vt.require(cx, "process").and_then(|v| names.process(cx, v));
            let at = vt.require(cx, "at").and_then(|v| names.addr(cx, v));
            let val = vt
                .require(cx, field)
                .and_then(|v| cx.want_u64(v, field, max));
            vt.finish(cx, &["process", "at", field]);
            if let (Some(p), Some(at), Some(val)) = (p, at, val) {
                let list = if key == "rss" {
                    &mut e.rss
                } else {
                    &mut e.values
                };
                list.push((p, at, val, x.span));
            }
        }
    }
    t.finish(cx, &EXPECT_KEYS);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_forms() {
        assert_eq!(parse_addr("buf"), Ok((Some("buf".into()), 0)));
        assert_eq!(parse_addr("buf+0x10"), Ok((Some("buf".into()), 0x10)));
        assert_eq!(
            parse_addr("buf[page 3]"),
            Ok((Some("buf".into()), 3 * PAGE_SIZE))
        );
        assert_eq!(
            parse_addr("buf[page 3]+8"),
            Ok((Some("buf".into()), 3 * PAGE_SIZE + 8))
        );
        assert_eq!(parse_addr("buf + 4096 - 8"), Ok((Some("buf".into()), 4088)));
        assert_eq!(parse_addr("0x4000_0000"), Ok((None, 0x4000_0000)));
        let _ = parse_addr("buf-1").unwrap_err();
        let _ = parse_addr("buf[3]").unwrap_err();
        let _ = parse_addr("buf+").unwrap_err();
        let _ = parse_addr("").unwrap_err();
        let _ = parse_addr("buf[page 99999999999999999999]").unwrap_err();
    }

    #[test]
    fn lengths() {
        assert_eq!(parse_len("4096"), Some(4096));
        assert_eq!(parse_len("2MiB"), Some(2 << 20));
        assert_eq!(parse_len("3 pages"), Some(3 * PAGE_SIZE));
        assert_eq!(parse_len("1 page"), Some(PAGE_SIZE));
        assert_eq!(parse_len("0x1000"), Some(4096));
        assert_eq!(parse_len("2 MB"), None);
        assert_eq!(parse_len("99999999999999999999GiB"), None);
    }
}
