//! Workflow ids. The root's id is the demo's `batch-processing-{n}-b{batch}-c{children}` for the
//! default plugin, so the demo's `temporal workflow list/show/count` commands work unchanged.
//! Another plugin's batch puts its name before n: `batch-processing-{plugin}-{n}-b…-c…`. Plugin
//! names start with a letter and contain no '-', so ids of different plugins never collide, and
//! the `STARTS_WITH` query of one batch never matches another batch's tree.

use crate::DEFAULT_PLUGIN;

pub const ROOT_ID_PREFIX: &str = "batch-processing";

pub fn root_workflow_id(n: u64, batch_size: u64, max_children: u64, plugin: &str) -> String {
    if plugin == DEFAULT_PLUGIN {
        format!("{ROOT_ID_PREFIX}-{n}-b{batch_size}-c{max_children}")
    } else {
        format!("{ROOT_ID_PREFIX}-{plugin}-{n}-b{batch_size}-c{max_children}")
    }
}

/// The id of a node's `index`-th child (0-based), as in the demo: `{parent}-c{index}`.
pub fn child_workflow_id(parent_id: &str, index: usize) -> String {
    format!("{parent_id}-c{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plugin_uses_the_demo_ids() {
        let root = root_workflow_id(2000, 10, 5, "square_number");
        assert_eq!(root, "batch-processing-2000-b10-c5");
        assert_eq!(
            child_workflow_id(&child_workflow_id(&root, 0), 3),
            "batch-processing-2000-b10-c5-c0-c3"
        );
    }

    #[test]
    fn other_plugins_never_share_a_prefix_with_the_default() {
        let cube = root_workflow_id(2000, 10, 5, "cube");
        assert_eq!(cube, "batch-processing-cube-2000-b10-c5");
        let square = root_workflow_id(2000, 10, 5, "square_number");
        assert!(!cube.starts_with(&square) && !square.starts_with(&cube));
        // The tree of n=2000 is not matched by the query for n=200.
        assert!(!square.starts_with(&root_workflow_id(200, 10, 5, "square_number")));
    }
}
