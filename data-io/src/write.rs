//! Writing outputs: a part streamed to its place and made visible whole, so a retried or
//! duplicated leaf overwrites its part with the same bytes and a reader never sees half of
//! one. A local part is staged under a hidden directory and renamed into place
//! (`local.rs`); an object store gets one put, or a multipart upload, which appears
//! only when completed (an upload that never completes stays invisible).

use bytes::Bytes;
use object_store::ObjectStoreExt as _;
use object_store::buffered::BufWriter;

use crate::local::StagedFile;
use crate::location::Target;
use crate::{DataError, Location};

/// Bytes buffered before a part in an object store turns into a multipart upload.
const BUFFER: usize = 8 * 1024 * 1024;

/// A part being written.
pub struct PartWriter {
    target: Location,
    sink: Sink,
    bytes: u64,
}

enum Sink {
    /// Moved into the blocking pool for each write, and back.
    Local(Option<StagedFile>),
    Store(BufWriter),
}

impl PartWriter {
    /// Starts writing the part at `target` (a local part removes what earlier attempts at it
    /// staged).
    pub async fn create(target: Location) -> Result<Self, DataError> {
        let sink = match target.target() {
            Target::Local(path) => Sink::Local(Some(StagedFile::create(&target, path).await?)),
            Target::Remote { store, path, .. } => Sink::Store(BufWriter::with_capacity(
                store.clone(),
                path.clone(),
                BUFFER,
            )),
        };
        Ok(Self {
            target,
            sink,
            bytes: 0,
        })
    }

    /// Where the part goes.
    pub fn location(&self) -> &str {
        self.target.text()
    }

    /// Appends `bytes`.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), DataError> {
        self.bytes += bytes.len() as u64;
        match &mut self.sink {
            Sink::Local(slot) => {
                let mut file = slot.take().ok_or_else(|| {
                    DataError::invalid(self.target.text(), "the part failed earlier")
                })?;
                let (file, result) = tokio::task::spawn_blocking(move || {
                    let result = file.write(&bytes);
                    (file, result)
                })
                .await
                .map_err(|e| {
                    DataError::invalid(self.target.text(), format!("file work stopped: {e}"))
                })?;
                *slot = Some(file);
                result
            }
            Sink::Store(writer) => writer
                .put(bytes)
                .await
                .map_err(|e| DataError::store(self.target.text(), "cannot write the part", e)),
        }
    }

    /// Makes the part visible, whole; returns its size.
    pub async fn finish(self) -> Result<u64, DataError> {
        match self.sink {
            Sink::Local(file) => {
                let file = file.ok_or_else(|| {
                    DataError::invalid(self.target.text(), "the part failed earlier")
                })?;
                tokio::task::spawn_blocking(move || file.finish())
                    .await
                    .map_err(|e| {
                        DataError::invalid(self.target.text(), format!("file work stopped: {e}"))
                    })??;
            }
            Sink::Store(mut writer) => {
                use tokio::io::AsyncWriteExt as _;
                writer.shutdown().await.map_err(|e| {
                    DataError::invalid(self.target.text(), format!("cannot complete the part: {e}"))
                })?;
            }
        }
        Ok(self.bytes)
    }

    /// Gives up: nothing becomes visible.
    pub async fn abort(self) {
        match self.sink {
            Sink::Local(file) => {
                if let Some(file) = file {
                    let _ = tokio::task::spawn_blocking(move || file.abort()).await;
                }
            }
            Sink::Store(mut writer) => {
                let _ = writer.abort().await;
            }
        }
    }
}

/// Writes `bytes` to `target`, whole or not at all (the manifest).
pub async fn put(target: &Location, bytes: Vec<u8>) -> Result<(), DataError> {
    match target.target() {
        Target::Local(_) => {
            let mut part = PartWriter::create(target.clone()).await?;
            part.write(bytes.into()).await?;
            part.finish().await.map(|_| ())
        }
        Target::Remote { store, path, .. } => store
            .put(path, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| DataError::store(target.text(), "cannot write", e)),
    }
}

