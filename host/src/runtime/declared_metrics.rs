//! Metrics a guest defines through the `metrics` interface, registered in the
//! host's Prometheus registry so that `/metrics` serves them beside the
//! host's own.
//!
//! They belong to the process, not to one guest instance or one guest: a
//! counter keeps counting across pooled instances and across a swap to a
//! guest that declares the same name. Names are the guest's own (KEDA and
//! HPA queries use them as they are); the `scalelab_` prefix is reserved.
//!
//! Every declared metric is a series the host keeps and serves for the rest
//! of the process, so a guest that declares them in a loop (a label value
//! per user, say) is refused past `--guest-max-metrics`, and one declaration
//! (name, help, labels, buckets) is kept small.
//!
//! Guests update their metrics far more often than they declare them (the
//! tracker adds to a counter at every client-tick, from every worker
//! thread), so the table is read without a lock: an `ArcSwap` of a map that
//! a declaration replaces whole. A read-write lock would make every update
//! write the lock's shared word, a cache line every core takes in turn.

use arc_swap::ArcSwap;
use prometheus::{Counter, Gauge, Histogram, HistogramOpts, Opts, Registry};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the WIT's `metric-kind` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Clone)]
enum Metric {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Metric {
    fn kind(&self) -> Kind {
        match self {
            Metric::Counter(_) => Kind::Counter,
            Metric::Gauge(_) => Kind::Gauge,
            Metric::Histogram(_) => Kind::Histogram,
        }
    }
}

/// Most bytes of one declaration: name, help, label names and values.
const MAX_DECLARATION: usize = 4096;
/// Most constant labels of one metric.
const MAX_LABELS: usize = 16;
/// Most histogram buckets of one metric.
const MAX_BUCKETS: usize = 64;

pub struct DeclaredMetrics {
    registry: Registry,
    /// The declared metrics by name, read lock-free by every update.
    declared: ArcSwap<HashMap<String, Metric>>,
    /// Held by a declaration while it replaces `declared`, so that two at
    /// once cannot lose one another's metric.
    declaring: Mutex<()>,
    /// Most metrics guests may declare in all (`--guest-max-metrics`).
    max: usize,
}

impl DeclaredMetrics {
    /// Metrics registered in `registry` (the host's, which `/metrics` encodes),
    /// at most `max` of them.
    pub fn new(registry: Registry, max: usize) -> DeclaredMetrics {
        DeclaredMetrics { registry, declared: ArcSwap::from_pointee(HashMap::new()), declaring: Mutex::new(()), max }
    }

    /// Refuses a declaration too large to keep.
    fn check_size(name: &str, help: &str, buckets: &[f64], labels: &[(String, String)]) -> Result<(), String> {
        let bytes = name.len() + help.len() + labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if bytes > MAX_DECLARATION {
            return Err(format!("metric {name}: the declaration takes {bytes} bytes, over {MAX_DECLARATION}"));
        }
        if labels.len() > MAX_LABELS {
            return Err(format!("metric {name}: {} labels, over {MAX_LABELS}", labels.len()));
        }
        if buckets.len() > MAX_BUCKETS {
            return Err(format!("metric {name}: {} buckets, over {MAX_BUCKETS}", buckets.len()));
        }
        Ok(())
    }

    pub fn declare(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        buckets: &[f64],
        labels: &[(String, String)],
    ) -> Result<(), String> {
        if let Some(existing) = self.declared.load().get(name) {
            return match existing.kind() == kind {
                true => Ok(()),
                false => Err(format!("metric {name} is already declared as a {:?}", existing.kind())),
            };
        }
        if name.starts_with("scalelab_") {
            return Err(format!("metric {name}: the scalelab_ prefix is reserved for the host's metrics"));
        }
        let valid = name
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid {
            return Err(format!("metric name {name:?} must match [a-zA-Z_:][a-zA-Z0-9_:]*"));
        }
        Self::check_size(name, help, buckets, labels)?;
        let help = if help.is_empty() { name } else { help };
        let const_labels: HashMap<String, String> = labels.iter().cloned().collect();
        let opts = Opts::new(name, help).const_labels(const_labels.clone());
        let metric = match kind {
            Kind::Counter => Metric::Counter(Counter::with_opts(opts).map_err(|e| e.to_string())?),
            Kind::Gauge => Metric::Gauge(Gauge::with_opts(opts).map_err(|e| e.to_string())?),
            Kind::Histogram => {
                let mut opts = HistogramOpts::new(name, help).const_labels(const_labels);
                if !buckets.is_empty() {
                    opts = opts.buckets(buckets.to_vec());
                }
                Metric::Histogram(Histogram::with_opts(opts).map_err(|e| e.to_string())?)
            }
        };
        let _declaring = self.declaring.lock().unwrap();
        let mut declared = HashMap::clone(&self.declared.load());
        if declared.contains_key(name) {
            // Declared by another instance meanwhile.
            return Ok(());
        }
        if declared.len() >= self.max {
            return Err(format!("metric {name}: {} metrics are declared already, the most --guest-max-metrics allows", self.max));
        }
        let registered = match &metric {
            Metric::Counter(m) => self.registry.register(Box::new(m.clone())),
            Metric::Gauge(m) => self.registry.register(Box::new(m.clone())),
            Metric::Histogram(m) => self.registry.register(Box::new(m.clone())),
        };
        registered.map_err(|e| format!("metric {name}: {e}"))?;
        declared.insert(name.to_string(), metric);
        self.declared.store(Arc::new(declared));
        Ok(())
    }

