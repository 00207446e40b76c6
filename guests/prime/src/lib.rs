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
//!
//! Built without the standard library: std's panic and print machinery
//! imports 19 `wasi:cli` and `wasi:io` functions that a guest answering
//! HTTP never calls, and every import costs the host work each time it
//! creates an instance. `runtime/` provides what std would: the memory
//! allocator, `cabi_realloc`, a panic handler that still writes the message
//! to stderr, and `memcmp`.

// A test build (`cargo clippy --all-targets`) links std for the harness:
// std's runtime then, not ours.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

#[cfg(not(test))]
mod runtime;

mod bindings {
    // Shares guest-http's wasi:http bindings (see crates/guest-http).
    guest_http::generate!("scalelab:guests/http-guest");
}

use bindings::exports::wasi::http::incoming_handler::Guest;
use guest_http::Response;
use guest_http::wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

struct Prime;

impl Guest for Prime {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let is_get = matches!(request.method(), Method::Get);
        let path_with_query = request.path_with_query().unwrap_or_default();
        let reply = prime_api::route(is_get, &path_with_query, bindings::wasi::random::random::get_random_u64);
        let mut response = Response::json(reply.status, reply.body);
        if reply.status == 405 {
            response = response.header("allow", "GET");
        }
        response.send(response_out);
    }
}

bindings::export!(Prime with_types_in bindings);
