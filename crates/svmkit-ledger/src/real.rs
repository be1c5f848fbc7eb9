//! The real kernel's side of the ledger: the same operations as the model's side, on
//! this machine's Linux, with the methods of ../shared/reference/perf-anchors.md.
//!
//! Every function returns nanoseconds per unit (page, MiB or cycle) of one timed
//! batch; the caller interleaves batches with the model's and takes medians.
//!
//! Signal handlers are process-wide, so at most one [`SegvCycle`] and one
//! [`UffdCycle`] exist at a time (the constructors refuse a second one). A fault the
//! handlers do not own (outside their region) resets the signal to its default action
//! and returns, so the faulting access is retried and kills the process as it would
//! have without the ledger: a real crash stays a crash.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use nix::libc;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork};
use rustix::ioctl::{Opcode, Updater, ioctl, opcode};
use rustix::mm::{Advice, MapFlags, MprotectFlags, ProtFlags, UserfaultfdFlags};

/// The base page size the measurements use (x86-64's).
pub const PAGE: usize = 4096;
const RW: MprotectFlags = MprotectFlags::READ.union(MprotectFlags::WRITE);

fn ns_since(t: Instant) -> f64 {
    t.elapsed().as_nanos() as f64
}

/// A mapping of this process, unmapped when dropped.
#[derive(Debug)]
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// `len` bytes of private anonymous read-write memory, 4 KiB-mapped
    /// (`MADV_NOHUGEPAGE`: the anchors measure 4 KiB faults; THP would turn 512 of
    /// them into one).
    pub fn anon(len: usize) -> io::Result<Mapping> {
        // SAFETY: a new anonymous mapping at an address the kernel picks overlaps no
        // memory Rust knows about.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }?;
        let m = Mapping { ptr: p.cast(), len };
        m.advise(0, len, Advice::LinuxNoHugepage)?;
        Ok(m)
    }

    /// `len` bytes of `fd` from offset 0, shared, read-write.
    fn shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        // SAFETY: as in `anon`; the file is a memfd only this module maps.
        let p = unsafe {
            rustix::mm::mmap(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }?;
        Ok(Mapping { ptr: p.cast(), len })
    }

    /// Number of 4 KiB pages.
    pub fn pages(&self) -> usize {
        self.len / PAGE
    }

    fn page_ptr(&self, i: usize) -> *mut u8 {
        assert!(i < self.pages(), "page {i} outside the mapping");
        self.ptr.wrapping_add(i * PAGE)
    }

    /// Writes `v` to the first byte of page `i` (a CPU store that may fault).
    pub fn write(&self, i: usize, v: u8) {
        let p = self.page_ptr(i);
        // SAFETY: `p` is inside this mapping, which no Rust reference covers (it is
        // only ever accessed through these volatile byte accesses). If the page is
        // inaccessible the store faults and one of this module's handlers makes it
        // accessible before the store is retried.
        unsafe { ptr::write_volatile(p, v) }
    }

    /// Reads the first byte of page `i`.
    pub fn read(&self, i: usize) -> u8 {
        let p = self.page_ptr(i);
        // SAFETY: as in `write`.
        unsafe { ptr::read_volatile(p) }
    }

    /// Writes every page once.
    pub fn touch_all(&self, v: u8) {
        for i in 0..self.pages() {
            self.write(i, v);
        }
    }

    fn advise(&self, off: usize, len: usize, advice: Advice) -> io::Result<()> {
        assert!(off + len <= self.len);
        // SAFETY: the range is inside this mapping, and no Rust reference points into
        // it, so dropping or re-protecting its pages invalidates nothing Rust holds.
        unsafe { rustix::mm::madvise(self.ptr.wrapping_add(off).cast(), len, advice) }?;
        Ok(())
    }

    fn protect(&self, off: usize, len: usize, flags: MprotectFlags) -> io::Result<()> {
        assert!(off + len <= self.len);
        // SAFETY: as in `advise`.
        unsafe { rustix::mm::mprotect(self.ptr.wrapping_add(off).cast(), len, flags) }?;
        Ok(())
    }

    fn range(&self) -> (usize, usize) {
        (self.ptr as usize, self.ptr as usize + self.len)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is this struct's own and nothing points into it any more.
        let _ = unsafe { rustix::mm::munmap(self.ptr.cast(), self.len) };
    }
}

