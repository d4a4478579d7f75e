//! The on-disk, content-addressed plugin store:
//!
//! - `sources/<digest>.wasm`: every plugin version the worker has loaded, so a batch pinned to a
//!   digest can still run after its file was replaced and the worker restarted. Checked against
//!   the digest on every read, so nobody can change what a digest is.
//! - `sources/<digest>.<key>.sig`: a trusted key's signature of a version, kept once verified
//!   so the version is admitted again without the plugin store (and verified again then).
//! - `compiled/<digest>-<engine>.cwasm`: the machine code wasmtime produced for it, keyed by the
//!   engine's compatibility hash (wasmtime version and settings), so a restarted worker loads a
//!   plugin in about a millisecond instead of compiling it again.
//!
//! Compiled artifacts are native code that wasmtime maps and runs without checking it, so
//! only what this worker wrote may ever be deserialized. Two independent guards:
//!
//! 1. The directory is private: created `0700`, and refused when it is writable by group or
//!    others or owned by another user ([`CacheError::Unsafe`]). By default it lives in the
//!    user's cache directory, never inside the plugins directory, whose writers are trusted
//!    only to publish plugin *files*.
//! 2. Every artifact carries an HMAC-SHA256 tag (`.tag` beside it) over its digest, engine key
//!    and bytes, keyed by a random secret (`key`, mode `0600`) that only this user can read. A
//!    forged or swapped artifact (another plugin's real one included) fails the tag and is
//!    compiled from source instead, with a warning saying why.
//!
//! The cache is an optimisation: if it cannot be written (read-only disk), the worker logs it
//! and compiles in memory as before. wasmtime's own compilation cache (`wasmtime-cache`) is not
//! used: it neither authenticates its entries nor checks its directory's ownership.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::digest::PluginBytes;

/// Why a cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "refusing plugin cache directory {dir}: {reason}; compiled code there would be run as \
         native code, so it must be private to this user (use --cache-dir elsewhere, or \
         --no-cache)"
    )]
    Unsafe { dir: PathBuf, reason: String },
    #[error("cannot prepare plugin cache directory {dir}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
    key: [u8; 32],
}

/// The default cache directory: `$XDG_CACHE_HOME/batch-worker/plugins`, else
/// `$HOME/.cache/batch-worker/plugins`; `None` when neither variable is set.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("batch-worker").join("plugins"))
}

impl ArtifactCache {
    /// Opens (creating it `0700` if needed) the cache in `dir`, after checking that only this
    /// user can write it, and loads or creates its secret key.
    pub fn open(dir: impl Into<PathBuf>, engine: &Engine) -> Result<Self, CacheError> {
        let dir = dir.into();
        let io = |source| CacheError::Io {
            dir: dir.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        for sub in ["sources", "compiled"] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir.join(sub))
                .map_err(io)?;
            ensure_private_dir(&dir.join(sub))?;
        }
        ensure_private_dir(&dir)?;
        let key = load_or_create_key(&dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
            key,
        })
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
    pub fn source(&self, digest: &str) -> Option<PluginBytes> {
        let bytes = PluginBytes::new(fs::read(self.source_path(digest)).ok()?);
        (bytes.digest() == digest).then_some(bytes)
    }

    pub fn store_source(&self, digest: &str, bytes: &[u8]) {
        let path = self.source_path(digest);
        if !path.exists() {
            report(write_atomically(&path, bytes), &path);
        }
    }

    fn signature_path(&self, digest: &str, key: &str) -> PathBuf {
        self.dir.join("sources").join(format!("{digest}.{key}.sig"))
    }

    /// Key `key`'s signature of version `digest` as this worker stored it after verifying it
    /// (verified again by the caller: the cache vouches for nothing).
    pub fn signature(&self, digest: &str, key: &str) -> Option<Vec<u8>> {
        use std::io::Read as _;
        let mut bytes = Vec::new();
        fs::File::open(self.signature_path(digest, key))
            .ok()?
            .take(super::signing::MAX_SIGNATURE_BYTES)
            .read_to_end(&mut bytes)
            .ok()?;
        Some(bytes)
    }

    pub fn store_signature(&self, digest: &str, key: &str, bytes: &[u8]) {
        let path = self.signature_path(digest, key);
        if !path.exists() {
            report(write_atomically(&path, bytes), &path);
        }
    }

    /// The tag that proves this worker wrote `bytes` as the compiled form of `digest`.
    fn tag(&self, digest: &str, bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(b"batch-worker compiled plugin v1\0");
        mac.update(digest.as_bytes());
        mac.update(b"\0");
        mac.update(self.engine_key.as_bytes());
        mac.update(b"\0");
        mac.update(bytes);
        mac
    }

    /// The precompiled component for `digest`, if present and written by this worker. Its
    /// tag is checked by streaming the file, then the file is mapped, not read into memory:
    /// the pages of code a plugin never runs need not be resident.
    pub fn compiled(&self, digest: &str, engine: &Engine) -> Option<Component> {
        let path = self.compiled_path(digest);
        let mac = match self.tag_of_file(digest, &path) {
            Ok(mac) => mac,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read a precompiled plugin ({e}); compiling from source");
                return None;
            }
        };
        let tag = fs::read_to_string(path.with_extension("tag")).unwrap_or_default();
        let genuine = hex::decode(tag.trim()).is_ok_and(|tag| mac.verify_slice(&tag).is_ok());
        if !genuine {
            tracing::warn!(
                path = %path.display(),
                "ignoring a precompiled plugin that this worker did not write (its \
                 authentication tag is missing or wrong); compiling from source"
            );
            return None;
        }
        deserialize_file(engine, &path)
            .map_err(
                |e| tracing::warn!(path = %path.display(), "ignoring a precompiled plugin: {e:#}"),
            )
            .ok()
    }

    /// [`Self::tag`] of the file at `path`, read in pieces.
    fn tag_of_file(&self, digest: &str, path: &Path) -> std::io::Result<Hmac<Sha256>> {
        let mut mac = self.tag(digest, &[]);
        let mut file = fs::File::open(path)?;
        let mut buffer = vec![0; 1 << 16];
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                return Ok(mac);
            }
            mac.update(&buffer[..read]);
        }
    }

    pub fn store_compiled(&self, digest: &str, component: &Component) {
        let path = self.compiled_path(digest);
        let stored = component.serialize().and_then(|bytes| {
            // The artifact first, then its tag: a reader that finds a tag finds its artifact.
            write_atomically(&path, &bytes)?;
            let tag = hex::encode(self.tag(digest, &bytes).finalize().into_bytes());
            write_atomically(&path.with_extension("tag"), tag.as_bytes())?;
            Ok(())
        });
        report(stored, &path);
    }
}

