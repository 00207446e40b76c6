//! `scalelab report` end to end against a prime host: a short staircase,
//! the autoscaler's view from an overlay, the JSON, and the HTML opened in a
//! real headless browser (Debian's chromium, which `cargo xtask test`
//! installs): every plot drawn, nothing fetched, a screenshot taken.

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

/// Runs `scalelab report` against `host`; its JSON.
fn report(host: &Host, dir: &Path, extra: &[&str]) -> serde_json::Value {
    let overlay = dir.join("overlay.yaml");
    std::fs::write(&overlay, OVERLAY).unwrap();
    let out = support::scalelab()
        .args(["report", &host.url("/prime/1000"), "--metrics-url", &host.admin_url("/metrics")])
        .arg("--overlay")
        .arg(&overlay)
        .args(["--step", "1s", "--warmup", "0s", "--out"])
        .arg(dir.join("prime"))
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    serde_json::from_str(&std::fs::read_to_string(dir.join("prime.json")).unwrap()).unwrap()
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
    assert!(projection["cpu_per_request"].as_f64().unwrap() > 0.0);
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
    let plots: Vec<&str> = dom.split("<svg").skip(1).collect();
    assert_eq!(plots.len(), 5, "throughput, latency, CPU, memory, replicas");
    for plot in &plots {
        let path = plot.split("<path d=\"").nth(1).unwrap_or_else(|| panic!("a plot without a line: {plot:.200}"));
        let d = path.split('"').next().unwrap();
        assert!(d.starts_with('M') && d.matches(['M', 'L']).count() >= 2, "an empty line: {d}");
    }
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
