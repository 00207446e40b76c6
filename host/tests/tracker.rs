//! The `tracker` guest over socket.io end to end: unmodified official clients
//! (JavaScript and Python), and clients that misbehave. Assertions are about
//! order and counts; the only clock is a generous timeout on each wait.

mod support;

use futures_util::{SinkExt, StreamExt};
use std::process::Command;
use std::time::Duration;
use support::{Host, Metrics, clients_dir, swarm_summary, thread_policies, wait_metric};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a test waits for the next frame before it calls the connection dead.
const PATIENCE: Duration = Duration::from_secs(30);

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await.ok()? {
            Some(Ok(Message::Text(text))) => return Some(text.to_string()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            _ => return None,
        }
    }
}

/// A raw socket.io client, connected to the main namespace.
async fn connect(host: &Host) -> Ws {
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", host.traffic);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = next_text(&mut ws).await.unwrap();
    assert!(open.starts_with("0{\"sid\":") && open.contains("\"upgrades\":[]"), "{open}");
    ws.send(Message::text("40")).await.unwrap();
    let connected = next_text(&mut ws).await.unwrap();
    assert!(connected.starts_with("40{\"sid\":"), "{connected}");
    ws
}

/// What a client saw until the server ended its connection.
#[derive(Debug, Default)]
struct Ending {
    /// The server ended it (within `PATIENCE` of the last frame).
    closed: bool,
    /// Engine.IO pings received before that.
    pings: u32,
}

/// Reads (never answering) until the server ends the connection.
async fn closed_by_server(ws: &mut Ws) -> Ending {
    let mut ending = Ending::default();
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => ending.pings += 1,
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() != "41" => {}
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            // "41", a close frame, the end of the stream or a reset.
            Ok(_) => {
                ending.closed = true;
                return ending;
            }
            Err(_) => return ending,
        }
    }
}

/// The millisecond value of a `clock` event.
fn clock_ms(text: &str) -> Option<u64> {
    text.strip_prefix("42[\"clock\",")?.strip_suffix(']')?.parse().ok()
}

async fn value(host: &Host, name: &str, labels: &[(&str, &str)]) -> f64 {
    host.metrics().await.value(name, labels).unwrap_or_else(|| panic!("no {name}{labels:?}"))
}

