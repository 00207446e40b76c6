//! The `httpbin` guest: httpbin 0.9.2's request and response service, for
//! the httpbin scaling scenario and for pointing HTTP tools at.
//!
//! Everything httpbin decides lives in `crates/httpbin-api`; this file
//! reads the wasi:http request into it, asks the host who the client is
//! (`wit/client.wit`) when a route shows `origin`, and carries out its
//! answer: a reply or a reply after a delay (a WASI clock wait, so the
//! instance holds no worker thread), each sent whole in one host call
//! (`wit/response.wit`), or a stream written line by line through wasi:http.

mod bindings {
    // Shares guest-http's wasi:http bindings (see crates/guest-http).
    guest_http::generate!("scalelab:guests/client-http-guest");
}

use bindings::exports::wasi::http::incoming_handler;
use bindings::scalelab::guests::{client, request, response};
use bindings::wasi::random::random;
use guest_http::Response;
use guest_http::wasi::clocks::monotonic_clock;
use guest_http::wasi::http::types::{IncomingRequest, ResponseOutparam};
use httpbin_api::{Action, Context, Reply, Request};

struct Httpbin;

impl incoming_handler::Guest for Httpbin {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        // The head in one host call (`wit/request.wit`) rather than wasi:http's
        // five; freed by this code alone, so it may come from the request arena.
        let request::RequestHead { method, path_with_query, headers } =
            guest_alloc::host_lists_in_arena(|| request::head(&request));
        // The host keeps the Host header to itself (wasi:http gives it as the
        // authority): asked for only by the answers that show it.
        let authority = || guest_alloc::host_lists_in_arena(|| request.authority());
        // Most routes never look at the body: those leave it unread. The
        // others take it whole in one host call, freed by this code alone.
        let body = if httpbin_api::reads_body(&method, &path_with_query) {
            guest_alloc::host_lists_in_arena(|| request::body(&request))
        } else {
            Vec::new()
        };
        let request = Request {
            method: &method,
            path_with_query: &path_with_query,
            headers: &headers,
            body: &body,
            peer: &client::address,
            authority: &authority,
        };
        let mut words = RandomWords::default();
        let mut random = || words.next();
        let mut context = Context { random: &mut random, now: &std::time::SystemTime::now };
        match httpbin_api::route(&request, &mut context) {
            Action::Reply(reply) => send(response(reply), response_out),
            Action::Delay(delay, reply) => {
                let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
                monotonic_clock::subscribe_duration(nanos).block();
                send(response(reply), response_out);
            }
            Action::Stream(head, lines) => response(head).stream(lines, response_out),
        }
    }
}

/// Random 64-bit words, drawn from the host two at a time: a uuid takes two
/// words, one host call instead of two. (wasmtime draws `get-random-bytes`
/// byte by byte, so a larger draw costs more than it saves.)
#[derive(Default)]
struct RandomWords {
    drawn: Vec<u8>,
}

impl RandomWords {
    fn next(&mut self) -> u64 {
        if self.drawn.len() < 8 {
            // Only this code frees the list: it may come from the arena.
            self.drawn = guest_alloc::host_lists_in_arena(|| random::get_random_bytes(16));
        }
        let rest = self.drawn.len() - 8;
        let word = u64::from_le_bytes(self.drawn[rest..].try_into().expect("eight bytes"));
        self.drawn.truncate(rest);
        word
    }
}

fn response(reply: Reply) -> Response {
    let headers = reply.headers.into_iter().map(|(name, value)| (name, value.into_bytes())).collect();
    Response { status: reply.status, headers, body: reply.body }
}

/// Sends a whole response in one host call (`wit/response.wit`) rather than
/// wasi:http's ten; the host adds its `Content-Length`.
fn send(response: Response, out: ResponseOutparam) {
    response::send(out, response.status, &response.headers, &response.body);
}

bindings::export!(Httpbin with_types_in bindings);

// What a call allocates comes from a request arena (crates/guest-alloc) while
// it fits, the rest from wasi-libc's `malloc`.
guest_alloc::std_global_allocator!(256 * 1024);
