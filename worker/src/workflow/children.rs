//! A node too large to be a leaf: one child per chunk of its range, started in waves of at
//! most `max_in_flight` (and the node's share of the batch-wide leaf budget), merged in item
//! order.
//!
//! When the failed items of the children so far exceed the tolerance, or a child fails, or
//! the batch is cancelled, the node closes at once without waiting for its running children:
//! the server then terminates them (the parent-close policy), and so on down the tree.
//! Children are never cancelled through the SDK (their token is never cancelled): a
//! cancellation racing a child's start could leave the start unresolved and the node waiting
//! forever.

use std::cell::{Cell, RefCell};

use batch_core::ids::child_workflow_id;
use batch_core::plan::{ItemRange, LeafBudget, share_leaf_budget};
use batch_core::retry::child_items;
use batch_core::workflow_ref::{BatchWorkflowRef, PauseSignal};
use batch_core::{Failures, NodeInput, NodeResult, Tolerance};
use futures::FutureExt as _;
use temporalio_sdk::workflows::{join_all, select};
use temporalio_sdk::{
    ChildWorkflowOptions, ParentClosePolicy, SignalWorkflowOptions, StartedChildWorkflow,
    WorkflowCancellationToken, WorkflowContext, WorkflowResult, WorkflowTermination,
};

use super::failure::{deepest_message, fail, tolerance_failure};
use super::{BatchProcessingWorkflow, unpaused, window};

/// Runs the children of `node`, one per range of `children`, wave by wave.
pub(super) async fn run(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &NodeInput,
    children: Vec<ItemRange>,
) -> WorkflowResult<NodeResult> {
    let indexed: Vec<(usize, ItemRange)> = children.iter().copied().enumerate().collect();
    let share = share_leaf_budget(node.leaf_budget(), children.len());
    let tally = Tally {
        tolerance: node.config.tolerance,
        failed: Cell::new(0),
        stop: ctx.cancellation_token().child_token(),
    };
    let never_cancelled = WorkflowCancellationToken::new();
    let mut merged = Vec::with_capacity(children.len());
    // The batch-wide leaf budget and the node's own window both cap the children running at
    // once: start a wave, wait for it, start the next.
    for wave in indexed.chunks(window(node).min(share.at_once)) {
        unpaused(ctx).await?;
        let started = start_wave(ctx, node, wave, share, &never_cancelled).await?;
        let (finished, first_failure) = await_wave(ctx, wave, started, &tally).await;
        if ctx.cancellation_token().is_cancelled() {
            return Err(WorkflowTermination::cancelled());
        }
        if let Some(reason) = first_failure {
            return Err(fail(reason));
        }
        let complete = finished.len() == wave.len();
        merged.extend(finished);
        let so_far = merged
            .iter()
            .fold(Failures::default(), |all, r| all.then(r.failures.clone()));
        if tally.tolerance.exceeded_by(so_far.count) || !complete {
            return Err(tolerance_failure(so_far.exceeded_message(
                &tally.tolerance,
                node.first,
                node.last,
            )));
        }
    }
    Ok(NodeResult::merge(
        node.range(),
        node.depth,
        node.config.clone(),
        merged,
    ))
}

/// The failed items of the children finished so far, and the token that stops the node's
/// wait when they exceed the tolerance or a child fails.
struct Tally {
    tolerance: Tolerance,
    failed: Cell<u64>,
    stop: WorkflowCancellationToken,
}

/// The input of the child of `node` for `range`: the same batch, one level down, with its
/// share of the leaf budget and (for a retry batch) its part of the list.
fn child_input(node: &NodeInput, range: ItemRange, share: LeafBudget) -> NodeInput {
    NodeInput {
        first: range.first,
        last: range.last,
        depth: node.depth + 1,
        config: node.config.clone(),
        leaf_budget: Some(share.per_child),
        items: node
            .items
            .as_ref()
            .map(|items| child_items(items, node.first, range.first, range.last)),
    }
}

/// The child's id (the demo's), its close policy, and what the Web UI shows for it.
fn child_options(
    parent_id: &str,
    index: usize,
    node: &NodeInput,
    range: ItemRange,
    token: &WorkflowCancellationToken,
) -> ChildWorkflowOptions {
    ChildWorkflowOptions::builder()
        .workflow_id(child_workflow_id(parent_id, index))
        .cancellation_token(token.clone())
        .parent_close_policy(ParentClosePolicy::Terminate)
        .static_summary(format!(
            "items {}..={} (depth {}, {} mode, plugin {})",
            range.first,
            range.last,
            node.depth + 1,
            node.config.mode,
            node.config.plugin.display_short()
        ))
        .build()
}

/// Starts the children of one wave; a child that cannot start fails the node.
async fn start_wave(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    node: &NodeInput,
    wave: &[(usize, ItemRange)],
    share: LeafBudget,
    never_cancelled: &WorkflowCancellationToken,
) -> WorkflowResult<Vec<StartedChildWorkflow<BatchWorkflowRef>>> {
    let parent_id = ctx.workflow_id().to_owned();
    let starts = wave.iter().map(|&(index, range)| {
        let input = child_input(node, range, share);
        let options = child_options(&parent_id, index, node, range, never_cancelled);
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
    Ok(started)
}

/// Waits for a wave's children, passing pauses on, until all have finished or the node is
/// stopped (cancelled, a child failed, or the tolerance exceeded). Returns the results of the
/// children that finished, in order, and the first failure's reason.
async fn await_wave(
    ctx: &WorkflowContext<BatchProcessingWorkflow>,
    wave: &[(usize, ItemRange)],
    started: Vec<StartedChildWorkflow<BatchWorkflowRef>>,
    tally: &Tally,
) -> (Vec<NodeResult>, Option<String>) {
    let parent_id = ctx.workflow_id().to_owned();
    let ids: Vec<String> = wave
        .iter()
        .map(|&(index, _)| child_workflow_id(&parent_id, index))
        .collect();
    // Each child's result as it arrives; the first failure's reason is kept.
    let done: RefCell<Vec<Option<NodeResult>>> = RefCell::new(vec![None; wave.len()]);
    let first_failure: RefCell<Option<String>> = RefCell::new(None);
    let results = join_all(started.into_iter().zip(wave).enumerate().map(
        |(slot, (child, &(_, range)))| {
            let (done, first_failure) = (&done, &first_failure);
            async move {
                match child.result().await {
                    Ok(result) => {
                        tally.failed.set(tally.failed.get() + result.failures.count);
                        done.borrow_mut()[slot] = Some(result);
                        if tally.tolerance.exceeded_by(tally.failed.get()) {
                            tally.stop.cancel();
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
                        tally.stop.cancel();
                    }
                }
            }
        },
    ))
    .fuse();
    let forwarding = forward_pause(ctx, &ids).fuse();
    let stopped = tally.stop.cancelled();
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
    let finished = done.take().into_iter().flatten().collect();
    (finished, first_failure.take())
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
