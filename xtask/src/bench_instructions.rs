//! `cargo xtask bench-instructions [--requests N]`: the instructions a
//! server executes per request, counted by valgrind, for the wasm host and
//! its native reference at the routes the speed goals name.
//!
//! Time on these shared machines moves by 15% from one minute to the next
//! (steal time, neighbours), so a change of a few percent in the host's work
//! per request cannot be seen in requests per second, and this VM has no
//! hardware counters. The instructions a server executes for the same
//! requests are the same from run to run (within 0.1% here). Each server
//! starts under `valgrind --tool=callgrind` with instrumentation off, answers
//! a warm-up, then counts N sequential requests (`scalelab load -c 1`) and is
//! stopped; its `totals` over N is the figure. User space only: the kernel's
//! share (sockets, about the same for every server) is not counted, and an
//! instruction is not a nanosecond (cache misses, page-table work), so use
//! the table to compare builds of the same server and to see where the
//! work is, and the `bench` commands for speed.
//!
//! Under valgrind the host cannot reserve its guarded memory pool (4 GiB of
//! address space per slot, more than valgrind hands out), so it falls back
//! to the checked reservation, where every guest load and store carries a
//! bounds check that the host serving outside valgrind does not run. The
//! table says which reservation each count ran with (from the host's
//! start-up log): on a compute-heavy route such as `/prime/1000` the checked
//! guest executes many more instructions than the served one.
//!
//! The wasm host is counted twice, the second time with `RUST_BACKTRACE=1`
//! (which this project's machines set): the host must not depend on it, and
//! a count shows any difference (an error built on the request path would
//! capture a backtrace per request) where timed runs cannot see 5%.
//!
//! The session path gets one more count: the host serving `tracker` with
//! `TRACKER_WORK=0`, so that what is left of a client-tick is its overhead
//! (the timer, the guest call and its host calls, the WebSocket frames, the
//! write). [`TRACKER_CLIENTS`] swarm clients tick while instrumentation is
//! on for [`TRACKER_WINDOW`]; the client-ticks are the calls to `send` the
//! count saw (one write per client-tick, both events together), so window
//! edges do not blur the figure.

use crate::bench::{Prepared, prepare, save_report};
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Requests answered before counting starts (instances made, caches warm).
const WARM_UP: u32 = 300;

/// A guest and the native server that runs the same routing crate, with the routes measured.
const CASES: &[(&str, &str, &[&str])] =
    &[("prime", "prime-native", &["/prime/1", "/prime/1000"]), ("httpbin", "httpbin-native", &["/uuid", "/get"])];

/// Clients ticking during the tracker's count, and how long it counts.
const TRACKER_CLIENTS: u32 = 20;
const TRACKER_WINDOW: Duration = Duration::from_secs(4);

/// One row of the table.
struct Row {
    route: &'static str,
    guest: &'static str,
    wasm: f64,
    /// The same host with `RUST_BACKTRACE=1`.
    wasm_backtrace: f64,
    native: f64,
    /// The host's memory reservation in that count (`guarded` or `checked`).
    reservation: String,
}

pub fn run(ws: &Workspace, requests: u32) -> Result<()> {
    ensure!(requests > 0, "--requests must be at least 1");
    let version = Command::new("valgrind").arg("--version").output();
    if !version.as_ref().is_ok_and(|o| o.status.success()) {
        bail!("bench-instructions needs valgrind (Debian: apt-get install valgrind)");
    }
    let prepared = prepare(ws)?;
    let dir = prepared.bench_dir.join("instructions");
    std::fs::create_dir_all(&dir)?;
    println!("counting instructions of {requests} sequential requests per server and route, under callgrind");
    let mut rows = Vec::new();
    for (guest, native, routes) in CASES {
        for route in *routes {
            let (wasm, log) = count(&prepared, &Server::Host { guest, backtrace: false }, route, requests, &dir)?;
            let (wasm_backtrace, _) = count(&prepared, &Server::Host { guest, backtrace: true }, route, requests, &dir)?;
            let (native, _) = count(&prepared, &Server::Native(native), route, requests, &dir)?;
            let reservation = reservation(&log).unwrap_or("unknown").to_string();
            println!(
                "  {guest} {route}: wasm {wasm:.0} ({reservation} memory), with RUST_BACKTRACE=1 {wasm_backtrace:.0}, native {native:.0}"
            );
            rows.push(Row { route, guest, wasm, wasm_backtrace, native, reservation });
        }
    }
    let ticks = count_ticks(&prepared, &dir)?;
    println!("  tracker client-tick, TRACKER_WORK=0: {:.0} ({} client-ticks counted)", ticks.per_tick, ticks.ticks);
    let table = format!("{}{}", table(&rows), ticks.line());
    print!("\n{table}");
    let report = json!({
        "command": format!("cargo xtask bench-instructions --requests {requests}"),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
        "requests": requests,
        "rows": rows.iter().map(|r| json!({
            "guest": r.guest, "route": r.route, "wasm_instructions_per_request": r.wasm,
            "wasm_rust_backtrace_instructions_per_request": r.wasm_backtrace,
            "native_instructions_per_request": r.native, "memory_reservation": r.reservation,
        })).collect::<Vec<Value>>(),
        "tracker_no_work": json!({
            "instructions_per_client_tick": ticks.per_tick, "client_ticks": ticks.ticks,
            "clients": TRACKER_CLIENTS, "memory_reservation": ticks.reservation,
        }),
        "table": table,
    });
    save_report(ws, &prepared.bench_dir, "instructions", "instructions-latest.json", &report)
}

