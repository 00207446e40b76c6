//! The per-request path: admit, read the body within its cap, run the guest
//! in a fresh store and instance under the deadline and memory cap, and turn
//! every way that can fail into an HTTP response with a JSON error body.
//!
//! This is the hottest code of the host. A request never reaches the guest
//! when the host refuses it (413, 503 at the in-flight limit), and a failure
//! inside the guest never leaves the client without a response unless the
//! guest had already sent its response head (then the body is cut short).

use crate::instances::Warm;
use crate::metrics::{FailureReason, Metrics, RejectReason};
use crate::state::GuestState;
use crate::swap::Active;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Limits applied to every request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock budget of one guest call; `None` means unlimited.
    pub deadline: Option<Duration>,
    /// Largest linear memory one request's instance may grow to, in bytes.
    pub max_memory: usize,
    /// Requests one instance may serve before it is replaced.
    pub instance_reuse: u32,
}

pub struct Handler {
    /// The guest being served; replaced whole by a swap.
    active: ArcSwap<Active>,
    /// Counts swaps; sessions watch it to start draining off an old guest.
    swaps: tokio::sync::watch::Sender<u64>,
    metrics: Arc<Metrics>,
    /// Largest request body, in bytes (host-wide, not per guest).
    max_body: u64,
    /// One permit per request in flight; held until the guest's store is dropped.
    in_flight: Arc<Semaphore>,
    /// Source of request ids (returned as `x-request-id`, logged on failures).
    next_id: AtomicU64,
}

/// The header carrying the request id back to the client.
const REQUEST_ID: &str = "x-request-id";

/// How a guest call ended.
enum Outcome {
    /// Returned normally.
    Done,
    /// Failed for `reason`; the message says how, for the client.
    Failed(FailureReason, String),
}

impl Handler {
    pub fn new(active: Active, metrics: Arc<Metrics>, max_body: u64, max_in_flight: u32) -> Handler {
        Handler {
            active: ArcSwap::from_pointee(active),
            swaps: tokio::sync::watch::Sender::new(0),
            metrics,
            max_body,
            in_flight: Arc::new(Semaphore::new(max_in_flight as usize)),
            next_id: AtomicU64::new(1),
        }
    }

    /// The guest being served now.
    pub fn active(&self) -> Arc<Active> {
        self.active.load_full()
    }

    /// Serves `active` from now on; requests under way finish on the old guest.
    pub fn switch_to(&self, active: Active) {
        self.active.store(Arc::new(active));
        self.swaps.send_modify(|n| *n += 1);
    }

    /// Changes whenever the guest is swapped.
    pub fn swaps(&self) -> tokio::sync::watch::Receiver<u64> {
        self.swaps.subscribe()
    }

    /// A slot for one guest call outside HTTP (a session's call, a tick):
    /// waits for one rather than failing, since the pool has one instance
    /// per slot.
    pub async fn call_slot(&self) -> OwnedSemaphorePermit {
        self.in_flight.clone().acquire_owned().await.expect("the semaphore is never closed")
    }

