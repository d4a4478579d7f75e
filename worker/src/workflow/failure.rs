//! How a node fails: the kinds a client can tell apart, and the innermost reason.

use batch_core::FailureKind;
use batch_core::plan::ItemRange;
use temporalio_common::protos::temporal::api::failure::v1::Failure;
use temporalio_sdk::{ApplicationFailure, WorkflowTermination};

/// A workflow's failure of `kind`: final (Temporal already retried what could be retried),
/// with `message`.
fn terminate(kind: FailureKind, message: String) -> WorkflowTermination {
    ApplicationFailure::builder(anyhow::anyhow!(message))
        .type_name(kind.as_str().to_owned())
        .non_retryable(true)
        .build()
        .into()
}

/// Bad input never gets better: fail the workflow for good, with the reason.
pub(super) fn invalid_input(message: String) -> WorkflowTermination {
    terminate(FailureKind::InvalidBatchInput, message)
}

/// A node fails when a child or an item has failed for good, with the innermost reason.
pub(super) fn fail(message: String) -> WorkflowTermination {
    terminate(FailureKind::BatchNodeFailed, message)
}

/// The batch's failed items exceed its tolerance: the kind a client can tell from others.
pub(super) fn tolerance_failure(message: String) -> WorkflowTermination {
    terminate(FailureKind::BatchToleranceExceeded, message)
}

/// A part of the range failed for good: say which items, and the innermost reason.
pub(super) fn range_failed(
    range: ItemRange,
    failure: Option<&Failure>,
    error: &dyn std::fmt::Display,
) -> WorkflowTermination {
    fail(format!(
        "items {}..={}: {}",
        range.first,
        range.last,
        deepest_message(failure, error)
    ))
}

/// The innermost cause's message: what the plugin or the failing descendant said, without
/// the "Activity failed" / "Child workflow failed" wrappers.
pub(super) fn deepest_message(
    failure: Option<&Failure>,
    fallback: &dyn std::fmt::Display,
) -> String {
    let Some(mut failure) = failure else {
        return fallback.to_string();
    };
    while let Some(cause) = failure.cause.as_deref() {
        failure = cause;
    }
    failure.message.clone()
}
