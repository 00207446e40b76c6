//! Responses the host writes itself (errors, probes, the admin API), all
//! with the body type guests' responses use, so every route returns the same
//! type. Error bodies are JSON: `{"error": <message>, "kind": <kind>}`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// The body of every response the host serves.
pub type Body = HyperOutgoingBody;

/// A complete body.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}

/// A response with `body` and its content type.
pub fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    with_type(status, "application/json", Bytes::from(value.to_string()))
}

/// A host error: `{"error": message, "kind": kind}`.
pub fn json_error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message, "kind": kind }))
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &str) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", Bytes::copy_from_slice(body.as_bytes()))
}
