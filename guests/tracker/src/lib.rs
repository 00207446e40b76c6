//! The `tracker` guest: the "connection-heavy server" of socket.io scaling
//! tests. Every connected client costs CPU at every tick: the host calls
//! `session-tick` for each client (every 10 ms by default, spread over all
//! worker threads), and the guest does the work (the `tracker-work` crate)
//! and emits two events to that client: `clock` (the time in ms) and `value`
//! (the work's result). KEDA scales on `mx_server_active_conn_gauge`.
//!
//! Counts live in the host's shared state (`tracker/active`,
//! `tracker/handled`, `tracker/ticks`) and metrics, never in this instance's
//! memory, so they survive a swap. Settings (WASI environment, the config file's `[env]`):
//! `TRACKER_TICK_MS` (default 10) and `TRACKER_WORK` (iterations per
//! client-tick, default 5000).

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
use guest_http::wasi::http::types::{IncomingRequest, ResponseOutparam};
use std::cell::Cell;
use std::sync::OnceLock;

const ACTIVE: &str = "mx_server_active_conn_gauge";
const HANDLED: &str = "mx_server_handled_conn_total";
const PROCESSED: &str = "mx_server_processed_fps_total";
const FPS: &str = "mx_server_fps_gauge";

/// Connected clients and clients handled since the start.
const ACTIVE_KEY: &str = "tracker/active";
const HANDLED_KEY: &str = "tracker/handled";
/// Client-ticks done so far, and the last status line's figures.
const TICKS_KEY: &str = "tracker/ticks";
const LAST_KEY: &str = "tracker/last";

struct Settings {
    tick_ms: u32,
    work: u32,
}

/// The settings, read once per instance (they come from the environment,
/// which does not change while the guest serves).
fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let number = |name: &str, default: u32| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
        Settings { tick_ms: number("TRACKER_TICK_MS", 10).max(1), work: number("TRACKER_WORK", tracker_work::DEFAULT_ITERATIONS) }
    })
}

/// A seed for one client-tick's work. The work needs only a different seed
/// each time, as the JS servers' `Math.random` gives, not the host's
/// entropy: each instance draws one seed from `wasi:random` and steps a
/// splitmix64 sequence from it (one host call per instance rather than per
/// client-tick, and no shared state: what is lost in a swap is a
/// sequence position, which nothing needs).
fn next_seed() -> u64 {
    thread_local! {
        static SEQUENCE: Cell<Option<u64>> = const { Cell::new(None) };
    }
    SEQUENCE.with(|sequence| {
        let state = sequence.get().unwrap_or_else(bindings::wasi::random::random::get_random_u64);
        let state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        sequence.set(Some(state));
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

fn now_ms() -> u64 {
    let now = bindings::wasi::clocks::wall_clock::now();
    now.seconds * 1000 + u64::from(now.nanoseconds / 1_000_000)
}

/// The socket.io event `["name",number]`. Written piece by piece, the
/// numbers by `itoa` and `zmij` (the float formatter serde_json uses):
/// `format!` would take `core::fmt`'s path, whose float formatting was most
/// of the guest's own instructions per client-tick besides the work.
fn event(name: &str, number: &str) -> Vec<u8> {
    let mut text = Vec::with_capacity(name.len() + number.len() + 5);
    text.extend_from_slice(b"[\"");
    text.extend_from_slice(name.as_bytes());
    text.extend_from_slice(b"\",");
    text.extend_from_slice(number.as_bytes());
    text.push(b']');
    text
}

struct Tracker;

impl Guest for Tracker {
    fn init() -> SessionOptions {
        let app = [("app".to_string(), "mx-server".to_string())];
        let declared = [
            (ACTIVE, "Connected socket.io clients", MetricKind::Gauge),
            (HANDLED, "socket.io clients connected since the start", MetricKind::Counter),
            (PROCESSED, "Client-ticks processed (work done and events sent)", MetricKind::Counter),
            (FPS, "Ticks per second each client got, averaged over the last second", MetricKind::Gauge),
        ];
        for (name, help, kind) in declared {
            if let Err(e) = metrics::declare(name, help, kind, &[], &app) {
                log(Level::Error, &format!("cannot declare {name}: {e}"));
            }
        }
        SessionOptions { tick_interval_ms: Some(1000), session_tick_interval_ms: Some(settings().tick_ms) }
    }

    fn opened(_id: u64, _peer: Peer) -> Vec<Effect> {
        // Gauge updates are additions, so parallel sessions cannot reorder them.
        state::increment(ACTIVE_KEY, 1);
        state::increment(HANDLED_KEY, 1);
        metrics::add(ACTIVE, 1.0);
        metrics::add(HANDLED, 1.0);
        Vec::new()
    }

    fn received(id: u64, data: Vec<u8>) -> Vec<Effect> {
        log(Level::Debug, &format!("client {id} sent {}", String::from_utf8_lossy(&data)));
        Vec::new()
    }

    fn closed(_id: u64, _reason: String) -> Vec<Effect> {
        state::increment(ACTIVE_KEY, -1);
        metrics::add(ACTIVE, -1.0);
        Vec::new()
    }

    fn session_tick(id: u64) -> Vec<Effect> {
        let seed = next_seed();
        let value = tracker_work::work(settings().work, seed);
        state::increment(TICKS_KEY, 1);
        metrics::add(PROCESSED, 1.0);
        vec![
            Effect::Send((id, event("clock", itoa::Buffer::new().format(now_ms())))),
            Effect::Send((id, event("value", zmij::Buffer::new().format(value)))),
        ]
    }

    /// Once a second: the average ticks per second per client, and the status line.
    fn tick() -> Vec<Effect> {
        let clients = sessions::count();
        let ticks = state::increment(TICKS_KEY, 0) as f64;
        let stats = metrics::read_process_stats();
        let now = now_ms() as f64;
        let last = state::get(LAST_KEY).and_then(|v| {
            let text = String::from_utf8(v).ok()?;
            let mut fields = text.split(':').map(|f| f.parse::<f64>().ok());
            Some((fields.next()??, fields.next()??, fields.next()??, fields.next()??))
        });
        state::set(LAST_KEY, format!("{now}:{ticks}:{}:{clients}", stats.cpu_seconds).as_bytes());
        let Some((then, last_ticks, last_cpu, last_clients)) = last else {
            return Vec::new();
        };
        let seconds = ((now - then) / 1000.0).max(0.001);
        // Per client: clients that came or went during the second count as there.
        let counted = f64::from(clients).max(last_clients);
        let fps = if counted > 0.0 { (ticks - last_ticks) / seconds / counted } else { 0.0 };
        let cpu = (stats.cpu_seconds - last_cpu) / seconds * 100.0;
        metrics::set(FPS, fps);
        log(
            Level::Info,
            &format!("{clients} Clients. {fps:.1} avg fps. {:.1} MB. {cpu:.1}% cpu.", stats.resident_bytes as f64 / 1048576.0),
        );
        Vec::new()
    }
}

impl HttpGuest for Tracker {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (status, body) = match path.split('?').next().unwrap_or("") {
            "/ready" => (200, "OK".to_string()),
            "/" => (200, format!("tracker: {} clients\n", sessions::count())),
            other => (404, format!("no route {other}: socket.io clients connect at /socket.io/\n")),
        };
        Response::text(status, body).send(response_out);
    }
}

bindings::export!(Tracker with_types_in bindings);

// What a call allocates comes from a request arena (crates/guest-alloc) while
// it fits, the rest from wasi-libc's `malloc`.
guest_alloc::std_global_allocator!(256 * 1024);
