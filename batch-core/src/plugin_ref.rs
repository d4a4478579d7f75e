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

    /// `NAME` (the version current when the batch starts) or `NAME@sha256:HEX` (that exact
    /// version: a rollback, or a batch run again on what it ran before), as `--plugin` takes it.
    pub fn from_arg(text: &str) -> Result<Self, crate::ConfigError> {
        let (name, digest) = match text.split_once('@') {
            None => (text, None),
            Some((name, version)) => {
                let digest = version.strip_prefix("sha256:").unwrap_or(version);
                crate::config::validate_digest(digest)?;
                (name, Some(digest.to_owned()))
            }
        };
        crate::config::validate_plugin_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            digest,
        })
    }

    /// The plugin as a batch's id names it: the name, and for a batch the user pinned to a
    /// version, `.v` and the digest's first 12 hex digits (`square_number.v0123456789ab`), so
    /// a pinned batch is not the unpinned one.
    pub fn id_part(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}.v{}", self.name, &d[..d.len().min(12)]),
            None => self.name.clone(),
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

impl std::fmt::Display for PluginRef {
    /// As `--plugin` takes it: `name` or `name@sha256:HEX` (the whole digest).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.digest {
            Some(d) => write!(f, "{}@sha256:{d}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_argument_is_a_name_or_a_name_pinned_to_a_digest() {
        let digest = "ab".repeat(32);
        assert_eq!(
            PluginRef::from_arg("cube").expect("a name"),
            PluginRef::named("cube")
        );
        let pinned = PluginRef::from_arg(&format!("cube@sha256:{digest}")).expect("pinned");
        assert_eq!(pinned.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(pinned.to_string(), format!("cube@sha256:{digest}"));
        assert_eq!(pinned.id_part(), "cube.vabababababab");
        assert_eq!(PluginRef::named("cube").id_part(), "cube");
        for bad in [
            "cube@sha256:abc",
            "cube@sha256:".to_owned().as_str(),
            &format!("cube@sha256:{}", "AB".repeat(32)),
            &format!("../x@sha256:{digest}"),
            &format!("@sha256:{digest}"),
            "Cube",
        ] {
            assert!(PluginRef::from_arg(bad).is_err(), "{bad}");
        }
    }
}
