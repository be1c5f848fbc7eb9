//! Random operation sequences over two address spaces, checked after every step
//! against the invariant checker and a plain shadow model of what each process must
//! read back.

use std::collections::BTreeMap;

use proptest::prelude::*;
use svmkit::mm::{Advice, MapFlags, MmUser, Prot};
use svmkit::{Errno, FaultKind, PAGE_SIZE, System, SystemConfig};

const BASE: u64 = 0x7000_0000;
/// Pages in the window the operations hit (spanning two PTE tables).
const PAGES: u64 = 24;
const WINDOW_SPLIT: u64 = 512 - 12; // the window straddles a 2 MiB boundary
const WORDS: u64 = 4;

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
}

fn prot_of(p: u8) -> Prot {
    [Prot::empty(), Prot::READ, Prot::READ | Prot::WRITE][p as usize % 3]
}

fn op() -> impl Strategy<Value = Op> {
    let mm = 0usize..2;
    let page = 0..PAGES;
    let n = 1u64..6;
    prop_oneof![
        2 => (mm.clone(), page.clone(), n.clone(), 0u8..3).prop_map(|(mm, page, n, prot)| Op::Mmap { mm, page, n, prot }),
        1 => (mm.clone(), page.clone(), n.clone()).prop_map(|(mm, page, n)| Op::Munmap { mm, page, n }),
        2 => (mm.clone(), page.clone(), n.clone(), 0u8..3).prop_map(|(mm, page, n, prot)| Op::Mprotect { mm, page, n, prot }),
        1 => (mm.clone(), page.clone(), n).prop_map(|(mm, page, n)| Op::DontNeed { mm, page, n }),
        3 => (mm.clone(), page.clone(), 0..WORDS).prop_map(|(mm, page, word)| Op::Read { mm, page, word }),
        3 => (mm.clone(), page.clone(), 0..WORDS, any::<u64>()).prop_map(|(mm, page, word, value)| Op::Write { mm, page, word, value }),
        2 => (mm, page, 0..WORDS, 1u64..1000).prop_map(|(mm, page, word, delta)| Op::FetchAdd { mm, page, word, delta }),
    ]
}

/// What one process must see: a protection per mapped page, and the words written.
#[derive(Default)]
struct Shadow {
    prot: BTreeMap<u64, Prot>,
    data: BTreeMap<(u64, u64), u64>,
}

impl Shadow {
    fn clear(&mut self, page: u64) {
        self.data.retain(|&(p, _), _| p != page);
    }

    fn access(&self, page: u64, write: bool) -> Result<(), FaultKind> {
        match self.prot.get(&page) {
            None => Err(FaultKind::Unmapped),
            Some(p) if write && !p.contains(Prot::WRITE) => Err(FaultKind::Protection),
            Some(p) if p.is_empty() => Err(FaultKind::Protection),
            Some(_) => Ok(()),
        }
    }
}

fn range(page: u64, n: u64) -> std::ops::Range<u64> {
    page..(page + n).min(PAGES)
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let sys = System::new(SystemConfig::with_frames(512)).unwrap();
    let mms: Vec<MmUser> = (0..2).map(|_| sys.create_mm().unwrap()).collect();
    let mut shadow = [Shadow::default(), Shadow::default()];
    let fixed = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED;
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Mmap { mm, page, n, prot } => {
                let r = range(page, n);
                let got = mms[mm].mmap(
                    addr(r.start, 0),
                    (r.end - r.start) * PAGE_SIZE,
                    prot_of(prot),
                    fixed,
                );
                prop_assert_eq!(got.map(|a| a.raw()), Ok(addr(r.start, 0)));
                for p in r {
                    shadow[mm].prot.insert(p, prot_of(prot));
                    shadow[mm].clear(p);
                }
            }
            Op::Munmap { mm, page, n } => {
                let r = range(page, n);
                prop_assert_eq!(
                    mms[mm].munmap(addr(r.start, 0), (r.end - r.start) * PAGE_SIZE),
                    Ok(())
                );
                for p in r {
                    shadow[mm].prot.remove(&p);
                    shadow[mm].clear(p);
                }
            }
            Op::Mprotect { mm, page, n, prot } => {
                let r = range(page, n);
                let got = mms[mm].mprotect(
                    addr(r.start, 0),
                    (r.end - r.start) * PAGE_SIZE,
                    prot_of(prot),
                );
                // Linux: applied to the mapped run from the start; ENOMEM at a hole.
                let mut want = Ok(());
                for p in r {
                    match shadow[mm].prot.get_mut(&p) {
                        Some(pr) => *pr = prot_of(prot),
                        None => {
                            want = Err(Errno::ENOMEM);
                            break;
                        }
                    }
                }
                prop_assert_eq!(got, want);
            }
            Op::DontNeed { mm, page, n } => {
                let r = range(page, n);
                let got = mms[mm].madvise(
                    addr(r.start, 0),
                    (r.end - r.start) * PAGE_SIZE,
                    Advice::DontNeed,
                );
                let mut want = Ok(());
                for p in r {
                    if shadow[mm].prot.contains_key(&p) {
                        shadow[mm].clear(p);
                    } else {
                        want = Err(Errno::ENOMEM);
                    }
                }
                prop_assert_eq!(got, want);
            }
            Op::Read { mm, page, word } => {
                let got = mms[mm].read_u64(addr(page, word)).map_err(|e| e.kind);
                let want = shadow[mm]
                    .access(page, false)
                    .map(|()| shadow[mm].data.get(&(page, word)).copied().unwrap_or(0));
                prop_assert_eq!(got, want, "step {}", step);
            }
            Op::Write {
                mm,
                page,
                word,
                value,
            } => {
                let got = mms[mm]
                    .write_u64(addr(page, word), value)
                    .map_err(|e| e.kind);
                let want = shadow[mm].access(page, true);
                if want.is_ok() {
                    shadow[mm].data.insert((page, word), value);
                }
                prop_assert_eq!(got, want, "step {}", step);
            }
            Op::FetchAdd {
                mm,
                page,
                word,
                delta,
            } => {
                let got = mms[mm]
                    .fetch_add_u64(addr(page, word), delta)
                    .map_err(|e| e.kind);
                let want = shadow[mm].access(page, true).map(|()| {
                    let v = shadow[mm].data.entry((page, word)).or_insert(0);
                    let old = *v;
                    *v = old.wrapping_add(delta);
                    old
                });
                prop_assert_eq!(got, want, "step {}", step);
            }
        }
        if let Err(e) = sys.check() {
            prop_assert!(false, "after step {}: {}", step, e);
        }
    }
    drop(mms);
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
