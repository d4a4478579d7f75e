//! The recursive tree workflow, as the demo describes it: a node whose range fits in a batch
//! is a leaf and runs the plugin over it (one activity per item by default); a larger node
//! starts one child per chunk of its range, in parallel, and merges their results. Every node
//! validates its own input, and keeps at most `max_in_flight` children or activities running.

use std::cell::RefCell;
use std::time::Duration;

use batch_core::ids::{child_workflow_id, plugin_task_queue};
use batch_core::plan::{ItemRange, NodePlan, plan_node, share_leaf_budget};
use batch_core::retry::child_items;
use batch_core::workflow_ref::{BatchWorkflowRef, PauseSignal};
use batch_core::{
    FailedItem, FailureKind, Failures, LeafMode, NodeInput, NodeResult, Outputs, PluginInfo,
};
use futures::FutureExt as _;
use temporalio_common::RetryPolicy;
use temporalio_common::data_converters::RawValue;
use temporalio_common::protos::temporal::api::failure::v1::Failure;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::{join_all, select};
use temporalio_sdk::{
    ActivityCancellationType, ActivityOptions, ApplicationFailure, ChildWorkflowOptions,
    LocalActivityOptions, ParentClosePolicy, SignalWorkflowOptions, SyncWorkflowContext,
    WorkflowCancellationToken, WorkflowContext, WorkflowContextView, WorkflowResult,
    WorkflowTermination,
};

use batch_core::output::Manifest;

use crate::activities::{ItemTask, ManifestTask, PluginActivities, RangeTask, SplitTask};
use crate::routing::{failure_kind, here_or_there};

/// The same policy for local activities (run by the leaf's own worker, recorded as markers).
/// The timeout covers a wait for a call slot behind other batches' calls; a lost worker is
/// noticed by the workflow task's own timeout, not by this one.
fn local_activity_options() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(ITEM_START_TO_CLOSE)
        .retry_policy(retry_policy())
        .build()
}

/// `batch` mode: a leaf may run for long, so liveness is checked by heartbeats (every 2 s
/// while computing) rather than by a short start-to-close timeout. A cancelled leaf waits
/// until its activity has stopped (it sees the cancellation at its next heartbeat), so a
/// cancelled batch's closing means its plugin calls have stopped.
fn range_activity_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(3600))
        .cancellation_type(ActivityCancellationType::WaitCancellationCompleted)
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(retry_policy())
        .build()
}

/// `options` for work re-sent to the plugin's own queue, which only holders of the plugin
/// poll. No schedule-to-start limit: like any activity, it waits there until such a worker is
/// free (or comes back), and the pending activity shows where it waits.
fn routed_options(mut options: ActivityOptions, queue: &str) -> ActivityOptions {
    options.task_queue = Some(queue.to_owned());
    options
}

fn retry_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(10))
        .maximum_attempts(5)
        .build()
}

/// How long an item may take once a worker has it, including its wait for one of the
/// worker's call slots (the plugin's own deadline is at most 20 s).
const ITEM_START_TO_CLOSE: Duration = Duration::from_secs(600);

/// Liveness of an item task: a worker that took it and died is noticed within this (as the
/// demo's 30 s start-to-close did); a live worker heartbeats while the item waits its turn.
const ITEM_HEARTBEAT: Duration = Duration::from_secs(30);

/// The demo's activity settings: activities wait in the queue as long as workers are busy,
/// and a bounded exponential retry. A worker that holds an item but is busy with other
/// batches' calls heartbeats, so an honest item never fails because of load.
fn item_activity_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(ITEM_START_TO_CLOSE)
        .heartbeat_timeout(ITEM_HEARTBEAT)
        .retry_policy(retry_policy())
        .build()
}

#[workflow]
#[derive(Default)]
pub struct BatchProcessingWorkflow {
    /// Set by the `pause` signal (`starter --pause`), cleared by `starter --resume`: while set,
    /// the node starts no new children, items or leaf activities, and it passes the signal on
    /// to the children it is waiting for. Work already running finishes.
    paused: bool,
}

