//! How a data batch's parts are written (`--output-format`, `--output-compression`,
//! `--output-schema`): JSON Lines, plain or compressed, or Parquet with one schema for the whole
//! output. The `failed/` parts and the manifest are always plain JSON.

use serde::{Deserialize, Serialize};

use crate::source::Compression;

/// The largest schema text (`--output-schema`, or the one a batch infers): it travels in every
/// node's input.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// The most columns of an output schema, nested fields counted.
pub const MAX_SCHEMA_FIELDS: usize = 1_000;
/// Outputs a batch without `--output-schema` runs to infer its Parquet schema: the first ones
/// the plugin gives from the source's first records.
pub const SCHEMA_SAMPLE_OUTPUTS: usize = 1_000;
/// Records read, at most, for those outputs (a filter may skip most of them).
pub const SCHEMA_SAMPLE_RECORDS: usize = 10_000;
/// Bytes of the source a sample's split spans, at most (a compressed object, read whole by
/// one split, and a Parquet row group stop at [`SCHEMA_SAMPLE_RECORDS`]).
pub const SCHEMA_SAMPLE_BYTES: u64 = 4 * 1024 * 1024;
/// The column a number output becomes in a Parquet output: the row `{"value": n}`.
pub const NUMBER_COLUMN: &str = "value";

/// The file format of the parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// One output per line: a record's bytes, or a number in decimal.
    #[default]
    Jsonl,
    /// Parquet: one file per split, every output a row of the output's schema (a number the
    /// row `{"value": n}`).
    Parquet,
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 2] = [OutputFormat::Jsonl, OutputFormat::Parquet];

    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Parquet => "parquet",
        }
    }
}

impl std::fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutputFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown output format {s:?}: expected jsonl or parquet"))
    }
}

/// How a batch's parts are encoded. The default (plain JSON Lines) is absent from the JSON, so
/// a batch without these options has exactly the payloads it always had.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputEncoding {
    #[serde(default, skip_serializing_if = "is_default")]
    pub format: OutputFormat,
    /// JSON Lines parts compressed as a whole; a Parquet part's column chunks compressed by
    /// this codec (uncompressed without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// A Parquet output's schema, as the schema text (`docs/operations.md`, "Parquet
    /// outputs"): given (`--output-schema`) or inferred by the root before the tree starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

fn is_default(format: &OutputFormat) -> bool {
    *format == OutputFormat::default()
}

/// An encoding a batch cannot have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    #[error("an output schema is for Parquet outputs (--output-format parquet)")]
    SchemaWithoutParquet,
    #[error("the output schema is {bytes} bytes; the largest is {MAX_SCHEMA_BYTES}")]
    SchemaTooLarge { bytes: usize },
}

impl OutputEncoding {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The checks every node applies (from any client): the schema's text is parsed where it is
    /// used (data-io), its size bounded here.
    pub fn validate(&self) -> Result<(), EncodingError> {
        if let Some(schema) = &self.schema {
            if self.format != OutputFormat::Parquet {
                return Err(EncodingError::SchemaWithoutParquet);
            }
            if schema.len() > MAX_SCHEMA_BYTES {
                return Err(EncodingError::SchemaTooLarge {
                    bytes: schema.len(),
                });
            }
        }
        Ok(())
    }

    /// A Parquet output whose schema is still to be inferred.
    pub fn needs_schema(&self) -> bool {
        self.format == OutputFormat::Parquet && self.schema.is_none()
    }

    /// The part's name after its split's ([`crate::source::part_name`]): what readers go by.
    pub fn part_name(&self, split: &str) -> String {
        let extension = match (self.format, self.compression) {
            (OutputFormat::Parquet, _) => ".parquet",
            (OutputFormat::Jsonl, None) => "",
            (OutputFormat::Jsonl, Some(Compression::Gzip)) => ".gz",
            (OutputFormat::Jsonl, Some(Compression::Zstd)) => ".zst",
        };
        format!("{split}{extension}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_encoding_is_absent_from_the_json() {
        let json = serde_json::to_string(&OutputEncoding::default()).expect("encodes");
        assert_eq!(json, "{}");
        let parquet = OutputEncoding {
            format: OutputFormat::Parquet,
            compression: Some(Compression::Zstd),
            schema: None,
        };
        let json = serde_json::to_string(&parquet).expect("encodes");
        assert_eq!(json, r#"{"format":"parquet","compression":"zstd"}"#);
        assert_eq!(
            serde_json::from_str::<OutputEncoding>(&json).ok(),
            Some(parquet)
        );
    }

    #[test]
    fn parts_are_named_for_their_readers() {
        let of = |format, compression| OutputEncoding {
            format,
            compression,
            schema: None,
        };
        let cases = [
            (of(OutputFormat::Jsonl, None), "part-1"),
            (
                of(OutputFormat::Jsonl, Some(Compression::Gzip)),
                "part-1.gz",
            ),
            (
                of(OutputFormat::Jsonl, Some(Compression::Zstd)),
                "part-1.zst",
            ),
            (of(OutputFormat::Parquet, None), "part-1.parquet"),
            (
                of(OutputFormat::Parquet, Some(Compression::Gzip)),
                "part-1.parquet",
            ),
        ];
        for (encoding, name) in cases {
            assert_eq!(encoding.part_name("part-1"), name, "{encoding:?}");
        }
    }

    #[test]
    fn a_schema_is_for_parquet_and_bounded() {
        let jsonl = OutputEncoding {
            schema: Some("{}".into()),
            ..OutputEncoding::default()
        };
        assert_eq!(jsonl.validate(), Err(EncodingError::SchemaWithoutParquet));
        let huge = OutputEncoding {
            format: OutputFormat::Parquet,
            compression: None,
            schema: Some("x".repeat(MAX_SCHEMA_BYTES + 1)),
        };
        assert_eq!(
            huge.validate(),
            Err(EncodingError::SchemaTooLarge {
                bytes: MAX_SCHEMA_BYTES + 1
            })
        );
        assert!(!huge.needs_schema());
        assert!(
            OutputEncoding {
                format: OutputFormat::Parquet,
                ..OutputEncoding::default()
            }
            .needs_schema()
        );
    }
}
