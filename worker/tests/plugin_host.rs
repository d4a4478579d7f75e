//! The plugin host without a Temporal server: loading, validation, the sandbox's limits and
//! version pinning, against real plugins built by `scripts/build-plugins.sh` (both the real
//! ones and the `--fixtures`).

use std::time::Duration;

mod common;

use batch_core::PluginRef;
use batch_worker::plugins::cache::ArtifactCache;
use batch_worker::plugins::{PluginRegistry, SandboxLimits, SandboxedEngine};
use common::built_plugin;

const LIMITS: SandboxLimits = SandboxLimits {
    cpu_deadline: Duration::from_millis(200),
    memory_bytes: 16 << 20,
    calls_at_once: 2,
    compile_timeout: Duration::from_secs(120),
    compiles_at_once: 1,
    http_calls_at_once: 0,
};

/// A scratch plugins directory holding copies of the named built plugins.
struct Scratch {
    dir: tempfile::TempDir,
    registry: PluginRegistry,
}

fn scratch(plugins: &[(&str, &str)]) -> Scratch {
    scratch_with(LIMITS, plugins)
}

fn scratch_with(limits: SandboxLimits, plugins: &[(&str, &str)]) -> Scratch {
    let dir = tempfile::tempdir().expect("temp dir");
    for (from, name) in plugins {
        let built = built_plugin(from, name);
        let file = built.file_name().expect("file name").to_owned();
        std::fs::copy(built, dir.path().join(file)).expect("copy plugin");
    }
    let engine = SandboxedEngine::new(limits).expect("engine");
    let registry = PluginRegistry::open(dir.path(), engine, None).expect("registry");
    Scratch { dir, registry }
}

#[test]
fn real_plugins_compute_their_outputs() {
    let s = scratch(&[("plugins", "square_number"), ("plugins", "cube")]);
    let square = s
        .registry
        .resolve("square_number")
        .expect("square_number loads");
    let cube = s.registry.resolve("cube").expect("cube loads");
    assert_eq!(square.call(12).expect("12^2"), 144);
    assert_eq!(cube.call(12).expect("12^3"), 1728);
    assert_eq!(
        square.call(u64::from(u32::MAX)).expect("fits"),
        18446744065119617025
    );
    let err = square
        .call(u64::from(u32::MAX) + 1)
        .expect_err("overflows")
        .message();
    assert!(
        err.starts_with("plugin square_number@sha256:")
            && err.ends_with("refused item 4294967296: 4294967296 squared overflows u64"),
        "{err}"
    );
    assert_eq!(square.digest().len(), 64);
    let names = s.registry.names().expect("names");
    assert_eq!(names, ["cube", "square_number"]);
}

/// The same violations from a v1 plugin that imports nothing and from a v2 plugin built for
/// wasm32-wasip2 (so it imports WASI): each is contained, and fails only its item.
#[test]
fn each_sandbox_violation_fails_only_its_item() {
    let s = scratch(&[("test-plugins", "hostile"), ("test-plugins", "hostile_v2")]);
    for name in ["hostile", "hostile_v2"] {
        let hostile = s.registry.resolve(name).expect("hostile loads");
        common::hostile::each_violation_fails_only_its_item(name, |n| hostile.call(n));
    }
}

#[test]
fn bad_files_are_rejected_with_the_reason() {
    let s = scratch(&[("plugins", "square_number")]);
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(s.dir.path().join(format!("{name}.wasm")), bytes).expect("write");
    };
    write("empty", b"");
    write("garbage", b"this is not wasm");
    write("bare_module", b"\0asm\x01\0\0\0");
    write(
        "uses_host",
        br#"(component (import "host:evil/escape@1.0.0" (instance)))"#,
    );
    // WASI beyond the deny-all 0.2 set (HTTP, another version): every such import is named,
    // the linked WASI ones are not.
    write(
        "wants_everything",
        br#"(component
              (import "wasi:cli/environment@0.2.0" (instance))
              (import "wasi:http/outgoing-handler@0.2.0" (instance))
              (import "wasi:filesystem/types@0.3.0" (instance))
              (import "wasi:random/random@0.2.0" (instance)))"#,
    );
    write("wrong_interface", b"(component)");

    let reason = |name: &str| s.registry.resolve(name).expect_err(name).message();
    assert!(
        reason("empty").ends_with("is not a valid plugin: the file is empty"),
        "{}",
        reason("empty")
    );
    let rejected_for = |name: &str, why: &str| {
        let reason = reason(name);
        assert!(reason.contains(why), "{name}: {reason}");
    };
    rejected_for("garbage", "not WebAssembly");
    // A core module without the component-type metadata wraps into an empty component.
    let exports_nothing = "does not export batch:plugin/compute@2.0.0 or \
                           batch:plugin/compute@1.0.0 (it exports: nothing)";
    rejected_for("bare_module", exports_nothing);
    rejected_for(
        "uses_host",
        "imports host:evil/escape@1.0.0 but plugins may import only WASI 0.2, which the worker \
         links deny-all",
    );
    rejected_for(
        "wants_everything",
        "imports wasi:filesystem/types@0.3.0 but plugins may import only WASI 0.2",
    );
    rejected_for("wrong_interface", exports_nothing);

    let missing = reason("nope");
    assert!(
        missing.starts_with("plugin \"nope\" not found in "),
        "{missing}"
    );
    assert!(
        missing.ends_with(
            "available plugins: bare_module, empty, garbage, square_number, uses_host, \
             wants_everything, wrong_interface"
        ),
        "{missing}"
    );
    assert!(reason("../etc/passwd").starts_with("plugin name \"../etc/passwd\" is invalid"));

    // The good plugin is unaffected by its bad neighbours.
    assert_eq!(
        s.registry
            .resolve("square_number")
            .expect("ok")
            .call(3)
            .expect("9"),
        9
    );
}

