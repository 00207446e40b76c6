//! The session table: every open session (TCP or WebSocket), by id, with the
//! channel its connection task writes from.
//!
//! Sending to a session never touches its socket directly: it queues the
//! bytes on the session's channel and the session's own task writes them, so
//! a guest call (or an HTTP handler) reaching thousands of sessions never
//! waits on a slow peer.
//!
//! A peer that stops reading must not make the host's memory grow without
//! bound: each session's queue holds at most `--session-max-outgoing` bytes.
//! Data beyond that is refused, and the session's task is told
//! ([`Mailbox::overflow`]) so that it closes the session as a slow consumer.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc};

pub type SessionId = u64;

/// What a session's task is asked to do besides reading.
#[derive(Debug)]
pub enum Outgoing {
    /// Write these bytes (one WebSocket message; raw bytes on TCP).
    Data(Bytes),
    /// Close the session, for this reason.
    Close(String),
    /// Nothing to write: look at the host's signals (shutdown, a swap, an
    /// overflow). Sent by [`SessionTable::wake_all`] and on a first refusal,
    /// so a session reads those signals from its own mailbox rather than
    /// polling process-wide channels at every turn of its loop.
    Wake,
}

pub struct SessionTable {
    sessions: Mutex<HashMap<SessionId, Entry>>,
    /// Ids are never reused in the life of the process.
    next_id: AtomicU64,
    /// Most bytes queued for one session (`--session-max-outgoing`).
    max_outgoing: usize,
}

/// One open session, as senders reach it.
struct Entry {
    sender: mpsc::UnboundedSender<Outgoing>,
    backlog: Arc<Backlog>,
}

/// What one session's queue holds, shared by its senders and its task.
#[derive(Default)]
struct Backlog {
    /// Bytes queued and not yet taken by the session's task.
    bytes: AtomicUsize,
    /// Signalled when data was refused for want of room: what a session
    /// blocked on a write waits for.
    overflowed: Notify,
    /// Set when data was refused for want of room: what a session's loop
    /// reads at every turn (an atomic load, not a lock).
    refused: AtomicBool,
}

/// A session's end of its queue: what others sent it, in order.
pub struct Mailbox {
    receiver: mpsc::UnboundedReceiver<Outgoing>,
    backlog: Arc<Backlog>,
}

impl Mailbox {
    /// The next message; `None` once the session left the table.
    pub async fn recv(&mut self) -> Option<Outgoing> {
        let item = self.receiver.recv().await;
        self.taken(item)
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        let item = self.receiver.try_recv().ok();
        self.taken(item)
    }

    fn taken(&self, item: Option<Outgoing>) -> Option<Outgoing> {
        if let Some(Outgoing::Data(data)) = &item {
            self.backlog.bytes.fetch_sub(data.len(), Ordering::Relaxed);
        }
        item
    }

    /// The queue's overflow signal, to wait on while reading the mailbox.
    pub fn overflow(&self) -> Overflow {
        Overflow(self.backlog.clone())
    }
}

/// Tells a session's task that its queue overflowed.
pub struct Overflow(Arc<Backlog>);

impl Overflow {
    /// Completes once data for this session was refused because its queue
    /// was full (also when that happened before the call).
    pub async fn wait(&self) {
        self.0.overflowed.notified().await;
    }

    /// Whether data for this session was ever refused for want of room.
    pub fn happened(&self) -> bool {
        self.0.refused.load(Ordering::Acquire)
    }

    /// Bytes waiting in the queue.
    pub fn queued(&self) -> usize {
        self.0.bytes.load(Ordering::Relaxed)
    }
}

impl Entry {
    /// Queues `data` if the session's backlog has room for it.
    fn queue(&self, data: Bytes, max: usize) -> bool {
        let len = data.len();
        if self.backlog.bytes.fetch_add(len, Ordering::Relaxed) + len > max {
            self.backlog.bytes.fetch_sub(len, Ordering::Relaxed);
            // A stored permit: the task sees it even if it is not waiting now.
            self.backlog.overflowed.notify_one();
            // The first refusal wakes the session's loop, which may be idle
            // (one message larger than the whole queue leaves nothing queued).
            if !self.backlog.refused.swap(true, Ordering::AcqRel) {
                let _ = self.sender.send(Outgoing::Wake);
            }
            return false;
        }
        if self.sender.send(Outgoing::Data(data)).is_err() {
            self.backlog.bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// Removes its session from the table when dropped, however the task ends.
pub struct Registration<'a> {
    table: &'a SessionTable,
    pub id: SessionId,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.table.sessions.lock().unwrap().remove(&self.id);
    }
}

impl SessionTable {
    /// A table whose sessions each queue at most `max_outgoing` bytes.
    pub fn new(max_outgoing: usize) -> SessionTable {
        SessionTable { sessions: Mutex::new(HashMap::new()), next_id: AtomicU64::new(1), max_outgoing }
    }

    /// Adds a session; its task reads what others send it from the mailbox.
    pub fn open(&self) -> (Registration<'_>, Mailbox) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog::default());
        self.sessions.lock().unwrap().insert(id, Entry { sender, backlog: backlog.clone() });
        (Registration { table: self, id }, Mailbox { receiver, backlog })
    }

