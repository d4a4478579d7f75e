//! The plugin host: plugins are WebAssembly components implementing
//! `plugins/wit/plugin.wit`, found by name in a directory, identified by the sha256 of their
//! bytes, compiled once and run in a fresh sandboxed store per call.
//!
//! - [`sandbox`]: the limits (CPU deadline, memory cap) and the engine that enforces them.
//! - [`module`]: turning a file's bytes into a validated, ready-to-instantiate plugin.
//! - [`registry`]: name -> digest -> compiled plugin, re-checked on every lookup.
//! - [`error`]: what can go wrong, and whether Temporal should retry it.

pub mod error;
pub mod module;
pub mod registry;
pub mod sandbox;

pub use error::PluginError;
pub use module::LoadedPlugin;
pub use registry::{PluginInfo, PluginRegistry};
pub use sandbox::{SandboxLimits, SandboxedEngine};

/// The interface version this worker implements (the package version in `plugin.wit`).
pub const INTERFACE: &str = "batch:plugin/compute@1.0.0";
/// A plugin file is `<name>.wasm` in the plugins directory.
pub const PLUGIN_EXTENSION: &str = "wasm";
