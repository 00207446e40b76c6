//! The broker staircase: engines of the heartbeat protocol (the swarm's
//! `engine` tasks) are added step by step and held, heartbeating. A step's
//! latency is the registration time of the engines it added (connect to
//! `SUCCESS`); its CPU and the guest's signals are read over the hold.

use super::staircase::Measured;
use crate::clients::load::stats::Latency;
use crate::clients::swarm::engines::{REGISTER_TIMEOUT, Settings, Stats, engine};
use anyhow::Result;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Engines started per second as a step adds them.
const STARTS_PER_SECOND: f64 = 1000.0;

pub struct EnginesLoad {
    settings: Arc<Settings>,
    /// The swarm's counters (exported nowhere: a registry of their own).
    stats: Arc<Stats>,
    /// Engines started so far; a step adds the ones up to its level.
    started: u32,
    /// Flips to true when the report ends: every engine disconnects.
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl EnginesLoad {
    /// Engines of the broker at `address` (`host:port`, or `tcp://host:port`)
    /// heartbeating every `heartbeat`.
    pub fn new(address: &str, heartbeat: Duration) -> Result<EnginesLoad> {
        let broker = address.strip_prefix("tcp://").unwrap_or(address).trim_end_matches('/').to_string();
        let settings = Settings {
            broker,
            // Unique per report, so two reports against one broker do not collide.
            prefix: format!("report-{}-", std::process::id()),
            heartbeat,
            burn: false,
            max_backoff: Duration::from_secs(2),
        };
        let stats = Stats::new(&prometheus::Registry::new())?;
        Ok(EnginesLoad {
            settings: Arc::new(settings),
            stats: Arc::new(stats),
            started: 0,
            stop: watch::channel(false).0,
            tasks: JoinSet::new(),
        })
    }

    /// Starts engines up to `level`, waits until they are registered (or
    /// the registration timeout), then holds them for the warm-up.
    pub async fn warm_up(&mut self, level: f64, warmup: Duration) {
        let level = level as u32;
        self.stats.register_latency.lock().unwrap().reset();
        let first = tokio::time::Instant::now();
        for (i, n) in (self.started + 1..=level).enumerate() {
            tokio::time::sleep_until(first + Duration::from_secs_f64(i as f64 / STARTS_PER_SECOND)).await;
            self.tasks.spawn(engine(self.settings.clone(), self.stats.clone(), n, self.stop.subscribe()));
        }
        self.started = self.started.max(level);
        let until = Instant::now() + REGISTER_TIMEOUT;
        while self.stats.registered.get() < i64::from(level) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(warmup).await;
    }

    pub async fn measure(&mut self, level: f64, duration: Duration) -> Measured {
        let failures = || self.stats.errors.get() + self.stats.reconnects.get() + self.stats.duplicates.get();
        let (heartbeats, failed) = (self.stats.heartbeats.get(), failures());
        let started = Instant::now();
        tokio::time::sleep(duration).await;
        let seconds = started.elapsed().as_secs_f64();
        let heartbeats = self.stats.heartbeats.get() - heartbeats;
        let failed = failures() - failed;
        let registered = self.stats.registered.get().max(0) as f64;
        let latency = self.stats.register_latency.lock().unwrap();
        let Latency { p50, p90, p99, .. } = Latency::of(&latency);
        let missing = (level - registered).max(0.0);
        Measured {
            achieved: registered,
            requests: heartbeats + latency.len(),
            error_rate: if level > 0.0 { ((missing + failed as f64) / level).min(1.0) } else { 0.0 },
            p50_ms: p50,
            p90_ms: p90,
            p99_ms: p99,
            events_per_s: Some(heartbeats as f64 / seconds),
        }
    }

    /// Disconnects every engine.
    pub async fn finish(mut self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), async { while self.tasks.join_next().await.is_some() {} }).await;
    }
}