    /// Serves one request. Never fails: every error becomes a response.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<HyperOutgoingBody> {
        let arrived = Instant::now();
        // The whole request runs on the guest current at its arrival.
        let active = self.active.load_full();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Copy what the log line needs only when it will be written.
        let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| (request.method().clone(), request.uri().clone()));
        let mut response = self.respond(id, request, active.clone()).await;
        response.headers_mut().insert(REQUEST_ID, HeaderValue::from(id));
        let took = arrived.elapsed();
        active.metrics.answered(response.status().as_u16(), took);
        if let Some((method, uri)) = logged {
            tracing::debug!(
                request_id = id,
                %method,
                %uri,
                status = response.status().as_u16(),
                duration_ms = took.as_secs_f64() * 1e3,
                "request answered"
            );
        }
        response
    }

    async fn respond(&self, id: u64, request: Request<Incoming>, active: Arc<Active>) -> Response<HyperOutgoingBody> {
        if active.guest.http.is_none() {
            return json_error(
                StatusCode::NOT_IMPLEMENTED,
                "not_http",
                &format!("the guest {} handles sessions only (it exports no wasi:http/incoming-handler)", active.guest.name),
            );
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.metrics.reject(RejectReason::InFlightLimit);
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "in_flight_limit",
                "the host is serving its maximum of requests in flight (--max-in-flight); retry later",
            );
        };
        let in_flight = InFlight::admit(permit, &self.metrics);

        let request = match self.read_body(request).await {
            Ok(request) => request,
            Err(response) => return response,
        };

        // The guest runs in its own task: it may keep streaming the body
        // after the response head has been returned to hyper.
        let (sender, receiver) = oneshot::channel();
        let task = tokio::spawn(async move {
            let deadline = active.limits.deadline;
            let result = match active.instances.take().await {
                Ok(mut warm) => {
                    let result = call(&mut warm, request, sender, deadline).await;
                    if result.is_ok() {
                        active.instances.give_back(warm);
                    }
                    // A failed instance is dropped here, before the permit.
                    result
                }
                Err((e, store)) => Err(classify(&e, &store, deadline)),
            };
            drop(in_flight);
            match result {
                Ok(()) => Outcome::Done,
                Err((reason, message, detail)) => {
                    active.metrics.failed(reason);
                    tracing::warn!(request_id = id, reason = reason.as_str(), %message, %detail, "guest call failed");
                    Outcome::Failed(reason, message)
                }
            }
        });

        match receiver.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "guest_error",
                &format!("the guest answered with an error: {code:?}"),
            ),
            // The guest never set a response: its task ended (or is ending)
            // without one. Its outcome says why.
            Err(_) => match task.await {
                Ok(Outcome::Failed(reason, message)) => {
                    let status = match reason {
                        FailureReason::Deadline => StatusCode::SERVICE_UNAVAILABLE,
                        FailureReason::Memory | FailureReason::Trap => StatusCode::INTERNAL_SERVER_ERROR,
                    };
                    json_error(status, reason.as_str(), &message)
                }
                Ok(Outcome::Done) => {
                    json_error(StatusCode::INTERNAL_SERVER_ERROR, "no_response", "the guest returned without setting a response")
                }
                Err(join_error) => {
                    tracing::error!(request_id = id, error = %join_error, "guest task panicked");
                    json_error(StatusCode::INTERNAL_SERVER_ERROR, "host_error", "the host failed to run the guest")
                }
            },
        }
    }

    /// Reads the whole body within `--max-body`, so an oversized request is
    /// refused with 413 before the guest sees any of it.
    async fn read_body(&self, request: Request<Incoming>) -> Result<Request<Full<Bytes>>, Response<HyperOutgoingBody>> {
        let max = self.max_body;
        let too_large = || {
            json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                &format!("the request body is larger than the {max}-byte limit (--max-body)"),
            )
        };
        let declared = request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max) {
            self.metrics.reject(RejectReason::BodyTooLarge);
            return Err(too_large());
        }
        let (parts, body) = request.into_parts();
        let limit = usize::try_from(max).unwrap_or(usize::MAX);
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(Request::from_parts(parts, Full::new(collected.to_bytes()))),
            Err(e) if e.is::<LengthLimitError>() => {
                self.metrics.reject(RejectReason::BodyTooLarge);
                Err(too_large())
            }
            Err(e) => {
                self.metrics.reject(RejectReason::BadBody);
                Err(json_error(StatusCode::BAD_REQUEST, "bad_body", &format!("could not read the request body: {e}")))
            }
        }
    }
}

/// Why a guest call failed: reason, message for the client, full detail for the log.
pub type Failure = (FailureReason, String, String);

