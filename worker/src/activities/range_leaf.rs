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
use batch_core::{Failures, Outputs, PluginConfig, Tolerance};
use serde::{Deserialize, Serialize};
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use super::checkpoint::{self, HEARTBEAT_EVERY};
use super::engine::{Aggregate, Engine, Sink as _, SpanEnd, SpanItems};
use super::{PluginActivities, RangeOutcome, RangeTask, on_blocking_pool, within_tolerance};
use crate::metrics::PluginMetrics;
use crate::plugins::http::LeafHttp;
use crate::plugins::sandbox::{CallSlot, SlotKind};
use crate::plugins::{LoadedPlugin, PluginError};

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
        let http = self
            .leaf_http(ctx, task.http.as_ref())
            .map_err(RangeError::Activity)?;
        let kind = match http {
            Some(_) => SlotKind::Http,
            None => SlotKind::Compute,
        };
        let list: Option<Arc<[u64]>> = task.items.as_deref().map(Arc::from);
        while progress.next <= task.last {
            let slot = self
                .call_slot(ctx, &progress, kind)
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
                http: http.clone(),
            };
            // A slow plugin's span may outlast the heartbeat timeout: heartbeat the last span
            // end meanwhile, and pass a cancellation on to the slice.
            let running = on_blocking_pool(move || slice.run(slot));
            progress = checkpoint::heartbeating_watch(ctx, &progress, &cancelled, running).await?;
            within_tolerance(&progress.failures, &task.tolerance, task.first, task.last)
                .map_err(RangeError::Activity)?;
            if progress.next <= task.last {
                let leaf = format!(
                    "items {}..={}, next {}",
                    task.first, task.last, progress.next
                );
                checkpoint::pass(ctx, progress.clone(), &leaf)
                    .await
                    .map_err(RangeError::Activity)?;
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
    /// The leaf's HTTP, in a batch that calls services.
    http: Option<Arc<LeafHttp>>,
}

impl RangeSlice {
    /// The span that `progress.next` starts (or is inside of: a resume point of an older
    /// worker's heartbeat), aligned to the leaf's first item (or first listed item), and the
    /// first item after it.
    fn span_at(&self, next: u64) -> Option<(SpanItems<'_>, u64)> {
        let span = SPAN_ITEMS as u64;
        match &self.list {
            None => {
                let end = self.first + ((next - self.first) / span + 1) * span - 1;
                let last = end.min(self.last);
                Some((SpanItems::Range { first: next, last }, last + 1))
            }
            Some(list) => {
                let at = list.partition_point(|&item| item < next);
                if at == list.len() {
                    return None;
                }
                let end = (((at / SPAN_ITEMS) + 1) * SPAN_ITEMS).min(list.len());
                let after = list.get(end).copied().unwrap_or(self.last + 1);
                Some((SpanItems::Listed(&list[at..end]), after))
            }
        }
    }

    /// Runs whole spans from `progress.next`, each in a fresh instance ([`Engine`]), until
    /// `last`, the slice's time, the tolerance or a cancellation; the instance, and with it
    /// `slot`, is dropped at the end.
    fn run(mut self, slot: CallSlot) -> Result<RangeProgress, PluginError> {
        let started = Instant::now();
        let name = self.plugin.name().to_owned();
        let mut sizer = BlockSizer::for_deadline(self.plugin.cpu_deadline());
        let mut session = self
            .plugin
            .session_calling(slot, self.config.as_ref(), self.http.clone())
            .inspect_err(|e| self.metrics.failure(&name, e))?;
        let mut sink = Aggregate::default();
        let mut first_span = true;
        while self.progress.next <= self.last {
            let engine = Engine {
                config: self.config.as_ref(),
                tolerant: !self.tolerance.is_none(),
                cancelled: &self.cancelled,
                metrics: &self.metrics,
                plugin: &name,
                budget: None,
            };
            let Some((span, after)) = self.span_at(self.progress.next) else {
                self.progress.next = self.last + 1;
                break;
            };
            // Each span in a fresh instance (the slice's first has one already).
            if !first_span {
                session = session.renew(self.config.as_ref())?;
            }
            first_span = false;
            sink.clear();
            let (end, back) = engine.run_span(session, &span, &mut sink, &mut sizer)?;
            session = back;
            let SpanEnd::Done(_) = end else {
                // Cancelled mid-span: what the span did is dropped, its progress not kept.
                break;
            };
            self.metrics.items(&name, span.len() as u64);
            self.progress.outputs =
                std::mem::take(&mut self.progress.outputs).then(std::mem::take(&mut sink.outputs));
            self.progress.failures = std::mem::take(&mut self.progress.failures)
                .then(std::mem::take(&mut sink.failures));
            if let Some(http) = &self.http {
                self.progress.outputs.http.add(&http.take_counts());
            }
            self.progress.next = after;
            if started.elapsed() >= HEARTBEAT_EVERY
                || self.tolerance.exceeded_by(self.progress.failures.count)
                || self.cancelled.load(Ordering::Relaxed)
            {
                break;
            }
        }
        Ok(self.progress)
    }
}
