//! `cargo xtask bench-todo [--quick]`: the todo guest against its native
//! reference.
//!
//! Starts a private Postgres (`local-postgres`) and three contenders on
//! loopback: `scalelab serve --guest todo` on the embedded SQLite, the same
//! on Postgres, and `todo-native` (the same routing crate on hyper and
//! deadpool-postgres) on the same Postgres, with the same pool size. Each is
//! loaded in alternation with the locust scenario of the `todo` overlay
//! (`k8s/overlays/todo/scenario.toml`, its host rewritten), at a fixed
//! concurrency. While a run lasts, `pg_stat_activity` is sampled (over one
//! kept psql session) for the connections the contender holds. Prints a
//! table of medians and the ratio to native (and the ratio of each round's
//! pair, for its spread), then the server's CPU per request of each route
//! alone on the two Postgres contenders, and writes the result as JSON to
//! `target/bench/`.
//!
//! Every process of a run shares the machine's cores, so the table counts
//! the CPU per request of each: the server, Postgres (its postmaster and
//! backends) and the load client. A server that costs the others more per
//! request (caches it leaves cold) shows there, not in its own column.

use crate::bench::{Contender, Prepared, load_counted, load_with, median, prepare, save_report, spawn_host, start_native_with};
use crate::process_stats::{cpu_seconds, tree_cpu_seconds};
use crate::workspace::Workspace;
use anyhow::{Context, Result};
use local_postgres::{Postgres, Session};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Connections each contender may open to Postgres (the host's default).
const POOL_SIZE: u32 = 10;

/// The host name the overlay's scenario addresses (the Service).
const SCENARIO_HOST: &str = "http://scalelab:8080";

/// How one contender reaches Postgres, for counting its connections.
#[derive(Clone, Copy, PartialEq)]
pub enum Database {
    Sqlite,
    /// Connections carry this `application_name`.
    Postgres(&'static str),
}

struct Settings {
    rounds: usize,
    round: Duration,
}

pub fn run(ws: &Workspace, quick: bool, concurrency: u32) -> Result<()> {
    let settings = if quick {
        Settings { rounds: 3, round: Duration::from_secs(4) }
    } else {
        Settings { rounds: 5, round: Duration::from_secs(10) }
    };
    let prepared = prepare(ws)?;
    let scalelab = prepared.release.join("scalelab");
    let bench_dir = &prepared.bench_dir;
    let Stage { pg, dir, scenario, contenders, scenarios } = Stage::start(ws, &prepared)?;

    println!(
        "loading {} contenders x {} rounds of {} s, {} connections, the overlay's scenario (4 requests, equal weights)",
        contenders.len(),
        settings.rounds,
        settings.round.as_secs(),
        concurrency
    );
    let runs = measure_mix(&scalelab, &pg, &contenders, &scenarios, &settings, concurrency)?;
    let rows: Vec<Row> =
        contenders.iter().zip(&runs).map(|((contender, database), runs)| Row::of(contender.name, *database, runs)).collect();
    let (mut out, ratio) = mix_table(&rows);
    out.push_str(&round_ratios(&rows));
    print!("\n{out}");
    let by_route = cost_by_route(&scalelab, &scenario, &[&contenders[1].0, &contenders[2].0], &dir, concurrency)?;
    let by_route_table = by_route_table(&by_route, &[contenders[1].0.name, contenders[2].0.name]);
    print!("\n{by_route_table}");
    out.push('\n');
    out.push_str(&by_route_table);
    let rows_left = pg.psql("SELECT count(*) FROM todo")?;
    println!("rows in Postgres after the run: {rows_left}");

    let command = format!("cargo xtask bench-todo{} --concurrency {concurrency}", if quick { " --quick" } else { "" });
    let report = json!({
        "command": command,
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
        "concurrency": concurrency, "rounds": settings.rounds, "round_seconds": settings.round.as_secs(),
        "pool_size": POOL_SIZE,
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "ratio_postgres_wasm_to_native": ratio,
        "ratio_postgres_wasm_to_native_by_round": paired_ratios(&rows),
        "cpu_us_per_request_by_route": by_route.iter().map(|r| json!({"route": r.route, "cpu_us_per_request": r.cpu_us})).collect::<Vec<_>>(),
        "table": out,
    });
    save_report(ws, bench_dir, "todo", "todo-latest.json", &report)
}

/// What a todo run needs, ready: a private Postgres, the three contenders
/// ([`start_contenders`]) and the overlay's scenario aimed at each (also the
/// profile-guided build's training, `pgo.rs`).
pub struct Stage {
    /// `<bench dir>/todo`: the photo, the scenarios, SQLite's and Postgres's files.
    pub dir: PathBuf,
    /// The overlay's scenario as written (addressing [`SCENARIO_HOST`]).
    pub scenario: String,
    /// Declared before `pg`, so dropped (stopped) before it.
    pub contenders: [(Contender, Database); 3],
    /// The scenario aimed at each contender, in the same order.
    pub scenarios: Vec<PathBuf>,
    pub pg: Postgres,
}

impl Stage {
    pub fn start(ws: &Workspace, prepared: &Prepared) -> Result<Stage> {
        let dir = prepared.bench_dir.join("todo");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("photos"))?;
        let overlay = ws.root.join("k8s/overlays/todo");
        std::fs::copy(overlay.join("daily_pic.jpg"), dir.join("photos/daily_pic.jpg")).context("copying the daily photo")?;
        let scenario = std::fs::read_to_string(overlay.join("scenario.toml")).context("reading the overlay's scenario")?;

        println!("starting a private Postgres");
        let pg = Postgres::start(&dir, "postgres")?;
        let contenders = start_contenders(prepared, &dir, &pg)?;
        let scenarios = contenders
            .iter()
            .enumerate()
            .map(|(i, (contender, _))| {
                let file = dir.join(format!("scenario-{i}.toml"));
                std::fs::write(&file, scenario.replace(SCENARIO_HOST, &contender.url))?;
                Ok(file)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Stage { dir, scenario, contenders, scenarios, pg })
    }
}

/// The three contenders, started and ready: the guest on SQLite, the guest
/// on `pg`, and todo-native on `pg`, each with a pool of [`POOL_SIZE`].
fn start_contenders(prepared: &Prepared, dir: &Path, pg: &Postgres) -> Result<[(Contender, Database); 3]> {
    let Prepared { guests_dir, release, bench_dir } = prepared;
    let scalelab = release.join("scalelab");
    // The guest's mount of the photo directory, as the overlay's guest.toml grants it.
    let config = dir.join("guest.toml");
    std::fs::write(&config, format!("guest = \"todo\"\n\n[mounts]\n\"/photos\" = {:?}\n", dir.join("photos")))?;
    let cache = bench_dir.join("cache");
    let wasm = |name: &'static str, database: &str, extra: &[&str]| -> Result<Contender> {
        let mut args = vec!["--config".into(), config.clone().into_os_string(), "--database".into(), database.into()];
        args.extend(["--database-pool-size".into(), POOL_SIZE.to_string().into(), "--data-dir".into(), dir.into()]);
        args.extend(extra.iter().map(Into::into));
        let (contender, lines) = spawn_host(name, &scalelab, guests_dir, &cache, &args, false)?;
        std::thread::spawn(move || for _ in lines {});
        Ok(contender)
    };
    let password_file = pg.password_file();
    Ok([
        (wasm("todo, SQLite", "sqlite:bench.db", &[])?, Database::Sqlite),
        (
            wasm("todo, Postgres", &pg.url(), &["--database-password-file", &password_file.to_string_lossy()])?,
            Database::Postgres("scalelab"),
        ),
        (
            start_native_with(
                "todo-native, Postgres",
                &release.join("todo-native"),
                &[
                    "127.0.0.1:0",
                    &pg.url_with_password("todo-native"),
                    &POOL_SIZE.to_string(),
                    &dir.join("photos").to_string_lossy(),
                ],
            )?,
            Database::Postgres("todo-native"),
        ),
    ])
}

/// Warms every contender up, then loads them in alternation with their
/// scenario file: `runs[contender]` holds one [`Run`] per round.
fn measure_mix(
    scalelab: &Path,
    pg: &Postgres,
    contenders: &[(Contender, Database)],
    scenarios: &[PathBuf],
    settings: &Settings,
    concurrency: u32,
) -> Result<Vec<Vec<Run>>> {
    for (file, (contender, _)) in scenarios.iter().zip(contenders) {
        let warm_up = load_with(scalelab, &scenario_args(file), concurrency, Duration::from_secs(1))?;
        anyhow::ensure!(
            warm_up["status"]["200"].as_u64().unwrap_or(0) > 0,
            "{} answered no request with 200 while warming up: {warm_up}",
            contender.name
        );
    }
    let postgres = pg.server_pid()?;
    // Opened once: its backend lives through every run, so no backend
    // exits between a run's two readings of Postgres's CPU.
    let mut session = pg.session()?;
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); contenders.len()];
    for _ in 0..settings.rounds {
        for (c, (file, (contender, database))) in scenarios.iter().zip(contenders).enumerate() {
            let cpu_before = cpu_seconds(contender.pid())?;
            // Every backend lives through the run: the pools' and the
            // sampler's (about 0.4 ms of CPU a sample, 40 ms in a 10 s run).
            let pg_before = tree_cpu_seconds(postgres)?;
            let ((report, client_cpu), connections) = with_connection_sampling(&mut session, *database, || {
                load_counted(scalelab, &scenario_args(file), concurrency, settings.round)
            })?;
            let cpu = cpu_seconds(contender.pid())? - cpu_before;
            let pg_cpu = tree_cpu_seconds(postgres)? - pg_before;
            runs[c].push(Run { report, connections, cpu, pg_cpu, client_cpu });
        }
    }
    Ok(runs)
}

