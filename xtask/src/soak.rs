//! `cargo xtask soak [--minutes N] [--guest G]...`: long runs under a steady
//! mixed load, to catch what tests are too short to see (leaks of memory or
//! file descriptors, sessions that never close, errors that creep in).
//!
//! For each guest (default: `prime`, `broker`, `tracker`) a release host
//! serves it from a config file for N minutes (default 10) under its own
//! load: HTTP at a steady rate (`scalelab load --rate`), TCP engines
//! heartbeating (`scalelab swarm engines`) and socket.io clients (`scalelab
//! swarm sockets`) where the guest takes them, and a swap every minute (the
//! config file is rewritten, so the host compiles-from-cache and switches;
//! open sessions stay on the old guest for `--session-drain`, then close and
//! the swarms reconnect). Every 10 s it samples the host's RSS, open file
//! descriptors, open sessions and error counts, and prints them as a table.
//!
//! Verdict, per guest: after the first fifth (warm-up) RSS never goes 5% or
//! more above the highest it reached during warm-up (a swap maps a new
//! module and pool, so RSS moves by a few MB either way at each swap; a leak
//! climbs past every earlier level), and once the load has stopped the open
//! fds return to the baseline taken before it started. The figures go to
//! `target/bench/soak.json`.

use crate::bench::{Prepared, prepare, spawn_host};
use crate::process_stats::rss_bytes;
use crate::scrape::{self, metric};
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// How often the host is sampled.
const SAMPLE: Duration = Duration::from_secs(10);
/// How often the guest is swapped.
const SWAP: Duration = Duration::from_secs(60);
/// How long open sessions stay on a swapped-out guest (shorter than a swap period).
const SESSION_DRAIN: &str = "20s";
/// Largest RSS growth after warm-up.
const MAX_GROWTH: f64 = 0.05;

pub const DEFAULT_GUESTS: &[&str] = &["prime", "broker", "tracker"];

/// One sample of the host.
struct Sample {
    at: Duration,
    rss: u64,
    fds: usize,
    sessions: f64,
    /// HTTP responses so far.
    requests: f64,
    failures: f64,
    http_5xx: f64,
    warnings: u64,
}

