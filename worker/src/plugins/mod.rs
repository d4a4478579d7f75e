//! The plugin host: plugins are WebAssembly components implementing
//! `plugins/wit/plugin.wit`, found by name in a directory, identified by the sha256 of their
//! bytes, compiled once and run in a fresh sandboxed store per call.
//!
//! - [`sandbox`]: the limits (CPU deadline, memory cap) and the engine that enforces them.
//! - [`module`]: turning a file's bytes into a validated, ready-to-instantiate plugin.
//! - [`registry`]: name -> digest -> compiled plugin, re-checked on every lookup.
//! - [`cache`]: every version's bytes and machine code on disk, by digest.
//! - [`error`]: what can go wrong, and whether Temporal should retry it.

pub mod cache;
pub mod error;
pub mod module;
pub mod registry;
pub mod sandbox;

pub use batch_core::PluginInfo;
pub use error::PluginError;
pub use module::{LoadedPlugin, PluginSession};
pub use registry::PluginRegistry;
pub use sandbox::{SandboxLimits, SandboxedEngine};

/// The interface version this worker implements (the package version in `plugin.wit`).
pub const INTERFACE: &str = "batch:plugin/compute@1.0.0";
/// A plugin file is `<name>.wasm` (binary) or `<name>.wat` (text) in the plugins directory;
/// when both exist the binary wins.
pub const PLUGIN_EXTENSIONS: [&str; 2] = ["wasm", "wat"];
