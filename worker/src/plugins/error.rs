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
    #[error("plugin {plugin} trapped on item {item}: {reason}")]
    Trap {
        plugin: String,
        item: u64,
        reason: String,
    },
}

impl PluginError {
    /// Whether another attempt (here or on another worker) could succeed. Only a missing
    /// pinned version can be cured by retrying: everything else is a property of the plugin
    /// or its input, and retrying would only repeat it.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PluginError::DigestUnavailable { .. })
    }

    /// A stable name for the failure's type in Temporal.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::InvalidName(_) => "PluginInvalidName",
            PluginError::NotFound { .. } => "PluginNotFound",
            PluginError::DigestUnavailable { .. } => "PluginVersionUnavailable",
            PluginError::Directory { .. } => "PluginDirectoryUnreadable",
            PluginError::Read { .. } => "PluginUnreadable",
            PluginError::Invalid { .. } => "PluginInvalid",
            PluginError::Refused { .. } => "PluginRefusedItem",
            PluginError::Deadline { .. } => "PluginDeadlineExceeded",
            PluginError::Trap { .. } => "PluginTrapped",
        }
    }
}
