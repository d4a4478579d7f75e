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

use batch_core::FailureKind;

use crate::plugins::PluginError;
use crate::plugins::store::StoreError;

/// The kind of a plugin failure, as Temporal shows it (the Web UI, `temporal workflow show`,
/// metrics labels) and reports count it. [`FailureKind::PluginVersionUnavailable`] and
/// [`FailureKind::PluginHeldElsewhere`] send the work on to the plugin's own task queue
/// ([`batch_core::ids::plugin_task_queue`]).
pub fn kind(e: &PluginError) -> FailureKind {
    use FailureKind as K;
    match e {
        PluginError::InvalidName(_) => K::PluginInvalidName,
        PluginError::NotFound { .. } => K::PluginNotFound,
        PluginError::DigestUnavailable { .. } => K::PluginVersionUnavailable,
        PluginError::HeldElsewhere { .. } => K::PluginHeldElsewhere,
        PluginError::Store { source, .. } => match source {
            StoreError::Tampered { .. } => K::PluginTampered,
            StoreError::InvalidName(_) => K::PluginInvalidName,
            StoreError::Missing { .. } => K::PluginNotFound,
            StoreError::Data { .. } | StoreError::BadRecord { .. } => K::PluginStoreUnavailable,
        },
        PluginError::Unsigned { .. } => K::PluginUnsigned,
        PluginError::Directory { .. } => K::PluginDirectoryUnreadable,
        PluginError::Read { .. } => K::PluginUnreadable,
        PluginError::Invalid { .. } => K::PluginInvalid,
        PluginError::Refused { .. } => K::PluginRefusedItem,
        PluginError::Deadline { .. } => K::PluginDeadlineExceeded,
        PluginError::Configure { .. } => K::PluginRefusedConfig,
        PluginError::WrongInput { .. } => K::PluginWrongInput,
        PluginError::ResultCount { .. } | PluginError::Columns { .. } => K::PluginBrokeInterface,
        PluginError::OutputTooLarge { .. } => K::PluginOutputTooLarge,
        PluginError::Trap { .. } => K::PluginTrapped,
        PluginError::Instantiate { .. } => K::PluginInstantiationFailed,
        PluginError::HostPanic { .. } => K::PluginHostPanicked,
        PluginError::ShuttingDown => K::WorkerShuttingDown,
        PluginError::HostBusy { .. } => K::PluginHostBusy,
        PluginError::ServiceUnavailable { .. } => K::ServiceUnavailable,
        PluginError::HttpNotGranted { .. } => K::HttpNotGranted,
    }
}

/// Whether a plugin failure is an item's own (a tolerance may count it).
pub fn is_item_failure(e: &PluginError) -> bool {
    kind(e).is_item_failure()
}

/// An activity failure of `kind`, with `message`, retried by Temporal only when `retryable`:
/// the one shape every failure of an activity takes.
pub fn failure(kind: FailureKind, message: String, retryable: bool) -> ActivityError {
    ActivityError::application(
        ApplicationFailure::builder(message)
            .type_name(kind.as_str().to_owned())
            .non_retryable(!retryable)
            .build(),
    )
}

/// Whether another attempt (here or on another worker) could succeed: a missing pinned
/// version, or a condition of the host. Everything else is a property of the plugin or its
/// input, and retrying would only repeat it.
pub fn is_retryable(e: &PluginError) -> bool {
    if let PluginError::Store { source, .. } = e {
        return source.is_transient();
    }
    matches!(
        e,
        PluginError::DigestUnavailable { .. }
            | PluginError::HostPanic { .. }
            | PluginError::ShuttingDown
            | PluginError::HostBusy { .. }
            | PluginError::ServiceUnavailable { .. }
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
        tracing::debug!(%kind, "{}", e.message());
    } else {
        tracing::warn!(%kind, retryable, "{}", e.message());
    }
    // One self-contained message: the SDK would otherwise send the sources as causes, and the
    // workflow reports a failure's innermost cause (here, "No such file" alone).
    failure(kind, e.message(), retryable)
}

/// A source or output failure ([`data_io::DataError`]) as Temporal should see it: kind
/// `DataUnavailable`, retried only when a retry can help (a network error, not a missing
/// object or a denied request). The message names the location.
pub fn data_failure(e: &data_io::DataError) -> ActivityError {
    let permanent = e.is_permanent();
    tracing::warn!(permanent, "{}", e.message());
    failure(FailureKind::DataUnavailable, e.message(), !permanent)
}

/// Runs `here`; if it fails with a failure of `routed_kind`, runs `there` (the same work on the
/// plugin's own queue) instead. The one shape of every plugin call of the workflow.
pub async fn here_or_there<T, Here, There>(
    here: Here,
    routed_kind: FailureKind,
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

/// The kind of the application failure in `failure`'s cause chain, if any (the kind an
/// activity or a child gave its failure).
pub fn failure_kind(failure: Option<&Failure>) -> Option<FailureKind> {
    let mut failure = failure?;
    loop {
        if let Some(FailureInfo::ApplicationFailureInfo(info)) = &failure.failure_info {
            return FailureKind::parse(&info.r#type);
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
        assert_eq!(kind(&refused), FailureKind::PluginRefusedItem);
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
        assert_eq!(kind(&elsewhere), FailureKind::PluginVersionUnavailable);
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
            cause: Some(Box::new(
                app(FailureKind::PluginVersionUnavailable.as_str()),
            )),
            ..Default::default()
        };
        assert_eq!(
            failure_kind(Some(&wrapper)),
            Some(FailureKind::PluginVersionUnavailable)
        );
        assert_eq!(failure_kind(Some(&Failure::default())), None);
        assert_eq!(failure_kind(None), None);
    }
}
