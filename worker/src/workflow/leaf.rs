//! A leaf runs the plugin over its items: one activity per item (`item` and `local` modes),
//! or one activity for the whole leaf (`batch` mode over a range, and every data split).
//! Every plugin call runs on this worker first and, when it lacks the pinned version, again
//! on the plugin's own queue ([`crate::routing::here_or_there`]).

use batch_core::ids::plugin_task_queue;
use batch_core::output_format::{SCHEMA_SAMPLE_BYTES, SCHEMA_SAMPLE_RECORDS};
use batch_core::plan::ItemRange;
use batch_core::{FailedItem, FailureKind, Failures, LeafMode, NodeInput, NodeResult, Outputs};
use temporalio_common::ActivityDefinition;
use temporalio_common::data_converters::TemporalDeserializable;
use temporalio_sdk::workflows::join_all;
use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::failure::{deepest_message, fail, invalid_input, range_failed, tolerance_failure};
use super::{BatchProcessingWorkflow, options, unpaused, window};
use crate::activities::{ItemTask, PluginActivities, RangeTask, SplitTask};
use crate::routing::{failure_kind, here_or_there};

/// Runs the leaf `range` of `node` as its source and mode say.
pub(super) async fn run(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &NodeInput,
    range: ItemRange,
) -> WorkflowResult<NodeResult> {
    if node.config.source.is_some() {
        return run_split(ctx, node, range).await;
    }
    match node.config.mode {
        LeafMode::Item | LeafMode::Local => run_items(ctx, node, range).await,
        LeafMode::Batch => run_range(ctx, node, range).await,
    }
}

/// The one activity of a leaf that runs as a whole (`activity`, with `task`), once the node
/// is not paused. Its failure fails the leaf, naming its items.
async fn run_whole<AD>(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &NodeInput,
    range: ItemRange,
    activity: impl Fn() -> AD,
    task: AD::Input,
) -> WorkflowResult<AD::Output>
where
    AD: ActivityDefinition,
    AD::Input: Clone,
    AD::Output: TemporalDeserializable,
{
    let queue = plugin_task_queue(ctx.task_queue(), &node.config.plugin.name);
    let there = || {
        ctx.execute_activity(
            activity(),
            task.clone(),
            options::routed(options::leaf(), &queue),
        )
    };
    let here = ctx.execute_activity(activity(), task.clone(), options::leaf());
    here_or_there(here, FailureKind::PluginVersionUnavailable, there)
        .await
        .map_err(|e| range_failed(range, e.failure(), &e))
}

/// A data batch's leaf: one activity reads its split, runs the plugin over the records and
/// writes the split's part ([`SplitTask`]).
async fn run_split(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &NodeInput,
    range: ItemRange,
) -> WorkflowResult<NodeResult> {
    let Some(source) = node.config.source.clone() else {
        return Err(invalid_input("a split needs a data source".into()));
    };
    unpaused(ctx).await?;
    let (first, last) = task_span(node, range);
    let task = split_task(node, source, first, last, node.items.clone());
    let outcome = run_whole(ctx, node, range, || PluginActivities::process_split, task).await?;
    let mut result = NodeResult::leaf(range, node.depth, node.config.clone(), outcome.outputs, 1);
    result.parts.extend(outcome.part);
    result.failures = outcome.failures;
    result.failed_parts.extend(outcome.failed_part);
    Ok(result)
}

/// A Parquet output without a given schema: the root infers it from the outputs of the
/// source's first records (a split of at most [`SCHEMA_SAMPLE_BYTES`], or the first
/// [`SCHEMA_SAMPLE_RECORDS`] of a retry's list), run as a leaf is, writing nothing. Every part
/// is then written with that one schema.
pub(super) async fn infer_output_schema(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &NodeInput,
) -> WorkflowResult<String> {
    let Some(source) = node.config.source.clone() else {
        return Err(invalid_input("an output needs a data source".into()));
    };
    let (items, first, last) = match node.items.as_deref() {
        Some(list) => {
            let sample = &list[..list.len().min(SCHEMA_SAMPLE_RECORDS)];
            let (first, last) = (sample[0], sample[sample.len() - 1]);
            (Some(sample.to_vec()), first, last)
        }
        None => {
            let last = node
                .last
                .min(node.first.saturating_add(SCHEMA_SAMPLE_BYTES - 1));
            (None, node.first, last)
        }
    };
    // Writes nothing.
    let task = SplitTask {
        output: None,
        ..split_task(node, source, first, last, items)
    };
    let range = ItemRange::new(first, last);
    run_whole(
        ctx,
        node,
        range,
        || PluginActivities::infer_output_schema,
        task,
    )
    .await
}

