//! The sandbox's trust requirements, each against a hostile file, cache entry or module, with
//! the plugin host alone (no server): forged compiled code, special files in the plugins
//! directory, unbounded messages, pool exhaustion, several memories, slow compilation.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use batch_core::PluginRef;
use batch_worker::plugins::cache::{self, ArtifactCache};
use batch_worker::plugins::sandbox::PER_CALL;
use batch_worker::plugins::{
    Interface, PluginError, PluginRegistry, SandboxLimits, SandboxedEngine,
};
use common::{built_plugin, peak_rss_kib};

/// The tests of this file one at a time: one of them reads the process's peak memory.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const LIMITS: SandboxLimits = SandboxLimits {
    cpu_deadline: Duration::from_millis(100),
    memory_bytes: 16 << 20,
    calls_at_once: 2,
    compile_timeout: Duration::from_secs(120),
    compiles_at_once: 1,
    http_calls_at_once: 0,
};

fn registry(dir: &Path, limits: SandboxLimits, cache: Option<&Path>) -> PluginRegistry {
    let engine = SandboxedEngine::new(limits).expect("engine");
    let cache = cache.map(|c| ArtifactCache::open(c, engine.engine()).expect("cache"));
    PluginRegistry::open(dir, engine, cache).expect("registry")
}

fn copy_plugin(dir: &Path, from: &str, name: &str, as_name: &str) {
    std::fs::copy(
        built_plugin(from, name),
        dir.join(format!("{as_name}.wasm")),
    )
    .expect("copy");
}

/// Requirement 1: the compiled-code cache runs only what this worker compiled. A plugins-dir
/// writer who swaps square_number's artifact for cube's *genuine* artifact and tag (the best
/// forgery available without the key) still gets squares.
#[test]
fn a_forged_cache_entry_is_never_run() {
    forged_cache_entry_is_never_run(("plugins", "square_number"), ("plugins", "cube"));
    // Interface v2, forged with a plugin that imports WASI (its item 3 answers 0).
    forged_cache_entry_is_never_run(("plugins", "square_v2"), ("test-plugins", "wasi_probe"));
}

/// Swaps `genuine`'s compiled artifact and tag for `forgery`'s, restarts, and checks that
/// `genuine` still computes squares (3 -> 9, 4 -> 16).
fn forged_cache_entry_is_never_run(genuine: (&str, &str), forgery: (&str, &str)) {
    let _serial = serial();
    let plugins = tempfile::tempdir().expect("plugins");
    let cache_dir = tempfile::tempdir().expect("cache");
    copy_plugin(plugins.path(), genuine.0, genuine.1, "p");
    copy_plugin(plugins.path(), forgery.0, forgery.1, "q");
    let first = registry(plugins.path(), LIMITS, Some(cache_dir.path()));
    let square = first.resolve("p").expect("genuine").digest().to_owned();
    let cube = first.resolve("q").expect("forgery").digest().to_owned();
    drop(first);

    let compiled = cache_dir.path().join("compiled");
    let artifact = |digest: &str, ext: &str| {
        std::fs::read_dir(&compiled)
            .expect("compiled dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                name.starts_with(digest) && name.ends_with(ext)
            })
            .unwrap_or_else(|| panic!("no {ext} for {digest} in {}", compiled.display()))
    };
    for ext in [".cwasm", ".tag"] {
        std::fs::copy(artifact(&cube, ext), artifact(&square, ext)).expect("forge");
    }
    // And an old-style checksum beside it, as a forger who read the old code would write.
    let forged = std::fs::read(artifact(&square, ".cwasm")).expect("read");
    std::fs::write(
        artifact(&square, ".cwasm").with_extension("sha256"),
        batch_worker::plugins::digest::sha256_hex(&forged),
    )
    .expect("checksum");

    let restarted = registry(plugins.path(), LIMITS, Some(cache_dir.path()));
    let pinned = PluginRef {
        name: "p".into(),
        digest: Some(square.clone()),
    };
    let plugin = restarted.get(&pinned).expect("pinned genuine plugin");
    assert_eq!(plugin.digest(), square);
    assert_eq!(
        plugin.call(3).expect("square of 3"),
        9,
        "the forged artifact ({}) must not run under {}'s digest",
        forgery.1,
        genuine.1
    );
    // The forged entry was replaced by a genuine one: a further restart runs squares too.
    let again = registry(plugins.path(), LIMITS, Some(cache_dir.path()));
    assert_eq!(again.get(&pinned).expect("pinned").call(4).expect("16"), 16);
}

/// The default cache lives in the user's cache directory, never in the plugins directory.
#[test]
fn the_default_cache_is_outside_the_plugins_directory() {
    let _serial = serial();
    let dir = cache::default_dir().expect("HOME or XDG_CACHE_HOME is set");
    assert!(
        dir.ends_with("batch-worker/plugins") && !dir.starts_with("target"),
        "{}",
        dir.display()
    );
}

