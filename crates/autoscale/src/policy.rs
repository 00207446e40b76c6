//! An overlay's autoscaling policy, read from its rendered objects (what
//! `kubectl kustomize k8s/overlays/<guest>` prints, as JSON values): the
//! HorizontalPodAutoscaler (`autoscaling/v2`) or KEDA ScaledObject that
//! targets a Deployment, with the container requests its `Utilization`
//! targets are relative to. Nothing is copied into code: change the
//! overlay and the report follows.

use crate::{Bounds, DEFAULT_TOLERANCE};
use serde_json::Value;

/// What a pod's metric is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// A `Resource` metric with a `Utilization` target: `percent` of the
    /// pod's request (`request`: cores for CPU, bytes for memory).
    Utilization { resource: Resource, percent: f64, request: f64 },
    /// An average value per pod: a KEDA trigger's `threshold` (its
    /// Prometheus `query`, when it has one), or an HPA `AverageValue` (the
    /// metric's name as its query).
    AverageValue { threshold: f64, query: Option<String> },
}

impl Metric {
    /// The metric an `AverageValue` target follows, by name: the first
    /// metric its query selects (`sum(rate(x_total[1m]))` -> `x_total`).
    pub fn followed(&self) -> Option<String> {
        match self {
            Metric::AverageValue { query: Some(query), .. } => crate::metric_names(query).into_iter().next(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

/// An overlay's autoscaler.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `HorizontalPodAutoscaler/<name>` or `ScaledObject/<name>`.
    pub source: String,
    /// The Deployment it scales.
    pub deployment: String,
    pub bounds: Bounds,
    /// Every metric; the HPA follows the one that asks for the most pods.
    pub metrics: Vec<Metric>,
}

impl Policy {
    /// The autoscaler among `objects`, if there is one; an error names
    /// what is missing or not understood.
    pub fn from_objects(objects: &[Value]) -> Result<Option<Policy>, String> {
        let autoscalers: Vec<&Value> =
            objects.iter().filter(|o| matches!(o["kind"].as_str(), Some("HorizontalPodAutoscaler" | "ScaledObject"))).collect();
        match autoscalers.as_slice() {
            [] => Ok(None),
            [one] => Policy::from_autoscaler(one, objects).map(Some),
            more => Err(format!("{} autoscalers; a report reads one", more.len())),
        }
    }

    fn from_autoscaler(object: &Value, objects: &[Value]) -> Result<Policy, String> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let source = format!("{kind}/{}", object["metadata"]["name"].as_str().unwrap_or("?"));
        let spec = &object["spec"];
        let target = &spec["scaleTargetRef"];
        if target["kind"].as_str().is_some_and(|k| k != "Deployment") {
            return Err(format!("{source}: scales a {}, not a Deployment", target["kind"]));
        }
        let deployment = target["name"].as_str().ok_or_else(|| format!("{source}: no scaleTargetRef.name"))?.to_string();
        let count = |key: &str, default: u32| -> Result<u32, String> {
            match &spec[key] {
                Value::Null => Ok(default),
                value => value.as_u64().map(|n| n as u32).ok_or_else(|| format!("{source}: {key} is not a count: {value}")),
            }
        };
        let (bounds, metrics) = if kind == "ScaledObject" {
            let bounds = Bounds {
                min_replicas: count("minReplicaCount", 0)?,
                max_replicas: count("maxReplicaCount", 100)?,
                tolerance: DEFAULT_TOLERANCE,
            };
            let triggers = spec["triggers"].as_array().ok_or_else(|| format!("{source}: no triggers"))?;
            let metrics = triggers.iter().map(|t| keda_trigger(&source, t)).collect::<Result<Vec<_>, _>>()?;
            (bounds, metrics)
        } else {
            let bounds = Bounds {
                min_replicas: count("minReplicas", 1)?,
                max_replicas: count("maxReplicas", 0)?,
                tolerance: DEFAULT_TOLERANCE,
            };
            let requests = Requests::of(objects, &deployment).map_err(|e| format!("{source}: {e}"))?;
            let list = spec["metrics"].as_array().ok_or_else(|| format!("{source}: no metrics"))?;
            let metrics = list.iter().map(|m| hpa_metric(&source, m, &requests)).collect::<Result<Vec<_>, _>>()?;
            (bounds, metrics)
        };
        if metrics.is_empty() {
            return Err(format!("{source}: no metrics"));
        }
        if bounds.max_replicas < bounds.min_replicas.max(1) {
            return Err(format!("{source}: the maximum replicas ({}) is below the minimum", bounds.max_replicas));
        }
        Ok(Policy { source, deployment, bounds, metrics })
    }
}

/// A KEDA trigger: its threshold is an AverageValue per pod.
fn keda_trigger(source: &str, trigger: &Value) -> Result<Metric, String> {
    let metadata = &trigger["metadata"];
    let threshold = match &metadata["threshold"] {
        Value::String(text) => text.parse::<f64>().ok(),
        value => value.as_f64(),
    }
    .filter(|t| *t > 0.0)
    .ok_or_else(|| format!("{source}: trigger {} has no positive threshold", trigger["type"]))?;
    Ok(Metric::AverageValue { threshold, query: metadata["query"].as_str().map(str::to_string) })
}

/// One metric of an `autoscaling/v2` HPA.
fn hpa_metric(source: &str, metric: &Value, requests: &Requests) -> Result<Metric, String> {
    let kind = metric["type"].as_str().unwrap_or_default();
    let (target, name) = match kind {
        "Resource" => (&metric["resource"]["target"], metric["resource"]["name"].as_str().unwrap_or_default()),
        "Pods" | "External" | "Object" => (&metric[kind.to_ascii_lowercase()]["target"], ""),
        other => return Err(format!("{source}: metric type {other:?} is not understood")),
    };
    match target["type"].as_str() {
        Some("Utilization") => {
            let percent = target["averageUtilization"]
                .as_f64()
                .filter(|p| *p > 0.0)
                .ok_or_else(|| format!("{source}: a Utilization target without averageUtilization"))?;
            let (resource, request) = match name {
                "cpu" => (Resource::Cpu, requests.cpu),
                "memory" => (Resource::Memory, requests.memory),
                other => return Err(format!("{source}: Utilization of {other:?} is not understood")),
            };
            let request = request.ok_or_else(|| format!("{source}: {name} utilization, but the pods request no {name}"))?;
            Ok(Metric::Utilization { resource, percent, request })
        }
        Some("AverageValue") => {
            let threshold = quantity(&target["averageValue"])
                .ok_or_else(|| format!("{source}: an AverageValue target without a quantity"))?;
            let query = metric[kind.to_ascii_lowercase()]["metric"]["name"].as_str().map(str::to_string);
            Ok(Metric::AverageValue { threshold, query })
        }
        other => Err(format!("{source}: target type {other:?} is not understood")),
    }
}

/// The sums of a Deployment's container requests.
struct Requests {
    cpu: Option<f64>,
    memory: Option<f64>,
}

impl Requests {
    fn of(objects: &[Value], deployment: &str) -> Result<Requests, String> {
        if !objects.iter().any(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == deployment) {
            return Err(format!("no Deployment {deployment:?} among the objects"));
        }
        let sum = |name: &str| container_resources(objects, deployment, "requests", name);
        Ok(Requests { cpu: sum("cpu"), memory: sum("memory") })
    }
}

/// A resource of a Deployment among the objects (`kind` `requests` or
/// `limits`, `name` `cpu` in cores or `memory` in bytes), summed over its
/// containers; none when no container sets it.
pub fn container_resources(objects: &[Value], deployment: &str, kind: &str, name: &str) -> Option<f64> {
    let object = objects.iter().find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == deployment)?;
    let containers = object["spec"]["template"]["spec"]["containers"].as_array()?;
    let values: Vec<f64> = containers.iter().filter_map(|c| quantity(&c["resources"][kind][name])).collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// A Kubernetes quantity (`250m`, `1`, `0.5`, `128Mi`, `1G`) as a number
/// (cores, bytes, or the plain value).
pub fn quantity(value: &Value) -> Option<f64> {
    if let Some(n) = value.as_f64() {
        return Some(n);
    }
    let text = value.as_str()?.trim();
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, scale) =
        SUFFIXES.iter().find_map(|(suffix, scale)| Some((text.strip_suffix(suffix)?, *scale))).unwrap_or((text, 1.0));
    number.parse::<f64>().ok().filter(|n| n.is_finite()).map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"kind": "Deployment", "metadata": {"name": "scalelab"}, "spec": {"template": {"spec": {"containers": [
            {"name": "host", "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}}}
        ]}}}})
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity(&json!("250m")), Some(0.25));
        assert_eq!(quantity(&json!("1")), Some(1.0));
        assert_eq!(quantity(&json!(2)), Some(2.0));
        assert_eq!(quantity(&json!("128Mi")), Some(134_217_728.0));
        assert_eq!(quantity(&json!("1G")), Some(1e9));
        assert_eq!(quantity(&json!("lots")), None);
    }

    #[test]
    fn an_hpa_on_cpu_and_memory() {
        let hpa = json!({"kind": "HorizontalPodAutoscaler", "metadata": {"name": "scalelab"}, "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "scalelab"},
        "minReplicas": 1, "maxReplicas": 4,
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 70}}}
        ]}});
        let policy = Policy::from_objects(&[deployment(), hpa]).unwrap().unwrap();
        assert_eq!(policy.source, "HorizontalPodAutoscaler/scalelab");
        assert_eq!(policy.bounds, Bounds { min_replicas: 1, max_replicas: 4, tolerance: 0.1 });
        assert_eq!(
            policy.metrics,
            [
                Metric::Utilization { resource: Resource::Cpu, percent: 50.0, request: 0.25 },
                Metric::Utilization { resource: Resource::Memory, percent: 70.0, request: 134_217_728.0 },
            ]
        );
    }

    #[test]
    fn a_keda_scaled_object() {
        let scaled = json!({"kind": "ScaledObject", "metadata": {"name": "scalelab"}, "spec": {
            "scaleTargetRef": {"name": "scalelab"}, "minReplicaCount": 1, "maxReplicaCount": 15,
            "triggers": [{"type": "prometheus", "metadata": {"query": "sum(x)", "threshold": "10"}}]}});
        let policy = Policy::from_objects(&[deployment(), scaled]).unwrap().unwrap();
        assert_eq!(policy.bounds, Bounds { min_replicas: 1, max_replicas: 15, tolerance: 0.1 });
        assert_eq!(policy.metrics, [Metric::AverageValue { threshold: 10.0, query: Some("sum(x)".into()) }]);
    }

    #[test]
    fn the_metric_a_query_follows() {
        let name = |q: &str| crate::metric_names(q).into_iter().next();
        assert_eq!(
            name(r#"sum(mx_server_active_conn_gauge{namespace="scalelab"})"#).as_deref(),
            Some("mx_server_active_conn_gauge")
        );
        assert_eq!(name("sum(rate(broker_heartbeats_total[1m]))").as_deref(), Some("broker_heartbeats_total"));
        assert_eq!(name(r#"sum by (pod) (x{a="sum(y)"}) / count(up)"#).as_deref(), Some("x"));
        assert_eq!(name("avg without (instance, job) (job:requests:rate5m)").as_deref(), Some("job:requests:rate5m"));
        assert_eq!(name("sum(42)"), None);
        let pods = json!({"kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"}, "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "scalelab"}, "maxReplicas": 3,
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": "sessions"}, "target": {"type": "AverageValue", "averageValue": "50"}}}]}});
        let policy = Policy::from_objects(&[deployment(), pods]).unwrap().unwrap();
        assert_eq!(policy.metrics[0].followed().as_deref(), Some("sessions"));
    }

    #[test]
    fn what_is_missing_is_named() {
        assert_eq!(Policy::from_objects(&[deployment()]), Ok(None));
        let no_request = json!({"kind": "Deployment", "metadata": {"name": "scalelab"}, "spec": {}});
        let hpa = json!({"kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"}, "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "scalelab"}, "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}});
        let err = Policy::from_objects(&[no_request, hpa.clone()]).unwrap_err();
        assert!(err.contains("request no cpu"), "{err}");
        let err = Policy::from_objects(&[hpa]).unwrap_err();
        assert!(err.contains("no Deployment \"scalelab\""), "{err}");
        let bad = json!({"kind": "ScaledObject", "metadata": {"name": "s"}, "spec": {"scaleTargetRef": {"name": "scalelab"},
            "triggers": [{"type": "prometheus", "metadata": {"threshold": "many"}}]}});
        assert!(Policy::from_objects(&[deployment(), bad]).unwrap_err().contains("no positive threshold"));
    }
}
