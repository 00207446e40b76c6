//! `cargo xtask bench-engines`: how many engines one broker process holds.
//!
//! Starts the release host with the `broker` guest and one `scalelab swarm
//! engines` process on loopback, ramps up the engines (heartbeat 10 s),
//! holds them for a few heartbeat rounds, and prints a table: time until all
//! were registered, the broker's resident memory before and after (and per
//! engine), heartbeats accepted, sequence errors, and the broker's CPU.
//!
//! Each engine is one socket in the broker process, so the engine count is
//! bounded by the open-file hard limit (the host raises its soft limit to it):
//! the default is 100,000 or what that limit allows, whichever is smaller.

use crate::bench::{Prepared, prepare, spawn_host};
use crate::process_stats::{cpu_seconds, rss_bytes};
use crate::scrape::metric;
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sockets the broker needs besides engines (listeners, epoll, files).
const FD_HEADROOM: u64 = 500;

/// Runs the broker and the swarm, holds the engines, prints the table and
/// writes `engines.json`; an error when engines were lost or out of sequence.
pub fn run(ws: &Workspace, engines: Option<u32>, hold: Duration) -> Result<()> {
    let Prepared { guests_dir, release, bench_dir } = prepare(ws)?;
    let scalelab = release.join("scalelab");
    let (engines, hard_limit) = engine_count(engines)?;
    println!("engines: {engines} (open-file hard limit {hard_limit}; goal 100,000)");

    let config = bench_dir.join("broker.toml");
    std::fs::write(&config, "guest = \"broker\"\n")?;
    let args = ["--config".into(), config.into_os_string(), "--max-sessions".into(), "200000".into()];
    let (broker, lines) = spawn_host("broker", &scalelab, &guests_dir, &bench_dir.join("cache"), &args, false)?;
    // Keep reading the broker's log so that it never blocks on a full pipe.
    std::thread::spawn(move || while lines.recv().is_ok() {});
    let admin = broker.admin.clone().context("no admin address")?;
    let tcp = broker.tcp.clone().context("no tcp address")?;
    let pid = broker.pid();
    let rss_before = rss_bytes(pid)?;

    // How long registration may take on a busy machine; the swarm runs until
    // it is stopped after the hold (SIGINT: it still prints its summary), so
    // a slow registration never ends it before the broker is measured.
    let give_up_after = Duration::from_secs_f64(f64::from(engines) / RAMP) * 4 + Duration::from_secs(30);
    let started = Instant::now();
    let swarm = start_swarm(&scalelab, &tcp, engines, give_up_after + hold + Duration::from_secs(60))?;
    let all_registered = wait_registered(&admin, engines, started + give_up_after)?.duration_since(started);
    println!("all {engines} registered after {:.2} s; holding them for {} s", all_registered.as_secs_f64(), hold.as_secs());
    let (cpu_share, rss_peak) = hold_engines(pid, hold)?;
    let registered = metric(&admin, "broker_registered_engines")?;
    let heartbeats = metric(&admin, "broker_heartbeats_total")?;
    let sequence_errors = metric(&admin, "broker_sequence_errors_total")?;
    let _ = Command::new("kill").args(["-INT", &swarm.id().to_string()]).status();
    let out = swarm.wait_with_output()?;
    let swarm: Value = serde_json::from_slice(&out.stdout).context("the swarm printed no JSON summary")?;
    drop(broker);

    let outcome = Outcome {
        engines,
        hard_limit,
        all_registered,
        registered,
        rss_before,
        rss_peak,
        heartbeats,
        sequence_errors,
        cpu_share,
        swarm,
    };
    println!();
    outcome.print_table();
    let path = bench_dir.join("engines.json");
    std::fs::write(&path, serde_json::to_string_pretty(&outcome.json())?)?;
    println!("\n(written to {})", path.display());
    if sequence_errors > 0.0 || registered < f64::from(engines) {
        bail!("sequence errors or lost engines during the hold");
    }
    Ok(())
}

/// Engines started per second.
const RAMP: f64 = 5000.0;

/// The engines to run (given, or what the open-file hard limit allows, at
/// most 100,000) and that limit; an error when the given count does not fit.
fn engine_count(engines: Option<u32>) -> Result<(u32, u64)> {
    let hard_limit = open_files_hard_limit()?;
    let allowed = hard_limit.saturating_sub(FD_HEADROOM).min(100_000) as u32;
    let engines = engines.unwrap_or(allowed);
    if u64::from(engines) + FD_HEADROOM > hard_limit {
        bail!("{engines} engines need more open files than the hard limit ({hard_limit}) allows; at most {allowed}");
    }
    Ok((engines, hard_limit))
}

