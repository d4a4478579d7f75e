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
