//! The HTTP path's series: requests answered and their latency, requests in
//! flight, and the requests the host refused before they reached a guest,
//! each refusal a [`RejectReason`] label.

use super::per_thread::{Counter, Gauge, Histogram, PerThreadVec};
use super::{Result, listed, register};
use prometheus::{IntCounterVec, Opts, Registry};
use std::sync::Arc;

/// Latency buckets from 0.5 ms to 10 s: wide enough for `GET /prime/1` and for
/// requests that run into a multi-second deadline.
pub(super) const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Why the host refused a request before it reached the guest; the `reason`
/// label of `scalelab_http_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    BodyTooLarge,
    InFlightLimit,
    BadBody,
    /// A connection refused at `--max-connections`.
    ConnectionLimit,
    /// A request body that did not arrive within the deadline.
    BodyTimeout,
}

impl RejectReason {
    pub const ALL: [RejectReason; 5] = [
        RejectReason::BodyTooLarge,
        RejectReason::InFlightLimit,
        RejectReason::BadBody,
        RejectReason::ConnectionLimit,
        RejectReason::BodyTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BodyTooLarge => "body_too_large",
            RejectReason::InFlightLimit => "in_flight_limit",
            RejectReason::BadBody => "bad_body",
            RejectReason::ConnectionLimit => "connection_limit",
            RejectReason::BodyTimeout => "body_timeout",
        }
    }
}

pub struct HttpMetrics {
    /// By guest and status code; a guest's handles are resolved in `GuestMetrics`.
    pub(super) requests: PerThreadVec<Counter>,
    /// Arrival to response head, by guest.
    pub(super) request_duration: PerThreadVec<Histogram>,
    /// Requests admitted and not yet finished (guest instance still alive).
    pub in_flight: Arc<Gauge>,
    rejections: IntCounterVec,
}

impl HttpMetrics {
    pub(super) fn new(registry: &Registry) -> Result<HttpMetrics> {
        let requests = PerThreadVec::counters(
            "scalelab_http_requests_total",
            "HTTP requests answered, by guest and status code",
            &["guest", "code"],
        )?;
        let request_duration = PerThreadVec::histograms(
            "scalelab_http_request_duration_seconds",
            "Time from request arrival to response head, by guest",
            &["guest"],
            LATENCY_BUCKETS,
        )?;
        let in_flight_family = PerThreadVec::gauges(
            "scalelab_http_requests_in_flight",
            "Requests admitted whose guest instance is still running",
            &[],
        )?;
        register(registry, &in_flight_family)?;
        let in_flight = in_flight_family.with_label_values(&[]);
        let rejections = IntCounterVec::new(
            Opts::new(
                "scalelab_http_rejections_total",
                format!(
                    "Requests (or connections) refused before reaching the guest, by reason ({})",
                    listed(RejectReason::ALL.map(RejectReason::as_str))
                ),
            ),
            &["reason"],
        )?;
        // Every reason is visible before the first refusal.
        for reason in RejectReason::ALL {
            rejections.with_label_values(&[reason.as_str()]);
        }
        let metrics = HttpMetrics { requests, request_duration, in_flight, rejections };
        register(registry, &metrics.requests)?;
        register(registry, &metrics.request_duration)?;
        register(registry, &metrics.rejections)?;
        Ok(metrics)
    }

    /// Counts a request or connection refused before it reached the guest.
    pub fn reject(&self, reason: RejectReason) {
        self.rejections.with_label_values(&[reason.as_str()]).inc();
    }
}
