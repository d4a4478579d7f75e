//! What the plugin host costs: `cargo bench --workspace --bench plugin_host` (after
//! `scripts/build-plugins.sh`). Prints, for the `square_number` plugin:
//!
//! - `load/cold`: a new plugin version: wrap as a component, compile, validate;
//! - `load/cached`: the same version after a worker restart, from the on-disk cache;
//! - `call/native`: the same function compiled into the host, for reference;
//! - `call/fresh_store_in_slot`: one isolated call, a new store and instance per item, in a
//!   call slot held throughout;
//! - `call/fresh_store`: the same, taking and giving back a call slot per item (per-item mode);
//! - `call/session`: a call in an instance reused across a run of items.
//!
//! Overhead of a call = its time minus `call/native`.
//!
//! And per item, for blocks of 4096 range items in one instance (what a `batch`-mode leaf
//! does), with criterion's throughput in items (time per item = 1 / throughput):
//!
//! - `block/native`: the square computed in the host, outputs collected and aggregated;
//! - `block/v1`: `square_number` (interface v1): one call per item;
//! - `block/v2_list`: `square_list` (interface v2, `compute.process` only, as a Python or
//!   JavaScript plugin): one call for the whole block, a list of results back;
//! - `block/v2`: `square_v2` (interface v2 built with the Rust SDK, which exports `ranges`):
//!   one call for the whole block, its outputs in columns.
//!
//! Host overhead per item in blocks = `block/v2` minus `block/native`. (`square_list` is a test
//! fixture: `scripts/build-plugins.sh --fixtures` too.)

use std::hint::black_box;
use std::path::{Path, PathBuf};

use batch_core::Outputs;
use batch_worker::plugins::cache::ArtifactCache;
use batch_worker::plugins::{LoadedPlugin, PluginBytes, SandboxLimits, SandboxedEngine};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn square_number_wasm() -> (PathBuf, PluginBytes) {
    built("square_number")
}

fn built(name: &str) -> (PathBuf, PluginBytes) {
    built_in("plugins", name)
}

/// A plugin built into `target/<dir>` (`plugins`, or `test-plugins` for fixtures).
fn built_in(dir: &str, name: &str) -> (PathBuf, PluginBytes) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join(format!("{dir}/{name}.wasm"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/build-plugins.sh first)",
            path.display()
        )
    });
    (path, PluginBytes::new(bytes))
}

fn native_square(item: u64) -> Result<u64, String> {
    item.checked_mul(item)
        .ok_or_else(|| format!("{item} squared overflows u64"))
}

fn benches(c: &mut Criterion) {
    let (path, bytes) = square_number_wasm();
    let engine = SandboxedEngine::new(SandboxLimits::default()).expect("engine");
    let cache_dir = tempfile::tempdir().expect("cache dir");
    let cache = ArtifactCache::open(cache_dir.path(), engine.engine()).expect("cache");
    // Fill the cache once so `load/cached` measures the restart path.
    LoadedPlugin::load(&engine, Some(&cache), "square_number", &path, &bytes).expect("load");

    let mut load = c.benchmark_group("load");
    load.sample_size(20);
    load.bench_function("cold", |b| {
        b.iter(|| LoadedPlugin::load(&engine, None, "square_number", &path, black_box(&bytes)))
    });
    load.bench_function("cached", |b| {
        b.iter(|| {
            LoadedPlugin::load(
                &engine,
                Some(&cache),
                "square_number",
                &path,
                black_box(&bytes),
            )
        })
    });
    load.finish();

    let plugin = std::sync::Arc::new(
        LoadedPlugin::load(&engine, None, "square_number", &path, &bytes).expect("load"),
    );
    let mut session = plugin
        .session(engine.call_slot_blocking(), None)
        .expect("session");
    let mut call = c.benchmark_group("call");
    let mut item = 0u64;
    call.bench_function("native", |b| {
        b.iter(|| {
            item = item.wrapping_add(1) & 0xffff;
            native_square(black_box(item))
        })
    });
    // The isolated call alone, in a slot held throughout: the same work as before call slots.
    let mut slot = engine.call_slot_blocking();
    call.bench_function("fresh_store_in_slot", |b| {
        b.iter(|| {
            item = item.wrapping_add(1) & 0xffff;
            plugin.call_with(&mut slot, None, black_box(item))
        })
    });
    drop(slot);
    // What an item activity does: take a call slot, run the item in a fresh store, give the
    // slot back.
    call.bench_function("fresh_store", |b| {
        b.iter(|| {
            item = item.wrapping_add(1) & 0xffff;
            let mut slot = engine.call_slot_blocking();
            plugin.call_with(&mut slot, None, black_box(item))
        })
    });
    call.bench_function("session", |b| {
        b.iter(|| {
            item = item.wrapping_add(1) & 0xffff;
            session.call(black_box(item))
        })
    });
    call.finish();
    drop(session);

    blocks(c, &engine);
}

/// Items per block in the `block` group: the host's largest block.
const BLOCK: usize = batch_core::blocks::MAX_BLOCK_ITEMS;

fn blocks(c: &mut Criterion, engine: &SandboxedEngine) {
    let load = |dir: &str, name: &str| {
        let (path, bytes) = built_in(dir, name);
        std::sync::Arc::new(LoadedPlugin::load(engine, None, name, &path, &bytes).expect("load"))
    };
    let v1 = load("plugins", "square_number");
    let v2_list = load("test-plugins", "square_list");
    let v2 = load("plugins", "square_v2");
    assert!(!v2_list.has_ranges() && v2.has_ranges());
    let mut group = c.benchmark_group("block");
    group.throughput(Throughput::Elements(BLOCK as u64));
    let mut first = 1u64;
    let mut next_first = || {
        first = if first > 1 << 30 {
            1
        } else {
            first + BLOCK as u64
        };
        first
    };
    group.bench_function("native", |b| {
        b.iter(|| {
            let from = next_first();
            let mut outputs = Outputs::default();
            let numbers: Vec<u64> = (from..from + BLOCK as u64)
                .map(|item| native_square(black_box(item)).expect("fits"))
                .collect();
            outputs.extend_numbers(&numbers);
            outputs
        })
    });
    for (name, plugin) in [("v1", &v1), ("v2_list", &v2_list), ("v2", &v2)] {
        let mut session = plugin
            .session(engine.call_slot_blocking(), None)
            .expect("session");
        let mut numbers = Vec::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                let from = next_first();
                let mut outputs = Outputs::default();
                session
                    .process_range_into(from, BLOCK, &mut outputs, &mut numbers, None)
                    .expect("block");
                outputs
            })
        });
    }
    group.finish();
}

criterion_group!(plugin_host, benches);
criterion_main!(plugin_host);
