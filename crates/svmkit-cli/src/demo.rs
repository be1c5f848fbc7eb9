//! `svmkit demo`: a narrated tour of what the model can do so far.
//!
//! Every number printed is read back from the model, not written into the text.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use svmkit::device::hmm_tests::{self, HMM_NPAGES, HmmSelftest};
use svmkit::mm::mmu_notifier::{MmuNotifierEvent, Owner, RecordingNotifier};
use svmkit::mm::{
    Gfp, MAX_PAGE_ORDER, MapFlags, MmUser, PhysMem, PhysMemConfig, Prot, Pte, PteFlags,
};
use svmkit::sync::{Arc, MmapLock, thread};
use svmkit::task::Task;
use svmkit::{Errno, PAGE_SIZE, System, SystemConfig, VirtAddr};

/// Runs the tour on a memory of `frames` frames, printing to `out`.
pub(crate) fn run(out: &mut dyn Write, frames: u64) -> Result<()> {
    if svmkit::sync::IS_SHUTTLE {
        bail!("the demo runs on OS threads; build svmkit-cli without the `shuttle` feature");
    }
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
    writeln!(out)?;
    address_space_tour(out, frames)
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
fn address_space_tour(out: &mut dyn Write, frames: u64) -> Result<()> {
    let sys = System::new(SystemConfig::with_frames(frames))?;
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
    let verdict = match sys.check() {
        Ok(()) => "all invariants hold".to_string(),
        Err(e) => e.to_string(),
    };
    writeln!(
        out,
        "15. process exit; checker: {verdict}; free frames {} of {}",
        sys.mem().nr_free_pages(),
        sys.mem().nr_usable_pages()
    )?;
    writeln!(out)?;
    fork_tour(out, frames)
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
fn fork_tour(out: &mut dyn Write, frames: u64) -> Result<()> {
    let sys = System::new(SystemConfig::with_frames(frames))?;
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
    let verdict = match sys.check() {
        Ok(()) => "all invariants hold".to_string(),
        Err(e) => e.to_string(),
    };
    writeln!(
        out,
        "    checker: {verdict}; free frames {} of {}",
        sys.mem().nr_free_pages(),
        sys.mem().nr_usable_pages()
    )?;
    writeln!(out)?;
    exclusive_tour(out, frames)
}

/// The device-exclusive half of the tour (the 6.15 design): a driver makes a page
/// exclusive inside its read section, filters its own event, and the CPU takes the
/// page back.
fn exclusive_tour(out: &mut dyn Write, frames: u64) -> Result<()> {
    let sys = System::new(SystemConfig::with_frames(frames))?;
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
        "    that Clear revokes the device: a read section begun before it must retry: {}",
        sub.read_retry(seq)
    )?;
    sub.remove()?;
    drop(sub);
    drop(mm);
    let verdict = match sys.check() {
        Ok(()) => "all invariants hold".to_string(),
        Err(e) => e.to_string(),
    };
    writeln!(
        out,
        "24. exit; checker: {verdict}; free frames {} of {}",
        sys.mem().nr_free_pages(),
        sys.mem().nr_usable_pages()
    )?;
    writeln!(out)?;
    selftests_tour(out)
}

/// Runs the ports of Linux's hmm selftests for exclusive access over dmirror, plain
/// and on a THP-backed buffer, and prints each verdict.
fn selftests_tour(out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "svmkit demo: Linux's hmm selftests for exclusive access, over dmirror ({} pages)",
        HMM_NPAGES
    )?;
    writeln!(out)?;
    let config = SystemConfig::with_frames(4 * HMM_NPAGES + 2048);
    let mut n = 25;
    for test in HmmSelftest::ALL {
        for thp in [false, true] {
            let label = format!("{test}{}", if thp { " (THP buffer)" } else { "" });
            match hmm_tests::run(test, config, thp) {
                Ok(summary) => writeln!(out, "{n}. [ OK ] {label}: {summary}")?,
                Err(e) => writeln!(out, "{n}. [FAIL] {label}: {e}")?,
            }
            n += 1;
        }
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
    #[test]
    fn demo_tour_prints_values_read_from_the_model() {
        let mut out = Vec::new();
        super::run(&mut out, 1024).unwrap();
        let text = String::from_utf8(out).unwrap();
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
        assert!(text.contains("MMU_NOTIFY_EXCLUSIVE"), "{text}");
        assert_eq!(text.matches("[ OK ]").count(), 6, "{text}");
        assert!(!text.contains("[FAIL]"), "{text}");
    }
}
