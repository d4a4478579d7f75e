//! Plugins that call services: the recording service (`http_test_server`) injects 500s, 429s,
//! lost answers and slow answers; three workers run the batch under a batch-wide rate limit.
//! Each item's effect is applied exactly once by its `Idempotency-Key`, the measured rate
//! never exceeds the limit in any window of a second, and hosts the workers do not grant, or
//! redirects to them, are refused.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use batch_core::PluginConfig;
use batch_core::http::{HostPort, HttpPolicy};
use support::{DevServer, Guarded, Report, Starter, Worker, built_plugins_dir, wait_for};

/// One request as the service recorded it.
#[derive(Debug, serde::Deserialize)]
struct Request {
    t: f64,
    key: String,
    agent: String,
    status: u16,
    applied: bool,
}

struct Service {
    port: u16,
    log: std::path::PathBuf,
    _process: Guarded,
}

impl Service {
    fn start(dir: &Path, name: &str, faults: &[&str]) -> Self {
        let log = dir.join(format!("{name}.jsonl"));
        let out = dir.join(format!("{name}.out"));
        let mut args = vec![log.to_str().expect("utf-8")];
        args.extend_from_slice(faults);
        let process = Guarded::spawn(&support::binary("http_test_server"), &args, &out, &[]);
        let port = wait_for("the service to listen", Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&out).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("listening on http://127.0.0.1:"))
                .and_then(|p| p.trim().parse().ok())
        });
        Self {
            port,
            log,
            _process: process,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a recorded request"))
            .collect()
    }
}

/// A batch of `http_post` over `source`, posting to `url`, its requests allowed to `allow`
/// (`None`: the batch names no host).
fn http_batch(
    server: &DevServer,
    queue: &str,
    source: &Path,
    url: &str,
    allow: Option<&str>,
) -> Starter {
    let config = format!("{{\"url\": \"{url}\", \"output_field\": \"id\"}}");
    let starter = Starter::on(server, queue)
        .args(&[
            "--source",
            source.to_str().expect("utf-8"),
            "--plugin",
            "http_post",
            "--plugin-config",
            &config,
        ])
        .within(Duration::from_secs(600));
    match allow {
        Some(host) => starter.args(&["--http-allow", host]),
        None => starter,
    }
}

/// The batch of `n` records is exact (each output is 3 x its `n`) and every item applied its
/// effect exactly once by its key, whatever was retried; every request names the batch in its
/// key and user agent. Returns the requests the service recorded and how many keys were sent
/// more than once.
fn assert_exactly_once(report: &Report, service: &Service, n: u64) -> (Vec<Request>, usize) {
    let outputs = report.outputs();
    assert_eq!(outputs.count, n);
    assert_eq!(
        outputs.sum,
        3 * u128::from(n * (n + 1) / 2),
        "ids are 3 x n"
    );
    let batch = &report.workflow_id;
    let requests = service.requests();
    let mut applied: HashMap<&str, u32> = HashMap::new();
    let mut sent: HashMap<&str, u32> = HashMap::new();
    for r in &requests {
        *sent.entry(&r.key).or_default() += 1;
        if r.applied {
            *applied.entry(&r.key).or_default() += 1;
        }
        assert!(r.agent.contains(batch.as_str()), "user agent {:?}", r.agent);
        assert!(
            r.key.starts_with(&format!("{batch}/")) && r.key.ends_with("/0"),
            "key {:?}",
            r.key
        );
    }
    assert_eq!(applied.len() as u64, n, "one effect per item");
    assert!(applied.values().all(|&c| c == 1), "{applied:?}");
    let resent = sent.values().filter(|&&c| c > 1).count();
    (requests, resent)
}

