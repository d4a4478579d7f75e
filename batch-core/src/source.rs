//! Where a batch's items come from when they are not the range `1..=n`: a file or an object
//! (`--source`), read as lines, JSON Lines or CSV, and where its outputs go (`--output`).
//!
//! A data batch runs the same tree as a range batch, over the object's bytes: item positions
//! `1..=size` are byte positions, so every node's input stays a range of a few dozen bytes and
//! the tree, its ids and its bounds are the ones of a range of `size` items. A leaf's range is a
//! *split*: it reads only that byte range (and the rest of the record that straddles its end),
//! with ranged reads, and processes the records whose first byte it holds ([`crate::split`]).
//! An item's index is the 1-based byte position of the record's first byte in the object:
//! stable across runs and split sizes, and `tail -c +INDEX FILE | head -1` shows the record.

use serde::{Deserialize, Serialize};

/// Largest CSV header carried with a batch (it travels in every node's input).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most columns `--columns` names.
pub const MAX_COLUMNS: usize = 1000;
/// Longest column name `--columns` takes.
pub const MAX_COLUMN_NAME_BYTES: usize = 256;
/// Longest location accepted (a URL or a path).
pub const MAX_LOCATION_BYTES: usize = 2048;
/// Default split size of a data batch: large enough that a leaf's fixed costs (a workflow, an
/// activity, a plugin instance per slice, a part) are small against its reading and
/// computing, small enough that a retried leaf redoes little and many leaves share the work.
pub const DEFAULT_SPLIT_BYTES: u64 = 64 * 1024 * 1024;
/// Default split size of a source whose stored bytes expand when read: compressed objects and
/// Parquet (compressed pages, and rows written out as JSON) give 5 to 10 times their stored
/// bytes, so a leaf gets about as much work as a default split of plain text.
pub const DEFAULT_EXPANDING_SPLIT_BYTES: u64 = 8 * 1024 * 1024;
/// Most parts one batch writes: each part's entry travels up the tree to the manifest, so this
/// bounds the root's result (~100 bytes a part) well under Temporal's payload limits. The
/// starter raises the split size of a larger object to stay within it.
pub const MAX_PARTS: u64 = 2_000;
/// The manifest's name in an output location: written last, it marks the output complete.
pub const MANIFEST_NAME: &str = "_manifest.json";

/// How an object's bytes become items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Every line is an item, its bytes without the line end (`\n` or `\r\n`), empty or not.
    Lines,
    /// Every line that is not blank is an item: a JSON value, which the plugin parses.
    Jsonl,
    /// The first line is the header; every later non-empty line is a row, given to the plugin
    /// as a JSON object of the header's names to the row's fields (strings), so the same JSON
    /// plugins serve CSV and JSON Lines. A quoted field may not hold a line break.
    Csv,
    /// Apache Parquet: every row is an item, given to the plugin as a JSON object of its
    /// columns; the row groups are the splits, and an item's index is its row number.
    Parquet,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Lines, Format::Jsonl, Format::Csv, Format::Parquet];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Lines => "lines",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }

    /// The format a location's name suggests: `.jsonl`/`.ndjson` JSON Lines, `.csv` CSV,
    /// `.parquet`/`.parq` Parquet, anything else lines; a compression's extension after it (`events.jsonl.gz`) aside.
    pub fn from_name(location: &str) -> Format {
        let name = location.rsplit('/').next().unwrap_or(location);
        let lower = name.to_ascii_lowercase();
        let lower = match Compression::of_name(&lower) {
            Some((_, inner)) => inner,
            None => &lower,
        };
        if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            Format::Jsonl
        } else if lower.ends_with(".csv") {
            Format::Csv
        } else if lower.ends_with(".parquet") || lower.ends_with(".parq") {
            Format::Parquet
        } else {
            Format::Lines
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown format {s:?}: expected lines, jsonl, csv or parquet"))
    }
}

