//! A fleet: plugins published once to a store in the S3 test server, run by workers that have
//! none of their own, pinned by digest, fetched, checked and (with trusted keys) verified.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{
    DevServer, S3Server, Starter, Worker, built_plugin, http_get, metric, run_offline_with,
    sum_of_squares, wait_for,
};

const STORE: &str = "s3://plugins/fleet";

/// A record of `batch-plugin versions --json`, as the test reads it.
#[derive(Debug, serde::Deserialize)]
struct Published {
    digest: String,
    published_by: String,
    signed_by: Vec<String>,
}

/// `batch-plugin` with the S3 server's environment; fails the test if it fails.
fn batch_plugin(s3: &S3Server, args: &[&str]) -> String {
    let (out, text) = run_offline_with("batch-plugin", args, &s3.env());
    assert!(
        out.status.success(),
        "batch-plugin {args:?} failed:\n{text}"
    );
    text
}

/// Publishes the built plugin `file` as `name`, signed with `key` if given: its digest.
fn publish(s3: &S3Server, file: &str, name: &str, key: Option<&Path>) -> String {
    let path = built_plugin(file);
    let mut args = vec![
        "publish",
        path.to_str().expect("utf-8"),
        "--store",
        STORE,
        "--name",
        name,
        "--by",
        "fleet-test",
        "--cache-dir",
        "none",
    ];
    if let Some(key) = key {
        args.extend(["--sign-key", key.to_str().expect("utf-8")]);
    }
    let text = batch_plugin(s3, &args);
    let digest = support::sha256_of(&path);
    assert!(
        text.contains(&format!("Published {name}@sha256:{digest} (")),
        "{text}"
    );
    digest
}

/// Calls of plugin `name` per worker, from each one's metrics.
fn calls(ports: &[u16], name: &str) -> Vec<u64> {
    ports
        .iter()
        .map(|port| {
            let (_, body) = http_get(*port, "/metrics");
            let label = format!("plugin=\"{name}\"");
            metric(&body, "batch_plugin_calls_total", &[&label]).unwrap_or(0.0) as u64
        })
        .collect()
}

