//! `scalelab swarm engines`: simulated engines of the heartbeat broker
//! protocol (the `heartbeat` crate), one task each.
//!
//! An engine connects, sends `NewEngine:<id>:0`, waits for `SUCCESS`, then
//! sends `HeartBeat:<id>:<n>` every `--heartbeat` with n = 1, 2, 3, ... It
//! pauses its heartbeats for `DOWORK:<ms>` (burning CPU with `--burn`) and
//! then resumes the sequence; it disconnects and ends on `KILL:<code>`; a
//! refused duplicate id ends it too. When the broker goes away it reconnects
//! with capped exponential backoff and registers again. Broker messages are
//! split the way the broker splits ours, so an existing broker that sends no
//! delimiter works too.

use super::{serve_metrics, stop_signal};
use crate::cli::{EnginesArgs, OutputFormat};
use crate::clients::load::stats::Latency;
use anyhow::{Context, Result};
use bytes::BytesMut;
use heartbeat::{BrokerMessage, EngineMessage};
use prometheus::{IntCounter, IntGauge, Registry};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How long an engine waits for the broker's answer to `NewEngine`.
pub(crate) const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest latency the histograms hold, in microseconds (a minute).
pub(crate) const MAX_LATENCY_US: u64 = 60_000_000;
/// The first reconnection delay; it doubles up to `--max-backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Counters shared by every engine, exported on `/metrics` and summarised at the end.
pub(crate) struct Stats {
    pub(crate) registered: IntGauge,
    pub(crate) registrations: IntCounter,
    pub(crate) heartbeats: IntCounter,
    pub(crate) duplicates: IntCounter,
    pub(crate) reconnects: IntCounter,
    pub(crate) errors: IntCounter,
    dowork: IntCounter,
    killed: IntCounter,
    /// Time from connect to `SUCCESS`, in microseconds.
    pub(crate) register_latency: Mutex<hdrhistogram::Histogram<u64>>,
    /// When every engine was registered at once, first.
    all_registered: Mutex<Option<Duration>>,
}

impl Stats {
    pub(crate) fn new(registry: &Registry) -> Result<Stats> {
        let counter = |name: &str, help: &str| -> Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let registered = IntGauge::new("swarm_engines_registered", "Engines registered with the broker now")?;
        registry.register(Box::new(registered.clone()))?;
        Ok(Stats {
            registered,
            registrations: counter("swarm_engine_registrations_total", "Successful registrations, reconnections included")?,
            heartbeats: counter("swarm_engine_heartbeats_total", "Heartbeats sent")?,
            duplicates: counter("swarm_engine_duplicates_total", "Registrations refused as duplicate engine ids")?,
            reconnects: counter("swarm_engine_reconnects_total", "Connections lost and retried")?,
            errors: counter("swarm_engine_errors_total", "Failed connects, registrations that timed out, write errors")?,
            dowork: counter("swarm_engine_dowork_total", "DOWORK commands received")?,
            killed: counter("swarm_engine_killed_total", "Engines ended by KILL")?,
            // Bounded: `saturating_record` clamps to the current range, even
            // of an auto-resizing histogram (which would read 2 µs for all).
            register_latency: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
            ),
            all_registered: Mutex::new(None),
        })
    }
}

/// The final summary (`--output json` prints it as is).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub engines: u32,
    pub registered_at_stop: i64,
    pub registrations: u64,
    /// Seconds from start until every engine was registered at once.
    pub all_registered_after_s: Option<f64>,
    pub register_p50_ms: f64,
    pub register_p99_ms: f64,
    pub heartbeats_sent: u64,
    pub duplicates_refused: u64,
    pub reconnects: u64,
    pub errors: u64,
    pub dowork_received: u64,
    pub killed: u64,
    pub duration_s: f64,
}

/// What one engine needs to know.
pub(crate) struct Settings {
    pub(crate) broker: String,
    pub(crate) prefix: String,
    pub(crate) heartbeat: Duration,
    pub(crate) burn: bool,
    pub(crate) max_backoff: Duration,
}

pub async fn run(args: EnginesArgs) -> Result<()> {
    let registry = Registry::new();
    let stats = Arc::new(Stats::new(&registry)?);
    serve_metrics(args.metrics_listen, registry).await?;
    let stop = stop_signal(args.duration)?;
    let prefix = args.id_prefix.clone().unwrap_or_else(|| match std::env::var("HOSTNAME") {
        Ok(host) if !host.is_empty() => format!("{host}-"),
        _ => "engine-".to_string(),
    });
    let settings = Arc::new(Settings {
        broker: args.broker.clone(),
        prefix,
        heartbeat: args.heartbeat,
        burn: args.burn,
        max_backoff: args.max_backoff,
    });
    tracing::info!(
        broker = %args.broker,
        engines = args.engines,
        id_prefix = %settings.prefix,
        heartbeat = ?args.heartbeat,
        ramp_per_s = args.ramp,
        "starting engines"
    );

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let watcher = tokio::spawn(watch_progress(stats.clone(), args.engines, started, stop.clone()));
    for n in 1..=args.engines {
        let due = tokio::time::Instant::from_std(started) + Duration::from_secs_f64(f64::from(n - 1) / args.ramp);
        let mut stop_ramp = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stopped(&mut stop_ramp) => break,
        }
        tasks.spawn(engine(settings.clone(), stats.clone(), n, stop.clone()));
    }
    while tasks.join_next().await.is_some() {}
    watcher.abort();

    let summary = summarise(&stats, args.engines, started.elapsed());
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&summary).context("encoding the summary")?),
        OutputFormat::Table => print!("{}", table(&summary)),
    }
    Ok(())
}

