//! Test fixture (never in the image): answers through `crates/guest-http`,
//! so the host's tests can check what every guest relies on.
//!
//! - `GET /bytes/{n}`: `n` bytes, byte `i` being `i % 251` (at most 16 MiB),
//!   `application/octet-stream`;
//! - `GET /fs/read?{path}`: the file's bytes, or 404 with the error;
//! - `GET /fs/write?{path}`: tries to create the file; 200 `written` or 403
//!   with the error (what a read-only mount must refuse);
//! - `/head...` (any method): the request's head and body from
//!   `wit/request.wit`, as text: `{method} {path-with-query}`, a
//!   `{name}: {value}` line per header, then `body: {whole} | {streamed}`
//!   (the body from `request.body`, then from wasi:http's stream);
//! - `GET /whole?{name}={value}&...`: a 201 sent in one call through
//!   `wit/response.wit`, with each pair as a header (repeatable; no
//!   percent-decoding) and the body `whole`: how the host checks what it is
//!   given;
//! - `GET /fields?{name}={value}&...`: the pairs (no percent-decoding) made
//!   into fields with `fields.from-list`, then `x-added: 1` appended to them,
//!   read back with `entries`: a `{name}: {value}` line each, or the error
//!   code either call gave (`from-list: ...`, `append: ...`), as text;
//! - anything else: 404 with a JSON error whose message needs escaping.

mod bindings {
    // Shares guest-http's wasi:http bindings (see crates/guest-http).
    guest_http::generate!("scalelab:guests/one-call-http-guest");
}

use bindings::exports::wasi::http::incoming_handler::Guest;
use guest_http::Response;
use guest_http::wasi::http::types::{Fields, IncomingRequest, ResponseOutparam};

/// The largest body `/bytes/{n}` makes.
const MAX_BYTES: usize = 16 << 20;

struct Fixture;

impl Guest for Fixture {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if path.starts_with("/head") {
            let head = bindings::scalelab::guests::request::head(&request);
            let mut text = format!("{} {}\n", head.method, head.path_with_query);
            for (name, value) in head.headers {
                text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(&value)));
            }
            // The body whole (`request.body`), then again through wasi:http:
            // reading it one way leaves it to the other.
            let whole = bindings::scalelab::guests::request::body(&request);
            let streamed = guest_http::read_body(&request).unwrap_or_default();
            text.push_str(&format!("body: {} | {}\n", String::from_utf8_lossy(&whole), String::from_utf8_lossy(&streamed)));
            return Response::text(200, text).send(response_out);
        }
        if let Some(file) = path.strip_prefix("/fs/read?") {
            return match std::fs::read(file) {
                Ok(bytes) => Response::new(200, "application/octet-stream", bytes),
                Err(e) => Response::json_error(404, &format!("{file}: {e}")),
            }
            .send(response_out);
        }
        if let Some(file) = path.strip_prefix("/fs/write?") {
            return match std::fs::write(file, b"written by a guest") {
                Ok(()) => Response::text(200, "written"),
                Err(e) => Response::json_error(403, &format!("{file}: {e}")),
            }
            .send(response_out);
        }
        if let Some(query) = path.strip_prefix("/whole?") {
            let headers: Vec<(String, Vec<u8>)> = query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
                .collect();
            return bindings::scalelab::guests::response::send(response_out, 201, &headers, b"whole");
        }
        if let Some(query) = path.strip_prefix("/fields?") {
            return Response::text(200, fields(query)).send(response_out);
        }
        let response = match path.strip_prefix("/bytes/").map(str::parse::<usize>) {
            Some(Ok(n)) if n <= MAX_BYTES => {
                let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                Response::new(200, "application/octet-stream", body)
            }
            Some(_) => Response::json_error(400, &format!("/bytes/{{n}} takes a whole number up to {MAX_BYTES}")),
            None => Response::json_error(404, &format!("no route \"{path}\"")),
        };
        response.send(response_out);
    }
}

/// `/fields`: what `fields.from-list` makes of the query's pairs, and
/// whether the fields it made take one more.
fn fields(query: &str) -> String {
    let entries: Vec<(String, Vec<u8>)> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    let fields = match Fields::from_list(&entries) {
        Ok(fields) => fields,
        Err(e) => return format!("from-list: {e:?}\n"),
    };
    if let Err(e) = fields.append("x-added", b"1") {
        return format!("append: {e:?}\n");
    }
    fields.entries().iter().map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value))).collect()
}

bindings::export!(Fixture with_types_in bindings);
