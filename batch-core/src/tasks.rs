//! The activities' task inputs and outcomes: what the workflow sends a worker and gets back,
//! and the checks every activity makes of a task from any Temporal client before any work
//! (a forged task cannot make a loop wrap, read past a source or run an unbounded list).

use serde::{Deserialize, Serialize};

use crate::config::MAX_ITEMS;
use crate::output::{FailedPartInfo, Manifest, PartInfo};
use crate::output_format::OutputEncoding;
use crate::retry::MAX_RETRY_ITEMS;
use crate::{DataSource, Failures, Outputs, PluginConfig, PluginRef, Tolerance};

/// One item for one pinned plugin (`item` and `local` modes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemTask {
    pub plugin: PluginRef,
    pub item: u64,
    /// The batch's plugin configuration; absent from the payload when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PluginConfig>,
}

/// A leaf's whole range for one pinned plugin (`batch` mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeTask {
    pub plugin: PluginRef,
    pub first: u64,
    pub last: u64,
    /// The batch's plugin configuration; absent from the payload when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PluginConfig>,
    /// The batch's tolerance of failed items: with none (absent), the first failed item fails
    /// the leaf; with one, failed items are collected ([`RangeOutcome::failures`]) and the leaf
    /// fails only when they exceed it.
    #[serde(default, skip_serializing_if = "Tolerance::is_none")]
    pub tolerance: Tolerance,
    /// A retry batch's leaf: exactly these items (sorted, within `first..=last`), not the
    /// whole range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<u64>>,
    /// The batch's outbound HTTP, if its plugin calls services; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<crate::http::HttpTask>,
}

/// What a `batch`-mode leaf returns: its outputs' statistics (flattened, so a result without
/// failures is the JSON it always was) and its tolerated failures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeOutcome {
    #[serde(flatten)]
    pub outputs: Outputs,
    #[serde(default, skip_serializing_if = "Failures::is_empty")]
    pub failures: Failures,
}

/// One split of a data batch for one pinned plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitTask {
    pub plugin: PluginRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PluginConfig>,
    pub source: DataSource,
    /// The split's byte positions in the source.
    pub first: u64,
    pub last: u64,
    /// Where the part goes, if the batch has an output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// How the part is encoded (absent for plain JSON Lines).
    #[serde(default, skip_serializing_if = "OutputEncoding::is_default")]
    pub output_encoding: OutputEncoding,
    /// The batch's tolerance of failed items (see [`RangeTask::tolerance`]).
    #[serde(default, skip_serializing_if = "Tolerance::is_none")]
    pub tolerance: Tolerance,
    /// A retry batch's leaf: the byte positions of exactly the records to run (sorted, within
    /// `first..=last`), each read where it starts, instead of the whole split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<u64>>,
    /// The batch's outbound HTTP (see [`RangeTask::http`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<crate::http::HttpTask>,
}

/// What a split produced: the statistics of its outputs, its tolerated failures, and its
/// parts when written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitOutcome {
    pub outputs: Outputs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<PartInfo>,
    #[serde(default, skip_serializing_if = "Failures::is_empty")]
    pub failures: Failures,
    /// The split's `failed/` part, written when an item failed and the batch has an output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_part: Option<FailedPartInfo>,
}

/// The manifest of a data batch's output, written by its root once every part is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestTask {
    pub output: String,
    pub manifest: Manifest,
}

