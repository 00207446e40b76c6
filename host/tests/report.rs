//! `scalelab report` end to end: against a prime host, a short staircase,
//! the autoscaler's view from an overlay, the JSON, and the HTML opened in a
//! real headless browser (Debian's chromium, which `cargo xtask test`
//! installs): every plot drawn, nothing fetched, a screenshot taken. Then
//! the session staircases (socket.io clients on the tracker, engines on the
//! broker) with the guests' own signals, and `--kube` against the stand-in
//! API server.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::Host;

/// A rendered overlay as `kubectl kustomize` prints it: the Deployment's
/// CPU request and an HPA on CPU (the prime overlay's shape).
const OVERLAY: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: scalelab
spec:
  template:
    spec:
      containers:
        - name: scalelab
          resources:
            requests:
              cpu: 250m
              memory: 128Mi
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: scalelab
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: scalelab
  minReplicas: 1
  maxReplicas: 10
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 50
";

fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/report/test").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `scalelab report` against `host`'s prime; its JSON.
fn report(host: &Host, dir: &Path, extra: &[&str]) -> serde_json::Value {
    let overlay = dir.join("overlay.yaml");
    std::fs::write(&overlay, OVERLAY).unwrap();
    let overlay = overlay.to_str().unwrap().to_string();
    run_report(&host.url("/prime/1000"), host, dir, "prime", &[&["--overlay", &overlay], extra].concat())
}

/// Runs `scalelab report URL` with `host`'s metrics, writing `dir/name.*`; its JSON.
fn run_report(url: &str, host: &Host, dir: &Path, name: &str, extra: &[&str]) -> serde_json::Value {
    let out = report_command(url, host, dir, name, extra).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap()
}

fn report_command(url: &str, host: &Host, dir: &Path, name: &str, extra: &[&str]) -> Command {
    let mut cmd = support::scalelab();
    cmd.args(["report", url, "--metrics-url", &host.admin_url("/metrics")])
        .args(["--step", "1s", "--warmup", "0s", "--out"])
        .arg(dir.join(name))
        .args(extra);
    cmd
}

/// The plots of a page, each checked to have a line with at least two points.
fn plots(html: &str) -> usize {
    let plots: Vec<&str> = html.split("<svg").skip(1).collect();
    for plot in &plots {
        let path = plot.split("<path d=\"").nth(1).unwrap_or_else(|| panic!("a plot without a line: {plot:.200}"));
        let d = path.split('"').next().unwrap();
        assert!(d.starts_with('M') && d.matches(['M', 'L']).count() >= 2, "an empty line: {d}");
    }
    plots.len()
}

#[test]
fn a_short_report_measures_each_step_projects_the_hpa_and_draws_every_plot_in_a_browser() {
    let host = Host::start("prime", &[]);
    let dir = out_dir("staircase");
    let data = report(&host, &dir, &["--rates", "20,40,80", "--slo-p99", "5s"]);

    // Every step sent its rate for its second (the open model's count does
    // not depend on the machine's speed), all answered; all met the generous SLO.
    let steps = data["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{data:#}");
    for (step, offered) in steps.iter().zip([20u64, 40, 80]) {
        assert_eq!(step["offered"], offered as f64);
        assert_eq!(step["requests"], offered, "{step}");
        assert!(step["achieved"].as_f64().unwrap() > 0.0, "{step}");
        assert_eq!(step["error_rate"], 0.0);
        assert!(step["rss_bytes"].as_f64().unwrap() > 1e6, "{step}");
    }
    // CPU is read to the clock tick (10 ms): the busiest step shows some.
    assert!(steps[2]["cpu_cores"].as_f64().unwrap() > 0.0, "{:#}", steps[2]);
    assert_eq!(data["knee"], 2);
    // The HPA as the overlay says, judged against the measured knee.
    let projection = &data["projection"];
    assert_eq!(projection["source"], "HorizontalPodAutoscaler/scalelab");
    assert_eq!((projection["min_replicas"].as_u64(), projection["max_replicas"].as_u64()), (Some(1), Some(10)));
    assert!(projection["cpu_per_unit"].as_f64().unwrap() > 0.0);
    let target = &projection["targets"][0];
    assert_eq!(target["metric"], "cpu 50% of 0.25 cores");
    assert!(["safe", "wasteful", "too late"].contains(&target["verdict"].as_str().unwrap()), "{target}");
    let rows = projection["rows"].as_array().unwrap();
    assert!(rows.iter().all(|r| (1..=10).contains(&r["replicas"].as_u64().unwrap())));
    assert_eq!(rows.first().unwrap()["replicas"], 1, "no load, the minimum");
    let verdict = data["verdict"].as_str().unwrap();
    assert!(verdict.starts_with("One pod serves up to "), "{verdict}");

    // The page: self-contained, and every plot drawn as the browser sees it.
    let html = std::fs::read_to_string(dir.join("prime.html")).unwrap();
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("<link"), "the page fetches nothing");
    let browser = Browser::find();
    let dom = browser.dom(&dir.join("prime.html"));
    assert_eq!(plots(&dom), 5, "throughput, latency, CPU, memory, replicas");
    let screenshot = dir.join("prime.png");
    let console = browser.screenshot(&dir.join("prime.html"), &screenshot);
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000, "a screenshot of the page");
    assert!(!console.iter().any(|l| l.contains("CONSOLE")), "console messages: {console:?}");
}

