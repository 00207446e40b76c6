//! The `broker` session guest end to end: the real host on loopback, engines
//! from `scalelab swarm engines` and hand-written raw TCP clients.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::{Host, PATIENCE, interrupt, swarm_command, swarm_summary, temp_dir, wait_metric};

/// A broker host whose tick and silence limit suit a test, plus `extra` TOML.
fn broker(extra_toml: &str, flags: &[&str]) -> Host {
    let dir = temp_dir("broker");
    let config = dir.join("guest.toml");
    std::fs::write(&config, format!("tick_interval = \"300ms\"\n{extra_toml}")).unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(flags);
    let host = Host::start("broker", &args);
    std::mem::forget(dir);
    host
}

/// A raw engine connection.
struct Engine(TcpStream);

impl Engine {
    fn connect(addr: SocketAddr) -> Engine {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        Engine(stream)
    }

    fn send(&mut self, data: &[u8]) {
        self.0.write_all(data).unwrap();
        // One write per message, as existing engines do.
        std::thread::sleep(Duration::from_millis(30));
    }

    fn reply(&mut self) -> String {
        let mut buf = [0u8; 512];
        let n = self.0.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn register(addr: SocketAddr, id: &str) -> Engine {
        let mut engine = Engine::connect(addr);
        engine.send(format!("NewEngine:{id}:0").as_bytes());
        assert_eq!(engine.reply(), "SUCCESS:Registered");
        engine
    }
}

async fn metric(host: &Host, name: &str) -> f64 {
    host.metrics().await.value(name, &[]).unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_engines_register_and_heartbeat_without_sequence_errors() {
    let host = broker("", &[]);
    // Runs until interrupted below, once the broker has seen what it must.
    let swarm = swarm_command(
        host.tcp(),
        &["--engines", "2000", "--ramp", "4000/s", "--heartbeat", "400ms", "--duration", "10m", "--id-prefix", "e"],
    )
    .spawn()
    .unwrap();
    let registered = wait_metric(&host, "broker_registered_engines", &[], |v| v >= 2000.0).await;
    assert_eq!(registered, 2000.0);
    assert_eq!(metric(&host, "broker_active_connections").await, 2000.0);
    // Many heartbeats each, however fast the machine is: waited for, not timed.
    wait_metric(&host, "broker_heartbeats_total", &[], |v| v >= 2000.0 * 5.0).await;
    // A status line once the tick saw them all.
    let status_line = |l: &serde_json::Value| {
        l["message"].as_str().is_some_and(|m| m.starts_with("BROKER: active tcp connections: 2000 (registered engines : 2000)"))
    };
    assert!(host.wait_log(PATIENCE, status_line).is_some(), "the periodic status line");
    interrupt(&swarm);
    let summary = tokio::task::spawn_blocking(move || swarm_summary(swarm)).await.unwrap();

    assert_eq!(summary["registered_at_stop"], 2000, "{summary:#}");
    assert_eq!(summary["registrations"], 2000, "no engine had to register twice: {summary:#}");
    assert_eq!(summary["errors"], 0, "{summary:#}");
    assert_eq!(summary["duplicates_refused"], 0, "{summary:#}");
    assert_eq!(summary["reconnects"], 0, "{summary:#}");
    assert!(summary["all_registered_after_s"].as_f64().is_some(), "{summary:#}");
    let sent = summary["heartbeats_sent"].as_f64().unwrap();
    assert!(sent >= 2000.0 * 5.0, "{summary:#}");

    // The engines are gone: every registration was removed when its connection closed.
    wait_metric(&host, "broker_registered_engines", &[], |v| v == 0.0).await;
    wait_metric(&host, "broker_active_connections", &[], |v| v == 0.0).await;
    let metrics = host.metrics().await;
    assert_eq!(metrics.value("broker_sequence_errors_total", &[]), Some(0.0));
    assert_eq!(metrics.value("broker_malformed_messages_total", &[]), Some(0.0));
    assert_eq!(metrics.value("broker_heartbeats_total", &[]), Some(sent), "every heartbeat sent was accepted");
    assert_eq!(metrics.value("scalelab_sessions_opened_total", &[("transport", "tcp")]), Some(2000.0));
    assert_eq!(metrics.value("scalelab_sessions_closed_total", &[("reason", "peer")]), Some(2000.0));
    assert_eq!(metrics.value("scalelab_sessions_active", &[("transport", "tcp")]), Some(0.0));
    assert_eq!(metrics.value("scalelab_guest_failures_total", &[("guest", "broker"), ("reason", "trap")]), Some(0.0));
    // What the broker keeps in host state is gone with the sessions (only its counter stays).
    assert_eq!(metrics.value("scalelab_state_keys", &[]), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_id_is_refused_with_the_exact_message_until_its_connection_closes() {
    let host = broker("", &[]);
    let addr = host.tcp();
    let first = Engine::register(addr, "dup-1");
    let mut second = Engine::connect(addr);
    second.send(b"NewEngine:dup-1:0");
    assert_eq!(second.reply(), "FAILLED:Duplicate Engine ID dup-1");
    assert_eq!(metric(&host, "broker_duplicate_ids_total").await, 1.0);
    assert_eq!(metric(&host, "broker_registered_engines").await, 1.0);

    // A heartbeat from the refused connection is not accepted for the id.
    second.send(b"HeartBeat:dup-1:1");
    wait_metric(&host, "broker_sequence_errors_total", &[], |v| v == 1.0).await;

    // Closing the registering connection unregisters the id: now it is free.
    drop(first);
    wait_metric(&host, "broker_registered_engines", &[], |v| v == 0.0).await;
    second.send(b"NewEngine:dup-1:0");
    assert_eq!(second.reply(), "SUCCESS:Registered");
    second.send(b"HeartBeat:dup-1:1\n");
    wait_metric(&host, "broker_heartbeats_total", &[], |v| v == 1.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn merged_and_newline_terminated_messages_are_split() {
    let host = broker("", &[]);
    let mut engine = Engine::register(host.tcp(), "m");
    engine.send(b"HeartBeat:m:1HeartBeat:m:2");
    engine.send(b"HeartBeat:m:3\nHeartBeat:m:4\n");
    engine.send(b"HeartBeat:m:5\n");
    engine.send(b"HeartBeat:m:6HeartBeat:m:7HeartBeat:m:8\n");
    wait_metric(&host, "broker_heartbeats_total", &[], |v| v == 8.0).await;
    let metrics = host.metrics().await;
    assert_eq!(metrics.value("broker_merged_messages_total", &[]), Some(3.0));
    assert_eq!(metrics.value("broker_sequence_errors_total", &[]), Some(0.0));
    assert_eq!(metrics.value("broker_malformed_messages_total", &[]), Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_counted_and_logged_without_affecting_other_engines() {
    let host = broker("", &[]);
    let addr = host.tcp();
    let mut good = Engine::register(addr, "good");
    good.send(b"HeartBeat:good:1\n");

    // Garbage, an oversized message, a bad field: counted, the connection lives on.
    let mut bad = Engine::connect(addr);
    bad.send(b"hello broker\n");
    bad.send(&vec![b'x'; 10_000]);
    bad.send(b"HeartBeat:good:x\n");
    wait_metric(&host, "broker_malformed_messages_total", &[], |v| v == 3.0).await;
    bad.send(b"NewEngine:bad:0");
    assert_eq!(bad.reply(), "SUCCESS:Registered");

    // A message sent in two halves is joined.
    let mut halves = Engine::register(addr, "halves");
    halves.send(b"HeartBe");
    halves.send(b"at:halves:1\n");
    wait_metric(&host, "broker_heartbeats_total", &[], |v| v == 2.0).await;

    // Half a message, then the connection closes: counted as malformed.
    let mut cut = Engine::connect(addr);
    cut.send(b"HeartBeat:cu");
    drop(cut);
    wait_metric(&host, "broker_malformed_messages_total", &[], |v| v == 4.0).await;

    // Out of sequence: logged with the exact message and counted.
    good.send(b"HeartBeat:good:3\n");
    wait_metric(&host, "broker_sequence_errors_total", &[], |v| v == 1.0).await;
    let logged = host
        .wait_log(PATIENCE, |l| l["message"] == "ERROR MISSING HEARTBEAT [good], last Heartbeat cnt 1, received Heartbeat cnt 3");
    assert!(logged.is_some_and(|l| l["level"] == "ERROR"));

    // The good engine goes on in sequence from there.
    good.send(b"HeartBeat:good:4\n");
    wait_metric(&host, "broker_heartbeats_total", &[], |v| v == 3.0).await;
    assert_eq!(metric(&host, "broker_sequence_errors_total").await, 1.0);
    assert_eq!(metric(&host, "broker_registered_engines").await, 3.0);
    assert_eq!(metric(&host, "scalelab_guest_failures_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dowork_reaches_every_engine_heartbeats_resume_in_sequence_and_kill_disconnects() {
    let host = broker("", &[]);
    // KILL ends the swarm long before its duration.
    let flags =
        ["--engines", "200", "--ramp", "2000/s", "--heartbeat", "200ms", "--duration", "10m", "--metrics-listen", "127.0.0.1:0"];
    let mut swarm = swarm_command(host.tcp(), &flags).spawn().unwrap();
    let swarm_metrics = format!("http://{}/metrics", support::swarm_metrics_addr(&mut swarm));
    wait_metric(&host, "broker_registered_engines", &[], |v| v == 200.0).await;
    // The swarm's own /metrics agrees.
    let text = reqwest::get(&swarm_metrics).await.unwrap().text().await.unwrap();
    assert_eq!(support::Metrics(text).value("swarm_engines_registered", &[]), Some(200.0));

    let response = reqwest::get(host.url("/dowork?time=600")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(response.text().await.unwrap(), "Broker, sent to 200 engines 'DOWORK:600");
    // During the work the engines pause; afterwards they resume in sequence.
    let before = metric(&host, "broker_heartbeats_total").await;
    wait_metric(&host, "broker_heartbeats_total", &[], |v| v >= before + 200.0 * 3.0).await;
    assert_eq!(metric(&host, "broker_sequence_errors_total").await, 0.0);

    // Any method works; the code defaults to 0.
    let response = reqwest::Client::new().post(host.url("/kill")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "Broker, sent to 200 engines 'KILL:0");
    wait_metric(&host, "broker_active_connections", &[], |v| v == 0.0).await;
    wait_metric(&host, "broker_registered_engines", &[], |v| v == 0.0).await;
    let summary = tokio::task::spawn_blocking(move || swarm_summary(swarm)).await.unwrap();
    assert_eq!(summary["dowork_received"], 200, "{summary:#}");
    assert!(summary["heartbeats_sent"].as_u64().unwrap() > 0, "{summary:#}");
    assert_eq!(summary["killed"], 200, "{summary:#}");
    assert_eq!(summary["reconnects"], 0, "{summary:#}");
    assert!(summary["duration_s"].as_f64().unwrap() < 300.0, "killed engines end the swarm: {summary:#}");
    assert_eq!(metric(&host, "broker_commands_total").await, 2.0);

    let response = reqwest::get(host.url("/dowork?time=soon")).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(reqwest::get(host.url("/nope")).await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_api_token_is_checked_when_configured() {
    let host = broker("[env]\nBROKER_TOKEN = \"s3cret\"\n", &[]);
    let client = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(client.get(host.url("/dowork")).send().await.unwrap()), 401);
    assert_eq!(status(client.get(host.url("/kill")).bearer_auth("wrong").send().await.unwrap()), 401);
    let ok = client.get(host.url("/dowork?time=5")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "Broker, sent to 0 engines 'DOWORK:5");
    assert_eq!(status(client.get(host.url("/kill?code=1&token=s3cret")).send().await.unwrap()), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_engines_are_reported() {
    let host = broker("[env]\nBROKER_SILENT_AFTER_MS = \"300\"\n", &[]);
    let _quiet = Engine::register(host.tcp(), "quiet");
    wait_metric(&host, "broker_silent_engines", &[], |v| v == 1.0).await;
    let line = host.wait_log(PATIENCE, |l| {
        l["message"].as_str().is_some_and(|m| m.starts_with("BROKER: 1 engines silent") && m.contains("quiet"))
    });
    assert!(line.is_some());
}

#[test]
fn engines_reconnect_with_backoff_when_the_broker_goes_away() {
    // A fixed port, so that the second broker listens where the first did.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let first = broker("", &["--tcp-listen", &listen]);
    // Runs until interrupted, once every engine is back.
    let swarm = swarm_command(
        first.tcp(),
        &["--engines", "50", "--ramp", "1000/s", "--heartbeat", "200ms", "--duration", "10m", "--max-backoff", "500ms"],
    )
    .spawn()
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(wait_metric(&first, "broker_registered_engines", &[], |v| v == 50.0));
    drop(first);
    std::thread::sleep(Duration::from_millis(700));
    let second = broker("", &["--tcp-listen", &listen]);
    runtime.block_on(wait_metric(&second, "broker_registered_engines", &[], |v| v == 50.0));
    interrupt(&swarm);
    let summary = swarm_summary(swarm);
    assert_eq!(summary["registered_at_stop"], 50, "{summary:#}");
    assert!(summary["reconnects"].as_u64().unwrap() >= 50, "{summary:#}");
    assert_eq!(summary["registrations"], 100, "{summary:#}");
    assert_eq!(runtime.block_on(metric(&second, "broker_sequence_errors_total")), 0.0);
}

/// A stand-in for an existing broker: no delimiters, replies merged.
#[test]
fn the_swarm_works_against_an_existing_broker_that_sends_no_delimiters() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let broker = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"NewEngine:legacy-1:0\n");
        stream.write_all(b"SUCCESS:Registered").unwrap();
        let mut seen = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen.contains("HeartBeat:legacy-1:2\n") && Instant::now() < deadline {
            let n = stream.read(&mut buf).unwrap();
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(seen.starts_with("HeartBeat:legacy-1:1\nHeartBeat:legacy-1:2\n"), "{seen}");
        // Two commands in one write, as a busy broker may send them.
        stream.write_all(b"DOWORK:10KILL:7").unwrap();
        let n = stream.read(&mut buf).unwrap_or(0);
        n == 0
    });
    let swarm = swarm_command(addr, &["--engines", "1", "--id-prefix", "legacy-", "--heartbeat", "100ms", "--duration", "20s"])
        .spawn()
        .unwrap();
    let summary = swarm_summary(swarm);
    assert!(broker.join().unwrap(), "the engine disconnected after KILL");
    assert_eq!(summary["dowork_received"], 1, "{summary:#}");
    assert_eq!(summary["killed"], 1, "{summary:#}");
    assert_eq!(summary["errors"], 0, "{summary:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_stops_reading_is_closed_as_a_slow_consumer_while_others_are_served() {
    let host = broker("", &["--session-max-outgoing", "16KiB"]);
    // One engine reads everything it is sent; the other never reads again.
    let reader = Engine::register(host.tcp(), "reader");
    let _silent = Engine::register(host.tcp(), "silent");
    let mut reading = reader.0.try_clone().unwrap();
    reading.set_read_timeout(None).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        while reading.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    // Broadcast (with the load client) until the silent engine's queue,
    // behind the kernel's socket buffers (megabytes), overflows: the host
    // must close it, not buffer for ever.
    let mut load = support::scalelab()
        .args(["load", &host.url("/dowork?time=18446744073709551615"), "--concurrency", "16", "--duration", "4m"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Megabytes of broadcasts from a debug host: on a slow machine this takes
    // longer than the usual patience.
    let give_up = Instant::now() + 3 * PATIENCE;
    let closed = loop {
        let value = host.metrics().await.value("scalelab_sessions_closed_total", &[("reason", "slow_consumer")]);
        match value {
            Some(v) if v >= 1.0 => break v,
            _ if Instant::now() > give_up => panic!("the silent engine was never closed as a slow consumer; last {value:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    interrupt(&load);
    load.wait().unwrap();
    assert_eq!(closed, 1.0);
    assert!(host.wait_log(PATIENCE, |l| l["message"] == "slow consumer: session closed").is_some());
    // The reader is still connected and served.
    wait_metric(&host, "broker_active_connections", &[], |v| v == 1.0).await;
    let text = reqwest::get(host.url("/dowork?time=1")).await.unwrap().text().await.unwrap();
    assert_eq!(text, "Broker, sent to 1 engines 'DOWORK:1");
    drop(reader);
}
