//! A source of many objects: every object under a prefix (`s3://lake/events/`, a directory) or
//! matching a glob (`/data/2026-11-*/part-*.jsonl.gz`), read in name order as one source.
//!
//! The starter lists them once, when the batch starts, and pins the listing like a single
//! object's version: names, sizes, versions and compressions ([`ObjectEntry`]). The tree runs
//! over the objects' stored bytes one after the other, so a node's input is still a range, and a
//! split is the pieces of the objects it overlaps ([`Listing::pieces`]); records never cross
//! objects. A small listing travels in the inputs; a large one is stored beside the output and
//! only its location and sha256 travel ([`ListingRef`]), so 100,000 objects fit Temporal's
//! payload limits as well as one.
//!
//! An item's index packs the object's ordinal (0-based, in name order) and the record's position
//! in the object (1-based, in its decompressed stream if compressed): `ordinal << 40 |
//! position` ([`ItemId`]), shown as `ordinal:position`. Indexes sort in source order.

use serde::{Deserialize, Serialize};

use crate::source::{Compression, MAX_LOCATION_BYTES};

/// Most objects of one source.
pub const MAX_OBJECTS: usize = 100_000;
/// Most objects whose listing travels in the inputs; a larger listing is stored.
pub const MAX_INLINE_OBJECTS: usize = 32;
/// Most bytes of a stored listing (JSON Lines, one object a line).
pub const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;
/// Bits of an item's index that hold its position in its object.
pub const POSITION_BITS: u32 = 40;
/// An object's largest position (its decompressed size): 1 TiB.
pub const MAX_POSITION: u64 = (1 << POSITION_BITS) - 1;

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Its name under the source's base (`2026-11-01/part-0001.jsonl.gz`).
    pub name: String,
    /// Its size, stored, when listed.
    pub size: u64,
    /// Its version or ETag when listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// A gzip object's index beside it (`NAME.gzi`, listed with it and not read as an object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzi: Option<crate::frames::Sidecar>,
}

/// Where a source's listing is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListingRef {
    /// In the inputs (at most [`MAX_INLINE_OBJECTS`]).
    Inline(Vec<ObjectEntry>),
    /// Stored as JSON Lines at `location` (written by the starter), whose bytes have this
    /// sha256: a listing changed after the batch started is refused.
    Stored { location: String, sha256: String },
}

/// The objects of a many-object source: the part of a [`crate::DataSource`] that says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objects {
    /// The prefix or directory the names are under (ending with `/`).
    pub base: String,
    /// Objects read (the empty ones left out).
    pub count: u64,
    /// Empty objects matched and skipped.
    pub empty: u64,
    /// Whether any object is compressed (what the stored listing says, known without it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compressed: bool,
    pub listing: ListingRef,
}

impl Objects {
    /// Checks what travels in the inputs (not the stored listing, which the leaves check when
    /// they read it).
    pub fn validate(&self, source: &crate::DataSource) -> Result<(), crate::source::SourceError> {
        let refuse = |reason: String| crate::source::SourceError::Objects {
            location: source.location.clone(),
            reason,
        };
        crate::source::validate_location(&self.base)?;
        if self.count == 0 || self.count > MAX_OBJECTS as u64 {
            return Err(refuse(format!(
                "{} objects, not 1 to {MAX_OBJECTS}",
                self.count
            )));
        }
        if source.compression.is_some() {
            return Err(refuse("each object has its own compression".into()));
        }
        match &self.listing {
            ListingRef::Inline(entries) => {
                if entries.len() > MAX_INLINE_OBJECTS {
                    return Err(refuse(format!(
                        "{} objects inline, over {MAX_INLINE_OBJECTS}",
                        entries.len()
                    )));
                }
                Listing::new(entries.clone())
                    .and_then(|listing| listing.check(self, source.size))
                    .map_err(|e| refuse(e.to_string()))?;
            }
            ListingRef::Stored { location, sha256 } => {
                crate::source::validate_location(location)?;
                if !is_sha256_hex(sha256) {
                    return Err(refuse("the listing's sha256 is not 64 hex digits".into()));
                }
            }
        }
        Ok(())
    }
}

