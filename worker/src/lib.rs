//! The worker: hosts the recursive batch workflow and runs leaf work in sandboxed wasm plugins.
//!
//! - [`workflow`]: the tree workflow (plan the node, fan out, merge).
//! - [`activities`]: resolve a plugin version; run the plugin on one item.
//! - [`plugins`]: the wasmtime host (registry, sandbox, loading and calling).

pub mod activities;
pub mod plugins;
pub mod workflow;
