//! Every activity option and timeout of the workflow, in one place.

use std::time::Duration;

use temporalio_common::RetryPolicy;
use temporalio_sdk::{ActivityCancellationType, ActivityOptions, LocalActivityOptions};

/// How long an item may take once a worker has it, including its wait for one of the
/// worker's call slots (the plugin's own deadline is at most 20 s).
const ITEM_START_TO_CLOSE: Duration = Duration::from_secs(600);

/// Liveness of an item task: a worker that took it and died is noticed within this (the
/// demo's start-to-close); a live worker heartbeats while the item waits its turn.
const ITEM_HEARTBEAT: Duration = Duration::from_secs(30);

/// A leaf activity's liveness: it heartbeats while computing (see
/// `crate::activities::checkpoint`), so a lost worker is noticed within this.
const LEAF_HEARTBEAT: Duration = Duration::from_secs(30);

/// A leaf activity's whole run: far beyond any leaf's work, which heartbeats meanwhile.
const LEAF_START_TO_CLOSE: Duration = Duration::from_secs(3600);

/// Resolving a plugin's name to its version: a directory lookup, plus a compile at most.
const RESOLVE_START_TO_CLOSE: Duration = Duration::from_secs(30);

/// How long a resolve sent to the plugin's own queue waits for a holder: if they all went
/// away, the batch says so within this rather than wait forever.
const RESOLVE_SCHEDULE_TO_START: Duration = Duration::from_secs(60);

/// Listing a worker's plugins (it loads each).
const LIST_START_TO_CLOSE: Duration = Duration::from_secs(60);

/// The demo's retry: bounded and exponential.
fn retry_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(10))
        .maximum_attempts(5)
        .build()
}

/// An item's activity: it waits in the queue as long as workers are busy; a worker that holds
/// an item but is busy with other batches' calls heartbeats, so an honest item never fails
/// because of load. Also the manifest's.
pub(super) fn item() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(ITEM_START_TO_CLOSE)
        .heartbeat_timeout(ITEM_HEARTBEAT)
        .retry_policy(retry_policy())
        .build()
}

/// An item's local activity (run by the leaf's own worker, recorded as markers). The timeout
/// covers a wait for a call slot behind other batches' calls; a lost worker is noticed by the
/// workflow task's own timeout, not by this one.
pub(super) fn local_item() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(ITEM_START_TO_CLOSE)
        .retry_policy(retry_policy())
        .build()
}

/// A leaf's one activity (`batch` mode, data splits): it may run for long, so liveness is
/// checked by heartbeats rather than by a short start-to-close timeout. A cancelled leaf
/// waits until its activity has stopped (it sees the cancellation at its next heartbeat), so a
/// cancelled batch's closing means its plugin calls have stopped.
pub(super) fn leaf() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(LEAF_START_TO_CLOSE)
        .cancellation_type(ActivityCancellationType::WaitCancellationCompleted)
        .heartbeat_timeout(LEAF_HEARTBEAT)
        .retry_policy(retry_policy())
        .build()
}

/// `options` for work re-sent to the plugin's own queue, which only holders of the plugin
/// poll. No schedule-to-start limit: like any activity, it waits there until such a worker is
/// free (or comes back), and the pending activity shows where it waits.
pub(super) fn routed(mut options: ActivityOptions, queue: &str) -> ActivityOptions {
    options.task_queue = Some(queue.to_owned());
    options
}

/// Resolving a plugin on its own queue (`queue`), when this worker lacks it.
pub(super) fn resolve_elsewhere(queue: String) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(RESOLVE_START_TO_CLOSE)
        .task_queue(queue)
        .schedule_to_start_timeout(RESOLVE_SCHEDULE_TO_START)
        .retry_policy(retry_policy())
        .build()
}

/// Listing the worker's plugins.
pub(super) fn list() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(LIST_START_TO_CLOSE)
        .retry_policy(RetryPolicy::builder().maximum_attempts(3).build())
        .build()
}
