//! Faults: a worker that crashes (SIGKILL) in the middle of the work loses nothing and
//! counts nothing twice.

mod support;

use std::time::Duration;

use support::{DevServer, Worker, install_plugin, starter, wait_for};

/// A `batch`-mode leaf heartbeats its progress (next item and the statistics so far); after a
/// crash, the retry on another worker process resumes from there instead of starting over,
/// and the result is still exact.
#[test]
fn a_batch_leaf_resumes_from_its_last_heartbeat_after_a_worker_crash() {
    let server = DevServer::start();
    let plugins = tempfile::tempdir().expect("plugins dir");
    install_plugin(plugins.path(), "square_number", "square_number");
    let queue = "resume-after-crash";
    let mut first = Worker::start(&server, queue, plugins.path());

    // One leaf of 40 million items: seconds of compute, a heartbeat every 2 s.
    let n: u128 = 40_000_000;
    let id = "batch-processing-40000000-batch40000000-c2";
    let batch = std::thread::scope(|scope| {
        let batch = scope.spawn(|| {
            starter(
                &server,
                queue,
                &["40000000", "40000000", "2", "--mode", "batch"],
            )
        });
        wait_for(
            "a heartbeat with progress",
            Duration::from_secs(120),
            || {
                let out = server.cli(&[
                    "workflow",
                    "describe",
                    "--workflow-id",
                    id,
                    "--output",
                    "json",
                ]);
                let text = String::from_utf8_lossy(&out.stdout);
                text.contains("heartbeatDetails").then_some(())
            },
        );
        first.crash();
        let second = Worker::start(&server, queue, plugins.path());
        let batch = batch.join().expect("starter thread");
        (batch, second)
    });
    let (run, second) = batch;
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.field("Sum of all squares"),
        (n * (n + 1) * (2 * n + 1) / 6).to_string()
    );
    assert_eq!(run.field("Activities"), "1");
    let log = second.log_text();
    let resumed = log
        .lines()
        .find(|l| l.contains("resuming a batch leaf"))
        .unwrap_or_else(|| panic!("the retry did not resume:\n{log}"));
    let next: u64 = resumed
        .split("next=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no next= in {resumed:?}"));
    assert!(next > 1, "resumed from item {next}: {resumed}");
}
