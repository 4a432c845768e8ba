//! Dependency-free SVG line charts for the chaos-testing report.
//!
//! [`render`] draws time series (x = seconds since start) over shaded fault
//! windows, with "nice" ticks, gridlines and a legend. Output is deterministic.
//! Points with a non-finite coordinate (or `y <= 0` on a log axis) are skipped
//! and leave a gap in the line; a point with no drawable neighbour is a dot.

use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = WIDTH - 24.0;
const BOTTOM: f64 = HEIGHT - 46.0;
/// Line colours, assigned to series in order.
const SERIES_COLOURS: [&str; 8] = [
    "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#555555",
];
/// Window colours, indexed by a hash of the label's first word (see `window_colour`);
/// they avoid the first three series colours.
const WINDOW_COLOURS: [&str; 10] = [
    "#8c564b", "#d62728", "#6f6f6f", "#0f8f9c", "#8c8d10", "#1b9e77", "#3f4fa8", "#9467bd",
    "#e7298a", "#b8860b",
];

/// A shaded time window on the x axis (a fault being active), with a short label.
pub struct Window {
    pub start_s: f64,
    pub end_s: f64,
    pub label: String,
}

/// One line on a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>, // (seconds since start, value)
}

/// A chart: title, axis labels, one or more series, shaded windows.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series],
    pub windows: &'a [Window],
    pub log_y: bool,
}

/// The plot area: its top edge and the ticks (and so the extent) of both axes.
struct Plot {
    top: f64,
    x_ticks: Vec<f64>,
    y_ticks: Vec<f64>,
    log_y: bool,
}

impl Plot {
    fn px(&self, x: f64) -> f64 {
        let (lo, hi) = (self.x_ticks[0], self.x_ticks[self.x_ticks.len() - 1]);
        LEFT + frac(lo, hi, x) * (RIGHT - LEFT)
    }

    fn py(&self, y: f64) -> f64 {
        let f = |v: f64| if self.log_y { v.log10() } else { v };
        let (lo, hi) = (f(self.y_ticks[0]), f(self.y_ticks[self.y_ticks.len() - 1]));
        BOTTOM - frac(lo, hi, f(y)) * (BOTTOM - self.top)
    }
}

/// Where `v` lies between `lo` (0) and `hi` (1), kept within a few plot
/// widths so that the SVG's numbers stay short.
fn frac(lo: f64, hi: f64, v: f64) -> f64 {
    ((v - lo) / (hi - lo)).clamp(-5.0, 6.0)
}

/// Renders the chart as a standalone SVG document (width 900, height 360).
pub fn render(chart: &Chart<'_>) -> String {
    let legend = legend_layout(chart.series);
    let rows = legend.last().map_or(0, |&(_, _, row)| row + 1);
    let drawable = || chart.series.iter().flat_map(|s| &s.points).copied();
    let drawable = || drawable().filter(|&p| ok(p, chart.log_y));
    let window_x = chart.windows.iter().flat_map(|w| [w.start_s, w.end_s]);
    let x_max = drawable()
        .map(|p| p.0)
        .chain(window_x.filter(|x| x.is_finite()));
    let (y_lo, y_hi) = drawable().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let plot = Plot {
        top: 40.0 + 16.0 * rows as f64,
        x_ticks: nice_ticks(0.0, x_max.fold(0.0, f64::max)),
        y_ticks: match (chart.log_y, y_lo <= y_hi) {
            (true, true) => log_ticks(y_lo, y_hi),
            (true, false) => log_ticks(1.0, 10.0),
            (false, true) => nice_ticks(y_lo.min(0.0), y_hi.max(0.0)),
            (false, false) => nice_ticks(0.0, 0.0),
        },
        log_y: chart.log_y,
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        esc(chart.title)
    );
    draw_grid(&mut out, &plot, chart);
    draw_windows(&mut out, &plot, chart.windows);
    draw_series(&mut out, &plot, chart);
    for &(i, x, row) in &legend {
        let (y, colour) = (
            38.0 + 16.0 * row as f64,
            SERIES_COLOURS[i % SERIES_COLOURS.len()],
        );
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" \
             stroke-width=\"2.5\"/>\n<text x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            y - 4.0,
            x + 18.0,
            y - 4.0,
            x + 23.0,
            esc(&chart.series[i].name)
        );
    }
    out.push_str("</svg>");
    out
}

