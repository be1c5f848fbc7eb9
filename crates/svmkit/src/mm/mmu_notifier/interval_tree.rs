//! An augmented interval tree: the per-mm tree of interval notifiers.
//!
//! Linux keeps every `struct mmu_interval_notifier` of an mm in an interval tree
//! (`mmu_notifier_subscriptions::itree` in mm/mmu_notifier.c, built on
//! include/linux/interval_tree_generic.h) so that an invalidation of `[start, end)`
//! only visits the notifiers whose range it touches, instead of every notifier the
//! mm has. This module is the model's own implementation of that structure, with
//! the same semantics:
//!
//! - intervals are closed, `[start, last]`, `last` inclusive (Linux stores
//!   `end - 1` so a range ending at the top of the address space is representable);
//! - any number of intervals may share the same range;
//! - an overlap query costs O(log n + k) for k results, because every node carries
//!   the largest `last` of its subtree and whole subtrees that end before the query
//!   are skipped.
//!
//! It is an AVL tree kept in an arena (a `Vec` of slots with a free list), so it is
//! entirely safe Rust and entirely deterministic: the shape of the tree depends only
//! on the sequence of operations, never on addresses, hashing or randomness, which
//! keeps schedule exploration reproducible.
//!
//! Nodes are ordered by `(start, insertion order)`. Linux orders by `start` only and
//! sends equal starts to the right, which also yields insertion order among equal
//! starts; the explicit sequence number additionally makes every key unique, so a
//! node can be found again from its handle without parent pointers.

use std::fmt;
use std::iter::FusedIterator;

/// Index value meaning "no node" in child links.
const NIL: u32 = u32::MAX;

/// Handle of one inserted interval (stable until it is removed).
///
/// A handle carries the generation of its arena slot, so a handle kept after its
/// interval was removed never designates a later interval that reuses the slot.
/// The derived ordering is arbitrary (slot, then generation); it is *not* the
/// insertion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    index: u32,
    generation: u32,
}

#[derive(Clone)]
struct Node<T> {
    start: u64,
    last: u64,
    /// Insertion sequence number: the tie-break among equal starts, and what makes
    /// keys unique so removal can find the node by descending from the root.
    seq: u64,
    /// Largest `last` in this subtree: what lets queries skip whole subtrees.
    subtree_last: u64,
    left: u32,
    right: u32,
    /// Height of this subtree, a leaf being 1. AVL keeps it below 1.45 * log2(n + 2),
    /// under 50 for the at most 2^32 nodes the arena can address.
    height: u8,
    value: T,
}

impl<T> Node<T> {
    fn key(&self) -> (u64, u64) {
        (self.start, self.seq)
    }
}

#[derive(Clone)]
struct Slot<T> {
    generation: u32,
    node: Option<Node<T>>,
}

/// An augmented balanced interval tree of closed `[start, last]` ranges over `u64`,
/// each carrying a `T`.
///
/// Linux: `struct rb_root_cached` used through `INTERVAL_TREE_DEFINE()`.
#[derive(Clone)]
#[doc(alias = "interval_tree")]
pub struct IntervalTree<T> {
    slots: Vec<Slot<T>>,
    /// Vacant slot indices, reused last-freed first (deterministically).
    free: Vec<u32>,
    root: u32,
    len: usize,
    next_seq: u64,
}

impl<T> Default for IntervalTree<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for IntervalTree<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(_, start, last, value)| (start..=last, value)),
            )
            .finish()
    }
}

