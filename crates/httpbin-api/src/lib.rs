//! httpbin 0.9.2's API, answered byte for byte on its request-echo routes:
//! the routing, request inspection and Python-compatible JSON behind the
//! `httpbin` guest, free of any wasm binding so that it is tested natively.
//!
//! The guest turns a `wasi:http` request into a [`Request`], calls
//! [`route`], and carries out the [`Action`]: send a reply, send it after a
//! delay, or stream it line by line. Randomness and the clock come in
//! through [`Context`], so tests are deterministic.

mod cookies;
pub mod documents;
mod form;
mod inspect;
pub mod json;
mod random;
mod reply;
mod routes;
mod url;

pub use reply::Reply;
pub use routes::{reads_body, route};

/// A request, as the guest received it.
pub struct Request<'a> {
    /// The method, upper case.
    pub method: &'a str,
    /// Path and query as sent (still percent-encoded).
    pub path_with_query: &'a str,
    /// Headers in the order they came (names in any case).
    pub headers: &'a [(String, Vec<u8>)],
    /// The request's authority, when the caller keeps the Host header apart
    /// from `headers` (wasi:http does): shown as the first header, `Host`.
    /// Asked only by the answers that show the headers or the url (in a
    /// guest, asking is a host call). A caller whose `headers` hold Host
    /// gives `&|| None`.
    pub authority: &'a dyn Fn() -> Option<String>,
    pub body: &'a [u8],
    /// The client's IP address (the connection's peer), for `origin`:
    /// asked only by the routes that show it, and only without
    /// `X-Forwarded-For` (in a guest, asking is a host call).
    pub peer: &'a dyn Fn() -> Option<String>,
}

/// What the route needs from outside: randomness and the time.
pub struct Context<'a> {
    /// Uniformly random 64-bit values.
    pub random: &'a mut dyn FnMut() -> u64,
    /// Now, for `Last-Modified`: asked only by the route that needs it (in a
    /// guest, reading the clock is a host call).
    pub now: &'a dyn Fn() -> std::time::SystemTime,
}

impl Context<'_> {
    /// A draw in [0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.random)() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let word = (self.random)().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        out
    }
}

/// What the guest does with the request.
#[derive(Debug, PartialEq)]
pub enum Action {
    Reply(Reply),
    /// Wait this long, then reply (`/delay/{n}`).
    Delay(std::time::Duration, Reply),
    /// Send the head, then each chunk as soon as it is written (`/stream/{n}`).
    Stream(Reply, Vec<Vec<u8>>),
}