/// Whether a point can be drawn.
fn ok((x, y): (f64, f64), log_y: bool) -> bool {
    x.is_finite() && y.is_finite() && (!log_y || y > 0.0)
}

/// Legend entries, left to right above the plot, wrapping into rows:
/// `(series index, x, row)`.
fn legend_layout(series: &[Series]) -> Vec<(usize, f64, usize)> {
    let (mut x, mut row) = (LEFT, 0);
    let mut out = Vec::with_capacity(series.len());
    for (i, s) in series.iter().enumerate() {
        let width = 41.0 + 6.5 * s.name.chars().count() as f64;
        if x > LEFT && x + width > RIGHT {
            (x, row) = (LEFT, row + 1);
        }
        out.push((i, x, row));
        x += width;
    }
    out
}

/// At most 8 evenly spaced ticks at multiples of 1, 2 or 5 × 10^k, the first
/// `<= lo` and the last `>= hi` (usually 5 to 8 ticks, never fewer than 2).
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (mut lo, mut hi) = (lo.min(hi), lo.max(hi));
    if !(hi - lo).is_finite() {
        (lo, hi) = (0.0, 1.0);
    } else if hi - lo <= 1e-9 * lo.abs().max(hi.abs()) {
        (lo, hi) = if lo == 0.0 {
            (0.0, 1.0)
        } else {
            (lo - lo.abs() / 2.0, hi + lo.abs() / 2.0)
        };
    }
    let mut exp = (hi - lo).log10().floor() as i32 - 2;
    loop {
        for m in [1.0, 2.0, 5.0] {
            // Dividing by an exact power of ten keeps 0.3 as 0.3, not 0.30000000000000004;
            // adding 0.0 turns -0.0 into 0.0.
            let at = |i: f64| {
                let v = if exp >= 0 {
                    i * m * 10f64.powi(exp)
                } else {
                    i * m / 10f64.powi(-exp)
                };
                v + 0.0
            };
            let (first, last) = ((lo / at(1.0) + 1e-9).floor(), (hi / at(1.0) - 1e-9).ceil());
            if last - first <= 7.0 {
                return (first as i64..=last as i64).map(|i| at(i as f64)).collect();
            }
        }
        exp += 1;
    }
}

/// Powers of ten from at or below `lo` to at or above `hi`: at least two,
/// at most 8 (skipping decades evenly if the range is wide).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let ok = lo > 0.0 && hi >= lo && hi.is_finite();
    let (lo, hi) = if ok { (lo, hi) } else { (1.0, 10.0) };
    let first = ((lo.log10() + 1e-9).floor() as i32).clamp(-300, 299);
    let last = ((hi.log10() - 1e-9).ceil() as i32).clamp(first + 1, 300);
    let stride = (last - first + 6) / 7;
    let first = first.div_euclid(stride) * stride;
    let pow10 = |e: i32| {
        if e >= 0 {
            10f64.powi(e)
        } else {
            1.0 / 10f64.powi(-e)
        }
    };
    (first..last + stride)
        .step_by(stride as usize)
        .map(pow10)
        .collect()
}

/// A tick label, with just enough decimals for ticks `step` apart.
fn fmt_tick(v: f64, step: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e7 || v.abs() < 1e-4) {
        return format!("{v:e}");
    }
    let decimals = (-step.log10() - 1e-9).ceil().clamp(0.0, 12.0) as usize;
    format!("{v:.decimals$}")
}

