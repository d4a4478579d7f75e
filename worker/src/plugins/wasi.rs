//! The deny-all WASI 0.2 that plugins built by mainstream toolchains import.
//!
//! componentize-py (Python), jco/componentize-js (JavaScript) and Rust's `wasm32-wasip2` emit
//! components that import WASI even for pure computation (the language runtimes ask for
//! clocks, randomness and stdio at start-up). Refusing them would refuse those languages, so
//! the worker links wasmtime-wasi's preview 2 implementation with a context that grants
//! nothing:
//!
//! - files: no preopened directory, so there is no path to open; stdin is empty;
//! - environment and arguments: none;
//! - network: TCP, UDP and name lookup are disabled, and every socket address is refused;
//! - clocks: frozen. The wall clock always reads [`FROZEN_WALL_CLOCK`] and the monotonic
//!   clock always reads 0, so a plugin's outputs cannot depend on when (or how often, after a
//!   retry or a replay) it ran;
//! - randomness: deterministic, the same bytes in every instance ([`RANDOM_BYTES`]). Plugins
//!   get reproducible outputs; they must not use `wasi:random` for secrets (it is not secret);
//! - stdout and stderr: captured, at most [`CAPTURE_BYTES`] of each per call kept and sent to
//!   the worker's log (tracing target `plugin_output`), the rest counted and dropped.
//!
//! The context is built only when a plugin first touches WASI, so plugins that import nothing
//! (every Rust `wasm32-unknown-unknown` plugin) pay nothing. Every sandbox limit (deadline,
//! memory, instances, call slots) applies to WASI plugins unchanged.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::random::Deterministic;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView};

/// Bytes of stdout, and separately of stderr, kept per call.
pub const CAPTURE_BYTES: usize = 4 << 10;

/// What the frozen wall clock reads: 2000-01-01T00:00:00Z (a date, not 0, so runtimes that
/// treat the epoch as "no clock" still start).
pub const FROZEN_WALL_CLOCK: Duration = Duration::from_secs(946_684_800);

/// The deterministic random stream repeats this many bytes.
pub const RANDOM_BYTES: usize = 4096;

/// Which WASI interfaces a plugin may import: WASI 0.2's, all linked deny-all. Anything else
/// (another WASI version, `wasi:http`, a custom interface) is rejected at load, by name.
pub fn is_linked(import: &str) -> bool {
    const PACKAGES: [&str; 6] = [
        "wasi:cli/",
        "wasi:clocks/",
        "wasi:filesystem/",
        "wasi:io/",
        "wasi:random/",
        "wasi:sockets/",
    ];
    PACKAGES.iter().any(|p| import.starts_with(p)) && import.contains("@0.2.")
}

/// One store's WASI state, created on first use.
pub struct WasiState {
    ctx: WasiCtx,
    table: ResourceTable,
    stdout: Capture,
    stderr: Capture,
}

impl WasiState {
    /// The deny-all context, its table holding at most `max_host_objects` host objects.
    pub fn deny_all(max_host_objects: usize) -> Self {
        let (stdout, stderr) = (Capture::default(), Capture::default());
        let ctx = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(Deterministic::new(random_bytes()))
            .insecure_random(Deterministic::new(random_bytes()))
            .insecure_random_seed(0)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(max_host_objects);
        Self {
            ctx,
            table,
            stdout,
            stderr,
        }
    }

    pub fn view(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }

    /// The resources of the store's WASI (and wasi-http, which shares them).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// What the plugin wrote since the last call, per stream, emptied.
    pub fn take_output(&self) -> [(&'static str, Captured); 2] {
        [
            ("stdout", self.stdout.take()),
            ("stderr", self.stderr.take()),
        ]
    }
}

/// Deterministic bytes (a fixed function of nothing): SHA-256 in counter mode.
fn random_bytes() -> Vec<u8> {
    use sha2::{Digest, Sha256};
    (0u32..)
        .flat_map(|block| Sha256::digest(format!("batch-plugin-random-{block}")))
        .take(RANDOM_BYTES)
        .collect()
}

struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        FROZEN_WALL_CLOCK
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// What one stream received: the first [`CAPTURE_BYTES`], and how many more were dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Captured {
    pub kept: Vec<u8>,
    pub dropped: u64,
}

impl Captured {
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty() && self.dropped == 0
    }

    /// The kept text (lossy UTF-8) fit for one log line: at most
    /// [`batch_core::text::MAX_MESSAGE_BYTES`] of it, neutralised (a line break or an escape
    /// sequence the plugin printed is shown, not acted on), with a note of how much was
    /// printed in all whenever any is missing, which no cut can remove.
    pub fn shown(&self) -> String {
        let text = String::from_utf8_lossy(&self.kept);
        let total = self.kept.len() as u64 + self.dropped;
        let bounded =
            batch_core::text::bounded_of(&text, batch_core::text::MAX_MESSAGE_BYTES, total);
        batch_core::text::neutralised(&bounded).into_owned()
    }
}

/// A stdout/stderr that never fails and never grows past [`CAPTURE_BYTES`]: a plugin printing
/// without end costs the host nothing but counting.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Captured>>);

impl Capture {
    fn keep(&self, bytes: &[u8]) {
        let mut captured = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = CAPTURE_BYTES.saturating_sub(captured.kept.len());
        let kept = bytes.len().min(room);
        captured.kept.extend_from_slice(&bytes[..kept]);
        captured.dropped += (bytes.len() - kept) as u64;
    }

    fn take(&self) -> Captured {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.keep(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: what does not fit is dropped, never blocked on.
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wasi_0_2_interfaces_are_linked() {
        assert!(is_linked("wasi:cli/environment@0.2.0"));
        assert!(is_linked("wasi:io/streams@0.2.6"));
        assert!(is_linked("wasi:sockets/tcp@0.2.3"));
        assert!(!is_linked("wasi:http/outgoing-handler@0.2.0"));
        assert!(!is_linked("wasi:cli/environment@0.3.0"));
        assert!(!is_linked("wasi:cli/environment"));
        assert!(!is_linked("host:evil/escape@0.2.0"));
    }

    #[test]
    fn the_capture_keeps_a_bounded_prefix_and_counts_the_rest() {
        let capture = Capture::default();
        capture.keep(b"hello\n");
        capture.keep(&vec![b'x'; CAPTURE_BYTES]);
        let captured = capture.take();
        assert_eq!(captured.kept.len(), CAPTURE_BYTES);
        assert!(captured.kept.starts_with(b"hello\nxxx"));
        assert_eq!(captured.dropped, 6);
        let shown = captured.shown();
        assert!(shown.starts_with("hello\\nxxx"), "{shown}");
        assert!(
            shown.ends_with("x... [truncated: 4102 bytes in all, 2048 kept]"),
            "the note survives the line's limit: {shown}"
        );
        // Taken means emptied: the next call starts with nothing.
        assert!(capture.take().is_empty());
    }

    #[test]
    fn randomness_is_the_same_in_every_instance() {
        assert_eq!(random_bytes(), random_bytes());
        assert_eq!(random_bytes().len(), RANDOM_BYTES);
        assert_ne!(random_bytes()[..32], random_bytes()[32..64]);
    }
}
