//! The HTTP long-polling link, as default socket.io clients start: the
//! handshake GET answers the open packet (offering the WebSocket upgrade),
//! each POST carries packets from the client, and each GET waits for packets
//! to the client and takes them all, joined into one payload.
//!
//! The session task and the HTTP requests meet in a [`Poll`]: POSTs push
//! the client's packets into a bounded channel the session reads (a POST
//! waits while the session is behind), the session pushes packets into an
//! outbox a GET empties. The outbox holds at most [`OUTBOX_BYTES`]: past it
//! the session's writes wait, so a client that stops polling backs up into
//! the session's own queue and is closed as a slow consumer there, as on a
//! WebSocket. One GET at a time: a second while one waits is a protocol
//! error that closes the session, as Engine.IO servers do.

use super::transport::{self, Link};
use super::websocket::{WsLink, no_session};
use super::{Code, Heartbeat, error};
use crate::protocol::socketio as packet;
use crate::serve::respond::{Body, with_type};
use crate::serve::session::SessionHost;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How many bytes of packets may wait for the client's next GET before the
/// session's writes wait (a socket buffer's worth).
const OUTBOX_BYTES: usize = 64 * 1024;

/// How many packets from POSTs may wait for the session before a POST waits.
const INBOX_PACKETS: usize = 256;

/// How long a POST's body may take to arrive.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// The long-polling sessions by `sid`.
#[derive(Default)]
pub struct Registry {
    polls: Mutex<HashMap<String, Arc<Poll>>>,
}

impl Registry {
    pub fn get(&self, sid: &str) -> Option<Arc<Poll>> {
        self.polls.lock().expect("poll registry").get(sid).cloned()
    }

    fn insert(&self, poll: Arc<Poll>) {
        self.polls.lock().expect("poll registry").insert(poll.sid.clone(), poll);
    }

    fn remove(&self, sid: &str) {
        self.polls.lock().expect("poll registry").remove(sid);
    }
}

/// Where a long-polling session's requests meet its session task.
pub struct Poll {
    sid: String,
    outbox: Mutex<Outbox>,
    /// Wakes the waiting GET: packets, the upgrade's noop, the end.
    readable: Notify,
    /// Wakes the session when a GET has taken packets from a full outbox.
    writable: Notify,
    /// Set while a GET waits: a second one at once breaks the session.
    polling: AtomicBool,
    /// The client's packets, from POSTs to the session.
    inbox: mpsc::Sender<String>,
    /// Why the client broke the protocol (overlapping GETs, a POST too
    /// large); `broken` is cancelled when it is set.
    failure: Mutex<Option<String>>,
    broken: CancellationToken,
    /// The probed WebSocket goes to the session through this, once.
    upgrade: Mutex<Option<oneshot::Sender<Box<WsLink>>>>,
    /// Set while a WebSocket is being probed: one probe at a time.
    probing: AtomicBool,
    /// Cancelled when the session has left this link (closed or upgraded):
    /// a waiting GET returns at once.
    ended: CancellationToken,
    /// Set when the session moved to a WebSocket, so that a GET still
    /// waiting gets a noop, not a close.
    upgraded: AtomicBool,
}

/// Packets waiting for the client's next GET.
#[derive(Default)]
struct Outbox {
    packets: VecDeque<String>,
    bytes: usize,
    /// A probe succeeded: the waiting GET returns (with a noop if nothing
    /// else) so that the client can pause polling and upgrade.
    noop: bool,
}

impl Outbox {
    fn push(&mut self, text: String) {
        self.bytes += text.len();
        self.packets.push_back(text);
    }
}

impl Poll {
    /// Marks the session broken by the client: its link fails with `why`.
    fn fail(&self, why: String) {
        self.failure.lock().expect("poll failure").get_or_insert(why);
        self.broken.cancel();
    }

    /// Whether a WebSocket may be probed now: the session is still polling
    /// and no other probe runs.
    pub(super) fn start_probe(&self) -> bool {
        !self.ended.is_cancelled() && !self.probing.swap(true, Ordering::AcqRel)
    }

    /// A probe succeeded: a waiting GET returns, the client pauses polling.
    pub(super) fn upgrading(&self) {
        self.outbox.lock().expect("outbox").noop = true;
        self.readable.notify_one();
    }

