//! The SQL service's metrics, one concern of their own: statements by guest,
//! backend and result (each error kind of `wit/sql.wit` is a result label),
//! their duration, the pool's connections, and the time spent waiting for one.

use super::{Error, error_label};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::time::Duration;

/// From 100 µs (an SQLite read) to 10 s (a deadline).
const BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone)]
pub struct SqlMetrics {
    queries: IntCounterVec,
    duration: HistogramVec,
    connections: IntGaugeVec,
    wait: HistogramVec,
}

impl SqlMetrics {
    pub fn new(registry: &Registry) -> SqlMetrics {
        let queries = IntCounterVec::new(
            Opts::new(
                "scalelab_sql_queries_total",
                "SQL calls of guests, by guest, backend (sqlite, postgres) and result (ok, or the error: connection, \
                 constraint, syntax, timeout, too_large, not_configured, other)",
            ),
            &["guest", "backend", "result"],
        )
        .unwrap();
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "scalelab_sql_query_duration_seconds",
                "Time of an SQL call, waiting for a connection included, by backend (sqlite, postgres)",
            )
            .buckets(BUCKETS.to_vec()),
            &["backend"],
        )
        .unwrap();
        let connections = IntGaugeVec::new(
            Opts::new(
                "scalelab_sql_pool_connections",
                "Connections of the SQL pool, by backend (sqlite, postgres) and state (idle, in_use)",
            ),
            &["backend", "state"],
        )
        .unwrap();
        let wait = HistogramVec::new(
            HistogramOpts::new(
                "scalelab_sql_pool_wait_seconds",
                "Time an SQL call waited for a pooled connection, by backend (sqlite, postgres)",
            )
            .buckets(BUCKETS.to_vec()),
            &["backend"],
        )
        .unwrap();
        let registered = [
            registry.register(Box::new(queries.clone())),
            registry.register(Box::new(duration.clone())),
            registry.register(Box::new(connections.clone())),
            registry.register(Box::new(wait.clone())),
        ];
        for result in registered {
            if let Err(e) = result {
                tracing::warn!(error = %e, "SQL metric not registered");
            }
        }
        SqlMetrics { queries, duration, connections, wait }
    }

    /// The series of one backend, looked up once (when its database opens)
    /// rather than on every call.
    pub fn for_backend(&self, backend: &'static str) -> BackendMetrics {
        BackendMetrics {
            backend,
            queries: self.queries.clone(),
            duration: self.duration.with_label_values(&[backend]),
            wait: self.wait.with_label_values(&[backend]),
            idle: self.connections.with_label_values(&[backend, "idle"]),
            in_use: self.connections.with_label_values(&[backend, "in_use"]),
        }
    }

    /// Counts a call refused because the host has no database.
    pub fn refused(&self, guest: &str, error: &Error) {
        self.queries.with_label_values(&[guest, "none", error_label(error)]).inc();
    }
}

/// One database's metrics: a call only looks up its guest's counter.
#[derive(Clone)]
pub struct BackendMetrics {
    /// The `backend` label: sqlite or postgres.
    pub backend: &'static str,
    queries: IntCounterVec,
    duration: Histogram,
    wait: Histogram,
    idle: IntGauge,
    in_use: IntGauge,
}

impl BackendMetrics {
    /// Counts and times one call.
    pub fn finished(&self, guest: &str, error: Option<&Error>, took: Duration) {
        let result = error.map_or("ok", error_label);
        self.queries.with_label_values(&[guest, self.backend, result]).inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Records how long a call waited for a connection.
    pub fn waited(&self, took: Duration) {
        self.wait.observe(took.as_secs_f64());
    }

    /// Sets the pool gauges from the pool's own count.
    pub fn pool_status(&self, status: deadpool::Status) {
        let idle = status.available;
        self.idle.set(idle as i64);
        self.in_use.set(status.size.saturating_sub(idle) as i64);
    }
}
