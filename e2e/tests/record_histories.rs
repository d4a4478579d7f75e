//! Records the workflow histories that `worker/tests/replay.rs` replays: real batches on a
//! real dev server, each tree's every workflow saved as the SDK's history JSON in
//! `worker/tests/histories/`. Run it (it is ignored otherwise) after a *deliberate* change of
//! the workflow's commands, behind a patch marker, to add histories of the new version:
//!
//! ```text
//! cargo test --release --workspace --features e2e/record-histories --test record_histories -- --ignored
//! ```

mod support;

use std::path::Path;

use batch_core::connect::{ConnectOverrides, connect};
use batch_core::ids::root_workflow_id;
use batch_core::workflow_ref::BatchWorkflowRef;
use batch_core::{DEFAULT_PLUGIN, LeafMode};
use support::{DevServer, Worker, install_plugin, starter};

const QUEUE: &str = "replay";

/// Every workflow id of the tree of items `1..=n` (leaves of 10, 5 children) rooted at `root`.
fn tree_ids(root: &str, n: u64) -> Vec<String> {
    support::tree_nodes(root, n, 10, 5)
        .into_iter()
        .map(|node| node.id)
        .collect()
}

#[test]
#[ignore = "records fixtures: run with --ignored after a deliberate workflow change"]
fn record_replay_fixtures() {
    let server = DevServer::start();
    let plugins = tempfile::tempdir().expect("plugins");
    install_plugin(plugins.path(), "square_number", "square_number");
    install_plugin(plugins.path(), "hostile", "hostile");
    install_plugin(plugins.path(), "json_filter", "json_filter");
    install_plugin(plugins.path(), "picky", "picky");
    let mut holder = Worker::start(&server, QUEUE, plugins.path());
    // Workflows that may not exist (children a stopped or cancelled batch never started).
    let mut if_started = Vec::new();

    let mut recorded = Vec::new();
    for (args, mode) in [
        (vec!["50"], LeafMode::Item),
        (vec!["50", "--mode", "local"], LeafMode::Local),
        (vec!["50", "--mode", "batch"], LeafMode::Batch),
    ] {
        let run = starter(&server, QUEUE, &args);
        assert!(run.success, "{}", run.stderr);
        let root = root_workflow_id(50, 10, 5, DEFAULT_PLUGIN, mode, None, &Default::default());
        recorded.extend(tree_ids(&root, 50));
    }
    let failing = starter(&server, QUEUE, &["5", "5", "--plugin", "hostile"]);
    assert!(!failing.success);
    recorded.push(root_workflow_id(
        5,
        5,
        5,
        "hostile",
        LeafMode::Item,
        None,
        &Default::default(),
    ));

    // A data batch: a JSON Lines file in splits of 1 KiB (several levels), parts and a
    // manifest written to a directory.
    let data_dir = support::data_dir();
    let source = data_dir.path().join("events.jsonl");
    let data = support::data::events(300);
    std::fs::write(&source, &data).expect("write source");
    let output = data_dir.path().join("out");
    let run = starter(
        &server,
        QUEUE,
        &[
            "--source",
            source.to_str().expect("utf-8"),
            "--plugin",
            "json_filter",
            "--plugin-config",
            support::data::FILTER,
            "--output",
            output.to_str().expect("utf-8"),
            "--split-size",
            "1024",
            "--workflow-id",
            "data-1024",
        ],
    );
    assert!(run.success, "{}", run.stderr);
    assert!(output.join("_manifest.json").exists());
    recorded.extend(
        support::tree_nodes("data-1024", data.len() as u64, 1024, 5)
            .into_iter()
            .map(|node| node.id),
    );

    // Operating batches (#14): tolerated failures, a tolerance exceeded (the root stops its
    // running children), a retry of the failed items, a pause passed down and resumed, and a
    // cancelled batch.
    let refuse_7 = r#"{"refuse_every": 7}"#;
    let tolerant = ["50", "--plugin", "picky", "--plugin-config", refuse_7];
    let run = starter(
        &server,
        QUEUE,
        &[
            &tolerant[..],
            &["--max-failures", "10", "--workflow-id", "tolerant-50"],
        ]
        .concat(),
    );
    assert!(run.success, "{}", run.stderr);
    recorded.extend(tree_ids("tolerant-50", 50));
    let run = starter(
        &server,
        QUEUE,
        &[
            &tolerant[..],
            &["--max-failures", "2", "--workflow-id", "exceeded-50"],
        ]
        .concat(),
    );
    assert!(!run.success, "{}", run.stdout);
    recorded.push("exceeded-50".into());
    if_started.extend(tree_ids("exceeded-50", 50).into_iter().skip(1));
    let run = starter(
        &server,
        QUEUE,
        &[
            "--retry-failed",
            "tolerant-50",
            "--plugin-config",
            r#"{"refuse_every": 0}"#,
            "--workflow-id",
            "retry-50",
        ],
    );
    assert!(run.success, "{}", run.stderr);
    recorded.push("retry-50".into());
    let paused = [
        "50",
        "--max-leaves-in-flight",
        "1",
        "--workflow-id",
        "paused-50",
    ];
    let run = starter(&server, QUEUE, &[&paused[..], &["--no-wait"]].concat());
    assert!(run.success, "{}", run.stderr);
    assert!(starter(&server, QUEUE, &["--pause", "paused-50"]).success);
    support::wait_for(
        "the root paused",
        std::time::Duration::from_secs(60),
        || {
            let out = server.cli(&[
                "workflow",
                "query",
                "--workflow-id",
                "paused-50",
                "--type",
                "paused",
            ]);
            String::from_utf8_lossy(&out.stdout)
                .contains("true")
                .then_some(())
        },
    );
    assert!(starter(&server, QUEUE, &["--resume", "paused-50"]).success);
    let run = starter(&server, QUEUE, &["--attach", "paused-50"]);
    assert!(run.success, "{}", run.stderr);
    recorded.extend(tree_ids("paused-50", 50));
    let run = starter(
        &server,
        QUEUE,
        &[
            "1000000000000",
            "1000000000",
            "10",
            "--mode",
            "batch",
            "--plugin",
            "picky",
            "--no-wait",
            "--workflow-id",
            "cancelled",
        ],
    );
    assert!(run.success, "{}", run.stderr);
    support::wait_for("leaves running", std::time::Duration::from_secs(60), || {
        let running = "WorkflowId STARTS_WITH 'cancelled-' AND ExecutionStatus = 'Running'";
        (server.count(running).unwrap_or(0) >= 20).then_some(())
    });
    assert!(starter(&server, QUEUE, &["--cancel", "cancelled"]).success);
    recorded.push("cancelled".into());
    if_started.extend((0..10).map(|i| format!("cancelled-c{i}")));
    if_started.extend((0..10).map(|i| format!("cancelled-c0-c{i}")));

    // A worker without the plugin takes some leaves: their items fail there and are re-sent
    // to the plugin's queue, which only the holder polls.
    let empty = tempfile::tempdir().expect("empty plugins");
    let _lacking = Worker::start(&server, QUEUE, empty.path());
    let routed = starter(&server, QUEUE, &["50", "--workflow-id", "routed-50"]);
    assert!(routed.success, "{}", routed.stderr);
    recorded.extend(tree_ids("routed-50", 50));
    holder.stop();

    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../worker/tests/histories");
    std::fs::create_dir_all(&out_dir).expect("histories dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut routed_items = 0;
    runtime.block_on(async {
        let client = connect(&ConnectOverrides {
            address: Some(server.address.clone()),
            ..Default::default()
        })
        .await
        .expect("connect")
        .client;
        for id in &recorded {
            let json = client
                .get_workflow_handle::<BatchWorkflowRef>(id.clone())
                .fetch_history(Default::default())
                .to_json()
                .await
                .unwrap_or_else(|e| panic!("history of {id}: {e}"));
            routed_items += String::from_utf8_lossy(&json)
                .matches("replay/plugin/square_number")
                .count();
            std::fs::write(out_dir.join(format!("{id}.json")), json).expect("write history");
        }
        for id in &if_started {
            if let Ok(json) = client
                .get_workflow_handle::<BatchWorkflowRef>(id.clone())
                .fetch_history(Default::default())
                .to_json()
                .await
                && !json.is_empty()
            {
                std::fs::write(out_dir.join(format!("{id}.json")), json).expect("write history");
            }
        }
    });
    assert!(
        routed_items > 0,
        "no item of routed-50 went through the plugin's queue: run again"
    );
    println!(
        "recorded {} histories into {}",
        recorded.len(),
        out_dir.display()
    );
}
