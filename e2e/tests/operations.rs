//! Operating batches end to end (#14): tolerated failures (counted, reported, left out, exact
//! totals), a tolerance exceeded (the batch stops early and says why), failed-item reports in
//! the output (`failed/` parts and the manifest), and cancellation (nothing left running).
//! A real dev server, the real worker and starter, and the `picky` fixture, which refuses and
//! traps on a configured set of items, so every expected figure is computed here.

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use support::{DevServer, Node, Run, wait_for};

fn server() -> &'static DevServer {
    static SERVER: OnceLock<DevServer> = OnceLock::new();
    SERVER.get_or_init(DevServer::start)
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        Node::start(
            server(),
            "operations",
            &[
                ("picky", "picky"),
                ("square_number", "square_number"),
                ("json_field", "json_field"),
            ],
            &[],
        )
    })
}

fn run(args: &[&str]) -> Run {
    node().run(args)
}

fn json_of(run: &Run) -> Value {
    assert!(run.success, "{}", node().explain(run));
    serde_json::from_str(run.stdout.trim()).expect("one JSON object")
}

/// Items `1..=n` through picky, refusing multiples of `refuse` and trapping on multiples of
/// `trap`: (sum of the outputs, indexes of the failed items, how many trapped).
fn expected(n: u64, refuse: u64, trap: u64) -> (u128, Vec<u64>, u64) {
    let failed: Vec<u64> = (1..=n)
        .filter(|i| i.is_multiple_of(refuse) || i.is_multiple_of(trap))
        .collect();
    let sum = (1..=n)
        .filter(|i| !failed.contains(i))
        .map(u128::from)
        .sum();
    let trapped = (1..=n).filter(|i| i.is_multiple_of(trap)).count() as u64;
    (sum, failed, trapped)
}

