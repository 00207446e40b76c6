//! End to end: the per-request limits (deadline, memory, body size, requests
//! in flight) and guest traps, each with its status, JSON error and metric,
//! and the host serving normally afterwards.

mod support;

use std::time::{Duration, Instant};
use support::{Host, json, wait_in_flight};

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_over_the_deadline_gets_503_while_a_cheap_request_on_the_same_worker_succeeds() {
    // One worker thread: the slow guest must yield for the cheap one to run.
    // The slow request spins for ever, so it outlasts the deadline on any
    // machine, however fast.
    let host = Host::start("fixture-wstd", &["--deadline", "300ms", "--workers", "1"]);
    let client = reqwest::Client::new();

    let slow = {
        let request = client.get(host.url("/spin")).send();
        tokio::spawn(async move {
            let response = request.await.unwrap();
            (Instant::now(), json(response).await)
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cheap = client.get(host.url("/")).send().await.unwrap();
    let cheap_done = Instant::now();
    assert_eq!(cheap.status(), 200);

    let (slow_done, (status, body)) = slow.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["kind"], "deadline");
    assert!(body["error"].as_str().unwrap().contains("300ms"), "{body}");
    assert!(cheap_done < slow_done, "the cheap request waited for the slow guest");

    // A guest waiting in a host call (a sleep) is stopped too.
    let (status, body) = json(client.get(host.url("/sleep?ms=5000")).send().await.unwrap()).await;
    assert_eq!((status, body["kind"].as_str()), (503, Some("deadline")));

    let metrics = host.metrics().await;
    let guest = ("guest", "fixture-wstd");
    assert_eq!(metrics.value("scalelab_guest_failures_total", &[guest, ("reason", "deadline")]), Some(2.0));
    assert_eq!(metrics.value("scalelab_http_requests_total", &[guest, ("code", "503")]), Some(2.0));
    assert_eq!(metrics.value("scalelab_http_requests_in_flight", &[]), Some(0.0));
    // And the host keeps serving.
    assert_eq!(client.get(host.url("/")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_over_the_memory_cap_gets_500_and_the_next_request_is_served() {
    let host = Host::start("prime", &["--max-memory", "8MiB"]);
    let client = reqwest::Client::new();
    // The sieve for the millionth prime needs about 16 MB.
    let (status, body) = json(client.get(host.url("/prime/1000000?algo=sieve")).send().await.unwrap()).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["kind"], "memory");
    assert!(body["error"].as_str().unwrap().contains("--max-memory"), "{body}");

    let (status, body) = json(client.get(host.url("/prime/10000?algo=sieve")).send().await.unwrap()).await;
    assert_eq!((status, body["prime"].as_u64()), (200, Some(104729)));

    let metrics = host.metrics().await;
    assert_eq!(metrics.value("scalelab_guest_failures_total", &[("guest", "prime"), ("reason", "memory")]), Some(1.0));
    assert_eq!(metrics.value("scalelab_guest_failures_total", &[("guest", "prime"), ("reason", "trap")]), Some(0.0));
    assert_eq!(metrics.value("scalelab_limit_memory_bytes", &[]), Some(8.0 * 1024.0 * 1024.0));
}

/// The memory reservation the engine took, from its start-up log line.
fn reservation(host: &Host) -> String {
    let line = host.logs().into_iter().find(|l| l["step"] == "engine").expect("the engine is logged");
    line["memory_reservation"].as_str().expect("the reservation is logged").to_string()
}

/// Gives the command 48 GiB of address space: room for a bounds-checked
/// pool (a few GiB), not for 4 GiB per memory slot (hundreds of GiB).
fn limit_address_space(cmd: &mut std::process::Command) {
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            let limit = libc::rlimit { rlim_cur: 48 << 30, rlim_max: 48 << 30 };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn memories_are_guarded_by_default_and_bounds_checked_when_the_address_space_is_limited() {
    let client = reqwest::Client::new();
    let guarded = Host::start("prime", &["--max-in-flight", "4"]);
    assert_eq!(reservation(&guarded), "guarded");

    // Limited address space, and an empty cache: the
    // guest is compiled, in a child process that must take the host's
    // reservation (its one slot would fit the guarded one), or its code
    // would not load and the host would compile it itself.
    let args = ["--max-in-flight", "4", "--max-memory", "8MiB"];
    let mut cmd = support::serve_command_with_cache("prime", &args, &support::temp_dir("checked-cache"));
    limit_address_space(&mut cmd);
    let checked = Host::start_command(cmd);
    assert_eq!(reservation(&checked), "checked");
    let warning = checked
        .logs()
        .into_iter()
        .find(|l| l["level"] == "WARN" && l["message"].as_str().is_some_and(|m| m.contains("bounds checks")));
    assert!(warning.is_some(), "the fallback is logged: {:#?}", checked.logs());
    let compiled = checked.logs().into_iter().find(|l| l["step"] == "compile").expect("the compile is logged");
    assert_eq!(compiled["compiled_in"], "child process", "{:#?}", checked.logs());
    // Both serve, and the memory cap holds on both.
    for host in [&guarded, &checked] {
        let (status, body) = json(client.get(host.url("/prime/10000?algo=sieve")).send().await.unwrap()).await;
        assert_eq!((status, body["prime"].as_u64()), (200, Some(104729)));
    }
    let (status, body) = json(client.get(checked.url("/prime/1000000?algo=sieve")).send().await.unwrap()).await;
    assert_eq!((status, body["kind"].as_str()), (500, Some("memory")), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_third_party_wstd_component_is_served_and_its_panic_is_a_500() {
    let host = Host::start("fixture-wstd", &[]);
    let client = reqwest::Client::new();
    let hello = client.get(host.url("/")).send().await.unwrap();
    assert_eq!(hello.status(), 200);
    assert_eq!(hello.text().await.unwrap(), "hello from wstd\n");

    let echoed = client.post(host.url("/echo")).body("ping pong").send().await.unwrap();
    assert_eq!(echoed.text().await.unwrap(), "ping pong");

    let (status, body) = json(client.get(host.url("/panic")).send().await.unwrap()).await;
    assert_eq!((status, body["kind"].as_str()), (500, Some("trap")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("unreachable"), "{body}");

    let (status, body) = json(client.get(host.url("/alloc?mb=100")).send().await.unwrap()).await;
    assert_eq!((status, body["kind"].as_str()), (500, Some("memory")), "{body}");

    // Served normally afterwards, on the same connection pool.
    assert_eq!(client.get(host.url("/")).send().await.unwrap().status(), 200);
    let metrics = host.metrics().await;
    let failures = |reason| metrics.value("scalelab_guest_failures_total", &[("guest", "fixture-wstd"), ("reason", reason)]);
    assert_eq!((failures("trap"), failures("memory")), (Some(1.0), Some(1.0)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_cap_gets_413_before_the_guest_sees_it() {
    let host = Host::start("fixture-wstd", &["--max-body", "1KiB"]);
    let client = reqwest::Client::new();

    let (status, body) = json(client.post(host.url("/echo")).body(vec![b'x'; 2000]).send().await.unwrap()).await;
    assert_eq!((status, body["kind"].as_str()), (413, Some("body_too_large")), "{body}");

    // Without a Content-Length (chunked), the cap applies while reading.
    let chunks = futures_stream(vec![vec![b'y'; 600], vec![b'y'; 600]]);
    let response = client.post(host.url("/echo")).body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap();
    assert_eq!(response.status(), 413);

    let small = client.post(host.url("/echo")).body(vec![b'z'; 1024]).send().await.unwrap();
    assert_eq!(small.status(), 200);
    assert_eq!(small.bytes().await.unwrap().len(), 1024);

    let metrics = host.metrics().await;
    assert_eq!(metrics.value("scalelab_http_rejections_total", &[("reason", "body_too_large")]), Some(2.0));
    assert_eq!(metrics.value("scalelab_http_requests_total", &[("guest", "fixture-wstd"), ("code", "413")]), Some(2.0));
    assert_eq!(metrics.value("scalelab_guest_instantiations_total", &[("guest", "fixture-wstd")]), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_over_the_in_flight_limit_get_503() {
    let host = Host::start("fixture-wstd", &["--max-in-flight", "1"]);
    let client = reqwest::Client::new();
    let slow = tokio::spawn(client.get(host.url("/sleep?ms=1500")).send());
    wait_in_flight(&host, 1).await;

    let (status, body) = json(client.get(host.url("/")).send().await.unwrap()).await;
    assert_eq!((status, body["kind"].as_str()), (503, Some("in_flight_limit")), "{body}");

    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    wait_in_flight(&host, 0).await;
    assert_eq!(client.get(host.url("/")).send().await.unwrap().status(), 200);
    let metrics = host.metrics().await;
    assert_eq!(metrics.value("scalelab_http_rejections_total", &[("reason", "in_flight_limit")]), Some(1.0));
    assert_eq!(metrics.value("scalelab_limit_in_flight", &[]), Some(1.0));
}

fn futures_stream(chunks: Vec<Vec<u8>>) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    tokio_stream::iter(chunks.into_iter().map(Ok))
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_instances_are_reused_up_to_the_limit_and_never_after_a_failure() {
    let client = reqwest::Client::new();
    // Sequential requests: one instance serves three, then a new one.
    let host = Host::start("fixture-wstd", &["--instance-reuse", "3"]);
    for _ in 0..7 {
        assert_eq!(client.get(host.url("/")).send().await.unwrap().status(), 200);
    }
    assert_eq!(reuse_counts(&host).await, (3.0, 4.0));

    // --instance-reuse 1: a fresh instance for every request.
    let strict = Host::start("fixture-wstd", &["--instance-reuse", "1"]);
    for _ in 0..5 {
        assert_eq!(client.get(strict.url("/")).send().await.unwrap().status(), 200);
    }
    assert_eq!(reuse_counts(&strict).await, (5.0, 0.0));

    // A trapped instance is discarded: the next request gets a new one.
    let host = Host::start("fixture-wstd", &[]);
    assert_eq!(client.get(host.url("/")).send().await.unwrap().status(), 200); // new
    assert_eq!(client.get(host.url("/panic")).send().await.unwrap().status(), 500); // reused, then dropped
    assert_eq!(client.get(host.url("/")).send().await.unwrap().status(), 200); // new again
    assert_eq!(client.get(host.url("/")).send().await.unwrap().status(), 200); // reused
    assert_eq!(reuse_counts(&host).await, (2.0, 2.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_instance_sees_nothing_an_earlier_request_left_in_memory() {
    // `/leftover` counts requests in a data-segment and a zeroed static, grows
    // memory and fills the new pages: a pool slot used again must come back
    // as the module's image, with grown pages zero.
    let client = reqwest::Client::new();
    let leftover = |host: &Host| client.get(host.url("/leftover")).send();
    let strict = Host::start("fixture-wstd", &["--instance-reuse", "1"]);
    for _ in 0..6 {
        assert_eq!(leftover(&strict).await.unwrap().text().await.unwrap(), "data 1001 bss 1 dirty 0\n");
    }
    // A reused instance keeps its memory: the counters do count.
    let reused = Host::start("fixture-wstd", &["--instance-reuse", "3"]);
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(leftover(&reused).await.unwrap().text().await.unwrap());
    }
    assert_eq!(
        bodies,
        ["data 1001 bss 1 dirty 0\n", "data 1002 bss 2 dirty 0\n", "data 1003 bss 3 dirty 0\n", "data 1001 bss 1 dirty 0\n"]
    );
}

/// (instances created, requests served by a warm instance) of the fixture.
async fn reuse_counts(host: &Host) -> (f64, f64) {
    let metrics = host.metrics().await;
    let guest = [("guest", "fixture-wstd")];
    (
        metrics.value("scalelab_guest_instantiations_total", &guest).unwrap(),
        metrics.value("scalelab_guest_instance_reuses_total", &guest).unwrap(),
    )
}

/// `scalelab compile --memory-reservation checked` makes a `.cwasm` for the
/// hosts that fell back to bounds checks, on a machine that would itself
/// take the guarded reservation: such a host serves it, a guarded host
/// refuses it clearly.
#[tokio::test(flavor = "multi_thread")]
async fn a_cwasm_can_be_compiled_for_the_checked_reservation() {
    let cwasm = support::temp_dir("checked-cwasm").join("prime.cwasm");
    let out = support::scalelab()
        .args(["compile", "--guest", "prime", "--max-memory", "8MiB", "--memory-reservation", "checked", "--output"])
        .arg(&cwasm)
        .env("SCALELAB_GUESTS_DIR", support::guests_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let args = ["--max-in-flight", "4", "--max-memory", "8MiB", "--no-cache"];

    let mut cmd = support::serve_command(cwasm.to_str().unwrap(), &args);
    limit_address_space(&mut cmd);
    let checked = Host::start_command(cmd);
    assert_eq!(reservation(&checked), "checked");
    let (status, body) = json(reqwest::get(checked.url("/prime/1000")).await.unwrap()).await;
    assert_eq!((status, body["prime"].as_u64()), (200, Some(7919)));

    let refused = support::serve_command(cwasm.to_str().unwrap(), &args).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("different engine"), "{stderr}");
}
