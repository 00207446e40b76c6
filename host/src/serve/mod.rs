//! `scalelab serve`: start-up in logged steps, the traffic accept loop, and
//! graceful shutdown. The parts of the serving side live beside it: the
//! HTTP path (`http`), sessions (`session`, over `tcp` and `socketio`), the
//! admin listener (`admin`), swaps (`swap`, from `watch` and the admin API),
//! the configuration file (`config`) and its precedence (`settings`).
//!
//! Start-up binds the listeners first (so probes answer while the guest
//! compiles), then builds the engine, loads the guest, instantiates it once
//! and runs its `setup` (retried while it fails: a database still starting);
//! only then does `/readyz` turn 200 and the traffic listener start accepting.
//! On SIGTERM/SIGINT readiness turns false at once, the listeners close,
//! connections finish their in-flight requests, every session is closed (its
//! guest's `closed` called), all bounded by `--drain-timeout`, and the process
//! exits 0.

pub mod accept;
pub mod admin;
mod coarse_timer;
pub mod config;
pub mod connection;
pub mod database_check;
pub mod http;
mod request_id;
pub mod respond;
pub mod session;
mod session_signals;
pub mod settings;
pub mod socketio;
pub mod swap;
pub mod tcp;
pub mod watch;

use crate::cli::{Explicit, ServeArgs};
use crate::metrics::{LimitValues, Metrics, RejectReason};
use crate::runtime::active::{Active, ActiveParts};
use crate::runtime::cache::CompileCache;
use crate::runtime::call::Limits;
use crate::runtime::compile_child::ChildCompiler;
use crate::runtime::engine::{self, EngineSettings};
use crate::runtime::guest::{self, Guest};
use crate::runtime::live::LiveGuest;
use crate::runtime::services::{ServiceLimits, Services};
use crate::runtime::shared_state::StateLimits;
use crate::runtime::state::Grants;
use crate::shutdown::Shutdown;
use admin::{Admin, Readiness};
use anyhow::{Context, Result, bail};
use config::{ConfigError, GuestConfig};
use futures_util::FutureExt;
use futures_util::future::Either;
use http::Handler;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use session::{SessionHost, SessionLimits};
use settings::{GrantsRequest, Settings, Source};
use socketio::SocketIo;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use swap::{Swapper, SwapperParts};
use tokio::net::TcpListener;
use watch::Watched;

pub async fn run(args: ServeArgs, explicit: Explicit, process_start: Instant) -> Result<()> {
    let mut shutdown = Shutdown::install()?;
    let config = StartConfig::read(&args, explicit)?;
    let settings = &config.settings;

    let listeners = Listeners::bind(&args).await?;

    let limits = Limits {
        deadline: settings.deadline.0,
        max_memory: usize::try_from(settings.max_memory).context("--max-memory is too large")?,
        instance_reuse: args.instance_reuse,
    };
    let metrics = Arc::new(Metrics::new(&LimitValues {
        deadline: limits.deadline,
        max_memory: settings.max_memory,
        max_body: args.max_body,
        max_in_flight: args.max_in_flight,
    })?);
    let services = Arc::new(Services::new(&metrics, service_limits(&args)?));
    let grants = Arc::new(config.grants.clone().open(&services.databases)?);
    let ready = Readiness::default();
    let admin = Arc::new(Admin {
        metrics: metrics.clone(),
        ready: ready.clone(),
        swapper: OnceLock::new(),
        token: admin_token(args.admin_token_file.as_deref())?,
    });
    tokio::spawn(admin::serve(listeners.admin, admin.clone(), args.header_read_timeout.0));

    let loaded = tokio::select! {
        loaded = load_first_guest(&args, &config, &limits, &grants, &services) => loaded?,
        signal = shutdown.recv() => {
            tracing::info!(signal, "shutdown requested during start-up; exiting");
            return Ok(());
        }
    };
    let common = Common { metrics, services, ready, admin };
    let serving = Serving::start(&args, &config, limits, grants, loaded, listeners.tcp, &common);

    let startup = process_start.elapsed();
    common.metrics.startup_seconds.set(startup.as_secs_f64());
    common.ready.set(true);
    tracing::info!(
        step = "ready",
        guest = %serving.guest,
        sha256 = %serving.sha256,
        startup_ms = startup.as_secs_f64() * 1e3,
        "ready to serve"
    );

    let heartbeat = socketio::Heartbeat { ping_interval: args.socketio_ping_interval, ping_timeout: args.socketio_ping_timeout };
    let socket_io = Arc::new(SocketIo::new(serving.session_host.clone(), heartbeat));
    let graceful = GracefulShutdown::new();
    let signal = tokio::select! {
        never = accept_traffic(&listeners.traffic, &serving.handler, &socket_io, &graceful, &args) => match never {},
        signal = shutdown.recv() => signal,
    };
    serving.shut_down(signal, listeners.traffic, graceful, &common, args.drain_timeout).await;
    Ok(())
}