/// Why a task is refused before any work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("item {0} is out of range: items are 1..={MAX_ITEMS}")]
    ItemOutOfRange(u64),
    #[error("the range {first}..={last} is empty: last must be at least first")]
    EmptyRange { first: u64, last: u64 },
    #[error("{0} items listed, over the limit of {MAX_RETRY_ITEMS}")]
    TooManyListed(usize),
    #[error("the listed items do not span the task's {first}..={last}")]
    ListSpan { first: u64, last: u64 },
    #[error("the split {first}..={last} is not within the source's bytes 1..={size}")]
    OutsideSource { first: u64, last: u64, size: u64 },
    #[error(transparent)]
    List(#[from] crate::retry::RetryError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Config(#[from] crate::plugin_config::PluginConfigError),
    #[error(transparent)]
    Encoding(#[from] crate::output_format::EncodingError),
    #[error("a Parquet part needs the output's schema")]
    NoSchema,
}

fn check_item(item: u64) -> Result<(), TaskError> {
    if (1..=MAX_ITEMS).contains(&item) {
        Ok(())
    } else {
        Err(TaskError::ItemOutOfRange(item))
    }
}

fn check_config(config: Option<&PluginConfig>) -> Result<(), TaskError> {
    config.map_or(Ok(()), |c| c.validate().map_err(TaskError::from))
}

/// A retry leaf's list: sorted, at most [`MAX_RETRY_ITEMS`], spanning exactly `first..=last`.
fn check_list(items: Option<&[u64]>, first: u64, last: u64) -> Result<(), TaskError> {
    let Some(items) = items else {
        return Ok(());
    };
    if items.len() > MAX_RETRY_ITEMS {
        return Err(TaskError::TooManyListed(items.len()));
    }
    crate::retry::validate_items(items, 1, items.len() as u64, last)?;
    match (items.first(), items.last()) {
        (Some(&a), Some(&b)) if a == first && b == last => Ok(()),
        _ => Err(TaskError::ListSpan { first, last }),
    }
}

impl ItemTask {
    /// Items are numbered from 1 to [`MAX_ITEMS`], as in a batch.
    pub fn validate(&self) -> Result<(), TaskError> {
        check_item(self.item)?;
        check_config(self.config.as_ref())
    }
}

impl RangeTask {
    /// A non-empty range within the items a batch may have (so `last + 1`, the end of the
    /// loop, never wraps), and a list, if any, that spans it.
    pub fn validate(&self) -> Result<(), TaskError> {
        check_item(self.first)?;
        check_item(self.last)?;
        if self.last < self.first {
            return Err(TaskError::EmptyRange {
                first: self.first,
                last: self.last,
            });
        }
        check_list(self.items.as_deref(), self.first, self.last)?;
        check_config(self.config.as_ref())
    }
}

impl SplitTask {
    /// A valid source, a split within it, and a list, if any, that spans it.
    pub fn validate(&self) -> Result<(), TaskError> {
        self.source.validate()?;
        // A split is stored bytes; a retry's list is items' indexes (positions in the
        // decompressed stream of a compressed source).
        let max = match self.items {
            None => self.source.size,
            Some(_) => self.source.max_index(),
        };
        if self.first == 0 || self.last < self.first || self.last > max {
            return Err(TaskError::OutsideSource {
                first: self.first,
                last: self.last,
                size: max,
            });
        }
        check_list(self.items.as_deref(), self.first, self.last)?;
        self.output_encoding.validate()?;
        check_config(self.config.as_ref())
    }

    /// A split that writes a part: [`Self::validate`], and a Parquet part has its schema.
    pub fn validate_with_output(&self) -> Result<(), TaskError> {
        self.validate()?;
        if self.output.is_some() && self.output_encoding.needs_schema() {
            return Err(TaskError::NoSchema);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u64, last: u64, items: Option<Vec<u64>>) -> RangeTask {
        RangeTask {
            plugin: PluginRef::named("p"),
            first,
            last,
            config: None,
            tolerance: Tolerance::default(),
            items,
            http: None,
        }
    }

    #[test]
    fn forged_tasks_are_refused_with_the_reason() {
        assert_eq!(range(1, 10, None).validate(), Ok(()));
        for (task, message) in [
            (range(0, 5, None), "item 0 is out of range"),
            (
                range(1, u64::MAX, None),
                "item 18446744073709551615 is out of range",
            ),
            (range(9, 3, None), "the range 9..=3 is empty"),
            (
                range(3, 9, Some(vec![3, 5])),
                "the listed items do not span the task's 3..=9",
            ),
            (range(3, 4, Some(vec![4, 3])), "must be sorted"),
        ] {
            let err = task.validate().expect_err("refused").to_string();
            assert!(err.contains(message), "{err}");
        }
        let item = ItemTask {
            plugin: PluginRef::named("p"),
            item: 0,
            config: None,
        };
        assert_eq!(item.validate(), Err(TaskError::ItemOutOfRange(0)));
    }
}
