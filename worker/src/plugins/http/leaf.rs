//! What one leaf's requests share, and how each is sent: to a granted host only, with the
//! batch's user agent and the item's `Idempotency-Key`, bodies bounded both ways, each attempt
//! bounded by the batch's timeout, transient failures retried by the host with backoff (a
//! `Retry-After` honoured), the whole leaf paced by its [`Gate`].

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;
use std::time::Duration;

use batch_core::http::{HostPort, HttpCounts, LeafShare};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use wasmtime_wasi_http::{Error, WasiBody};

use super::HTTP;
use super::gate::Gate;

/// The HTTP of one leaf (one activity): built once, shared by its instances.
pub struct LeafHttp {
    /// The hosts requests may go to: the batch's, each granted by the worker.
    allow: Vec<HostPort>,
    /// The batch the requests are for (keys and user agent name it).
    batch: String,
    user_agent: HeaderValue,
    timeout: Duration,
    gate: Gate,
    counts: Mutex<HttpCounts>,
    /// Told of every count as it is made ([`Self::observe`]): the worker's metrics.
    observer: OnceLock<Observer>,
}

/// Why the item's last request failed transiently, after the host's retries: the item's
/// failure, if the plugin fails it, is then the service's and the leaf is retried.
pub type Transient = Option<String>;

type Observer = Box<dyn Fn(&HttpCounts) + Send + Sync>;

impl LeafHttp {
    /// `allow` must already be checked against the worker's grants ([`super::HttpGrants`]).
    pub fn new(allow: Vec<HostPort>, batch: &str, share: LeafShare, timeout: Duration) -> Self {
        let agent = batch_core::http::user_agent(batch);
        Self {
            allow,
            batch: batch.to_owned(),
            user_agent: HeaderValue::from_str(&agent)
                .unwrap_or_else(|_| HeaderValue::from_static("batch-worker")),
            timeout,
            gate: Gate::new(share),
            counts: Mutex::new(HttpCounts::default()),
            observer: OnceLock::new(),
        }
    }

    /// A leaf that may call nothing: what a plugin importing `wasi:http` gets outside an HTTP
    /// batch, should it ever be instantiated there.
    pub fn denying() -> Self {
        Self::new(
            Vec::new(),
            "none",
            LeafShare {
                rate: None,
                concurrent: 1,
            },
            Duration::from_secs(1),
        )
    }

    pub fn batch(&self) -> &str {
        &self.batch
    }

