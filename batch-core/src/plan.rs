//! How a tree node turns its range into work: a leaf processes its items, an inner node splits
//! the range into contiguous chunks of `ceil(count / max_children)` items, one child each.
//!
//! This is the demo's rule, and it reproduces its figures exactly (n=2000 -> 656 workflows,
//! depth 4). A "max_children nearly equal parts" split would give 781 instead: with the ceil
//! rule a node may get fewer than `max_children` children (16 items -> 4 + 4 + 4 + 4).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An inclusive, non-empty range of items `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRange {
    pub first: u64,
    pub last: u64,
}

impl ItemRange {
    /// # Panics
    /// If `last < first`: callers validate ranges first ([`crate::NodeInput::validate`]).
    pub fn new(first: u64, last: u64) -> Self {
        assert!(first <= last, "empty range {first}..={last}");
        Self { first, last }
    }

    /// Number of items; a range never spans all of `u64` (items start at 1).
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn items(&self) -> std::ops::RangeInclusive<u64> {
        self.first..=self.last
    }
}

/// What a node does with its range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePlan {
    /// At most `batch_size` items: process them here.
    Leaf(ItemRange),
    /// One child workflow per chunk, in item order.
    Split(Vec<ItemRange>),
}

/// Decides whether `range` is a leaf, and if not, how it is split.
pub fn plan_node(range: ItemRange, batch_size: u64, max_children: u64) -> NodePlan {
    if range.len() <= batch_size {
        NodePlan::Leaf(range)
    } else {
        NodePlan::Split(plan_children(range, max_children))
    }
}

/// Contiguous chunks of `ceil(len / max_children)` items covering `range` in order; the last
/// chunk takes the remainder. Yields at most `max_children` chunks (fewer when the ceil makes
/// chunks large enough), each strictly smaller than `range` when `max_children >= 2`.
pub fn plan_children(range: ItemRange, max_children: u64) -> Vec<ItemRange> {
    let chunk = chunk_size(range.len(), max_children);
    let mut children = Vec::new();
    let mut first = range.first;
    loop {
        let last = first.saturating_add(chunk - 1).min(range.last);
        children.push(ItemRange::new(first, last));
        if last == range.last {
            return children;
        }
        first = last + 1;
    }
}

fn chunk_size(len: u64, max_children: u64) -> u64 {
    len.div_ceil(max_children.max(1))
}

/// How a node with a budget of `budget` leaves running at once runs its children: `at_once`
/// children at a time, each with a budget of `per_child`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafBudget {
    pub at_once: usize,
    pub per_child: u64,
}

/// Shares a node's leaf budget among its `children`: all of them at once when the budget
/// allows, each with an equal share; otherwise `budget` of them at a time with one leaf each
/// (those subtrees then run their leaves one by one). `at_once × per_child <= budget`, so by
/// induction a subtree never runs more leaves at once than its budget, and `at_once >= 1`, so
/// every node makes progress.
pub fn share_leaf_budget(budget: u64, children: usize) -> LeafBudget {
    let budget = budget.max(1);
    let count = u64::try_from(children.max(1)).unwrap_or(u64::MAX);
    if budget >= count {
        LeafBudget {
            at_once: children.max(1),
            per_child: budget / count,
        }
    } else {
        LeafBudget {
            at_once: usize::try_from(budget).unwrap_or(usize::MAX),
            per_child: 1,
        }
    }
}

/// The whole tree's shape for a batch, computed without building the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeShape {
    /// All workflows, root included.
    pub workflows: u64,
    /// Leaf workflows (they run the plugin).
    pub leaves: u64,
    /// Deepest nesting level (root = 0).
    pub depth: u32,
    /// Items, one plugin call each.
    pub items: u64,
}

