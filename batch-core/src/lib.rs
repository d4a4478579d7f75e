//! Pure logic shared by the worker and the starter: what a batch is ([`config`]), how a tree
//! node splits its range ([`plan`]), what a whole batch will do before it starts
//! ([`batch_plan`]), what a node returns and how results merge ([`result`]),
//! items that failed and how many a batch tolerates ([`failures`]), data sources and outputs
//! ([`source`]), which records a split owns ([`split`]) and which frames of a compressed object
//! ([`frames`]), what a plugin's items are
//! ([`plugin_input`]),
//! the activities' tasks and their checks ([`tasks`]), the workflow ids ([`ids`]), the human summary ([`summary`]) and bounds on untrusted text
//! ([`text`]).
//!
//! Nothing here does I/O or knows about Temporal or wasmtime (except the optional, feature-gated
//! [`workflow_ref`] and [`connect`], shared by the two Temporal clients, and the bounded read of
//! a `--plugin-config @FILE` in [`plugin_config`], shared by the starter and `batch-plugin`), so
//! all of it is unit-tested exhaustively without a server.

pub mod batch_plan;
pub mod blocks;
pub mod config;
#[cfg(feature = "temporal")]
pub mod connect;
pub mod failure_kind;
pub mod failures;
pub mod frames;
pub mod http;
pub mod ids;
pub mod objects;
pub mod output;
pub mod output_format;
pub mod plan;
pub mod plugin_config;
pub mod plugin_input;
pub mod plugin_ref;
pub mod record_items;
pub mod result;
pub mod retry;
pub mod source;
pub mod split;
pub mod summary;
pub mod tasks;
pub mod text;
#[cfg(feature = "temporal")]
pub mod workflow_ref;

pub use batch_plan::BatchPlan;
pub use config::{BatchConfig, ConfigError, LeafMode, NodeInput, PluginInfo, PluginRef};
pub use failure_kind::FailureKind;
pub use failures::{FailedItem, Failures, Tolerance};
pub use plan::{ItemRange, NodePlan, TreeShape};
pub use plugin_config::PluginConfig;
pub use plugin_input::PluginInput;
pub use result::{ItemOutcome, NodeResult, Output, Outputs};
pub use source::{DataSource, Format};

/// The workflow type name the worker registers and every client starts.
pub const WORKFLOW_TYPE: &str = "BatchProcessingWorkflow";
/// The workflow type that lists the plugins of the worker that runs it.
pub const LIST_PLUGINS_WORKFLOW_TYPE: &str = "ListPlugins";
/// The task queue of the demo, used by default by both binaries.
pub const DEFAULT_TASK_QUEUE: &str = "batch-processing-task-queue";
/// The plugin used when a batch names none.
pub const DEFAULT_PLUGIN: &str = "square_number";
