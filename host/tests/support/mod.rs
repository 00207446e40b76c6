//! Test support: runs the real `scalelab` binary on loopback port 0, learns
//! the bound addresses from its JSON logs, and reads its metrics.
//!
//! Tests assert behaviour and order, never speed: machines of this kind
//! differ about 3x in speed, so the only clock is a generous timeout on a
//! wait (`PATIENCE`), and a client that must see something happen runs until
//! it has, then is stopped (`interrupt`), rather than for a fixed time.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod postgres;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where `cargo xtask build-guests` put the guests.
pub fn guests_dir() -> PathBuf {
    let dir = std::env::var_os("SCALELAB_TEST_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/guests"));
    assert!(
        ["prime", "fixture-wstd", "broker"].iter().all(|g| dir.join(format!("{g}.wasm")).is_file()),
        "no built guests in {}: run `cargo xtask test` (or `cargo xtask build-guests` first)",
        dir.display()
    );
    dir
}

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("scalelab-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The compile cache shared by the tests of one test binary (warm after the first start).
pub fn shared_cache() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| temp_dir("cache")).clone()
}

/// The `scalelab` binary, with no `SCALELAB_*` settings inherited from the
/// developer's environment.
pub fn scalelab() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scalelab"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SCALELAB_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Log lines of a running host, shared with the thread that reads them.
#[derive(Default)]
struct Logs {
    lines: Mutex<Vec<Value>>,
    changed: Condvar,
}

/// A running `scalelab serve`, killed when dropped.
pub struct Host {
    child: Child,
    pub traffic: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Logs>,
}

impl Host {
    /// Serves `guest` (a name in the guests dir) with `extra` flags and waits
    /// until it is ready.
    pub fn start(guest: &str, extra: &[&str]) -> Host {
        let host = Host::spawn(serve_command(guest, extra));
        host.wait_ready();
        host
    }

    /// Starts a prepared command and waits until it is ready.
    pub fn start_command(cmd: Command) -> Host {
        let host = Host::spawn(cmd);
        host.wait_ready();
        host
    }

    /// Starts a prepared command and waits only for both listeners.
    pub fn spawn(mut cmd: Command) -> Host {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("starting scalelab");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Logs::default());
        let reader_logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Guests may print plain text to stderr; keep it as a string.
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                reader_logs.lines.lock().unwrap().push(value);
                reader_logs.changed.notify_all();
            }
        });
        let mut host = Host { child, traffic: unbound(), admin: unbound(), logs };
        let addr = |host: &Host, role: &str| -> SocketAddr {
            let line = host
                .wait_log(Duration::from_secs(30), |l| l["step"] == "listen" && l["role"] == role)
                .unwrap_or_else(|| panic!("no {role} listener logged; logs: {:#?}", host.logs()));
            line["addr"].as_str().unwrap().parse().unwrap()
        };
        host.traffic = addr(&host, "traffic");
        host.admin = addr(&host, "admin");
        host
    }

    pub fn wait_ready(&self) {
        if self.wait_log(Duration::from_secs(60), |l| l["step"] == "ready").is_none() {
            panic!("host did not become ready; logs: {:#?}", self.logs());
        }
    }

    /// The raw TCP listener of session guests (waits for its log line).
    pub fn tcp(&self) -> SocketAddr {
        let line = self
            .wait_log(Duration::from_secs(30), |l| l["step"] == "listen" && l["role"] == "tcp")
            .unwrap_or_else(|| panic!("no tcp listener logged; logs: {:#?}", self.logs()));
        line["addr"].as_str().unwrap().parse().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.traffic)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The host's resident memory, from /proc.
    pub fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 =
            status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap();
        kb * 1024
    }

    pub fn logs(&self) -> Vec<Value> {
        self.logs.lines.lock().unwrap().clone()
    }

    /// Waits for a log line matching `pred`, up to `timeout`.
    pub fn wait_log(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let give_up = Instant::now() + timeout;
        let mut lines = self.logs.lines.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| pred(l)) {
                return Some(line.clone());
            }
            let now = Instant::now();
            if now >= give_up {
                return None;
            }
            lines = self.logs.changed.wait_timeout(lines, give_up - now).unwrap().0;
        }
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGINT`) to the host.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill failed: {}", std::io::Error::last_os_error());
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let give_up = Instant::now() + timeout;
        while Instant::now() < give_up {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The current `/metrics` exposition.
    pub async fn metrics(&self) -> Metrics {
        let text = reqwest::get(self.admin_url("/metrics")).await.unwrap().text().await.unwrap();
        Metrics(text)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unbound() -> SocketAddr {
    "0.0.0.0:0".parse().unwrap()
}

/// `scalelab serve` on loopback port 0 with JSON logs and the test guests,
/// compiling into this test binary's shared cache.
pub fn serve_command(guest: &str, extra: &[&str]) -> Command {
    serve_command_with_cache(guest, extra, &shared_cache())
}

/// [`serve_command`] with a compile cache of the test's own.
pub fn serve_command_with_cache(guest: &str, extra: &[&str], cache: &std::path::Path) -> Command {
    let mut cmd = scalelab();
    cmd.args(["--log-format", "json", "serve", "--guest", guest, "--guests-dir"])
        .arg(guests_dir())
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--cache-dir"])
        .arg(cache)
        .args(extra);
    if !extra.contains(&"--tcp-listen") {
        cmd.args(["--tcp-listen", "127.0.0.1:0"]);
    }
    cmd
}

/// Waits until the host's in-flight gauge reads `n`.
pub async fn wait_in_flight(host: &Host, n: u32) {
    wait_metric(host, "scalelab_http_requests_in_flight", &[], |v| v == f64::from(n)).await;
}

/// `scalelab serve` without `--guest` (it comes from `--config` or the environment).
pub fn serve_command_without_guest(extra: &[&str]) -> Command {
    let mut cmd = scalelab();
    cmd.args(["--log-format", "json", "serve", "--guests-dir"])
        .arg(guests_dir())
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0", "--cache-dir"])
        .arg(shared_cache())
        .args(extra);
    cmd
}

/// A mounted ConfigMap as Kubernetes lays it out: `guest.toml ->
/// ..data/guest.toml`, `..data -> ..<version>`; an update writes a new
/// version directory and renames a new `..data` link over the old one.
pub struct ConfigMapDir {
    pub dir: PathBuf,
    version: u32,
}