#[test]
fn a_replaced_file_is_picked_up_and_pinned_batches_keep_their_version() {
    let s = scratch(&[("plugins", "square_number")]);
    let before = s.registry.resolve("square_number").expect("v1");
    let pinned = PluginRef {
        name: "square_number".into(),
        digest: Some(before.digest().to_owned()),
    };

    // Replace the file with another plugin's bytes under the same name.
    let path = s.dir.path().join("square_number.wasm");
    let tmp = s.dir.path().join(".square_number.tmp");
    std::fs::copy(built_plugin("plugins", "cube"), &tmp).expect("copy");
    std::fs::rename(&tmp, &path).expect("rename");

    let after = s.registry.resolve("square_number").expect("v2");
    assert_ne!(after.digest(), before.digest());
    assert_eq!(after.call(3).expect("new version"), 27);
    // A batch pinned to the first version still runs it.
    assert_eq!(
        s.registry
            .get(&pinned)
            .expect("pinned")
            .call(3)
            .expect("old version"),
        9
    );

    // A digest this worker never had is a retryable error naming what it has.
    let unknown = PluginRef {
        name: "square_number".into(),
        digest: Some("0".repeat(64)),
    };
    let err = s.registry.get(&unknown).expect_err("unknown digest");
    assert!(batch_worker::routing::is_retryable(&err), "{err}");
    assert!(
        err.message()
            .contains(&format!("holds sha256:{}", after.digest())),
        "{err}"
    );
}

/// The example plugins, through the real wasm host, against reference implementations.
#[test]
fn example_plugins_compute_what_they_promise() {
    let s = scratch(&[
        ("plugins", "collatz_steps"),
        ("plugins", "is_prime"),
        ("plugins", "fnv_hash"),
        ("plugins", "triple_wat"),
    ]);
    let collatz = s.registry.resolve("collatz_steps").expect("collatz_steps");
    assert_eq!(collatz.call(1).expect("1"), 0);
    assert_eq!(collatz.call(27).expect("27"), 111);
    assert_eq!(collatz.call(97).expect("97"), 118);
    let err = collatz.call(0).expect_err("0").message();
    assert!(err.ends_with("refused item 0: 0 never reaches 1"), "{err}");

    let prime = s.registry.resolve("is_prime").expect("is_prime");
    let primes_to_1000: u64 = (1..=1000).map(|i| prime.call(i).expect("is_prime")).sum();
    assert_eq!(primes_to_1000, 168);
    assert_eq!(
        prime
            .call(18_446_744_073_709_551_557)
            .expect("largest u64 prime"),
        1
    );
    assert_eq!(
        prime
            .call(3_215_031_751)
            .expect("strong pseudoprime to 2,3,5,7"),
        0
    );

    let fnv = s.registry.resolve("fnv_hash").expect("fnv_hash");
    let reference = |item: u64| {
        item.to_le_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
    };
    for item in [0, 1, 42, u64::MAX] {
        assert_eq!(fnv.call(item).expect("fnv"), reference(item), "item {item}");
    }

    // Written in WAT, loaded from its text file, no SDK involved.
    let triple = s.registry.resolve("triple_wat").expect("triple_wat");
    assert_eq!(triple.call(14).expect("42"), 42);
    let err = triple
        .call(u64::MAX / 3 + 1)
        .expect_err("overflow")
        .message();
    assert!(err.ends_with("tripling overflows u64"), "{err}");
}

