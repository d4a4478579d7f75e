//! The on-disk, content-addressed plugin store:
//!
//! - `sources/<digest>.wasm`: every plugin version the worker has loaded, so a batch pinned to a
//!   digest can still run after its file was replaced and the worker restarted;
//! - `compiled/<digest>-<engine>.cwasm`: the machine code wasmtime produced for it, keyed by the
//!   engine's compatibility hash (wasmtime version and settings), so a restarted worker loads a
//!   plugin in about a millisecond instead of compiling it again. A `.sha256` file beside each
//!   artifact is checked before the artifact is used.
//!
//! The cache is an optimisation and a convenience: if it cannot be written (read-only disk),
//! the worker logs it and compiles in memory as before.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::module::sha256_hex;

pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir: dir.into(),
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn source_path(&self, digest: &str) -> PathBuf {
        self.dir.join("sources").join(format!("{digest}.wasm"))
    }

    fn compiled_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("compiled")
            .join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The bytes of version `digest`, if the cache holds them intact.
    pub fn source(&self, digest: &str) -> Option<Vec<u8>> {
        let bytes = fs::read(self.source_path(digest)).ok()?;
        (sha256_hex(&bytes) == digest).then_some(bytes)
    }

    pub fn store_source(&self, digest: &str, bytes: &[u8]) {
        let path = self.source_path(digest);
        if !path.exists() {
            report(write_atomically(&path, bytes), &path);
        }
    }

    /// The precompiled component for `digest`, if present and intact.
    pub fn compiled(&self, digest: &str, engine: &Engine) -> Option<Component> {
        let path = self.compiled_path(digest);
        let bytes = fs::read(&path).ok()?;
        let expected = fs::read_to_string(path.with_extension("sha256")).ok()?;
        if sha256_hex(&bytes) != expected.trim() {
            tracing::warn!(path = %path.display(), "ignoring a corrupt precompiled plugin");
            return None;
        }
        deserialize(engine, &bytes)
            .map_err(
                |e| tracing::warn!(path = %path.display(), "ignoring a precompiled plugin: {e:#}"),
            )
            .ok()
    }

    pub fn store_compiled(&self, digest: &str, component: &Component) {
        let path = self.compiled_path(digest);
        let stored = component.serialize().and_then(|bytes| {
            // The checksum goes first: an artifact is only trusted once its checksum exists.
            write_atomically(
                &path.with_extension("sha256"),
                sha256_hex(&bytes).as_bytes(),
            )?;
            write_atomically(&path, &bytes)?;
            Ok(())
        });
        report(stored, &path);
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the bytes come from `Component::serialize` of a
    // compatible engine. They do: this cache only ever holds what `store_compiled` wrote, the
    // file name carries the engine's compatibility hash, wasmtime checks its own header and
    // version, and the content was just verified against the checksum written beside it, so a
    // truncated or altered file is rejected before it gets here.
    unsafe { Component::deserialize(engine, bytes) }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> wasmtime::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path)?;
    Ok(())
}

fn report(result: wasmtime::Result<()>, path: &Path) {
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), "cannot write to the plugin cache: {e:#}");
    }
}
