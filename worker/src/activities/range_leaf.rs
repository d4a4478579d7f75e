//! A `batch`-mode leaf over a range of items (or a retry batch's list of them): the plugin
//! runs in one activity, a slice at a time, resuming from its last heartbeat after a crash.
//!
//! **Which items share an instance is decided by counts, never by time**, so a batch run
//! twice gives the same outputs whatever the load, even with a plugin that keeps state in
//! its instance: the leaf's items are cut into *spans* of [`SPAN_ITEMS`] consecutive items
//! (counted from the leaf's first item; for a list, from its first listed item), and each
//! span runs in a fresh instance. Inside a span the host hands the plugin blocks sized by
//! time ([`BlockSizer`]: how many items a call takes, which no output may depend on); a
//! refusal is an answer and the instance goes on. If a call fails as a whole (a trap, the
//! deadline, a broken contract) and the batch tolerates failures, the span is run again from
//! its first item, one item per call, in a fresh instance, and in a fresh instance again after
//! each item whose call fails: so the outputs are always those of the span's items run one by
//! one in one instance, with a fresh instance after each item that traps. Slices (what runs
//! between heartbeats, holding a call slot) end at span ends, and so does the progress a
//! heartbeat records: a resumed leaf starts at a span's first item, in a fresh instance, as
//! the first attempt did.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use batch_core::blocks::{BlockSizer, SPAN_ITEMS};
use batch_core::{FailedItem, Failures, Outputs, PluginConfig, Tolerance};
use serde::{Deserialize, Serialize};
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use super::{
    HEARTBEAT_EVERY, PluginActivities, RangeOutcome, RangeTask, on_blocking_pool,
    tolerance_exceeded,
};
use crate::metrics::PluginMetrics;
use crate::plugins::sandbox::CallSlot;
use crate::plugins::{Item, LoadedPlugin, PluginError, PluginSession};
use crate::routing;

/// What a `batch`-mode leaf has done so far, sent with each heartbeat: a retry starts from
/// `next` (a span's first item) with these outputs and failures instead of from the beginning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RangeProgress {
    pub(super) next: u64,
    pub(super) outputs: Outputs,
    #[serde(default, skip_serializing_if = "Failures::is_empty")]
    pub(super) failures: Failures,
}

/// Why a batch-mode leaf stopped: its plugin failed, or the activity was cancelled.
pub(super) enum RangeError {
    Plugin(PluginError),
    Activity(ActivityError),
}

impl From<PluginError> for RangeError {
    fn from(e: PluginError) -> Self {
        RangeError::Plugin(e)
    }
}

impl PluginActivities {
    /// Runs the plugin over `task`'s range a slice at a time: each slice takes a call slot,
    /// runs whole spans for about [`HEARTBEAT_EVERY`] on the blocking pool and gives the slot
    /// back, so a long leaf shares the cores with other batches' calls. Progress is heartbeated
    /// between slices and while a long span runs (a retry resumes from the last span end);
    /// a cancelled activity stops at the next block.
    pub(super) async fn run_range(
        &self,
        ctx: &ActivityContext,
        task: RangeTask,
    ) -> Result<RangeOutcome, RangeError> {
        let mut progress = resume_point(ctx, &task);
        let plugin = self
            .plugin(ctx, &progress, &task.plugin)
            .await
            .inspect_err(|e| self.metrics.failure(&task.plugin.name, e))?;
        plugin.check_input(None)?;
        let list: Option<Arc<[u64]>> = task.items.as_deref().map(Arc::from);
        while progress.next <= task.last {
            let slot = self
                .call_slot(ctx, &progress)
                .await
                .map_err(RangeError::Activity)?;
            let cancelled = Arc::new(AtomicBool::new(false));
            let slice = RangeSlice {
                plugin: plugin.clone(),
                config: task.config.clone(),
                tolerance: task.tolerance,
                first: task.first,
                last: task.last,
                list: list.clone(),
                metrics: self.metrics.clone(),
                cancelled: cancelled.clone(),
                progress: progress.clone(),
            };
            // A slow plugin's span may outlast the heartbeat timeout: heartbeat the last span
            // end meanwhile, and pass a cancellation on to the slice.
            let running = on_blocking_pool(move || slice.run(slot));
            progress = super::heartbeating_watch(ctx, &progress, &cancelled, running).await?;
            if task.tolerance.exceeded_by(progress.failures.count) {
                return Err(RangeError::Activity(tolerance_exceeded(
                    &progress.failures,
                    &task.tolerance,
                    task.first,
                    task.last,
                )));
            }
            if progress.next <= task.last {
                if ctx.is_cancelled() {
                    tracing::info!(
                        first = task.first,
                        last = task.last,
                        next = progress.next,
                        "batch leaf cancelled: its plugin calls stopped"
                    );
                    return Err(RangeError::Activity(ActivityError::cancelled()));
                }
                if let Err(e) = ctx.record_heartbeat(progress.clone()).await {
                    tracing::warn!("cannot record a heartbeat: {e}");
                }
            }
        }
        Ok(RangeOutcome {
            outputs: progress.outputs,
            failures: progress.failures,
        })
    }
}