/// Item mode: each failed item is one failed activity; the leaf collects them, the tree adds
/// them up, and the summary and `--json` give the counts, kinds, samples and every index.
#[test]
fn tolerated_failures_are_counted_reported_and_left_out_in_item_mode() {
    let config = r#"{"refuse_every": 50, "trap_every": 250}"#;
    let id = "tolerated-in-item-mode";
    let args = [
        "500",
        "--plugin",
        "picky",
        "--plugin-config",
        config,
        "--max-failures",
        "10",
        "--workflow-id",
        id,
    ];
    let summary = run(&args);
    assert!(summary.success, "{}", node().explain(&summary));
    let (sum, failed, trapped) = expected(500, 50, 250);
    assert_eq!(failed.len(), 10);
    // The human summary's failure lines: the counts by kind, then samples.
    let counts = format!(
        "\nFailed items: 10 (PluginRefusedItem {}, PluginTrapped {trapped}; tolerated: at most \
         10 items)\n",
        10 - trapped
    );
    assert!(summary.stdout.contains(&counts), "{}", summary.stdout);
    let sample = summary
        .stdout
        .lines()
        .find(|line| line.starts_with("  item 50: "))
        .unwrap_or_else(|| panic!("no sample for item 50:\n{}", summary.stdout));
    assert!(
        sample.starts_with("  item 50: PluginRefusedItem: plugin picky@sha256:")
            && sample.ends_with("refused item 50: picky refuses item 50"),
        "{sample}"
    );
    assert!(
        summary.stdout.contains("  ... and 5 more\n"),
        "{}",
        summary.stdout
    );

    // The same batch attached with --json: the whole report, exactly.
    let attached = run(&["--attach", id, "--json"]);
    let report = attached.report();
    assert_eq!(report.outputs().count, 490);
    assert_eq!(report.outputs().sum, sum);
    let result = json_of(&attached)["result"].clone();
    let failures = &result["failures"];
    assert_eq!(failures["count"], 10);
    assert_eq!(failures["indexes"], json!(failed));
    assert_eq!(
        failures["by_kind"],
        json!({"PluginRefusedItem": 10 - trapped, "PluginTrapped": trapped})
    );
    let samples = failures["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 10);
    assert_eq!(samples[4]["index"], 250);
    assert_eq!(samples[4]["kind"], "PluginTrapped");
    assert_eq!(
        result["outputs"]["count"].as_u64().expect("count") + 10,
        500,
        "succeeded and failed items add up to the batch"
    );
}

/// `batch` mode: a block that fails is run again item by item (a fresh instance after each
/// trap) to find exactly which items fail; a ratio of a range batch is known from the start.
#[test]
fn tolerated_failures_are_exact_in_batch_mode() {
    let config = r#"{"refuse_every": 1000, "trap_every": 25000}"#;
    let run = run(&[
        "100000",
        "10000",
        "--mode",
        "batch",
        "--plugin",
        "picky",
        "--plugin-config",
        config,
        "--max-failure-ratio",
        "0.1%",
        "--json",
    ]);
    let result = json_of(&run)["result"].clone();
    let (sum, failed, trapped) = expected(100_000, 1000, 25_000);
    assert_eq!(
        failed.len(),
        100,
        "exactly at the tolerance: 0.1% of 100000"
    );
    assert_eq!(result["outputs"]["sum"], sum.to_string());
    assert_eq!(result["outputs"]["count"], 100_000 - 100);
    assert_eq!(result["failures"]["count"], 100);
    assert_eq!(result["failures"]["indexes"], json!(failed));
    assert_eq!(
        result["failures"]["by_kind"],
        json!({"PluginRefusedItem": 100 - trapped, "PluginTrapped": trapped})
    );
    assert_eq!(result["config"]["tolerance"]["max_failure_ppm"], 1000);
    assert_eq!(result["config"]["tolerance"]["items"], 100_000);
}

/// One failed item more than tolerated fails the batch with the count, the tolerance and the
/// first failure; siblings not yet started never start (one leaf at a time here, so the
/// figure is exact), and nothing of the batch is left running.
#[test]
fn a_batch_over_its_tolerance_stops_early_and_says_why() {
    let config = r#"{"refuse_every": 50}"#;
    let id = "stop-early";
    let failed = run(&[
        "500",
        "--plugin",
        "picky",
        "--plugin-config",
        config,
        "--max-failures",
        "2",
        "--max-leaves-in-flight",
        "1",
        "--workflow-id",
        id,
    ]);
    assert!(!failed.success, "{}", node().explain(&failed));
    // Items 50 and 100 fail in the root's first child (1..=100), 150 and 200 in its second:
    // there the root sees 4 > 2 and stops, before its children for 201..=500 start.
    assert!(
        failed.stderr.contains(
            "4 items in 1..=500 failed, more than the batch tolerates (at most 2 items); \
             first, item 50: plugin picky@sha256:"
        ),
        "{}",
        failed.stderr
    );
    let prefix = format!("WorkflowId STARTS_WITH '{id}-'");
    let running = format!("{prefix} AND ExecutionStatus = 'Running'");
    wait_for(
        "nothing of the batch running",
        Duration::from_secs(60),
        || (server().count(&running) == Some(0)).then_some(()),
    );
    // The whole tree of 500 has 5 + 25 + 125 = 155 descendants (leaves of 4, as the demo's);
    // the batch ran two of the root's five children: 2 x (1 + 5 + 25).
    let ran = server().count_workflows(&prefix, 62);
    let listed = server().cli(&["workflow", "list", "--query", &prefix, "--limit", "200"]);
    assert_eq!(ran, 62, "{}", String::from_utf8_lossy(&listed.stdout));
}

/// With an output, every failed record goes to its split's `failed/` part (index, kind,
/// reason, the start of the record), listed in the manifest with the counts by kind; the
/// parts hold exactly the other records' outputs.
#[test]
fn failed_records_go_to_failed_parts_listed_in_the_manifest() {
    let scratch = support::data_dir();
    let source = scratch.path().join("amounts.jsonl");
    // Every 7th record has no amount: json_field refuses it.
    let mut data = String::new();
    for id in 1..=3000u64 {
        if id % 7 == 0 {
            data.push_str(&format!("{{\"id\":{id}}}\n"));
        } else {
            data.push_str(&format!("{{\"id\":{id},\"amount\":{}}}\n", id * 3));
        }
    }
    std::fs::write(&source, &data).expect("source");
    let out = scratch.path().join("out");
    let run = run(&[
        "--source",
        source.to_str().expect("utf-8"),
        "--plugin",
        "json_field",
        "--plugin-config",
        r#"{"field": "amount"}"#,
        "--output",
        out.to_str().expect("utf-8"),
        "--split-size",
        "16384",
        "--max-failures",
        "1000",
    ]);
    assert!(run.success, "{}", node().explain(&run));
    let digest = support::sha256_of(&support::built_plugin("json_field"));
    // What the test expects, from the data: each record's byte position, and the outputs.
    let (mut expected_out, mut expected_failed) = (String::new(), Vec::new());
    let mut offset = 1u64;
    for line in data.lines() {
        let record: Value = serde_json::from_str(line).expect("json");
        match record.get("amount") {
            Some(amount) => expected_out.push_str(&format!("{amount}\n")),
            None => expected_failed.push(json!({
                "index": offset,
                "kind": "PluginRefusedItem",
                "reason": format!(
                    "plugin json_field@sha256:{digest} refused item {offset}: the record has no \
                     field \"amount\""
                ),
                "excerpt": line,
            })),
        }
        offset += line.len() as u64 + 1;
    }
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["items"], 3000);
    assert_eq!(manifest["failed"], 428);
    assert_eq!(expected_failed.len(), 428);
    assert_eq!(manifest["numbers"], 3000 - 428);
    assert_eq!(
        manifest["failed_by_kind"],
        json!({"PluginRefusedItem": 428})
    );
    let read = |name: &str| std::fs::read_to_string(out.join(name)).expect("part");
    let outputs: String = manifest["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| read(p["name"].as_str().expect("name")))
        .collect();
    assert!(outputs == expected_out, "the parts are exactly the outputs");
    let failed_parts = manifest["failed_parts"].as_array().expect("failed parts");
    let mut lines = Vec::new();
    let mut listed = 0;
    for part in failed_parts {
        let text = read(part["name"].as_str().expect("name"));
        assert_eq!(part["bytes"], text.len() as u64);
        listed += part["failed"].as_u64().expect("failed");
        lines.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("json")),
        );
    }
    assert_eq!(listed, 428);
    assert_eq!(lines, expected_failed, "the report, line by line");
    let on_disk = std::fs::read_dir(out.join("failed"))
        .expect("failed/")
        .count();
    assert_eq!(
        on_disk,
        failed_parts.len(),
        "one failed part per split with failures"
    );
    let report = format!(
        "\nFailed items report: {}/failed/ ({} parts)\n",
        out.display(),
        failed_parts.len()
    );
    assert!(run.stdout.contains(&report), "{}", run.stdout);
}

