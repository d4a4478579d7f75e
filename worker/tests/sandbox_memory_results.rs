//! What the host copies out of a call is bounded like the call's memory: a v2 plugin answering
//! with 127 records that all point at one 1 MiB buffer (it holds 1 MiB; lifting its results
//! whole would copy 127 MiB) at memory caps of 4 and 64 MiB. Each call fails as the plugin's
//! (`PluginOutputTooLarge`), and the process's peak memory stays under the documented, logged
//! bound (`SandboxLimits::memory_bound`). Its own test binary, so no other test's allocations
//! count in the peak.

use std::sync::Arc;

mod common;

use batch_worker::plugins::{Item, PluginError, PluginRegistry, SandboxLimits, SandboxedEngine};

#[test]
fn aliased_results_are_copied_only_up_to_the_memory_cap() {
    // As the worker does first thing: freed results go back to two arenas, not one per thread.
    batch_worker::memory::limit_arenas();
    // Smaller cap first: the second measurement starts from the first's peak.
    for cap_mib in [4, 64] {
        let limits = SandboxLimits {
            memory_bytes: cap_mib << 20,
            ..common::MEMORY_BOUND_LIMITS
        };
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("alias.wat"),
            common::wat::aliasing_v2_wasi(127, 1 << 20),
        )
        .expect("write");
        let engine = SandboxedEngine::new(limits).expect("engine");
        let registry = Arc::new(PluginRegistry::open(dir.path(), engine, None).expect("registry"));
        let alias = registry.resolve("alias").expect("alias");
        let grown = common::peak_growth_with_callers(8, 4, move |i| {
            let slot = alias.engine().call_slot_blocking();
            let mut session = alias.session(slot, None).expect("an instance");
            let items = [Item {
                index: i + 1,
                data: None,
            }];
            let err = session.process_each(&items).expect_err("too much to copy");
            assert!(
                matches!(err, PluginError::OutputTooLarge { .. }),
                "{}",
                err.message()
            );
        });
        let callers = format!("8 callers of a plugin aliasing 127 x 1 MiB at a {cap_mib} MiB cap");
        common::assert_under_memory_bound(grown, &callers, limits);
    }
}
