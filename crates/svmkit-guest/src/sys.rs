//! Everything that touches the real kernel: mmap and friends, CPU loads and stores
//! through the mapping, the dmirror ioctls, the `/dev/svmkit_loop` ioctls, getrusage, /proc/self/pagemap and
//! /proc/self/maps. Every `unsafe` block of the crate is in this file, each small and
//! with its `// SAFETY:` comment.

use std::ffi::c_void;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::ioctl::{Opcode, Updater};
use rustix::mm::{Advice, MapFlags, MprotectFlags, ProtFlags};

/// Page size of x86-64.
pub const PAGE: u64 = 4096;

/// `struct hmm_dmirror_cmd` of `lib/test_hmm_uapi.h` (identical in 6.1 and 6.12): five
/// `__u64`, 40 bytes.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmirrorCmd {
    /// (in) user address the device reads or writes.
    pub addr: u64,
    /// (in) user address of the buffer the data is copied to or from.
    pub ptr: u64,
    /// (in) pages.
    pub npages: u64,
    /// (out) pages copied.
    pub cpages: u64,
    /// (out) device faults seen.
    pub faults: u64,
}

/// `_IOWR('H', nr, struct hmm_dmirror_cmd)`: direction 3 (read | write) << 30, size 40
/// << 16, type 'H' (0x48) << 8, nr.
const fn iowr_h(nr: u32) -> Opcode {
    (3 << 30) | (40 << 16) | (0x48 << 8) | nr
}
/// `HMM_DMIRROR_READ`.
pub const HMM_DMIRROR_READ: Opcode = iowr_h(0x00);
/// `HMM_DMIRROR_WRITE`.
pub const HMM_DMIRROR_WRITE: Opcode = iowr_h(0x01);
/// `HMM_DMIRROR_EXCLUSIVE`.
pub const HMM_DMIRROR_EXCLUSIVE: Opcode = iowr_h(0x05);
/// `HMM_DMIRROR_CHECK_EXCLUSIVE`.
pub const HMM_DMIRROR_CHECK_EXCLUSIVE: Opcode = iowr_h(0x06);

// Our numbers agree with rustix's _IOWR and with the size of our struct.
const _: () = assert!(HMM_DMIRROR_EXCLUSIVE == 0xc028_4805);
const _: () = assert!(
    HMM_DMIRROR_CHECK_EXCLUSIVE == rustix::ioctl::opcode::read_write::<DmirrorCmd>(b'H', 0x06)
);
const _: () = assert!(size_of::<DmirrorCmd>() == 40);

/// A raw errno of a failed call.
pub type Errno = i32;

fn errno(e: rustix::io::Errno) -> Errno {
    e.raw_os_error()
}

/// Runs one dmirror ioctl; `cmd.ptr` must point to `cmd.npages` pages of memory of
/// ours (the bounce buffer the driver copies to or from).
pub fn dmirror_ioctl<const OP: Opcode>(
    fd: &OwnedFd,
    cmd: &mut DmirrorCmd,
    buf: &mut [u64],
) -> Result<(), Errno> {
    assert!(buf.len() as u64 * 8 >= cmd.npages * PAGE);
    cmd.ptr = buf.as_mut_ptr() as u64;
    // SAFETY: OP is one of the HMM_DMIRROR_* opcodes above, whose argument is a
    // `struct hmm_dmirror_cmd` (DmirrorCmd has its layout); the driver reads and writes
    // only that struct and the `npages` pages at `cmd.ptr`, which is `buf`, borrowed
    // mutably for the call and large enough (asserted above).
    unsafe { rustix::ioctl::ioctl(fd, Updater::<OP, DmirrorCmd>::new(cmd)) }.map_err(errno)
}

/// Opens `/dev/hmm_dmirror<n>`.
pub fn open_dmirror(n: usize) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        format!("/dev/hmm_dmirror{n}").as_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(errno)
}