#[workflow_methods]
impl BatchProcessingWorkflow {
    /// Input is taken raw and decoded here: input that does not decode then fails the
    /// workflow with the reason, instead of failing its task and retrying forever.
    #[run(name = "BatchProcessingWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: RawValue,
    ) -> WorkflowResult<NodeResult> {
        let mut node = decode_input(input)?;
        node.validate()
            .map_err(|e| invalid_input(format!("invalid batch input: {e}")))?;
        if node.depth == 0 {
            // A range batch's items are known from the start, so its ratio bounds failures
            // from the start; a data batch's are known only at its end.
            node.config.tolerance.items = match node.config.source {
                None => Some(node.range().len()),
                Some(_) => None,
            };
        }
        if node.config.plugin.digest.is_none() {
            // Pin the batch to the plugin's current version: every leaf runs this digest.
            let name = node.config.plugin.name.clone();
            // This worker lacks the plugin but others serve it: ask one of them. If they all
            // went away meanwhile, say so within a minute rather than wait forever.
            let there = || {
                let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
                    .task_queue(plugin_task_queue(ctx.task_queue(), &name))
                    .schedule_to_start_timeout(Duration::from_secs(60))
                    .retry_policy(retry_policy())
                    .build();
                ctx.execute_activity(PluginActivities::resolve_plugin, name.clone(), options)
            };
            let here = ctx.execute_activity(
                PluginActivities::resolve_plugin,
                name.clone(),
                item_activity_options(),
            );
            let resolved = here_or_there(here, FailureKind::PluginHeldElsewhere, there).await;
            node.config.plugin = resolved.map_err(|e| {
                fail(format!(
                    "cannot use plugin {:?}: {}",
                    node.config.plugin.name,
                    deepest_message(e.failure(), &e)
                ))
            })?;
        }
        let result = match plan_node(
            node.range(),
            node.config.batch_size,
            node.config.max_children,
        ) {
            NodePlan::Leaf(range) if node.config.source.is_some() => {
                run_split(ctx, &node, range).await
            }
            NodePlan::Leaf(range) => match node.config.mode {
                LeafMode::Item | LeafMode::Local => run_items(ctx, &node, range).await,
                LeafMode::Batch => run_range(ctx, &node, range).await,
            },
            NodePlan::Split(children) => run_children(ctx, &node, children).await,
        };
        // A cancelled batch ends cancelled, not failed, whatever its cancelled work reported.
        if ctx.cancellation_token().is_cancelled() {
            return Err(WorkflowTermination::cancelled());
        }
        let result = result?;
        if node.depth == 0 {
            let f = &result.failures;
            let items = result.outputs.count + f.count;
            node.config
                .tolerance
                .check_final(f.count, items)
                .map_err(|reason| tolerance_failure(format!("{reason}{}", f.first_failed())))?;
            if let Some(output) = &node.config.output {
                write_manifest(ctx, output, &result).await?;
            }
        }
        Ok(result)
    }

    /// Pauses (`true`) or resumes (`false`) this node and, through it, its subtree.
    #[signal(name = "pause")]
    pub fn pause(&mut self, _ctx: &mut SyncWorkflowContext<Self>, paused: bool) {
        self.paused = paused;
    }

    /// Whether this node is paused.
    #[query(name = "paused")]
    pub fn is_paused(&self, _ctx: &WorkflowContextView) -> bool {
        self.paused
    }
}

/// Waits while the node is paused. A cancelled batch stops waiting, cancelled.
async fn unpaused(ctx: &WorkflowContext<BatchProcessingWorkflow>) -> WorkflowResult<()> {
    ctx.wait_condition(|node| !node.paused)
        .await
        .map_err(|_| WorkflowTermination::cancelled())
}

