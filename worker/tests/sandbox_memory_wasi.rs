//! The memory bound of `sandbox_memory.rs`, for a v2 plugin that imports WASI (`hostile_v2`,
//! built for wasm32-wasip2): eight callers at once, each growing its instance's memory until
//! the cap stops it. Its own test binary, so no other test's allocations count in the peak.

use std::sync::Arc;

mod common;

use batch_worker::plugins::{PluginRegistry, SandboxedEngine};
use common::built_plugin;

#[test]
fn a_wasi_plugin_hoarding_memory_stays_under_the_documented_bound() {
    let limits = common::MEMORY_BOUND_LIMITS;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy(
        built_plugin("test-plugins", "hostile_v2"),
        dir.path().join("hostile_v2.wasm"),
    )
    .expect("copy");
    let engine = SandboxedEngine::new(limits).expect("engine");
    let registry = Arc::new(PluginRegistry::open(dir.path(), engine, None).expect("registry"));
    let hoarder = registry.resolve("hostile_v2").expect("hostile_v2");
    // Items ending in 3 grow memory a MiB at a time until the cap traps them.
    let grown = common::peak_growth_with_callers(8, 4, move |i| {
        let err = hoarder.call(i * 10 + 3).expect_err("the cap stops it");
        assert!(err.message().contains("memory"), "{}", err.message());
    });
    let callers = format!(
        "8 callers of a WASI plugin hoarding up to {} MiB",
        limits.memory_bytes >> 20
    );
    common::assert_under_memory_bound(grown, &callers, limits);
}