/// First-touch write faults: mmap `pages` pages, write one byte per page, munmap;
/// nanoseconds per page.
pub fn first_touch(pages: usize) -> io::Result<f64> {
    let t = Instant::now();
    let m = Mapping::anon(pages * PAGE)?;
    m.touch_all(1);
    drop(m);
    Ok(ns_since(t) / pages as f64)
}

/// `mprotect(PROT_NONE)` then `mprotect(RW)`, one call each over a whole touched
/// region (perf-anchors.md (c), "mprotect of a 64 MiB range").
#[derive(Debug)]
pub struct MprotectRange {
    m: Mapping,
}

impl MprotectRange {
    /// A touched region of `len` bytes.
    pub fn new(len: usize) -> io::Result<Self> {
        let m = Mapping::anon(len)?;
        m.touch_all(1);
        Ok(MprotectRange { m })
    }

    /// One NONE + RW pair; nanoseconds per page.
    pub fn sample(&self) -> io::Result<f64> {
        let t = Instant::now();
        self.m.protect(0, self.m.len, MprotectFlags::empty())?;
        self.m.protect(0, self.m.len, RW)?;
        Ok(ns_since(t) / self.m.pages() as f64)
    }
}

/// `fork()` of this process, timed in the parent until fork returns; the child
/// `_exit`s at once and is reaped outside the timing (perf-anchors.md (g)).
pub fn fork_once() -> io::Result<f64> {
    let t = Instant::now();
    // SAFETY: the child calls only `_exit`, which is async-signal-safe, so forking a
    // process whatever its threads hold is sound.
    match unsafe { fork() }? {
        ForkResult::Child => {
            // SAFETY: `_exit` ends the child without running any of the parent's
            // atexit handlers or destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            let d = ns_since(t);
            waitpid(child, None)?;
            Ok(d)
        }
    }
}

/// fork of this process with a touched region, against the same fork with the region
/// excluded (`MADV_DONTFORK`): the difference is what the region costs, whatever else
/// the process holds (the ledger's process also holds the model's memory, which every
/// fork copies too).
#[derive(Debug)]
pub struct Fork {
    m: Mapping,
}

impl Fork {
    /// A touched region of `len` bytes.
    pub fn new(len: usize) -> io::Result<Self> {
        let m = Mapping::anon(len)?;
        m.touch_all(1);
        Ok(Fork { m })
    }

    /// One fork with the region, then one without: (nanoseconds with, without).
    pub fn sample(&self) -> io::Result<(f64, f64)> {
        let with = fork_once()?;
        self.m.advise(0, self.m.len, Advice::LinuxDontFork)?;
        let without = fork_once();
        self.m.advise(0, self.m.len, Advice::LinuxDoFork)?;
        Ok((with, without?))
    }

    /// The region's size in MiB.
    pub fn mib(&self) -> f64 {
        self.m.len as f64 / (1 << 20) as f64
    }
}

/// A small helper process that holds a touched region and forks on request, so that
/// a fork measures a process of that region and (almost) nothing else: a fork of the
/// ledger's own process also copies the page tables of every model it holds (hundreds
/// of MiB), which drowned the region's cost in the first ledger runs.
///
/// Spawn servers first thing in `main`, while the ledger's process is small. The
/// server's loop only makes syscalls into stack buffers (no allocation on its success
/// path), so it is sound to spawn from a multi-threaded process too.
#[derive(Debug)]
pub struct ForkServer {
    to: OwnedFd,
    from: OwnedFd,
    child: nix::unistd::Pid,
    mib: f64,
}