fn records(n: u64) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{{\"n\":{i}}}\n"))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn effects_apply_once_by_key_within_the_batch_wide_rate() {
    const RATE: u32 = 12;
    let server = DevServer::start();
    let data = support::data_dir();
    let service = Service::start(
        data.path(),
        "svc",
        &["500:5", "429:11", "lost:7", "slow:13", "--slow-ms", "1500"],
    );
    let source = data.path().join("items.jsonl");
    let n = 90;
    std::fs::write(&source, records(n)).expect("source");
    let plugins = built_plugins_dir();
    let grant = service.host();
    let metrics_ports: Vec<u16> = (0..3).map(|_| support::free_port()).collect();
    let workers: Vec<Worker> = metrics_ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            Worker::builder(&server, "http", &plugins)
                .args(&["--allow-http", &grant])
                .args(&["--metrics-addr", &format!("127.0.0.1:{port}")])
                .identity(&format!("http-worker-{i}"))
                .start()
        })
        .collect();
    let report = http_batch(
        &server,
        "http",
        &source,
        &format!("http://{grant}/items"),
        Some(&grant),
    )
    .args(&[
        "--split-size",
        "100",
        "--rate-limit",
        &format!("{RATE}/s"),
        "--request-timeout-ms",
        "1000",
    ])
    .report();
    let (requests, _) = assert_exactly_once(&report, &service, n);
    let outputs = report.outputs();
    let retried = requests.iter().filter(|r| r.status != 200).count();
    assert!(retried > 0, "the faults were hit");
    let counted = outputs.http;
    assert!(counted.retries > 0 && counted.ok >= n, "{counted:?}");
    // The workers' metrics count the same requests as the summary.
    let scraped = |name: &str, labels: &[&str]| -> u64 {
        metrics_ports
            .iter()
            .map(|port| {
                let (_, body) = support::http_get(*port, "/metrics");
                support::metric(&body, name, labels).unwrap_or(0.0) as u64
            })
            .sum()
    };
    assert_eq!(
        scraped("batch_http_requests_total", &["outcome=\"ok\""]),
        counted.ok
    );
    assert_eq!(
        scraped("batch_http_requests_total", &["outcome=\"throttled\""]),
        counted.throttled
    );
    assert_eq!(scraped("batch_http_retries_total", &[]), counted.retries);
    // The rate: no window of a second holds more than the limit (the service's clock).
    let mut times: Vec<f64> = requests.iter().map(|r| r.t).collect();
    times.sort_by(f64::total_cmp);
    let busiest = (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t < times[i] + 1.0)
                .count()
        })
        .max()
        .unwrap_or(0);
    println!(
        "{} requests for {n} items, busiest second {busiest} (limit {RATE}), {:.1} s",
        requests.len(),
        report.wall_seconds
    );
    assert!(busiest as u32 <= RATE, "{busiest} requests within a second");
    let served: Vec<String> = workers.iter().map(Worker::log_text).collect();
    assert!(
        served
            .iter()
            .filter(|log| log.contains("http_post"))
            .count()
            >= 1,
        "the workers ran it"
    );
}

/// A worker killed (SIGKILL) while its leaves are calling the service: Temporal retries those
/// leaves on the other worker, their items' requests carry the same keys, and every effect is
/// still applied exactly once; the outputs are exact.
#[test]
fn a_worker_killed_mid_batch_doubles_no_effect() {
    let server = DevServer::start();
    let data = support::data_dir();
    let service = Service::start(
        data.path(),
        "svc",
        &["500:7", "slow:13", "--slow-ms", "300"],
    );
    let source = data.path().join("items.jsonl");
    let n = 160;
    std::fs::write(&source, records(n)).expect("source");
    let plugins = built_plugins_dir();
    let grant = service.host();
    let worker = |i: u32| {
        Worker::builder(&server, "http-killed", &plugins)
            .args(&["--allow-http", &grant])
            .identity(&format!("http-killed-{i}"))
            .start()
    };
    let (mut doomed, _survivor) = (worker(0), worker(1));
    let applied = || service.requests().iter().filter(|r| r.applied).count() as u64;
    let report = std::thread::scope(|scope| {
        let batch = scope.spawn(|| {
            http_batch(
                &server,
                "http-killed",
                &source,
                &format!("http://{grant}/items"),
                Some(&grant),
            )
            .args(&["--split-size", "20", "--rate-limit", "20/s"])
            .report()
        });
        wait_for("effects before the crash", Duration::from_secs(120), || {
            (applied() >= 40).then_some(())
        });
        doomed.crash();
        let at_crash = applied();
        assert!(at_crash < n, "the batch was over before the crash");
        println!("worker killed after {at_crash} of {n} effects");
        batch.join().expect("starter thread")
    });
    let (requests, resent) = assert_exactly_once(&report, &service, n);
    println!(
        "{} requests for {n} items, {resent} keys sent more than once, {:.1} s",
        requests.len(),
        report.wall_seconds
    );
}

