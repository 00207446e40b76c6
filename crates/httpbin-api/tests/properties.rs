//! httpbin's router over arbitrary requests (proptest): it never panics, and
//! every JSON it writes reads back; a request whose route reads no body
//! ([`httpbin_api::reads_body`]) is answered alike without it; Python-style
//! floats read back exactly.

use httpbin_api::json::{self, Json};
use httpbin_api::{Action, Context, Request};
use proptest::prelude::*;

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("PUT".to_string()),
        Just("OPTIONS".to_string()),
        Just("HEAD".to_string()),
        "[A-Z]{1,8}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    let route = prop_oneof![
        Just("/get"),
        Just("/uuid"),
        Just("/headers"),
        Just("/anything/x"),
        Just("/anything"),
        Just("/post"),
        Just("/put"),
        Just("/delete"),
        Just("/patch"),
        Just("/status/"),
        Just("/bytes/"),
        Just("/stream/"),
        Just("/base64/"),
        Just("/delay/"),
        Just("/redirect/"),
        Just("/cookies/set"),
        Just("/response-headers"),
        Just("/basic-auth/a/"),
        Just("/etag/"),
        Just("/cache/"),
        Just("/"),
    ];
    (route, "[ -~%]{0,20}", "[ -~]{0,30}").prop_map(|(route, tail, query)| format!("{route}{tail}?{query}"))
}

proptest! {
    #[test]
    fn any_request_gets_an_answer(
        method in method(),
        path in path(),
        headers in proptest::collection::vec(("[a-zA-Z-]{1,16}", proptest::collection::vec(any::<u8>(), 0..24)), 0..6),
        content_type in prop_oneof![Just("application/json"), Just("application/x-www-form-urlencoded"), Just("multipart/form-data; boundary=b"), Just("text/plain")],
        body in proptest::collection::vec(any::<u8>(), 0..200),
        seed in any::<u64>(),
    ) {
        let mut headers: Vec<(String, Vec<u8>)> = headers;
        headers.push(("content-type".into(), content_type.as_bytes().to_vec()));
        let request = Request { method: &method, path_with_query: &path, headers: &headers, body: &body, peer: &|| Some("127.0.0.1".into()), authority: &|| None };
        let mut state = seed;
        let mut random = || { state = state.wrapping_mul(6364136223846793005).wrapping_add(1); state };
        let mut context = Context { random: &mut random, now: &|| std::time::UNIX_EPOCH };
        let (Action::Reply(reply) | Action::Delay(_, reply) | Action::Stream(reply, _)) = httpbin_api::route(&request, &mut context);
        prop_assert!((200..=999).contains(&reply.status));
        let json = reply.headers.iter().any(|(n, v)| n == "Content-Type" && v == "application/json")
            && !reply.headers.iter().any(|(n, _)| n == "Content-Encoding");
        if json && !reply.body.is_empty() {
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&reply.body).is_ok(), "{}", String::from_utf8_lossy(&reply.body));
        }
    }

    #[test]
    fn a_request_whose_route_reads_no_body_is_answered_alike_without_it(
        method in method(),
        path in path(),
        content_type in prop_oneof![Just("application/json"), Just("application/x-www-form-urlencoded"), Just("multipart/form-data; boundary=b"), Just("text/plain")],
        body in "[a-z=&{}\":]{1,40}",
        seed in any::<u64>(),
    ) {
        let headers = vec![("content-type".to_string(), content_type.as_bytes().to_vec())];
        let answer = |body: &[u8]| {
            let request = Request { method: &method, path_with_query: &path, headers: &headers, body, peer: &|| Some("127.0.0.1".into()), authority: &|| None };
            let mut state = seed;
            let mut random = || { state = state.wrapping_mul(6364136223846793005).wrapping_add(1); state };
            httpbin_api::route(&request, &mut Context { random: &mut random, now: &|| std::time::UNIX_EPOCH })
        };
        let (with, without) = (answer(body.as_bytes()), answer(b""));
        if !httpbin_api::reads_body(&method, &path) {
            prop_assert_eq!(with, without);
        }
    }

    /// A guest gets the Host header apart, as the request's authority (and
    /// asks for it only when an answer shows it): it is answered as if Host
    /// had come first among the headers.
    #[test]
    fn a_host_given_as_the_authority_is_answered_as_the_first_header(
        method in method(),
        path in path(),
        headers in proptest::collection::vec(("[a-zA-Z_-]{1,16}", proptest::collection::vec(any::<u8>(), 0..24)), 0..6),
        host in "[a-z0-9.:-]{1,24}",
        seed in any::<u64>(),
    ) {
        let mut with_host = vec![("host".to_string(), host.as_bytes().to_vec())];
        with_host.extend(headers.iter().cloned());
        let answer = |headers: &[(String, Vec<u8>)], authority: &dyn Fn() -> Option<String>| {
            let request = Request { method: &method, path_with_query: &path, headers, body: b"", peer: &|| Some("127.0.0.1".into()), authority };
            let mut state = seed;
            let mut random = || { state = state.wrapping_mul(6364136223846793005).wrapping_add(1); state };
            httpbin_api::route(&request, &mut Context { random: &mut random, now: &|| std::time::UNIX_EPOCH })
        };
        prop_assert_eq!(answer(&with_host, &|| None), answer(&headers, &|| Some(host.clone())));
    }

    #[test]
    fn python_floats_read_back_exactly(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
        let Json::Number(text) = Json::float(x) else { unreachable!() };
        prop_assert_eq!(text.parse::<f64>().unwrap(), x, "{}", text);
        prop_assert_eq!(json::compact(&Json::float(x)), text);
    }
}

#[test]
fn the_routes_that_echo_a_body_read_it() {
    for (method, path) in [
        ("POST", "/post"),
        ("PUT", "/put?a=1"),
        ("PATCH", "/patch"),
        ("DELETE", "/delete"),
        ("GET", "/anything"),
        ("POST", "/anything/x/y"),
        ("GET", "/delay/0"),
        ("POST", "/%61nything"),
    ] {
        assert!(httpbin_api::reads_body(method, path), "{method} {path}");
    }
    for (method, path) in [
        ("GET", "/uuid"),
        ("GET", "/get?x=1"),
        ("POST", "/status/200"),
        ("OPTIONS", "/post"),
        ("GET", "/nowhere"),
        ("GET", "/headers"),
    ] {
        assert!(!httpbin_api::reads_body(method, path), "{method} {path}");
    }
}
