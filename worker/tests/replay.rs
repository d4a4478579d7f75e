//! Replay tests: every recorded history in `tests/histories/` (real batches against a real
//! dev server, recorded by `e2e/tests/record_histories.rs`) is replayed against today's workflow
//! code with the SDK's replayer. A change to `workflow.rs` that would make a running batch
//! nondeterministic (a command added, removed or reordered, a child started differently)
//! fails here, before it reaches a worker. Versioning: see docs/architecture.md.

use std::path::{Path, PathBuf};

use batch_worker::workflow::{BatchProcessingWorkflow, ListPluginsWorkflow};
use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

fn histories() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn replayer() -> WorkflowReplayer {
    let options = WorkflowReplayerOptions::new()
        // The queue the histories were recorded on: the workflow derives plugin queues from it.
        .task_queue("replay")
        .register_workflow::<BatchProcessingWorkflow>()
        .and_then(|o| o.register_workflow::<ListPluginsWorkflow>())
        .expect("register the workflows")
        .build();
    WorkflowReplayer::new(options).expect("replayer")
}

#[tokio::test]
async fn every_recorded_history_replays_deterministically() {
    let files = histories();
    // n=50 in each leaf mode, a re-routed batch and a failing one, each with all its nodes.
    assert!(files.len() >= 20, "only {} histories recorded", files.len());
    let replayer = replayer();
    let mut failures = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).expect("read history");
        let history = WorkflowHistory::from_json(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if let Err(e) = replayer.replay_workflow(history).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} histories do not replay:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// The fixtures cover what they claim to: each leaf mode, a routed item and a failure.
#[test]
fn the_recorded_histories_cover_every_path() {
    let names: Vec<String> = histories()
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read"))
        .collect();
    let any = |needle: &str| names.iter().any(|h| h.contains(needle));
    assert!(any("process_item"), "item activities");
    assert!(any("process_range"), "batch-mode leaves");
    assert!(any("core_local_activity"), "local activities (markers)");
    assert!(
        any("replay/plugin/square_number"),
        "an item re-routed to a plugin queue"
    );
    assert!(any("BatchNodeFailed"), "a failing batch");
    assert!(any("process_split"), "a data batch's leaves");
    assert!(any("write_manifest"), "a data batch's manifest");
    assert!(any("BatchToleranceExceeded"), "a tolerance exceeded");
    assert!(
        any("SignalExternalWorkflowExecutionInitiatedEventAttributes"),
        "a pause passed on to a child"
    );
    assert!(
        any("WorkflowExecutionCanceledEventAttributes"),
        "a cancelled batch"
    );
    // Payloads are base64 in the files: these batches are known by their recorded ids.
    let recorded: Vec<String> = histories()
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    for id in ["tolerant-50", "retry-50", "paused-50", "cancelled"] {
        assert!(recorded.iter().any(|r| r == id), "the batch {id}");
    }
}
