//! Outbound HTTP as a batch asks for it (`starter --http-allow HOST[:PORT] --rate-limit N/s
//! --max-concurrent-requests M --request-timeout-ms T`): which hosts, how fast and how many at
//! once for the whole batch, and how a leaf's share of that is computed. The worker's operator
//! grants hosts separately (`worker --allow-http`); a batch only chooses among them.
//!
//! **The batch-wide limits hold across every worker** because the tree already bounds how many
//! leaves run at once (`max_leaves_in_flight`, shared down the tree by the server-side
//! workflows): each leaf takes `rate / leaves` requests per second and `concurrent / leaves`
//! requests at once, so the leaves running at any moment never exceed the batch's limits, on
//! however many workers they run. A batch whose limits cannot give each leaf in flight at least
//! one is refused ([`HttpError::Share`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Most hosts one batch may name.
pub const MAX_HOSTS: usize = 16;
/// Longest host name (DNS's limit).
pub const MAX_HOST_LEN: usize = 253;
/// The highest `--rate-limit`, requests per second.
pub const MAX_RATE: u32 = 100_000;
/// The highest `--max-concurrent-requests`.
pub const MAX_CONCURRENT: u32 = 10_000;
/// A request's wait when the batch sets none (`--request-timeout-ms`).
pub const DEFAULT_TIMEOUT_MS: u32 = 30_000;
/// The longest `--request-timeout-ms`: a request ends well within a leaf's activity timeout.
pub const MAX_TIMEOUT_MS: u32 = 300_000;
/// Longest batch id carried into keys and the user agent.
pub const MAX_BATCH_ID: usize = 512;

/// A host a request may go to: a name or an IP address, and a port (none: the scheme's own,
/// 80 for http, 443 for https).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostPort {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl HostPort {
    /// `HOST[:PORT]` (an IPv6 address in brackets: `[::1]:8080`). Host names are compared in
    /// lower case; a scheme, path, user or wildcard is refused, naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, HttpError> {
        let bad = |why: &str| HttpError::Host {
            host: crate::text::shown_message(text),
            why: why.to_owned(),
        };
        let text = text.trim();
        if text.contains("://") || text.contains('/') {
            return Err(bad("give a host and port, not a URL"));
        }
        if text.contains('@') || text.contains('*') {
            return Err(bad("no user part or wildcard: name each host"));
        }
        let (host, port) = match text.strip_prefix('[') {
            Some(rest) => {
                let (host, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
                if host.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(bad("not an IPv6 address in brackets"));
                }
                match after {
                    "" => (format!("[{host}]"), None),
                    _ => (
                        format!("[{host}]"),
                        Some(
                            after
                                .strip_prefix(':')
                                .ok_or_else(|| bad("expected ':PORT'"))?,
                        ),
                    ),
                }
            }
            None => match text.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (text.to_owned(), None),
            },
        };
        let port = port
            .map(|p| match p.parse::<u16>() {
                Ok(p) if p > 0 => Ok(p),
                _ => Err(bad("the port is not a number from 1 to 65535")),
            })
            .transpose()?;
        let host = host.to_ascii_lowercase();
        let valid_name = !host.is_empty()
            && host.len() <= MAX_HOST_LEN
            && (host.starts_with('[')
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        if !valid_name {
            return Err(bad(
                "a host is a name of letters, digits, '-' and '.', or an IP address",
            ));
        }
        Ok(Self { host, port })
    }

    /// Whether a request to `host` on `port` (its URL's, or the scheme's default) is to this.
    pub fn admits(&self, host: &str, port: u16, default_port: u16) -> bool {
        self.host.eq_ignore_ascii_case(host) && self.port.unwrap_or(default_port) == port
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

/// `--rate-limit N/s`: requests per second for the whole batch.
pub fn parse_rate(text: &str) -> Result<u32, HttpError> {
    let bad = || HttpError::Rate(crate::text::shown_message(text));
    let n = text.trim().strip_suffix("/s").ok_or_else(bad)?;
    match n.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_RATE).contains(&n) => Ok(n),
        _ => Err(bad()),
    }
}