/// Where a `batch`-mode leaf starts: the progress of its last heartbeat (a retry after a crash
/// or a timeout), if it is within the task's range, else the beginning.
fn resume_point(ctx: &ActivityContext, task: &RangeTask) -> RangeProgress {
    let resumed: Option<RangeProgress> = ctx.heartbeat_details().deserialize().ok().flatten();
    match resumed {
        Some(p) if (task.first..=task.last + 1).contains(&p.next) => {
            tracing::info!(
                first = task.first,
                last = task.last,
                next = p.next,
                "resuming a batch leaf"
            );
            p
        }
        _ => RangeProgress {
            next: task.first,
            outputs: Outputs::default(),
            failures: Failures::default(),
        },
    }
}

/// One slice of a `batch`-mode leaf: what the blocking pool needs to run it.
struct RangeSlice {
    plugin: Arc<LoadedPlugin>,
    config: Option<PluginConfig>,
    tolerance: Tolerance,
    /// The leaf's items: `first..=last`, or the listed ones (a retry batch).
    first: u64,
    last: u64,
    list: Option<Arc<[u64]>>,
    metrics: PluginMetrics,
    /// Set when the activity is cancelled: the slice stops at its next block.
    cancelled: Arc<AtomicBool>,
    progress: RangeProgress,
}

/// The items of one span.
enum Span {
    /// `first..=last`.
    Range { first: u64, last: u64 },
    /// The listed items (a retry batch's).
    Listed(Vec<u64>),
}

impl Span {
    fn len(&self) -> usize {
        match self {
            Span::Range { first, last } => usize::try_from(last - first + 1).unwrap_or(usize::MAX),
            Span::Listed(items) => items.len(),
        }
    }

    fn last(&self) -> u64 {
        match self {
            Span::Range { last, .. } => *last,
            Span::Listed(items) => items.last().copied().unwrap_or_default(),
        }
    }

    /// The span's items from the `at`-th on, `len` of them.
    fn items(&self, at: usize, len: usize) -> Vec<Item> {
        match self {
            Span::Range { first, .. } => (first + at as u64..)
                .take(len)
                .map(|index| Item { index, data: None })
                .collect(),
            Span::Listed(items) => items[at..at + len]
                .iter()
                .map(|&index| Item { index, data: None })
                .collect(),
        }
    }
}

/// What a span produced.
#[derive(Default)]
struct SpanOutcome {
    outputs: Outputs,
    failures: Failures,
}

impl RangeSlice {
    /// The span that `progress.next` starts (or is inside of: a resume point of an older
    /// worker's heartbeat), aligned to the leaf's first item.
    fn span_at(&self, next: u64) -> Option<Span> {
        let span = SPAN_ITEMS as u64;
        match &self.list {
            None => {
                let end = self.first + ((next - self.first) / span + 1) * span - 1;
                Some(Span::Range {
                    first: next,
                    last: end.min(self.last),
                })
            }
            Some(list) => {
                let at = list.partition_point(|&item| item < next);
                if at == list.len() {
                    return None;
                }
                let end = ((at / SPAN_ITEMS) + 1) * SPAN_ITEMS;
                Some(Span::Listed(list[at..end.min(list.len())].to_vec()))
            }
        }
    }

