//! `cargo xtask report <guest> [--quick]`: `scalelab report` on this
//! machine, set up like one pod with a 1-CPU limit: a release host pinned to
//! CPU 0 with `--workers 1`, the load (the report itself) pinned to CPU 1,
//! and the guest's overlay rendered (`kubectl kustomize`) for its
//! autoscaler. Writes `target/report/<guest>.html` and `.json`.

use crate::bench::{prepare, spawn_host};
use crate::manifests;
use crate::workspace::{self, Workspace};
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::process::Command;

/// The URL path each HTTP guest's report loads.
fn path_of(guest: &str) -> Result<&'static str> {
    Ok(match guest {
        "prime" => "/prime/1000",
        "httpbin" => "/uuid",
        "todo" => "/api/todos",
        "broker" | "tracker" => bail!(
            "{guest} is a session guest: `scalelab report` measures HTTP guests so far (a staircase of clients or engines is not built yet)"
        ),
        other => bail!("no report for {other:?}: prime, httpbin or todo"),
    })
}

pub fn run(ws: &Workspace, guest: &str, quick: bool) -> Result<()> {
    let path = path_of(guest)?;
    let report_dir = ws.target_dir.join("report");
    std::fs::create_dir_all(&report_dir)?;
    let overlay = report_dir.join(format!("{guest}.overlay.yaml"));
    std::fs::write(&overlay, manifests::render(ws, guest)?.yaml).context("writing the rendered overlay")?;

    let prepared = prepare(ws, &[])?;
    let scalelab = prepared.release.join("scalelab");
    let args: Vec<OsString> = ["--guest", guest, "--workers", "1"].iter().map(OsString::from).collect();
    let (host, _lines) = spawn_host("report", &scalelab, &prepared.guests_dir, &prepared.bench_dir.join("cache"), &args, false)?;
    // Every thread of the host on CPU 0 (threads made later inherit it).
    workspace::run(Command::new("taskset").args(["-a", "-p", "-c", "0", &host.pid().to_string()]))
        .context("pinning the host to CPU 0 (taskset)")?;
    let admin = host.admin.clone().context("no admin address")?;
    let (step, warmup) = if quick { ("3s", "1s") } else { ("10s", "3s") };
    let mut report = Command::new("taskset");
    report
        .args(["-c", "1"])
        .arg(&scalelab)
        .args(["report", &format!("{}{path}", host.url), "--metrics-url", &format!("{admin}/metrics"), "--overlay"])
        .arg(&overlay)
        .args(["--step", step, "--warmup", warmup, "--out"])
        .arg(report_dir.join(guest))
        .env_remove("RUST_BACKTRACE");
    workspace::run(&mut report).context("running scalelab report")?;
    drop(host);
    Ok(())
}
