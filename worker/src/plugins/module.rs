//! From a file's bytes to a plugin ready to run: wrap, compile, check the interface, call.
//!
//! Accepted forms, so plugins can come from any language:
//! - a component (binary, or text `.wat` in the component format);
//! - a core module carrying the `batch:plugin` component type in a custom section, as
//!   `wit-bindgen` (Rust, C, ...) emits for `wasm32-unknown-unknown`: wrapped here with
//!   `wit-component`, so the output of `cargo build` can be dropped in as it is.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use batch_core::text::bounded_message;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, PoolConcurrencyLimitError, Trap};

use super::cache::ArtifactCache;
use super::error::PluginError;
use super::sandbox::{CallSlot, SandboxedEngine, StoreState};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../plugins/wit",
        world: "plugin",
    });
}

/// A compiled, validated plugin. Cheap to share; each call instantiates it in a fresh store.
pub struct LoadedPlugin {
    name: String,
    digest: String,
    size: u64,
    engine: SandboxedEngine,
    pre: bindings::PluginPre<StoreState>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Compiles `bytes` (read from `path`) as plugin `name`. Slow (milliseconds): call it once
    /// per digest and keep the result.
    /// With a cache, a version compiled before is loaded from disk instead of compiled again,
    /// and a newly compiled one is stored there.
    pub fn load(
        engine: &SandboxedEngine,
        cache: Option<&ArtifactCache>,
        name: &str,
        path: &Path,
        bytes: &[u8],
    ) -> Result<Self, PluginError> {
        let invalid = |reason: String| PluginError::Invalid {
            name: name.to_owned(),
            path: path.to_owned(),
            reason,
        };
        let digest = sha256_hex(bytes);
        let cached = cache.and_then(|c| c.compiled(&digest, engine.engine()));
        let component = match cached {
            Some(component) => component,
            None => compile(engine, bytes).map_err(invalid)?,
        };
        reject_imports(&component, engine).map_err(invalid)?;
        let linker: Linker<StoreState> = Linker::new(engine.engine());
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("cannot be instantiated: {e:#}")))?;
        let pre = bindings::PluginPre::new(instance_pre)
            .map_err(|e| invalid(format!("does not implement {}: {e:#}", super::INTERFACE)))?;
        if let Some(cache) = cache {
            cache.store_source(&digest, bytes);
            cache.store_compiled(&digest, &component);
        }
        Ok(Self {
            name: name.to_owned(),
            digest,
            size: bytes.len() as u64,
            engine: engine.clone(),
            pre,
        })
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

    /// Runs the plugin on one item in a fresh store, after waiting for a call slot. Blocking:
    /// for tools and tests; the worker's activities use [`Self::call_with`].
    pub fn call(&self, item: u64) -> Result<u64, PluginError> {
        let mut slot = self.engine.call_slot_blocking();
        self.call_with(&mut slot, item)
    }

    /// Runs the plugin on one item in a fresh store, in the caller's call slot. Blocking (it
    /// runs wasm): call it from a blocking thread, never directly on the async runtime.
    pub fn call_with(&self, slot: &mut CallSlot, item: u64) -> Result<u64, PluginError> {
        let mut store = self.engine.new_store(slot);
        let plugin = self.instantiate(&mut store)?;
        let outcome = plugin.batch_plugin_compute().call_process(&mut store, item);
        self.outcome(item, outcome)
    }

    /// An instance kept for many calls: one store, one instantiation, each call still bound by
    /// the CPU deadline (re-armed per call) and the memory cap (for the whole session). Calls
    /// share the instance's memory, so use it only for a run of items of one batch, where the
    /// plugin's per-call isolation is traded for speed (about 100x less overhead per call).
    /// The session keeps `slot` until it is dropped.
    pub fn session(self: &Arc<Self>, mut slot: CallSlot) -> Result<PluginSession, PluginError> {
        let mut store = self.engine.new_store(&mut slot);
        let instance = self.instantiate(&mut store)?;
        Ok(PluginSession {
            plugin: self.clone(),
            store,
            instance,
            _slot: slot,
        })
    }

    /// Instantiates the plugin in `store`. A full engine-wide pool is the host's condition
    /// (retryable); anything else (a start function that traps, a component over the per-call
    /// limits) is the plugin's.
    fn instantiate(
        &self,
        store: &mut wasmtime::Store<StoreState>,
    ) -> Result<bindings::Plugin, PluginError> {
        self.pre.instantiate(store).map_err(|source| {
            if source.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
                PluginError::HostBusy { source }
            } else {
                PluginError::Instantiate {
                    plugin: self.label(),
                    source,
                }
            }
        })
    }

    fn outcome(
        &self,
        item: u64,
        outcome: wasmtime::Result<Result<u64, String>>,
    ) -> Result<u64, PluginError> {
        match outcome {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(message)) => Err(PluginError::Refused {
                plugin: self.label(),
                item,
                message: bounded_message(&message),
            }),
            Err(e) if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => {
                Err(PluginError::Deadline {
                    plugin: self.label(),
                    item,
                    limit_ms: self.engine.limits().cpu_deadline.as_millis(),
                })
            }
            Err(source) => Err(PluginError::Trap {
                plugin: self.label(),
                item,
                source,
            }),
        }
    }

    /// `name@sha256:<digest>` for messages: exactly which module failed.
    pub fn label(&self) -> String {
        format!("{}@sha256:{}", self.name, self.digest)
    }
}

