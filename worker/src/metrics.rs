//! The worker's own metrics, served on the same Prometheus endpoint as the SDK's (`temporal_*`
//! worker, poller and RPC metrics) when the worker runs with `--metrics-addr`.
//!
//! - `batch_plugin_calls_total{plugin}`: items a plugin computed (a batch-mode leaf adds its
//!   slice's items at once);
//! - `batch_plugin_failures_total{plugin,kind}`: items that failed, by [`crate::routing::kind`]
//!   (a refusal, a trap, the deadline ...); an item re-sent to a worker holding its plugin
//!   version is not a failure;
//! - `batch_plugin_call_latency_seconds{plugin}`: wall time of one isolated call (item and
//!   local modes: finding the version, a fresh instance, the call);
//! - `batch_http_requests_total{outcome}`: the requests of plugins that call services, each
//!   attempt as it ends: `ok` (2xx), `redirect`, `client_error`, `throttled` (429, 503),
//!   `server_error`, `no_response` (refused, timed out, broken), `denied` (refused by the
//!   host before sending: an ungranted host, over a bound);
//! - `batch_http_retries_total`: of those, attempts made again after a transient failure.
//!
//! Labels stay bounded: plugin names are the files in one directory (an unknown name is
//! counted as `(unknown)`), kinds a fixed list.

use std::time::Duration;

use temporalio_common::telemetry::metrics::{
    Counter, HistogramDuration, MetricKeyValue, MetricParameters, NewAttributes, TemporalMeter,
};

use batch_core::http::HttpCounts;

use crate::plugins::PluginError;
use crate::routing;

/// Buckets for call latency, in seconds: a fresh-instance call takes ~10 us, a plugin at its
/// CPU deadline 1 s (the default), so the SDK's default buckets (50 ms and up) would put every
/// healthy call in the first one.
pub const CALL_LATENCY_BUCKETS: [f64; 12] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025, 0.1, 0.5, 1.0,
];
pub const CALL_LATENCY: &str = "batch_plugin_call_latency";

#[derive(Clone)]
pub struct PluginMetrics {
    meter: TemporalMeter,
    calls: Counter,
    failures: Counter,
    latency: HistogramDuration,
    http_requests: Counter,
    http_retries: Counter,
}

impl PluginMetrics {
    pub fn new(meter: TemporalMeter) -> Self {
        let calls = meter.counter(
            MetricParameters::builder()
                .name("batch_plugin_calls")
                .description("Items computed by each plugin")
                .build(),
        );
        let failures = meter.counter(
            MetricParameters::builder()
                .name("batch_plugin_failures")
                .description("Items that failed, by plugin and kind of failure")
                .build(),
        );
        let latency = meter.histogram_duration(
            MetricParameters::builder()
                .name(CALL_LATENCY)
                .description("Wall time of one isolated plugin call, instantiation included")
                .build(),
        );
        let http_requests = meter.counter(
            MetricParameters::builder()
                .name("batch_http_requests")
                .description("Requests of plugins that call services, by outcome")
                .build(),
        );
        let http_retries = meter.counter(
            MetricParameters::builder()
                .name("batch_http_retries")
                .description("Requests made again after a transient failure")
                .build(),
        );
        Self {
            meter,
            calls,
            failures,
            latency,
            http_requests,
            http_retries,
        }
    }

    /// Records nothing: the worker runs without `--metrics-addr`.
    pub fn disabled() -> Self {
        Self::new(TemporalMeter::no_op())
    }

    /// One isolated call of `plugin` that took `took`.
    pub fn call(&self, plugin: &str, took: Duration, outcome: Result<(), &PluginError>) {
        let attributes = self.attributes([MetricKeyValue::new("plugin", plugin.to_owned())]);
        match outcome {
            Ok(()) => {
                self.calls.add(1, &attributes);
                self.latency.record(took, &attributes);
            }
            Err(e) => self.failure(plugin, e),
        }
    }

    /// `items` computed in one go by a batch-mode leaf.
    pub fn items(&self, plugin: &str, items: u64) {
        if items > 0 {
            let attributes = self.attributes([MetricKeyValue::new("plugin", plugin.to_owned())]);
            self.calls.add(items, &attributes);
        }
    }

    pub fn failure(&self, plugin: &str, error: &PluginError) {
        if routing::is_routable(error) {
            // Not a failure of the plugin: the item goes on to a worker that has it.
            return;
        }
        // A name no file answers to comes from the workflow's input, not from the directory:
        // it must not become a label value (any client could mint new ones).
        let plugin = match error {
            PluginError::NotFound { .. } | PluginError::InvalidName(_) => "(unknown)",
            _ => plugin,
        };
        let attributes = self.attributes([
            MetricKeyValue::new("plugin", plugin.to_owned()),
            MetricKeyValue::new("kind", routing::kind(error).as_str()),
        ]);
        self.failures.add(1, &attributes);
    }

    /// Requests counted in `delta` (what one event of a leaf's HTTP added).
    pub fn http(&self, delta: &HttpCounts) {
        let outcomes = [
            ("ok", delta.ok),
            ("redirect", delta.redirects),
            ("client_error", delta.client_errors),
            ("throttled", delta.throttled),
            ("server_error", delta.server_errors),
            ("no_response", delta.failed),
            ("denied", delta.denied),
        ];
        for (outcome, n) in outcomes {
            if n > 0 {
                let attributes = self.attributes([MetricKeyValue::new("outcome", outcome)]);
                self.http_requests.add(n, &attributes);
            }
        }
        if delta.retries > 0 {
            self.http_retries.add(delta.retries, &self.attributes([]));
        }
    }

    fn attributes<const N: usize>(
        &self,
        labels: [MetricKeyValue; N],
    ) -> temporalio_common::telemetry::metrics::MetricAttributes {
        self.meter.extend_attributes(
            self.meter.get_default_attributes().clone(),
            NewAttributes::from(labels),
        )
    }
}
