//! The `tracker` guest over socket.io end to end: unmodified official clients
//! (JavaScript and Python), and clients that misbehave.

mod support;

use futures_util::{SinkExt, StreamExt};
use std::process::Command;
use std::time::Duration;
use support::{Host, Metrics, clients_dir, wait_metric};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.ok()? {
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

/// Reads until the server ends the connection; true if it did within 10 s.
async fn closed_by_server(ws: &mut Ws) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "41" => return true,
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return true,
            Ok(Some(Ok(_))) => {}
            Err(_) => return false,
        }
    }
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

#[tokio::test(flavor = "multi_thread")]
async fn the_official_javascript_and_python_clients_connect_receive_events_and_disconnect() {
    let host = Host::start("tracker", &[]);
    let clients = clients_dir();
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let url = host.url("");

    let mut node = Command::new("node");
    node.arg(tests.join("socketio-client.js")).args([&url, "1500"]).env("NODE_PATH", clients.join("node_modules"));
    let mut python = Command::new("python3");
    python.arg(tests.join("socketio_client.py")).args([&url, "1.5"]).env("PYTHONPATH", clients.join("python"));
    let (node, python) = tokio::join!(
        tokio::task::spawn_blocking(move || run_client(node)),
        tokio::task::spawn_blocking(move || run_client(python)),
    );
    for (who, counts) in [("socket.io-client", node.unwrap()), ("python-socketio", python.unwrap())] {
        assert_eq!(counts["connected"], true, "{who}: {counts}");
        assert!(counts["clock"].as_u64().unwrap() >= 50, "{who}: {counts}");
        assert!(counts["value"].as_u64().unwrap() >= 50, "{who}: {counts}");
    }

    // Both disconnected cleanly.
    wait_metric(&host, "mx_server_active_conn_gauge", &[("app", "mx-server")], |v| v == 0.0).await;
    let metrics = host.metrics().await;
    assert_eq!(metrics.value("mx_server_handled_conn_total", &[("app", "mx-server")]), Some(2.0));
    assert_eq!(metrics.value("scalelab_sessions_closed_total", &[("reason", "peer")]), Some(2.0));
    assert_eq!(metrics.value("scalelab_sessions_closed_total", &[("reason", "error")]), Some(0.0));
    assert!(metrics.value("mx_server_processed_fps_total", &[("app", "mx-server")]).unwrap() >= 100.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn misbehaving_clients_are_closed_without_affecting_others() {
    let host = Host::start("tracker", &["--socketio-ping-interval", "300ms", "--socketio-ping-timeout", "300ms"]);

    // A well-behaved client that answers pings and counts clock events.
    let mut good = connect(&host).await;
    let good_task = tokio::spawn(async move {
        let mut clock = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            match next_text(&mut good).await.as_deref() {
                Some("2") => good.send(Message::text("3")).await.unwrap(),
                Some(t) if t.starts_with("42[\"clock\"") => clock += 1,
                Some(_) => {}
                None => return (clock, false),
            }
        }
        good.send(Message::text("41")).await.unwrap();
        (clock, true)
    });

    // An event that is not ["name", ...].
    let mut malformed = connect(&host).await;
    malformed.send(Message::text("42{\"not\":\"an array\"}")).await.unwrap();
    assert!(closed_by_server(&mut malformed).await, "malformed event");

    // A binary frame.
    let mut binary = connect(&host).await;
    binary.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert!(closed_by_server(&mut binary).await, "binary frame");

    // A client that stops answering pings (it still reads).
    let mut silent = connect(&host).await;
    let started = std::time::Instant::now();
    assert!(closed_by_server(&mut silent).await, "ping timeout");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after the ping timeout, not later");

    // An abrupt TCP reset.
    let reset = connect(&host).await;
    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = reset.get_ref() {
        tcp.set_zero_linger().unwrap();
    }
    drop(reset);

    wait_metric(&host, "mx_server_active_conn_gauge", &[("app", "mx-server")], |v| v == 1.0).await;
    let (clock, stayed) = good_task.await.unwrap();
    assert!(stayed, "the good client stayed connected");
    assert!(clock >= 200, "the good client kept getting events: {clock} in 4 s");
    wait_metric(&host, "mx_server_active_conn_gauge", &[("app", "mx-server")], |v| v == 0.0).await;
    assert_eq!(value(&host, "mx_server_handled_conn_total", &[("app", "mx-server")]).await, 5.0);
    assert_eq!(value(&host, "scalelab_sessions_closed_total", &[("reason", "error")]).await, 3.0);
    assert_eq!(value(&host, "scalelab_sessions_closed_total", &[("reason", "peer")]).await, 2.0);
    assert_eq!(value(&host, "scalelab_sessions_active", &[("transport", "socket.io")]).await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn polling_and_old_protocols_are_refused_and_ready_answers() {
    let host = Host::start("tracker", &[]);
    let response = reqwest::get(host.url("/socket.io/?EIO=4&transport=polling")).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.text().await.unwrap(), "{\"code\":0,\"message\":\"Transport unknown\"}");
    let response = reqwest::get(host.url("/socket.io/?EIO=3&transport=websocket")).await.unwrap();
    assert_eq!(response.status(), 400);
    let response = reqwest::get(host.url("/ready")).await.unwrap();
    assert_eq!((response.status().as_u16(), response.text().await.unwrap()), (200, "OK".to_string()));
    let metrics: Metrics = host.metrics().await;
    assert_eq!(metrics.value("mx_server_active_conn_gauge", &[("app", "mx-server")]), Some(0.0));
}
