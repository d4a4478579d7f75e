//! Running a split's records through the plugin with the leaf engine ([`Engine`]): the records
//! read so far, in spans, each in a fresh instance on the blocking pool, holding at most the
//! memory cap of results (a span ends after the record whose results reach half of it), then
//! written in source order.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use batch_core::blocks::BlockSizer;
use batch_core::{Output, PluginConfig};

use super::output::{RecordResult, SplitOutput};
use super::pending::Pending;
use super::{SplitError, SplitRun};
use crate::activities::checkpoint::heartbeating_watch;
use crate::activities::engine::{Engine, Sink, SpanEnd, SpanItems};
use crate::activities::{on_blocking_pool, within_tolerance};
use crate::plugins::sandbox::SlotKind;
use crate::plugins::{PluginError, RecordBuffer};
use crate::routing;

/// Most records of one span, whatever their size: short records are bounded too, for plugins
/// whose instance grows with every record it is given (the JavaScript toolchain's does, by
/// ~0.75 KB a record through `process`, ~0.2 KB through `records`: 16,384 records stay far below
/// the memory cap).
const SPAN_RECORDS: usize = 16_384;

/// A split's sink: the results of the span's records, in order, and how many bytes they hold.
#[derive(Default)]
struct Kept {
    results: Vec<RecordResult>,
    held: usize,
}

impl Sink for Kept {
    fn clear(&mut self) {
        *self = Self::default();
    }

    fn output(&mut self, _index: u64, output: Output) {
        let bytes = match &output {
            Output::Record(bytes) => bytes.len(),
            Output::Number(_) | Output::Skip => 0,
        };
        self.held += std::mem::size_of::<RecordResult>() + bytes;
        self.results.push(RecordResult::Output(output));
    }

    fn failure(&mut self, _index: u64, e: &PluginError) {
        let message = e.message();
        self.held += std::mem::size_of::<RecordResult>() + message.len();
        self.results
            .push(RecordResult::Failed(routing::kind(e), message));
    }

    fn held(&self) -> usize {
        self.held
    }
}

impl SplitRun<'_> {
    /// Runs the pending records through the plugin and writes them (with the bad records among
    /// them, in source order); fails the split when its failed items exceed the tolerance.
    pub(super) async fn flush(
        &self,
        pending: &mut Pending,
        out: &mut SplitOutput,
    ) -> Result<(), SplitError> {
        let (records, mut bad) = pending.take();
        // Shared with the blocking pool's runs, not copied for each span.
        let records = Arc::new(records);
        let mut at = 0;
        loop {
            let done = self.run_span(&records, at).await?;
            // The bad records before the next span's first record are this span's.
            let end = at + done.len();
            let cut = if end < records.len() {
                records.index(end)
            } else {
                u64::MAX
            };
            let later = bad.split_off(bad.partition_point(|b| b.index < cut));
            out.write(&records, at..end, done, bad).await?;
            bad = later;
            at = end;
            if at == records.len() {
                break;
            }
        }
        let task = self.task;
        within_tolerance(&out.failures, &task.tolerance, task.first, task.last)
            .map_err(SplitError::Activity)
    }

    /// One span: the records from the `at`-th on, at most [`SPAN_RECORDS`] of
    /// them, in a fresh instance, until they end or the results held reach half the memory
    /// cap. Returns the results of the records it ran (at least one, unless there is none to
    /// run).
    async fn run_span(
        &self,
        records: &Arc<RecordBuffer>,
        at: usize,
    ) -> Result<Vec<RecordResult>, SplitError> {
        if at == records.len() {
            return Ok(Vec::new());
        }
        let kind = match self.http {
            Some(_) => SlotKind::Http,
            None => SlotKind::Compute,
        };
        let slot = self
            .activities
            .call_slot(self.ctx, &(), kind)
            .await
            .map_err(SplitError::Activity)?;
        let http = self.http.clone();
        let plugin = self.plugin.clone();
        let config: Option<PluginConfig> = self.task.config.clone();
        let tolerant = !self.task.tolerance.is_none();
        let metrics = self.activities.metrics.clone();
        let span = records.clone();
        let progress = records.index(at);
        let cancelled = Arc::new(AtomicBool::new(false));
        let stop = cancelled.clone();
        let run = on_blocking_pool(move || {
            let started = Instant::now();
            let name = plugin.name().to_owned();
            let engine = Engine {
                config: config.as_ref(),
                tolerant,
                cancelled: &stop,
                metrics: &metrics,
                plugin: &name,
                budget: Some(plugin.engine().limits().memory_bytes),
            };
            let session = plugin
                .session_calling(slot, config.as_ref(), http)
                .inspect_err(|e| metrics.failure(&name, e))?;
            let mut kept = Kept::default();
            let mut sizer = BlockSizer::for_deadline(plugin.cpu_deadline());
            let end = (at + SPAN_RECORDS).min(span.len());
            let records = SpanItems::Records(&span, at..end);
            let (end, _session) = engine.run_span(session, &records, &mut kept, &mut sizer)?;
            let done = match end {
                SpanEnd::Done(n) => n,
                SpanEnd::Cancelled => return Ok(None),
            };
            metrics.items(&name, done as u64);
            tracing::debug!(records = done, elapsed = ?started.elapsed(), "records processed");
            kept.results.truncate(done);
            Ok(Some(kept.results))
        });
        // A slow plugin (an interpreter, 4 MiB of records) is not a lost worker either.
        match heartbeating_watch(self.ctx, &progress, &cancelled, run).await? {
            Some(results) if !results.is_empty() => Ok(results),
            Some(_) => Err(SplitError::Plugin(PluginError::OutputTooLarge {
                plugin: self.plugin.label(),
                items: crate::plugins::ItemSpan::one(progress),
                limit: self.plugin.engine().limits().memory_bytes,
            })),
            None => Err(SplitError::Activity(
                temporalio_sdk::activities::ActivityError::cancelled(),
            )),
        }
    }
}