fn prot_flags(prot: u32) -> ProtFlags {
    let mut p = ProtFlags::empty();
    if prot & 1 != 0 {
        p |= ProtFlags::READ;
    }
    if prot & 2 != 0 {
        p |= ProtFlags::WRITE;
    }
    if prot & 4 != 0 {
        p |= ProtFlags::EXEC;
    }
    p
}

/// `mmap(at, len, prot, MAP_ANONYMOUS | MAP_PRIVATE or MAP_SHARED [| MAP_FIXED])`.
pub fn mmap(at: Option<u64>, len: u64, prot: u32, shared: bool) -> Result<u64, Errno> {
    let mut flags = if shared {
        MapFlags::SHARED
    } else {
        MapFlags::PRIVATE
    };
    if at.is_some() {
        flags |= MapFlags::FIXED;
    }
    let hint = at.unwrap_or(0) as usize as *mut c_void;
    // SAFETY: an anonymous mapping; with MAP_FIXED it replaces what the scenario mapped
    // there (a scenario address, never memory of this program: the scenario's fixed
    // addresses are far from the binary, heap and stack, which sit at the kernel's
    // default places).
    unsafe { rustix::mm::mmap_anonymous(hint, len as usize, prot_flags(prot), flags) }
        .map(|p| p as u64)
        .map_err(errno)
}

/// `munmap(at, len)`.
pub fn munmap(at: u64, len: u64) -> Result<(), Errno> {
    // SAFETY: the addresses are the scenario's; no Rust reference points into a
    // scenario mapping (every access goes through a raw pointer, per step).
    unsafe { rustix::mm::munmap(at as usize as *mut c_void, len as usize) }.map_err(errno)
}

/// `mremap(at, old_len, new_len, flags, new_addr)` with Linux's flag bits
/// (`MREMAP_FIXED` = 2 selects `mremap_fixed`); returns the mapping's address.
pub fn mremap(
    at: u64,
    old_len: u64,
    new_len: u64,
    flags: u32,
    new_addr: u64,
) -> Result<u64, Errno> {
    const FIXED: u32 = 2;
    let f = rustix::mm::MremapFlags::from_bits_retain(flags & !FIXED);
    let old = at as usize as *mut c_void;
    // SAFETY: as munmap: the addresses are the scenario's (old and new), no Rust
    // reference points into a scenario mapping, and a FIXED target replaces only what
    // the scenario mapped there.
    let r = unsafe {
        if flags & FIXED != 0 {
            rustix::mm::mremap_fixed(
                old,
                old_len as usize,
                new_len as usize,
                f,
                new_addr as usize as *mut c_void,
            )
        } else {
            rustix::mm::mremap(old, old_len as usize, new_len as usize, f)
        }
    };
    r.map(|p| p as u64).map_err(errno)
}

/// `mprotect(at, len, prot)`.
pub fn mprotect(at: u64, len: u64, prot: u32) -> Result<(), Errno> {
    let mut p = MprotectFlags::empty();
    if prot & 1 != 0 {
        p |= MprotectFlags::READ;
    }
    if prot & 2 != 0 {
        p |= MprotectFlags::WRITE;
    }
    if prot & 4 != 0 {
        p |= MprotectFlags::EXEC;
    }
    // SAFETY: as munmap: scenario memory only, no reference into it outlives a step.
    unsafe { rustix::mm::mprotect(at as usize as *mut c_void, len as usize, p) }.map_err(errno)
}

/// `madvise(at, len, advice)`.
pub fn madvise(at: u64, len: u64, advice: Advice) -> Result<(), Errno> {
    // SAFETY: as munmap (MADV_DONTNEED drops scenario pages, which no reference holds).
    unsafe { rustix::mm::madvise(at as usize as *mut c_void, len as usize, advice) }.map_err(errno)
}