/// Passes every change of the node's pause to `children` (the wave it is waiting for), for as
/// long as it is polled: each running child pauses its own subtree in turn. A child that has
/// already finished cannot be signalled, and has nothing to pause.
async fn forward_pause(ctx: &WorkflowContext<BatchProcessingWorkflow>, children: &[String]) {
    let mut forwarded = false;
    loop {
        if ctx
            .wait_condition(|node| node.paused != forwarded)
            .await
            .is_err()
        {
            // Cancelled: the children are cancelled too; nothing more to pass on.
            return std::future::pending().await;
        }
        forwarded = !forwarded;
        let handles: Vec<_> = children
            .iter()
            .map(|id| ctx.external_workflow(id.clone(), None))
            .collect();
        let signals = handles
            .iter()
            .map(|handle| handle.signal(PauseSignal, forwarded, SignalWorkflowOptions::default()));
        let _ = join_all(signals).await;
    }
}

/// A data batch's leaf: one activity reads its split, runs the plugin over the records and
/// writes the split's part ([`crate::activities::SplitTask`]).
async fn run_split(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &NodeInput,
    range: ItemRange,
) -> WorkflowResult<NodeResult> {
    let plugin = &node.config.plugin;
    let Some(source) = node.config.source.clone() else {
        return Err(invalid_input("a split needs a data source".into()));
    };
    unpaused(ctx).await?;
    let (first, last) = task_span(node, range);
    let task = SplitTask {
        plugin: plugin.clone(),
        config: node.config.plugin_config.clone(),
        source,
        first,
        last,
        output: node.config.output.clone(),
        tolerance: node.config.tolerance,
        items: node.items.clone(),
    };
    let queue = plugin_task_queue(ctx.task_queue(), &plugin.name);
    let there = || {
        ctx.execute_activity(
            PluginActivities::process_split,
            task.clone(),
            routed_options(range_activity_options(), &queue),
        )
    };
    let here = ctx.execute_activity(
        PluginActivities::process_split,
        task.clone(),
        range_activity_options(),
    );
    let outcome = here_or_there(here, FailureKind::PluginVersionUnavailable, there)
        .await
        .map_err(|e| range_failed(range, e.failure(), &e))?;
    let mut result = NodeResult::leaf(range, node.depth, node.config.clone(), outcome.outputs, 1);
    result.parts.extend(outcome.part);
    result.failures = outcome.failures;
    result.failed_parts.extend(outcome.failed_part);
    Ok(result)
}

