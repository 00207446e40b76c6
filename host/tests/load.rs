//! End to end: `scalelab load` against `scalelab serve`, its JSON output,
//! thresholds, exit statuses, and a server that goes away mid-run.

mod support;

use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::{Host, interrupt, scalelab, temp_dir, wait_metric};

/// Waits until the host has answered at least one request with 200, so that
/// a test acts on a run that is under way however long the client took to start.
fn wait_answered(host: &Host, guest: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(wait_metric(host, "scalelab_http_requests_total", &[("guest", guest), ("code", "200")], |v| v >= 1.0));
}

fn load(args: &[&str]) -> Command {
    let mut cmd = scalelab();
    cmd.arg("load").args(args).stdin(Stdio::null());
    cmd
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

#[test]
fn a_closed_run_against_the_host_reports_every_request() {
    let host = Host::start("prime", &[]);
    let url = host.url("/prime/1000");
    let out = load(&[&url, "--requests", "300", "--concurrency", "8", "--output", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json_of(&out);
    assert_eq!(report["requests"], 300);
    assert_eq!(report["status"]["200"], 300);
    assert_eq!(report["error_rate"], 0.0);
    assert_eq!(report["thresholds"]["passed"], true);
    let latency = &report["latency_ms"];
    assert!(latency["p50"].as_f64().unwrap() > 0.0);
    assert!(latency["p50"].as_f64() <= latency["p99"].as_f64() && latency["p99"].as_f64() <= latency["max"].as_f64());
    let per_second: u64 = report["series"].as_array().unwrap().iter().map(|s| s["requests"].as_u64().unwrap()).sum();
    assert_eq!(per_second, 300);

    // The host counted the same requests.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let metrics = rt.block_on(host.metrics());
    assert_eq!(metrics.value("scalelab_http_requests_total", &[("guest", "prime"), ("code", "200")]), Some(300.0));
}

#[test]
fn a_weighted_scenario_with_bodies_and_the_table_output() {
    let host = Host::start("fixture-wstd", &["--max-body", "64"]);
    let dir = temp_dir("scenario");
    let scenario = dir.join("mixed.toml");
    std::fs::write(
        &scenario,
        format!(
            "[[request]]\nurl = \"{}\"\nweight = 1\n\n[[request]]\nmethod = \"POST\"\nurl = \"{}\"\nbody = \"n={{{{random}}}}\"\nweight = 3\n\n[[request]]\nmethod = \"POST\"\nurl = \"{}\"\nbody = \"{}\"\nweight = 1\n",
            host.url("/"),
            host.url("/echo"),
            host.url("/echo"),
            "x".repeat(100),
        ),
    )
    .unwrap();
    let out = load(&["--scenario", scenario.to_str().unwrap(), "--requests", "400"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("requests     400"), "{table}");
    // About a fifth of the requests carry a body over --max-body: 413.
    let count = |code: &str| {
        table
            .lines()
            .find(|l| l.starts_with("status"))
            .and_then(|l| l.split(", ").find_map(|p| p.trim_start_matches("status").trim().strip_prefix(&format!("{code}: "))))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    };
    assert_eq!(count("200") + count("413"), 400, "{table}");
    assert!((40..=120).contains(&count("413")), "{table}");
}

#[test]
fn thresholds_and_bad_arguments_set_the_exit_status() {
    let host = Host::start("prime", &[]);
    let url = host.url("/prime/10");
    let strict = load(&[&url, "-n", "50", "--max-p99", "1us"]).output().unwrap();
    assert_eq!(strict.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&strict.stdout).contains("FAILED: p99"));

    let bad_input = host.url("/prime/0"); // 400s are not errors...
    let ok = load(&[&bad_input, "-n", "20", "--max-error-rate", "0"]).output().unwrap();
    assert_eq!(ok.status.code(), Some(0));
    // ...but 5xx are.
    let failing = Host::start("prime", &["--deadline", "50ms"]);
    let slow_url = failing.url("/prime/1000000");
    let out = load(&[&slow_url, "-n", "4", "--max-error-rate", "0.5", "--output", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_of(&out)["status"]["503"], 4);

    for args in [
        vec!["-d", "1s"],                                 // no URL
        vec![url.as_str()],                               // no duration or count
        vec![url.as_str(), "-d", "1s", "--rate", "0"],    // bad rate
        vec![url.as_str(), "-d", "1s", "--rate", "1..5"], // ramp without --ramp
        vec!["https://example.invalid/", "-d", "1s"],     // not http
        vec![url.as_str(), "-d", "soon"],                 // bad duration
        vec![url.as_str(), "-n", "1", "-H", "no-colon"],  // bad header
    ] {
        let out = load(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
}

#[test]
fn a_server_that_goes_away_mid_run_is_reported_not_a_panic() {
    let mut host = Host::start("prime", &[]);
    let url = host.url("/prime/100");
    let run = load(&[&url, "--duration", "4s", "--concurrency", "4", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The host dies within the run's first second, once it has answered.
    wait_answered(&host, "prime");
    host.signal(libc::SIGKILL);
    host.wait_exit(Duration::from_secs(5)).unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json_of(&out);
    assert!(report["status"]["200"].as_u64().unwrap() > 0, "{report}");
    let errors = &report["errors"];
    let transport = errors["connect"].as_u64().unwrap() + errors["reset"].as_u64().unwrap() + errors["other"].as_u64().unwrap();
    assert!(transport > 0, "{report}");
    // The per-second series shows when it happened: answers at first, only errors at the end.
    let series = report["series"].as_array().unwrap();
    let first = &series[0];
    assert!(first["requests"].as_u64() > first["errors"].as_u64(), "{report}");
    let last = series.last().unwrap();
    assert!(last["errors"].as_u64().unwrap() > 0 && last["requests"] == last["errors"], "{report}");
}

#[test]
fn the_open_model_http2_and_timeouts_against_the_host() {
    let host = Host::start("fixture-wstd", &[]);
    // Open model: 100 requests/s for 2 s. Every request due within the run is
    // sent, late or not, so the count does not depend on the machine.
    let out = load(&[&host.url("/"), "--rate", "100", "--duration", "2s", "--output", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report = json_of(&out);
    assert_eq!(report["requests"], 200, "{report}");
    assert_eq!(report["status"]["200"], 200, "{report}");

    // HTTP/2 with prior knowledge: the host speaks it.
    let out = load(&[&host.url("/"), "--http2", "-n", "50", "--output", "json"]).output().unwrap();
    assert_eq!(json_of(&out)["status"]["200"], 50);

    // A response slower than --timeout is a `timeout` error.
    let out =
        load(&[&host.url("/sleep?ms=3000"), "-n", "2", "-c", "2", "--timeout", "200ms", "--output", "json"]).output().unwrap();
    let report = json_of(&out);
    assert_eq!(report["errors"]["timeout"], 2, "{report}");
    assert_eq!(report["error_rate"], 1.0);
}

#[test]
fn a_terminal_gets_a_live_progress_line_and_a_pipe_only_the_report() {
    let host = Host::start("prime", &[]);
    let command = format!("{} load {} --duration 2s --concurrency 2", env!("CARGO_BIN_EXE_scalelab"), host.url("/prime/10"));
    // `script` runs the command on a pseudo-terminal.
    let out = Command::new("script").args(["-qec", &command, "/dev/null"]).stdin(Stdio::null()).output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("requests/s   p99"), "no progress line: {screen}");
    assert!(screen.contains("requests     "), "no report: {screen}");

    let piped = load(&[&host.url("/prime/10"), "--duration", "2s", "--concurrency", "2"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("requests/s   p99"));
    assert!(String::from_utf8_lossy(&piped.stdout).starts_with("scalelab load: closed model"));
}

#[test]
fn ctrl_c_stops_the_run_and_still_reports() {
    let host = Host::start("prime", &[]);
    let run = load(&[&host.url("/prime/10"), "--duration", "10m", "--output", "json"]).stdout(Stdio::piped()).spawn().unwrap();
    // Once it runs (its Ctrl-C handler is installed before the first request).
    wait_answered(&host, "prime");
    interrupt(&run);
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report = json_of(&out);
    assert!(report["duration_s"].as_f64().unwrap() < 300.0, "stopped long before --duration: {report}");
    assert!(report["requests"].as_u64().unwrap() > 0);
    assert_eq!(report["requests"], report["status"]["200"], "{report}");
}