/// The whole object at `target` (the starter's read of a failed-items part, tests).
pub async fn get(target: &Location) -> Result<Bytes, DataError> {
    let (store, path) = match target.target() {
        Target::Local(path) => return crate::local::get(target, path).await,
        Target::Remote { store, path, .. } => (store, path),
    };
    let result = store
        .get(path)
        .await
        .map_err(|e| DataError::store(target.text(), "cannot read", e))?;
    result
        .bytes()
        .await
        .map_err(|e| DataError::store(target.text(), "cannot read", e))
}

/// Once every part of an output is in place: removes what unfinished attempts staged in the
/// output directory `dir` (local outputs; an object store shows no unfinished upload).
pub async fn remove_staging(dir: &Location) -> Result<(), DataError> {
    match dir.target() {
        Target::Local(path) => crate::local::remove_staging(dir, path).await,
        Target::Remote { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::Authority;

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("no error")
            .map(|e| {
                e.expect("no error")
                    .file_name()
                    .into_string()
                    .expect("no error")
            })
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_part_appears_whole_and_a_rewrite_replaces_it() {
        let dir = tempfile::tempdir().expect("no error");
        let out = Location::open(
            dir.path().join("out").to_str().expect("no error"),
            Authority::User,
        )
        .expect("no error");
        let part = out.child("part-1");
        let mut writer = PartWriter::create(part.clone()).await.expect("no error");
        writer
            .write(Bytes::from_static(b"one\n"))
            .await
            .expect("no error");
        writer
            .write(Bytes::from(vec![b'x'; BUFFER]))
            .await
            .expect("no error");
        assert_eq!(
            names(&dir.path().join("out")),
            [".staging"],
            "nothing visible"
        );
        assert_eq!(writer.finish().await.expect("no error"), 4 + BUFFER as u64);
        assert_eq!(get(&part).await.expect("no error").len(), 4 + BUFFER);
        let mut again = PartWriter::create(part.clone()).await.expect("no error");
        again
            .write(Bytes::from_static(b"two\n"))
            .await
            .expect("no error");
        again.finish().await.expect("no error");
        assert_eq!(&get(&part).await.expect("no error")[..], b"two\n");
        let mut dropped = PartWriter::create(out.child("part-2"))
            .await
            .expect("no error");
        dropped
            .write(Bytes::from_static(b"never\n"))
            .await
            .expect("no error");
        dropped.abort().await;
        assert!(names(&dir.path().join("out/.staging")).is_empty());
        remove_staging(&out).await.expect("no error");
        assert_eq!(
            names(&dir.path().join("out")),
            ["part-1"],
            "no staging left"
        );
    }

    #[tokio::test]
    async fn a_new_attempt_removes_what_a_killed_one_staged() {
        let dir = tempfile::tempdir().expect("no error");
        let out = Location::open(dir.path().to_str().expect("no error"), Authority::User)
            .expect("no error");
        // A killed attempt's staged file (never finished, never aborted).
        let mut killed = PartWriter::create(out.child("part-1"))
            .await
            .expect("no error");
        killed
            .write(Bytes::from(vec![b'k'; 2 * 1024 * 1024]))
            .await
            .expect("no error");
        std::mem::forget(killed);
        assert_eq!(names(&dir.path().join(".staging")).len(), 1);
        let mut other = PartWriter::create(out.child("part-10"))
            .await
            .expect("no error");
        other
            .write(Bytes::from_static(b"x\n"))
            .await
            .expect("no error");
        let mut retry = PartWriter::create(out.child("part-1"))
            .await
            .expect("no error");
        let staged = names(&dir.path().join(".staging"));
        let of = |name: &str| staged.iter().filter(|n| n.starts_with(name)).count();
        assert_eq!(
            (staged.len(), of("part-1."), of("part-10.")),
            (2, 1, 1),
            "the killed attempt's file is gone: {staged:?}"
        );
        retry
            .write(Bytes::from_static(b"r\n"))
            .await
            .expect("no error");
        retry.finish().await.expect("no error");
        other.finish().await.expect("no error");
        remove_staging(&out).await.expect("no error");
        assert_eq!(names(dir.path()), ["part-1", "part-10"]);
    }
}
