//! socket.io's HTTP long-polling transport and the upgrade to a WebSocket,
//! at the protocol level (the official clients' runs are in `tracker.rs`):
//! a session over polls and POSTs, the heartbeat, a client that breaks the
//! protocol or stops polling, and the move onto a WebSocket losing nothing.
//! The `fixture-session` guest answers each event `echo:{data}`.

mod support;

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use support::{Host, wait_metric};
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for one answer before it calls the session dead.
const PATIENCE: Duration = Duration::from_secs(30);

/// A raw long-polling client.
struct Polling {
    http: reqwest::Client,
    /// The session's URL (with its `sid`).
    url: String,
    sid: String,
    /// The open packet's JSON.
    open: serde_json::Value,
}

impl Polling {
    /// The handshake GET.
    async fn open(host: &Host) -> Polling {
        let http = reqwest::Client::builder().timeout(PATIENCE).build().unwrap();
        let base = host.url("/socket.io/?EIO=4&transport=polling");
        let response = http.get(&base).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/plain; charset=UTF-8");
        let body = response.text().await.unwrap();
        let open: serde_json::Value = serde_json::from_str(body.strip_prefix('0').expect("an open packet")).unwrap();
        let sid = open["sid"].as_str().unwrap().to_string();
        Polling { http, url: format!("{base}&sid={sid}"), sid, open }
    }

    /// The handshake, the client's connect and the server's answer.
    async fn connect(host: &Host) -> Polling {
        let client = Polling::open(host).await;
        assert_eq!(client.post("40").await, (200, "ok".to_string()));
        let packets = client.poll().await;
        assert!(packets[0].starts_with("40{\"sid\":"), "{packets:?}");
        client
    }