/// `madvise(at, len, MADV_COLLAPSE)`: rustix names no MADV_COLLAPSE (25, Linux 6.1),
/// so this goes through libc with the raw number.
pub fn madvise_collapse(at: u64, len: u64) -> Result<(), Errno> {
    const MADV_COLLAPSE: libc::c_int = 25;
    // SAFETY: the collapse copies the range's pages into a new folio and maps it in
    // their place; the contents the scenario sees stay the same.
    let rc = unsafe { libc::madvise(at as usize as *mut c_void, len as usize, MADV_COLLAPSE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    }
}

/// The calling thread's page faults so far (`ru_minflt + ru_majflt` of
/// `getrusage(RUSAGE_THREAD)`).
#[inline(never)]
pub fn faults_now() -> u64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `struct rusage` to the pointer, which points to one.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage failed");
    // SAFETY: zeroed, and getrusage succeeded, so it is initialised.
    let ru = unsafe { ru.assume_init() };
    (ru.ru_minflt + ru.ru_majflt) as u64
}

// The CPU accesses. Each is called only on an 8-byte aligned address that
// /proc/self/maps showed, just before, inside a VMA that permits the access (the
// runner checks; a wrong check ends the process with SIGSEGV, which oracle/run
// reports). Scenario memory is never borrowed as a Rust reference beyond one access.

/// A CPU load of the u64 at `addr`.
#[inline(never)]
pub fn load(addr: u64) -> u64 {
    // SAFETY: see above: aligned, mapped readable (checked by the caller).
    unsafe { std::ptr::read_volatile(addr as usize as *const u64) }
}

/// A CPU store of `v` to the u64 at `addr`.
#[inline(never)]
pub fn store(addr: u64, v: u64) {
    // SAFETY: see above: aligned, mapped writable (checked by the caller).
    unsafe { std::ptr::write_volatile(addr as usize as *mut u64, v) }
}

/// A CPU atomic add (`lock xadd`) to the u64 at `addr`; returns the old value.
#[inline(never)]
pub fn fetch_add(addr: u64, v: u64) -> u64 {
    // SAFETY: see above: aligned, mapped writable; an AtomicU64 has the layout of a
    // u64, and the reference lives for this one instruction.
    let a = unsafe { &*(addr as usize as *const AtomicU64) };
    a.fetch_add(v, Ordering::SeqCst)
}

/// /proc/self/pagemap, opened once.
#[derive(Debug)]
pub struct Pagemap(File);

impl Pagemap {
    /// Opens /proc/self/pagemap.
    pub fn open() -> std::io::Result<Pagemap> {
        File::open("/proc/self/pagemap").map(Pagemap)
    }

    /// The 64-bit pagemap entry of the page at `addr` (0 where nothing is mapped).
    pub fn entry(&self, addr: u64) -> u64 {
        let mut b = [0u8; 8];
        match self.0.read_exact_at(&mut b, (addr / PAGE) * 8) {
            Ok(()) => u64::from_le_bytes(b),
            Err(_) => 0,
        }
    }
}

/// One line of /proc/self/maps: [start, end) and its permissions.
#[derive(Debug, Clone, Copy)]
pub struct Vma {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// `r`.
    pub read: bool,
    /// `w`.
    pub write: bool,
}

/// The VMAs of this process, from /proc/self/maps.
pub fn vmas() -> Vec<Vma> {
    let text = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let range = it.next()?;
            let perms = it.next()?.as_bytes();
            let (s, e) = range.split_once('-')?;
            Some(Vma {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                read: perms.first() == Some(&b'r'),
                write: perms.get(1) == Some(&b'w'),
            })
        })
        .collect()
}

/// The `Rss:` line (KiB) of the /proc/self/smaps block of the VMA containing `addr`.
pub fn smaps_rss_kib(addr: u64) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for l in text.lines() {
        // A block starts with the maps line `start-end perms ...`.
        if let Some((range, _)) = l.split_once(' ')
            && let Some((s, e)) = range.split_once('-')
            && let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16))
        {
            inside = s <= addr && addr < e;
            continue;
        }
        if inside && let Some(v) = l.strip_prefix("Rss:") {
            return v.trim().strip_suffix("kB")?.trim().parse().ok();
        }
    }
    None
}

