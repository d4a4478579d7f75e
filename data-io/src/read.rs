//! Reading a source: what it is before a batch starts (size, version, CSV header), then a
//! split's bytes with ranged reads, pinned to the version the batch started with.

use bytes::Bytes;
use object_store::{GetOptions, GetRange, ObjectStore as _, ObjectStoreExt as _};

use batch_core::source::Compression;

use crate::location::Target;
use crate::{DataError, Location};

pub use crate::source_info::SourceInfo;

/// The object's size and version.
pub async fn stat(source: &Location) -> Result<SourceInfo, DataError> {
    let (store, path) = match source.target() {
        Target::Local(path) => return crate::local::stat(source, path).await,
        Target::Remote { store, path, .. } => (store, path),
    };
    let meta = store
        .head(path)
        .await
        .map_err(|e| DataError::store(source.text(), "cannot read the source", e))?;
    Ok(SourceInfo {
        size: meta.size,
        version: meta.e_tag,
    })
}

/// The whole object, if it has at most `max` bytes: refused from its size before it is read,
/// then read pinned to the version whose size was checked, so it cannot grow in between.
pub async fn bounded(at: &Location, max: u64) -> Result<Bytes, DataError> {
    let info = stat(at).await?;
    if info.size > max {
        return Err(DataError::invalid(
            at.text(),
            format!("it is {} bytes, over the limit of {max}", info.size),
        ));
    }
    if info.size == 0 {
        return Ok(Bytes::new());
    }
    read_range(at, info.version.as_deref(), 1, info.size).await
}

/// The object's first bytes (at most [`batch_core::source::MAGIC_BYTES`]), read pinned to
/// `version`, for [`batch_core::source::check_stored`] and the compression a name does not
/// say.
pub async fn magic(
    source: &Location,
    version: Option<&str>,
    size: u64,
) -> Result<Bytes, DataError> {
    let end = size.min(batch_core::source::MAGIC_BYTES);
    if end == 0 {
        return Ok(Bytes::new());
    }
    read_range(source, version, 1, end).await
}

/// Checks that the object starts as the batch reads it ([`batch_core::source::check_stored`]):
/// the one check of a source's start, for the starter and for every leaf alike.
pub async fn check_stored(
    source: &Location,
    version: Option<&str>,
    size: u64,
    compression: Option<Compression>,
) -> Result<(), DataError> {
    let first = magic(source, version, size).await?;
    batch_core::source::check_stored(source.text(), compression, &first)
        .map_err(|e| DataError::bad_source(source.text(), e))
}

/// Compressed bytes read at a time for the start of a compressed object.
const START_READ_BYTES: u64 = 64 * 1024;

