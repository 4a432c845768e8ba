//! A small SVG line-plot writer: axes with ticks, optional log scales, a legend.

use crate::report::Figure;
use std::fmt::Write;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 240.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Maps data values to pixels on one axis.
struct Axis {
    low: f64,
    high: f64,
    log: bool,
}

impl Axis {
    fn fit(values: impl Iterator<Item = f64>, log: bool) -> Axis {
        let vals: Vec<f64> = values
            .filter(|v| v.is_finite() && (!log || *v > 0.0))
            .map(|v| if log { v.log10() } else { v })
            .collect();
        let mut low = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let mut high = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !low.is_finite() {
            (low, high) = (0.0, 1.0);
        }
        if log {
            (low, high) = (low.floor(), high.ceil());
        } else if low > 0.0 && low < high * 0.5 {
            low = 0.0;
        }
        if high - low < 1e-9 {
            high = low + 1.0;
        }
        Axis { low, high, log }
    }

    fn frac(&self, v: f64) -> Option<f64> {
        if self.log && v <= 0.0 {
            return None;
        }
        let v = if self.log { v.log10() } else { v };
        Some((v - self.low) / (self.high - self.low))
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        if self.log {
            let (a, b) = (self.low as i32, self.high as i32);
            return (a..=b)
                .map(|e| (10f64.powi(e), format_number(10f64.powi(e))))
                .collect();
        }
        let step = nice_step((self.high - self.low) / 5.0);
        let mut t = (self.low / step).ceil() * step;
        let mut out = Vec::new();
        while t <= self.high + step * 1e-6 {
            out.push((t, format_number(t)));
            t += step;
        }
        out
    }
}

fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn format_number(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.0e}")
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Draws `fig` as a standalone SVG document.
pub fn render(fig: &Figure) -> String {
    let points = || fig.series.iter().flat_map(|s| s.points.iter());
    let xa = Axis::fit(points().map(|p| p.0), fig.log_x);
    let ya = Axis::fit(points().map(|p| p.1), fig.log_y);
    let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let px = |v: f64| xa.frac(v).map(|f| LEFT + f * pw);
    let py = |v: f64| ya.frac(v).map(|f| TOP + ph - f * ph);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>",
        LEFT + pw / 2.0,
        escape(&fig.title)
    );
    draw_axes(&mut out, fig, &xa, &ya, &px, &py);
    for (i, s) in fig.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .filter_map(|(x, y)| Some(format!("{:.1},{:.1}", px(*x)?, py(*y)?)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        for p in &pts {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(
                out,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" fill=\"{colour}\"/>"
            );
        }
        let ly = TOP + 14.0 + 18.0 * i as f64;
        let lx = WIDTH - RIGHT + 12.0;
        let _ = write!(
            out,
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{colour}\" stroke-width=\"3\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn draw_axes(
    out: &mut String,
    fig: &Figure,
    xa: &Axis,
    ya: &Axis,
    px: &dyn Fn(f64) -> Option<f64>,
    py: &dyn Fn(f64) -> Option<f64>,
) {
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
    let _ = write!(
        out,
        "<rect x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>",
        x1 - x0,
        y1 - y0
    );
    for (v, label) in xa.ticks() {
        if let Some(x) = px(v) {
            let _ = write!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{y1}\" x2=\"{x:.1}\" y2=\"{y0}\" stroke=\"#ddd\"/>\
                 <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
                y1 + 16.0
            );
        }
    }
    for (v, label) in ya.ticks() {
        if let Some(y) = py(v) {
            let _ = write!(
                out,
                "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{x1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
                x0 - 6.0,
                y + 4.0
            );
        }
    }
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text transform=\"translate(16,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        (x0 + x1) / 2.0,
        HEIGHT - 14.0,
        escape(&fig.x_label),
        (y0 + y1) / 2.0,
        escape(&fig.y_label)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_and_skips_nonpositive_points_on_log_axes() {
        let mut fig =
            Figure::new("f", "T <1>", "x", "y").with_series("a", vec![(1.0, 0.0), (10.0, 5.0)]);
        fig.log_y = true;
        let svg = render(&fig);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("T &lt;1&gt;"));
        assert_eq!(svg.matches("<circle").count(), 1);
    }
}
