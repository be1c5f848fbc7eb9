//! One order's free list of the buddy allocator, as a bitmap of block numbers.
//!
//! Linux keeps a doubly-linked list per order (`free_area[order].free_list`). The
//! model wants the lowest free block first, so that allocation does not depend on
//! the order of frees and explored schedules replay exactly; a bitmap gives that, and
//! insert, remove and membership in a few instructions (the ordered set it replaces
//! cost a tree walk for each). A summary bitmap, one bit per non-empty word, bounds
//! the search for the lowest block to a scan of `blocks / 4096` words in the worst
//! case; the search starts at the lowest word that can be non-empty.

/// The free blocks of one order, by block number (`pfn >> order`).
#[derive(Debug, Default)]
pub(super) struct FreeList {
    /// Bit `b % 64` of word `b / 64`: block `b` is free.
    words: Vec<u64>,
    /// Bit `w % 64` of word `w / 64`: `words[w]` is not zero.
    summary: Vec<u64>,
    /// No summary word below this one has a bit set.
    first: usize,
    len: usize,
}

impl FreeList {
    /// An empty list for `blocks` blocks (zeroed memory: untouched parts cost nothing).
    pub(super) fn new(blocks: u64) -> Self {
        let words = (blocks as usize).div_ceil(64);
        FreeList {
            words: vec![0; words],
            summary: vec![0; words.div_ceil(64)],
            first: 0,
            len: 0,
        }
    }

    /// The number of free blocks.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether no block is free.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether block `b` is free.
    pub(super) fn contains(&self, b: u64) -> bool {
        let b = b as usize;
        self.words
            .get(b / 64)
            .is_some_and(|w| w & (1 << (b % 64)) != 0)
    }

    /// Marks block `b` free; false if it already was (or is out of range).
    pub(super) fn insert(&mut self, b: u64) -> bool {
        let b = b as usize;
        let Some(w) = self.words.get_mut(b / 64) else {
            return false;
        };
        let bit = 1 << (b % 64);
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        let wi = b / 64;
        self.summary[wi / 64] |= 1 << (wi % 64);
        self.first = self.first.min(wi / 64);
        self.len += 1;
        true
    }

    /// Takes block `b` off the list; false if it was not on it.
    pub(super) fn remove(&mut self, b: u64) -> bool {
        let b = b as usize;
        let Some(w) = self.words.get_mut(b / 64) else {
            return false;
        };
        let bit = 1 << (b % 64);
        if *w & bit == 0 {
            return false;
        }
        *w &= !bit;
        if *w == 0 {
            let wi = b / 64;
            self.summary[wi / 64] &= !(1 << (wi % 64));
        }
        self.len -= 1;
        true
    }

    /// Takes the lowest free block off the list.
    pub(super) fn pop_first(&mut self) -> Option<u64> {
        let b = self.first_block()?;
        self.remove(b);
        Some(b)
    }

    /// The lowest free block, advancing the search hint past empty summary words.
    fn first_block(&mut self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        while self.summary.get(self.first).is_some_and(|&s| s == 0) {
            self.first += 1;
        }
        let s = *self.summary.get(self.first)?;
        let wi = self.first * 64 + s.trailing_zeros() as usize;
        let w = self.words[wi];
        Some((wi * 64 + w.trailing_zeros() as usize) as u64)
    }

    /// The free blocks, lowest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                Some((wi * 64 + bit) as u64)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::FreeList;

    proptest! {
        /// The bitmap behaves as the ordered set it replaced, for any sequence of
        /// inserts, removes and pops.
        #[test]
        fn free_list_matches_an_ordered_set(ops in proptest::collection::vec((0u8..3, 0u64..5000), 0..400)) {
            let mut list = FreeList::new(5000);
            let mut set = BTreeSet::new();
            for (op, b) in ops {
                match op {
                    0 => prop_assert_eq!(list.insert(b), set.insert(b)),
                    1 => prop_assert_eq!(list.remove(b), set.remove(&b)),
                    _ => prop_assert_eq!(list.pop_first(), set.pop_first()),
                }
                prop_assert_eq!(list.len(), set.len());
                prop_assert_eq!(list.contains(b), set.contains(&b));
            }
            prop_assert!(list.iter().eq(set.iter().copied()));
        }
    }

    #[test]
    fn free_list_out_of_range_is_refused() {
        let mut list = FreeList::new(10);
        assert!(!list.insert(64));
        assert!(!list.remove(64));
        assert!(!list.contains(1 << 40));
        assert!(list.is_empty() && list.pop_first().is_none());
    }
}
