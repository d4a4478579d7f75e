//! The Temporal Web UI link of a batch's root workflow, printed when there is a UI to open:
//!
//! - `--ui-url` (or `TEMPORAL_UI_URL`) when given: used as is, never probed;
//! - a local server (`localhost`, `127.x`, `::1`): `temporal server start-dev` serves its UI on
//!   the server's port + 1000 unless started `--headless`, so that port is probed (`GET /`,
//!   300 ms at most) and the link printed only when a web server answers there;
//! - Temporal Cloud (`*.tmprl.cloud`): the cloud UI;
//! - anything else: no link (the UI of a self-hosted cluster can be anywhere: pass --ui-url).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use temporalio_client::Url;

const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// `temporal server start-dev`'s default `--ui-port` is its `--port` + 1000.
const DEV_SERVER_UI_OFFSET: u16 = 1000;
const CLOUD_UI: &str = "https://cloud.temporal.io";

/// Where the Web UI is for a server at `address` (`host:port`), if there is one.
pub(crate) async fn find(explicit: Option<&str>, address: &str) -> Option<Url> {
    if let Some(explicit) = explicit {
        return Url::parse(explicit).ok();
    }
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.ends_with(".tmprl.cloud") {
        return Url::parse(CLOUD_UI).ok();
    }
    if !is_loopback(host) {
        return None;
    }
    let ui_port = port
        .parse::<u16>()
        .ok()?
        .checked_add(DEV_SERVER_UI_OFFSET)?;
    let probe: SocketAddr = (host, ui_port).to_socket_addrs().ok()?.next()?;
    let open = tokio::time::timeout(PROBE_TIMEOUT, answers_http(probe))
        .await
        .unwrap_or(false);
    let shown_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    open.then(|| Url::parse(&format!("http://{shown_host}:{ui_port}")).ok())
        .flatten()
}

/// Whether `address` answers `GET /` with a success: a UI, not just any open port (another
/// local service may well listen on port + 1000).
async fn answers_http(address: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return false;
    };
    if stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let status = String::from_utf8_lossy(&head[..read]);
    // "HTTP/1.1 200 OK": a 2xx status code after the version.
    status.starts_with("HTTP/1.")
        && status
            .get(8..)
            .is_some_and(|rest| rest.trim_start().starts_with('2'))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The page of one workflow: `<ui>/namespaces/<namespace>/workflows/<id>`, each part escaped.
pub(crate) fn workflow_page(ui: &Url, namespace: &str, workflow_id: &str) -> String {
    let mut page = ui.clone();
    if let Ok(mut segments) = page.path_segments_mut() {
        segments
            .pop_if_empty()
            .extend(["namespaces", namespace, "workflows", workflow_id]);
    }
    page.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workflow_page_escapes_its_parts() {
        let ui = Url::parse("http://localhost:8233").expect("url");
        assert_eq!(
            workflow_page(&ui, "default", "batch-processing-2000-b10-c5"),
            "http://localhost:8233/namespaces/default/workflows/batch-processing-2000-b10-c5"
        );
        let ui = Url::parse("https://ui.example/temporal/").expect("url");
        assert_eq!(
            workflow_page(&ui, "prod", "my batch/1"),
            "https://ui.example/temporal/namespaces/prod/workflows/my%20batch%2F1"
        );
    }

    #[tokio::test]
    async fn only_known_places_get_a_link_without_asking() {
        let cloud = find(None, "my-ns.a1b2c.tmprl.cloud:7233").await;
        assert_eq!(cloud.map(|u| u.to_string()), Some(format!("{CLOUD_UI}/")));
        assert_eq!(find(None, "temporal.internal.example:7233").await, None);
        let explicit = find(Some("https://ui.example"), "temporal.internal.example:7233").await;
        assert_eq!(
            explicit.map(|u| u.to_string()),
            Some("https://ui.example/".into())
        );
    }

    /// A listener on some port answering every connection with `reply` (then closing);
    /// returns the port of the server whose UI it pretends to be.
    async fn fake_ui(reply: &'static [u8]) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 256];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(reply).await;
            }
        });
        port.checked_sub(DEV_SERVER_UI_OFFSET)
            .expect("ephemeral ports are above 1000")
    }

    #[tokio::test]
    async fn a_local_server_gets_a_link_only_when_a_web_server_answers_on_its_ui_port() {
        let server_port = fake_ui(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let found = find(None, &format!("127.0.0.1:{server_port}")).await;
        assert_eq!(
            found.map(|u| u.to_string()),
            Some(format!(
                "http://127.0.0.1:{}/",
                server_port + DEV_SERVER_UI_OFFSET
            ))
        );
        // Something else listens there: not HTTP, or an HTTP error.
        let not_http = fake_ui(b"\x00\x00\x12\x04\x00\x00\x00\x00").await;
        assert_eq!(find(None, &format!("127.0.0.1:{not_http}")).await, None);
        let failing = fake_ui(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert_eq!(find(None, &format!("127.0.0.1:{failing}")).await, None);
        // Nothing listens there.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port() - DEV_SERVER_UI_OFFSET
        };
        assert_eq!(find(None, &format!("127.0.0.1:{closed}")).await, None);
    }
}
