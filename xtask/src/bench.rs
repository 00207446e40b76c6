//! `cargo xtask bench [--quick]`: the side-by-side benchmark.
//!
//! Builds in release, starts every contender on loopback at once, then loads
//! them in alternation (A B C D A B C D ...) with `scalelab load`, so slow
//! drifts of this shared machine hit every contender alike, and prints one
//! table of medians and ratios to the native reference and to `wasmtime
//! serve` (the reference wasi:http server, on the same `prime.wasm`; see
//! `wasmtime_serve.rs`), with the CPU each server and the load client used
//! per request and each round's wasm / native ratio. Also measures
//! start-up to ready (cold and warm compile cache), per-request
//! instantiation time, peak RSS, and what `RUST_BACKTRACE=1` costs. The whole
//! result is written as JSON to `target/bench/`.

use crate::configmap_dir::ConfigMapDir;
use crate::guests;
use crate::load_sample::Sample;
use crate::pgo;
use crate::scrape;
use crate::wasmtime_serve;
use crate::workspace::{self, Workspace};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Requests in flight per load run: enough to keep 2 cores busy.
const CONCURRENCY: u32 = 32;

const WORKLOADS: &[&str] = &["/prime/1", "/prime/1000", "/prime/10000"];

// Positions of the contenders in the run, the table and the ratios.
const NATIVE: usize = 0;
const WASM: usize = 1;
const BACKTRACE: usize = 3;
const FRESH: usize = 4;
const WASMTIME: usize = 5;

struct Settings {
    rounds: usize,
    round: Duration,
}

/// A server under test, running for the whole benchmark (killed when dropped).
pub struct Contender {
    pub name: &'static str,
    child: Child,
    /// The traffic URL, without a trailing slash.
    pub url: String,
    /// The admin URL of a scalelab contender (for its metrics and API).
    pub admin: Option<String>,
    /// Process start to ready, as the scalelab contender logged it.
    startup_ms: Option<f64>,
    /// The raw TCP address of a scalelab contender (session guests).
    pub tcp: Option<String>,
}

