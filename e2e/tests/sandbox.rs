//! The sandbox against hostile plugins, end to end: a real dev server, the real worker and
//! starter. What only a running worker can show: an honest batch beside hostile ones keeps
//! exact results, a plugin's flood of words fails its batch promptly, loading a large plugin
//! never stalls the workflows being served, and a stateful plugin's outputs do not depend on
//! the load.

#[path = "../../worker/tests/common/wat.rs"]
mod components;
mod support;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{DevServer, Node, Starter, starter, sum_of_squares};

/// The tests of this file one at a time: each measures how a worker shares this machine's
/// cores, which another test's load would distort.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn server() -> &'static DevServer {
    static SERVER: OnceLock<DevServer> = OnceLock::new();
    SERVER.get_or_init(DevServer::start)
}

/// A worker of its own (queue `queue`, flags `args`) with the named built plugins and the
/// given text-format plugins.
fn node(queue: &str, built: &[&str], wat: &[(&str, String)], args: &[&str]) -> Node {
    let built: Vec<(&str, &str)> = built.iter().map(|name| (*name, *name)).collect();
    let node = Node::start(server(), queue, &built, args);
    for (name, text) in wat {
        std::fs::write(node.dir().join(format!("{name}.wat")), text).expect("write wat");
    }
    node
}

/// Runs `args` on `node`'s queue again and again in the background until the returned guard
/// is finished or dropped.
fn keep_running(node: &Node, args: &'static [&'static str]) -> Background {
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (queue, flag) = (node.queue.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        let mut runs = 0;
        let mut id = 0;
        while !flag.load(Ordering::Relaxed) {
            id += 1;
            let workflow_id = format!("{queue}-noise-{id}");
            let mut all = args.to_vec();
            all.extend(["--workflow-id", &workflow_id]);
            starter(server(), &queue, &all);
            runs += 1;
        }
        runs
    });
    Background {
        stop,
        thread: Some(thread),
    }
}

/// Hostile batches started over and over in the background, stopped on drop.
struct Background {
    stop: std::sync::Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u32>>,
}

impl Background {
    /// Stops and returns how many batches were started.
    fn finish(mut self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("background thread"))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A valid plugin large enough to take many seconds to compile (on one core): `functions`
/// functions of 500 arithmetic steps the optimizer cannot fold away, as a binary component
/// (compact: about 10 bytes per step). Interface v2 and importing WASI, the heavier link; the
/// compile path is the same for v1 (whose compile timeout `worker/tests/sandbox_trust.rs`
/// checks beside v2's).
fn large_plugin(functions: usize) -> Vec<u8> {
    let mut extra = String::with_capacity(functions * 50_000);
    for f in 0..functions {
        extra.push_str(&format!("(func $f{f} (param $x i64) (result i64)\n"));
        for k in 0..500 {
            extra.push_str(&format!(
                "(local.set $x (i64.xor (i64.mul (local.get $x) (i64.const {})) (i64.rotl (local.get $x) (i64.const {}))))\n",
                2 * (f * 131 + k) + 1,
                k % 63 + 1
            ));
        }
        extra.push_str("(local.get $x))\n");
    }
    let body = "(drop (call $f0 (i64.extend_i32_u (local.get $len)))) (call $one_zero)";
    let text = components::component_v2_wasi("", "", &extra, body, "");
    wat::parse_str(&text).expect("a valid component")
}

/// Requirement 6: an honest plugin that needs ~1/10 of its deadline per item never fails
/// because the worker is busy with a looping plugin's batches: calls run on at most one slot
/// per core, first come first served, and the deadline counts only a call's own execution.
#[test]
fn an_honest_plugin_never_fails_because_of_load() {
    let _alone = alone();
    let node = node(
        "fair",
        &["busy"],
        &[("spinner", components::spinner())],
        &["--plugin-deadline-ms", "300"],
    );
    an_honest_batch_is_exact_beside(&node, &["200", "--plugin", "spinner"]);
}

/// A worker's memory follows the plugins it runs, not the ones installed: with the shipped
/// plugins and 20 copies of the 18 MB Python plugin under other names, it loads none at
/// start (it checks each file and reports the bad ones), and stays within 60 MB resident.
#[test]
fn an_idle_workers_memory_does_not_follow_the_plugins_installed() {
    let _alone = alone();
    let dir = tempfile::tempdir().expect("plugins dir");
    for entry in std::fs::read_dir(support::built_plugins_dir()).expect("built plugins") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("a name"))).expect("copy");
    }
    for i in 1..=20 {
        support::install_plugin(dir.path(), "py_square", &format!("py_copy{i}"));
    }
    let worker = support::Worker::start(server(), "idle", dir.path());
    support::wait_for("the plugins checked", Duration::from_secs(60), || {
        worker
            .log_text()
            .contains("plugins available")
            .then_some(())
    });
    // Idle: settled once the allocator has handed back what start-up freed (every second).
    let settled = std::time::Instant::now() + Duration::from_secs(10);
    let resident = loop {
        let resident = worker.memory("VmRSS");
        if resident <= 60 << 20 || std::time::Instant::now() > settled {
            break resident;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "idle worker with {} plugins: {} MiB resident, peak {} MiB",
        std::fs::read_dir(dir.path()).expect("dir").count(),
        resident >> 20,
        worker.memory("VmHWM") >> 20
    );
    assert!(resident <= 60 << 20, "{resident} bytes resident");
    assert!(
        !worker.log_text().contains("plugin version loaded"),
        "nothing loaded before its first use:\n{}",
        worker.log_text()
    );
}