pub fn run(ws: &Workspace, minutes: u64, guests: &[String]) -> Result<()> {
    let Prepared { guests_dir, release, bench_dir } = prepare(ws)?;
    let scalelab = release.join("scalelab");
    let duration = Duration::from_secs(minutes * 60);
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for guest in guests {
        let report = soak(&scalelab, &guests_dir, &bench_dir, guest, duration)?;
        if report["verdict"] != "ok" {
            failed.push(format!("{guest}: {}", report["verdict"].as_str().unwrap_or("?")));
        }
        reports.push(report);
    }
    let path = bench_dir.join("soak.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json!({ "minutes": minutes, "guests": reports }))?)?;
    println!("\nfigures written to {}", path.display());
    if !failed.is_empty() {
        bail!("soak failed: {}", failed.join("; "));
    }
    Ok(())
}

fn soak(scalelab: &Path, guests_dir: &Path, bench_dir: &Path, guest: &str, duration: Duration) -> Result<Value> {
    println!("\n== {guest}: {} min, a swap every {} s", duration.as_secs() / 60, SWAP.as_secs());
    let config = bench_dir.join(format!("soak-{guest}.toml"));
    std::fs::write(&config, format!("guest = \"{guest}\"\n"))?;
    let args: Vec<OsString> = vec!["--config".into(), config.clone().into(), "--session-drain".into(), SESSION_DRAIN.into()];
    let (host, lines) = spawn_host("soak", scalelab, guests_dir, &bench_dir.join("cache"), &args, false)?;
    let warnings = count_warnings(lines);
    let admin = host.admin.clone().context("no admin address")?;
    let pid = host.pid();
    let baseline_fds = open_fds(pid)?;

    let mut load = start_load(scalelab, &host.url, host.tcp.as_deref(), guest, duration)?;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut swaps = 0;
    let mut restarts = 0;
    println!("{}", Sample::HEADER);
    while started.elapsed() < duration {
        std::thread::sleep(SAMPLE.min(duration.saturating_sub(started.elapsed())));
        if started.elapsed() >= SWAP * (swaps + 1) && started.elapsed() < duration {
            swaps += 1;
            std::fs::write(&config, format!("guest = \"{guest}\"\n# swap {swaps}\n"))?;
        }
        let sample = sample(pid, &admin, started.elapsed(), &warnings)?;
        println!("{}", sample.row());
        // `swarm sockets` does not reconnect: once the drain after a swap
        // has closed its clients, a new swarm takes their place.
        if guest == "tracker" && sample.sessions == 0.0 && started.elapsed() + SAMPLE < duration {
            for child in &mut load {
                stop(child);
            }
            load = start_load(scalelab, &host.url, host.tcp.as_deref(), guest, duration - started.elapsed())?;
            restarts += 1;
        }
        samples.push(sample);
    }
    for child in &mut load {
        stop(child);
    }
    let final_fds = fds_after_load(pid, baseline_fds)?;
    let swaps_ok = metric(&admin, "scalelab_guest_swaps_total{result=\"ok\"}")?;

    let verdict = Verdict::of(&samples, baseline_fds, final_fds);
    let mb = |bytes: u64| bytes as f64 / 1e6;
    println!(
        "{guest}: RSS peak {:.1} MB during warm-up, {:.1} to {:.1} MB after it (peak {:+.1}%); fds {baseline_fds} before, {final_fds} after; {swaps_ok} swaps; verdict: {}",
        mb(verdict.warmup_peak),
        mb(verdict.low_after),
        mb(verdict.peak_after),
        verdict.growth * 100.0,
        verdict.text()
    );
    let last = samples.last();
    Ok(json!({
        "guest": guest,
        "minutes": duration.as_secs() / 60,
        "swaps": swaps_ok,
        "swarm_restarts": restarts,
        "rss_warmup_peak_bytes": verdict.warmup_peak,
        "rss_low_after_warmup_bytes": verdict.low_after,
        "rss_peak_after_warmup_bytes": verdict.peak_after,
        "rss_growth": verdict.growth,
        "fds_before": baseline_fds,
        "fds_after": final_fds,
        "requests": last.map(|s| s.requests),
        "failures": last.map(|s| s.failures),
        "http_5xx": last.map(|s| s.http_5xx),
        "warnings": last.map(|s| s.warnings),
        "samples": samples.iter().map(|s| json!({
            "t": s.at.as_secs(), "rss": s.rss, "fds": s.fds, "sessions": s.sessions, "requests": s.requests,
            "failures": s.failures, "http_5xx": s.http_5xx, "warnings": s.warnings,
        })).collect::<Vec<_>>(),
        "verdict": verdict.text(),
    }))
}

impl Sample {
    const HEADER: &str = "  t (s)  RSS (MB)    fds  sessions  requests  failures     5xx  warnings";

    /// The sample as a row under [`Sample::HEADER`].
    fn row(&self) -> String {
        format!(
            "{:>7.0} {:>9.1} {:>6} {:>9} {:>9} {:>9} {:>7} {:>9}",
            self.at.as_secs_f64(),
            self.rss as f64 / 1e6,
            self.fds,
            self.sessions,
            self.requests,
            self.failures,
            self.http_5xx,
            self.warnings
        )
    }
}

/// Counts the warnings and errors the host logs; keeps reading so that the
/// host never blocks on its output.
fn count_warnings(lines: mpsc::Receiver<String>) -> Arc<AtomicU64> {
    let warnings = Arc::new(AtomicU64::new(0));
    let counted = warnings.clone();
    std::thread::spawn(move || {
        while let Ok(line) = lines.recv() {
            if line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"") {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    warnings
}

/// The host's open fds once the load has stopped: sessions close once their
/// clients are gone, so this waits up to 30 s for the count to come back
/// down to `baseline`.
fn fds_after_load(pid: u32, baseline: usize) -> Result<usize> {
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut fds = open_fds(pid)?;
    while fds > baseline && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(500));
        fds = open_fds(pid)?;
    }
    Ok(fds)
}

/// A guest's soak judged: RSS after the warm-up (the first fifth of the
/// samples) against its warm-up peak, and the fds left open.
#[derive(Debug)]
struct Verdict {
    warmup_peak: u64,
    low_after: u64,
    peak_after: u64,
    /// How far the peak after warm-up is above the warm-up peak (0.05 = 5%).
    growth: f64,
    /// What went wrong; none when the soak passed.
    problems: Vec<String>,
}

impl Verdict {
    fn of(samples: &[Sample], baseline_fds: usize, final_fds: usize) -> Verdict {
        let warm = samples.len() / 5;
        let warmup_peak = samples.iter().take(warm + 1).map(|s| s.rss).max().unwrap_or(0);
        let after = &samples[warm..];
        let peak_after = after.iter().map(|s| s.rss).max().unwrap_or(0);
        let low_after = after.iter().map(|s| s.rss).min().unwrap_or(0);
        let growth = peak_after as f64 / warmup_peak.max(1) as f64 - 1.0;
        let mut problems = Vec::new();
        if growth >= MAX_GROWTH {
            problems.push(format!("RSS grew {:.1}% above its warm-up peak", growth * 100.0));
        }
        if final_fds > baseline_fds {
            problems.push(format!("{final_fds} fds open after the load, {baseline_fds} before"));
        }
        Verdict { warmup_peak, low_after, peak_after, growth, problems }
    }

    /// `ok`, or the problems.
    fn text(&self) -> String {
        if self.problems.is_empty() { "ok".to_string() } else { self.problems.join(", ") }
    }
}

/// The guest's load: HTTP at a steady rate, plus engines or socket.io clients.
fn start_load(scalelab: &Path, url: &str, tcp: Option<&str>, guest: &str, duration: Duration) -> Result<Vec<Child>> {
    let run_for = format!("{}ms", duration.as_millis() + 5_000);
    let quiet = |cmd: &mut Command| {
        cmd.env_remove("RUST_BACKTRACE").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    };
    let mut children = Vec::new();
    let http = |path: &str, rate: u32| -> Result<Child> {
        let mut cmd = Command::new(scalelab);
        cmd.args(["load", &format!("{url}{path}"), "--rate", &rate.to_string(), "--duration", &run_for]);
        quiet(&mut cmd);
        cmd.spawn().context("starting scalelab load")
    };
    match guest {
        "broker" => {
            let tcp = tcp.context("no TCP listener")?;
            children.push(http("/", 20)?);
            let mut swarm = Command::new(scalelab);
            swarm.args(["swarm", "engines", "--broker", tcp, "--engines", "200", "--ramp", "100/s", "--heartbeat", "1s"]);
            swarm.args(["--duration", &run_for, "--metrics-listen", "off"]);
            quiet(&mut swarm);
            children.push(swarm.spawn().context("starting the engine swarm")?);
        }
        "tracker" => {
            let mut swarm = Command::new(scalelab);
            swarm.args(["swarm", "sockets", "--url", url, "--clients", "50", "--spawn-interval", "20ms"]);
            swarm.args(["--hold", &run_for, "--metrics-listen", "off"]);
            quiet(&mut swarm);
            children.push(swarm.spawn().context("starting the socket.io swarm")?);
        }
        "httpbin" => children.push(http("/uuid", 100)?),
        _ => children.push(http("/prime/100", 200)?),
    }
    Ok(children)
}

fn sample(pid: u32, admin: &str, at: Duration, warnings: &AtomicU64) -> Result<Sample> {
    let text = scrape::fetch(admin)?;
    // Sums the series whose line starts with `prefix` and contains `part`
    // (an empty sum is -0: adding 0 makes it 0).
    let sum = |prefix: &str, part: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix) && l.contains(part))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>()
            + 0.0
    };
    Ok(Sample {
        at,
        rss: rss_bytes(pid)?,
        fds: open_fds(pid)?,
        sessions: sum("scalelab_sessions_active{", ""),
        requests: sum("scalelab_http_requests_total{", ""),
        failures: sum("scalelab_guest_failures_total{", ""),
        http_5xx: sum("scalelab_http_requests_total{", "code=\"5"),
        warnings: warnings.load(Ordering::Relaxed),
    })
}