/// What start-up makes before the guest loads, which serving shares.
struct Common {
    metrics: Arc<Metrics>,
    services: Arc<Services>,
    ready: Readiness,
    admin: Arc<Admin>,
}

/// The serving side once the first guest is loaded: the HTTP handler, the
/// session host and its listener, and what shutdown needs of them.
struct Serving {
    handler: Arc<Handler>,
    session_host: Arc<SessionHost>,
    /// The raw TCP listener's task, unless `--tcp-listen off`.
    tcp_task: Option<tokio::task::JoinHandle<()>>,
    /// Tells every session to close, at shutdown.
    close_sessions: tokio::sync::watch::Sender<bool>,
    /// The first guest's name and file hash, for the "ready" line.
    guest: String,
    sha256: String,
}

impl Serving {
    /// Makes the first guest live and starts what serves it: the database
    /// check, the HTTP handler, the swapper (admin API and config watch), the
    /// session host, its TCP listener and its ticks.
    fn start(
        args: &ServeArgs,
        config: &StartConfig,
        limits: Limits,
        grants: Arc<Grants>,
        loaded: Loaded,
        tcp: Option<TcpListener>,
        common: &Common,
    ) -> Serving {
        let Common { metrics, services, ready, admin } = common;
        let parts = ActiveParts {
            guest: loaded.guest,
            limits: limits.clone(),
            grants,
            source: loaded.path.display().to_string(),
            tick_override: config.file.tick_interval,
        };
        let active = Active::new(parts, metrics, services);
        let (guest, sha256) = (active.guest.name.clone(), active.guest.sha256.clone());
        let live = Arc::new(LiveGuest::new(active, args.max_in_flight, metrics.http.in_flight.clone()));
        tokio::spawn(database_check::run(live.clone(), ready.clone()));
        let handler = Arc::new(Handler::new(live.clone(), metrics.clone(), args.max_body));
        let swapper = Arc::new(Swapper::new(SwapperParts {
            engine: loaded.engine,
            epochs: limits.deadline.is_some(),
            linker: loaded.linker,
            uploads: args.guest.cache_dir.clone().unwrap_or_else(std::env::temp_dir).join("scalelab-uploads"),
            cache: loaded.cache,
            guests_dir: args.guest.guests_dir.clone(),
            live: live.clone(),
            metrics: metrics.clone(),
            services: services.clone(),
            max_memory_ceiling: config.settings.max_memory,
        }));
        let (close_sessions, sessions_closing) = tokio::sync::watch::channel(false);
        let session_host =
            Arc::new(SessionHost::new(live, services.clone(), metrics.clone(), session_limits(args), sessions_closing));
        let tcp_task = tcp.map(|listener| tokio::spawn(tcp::serve(listener, session_host.clone())));
        tokio::spawn(session_host.clone().run_signals());
        tokio::spawn(session_host.clone().run_ticks());
        let _ = admin.swapper.set(swapper.clone());
        let watched = Watched {
            path: config.path.clone(),
            last: config.text.clone(),
            pinned: config.settings.pinned(),
            database: args.database.clone(),
        };
        watch::spawn(watched, args.config_poll, swapper, metrics.clone());
        Serving { handler, session_host, tcp_task, close_sessions, guest, sha256 }
    }

    /// After `signal`: unready at once, no new connections (`traffic` is
    /// closed) or TCP sessions, every session told to close, then the drain.
    async fn shut_down(
        self,
        signal: &str,
        traffic: TcpListener,
        graceful: GracefulShutdown,
        common: &Common,
        drain_timeout: std::time::Duration,
    ) {
        common.ready.set(false);
        drop(traffic);
        if let Some(task) = self.tcp_task {
            task.abort();
        }
        tracing::info!(
            signal,
            in_flight = common.metrics.http.in_flight.get(),
            sessions = self.session_host.open_sessions(),
            drain_timeout = ?drain_timeout,
            "shutting down: not ready, no new connections, draining in-flight requests, closing sessions"
        );
        let _ = self.close_sessions.send(true);
        drain(graceful, &self.session_host, &common.metrics, drain_timeout).await;
    }
}