/// Gridlines and tick labels for both axes, the frame and the axis titles.
fn draw_grid(out: &mut String, plot: &Plot, chart: &Chart<'_>) {
    let (top, mid_x, mid_y) = (plot.top, (LEFT + RIGHT) / 2.0, (plot.top + BOTTOM) / 2.0);
    let x_step = plot.x_ticks[1] - plot.x_ticks[0];
    let y_step = plot.y_ticks[1] - plot.y_ticks[0];
    out.push_str("<g stroke=\"#e4e4e4\">\n");
    for x in plot.x_ticks.iter().map(|&t| plot.px(t)) {
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{BOTTOM}\"/>"
        );
    }
    // On a log axis showing every one of at most 4 decades, faint lines at 2..9 ×.
    let minor = plot.log_y
        && plot.y_ticks.len() <= 5
        && (plot.y_ticks[1] / plot.y_ticks[0] - 10.0).abs() < 1e-6;
    let minor_ticks = plot.y_ticks.iter().filter(|_| minor).skip(1);
    let minor_ticks = minor_ticks.flat_map(|&t| (2..10).map(move |m| (t * m as f64 / 10.0, 0.4)));
    for (t, opacity) in plot.y_ticks.iter().map(|&t| (t, 1.0)).chain(minor_ticks) {
        let y = plot.py(t);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{RIGHT}\" y2=\"{y:.1}\" \
             stroke-opacity=\"{opacity}\"/>"
        );
    }
    out.push_str("</g>\n<g fill=\"#333333\">\n");
    for &t in &plot.x_ticks {
        let (x, y, label) = (plot.px(t), BOTTOM + 16.0, fmt_tick(t, x_step));
        let _ = writeln!(
            out,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\">{label}</text>"
        );
    }
    for &t in &plot.y_ticks {
        let label = if plot.log_y {
            fmt_tick(t, t)
        } else {
            fmt_tick(t, y_step)
        };
        let (x, y) = (LEFT - 6.0, plot.py(t) + 4.0);
        let _ = writeln!(
            out,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"end\">{label}</text>"
        );
    }
    let _ = writeln!(
        out,
        "</g>\n<rect x=\"{LEFT}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" \
         stroke=\"#999999\"/>\n<text x=\"{mid_x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"16\" y=\"{mid_y:.1}\" text-anchor=\"middle\" \
         transform=\"rotate(-90 16 {mid_y:.1})\">{}</text>",
        RIGHT - LEFT,
        BOTTOM - top,
        HEIGHT - 10.0,
        esc(chart.x_label),
        esc(chart.y_label)
    );
}

/// The shaded fault windows, labelled at the top of the plot; labels are
/// staggered over three lines so that nearby windows stay readable.
fn draw_windows(out: &mut String, plot: &Plot, windows: &[Window]) {
    for (i, w) in windows.iter().enumerate() {
        if !w.start_s.is_finite() || !w.end_s.is_finite() {
            continue;
        }
        let colour = window_colour(&w.label);
        let x0 = plot.px(w.start_s.min(w.end_s)).clamp(LEFT, RIGHT);
        let x1 = plot.px(w.start_s.max(w.end_s)).clamp(LEFT, RIGHT);
        let y = plot.top + 12.0 + 11.0 * (i % 3) as f64;
        let (tx, anchor) = if x0 > RIGHT - 90.0 {
            (x1 - 3.0, "end")
        } else {
            (x0 + 3.0, "start")
        };
        let _ = writeln!(
            out,
            "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" \
             fill-opacity=\"0.15\"/>\n<text x=\"{tx:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" \
             font-size=\"10\" fill=\"{colour}\">{}</text>",
            plot.top,
            (x1 - x0).max(1.0),
            BOTTOM - plot.top,
            esc(&w.label)
        );
    }
}

/// Each series as polylines between skipped points, clipped to the plot.
fn draw_series(out: &mut String, plot: &Plot, chart: &Chart<'_>) {
    // The clip depends only on `top`, so equal ids in one HTML page are harmless.
    let (top, clip) = (plot.top, format!("synod-plot-clip-{}", plot.top));
    let _ = writeln!(
        out,
        "<defs><clipPath id=\"{clip}\"><rect x=\"{LEFT}\" y=\"{top:.1}\" width=\"{:.1}\" \
         height=\"{:.1}\"/></clipPath></defs>\n<g clip-path=\"url(#{clip})\" fill=\"none\" \
         stroke-width=\"1.5\" stroke-linejoin=\"round\">",
        RIGHT - LEFT,
        BOTTOM - top
    );
    for (i, s) in chart.series.iter().enumerate() {
        let colour = SERIES_COLOURS[i % SERIES_COLOURS.len()];
        let points = s.points.iter().map(|&p| ok(p, chart.log_y).then_some(p));
        let runs = points.collect::<Vec<_>>();
        for run in runs.split(Option::is_none).filter(|r| !r.is_empty()) {
            let (x, y) = run[0].expect("runs hold only drawable points");
            if run.len() == 1 {
                let (x, y) = (plot.px(x), plot.py(y));
                let _ = writeln!(
                    out,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"{colour}\"/>"
                );
                continue;
            }
            let _ = write!(out, "<polyline stroke=\"{colour}\" points=\"");
            for (j, &(x, y)) in run.iter().flatten().enumerate() {
                let _ = write!(
                    out,
                    "{}{:.1},{:.1}",
                    if j == 0 { "" } else { " " },
                    plot.px(x),
                    plot.py(y)
                );
            }
            out.push_str("\"/>\n");
        }
    }
    out.push_str("</g>\n");
}

