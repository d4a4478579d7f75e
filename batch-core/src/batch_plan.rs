//! What a batch will do, worked out before anything starts (`starter --plan`): the tree's
//! shape, the work per leaf, the largest history any workflow of the tree can have against
//! Temporal's limits, and the work in flight under the batch's budgets. Pure arithmetic over
//! the batch's parameters: no server, no tree built.

use serde::Serialize;

use crate::config::{BatchConfig, LeafMode, activities_per_leaf};
use crate::plan::{ItemRange, NodePlan, TreeShape, plan_node};

/// Temporal's default limit on one workflow's history, in events
/// (`limit.historyCount.error`); the server fails a workflow that reaches it.
pub const HISTORY_EVENTS_LIMIT: u64 = 51_200;
/// The history length at which Temporal starts warning (`limit.historyCount.warn`).
pub const HISTORY_EVENTS_WARNING: u64 = 10_240;

/// Events every node's history has whatever it does: started, the first workflow task
/// (scheduled, started, completed), completed.
const NODE_EVENTS: u64 = 5;
/// Events per activity at most: scheduled, started, completed, and the workflow task its
/// completion may wake (scheduled, started, completed). (Attempts that fail and are retried add
/// none: only the last is recorded.)
const ACTIVITY_EVENTS: u64 = 6;
/// Events per local activity at most: its marker, and a workflow task.
const LOCAL_ACTIVITY_EVENTS: u64 = 4;
/// Events per child at most: initiated, started and completed, and a workflow task for each
/// of the last two.
const CHILD_EVENTS: u64 = 9;

/// The plan of a batch over a range of items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchPlan {
    pub items: u64,
    pub workflows: u64,
    pub leaves: u64,
    pub depth: u32,
    pub mode: LeafMode,
    /// The most items one leaf holds.
    pub items_per_leaf: u64,
    /// The activities (local ones in `local` mode) of the largest leaf.
    pub activities_per_leaf: u64,
    /// The most children one inner workflow starts.
    pub children_per_workflow: u64,
    /// An upper bound on the events of the longest history of the tree (the root's plugin
    /// lookup included; an item re-sent to a plugin's own task queue adds up to
    /// 6 more).
    pub largest_history_events: u64,
    pub history_events_limit: u64,
    pub history_events_warning: u64,
    /// Leaves running at once, at most.
    pub leaves_in_flight: u64,
    /// Activities pending at once in the whole batch, at most.
    pub activities_in_flight: u64,
    /// Items being processed at once, at most.
    pub items_in_flight: u64,
    /// Workflows open at once, at most: each running leaf and its ancestors.
    pub workflows_open: u64,
}

impl BatchPlan {
    /// The plan of the batch over `1..=n` with `config`.
    pub fn of(n: u64, config: &BatchConfig) -> Self {
        let shape = TreeShape::of(n, config.batch_size, config.max_children);
        let items_per_leaf = n.min(config.batch_size);
        let activities = match config.mode {
            LeafMode::Item | LeafMode::Local => items_per_leaf,
            LeafMode::Batch => 1,
        };
        // The root's children: no inner workflow of the tree has more (tested below).
        let children = match plan_node(ItemRange::new(1, n), config.batch_size, config.max_children)
        {
            NodePlan::Leaf(_) => 0,
            NodePlan::Split(chunks) => chunks.len() as u64,
        };
        let per_activity = match config.mode {
            LeafMode::Local => LOCAL_ACTIVITY_EVENTS,
            LeafMode::Item | LeafMode::Batch => ACTIVITY_EVENTS,
        };
        // The root looks its plugin up (on this queue, then on the plugin's own queue).
        let lookup = 2 * ACTIVITY_EVENTS;
        let leaf = NODE_EVENTS + activities * per_activity;
        let inner = NODE_EVENTS + children * CHILD_EVENTS;
        let root = lookup + if children == 0 { leaf } else { inner };
        let leaves_in_flight = shape.leaves.min(config.max_leaves_in_flight);
        let per_leaf_in_flight = activities_per_leaf(config).min(activities);
        let items_in_flight = match config.mode {
            LeafMode::Item | LeafMode::Local => leaves_in_flight * per_leaf_in_flight,
            LeafMode::Batch => leaves_in_flight * items_per_leaf,
        }
        .min(n);
        BatchPlan {
            items: n,
            workflows: shape.workflows,
            leaves: shape.leaves,
            depth: shape.depth,
            mode: config.mode,
            items_per_leaf,
            activities_per_leaf: activities,
            children_per_workflow: children,
            largest_history_events: root.max(leaf).max(inner),
            history_events_limit: HISTORY_EVENTS_LIMIT,
            history_events_warning: HISTORY_EVENTS_WARNING,
            leaves_in_flight,
            activities_in_flight: leaves_in_flight * per_leaf_in_flight,
            items_in_flight,
            workflows_open: (leaves_in_flight * (u64::from(shape.depth) + 1)).min(shape.workflows),
        }
    }