impl ForkServer {
    /// A server process holding `len` touched bytes.
    pub fn spawn(len: usize) -> io::Result<Self> {
        let (cmd_r, cmd_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let (rep_r, rep_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        // SAFETY: the child runs `serve`, which only makes syscalls and writes to
        // stack buffers, then `_exit`s: nothing it calls can depend on a lock another
        // thread of the parent held at fork.
        match unsafe { fork() }? {
            ForkResult::Child => {
                drop((cmd_w, rep_r));
                serve(len, &cmd_r, &rep_w);
                // SAFETY: ends the child without running the parent's destructors.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => {
                drop((cmd_r, rep_w));
                let server = ForkServer {
                    to: cmd_w,
                    from: rep_r,
                    child,
                    mib: len as f64 / (1 << 20) as f64,
                };
                // The first reply says whether the region could be mapped.
                server.reply()?;
                Ok(server)
            }
        }
    }

    fn reply(&self) -> io::Result<(f64, f64)> {
        let mut buf = [0u8; 16];
        rustix::io::read(&self.from, &mut buf[..]).and_then(|n| {
            if n == 16 {
                Ok(())
            } else {
                Err(rustix::io::Errno::PIPE)
            }
        })?;
        let with = f64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
        let without = f64::from_le_bytes(buf[8..].try_into().expect("8 bytes"));
        if with.is_nan() || without.is_nan() {
            return Err(io::Error::other("the fork server failed"));
        }
        Ok((with, without))
    }

    /// One fork of the server with its region, then one with the region excluded
    /// (`MADV_DONTFORK`): (nanoseconds with, without).
    pub fn sample(&self) -> io::Result<(f64, f64)> {
        rustix::io::write(&self.to, &[1u8])?;
        self.reply()
    }

    /// The region's size in MiB.
    pub fn mib(&self) -> f64 {
        self.mib
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        // Command 0 (or the pipe closing) ends the server.
        let _ = rustix::io::write(&self.to, &[0u8]);
        let _ = waitpid(self.child, None);
    }
}

fn send(rep: &OwnedFd, with: f64, without: f64) -> bool {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&with.to_le_bytes());
    buf[8..].copy_from_slice(&without.to_le_bytes());
    rustix::io::write(rep, &buf).is_ok()
}

/// The fork server's loop: map and touch, report, then one sample per command byte 1.
fn serve(len: usize, cmd: &OwnedFd, rep: &OwnedFd) {
    let fork = match Fork::new(len) {
        Ok(f) => f,
        Err(_) => {
            send(rep, f64::NAN, f64::NAN);
            return;
        }
    };
    if !send(rep, 0.0, 0.0) {
        return;
    }
    let mut c = [0u8; 1];
    while let Ok(1) = rustix::io::read(cmd, &mut c[..]) {
        if c[0] != 1 {
            return;
        }
        let (w, wo) = fork.sample().unwrap_or((f64::NAN, f64::NAN));
        if !send(rep, w, wo) {
            return;
        }
    }
}

/// The number of threads of this process (`Threads:` of /proc/self/status).
pub fn threads() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: in /proc/self/status"))
}

/// Runs `f` in a forked child and returns its figures: a measurement of a process's
/// memory (peak RSS) then starts from a fresh copy of this process's heap, rather
/// than from memory the allocator kept resident after an earlier measurement freed
/// it (which hid half of what a model touched in the first runs). `f` returns `None`
/// for a failure. Refused unless this process has one thread: the child allocates,
/// which is only sound when no other thread can have held the allocator's lock at
/// fork.
pub fn in_child<const N: usize>(f: impl FnOnce() -> Option<[f64; N]>) -> io::Result<[f64; N]> {
    if threads()? != 1 {
        return Err(io::Error::other("in_child needs a single-threaded process"));
    }
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: this process has one thread (checked above), so the child inherits no
    // lock some other thread held, and may allocate; it ends with `_exit`.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(r);
            let out = f();
            let mut ok = out.is_some();
            for v in out.unwrap_or([f64::NAN; N]) {
                ok &= rustix::io::write(&w, &v.to_le_bytes()).is_ok();
            }
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut out = [0.0; N];
            let mut buf = [0u8; 8];
            for v in &mut out {
                let mut got = 0;
                while got < 8 {
                    match rustix::io::read(&r, &mut buf[got..]) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) => {
                            let _ = waitpid(child, None);
                            return Err(e.into());
                        }
                    }
                }
                if got < 8 {
                    let _ = waitpid(child, None);
                    return Err(io::Error::other("the child failed"));
                }
                *v = f64::from_le_bytes(buf);
            }
            waitpid(child, None)?;
            if out.iter().any(|v| v.is_nan()) {
                return Err(io::Error::other("the child failed"));
            }
            Ok(out)
        }
    }
}

/// `MADV_DONTNEED`, one call per 4 KiB page, over a region touched again before each
/// batch (outside the timing).
#[derive(Debug)]
pub struct DontneedPerPage {
    m: Mapping,
}

impl DontneedPerPage {
    /// A region of `pages` pages.
    pub fn new(pages: usize) -> io::Result<Self> {
        Ok(DontneedPerPage {
            m: Mapping::anon(pages * PAGE)?,
        })
    }