/// What the `counter` fixture (each output: how many items its instance has seen) sums to
/// over the items `1..=n` of one `batch`-mode leaf: spans of `SPAN_ITEMS` consecutive items
/// share an instance, and a fresh one takes over after each item that traps (the multiples of
/// `trap_every`, which fail): the documented rule, computed here.
fn counter_sum(n: u64, trap_every: u64) -> (u128, u64) {
    let span = batch_core::blocks::SPAN_ITEMS as u64;
    let (mut sum, mut failed) = (0u128, 0);
    let mut start = 1;
    while start <= n {
        let mut seen = 0u128;
        for item in start..=(start + span - 1).min(n) {
            if trap_every != 0 && item % trap_every == 0 {
                failed += 1;
                seen = 0;
            } else {
                seen += 1;
                sum += seen;
            }
        }
        start += span;
    }
    (sum, failed)
}

/// Which items share an instance is decided by counts, never by time: a plugin that keeps
/// state in its instance gives exactly the documented outputs on a quiet worker and again on
/// one busy with a looping plugin's batches (which changes every block's size), with and
/// without items that trap.
#[test]
fn a_stateful_plugin_gives_the_same_outputs_whatever_the_load() {
    let _alone = alone();
    let node = node(
        "stateful",
        &["counter"],
        &[("spinner", components::spinner())],
        &["--plugin-deadline-ms", "300"],
    );
    let n = 1_500_000u64;
    for trap_every in [0, 100_003] {
        let (expected, failed) = counter_sum(n, trap_every);
        let config = format!("{{\"trap_every\": {trap_every}}}");
        let mut sums = Vec::new();
        for busy in [false, true] {
            let noise = busy.then(|| keep_running(&node, &["200", "--plugin", "spinner"]));
            let id = format!("stateful-{trap_every}-{busy}");
            let run = node.report(&[
                "1500000",
                "1500000",
                "2",
                "--mode",
                "batch",
                "--plugin",
                "counter",
                "--plugin-config",
                &config,
                "--max-failures",
                "100",
                "--workflow-id",
                &id,
            ]);
            if let Some(noise) = noise {
                assert!(noise.finish() >= 1, "the looping batches ran beside it");
            }
            sums.push(run.outputs().sum);
            let failures = &run.result.failures;
            assert_eq!(failures.count, failed, "trap_every {trap_every}");
            if failed > 0 {
                assert_eq!(
                    failures
                        .by_kind
                        .keys()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>(),
                    ["PluginTrapped"]
                );
            }
        }
        assert_eq!(sums, [expected, expected], "trap_every {trap_every}");
    }
}

