//! Batches end to end: a real `temporal server start-dev`, the real worker and starter
//! binaries, real plugins. One server and one worker serve every test in this file (as one
//! worker serves many batches in production); each test runs its own batch.

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use batch_core::TreeShape;
use support::{
    DevServer, Report, Run, Starter, Worker, built_plugins_dir, starter, sum_of_squares, wait_for,
};

const QUEUE: &str = "batch-processing-task-queue";

struct Env {
    server: DevServer,
    _plugins: tempfile::TempDir,
    _worker: Worker,
}

/// The shared server and worker. The worker's plugins directory holds the real plugins plus
/// the `hostile` fixture, so one test can break a batch while the others keep running.
fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let server = DevServer::start();
        let plugins = tempfile::tempdir().expect("plugins dir");
        let built = built_plugins_dir();
        for (dir, name) in [
            (&built, "square_number"),
            (&built, "cube"),
            (&built.join("../test-plugins"), "hostile"),
        ] {
            let from = dir.join(format!("{name}.wasm"));
            assert!(
                from.is_file(),
                "{} is missing: run scripts/build-plugins.sh --fixtures",
                from.display()
            );
            std::fs::copy(&from, plugins.path().join(format!("{name}.wasm"))).expect("copy plugin");
        }
        let worker = Worker::start(&server, QUEUE, plugins.path());
        Env {
            server,
            _plugins: plugins,
            _worker: worker,
        }
    })
}

fn run(args: &[&str]) -> Run {
    starter(&env().server, QUEUE, args)
}

/// A batch's typed result (`--json`).
fn report(args: &[&str]) -> Report {
    Starter::on(&env().server, QUEUE).args(args).report()
}

