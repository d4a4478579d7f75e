//! The Temporal Web UI link of a batch's root workflow, printed when there is a UI to open:
//!
//! - `--ui-url` (or `TEMPORAL_UI_URL`) when given: used as is, never probed;
//! - a local server (`localhost`, `127.x`, `::1`): `temporal server start-dev` serves its UI on
//!   the server's port + 1000 unless started `--headless`, so that port is probed (a TCP
//!   connect, 300 ms at most) and the link printed only when something answers there;
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
    let open = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(probe))
        .await
        .is_ok_and(|connected| connected.is_ok());
    let shown_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    open.then(|| Url::parse(&format!("http://{shown_host}:{ui_port}")).ok())
        .flatten()
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

    #[tokio::test]
    async fn a_local_server_gets_a_link_only_when_its_ui_port_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let ui_port = listener.local_addr().expect("addr").port();
        let server_port = ui_port
            .checked_sub(DEV_SERVER_UI_OFFSET)
            .expect("ephemeral ports are above 1000");
        let found = find(None, &format!("127.0.0.1:{server_port}")).await;
        assert_eq!(
            found.map(|u| u.to_string()),
            Some(format!("http://127.0.0.1:{ui_port}/"))
        );
        drop(listener);
        assert_eq!(find(None, &format!("127.0.0.1:{server_port}")).await, None);
    }
}
