//! `cargo xtask report <guest> [--quick]`: `scalelab report` on this
//! machine, set up like one pod with a 1-CPU limit: a release host pinned to
//! CPU 0 with `--workers 1`, the load (the report itself) pinned to CPU 1,
//! and the guest's overlay rendered (`kubectl kustomize`) for its
//! autoscaler. HTTP guests get a staircase of request rates, the tracker
//! one of socket.io clients, the broker one of engines heartbeating as the
//! overlay's `engines` Deployment says. Writes `target/report/<guest>.html`
//! and `.json`.

use crate::bench::{prepare, spawn_host};
use crate::manifests;
use crate::workspace::{self, Workspace};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::ffi::OsString;
use std::process::Command;

/// What a guest's report offers.
enum Load {
    /// Requests to this path of the traffic URL.
    Http(&'static str),
    /// socket.io clients of the traffic URL.
    Clients,
    /// Engines of the raw TCP listener.
    Engines,
}

fn load_of(guest: &str) -> Result<Load> {
    Ok(match guest {
        "prime" => Load::Http("/prime/1000"),
        "httpbin" => Load::Http("/uuid"),
        "todo" => Load::Http("/api/todos"),
        "tracker" => Load::Clients,
        "broker" => Load::Engines,
        other => bail!("no report for {other:?}: prime, httpbin, todo, tracker or broker"),
    })
}

/// The heartbeat interval the overlay's `engines` Deployment gives its swarm.
fn heartbeat_of(objects: &[Value]) -> Option<String> {
    let engines = objects.iter().find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "engines")?;
    let args = engines["spec"]["template"]["spec"]["containers"][0]["args"].as_array()?;
    args.iter().find_map(|a| a.as_str()?.strip_prefix("--heartbeat=").map(str::to_string))
}

pub fn run(ws: &Workspace, guest: &str, quick: bool) -> Result<()> {
    let load = load_of(guest)?;
    let report_dir = ws.target_dir.join("report");
    std::fs::create_dir_all(&report_dir)?;
    let overlay = report_dir.join(format!("{guest}.overlay.yaml"));
    let rendered = manifests::render(ws, guest)?;
    std::fs::write(&overlay, &rendered.yaml).context("writing the rendered overlay")?;

    let prepared = prepare(ws)?;
    let scalelab = prepared.release.join("scalelab");
    let args: Vec<OsString> = ["--guest", guest, "--workers", "1"].iter().map(OsString::from).collect();
    let (host, _lines) = spawn_host("report", &scalelab, &prepared.guests_dir, &prepared.bench_dir.join("cache"), &args, false)?;
    // Every thread of the host on CPU 0 (threads made later inherit it).
    workspace::run(Command::new("taskset").args(["-a", "-p", "-c", "0", &host.pid().to_string()]))
        .context("pinning the host to CPU 0 (taskset)")?;
    let admin = host.admin.clone().context("no admin address")?;
    let (step, warmup) = if quick { ("3s", "1s") } else { ("10s", "3s") };
    let (url, load_args): (String, Vec<String>) = match load {
        Load::Http(path) => (format!("{}{path}", host.url), Vec::new()),
        // 10 ms ticks: a p99 gap of 2.5 ticks is a client falling behind.
        Load::Clients => {
            let clients = if quick { "10,40,160,640" } else { "10,20,40,80,160,320,640" };
            let args = ["--clients", clients, "--slo-p99", "25ms", "--signal", "mx_server_fps_gauge"];
            (host.url.clone(), args.map(String::from).to_vec())
        }
        // Under the 20,000 descriptors a process may have here (host and report each hold one per engine).
        Load::Engines => {
            let engines = if quick { "500,2000,8000" } else { "500,1000,2000,4000,8000,16000" };
            let heartbeat = heartbeat_of(&rendered.objects).context("the broker overlay's engines have no --heartbeat=")?;
            let args = [
                "--engines",
                engines,
                "--heartbeat",
                &heartbeat,
                "--signal",
                "broker_registered_engines",
                "--signal",
                "broker_heartbeats_total",
            ];
            (host.tcp.clone().context("no tcp address logged")?, args.map(String::from).to_vec())
        }
    };
    let mut report = Command::new("taskset");
    report
        .args(["-c", "1"])
        .arg(&scalelab)
        .args(["report", &url, "--metrics-url", &format!("{admin}/metrics"), "--overlay"])
        .arg(&overlay)
        .args(["--step", step, "--warmup", warmup, "--out"])
        .arg(report_dir.join(guest))
        .args(load_args)
        .env_remove("RUST_BACKTRACE");
    workspace::run(&mut report).context("running scalelab report")?;
    drop(host);
    Ok(())
}
