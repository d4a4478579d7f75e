//! A data batch's leaf (`process_split`): read one split of the source with ranged reads, hand
//! its records to the plugin in blocks, count the outputs and write them, in source order, to
//! the split's part.
//!
//! A retried attempt starts the split again from its first byte and rewrites the whole part
//! (the same bytes: the source is pinned to its version, the plugin to its digest), so a crash
//! at any point neither loses nor doubles an item or a line of output. A split is at most the
//! batch's split size (64 MiB by default), so a retry redoes about a second of work.

use std::sync::Arc;
use std::time::Instant;

use batch_core::output::PartInfo;
use batch_core::record_items::{RecordItem, RecordItems};
use batch_core::source::part_name;
use batch_core::split::SplitRecords;
use batch_core::{DataSource, Output, Outputs, PluginConfig, PluginRef};
use bytes::Bytes;
use data_io::write::PartWriter;
use data_io::{DataError, Location};
use serde::{Deserialize, Serialize};
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use super::{PluginActivities, heartbeating, on_blocking_pool};
use crate::plugins::{Item, LoadedPlugin, PluginError};

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
}

/// What a split produced: the statistics of its outputs, and its part when written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitOutcome {
    pub outputs: Outputs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<PartInfo>,
}

/// Bytes read per ranged read.
const READ_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes of records handed to one plugin instance (one call slot, one heartbeat).
const SESSION_BYTES: usize = 4 * 1024 * 1024;
/// Most items per plugin call.
const BLOCK_ITEMS: usize = 1024;
/// Longest record: one line is never more than this, so a split's memory stays bounded
/// whatever the source holds.
pub(super) const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Why a split stopped.
pub(super) enum SplitError {
    Plugin(PluginError),
    Data(DataError),
    /// A record the host cannot turn into an item (a CSV row that does not fit the header, a
    /// line over [`MAX_RECORD_BYTES`]).
    BadRecord {
        index: u64,
        reason: String,
    },
    Activity(ActivityError),
}

impl From<PluginError> for SplitError {
    fn from(e: PluginError) -> Self {
        SplitError::Plugin(e)
    }
}

impl From<DataError> for SplitError {
    fn from(e: DataError) -> Self {
        SplitError::Data(e)
    }
}

impl SplitError {
    pub(super) fn into_activity_error(
        self,
        activities: &PluginActivities,
        ctx: &ActivityContext,
    ) -> ActivityError {
        match self {
            SplitError::Plugin(e) => activities.failure(ctx, e),
            SplitError::Data(e) => crate::routing::data_failure(&e),
            SplitError::BadRecord { index, reason } => ActivityError::application(
                ApplicationFailure::builder(anyhow::anyhow!("item {index}: {reason}"))
                    .type_name("BadRecord".to_owned())
                    .non_retryable(true)
                    .build(),
            ),
            SplitError::Activity(e) => e,
        }
    }
}

/// The records read so far and not yet given to the plugin.
#[derive(Default)]
struct Pending {
    items: Vec<Item>,
    bytes: usize,
    bad: Option<(u64, String)>,
}

impl PluginActivities {
    pub(super) async fn run_split(
        &self,
        ctx: &ActivityContext,
        task: SplitTask,
    ) -> Result<SplitOutcome, SplitError> {
        let plugin = self
            .plugin(ctx, &(), &task.plugin)
            .await
            .inspect_err(|e| self.metrics.failure(&task.plugin.name, e))?;
        let source = Location::open(&task.source.location)?;
        let items = RecordItems::new(&task.source)
            .map_err(|e| DataError::invalid(&task.source.location, e.to_string()))?;
        let name = part_name(task.first, task.last);
        let mut part = match &task.output {
            Some(output) => Some(PartWriter::new(Location::open(output)?.child(&name))),
            None => None,
        };
        let result = self
            .read_and_process(ctx, &task, &plugin, &source, &items, &mut part)
            .await;
        match (result, part) {
            (Ok(outputs), Some(part)) => {
                let bytes = part.finish().await?;
                let info = PartInfo {
                    name,
                    first: task.first,
                    last: task.last,
                    items: outputs.count,
                    records: outputs.records,
                    numbers: outputs.numbers(),
                    skipped: outputs.skipped,
                    bytes,
                };
                Ok(SplitOutcome {
                    outputs,
                    part: Some(info),
                })
            }
            (Ok(outputs), None) => Ok(SplitOutcome {
                outputs,
                part: None,
            }),
            (Err(e), part) => {
                if let Some(part) = part {
                    part.abort().await;
                }
                Err(e)
            }
        }
    }