    /// Touches every page, then times the per-page calls; nanoseconds per page.
    pub fn sample(&self) -> io::Result<f64> {
        self.m.touch_all(1);
        let t = Instant::now();
        for i in 0..self.m.pages() {
            self.m.advise(i * PAGE, PAGE, Advice::LinuxDontNeed)?;
        }
        Ok(ns_since(t) / self.m.pages() as f64)
    }
}

// ------------------------------------------------------------------ signal handlers

/// A handler installed for one signal; the previous action comes back on drop.
struct Installed {
    sig: Signal,
    old: SigAction,
    busy: &'static AtomicBool,
}

impl std::fmt::Debug for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installed").field("sig", &self.sig).finish()
    }
}

type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void);

fn install(sig: Signal, handler: Handler, busy: &'static AtomicBool) -> io::Result<Installed> {
    if busy.swap(true, Ordering::AcqRel) {
        return Err(io::Error::other(format!(
            "a {sig} handler is already installed"
        )));
    }
    let action = SigAction::new(
        SigHandler::SigAction(handler),
        SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    // SAFETY: the handler only reads atomics, makes syscalls through rustix's raw
    // syscall layer and updates atomics: it is async-signal-safe.
    match unsafe { sigaction(sig, &action) } {
        Ok(old) => Ok(Installed { sig, old, busy }),
        Err(e) => {
            busy.store(false, Ordering::Release);
            Err(e.into())
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        // SAFETY: puts back the action that was there before (std's own handler or the
        // default), which was valid then and is still.
        let _ = unsafe { sigaction(self.sig, &self.old) };
        self.busy.store(false, Ordering::Release);
    }
}

/// From inside a handler, for a fault it does not own: back to the default action,
/// so that the retried access ends the process as it would have without the ledger.
fn give_up(sig: Signal) {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_DFL runs no code of ours; rt_sigaction is
    // async-signal-safe.
    let _ = unsafe { sigaction(sig, &dfl) };
}

fn fault_addr(info: *mut libc::siginfo_t) -> usize {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler, and for
    // SIGSEGV/SIGBUS its si_addr field is the faulting address.
    unsafe { (*info).si_addr() as usize }
}

static SEGV_BUSY: AtomicBool = AtomicBool::new(false);
static SEGV_START: AtomicUsize = AtomicUsize::new(0);
static SEGV_END: AtomicUsize = AtomicUsize::new(0);
static SEGV_HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_segv(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut c_void) {
    let addr = fault_addr(info);
    if addr < SEGV_START.load(Ordering::Acquire) || addr >= SEGV_END.load(Ordering::Acquire) {
        return give_up(Signal::SIGSEGV);
    }
    let page = addr & !(PAGE - 1);
    // SAFETY: the page is inside the SegvCycle's own mapping (checked above), which no
    // Rust reference covers; making it writable again invalidates nothing.
    if unsafe { rustix::mm::mprotect(page as *mut c_void, PAGE, RW) }.is_err() {
        return give_up(Signal::SIGSEGV);
    }
    SEGV_HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// The mprotect + SIGSEGV cycle (perf-anchors.md (d3)): `mprotect(PROT_NONE)` one
/// page (the revoke), a CPU write faults, the SIGSEGV handler `mprotect(RW)`s the page
/// (the restore) and the write is retried.
#[derive(Debug)]
pub struct SegvCycle {
    // Declared first so that the handler goes before the mapping does.
    _handler: Installed,
    m: Mapping,
}

impl SegvCycle {
    /// A touched region of `pages` pages and the handler over it.
    pub fn new(pages: usize) -> io::Result<Self> {
        let m = Mapping::anon(pages * PAGE)?;
        m.touch_all(1);
        let (start, end) = m.range();
        SEGV_START.store(start, Ordering::Release);
        SEGV_END.store(end, Ordering::Release);
        let handler = install(Signal::SIGSEGV, on_segv, &SEGV_BUSY)?;
        Ok(SegvCycle {
            _handler: handler,
            m,
        })
    }

    /// One cycle per page; nanoseconds per cycle. Fails if the handler did not run
    /// once per cycle.
    pub fn sample(&self) -> io::Result<f64> {
        let before = SEGV_HANDLED.load(Ordering::Relaxed);
        let t = Instant::now();
        for i in 0..self.m.pages() {
            self.m.protect(i * PAGE, PAGE, MprotectFlags::empty())?;
            self.m.write(i, 2);
        }
        let d = ns_since(t);
        check_handled(
            "SIGSEGV",
            SEGV_HANDLED.load(Ordering::Relaxed) - before,
            self.m.pages(),
        )?;
        Ok(d / self.m.pages() as f64)
    }
}

fn check_handled(what: &str, handled: u64, pages: usize) -> io::Result<()> {
    if handled == pages as u64 {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what}: {handled} faults handled for {pages} cycles"
        )))
    }
}