/// Requirement 2: only regular files are read, and the read is bounded whatever the file
/// claims. A FIFO, a character device, a socket, a directory and a procfs file that streams
/// hundreds of gigabytes are each reported as not a plugin, at once; symlinks to real plugins
/// keep working.
#[test]
fn special_files_in_the_plugins_directory_are_not_plugins() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("dir");
    let p = |name: &str| dir.path().join(format!("{name}.wasm"));
    let fifo = std::ffi::CString::new(p("fifo").into_os_string().into_encoded_bytes()).expect("c");
    #[allow(unsafe_code)]
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    let made = unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) };
    assert_eq!(made, 0, "mkfifo");
    std::os::unix::fs::symlink("/dev/zero", p("chardev")).expect("symlink");
    // 8 bytes per page of the address space: ~256 GiB if read to the end; size 0 in `stat`.
    std::os::unix::fs::symlink("/proc/self/pagemap", p("procfs")).expect("symlink");
    std::fs::create_dir(p("folder")).expect("dir");
    let _socket = std::os::unix::net::UnixListener::bind(p("socket")).expect("socket");
    copy_plugin(dir.path(), "plugins", "square_number", "real_square");
    std::os::unix::fs::symlink(p("real_square"), p("linked")).expect("symlink");

    let registry = registry(dir.path(), LIMITS, None);
    let started = Instant::now();
    let reason = |name: &str| registry.resolve(name).expect_err(name).message();
    for (name, expected) in [
        ("fifo", "a FIFO, not a regular file"),
        ("chardev", "a character device, not a regular file"),
        ("folder", "a directory, not a regular file"),
        ("socket", "a socket, not a regular file"),
        (
            "procfs",
            "over the 64 MiB limit for a plugin (read stopped there)",
        ),
    ] {
        let got = reason(name);
        assert!(got.contains(expected), "{name}: {got}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "special files took {:?}",
        started.elapsed()
    );
    // Asking again reads nothing more (the rejected procfs file is remembered), so memory
    // stays flat however often a batch names it.
    let before = peak_rss_kib();
    for _ in 0..5 {
        reason("procfs");
        reason("fifo");
    }
    let grown = peak_rss_kib() - before;
    assert!(grown < 8 << 10, "peak RSS grew by {grown} KiB");

    assert_eq!(
        registry
            .resolve("linked")
            .expect("symlink")
            .call(7)
            .expect("49"),
        49
    );
    let listed = registry.list().expect("list");
    let usable: Vec<&str> = listed
        .iter()
        .filter(|p| p.digest.is_some())
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(usable, ["linked", "real_square"], "{listed:?}");
    let reported = listed.iter().filter(|p| p.error.is_some()).count();
    assert_eq!(reported, 5, "every special file is reported: {listed:?}");
}

/// Requirement 3: a refusal of 6 MiB fails its item with a bounded message that says how long
/// the original was.
#[test]
fn a_plugins_words_are_bounded() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("dir");
    copy_plugin(dir.path(), "test-plugins", "chatty", "chatty");
    let registry = registry(dir.path(), LIMITS, None);
    let chatty = registry.resolve("chatty").expect("chatty");
    assert_eq!(chatty.call(6).expect("a quiet item"), 6);
    let err = chatty.call(7).expect_err("refused");
    let PluginError::Refused { message, .. } = &err else {
        panic!("expected a refusal, got {err}");
    };
    assert!(message.starts_with("item 7 is refused at great length: blah blah"));
    assert!(
        message.ends_with("... [truncated: 6291490 bytes in all]"),
        "{}",
        &message[message.len().saturating_sub(80)..]
    );
    assert!(err.message().len() < 2048 + 256, "{}", err.message().len());

    // The same from a v2 plugin that imports WASI.
    std::fs::write(dir.path().join("flood.wat"), common::wat::flood_v2_wasi()).expect("flood");
    let err = registry
        .resolve("flood")
        .expect("flood loads")
        .call(1)
        .expect_err("refused");
    let PluginError::Refused { message, .. } = &err else {
        panic!("expected a refusal, got {err}");
    };
    assert!(
        message.starts_with("xxxx") && message.ends_with("... [truncated: 6291456 bytes in all]"),
        "{}",
        &message[message.len().saturating_sub(80)..]
    );
    assert!(err.message().len() < 2048 + 256, "{}", err.message().len());
}

