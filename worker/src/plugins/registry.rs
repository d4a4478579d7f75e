//! Plugins by name and by digest.
//!
//! A name maps to the file `<dir>/<name>.wasm` (or `.wat`); its version is the sha256 of the
//! file's bytes. Compiled plugins are kept by digest for the life of the worker, and their bytes
//! and machine code in the on-disk cache ([`super::cache`]), so a batch pinned to a digest keeps
//! running that exact module after the file is replaced, even across worker restarts, while new
//! batches resolve the name to the new file.
//!
//! A plugin is loaded on first use, not when the worker starts (a compiled interpreter takes
//! tens of MiB), and a version nobody has used for [`UNLOAD_AFTER`] is dropped from memory
//! when the worker has a cache to load it back from (see [`PluginRegistry::unload_idle`]): a
//! worker's memory follows the plugins it runs, not the ones installed.
//!
//! Lookups by name cost one `open` and `fstat`: the file is re-read and re-hashed only when its
//! size or modification time changed, so a plugin dropped into the directory is picked up by the next
//! batch without a restart, and nothing polls. A file that fails to load is reported (name and
//! reason) and never replaces a good version of the same name.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Read as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use batch_core::config::validate_plugin_name;
use batch_core::{PluginInfo, PluginRef};

use super::cache::ArtifactCache;
use super::digest::PluginBytes;
use super::module::LoadedPlugin;
use super::sandbox::MAX_PLUGIN_FILE_BYTES;
use super::{PLUGIN_EXTENSIONS, PluginError, SandboxedEngine};

/// How long a loaded version may go unused before [`PluginRegistry::unload_idle`] drops it.
pub const UNLOAD_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Bytes of a plugin file read by [`PluginRegistry::check`].
const CHECKED_BYTES: u64 = 64 << 10;

pub struct PluginRegistry {
    dir: PathBuf,
    engine: SandboxedEngine,
    cache: Option<ArtifactCache>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    by_digest: HashMap<String, Arc<LoadedPlugin>>,
    /// The version each name resolved to, and the file stamp it was read from.
    by_name: HashMap<String, NameEntry>,
    /// Files that failed to load, by name: not retried until they change.
    rejected: HashMap<String, (FileStamp, String)>,
    /// Held while a name's file is read and compiled (see [`PluginRegistry::resolve`]).
    loading: HashMap<String, Arc<Mutex<()>>>,
}

struct NameEntry {
    stamp: FileStamp,
    digest: String,
}

/// Cheap evidence that a file is unchanged since we hashed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