/// The server a count runs.
enum Server<'a> {
    /// `scalelab serve` with this guest, with `RUST_BACKTRACE=1` or without it.
    Host { guest: &'a str, backtrace: bool },
    /// A native reference server (`NAME ADDR`).
    Native(&'a str),
}

/// Instructions per request of `server` at `route`, and what the server
/// wrote to stderr (the host's log).
fn count(prepared: &Prepared, server: &Server<'_>, route: &str, requests: u32, dir: &Path) -> Result<(f64, String)> {
    let port = free_port()?;
    let out = dir.join(format!("callgrind.{port}"));
    let log_path = dir.join(format!("server.{port}.log"));
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = callgrind(&out);
    let address = format!("127.0.0.1:{port}");
    match server {
        Server::Host { guest, backtrace } => {
            if *backtrace {
                command.env("RUST_BACKTRACE", "1");
            }
            serve(&mut command, prepared, &address).args(["--guest", guest]);
        }
        Server::Native(name) => {
            command.arg(prepared.release.join(name)).arg(&address);
        }
    }
    if !matches!(server, Server::Host { backtrace: true, .. }) {
        command.env_remove("RUST_BACKTRACE");
    }
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    let mut child = Running(command.spawn().context("starting valgrind")?);
    wait_for(&address, Duration::from_secs(120))?;
    let url = format!("http://{address}{route}");
    load(&prepared.release, &url, WARM_UP)?;
    callgrind_control(child.0.id(), "on")?;
    load(&prepared.release, &url, requests)?;
    callgrind_control(child.0.id(), "off")?;
    child.stop()?;
    let (text, log) = take_output(&out, &log_path)?;
    Ok((totals(&text)? as f64 / f64::from(requests), log))
}

/// `valgrind --tool=callgrind`, instrumentation off until asked, counting into `out`.
fn callgrind(out: &Path) -> Command {
    let mut command = Command::new("valgrind");
    command
        .args(["--tool=callgrind", "--instr-atstart=no", "--log-file=/dev/null"])
        .arg(format!("--callgrind-out-file={}", out.display()));
    command
}

/// Adds `scalelab serve` on `address` with what every count's host shares:
/// the benchmark's guests and compile cache, no TCP listener.
fn serve<'a>(command: &'a mut Command, prepared: &Prepared, address: &str) -> &'a mut Command {
    command
        .arg(prepared.release.join("scalelab"))
        .args(["serve", "--guests-dir"])
        .arg(&prepared.guests_dir)
        .arg("--cache-dir")
        .arg(prepared.bench_dir.join("cache"))
        .args(["--listen", address, "--admin-listen", "127.0.0.1:0", "--tcp-listen", "off"])
}

/// The callgrind output and the server's log of a finished count, both
/// files removed.
fn take_output(out: &Path, log_path: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    let _ = std::fs::remove_file(out);
    let log = std::fs::read_to_string(log_path).unwrap_or_default();
    let _ = std::fs::remove_file(log_path);
    Ok((text, log))
}

/// The tracker's count: instructions per client-tick of its overhead.
struct TickCount {
    per_tick: f64,
    ticks: u64,
    reservation: String,
}

impl TickCount {
    fn line(&self) -> String {
        format!(
            "session path: tracker with TRACKER_WORK=0, {:.0} instructions per client-tick ({} client-ticks of {TRACKER_CLIENTS} clients; host memory {})\n",
            self.per_tick, self.ticks, self.reservation
        )
    }
}

