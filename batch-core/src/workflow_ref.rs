//! A typed reference to the batch workflow for Temporal clients: the starter starts it and
//! inner nodes start children with it. The worker registers the implementation under the same
//! type name, but takes its input raw so that malformed input fails the workflow with a clear
//! message instead of failing (and endlessly retrying) its workflow task.

use temporalio_common::{HasWorkflowDefinition, SignalDefinition, WorkflowDefinition};

use crate::{LIST_PLUGINS_WORKFLOW_TYPE, NodeInput, NodeResult, PluginInfo, WORKFLOW_TYPE};

/// `BatchProcessingWorkflow`: input [`NodeInput`], result [`NodeResult`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchWorkflowRef;

impl WorkflowDefinition for BatchWorkflowRef {
    type Input = NodeInput;
    type Output = NodeResult;

    fn name(&self) -> &str {
        WORKFLOW_TYPE
    }
}

impl HasWorkflowDefinition for BatchWorkflowRef {
    type Run = Self;
}

/// `ListPlugins`: no input; the plugins of the worker that runs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListPluginsRef;

impl WorkflowDefinition for ListPluginsRef {
    type Input = ();
    type Output = Vec<PluginInfo>;

    fn name(&self) -> &str {
        LIST_PLUGINS_WORKFLOW_TYPE
    }
}

impl HasWorkflowDefinition for ListPluginsRef {
    type Run = Self;
}

/// The signal that pauses (`true`) or resumes (`false`) a batch's node: it starts no new work
/// while paused and passes the signal on to its running children (`starter --pause/--resume`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PauseSignal;

/// The name the worker's workflow registers [`PauseSignal`] under.
pub const PAUSE_SIGNAL: &str = "pause";

impl SignalDefinition for PauseSignal {
    type Workflow = BatchWorkflowRef;
    type Input = bool;

    fn name(&self) -> &str {
        PAUSE_SIGNAL
    }
}