/// Logs progress every few seconds and notes when every engine is registered.
async fn watch_progress(stats: Arc<Stats>, engines: u32, started: Instant, mut stop: watch::Receiver<bool>) {
    let mut last_log = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = stopped(&mut stop) => return,
        }
        let registered = stats.registered.get();
        let mut all = stats.all_registered.lock().unwrap();
        if all.is_none() && registered >= i64::from(engines) {
            *all = Some(started.elapsed());
            tracing::info!(engines, after_s = started.elapsed().as_secs_f64(), "all engines registered");
        }
        drop(all);
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            tracing::info!(
                registered,
                heartbeats = stats.heartbeats.get(),
                reconnects = stats.reconnects.get(),
                errors = stats.errors.get(),
                "swarm progress"
            );
        }
    }
}

/// How a connection ended.
enum End {
    /// The run is over.
    Stopped,
    /// `KILL` received.
    Killed,
    /// The broker refused the id.
    Refused,
    /// The connection failed or the broker went away; try again.
    Lost { was_registered: bool },
}

/// One engine, across reconnections.
pub(crate) async fn engine(settings: Arc<Settings>, stats: Arc<Stats>, n: u32, mut stop: watch::Receiver<bool>) {
    let id = format!("{}{n}", settings.prefix);
    let mut backoff = FIRST_BACKOFF;
    loop {
        match Box::pin(connection(&settings, &stats, &id, &mut stop)).await {
            End::Stopped | End::Killed | End::Refused => return,
            End::Lost { was_registered } => {
                if *stop.borrow() {
                    return;
                }
                stats.reconnects.inc();
                if was_registered {
                    backoff = FIRST_BACKOFF;
                }
                // Jitter spreads the reconnections of thousands of engines.
                let wait = backoff.mul_f64(0.5 + fastrand::f64());
                backoff = (backoff * 2).min(settings.max_backoff);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        }
    }
}

/// One connection: register, then heartbeat until it ends.
async fn connection(settings: &Settings, stats: &Stats, id: &str, stop: &mut watch::Receiver<bool>) -> End {
    let connect_started = Instant::now();
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&settings.broker)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            stats.errors.inc();
            tracing::debug!(engine = id, error = %e, "connect failed");
            return End::Lost { was_registered: false };
        }
        Err(_) => {
            stats.errors.inc();
            return End::Lost { was_registered: false };
        }
    };
    let _ = stream.set_nodelay(true);
    let register = EngineMessage::NewEngine { id: id.to_string(), n: 0 }.encode();
    if stream.write_all(register.as_bytes()).await.is_err() {
        stats.errors.inc();
        return End::Lost { was_registered: false };
    }

    // Waiting for SUCCESS (or FAILLED).
    let mut pending = Vec::new();
    let registered = async {
        loop {
            let Some(messages) = read_messages(&mut stream, &mut pending).await else {
                return Err(End::Lost { was_registered: false });
            };
            for message in messages {
                match message {
                    BrokerMessage::Registered => return Ok(()),
                    BrokerMessage::Duplicate { .. } => {
                        stats.duplicates.inc();
                        tracing::warn!(engine = id, "the broker refused this engine id as a duplicate");
                        return Err(End::Refused);
                    }
                    BrokerMessage::Kill { .. } => {
                        stats.killed.inc();
                        return Err(End::Killed);
                    }
                    BrokerMessage::DoWork { .. } => stats.dowork.inc(),
                }
            }
        }
    };
    let outcome = tokio::select! {
        result = tokio::time::timeout(REGISTER_TIMEOUT, registered) => match result {
            Ok(result) => result,
            Err(_) => {
                stats.errors.inc();
                Err(End::Lost { was_registered: false })
            }
        },
        _ = stopped(stop) => Err(End::Stopped),
    };
    if let Err(end) = outcome {
        let _ = stream.shutdown().await;
        return end;
    }
    let latency = connect_started.elapsed();
    stats.register_latency.lock().unwrap().saturating_record(latency.as_micros() as u64);
    stats.registrations.inc();
    stats.registered.inc();
    let end = heartbeats(settings, stats, id, &mut stream, &mut pending, stop).await;
    // Engines stopped with the run still count as registered in the summary.
    if !matches!(end, End::Stopped) {
        stats.registered.dec();
    }
    let _ = stream.shutdown().await;
    end
}