/// The mix's table (the last row is native) and the ratio of wasm on
/// Postgres (the second row) to native, with the goal line.
fn mix_table(rows: &[Row]) -> (String, f64) {
    let native = rows.last().map_or(0.0, |row| row.requests_per_second).max(f64::MIN_POSITIVE);
    let mut out = format!(
        "{:<24} {:>9} {:>9} {:>9} {:>22} {:>8} {:>9} {:>10}\n",
        "contender", "req/s", "p50 ms", "p99 ms", "CPU us/req srv/pg/load", "non-2xx", "pg conns", "vs native"
    );
    for row in rows {
        let conns = row.connections.map_or("-".to_string(), |n| format!("{n} of {POOL_SIZE}"));
        let cpu =
            format!("{:.1} / {:.1} / {:.1}", row.cpu_us_per_request, row.pg_cpu_us_per_request, row.client_cpu_us_per_request);
        out.push_str(&format!(
            "{:<24} {:>9.0} {:>9.2} {:>9.2} {:>22} {:>8} {:>9} {:>9.2}x\n",
            row.name,
            row.requests_per_second,
            row.p50_ms,
            row.p99_ms,
            cpu,
            row.non_2xx,
            conns,
            row.requests_per_second / native
        ));
    }
    out.push_str(
        "(CPU us/req, user + system per request answered: the server process, Postgres's postmaster and backends, \
         and the load client)\n",
    );
    let ratio = rows.get(1).map_or(0.0, |row| row.requests_per_second) / native;
    out.push_str(&format!(
        "\ngoal\n  {:<42} {ratio:.2}x  {}\n",
        "todo on Postgres: wasm >= 0.8x native",
        if ratio >= 0.8 { "met" } else { "NOT met" }
    ));
    (out, ratio)
}

