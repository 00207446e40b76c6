//! socket.io on the HTTP traffic port: Engine.IO 4 and Socket.IO 5 over both
//! of socket.io's transports. Each client becomes a session whose messages
//! are its events: the guest receives and sends the JSON array
//! `["name", args...]` and never learns which transport carried it.
//!
//! - `GET /socket.io/?EIO=4&transport=websocket` upgrades to a WebSocket at
//!   once (clients started with `transports: ['websocket']`): [`websocket`].
//! - `GET /socket.io/?EIO=4&transport=polling` opens an HTTP long-polling
//!   session, as clients with default options start: POSTs carry the
//!   client's packets, GETs wait for the server's ([`polling`]). The open
//!   packet offers `websocket`; the client probes a WebSocket carrying its
//!   `sid` and moves onto it ([`upgrade`]) without the session noticing.
//! - [`transport`]: one socket.io client over either link: the connect,
//!   the heartbeat, events.
//!
//! The layer is ours (over tungstenite and hyper) rather than socketioxide's:
//! the session contract needs the raw event text and one bounded outgoing
//! queue per session in bytes, which socketioxide's callback API (events
//! parsed into values, a buffer counted in packets) would sit beside rather
//! than replace.

mod polling;
mod transport;
mod upgrade;
mod websocket;

use crate::serve::respond::{Body, json};
use crate::serve::session::SessionHost;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The path prefix socket.io clients use.
pub const PATH: &str = "/socket.io/";

/// The Engine.IO heartbeat: the server pings every `ping_interval`; a client
/// that does not answer within `ping_timeout` is disconnected.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

/// Serves every request under [`PATH`].
pub struct SocketIo {
    /// Runs the sessions the clients become.
    host: Arc<SessionHost>,
    heartbeat: Heartbeat,
    /// The long-polling sessions by `sid`, for their GETs, POSTs and upgrade.
    polls: Arc<polling::Registry>,
}

/// The query parameters Engine.IO requests carry.
struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
}

impl<'a> Query<'a> {
    fn parse(query: &'a str) -> Query<'a> {
        let param = |name: &str| query.split('&').find_map(|p| p.strip_prefix(name)?.strip_prefix('='));
        Query { eio: param("EIO"), transport: param("transport"), sid: param("sid") }
    }
}

impl SocketIo {
    pub fn new(host: Arc<SessionHost>, heartbeat: Heartbeat) -> SocketIo {
        SocketIo { host, heartbeat, polls: Arc::new(polling::Registry::default()) }
    }

    /// Answers one request under [`PATH`]: a new session on either
    /// transport, a poll or a POST of a polling session, or its upgrade.
    pub async fn accept(self: Arc<Self>, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let query = Query::parse(request.uri().query().unwrap_or(""));
        if query.eio != Some("4") {
            return error(Code::UnsupportedProtocolVersion);
        }
        match (query.transport, query.sid) {
            (Some("websocket"), None) => websocket::open(request, self.host.clone(), peer, self.heartbeat),
            (Some("polling"), None) if request.method() == Method::GET => {
                polling::open(&self.polls, self.host.clone(), peer, self.heartbeat)
            }
            (Some("polling"), None) => error(Code::BadHandshakeMethod),
            (Some(transport @ ("websocket" | "polling")), Some(sid)) => {
                let Some(poll) = self.polls.get(sid) else {
                    return error(Code::UnknownSid);
                };
                match (transport, request.method()) {
                    ("websocket", _) => upgrade::accept(request, poll, &self.host),
                    (_, &Method::GET) => polling::get(&poll, self.heartbeat).await,
                    (_, &Method::POST) => polling::post(&poll, request).await,
                    _ => error(Code::BadRequest),
                }
            }
            _ => error(Code::UnknownTransport),
        }
    }
}

/// Engine.IO's error codes, as its servers answer a request they refuse.
#[derive(Debug, Clone, Copy)]
enum Code {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    UnsupportedProtocolVersion = 5,
}

impl Code {
    fn message(self) -> &'static str {
        match self {
            Code::UnknownTransport => "Transport unknown",
            Code::UnknownSid => "Session ID unknown",
            Code::BadHandshakeMethod => "Bad handshake method",
            Code::BadRequest => "Bad request",
            Code::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }
}

/// socket.io's own error body (`{"code":0,"message":"Transport unknown"}`), status 400.
fn error(code: Code) -> Response<Body> {
    json(StatusCode::BAD_REQUEST, &serde_json::json!({ "code": code as u8, "message": code.message() }))
}