fn run_client(mut cmd: Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim().lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The transports a client is started with, and the one it must end on.
const MODES: [(&str, &str); 3] = [
    // Default options: long-polling first, then the upgrade.
    ("default", "websocket"),
    ("polling", "polling"),
    ("websocket", "websocket"),
];

#[tokio::test(flavor = "multi_thread")]
async fn the_official_javascript_and_python_clients_connect_with_each_transport_receive_events_and_disconnect() {
    let host = Host::start("tracker", &[]);
    let clients = clients_dir();
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let url = host.url("");

    // Each waits for 50 clock and 50 value events, then disconnects.
    let mut runs = Vec::new();
    for (mode, ends_on) in MODES {
        let mut node = Command::new("node");
        node.arg(tests.join("socketio-client.js")).args([&url, "50", mode]).env("NODE_PATH", clients.join("node_modules"));
        let mut python = Command::new("python3");
        python.arg(tests.join("socketio_client.py")).args([&url, "50", mode]).env("PYTHONPATH", clients.join("python"));
        for (who, cmd) in [("socket.io-client", node), ("python-socketio", python)] {
            runs.push((who, mode, ends_on, tokio::task::spawn_blocking(move || run_client(cmd))));
        }
    }
    let clients_run = runs.len() as f64;
    for (who, mode, ends_on, run) in runs {
        let counts = run.await.unwrap();
        assert_eq!(counts["connected"], true, "{who} ({mode}): {counts}");
        assert!(counts["clock"].as_u64().unwrap() >= 50, "{who} ({mode}): {counts}");
        assert!(counts["value"].as_u64().unwrap() >= 50, "{who} ({mode}): {counts}");
        assert_eq!(counts["in_order"], true, "{who} ({mode}): the clock went back: {counts}");
        assert_eq!(counts["transport"], ends_on, "{who} ({mode}): {counts}");
    }

    // All disconnected cleanly.
    wait_metric(&host, "mx_server_active_conn_gauge", &[("app", "mx-server")], |v| v == 0.0).await;
    let metrics = host.metrics().await;
    assert_eq!(metrics.value("mx_server_handled_conn_total", &[("app", "mx-server")]), Some(clients_run));
    assert_eq!(metrics.value("scalelab_sessions_closed_total", &[("reason", "peer")]), Some(clients_run));
    assert_eq!(metrics.value("scalelab_sessions_closed_total", &[("reason", "error")]), Some(0.0));
    assert!(metrics.value("mx_server_processed_fps_total", &[("app", "mx-server")]).unwrap() >= 50.0 * clients_run);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tick_sends_a_clock_then_a_value_as_json_numbers_and_the_values_vary() {
    let host = Host::start("tracker", &[]);
    let mut ws = connect(&host).await;
    let mut events = Vec::new();
    while events.len() < 20 {
        let Some(text) = next_text(&mut ws).await else { panic!("the connection ended after {events:?}") };
        if text == "2" {
            ws.send(Message::text("3")).await.unwrap();
            continue;
        }
        let event: serde_json::Value =
            serde_json::from_str(text.strip_prefix("42").unwrap_or(&text)).unwrap_or_else(|e| panic!("{e}: {text}"));
        events.push(event);
    }
    ws.send(Message::text("41")).await.unwrap();
    let (mut last_ms, mut values) = (0, std::collections::BTreeSet::new());
    for tick in events.chunks(2) {
        let (clock, value) = (&tick[0], &tick[1]);
        assert_eq!((&clock[0], &value[0]), (&"clock".into(), &"value".into()), "a clock, then a value: {events:?}");
        let ms = clock[1].as_u64().unwrap_or_else(|| panic!("the clock is an integer of ms: {clock}"));
        assert!(ms >= last_ms, "clocks go forward: {ms} after {last_ms}");
        last_ms = ms;
        let v = value[1].as_f64().unwrap_or_else(|| panic!("the value is a JSON number: {value}"));
        assert!((0.0..1.0).contains(&v), "{v}");
        values.insert(v.to_bits());
    }
    // Each tick's work starts from a seed of its own: ten ticks, ten results.
    assert_eq!(values.len(), 10, "{events:?}");
}

/// What the well-behaved client of `misbehaving_clients_...` saw.
#[derive(Debug)]
struct GoodClient {
    /// It was never disconnected.
    stayed: bool,
    /// Clock events after every misbehaving client had been closed.
    clock_after: u64,
    /// Clocks that went back.
    out_of_order: u64,
}

/// Clock events the good client must still get once the others are gone.
const CLOCK_AFTER: u64 = 20;

/// Answers pings and counts clock events; once `others_gone` is set, it
/// waits for `CLOCK_AFTER` more clock events and disconnects.
async fn good_client(mut ws: Ws, others_gone: tokio::sync::watch::Receiver<bool>) -> GoodClient {
    let mut seen = GoodClient { stayed: false, clock_after: 0, out_of_order: 0 };
    let mut last_ms = 0;
    while seen.clock_after < CLOCK_AFTER {
        match next_text(&mut ws).await.as_deref() {
            Some("2") => ws.send(Message::text("3")).await.unwrap(),
            Some(t) if t.starts_with("42[\"clock\"") => {
                let ms = clock_ms(t).unwrap_or(0);
                seen.out_of_order += u64::from(ms < last_ms);
                last_ms = last_ms.max(ms);
                seen.clock_after += u64::from(*others_gone.borrow());
            }
            Some(_) => {}
            None => return seen,
        }
    }
    ws.send(Message::text("41")).await.unwrap();
    seen.stayed = true;
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn misbehaving_clients_are_closed_without_affecting_others() {
    // Pings every second: the good client answers, the silent one does not.
    let host = Host::start("tracker", &["--socketio-ping-interval", "1s", "--socketio-ping-timeout", "1s"]);

    let good = connect(&host).await;
    let (others_gone, others_gone_rx) = tokio::sync::watch::channel(false);
    let good_task = tokio::spawn(good_client(good, others_gone_rx));

    // An event that is not ["name", ...].
    let mut malformed = connect(&host).await;
    malformed.send(Message::text("42{\"not\":\"an array\"}")).await.unwrap();
    assert!(closed_by_server(&mut malformed).await.closed, "malformed event");

    // A binary frame.
    let mut binary = connect(&host).await;
    binary.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert!(closed_by_server(&mut binary).await.closed, "binary frame");

    // A client that stops answering pings (it still reads): it was pinged,
    // then closed, while the good client, answering, stays.
    let mut silent = connect(&host).await;
    let ending = closed_by_server(&mut silent).await;
    assert!(ending.closed && ending.pings >= 1, "closed for not answering a ping: {ending:?}");

    // An abrupt TCP reset.
    let reset = connect(&host).await;
    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = reset.get_ref() {
        tcp.set_zero_linger().unwrap();
    }
    drop(reset);

    wait_metric(&host, "mx_server_active_conn_gauge", &[("app", "mx-server")], |v| v == 1.0).await;
    others_gone.send(true).unwrap();
    let good = good_task.await.unwrap();
    assert!(good.stayed, "the good client stayed connected and kept getting events: {good:?}");
    assert_eq!((good.clock_after, good.out_of_order), (CLOCK_AFTER, 0), "{good:?}");
    wait_metric(&host, "mx_server_active_conn_gauge", &[("app", "mx-server")], |v| v == 0.0).await;
    assert_eq!(value(&host, "mx_server_handled_conn_total", &[("app", "mx-server")]).await, 5.0);
    assert_eq!(value(&host, "scalelab_sessions_closed_total", &[("reason", "error")]).await, 3.0);
    assert_eq!(value(&host, "scalelab_sessions_closed_total", &[("reason", "peer")]).await, 2.0);
    assert_eq!(value(&host, "scalelab_sessions_active", &[("transport", "socket.io")]).await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn old_protocols_and_unknown_transports_are_refused_and_ready_answers() {
    let host = Host::start("tracker", &[]);
    for (query, body) in [
        ("EIO=3&transport=websocket", "{\"code\":5,\"message\":\"Unsupported protocol version\"}"),
        ("EIO=4&transport=flashsocket", "{\"code\":0,\"message\":\"Transport unknown\"}"),
        ("EIO=4&transport=polling&sid=nosuchsession", "{\"code\":1,\"message\":\"Session ID unknown\"}"),
    ] {
        let response = reqwest::get(host.url(&format!("/socket.io/?{query}"))).await.unwrap();
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(response.text().await.unwrap(), body, "{query}");
    }
    let response = reqwest::get(host.url("/ready")).await.unwrap();
    assert_eq!((response.status().as_u16(), response.text().await.unwrap()), (200, "OK".to_string()));
    let metrics: Metrics = host.metrics().await;
    assert_eq!(metrics.value("mx_server_active_conn_gauge", &[("app", "mx-server")]), Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduling_normal_keeps_the_default_policy() {
    let host = Host::start("tracker", &[]);
    let swarm = support::swarm_sockets_command(&host.url(""), &["--clients", "2", "--scheduling", "normal", "--ticks", "100"])
        .spawn()
        .unwrap();
    let policies = thread_policies(swarm.id()).await;
    assert!(policies.iter().all(|&p| p == 0), "SCHED_OTHER everywhere: {policies:?}");
    let summary = tokio::task::spawn_blocking(move || swarm_summary(swarm)).await.unwrap();
    assert_eq!(summary["ticks_min"], 100, "{summary:#}");
}