    /// Reads the split and runs the plugin over its records, writing the outputs to `part`.
    async fn read_and_process(
        &self,
        ctx: &ActivityContext,
        task: &SplitTask,
        plugin: &Arc<LoadedPlugin>,
        source: &Location,
        items: &RecordItems,
        part: &mut Option<PartWriter>,
    ) -> Result<Outputs, SplitError> {
        let mut split = SplitRecords::new(task.first, task.last);
        let mut outputs = Outputs::default();
        let mut pending = Pending::default();
        let size = task.source.size;
        let version = task.source.version.as_deref();
        let mut next = split.read_from();
        let collect =
            |pending: &mut Pending, index: u64, record: &[u8]| match items.item(index, record) {
                RecordItem::Item(bytes) => {
                    pending.bytes += bytes.len();
                    pending.items.push(Item {
                        index,
                        data: Some(bytes.into_owned()),
                    });
                }
                RecordItem::NotAnItem => {}
                RecordItem::Bad(reason) => {
                    pending.bad.get_or_insert((index, reason));
                }
            };
        loop {
            if next > size {
                split.finish(&mut |index, record| collect(&mut pending, index, record));
            }
            if let Some((index, reason)) = pending.bad.take() {
                return Err(SplitError::BadRecord { index, reason });
            }
            let done = split.is_done();
            if done || pending.bytes >= SESSION_BYTES {
                let block = std::mem::take(&mut pending.items);
                pending.bytes = 0;
                let bytes = self
                    .process_records(ctx, task, plugin, block, &mut outputs)
                    .await?;
                if let Some(part) = part.as_mut() {
                    part.write(bytes).await?;
                }
                if done {
                    return Ok(outputs);
                }
                if let Err(e) = ctx.record_heartbeat(next).await {
                    tracing::warn!("cannot record a heartbeat: {e}");
                }
                if ctx.is_cancelled() {
                    return Err(SplitError::Activity(ActivityError::cancelled()));
                }
            }
            let last = (next + READ_BYTES - 1).min(size);
            // A slow store must not look like a lost worker: heartbeat while the read waits.
            let read = data_io::read::read_range(source, version, next, last);
            let bytes = heartbeating(ctx, &next, read).await?;
            split.push(&bytes, &mut |index, record| {
                collect(&mut pending, index, record)
            });
            next = last + 1;
            if split.pending_len() > MAX_RECORD_BYTES {
                return Err(SplitError::BadRecord {
                    index: split.pending_start().unwrap_or(next),
                    reason: format!(
                        "the record is longer than {MAX_RECORD_BYTES} bytes (a line without \
                         a line end?)"
                    ),
                });
            }
        }
    }

    /// Runs the plugin over `block` in one instance on the blocking pool, adds the outputs to
    /// `outputs` and returns them as the part's bytes (one line each; skips write nothing).
    async fn process_records(
        &self,
        ctx: &ActivityContext,
        task: &SplitTask,
        plugin: &Arc<LoadedPlugin>,
        block: Vec<Item>,
        outputs: &mut Outputs,
    ) -> Result<Bytes, SplitError> {
        if block.is_empty() {
            return Ok(Bytes::new());
        }
        let slot = self.call_slot(ctx, &()).await;
        let (plugin, config, metrics) = (plugin.clone(), task.config.clone(), self.metrics.clone());
        let name = task.plugin.name.clone();
        let progress = block.first().map_or(0, |item| item.index);
        let run = on_blocking_pool(move || {
            let started = Instant::now();
            let mut session = plugin
                .session(slot, config.as_ref())
                .inspect_err(|e| metrics.failure(&name, e))?;
            let mut results = Vec::with_capacity(block.len());
            for items in block.chunks(BLOCK_ITEMS) {
                results.extend(
                    session
                        .process_each(items)
                        .inspect_err(|e| metrics.failure(&name, e))?,
                );
            }
            metrics.items(&name, block.len() as u64);
            tracing::debug!(items = block.len(), elapsed = ?started.elapsed(), "records processed");
            Ok(results)
        });
        // A slow plugin (an interpreter, 4 MiB of records) is not a lost worker either.
        let results = heartbeating(ctx, &progress, run).await?;
        let mut lines = Vec::new();
        for result in results {
            let output = result.inspect_err(|e| self.metrics.failure(&task.plugin.name, e))?;
            outputs.add(&output);
            match output {
                Output::Record(bytes) => {
                    lines.extend_from_slice(&bytes);
                    lines.push(b'\n');
                }
                Output::Number(n) => {
                    lines.extend_from_slice(n.to_string().as_bytes());
                    lines.push(b'\n');
                }
                Output::Skip => {}
            }
        }
        Ok(Bytes::from(lines))
    }
}
