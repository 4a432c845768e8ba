//! `synod`: the command-line entry point.

mod bench_cmd;
mod bench_wal;
mod sim_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "synod",
    version,
    about = "A fault-tolerant, strongly consistent key-value service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deterministic simulation of a protocol under injected faults.
    #[command(subcommand)]
    Sim(sim_cmd::SimCommand),
    /// Benchmarks of the real storage path.
    #[command(subcommand)]
    Bench(bench_cmd::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(cmd) => sim_cmd::run(cmd),
        Command::Bench(cmd) => bench_cmd::run(cmd),
    }
}
