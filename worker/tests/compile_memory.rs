//! Compiles take turns (`--plugin-compiles`, default 1): three new large plugins asked for at
//! once cost the worker the memory of one compile, not three (a compile takes about ten times
//! the plugin's size). Its own test binary, so no other test's allocations count in the peak.

use std::sync::Arc;

mod common;

use batch_worker::plugins::{PluginRegistry, SandboxLimits, SandboxedEngine};

/// A valid v1 plugin whose compile takes time and memory: `functions` functions of 400
/// arithmetic steps the optimizer cannot fold away; `seed` makes each plugin's bytes its own.
fn large_plugin(functions: usize, seed: usize) -> String {
    let mut extra = String::with_capacity(functions * 40_000);
    for f in 0..functions {
        extra.push_str(&format!("(func $f{f} (param $x i64) (result i64)\n"));
        for k in 0..400 {
            extra.push_str(&format!(
                "(local.set $x (i64.xor (i64.mul (local.get $x) (i64.const {})) (i64.rotl (local.get $x) (i64.const {}))))\n",
                2 * (seed * 7919 + f * 131 + k) + 1,
                k % 63 + 1
            ));
        }
        extra.push_str("(local.get $x))\n");
    }
    common::wat::component(
        "",
        "",
        &extra,
        "(drop (call $f0 (local.get $item))) (i32.const 0)",
        "",
    )
}

/// How much the process's peak memory grows while `plugins` (WebAssembly text, installed in a
/// plugins directory of their own) are all asked for at once from the registry, and the most
/// compiles seen running at once meanwhile.
fn peak_growth_loading(limits: SandboxLimits, plugins: &[String]) -> (u64, usize) {
    let dir = tempfile::tempdir().expect("dir");
    for (i, bytes) in plugins.iter().enumerate() {
        std::fs::write(dir.path().join(format!("large{i}.wat")), bytes).expect("write");
    }
    let engine = SandboxedEngine::new(limits).expect("engine");
    let registry = Arc::new(PluginRegistry::open(dir.path(), engine, None).expect("registry"));
    let before = common::peak_rss_kib();
    let threads: Vec<_> = (0..plugins.len())
        .map(|i| {
            let registry = registry.clone();
            std::thread::spawn(move || {
                registry.resolve(&format!("large{i}")).expect("compiles");
            })
        })
        .collect();
    let mut most = 0;
    while !threads.iter().all(std::thread::JoinHandle::is_finished) {
        most = most.max(registry.engine().compiles_running());
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for thread in threads {
        thread.join().expect("loader");
    }
    let grown = (common::peak_rss_kib() - before).max(0) as u64 * 1024;
    (grown, most)
}

#[test]
fn compiles_take_turns_so_three_cost_about_the_memory_of_one() {
    batch_worker::memory::limit_arenas();
    let limits = SandboxLimits {
        compile_timeout: std::time::Duration::from_secs(300),
        ..common::MEMORY_BOUND_LIMITS
    };
    // As the worker does: two arenas, freed memory handed back every second.
    batch_worker::memory::start_trimming();
    let (one, _) = peak_growth_loading(limits, &[large_plugin(300, 0)]);
    // The peak is a high-water mark: compiles one after the other add little to the first's
    // (their files, read while they wait their turn); three at once would add two compiles.
    let plugins: Vec<String> = (1..=3).map(|s| large_plugin(300, s)).collect();
    let (three, most) = peak_growth_loading(limits, &plugins);
    println!(
        "peak memory: one compile +{} MiB; then three asked for at once +{} MiB more; at most \
         {most} compiling at once",
        one >> 20,
        three >> 20
    );
    assert_eq!(most, 1, "compiles took turns");
    assert!(
        one > 20 << 20,
        "the plugin is large enough to measure: {one}"
    );
    assert!(
        three < one,
        "three compiles at once grew the peak by {three} bytes more, one alone by {one}"
    );
}