#[test]
fn real_traps_fail_the_item_with_the_trap() {
    let s = scratch(&[]);
    let write = |name: &str, text: String| {
        std::fs::write(s.dir.path().join(format!("{name}.wat")), text).expect("write");
    };
    write(
        "divides_by_zero",
        common::wat::plugin("(drop (i64.div_u (local.get $item) (i64.const 0))) (i32.const 0)"),
    );
    write(
        "reads_out_of_bounds",
        common::wat::plugin("(drop (i64.load (i32.const 1000000))) (i32.const 0)"),
    );
    write(
        "returns_out_of_bounds",
        common::wat::plugin("(i32.const 1000000)"),
    );
    let trap = |name: &str| {
        let plugin = s.registry.resolve(name).expect(name);
        plugin.call(7).expect_err(name).message()
    };
    let err = trap("divides_by_zero");
    assert!(
        err.contains("trapped on item 7") && err.contains("divide by zero"),
        "{err}"
    );
    let err = trap("reads_out_of_bounds");
    assert!(
        err.contains("trapped on item 7") && err.contains("out of bounds"),
        "{err}"
    );
    // A plugin lying about where its result is cannot make the host read outside its memory.
    let err = trap("returns_out_of_bounds");
    assert!(
        err.contains("trapped on item 7") && err.contains("out of bounds"),
        "{err}"
    );
}

#[test]
fn a_bad_file_never_replaces_a_good_version() {
    let s = scratch(&[("plugins", "cube")]);
    let good = s.registry.resolve("cube").expect("good");
    std::fs::write(s.dir.path().join("cube.wasm"), b"oops").expect("overwrite");
    let still = s
        .registry
        .resolve("cube")
        .expect("the last good version stays in service");
    assert_eq!(still.digest(), good.digest());
    let listed = s.registry.list().expect("list");
    let cube = listed
        .iter()
        .find(|p| p.name == "cube")
        .expect("cube listed");
    assert_eq!(cube.digest.as_deref(), Some(good.digest()));
    let error = cube.error.as_deref().expect("the bad file is reported");
    assert!(
        error.contains("not WebAssembly") && error.contains("serving the last good version"),
        "{error}"
    );
    // A bad file with no good predecessor is an error.
    std::fs::write(s.dir.path().join("fresh.wasm"), b"oops").expect("write");
    assert!(s.registry.resolve("fresh").is_err());
}

/// The on-disk cache: a restarted worker loads without compiling, and still has a version
/// whose file has since been replaced.
#[test]
fn the_cache_survives_restarts_and_replacements() {
    let plugins = tempfile::tempdir().expect("plugins");
    let cache_dir = tempfile::tempdir().expect("cache");
    let path = plugins.path().join("p.wasm");
    std::fs::copy(built_plugin("plugins", "square_number"), &path).expect("copy");
    let open = || {
        let engine = SandboxedEngine::new(LIMITS).expect("engine");
        let cache = ArtifactCache::open(cache_dir.path(), engine.engine()).expect("cache");
        PluginRegistry::open(plugins.path(), engine, Some(cache)).expect("registry")
    };

    let first = open();
    let v1 = first.resolve("p").expect("v1").digest().to_owned();
    drop(first);
    let compiled: Vec<_> = std::fs::read_dir(cache_dir.path().join("compiled"))
        .expect("compiled dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        compiled
            .iter()
            .any(|f| f.starts_with(&v1) && f.ends_with(".cwasm")),
        "{compiled:?}"
    );

    // Replace the file, then "restart": the pinned v1 comes from the cache.
    std::fs::copy(built_plugin("plugins", "cube"), &path).expect("replace");
    let second = open();
    let pinned = PluginRef {
        name: "p".into(),
        digest: Some(v1.clone()),
    };
    let old = second.get(&pinned).expect("v1 from the cache");
    assert_eq!(old.digest(), v1);
    assert_eq!(old.call(5).expect("square"), 25);
    assert_eq!(second.resolve("p").expect("v2").call(5).expect("cube"), 125);

    // A corrupted artifact is ignored (recompiled), never trusted.
    for entry in std::fs::read_dir(cache_dir.path().join("compiled"))
        .expect("dir")
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "cwasm") {
            std::fs::write(entry.path(), b"corrupt").expect("corrupt");
        }
    }
    let third = open();
    assert_eq!(
        third
            .get(&pinned)
            .expect("recompiled from source")
            .call(6)
            .expect("36"),
        36
    );
}
