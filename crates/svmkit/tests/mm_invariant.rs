//! Random operation sequences over up to three address spaces (created, forked and
//! exited at random), checked after every step against the invariant checker and a
//! plain shadow model of what each process must read back.
//!
//! The shadow follows Linux: fork copies private memory (copy-on-write: each side
//! then sees its own writes) and shares `MAP_SHARED` memory (one shmem object, seen
//! by both); `MADV_DONTNEED` makes private pages read zero but keeps shared pages'
//! data in the shmem object; a shared page reads its object at the page offset it
//! had at mmap, whatever splitting `mprotect`/`munmap` did since.

use std::collections::BTreeMap;

use proptest::prelude::*;
use svmkit::mm::{Advice, MapFlags, MmUser, Prot};
use svmkit::{Errno, FaultKind, PAGE_SIZE, System, SystemConfig};

const BASE: u64 = 0x7000_0000;
/// Pages in the window the operations hit (spanning two PTE tables).
const PAGES: u64 = 24;
const WINDOW_SPLIT: u64 = 512 - 12; // the window straddles a 2 MiB boundary
const WORDS: u64 = 4;
/// Address-space slots: at most this many mms are alive at once.
const SLOTS: usize = 3;

fn addr(page: u64, word: u64) -> u64 {
    BASE + (WINDOW_SPLIT + page) * PAGE_SIZE + word * 8
}

#[derive(Debug, Clone)]
enum Op {
    Mmap {
        mm: usize,
        page: u64,
        n: u64,
        prot: u8,
        shared: bool,
    },
    Munmap {
        mm: usize,
        page: u64,
        n: u64,
    },
    Mprotect {
        mm: usize,
        page: u64,
        n: u64,
        prot: u8,
    },
    DontNeed {
        mm: usize,
        page: u64,
        n: u64,
    },
    Read {
        mm: usize,
        page: u64,
        word: u64,
    },
    Write {
        mm: usize,
        page: u64,
        word: u64,
        value: u64,
    },
    FetchAdd {
        mm: usize,
        page: u64,
        word: u64,
        delta: u64,
    },
    /// Writes `value + i` to the i-th word of `[page, page + n)`, word by word (a
    /// memset that keeps going past faults).
    Fill {
        mm: usize,
        page: u64,
        n: u64,
        value: u64,
    },
    /// Forks the mm in slot `mm` (or the next live one) into a free slot; with no mm
    /// alive, creates a fresh one instead. Skipped when every slot is taken.
    Fork {
        mm: usize,
    },
    /// Drops the mm in slot `mm` (or the next live one): its last user, so exit_mmap.
    Exit {
        mm: usize,
    },
    /// Reads every word of the window in every live mm and compares it all with the
    /// shadow (faulting pages in as a side effect).
    Sweep,
}

fn prot_of(p: u8) -> Prot {
    [Prot::empty(), Prot::READ, Prot::READ | Prot::WRITE][p as usize % 3]
}

/// A protection index for [`prot_of`], biased toward read-write so data gets written.
fn prot() -> impl Strategy<Value = u8> {
    prop_oneof![1 => Just(0u8), 1 => Just(1u8), 3 => Just(2u8)]
}

