//! One socket.io client as a session transport, over either link: the
//! client's connect and our answer, the Engine.IO heartbeat (we ping every
//! `ping_interval`; no pong within `ping_timeout` closes the session),
//! events both ways, and the disconnect. A long-polling link becomes a
//! WebSocket link when the client upgrades, inside [`Link::next`].

use super::Heartbeat;
use super::polling::{PollEvent, PollLink};
use super::websocket::WsLink;
use crate::protocol::socketio::{self as packet, Packet};
use crate::serve::session::Transport;
use bytes::Bytes;
use std::io;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// How long a new client may take to send its connect packet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a session's packets travel.
// The WebSocket is the common link and every packet goes through it: kept
// inline rather than boxed.
#[allow(clippy::large_enum_variant)]
pub enum Link {
    WebSocket(WsLink),
    Polling(PollLink),
}

impl Link {
    /// The client's next packet; `None` once it has closed. A polling link
    /// that the client upgrades turns into a WebSocket link here. Cancel-safe.
    async fn next(&mut self) -> io::Result<Option<Utf8Bytes>> {
        loop {
            match self {
                Link::WebSocket(ws) => return ws.next().await,
                Link::Polling(poll) => match poll.next().await? {
                    PollEvent::Packet(text) => return Ok(Some(Utf8Bytes::from(text))),
                    PollEvent::Upgraded(mut ws) => {
                        ws.put_first(poll.take_backlog());
                        // Drops the polling link: the poll ends.
                        *self = Link::WebSocket(*ws);
                    }
                },
            }
        }
    }

    /// Queues a packet for the client (written by `flush`, or taken by its next poll).
    async fn feed(&mut self, text: String) -> io::Result<()> {
        match self {
            Link::WebSocket(ws) => ws.feed(text).await,
            Link::Polling(poll) => poll.feed(text).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::WebSocket(ws) => ws.flush().await,
            Link::Polling(_) => Ok(()),
        }
    }

    /// Sends a control packet now (a ping, a pong, the connect's answer).
    async fn send(&mut self, text: &str) -> io::Result<()> {
        match self {
            Link::WebSocket(ws) => ws.send(text.to_owned()).await,
            Link::Polling(poll) => {
                poll.push(&[text]);
                Ok(())
            }
        }
    }

    /// Tells the client the session is over (`41`, and `1` to a polling
    /// client, which takes them with its next poll) and closes. Nothing is
    /// told to a client that closed first.
    async fn close(self, client_closed: bool) {
        match self {
            Link::WebSocket(mut ws) => {
                if !client_closed {
                    let _ = ws.send("41".to_owned()).await;
                }
                ws.close().await;
            }
            Link::Polling(poll) if !client_closed => {
                // Both at once: a GET waiting now takes the two together.
                poll.push(&["41", "1"]);
                poll.drained().await;
            }
            Link::Polling(_) => {}
        }
    }
}

/// Waits for the client's connect (answering its pings meanwhile) and
/// answers it: the session can start.
pub async fn connect(mut link: Link, heartbeat: Heartbeat) -> io::Result<SocketIoTransport> {
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            let text =
                link.next().await?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed before connecting"))?;
            match packet::parse(text.as_str()) {
                Ok(Packet::Connect(_)) => return Ok(()),
                Ok(Packet::Ping) => link.send("3").await?,
                Ok(Packet::Pong | Packet::Noop) => {}
                Ok(other) => return Err(invalid(format!("expected a connect packet, got {other:?}"))),
                Err(e) => {
                    let refusal = format!("44{}", serde_json::json!({ "message": e }));
                    let _ = link.send(&refusal).await;
                    return Err(invalid(e));
                }
            }
        }
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no connect packet"))?;
    connected?;
    let reply = format!("40{}", serde_json::json!({ "sid": packet::new_sid() }));
    link.send(&reply).await?;
    let start = Instant::now() + heartbeat.ping_interval;
    let mut ping = tokio::time::interval_at(start, heartbeat.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Ok(SocketIoTransport { link, ping, pong_deadline: None, ping_timeout: heartbeat.ping_timeout, client_closed: false })
}

/// A connected socket.io client, as a session transport.
pub struct SocketIoTransport {
    link: Link,
    /// When the next ping is due.
    ping: tokio::time::Interval,
    /// Set while a ping waits for its pong.
    pong_deadline: Option<Instant>,
    ping_timeout: Duration,
    /// The client disconnected or closed: it is told nothing more.
    client_closed: bool,
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
                text = self.link.next() => {
                    let Some(text) = text? else {
                        self.client_closed = true;
                        return Ok(None);
                    };
                    match packet::parse(text.as_str()) {
                        // The event's JSON, shared with the frame (no copy).
                        Ok(Packet::Event { data, .. }) => return Ok(Some(Bytes::from(text.clone()).slice_ref(data.as_bytes()))),
                        Ok(Packet::Pong) => self.pong_deadline = None,
                        Ok(Packet::Ping) => self.link.send("3").await?,
                        Ok(Packet::Noop) => {}
                        Ok(Packet::Disconnect | Packet::Close) => {
                            self.client_closed = true;
                            return Ok(None);
                        }
                        Ok(other) => return Err(invalid(format!("unexpected packet {other:?}"))),
                        Err(e) => return Err(invalid(format!("malformed packet: {e}"))),
                    }
                }
                _ = self.ping.tick(), if pong_deadline.is_none() => {
                    self.link.send("2").await?;
                    self.pong_deadline = Some(Instant::now() + self.ping_timeout);
                }
                _ = tokio::time::sleep_until(pong_deadline.unwrap_or_else(Instant::now)), if pong_deadline.is_some() => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "ping timeout: no pong"));
                }
            }
        }
    }

    async fn send(&mut self, data: Bytes) -> io::Result<()> {
        self.link.feed(packet::event_from_bytes(&data)).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.link.flush().await
    }

    async fn close(self, _reason: &str) {
        self.link.close(self.client_closed).await;
    }
}