/// See [`LoadedPlugin::session`].
pub struct PluginSession {
    plugin: Arc<LoadedPlugin>,
    // Field order is drop order: the store (and its pool slots) goes before the call slot.
    store: wasmtime::Store<StoreState>,
    instance: bindings::Plugin,
    _slot: CallSlot,
}

impl PluginSession {
    /// Runs the plugin on one item in this session's instance. Blocking, like
    /// [`LoadedPlugin::call`]. After a trap the instance is unusable: start a new session.
    pub fn call(&mut self, item: u64) -> Result<u64, PluginError> {
        self.plugin.engine.arm_deadline(&mut self.store);
        let outcome = self
            .instance
            .batch_plugin_compute()
            .call_process(&mut self.store, item);
        self.plugin.outcome(item, outcome)
    }
}

/// Wraps and compiles `bytes` on a thread of its own, giving up after the sandbox's compile
/// timeout. Cranelift cannot be interrupted: a compile that times out finishes in the
/// background and its result is dropped (the file is remembered as rejected until it changes).
fn compile(engine: &SandboxedEngine, bytes: &[u8]) -> Result<Component, String> {
    let timeout = engine.limits().compile_timeout;
    let (engine, bytes) = (engine.engine().clone(), bytes.to_vec());
    let (done, result) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("plugin-compile".into())
        .spawn(move || {
            // The receiver may have given up: nothing to do then.
            let _ = done.send(compile_now(&engine, &bytes));
        })
        .map_err(|e| format!("cannot start a compile thread: {e}"))?;
    match result.recv_timeout(timeout) {
        Ok(compiled) => compiled,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "compiling it took longer than the {} limit",
            human_duration(timeout)
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the compile thread panicked".into()),
    }
}

fn compile_now(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
    let component_bytes = to_component_bytes(bytes)?;
    Component::new(engine, &component_bytes)
        .map_err(|e| bounded_message(&format!("does not compile: {e:#}")))
}

fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn to_component_bytes(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        return wit_component::ComponentEncoder::default()
            .module(bytes)
            .and_then(|encoder| encoder.validate(true).encode())
            .map_err(|e| {
                format!(
                    "is a core module that cannot be wrapped as a component (build it with \
                     wit-bindgen against plugins/wit/plugin.wit): {e:#}"
                )
            });
    }
    if wasmparser::Parser::is_component(bytes) {
        return Ok(bytes.to_vec());
    }
    if bytes.starts_with(b"\0asm") {
        return Err("is WebAssembly of an unsupported version or layer".into());
    }
    // Text format: `Component::new` parses `.wat` itself (and names the line of a mistake).
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "not WebAssembly (no \\0asm header, and not text)".to_owned())?;
    if !text.trim_start().starts_with(['(', ';']) {
        return Err("not WebAssembly (no \\0asm header, and not WebAssembly text)".into());
    }
    Ok(bytes.to_vec())
}

/// The sandbox's first rule: a plugin gets nothing from the host. Name every import so the
/// author sees what to remove (typically WASI pulled in by `wasm32-wasip2`).
fn reject_imports(component: &Component, engine: &SandboxedEngine) -> Result<(), String> {
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(engine.engine())
        .map(|(name, _)| name.to_owned())
        .collect();
    if imports.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "imports {} but plugins may import nothing (no files, network, environment, clocks \
             or randomness); build for wasm32-unknown-unknown",
            imports.join(", ")
        ))
    }
}