    /// The plan as the starter prints it.
    pub fn render(&self) -> String {
        let leaf_work = match self.mode {
            LeafMode::Item => format!(
                "{} activities each (one per item)",
                self.activities_per_leaf
            ),
            LeafMode::Local => format!(
                "{} local activities each (one per item)",
                self.activities_per_leaf
            ),
            LeafMode::Batch => "1 activity each (the plugin over the whole leaf)".to_owned(),
        };
        let headroom = if self.largest_history_events < self.history_events_warning {
            "under"
        } else {
            "OVER"
        };
        format!(
            "Plan (nothing started)\n\
             Items: 1..={items}\n\
             Tree: {workflows} workflows, {leaves} leaves, depth {depth}\n\
             Leaves: up to {per_leaf} items and {leaf_work}; inner workflows: up to {children} children\n\
             Largest history: at most {events} events ({headroom} Temporal's warning at {warn}; its limit is {limit})\n\
             In flight at most: {lif} leaves, {aif} activities, {iif} items, {open} open workflows\n",
            items = self.items,
            workflows = self.workflows,
            leaves = self.leaves,
            depth = self.depth,
            per_leaf = self.items_per_leaf,
            children = self.children_per_workflow,
            events = self.largest_history_events,
            warn = self.history_events_warning,
            limit = self.history_events_limit,
            lif = self.leaves_in_flight,
            aif = self.activities_in_flight,
            iif = self.items_in_flight,
            open = self.workflows_open,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeInput;

    fn config(n: u64, batch_size: u64, max_children: u64, mode: LeafMode) -> BatchConfig {
        let mut input = NodeInput::root(n, batch_size, max_children, "square_number");
        input.config.mode = mode;
        input.config.max_leaves_in_flight = crate::config::default_leaf_budget(mode, batch_size);
        input.config
    }

    #[test]
    fn the_demo_plans_as_it_runs() {
        let plan = BatchPlan::of(2000, &config(2000, 10, 5, LeafMode::Item));
        assert_eq!(
            plan.render(),
            "Plan (nothing started)\n\
             Items: 1..=2000\n\
             Tree: 656 workflows, 500 leaves, depth 4\n\
             Leaves: up to 10 items and 10 activities each (one per item); inner workflows: up \
             to 5 children\n\
             Largest history: at most 65 events (under Temporal's warning at 10240; its limit \
             is 51200)\n\
             In flight at most: 200 leaves, 2000 activities, 2000 items, 656 open workflows\n"
        );
    }

    /// The most children any inner workflow of the tree over `range` starts.
    fn most_children(range: ItemRange, batch_size: u64, max_children: u64) -> u64 {
        match plan_node(range, batch_size, max_children) {
            NodePlan::Leaf(_) => 0,
            NodePlan::Split(chunks) => chunks
                .iter()
                .map(|&chunk| most_children(chunk, batch_size, max_children))
                .max()
                .unwrap_or(0)
                .max(chunks.len() as u64),
        }
    }

    #[test]
    fn no_inner_workflow_has_more_children_than_the_root() {
        for n in 1..=300 {
            for batch_size in 1..=8 {
                for max_children in 2..=10 {
                    let plan =
                        BatchPlan::of(n, &config(n, batch_size, max_children, LeafMode::Item));
                    assert_eq!(
                        plan.children_per_workflow,
                        most_children(ItemRange::new(1, n), batch_size, max_children),
                        "n={n} b={batch_size} c={max_children}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_bounds_follow_the_mode_and_the_budgets() {
        // 10^9 items in batch mode, leaves of 10^7: one activity per leaf.
        let plan = BatchPlan::of(
            1_000_000_000,
            &config(1_000_000_000, 10_000_000, 10, LeafMode::Batch),
        );
        assert_eq!((plan.workflows, plan.leaves, plan.depth), (111, 100, 2));
        assert_eq!(plan.activities_per_leaf, 1);
        assert_eq!(plan.items_in_flight, 1_000_000_000);
        assert_eq!(plan.activities_in_flight, 100);
        // One leaf: the root is the leaf, and looks its plugin up first.
        let plan = BatchPlan::of(7, &config(7, 10, 5, LeafMode::Local));
        assert_eq!(
            (plan.workflows, plan.leaves, plan.children_per_workflow),
            (1, 1, 0)
        );
        assert_eq!(plan.largest_history_events, 12 + 5 + 7 * 4);
        // Leaves of 1000 items with a window of 100: the window bounds what is in flight.
        let mut wide = config(100_000, 1000, 10, LeafMode::Item);
        wide.max_in_flight = 100;
        let plan = BatchPlan::of(100_000, &wide);
        assert_eq!(plan.leaves_in_flight, 2);
        assert_eq!(plan.activities_in_flight, 200);
        assert_eq!(plan.largest_history_events, 5 + 1000 * 6);
        // A leaf of 10^4 items in item mode would pass Temporal's warning.
        let plan = BatchPlan::of(10_000, &config(10_000, 10_000, 5, LeafMode::Item));
        assert!(
            plan.render().contains("OVER Temporal's warning"),
            "{}",
            plan.render()
        );
    }
}