    /// How long one attempt may wait, and so any wait of the plugin's on its requests.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The requests counted since the last call, emptied.
    pub fn take_counts(&self) -> HttpCounts {
        std::mem::take(&mut *self.counts())
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HttpCounts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells `observer` of every count as it is made (what it adds), besides keeping them for
    /// the batch's outputs (the worker's metrics: the host knows nothing of them).
    pub fn observe(&self, observer: impl Fn(&HttpCounts) + Send + Sync + 'static) {
        let _ = self.observer.set(Box::new(observer));
    }

    /// The one place requests are counted: for the batch's outputs, and the observer.
    fn count(&self, f: impl FnOnce(&mut HttpCounts)) {
        let mut delta = HttpCounts::default();
        f(&mut delta);
        self.counts().add(&delta);
        if let Some(observer) = self.observer.get() {
            observer(&delta);
        }
    }

    /// Counts a request refused before sending, and says why in the log (bounded: the URL is
    /// the plugin's).
    pub(super) fn deny(&self, why: &str) -> Error {
        self.count(|c| c.denied += 1);
        tracing::warn!(
            batch = %self.batch,
            "HTTP request refused: {}",
            batch_core::text::shown_message(why)
        );
        Error::HttpRequestDenied
    }

    /// Sends `request` as the batch allows, with `key`, and returns the whole response (its
    /// body read, so the plugin's reads never wait on the network). `transient` is set when
    /// the last attempt failed transiently.
    pub(super) async fn send(
        self: Arc<Self>,
        request: Request<WasiBody>,
        key: String,
        transient: Arc<Mutex<Transient>>,
    ) -> Result<Response<WasiBody>, Error> {
        let uri = request.uri().clone();
        let default_port = match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        };
        let (host, port) = match uri.host() {
            Some(host) => (host, uri.port_u16().unwrap_or(default_port)),
            None => return Err(self.deny("a request without a host")),
        };
        if !self
            .allow
            .iter()
            .any(|h| h.admits(host, port, default_port))
        {
            return Err(self.deny(&format!(
                "{host}:{port} is not among the batch's --http-allow hosts"
            )));
        }
        let (mut parts, body) = request.into_parts();
        parts
            .headers
            .insert(http::header::USER_AGENT, self.user_agent.clone());
        let key = HeaderValue::from_str(&key).map_err(|_| self.deny("an unusable key"))?;
        parts.headers.insert("idempotency-key", key);
        let body = match tokio::time::timeout(
            self.timeout,
            Limited::new(body, HTTP.request_bytes).collect(),
        )
        .await
        {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                self.count(|c| c.denied += 1);
                return Err(Error::HttpRequestBodySize(Some(HTTP.request_bytes as u64)));
            }
            Ok(Err(_)) | Err(_) => return Err(Error::HttpRequestBodySize(None)),
        };
        let mut attempt = 0;
        loop {
            let outcome = {
                let _permit = self.gate.admit().await;
                self.count(|c| {
                    c.requests += 1;
                    c.retries += u64::from(attempt > 0);
                });
                let request = rebuild(&parts, body.clone());
                tokio::time::timeout(self.timeout, self.attempt(request)).await
            };
            attempt += 1;
            let last = attempt >= HTTP.attempts;
            let backoff = HTTP
                .first_backoff
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(HTTP.max_backoff);
            let failure = match outcome {
                Ok(Ok(response)) => {
                    let status = response.status();
                    self.count(|c| c.status(status.as_u16()));
                    if !is_transient_status(status) {
                        self.gate.succeeded();
                        return Ok(response);
                    }
                    let wait = retry_after(&response)
                        .unwrap_or(backoff)
                        .min(HTTP.max_backoff);
                    let throttling = batch_core::http::is_throttling(status.as_u16());
                    if throttling {
                        self.gate.throttled(wait);
                    }
                    if last {
                        *lock(&transient) = Some(format!("{status} from {host}:{port}"));
                        return Ok(response);
                    }
                    if !throttling {
                        tokio::time::sleep(wait).await;
                    }
                    continue;
                }
                Ok(Err(e)) => e,
                Err(_) => Error::HttpResponseTimeout,
            };
            self.count(|c| c.failed += 1);
            if !is_transient_error(&failure) {
                return Err(failure);
            }
            if last {
                *lock(&transient) = Some(format!("{failure:?} from {host}:{port}"));
                return Err(failure);
            }
            tokio::time::sleep(backoff).await;
        }
    }

    /// One attempt: the request sent, the response's body read whole (at most
    /// [`HTTP`]`.response_bytes`).
    async fn attempt(&self, request: Request<WasiBody>) -> Result<Response<WasiBody>, Error> {
        let options = wasmtime_wasi_http::RequestOptions {
            connect_timeout: Some(self.timeout),
            first_byte_timeout: Some(self.timeout),
            between_bytes_timeout: Some(self.timeout),
        };
        let (response, connection) =
            wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
        let (head, body) = response.into_parts();
        // The connection's I/O is driven beside the body's reading, in this task (no task of
        // its own to hand over to), and dropped with it.
        let body = {
            let mut reading = std::pin::pin!(Limited::new(body, HTTP.response_bytes).collect());
            let mut connection = Some(Box::pin(connection));
            std::future::poll_fn(|cx| {
                if let Poll::Ready(body) = reading.as_mut().poll(cx) {
                    return Poll::Ready(body);
                }
                if let Some(driving) = connection.as_mut()
                    && driving.as_mut().poll(cx).is_ready()
                {
                    // The connection ended: whatever it read is in the body now.
                    connection = None;
                    return reading.as_mut().poll(cx);
                }
                Poll::Pending
            })
            .await
        };
        let body = match body {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(Error::HttpResponseBodySize(Some(
                    HTTP.response_bytes as u64,
                )));
            }
            Err(e) => match e.downcast::<Error>() {
                Ok(e) => return Err(*e),
                Err(_) => return Err(Error::HttpResponseIncomplete),
            },
        };
        Ok(Response::from_parts(head, full(body)))
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn full(bytes: Bytes) -> WasiBody {
    Full::new(bytes)
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync()
}

/// The request again, for another attempt (a request's parts cannot be cloned whole).
fn rebuild(parts: &http::request::Parts, body: Bytes) -> Request<WasiBody> {
    let mut request = Request::new(full(body));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request
}

/// Statuses another attempt may change: too many requests, and the server's own transient
/// failures.
fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// Failures another attempt may change: no connection, a timeout, a broken connection.
fn is_transient_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Connect(_)
            | Error::Hyper(_)
            | Error::ConnectionRefused
            | Error::ConnectionTerminated
            | Error::ConnectionTimeout
            | Error::ConnectionReadTimeout
            | Error::ConnectionWriteTimeout
            | Error::ConnectionLimitReached
            | Error::DnsTimeout
            | Error::DestinationUnavailable
            | Error::HttpResponseIncomplete
            | Error::HttpResponseTimeout
    )
}

/// The wait a response's `Retry-After` asks: a number of seconds, or an HTTP date (the wait
/// until then, none if it has passed). Capped by the caller.
fn retry_after(response: &Response<WasiBody>) -> Option<Duration> {
    let value = response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    match value.parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => {
            let when = httpdate::parse_http_date(value).ok()?;
            Some(
                when.duration_since(std::time::SystemTime::now())
                    .unwrap_or(Duration::ZERO),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_statuses_and_retry_after() {
        for status in [429, 500, 502, 503, 504] {
            assert!(is_transient_status(
                StatusCode::from_u16(status).expect("ok")
            ));
        }
        for status in [200, 301, 400, 404, 501] {
            assert!(!is_transient_status(
                StatusCode::from_u16(status).expect("ok")
            ));
        }
        let mut response = Response::new(full(Bytes::new()));
        assert_eq!(retry_after(&response), None);
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&response), Some(Duration::from_secs(3)));
        let in_a_minute =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(61));
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_str(&in_a_minute).expect("a date"),
        );
        let wait = retry_after(&response).expect("a date is a wait");
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(61),
            "{wait:?}"
        );
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&response), Some(Duration::ZERO), "a date past");
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&response), None);
        assert!(!is_transient_error(&Error::HttpRequestDenied));
        assert!(is_transient_error(&Error::ConnectionRefused));
    }
}
