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
    let mut holder = Worker::start(&server, QUEUE, plugins.path());

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
    let data_dir = tempfile::tempdir().expect("data dir");
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
