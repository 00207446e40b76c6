//! The staircase: one step per load level (a request rate, or a number of
//! socket.io clients or engines held), what each measured, and where the
//! knee is (the highest step within the SLO). The run stops at the first
//! step that misses it: the knee and one step beyond.

use serde::Serialize;
use std::collections::BTreeMap;

/// Most errors a step may have and still meet the SLO (0.1%).
pub const MAX_ERROR_RATE: f64 = 0.001;

/// What a staircase offers, and so what its figures mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Open-model HTTP requests at a rate; latency is the response time.
    Http,
    /// socket.io clients held; latency is the gap between a client's ticks.
    Sockets,
    /// Engines of the broker protocol held; latency is the registration time.
    Engines,
}

impl Kind {
    /// The unit of a load level.
    pub fn unit(self) -> &'static str {
        match self {
            Kind::Http => "requests/s",
            Kind::Sockets => "clients",
            Kind::Engines => "engines",
        }
    }

    /// What `achieved` counts.
    pub fn achieved(self) -> &'static str {
        match self {
            Kind::Http => "answered requests/s",
            Kind::Sockets => "clients connected",
            Kind::Engines => "engines registered",
        }
    }

    /// What the latency percentiles measure.
    pub fn latency(self) -> &'static str {
        match self {
            Kind::Http => "response time",
            Kind::Sockets => "gap between a client's ticks",
            Kind::Engines => "registration time",
        }
    }

    /// What `events_per_s` counts, for session loads.
    pub fn events(self) -> Option<&'static str> {
        match self {
            Kind::Http => None,
            Kind::Sockets => Some("ticks received/s"),
            Kind::Engines => Some("heartbeats sent/s"),
        }
    }
}

/// What the load side of one step measured (the target's side is added by [`Step::new`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Measured {
    /// Requests/s answered, or clients or engines connected at the step's end.
    pub achieved: f64,
    /// Requests sent, or ticks or heartbeats counted, over the step.
    pub requests: u64,
    /// HTTP: transport errors and 5xx over requests. Sessions: those not
    /// held at the step's end, plus failed attempts, over those offered.
    pub error_rate: f64,
    /// Latency percentiles ([`Kind::latency`] says of what).
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// Session loads: ticks received or heartbeats sent per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_per_s: Option<f64>,
}

/// What one step measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    /// The load offered: requests/s (open model: due whatever the server
    /// does), or clients or engines asked to connect.
    pub offered: f64,
    /// What the load side measured (its fields stand beside these in JSON).
    #[serde(flatten)]
    pub load: Measured,
    /// The target's CPU over the step, in cores (`process_cpu_seconds_total`).
    pub cpu_cores: f64,
    /// The target's RSS at the step's end.
    pub rss_bytes: f64,
    /// The guest's own metrics over the step: a counter (`_total`) as its
    /// rate per second, a gauge as its value at the step's end; summed over
    /// the metric's series.
    pub signals: BTreeMap<String, f64>,
}

impl Step {
    pub fn new(offered: f64, measured: Measured, cpu_cores: f64, rss_bytes: f64, signals: BTreeMap<String, f64>) -> Step {
        Step { offered, load: measured, cpu_cores, rss_bytes, signals }
    }

    /// p99 within the SLO and errors under 0.1%.
    pub fn meets(&self, slo_p99_ms: f64) -> bool {
        self.load.requests > 0 && self.load.p99_ms <= slo_p99_ms && self.load.error_rate < MAX_ERROR_RATE
    }
}

/// The knee: the highest step that meets the SLO, if any.
pub fn knee(steps: &[Step], slo_p99_ms: f64) -> Option<usize> {
    steps.iter().rposition(|s| s.meets(slo_p99_ms))
}

/// Whether the staircase is done: its last step missed the SLO.
pub fn done(steps: &[Step], slo_p99_ms: f64) -> bool {
    steps.last().is_some_and(|s| !s.meets(slo_p99_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: f64, p99_ms: f64, error_rate: f64) -> Step {
        let load = Measured {
            achieved: offered,
            requests: 100,
            error_rate,
            p50_ms: p99_ms / 2.0,
            p90_ms: p99_ms,
            p99_ms,
            events_per_s: None,
        };
        Step::new(offered, load, 0.1, 3e7, BTreeMap::new())
    }

    #[test]
    fn the_knee_is_the_highest_step_within_the_slo() {
        let steps = [step(25.0, 3.0, 0.0), step(50.0, 4.0, 0.0), step(100.0, 250.0, 0.0)];
        assert_eq!(knee(&steps, 100.0), Some(1));
        assert!(done(&steps, 100.0));
        assert!(!done(&steps[..2], 100.0));
        // Errors count as much as latency.
        let steps = [step(25.0, 3.0, 0.0), step(50.0, 4.0, 0.002)];
        assert_eq!(knee(&steps, 100.0), Some(0));
        // Nothing meets it.
        assert_eq!(knee(&[step(25.0, 500.0, 0.0)], 100.0), None);
        assert!(done(&[step(25.0, 500.0, 0.0)], 100.0));
    }
}