impl ConfigMapDir {
    pub fn new(contents: &str) -> ConfigMapDir {
        let mut map = ConfigMapDir { dir: temp_dir("configmap"), version: 0 };
        map.write_version(contents);
        std::os::unix::fs::symlink("..0", map.dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/guest.toml", map.dir.join("guest.toml")).unwrap();
        map
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("guest.toml")
    }

    fn write_version(&mut self, contents: &str) {
        let version_dir = self.dir.join(format!("..{}", self.version));
        std::fs::create_dir_all(&version_dir).unwrap();
        std::fs::write(version_dir.join("guest.toml"), contents).unwrap();
    }

    /// Replaces the contents the way the kubelet does.
    pub fn update(&mut self, contents: &str) {
        let old = self.dir.join(format!("..{}", self.version));
        self.version += 1;
        self.write_version(contents);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{}", self.version), &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        std::fs::remove_dir_all(old).unwrap();
    }
}

/// A Prometheus text exposition.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the series `name` whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let all = labels.iter().all(|(k, v)| series_labels.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
            if all { value.parse().ok() } else { None }
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.lines().any(|l| l.starts_with(name))
    }
}

/// Parses a JSON response body.
pub async fn json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// How long a wait may take before the test calls it a failure: far more
/// than anything takes on the slowest machine, so only a hang reaches it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `/metrics` until the series satisfies `pred`; returns its value.
pub async fn wait_metric(host: &Host, name: &str, labels: &[(&str, &str)], pred: impl Fn(f64) -> bool) -> f64 {
    let give_up = Instant::now() + PATIENCE;
    loop {
        let value = host.metrics().await.value(name, labels);
        match value {
            Some(v) if pred(v) => return v,
            _ if Instant::now() > give_up => panic!("{name} never reached the expected value; last {value:?}"),
            _ => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// `scalelab swarm engines` against `broker`, with a JSON summary and no metrics listener.
pub fn swarm_command(broker: SocketAddr, extra: &[&str]) -> Command {
    let mut cmd = scalelab();
    cmd.args(["--log-format", "json", "swarm", "engines", "--broker"])
        .arg(broker.to_string())
        .args(["--output", "json"])
        .args(extra);
    if !extra.contains(&"--metrics-listen") {
        cmd.args(["--metrics-listen", "off"]);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// `scalelab swarm sockets` against `url` with `extra` flags (JSON summary
/// on stdout, JSON logs on stderr, both piped; no metrics listener).
pub fn swarm_sockets_command(url: &str, extra: &[&str]) -> Command {
    let mut cmd = scalelab();
    cmd.args(["--log-format", "json", "swarm", "sockets", "--url", url])
        .args(["--metrics-listen", "off", "--output", "json"])
        .args(extra)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Raises this test process's open-file limit to its hard limit, for tests
/// that hold a thousand sockets or more (the soft limit may be 1024).
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// Sends SIGINT to a client (`scalelab load`, `scalelab swarm`): it stops
/// and still prints its report.
pub fn interrupt(child: &Child) {
    // SAFETY: kill(2) on our own child's pid, which has not been reaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "kill failed: {}", std::io::Error::last_os_error());
}

/// Waits for a swarm to finish and returns its summary.
pub fn swarm_summary(child: Child) -> Value {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "swarm failed: {}\n{}", stdout, String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {stdout}"))
}

/// Reads a running swarm's stderr (JSON logs) until its metrics listener is
/// logged, then keeps draining it in a thread; returns the address.
pub fn swarm_metrics_addr(child: &mut Child) -> SocketAddr {
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            let value: Value = serde_json::from_str(&line).ok()?;
            (value["step"] == "listen" && value["role"] == "metrics").then(|| value["addr"].as_str()?.parse().ok())?
        })
        .expect("the swarm logged its metrics listener");
    std::thread::spawn(move || for _ in lines {});
    addr
}

/// Where `cargo xtask test` installed the third-party socket.io clients.
pub fn clients_dir() -> PathBuf {
    let dir = std::env::var_os("SCALELAB_TEST_CLIENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/clients"));
    assert!(dir.join("node_modules/socket.io-client").is_dir(), "no clients in {}: run `cargo xtask test`", dir.display());
    dir
}

/// `SCHED_BATCH` in `/proc/<pid>/task/<tid>/stat` (field 41, `policy`).
pub const SCHED_BATCH: u32 = 3;

/// The scheduling policy of each thread of process `pid`, once its async
/// runtime has started (more than one thread).
pub async fn thread_policies(pid: u32) -> Vec<u32> {
    let give_up = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < give_up {
        let policies: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .filter_map(|task| {
                let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
                // Fields after the command name (which may hold spaces); `policy` is the 41st field.
                stat.rsplit_once(')')?.1.split_whitespace().nth(38)?.parse().ok()
            })
            .collect();
        if policies.len() >= 2 {
            return policies;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the swarm (pid {pid}) never started its runtime threads")
}