#[test]
fn hosts_the_workers_do_not_grant_are_refused_before_any_item() {
    let server = DevServer::start();
    let data = support::data_dir();
    let granted = Service::start(data.path(), "granted", &[]);
    let other = Service::start(data.path(), "other", &[]);
    let source = data.path().join("items.jsonl");
    std::fs::write(&source, records(5)).expect("source");
    let plugins = built_plugins_dir();
    let _worker = Worker::builder(&server, "deny", &plugins)
        .args(&["--allow-http", &granted.host()])
        .start();
    let run = |url: &str, allow: &str| {
        http_batch(&server, "deny", &source, url, Some(allow))
            .within(Duration::from_secs(300))
            .run()
    };
    // A batch naming a host the worker does not grant fails at its root, naming the host.
    let refused = run(&format!("http://{}/items", other.host()), &other.host());
    assert!(!refused.success);
    assert!(
        refused.stderr.contains(&format!(
            "the batch asks to call {}, which this worker does not grant",
            other.host()
        )),
        "{}",
        refused.stderr
    );
    // A granted batch whose plugin is sent elsewhere by a redirect: the plugin sees the 302,
    // nothing reaches the other host.
    let redirected = run(
        &format!(
            "http://{}/redirect?to=http://{}/items",
            granted.host(),
            other.host()
        ),
        &granted.host(),
    );
    assert!(!redirected.success);
    assert!(
        redirected.stderr.contains("the service answered 302"),
        "{}",
        redirected.stderr
    );
    // A plugin that calls services, in a batch that names no host, is refused before it runs.
    let unnamed = http_batch(
        &server,
        "deny",
        &source,
        &format!("http://{}/items", granted.host()),
        None,
    )
    .within(Duration::from_secs(300))
    .run();
    assert!(!unnamed.success);
    assert!(
        unnamed.stderr.contains("imports wasi:http"),
        "{}",
        unnamed.stderr
    );
    assert!(
        other.requests().is_empty(),
        "nothing reached the ungranted host"
    );
}

/// Inputs any Temporal client can send straight to the server, past the starter and the root's
/// check: a node of the tree (depth 1, which no root checks) whose policy names a host the
/// worker does not grant, and one whose timeout is out of bounds. The leaf refuses each where
/// its requests would be made, naming why; nothing reaches either host.
#[test]
fn forged_inputs_are_refused_where_the_requests_would_be_made() {
    let server = DevServer::start();
    let data = support::data_dir();
    let granted = Service::start(data.path(), "granted", &[]);
    let other = Service::start(data.path(), "other", &[]);
    let plugins = built_plugins_dir();
    let _worker = Worker::builder(&server, "forged", &plugins)
        .args(&["--allow-http", &granted.host()])
        .start();
    let forged = |id: &str, url_host: &str, policy: HttpPolicy| -> (bool, String) {
        let config = PluginConfig::parse(&format!(
            r#"{{"url": "http://{url_host}/items", "output_field": "id"}}"#
        ))
        .expect("configuration");
        let input = serde_json::json!({
            "first": 1,
            "last": 5,
            "depth": 1,
            "config": {
                "batch_size": 5,
                "max_children": 5,
                "plugin": {"name": "http_post"},
                "mode": "batch",
                "plugin_config": config,
                "http": policy,
            },
        });
        server.execute_batch("forged", id, &input)
    };
    let host = |h: &str| HostPort::parse(h).expect("a host");

    let (ok, text) = forged(
        "forged-http-ungranted",
        &other.host(),
        HttpPolicy::allowing(vec![host(&other.host())]),
    );
    assert!(
        !ok && text.contains(&format!(
            "the batch asks to call {}, which this worker does not grant",
            other.host()
        )),
        "{text}"
    );

    let mut unbounded = HttpPolicy::allowing(vec![host(&granted.host())]);
    unbounded.timeout_ms = u32::MAX;
    let (ok, text) = forged("forged-http-timeout", &granted.host(), unbounded);
    assert!(
        !ok && text.contains("--request-timeout-ms must be between 1 and"),
        "{text}"
    );
    assert!(
        other.requests().is_empty(),
        "nothing reached the other host"
    );
    assert!(granted.requests().is_empty(), "nor the granted one");
}
