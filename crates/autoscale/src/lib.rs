//! What an autoscaler will do with a measured load, for `scalelab report`.
//!
//! The Horizontal Pod Autoscaler's rule (Kubernetes documentation, "Algorithm
//! details"): `desired = ceil(current × metric / target)`, unless the ratio
//! `metric / target` is within the tolerance (0.1 by default) of 1, in which
//! case nothing changes; the result is clamped to `[min, max]`. `metric` is
//! the pods' average: CPU as a percentage of the request for a `Utilization`
//! target, or the metric's value per pod for an `AverageValue` target, which
//! is what KEDA's ScaledObjects become (`threshold` per pod).
//!
//! [`steady_state`] runs that rule against a load model (the metric each pod
//! sees when `n` pods share an offered load) until the count stops moving:
//! the replicas a given load ends up with. [`judge`] compares where the
//! autoscaler lets one pod go with what one pod was measured to take.

mod policy;
mod promql;

pub use policy::{Metric, Policy, Resource, container_resources, quantity};
pub use promql::metric_names;

/// The HPA's default tolerance (`--horizontal-pod-autoscaler-tolerance`).
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// The scaling bounds and tolerance of one autoscaler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub tolerance: f64,
}

/// One decision of the HPA: the replicas it wants with `current` pods whose
/// average metric is `metric`, against `target` (the same unit), before
/// clamping.
pub fn desired(current: u32, metric: f64, target: f64, tolerance: f64) -> u32 {
    assert!(target > 0.0, "an autoscaling target is positive");
    let ratio = metric / target;
    if (ratio - 1.0).abs() <= tolerance {
        return current;
    }
    // A tiny epsilon keeps exact products (2.0000000001) from rounding up.
    (ratio * f64::from(current) - 1e-9).ceil().max(0.0) as u32
}

impl Bounds {
    /// One decision, clamped to the bounds.
    pub fn decide(&self, current: u32, metric: f64, target: f64) -> u32 {
        desired(current, metric, target, self.tolerance).clamp(self.min_replicas, self.max_replicas)
    }
}

/// Where the replica count settled for one offered load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steady {
    pub replicas: u32,
    /// Each pod's metric there.
    pub metric_per_pod: f64,
    /// Decisions taken from `min_replicas` to get there.
    pub decisions: u32,
    /// The count kept moving between values (it settled on the largest).
    pub oscillates: bool,
}

/// Runs the HPA from `min_replicas` against `metric_at(n)` (each pod's
/// average metric when `n` pods share the load) until a decision keeps the
/// count: the replicas this load ends up with.
pub fn steady_state(bounds: &Bounds, target: f64, metric_at: impl Fn(u32) -> f64) -> Steady {
    let mut seen = vec![bounds.min_replicas.max(1)];
    let mut current = seen[0];
    for decisions in 1..=64 {
        let next = bounds.decide(current, metric_at(current), target).max(1);
        if next == current {
            return Steady { replicas: current, metric_per_pod: metric_at(current), decisions: decisions - 1, oscillates: false };
        }
        if seen.contains(&next) {
            let cycle_from = seen.iter().position(|&n| n == next).unwrap_or(0);
            let replicas = seen[cycle_from..].iter().copied().max().unwrap_or(next);
            return Steady { replicas, metric_per_pod: metric_at(replicas), decisions, oscillates: true };
        }
        seen.push(next);
        current = next;
    }
    Steady { replicas: current, metric_per_pod: metric_at(current), decisions: 64, oscillates: true }
}

/// The metric each pod shows when `n` pods share a load evenly: `total / n`
/// plus what an idle pod shows.
pub fn shared(total: f64, idle_per_pod: f64) -> impl Fn(u32) -> f64 {
    move |n| total / f64::from(n.max(1)) + idle_per_pod
}

/// How an autoscaling target compares with what one pod can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The autoscaler adds pods before one passes what it can take, with room to spare.
    Safe,
    /// It adds pods while each could still take more than twice the load
    /// (`wasteful_below` of its capacity, by default one half).
    Wasteful,
    /// A pod can pass what it takes (the SLO breaks) before the autoscaler adds another.
    TooLate,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::Wasteful => "wasteful",
            Verdict::TooLate => "too late",
        }
    }
}