/// Each round's requests per second of wasm on Postgres (the second row)
/// over native's (the last) in the same round: paired, so that what
/// disturbed the machine during a round weighs on both sides of its ratio.
fn paired_ratios(rows: &[Row]) -> Vec<f64> {
    let (Some(wasm), Some(native)) = (rows.get(1), rows.last()) else { return Vec::new() };
    wasm.rounds.iter().zip(&native.rounds).map(|(w, n)| w / n.max(f64::MIN_POSITIVE)).collect()
}

/// The line of [`paired_ratios`], with how many of them meet the goal.
fn round_ratios(rows: &[Row]) -> String {
    let ratios = paired_ratios(rows);
    let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    let met = ratios.iter().filter(|&&r| r >= 0.8).count();
    format!(
        "  each round, wasm / native: {} (median {:.2}; {met} of {} rounds >= 0.8x)\n",
        listed.join(" "),
        median(ratios.iter().copied()),
        ratios.len()
    )
}

/// Rounds and length of the runs that measure each route alone.
const ROUTE_ROUNDS: usize = 3;
const ROUTE_RUN: Duration = Duration::from_secs(2);

/// One route's CPU per request on each contender measured.
struct RouteCost {
    route: String,
    /// Median CPU µs per request, in the order of the contenders.
    cpu_us: Vec<f64>,
}

