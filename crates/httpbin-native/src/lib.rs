//! `httpbin-native`: httpbin's API served natively by plain hyper, with the
//! same routing code (`httpbin-api`), HTTP stack (hyper-util's auto builder)
//! and worker count (the usable CPUs) as `scalelab serve --guest httpbin`.
//!
//! It is the ceiling `cargo xtask bench-httpbin` measures the guest and the
//! real httpbin against: what a server with no wasm, no host and no Python
//! answers on this machine, so a ratio to gunicorn that even this server
//! cannot reach is seen to be the machine's, not the host's.
//!
//! The request reaches `httpbin-api` as the guest hands it on: the Host
//! header first (wasi:http gives it to a guest as the authority), then the
//! other headers in order without the hop-by-hop ones wasmtime-wasi-http
//! keeps from a guest, and the connection's peer as the client address.
//!
//! The binary (`src/main.rs`) binds and serves; tests run [`serve`] in-process.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use httpbin_api::{Action, Context, Reply};
use hyper::body::Frame;
use hyper::header::HOST;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::IpAddr;

/// Largest request body read, as the host's default `--max-body` (1 MiB).
const MAX_BODY: usize = 1 << 20;

/// Headers a wasi:http guest never sees on an incoming request
/// (wasmtime-wasi-http's forbidden headers, Host aside: it comes as the authority).
const HIDDEN: [&str; 7] =
    ["connection", "keep-alive", "proxy-authorization", "proxy-connection", "transfer-encoding", "upgrade", "http2-settings"];

type Body = BoxBody<Bytes, Infallible>;

/// Serves every connection `listener` accepts, each on a task of its own,
/// until accepting fails.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let peer = peer.ip().to_canonical();
        let service = service_fn(move |request| async move { Ok::<_, Infallible>(answer(request, peer).await) });
        tokio::spawn(builder.serve_connection(TokioIo::new(stream), service).into_owned());
    }
}

async fn answer(request: Request<hyper::body::Incoming>, peer: IpAddr) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let Ok(body) = Limited::new(body, MAX_BODY).collect().await.map(|b| b.to_bytes()) else {
        return respond(Reply::new(400, "text/plain", "could not read the request body"));
    };
    let method = parts.method.as_str();
    let path_with_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let host = parts.headers.get(HOST).map(|v| ("host".to_string(), v.as_bytes().to_vec()));
    let headers: Vec<(String, Vec<u8>)> = host
        .into_iter()
        .chain(
            parts
                .headers
                .iter()
                .filter(|(name, _)| *name != HOST && !HIDDEN.contains(&name.as_str()))
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec())),
        )
        .collect();
    let peer = || Some(peer.to_string());
    // Decided before any wait: the request (its `peer` above all) is not `Send`.
    let action = route(&httpbin_api::Request {
        method,
        path_with_query,
        headers: &headers,
        body: &body,
        peer: &peer,
        authority: &|| None,
    });
    match action {
        Action::Reply(reply) => respond(reply),
        Action::Delay(delay, reply) => {
            tokio::time::sleep(delay).await;
            respond(reply)
        }
        Action::Stream(head, lines) => {
            let frames = futures_util::stream::iter(lines.into_iter().map(|line| Ok(Frame::data(Bytes::from(line)))));
            with_body(head, StreamBody::new(frames).boxed())
        }
    }
}

/// httpbin's answer, with fastrand for randomness and the system clock.
fn route(request: &httpbin_api::Request<'_>) -> Action {
    let mut random = || fastrand::u64(..);
    httpbin_api::route(request, &mut Context { random: &mut random, now: &std::time::SystemTime::now })
}

fn respond(mut reply: Reply) -> Response<Body> {
    let body = Full::new(Bytes::from(std::mem::take(&mut reply.body))).boxed();
    with_body(reply, body)
}

/// The reply's status and headers around `body` (the reply's own body is not used).
fn with_body(reply: Reply, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status).expect("httpbin-api answers valid statuses");
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (name.parse::<hyper::header::HeaderName>(), value.parse()) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
