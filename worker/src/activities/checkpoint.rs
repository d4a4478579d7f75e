//! Checkpoints of a long activity, written once for every leaf: heartbeats that carry its
//! progress (a retry resumes from the last one), that keep a wait (for a call slot, a slow
//! store, a compile) from being taken for a lost worker, and that bring a cancellation, which
//! the leaf then obeys.

use std::time::Duration;

use serde::Serialize;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

/// How often a slice that runs long (a span of a slow plugin) heartbeats the progress of its
/// last span end: well within the 30 s heartbeat timeout, and later than a slice normally
/// ends ([`HEARTBEAT_EVERY`]), so a heartbeat's progress is normally a new one.
const LONG_SLICE_HEARTBEAT: Duration = Duration::from_secs(10);

/// How long a `batch`-mode leaf computes between heartbeats.
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// Most time between two heartbeats the SDK sends to the server (it keeps the others). A
/// running leaf learns of its batch's cancellation only from a heartbeat's answer, and by
/// default the SDK sends one at most every 0.8 x the heartbeat timeout (24 s here): a
/// cancelled batch then took ~30 s to stop. Every 5 s, it stops within a few seconds, for one
/// call to the server per running leaf every 5 s.
pub const HEARTBEAT_THROTTLE: Duration = Duration::from_secs(5);

/// Runs `work`, heartbeating `progress` every [`HEARTBEAT_EVERY`] until it is done: waiting for
/// a call slot behind other batches' calls, or loading a plugin, is not a lost worker. (The
/// SDK throttles heartbeats to the server; a task that ends within its heartbeat timeout
/// sends none.)
pub(super) async fn heartbeating<T, P: Serialize + Clone + 'static>(
    ctx: &ActivityContext,
    progress: &P,
    work: impl std::future::Future<Output = T>,
) -> T {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            () = tokio::time::sleep(HEARTBEAT_EVERY) => {
                if let Err(e) = ctx.record_heartbeat(progress.clone()).await {
                    tracing::warn!("cannot record a heartbeat: {e}");
                }
            }
        }
    }
}

/// While a slice runs: heartbeats (every [`LONG_SLICE_HEARTBEAT`]: a slice normally ends, and
/// heartbeats its progress, well before) so that a long one is not taken for a lost worker,
/// and tells `work` (through `cancelled`) as soon as the activity is known to be cancelled, so
/// the slice stops at its next block.
pub(super) async fn heartbeating_watch<T, P: Serialize + Clone + 'static>(
    ctx: &ActivityContext,
    progress: &P,
    cancelled: &std::sync::atomic::AtomicBool,
    work: impl std::future::Future<Output = T>,
) -> T {
    let mut work = std::pin::pin!(work);
    let mut told = false;
    loop {
        tokio::select! {
            done = &mut work => return done,
            () = ctx.cancelled(), if !told => {
                cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
                told = true;
            }
            () = tokio::time::sleep(LONG_SLICE_HEARTBEAT) => {
                if let Err(e) = ctx.record_heartbeat(progress.clone()).await {
                    tracing::warn!("cannot record a heartbeat: {e}");
                }
            }
        }
    }
}

/// Records `progress` in a heartbeat and stops the leaf if its batch was cancelled: what a
/// leaf does between two pieces of work (`what` names the leaf in the log).
pub(super) async fn pass<P: Serialize + 'static>(
    ctx: &ActivityContext,
    progress: P,
    what: &(dyn std::fmt::Display + Sync),
) -> Result<(), ActivityError> {
    if ctx.is_cancelled() {
        tracing::info!(leaf = %what, "batch leaf cancelled: its plugin calls stopped");
        return Err(ActivityError::cancelled());
    }
    if let Err(e) = ctx.record_heartbeat(progress).await {
        tracing::warn!("cannot record a heartbeat: {e}");
    }
    Ok(())
}
