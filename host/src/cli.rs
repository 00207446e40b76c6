//! Command-line interface: every flag of every subcommand, each with its
//! `SCALELAB_*` environment twin (how a Kubernetes Deployment configures a pod).
//! Flags win over the environment; defaults apply last.

use crate::clients::scheduling::Scheduling;
use clap::{Args, Parser, Subcommand, ValueEnum};
pub use guest_config::{Deadline, parse_bytes, parse_deadline, parse_duration};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "scalelab", version, about = "Runs WebAssembly workloads for Kubernetes scaling experiments")]
pub struct Cli {
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, global = true, env = "SCALELAB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a wasi:http guest on the traffic port, with probes and metrics on the admin port.
    Serve(Box<ServeArgs>),
    /// Compile a guest ahead of time into the compile cache (or to --output).
    Compile(CompileArgs),
    /// Internal: what a serving host runs as a child process to compile a
    /// guest (see `runtime::compile_child`).
    #[command(hide = true)]
    CompileChild(CompileChildArgs),
    /// Drive HTTP load at URLs and report latency percentiles, throughput and errors.
    Load(LoadArgs),
    /// Simulate many long-lived clients from one process.
    Swarm(SwarmArgs),
    /// Measure what one pod of an HTTP guest can take (a staircase of load up to the knee), project what
    /// its overlay's autoscaler does with it, and write an HTML page and JSON.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "The load, one kind per report:\n\
  --rates    open-model HTTP requests/s of URL (an http:// URL of the guest's route); latency is the response time\n\
  --clients  socket.io clients held at URL (the server's http:// address); latency is the gap between a client's ticks\n\
  --engines  engines of the heartbeat broker at URL (host:port); latency is the registration time\n\
Each step is held for --step after --warmup; the staircase stops one step past the knee (p99 over --slo-p99, or\n\
more than 0.1% errors). With --kube it also records the cluster's HPA and Deployment every --kube-interval.")]
pub struct ReportArgs {
    /// The guest's traffic: an http:// URL (the route to load, or the socket.io server), or the broker's host:port.
    pub url: String,

    /// The target host's metrics (its admin port's /metrics): CPU, RSS and the guest's signals around each step.
    #[arg(long)]
    pub metrics_url: String,

    /// The guest's overlay, rendered (`kubectl kustomize k8s/overlays/prime > prime.yaml`): the
    /// autoscaler's settings come from it. Without it, no projection.
    #[arg(long)]
    pub overlay: Option<PathBuf>,

    /// HTTP: offered rates (requests/s), one step each, in order, until a step misses the SLO.
    #[arg(long, value_delimiter = ',', default_value = "25,50,100,200,400,800,1600,3200,6400,12800", conflicts_with_all = ["clients", "engines"])]
    pub rates: Vec<f64>,

    /// socket.io: clients held at each step (each step keeps the clients before it).
    #[arg(long, value_delimiter = ',', conflicts_with = "engines")]
    pub clients: Option<Vec<u32>>,

    /// Broker: engines held at each step (each step keeps the engines before it).
    #[arg(long, value_delimiter = ',')]
    pub engines: Option<Vec<u32>>,

    /// Broker: each engine's heartbeat interval.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub heartbeat: Duration,

    /// A metric of the guest to record at each step (a gauge's value, a `_total` counter's rate);
    /// repeat for more. The metric an autoscaler's query follows is recorded without it.
    #[arg(long = "signal")]
    pub signals: Vec<String>,

    /// How long each step is measured.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub step: Duration,

    /// Load at the step's level before it is measured (not recorded).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// The SLO: a step meets it when its p99 is at most this (and errors under 0.1%).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub slo_p99: Duration,

    /// Where to write: OUT.html and OUT.json.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,

    /// HTTP: a request (including its whole body) that takes longer fails as `timeout`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Also record the cluster's view while the staircase runs: the HPA's current metrics and
    /// desired/current replicas and the Deployment's ready replicas (kubeconfig or in-cluster account).
    #[arg(long)]
    pub kube: bool,

    /// --kube: the namespace [default: the overlay's, else the kube context's].
    #[arg(long, requires = "kube")]
    pub namespace: Option<String>,

    /// --kube: the HorizontalPodAutoscaler [default: the overlay's; KEDA's `keda-hpa-<ScaledObject>`].
    #[arg(long, requires = "kube")]
    pub hpa: Option<String>,

    /// --kube: the Deployment [default: the one the overlay's autoscaler scales, else `scalelab`].
    #[arg(long, requires = "kube")]
    pub deployment: Option<String>,

    /// --kube: time between two readings of the cluster.
    #[arg(long, default_value = "5s", value_parser = parse_duration, requires = "kube")]
    pub kube_interval: Duration,
}

#[derive(Debug, Args)]
pub struct SwarmArgs {
    #[command(subcommand)]
    pub kind: SwarmKind,

    /// How the kernel schedules the swarm's threads: `batch` (SCHED_BATCH) never
    /// preempts a server running on the same machine when an event arrives, so
    /// the swarm disturbs what it measures less; `normal` is Linux's default.
    #[arg(long, global = true, env = "SCALELAB_SWARM_SCHEDULING", value_enum, default_value_t = Scheduling::Batch)]
    pub scheduling: Scheduling,
}

#[derive(Debug, Subcommand)]
pub enum SwarmKind {
    /// Engines of the heartbeat broker protocol, over raw TCP.
    Engines(EnginesArgs),
    /// socket.io clients (WebSocket transport) that hold their connection and count events.
    Sockets(SocketsArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Each client connects to <url>/socket.io/ (EIO=4, WebSocket), answers pings, counts the\n\
events it receives for --hold (or until --ticks whole ticks), then disconnects. The summary gives, over\n\
the clients, the events per second each received (min / p1 / median): a server falling behind shows as\n\
low minimums; the fewest ticks one client got; and events out of order (a `clock` not followed by its\n\
`value`, or a clock going backwards).")]
pub struct SocketsArgs {
    /// The server's HTTP address, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "SCALELAB_SWARM_URL")]
    pub url: String,

    /// Clients to open.
    #[arg(long, env = "SCALELAB_SWARM_CLIENTS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub clients: u32,

    /// Pause between starting two clients.
    #[arg(long, env = "SCALELAB_SWARM_SPAWN_INTERVAL", default_value = "10ms", value_parser = parse_duration)]
    pub spawn_interval: Duration,

    /// How long each client stays connected (with --ticks: at the most).
    #[arg(long, env = "SCALELAB_SWARM_HOLD", default_value = "1m", value_parser = parse_duration)]
    pub hold: Duration,

    /// Disconnect each client once it has received this many whole ticks (a
    /// `clock` event and the `value` that follows it), before --hold if it can.
    #[arg(long, env = "SCALELAB_SWARM_TICKS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ticks: Option<u64>,

    /// Address of the swarm's own /metrics; `off` to disable it.
    #[arg(long, env = "SCALELAB_SWARM_METRICS_LISTEN", default_value = "0.0.0.0:9091", value_parser = parse_listen)]
    pub metrics_listen: Listen,

    /// `table` for people, `json` for scripts.
    #[arg(long, env = "SCALELAB_SWARM_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
#[command(after_help = "Each engine registers (NewEngine:<id>:0), waits for SUCCESS, heartbeats in sequence,\n\
pauses for DOWORK:<ms>, ends on KILL:<code>, and reconnects with capped exponential backoff when the\n\
broker goes away. Runs until --duration or Ctrl-C, then prints a summary.")]
pub struct EnginesArgs {
    /// The broker's TCP address, `host:port`.
    #[arg(long, env = "SCALELAB_SWARM_BROKER")]
    pub broker: String,

    /// Engines to simulate.
    #[arg(long, env = "SCALELAB_SWARM_ENGINES", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub engines: u32,

    /// Engine ids are <prefix><n>, n = 1..=engines [default: "$HOSTNAME-", so
    /// that replicas of a Deployment do not collide; "engine-" without HOSTNAME].
    #[arg(long, env = "SCALELAB_SWARM_ID_PREFIX")]
    pub id_prefix: Option<String>,

    /// Interval between an engine's heartbeats.
    #[arg(long, env = "SCALELAB_SWARM_HEARTBEAT", default_value = "10s", value_parser = parse_duration)]
    pub heartbeat: Duration,

    /// Engines started per second (`500/s` or `500`).
    #[arg(long, env = "SCALELAB_SWARM_RAMP", default_value = "500/s", value_parser = parse_per_second)]
    pub ramp: f64,

    /// Stop after this long [default: run until Ctrl-C or SIGTERM].
    #[arg(long, env = "SCALELAB_SWARM_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Burn CPU for the length of each DOWORK instead of only pausing.
    #[arg(long, env = "SCALELAB_SWARM_BURN")]
    pub burn: bool,

    /// Longest wait between reconnection attempts.
    #[arg(long, env = "SCALELAB_SWARM_MAX_BACKOFF", default_value = "10s", value_parser = parse_duration)]
    pub max_backoff: Duration,

    /// Address of the swarm's own /metrics; `off` to disable it.
    #[arg(long, env = "SCALELAB_SWARM_METRICS_LISTEN", default_value = "0.0.0.0:9091", value_parser = parse_listen)]
    pub metrics_listen: Listen,

    /// `table` for people, `json` for scripts.
    #[arg(long, env = "SCALELAB_SWARM_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

fn parse_per_second(s: &str) -> Result<f64, String> {
    let number = s.strip_suffix("/s").unwrap_or(s);
    match number.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("{s:?} is not a rate such as 500/s")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
#[command(after_help = "Closed model: --concurrency C with --duration D and/or --requests N.\n\
Open model: --rate R (requests/s), or --rate A..B --ramp D to ramp linearly; latency counts from each\n\
request's scheduled start.\n\
Exit status: 0 when every threshold held, 1 when one did not, 2 for a bad command line.")]
pub struct LoadArgs {
    /// URLs to load, picked with equal weight (or use --scenario).
    pub urls: Vec<String>,

    /// A TOML (or .json) file of weighted requests: [[request]] url, method, headers, body, weight.
    #[arg(long)]
    pub scenario: Option<PathBuf>,

    /// HTTP method for the URLs.
    #[arg(long, short = 'X', default_value = "GET")]
    pub method: String,

    /// A request header, `NAME: VALUE`; repeat for more.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,

    /// Request body; `{{random}}` is replaced by a random number per request.
    #[arg(long)]
    pub body: Option<String>,

    /// Request body from a file.
    #[arg(long)]
    pub body_file: Option<PathBuf>,

    /// Closed model: requests in flight at once (one connection each).
    #[arg(long, short = 'c', default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// How long to run (`30s`, `2m`).
    #[arg(long, short = 'd', value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// How many requests to send in all.
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Open model: arrival rate in requests/s, or `A..B` with --ramp.
    #[arg(long)]
    pub rate: Option<String>,

    /// Open model: ramp the rate from A to B over this long, then hold B.
    #[arg(long, value_parser = parse_duration)]
    pub ramp: Option<Duration>,

    /// Open model: most requests out at once; later ones wait (and their wait counts as latency).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_outstanding: u32,

    /// A request with no complete response after this long fails as `timeout`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    #[arg(long)]
    pub http2: bool,

    /// `table` for people, `json` for the whole result with a per-second series.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Fail (exit 1) when (transport errors + 5xx) / requests is above this (0..1).
    #[arg(long, value_parser = parse_fraction)]
    pub max_error_rate: Option<f64>,

    /// Fail (exit 1) when the p99 latency is above this (`200ms`).
    #[arg(long, value_parser = parse_duration)]
    pub max_p99: Option<Duration>,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1 (0.01 = 1%)")),
    }
}

/// Which guest to run and where compiled code is cached.
#[derive(Debug, Args)]
pub struct GuestArgs {
    /// Guest to run: a name (`prime` -> <guests-dir>/prime.wasm) or a path to a
    /// `.wasm` component or a precompiled `.cwasm` [serve: or `guest` in the config file].
    #[arg(long, env = "SCALELAB_GUEST")]
    pub guest: Option<String>,

    /// Directory that guest names resolve in [default: `guests/` next to the
    /// binary, then `../guests/`].
    #[arg(long, env = "SCALELAB_GUESTS_DIR")]
    pub guests_dir: Option<PathBuf>,

    /// Directory of the compile cache [default: $XDG_CACHE_HOME/scalelab,
    /// ~/.cache/scalelab, or a scalelab folder in the temp dir].
    #[arg(long, env = "SCALELAB_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile on every start; neither read nor write the compile cache.
    #[arg(long, env = "SCALELAB_NO_CACHE")]
    pub no_cache: bool,
}

/// Settings that shape the compiled code, so `serve` and `compile` must agree
/// on them for a cached artefact to be reused.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Per-request deadline (`200ms`, `5s`); `off` disables it and the epoch
    /// interruption checks it needs in compiled code.
    #[arg(long, env = "SCALELAB_DEADLINE", default_value = "5s", value_parser = parse_deadline)]
    pub deadline: Deadline,

    /// Linear memory one request's guest instance may use (`64MiB`, `512KiB`).
    #[arg(long, env = "SCALELAB_MAX_MEMORY", default_value = "64MiB", value_parser = parse_bytes)]
    pub max_memory: u64,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub guest: GuestArgs,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// The guest configuration file (a mounted ConfigMap), watched for
    /// changes; flags and environment win over it [default:
    /// /etc/scalelab/guest.toml, where a missing file is not an error].
    #[arg(long, env = "SCALELAB_CONFIG")]
    pub config: Option<PathBuf>,

    /// How often the config file is re-read besides inotify events.
    #[arg(long, env = "SCALELAB_CONFIG_POLL", default_value = "2s", value_parser = parse_duration)]
    pub config_poll: Duration,

    /// File holding the bearer token of `PUT /admin/guest` (a mounted
    /// Secret); `SCALELAB_ADMIN_TOKEN` may hold the token itself. Without
    /// either, the route answers 403.
    #[arg(long, env = "SCALELAB_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Address of the HTTP traffic listener (port 0 picks a free port).
    #[arg(long, env = "SCALELAB_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address of the raw TCP listener of session guests (such as `broker`);
    /// `off` to disable it.
    #[arg(long, env = "SCALELAB_TCP_LISTEN", default_value = "0.0.0.0:1337", value_parser = parse_listen)]
    pub tcp_listen: Listen,

    /// Most sessions (TCP connections of a session guest) open at once; more are refused.
    #[arg(long, env = "SCALELAB_MAX_SESSIONS", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions: u32,

    /// How long sessions stay on a swapped-out guest before they are closed
    /// with the reason `guest swapped`.
    #[arg(long, env = "SCALELAB_SESSION_DRAIN", default_value = "30s", value_parser = parse_duration)]
    pub session_drain: Duration,

    /// Most bytes waiting to be written to one session (a peer that stops
    /// reading while the guest keeps sending); a session over it is closed
    /// as a slow consumer.
    #[arg(long, env = "SCALELAB_SESSION_MAX_OUTGOING", default_value = "1MiB", value_parser = parse_bytes)]
    pub session_max_outgoing: u64,

    /// How long one write to a session's peer may stay blocked (a peer that
    /// reads nothing, or a long-polling client that stops polling, while
    /// the guest waits to send); then the session is closed as a slow consumer.
    #[arg(long, env = "SCALELAB_SESSION_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub session_write_timeout: Duration,

    /// Largest entry (key plus value) a guest may write into the shared
    /// state; a bigger write fails the guest's call (reason `state_limit`).
    #[arg(long, env = "SCALELAB_STATE_MAX_VALUE", default_value = "1MiB", value_parser = parse_bytes)]
    pub state_max_value: u64,

    /// Most bytes (keys plus values) the shared state holds in all; a write
    /// past it fails the guest's call (reason `state_limit`).
    #[arg(long, env = "SCALELAB_STATE_MAX_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub state_max_bytes: u64,

    /// Most metrics guests may declare (each is a series kept for the life
    /// of the process); `declare` fails past it.
    #[arg(long, env = "SCALELAB_GUEST_MAX_METRICS", default_value_t = 1000)]
    pub guest_max_metrics: u32,

    /// socket.io clients (at /socket.io/ on the traffic port) are pinged this often.
    #[arg(long, env = "SCALELAB_SOCKETIO_PING_INTERVAL", default_value = "25s", value_parser = parse_duration)]
    pub socketio_ping_interval: Duration,

    /// A socket.io client that does not answer a ping within this long is disconnected.
    #[arg(long, env = "SCALELAB_SOCKETIO_PING_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub socketio_ping_timeout: Duration,

    /// Address of the admin listener: /healthz, /readyz, /metrics.
    #[arg(long, env = "SCALELAB_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,

    /// A client must send a request's whole head (request line and headers)
    /// within this long, on the traffic and the admin port; a connection that
    /// does not (a slowloris, an idle keep-alive connection) is closed;
    /// `off` waits for ever.
    #[arg(long, env = "SCALELAB_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_deadline)]
    pub header_read_timeout: Deadline,

    /// Most connections open at once on the traffic port (idle keep-alive
    /// ones included); a connection beyond it gets a 503 and is closed.
    /// socket.io sessions count here only until their upgrade (then
    /// `--max-sessions` applies).
    #[arg(long, env = "SCALELAB_MAX_CONNECTIONS", default_value_t = 25_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Largest request body accepted; larger ones get 413.
    #[arg(long, env = "SCALELAB_MAX_BODY", default_value = "1MiB", value_parser = parse_bytes)]
    pub max_body: u64,

    /// Most requests served at once; more get 503. Also sizes the instance pool.
    #[arg(long, env = "SCALELAB_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// Requests one guest instance may serve before it is replaced; 1 gives
    /// every request a fresh instance (strict isolation, slower).
    #[arg(long, env = "SCALELAB_INSTANCE_REUSE", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub instance_reuse: u32,

    /// Runtime worker threads [default: the CPUs this process may use, cgroup
    /// CPU quota and CPU affinity respected].
    #[arg(long, env = "SCALELAB_WORKERS", value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: Option<u32>,

    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "SCALELAB_DRAIN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Not a flag: the scalelab binary, set by `main`, so that guests are
    /// compiled in a child process running it (`compile-child`). `None`
    /// (a host run from the library, as in unit tests) compiles in-process.
    #[arg(skip)]
    pub compile_exe: Option<PathBuf>,
}

/// The database behind the `sql` host service. Each of the first three wins
/// over its key in the config file's `[database]` table.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite:<file>` (a relative file is in --data-dir), `postgres://user@host:port/db`,
    /// or `off` [default: `[database] url` in the config file, else sqlite:scalelab.db].
    #[arg(long, env = "SCALELAB_DATABASE")]
    pub database: Option<String>,

    /// File holding the Postgres password (a mounted Secret) [or `[database] password_file`].
    #[arg(long, env = "SCALELAB_DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,

    /// Most connections in the database pool, shared by every instance
    /// [default: `[database] pool_size`, else 10].
    #[arg(long, env = "SCALELAB_DATABASE_POOL_SIZE", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub database_pool_size: Option<u32>,

    /// Largest result one SQL query may return; larger ones fail as `too-large`.
    #[arg(long, env = "SCALELAB_DATABASE_MAX_RESULT", default_value = "1MiB", value_parser = parse_bytes)]
    pub database_max_result: u64,

    /// Where SQLite files with a relative path live; it must survive restarts
    /// (a volume in Kubernetes) [default: $XDG_DATA_HOME/scalelab,
    /// ~/.local/share/scalelab, or /var/lib/scalelab; the image sets /var/lib/scalelab].
    #[arg(long, env = "SCALELAB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub guest: GuestArgs,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// Write the precompiled `.cwasm` here instead of into the compile cache.
    #[arg(long, short)]
    pub output: Option<PathBuf>,

    /// The memory reservation of the hosts that will load the code:
    /// `guarded` (4 GiB per memory, no bounds checks) or `checked` (where a
    /// host falls back when its address space is limited, as under `ulimit
    /// -v`; its start-up log says `memory_reservation`) [default: guarded
    /// when this machine's address space allows it].
    #[arg(long, env = "SCALELAB_MEMORY_RESERVATION")]
    pub memory_reservation: Option<crate::runtime::engine::Reservation>,
}

/// The settings of the serving host's engine that shape compiled code, so
/// that the child's code loads into that engine. The guest comes on stdin.
#[derive(Debug, Args)]
pub struct CompileChildArgs {
    /// Where to write the compiled component.
    #[arg(long)]
    pub output: PathBuf,

    /// Whether compiled code checks the epoch (the host has a deadline).
    #[arg(long, action = clap::ArgAction::Set)]
    pub epoch_interruption: bool,

    /// The host's largest linear memory, in bytes.
    #[arg(long)]
    pub max_memory: u64,

    /// The host's memory reservation (`guarded` or `checked`).
    #[arg(long)]
    pub memory_reservation: crate::runtime::engine::Reservation,
}

/// Which serve settings came from a flag or the environment (and so win over
/// the config file), as opposed to defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Explicit {
    pub deadline: bool,
    pub max_memory: bool,
}

impl Explicit {
    pub fn of(matches: &clap::ArgMatches) -> Explicit {
        let given = |id: &str| {
            matches!(
                matches.value_source(id),
                Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
            )
        };
        Explicit { deadline: given("deadline"), max_memory: given("max_memory") }
    }
}

/// A listener address, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    if matches!(s, "off" | "none") {
        return Ok(Listen(None));
    }
    s.parse().map(|a| Listen(Some(a))).map_err(|e| format!("{e} (expected ADDRESS:PORT such as 0.0.0.0:1337, or off)"))
}

impl EngineArgs {
    /// The engine settings these flags imply, with a pool of `pool_slots` instances.
    pub fn engine_settings(&self, pool_slots: u32) -> crate::runtime::engine::EngineSettings {
        crate::runtime::engine::EngineSettings {
            epoch_interruption: self.deadline.0.is_some(),
            max_memory: self.max_memory,
            pool_slots,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_twins_exist_for_every_serve_flag() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let serve = cmd.find_subcommand("serve").unwrap();
        for arg in serve.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            let expected = format!("SCALELAB_{}", id.to_uppercase());
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(expected.as_str()), "--{id} needs the env twin {expected}");
        }
    }
}
