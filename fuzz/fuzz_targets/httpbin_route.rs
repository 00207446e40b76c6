//! The httpbin guest's router and request inspection: any method, path,
//! headers and body are answered (or delayed, or streamed) without a panic.
#![no_main]

use httpbin_api::{Action, Context, Request, route};
use libfuzzer_sys::fuzz_target;

/// Method, path and query, headers, body.
type Input<'a> = (&'a str, &'a str, Vec<(String, Vec<u8>)>, &'a [u8]);

fuzz_target!(|input: Input| {
    let (method, path_with_query, headers, body) = input;
    let request =
        Request { method, path_with_query, headers: &headers, body, peer: &|| Some("127.0.0.1".into()), authority: &|| None };
    let mut draws = 0u64;
    let mut random = || {
        draws = draws.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        draws
    };
    let mut context = Context { random: &mut random, now: &|| std::time::SystemTime::UNIX_EPOCH };
    let status = match route(&request, &mut context) {
        Action::Reply(reply) | Action::Delay(_, reply) | Action::Stream(reply, _) => reply.status,
    };
    assert!((100..600).contains(&status), "status {status}");
});
