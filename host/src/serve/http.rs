//! The HTTP path: admit, read the body within its cap, run the guest's
//! `incoming-handler` on a warm instance (`Instances::call`: deadline, memory
//! cap, instance reuse), and turn every way that can fail into an HTTP
//! response with a JSON error body.
//!
//! This is the hottest code of the host. A request never reaches the guest
//! when the host refuses it (413, 503 at the in-flight limit), and a failure
//! inside the guest never leaves the client without a response unless the
//! guest had already sent its response head (then the body is cut short).
//!
//! The guest call runs inside the connection's request future until it sets
//! its response; only a call still running after that (streaming its body)
//! moves to a task of its own. So a client that goes away before its response
//! head cancels the call, and the instance it ran on is dropped, not reused.

use crate::metrics::{FailureReason, Metrics, RejectReason};
use crate::runtime::active::Active;
use crate::runtime::call::Failure;
use crate::runtime::call_slots::RequestSlot;
use crate::runtime::instances::Warm;
use crate::runtime::live::LiveGuest;
use crate::serve::request_id;
use crate::serve::respond::{Body, json_error};
use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

pub struct Handler {
    /// The guest being served and the call slots (shared with sessions and swaps).
    live: Arc<LiveGuest>,
    metrics: Arc<Metrics>,
    /// Largest request body, in bytes (host-wide, not per guest).
    max_body: u64,
}

/// The header carrying the request id back to the client (a name made
/// once: a `&str` would be parsed and hashed for every response).
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How a guest call ended, once its response head was not sent.
enum Outcome {
    /// Returned normally.
    Done,
    /// Failed; the message says how, for the client.
    Failed(FailureReason, String),
    /// The host panicked while running the call (a bug, logged).
    Panicked,
}

impl Handler {
    pub fn new(live: Arc<LiveGuest>, metrics: Arc<Metrics>, max_body: u64) -> Handler {
        Handler { live, metrics, max_body }
    }

    /// The host's metrics, for refusals made before a request exists.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves one request from `client`. Never fails: every error becomes a response.
    ///
    /// A function returning its future rather than an `async fn`: an
    /// `async fn` keeps its arguments twice in its future (rust-lang/rust
    /// #62958), and the request alone is 264 bytes. Each level of this path
    /// keeps its futures small, since hyper and every caller copy them
    /// whole when they start.
    #[expect(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice in its future (rust-lang/rust#62958)")]
    pub fn handle(self: Arc<Self>, request: Request<Incoming>, client: IpAddr) -> impl Future<Output = Response<Body>> + Send {
        async move {
            let arrived = Instant::now();
            // The whole request runs on the guest current at its arrival.
            let active = self.live.active();
            let id = request_id::next();
            // Copy what the log line needs only when it will be written.
            let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| (request.method().clone(), request.uri().clone()));
            let mut response = self.respond(id, request, client, active.clone()).await;
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
    }

