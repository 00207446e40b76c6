//! `cargo xtask bench-sockets`: the largest number of socket.io clients the
//! `tracker` guest holds at >= 95 ticks per second each (default work), next
//! to the CPU limit of that work: the native cost of one client-tick, and
//! the machine's CPU time divided by it.
//!
//! The release host serves `tracker`; `scalelab swarm sockets` (on the same
//! machine, so it takes some of the CPU too) holds C clients for a few
//! seconds; C doubles until a client falls below 95 ticks/s, then a binary
//! search narrows it to within 5%. The swarm reports the CPU it took at the
//! largest count held, so the limit is also given against what it leaves.

use crate::bench::{Prepared, prepare, spawn_host};
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Ticks per second every client must get.
const TARGET: f64 = 95.0;
/// The tracker's default tick: 100 per second.
const TICKS_PER_SECOND: f64 = 100.0;

pub fn run(ws: &Workspace, hold: Duration) -> Result<()> {
    let Prepared { guests_dir, release, bench_dir } = prepare(ws, &["tracker-work"])?;
    let scalelab = release.join("scalelab");

    let out = Command::new(release.join("tracker-work-cost")).stderr(Stdio::null()).output()?;
    let native_ns: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().context("tracker-work-cost printed no number")?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let limit = cpus * 1e9 / native_ns / TICKS_PER_SECOND;
    println!(
        "native cost of one client-tick: {:.1} µs; CPU limit on {cpus} CPUs: {limit:.0} clients at {TICKS_PER_SECOND} ticks/s",
        native_ns / 1e3
    );

    let configs: [(&str, &[&str]); 2] = [("default (deadline 5s)", &[]), ("--deadline off", &["--deadline", "off"])];
    let mut rows = Vec::new();
    for (name, extra) in configs {
        println!("{name}:");
        let (good, bad, swarm_cores) = largest(&scalelab, &guests_dir, &bench_dir, extra, hold)?;
        let limit_left = (cpus - swarm_cores).max(0.0) * 1e9 / native_ns / TICKS_PER_SECOND;
        rows.push(json!({
            "config": name,
            "largest_clients_at_95": good,
            "first_failing": bad,
            "share_of_limit": f64::from(good) / limit,
            "swarm_cores": swarm_cores,
            "cpu_limit_left_clients": limit_left,
            "share_of_limit_left": f64::from(good) / limit_left,
        }));
    }
    let result = json!({
        "native_client_tick_us": native_ns / 1e3,
        "cpus": cpus,
        "cpu_limit_clients": limit,
        "runs": rows,
    });
    println!();
    println!(
        "| host | native client-tick | CPU limit ({cpus} CPUs, 100 ticks/s) | largest held at >= 95 ticks/s | share of limit | goal >= 75% | swarm CPU | limit on what the swarm leaves | share of that |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |");
    for row in result["runs"].as_array().expect("an array") {
        let share = row["share_of_limit"].as_f64().unwrap_or(0.0);
        println!(
            "| {} | {:.1} µs | {limit:.0} clients | {} clients | {:.0}% | {} | {:.2} cores | {:.0} clients | {:.0}% |",
            row["config"].as_str().unwrap_or("?"),
            native_ns / 1e3,
            row["largest_clients_at_95"],
            share * 100.0,
            if share >= 0.75 { "met" } else { "NOT met" },
            row["swarm_cores"].as_f64().unwrap_or(0.0),
            row["cpu_limit_left_clients"].as_f64().unwrap_or(0.0),
            row["share_of_limit_left"].as_f64().unwrap_or(0.0) * 100.0,
        );
    }
    let path = bench_dir.join("sockets.json");
    std::fs::write(&path, serde_json::to_string_pretty(&result)?)?;
    println!("\n(written to {})", path.display());
    Ok(())
}

/// The largest client count one host (with `extra` flags) holds at the
/// target, the smallest that failed, and the CPU cores the swarm took
/// (on average over its run) at the largest count held.
fn largest(scalelab: &Path, guests_dir: &Path, bench_dir: &Path, extra: &[&str], hold: Duration) -> Result<(u32, u32, f64)> {
    let mut args: Vec<OsString> = ["--guest", "tracker", "--max-sessions", "100000"].iter().map(OsString::from).collect();
    args.extend(extra.iter().map(OsString::from));
    let (host, lines) = spawn_host("tracker", scalelab, guests_dir, &bench_dir.join("cache"), &args, false)?;
    std::thread::spawn(move || while lines.recv().is_ok() {});

    let probe = |clients: u32| -> Result<Value> {
        let out = Command::new(scalelab)
            .args(["swarm", "sockets", "--url", &host.url, "--clients", &clients.to_string(), "--spawn-interval", "1ms"])
            .args(["--hold", &format!("{}ms", hold.as_millis()), "--metrics-listen", "off", "--output", "json"])
            .env_remove("RUST_BACKTRACE")
            .stderr(Stdio::null())
            .output()
            .context("running the swarm")?;
        let summary: Value = serde_json::from_slice(&out.stdout).context("the swarm printed no JSON summary")?;
        println!(
            "  {clients:>5} clients: ticks/s per client min {:.1}, p1 {:.1}, median {:.1}; swarm {:.2} cores",
            summary["ticks_per_s_min"].as_f64().unwrap_or(0.0),
            summary["ticks_per_s_p1"].as_f64().unwrap_or(0.0),
            summary["ticks_per_s_median"].as_f64().unwrap_or(0.0),
            swarm_cores(&summary)
        );
        // Let the server see every client go before the next probe.
        std::thread::sleep(Duration::from_millis(500));
        Ok(summary)
    };
    let holds = |summary: &Value| {
        summary["connected"] == summary["clients"] && summary["ticks_per_s_min"].as_f64().unwrap_or(0.0) >= TARGET
    };

    let (mut good, mut bad, mut good_cores) = (0u32, None, 0.0);
    let mut clients = 50u32;
    while bad.is_none() {
        let summary = probe(clients)?;
        if holds(&summary) {
            (good, good_cores) = (clients, swarm_cores(&summary));
            clients *= 2;
            if clients > 20_000 {
                bail!("no limit found below 20,000 clients");
            }
        } else {
            bad = Some(clients);
        }
    }
    let mut bad = bad.expect("set above");
    while f64::from(bad - good) > f64::from(good.max(1)) * 0.05 {
        let middle = (good + bad) / 2;
        let summary = probe(middle)?;
        if holds(&summary) { (good, good_cores) = (middle, swarm_cores(&summary)) } else { bad = middle }
    }
    Ok((good, bad, good_cores))
}

/// The CPU cores a swarm took on average over its run, from its summary.
fn swarm_cores(summary: &Value) -> f64 {
    let (cpu, duration) = (summary["cpu_s"].as_f64().unwrap_or(0.0), summary["duration_s"].as_f64().unwrap_or(0.0));
    if duration > 0.0 { cpu / duration } else { 0.0 }
}