impl<T> IntervalTree<T> {
    /// An empty tree.
    ///
    /// Linux: `RB_ROOT_CACHED`.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            root: NIL,
            len: 0,
            next_seq: 0,
        }
    }

    /// Number of intervals in the tree.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree holds no interval.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts the closed interval `[start, last]` carrying `value`, after every
    /// interval already present with the same `start`.
    ///
    /// Returns `None` (and drops `value`) if `start > last`, or if the arena has
    /// exhausted its 2^32 - 1 addressable slots; never panics.
    ///
    /// Linux: `interval_tree_insert()`.
    #[doc(alias = "interval_tree_insert")]
    pub fn insert(&mut self, start: u64, last: u64, value: T) -> Option<NodeId> {
        if start > last {
            return None;
        }
        let node = Node {
            start,
            last,
            seq: self.next_seq,
            subtree_last: last,
            left: NIL,
            right: NIL,
            height: 1,
            value,
        };
        let id = if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.node = Some(node);
            NodeId {
                index,
                generation: slot.generation,
            }
        } else {
            // NIL must stay unusable as an index.
            let index = u32::try_from(self.slots.len()).ok().filter(|&i| i != NIL)?;
            self.slots.push(Slot {
                generation: 0,
                node: Some(node),
            });
            NodeId {
                index,
                generation: 0,
            }
        };
        // 2^64 insertions are out of reach, so wrapping never reorders keys.
        self.next_seq = self.next_seq.wrapping_add(1);
        self.len += 1;
        self.root = self.insert_at(self.root, id.index);
        Some(id)
    }

    /// Removes the interval `id` designates and returns its range and value.
    ///
    /// `None` if `id` is not (or no longer) in the tree, including a stale handle
    /// whose slot now holds a newer interval.
    ///
    /// Linux: `interval_tree_remove()`.
    #[doc(alias = "interval_tree_remove")]
    pub fn remove(&mut self, id: NodeId) -> Option<(u64, u64, T)> {
        let key = self.live(id)?.key();
        self.root = self.remove_at(self.root, key);
        let slot = &mut self.slots[id.index as usize];
        let node = slot.node.take()?;
        // A slot whose generation would wrap is retired rather than reused, so no
        // handle can ever be confused with a later one.
        if let Some(generation) = slot.generation.checked_add(1) {
            slot.generation = generation;
            self.free.push(id.index);
        }
        self.len -= 1;
        Some((node.start, node.last, node.value))
    }

    /// The range and value of the interval `id` designates, if it is still in the
    /// tree.
    #[must_use]
    pub fn get(&self, id: NodeId) -> Option<(u64, u64, &T)> {
        self.live(id).map(|n| (n.start, n.last, &n.value))
    }

    /// The value of the interval `id` designates, if it is still in the tree. The
    /// range cannot be changed in place: that would move the node in the tree.
    pub fn get_mut(&mut self, id: NodeId) -> Option<&mut T> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.node.as_mut().map(|n| &mut n.value)
    }

    /// Whether `id` designates an interval still in the tree.
    #[must_use]
    pub fn contains(&self, id: NodeId) -> bool {
        self.live(id).is_some()
    }

    /// Every interval overlapping `[start, last]`, in ascending order of `start`,
    /// equal starts in insertion order. Nothing if `start > last`.
    ///
    /// The iterator walks the tree lazily with a stack of at most the tree height,
    /// so a query costs O(log n + k) for k results.
    ///
    /// Linux: `interval_tree_iter_first()` / `interval_tree_iter_next()`.
    #[doc(alias = "interval_tree_iter_first")]
    #[doc(alias = "interval_tree_iter_next")]
    pub fn overlapping(&self, start: u64, last: u64) -> Overlapping<'_, T> {
        let mut it = Overlapping {
            tree: self,
            stack: Vec::new(),
            start,
            last,
        };
        if start <= last {
            it.push_left_spine(self.root);
        }
        it
    }

    /// Whether any interval overlaps `[start, last]`, in O(log n). `false` if
    /// `start > last`.
    #[must_use]
    pub fn any_overlap(&self, start: u64, last: u64) -> bool {
        if start > last {
            return false;
        }
        let mut n = self.root;
        while n != NIL {
            let node = self.node(n);
            if node.subtree_last < start {
                return false;
            }
            // If the left subtree reaches `start`, it holds the first overlap if
            // there is one at all: the interval reaching `start` there begins no
            // later than this node and everything to its right, so if it begins
            // after `last`, so do they. One path down therefore suffices.
            if node.left != NIL && self.node(node.left).subtree_last >= start {
                n = node.left;
                continue;
            }
            if node.start > last {
                return false;
            }
            if node.last >= start {
                return true;
            }
            n = node.right;
        }
        false
    }

    /// Every interval, in the order of [`overlapping`](Self::overlapping).
    pub fn iter(&self) -> Overlapping<'_, T> {
        self.overlapping(0, u64::MAX)
    }

    /// Removes every interval. Outstanding handles all become stale.
    pub fn clear(&mut self) {
        for (index, slot) in (0u32..).zip(&mut self.slots) {
            if slot.node.take().is_some()
                && let Some(generation) = slot.generation.checked_add(1)
            {
                slot.generation = generation;
                self.free.push(index);
            }
        }
        self.root = NIL;
        self.len = 0;
    }

    fn live(&self, id: NodeId) -> Option<&Node<T>> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.node.as_ref()
    }

    fn id_of(&self, n: u32) -> NodeId {
        NodeId {
            index: n,
            generation: self.slots[n as usize].generation,
        }
    }

    fn node(&self, n: u32) -> &Node<T> {
        match &self.slots[n as usize].node {
            Some(node) => node,
            None => unreachable!("interval tree links to vacant slot {n}"),
        }
    }

    fn node_mut(&mut self, n: u32) -> &mut Node<T> {
        match &mut self.slots[n as usize].node {
            Some(node) => node,
            None => unreachable!("interval tree links to vacant slot {n}"),
        }
    }

    fn height(&self, n: u32) -> u8 {
        if n == NIL { 0 } else { self.node(n).height }
    }

    /// Height and subtree maximum of the subtree at `n`; `(0, 0)` for no subtree,
    /// which is neutral since every `last` is at least 0.
    fn summary(&self, n: u32) -> (u8, u64) {
        if n == NIL {
            (0, 0)
        } else {
            let node = self.node(n);
            (node.height, node.subtree_last)
        }
    }

    /// Recomputes `n`'s height and subtree maximum from its children; returns the
    /// children's heights.
    fn update(&mut self, n: u32) -> (u8, u8) {
        let (left, right, last) = {
            let node = self.node(n);
            (node.left, node.right, node.last)
        };
        let (hl, ml) = self.summary(left);
        let (hr, mr) = self.summary(right);
        let node = self.node_mut(n);
        node.height = 1 + hl.max(hr);
        node.subtree_last = last.max(ml).max(mr);
        (hl, hr)
    }

    fn rotate_right(&mut self, n: u32) -> u32 {
        let l = self.node(n).left;
        let moved = self.node(l).right;
        self.node_mut(n).left = moved;
        self.node_mut(l).right = n;
        self.update(n);
        self.update(l);
        l
    }

    fn rotate_left(&mut self, n: u32) -> u32 {
        let r = self.node(n).right;
        let moved = self.node(r).left;
        self.node_mut(n).right = moved;
        self.node_mut(r).left = n;
        self.update(n);
        self.update(r);
        r
    }

    /// Restores the AVL property at `n`, whose children are balanced and differ in
    /// height by at most 2, and returns the subtree's new root.
    fn rebalance(&mut self, n: u32) -> u32 {
        let (hl, hr) = self.update(n);
        if hl > hr + 1 {
            let left = self.node(n).left;
            let l = self.node(left);
            if self.height(l.left) < self.height(l.right) {
                let new_left = self.rotate_left(left);
                self.node_mut(n).left = new_left;
            }
            self.rotate_right(n)
        } else if hr > hl + 1 {
            let right = self.node(n).right;
            let r = self.node(right);
            if self.height(r.right) < self.height(r.left) {
                let new_right = self.rotate_right(right);
                self.node_mut(n).right = new_right;
            }
            self.rotate_left(n)
        } else {
            n
        }
    }

    /// Inserts the detached node `new` into the subtree at `root`; returns the
    /// subtree's new root. Recursion depth is the tree height, O(log n).
    fn insert_at(&mut self, root: u32, new: u32) -> u32 {
        if root == NIL {
            return new;
        }
        if self.node(new).key() < self.node(root).key() {
            let child = self.insert_at(self.node(root).left, new);
            self.node_mut(root).left = child;
        } else {
            let child = self.insert_at(self.node(root).right, new);
            self.node_mut(root).right = child;
        }
        self.rebalance(root)
    }

    /// Unlinks the node with `key`, which must be in the subtree at `root`; returns
    /// the subtree's new root. The node itself stays in its slot.
    fn remove_at(&mut self, root: u32, key: (u64, u64)) -> u32 {
        if root == NIL {
            return NIL;
        }
        let (left, right, here) = {
            let node = self.node(root);
            (node.left, node.right, node.key())
        };
        match key.cmp(&here) {
            std::cmp::Ordering::Less => {
                let child = self.remove_at(left, key);
                self.node_mut(root).left = child;
                self.rebalance(root)
            }
            std::cmp::Ordering::Greater => {
                let child = self.remove_at(right, key);
                self.node_mut(root).right = child;
                self.rebalance(root)
            }
            std::cmp::Ordering::Equal => {
                if left == NIL {
                    return right;
                }
                if right == NIL {
                    return left;
                }
                // Relink the successor in the removed node's place rather than
                // moving values between slots: handles name slots, so they must
                // keep designating the same interval.
                let (rest, successor) = self.take_min(right);
                let s = self.node_mut(successor);
                s.left = left;
                s.right = rest;
                self.rebalance(successor)
            }
        }
    }

    /// Unlinks the leftmost node of the non-empty subtree at `root`; returns the
    /// subtree's new root and the unlinked node.
    fn take_min(&mut self, root: u32) -> (u32, u32) {
        let (left, right) = {
            let node = self.node(root);
            (node.left, node.right)
        };
        if left == NIL {
            return (right, root);
        }
        let (rest, min) = self.take_min(left);
        self.node_mut(root).left = rest;
        (self.rebalance(root), min)
    }

    /// Height of the whole tree, a single node being 1.
    #[cfg(test)]
    fn tree_height(&self) -> u8 {
        self.height(self.root)
    }

    /// Checks every structural invariant: BST order on `(start, seq)`, AVL balance,
    /// stored heights and subtree maxima, and that the arena's live slots are
    /// exactly the tree's nodes.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        fn walk<T>(
            t: &IntervalTree<T>,
            n: u32,
            lo: Option<(u64, u64)>,
            hi: Option<(u64, u64)>,
            seen: &mut [bool],
        ) -> Result<(u8, u64), String> {
            let node = t
                .slots
                .get(n as usize)
                .and_then(|s| s.node.as_ref())
                .ok_or_else(|| format!("link to vacant or missing slot {n}"))?;
            if std::mem::replace(&mut seen[n as usize], true) {
                return Err(format!("slot {n} reached twice"));
            }
            if node.start > node.last {
                return Err(format!("slot {n}: start > last"));
            }
            let key = node.key();
            if lo.is_some_and(|lo| key <= lo) || hi.is_some_and(|hi| key >= hi) {
                return Err(format!("slot {n}: key {key:?} out of order"));
            }
            let (hl, ml) = if node.left == NIL {
                (0, 0)
            } else {
                walk(t, node.left, lo, Some(key), seen)?
            };
            let (hr, mr) = if node.right == NIL {
                (0, 0)
            } else {
                walk(t, node.right, Some(key), hi, seen)?
            };
            if hl.abs_diff(hr) > 1 {
                return Err(format!("slot {n}: unbalanced ({hl} vs {hr})"));
            }
            let height = 1 + hl.max(hr);
            if node.height != height {
                return Err(format!("slot {n}: height {} != {height}", node.height));
            }
            let max = node.last.max(ml).max(mr);
            if node.subtree_last != max {
                return Err(format!(
                    "slot {n}: subtree_last {} != {max}",
                    node.subtree_last
                ));
            }
            Ok((height, max))
        }

        let mut seen = vec![false; self.slots.len()];
        if self.root != NIL {
            walk(self, self.root, None, None, &mut seen)?;
        }
        let reachable = seen.iter().filter(|&&s| s).count();
        let occupied = self.slots.iter().filter(|s| s.node.is_some()).count();
        if reachable != self.len || occupied != self.len {
            return Err(format!(
                "len {} but {reachable} reachable and {occupied} occupied",
                self.len
            ));
        }
        for &f in &self.free {
            if self.slots.get(f as usize).is_none_or(|s| s.node.is_some()) {
                return Err(format!("free list holds live or missing slot {f}"));
            }
        }
        Ok(())
    }
}