impl PluginRegistry {
    /// Opens the plugins directory (it must exist and be readable; it may be empty). With a
    /// cache, versions survive file replacements and restarts, and load without compiling.
    pub fn open(
        dir: impl Into<PathBuf>,
        engine: SandboxedEngine,
        cache: Option<ArtifactCache>,
    ) -> Result<Self, PluginError> {
        let dir = dir.into();
        let directory_error = |source: std::io::Error| PluginError::Directory {
            dir: dir.clone(),
            source,
        };
        let meta = fs::metadata(&dir).map_err(directory_error)?;
        if !meta.is_dir() {
            return Err(directory_error(std::io::Error::new(
                ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        fs::read_dir(&dir).map_err(directory_error)?;
        Ok(Self {
            dir,
            engine,
            cache,
            state: Mutex::new(State::default()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock that serializes loading plugin `name`.
    fn loading_lock(&self, name: &str) -> Arc<Mutex<()>> {
        self.lock()
            .loading
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// The current version of plugin `name`: the file as it is now, or, if the file changed
    /// into something that does not load, the last good version (the error is logged).
    pub fn resolve(&self, name: &str) -> Result<Arc<LoadedPlugin>, PluginError> {
        validate_plugin_name(name)?;
        let Some(path) = self.path_of(name) else {
            return Err(self.not_found(name));
        };
        let (file, stamp) = match open_plugin_file(&path) {
            Ok(opened) => opened,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(self.not_found(name)),
            Err(e) => {
                return Err(PluginError::Read {
                    name: name.to_owned(),
                    path,
                    source: e,
                });
            }
        };
        if let Some(known) = self.known(name, &path, stamp) {
            return known;
        }
        // One load per name at a time: callers asking for a plugin being compiled (the start-up
        // listing, the queue scan, a batch's resolve) wait for that compile instead of
        // repeating it (an interpreter's plugin takes ~20 s of a core); other names go on.
        let loading = self.loading_lock(name);
        let _loading = loading.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = self.known(name, &path, stamp) {
            return known;
        }
        let loaded = if stamp.len > MAX_PLUGIN_FILE_BYTES {
            // Refused from its size, without reading it (a sparse file costs nothing to make).
            Err(PluginError::Invalid {
                name: name.to_owned(),
                path: path.clone(),
                reason: format!(
                    "the file is {} bytes, over the {} MiB limit for a plugin",
                    stamp.len,
                    MAX_PLUGIN_FILE_BYTES >> 20
                ),
            })
        } else {
            // Bounded whatever the size said (procfs files say 0).
            self.read_and_load(name, &path, file)
        };
        self.remember(name, stamp, loaded)
    }

    /// What an unchanged file (same `stamp`) resolved to before: its version, or, if it was
    /// rejected, the last good version or the rejection. `None`: the file is new or changed.
    fn known(
        &self,
        name: &str,
        path: &Path,
        stamp: FileStamp,
    ) -> Option<Result<Arc<LoadedPlugin>, PluginError>> {
        let state = self.lock();
        if let Some((rejected_stamp, reason)) = state.rejected.get(name)
            && *rejected_stamp == stamp
        {
            return Some(
                self.last_good(&state, name)
                    .ok_or_else(|| PluginError::Invalid {
                        name: name.to_owned(),
                        path: path.to_owned(),
                        reason: reason.clone(),
                    }),
            );
        }
        let entry = state.by_name.get(name).filter(|e| e.stamp == stamp)?;
        state.by_digest.get(&entry.digest).map(used).map(Ok)
    }

    /// Records what file `stamp` of plugin `name` loaded to: a new version is kept (and
    /// logged); a failure is remembered until the file changes, and the last good version, if
    /// any, stays in service.
    fn remember(
        &self,
        name: &str,
        stamp: FileStamp,
        loaded: Result<Arc<LoadedPlugin>, PluginError>,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let mut state = self.lock();
        match loaded {
            Ok(plugin) => {
                let digest = plugin.digest().to_owned();
                let plugin = state
                    .by_digest
                    .entry(digest.clone())
                    .or_insert(plugin)
                    .clone();
                state.rejected.remove(name);
                let previous = state
                    .by_name
                    .insert(name.to_owned(), NameEntry { stamp, digest });
                if previous.is_none_or(|p| p.digest != plugin.digest()) {
                    tracing::info!(
                        plugin = name,
                        digest = plugin.digest(),
                        "plugin version loaded"
                    );
                }
                Ok(plugin)
            }
            Err(e) => {
                state
                    .rejected
                    .insert(name.to_owned(), (stamp, reason_of(&e)));
                match self.last_good(&state, name) {
                    Some(good) => {
                        tracing::error!(
                            plugin = name,
                            kept = good.digest(),
                            "{}; keeping the last good version",
                            e.message()
                        );
                        Ok(good)
                    }
                    None => Err(e),
                }
            }
        }
    }

    fn read_and_load(
        &self,
        name: &str,
        path: &Path,
        file: fs::File,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        match read_bounded(file, MAX_PLUGIN_FILE_BYTES) {
            Ok(bytes) => self.load_bytes(name, path, PluginBytes::new(bytes)),
            Err(e) if e.kind() == ErrorKind::FileTooLarge => Err(PluginError::Invalid {
                name: name.to_owned(),
                path: path.to_owned(),
                reason: e.to_string(),
            }),
            Err(e) => Err(PluginError::Read {
                name: name.to_owned(),
                path: path.to_owned(),
                source: e,
            }),
        }
    }

    /// Compiles the bytes of plugin `name`, unless this version is known.
    fn load_bytes(
        &self,
        name: &str,
        path: &Path,
        bytes: PluginBytes,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        if let Some(known) = self.lock().by_digest.get(bytes.digest()) {
            return Ok(known.clone());
        }
        // Compiled outside the lock: it takes milliseconds and other lookups must not wait.
        LoadedPlugin::load(&self.engine, self.cache.as_ref(), name, path, &bytes).map(Arc::new)
    }

    /// The version `plugin` is pinned to if this process has it in memory: no I/O, so it
    /// may be called on the async runtime. `None` means "ask [`Self::get`]".
    pub fn loaded(&self, plugin: &PluginRef) -> Option<Arc<LoadedPlugin>> {
        let digest = plugin.digest.as_ref()?;
        self.lock().by_digest.get(digest).map(used)
    }

    pub fn engine(&self) -> &SandboxedEngine {
        &self.engine
    }

    /// Where compiled versions are kept, if anywhere.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.as_ref().map(ArtifactCache::dir)
    }

    /// The exact version a batch is pinned to. Without a digest, the current version.
    pub fn get(&self, plugin: &PluginRef) -> Result<Arc<LoadedPlugin>, PluginError> {
        let Some(digest) = &plugin.digest else {
            return self.resolve(&plugin.name);
        };
        if let Some(loaded) = self.lock().by_digest.get(digest) {
            return Ok(used(loaded));
        }
        // A version this worker process has not loaded yet: from the on-disk cache (it ran it
        // before a restart), or from the current file if that is the pinned version.
        if let Some(bytes) = self.cache.as_ref().and_then(|c| c.source(digest)) {
            let path = self.dir.join(format!("{}@{digest}", plugin.name));
            let loaded = Arc::new(LoadedPlugin::load(
                &self.engine,
                self.cache.as_ref(),
                &plugin.name,
                &path,
                &bytes,
            )?);
            let mut state = self.lock();
            return Ok(state
                .by_digest
                .entry(digest.clone())
                .or_insert(loaded)
                .clone());
        }
        let unavailable = |found: String| PluginError::DigestUnavailable {
            name: plugin.name.clone(),
            digest: digest.clone(),
            dir: self.dir.clone(),
            found,
        };
        match self.resolve(&plugin.name) {
            Ok(current) if current.digest() == digest => Ok(current),
            Ok(current) => Err(unavailable(format!("sha256:{}", current.digest()))),
            Err(e) => Err(unavailable(format!("no usable version ({})", e.message()))),
        }
    }

    /// Every plugin name in the directory (files `<name>.wasm` or `<name>.wat` with a valid
    /// name), sorted, without duplicates.
    pub fn names(&self) -> Result<Vec<String>, PluginError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| PluginError::Directory {
            dir: self.dir.clone(),
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension()
                    .and_then(|ext| ext.to_str())
                    .is_some_and(|ext| PLUGIN_EXTENSIONS.contains(&ext))
            })
            .filter_map(|path| path.file_stem()?.to_str().map(str::to_owned))
            .filter(|name| validate_plugin_name(name).is_ok())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Checks plugin `name`'s file without compiling it, or even reading all of it: a regular
    /// file, within the size limit, whose start is WebAssembly (binary whose first sections
    /// parse, or text); what only compiling can find is found when the plugin is first used.
    /// For the worker's start-up report: cheap, and it keeps nothing in memory.
    pub fn check(&self, name: &str) -> Result<(), PluginError> {
        let path = self.path_of(name).ok_or_else(|| self.not_found(name))?;
        let read_error = |source| PluginError::Read {
            name: name.to_owned(),
            path: path.clone(),
            source,
        };
        let (file, stamp) = open_plugin_file(&path).map_err(read_error)?;
        let invalid = |reason: String| PluginError::Invalid {
            name: name.to_owned(),
            path: path.clone(),
            reason,
        };
        if stamp.len > MAX_PLUGIN_FILE_BYTES {
            return Err(invalid(format!(
                "the file is {} bytes, over the {} MiB limit for a plugin",
                stamp.len,
                MAX_PLUGIN_FILE_BYTES >> 20
            )));
        }
        let head = read_bounded(file, CHECKED_BYTES).or_else(|e| match e.kind() {
            // Longer than the head: its start is what is checked.
            ErrorKind::FileTooLarge => {
                let (file, _) = open_plugin_file(&path)?;
                let mut head = Vec::with_capacity(CHECKED_BYTES as usize);
                std::io::Read::take(file, CHECKED_BYTES).read_to_end(&mut head)?;
                Ok(head)
            }
            _ => Err(e),
        });
        let head = head.map_err(read_error)?;
        super::compile::check_start(&head, stamp.len).map_err(invalid)
    }

    /// Loads and describes every plugin in the directory, usable or not.
    pub fn list(&self) -> Result<Vec<PluginInfo>, PluginError> {
        Ok(self
            .names()?
            .into_iter()
            .map(|name| match self.resolve(&name) {
                Ok(p) => PluginInfo {
                    // A bad file that left the last good version in service is still reported.
                    error: self.lock().rejected.get(&name).map(|(_, reason)| {
                        format!("the current file is not a valid plugin ({reason}); serving the last good version")
                    }),
                    name,
                    digest: Some(p.digest().to_owned()),
                    interface: Some(p.interface().name().to_owned()),
                    input: p.input().map(|i| i.as_str().to_owned()),
                    size: Some(p.size()),
                },
                Err(e) => PluginInfo {
                    name,
                    digest: None,
                    interface: None,
                    input: None,
                    size: None,
                    error: Some(e.message()),
                },
            })
            .collect())
    }

    fn path_of(&self, name: &str) -> Option<PathBuf> {
        PLUGIN_EXTENSIONS
            .iter()
            .map(|ext| self.dir.join(format!("{name}.{ext}")))
            .find(|path| path.exists())
    }

    fn last_good(&self, state: &State, name: &str) -> Option<Arc<LoadedPlugin>> {
        let entry = state.by_name.get(name)?;
        state.by_digest.get(&entry.digest).map(used)
    }

    /// Drops from memory the versions nobody has used for `idle` and nobody holds (no batch
    /// is running them), when there is a cache to load them back from: a later use reloads
    /// the version from the cache (its precompiled code mapped, not compiled again). Without
    /// a cache nothing is dropped, since a replaced file's versions live only in memory.
    /// Returns how many versions were dropped.
    pub fn unload_idle(&self, idle: std::time::Duration) -> usize {
        if self.cache.is_none() {
            return 0;
        }
        let mut state = self.lock();
        let before = state.by_digest.len();
        state.by_digest.retain(|digest, plugin| {
            let keep = Arc::strong_count(plugin) > 1 || plugin.idle_for() < idle;
            if !keep {
                tracing::info!(plugin = plugin.name(), %digest, "plugin version unloaded (unused)");
            }
            keep
        });
        before - state.by_digest.len()
    }

    fn not_found(&self, name: &str) -> PluginError {
        let available = match self.names() {
            Ok(names) if names.is_empty() => "none".to_owned(),
            Ok(names) => names.join(", "),
            Err(e) => e.message(),
        };
        PluginError::NotFound {
            name: name.to_owned(),
            dir: self.dir.clone(),
            available,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a cache of immutable entries: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A loaded version handed out: its use recorded.
fn used(plugin: &Arc<LoadedPlugin>) -> Arc<LoadedPlugin> {
    plugin.touch();
    plugin.clone()
}

/// Opens a plugin file for reading, safely whatever is at `path`: only a regular file (or a
/// symlink to one) is opened for real. A FIFO, device, socket or directory is refused after a
/// `stat`, without opening it, and the opened handle is checked again with `fstat`, so the
/// file read is the file checked even if the path changed in between. `O_NONBLOCK` keeps even
/// that open from waiting on a FIFO swapped in at the last moment.
fn open_plugin_file(path: &Path) -> std::io::Result<(fs::File, FileStamp)> {
    use std::os::unix::fs::OpenOptionsExt;
    ensure_regular(&fs::metadata(path)?)?;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    ensure_regular(&meta)?;
    Ok((file, FileStamp::of(&meta)))
}

fn ensure_regular(meta: &fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let ty = meta.file_type();
    let what = if ty.is_file() {
        return Ok(());
    } else if ty.is_dir() {
        "a directory"
    } else if ty.is_fifo() {
        "a FIFO"
    } else if ty.is_socket() {
        "a socket"
    } else if ty.is_char_device() {
        "a character device"
    } else if ty.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    };
    Err(std::io::Error::new(
        ErrorKind::InvalidInput,
        format!("{what}, not a regular file: only regular files are read as plugins"),
    ))
}

/// The bytes of a plugin file, read as the registry reads them: regular files only, at most
/// [`MAX_PLUGIN_FILE_BYTES`] (for tools that load one file, like `batch-plugin`).
pub fn read_plugin_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let (file, _) = open_plugin_file(path)?;
    read_bounded(file, MAX_PLUGIN_FILE_BYTES)
}

/// Reads at most `max` bytes: the size a file reports is not trusted (procfs files report 0
/// and can stream gigabytes), so reading stops as soon as it passes `max`. Reads go in 64 KiB
/// chunks (aligned reads, which some procfs files require).
fn read_bounded(mut file: fs::File, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut chunk = vec![0u8; 64 << 10];
    let mut bytes = Vec::new();
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        bytes.extend_from_slice(&chunk[..n]);
        if bytes.len() as u64 > max {
            return Err(std::io::Error::new(
                ErrorKind::FileTooLarge,
                format!(
                    "the file is over the {} MiB limit for a plugin (read stopped there)",
                    max >> 20
                ),
            ));
        }
    }
}

fn reason_of(e: &PluginError) -> String {
    match e {
        PluginError::Invalid { reason, .. } => reason.clone(),
        other => other.message(),
    }
}