    async fn post(&self, payload: &str) -> (u16, String) {
        let response = self.http.post(&self.url).body(payload.to_string()).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn get(&self) -> (u16, String) {
        let response = self.http.get(&self.url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// One poll's packets.
    async fn poll(&self) -> Vec<String> {
        let (status, body) = self.get().await;
        assert_eq!(status, 200, "{body}");
        body.split('\u{1e}').map(str::to_string).collect()
    }

    /// Polls until `n` packets other than noops and pings came.
    async fn packets(&self, n: usize) -> Vec<String> {
        let mut packets = Vec::new();
        while packets.len() < n {
            packets.extend(self.poll().await.into_iter().filter(|p| p != "6" && p != "2"));
        }
        packets
    }
}

fn error_body(code: u8, message: &str) -> String {
    format!("{{\"code\":{code},\"message\":\"{message}\"}}")
}

async fn closed(host: &Host, reason: &str, n: f64) {
    wait_metric(host, "scalelab_sessions_closed_total", &[("reason", reason)], |v| v == n).await;
}

const QUIET: [&str; 4] = ["--socketio-ping-interval", "60s", "--socketio-ping-timeout", "60s"];

#[tokio::test(flavor = "multi_thread")]
async fn a_polling_session_connects_exchanges_events_in_order_and_closes() {
    let host = Host::start("fixture-session", &QUIET);
    let client = Polling::open(&host).await;
    assert_eq!(client.open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(client.open["pingInterval"], 60000);
    assert_eq!(client.open["maxPayload"], 1_000_000);
    assert_eq!(client.post("40").await, (200, "ok".to_string()));
    assert!(client.poll().await[0].starts_with("40{\"sid\":"));
    wait_metric(&host, "scalelab_sessions_active", &[("transport", "socket.io")], |v| v == 1.0).await;

    // Several packets in one POST, their answers in order over polls.
    let events: Vec<String> = (0..20).map(|i| format!("42[\"n\",{i}]")).collect();
    assert_eq!(client.post(&events.join("\u{1e}")).await.0, 200);
    let answers = client.packets(20).await;
    let expected: Vec<String> = (0..20).map(|i| format!("42echo:[\"n\",{i}]")).collect();
    assert_eq!(answers, expected);

    // The client closes: the session ends as closed by the peer, and the sid is gone.
    assert_eq!(client.post("41\u{1e}1").await.0, 200);
    closed(&host, "peer", 1.0).await;
    assert_eq!(client.get().await, (400, error_body(1, "Session ID unknown")));
    assert_eq!(host.metrics().await.value("scalelab_sessions_closed_total", &[("reason", "error")]), Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_break_the_protocol_are_closed_and_others_go_on() {
    let host = Host::start("fixture-session", &QUIET);
    let good = Polling::connect(&host).await;

    // Two polls at once: one is refused, the other gets the disconnect.
    let overlapping = Polling::connect(&host).await;
    let (a, b) = tokio::join!(overlapping.get(), overlapping.get());
    let mut answers = [a, b];
    answers.sort();
    assert_eq!(answers[0], (200, "41\u{1e}1".to_string()), "{answers:?}");
    assert_eq!(answers[1], (400, error_body(3, "Bad request")), "{answers:?}");
    closed(&host, "error", 1.0).await;

    // Garbage, and a payload over maxPayload.
    let garbage = Polling::connect(&host).await;
    assert_eq!(garbage.post("hello").await.0, 200);
    closed(&host, "error", 2.0).await;
    let oversized = Polling::connect(&host).await;
    assert_eq!(oversized.post(&"x".repeat(1_000_001)).await, (400, error_body(3, "Bad request")));
    closed(&host, "error", 3.0).await;

    // The well-behaved session never noticed.
    assert_eq!(good.post("42[\"still here\"]").await.0, 200);
    assert_eq!(good.packets(1).await, ["42echo:[\"still here\"]"]);
    let metrics = host.metrics().await;
    assert_eq!(metrics.value("scalelab_sessions_active", &[("transport", "socket.io")]), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_heartbeat_runs_over_polls_and_a_silent_client_times_out() {
    let host = Host::start("fixture-session", &["--socketio-ping-interval", "200ms", "--socketio-ping-timeout", "3s"]);
    let client = Polling::connect(&host).await;
    for _ in 0..3 {
        // Nothing else is sent: each poll ends with the next ping.
        assert_eq!(client.poll().await, ["2"]);
        assert_eq!(client.post("3").await.0, 200);
    }
    assert_eq!(host.metrics().await.value("scalelab_sessions_active", &[("transport", "socket.io")]), Some(1.0));
    // No pong: closed for the ping timeout.
    closed(&host, "error", 1.0).await;
    // The metric counts the close before its log line reaches the reader.
    let logged = host.wait_log(PATIENCE, |l| l.to_string().contains("ping timeout"));
    assert!(logged.is_some(), "no ping timeout logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_polling_is_closed_as_a_slow_consumer() {
    // The tracker sends about 6 KB/s to each client; this one never polls.
    // Its 64 KiB of outbox fill, then the session's next write waits: as
    // the tracker sends from the session's own tick, nothing more is
    // produced and the queue never overflows, so the blocked write's
    // timeout is what ends it.
    let host = Host::start("tracker", &[&QUIET[..], &["--session-write-timeout", "2s"]].concat());
    let client = Polling::open(&host).await;
    assert_eq!(client.post("40").await.0, 200);
    wait_metric(&host, "scalelab_sessions_closed_total", &[("reason", "slow_consumer")], |v| v == 1.0).await;
    let logged = host.logs().into_iter().find(|l| l["message"] == "slow consumer: session closed");
    assert_eq!(logged.expect("a slow consumer warning")["cause"], "stalled");
    wait_metric(&host, "mx_server_active_conn_gauge", &[("app", "mx-server")], |v| v == 0.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upgrade_moves_a_session_onto_a_websocket_losing_nothing() {
    let host = Host::start("fixture-session", &QUIET);
    let client = Polling::connect(&host).await;
    let waiting = tokio::spawn({
        let (http, url) = (client.http.clone(), client.url.clone());
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    });

    // The probe: the waiting poll ends with a noop so that the client can pause.
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket&sid={}", host.traffic, client.sid);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    assert_eq!(tokio::time::timeout(PATIENCE, waiting).await.unwrap().unwrap(), "6");

    // An event POSTed before the upgrade packet: its answer waits for a poll
    // that never comes, and goes out first on the WebSocket.
    assert_eq!(client.post("42[\"before\"]").await.0, 200);
    ws.send(Message::text("5")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "42echo:[\"before\"]");
    ws.send(Message::text("42[\"after\"]")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "42echo:[\"after\"]");

    // Polling is over for this session; it lives on the WebSocket.
    assert_eq!(client.get().await, (400, error_body(1, "Session ID unknown")));
    let metrics = host.metrics().await;
    assert_eq!(metrics.value("scalelab_sessions_active", &[("transport", "socket.io")]), Some(1.0));
    assert_eq!(metrics.value("scalelab_sessions_opened_total", &[("transport", "socket.io")]), Some(1.0));
    ws.close(None).await.unwrap();
    closed(&host, "peer", 1.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_probe_leaves_the_session_polling() {
    let host = Host::start("fixture-session", &QUIET);
    let client = Polling::connect(&host).await;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket&sid={}", host.traffic, client.sid);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::text("42[\"not a probe\"]")).await.unwrap();
    // The server closes that socket...
    let frame = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert!(matches!(frame, Some(Ok(Message::Close(_)))), "{frame:?}");
    // ...and the session goes on polling.
    assert_eq!(client.post("42[\"polling\"]").await.0, 200);
    assert_eq!(client.packets(1).await, ["42echo:[\"polling\"]"]);
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await.expect("a frame in time") {
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}