/// The task of the split `first..=last` of `node`'s `source` (`items`, a retry's).
fn split_task(
    node: &NodeInput,
    source: batch_core::DataSource,
    first: u64,
    last: u64,
    items: Option<Vec<u64>>,
) -> SplitTask {
    SplitTask {
        plugin: node.config.plugin.clone(),
        config: node.config.plugin_config.clone(),
        source,
        first,
        last,
        output: node.config.output.clone(),
        output_encoding: node.config.output_encoding.clone(),
        tolerance: node.config.tolerance,
        items,
        http: node.config.http_task(),
    }
}

/// `batch` mode: one activity runs the plugin over the whole range and returns the statistics.
async fn run_range(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &NodeInput,
    range: ItemRange,
) -> WorkflowResult<NodeResult> {
    unpaused(ctx).await?;
    let (first, last) = task_span(node, range);
    let task = RangeTask {
        plugin: node.config.plugin.clone(),
        first,
        last,
        config: node.config.plugin_config.clone(),
        tolerance: node.config.tolerance,
        items: node.items.clone(),
        http: node.config.http_task(),
    };
    let outcome = run_whole(ctx, node, range, || PluginActivities::process_range, task).await?;
    let mut result = NodeResult::leaf(range, node.depth, node.config.clone(), outcome.outputs, 1);
    result.failures = outcome.failures;
    Ok(result)
}

/// `item` and `local` modes: one (local) activity per item, at most `max_in_flight` at once;
/// outputs are aggregated in item order.
async fn run_items(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &NodeInput,
    range: ItemRange,
) -> WorkflowResult<NodeResult> {
    let plugin = &node.config.plugin;
    let mode = node.config.mode;
    let plugin_queue = plugin_task_queue(ctx.task_queue(), &plugin.name);
    let items = leaf_items(node, range);
    let mut results = Vec::with_capacity(items.len());
    for wave in items.chunks(window(node)) {
        unpaused(ctx).await?;
        let calls = wave.iter().map(|&item| {
            let task = ItemTask {
                plugin: plugin.clone(),
                item,
                config: node.config.plugin_config.clone(),
            };
            let plugin_queue = &plugin_queue;
            async move {
                let there = || {
                    ctx.execute_activity(
                        PluginActivities::process_item,
                        task.clone(),
                        options::routed(options::item(), plugin_queue),
                    )
                };
                match mode {
                    LeafMode::Local => {
                        let here = ctx.execute_local_activity(
                            PluginActivities::process_item,
                            task.clone(),
                            options::local_item(),
                        );
                        here_or_there(here, FailureKind::PluginVersionUnavailable, there).await
                    }
                    LeafMode::Item | LeafMode::Batch => {
                        let here = ctx.execute_activity(
                            PluginActivities::process_item,
                            task.clone(),
                            options::item(),
                        );
                        here_or_there(here, FailureKind::PluginVersionUnavailable, there).await
                    }
                }
            }
        });
        results.extend(join_all(calls).await);
    }
    let tolerance = &node.config.tolerance;
    let mut outputs = Outputs::default();
    let mut failures = Failures::default();
    // Failures that are not an item's own (or any, when nothing is tolerated) fail the leaf.
    let mut fatal = Vec::new();
    for (&item, result) in items.iter().zip(results) {
        match result {
            Ok(output) => outputs.add_outcome(output),
            Err(e) => {
                let reason = deepest_message(e.failure(), &e);
                match failure_kind(e.failure()) {
                    Some(kind) if !tolerance.is_none() && kind.is_item_failure() => {
                        failures.push(FailedItem::new(item, kind, &reason));
                    }
                    _ => fatal.push((item, reason)),
                }
            }
        }
    }
    if let Some((item, reason)) = fatal.first() {
        return Err(fail(format!(
            "{} of {} items in {}..={} failed; first, item {item}: {reason}",
            fatal.len() as u64 + failures.count,
            range.len(),
            range.first,
            range.last
        )));
    }
    if tolerance.exceeded_by(failures.count) {
        return Err(tolerance_failure(failures.exceeded_message(
            tolerance,
            range.first,
            range.last,
        )));
    }
    let mut result = NodeResult::leaf(range, node.depth, node.config.clone(), outputs, range.len());
    result.failures = failures;
    Ok(result)
}

/// A leaf's items: its range, or a retry batch's list.
fn leaf_items(node: &NodeInput, range: ItemRange) -> Vec<u64> {
    match &node.items {
        Some(items) => items.clone(),
        None => range.items().collect(),
    }
}

/// The item indexes a leaf's activity covers: its range, or the span of its list (whose
/// items the task lists).
fn task_span(node: &NodeInput, range: ItemRange) -> (u64, u64) {
    match node.items.as_deref() {
        Some([first, .., last]) => (*first, *last),
        Some([only]) => (*only, *only),
        _ => (range.first, range.last),
    }
}