/// Instructions per client-tick of the host serving `tracker` with no work
/// per tick: a swarm of [`TRACKER_CLIENTS`] ticks through a warm-up, then
/// for [`TRACKER_WINDOW`] under instrumentation.
fn count_ticks(prepared: &Prepared, dir: &Path) -> Result<TickCount> {
    let port = free_port()?;
    let out = dir.join(format!("callgrind.{port}"));
    let log_path = dir.join(format!("server.{port}.log"));
    let config = dir.join("tracker-no-work.toml");
    std::fs::write(&config, "guest = \"tracker\"\n\n[env]\nTRACKER_WORK = \"0\"\n")?;
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let address = format!("127.0.0.1:{port}");
    let mut command = callgrind(&out);
    serve(&mut command, prepared, &address).arg("--config").arg(&config);
    command.env_remove("RUST_BACKTRACE").stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    let mut host = Running(command.spawn().context("starting valgrind")?);
    wait_for(&address, Duration::from_secs(120))?;
    let warm_up = Duration::from_secs(3);
    let hold = warm_up + TRACKER_WINDOW + Duration::from_secs(30);
    let swarm = Command::new(prepared.release.join("scalelab"))
        .args(["swarm", "sockets", "--url", &format!("http://{address}"), "--clients", &TRACKER_CLIENTS.to_string()])
        .args(["--spawn-interval", "5ms", "--hold", &format!("{}s", hold.as_secs()), "--metrics-listen", "off"])
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting scalelab swarm sockets")?;
    let swarm = Running(swarm);
    std::thread::sleep(warm_up);
    callgrind_control(host.0.id(), "on")?;
    std::thread::sleep(TRACKER_WINDOW);
    callgrind_control(host.0.id(), "off")?;
    drop(swarm);
    host.stop()?;
    let (text, log) = take_output(&out, &log_path)?;
    let ticks = calls_to(&text, "send");
    ensure!(ticks > 0, "no client-tick was counted (no call to send): see the host's log\n{log}");
    let reservation = reservation(&log).unwrap_or("unknown").to_string();
    Ok(TickCount { per_tick: totals(&text)? as f64 / ticks as f64, ticks, reservation })
}

