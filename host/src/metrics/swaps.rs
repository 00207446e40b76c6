//! Guest swaps and the config file behind them: swaps by result, the time of
//! a successful one by phase, and the reads of the config file by what caused
//! them.

use super::{Result, listed, register};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// A swap's result: the `result` label of `scalelab_guest_swaps_total`.
const RESULTS: [&str; 2] = ["ok", "rejected"];

/// What caused a read of the config file: the `trigger` label of
/// `scalelab_config_checks_total`.
const TRIGGERS: [&str; 2] = ["event", "poll"];

pub struct SwapMetrics {
    swaps: IntCounterVec,
    swap_duration: HistogramVec,
    /// Reads of the guest config file, by what caused them: shows whether
    /// the directory watch works where the pod runs (else only polls count).
    config_checks: IntCounterVec,
}

impl SwapMetrics {
    pub(super) fn new(registry: &Registry) -> Result<SwapMetrics> {
        let swaps = IntCounterVec::new(
            Opts::new("scalelab_guest_swaps_total", format!("Guest swaps, by result ({})", listed(RESULTS))),
            &["result"],
        )?;
        let swap_duration = HistogramVec::new(
            HistogramOpts::new(
                "scalelab_guest_swap_duration_seconds",
                "Time of a successful swap, by phase: compile (load, compile or cache, link, probe) and switch",
            )
            .buckets(vec![0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["phase"],
        )?;
        let config_checks = IntCounterVec::new(
            Opts::new(
                "scalelab_config_checks_total",
                "Reads of the guest config file, by trigger (event: a change in its directory; poll: --config-poll)",
            ),
            &["trigger"],
        )?;
        // The label sets that exist before any swap, visible at once.
        for result in RESULTS {
            swaps.with_label_values(&[result]);
        }
        for phase in ["compile", "switch"] {
            swap_duration.with_label_values(&[phase]);
        }
        for trigger in TRIGGERS {
            config_checks.with_label_values(&[trigger]);
        }
        let metrics = SwapMetrics { swaps, swap_duration, config_checks };
        register(registry, &metrics.swaps)?;
        register(registry, &metrics.swap_duration)?;
        register(registry, &metrics.config_checks)?;
        Ok(metrics)
    }

    /// Counts a swap; a successful one also records its phases (ms).
    pub fn swapped(&self, ok: bool, phases_ms: Option<(f64, f64)>) {
        self.swaps.with_label_values(&[RESULTS[usize::from(!ok)]]).inc();
        if let Some((compile, switch)) = phases_ms {
            self.swap_duration.with_label_values(&["compile"]).observe(compile / 1e3);
            self.swap_duration.with_label_values(&["switch"]).observe(switch / 1e3);
        }
    }

    /// Counts one read of the guest config file (`trigger`: event or poll).
    pub fn config_checked(&self, trigger: &'static str) {
        self.config_checks.with_label_values(&[trigger]).inc();
    }
}
