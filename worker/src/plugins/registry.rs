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
//!
//! With a plugin store ([`super::store`]), a name published there resolves to the store's
//! current version (the directory serves the names the store does not have), and a pinned
//! version this worker lacks is fetched from the store on first use, checked against its
//! digest before it is compiled. With trusted keys ([`super::signing`]), every version is
//! admitted only with a valid signature by one of them, wherever its bytes came from: the
//! directory, the cache or the store.

use std::collections::{HashMap, HashSet};
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
use super::signing::TrustedKeys;
use super::store::{PluginStore, StoreError};
use super::{PLUGIN_EXTENSIONS, PluginError, SandboxedEngine};

/// How long a loaded version may go unused before [`PluginRegistry::unload_idle`] drops it.
pub const UNLOAD_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Bytes of a plugin file read by [`PluginRegistry::check`].
const CHECKED_BYTES: u64 = 64 << 10;

pub struct PluginRegistry {
    dir: PathBuf,
    engine: SandboxedEngine,
    cache: Option<ArtifactCache>,
    store: Option<PluginStore>,
    /// Empty: signatures are not required.
    trusted: TrustedKeys,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    by_digest: HashMap<String, Arc<LoadedPlugin>>,
    /// The version each name resolved to, and the file stamp it was read from.
    by_name: HashMap<String, NameEntry>,
    /// Files that failed to load, by name: not retried until they change.
    rejected: HashMap<String, (FileStamp, String)>,
    /// Held while a name's file, or a pinned version (`sha256:<digest>`), is read and
    /// compiled (see [`PluginRegistry::resolve`]).
    loading: HashMap<String, Arc<Mutex<()>>>,
    /// Versions whose signature was verified (with trusted keys only).
    admitted: HashSet<String>,
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
        Self::open_with_store(dir, engine, cache, None, TrustedKeys::default())
    }

    /// [`Self::open`] with a plugin store (then the directory may be missing: a worker can
    /// serve a fleet's plugins with none of its own) and the keys whose signatures admit a
    /// version (none: every version is admitted).
    pub fn open_with_store(
        dir: impl Into<PathBuf>,
        engine: SandboxedEngine,
        cache: Option<ArtifactCache>,
        store: Option<PluginStore>,
        trusted: TrustedKeys,
    ) -> Result<Self, PluginError> {
        let dir = dir.into();
        let registry = Self {
            dir,
            engine,
            cache,
            store,
            trusted,
            state: Mutex::new(State::default()),
        };
        if registry.store.is_some() && !registry.dir.exists() {
            return Ok(registry);
        }
        let dir = &registry.dir;
        let directory_error = |source: std::io::Error| PluginError::Directory {
            dir: dir.clone(),
            source,
        };
        let meta = fs::metadata(dir).map_err(directory_error)?;
        if !meta.is_dir() {
            return Err(directory_error(std::io::Error::new(
                ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        fs::read_dir(dir).map_err(directory_error)?;
        Ok(registry)
    }

    /// The ids of the keys whose signatures admit a version, comma-separated, or `(any
    /// version)` when signatures are not required.
    pub fn trusted_key_ids(&self) -> String {
        if self.trusted.is_empty() {
            return "(any version)".into();
        }
        self.trusted.ids().collect::<Vec<_>>().join(", ")
    }

    /// The plugin store, if this worker has one.
    pub fn store(&self) -> Option<&PluginStore> {
        self.store.as_ref()
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
        if let Some(store) = &self.store {
            match block_on(store.current(name)) {
                Ok(Some(published)) => {
                    return self.get(&PluginRef {
                        name: name.to_owned(),
                        digest: Some(published.digest),
                    });
                }
                Ok(None) => {}
                Err(source) => return Err(store_error(name, source)),
            }
        }
        self.resolve_file(name)
    }

    /// The current version of plugin `name`'s file in the directory (see [`Self::resolve`]).
    fn resolve_file(&self, name: &str) -> Result<Arc<LoadedPlugin>, PluginError> {
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
                // A missing signature may be published, and a store come back, without the
                // file changing: those are asked again next time.
                if !matches!(e, PluginError::Unsigned { .. } | PluginError::Store { .. }) {
                    state
                        .rejected
                        .insert(name.to_owned(), (stamp, reason_of(&e)));
                }
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

    /// Compiles the bytes of plugin `name`, unless this version is known; a new version only
    /// once admitted ([`Self::admit`]).
    fn load_bytes(
        &self,
        name: &str,
        path: &Path,
        bytes: PluginBytes,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        if let Some(known) = self.lock().by_digest.get(bytes.digest()) {
            return Ok(known.clone());
        }
        self.admit(name, bytes.digest())?;
        // Compiled outside the lock: it takes milliseconds and other lookups must not wait.
        LoadedPlugin::load(&self.engine, self.cache.as_ref(), name, path, &bytes).map(Arc::new)
    }

    /// Whether version `digest` may run here: always without trusted keys; with them, only
    /// with a valid signature by one of them, found in the store.
    fn admit(&self, name: &str, digest: &str) -> Result<(), PluginError> {
        if self.trusted.is_empty() || self.lock().admitted.contains(digest) {
            return Ok(());
        }
        let unsigned = |reason: String| PluginError::Unsigned {
            name: name.to_owned(),
            digest: digest.to_owned(),
            reason,
        };
        let Some(store) = &self.store else {
            return Err(unsigned("no plugin store holds its signatures".into()));
        };
        let mut refused = Vec::new();
        let mut unreachable = None;
        for id in self.trusted.ids() {
            // A signature verified before is in the cache and verifies again offline, so a
            // restarted worker runs what it ran while the store is out of reach.
            let cached = self.cache.as_ref().and_then(|c| c.signature(digest, id));
            let signature = match cached {
                Some(signature) if self.trusted.verify(id, digest, &signature).is_ok() => {
                    Some(signature)
                }
                _ => match block_on(store.signature(digest, id)) {
                    Ok(signature) => signature,
                    Err(e) => {
                        unreachable = Some(e);
                        continue;
                    }
                },
            };
            let Some(signature) = signature else {
                continue;
            };
            match self.trusted.verify(id, digest, &signature) {
                Ok(()) => {
                    if let Some(cache) = &self.cache {
                        cache.store_signature(digest, id, &signature);
                    }
                    self.lock().admitted.insert(digest.to_owned());
                    tracing::info!(plugin = name, %digest, key = id, "plugin version admitted: signed by a trusted key");
                    return Ok(());
                }
                Err(reason) => refused.push(reason),
            }
        }
        if let Some(e) = unreachable {
            return Err(store_error(name, e));
        }
        Err(unsigned(if refused.is_empty() {
            format!(
                "no signature by a trusted key ({}) in plugin store {}",
                self.trusted.ids().collect::<Vec<_>>().join(", "),
                store.text()
            )
        } else {
            refused.join("; ")
        }))
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
        validate_plugin_name(&plugin.name)?;
        batch_core::config::validate_digest(digest)?;
        // One load per version at a time: a new version's first leaves wait for one fetch and
        // compile instead of each doing their own.
        let key = format!("sha256:{digest}");
        let loading = self.loading_lock(&key);
        let loaded = {
            let _loading = loading.lock().unwrap_or_else(PoisonError::into_inner);
            // The state's lock is released before loading, which takes it again.
            let known = self.lock().by_digest.get(digest).map(used);
            match known {
                Some(loaded) => Ok(loaded),
                None => self.load_pinned(&plugin.name, digest),
            }
        };
        let mut state = self.lock();
        // Any digest may be asked for: the lock goes once nobody else waits on it.
        if Arc::strong_count(&loading) == 2 {
            state.loading.remove(&key);
        }
        let loaded = loaded?;
        Ok(state
            .by_digest
            .entry(digest.clone())
            .or_insert(loaded)
            .clone())
    }

    /// A version this worker process has not loaded yet: from the on-disk cache (it ran it
    /// before a restart), the current file if that is the pinned version, or the store.
    fn load_pinned(&self, name: &str, digest: &str) -> Result<Arc<LoadedPlugin>, PluginError> {
        let path = self.dir.join(format!("{name}@{digest}"));
        if let Some(bytes) = self.cache.as_ref().and_then(|c| c.source(digest)) {
            return self.load_bytes(name, &path, bytes);
        }
        let found = match self.path_of(name).map(|_| self.resolve_file(name)) {
            Some(Ok(current)) if current.digest() == digest => return Ok(current),
            Some(Ok(current)) => format!("sha256:{}", current.digest()),
            Some(Err(e)) => format!("no usable version ({})", e.message()),
            None => format!("no file {name}.wasm"),
        };
        let unavailable = |found: String| PluginError::DigestUnavailable {
            name: name.to_owned(),
            digest: digest.to_owned(),
            dir: self.dir.clone(),
            found,
        };
        let Some(store) = &self.store else {
            return Err(unavailable(found));
        };
        // With a store, a version it does not have is nowhere a fleet looks: the batch fails
        // here, naming it, rather than wait on the plugin's queue.
        let bytes = block_on(store.fetch(digest)).map_err(|e| store_error(name, e))?;
        self.load_bytes(name, Path::new(&store.blob_text(digest)), bytes)
    }

    /// Every plugin name in the directory (files `<name>.wasm` or `<name>.wat` with a valid
    /// name), sorted, without duplicates.
    pub fn names(&self) -> Result<Vec<String>, PluginError> {
        let entries = match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == ErrorKind::NotFound && self.store.is_some() => {
                return Ok(Vec::new());
            }
            entries => entries.map_err(|source| PluginError::Directory {
                dir: self.dir.clone(),
                source,
            })?,
        };
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

    /// Every plugin name in the store (none without a store), sorted.
    pub fn store_names(&self) -> Result<Vec<String>, PluginError> {
        match &self.store {
            Some(store) => block_on(store.names()).map_err(|e| store_error("*", e)),
            None => Ok(Vec::new()),
        }
    }

    /// Loads and describes every plugin in the directory and the store, usable or not.
    pub fn list(&self) -> Result<Vec<PluginInfo>, PluginError> {
        let mut names = self.names()?;
        names.extend(self.store_names()?);
        names.sort();
        names.dedup();
        Ok(names
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
        let listed = |names: Result<Vec<String>, PluginError>| match names {
            Ok(names) if names.is_empty() => "none".to_owned(),
            Ok(names) => names.join(", "),
            Err(e) => e.message(),
        };
        let mut available = listed(self.names());
        if let Some(store) = &self.store {
            let published = listed(self.store_names());
            available = format!("{available}; in plugin store {}: {published}", store.text());
        }
        let available = batch_core::text::bounded(&available, 2000);
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

/// Runs a store request from synchronous code, wherever the registry is called from: on a
/// multi-threaded runtime (the worker's blocking pool, or its main task) by blocking in place;
/// elsewhere (a tool, a single-threaded test runtime) on a thread of its own with its own
/// runtime, since blocking a single-threaded runtime's only thread would stop it.
fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        _ => std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for a store request")
                        .block_on(future)
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
    }
}

fn store_error(name: &str, source: StoreError) -> PluginError {
    PluginError::Store {
        name: name.to_owned(),
        source,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::SandboxLimits;
    use crate::plugins::signing::Signer;

    const TRIPLE: &str = include_str!("../../../plugins/wat/triple_wat.wat");

    /// A version of the `triple_wat` plugin: the same code, other bytes, another digest.
    fn version(n: u32) -> PluginBytes {
        PluginBytes::new(format!("{TRIPLE}\n;; version {n}\n").into_bytes())
    }

    fn open(plugins: &Path, cache: &Path, store: &Path, trusted: &Path) -> PluginRegistry {
        let engine = SandboxedEngine::new(SandboxLimits::default()).expect("engine");
        let cache = ArtifactCache::open(cache, engine.engine()).expect("cache");
        let store = PluginStore::open(store.to_str().expect("utf-8")).expect("store");
        let trusted = TrustedKeys::read(&[trusted.to_owned()]).expect("key");
        PluginRegistry::open_with_store(plugins, engine, Some(cache), Some(store), trusted)
            .expect("registry")
    }

    #[test]
    fn with_trusted_keys_only_signed_versions_load_from_the_store_the_directory_or_the_cache() {
        let scratch = tempfile::tempdir().expect("scratch");
        let at = |name: &str| scratch.path().join(name);
        fs::create_dir(at("plugins")).expect("plugins dir");
        Signer::generate(&at("k.key"), &at("k.pub")).expect("keys");
        let signer = Signer::read(&at("k.key")).expect("key");
        let store = PluginStore::open(at("store").to_str().expect("utf-8")).expect("store");
        block_on(store.publish("triple", &version(1), "test", Some(&signer))).expect("signed");
        block_on(store.publish("plain", &version(2), "test", None)).expect("unsigned");
        let registry = open(&at("plugins"), &at("cache"), &at("store"), &at("k.pub"));

        // Signed, published: resolved and loaded from the store.
        let signed = registry.resolve("triple").expect("a signed version runs");
        assert_eq!(signed.digest(), version(1).digest());
        // Unsigned, in the store or in the directory: refused, naming the digest.
        let Err(unsigned) = registry.resolve("plain") else {
            panic!("an unsigned version loaded");
        };
        assert!(
            matches!(unsigned, PluginError::Unsigned { .. }),
            "{}",
            unsigned.message()
        );
        assert!(
            unsigned.message().contains(version(2).digest()),
            "{}",
            unsigned.message()
        );
        fs::write(at("plugins").join("local.wat"), version(3).bytes()).expect("write");
        let Err(local) = registry.resolve("local") else {
            panic!("an unsigned file loaded");
        };
        assert!(
            matches!(local, PluginError::Unsigned { .. }),
            "{}",
            local.message()
        );
        // A version the store lacks: not found (not routed to a queue nobody polls).
        let absent = PluginRef {
            name: "triple".into(),
            digest: Some("0".repeat(64)),
        };
        let Err(missing) = registry.get(&absent) else {
            panic!("a missing version loaded");
        };
        assert!(
            matches!(
                &missing,
                PluginError::Store {
                    source: StoreError::Missing { .. },
                    ..
                }
            ),
            "{}",
            missing.message()
        );
        assert!(!crate::routing::is_routable(&missing));

        // Restarted with the store gone: the cached, once-verified version still runs; one it
        // never verified does not.
        drop(registry);
        fs::rename(at("store"), at("gone")).expect("the store goes away");
        let restarted = open(&at("plugins"), &at("cache"), &at("store"), &at("k.pub"));
        let pinned = PluginRef {
            name: "triple".into(),
            digest: Some(version(1).digest().to_owned()),
        };
        let again = restarted.get(&pinned).expect("from the cache, offline");
        assert_eq!(again.digest(), version(1).digest());
        assert!(restarted.resolve("local").is_err());
    }
}
