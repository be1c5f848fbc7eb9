//! Schedule exploration of get_user_pages racing munmap (run with
//! `cargo test -p svmkit --features shuttle shuttle`).
#![cfg(feature = "shuttle")]

use svmkit::Profile;
use svmkit::check::ExtraRefs;
use svmkit::mm::GupFlags;
use svmkit::sync::thread;
use svmkit::{Errno, Pfn};

mod common;
use common::sched::{THP_FRAMES, all_frames_free, explored, explored_system, map_thp};
use common::{BASE as H, P, checked_with, va};

#[test]
fn shuttle_gup_split_pmd_races_munmap_of_part_of_the_thp() {
    // A takes references on pages K..K+4 of a PMD-mapped THP with FOLL_SPLIT_PMD while
    // B unmaps page K+2 and C page K. GUP holds the mmap lock for read throughout and
    // munmap takes it for write, so each munmap is wholly before or after the GUP: it
    // sees all four pages, stops at the hole at K+2 (a short count of two), or fails
    // with EFAULT at the hole at K. Splits (GUP's, and each munmap's) may interleave
    // in any order; whatever GUP returns must be subpages of the same folio.
    const K: u64 = 10;
    explored(500, || {
        let sys = explored_system(Profile::linux_6_15(), THP_FRAMES);
        let mm = sys.create_mm().unwrap();
        map_thp(&mm);
        mm.write_u64(H, 1).unwrap();
        assert!(mm.pmd_is_huge(va(H)), "the first write made a THP");
        let head = mm.translate(va(H)).unwrap();
        let folio = sys.mem().page_folio(head).unwrap();
        assert_eq!((folio.head(), folio.order()), (head, 9));
        for i in 0..4 {
            mm.write_u64(H + (K + i) * P, 0x100 + i).unwrap();
        }
        assert!(mm.pmd_is_huge(va(H)), "writes to a THP do not split it");
        let gupper = {
            let mm = mm.clone();
            thread::spawn(move || {
                let mut guard = mm.mmap_read_lock();
                mm.get_user_pages(
                    &mut guard,
                    H + K * P,
                    4,
                    GupFlags::GET | GupFlags::SPLIT_PMD,
                )
            })
        };
        let unmapper = |page: u64| {
            let mm = mm.clone();
            thread::spawn(move || mm.munmap(H + page * P, P))
        };
        let (b, c) = (unmapper(K + 2), unmapper(K));
        let got = gupper.join().unwrap();
        assert_eq!(b.join().unwrap(), Ok(()));
        assert_eq!(c.join().unwrap(), Ok(()));
        let pfns: Vec<Pfn> = match got {
            Ok(pfns) => {
                assert!(
                    pfns.len() == 4 || pfns.len() == 2,
                    "GUP returned {} pages",
                    pfns.len()
                );
                pfns
            }
            Err(e) => {
                assert_eq!(e, Errno::EFAULT);
                Vec::new()
            }
        };
        // Each page is its subpage of the one folio, with what was written there.
        for (i, &pfn) in pfns.iter().enumerate() {
            let i = i as u64;
            assert_eq!(sys.mem().page_folio(pfn), Ok(folio));
            assert_eq!(pfn, Pfn::new(head.raw() + K + i));
            assert_eq!(sys.mem().read_u64(pfn, 0), Ok(0x100 + i));
        }
        assert!(!mm.pmd_is_huge(va(H)), "split");
        assert_eq!(mm.translate(va(H + K * P)), None);
        assert_eq!(mm.translate(va(H + (K + 2) * P)), None);
        assert_eq!(
            mm.translate(va(H + (K + 1) * P)),
            Some(Pfn::new(head.raw() + K + 1)),
            "still mapped, by a PTE"
        );
        assert_eq!(mm.read_u64(H).unwrap(), 1);
        let mut extra = ExtraRefs::new();
        if !pfns.is_empty() {
            extra.insert(folio, pfns.len() as i32);
        }
        checked_with(&sys, &extra);
        // The references keep the folio alive past the exit.
        drop(mm);
        checked_with(&sys, &extra);
        assert!(pfns.is_empty() || !sys.mem().is_free_frame(head));
        for &pfn in &pfns {
            sys.mem().put_page(pfn);
        }
        checked_with(&sys, &ExtraRefs::new());
        all_frames_free(&sys);
    });
}