/// Calls made to the function `name` in a callgrind output file. Names may
/// be compressed: `(id) name` where one first appears, `(id)` after.
fn calls_to(text: &str, name: &str) -> u64 {
    let mut names = std::collections::HashMap::new();
    let mut resolve = |spec: &str| -> Option<String> {
        let Some(rest) = spec.strip_prefix('(') else { return Some(spec.to_string()) };
        let (id, defined) = rest.split_once(')')?;
        let defined = defined.trim();
        if !defined.is_empty() {
            names.insert(id.to_string(), defined.to_string());
        }
        names.get(id).cloned()
    };
    let (mut counting, mut total) = (false, 0);
    for line in text.lines() {
        if let Some(spec) = line.strip_prefix("cfn=") {
            counting = resolve(spec).as_deref() == Some(name);
        } else if let Some(spec) = line.strip_prefix("fn=") {
            resolve(spec);
        } else if let Some(calls) = line.strip_prefix("calls=")
            && std::mem::take(&mut counting)
        {
            total += calls.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}

/// The memory reservation a host's start-up log names
/// (`memory_reservation="checked"`).
fn reservation(log: &str) -> Option<&str> {
    let rest = &log[log.find("memory_reservation=")? + "memory_reservation=".len()..];
    let value = rest.trim_start_matches('"');
    let end = value.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(value.len());
    Some(&value[..end]).filter(|v| !v.is_empty())
}

/// A server under valgrind, stopped with SIGTERM (valgrind writes its counts
/// at exit) and killed if it outlives the benchmark.
struct Running(Child);

impl Running {
    fn stop(&mut self) -> Result<()> {
        Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status()?;
        let give_up = Instant::now() + Duration::from_secs(60);
        while Instant::now() < give_up {
            if self.0.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the server did not stop within 60 s of SIGTERM")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for(address: &str, limit: Duration) -> Result<()> {
    let give_up = Instant::now() + limit;
    while TcpStream::connect(address).is_err() {
        ensure!(Instant::now() < give_up, "nothing listened on {address} within {} s", limit.as_secs());
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// `requests` sequential GETs of `url`, all of which must answer 200.
fn load(release: &Path, url: &str, requests: u32) -> Result<()> {
    let out = Command::new(release.join("scalelab"))
        .args(["load", "--concurrency", "1", "--requests", &requests.to_string(), "--output", "json", url])
        .env_remove("RUST_BACKTRACE")
        .output()
        .context("running scalelab load")?;
    let report: Value = serde_json::from_slice(&out.stdout).context("parsing the scalelab load report")?;
    let ok = report["status"]["200"].as_u64().unwrap_or(0);
    ensure!(ok == u64::from(requests), "{url}: {ok} of {requests} requests answered 200: {}", report["status"]);
    Ok(())
}

fn callgrind_control(pid: u32, instrumentation: &str) -> Result<()> {
    let out = Command::new("callgrind_control")
        .args(["-i", instrumentation, &pid.to_string()])
        .output()
        .context("running callgrind_control (valgrind's package)")?;
    ensure!(out.status.success(), "callgrind_control -i {instrumentation} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// The `totals:` line of a callgrind output file: instructions counted.
fn totals(text: &str) -> Result<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("totals:"))
        .context("no totals line in the callgrind output")?
        .trim()
        .parse()
        .context("parsing the callgrind totals")
}

fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<16} {:<10} {:>16} {:>16} {:>16} {:>13}  {}\n",
        "route", "guest", "wasm instr/req", "RUST_BACKTRACE=1", "native instr/req", "wasm/native", "host memory"
    );
    for r in rows {
        out.push_str(&format!(
            "GET {:<12} {:<10} {:>16.0} {:>15.1}% {:>16.0} {:>12.2}x  {}\n",
            r.route,
            r.guest,
            r.wasm,
            (r.wasm_backtrace / r.wasm.max(1.0) - 1.0) * 100.0,
            r.native,
            r.wasm / r.native.max(1.0),
            r.reservation
        ));
    }
    if rows.iter().any(|r| r.reservation != "guarded") {
        out.push_str(
            "host memory `checked`: valgrind could not give the host its guarded pool, so guest loads and\n\
             stores carried bounds checks that the host serving outside valgrind does not run\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_read_from_the_callgrind_output() {
        let text = "events: Ir\nsummary: 0\nfn=(1) main\n5 10\ntotals: 93240504\n";
        assert_eq!(totals(text).unwrap(), 93_240_504);
        assert!(totals("events: Ir\n").is_err());
    }

    #[test]
    fn the_table_gives_the_ratio_to_native() {
        let row = |reservation: &str| Row {
            route: "/prime/1",
            guest: "prime",
            wasm: 46_600.0,
            wasm_backtrace: 46_600.0 * 1.002,
            native: 20_000.0,
            reservation: reservation.to_string(),
        };
        let out = table(&[row("guarded")]);
        assert!(out.contains("GET /prime/1"), "{out}");
        assert!(out.contains("46600") && out.contains("20000") && out.contains("2.33x"), "{out}");
        assert!(out.contains("0.2%"), "the RUST_BACKTRACE=1 column is the change in %: {out}");
        assert!(!out.contains("bounds checks"), "{out}");
        let out = table(&[row("checked")]);
        assert!(out.contains("checked") && out.contains("bounds checks"), "{out}");
    }

    #[test]
    fn calls_are_counted_by_name_through_compressed_names() {
        let text = "fn=(1) main\ncfn=(2) send\ncalls=3 0x10\n5 7\ncfn=(3) sendmsg\ncalls=9 0x20\n\
                    fn=(4) other\ncfn=(2)\ncalls=4 0x10\ncfn=(20) x\ncalls=100 0\ncfn=(2)\n5 1\n";
        assert_eq!(calls_to(text, "send"), 7, "an id names one function: (20) is not (2)");
        assert_eq!(calls_to("fn=main\ncfn=send\ncalls=2 0\n", "send"), 2, "uncompressed names");
        assert_eq!(calls_to(text, "recv"), 0);
    }

    #[test]
    fn the_reservation_is_read_from_the_host_log() {
        let log =
            "2026-12-05T22:32:46Z  INFO scalelab::serve: serving guest=prime memory_reservation=\"checked\" pool_slots=321\n";
        assert_eq!(reservation(log), Some("checked"));
        assert_eq!(reservation("... memory_reservation=guarded x=1"), Some("guarded"));
        assert_eq!(reservation("no such field"), None);
        assert_eq!(reservation("memory_reservation=\"\""), None);
    }
}
