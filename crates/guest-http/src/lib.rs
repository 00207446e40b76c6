//! How scalelab's guests answer a `wasi:http` request: a [`Response`] with a
//! status, headers and a body of any size, sent with one call. Every guest
//! answers through it, so the rules live once:
//!
//! - WASI lets one `blocking-write-and-flush` carry at most 4096 bytes, so the
//!   body is written in chunks of that size ([`chunks`]);
//! - a whole body goes out with its `Content-Length`, so the host frames it by
//!   length, not in chunks (a streamed one, [`Response::stream`], has none);
//! - a client that goes away mid-body ends the write quietly;
//! - errors are JSON: `{"error": "<message>"}` ([`Response::json_error`]).
//!
//! The crate binds `wasi:http/types` (world `scalelab:guests/http-types` in
//! `wit/`) once. A guest generates its own bindings with [`generate!`],
//! which maps those interfaces to this crate's bindings (wit-bindgen's
//! `with`), so the `ResponseOutparam` its export receives is this crate's type:
//!
//! ```ignore
//! mod bindings {
//!     guest_http::generate!("scalelab:guests/http-guest");
//! }
//! ```
//!
//! `no_std` (with `alloc`), so that a guest may leave the standard library
//! out (as `guests/prime` does); guests built with it use the crate alike.

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "scalelab:guests/http-types",
        generate_all,
    });
}

pub use bindings::wasi;
use wasi::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasi::io::streams::{OutputStream, StreamError};

/// A guest's bindings for `world` (from the repository's `wit/`, as seen from
/// `guests/<guest>/`), sharing this crate's `wasi:http/types` and what those
/// types use; every other interface is generated for the guest. The guest
/// depends on `wit-bindgen` itself (the generated code names it).
#[macro_export]
macro_rules! generate {
    ($world:tt) => {
        wit_bindgen::generate!({
            path: "../../wit",
            world: $world,
            with: {
                "wasi:http/types@0.2.12": guest_http::wasi::http::types,
                "wasi:io/error@0.2.12": guest_http::wasi::io::error,
                "wasi:io/poll@0.2.12": guest_http::wasi::io::poll,
                "wasi:io/streams@0.2.12": guest_http::wasi::io::streams,
                "wasi:clocks/monotonic-clock@0.2.12": guest_http::wasi::clocks::monotonic_clock,
            },
            generate_all,
        });
    };
}

/// The most one `blocking-write-and-flush` may carry (WASI 0.2's limit).
pub const WRITE_LIMIT: usize = 4096;

/// Most bytes one read of a request body asks for.
const READ_LIMIT: u64 = 64 * 1024;

/// A response to send: status, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body and its content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        // Room for the content length `send` adds, and a few more, without growing.
        let mut headers = Vec::with_capacity(4);
        headers.push(("content-type".to_string(), content_type.as_bytes().to_vec()));
        Response { status, headers, body: body.into() }
    }

    /// `text/plain; charset=utf-8`.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// `application/json`, from a body that is JSON already.
    pub fn json(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, "application/json", body.into())
    }

    /// `{"error": message}` as `application/json`.
    pub fn json_error(status: u16, message: &str) -> Response {
        Response::json(status, serde_json::json!({ "error": message }).to_string())
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The response's head, its body and the body's stream, not yet handed over.
    fn open(&self) -> (OutgoingResponse, OutgoingBody, OutputStream) {
        let fields = Fields::from_list(&self.headers).expect("valid header names and values");
        let response = OutgoingResponse::new(fields);
        // A new response is a 200: one host call fewer for most responses.
        if self.status != 200 {
            response.set_status_code(self.status).expect("a valid status code");
        }
        let body = response.body().expect("the body is taken once");
        let stream = body.write().expect("the stream is taken once");
        (response, body, stream)
    }

    /// Sends the response: head, then the body in chunks WASI accepts, then
    /// the end of the body. A client gone mid-body ends it quietly.
    ///
    /// # Panics
    /// When a header name or value is not valid HTTP or the status is not a
    /// valid code: a bug in the guest, not a condition to handle.
    pub fn send(self, out: ResponseOutparam) {
        self.with_length().write_all(out);
    }

    /// This response with a `Content-Length` of its body, which `send` knows
    /// whole: the host then frames it by length instead of chunks (fewer bytes
    /// for every client to parse, and the length HTTP tools and proxies expect,
    /// as httpbin sends it). Left alone when the guest set one itself, and for
    /// the statuses that carry no body (1xx, 204, 304).
    fn with_length(mut self) -> Response {
        let bodiless = self.status < 200 || self.status == 204 || self.status == 304;
        let declared = self.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
        if !bodiless && !declared {
            self.headers.push(("content-length".to_string(), self.body.len().to_string().into_bytes()));
        }
        self
    }

    fn write_all(self, out: ResponseOutparam) {
        let (response, body, stream) = self.open();
        // A body the stream takes at once is written and finished before the
        // head is handed over, so the host sends head and body together.
        let fits = stream.check_write().is_ok_and(|room| room >= self.body.len() as u64);
        if fits && (self.body.is_empty() || stream.write(&self.body).is_ok()) {
            drop(stream);
            let _ = OutgoingBody::finish(body, None);
            ResponseOutparam::set(out, Ok(response));
            return;
        }
        ResponseOutparam::set(out, Ok(response));
        for chunk in chunks(&self.body) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                return;
            }
        }
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }

    /// Sends the head (this response's status and headers; its body is
    /// ignored), then each of `parts` as a write of its own, flushed before
    /// the next: a streamed body, which the client sees part by part.
    ///
    /// # Panics
    /// As [`Response::send`].
    pub fn stream(self, parts: impl IntoIterator<Item = Vec<u8>>, out: ResponseOutparam) {
        let (response, body, stream) = self.open();
        ResponseOutparam::set(out, Ok(response));
        for part in parts {
            if chunks(&part).any(|chunk| stream.blocking_write_and_flush(chunk).is_err()) {
                return;
            }
        }
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}

