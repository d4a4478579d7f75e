//! Call a service from a plugin (feature `http`): one blocking request through `wasi:http`.
//!
//! The worker links `wasi:http` only for batches granted hosts (`starter --http-allow
//! HOST[:PORT]`, on workers started with `--allow-http`); elsewhere a plugin using this is
//! refused before it runs. Each call of the plugin is then one item, and the worker adds to
//! every request the headers `Idempotency-Key: <batch>/<item>/<n>` (the item's `n`-th request,
//! the same on every retry of the item) and the batch's `User-Agent`; it retries transient
//! failures itself (no connection, a timeout, 429, 5xx) and paces the batch's requests. The
//! waiting is not the plugin's CPU time: the deadline counts only computing.
//!
//! ```ignore
//! let url = batch_plugin_sdk_v2::http::Url::parse("http://127.0.0.1:8080/items")?;
//! let response = batch_plugin_sdk_v2::http::post_json(&url, br#"{"n": 1}"#)?;
//! if response.status != 200 { return Err(format!("the service answered {}", response.status)); }
//! ```

mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v2",
        world: "http-client",
        generate_all,
    });
}

use bindings::wasi::http::outgoing_handler;
use bindings::wasi::http::types::{
    Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use bindings::wasi::io::streams::StreamError;

/// Bytes written to a request's body per call (`wasi:io`'s blocking-write limit).
const WRITE_CHUNK: usize = 4096;

/// Bytes asked for per read of a response's body.
const READ_CHUNK: u64 = 64 << 10;

/// Where a request goes: `http(s)://authority/path?query`, parsed once (in `configure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    https: bool,
    authority: String,
    path_with_query: String,
}

impl Url {
    /// An `http://` or `https://` URL; anything else is refused with the reason.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (https, rest) = if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(format!("{text:?} is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty()
            || authority.contains('@')
            || authority.contains(char::is_whitespace)
        {
            return Err(format!("{text:?} has no usable host"));
        }
        let path_with_query = match path.starts_with('?') {
            true => format!("/{path}"),
            false => path.to_owned(),
        };
        Ok(Self {
            https,
            authority: authority.to_owned(),
            path_with_query,
        })
    }
}

/// A response: its status and its whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// POSTs `body` as `application/json` to `url` and waits for the whole response.
pub fn post_json(url: &Url, body: &[u8]) -> Result<Response, String> {
    request(
        &Method::Post,
        url,
        &[("content-type", b"application/json")],
        body,
    )
}

/// Sends one request and waits for its whole response. The body is written and finished
/// before the request is sent. An error names what failed (the worker's error codes: e.g.
/// `HttpRequestDenied` for a host the batch does not allow).
pub fn request(
    method: &Method,
    url: &Url,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Result<Response, String> {
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.to_vec()))
        .collect();
    let fields =
        Fields::from_list(&entries).map_err(|e| format!("a header cannot be sent: {e:?}"))?;
    let request = OutgoingRequest::new(fields);
    let invalid = |what: &str| format!("the request's {what} is invalid");
    request.set_method(method).map_err(|()| invalid("method"))?;
    let scheme = if url.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(&url.authority))
        .map_err(|()| invalid("host"))?;
    request
        .set_path_with_query(Some(&url.path_with_query))
        .map_err(|()| invalid("path"))?;
    let outgoing = request
        .body()
        .map_err(|()| "the request's body cannot be written".to_owned())?;
    {
        let stream = outgoing
            .write()
            .map_err(|()| "the request's body cannot be written".to_owned())?;
        for chunk in body.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("writing the request's body failed: {e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("the request failed: {e:?}"))?;
    let future = outgoing_handler::handle(request, None)
        .map_err(|e| format!("the request failed: {e:?}"))?;
    let response = loop {
        match future.get() {
            Some(response) => break response,
            None => future.subscribe().block(),
        }
    };
    let response = response
        .map_err(|()| "the response was taken twice".to_owned())?
        .map_err(|e| format!("the request failed: {e:?}"))?;
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| "the response's body cannot be read".to_owned())?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| "the response's body cannot be read".to_owned())?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(bytes) => body.extend_from_slice(&bytes),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(format!("reading the response failed: {e:?}")),
            }
        }
    }
    drop(IncomingBody::finish(incoming));
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_their_parts() {
        let url = Url::parse("http://127.0.0.1:8080/items?x=1").expect("ok");
        assert_eq!(url.authority, "127.0.0.1:8080");
        assert_eq!(url.path_with_query, "/items?x=1");
        assert!(!url.https);
        assert_eq!(Url::parse("https://h").expect("ok").path_with_query, "/");
        assert_eq!(Url::parse("http://h?q").expect("ok").path_with_query, "/?q");
        for bad in ["ftp://h/", "h/x", "http:///x", "http://u@h/"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