/// Requirement 4: the engine's pools hold `calls_at_once` calls at their per-call limits, so a
/// plugin that creates every instance and table it may and then loops, called from many
/// threads at once, never makes another plugin's call fail. As a v1 component, and as a v2
/// one that imports WASI.
#[test]
fn calls_at_their_limits_never_exhaust_the_shared_pools() {
    type Hog = fn(u32) -> String;
    let hogs: [(&str, Hog); 2] = [
        ("hog", common::wat::hog),
        ("hog_v2_wasi", common::wat::hog_v2_wasi),
    ];
    for (name, hog) in hogs {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join(format!("{name}.wat")),
            hog(PER_CALL.core_instances),
        )
        .expect("hog");
        std::fs::write(
            dir.path().join("too_many.wat"),
            hog(PER_CALL.core_instances + 1),
        )
        .expect("too_many");
        copy_plugin(dir.path(), "plugins", "square_number", "square_number");
        let registry = Arc::new(registry(dir.path(), LIMITS, None));
        let hog = registry.resolve(name).expect("the hog loads");
        if name == "hog_v2_wasi" {
            assert_eq!(hog.interface(), Interface::V2);
            assert_eq!(hog.imports(), ["wasi:random/random@0.2.0"]);
        }
        let square = registry.resolve("square_number").expect("square");

        let threads: Vec<_> = (0..12)
            .map(|t| {
                let (hog, square) = (hog.clone(), square.clone());
                std::thread::spawn(move || {
                    let mut squares = 0;
                    for i in 0..4u64 {
                        let err = hog.call(i).expect_err("the hog loops");
                        assert!(matches!(err, PluginError::Deadline { .. }), "hog: {err}");
                        squares += square.call(t * 10 + i).expect("square is never starved");
                    }
                    squares
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        let expected: u64 = (0..12u64)
            .flat_map(|t| (0..4).map(move |i| (t * 10 + i).pow(2)))
            .sum();
        assert_eq!(total, expected, "{name}");

        // Over the per-call limit is the plugin's own failure, named at load, never a call's.
        let err = registry.resolve("too_many").expect_err("over the limit");
        assert!(
            matches!(err, PluginError::Invalid { .. })
                && err.to_string().contains(
                    "17 core module instances, which exceeds the configured maximum of 16"
                ),
            "{name}: {err}"
        );
    }
}

/// Requirement 5: the memory cap is on the sum of a call's linear memories; as a v1 component,
/// and as a v2 one that imports WASI.
#[test]
fn a_calls_memories_are_capped_together() {
    type Component = fn(&str, &str, &str, &str, &str) -> String;
    let kinds: [(Component, &str); 2] = [
        (common::wat::component, "(i32.const 0)"),
        (common::wat::component_v2_wasi, "(call $one_zero)"),
    ];
    for (component, answer_zero) in kinds {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("dir");
        // Each memory grows to 3/4 of the 16 MiB cap: fine alone, over the cap together.
        let pages = (LIMITS.memory_bytes / 65_536 * 3 / 4) as u32;
        let two = component(
            r#"(core module $a
    (memory (export "memory") 1)
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
  (core instance $ia (instantiate $a))"#,
            r#"(import "a" "grow" (func $grow_a (param i32) (result i32)))"#,
            "",
            &format!(
                "(drop (call $grow_a (i32.const {pages}))) (drop (memory.grow (i32.const {pages}))) \
                 {answer_zero}"
            ),
            r#"(with "a" (instance $ia))"#,
        );
        let one = component(
            "",
            "",
            "",
            &format!("(drop (memory.grow (i32.const {pages}))) {answer_zero}"),
            "",
        );
        std::fs::write(dir.path().join("two_memories.wat"), two).expect("write");
        std::fs::write(dir.path().join("one_memory.wat"), one).expect("write");
        let registry = registry(dir.path(), LIMITS, None);
        assert_eq!(
            registry
                .resolve("one_memory")
                .expect("one")
                .call(1)
                .expect("fits"),
            0
        );
        let err = registry
            .resolve("two_memories")
            .expect("two")
            .call(1)
            .expect_err("over the cap together")
            .message();
        assert!(
            err.contains("trapped on item 1") && err.contains("over the cap of 16777216 bytes"),
            "{err}"
        );
    }
}

/// Requirement 7's bound: a plugin that takes longer than the compile timeout is rejected,
/// named, and not compiled again until the file changes.
#[test]
fn a_plugin_that_compiles_too_long_is_rejected() {
    compiling_too_long_is_rejected("plugins", "square_number");
    // Interface v2 with WASI imports.
    compiling_too_long_is_rejected("test-plugins", "hostile_v2");
}

fn compiling_too_long_is_rejected(from: &str, name: &str) {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("dir");
    copy_plugin(dir.path(), from, name, "slow");
    let limits = SandboxLimits {
        compile_timeout: Duration::from_millis(1),
        ..LIMITS
    };
    let registry = registry(dir.path(), limits, None);
    let err = registry.resolve("slow").expect_err("too slow").message();
    assert!(
        err.contains("compiling it took longer than the 1 ms limit"),
        "{err}"
    );
    let started = Instant::now();
    let again = registry.resolve("slow").expect_err("remembered").message();
    assert_eq!(again, err);
    assert!(started.elapsed() < Duration::from_millis(50));
}
