//! Which plugin a batch runs: a name, pinned to one version by the root.

use serde::{Deserialize, Serialize};

/// Longest plugin name (a file name and part of a workflow id).
pub const MAX_PLUGIN_NAME: usize = 64;

/// The plugin a batch runs: a name, and once the root has resolved it, the sha256 digest of
/// the exact module every leaf must run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl PluginRef {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            digest: None,
        }
    }

    /// `name` or `name@sha256:0123abcd…` (short digest) for messages and summaries.
    pub fn display_short(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@sha256:{}", self.name, &d[..d.len().min(12)]),
            None => self.name.clone(),
        }
    }
}