/// `scalelab swarm engines` at the broker's `tcp`, printing a JSON summary
/// on stdout when it ends (after `duration`, or at SIGINT).
fn start_swarm(scalelab: &Path, tcp: &str, engines: u32, duration: Duration) -> Result<Child> {
    Command::new(scalelab)
        .args(["--log-format", "json", "swarm", "engines", "--broker", tcp, "--heartbeat", "10s"])
        .args(["--engines", &engines.to_string(), "--ramp", &format!("{RAMP}/s"), "--id-prefix", "bench-"])
        .args(["--duration", &format!("{}ms", duration.as_millis()), "--metrics-listen", "off", "--output", "json"])
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the swarm")
}

/// When the broker first counted all `engines` registered; an error at `give_up`.
fn wait_registered(admin: &str, engines: u32, give_up: Instant) -> Result<Instant> {
    while Instant::now() < give_up {
        if metric(admin, "broker_registered_engines")? >= f64::from(engines) {
            return Ok(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the broker never had all {engines} engines registered")
}

/// Holds the engines for `hold`: the broker's share of one core over it and
/// its peak resident memory.
fn hold_engines(pid: u32, hold: Duration) -> Result<(f64, u64)> {
    let (cpu_start, hold_start) = (cpu_seconds(pid)?, Instant::now());
    let mut rss_peak = 0u64;
    while hold_start.elapsed() < hold {
        rss_peak = rss_peak.max(rss_bytes(pid)?);
        std::thread::sleep(Duration::from_millis(500));
    }
    let cpu_share = (cpu_seconds(pid)? - cpu_start) / hold_start.elapsed().as_secs_f64();
    Ok((cpu_share, rss_peak))
}

/// What one run measured.
struct Outcome {
    engines: u32,
    hard_limit: u64,
    all_registered: Duration,
    /// The broker's count at the end of the hold (engines lost show here).
    registered: f64,
    rss_before: u64,
    rss_peak: u64,
    heartbeats: f64,
    sequence_errors: f64,
    cpu_share: f64,
    /// The swarm's own summary.
    swarm: Value,
}

const MIB: f64 = 1048576.0;

impl Outcome {
    fn bytes_per_engine(&self) -> f64 {
        self.rss_peak.saturating_sub(self.rss_before) as f64 / f64::from(self.engines)
    }

    fn projected_100k_mib(&self) -> f64 {
        (self.rss_before as f64 + self.bytes_per_engine() * 100_000.0) / MIB
    }

    fn json(&self) -> Value {
        json!({
            "engines": self.engines,
            "open_files_hard_limit": self.hard_limit,
            "all_registered_after_s": self.all_registered.as_secs_f64(),
            "registered_during_hold": self.registered,
            "rss_before_mib": self.rss_before as f64 / MIB,
            "rss_peak_mib": self.rss_peak as f64 / MIB,
            "bytes_per_engine": self.bytes_per_engine(),
            "projected_rss_100k_mib": self.projected_100k_mib(),
            "heartbeats_accepted": self.heartbeats,
            "sequence_errors": self.sequence_errors,
            "broker_cpu_share": self.cpu_share,
            "swarm": self.swarm,
        })
    }

    fn print_table(&self) {
        println!(
            "| engines | all registered after | RSS before | RSS peak | per engine | 100k projected | heartbeats | sequence errors | broker CPU |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        println!(
            "| {} | {:.2} s | {:.1} MiB | {:.1} MiB | {:.0} B | {:.0} MiB | {} | {} | {:.1}% |",
            self.engines,
            self.all_registered.as_secs_f64(),
            self.rss_before as f64 / MIB,
            self.rss_peak as f64 / MIB,
            self.bytes_per_engine(),
            self.projected_100k_mib(),
            self.heartbeats,
            self.sequence_errors,
            self.cpu_share * 100.0
        );
    }
}

fn open_files_hard_limit() -> Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let line = limits.lines().find(|l| l.starts_with("Max open files")).context("no open-file limit")?;
    let hard = line.split_whitespace().nth(4).context("bad limits line")?;
    Ok(if hard == "unlimited" { u64::MAX } else { hard.parse()? })
}