/// Each request of the scenario alone, on each of `contenders` in
/// alternation: the server's CPU per request by route, which shows which
/// routes cost the wasm path more than native and by how much.
fn cost_by_route(
    scalelab: &Path,
    scenario: &str,
    contenders: &[&Contender],
    dir: &Path,
    concurrency: u32,
) -> Result<Vec<RouteCost>> {
    let routes = split_scenario(scenario)?;
    let mut costs = Vec::new();
    for (r, (route, text)) in routes.iter().enumerate() {
        let files = contenders
            .iter()
            .enumerate()
            .map(|(c, contender)| {
                let file = dir.join(format!("route-{r}-{c}.toml"));
                std::fs::write(&file, text.replace(SCENARIO_HOST, &contender.url))?;
                Ok(file)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut samples = vec![Vec::new(); contenders.len()];
        for _ in 0..ROUTE_ROUNDS {
            for (c, (contender, file)) in contenders.iter().zip(&files).enumerate() {
                let before = cpu_seconds(contender.pid())?;
                let report = load_with(scalelab, &scenario_args(file), concurrency, ROUTE_RUN)?;
                let cpu = cpu_seconds(contender.pid())? - before;
                samples[c].push(cpu * 1e6 / report["requests"].as_u64().unwrap_or(0).max(1) as f64);
            }
        }
        costs.push(RouteCost { route: route.clone(), cpu_us: samples.into_iter().map(|s| median(s.into_iter())).collect() });
    }
    Ok(costs)
}

/// The scenario's requests, each as a scenario of its own, named `METHOD /path`.
fn split_scenario(scenario: &str) -> Result<Vec<(String, String)>> {
    let doc: toml_edit::DocumentMut = scenario.parse().context("the overlay's scenario is not valid TOML")?;
    let requests = doc["request"].as_array_of_tables().context("the scenario has no [[request]]")?;
    requests
        .iter()
        .map(|request| {
            let url = request.get("url").and_then(|u| u.as_str()).context("a [[request]] without url")?;
            let method = request.get("method").and_then(|m| m.as_str()).unwrap_or("GET");
            let mut one = toml_edit::DocumentMut::new();
            let mut list = toml_edit::ArrayOfTables::new();
            list.push(request.clone());
            one.insert("request", toml_edit::Item::ArrayOfTables(list));
            Ok((format!("{method} {}", url.trim_start_matches(SCENARIO_HOST)), one.to_string()))
        })
        .collect()
}

fn by_route_table(costs: &[RouteCost], names: &[&str]) -> String {
    let mut out =
        format!("server CPU us per request, each route alone ({ROUTE_ROUNDS} alternating runs of {} s)\n", ROUTE_RUN.as_secs());
    out.push_str(&format!("{:<22}", "route"));
    for name in names {
        out.push_str(&format!(" {name:>22}"));
    }
    out.push_str(&format!(" {:>12}\n", "difference"));
    for cost in costs {
        out.push_str(&format!("{:<22}", cost.route));
        for us in &cost.cpu_us {
            out.push_str(&format!(" {us:>22.1}"));
        }
        let difference = cost.cpu_us.first().unwrap_or(&0.0) - cost.cpu_us.last().unwrap_or(&0.0);
        out.push_str(&format!(" {difference:>+12.1}\n"));
    }
    out
}

fn scenario_args(file: &Path) -> [&str; 2] {
    ["--scenario", file.to_str().expect("the bench directory's path is UTF-8")]
}

/// Runs `load` while a thread samples the connections `database` holds in
/// Postgres every 100 ms; returns what `load` returned and the most connections seen.
///
/// The samples go over one psql session, about 0.4 ms of Postgres's CPU
/// each. A new psql for each sample (a process, a new backend, a password
/// handshake) took about 38 ms of the machine's CPU each, some 14% of the
/// two cores during a run, beside the servers measured.
fn with_connection_sampling<T>(session: &mut Session, database: Database, load: impl FnOnce() -> Result<T>) -> Result<(T, u64)> {
    let Database::Postgres(application) = database else {
        return Ok((load()?, 0));
    };
    let done = AtomicBool::new(false);
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application}'");
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut most = 0u64;
            while !done.load(Ordering::Relaxed) {
                let count = session.query(&sql).ok().and_then(|lines| lines.first()?.parse().ok());
                most = most.max(count.unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            most
        });
        let report = load();
        done.store(true, Ordering::Relaxed);
        let most = sampler.join().expect("the sampler panicked");
        Ok((report?, most))
    })
}

