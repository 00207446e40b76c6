//! One load run of one contender, with the CPU that each side of it used:
//! the benches' unit of measurement.
//!
//! On this project's machines the load client and every server share two
//! cores, so a contender's requests/s also moves with what the client and the
//! machine's other tenants take. CPU time per request is the contender's own
//! cost: a second view that such noise moves far less, which tells a real
//! change from a noisy round.

use crate::bench::{Contender, load_counted};
use crate::process_stats::tree_cpu_seconds;
use anyhow::Result;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// One round against one contender.
#[derive(Clone, Debug)]
pub struct Sample {
    /// `scalelab load`'s JSON report of the round.
    pub report: Value,
    /// CPU (user + system) the contender used per request, in µs, its child
    /// processes included (gunicorn's workers).
    pub server_us: f64,
    /// CPU the load client used per request, in µs: what it took from the
    /// contender's cores.
    pub client_us: f64,
}

impl Sample {
    /// Loads `contender` at `url` for `duration` with `concurrency`
    /// connections, and reads the CPU both sides used meanwhile.
    pub fn measure(scalelab: &Path, contender: &Contender, url: &str, concurrency: u32, duration: Duration) -> Result<Sample> {
        let before = tree_cpu_seconds(contender.pid())?;
        let (report, client_seconds) = load_counted(scalelab, &[url], concurrency, duration)?;
        let server_seconds = tree_cpu_seconds(contender.pid())? - before;
        Ok(Sample::new(report, server_seconds, client_seconds))
    }

    /// A sample from a report and the CPU seconds each side used over it.
    pub fn new(report: Value, server_seconds: f64, client_seconds: f64) -> Sample {
        // A round that answered nothing costs its CPU "per request" of one.
        let requests = report["requests"].as_u64().unwrap_or(0).max(1) as f64;
        Sample { server_us: server_seconds * 1e6 / requests, client_us: client_seconds * 1e6 / requests, report }
    }

    /// Requests per second of the round.
    pub fn rps(&self) -> f64 {
        self.report["requests_per_second"].as_f64().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Sample;
    use serde_json::json;

    #[test]
    fn cpu_is_divided_by_the_requests_of_the_round() {
        let sample = Sample::new(json!({"requests": 40_000, "requests_per_second": 20_000.0}), 0.8, 0.4);
        assert!((sample.server_us - 20.0).abs() < 1e-9, "{}", sample.server_us);
        assert!((sample.client_us - 10.0).abs() < 1e-9, "{}", sample.client_us);
        assert_eq!(sample.rps(), 20_000.0);
    }

    #[test]
    fn a_round_that_answered_nothing_has_a_finite_cost() {
        let sample = Sample::new(json!({"requests": 0}), 0.5, 0.25);
        assert_eq!((sample.server_us, sample.client_us), (500_000.0, 250_000.0));
        assert_eq!(sample.rps(), 0.0);
    }
}
