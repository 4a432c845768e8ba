//! A stand-in driver until `synod lab` is wired: `lab list`, `lab NAME [SEED] [--trace]`,
//! `lab all DIR`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("list") => {
            for name in lab::list() {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Some("all") => {
            let dir = args.get(1).map_or("lab-report", String::as_str);
            match lab::run_all(std::path::Path::new(dir)) {
                Ok(reports) => {
                    for r in &reports {
                        print!("{}", r.render_text());
                    }
                    exit_for(reports.iter().all(lab::Report::all_as_expected))
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Some(name) => {
            let seed = args
                .get(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(lab::DEFAULT_SEED);
            let trace = args.iter().any(|a| a == "--trace");
            match lab::run(name, seed, trace) {
                Ok(report) => {
                    print!("{}", report.render_text());
                    if let Some(t) = &report.trace {
                        print!("\n{t}");
                    }
                    exit_for(report.all_as_expected())
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn exit_for(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
