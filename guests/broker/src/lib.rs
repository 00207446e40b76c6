//! The `broker` guest: the TCP heartbeat broker of the "process connectivity"
//! scaling test. Engines connect to the host's raw TCP listener, register
//! with `NewEngine:<id>:0` and heartbeat in sequence; the broker answers,
//! checks every sequence, and an HTTP control API broadcasts `DOWORK` and
//! `KILL` to every engine. The wire protocol is the `heartbeat` crate.
//!
//! Nothing lives in this instance's memory between calls: registrations,
//! half-received messages and counts are in the host's shared state, so any
//! pooled instance serves any call and a guest swap loses nothing.
//!
//! Settings (WASI environment, the config file's `[env]` table):
//! - `BROKER_TOKEN`: when set, the control API needs `Authorization: Bearer
//!   <token>` (or `?token=<token>`); without it, it answers 401.
//! - `BROKER_SILENT_AFTER_MS`: an engine is reported silent after this long
//!   without a heartbeat (default 40000).

mod bindings {
    // Shares guest-http's wasi:http bindings (see crates/guest-http).
    guest_http::generate!("scalelab:guests/session-http-guest");
}

mod control;
mod registry;

use bindings::exports::scalelab::guests::session_handler::{Effect, Guest, Peer, SessionOptions};
use bindings::scalelab::guests::log::{Level, log};
use bindings::scalelab::guests::metrics::{self, MetricKind};
use bindings::scalelab::guests::sessions;
use bindings::scalelab::guests::state;
use heartbeat::{BrokerMessage, EngineMessage};
use registry::{Registration, Session};

/// How often the broker logs its connection count and silent engines.
const TICK_MS: u32 = 10_000;

/// The broker's metrics: name, help, kind.
const METRICS: &[(&str, &str, MetricKind)] = &[
    ("broker_registered_engines", "Engines registered on a live connection", MetricKind::Gauge),
    ("broker_active_connections", "Open engine connections", MetricKind::Gauge),
    ("broker_heartbeats_total", "Heartbeats accepted in sequence", MetricKind::Counter),
    (
        "broker_sequence_errors_total",
        "Heartbeats refused: out of sequence or not from the registering connection",
        MetricKind::Counter,
    ),
    (
        "broker_duplicate_ids_total",
        "Registrations refused because the id is registered on another connection",
        MetricKind::Counter,
    ),
    (
        "broker_silent_engines",
        "Registered engines without a heartbeat for longer than the silence limit, at the last check",
        MetricKind::Gauge,
    ),
    (
        "broker_merged_messages_total",
        "Messages that arrived merged with the previous one without a delimiter, and were split",
        MetricKind::Counter,
    ),
    ("broker_malformed_messages_total", "Unknown, malformed, oversized or unfinished messages", MetricKind::Counter),
    ("broker_commands_total", "DOWORK and KILL commands broadcast by the control API", MetricKind::Counter),
];

struct Broker;

impl Guest for Broker {
    fn init() -> SessionOptions {
        for (name, help, kind) in METRICS {
            if let Err(e) = metrics::declare(name, help, *kind, &[], &[]) {
                log(Level::Error, &format!("cannot declare metric {name}: {e}"));
            }
        }
        SessionOptions { tick_interval_ms: Some(TICK_MS), session_tick_interval_ms: None }
    }

    fn session_tick(_id: u64) -> Vec<Effect> {
        Vec::new()
    }

    fn opened(_id: u64, _peer: Peer) -> Vec<Effect> {
        metrics::add("broker_active_connections", 1.0);
        Vec::new()
    }

    fn received(id: u64, data: Vec<u8>) -> Vec<Effect> {
        let mut session = Session::load(id);
        let mut data = &data[..];
        if session.discarding {
            // The rest of an oversized message: already counted, skipped.
            match heartbeat::resume_point(data) {
                Some(start) => {
                    data = &data[start..];
                    session.discarding = false;
                }
                None => return Vec::new(),
            }
        }
        let mut buffered = session.take_pending();
        buffered.extend_from_slice(data);
        session.delimits |= heartbeat::delimits(data);
        let split = heartbeat::split(&buffered, session.delimits);

        let mut effects = Vec::new();
        for message in split.messages {
            if let Some(reply) = handle(&mut session, message) {
                effects.push(Effect::Send((id, reply.encode().into_bytes())));
            }
        }
        if split.merged > 0 {
            metrics::add("broker_merged_messages_total", split.merged as f64);
        }
        for piece in &split.malformed {
            metrics::add("broker_malformed_messages_total", 1.0);
            log(Level::Warn, &format!("malformed message from session {id}: \"{piece}\""));
        }
        session.discarding = split.discarding;
        session.set_pending(split.rest);
        session.save();
        effects
    }