/// The first line of the object (a CSV header), without its line end; at most `max` bytes.
/// A compressed object's is its decompressed stream's.
pub async fn first_line(
    source: &Location,
    info: &SourceInfo,
    compression: Option<Compression>,
    max: usize,
) -> Result<String, DataError> {
    let want = max + 2;
    let (bytes, whole) = match compression {
        None => {
            let end = info.size.min(want as u64);
            let bytes = read_range(source, info.version.as_deref(), 1, end).await?;
            (bytes.to_vec(), info.size <= end)
        }
        Some(compression) => decompressed_start(source, info, compression, want).await?,
    };
    let line = match bytes.iter().position(|&b| b == b'\n') {
        Some(at) => &bytes[..at],
        None if whole => &bytes[..],
        None => {
            return Err(DataError::invalid(
                source.text(),
                format!("the first line (the CSV header) is longer than {max} bytes"),
            ));
        }
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8(line.to_vec())
        .map_err(|_| DataError::invalid(source.text(), "the CSV header is not UTF-8"))
}

/// The first `want` bytes (or fewer, if that is all) of a compressed object's stream, and
/// whether they are all of it.
async fn decompressed_start(
    source: &Location,
    info: &SourceInfo,
    compression: Compression,
    want: usize,
) -> Result<(Vec<u8>, bool), DataError> {
    let invalid = |e| DataError::bad_source(source.text(), format!("{}: {e}", source.text()));
    let mut decoder =
        crate::decode::Decoder::new(compression, batch_core::source::DEFAULT_MAX_RATIO)
            .map_err(invalid)?;
    let mut out = Vec::new();
    let mut next = 1;
    while out.len() < want && next <= info.size {
        let last = (next + START_READ_BYTES - 1).min(info.size);
        let bytes = read_range(source, info.version.as_deref(), next, last).await?;
        let mut input = &bytes[..];
        while !input.is_empty() && out.len() < want {
            let used = decoder
                .decode_into(input, &mut out, want)
                .map_err(invalid)?;
            input = &input[used..];
        }
        next = last + 1;
    }
    let whole = next > info.size && out.len() < want;
    if whole {
        decoder.finish().map_err(invalid)?;
    }
    Ok((out, whole))
}

/// Bytes `first..=last` (1-based positions) of the object, if it still has `version`.
pub async fn read_range(
    source: &Location,
    version: Option<&str>,
    first: u64,
    last: u64,
) -> Result<Bytes, DataError> {
    let (store, path) = match source.target() {
        Target::Local(path) => {
            return crate::local::read_range(source, path, version, first, last).await;
        }
        Target::Remote { store, path, .. } => (store, path),
    };
    let options = GetOptions {
        range: Some(GetRange::Bounded(first - 1..last)),
        if_match: version.map(str::to_owned),
        ..GetOptions::default()
    };
    let what = || format!("cannot read bytes {first}..={last}");
    let result = store
        .get_opts(path, options)
        .await
        .map_err(|e| DataError::store(source.text(), what(), e))?;
    let bytes = result
        .bytes()
        .await
        .map_err(|e| DataError::store(source.text(), what(), e))?;
    let expected = last - first + 1;
    if bytes.len() as u64 != expected {
        return Err(DataError::invalid(
            source.text(),
            format!(
                "{}: got {} bytes, expected {expected} (the object is shorter than when the \
                 batch started?)",
                what(),
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::Authority;

    #[tokio::test]
    async fn a_source_is_read_by_ranges_and_pinned_to_its_version() {
        let dir = tempfile::tempdir().expect("no error");
        let file = dir.path().join("rows.csv");
        std::fs::write(&file, "a,b\r\n1,2\n").expect("no error");
        let source =
            Location::open(file.to_str().expect("no error"), Authority::User).expect("no error");
        let info = stat(&source).await.expect("no error");
        assert_eq!(info.size, 9);
        assert_eq!(
            first_line(&source, &info, None, 100)
                .await
                .expect("no error"),
            "a,b"
        );
        let long = first_line(&source, &info, None, 2)
            .await
            .expect_err("an error");
        assert!(long.to_string().ends_with("longer than 2 bytes"), "{long}");
        let bytes = read_range(&source, info.version.as_deref(), 6, 8)
            .await
            .expect("no error");
        assert_eq!(&bytes[..], b"1,2");
        // Rewritten in place with the same size and its modification time put back: the
        // change time still moved, so the old version's reads fail for good, saying why.
        let modified = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .expect("mtime");
        std::fs::write(&file, "a,b\r\n3,4\n").expect("no error");
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(modified))
            .expect("mtime put back");
        assert_eq!(stat(&source).await.expect("no error").size, info.size);
        let changed = read_range(&source, info.version.as_deref(), 6, 8)
            .await
            .expect_err("an error");
        assert!(changed.is_permanent());
        assert!(
            changed
                .to_string()
                .contains("the object changed since the batch started"),
            "{changed}"
        );
        let missing = Location::open(
            dir.path().join("none").to_str().expect("no error"),
            Authority::User,
        )
        .expect("no error");
        let err = stat(&missing).await.expect_err("an error");
        assert!(err.is_permanent());
        assert!(err.message().contains("No such file"), "{}", err.message());
    }

    #[tokio::test]
    async fn a_special_file_is_refused_at_once_not_waited_on() {
        let dir = tempfile::tempdir().expect("no error");
        let fifo = dir.path().join("fifo.jsonl");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let source =
            Location::open(fifo.to_str().expect("no error"), Authority::User).expect("no error");
        // No writer ever opens the FIFO: a blocking open would wait forever.
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            read_range(&source, None, 1, 10),
        )
        .await
        .expect("refused at once");
        let err = read.expect_err("not a regular file");
        assert!(err.is_permanent());
        assert!(
            err.message().contains("not a regular file"),
            "{}",
            err.message()
        );
    }
}
