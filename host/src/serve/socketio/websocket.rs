//! The WebSocket link: the HTTP upgrade (tungstenite over hyper's upgraded
//! connection), a session opened on it directly, and the link a session
//! reads packets from and writes them to, one text frame each.

use super::transport::{self, Link};
use super::{Code, Heartbeat, error};
use crate::protocol::socketio as packet;
use crate::serve::respond::{Body, full, json_error};
use crate::serve::session::SessionHost;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// A client's WebSocket.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Opens a session on a WebSocket from the first request: the open packet
/// goes over the socket, then the socket.io connect.
pub fn open(request: Request<Incoming>, host: Arc<SessionHost>, peer: SocketAddr, heartbeat: Heartbeat) -> Response<Body> {
    if !is_upgrade(&request) {
        return error(Code::BadRequest);
    }
    let Some(slot) = host.admit() else {
        return no_session();
    };
    let session_host = host.clone();
    upgrade(request, &session_host, move |mut ws| async move {
        let open =
            packet::open(&packet::new_sid(), false, heartbeat.ping_interval.as_millis(), heartbeat.ping_timeout.as_millis());
        if let Err(e) = ws.send(Message::text(open)).await {
            tracing::debug!(%peer, error = %e, "socket.io open packet not sent");
            return;
        }
        match transport::connect(Link::WebSocket(WsLink::new(ws)), heartbeat).await {
            Ok(transport) => host.run(transport, peer, slot).await,
            Err(e) => tracing::debug!(%peer, error = %e, "socket.io handshake failed"),
        }
    })
}

/// The refusal of a session over `--max-sessions` (or on a guest without sessions).
pub fn no_session() -> Response<Body> {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_session",
        "the host takes no more sessions (--max-sessions), or the guest does not handle sessions",
    )
}

/// Whether `request` asks for a WebSocket.
pub fn is_upgrade(request: &Request<Incoming>) -> bool {
    let upgrade =
        request.headers().get(UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade && request.headers().contains_key(SEC_WEBSOCKET_KEY)
}

/// Answers an upgrade request with 101 and runs `then` on the WebSocket
/// in a task shutdown waits for. The caller has checked [`is_upgrade`].
pub fn upgrade<F, Fut>(request: Request<Incoming>, host: &SessionHost, then: F) -> Response<Body>
where
    F: FnOnce(Socket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let key = request.headers().get(SEC_WEBSOCKET_KEY).map(|key| key.as_bytes()).unwrap_or_default();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key);
    host.spawn_tracked(async move {
        let upgraded = match hyper::upgrade::on(request).await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "socket.io upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(packet::ws_config())).await;
        then(ws).await;
    });
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header"));
    response
}

/// A session's WebSocket, with what a long-polling session left to send
/// when it upgraded.
pub struct WsLink {
    ws: Socket,
    /// Packets queued for the client before the upgrade: they go out first.
    backlog: VecDeque<String>,
}

impl WsLink {
    pub fn new(ws: Socket) -> WsLink {
        WsLink { ws, backlog: VecDeque::new() }
    }

    /// Packets to write before any other (what a long-polling session had
    /// queued when it moved to this socket).
    pub fn put_first(&mut self, mut backlog: VecDeque<String>) {
        backlog.append(&mut self.backlog);
        self.backlog = backlog;
    }

    /// The next text frame; `None` once the client has closed. Cancel-safe.
    pub async fn next(&mut self) -> io::Result<Option<Utf8Bytes>> {
        self.write_backlog().await?;
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(Some(text)),
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                Some(Ok(Message::Binary(_))) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "binary frames are not supported"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ws_error(e)),
            }
        }
    }

    /// Queues a frame (written at the next flush).
    pub async fn feed(&mut self, text: String) -> io::Result<()> {
        self.write_backlog().await?;
        self.ws.feed(Message::text(text)).await.map_err(ws_error)
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.write_backlog().await?;
        self.ws.flush().await.map_err(ws_error)
    }

    /// Writes a frame at once.
    pub async fn send(&mut self, text: String) -> io::Result<()> {
        self.feed(text).await?;
        self.flush().await
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Writes out the backlog; a packet leaves it only once it is queued in
    /// the socket, so a cancelled call loses nothing.
    async fn write_backlog(&mut self) -> io::Result<()> {
        if self.backlog.is_empty() {
            return Ok(());
        }
        while let Some(text) = self.backlog.front() {
            self.ws.feed(Message::text(text.clone())).await.map_err(ws_error)?;
            self.backlog.pop_front();
        }
        self.ws.flush().await.map_err(ws_error)
    }
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
