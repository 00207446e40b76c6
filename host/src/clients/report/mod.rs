//! `scalelab report`: answers "does it scale?" for a guest. It offers a
//! staircase of load (`staircase.rs`): open-model HTTP requests at rising
//! rates (`http.rs`), or socket.io clients (`sockets.rs`) or broker engines
//! (`engines.rs`) held in rising numbers; each step is held long enough to
//! be steady after a warm-up. It reads the target's CPU, RSS and the
//! guest's own signals from its `/metrics` around each step (`target.rs`),
//! stops one step past the knee, projects what the overlay's autoscaler
//! does with the measured costs (`projection.rs`), optionally records the
//! cluster's HPA and Deployment meanwhile (`kube.rs`), and writes the result
//! as JSON and as one self-contained HTML page with inline SVG plots
//! (`page.rs`, `chart.rs`).

mod chart;
mod engines;
mod http;
mod kube;
mod page;
mod projection;
mod sockets;
mod staircase;
mod target;

use crate::cli::ReportArgs;
use anyhow::{Context, Result, bail};
use autoscale::Policy;
use engines::EnginesLoad;
use http::HttpLoad;
use projection::Projection;
use serde::Serialize;
use serde_json::Value;
use sockets::SocketsLoad;
use staircase::{Kind, Measured, Step};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use target::Target;
use tokio::sync::watch;

/// Everything the report found; the JSON file and what the page shows.
#[derive(Debug, Serialize)]
pub struct ReportData {
    pub url: String,
    /// What the staircase offered: `http`, `sockets` or `engines`.
    pub kind: Kind,
    /// The unit of its levels (`requests/s`, `clients`, `engines`).
    pub unit: &'static str,
    /// What the latency percentiles measure.
    pub latency: &'static str,
    /// When the report was made (RFC 3339).
    pub generated: String,
    pub slo_p99_ms: f64,
    pub step_seconds: f64,
    pub steps: Vec<Step>,
    /// Index of the highest step within the SLO.
    pub knee: Option<usize>,
    pub projection: Option<Projection>,
    /// The cluster's HPA and Deployment while the staircase ran (`--kube`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<kube::Reading>>,
    /// The answer in words.
    pub verdict: String,
}

/// The files a report was written to.
pub struct Written {
    pub html: PathBuf,
    pub json: PathBuf,
}

/// The load of one report.
enum Load {
    Http(Box<HttpLoad>),
    Sockets(SocketsLoad),
    Engines(EnginesLoad),
}

impl Load {
    /// The load the arguments ask for, its kind and its levels.
    fn new(args: &ReportArgs) -> Result<(Load, Kind, Vec<f64>)> {
        let levels = |list: &[u32]| list.iter().map(|&n| f64::from(n)).collect::<Vec<f64>>();
        Ok(match (&args.clients, &args.engines) {
            (Some(clients), _) => (Load::Sockets(SocketsLoad::new(&args.url)), Kind::Sockets, levels(clients)),
            (_, Some(engines)) => (Load::Engines(EnginesLoad::new(&args.url, args.heartbeat)?), Kind::Engines, levels(engines)),
            _ => (Load::Http(Box::new(HttpLoad::new(&args.url, args.timeout)?)), Kind::Http, args.rates.clone()),
        })
    }

    async fn warm_up(&mut self, level: f64, warmup: Duration) {
        match self {
            Load::Http(load) => load.warm_up(level, warmup).await,
            Load::Sockets(load) => load.warm_up(level, warmup).await,
            Load::Engines(load) => load.warm_up(level, warmup).await,
        }
    }

    async fn measure(&mut self, level: f64, duration: Duration) -> Measured {
        match self {
            Load::Http(load) => load.measure(level, duration).await,
            Load::Sockets(load) => load.measure(level, duration).await,
            Load::Engines(load) => load.measure(level, duration).await,
        }
    }

    /// Ends the sessions a session load holds.
    async fn finish(self) {
        match self {
            Load::Http(_) => {}
            Load::Sockets(load) => load.finish().await,
            Load::Engines(load) => load.finish().await,
        }
    }
}