fn stop(child: &mut Child) {
    // SIGINT: the load clients stop and print their report (ignored here).
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let give_up = Instant::now() + Duration::from_secs(10);
    while Instant::now() < give_up {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn open_fds(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd")).with_context(|| format!("reading the fds of {pid}"))?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rss_mb: &[u64]) -> Vec<Sample> {
        rss_mb
            .iter()
            .enumerate()
            .map(|(i, mb)| Sample {
                at: SAMPLE * i as u32,
                rss: mb * 1_000_000,
                fds: 10,
                sessions: 0.0,
                requests: 0.0,
                failures: 0.0,
                http_5xx: 0.0,
                warnings: 0,
            })
            .collect()
    }

    #[test]
    fn rss_that_moves_around_its_warm_up_peak_passes() {
        // Ten samples: the warm-up is the first fifth, up to the third sample;
        // swaps move RSS by a few MB either way.
        let verdict = Verdict::of(&samples(&[30, 40, 38, 41, 39, 40, 41, 38, 40, 41]), 12, 12);
        assert_eq!(verdict.text(), "ok");
        assert_eq!((verdict.warmup_peak, verdict.low_after, verdict.peak_after), (40_000_000, 38_000_000, 41_000_000));
    }

    #[test]
    fn rss_that_climbs_past_its_warm_up_peak_or_fds_left_open_fail() {
        let climbing = Verdict::of(&samples(&[30, 40, 41, 42, 43, 44, 45, 46, 47, 48]), 12, 12);
        assert_eq!(climbing.text(), "RSS grew 17.1% above its warm-up peak");
        let leaking = Verdict::of(&samples(&[40; 10]), 12, 15);
        assert_eq!(leaking.text(), "15 fds open after the load, 12 before");
        assert_eq!(Verdict::of(&[], 12, 12).text(), "ok");
    }
}
