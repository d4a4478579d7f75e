//! The recursive tree workflow, as the demo describes it: a node whose range fits in a batch
//! is a leaf and runs the plugin over it (`leaf`); a larger node starts one child per chunk
//! of its range, in parallel, and merges their results (`children`). Every node validates
//! its own input, and keeps at most `max_in_flight` children or activities running; the root
//! alone has duties before and after the tree (`root`).

mod children;
mod failure;
mod leaf;
mod options;
mod root;

use batch_core::plan::{NodePlan, plan_node};
use batch_core::{NodeInput, NodeResult, PluginInfo};
use temporalio_common::data_converters::RawValue;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult, WorkflowTermination,
};

use crate::activities::PluginActivities;
use failure::invalid_input;

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
            root::prepare(&mut node);
        }
        if node.config.plugin.digest.is_none() {
            root::pin_plugin(ctx, &mut node).await?;
        } else if node.depth == 0 {
            // Only a batch started pinned (`--plugin NAME@sha256:HEX`) runs this, so histories
            // of batches that resolve their plugin replay unchanged.
            root::check_pinned(ctx, &node).await?;
        }
        // Only a batch that calls services runs this, so every other batch's history replays.
        if node.depth == 0 && node.config.http.is_some() {
            root::check_http(ctx, &mut node).await?;
        }
        // Only a Parquet output infers its schema, so histories of every other batch replay.
        if node.depth == 0 && node.config.output_encoding.needs_schema() {
            node.config.output_encoding.schema = Some(leaf::infer_output_schema(ctx, &node).await?);
        }
        let result = match plan_node(
            node.range(),
            node.config.batch_size,
            node.config.max_children,
        ) {
            NodePlan::Leaf(range) => leaf::run(ctx, &node, range).await,
            NodePlan::Split(children) => children::run(ctx, &node, children).await,
        };
        // A cancelled batch ends cancelled, not failed, whatever its cancelled work reported.
        if ctx.cancellation_token().is_cancelled() {
            return Err(WorkflowTermination::cancelled());
        }
        let result = result?;
        if node.depth == 0 {
            root::finish(ctx, &node, &result).await?;
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

/// At most this many children or activities of a node run at once.
fn window(node: &NodeInput) -> usize {
    usize::try_from(node.config.max_in_flight.max(1)).unwrap_or(usize::MAX)
}

/// The node input in `input`: exactly one JSON payload, or a failure naming what is wrong.
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

/// Lists the plugins of the worker that runs it, so a starter on another machine can ask
/// "what can I run?" through Temporal.
#[workflow]
#[derive(Default)]
pub struct ListPluginsWorkflow;

#[workflow_methods]
impl ListPluginsWorkflow {
    #[run(name = "ListPlugins")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<Vec<PluginInfo>> {
        Ok(ctx
            .execute_activity(PluginActivities::list_plugins, (), options::list())
            .await?)
    }
}
