//! The plugin host: plugins are WebAssembly components implementing `plugins/wit/plugin.wit`
//! (v1) or `plugins/wit/v2/plugin.wit` (v2), found by name in a directory, identified by the
//! sha256 of their bytes, compiled once and run in a fresh sandboxed store per call (a
//! `batch`-mode slice: one store for its blocks of items).
//!
//! - [`sandbox`]: the limits (CPU deadline, memory cap) and the engine that enforces them.
//! - [`interface`]: the two plugin interfaces, side by side.
//! - [`wasi`]: the deny-all WASI linked for plugins from mainstream toolchains.
//! - [`http`]: outbound HTTP, for batches granted hosts: grants, keys, bounds, pace, retries.
//! - [`digest`]: a version's identity, the sha256 of its bytes, computed once per read.
//! - [`compile`]: a file's bytes (component, core module, text) to compiled code.
//! - [`link`]: the import policy and the linker; which interface a plugin implements.
//! - [`module`]: a compiled, validated, ready-to-instantiate plugin version.
//! - [`session`]: a configured instance running blocks of items, v1 and v2 alike.
//! - [`record_buffer`]: records in one buffer, as a data split reads them and `records` takes them.
//! - [`columns`]: the `ranges` and `records` exports' outputs in columns, checked.
//! - [`registry`]: name -> digest -> compiled plugin, re-checked on every lookup.
//! - [`cache`]: every version's bytes and machine code on disk, by digest.
//! - [`store`]: versions published once for a fleet, fetched by digest on first use.
//! - [`signing`]: ed25519 signatures of versions; the keys a worker trusts.
//! - [`error`]: what can go wrong, and whether Temporal should retry it.

pub mod cache;
pub mod columns;
pub mod compile;
pub mod digest;
pub mod error;
pub mod http;
pub mod interface;
pub mod link;
pub mod module;
pub mod record_buffer;
pub mod registry;
pub mod sandbox;
pub mod session;
pub mod signing;
pub mod store;
pub mod wasi;

pub use batch_core::PluginInfo;
pub use digest::PluginBytes;
pub use error::{ItemSpan, PluginError};
pub use interface::{Interface, Item};
pub use module::LoadedPlugin;
pub use record_buffer::RecordBuffer;
pub use registry::PluginRegistry;
pub use sandbox::{SandboxLimits, SandboxedEngine};
pub use session::PluginSession;

/// A plugin file is `<name>.wasm` (binary) or `<name>.wat` (text) in the plugins directory;
/// when both exist the binary wins.
pub const PLUGIN_EXTENSIONS: [&str; 2] = ["wasm", "wat"];