    /// Admits the request, reads its body and runs the guest. (Returns its
    /// future rather than being an `async fn`, as `handle` does.)
    #[expect(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice in its future (rust-lang/rust#62958)")]
    fn respond(
        &self,
        id: u64,
        request: Request<Incoming>,
        client: IpAddr,
        active: Arc<Active>,
    ) -> impl Future<Output = Response<Body>> {
        async move {
            if active.guest.http.is_none() {
                return json_error(
                    StatusCode::NOT_IMPLEMENTED,
                    "not_http",
                    &format!("the guest {} handles sessions only (it exports no wasi:http/incoming-handler)", active.guest.name),
                );
            }
            // Counted in the in-flight gauge until dropped.
            let Some(in_flight) = self.live.try_slot() else {
                self.metrics.http.reject(RejectReason::InFlightLimit);
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "in_flight_limit",
                    "the host is serving its maximum of requests in flight (--max-in-flight); retry later",
                );
            };

            // Most requests (GETs) have no body: nothing to wait for. A body is
            // read in a future of its own, boxed: held inline, its kilobyte would
            // make every request's future larger.
            let request = if request.body().is_end_stream() {
                let (parts, _) = request.into_parts();
                Request::from_parts(parts, Bytes::new())
            } else {
                match Box::pin(self.read_body(request, active.limits.deadline)).await {
                    Ok(request) => request,
                    Err(response) => return response,
                }
            };

            run_call(id, active, request, client, in_flight).await
        }
    }

    /// Reads the whole body within `--max-body`, so an oversized request is
    /// refused with 413 before the guest sees any of it, and within the
    /// deadline, so a body that never ends (a client trickling it, or gone
    /// silent) gets a 408 and holds its in-flight slot no longer than a call.
    async fn read_body(
        &self,
        request: Request<Incoming>,
        deadline: Option<std::time::Duration>,
    ) -> Result<Request<Bytes>, Response<Body>> {
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
            self.metrics.http.reject(RejectReason::BodyTooLarge);
            return Err(too_large());
        }
        let (parts, body) = request.into_parts();
        let limit = usize::try_from(max).unwrap_or(usize::MAX);
        let collect = Limited::new(body, limit).collect();
        let collected = match deadline {
            Some(limit) => tokio::time::timeout(limit, collect).await.map_err(|_| self.body_timeout(limit))?,
            None => collect.await,
        };
        match collected {
            Ok(collected) => Ok(Request::from_parts(parts, collected.to_bytes())),
            Err(e) if e.is::<LengthLimitError>() => {
                self.metrics.http.reject(RejectReason::BodyTooLarge);
                Err(too_large())
            }
            Err(e) => {
                self.metrics.http.reject(RejectReason::BadBody);
                Err(json_error(StatusCode::BAD_REQUEST, "bad_body", &format!("could not read the request body: {e}")))
            }
        }
    }

    /// The 408 for a body that did not arrive within the deadline, counted.
    fn body_timeout(&self, limit: std::time::Duration) -> Response<Body> {
        self.metrics.http.reject(RejectReason::BodyTimeout);
        let message =
            format!("the request body did not arrive within the {} deadline (--deadline)", humantime::format_duration(limit));
        let mut response = json_error(StatusCode::REQUEST_TIMEOUT, "body_timeout", &message);
        // The rest of the body will not be read: the connection cannot carry another request.
        response.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// Runs the guest call inside this request's future until it has set its
/// response. A call that returns at once (most do) costs no task of its own;
/// one still running after setting its response (streaming the body, waiting
/// on a host call) moves to a task, since hyper needs the response head
/// before the body is complete. (Returns its future rather than being an
/// `async fn`, as `Handler::handle` does.)
#[expect(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice in its future (rust-lang/rust#62958)")]
fn run_call(
    id: u64,
    active: Arc<Active>,
    request: Request<Bytes>,
    client: IpAddr,
    in_flight: RequestSlot,
) -> impl Future<Output = Response<Body>> {
    async move {
        let (sender, receiver) = oneshot::channel();
        let call = async move {
            let deadline = active.limits.deadline;
            let result = active.instances.call(deadline, move |warm| Box::pin(call_guest(warm, request, client, sender))).await;
            // A failed instance was dropped in `call`, before the slot is released here.
            drop(in_flight);
            match result {
                Ok(()) => Outcome::Done,
                Err(Failure { reason, message, detail }) => {
                    active.metrics.failed(reason);
                    tracing::warn!(request_id = id, reason = reason.as_str(), error = %message, %detail, "guest call failed");
                    Outcome::Failed(reason, message)
                }
            }
        };
        let mut call = Box::pin(AssertUnwindSafe(call).catch_unwind().map(move |outcome| {
            outcome.unwrap_or_else(|_| {
                tracing::error!(request_id = id, "the host panicked running the guest call");
                Outcome::Panicked
            })
        }));
        match first_of(&mut call, receiver).await {
            First::Ended(_, Some(set)) => response_or_error(set),
            First::Ended(outcome, None) => unanswered(outcome),
            First::Answered(set) => {
                tokio::spawn(call);
                response_or_error(set)
            }
            // Dropped unset while the call runs on: its outcome says why.
            First::Unanswered => unanswered(call.await),
        }
    }
}

/// What came first: the call's end, or its response.
enum First {
    /// The call ended, with the response it set, if any.
    Ended(Outcome, Option<Result<Response<Body>, ErrorCode>>),
    /// The call set its response and runs on.
    Answered(Result<Response<Body>, ErrorCode>),
    /// The call dropped its response unset and runs on.
    Unanswered,
}

/// Polls the call and, after each poll, looks whether it set its response.
///
/// The response can only be set inside the call, so inside a poll of it:
/// looking after each poll (`try_recv`) sees it as soon as awaiting would,
/// without giving the channel this task's waker. Awaited, the receiver woke
/// the task from inside its own poll whenever the call had waited for a
/// host call first (every SQL call): tokio then ran the task once more and
/// woke an idle worker to take it, a thread switch per request.
async fn first_of(
    call: &mut (impl Future<Output = Outcome> + Unpin),
    mut receiver: oneshot::Receiver<Result<Response<Body>, ErrorCode>>,
) -> First {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(outcome) = call.poll_unpin(cx) {
            return Poll::Ready(First::Ended(outcome, receiver.try_recv().ok()));
        }
        match receiver.try_recv() {
            Ok(set) => Poll::Ready(First::Answered(set)),
            Err(TryRecvError::Empty) => Poll::Pending,
            Err(TryRecvError::Closed) => Poll::Ready(First::Unanswered),
        }
    })
    .await
}

/// The error response of a call that set no response, from how it ended.
fn unanswered(outcome: Outcome) -> Response<Body> {
    match outcome {
        Outcome::Failed(reason, message) => {
            let status = match reason {
                FailureReason::Deadline => StatusCode::SERVICE_UNAVAILABLE,
                FailureReason::Memory | FailureReason::Trap | FailureReason::StateLimit => StatusCode::INTERNAL_SERVER_ERROR,
            };
            json_error(status, reason.as_str(), &message)
        }
        Outcome::Done => {
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "no_response", "the guest returned without setting a response")
        }
        Outcome::Panicked => json_error(StatusCode::INTERNAL_SERVER_ERROR, "host_error", "the host failed to run the guest"),
    }
}

