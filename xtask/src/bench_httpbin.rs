//! `cargo xtask bench-httpbin [--quick]`: the httpbin guest against the real
//! httpbin (0.10.4 under gunicorn, installed by `tools::ensure_httpbin`), on
//! the scenario's routes `/uuid` and `/get`.
//!
//! Four servers run on loopback at once and are loaded in alternation by
//! the same `scalelab load` client at the same concurrency: the guest;
//! httpbin as the scenario's original image ran it (`gunicorn -k gevent`,
//! gunicorn's default of one worker), which the goal is measured against;
//! httpbin tuned for this machine (as many sync workers as gunicorn's
//! documentation recommends, 2 x cores + 1), for an honest second figure;
//! and `httpbin-native`, the guest's routing crate on plain hyper, the
//! ceiling: a ratio to gunicorn it does not reach is out of reach of any
//! host on this machine.
//!
//! Each round also reads the CPU time the server took (a process and its
//! children: gunicorn works in its workers), so the table gives CPU per
//! request, and the goals section what the guest answers per CPU-second
//! against one gevent worker: a gevent worker is one process on one core,
//! while the guest uses every core it is given, so that figure says how many
//! cores of its own the guest needs for the goal's ratio.
//! Prints a table of medians and ratios, and writes it as JSON to
//! `target/bench/`.

use crate::bench::{Contender, Prepared, median, prepare, save_report, spawn_host, start_native_with};
use crate::load_sample::Sample;
use crate::tools;
use crate::workspace::Workspace;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const CONCURRENCY: u32 = 32;
const ROUTES: &[&str] = &["/uuid", "/get"];

/// The goal of issue 15: the guest answers at least this many times the
/// requests per second of httpbin as the scenario ran it, at a lower p99.
const GOAL_RATIO: f64 = 20.0;

// Positions of the contenders.
const GUEST: usize = 0;
const SEED: usize = 1;
const TUNED: usize = 2;
const NATIVE: usize = 3;

pub fn run(ws: &Workspace, quick: bool) -> Result<()> {
    let (rounds, round) = if quick { (3, Duration::from_secs(3)) } else { (5, Duration::from_secs(10)) };
    let Prepared { guests_dir, release, bench_dir } = prepare(ws)?;
    let scalelab = release.join("scalelab");
    let workers = 2 * std::thread::available_parallelism().map_or(1, |n| n.get()) + 1;
    let contenders = [
        start_guest(&scalelab, &guests_dir, &bench_dir.join("httpbin-cache"))?,
        start_gunicorn(ws, "httpbin, 1 gevent worker", &["--worker-class", "gevent", "--workers", "1"])?,
        start_gunicorn(ws, "httpbin, sync workers", &["--workers", &workers.to_string()])?,
        start_native_with("httpbin-native (hyper)", &release.join("httpbin-native"), &["127.0.0.1:0"])?,
    ];
    println!(
        "loading {} contenders x {} routes x {rounds} rounds of {} s, {CONCURRENCY} connections (sync workers: {workers})",
        contenders.len(),
        ROUTES.len(),
        round.as_secs()
    );
    let mut results = vec![vec![Vec::new(); contenders.len()]; ROUTES.len()];
    for (r, route) in ROUTES.iter().enumerate() {
        for _ in 0..rounds {
            for (c, contender) in contenders.iter().enumerate() {
                let url = format!("{}{route}", contender.url);
                results[r][c].push(Sample::measure(&scalelab, contender, &url, CONCURRENCY, round)?);
            }
        }
    }

    let mut out = format!(
        "{:<8} {:<28} {:>9} {:>8} {:>8} {:>12} {:>14}\n",
        "route", "contender", "req/s", "p50 ms", "p99 ms", "vs gevent", "CPU µs/req"
    );
    let mut rows = Vec::new();
    let mut goals = Vec::new();
    for (r, route) in ROUTES.iter().enumerate() {
        let stat = |c: usize, key: &dyn Fn(&Value) -> f64| median(results[r][c].iter().map(|s| key(&s.report)));
        let rps = |c: usize| stat(c, &|v| v["requests_per_second"].as_f64().unwrap_or(0.0));
        let p50 = |c: usize| stat(c, &|v| v["latency_ms"]["p50"].as_f64().unwrap_or(0.0));
        let p99 = |c: usize| stat(c, &|v| v["latency_ms"]["p99"].as_f64().unwrap_or(0.0));
        let cpu_us = |c: usize| median(results[r][c].iter().map(|s| s.server_us));
        for (c, contender) in contenders.iter().enumerate() {
            let errors: u64 = results[r][c]
                .iter()
                .map(|s| &s.report)
                .map(|v| v["requests"].as_u64().unwrap_or(0).saturating_sub(v["status"]["200"].as_u64().unwrap_or(0)))
                .sum();
            let ratio = rps(c) / rps(SEED).max(f64::MIN_POSITIVE);
            out.push_str(&format!(
                "{:<8} {:<28} {:>9.0} {:>8.2} {:>8.2} {:>11.1}x {:>14.1}{}\n",
                if c == 0 { route } else { "" },
                contender.name,
                rps(c),
                p50(c),
                p99(c),
                ratio,
                cpu_us(c),
                if errors > 0 { format!("  ({errors} non-200)") } else { String::new() }
            ));
            rows.push(json!({"route": route, "contender": contender.name, "requests_per_second": rps(c),
                "p50_ms": p50(c), "p99_ms": p99(c), "ratio": ratio, "cpu_us_per_request": cpu_us(c), "non_200": errors}));
        }
        let ratio = rps(GUEST) / rps(SEED).max(f64::MIN_POSITIVE);
        goals.push(format!(
            "  {route}: >= {GOAL_RATIO}x httpbin's req/s as the scenario ran it, at a lower p99: {ratio:.1}x, p99 {:.2} vs {:.2} ms  {}\n  {route}: against {workers} sync workers (for information): {:.1}x",
            p99(GUEST),
            p99(SEED),
            if ratio >= GOAL_RATIO && p99(GUEST) < p99(SEED) { "met" } else { "NOT met" },
            rps(GUEST) / rps(TUNED).max(f64::MIN_POSITIVE),
        ));
        goals.push(ceiling_lines(route, rps(NATIVE) / rps(SEED).max(f64::MIN_POSITIVE), cpu_us(SEED), cpu_us(GUEST)));
    }
    out.push_str("\ngoals\n");
    out.push_str(&goals.join("\n"));
    out.push('\n');
    print!("\n{out}");
    let report = json!({
        "command": if quick { "cargo xtask bench-httpbin --quick" } else { "cargo xtask bench-httpbin" },
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
        "concurrency": CONCURRENCY, "rounds": rounds, "round_seconds": round.as_secs(), "gunicorn_workers": workers,
        "rows": rows, "table": out,
    });
    save_report(ws, &bench_dir, "bench-httpbin", "latest-httpbin.json", &report)
}