    /// The probe failed: polling goes on as before.
    pub(super) fn upgrade_failed(&self) {
        self.outbox.lock().expect("outbox").noop = false;
        self.probing.store(false, Ordering::Release);
    }

    /// Hands the probed WebSocket to the session; false if the session has
    /// gone (or already upgraded).
    pub(super) fn upgrade_to(&self, ws: WsLink) -> bool {
        let sender = self.upgrade.lock().expect("poll upgrade").take();
        sender.is_some_and(|sender| sender.send(Box::new(ws)).is_ok())
    }

    /// Resolves when the session has left this link.
    pub(super) async fn ended(&self) {
        self.ended.cancelled().await
    }
}

/// Opens a long-polling session from the handshake GET: the open packet is
/// the answer; the session task waits for the client's connect.
pub fn open(registry: &Arc<Registry>, host: Arc<SessionHost>, peer: SocketAddr, heartbeat: Heartbeat) -> Response<Body> {
    let Some(slot) = host.admit() else {
        return no_session();
    };
    let sid = packet::new_sid();
    let (inbox, incoming) = mpsc::channel(INBOX_PACKETS);
    let (upgrade, upgraded) = oneshot::channel();
    let poll = Arc::new(Poll {
        sid: sid.clone(),
        outbox: Mutex::default(),
        readable: Notify::new(),
        writable: Notify::new(),
        polling: AtomicBool::new(false),
        inbox,
        failure: Mutex::new(None),
        broken: CancellationToken::new(),
        upgrade: Mutex::new(Some(upgrade)),
        probing: AtomicBool::new(false),
        ended: CancellationToken::new(),
        upgraded: AtomicBool::new(false),
    });
    registry.insert(poll.clone());
    let link = PollLink { poll, registry: registry.clone(), incoming, upgraded: Some(upgraded) };
    let session_host = host.clone();
    session_host.spawn_tracked(async move {
        match transport::connect(Link::Polling(link), heartbeat).await {
            Ok(transport) => host.run(transport, peer, slot).await,
            Err(e) => tracing::debug!(%peer, error = %e, "socket.io handshake (polling) failed"),
        }
    });
    let open = packet::open(&sid, true, heartbeat.ping_interval.as_millis(), heartbeat.ping_timeout.as_millis());
    payload_response(open)
}

/// A poll: waits for packets to the client and answers them all. It waits
/// at most a heartbeat (the server's ping comes sooner), then answers a noop.
pub async fn get(poll: &Poll, heartbeat: Heartbeat) -> Response<Body> {
    if poll.polling.swap(true, Ordering::AcqRel) {
        poll.fail("overlapping polls: a GET came while another waited".into());
        return error(Code::BadRequest);
    }
    let _polling = Polling(poll);
    let limit = tokio::time::sleep(heartbeat.ping_interval + heartbeat.ping_timeout);
    tokio::pin!(limit);
    loop {
        if let Some(payload) = take(poll) {
            return payload_response(payload);
        }
        if poll.ended.is_cancelled() {
            let last = if poll.upgraded.load(Ordering::Acquire) { "6" } else { "1" };
            return payload_response(last.to_string());
        }
        tokio::select! {
            _ = poll.readable.notified() => {}
            _ = poll.ended.cancelled() => {}
            _ = &mut limit => return payload_response("6".to_string()),
        }
    }
}

/// Everything in the outbox as one payload (or the upgrade's noop).
fn take(poll: &Poll) -> Option<String> {
    let mut outbox = poll.outbox.lock().expect("outbox");
    let noop = std::mem::take(&mut outbox.noop);
    if outbox.packets.is_empty() {
        return noop.then(|| "6".to_string());
    }
    let packets = std::mem::take(&mut outbox.packets);
    outbox.bytes = 0;
    drop(outbox);
    poll.writable.notify_one();
    Some(packet::payload(packets.iter().map(String::as_str)))
}