/// Hands one request to a warm instance and runs `incoming-handler.handle`
/// under the deadline.
async fn call(
    warm: &mut Warm,
    request: Request<Full<Bytes>>,
    sender: oneshot::Sender<Result<Response<HyperOutgoingBody>, ErrorCode>>,
    deadline: Option<Duration>,
) -> Result<(), Failure> {
    let store = &mut warm.store;
    arm(store, deadline);
    let prepared = (|| -> wasmtime::Result<_> {
        let mut http = wasmtime_wasi_http::WasiHttpView::http(store.data_mut());
        let request = http.new_incoming_request(Scheme::Http, request)?;
        let out = http.new_response_outparam(sender)?;
        Ok((request, out))
    })();
    let (guest_request, out) = prepared.map_err(|e| {
        (FailureReason::Trap, format!("the host could not hand the request to the guest: {e:#}"), format!("{e:?}"))
    })?;
    let proxy = warm.proxy.as_ref().expect("only HTTP guests get requests");
    let handle = proxy.wasi_http_incoming_handler().call_handle(&mut *store, guest_request, out);
    let result = within(deadline, handle).await?;
    result.map_err(|e| classify(&e, store, deadline))
}

/// Prepares a store for one call: clears the memory flag and sets the
/// deadline (epoch callback), or no deadline.
pub fn arm(store: &mut Store<GuestState>, deadline: Option<Duration>) {
    store.data_mut().memory.exceeded = false;
    match deadline {
        Some(limit) => {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(epoch_callback(Instant::now() + limit));
        }
        None => store.set_epoch_deadline(u64::MAX / 2),
    }
}

/// Runs a guest call under the deadline. The epoch callback stops a guest
/// that computes past it; this timeout stops one that waits in a host call.
pub async fn within<T>(
    deadline: Option<Duration>,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Result<wasmtime::Result<T>, Failure> {
    match deadline {
        Some(limit) => tokio::time::timeout(limit, call)
            .await
            .map_err(|_| (FailureReason::Deadline, deadline_message(deadline), String::new())),
        None => Ok(call.await),
    }
}

/// The epoch callback of a request's store: at every tick, stop the guest
/// if the deadline has passed, otherwise yield to the runtime.
///
/// The yield goes through `tokio::task::yield_now`, which reschedules the
/// task only after the runtime has polled its I/O and timer driver. A plain
/// self-wake would be polled again at once, and a CPU-bound guest would then
/// delay other connections (and timers) by up to 61 ticks.
fn epoch_callback(
    expires: Instant,
) -> impl FnMut(wasmtime::StoreContextMut<'_, GuestState>) -> wasmtime::Result<UpdateDeadline> + Send + Sync + 'static {
    move |_| {
        if Instant::now() >= expires {
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
    }
}

fn deadline_message(deadline: Option<Duration>) -> String {
    match deadline {
        Some(limit) => format!("the guest did not finish within the {} deadline (--deadline)", humantime::format_duration(limit)),
        None => "the guest was interrupted".to_string(),
    }
}

/// Names the reason a guest call failed: the reason, a short message for the
/// client, and the full error (with the wasm backtrace) for the log.
pub fn classify(error: &wasmtime::Error, store: &Store<GuestState>, deadline: Option<Duration>) -> Failure {
    let detail = format!("{error:?}");
    let trap = error.downcast_ref::<Trap>();
    if trap == Some(&Trap::Interrupt) {
        return (FailureReason::Deadline, deadline_message(deadline), detail);
    }
    let cause = match trap {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    if store.data().memory.exceeded {
        return (FailureReason::Memory, format!("the guest exceeded its memory limit (--max-memory): {cause}"), detail);
    }
    (FailureReason::Trap, format!("the guest trapped: {cause}"), detail)
}

/// An admitted request: counted in the in-flight gauge until dropped.
struct InFlight {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl InFlight {
    fn admit(permit: OwnedSemaphorePermit, metrics: &Metrics) -> InFlight {
        metrics.in_flight.inc();
        InFlight { _permit: permit, gauge: metrics.in_flight.clone() }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// A response with a `{"error": ..., "kind": ...}` body.
pub fn json_error(status: StatusCode, kind: &str, message: &str) -> Response<HyperOutgoingBody> {
    let body = serde_json::json!({ "error": message, "kind": kind }).to_string();
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A complete body of the type guests' responses use.
pub fn full(bytes: Bytes) -> HyperOutgoingBody {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}
