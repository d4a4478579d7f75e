//! What users see from outside: the worker's Prometheus endpoint and the starter's Web UI link.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use support::{
    DevServer, Starter, Worker, http_get, install_plugin, metric as sample, starter,
    sum_of_squares, wait_for,
};

#[test]
fn the_worker_serves_sdk_and_plugin_metrics_for_prometheus() {
    let server = DevServer::start();
    let plugins = tempfile::tempdir().expect("plugins dir");
    install_plugin(plugins.path(), "square_number", "square_number");
    install_plugin(plugins.path(), "hostile", "hostile");
    let port = support::free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let worker = Worker::builder(&server, "metrics", plugins.path())
        .args(&["--metrics-addr", &metrics_addr])
        .start();
    assert!(
        worker
            .log_text()
            .contains(&format!("serving metrics on http://{metrics_addr}/metrics")),
        "{}",
        worker.log_text()
    );

    let good = Starter::on(&server, "metrics").args(&["50"]).report();
    assert_eq!(good.outputs().sum, sum_of_squares(50));
    // hostile: items 1..=5 misbehave in five ways (loop, panic, memory, stack, refusal).
    let bad = starter(&server, "metrics", &["10", "--plugin", "hostile"]);
    assert!(!bad.success);

    let metrics = wait_for("the plugin metrics", Duration::from_secs(30), || {
        let (status, body) = http_get(port, "/metrics");
        assert!(status.contains("200"), "{status}");
        sample(
            &body,
            "batch_plugin_failures_total",
            &["plugin=\"hostile\""],
        )
        .is_some()
        .then_some(body)
    });
    let square = ["plugin=\"square_number\""];
    assert_eq!(
        sample(&metrics, "batch_plugin_calls_total", &square),
        Some(50.0)
    );
    assert_eq!(
        sample(&metrics, "batch_plugin_call_latency_seconds_count", &square),
        Some(50.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "batch_plugin_calls_total",
            &["plugin=\"hostile\""]
        ),
        Some(5.0),
        "items 6..=10 succeed"
    );
    for kind in [
        "PluginDeadlineExceeded",
        "PluginTrapped",
        "PluginRefusedItem",
    ] {
        let labels = ["plugin=\"hostile\"", &format!("kind=\"{kind}\"")];
        assert!(
            sample(&metrics, "batch_plugin_failures_total", &labels).is_some_and(|n| n >= 1.0),
            "{kind}:\n{metrics}"
        );
    }
    // The SDK's own metrics, on the same endpoint: worker slots, activity latency, RPCs.
    for sdk_metric in [
        "temporal_worker_task_slots_available",
        "temporal_activity_execution_latency_seconds_count",
        "temporal_workflow_completed_total",
        "temporal_request_total",
    ] {
        assert!(
            sample(&metrics, sdk_metric, &[]).is_some(),
            "{sdk_metric} missing:\n{metrics}"
        );
    }
    assert!(http_get(port, "/elsewhere").0.contains("404"));
}

#[test]
fn the_starter_links_the_batch_in_the_web_ui_when_the_server_has_one() {
    let server = DevServer::start_with_ui();
    let ui_port = server.ui_port.expect("a UI port");
    let plugins = tempfile::tempdir().expect("plugins dir");
    install_plugin(plugins.path(), "square_number", "square_number");
    let _worker = Worker::start(&server, "web-ui", plugins.path());
    // The UI may come up a little after the server's gRPC port.
    wait_for("the Web UI", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", ui_port))
            .ok()
            .map(|_| http_get(ui_port, "/").0)
            .filter(|status| status.contains("200"))
    });

    let run = starter(&server, "web-ui", &["20"]);
    assert!(run.success, "{}", run.stderr);
    let page = format!(
        "http://127.0.0.1:{ui_port}/namespaces/default/workflows/batch-processing-20-b10-c5"
    );
    assert!(
        run.stderr.contains(&format!("Web UI: {page}\n")),
        "{}",
        run.stderr
    );
    // The link opens the UI (a single-page app: the server answers every path with it).
    let (status, body) = http_get(
        ui_port,
        &page[format!("http://127.0.0.1:{ui_port}").len()..],
    );
    assert!(status.contains("200") && body.contains("<html"), "{status}");

    let json = starter(&server, "web-ui", &["20", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(report["web_ui"], page.as_str());

    // A headless server has no UI: no link.
    let headless = DevServer::start();
    let _other = Worker::start(&headless, "web-ui", plugins.path());
    let run = starter(&headless, "web-ui", &["20"]);
    assert!(run.success, "{}", run.stderr);
    assert!(!run.stderr.contains("Web UI"), "{}", run.stderr);
    let explicit = starter(
        &headless,
        "web-ui",
        &["20", "--ui-url", "https://ui.example/temporal"],
    );
    assert!(
        explicit
            .stderr
            .contains("Web UI: https://ui.example/temporal/namespaces/default/workflows/batch-processing-20-b10-c5"),
        "{}",
        explicit.stderr
    );
}