fn assert_succeeded(run: &Run) {
    assert!(
        run.success,
        "starter failed:\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

#[test]
fn fifty_items_make_six_workflows() {
    let run = run(&["50", "--json"]);
    // Not a terminal: no progress bar in the output.
    assert!(!run.stderr.contains("workflows done"), "{}", run.stderr);
    let run = run.report();
    assert_eq!(run.outputs().sum, 42925);
    assert_eq!(run.outputs().sum, sum_of_squares(50));
    assert_eq!(run.outputs().count, 50);
    assert_eq!(run.result.max_depth, 1);
    assert_eq!(run.result.workflows, 6);
    assert_eq!(run.result.activities, 50);
    assert_eq!(run.outputs().head, [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]);
    assert_eq!(
        run.outputs().tail,
        [1681, 1764, 1849, 1936, 2025, 2116, 2209, 2304, 2401, 2500]
    );
    let on_server = env()
        .server
        .count_workflows("WorkflowId STARTS_WITH 'batch-processing-50-b10-c5'", 6);
    assert_eq!(on_server, 6);
}

#[test]
fn two_thousand_items_reproduce_the_demo() {
    let run = report(&[]);
    assert_eq!(run.outputs().count, 2000);
    assert_eq!(run.outputs().sum, 2668667000);
    assert_eq!(run.result.max_depth, 4);
    assert_eq!(run.result.config.batch_size, 10);
    assert_eq!(run.result.config.max_children, 5);
    assert_eq!(run.result.workflows, 656);
    assert_eq!(run.result.activities, 2000);
    assert_eq!(run.workflow_id, "batch-processing-2000-b10-c5");
    assert_eq!(
        run.outputs().tail,
        [
            3964081, 3968064, 3972049, 3976036, 3980025, 3984016, 3988009, 3992004, 3996001,
            4000000
        ]
    );
    let on_server = env()
        .server
        .count_workflows("WorkflowId STARTS_WITH 'batch-processing-2000-b10-c5'", 656);
    assert_eq!(on_server, 656);
}

#[test]
fn cube_is_selected_by_name_on_the_same_worker() {
    let n: u128 = 300;
    let run = report(&["300", "--plugin", "cube"]);
    let expected = (n * (n + 1) / 2).pow(2);
    assert_eq!(run.outputs().sum, expected);
    assert_eq!(run.result.config.plugin.name, "cube");
    assert_eq!(run.plugin_digest().len(), "sha256:".len() + 64);
    assert_eq!(run.workflow_id, "batch-processing-cube-300-b10-c5");
    let shape = TreeShape::of(300, 10, 5);
    assert_eq!(run.result.workflows, shape.workflows);
    let on_server = env().server.count_workflows(
        "WorkflowId STARTS_WITH 'batch-processing-cube-300-b10-c5'",
        shape.workflows,
    );
    assert_eq!(on_server, shape.workflows);
}

#[test]
fn invalid_input_is_refused_before_anything_starts() {
    for (args, message) in [
        (
            &["10", "10", "1"][..],
            "max_children must be between 2 and 1000 (got 1)",
        ),
        (&["0"][..], "n must be at least 1 (got 0)"),
        (
            &["10", "0"][..],
            "batch_size must be between 1 and 1000 in item mode (got 0)",
        ),
        (&["abc"][..], "\"abc\" is not a whole number"),
        (&["-5"][..], "-5 is negative"),
        (
            &["10", "--plugin", "../x"][..],
            "plugin name \"../x\" is invalid",
        ),
    ] {
        let run = run(args);
        assert!(!run.success, "{args:?} must fail");
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
    let started = env()
        .server
        .count_workflows("WorkflowId STARTS_WITH 'batch-processing-10-b10-c1'", 0);
    assert_eq!(started, 0);
}

/// A client other than our starter may send anything: the workflow fails at once, for good,
/// with the reason, instead of retrying its task forever.
#[test]
fn a_workflow_started_with_bad_input_fails_fast_with_the_reason() {
    let server = &env().server;
    for (id, input, reason) in [
        (
            "direct-missing-field",
            r#"{"first":1}"#,
            "missing field `last`",
        ),
        (
            "direct-bad-children",
            r#"{"first":1,"last":50,"config":{"batch_size":10,"max_children":1,"plugin":{"name":"cube"}}}"#,
            "invalid batch input: max_children must be between 2 and 1000 (got 1)",
        ),
        (
            "direct-not-json-object",
            r#""hello""#,
            "batch input is not a valid node input",
        ),
        // Bounds any client must respect, not only the starter's defaults.
        (
            "direct-flood",
            r#"{"first":1,"last":50,"config":{"batch_size":1000,"max_children":5,"max_leaves_in_flight":100000,"plugin":{"name":"cube"}}}"#,
            "invalid batch input: the batch asks for up to 100000000 activities in flight",
        ),
        (
            "direct-too-deep",
            r#"{"first":1,"last":50,"depth":4294967295,"config":{"batch_size":10,"max_children":5,"plugin":{"name":"cube"}}}"#,
            "invalid batch input: depth must be at most 64 (got 4294967295)",
        ),
    ] {
        let started = Instant::now();
        let out = server.cli(&[
            "workflow",
            "execute",
            "--type",
            "BatchProcessingWorkflow",
            "--task-queue",
            QUEUE,
            "--workflow-id",
            id,
            "--input",
            input,
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{id}: {text}");
        assert!(
            text.contains("FAILED") && text.contains(reason),
            "{id}: {text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{id} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn an_unknown_plugin_fails_the_batch_and_lists_the_available_ones() {
    let run = run(&["20", "--plugin", "no_such_plugin"]);
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("plugin \"no_such_plugin\" not found in")
            && run
                .stderr
                .contains("available plugins: cube, hostile, square_number"),
        "{}",
        run.stderr
    );
}

/// Every way the hostile plugin misbehaves fails its item at the first attempt, with the
/// plugin's name and digest; the batch fails with the reason; the worker keeps serving.
#[test]
fn a_misbehaving_plugin_fails_its_batch_without_retries_and_the_worker_keeps_serving() {
    let run = run(&["5", "5", "--plugin", "hostile"]);
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stderr.contains("5 of 5 items in 1..=5 failed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("item 1: plugin hostile@sha256:")
            && run.stderr.contains("exceeded its CPU deadline"),
        "{}",
        run.stderr
    );

    // The history shows one attempt per item: deterministic failures are not retried.
    let server = &env().server;
    let out = server.cli(&[
        "workflow",
        "show",
        "--workflow-id",
        "batch-processing-hostile-5-b5-c5",
        "--output",
        "json",
    ]);
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history JSON");
    let events = history["events"].as_array().expect("events");
    let attempts: Vec<u64> = events
        .iter()
        .filter_map(|e| e.get("activityTaskStartedEventAttributes"))
        .map(|a| a["attempt"].as_u64().unwrap_or(1))
        .collect();
    // resolve_plugin + 5 items, each started exactly once.
    assert_eq!(attempts, [1; 6], "{attempts:?}");
    let failures: Vec<String> = events
        .iter()
        .filter_map(|e| e.get("activityTaskFailedEventAttributes"))
        .map(|a| {
            a["failure"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(failures.len(), 5, "{failures:?}");
    for (needle, what) in [
        ("exceeded its CPU deadline", "loop"),
        ("unreachable", "panic"),
        ("memory", "memory hog"),
        ("stack", "stack overflow"),
        ("item 5 is not welcome here", "refusal"),
    ] {
        assert!(
            failures.iter().any(|f| f.contains(needle)),
            "{what}: {failures:?}"
        );
    }

    // Same worker, next batch: unaffected.
    let after = wait_for(
        "a healthy batch after the hostile one",
        Duration::from_secs(120),
        || {
            Some(self::run(&[
                "30",
                "--workflow-id",
                "after-hostile",
                "--json",
            ]))
        },
    );
    assert_eq!(after.report().outputs().sum, sum_of_squares(30));
}

/// The three leaf modes give the same result for the same batch; only the number of
/// activities (and the ids) differ.
#[test]
fn every_leaf_mode_gives_the_same_result() {
    let runs = ["item", "local", "batch"].map(|mode| (mode, report(&["500", "--mode", mode])));
    let shape = TreeShape::of(500, 10, 5);
    let first = &runs[0].1;
    for (mode, r) in &runs {
        assert_eq!(r.result.config.mode.to_string(), *mode);
        let expected_activities = if *mode == "batch" { shape.leaves } else { 500 };
        assert_eq!(r.result.activities, expected_activities, "{mode}");
        assert_eq!(r.outputs(), first.outputs(), "outputs in {mode} mode");
        assert_eq!(
            (r.result.max_depth, r.result.workflows, r.plugin_digest()),
            (
                first.result.max_depth,
                first.result.workflows,
                first.plugin_digest()
            ),
            "the tree and the plugin in {mode} mode"
        );
    }
    assert_eq!(first.outputs().sum, sum_of_squares(500));
    assert_eq!(runs[1].1.workflow_id, "batch-processing-500-local10-c5");
    assert_eq!(runs[2].1.workflow_id, "batch-processing-500-batch10-c5");
    let local_tree = env().server.count_workflows(
        "WorkflowId STARTS_WITH 'batch-processing-500-local10-c5'",
        shape.workflows,
    );
    assert_eq!(local_tree, shape.workflows);
}

/// Batch mode with large leaves: a million items, exact u128 sum.
#[test]
fn batch_mode_processes_a_million_items_exactly() {
    let run = report(&["1000000", "100000", "10", "--mode", "batch"]);
    assert_eq!(run.outputs().sum, sum_of_squares(1_000_000));
    assert_eq!(run.result.workflows, 11);
    assert_eq!(run.result.activities, 10);
    assert_eq!(run.outputs().tail.last(), Some(&1_000_000_000_000));
}

/// A window of 3 in-flight children or activities per node still completes the batch exactly.
#[test]
fn a_small_in_flight_window_still_completes_exactly() {
    let run = report(&[
        "300",
        "20",
        "10",
        "--max-in-flight",
        "3",
        "--workflow-id",
        "windowed-300",
    ]);
    assert_eq!(run.outputs().sum, sum_of_squares(300));
    assert_eq!(run.result.workflows, TreeShape::of(300, 20, 10).workflows);
    let bad = self::run(&["300", "--max-in-flight", "0"]);
    assert!(
        !bad.success
            && bad
                .stderr
                .contains("max_in_flight must be between 1 and 1000 (got 0)"),
        "{}",
        bad.stderr
    );
}

/// `--no-wait` starts and returns the id; `--attach` waits for it later; `--json` prints one
/// JSON object with every summary field.
#[test]
fn a_batch_can_be_started_without_waiting_and_attached_to_later() {
    let id = "batch-processing-120-b10-c5";
    let started = run(&["120", "--no-wait"]);
    assert_succeeded(&started);
    assert_eq!(started.stdout.trim(), id);
    assert!(
        started.stderr.contains(&format!("starter --attach {id}")),
        "{}",
        started.stderr
    );

    let attached = run(&["--attach", id, "--json"]);
    assert_succeeded(&attached);
    let report: serde_json::Value =
        serde_json::from_str(attached.stdout.trim()).expect("one JSON object");
    assert_eq!(report["workflow_id"], id);
    let result = &report["result"];
    assert_eq!(result["outputs"]["sum"], sum_of_squares(120).to_string());
    assert_eq!(result["outputs"]["count"], 120);
    assert_eq!(result["outputs"]["head"][2], 9);
    assert_eq!(result["workflows"], TreeShape::of(120, 10, 5).workflows);
    assert_eq!(result["config"]["batch_size"], 10);
    assert_eq!(result["config"]["mode"], "item");
    assert_eq!(result["config"]["plugin"]["name"], "square_number");
    assert_eq!(
        result["config"]["plugin"]["digest"].as_str().map(str::len),
        Some(64)
    );
    assert!(report["wall_seconds"].as_f64().is_some());

    let missing = run(&["--attach", "no-such-batch"]);
    assert!(!missing.success);
    assert!(
        missing.stderr.contains("batch no-such-batch failed"),
        "{}",
        missing.stderr
    );
}

/// In a terminal (a pseudo-terminal made by `script`), the starter shows a progress bar driven
/// by the server's count of completed workflows, then clears it and prints the summary.
#[test]
fn a_terminal_gets_a_progress_bar_that_clears_itself() {
    let server = &env().server;
    let transcript = server.scratch.path().join("tty-400.txt");
    let command = format!(
        "{} 400 --address {} --task-queue {QUEUE} --workflow-id tty-400",
        support::binary("starter").display(),
        server.address
    );
    let status = std::process::Command::new("script")
        .args(["-qec", &command])
        .arg(&transcript)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run script");
    let text =
        String::from_utf8_lossy(&std::fs::read(&transcript).expect("transcript")).into_owned();
    assert!(status.success(), "{text}");
    let total = TreeShape::of(400, 10, 5).workflows;
    assert!(text.contains(&format!("/{total} workflows done")), "{text}");
    assert!(
        text.contains(&format!("Sum of all squares: {}", sum_of_squares(400))),
        "{text}"
    );
}

/// Starting a batch whose id is already running attaches to it: one run on the server, one
/// result, printed by both starters. The root and its children say what they cover.
#[test]
fn starting_a_running_batch_again_attaches_to_it() {
    let id = "attach-again-1000";
    // n=1000 takes seconds; the second start follows the first within milliseconds.
    let first = run(&["1000", "--no-wait", "--workflow-id", id]);
    assert_succeeded(&first);
    let second = run(&["1000", "--workflow-id", id, "--json"]);
    assert_eq!(second.report().outputs().sum, sum_of_squares(1000));
    // The same run: both starters print its run id.
    let run_id = |text: &str| {
        text.split("(run ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no run id in: {text}"))
    };
    assert_eq!(run_id(&first.stderr), run_id(&second.stderr));
    assert_eq!(env().server.count(&format!("WorkflowId = '{id}'")), Some(1));

    // The summaries shown by the Web UI and `temporal workflow describe`.
    let describe = |workflow_id: &str| {
        let out = env().server.cli(&[
            "workflow",
            "describe",
            "--workflow-id",
            workflow_id,
            "--output",
            "json",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let root = describe(id);
    assert!(
        root.contains(
            "items 1..=1000 (depth 0, item mode, plugin square_number, batch size 10, max children 5)"
        ),
        "{root}"
    );
    let child = describe(&batch_core::ids::child_workflow_id(id, 1));
    assert!(
        child.contains("items 201..=400 (depth 1, item mode, plugin square_number"),
        "{child}"
    );
}

/// A batch-wide cap on running leaves: never more than 3 leaves open at once (read back from
/// the leaves' start and close times on the server), and the exact result.
#[test]
fn a_leaf_budget_caps_the_leaves_running_at_once() {
    let (n, budget) = (400u64, 3usize);
    let run = report(&[
        "400",
        "--max-leaves-in-flight",
        "3",
        "--workflow-id",
        "leaf-budget-400",
    ]);
    assert_eq!(run.outputs().sum, sum_of_squares(n.into()));
    let shape = TreeShape::of(n, 10, 5);
    assert_eq!(run.result.workflows, shape.workflows);

    // Every workflow of the tree below the root, with its start and close time, once the
    // server's visibility (updated asynchronously) has them all closed.
    let below_root = shape.workflows as usize - 1;
    let listed = wait_for(
        "every workflow closed in visibility",
        Duration::from_secs(30),
        || {
            let out = env().server.cli(&[
                "workflow",
                "list",
                "--query",
                "WorkflowId STARTS_WITH 'leaf-budget-400-' AND ExecutionStatus = 'Completed'",
                "--limit",
                "10000",
                "--output",
                "json",
            ]);
            let listed: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (listed.as_array()?.len() == below_root).then_some(listed)
        },
    );
    let mut events: Vec<(String, i32)> = Vec::new();
    let mut leaves = 0;
    for workflow in listed.as_array().expect("a list") {
        let id = workflow["execution"]["workflowId"]
            .as_str()
            .unwrap_or_default();
        // A leaf is a workflow with no children: no other id extends it.
        let is_leaf = !listed.as_array().into_iter().flatten().any(|other| {
            other["execution"]["workflowId"]
                .as_str()
                .is_some_and(|o| o.starts_with(&format!("{id}-")))
        });
        if is_leaf {
            leaves += 1;
            let time = |key: &str| sortable_time(workflow[key].as_str().expect("a timestamp"));
            events.push((time("startTime"), 1));
            events.push((time("closeTime"), -1));
        }
    }
    assert_eq!(leaves, shape.leaves);
    // A close sorts before a start at the same instant.
    events.sort();
    let mut open = 0;
    let mut peak = 0;
    for (_, delta) in events {
        open += delta;
        peak = peak.max(open);
    }
    assert!(
        peak >= 1 && peak <= budget as i32,
        "peak {peak} leaves at once"
    );

    let bad = self::run(&["300", "--max-leaves-in-flight", "0"]);
    assert!(
        bad.stderr
            .contains("max_leaves_in_flight must be between 1 and 100000 (got 0)"),
        "{}",
        bad.stderr
    );
}

/// An RFC 3339 UTC time (`2026-11-26T14:50:00.123Z`, 0 to 9 fractional digits) as a string
/// that sorts chronologically: the fraction padded to 9 digits.
fn sortable_time(time: &str) -> String {
    let time = time.trim_end_matches('Z');
    let (whole, fraction) = time.split_once('.').unwrap_or((time, ""));
    format!("{whole}.{fraction:0<9}")
}

/// `starter --plan` starts nothing and needs no server; what it says holds for the batch when it
/// runs: the same tree, and no workflow's history longer than its bound (read back from the
/// server), in each per-item mode.
#[test]
fn the_plan_of_a_batch_holds_when_it_runs() {
    for mode in ["item", "local"] {
        let id = format!("plan-120-{mode}");
        let args = ["120", "10", "4", "--mode", mode, "--workflow-id", &id];
        // Nothing listens on port 1: the plan must not need a server.
        let plan_args = [&args[..], &["--plan", "--json", "--address", "127.0.0.1:1"]].concat();
        let (planned, text, _) = support::run_offline("starter", &plan_args);
        assert!(planned.status.success(), "{text}");
        let plan: serde_json::Value =
            serde_json::from_slice(&planned.stdout).expect("one JSON object");
        let workflows = plan["workflows"].as_u64().expect("workflows");
        let bound = plan["largest_history_events"].as_u64().expect("bound");
        let shape = TreeShape::of(120, 10, 4);
        assert_eq!(
            (workflows, plan["leaves"].as_u64()),
            (shape.workflows, Some(shape.leaves))
        );
        assert!(
            env()
                .server
                .count(&format!("WorkflowId STARTS_WITH '{id}'"))
                == Some(0),
            "--plan started nothing"
        );

        let run = report(&args);
        assert_eq!(run.result.workflows, workflows);
        let query = format!("WorkflowId STARTS_WITH '{id}' AND ExecutionStatus = 'Completed'");
        let listed = wait_for(
            "every workflow closed in visibility",
            Duration::from_secs(30),
            || {
                let out = env().server.cli(&[
                    "workflow", "list", "--query", &query, "--limit", "10000", "--output", "json",
                ]);
                let listed: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
                (listed.as_array()?.len() as u64 == workflows).then_some(listed)
            },
        );
        let lengths: Vec<u64> = listed
            .as_array()
            .expect("a list")
            .iter()
            .map(|w| {
                let length = &w["historyLength"];
                length
                    .as_u64()
                    .or_else(|| length.as_str()?.parse().ok())
                    .unwrap_or_else(|| panic!("no history length in {w}"))
            })
            .collect();
        let longest = lengths.iter().max().copied().unwrap_or_default();
        eprintln!("{mode}: longest history {longest} events, plan's bound {bound}");
        assert!(
            longest > 0 && longest <= bound,
            "{mode}: longest history {longest} events, plan's bound {bound}: {lengths:?}"
        );
    }
}
