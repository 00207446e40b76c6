//! The report as one self-contained HTML page: the verdict in words at the
//! top, then the plots (inline SVG) and the numbers. No scripts, no fonts
//! or styles fetched from anywhere.

use super::ReportData;
use super::chart::{Chart, Series};
use super::projection::Projection;
use std::fmt::Write;

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1320px}\
h1{font-size:22px}.verdict{font-size:16px;background:#f4f6f8;border-left:4px solid #1f77b4;padding:8px 12px}\
.charts{display:flex;flex-wrap:wrap;gap:12px}svg{border:1px solid #ddd;background:#fff}\
.title{font-size:14px;font-weight:bold}.tick,.legend{font-size:11px}.axis{font-size:12px}\
.grid{stroke:#eee}table{border-collapse:collapse;margin:12px 0;font-size:13px}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f6f8}";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The charts the page shows, in order.
pub fn charts(data: &ReportData) -> Vec<Chart> {
    let per_step = |f: &dyn Fn(&super::Step) -> f64| data.steps.iter().map(|s| (s.offered, f(s))).collect::<Vec<_>>();
    let offered = format!("offered {}", data.unit);
    let slo = data.slo_p99_ms;
    let top = data.steps.iter().map(|s| s.offered).fold(0.0, f64::max);
    let chart = |title: &str, y_label: &str, series: Vec<Series>| Chart {
        title: title.to_string(),
        x_label: offered.clone(),
        y_label: y_label.to_string(),
        series,
    };
    let mut charts = vec![
        chart(
            "Throughput",
            data.kind.achieved(),
            vec![
                Series::new("achieved", per_step(&|s| s.load.achieved)),
                Series::new("offered", vec![(0.0, 0.0), (top, top)]).dashed(),
            ],
        ),
        chart(
            &format!("Latency: {}", data.latency),
            "ms",
            vec![
                Series::new("p50", per_step(&|s| s.load.p50_ms)),
                Series::new("p90", per_step(&|s| s.load.p90_ms)),
                Series::new("p99", per_step(&|s| s.load.p99_ms)),
                Series::new("SLO (p99)", vec![(0.0, slo), (top, slo)]).dashed(),
            ],
        ),
        chart("CPU of the target", "cores", vec![Series::new("CPU", per_step(&|s| s.cpu_cores))]),
        chart("Memory of the target", "RSS, MB", vec![Series::new("RSS", per_step(&|s| s.rss_bytes / 1e6))]),
    ];
    if let Some(events) = data.kind.events() {
        charts.push(chart("Events", events, vec![Series::new(events, per_step(&|s| s.load.events_per_s.unwrap_or(0.0)))]));
    }
    for name in signal_names(data) {
        let points = data.steps.iter().filter_map(|s| Some((s.offered, *s.signals.get(&name)?))).collect();
        let y_label = if name.ends_with("_total") { "per second" } else { "value" };
        charts.push(chart(&format!("The guest's {name}"), y_label, vec![Series::new(&name, points)]));
    }
    if let Some(projection) = &data.projection {
        charts.push(chart(
            &format!("Replicas the autoscaler settles on ({})", projection.source),
            "pods",
            vec![Series::new("replicas", projection.rows.iter().map(|r| (r.offered, f64::from(r.replicas))).collect())],
        ));
    }
    if let Some(timeline) = data.timeline.as_deref().filter(|t| !t.is_empty()) {
        charts.extend(timeline_charts(timeline, data.unit));
    }
    charts
}

/// The signals any step recorded, by name.
fn signal_names(data: &ReportData) -> Vec<String> {
    let mut names: Vec<String> = data.steps.iter().flat_map(|s| s.signals.keys().cloned()).collect();
    names.sort();
    names.dedup();
    names
}

/// `--kube`: the load offered, the replicas and the HPA's metrics over time.
fn timeline_charts(timeline: &[super::kube::Reading], unit: &str) -> Vec<Chart> {
    let over_time = |f: &dyn Fn(&super::kube::Reading) -> Option<f64>| {
        timeline.iter().filter_map(|r| Some((r.second, f(r)?))).collect::<Vec<_>>()
    };
    let chart = |title: &str, y_label: &str, series: Vec<Series>| Chart {
        title: title.to_string(),
        x_label: "seconds".into(),
        y_label: y_label.to_string(),
        series,
    };
    let mut names: Vec<&String> = timeline.iter().flat_map(|r| r.metrics.keys()).collect();
    names.sort();
    names.dedup();
    let metrics = names
        .into_iter()
        .map(|name| Series::new(name, over_time(&|r| r.metrics.get(name).copied())))
        .filter(|s| !s.points.is_empty())
        .collect::<Vec<_>>();
    let mut charts = vec![
        chart("The cluster: load offered", unit, vec![Series::new("offered", over_time(&|r| Some(r.offered)))]),
        chart(
            "The cluster: replicas",
            "pods",
            vec![
                Series::new("desired", over_time(&|r| r.desired_replicas.map(f64::from))),
                Series::new("current", over_time(&|r| r.current_replicas.map(f64::from))),
                Series::new("ready", over_time(&|r| r.ready_replicas.map(f64::from))),
            ],
        ),
    ];
    if !metrics.is_empty() {
        charts.push(chart("The cluster: the HPA's current metrics", "value", metrics));
    }
    charts
}

/// The report's HTML page: verdict, charts, the steps, the autoscaler's view.
pub fn render(data: &ReportData) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>scalelab report: {url}</title><style>{STYLE}</style></head><body>\
         <h1>Does it scale? {url}</h1><p class=\"verdict\">{verdict}</p>",
        url = escape(&data.url),
        verdict = escape(&data.verdict).replace('\n', "<br>")
    );
    html.push_str("<div class=\"charts\">");
    for chart in charts(data) {
        html.push_str(&chart.svg());
    }
    html.push_str("</div>");
    steps_table(data, &mut html);
    if let Some(projection) = &data.projection {
        projection_table(data, projection, &mut html);
    }
    let _ = writeln!(html, "<p>Generated {} by scalelab report.</p></body></html>", escape(&data.generated));
    html
}

/// One row per step: the load, the host's CPU and memory, the guest's
/// signals, and whether it met the SLO.
fn steps_table(data: &ReportData, html: &mut String) {
    let signals = signal_names(data);
    let events = data.kind.events();
    let _ = write!(
        html,
        "<h2>Steps</h2><table><tr><th>offered {unit}</th><th>{achieved}</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>errors</th>",
        unit = escape(data.unit),
        achieved = escape(data.kind.achieved())
    );
    if let Some(events) = events {
        let _ = write!(html, "<th>{}</th>", escape(events));
    }
    html.push_str("<th>CPU cores</th><th>RSS MB</th>");
    for name in &signals {
        let _ = write!(html, "<th>{}</th>", escape(name));
    }
    html.push_str("<th>SLO</th></tr>");
    for (i, s) in data.steps.iter().enumerate() {
        let mark = if Some(i) == data.knee {
            "knee"
        } else if s.meets(data.slo_p99_ms) {
            "met"
        } else {
            "missed"
        };
        let _ = write!(
            html,
            "<tr><td>{:.0}</td><td>{:.1}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}%</td>",
            s.offered,
            s.load.achieved,
            s.load.p50_ms,
            s.load.p90_ms,
            s.load.p99_ms,
            s.load.error_rate * 100.0,
        );
        if events.is_some() {
            let _ = write!(html, "<td>{:.1}</td>", s.load.events_per_s.unwrap_or(0.0));
        }
        let _ = write!(html, "<td>{:.3}</td><td>{:.1}</td>", s.cpu_cores, s.rss_bytes / 1e6);
        for name in &signals {
            let _ = write!(html, "<td>{}</td>", s.signals.get(name).map_or("-".to_string(), |v| format!("{v:.1}")));
        }
        let _ = write!(html, "<td>{mark}</td></tr>");
    }
    html.push_str("</table>");
}

/// The overlay's autoscaler: its replica range, the CPU per unit of load,
/// and each target's verdict.
fn projection_table(data: &ReportData, projection: &Projection, html: &mut String) {
    let _ = write!(
        html,
        "<h2>The autoscaler's view: {}</h2><p>{} to {} pods; {:.3} ms of CPU per {}, {:.3} cores idle.</p><table><tr><th>metric</th><th>load per pod at the target</th><th>verdict</th><th></th></tr>",
        escape(&projection.source),
        projection.min_replicas,
        projection.max_replicas,
        projection.cpu_per_unit * 1e3,
        match data.kind {
            super::Kind::Http => "request",
            super::Kind::Sockets => "client (core-ms per second)",
            super::Kind::Engines => "engine (core-ms per second)",
        },
        projection.idle_cores
    );
    for target in &projection.targets {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
            escape(&target.metric),
            target.load_at_target.map_or("-".to_string(), |l| format!("{l:.0} {}", data.unit)),
            target.verdict.as_deref().unwrap_or("-"),
            escape(&target.note)
        );
    }
    html.push_str("</table>");
}
