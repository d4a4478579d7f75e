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
        /// Boxed: a store's error is large, and every `Result` of the data edge carries it.
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("{location}: {reason}")]
    Invalid { location: String, reason: String },
    /// Outside the worker's grants: nothing was opened.
    #[error("{reason}")]
    NotGranted {
        location: String,
        reason: crate::grants::NotGranted,
    },
    /// A local file that is not the version the batch started with.
    #[error(
        "{location}: {what}: the object changed since the batch started (it is not the file \
         it was then); start a new batch to process the new version"
    )]
    Changed { location: String, what: String },
    /// A source that is not what the batch reads: compressed but read as stored, not the
    /// stream its compression says, or a stream that is corrupt, truncated or a bomb. The
    /// reason names the location.
    #[error("{reason}")]
    BadSource { location: String, reason: String },
    /// A local file that cannot be read or written.
    #[error("{location}: {what}")]
    Io {
        location: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl DataError {
    /// Wraps a store's error for `location`, doing `what` ("cannot read bytes 1..=10").
    pub fn store(location: &str, what: impl Into<String>, source: object_store::Error) -> Self {
        use object_store::Error as E;
        let redirect_refused = chain_has::<crate::store::RedirectRefused>(&source);
        let permanent = redirect_refused
            || matches!(
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
            source: Box::new(source),
        }
    }

    pub fn invalid(location: &str, reason: impl Into<String>) -> Self {
        DataError::Invalid {
            location: location.to_owned(),
            reason: reason.into(),
        }
    }

    pub fn not_granted(location: &str, source: crate::grants::NotGranted) -> Self {
        DataError::NotGranted {
            location: location.to_owned(),
            reason: source,
        }
    }

    /// A local file's failure doing `what` ("cannot read bytes 1..=10").
    pub fn io(location: &str, what: impl Into<String>, source: std::io::Error) -> Self {
        let what = what.into();
        let what = match source.kind() {
            std::io::ErrorKind::NotFound => format!("{what}: not found"),
            std::io::ErrorKind::PermissionDenied => format!("{what}: permission denied"),
            _ => what,
        };
        DataError::Io {
            location: location.to_owned(),
            what,
            source,
        }
    }

    /// Whether retrying cannot help (the configuration or the data is wrong).
    pub fn is_permanent(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            DataError::Store { permanent, .. } => *permanent,
            DataError::Invalid { .. }
            | DataError::BadSource { .. }
            | DataError::NotGranted { .. }
            | DataError::Changed { .. } => true,
            DataError::Io { source, .. } => {
                matches!(
                    source.kind(),
                    K::NotFound
                        | K::PermissionDenied
                        | K::IsADirectory
                        | K::NotADirectory
                        | K::InvalidInput
                        | K::ReadOnlyFilesystem
                ) || source.raw_os_error() == Some(libc::ELOOP)
            }
        }
    }

    /// A source that is not what the batch reads (see [`DataError::BadSource`]).
    pub fn bad_source(location: &str, reason: impl std::fmt::Display) -> Self {
        DataError::BadSource {
            location: location.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// Whether the source itself is bad (no retry, no tolerance helps).
    pub fn is_bad_source(&self) -> bool {
        matches!(self, DataError::BadSource { .. })
    }

    /// Whether the object does not exist, or the store will not say (S3 answers a missing key
    /// with 403 to a client that may not list the bucket).
    pub fn is_not_found_or_denied(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            DataError::Store { source, .. } => matches!(
                **source,
                object_store::Error::NotFound { .. } | object_store::Error::PermissionDenied { .. }
            ),
            DataError::Io { source, .. } => {
                matches!(source.kind(), K::NotFound | K::PermissionDenied)
            }
            _ => false,
        }
    }

    /// Whether the location is outside the worker's grants.
    pub fn is_not_granted(&self) -> bool {
        matches!(self, DataError::NotGranted { .. })
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
        // Locations come from batch inputs and stores' messages from servers: shown, not run.
        batch_core::text::shown_message(&text)
    }
}

/// Whether an error of type `T` is anywhere in `error`'s chain of sources.
fn chain_has<T: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<T>() {
            return true;
        }
        next = e.source();
    }
    false
}