/// One load run of one contender.
#[derive(Clone)]
struct Run {
    report: Value,
    /// The most Postgres connections the contender held during the run.
    connections: u64,
    /// CPU seconds the contender's process used during the run.
    cpu: f64,
    /// CPU seconds Postgres used during the run (its postmaster and live backends).
    pg_cpu: f64,
    /// CPU seconds the load client used.
    client_cpu: f64,
}

/// One contender's medians over its rounds.
struct Row {
    name: &'static str,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The server's CPU per request: what the wasm path costs beside native
    /// regardless of how the shared machine's cores were split.
    cpu_us_per_request: f64,
    /// Postgres's CPU per request: the same queries cost it the same, unless
    /// the server beside it on the cores slows it down.
    pg_cpu_us_per_request: f64,
    /// The load client's CPU per request, likewise.
    client_cpu_us_per_request: f64,
    /// Responses other than 2xx, and transport errors, over all rounds.
    non_2xx: u64,
    /// The most Postgres connections seen in any round (None on SQLite).
    connections: Option<u64>,
    rounds: Vec<f64>,
}

impl Row {
    fn of(name: &'static str, database: Database, runs: &[Run]) -> Row {
        let field = |f: &dyn Fn(&Value) -> Option<f64>| median(runs.iter().map(|r| f(&r.report).unwrap_or(0.0)));
        let requests = |r: &Run| r.report["requests"].as_u64().unwrap_or(0);
        let non_2xx = runs.iter().map(|r| requests(r).saturating_sub(successes(&r.report))).sum();
        let most = runs.iter().map(|r| r.connections).max().unwrap_or(0);
        Row {
            name,
            requests_per_second: field(&|r| r["requests_per_second"].as_f64()),
            p50_ms: field(&|r| r["latency_ms"]["p50"].as_f64()),
            p99_ms: field(&|r| r["latency_ms"]["p99"].as_f64()),
            cpu_us_per_request: median(runs.iter().map(|r| r.cpu * 1e6 / requests(r).max(1) as f64)),
            pg_cpu_us_per_request: median(runs.iter().map(|r| r.pg_cpu * 1e6 / requests(r).max(1) as f64)),
            client_cpu_us_per_request: median(runs.iter().map(|r| r.client_cpu * 1e6 / requests(r).max(1) as f64)),
            non_2xx,
            connections: (database != Database::Sqlite).then_some(most),
            rounds: runs.iter().map(|r| r.report["requests_per_second"].as_f64().unwrap_or(0.0)).collect(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "contender": self.name, "requests_per_second": self.requests_per_second,
            "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "cpu_us_per_request": self.cpu_us_per_request,
            "postgres_cpu_us_per_request": self.pg_cpu_us_per_request, "client_cpu_us_per_request": self.client_cpu_us_per_request,
            "non_2xx": self.non_2xx,
            "postgres_connections": self.connections, "rounds": self.rounds,
        })
    }
}

