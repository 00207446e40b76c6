//! The prime HTTP API: routing and input validation, free of any server or
//! WASI types. The `prime` guest (wasm) and the `prime-native` reference
//! server both answer with this code, so benchmarks compare like with like,
//! and it is tested natively here.
//!
//! Routes (all `GET`, all JSON): `/` answers `{"prime":P}` for a random n in
//! [1000, 11000]; `/prime/{n}` and `/?n={n}` answer `{"n":n,"prime":P}`;
//! `algo=trial` (default) or `algo=sieve`. Bad input is a 400 naming the
//! problem, an unknown path a 404, any other method a 405.
//!
//! `no_std` (with `alloc`), like `primes`: the `prime` guest is built
//! without the standard library.

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::RangeInclusive;
use primes::{Algo, MAX_N};
use serde_json::json;

/// The lowest and highest n that `GET /` picks at random.
const RANDOM_N: RangeInclusive<u32> = 1000..=11000;

/// A response to send: status and JSON body.
#[derive(Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// A 200, whose body (integers only) the caller wrote directly: a
    /// `serde_json::Value` (a map, its keys and the walk over it) cost more
    /// than the n-th prime for small n.
    fn ok(body: String) -> Reply {
        Reply { status: 200, body }
    }

    fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply { status, body: json!({ "error": message.into() }).to_string() }
    }
}

/// Answers one request. `random` supplies randomness for `GET /`.
pub fn route(is_get: bool, path_with_query: &str, random: impl FnOnce() -> u64) -> Reply {
    let (path, query) = path_with_query.split_once('?').unwrap_or((path_with_query, ""));
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());

    let known_path = path == "/" || path.starts_with("/prime/");
    if !known_path {
        return Reply::error(404, format!("no route for {path}; routes are GET /, GET /?n=N and GET /prime/N"));
    }
    if !is_get {
        return Reply::error(405, "method not allowed; use GET");
    }

    let algo = match param("algo") {
        None => Algo::Trial,
        Some(name) => match Algo::parse(name) {
            Some(algo) => algo,
            None => {
                return Reply::error(400, format!("algo must be trial or sieve, got {name:?}"));
            }
        },
    };

    let requested = match path.strip_prefix("/prime/") {
        Some(n) => Some(n),
        None => param("n"),
    };
    match requested {
        Some(text) => match parse_n(text) {
            Ok(n) => {
                let prime = primes::nth_prime(n, algo).expect("n >= 1 was checked");
                Reply::ok(ok_body(Some(n), prime))
            }
            Err(message) => Reply::error(400, message),
        },
        None => {
            let span = (RANDOM_N.end() - RANDOM_N.start() + 1) as u64;
            let n = RANDOM_N.start() + (random() % span) as u32;
            let prime = primes::nth_prime(n, algo).expect("n >= 1");
            Reply::ok(ok_body(None, prime))
        }
    }
}

/// The body of a 200: `{"n":n,"prime":P}`, or `{"prime":P}` for `GET /`.
///
/// Written piece by piece, the integers by `itoa`, rather than with
/// `format!`: `core::fmt` walks its pieces through a `dyn Write`, and in the
/// wasm guest that machinery (compiled by Cranelift, with an epoch check at
/// every function entry and loop) took a quarter of the guest's own
/// instructions at `/prime/1`. Both servers share this code.
fn ok_body(n: Option<u32>, prime: u64) -> String {
    let mut digits = itoa::Buffer::new();
    let mut body = String::with_capacity(40);
    match n {
        Some(n) => {
            body.push_str(r#"{"n":"#);
            body.push_str(digits.format(n));
            body.push_str(r#","prime":"#);
        }
        None => body.push_str(r#"{"prime":"#),
    }
    body.push_str(digits.format(prime));
    body.push('}');
    body
}

/// Validates the `n` of a request: an integer in 1..=MAX_N.
fn parse_n(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("n must be an integer, got {text:?}"));
    }
    if text.starts_with('-') || digits.bytes().all(|b| b == b'0') {
        return Err(format!("n must be at least 1, got {text}"));
    }
    match text.parse::<u32>() {
        Ok(n) if n <= MAX_N => Ok(n),
        _ => Err(format!("n must be at most {MAX_N}, got {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Reply {
        route(true, path, || 0)
    }

    #[test]
    fn routes_answer_the_nth_prime() {
        assert_eq!(get("/prime/1000").body, r#"{"n":1000,"prime":7919}"#);
        assert_eq!(get("/?n=3").body, r#"{"n":3,"prime":5}"#);
        assert_eq!(get("/prime/300?algo=sieve").body, r#"{"n":300,"prime":1987}"#);
        assert_eq!(get("/").body, r#"{"prime":7919}"#); // random() = 0 -> n = 1000
    }

    #[test]
    fn bad_input_is_400_naming_the_problem() {
        let cases = [
            ("/prime/abc", "integer"),
            ("/prime/", "integer"),
            ("/?n=1.5", "integer"),
            ("/prime/0", "at least 1"),
            ("/prime/-4", "at least 1"),
            ("/prime/1000001", "at most 1000000"),
            ("/prime/99999999999999999999", "at most"),
            ("/prime/7?algo=fast", "algo"),
        ];
        for (path, needle) in cases {
            let reply = get(path);
            assert_eq!(reply.status, 400, "{path}");
            assert!(reply.body.contains(needle), "{path}: {}", reply.body);
        }
    }

    #[test]
    fn unknown_paths_and_methods() {
        assert_eq!(get("/nope").status, 404);
        assert_eq!(route(false, "/prime/3", || 0).status, 405);
        assert_eq!(route(false, "/nope", || 0).status, 404);
    }
}