#[test]
fn a_service_that_misses_the_slo_at_once_gets_a_report_saying_so() {
    let host = Host::start("prime", &[]);
    let dir = out_dir("no-knee");
    // No request is answered within 1 µs: the first step misses the SLO and the staircase stops.
    let data = report(&host, &dir, &["--rates", "20,40", "--slo-p99", "1us"]);
    assert_eq!(data["steps"].as_array().unwrap().len(), 1);
    assert!(data["knee"].is_null());
    assert!(data["verdict"].as_str().unwrap().starts_with("No step met the SLO"), "{}", data["verdict"]);
    assert!(data["projection"]["targets"][0]["verdict"].is_null(), "nothing to judge against");
}

/// The tracker overlay's shape: KEDA on the guest's connection gauge, 10 per pod.
const KEDA_OVERLAY: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: scalelab
  namespace: scalelab
spec:
  template:
    spec:
      containers:
        - name: scalelab
          resources:
            requests:
              cpu: 250m
              memory: 128Mi
            limits:
              cpu: \"1\"
              memory: 512Mi
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: scalelab
  namespace: scalelab
spec:
  scaleTargetRef:
    name: scalelab
  minReplicaCount: 1
  maxReplicaCount: 15
  triggers:
    - type: prometheus
      metadata:
        query: sum(mx_server_active_conn_gauge{namespace=\"scalelab\"})
        threshold: \"10\"
";

#[test]
fn a_socketio_staircase_holds_clients_times_their_ticks_and_projects_keda_on_the_guests_gauge() {
    let host = Host::start("tracker", &[]);
    let dir = out_dir("tracker");
    let overlay = dir.join("overlay.yaml");
    std::fs::write(&overlay, KEDA_OVERLAY).unwrap();
    let extra =
        ["--clients", "5,10", "--signal", "mx_server_fps_gauge", "--slo-p99", "5s", "--overlay", overlay.to_str().unwrap()];
    let data = run_report(&host.url(""), &host, &dir, "tracker", &extra);
    assert_eq!((data["kind"].as_str(), data["unit"].as_str()), (Some("sockets"), Some("clients")));
    let steps = data["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{data:#}");
    for (step, clients) in steps.iter().zip([5.0, 10.0]) {
        assert_eq!(step["offered"], clients);
        assert_eq!(step["achieved"], clients, "every client held: {step}");
        assert_eq!(step["error_rate"], 0.0);
        // The gap between ticks is measured (10 ms ticks: well over a microsecond).
        assert!(step["p50_ms"].as_f64().unwrap() > 1.0, "{step}");
        assert!(step["requests"].as_u64().unwrap() > 0 && step["events_per_s"].as_f64().unwrap() > 0.0, "{step}");
        // The guest's own signals: its connection gauge counts exactly the clients held,
        // and the KEDA query's metric is recorded without being asked for.
        assert_eq!(step["signals"]["mx_server_active_conn_gauge"], clients, "{step}");
        assert!(step["signals"]["mx_server_fps_gauge"].as_f64().is_some(), "{step}");
    }
    // KEDA: 10 clients per pod, from the gauge's line over the clients.
    let projection = &data["projection"];
    assert_eq!(projection["source"], "ScaledObject/scalelab");
    let target = &projection["targets"][0];
    assert!((target["load_at_target"].as_f64().unwrap() - 10.0).abs() < 0.01, "{target}");
    let replicas = |clients: f64| {
        projection["rows"].as_array().unwrap().iter().find(|r| r["offered"] == clients).unwrap()["replicas"].as_u64()
    };
    assert_eq!((replicas(5.0), replicas(10.0)), (Some(1), Some(1)));
    assert!(projection["rows"].as_array().unwrap().iter().any(|r| r["replicas"].as_u64() > Some(1)), "{projection:#}");
    let verdict = data["verdict"].as_str().unwrap();
    assert!(verdict.starts_with("One pod holds up to 10 clients"), "{verdict}");
    assert!(verdict.contains("Memory:"), "{verdict}");
    let html = std::fs::read_to_string(dir.join("tracker.html")).unwrap();
    // Throughput, latency, CPU, memory, events, the two signals, replicas.
    assert_eq!(plots(&html), 8);
}

#[test]
fn an_engine_staircase_holds_engines_times_their_registrations_and_reads_the_brokers_gauge() {
    let host = Host::start("broker", &[]);
    let broker = host.tcp().to_string();
    let dir = out_dir("broker");
    let extra = [
        "--engines",
        "20,40",
        "--heartbeat",
        "200ms",
        "--signal",
        "broker_registered_engines",
        "--signal",
        "broker_heartbeats_total",
    ];
    let data = run_report(&broker, &host, &dir, "broker", &extra);
    assert_eq!(data["kind"], "engines");
    let steps = data["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{data:#}");
    for (step, engines) in steps.iter().zip([20.0, 40.0]) {
        assert_eq!(step["achieved"], engines, "{step}");
        assert_eq!(step["error_rate"], 0.0, "{step}");
        assert_eq!(step["signals"]["broker_registered_engines"], engines, "the broker's own count: {step}");
        // Registration takes some time (the histogram once clamped every latency to 2 µs).
        assert!(step["p50_ms"].as_f64().unwrap() > 0.005, "{step}");
        // Heartbeats every 200 ms: the broker counts them (a counter, as a rate).
        assert!(step["signals"]["broker_heartbeats_total"].as_f64().unwrap() > 0.0, "{step}");
        assert!(step["events_per_s"].as_f64().unwrap() > 0.0, "{step}");
    }
    assert!(data["projection"].is_null(), "no overlay, no projection");
}

#[test]
fn with_kube_the_report_records_the_hpa_and_the_deployment_against_the_load() {
    let api = kube_stand_in::ApiServer::start();
    api.scale_out("scalelab", 4);
    let kubeconfig = api.write_kubeconfig("config");
    let host = Host::start("prime", &[]);
    let dir = out_dir("kube");
    let overlay = dir.join("overlay.yaml");
    std::fs::write(&overlay, OVERLAY).unwrap();
    let extra =
        ["--overlay", overlay.to_str().unwrap(), "--rates", "20,40,80", "--slo-p99", "5s", "--kube", "--kube-interval", "200ms"];
    let out =
        report_command(&host.url("/prime/1"), &host, &dir, "prime", &extra).env("KUBECONFIG", &kubeconfig).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("prime.json")).unwrap()).unwrap();
    let timeline = data["timeline"].as_array().unwrap();
    // About 15 readings in 3 s of steps; 3 leave room for a slow machine.
    assert!(timeline.len() >= 3, "readings every 200 ms over 3 s of steps: {timeline:#?}");
    assert!(api.hpa_reads() > timeline.len() as i64, "one read to check, then one per reading");
    // Each reading is what the stand-in said then, next to the load offered then.
    let desired: Vec<u64> = timeline.iter().map(|r| r["desired_replicas"].as_u64().unwrap()).collect();
    assert!(desired.windows(2).all(|w| w[0] <= w[1]) && desired.last() > desired.first(), "{desired:?}");
    assert!(desired.iter().all(|&d| (1..=4).contains(&d)), "within the stand-in's 1..4: {desired:?}");
    for r in timeline {
        assert!(r["current_replicas"].as_u64() <= r["desired_replicas"].as_u64(), "{r}");
        assert!(r["ready_replicas"].as_u64() <= r["current_replicas"].as_u64(), "{r}");
        assert!(r["metrics"]["cpu"].as_f64().unwrap() >= 40.0 && r["metrics"]["s0-prometheus"].as_f64().is_some(), "{r}");
        assert!([20.0, 40.0, 80.0].contains(&r["offered"].as_f64().unwrap()), "read during a step: {r}");
    }
    let offered: Vec<f64> = timeline.iter().map(|r| r["offered"].as_f64().unwrap()).collect();
    assert!(offered.contains(&20.0) && offered.contains(&80.0), "{offered:?}");
    // The page plots it: the 5 plots of a report, then load, replicas and
    // metrics over time, drawn as the browser sees them.
    let html = std::fs::read_to_string(dir.join("prime.html")).unwrap();
    assert!(html.contains("The cluster: replicas"));
    assert_eq!(plots(&Browser::find().dom(&dir.join("prime.html"))), 8);

    // A name the cluster does not have fails before the staircase, naming it.
    let out = report_command(&host.url("/prime/1"), &host, &dir, "missing", &[&extra[..], &["--hpa", "nope"]].concat())
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("HorizontalPodAutoscaler demo/nope"), "{stderr}");
    assert!(!dir.join("missing.json").exists());
}

/// Debian's chromium, headless.
struct Browser(PathBuf);

impl Browser {
    fn find() -> Browser {
        let path = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("no chromium: `cargo xtask test` installs Debian's chromium");
        Browser(path)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.0);
        // No sandbox: tests may run as root; no GPU here.
        cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1360,1000"]);
        cmd
    }

    /// The page's DOM once loaded.
    fn dom(&self, page: &Path) -> String {
        let out = self.command().arg("--dump-dom").arg(format!("file://{}", page.display())).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Takes a screenshot; the browser's log lines (console messages show as `CONSOLE`).
    fn screenshot(&self, page: &Path, png: &Path) -> Vec<String> {
        let out = self
            .command()
            .args(["--enable-logging=stderr", "--v=0"])
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).lines().map(str::to_string).collect()
    }
}