/// Responses with a 2xx status in a load report.
fn successes(report: &Value) -> u64 {
    report["status"]
        .as_object()
        .map(|by_status| by_status.iter().filter(|(code, _)| code.starts_with('2')).filter_map(|(_, n)| n.as_u64()).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_takes_medians_and_counts_what_was_not_2xx() {
        let run = |rps: f64, p99: f64, requests: u64, ok: u64, connections: u64| Run {
            report: json!({"requests_per_second": rps, "latency_ms": {"p50": 1.0, "p99": p99}, "requests": requests,
                           "status": {"200": ok, "201": 0, "503": requests - ok}}),
            connections,
            cpu: requests as f64 * 50e-6,
            pg_cpu: requests as f64 * 40e-6,
            client_cpu: requests as f64 * 20e-6,
        };
        let postgres = Database::Postgres("scalelab");
        let row = Row::of("wasm", postgres, &[run(100.0, 9.0, 10, 10, 4), run(300.0, 3.0, 10, 8, 10), run(200.0, 5.0, 10, 9, 7)]);
        assert_eq!((row.requests_per_second, row.p99_ms, row.non_2xx, row.connections), (200.0, 5.0, 3, Some(10)));
        for (got, want) in
            [(row.cpu_us_per_request, 50.0), (row.pg_cpu_us_per_request, 40.0), (row.client_cpu_us_per_request, 20.0)]
        {
            assert!((got - want).abs() < 1e-9, "{got} against {want}");
        }
        assert_eq!(Row::of("wasm", Database::Sqlite, &[run(1.0, 1.0, 1, 1, 0)]).connections, None);
    }

    #[test]
    fn each_rounds_ratio_pairs_wasm_on_postgres_with_native_in_that_round() {
        let row = |name, rounds: &[f64]| Row {
            name,
            requests_per_second: median(rounds.iter().copied()),
            p50_ms: 1.0,
            p99_ms: 1.0,
            cpu_us_per_request: 0.0,
            pg_cpu_us_per_request: 0.0,
            client_cpu_us_per_request: 0.0,
            non_2xx: 0,
            connections: None,
            rounds: rounds.to_vec(),
        };
        // Native slowed down in round 2 as much as wasm: the pair stays even.
        let rows = [row("sqlite", &[9.0, 9.0, 9.0]), row("wasm", &[90.0, 45.0, 70.0]), row("native", &[100.0, 50.0, 100.0])];
        assert_eq!(paired_ratios(&rows), [0.9, 0.9, 0.7]);
        assert_eq!(round_ratios(&rows), "  each round, wasm / native: 0.90 0.90 0.70 (median 0.90; 2 of 3 rounds >= 0.8x)\n");
    }

    #[test]
    fn a_scenario_splits_into_one_per_request_named_by_method_and_path() {
        let scenario = "# c\n[[request]]\nurl = \"http://scalelab:8080/\"\n\n[[request]]\nurl = \"http://scalelab:8080/api/todo\"\nmethod = \"POST\"\nbody = '{\"task\":\"{{letters:10}}\"}'\n";
        let parts = split_scenario(scenario).unwrap();
        assert_eq!(parts.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(), ["GET /", "POST /api/todo"]);
        let post: toml_edit::DocumentMut = parts[1].1.parse().unwrap();
        let requests = post["request"].as_array_of_tables().unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests.get(0).unwrap()["body"].as_str(), Some("{\"task\":\"{{letters:10}}\"}"));
    }

    #[test]
    fn the_overlay_scenario_addresses_the_host_the_bench_rewrites() {
        let ws = Workspace::locate().unwrap();
        let scenario = std::fs::read_to_string(ws.root.join("k8s/overlays/todo/scenario.toml")).unwrap();
        let urls = scenario.lines().filter(|l| l.starts_with("url = ")).collect::<Vec<_>>();
        assert_eq!(urls.len(), 4, "{scenario}");
        assert!(urls.iter().all(|l| l.contains(SCENARIO_HOST)), "{urls:?}");
    }
}