fn fleet_worker<'a>(
    server: &'a DevServer,
    s3: &S3Server,
    dir: &'a Path,
    trust: &Path,
    port: u16,
    identity: &str,
) -> Worker {
    std::fs::create_dir_all(dir).expect("an empty plugins directory");
    Worker::builder(server, "fleet", dir)
        .env(&s3.env())
        .args(&[
            "--plugin-store",
            STORE,
            "--trust-key",
            trust.to_str().expect("utf-8"),
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .identity(identity)
        .start()
}

fn sum_of_cubes(n: u128) -> u128 {
    (n * (n + 1) / 2).pow(2)
}

#[test]
fn a_plugin_published_once_runs_on_every_worker_pinned_and_verified() {
    let server = DevServer::start();
    let s3 = S3Server::start(&["plugins"]);
    let scratch = tempfile::tempdir().expect("scratch");
    let keys = scratch.path();
    for key in ["release", "stranger"] {
        let out = keys.join(key);
        let text = batch_plugin(&s3, &["keygen", "--out", out.to_str().expect("utf-8")]);
        assert!(text.contains("Key id: "), "{text}");
    }
    let (release, trusted) = (keys.join("release.key"), keys.join("release.pub"));

    // Published once, before any worker exists; the workers have empty plugin directories.
    let v1 = publish(&s3, "square_number", "calc", Some(&release));
    let ports: Vec<u16> = (0..3).map(|_| support::free_port()).collect();
    let dirs: Vec<_> = (1..=3)
        .map(|i| scratch.path().join(format!("empty{i}")))
        .collect();
    let mut workers: Vec<Worker> = (0..3)
        .map(|i| {
            let identity = format!("fleet-worker-{}", i + 1);
            fleet_worker(&server, &s3, &dirs[i], &trusted, ports[i], &identity)
        })
        .collect();

    // Every worker runs some of the batch's items; each item runs once.
    let first = Starter::on(&server, "fleet")
        .args(&["300", "--plugin", "calc"])
        .report();
    assert_eq!(first.outputs().sum, sum_of_squares(300));
    assert_eq!(first.plugin_digest(), format!("sha256:{v1}"));
    let per_worker = calls(&ports, "calc");
    assert_eq!(per_worker.iter().sum::<u64>(), 300, "{per_worker:?}");
    assert!(
        per_worker.iter().all(|n| *n > 0),
        "a worker ran nothing: {per_worker:?}"
    );

    // A new version published while a batch runs: the running batch keeps its version, the
    // next batch takes the new one.
    let running = std::thread::spawn({
        let address = server.address.clone();
        move || {
            Starter::new(&address, "fleet")
                .args(&["1500", "--plugin", "calc", "--max-in-flight", "4"])
                .within(Duration::from_secs(300))
                .report()
        }
    });
    wait_for(
        "the running batch's first items",
        Duration::from_secs(60),
        || (calls(&ports, "calc").iter().sum::<u64>() > 320).then_some(()),
    );
    let v2 = publish(&s3, "cube", "calc", Some(&release));
    assert!(
        !running.is_finished(),
        "the batch ended before the publish: make it longer"
    );
    let running = running.join().expect("the running batch");
    assert_eq!(running.outputs().sum, sum_of_squares(1500));
    assert_eq!(running.plugin_digest(), format!("sha256:{v1}"));
    let next = Starter::on(&server, "fleet")
        .args(&["100", "--plugin", "calc"])
        .report();
    assert_eq!(next.outputs().sum, sum_of_cubes(100));
    assert_eq!(next.plugin_digest(), format!("sha256:{v2}"));

    // A rollback by digest; the versions newest first, each signed.
    let rollback = format!("calc@sha256:{v1}");
    let back = Starter::on(&server, "fleet")
        .args(&["100", "--plugin", &rollback])
        .report();
    assert_eq!(back.outputs().sum, sum_of_squares(100));
    assert_eq!(back.plugin_digest(), format!("sha256:{v1}"));
    assert!(
        back.workflow_id.contains(&format!("calc.v{}", &v1[..12])),
        "{}",
        back.workflow_id
    );
    // A version nowhere: the batch fails at its root, naming it, instead of waiting for one.
    let nowhere = "0".repeat(64);
    let typo = format!("calc@sha256:{nowhere}");
    let absent = Starter::on(&server, "fleet")
        .args(&["20", "--plugin", &typo])
        .within(Duration::from_secs(60))
        .run();
    assert!(!absent.success, "{}", absent.stdout);
    assert!(
        absent
            .stderr
            .contains(&format!("version sha256:{nowhere} is not in plugin store")),
        "{}",
        absent.stderr
    );
    let listed = batch_plugin(&s3, &["versions", "calc", "--store", STORE, "--json"]);
    let versions: Vec<Published> = serde_json::from_str(listed.trim()).expect("--json");
    let digests: Vec<&str> = versions.iter().map(|v| v.digest.as_str()).collect();
    assert_eq!(digests, [v2.as_str(), v1.as_str()]);
    assert!(
        versions
            .iter()
            .all(|v| v.signed_by.len() == 1 && v.published_by == "fleet-test")
    );

    // A store object whose bytes are not its digest's: refused, never compiled, nothing run.
    let before = calls(&ports, "calc").iter().sum::<u64>();
    let v3 = publish(&s3, "collatz_steps", "calc", Some(&release));
    let blob = s3.file("plugins", &format!("fleet/blobs/sha256-{v3}.wasm"));
    let mut bytes = std::fs::read(&blob).expect("the stored version");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&blob, &bytes).expect("tamper with it");
    let tampered = Starter::on(&server, "fleet")
        .args(&["20", "--plugin", "calc"])
        .run();
    assert!(!tampered.success, "{}", tampered.stdout);
    for words in [v3.as_str(), "refused, never compiled"] {
        assert!(
            tampered.stderr.contains(words),
            "{words}:\n{}",
            tampered.stderr
        );
    }

    // Signed by a key the workers do not trust, and not signed at all: refused, naming the
    // digest, before any item runs.
    let v4 = publish(&s3, "fnv_hash", "calc", Some(&keys.join("stranger.key")));
    let stranger = Starter::on(&server, "fleet")
        .args(&["20", "--plugin", "calc"])
        .run();
    assert!(!stranger.success, "{}", stranger.stdout);
    for words in [v4.as_str(), "is not signed by a key this worker trusts"] {
        assert!(
            stranger.stderr.contains(words),
            "{words}:\n{}",
            stranger.stderr
        );
    }
    // Pinned by the starter (or by any client), the root does not resolve it: every leaf
    // refuses it, and the batch fails naming it.
    let pinned = format!("calc@sha256:{v4}");
    let forced = Starter::on(&server, "fleet")
        .args(&["20", "--plugin", &pinned])
        .run();
    assert!(!forced.success, "{}", forced.stdout);
    assert!(
        forced
            .stderr
            .contains("is not signed by a key this worker trusts"),
        "{}",
        forced.stderr
    );
    let v5 = publish(&s3, "is_prime", "plain", None);
    let unsigned = Starter::on(&server, "fleet")
        .args(&["20", "--plugin", "plain"])
        .run();
    assert!(!unsigned.success, "{}", unsigned.stdout);
    assert!(unsigned.stderr.contains(&v5), "{}", unsigned.stderr);
    assert!(
        unsigned.stderr.contains("no signature by a trusted key"),
        "{}",
        unsigned.stderr
    );
    assert_eq!(
        calls(&ports, "calc").iter().sum::<u64>(),
        before,
        "nothing ran"
    );
    assert_eq!(calls(&ports, "plain").iter().sum::<u64>(), 0, "nothing ran");

    // A worker started after the publish, alone, with nothing but the store: it serves at once.
    for worker in &mut workers {
        worker.stop();
    }
    let late_port = support::free_port();
    let late_dir = scratch.path().join("late");
    let _late = fleet_worker(&server, &s3, &late_dir, &trusted, late_port, "fleet-late");
    let pinned = format!("calc@sha256:{v2}");
    let late = Starter::on(&server, "fleet")
        .args(&["50", "--plugin", &pinned, "--mode", "batch"])
        .within(Duration::from_secs(60))
        .report();
    assert_eq!(late.outputs().sum, sum_of_cubes(50));
    assert!(calls(&[late_port], "calc")[0] > 0, "the late worker ran it");
}
