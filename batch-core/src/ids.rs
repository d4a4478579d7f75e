//! Workflow ids. The root's id is the demo's `batch-processing-{n}-b{batch}-c{children}` for the
//! default plugin, so the demo's `temporal workflow list/show/count` commands work unchanged.
//! Another plugin's batch puts its name before n: `batch-processing-{plugin}-{n}-b…-c…`. Plugin
//! names start with a letter and contain no '-', so ids of different plugins never collide, and
//! the `STARTS_WITH` query of one batch never matches another batch's tree. The leaf mode shows
//! in the batch-size part: `b10` per-item activities (the demo), `local10` local activities,
//! `batch100000` one activity per leaf. A batch with a plugin configuration always names its
//! plugin, followed by `.cfg{12 hex digits of the configuration's digest}`
//! (`batch-processing-filter.cfg0123456789ab-1000-b10-c5`): the same items under another
//! configuration are another batch, and since names never contain '.', no other batch's id
//! starts with it.

use crate::{DEFAULT_PLUGIN, LeafMode, PluginConfig, Tolerance};

pub const ROOT_ID_PREFIX: &str = "batch-processing";

pub fn root_workflow_id(
    n: u64,
    batch_size: u64,
    max_children: u64,
    plugin: &str,
    mode: LeafMode,
    config: Option<&PluginConfig>,
    tolerance: &Tolerance,
) -> String {
    let shape = tree_shape(n, mode, batch_size, max_children);
    let qualified = qualified_plugin(plugin, config, tolerance);
    if qualified == DEFAULT_PLUGIN {
        format!("{ROOT_ID_PREFIX}-{shape}")
    } else {
        format!("{ROOT_ID_PREFIX}-{qualified}-{shape}")
    }
}

/// The shape part of a root id: `{n}-{leaf}{batch_size}-c{max_children}`, where the leaf mode
/// shows as `b` (per-item activities, the demo), `local` or `batch`.
pub fn tree_shape(n: u64, mode: LeafMode, batch_size: u64, max_children: u64) -> String {
    let leaf = match mode {
        LeafMode::Item => "b",
        LeafMode::Local => "local",
        LeafMode::Batch => "batch",
    };
    format!("{n}-{leaf}{batch_size}-c{max_children}")
}

/// The plugin's name followed by what else changes a batch's outcome: `.cfg{digest}` of its
/// configuration, `.f{N}` for `--max-failures N` and `.r{PPM}` for a failure ratio in parts
/// per million (`square_number.f5.r10000`).
fn qualified_plugin(plugin: &str, config: Option<&PluginConfig>, tolerance: &Tolerance) -> String {
    let mut name = plugin.to_owned();
    if let Some(config) = config {
        name.push_str(&format!(".cfg{}", config.short_digest()));
    }
    if let Some(n) = tolerance.max_failures {
        name.push_str(&format!(".f{n}"));
    }
    if let Some(ppm) = tolerance.max_failure_ppm {
        name.push_str(&format!(".r{ppm}"));
    }
    name
}

/// A data batch's root id: the plugin (and configuration) as for a range batch, then
/// `.src{12 hex digits}` of the source's digest ([`crate::DataSource::short_digest`]: where,
/// which version, which format, where to), then the source's size, the split size and the
/// fan-out: `batch-processing-json_filter.src0123456789ab-1048576-batch65536-c5`. The same data
/// through the same plugin to the same output is the same batch (starting it again attaches
/// to it); any change makes another.
pub fn data_workflow_id(
    size: u64,
    split_bytes: u64,
    max_children: u64,
    plugin: &str,
    config: Option<&PluginConfig>,
    tolerance: &Tolerance,
    source_digest: &str,
) -> String {
    let plugin = qualified_plugin(plugin, config, tolerance);
    format!(
        "{ROOT_ID_PREFIX}-{plugin}.src{source_digest}-{size}-batch{split_bytes}-c{max_children}"
    )
}

