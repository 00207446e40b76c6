//! `cargo xtask bench-httpbin [--quick]`: the httpbin guest against the real
//! httpbin (0.10.4 under gunicorn, installed by `tools::ensure_httpbin`), on
//! the scenario's routes `/uuid` and `/get`.
//!
//! Three servers run on loopback at once and are loaded in alternation by
//! the same `scalelab load` client at the same concurrency: the guest;
//! httpbin as the scenario's original image ran it (`gunicorn -k gevent`,
//! gunicorn's default of one worker), which the goal is measured against;
//! and httpbin tuned for this machine (as many sync workers as gunicorn's
//! documentation recommends, 2 x cores + 1), for an honest second figure.
//! Prints a table of medians and ratios, and writes it as JSON to
//! `target/bench/`.

use crate::bench::{Contender, Prepared, load_with, median, prepare, save_report, spawn_host};
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

pub fn run(ws: &Workspace, quick: bool) -> Result<()> {
    let (rounds, round) = if quick { (3, Duration::from_secs(3)) } else { (5, Duration::from_secs(10)) };
    let Prepared { guests_dir, release, bench_dir } = prepare(ws, &[])?;
    let scalelab = release.join("scalelab");
    let workers = 2 * std::thread::available_parallelism().map_or(1, |n| n.get()) + 1;
    let contenders = [
        start_guest(&scalelab, &guests_dir, &bench_dir.join("httpbin-cache"))?,
        start_gunicorn(ws, "httpbin, 1 gevent worker", &["--worker-class", "gevent", "--workers", "1"])?,
        start_gunicorn(ws, "httpbin, sync workers", &["--workers", &workers.to_string()])?,
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
                results[r][c].push(load_with(&scalelab, &[&url], CONCURRENCY, round)?);
            }
        }
    }

    let mut out =
        format!("{:<8} {:<28} {:>9} {:>8} {:>8} {:>12}\n", "route", "contender", "req/s", "p50 ms", "p99 ms", "vs gevent");
    let mut rows = Vec::new();
    let mut goals = Vec::new();
    for (r, route) in ROUTES.iter().enumerate() {
        let stat = |c: usize, key: &dyn Fn(&Value) -> f64| median(results[r][c].iter().map(key));
        let rps = |c: usize| stat(c, &|v| v["requests_per_second"].as_f64().unwrap_or(0.0));
        let p50 = |c: usize| stat(c, &|v| v["latency_ms"]["p50"].as_f64().unwrap_or(0.0));
        let p99 = |c: usize| stat(c, &|v| v["latency_ms"]["p99"].as_f64().unwrap_or(0.0));
        for (c, contender) in contenders.iter().enumerate() {
            let errors: u64 = results[r][c]
                .iter()
                .map(|v| v["requests"].as_u64().unwrap_or(0).saturating_sub(v["status"]["200"].as_u64().unwrap_or(0)))
                .sum();
            let ratio = rps(c) / rps(SEED).max(f64::MIN_POSITIVE);
            out.push_str(&format!(
                "{:<8} {:<28} {:>9.0} {:>8.2} {:>8.2} {:>11.1}x{}\n",
                if c == 0 { route } else { "" },
                contender.name,
                rps(c),
                p50(c),
                p99(c),
                ratio,
                if errors > 0 { format!("  ({errors} non-200)") } else { String::new() }
            ));
            rows.push(json!({"route": route, "contender": contender.name, "requests_per_second": rps(c),
                "p50_ms": p50(c), "p99_ms": p99(c), "ratio": ratio, "non_200": errors}));
        }
        let ratio = rps(GUEST) / rps(SEED).max(f64::MIN_POSITIVE);
        goals.push(format!(
            "  {route}: >= {GOAL_RATIO}x httpbin's req/s as the scenario ran it, at a lower p99: {ratio:.1}x, p99 {:.2} vs {:.2} ms  {}\n  {route}: against {workers} sync workers (for information): {:.1}x",
            p99(GUEST),
            p99(SEED),
            if ratio >= GOAL_RATIO && p99(GUEST) < p99(SEED) { "met" } else { "NOT met" },
            rps(GUEST) / rps(TUNED).max(f64::MIN_POSITIVE),
        ));
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
