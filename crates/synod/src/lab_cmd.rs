//! `synod lab`: the notes' classic algorithms, run on a seeded simulator, checked, and
//! plotted (the `lab` crate does the work; this is its command line).

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// `synod lab list`, `synod lab all --report DIR`, `synod lab SCENARIO [--seed S]
/// [--trace] [--report DIR]`.
#[derive(Args, Debug)]
pub struct LabArgs {
    /// A scenario (`synod lab list` names them), `list`, or `all`.
    scenario: String,
    /// The seed the scenario's claims and searches start from.
    #[arg(long, default_value_t = lab::DEFAULT_SEED)]
    seed: u64,
    /// Print the run's full event trace (byte-identical for the same seed).
    #[arg(long)]
    trace: bool,
    /// Write the report (index.html, per-scenario text, traces, SVG and CSV figures)
    /// to this directory.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Runs the lab command; exit 1 when a verdict is not what the notes predict.
pub fn run(args: LabArgs) -> ExitCode {
    match args.scenario.as_str() {
        "list" => {
            for name in lab::list() {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        "all" => {
            let dir = args.report.unwrap_or_else(|| PathBuf::from("lab-report"));
            match lab::run_all(&dir) {
                Ok(reports) => {
                    for r in &reports {
                        print!("{}", r.render_text());
                    }
                    println!("report: {}", dir.join("index.html").display());
                    verdict(reports.iter().all(lab::Report::all_as_expected))
                }
                Err(e) => fail(e),
            }
        }
        name => match lab::run(name, args.seed, args.trace || args.report.is_some()) {
            Ok(report) => {
                print!("{}", report.render_text());
                if let Some(dir) = &args.report {
                    if let Err(e) = lab::write_report(dir, std::slice::from_ref(&report)) {
                        return fail(e);
                    }
                }
                if let (true, Some(t)) = (args.trace, &report.trace) {
                    print!("\n{t}");
                }
                verdict(report.all_as_expected())
            }
            Err(e) => fail(e),
        },
    }
}

fn verdict(as_expected: bool) -> ExitCode {
    if as_expected {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: a verdict differs from what the notes predict (marked UNEXPECTED)");
        ExitCode::FAILURE
    }
}

fn fail(e: lab::LabError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}