/// A request method's name, upper case.
pub fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

/// The first value of each of `names` (any case), as text (`None` when absent
/// or not UTF-8), from one host call (`entries`) rather than one `get` per
/// name: each host call costs, and `request.headers()` makes a new resource.
pub fn headers<const N: usize>(headers: &Fields, names: [&str; N]) -> [Option<String>; N] {
    // Only this code frees the entries: they may come from the request arena.
    pick(guest_alloc::host_lists_in_arena(|| headers.entries()), names)
}

/// The first value of each of `names` (any case) among header `entries`, as
/// text (`None` when absent or not UTF-8).
pub fn pick<const N: usize>(entries: Vec<(String, Vec<u8>)>, names: [&str; N]) -> [Option<String>; N] {
    let mut found: [Option<String>; N] = core::array::from_fn(|_| None);
    for (name, value) in entries {
        let Some(i) = names.iter().position(|wanted| name.eq_ignore_ascii_case(wanted)) else { continue };
        if found[i].is_none() {
            found[i] = String::from_utf8(value).ok();
        }
    }
    found
}

/// Reads the whole request body (the host has capped its size already,
/// `--max-body`). `Err` when the client went away mid-body.
///
/// scalelab's host reads a request's body before it calls the guest, so the
/// bytes are there at once: a non-blocking `read` takes them, and the call
/// that finds the stream closed is a `read` too. `blocking-read` (an async
/// host call, dearer) runs only when a host has nothing ready yet. The body
/// is dropped without `finish`: the trailers it would wait for are not read.
pub fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, String> {
    let body = request.consume().map_err(|()| "the body was already taken".to_string())?;
    let mut bytes = Vec::new();
    let stream = body.stream().map_err(|()| "the body stream was already taken".to_string())?;
    loop {
        // Only the caller frees the body: its chunks may come from the
        // request arena (`guest_alloc::host_lists_in_arena`).
        let read = match guest_alloc::host_lists_in_arena(|| stream.read(READ_LIMIT)) {
            Ok(chunk) if chunk.is_empty() => guest_alloc::host_lists_in_arena(|| stream.blocking_read(READ_LIMIT)),
            read => read,
        };
        match read {
            // The first chunk is the whole body, usually: kept, not copied.
            Ok(chunk) if bytes.is_empty() => bytes = chunk,
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!("reading the body failed: {}", e.to_debug_string()));
            }
        }
    }
    // The stream is a child of the body: dropped first.
    drop(stream);
    drop(body);
    Ok(bytes)
}

/// The body as the writes `send` makes: in order, none over [`WRITE_LIMIT`].
pub fn chunks(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.chunks(WRITE_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn a_body_of_one_mebibyte_is_written_whole_in_chunks_wasi_accepts() {
        let body: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let written: Vec<&[u8]> = chunks(&body).collect();
        assert!(written.iter().all(|c| !c.is_empty() && c.len() <= WRITE_LIMIT));
        assert_eq!(written.concat(), body);
        assert_eq!(chunks(b"").count(), 0);
    }

    #[test]
    fn a_whole_body_is_sent_with_its_length_unless_the_status_has_none_or_the_guest_set_one() {
        let length = |response: Response| -> Vec<String> {
            response
                .with_length()
                .headers
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .map(|(_, value)| String::from_utf8(value.clone()).unwrap())
                .collect()
        };
        assert_eq!(length(Response::json(200, r#"{"n":1,"prime":2}"#)), ["17"]);
        assert_eq!(length(Response::text(404, "")), ["0"]);
        // UTF-8 bodies are counted in bytes.
        assert_eq!(length(Response::text(200, "é")), ["2"]);
        assert!(length(Response::text(204, "")).is_empty());
        assert!(length(Response::text(304, "")).is_empty());
        assert!(length(Response::text(101, "")).is_empty());
        assert_eq!(length(Response::text(200, "abc").header("Content-Length", "3")), ["3"], "the guest's own is kept, once");
    }

    #[test]
    fn pick_finds_the_first_value_of_each_name_in_any_case() {
        let entries = vec![
            ("origin".to_string(), b"https://a".to_vec()),
            ("content-type".to_string(), vec![0xff]),
            ("Origin".to_string(), b"https://b".to_vec()),
            ("x-other".to_string(), b"1".to_vec()),
        ];
        let [origin, content_type, absent] = pick(entries, ["ORIGIN", "Content-Type", "accept"]);
        assert_eq!(origin.as_deref(), Some("https://a"));
        assert_eq!(content_type, None, "not UTF-8");
        assert_eq!(absent, None);
    }

    #[test]
    fn json_errors_escape_their_message() {
        let error = Response::json_error(400, "bad \"n\"\nhere");
        assert_eq!(String::from_utf8(error.body).unwrap(), r#"{"error":"bad \"n\"\nhere"}"#);
        assert_eq!(error.headers, vec![("content-type".to_string(), b"application/json".to_vec())]);
        assert_eq!(Response::text(404, "no").header("allow", "GET").headers.len(), 2);
    }
}
