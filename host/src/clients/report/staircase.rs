//! The staircase: one step per offered rate, what each measured, and where
//! the knee is (the highest step within the SLO). The run stops at the
//! first step that misses it: the knee and one step beyond.

use crate::clients::load::stats::Report;
use serde::Serialize;

/// Most errors a step may have and still meet the SLO (0.1%).
pub const MAX_ERROR_RATE: f64 = 0.001;

/// What one step measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    /// Requests/s offered (open model: due whatever the server does).
    pub offered: f64,
    /// Requests/s answered.
    pub achieved: f64,
    pub requests: u64,
    /// Transport errors and 5xx over requests.
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// The target's CPU over the step, in cores (`process_cpu_seconds_total`).
    pub cpu_cores: f64,
    /// The target's RSS at the step's end.
    pub rss_bytes: f64,
}

impl Step {
    pub fn new(offered: f64, report: &Report, cpu_cores: f64, rss_bytes: f64) -> Step {
        Step {
            offered,
            achieved: report.requests_per_second,
            requests: report.requests,
            error_rate: report.error_rate,
            p50_ms: report.latency_ms.p50,
            p90_ms: report.latency_ms.p90,
            p99_ms: report.latency_ms.p99,
            cpu_cores,
            rss_bytes,
        }
    }

    /// p99 within the SLO and errors under 0.1%.
    pub fn meets(&self, slo_p99_ms: f64) -> bool {
        self.requests > 0 && self.p99_ms <= slo_p99_ms && self.error_rate < MAX_ERROR_RATE
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
        Step {
            offered,
            achieved: offered,
            requests: 100,
            error_rate,
            p50_ms: p99_ms / 2.0,
            p90_ms: p99_ms,
            p99_ms,
            cpu_cores: 0.1,
            rss_bytes: 3e7,
        }
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