/// What the native ceiling and CPU per request say of the goal on `route`:
/// whether any host could reach it on this machine, and how many cores of
/// its own the guest would need for it (one gevent worker uses one core).
fn ceiling_lines(route: &str, native_ratio: f64, gevent_us: f64, guest_us: f64) -> String {
    let per_cpu = gevent_us / guest_us.max(f64::MIN_POSITIVE);
    format!(
        "  {route}: ceiling, httpbin-native on the same routing crate: {native_ratio:.1}x ({})\n  {route}: per CPU-second the guest answers {per_cpu:.1}x one gevent worker ({guest_us:.1} against {gevent_us:.1} µs): {GOAL_RATIO}x needs {:.1} cores of the guest's own",
        if native_ratio >= GOAL_RATIO {
            "the goal is within a native server's reach here"
        } else {
            "below the goal without wasm too: out of reach of any host on this machine"
        },
        GOAL_RATIO / per_cpu.max(f64::MIN_POSITIVE),
    )
}

fn start_guest(scalelab: &std::path::Path, guests_dir: &std::path::Path, cache: &std::path::Path) -> Result<Contender> {
    let args = ["--guest", "httpbin"].map(std::ffi::OsString::from);
    let (contender, lines) = spawn_host("httpbin guest (scalelab)", scalelab, guests_dir, cache, &args, false)?;
    std::thread::spawn(move || for _ in lines {});
    Ok(contender)
}

/// httpbin 0.10.4 under gunicorn with `args` (its workers), on a free
/// loopback port (read from gunicorn's "Listening at" line).
fn start_gunicorn(ws: &Workspace, name: &'static str, args: &[&str]) -> Result<Contender> {
    let dir = tools::ensure_httpbin(ws)?;
    let mut child = Command::new("python3")
        .arg(dir.join("bin/gunicorn"))
        .args(["--bind", "127.0.0.1:0", "--log-level", "info"])
        .args(args)
        .arg("httpbin:app")
        .env("PYTHONPATH", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting gunicorn")?;
    let mut lines = BufReader::new(child.stderr.take().context("gunicorn's stderr is not piped")?).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| line.split("Listening at: http://").nth(1).and_then(|rest| rest.split(' ').next()).map(str::to_string))
        .context("gunicorn did not log its address")?;
    std::thread::spawn(move || for _ in lines {});
    // Every worker booted and answering before the first round.
    std::thread::sleep(Duration::from_secs(2));
    Ok(Contender::external(name, child, format!("http://{addr}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_says_whether_any_server_reaches_the_goal_and_what_cores_the_guest_needs() {
        let below = ceiling_lines("/uuid", 17.0, 250.0, 25.0);
        assert!(below.contains("17.0x (below the goal without wasm too: out of reach of any host on this machine)"), "{below}");
        // 10x the requests per CPU-second: 20x needs two cores of the guest's own.
        assert!(below.contains("answers 10.0x one gevent worker (25.0 against 250.0 µs): 20x needs 2.0 cores"), "{below}");
        let above = ceiling_lines("/get", 24.0, 300.0, 30.0);
        assert!(above.contains("24.0x (the goal is within a native server's reach here)"), "{above}");
    }
}
