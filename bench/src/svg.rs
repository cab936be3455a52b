//! Plots as hand-written SVG. A latency percentile plot: x is the percentile on a "nines" scale
//! (50, 90, 99, 99.9, …: −log10(1 − p)), y the latency in milliseconds on a log scale, one
//! line per series. No plotting dependency: the curve points come from the scenarios'
//! HdrHistograms (`stats::latency_curve`). A timeline: linear axes from 0 (sessions resumed
//! over seconds since a kill).

use std::fmt::Write as _;

use crate::stats::CurvePoint;

/// One line of the plot.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<CurvePoint>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;
/// Most nines on the x axis (99.999 %).
const MAX_NINES: f64 = 5.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

fn nines(percentile: f64) -> f64 {
    let rest = (1.0 - percentile / 100.0).max(10f64.powf(-MAX_NINES));
    -rest.log10()
}

/// The plot, or None when no series has a point.
pub fn latency_percentiles(title: &str, series: &[Series]) -> Option<String> {
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.us / 1000.0))
        .filter(|v| *v > 0.0)
        .collect();
    if values.is_empty() {
        return None;
    }
    let lo = values
        .iter()
        .copied()
        .fold(f64::MAX, f64::min)
        .log10()
        .floor();
    let hi = values
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |p: f64| LEFT + nines(p) / MAX_NINES * plot_w;
    let y = |ms: f64| TOP + plot_h - (ms.max(1e-9).log10() - lo) / (hi - lo) * plot_h;

    let mut svg = open(title);
    for (i, label) in ["0", "90", "99", "99.9", "99.99", "99.999"]
        .iter()
        .enumerate()
    {
        let px = LEFT + i as f64 / MAX_NINES * plot_w;
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0
        );
    }
    let mut decade = lo;
    while decade <= hi {
        let ms = 10f64.powf(decade);
        let py = y(ms);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0,
            format_ms(ms)
        );
        decade += 1.0;
    }
    axis_labels(&mut svg, "percentile", "latency (ms)");
    for (i, s) in series.iter().filter(|s| !s.points.is_empty()).enumerate() {
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|p| (x(p.percentile), y(p.us / 1000.0)))
            .collect();
        line(&mut svg, i, &s.label, &points);
    }
    svg.push_str("</svg>\n");
    Some(svg)
}

/// A line plot on linear axes from 0: x and y as given (e.g. seconds since an event, and
/// a count), one line per `(label, points)`; None when there are no points.
pub fn timeline(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Option<String> {
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    all().next()?;
    let x_max = nice(all().map(|p| p.0).fold(0.0, f64::max));
    let y_max = nice(all().map(|p| p.1).fold(0.0, f64::max));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |v: f64| LEFT + v / x_max * plot_w;
    let y = |v: f64| TOP + plot_h - v / y_max * plot_h;
    let mut svg = open(title);
    for k in 0..=5 {
        let (vx, vy) = (x_max * k as f64 / 5.0, y_max * k as f64 / 5.0);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            short(vx),
            px = x(vx),
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y(vy) + 4.0,
            short(vy),
            py = y(vy),
        );
    }
    axis_labels(&mut svg, x_label, y_label);
    for (i, (label, points)) in series.iter().enumerate() {
        let points: Vec<(f64, f64)> = points.iter().map(|&(a, b)| (x(a), y(b))).collect();
        line(&mut svg, i, label, &points);
    }
    svg.push_str("</svg>\n");
    Some(svg)
}

/// The smallest 1, 2 or 5 × 10^k at or above `v` (the top of an axis).
fn nice(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let decade = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * decade)
        .find(|&t| t >= v)
        .unwrap_or(10.0 * decade)
}

fn short(v: f64) -> String {
    if v >= 1000.0 {
        let k = v / 1000.0;
        if k == k.trunc() {
            format!("{k:.0}k")
        } else {
            format!("{k:.1}k")
        }
    } else if v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The document's opening: size, background, title.
fn open(title: &str) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="18" font-size="14">{}</text>"#,
        escape(title)
    );
    svg
}

fn axis_labels(svg: &mut String, x_label: &str, y_label: &str) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        escape(x_label),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
}

/// Series number `i`: its line (points in pixels) and its legend entry.
fn line(svg: &mut String, i: usize, label: &str, points: &[(f64, f64)]) {
    let colour = COLOURS[i % COLOURS.len()];
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
        path.join(" ")
    );
    let ly = TOP + 10.0 + i as f64 * 18.0;
    let lx = WIDTH - RIGHT + 12.0;
    let _ = writeln!(
        svg,
        r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
        lx + 18.0,
        lx + 24.0,
        ly + 4.0,
        escape(label)
    );
}

fn format_ms(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_series_and_skips_empty_input() {
        assert!(latency_percentiles("t", &[]).is_none());
        let points = vec![
            CurvePoint {
                percentile: 50.0,
                us: 2_000.0,
            },
            CurvePoint {
                percentile: 99.9,
                us: 40_000.0,
            },
        ];
        let svg = latency_percentiles(
            "a <title>",
            &[Series {
                label: "fan-out".into(),
                points,
            }],
        )
        .expect("a plot");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt;title&gt;") && svg.contains("<polyline"));
        assert!((nines(99.9) - 3.0).abs() < 1e-9 && nines(100.0) == MAX_NINES);
    }

    #[test]
    fn timelines_have_round_axes() {
        assert!(timeline("t", "s", "n", &[]).is_none());
        let svg = timeline(
            "t",
            "s",
            "n",
            &[("a".into(), vec![(0.0, 0.0), (1.3, 870.0)])],
        )
        .expect("a plot");
        assert!(svg.contains("<polyline") && svg.contains(">1k<"));
        assert_eq!((nice(1.3), nice(870.0), nice(0.0)), (2.0, 1000.0, 1.0));
    }
}
