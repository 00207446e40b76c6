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
//! - `GET /panic` panics (a guest trap);
//! - `GET /leftover` tells what this instance's memory holds from earlier
//!   requests (what a fresh instance must not see).

use std::sync::atomic::{AtomicU64, Ordering};
use wstd::http::{Body, Error, Request, Response, StatusCode};
use wstd::time::Duration;

/// Requests this instance has served: one in the data segment (initialised
/// from the module's image), one in zeroed memory (bss).
static SEEN_DATA: AtomicU64 = AtomicU64::new(1000);
static SEEN_BSS: AtomicU64 = AtomicU64::new(0);

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
        "/leftover" => Ok(Response::new(leftover().into())),
        _ => Ok(Response::builder().status(StatusCode::NOT_FOUND).body("not found\n".to_owned().into())?),
    }
}

/// Counts this request in both statics, then grows linear memory by 16 pages
/// and reports how many bytes of the new pages were not zero (which wasm
/// forbids) before filling them with a pattern a later instance of the same
/// pool slot must not see.
fn leftover() -> String {
    const PAGES: usize = 16;
    const PAGE: usize = 65536;
    let data = SEEN_DATA.fetch_add(1, Ordering::Relaxed) + 1;
    let bss = SEEN_BSS.fetch_add(1, Ordering::Relaxed) + 1;
    let old = core::arch::wasm32::memory_grow(0, PAGES);
    if old == usize::MAX {
        return "memory.grow failed\n".to_owned();
    }
    // SAFETY: the pages were just added to linear memory and nothing else
    // (the allocator included) knows of them.
    let grown = unsafe { std::slice::from_raw_parts_mut((old * PAGE) as *mut u8, PAGES * PAGE) };
    let dirty = grown.iter().filter(|b| **b != 0).count();
    grown.fill(0xA5);
    format!("data {data} bss {bss} dirty {dirty}\n")
}
