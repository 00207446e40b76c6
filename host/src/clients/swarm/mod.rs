//! `scalelab swarm`: many long-lived clients simulated from one process, so
//! that a test or a small Deployment generates thousands of connections.
//! Each kind of client is a module; this one holds what they share: the
//! swarm's own `/metrics` listener and the shutdown (duration or signal).

pub mod engines;
pub mod sockets;

use crate::cli::{Listen, SwarmArgs, SwarmKind};
use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus::{Encoder, Registry, TextEncoder};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(args: SwarmArgs) -> Result<()> {
    match args.kind {
        SwarmKind::Engines(args) => engines::run(args).await,
        SwarmKind::Sockets(args) => sockets::run(args).await,
    }
}

/// Serves `registry` on `GET /metrics` at `listen`, logging the bound address.
pub(crate) async fn serve_metrics(listen: Listen, registry: Registry) -> Result<()> {
    let Some(addr) = listen.0 else {
        return Ok(());
    };
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the swarm metrics listener to {addr}"))?;
    tracing::info!(step = "listen", role = "metrics", addr = %listener.local_addr()?, "swarm metrics listener bound");
    tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        while let Ok((stream, _)) = listener.accept().await {
            let registry = registry.clone();
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                async move {
                    let mut response = Response::new(Full::new(bytes::Bytes::new()));
                    if request.uri().path() != "/metrics" {
                        *response.status_mut() = StatusCode::NOT_FOUND;
                        return Ok::<_, Infallible>(response);
                    }
                    let mut out = Vec::new();
                    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
                    *response.body_mut() = Full::new(out.into());
                    Ok(response)
                }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
            tokio::spawn(connection);
        }
    });
    Ok(())
}

/// Flips to true at the end of the run: after `duration`, or at SIGTERM/SIGINT.
pub(crate) fn stop_signal(duration: Option<Duration>) -> Result<watch::Receiver<bool>> {
    let mut signals = crate::shutdown::Shutdown::install()?;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        let reason = match duration {
            Some(d) => tokio::select! {
                _ = tokio::time::sleep(d) => "duration reached",
                signal = signals.recv() => signal,
            },
            None => signals.recv().await,
        };
        tracing::info!(reason, "stopping the swarm");
        let _ = stop.send(true);
    });
    Ok(stopped)
}
