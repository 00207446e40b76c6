//! Prometheus metrics of the host, served on the admin port at `/metrics`,
//! grouped by concern: the HTTP path (`http.rs`), guest instances and their
//! failures (`instances.rs`), sessions (`sessions.rs`), swaps (`swaps.rs`),
//! the process and its limits (`process.rs`); a guest's handles on all of
//! them are resolved once ([`GuestMetrics`], `guest.rs`). The series every
//! request or session call writes are kept in one part per thread, each
//! written by its thread alone without locked instructions, and summed at a
//! scrape (`per_thread.rs`). The SQL service keeps its own
//! (`runtime/sql/metrics.rs`), on the same registry.
//!
//! Names follow Prometheus conventions (base units, `_total` counters). The
//! values of a label with a fixed set are listed once (the reasons are enums:
//! `FailureReason`, `RejectReason`, `CloseReason`, `SessionRefusal`), their
//! series exist from the start, and the help text names them (a test below
//! checks it). Every series, its labels and their values are documented in
//! the README's "Metrics" section; `host/tests/prime.rs` checks the two agree.

mod guest;
mod http;
mod instances;
pub mod per_thread;
mod process;
mod sessions;
mod swaps;

pub use self::guest::GuestMetrics;
pub use self::http::{HttpMetrics, RejectReason};
pub use self::instances::{FailureReason, InstanceMetrics};
pub use self::process::LimitValues;
pub use self::sessions::{CloseReason, SessionCallKind, SessionMetrics, SessionRefusal};
pub use self::swaps::SwapMetrics;

use anyhow::Result;
use prometheus::core::Collector;
use prometheus::{Encoder, Gauge, IntGauge, Registry, TextEncoder};

pub struct Metrics {
    /// Everything below is registered here; `/metrics` encodes it.
    registry: Registry,
    pub http: HttpMetrics,
    pub instances: InstanceMetrics,
    pub sessions: SessionMetrics,
    pub swaps: SwapMetrics,
    /// Seconds from process start to ready, set once at start-up.
    pub startup_seconds: Gauge,
    /// Keys in the shared state (the state keeps it current).
    pub state_keys: IntGauge,
    /// Bytes (keys plus values) in the shared state, against `--state-max-bytes`.
    pub state_bytes: IntGauge,
}

impl Metrics {
    pub fn new(limits: &LimitValues) -> Result<Metrics> {
        let registry = Registry::new();
        let metrics = Metrics {
            http: HttpMetrics::new(&registry)?,
            instances: InstanceMetrics::new(&registry)?,
            sessions: SessionMetrics::new(&registry)?,
            swaps: SwapMetrics::new(&registry)?,
            startup_seconds: register(
                &registry,
                &Gauge::new("scalelab_startup_seconds", "Seconds from process start until the guest was ready to serve")?,
            )?,
            state_keys: register(
                &registry,
                &IntGauge::new("scalelab_state_keys", "Keys in the shared state that guests keep in the host")?,
            )?,
            state_bytes: register(
                &registry,
                &IntGauge::new(
                    "scalelab_state_bytes",
                    "Bytes (keys plus values) in the shared state that guests keep in the host",
                )?,
            )?,
            registry,
        };
        process::register(&metrics.registry, limits)?;
        Ok(metrics)
    }

    /// The registry `/metrics` encodes (guest-defined metrics join it).
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// Handles for one guest; also publishes it in `scalelab_guest_info`.
    pub fn for_guest(&self, guest: &str, sha256: &str) -> GuestMetrics {
        GuestMetrics::new(self, guest, sha256)
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

/// Registers `collector` (a handle: the registry keeps a clone) and returns it.
fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: &C) -> Result<C> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector.clone())
}

/// Label values as a help text lists them: `a, b, c`.
fn listed<const N: usize>(values: [&str; N]) -> String {
    values.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(&LimitValues { deadline: None, max_memory: 1, max_body: 1, max_in_flight: 1 }).unwrap()
    }

    /// A label with a fixed set of values says them in its help text, so
    /// that a new value cannot be added without the text that explains it.
    #[test]
    fn each_help_lists_the_values_of_its_fixed_labels() {
        let metrics = metrics();
        let guest = metrics.for_guest("g", "0");
        for reason in FailureReason::ALL {
            guest.failed(reason);
        }
        let mut checked = 0;
        for family in metrics.registry.gather() {
            for series in family.get_metric() {
                for label in series.get_label() {
                    // Open-ended values: names, hashes, status codes.
                    if ["guest", "sha256", "code"].contains(&label.name()) {
                        continue;
                    }
                    assert!(
                        family.help().contains(label.value()),
                        "{}: the help {:?} does not name {}={}",
                        family.name(),
                        family.help(),
                        label.name(),
                        label.value()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 25, "only {checked} label values checked");
    }

    /// A guest's handles are arrays indexed by the enums' discriminants.
    #[test]
    fn enum_discriminants_index_their_all_lists() {
        for (i, reason) in FailureReason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, i);
        }
        for (i, call) in SessionCallKind::ALL.into_iter().enumerate() {
            assert_eq!(call as usize, i);
        }
    }

    #[test]
    fn a_guest_failure_counts_under_its_reason() {
        let metrics = metrics();
        metrics.for_guest("g", "0").failed(FailureReason::StateLimit);
        let text = String::from_utf8(metrics.encode().unwrap()).unwrap();
        assert!(text.contains(r#"scalelab_guest_failures_total{guest="g",reason="state_limit"} 1"#), "{text}");
        assert!(text.contains(r#"scalelab_guest_info{guest="g",sha256="0"} 1"#), "{text}");
    }
}
