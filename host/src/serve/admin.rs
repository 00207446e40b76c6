//! The admin listener: liveness, readiness, metrics and the guest API, on a
//! port of its own so that probes and scrapes never queue behind guest traffic.
//!
//! - `GET /healthz`: 200 while the process runs (liveness);
//! - `GET /readyz`: 200 once the guest is compiled, instantiable and set
//!   up, 503 before that, while the database of a guest that uses SQL
//!   cannot be reached (`database_check.rs`), and from the moment a shutdown
//!   starts (readiness);
//! - `GET /metrics`: Prometheus text exposition;
//! - `GET /admin/guest`: the guest being served (name, sha256, since, world);
//! - `PUT /admin/guest`: swap to a guest given by name or path (text body) or
//!   as a component (body starting with the wasm magic; `?name=` names it), with
//!   `Authorization: Bearer <token>`. Without a configured token the route
//!   is disabled (403); a missing or wrong token gets 401.

use crate::metrics::Metrics;
use crate::serve::accept;
use crate::serve::respond::{Body, json, text, with_type};
use crate::serve::swap::{GuestSource, SwapRequest, Swapper};
use http_body_util::{BodyExt, Limited};
use hyper::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;

/// Largest component accepted by `PUT /admin/guest`.
const MAX_UPLOAD: usize = 64 << 20;

/// Whether the host should receive traffic. Shared by start-up, shutdown,
/// the database check and `/readyz`.
#[derive(Clone)]
pub struct Readiness {
    /// Set once the guest serves; cleared when shutdown starts.
    serving: Arc<AtomicBool>,
    /// Cleared while the guest's database cannot be reached.
    database: Arc<AtomicBool>,
}

impl Default for Readiness {
    fn default() -> Readiness {
        Readiness { serving: Arc::default(), database: Arc::new(AtomicBool::new(true)) }
    }
}

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.serving.store(ready, Ordering::SeqCst);
    }

    /// Records whether the database answered; returns the previous value.
    pub fn set_database(&self, reachable: bool) -> bool {
        self.database.swap(reachable, Ordering::SeqCst)
    }

    pub fn get(&self) -> bool {
        self.serving.load(Ordering::SeqCst) && self.database.load(Ordering::SeqCst)
    }

    /// Why the host is not ready, for `/readyz`.
    fn reason(&self) -> &'static str {
        match (self.serving.load(Ordering::SeqCst), self.database.load(Ordering::SeqCst)) {
            (true, false) => "not ready: the database cannot be reached\n",
            _ => "not ready\n",
        }
    }
}

/// What the admin routes need.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub ready: Readiness,
    /// Set once the first guest is serving.
    pub swapper: OnceLock<Arc<Swapper>>,
    /// The bearer token of `PUT /admin/guest`; `None` disables the route.
    pub token: Option<String>,
}

/// Serves the admin routes until the process exits.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, header_read_timeout: Option<std::time::Duration>) {
    let builder = crate::serve::connection::builder(header_read_timeout);
    loop {
        let (stream, _) = accept::next(&listener, "admin").await;
        let admin = admin.clone();
        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
            let admin = admin.clone();
            async move { Ok::<_, Infallible>(route(request, &admin).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

async fn route(request: Request<hyper::body::Incoming>, admin: &Admin) -> Response<Body> {
    let path = request.uri().path().to_string();
    match (request.method(), path.as_str()) {
        (&Method::PUT, "/admin/guest") => put_guest(request, admin).await,
        (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") if admin.ready.get() => text(StatusCode::OK, "ready\n"),
        (&Method::GET | &Method::HEAD, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, admin.ready.reason()),
        (&Method::GET | &Method::HEAD, "/metrics") => match admin.metrics.encode() {
            Ok(body) => with_type(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body.into()),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("encoding metrics failed: {e:#}\n")),
        },
        (&Method::GET | &Method::HEAD, "/admin/guest") => match admin.swapper.get() {
            Some(swapper) => json(StatusCode::OK, &serde_json::to_value(swapper.current()).unwrap_or_default()),
            None => json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({ "error": "no guest is serving yet" })),
        },
        (_, "/healthz" | "/readyz" | "/metrics" | "/admin/guest") => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, "admin routes: /healthz /readyz /metrics /admin/guest\n"),
    }
}

async fn put_guest(request: Request<hyper::body::Incoming>, admin: &Admin) -> Response<Body> {
    let error = |status, message: &str| json(status, &serde_json::json!({ "error": message }));
    let Some(token) = &admin.token else {
        return error(
            StatusCode::FORBIDDEN,
            "PUT /admin/guest is disabled: start the host with --admin-token-file or SCALELAB_ADMIN_TOKEN",
        );
    };
    let presented = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|p| same(p.as_bytes(), token.as_bytes())) {
        let mut response = error(StatusCode::UNAUTHORIZED, "a valid `Authorization: Bearer <token>` is required");
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let Some(swapper) = admin.swapper.get() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no guest is serving yet");
    };
    let query = request.uri().query().unwrap_or("").to_string();
    let body = match Limited::new(request.into_body(), MAX_UPLOAD).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, &format!("could not read the body: {e}")),
    };
    let source = if body.starts_with(b"\0asm") {
        // `?name=` names an uploaded component (in logs and metric labels).
        let name = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("name="))
            .filter(|n| !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .map(str::to_string);
        GuestSource::Bytes { bytes: body.to_vec(), name }
    } else {
        match std::str::from_utf8(&body).map(str::trim) {
            Ok(spec) if !spec.is_empty() => GuestSource::Spec(spec.to_string()),
            _ => return error(StatusCode::BAD_REQUEST, "the body must be a guest name or path, or a wasm component"),
        }
    };
    let request = SwapRequest {
        source,
        deadline: None,
        max_memory: None,
        tick_interval: swapper.current_tick_override(),
        grants: None,
        origin: "admin API",
    };
    match swapper.swap(request).await {
        Ok(report) => json(StatusCode::OK, &serde_json::to_value(report).unwrap_or_default()),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &format!("{e:#}; the current guest keeps serving")),
    }
}

/// Compares secrets in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
