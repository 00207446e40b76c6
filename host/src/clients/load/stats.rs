//! What a load run measured: latencies in HDR histograms (whole run and per
//! second), status codes, and transport errors by kind; and the report made
//! from them, as JSON for machines or a table for people.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection could not be made (refused, unreachable).
    Connect,
    /// No response within `--timeout`.
    Timeout,
    /// The connection broke: reset, closed mid-response.
    Reset,
    /// Anything else (protocol errors).
    Other,
}

/// Latencies are recorded in microseconds, from 1 µs to an hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

fn histogram(significant_figures: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, significant_figures).expect("valid histogram bounds")
}

/// Collects results from every request task.
pub struct Recorder {
    start: Instant,
    inner: Mutex<Totals>,
}

#[derive(Clone)]
struct Totals {
    latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: ErrorCounts,
    /// One entry per second of the run, by completion time.
    seconds: Vec<Second>,
}

#[derive(Clone)]
struct Second {
    latency: Histogram<u64>,
    errors: u64,
    server_errors: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ErrorCounts {
    pub connect: u64,
    pub timeout: u64,
    pub reset: u64,
    pub other: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.reset + self.other
    }
}

/// One second of the run as shown in the live progress line.
pub struct Progress {
    pub elapsed: Duration,
    pub last_second_rps: u64,
    pub last_second_p99: Duration,
    pub errors: u64,
}

impl Recorder {
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            start,
            inner: Mutex::new(Totals {
                latency: histogram(3),
                statuses: BTreeMap::new(),
                errors: ErrorCounts::default(),
                seconds: Vec::new(),
            }),
        }
    }

    /// Records one finished request: when it finished, how long it took
    /// (from its due time in the open model), and its status or error.
    pub fn record(&self, finished: Instant, latency: Duration, result: Result<u16, ErrorKind>) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        let second = finished.saturating_duration_since(self.start).as_secs() as usize;
        let mut totals = self.inner.lock().unwrap();
        while totals.seconds.len() <= second {
            totals.seconds.push(Second { latency: histogram(2), errors: 0, server_errors: 0 });
        }
        match result {
            Ok(status) => {
                totals.latency.saturating_record(micros);
                *totals.statuses.entry(status).or_default() += 1;
                let entry = &mut totals.seconds[second];
                entry.latency.saturating_record(micros);
                if status >= 500 {
                    entry.server_errors += 1;
                }
            }
            Err(kind) => {
                let errors = &mut totals.errors;
                match kind {
                    ErrorKind::Connect => errors.connect += 1,
                    ErrorKind::Timeout => errors.timeout += 1,
                    ErrorKind::Reset => errors.reset += 1,
                    ErrorKind::Other => errors.other += 1,
                }
                totals.seconds[second].errors += 1;
            }
        }
    }

    /// The last complete second, for the live progress line.
    pub fn progress(&self, now: Instant) -> Progress {
        let elapsed = now.saturating_duration_since(self.start);
        let totals = self.inner.lock().unwrap();
        let last = (elapsed.as_secs() as usize).checked_sub(1).and_then(|i| totals.seconds.get(i));
        Progress {
            elapsed,
            last_second_rps: last.map_or(0, |s| s.latency.len() + s.errors),
            last_second_p99: last.map_or(Duration::ZERO, |s| Duration::from_micros(s.latency.value_at_quantile(0.99))),
            errors: totals.errors.total(),
        }
    }

    /// The report of the run so far, over `elapsed`.
    pub fn report(&self, elapsed: Duration) -> Report {
        let totals = self.inner.lock().unwrap().clone();
        Report::new(&totals, elapsed)
    }
}

