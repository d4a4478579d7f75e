//! Faults: a worker that crashes (SIGKILL) in the middle of the work loses nothing and
//! counts nothing twice.

mod support;

use std::time::Duration;

use support::{
    DevServer, Run, Worker, install_plugin, starter, starter_at, sum_of_squares, wait_for,
};

const SUM_2000: &str = "2668667000";

/// A plugins directory holding only `square_number`.
fn square_number_only() -> tempfile::TempDir {
    let plugins = tempfile::tempdir().expect("plugins dir");
    install_plugin(plugins.path(), "square_number", "square_number");
    plugins
}

/// Completed workflows of the default n=2000 tree, as the server counts them.
fn completed(server: &DevServer) -> u64 {
    server
        .count(
            "WorkflowId STARTS_WITH 'batch-processing-2000-b10-c5' AND ExecutionStatus = 'Completed'",
        )
        .unwrap_or(0)
}

fn assert_exact_2000(server: &DevServer, run: &Run) {
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.field("Sum of all squares"), SUM_2000);
    assert_eq!(run.field("Workflows"), "656");
    assert_eq!(run.field("Activities"), "2000");
    assert_eq!(
        server.count_workflows("WorkflowId STARTS_WITH 'batch-processing-2000-b10-c5'", 656),
        656
    );
}

/// The identities that started activities in the first `leaves` leaf workflows of the tree.
fn activity_identities(server: &DevServer, leaves: usize) -> std::collections::BTreeSet<String> {
    let mut ids = Vec::new();
    'outer: for a in 0..5 {
        for b in 0..5 {
            for c in 0..5 {
                for d in 0..4 {
                    ids.push(format!("batch-processing-2000-b10-c5-c{a}-c{b}-c{c}-c{d}"));
                    if ids.len() == leaves {
                        break 'outer;
                    }
                }
            }
        }
    }
    let mut identities = std::collections::BTreeSet::new();
    for id in ids {
        let out = server.cli(&["workflow", "show", "--workflow-id", &id, "--output", "json"]);
        let history: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history");
        for event in history["events"].as_array().into_iter().flatten() {
            if let Some(identity) = event["activityTaskStartedEventAttributes"]["identity"].as_str()
            {
                identities.insert(identity.to_owned());
            }
        }
    }
    identities
}

/// SIGKILL the worker three times during one n=2000 batch, restarting it each time: the batch
/// completes with the exact sum and the same tree as a clean run.
#[test]
fn a_worker_killed_repeatedly_mid_batch_loses_and_doubles_nothing() {
    let server = DevServer::start();
    let plugins = square_number_only();
    let queue = "killed-repeatedly";
    let mut worker = Worker::start(&server, queue, plugins.path());
    let run = std::thread::scope(|scope| {
        let batch = scope.spawn(|| starter(&server, queue, &[]));
        for round in 1..=3u64 {
            // Let some work finish first, so each crash lands in the middle of the batch.
            wait_for("progress before a crash", Duration::from_secs(300), || {
                (completed(&server) >= round * 100).then_some(())
            });
            worker.crash();
            worker = Worker::start(&server, queue, plugins.path());
        }
        batch.join().expect("starter thread")
    });
    assert_exact_2000(&server, &run);
}

/// Two workers on one task queue share a batch: exact result, and both ran activities
/// (their identities appear in the leaves' histories).
#[test]
fn two_workers_on_one_queue_share_a_batch_exactly() {
    let server = DevServer::start();
    let plugins = square_number_only();
    let queue = "two-workers";
    let _a = Worker::start_as(&server, queue, plugins.path(), Some("worker-a"));
    let _b = Worker::start_as(&server, queue, plugins.path(), Some("worker-b"));
    let run = starter(&server, queue, &[]);
    assert_exact_2000(&server, &run);
    let identities = activity_identities(&server, 100);
    assert!(
        identities.contains("worker-a") && identities.contains("worker-b"),
        "activities ran on {identities:?}"
    );
}

/// SIGTERM while activities run: the worker finishes or hands back its work and exits; a new
/// worker completes the batch exactly, with nothing counted twice.
#[test]
fn a_worker_stopped_gracefully_mid_batch_hands_its_work_back() {
    let server = DevServer::start();
    let plugins = square_number_only();
    let queue = "graceful";
    let mut first = Worker::start(&server, queue, plugins.path());
    let (run, _second) = std::thread::scope(|scope| {
        let batch = scope.spawn(|| starter(&server, queue, &[]));
        wait_for(
            "progress before the shutdown",
            Duration::from_secs(300),
            || (completed(&server) >= 150).then_some(()),
        );
        first.stop();
        let log = first.log_text();
        assert!(
            log.contains("shutdown requested") && log.contains("worker stopped"),
            "the worker did not shut down gracefully:\n{log}"
        );
        let second = Worker::start(&server, queue, plugins.path());
        (batch.join().expect("starter thread"), second)
    });
    assert_exact_2000(&server, &run);
}

/// A `batch`-mode leaf heartbeats its progress (next item and the statistics so far); after a
/// crash, the retry on another worker process resumes from there instead of starting over,
/// and the result is still exact.
#[test]
fn a_batch_leaf_resumes_from_its_last_heartbeat_after_a_worker_crash() {
    let server = DevServer::start();
    let plugins = square_number_only();
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
        sum_of_squares(n).to_string()
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

/// The dev server (persisting to SQLite) is stopped and restarted mid-batch: the worker and
/// the waiting starter reconnect by themselves, and the batch completes exactly.
#[test]
fn the_batch_and_its_starter_survive_a_server_restart() {
    let mut server = DevServer::start_persistent();
    let plugins = square_number_only();
    let queue = "server-restart";
    let _worker = Worker::start(&server, queue, plugins.path());
    let address = server.address.clone();
    // The starter gets the address, not the server: the server object is restarted below.
    let batch =
        std::thread::spawn(move || starter_at(&address, queue, &[], Duration::from_secs(300)));
    wait_for(
        "progress before the restart",
        Duration::from_secs(300),
        || (completed(&server) >= 100).then_some(()),
    );
    server.restart();
    let run = batch.join().expect("starter thread");
    assert_exact_2000(&server, &run);
}