/// A listing with each object's first position in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<ObjectEntry>,
    /// `starts[i]`: the source position of object `i`'s first byte.
    starts: Vec<u64>,
}

/// The part of one object a split overlaps: its bytes `first..=last` (1-based, stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub ordinal: u32,
    pub first: u64,
    pub last: u64,
}

/// Why a listing is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectsError {
    #[error("{pattern} matches no object (or only empty ones)")]
    Nothing { pattern: String },
    #[error(
        "{pattern} matches {count} objects, over the limit of {MAX_OBJECTS}: narrow the prefix \
         or the glob"
    )]
    TooMany { pattern: String, count: usize },
    #[error("the listing's object {index} is not valid: {reason}")]
    Entry { index: usize, reason: String },
    #[error("the listing does not match the source: {0}")]
    Mismatch(String),
    #[error("the listing is not valid JSON Lines: {0}")]
    Encoding(String),
}

impl Listing {
    /// Checks `entries` (sorted by name, no empty object, names that stay under the base)
    /// and indexes them.
    pub fn new(entries: Vec<ObjectEntry>) -> Result<Self, ObjectsError> {
        if entries.len() > MAX_OBJECTS {
            return Err(ObjectsError::TooMany {
                pattern: "the listing".into(),
                count: entries.len(),
            });
        }
        let mut starts = Vec::with_capacity(entries.len());
        let mut next: u64 = 1;
        for (index, entry) in entries.iter().enumerate() {
            let bad = |reason: String| ObjectsError::Entry { index, reason };
            check_name(&entry.name).map_err(bad)?;
            if index > 0 && entries[index - 1].name >= entry.name {
                return Err(bad("names are not sorted, or one is listed twice".into()));
            }
            if entry.size == 0 {
                return Err(bad("an empty object is listed".into()));
            }
            if entry.compression.is_none() && entry.size > MAX_POSITION {
                return Err(bad(format!("its size is over {MAX_POSITION} bytes")));
            }
            if let Some(gzi) = &entry.gzi {
                match entry.compression {
                    Some(Compression::Gzip) => gzi.validate().map_err(bad)?,
                    _ => return Err(bad("a .gzi indexes a gzip object only".into())),
                }
            }
            starts.push(next);
            next = next
                .checked_add(entry.size)
                .ok_or_else(|| bad("the sizes overflow".into()))?;
        }
        Ok(Self { entries, starts })
    }

    /// The stored bytes of every object.
    pub fn size(&self) -> u64 {
        self.starts
            .last()
            .zip(self.entries.last())
            .map_or(0, |(start, entry)| start - 1 + entry.size)
    }

    /// The objects a split of source positions `first..=last` overlaps, with the bytes of
    /// each it holds, in order.
    pub fn pieces(&self, first: u64, last: u64) -> Vec<Piece> {
        let from = self.starts.partition_point(|&start| start <= first);
        let from = from.saturating_sub(1);
        let mut pieces = Vec::new();
        for (ordinal, entry) in self.entries.iter().enumerate().skip(from) {
            let start = self.starts[ordinal];
            if start > last {
                break;
            }
            let end = start + entry.size - 1;
            if end < first {
                continue;
            }
            pieces.push(Piece {
                ordinal: ordinal as u32,
                first: first.max(start) - start + 1,
                last: last.min(end) - start + 1,
            });
        }
        pieces
    }

    /// The listing as stored: one JSON object a line.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in &self.entries {
            serde_json::to_writer(&mut out, entry).expect("an entry serializes");
            out.push(b'\n');
        }
        out
    }

    /// A stored listing read back.
    pub fn decode(bytes: &[u8]) -> Result<Self, ObjectsError> {
        if bytes.len() > MAX_LISTING_BYTES {
            return Err(ObjectsError::Encoding(format!(
                "{} bytes, over the limit of {MAX_LISTING_BYTES}",
                bytes.len()
            )));
        }
        let entries = bytes
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .enumerate()
            .map(|(n, line)| {
                serde_json::from_slice(line)
                    .map_err(|e| ObjectsError::Encoding(format!("line {}: {e}", n + 1)))
            })
            .collect::<Result<Vec<ObjectEntry>, _>>()?;
        Self::new(entries)
    }

    /// Checks the listing against what the source says of it: its count and its size.
    pub fn check(&self, objects: &Objects, size: u64) -> Result<(), ObjectsError> {
        if self.entries.len() as u64 != objects.count || self.size() != size {
            return Err(ObjectsError::Mismatch(format!(
                "{} objects of {} bytes listed, the source says {} of {size}",
                self.entries.len(),
                self.size(),
                objects.count
            )));
        }
        Ok(())
    }
}

