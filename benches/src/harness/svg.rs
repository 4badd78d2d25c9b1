//! The percentile-distribution plot, hand-written SVG (no fonts or crates needed): x is the
//! percentile on HdrHistogram's log scale (x = log10(1 / (1 − p)), labelled 0%, 90%, 99%, 99.9% …),
//! y the latency in ns on a log scale (the series span tens of ns to milliseconds). Each curve stops
//! at the last percentile its sample count can resolve (1 − 1/n), then steps to its max.

use std::fmt::Write;

use super::Series;

const W: f64 = 1100.0;
const H: f64 = 640.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 330.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 10] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const DASHES: [&str; 3] = ["", "6,3", "2,2"];

/// Escapes text for an SVG text node or attribute.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `(x, ns)` points of a series' percentile curve, x = log10(1/(1−p)).
fn curve(series: &Series) -> Vec<(f64, u64)> {
    let h = &series.hist;
    if h.is_empty() {
        return Vec::new();
    }
    let x_end = (h.len() as f64).log10();
    let mut points = Vec::new();
    let mut x = 0.0;
    while x < x_end {
        let p = 1.0 - 10f64.powf(-x);
        points.push((x, h.value_at_quantile(p).max(1)));
        x += 0.02;
    }
    points.push((x_end.max(0.0), h.max().max(1)));
    points
}

fn label_ns(ns: f64) -> String {
    match ns {
        n if n >= 1e9 => format!("{:.0} s", n / 1e9),
        n if n >= 1e6 => format!("{:.0} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.0} µs", n / 1e3),
        n => format!("{n:.0} ns"),
    }
}

fn label_percentile(decade: u32) -> String {
    match decade {
        0 => "0%".into(),
        1 => "90%".into(),
        d => format!("99.{}%", "9".repeat(d as usize - 2)).replace("99.%", "99%"),
    }
}

/// The plot of `series` (those with `plot` set), titled `title`.
pub fn render(title: &str, series: &[&Series]) -> String {
    let curves: Vec<(&Series, Vec<(f64, u64)>)> =
        series.iter().filter(|s| s.plot).map(|s| (*s, curve(s))).filter(|(_, c)| !c.is_empty()).collect();
    let x_max = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0)).fold(1.0f64, f64::max).ceil();
    let (lo, hi) = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold((u64::MAX, 1u64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let y_lo = (lo.min(hi) as f64).log10().floor();
    let y_hi = ((hi as f64).log10().ceil()).max(y_lo + 1.0);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |x: f64| LEFT + x / x_max * pw;
    let py = |ns: u64| TOP + ph - ((ns as f64).log10() - y_lo) / (y_hi - y_lo) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{LEFT}" y="24" font-size="15">{}</text>"#, escape(title));
    for d in 0..=x_max as u32 {
        let x = px(f64::from(d));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 18.0,
            label_percentile(d)
        );
    }
    for e in y_lo as i32..=y_hi as i32 {
        let ns = 10f64.powi(e);
        let y = py(ns as u64);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            label_ns(ns)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale: x = 1/(1−p))</text>"#,
        LEFT + pw / 2.0,
        H - 14.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" transform="rotate(-90 18 {:.1})" text-anchor="middle">latency (log scale)</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    let _ = writeln!(s, r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#);
    for (i, (series, points)) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let dash = DASHES[i / COLORS.len() % DASHES.len()];
        let path: Vec<String> = points.iter().map(|(x, ns)| format!("{:.1},{:.1}", px(*x), py(*ns))).collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" stroke-dasharray="{dash}" points="{}"><title>{}</title></polyline>"#,
            path.join(" "),
            escape(&series.name)
        );
        let ly = TOP + 10.0 + i as f64 * 18.0;
        let lx = LEFT + pw + 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            escape(&series.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::new_histogram;

    #[test]
    fn percentile_labels_follow_hdrhistogram() {
        let labels: Vec<String> = (0..5).map(label_percentile).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }

    #[test]
    fn every_series_is_named_and_escaped() {
        let mut h = new_histogram();
        for v in 1..1000u64 {
            h.record(v * 10).unwrap();
        }
        let a = Series::new("a<b", "", h.clone());
        let b = Series::new("segment/1_reader", "", h);
        let svg = render("t & t", &[&a, &b]);
        assert!(svg.contains("a&lt;b") && svg.contains("segment/1_reader") && svg.contains("t &amp; t"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
