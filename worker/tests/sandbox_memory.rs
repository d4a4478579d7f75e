//! Requirement 5 of the sandbox: the worker's plugin memory stays under the documented bound
//! (`SandboxLimits::memory_bound`) however many calls are asked for at once. Its own test
//! binary, so no other test's allocations count in the process's peak.

use std::sync::Arc;

mod common;

use batch_worker::plugins::{PluginRegistry, SandboxedEngine};

/// A plugin that grows its memory by `pages` pages and writes to every 4 KiB of it.
fn filler(pages: u32) -> String {
    common::wat::plugin(&format!(
        r#"(local $p i32) (local $end i32)
      (drop (memory.grow (i32.const {pages})))
      (local.set $end (i32.mul (memory.size) (i32.const 65536)))
      (local.set $p (i32.const 4096))
      (block $done
        (loop $touch
          (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
          (i32.store8 (local.get $p) (i32.const 1))
          (local.set $p (i32.add (local.get $p) (i32.const 4096)))
          (br $touch)))
      (i32.const 0)"#
    ))
}

#[test]
fn plugin_memory_stays_under_the_documented_bound_with_many_calls_at_once() {
    let limits = common::MEMORY_BOUND_LIMITS;
    let dir = tempfile::tempdir().expect("dir");
    let pages = (limits.memory_bytes / 65_536 - 1) as u32;
    std::fs::write(dir.path().join("filler.wat"), filler(pages)).expect("write");
    let engine = SandboxedEngine::new(limits).expect("engine");
    let registry = Arc::new(PluginRegistry::open(dir.path(), engine, None).expect("registry"));
    let filler = registry.resolve("filler").expect("filler");
    // Eight callers at once, each filling the whole per-call cap, again and again.
    let grown = common::peak_growth_with_callers(8, 6, move |item| {
        filler.call(item).expect("fits the cap");
    });
    let callers = format!("8 callers of a {} MiB plugin", limits.memory_bytes >> 20);
    common::assert_under_memory_bound(grown, &callers, limits);
    // And the bound is tight enough to mean something: eight full calls would exceed it.
    assert!(8 * limits.memory_bytes as u64 > limits.memory_bound());
}
