//! The sandbox with wasi:http linked: `hostile_http` (hostile_v2's source, importing
//! wasi:http) run in the stores of a batch that calls services, against a local service this
//! test runs. Every violation of hostile_v2 is contained as without HTTP; and its HTTP
//! misbehaviours (bodies nothing reads, floods, ungranted hosts, oversized bodies, raw
//! sockets, requests outside an item) each fail their item, promptly, and give the call's slot
//! back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use batch_core::http::{HostPort, HttpPolicy, HttpTask};
use batch_core::{Output, PluginConfig};
use batch_worker::plugins::SandboxedEngine;
use batch_worker::plugins::http::{HttpGrants, LeafHttp};
use batch_worker::plugins::sandbox::SlotKind;
use batch_worker::plugins::{
    LoadedPlugin, PluginError, PluginRegistry, PluginSession, SandboxLimits,
};
use common::built_plugin;

const LIMITS: SandboxLimits = SandboxLimits {
    cpu_deadline: Duration::from_millis(200),
    memory_bytes: 16 << 20,
    calls_at_once: 1,
    compile_timeout: Duration::from_secs(120),
    compiles_at_once: 1,
    // One: each call below takes the only slot, so a call that kept it would fail the next.
    http_calls_at_once: 1,
};

/// The batch's request timeout here: the bound of every wait on a body.
const TIMEOUT: Duration = Duration::from_millis(1000);

/// A service answering every request `200 {"id":1}`, counting them.
struct Service {
    port: u16,
    requests: Arc<AtomicU64>,
}

impl Service {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let requests = Arc::new(AtomicU64::new(0));
        let counted = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = reader.get_mut().write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\n{\"id\":1}",
                    );
                });
            }
        });
        Self { port, requests }
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

struct Scratch {
    _dir: tempfile::TempDir,
    plugin: Arc<LoadedPlugin>,
    leaf: Arc<LeafHttp>,
    service: Service,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().expect("temp dir");
    let built = built_plugin("test-plugins", "hostile_http");
    std::fs::copy(&built, dir.path().join("hostile_http.wasm")).expect("copy");
    let engine = SandboxedEngine::new(LIMITS).expect("engine");
    let registry = PluginRegistry::open(dir.path(), engine, None).expect("registry");
    let plugin = registry.resolve("hostile_http").expect("loads");
    assert!(plugin.calls_services(), "hostile_http imports wasi:http");
    let service = Service::start();
    let host = format!("127.0.0.1:{}", service.port);
    let mut policy = HttpPolicy::allowing(vec![HostPort::parse(&host).expect("host")]);
    policy.timeout_ms = TIMEOUT.as_millis() as u32;
    let task = HttpTask {
        policy,
        leaves_in_flight: 1,
    };
    let leaf = HttpGrants::new(&[host])
        .expect("grants")
        .leaf(&task, "sandbox-http")
        .expect("granted");
    Scratch {
        _dir: dir,
        plugin,
        leaf,
        service,
    }
}

impl Scratch {
    fn config(&self, mode: &str) -> PluginConfig {
        PluginConfig::parse(&format!(
            r#"{{"http":"{mode}","url":"http://127.0.0.1:{}/items"}}"#,
            self.service.port
        ))
        .expect("configuration")
    }

    /// A session configured with `mode` in the HTTP slot, as a leaf opens it.
    fn session(&self, mode: &str) -> Result<PluginSession<'static>, PluginError> {
        let slot = self
            .plugin
            .engine()
            .try_slot_of(SlotKind::Http)
            .expect("the HTTP slot is free: no earlier call kept it");
        self.plugin
            .session_calling(slot, Some(&self.config(mode)), Some(self.leaf.clone()))
    }

    /// Item `item` in a fresh HTTP store configured with `mode`.
    fn call(&self, mode: &str, item: u64) -> Result<Output, PluginError> {
        let mut session = self.session(mode)?;
        session.begin_item(item);
        session.call(item)
    }
}