impl TreeShape {
    /// Walks the tree level by level, grouping nodes by range length: every node of a given
    /// length has the same subtree, so each level holds only a handful of distinct lengths
    /// (at most two per parent length) and n = 10^12 plans in microseconds, without recursion.
    pub fn of(n: u64, batch_size: u64, max_children: u64) -> Self {
        let mut shape = TreeShape {
            workflows: 0,
            leaves: 0,
            depth: 0,
            items: n,
        };
        // length of a node's range -> how many nodes of that length are on the current level
        let mut level: BTreeMap<u64, u64> = BTreeMap::from([(n, 1)]);
        let mut depth = 0;
        while !level.is_empty() {
            shape.depth = depth;
            let mut next: BTreeMap<u64, u64> = BTreeMap::new();
            for (len, count) in level {
                shape.workflows += count;
                if len <= batch_size {
                    shape.leaves += count;
                    continue;
                }
                let chunk = chunk_size(len, max_children);
                let full = len / chunk;
                let rest = len % chunk;
                *next.entry(chunk).or_default() += full * count;
                if rest > 0 {
                    *next.entry(rest).or_default() += count;
                }
            }
            level = next;
            depth += 1;
        }
        shape
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most leaves a subtree runs at once when each node runs its children in waves of
    /// `share_leaf_budget(..).at_once` (a wave's subtrees all run together).
    fn peak_leaves(range: ItemRange, batch: u64, children: u64, budget: u64) -> u64 {
        match plan_node(range, batch, children) {
            NodePlan::Leaf(_) => 1,
            NodePlan::Split(chunks) => {
                let share = share_leaf_budget(budget, chunks.len());
                chunks
                    .chunks(share.at_once)
                    .map(|wave| {
                        wave.iter()
                            .map(|&c| peak_leaves(c, batch, children, share.per_child))
                            .sum::<u64>()
                    })
                    .max()
                    .unwrap_or(0)
            }
        }
    }

    #[test]
    fn a_tree_never_runs_more_leaves_at_once_than_its_budget() {
        for n in [1, 2, 9, 10, 11, 50, 99, 100, 101, 257, 1000, 2000, 4321] {
            for (batch, children) in [(1, 2), (3, 2), (10, 5), (7, 3), (10, 10), (1, 1000)] {
                for budget in [1, 2, 3, 5, 7, 10, 100, 1000] {
                    let range = ItemRange::new(1, n);
                    let peak = peak_leaves(range, batch, children, budget);
                    assert!(
                        peak >= 1 && peak <= budget,
                        "n={n} b={batch} c={children} budget={budget}: {peak}"
                    );
                }
            }
        }
        // And the budget is used: the demo's 2,000 items in 500 leaves, 100 at a time, or
        // all at once with a budget above that.
        let leaves = TreeShape::of(2000, 10, 5).leaves;
        assert_eq!(leaves, 500);
        assert_eq!(peak_leaves(ItemRange::new(1, 2000), 10, 5, 100), 100);
        assert_eq!(peak_leaves(ItemRange::new(1, 2000), 10, 5, 1000), leaves);
    }

    #[test]
    fn sharing_a_budget_always_makes_progress() {
        for budget in 0..50 {
            for children in 0..50 {
                let share = share_leaf_budget(budget, children);
                assert!(share.at_once >= 1 && share.per_child >= 1);
                assert!(
                    (share.at_once as u64) * share.per_child <= budget.max(1),
                    "{budget} {children}: {share:?}"
                );
                assert!(share.at_once <= children.max(1));
            }
        }
    }

    /// Builds the tree node by node, as the workflows do: the reference for `TreeShape::of`.
    fn walk(range: ItemRange, depth: u32, b: u64, c: u64, shape: &mut TreeShape) {
        shape.workflows += 1;
        shape.depth = shape.depth.max(depth);
        match plan_node(range, b, c) {
            NodePlan::Leaf(r) => {
                shape.leaves += 1;
                shape.items += r.len();
            }
            NodePlan::Split(children) => {
                for child in children {
                    walk(child, depth + 1, b, c, shape);
                }
            }
        }
    }

    fn walked(n: u64, b: u64, c: u64) -> TreeShape {
        let mut shape = TreeShape {
            workflows: 0,
            leaves: 0,
            depth: 0,
            items: 0,
        };
        walk(ItemRange::new(1, n), 0, b, c, &mut shape);
        shape
    }

    #[test]
    fn reproduces_the_demo_figures() {
        // (n, workflows, depth) from the demo's README and measured runs.
        for (n, workflows, depth) in [(50, 6, 1), (2000, 656, 4), (10_000, 3281, 5)] {
            let shape = TreeShape::of(n, 10, 5);
            assert_eq!((shape.workflows, shape.depth), (workflows, depth), "n={n}");
            assert_eq!(walked(n, 10, 5), shape, "n={n}");
        }
        assert_eq!(TreeShape::of(2000, 10, 5).leaves, 500);
    }

    #[test]
    fn the_demo_splits_16_items_into_four_leaves_of_four() {
        let children = plan_children(ItemRange::new(1, 16), 5);
        let lens: Vec<u64> = children.iter().map(ItemRange::len).collect();
        assert_eq!(lens, [4, 4, 4, 4]);
        let children = plan_children(ItemRange::new(1, 2000), 5);
        assert_eq!(children[0], ItemRange::new(1, 400));
        assert_eq!(children[4], ItemRange::new(1601, 2000));
    }

    #[test]
    fn small_batches_are_a_single_leaf() {
        for (n, b) in [(1, 10), (10, 10), (1, 1)] {
            assert_eq!(
                plan_node(ItemRange::new(1, n), b, 5),
                NodePlan::Leaf(ItemRange::new(1, n))
            );
            let shape = TreeShape::of(n, b, 5);
            assert_eq!((shape.workflows, shape.leaves, shape.depth), (1, 1, 0));
        }
        // One more than a leaf holds: split into ceil(11/5) = 3-item chunks -> 4 children.
        let plan = plan_node(ItemRange::new(1, 11), 10, 5);
        let NodePlan::Split(children) = plan else {
            panic!("11 items with batch 10 must split")
        };
        assert_eq!(
            children.iter().map(ItemRange::len).collect::<Vec<_>>(),
            [3, 3, 3, 2]
        );
        assert_eq!(TreeShape::of(11, 10, 5).workflows, 5);
    }

    /// Every split covers its range exactly once, in order, with at most `max_children`
    /// strictly smaller chunks, for every small length and fan-out.
    #[test]
    fn chunks_partition_the_range_for_all_small_inputs() {
        for first in [1, 7, u64::MAX - 300] {
            for len in 2..=200u64 {
                for c in 2..=12 {
                    let range = ItemRange::new(first, first + len - 1);
                    let children = plan_children(range, c);
                    assert!(children.len() as u64 <= c, "len={len} c={c}");
                    assert!(children.len() >= 2, "len={len} c={c} must shrink");
                    assert_eq!(children[0].first, range.first);
                    assert_eq!(children.last().map(|r| r.last), Some(range.last));
                    for pair in children.windows(2) {
                        assert_eq!(pair[0].last + 1, pair[1].first);
                    }
                    let chunk = len.div_ceil(c);
                    assert!(
                        children[..children.len() - 1]
                            .iter()
                            .all(|r| r.len() == chunk)
                    );
                }
            }
        }
    }

    #[test]
    fn shape_matches_a_full_walk_for_many_configurations() {
        for n in (1..=400).chain([999, 1000, 1001, 4096, 12_345]) {
            for (b, c) in [(1, 2), (3, 2), (10, 5), (7, 3), (10, 10), (1, 1000)] {
                assert_eq!(TreeShape::of(n, b, c), walked(n, b, c), "n={n} b={b} c={c}");
            }
        }
    }

    #[test]
    fn plans_a_trillion_items_without_building_the_tree() {
        let shape = TreeShape::of(1_000_000_000_000, 10, 5);
        assert_eq!(shape.items, 1_000_000_000_000);
        // The largest node on each level has ceil(len / 5) items of its parent: the depth is how
        // many such steps bring 10^12 down to a leaf (10^12 / 5^16 = 6.6 <= 10).
        let mut len: u64 = 1_000_000_000_000;
        let mut depth = 0;
        while len > 10 {
            len = len.div_ceil(5);
            depth += 1;
        }
        assert_eq!((shape.depth, depth), (16, 16));
        // Leaves hold at most 10 items, so there are at least n / 10 of them.
        assert!(shape.leaves >= 100_000_000_000, "{shape:?}");
        // The root's children of a huge range are still just max_children small inputs.
        let children = plan_children(ItemRange::new(1, 1_000_000_000_000), 5);
        assert_eq!(children.len(), 5);
        assert_eq!(
            children[4],
            ItemRange::new(800_000_000_001, 1_000_000_000_000)
        );
        let max = TreeShape::of(crate::config::MAX_ITEMS, 1000, 1000);
        assert_eq!(max.items, crate::config::MAX_ITEMS);
    }
}