/// Waits, up to `timeout`, for the HTTP connections to finish their requests
/// and for every session to be closed (its guest's `closed` called).
async fn drain(graceful: GracefulShutdown, session_host: &SessionHost, metrics: &Metrics, timeout: std::time::Duration) {
    let drained = async { tokio::join!(graceful.shutdown(), session_host.closed()) };
    match tokio::time::timeout(timeout, drained).await {
        Ok(_) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!(
            in_flight = metrics.http.in_flight.get(),
            sessions = session_host.open_sessions(),
            "drain timeout reached; closing the remaining connections"
        ),
    }
}

/// The host's listeners, bound before anything else so that probes answer
/// while the guest compiles.
struct Listeners {
    traffic: TcpListener,
    admin: TcpListener,
    /// Raw TCP sessions, unless `--tcp-listen off`.
    tcp: Option<TcpListener>,
}

impl Listeners {
    async fn bind(args: &ServeArgs) -> Result<Listeners> {
        let traffic = bind(args.listen, "traffic").await?;
        let admin = bind(args.admin_listen, "admin").await?;
        let tcp = match args.tcp_listen.0 {
            Some(addr) => Some(bind(addr, "tcp").await?),
            None => None,
        };
        Ok(Listeners { traffic, admin, tcp })
    }
}

/// The configuration file as read at start-up, and the settings after precedence.
struct StartConfig {
    path: PathBuf,
    /// The file's text, to recognise a later change; `None` when there is no file.
    text: Option<String>,
    /// The parsed file (empty when there is none).
    file: GuestConfig,
    settings: Settings,
    /// The guest's environment, mounts and database.
    grants: GrantsRequest,
}

impl StartConfig {
    /// Reads the file (a missing default file is no error; a missing file
    /// named by --config is) and applies the precedence rule.
    fn read(args: &ServeArgs, explicit: Explicit) -> Result<StartConfig> {
        let path = args.config.clone().unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.config.is_none() => None,
            Err(e) => return Err(ConfigError { path, line: 0, message: format!("cannot read it: {e}") }.into()),
        };
        let file = text.as_deref().map(|text| GuestConfig::parse(&path, text)).transpose()?;
        let found = file.is_some();
        let file = file.unwrap_or_default();
        let settings = Settings::resolve(args, explicit, &file, &path)?;
        let grants = GrantsRequest::of(&file, &args.database, &path)?;
        settings.log(&path, found);
        tracing::info!(step = "config", database = %grants.database.label(), mounts = ?grants.mounts, "guest grants");
        Ok(StartConfig { path, text, file, settings, grants })
    }
}

/// What loading the first guest builds, which swaps reuse.
struct Loaded {
    engine: wasmtime::Engine,
    linker: wasmtime::component::Linker<crate::runtime::state::GuestState>,
    cache: CompileCache,
    guest: Guest,
    path: PathBuf,
}

/// Resolves the guest, configures the engine, compiles, links and probes
/// the guest, and sets it up, each step logged.
async fn load_first_guest(
    args: &ServeArgs,
    config: &StartConfig,
    limits: &Limits,
    grants: &Arc<Grants>,
    services: &Arc<Services>,
) -> Result<Loaded> {
    let settings = &config.settings;
    let path = guest::resolve(&settings.guest, args.guest.guests_dir.as_deref()).map_err(|e| match settings.guest_source {
        Source::File => anyhow::Error::new(watch::guest_error(&config.path, &config.file, &e)),
        _ => e,
    })?;
    tracing::info!(step = "resolve", guest = %path.display(), "guest file found");

    // One instance per call in flight, the idle ones a swapped-out guest
    // may still hold, and the start-up probe.
    let pool_slots = args.max_in_flight.saturating_add(crate::runtime::instances::MAX_IDLE as u32 + 1);
    let started = Instant::now();
    let engine_settings =
        EngineSettings { epoch_interruption: limits.deadline.is_some(), max_memory: settings.max_memory, pool_slots };
    let (engine, reservation) = engine::build(&engine_settings)?;
    if limits.deadline.is_some() {
        engine::spawn_epoch_ticker(&engine)?;
    }
    let linker = guest::linker(&engine)?;
    tracing::info!(
        step = "engine",
        pool_slots,
        deadline = ?limits.deadline,
        max_memory = settings.max_memory,
        memory_reservation = reservation.as_str(),
        duration_ms = started.elapsed().as_secs_f64() * 1e3,
        "engine configured"
    );

    let child = ChildCompiler::for_engine(args.compile_exe.as_deref(), &engine_settings, reservation);
    let cache = CompileCache::new(args.guest.cache_dir.clone(), !args.guest.no_cache).with_child(child);
    let guest = Guest::load(&engine, &linker, &cache, &path, limits.max_memory, grants, services).await?;
    set_up(&guest, &engine, limits, grants, services).await;
    Ok(Loaded { engine, linker, cache, guest, path })
}

