//! The prime guest's router: any path and query get one of the documented
//! statuses and a JSON body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, &str)| {
    let (is_get, path_with_query) = input;
    let reply = prime_api::route(is_get, path_with_query, || 7);
    assert!(matches!(reply.status, 200 | 400 | 404 | 405), "status {}", reply.status);
    serde_json::from_str::<serde_json::Value>(&reply.body).expect("a JSON body");
});