/// A window's colour, from its label's first word (the leading run of
/// letters, digits, `_` and `-`): "kill n1" and "kill n2" share a colour.
/// FNV-1a is stable across runs and platforms, unlike std's `RandomState`; the
/// leading salt byte is picked so that the simulator's fault kinds and "kill"
/// all get different colours (see the test).
fn window_colour(label: &str) -> &'static str {
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let word = label
        .trim_start()
        .split(|c| !is_word(c))
        .next()
        .unwrap_or("");
    let bytes = std::iter::once(28).chain(word.bytes());
    let hash = bytes.fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    WINDOW_COLOURS[(hash % WINDOW_COLOURS.len() as u64) as usize]
}

/// Escapes text for SVG element content and attribute values.
fn esc(s: &str) -> String {
    let s = s
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    s.replace('"', "&quot;").replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[(f64, f64)]) -> Series {
        Series {
            name: name.to_string(),
            points: points.to_vec(),
        }
    }

    fn window(start_s: f64, end_s: f64, label: &str) -> Window {
        Window {
            start_s,
            end_s,
            label: label.to_string(),
        }
    }

    fn render_with(series: &[Series], windows: &[Window], log_y: bool) -> String {
        let (title, x_label, y_label) = ("t", "seconds", "ops/s");
        render(&Chart {
            title,
            x_label,
            y_label,
            series,
            windows,
            log_y,
        })
    }

    /// Checks that the document is one `<svg>` whose tags all balance, and
    /// returns the names of its elements in order.
    fn elements(svg: &str) -> Vec<&str> {
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        let (mut open, mut seen) = (Vec::new(), Vec::new());
        for tag in svg.split('<').skip(1) {
            let tag = &tag[..tag.find('>').expect("unterminated tag")];
            assert_eq!(tag.matches('"').count() % 2, 0, "{tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name), "mismatched </{name}>");
            } else {
                seen.push(tag.split_whitespace().next().unwrap());
                open.extend(seen.last().filter(|_| !tag.ends_with('/')));
            }
        }
        assert!(open.is_empty(), "unclosed: {open:?}");
        assert_eq!(seen.iter().filter(|&&n| n == "svg").count(), 1);
        seen
    }

    fn count(svg: &str, name: &str) -> usize {
        elements(svg).into_iter().filter(|&n| n == name).count()
    }

    #[test]
    fn render_is_well_formed() {
        let s = [
            series("put", &[(0.0, 10.0), (1.0, 12.0), (2.5, 3.0)]),
            series("get", &[(0.0, 1.0), (3.0, 2.0)]),
        ];
        let w = [window(1.0, 2.0, "kill n1"), window(1.5, 4.0, "partition")];
        let svg = render_with(&s, &w, false);
        assert_eq!(count(&svg, "polyline"), 2);
        assert_eq!(count(&svg, "rect"), 5, "background, clip, 2 windows, frame");
        // title, axis titles, 2 legend entries, 2 window labels, >= 5 ticks per axis
        assert!(count(&svg, "text") >= 7 + 2 * 5);
        assert!(svg.contains(">kill n1</text>") && svg.contains(">partition</text>"));
        assert!(
            svg.contains(">4</text>"),
            "x axis reaches the last window's end"
        );
        assert_eq!(window_colour("kill n1"), window_colour(" kill:n2"));
        let kinds = [
            "drop",
            "delay",
            "duplicate",
            "partition",
            "crash",
            "pause",
            "disk",
            "kill",
        ];
        let mut colours: Vec<&str> = kinds.iter().map(|k| window_colour(k)).collect();
        colours.sort_unstable();
        colours.dedup();
        assert_eq!(colours.len(), kinds.len(), "fault kinds share a colour");
        assert_eq!(svg, render_with(&s, &w, false), "deterministic");
    }

    #[test]
    fn degenerate_inputs_render() {
        let cases: [&[Series]; 5] = [
            &[],
            &[series("empty", &[])],
            &[series("one", &[(2.0, 5.0)])],
            &[series("zeros", &[(0.0, 0.0), (1.0, 0.0)])],
            &[series(
                "bad",
                &[(f64::NAN, 1.0), (f64::INFINITY, f64::NEG_INFINITY)],
            )],
        ];
        for (log_y, s) in [false, true]
            .into_iter()
            .flat_map(|l| cases.map(|s| (l, s)))
        {
            let svg = render_with(s, &[window(f64::NAN, 1.0, "x")], log_y);
            assert_eq!(count(&svg, "rect"), 3, "{svg}");
        }
        assert_eq!(count(&render_with(cases[2], &[], false), "circle"), 1);
    }

    #[test]
    fn nice_ticks_cover_range() {
        let ranges = [
            (0.0, 1.0),
            (0.0, 7.3),
            (0.0, 1234.0),
            (3.0, 3.0),
            (-2.5, 0.7),
            (0.0, 0.0),
        ];
        for (lo, hi) in ranges {
            let ticks = nice_ticks(lo, hi);
            assert!((5..=8).contains(&ticks.len()), "{lo}..{hi}: {ticks:?}");
            assert!(ticks[0] <= lo && ticks[ticks.len() - 1] >= hi, "{ticks:?}");
            let step = ticks[1] - ticks[0];
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-9),
                "{step}"
            );
            for (i, t) in ticks.iter().enumerate() {
                assert!(
                    (t - ticks[0] - i as f64 * step).abs() < step * 1e-9,
                    "{ticks:?}"
                );
            }
        }
        assert_eq!(nice_ticks(0.0, 1.0), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(nice_ticks(0.0, 7.3), [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(nice_ticks(0.0, 1234.0)[7], 1400.0);
        assert_eq!(nice_ticks(3.0, 3.0), [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]);
        assert_eq!(
            (fmt_tick(0.6, 0.2), fmt_tick(1400.0, 200.0)),
            ("0.6".into(), "1400".into())
        );
    }

    #[test]
    fn log_ticks_are_powers_of_ten() {
        for (lo, hi) in [
            (0.003, 450.0),
            (1.0, 1.0),
            (5.0, 7.0),
            (1e-9, 1e9),
            (100.0, 1e3),
        ] {
            let ticks = log_ticks(lo, hi);
            assert!((2..=8).contains(&ticks.len()), "{ticks:?}");
            assert!(ticks[0] <= lo && ticks[ticks.len() - 1] >= hi, "{ticks:?}");
            for t in ticks.iter().map(|t| t.log10()) {
                assert!((t - t.round()).abs() < 1e-12, "{ticks:?}");
            }
        }
        assert_eq!(
            log_ticks(0.003, 450.0),
            [0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
        );
        let s = [series(
            "lat",
            &[
                (0.0, 0.0),
                (1.0, 0.002),
                (2.0, 3.0),
                (3.0, -1.0),
                (4.0, 1.0),
            ],
        )];
        let svg = render_with(&s, &[], true);
        assert!(
            svg.contains(">0.001</text>") && svg.contains(">10</text>"),
            "{svg}"
        );
        assert_eq!((count(&svg, "polyline"), count(&svg, "circle")), (1, 1));
        assert_eq!(
            svg.matches("stroke-opacity=\"0.4\"").count(),
            8 * 4,
            "minor lines"
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc(r#"a<b & "c">"#), "a&lt;b &amp; &quot;c&quot;&gt;");
        let s = [series("p99 <ms> & \"more\"", &[(0.0, 1.0), (1.0, 2.0)])];
        let (series, windows) = (&s[..], &[window(0.0, 1.0, "drop a->b")][..]);
        let (title, x_label, y_label, log_y) = ("x < y & z", "s", "v", false);
        let svg = render(&Chart {
            title,
            x_label,
            y_label,
            series,
            windows,
            log_y,
        });
        elements(&svg);
        assert!(svg.contains("x &lt; y &amp; z"));
        assert!(svg.contains("p99 &lt;ms&gt; &amp; &quot;more&quot;"));
        assert!(svg.contains("drop a-&gt;b"));
    }

    #[test]
    fn nan_points_are_skipped() {
        let nan = f64::NAN;
        let points = [
            (0.0, 1.0),
            (0.5, 1.5),
            (1.0, nan),
            (nan, 1.0),
            (2.0, 3.0),
            (3.0, 2.0),
        ];
        let svg = render_with(&[series("s", &points)], &[], false);
        let lines: Vec<&str> = svg
            .split("points=\"")
            .skip(1)
            .map(|p| &p[..p.find('"').unwrap()])
            .collect();
        assert_eq!(lines.len(), 2, "a gap where points were skipped");
        assert!(lines.iter().all(|l| l.split(' ').count() == 2), "{lines:?}");
        assert!(
            svg.contains(">3.0</text>") && !svg.contains(">4"),
            "x axis spans 0..3"
        );
    }
}
