//! Prometheus metrics of the host, served on the admin port at `/metrics`.
//!
//! Names follow Prometheus conventions (base units, `_total` counters). Every
//! series is documented in the README's "Metrics" section; keep the two in
//! step. Per-guest handles are resolved once per guest ([`GuestMetrics`]) so
//! the request path does not hash label values it already knows.

use anyhow::Result;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::time::Duration;

/// Latency buckets from 0.5 ms to 10 s: wide enough for `GET /prime/1` and for
/// requests that run into a multi-second deadline.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Instantiation is expected to take microseconds; buckets from 10 µs to 100 ms.
const INSTANTIATE_BUCKETS: &[f64] = &[0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1];

/// Why a guest call failed; the `reason` label of `scalelab_guest_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    Deadline,
    Memory,
    Trap,
    /// A write to the shared state over `--state-max-value` or `--state-max-bytes`.
    StateLimit,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Deadline => "deadline",
            FailureReason::Memory => "memory",
            FailureReason::Trap => "trap",
            FailureReason::StateLimit => "state_limit",
        }
    }
}

/// Why the host refused a request before it reached the guest; the `reason`
/// label of `scalelab_http_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    BodyTooLarge,
    InFlightLimit,
    BadBody,
    /// A connection refused at `--max-connections`.
    ConnectionLimit,
    /// A request body that did not arrive within the deadline.
    BodyTimeout,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BodyTooLarge => "body_too_large",
            RejectReason::InFlightLimit => "in_flight_limit",
            RejectReason::BadBody => "bad_body",
            RejectReason::ConnectionLimit => "connection_limit",
            RejectReason::BodyTimeout => "body_timeout",
        }
    }
}

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

/// The calls into a session guest, in the order of `GuestMetrics::session_calls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCallKind {
    Opened = 0,
    Received = 1,
    Closed = 2,
    Tick = 3,
    SessionTick = 4,
}

impl SessionCallKind {
    pub fn as_str(self) -> &'static str {
        ["opened", "received", "closed", "tick", "session_tick"][self as usize]
    }
}

/// The configured per-request limits, exported so dashboards can draw them.
pub struct LimitValues {
    pub deadline: Option<Duration>,
    pub max_memory: u64,
    pub max_body: u64,
    pub max_in_flight: u32,
}

pub struct Metrics {
    /// Everything below is registered here; `/metrics` encodes it.
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    /// Requests admitted and not yet finished (guest instance still alive).
    pub in_flight: IntGauge,
    instantiations: IntCounterVec,
    reuses: IntCounterVec,
    instantiate_duration: HistogramVec,
    failures: IntCounterVec,
    rejections: IntCounterVec,
    guest_info: IntGaugeVec,
    swaps: IntCounterVec,
    swap_duration: HistogramVec,
    /// Reads of the guest config file, by what caused them: shows whether
    /// the directory watch works where the pod runs (else only polls count).
    config_checks: IntCounterVec,
    /// Seconds from process start to ready, set once at start-up.
    pub startup_seconds: Gauge,
    /// Open sessions, by transport.
    pub sessions_active: IntGaugeVec,
    sessions_opened: IntCounterVec,
    sessions_closed: IntCounterVec,
    sessions_refused: IntCounterVec,
    session_messages: IntCounterVec,
    session_call_duration: HistogramVec,
    /// Keys in the shared state (the state keeps it current).
    pub state_keys: IntGauge,
    /// Bytes (keys plus values) in the shared state, against `--state-max-bytes`.
    pub state_bytes: IntGauge,
}