/// The VMA containing `addr`, if any.
pub fn vma_of(vmas: &[Vma], addr: u64) -> Option<Vma> {
    vmas.iter()
        .copied()
        .find(|v| v.start <= addr && addr < v.end)
}

/// Passes one `SVL_IOC_ATOMIC` may report (`SVL_MAX_PASSES` of
/// `oracle/kernel/svmkit_loop.h`).
pub const SVL_MAX_PASSES: usize = 64;
// (The module's SVL_SKIP_NULL_EXCLUSIVE, 1, skips only owner-NULL events: no scenario
// switch names that variant, so the runner never sets it.)
/// `svl_atomic.flags`: skip every `MMU_NOTIFY_EXCLUSIVE`, in both notifiers (svmkit's
/// `filter_ignores_owner`).
pub const SVL_SKIP_ANY_EXCLUSIVE: u32 = 2;
/// `svl_pass.what` bits.
pub const SVL_PASS_RETRIED: u32 = 1;
/// The callback called `mmu_interval_set_seq` during the pass.
pub const SVL_PASS_SEQ_SET: u32 = 2;
/// `make_device_exclusive_range()` gave no page.
pub const SVL_PASS_EINVAL: u32 = 4;
/// The pass mapped the page.
pub const SVL_PASS_MAPPED: u32 = 8;
/// Not a pass: the 1 s timeout had passed.
pub const SVL_PASS_TIMEOUT: u32 = 16;

/// `struct svl_pass` of `oracle/kernel/svmkit_loop.h`: eight `__u32`, 32 bytes.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SvlPass {
    /// `SVL_PASS_*` bits.
    pub what: u32,
    /// Interval callbacks during the pass: EXCLUSIVE with this device's owner.
    pub excl_own: u32,
    /// EXCLUSIVE with another device's owner.
    pub excl_other: u32,
    /// EXCLUSIVE with owner NULL (a restore).
    pub excl_null: u32,
    /// CLEAR.
    pub clear: u32,
    /// UNMAP.
    pub unmap: u32,
    /// PROTECTION_VMA.
    pub prot_vma: u32,
    /// Any other event.
    pub other: u32,
}

/// `struct svl_atomic` of `oracle/kernel/svmkit_loop.h`, 2096 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SvlAtomic {
    /// (in) the u64's address, 8-byte aligned.
    pub addr: u64,
    /// (in) what to add.
    pub delta: u64,
    /// (out) the value before.
    pub old: u64,
    /// (in) the pass bound, 1 to 64; also the bound of faults per atomic.
    pub max_passes: u32,
    /// (in) `SVL_SKIP_*`.
    pub flags: u32,
    /// (out) records in `passes`.
    pub npasses: u32,
    /// (out) device faults taken.
    pub nfaults: u32,
    /// (out) 0 or -errno.
    pub result: i32,
    /// (out) device mappings the whole-mm notifier dropped during the call.
    pub classic_clears: u32,
    /// (out) one record per pass.
    pub passes: [SvlPass; SVL_MAX_PASSES],
}

impl Default for SvlAtomic {
    fn default() -> Self {
        SvlAtomic {
            addr: 0,
            delta: 0,
            old: 0,
            max_passes: 1,
            flags: 0,
            npasses: 0,
            nfaults: 0,
            result: 0,
            classic_clears: 0,
            passes: [SvlPass::default(); SVL_MAX_PASSES],
        }
    }
}

/// `struct svl_query` of `oracle/kernel/svmkit_loop.h`, 24 bytes.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SvlQuery {
    /// (in) an address of the page.
    pub addr: u64,
    /// (out) the pfn the device maps there.
    pub pfn: u64,
    /// (out) 1 if the device maps the page.
    pub mapped: u32,
    /// (out) pages the device maps in all.
    pub npages: u32,
}