/// Whether `text` is a sha256 as this project writes it: 64 lowercase hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An object's name: relative, `/`-separated, each segment a plain name.
fn check_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > MAX_LOCATION_BYTES
        || name.starts_with('/')
        || name.chars().any(char::is_control)
        || name
            .split('/')
            .any(|segment| matches!(segment, "" | "." | ".."));
    if bad {
        return Err(format!(
            "the name {:?} is not a plain relative name",
            crate::text::bounded(name, 200)
        ));
    }
    Ok(())
}

/// An item of a many-object source: its object's ordinal and its position in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ItemId {
    pub ordinal: u32,
    pub position: u64,
}

impl ItemId {
    /// The item's index: `ordinal << 40 | position`.
    pub fn index(self) -> u64 {
        (u64::from(self.ordinal) << POSITION_BITS) | self.position
    }

    pub fn of_index(index: u64) -> Self {
        Self {
            ordinal: (index >> POSITION_BITS) as u32,
            position: index & MAX_POSITION,
        }
    }
}

impl std::fmt::Display for ItemId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.ordinal, self.position)
    }
}

/// The largest index an item of a source of `count` objects can have.
pub fn max_index(count: u64) -> u64 {
    (count.saturating_sub(1) << POSITION_BITS) | MAX_POSITION
}

/// A glob's pattern: `*` and `?` within a segment, `**` across segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// The literal prefix up to the last `/` before the first wildcard (listed).
    pub base: String,
    /// The pattern after the base, matched against each listed name.
    pattern: String,
}

impl Glob {
    /// Whether a location names many objects: a glob, or a prefix ending with `/`.
    pub fn is_pattern(location: &str) -> bool {
        location.contains(['*', '?'])
    }

    /// The glob `location`, or `None` if it has no wildcard.
    pub fn parse(location: &str) -> Option<Self> {
        let wildcard = location.find(['*', '?'])?;
        let cut = location[..wildcard].rfind('/').map_or(0, |at| at + 1);
        Some(Self {
            base: location[..cut].to_owned(),
            pattern: location[cut..].to_owned(),
        })
    }

    /// Whether `name` (relative to the base) matches.
    pub fn matches(&self, name: &str) -> bool {
        matches(self.pattern.as_bytes(), name.as_bytes())
    }
}

fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern {
        [] => name.is_empty(),
        [b'*', b'*', rest @ ..] => {
            // `**/` also matches no segment at all.
            let rest_after_slash = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=name.len()).any(|at| matches(rest, &name[at..])) || matches(rest_after_slash, name)
        }
        [b'*', rest @ ..] => {
            let segment = name.iter().position(|&b| b == b'/').unwrap_or(name.len());
            (0..=segment).any(|at| matches(rest, &name[at..]))
        }
        [b'?', rest @ ..] => matches!(name, [c, tail @ ..] if *c != b'/' && matches(rest, tail)),
        [c, rest @ ..] => matches!(name, [n, tail @ ..] if n == c && matches(rest, tail)),
    }
}

