//! The bodies a plugin writes: every wait for room in one is bounded.
//!
//! A request's body is queued in the host until `outgoing-handler.handle` sends the request
//! (room for [`HTTP`]`.request_bytes`, see `ItemHooks`); after that, its leaf reads it within
//! one request timeout or drops it. Written past that room before the request is sent, or into
//! a body nothing will ever send (an `outgoing-response`'s), a blocking write, or a wait on the
//! stream's pollable, would wait for a reader that never comes: in the host, where the CPU
//! deadline cannot interrupt it, holding the call's slot until the worker stops. So the stream
//! of every body is wrapped ([`BoundedBody`]): a wait for room lasts at most the batch's request
//! timeout, after which the stream traps the call, naming the cause.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi_http::p2::body::HostOutgoingBody;

use super::hooks::Spent;
use super::{HTTP, HttpStore};

/// The interface wasmtime-wasi-http links `outgoing-body` from (imports of any older 0.2
/// release resolve to it).
const WASI_HTTP_TYPES: &str = "wasi:http/types@0.2.12";

/// Replaces `outgoing-body.write` with one that hands out [`BoundedBody`] streams.
pub(crate) fn link<T: WasiView + HttpStore + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker
        .instance(WASI_HTTP_TYPES)?
        .func_wrap("[method]outgoing-body.write", write)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// `outgoing-body.write`: the body's stream (once), bounded.
fn write<T: WasiView + HttpStore>(
    mut store: StoreContextMut<'_, T>,
    (body,): (Resource<HostOutgoingBody>,),
) -> wasmtime::Result<(Result<Resource<DynOutputStream>, ()>,)> {
    let (wait, spent) = match store.data().http_state() {
        Some(http) => (http.leaf().timeout(), http.spent().clone()),
        None => (Duration::ZERO, Arc::default()),
    };
    let table = store.data_mut().ctx().table;
    let Some(inner) = table.get_mut(&body)?.take_output_stream() else {
        return Ok((Err(()),));
    };
    let stream: DynOutputStream = Box::new(BoundedBody::new(inner, wait, spent));
    Ok((Ok(table.push_child(stream, &body)?),))
}

/// A body's stream whose waits for room last at most `wait` (past it, the stream traps), and
/// whose writes count against what the store may hold ([`Spent`]).
pub struct BoundedBody {
    inner: DynOutputStream,
    wait: Duration,
    stuck: bool,
    spent: Arc<Spent>,
}

impl BoundedBody {
    pub fn new(inner: DynOutputStream, wait: Duration, spent: Arc<Spent>) -> Self {
        Self {
            inner,
            wait,
            stuck: false,
            spent,
        }
    }

    fn unless_stuck(&self) -> StreamResult<()> {
        match self.stuck {
            false => Ok(()),
            true => Err(StreamError::trap(&format!(
                "the plugin waited {} ms for room in an HTTP body nothing reads: a request's \
                 body is read once outgoing-handler.handle sends it, and at most {} bytes of it \
                 may be written before",
                self.wait.as_millis(),
                HTTP.request_bytes
            ))),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedBody {
    async fn ready(&mut self) {
        if !self.stuck
            && tokio::time::timeout(self.wait, self.inner.ready())
                .await
                .is_err()
        {
            self.stuck = true;
        }
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for BoundedBody {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.unless_stuck()?;
        if !self.spent.take_request(bytes.len()) {
            return Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "the bodies this instance wrote would hold more than {} bytes in the host",
                2 * HTTP.request_bytes
            )));
        }
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.unless_stuck()?;
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.unless_stuck()?;
        self.inner.check_write()
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}
