//! `scalelab serve`: start-up in logged steps, the traffic accept loop, and
//! graceful shutdown.
//!
//! Start-up binds both listeners first (so probes answer while the guest
//! compiles), then builds the engine, loads the guest and instantiates it once;
//! only then does `/readyz` turn 200 and the traffic listener start accepting.
//! On SIGTERM/SIGINT readiness turns false at once, the listener closes,
//! connections finish their in-flight requests (bounded by
//! `--drain-timeout`), and the process exits 0.

use crate::admin::{self, Readiness};
use crate::cache::CompileCache;
use crate::cli::ServeArgs;
use crate::guest::{self, Guest};
use crate::handler::{Handler, Limits};
use crate::metrics::{LimitValues, Metrics};
use crate::shutdown::Shutdown;
use crate::engine;
use anyhow::{Context, Result};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

pub async fn run(args: ServeArgs, process_start: Instant) -> Result<()> {
    let mut shutdown = Shutdown::install()?;

    let traffic = bind(args.listen, "traffic").await?;
    let admin_listener = bind(args.admin_listen, "admin").await?;

    let max_memory = usize::try_from(args.engine.max_memory).context("--max-memory is too large")?;
    let limits = Limits {
        deadline: args.engine.deadline.0,
        max_memory,
        max_body: args.max_body,
        instance_reuse: args.instance_reuse,
    };
    let metrics = Arc::new(Metrics::new(&LimitValues {
        deadline: limits.deadline,
        max_memory: args.engine.max_memory,
        max_body: args.max_body,
        max_in_flight: args.max_in_flight,
    })?);
    let ready = Readiness::default();
    tokio::spawn(admin::serve(admin_listener, metrics.clone(), ready.clone()));

    // One more slot than requests in flight: the start-up probe instance.
    let pool_slots = args.max_in_flight.saturating_add(1);
    let start = async {
        let path = guest::resolve(&args.guest.guest, args.guest.guests_dir.as_deref())?;
        tracing::info!(step = "resolve", guest = %path.display(), "guest file found");

        let started = Instant::now();
        let engine = engine::build(&args.engine.engine_settings(pool_slots))?;
        if limits.deadline.is_some() {
            engine::spawn_epoch_ticker(&engine)?;
        }
        let linker = guest::linker(&engine)?;
        tracing::info!(
            step = "engine",
            pool_slots,
            deadline = ?limits.deadline,
            max_memory = args.engine.max_memory,
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            "engine configured"
        );

        let cache = CompileCache::new(args.guest.cache_dir.clone(), !args.guest.no_cache);
        Guest::load(&engine, &linker, &cache, &path, max_memory).await
    };
    let guest = tokio::select! {
        guest = start => Arc::new(guest?),
        signal = shutdown.recv() => {
            tracing::info!(signal, "shutdown requested during start-up; exiting");
            return Ok(());
        }
    };

    let handler = Arc::new(Handler::new(&guest, metrics.clone(), limits, args.max_in_flight));
    let startup = process_start.elapsed();
    metrics.startup_seconds.set(startup.as_secs_f64());
    ready.set(true);
    tracing::info!(
        step = "ready",
        guest = %guest.name,
        sha256 = %guest.sha256,
        startup_ms = startup.as_secs_f64() * 1e3,
        "ready to serve"
    );

    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let signal = loop {
        tokio::select! {
            accepted = traffic.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let service = service_fn(move |request| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler.handle(request).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
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
    tracing::info!(
        signal,
        in_flight = metrics.in_flight.get(),
        drain_timeout = ?args.drain_timeout,
        "shutting down: not ready, no new connections, draining in-flight requests"
    );
    match tokio::time::timeout(args.drain_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!(
            in_flight = metrics.in_flight.get(),
            "drain timeout reached; closing the remaining connections"
        ),
    }
    Ok(())
}

/// Binds a listener and logs the address actually bound (port 0 picks one).
async fn bind(addr: std::net::SocketAddr, role: &'static str) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {role} listener to {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(step = "listen", role, addr = %local, "{role} listener bound");
    Ok(listener)
}
