//! Every kind of failure the system gives a name to: the type of a Temporal failure (shown in
//! the Web UI, `temporal workflow show`, metrics labels), the kind of a failed item in a result,
//! a report or a manifest. One enum, so the worker, the workflow and the clients cannot
//! disagree on a spelling.

use serde::{Deserialize, Serialize};

/// A kind of failure. Serialized (and shown) as its name, `PluginRefusedItem`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FailureKind {
    // An item's own failures: another attempt would repeat them, a tolerance may count them.
    /// The plugin refused the item (an `err` result).
    PluginRefusedItem,
    /// The plugin trapped on the item (its call failed as a whole).
    PluginTrapped,
    /// The plugin's call ran past its CPU deadline.
    PluginDeadlineExceeded,
    /// The plugin returned what the interface does not allow (a result count, columns).
    PluginBrokeInterface,
    /// The plugin returned more results than the host copies (the memory cap).
    PluginOutputTooLarge,
    /// The item's record cannot become an item (a CSV row that does not fit the header, a
    /// record over the limit).
    BadRecord,
    /// The plugin's output does not fit the output's schema (a Parquet output).
    OutputOutsideSchema,

    // Failures of a batch, never tolerated.
    /// The plugin's name is not a valid name.
    PluginInvalidName,
    /// No plugin by that name, or a plugin store without the pinned version.
    PluginNotFound,
    /// This worker lacks the pinned version: the workflow sends the work to the plugin's queue.
    PluginVersionUnavailable,
    /// This worker lacks the plugin, others serve it: the workflow asks on the plugin's queue.
    PluginHeldElsewhere,
    /// The plugin store cannot be read (retried when the failure is transient), or holds a
    /// record that is not one.
    PluginStoreUnavailable,
    /// A plugin store object's bytes are not the version its digest names: never compiled.
    PluginTampered,
    /// The version is not signed by a key this worker trusts (`worker --trust-key`).
    PluginUnsigned,
    /// The plugins directory cannot be read.
    PluginDirectoryUnreadable,
    /// A plugin file cannot be read.
    PluginUnreadable,
    /// A plugin file is not a valid plugin.
    PluginInvalid,
    /// The plugin refused its configuration.
    PluginRefusedConfig,
    /// The plugin takes other items than the batch's source gives.
    PluginWrongInput,
    /// The plugin could not be instantiated.
    PluginInstantiationFailed,
    /// The plugin host failed (a bug of the host, retried).
    PluginHostPanicked,
    /// The worker was shutting down (retried).
    WorkerShuttingDown,
    /// A shared resource of the host was exhausted (retried).
    PluginHostBusy,
    /// A service the plugin calls failed transiently (no connection, a timeout, 429, 5xx) after
    /// the host's own retries: the leaf is retried, its requests keeping their keys.
    ServiceUnavailable,
    /// The batch asks for an HTTP host this worker's operator did not grant (`--allow-http`).
    HttpNotGranted,
    /// A source or an output cannot be read or written (or is not granted).
    DataUnavailable,
    /// A source the batch cannot process at all (a CSV row with a quoted line break).
    BadSource,
    /// An activity's task input is invalid (from any client).
    InvalidTaskInput,
    /// A workflow's input is invalid (from any client).
    InvalidBatchInput,
    /// A node failed because a child or an item failed for good.
    BatchNodeFailed,
    /// More items failed than the batch tolerates.
    BatchToleranceExceeded,
}

impl FailureKind {
    /// The kinds that are an item's own failure (see [`Self::is_item_failure`]).
    pub const ITEM_FAILURES: [FailureKind; 7] = [
        FailureKind::PluginRefusedItem,
        FailureKind::PluginTrapped,
        FailureKind::PluginDeadlineExceeded,
        FailureKind::PluginBrokeInterface,
        FailureKind::PluginOutputTooLarge,
        FailureKind::BadRecord,
        FailureKind::OutputOutsideSchema,
    ];

