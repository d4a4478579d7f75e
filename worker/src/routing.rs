//! Routing and retry policy, in one place: how a plugin failure is presented to Temporal (its
//! kind and whether a retry could help), and how the workflow reacts to the two routable kinds
//! ("run here; if the plugin version is elsewhere, run again on the plugin's own queue", see
//! [`crate::plugin_queues`]). The plugin host ([`crate::plugins`]) knows nothing of Temporal;
//! this module maps its errors.

use std::future::Future;

use temporalio_common::protos::temporal::api::failure::v1::Failure;
use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;
use temporalio_sdk::ActivityExecutionError;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::ActivityError;

use crate::plugins::PluginError;

/// The kind of a [`PluginError::DigestUnavailable`] failure: the workflow sends the work on to
/// the plugin's own task queue ([`batch_core::ids::plugin_task_queue`]).
pub const VERSION_UNAVAILABLE: &str = "PluginVersionUnavailable";
/// The kind of a [`PluginError::HeldElsewhere`] failure: the workflow asks again on the
/// plugin's own task queue.
pub const HELD_ELSEWHERE: &str = "PluginHeldElsewhere";

/// A stable name for the failure's type in Temporal (the Web UI, `temporal workflow show`,
/// metrics labels).
pub fn kind(e: &PluginError) -> &'static str {
    match e {
        PluginError::InvalidName(_) => "PluginInvalidName",
        PluginError::NotFound { .. } => "PluginNotFound",
        PluginError::DigestUnavailable { .. } => VERSION_UNAVAILABLE,
        PluginError::HeldElsewhere { .. } => HELD_ELSEWHERE,
        PluginError::Directory { .. } => "PluginDirectoryUnreadable",
        PluginError::Read { .. } => "PluginUnreadable",
        PluginError::Invalid { .. } => "PluginInvalid",
        PluginError::Refused { .. } => "PluginRefusedItem",
        PluginError::Deadline { .. } => "PluginDeadlineExceeded",
        PluginError::Configure { .. } => "PluginRefusedConfig",
        PluginError::WrongInput { .. } => "PluginWrongInput",
        PluginError::ResultCount { .. } | PluginError::Columns { .. } => "PluginBrokeInterface",
        PluginError::OutputTooLarge { .. } => "PluginOutputTooLarge",
        PluginError::Trap { .. } => "PluginTrapped",
        PluginError::Instantiate { .. } => "PluginInstantiationFailed",
        PluginError::HostPanic { .. } => "PluginHostPanicked",
        PluginError::ShuttingDown => "WorkerShuttingDown",
        PluginError::HostBusy { .. } => "PluginHostBusy",
    }
}

/// Whether another attempt (here or on another worker) could succeed: a missing pinned
/// version, or a condition of the host. Everything else is a property of the plugin or its
/// input, and retrying would only repeat it.
pub fn is_retryable(e: &PluginError) -> bool {
    matches!(
        e,
        PluginError::DigestUnavailable { .. }
            | PluginError::HostPanic { .. }
            | PluginError::ShuttingDown
            | PluginError::HostBusy { .. }
    )
}

/// Whether the work should go to the plugin's own task queue, where only the workers that hold
/// the plugin poll, instead of being retried on the batch queue.
pub fn is_routable(e: &PluginError) -> bool {
    matches!(
        e,
        PluginError::DigestUnavailable { .. } | PluginError::HeldElsewhere { .. }
    )
}

/// A plugin error as an activity failure typed by its kind. Work that reached this worker on
/// the batch queue without the pinned version fails for good *here* (`routed` false), so the
/// workflow re-sends it to the plugin's queue at once; on the plugin's queue another holder may
/// still have it, so there it is retried.
pub fn to_activity_error(e: PluginError, routed: bool) -> ActivityError {
    let retryable = is_retryable(&e) && (routed || !is_routable(&e));
    let kind = kind(&e);
    if is_routable(&e) && !routed {
        // Expected whenever workers' plugin directories differ: the workflow re-routes it.
        tracing::debug!(kind, "{}", e.message());
    } else {
        tracing::warn!(kind, retryable, "{}", e.message());
    }
    ActivityError::application(
        // One self-contained message: the SDK would otherwise send the sources as causes, and
        // the workflow reports a failure's innermost cause (here, "No such file" alone).
        ApplicationFailure::builder(e.message())
            .type_name(kind.to_owned())
            .non_retryable(!retryable)
            .build(),
    )
}

/// A source or output failure ([`data_io::DataError`]) as Temporal should see it: kind
/// `DataUnavailable`, retried only when a retry can help (a network error, not a missing
/// object or a denied request). The message names the location.
pub fn data_failure(e: &data_io::DataError) -> ActivityError {
    let permanent = e.is_permanent();
    tracing::warn!(permanent, "{}", e.message());
    ActivityError::application(
        ApplicationFailure::builder(e.message())
            .type_name("DataUnavailable".to_owned())
            .non_retryable(permanent)
            .build(),
    )
}

/// Runs `here`; if it fails with a failure of `routed_kind`, runs `there` (the same work on the
/// plugin's own queue) instead. The one shape of every plugin call of the workflow.
pub async fn here_or_there<T, Here, There>(
    here: Here,
    routed_kind: &str,
    there: impl FnOnce() -> There,
) -> Result<T, ActivityExecutionError>
where
    Here: Future<Output = Result<T, ActivityExecutionError>>,
    There: Future<Output = Result<T, ActivityExecutionError>>,
{
    match here.await {
        Err(e) if failure_kind(e.failure()) == Some(routed_kind) => there().await,
        other => other,
    }
}

/// The type of the application failure in `failure`'s cause chain, if any (the kind a plugin
/// activity gave its failure).
pub fn failure_kind(failure: Option<&Failure>) -> Option<&str> {
    let mut failure = failure?;
    loop {
        if let Some(FailureInfo::ApplicationFailureInfo(info)) = &failure.failure_info {
            return Some(info.r#type.as_str());
        }
        failure = failure.cause.as_deref()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_version_and_host_conditions_are_retried() {
        let refused = PluginError::Refused {
            plugin: "p".into(),
            item: 1,
            message: "no".into(),
        };
        assert!(!is_retryable(&refused) && !is_routable(&refused));
        assert_eq!(kind(&refused), "PluginRefusedItem");
        let busy = PluginError::HostBusy {
            source: wasmtime::Error::msg("pool"),
        };
        assert!(is_retryable(&busy) && !is_routable(&busy));
        let elsewhere = PluginError::DigestUnavailable {
            name: "p".into(),
            digest: "0".repeat(64),
            dir: "/x".into(),
            found: "none".into(),
        };
        assert!(is_retryable(&elsewhere) && is_routable(&elsewhere));
        assert_eq!(kind(&elsewhere), VERSION_UNAVAILABLE);
        assert!(is_retryable(&PluginError::ShuttingDown));
    }

    #[test]
    fn the_kind_is_found_anywhere_in_the_cause_chain() {
        let app = |kind: &str| Failure {
            failure_info: Some(FailureInfo::ApplicationFailureInfo(
                temporalio_common::protos::temporal::api::failure::v1::ApplicationFailureInfo {
                    r#type: kind.to_owned(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let wrapper = Failure {
            cause: Some(Box::new(app(VERSION_UNAVAILABLE))),
            ..Default::default()
        };
        assert_eq!(failure_kind(Some(&wrapper)), Some(VERSION_UNAVAILABLE));
        assert_eq!(failure_kind(Some(&Failure::default())), None);
        assert_eq!(failure_kind(None), None);
    }
}
