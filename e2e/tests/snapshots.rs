//! The starter's and the worker's user-facing text, compared whole with checked-in snapshots
//! (`e2e/tests/snapshots/`): `--help` of the three binaries, and the summary of the demo's n=50
//! batch, line for line, against a real dev server and worker.

mod support;

use std::process::Command;

use support::{DevServer, Worker, assert_snapshot, binary, install_plugin, sha256_of, starter};

fn help_of(program: &str) -> String {
    let mut command = Command::new(binary(program));
    // Help shows the values of the flags' environment variables: show none.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BATCH_") {
            command.env_remove(&key);
        }
    }
    let out = command
        .arg("--help")
        // Help text wraps to the terminal; tests have none, but keep it fixed anyway.
        .env("COLUMNS", "100")
        .output()
        .expect("run --help");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 help")
}

#[test]
fn the_starters_help_is_as_documented() {
    assert_snapshot("starter-help.txt", &help_of("starter"));
}

#[test]
fn the_workers_help_is_as_documented() {
    assert_snapshot("worker-help.txt", &help_of("worker"));
}

#[test]
fn the_plugin_tools_help_is_as_documented() {
    assert_snapshot("batch-plugin-help.txt", &help_of("batch-plugin"));
}

/// The demo's block for n=50 (then the project's lines), whole; only the plugin's digest
/// (checked against the installed file's sha256) and the wall time vary.
#[test]
fn the_summary_of_the_demo_batch_is_the_demos_block() {
    let server = DevServer::start();
    let plugins = tempfile::tempdir().expect("plugins");
    let square = install_plugin(plugins.path(), "square_number", "square_number");
    let _worker = Worker::start(&server, "snapshots", plugins.path());
    let run = starter(&server, "snapshots", &["50"]);
    assert!(run.success, "{}", run.stderr);
    let digest = sha256_of(&square);
    assert!(run.stdout.contains(&digest), "{}", run.stdout);
    let summary: String = run
        .stdout
        .replace(&digest, "<sha256 of square_number.wasm>")
        .lines()
        .map(|line| match line.strip_prefix("Wall time: ") {
            Some(time) => {
                assert!(time.ends_with(" s"), "{line}");
                "Wall time: <seconds> s\n".to_owned()
            }
            None => format!("{line}\n"),
        })
        .collect();
    assert_snapshot("summary-50.txt", &summary);
}
