//! How a step reads in `svmkit run`'s account. The model's world and the guest
//! runner on a real kernel both write it from here, so that their accounts match
//! byte for byte.

use crate::ast::*;

/// The step `op` as `svmkit run` writes it; `resolve` gives an address's value where
/// it is known (a named mapping's is written beside its name).
pub fn describe(sc: &Scenario, op: &Op, resolve: impl Fn(&Addr) -> Option<u64>) -> String {
    let a = |a: &Addr| match resolve(a) {
        Some(v) if a.map.is_some() => format!("{} ({v:#x})", a.text),
        _ => a.text.clone(),
    };
    match op {
        Op::Read { at } => format!("read {}", a(at)),
        Op::Write { at, value } => format!("write {} = {value}", a(at)),
        Op::FetchAdd { at, value } => format!("fetch_add {} += {value}", a(at)),
        Op::Mmap { map } => format!("mmap {}", sc.maps[*map].name),
        Op::Munmap { at, len } => format!("munmap {} len {len:#x}", a(at)),
        Op::Mprotect { at, len, prot } => format!("mprotect {} len {len:#x} {prot:?}", a(at)),
        Op::Mremap {
            at,
            len,
            new_len,
            to,
            flags,
        } => format!(
            "mremap {} len {len:#x} new_len {new_len:#x}{} {flags:?}",
            a(at),
            to.as_ref()
                .map(|t| format!(" to {}", a(t)))
                .unwrap_or_default()
        ),

        Op::Madvise { at, len, advice } => format!("madvise {} len {len:#x} {advice:?}", a(at)),
        Op::Mlock { at, len, onfault } => format!(
            "mlock {} len {len:#x}{}",
            a(at),
            if *onfault { " onfault" } else { "" }
        ),
        Op::Munlock { at, len } => format!("munlock {} len {len:#x}", a(at)),
        Op::NumaScan { at, len } => format!("numa_scan {} len {len:#x}", a(at)),
        Op::NrMlock => "read NR_MLOCK".into(),
        Op::KsmScan => "ksm scan".into(),
        Op::Fork { child } => format!("fork -> {}", sc.processes[*child].name),
        Op::Exit { process } => format!("exit {}", sc.processes[*process].name),
        Op::ClearSoftDirty => "clear_refs soft-dirty".into(),
        Op::Khugepaged => "khugepaged scan".into(),
        Op::UffdWp { at, len, protect } => format!("uffd_wp {} len {len:#x} {protect}", a(at)),
        Op::MakeExclusive { at, hold } => format!(
            "make_device_exclusive {}{}",
            a(at),
            hold.as_ref()
                .map_or(String::new(), |h| format!(" hold {h}"))
        ),
        Op::MakeExclusiveRange { at, pages } => {
            format!("make_device_exclusive_range {} pages {pages}", a(at))
        }
        Op::Kill { thread } => format!("kill {} (SIGKILL)", sc.threads[*thread].name),
        Op::Release { guard } => format!("release {guard}"),
        Op::Gup {
            at,
            pages,
            pin,
            write,
            hold,
        } => format!(
            "{} {} pages {pages}{} hold {hold}",
            if *pin {
                "pin_user_pages"
            } else {
                "get_user_pages"
            },
            a(at),
            if *write { " write" } else { "" }
        ),
        Op::Unpin { hold } => format!("unpin {hold}"),
        Op::AtomicAdd { at, value } => format!("device atomic {} += {value}", a(at)),
        Op::Dmirror {
            cmd,
            at,
            pages,
            value,
        } => format!(
            "dmirror {} {} pages {pages}{}",
            match cmd {
                DmirrorCmd::Read => "READ",
                DmirrorCmd::Write => "WRITE",
                DmirrorCmd::Exclusive => "EXCLUSIVE",
                DmirrorCmd::CheckExclusive => "CHECK_EXCLUSIVE",
            },
            a(at),
            if matches!(cmd, DmirrorCmd::Write) {
                format!(" = {value}")
            } else {
                String::new()
            }
        ),
        Op::Reclaim { pages } => format!("reclaim up to {pages} pages"),
        Op::ReclaimFolio { at } => format!("reclaim folio at {}", a(at)),
        Op::Migrate { at } => format!("migrate folio at {}", a(at)),
        Op::Fill { at, pages, value } => {
            format!("fill {} pages {pages} with {value} + i", a(at))
        }
        Op::Compare { at, pages, value } => {
            format!("compare {} pages {pages} with {value} + i", a(at))
        }
        Op::Touch { at, pages, value } => {
            format!("touch {} pages {pages} with {value}", a(at))
        }
    }
}