/// `SVL_IOC_ATOMIC`: `_IOWR('S', 0x01, struct svl_atomic)`.
pub const SVL_IOC_ATOMIC: Opcode = rustix::ioctl::opcode::read_write::<SvlAtomic>(b'S', 0x01);
/// `SVL_IOC_QUERY`: `_IOWR('S', 0x02, struct svl_query)`.
pub const SVL_IOC_QUERY: Opcode = rustix::ioctl::opcode::read_write::<SvlQuery>(b'S', 0x02);
const _: () = assert!(size_of::<SvlPass>() == 32);
const _: () = assert!(size_of::<SvlAtomic>() == 48 + 32 * SVL_MAX_PASSES);
const _: () = assert!(size_of::<SvlQuery>() == 24);
const _: () = assert!(SVL_IOC_ATOMIC == 0xc830_5301);

/// Opens `/dev/svmkit_loop` (each open is one device of the nouveau-style loop).
pub fn open_svmkit_loop() -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        "/dev/svmkit_loop",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(errno)
}

/// `SVL_IOC_ATOMIC`: `a` is filled in (its passes too) whether the call succeeds or
/// not; the error is the fault's (EBUSY, EINVAL).
pub fn svl_atomic(fd: &OwnedFd, a: &mut SvlAtomic) -> Result<(), Errno> {
    // SAFETY: SVL_IOC_ATOMIC's argument is a `struct svl_atomic`, whose layout SvlAtomic
    // has (sizes asserted above); the driver reads and writes only that struct, which
    // `a` borrows mutably for the call.
    unsafe { rustix::ioctl::ioctl(fd, Updater::<SVL_IOC_ATOMIC, SvlAtomic>::new(a)) }.map_err(errno)
}

/// `SVL_IOC_QUERY` of the page at `addr`.
pub fn svl_query(fd: &OwnedFd, addr: u64) -> Result<SvlQuery, Errno> {
    let mut q = SvlQuery {
        addr,
        ..Default::default()
    };
    // SAFETY: SVL_IOC_QUERY's argument is a `struct svl_query` (SvlQuery's layout,
    // size asserted above), read and written in place.
    unsafe { rustix::ioctl::ioctl(fd, Updater::<SVL_IOC_QUERY, SvlQuery>::new(&mut q)) }
        .map_err(errno)?;
    Ok(q)
}

