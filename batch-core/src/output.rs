//! What a data batch writes to its output location (`--output`): one part per split, named by
//! its byte range ([`crate::source::part_name`]), and the manifest, written last by the root.
//! Without the manifest the output is incomplete: a batch still running, failed or cancelled.

use serde::{Deserialize, Serialize};

use crate::config::PluginRef;
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
    /// The part's size.
    pub bytes: u64,
}

/// The manifest (`_manifest.json`): what the output holds and how it was made. The parts,
/// concatenated in this order, are the batch's outputs in source order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    /// The batch (its root workflow's id).
    pub batch: String,
    pub source: DataSource,
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
    /// Items that failed (always 0 today: one failed item fails its batch).
    pub failed: u64,
    /// Sum of the numbers, exact, in decimal.
    pub sum: String,
    /// Bytes of all parts.
    pub bytes: u64,
    pub parts: Vec<PartInfo>,
}

/// Bytes of all `parts` (the manifest's `bytes`, the summary's output size).
pub fn total_bytes(parts: &[PartInfo]) -> u64 {
    parts.iter().map(|p| p.bytes).sum()
}