// ------------------------------------------------------------------ userfaultfd

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioContinue {
    range: UffdioRange,
    mode: u64,
    mapped: i64,
}

// include/uapi/linux/userfaultfd.h
const UFFDIO: u8 = 0xAA;
const UFFD_API: u64 = 0xAA;
const UFFDIO_API: Opcode = opcode::read_write::<UffdioApi>(UFFDIO, 0x3F);
const UFFDIO_REGISTER: Opcode = opcode::read_write::<UffdioRegister>(UFFDIO, 0x00);
const UFFDIO_CONTINUE: Opcode = opcode::read_write::<UffdioContinue>(UFFDIO, 0x07);
const UFFD_FEATURE_SIGBUS: u64 = 1 << 7;
const UFFD_FEATURE_MINOR_SHMEM: u64 = 1 << 10;
const UFFDIO_REGISTER_MODE_MINOR: u64 = 1 << 2;
const UFFD_USER_MODE_ONLY: u32 = 1;

static BUS_BUSY: AtomicBool = AtomicBool::new(false);
static BUS_START: AtomicUsize = AtomicUsize::new(0);
static BUS_END: AtomicUsize = AtomicUsize::new(0);
static BUS_FD: AtomicI32 = AtomicI32::new(-1);
static BUS_HANDLED: AtomicU64 = AtomicU64::new(0);
/// Stands for the driver's notifier step between the fault and the restore.
static NOTIFIED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_bus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut c_void) {
    let addr = fault_addr(info);
    if addr < BUS_START.load(Ordering::Acquire) || addr >= BUS_END.load(Ordering::Acquire) {
        return give_up(Signal::SIGBUS);
    }
    // The notifier step: a device would drop its atomic mapping here.
    NOTIFIED.fetch_add(1, Ordering::Relaxed);
    let page = (addr & !(PAGE - 1)) as u64;
    let mut cont = UffdioContinue {
        range: UffdioRange {
            start: page,
            len: PAGE as u64,
        },
        mode: 0,
        mapped: 0,
    };
    // SAFETY: BUS_FD is the UffdCycle's userfaultfd, which stays open while this
    // handler is installed (the handler is dropped first).
    let fd = unsafe { BorrowedFd::borrow_raw(BUS_FD.load(Ordering::Acquire)) };
    // SAFETY: UFFDIO_CONTINUE takes a struct uffdio_continue, which UffdioContinue
    // lays out (repr(C)); rustix issues the raw syscall, async-signal-safe.
    let r = unsafe { ioctl(fd, Updater::<UFFDIO_CONTINUE, _>::new(&mut cont)) };
    match r {
        // EEXIST: already mapped (no thread waits in SIGBUS mode, so no UFFDIO_WAKE).
        Ok(()) | Err(rustix::io::Errno::EXIST) => {
            BUS_HANDLED.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => give_up(Signal::SIGBUS),
    }
}

fn open_userfaultfd() -> io::Result<OwnedFd> {
    let flags = UserfaultfdFlags::CLOEXEC | UserfaultfdFlags::NONBLOCK;
    // perf-anchors.md §4.2: user-mode-only works unprivileged; plain needs
    // CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1.
    // SAFETY: userfaultfd creates a new descriptor and touches no memory.
    match unsafe {
        rustix::mm::userfaultfd(flags | UserfaultfdFlags::from_bits_retain(UFFD_USER_MODE_ONLY))
    } {
        Ok(fd) => Ok(fd),
        // SAFETY: as above.
        Err(_) => Ok(unsafe { rustix::mm::userfaultfd(flags) }?),
    }
}

/// The userfaultfd MINOR + SIGBUS cycle (perf-anchors.md (e), the physical limit): a
/// memfd mapped twice, the CPU view registered MINOR with `UFFD_FEATURE_SIGBUS`, the
/// device alias never registered. Revoke = `MADV_DONTNEED` of one page of the CPU
/// view; a CPU write raises SIGBUS in the writing thread; the handler runs the
/// notifier step and `UFFDIO_CONTINUE`, and the write is retried.
#[derive(Debug)]
pub struct UffdCycle {
    // Declared first so that the handler goes before the fd and the mappings do.
    _handler: Installed,
    cpu: Mapping,
    _alias: Mapping,
    _uffd: OwnedFd,
    _memfd: OwnedFd,
}

impl UffdCycle {
    /// `pages` pages of shared memory, populated through the alias; fails (with the
    /// kernel's reason) if userfaultfd, its MINOR_SHMEM or SIGBUS feature, or the
    /// registration is refused.
    pub fn new(pages: usize) -> io::Result<Self> {
        let len = pages * PAGE;
        let uffd = open_userfaultfd()?;
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_SIGBUS | UFFD_FEATURE_MINOR_SHMEM,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API takes a struct uffdio_api (UffdioApi, repr(C)).
        unsafe { ioctl(uffd.as_fd(), Updater::<UFFDIO_API, _>::new(&mut api)) }?;
        let memfd = rustix::fs::memfd_create("svmkit-ledger", rustix::fs::MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&memfd, len as u64)?;
        let cpu = Mapping::shared(memfd.as_fd(), len)?;
        let alias = Mapping::shared(memfd.as_fd(), len)?;
        // Populate the page cache through the alias: the CPU view's faults are then
        // MINOR (page present in the cache, not mapped).
        alias.touch_all(7);
        let (start, end) = cpu.range();
        let mut reg = UffdioRegister {
            range: UffdioRange {
                start: start as u64,
                len: len as u64,
            },
            mode: UFFDIO_REGISTER_MODE_MINOR,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_REGISTER takes a struct uffdio_register (repr(C)); the range
        // is our own mapping.
        unsafe { ioctl(uffd.as_fd(), Updater::<UFFDIO_REGISTER, _>::new(&mut reg)) }?;
        BUS_START.store(start, Ordering::Release);
        BUS_END.store(end, Ordering::Release);
        BUS_FD.store(uffd.as_raw_fd(), Ordering::Release);
        let handler = install(Signal::SIGBUS, on_bus, &BUS_BUSY)?;
        let cycle = UffdCycle {
            _handler: handler,
            cpu,
            _alias: alias,
            _uffd: uffd,
            _memfd: memfd,
        };
        // Integrity, once: the CPU view (faulting in through the handler) sees what
        // the alias wrote.
        if cycle.cpu.read(0) != 7 {
            return Err(io::Error::other(
                "the CPU view does not see the alias's data",
            ));
        }
        Ok(cycle)
    }

    /// One cycle per page; nanoseconds per cycle. Fails if the handler did not run
    /// once per cycle.
    pub fn sample(&self) -> io::Result<f64> {
        let before = BUS_HANDLED.load(Ordering::Relaxed);
        let t = Instant::now();
        for i in 0..self.cpu.pages() {
            self.cpu.advise(i * PAGE, PAGE, Advice::LinuxDontNeed)?;
            self.cpu.write(i, 3);
        }
        let d = ns_since(t);
        check_handled(
            "SIGBUS",
            BUS_HANDLED.load(Ordering::Relaxed) - before,
            self.cpu.pages(),
        )?;
        Ok(d / self.cpu.pages() as f64)
    }
}

/// Pins the calling thread to the CPU it runs on, so that both sides of every row run
/// on one CPU (perf-anchors.md pins its measuring thread too). Best effort.
pub fn pin_to_current_cpu() -> usize {
    let cpu = rustix::thread::sched_getcpu();
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    let _ = rustix::thread::sched_setaffinity(None, &set);
    cpu
}

/// Peak resident set size of this process, in bytes (`VmHWM`), and the current one
/// (`VmRSS`).
pub fn rss() -> io::Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> io::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| io::Error::other(format!("no {name} in /proc/self/status")))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// Resets the peak RSS to the current RSS (`echo 5 > /proc/self/clear_refs`, Linux
/// 4.0+), so that the next [`rss`] peak covers only what follows.
pub fn reset_peak_rss() -> io::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")
}
