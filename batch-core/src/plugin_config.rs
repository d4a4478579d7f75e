//! A batch's plugin configuration (`--plugin-config`): JSON text, checked and normalized once
//! before the batch starts, then carried unchanged to every leaf and passed to the plugin's
//! `configure` (interface v2).
//!
//! Normalized means parsed and re-serialized compactly with object keys sorted, so two
//! spellings of one configuration (whitespace, key order) are the same batch: same digest,
//! same workflow id.
//!
//! [`PluginConfig::from_arg`] reads the command-line form (`JSON` or `@FILE`) for both the
//! starter and `batch-plugin`: the one place in this crate that reads a file, bounded.

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
        if text.len() > MAX_UNPARSED_BYTES {
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

    /// The command-line form, `--plugin-config JSON|@FILE`: the JSON text itself, or `@` and
    /// the path of a file holding it. The file is read up to the bound [`Self::parse`] applies
    /// to unparsed text, so a wrong path to a huge file is refused, not read whole.
    pub fn from_arg(arg: &str) -> Result<Self, String> {
        let json = text_arg(arg, MAX_UNPARSED_BYTES)?;
        Self::parse(&json).map_err(|e| e.to_string())
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

/// Largest unparsed text `parse` looks at (whitespace and key order may shrink in
/// normalization, so more than the normalized bound is allowed in).
const MAX_UNPARSED_BYTES: usize = 4 * MAX_PLUGIN_CONFIG_BYTES;

/// A command-line value given as `TEXT` or `@FILE` (the file's text, read up to `max` bytes:
/// a wrong path to a huge file is refused, not read whole). Also `--output-schema`'s.
pub fn text_arg(arg: &str, max: usize) -> Result<String, String> {
    match arg.strip_prefix('@') {
        Some(path) => read_bounded(path, max),
        None => Ok(arg.to_owned()),
    }
}

fn read_bounded(path: &str, max: usize) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
    let mut text = String::new();
    file.take(max as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    if text.len() > max {
        return Err(format!("{path} is larger than {max} bytes"));
    }
    Ok(text)
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
    fn the_command_line_form_is_text_or_a_bounded_file() {
        let inline = PluginConfig::from_arg(r#"{"b": 2, "a": 1}"#).expect("inline");
        assert_eq!(inline.json, r#"{"a":1,"b":2}"#);
        let dir = std::env::temp_dir().join(format!("plugin-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("config.json");
        std::fs::write(&file, "{\"a\": 1,\n \"b\": 2}\n").expect("write");
        let from_file = PluginConfig::from_arg(&format!("@{}", file.display())).expect("file");
        assert_eq!(from_file, inline);
        std::fs::write(&file, " ".repeat(MAX_UNPARSED_BYTES + 1)).expect("write");
        let err = PluginConfig::from_arg(&format!("@{}", file.display())).expect_err("huge");
        assert!(err.ends_with("is larger than 65536 bytes"), "{err}");
        let err = PluginConfig::from_arg("@/no/such/config.json").expect_err("missing");
        assert!(
            err.starts_with("cannot open /no/such/config.json: "),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
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
