//! Shared by the plugin-host test binaries: where the built plugins are.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

/// A plugin installed by `scripts/build-plugins.sh` in `target/<dir>` (`plugins`, or
/// `test-plugins` for the fixtures): `<name>.wasm`, or `<name>.wat` for a text-format plugin.
pub fn built_plugin(dir: &str, name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let wasm = target.join(dir).join(format!("{name}.wasm"));
    let path = if wasm.exists() {
        wasm
    } else {
        target.join(dir).join(format!("{name}.wat"))
    };
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-plugins.sh and scripts/build-plugins.sh --fixtures",
        path.display()
    );
    path
}

pub mod hostile;
pub mod wat;

/// This process's peak resident memory (VmHWM), in KiB.
pub fn peak_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// How much this process's peak resident memory grows while `callers` threads each run
/// `call` `times` times at once, in bytes (the sandbox's memory bound is checked against it).
pub fn peak_growth_with_callers(
    callers: usize,
    times: u64,
    call: impl Fn(u64) + Send + Sync + Clone + 'static,
) -> u64 {
    call(0);
    let before = peak_rss_kib();
    let threads: Vec<_> = (0..callers)
        .map(|_| {
            let call = call.clone();
            std::thread::spawn(move || (0..times).for_each(&call))
        })
        .collect();
    for t in threads {
        t.join().expect("caller thread");
    }
    (peak_rss_kib() - before).max(0) as u64 * 1024
}

/// The limits of the memory-bound tests (`sandbox_memory*.rs`): a 32 MiB cap, two calls at once.
pub const MEMORY_BOUND_LIMITS: batch_worker::plugins::SandboxLimits =
    batch_worker::plugins::SandboxLimits {
        cpu_deadline: std::time::Duration::from_secs(5),
        memory_bytes: 32 << 20,
        calls_at_once: 2,
        compile_timeout: std::time::Duration::from_secs(60),
        compiles_at_once: 1,
        http_calls_at_once: 0,
    };

/// Prints how much the peak grew with `callers` (a description) and checks it against the
/// documented bound of `limits`.
pub fn assert_under_memory_bound(
    grown: u64,
    callers: &str,
    limits: batch_worker::plugins::SandboxLimits,
) {
    let bound = limits.memory_bound();
    println!(
        "peak RSS grew by {} MiB with {callers}; bound {} MiB",
        grown >> 20,
        bound >> 20
    );
    assert!(
        grown <= bound,
        "peak RSS grew by {grown} bytes, over the documented bound of {bound}"
    );
}
