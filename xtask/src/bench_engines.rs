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
use crate::scrape::metric;
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Sockets the broker needs besides engines (listeners, epoll, files).
const FD_HEADROOM: u64 = 500;

pub fn run(ws: &Workspace, engines: Option<u32>, hold: Duration) -> Result<()> {
    let Prepared { guests_dir, release, bench_dir } = prepare(ws, &[])?;
    let scalelab = release.join("scalelab");

    let hard_limit = open_files_hard_limit()?;
    let allowed = hard_limit.saturating_sub(FD_HEADROOM).min(100_000) as u32;
    let engines = engines.unwrap_or(allowed);
    if u64::from(engines) + FD_HEADROOM > hard_limit {
        bail!("{engines} engines need more open files than the hard limit ({hard_limit}) allows; at most {allowed}");
    }
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

    let ramp = 5000.0_f64;
    let ramp_time = Duration::from_secs_f64(f64::from(engines) / ramp);
    // How long registration may take on a busy machine; the swarm runs until
    // it is stopped after the hold (SIGINT: it still prints its summary), so
    // a slow registration never ends it before the broker is measured.
    let give_up_after = ramp_time * 4 + Duration::from_secs(30);
    let duration = give_up_after + hold + Duration::from_secs(60);
    let started = Instant::now();
    let swarm = Command::new(&scalelab)
        .args(["--log-format", "json", "swarm", "engines", "--broker", &tcp, "--heartbeat", "10s"])
        .args(["--engines", &engines.to_string(), "--ramp", &format!("{ramp}/s"), "--id-prefix", "bench-"])
        .args(["--duration", &format!("{}ms", duration.as_millis()), "--metrics-listen", "off", "--output", "json"])
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the swarm")?;

    let give_up = started + give_up_after;
    let mut all_registered = None;
    while Instant::now() < give_up {
        if metric(&admin, "broker_registered_engines")? >= f64::from(engines) {
            all_registered = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(all_registered) = all_registered else {
        bail!("the broker never had all {engines} engines registered");
    };
    println!("all {engines} registered after {:.2} s; holding them for {} s", all_registered.as_secs_f64(), hold.as_secs());
    let (cpu_start, hold_start) = (cpu_seconds(pid)?, Instant::now());
    let mut rss_peak = 0u64;
    while hold_start.elapsed() < hold {
        rss_peak = rss_peak.max(rss_bytes(pid)?);
        std::thread::sleep(Duration::from_millis(500));
    }
    let cpu_share = (cpu_seconds(pid)? - cpu_start) / hold_start.elapsed().as_secs_f64();
    let registered = metric(&admin, "broker_registered_engines")?;
    let heartbeats = metric(&admin, "broker_heartbeats_total")?;
    let sequence_errors = metric(&admin, "broker_sequence_errors_total")?;
    let _ = Command::new("kill").args(["-INT", &swarm.id().to_string()]).status();
    let out = swarm.wait_with_output()?;
    let summary: Value = serde_json::from_slice(&out.stdout).context("the swarm printed no JSON summary")?;
    drop(broker);

    let per_engine = rss_peak.saturating_sub(rss_before) as f64 / f64::from(engines);
    let result = json!({
        "engines": engines,
        "open_files_hard_limit": hard_limit,
        "all_registered_after_s": all_registered.as_secs_f64(),
        "registered_during_hold": registered,
        "rss_before_mib": rss_before as f64 / 1048576.0,
        "rss_peak_mib": rss_peak as f64 / 1048576.0,
        "bytes_per_engine": per_engine,
        "projected_rss_100k_mib": (rss_before as f64 + per_engine * 100_000.0) / 1048576.0,
        "heartbeats_accepted": heartbeats,
        "sequence_errors": sequence_errors,
        "broker_cpu_share": cpu_share,
        "swarm": summary,
    });
    println!();
    println!(
        "| engines | all registered after | RSS before | RSS peak | per engine | 100k projected | heartbeats | sequence errors | broker CPU |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {engines} | {:.2} s | {:.1} MiB | {:.1} MiB | {:.0} B | {:.0} MiB | {heartbeats} | {sequence_errors} | {:.1}% |",
        all_registered.as_secs_f64(),
        rss_before as f64 / 1048576.0,
        rss_peak as f64 / 1048576.0,
        per_engine,
        result["projected_rss_100k_mib"].as_f64().unwrap_or(0.0),
        cpu_share * 100.0
    );
    let path = bench_dir.join("engines.json");
    std::fs::write(&path, serde_json::to_string_pretty(&result)?)?;
    println!("\n(written to {})", path.display());
    if sequence_errors > 0.0 || registered < f64::from(engines) {
        bail!("sequence errors or lost engines during the hold");
    }
    Ok(())
}

/// Resident memory of a process, from /proc.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}

/// User + system CPU seconds of a process.
/// CPU time (user + system) a process has used, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit_once(')').context("bad stat")?.1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

fn open_files_hard_limit() -> Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let line = limits.lines().find(|l| l.starts_with("Max open files")).context("no open-file limit")?;
    let hard = line.split_whitespace().nth(4).context("bad limits line")?;
    Ok(if hard == "unlimited" { u64::MAX } else { hard.parse()? })
}
