//! Test fixture (never in the image): a session guest that misbehaves on
//! command, so the host's tests can check that one bad call harms nothing
//! else. Each TCP read (or socket.io event named by the command alone,
//! `["tick-on"]`) is one command:
//!
//! - `trap`: panics in `received`; `loop`: computes for ever in `received`;
//! - `tick-trap`, `tick-loop`: the next `session-tick` of this session panics
//!   or computes for ever (once: the mode is cleared before);
//! - `tick-on`: every `session-tick` of this session sends `tick\n`;
//! - `flood {k}`: every `session-tick` of this session sends `k` KiB (a
//!   guest that sends from its own tick, as the tracker does, only faster);
//! - `state {n}`: writes an `n`-byte value into the shared state (key
//!   `big/{id}`) and answers `stored {n}\n`;
//! - `metrics {n}`: declares `n` new gauges (a label set per "user") and
//!   answers `declared {ok} refused {m}: {first error}\n`;
//! - anything else: answered `echo:{data}`.
//!
//! HTTP (the `session-http-guest` world): `GET /sleep?ms={n}` answers
//! `slept\n` after `n` ms (waiting on a WASI clock, no CPU); `GET
//! /slow-open?ms={n}` makes every later `opened` wait `n` ms the same way
//! (0 turns it off), so that a test can swap the guest while a session is
//! opening; `GET /` answers the open session count.
//!
//! Every `closed` logs `closed {id}: {reason}` at info, which shutdown tests count.

mod bindings {
    // Shares guest-http's wasi:http bindings (see crates/guest-http).
    guest_http::generate!("scalelab:guests/session-http-guest");
}

use bindings::exports::scalelab::guests::session_handler::{Effect, Guest, Peer, SessionOptions};
use bindings::exports::wasi::http::incoming_handler::Guest as HttpGuest;
use bindings::scalelab::guests::log::{Level, log};
use bindings::scalelab::guests::metrics::{self, MetricKind};
use bindings::scalelab::guests::{sessions, state};
use guest_http::Response;
use guest_http::wasi::clocks::monotonic_clock;
use guest_http::wasi::http::types::{IncomingRequest, ResponseOutparam};

/// How often every session gets a `session-tick`.
const SESSION_TICK_MS: u32 = 100;
/// The shared-state key holding how long `opened` waits, in ms (`/slow-open`).
const SLOW_OPEN_KEY: &str = "slow-open";

struct Fixture;

fn mode_key(id: u64) -> String {
    format!("mode/{id}")
}

/// Computes until the host's deadline stops it.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Waits `ms` on a WASI clock (no CPU: the host's deadline timer, not its
/// epoch, would stop it).
fn sleep_ms(ms: u64) {
    monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
}

fn send(id: u64, text: String) -> Vec<Effect> {
    vec![Effect::Send((id, text.into_bytes()))]
}

impl Guest for Fixture {
    fn init() -> SessionOptions {
        SessionOptions { tick_interval_ms: None, session_tick_interval_ms: Some(SESSION_TICK_MS) }
    }

    fn opened(_id: u64, _peer: Peer) -> Vec<Effect> {
        let wait = state::get(SLOW_OPEN_KEY).and_then(|ms| String::from_utf8(ms).ok()?.parse::<u64>().ok());
        if let Some(ms) = wait {
            sleep_ms(ms);
        }
        Vec::new()
    }

    fn received(id: u64, data: Vec<u8>) -> Vec<Effect> {
        let text = String::from_utf8_lossy(&data);
        let command = text.trim();
        // Over socket.io a command is an event's name alone: `["flood 64"]`.
        let command = command.strip_prefix("[\"").and_then(|c| c.strip_suffix("\"]")).unwrap_or(command);
        let (verb, arg) = command.split_once(' ').unwrap_or((command, ""));
        match verb {
            "trap" => panic!("session {id} asked for a trap"),
            "loop" => spin(),
            "tick-trap" | "tick-loop" | "tick-on" | "flood" => {
                state::set(&mode_key(id), command.as_bytes());
                send(id, format!("{verb} set\n"))
            }
            "state" => {
                let n: usize = arg.parse().unwrap_or(0);
                state::set(&format!("big/{id}"), &vec![b'x'; n]);
                send(id, format!("stored {n}\n"))
            }
            "metrics" => {
                let n: u32 = arg.parse().unwrap_or(0);
                let (mut ok, mut refused, mut first) = (0, 0, None);
                for i in 0..n {
                    let name = format!("fixture_user_{i}");
                    let labels = [("user".to_string(), format!("{id}-{i}"))];
                    match metrics::declare(&name, "A series per user", MetricKind::Gauge, &[], &labels) {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            refused += 1;
                            first.get_or_insert(e);
                        }
                    }
                }
                send(id, format!("declared {ok} refused {refused}: {}\n", first.unwrap_or_default()))
            }
            _ => vec![Effect::Send((id, [b"echo:".as_slice(), &data].concat()))],
        }
    }

    fn closed(id: u64, reason: String) -> Vec<Effect> {
        state::delete(&mode_key(id));
        log(Level::Info, &format!("closed {id}: {reason}"));
        Vec::new()
    }

    fn tick() -> Vec<Effect> {
        Vec::new()
    }

    fn session_tick(id: u64) -> Vec<Effect> {
        let Some(mode) = state::get(&mode_key(id)) else { return Vec::new() };
        match mode.as_slice() {
            b"tick-on" => send(id, "tick\n".to_string()),
            flood if flood.starts_with(b"flood ") => {
                let kib: usize = String::from_utf8_lossy(&flood[6..]).parse().unwrap_or(0);
                send(id, "x".repeat(kib * 1024))
            }
            b"tick-trap" => {
                state::delete(&mode_key(id));
                panic!("session {id}: a session-tick asked for a trap")
            }
            b"tick-loop" => {
                state::delete(&mode_key(id));
                spin()
            }
            _ => Vec::new(),
        }
    }
}

impl HttpGuest for Fixture {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_default();
        let response = if let Some(ms) = target.strip_prefix("/sleep?ms=") {
            match ms.parse() {
                Ok(ms) => {
                    sleep_ms(ms);
                    Response::text(200, "slept\n")
                }
                Err(_) => Response::text(400, "/sleep?ms=N takes a whole number\n"),
            }
        } else if let Some(ms) = target.strip_prefix("/slow-open?ms=") {
            match ms.parse::<u64>() {
                Ok(0) => {
                    state::delete(SLOW_OPEN_KEY);
                    Response::text(200, "opened waits 0 ms\n")
                }
                Ok(ms) => {
                    state::set(SLOW_OPEN_KEY, ms.to_string().as_bytes());
                    Response::text(200, format!("opened waits {ms} ms\n"))
                }
                Err(_) => Response::text(400, "/slow-open?ms=N takes a whole number\n"),
            }
        } else if target == "/" {
            Response::text(200, format!("{} sessions\n", sessions::count()))
        } else {
            Response::text(404, format!("no route {target}\n"))
        };
        response.send(response_out);
    }
}

bindings::export!(Fixture with_types_in bindings);
