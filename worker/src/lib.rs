//! The worker: hosts the recursive batch workflow and runs leaf work in sandboxed wasm plugins.
//!
//! - [`workflow`]: the tree workflow (plan the node, fan out, merge).
//! - [`activities`]: resolve a plugin version; run the plugin on one item.
//! - [`memory`]: keeping resident memory at what is in use (glibc arenas, trimming).
//! - [`metrics`]: the worker's own Prometheus metrics (plugin calls, failures, latency).
//! - [`plugin_queues`]: one task queue per plugin held, for work a worker without it received.
//! - [`plugins`]: the wasmtime host (registry, sandbox, loading and calling).
//! - [`renewal`]: replacing the SDK worker every so many activities (an SDK leak).
//! - [`routing`]: failure kinds, what is retried, and running work on a plugin's own queue.

pub mod activities;
pub mod memory;
pub mod metrics;
pub mod plugin_queues;
pub mod plugins;
pub mod renewal;
pub mod routing;
pub mod workflow;
