//! What a data batch writes to its output location (`--output`): one part per split, named by
//! its byte range ([`crate::source::part_name`]), and the manifest, written last by the root.
//! Without the manifest the output is incomplete: a batch still running, failed or cancelled.

use serde::{Deserialize, Serialize};

use crate::plugin_ref::PluginRef;
use crate::retry::RetryError;
use crate::source::DataSource;

/// The version of the manifest's layout.
pub const MANIFEST_VERSION: u32 = 1;

/// One part: the outputs of one split, in source order, one per line (a record's bytes, or a
/// number in decimal; skipped items write nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    pub name: String,
    /// The split's byte positions in the source.
    pub first: u64,
    pub last: u64,
    /// Items (records) of the split, and what became of them.
    pub items: u64,
    pub records: u64,
    pub numbers: u64,
    pub skipped: u64,
    /// Items of the split that failed (in its `failed/` part); items = records + numbers +
    /// skipped + failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: u64,
    /// The part's size.
    pub bytes: u64,
}

/// One `failed/` part: the failed items of one split, one JSON object per line, in source
/// order: `{"index": .., "kind": .., "reason": .., "excerpt": ..}` (the reason and the excerpt of
/// the input bounded by [`crate::failures::REASON_BYTES`] and
/// [`crate::failures::EXCERPT_BYTES`]). Written only for a split with failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedPartInfo {
    /// `failed/part-…`, named as the split's part.
    pub name: String,
    pub first: u64,
    pub last: u64,
    pub failed: u64,
    pub bytes: u64,
}

/// The folder of the `failed/` parts in an output.
pub const FAILED_DIR: &str = "failed";

/// A line of a `failed/` part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedLine {
    pub index: u64,
    pub kind: crate::FailureKind,
    pub reason: String,
    /// The start of the item's input (lossy UTF-8), bounded and neutralised
    /// ([`crate::text::neutralised`]: `head` of a failed part on a terminal shows the bytes,
    /// it does not run them).
    pub excerpt: String,
    /// In a many-object source: the item's object (its name under the source's base) and
    /// its position in it (`index` packs both: [`crate::objects::ItemId`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
}

impl FailedLine {
    pub fn new(index: u64, kind: crate::FailureKind, reason: &str, input: &[u8]) -> Self {
        let cut = &input[..input.len().min(crate::failures::EXCERPT_BYTES)];
        Self {
            index,
            kind,
            reason: crate::text::shown(reason, crate::failures::REASON_BYTES),
            excerpt: crate::text::neutralised(&String::from_utf8_lossy(cut)).into_owned(),
            object: None,
            position: None,
        }
    }

    /// The line of an item of a many-object source: names its object (neutralised: names
    /// come from the store) and its position in it.
    pub fn in_object(self, name: &str, position: u64) -> Self {
        Self {
            object: Some(crate::text::shown(name, crate::source::MAX_LOCATION_BYTES)),
            position: Some(position),
            ..self
        }
    }
}

/// The item indexes in a `failed/` part's text, in order.
pub fn failed_indexes(part: &str, text: &str) -> Result<Vec<u64>, RetryError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str::<FailedLine>(line)
                .map(|failed| failed.index)
                .map_err(|e| RetryError::BadReport {
                    part: part.to_owned(),
                    line: n + 1,
                    reason: e.to_string(),
                })
        })
        .collect()
}

/// The manifest (`_manifest.json`): what the output holds and how it was made. The parts,
/// concatenated in this order, are the batch's outputs in source order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    /// The batch (its root workflow's id).
    pub batch: String,
    pub source: DataSource,
    /// How the parts are encoded: with a Parquet output, its schema (absent for plain JSON
    /// Lines).
    #[serde(
        default,
        skip_serializing_if = "crate::output_format::OutputEncoding::is_default"
    )]
    pub output_encoding: crate::output_format::OutputEncoding,
    /// The plugin, pinned by digest.
    pub plugin: PluginRef,
    /// sha256 of the plugin configuration, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_config_sha256: Option<String>,
    /// When the batch started and when its last part was written (RFC 3339, UTC, as the
    /// workflow saw them).
    pub started: String,
    pub finished: String,
    pub items: u64,
    pub records: u64,
    pub numbers: u64,
    pub skipped: u64,
    /// Items that failed for good and were tolerated: items = records + numbers + skipped +
    /// failed.
    pub failed: u64,
    /// Failed items per kind.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub failed_by_kind: std::collections::BTreeMap<crate::FailureKind, u64>,
    /// Sum of the numbers, exact, in decimal.
    pub sum: String,
    /// Bytes of all parts.
    pub bytes: u64,
    pub parts: Vec<PartInfo>,
    /// The `failed/` parts, in source order (none when no item failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_parts: Vec<FailedPartInfo>,
    /// A retry batch's output: the batch whose failed items it holds. That batch's output and
    /// this one together hold every item once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<crate::retry::RetryOf>,
}

impl Manifest {
    /// The manifest of the data batch `batch` whose root produced `result` (the batch's
    /// outputs, failures and parts), started and finished at the given times (RFC 3339, as the
    /// workflow's clock gave them). `None` for a batch without a data source.
    pub fn of(
        batch: &str,
        result: &crate::NodeResult,
        started: String,
        finished: String,
    ) -> Option<Self> {
        let config = &result.config;
        let (o, failed) = (&result.outputs, &result.failures);
        Some(Manifest {
            manifest_version: MANIFEST_VERSION,
            batch: batch.to_owned(),
            source: config.source.clone()?,
            output_encoding: config.output_encoding.clone(),
            plugin: config.plugin.clone(),
            plugin_config_sha256: config.plugin_config.as_ref().map(|c| c.digest.clone()),
            started,
            finished,
            items: o.count + failed.count,
            records: o.records,
            numbers: o.numbers(),
            skipped: o.skipped,
            failed: failed.count,
            failed_by_kind: failed.by_kind.clone(),
            sum: o.sum.to_string(),
            bytes: total_bytes(&result.parts),
            parts: result.parts.clone(),
            failed_parts: result.failed_parts.clone(),
            retry_of: config.retry_of.clone(),
        })
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Bytes of all `parts` (the manifest's `bytes`, the summary's output size).
pub fn total_bytes(parts: &[PartInfo]) -> u64 {
    parts.iter().map(|p| p.bytes).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_parts_give_their_indexes() {
        let line = |index| {
            serde_json::to_string(&FailedLine::new(
                index,
                crate::FailureKind::PluginRefusedItem,
                "no",
                b"{}",
            ))
            .expect("json")
        };
        let text = format!("{}\n{}\n", line(5), line(90));
        assert_eq!(failed_indexes("failed/p", &text), Ok(vec![5, 90]));
        assert!(matches!(
            failed_indexes("failed/p", "{\"index\": 1}\nnot json\n"),
            Err(RetryError::BadReport { line: 1, .. })
        ));
    }
}
