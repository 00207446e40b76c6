//! The autoscaler's view: from how each of the policy's metrics follows
//! the load (CPU per request or per client, the guest's own gauge per
//! client, fitted over the steps within the SLO) and the overlay's
//! autoscaling policy, the replicas each offered load ends up with (the HPA rule iterated to its steady
//! state, `autoscale::steady_state`), and whether the target is safe,
//! wasteful or too late for what one pod was measured to take.

use super::staircase::{Kind, Step};
use autoscale::{Metric, Policy, Resource, Verdict, judge, steady_state};
use serde::Serialize;

/// The replicas one offered load ends up with.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// The load offered to the whole Deployment (requests/s, clients, engines).
    pub offered: f64,
    pub replicas: u32,
    /// Each pod's CPU there, in percent of its request (when the policy has a CPU target).
    pub cpu_percent_per_pod: Option<f64>,
}

/// One metric of the policy, judged.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetView {
    /// What the metric is (`cpu 50% of 0.25 cores`).
    pub metric: String,
    /// The load one pod carries when its metric is at the target, if it follows the load.
    pub load_at_target: Option<f64>,
    /// `safe`, `wasteful` or `too late`; none when it cannot be judged.
    pub verdict: Option<String>,
    /// In words.
    pub note: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Projection {
    /// `HorizontalPodAutoscaler/scalelab`, `ScaledObject/scalelab`.
    pub source: String,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// CPU cores per unit of load (core-seconds per request; cores per
    /// client or engine), and what the pod burns with no load.
    pub cpu_per_unit: f64,
    pub idle_cores: f64,
    /// The load one pod carries within the SLO (the knee's).
    pub capacity_per_pod: Option<f64>,
    pub targets: Vec<TargetView>,
    pub rows: Vec<Row>,
}

/// A quantity of the target as a line over the achieved load,
/// `(per_unit, idle)` for `idle + per_unit × load`, fitted by least squares
/// over `steps` (the ones within the SLO); none without two points that
/// trend upward.
pub fn fit(steps: &[Step], value: impl Fn(&Step) -> Option<f64>) -> Option<(f64, f64)> {
    let points: Vec<(f64, f64)> =
        steps.iter().filter(|s| s.load.achieved > 0.0).filter_map(|s| Some((s.load.achieved, value(s)?))).collect();
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0 && sxy > 0.0).then(|| {
        let slope = sxy / sxx;
        (slope, (my - slope * mx).max(0.0))
    })
}

/// [`fit`], or else the last step's value over its load with no idle share.
pub fn line(steps: &[Step], value: impl Fn(&Step) -> Option<f64> + Copy) -> (f64, f64) {
    fit(steps, value).unwrap_or_else(|| {
        let last = steps.iter().rev().filter(|s| s.load.achieved > 0.0).find_map(|s| Some((s.load.achieved, value(s)?)));
        last.map_or((0.0, 0.0), |(load, value)| (value / load, 0.0))
    })
}

/// CPU cores as a line over the achieved load.
pub fn cpu_line(steps: &[Step]) -> (f64, f64) {
    line(steps, |s| Some(s.cpu_cores))
}

/// How each metric of the policy follows the load: its value per pod as
/// `idle + per_unit × load` (none when the report cannot model it).
struct Model {
    per_unit: f64,
    idle: f64,
    target: f64,
}

impl Model {
    fn of(metric: &Metric, within: &[Step], cpu: (f64, f64), peak_rss: f64) -> Option<Model> {
        match metric {
            Metric::Utilization { resource: Resource::Cpu, percent, request } => {
                Some(Model { per_unit: cpu.0 / request * 100.0, idle: cpu.1 / request * 100.0, target: *percent })
            }
            // Memory as the pod holds it within the SLO, whatever the load.
            Metric::Utilization { resource: Resource::Memory, percent, request } => {
                Some(Model { per_unit: 0.0, idle: peak_rss / request * 100.0, target: *percent })
            }
            Metric::AverageValue { threshold, .. } => {
                let name = metric.followed()?;
                if !within.iter().any(|s| s.signals.contains_key(&name)) {
                    return None;
                }
                let (per_unit, idle) = line(within, |s| s.signals.get(&name).copied());
                Some(Model { per_unit, idle, target: *threshold })
            }
        }
    }

    /// Each pod's metric when `n` pods share `load`.
    fn at(&self, load: f64, n: u32) -> f64 {
        self.idle + self.per_unit * load / f64::from(n.max(1))
    }

    /// The load one pod carries with its metric at the target, if the metric follows the load.
    fn load_at_target(&self) -> Option<f64> {
        (self.per_unit > 0.0).then(|| (self.target - self.idle) / self.per_unit).filter(|l| *l > 0.0)
    }
}

