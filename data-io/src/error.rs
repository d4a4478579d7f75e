//! Failures of the data edge. Each names its location, and says whether a retry can help: a
//! missing object, a denied or unauthenticated request, a bad path or a source that changed
//! will fail again (the leaf fails at once, not after five attempts); a network error or a
//! store's internal error may pass.

/// A failure reading or writing a location.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{location}: {what}")]
    Store {
        location: String,
        what: String,
        permanent: bool,
        #[source]
        source: object_store::Error,
    },
    #[error("{location}: {reason}")]
    Invalid { location: String, reason: String },
}

impl DataError {
    /// Wraps a store's error for `location`, doing `what` ("cannot read bytes 1..=10").
    pub fn store(location: &str, what: impl Into<String>, source: object_store::Error) -> Self {
        use object_store::Error as E;
        let permanent = matches!(
            source,
            E::NotFound { .. }
                | E::InvalidPath { .. }
                | E::NotSupported { .. }
                | E::Precondition { .. }
                | E::NotImplemented { .. }
                | E::PermissionDenied { .. }
                | E::Unauthenticated { .. }
                | E::UnknownConfigurationKey { .. }
        );
        let what = match &source {
            E::NotFound { .. } => format!("{}: not found", what.into()),
            E::Precondition { .. } => format!(
                "{}: the object changed since the batch started (its version no longer \
                 matches); start a new batch to process the new version",
                what.into()
            ),
            E::PermissionDenied { .. } => format!("{}: permission denied", what.into()),
            E::Unauthenticated { .. } => format!(
                "{}: not authenticated (check the credentials in the environment)",
                what.into()
            ),
            _ => what.into(),
        };
        DataError::Store {
            location: location.to_owned(),
            what,
            permanent,
            source,
        }
    }

    pub fn invalid(location: &str, reason: impl Into<String>) -> Self {
        DataError::Invalid {
            location: location.to_owned(),
            reason: reason.into(),
        }
    }

    /// Whether retrying cannot help (the configuration or the data is wrong).
    pub fn is_permanent(&self) -> bool {
        match self {
            DataError::Store { permanent, .. } => *permanent,
            DataError::Invalid { .. } => true,
        }
    }

    /// The whole chain on one line (the store's own error says which request failed).
    pub fn message(&self) -> String {
        use std::error::Error as _;
        let mut text = self.to_string();
        let mut source = self.source();
        while let Some(e) = source {
            text.push_str(": ");
            text.push_str(&e.to_string());
            source = e.source();
        }
        batch_core::text::bounded_message(&text)
    }
}
