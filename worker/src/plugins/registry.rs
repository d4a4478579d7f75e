//! Plugins by name and by digest.
//!
//! A name maps to the file `<dir>/<name>.wasm`; its version is the sha256 of the file's bytes.
//! Compiled plugins are kept by digest for the life of the worker (content-addressed), so a
//! batch pinned to a digest keeps running that exact module even after the file is replaced,
//! while new batches resolve the name to the new file. Lookups by name re-check the file's size
//! and modification time (one `stat`), and re-read and re-hash it only when they change: a
//! plugin dropped into the directory is picked up without restarting the worker.

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use batch_core::PluginRef;
use batch_core::config::validate_plugin_name;

use super::module::{LoadedPlugin, sha256_hex};
use super::{PLUGIN_EXTENSION, PluginError, SandboxedEngine};

/// A plugin as listed to users.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub digest: String,
    pub size: u64,
}

pub struct PluginRegistry {
    dir: PathBuf,
    engine: SandboxedEngine,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    by_digest: HashMap<String, Arc<LoadedPlugin>>,
    by_name: HashMap<String, NameEntry>,
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
    /// Opens the plugins directory (it must exist and be readable; it may be empty).
    pub fn open(dir: impl Into<PathBuf>, engine: SandboxedEngine) -> Result<Self, PluginError> {
        let dir = dir.into();
        let directory_error = |reason: String| PluginError::Directory {
            dir: dir.clone(),
            reason,
        };
        let meta = fs::metadata(&dir).map_err(|e| directory_error(e.to_string()))?;
        if !meta.is_dir() {
            return Err(directory_error("not a directory".into()));
        }
        fs::read_dir(&dir).map_err(|e| directory_error(e.to_string()))?;
        Ok(Self {
            dir,
            engine,
            state: Mutex::new(State::default()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current version of plugin `name`: the file as it is now.
    pub fn resolve(&self, name: &str) -> Result<Arc<LoadedPlugin>, PluginError> {
        validate_plugin_name(name)?;
        let path = self.path_of(name);
        let read_error = |reason: String| PluginError::Read {
            name: name.to_owned(),
            path: path.clone(),
            reason,
        };
        let meta = match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return Err(read_error("not a regular file".into())),
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(self.not_found(name)),
            Err(e) => return Err(read_error(e.to_string())),
        };
        let stamp = FileStamp::of(&meta);
        {
            let state = self.lock();
            if let Some(entry) = state.by_name.get(name)
                && entry.stamp == stamp
                && let Some(plugin) = state.by_digest.get(&entry.digest)
            {
                return Ok(plugin.clone());
            }
        }
        let bytes = fs::read(&path).map_err(|e| read_error(e.to_string()))?;
        let digest = sha256_hex(&bytes);
        let known = self.lock().by_digest.get(&digest).cloned();
        let plugin = match known {
            Some(plugin) => plugin,
            // Compile outside the lock: it takes milliseconds and other lookups must not wait.
            None => Arc::new(LoadedPlugin::load(&self.engine, name, &path, &bytes)?),
        };
        let mut state = self.lock();
        let plugin = state
            .by_digest
            .entry(digest.clone())
            .or_insert(plugin)
            .clone();
        state
            .by_name
            .insert(name.to_owned(), NameEntry { stamp, digest });
        tracing::info!(plugin = name, digest = plugin.digest(), "plugin loaded");
        Ok(plugin)
    }

    /// The exact version a batch is pinned to. Without a digest, the current version.
    pub fn get(&self, plugin: &PluginRef) -> Result<Arc<LoadedPlugin>, PluginError> {
        let Some(digest) = &plugin.digest else {
            return self.resolve(&plugin.name);
        };
        if let Some(loaded) = self.lock().by_digest.get(digest) {
            return Ok(loaded.clone());
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
            Err(e) => Err(unavailable(format!("no usable version ({e})"))),
        }
    }

    /// Every `*.wasm` file's plugin name in the directory, sorted.
    pub fn names(&self) -> Result<Vec<String>, PluginError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| PluginError::Directory {
            dir: self.dir.clone(),
            reason: e.to_string(),
        })?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == PLUGIN_EXTENSION))
            .filter_map(|path| path.file_stem()?.to_str().map(str::to_owned))
            .filter(|name| validate_plugin_name(name).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Loads and lists every plugin in the directory; files that fail to load are returned
    /// as errors beside the good ones.
    pub fn list(&self) -> Result<Vec<Result<PluginInfo, PluginError>>, PluginError> {
        Ok(self
            .names()?
            .into_iter()
            .map(|name| {
                self.resolve(&name).map(|p| PluginInfo {
                    name,
                    digest: p.digest().to_owned(),
                    size: p.size(),
                })
            })
            .collect())
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.{PLUGIN_EXTENSION}"))
    }

    fn not_found(&self, name: &str) -> PluginError {
        let available = match self.names() {
            Ok(names) if names.is_empty() => "none".to_owned(),
            Ok(names) => names.join(", "),
            Err(e) => e.to_string(),
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
