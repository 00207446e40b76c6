//! The autoscaler's view: from the CPU each request costs (fitted over the
//! steps within the SLO) and the overlay's autoscaling policy, the replicas
//! each offered load ends up with (the HPA rule iterated to its steady
//! state, `autoscale::steady_state`), and whether the target is safe,
//! wasteful or too late for what one pod was measured to take.

use super::staircase::Step;
use autoscale::{Metric, Policy, Resource, Verdict, judge, steady_state};
use serde::Serialize;

/// The replicas one offered load ends up with.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// Requests/s offered to the whole Deployment.
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
    /// Requests/s one pod carries when its metric is at the target, if it follows the load.
    pub load_at_target: Option<f64>,
    /// `safe`, `wasteful` or `too late`; none when it cannot be judged from HTTP load.
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
    /// CPU core-seconds per request, and what the pod burns with no load.
    pub cpu_per_request: f64,
    pub idle_cores: f64,
    /// Requests/s one pod carries within the SLO (the knee's).
    pub capacity_per_pod: Option<f64>,
    pub targets: Vec<TargetView>,
    pub rows: Vec<Row>,
}

/// CPU as a line over achieved rate: `idle + per_request × rate`, fitted by
/// least squares over `steps` (the ones within the SLO).
pub fn cpu_line(steps: &[Step]) -> (f64, f64) {
    let points: Vec<(f64, f64)> = steps.iter().filter(|s| s.achieved > 0.0).map(|s| (s.achieved, s.cpu_cores)).collect();
    let n = points.len() as f64;
    if points.len() >= 2 {
        let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        if sxx > 0.0 && sxy > 0.0 {
            let slope = sxy / sxx;
            return (slope, (my - slope * mx).max(0.0));
        }
    }
    match points.last() {
        Some(&(rate, cores)) => (cores / rate, 0.0),
        None => (0.0, 0.0),
    }
}

pub fn project(policy: &Policy, steps: &[Step], knee: Option<usize>) -> Projection {
    // What one pod does within the SLO (all steps when none met it).
    let within = match knee {
        Some(k) => &steps[..=k],
        None => steps,
    };
    let (per_request, idle) = cpu_line(within);
    let capacity = knee.map(|k| steps[k].achieved);
    // Memory as the pod holds it within the SLO (an overloaded step holds its waiting requests).
    let peak_rss = within.iter().map(|s| s.rss_bytes).fold(0.0, f64::max);
    let tolerance = policy.bounds.tolerance;
    let targets: Vec<TargetView> =
        policy.metrics.iter().map(|metric| view(metric, per_request, idle, peak_rss, capacity, tolerance)).collect();

    // Loads from none to what the maximum of pods could take, and each step's.
    let top = capacity.unwrap_or_else(|| steps.iter().map(|s| s.offered).fold(0.0, f64::max));
    let ceiling = (top * f64::from(policy.bounds.max_replicas) * 1.2).max(1.0);
    let mut loads: Vec<f64> = (0..=24).map(|i| ceiling * f64::from(i) / 24.0).collect();
    loads.extend(steps.iter().map(|s| s.offered));
    loads.sort_by(f64::total_cmp);
    loads.dedup();
    let cpu = policy.metrics.iter().find_map(|m| match m {
        Metric::Utilization { resource: Resource::Cpu, percent, request } => Some((*percent, *request)),
        _ => None,
    });
    let rows = loads
        .into_iter()
        .map(|offered| {
            let replicas = policy
                .metrics
                .iter()
                .filter_map(|metric| match metric {
                    Metric::Utilization { resource: Resource::Cpu, percent, request } => {
                        let at = move |n: u32| (idle + per_request * offered / f64::from(n.max(1))) / request * 100.0;
                        Some(steady_state(&policy.bounds, *percent, at).replicas)
                    }
                    Metric::Utilization { resource: Resource::Memory, percent, request } => {
                        let at = move |_: u32| peak_rss / request * 100.0;
                        Some(steady_state(&policy.bounds, *percent, at).replicas)
                    }
                    Metric::AverageValue { .. } => None,
                })
                .max()
                .unwrap_or(policy.bounds.min_replicas.max(1));
            let cpu_percent_per_pod =
                cpu.map(|(_, request)| (idle + per_request * offered / f64::from(replicas)) / request * 100.0);
            Row { offered, replicas, cpu_percent_per_pod }
        })
        .collect();
    Projection {
        source: policy.source.clone(),
        min_replicas: policy.bounds.min_replicas,
        max_replicas: policy.bounds.max_replicas,
        cpu_per_request: per_request,
        idle_cores: idle,
        capacity_per_pod: capacity,
        targets,
        rows,
    }
}