    /// Adds to a counter (negative values are refused) or a gauge.
    pub fn add(&self, name: &str, value: f64) -> Result<(), String> {
        match self.declared.load().get(name) {
            Some(Metric::Counter(c)) if value >= 0.0 => c.inc_by(value),
            Some(Metric::Counter(_)) => return Err(format!("counter {name} cannot decrease (add {value})")),
            Some(Metric::Gauge(g)) => g.add(value),
            Some(Metric::Histogram(_)) => return Err(format!("{name} is a histogram: use observe")),
            None => return Err(format!("metric {name} was not declared")),
        }
        Ok(())
    }

    pub fn set(&self, name: &str, value: f64) -> Result<(), String> {
        match self.declared.load().get(name) {
            Some(Metric::Gauge(g)) => g.set(value),
            Some(_) => return Err(format!("{name} is not a gauge: only gauges can be set")),
            None => return Err(format!("metric {name} was not declared")),
        }
        Ok(())
    }

    pub fn observe(&self, name: &str, value: f64) -> Result<(), String> {
        match self.declared.load().get(name) {
            Some(Metric::Histogram(h)) => h.observe(value),
            Some(_) => return Err(format!("{name} is not a histogram")),
            None => return Err(format!("metric {name} was not declared")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_metrics_appear_in_the_registry_and_misuse_is_refused() {
        let registry = Registry::new();
        let metrics = DeclaredMetrics::new(registry.clone(), 100);
        let app = [("app".to_string(), "mx-server".to_string())];
        metrics.declare("mx_server_active_connections", "Active", Kind::Gauge, &[], &app).unwrap();
        metrics.declare("mx_server_active_connections", "Active", Kind::Gauge, &[], &app).unwrap();
        assert!(metrics.declare("mx_server_active_connections", "", Kind::Counter, &[], &[]).is_err());
        assert!(metrics.declare("scalelab_mine", "", Kind::Counter, &[], &[]).is_err());
        assert!(metrics.declare("9lives", "", Kind::Counter, &[], &[]).is_err());
        metrics.declare("jobs_total", "", Kind::Counter, &[], &[]).unwrap();
        metrics.declare("job_seconds", "", Kind::Histogram, &[0.1, 1.0], &[]).unwrap();
        metrics.add("mx_server_active_connections", 2.0).unwrap();
        metrics.set("mx_server_active_connections", 5.0).unwrap();
        metrics.add("jobs_total", 3.0).unwrap();
        assert!(metrics.add("jobs_total", -1.0).is_err());
        assert!(metrics.set("jobs_total", 1.0).is_err());
        metrics.observe("job_seconds", 0.5).unwrap();
        assert!(metrics.add("undeclared", 1.0).is_err());

        let families = registry.gather();
        let value = |name: &str| families.iter().find(|f| f.name() == name).map(|f| f.get_metric()[0].clone());
        let active = value("mx_server_active_connections").unwrap();
        assert_eq!(active.get_gauge().value(), 5.0);
        assert_eq!((active.get_label()[0].name(), active.get_label()[0].value()), ("app", "mx-server"));
        assert_eq!(value("jobs_total").unwrap().get_counter().value(), 3.0);
        assert_eq!(value("job_seconds").unwrap().get_histogram().get_sample_count(), 1);
    }

    #[test]
    fn declarations_made_at_once_from_many_threads_all_count() {
        let registry = Registry::new();
        let metrics = DeclaredMetrics::new(registry.clone(), 1000);
        std::thread::scope(|threads| {
            for t in 0..4 {
                let metrics = &metrics;
                threads.spawn(move || {
                    for i in 0..50 {
                        metrics.declare(&format!("m_{t}_{i}"), "", Kind::Counter, &[], &[]).unwrap();
                        metrics.add(&format!("m_{t}_{i}"), 1.0).unwrap();
                    }
                });
            }
        });
        // Each declaration replaces the table: none may have replaced another's.
        assert_eq!(metrics.declared.load().len(), 200);
        assert_eq!(registry.gather().len(), 200);
    }

    #[test]
    fn declarations_past_the_limit_or_too_large_are_refused() {
        let registry = Registry::new();
        let metrics = DeclaredMetrics::new(registry.clone(), 3);
        for i in 0..3 {
            metrics.declare(&format!("user_{i}_total"), "", Kind::Counter, &[], &[]).unwrap();
        }
        let refused = metrics.declare("user_3_total", "", Kind::Counter, &[], &[]).unwrap_err();
        assert!(refused.contains("--guest-max-metrics"), "{refused}");
        metrics.declare("user_0_total", "", Kind::Counter, &[], &[]).unwrap();
        assert_eq!(registry.gather().len(), 3);

        let metrics = DeclaredMetrics::new(Registry::new(), 100);
        let huge = [("user".to_string(), "x".repeat(5000))];
        assert!(metrics.declare("huge", "", Kind::Gauge, &[], &huge).unwrap_err().contains("bytes"));
        let many: Vec<(String, String)> = (0..17).map(|i| (format!("l{i}"), String::new())).collect();
        assert!(metrics.declare("many", "", Kind::Gauge, &[], &many).unwrap_err().contains("labels"));
        let buckets: Vec<f64> = (0..65).map(f64::from).collect();
        assert!(metrics.declare("fine", "", Kind::Histogram, &buckets, &[]).unwrap_err().contains("buckets"));
    }
}
