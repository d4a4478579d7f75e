//! A compiled, validated plugin version: compiled ([`super::compile`]) and linked under the
//! import policy ([`super::link`]) once, instantiated in a fresh store per call or per
//! session ([`super::session`]).

use std::path::Path;
use std::time::Duration;

use batch_core::text::shown_message;
use batch_core::{Format, PluginInput};
use wasmtime::{Store, Trap};

use super::cache::ArtifactCache;
use super::compile::{compile, stated_input};
use super::digest::PluginBytes;
use super::error::{ItemSpan, PluginError};
use super::interface::Interface;
use super::link::{Pre, link, reject_imports};
use super::sandbox::{SandboxedEngine, StoreState};

/// A compiled, validated plugin. Cheap to share; each call instantiates it in a fresh store.
pub struct LoadedPlugin {
    name: String,
    digest: String,
    size: u64,
    engine: SandboxedEngine,
    pre: Pre,
    /// What the component imports (WASI and wasi:http's client only: anything else is
    /// rejected).
    imports: Vec<String>,
    /// The items it takes, as it states them ([`batch_core::plugin_input`]); `None`: a v2
    /// plugin that does not say (it takes whatever a source gives).
    input: Option<PluginInput>,
    /// When it was last handed out (seconds since the Unix epoch), so the registry can drop
    /// versions nobody uses.
    used: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("size", &self.size)
            .field("interface", &self.interface())
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Compiles `bytes` (read from `path`, hashed once when read) as plugin `name`. Slow
    /// (milliseconds to seconds):
    /// call it once per digest and keep the result.
    /// With a cache, a version compiled before is loaded from disk instead of compiled again,
    /// and a newly compiled one is stored there.
    pub fn load(
        engine: &SandboxedEngine,
        cache: Option<&ArtifactCache>,
        name: &str,
        path: &Path,
        bytes: &PluginBytes,
    ) -> Result<Self, PluginError> {
        let invalid = |reason: String| PluginError::Invalid {
            name: name.to_owned(),
            path: path.to_owned(),
            reason,
        };
        let digest = bytes.digest().to_owned();
        let cached = cache.and_then(|c| c.compiled(&digest, engine.engine()));
        let component = match cached {
            Some(component) => component,
            None => compile(engine, bytes.bytes()).map_err(invalid)?,
        };
        let imports = reject_imports(&component, engine).map_err(invalid)?;
        let pre = link(&component, engine).map_err(invalid)?;
        let input = match pre {
            Pre::V1(_) => Some(PluginInput::Numbers),
            Pre::V2 { .. } => stated_input(bytes.bytes()).map_err(invalid)?,
        };
        if let Some(cache) = cache {
            cache.store_source(&digest, bytes.bytes());
            cache.store_compiled(&digest, &component);
        }
        Ok(Self {
            name: name.to_owned(),
            digest,
            size: bytes.len(),
            engine: engine.clone(),
            pre,
            imports,
            input,
            used: std::sync::atomic::AtomicU64::new(now_secs()),
        })
    }

    /// Records that the plugin is being used now.
    pub fn touch(&self) {
        self.used
            .store(now_secs(), std::sync::atomic::Ordering::Relaxed);
    }

    /// How long since it was last handed out.
    pub fn idle_for(&self) -> Duration {
        Duration::from_secs(
            now_secs().saturating_sub(self.used.load(std::sync::atomic::Ordering::Relaxed)),
        )
    }

    /// Its ready-to-instantiate code.
    pub(super) fn pre(&self) -> &Pre {
        &self.pre
    }

    /// The sandboxed engine the plugin runs in (its limits and call slots).
    pub fn engine(&self) -> &SandboxedEngine {
        &self.engine
    }

