//! `http_test_server LOG [FAULT:EVERY ...] [--slow-ms MS]`: the service the HTTP end-to-end
//! tests call. It records every request as a JSON line in LOG (time, path, method,
//! `Idempotency-Key`, `User-Agent`, status, whether the effect was applied) and prints
//! `listening on http://127.0.0.1:PORT` once it accepts connections; runs until killed.
//!
//! `POST /items` applies an *effect* once per `Idempotency-Key`: the first request with a key
//! is given an id (3 x the body's `item` or `n`), a later one with the same key gets the same
//! answer and applies nothing. `GET /redirect?to=URL` answers 302 to URL. Faults hit the
//! first attempt of the keys whose hash is a multiple of EVERY:
//! - `500:K` answers 500, `429:K` answers 429 with `Retry-After: 1`, `503:K` answers 503;
//! - `lost:K` applies the effect, then answers 500 (the answer is lost: the retry must not
//!   apply it again);
//! - `slow:K` waits `--slow-ms` (default 3000) before answering.
//!
//! `down` answers 503 to every request.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;

#[derive(Default)]
struct Service {
    faults: Vec<(String, u64)>,
    down: bool,
    slow: Duration,
    /// The effect: key -> (id, how many requests carried it).
    applied: Mutex<HashMap<String, (u64, u64)>>,
    log: Mutex<Option<std::fs::File>>,
}

impl Service {
    fn fault(&self, key: &str, attempt: u64) -> Option<&str> {
        if attempt > 1 {
            return None;
        }
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        self.faults
            .iter()
            .find(|(_, every)| hash % every == 0)
            .map(|(kind, _)| kind.as_str())
    }

    fn record(&self, entry: serde_json::Value) {
        let mut log = self.log.lock().expect("log");
        if let Some(file) = log.as_mut() {
            let _ = writeln!(file, "{entry}");
        }
    }

    async fn handle(
        self: Arc<Self>,
        request: Request<hyper::body::Incoming>,
    ) -> Response<Full<Bytes>> {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (key, agent) = (header("idempotency-key"), header("user-agent"));
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let body = request
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let (status, answer, applied, attempt) =
            self.answer(&method, &path, &query, &key, &body).await;
        self.record(serde_json::json!({
            "t": t, "method": method, "path": path, "key": key, "agent": agent,
            "status": status.as_u16(), "applied": applied, "attempt": attempt,
        }));
        let mut response = Response::new(Full::new(Bytes::from(answer.body)));
        *response.status_mut() = status;
        for (name, value) in answer.headers {
            if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }

    async fn answer(
        &self,
        method: &str,
        path: &str,
        query: &str,
        key: &str,
        body: &[u8],
    ) -> (StatusCode, Answer, bool, u64) {
        if path == "/redirect" {
            let to = query.strip_prefix("to=").unwrap_or("/");
            return (StatusCode::FOUND, Answer::header("location", to), false, 0);
        }
        if self.down {
            return (StatusCode::SERVICE_UNAVAILABLE, Answer::default(), false, 0);
        }
        if method != "POST" || path != "/items" {
            return (StatusCode::NOT_FOUND, Answer::default(), false, 0);
        }
        let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let Some(n) = value
            .get("item")
            .or_else(|| value.get("n"))
            .and_then(|v| v.as_u64())
        else {
            return (StatusCode::BAD_REQUEST, Answer::default(), false, 0);
        };
        let attempt = {
            let mut applied = self.applied.lock().expect("ledger");
            let entry = applied.entry(key.to_owned()).or_insert((0, 0));
            entry.1 += 1;
            entry.1
        };
        let fault = self.fault(key, attempt);
        match fault {
            Some("500") => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Answer::default(),
                    false,
                    attempt,
                );
            }
            Some("503") => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Answer::header("retry-after", "1"),
                    false,
                    attempt,
                );
            }
            Some("429") => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    Answer::header("retry-after", "1"),
                    false,
                    attempt,
                );
            }
            Some("slow") => tokio::time::sleep(self.slow).await,
            _ => {}
        }
        // The effect, once per key: a repeated key gets the first answer.
        let (id, applied) = {
            let mut ledger = self.applied.lock().expect("ledger");
            let entry = ledger.get_mut(key).expect("counted above");
            match entry.0 {
                0 => {
                    entry.0 = 3 * n;
                    (entry.0, true)
                }
                id => (id, false),
            }
        };
        if fault == Some("lost") {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Answer::default(),
                applied,
                attempt,
            );
        }
        let answer = Answer {
            body: format!("{{\"id\":{id}}}").into_bytes(),
            headers: vec![("content-type", "application/json".into())],
        };
        (StatusCode::OK, answer, applied, attempt)
    }
}

#[derive(Default)]
struct Answer {
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn header(name: &'static str, value: &str) -> Self {
        Self {
            body: Vec::new(),
            headers: vec![(name, value.to_owned())],
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((log, rest)) = args.split_first() else {
        return Err("usage: http_test_server LOG [FAULT:EVERY ...] [down] [--slow-ms MS]".into());
    };
    let mut service = Service {
        slow: Duration::from_millis(3000),
        log: Mutex::new(Some(std::fs::File::create(log)?)),
        ..Service::default()
    };
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "down" => service.down = true,
            "--slow-ms" => {
                let ms = rest.next().ok_or("--slow-ms needs a value")?.parse()?;
                service.slow = Duration::from_millis(ms);
            }
            spec => {
                let (kind, every) = spec.split_once(':').ok_or("a fault is KIND:EVERY")?;
                service.faults.push((kind.to_owned(), every.parse()?));
            }
        }
    }
    let service = Arc::new(service);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let http = Builder::new(TokioExecutor::new());
    loop {
        let (socket, _) = listener.accept().await?;
        let service = service.clone();
        let connection = http
            .serve_connection(
                TokioIo::new(socket),
                hyper::service::service_fn(move |request| {
                    let service = service.clone();
                    async move { Ok::<_, std::convert::Infallible>(service.handle(request).await) }
                }),
            )
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