/// How a source is stored, when it is compressed: its records are those of the decompressed
/// stream. A compressed object cannot be entered in the middle, so one leaf reads it whole
/// (the one whose split holds its first byte) and the others of a (forged) finer tree own
/// nothing of it, unless it is made of indexed frames ([`crate::frames`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// RFC 1952, one member or several concatenated (`cat a.gz b.gz`, pigz, bgzip).
    Gzip,
    /// Zstandard frames, one or several, skippable frames skipped.
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 2] = [Compression::Gzip, Compression::Zstd];

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The compression a (lower-case) name's extension says (`.gz`, `.gzip`, `.zst`,
    /// `.zstd`), with the name without it.
    pub fn of_name(lower: &str) -> Option<(Compression, &str)> {
        const EXTENSIONS: [(&str, Compression); 4] = [
            (".gz", Compression::Gzip),
            (".gzip", Compression::Gzip),
            (".zst", Compression::Zstd),
            (".zstd", Compression::Zstd),
        ];
        EXTENSIONS.iter().find_map(|&(extension, compression)| {
            lower
                .strip_suffix(extension)
                .filter(|inner| !inner.is_empty() && !inner.ends_with('/'))
                .map(|inner| (compression, inner))
        })
    }

    /// The compression a location's name says.
    pub fn from_name(location: &str) -> Option<Compression> {
        let name = location.rsplit('/').next().unwrap_or(location);
        Self::of_name(&name.to_ascii_lowercase()).map(|(compression, _)| compression)
    }

    /// The compression an object's first bytes show, if it is one this engine reads.
    pub fn from_magic(first_bytes: &[u8]) -> Option<Compression> {
        let name = compression_of(first_bytes)?;
        Compression::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decompression bound's default: a stream may give at most this many times its
/// compressed bytes (past [`RATIO_FLOOR`]). Text compresses 5 to 20 times by gzip and zstd,
/// rarely past 100; a decompression bomb gives 1,000 times (gzip) to millions (zstd).
pub const DEFAULT_MAX_RATIO: u32 = 250;
/// The largest `--max-decompression-ratio`.
pub const MAX_RATIO_LIMIT: u32 = 1_000_000;
/// Decompressed bytes a stream may always give, whatever its ratio: a small object of very
/// repetitive text is no bomb.
pub const RATIO_FLOOR: u64 = 64 * 1024 * 1024;

/// The most bytes a stream of which `consumed` bytes were read may have given, at a
/// decompression ratio of at most `max_ratio`.
pub fn decompressed_bound(max_ratio: u32, consumed: u64) -> u64 {
    RATIO_FLOOR.max(consumed.saturating_mul(u64::from(max_ratio)))
}

/// A batch's data source, as the starter found it: the object, its format and its size (the
/// size fixes the tree; `version` pins the bytes, so a source replaced mid-batch fails the
/// leaves that read it instead of mixing two versions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSource {
    /// A URL (`s3://`, `gs://`, `az://`, `https://`, `file://`) or an absolute path.
    pub location: String,
    pub format: Format,
    /// The object's size in bytes when the batch started.
    pub size: u64,
    /// The object's version or ETag when the batch started, if the store has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// CSV: the header line, without its line end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// How the object is compressed, if it is: positions of the tree are then stored bytes,
    /// items' indexes positions in the decompressed stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// A compressed source's decompression bound ([`DEFAULT_MAX_RATIO`] when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ratio: Option<u32>,
    /// A compressed source made of frames (a seekable zstd stream): how many the starter found.
    /// The tree then splits its stored bytes as an uncompressed source's; each leaf reads and
    /// checks the index itself ([`crate::frames`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    /// A gzip source's index beside it (`NAME.gzi`), as the starter read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzi: Option<crate::frames::Sidecar>,
    /// A source of many objects (a prefix, a directory, a glob): `location` is its pattern,
    /// `size` the stored bytes of every object, `version` the listing's sha256, and each
    /// object has its own compression ([`crate::objects`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<crate::objects::Objects>,
    /// Parquet: the columns read (`--columns`), by name, in this order; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
}

/// Bytes of a source's start that [`compression_of`] looks at.
pub const MAGIC_BYTES: u64 = 10;

