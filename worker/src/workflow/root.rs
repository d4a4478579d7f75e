//! What only the root of a batch does: before the tree, pin the plugin's version and fix a
//! range batch's item count for its tolerance; after it, check the final tolerance and write
//! a data batch's manifest.

use batch_core::ids::plugin_task_queue;
use batch_core::output::Manifest;
use batch_core::{FailureKind, NodeInput, NodeResult, TreeShape};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::BatchProcessingWorkflow;
use super::failure::{deepest_message, fail, invalid_input, tolerance_failure};
use super::options;
use crate::activities::{ManifestTask, PluginActivities};
use crate::routing::here_or_there;

/// A range batch's items are known from the start, so its ratio bounds failures from the
/// start; a data batch's are known only at its end.
pub(super) fn prepare(node: &mut NodeInput) {
    node.config.tolerance.items = match node.config.source {
        None => Some(node.range().len()),
        Some(_) => None,
    };
}

/// Pins the batch to the plugin's current version: every leaf runs this digest. A worker
/// that lacks the plugin asks one that holds it; if they all went away meanwhile, the batch
/// says so within a minute rather than wait forever.
pub(super) async fn pin_plugin(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &mut NodeInput,
) -> WorkflowResult<()> {
    let name = node.config.plugin.name.clone();
    let there = || {
        ctx.execute_activity(
            PluginActivities::resolve_plugin,
            name.clone(),
            options::resolve_elsewhere(plugin_task_queue(ctx.task_queue(), &name)),
        )
    };
    let here = ctx.execute_activity(
        PluginActivities::resolve_plugin,
        name.clone(),
        options::item(),
    );
    let resolved = here_or_there(here, FailureKind::PluginHeldElsewhere, there).await;
    node.config.plugin = resolved.map_err(|e| {
        fail(format!(
            "cannot use plugin {name:?}: {}",
            deepest_message(e.failure(), &e)
        ))
    })?;
    Ok(())
}

/// Loads the version a batch was started pinned to, on a worker that can: one that lacks it
/// (without a store) asks the plugin's queue, as for a name, within a minute.
pub(super) async fn check_pinned(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &NodeInput,
) -> WorkflowResult<()> {
    let plugin = node.config.plugin.clone();
    let there = || {
        ctx.execute_activity(
            PluginActivities::check_plugin,
            plugin.clone(),
            options::resolve_elsewhere(plugin_task_queue(ctx.task_queue(), &plugin.name)),
        )
    };
    let here = ctx.execute_activity(
        PluginActivities::check_plugin,
        plugin.clone(),
        options::item(),
    );
    here_or_there(here, FailureKind::PluginVersionUnavailable, there)
        .await
        .map_err(|e| {
            fail(format!(
                "cannot use plugin {}: {}",
                plugin.display_short(),
                deepest_message(e.failure(), &e)
            ))
        })?;
    Ok(())
}

/// A batch that calls services: names the batch its requests are for (a retry batch, the batch
/// it retries, so an item keeps its keys), then checks that a worker grants every host it
/// asks for, so an ungranted host fails the batch, named, before any item runs.
pub(super) async fn check_http(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &mut NodeInput,
) -> WorkflowResult<()> {
    let batch = match &node.config.retry_of {
        Some(retry) => retry.batch.clone(),
        None => ctx.workflow_id().to_owned(),
    };
    let shape = TreeShape::of(
        node.range().len(),
        node.config.batch_size,
        node.config.max_children,
    );
    if let Some(http) = node.config.http.as_mut() {
        http.batch = Some(batch);
        http.leaves = Some(shape.leaves);
    }
    let Some(task) = node.config.http_task() else {
        return Ok(());
    };
    ctx.execute_activity(PluginActivities::check_http, task, options::item())
        .await
        .map_err(|e| {
            fail(format!(
                "cannot call services: {}",
                deepest_message(e.failure(), &e)
            ))
        })
}

/// The whole batch's result against its tolerance, then, with an output, the manifest.
pub(super) async fn finish(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &NodeInput,
    result: &NodeResult,
) -> WorkflowResult<()> {
    let f = &result.failures;
    let items = result.outputs.count + f.count;
    node.config
        .tolerance
        .check_final(f.count, items)
        .map_err(|reason| tolerance_failure(format!("{reason}{}", f.first_failed())))?;
    match &node.config.output {
        Some(output) => write_manifest(ctx, output, result).await,
        None => Ok(()),
    }
}

/// A data batch with an output gets its manifest once every part is written: its presence
/// marks the output complete.
async fn write_manifest(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    output: &str,
    result: &NodeResult,
) -> WorkflowResult<()> {
    // The workflow's own clock: the same on every replay.
    let time = |t: Option<std::time::SystemTime>| {
        t.map(|t| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
        .unwrap_or_default()
    };
    let started = time(ctx.info().start_time());
    let finished = time(ctx.workflow_time());
    let Some(manifest) = Manifest::of(ctx.workflow_id(), result, started, finished) else {
        return Err(invalid_input("--output needs a data source".into()));
    };
    let task = ManifestTask {
        output: output.to_owned(),
        manifest,
    };
    ctx.execute_activity(PluginActivities::write_manifest, task, options::item())
        .await
        .map_err(|e| {
            fail(format!(
                "every part is written, but not the manifest: {}",
                deepest_message(e.failure(), &e)
            ))
        })
}