/// The root of a data batch with an output writes the manifest once every part is written:
/// its presence marks the output complete.
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
    ctx.execute_activity(
        PluginActivities::write_manifest,
        task,
        item_activity_options(),
    )
    .await
    .map_err(|e| {
        fail(format!(
            "every part is written, but not the manifest: {}",
            deepest_message(e.failure(), &e)
        ))
    })
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
                        routed_options(item_activity_options(), plugin_queue),
                    )
                };
                match mode {
                    LeafMode::Local => {
                        let here = ctx.execute_local_activity(
                            PluginActivities::process_item,
                            task.clone(),
                            local_activity_options(),
                        );
                        here_or_there(here, FailureKind::PluginVersionUnavailable, there).await
                    }
                    LeafMode::Item | LeafMode::Batch => {
                        let here = ctx.execute_activity(
                            PluginActivities::process_item,
                            task.clone(),
                            item_activity_options(),
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

/// `batch` mode: one activity runs the plugin over the whole range and returns the statistics.
async fn run_range(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &NodeInput,
    range: ItemRange,
) -> WorkflowResult<NodeResult> {
    let plugin = &node.config.plugin;
    unpaused(ctx).await?;
    let (first, last) = task_span(node, range);
    let task = RangeTask {
        plugin: plugin.clone(),
        first,
        last,
        config: node.config.plugin_config.clone(),
        tolerance: node.config.tolerance,
        items: node.items.clone(),
    };
    let queue = plugin_task_queue(ctx.task_queue(), &plugin.name);
    let there = || {
        ctx.execute_activity(
            PluginActivities::process_range,
            task.clone(),
            routed_options(range_activity_options(), &queue),
        )
    };
    let here = ctx.execute_activity(
        PluginActivities::process_range,
        task.clone(),
        range_activity_options(),
    );
    let outcome = here_or_there(here, FailureKind::PluginVersionUnavailable, there)
        .await
        .map_err(|e| range_failed(range, e.failure(), &e))?;
    let mut result = NodeResult::leaf(range, node.depth, node.config.clone(), outcome.outputs, 1);
    result.failures = outcome.failures;
    Ok(result)
}

fn window(node: &NodeInput) -> usize {
    usize::try_from(node.config.max_in_flight.max(1)).unwrap_or(usize::MAX)
}

/// One child per chunk, started in waves of at most `max_in_flight`, then merged in item order.
async fn run_children(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &NodeInput,
    children: Vec<ItemRange>,
) -> WorkflowResult<NodeResult> {
    let parent_id = ctx.workflow_id().to_owned();
    let indexed: Vec<(usize, ItemRange)> = children.iter().copied().enumerate().collect();
    let mut merged = Vec::with_capacity(children.len());
    // The batch-wide leaf budget and the node's own window both cap the children running at
    // once: start a wave, wait for it, start the next.
    let share = share_leaf_budget(node.leaf_budget(), children.len());
    let tolerance = node.config.tolerance;
    // Failed items of the children finished so far. When they exceed the tolerance, or a
    // child fails, or the batch is cancelled, `stop` fires and this node closes at once
    // without waiting for its running children: the server then terminates them (the
    // parent-close policy), and so on down the tree. Children are never cancelled through the
    // SDK (their token is never cancelled): a cancellation racing a child's start could leave
    // the start unresolved and the node waiting forever.
    let failed = std::cell::Cell::new(0u64);
    let stop = ctx.cancellation_token().child_token();
    let never_cancelled = WorkflowCancellationToken::new();
    for wave in indexed.chunks(window(node).min(share.at_once)) {
        unpaused(ctx).await?;
        let starts = wave.iter().map(|&(index, range)| {
            let input = NodeInput {
                first: range.first,
                last: range.last,
                depth: node.depth + 1,
                config: node.config.clone(),
                leaf_budget: Some(share.per_child),
                items: node
                    .items
                    .as_ref()
                    .map(|items| child_items(items, node.first, range.first, range.last)),
            };
            let options = ChildWorkflowOptions::builder()
                .workflow_id(child_workflow_id(&parent_id, index))
                .cancellation_token(never_cancelled.clone())
                .parent_close_policy(ParentClosePolicy::Terminate)
                .static_summary(format!(
                    "items {}..={} (depth {}, {} mode, plugin {})",
                    range.first,
                    range.last,
                    node.depth + 1,
                    node.config.mode,
                    node.config.plugin.display_short()
                ))
                .build();
            ctx.start_child_workflow(BatchWorkflowRef, input, options)
        });
        let mut started = Vec::with_capacity(wave.len());
        for (&(_, range), start) in wave.iter().zip(join_all(starts).await) {
            let child = start.map_err(|e| {
                fail(format!(
                    "cannot start the child for items {}..={}: {e}",
                    range.first, range.last
                ))
            })?;
            started.push(child);
        }
        let ids: Vec<String> = wave
            .iter()
            .map(|&(index, _)| child_workflow_id(&parent_id, index))
            .collect();
        // Each child's result as it arrives; the first failure's reason is kept.
        let done: RefCell<Vec<Option<NodeResult>>> = RefCell::new(vec![None; wave.len()]);
        let first_failure: RefCell<Option<String>> = RefCell::new(None);
        let results = join_all(started.into_iter().zip(wave).enumerate().map(
            |(slot, (child, &(_, range)))| {
                let (failed, stop, done, first_failure) = (&failed, &stop, &done, &first_failure);
                async move {
                    match child.result().await {
                        Ok(result) => {
                            failed.set(failed.get() + result.failures.count);
                            done.borrow_mut()[slot] = Some(result);
                            if tolerance.exceeded_by(failed.get()) {
                                stop.cancel();
                            }
                        }
                        Err(e) => {
                            first_failure.borrow_mut().get_or_insert_with(|| {
                                format!(
                                    "items {}..={}: {}",
                                    range.first,
                                    range.last,
                                    deepest_message(e.failure(), &e)
                                )
                            });
                            stop.cancel();
                        }
                    }
                }
            },
        ))
        .fuse();
        let forwarding = forward_pause(ctx, &ids).fuse();
        let stopped = stop.cancelled();
        let (mut results, mut forwarding, mut stopped) = (
            std::pin::pin!(results),
            std::pin::pin!(forwarding),
            std::pin::pin!(stopped),
        );
        select! {
            _ = results => {},
            () = stopped => {},
            () = forwarding => unreachable!("passing pauses on never ends"),
        };
        if ctx.cancellation_token().is_cancelled() {
            return Err(WorkflowTermination::cancelled());
        }
        if let Some(reason) = first_failure.borrow_mut().take() {
            return Err(fail(reason));
        }
        let finished: Vec<NodeResult> = done.borrow_mut().drain(..).flatten().collect();
        let complete = finished.len() == wave.len();
        merged.extend(finished);
        let so_far = merged
            .iter()
            .fold(Failures::default(), |all, r| all.then(r.failures.clone()));
        if tolerance.exceeded_by(so_far.count) || !complete {
            return Err(tolerance_failure(
                so_far.exceeded_message(&tolerance, node.first, node.last),
            ));
        }
    }
    Ok(NodeResult::merge(
        node.range(),
        node.depth,
        node.config.clone(),
        merged,
    ))
}

fn decode_input(input: RawValue) -> Result<NodeInput, WorkflowTermination> {
    let payload = match input.payloads.as_slice() {
        [payload] if !payload.data.is_empty() => payload,
        [] | [_] => return Err(invalid_input("missing batch input".into())),
        many => {
            return Err(invalid_input(format!(
                "expected one input argument, got {}",
                many.len()
            )));
        }
    };
    serde_json::from_slice(&payload.data).map_err(|e| {
        invalid_input(format!(
            "batch input is not a valid node input ({e}); expected JSON like \
             {{\"first\":1,\"last\":2000,\"config\":{{\"batch_size\":10,\"max_children\":5,\
             \"plugin\":{{\"name\":\"square_number\"}}}}}}"
        ))
    })
}

/// A workflow's failure of `kind`: final (Temporal already retried what could be retried),
/// with `message`.
fn terminate(kind: FailureKind, message: String) -> WorkflowTermination {
    ApplicationFailure::builder(anyhow::anyhow!(message))
        .type_name(kind.as_str().to_owned())
        .non_retryable(true)
        .build()
        .into()
}

/// Bad input never gets better: fail the workflow for good, with the reason.
fn invalid_input(message: String) -> WorkflowTermination {
    terminate(FailureKind::InvalidBatchInput, message)
}

/// A node fails when a child or an item has failed for good, with the innermost reason.
fn fail(message: String) -> WorkflowTermination {
    terminate(FailureKind::BatchNodeFailed, message)
}

/// The batch's failed items exceed its tolerance: the kind a client can tell from others.
fn tolerance_failure(message: String) -> WorkflowTermination {
    terminate(FailureKind::BatchToleranceExceeded, message)
}

/// A part of the range failed for good: say which items, and the innermost reason.
fn range_failed(
    range: ItemRange,
    failure: Option<&Failure>,
    error: &dyn std::fmt::Display,
) -> WorkflowTermination {
    fail(format!(
        "items {}..={}: {}",
        range.first,
        range.last,
        deepest_message(failure, error)
    ))
}

/// The innermost cause's message: what the plugin or the failing descendant said, without
/// the "Activity failed" / "Child workflow failed" wrappers.
fn deepest_message(failure: Option<&Failure>, fallback: &dyn std::fmt::Display) -> String {
    let Some(mut failure) = failure else {
        return fallback.to_string();
    };
    while let Some(cause) = failure.cause.as_deref() {
        failure = cause;
    }
    failure.message.clone()
}

/// Lists the plugins of the worker that runs it, so a starter on another machine can ask
/// "what can I run?" through Temporal.
#[workflow]
#[derive(Default)]
pub struct ListPluginsWorkflow;

#[workflow_methods]
impl ListPluginsWorkflow {
    #[run(name = "ListPlugins")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<Vec<PluginInfo>> {
        let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
            .retry_policy(RetryPolicy::builder().maximum_attempts(3).build())
            .build();
        Ok(ctx
            .execute_activity(PluginActivities::list_plugins, (), options)
            .await?)
    }
}