fn op() -> impl Strategy<Value = Op> {
    let mm = 0..SLOTS;
    let page = 0..PAGES;
    let n = 1u64..6;
    prop_oneof![
        3 => (mm.clone(), page.clone(), n.clone(), prot(), any::<bool>())
            .prop_map(|(mm, page, n, prot, shared)| Op::Mmap { mm, page, n, prot, shared }),
        1 => (mm.clone(), page.clone(), n.clone()).prop_map(|(mm, page, n)| Op::Munmap { mm, page, n }),
        2 => (mm.clone(), page.clone(), n.clone(), prot()).prop_map(|(mm, page, n, prot)| Op::Mprotect { mm, page, n, prot }),
        2 => (mm.clone(), page.clone(), n.clone()).prop_map(|(mm, page, n)| Op::DontNeed { mm, page, n }),
        4 => (mm.clone(), page.clone(), 0..WORDS).prop_map(|(mm, page, word)| Op::Read { mm, page, word }),
        3 => (mm.clone(), page.clone(), 0..WORDS, any::<u64>()).prop_map(|(mm, page, word, value)| Op::Write { mm, page, word, value }),
        2 => (mm.clone(), page.clone(), 0..WORDS, 1u64..1000).prop_map(|(mm, page, word, delta)| Op::FetchAdd { mm, page, word, delta }),
        2 => (mm.clone(), page, n, any::<u64>()).prop_map(|(mm, page, n, value)| Op::Fill { mm, page, n, value }),
        1 => mm.clone().prop_map(|mm| Op::Fork { mm }),
        1 => mm.prop_map(|mm| Op::Exit { mm }),
        2 => Just(Op::Sweep),
    ]
}

/// What backs one mapped page of the shadow.
#[derive(Clone)]
enum Backing {
    /// Private anonymous memory: the process's own words (copied at fork).
    Private([u64; WORDS as usize]),
    /// Page `off` of shared object `obj` (an index into [`Model::objs`]).
    Shared { obj: usize, off: u64 },
}

#[derive(Clone)]
struct Page {
    prot: Prot,
    backing: Backing,
}

/// One live process: its address space and the shadow of what it must see.
struct Proc {
    user: MmUser,
    pages: BTreeMap<u64, Page>,
}

impl Proc {
    fn access(&self, page: u64, write: bool) -> Result<(), FaultKind> {
        match self.pages.get(&page) {
            None => Err(FaultKind::Unmapped),
            Some(p) if write && !p.prot.contains(Prot::WRITE) => Err(FaultKind::Protection),
            Some(p) if p.prot.is_empty() => Err(FaultKind::Protection),
            Some(_) => Ok(()),
        }
    }
}

/// The shadow of the whole machine: the process slots and every shared object ever
/// created (objects are never reclaimed from the shadow; nothing can reach a dead one).
struct Model {
    procs: Vec<Option<Proc>>,
    objs: Vec<Vec<[u64; WORDS as usize]>>,
}

impl Model {
    /// The live slot an op aimed at `mm` runs on: `mm` itself, else the next live one.
    fn resolve(&self, mm: usize) -> Option<usize> {
        (0..SLOTS)
            .map(|i| (mm + i) % SLOTS)
            .find(|&s| self.procs[s].is_some())
    }

    fn proc(&mut self, slot: usize) -> &mut Proc {
        self.procs[slot].as_mut().unwrap()
    }

    /// The word a read of `(page, word)` in `slot` must return (the page is mapped).
    fn load(&self, slot: usize, page: u64, word: u64) -> u64 {
        match &self.procs[slot].as_ref().unwrap().pages[&page].backing {
            Backing::Private(w) => w[word as usize],
            Backing::Shared { obj, off } => self.objs[*obj][*off as usize][word as usize],
        }
    }

    fn store(&mut self, slot: usize, page: u64, word: u64, value: u64) {
        let Model { procs, objs } = self;
        let p = procs[slot].as_mut().unwrap().pages.get_mut(&page).unwrap();
        match &mut p.backing {
            Backing::Private(w) => w[word as usize] = value,
            Backing::Shared { obj, off } => objs[*obj][*off as usize][word as usize] = value,
        }
    }
}