/// `--cancel` cancels the root; the cancellation reaches every descendant (and the server
/// terminates any still open when its parent closes) and the running `batch`-mode leaves'
/// plugin calls (at their next heartbeat); the root ends cancelled and no workflow of the
/// batch is left running.
#[test]
fn a_cancelled_batch_leaves_nothing_running() {
    let id = "cancel-me";
    // 10^12 items in leaves of 10^9: hours of work, so it is surely running when cancelled.
    // 20 leaves at once, so that it leaves the shared worker's activity slots to the others.
    let started = run(&[
        "1000000000000",
        "1000000000",
        "10",
        "--mode",
        "batch",
        "--plugin",
        "picky",
        "--max-leaves-in-flight",
        "20",
        "--no-wait",
        "--workflow-id",
        id,
    ]);
    assert!(started.success, "{}", node().explain(&started));
    let running = format!("WorkflowId STARTS_WITH '{id}-' AND ExecutionStatus = 'Running'");
    wait_for("leaves running", Duration::from_secs(60), || {
        (server().count(&running).unwrap_or(0) >= 3).then_some(())
    });
    // A leaf's activity is computing: the worker logs nothing per slice, so wait for one
    // heartbeat interval's worth of work.
    let before = node()
        .worker
        .log_text()
        .matches("batch leaf cancelled")
        .count();
    assert_eq!(before, 0);
    let cancelled = run(&["--cancel", id]);
    assert!(cancelled.success, "{}", node().explain(&cancelled));
    assert!(
        cancelled
            .stdout
            .starts_with(&format!("Batch {id} cancelled: its root has closed")),
        "{}",
        cancelled.stdout
    );
    let status = server().cli(&["workflow", "describe", "--workflow-id", id, "-o", "json"]);
    let described: Value = serde_json::from_slice(&status.stdout).expect("describe json");
    assert_eq!(
        described["workflowExecutionInfo"]["status"], "WORKFLOW_EXECUTION_STATUS_CANCELED",
        "{described}"
    );
    wait_for(
        "nothing of the batch running",
        Duration::from_secs(60),
        || (server().count(&running) == Some(0)).then_some(()),
    );
    // The running leaves' plugin calls stop at their next heartbeat, whose answer says their
    // workflow is cancelled or gone.
    wait_for("the plugin calls stopped", Duration::from_secs(60), || {
        node()
            .worker
            .log_text()
            .contains("batch leaf cancelled: its plugin calls stopped")
            .then_some(())
    });
}