fn view(metric: &Metric, per_request: f64, idle: f64, peak_rss: f64, capacity: Option<f64>, tolerance: f64) -> TargetView {
    match metric {
        Metric::Utilization { resource: Resource::Cpu, percent, request } => {
            let name = format!("cpu {percent}% of {request} cores");
            let load = (per_request > 0.0).then(|| (percent / 100.0 * request - idle) / per_request).filter(|l| *l > 0.0);
            let Some(load) = load else {
                let note = "the pod's idle CPU is already over the target: the HPA scales to the maximum whatever the load";
                return TargetView {
                    metric: name,
                    load_at_target: None,
                    verdict: Some(Verdict::Wasteful.as_str().into()),
                    note: note.into(),
                };
            };
            let (verdict, note) = match capacity {
                Some(capacity) => {
                    let verdict = judge(load, tolerance, capacity);
                    let note = format!(
                        "one pod reaches the target at {load:.0} requests/s and the HPA lets it go to {:.0} before adding pods; it meets the SLO up to {capacity:.0} requests/s: {}",
                        load * (1.0 + tolerance),
                        explain(verdict)
                    );
                    (Some(verdict.as_str().to_string()), note)
                }
                None => (
                    None,
                    format!("one pod reaches the target at {load:.0} requests/s; no step met the SLO, so it cannot be judged"),
                ),
            };
            TargetView { metric: name, load_at_target: Some(load), verdict, note }
        }
        Metric::Utilization { resource: Resource::Memory, percent, request } => {
            let used = peak_rss / request * 100.0;
            let note = if used >= *percent {
                format!(
                    "memory is at {used:.0}% of its request with any load, over the {percent}% target: the HPA keeps the maximum of pods"
                )
            } else {
                format!(
                    "memory stays near {used:.0}% of its request whatever the load, under the {percent}% target: it never scales on memory"
                )
            };
            let verdict = (used >= *percent).then(|| Verdict::Wasteful.as_str().to_string());
            TargetView { metric: format!("memory {percent}% of {request} bytes"), load_at_target: None, verdict, note }
        }
        Metric::AverageValue { threshold, query } => TargetView {
            metric: format!("{} per pod: {threshold}", query.as_deref().unwrap_or("a metric")),
            load_at_target: None,
            verdict: None,
            note: "an average-value metric (such as connected clients) does not follow an HTTP request rate: not projected"
                .into(),
        },
    }
}

fn explain(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Safe => "pods are added before one is overloaded, without idling half of it",
        Verdict::Wasteful => "pods are added while each could take more than twice the load",
        Verdict::TooLate => "a pod misses the SLO before the HPA adds another",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autoscale::Bounds;

    fn step(rate: f64, cores: f64) -> Step {
        Step {
            offered: rate,
            achieved: rate,
            requests: 100,
            error_rate: 0.0,
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms: 3.0,
            cpu_cores: cores,
            rss_bytes: 3.0e7,
        }
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
        let projection = project(&hpa(50.0), &steps, Some(2));
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
        assert_eq!(project(&hpa(100.0), &steps, Some(2)).targets[0].verdict.as_deref(), Some("safe"));
        assert_eq!(project(&hpa(150.0), &steps, Some(2)).targets[0].verdict.as_deref(), Some("too late"));
        assert_eq!(project(&hpa(200.0), &steps, Some(2)).targets[0].verdict.as_deref(), Some("too late"));
    }
}
