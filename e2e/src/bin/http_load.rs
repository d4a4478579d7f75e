//! `http_load URL N [AT_ONCE]`: the direct client of the HTTP benchmark (bench/http.sh). It
//! POSTs `{"n": i}` for i in 1..=N to URL, each request on a new connection as the worker's
//! host makes them, with an `Idempotency-Key` of its own, AT_ONCE (default 1) at a time, and
//! prints one line: `N requests in S s: R requests/s, U us per request`.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

async fn post(authority: &str, path: &str, i: u64) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connect {authority}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let connection = tokio::spawn(connection);
    let request = Request::post(path)
        .header("host", authority)
        .header("content-type", "application/json")
        .header("idempotency-key", format!("http_load/{i}/0"))
        .body(Full::new(Bytes::from(format!("{{\"n\":{i}}}"))))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    connection.abort();
    match status.is_success() {
        true => Ok(()),
        false => Err(format!("request {i}: {status}")),
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: http_load URL N [AT_ONCE]";
    let url = args.first().ok_or(usage)?;
    let n: u64 = args.get(1).and_then(|v| v.parse().ok()).ok_or(usage)?;
    let at_once: u64 = args
        .get(2)
        .map_or(Ok(1), |v| v.parse().map_err(|_| usage))?;
    let rest = url.strip_prefix("http://").ok_or("URL must be http://")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (rest[..at].to_owned(), rest[at..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    };
    let started = Instant::now();
    let lanes: Vec<_> = (0..at_once.max(1))
        .map(|lane| {
            let (authority, path) = (authority.clone(), path.clone());
            tokio::spawn(async move {
                let mut i = lane + 1;
                while i <= n {
                    post(&authority, &path, i).await?;
                    i += at_once.max(1);
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for lane in lanes {
        lane.await.map_err(|e| e.to_string())??;
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "{n} requests in {took:.3} s: {:.0} requests/s, {:.0} us per request",
        n as f64 / took,
        took * 1e6 / n as f64
    );
    Ok(())
}
