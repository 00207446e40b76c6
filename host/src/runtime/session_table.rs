//! The session table: every open session (TCP or WebSocket), by id, with the
//! channel its connection task writes from.
//!
//! Sending to a session never touches its socket directly: it queues the
//! bytes on the session's channel and the session's own task writes them, so
//! a guest call (or an HTTP handler) reaching thousands of sessions never
//! waits on a slow peer.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

pub type SessionId = u64;

/// What a session's task is asked to do besides reading.
#[derive(Debug)]
pub enum Outgoing {
    /// Write these bytes (one WebSocket message; raw bytes on TCP).
    Data(Bytes),
    /// Close the session, for this reason.
    Close(String),
}

pub struct SessionTable {
    sessions: Mutex<HashMap<SessionId, mpsc::UnboundedSender<Outgoing>>>,
    /// Ids are never reused in the life of the process.
    next_id: AtomicU64,
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

impl Default for SessionTable {
    fn default() -> Self {
        SessionTable { sessions: Mutex::new(HashMap::new()), next_id: AtomicU64::new(1) }
    }
}

impl SessionTable {
    /// Adds a session; its task reads what others send it from the receiver.
    pub fn open(&self) -> (Registration<'_>, mpsc::UnboundedReceiver<Outgoing>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::unbounded_channel();
        self.sessions.lock().unwrap().insert(id, sender);
        (Registration { table: self, id }, receiver)
    }

    pub fn count(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    /// Queues `data` for one session; false when it is not open.
    pub fn send(&self, id: SessionId, data: Bytes) -> bool {
        let sessions = self.sessions.lock().unwrap();
        sessions.get(&id).is_some_and(|s| s.send(Outgoing::Data(data)).is_ok())
    }

    /// Queues `data` for every open session; returns how many.
    pub fn broadcast(&self, data: Bytes) -> usize {
        let sessions = self.sessions.lock().unwrap();
        sessions.values().filter(|s| s.send(Outgoing::Data(data.clone())).is_ok()).count()
    }

    /// Asks a session to close; false when it is not open.
    pub fn close(&self, id: SessionId, reason: String) -> bool {
        let sessions = self.sessions.lock().unwrap();
        sessions.get(&id).is_some_and(|s| s.send(Outgoing::Close(reason)).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_reach_open_sessions_only() {
        let table = SessionTable::default();
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
}