/// The client's packets: each goes to the session in order; `ok` once all are queued.
pub async fn post(poll: &Poll, request: Request<Incoming>) -> Response<Body> {
    let body = match tokio::time::timeout(POST_TIMEOUT, Limited::new(request.into_body(), packet::MAX_PAYLOAD).collect()).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) => {
            poll.fail(format!("a POST failed: {e}"));
            return error(Code::BadRequest);
        }
        Err(_) => {
            poll.fail(format!("a POST's body took more than {POST_TIMEOUT:?}"));
            return error(Code::BadRequest);
        }
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        poll.fail("a POST that is not UTF-8 (binary payloads are not supported)".into());
        return error(Code::BadRequest);
    };
    for packet in packet::payload_packets(text) {
        if poll.inbox.send(packet.to_string()).await.is_err() {
            return error(Code::UnknownSid);
        }
    }
    with_type(StatusCode::OK, "text/html", Bytes::from_static(b"ok"))
}

fn payload_response(payload: String) -> Response<Body> {
    with_type(StatusCode::OK, "text/plain; charset=UTF-8", Bytes::from(payload))
}

/// A GET waiting on a poll; the next may come once it is dropped, however
/// the request ends (a client going away included).
struct Polling<'a>(&'a Poll);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.0.polling.store(false, Ordering::Release);
    }
}

/// What the session reads from a long-polling link.
pub enum PollEvent {
    Packet(String),
    /// The client moved to this WebSocket.
    Upgraded(Box<WsLink>),
}

/// The session's side of a [`Poll`]. Dropping it ends the poll: the
/// session closed or moved to a WebSocket.
pub struct PollLink {
    poll: Arc<Poll>,
    registry: Arc<Registry>,
    incoming: mpsc::Receiver<String>,
    /// `None` once the upgrade channel has closed.
    upgraded: Option<oneshot::Receiver<Box<WsLink>>>,
}

impl PollLink {
    /// The next packet, or the upgrade; the client's packets sent before it
    /// upgraded come first. Cancel-safe.
    pub async fn next(&mut self) -> io::Result<PollEvent> {
        loop {
            tokio::select! {
                biased;
                packet = self.incoming.recv() => {
                    let packet = packet.expect("the poll holds the sender");
                    return Ok(PollEvent::Packet(packet));
                }
                _ = self.poll.broken.cancelled() => {
                    let why = self.poll.failure.lock().expect("poll failure").clone().unwrap_or_default();
                    return Err(io::Error::new(io::ErrorKind::InvalidData, why));
                }
                ws = async { self.upgraded.as_mut().expect("guarded").await }, if self.upgraded.is_some() => {
                    self.upgraded = None;
                    if let Ok(ws) = ws {
                        return Ok(PollEvent::Upgraded(ws));
                    }
                }
            }
        }
    }

    /// Queues a packet for the client's next GET, waiting while the outbox is full.
    pub async fn feed(&mut self, text: String) -> io::Result<()> {
        loop {
            let notified = self.poll.writable.notified();
            {
                let mut outbox = self.poll.outbox.lock().expect("outbox");
                if outbox.bytes < OUTBOX_BYTES {
                    outbox.push(text);
                    drop(outbox);
                    self.poll.readable.notify_one();
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// Queues control packets (a ping, the disconnect and close) whether
    /// the outbox is full or not, under one lock: a waiting GET takes all
    /// of them or none.
    pub fn push(&self, packets: &[&str]) {
        let mut outbox = self.poll.outbox.lock().expect("outbox");
        for text in packets {
            outbox.push((*text).to_owned());
        }
        drop(outbox);
        self.poll.readable.notify_one();
    }

    /// Waits until a GET has taken everything queued (the close packets).
    pub async fn drained(&self) {
        loop {
            let notified = self.poll.writable.notified();
            if self.poll.outbox.lock().expect("outbox").packets.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// The packets no GET took, for the WebSocket the session moves to
    /// (a GET still waiting will get a noop).
    pub fn take_backlog(&mut self) -> VecDeque<String> {
        self.poll.upgraded.store(true, Ordering::Release);
        let mut outbox = self.poll.outbox.lock().expect("outbox");
        outbox.bytes = 0;
        std::mem::take(&mut outbox.packets)
    }
}

impl Drop for PollLink {
    fn drop(&mut self) {
        self.registry.remove(&self.poll.sid);
        self.poll.ended.cancel();
    }
}
