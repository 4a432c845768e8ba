//! What a scenario run hands back: verdicts (a claim holding, or a counter-example
//! found), figures with their data, a few tables of numbers, and the trace.

use crate::svg;
use std::fmt::Write;

/// What the notes lead us to expect of a property in one setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The claim should hold: the checker must find no violation.
    Holds,
    /// A counter-example should exist: the checker must report a violation.
    Breaks,
}

/// A checker's finding: which property failed and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property's name, e.g. `agreement`.
    pub property: &'static str,
    /// What the checker saw, with process ids and values.
    pub detail: String,
}

impl Violation {
    /// A violation of `property` described by `detail`.
    pub fn new(property: &'static str, detail: impl Into<String>) -> Violation {
        Violation {
            property,
            detail: detail.into(),
        }
    }
}

/// One property checked in one setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Short name of the claim or counter-example, e.g. `agreement after f+1 rounds`.
    pub claim: String,
    /// What the notes predict.
    pub expect: Expect,
    /// The seed of the run that decided the verdict (the counter-example's seed, or the
    /// first seed of the sweep that upheld the claim).
    pub seed: u64,
    /// How many runs the verdict covers.
    pub runs: u64,
    /// The first violation seen, if any.
    pub violation: Option<Violation>,
}

impl Verdict {
    /// A verdict over `runs` runs from `seed`, with the first violation found.
    pub fn new(
        claim: impl Into<String>,
        expect: Expect,
        seed: u64,
        runs: u64,
        violation: Option<Violation>,
    ) -> Verdict {
        Verdict {
            claim: claim.into(),
            expect,
            seed,
            runs,
            violation,
        }
    }

    /// Whether the run matched the notes' prediction.
    pub fn as_expected(&self) -> bool {
        match self.expect {
            Expect::Holds => self.violation.is_none(),
            Expect::Breaks => self.violation.is_some(),
        }
    }

    /// `claim holds`, `counter-example found`, or the unexpected outcome.
    pub fn label(&self) -> &'static str {
        match (self.expect, self.violation.is_some()) {
            (Expect::Holds, false) => "claim holds",
            (Expect::Breaks, true) => "counter-example found",
            (Expect::Holds, true) => "UNEXPECTED: claim violated",
            (Expect::Breaks, false) => "UNEXPECTED: no counter-example found",
        }
    }

    /// One line for the text report.
    pub fn line(&self) -> String {
        let mut s = format!(
            "[{}] {} (seed {}, {} run{})",
            self.label(),
            self.claim,
            self.seed,
            self.runs,
            if self.runs == 1 { "" } else { "s" }
        );
        if let Some(v) = &self.violation {
            let _ = write!(s, ": {} violated: {}", v.property, v.detail);
        }
        s
    }
}

/// One curve of a figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// (x, y) points in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// A plot: axes, scales and curves; drawn as inline SVG by [`Figure::to_svg`].
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// File-name stem, unique within the scenario, e.g. `disagreement-vs-loss`.
    pub id: String,
    /// The title above the plot.
    pub title: String,
    /// The x axis label, with units.
    pub x_label: String,
    /// The y axis label, with units.
    pub y_label: String,
    /// Draw x on a log10 scale.
    pub log_x: bool,
    /// Draw y on a log10 scale.
    pub log_y: bool,
    /// The curves.
    pub series: Vec<Series>,
}

impl Figure {
    /// An empty linear-scale figure.
    pub fn new(id: &str, title: &str, x_label: &str, y_label: &str) -> Figure {
        Figure {
            id: id.to_string(),
            title: title.to_string(),
            x_label: x_label.to_string(),
            y_label: y_label.to_string(),
            log_x: false,
            log_y: false,
            series: Vec::new(),
        }
    }

    /// Adds a curve.
    pub fn with_series(mut self, name: &str, points: Vec<(f64, f64)>) -> Figure {
        self.series.push(Series {
            name: name.to_string(),
            points,
        });
        self
    }