pub async fn run(args: ReportArgs) -> Result<Written> {
    let (mut load, kind, levels) = Load::new(&args)?;
    if levels.is_empty() || levels.iter().any(|l| !(*l > 0.0 && l.is_finite())) {
        bail!("no staircase to run: give positive levels (--rates, --clients or --engines)");
    }
    let (objects, policy) = match &args.overlay {
        Some(path) => read_overlay(path)?,
        None => (Vec::new(), None),
    };
    let mut signals = args.signals.clone();
    signals.extend(policy.iter().flat_map(|p| p.metrics.iter().filter_map(|m| m.followed())));
    signals.sort();
    signals.dedup();
    let target = Target::new(&args.metrics_url, signals)?;
    target.sample().await.context("the target's metrics before the first step")?;
    let cluster = match args.kube {
        true => Some(connect_cluster(&args, &objects, policy.as_ref()).await?),
        false => None,
    };
    let slo = args.slo_p99.as_secs_f64() * 1e3;

    let started = Instant::now();
    let (offered, offered_now) = watch::channel(0.0);
    let recorder = cluster.map(|c| c.record(args.kube_interval, offered_now, started));
    let steps = climb(&mut load, &target, kind, &levels, &args, &offered).await?;
    let _ = offered.send(0.0);
    load.finish().await;
    let timeline = match recorder {
        Some(recorder) => Some(recorder.finish().await),
        None => None,
    };

    let knee = staircase::knee(&steps, slo);
    let projection = policy.as_ref().map(|p| projection::project(p, &steps, knee, kind));
    let verdict = conclude(&args, kind, &steps, knee, projection.as_ref(), &objects, policy.as_ref());
    let data = ReportData {
        url: args.url.clone(),
        kind,
        unit: kind.unit(),
        latency: kind.latency(),
        generated: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        slo_p99_ms: slo,
        step_seconds: args.step.as_secs_f64(),
        steps,
        knee,
        projection,
        timeline,
        verdict,
    };
    println!("{}", data.verdict);
    write(&data, &args.out)
}

/// Runs the staircase: each level warmed up, then measured between two
/// readings of the target, until a step misses the SLO. `offered` follows
/// the level (for the cluster's timeline).
async fn climb(
    load: &mut Load,
    target: &Target,
    kind: Kind,
    levels: &[f64],
    args: &ReportArgs,
    offered: &watch::Sender<f64>,
) -> Result<Vec<Step>> {
    let slo = args.slo_p99.as_secs_f64() * 1e3;
    let mut steps = Vec::new();
    eprintln!(
        "{:>10} {:>10} {:>9} {:>9} {:>7} {:>7} {:>8}   ({}; latency: {})",
        "offered",
        "achieved",
        "p50 ms",
        "p99 ms",
        "errors",
        "cores",
        "RSS MB",
        kind.unit(),
        kind.latency()
    );
    for &level in levels {
        let _ = offered.send(level);
        load.warm_up(level, args.warmup).await;
        let before = target.sample().await?;
        let measured = load.measure(level, args.step).await;
        let after = target.sample().await?;
        let step = Step::new(level, measured, before.cores_until(&after), after.rss_bytes, before.signals_until(&after));
        eprintln!(
            "{:>10.0} {:>10.1} {:>9.2} {:>9.2} {:>6.2}% {:>7.3} {:>8.1}",
            step.offered,
            step.load.achieved,
            step.load.p50_ms,
            step.load.p99_ms,
            step.load.error_rate * 100.0,
            step.cpu_cores,
            step.rss_bytes / 1e6
        );
        steps.push(step);
        if staircase::done(&steps, slo) {
            break;
        }
    }
    Ok(steps)
}

/// The verdict in words: the knee, each target judged, what the CPU
/// request holds, memory per session, and a missing autoscaler.
fn conclude(
    args: &ReportArgs,
    kind: Kind,
    steps: &[Step],
    knee: Option<usize>,
    projection: Option<&Projection>,
    objects: &[Value],
    policy: Option<&Policy>,
) -> String {
    let slo = args.slo_p99.as_secs_f64() * 1e3;
    let mut lines = vec![verdict(&args.url, kind, steps, knee, slo, projection)];
    let deployment = policy.map_or("scalelab", |p| &p.deployment);
    let cpu_request = autoscale::container_resources(objects, deployment, "requests", "cpu");
    let memory_limit = autoscale::container_resources(objects, deployment, "limits", "memory");
    lines.extend(request_line(kind, steps, knee, cpu_request));
    lines.extend(memory_line(kind, steps, knee, memory_limit));
    if args.overlay.is_some() && policy.is_none() {
        lines.push("The overlay has no autoscaler: its Deployment keeps the replicas it sets.".into());
    }
    lines.join("\n")
}

/// A rendered overlay (`kubectl kustomize` output): its objects and its autoscaler.
fn read_overlay(path: &Path) -> Result<(Vec<Value>, Option<Policy>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the overlay {}", path.display()))?;
    let objects: Vec<Value> =
        serde_saphyr::from_multiple(&text).with_context(|| format!("{} is not YAML objects", path.display()))?;
    let objects: Vec<Value> = objects.into_iter().filter(|o| !o.is_null()).collect();
    let policy = Policy::from_objects(&objects).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if policy.is_none() {
        tracing::warn!(overlay = %path.display(), "the overlay has no autoscaler: no projection");
    }
    Ok((objects, policy))
}