fn range(page: u64, n: u64) -> std::ops::Range<u64> {
    page..(page + n).min(PAGES)
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    // Three mms with up to 24 pages each, their page tables, and shmem objects that
    // outlive partial unmaps: far below this.
    let sys = System::new(SystemConfig::with_frames(1024)).unwrap();
    let mut m = Model {
        procs: (0..SLOTS)
            .map(|i| {
                (i < 2).then(|| Proc {
                    user: sys.create_mm().unwrap(),
                    pages: BTreeMap::new(),
                })
            })
            .collect(),
        objs: Vec::new(),
    };
    let private = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED;
    let shared = MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED;
    for (step, op) in ops.into_iter().enumerate() {
        let target = match &op {
            Op::Mmap { mm, .. }
            | Op::Munmap { mm, .. }
            | Op::Mprotect { mm, .. }
            | Op::DontNeed { mm, .. }
            | Op::Read { mm, .. }
            | Op::Write { mm, .. }
            | Op::FetchAdd { mm, .. }
            | Op::Fill { mm, .. }
            | Op::Fork { mm }
            | Op::Exit { mm } => m.resolve(*mm),
            Op::Sweep => None,
        };
        let ctx = format!("step {step}: {op:?} on slot {target:?}");
        match (op, target) {
            (Op::Sweep, _) => {
                for s in (0..SLOTS).filter(|&s| m.procs[s].is_some()) {
                    for page in 0..PAGES {
                        for word in 0..WORDS {
                            let proc = m.procs[s].as_ref().unwrap();
                            let got = proc.user.read_u64(addr(page, word)).map_err(|e| e.kind);
                            let want = proc.access(page, false).map(|()| m.load(s, page, word));
                            prop_assert_eq!(
                                got,
                                want,
                                "{}: slot {} page {} word {}",
                                ctx,
                                s,
                                page,
                                word
                            );
                        }
                    }
                }
            }
            (Op::Fork { .. }, None) => {
                // Every process exited: start a fresh one.
                m.procs[0] = Some(Proc {
                    user: sys.create_mm().unwrap(),
                    pages: BTreeMap::new(),
                });
            }
            (Op::Fork { .. }, Some(parent)) => {
                let Some(free) = m.procs.iter().position(Option::is_none) else {
                    continue;
                };
                let p = m.procs[parent].as_ref().unwrap();
                let child = sys.fork(&p.user);
                prop_assert!(child.is_ok(), "{}: fork failed: {:?}", ctx, child.err());
                // Private pages copied, shared ones naming the same objects.
                let pages = p.pages.clone();
                m.procs[free] = Some(Proc {
                    user: child.unwrap(),
                    pages,
                });
            }
            (Op::Exit { .. }, Some(slot)) => {
                drop(m.procs[slot].take());
            }
            (_, None) => continue,
            (
                Op::Mmap {
                    page,
                    n,
                    prot,
                    shared: is_shared,
                    ..
                },
                Some(s),
            ) => {
                let r = range(page, n);
                let npages = r.end - r.start;
                let got = m.proc(s).user.mmap(
                    addr(r.start, 0),
                    npages * PAGE_SIZE,
                    prot_of(prot),
                    if is_shared { shared } else { private },
                );
                prop_assert_eq!(got.map(|a| a.raw()), Ok(addr(r.start, 0)), "{}", ctx);
                let obj = m.objs.len();
                if is_shared {
                    m.objs.push(vec![[0; WORDS as usize]; npages as usize]);
                }
                for p in r.clone() {
                    let backing = if is_shared {
                        Backing::Shared {
                            obj,
                            off: p - r.start,
                        }
                    } else {
                        Backing::Private([0; WORDS as usize])
                    };
                    m.proc(s).pages.insert(
                        p,
                        Page {
                            prot: prot_of(prot),
                            backing,
                        },
                    );
                }
            }
            (Op::Munmap { page, n, .. }, Some(s)) => {
                let r = range(page, n);
                let proc = m.proc(s);
                prop_assert_eq!(
                    proc.user
                        .munmap(addr(r.start, 0), (r.end - r.start) * PAGE_SIZE),
                    Ok(()),
                    "{}",
                    ctx
                );
                for p in r {
                    proc.pages.remove(&p);
                }
            }
            (Op::Mprotect { page, n, prot, .. }, Some(s)) => {
                let r = range(page, n);
                let proc = m.proc(s);
                let got = proc.user.mprotect(
                    addr(r.start, 0),
                    (r.end - r.start) * PAGE_SIZE,
                    prot_of(prot),
                );
                // Linux: applied to the mapped run from the start; ENOMEM at a hole.
                let mut want = Ok(());
                for p in r {
                    match proc.pages.get_mut(&p) {
                        Some(pg) => pg.prot = prot_of(prot),
                        None => {
                            want = Err(Errno::ENOMEM);
                            break;
                        }
                    }
                }
                prop_assert_eq!(got, want, "{}", ctx);
            }
            (Op::DontNeed { page, n, .. }, Some(s)) => {
                let r = range(page, n);
                let proc = m.proc(s);
                let got = proc.user.madvise(
                    addr(r.start, 0),
                    (r.end - r.start) * PAGE_SIZE,
                    Advice::DontNeed,
                );
                // Linux: applied to every mapped piece; ENOMEM if there was a hole.
                // Private pages read zero afterwards; shared ones keep their data in
                // the shmem object.
                let mut want = Ok(());
                for p in r {
                    match proc.pages.get_mut(&p) {
                        Some(Page {
                            backing: Backing::Private(w),
                            ..
                        }) => *w = [0; WORDS as usize],
                        Some(_) => {}
                        None => want = Err(Errno::ENOMEM),
                    }
                }
                prop_assert_eq!(got, want, "{}", ctx);
            }
            (Op::Read { page, word, .. }, Some(s)) => {
                let proc = m.proc(s);
                let got = proc.user.read_u64(addr(page, word)).map_err(|e| e.kind);
                let want = proc.access(page, false).map(|()| m.load(s, page, word));
                prop_assert_eq!(got, want, "{}", ctx);
            }
            (
                Op::Write {
                    page, word, value, ..
                },
                Some(s),
            ) => {
                let proc = m.proc(s);
                let got = proc
                    .user
                    .write_u64(addr(page, word), value)
                    .map_err(|e| e.kind);
                let want = proc.access(page, true);
                if want.is_ok() {
                    m.store(s, page, word, value);
                }
                prop_assert_eq!(got, want, "{}", ctx);
            }
            (Op::Fill { page, n, value, .. }, Some(s)) => {
                for (i, (p, word)) in range(page, n)
                    .flat_map(|p| (0..WORDS).map(move |w| (p, w)))
                    .enumerate()
                {
                    let v = value.wrapping_add(i as u64);
                    let proc = m.proc(s);
                    let got = proc.user.write_u64(addr(p, word), v).map_err(|e| e.kind);
                    let want = proc.access(p, true);
                    if want.is_ok() {
                        m.store(s, p, word, v);
                    }
                    prop_assert_eq!(got, want, "{}: page {} word {}", ctx, p, word);
                }
            }
            (
                Op::FetchAdd {
                    page, word, delta, ..
                },
                Some(s),
            ) => {
                let proc = m.proc(s);
                let got = proc
                    .user
                    .fetch_add_u64(addr(page, word), delta)
                    .map_err(|e| e.kind);
                let want = proc.access(page, true).map(|()| {
                    let old = m.load(s, page, word);
                    m.store(s, page, word, old.wrapping_add(delta));
                    old
                });
                prop_assert_eq!(got, want, "{}", ctx);
            }
        }
        if let Err(e) = sys.check() {
            prop_assert!(false, "after {}: {}", ctx, e);
        }
    }
    drop(m.procs);
    if let Err(e) = sys.check() {
        prop_assert!(false, "after exit: {}", e);
    }
    prop_assert_eq!(
        sys.mem().nr_free_pages(),
        sys.mem().nr_usable_pages(),
        "every frame free after exit"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn invariant_random_operations_keep_the_machine_consistent(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
