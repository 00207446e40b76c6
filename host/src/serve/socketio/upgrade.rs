//! The move of a long-polling session onto a WebSocket: the client opens a
//! WebSocket with its `sid` and sends `2probe`; we answer `3probe` and end
//! its waiting poll with a noop so that it can pause polling; it sends `5`
//! (upgrade) on the WebSocket, which then goes to the session task. What
//! the session had queued for the next poll is written on the WebSocket
//! first, so nothing is lost or reordered.

use super::polling::Poll;
use super::websocket::{self, WsLink};
use super::{Code, error};
use crate::protocol::socketio::{self as packet, Packet};
use crate::serve::respond::Body;
use crate::serve::session::SessionHost;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take from opening the WebSocket to sending `5`
/// (Engine.IO's default `upgradeTimeout`).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers a WebSocket request carrying the `sid` of a polling session.
pub fn accept(request: Request<Incoming>, poll: Arc<Poll>, host: &SessionHost) -> Response<Body> {
    if !websocket::is_upgrade(&request) || !poll.start_probe() {
        return error(Code::BadRequest);
    }
    websocket::upgrade(request, host, move |ws| async move {
        let mut ws = WsLink::new(ws);
        let probed = tokio::select! {
            probed = tokio::time::timeout(PROBE_TIMEOUT, probe(&mut ws, &poll)) => {
                probed.unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no upgrade packet in time")))
            }
            _ = poll.ended() => Err(io::Error::new(io::ErrorKind::NotConnected, "the session ended")),
        };
        match probed {
            Ok(()) => {
                if poll.upgrade_to(ws) {
                    tracing::debug!("socket.io session upgraded to a WebSocket");
                } else {
                    tracing::debug!("socket.io session ended during its upgrade");
                }
            }
            Err(e) => {
                poll.upgrade_failed();
                tracing::debug!(error = %e, "socket.io upgrade failed; the session goes on polling");
                ws.close().await;
            }
        }
    })
}

/// `2probe`, `3probe`, the poll's noop, then `5`.
async fn probe(ws: &mut WsLink, poll: &Poll) -> io::Result<()> {
    expect(ws, Packet::Probe).await?;
    ws.send("3probe".to_string()).await?;
    poll.upgrading();
    expect(ws, Packet::Upgrade).await
}

async fn expect(ws: &mut WsLink, wanted: Packet<'static>) -> io::Result<()> {
    let text = ws.next().await?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed while probing"))?;
    match packet::parse(text.as_str()) {
        Ok(packet) if packet == wanted => Ok(()),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, format!("expected {wanted:?} while probing, got {text:?}"))),
    }
}