    fn closed(id: u64, reason: String) -> Vec<Effect> {
        metrics::add("broker_active_connections", -1.0);
        let session = Session::load(id);
        if session.has_pending() {
            metrics::add("broker_malformed_messages_total", 1.0);
            log(Level::Warn, &format!("session {id} closed ({reason}) in the middle of a message"));
        }
        if let Some(engine) = &session.engine
            && registry::unregister(engine, id)
        {
            log(Level::Debug, &format!("engine {engine} unregistered: {reason}"));
        }
        session.delete();
        Vec::new()
    }

    fn tick() -> Vec<Effect> {
        let connections = sessions::count();
        let registered = registry::registered_count();
        log(Level::Info, &format!("BROKER: active tcp connections: {connections} (registered engines : {registered})"));
        let silent = registry::silent_engines(registry::now_ms(), silent_after_ms());
        metrics::set("broker_silent_engines", silent.len() as f64);
        if !silent.is_empty() {
            const SHOWN: usize = 20;
            let mut list =
                silent.iter().take(SHOWN).map(|(id, ms)| format!("{id} ({}s)", ms / 1000)).collect::<Vec<_>>().join(", ");
            if silent.len() > SHOWN {
                list.push_str(&format!(" and {} more", silent.len() - SHOWN));
            }
            log(
                Level::Warn,
                &format!("BROKER: {} engines silent for more than {}s: {list}", silent.len(), silent_after_ms() / 1000),
            );
        }
        Vec::new()
    }
}

/// Applies one engine message; returns the reply, if any.
fn handle(session: &mut Session, message: EngineMessage) -> Option<BrokerMessage> {
    match message {
        EngineMessage::NewEngine { id, n } => {
            // One engine per connection: registering another id releases the first.
            if let Some(previous) = session.engine.take().filter(|previous| *previous != id) {
                registry::unregister(&previous, session.id);
            }
            match registry::register(&id, session.id, n) {
                Registration::Registered => {
                    session.engine = Some(id);
                    Some(BrokerMessage::Registered)
                }
                Registration::Duplicate => {
                    metrics::add("broker_duplicate_ids_total", 1.0);
                    log(Level::Warn, &format!("refused duplicate engine id {id} from session {}", session.id));
                    Some(BrokerMessage::Duplicate { id })
                }
            }
        }
        EngineMessage::HeartBeat { id, n } => {
            match registry::heartbeat(&id, session.id, n) {
                Ok(()) => metrics::add("broker_heartbeats_total", 1.0),
                Err(registry::HeartbeatError::Sequence { last }) => {
                    metrics::add("broker_sequence_errors_total", 1.0);
                    log(
                        Level::Error,
                        &format!("ERROR MISSING HEARTBEAT [{id}], last Heartbeat cnt {last}, received Heartbeat cnt {n}"),
                    );
                }
                Err(registry::HeartbeatError::NotRegistered) => {
                    metrics::add("broker_sequence_errors_total", 1.0);
                    log(
                        Level::Error,
                        &format!(
                            "ERROR HEARTBEAT FROM UNREGISTERED ENGINE [{id}] on session {}, received Heartbeat cnt {n}",
                            session.id
                        ),
                    );
                }
            }
            None
        }
    }
}

fn silent_after_ms() -> u64 {
    std::env::var("BROKER_SILENT_AFTER_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(40_000)
}

/// Reads the shared state as text (values the broker writes are ASCII).
fn get_text(key: &str) -> Option<String> {
    state::get(key).map(|v| String::from_utf8_lossy(&v).into_owned())
}

bindings::export!(Broker with_types_in bindings);

// What a call allocates comes from a request arena (crates/guest-alloc) while
// it fits, the rest from wasi-libc's `malloc`.
guest_alloc::std_global_allocator!(256 * 1024);
