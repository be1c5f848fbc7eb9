//! Runnable ports of the hmm selftests that concern exclusive access (Linux:
//! `tools/testing/selftests/mm/hmm-tests.c`, spec 7), over [`Dmirror`], for the demo
//! and for users who want the oracle's verdict on a modified model. The integration
//! tests (`tests/dmirror.rs`) run the same flows with more assertions on the page
//! tables.
//!
//! Each port uses the selftests' buffer (1024 pages, `ptr[i] = i` as `int`s),
//! optionally 2 MiB-aligned with `MADV_HUGEPAGE` (the configuration that broke the
//! 2021 design), and returns the first failed assertion as an error.

use std::fmt;

use super::dmirror::{Dmirror, DmirrorIoctl, HmmDmirrorCmd};
use crate::error::Errno;
use crate::mm::{Advice, MapFlags, MmUser, PMD_SIZE, Prot, Pte};
use crate::system::{System, SystemConfig};
use crate::task::Task;
use crate::types::{PAGE_SIZE, VirtAddr};

/// Linux: `HMM_BUFFER_SIZE >> page_shift` (4 MiB of 4 KiB pages).
pub const HMM_NPAGES: u64 = 1024;
const PS: usize = PAGE_SIZE as usize;
/// 2 MiB-aligned, so a THP variant gets PMD-sized folios.
const BUF: u64 = 0x4000_0000;

/// Which selftest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HmmSelftest {
    /// `TEST_F(hmm, exclusive)`.
    Exclusive,
    /// `TEST_F(hmm, exclusive_mprotect)`.
    ExclusiveMprotect,
    /// `TEST_F(hmm, exclusive_cow)`.
    ExclusiveCow,
}

impl HmmSelftest {
    /// All ports, in the selftest file's order.
    pub const ALL: [HmmSelftest; 3] = [
        HmmSelftest::Exclusive,
        HmmSelftest::ExclusiveMprotect,
        HmmSelftest::ExclusiveCow,
    ];

    /// The selftest's name.
    pub fn name(self) -> &'static str {
        match self {
            HmmSelftest::Exclusive => "exclusive",
            HmmSelftest::ExclusiveMprotect => "exclusive_mprotect",
            HmmSelftest::ExclusiveCow => "exclusive_cow",
        }
    }
}

impl fmt::Display for HmmSelftest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed assertion, with where it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelftestFailure(pub String);

impl fmt::Display for SelftestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelftestFailure {}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), SelftestFailure> {
    if ok {
        Ok(())
    } else {
        Err(SelftestFailure(what()))
    }
}

fn fail<E: fmt::Display>(what: &'static str) -> impl FnOnce(E) -> SelftestFailure {
    move |e| SelftestFailure(format!("{what}: {e}"))
}

/// `ptr[i] = f(i)` for the ints of `npages` pages, as bytes.
fn ints(npages: u64, f: impl Fn(i32) -> i32) -> Vec<u8> {
    (0..(npages as usize * PS / 4) as i32)
        .flat_map(|i| f(i).to_ne_bytes())
        .collect()
}

/// The selftests' `ASSERT_EQ(ptr[i]++, i)` over the buffer, a page at a time, then
/// `ASSERT_EQ(ptr[i], i + 1)`.
fn increment_all(mm: &MmUser, who: &str) -> Result<(), SelftestFailure> {
    let want = ints(1, |i| i);
    let mut page = vec![0u8; PS];
    for p in 0..HMM_NPAGES {
        let a = BUF + p * PAGE_SIZE;
        mm.read_bytes(a, &mut page).map_err(fail("CPU read"))?;
        let base = (p as usize * PS / 4) as i32;
        let expect: Vec<u8> = want
            .chunks(4)
            .flat_map(|c| (i32::from_ne_bytes([c[0], c[1], c[2], c[3]]) + base).to_ne_bytes())
            .collect();
        check(page == expect, || format!("{who}: ptr[i] != i in page {p}"))?;
        let bumped: Vec<u8> = page
            .chunks(4)
            .flat_map(|c| (i32::from_ne_bytes([c[0], c[1], c[2], c[3]]) + 1).to_ne_bytes())
            .collect();
        mm.write_bytes(a, &bumped).map_err(fail("CPU write"))?;
    }
    let mut all = vec![0u8; HMM_NPAGES as usize * PS];
    mm.read_bytes(BUF, &mut all).map_err(fail("CPU read"))?;
    check(all == ints(HMM_NPAGES, |i| i + 1), || {
        format!("{who}: ptr[i] != i + 1 after the increments")
    })
}

