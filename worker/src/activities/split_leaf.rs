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

use batch_core::FailureKind;
use batch_core::failures::EXCERPT_BYTES;
use batch_core::output::{FAILED_DIR, FailedLine, FailedPartInfo, PartInfo};
use batch_core::record_items::{RecordItem, RecordItems};
use batch_core::source::part_name;
use batch_core::split::{RecordTooLong, SplitRecords};
use batch_core::tasks::{SplitOutcome, SplitTask};
use batch_core::{FailedItem, Failures, Output, Outputs, Tolerance};
use bytes::Bytes;
use data_io::write::PartWriter;
use data_io::{Access, Authority, DataError, Location};
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use super::{PluginActivities, heartbeating, on_blocking_pool};
use crate::plugins::module::result_bytes;
use crate::plugins::{Item, LoadedPlugin, PluginError};

/// Bytes read per ranged read.
const READ_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes of a ranged read for one listed record (a retry batch's leaf), more if it is longer.
const RECORD_READ_BYTES: u64 = 64 * 1024;
/// Bytes of records handed to one plugin instance (one call slot, one heartbeat).
const SESSION_BYTES: usize = 4 * 1024 * 1024;
/// Most items per plugin call.
const BLOCK_ITEMS: usize = 1024;

/// Why a split stopped.
pub(super) enum SplitError {
    Plugin(PluginError),
    Data(DataError),
    /// A record the host cannot turn into an item (a CSV row that does not fit the header, a
    /// line over [`batch_core::split::MAX_RECORD_BYTES`]).
    BadRecord {
        index: u64,
        reason: String,
    },
    /// A source the batch cannot process at all (a CSV row with a line break in a quoted
    /// field), whatever its tolerance.
    BadSource {
        index: u64,
        reason: String,
    },
    Activity(ActivityError),
}

impl From<RecordTooLong> for SplitError {
    fn from(e: RecordTooLong) -> Self {
        let reason = RecordTooLong { start: None, ..e }.to_string();
        SplitError::BadRecord {
            index: e.start.unwrap_or_default(),
            reason,
        }
    }
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
            SplitError::BadRecord { index, reason } => crate::routing::failure(
                FailureKind::BadRecord,
                format!("item {index}: {reason}"),
                false,
            ),
            SplitError::BadSource { index, reason } => crate::routing::failure(
                FailureKind::BadSource,
                format!("item {index}: {reason}"),
                false,
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
    bad: Vec<BadRecord>,
    /// A record that fails the batch whatever its tolerance.
    fatal: Option<(u64, String)>,
}

impl Pending {
    /// Adds the record at `index` as the format makes it: an item, nothing (false: a blank
    /// line of JSON Lines, a CSV header), or a bad record.
    fn add(&mut self, items: &RecordItems, index: u64, record: &[u8]) -> bool {
        match items.item(index, record) {
            RecordItem::Item(bytes) => {
                self.bytes += bytes.len();
                self.items.push(Item {
                    index,
                    data: Some(bytes.into_owned()),
                });
            }
            RecordItem::NotAnItem => return false,
            RecordItem::Bad(reason) => self.bad.push(BadRecord {
                index,
                reason,
                excerpt: record[..record.len().min(EXCERPT_BYTES)].to_vec(),
            }),
            RecordItem::Fatal(reason) => {
                self.fatal.get_or_insert((index, reason));
            }
        }
        true
    }

    /// A record that fails the batch whatever its tolerance, or, without a tolerance, the
    /// first bad record: the failure, if any.
    fn intolerable(&self, tolerance: &Tolerance) -> Option<SplitError> {
        if let Some((index, reason)) = &self.fatal {
            return Some(SplitError::BadSource {
                index: *index,
                reason: reason.clone(),
            });
        }
        let bad = self.bad.first().filter(|_| tolerance.is_none())?;
        Some(SplitError::BadRecord {
            index: bad.index,
            reason: bad.reason.clone(),
        })
    }
}

/// A round's records run, their results, and the records left (see
/// [`PluginActivities::run_round`]).
type RoundResults = (Vec<Item>, Vec<Result<Output, PluginError>>, Vec<Item>);

/// A record that cannot become an item, with the start of its bytes.
struct BadRecord {
    index: u64,
    reason: String,
    excerpt: Vec<u8>,
}

/// What a split has counted and written so far.
struct SplitState {
    outputs: Outputs,
    failures: Failures,
    part: Option<PartWriter>,
    /// Opened at the split's first failed item, when the batch has an output.
    failed_part: Option<PartWriter>,
    failed_location: Option<Location>,
}

impl SplitState {
    async fn abort(self) {
        for part in [self.part, self.failed_part].into_iter().flatten() {
            part.abort().await;
        }
    }
}

impl PluginActivities {
    pub(super) async fn run_split(
        &self,
        ctx: &ActivityContext,
        task: SplitTask,
    ) -> Result<SplitOutcome, SplitError> {
        // The operator's grants first: a place outside them is refused before anything is
        // read or created.
        let source = Location::open(
            &task.source.location,
            Authority::granted(&self.grants, Access::Read),
        )?;
        let output = task
            .output
            .as_deref()
            .map(|o| Location::open(o, Authority::granted(&self.grants, Access::Write)))
            .transpose()?;
        let plugin = self
            .plugin(ctx, &(), &task.plugin)
            .await
            .inspect_err(|e| self.metrics.failure(&task.plugin.name, e))?;
        plugin.check_input(Some(task.source.format))?;
        let items = RecordItems::new(&task.source, plugin.input())
            .map_err(|e| DataError::invalid(&task.source.location, e.to_string()))?;
        let name = part_name(task.first, task.last);
        let part = match &output {
            Some(o) => Some(PartWriter::create(o.child(&name)).await?),
            None => None,
        };
        let mut state = SplitState {
            outputs: Outputs::default(),
            failures: Failures::default(),
            part,
            failed_part: None,
            failed_location: output.as_ref().map(|o| o.child(FAILED_DIR).child(&name)),
        };
        let run = match &task.items {
            Some(list) => {
                self.read_listed(ctx, &task, &plugin, &source, &items, list, &mut state)
                    .await
            }
            None => {
                self.read_and_process(ctx, &task, &plugin, &source, &items, &mut state)
                    .await
            }
        };
        if let Err(e) = run {
            state.abort().await;
            return Err(e);
        }
        let SplitState {
            outputs,
            failures,
            part,
            failed_part,
            ..
        } = state;
        let failed_part = match failed_part {
            Some(writer) => Some(FailedPartInfo {
                name: format!("{FAILED_DIR}/{name}"),
                first: task.first,
                last: task.last,
                failed: failures.count,
                bytes: writer.finish().await?,
            }),
            None => None,
        };
        let part = match part {
            Some(writer) => Some(PartInfo {
                name,
                first: task.first,
                last: task.last,
                items: outputs.count + failures.count,
                records: outputs.records,
                numbers: outputs.numbers(),
                skipped: outputs.skipped,
                failed: failures.count,
                bytes: writer.finish().await?,
            }),
            None => None,
        };
        Ok(SplitOutcome {
            outputs,
            part,
            failures,
            failed_part,
        })
    }

    /// Reads the split and runs the plugin over its records, writing the outputs to `part`.
    async fn read_and_process(
        &self,
        ctx: &ActivityContext,
        task: &SplitTask,
        plugin: &Arc<LoadedPlugin>,
        source: &Location,
        items: &RecordItems,
        state: &mut SplitState,
    ) -> Result<(), SplitError> {
        let mut split = SplitRecords::new(task.first, task.last);
        let mut pending = Pending::default();
        let size = task.source.size;
        let version = task.source.version.as_deref();
        let mut next = split.read_from();
        let collect = |pending: &mut Pending, index: u64, record: &[u8]| {
            pending.add(items, index, record);
        };
        loop {
            if next > size {
                split.finish(&mut |index, record| collect(&mut pending, index, record))?;
            }
            if let Some(e) = pending.intolerable(&task.tolerance) {
                return Err(e);
            }
            let done = split.is_done();
            if done || pending.bytes >= SESSION_BYTES {
                self.flush(ctx, task, plugin, &mut pending, state).await?;
                if done {
                    return Ok(());
                }
                if let Err(e) = ctx.record_heartbeat(next).await {
                    tracing::warn!("cannot record a heartbeat: {e}");
                }
                if ctx.is_cancelled() {
                    tracing::info!(
                        first = task.first,
                        last = task.last,
                        next,
                        "split cancelled: its plugin calls stopped, its part is not written"
                    );
                    return Err(SplitError::Activity(ActivityError::cancelled()));
                }
            }
            let last = (next + READ_BYTES - 1).min(size);
            // A slow store must not look like a lost worker: heartbeat while the read waits.
            let read = data_io::read::read_range(source, version, next, last);
            let bytes = heartbeating(ctx, &next, read).await?;
            let pushed = split.push(&bytes, &mut |index, record| {
                collect(&mut pending, index, record)
            });
            // A record that fails the batch comes first, even before a longer one after it.
            if let Some(e) = pending.intolerable(&task.tolerance) {
                return Err(e);
            }
            pushed?;
            next = last + 1;
        }
    }

    /// A retry batch's leaf: reads each listed record where it starts, and runs the plugin
    /// over them as [`Self::read_and_process`] does over a split's.
    #[allow(clippy::too_many_arguments)]
    async fn read_listed(
        &self,
        ctx: &ActivityContext,
        task: &SplitTask,
        plugin: &Arc<LoadedPlugin>,
        source: &Location,
        items: &RecordItems,
        list: &[u64],
        state: &mut SplitState,
    ) -> Result<(), SplitError> {
        let mut pending = Pending::default();
        for (n, &index) in list.iter().enumerate() {
            let record =
                heartbeating(ctx, &index, self.read_record_at(task, source, index)).await?;
            // An earlier batch never reported a line that is not an item.
            if !pending.add(items, index, &record) {
                return Err(SplitError::BadRecord {
                    index,
                    reason: "this line is not an item (blank)".into(),
                });
            }
            if let Some(e) = pending.intolerable(&task.tolerance) {
                return Err(e);
            }
            let last = n + 1 == list.len();
            if last || pending.bytes >= SESSION_BYTES {
                self.flush(ctx, task, plugin, &mut pending, state).await?;
                if ctx.is_cancelled() {
                    return Err(SplitError::Activity(ActivityError::cancelled()));
                }
            }
        }
        Ok(())
    }

    /// Runs the plugin over the pending records and adds them to `state`; fails the split
    /// when its failed items exceed the batch's tolerance.
    async fn flush(
        &self,
        ctx: &ActivityContext,
        task: &SplitTask,
        plugin: &Arc<LoadedPlugin>,
        pending: &mut Pending,
        state: &mut SplitState,
    ) -> Result<(), SplitError> {
        let block = std::mem::take(&mut pending.items);
        let bad = std::mem::take(&mut pending.bad);
        pending.bytes = 0;
        self.process_records(ctx, task, plugin, block, bad, state)
            .await?;
        if task.tolerance.exceeded_by(state.failures.count) {
            return Err(SplitError::Activity(super::tolerance_exceeded(
                &state.failures,
                &task.tolerance,
                task.first,
                task.last,
            )));
        }
        Ok(())
    }

    /// The record that starts at byte `index` (without its line end): the split `index..=index`
    /// owns exactly that record, so [`SplitRecords`] finds its end, whatever its length.
    async fn read_record_at(
        &self,
        task: &SplitTask,
        source: &Location,
        index: u64,
    ) -> Result<Vec<u8>, SplitError> {
        let size = task.source.size;
        let version = task.source.version.as_deref();
        let mut split = SplitRecords::new(index, index);
        let mut next = split.read_from();
        let mut found = None;
        while found.is_none() && !split.is_done() {
            if next > size {
                split.finish(&mut |_, record| found = Some(record.to_vec()))?;
                break;
            }
            let last = (next + RECORD_READ_BYTES - 1).min(size);
            let bytes = data_io::read::read_range(source, version, next, last).await?;
            split.push(&bytes, &mut |_, record| found = Some(record.to_vec()))?;
            next = last + 1;
        }
        found.ok_or_else(|| SplitError::BadRecord {
            index,
            reason: "no record starts at this byte".into(),
        })
    }

    /// Runs the plugin over `block` and adds its outputs (and, with a tolerance, its failed
    /// items and the `bad` records, in source order) to `state`: the counts, the part (one
    /// line per output; skips write nothing) and the `failed/` part. The records go through
    /// instances in rounds, each holding at most the memory cap of results
    /// ([`Self::run_round`]).
    async fn process_records(
        &self,
        ctx: &ActivityContext,
        task: &SplitTask,
        plugin: &Arc<LoadedPlugin>,
        block: Vec<Item>,
        mut bad: Vec<BadRecord>,
        state: &mut SplitState,
    ) -> Result<(), SplitError> {
        let mut rest = block;
        loop {
            let (done, results, remaining) = self.run_round(ctx, task, plugin, rest).await?;
            // The bad records before the next round's first item are this round's.
            let cut = remaining.first().map_or(u64::MAX, |item| item.index);
            let later = bad.split_off(bad.partition_point(|b| b.index < cut));
            self.write_round(task, done, results, bad, state).await?;
            if remaining.is_empty() {
                return Ok(());
            }
            (rest, bad) = (remaining, later);
        }
    }

    /// One round: the records of `block`, from the first, in one instance on the blocking pool
    /// (a fresh one after a failed call, with a tolerance), in blocks of [`BLOCK_ITEMS`], until
    /// the results held reach half the memory cap; each call may copy out at most what is left
    /// of the cap. Returns the records run, their results, and the records left for the next
    /// round.
    async fn run_round(
        &self,
        ctx: &ActivityContext,
        task: &SplitTask,
        plugin: &Arc<LoadedPlugin>,
        mut block: Vec<Item>,
    ) -> Result<RoundResults, SplitError> {
        if block.is_empty() {
            return Ok((block, Vec::new(), Vec::new()));
        }
        let tolerant = !task.tolerance.is_none();
        let slot = self
            .call_slot(ctx, &())
            .await
            .map_err(SplitError::Activity)?;
        let (plugin, config, metrics) = (plugin.clone(), task.config.clone(), self.metrics.clone());
        let name = task.plugin.name.clone();
        let progress = block.first().map_or(0, |item| item.index);
        let run = on_blocking_pool(move || {
            let started = Instant::now();
            let cap = plugin.engine().limits().memory_bytes;
            let mut session = plugin
                .session(slot, config.as_ref())
                .inspect_err(|e| metrics.failure(&name, e))?;
            let mut results = Vec::with_capacity(block.len());
            let mut held = 0;
            while results.len() < block.len() && held < cap / 2 {
                let at = results.len();
                let items = &block[at..(at + BLOCK_ITEMS).min(block.len())];
                session.set_result_budget(cap - held);
                let each = match session.process_each(items) {
                    Ok(each) => each,
                    // With a tolerance, find which items failed the call, one by one.
                    Err(e) if tolerant && crate::routing::is_item_failure(&e) => {
                        let (renewed, each) = session.isolate(items, config.as_ref(), cap, held)?;
                        session = renewed;
                        if each.is_empty() {
                            // The first item alone needs a whole budget: the next round.
                            break;
                        }
                        each
                    }
                    Err(e) => {
                        metrics.failure(&name, &e);
                        return Err(e);
                    }
                };
                held += each.iter().map(result_bytes).sum::<usize>();
                results.extend(each);
            }
            let rest = block.split_off(results.len());
            metrics.items(&name, block.len() as u64);
            tracing::debug!(items = block.len(), elapsed = ?started.elapsed(), "records processed");
            Ok((block, results, rest))
        });
        // A slow plugin (an interpreter, 4 MiB of records) is not a lost worker either.
        Ok(heartbeating(ctx, &progress, run).await?)
    }

    /// Adds one round's outputs, failed items and `bad` records to `state`, and writes them.
    async fn write_round(
        &self,
        task: &SplitTask,
        block: Vec<Item>,
        results: Vec<Result<Output, PluginError>>,
        bad: Vec<BadRecord>,
        state: &mut SplitState,
    ) -> Result<(), SplitError> {
        let tolerant = !task.tolerance.is_none();
        let mut lines = Vec::new();
        let mut failed_lines = Vec::new();
        let mut bad = bad.into_iter().peekable();
        let mut fail =
            |state: &mut SplitState, index: u64, kind: FailureKind, reason: &str, input: &[u8]| {
                state.failures.push(FailedItem::new(index, kind, reason));
                if state.failed_location.is_some() {
                    let line = FailedLine::new(index, kind, reason, input);
                    // A struct of strings and numbers always encodes.
                    if let Ok(json) = serde_json::to_vec(&line) {
                        failed_lines.extend_from_slice(&json);
                        failed_lines.push(b'\n');
                    }
                }
            };
        for (item, result) in block.iter().zip(results) {
            while let Some(record) = bad.next_if(|b| b.index < item.index) {
                fail(
                    state,
                    record.index,
                    FailureKind::BadRecord,
                    &record.reason,
                    &record.excerpt,
                );
            }
            let output = match result {
                Ok(output) => output,
                Err(e) if tolerant && crate::routing::is_item_failure(&e) => {
                    self.metrics.failure(&task.plugin.name, &e);
                    let input = item.data.as_deref().unwrap_or_default();
                    fail(
                        state,
                        item.index,
                        crate::routing::kind(&e),
                        &e.message(),
                        input,
                    );
                    continue;
                }
                Err(e) => {
                    self.metrics.failure(&task.plugin.name, &e);
                    return Err(e.into());
                }
            };
            state.outputs.add(&output);
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
        for record in bad {
            fail(
                state,
                record.index,
                FailureKind::BadRecord,
                &record.reason,
                &record.excerpt,
            );
        }
        if let Some(part) = state.part.as_mut() {
            part.write(Bytes::from(lines)).await?;
        }
        if !failed_lines.is_empty()
            && let Some(location) = &state.failed_location
        {
            if state.failed_part.is_none() {
                state.failed_part = Some(PartWriter::create(location.clone()).await?);
            }
            if let Some(part) = state.failed_part.as_mut() {
                part.write(Bytes::from(failed_lines)).await?;
            }
        }
        Ok(())
    }
}