impl Metrics {
    pub fn new(limits: &LimitValues) -> Result<Metrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("scalelab_http_requests_total", "HTTP requests answered, by guest and status code"),
            &["guest", "code"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new("scalelab_http_request_duration_seconds", "Time from request arrival to response head, by guest")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["guest"],
        )?;
        let in_flight =
            IntGauge::new("scalelab_http_requests_in_flight", "Requests admitted whose guest instance is still running")?;
        let instantiations = IntCounterVec::new(
            Opts::new("scalelab_guest_instantiations_total", "Guest instances created, by guest"),
            &["guest"],
        )?;
        let reuses = IntCounterVec::new(
            Opts::new(
                "scalelab_guest_instance_reuses_total",
                "Requests served by a warm instance that had served an earlier request, by guest",
            ),
            &["guest"],
        )?;
        let instantiate_duration = HistogramVec::new(
            HistogramOpts::new("scalelab_guest_instantiate_duration_seconds", "Time to create a guest instance, by guest")
                .buckets(INSTANTIATE_BUCKETS.to_vec()),
            &["guest"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new("scalelab_guest_failures_total", "Guest calls that failed, by guest and reason (deadline, memory, trap)"),
            &["guest", "reason"],
        )?;
        let rejections = IntCounterVec::new(
            Opts::new(
                "scalelab_http_rejections_total",
                "Requests (or connections) refused before reaching the guest, by reason (body_too_large, in_flight_limit, bad_body, connection_limit)",
            ),
            &["reason"],
        )?;
        let guest_info = IntGaugeVec::new(
            Opts::new("scalelab_guest_info", "The guest being served (value 1), with the sha256 of its file"),
            &["guest", "sha256"],
        )?;
        let swaps =
            IntCounterVec::new(Opts::new("scalelab_guest_swaps_total", "Guest swaps, by result (ok, rejected)"), &["result"])?;
        let swap_duration = HistogramVec::new(
            HistogramOpts::new(
                "scalelab_guest_swap_duration_seconds",
                "Time of a successful swap, by phase: compile (load, compile or cache, link, probe) and switch",
            )
            .buckets(vec![0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["phase"],
        )?;
        let config_checks = IntCounterVec::new(
            Opts::new(
                "scalelab_config_checks_total",
                "Reads of the guest config file, by trigger (event: a change in its directory; poll: --config-poll)",
            ),
            &["trigger"],
        )?;
        let startup_seconds =
            Gauge::new("scalelab_startup_seconds", "Seconds from process start until the guest was ready to serve")?;

        let sessions_active = IntGaugeVec::new(
            Opts::new("scalelab_sessions_active", "Open sessions, by transport (tcp, socket.io)"),
            &["transport"],
        )?;
        let sessions_opened =
            IntCounterVec::new(Opts::new("scalelab_sessions_opened_total", "Sessions opened, by transport"), &["transport"])?;
        let sessions_closed = IntCounterVec::new(
            Opts::new(
                "scalelab_sessions_closed_total",
                "Sessions closed, by reason (peer, error, guest, swapped, shutdown, slow_consumer)",
            ),
            &["reason"],
        )?;
        let sessions_refused = IntCounterVec::new(
            Opts::new(
                "scalelab_sessions_refused_total",
                "Connections refused before a session opened, by reason (session_limit, not_a_session_guest)",
            ),
            &["reason"],
        )?;
        let session_messages = IntCounterVec::new(
            Opts::new(
                "scalelab_session_messages_total",
                "Session messages, by direction: received (one read or WebSocket message) and sent",
            ),
            &["direction"],
        )?;
        let session_call_duration = HistogramVec::new(
            HistogramOpts::new(
                "scalelab_session_call_duration_seconds",
                "Time of one call into a session guest, by guest and call (opened, received, closed, tick, session_tick)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["guest", "call"],
        )?;
        let state_keys = IntGauge::new("scalelab_state_keys", "Keys in the shared state that guests keep in the host")?;
        let state_bytes =
            IntGauge::new("scalelab_state_bytes", "Bytes (keys plus values) in the shared state that guests keep in the host")?;

        for collector in [
            Box::new(sessions_active.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sessions_opened.clone()),
            Box::new(sessions_closed.clone()),
            Box::new(sessions_refused.clone()),
            Box::new(session_messages.clone()),
            Box::new(session_call_duration.clone()),
            Box::new(state_keys.clone()),
            Box::new(state_bytes.clone()),
            Box::new(requests.clone()),
            Box::new(request_duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(instantiations.clone()),
            Box::new(reuses.clone()),
            Box::new(instantiate_duration.clone()),
            Box::new(failures.clone()),
            Box::new(rejections.clone()),
            Box::new(guest_info.clone()),
            Box::new(swaps.clone()),
            Box::new(swap_duration.clone()),
            Box::new(config_checks.clone()),
            Box::new(startup_seconds.clone()),
        ] {
            registry.register(collector)?;
        }
        register_limits(&registry, limits)?;
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        registry.register(Box::new(ProcessCpu::new()?))?;

        // Make the label sets that exist before any traffic visible at once.
        for reason in [
            RejectReason::BodyTooLarge,
            RejectReason::InFlightLimit,
            RejectReason::BadBody,
            RejectReason::ConnectionLimit,
            RejectReason::BodyTimeout,
        ] {
            rejections.with_label_values(&[reason.as_str()]);
        }
        for result in ["ok", "rejected"] {
            swaps.with_label_values(&[result]);
        }
        for phase in ["compile", "switch"] {
            swap_duration.with_label_values(&[phase]);
        }
        for trigger in ["event", "poll"] {
            config_checks.with_label_values(&[trigger]);
        }
        for transport in ["tcp", "socket.io"] {
            sessions_active.with_label_values(&[transport]);
            sessions_opened.with_label_values(&[transport]);
        }
        for reason in CloseReason::ALL {
            sessions_closed.with_label_values(&[reason.as_str()]);
        }
        for reason in ["session_limit", "not_a_session_guest"] {
            sessions_refused.with_label_values(&[reason]);
        }
        for direction in ["received", "sent"] {
            session_messages.with_label_values(&[direction]);
        }

        Ok(Metrics {
            registry,
            requests,
            request_duration,
            in_flight,
            instantiations,
            reuses,
            instantiate_duration,
            failures,
            rejections,
            guest_info,
            swaps,
            swap_duration,
            config_checks,
            startup_seconds,
            sessions_active,
            sessions_opened,
            sessions_closed,
            sessions_refused,
            session_messages,
            session_call_duration,
            state_keys,
            state_bytes,
        })
    }

    /// The registry `/metrics` encodes (guest-defined metrics join it).
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    pub fn session_opened(&self, transport: &str) {
        self.sessions_opened.with_label_values(&[transport]).inc();
        self.sessions_active.with_label_values(&[transport]).inc();
    }

    pub fn session_closed(&self, transport: &str, reason: CloseReason) {
        self.sessions_active.with_label_values(&[transport]).dec();
        self.sessions_closed.with_label_values(&[reason.as_str()]).inc();
    }

    pub fn session_refused(&self, reason: &'static str) {
        self.sessions_refused.with_label_values(&[reason]).inc();
    }

    /// Counters of messages received and sent, resolved once.
    pub fn session_message_counters(&self) -> (IntCounter, IntCounter) {
        (self.session_messages.with_label_values(&["received"]), self.session_messages.with_label_values(&["sent"]))
    }

    /// Handles for one guest; also publishes it in `scalelab_guest_info`.
    pub fn for_guest(&self, guest: &str, sha256: &str) -> GuestMetrics {
        self.guest_info.with_label_values(&[guest, sha256]).set(1);
        let failure = |reason: FailureReason| self.failures.with_label_values(&[guest, reason.as_str()]);
        GuestMetrics {
            name: guest.to_string(),
            requests: self.requests.clone(),
            ok: std::sync::OnceLock::new(),
            request_duration: self.request_duration.with_label_values(&[guest]),
            instantiations: self.instantiations.with_label_values(&[guest]),
            reuses: self.reuses.with_label_values(&[guest]),
            instantiate_duration: self.instantiate_duration.with_label_values(&[guest]),
            deadline_failures: failure(FailureReason::Deadline),
            memory_failures: failure(FailureReason::Memory),
            trap_failures: failure(FailureReason::Trap),
            state_limit_failures: failure(FailureReason::StateLimit),
            session_calls: ["opened", "received", "closed", "tick", "session_tick"]
                .map(|call| self.session_call_duration.with_label_values(&[guest, call])),
        }
    }

    /// Counts a swap; a successful one also records its phases (ms).
    /// Counts one read of the guest config file (`trigger`: event or poll).
    pub fn config_checked(&self, trigger: &'static str) {
        self.config_checks.with_label_values(&[trigger]).inc();
    }

    pub fn swapped(&self, ok: bool, phases_ms: Option<(f64, f64)>) {
        self.swaps.with_label_values(&[if ok { "ok" } else { "rejected" }]).inc();
        if let Some((compile, switch)) = phases_ms {
            self.swap_duration.with_label_values(&["compile"]).observe(compile / 1e3);
            self.swap_duration.with_label_values(&["switch"]).observe(switch / 1e3);
        }
    }

    /// After a swap: only the new guest is reported as active.
    pub fn retire_guest(&self, old: &str, old_sha256: &str, new: &str, new_sha256: &str) {
        if (old, old_sha256) != (new, new_sha256) {
            let _ = self.guest_info.remove_label_values(&[old, old_sha256]);
        }
        self.guest_info.with_label_values(&[new, new_sha256]).set(1);
    }

    pub fn reject(&self, reason: RejectReason) {
        self.rejections.with_label_values(&[reason.as_str()]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

/// `scalelab_process_cpu_seconds_total`: this process's CPU time to the
/// clock tick (10 ms), read when scraped. The prometheus crate's
/// `process_cpu_seconds_total` counts whole seconds only, too coarse for a
/// rate over a few seconds (`scalelab report`'s steps, a 15 s scrape).
struct ProcessCpu {
    desc: prometheus::core::Desc,
}

const PROCESS_CPU: &str = "scalelab_process_cpu_seconds_total";
const PROCESS_CPU_HELP: &str = "User and system CPU time of this process, in seconds, to the clock tick";

impl ProcessCpu {
    fn new() -> Result<ProcessCpu> {
        let desc = prometheus::core::Desc::new(PROCESS_CPU.into(), PROCESS_CPU_HELP.into(), Vec::new(), Default::default())?;
        Ok(ProcessCpu { desc })
    }
}

impl prometheus::core::Collector for ProcessCpu {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let Ok(counter) = prometheus::Counter::new(PROCESS_CPU, PROCESS_CPU_HELP) else { return Vec::new() };
        counter.inc_by(crate::process_stats::read().1);
        prometheus::core::Collector::collect(&counter)
    }
}

fn register_limits(registry: &Registry, limits: &LimitValues) -> Result<()> {
    let gauge = |name: &str, help: &str, value: f64| -> Result<()> {
        let g = Gauge::new(name, help)?;
        g.set(value);
        registry.register(Box::new(g))?;
        Ok(())
    };
    gauge(
        "scalelab_limit_deadline_seconds",
        "Configured per-request deadline (0 when off)",
        limits.deadline.map_or(0.0, |d| d.as_secs_f64()),
    )?;
    gauge("scalelab_limit_memory_bytes", "Configured guest memory cap per request", limits.max_memory as f64)?;
    gauge("scalelab_limit_body_bytes", "Configured request body cap", limits.max_body as f64)?;
    gauge("scalelab_limit_in_flight", "Configured maximum of requests in flight", limits.max_in_flight as f64)?;
    Ok(())
}

/// Metric handles of one guest, resolved once.
#[derive(Clone)]
pub struct GuestMetrics {
    /// The guest label value, for the `code`-labelled counter.
    name: String,
    requests: IntCounterVec,
    /// The `code="200"` series of `requests`, resolved on the first 200:
    /// most answers are 200s, and this spares each a label lookup.
    ok: std::sync::OnceLock<IntCounter>,
    request_duration: Histogram,
    instantiations: IntCounter,
    reuses: IntCounter,
    instantiate_duration: Histogram,
    deadline_failures: IntCounter,
    memory_failures: IntCounter,
    trap_failures: IntCounter,
    state_limit_failures: IntCounter,
    /// Call durations of `opened`, `received`, `closed`, `tick`, `session_tick`, in that order.
    session_calls: [Histogram; 5],
}

impl GuestMetrics {
    pub fn answered(&self, status: u16, took: Duration) {
        let digits = status_digits(status);
        let code = || std::str::from_utf8(&digits).unwrap_or("invalid");
        if status == 200 {
            self.ok.get_or_init(|| self.requests.with_label_values(&[self.name.as_str(), code()])).inc();
        } else {
            self.requests.with_label_values(&[self.name.as_str(), code()]).inc();
        }
        self.request_duration.observe(took.as_secs_f64());
    }

    pub fn instantiated(&self, took: Duration) {
        self.instantiations.inc();
        self.instantiate_duration.observe(took.as_secs_f64());
    }

    pub fn session_call(&self, call: SessionCallKind, took: Duration) {
        self.session_calls[call as usize].observe(took.as_secs_f64());
    }

    pub fn reused(&self) {
        self.reuses.inc();
    }

    pub fn failed(&self, reason: FailureReason) {
        match reason {
            FailureReason::Deadline => &self.deadline_failures,
            FailureReason::Memory => &self.memory_failures,
            FailureReason::Trap => &self.trap_failures,
            FailureReason::StateLimit => &self.state_limit_failures,
        }
        .inc();
    }
}

/// The three ASCII digits of a status code (100..=999), without allocating.
fn status_digits(status: u16) -> [u8; 3] {
    let status = status.clamp(100, 999);
    [b'0' + (status / 100) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8]
}