impl Contender {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server with SIGINT and waits for it to exit, which must be
    /// with success: an instrumented build writes its profile only on a
    /// normal exit (`pgo.rs`).
    pub fn interrupt(mut self) -> Result<()> {
        workspace::run(Command::new("kill").args(["-INT", &self.child.id().to_string()]))?;
        let give_up = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > give_up {
                bail!("{} did not exit within 60 s of SIGINT", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            bail!("{} exited with {status} after SIGINT", self.name);
        }
        Ok(())
    }

    /// A server other than scalelab, already listening at `url`.
    pub fn external(name: &'static str, child: Child, url: String) -> Contender {
        Contender { name, child, url, admin: None, startup_ms: None, tcp: None }
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(ws: &Workspace, quick: bool) -> Result<()> {
    let settings = if quick {
        Settings { rounds: 3, round: Duration::from_secs(2) }
    } else {
        Settings { rounds: 5, round: Duration::from_secs(5) }
    };
    let Prepared { guests_dir, release, bench_dir } = prepare(ws)?;
    let scalelab = release.join("scalelab");
    let native = release.join("prime-native");
    let wasmtime = wasmtime_serve::ensure(ws)?;

    // Start-up to ready, with an empty and then a filled compile cache.
    let cache = bench_dir.join("cache");
    let _ = std::fs::remove_dir_all(&cache);
    let cold = start_wasm("startup", &scalelab, &guests_dir, &cache, &[], false)?;
    let cold_ms = startup_ms(&cold)?;
    drop(cold);
    let warm = start_wasm("startup", &scalelab, &guests_dir, &cache, &[], false)?;
    let warm_ms = startup_ms(&warm)?;
    drop(warm);

    let contenders = [
        start_native(&native)?,
        start_wasm("wasm", &scalelab, &guests_dir, &cache, &[], false)?,
        start_wasm("wasm, deadline off", &scalelab, &guests_dir, &cache, &["--deadline", "off"], false)?,
        start_wasm("wasm, RUST_BACKTRACE=1", &scalelab, &guests_dir, &cache, &[], true)?,
        start_wasm("wasm, fresh instances", &scalelab, &guests_dir, &cache, &["--instance-reuse", "1"], false)?,
        wasmtime_serve::start("wasmtime serve 48.0.8", &wasmtime, &guests_dir.join("prime.wasm"))?,
    ];
    let results = Results::measure(&scalelab, &contenders, &settings)?;
    let swap = swap_latency(&scalelab, &guests_dir, &bench_dir, if quick { 5 } else { 20 })?;
    // The fresh-instance contender instantiates for every request.
    let instantiate_us = instantiate_micros(&contenders[FRESH])?;
    let peak_rss: Vec<(String, f64)> = contenders.iter().map(|c| (c.name.to_string(), peak_rss_mb(c.child.id()))).collect();

    let (mut out, rows) = results.table(&contenders);
    out.push_str(&results.round_lines());
    let backtrace_change = results.backtrace_change();
    let backtrace_cpu_change = results.backtrace_cpu_change();
    out.push_str(&format!("\ninstantiation of a fresh instance: {instantiate_us:.1} us\n"));
    out.push_str(&format!("start-up to ready: cold compile cache {cold_ms:.1} ms, warm {warm_ms:.1} ms\n"));
    out.push_str(&format!(
        "swap, config file change to new guest serving (median of {}): {:.1} ms compiled guest cached, {:.1} ms uncached (compile {:.1} ms); failed requests during swaps: {}\n",
        swap.rounds, swap.cached_ms, swap.uncached_ms, swap.compile_ms, swap.failed_requests
    ));
    out.push_str("peak RSS:");
    for (name, mb) in &peak_rss {
        out.push_str(&format!("  {name} {mb:.1} MB;"));
    }
    out.push('\n');
    out.push_str(&format!("RUST_BACKTRACE=1 changes wasm throughput by {}\n", per_workload(&backtrace_change)));
    out.push_str(&format!("RUST_BACKTRACE=1 changes the host's CPU per request by {}\n", per_workload(&backtrace_cpu_change)));
    out.push_str(&goals(&results, instantiate_us, &swap, &backtrace_change));
    print!("\n{out}");

    let report = json!({
        "command": if quick { "cargo xtask bench --quick" } else { "cargo xtask bench" },
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
        "concurrency": CONCURRENCY, "rounds": settings.rounds, "round_seconds": settings.round.as_secs(),
        "rows": rows,
        "instantiate_us": instantiate_us,
        "startup_ms": { "cold": cold_ms, "warm": warm_ms },
        "peak_rss_mb": peak_rss.iter().map(|(n, mb)| (n.clone(), json!(mb))).collect::<serde_json::Map<_, _>>(),
        "backtrace_change": backtrace_change,
        "backtrace_cpu_change": backtrace_cpu_change,
        "ratio_wasm_to_native_by_round": (0..WORKLOADS.len()).map(|w| results.round_ratios(w, WASM, NATIVE)).collect::<Vec<_>>(),
        "swap_ms": { "cached": swap.cached_ms, "uncached": swap.uncached_ms, "compile": swap.compile_ms, "failed_requests": swap.failed_requests },
        "table": out,
    });
    save_report(ws, &bench_dir, "bench", "latest.json", &report)
}

/// Every load run of the bench, and the median requests/s of each workload
/// and contender.
struct Results {
    /// `runs[workload][contender]`: one sample per round, in the order the rounds ran.
    runs: Vec<Vec<Vec<Sample>>>,
    /// `rps[workload][contender]`: the median of those rounds.
    rps: Vec<Vec<f64>>,
}

impl Results {
    /// Loads every contender with every workload, alternating contenders
    /// within each round.
    fn measure(scalelab: &Path, contenders: &[Contender], settings: &Settings) -> Result<Results> {
        let total = WORKLOADS.len() * settings.rounds * contenders.len();
        println!(
            "loading {} contenders x {} workloads x {} rounds of {} s, {CONCURRENCY} connections ({total} runs)",
            contenders.len(),
            WORKLOADS.len(),
            settings.rounds,
            settings.round.as_secs()
        );
        let mut runs = vec![vec![Vec::new(); contenders.len()]; WORKLOADS.len()];
        for (w, workload) in WORKLOADS.iter().enumerate() {
            for _ in 0..settings.rounds {
                for (c, contender) in contenders.iter().enumerate() {
                    let url = format!("{}{workload}", contender.url);
                    runs[w][c].push(Sample::measure(scalelab, contender, &url, CONCURRENCY, settings.round)?);
                }
            }
        }
        Ok(Results::from_runs(runs))
    }

    fn from_runs(runs: Vec<Vec<Vec<Sample>>>) -> Results {
        let rps = runs
            .iter()
            .map(|by_contender: &Vec<Vec<Sample>>| {
                by_contender.iter().map(|rounds| median(rounds.iter().map(Sample::rps))).collect()
            })
            .collect();
        Results { runs, rps }
    }

    /// The median CPU per request of contender `c` at workload `w`, in µs:
    /// its own (`server`) or the load client's beside it.
    fn cpu_us(&self, w: usize, c: usize, server: bool) -> f64 {
        median(self.runs[w][c].iter().map(|s| if server { s.server_us } else { s.client_us }))
    }

    /// Contender `c`'s requests/s over contender `to`'s in each round of
    /// workload `w`: the two ran one after the other, on the machine as it
    /// was then, so a round's ratio is free of the drifts between rounds.
    fn round_ratios(&self, w: usize, c: usize, to: usize) -> Vec<f64> {
        self.runs[w][c].iter().zip(&self.runs[w][to]).map(|(a, b)| a.rps() / b.rps().max(f64::MIN_POSITIVE)).collect()
    }

    /// A line per workload: wasm / native in each round, and their median.
    fn round_lines(&self) -> String {
        let mut out = String::from("\nwasm / native in each round (the two ran side by side):\n");
        for (w, workload) in WORKLOADS.iter().enumerate() {
            let ratios = self.round_ratios(w, WASM, NATIVE);
            let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            out.push_str(&format!("  GET {workload:<13} {}  (median {:.2})\n", listed.join(" "), median(ratios.iter().copied())));
        }
        out
    }

    /// The median requests/s of contender `c` over that of contender `to`, at workload `w`.
    fn ratio(&self, w: usize, c: usize, to: usize) -> f64 {
        self.rps[w][c] / self.rps[w][to].max(f64::MIN_POSITIVE)
    }

    /// How much `RUST_BACKTRACE=1` changes the wasm host's throughput, per workload.
    fn backtrace_change(&self) -> Vec<f64> {
        (0..WORKLOADS.len()).map(|w| self.ratio(w, BACKTRACE, WASM) - 1.0).collect()
    }

    /// How much `RUST_BACKTRACE=1` changes the wasm host's CPU per request,
    /// per workload: the same question asked of the host's own cost, which
    /// the machine's noise moves far less than throughput.
    fn backtrace_cpu_change(&self) -> Vec<f64> {
        (0..WORKLOADS.len())
            .map(|w| self.cpu_us(w, BACKTRACE, true) / self.cpu_us(w, WASM, true).max(f64::MIN_POSITIVE) - 1.0)
            .collect()
    }

    /// The printed table (a row per workload and contender) and its rows as JSON.
    fn table(&self, contenders: &[Contender]) -> (String, Vec<Value>) {
        let mut out = format!(
            "{:<17} {:<26} {:>10} {:>9} {:>9} {:>10} {:>12} {:>22}\n",
            "workload", "contender", "req/s", "p50 ms", "p99 ms", "vs native", "vs wasmtime", "CPU µs/req srv / load"
        );
        let mut rows = Vec::new();
        for (w, workload) in WORKLOADS.iter().enumerate() {
            for (c, contender) in contenders.iter().enumerate() {
                let runs: Vec<&Value> = self.runs[w][c].iter().map(|s| &s.report).collect();
                let rps = self.rps[w][c];
                let p50 = median(runs.iter().map(|r| field(r, &["latency_ms", "p50"])));
                let p99 = median(runs.iter().map(|r| field(r, &["latency_ms", "p99"])));
                let errors: u64 =
                    runs.iter().map(|r| r["requests"].as_u64().unwrap_or(0) - r["status"]["200"].as_u64().unwrap_or(0)).sum();
                let (ratio, to_wasmtime) = (self.ratio(w, c, NATIVE), self.ratio(w, c, WASMTIME));
                let (server_us, client_us) = (self.cpu_us(w, c, true), self.cpu_us(w, c, false));
                out.push_str(&format!(
                    "{:<17} {:<26} {:>10.0} {:>9.3} {:>9.3} {:>9.2}x {:>11.2}x {:>22}{}\n",
                    if c == NATIVE { format!("GET {workload}") } else { String::new() },
                    contender.name,
                    rps,
                    p50,
                    p99,
                    ratio,
                    to_wasmtime,
                    format!("{server_us:.1} / {client_us:.1}"),
                    if errors > 0 { format!("  ({errors} non-200)") } else { String::new() }
                ));
                rows.push(json!({
                    "workload": workload, "contender": contender.name, "requests_per_second": rps,
                    "p50_ms": p50, "p99_ms": p99, "ratio_to_native": ratio, "ratio_to_wasmtime_serve": to_wasmtime, "non_200": errors,
                    "cpu_us_per_request": server_us, "client_cpu_us_per_request": client_us,
                    "rounds": runs.iter().map(|r| r["requests_per_second"].clone()).collect::<Vec<_>>(),
                }));
            }
        }
        (out, rows)
    }
}

/// Relative changes, one per workload: `+1.2% (/prime/1), ...`.
fn per_workload(changes: &[f64]) -> String {
    WORKLOADS.iter().zip(changes).map(|(w, d)| format!("{:+.1}% ({w})", d * 100.0)).collect::<Vec<_>>().join(", ")
}

/// A number in a load report (0 when absent).
fn field(report: &Value, path: &[&str]) -> f64 {
    path.iter().fold(report, |value, key| &value[key]).as_f64().unwrap_or(0.0)
}

/// The goals of issue 17 and the swap's, each met or not.
fn goals(results: &Results, instantiate_us: f64, swap: &SwapLatency, backtrace_change: &[f64]) -> String {
    let ratio = |w: usize, c: usize| results.ratio(w, c, NATIVE);
    let worst_backtrace = backtrace_change.iter().fold(0.0f64, |m, d| m.max(d.abs()));
    let at_least = |ratio: f64, goal: f64| (ratio_text(ratio, goal), ratio >= goal);
    let with = |goal: &'static str, (got, met): (String, bool)| (goal, got, met);
    let lines = [
        with("GET /prime/10000: wasm >= 0.9x native", at_least(ratio(2, WASM), 0.9)),
        with("GET /prime/1000: wasm >= 0.8x native", at_least(ratio(1, WASM), 0.8)),
        with("GET /prime/1: wasm >= 0.6x native", at_least(ratio(0, WASM), 0.6)),
        with("GET /prime/1: fresh instances >= 0.3x native", at_least(ratio(0, FRESH), 0.3)),
        with("GET /prime/1: wasm >= 3x wasmtime serve", at_least(results.ratio(0, WASM, WASMTIME), 3.0)),
        with("GET /prime/1000: wasm >= 1.5x wasmtime serve", at_least(results.ratio(1, WASM, WASMTIME), 1.5)),
        ("instantiation of a fresh instance <= 10 us", format!("{instantiate_us:.1} us"), instantiate_us <= 10.0),
        ("config change -> new guest serving < 50 ms", format!("{:.1} ms", swap.cached_ms), swap.cached_ms < 50.0),
        (
            "... uncached: < compile time + 50 ms",
            format!("{:.1} ms", swap.uncached_ms),
            swap.uncached_ms < swap.compile_ms + 50.0,
        ),
        ("RUST_BACKTRACE=1 changes throughput < 5%", format!("{:.1}%", worst_backtrace * 100.0), worst_backtrace < 0.05),
    ];
    let mut out = String::from("\ngoals\n");
    for (goal, got, met) in lines {
        out.push_str(&format!("  {goal:<44} {got}  {}\n", if met { "met" } else { "NOT met" }));
    }
    out
}

/// A ratio as `0.86x`, with more decimals when two would round it onto
/// `goal` from below (0.597 printed as 0.60x beside "NOT met").
fn ratio_text(ratio: f64, goal: f64) -> String {
    format!("{}x", against_goal(ratio, goal, 2))
}

/// `value` with `decimals` decimals, or more when those would round it onto
/// `goal` from below: a value under its goal never reads as reaching it.
pub fn against_goal(value: f64, goal: f64, decimals: usize) -> String {
    let shown = |decimals: usize| format!("{value:.decimals$}");
    let reaches = |text: &str| text.parse::<f64>().is_ok_and(|shown| shown >= goal);
    let enough = (decimals..decimals + 4).find(|&d| value >= goal || !reaches(&shown(d)));
    shown(enough.unwrap_or(decimals + 4))
}

pub fn save_report(ws: &Workspace, bench_dir: &Path, stem: &str, latest: &str, report: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    let file = bench_dir.join(format!("{stem}-{}.json", report["unix_time"]));
    std::fs::write(&file, &text)?;
    std::fs::write(bench_dir.join(latest), &text)?;
    println!("\nwritten to {}", file.strip_prefix(&ws.root).unwrap_or(&file).display());
    Ok(())
}

/// Swap latency: from a config file change (the ConfigMap pattern) to the
/// new guest answering, while `scalelab load` keeps the host busy.
struct SwapLatency {
    rounds: usize,
    cached_ms: f64,
    uncached_ms: f64,
    compile_ms: f64,
    failed_requests: u64,
}

fn swap_latency(scalelab: &Path, guests_dir: &Path, bench_dir: &Path, rounds: usize) -> Result<SwapLatency> {
    let mut map = ConfigMapDir::new(&bench_dir.join("configmap"), "guest = \"prime\"\n")?;
    let cache = bench_dir.join("swap-cache");
    let _ = std::fs::remove_dir_all(&cache);

    let config = vec![OsString::from("--config"), map.file().into_os_string()];
    let (contender, lines) = spawn_host("swap", scalelab, guests_dir, &cache, &config, false)?;
    let root = format!("{}/", contender.url);
    // Compile logs of swaps arrive here; keep the rest drained.
    let (compiles_tx, compiles) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines {
            let value: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if value["step"] == "swap" {
                let _ = compiles_tx.send(value["compile_ms"].as_f64().unwrap_or(f64::NAN));
            }
        }
    });

    let load = Command::new(scalelab)
        .args(["load", &root, "--concurrency", "4", "--duration", "3600s", "--output", "json"])
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    // Time one swap: change the file, poll GET / until the other guest answers.
    let agent = ureq::Agent::new_with_defaults();
    let mut time_swap = |to: &str, contents: &str| -> Result<f64> {
        let started = Instant::now();
        map.update(contents)?;
        loop {
            let body = agent.get(&root).call()?.body_mut().read_to_string()?;
            let serving_fixture = body == "hello from wstd\n";
            if serving_fixture == (to == "fixture-wstd") {
                return Ok(started.elapsed().as_secs_f64() * 1e3);
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the swap to {to} did not happen within 30 s");
            }
        }
    };
    // The first swap to each guest compiles it; later ones hit the cache.
    let uncached = time_swap("fixture-wstd", "guest = \"fixture-wstd\"\n")?;
    let compile_ms = compiles.recv_timeout(Duration::from_secs(5)).unwrap_or(f64::NAN);
    let mut cached = Vec::new();
    for round in 0..rounds {
        cached.push(time_swap("prime", &format!("guest = \"prime\"\n# round {round}\n"))?);
        cached.push(time_swap("fixture-wstd", &format!("guest = \"fixture-wstd\"\n# round {round}\n"))?);
    }
    // Stop the load and count what failed during the swaps.
    // `scalelab load` stops on SIGINT and still prints its report.
    let _ = Command::new("kill").args(["-INT", &load.id().to_string()]).status();
    let report: Value = serde_json::from_slice(&load.wait_with_output()?.stdout).unwrap_or(Value::Null);
    let requests = report["requests"].as_u64().unwrap_or(0);
    let ok = report["status"]["200"].as_u64().unwrap_or(0);
    drop(contender);
    Ok(SwapLatency {
        rounds: cached.len(),
        cached_ms: median(cached.into_iter()),
        uncached_ms: uncached,
        compile_ms,
        failed_requests: requests.saturating_sub(ok),
    })
}

pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
}

