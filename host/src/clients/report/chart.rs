//! Line charts as inline SVG: axes with round ticks, one path per series,
//! a legend. Nothing is fetched: the page stays self-contained.

use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 300.0;
/// Room for the axes' labels.
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;

/// The colours of the series, in order.
const COLOURS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"];

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (a reference line, such as "achieved = offered").
    pub dashed: bool,
}

impl Series {
    pub fn new(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.to_string(), points, dashed: false }
    }

    pub fn dashed(mut self) -> Series {
        self.dashed = true;
        self
    }
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// A round step for about `count` ticks over `0..=max`.
fn tick_step(max: f64, count: f64) -> f64 {
    let raw = (max / count).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn label(value: f64) -> String {
    if value >= 1000.0 || value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.2}").trim_end_matches('0').to_string()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl Chart {
    /// The chart as an `<svg>` element; every series with points is one `<path>`.
    pub fn svg(&self) -> String {
        let all = self.series.iter().flat_map(|s| s.points.iter());
        let (x_max, y_max) = all.fold((0.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
        let (x_step, y_step) = (tick_step(x_max.max(1e-9), 6.0), tick_step(y_max.max(1e-9), 5.0));
        let (x_top, y_top) = ((x_max / x_step).ceil().max(1.0) * x_step, (y_max / y_step).ceil().max(1.0) * y_step);
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let x_of = |x: f64| LEFT + x / x_top * plot_w;
        let y_of = |y: f64| TOP + plot_h - y / y_top * plot_h;

        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}"><title>{title}</title><text x="{LEFT}" y="20" class="title">{title}</text>"#,
            title = escape(&self.title)
        );
        // Grid and ticks.
        let mut x = 0.0;
        while x <= x_top + x_step / 2.0 {
            let px = x_of(x);
            let _ = write!(
                svg,
                r#"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" class="grid"/><text x="{px:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"#,
                TOP + plot_h,
                TOP + plot_h + 16.0,
                label(x)
            );
            x += x_step;
        }
        let mut y = 0.0;
        while y <= y_top + y_step / 2.0 {
            let py = y_of(y);
            let _ = write!(
                svg,
                r#"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" class="grid"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"#,
                LEFT + plot_w,
                LEFT - 6.0,
                py + 4.0,
                label(y)
            );
            y += y_step;
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" class="axis">{}</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 8.0,
            escape(&self.x_label),
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        // Series and legend.
        for (i, series) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let mut d = String::new();
            for (k, (x, y)) in series.points.iter().enumerate() {
                let _ = write!(d, "{}{:.1} {:.1} ", if k == 0 { "M" } else { "L" }, x_of(*x), y_of(*y));
            }
            if !d.is_empty() {
                let dash = if series.dashed { r#" stroke-dasharray="6 4""# } else { "" };
                let _ = write!(svg, r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#, d.trim_end());
                for (x, y) in &series.points {
                    let _ = write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"/>"#, x_of(*x), y_of(*y));
                }
            }
            let ly = TOP + 4.0 + 16.0 * i as f64;
            let lx = LEFT + plot_w - 150.0;
            let _ = write!(
                svg,
                r#"<rect x="{lx:.1}" y="{ly:.1}" width="12" height="4" fill="{colour}"/><text x="{:.1}" y="{:.1}" class="legend">{}</text>"#,
                lx + 18.0,
                ly + 6.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1234.0, 6.0), 500.0);
        assert_eq!(tick_step(0.9, 5.0), 0.2);
        assert_eq!(tick_step(100.0, 5.0), 20.0);
    }

    #[test]
    fn each_series_is_a_path_and_text_is_escaped() {
        let chart = Chart {
            title: "a < b".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series::new("one", vec![(0.0, 1.0), (2.0, 3.0)]), Series::new("none", vec![])],
        };
        let svg = chart.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<path d=\"M").count(), 1);
        assert!(svg.contains("a &lt; b") && !svg.contains("a < b"));
    }
}
