//! What is known of a source before reading it.

/// What the starter needs to know of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    pub size: u64,
    /// The store's ETag: every later read must match it.
    pub version: Option<String>,
}
