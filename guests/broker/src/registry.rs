//! Engine registrations and per-session protocol state, kept in the host's
//! shared state under `broker/`:
//! - `broker/engine/<id>` = `<session>:<last heartbeat>:<last seen, ms since epoch>`
//! - `broker/session/<session>` = `<flags>:<engine id>` (`p`: part of a
//!   message is waiting; `x`: inside an oversized message, skipping it)
//! - `broker/pending/<session>` = the unfinished message
//! - `broker/registered` = number of registrations

use crate::bindings::scalelab::guests::metrics;
use crate::bindings::scalelab::guests::state;
use crate::get_text;

const ENGINE: &str = "broker/engine/";
const REGISTERED: &str = "broker/registered";

/// A registration record.
struct Engine {
    session: u64,
    last: u64,
    seen_ms: u64,
}

impl Engine {
    fn load(id: &str) -> Option<Engine> {
        let text = get_text(&format!("{ENGINE}{id}"))?;
        Engine::parse(&text)
    }

    fn parse(text: &str) -> Option<Engine> {
        let mut fields = text.splitn(3, ':').map(|f| f.parse::<u64>().ok());
        Some(Engine { session: fields.next()??, last: fields.next()??, seen_ms: fields.next()?? })
    }

    fn encode(&self) -> Vec<u8> {
        format!("{}:{}:{}", self.session, self.last, self.seen_ms).into_bytes()
    }
}

pub enum Registration {
    Registered,
    Duplicate,
}

/// Registers `id` for `session`, unless another session holds it.
pub fn register(id: &str, session: u64, n: u64) -> Registration {
    let record = Engine { session, last: n, seen_ms: now_ms() };
    let key = format!("{ENGINE}{id}");
    if state::insert_if_absent(&key, &record.encode()) {
        // Additions, like the counter: parallel calls on other sessions
        // cannot leave the gauge at a stale value, as setting a count could.
        state::increment(REGISTERED, 1);
        metrics::add("broker_registered_engines", 1.0);
        return Registration::Registered;
    }
    match Engine::load(id) {
        // The same connection registering again starts its sequence over.
        Some(existing) if existing.session == session => {
            state::set(&key, &record.encode());
            Registration::Registered
        }
        _ => Registration::Duplicate,
    }
}

/// Removes `id` if `session` holds it; true when it did.
pub fn unregister(id: &str, session: u64) -> bool {
    match Engine::load(id) {
        Some(existing) if existing.session == session => {
            state::delete(&format!("{ENGINE}{id}"));
            state::increment(REGISTERED, -1);
            metrics::add("broker_registered_engines", -1.0);
            true
        }
        _ => false,
    }
}

pub enum HeartbeatError {
    /// n is not last + 1; the sequence continues from n.
    Sequence { last: u64 },
    /// No registration of this id on this session.
    NotRegistered,
}

/// Accepts heartbeat `n` of `id` from `session` when it is the next in sequence.
pub fn heartbeat(id: &str, session: u64, n: u64) -> Result<(), HeartbeatError> {
    let mut record = match Engine::load(id) {
        Some(record) if record.session == session => record,
        _ => return Err(HeartbeatError::NotRegistered),
    };
    let last = record.last;
    record.last = n;
    record.seen_ms = now_ms();
    state::set(&format!("{ENGINE}{id}"), &record.encode());
    if n == last.wrapping_add(1) { Ok(()) } else { Err(HeartbeatError::Sequence { last }) }
}

pub fn registered_count() -> i64 {
    get_text(REGISTERED).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Engines whose last heartbeat is older than `limit_ms`, with how long ago, longest first.
pub fn silent_engines(now: u64, limit_ms: u64) -> Vec<(String, u64)> {
    let mut silent: Vec<(String, u64)> = state::list_prefix(ENGINE)
        .into_iter()
        .filter_map(|(key, value)| {
            let record = Engine::parse(std::str::from_utf8(&value).ok()?)?;
            let quiet = now.saturating_sub(record.seen_ms);
            (quiet > limit_ms).then(|| (key[ENGINE.len()..].to_string(), quiet))
        })
        .collect();
    silent.sort_by_key(|(_, quiet)| std::cmp::Reverse(*quiet));
    silent
}

pub fn now_ms() -> u64 {
    let now = crate::bindings::wasi::clocks::wall_clock::now();
    now.seconds * 1000 + u64::from(now.nanoseconds / 1_000_000)
}

/// What the broker remembers about one connection between its calls.
pub struct Session {
    pub id: u64,
    /// The engine this connection registered.
    pub engine: Option<String>,
    /// Inside an oversized message: skip until its end.
    pub discarding: bool,
    /// The engine ends its messages with `\n` (seen once, kept): an
    /// unterminated tail from it is never complete.
    pub delimits: bool,
    pending: Option<Vec<u8>>,
    had_pending: bool,
    /// The record as loaded, to skip writing it back unchanged.
    loaded: Option<String>,
}

impl Session {
    fn key(id: u64) -> String {
        format!("broker/session/{id}")
    }

    fn pending_key(id: u64) -> String {
        format!("broker/pending/{id}")
    }

    pub fn load(id: u64) -> Session {
        let loaded = get_text(&Session::key(id));
        let (flags, engine) = loaded.as_deref().and_then(|t| t.split_once(':')).unwrap_or(("", ""));
        Session {
            id,
            engine: (!engine.is_empty()).then(|| engine.to_string()),
            discarding: flags.contains('x'),
            delimits: flags.contains('d'),
            pending: None,
            had_pending: flags.contains('p'),
            loaded,
        }
    }

    pub fn has_pending(&self) -> bool {
        self.had_pending
    }

    /// The unfinished message of the last read, if any.
    pub fn take_pending(&mut self) -> Vec<u8> {
        if !self.had_pending {
            return Vec::new();
        }
        state::get(&Session::pending_key(self.id)).unwrap_or_default()
    }

    pub fn set_pending(&mut self, rest: Vec<u8>) {
        self.pending = Some(rest);
    }

    pub fn save(&self) {
        let pending = self.pending.as_deref().unwrap_or_default();
        if !pending.is_empty() {
            state::set(&Session::pending_key(self.id), pending);
        } else if self.had_pending {
            state::delete(&Session::pending_key(self.id));
        }
        let mut flags = String::new();
        for (set, flag) in [(!pending.is_empty(), 'p'), (self.discarding, 'x'), (self.delimits, 'd')] {
            if set {
                flags.push(flag);
            }
        }
        let record = format!("{flags}:{}", self.engine.as_deref().unwrap_or(""));
        if self.loaded.as_deref() != Some(record.as_str()) {
            state::set(&Session::key(self.id), record.as_bytes());
        }
    }

    pub fn delete(&self) {
        state::delete(&Session::key(self.id));
        if self.had_pending {
            state::delete(&Session::pending_key(self.id));
        }
    }
}