/// `--retry-failed` re-runs exactly the failed items of a range batch (here with a
/// configuration that no longer refuses them): the two batches' counts and sums together are
/// the whole range's, and the retry's summary says what it retried and with which version.
#[test]
fn a_retry_runs_exactly_the_failed_items_and_completes_the_totals() {
    let id = "retry-source";
    // Leaves of 4, which the retry keeps: its 10 items run in 3 leaves.
    let first = node().report(&[
        "500",
        "4",
        "--plugin",
        "picky",
        "--plugin-config",
        r#"{"refuse_every": 50, "trap_every": 250}"#,
        "--max-failures",
        "10",
        "--workflow-id",
        id,
    ]);
    let retry = node().report(&[
        "--retry-failed",
        id,
        "--plugin-config",
        r#"{"refuse_every": 0}"#,
    ]);
    let (sum, failed, _) = expected(500, 50, 250);
    let retried: u128 = failed.iter().map(|&i| u128::from(i)).sum();
    assert_eq!(retry.outputs().count, 10);
    assert_eq!(retry.outputs().sum, retried);
    assert_eq!(
        retry.outputs().head,
        failed,
        "exactly the failed items, in order"
    );
    let digest = support::sha256_of(&support::built_plugin("picky"));
    let retry_of = retry.result.config.retry_of.as_ref().expect("a retry");
    assert_eq!(
        (retry_of.batch.as_str(), retry_of.failed),
        (id, 10),
        "what it retries"
    );
    assert_eq!(retry_of.plugin.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(
        retry.result.config.plugin, retry_of.plugin,
        "the same version"
    );
    let first_sum = first.outputs().sum;
    assert_eq!(first_sum, sum);
    assert_eq!(
        first_sum + retried,
        500 * 501 / 2,
        "together, every item once"
    );
    // Nothing failed in the retry, so retrying it again has nothing to do.
    let again = run(&["--retry-failed", &retry.workflow_id]);
    assert!(again.success, "{}", node().explain(&again));
    assert!(
        again
            .stdout
            .contains("has no failed items: nothing to retry"),
        "{}",
        again.stdout
    );
}

/// A data batch's retry reads the failed records where they start (from the earlier batch's
/// `failed/` parts) and writes its own output and manifest: the two outputs together hold an
/// output for every record once. A compressed source's retry reads its stream once, in one
/// leaf, and its failed items are the same positions as the plain file's.
#[test]
fn a_data_retry_reads_the_failed_records_and_writes_its_own_output() {
    let mut data = String::new();
    for id in 1..=2000u64 {
        match id % 9 {
            0 => data.push_str(&format!("{{\"id\":{id},\"age\":\"unknown\"}}\n")),
            _ => data.push_str(&format!("{{\"id\":{id},\"age\":{}}}\n", id % 90)),
        }
    }
    let gz = support::data::gzip_members(data.as_bytes(), 2);
    // 222 records in leaves of at most 100: the root splits them in 5 (the demo's rule).
    let cases = [
        ("people.jsonl", data.as_bytes(), 5),
        ("people.jsonl.gz", &gz[..], 1),
        // A directory of 7 objects, every other one gzip: one leaf, object by object.
        ("people/", data.as_bytes(), 1),
    ];
    let mut failed_parts = Vec::new();
    for (name, stored, retry_parts) in cases {
        failed_parts.push(retry_once(name, stored, retry_parts));
    }
    assert_eq!(
        failed_parts[0], failed_parts[1],
        "a compressed source's failed items are its records' positions in the stream"
    );
    // A many-object source's failed lines name the object and the position in it.
    let lines: Vec<Value> = String::from_utf8_lossy(&failed_parts[2])
        .lines()
        .map(|line| serde_json::from_str(line).expect("a failed line"))
        .collect();
    assert_eq!(lines.len(), 222);
    assert_eq!(lines[0]["object"], "people-0.jsonl");
    assert_eq!(lines[0]["position"], lines[0]["index"]);
    let last = &lines[221];
    assert_eq!(last["object"], "people-6.jsonl");
    assert_eq!(
        last["index"].as_u64().expect("index"),
        (6 << 40) + last["position"].as_u64().expect("position")
    );
}

/// A data batch over `stored`, its retry, and their checks (see the test above); returns the
/// first batch's failed parts, concatenated.
fn retry_once(name: &str, stored: &[u8], retry_parts: usize) -> Vec<u8> {
    let scratch = support::data_dir();
    let source = scratch.path().join(name);
    if name.ends_with('/') {
        // Whole lines dealt into 7 objects, the odd ones gzip-compressed.
        std::fs::create_dir(&source).expect("dir");
        let lines: Vec<&[u8]> = stored.split_inclusive(|&b| b == b'\n').collect();
        for (i, chunk) in lines.chunks(lines.len().div_ceil(7)).enumerate() {
            let object = chunk.concat();
            match i % 2 {
                0 => std::fs::write(source.join(format!("people-{i}.jsonl")), object),
                _ => std::fs::write(
                    source.join(format!("people-{i}.jsonl.gz")),
                    support::data::gzip_members(&object, 1),
                ),
            }
            .expect("object");
        }
    } else {
        std::fs::write(&source, stored).expect("source");
    }
    let (out, out_retry) = (scratch.path().join("out"), scratch.path().join("retry"));
    let source = source.to_str().expect("utf-8");
    let id = format!("data-retry-{}", name.trim_end_matches('/'));
    let id = id.as_str();
    let split: &[&str] = if name.ends_with(".gz") || name.ends_with('/') {
        &[]
    } else {
        &["--split-size", "8192"]
    };
    let first = run(&[
        "--source",
        source,
        "--plugin",
        "json_field",
        "--plugin-config",
        r#"{"field": "age"}"#,
        "--output",
        out.to_str().expect("utf-8"),
        "--max-failure-ratio",
        "20%",
        "--workflow-id",
        id,
    ]
    .iter()
    .chain(split)
    .copied()
    .collect::<Vec<_>>());
    assert!(first.success, "{}", node().explain(&first));
    // The records without a numeric age, again, taking their id instead.
    let retry = run(&[
        "--retry-failed",
        id,
        "--plugin-config",
        r#"{"field": "id"}"#,
        "--output",
        out_retry.to_str().expect("utf-8"),
    ]);
    assert!(retry.success, "{}", node().explain(&retry));
    let manifest = |dir: &std::path::Path| -> Value {
        serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).expect("manifest"))
            .expect("json")
    };
    let (m1, m2) = (manifest(&out), manifest(&out_retry));
    assert_eq!(m1["failed"], 222);
    assert_eq!(m2["items"], 222);
    assert_eq!(m2["failed"], 0);
    assert_eq!(m2["retry_of"]["batch"], id);
    assert_eq!(m2["retry_of"]["failed"], 222);
    assert_eq!(m2["parts"].as_array().expect("parts").len(), retry_parts);
    assert_eq!(
        m1["numbers"].as_u64().expect("numbers") + m2["numbers"].as_u64().expect("numbers"),
        2000,
        "together, every record once"
    );
    let outputs = |dir: &std::path::Path, m: &Value| -> String {
        m["parts"]
            .as_array()
            .expect("parts")
            .iter()
            .map(|p| {
                std::fs::read_to_string(dir.join(p["name"].as_str().expect("name"))).expect("part")
            })
            .collect()
    };
    let expected_retry: String = (1..=2000u64)
        .filter(|id| id % 9 == 0)
        .map(|id| format!("{id}\n"))
        .collect();
    assert!(
        outputs(&out_retry, &m2) == expected_retry,
        "the retry's parts: the failed records' ids, in order"
    );
    let expected_first: String = (1..=2000u64)
        .filter(|id| id % 9 != 0)
        .map(|id| format!("{}\n", id % 90))
        .collect();
    assert!(outputs(&out, &m1) == expected_first);
    // The retry refuses to write over the earlier output.
    let clash = run(&[
        "--retry-failed",
        id,
        "--output",
        out.to_str().expect("utf-8"),
    ]);
    assert!(!clash.success);
    assert!(
        clash.stderr.contains("the retry's --output must differ"),
        "{}",
        clash.stderr
    );
    support::data::parts_of(&out.join("failed"))
}

