//! The socket.io staircase: clients are added step by step and held (the
//! step of 80 clients keeps the 40 of the step before), each timing the
//! gap between its `clock` events. A server that falls behind shows as
//! gaps growing past its tick interval, for every client at once; a client
//! the server starves shows as one long open gap.

use super::staircase::Measured;
use crate::clients::load::stats::Latency;
use crate::clients::swarm::engines::MAX_LATENCY_US;
use crate::clients::swarm::sockets::{CONNECT_TIMEOUT, connect, listen, ws_url};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Clients connected per second as a step adds them.
const CONNECTS_PER_SECOND: f64 = 500.0;

/// One client's ticks, read and reset by the step.
struct Ticks {
    /// Gaps between consecutive `clock` events, in microseconds.
    gaps: Histogram<u64>,
    /// The last `clock` (the connection itself before the first), so a gap
    /// is measured across a step's start and a starved client shows.
    last: Instant,
    /// `clock` events since the step's start.
    count: u64,
}

pub struct SocketsLoad {
    url: String,
    /// One per client started, connected or not.
    clients: Vec<Arc<Mutex<Ticks>>>,
    /// Clients connected now (failed and dropped ones are not).
    connected: Arc<AtomicI64>,
    /// Flips to true when the report ends: every client disconnects.
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl SocketsLoad {
    /// Clients of the socket.io server at `url` (`http://host:port`).
    pub fn new(url: &str) -> SocketsLoad {
        SocketsLoad {
            url: ws_url(url),
            clients: Vec::new(),
            connected: Arc::new(AtomicI64::new(0)),
            stop: watch::channel(false).0,
            tasks: JoinSet::new(),
        }
    }

    /// Adds clients up to `level`, waits until each has connected or
    /// failed, then holds them for the warm-up.
    pub async fn warm_up(&mut self, level: f64, warmup: Duration) {
        let level = level as usize;
        let pause = Duration::from_secs_f64(1.0 / CONNECTS_PER_SECOND);
        let added = level.saturating_sub(self.clients.len());
        for _ in 0..added {
            let ticks = Arc::new(Mutex::new(Ticks { gaps: histogram(), last: Instant::now(), count: 0 }));
            self.clients.push(ticks.clone());
            self.tasks.spawn(client(self.url.clone(), ticks, self.connected.clone(), self.stop.subscribe()));
            tokio::time::sleep(pause).await;
        }
        // Each connects within CONNECT_TIMEOUT or gives up.
        let until = Instant::now() + CONNECT_TIMEOUT + Duration::from_secs(1);
        while self.connected.load(Ordering::Relaxed) < level as i64 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(warmup).await;
    }

    pub async fn measure(&mut self, level: f64, duration: Duration) -> Measured {
        for client in &self.clients {
            let mut ticks = client.lock().unwrap();
            ticks.gaps.reset();
            ticks.count = 0;
        }
        let started = Instant::now();
        tokio::time::sleep(duration).await;
        let now = Instant::now();
        let mut gaps = histogram();
        let mut count = 0;
        for client in &self.clients {
            let ticks = client.lock().unwrap();
            let _ = gaps.add(&ticks.gaps);
            // A gap still open longer than any closed one (a starved client) counts too.
            let open = now.duration_since(ticks.last).as_micros() as u64;
            if open > ticks.gaps.max() {
                gaps.saturating_record(open);
            }
            count += ticks.count;
        }
        let connected = self.connected.load(Ordering::Relaxed).max(0) as f64;
        let seconds = now.duration_since(started).as_secs_f64();
        let Latency { p50, p90, p99, .. } = Latency::of(&gaps);
        Measured {
            achieved: connected,
            requests: count,
            error_rate: if level > 0.0 { ((level - connected) / level).clamp(0.0, 1.0) } else { 0.0 },
            p50_ms: p50,
            p90_ms: p90,
            p99_ms: p99,
            events_per_s: Some(count as f64 / seconds),
        }
    }

    /// Disconnects every client.
    pub async fn finish(mut self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), async { while self.tasks.join_next().await.is_some() {} }).await;
    }
}

/// Gaps up to a minute (longer ones are recorded as a minute).
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// One client: connect, then time its ticks until the report ends.
async fn client(url: String, ticks: Arc<Mutex<Ticks>>, connected: Arc<AtomicI64>, mut stop: watch::Receiver<bool>) {
    let mut ws = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&url)).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return tracing::warn!(error = %e, "a report client failed to connect"),
        Err(_) => return tracing::warn!("a report client timed out connecting"),
    };
    ticks.lock().unwrap().last = Instant::now();
    connected.fetch_add(1, Ordering::Relaxed);
    let until = async {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let dropped = listen(&mut ws, until, |data| {
        if data.starts_with("[\"clock\"") {
            let now = Instant::now();
            let mut ticks = ticks.lock().unwrap();
            let gap = now.duration_since(ticks.last).as_micros() as u64;
            ticks.gaps.saturating_record(gap);
            ticks.last = now;
            ticks.count += 1;
        }
        true
    })
    .await;
    connected.fetch_sub(1, Ordering::Relaxed);
    if dropped {
        tracing::warn!("the server closed a report client");
    }
}
