//! The report as one self-contained HTML page: the verdict in words at the
//! top, then the plots (inline SVG) and the numbers. No scripts, no fonts
//! or styles fetched from anywhere.

use super::ReportData;
use super::chart::{Chart, Series};
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
    let offered = "offered requests/s".to_string();
    let slo = data.slo_p99_ms;
    let top = data.steps.iter().map(|s| s.offered).fold(0.0, f64::max);
    let mut charts = vec![
        Chart {
            title: "Throughput".into(),
            x_label: offered.clone(),
            y_label: "answered requests/s".into(),
            series: vec![
                Series::new("achieved", per_step(&|s| s.achieved)),
                Series::new("offered", vec![(0.0, 0.0), (top, top)]).dashed(),
            ],
        },
        Chart {
            title: "Latency".into(),
            x_label: offered.clone(),
            y_label: "ms".into(),
            series: vec![
                Series::new("p50", per_step(&|s| s.p50_ms)),
                Series::new("p90", per_step(&|s| s.p90_ms)),
                Series::new("p99", per_step(&|s| s.p99_ms)),
                Series::new("SLO (p99)", vec![(0.0, slo), (top, slo)]).dashed(),
            ],
        },
        Chart {
            title: "CPU of the target".into(),
            x_label: offered.clone(),
            y_label: "cores".into(),
            series: vec![Series::new("CPU", per_step(&|s| s.cpu_cores))],
        },
        Chart {
            title: "Memory of the target".into(),
            x_label: offered.clone(),
            y_label: "RSS, MB".into(),
            series: vec![Series::new("RSS", per_step(&|s| s.rss_bytes / 1e6))],
        },
    ];
    if let Some(projection) = &data.projection {
        charts.push(Chart {
            title: format!("Replicas the autoscaler settles on ({})", projection.source),
            x_label: offered,
            y_label: "pods".into(),
            series: vec![Series::new("replicas", projection.rows.iter().map(|r| (r.offered, f64::from(r.replicas))).collect())],
        });
    }
    charts
}

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
    html.push_str("</div><h2>Steps</h2><table><tr><th>offered/s</th><th>achieved/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>errors</th><th>CPU cores</th><th>RSS MB</th><th>SLO</th></tr>");
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
            "<tr><td>{:.0}</td><td>{:.1}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}%</td><td>{:.3}</td><td>{:.1}</td><td>{mark}</td></tr>",
            s.offered,
            s.achieved,
            s.p50_ms,
            s.p90_ms,
            s.p99_ms,
            s.error_rate * 100.0,
            s.cpu_cores,
            s.rss_bytes / 1e6
        );
    }
    html.push_str("</table>");
    if let Some(projection) = &data.projection {
        let _ = write!(
            html,
            "<h2>The autoscaler's view: {}</h2><p>{} to {} pods; {:.3} ms of CPU per request, {:.3} cores idle.</p><table><tr><th>metric</th><th>load per pod at the target</th><th>verdict</th><th></th></tr>",
            escape(&projection.source),
            projection.min_replicas,
            projection.max_replicas,
            projection.cpu_per_request * 1e3,
            projection.idle_cores
        );
        for target in &projection.targets {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
                escape(&target.metric),
                target.load_at_target.map_or("-".to_string(), |l| format!("{l:.0}/s")),
                target.verdict.as_deref().unwrap_or("-"),
                escape(&target.note)
            );
        }
        html.push_str("</table>");
    }
    let _ = writeln!(html, "<p>Generated {} by scalelab report.</p></body></html>", escape(&data.generated));
    html
}