/// What a batch asks of outbound HTTP; carried unchanged from the root to every leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpPolicy {
    /// The hosts its plugin may call (each must also be granted by the worker).
    pub allow: Vec<HostPort>,
    /// Requests per second for the whole batch (`--rate-limit N/s`); none: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Requests in flight at once for the whole batch (`--max-concurrent-requests`); none:
    /// one per leaf in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// How long one request may wait for its response, in milliseconds (not plugin CPU).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// The batch whose items the requests are for: its keys (`Idempotency-Key`) and user agent
    /// name it. Set by the root (a retry batch names the batch it retries, so its items keep
    /// their keys); absent from a starter's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// How many leaves the batch has (set by the root): when fewer than may run at once, the
    /// limits are shared among these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaves: Option<u64>,
}

fn default_timeout_ms() -> u32 {
    DEFAULT_TIMEOUT_MS
}

/// One leaf's part of the batch's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafShare {
    /// Requests per second (in any window of a second); none: unlimited.
    pub rate: Option<u32>,
    /// Requests in flight at once.
    pub concurrent: u32,
}

impl HttpPolicy {
    /// A policy allowing `hosts`, with the defaults otherwise.
    pub fn allowing(hosts: Vec<HostPort>) -> Self {
        Self {
            allow: hosts,
            rate_limit: None,
            max_concurrent: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            batch: None,
            leaves: None,
        }
    }

    /// Checks everything a worker relies on, whoever sent it.
    pub fn validate(&self, leaves_in_flight: u64) -> Result<(), HttpError> {
        if self.allow.is_empty() || self.allow.len() > MAX_HOSTS {
            return Err(HttpError::HostCount(self.allow.len()));
        }
        for host in &self.allow {
            // A host that does not parse back to itself was not written by `parse`.
            if HostPort::parse(&host.to_string()).as_ref() != Ok(host) {
                return Err(HttpError::Host {
                    host: crate::text::shown_message(&host.to_string()),
                    why: "not a host as --http-allow takes it".into(),
                });
            }
        }
        if let Some(rate) = self.rate_limit
            && !(1..=MAX_RATE).contains(&rate)
        {
            return Err(HttpError::Rate(format!("{rate}/s")));
        }
        if let Some(n) = self.max_concurrent
            && !(1..=MAX_CONCURRENT).contains(&n)
        {
            return Err(HttpError::Concurrent(n));
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(HttpError::Timeout(self.timeout_ms));
        }
        if let Some(batch) = &self.batch
            && (batch.is_empty() || batch.len() > MAX_BATCH_ID)
        {
            return Err(HttpError::BatchId);
        }
        if self.leaves == Some(0) {
            return Err(HttpError::Leaves);
        }
        self.leaf_share(leaves_in_flight).map(|_| ())
    }

    /// The most leaves of the batch running at once: `max_leaves_in_flight`, or the batch's
    /// leaves when it has fewer.
    pub fn leaves_in_flight(&self, max_leaves_in_flight: u64) -> u64 {
        self.leaves
            .map_or(max_leaves_in_flight, |l| l.min(max_leaves_in_flight))
            .max(1)
    }

    /// A leaf's share when at most `leaves` leaves run at once: whole requests each, so the
    /// leaves' shares never add up to more than the batch's limits.
    pub fn leaf_share(&self, leaves: u64) -> Result<LeafShare, HttpError> {
        let leaves = leaves.max(1);
        let share = |limit: u32, what: &'static str| {
            let each = u64::from(limit) / leaves;
            if each == 0 {
                Err(HttpError::Share {
                    what,
                    limit,
                    leaves,
                })
            } else {
                Ok(u32::try_from(each).unwrap_or(u32::MAX))
            }
        };
        Ok(LeafShare {
            rate: self
                .rate_limit
                .map(|r| share(r, "--rate-limit (per second)"))
                .transpose()?,
            concurrent: match self.max_concurrent {
                Some(n) => share(n, "--max-concurrent-requests")?,
                None => 1,
            },
        })
    }

    /// The most leaves in flight these limits allow (each leaf needs at least one request per
    /// second and one at once).
    pub fn max_leaves(&self) -> Option<u64> {
        [self.rate_limit, self.max_concurrent]
            .into_iter()
            .flatten()
            .map(u64::from)
            .min()
    }
}