/// Starts `scalelab serve --guest prime` on loopback and waits until ready.
fn start_wasm(
    name: &'static str,
    scalelab: &Path,
    guests_dir: &Path,
    cache: &Path,
    extra: &[&str],
    backtrace: bool,
) -> Result<Contender> {
    let mut args: Vec<OsString> = vec!["--guest".into(), "prime".into()];
    args.extend(extra.iter().map(OsString::from));
    let (contender, lines) = spawn_host(name, scalelab, guests_dir, cache, &args, backtrace)?;
    // Keep draining stderr so the host never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(contender)
}

/// Starts `scalelab serve` on loopback with JSON logs and `args`, waits
/// until it is ready, and hands back its later log lines (which the caller
/// must keep reading or drain).
/// What every benchmark starts from.
pub struct Prepared {
    /// The built guests.
    pub guests_dir: PathBuf,
    /// Where `scalelab` and the native references' binaries are: the
    /// profile-guided build's (`pgo.rs`), or `target/release`.
    pub release: PathBuf,
    /// `target/bench`, for results and the compile cache.
    pub bench_dir: PathBuf,
}

/// The packages every benchmark builds in release: the host and every native
/// reference, whichever of them the benchmark runs.
///
/// Why all of them each time: cargo unifies dependency features over the
/// packages of one build (`prime-native` turns on `serde_json`'s `alloc`,
/// `todo-native` `deadpool-postgres`'s `rt_tokio_1`), so building the host
/// beside a different set of packages builds a different host. With a set
/// per benchmark, `bench` after `bench-sockets` rebuilt the host and its
/// dependencies under fat LTO (10-25 minutes on this project's 2-core
/// machines); with one set, one build serves every benchmark and
/// `cargo xtask serve --release`.
pub const RELEASE_PACKAGES: [&str; 5] = ["scalelab", "prime-native", "tracker-work", "todo-native", "httpbin-native"];

