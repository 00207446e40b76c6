//! The target host, as the report sees it through its Prometheus metrics:
//! CPU seconds and RSS, sampled around each step.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as PoolClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Instant;

/// One reading of the target.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    /// `scalelab_process_cpu_seconds_total` (to the clock tick), else the
    /// standard `process_cpu_seconds_total`.
    pub cpu_seconds: f64,
    /// `process_resident_memory_bytes`.
    pub rss_bytes: f64,
}

impl Sample {
    /// CPU cores used between `self` and a later sample.
    pub fn cores_until(&self, later: &Sample) -> f64 {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        if wall > 0.0 { (later.cpu_seconds - self.cpu_seconds).max(0.0) / wall } else { 0.0 }
    }
}

pub struct Target {
    url: hyper::Uri,
    client: PoolClient<HttpConnector, Empty<Bytes>>,
}

impl Target {
    pub fn new(metrics_url: &str) -> Result<Target> {
        let url = metrics_url.parse().with_context(|| format!("--metrics-url {metrics_url:?} is not a URL"))?;
        Ok(Target { url, client: PoolClient::builder(TokioExecutor::new()).build(HttpConnector::new()) })
    }

    pub async fn sample(&self) -> Result<Sample> {
        let response = self.client.get(self.url.clone()).await.with_context(|| format!("reading {}", self.url))?;
        if !response.status().is_success() {
            bail!("{} answered {}", self.url, response.status());
        }
        let body = response.into_body().collect().await.with_context(|| format!("reading {}", self.url))?.to_bytes();
        let text = String::from_utf8_lossy(&body);
        let at = Instant::now();
        let value = |name: &str| {
            metric(&text, name).with_context(|| format!("{} has no {name} (is it a scalelab host's admin port?)", self.url))
        };
        let cpu_seconds = match metric(&text, "scalelab_process_cpu_seconds_total") {
            Some(seconds) => seconds,
            None => value("process_cpu_seconds_total")?,
        };
        Ok(Sample { at, cpu_seconds, rss_bytes: value("process_resident_memory_bytes")? })
    }
}

/// The value of an unlabelled metric in Prometheus' text format.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn unlabelled_metrics_are_read() {
        let text = "# HELP process_cpu_seconds_total x\nprocess_cpu_seconds_total 1.5\nprocess_cpu_seconds_totalx 9\n";
        assert_eq!(super::metric(text, "process_cpu_seconds_total"), Some(1.5));
        assert_eq!(super::metric(text, "process_resident_memory_bytes"), None);
    }
}