/// What a leaf's activity gets: the batch's policy and how many leaves may run at once, from
/// which it takes its share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpTask {
    pub policy: HttpPolicy,
    pub leaves_in_flight: u64,
}

impl HttpTask {
    /// The leaf's share, after checking the whole policy (a task may come from any client).
    pub fn share(&self) -> Result<LeafShare, HttpError> {
        self.policy.validate(self.leaves_in_flight)?;
        self.policy.leaf_share(self.leaves_in_flight)
    }

    /// The batch the requests are for (the root sets it; a forged task without one is the
    /// leaf's own).
    pub fn batch<'a>(&'a self, fallback: &'a str) -> &'a str {
        self.policy.batch.as_deref().unwrap_or(fallback)
    }
}

/// The `Idempotency-Key` of the `n`-th request (from 0) a plugin makes for the item at
/// `index` of batch `batch`: the same on every retry of the request, of the item, of its leaf
/// and on any worker, so the service can apply each effect once.
pub fn idempotency_key(batch: &str, index: u64, n: u32) -> String {
    format!("{}/{index}/{n}", header_safe(batch))
}

/// The user agent of a batch's requests.
pub fn user_agent(batch: &str) -> String {
    format!(
        "batch-worker/{} (batch {})",
        env!("CARGO_PKG_VERSION"),
        header_safe(batch)
    )
}

/// `text` with every byte that is not visible ASCII replaced by `_`, so it is a valid header
/// value whatever a workflow id holds.
fn header_safe(text: &str) -> String {
    text.chars()
        .take(MAX_BATCH_ID)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

/// Whether a status says "too many requests, later": 429 Too Many Requests or 503 Service
/// Unavailable (counted as throttled, and pausing the leaf that got it).
pub fn is_throttling(status: u16) -> bool {
    matches!(status, 429 | 503)
}

/// What a leaf's requests came to, summed up the tree into the batch's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCounts {
    /// Requests sent (every attempt).
    pub requests: u64,
    /// Of them, attempts again after a transient failure.
    pub retries: u64,
    /// Responses by class.
    pub ok: u64,
    pub redirects: u64,
    pub client_errors: u64,
    /// 429 Too Many Requests and 503 Service Unavailable.
    pub throttled: u64,
    pub server_errors: u64,
    /// Attempts with no response: refused connections, timeouts, broken connections.
    pub failed: u64,
    /// Requests refused by the host before sending: ungranted hosts, over a bound.
    pub denied: u64,
}

impl HttpCounts {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Counts one response's status.
    pub fn status(&mut self, status: u16) {
        match status {
            s if is_throttling(s) => self.throttled += 1,
            200..=299 => self.ok += 1,
            300..=399 => self.redirects += 1,
            500..=599 => self.server_errors += 1,
            _ => self.client_errors += 1,
        }
    }

    pub fn add(&mut self, other: &HttpCounts) {
        self.requests += other.requests;
        self.retries += other.retries;
        self.ok += other.ok;
        self.redirects += other.redirects;
        self.client_errors += other.client_errors;
        self.throttled += other.throttled;
        self.server_errors += other.server_errors;
        self.failed += other.failed;
        self.denied += other.denied;
    }
}

impl fmt::Display for HttpCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} retries): {} 2xx, {} 3xx, {} 4xx, {} throttled (429/503), {} 5xx, {} \
             without response, {} denied",
            self.requests,
            self.retries,
            self.ok,
            self.redirects,
            self.client_errors,
            self.throttled,
            self.server_errors,
            self.failed,
            self.denied
        )
    }
}

