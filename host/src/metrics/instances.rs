//! Guest instances and the calls that failed in them: instances created and
//! reused, the time to create one, failures by [`FailureReason`], and which
//! guest is being served (`scalelab_guest_info`, moved by swaps).

use super::per_thread::{Counter, PerThreadVec};
use super::{Result, listed, register};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Instantiation is expected to take microseconds; buckets from 10 µs to 100 ms.
const INSTANTIATE_BUCKETS: &[f64] = &[0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1];

/// Why a guest call failed; the `reason` label of `scalelab_guest_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    Deadline,
    Memory,
    Trap,
    /// A write to the shared state over `--state-max-value` or `--state-max-bytes`.
    StateLimit,
}

impl FailureReason {
    pub const ALL: [FailureReason; 4] =
        [FailureReason::Deadline, FailureReason::Memory, FailureReason::Trap, FailureReason::StateLimit];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Deadline => "deadline",
            FailureReason::Memory => "memory",
            FailureReason::Trap => "trap",
            FailureReason::StateLimit => "state_limit",
        }
    }
}

pub struct InstanceMetrics {
    pub(super) instantiations: IntCounterVec,
    pub(super) reuses: PerThreadVec<Counter>,
    pub(super) instantiate_duration: HistogramVec,
    /// By guest and [`FailureReason`].
    pub(super) failures: IntCounterVec,
    /// 1 for the guest being served, labelled with its file's sha256.
    guest_info: IntGaugeVec,
}

impl InstanceMetrics {
    pub(super) fn new(registry: &Registry) -> Result<InstanceMetrics> {
        let metrics = InstanceMetrics {
            instantiations: IntCounterVec::new(
                Opts::new("scalelab_guest_instantiations_total", "Guest instances created, by guest"),
                &["guest"],
            )?,
            reuses: PerThreadVec::counters(
                "scalelab_guest_instance_reuses_total",
                "Requests served by a warm instance that had served an earlier request, by guest",
                &["guest"],
            )?,
            instantiate_duration: HistogramVec::new(
                HistogramOpts::new("scalelab_guest_instantiate_duration_seconds", "Time to create a guest instance, by guest")
                    .buckets(INSTANTIATE_BUCKETS.to_vec()),
                &["guest"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "scalelab_guest_failures_total",
                    format!(
                        "Guest calls that failed, by guest and reason ({})",
                        listed(FailureReason::ALL.map(FailureReason::as_str))
                    ),
                ),
                &["guest", "reason"],
            )?,
            guest_info: IntGaugeVec::new(
                Opts::new("scalelab_guest_info", "The guest being served (value 1), with the sha256 of its file"),
                &["guest", "sha256"],
            )?,
        };
        register(registry, &metrics.instantiations)?;
        register(registry, &metrics.reuses)?;
        register(registry, &metrics.instantiate_duration)?;
        register(registry, &metrics.failures)?;
        register(registry, &metrics.guest_info)?;
        Ok(metrics)
    }

    /// Publishes `guest` as served.
    pub(super) fn serving(&self, guest: &str, sha256: &str) {
        self.guest_info.with_label_values(&[guest, sha256]).set(1);
    }

    /// After a swap: only the new guest is reported as served.
    pub fn retire_guest(&self, old: &str, old_sha256: &str, new: &str, new_sha256: &str) {
        if (old, old_sha256) != (new, new_sha256) {
            let _ = self.guest_info.remove_label_values(&[old, old_sha256]);
        }
        self.serving(new, new_sha256);
    }
}
