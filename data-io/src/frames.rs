//! A compressed object's frames ([`batch_core::frames`]), from its index: a seekable zstd
//! stream's seek table, in its last bytes, or a gzip stream's bgzip index beside it
//! (`NAME.gzi`). Both are read pinned (the object to its version, the `.gzi` to the sha256 the
//! starter saw) and checked against the object; neither may be over
//! [`batch_core::frames::MAX_INDEX_BYTES`].
//!
//! The seek table (zstd's `contrib/seekable_format`), all little-endian: a skippable frame's
//! magic `0x184D2A5E` and its size, then an entry per frame (its stored size and decompressed
//! size, 4 bytes each, then a 4-byte checksum if the descriptor's top bit says so), then the
//! 9-byte footer: the number of frames, the descriptor, and the seekable magic `0x8F92EAB1`.
//!
//! A `.gzi` (htslib's, written by `bgzip -i`): the number of entries, then each member's start
//! after the first as its stored and its decompressed offset, all 8-byte little-endian. Any gzip
//! stream of several members can have one; bgzip's blocks are members of at most 64 KiB.

use std::sync::Arc;

use batch_core::frames::{Boundary, FrameIndex, MAX_INDEX_BYTES, Sidecar};
use batch_core::source::{Compression, decompressed_bound};

use crate::{DataError, Location};

const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// The footer: frames (4), descriptor (1), magic (4).
const FOOTER_BYTES: u64 = 9;
/// The skippable frame's header: magic (4), size (4).
const HEADER_BYTES: u64 = 8;
/// What a gzip object's index is named after it.
pub const GZI_SUFFIX: &str = ".gzi";

/// An object as the batch reads it, for its index.
pub struct Framed<'a> {
    pub location: &'a Location,
    pub version: Option<&'a str>,
    pub size: u64,
    pub compression: Compression,
    pub max_ratio: u32,
    /// A gzip object's `.gzi`, as the starter found it.
    pub gzi: Option<&'a Sidecar>,
}

impl Framed<'_> {
    /// The most its frames may decompress to.
    fn max_decompressed(&self) -> u64 {
        decompressed_bound(self.max_ratio, self.size).min(batch_core::objects::MAX_POSITION)
    }

    fn bad(&self, reason: impl std::fmt::Display) -> DataError {
        let location = self.location.text();
        DataError::bad_source(location, format!("{location}: {reason}"))
    }
}

/// The frames of a compressed object, if it has an index: a seekable zstd stream's seek table,
/// or a gzip stream's `.gzi` (read from `gzi_location`, checked to be the one the starter saw),
/// checked against the object's size and its decompression bound. `None` for a stream without
/// one (read whole).
pub async fn read_index(
    object: &Framed<'_>,
    gzi_location: impl FnOnce() -> Result<Location, DataError>,
) -> Result<Option<Arc<FrameIndex>>, DataError> {
    let index = match (object.compression, object.gzi) {
        (Compression::Zstd, _) => seek_table(object).await?,
        (Compression::Gzip, Some(gzi)) => {
            let location = gzi_location()?;
            let bytes = read_gzi(&location, gzi.size).await?;
            if crate::list::sha256_hex(&bytes) != gzi.sha256 {
                return Err(DataError::bad_source(
                    location.text(),
                    format!(
                        "{}: the index changed since the batch started",
                        location.text()
                    ),
                ));
            }
            Some(
                parse_gzi(&bytes, object.size, object.max_decompressed())
                    .map_err(|e| object.bad(e))?,
            )
        }
        (Compression::Gzip, None) => None,
    };
    Ok(index.map(Arc::new))
}

