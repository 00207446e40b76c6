//! `scalelab report`: answers "does it scale?" for an HTTP guest. It offers
//! a staircase of open-model load (`staircase.rs`), each step held long
//! enough to be steady after a warm-up, reads the target's CPU and RSS from
//! its `/metrics` around each step (`target.rs`), stops one step past the
//! knee, projects what the overlay's autoscaler does with the measured cost
//! (`projection.rs`), and writes the result as JSON and as one
//! self-contained HTML page with inline SVG plots (`page.rs`, `chart.rs`).

mod chart;
mod page;
mod projection;
mod staircase;
mod target;

use crate::cli::ReportArgs;
use crate::clients::load::client::Client;
use crate::clients::load::plan::{Plan, Template};
use crate::clients::load::run_at_rate;
use anyhow::{Context, Result, bail};
use autoscale::Policy;
use bytes::Bytes;
use projection::Projection;
use serde::Serialize;
use staircase::Step;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use target::Target;

/// Requests a step may have waiting at once (the open model's cap).
const MAX_OUTSTANDING: u32 = 10_000;

/// Everything the report found; the JSON file and what the page shows.
#[derive(Debug, Serialize)]
pub struct ReportData {
    pub url: String,
    /// When the report was made (RFC 3339).
    pub generated: String,
    pub slo_p99_ms: f64,
    pub step_seconds: f64,
    pub steps: Vec<Step>,
    /// Index of the highest step within the SLO.
    pub knee: Option<usize>,
    pub projection: Option<Projection>,
    /// The answer in words.
    pub verdict: String,
}

/// The files a report was written to.
pub struct Written {
    pub html: PathBuf,
    pub json: PathBuf,
}

pub async fn run(args: ReportArgs) -> Result<Written> {
    if args.rates.is_empty() {
        bail!("no step to run: give --rates");
    }
    let policy = match &args.overlay {
        Some(path) => read_policy(path)?,
        None => None,
    };
    let template = Template::new("GET", &args.url, &[], Bytes::new(), 1).map_err(anyhow::Error::msg)?;
    let plan = Arc::new(Plan::new(vec![template]).map_err(anyhow::Error::msg)?);
    let client = Client::new(false, args.timeout);
    let target = Target::new(&args.metrics_url)?;
    target.sample().await.context("the target's metrics before the first step")?;
    let slo = args.slo_p99.as_secs_f64() * 1e3;

    let mut steps = Vec::new();
    eprintln!(
        "{:>10} {:>10} {:>9} {:>9} {:>7} {:>7} {:>8}",
        "offered/s", "achieved/s", "p50 ms", "p99 ms", "errors", "cores", "RSS MB"
    );
    for &rate in &args.rates {
        if !args.warmup.is_zero() {
            run_at_rate(&plan, &client, rate, args.warmup, MAX_OUTSTANDING).await;
        }
        let before = target.sample().await?;
        let report = run_at_rate(&plan, &client, rate, args.step, MAX_OUTSTANDING).await;
        let after = target.sample().await?;
        let step = Step::new(rate, &report, before.cores_until(&after), after.rss_bytes);
        eprintln!(
            "{:>10.0} {:>10.1} {:>9.2} {:>9.2} {:>6.2}% {:>7.3} {:>8.1}",
            step.offered,
            step.achieved,
            step.p50_ms,
            step.p99_ms,
            step.error_rate * 100.0,
            step.cpu_cores,
            step.rss_bytes / 1e6
        );
        steps.push(step);
        if staircase::done(&steps, slo) {
            break;
        }
    }
    let knee = staircase::knee(&steps, slo);
    let projection = policy.as_ref().map(|p| projection::project(p, &steps, knee));
    let verdict = verdict(&args.url, &steps, knee, slo, projection.as_ref());
    let data = ReportData {
        url: args.url.clone(),
        generated: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        slo_p99_ms: slo,
        step_seconds: args.step.as_secs_f64(),
        steps,
        knee,
        projection,
        verdict,
    };
    println!("{}", data.verdict);
    write(&data, &args.out)
}

/// The autoscaler of a rendered overlay (`kubectl kustomize` output).
fn read_policy(path: &Path) -> Result<Option<Policy>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the overlay {}", path.display()))?;
    let objects: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).with_context(|| format!("{} is not YAML objects", path.display()))?;
    let objects: Vec<serde_json::Value> = objects.into_iter().filter(|o| !o.is_null()).collect();
    let policy = Policy::from_objects(&objects).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if policy.is_none() {
        tracing::warn!(overlay = %path.display(), "the overlay has no autoscaler: no projection");
    }
    Ok(policy)
}

fn verdict(url: &str, steps: &[Step], knee: Option<usize>, slo: f64, projection: Option<&Projection>) -> String {
    let mut lines = Vec::new();
    match knee {
        Some(k) => {
            let s = &steps[k];
            let mut line = format!(
                "One pod serves up to {:.0} requests/s of {url} within the SLO (p99 {:.1} ms, at most {slo:.0} ms; {:.2}% errors), using {:.2} cores.",
                s.achieved,
                s.p99_ms,
                s.error_rate * 100.0,
                s.cpu_cores
            );
            if let Some(next) = steps.get(k + 1) {
                line.push_str(&format!(
                    " At {:.0}/s it misses it: p99 {:.1} ms, {:.1}/s answered.",
                    next.offered, next.p99_ms, next.achieved
                ));
            } else {
                line.push_str(" The last step offered still met it: the knee is higher than the staircase went.");
            }
            lines.push(line);
        }
        None => lines.push(match steps.first() {
            Some(s) => format!(
                "No step met the SLO (p99 at most {slo:.0} ms): at {:.0}/s p99 was already {:.1} ms.",
                s.offered, s.p99_ms
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