/// Builds the guests, then the host and every native reference in release:
/// profile-guided for a benchmark (`ws.pgo`), else the plain release build.
pub fn prepare(ws: &Workspace) -> Result<Prepared> {
    let guests_dir = guests::build(ws)?;
    let release = if ws.pgo { pgo::build(ws, &guests_dir)? } else { build_release(ws)? };
    let bench_dir = ws.target_dir.join("bench");
    std::fs::create_dir_all(&bench_dir)?;
    Ok(Prepared { guests_dir, release, bench_dir })
}

/// Builds [`RELEASE_PACKAGES`] in release (the benchmarks' host, and
/// `cargo xtask serve --release`'s); returns `target/release`.
pub fn build_release(ws: &Workspace) -> Result<PathBuf> {
    println!("building the host and the native references (release)");
    let mut cargo = ws.cargo();
    cargo.args(["build", "--quiet", "--release"]);
    for package in RELEASE_PACKAGES {
        cargo.args(["-p", package]);
    }
    workspace::run(&mut cargo)?;
    Ok(ws.target_dir.join("release"))
}

pub fn spawn_host(
    name: &'static str,
    scalelab: &Path,
    guests_dir: &Path,
    cache: &Path,
    args: &[OsString],
    backtrace: bool,
) -> Result<(Contender, mpsc::Receiver<String>)> {
    let mut cmd = Command::new(scalelab);
    cmd.args(["--log-format", "json", "serve", "--guests-dir"])
        .arg(guests_dir)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0", "--cache-dir"])
        .arg(cache)
        .args(args)
        .env_remove("RUST_LIB_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if backtrace {
        cmd.env("RUST_BACKTRACE", "1");
    } else {
        cmd.env_remove("RUST_BACKTRACE");
    }
    let child = cmd.spawn().with_context(|| format!("starting {}", scalelab.display()))?;
    attach_host(name, child)
}

