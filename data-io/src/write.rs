//! Writing outputs: a part streamed to its place and made visible whole (a local file is
//! written aside and renamed; an object store gets one put or a multipart upload, which
//! appears only when completed), so a retried or duplicated leaf overwrites its part with
//! the same bytes and a reader never sees half of one.

use bytes::Bytes;
use object_store::ObjectStoreExt as _;
use object_store::buffered::BufWriter;

use crate::{DataError, Location};

/// Bytes buffered before a part turns into a multipart upload.
const BUFFER: usize = 8 * 1024 * 1024;

/// A part being written.
pub struct PartWriter {
    target: Location,
    writer: BufWriter,
    bytes: u64,
}

impl PartWriter {
    pub fn new(target: Location) -> Self {
        let writer =
            BufWriter::with_capacity(target.store().clone(), target.path().clone(), BUFFER);
        Self {
            target,
            writer,
            bytes: 0,
        }
    }

    /// Appends `bytes`.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), DataError> {
        self.bytes += bytes.len() as u64;
        self.writer
            .put(bytes)
            .await
            .map_err(|e| DataError::store(self.target.text(), "cannot write the part", e))
    }

    /// Makes the part visible, whole; returns its size.
    pub async fn finish(mut self) -> Result<u64, DataError> {
        use tokio::io::AsyncWriteExt as _;
        self.writer.shutdown().await.map_err(|e| {
            DataError::invalid(self.target.text(), format!("cannot complete the part: {e}"))
        })?;
        Ok(self.bytes)
    }

    /// Gives up: nothing becomes visible.
    pub async fn abort(mut self) {
        let _ = self.writer.abort().await;
    }
}

/// Writes `bytes` to `target` in one atomic put (the manifest).
pub async fn put(target: &Location, bytes: Vec<u8>) -> Result<(), DataError> {
    target
        .store()
        .put(target.path(), bytes.into())
        .await
        .map(|_| ())
        .map_err(|e| DataError::store(target.text(), "cannot write", e))
}

/// The whole object at `target` (tests, the starter's check of an existing manifest).
pub async fn get(target: &Location) -> Result<Bytes, DataError> {
    let result = target
        .store()
        .get(target.path())
        .await
        .map_err(|e| DataError::store(target.text(), "cannot read", e))?;
    result
        .bytes()
        .await
        .map_err(|e| DataError::store(target.text(), "cannot read", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_part_appears_whole_and_a_rewrite_replaces_it() {
        let dir = tempfile::tempdir().expect("no error");
        let out =
            Location::open(dir.path().join("out").to_str().expect("no error")).expect("no error");
        let part = out.child("part-1");
        let mut writer = PartWriter::new(part.clone());
        writer
            .write(Bytes::from_static(b"one\n"))
            .await
            .expect("no error");
        writer
            .write(Bytes::from(vec![b'x'; BUFFER]))
            .await
            .expect("no error");
        assert!(
            !dir.path().join("out/part-1").exists(),
            "nothing visible before finish"
        );
        assert_eq!(writer.finish().await.expect("no error"), 4 + BUFFER as u64);
        assert_eq!(get(&part).await.expect("no error").len(), 4 + BUFFER);
        let mut again = PartWriter::new(part.clone());
        again
            .write(Bytes::from_static(b"two\n"))
            .await
            .expect("no error");
        again.finish().await.expect("no error");
        assert_eq!(&get(&part).await.expect("no error")[..], b"two\n");
        let mut dropped = PartWriter::new(out.child("part-2"));
        dropped
            .write(Bytes::from_static(b"never\n"))
            .await
            .expect("no error");
        dropped.abort().await;
        let names: Vec<_> = std::fs::read_dir(dir.path().join("out"))
            .expect("no error")
            .map(|e| {
                e.expect("no error")
                    .file_name()
                    .into_string()
                    .expect("no error")
            })
            .collect();
        assert_eq!(names, ["part-1"], "no staging files left behind");
    }
}
