//! Plugin failures. Every message names the plugin; item failures also name the item and the
//! digest, so a failed batch says exactly which module refused which input. Underlying errors
//! (I/O, wasmtime) are kept as sources; [`PluginError::message`] gives the whole chain on one
//! line, each part bounded ([`batch_core::text::bounded_message`]), so whatever a plugin
//! said can neither flood a log nor overflow a Temporal payload. How each failure is presented
//! to Temporal (its kind, whether a retry can help) is routing policy: [`crate::routing`].

use std::error::Error as _;
use std::path::PathBuf;

use batch_core::text::{bounded_message, neutralised};

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
    #[error("plugin {name:?}: cannot use the plugin store")]
    Store {
        name: String,
        #[source]
        source: super::store::StoreError,
    },
    #[error(
        "plugin {name:?} version sha256:{digest} is not signed by a key this worker trusts \
         ({reason}); this worker runs only signed versions (--trust-key)"
    )]
    Unsigned {
        name: String,
        digest: String,
        reason: String,
    },
    #[error("cannot read plugins directory {dir}")]
    Directory {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read plugin {name:?} from {path}")]
    Read {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
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
        /// Bounded when the error is made: it is the plugin's own text.
        message: String,
    },
    #[error("plugin {plugin} exceeded its CPU deadline of {limit_ms} ms on {items}")]
    Deadline {
        plugin: String,
        items: ItemSpan,
        limit_ms: u128,
    },
    #[error("plugin {plugin} cannot run over this batch's items: {reason}")]
    WrongInput { plugin: String, reason: String },
    #[error("plugin {plugin} refused its configuration: {message}")]
    Configure {
        plugin: String,
        /// Bounded when the error is made: it is the plugin's own text.
        message: String,
    },
    #[error("plugin {plugin} returned {got} results for a block of {want} items ({items})")]
    ResultCount {
        plugin: String,
        items: ItemSpan,
        got: usize,
        want: usize,
    },
    #[error(
        "plugin {plugin} returned more than {limit} bytes of results for {items} (the host \
         copies at most the call's memory cap of results)"
    )]
    OutputTooLarge {
        plugin: String,
        items: ItemSpan,
        limit: usize,
    },
    #[error("plugin {plugin} returned inconsistent columns for {items}: {problem}")]
    Columns {
        plugin: String,
        items: ItemSpan,
        problem: String,
    },
    #[error("the plugin host failed (not the plugin)")]
    HostPanic {
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("the worker is shutting down; another attempt will run the item")]
    ShuttingDown,
    #[error(
        "the plugin host is out of a shared resource (not the plugin's fault); another attempt \
         will run the item"
    )]
    HostBusy {
        #[source]
        source: wasmtime::Error,
    },
    #[error(
        "plugin {plugin} failed item {item} after its request failed transiently ({reason}); the \
         leaf will be retried, the item's requests keeping their Idempotency-Key"
    )]
    ServiceUnavailable {
        plugin: String,
        item: u64,
        /// Made by the host (a status, an error code and a host), bounded.
        reason: String,
    },
    #[error("plugin {plugin} imports wasi:http, but {reason}")]
    HttpNotGranted { plugin: String, reason: String },
    #[error("plugin {plugin} could not be instantiated")]
    Instantiate {
        plugin: String,
        #[source]
        source: wasmtime::Error,
    },
    #[error("plugin {plugin} trapped on {items}")]
    Trap {
        plugin: String,
        items: ItemSpan,
        #[source]
        source: wasmtime::Error,
    },
}

/// The items of one plugin call: one item, or a block (interface v2) of consecutive indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemSpan {
    pub first: u64,
    pub last: u64,
}

impl ItemSpan {
    pub fn one(item: u64) -> Self {
        Self {
            first: item,
            last: item,
        }
    }
}

impl std::fmt::Display for ItemSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "item {}", self.first)
        } else {
            write!(f, "items {}..={} (one call)", self.first, self.last)
        }
    }
}

impl PluginError {
    /// The one item this failure is about, if it is about one (a refusal, or a call of one
    /// item that failed).
    pub fn item(&self) -> Option<u64> {
        match self {
            PluginError::Refused { item, .. } => Some(*item),
            PluginError::Deadline { items, .. }
            | PluginError::Trap { items, .. }
            | PluginError::ResultCount { items, .. }
            | PluginError::Columns { items, .. }
            | PluginError::OutputTooLarge { items, .. }
                if items.first == items.last =>
            {
                Some(items.first)
            }
            _ => None,
        }
    }

    /// The error and its sources on one line (`outer: inner: innermost`), each part bounded,
    /// and neutralised ([`batch_core::text::neutralised`]: a plugin's words cannot move a
    /// cursor, forge a log line or a summary line): for logs, listings, failed-item reports
    /// and Temporal failures.
    pub fn message(&self) -> String {
        let mut text = self.to_string();
        let mut source = self.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&bounded_message(&cause.to_string()));
            source = cause.source();
        }
        neutralised(&text).into_owned()
    }
}