    /// The figure as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        svg::render(self)
    }

    /// The figure's data as CSV: `series,x,y`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("series,x,y\n");
        for s in &self.series {
            for (x, y) in &s.points {
                let _ = writeln!(out, "{},{x},{y}", s.name.replace(',', ";"));
            }
        }
        out
    }
}

/// Everything one scenario run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The scenario's name as listed by [`crate::list`].
    pub scenario: &'static str,
    /// The seed the run started from.
    pub seed: u64,
    /// One line saying what the scenario shows.
    pub summary: &'static str,
    /// The claims and counter-examples, in order.
    pub verdicts: Vec<Verdict>,
    /// Tables and numbers worth reading (message counts, decision vectors).
    pub notes: Vec<String>,
    /// The plots.
    pub figures: Vec<Figure>,
    /// The event trace of the headline runs, when asked for.
    pub trace: Option<String>,
}

impl Report {
    /// An empty report for `scenario` at `seed`.
    pub fn new(scenario: &'static str, summary: &'static str, seed: u64) -> Report {
        Report {
            scenario,
            seed,
            summary,
            verdicts: Vec::new(),
            notes: Vec::new(),
            figures: Vec::new(),
            trace: None,
        }
    }

    /// Whether every verdict matched the notes' prediction.
    pub fn all_as_expected(&self) -> bool {
        self.verdicts.iter().all(Verdict::as_expected)
    }

    /// The verdict whose claim starts with `prefix` (for tests and callers).
    pub fn verdict(&self, prefix: &str) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.claim.starts_with(prefix))
    }

    /// The human-readable report without the trace.
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "# {} (seed {})\n{}\n\n",
            self.scenario, self.seed, self.summary
        );
        for v in &self.verdicts {
            let _ = writeln!(out, "{}", v.line());
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "{n}");
            }
        }
        for f in &self.figures {
            let _ = writeln!(out, "\nfigure {}: {}", f.id, f.title);
            for s in &f.series {
                let pts: Vec<String> = s
                    .points
                    .iter()
                    .map(|(x, y)| format!("({x}, {y:.4})"))
                    .collect();
                let _ = writeln!(out, "  {}: {}", s.name, pts.join(" "));
            }
        }
        out
    }
}

/// The `index.html` of `lab all`: every verdict and every plot inline.
pub fn index_html(reports: &[Report]) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Synod lab</title><style>\
         body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}\
         .ok{color:#176117}.bad{color:#b00020;font-weight:bold}\
         li{margin:.2em 0}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}\
         </style></head><body><h1>Synod lab</h1>",
    );
    let total = reports.iter().map(|r| r.verdicts.len()).sum::<usize>();
    let good = reports
        .iter()
        .flat_map(|r| r.verdicts.iter())
        .filter(|v| v.as_expected())
        .count();
    let _ = write!(
        out,
        "<p>{good} of {total} verdicts as the notes predict.</p><ul>"
    );
    for r in reports {
        let _ = write!(out, "<li><a href=\"#{0}\">{0}</a></li>", r.scenario);
    }
    out.push_str("</ul>");
    for r in reports {
        let _ = write!(
            out,
            "<h2 id=\"{0}\">{0} <small>(seed {1})</small></h2><p>{2}</p><ul>",
            r.scenario,
            r.seed,
            html_escape(r.summary)
        );
        for v in &r.verdicts {
            let class = if v.as_expected() { "ok" } else { "bad" };
            let _ = write!(out, "<li class=\"{class}\">{}</li>", html_escape(&v.line()));
        }
        out.push_str("</ul>");
        if !r.notes.is_empty() {
            let _ = write!(out, "<pre>{}</pre>", html_escape(&r.notes.join("\n")));
        }
        for f in &r.figures {
            out.push_str(&f.to_svg());
        }
        let _ = write!(out, "<p><a href=\"{0}.txt\">report</a>", r.scenario);
        if r.trace.is_some() {
            let _ = write!(out, " · <a href=\"{0}.trace.txt\">trace</a>", r.scenario);
        }
        out.push_str("</p>");
    }
    out.push_str("</body></html>\n");
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