/// Iterator over the intervals overlapping a query range, from
/// [`IntervalTree::overlapping`] and [`IntervalTree::iter`]: yields
/// `(id, start, last, &value)` in ascending `start`, equal starts in insertion
/// order.
///
/// Linux: the `interval_tree_iter_first()` / `interval_tree_iter_next()` loop.
pub struct Overlapping<'a, T> {
    tree: &'a IntervalTree<T>,
    /// Nodes whose left subtree is being visited and which are themselves still
    /// to be visited: always on one root-to-leaf path, so at most the tree height.
    stack: Vec<u32>,
    start: u64,
    last: u64,
}

impl<T> fmt::Debug for Overlapping<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overlapping")
            .field("start", &self.start)
            .field("last", &self.last)
            .field("pending", &self.stack.len())
            .finish_non_exhaustive()
    }
}

impl<T> Overlapping<'_, T> {
    /// Queues `n` and its left descendants, skipping every subtree that ends before
    /// the query and every node (with its right subtree) that begins after it.
    fn push_left_spine(&mut self, mut n: u32) {
        while n != NIL {
            let node = self.tree.node(n);
            if node.subtree_last < self.start {
                return;
            }
            if node.start <= self.last {
                self.stack.push(n);
            }
            n = node.left;
        }
    }
}

