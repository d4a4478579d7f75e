//! Bad input, as users really produce it: each case must end with a message naming the
//! problem, a non-zero exit, within a bounded time, and must hurt nothing else (a worker with
//! bad files in its plugins directory keeps serving the good ones).

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::{DevServer, Starter, Worker, install_plugin, run_offline, starter, sum_of_squares};

fn assert_refused(program: &str, args: &[&str], message: &str, within: Duration) {
    let (out, text, took) = run_offline(program, args);
    assert!(
        !out.status.success(),
        "{program} {args:?} must fail:\n{text}"
    );
    assert!(text.contains(message), "{program} {args:?}:\n{text}");
    assert!(
        !text.contains("Stack backtrace") && !text.contains("panicked"),
        "{program} {args:?} must explain, not crash:\n{text}"
    );
    assert!(took < within, "{program} {args:?} took {took:?}");
}

/// A port on which nothing listens.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn the_starter_refuses_bad_arguments_before_contacting_anything() {
    // The address is closed: a case that got past validation would fail differently.
    let address = format!("127.0.0.1:{}", closed_port());
    let quick = Duration::from_secs(10);
    for (args, message) in [
        (
            &["1000000000000000001"][..],
            "n must be at most 1000000000000000000 (got 1000000000000000001)",
        ),
        (&["99999999999999999999999"][..], "is too large"),
        (
            &["10", "--plugin", "/etc/passwd"][..],
            "plugin name \"/etc/passwd\" is invalid",
        ),
        (&["10", "--plugin", ""][..], "plugin name \"\" is invalid"),
        (
            &["10", "--plugin", "cube@sha256:abc"][..],
            "plugin digest \"abc\" is invalid: expected 64 lowercase hex digits",
        ),
        (
            &[
                "10",
                "--plugin",
                "../cube@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ][..],
            "plugin name \"../cube\" is invalid",
        ),
        // One action per run, and only the options that apply to it: none silently ignored.
        (
            &["--no-wait", "--attach", "some-id"][..],
            "--no-wait does not apply to --attach, which takes --json",
        ),
        (
            &["10", "--attach", "some-id"][..],
            "N does not apply to --attach",
        ),
        (
            &["--cancel", "some-id", "--source", "f.jsonl"][..],
            "--source does not apply to --cancel, which takes only the connection's options",
        ),
        (
            &["--pause", "a", "--resume", "b"][..],
            "'--pause <WORKFLOW_ID>' cannot be used with '--resume <WORKFLOW_ID>'",
        ),
        (
            &["--retry-failed", "a", "--source", "f.jsonl"][..],
            "--source does not apply to --retry-failed",
        ),
        (
            &["--list-plugins", "--plugin", "cube"][..],
            "--plugin does not apply to --list-plugins",
        ),
        (
            &["50", "--plan", "--no-wait"][..],
            "'--plan' cannot be used with '--no-wait'",
        ),
        (
            &["10", "--mode", "fast"][..],
            "unknown mode \"fast\": expected item, local or batch",
        ),
        (&["10", "10", "5", "7"][..], "unexpected argument '7'"),
        (
            &["10", "10", "0"][..],
            "max_children must be between 2 and 1000 (got 0)",
        ),
        (
            &["10", "--max-in-flight", "0"][..],
            "max_in_flight must be between 1 and 1000 (got 0)",
        ),
    ] {
        let mut all = args.to_vec();
        all.extend(["--address", &address]);
        assert_refused("starter", &all, message, quick);
    }
}

