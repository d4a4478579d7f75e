//! The plugin host without a Temporal server: loading, validation, the sandbox's limits and
//! version pinning, against real plugins built by `scripts/build-plugins.sh` (both the real
//! ones and the `--fixtures`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use batch_core::PluginRef;
use batch_worker::plugins::{PluginError, PluginRegistry, SandboxLimits, SandboxedEngine};

/// Where `scripts/build-plugins.sh` installed plugins (`target/plugins`, `target/test-plugins`).
fn built_plugin(dir: &str, name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join(dir).join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-plugins.sh and scripts/build-plugins.sh --fixtures",
        path.display()
    );
    path
}

const LIMITS: SandboxLimits = SandboxLimits {
    cpu_deadline: Duration::from_millis(200),
    memory_bytes: 16 << 20,
};

/// A scratch plugins directory holding copies of the named built plugins.
struct Scratch {
    dir: tempfile::TempDir,
    registry: PluginRegistry,
}

fn scratch(plugins: &[(&str, &str)]) -> Scratch {
    let dir = tempfile::tempdir().expect("temp dir");
    for (from, name) in plugins {
        std::fs::copy(
            built_plugin(from, name),
            dir.path().join(format!("{name}.wasm")),
        )
        .expect("copy plugin");
    }
    let engine = SandboxedEngine::new(LIMITS).expect("engine");
    let registry = PluginRegistry::open(dir.path(), engine).expect("registry");
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
        .to_string();
    assert!(
        err.starts_with("plugin square_number@sha256:")
            && err.ends_with("refused item 4294967296: 4294967296 squared overflows u64"),
        "{err}"
    );
    assert_eq!(square.digest().len(), 64);
    let names = s.registry.names().expect("names");
    assert_eq!(names, ["cube", "square_number"]);
}

#[test]
fn each_sandbox_violation_fails_only_its_item() {
    let s = scratch(&[("test-plugins", "hostile")]);
    let hostile = s.registry.resolve("hostile").expect("hostile loads");

    let started = Instant::now();
    let err = hostile.call(1).expect_err("infinite loop");
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            PluginError::Deadline {
                item: 1,
                limit_ms: 200,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("exceeded its CPU deadline of 200 ms on item 1"),
        "{err}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "the deadline stopped the loop after {elapsed:?}"
    );

    let err = hostile.call(2).expect_err("panic").to_string();
    assert!(
        err.contains("trapped on item 2") && err.contains("unreachable"),
        "{err}"
    );

    let err = hostile.call(3).expect_err("memory hog").to_string();
    assert!(
        err.contains("trapped on item 3") && err.contains("memory"),
        "{err}"
    );

    let err = hostile.call(4).expect_err("stack overflow").to_string();
    assert!(
        err.contains("trapped on item 4") && err.contains("stack"),
        "{err}"
    );

    let err = hostile.call(5).expect_err("refusal");
    assert!(
        matches!(&err, PluginError::Refused { item: 5, message, .. } if message == "item 5 is not welcome here"),
        "{err}"
    );
    assert!(!err.is_retryable());

    // Nothing leaks from one call to the next: the same module still serves.
    assert_eq!(hostile.call(6).expect("well-behaved item"), 6);
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
        "uses_wasi",
        br#"(component (import "wasi:cli/environment@0.2.0" (instance)))"#,
    );
    write("wrong_interface", b"(component)");

    let reason = |name: &str| s.registry.resolve(name).expect_err(name).to_string();
    assert!(
        reason("empty").ends_with("is not a valid plugin: the file is empty"),
        "{}",
        reason("empty")
    );
    assert!(
        reason("garbage").contains("not WebAssembly"),
        "{}",
        reason("garbage")
    );
    // A core module without the component-type metadata wraps into an empty component.
    assert!(
        reason("bare_module").contains("does not implement batch:plugin/compute@1.0.0"),
        "{}",
        reason("bare_module")
    );
    assert!(
        reason("uses_wasi")
            .contains("imports wasi:cli/environment@0.2.0 but plugins may import nothing"),
        "{}",
        reason("uses_wasi")
    );
    assert!(
        reason("wrong_interface").contains("does not implement batch:plugin/compute@1.0.0"),
        "{}",
        reason("wrong_interface")
    );

    let missing = reason("nope");
    assert!(
        missing.starts_with("plugin \"nope\" not found in "),
        "{missing}"
    );
    assert!(
        missing.ends_with(
            "available plugins: bare_module, empty, garbage, square_number, uses_wasi, wrong_interface"
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
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("holds sha256:{}", after.digest())),
        "{err}"
    );
}