    /// Runs whole spans from `progress.next`, each in a fresh instance, until `last`, the
    /// slice's time, the tolerance or a cancellation; the instance, and with it `slot`, is
    /// dropped at the end.
    fn run(mut self, slot: CallSlot) -> Result<RangeProgress, PluginError> {
        let started = Instant::now();
        let name = self.plugin.name().to_owned();
        let mut sizer = BlockSizer::for_deadline(self.plugin.cpu_deadline());
        let mut session = Some(
            self.plugin
                .session(slot, self.config.as_ref())
                .inspect_err(|e| self.metrics.failure(&name, e))?,
        );
        let mut first_span = true;
        while self.progress.next <= self.last {
            let Some(span) = self.span_at(self.progress.next) else {
                self.progress.next = self.last + 1;
                break;
            };
            // Each span in a fresh instance (the slice's first has one already).
            let fresh = match session.take() {
                Some(s) if first_span => s,
                Some(s) => s.renew(self.config.as_ref())?,
                None => unreachable!("a session is put back after every span"),
            };
            first_span = false;
            let (outcome, back) = self.run_span(fresh, &span, &mut sizer)?;
            session = Some(back);
            let Some(outcome) = outcome else {
                // Cancelled mid-span: what the span did is dropped, its progress not kept.
                break;
            };
            self.metrics.items(&name, span.len() as u64);
            self.progress.outputs =
                std::mem::take(&mut self.progress.outputs).then(outcome.outputs);
            self.progress.failures =
                std::mem::take(&mut self.progress.failures).then(outcome.failures);
            self.progress.next = match &span {
                Span::Range { last, .. } => last + 1,
                Span::Listed(_) if span.last() >= self.last => self.last + 1,
                Span::Listed(_) => span.last() + 1,
            };
            if started.elapsed() >= HEARTBEAT_EVERY
                || self.tolerance.exceeded_by(self.progress.failures.count)
                || self.cancelled.load(Ordering::Relaxed)
            {
                break;
            }
        }
        Ok(self.progress)
    }

    /// One span in the fresh instance of `session`: its outcome (`None` when cancelled), and
    /// the session to go on with.
    fn run_span(
        &self,
        mut session: PluginSession<'static>,
        span: &Span,
        sizer: &mut BlockSizer,
    ) -> Result<(Option<SpanOutcome>, PluginSession<'static>), PluginError> {
        let name = self.plugin.name();
        let tolerant = !self.tolerance.is_none();
        let mut outcome = SpanOutcome::default();
        let mut numbers = Vec::new();
        let mut at = 0;
        while at < span.len() {
            if self.cancelled.load(Ordering::Relaxed) {
                return Ok((None, session));
            }
            let len = sizer.next_len().min(span.len() - at);
            let block_started = Instant::now();
            let failures = &mut outcome.failures;
            let metrics = &self.metrics;
            let mut refused = |e: PluginError| {
                metrics.failure(name, &e);
                failures.push(FailedItem::new(
                    e.item().unwrap_or_default(),
                    routing::kind(&e),
                    &e.message(),
                ));
            };
            let result = match span {
                Span::Range { first, .. } => session.process_range_into(
                    first + at as u64,
                    len,
                    &mut outcome.outputs,
                    &mut numbers,
                    tolerant.then_some(&mut refused as &mut dyn FnMut(PluginError)),
                ),
                Span::Listed(_) => session.process_each(&span.items(at, len)).and_then(|each| {
                    for result in each {
                        match result {
                            Ok(output) => outcome.outputs.add(&output),
                            Err(e) if tolerant => refused(e),
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                }),
            };
            match result {
                Ok(()) => {}
                Err(e) if tolerant && routing::is_item_failure(&e) => {
                    // A call failed as a whole: the span again, one item per call.
                    return self
                        .run_span_one_by_one(session, span)
                        .map(|(o, s)| (Some(o), s));
                }
                Err(e) => {
                    self.metrics.failure(name, &e);
                    return Err(e);
                }
            }
            sizer.record(len, block_started.elapsed());
            at += len;
        }
        Ok((Some(outcome), session))
    }

    /// The span from its first item, one item per call, in a fresh instance, and in a fresh
    /// one again after each item whose call fails (see the module's docs).
    fn run_span_one_by_one(
        &self,
        session: PluginSession<'static>,
        span: &Span,
    ) -> Result<(SpanOutcome, PluginSession<'static>), PluginError> {
        let name = self.plugin.name();
        let mut session = session.renew(self.config.as_ref())?;
        let mut outcome = SpanOutcome::default();
        for item in span.items(0, span.len()) {
            let index = item.index;
            let result = match session.process_each(std::slice::from_ref(&item)) {
                Ok(mut one) => one.pop().unwrap_or(Ok(batch_core::Output::Skip)),
                Err(e) => {
                    session = session.renew(self.config.as_ref())?;
                    Err(e)
                }
            };
            match result {
                Ok(output) => outcome.outputs.add(&output),
                Err(e) if routing::is_item_failure(&e) => {
                    self.metrics.failure(name, &e);
                    let failed = FailedItem::new(index, routing::kind(&e), &e.message());
                    outcome.failures.push(failed);
                }
                Err(e) => return Err(e),
            }
        }
        Ok((outcome, session))
    }
}