/// `--kube`: the HPA (KEDA's own for a ScaledObject) and Deployment the
/// overlay names, unless the flags name others.
async fn connect_cluster(args: &ReportArgs, objects: &[Value], policy: Option<&Policy>) -> Result<kube::Cluster> {
    let autoscaler = policy.and_then(|p| p.source.split_once('/'));
    let hpa = match (&args.hpa, autoscaler) {
        (Some(hpa), _) => hpa.clone(),
        (None, Some(("ScaledObject", name))) => format!("keda-hpa-{name}"),
        (None, Some((_, name))) => name.to_string(),
        (None, None) => "scalelab".into(),
    };
    let deployment =
        args.deployment.clone().or_else(|| policy.map(|p| p.deployment.clone())).unwrap_or_else(|| "scalelab".into());
    let namespace = args.namespace.clone().or_else(|| {
        let kind = autoscaler.map(|(kind, _)| kind)?;
        objects.iter().find(|o| o["kind"] == kind)?["metadata"]["namespace"].as_str().map(str::to_string)
    });
    kube::Cluster::connect(namespace.as_deref(), &hpa, &deployment).await
}

/// What one pod takes when it gets only its CPU request (a busy node gives
/// no more), from the CPU line of the steps within the SLO.
fn request_line(kind: Kind, steps: &[Step], knee: Option<usize>, request: Option<f64>) -> Option<String> {
    let request = request?;
    let within = knee.map_or(steps, |k| &steps[..=k]);
    let (per_unit, idle) = projection::fit(within, |s| Some(s.cpu_cores))?;
    let load = ((request - idle) / per_unit).max(0.0);
    let top = within.last()?.load.achieved;
    let within_measured = if load <= top { "" } else { " (beyond the steps within the SLO: extrapolated)" };
    Some(format!(
        "With only its CPU request ({request} cores, all a busy node guarantees), one pod takes about {load:.0} {}{within_measured}, at the CPU each costs above.",
        kind.unit()
    ))
}

/// Session loads: memory per session, and where the pod's memory limit is reached.
fn memory_line(kind: Kind, steps: &[Step], knee: Option<usize>, limit: Option<f64>) -> Option<String> {
    if kind == Kind::Http || steps.is_empty() {
        return None;
    }
    let within = knee.map_or(steps, |k| &steps[..=k]);
    let Some((per_unit, base)) = projection::fit(within, |s| Some(s.rss_bytes)) else {
        let peak = within.iter().map(|s| s.rss_bytes).fold(0.0, f64::max);
        return Some(format!("Memory: about {:.0} MB whatever the {} held.", peak / 1e6, kind.unit()));
    };
    let noun = kind.unit().trim_end_matches('s');
    let mut line = format!("Memory: {:.0} MB plus {:.1} KB per {noun}", base / 1e6, per_unit / 1e3);
    match limit {
        Some(limit) => line.push_str(&format!(
            "; the pod's {:.0} MiB limit is reached near {:.0} {}.",
            limit / 1048576.0,
            ((limit - base) / per_unit).max(0.0),
            kind.unit()
        )),
        None => line.push('.'),
    }
    Some(line)
}

fn verdict(url: &str, kind: Kind, steps: &[Step], knee: Option<usize>, slo: f64, projection: Option<&Projection>) -> String {
    let (unit, latency) = (kind.unit(), kind.latency());
    let verb = if kind == Kind::Http { "serves" } else { "holds" };
    let mut lines = Vec::new();
    match knee {
        Some(k) => {
            let s = &steps[k];
            let mut line = format!(
                "One pod {verb} up to {:.0} {unit} of {url} within the SLO (p99 {latency} {:.1} ms, at most {slo:.0} ms; {:.2}% errors), using {:.2} cores.",
                s.load.achieved,
                s.load.p99_ms,
                s.load.error_rate * 100.0,
                s.cpu_cores
            );
            if let Some(next) = steps.get(k + 1) {
                line.push_str(&format!(
                    " At {:.0} {unit} it misses it: p99 {:.1} ms, {:.2}% errors, {:.1} {}.",
                    next.offered,
                    next.load.p99_ms,
                    next.load.error_rate * 100.0,
                    next.load.achieved,
                    kind.achieved()
                ));
            } else {
                line.push_str(" The last step offered still met it: the knee is higher than the staircase went.");
            }
            lines.push(line);
        }
        None => lines.push(match steps.first() {
            Some(s) => format!(
                "No step met the SLO (p99 {latency} at most {slo:.0} ms, under 0.1% errors): at {:.0} {unit} p99 was already {:.1} ms with {:.2}% errors.",
                s.offered,
                s.load.p99_ms,
                s.load.error_rate * 100.0
            ),
            None => "No step ran.".into(),
        }),
    }
    if let Some(p) = projection {
        for target in &p.targets {
            let verdict = target.verdict.as_deref().unwrap_or("not judged");
            lines.push(format!("{} ({}): {verdict}: {}.", p.source, target.metric, target.note));
        }
    }
    lines.join("\n")
}

fn write(data: &ReportData, out: &Path) -> Result<Written> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let html = out.with_extension("html");
    let json = out.with_extension("json");
    std::fs::write(&json, serde_json::to_string_pretty(data)?).with_context(|| format!("writing {}", json.display()))?;
    std::fs::write(&html, page::render(data)).with_context(|| format!("writing {}", html.display()))?;
    eprintln!("wrote {} and {}", html.display(), json.display());
    Ok(Written { html, json })
}