/// The compression a source's first bytes show (gzip, zstd, bzip2, xz, zip), by its magic
/// number. A source is read as it is stored, so a compressed one would give its compressed
/// bytes as records: such a batch is refused, not run on garbage. Each magic is one that text
/// cannot start with (a byte that is not UTF-8, or bzip2's block signature after its "BZh").
pub fn compression_of(first_bytes: &[u8]) -> Option<&'static str> {
    const MAGICS: [(&[u8], &str); 4] = [
        (b"\x1f\x8b\x08", "gzip"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"PK\x03\x04", "zip"),
    ];
    let bzip2 = first_bytes.len() >= 10
        && first_bytes.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&first_bytes[3])
        && first_bytes[4..10] == *b"\x31\x41\x59\x26\x53\x59";
    if bzip2 {
        return Some("bzip2");
    }
    MAGICS
        .iter()
        .find(|(magic, _)| first_bytes.starts_with(magic))
        .map(|&(_, name)| name)
}

/// Why a data source or an output is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("the source {location} is empty: it has no items")]
    Empty { location: String },
    #[error("{}", compressed_reason(location, compression))]
    Compressed {
        location: String,
        compression: &'static str,
    },
    #[error(
        "the source {location} is not a {compression} stream (it starts {start}): give \
         --compression none if it is stored as it is"
    )]
    NotCompressed {
        location: String,
        compression: Compression,
        start: String,
    },
    #[error("--max-decompression-ratio {0} is out of bounds: give 1 to {MAX_RATIO_LIMIT}")]
    Ratio(u32),
    #[error("the source {location}'s objects: {reason}")]
    Objects { location: String, reason: String },
    #[error(
        "the source {location}: --columns takes 1 to {MAX_COLUMNS} names of at most \
         {MAX_COLUMN_NAME_BYTES} bytes, of a Parquet source (which is never compressed as a \
         whole: its pages are)"
    )]
    Columns { location: String },
    #[error("the source {location} is said to be made of frames, but is not compressed")]
    FramesUncompressed { location: String },
    #[error("the location {0:?} is too long: at most {MAX_LOCATION_BYTES} bytes")]
    LocationTooLong(String),
    #[error("the location is empty: give a path or a URL")]
    NoLocation,
    #[error("the CSV source {location} has no header: {reason}")]
    Header { location: String, reason: String },
    #[error(
        "a data source runs in batch mode (one activity per split): got --mode {0}; per-item \
         activities would put every record in the workflow's history"
    )]
    Mode(crate::LeafMode),
    #[error("--output needs a data source (--source): a range batch reports statistics only")]
    OutputWithoutSource,
    #[error(
        "the source's {size} bytes in splits of at most {split} bytes make {parts} leaves (parts), \
         over the limit of {MAX_PARTS}: use a split of at least {min_split} bytes"
    )]
    TooManyParts {
        size: u64,
        split: u64,
        parts: u64,
        min_split: u64,
    },
}

/// Checks a location's shape (not whether it exists: only a worker or the starter can).
pub fn validate_location(location: &str) -> Result<(), SourceError> {
    if location.trim().is_empty() {
        Err(SourceError::NoLocation)
    } else if location.len() > MAX_LOCATION_BYTES {
        Err(SourceError::LocationTooLong(crate::text::bounded(
            location, 200,
        )))
    } else {
        Ok(())
    }
}

impl DataSource {
    /// 12 hex digits of the sha256 of what makes a data batch's items and outputs: the
    /// location, the format, the version and the output location.
    pub fn short_digest(&self, output: Option<&str>) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [
            self.location.as_str(),
            self.format.as_str(),
            self.version.as_deref().unwrap_or(""),
            output.unwrap_or(""),
        ] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        // Only when set, so that a stored source's batches keep their ids.
        if let Some(columns) = &self.columns {
            for column in columns {
                hash.update((column.len() as u64).to_le_bytes());
                hash.update(column.as_bytes());
            }
        }
        if let Some(compression) = self.compression {
            hash.update(compression.as_str().as_bytes());
            hash.update(self.max_ratio().to_le_bytes());
        }
        let digest = hash.finalize();
        digest[..6].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The decompression bound: at most this many decompressed bytes per compressed byte
    /// (past [`RATIO_FLOOR`]).
    pub fn max_ratio(&self) -> u32 {
        self.max_ratio.unwrap_or(DEFAULT_MAX_RATIO)
    }

