//! What every guest relies on to answer (`crates/guest-http`), through the
//! real host: the `fixture-http` guest sends bodies of any size, written in
//! the chunks WASI accepts, and JSON errors.

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
