//! A third-party-style wasi:http component for the host's tests, written with
//! the `wstd` guest library rather than the wit-bindgen bindings `prime` uses:
//! it proves the host serves any wasi:http proxy component.
//!
//! It also misbehaves on request, so tests can drive the host's limits:
//! - `GET /` says hello;
//! - `POST /echo` streams the request body back;
//! - `GET /sleep?ms=N` answers after N milliseconds (an in-flight request);
//! - `GET /spin` burns CPU forever (the deadline must stop it);
//! - `GET /alloc?mb=N` allocates and touches N MiB (the memory cap);
//! - `GET /panic` panics (a guest trap).

use wstd::http::{Body, Error, Request, Response, StatusCode};
use wstd::time::Duration;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let number = |key: &str| -> u64 {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    match path.as_str() {
        "/" => Ok(Response::new("hello from wstd\n".to_owned().into())),
        "/echo" => Ok(Response::new(request.into_body())),
        "/sleep" => {
            wstd::task::sleep(Duration::from_millis(number("ms"))).await;
            Ok(Response::new("slept\n".to_owned().into()))
        }
        "/spin" => {
            let mut x = 1u64;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        "/alloc" => {
            let bytes = (number("mb") as usize) << 20;
            let block = std::hint::black_box(vec![1u8; bytes]);
            Ok(Response::new(format!("allocated {} bytes\n", block.len()).into()))
        }
        "/panic" => panic!("the fixture was asked to panic"),
        _ => Ok(Response::builder().status(StatusCode::NOT_FOUND).body("not found\n".to_owned().into())?),
    }
}
