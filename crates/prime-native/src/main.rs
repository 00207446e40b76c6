//! `prime-native`: the prime API served natively by plain hyper, with the
//! same routing code (`prime-api`), HTTP stack (hyper-util's auto builder) and
//! worker count (the usable CPUs) as `scalelab serve --guest prime`. It is the
//! physical limit the wasm path is measured against by `cargo xtask bench`.
//!
//! Usage: `prime-native [ADDR]` (default `127.0.0.1:0`); prints
//! `listening on ADDR` on stdout once bound. Exits with success on SIGINT, as
//! a return from `main`, so that an instrumented build writes its profile
//! (`cargo xtask bench` builds the references profile-guided, as the host).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io::Write;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_string());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?.block_on(async {
        tokio::select! {
            // The handler is in place before the server says it listens.
            biased;
            interrupted = tokio::signal::ctrl_c() => interrupted,
            served = serve(&addr) => served,
        }
    })
}

async fn serve(addr: &str) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(TokioIo::new(stream), service_fn(answer)).into_owned();
        tokio::spawn(connection);
    }
}

async fn answer(request: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let reply = prime_api::route(request.method() == Method::GET, path, || fastrand::u64(..));
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status).expect("valid status");
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if reply.status == 405 {
        response.headers_mut().insert("allow", HeaderValue::from_static("GET"));
    }
    Ok(response)
}