pub fn project(policy: &Policy, steps: &[Step], knee: Option<usize>, kind: Kind) -> Projection {
    // What one pod does within the SLO (all steps when none met it).
    let within = match knee {
        Some(k) => &steps[..=k],
        None => steps,
    };
    let cpu = cpu_line(within);
    let capacity = knee.map(|k| steps[k].load.achieved);
    // Memory as the pod holds it within the SLO (an overloaded step holds its waiting requests).
    let peak_rss = within.iter().map(|s| s.rss_bytes).fold(0.0, f64::max);
    let models: Vec<Option<Model>> = policy.metrics.iter().map(|m| Model::of(m, within, cpu, peak_rss)).collect();
    let tolerance = policy.bounds.tolerance;
    let targets: Vec<TargetView> = policy
        .metrics
        .iter()
        .zip(&models)
        .map(|(metric, model)| view(metric, model.as_ref(), capacity, tolerance, kind))
        .collect();

    // Loads from none to what the maximum of pods could take, and each step's.
    let top = capacity.unwrap_or_else(|| steps.iter().map(|s| s.offered).fold(0.0, f64::max));
    let ceiling = (top * f64::from(policy.bounds.max_replicas) * 1.2).max(1.0);
    let mut loads: Vec<f64> = (0..=24).map(|i| ceiling * f64::from(i) / 24.0).collect();
    loads.extend(steps.iter().map(|s| s.offered));
    loads.sort_by(f64::total_cmp);
    loads.dedup();
    let cpu_request = policy.metrics.iter().find_map(|m| match m {
        Metric::Utilization { resource: Resource::Cpu, request, .. } => Some(*request),
        _ => None,
    });
    let rows = loads
        .into_iter()
        .map(|offered| {
            let replicas = models
                .iter()
                .flatten()
                .map(|model| steady_state(&policy.bounds, model.target, |n| model.at(offered, n)).replicas)
                .max()
                .unwrap_or(policy.bounds.min_replicas.max(1));
            let cpu_percent_per_pod =
                cpu_request.map(|request| (cpu.1 + cpu.0 * offered / f64::from(replicas)) / request * 100.0);
            Row { offered, replicas, cpu_percent_per_pod }
        })
        .collect();
    Projection {
        source: policy.source.clone(),
        min_replicas: policy.bounds.min_replicas,
        max_replicas: policy.bounds.max_replicas,
        cpu_per_unit: cpu.0,
        idle_cores: cpu.1,
        capacity_per_pod: capacity,
        targets,
        rows,
    }
}

fn view(metric: &Metric, model: Option<&Model>, capacity: Option<f64>, tolerance: f64, kind: Kind) -> TargetView {
    let unit = kind.unit();
    let name = match metric {
        Metric::Utilization { resource: Resource::Cpu, percent, request } => format!("cpu {percent}% of {request} cores"),
        Metric::Utilization { resource: Resource::Memory, percent, request } => format!("memory {percent}% of {request} bytes"),
        Metric::AverageValue { threshold, query } => format!("{} per pod: {threshold}", query.as_deref().unwrap_or("a metric")),
    };
    let view = |verdict: Option<Verdict>, load_at_target: Option<f64>, note: String| TargetView {
        metric: name.clone(),
        load_at_target,
        verdict: verdict.map(|v| v.as_str().to_string()),
        note,
    };
    let Some(model) = model else {
        let followed = metric.followed().unwrap_or_else(|| "its metric".into());
        return view(
            None,
            None,
            format!("the target did not show {followed} during the staircase (give it with --signal): not projected"),
        );
    };
    if let Metric::Utilization { resource: Resource::Memory, percent, .. } = metric {
        let used = model.idle;
        return if used >= *percent {
            view(
                Some(Verdict::Wasteful),
                None,
                format!(
                    "memory is at {used:.0}% of its request with any load, over the {percent}% target: the HPA keeps the maximum of pods"
                ),
            )
        } else {
            view(
                None,
                None,
                format!(
                    "memory stays near {used:.0}% of its request whatever the load, under the {percent}% target: it never scales on memory"
                ),
            )
        };
    }
    let Some(load) = model.load_at_target() else {
        return if model.idle >= model.target {
            view(
                Some(Verdict::Wasteful),
                None,
                "the pod's idle value is already over the target: the autoscaler scales to the maximum whatever the load".into(),
            )
        } else {
            view(None, None, format!("the metric does not grow with the {unit} offered: the autoscaler never scales on it"))
        };
    };
    match capacity {
        Some(capacity) => {
            let verdict = judge(load, tolerance, capacity);
            let note = format!(
                "one pod reaches the target at {load:.0} {unit} and the autoscaler lets it go to {:.0} before adding pods; it meets the SLO up to {capacity:.0} {unit}: {}",
                load * (1.0 + tolerance),
                explain(verdict)
            );
            view(Some(verdict), Some(load), note)
        }
        None => view(
            None,
            Some(load),
            format!("one pod reaches the target at {load:.0} {unit}; no step met the SLO, so it cannot be judged"),
        ),
    }
}

