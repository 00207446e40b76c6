//! `scalelab serve`: configuration precedence, start-up in logged steps, the
//! traffic accept loop, and graceful shutdown.
//!
//! Start-up binds both listeners first (so probes answer while the guest
//! compiles), then builds the engine, loads the guest and instantiates it once;
//! only then does `/readyz` turn 200 and the traffic listener start accepting.
//! On SIGTERM/SIGINT readiness turns false at once, the listener closes,
//! connections finish their in-flight requests (bounded by
//! `--drain-timeout`), and the process exits 0.

use crate::admin::{self, Admin, Readiness};
use crate::cache::CompileCache;
use crate::cli::{Deadline, Explicit, ServeArgs};
use crate::config::{self, ConfigError, GuestConfig};
use crate::engine::{self, EngineSettings};
use crate::guest::{self, Guest};
use crate::handler::{Handler, Limits};
use crate::metrics::{LimitValues, Metrics};
use crate::services::Services;
use crate::session::SessionHost;
use crate::shutdown::Shutdown;
use crate::swap::{Active, Swapper, SwapperParts};
use crate::watch::{self, Pinned, Watched};
use crate::{socketio, tcp};
use anyhow::{Context, Result, bail};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

pub async fn run(args: ServeArgs, explicit: Explicit, process_start: Instant) -> Result<()> {
    let mut shutdown = Shutdown::install()?;

    // The configuration: flags and environment win over the file, the file
    // over defaults.
    let config_path = args.config.clone().unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    let text = match std::fs::read_to_string(&config_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.config.is_none() => None,
        Err(e) => return Err(ConfigError { path: config_path, line: 0, message: format!("cannot read it: {e}") }.into()),
    };
    let file = text.as_deref().map(|text| GuestConfig::parse(&config_path, text)).transpose()?;
    let file_config = file.clone().unwrap_or_default();
    let settings = Settings::resolve(&args, explicit, &file_config, &config_path)?;
    settings.log(&config_path, file.is_some());

    let traffic = bind(args.listen, "traffic").await?;
    let admin_listener = bind(args.admin_listen, "admin").await?;
    let tcp_listener = match args.tcp_listen.0 {
        Some(addr) => Some(bind(addr, "tcp").await?),
        None => None,
    };

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
    let services = Arc::new(Services::new(&metrics));
    let ready = Readiness::default();
    let admin = Arc::new(Admin {
        metrics: metrics.clone(),
        ready: ready.clone(),
        swapper: OnceLock::new(),
        token: admin_token(args.admin_token_file.as_deref())?,
    });
    tokio::spawn(admin::serve(admin_listener, admin.clone()));

    // One instance per call in flight, the idle ones a swapped-out guest
    // may still hold, and the start-up probe.
    let pool_slots = args.max_in_flight.saturating_add(crate::instances::MAX_IDLE as u32 + 1);
    let engine_settings =
        EngineSettings { epoch_interruption: limits.deadline.is_some(), max_memory: settings.max_memory, pool_slots };
    let start = async {
        let path = guest::resolve(&settings.guest, args.guest.guests_dir.as_deref()).map_err(|e| {
            if settings.guest_from_file { anyhow::Error::new(watch::guest_error(&config_path, &file_config, &e)) } else { e }
        })?;
        tracing::info!(step = "resolve", guest = %path.display(), "guest file found");

        let started = Instant::now();
        let engine = engine::build(&engine_settings)?;
        if limits.deadline.is_some() {
            engine::spawn_epoch_ticker(&engine)?;
        }
        let linker = guest::linker(&engine)?;
        tracing::info!(
            step = "engine",
            pool_slots,
            deadline = ?limits.deadline,
            max_memory = settings.max_memory,
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            "engine configured"
        );

        let cache = CompileCache::new(args.guest.cache_dir.clone(), !args.guest.no_cache);
        let guest = Guest::load(&engine, &linker, &cache, &path, limits.max_memory, &services).await?;
        anyhow::Ok((engine, linker, cache, guest, path))
    };
    let (engine, linker, cache, guest, path) = tokio::select! {
        loaded = start => loaded?,
        signal = shutdown.recv() => {
            tracing::info!(signal, "shutdown requested during start-up; exiting");
            return Ok(());
        }
    };

    let active = Active::new(
        guest,
        limits.clone(),
        &file_config.env,
        &metrics,
        &services,
        path.display().to_string(),
        file_config.tick_interval,
    );
    let (name, sha256) = (active.guest.name.clone(), active.guest.sha256.clone());
    let handler = Arc::new(Handler::new(active, metrics.clone(), args.max_body, args.max_in_flight));
    let swapper = Arc::new(Swapper::new(SwapperParts {
        engine,
        epochs: limits.deadline.is_some(),
        linker,
        uploads: args.guest.cache_dir.clone().unwrap_or_else(std::env::temp_dir).join("scalelab-uploads"),
        cache,
        guests_dir: args.guest.guests_dir.clone(),
        handler: handler.clone(),
        metrics: metrics.clone(),
        services: services.clone(),
        max_memory_ceiling: settings.max_memory,
    }));
    let (close_sessions, sessions_closing) = tokio::sync::watch::channel(false);
    let session_host = Arc::new(SessionHost::new(
        handler.clone(),
        services.clone(),
        metrics.clone(),
        args.session_drain,
        args.max_sessions,
        sessions_closing,
    ));
    let tcp_task = tcp_listener.map(|listener| tokio::spawn(tcp::serve(listener, session_host.clone())));
    tokio::spawn(session_host.clone().run_ticks());
    let _ = admin.swapper.set(swapper.clone());
    let watched = Watched {
        path: config_path,
        last: text,
        pinned: Pinned { guest: !settings.guest_from_file, deadline: explicit.deadline, max_memory: explicit.max_memory },
    };
    tokio::spawn(watch::run(watched, args.config_poll, swapper, metrics.clone()));

    let startup = process_start.elapsed();
    metrics.startup_seconds.set(startup.as_secs_f64());
    ready.set(true);
    tracing::info!(
        step = "ready",
        guest = %name,
        sha256 = %sha256,
        startup_ms = startup.as_secs_f64() * 1e3,
        "ready to serve"
    );

    let heartbeat = socketio::Heartbeat { ping_interval: args.socketio_ping_interval, ping_timeout: args.socketio_ping_timeout };
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let signal = loop {
        tokio::select! {
            accepted = traffic.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let session_host = session_host.clone();
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let handler = handler.clone();
                    let session_host = session_host.clone();
                    async move {
                        if request.uri().path().starts_with(socketio::PATH) {
                            return Ok::<_, Infallible>(socketio::accept(request, session_host, peer, heartbeat));
                        }
                        Ok::<_, Infallible>(handler.handle(request).await)
                    }
                });
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            signal = shutdown.recv() => break signal,
        }
    };

    ready.set(false);
    drop(traffic);
    if let Some(task) = tcp_task {
        task.abort();
    }
    tracing::info!(
        signal,
        in_flight = metrics.in_flight.get(),
        sessions = session_host.open_sessions(),
        drain_timeout = ?args.drain_timeout,
        "shutting down: not ready, no new connections, draining in-flight requests, closing sessions"
    );
    let _ = close_sessions.send(true);
    let sessions_closed = async {
        while session_host.open_sessions() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let drained = async { tokio::join!(graceful.shutdown(), sessions_closed) };
    match tokio::time::timeout(args.drain_timeout, drained).await {
        Ok(_) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!(in_flight = metrics.in_flight.get(), "drain timeout reached; closing the remaining connections"),
    }
    Ok(())
}

