//! A batch's plugin configuration (`--plugin-config`): JSON text, checked and normalized once
//! before the batch starts, then carried unchanged to every leaf and passed to the plugin's
//! `configure` (interface v2).
//!
//! Normalized means parsed and re-serialized compactly with object keys sorted, so two
//! spellings of one configuration (whitespace, key order) are the same batch: same digest,
//! same workflow id.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest configuration, normalized. It travels in every leaf's activity input (in `item`
/// mode, every item's), so it counts against the workflow history limits: 16 KiB x the 1,000
/// activities of the largest `item`-mode leaf stays far under 50 MB.
pub const MAX_PLUGIN_CONFIG_BYTES: usize = 16 << 10;

/// A validated, normalized configuration and its identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginConfig {
    /// Compact JSON text with sorted keys.
    pub json: String,
    /// Lowercase hex sha256 of `json`.
    pub digest: String,
}

/// Why a configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginConfigError {
    #[error("the plugin configuration is not valid JSON: {0}")]
    NotJson(String),
    #[error(
        "the plugin configuration is {got} bytes (normalized), over the limit of \
         {MAX_PLUGIN_CONFIG_BYTES}: pass large data as items, not configuration"
    )]
    TooLarge { got: usize },
    #[error("the plugin configuration's digest {got} does not match its text (expected {want})")]
    Digest { got: String, want: String },
}

impl PluginConfig {
    /// Checks and normalizes `text` (JSON).
    pub fn parse(text: &str) -> Result<Self, PluginConfigError> {
        // Checked before parsing too, so a huge input is not parsed whole.
        if text.len() > 4 * MAX_PLUGIN_CONFIG_BYTES {
            return Err(PluginConfigError::TooLarge { got: text.len() });
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PluginConfigError::NotJson(e.to_string()))?;
        // serde_json's maps are ordered by key: re-serializing sorts every object's keys.
        let json = value.to_string();
        if json.len() > MAX_PLUGIN_CONFIG_BYTES {
            return Err(PluginConfigError::TooLarge { got: json.len() });
        }
        let digest = sha256_hex(json.as_bytes());
        Ok(Self { json, digest })
    }

    /// Checks a configuration received from elsewhere (a workflow input): bounded, JSON, and
    /// its digest is its text's.
    pub fn validate(&self) -> Result<(), PluginConfigError> {
        let reparsed = Self::parse(&self.json)?;
        if reparsed.digest != self.digest {
            return Err(PluginConfigError::Digest {
                got: self.digest.clone(),
                want: reparsed.digest,
            });
        }
        Ok(())
    }

    /// The first 12 hex digits of the digest: enough to tell configurations apart in ids.
    pub fn short_digest(&self) -> &str {
        &self.digest[..12]
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_configuration_are_one_configuration() {
        let a = PluginConfig::parse(r#"{ "field": "age",  "min": 30 }"#).expect("valid");
        let b = PluginConfig::parse("{\"min\":30,\n\"field\":\"age\"}").expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.json, r#"{"field":"age","min":30}"#);
        assert_eq!(a.digest.len(), 64);
        assert_eq!(a.short_digest(), &a.digest[..12]);
        assert_ne!(
            a,
            PluginConfig::parse(r#"{"field":"age","min":31}"#).expect("valid")
        );
        // Any JSON value is a configuration, not only objects.
        assert_eq!(PluginConfig::parse(" 7 ").expect("valid").json, "7");
    }

    #[test]
    fn bad_configurations_are_named() {
        let err = PluginConfig::parse("{field: 1}").expect_err("not JSON");
        assert!(
            err.to_string()
                .starts_with("the plugin configuration is not valid JSON: key must be a string"),
            "{err}"
        );
        let big = format!("\"{}\"", "x".repeat(MAX_PLUGIN_CONFIG_BYTES));
        assert_eq!(
            PluginConfig::parse(&big),
            Err(PluginConfigError::TooLarge {
                got: MAX_PLUGIN_CONFIG_BYTES + 2
            })
        );
        let huge = " ".repeat(4 * MAX_PLUGIN_CONFIG_BYTES + 1);
        assert!(matches!(
            PluginConfig::parse(&huge),
            Err(PluginConfigError::TooLarge { .. })
        ));
        // Exactly at the limit is allowed.
        let at = format!("\"{}\"", "x".repeat(MAX_PLUGIN_CONFIG_BYTES - 2));
        assert!(PluginConfig::parse(&at).is_ok());
    }

    #[test]
    fn a_received_configuration_must_match_its_digest() {
        let mut config = PluginConfig::parse(r#"{"a":1}"#).expect("valid");
        assert_eq!(config.validate(), Ok(()));
        config.json = r#"{"a":2}"#.into();
        assert!(matches!(
            config.validate(),
            Err(PluginConfigError::Digest { .. })
        ));
    }
}