/// The fraction of a pod's capacity under which scaling out counts as wasteful.
pub const WASTEFUL_BELOW: f64 = 0.5;

/// Judges a target: `load_at_target` is the load one pod carries when its
/// metric is at the target; the HPA lets it go `tolerance` above that before
/// it acts. `capacity` is the most load one pod was measured to carry within
/// the SLO.
pub fn judge(load_at_target: f64, tolerance: f64, capacity: f64) -> Verdict {
    let highest_tolerated = load_at_target * (1.0 + tolerance);
    if highest_tolerated > capacity {
        Verdict::TooLate
    } else if highest_tolerated < capacity * WASTEFUL_BELOW {
        Verdict::Wasteful
    } else {
        Verdict::Safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HPA: Bounds = Bounds { min_replicas: 1, max_replicas: 10, tolerance: DEFAULT_TOLERANCE };

    #[test]
    fn the_documented_examples() {
        // "if the current metric value is 200m, and the desired value is
        // 100m, the number of replicas will be doubled": 1 pod -> 2.
        assert_eq!(HPA.decide(1, 200.0, 100.0), 2);
        // Within the 0.1 tolerance: unchanged (both ways).
        assert_eq!(HPA.decide(4, 108.0, 100.0), 4);
        assert_eq!(HPA.decide(4, 91.0, 100.0), 4);
        // "if the current value is instead 50m, you'll halve the number of replicas".
        assert_eq!(HPA.decide(4, 50.0, 100.0), 2);
        // KEDA AverageValue: a metric of 20 in all with a threshold of 5 per
        // pod -> 4 pods (from 1 pod, whose average is the whole 20).
        assert_eq!(HPA.decide(1, 20.0, 5.0), 4);
        // Clamped to the bounds.
        assert_eq!(HPA.decide(3, 1000.0, 10.0), 10);
        assert_eq!(HPA.decide(3, 0.0, 10.0), 1);
    }

    #[test]
    fn steady_states_of_shared_loads() {
        // KEDA, 10 clients per pod, 35 clients: 4 pods (8.75 each).
        let keda = steady_state(&HPA, 10.0, shared(35.0, 0.0));
        assert_eq!((keda.replicas, keda.oscillates), (4, false));
        assert!((keda.metric_per_pod - 8.75).abs() < 1e-9);
        // CPU at 50% of the request: 240% of one request's worth in all -> 5 pods at 48%.
        let hpa = steady_state(&HPA, 50.0, shared(240.0, 0.0));
        assert_eq!(hpa.replicas, 5);
        // No load: the minimum.
        assert_eq!(steady_state(&HPA, 50.0, shared(0.0, 2.0)).replicas, 1);
        // More than the maximum can hold: the maximum.
        assert_eq!(steady_state(&HPA, 50.0, shared(10_000.0, 0.0)).replicas, 10);
    }

    #[test]
    fn verdicts() {
        // One pod takes 100 requests/s within the SLO.
        assert_eq!(judge(60.0, 0.1, 100.0), Verdict::Safe);
        assert_eq!(judge(95.0, 0.1, 100.0), Verdict::TooLate, "104.5 tolerated > 100");
        assert_eq!(judge(30.0, 0.1, 100.0), Verdict::Wasteful);
    }

    proptest::proptest! {
        /// A steady state is within the bounds, a decision there keeps it
        /// (unless the count oscillates), and no pod stays above the target
        /// by more than the tolerance unless the maximum is reached.
        #[test]
        fn steady_states_are_fixed_points(total in 0.0f64..5_000.0, target in 1.0f64..200.0, max in 1u32..50) {
            let bounds = Bounds { min_replicas: 1, max_replicas: max, tolerance: DEFAULT_TOLERANCE };
            let steady = steady_state(&bounds, target, shared(total, 0.0));
            proptest::prop_assert!((1..=max).contains(&steady.replicas));
            if !steady.oscillates {
                let n = steady.replicas;
                proptest::prop_assert_eq!(bounds.decide(n, steady.metric_per_pod, target), n);
                let ratio = steady.metric_per_pod / target;
                proptest::prop_assert!(ratio <= 1.0 + DEFAULT_TOLERANCE || n == max, "n {} ratio {}", n, ratio);
            }
        }
    }
}