/// Binds a listener and logs the address actually bound (port 0 picks one).
async fn bind(addr: std::net::SocketAddr, role: &'static str) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding the {role} listener to {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(step = "listen", role, addr = %local, "{role} listener bound");
    Ok(listener)
}

/// The start-up settings after precedence: flag or environment, then the
/// config file, then the default.
struct Settings {
    guest: String,
    /// `guest` came from the config file (errors point at its line);
    /// otherwise --guest or SCALELAB_GUEST pins it and file changes cannot swap it.
    guest_from_file: bool,
    deadline: Deadline,
    deadline_source: &'static str,
    max_memory: u64,
    max_memory_source: &'static str,
}

impl Settings {
    fn resolve(args: &ServeArgs, explicit: Explicit, file: &GuestConfig, path: &Path) -> Result<Settings> {
        let (guest, guest_from_file) = match (&args.guest.guest, &file.guest) {
            (Some(guest), _) => (guest.clone(), false),
            (None, Some(guest)) => (guest.clone(), true),
            (None, None) => {
                return Err(ConfigError {
                    path: path.into(),
                    line: 0,
                    message: "no guest to serve: give --guest, SCALELAB_GUEST, or `guest = \"<name>\"` in this file".into(),
                }
                .into());
            }
        };
        let (deadline, deadline_source) = choose(explicit.deadline, args.engine.deadline, file.deadline);
        let (max_memory, max_memory_source) = choose(explicit.max_memory, args.engine.max_memory, file.max_memory);
        Ok(Settings { guest, guest_from_file, deadline, deadline_source, max_memory, max_memory_source })
    }

    fn log(&self, path: &Path, file_exists: bool) {
        tracing::info!(
            step = "config",
            config = %path.display(),
            config_found = file_exists,
            guest = %self.guest,
            guest_source = if self.guest_from_file { "config file" } else { "flag or environment" },
            deadline = ?self.deadline.0,
            deadline_source = self.deadline_source,
            max_memory = self.max_memory,
            max_memory_source = self.max_memory_source,
            "configuration (precedence: flag or environment, then config file, then default)"
        );
    }
}

/// A setting after precedence, and where it came from: the flag's value when
/// it was given (on the command line or in the environment), else the file's,
/// else the flag's default.
fn choose<T>(flag_given: bool, flag: T, file: Option<T>) -> (T, &'static str) {
    match (flag_given, file) {
        (true, _) => (flag, "flag or environment"),
        (false, Some(value)) => (value, "config file"),
        (false, None) => (flag, "default"),
    }
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