fn explain(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Safe => "pods are added before one is overloaded, without idling half of it",
        Verdict::Wasteful => "pods are added while each could take more than twice the load",
        Verdict::TooLate => "a pod misses the SLO before the autoscaler adds another",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::report::staircase::Measured;
    use autoscale::Bounds;

    fn step(rate: f64, cores: f64) -> Step {
        let load = Measured {
            achieved: rate,
            requests: 100,
            error_rate: 0.0,
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms: 3.0,
            events_per_s: None,
        };
        Step::new(rate, load, cores, 3.0e7, Default::default())
    }

    fn hpa(percent: f64) -> Policy {
        Policy {
            source: "HorizontalPodAutoscaler/scalelab".into(),
            deployment: "scalelab".into(),
            bounds: Bounds { min_replicas: 1, max_replicas: 10, tolerance: 0.1 },
            metrics: vec![Metric::Utilization { resource: Resource::Cpu, percent, request: 0.25 }],
        }
    }

    #[test]
    fn the_cpu_line_is_fitted_over_the_steps() {
        // 0.02 cores idle plus 1 ms of CPU a request.
        let steps: Vec<Step> = [100.0, 200.0, 400.0].iter().map(|&r| step(r, 0.02 + r * 0.001)).collect();
        let (per_request, idle) = cpu_line(&steps);
        assert!((per_request - 0.001).abs() < 1e-9 && (idle - 0.02).abs() < 1e-9, "{per_request} {idle}");
        // One step: its CPU over its rate, no idle share.
        let (per_request, idle) = cpu_line(&steps[..1]);
        assert!((per_request - 0.0012).abs() < 1e-12 && idle == 0.0, "{per_request} {idle}");
    }

    #[test]
    fn replicas_follow_the_hpa_and_the_target_is_judged() {
        // 1 ms of CPU a request, no idle; one pod meets the SLO up to 400/s.
        let steps: Vec<Step> = [100.0, 200.0, 400.0].iter().map(|&r| step(r, r * 0.001)).collect();
        let projection = project(&hpa(50.0), &steps, Some(2), Kind::Http);
        // 50% of 250m = 0.125 cores = 125 requests/s per pod.
        let cpu = &projection.targets[0];
        assert!((cpu.load_at_target.unwrap() - 125.0).abs() < 1e-6);
        assert_eq!(cpu.verdict.as_deref(), Some("wasteful"), "137.5 tolerated < half of 400");
        let at = |load: f64| projection.rows.iter().find(|r| r.offered == load).unwrap().replicas;
        assert_eq!(at(100.0), 1);
        assert_eq!(at(400.0), 4, "400/s at 125/s per pod: ceil(3.2)");
        assert_eq!(projection.rows.last().unwrap().replicas, 10, "capped at the maximum");
        // A target at 100% of the request (250 requests/s, 275 tolerated) is
        // safe; 150% (375/s, 412.5 tolerated) is too late.
        assert_eq!(project(&hpa(100.0), &steps, Some(2), Kind::Http).targets[0].verdict.as_deref(), Some("safe"));
        assert_eq!(project(&hpa(150.0), &steps, Some(2), Kind::Http).targets[0].verdict.as_deref(), Some("too late"));
        assert_eq!(project(&hpa(200.0), &steps, Some(2), Kind::Http).targets[0].verdict.as_deref(), Some("too late"));
    }

    #[test]
    fn a_keda_threshold_on_the_guests_gauge_is_projected_from_its_signal() {
        // Each client shows as one in the gauge; one pod holds 200 clients within the SLO.
        let steps: Vec<Step> = [50.0, 100.0, 200.0]
            .iter()
            .map(|&clients| {
                let mut s = step(clients, clients * 0.004);
                s.signals.insert("mx_server_active_conn_gauge".into(), clients);
                s
            })
            .collect();
        let keda = |threshold: f64, query: &str| Policy {
            source: "ScaledObject/scalelab".into(),
            deployment: "scalelab".into(),
            bounds: Bounds { min_replicas: 1, max_replicas: 15, tolerance: 0.1 },
            metrics: vec![Metric::AverageValue { threshold, query: Some(query.into()) }],
        };
        let query = r#"sum(mx_server_active_conn_gauge{namespace="scalelab"})"#;
        let projection = project(&keda(10.0, query), &steps, Some(2), Kind::Sockets);
        let target = &projection.targets[0];
        assert!((target.load_at_target.unwrap() - 10.0).abs() < 1e-6, "{target:?}");
        assert_eq!(target.verdict.as_deref(), Some("wasteful"), "11 clients tolerated of 200");
        assert!(target.note.contains("10 clients"), "{}", target.note);
        let at = |load: f64| projection.rows.iter().find(|r| r.offered == load).unwrap().replicas;
        assert_eq!(at(50.0), 5, "ceil(50 / 10)");
        assert_eq!(at(100.0), 10);
        assert_eq!(project(&keda(150.0, query), &steps, Some(2), Kind::Sockets).targets[0].verdict.as_deref(), Some("safe"));
        assert_eq!(project(&keda(190.0, query), &steps, Some(2), Kind::Sockets).targets[0].verdict.as_deref(), Some("too late"));
        // A query on a metric the target did not show: not projected, and said so.
        let unknown = project(&keda(10.0, "sum(other_gauge)"), &steps, Some(2), Kind::Sockets);
        assert!(unknown.targets[0].verdict.is_none() && unknown.targets[0].note.contains("other_gauge"));
        assert!(unknown.rows.iter().all(|r| r.replicas == 1));
    }
}