/// Runs `busy` over 1..=1000 on `node` while `noise` batches run again and again beside it:
/// every item computed, the exact sum, and the noise really ran.
fn an_honest_batch_is_exact_beside(node: &Node, noise: &'static [&'static str]) {
    let noise = keep_running(node, noise);
    let run = node.report(&["1000", "--plugin", "busy"]);
    let noisy_batches = noise.finish();
    assert_eq!(run.outputs().sum, 500500);
    assert_eq!(run.outputs().count, 1000);
    assert!(noisy_batches >= 1, "the noisy batches ran beside it");
}

/// The same with interface v2 and WASI: batches of `hostile_v2` (built for wasm32-wasip2, so
/// its calls go through the deny-all WASI) loop, panic, hoard memory and overflow their stack
/// beside an honest batch, which still computes every item exactly.
#[test]
fn an_honest_plugin_never_fails_beside_a_hostile_wasi_plugin() {
    let _alone = alone();
    let node = node(
        "fair_v2",
        &["busy", "hostile_v2"],
        &[],
        &["--plugin-deadline-ms", "300"],
    );
    an_honest_batch_is_exact_beside(&node, &["100", "--plugin", "hostile_v2"]);
}

/// Requirement 4: a plugin that instantiates many core instances and tables and then loops,
/// run as a large batch, cannot make another plugin's batch fail: the pools hold every
/// call slot at its per-call limits. Two such hogs at once: a v1 component, and a v2 one that
/// imports WASI.
#[test]
fn a_hog_at_its_limits_never_fails_another_batch() {
    let _alone = alone();
    let node = node(
        "pools",
        &["square_number"],
        &[
            ("hog", components::hog(8)),
            ("hog_v2_wasi", components::hog_v2_wasi(8)),
        ],
        &["--plugin-deadline-ms", "200"],
    );
    let noise = keep_running(&node, &["400", "100", "4", "--plugin", "hog"]);
    let noise_v2 = keep_running(&node, &["400", "100", "4", "--plugin", "hog_v2_wasi"]);
    let run = node.report(&["300"]);
    let (batches, batches_v2) = (noise.finish(), noise_v2.finish());
    assert!(batches >= 1 && batches_v2 >= 1, "both hogs ran beside it");
    assert_eq!(run.outputs().sum, sum_of_squares(300));
}

/// Requirement 3: a refusal of 6 MiB fails its batch promptly, with a bounded message that
/// says how long the original was, in the batch's failure and in the worker's log.
#[test]
fn a_plugins_flood_of_words_fails_its_batch_promptly_and_bounded() {
    let _alone = alone();
    // A v1 plugin, and a v2 one that imports WASI.
    let node = node(
        "words",
        &["chatty"],
        &[("flood_v2_wasi", components::flood_v2_wasi())],
        &[],
    );
    for (plugin, refusal, length) in [
        (
            "chatty",
            "refused item 7: item 7 is refused at great length: blah blah",
            "[truncated: 6291490 bytes in all]",
        ),
        (
            "flood_v2_wasi",
            "refused item 1: xxxx",
            "[truncated: 6291456 bytes in all]",
        ),
    ] {
        let started = Instant::now();
        let run = Starter::on(server(), &node.queue)
            .args(&["10", "--plugin", plugin])
            .within(Duration::from_secs(60))
            .run();
        let took = started.elapsed();
        assert!(!run.success, "{}", node.explain(&run));
        assert!(
            run.stderr.contains(refusal) && run.stderr.contains(length),
            "{}",
            node.explain(&run)
        );
        assert!(run.stderr.len() < 16 << 10, "{} bytes", run.stderr.len());
        assert!(took < Duration::from_secs(30), "took {took:?}");
        let log = node.worker.log_text();
        assert!(log.contains(length), "{log}");
        assert!(
            log.len() < 1 << 20,
            "the worker's log is {} bytes",
            log.len()
        );
    }
}