/// `--pause` stops a batch from starting new work: the root passes the pause to its running
/// children, each to its own, and each finishes what it runs and then waits. The test waits
/// until every running workflow of the batch answers that it is paused and has no activity
/// pending (so nothing can progress), checks that again, then `--resume`s: the batch completes
/// with exact totals.
#[test]
fn a_paused_batch_starts_no_new_work_until_resumed() {
    let id = "pause-me";
    // One leaf at a time, so that the batch is still young when paused.
    let started = run(&[
        "500",
        "--max-leaves-in-flight",
        "1",
        "--no-wait",
        "--workflow-id",
        id,
    ]);
    assert!(started.success, "{}", node().explain(&started));
    let completed = format!("WorkflowId STARTS_WITH '{id}-' AND ExecutionStatus = 'Completed'");
    wait_for("some leaves done", Duration::from_secs(60), || {
        (server().count(&completed).unwrap_or(0) >= 3).then_some(())
    });
    let paused = run(&["--pause", id]);
    assert!(paused.success, "{}", node().explain(&paused));
    assert!(
        paused.stdout.starts_with(&format!("Batch {id} pausing")),
        "{}",
        paused.stdout
    );
    let quiet = || quiescent(id).then_some(());
    wait_for(
        "every running workflow paused, nothing pending",
        Duration::from_secs(60),
        quiet,
    );
    let done_while_paused = server().count(&completed);
    assert!(quiescent(id), "still paused and still nothing pending");
    assert_eq!(server().count(&completed), done_while_paused);
    let resumed = run(&["--resume", id]);
    assert!(resumed.success, "{}", node().explain(&resumed));
    let summary = node().report(&["--attach", id]);
    assert_eq!(summary.outputs().count, 500);
    assert_eq!(summary.outputs().sum, support::sum_of_squares(500));
}

