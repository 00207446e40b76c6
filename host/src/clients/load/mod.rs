//! `scalelab load`: the HTTP load client of scaling experiments.
//!
//! Closed model: `--concurrency` workers, each sending its next request when
//! the previous one is answered, for `--duration` or `--requests`. Open model
//! (`--rate`): requests are due at a fixed (or linearly ramping) arrival rate
//! whatever the server does, and latency counts from the due time (see
//! `schedule.rs`). The report is a table or, with `--output json`, the whole
//! result with a per-second series; thresholds turn it into an exit status.

pub mod client;
pub mod plan;
pub mod schedule;
pub mod stats;

use crate::cli::{LoadArgs, OutputFormat};
use anyhow::{Context, Result};
use bytes::Bytes;
use client::Client;
use plan::{Plan, Template};
use schedule::Rate;
use stats::{Recorder, Report};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// A command line that does not make sense; exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The run's verdict: whether every threshold held.
pub struct Verdict {
    pub passed: bool,
}

/// How the load is offered.
enum Model {
    Closed { concurrency: u32 },
    Open { rate: Rate, max_outstanding: u32 },
}

pub async fn run(args: LoadArgs) -> Result<Verdict> {
    let usage = |message: String| anyhow::Error::new(UsageError(message));
    let plan = Arc::new(build_plan(&args).map_err(usage)?);
    let model = match &args.rate {
        Some(text) => Model::Open { rate: Rate::parse(text, args.ramp).map_err(usage)?, max_outstanding: args.max_outstanding },
        None if args.ramp.is_some() => return Err(usage("--ramp goes with --rate A..B".into())),
        None => Model::Closed { concurrency: args.concurrency },
    };
    if args.duration.is_none() && args.requests.is_none() {
        return Err(usage("give --duration or --requests (or both)".into()));
    }
    // Ctrl-C (SIGINT) stops sending; the report covers what was sent. The
    // handler is registered here, before the first request is sent.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let on_interrupt = stop.clone();
    let mut interrupt =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).context("installing the Ctrl-C handler")?;
    tokio::spawn(async move {
        if interrupt.recv().await.is_some() {
            on_interrupt.store(true, Ordering::Relaxed);
        }
    });
    let limit = Limit { until: args.duration, requests: args.requests, stop };

    let client = Client::new(args.http2, args.timeout);
    let start = Instant::now();
    let recorder = Arc::new(Recorder::new(start));
    let progress = (args.output == OutputFormat::Table && std::io::stderr().is_terminal())
        .then(|| tokio::spawn(show_progress(recorder.clone())));

    match model {
        Model::Closed { concurrency } => closed(&plan, &client, &recorder, start, &limit, concurrency).await,
        Model::Open { rate, max_outstanding } => open(&plan, &client, &recorder, start, &limit, rate, max_outstanding).await,
    }
    let elapsed = start.elapsed();
    if let Some(progress) = progress {
        progress.abort();
        eprint!("\r\x1b[2K");
    }

    let report = recorder.report(elapsed);
    let failures = check_thresholds(&report, &args);
    match args.output {
        OutputFormat::Json => {
            let mut value = serde_json::to_value(&report)?;
            value["thresholds"] = serde_json::json!({ "passed": failures.is_empty(), "failures": failures });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        OutputFormat::Table => {
            let targets: Vec<String> = plan.templates.iter().map(|t| format!("{} {}", t.method, t.uri)).collect();
            let model = match &args.rate {
                Some(rate) => format!("open model, {rate} requests/s"),
                None => format!("closed model, {} connections", args.concurrency),
            };
            print!("{}", report.table(&format!("scalelab load: {model}: {}", targets.join(", "))));
            for failure in &failures {
                println!("threshold    FAILED: {failure}");
            }
        }
    }
    if report.requests > 0 && report.errors.total() == report.requests {
        tracing::warn!("every request failed: is the server running at the URL given?");
    }
    Ok(Verdict { passed: failures.is_empty() })
}