/// Requirement 7: a large plugin dropped into a running worker mid-batch, and used at once, is
/// compiled off the task that drives the workflows: the batch's workflow tasks are not held up
/// by it. Measured
/// in the histories as each workflow task's time from started to completed (the worker's own
/// processing; normally milliseconds), which a stalled driving task would stretch to the
/// compile's length.
#[test]
fn a_large_plugin_dropped_mid_batch_does_not_stall_workflows() {
    let _alone = alone();
    let node = node("loading", &["square_number"], &[], &[]);
    let large = large_plugin(1_500);
    let queue = node.queue.clone();
    let batch = std::thread::spawn(move || {
        Starter::on(server(), &queue)
            .args(&["4000", "--workflow-id", "loading-4000"])
            .report()
    });
    std::thread::sleep(Duration::from_secs(2));
    let tmp = node.dir().join(".large.tmp");
    std::fs::write(&tmp, &large).expect("write");
    std::fs::rename(&tmp, node.dir().join("large.wasm")).expect("install");
    let dropped = Instant::now();
    // A plugin is compiled on its first use: a batch of it, beside the running one.
    let queue = node.queue.clone();
    let first_use = std::thread::spawn(move || {
        starter(
            server(),
            &queue,
            &["1", "--plugin", "large", "--workflow-id", "loading-large"],
        )
    });
    let run = batch.join().expect("batch thread");
    let large = first_use.join().expect("first use thread");
    assert!(large.success, "{}", node.explain(&large));
    assert_eq!(run.outputs().sum, sum_of_squares(4000));
    let log = support::wait_for("the large plugin to load", Duration::from_secs(300), || {
        let log = node.worker.log_text();
        log.lines()
            .any(|l| l.contains("plugin version loaded") && l.contains("large"))
            .then_some(log)
    });
    println!(
        "the large plugin loaded {:?} after it was dropped",
        dropped.elapsed()
    );
    // The root and its first two levels.
    let ids: Vec<String> = support::tree_nodes("loading-4000", 4000, 10, 5)
        .into_iter()
        .filter(|node| node.depth <= 2)
        .map(|node| node.id)
        .collect();
    let slowest = ids
        .iter()
        .map(|id| slowest_workflow_task(server(), id))
        .max()
        .expect("some workflows");
    assert!(
        slowest < Duration::from_secs(2),
        "a workflow task took {slowest:?} from started to completed; worker log:\n{log}"
    );
}

/// The longest time any workflow task of `workflow_id` took from started to completed.
fn slowest_workflow_task(server: &DevServer, workflow_id: &str) -> Duration {
    let out = server.cli(&["workflow", "show", "-w", workflow_id, "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json history");
    let events = history["events"].as_array().expect("events");
    let time = |e: &serde_json::Value| parse_rfc3339(e["eventTime"].as_str().expect("time"));
    let mut started = None;
    let mut slowest = Duration::ZERO;
    for event in events {
        match event["eventType"].as_str().unwrap_or_default() {
            "EVENT_TYPE_WORKFLOW_TASK_STARTED" => started = Some(time(event)),
            "EVENT_TYPE_WORKFLOW_TASK_COMPLETED" => {
                if let Some(at) = started.take() {
                    slowest = slowest.max(time(event).saturating_sub(at));
                }
            }
            _ => {}
        }
    }
    slowest
}

/// `2026-11-26T21:51:12.123456Z` as a duration since the start of that day's month (enough to
/// subtract two times of one short test).
fn parse_rfc3339(text: &str) -> Duration {
    let (_, time) = text.split_once('T').expect("a date and a time");
    let day: u64 = text[8..10].parse().expect("day");
    let time = time.trim_end_matches('Z');
    let mut parts = time.split(':');
    let hours: u64 = parts.next().and_then(|h| h.parse().ok()).expect("hours");
    let minutes: u64 = parts.next().and_then(|m| m.parse().ok()).expect("minutes");
    let seconds: f64 = parts.next().and_then(|s| s.parse().ok()).expect("seconds");
    Duration::from_secs(day * 86_400 + hours * 3_600 + minutes * 60)
        + Duration::from_secs_f64(seconds)
}