impl<'a, T> Iterator for Overlapping<'a, T> {
    type Item = (NodeId, u64, u64, &'a T);

    fn next(&mut self) -> Option<Self::Item> {
        let tree = self.tree;
        while let Some(n) = self.stack.pop() {
            let node = tree.node(n);
            self.push_left_spine(node.right);
            if node.last >= self.start {
                return Some((tree.id_of(n), node.start, node.last, &node.value));
            }
        }
        None
    }
}

impl<T> FusedIterator for Overlapping<'_, T> {}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ranges<T>(t: &IntervalTree<T>, start: u64, last: u64) -> Vec<(u64, u64)> {
        t.overlapping(start, last)
            .map(|(_, s, l, _)| (s, l))
            .collect()
    }

    #[test]
    fn interval_tree_empty_tree() {
        let mut t: IntervalTree<u32> = IntervalTree::default();
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
        assert_eq!(t.overlapping(0, u64::MAX).count(), 0);
        assert_eq!(t.iter().count(), 0);
        assert!(!t.any_overlap(0, u64::MAX));
        assert_eq!(format!("{t:?}"), "{}");
        t.check_invariants().unwrap();
        let id = t.insert(1, 2, 7).unwrap();
        assert_eq!(t.remove(id), Some((1, 2, 7)));
        assert!(t.is_empty());
        assert_eq!(t.remove(id), None);
        t.check_invariants().unwrap();
    }

    #[test]
    fn interval_tree_inclusive_bounds() {
        let mut t = IntervalTree::new();
        t.insert(0, 9, 'a').unwrap();
        t.insert(10, 19, 'b').unwrap();
        // Touching at a single point overlaps.
        assert_eq!(ranges(&t, 9, 9), [(0, 9)]);
        assert_eq!(ranges(&t, 19, 30), [(10, 19)]);
        assert_eq!(ranges(&t, 5, 10), [(0, 9), (10, 19)]);
        assert!(t.any_overlap(19, 19));
        assert!(!t.any_overlap(20, 100));
        // Adjacent ranges do not overlap each other.
        assert_eq!(ranges(&t, 0, 9), [(0, 9)]);
        assert_eq!(ranges(&t, 10, 19), [(10, 19)]);
        assert_eq!(format!("{t:?}"), "{0..=9: 'a', 10..=19: 'b'}");
        t.check_invariants().unwrap();
    }

    #[test]
    fn interval_tree_u64_max_bounds() {
        let mut t = IntervalTree::new();
        let top = t.insert(u64::MAX, u64::MAX, 1).unwrap();
        let all = t.insert(0, u64::MAX, 2).unwrap();
        let zero = t.insert(0, 0, 3).unwrap();
        assert_eq!(
            ranges(&t, u64::MAX, u64::MAX),
            [(0, u64::MAX), (u64::MAX, u64::MAX)]
        );
        assert_eq!(ranges(&t, 0, 0), [(0, u64::MAX), (0, 0)]);
        assert_eq!(ranges(&t, 1, u64::MAX - 1), [(0, u64::MAX)]);
        assert_eq!(t.iter().count(), 3);
        assert_eq!(t.remove(all), Some((0, u64::MAX, 2)));
        assert!(!t.any_overlap(1, u64::MAX - 1));
        assert!(t.any_overlap(u64::MAX, u64::MAX));
        assert_eq!(t.get(top), Some((u64::MAX, u64::MAX, &1)));
        assert_eq!(t.get(zero), Some((0, 0, &3)));
        t.check_invariants().unwrap();
    }

    #[test]
    fn interval_tree_many_identical_ranges_keep_insertion_order() {
        let mut t = IntervalTree::new();
        let ids: Vec<NodeId> = (0..500).map(|i| t.insert(100, 200, i).unwrap()).collect();
        t.check_invariants().unwrap();
        let got: Vec<(NodeId, i32)> = t
            .overlapping(150, 150)
            .map(|(id, _, _, &v)| (id, v))
            .collect();
        let want: Vec<(NodeId, i32)> = ids.iter().copied().zip(0..).collect();
        assert_eq!(got, want);
        // Remove every third; the rest keep their relative order.
        for id in ids.iter().step_by(3) {
            t.remove(*id).unwrap();
        }
        t.check_invariants().unwrap();
        let got: Vec<i32> = t.overlapping(0, 100).map(|(_, _, _, &v)| v).collect();
        let want: Vec<i32> = (0..500).filter(|v| v % 3 != 0).collect();
        assert_eq!(got, want);
        assert!(!t.any_overlap(201, u64::MAX));
        assert!(!t.any_overlap(0, 99));
    }

    #[test]
    fn interval_tree_stale_id_after_removal_and_slot_reuse() {
        let mut t = IntervalTree::new();
        let old = t.insert(0, 10, "old").unwrap();
        assert_eq!(t.remove(old), Some((0, 10, "old")));
        let new = t.insert(0, 10, "new").unwrap();
        assert_ne!(old, new);
        assert!(!t.contains(old));
        assert_eq!(t.get(old), None);
        assert_eq!(t.get_mut(old), None);
        assert_eq!(t.remove(old), None);
        assert_eq!(t.len(), 1);
        *t.get_mut(new).unwrap() = "newer";
        assert_eq!(t.get(new), Some((0, 10, &"newer")));
        assert_eq!(t.remove(new), Some((0, 10, "newer")));
        t.check_invariants().unwrap();
    }

    #[test]
    fn interval_tree_rejects_start_after_last() {
        let mut t = IntervalTree::new();
        assert_eq!(t.insert(5, 4, ()), None);
        assert_eq!(t.insert(u64::MAX, 0, ()), None);
        assert!(t.is_empty());
        t.insert(0, u64::MAX, ()).unwrap();
        assert_eq!(t.overlapping(5, 4).count(), 0);
        assert!(!t.any_overlap(u64::MAX, 0));
        t.check_invariants().unwrap();
    }

    #[test]
    fn interval_tree_clear_makes_ids_stale() {
        let mut t = IntervalTree::new();
        let ids: Vec<NodeId> = (0..50).map(|i| t.insert(i, i + 3, i).unwrap()).collect();
        t.clear();
        assert!(t.is_empty());
        t.check_invariants().unwrap();
        assert!(ids.iter().all(|&id| t.get(id).is_none()));
    }

    #[test]
    fn interval_tree_stays_balanced_over_100k_inserts_and_removes() {
        const N: u64 = 100_000;
        // AVL: height h (a leaf being 1) needs at least fib(h + 2) - 1 nodes.
        let bound = |n: usize| 1.4405 * ((n + 2) as f64).log2();
        let mut t = IntervalTree::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut ids = Vec::with_capacity(N as usize);
        for i in 0..N {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half ascending (the worst case for an unbalanced tree), half scattered.
            let start = if i % 2 == 0 { i } else { x % (N * 4) };
            ids.push(t.insert(start, start + x % 64, i).unwrap());
            assert!(f64::from(t.tree_height()) <= bound(t.len()));
        }
        t.check_invariants().unwrap();
        assert_eq!(t.len(), N as usize);
        // Remove the even-indexed ones first, then the rest, newest first.
        let (evens, odds): (Vec<_>, Vec<_>) = ids.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        for (i, id) in evens.into_iter().chain(odds.into_iter().rev()) {
            assert_eq!(t.remove(*id).map(|(_, _, v)| v), Some(i as u64));
            assert!(f64::from(t.tree_height()) <= bound(t.len()));
            if t.len() == N as usize / 2 {
                t.check_invariants().unwrap();
            }
        }
        assert!(t.is_empty());
        t.check_invariants().unwrap();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u64),
        /// Remove the id at this position (modulo) among every id ever issued,
        /// so both live and stale ids are tried.
        Remove(usize),
        Query(u64, u64),
    }

    fn coord() -> impl Strategy<Value = u64> {
        prop_oneof![
            8 => 0u64..64,
            1 => (u64::MAX - 64)..=u64::MAX,
            1 => any::<u64>(),
        ]
    }

    fn range() -> impl Strategy<Value = (u64, u64)> {
        prop_oneof![
            6 => (coord(), 0u64..16).prop_map(|(s, d)| (s, s.saturating_add(d))),
            // Arbitrary pairs: covers `start > last` and very long ranges.
            1 => (coord(), coord()),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => range().prop_map(|(s, l)| Op::Insert(s, l)),
            2 => any::<usize>().prop_map(Op::Remove),
            3 => range().prop_map(|(s, l)| Op::Query(s, l)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The tree against a plain list: same overlap results in the same order,
        /// same `any_overlap`, same `len`, same fate for live and stale ids, and
        /// the structural invariants hold after every step.
        #[test]
        fn interval_tree_matches_a_brute_force_list(ops in proptest::collection::vec(op(), 1..200)) {
            let mut t = IntervalTree::new();
            // (id, start, last, value); the value is the insertion sequence number.
            let mut model: Vec<(NodeId, u64, u64, u64)> = Vec::new();
            let mut issued: Vec<NodeId> = Vec::new();
            let mut seq = 0u64;
            for op in ops {
                let (qs, ql) = match op {
                    Op::Insert(s, l) => {
                        let got = t.insert(s, l, seq);
                        if s > l {
                            prop_assert_eq!(got, None);
                        } else {
                            let id = got.unwrap();
                            prop_assert!(!issued.contains(&id));
                            issued.push(id);
                            model.push((id, s, l, seq));
                            seq += 1;
                        }
                        (s, l)
                    }
                    Op::Remove(i) => {
                        if !issued.is_empty() {
                            let id = issued[i % issued.len()];
                            let want = model
                                .iter()
                                .position(|e| e.0 == id)
                                .map(|p| model.remove(p))
                                .map(|(_, s, l, v)| (s, l, v));
                            prop_assert_eq!(t.remove(id), want);
                        }
                        (0, 63)
                    }
                    Op::Query(s, l) => (s, l),
                };
                prop_assert_eq!(t.check_invariants(), Ok(()));
                prop_assert_eq!(t.len(), model.len());
                // The model is in insertion order, so a stable sort by start gives
                // (start, insertion order).
                let mut want: Vec<(NodeId, u64, u64, u64)> = model
                    .iter()
                    .copied()
                    .filter(|&(_, s, l, _)| qs <= ql && s <= ql && qs <= l)
                    .collect();
                want.sort_by_key(|e| e.1);
                let got: Vec<(NodeId, u64, u64, u64)> =
                    t.overlapping(qs, ql).map(|(id, s, l, &v)| (id, s, l, v)).collect();
                prop_assert_eq!(&got, &want);
                prop_assert_eq!(t.any_overlap(qs, ql), !want.is_empty());
                let mut all = model.clone();
                all.sort_by_key(|e| e.1);
                let got_all: Vec<(NodeId, u64, u64, u64)> =
                    t.iter().map(|(id, s, l, &v)| (id, s, l, v)).collect();
                prop_assert_eq!(got_all, all);
                for &(id, s, l, v) in &model {
                    prop_assert_eq!(t.get(id), Some((s, l, &v)));
                }
            }
        }
    }
}