/// Refuses a directory that someone other than this user could write into.
fn ensure_private_dir(dir: &Path) -> Result<(), CacheError> {
    let unsafe_dir = |reason: String| CacheError::Unsafe {
        dir: dir.to_owned(),
        reason,
    };
    // Not following a symlink: the directory itself is checked.
    let meta = fs::symlink_metadata(dir).map_err(|source| CacheError::Io {
        dir: dir.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(unsafe_dir(
            "it is not a directory (a symlink or a file)".into(),
        ));
    }
    let me = current_uid();
    if meta.uid() != me {
        return Err(unsafe_dir(format!(
            "it is owned by uid {}, not by this worker's uid {me}",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "it is writable by group or others (mode {mode:03o})"
        )));
    }
    Ok(())
}

fn current_uid() -> u32 {
    // SAFETY-free: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid()
    }
}

/// The cache's secret: 32 random bytes in `key` (mode 0600), created once. Created under a
/// temporary name and hard-linked into place, so two workers starting at once agree on one key.
fn load_or_create_key(dir: &Path) -> Result<[u8; 32], CacheError> {
    let path = dir.join("key");
    let io = |source| CacheError::Io {
        dir: dir.to_owned(),
        source,
    };
    if !path.exists() {
        let mut secret = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut secret))
            .map_err(io)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".key")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(io)?;
        tmp.write_all(&secret).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        match fs::hard_link(tmp.path(), &path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
    }
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if !meta.is_file() || meta.uid() != current_uid() || mode & 0o077 != 0 || meta.len() != 32 {
        return Err(CacheError::Unsafe {
            dir: dir.to_owned(),
            reason: format!(
                "its key file must be a 32-byte regular file owned by this user with mode 0600 \
                 (found mode {mode:03o}, uid {}, {} bytes)",
                meta.uid(),
                meta.len()
            ),
        });
    }
    let mut key = [0u8; 32];
    file.read_exact(&mut key).map_err(io)?;
    Ok(key)
}

#[allow(unsafe_code)]
fn deserialize_file(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the file hold what `Component::serialize` of a
    // compatible engine wrote, and that it not change while mapped. It does: the artifact's
    // HMAC tag, keyed by a secret only this user can read and bound to the digest and engine
    // key, was just verified over the file's bytes, and the cache directory is private to this
    // user (created 0700, refused otherwise), who never rewrites an artifact in place (a new
    // one is renamed over it, leaving the mapped one intact); the file name carries the
    // engine's compatibility hash and wasmtime checks its own header and version.
    unsafe { Component::deserialize_file(engine, path) }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> wasmtime::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_or_world_writable_directory_is_refused() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().expect("dir");
        let cache = dir.path().join("cache");
        fs::create_dir(&cache).expect("mkdir");
        fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = ArtifactCache::open(&cache, &engine)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("writable by group or others (mode 777)"),
            "{err}"
        );
        fs::set_permissions(&cache, fs::Permissions::from_mode(0o700)).expect("chmod");
        let opened = ArtifactCache::open(&cache, &engine).expect("private dir");
        let key = fs::metadata(opened.dir().join("key")).expect("key");
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        assert_eq!(key.len(), 32);
    }

    #[test]
    fn a_new_directory_is_created_private_and_keeps_its_key() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().expect("dir");
        let cache = dir.path().join("a/b/cache");
        let first = ArtifactCache::open(&cache, &engine).expect("created");
        let mode = fs::metadata(&cache).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let second = ArtifactCache::open(&cache, &engine).expect("reopened");
        assert_eq!(first.key, second.key, "the key survives restarts");
        // The tag binds the digest: one plugin's genuine artifact is no other's.
        let a = first.tag("aa", b"code").finalize().into_bytes();
        let b = first.tag("bb", b"code").finalize().into_bytes();
        assert_ne!(a, b);
    }
}
