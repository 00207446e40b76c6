//! The `prime` guest: the n-th prime over HTTP, the CPU-bound workload that
//! HPA scaling demos load.
//!
//! Routes (all `GET`, all JSON):
//! - `/` answers `{"prime":P}` for a random n in [1000, 11000], exactly the
//!   body clients of the original "does it scale" API expect;
//! - `/prime/{n}` and `/?n={n}` answer `{"n":n,"prime":P}`;
//! - `algo=trial` (default) or `algo=sieve` picks the algorithm.
//!
//! Bad input is a 400 naming the problem, an unknown path a 404 and any other
//! method a 405, each with a `{"error":"..."}` body.
//!
//! The routing lives in `crates/prime-api` (shared with the native reference
//! server); this file adapts it to `wasi:http` with bindings that wit-bindgen
//! generates from the repository's `wit/` folder.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "scalelab:guests/http-guest",
        generate_all,
    });
}

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Prime;

impl Guest for Prime {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let is_get = matches!(request.method(), Method::Get);
        let path_with_query = request.path_with_query().unwrap_or_default();
        let reply = prime_api::route(is_get, &path_with_query, || bindings::wasi::random::random::get_random_u64());
        send(response_out, reply);
    }
}

/// Writes `reply` as the response. The body is small (well under the 4096
/// bytes one `blocking-write-and-flush` may carry), but chunk it anyway.
fn send(response_out: ResponseOutparam, reply: prime_api::Reply) {
    let mut headers = vec![("content-type".to_string(), b"application/json".to_vec())];
    if reply.status == 405 {
        headers.push(("allow".to_string(), b"GET".to_vec()));
    }
    let fields = Fields::from_list(&headers).expect("static headers are valid");
    let response = OutgoingResponse::new(fields);
    response.set_status_code(reply.status).expect("route only produces valid status codes");
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(response_out, Ok(response));

    let stream = body.write().expect("stream is taken once");
    for chunk in reply.body.as_bytes().chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            // The client went away; nothing more to do.
            return;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

bindings::export!(Prime with_types_in bindings);