    /// The largest index an item of this source can have: its size, or, compressed, the most
    /// its stream may decompress to.
    pub fn max_index(&self) -> u64 {
        match (&self.objects, self.compression) {
            (Some(objects), _) => crate::objects::max_index(objects.count),
            // Row numbers: a million equal rows may take a few bytes.
            (None, _) if self.format == Format::Parquet => crate::objects::MAX_POSITION,
            (None, None) => self.size,
            (None, Some(_)) => decompressed_bound(self.max_ratio(), self.size),
        }
    }

    /// How an item's index is shown: its byte position, or, in a many-object source,
    /// `object:position` ([`crate::objects::ItemId`]).
    pub fn item_name(&self, index: u64) -> String {
        match self.objects {
            Some(_) => crate::objects::ItemId::of_index(index).to_string(),
            None => index.to_string(),
        }
    }

    /// The default split size: [`DEFAULT_SPLIT_BYTES`], or, when the stored bytes expand
    /// when read, [`DEFAULT_EXPANDING_SPLIT_BYTES`].
    pub fn default_split(&self) -> u64 {
        let compressed_objects = self.objects.as_ref().is_some_and(|o| match &o.listing {
            crate::objects::ListingRef::Inline(entries) => {
                entries.iter().any(|e| e.compression.is_some())
            }
            crate::objects::ListingRef::Stored { .. } => o.compressed,
        });
        if self.format == Format::Parquet || compressed_objects || self.compression.is_some() {
            DEFAULT_EXPANDING_SPLIT_BYTES
        } else {
            DEFAULT_SPLIT_BYTES
        }
    }

    /// How the summary and `--plan` describe the object: `jsonl, 1234 bytes` or
    /// `jsonl, gzip, 1234 bytes stored`.
    pub fn describe(&self) -> String {
        match (&self.objects, self.compression) {
            (Some(objects), _) => format!(
                "{}, {} objects{}, {} bytes stored",
                self.format,
                objects.count,
                match objects.empty {
                    0 => String::new(),
                    n => format!(" ({n} empty, skipped)"),
                },
                self.size
            ),
            (None, None) => format!("{}, {} bytes", self.format, self.size),
            (None, Some(c)) => match self.frames {
                Some(frames) => format!(
                    "{}, {c}, {frames} frames, {} bytes stored",
                    self.format, self.size
                ),
                None => format!("{}, {c}, {} bytes stored", self.format, self.size),
            },
        }
    }