fn build_plan(args: &LoadArgs) -> Result<Plan, String> {
    if let Some(path) = &args.scenario {
        if !args.urls.is_empty() {
            return Err("give URLs or --scenario, not both".into());
        }
        return Plan::from_file(path);
    }
    let body = match (&args.body, &args.body_file) {
        (Some(_), Some(_)) => return Err("give --body or --body-file, not both".into()),
        (Some(text), None) => Bytes::from(text.clone()),
        (None, Some(path)) => Bytes::from(std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?),
        (None, None) => Bytes::new(),
    };
    let headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("header {h:?} is not NAME: VALUE"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let templates =
        args.urls.iter().map(|url| Template::new(&args.method, url, &headers, body.clone(), 1)).collect::<Result<Vec<_>, _>>()?;
    Plan::new(templates)
}

/// When a run stops: after a duration, a number of requests, or both, or
/// when interrupted.
#[derive(Clone)]
struct Limit {
    until: Option<Duration>,
    requests: Option<u64>,
    /// Set by Ctrl-C.
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Limit {
    fn time_left(&self, start: Instant, now: Instant) -> bool {
        !self.stop.load(Ordering::Relaxed) && self.until.is_none_or(|d| now.duration_since(start) < d)
    }
}

async fn closed(plan: &Arc<Plan>, client: &Client, recorder: &Arc<Recorder>, start: Instant, limit: &Limit, concurrency: u32) {
    let issued = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (plan, client, recorder, issued, limit) =
                (plan.clone(), client.clone(), recorder.clone(), issued.clone(), limit.clone());
            // A worker's own connection when the run allows one (see `Connection`).
            let mut own = client.connection(plan.templates.iter().map(|t| &t.uri));
            tokio::spawn(async move {
                loop {
                    let sent = Instant::now();
                    if !limit.time_left(start, sent) {
                        break;
                    }
                    if issued.fetch_add(1, Ordering::Relaxed) >= limit.requests.unwrap_or(u64::MAX) {
                        break;
                    }
                    let result = match own.as_mut() {
                        Some(connection) => connection.send(plan.pick()).await,
                        None => client.send(plan.pick()).await,
                    };
                    let done = Instant::now();
                    recorder.record(done, done - sent, result);
                    if result.is_err() {
                        // Do not spin on a server that refuses or drops connections.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
}

async fn open(
    plan: &Arc<Plan>,
    client: &Client,
    recorder: &Arc<Recorder>,
    start: Instant,
    limit: &Limit,
    rate: Rate,
    max_outstanding: u32,
) {
    let outstanding = Arc::new(Semaphore::new(max_outstanding as usize));
    for k in 0..limit.requests.unwrap_or(u64::MAX) {
        let due = start + rate.due(k);
        if !limit.time_left(start, due) {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        if !limit.time_left(start, due) {
            break; // interrupted while waiting
        }
        // At the cap, wait: the time waited still counts (from `due`).
        let Ok(permit) = outstanding.clone().acquire_owned().await else { break };
        let (plan, client, recorder) = (plan.clone(), client.clone(), recorder.clone());
        tokio::spawn(async move {
            let result = client.send(plan.pick()).await;
            let done = Instant::now();
            recorder.record(done, done - due, result);
            drop(permit);
        });
    }
    // Wait for the requests still out.
    let _ = outstanding.acquire_many(max_outstanding).await;
}

/// One open-model run at a constant `rate` (requests/s) for `duration`,
/// in this process: a step of `scalelab report`'s staircase.
pub async fn run_at_rate(plan: &Arc<Plan>, client: &Client, rate: f64, duration: Duration, max_outstanding: u32) -> Report {
    let limit = Limit { until: Some(duration), requests: None, stop: Arc::new(std::sync::atomic::AtomicBool::new(false)) };
    let start = Instant::now();
    let recorder = Arc::new(Recorder::new(start));
    let rate = Rate { from: rate, to: rate, ramp: Duration::ZERO };
    open(plan, client, &recorder, start, &limit, rate, max_outstanding).await;
    recorder.report(start.elapsed())
}

/// Rewrites one status line on the terminal every second.
async fn show_progress(recorder: Arc<Recorder>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let p = recorder.progress(Instant::now());
        eprint!(
            "\r\x1b[2K{:>5.0} s   {:>8} requests/s   p99 {:>8.3} ms   errors {}",
            p.elapsed.as_secs_f64(),
            p.last_second_rps,
            p.last_second_p99.as_secs_f64() * 1e3,
            p.errors
        );
    }
}

fn check_thresholds(report: &Report, args: &LoadArgs) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(max) = args.max_error_rate
        && report.error_rate > max
    {
        failures.push(format!("error rate {:.4} is above --max-error-rate {max}", report.error_rate));
    }
    if let Some(max) = args.max_p99 {
        let p99 = Duration::from_secs_f64(report.latency_ms.p99 / 1e3);
        if p99 > max || report.responses == 0 {
            failures.push(format!("p99 {:.3} ms is above --max-p99 {}", report.latency_ms.p99, humantime::format_duration(max)));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::sync::Mutex;

    /// A local HTTP server that records when each request arrived.
    async fn arrival_server() -> (String, Arc<Mutex<Vec<Instant>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let seen = arrivals.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        seen.lock().unwrap().push(Instant::now());
                        async { Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from("ok")))) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, arrivals)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_open_model_sends_at_the_requested_rate() {
        let (url, arrivals) = arrival_server().await;
        let plan = Arc::new(Plan::new(vec![Template::new("GET", &url, &[], Bytes::new(), 1).unwrap()]).unwrap());
        let client = Client::new(false, Duration::from_secs(5));
        let start = Instant::now();
        let recorder = Arc::new(Recorder::new(start));
        let limit = Limit { until: Some(Duration::from_secs(5)), requests: None, stop: Default::default() };
        let rate = Rate::parse("200", None).unwrap();
        open(&plan, &client, &recorder, start, &limit, rate, 64).await;

        let arrivals = arrivals.lock().unwrap().clone();
        // 200/s for 5 s: 1000 requests, within 2%.
        assert!((980..=1020).contains(&arrivals.len()), "{} requests", arrivals.len());
        // Spread over the run, not sent in a burst: every second gets its share.
        let mut per_second = [0u32; 5];
        for at in &arrivals {
            per_second[(at.duration_since(start).as_secs() as usize).min(4)] += 1;
        }
        for count in per_second {
            assert!((190..=210).contains(&count), "{per_second:?}");
        }
        assert_eq!(recorder.report(start.elapsed()).status.get("200"), Some(&(arrivals.len() as u64)));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_closed_model_stops_at_the_request_count() {
        let (url, arrivals) = arrival_server().await;
        let plan = Arc::new(Plan::new(vec![Template::new("GET", &url, &[], Bytes::new(), 1).unwrap()]).unwrap());
        let start = Instant::now();
        let recorder = Arc::new(Recorder::new(start));
        let limit = Limit { until: None, requests: Some(257), stop: Default::default() };
        closed(&plan, &Client::new(false, Duration::from_secs(5)), &recorder, start, &limit, 8).await;
        assert_eq!(arrivals.lock().unwrap().len(), 257);
        assert_eq!(recorder.report(start.elapsed()).requests, 257);
    }

    /// A server that answers one request per connection, then closes it
    /// (HTTP/1.1 without keep-alive); counts the connections it accepted.
    async fn closing_server() -> (String, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicU64::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from("ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, accepted)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_worker_keeps_its_own_connection_and_reopens_one_the_server_closed() {
        let start = Instant::now();
        let limit = Limit { until: None, requests: Some(200), stop: Default::default() };
        let client = Client::new(false, Duration::from_secs(5));
        // Keep-alive: each of the 4 workers sends over one connection of its own.
        let (url, _) = arrival_server().await;
        let plan = Arc::new(Plan::new(vec![Template::new("GET", &url, &[], Bytes::new(), 1).unwrap()]).unwrap());
        assert!(client.connection(plan.templates.iter().map(|t| &t.uri)).is_some());
        let recorder = Arc::new(Recorder::new(start));
        closed(&plan, &client, &recorder, start, &limit, 4).await;
        assert_eq!(recorder.report(start.elapsed()).status.get("200"), Some(&200));

        // A server that closes every connection after one answer: no request
        // fails for it, and each gets a connection.
        let (url, accepted) = closing_server().await;
        let plan = Arc::new(Plan::new(vec![Template::new("GET", &url, &[], Bytes::new(), 1).unwrap()]).unwrap());
        let recorder = Arc::new(Recorder::new(start));
        closed(&plan, &client, &recorder, start, &limit, 4).await;
        let report = recorder.report(start.elapsed());
        assert_eq!(report.status.get("200"), Some(&200), "{:?}", report.errors);
        assert_eq!(report.errors.total(), 0);
        assert_eq!(accepted.load(Ordering::Relaxed), 200);
    }

    #[test]
    fn only_a_run_to_one_authority_over_http1_gets_connections_of_its_own() {
        let client = |http2| Client::new(http2, Duration::from_secs(5));
        let uris = |list: &[&str]| list.iter().map(|u| u.parse::<hyper::Uri>().unwrap()).collect::<Vec<_>>();
        let same = uris(&["http://127.0.0.1:8080/a", "http://127.0.0.1:8080/b?x=1"]);
        assert!(client(false).connection(same.iter()).is_some());
        assert!(client(true).connection(same.iter()).is_none(), "HTTP/2 uses the pool");
        let two = uris(&["http://127.0.0.1:8080/a", "http://127.0.0.1:8081/a"]);
        assert!(client(false).connection(two.iter()).is_none(), "two authorities use the pool");
    }
}
