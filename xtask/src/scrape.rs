//! A scalelab host's `/metrics` as the benches and the soak read it: one
//! fetch of the admin listener, then the series they need picked out of
//! Prometheus' text format.

use anyhow::{Context, Result};

/// The text of a host's `/metrics` (`admin`: its admin listener's base URL).
pub fn fetch(admin: &str) -> Result<String> {
    Ok(ureq::get(&format!("{admin}/metrics")).call().context("reading the host's /metrics")?.body_mut().read_to_string()?)
}

/// The value of the series written exactly `name` (with its labels, if any)
/// on a host's `/metrics`.
pub fn metric(admin: &str, name: &str) -> Result<f64> {
    let text = fetch(admin)?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .with_context(|| format!("no {name} in /metrics"))
}

/// The value of the first series `name{...}` whose labels contain `label`
/// (`key="value"`; an empty `label` takes the first series of any labels).
pub fn labelled(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let labels = series.strip_prefix(name)?.strip_prefix('{')?;
        labels.contains(label).then(|| value.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# TYPE scalelab_session_call_duration_seconds histogram
scalelab_session_call_duration_seconds_bucket{call=\"session_tick\",guest=\"tracker\",le=\"0.001\"} 90
scalelab_session_call_duration_seconds_sum{call=\"opened\",guest=\"tracker\"} 0.5
scalelab_session_call_duration_seconds_sum{call=\"session_tick\",guest=\"tracker\"} 3.25
scalelab_session_call_duration_seconds_count{call=\"session_tick\",guest=\"tracker\"} 100
scalelab_session_call_duration_seconds_sum_other{call=\"session_tick\"} 7
";

    #[test]
    fn a_labelled_series_is_found_by_name_and_label() {
        let sum = labelled(METRICS, "scalelab_session_call_duration_seconds_sum", "call=\"session_tick\"");
        assert_eq!(sum, Some(3.25));
        let count = labelled(METRICS, "scalelab_session_call_duration_seconds_count", "call=\"session_tick\"");
        assert_eq!(count, Some(100.0));
        assert_eq!(labelled(METRICS, "scalelab_session_call_duration_seconds_sum", "call=\"tick\""), None);
        assert_eq!(labelled(METRICS, "scalelab_absent_total", "call=\"session_tick\""), None);
    }
}