    /// Checks what every node relies on.
    pub fn validate(&self) -> Result<(), SourceError> {
        validate_location(&self.location)?;
        if let Some(objects) = &self.objects {
            objects.validate(self)?;
        }
        if let Some(columns) = &self.columns {
            let bad = self.format != Format::Parquet
                || columns.is_empty()
                || columns.len() > MAX_COLUMNS
                || columns
                    .iter()
                    .any(|c| c.is_empty() || c.len() > MAX_COLUMN_NAME_BYTES);
            if bad {
                return Err(SourceError::Columns {
                    location: self.location.clone(),
                });
            }
        }
        if self.format == Format::Parquet && self.compression.is_some() {
            return Err(SourceError::Columns {
                location: self.location.clone(),
            });
        }
        if self.frames.is_some() && self.compression.is_none() {
            return Err(SourceError::FramesUncompressed {
                location: self.location.clone(),
            });
        }
        if let Some(gzi) = &self.gzi {
            let reason = match self.compression {
                Some(Compression::Gzip) => gzi.validate().err(),
                _ => Some("a .gzi indexes a gzip source only".into()),
            };
            if let Some(reason) = reason {
                return Err(SourceError::Objects {
                    location: self.location.clone(),
                    reason,
                });
            }
        }
        if let Some(ratio) = self.max_ratio
            && !(1..=MAX_RATIO_LIMIT).contains(&ratio)
        {
            return Err(SourceError::Ratio(ratio));
        }
        if self.size == 0 {
            return Err(SourceError::Empty {
                location: self.location.clone(),
            });
        }
        if self.format == Format::Csv {
            let reason = match &self.header {
                None => Some("the first line (the header) is missing".to_owned()),
                Some(h) if h.len() > MAX_HEADER_BYTES => Some(format!(
                    "the header is {} bytes, over the limit of {MAX_HEADER_BYTES}",
                    h.len()
                )),
                Some(h) if h.contains('\n') => Some("the header holds a line break".to_owned()),
                Some(_) => None,
            };
            if let Some(reason) = reason {
                return Err(SourceError::Header {
                    location: self.location.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// The split size (the tree's batch size, in bytes) of a data batch of `size` bytes with
/// `max_children`: `wanted` if given and within [`MAX_PARTS`] leaves (parts), else `default`
/// ([`DataSource::default_split`]), raised (doubled) until the tree has at most [`MAX_PARTS`]
/// leaves. The tree's leaves may be
/// smaller than the split size: a node splits into `max_children` equal chunks, as in the demo.
pub fn choose_split(
    size: u64,
    wanted: Option<u64>,
    default: u64,
    max_children: u64,
) -> Result<u64, SourceError> {
    let leaves = |split| crate::TreeShape::of(size, split, max_children).leaves;
    match wanted {
        Some(split) if leaves(split) <= MAX_PARTS => Ok(split),
        Some(split) => {
            let mut min_split = split;
            while leaves(min_split) > MAX_PARTS {
                min_split = min_split.saturating_mul(2);
            }
            Err(SourceError::TooManyParts {
                size,
                split,
                parts: leaves(split),
                min_split,
            })
        }
        None => {
            let mut split = default.max(size.div_ceil(MAX_PARTS));
            while leaves(split) > MAX_PARTS {
                split = split.saturating_mul(2);
            }
            Ok(split)
        }
    }
}

/// Why a compressed source read as stored is refused (the starter's and the leaf's words
/// alike).
pub fn compressed_reason(location: &str, compression: &str) -> String {
    if Compression::ALL.iter().any(|c| c.as_str() == compression) {
        format!(
            "the source {location} is {compression}-compressed, and the batch reads it as \
             stored: its records would be compressed bytes; give --compression {compression}"
        )
    } else {
        format!(
            "the source {location} is {compression}-compressed: this engine decompresses gzip \
             and zstd; decompress it first or recompress it with one of them"
        )
    }
}

/// Checks that a source's first bytes are what the batch reads: a stream of its compression,
/// or, stored as it is, not one of a known compression (whose records would be garbage).
pub fn check_stored(
    location: &str,
    compression: Option<Compression>,
    first_bytes: &[u8],
) -> Result<(), SourceError> {
    let found = compression_of(first_bytes);
    match (compression, found) {
        (None, None) => Ok(()),
        (Some(c), Some(found)) if c.as_str() == found => Ok(()),
        (None, Some(found)) => Err(SourceError::Compressed {
            location: location.to_owned(),
            compression: found,
        }),
        (Some(compression), _) => Err(SourceError::NotCompressed {
            location: location.to_owned(),
            compression,
            start: first_bytes
                .iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" "),
        }),
    }
}

/// The name of the part holding the outputs of the split of byte positions `first..=last`:
/// zero-padded, so that names sort in source order as well as the manifest lists them.
pub fn part_name(first: u64, last: u64) -> String {
    format!("part-{first:020}-{last:020}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_sources_are_known_by_their_magic_and_text_is_not() {
        for (start, name) in [
            (&b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"[..], "gzip"),
            (b"\x28\xb5\x2f\xfd\x24\x00", "zstd"),
            (b"\xfd7zXZ\x00\x00\x04", "xz"),
            (b"PK\x03\x04\x14\x00", "zip"),
            (b"BZh91AY&SY\x00", "bzip2"),
        ] {
            assert_eq!(compression_of(start), Some(name));
        }
        for text in [
            &b"{\"id\":1}"[..],
            b"BZh9 is a line",
            b"PK and more",
            b"id,name",
            b"",
            b"\x1f\x8b",
        ] {
            assert_eq!(compression_of(text), None, "{text:?}");
        }
    }

    #[test]
    fn compression_follows_the_name_and_the_format_the_name_inside_it() {
        for (name, compression, format) in [
            (
                "s3://b/events.jsonl.gz",
                Some(Compression::Gzip),
                Format::Jsonl,
            ),
            ("/d/rows.CSV.GZIP", Some(Compression::Gzip), Format::Csv),
            ("/d/log.zst", Some(Compression::Zstd), Format::Lines),
            ("/d/x.ndjson.zstd", Some(Compression::Zstd), Format::Jsonl),
            ("/d/.gz", None, Format::Lines),
            ("/d/x.gz/rows.csv", None, Format::Csv),
            ("/d/x.jsonl", None, Format::Jsonl),
            ("/d/x.tgz", None, Format::Lines),
        ] {
            assert_eq!(Compression::from_name(name), compression, "{name}");
            assert_eq!(Format::from_name(name), format, "{name}");
        }
        assert_eq!(
            Compression::from_magic(b"\x1f\x8b\x08\x00"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_magic(b"\x28\xb5\x2f\xfd"),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::from_magic(b"\xfd7zXZ\x00"), None);
    }

    #[test]
    fn a_source_starts_as_the_batch_reads_it_or_is_refused_saying_how_to_read_it() {
        let gzip = b"\x1f\x8b\x08\x00\x00";
        assert_eq!(check_stored("/d/x", Some(Compression::Gzip), gzip), Ok(()));
        assert_eq!(check_stored("/d/x", None, b"{\"a\":1}"), Ok(()));
        let cases: [(Option<Compression>, &[u8], &str); 3] = [
            (
                None,
                gzip,
                "the source /d/x is gzip-compressed, and the batch reads it as stored: its \
                 records would be compressed bytes; give --compression gzip",
            ),
            (
                Some(Compression::Zstd),
                b"{\"id\":1}",
                "the source /d/x is not a zstd stream (it starts 7b 22 69 64): give \
                 --compression none if it is stored as it is",
            ),
            (
                None,
                b"\xfd7zXZ\x00\x00",
                "the source /d/x is xz-compressed: this engine decompresses gzip and zstd; \
                 decompress it first or recompress it with one of them",
            ),
        ];
        for (compression, start, message) in cases {
            let err = check_stored("/d/x", compression, start).expect_err("refused");
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn a_compressed_sources_items_may_lie_past_its_stored_bytes_within_the_bound() {
        let mut gz = source(Format::Jsonl, 1_000_000, None);
        assert_eq!(gz.max_index(), 1_000_000);
        gz.compression = Some(Compression::Gzip);
        assert_eq!(gz.max_index(), 250_000_000);
        gz.max_ratio = Some(2);
        assert_eq!(gz.max_index(), RATIO_FLOOR);
        assert_eq!(gz.validate(), Ok(()));
        for ratio in [0, MAX_RATIO_LIMIT + 1] {
            gz.max_ratio = Some(ratio);
            assert_eq!(gz.validate(), Err(SourceError::Ratio(ratio)));
        }
        assert_eq!(decompressed_bound(u32::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn formats_follow_the_name_and_parse_by_name() {
        for (name, format) in [
            ("s3://b/events.jsonl", Format::Jsonl),
            ("/data/x.NDJSON", Format::Jsonl),
            ("file:///a/b/rows.csv", Format::Csv),
            ("https://h/p/log.txt", Format::Lines),
            ("no_extension", Format::Lines),
            ("dir.csv/file", Format::Lines),
        ] {
            assert_eq!(Format::from_name(name), format, "{name}");
        }
        for format in Format::ALL {
            assert_eq!(format.as_str().parse::<Format>(), Ok(format));
        }
        assert_eq!(
            "json".parse::<Format>().expect_err("an error"),
            "unknown format \"json\": expected lines, jsonl, csv or parquet"
        );
    }

    fn source(format: Format, size: u64, header: Option<&str>) -> DataSource {
        DataSource {
            location: "/data/x".into(),
            format,
            size,
            version: None,
            header: header.map(str::to_owned),
            compression: None,
            max_ratio: None,
            objects: None,
            frames: None,
            gzi: None,
            columns: None,
        }
    }

    #[test]
    fn sources_are_checked_with_the_reason() {
        assert_eq!(source(Format::Jsonl, 10, None).validate(), Ok(()));
        assert_eq!(source(Format::Csv, 10, Some("a,b")).validate(), Ok(()));
        let cases = [
            (
                source(Format::Lines, 0, None),
                "the source /data/x is empty: it has no items",
            ),
            (
                source(Format::Csv, 5, None),
                "the CSV source /data/x has no header: the first line (the header) is missing",
            ),
            (
                source(Format::Csv, 5, Some("a\nb")),
                "the CSV source /data/x has no header: the header holds a line break",
            ),
        ];
        for (source, message) in cases {
            assert_eq!(
                source.validate().expect_err("an error").to_string(),
                message
            );
        }
        let long = "x".repeat(MAX_HEADER_BYTES + 1);
        assert!(
            source(Format::Csv, 5, Some(&long))
                .validate()
                .expect_err("an error")
                .to_string()
                .contains("over the limit of 16384")
        );
        assert_eq!(validate_location(" "), Err(SourceError::NoLocation));
        assert!(matches!(
            validate_location(&"y".repeat(MAX_LOCATION_BYTES + 1)),
            Err(SourceError::LocationTooLong(_))
        ));
    }

    #[test]
    fn splits_grow_to_keep_parts_bounded() {
        let d = DEFAULT_SPLIT_BYTES;
        assert_eq!(choose_split(1_000, None, d, 5), Ok(DEFAULT_SPLIT_BYTES));
        let huge = 100 * 1024 * 1024 * 1024 * 1024; // 100 TiB
        let split = choose_split(huge, None, d, 5).expect("no error");
        assert!(crate::TreeShape::of(huge, split, 5).leaves <= MAX_PARTS);
        assert_eq!(choose_split(huge, Some(split), d, 5), Ok(split));
        assert_eq!(
            choose_split(10_000, Some(2), d, 5)
                .expect_err("an error")
                .to_string(),
            "the source's 10000 bytes in splits of at most 2 bytes make 10000 leaves (parts), \
             over the limit of 2000: use a split of at least 16 bytes"
        );
        for size in [1, 2, 1999, 2000, 2001, 123_456_789, u64::MAX / 2] {
            for children in [2, 5, 1000] {
                let split = choose_split(size, None, d, children).expect("no error");
                assert!(crate::TreeShape::of(size, split, children).leaves <= MAX_PARTS);
            }
        }
    }

    #[test]
    fn the_digest_changes_with_anything_that_changes_the_outputs() {
        let a = source(Format::Jsonl, 10, None);
        let digest = a.short_digest(None);
        assert_eq!(digest.len(), 12);
        assert_eq!(digest, a.short_digest(None));
        let mut other = a.clone();
        other.version = Some("v2".into());
        assert_ne!(other.short_digest(None), digest);
        assert_ne!(a.short_digest(Some("/out")), digest);
        let lines = DataSource {
            format: Format::Lines,
            ..a.clone()
        };
        assert_ne!(lines.short_digest(None), digest);
        // A stored source's digest is the one it had before compression was known: the same
        // command attaches to a batch started before.
        assert_eq!(digest, "f189d75bcd3d");
        let mut gz = a.clone();
        gz.compression = Some(Compression::Gzip);
        assert_ne!(gz.short_digest(None), digest);
        let mut bounded = gz.clone();
        bounded.max_ratio = Some(10);
        assert_ne!(bounded.short_digest(None), gz.short_digest(None));
    }

    #[test]
    fn part_names_sort_in_source_order() {
        let names: Vec<String> = [(1, 9), (10, 99), (100, 1000)]
            .iter()
            .map(|&(a, b)| part_name(a, b))
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(
            part_name(1, 64),
            "part-00000000000000000001-00000000000000000064"
        );
    }
}