/// Whether a name is hidden from a listing: a segment that starts with `.` or `_` (an
/// output's `_manifest.json`, `.staging/`, a stored listing), as Spark and Hadoop skip them.
pub fn is_hidden(name: &str) -> bool {
    name.split('/')
        .any(|segment| segment.starts_with('.') || segment.starts_with('_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, size: u64) -> ObjectEntry {
        ObjectEntry {
            name: name.into(),
            size,
            version: None,
            compression: None,
            gzi: None,
        }
    }

    #[test]
    fn every_byte_of_every_object_is_in_exactly_one_piece_at_every_split() {
        for sizes in [
            vec![1],
            vec![3, 1, 4],
            vec![1, 1, 1, 1],
            vec![5, 2],
            vec![2, 9, 1, 3],
        ] {
            let entries = sizes
                .iter()
                .enumerate()
                .map(|(i, &s)| entry(&format!("o{i}"), s))
                .collect();
            let listing = Listing::new(entries).expect("valid");
            let total: u64 = sizes.iter().sum();
            assert_eq!(listing.size(), total);
            for split in 1..=total {
                let mut seen = vec![vec![0; 0]; sizes.len()];
                for (i, s) in sizes.iter().enumerate() {
                    seen[i] = vec![0u32; *s as usize];
                }
                let mut first = 1;
                while first <= total {
                    let last = (first + split - 1).min(total);
                    for piece in listing.pieces(first, last) {
                        assert!(piece.first <= piece.last);
                        for p in piece.first..=piece.last {
                            seen[piece.ordinal as usize][(p - 1) as usize] += 1;
                        }
                    }
                    first = last + 1;
                }
                assert!(seen.iter().flatten().all(|&n| n == 1), "{sizes:?} {split}");
            }
        }
    }

    #[test]
    fn listings_round_trip_and_bad_ones_are_refused() {
        let listing =
            Listing::new(vec![entry("a/1.jsonl", 10), entry("a/2.jsonl.gz", 3)]).expect("valid");
        assert_eq!(Listing::decode(&listing.encode()), Ok(listing));
        for (entries, reason) in [
            (vec![entry("b", 1), entry("a", 1)], "not sorted"),
            (vec![entry("a", 1), entry("a", 1)], "listed twice"),
            (vec![entry("a", 0)], "an empty object"),
            (vec![entry("../secret", 1)], "not a plain relative name"),
            (vec![entry("a//b", 1)], "not a plain relative name"),
            (vec![entry("/etc/passwd", 1)], "not a plain relative name"),
            (vec![entry("a/./b", 1)], "not a plain relative name"),
        ] {
            let err = Listing::new(entries).expect_err("refused").to_string();
            assert!(err.contains(reason), "{err}");
        }
        assert!(Listing::decode(b"{\"name\":1}\n").is_err());
    }

    #[test]
    fn item_ids_pack_in_source_order() {
        let ids = [(0, 1), (0, MAX_POSITION), (1, 1), (7, 12345), (99_999, 3)];
        let indexes: Vec<u64> = ids
            .iter()
            .map(|&(ordinal, position)| ItemId { ordinal, position }.index())
            .collect();
        assert!(indexes.windows(2).all(|w| w[0] < w[1]));
        for (&(ordinal, position), &index) in ids.iter().zip(&indexes) {
            assert_eq!(ItemId::of_index(index), ItemId { ordinal, position });
            assert!(index <= max_index(100_000));
        }
        assert_eq!(
            ItemId::of_index(
                ItemId {
                    ordinal: 7,
                    position: 9
                }
                .index()
            )
            .to_string(),
            "7:9"
        );
    }

    #[test]
    fn globs_match_within_and_across_segments() {
        let glob = Glob::parse("s3://lake/events/2026-11-*/part-?.jsonl*").expect("a glob");
        assert_eq!(glob.base, "s3://lake/events/");
        for (name, matched) in [
            ("2026-11-01/part-1.jsonl", true),
            ("2026-11-01/part-1.jsonl.gz", true),
            ("2026-11-/part-9.jsonl", true),
            ("2026-11-01/x/part-1.jsonl", false),
            ("2026-11-01/part-12.jsonl", false),
            ("2026-12-01/part-1.jsonl", false),
        ] {
            assert_eq!(glob.matches(name), matched, "{name}");
        }
        let deep = Glob::parse("/d/**/*.csv").expect("a glob");
        assert_eq!(deep.base, "/d/");
        for (name, matched) in [
            ("a.csv", true),
            ("x/a.csv", true),
            ("x/y/z/a.csv", true),
            ("x/a.csv.gz", false),
        ] {
            assert_eq!(deep.matches(name), matched, "{name}");
        }
        assert_eq!(Glob::parse("/d/plain/"), None);
        assert!(is_hidden("out/_manifest.json") && is_hidden(".staging/x") && !is_hidden("a/b"));
    }
}
