//! The target host, as the report sees it through its Prometheus metrics:
//! CPU seconds, RSS and the guest's own signals, sampled around each step.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as PoolClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::time::Instant;

/// One reading of the target.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    /// `scalelab_process_cpu_seconds_total` (to the clock tick), else the
    /// standard `process_cpu_seconds_total`.
    pub cpu_seconds: f64,
    /// `process_resident_memory_bytes`.
    pub rss_bytes: f64,
    /// The guest's metrics the report follows, each summed over its series
    /// (absent when the target does not show it).
    pub signals: BTreeMap<String, f64>,
}

impl Sample {
    /// CPU cores used between `self` and a later sample.
    pub fn cores_until(&self, later: &Sample) -> f64 {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        if wall > 0.0 { (later.cpu_seconds - self.cpu_seconds).max(0.0) / wall } else { 0.0 }
    }

    /// The signals over the step that ends with `later`: a counter
    /// (`_total`) as its rate per second, a gauge as its value at the end.
    pub fn signals_until(&self, later: &Sample) -> BTreeMap<String, f64> {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        later
            .signals
            .iter()
            .map(|(name, &value)| {
                let value = match self.signals.get(name) {
                    Some(before) if name.ends_with("_total") && wall > 0.0 => (value - before).max(0.0) / wall,
                    _ => value,
                };
                (name.clone(), value)
            })
            .collect()
    }
}

pub struct Target {
    url: hyper::Uri,
    /// The guest's metrics to follow (`--signal`, and what the autoscaler's query reads).
    signals: Vec<String>,
    client: PoolClient<HttpConnector, Empty<Bytes>>,
}

impl Target {
    pub fn new(metrics_url: &str, signals: Vec<String>) -> Result<Target> {
        let url = metrics_url.parse().with_context(|| format!("--metrics-url {metrics_url:?} is not a URL"))?;
        // A connection per reading: a kept one may be closed by the server
        // (its idle timeout) just as a reading reuses it, seconds later.
        let client = PoolClient::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(HttpConnector::new());
        Ok(Target { url, signals, client })
    }

    /// Reads the target, trying again twice (after 200 ms, then 1 s) when
    /// it cannot be read: one failed scrape does not end a long report.
    pub async fn sample(&self) -> Result<Sample> {
        let mut result = self.read().await;
        for pause in [200, 1000] {
            match &result {
                Ok(_) => break,
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "reading the target's metrics failed; trying again"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            result = self.read().await;
        }
        result
    }

    async fn read(&self) -> Result<Sample> {
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
        let signals = self.signals.iter().filter_map(|name| Some((name.clone(), sum(&text, name)?))).collect();
        Ok(Sample { at, cpu_seconds, rss_bytes: value("process_resident_memory_bytes")?, signals })
    }
}

/// The value of an unlabelled metric in Prometheus' text format.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of every series of `name` (labelled or not), if it has any.
fn sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.as_bytes().first()? {
                b' ' => rest,
                b'{' => &rest[rest.rfind('}')? + 1..],
                _ => return None,
            };
            // A sample line is `name{labels} value [timestamp]`.
            value.split_whitespace().next()?.parse().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[cfg(test)]
mod tests {
    #[test]
    fn unlabelled_metrics_are_read() {
        let text = "# HELP process_cpu_seconds_total x\nprocess_cpu_seconds_total 1.5\nprocess_cpu_seconds_totalx 9\n";
        assert_eq!(super::metric(text, "process_cpu_seconds_total"), Some(1.5));
        assert_eq!(super::metric(text, "process_resident_memory_bytes"), None);
    }

    #[test]
    fn signals_are_summed_over_their_series() {
        let text = "# TYPE g gauge\ng{guest=\"a\",app=\"x}y\"} 3\ng{guest=\"b\"} 4.5 1700000000\ngx 100\nh 2\n";
        assert_eq!(super::sum(text, "g"), Some(7.5));
        assert_eq!(super::sum(text, "h"), Some(2.0));
        assert_eq!(super::sum(text, "missing"), None);
    }
}
