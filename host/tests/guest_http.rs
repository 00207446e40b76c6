//! What every guest relies on to answer (`crates/guest-http`), through the
//! real host: the `fixture-http` guest sends bodies of any size, written in
//! the chunks WASI accepts, and JSON errors; reads a request's head and body
//! in one call each (`wit/request.wit`); and sends whole responses in one
//! call (`wit/response.wit`), checked by the host.

mod support;

use support::Host;

#[tokio::test(flavor = "multi_thread")]
async fn a_body_of_one_mebibyte_comes_through_intact() {
    let host = Host::start("fixture-http", &[]);
    let response = reqwest::get(host.url("/bytes/1048576")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/octet-stream");
    let body = response.bytes().await.unwrap();
    let expected: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8).collect();
    assert_eq!(body.len(), expected.len());
    assert!(body == expected, "the body differs from byte {:?}", body.iter().zip(&expected).position(|(a, b)| a != b));
    // Bodies under one chunk, and empty ones, too.
    for n in [0, 1, 4095, 4096, 4097] {
        let body = reqwest::get(host.url(&format!("/bytes/{n}"))).await.unwrap().bytes().await.unwrap();
        assert_eq!(body.len(), n);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_json_with_their_message_escaped() {
    let host = Host::start("fixture-http", &[]);
    let response = reqwest::get(host.url("/nope?x=1")).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), r#"{"error":"no route \"/nope?x=1\""}"#);
    assert_eq!(reqwest::get(host.url("/bytes/lots")).await.unwrap().status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_response_sent_in_one_call_keeps_its_headers_and_is_framed_by_its_length() {
    let host = Host::start("fixture-http", &[]);
    let response = reqwest::get(host.url("/whole?Content-Type=text/plain&x-a=1&X-A=2")).await.unwrap();
    assert_eq!(response.status(), 201);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers.get_all("x-a").iter().collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(headers["content-length"], "5", "the host frames the body by its length");
    assert!(!headers.contains_key("transfer-encoding"));
    assert!(headers.contains_key("x-request-id"), "the host's own headers are added as to any response");
    assert_eq!(response.text().await.unwrap(), "whole");
    // A length the guest gives is kept when it is the body's.
    let response = reqwest::get(host.url("/whole?content-length=5")).await.unwrap();
    assert_eq!((response.status().as_u16(), response.text().await.unwrap()), (201, "whole".to_string()));
    // HEAD: the length, no body.
    let response = reqwest::Client::new().head(host.url("/whole?x-b=3")).send().await.unwrap();
    assert_eq!(response.headers()["content-length"], "5");
    assert_eq!(response.bytes().await.unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_response_the_host_cannot_send_ends_the_call_with_the_reason() {
    let host = Host::start("fixture-http", &[]);
    for (query, reason) in [
        ("transfer-encoding=chunked", r#"the header \"transfer-encoding\" is one a guest may not set"#),
        ("connection=close", r#"the header \"connection\" is one a guest may not set"#),
        ("content-length=4", r#"Content-Length \"4\""#),
        ("bad@name=x", r#"\"bad@name\" is not a valid header name"#),
    ] {
        let response = reqwest::get(host.url(&format!("/whole?{query}"))).await.unwrap();
        assert_eq!(response.status(), 500, "{query}");
        let body = response.text().await.unwrap();
        assert!(body.contains(r#""kind":"trap""#) && body.contains(reason), "{query}: {body}");
    }
    // The instance that trapped is gone; the next call is served.
    assert_eq!(reqwest::get(host.url("/whole?x-a=1")).await.unwrap().status(), 201);
}

/// A guest's wasi:http fields follow wasi:http's syntax and the host's
/// header rule (`state::is_forbidden`, which the host's wasi:http hooks
/// answer directly: wasmtime's forbidden headers less `Proxy-Authenticate`),
/// checked in order, and the fields a list makes take more.
#[tokio::test(flavor = "multi_thread")]
async fn fields_made_from_a_list_hold_it_in_order_or_give_wasi_https_error() {
    let host = Host::start("fixture-http", &[]);
    for (query, expected) in [
        (
            "Content-Type=text/plain&x-a=1&X-A=2&content-length=007",
            "content-type: text/plain\nx-a: 1\nx-a: 2\ncontent-length: 7\nx-added: 1\n",
        ),
        ("", "x-added: 1\n"),
        ("proxy-authenticate=Basic", "proxy-authenticate: Basic\nx-added: 1\n"),
        ("bad@name=x", "from-list: HeaderError::InvalidSyntax\n"),
        ("content-length=+5", "from-list: HeaderError::InvalidSyntax\n"),
        ("content-length=5&Content-Length=5", "from-list: HeaderError::InvalidSyntax\n"),
        ("x-ok=1&connection=close&bad@name=x", "from-list: HeaderError::Forbidden\n"),
        ("host=example.com", "from-list: HeaderError::Forbidden\n"),
    ] {
        let response = reqwest::get(host.url(&format!("/fields?{query}"))).await.unwrap();
        assert_eq!(response.status(), 200, "{query}");
        assert_eq!(response.text().await.unwrap(), expected, "{query}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_requests_head_and_body_read_in_one_call_each_are_what_wasi_http_gives() {
    let host = Host::start("fixture-http", &[]);
    let client = reqwest::Client::new();
    let response = client
        .request(reqwest::Method::from_bytes(b"PATCH").unwrap(), host.url("/head/x?a=1&a=%C3%A9"))
        .header("X-Custom", "one")
        .header("x-custom", "two")
        .header("Accept", "*/*")
        .body("ignored")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("PATCH /head/x?a=1&a=%C3%A9"));
    let mut headers: Vec<&str> = lines.collect();
    assert_eq!(headers.pop(), Some("body: ignored | ignored"), "whole, and still readable through wasi:http");
    // Lower-case names, repeated ones in order; the Host header is the
    // request's authority in wasi:http, not a header.
    assert!(headers.contains(&"accept: */*"), "{headers:?}");
    assert!(!headers.iter().any(|line| line.starts_with("host: ")), "{headers:?}");
    let custom: Vec<&&str> = headers.iter().filter(|line| line.starts_with("x-custom: ")).collect();
    assert_eq!(custom, [&"x-custom: one", &"x-custom: two"]);
    assert!(headers.contains(&"content-length: 7"), "{headers:?}");
    // A method of its own comes through as sent.
    let response = client.request(reqwest::Method::from_bytes(b"PURGE").unwrap(), host.url("/head")).send().await.unwrap();
    let text = response.text().await.unwrap();
    assert_eq!(text.lines().next(), Some("PURGE /head"));
    assert!(text.ends_with("body:  | \n"), "no body: {text:?}");
}
