//! One guest's handles on the series of every concern (its requests, its
//! instances and failures, its session calls), resolved once when it starts
//! to be served, so that the request path does not hash label values it
//! already knows.

use super::per_thread::{Counter, Histogram, PerThreadVec};
use super::{FailureReason, Metrics, SessionCallKind};
use prometheus::IntCounter;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Metric handles of one guest, resolved once.
#[derive(Clone)]
pub struct GuestMetrics {
    /// The guest label value, for the `code`-labelled counter.
    name: String,
    requests: PerThreadVec<Counter>,
    /// The `code="200"` series of `requests`, resolved on the first 200:
    /// most answers are 200s, and this spares each a label lookup.
    ok: OnceLock<Arc<Counter>>,
    request_duration: Arc<Histogram>,
    instantiations: IntCounter,
    reuses: Arc<Counter>,
    instantiate_duration: prometheus::Histogram,
    /// Indexed by [`FailureReason`], in the order of [`FailureReason::ALL`].
    failures: [IntCounter; 4],
    /// Call durations, indexed by [`SessionCallKind`].
    session_calls: [Arc<Histogram>; 5],
}

impl GuestMetrics {
    /// Resolves the handles of `guest` and publishes it in `scalelab_guest_info`.
    pub(super) fn new(metrics: &Metrics, guest: &str, sha256: &str) -> GuestMetrics {
        let instances = &metrics.instances;
        instances.serving(guest, sha256);
        GuestMetrics {
            name: guest.to_string(),
            requests: metrics.http.requests.clone(),
            ok: OnceLock::new(),
            request_duration: metrics.http.request_duration.with_label_values(&[guest]),
            instantiations: instances.instantiations.with_label_values(&[guest]),
            reuses: instances.reuses.with_label_values(&[guest]),
            instantiate_duration: instances.instantiate_duration.with_label_values(&[guest]),
            failures: FailureReason::ALL.map(|reason| instances.failures.with_label_values(&[guest, reason.as_str()])),
            session_calls: metrics.sessions.calls_of(guest),
        }
    }

    pub fn answered(&self, status: u16, took: Duration) {
        let digits = status_digits(status);
        let code = || std::str::from_utf8(&digits).unwrap_or("invalid");
        if status == 200 {
            self.ok.get_or_init(|| self.requests.with_label_values(&[self.name.as_str(), code()])).inc();
        } else {
            self.requests.with_label_values(&[self.name.as_str(), code()]).inc();
        }
        self.request_duration.observe(took.as_secs_f64());
    }

    pub fn instantiated(&self, took: Duration) {
        self.instantiations.inc();
        self.instantiate_duration.observe(took.as_secs_f64());
    }

    pub fn session_call(&self, call: SessionCallKind, took: Duration) {
        self.session_calls[call as usize].observe(took.as_secs_f64());
    }

    pub fn reused(&self) {
        self.reuses.inc();
    }

    pub fn failed(&self, reason: FailureReason) {
        self.failures[reason as usize].inc();
    }
}

/// The three ASCII digits of a status code (100..=999), without allocating.
fn status_digits(status: u16) -> [u8; 3] {
    let status = status.clamp(100, 999);
    [b'0' + (status / 100) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8]
}