/// Follows the JSON logs of a `scalelab serve` started with piped stderr
/// until it is ready; returns it with the rest of its log lines.
pub fn attach_host(name: &'static str, mut child: Child) -> Result<(Contender, mpsc::Receiver<String>)> {
    let lines = line_channel(child.stderr.take().context("the host's stderr is not piped")?);
    let (mut traffic, mut admin, mut tcp) = (None, None, None);
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let line = lines
            .recv_timeout(give_up.saturating_duration_since(Instant::now()))
            .context("scalelab serve did not become ready")?;
        let value: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        match (value["step"].as_str(), value["role"].as_str()) {
            (Some("listen"), Some("traffic")) => traffic = value["addr"].as_str().map(str::to_string),
            (Some("listen"), Some("admin")) => admin = value["addr"].as_str().map(str::to_string),
            (Some("listen"), Some("tcp")) => tcp = value["addr"].as_str().map(str::to_string),
            (Some("ready"), _) => {
                let url = format!("http://{}", traffic.context("no traffic address logged")?);
                let startup_ms = value["startup_ms"].as_f64();
                let admin = admin.map(|a| format!("http://{a}"));
                return Ok((Contender { name, child, url, admin, startup_ms, tcp }, lines));
            }
            _ if value["level"] == "ERROR" => bail!("scalelab serve failed: {line}"),
            _ => {}
        }
    }
}