/// `fork()`: `Ok(Some(pid))` in the parent, `Ok(None)` in the child.
///
/// The runner is single-threaded (it starts no thread and the static glibc starts
/// none), so the child is a faithful copy: no lock is held by a thread that does not
/// exist in it.
pub fn fork() -> Result<Option<i32>, Errno> {
    // SAFETY: fork takes no arguments; in a single-threaded process the child may go on
    // running ordinary Rust code (allocation, I/O), which it does.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// Waits for the child `pid` to end (`waitpid`); its exit status, or -1.
pub fn wait_child(pid: i32) -> i32 {
    let mut status = 0i32;
    // SAFETY: `status` is a live i32 the call writes; no other pointer is passed.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r == pid && libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

/// Ends this (forked) process at once with `code`: `_exit`, no atexit handlers and no
/// flush of the parent's buffered stdout copied into it.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes an int and does not return.
    unsafe { libc::_exit(code) }
}

/// Maps in every page of this process's own memory (text, data, heap, stack) except
/// the ranges in `skip` (the scenario's mappings), with `mlock` + `munlock` per VMA.
/// After a fork every private page of both processes is write-protected (COW) and the
/// child's file-backed text is not mapped at all, so without this the first step of
/// either side would count the runner's own faults. `mlock` of a private writable VMA
/// faults its pages in for writing, which breaks the COW sharing of the runner's
/// memory, never of a scenario mapping (skipped). Errors (`[vvar]`, `[vsyscall]`) are
/// ignored.
pub fn prefault_self(skip: &[(u64, u64)]) {
    for v in vmas() {
        if !(v.read || v.write) || skip.iter().any(|&(s, e)| s < v.end && v.start < e) {
            continue;
        }
        let (p, n) = (
            v.start as usize as *const c_void,
            (v.end - v.start) as usize,
        );
        // SAFETY: mlock and munlock change no memory contents; the range is a whole
        // VMA of this process read from /proc/self/maps just now.
        if unsafe { libc::mlock(p, n) } == 0 {
            // SAFETY: as above.
            unsafe { libc::munlock(p, n) };
        }
    }
}

// ------------------------------------------------------------------ userfaultfd (WP)

/// `struct uffdio_api` of `include/uapi/linux/userfaultfd.h`.
#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// `struct uffdio_range`.
#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

/// `struct uffdio_writeprotect`.
#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

const UFFDIO: u8 = 0xAA;
const UFFD_API: u64 = 0xAA;
const UFFDIO_API: Opcode = rustix::ioctl::opcode::read_write::<UffdioApi>(UFFDIO, 0x3F);
const UFFDIO_REGISTER: Opcode = rustix::ioctl::opcode::read_write::<UffdioRegister>(UFFDIO, 0x00);
const UFFDIO_WRITEPROTECT: Opcode =
    rustix::ioctl::opcode::read_write::<UffdioWriteprotect>(UFFDIO, 0x06);
/// A fault the registration would deliver raises SIGBUS instead of waiting for a
/// handler thread the runner does not have.
const UFFD_FEATURE_SIGBUS: u64 = 1 << 7;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;

// The numbers the uapi header gives on x86-64 (linux-raw-sys's ioctl.rs).
const _: () = assert!(UFFDIO_REGISTER == 0xc020_aa00);
const _: () = assert!(UFFDIO_WRITEPROTECT == 0xc018_aa06);
const _: () = assert!(UFFDIO_API == 0xc018_aa3f);

/// A userfaultfd of this process, for write-protect mode only.
#[derive(Debug)]
pub struct Uffd(OwnedFd);

impl Uffd {
    /// `userfaultfd(O_CLOEXEC | O_NONBLOCK)` and `UFFDIO_API` with
    /// `UFFD_FEATURE_SIGBUS`.
    pub fn open() -> Result<Uffd, Errno> {
        let flags = rustix::mm::UserfaultfdFlags::CLOEXEC | rustix::mm::UserfaultfdFlags::NONBLOCK;
        // SAFETY: userfaultfd creates a new descriptor and touches no memory; the
        // ranges it is later registered on are the runner's own mappings.
        let fd = unsafe { rustix::mm::userfaultfd(flags) }.map_err(errno)?;
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_SIGBUS,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API takes a struct uffdio_api, which UffdioApi lays out
        // (repr(C)); the kernel writes only that struct.
        unsafe { rustix::ioctl::ioctl(&fd, Updater::<UFFDIO_API, _>::new(&mut api)) }
            .map_err(errno)?;
        Ok(Uffd(fd))
    }

    /// `UFFDIO_REGISTER` of `[start, start + len)` in `UFFDIO_REGISTER_MODE_WP`.
    pub fn register_wp(&self, start: u64, len: u64) -> Result<(), Errno> {
        let mut reg = UffdioRegister {
            range: UffdioRange { start, len },
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_REGISTER takes a struct uffdio_register (repr(C)); it changes
        // only the registration of our own VMAs, no memory contents.
        unsafe { rustix::ioctl::ioctl(&self.0, Updater::<UFFDIO_REGISTER, _>::new(&mut reg)) }
            .map_err(errno)
    }

    /// `UFFDIO_WRITEPROTECT` of `[start, start + len)`, setting (`protect`) or
    /// clearing the protection.
    pub fn writeprotect(&self, start: u64, len: u64, protect: bool) -> Result<(), Errno> {
        let mut wp = UffdioWriteprotect {
            range: UffdioRange { start, len },
            mode: if protect {
                UFFDIO_WRITEPROTECT_MODE_WP
            } else {
                0
            },
        };
        // SAFETY: UFFDIO_WRITEPROTECT takes a struct uffdio_writeprotect (repr(C)); it
        // changes page protections of our own registered range, no contents.
        unsafe { rustix::ioctl::ioctl(&self.0, Updater::<UFFDIO_WRITEPROTECT, _>::new(&mut wp)) }
            .map_err(errno)
    }
}
