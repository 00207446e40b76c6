//! The HTTP staircase: open-model load at each step's rate (the `load`
//! client's `run_at_rate`), latency as the response time.

use super::staircase::Measured;
use crate::clients::load::client::Client;
use crate::clients::load::plan::{Plan, Template};
use crate::clients::load::run_at_rate;
use anyhow::Result;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// Requests a step may have waiting at once (the open model's cap).
const MAX_OUTSTANDING: u32 = 10_000;

pub struct HttpLoad {
    /// One GET of the report's URL.
    plan: Arc<Plan>,
    /// Pooled connections, shared by every step.
    client: Client,
}

impl HttpLoad {
    pub fn new(url: &str, timeout: Duration) -> Result<HttpLoad> {
        let template = Template::new("GET", url, &[], Bytes::new(), 1).map_err(anyhow::Error::msg)?;
        let plan = Arc::new(Plan::new(vec![template]).map_err(anyhow::Error::msg)?);
        Ok(HttpLoad { plan, client: Client::new(false, timeout) })
    }

    /// The step's rate for the warm-up (not recorded).
    pub async fn warm_up(&mut self, rate: f64, warmup: Duration) {
        if !warmup.is_zero() {
            run_at_rate(&self.plan, &self.client, rate, warmup, MAX_OUTSTANDING).await;
        }
    }

    pub async fn measure(&mut self, rate: f64, duration: Duration) -> Measured {
        let report = run_at_rate(&self.plan, &self.client, rate, duration, MAX_OUTSTANDING).await;
        Measured {
            achieved: report.requests_per_second,
            requests: report.requests,
            error_rate: report.error_rate,
            p50_ms: report.latency_ms.p50,
            p90_ms: report.latency_ms.p90,
            p99_ms: report.latency_ms.p99,
            events_per_s: None,
        }
    }
}