/// Runs the guest's `setup` until it succeeds: its database may still be
/// starting (pods and their database start together in a cluster). The host
/// stays unready meanwhile, and each failure is logged.
async fn set_up(guest: &Guest, engine: &wasmtime::Engine, limits: &Limits, grants: &Arc<Grants>, services: &Arc<Services>) {
    while guest.setup(engine, limits.max_memory, grants, services, limits.deadline).await.is_err() {
        tracing::info!(step = "setup", retry_in = ?SETUP_RETRY, "retrying the guest's setup");
        tokio::time::sleep(SETUP_RETRY).await;
    }
}

/// Pause between two attempts at a guest's `setup` during start-up.
const SETUP_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Accepts traffic connections for ever, at most `--max-connections` at
/// once: HTTP/1.1 and h2c to the handler, socket.io upgrades to sessions.
/// Every connection is watched by `graceful`.
async fn accept_traffic(
    traffic: &TcpListener,
    handler: &Arc<Handler>,
    socket_io: &Arc<SocketIo>,
    graceful: &GracefulShutdown,
    args: &ServeArgs,
) -> std::convert::Infallible {
    let builder = connection::builder(args.header_read_timeout.0);
    let limit = Arc::new(tokio::sync::Semaphore::new(args.max_connections as usize));
    loop {
        let (stream, peer) = accept::next(traffic, "traffic").await;
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            handler.metrics().http.reject(RejectReason::ConnectionLimit);
            tracing::debug!(%peer, "connection refused: --max-connections reached");
            tokio::spawn(connection::refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (handler, socket_io) = (handler.clone(), socket_io.clone());
        // Either future as it is, with no async block around it: a block
        // would hold the request once more, and hyper copies the whole
        // future into the connection's state for every request.
        let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let response = if request.uri().path().starts_with(socketio::PATH) {
                Either::Left(socket_io.clone().accept(request, peer))
            } else {
                Either::Right(handler.clone().handle(request, peer.ip()))
            };
            response.map(Ok::<_, Infallible>)
        });
        let connection = graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
        tokio::spawn(async move {
            // Held until the connection ends (or is upgraded to a session).
            let _permit = permit;
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

/// Binds a listener and logs the address actually bound (port 0 picks one).
async fn bind(addr: std::net::SocketAddr, role: &'static str) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding the {role} listener to {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(step = "listen", role, addr = %local, "{role} listener bound");
    Ok(listener)
}

/// The admin token: from the file named by --admin-token-file, else from
/// SCALELAB_ADMIN_TOKEN; surrounding white space is ignored.
fn admin_token(file: Option<&Path>) -> Result<Option<String>> {
    let token = match file {
        Some(path) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("reading the admin token file {}", path.display()))?)
        }
        None => std::env::var("SCALELAB_ADMIN_TOKEN").ok(),
    };
    match token.map(|t| t.trim().to_string()) {
        Some(t) if t.is_empty() => bail!("the admin token is empty"),
        token => Ok(token),
    }
}

/// The bounds of every session, from the flags.
fn session_limits(args: &ServeArgs) -> SessionLimits {
    SessionLimits { drain: args.session_drain, write_timeout: args.session_write_timeout, max_sessions: args.max_sessions }
}

/// The bounds of the host services, from the flags.
fn service_limits(args: &ServeArgs) -> Result<ServiceLimits> {
    let size = |value: u64, flag: &str| usize::try_from(value).with_context(|| format!("{flag} is too large"));
    Ok(ServiceLimits {
        max_result: size(args.database.database_max_result, "--database-max-result")?,
        max_outgoing: size(args.session_max_outgoing, "--session-max-outgoing")?,
        state: StateLimits {
            max_entry: size(args.state_max_value, "--state-max-value")?,
            max_total: size(args.state_max_bytes, "--state-max-bytes")?,
        },
        max_metrics: args.guest_max_metrics as usize,
    })
}