/// The id of a node's `index`-th child (0-based), as in the demo: `{parent}-c{index}`.
pub fn child_workflow_id(parent_id: &str, index: usize) -> String {
    format!("{parent_id}-c{index}")
}

/// The task queue on which the workers that hold plugin `plugin` serve it. Work goes to the
/// batch's own queue first (any worker, eager dispatch); an item that lands on a worker without
/// the pinned version is sent here, where only workers holding the plugin poll.
pub fn plugin_task_queue(task_queue: &str, plugin: &str) -> String {
    format!("{task_queue}/plugin/{plugin}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_plugin_has_its_own_queue_under_the_batch_queue() {
        assert_eq!(
            plugin_task_queue("batch-processing-task-queue", "cube"),
            "batch-processing-task-queue/plugin/cube"
        );
        assert_ne!(plugin_task_queue("q", "a"), plugin_task_queue("q", "b"));
        assert_ne!(plugin_task_queue("q1", "a"), plugin_task_queue("q2", "a"));
    }

    #[test]
    fn default_plugin_uses_the_demo_ids() {
        let data = data_workflow_id(
            1000,
            64,
            5,
            "json_field",
            None,
            &Tolerance::default(),
            "0123456789ab",
        );
        assert_eq!(
            data,
            "batch-processing-json_field.src0123456789ab-1000-batch64-c5"
        );
        let root = root_workflow_id(
            2000,
            10,
            5,
            "square_number",
            LeafMode::Item,
            None,
            &Tolerance::default(),
        );
        assert_eq!(root, "batch-processing-2000-b10-c5");
        assert_eq!(
            child_workflow_id(&child_workflow_id(&root, 0), 3),
            "batch-processing-2000-b10-c5-c0-c3"
        );
    }

    #[test]
    fn other_plugins_never_share_a_prefix_with_the_default() {
        let none = Tolerance::default();
        let id = |n, plugin, mode| root_workflow_id(n, 10, 5, plugin, mode, None, &none);
        let config = |text| PluginConfig::parse(text).expect("valid");
        let (a, b) = (config(r#"{"a":1}"#), config(r#"{"a":2}"#));
        let configured = |plugin, config| {
            root_workflow_id(2000, 10, 5, plugin, LeafMode::Item, Some(config), &none)
        };
        let tolerant = |max_failures, max_failure_ppm| {
            let tolerance = Tolerance {
                max_failures,
                max_failure_ppm,
                items: None,
            };
            root_workflow_id(
                2000,
                10,
                5,
                "square_number",
                LeafMode::Item,
                None,
                &tolerance,
            )
        };
        let cube = id(2000, "cube", LeafMode::Item);
        assert_eq!(cube, "batch-processing-cube-2000-b10-c5");
        let square = id(2000, "square_number", LeafMode::Item);
        let ids = [
            cube,
            square.clone(),
            id(2000, "square_number", LeafMode::Local),
            id(2000, "square_number", LeafMode::Batch),
            id(2000, "local", LeafMode::Item),
            id(2000, "batch", LeafMode::Batch),
            // The tree of n=2000 is not matched by the query for n=200.
            id(200, "square_number", LeafMode::Item),
            configured("square_number", &a),
            configured("square_number", &b),
            configured("cube", &a),
            tolerant(Some(5), None),
            tolerant(None, Some(10_000)),
            tolerant(Some(5), Some(10_000)),
            tolerant(Some(50), None),
        ];
        assert_eq!(ids[10], "batch-processing-square_number.f5-2000-b10-c5");
        assert_eq!(
            ids[12],
            "batch-processing-square_number.f5.r10000-2000-b10-c5"
        );
        assert_eq!(
            ids[7],
            format!(
                "batch-processing-square_number.cfg{}-2000-b10-c5",
                &a.digest[..12]
            )
        );
        assert_eq!(ids[2], "batch-processing-2000-local10-c5");
        assert_eq!(ids[3], "batch-processing-2000-batch10-c5");
        for a in &ids {
            for b in &ids {
                assert!(a == b || !a.starts_with(b.as_str()), "{a} vs {b}");
            }
        }
    }
}