/// Heartbeats in sequence until the connection ends.
async fn heartbeats(
    settings: &Settings,
    stats: &Stats,
    id: &str,
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let mut n = 1u64;
    let mut next = tokio::time::Instant::now() + settings.heartbeat;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                let beat = EngineMessage::HeartBeat { id: id.to_string(), n }.encode();
                if stream.write_all(beat.as_bytes()).await.is_err() {
                    stats.errors.inc();
                    return End::Lost { was_registered: true };
                }
                stats.heartbeats.inc();
                n += 1;
                next += settings.heartbeat;
            }
            read = read_messages(stream, pending) => {
                let Some(messages) = read else {
                    return End::Lost { was_registered: true };
                };
                for message in messages {
                    match message {
                        BrokerMessage::DoWork { ms } => {
                            stats.dowork.inc();
                            let work = Duration::from_millis(ms);
                            // The sequence resumes where it stopped once the work is done.
                            next = tokio::time::Instant::now() + work;
                            if settings.burn {
                                tokio::task::spawn_blocking(move || burn(work));
                            }
                        }
                        BrokerMessage::Kill { code } => {
                            stats.killed.inc();
                            tracing::debug!(engine = id, code, "killed by the broker");
                            return End::Killed;
                        }
                        BrokerMessage::Registered | BrokerMessage::Duplicate { .. } => {}
                    }
                }
            }
            _ = stopped(stop) => return End::Stopped,
        }
    }
}

/// Reads once and splits what arrived into broker messages; `None` when
/// the connection is closed or failed. Cancel-safe: it only reads after
/// the socket is readable, with a buffer allocated then.
async fn read_messages(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<Vec<BrokerMessage>> {
    loop {
        stream.readable().await.ok()?;
        let mut buf = BytesMut::with_capacity(4096);
        match stream.try_read_buf(&mut buf) {
            Ok(0) => return None,
            Ok(_) => {
                pending.extend_from_slice(&buf);
                let split = heartbeat::split_replies(pending);
                for piece in &split.malformed {
                    tracing::warn!(message = %piece, "unexpected message from the broker");
                }
                *pending = split.rest;
                return Some(split.messages);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
}

/// Resolves once the run is over.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Keeps one CPU busy for `work`.
fn burn(work: Duration) {
    let until = Instant::now() + work;
    let mut x = 0u64;
    while Instant::now() < until {
        for i in 0..10_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
}

fn summarise(stats: &Stats, engines: u32, elapsed: Duration) -> Summary {
    let latency = Latency::of(&stats.register_latency.lock().unwrap());
    Summary {
        engines,
        registered_at_stop: stats.registered.get(),
        registrations: stats.registrations.get(),
        all_registered_after_s: stats.all_registered.lock().unwrap().map(|d| d.as_secs_f64()),
        register_p50_ms: latency.p50,
        register_p99_ms: latency.p99,
        heartbeats_sent: stats.heartbeats.get(),
        duplicates_refused: stats.duplicates.get(),
        reconnects: stats.reconnects.get(),
        errors: stats.errors.get(),
        dowork_received: stats.dowork.get(),
        killed: stats.killed.get(),
        duration_s: elapsed.as_secs_f64(),
    }
}

fn table(s: &Summary) -> String {
    let all = s.all_registered_after_s.map_or("never".to_string(), |t| format!("{t:.2} s"));
    format!(
        "engines              {}\n\
         all registered after {all}\n\
         registration p50/p99 {:.2} / {:.2} ms\n\
         registrations        {}\n\
         registered at stop   {}\n\
         heartbeats sent      {}\n\
         duplicates refused   {}\n\
         reconnects           {}\n\
         errors               {}\n\
         DOWORK received      {}\n\
         killed               {}\n\
         duration             {:.1} s\n",
        s.engines,
        s.register_p50_ms,
        s.register_p99_ms,
        s.registrations,
        s.registered_at_stop,
        s.heartbeats_sent,
        s.duplicates_refused,
        s.reconnects,
        s.errors,
        s.dowork_received,
        s.killed,
        s.duration_s,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_latencies_are_summarised_as_recorded() {
        // An auto-resizing histogram clamps `saturating_record` to its first
        // range: every registration read as 2 µs before the bounds were set.
        let stats = Stats::new(&Registry::new()).unwrap();
        for ms in [3u64, 5, 5, 40] {
            stats.register_latency.lock().unwrap().saturating_record(ms * 1000);
        }
        let summary = summarise(&stats, 4, Duration::from_secs(1));
        assert!((summary.register_p50_ms - 5.0).abs() < 0.01, "{summary:?}");
        assert!((summary.register_p99_ms - 40.0).abs() < 0.1, "{summary:?}");
    }
}