    /// The WASI interfaces it imports (empty for a plugin that imports nothing).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Whether it calls services (imports wasi:http): it runs only in batches granted hosts.
    pub fn calls_services(&self) -> bool {
        self.imports.iter().any(|i| super::http::is_http_import(i))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Lowercase hex sha256 of the file's bytes: the plugin version's identity.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The CPU deadline of each of its calls.
    pub fn cpu_deadline(&self) -> Duration {
        self.engine.limits().cpu_deadline
    }

    /// The items the plugin takes, if it says (v1 plugins take numbers).
    pub fn input(&self) -> Option<PluginInput> {
        self.input
    }

    /// Whether a batch over `source` (`None`: a range) gives the plugin the items it takes;
    /// checked before any item runs.
    pub fn check_input(&self, source: Option<Format>) -> Result<(), PluginError> {
        match self.input {
            Some(input) => input
                .accepts(source)
                .map_err(|reason| PluginError::WrongInput {
                    plugin: self.label(),
                    reason,
                }),
            None => Ok(()),
        }
    }

    pub fn interface(&self) -> Interface {
        match self.pre {
            Pre::V1(_) => Interface::V1,
            Pre::V2 { .. } => Interface::V2,
        }
    }

    /// Whether the plugin exports the optional `ranges` interface (v2: range blocks, outputs
    /// in columns), through which it gets range blocks.
    pub fn has_ranges(&self) -> bool {
        matches!(
            self.pre,
            Pre::V2 {
                ranges: Some(_),
                ..
            }
        )
    }

    /// Whether the plugin exports the optional `records` interface (v2: record blocks in one
    /// buffer, outputs in columns), through which it gets a data batch's records.
    pub fn has_records(&self) -> bool {
        matches!(
            self.pre(),
            Pre::V2 {
                records: Some(_),
                ..
            }
        )
    }

    /// The plugin's refusal of `item`, its words bounded and neutralised.
    pub(super) fn refused(&self, item: u64, message: &str) -> PluginError {
        PluginError::Refused {
            plugin: self.label(),
            item,
            message: shown_message(message),
        }
    }

    /// A failed call as the plugin's error: the deadline, results over the budget, or a trap.
    pub(super) fn call_error(&self, items: ItemSpan, e: wasmtime::Error) -> PluginError {
        // wasmtime names no type for it: its message says the hostcall fuel ran out.
        if format!("{e:#}").contains("fuel allocated for hostcalls has been exhausted") {
            PluginError::OutputTooLarge {
                plugin: self.label(),
                items,
                limit: self.engine.limits().memory_bytes,
            }
        } else if is_deadline(&e) {
            PluginError::Deadline {
                plugin: self.label(),
                items,
                limit_ms: self.engine.limits().cpu_deadline.as_millis(),
            }
        } else {
            PluginError::Trap {
                plugin: self.label(),
                items,
                source: e,
            }
        }
    }

    /// One call into the plugin on the items of `span` (`call`, on `store`): its CPU deadline
    /// armed first, what it printed logged after, its failure as the plugin's error.
    pub(super) fn guarded<T>(
        &self,
        store: &mut Store<StoreState>,
        span: ItemSpan,
        call: impl FnOnce(&mut Store<StoreState>) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        self.engine.arm_deadline(store);
        let outcome = call(store);
        self.log_output(store, &span);
        outcome.map_err(|e| self.call_error(span, e))
    }

    /// Sends what a WASI plugin wrote to stdout and stderr during the last call to the log.
    pub(super) fn log_output(&self, store: &mut Store<StoreState>, during: &dyn std::fmt::Display) {
        let Some(streams) = store.data_mut().take_output() else {
            return;
        };
        for (stream, captured) in streams {
            if captured.is_empty() {
                continue;
            }
            tracing::info!(
                target: "plugin_output",
                plugin = %self.label(),
                stream,
                %during,
                "{}",
                captured.shown()
            );
        }
    }

    /// `name@sha256:<digest>` for messages: exactly which module failed.
    pub fn label(&self) -> String {
        format!("{}@sha256:{}", self.name, self.digest)
    }
}

/// Whether a call stopped at its CPU deadline (the epoch interrupt), rather than trapping.
pub(super) fn is_deadline(e: &wasmtime::Error) -> bool {
    e.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
