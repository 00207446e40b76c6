//! The process itself: CPU time to the clock tick (the prometheus crate's
//! process collector, registered beside it, counts whole seconds only), and
//! the configured per-request limits, exported so dashboards can draw them.

use super::Result;
use prometheus::{Gauge, Registry};
use std::time::Duration;

/// The configured per-request limits, exported so dashboards can draw them.
pub struct LimitValues {
    pub deadline: Option<Duration>,
    pub max_memory: u64,
    pub max_body: u64,
    pub max_in_flight: u32,
}

/// Registers the crate's process collector, [`ProcessCpu`] and the limits.
pub(super) fn register(registry: &Registry, limits: &LimitValues) -> Result<()> {
    registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
    registry.register(Box::new(ProcessCpu::new()?))?;
    let gauge = |name: &str, help: &str, value: f64| -> Result<()> {
        let g = Gauge::new(name, help)?;
        g.set(value);
        registry.register(Box::new(g))?;
        Ok(())
    };
    gauge(
        "scalelab_limit_deadline_seconds",
        "Configured per-request deadline (0 when off)",
        limits.deadline.map_or(0.0, |d| d.as_secs_f64()),
    )?;
    gauge("scalelab_limit_memory_bytes", "Configured guest memory cap per request", limits.max_memory as f64)?;
    gauge("scalelab_limit_body_bytes", "Configured request body cap", limits.max_body as f64)?;
    gauge("scalelab_limit_in_flight", "Configured maximum of requests in flight", limits.max_in_flight as f64)?;
    Ok(())
}

/// `scalelab_process_cpu_seconds_total`: this process's CPU time to the
/// clock tick (10 ms), read when scraped. The prometheus crate's
/// `process_cpu_seconds_total` counts whole seconds only, too coarse for a
/// rate over a few seconds (`scalelab report`'s steps, a 15 s scrape).
struct ProcessCpu {
    desc: prometheus::core::Desc,
}

const PROCESS_CPU: &str = "scalelab_process_cpu_seconds_total";
const PROCESS_CPU_HELP: &str = "User and system CPU time of this process, in seconds, to the clock tick";

impl ProcessCpu {
    fn new() -> Result<ProcessCpu> {
        let desc = prometheus::core::Desc::new(PROCESS_CPU.into(), PROCESS_CPU_HELP.into(), Vec::new(), Default::default())?;
        Ok(ProcessCpu { desc })
    }
}

impl prometheus::core::Collector for ProcessCpu {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let Ok(counter) = prometheus::Counter::new(PROCESS_CPU, PROCESS_CPU_HELP) else { return Vec::new() };
        counter.inc_by(crate::process_stats::read().1);
        prometheus::core::Collector::collect(&counter)
    }
}