#[test]
fn every_violation_fails_only_its_item_with_http_linked() {
    let s = scratch();
    common::hostile::each_violation_fails_only_its_item("hostile_http", |n| {
        match s.call("", n)? {
            Output::Number(n) => Ok(n),
            other => panic!("item {n} gave {other:?}"),
        }
    });
    assert_eq!(s.service.requests(), 0);
    // An honest request, through the same stores.
    assert!(matches!(s.call("", 9), Ok(Output::Number(200))));
    assert_eq!(s.service.requests(), 1);
}

#[test]
fn a_wait_on_a_body_nothing_reads_ends_within_the_request_timeout() {
    let s = scratch();
    for mode in ["stuck_body", "stuck_poll", "response_body"] {
        let started = Instant::now();
        let err = s.call(mode, 19).expect_err("never ends by itself");
        let elapsed = started.elapsed();
        let message = err.message();
        assert!(
            message.contains("trapped on item 19")
                && message.contains("waited 1000 ms for room in an HTTP body nothing reads"),
            "{mode}: {message}"
        );
        assert!(
            elapsed >= TIMEOUT && elapsed < TIMEOUT * 5,
            "{mode}: ended after {elapsed:?}"
        );
    }
    assert_eq!(s.service.requests(), 0, "nothing was sent");
}

#[test]
fn requests_stay_within_their_bounds() {
    let s = scratch();
    let refusal = |mode: &str| match s.call(mode, 29) {
        Err(PluginError::Refused {
            item: 29, message, ..
        }) => message,
        other => panic!("{mode}: {other:?}"),
    };

    let flood = refusal("flood");
    assert!(
        flood.starts_with("request 16: ") && flood.contains("HttpRequestDenied"),
        "{flood}"
    );
    assert_eq!(s.service.requests(), 16, "16 requests per item, no more");

    let ungranted = refusal("ungranted");
    assert!(ungranted.contains("HttpRequestDenied"), "{ungranted}");

    let huge = refusal("huge_after_send");
    assert!(huge.contains("HttpRequestBodySize"), "{huge}");

    let socket = refusal("socket");
    assert!(socket.starts_with("no socket: "), "{socket}");

    // A request from `configure` belongs to no item: refused, never sent.
    let configure = refusal("in_configure");
    assert!(
        configure.starts_with("in configure: Err(") && configure.contains("HttpRequestDenied"),
        "{configure}"
    );
    assert_eq!(s.service.requests(), 16, "nothing else reached the service");
}

/// A plugin keeping what it makes: host objects are capped per store (requests made in a loop
/// trap the call at the cap, promptly), and so are the bodies a store holds (writes past twice
/// the request bound fail; between items a store past the bound is replaced, so its bodies go).
#[test]
fn what_a_plugin_keeps_in_the_host_is_bounded() {
    let s = scratch();
    let started = Instant::now();
    let err = s
        .call("many_requests", 39)
        .expect_err("never ends by itself");
    assert!(
        err.message().contains("trapped on item 39"),
        "{}",
        err.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // One store, never replaced: two bodies of 1 MiB are kept, the third write fails.
    let mut session = s.session("hoard_bodies").expect("session");
    for (item, kept) in [(49, 1), (59, 2)] {
        session.begin_item(item);
        assert!(matches!(session.call(item), Ok(Output::Number(n)) if n == kept));
    }
    session.begin_item(69);
    match session.call(69) {
        Err(PluginError::Refused { message, .. }) => assert!(
            message.contains("would hold more than 2097152 bytes in the host"),
            "{message}"
        ),
        other => panic!("a third MiB: {other:?}"),
    }
    drop(session);

    // As the engine runs items: a store past the bound is replaced before the next item.
    let config = s.config("hoard_bodies");
    let mut session = s.session("hoard_bodies").expect("session");
    for item in (0..8).map(|i| 79 + 10 * i) {
        session = session.renewed_if_worn(Some(&config)).expect("renewed");
        session.begin_item(item);
        match session.call(item) {
            Ok(Output::Number(kept)) => assert!(kept <= 2, "item {item}: {kept} kept"),
            other => panic!("item {item}: {other:?}"),
        }
    }
    assert_eq!(s.service.requests(), 0, "nothing was sent");
}