#[test]
fn the_worker_refuses_a_bad_setup_with_the_reason() {
    let scratch = tempfile::tempdir().expect("scratch");
    let a_file = scratch.path().join("plugins.txt");
    std::fs::write(&a_file, "not a directory").expect("write");
    let missing = scratch.path().join("missing");
    // A cache anyone may write into: its compiled code would run as native code.
    let open_cache = scratch.path().join("open-cache");
    std::fs::create_dir(&open_cache).expect("mkdir");
    std::fs::set_permissions(
        &open_cache,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let quick = Duration::from_secs(10);
    for (args, message) in [
        (
            vec!["--plugins-dir", missing.to_str().expect("utf-8")],
            format!(
                "cannot read plugins directory {}: No such file or directory",
                missing.display()
            ),
        ),
        (
            vec!["--plugins-dir", a_file.to_str().expect("utf-8")],
            format!(
                "cannot read plugins directory {}: not a directory",
                a_file.display()
            ),
        ),
        (
            vec!["--no-cache", "--cache-dir", "/tmp/x"],
            "'--no-cache' cannot be used with '--cache-dir <CACHE_DIR>'".to_owned(),
        ),
        (
            vec!["--plugin-deadline-ms", "0"],
            "invalid value '0' for '--plugin-deadline-ms <PLUGIN_DEADLINE_MS>'".to_owned(),
        ),
        // A call must end within the activity timeouts it runs under.
        (
            vec!["--plugin-deadline-ms", "20001"],
            "invalid value '20001' for '--plugin-deadline-ms <PLUGIN_DEADLINE_MS>': 20001 is not in 1..=20000".to_owned(),
        ),
        (
            vec!["--trust-key", a_file.to_str().expect("utf-8")],
            "the following required arguments were not provided:\n  --plugin-store <URL>".to_owned(),
        ),
        (
            vec![
                "--plugin-store",
                scratch.path().to_str().expect("utf-8"),
                "--trust-key",
                a_file.to_str().expect("utf-8"),
            ],
            format!(
                "--trust-key: key file {} is not an ed25519 public key in PEM",
                a_file.display()
            ),
        ),
        (
            vec!["--plugin-store", "s3://"],
            "--plugin-store: plugin store s3://".to_owned(),
        ),
        (
            vec!["--cache-dir", open_cache.to_str().expect("utf-8")],
            format!(
                "refusing plugin cache directory {}: it is writable by group or others (mode 777)",
                open_cache.display()
            ),
        ),
    ] {
        assert_refused("worker", &args, &message, quick);
    }
}

/// Bad connection settings: each names the address it could not use, and gives up in a
/// bounded time (the handshake and the first call each have 10 s).
#[test]
fn bad_connection_settings_are_named_and_given_up_on_in_bounded_time() {
    let plugins = tempfile::tempdir().expect("plugins dir");
    let plugins_dir = plugins.path().to_str().expect("utf-8");
    let refused = format!("127.0.0.1:{}", closed_port());
    // Accepts TCP connections (the kernel does, from the backlog) but never speaks: a server
    // that hangs, or a firewall that swallows packets after the handshake.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent = silent.local_addr().expect("addr").to_string();
    let bounded = Duration::from_secs(30);
    for program in ["starter", "worker"] {
        for (address, message) in [
            (
                refused.as_str(),
                format!("cannot reach the Temporal server at {refused}"),
            ),
            (
                silent.as_str(),
                format!("cannot reach the Temporal server at {silent}"),
            ),
            (
                "localhost",
                "invalid Temporal address \"localhost\": expected host:port".to_owned(),
            ),
            (
                "127.0.0.1:99999",
                "invalid Temporal address \"127.0.0.1:99999\"".to_owned(),
            ),
        ] {
            let mut args = vec!["--address", address];
            if program == "starter" {
                args.push("10");
            } else {
                args.extend(["--plugins-dir", plugins_dir]);
            }
            assert_refused(program, &args, &message, bounded);
        }
    }
}

/// A plugins directory is a shared folder: stray files are ignored, broken plugins are
/// reported by name and refused when asked for, and the good plugins keep working.
#[test]
fn a_plugins_dir_with_stray_and_broken_files_keeps_serving_the_good_ones() {
    let server = DevServer::start();
    let dir = tempfile::tempdir().expect("plugins dir");
    let dir_path = dir.path();
    install_plugin(dir_path, "square_number", "square_number");
    std::fs::write(dir_path.join("README.md"), "# my plugins\n").expect("write");
    std::fs::write(dir_path.join("Not A Name.wasm"), b"\0asm").expect("write");
    std::fs::create_dir(dir_path.join("folder.wasm")).expect("mkdir");
    std::fs::write(dir_path.join("empty.wasm"), b"").expect("write");
    std::fs::write(dir_path.join("corrupt.wasm"), b"\0asm\x01\0\0\0garbage").expect("write");
    // Sparse: 65 MiB long, next to nothing on disk; refused from its size, never read.
    std::fs::File::create(dir_path.join("huge.wasm"))
        .and_then(|f| f.set_len(65 << 20))
        .expect("huge file");

    let worker = Worker::start(&server, "bad-files", dir_path);
    let log = worker.log_text();
    for (name, reason) in [
        ("empty", "the file is empty"),
        ("corrupt", "is not a valid plugin"),
        (
            "huge",
            "the file is 68157440 bytes, over the 64 MiB limit for a plugin",
        ),
    ] {
        assert!(
            log.lines().any(|l| l.contains("ERROR")
                && l.contains(&format!("plugin \"{name}\""))
                && l.contains(reason)),
            "{name}: {log}"
        );
    }
    assert!(
        !log.contains("README") && !log.contains("Not A Name"),
        "stray files must be ignored quietly:\n{log}"
    );

    let good = Starter::on(&server, "bad-files").args(&["50"]).report();
    assert_eq!(good.outputs().sum, sum_of_squares(50));

    for (name, reason) in [
        ("huge", "over the 64 MiB limit for a plugin"),
        ("corrupt", "is not a valid plugin"),
        ("folder", "not a regular file"),
    ] {
        let run = starter(&server, "bad-files", &["10", "--plugin", name]);
        assert!(!run.success, "{name} must fail:\n{}", run.stdout);
        assert!(
            run.stderr.contains(&format!("plugin \"{name}\"")) && run.stderr.contains(reason),
            "{name}: {}",
            run.stderr
        );
    }

    let after = Starter::on(&server, "bad-files").args(&["60"]).report();
    assert_eq!(after.outputs().sum, sum_of_squares(60));

    let run = starter(
        &server,
        "bad-files",
        &["10", "--namespace", "no-such-namespace"],
    );
    assert!(!run.success);
    assert!(run.stderr.contains("no-such-namespace"), "{}", run.stderr);
}
