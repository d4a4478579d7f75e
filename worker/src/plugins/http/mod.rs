//! Outbound HTTP for plugins, as a capability the operator grants and a batch asks for.
//!
//! A plugin that imports `wasi:http/outgoing-handler` runs only in a batch started with
//! `--http-allow HOST[:PORT]`, and only on hosts the worker's operator granted
//! (`worker --allow-http`): the root refuses any other host before an item runs, and every
//! leaf checks again where the requests are made ([`HttpGrants::leaf`]). Each request then
//! goes through wasmtime-wasi-http's hooks ([`hooks`]) to its leaf ([`leaf`]), which:
//!
//! - sends it only to a host the batch allows (a redirect reaches the plugin as a 3xx; a
//!   request to where it points is checked like any other), with the batch's user agent and an
//!   `Idempotency-Key` of the batch, the item and the request's number within the item;
//! - bounds its body and the response's ([`HTTP`]), each attempt by
//!   the batch's `--request-timeout-ms`, and by the same any wait of the plugin's for room in
//!   a body it writes ([`body`]);
//! - retries transient failures (no connection, a timeout, 429, 500, 502, 503, 504) with
//!   backoff, honouring `Retry-After`; when they persist, the item's failure is the service's:
//!   the leaf is retried by Temporal, its items' requests keeping their keys;
//! - paces the leaf ([`gate`]): its share of the batch's `--rate-limit` and
//!   `--max-concurrent-requests`, halved for a while after each 429 or 503.
//!
//! Nothing else changes in the sandbox: no sockets, files or environment; the CPU deadline
//! counts the plugin's CPU time, not its waits (see `SandboxedEngine::new_store`).

pub mod body;
pub mod gate;
pub mod hooks;
pub mod leaf;

use std::sync::Arc;
use std::time::Duration;

use batch_core::http::{HostPort, HttpTask};

pub use hooks::HttpState;
pub use leaf::LeafHttp;

/// Outbound HTTP (a batch with `--http-allow`), bounded whatever the plugin or the service
/// does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpBounds {
    /// Largest request body a plugin may send.
    pub request_bytes: usize,
    /// Largest response body the host reads; a longer one fails the request (the plugin gets
    /// `HTTP-response-body-size`).
    pub response_bytes: usize,
    /// Requests one item's call may make; more are refused (`HTTP-request-denied`).
    pub requests_per_item: u32,
    /// Attempts of one request: the first, then the host's retries of transient failures
    /// (no connection, a timeout, 429, 500, 502, 503, 504).
    pub attempts: u32,
    /// The wait before the first retry, doubled for each further one.
    pub first_backoff: Duration,
    /// The longest wait between attempts, whatever a `Retry-After` asks.
    pub max_backoff: Duration,
}

pub const HTTP: HttpBounds = HttpBounds {
    request_bytes: 1 << 20,
    response_bytes: 4 << 20,
    requests_per_item: 16,
    attempts: 4,
    first_backoff: Duration::from_millis(250),
    max_backoff: Duration::from_secs(30),
};

/// A store's data that may carry HTTP state (the sandbox's `StoreState`).
pub trait HttpStore {
    /// The store's HTTP, in a batch that calls services.
    fn http_state(&self) -> Option<&HttpState>;
}

/// The WASI HTTP interfaces a plugin may import (any 0.2 release): the client side only.
pub fn is_http_import(import: &str) -> bool {
    ["wasi:http/types@0.2.", "wasi:http/outgoing-handler@0.2."]
        .iter()
        .any(|p| import.starts_with(p))
}

/// The hosts the worker's operator lets plugins call (`--allow-http`, `BATCH_ALLOW_HTTP`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpGrants {
    hosts: Vec<HostPort>,
}

/// Why a batch's HTTP cannot run on this worker; the message names the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotGranted {
    #[error(
        "the batch asks to call {host}, which this worker does not grant (it grants {granted}); \
         the worker's operator grants hosts with --allow-http"
    )]
    Host { host: String, granted: String },
    #[error("{0}")]
    Policy(#[from] batch_core::http::HttpError),
}

impl HttpGrants {
    /// The operator's hosts, each `HOST[:PORT]`; an unusable one is refused, with the reason.
    pub fn new<S: AsRef<str>>(hosts: &[S]) -> Result<Self, String> {
        let hosts = hosts
            .iter()
            .map(|h| h.as_ref().trim())
            .filter(|h| !h.is_empty())
            .map(|h| HostPort::parse(h).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { hosts })
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    pub fn hosts(&self) -> &[HostPort] {
        &self.hosts
    }

    /// Every host of the batch, if this worker grants them all (a batch host without a port
    /// needs a grant without one: the scheme decides its port).
    pub fn check(&self, wanted: &[HostPort]) -> Result<(), NotGranted> {
        match wanted.iter().find(|w| !self.hosts.contains(w)) {
            None => Ok(()),
            Some(host) => Err(NotGranted::Host {
                host: batch_core::text::shown_message(&host.to_string()),
                granted: match self.hosts.is_empty() {
                    true => "no host".into(),
                    false => self
                        .hosts
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                },
            }),
        }
    }

    /// A leaf's HTTP for `task`, checked against these grants and its share of the batch's
    /// limits; `leaf_id` names the batch when the task does not (a forged one).
    pub fn leaf(&self, task: &HttpTask, leaf_id: &str) -> Result<Arc<LeafHttp>, NotGranted> {
        let share = task.share()?;
        self.check(&task.policy.allow)?;
        Ok(Arc::new(LeafHttp::new(
            task.policy.allow.clone(),
            task.batch(leaf_id),
            share,
            Duration::from_millis(u64::from(task.policy.timeout_ms)),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batch_core::http::HttpPolicy;

    #[test]
    fn a_batch_only_chooses_among_the_grants() {
        let grants = HttpGrants::new(&["127.0.0.1:8080", "api.example.com"]).expect("ok");
        let host = |h: &str| HostPort::parse(h).expect("ok");
        assert!(grants.check(&[host("127.0.0.1:8080")]).is_ok());
        assert!(grants.check(&[host("API.example.com")]).is_ok());
        let e = grants.check(&[host("127.0.0.1:8081")]).expect_err("fails");
        assert!(e.to_string().contains("127.0.0.1:8081"), "{e}");
        assert!(grants.check(&[host("api.example.com:443")]).is_err());
        let none = HttpGrants::default();
        let e = none.check(&[host("h")]).expect_err("fails").to_string();
        assert!(e.contains("grants no host"), "{e}");
        assert!(HttpGrants::new(&["http://x/"]).is_err());
        let task = HttpTask {
            policy: HttpPolicy::allowing(vec![host("127.0.0.1:8080")]),
            leaves_in_flight: 4,
        };
        assert!(grants.leaf(&task, "leaf").is_ok());
        assert!(none.leaf(&task, "leaf").is_err());
    }

    #[test]
    fn only_the_client_side_of_wasi_http_is_imported() {
        assert!(is_http_import("wasi:http/outgoing-handler@0.2.0"));
        assert!(is_http_import("wasi:http/types@0.2.12"));
        assert!(!is_http_import("wasi:http/incoming-handler@0.2.0"));
        assert!(!is_http_import("wasi:http/types@0.3.0"));
    }
}
