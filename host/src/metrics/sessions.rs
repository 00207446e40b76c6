//! Sessions (raw TCP and socket.io): open, opened, closed by
//! [`CloseReason`], refused by [`SessionRefusal`], their messages, and the
//! time of each kind of call into a session guest ([`SessionCallKind`]).

use super::http::LATENCY_BUCKETS;
use super::per_thread::{Counter, Histogram, PerThreadVec};
use super::{Result, listed, register};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use std::sync::Arc;

/// The transports a session runs on: the `transport` label.
const TRANSPORTS: [&str; 2] = ["tcp", "socket.io"];

/// Why a session closed; the `reason` label of `scalelab_sessions_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed the connection.
    Peer,
    /// A read or write failed.
    Error,
    /// The guest closed it (an effect or `sessions.close`).
    Guest,
    /// Its guest was swapped out and the drain timeout passed.
    Swapped,
    /// The host is shutting down.
    Shutdown,
    /// The peer read too slowly: more than `--session-max-outgoing` bytes waited for it.
    SlowConsumer,
}

impl CloseReason {
    pub const ALL: [CloseReason; 6] = [
        CloseReason::Peer,
        CloseReason::Error,
        CloseReason::Guest,
        CloseReason::Swapped,
        CloseReason::Shutdown,
        CloseReason::SlowConsumer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Peer => "peer",
            CloseReason::Error => "error",
            CloseReason::Guest => "guest",
            CloseReason::Swapped => "swapped",
            CloseReason::Shutdown => "shutdown",
            CloseReason::SlowConsumer => "slow_consumer",
        }
    }
}

/// Why a connection was refused before its session opened; the `reason`
/// label of `scalelab_sessions_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRefusal {
    /// `--max-sessions` are open.
    SessionLimit,
    /// The guest being served exports no session interface.
    NotASessionGuest,
}

impl SessionRefusal {
    pub const ALL: [SessionRefusal; 2] = [SessionRefusal::SessionLimit, SessionRefusal::NotASessionGuest];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionRefusal::SessionLimit => "session_limit",
            SessionRefusal::NotASessionGuest => "not_a_session_guest",
        }
    }
}

/// The calls into a session guest; the `call` label of
/// `scalelab_session_call_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCallKind {
    Opened = 0,
    Received = 1,
    Closed = 2,
    Tick = 3,
    SessionTick = 4,
}

impl SessionCallKind {
    /// In the order of their discriminants, which index a guest's handles.
    pub const ALL: [SessionCallKind; 5] = [
        SessionCallKind::Opened,
        SessionCallKind::Received,
        SessionCallKind::Closed,
        SessionCallKind::Tick,
        SessionCallKind::SessionTick,
    ];

    pub fn as_str(self) -> &'static str {
        ["opened", "received", "closed", "tick", "session_tick"][self as usize]
    }
}

pub struct SessionMetrics {
    /// Open sessions, by transport.
    active: IntGaugeVec,
    opened: IntCounterVec,
    closed: IntCounterVec,
    refused: IntCounterVec,
    messages: PerThreadVec<Counter>,
    /// By guest and [`SessionCallKind`]; a guest's handles are resolved in `GuestMetrics`.
    call_duration: PerThreadVec<Histogram>,
}

impl SessionMetrics {
    pub(super) fn new(registry: &Registry) -> Result<SessionMetrics> {
        let transports = listed(TRANSPORTS);
        let metrics = SessionMetrics {
            active: IntGaugeVec::new(
                Opts::new("scalelab_sessions_active", format!("Open sessions, by transport ({transports})")),
                &["transport"],
            )?,
            opened: IntCounterVec::new(
                Opts::new("scalelab_sessions_opened_total", format!("Sessions opened, by transport ({transports})")),
                &["transport"],
            )?,
            closed: IntCounterVec::new(
                Opts::new(
                    "scalelab_sessions_closed_total",
                    format!("Sessions closed, by reason ({})", listed(CloseReason::ALL.map(CloseReason::as_str))),
                ),
                &["reason"],
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "scalelab_sessions_refused_total",
                    format!(
                        "Connections refused before a session opened, by reason ({})",
                        listed(SessionRefusal::ALL.map(SessionRefusal::as_str))
                    ),
                ),
                &["reason"],
            )?,
            messages: PerThreadVec::counters(
                "scalelab_session_messages_total",
                "Session messages, by direction: received (one read or WebSocket message) and sent",
                &["direction"],
            )?,
            call_duration: PerThreadVec::histograms(
                "scalelab_session_call_duration_seconds",
                format!(
                    "Time of one call into a session guest, by guest and call ({})",
                    listed(SessionCallKind::ALL.map(SessionCallKind::as_str))
                ),
                &["guest", "call"],
                LATENCY_BUCKETS,
            )?,
        };
        metrics.show_label_sets();
        register(registry, &metrics.active)?;
        register(registry, &metrics.opened)?;
        register(registry, &metrics.closed)?;
        register(registry, &metrics.refused)?;
        register(registry, &metrics.messages)?;
        register(registry, &metrics.call_duration)?;
        Ok(metrics)
    }

    /// Makes the label sets that exist before any session visible at once.
    fn show_label_sets(&self) {
        for transport in TRANSPORTS {
            self.active.with_label_values(&[transport]);
            self.opened.with_label_values(&[transport]);
        }
        for reason in CloseReason::ALL {
            self.closed.with_label_values(&[reason.as_str()]);
        }
        for reason in SessionRefusal::ALL {
            self.refused.with_label_values(&[reason.as_str()]);
        }
        for direction in ["received", "sent"] {
            self.messages.with_label_values(&[direction]);
        }
    }

    pub fn opened(&self, transport: &str) {
        self.opened.with_label_values(&[transport]).inc();
        self.active.with_label_values(&[transport]).inc();
    }

    pub fn closed(&self, transport: &str, reason: CloseReason) {
        self.active.with_label_values(&[transport]).dec();
        self.closed.with_label_values(&[reason.as_str()]).inc();
    }

    pub fn refused(&self, reason: SessionRefusal) {
        self.refused.with_label_values(&[reason.as_str()]).inc();
    }

    /// Counters of messages received and sent, resolved once.
    pub fn message_counters(&self) -> (Arc<Counter>, Arc<Counter>) {
        (self.messages.with_label_values(&["received"]), self.messages.with_label_values(&["sent"]))
    }

    /// The call-duration handles of one guest, indexed by [`SessionCallKind`].
    pub(super) fn calls_of(&self, guest: &str) -> [Arc<Histogram>; 5] {
        SessionCallKind::ALL.map(|call| self.call_duration.with_label_values(&[guest, call.as_str()]))
    }
}
