//! The plugin platform end to end: hot swap into a running worker, version pinning across a
//! mid-batch replacement, bad files, listing through Temporal, isolation between concurrent
//! batches. One dev server; each test has its own worker, plugins directory and task queue.

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use support::{
    DevServer, Node, Run, Starter, install_plugin, sha256_of, starter, sum_of_squares, wait_for,
};

fn server() -> &'static DevServer {
    static SERVER: OnceLock<DevServer> = OnceLock::new();
    SERVER.get_or_init(DevServer::start)
}

/// A worker on its own task queue with its own plugins directory.
fn node(queue: &str, plugins: &[(&str, &str)]) -> Node {
    Node::start(server(), queue, plugins, &[])
}

fn assert_ok(run: &Run) {
    assert!(
        run.success,
        "starter failed:\n{}\n{}",
        run.stdout, run.stderr
    );
}

fn digest_line(digest: &str) -> String {
    format!("sha256:{digest}")
}

#[test]
fn a_plugin_dropped_into_a_running_worker_is_used_by_name() {
    let node = node("hot-drop", &[("square_number", "square_number")]);
    let before = node.run(&["--list-plugins"]);
    assert_ok(&before);
    assert!(
        before.stdout.contains("square_number") && !before.stdout.contains("is_prime"),
        "{}",
        before.stdout
    );

    let path = install_plugin(node.dir(), "is_prime", "is_prime");
    let run = node.report(&["1000", "--plugin", "is_prime"]);
    assert_eq!(run.outputs().sum, 168, "primes up to 1000");
    assert_eq!(run.plugin_digest(), digest_line(&sha256_of(&path)));

    let after = node.run(&["--list-plugins"]);
    assert_ok(&after);
    let line = after
        .stdout
        .lines()
        .find(|l| l.starts_with("is_prime"))
        .expect("is_prime listed");
    assert!(line.contains(&digest_line(&sha256_of(&path))), "{line}");
    assert!(line.ends_with("batch:plugin/compute@1.0.0"), "{line}");
}

#[test]
fn replacing_a_plugin_mid_batch_keeps_each_batch_on_its_own_version() {
    let node = node("hot-swap", &[("square_number", "swap")]);
    let v1 = sha256_of(&node.dir().join("swap.wasm"));

    // Batch A: 2000 items on v1, in the background.
    let queue = node.queue.clone();
    let batch_a = std::thread::spawn(move || {
        Starter::on(server(), &queue)
            .args(&["2000", "--plugin", "swap"])
            .report()
    });
    // Once A's root has resolved the plugin and started its children, replace the file.
    let started = wait_for("batch A to fan out", Duration::from_secs(60), || {
        let count =
            server().count("WorkflowId STARTS_WITH 'batch-processing-swap-2000-b10-c5-'")?;
        (count > 0).then_some(count)
    });
    let v2_path = install_plugin(node.dir(), "cube", "swap");
    let v2 = sha256_of(&v2_path);
    assert_ne!(v1, v2);

    // Batch B starts after the replacement: it resolves the name to v2.
    let b = node.report(&["300", "--plugin", "swap"]);
    assert_eq!(b.plugin_digest(), digest_line(&v2));
    assert_eq!(b.outputs().sum, (300u128 * 301 / 2).pow(2));

    // Batch A, already running when the file changed, finished on v1 alone.
    let a = batch_a.join().expect("batch A thread");
    assert_eq!(a.plugin_digest(), digest_line(&v1));
    assert_eq!(a.outputs().sum, 2668667000);
    assert!(
        started < 655,
        "the file was replaced while batch A was running ({started} children started)"
    );
}

#[test]
fn a_bad_file_does_not_replace_a_good_version_and_is_reported() {
    let node = node("bad-file", &[("cube", "keeper")]);
    let good = node.report(&["10", "--plugin", "keeper"]);
    let digest = good.plugin_digest();

    let tmp = node.dir().join(".keeper.tmp");
    std::fs::write(&tmp, b"definitely not wasm").expect("write");
    std::fs::rename(&tmp, node.dir().join("keeper.wasm")).expect("rename");

    let again = node.report(&["20", "--plugin", "keeper"]);
    assert_eq!(again.plugin_digest(), digest);
    assert_eq!(again.outputs().sum, (20u128 * 21 / 2).pow(2));
    let log = node.worker.log_text();
    assert!(
        log.contains("plugin \"keeper\"")
            && log.contains("not WebAssembly")
            && log.contains("keeping the last good version"),
        "{log}"
    );
    let listed = node.run(&["--list-plugins"]);
    assert!(
        listed.stdout.contains("serving the last good version"),
        "{}",
        listed.stdout
    );
}

#[test]
fn a_failing_plugin_does_not_disturb_a_concurrent_batch() {
    let node = node(
        "isolation",
        &[("square_number", "square_number"), ("hostile", "hostile")],
    );
    let queue = node.queue.clone();
    // Items 1, 11, 21, ... loop until the deadline, 2, 12, ... trap, 3, ... exhaust memory.
    let hostile =
        std::thread::spawn(move || starter(server(), &queue, &["40", "--plugin", "hostile"]));
    let normal = node.report(&["500"]);
    assert_eq!(normal.outputs().sum, sum_of_squares(500));
    let hostile = hostile.join().expect("hostile thread");
    assert!(!hostile.success);
    assert!(
        hostile.stderr.contains("plugin hostile@sha256:"),
        "{}",
        hostile.stderr
    );
}

#[test]
fn a_plugin_written_in_wat_runs_through_temporal() {
    let node = node("wat", &[("triple_wat", "triple_wat")]);
    let run = node.report(&["100", "--plugin", "triple_wat"]);
    assert_eq!(run.outputs().sum, 15150);
}

#[test]
fn listing_with_no_worker_on_the_queue_fails_in_bounded_time() {
    let run = starter(server(), "nobody-polls-this-queue", &["--list-plugins"]);
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("no worker answered on task queue nobody-polls-this-queue"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_worker_lists_its_plugins_without_a_server() {
    let dir = tempfile::tempdir().expect("plugins dir");
    let square = install_plugin(dir.path(), "square_number", "square_number");
    std::fs::write(dir.path().join("broken.wasm"), b"").expect("write");
    let out = std::process::Command::new(support::binary("worker"))
        .args(["--list-plugins", "--plugins-dir"])
        .arg(dir.path())
        .env("TEMPORAL_ADDRESS", "127.0.0.1:1")
        .output()
        .expect("run worker");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let square_line = text
        .lines()
        .find(|l| l.starts_with("square_number"))
        .expect("listed");
    assert!(
        square_line.contains(&digest_line(&sha256_of(&square))),
        "{text}"
    );
    let size = std::fs::metadata(&square)
        .expect("metadata")
        .len()
        .to_string();
    assert!(square_line.contains(&format!(" {size} ")), "{text}");
    assert!(
        square_line.ends_with("batch:plugin/compute@1.0.0"),
        "{text}"
    );
    assert!(
        text.contains("error: plugin \"broken\"") && text.contains("the file is empty"),
        "{text}"
    );
}