fn startup_ms(contender: &Contender) -> Result<f64> {
    contender.startup_ms.context("the ready log line has no startup_ms")
}

fn start_native(native: &Path) -> Result<Contender> {
    start_native_with("native", native, &["127.0.0.1:0"])
}

/// Starts a native reference server that prints `listening on ADDR` once bound.
pub fn start_native_with(name: &'static str, native: &Path, args: &[&str]) -> Result<Contender> {
    let mut child = Command::new(native)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", native.display()))?;
    let lines = line_channel(child.stdout.take().unwrap());
    let line = lines.recv_timeout(Duration::from_secs(30)).with_context(|| format!("{name} did not start"))?;
    let addr = line.strip_prefix("listening on ").with_context(|| format!("unexpected output of {name}: {line}"))?;
    Ok(Contender { name, url: format!("http://{addr}"), child, admin: None, startup_ms: None, tcp: None })
}

/// Lines of a child's output, read on a thread.
fn line_channel(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// One `scalelab load` run with `target` (URLs, or `--scenario FILE`) in
/// the closed model; its JSON report.
pub fn load_with(scalelab: &Path, target: &[&str], concurrency: u32, duration: Duration) -> Result<Value> {
    load_counted(scalelab, target, concurrency, duration).map(|(report, _)| report)
}

/// [`load_with`], and the CPU seconds the load client itself used: on a
/// shared machine, what it takes from the servers it loads.
pub fn load_counted(scalelab: &Path, target: &[&str], concurrency: u32, duration: Duration) -> Result<(Value, f64)> {
    let (out, cpu) = crate::process_stats::output_with_cpu(
        Command::new(scalelab)
            .arg("load")
            .args(target)
            .args(["--concurrency", &concurrency.to_string(), "--duration"])
            .arg(format!("{}ms", duration.as_millis()))
            .args(["--output", "json"])
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null()),
    )
    .context("running scalelab load")?;
    if !out.status.success() {
        bail!("scalelab load {target:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((serde_json::from_slice(&out.stdout).context("parsing the scalelab load report")?, cpu))
}

/// Mean instantiation time from the contender's own metrics.
fn instantiate_micros(contender: &Contender) -> Result<f64> {
    let admin = contender.admin.as_deref().context("not a scalelab contender")?;
    let text = scrape::fetch(admin).context("reading the contender's metrics")?;
    let value = |name: &str| scrape::labelled(&text, name, "").unwrap_or(0.0);
    let count = value("scalelab_guest_instantiate_duration_seconds_count");
    Ok(if count > 0.0 { value("scalelab_guest_instantiate_duration_seconds_sum") / count * 1e6 } else { 0.0 })
}

/// Peak resident memory of a process (VmHWM), in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::{BACKTRACE, NATIVE, Results, WASM, WASMTIME, WORKLOADS, median, ratio_text};
    use crate::load_sample::Sample;
    use serde_json::json;

    /// A round that served `rps` for 1 s, its server using `server_us` and
    /// the client `client_us` of CPU per request.
    fn round(rps: f64, server_us: f64, client_us: f64) -> Sample {
        let report = json!({"requests": rps as u64, "requests_per_second": rps, "status": {"200": rps as u64}});
        Sample::new(report, server_us * rps / 1e6, client_us * rps / 1e6)
    }

    /// Three rounds of every contender at every workload; the wasm host's
    /// requests/s and CPU come from `wasm`, native's from `native`, the
    /// backtrace contender's CPU from `backtrace_us`, the others are flat.
    fn results(wasm: [(f64, f64); 3], native: [(f64, f64); 3], backtrace_us: [f64; 3]) -> Results {
        let runs = WORKLOADS
            .iter()
            .map(|_| {
                (0..=WASMTIME)
                    .map(|c| {
                        (0..3)
                            .map(|i| match c {
                                WASM => round(wasm[i].0, wasm[i].1, 5.0),
                                NATIVE => round(native[i].0, native[i].1, 4.0),
                                BACKTRACE => round(wasm[i].0, backtrace_us[i], 5.0),
                                _ => round(1000.0, 50.0, 5.0),
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        Results::from_runs(runs)
    }

    #[test]
    fn each_rounds_ratio_pairs_the_wasm_run_with_the_native_run_of_that_round() {
        // The machine slowed down in the second round: both contenders fell.
        let r = results([(600.0, 20.0), (300.0, 21.0), (550.0, 19.0)], [(1000.0, 8.0), (500.0, 9.0), (1100.0, 8.5)], [20.0; 3]);
        let ratios = r.round_ratios(0, WASM, NATIVE);
        let expected = [0.6, 0.6, 0.5];
        assert!(ratios.iter().zip(expected).all(|(got, want)| (got - want).abs() < 1e-9), "{ratios:?}");
        // The medians alone pair the second-fastest of each: 550 / 1000.
        assert!((r.ratio(0, WASM, NATIVE) - 0.55).abs() < 1e-9);
        let lines = r.round_lines();
        assert!(lines.contains("  GET /prime/1      0.60 0.60 0.50  (median 0.60)"), "{lines}");
    }

    #[test]
    fn cpu_per_request_is_the_median_of_the_rounds_for_each_side() {
        let r = results([(600.0, 20.0), (300.0, 30.0), (550.0, 19.0)], [(1000.0, 8.0), (500.0, 9.0), (1100.0, 8.5)], [20.0; 3]);
        assert!((r.cpu_us(1, WASM, true) - 20.0).abs() < 1e-6);
        assert!((r.cpu_us(1, NATIVE, true) - 8.5).abs() < 1e-6);
        assert!((r.cpu_us(1, NATIVE, false) - 4.0).abs() < 1e-6);
        let (table, rows) = r.table(&[]);
        assert!(rows.is_empty() && table.contains("CPU µs/req srv / load"), "{table}");
    }

    #[test]
    fn the_backtrace_change_of_cpu_compares_the_hosts_own_cost_per_request() {
        // The same throughput, 10% more CPU per request with RUST_BACKTRACE=1.
        let r = results([(600.0, 20.0), (300.0, 20.0), (550.0, 20.0)], [(1000.0, 8.0); 3], [22.0; 3]);
        assert!(r.backtrace_change().iter().all(|d| d.abs() < 1e-9));
        assert!(r.backtrace_cpu_change().iter().all(|d| (d - 0.1).abs() < 1e-6), "{:?}", r.backtrace_cpu_change());
    }

    #[test]
    fn median_of_odd_even_and_empty_samples() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), 2.5);
        assert_eq!(median(std::iter::empty()), 0.0);
    }

    #[test]
    fn a_ratio_just_under_its_goal_never_reads_as_reaching_it() {
        assert_eq!(ratio_text(0.8612, 0.8), "0.86x");
        assert_eq!(ratio_text(0.597, 0.6), "0.597x");
        assert_eq!(ratio_text(0.5996, 0.6), "0.5996x");
        assert_eq!(ratio_text(0.6, 0.6), "0.60x");
        assert_eq!(ratio_text(0.604, 0.6), "0.60x");
        assert_eq!(ratio_text(0.594, 0.6), "0.59x");
        assert_eq!(ratio_text(10.76, 3.0), "10.76x");
        assert_eq!(super::against_goal(74.88, 75.0, 0), "74.9");
        assert_eq!(super::against_goal(79.2, 75.0, 0), "79");
    }
}