    /// The most bytes one session may have queued.
    pub fn max_outgoing(&self) -> usize {
        self.max_outgoing
    }

    pub fn count(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    /// Queues `data` for one session; false when it is not open or its
    /// queue is full (the session is then closed as a slow consumer).
    pub fn send(&self, id: SessionId, data: Bytes) -> bool {
        let sessions = self.sessions.lock().unwrap();
        sessions.get(&id).is_some_and(|s| s.queue(data, self.max_outgoing))
    }

    /// Queues `data` for every open session with room for it; returns how many.
    pub fn broadcast(&self, data: Bytes) -> usize {
        let sessions = self.sessions.lock().unwrap();
        sessions.values().filter(|s| s.queue(data.clone(), self.max_outgoing)).count()
    }

    /// Wakes every open session to look at the host's signals (after a
    /// shutdown or a swap). Not counted in the backlog: never refused.
    pub fn wake_all(&self) {
        let sessions = self.sessions.lock().unwrap();
        for session in sessions.values() {
            let _ = session.sender.send(Outgoing::Wake);
        }
    }

    /// Asks a session to close; false when it is not open. Not counted in
    /// the backlog: a close always gets through.
    pub fn close(&self, id: SessionId, reason: String) -> bool {
        let sessions = self.sessions.lock().unwrap();
        sessions.get(&id).is_some_and(|s| s.sender.send(Outgoing::Close(reason)).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_reach_open_sessions_only() {
        let table = SessionTable::new(1 << 20);
        let (a, mut rx_a) = table.open();
        let (b, mut rx_b) = table.open();
        assert_ne!(a.id, b.id);
        assert_eq!(table.count(), 2);
        assert!(table.send(a.id, Bytes::from_static(b"one")));
        assert_eq!(table.broadcast(Bytes::from_static(b"all")), 2);
        assert!(matches!(rx_a.try_recv().unwrap(), Outgoing::Data(d) if d == "one"));
        assert!(matches!(rx_a.try_recv().unwrap(), Outgoing::Data(d) if d == "all"));
        assert!(matches!(rx_b.try_recv().unwrap(), Outgoing::Data(d) if d == "all"));
        let gone = b.id;
        drop(b);
        assert_eq!(table.count(), 1);
        assert!(!table.send(gone, Bytes::new()));
        assert!(table.close(a.id, "bye".into()));
        assert!(matches!(rx_a.try_recv().unwrap(), Outgoing::Close(r) if r == "bye"));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_data_and_tells_its_session() {
        let table = SessionTable::new(10);
        let (a, mut rx_a) = table.open();
        let (_b, mut rx_b) = table.open();
        let overflow = rx_a.overflow();
        assert!(table.send(a.id, Bytes::from_static(b"123456")));
        assert_eq!(overflow.queued(), 6);
        // a has room for 4 more bytes, b for 10: the broadcast reaches b only.
        assert_eq!(table.broadcast(Bytes::from_static(b"abcdefg")), 1);
        overflow.wait().await;
        assert!(overflow.happened());
        assert_eq!(overflow.queued(), 6, "refused data is not counted");
        // A second refusal adds no second wake-up.
        assert!(!table.send(a.id, Bytes::from_static(b"abcdefg")));
        assert!(matches!(rx_a.try_recv().unwrap(), Outgoing::Data(d) if d == "123456"));
        assert!(matches!(rx_a.try_recv().unwrap(), Outgoing::Wake), "the first refusal wakes the session");
        assert_eq!(overflow.queued(), 0, "taken data frees its room");
        assert!(rx_a.try_recv().is_none());
        assert!(matches!(rx_b.try_recv().unwrap(), Outgoing::Data(d) if d == "abcdefg"));
        assert!(table.send(a.id, Bytes::from_static(b"0123456789")), "room again");
        assert!(table.close(a.id, "bye".into()), "a close is never refused");
    }

    #[tokio::test]
    async fn one_message_larger_than_the_queue_wakes_an_idle_session() {
        let table = SessionTable::new(4);
        let (a, mut rx_a) = table.open();
        let overflow = rx_a.overflow();
        assert!(!overflow.happened());
        assert!(!table.send(a.id, Bytes::from_static(b"too long")));
        assert!(overflow.happened());
        assert!(matches!(rx_a.recv().await, Some(Outgoing::Wake)), "nothing was queued, yet the task wakes");
        assert_eq!(overflow.queued(), 0);
    }

    #[test]
    fn wake_all_reaches_every_open_session_and_costs_no_room() {
        let table = SessionTable::new(1);
        let (_a, mut rx_a) = table.open();
        let (_b, mut rx_b) = table.open();
        table.wake_all();
        for rx in [&mut rx_a, &mut rx_b] {
            assert!(matches!(rx.try_recv(), Some(Outgoing::Wake)));
            assert!(rx.try_recv().is_none());
            assert!(!rx.overflow().happened(), "a wake-up is not an overflow");
        }
    }
}
