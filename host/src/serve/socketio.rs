//! socket.io on the HTTP traffic port: `GET /socket.io/?EIO=4&transport=websocket`
//! upgrades to a WebSocket (tungstenite), the host speaks Engine.IO 4 and
//! Socket.IO 5 (open packet, connect, ping/pong heartbeat, events,
//! disconnect), and each connection becomes a session whose messages are
//! its events: the guest receives and sends the JSON array `["name", args...]`.
//!
//! Only the WebSocket transport is served (`"upgrades":[]`): clients connect
//! with `transports: ['websocket']`. Long-polling requests get socket.io's
//! own `Transport unknown` error.

use crate::protocol::socketio::{self as packet, Packet};
use crate::serve::respond::{Body, full, json, json_error};
use crate::serve::session::{SessionHost, Transport};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The path prefix socket.io clients use.
pub const PATH: &str = "/socket.io/";

/// How long a new client may take to send its connect packet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The Engine.IO heartbeat: the server pings every `ping_interval`; a client
/// that does not answer within `ping_timeout` is disconnected.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

/// Answers a request under [`PATH`]: upgrades it to a socket.io session, or
/// says why not.
pub fn accept(request: Request<Incoming>, host: Arc<SessionHost>, peer: SocketAddr, heartbeat: Heartbeat) -> Response<Body> {
    let query = request.uri().query().unwrap_or("");
    let param = |name: &str| query.split('&').find_map(|p| p.strip_prefix(name)?.strip_prefix('='));
    if param("EIO") != Some("4") {
        return socketio_error(5, "Unsupported protocol version");
    }
    if param("transport") != Some("websocket") {
        return socketio_error(0, "Transport unknown");
    }
    let is_upgrade =
        request.headers().get(UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = request.headers().get(SEC_WEBSOCKET_KEY).filter(|_| is_upgrade) else {
        return socketio_error(3, "Bad request: a WebSocket upgrade is expected");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let Some(slot) = host.admit() else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_session",
            "the host takes no more sessions (--max-sessions), or the guest does not handle sessions",
        );
    };
    let session_host = host.clone();
    session_host.spawn_tracked(async move {
        let upgraded = match hyper::upgrade::on(request).await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "socket.io upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(packet::ws_config())).await;
        match handshake(ws, heartbeat).await {
            Ok(transport) => host.run(transport, peer, slot).await,
            Err(e) => tracing::debug!(%peer, error = %e, "socket.io handshake failed"),
        }
    });
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header"));
    response
}

/// socket.io's own error body (`{"code":0,"message":"Transport unknown"}`), status 400.
fn socketio_error(code: u8, message: &str) -> Response<Body> {
    json(StatusCode::BAD_REQUEST, &serde_json::json!({ "code": code, "message": message }))
}

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// The open packet, then the client's connect and our answer.
async fn handshake(mut ws: Socket, heartbeat: Heartbeat) -> io::Result<SocketIoTransport> {
    let open = packet::open(&packet::new_sid(), heartbeat.ping_interval.as_millis(), heartbeat.ping_timeout.as_millis());
    ws.send(Message::text(open)).await.map_err(io::Error::other)?;
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => match packet::parse(&text) {
                    Ok(Packet::Connect(_)) => return Ok(()),
                    Ok(Packet::Ping) => ws.send(Message::text("3")).await.map_err(io::Error::other)?,
                    Ok(Packet::Pong) => {}
                    Ok(other) => return Err(io::Error::other(format!("expected a connect packet, got {other:?}"))),
                    Err(e) => {
                        let refusal = format!("44{}", serde_json::json!({ "message": e }));
                        let _ = ws.send(Message::text(refusal)).await;
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(_)) => return Err(io::Error::new(io::ErrorKind::InvalidData, "expected a text frame")),
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before connecting")),
            }
        }
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no connect packet"))?;
    connect?;
    let reply = format!("40{}", serde_json::json!({ "sid": packet::new_sid() }));
    ws.send(Message::text(reply)).await.map_err(io::Error::other)?;
    let start = Instant::now() + heartbeat.ping_interval;
    let mut ping = tokio::time::interval_at(start, heartbeat.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Ok(SocketIoTransport { ws, ping, pong_deadline: None, ping_timeout: heartbeat.ping_timeout })
}

/// A connected socket.io client, as a session transport.
pub struct SocketIoTransport {
    ws: Socket,
    /// When the next ping is due.
    ping: tokio::time::Interval,
    /// Set while a ping waits for its pong.
    pong_deadline: Option<Instant>,
    ping_timeout: Duration,
}

/// A WebSocket error as an I/O error, keeping "the peer is gone" recognisable.
fn ws_error(error: tokio_tungstenite::tungstenite::Error) -> io::Error {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Io(e) => e,
        Error::ConnectionClosed | Error::AlreadyClosed => {
            io::Error::new(io::ErrorKind::NotConnected, "the peer closed the connection")
        }
        other => io::Error::other(other),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl Transport for SocketIoTransport {
    const KIND: &'static str = "socket.io";

    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let pong_deadline = self.pong_deadline;
            tokio::select! {
                message = self.ws.next() => match message {
                    Some(Ok(Message::Text(text))) => match packet::parse(&text) {
                        Ok(Packet::Event { data, .. }) => return Ok(Some(Bytes::copy_from_slice(data.as_bytes()))),
                        Ok(Packet::Pong) => self.pong_deadline = None,
                        Ok(Packet::Ping) => self.ws.send(Message::text("3")).await.map_err(ws_error)?,
                        Ok(Packet::Disconnect | Packet::Close) => return Ok(None),
                        Ok(other) => return Err(invalid(format!("unexpected packet {other:?}"))),
                        Err(e) => return Err(invalid(format!("malformed packet: {e}"))),
                    },
                    Some(Ok(Message::Close(_))) | None => return Ok(None),
                    Some(Ok(Message::Binary(_))) => return Err(invalid("binary frames are not supported".into())),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(ws_error(e)),
                },
                _ = self.ping.tick(), if pong_deadline.is_none() => {
                    self.ws.send(Message::text("2")).await.map_err(ws_error)?;
                    self.pong_deadline = Some(Instant::now() + self.ping_timeout);
                }
                _ = tokio::time::sleep_until(pong_deadline.unwrap_or_else(Instant::now)), if pong_deadline.is_some() => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "ping timeout: no pong"));
                }
            }
        }
    }

    async fn send(&mut self, data: Bytes) -> io::Result<()> {
        let text = String::from_utf8_lossy(&data);
        self.ws.feed(Message::text(packet::event(&text))).await.map_err(ws_error)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.ws.flush().await.map_err(ws_error)
    }

    async fn close(mut self, _reason: &str) {
        let _ = self.ws.send(Message::text("41")).await;
        let _ = self.ws.close(None).await;
    }
}
