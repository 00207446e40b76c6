//! End to end: the guest configuration file (precedence, errors) and
//! hot-swapping through a ConfigMap-style file update and the admin API,
//! under continuous load.

mod support;

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{ConfigMapDir, Host, scalelab, serve_command_without_guest, temp_dir};

const TOKEN: &str = "s3cret-token";

fn start_with_config(map: &ConfigMapDir, extra: &[&str]) -> Host {
    let mut cmd = serve_command_without_guest(extra);
    cmd.arg("--config").arg(map.path()).env("SCALELAB_ADMIN_TOKEN", TOKEN);
    Host::start_command(cmd)
}

/// GET / on the traffic port: (status, body).
fn get_root(host: &Host) -> (u16, String) {
    let response = reqwest::blocking::get(host.url("/")).unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// Waits until GET / answers like `guest` does.
fn wait_serving(host: &Host, guest: &str) {
    let give_up = Instant::now() + support::PATIENCE;
    loop {
        let (_, body) = get_root(host);
        let serving = match guest {
            "fixture-wstd" => body == "hello from wstd\n",
            _ => body.starts_with("{\"prime\":"),
        };
        if serving {
            return;
        }
        if Instant::now() > give_up {
            let notes: Vec<Value> = host.logs().into_iter().filter(|l| l["level"] != "INFO" || l["step"] == "swap").collect();
            panic!("never switched to {guest}; GET / says {body:?}; warnings and swaps: {notes:#?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn put_guest(host: &Host, token: Option<&str>, body: impl Into<reqwest::blocking::Body>) -> (u16, Value) {
    let mut request = reqwest::blocking::Client::new().put(host.admin_url("/admin/guest")).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn metric(host: &Host, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = reqwest::blocking::get(host.admin_url("/metrics")).unwrap().text().unwrap();
    support::Metrics(text).value(name, labels)
}

#[test]
fn swaps_under_load_through_the_file_and_the_admin_api_fail_no_request() {
    let mut map = ConfigMapDir::new("guest = \"prime\"\n");
    // Polling far apart: the file swaps below must be seen through inotify.
    let host = start_with_config(&map, &["--config-poll", "1h"]);
    wait_serving(&host, "prime");

    // The load runs until every swap is done (then it is interrupted), so
    // that it spans them all however long compiling takes.
    let load = scalelab()
        .args(["load", &host.url("/"), "--concurrency", "4", "--duration", "10m", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let answered =
        |n: f64| metric(&host, "scalelab_http_requests_total", &[("guest", "prime"), ("code", "200")]).is_some_and(|v| v >= n);
    let give_up = Instant::now() + support::PATIENCE;
    while !answered(1.0) {
        assert!(Instant::now() < give_up, "the load never reached the host");
        std::thread::sleep(Duration::from_millis(10));
    }

    map.update("guest = \"fixture-wstd\"\n");
    wait_serving(&host, "fixture-wstd");
    let (status, report) = put_guest(&host, Some(TOKEN), "prime");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["guest"]["name"], "prime");
    assert!(report["compile_ms"].as_f64().unwrap() >= 0.0 && report["switch_ms"].as_f64().unwrap() >= 0.0);
    wait_serving(&host, "prime");
    // The file's content must change for a swap (as a ConfigMap edit does).
    map.update("guest = \"fixture-wstd\"\n[env]\nROUND = \"2\"\n");
    wait_serving(&host, "fixture-wstd");
    // A component uploaded as bytes.
    let prime = std::fs::read(support::guests_dir().join("prime.wasm")).unwrap();
    let (status, report) = put_guest(&host, Some(TOKEN), prime);
    assert_eq!(status, 200, "{report}");
    wait_serving(&host, "prime");

    support::interrupt(&load);
    let out = load.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["requests"], report["status"]["200"], "a request failed during the swaps: {report}");
    assert_eq!(report["error_rate"], 0.0, "{report}");

    assert_eq!(metric(&host, "scalelab_guest_swaps_total", &[("result", "ok")]), Some(4.0));
    assert_eq!(metric(&host, "scalelab_guest_swap_duration_seconds_count", &[("phase", "switch")]), Some(4.0));
    let swaps: Vec<Value> = host.logs().into_iter().filter(|l| l["step"] == "swap").collect();
    assert_eq!(swaps.len(), 4, "{swaps:#?}");
    for line in &swaps {
        assert!(line["compile_ms"].is_number() && line["switch_ms"].is_number(), "{line}");
    }
    let origins: Vec<&str> = swaps.iter().map(|l| l["origin"].as_str().unwrap()).collect();
    assert_eq!(origins, ["config file", "admin API", "config file", "admin API"]);
    // Only the active guest is reported.
    let info = reqwest::blocking::get(host.admin_url("/admin/guest")).unwrap().json::<Value>().unwrap();
    assert_eq!(info["world"], "wasi:http/proxy");
    assert!(info["source"].as_str().unwrap().ends_with("/upload.wasm"), "{info}");
    assert_eq!(info["name"], "upload");
}

/// A plain config file (no ConfigMap links) edited in place is seen through
/// the directory watch; writes to a file kept open beside it (a SQLite
/// database in the same directory) do not wake the watch at all.
#[test]
fn the_directory_watch_sees_edits_in_place_and_ignores_writes_beside_the_config() {
    use std::io::Write;
    let dir = temp_dir("plainconfig");
    let path = dir.join("guest.toml");
    std::fs::write(&path, "guest = \"prime\"\n").unwrap();
    let mut cmd = serve_command_without_guest(&["--config-poll", "1h"]);
    cmd.arg("--config").arg(&path);
    let host = Host::start_command(cmd);
    wait_serving(&host, "prime");
    let events = || metric(&host, "scalelab_config_checks_total", &[("trigger", "event")]).unwrap();

    // Creating the neighbour is one event: wait until it has been counted.
    let initial = events();
    let mut neighbour = std::fs::File::create(dir.join("data.db")).unwrap();
    let give_up = Instant::now() + support::PATIENCE;
    while events() == initial {
        assert!(Instant::now() < give_up, "creating a file beside the config was never seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = events();
    for _ in 0..60 {
        neighbour.write_all(&[0u8; 512]).unwrap();
        neighbour.sync_data().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(events(), before, "writes to an open file beside the config woke the watch");

    // Truncate and rewrite, as an editor or `kubectl cp` does; no poll for an hour.
    std::fs::write(&path, "guest = \"fixture-wstd\"\n").unwrap();
    wait_serving(&host, "fixture-wstd");
    assert!(events() > before, "the edit was not seen as an event");
    assert_eq!(metric(&host, "scalelab_config_checks_total", &[("trigger", "poll")]), Some(1.0), "only the first tick polls");
    drop(neighbour);
}

#[test]
fn invalid_guests_are_rejected_and_the_old_guest_keeps_serving() {
    let mut map = ConfigMapDir::new("guest = \"prime\"\n");
    let host = start_with_config(&map, &[]);
    let rejected = |n: f64| {
        let give_up = Instant::now() + support::PATIENCE;
        while metric(&host, "scalelab_guest_swaps_total", &[("result", "rejected")]) != Some(n) {
            assert!(Instant::now() < give_up, "rejection {n} not counted");
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    map.update("guest = \"nosuch\"\n");
    rejected(1.0);
    map.update("guest = \n");
    rejected(2.0);
    let dir = temp_dir("not-wasm");
    std::fs::write(dir.join("text.wasm"), "hello").unwrap();
    let (status, body) = put_guest(&host, Some(TOKEN), dir.join("text.wasm").display().to_string());
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not a WebAssembly file"), "{body}");
    let (status, _) = put_guest(&host, Some(TOKEN), b"\0asm\x0d\0\x01\0garbage".to_vec());
    assert_eq!(status, 422);
    rejected(4.0);

    assert!(get_root(&host).1.starts_with("{\"prime\":"));
    assert_eq!(reqwest::blocking::get(host.admin_url("/readyz")).unwrap().status(), 200);
    let info = reqwest::blocking::get(host.admin_url("/admin/guest")).unwrap().json::<Value>().unwrap();
    assert_eq!(info["name"], "prime");
    let logs = host.logs();
    assert!(
        logs.iter().any(|l| l["step"] == "swap" && l["error"].as_str().is_some_and(|e| e.contains("no guest named \"nosuch\"")))
    );
    assert!(logs.iter().any(|l| l["step"] == "swap" && l["error"].as_str().is_some_and(|e| e.contains("guest.toml:1"))));
}

#[test]
fn the_admin_guest_route_needs_the_token() {
    let open = Host::start_command({
        let mut cmd = serve_command_without_guest(&[]);
        cmd.env("SCALELAB_GUEST", "prime");
        cmd
    });
    let info = reqwest::blocking::get(open.admin_url("/admin/guest")).unwrap().json::<Value>().unwrap();
    assert_eq!(info["name"], "prime");
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);
    assert!(info["since"].as_str().unwrap().ends_with("GMT"), "{info}");
    assert_eq!(put_guest(&open, Some(TOKEN), "fixture-wstd").0, 403);

    let dir = temp_dir("token");
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let guarded = Host::start_command({
        let mut cmd = serve_command_without_guest(&["--admin-token-file", dir.join("token").to_str().unwrap()]);
        cmd.env("SCALELAB_GUEST", "prime");
        cmd
    });
    assert_eq!(put_guest(&guarded, None, "fixture-wstd").0, 401);
    assert_eq!(put_guest(&guarded, Some("wrong"), "fixture-wstd").0, 401);
    assert_eq!(put_guest(&guarded, Some(&TOKEN[..4]), "fixture-wstd").0, 401);
    assert_eq!(put_guest(&guarded, Some(TOKEN), "fixture-wstd").0, 200);
    wait_serving(&guarded, "fixture-wstd");
}

#[test]
fn the_config_file_at_start_its_precedence_and_its_errors() {
    // The file picks the guest and its deadline.
    let mut map = ConfigMapDir::new("guest = \"fixture-wstd\"\ndeadline = \"300ms\"\n[env]\nA = \"1\"\n");
    let host = start_with_config(&map, &[]);
    wait_serving(&host, "fixture-wstd");
    assert_eq!(metric(&host, "scalelab_limit_deadline_seconds", &[]), Some(0.3));
    let config = host.wait_log(support::PATIENCE, |l| l["step"] == "config").unwrap();
    assert_eq!(config["guest_source"], "config file");
    assert_eq!(config["deadline_source"], "config file");
    assert_eq!(config["max_memory_source"], "default");
    // A deadline change in the file applies to the next requests.
    map.update("guest = \"prime\"\ndeadline = \"100ms\"\n");
    wait_serving(&host, "prime");
    let slow = reqwest::blocking::get(host.url("/prime/1000000")).unwrap();
    assert_eq!(slow.status(), 503);

    // A flag wins over the file.
    let map = ConfigMapDir::new("guest = \"fixture-wstd\"\ndeadline = \"300ms\"\n");
    let mut cmd = serve_command_without_guest(&["--guest", "prime"]);
    cmd.arg("--config").arg(map.path()).env("SCALELAB_DEADLINE", "2s");
    let host = Host::start_command(cmd);
    wait_serving(&host, "prime");
    assert_eq!(metric(&host, "scalelab_limit_deadline_seconds", &[]), Some(2.0));
    let config = host.wait_log(support::PATIENCE, |l| l["step"] == "config").unwrap();
    assert_eq!(config["guest_source"], "flag or environment");
    assert_eq!(config["deadline_source"], "flag or environment");

    // Errors stop start-up with exit status 2, naming file and line.
    let cases: [(&str, &str); 4] = [
        ("guest = \"prime\"\nspeed = 3\n", "guest.toml:2: unknown field `speed`"),
        ("guest = \"nosuch\"\n", "guest.toml:1: guest: no guest named"),
        ("guest = \"prime\"\nmax_memory = \"huge\"\n", "guest.toml:2: max_memory"),
        ("deadline = \"1s\"\n", "no guest to serve"),
    ];
    for (contents, needle) in cases {
        let map = ConfigMapDir::new(contents);
        let mut cmd = serve_command_without_guest(&[]);
        cmd.arg("--config").arg(map.path());
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{contents}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{contents}: {stderr}");
    }
    let out = serve_command_without_guest(&["--config", "/nonexistent/guest.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = Command::new("true").status();
}

/// Live sessions stay on the old guest until `--session-drain`, then close
/// with the reason `swapped`; what the guest keeps in host state survives.
#[test]
fn a_session_guest_swapped_with_live_sessions_drains_before_closing() {
    let mut map = ConfigMapDir::new("guest = \"broker\"\ntick_interval = \"300ms\"\n");
    // A drain long enough to watch heartbeats go on during it on any machine.
    let host = start_with_config(&map, &["--session-drain", "8s", "--config-poll", "100ms"]);
    let tcp = host.tcp();
    let mut swarm = support::swarm_command(
        tcp,
        &["--engines", "30", "--ramp", "1000/s", "--heartbeat", "100ms", "--duration", "10m", "--max-backoff", "200ms"],
    );
    let mut swarm = swarm.spawn().unwrap();
    let wait = |name: &str, labels: &[(&str, &str)], pred: &dyn Fn(f64) -> bool| {
        let give_up = Instant::now() + support::PATIENCE;
        loop {
            let value = metric(&host, name, labels);
            if value.is_some_and(pred) {
                return value.unwrap();
            }
            assert!(Instant::now() < give_up, "{name} stuck at {value:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("broker_registered_engines", &[], &|v| v == 30.0);

    let (status, body) = put_guest(&host, Some(TOKEN), "prime");
    assert_eq!(status, 200, "{body}");
    wait_serving(&host, "prime");

    // Inside the drain timeout the sessions live on the old guest: heartbeats
    // are accepted in sequence and nothing is closed.
    let beats = metric(&host, "broker_heartbeats_total", &[]).unwrap();
    wait("broker_heartbeats_total", &[], &|v| v >= beats + 30.0 * 3.0);
    assert_eq!(metric(&host, "scalelab_sessions_active", &[("transport", "tcp")]), Some(30.0));
    for reason in ["peer", "error", "guest", "swapped", "shutdown"] {
        assert_eq!(metric(&host, "scalelab_sessions_closed_total", &[("reason", reason)]), Some(0.0), "{reason}");
    }
    assert_eq!(metric(&host, "broker_sequence_errors_total", &[]), Some(0.0));

    // Then they are closed with the reason, and the old guest's `closed` ran
    // (the registrations are gone).
    wait("scalelab_sessions_closed_total", &[("reason", "swapped")], &|v| v == 30.0);
    wait("broker_registered_engines", &[], &|v| v == 0.0);
    // The engines keep trying; prime does not take sessions.
    wait("scalelab_sessions_refused_total", &[("reason", "not_a_session_guest")], &|v| v > 0.0);

    // Back to the broker through the ConfigMap: the engines register again,
    // and the counts the broker keeps in host state carry on.
    map.update("guest = \"broker\"\ntick_interval = \"300ms\"\n# again\n");
    wait("broker_registered_engines", &[], &|v| v == 30.0);
    let (_, root) = get_root(&host);
    assert_eq!(root, "Broker: 30 connections, 30 registered engines\n");
    let after = wait("broker_heartbeats_total", &[], &|v| v > beats + 30.0 * 10.0);
    assert!(after > beats);
    assert_eq!(metric(&host, "broker_sequence_errors_total", &[]), Some(0.0));
    assert_eq!(metric(&host, "scalelab_sessions_closed_total", &[("reason", "error")]), Some(0.0));
    let _ = swarm.kill();
    let _ = swarm.wait();
}

/// A swap while a session's `opened` call is still running: the session
/// was admitted on the old guest, so it drains like the others and closes
/// with the reason `swapped`, although it only starts listening for swaps
/// once `opened` has returned.
#[test]
fn a_session_still_opening_when_the_guest_is_swapped_drains_too() {
    use std::io::Read;
    const OPENING: &str = "10000";
    // `prime` compiled ahead into the cache the host uses (same deadline, so
    // the same code), so that the swap below takes a cache hit however slow
    // the machine, well within the time `opened` waits.
    let out = scalelab()
        .args(["compile", "--guest", "prime", "--deadline", "30s", "--guests-dir"])
        .arg(support::guests_dir())
        .arg("--cache-dir")
        .arg(support::shared_cache())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let map = ConfigMapDir::new("guest = \"fixture-session\"\n");
    // The deadline leaves `opened` its wait; the drain is short, as the
    // test waits for it.
    let host = start_with_config(&map, &["--session-drain", "500ms", "--deadline", "30s"]);
    let slow = reqwest::blocking::get(host.url(&format!("/slow-open?ms={OPENING}"))).unwrap();
    assert_eq!(slow.status().as_u16(), 200, "{:?}", slow.text());

    let mut peer = std::net::TcpStream::connect(host.tcp()).unwrap();
    let calls = |call: &str| {
        metric(&host, "scalelab_session_call_duration_seconds_count", &[("guest", "fixture-session"), ("call", call)])
    };
    let give_up = Instant::now() + support::PATIENCE;
    while metric(&host, "scalelab_sessions_active", &[("transport", "tcp")]) != Some(1.0) {
        assert!(Instant::now() < give_up, "the session never opened");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, body) = put_guest(&host, Some(TOKEN), "prime");
    assert_eq!(status, 200, "{body}");
    wait_serving(&host, "prime");
    assert_eq!(
        calls("opened").unwrap_or(0.0),
        0.0,
        "the swap took longer than `opened` waits ({OPENING} ms): this test did not swap during it"
    );

    // Once `opened` returns, the drain runs out and the host closes the
    // session; the old guest's `closed` hears why.
    peer.set_read_timeout(Some(support::PATIENCE)).unwrap();
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).expect("the session was never closed after the swap");
    assert_eq!(calls("opened"), Some(1.0));
    assert_eq!(metric(&host, "scalelab_sessions_closed_total", &[("reason", "swapped")]), Some(1.0));
    let closed = host.wait_log(support::PATIENCE, |l| {
        l["guest"] == "fixture-session" && l["message"].as_str().is_some_and(|m| m.starts_with("closed "))
    });
    let closed = closed.unwrap_or_else(|| panic!("the old guest's `closed` never logged; logs: {:#?}", host.logs()));
    assert!(closed["message"].as_str().unwrap().ends_with(": guest swapped"), "{closed}");
}
