//! End to end: start-up (readiness, compile cache, precompiled guests, bad
//! guests, worker count, environment twins of flags) and graceful shutdown.

mod support;

use std::time::Duration;
use support::{
    Host, PATIENCE, json, scalelab, serve_command, serve_command_with_cache, swarm_command, temp_dir, wait_in_flight, wait_metric,
};

fn origin_of(host: &Host) -> String {
    let line = host.wait_log(Duration::from_secs(30), |l| l["step"] == "compile").expect("a compile step log line");
    line["origin"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_turns_true_once_and_stays_true_under_load() {
    let cache = temp_dir("ready-cache");
    // A cold cache: the guest compiles first.
    let host = Host::spawn(serve_command_with_cache("fixture-wstd", &[], &cache));
    let client = reqwest::Client::new();

    let mut seen = Vec::new();
    let give_up = std::time::Instant::now() + support::PATIENCE;
    loop {
        assert_eq!(client.get(host.admin_url("/healthz")).send().await.unwrap().status(), 200);
        let status = client.get(host.admin_url("/readyz")).send().await.unwrap().status().as_u16();
        seen.push(status);
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(std::time::Instant::now() < give_up, "never became ready");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Ready only after the guest was compiled and instantiated once (the
    // line was written before readiness turned true; the reader may lag).
    let probe = host.wait_log(Duration::from_secs(10), |l| l["step"] == "probe");
    assert!(probe.is_some(), "{:#?}", host.logs());

    for _ in 0..50 {
        assert_eq!(client.get(host.url("/")).send().await.unwrap().status(), 200);
    }
    assert_eq!(client.get(host.admin_url("/readyz")).send().await.unwrap().status(), 200);
    assert_eq!(client.get(host.admin_url("/nothing")).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_makes_the_host_unready_finishes_in_flight_requests_and_exits_0() {
    let mut host = Host::start("fixture-wstd", &[]);
    let client = reqwest::Client::new();
    // In flight long enough for the readiness checks below on any machine.
    let slow = tokio::spawn(client.get(host.url("/sleep?ms=4000")).send());
    wait_in_flight(&host, 1).await;

    host.signal(libc::SIGTERM);
    let mut unready = false;
    for _ in 0..300 {
        if client.get(host.admin_url("/readyz")).send().await.unwrap().status() == 503 {
            unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(unready, "readiness stayed true after SIGTERM");
    // New connections are refused once the listener is closed.
    let refused = reqwest::Client::new().get(host.url("/")).send().await;
    assert!(refused.is_err(), "a new connection was accepted while draining");

    let response = slow.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "slept\n");
    let status = host.wait_exit(Duration::from_secs(10)).expect("the host did not exit");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drain_timeout_bounds_shutdown() {
    let mut host = Host::start("fixture-wstd", &["--drain-timeout", "200ms", "--deadline", "off"]);
    let client = reqwest::Client::new();
    let slow = tokio::spawn(client.get(host.url("/sleep?ms=30000")).send());
    wait_in_flight(&host, 1).await;
    host.signal(libc::SIGINT);
    // Far sooner than the 30 s request would end.
    let status = host.wait_exit(Duration::from_secs(20)).expect("the drain timeout was not applied");
    assert!(status.success(), "{status}");
    assert!(slow.await.unwrap().is_err(), "the cut-off request cannot have succeeded");
    let drained = host.wait_log(support::PATIENCE, |l| l["message"].as_str().is_some_and(|m| m.contains("drain timeout")));
    assert!(drained.is_some(), "{:#?}", host.logs());
}

/// Shutdown waits for every session itself, not for the session table to
/// empty: each of 500 sessions is closed and its guest's `closed` runs (the
/// broker logs each engine it unregisters) before the host exits 0. One
/// call at a time, each on a fresh instance, so the `closed` calls queue up and
/// the host would exit in the middle of them if it did not wait for each.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_every_session_and_waits_for_each_closed_call_before_exiting() {
    let mut cmd = serve_command("broker", &["--max-in-flight", "1", "--instance-reuse", "1"]);
    cmd.env("SCALELAB_LOG", "info,scalelab::guest=debug,scalelab::serve::session=debug");
    let mut host = Host::start_command(cmd);
    let mut swarm =
        swarm_command(host.tcp(), &["--engines", "500", "--ramp", "2000/s", "--heartbeat", "1s", "--duration", "10m"])
            .spawn()
            .unwrap();
    wait_metric(&host, "broker_registered_engines", &[], |v| v == 500.0).await;

    host.signal(libc::SIGTERM);
    let status = host.wait_exit(PATIENCE).expect("the host did not exit");
    assert!(status.success(), "{status}");
    // The last line: every line before it has been read.
    assert!(host.wait_log(PATIENCE, |l| l["message"] == "drained; exiting").is_some(), "no clean drain: {:#?}", host.logs());
    let logs = host.logs();
    let count = |pred: &dyn Fn(&serde_json::Value) -> bool| logs.iter().filter(|l| pred(l)).count();
    let unregistered = count(&|l| {
        l["message"].as_str().is_some_and(|m| m.starts_with("engine e") && m.ends_with(" unregistered: host shutting down"))
    });
    assert_eq!(unregistered, 500, "the broker's `closed` ran for every session");
    let closed = count(&|l| l["message"] == "session closed" && l["reason"] == "shutdown");
    assert_eq!(closed, 500, "every session task ended");
    assert_eq!(count(&|l| l["message"] == "session guest call failed; the session goes on"), 0);
    let _ = swarm.kill();
    let _ = swarm.wait();
}

/// SIGTERM under load: 32 HTTP requests in the guest and 1,000 sessions
/// open. Every request is answered 200, every session's socket is closed and
/// its guest's `closed` runs (the fixture logs each), and the host exits 0
/// within the drain timeout (it never has to cut connections off).
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_answers_every_request_and_closes_every_session() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    support::raise_fd_limit();
    let mut cmd = serve_command("fixture-session", &["--drain-timeout", "20s"]);
    cmd.env("SCALELAB_LOG", "info,scalelab::serve::session=debug");
    let mut host = Host::start_command(cmd);
    let mut sessions = Vec::new();
    for i in 0..1000 {
        let mut stream = tokio::net::TcpStream::connect(host.tcp()).await.unwrap();
        stream.write_all(format!("hello {i}\n").as_bytes()).await.unwrap();
        sessions.push(stream);
    }
    // Each session is open in the guest once it has echoed.
    for (i, stream) in sessions.iter_mut().enumerate() {
        let expected = format!("echo:hello {i}\n");
        let mut answer = vec![0u8; expected.len()];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut answer)).await.unwrap().unwrap();
        assert_eq!(answer, expected.as_bytes());
    }
    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..32).map(|_| tokio::spawn(client.get(host.url("/sleep?ms=3000")).send())).collect();
    wait_in_flight(&host, 32).await;

    let signalled = std::time::Instant::now();
    host.signal(libc::SIGTERM);
    for request in requests {
        let response = request.await.unwrap().expect("an in-flight request failed during shutdown");
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "slept\n");
    }
    for stream in &mut sessions {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await.expect("a session stayed open");
        assert!(read.is_ok_and(|_| rest.is_empty()), "a session got more than its close");
    }
    let status = host.wait_exit(PATIENCE).expect("the host did not exit");
    assert!(status.success(), "{status}");
    eprintln!("SIGTERM with 32 requests in flight and 1,000 sessions: exit 0 after {:?}", signalled.elapsed());
    assert!(host.wait_log(PATIENCE, |l| l["message"] == "drained; exiting").is_some(), "{:#?}", host.logs());
    let logs = host.logs();
    let count = |pred: &dyn Fn(&serde_json::Value) -> bool| logs.iter().filter(|l| pred(l)).count();
    let closed_calls =
        count(&|l| l["message"].as_str().is_some_and(|m| m.starts_with("closed ") && m.ends_with(": host shutting down")));
    assert_eq!(closed_calls, 1000, "the guest's `closed` ran for every session");
    assert_eq!(count(&|l| l["message"] == "session closed" && l["reason"] == "shutdown"), 1000);
    assert_eq!(count(&|l| l["message"] == "session guest call failed; the session goes on"), 0);
    let cut_off = count(&|l| l["message"].as_str().is_some_and(|m| m.starts_with("drain timeout reached")));
    assert_eq!(cut_off, 0, "the drain timeout was reached");
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_code_is_cached_by_content_and_engine_configuration() {
    let cache = temp_dir("cache");
    let start = |extra: &[&str]| Host::start_command(serve_command_with_cache("prime", extra, &cache));
    assert_eq!(origin_of(&start(&[])), "compile cache miss");
    assert_eq!(origin_of(&start(&[])), "compile cache hit");
    // Without a deadline the compiled code has no epoch checks: another entry.
    assert_eq!(origin_of(&start(&["--deadline", "off"])), "compile cache miss");
    assert_eq!(origin_of(&start(&["--deadline", "off"])), "compile cache hit");
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);

    // `scalelab compile` fills the cache ahead of time.
    let ahead = temp_dir("ahead");
    compile_prime("--cache-dir", &ahead);
    let host = Host::start_command(serve_command_with_cache("prime", &[], &ahead));
    assert_eq!(origin_of(&host), "compile cache hit");
    let (status, body) = json(reqwest::get(host.url("/prime/1000")).await.unwrap()).await;
    assert_eq!((status, body["prime"].as_u64()), (200, Some(7919)));
}

/// The compiler works in 100-200 MB for httpbin. It does so in a child
/// process, so a host that compiled its guest holds no more memory than one
/// that loaded the same code from the cache: a deployment scaled on memory
/// must not read a compile (at start, or a swap) as load. In the host, the
/// compile left 80-88 MB resident against 32 MB from the cache.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_compiles_in_a_child_process_and_leaves_the_host_small() {
    let cache = temp_dir("child-compile");
    let start = || Host::start_command(serve_command_with_cache("httpbin", &[], &cache));
    let compiled = start();
    let line = compiled.wait_log(Duration::from_secs(30), |l| l["step"] == "compile").unwrap();
    assert_eq!((line["origin"].as_str(), line["compiled_in"].as_str()), (Some("compile cache miss"), Some("child process")));
    let after_compile = compiled.resident_bytes();
    drop(compiled);

    let loaded = start();
    assert_eq!(origin_of(&loaded), "compile cache hit");
    let after_load = loaded.resident_bytes();
    let (status, _) = json(reqwest::get(loaded.url("/uuid")).await.unwrap()).await;
    assert_eq!(status, 200);
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    eprintln!("resident after a compile {:.1} MiB, after a cache hit {:.1} MiB", mib(after_compile), mib(after_load));
    assert!(
        after_compile <= after_load + (16 << 20),
        "the compile's memory stayed in the host: {:.1} MiB against {:.1} MiB from the cache",
        mib(after_compile),
        mib(after_load)
    );
    // Only the cache entry is left: the child's file was renamed into it.
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_precompiled_cwasm_guest_is_served_directly() {
    let dir = temp_dir("cwasm");
    let cwasm = dir.join("prime.cwasm");
    compile_prime("--output", &cwasm);

    let host = Host::start(cwasm.to_str().unwrap(), &["--no-cache"]);
    assert_eq!(origin_of(&host), "precompiled file");
    let (status, body) = json(reqwest::get(host.url("/prime/300")).await.unwrap()).await;
    assert_eq!((status, body["prime"].as_u64()), (200, Some(1987)));

    // A .cwasm compiled for another engine configuration is refused clearly.
    let out = serve_command(cwasm.to_str().unwrap(), &["--deadline", "off"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("different engine"), "{stderr}");
}

#[test]
fn bad_guests_stop_start_up_with_a_clear_error() {
    let dir = temp_dir("bad");
    std::fs::write(dir.join("text.wasm"), "hello").unwrap();
    // The smallest core module: a module, not a component.
    std::fs::write(dir.join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let cases = [
        ("nosuch".to_string(), "available: broker, fixture-http, fixture-session, fixture-wstd, httpbin, prime, todo, tracker"),
        (dir.join("text.wasm").display().to_string(), "not a WebAssembly file"),
        (dir.join("core.wasm").display().to_string(), "components"),
        (dir.join("missing.wasm").display().to_string(), "does not exist"),
    ];
    for (guest, needle) in cases {
        let out = serve_command(&guest, &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{guest}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{guest}: {stderr}");
    }
    // Bad flag values are usage errors (exit 2) that say what is expected.
    let out = serve_command("prime", &["--deadline", "soon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a duration"));
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_twins_configure_the_host() {
    let mut cmd = scalelab();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0"])
        .env("SCALELAB_GUEST", "prime")
        .env("SCALELAB_GUESTS_DIR", support::guests_dir())
        .env("SCALELAB_CACHE_DIR", support::shared_cache())
        .env("SCALELAB_LOG_FORMAT", "json")
        .env("SCALELAB_DEADLINE", "200ms")
        .env("SCALELAB_MAX_MEMORY", "16MiB")
        .env("SCALELAB_MAX_BODY", "2KiB")
        .env("SCALELAB_MAX_IN_FLIGHT", "7")
        .env("SCALELAB_WORKERS", "3");
    let host = Host::start_command(cmd);
    let metrics = host.metrics().await;
    assert_eq!(metrics.value("scalelab_limit_deadline_seconds", &[]), Some(0.2));
    assert_eq!(metrics.value("scalelab_limit_memory_bytes", &[]), Some(16.0 * 1024.0 * 1024.0));
    assert_eq!(metrics.value("scalelab_limit_body_bytes", &[]), Some(2048.0));
    assert_eq!(metrics.value("scalelab_limit_in_flight", &[]), Some(7.0));
    assert!(host.wait_log(Duration::from_secs(10), |l| l["step"] == "runtime" && l["workers"] == 3).is_some());
    let (status, body) = json(reqwest::get(host.url("/prime/1000000")).await.unwrap()).await;
    assert_eq!((status, body["kind"].as_str()), (503, Some("deadline")));
}

#[test]
fn workers_default_to_the_cpus_the_process_may_use() {
    // A CPU affinity of one core stands in for a pod's 1-CPU quota: both are
    // what `available_parallelism` reports.
    let mut cmd = std::process::Command::new("taskset");
    let serve = serve_command("prime", &[]);
    cmd.args(["--cpu-list", "0"]).arg(serve.get_program()).args(serve.get_args());
    for (key, value) in serve.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let host = Host::start_command(cmd);
    let runtime = host.wait_log(Duration::from_secs(10), |l| l["step"] == "runtime");
    assert_eq!(runtime.as_ref().map(|l| l["workers"].clone()), Some(serde_json::json!(1)), "{:#?}", host.logs());
}

/// Runs `scalelab compile --guest prime <flag> <path>`, which must succeed.
fn compile_prime(flag: &str, path: &std::path::Path) {
    let out = scalelab()
        .args(["compile", "--guest", "prime", "--guests-dir"])
        .arg(support::guests_dir())
        .arg(flag)
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_log_pipe_does_not_take_the_host_down() {
    use std::io::{BufRead, BufReader};
    let mut cmd = serve_command("prime", &[]);
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut traffic = None;
    {
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        for line in lines.map_while(Result::ok) {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if value["role"] == "traffic" {
                traffic = value["addr"].as_str().map(str::to_string);
            }
            if value["step"] == "ready" {
                break;
            }
        }
        // The reader goes away here: every later log line hits a broken pipe.
    }
    let url = format!("http://{}/prime/0", traffic.unwrap());
    for _ in 0..20 {
        // 400s and guest failures are logged; none may kill the host.
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 400);
    }
    assert!(child.try_wait().unwrap().is_none(), "the host exited");
    let _ = child.kill();
    let _ = child.wait();
}
