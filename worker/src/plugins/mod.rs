//! The plugin host: plugins are WebAssembly components implementing `plugins/wit/plugin.wit`
//! (v1) or `plugins/wit/v2/plugin.wit` (v2), found by name in a directory, identified by the
//! sha256 of their bytes, compiled once and run in a fresh sandboxed store per call (a
//! `batch`-mode slice: one store for its blocks of items).
//!
//! - [`sandbox`]: the limits (CPU deadline, memory cap) and the engine that enforces them.
//! - [`interface`]: the two plugin interfaces, side by side.
//! - [`wasi`]: the deny-all WASI linked for plugins from mainstream toolchains.
//! - [`module`]: turning a file's bytes into a validated, ready-to-instantiate plugin.
//! - [`registry`]: name -> digest -> compiled plugin, re-checked on every lookup.
//! - [`cache`]: every version's bytes and machine code on disk, by digest.
//! - [`error`]: what can go wrong, and whether Temporal should retry it.

pub mod cache;
pub mod error;
pub mod interface;
pub mod module;
pub mod registry;
pub mod sandbox;
pub mod wasi;

pub use batch_core::PluginInfo;
pub use error::{ItemSpan, PluginError};
pub use interface::{Interface, Item};
pub use module::{LoadedPlugin, PluginSession};
pub use registry::PluginRegistry;
pub use sandbox::{SandboxLimits, SandboxedEngine};

/// A plugin file is `<name>.wasm` (binary) or `<name>.wat` (text) in the plugins directory;
/// when both exist the binary wins.
pub const PLUGIN_EXTENSIONS: [&str; 2] = ["wasm", "wat"];