    /// Every kind.
    pub const ALL: [FailureKind; 31] = [
        FailureKind::PluginRefusedItem,
        FailureKind::PluginTrapped,
        FailureKind::PluginDeadlineExceeded,
        FailureKind::PluginBrokeInterface,
        FailureKind::PluginOutputTooLarge,
        FailureKind::BadRecord,
        FailureKind::OutputOutsideSchema,
        FailureKind::PluginInvalidName,
        FailureKind::PluginNotFound,
        FailureKind::PluginVersionUnavailable,
        FailureKind::PluginHeldElsewhere,
        FailureKind::PluginStoreUnavailable,
        FailureKind::PluginTampered,
        FailureKind::PluginUnsigned,
        FailureKind::PluginDirectoryUnreadable,
        FailureKind::PluginUnreadable,
        FailureKind::PluginInvalid,
        FailureKind::PluginRefusedConfig,
        FailureKind::PluginWrongInput,
        FailureKind::PluginInstantiationFailed,
        FailureKind::PluginHostPanicked,
        FailureKind::WorkerShuttingDown,
        FailureKind::PluginHostBusy,
        FailureKind::ServiceUnavailable,
        FailureKind::HttpNotGranted,
        FailureKind::DataUnavailable,
        FailureKind::BadSource,
        FailureKind::InvalidTaskInput,
        FailureKind::InvalidBatchInput,
        FailureKind::BatchNodeFailed,
        FailureKind::BatchToleranceExceeded,
    ];

    /// The kind's name, as Temporal and the reports show it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::PluginRefusedItem => "PluginRefusedItem",
            FailureKind::PluginTrapped => "PluginTrapped",
            FailureKind::PluginDeadlineExceeded => "PluginDeadlineExceeded",
            FailureKind::PluginBrokeInterface => "PluginBrokeInterface",
            FailureKind::PluginOutputTooLarge => "PluginOutputTooLarge",
            FailureKind::BadRecord => "BadRecord",
            FailureKind::OutputOutsideSchema => "OutputOutsideSchema",
            FailureKind::PluginInvalidName => "PluginInvalidName",
            FailureKind::PluginNotFound => "PluginNotFound",
            FailureKind::PluginVersionUnavailable => "PluginVersionUnavailable",
            FailureKind::PluginHeldElsewhere => "PluginHeldElsewhere",
            FailureKind::PluginStoreUnavailable => "PluginStoreUnavailable",
            FailureKind::PluginTampered => "PluginTampered",
            FailureKind::PluginUnsigned => "PluginUnsigned",
            FailureKind::PluginDirectoryUnreadable => "PluginDirectoryUnreadable",
            FailureKind::PluginUnreadable => "PluginUnreadable",
            FailureKind::PluginInvalid => "PluginInvalid",
            FailureKind::PluginRefusedConfig => "PluginRefusedConfig",
            FailureKind::PluginWrongInput => "PluginWrongInput",
            FailureKind::PluginInstantiationFailed => "PluginInstantiationFailed",
            FailureKind::PluginHostPanicked => "PluginHostPanicked",
            FailureKind::WorkerShuttingDown => "WorkerShuttingDown",
            FailureKind::PluginHostBusy => "PluginHostBusy",
            FailureKind::ServiceUnavailable => "ServiceUnavailable",
            FailureKind::HttpNotGranted => "HttpNotGranted",
            FailureKind::DataUnavailable => "DataUnavailable",
            FailureKind::BadSource => "BadSource",
            FailureKind::InvalidTaskInput => "InvalidTaskInput",
            FailureKind::InvalidBatchInput => "InvalidBatchInput",
            FailureKind::BatchNodeFailed => "BatchNodeFailed",
            FailureKind::BatchToleranceExceeded => "BatchToleranceExceeded",
        }
    }

    /// The kind named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether a failure of this kind is the item's own (and so may be tolerated).
    pub fn is_item_failure(self) -> bool {
        Self::ITEM_FAILURES.contains(&self)
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_named_once_and_serialized_by_its_name() {
        let mut names: Vec<&str> = FailureKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FailureKind::ALL.len());
        for kind in FailureKind::ALL {
            assert_eq!(FailureKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).expect("serializes");
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(
                serde_json::from_str::<FailureKind>(&json).expect("parses"),
                kind
            );
        }
        assert!(FailureKind::BadRecord.is_item_failure());
        assert!(!FailureKind::BadSource.is_item_failure());
        assert!(!FailureKind::PluginWrongInput.is_item_failure());
    }
}
