//! Plugin failures. Every message names the plugin; item failures also name the item and the
//! digest, so a failed batch says exactly which module refused which input.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    InvalidName(#[from] batch_core::ConfigError),
    #[error("plugin {name:?} not found in {dir}; available plugins: {available}")]
    NotFound {
        name: String,
        dir: PathBuf,
        available: String,
    },
    #[error(
        "this worker does not have version sha256:{digest} of plugin {name:?} (its {dir} holds \
         {found}); a worker that has it will take the item"
    )]
    DigestUnavailable {
        name: String,
        digest: String,
        dir: PathBuf,
        found: String,
    },
    #[error(
        "plugin {name:?} is not in this worker's {dir}, but worker(s) {workers} serve it on \
         task queue {queue}"
    )]
    HeldElsewhere {
        name: String,
        dir: PathBuf,
        queue: String,
        workers: String,
    },
    #[error("cannot read plugins directory {dir}: {reason}")]
    Directory { dir: PathBuf, reason: String },
    #[error("cannot read plugin {name:?} from {path}: {reason}")]
    Read {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("plugin {name:?} ({path}) is not a valid plugin: {reason}")]
    Invalid {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("plugin {plugin} refused item {item}: {message}")]
    Refused {
        plugin: String,
        item: u64,
        message: String,
    },
    #[error("plugin {plugin} exceeded its CPU deadline of {limit_ms} ms on item {item}")]
    Deadline {
        plugin: String,
        item: u64,
        limit_ms: u128,
    },
    #[error("the plugin host failed (not the plugin): {reason}")]
    HostPanic { reason: String },
    #[error("the worker is shutting down; another attempt will run the item")]
    ShuttingDown,
    #[error(
        "the plugin host is out of a shared resource (not the plugin's fault): {reason}; \
         another attempt will run the item"
    )]
    HostBusy { reason: String },
    #[error("plugin {plugin} could not be instantiated: {reason}")]
    Instantiate { plugin: String, reason: String },
    #[error("plugin {plugin} trapped on item {item}: {reason}")]
    Trap {
        plugin: String,
        item: u64,
        reason: String,
    },
}

/// The kind of a [`PluginError::DigestUnavailable`] failure: the workflow sends the work on to
/// the plugin's own task queue ([`batch_core::ids::plugin_task_queue`]).
pub const VERSION_UNAVAILABLE: &str = "PluginVersionUnavailable";
/// The kind of a [`PluginError::HeldElsewhere`] failure: the workflow asks again on the
/// plugin's own task queue.
pub const HELD_ELSEWHERE: &str = "PluginHeldElsewhere";

impl PluginError {
    /// Whether another attempt (here or on another worker) could succeed: a missing pinned
    /// version, or a bug of the host. Everything else is a property of the plugin or its
    /// input, and retrying would only repeat it.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PluginError::DigestUnavailable { .. }
                | PluginError::HostPanic { .. }
                | PluginError::ShuttingDown
                | PluginError::HostBusy { .. }
        )
    }

    /// Whether the work should go to the plugin's own task queue, where only the workers that
    /// hold the plugin poll, instead of being retried on the batch queue.
    pub fn is_routable(&self) -> bool {
        matches!(
            self,
            PluginError::DigestUnavailable { .. } | PluginError::HeldElsewhere { .. }
        )
    }

    /// A stable name for the failure's type in Temporal.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::InvalidName(_) => "PluginInvalidName",
            PluginError::NotFound { .. } => "PluginNotFound",
            PluginError::DigestUnavailable { .. } => VERSION_UNAVAILABLE,
            PluginError::HeldElsewhere { .. } => HELD_ELSEWHERE,
            PluginError::Directory { .. } => "PluginDirectoryUnreadable",
            PluginError::Read { .. } => "PluginUnreadable",
            PluginError::Invalid { .. } => "PluginInvalid",
            PluginError::Refused { .. } => "PluginRefusedItem",
            PluginError::Deadline { .. } => "PluginDeadlineExceeded",
            PluginError::Trap { .. } => "PluginTrapped",
            PluginError::HostPanic { .. } => "PluginHostPanicked",
            PluginError::ShuttingDown => "WorkerShuttingDown",
            PluginError::HostBusy { .. } => "PluginHostBusy",
            PluginError::Instantiate { .. } => "PluginInstantiationFailed",
        }
    }
}
