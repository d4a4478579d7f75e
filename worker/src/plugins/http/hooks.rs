//! The HTTP state of one store: wasi-http's context and the hooks through which every request
//! the plugin makes goes to its leaf (`LeafHttp::send`), stamped with the current item's key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpHooks};

use super::HTTP;
use super::leaf::{LeafHttp, Transient, lock};

/// One store's wasi-http state.
pub struct HttpState {
    pub(crate) ctx: WasiHttpCtx,
    pub(crate) hooks: ItemHooks,
}

/// What one store's HTTP has made the host hold since the store was made: the bytes written
/// into bodies, and the response bodies read for it (a plugin may keep them all alive). Each
/// is refused past twice its bound ([`HTTP`]), and a store past one bound is replaced before
/// its next item ([`HttpState::worn`]), so a store holds at most twice the bounds.
#[derive(Debug, Default)]
pub struct Spent {
    request: AtomicUsize,
    response: AtomicUsize,
}

impl Spent {
    fn take(counter: &AtomicUsize, n: usize, bound: usize) -> bool {
        let before = counter.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > 2 * bound {
            counter.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// `n` more bytes written into a body, if the store may hold them.
    pub fn take_request(&self, n: usize) -> bool {
        Self::take(&self.request, n, HTTP.request_bytes)
    }

    /// A response body of `n` bytes, if the store may hold it.
    pub fn take_response(&self, n: usize) -> bool {
        Self::take(&self.response, n, HTTP.response_bytes)
    }

    fn worn(&self) -> bool {
        self.request.load(Ordering::Relaxed) > HTTP.request_bytes
            || self.response.load(Ordering::Relaxed) > HTTP.response_bytes
    }
}

impl HttpState {
    pub fn new(leaf: Arc<LeafHttp>) -> Self {
        Self {
            ctx: WasiHttpCtx::new(),
            hooks: ItemHooks {
                leaf,
                item: None,
                sent: 0,
                transient: Arc::new(Mutex::new(None)),
                spent: Arc::new(Spent::default()),
            },
        }
    }

    /// What the store's HTTP has made the host hold so far.
    pub fn spent(&self) -> &Arc<Spent> {
        &self.hooks.spent
    }

    /// Whether the store has held more than one bound's worth of bodies: replace it before the
    /// next item (the plugin may be keeping them).
    pub fn worn(&self) -> bool {
        self.hooks.spent.worn()
    }

    pub fn leaf(&self) -> &Arc<LeafHttp> {
        &self.hooks.leaf
    }

    /// The next requests are the item at `index`'s (numbered from 0 again).
    pub fn begin_item(&mut self, index: u64) {
        self.hooks.item = Some(index);
        self.hooks.sent = 0;
        *lock(&self.hooks.transient) = None;
    }

    /// The item's calls are over: no request is anyone's until the next item begins. Returns
    /// why its last request failed transiently, if it did.
    pub fn end_item(&mut self) -> Transient {
        self.hooks.item = None;
        lock(&self.hooks.transient).take()
    }
}

/// The hooks wasi-http calls for each request (see [`WasiHttpHooks`]).
pub struct ItemHooks {
    leaf: Arc<LeafHttp>,
    /// The item whose call is running; `None` outside one (instantiation, `configure`),
    /// where requests are refused: they would belong to no item.
    item: Option<u64>,
    /// Requests made for the item so far.
    sent: u32,
    transient: Arc<Mutex<Transient>>,
    spent: Arc<Spent>,
}

impl ItemHooks {
    /// The key of the item's next request, or why it may not be made.
    fn next_key(&mut self) -> Result<String, Error> {
        let Some(item) = self.item else {
            return Err(self
                .leaf
                .deny("a request outside an item's call (at instantiation or configure)"));
        };
        if self.sent >= HTTP.requests_per_item {
            return Err(self.leaf.deny(&format!(
                "item {item} made more than {} requests",
                HTTP.requests_per_item
            )));
        }
        let n = self.sent;
        self.sent += 1;
        Ok(batch_core::http::idempotency_key(
            self.leaf.batch(),
            item,
            n,
        ))
    }
}

/// The largest write to a request's body (`wasi:io`'s blocking writes take 4096 bytes).
pub const BODY_CHUNK: usize = 4096;

type Sent = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for ItemHooks {
    /// Room for a whole request body written before it is sent, in writes of up to
    /// [`BODY_CHUNK`] bytes (wasi-http's default, one write, would block a plugin writing its
    /// body before sending it): the host then holds at most the request bound of it.
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        HTTP.request_bytes / BODY_CHUNK + 1
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Sent,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, Sent), Error>> + Send> {
        // The plugin's own timeouts are ignored: the batch's bound every attempt.
        let key = self.next_key();
        let (leaf, transient) = (self.leaf.clone(), self.transient.clone());
        let spent = self.spent.clone();
        Box::new(async move {
            let response = leaf.send(request, key?, transient).await?;
            // Read whole by the leaf: its exact size is known.
            let size = http_body::Body::size_hint(response.body())
                .exact()
                .unwrap_or(u64::MAX);
            if !spent.take_response(usize::try_from(size).unwrap_or(usize::MAX)) {
                return Err(Error::HttpResponseBodySize(Some(size)));
            }
            Ok((response, Box::new(async { Ok(()) }) as Sent))
        })
    }
}