/// Why a batch's HTTP settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("--http-allow {host:?}: {why}")]
    Host { host: String, why: String },
    #[error("a batch names 1 to {MAX_HOSTS} hosts with --http-allow (got {0})")]
    HostCount(usize),
    #[error("--rate-limit {0:?}: expected N/s with N from 1 to {MAX_RATE}, e.g. 50/s")]
    Rate(String),
    #[error("--max-concurrent-requests must be between 1 and {MAX_CONCURRENT} (got {0})")]
    Concurrent(u32),
    #[error("--request-timeout-ms must be between 1 and {MAX_TIMEOUT_MS} (got {0})")]
    Timeout(u32),
    #[error("the batch id of an HTTP policy must be 1 to {MAX_BATCH_ID} bytes")]
    BatchId,
    #[error("an HTTP policy's batch has at least one leaf")]
    Leaves,
    #[error(
        "{what} {limit} cannot give each of the {leaves} leaves in flight one: lower \
         --max-leaves-in-flight to at most {limit}"
    )]
    Share {
        what: &'static str,
        limit: u32,
        leaves: u64,
    },
    #[error(
        "a batch that calls services does not infer a Parquet schema (that would run its \
         plugin, and its requests, twice): give --output-schema"
    )]
    SchemaInference,
    #[error("--http-allow runs in batch mode only (--mode batch or a data source), not {0} mode")]
    Mode(crate::LeafMode),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_with_and_without_ports() {
        let h = HostPort::parse("API.example.com:8080").expect("ok");
        assert_eq!(h.host, "api.example.com");
        assert_eq!(h.port, Some(8080));
        assert_eq!(h.to_string(), "api.example.com:8080");
        assert!(h.admits("api.EXAMPLE.com", 8080, 80));
        assert!(!h.admits("api.example.com", 80, 80));
        let h = HostPort::parse("example.com").expect("ok");
        assert!(h.admits("example.com", 443, 443));
        assert!(!h.admits("example.com", 8443, 443));
        let h = HostPort::parse("[::1]:9000").expect("ok");
        assert_eq!(h.to_string(), "[::1]:9000");
        for bad in [
            "http://x",
            "x/y",
            "u@x",
            "*.x",
            "x:0",
            "x:99999",
            "",
            "[::1",
            "x y",
            "[nothost]",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_are_whole_requests_per_second() {
        assert_eq!(parse_rate("50/s"), Ok(50));
        for bad in ["0/s", "50", "1.5/s", "50/m", "100001/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn leaf_shares_never_add_up_to_more_than_the_limits() {
        let mut policy = HttpPolicy::allowing(vec![HostPort::parse("h:1").expect("ok")]);
        policy.rate_limit = Some(10);
        policy.max_concurrent = Some(7);
        for leaves in 1..=7 {
            let share = policy.leaf_share(leaves).expect("ok");
            assert!(u64::from(share.rate.expect("ok")) * leaves <= 10);
            assert!(u64::from(share.concurrent) * leaves <= 7);
            assert!(share.concurrent >= 1);
        }
        let e = policy.leaf_share(8).expect_err("fails");
        assert!(e.to_string().contains("at most 7"), "{e}");
        assert_eq!(policy.max_leaves(), Some(7));
        assert!(policy.validate(7).is_ok());
        assert!(policy.validate(8).is_err());
    }

    #[test]
    fn forged_policies_are_refused() {
        let mut policy = HttpPolicy::allowing(vec![HostPort {
            host: "evil/x".into(),
            port: None,
        }]);
        assert!(policy.validate(1).is_err());
        policy.allow = vec![];
        assert!(policy.validate(1).is_err());
        policy.allow = vec![HostPort::parse("h").expect("ok")];
        policy.timeout_ms = 0;
        assert!(policy.validate(1).is_err());
    }

    #[test]
    fn keys_and_agents_are_header_safe() {
        assert_eq!(idempotency_key("b\n1", 7, 0), "b_1/7/0");
        assert!(user_agent("b 1").ends_with("(batch b_1)"));
        let mut counts = HttpCounts::default();
        counts.status(200);
        counts.status(429);
        counts.status(503);
        counts.status(500);
        counts.status(404);
        assert_eq!(
            (counts.ok, counts.throttled, counts.server_errors),
            (1, 2, 1)
        );
        assert_eq!(counts.client_errors, 1);
    }
}
