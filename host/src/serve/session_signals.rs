//! What a session's loop must notice besides its own traffic: the host
//! shutting down and the guest being swapped. One task ([`relay`]) watches
//! the process-wide channels, turns each change into flags that every
//! session reads with an atomic load, then wakes every session through its
//! own mailbox ([`SessionTable::wake_all`]).
//!
//! Why sessions do not watch the channels themselves: a `watch` receiver's
//! `changed()` takes the lock of the channel's shared `Notify` when it is
//! polled and again when it is dropped, and a session's loop turns over at
//! every message and every per-session tick (100 a second for each tracker
//! client). With hundreds of sessions that was two process-wide locks,
//! contended between the worker threads, taken tens of thousands of times a
//! second for signals that come a few times in a run.
//!
//! The order that makes the flags safe: the relay sets a flag, then wakes
//! the sessions in the table; a session enters the table, then reads the
//! flags and the active guest. The table's lock orders the two, so a session
//! either is woken or sees the change when it starts.

use crate::runtime::session_table::SessionTable;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::watch;

/// The host's signals as sessions read them.
#[derive(Debug, Default)]
pub struct Signals {
    /// Set once, when the host starts shutting down: every session closes.
    shutdown: AtomicBool,
    /// Counts swaps the relay has seen: a session that sees it change looks
    /// whether its guest is still the active one.
    swaps: AtomicU64,
}

impl Signals {
    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Acquire)
    }
}

/// Relays shutdown and swaps to `signals` and wakes every session in
/// `sessions` after each, until shutdown (or until both channels are gone).
pub async fn relay(
    signals: &Signals,
    sessions: &SessionTable,
    mut shutdown: watch::Receiver<bool>,
    mut swaps: watch::Receiver<u64>,
) {
    let (mut shutdown_open, mut swaps_open) = (true, true);
    loop {
        // Read before waiting: a shutdown sent before this task ran counts.
        if *shutdown.borrow_and_update() {
            signals.shutdown.store(true, Ordering::Release);
            sessions.wake_all();
            return;
        }
        if !shutdown_open && !swaps_open {
            return;
        }
        tokio::select! {
            changed = shutdown.changed(), if shutdown_open => shutdown_open = changed.is_ok(),
            changed = swaps.changed(), if swaps_open => {
                swaps_open = changed.is_ok();
                if swaps_open {
                    signals.swaps.fetch_add(1, Ordering::AcqRel);
                    sessions.wake_all();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::session_table::Outgoing;
    use std::sync::Arc;

    #[tokio::test]
    async fn swaps_and_shutdown_set_the_flags_and_wake_every_session() {
        let signals = Arc::new(Signals::default());
        let sessions = Arc::new(SessionTable::new(1 << 20));
        let (_a, mut a) = sessions.open();
        let (_b, mut b) = sessions.open();
        let (close, closing) = watch::channel(false);
        let (swap, swapped) = watch::channel(0u64);
        let task = tokio::spawn({
            let (signals, sessions) = (signals.clone(), sessions.clone());
            async move { relay(&signals, &sessions, closing, swapped).await }
        });

        swap.send_modify(|n| *n += 1);
        assert!(matches!(a.recv().await, Some(Outgoing::Wake)));
        assert!(matches!(b.recv().await, Some(Outgoing::Wake)));
        assert_eq!(signals.swaps(), 1);
        assert!(!signals.shutting_down());

        close.send(true).unwrap();
        assert!(matches!(a.recv().await, Some(Outgoing::Wake)));
        assert!(matches!(b.recv().await, Some(Outgoing::Wake)));
        assert!(signals.shutting_down());
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_shutdown_sent_before_the_relay_started_counts() {
        let signals = Signals::default();
        let sessions = SessionTable::new(1 << 20);
        let (_a, mut a) = sessions.open();
        let (close, closing) = watch::channel(false);
        let (_swap, swapped) = watch::channel(0u64);
        close.send(true).unwrap();
        relay(&signals, &sessions, closing, swapped).await;
        assert!(signals.shutting_down());
        assert!(matches!(a.try_recv(), Some(Outgoing::Wake)));
    }

    #[tokio::test]
    async fn the_relay_ends_when_both_channels_are_gone() {
        let signals = Signals::default();
        let sessions = SessionTable::new(1 << 20);
        let (close, closing) = watch::channel(false);
        let (swap, swapped) = watch::channel(0u64);
        drop((close, swap));
        relay(&signals, &sessions, closing, swapped).await;
        assert!(!signals.shutting_down());
        assert_eq!(signals.swaps(), 0);
    }
}