/// The result of a run, as written by `--output json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seconds from the first request's start to the last one's end.
    pub duration_s: f64,
    /// Requests that completed with a response or failed with an error.
    pub requests: u64,
    pub responses: u64,
    pub requests_per_second: f64,
    pub latency_ms: Latency,
    /// Responses by status code.
    pub status: BTreeMap<String, u64>,
    pub errors: ErrorCounts,
    /// (transport errors + 5xx responses) / requests.
    pub error_rate: f64,
    pub series: Vec<SecondReport>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecondReport {
    /// Seconds since the start (0 is the first second).
    pub second: u64,
    pub requests: u64,
    pub errors: u64,
    pub server_errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Latency {
    /// The summary of a histogram of microseconds, in ms (zeros when empty);
    /// every load client summarises its latencies here.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency { p50: 0.0, p90: 0.0, p99: 0.0, p99_9: 0.0, max: 0.0, mean: 0.0 };
        }
        Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

impl Report {
    fn new(totals: &Totals, elapsed: Duration) -> Report {
        let responses = totals.latency.len();
        let requests = responses + totals.errors.total();
        let server_errors: u64 = totals.statuses.iter().filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum();
        let secs = elapsed.as_secs_f64();
        Report {
            duration_s: secs,
            requests,
            responses,
            requests_per_second: if secs > 0.0 { requests as f64 / secs } else { 0.0 },
            latency_ms: Latency::of(&totals.latency),
            status: totals.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            errors: totals.errors,
            error_rate: if requests > 0 { (totals.errors.total() + server_errors) as f64 / requests as f64 } else { 0.0 },
            series: totals
                .seconds
                .iter()
                .enumerate()
                .map(|(i, s)| SecondReport {
                    second: i as u64,
                    requests: s.latency.len() + s.errors,
                    errors: s.errors,
                    server_errors: s.server_errors,
                    p50_ms: ms(s.latency.value_at_quantile(0.5)),
                    p99_ms: ms(s.latency.value_at_quantile(0.99)),
                })
                .collect(),
        }
    }

    /// The human-readable table.
    pub fn table(&self, title: &str) -> String {
        let l = &self.latency_ms;
        let status = if self.status.is_empty() {
            "none".to_string()
        } else {
            self.status.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", ")
        };
        let e = &self.errors;
        format!(
            "{title}\n\
             requests     {} in {:.2} s = {:.1} requests/s\n\
             latency ms   p50 {:.3}   p90 {:.3}   p99 {:.3}   p99.9 {:.3}   max {:.3}   mean {:.3}\n\
             status       {status}\n\
             errors       connect {}, timeout {}, reset {}, other {}   (error rate {:.2}%, 5xx included)\n",
            self.requests,
            self.duration_s,
            self.requests_per_second,
            l.p50,
            l.p90,
            l.p99,
            l.p99_9,
            l.max,
            l.mean,
            e.connect,
            e.timeout,
            e.reset,
            e.other,
            self.error_rate * 100.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let start = Instant::now();
        let recorder = Recorder::new(start);
        // 1..=1000 ms, one request each, all finishing in the first second.
        for ms in 1..=1000u64 {
            recorder.record(start, Duration::from_millis(ms), Ok(200));
        }
        let report = recorder.report(Duration::from_secs(2));
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        let l = &report.latency_ms;
        assert!(close(l.p50, 500.0), "{l:?}");
        assert!(close(l.p90, 900.0), "{l:?}");
        assert!(close(l.p99, 990.0), "{l:?}");
        assert!(close(l.p99_9, 999.0), "{l:?}");
        assert!(close(l.max, 1000.0), "{l:?}");
        assert!(close(l.mean, 500.5), "{l:?}");
        assert_eq!(report.requests, 1000);
        assert_eq!(report.requests_per_second, 500.0);
    }

    #[test]
    fn statuses_errors_and_seconds_are_counted() {
        let start = Instant::now();
        let recorder = Recorder::new(start);
        let ms = Duration::from_millis;
        recorder.record(start, ms(1), Ok(200));
        recorder.record(start + ms(1500), ms(2), Ok(503));
        recorder.record(start + ms(1600), ms(3), Err(ErrorKind::Connect));
        recorder.record(start + ms(3200), ms(4), Err(ErrorKind::Reset));
        recorder.record(start + ms(3300), ms(5), Err(ErrorKind::Timeout));
        let report = recorder.report(Duration::from_secs(4));
        assert_eq!(report.requests, 5);
        assert_eq!(report.responses, 2);
        assert_eq!(report.status, BTreeMap::from([("200".into(), 1), ("503".into(), 1)]));
        assert_eq!(report.errors, ErrorCounts { connect: 1, timeout: 1, reset: 1, other: 0 });
        assert_eq!(report.error_rate, 4.0 / 5.0);
        let per_second: Vec<(u64, u64, u64)> = report.series.iter().map(|s| (s.requests, s.errors, s.server_errors)).collect();
        assert_eq!(per_second, [(1, 0, 0), (2, 1, 1), (0, 0, 0), (2, 2, 0)]);
        assert!(report.table("t").contains("connect 1, timeout 1, reset 1"));
    }

    #[test]
    fn the_json_report_has_the_documented_fields() {
        let start = Instant::now();
        let recorder = Recorder::new(start);
        recorder.record(start, Duration::from_millis(3), Ok(200));
        let json = serde_json::to_value(recorder.report(Duration::from_secs(1))).unwrap();
        for key in [
            "duration_s",
            "requests",
            "responses",
            "requests_per_second",
            "latency_ms",
            "status",
            "errors",
            "error_rate",
            "series",
        ] {
            assert!(json.get(key).is_some(), "missing {key}: {json}");
        }
        for key in ["p50", "p90", "p99", "p99_9", "max", "mean"] {
            assert!(json["latency_ms"][key].is_number(), "latency_ms.{key}");
        }
        for key in ["connect", "timeout", "reset", "other"] {
            assert!(json["errors"][key].is_number(), "errors.{key}");
        }
        for key in ["second", "requests", "errors", "server_errors", "p50_ms", "p99_ms"] {
            assert!(json["series"][0][key].is_number(), "series[0].{key}");
        }
    }
}