/// Whether batch `id` is paused through and through: it is running, and each of its workflows
/// still running says it is paused and has no activity pending.
fn quiescent(id: &str) -> bool {
    let query = format!(
        "(WorkflowId = '{id}' OR WorkflowId STARTS_WITH '{id}-') AND ExecutionStatus = 'Running'"
    );
    let listed = server().cli(&["workflow", "list", "--query", &query, "-o", "json"]);
    let Ok(Value::Array(running)) = serde_json::from_slice::<Value>(&listed.stdout) else {
        return false;
    };
    let ids: Vec<String> = running
        .iter()
        .filter_map(|w| w["execution"]["workflowId"].as_str().map(str::to_owned))
        .collect();
    !ids.is_empty()
        && ids.contains(&id.to_owned())
        && ids.iter().all(|workflow| {
            let described = server().cli(&[
                "workflow",
                "describe",
                "--workflow-id",
                workflow,
                "-o",
                "json",
            ]);
            let Ok(described) = serde_json::from_slice::<Value>(&described.stdout) else {
                return false;
            };
            let status = &described["workflowExecutionInfo"]["status"];
            if status != "WORKFLOW_EXECUTION_STATUS_RUNNING" {
                return true; // closed since it was listed: it runs nothing
            }
            let pending = described["pendingActivities"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            let answer = server().cli(&[
                "workflow",
                "query",
                "--workflow-id",
                workflow,
                "--type",
                "paused",
                "-o",
                "json",
            ]);
            let text = String::from_utf8_lossy(&answer.stdout);
            !pending && text.contains("true")
        })
}