/// The response the guest set, or a 500 for the error code it set instead.
fn response_or_error(set: Result<Response<Body>, ErrorCode>) -> Response<Body> {
    match set {
        Ok(response) => response,
        Err(code) => {
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "guest_error", &format!("the guest answered with an error: {code:?}"))
        }
    }
}

/// Hands one request to the guest's `incoming-handler`, telling the
/// instance who the client is for the call (`wit/client.wit`) and keeping
/// the body it may ask for whole (`wit/request.wit`).
async fn call_guest(
    warm: &mut Warm,
    request: Request<Bytes>,
    client: IpAddr,
    sender: oneshot::Sender<Result<Response<Body>, ErrorCode>>,
) -> wasmtime::Result<()> {
    let store = &mut warm.store;
    let (parts, body) = request.into_parts();
    // In a block: the view borrows the store, and must not live across the call.
    let (guest_request, out) = {
        let mut http = wasmtime_wasi_http::WasiHttpView::http(store.data_mut());
        let request = Request::from_parts(parts, Full::new(body.clone()));
        (http.new_incoming_request(Scheme::Http, request)?, http.new_response_outparam(sender)?)
    };
    let state = store.data_mut();
    state.client = Some(client.to_canonical());
    state.request_body = Some((guest_request.rep(), body));
    let proxy = warm.proxy.as_ref().expect("only HTTP guests get requests");
    let result = proxy.wasi_http_incoming_handler().call_handle(&mut *store, guest_request, out).await;
    // The instance may serve other calls next; none of them is this request's.
    let state = store.data_mut();
    state.client = None;
    state.request_body = None;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::{ArcWake, waker};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Context;

    /// A waker that counts its wakes.
    struct Wakes(AtomicUsize);

    impl ArcWake for Wakes {
        fn wake_by_ref(wakes: &Arc<Wakes>) {
            wakes.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    type Sender = oneshot::Sender<Result<Response<Body>, ErrorCode>>;

    /// A stand-in for a guest call: `steps[i]` is what its poll `i` does
    /// with the response channel, then whether that poll ends the call.
    fn call(sender: Sender, steps: Vec<(Step, bool)>) -> impl Future<Output = Outcome> + Unpin {
        let mut sender = Some(sender);
        let mut steps = steps.into_iter();
        std::future::poll_fn(move |_| {
            let (step, ends) = steps.next().expect("polled no more than its steps");
            match step {
                Step::Wait => {}
                Step::Answer => {
                    drop(sender.take().expect("answers once").send(Ok(crate::serve::respond::text(StatusCode::OK, "ok"))))
                }
                Step::DropUnset => drop(sender.take()),
            }
            if ends { Poll::Ready(Outcome::Done) } else { Poll::Pending }
        })
    }

    enum Step {
        Wait,
        Answer,
        DropUnset,
    }

    /// Polls `first_of` once per step with a counting waker; returns what it
    /// gave and how often the channel woke the task.
    fn run(steps: Vec<(Step, bool)>) -> (First, usize) {
        let (sender, receiver) = oneshot::channel();
        let polls = steps.len();
        let mut call = call(sender, steps);
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut first = std::pin::pin!(first_of(&mut call, receiver));
        for _ in 1..polls {
            assert!(first.as_mut().poll(&mut cx).is_pending());
        }
        let Poll::Ready(first) = first.as_mut().poll(&mut cx) else { panic!("still pending after its last step") };
        (first, wakes.0.load(Ordering::SeqCst))
    }

    #[test]
    fn a_response_set_after_a_wait_in_a_host_call_does_not_wake_the_task_running_the_call() {
        // An SQL call: the first poll waits on the database, the second
        // answers and returns.
        let (first, wakes) = run(vec![(Step::Wait, false), (Step::Answer, true)]);
        assert!(matches!(first, First::Ended(Outcome::Done, Some(Ok(_)))));
        assert_eq!(wakes, 0, "the response channel woke the task from inside its own poll");
    }

    #[test]
    fn a_response_set_by_a_call_that_runs_on_is_seen_after_that_poll() {
        let (first, _) = run(vec![(Step::Wait, false), (Step::Answer, false)]);
        assert!(matches!(first, First::Answered(Ok(_))));
    }

    #[test]
    fn a_call_that_ends_without_a_response_or_drops_it_unset_says_so() {
        let (first, _) = run(vec![(Step::Wait, true)]);
        assert!(matches!(first, First::Ended(Outcome::Done, None)));
        let (first, _) = run(vec![(Step::Wait, false), (Step::DropUnset, false)]);
        assert!(matches!(first, First::Unanswered));
    }
}