fn entries(mm: &MmUser) -> usize {
    (0..HMM_NPAGES)
        .filter(|p| {
            VirtAddr::try_new(BUF + p * PAGE_SIZE).is_ok_and(
                |va| matches!(mm.pte_get_lockless(va), Pte::Swap(s) if s.is_device_exclusive()),
            )
        })
        .count()
}

/// Runs one port on a fresh machine of `config`; `thp` backs the buffer with
/// PMD-mapped THPs first. On success, a one-line summary of what was observed.
pub fn run(test: HmmSelftest, config: SystemConfig, thp: bool) -> Result<String, SelftestFailure> {
    let sys = System::new(config).map_err(fail("System::new"))?;
    let mm = sys.create_mm().map_err(fail("create_mm"))?;
    let size = HMM_NPAGES * PAGE_SIZE;
    mm.mmap(
        BUF,
        size,
        Prot::READ | Prot::WRITE,
        MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED,
    )
    .map_err(fail("mmap"))?;
    if thp {
        mm.madvise(BUF, size, Advice::HugePage)
            .map_err(fail("madvise"))?;
    }
    mm.write_bytes(BUF, &ints(HMM_NPAGES, |i| i))
        .map_err(fail("fill"))?;
    let huge = (0..size / PMD_SIZE)
        .filter(|i| VirtAddr::try_new(BUF + i * PMD_SIZE).is_ok_and(|v| mm.pmd_is_huge(v)))
        .count();
    let dm = Dmirror::open(&mm).map_err(fail("open"))?;
    let task = Task::new("hmm-tests");
    let mut cmd = HmmDmirrorCmd {
        addr: BUF,
        npages: HMM_NPAGES,
        ..Default::default()
    };
    let mut mirror = vec![0u8; size as usize];
    dm.ioctl(&task, DmirrorIoctl::Exclusive, &mut cmd, &mut mirror)
        .map_err(fail("HMM_DMIRROR_EXCLUSIVE"))?;
    check(cmd.cpages == HMM_NPAGES, || {
        format!("cpages {} != npages {HMM_NPAGES}", cmd.cpages)
    })?;
    check(mirror == ints(HMM_NPAGES, |i| i), || {
        "mirror[i] != i".into()
    })?;
    let converted = entries(&mm);
    let summary = match test {
        HmmSelftest::Exclusive => {
            increment_all(&mm, "CPU")?;
            let mut c = HmmDmirrorCmd {
                addr: BUF,
                npages: HMM_NPAGES,
                ..Default::default()
            };
            dm.ioctl(&task, DmirrorIoctl::CheckExclusive, &mut c, &mut [])
                .map_err(fail("HMM_DMIRROR_CHECK_EXCLUSIVE"))?;
            format!("{converted} entries, all restored by CPU touches, CHECK_EXCLUSIVE ok")
        }
        HmmSelftest::ExclusiveMprotect => {
            mm.mprotect(BUF, size, Prot::READ)
                .map_err(fail("mprotect"))?;
            let mut c = HmmDmirrorCmd {
                addr: BUF,
                npages: HMM_NPAGES,
                ..Default::default()
            };
            let mut buf = ints(HMM_NPAGES, |i| i);
            let r = dm.ioctl(&task, DmirrorIoctl::Write, &mut c, &mut buf);
            check(r == Err(Errno::EPERM), || {
                format!("HMM_DMIRROR_WRITE gave {r:?}, want EPERM")
            })?;
            format!("{converted} entries; after mprotect(PROT_READ) the device write gets EPERM")
        }
        HmmSelftest::ExclusiveCow => {
            let child = sys.fork(&mm).map_err(fail("fork"))?;
            increment_all(&mm, "parent")?;
            increment_all(&child, "child")?;
            format!(
                "{converted} entries; fork restored them, parent and child each incremented their copy"
            )
        }
    };
    drop(dm);
    drop(mm);
    sys.check().map_err(fail("checker"))?;
    Ok(format!(
        "{summary}{}",
        if thp {
            format!(" ({huge} PMD-mapped THPs before)")
        } else {
            String::new()
        }
    ))
}
