//! The response of `response.send` (`wit/response.wit`): a guest's whole
//! answer, handed over in one call, checked by the rules wasi:http applies
//! to the same status and fields, and framed by its length.
//!
//! wasi:http builds a response in about ten host calls (fields, response,
//! body, stream, permit, write, drop, finish, set). For a body that is
//! complete before it is sent, which is most answers, this is the same
//! response for one call, with no channel between the guest's writes and
//! hyper: hyper reads the body's exact size and writes `Content-Length`.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::fmt;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Most bytes of header names and values in one response: wasi:http's limit
/// on a guest's fields (wasmtime-wasi-http's default), so either way of
/// answering accepts the same headers.
pub const MAX_HEADER_BYTES: usize = 128 * 1024;

/// Why a guest's response cannot be sent: a fault of the guest, which ends
/// its call (a trap) with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not a status code HTTP can carry (100-999).
    Status(u16),
    /// A header name that is not a valid HTTP token.
    HeaderName(String),
    /// A header value with bytes HTTP does not allow (control characters).
    HeaderValue(String),
    /// A header the guest may not set (hop-by-hop, framing, `Host`).
    Forbidden(String),
    /// A `Content-Length` that is not the body's length, or given twice.
    ContentLength { declared: String, body: usize },
    /// The header names and values add up to more than [`MAX_HEADER_BYTES`].
    HeadersTooLarge(usize),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = "response.send refused the guest's response";
        match self {
            Refused::Status(status) => write!(f, "{prefix}: status {status} is not in 100-999"),
            Refused::HeaderName(name) => write!(f, "{prefix}: {name:?} is not a valid header name"),
            Refused::HeaderValue(name) => write!(f, "{prefix}: the value of {name:?} is not a valid header value"),
            Refused::Forbidden(name) => write!(f, "{prefix}: the header {name:?} is one a guest may not set"),
            Refused::ContentLength { declared, body } => {
                write!(f, "{prefix}: Content-Length {declared:?} must be given once and equal the body's {body} bytes")
            }
            Refused::HeadersTooLarge(bytes) => {
                write!(f, "{prefix}: its headers take {bytes} bytes, more than the {MAX_HEADER_BYTES}-byte limit")
            }
        }
    }
}

impl std::error::Error for Refused {}

/// The response a guest sent with `response.send`, or why it cannot be sent.
pub fn build(status: u16, headers: Vec<(String, Vec<u8>)>, body: Vec<u8>) -> Result<Response<HyperOutgoingBody>, Refused> {
    let status = StatusCode::from_u16(status).map_err(|_| Refused::Status(status))?;
    let size: usize = headers.iter().map(|(name, value)| name.len() + value.len()).sum();
    if size > MAX_HEADER_BYTES {
        return Err(Refused::HeadersTooLarge(size));
    }
    let body_len = body.len();
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status;
    let map = response.headers_mut();
    map.reserve(headers.len());
    for (name, value) in headers {
        let Ok(parsed) = HeaderName::from_bytes(name.as_bytes()) else {
            return Err(Refused::HeaderName(name));
        };
        if crate::runtime::state::is_forbidden(&parsed) {
            return Err(Refused::Forbidden(name));
        }
        if parsed == CONTENT_LENGTH && (map.contains_key(CONTENT_LENGTH) || value != body_len.to_string().as_bytes()) {
            let declared = String::from_utf8_lossy(&value).into_owned();
            return Err(Refused::ContentLength { declared, body: body_len });
        }
        let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(value)) else {
            return Err(Refused::HeaderValue(name));
        };
        map.append(parsed, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(list: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        list.iter().map(|(name, value)| (name.to_string(), value.to_vec())).collect()
    }

    async fn body_of(response: Response<HyperOutgoingBody>) -> Vec<u8> {
        response.into_body().collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn a_response_keeps_its_status_headers_in_order_and_body() {
        let list = headers(&[("Content-Type", b"application/json"), ("set-cookie", b"a=1"), ("Set-Cookie", b"b=2")]);
        let response = build(418, list, b"{}\n".to_vec()).unwrap();
        assert_eq!(response.status(), 418);
        assert_eq!(response.headers()["content-type"], "application/json");
        let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        // Framed by its length: hyper writes Content-Length from the exact size.
        assert_eq!(hyper::body::Body::size_hint(response.body()).exact(), Some(3));
        assert_eq!(body_of(response).await, b"{}\n");
    }

    #[test]
    fn a_content_length_must_be_the_bodys_and_given_once() {
        assert!(build(200, headers(&[("content-length", b"5")]), b"hello".to_vec()).is_ok());
        for (list, body) in [
            (headers(&[("content-length", b"4")]), b"hello".to_vec()),
            (headers(&[("Content-Length", b"+5")]), b"hello".to_vec()),
            (headers(&[("content-length", b"5"), ("content-length", b"5")]), b"hello".to_vec()),
            (headers(&[("content-length", b"")]), Vec::new()),
        ] {
            let refused = build(200, list, body).unwrap_err();
            assert!(matches!(refused, Refused::ContentLength { .. }), "{refused}");
        }
    }

    #[test]
    fn what_wasi_http_refuses_is_refused_with_a_message_naming_it() {
        let cases = [
            (build(99, Vec::new(), Vec::new()), "status 99"),
            (build(1000, Vec::new(), Vec::new()), "status 1000"),
            (build(200, headers(&[("bad name", b"x")]), Vec::new()), "\"bad name\" is not a valid header name"),
            (build(200, headers(&[("x-a", b"line\nbreak")]), Vec::new()), "the value of \"x-a\""),
            (build(200, headers(&[("Transfer-Encoding", b"chunked")]), Vec::new()), "\"Transfer-Encoding\" is one a guest"),
            (build(200, headers(&[("connection", b"close")]), Vec::new()), "\"connection\" is one a guest"),
            (build(200, headers(&[("host", b"example.com")]), Vec::new()), "\"host\" is one a guest"),
        ];
        for (result, needle) in cases {
            let message = result.unwrap_err().to_string();
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
        // The one forbidden header the host allows (a 407 needs it).
        assert!(build(407, headers(&[("Proxy-Authenticate", b"Basic")]), Vec::new()).is_ok());
    }

    #[test]
    fn headers_past_the_limit_are_refused() {
        let value = vec![b'a'; MAX_HEADER_BYTES];
        assert!(build(200, vec![("x-big".into(), value[..MAX_HEADER_BYTES - 5].to_vec())], Vec::new()).is_ok());
        let refused = build(200, vec![("x-big".into(), value)], Vec::new()).unwrap_err();
        assert_eq!(refused, Refused::HeadersTooLarge(MAX_HEADER_BYTES + 5));
    }

    proptest! {
        /// Whatever the guest sends, `build` answers or refuses, never panics,
        /// and what it answers carries every header and the body unchanged.
        #[test]
        fn any_input_is_answered_whole_or_refused(
            status in 0u16..1100,
            list in proptest::collection::vec(("[A-Za-z0-9 _:-]{0,12}", proptest::collection::vec(any::<u8>(), 0..12)), 0..6),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let sent = list.len();
            if let Ok(response) = build(status, list, body.clone()) {
                prop_assert_eq!(response.status().as_u16(), status);
                prop_assert_eq!(response.headers().len(), sent);
                prop_assert_eq!(hyper::body::Body::size_hint(response.body()).exact(), Some(body.len() as u64));
            }
        }
    }
}