/// A gzip object's `.gzi` at `location`, as the starter finds it, if it exists: its size and
/// sha256, checked to index an object of `object_size` bytes. One the store will not show is
/// none: the object is then read whole, which is always right.
pub async fn find_gzi(location: &Location, object_size: u64) -> Result<Option<Sidecar>, DataError> {
    match crate::read::stat(location).await {
        Ok(info) => read_sidecar(location, info.size, object_size)
            .await
            .map(Some),
        Err(e) if e.is_not_found_or_denied() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `.gzi` of `size` bytes at `location`, listed beside its object of `object_size` bytes.
pub(crate) async fn read_sidecar(
    location: &Location,
    size: u64,
    object_size: u64,
) -> Result<Sidecar, DataError> {
    let bytes = read_gzi(location, size).await?;
    checked_gzi(location, &bytes, object_size)?;
    Ok(Sidecar {
        size,
        sha256: crate::list::sha256_hex(&bytes),
    })
}

/// A `.gzi`'s index, checked against its object's size (its decompressed bound is checked where
/// it is read).
fn checked_gzi(
    location: &Location,
    bytes: &[u8],
    object_size: u64,
) -> Result<FrameIndex, DataError> {
    let max = batch_core::objects::MAX_POSITION;
    parse_gzi(bytes, object_size, max).map_err(|e| {
        let text = location.text();
        DataError::bad_source(text, format!("{text}: {e}"))
    })
}

/// A `.gzi` of `size` bytes, read whole.
async fn read_gzi(location: &Location, size: u64) -> Result<Vec<u8>, DataError> {
    if !(8..=MAX_INDEX_BYTES).contains(&size) {
        return Err(DataError::bad_source(
            location.text(),
            format!(
                "{}: a gzip index of {size} bytes: not 8 to {MAX_INDEX_BYTES}",
                location.text()
            ),
        ));
    }
    Ok(crate::read::read_range(location, None, 1, size)
        .await?
        .to_vec())
}

/// The index a `.gzi` gives an object of `size` stored bytes.
fn parse_gzi(bytes: &[u8], size: u64, max_decompressed: u64) -> Result<FrameIndex, String> {
    let long = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let entries = long(0);
    if entries.checked_mul(16).and_then(|n| n.checked_add(8)) != Some(bytes.len() as u64) {
        return Err(format!(
            "its gzip index says {entries} entries in {} bytes",
            bytes.len()
        ));
    }
    let starts = (0..entries as usize).map(|k| Boundary {
        stored: long(8 + 16 * k),
        decompressed: long(16 + 16 * k),
    });
    FrameIndex::from_starts(starts, size, max_decompressed).map_err(|e| e.to_string())
}

/// A zstd object's seek table, if it ends with one.
async fn seek_table(object: &Framed<'_>) -> Result<Option<FrameIndex>, DataError> {
    let (location, version, size) = (object.location, object.version, object.size);
    if size < HEADER_BYTES + FOOTER_BYTES {
        return Ok(None);
    }
    let footer = crate::read::read_range(location, version, size - FOOTER_BYTES + 1, size).await?;
    let Some(table_bytes) = seek_table_bytes(&footer).map_err(|e| object.bad(e))? else {
        return Ok(None);
    };
    if table_bytes > size {
        return Err(object.bad(format!(
            "its seek table says it is {table_bytes} bytes, more than the object"
        )));
    }
    let table = crate::read::read_range(location, version, size - table_bytes + 1, size).await?;
    let index = parse(&table, size, object.max_decompressed()).map_err(|e| object.bad(e))?;
    Ok(Some(index))
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The whole seek table's length (its skippable frame), from the object's last 9 bytes, if they
/// are a seekable footer.
fn seek_table_bytes(footer: &[u8]) -> Result<Option<u64>, String> {
    if footer.len() as u64 != FOOTER_BYTES || word(footer, 5) != SEEKABLE_MAGIC {
        return Ok(None);
    }
    let frames = u64::from(word(footer, 0));
    let descriptor = footer[4];
    if descriptor & 0x7c != 0 {
        return Err(format!(
            "its seek table's descriptor has reserved bits set ({descriptor:#04x})"
        ));
    }
    let entry = if descriptor & 0x80 != 0 { 12 } else { 8 };
    let bytes = HEADER_BYTES + frames * entry + FOOTER_BYTES;
    if bytes > MAX_INDEX_BYTES {
        return Err(format!(
            "its seek table lists {frames} frames, {bytes} bytes, over the limit of \
             {MAX_INDEX_BYTES}: recompress it with larger frames"
        ));
    }
    Ok(Some(bytes))
}

/// The index a whole seek table (skippable frame) at the end of an object of `size` bytes
/// gives, its frames decompressing to at most `max_decompressed` bytes.
fn parse(table: &[u8], size: u64, max_decompressed: u64) -> Result<FrameIndex, String> {
    let footer = &table[table.len() - FOOTER_BYTES as usize..];
    let frames = word(footer, 0) as usize;
    let entry = if footer[4] & 0x80 != 0 { 12 } else { 8 };
    if word(table, 0) != SKIPPABLE_MAGIC
        || u64::from(word(table, 4)) != table.len() as u64 - HEADER_BYTES
    {
        return Err("its seek table is not a skippable frame of its own length".into());
    }
    let entries = &table[HEADER_BYTES as usize..table.len() - FOOTER_BYTES as usize];
    let sizes = entries.chunks_exact(entry).take(frames).map(|e| {
        let (stored, decompressed) = (word(e, 0), word(e, 4));
        (u64::from(stored), u64::from(decompressed))
    });
    let stored_end = size - table.len() as u64;
    FrameIndex::from_sizes(sizes, stored_end, max_decompressed).map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A seekable zstd stream of `data` in frames of `frame` bytes, with checksums or not.
    pub(crate) fn seekable(data: &[u8], frame: usize, checksums: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut entries = Vec::new();
        for chunk in data.chunks(frame) {
            let compressed = zstd::bulk::compress(chunk, 3).expect("compressed");
            entries.extend((compressed.len() as u32).to_le_bytes());
            entries.extend((chunk.len() as u32).to_le_bytes());
            if checksums {
                entries.extend(0u32.to_le_bytes());
            }
            out.extend(compressed);
        }
        let frames = data.chunks(frame).count() as u32;
        out.extend(SKIPPABLE_MAGIC.to_le_bytes());
        out.extend((entries.len() as u32 + 9).to_le_bytes());
        out.extend(entries);
        out.extend(frames.to_le_bytes());
        out.push(if checksums { 0x80 } else { 0 });
        out.extend(SEEKABLE_MAGIC.to_le_bytes());
        out
    }

    pub(crate) fn gzi_index(gzi: &[u8], size: u64) -> FrameIndex {
        parse_gzi(gzi, size, u64::MAX).expect("index")
    }

    pub(crate) fn index_of(stream: &[u8]) -> Result<Option<FrameIndex>, String> {
        let footer = &stream[stream.len() - 9..];
        let Some(bytes) = seek_table_bytes(footer)? else {
            return Ok(None);
        };
        let table = &stream[stream.len() - bytes as usize..];
        parse(table, stream.len() as u64, u64::MAX).map(Some)
    }

    #[test]
    fn a_seek_table_gives_every_frame() {
        let data: Vec<u8> = (0..10_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        for checksums in [false, true] {
            let stream = seekable(&data, 1000, checksums);
            let index = index_of(&stream).expect("parsed").expect("seekable");
            assert_eq!(index.frames(), data.len().div_ceil(1000));
            assert_eq!(
                index.frame_end(index.frames() - 1).decompressed,
                data.len() as u64
            );
            for k in 0..index.frames() {
                assert_eq!(index.start(k).decompressed, 1000 * k as u64);
            }
        }
        assert_eq!(
            index_of(&zstd::bulk::compress(&data, 3).expect("compressed")),
            Ok(None)
        );
    }

    /// `data` as gzip members of `member` bytes each, and its `.gzi`.
    pub(crate) fn gzip_indexed(data: &[u8], member: usize) -> (Vec<u8>, Vec<u8>) {
        use std::io::Write as _;
        let (mut out, mut gzi) = (Vec::new(), Vec::new());
        let members = data.chunks(member).count() as u64;
        gzi.extend((members - 1).to_le_bytes());
        for (k, chunk) in data.chunks(member).enumerate() {
            if k > 0 {
                gzi.extend((out.len() as u64).to_le_bytes());
                gzi.extend(((k * member) as u64).to_le_bytes());
            }
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(chunk).expect("compressed");
            out.extend(encoder.finish().expect("compressed"));
        }
        (out, gzi)
    }

    #[test]
    fn a_gzi_gives_every_member_and_is_refused_when_it_does_not_fit() {
        let data = vec![b'y'; 10_000];
        let (gz, gzi) = gzip_indexed(&data, 1000);
        let index = parse_gzi(&gzi, gz.len() as u64, u64::MAX).expect("index");
        assert_eq!(index.frames(), 10);
        assert_eq!(index.start(9).decompressed, 9000);
        assert_eq!(
            index.frame_end(9).decompressed,
            u64::MAX,
            "not said by a .gzi"
        );
        let mut short = gzi.clone();
        short.pop();
        let mut unordered = gzi.clone();
        unordered[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        for (what, bytes, size) in [
            ("cut", &short, gz.len()),
            ("unordered", &unordered, gz.len()),
            ("past the object", &gzi, 100),
        ] {
            let err = parse_gzi(bytes, size as u64, u64::MAX).expect_err(what);
            assert!(
                err.contains("entries") || err.contains("frame"),
                "{what}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn a_gzi_over_the_bound_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("x.gz.gzi");
        std::fs::write(&path, vec![0u8; MAX_INDEX_BYTES as usize + 8]).expect("written");
        let location =
            Location::open(path.to_str().expect("utf-8"), crate::Authority::User).expect("opened");
        let err = find_gzi(&location, 1000).await.expect_err("refused");
        assert!(err.to_string().contains("not 8 to"), "{err}");
    }

    #[test]
    fn a_seek_table_that_lies_is_refused_naming_why() {
        let data = vec![b'x'; 5000];
        let stream = seekable(&data, 1000, false);
        let at = stream.len() - 9 - 5 * 8;
        // Each change: the first frame's stored size, the frame count, the descriptor, the
        // skippable magic, the frame size.
        let forgeries: [(usize, &[u8], &str); 5] = [
            (at, &[1, 0, 0, 0], "stored bytes"),
            (stream.len() - 9, &[4, 0, 0, 0], "skippable frame"),
            (stream.len() - 5, &[0x04], "reserved bits"),
            (at - 8, &[0, 0, 0, 0], "skippable frame"),
            (
                stream.len() - 9,
                &[0xff, 0xff, 0xff, 0xff],
                "over the limit",
            ),
        ];
        for (offset, bytes, why) in forgeries {
            let mut forged = stream.clone();
            forged[offset..offset + bytes.len()].copy_from_slice(bytes);
            let err = index_of(&forged).expect_err("refused");
            assert!(err.contains(why), "{why}: {err}");
        }
        let bomb = parse(&stream[stream.len() - 57..], stream.len() as u64, 4999);
        assert!(bomb.expect_err("refused").contains("decompress to more"));
    }
}
