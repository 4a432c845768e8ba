//! `synod`: the command-line entry point.

mod bench_cmd;
mod bench_wal;
mod dev_cmd;
mod node_cmd;
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
    /// Run one cluster member (etcd's flag names).
    Node(Box<node_cmd::NodeArgs>),
    /// Run a local cluster of member processes on loopback.
    Dev(dev_cmd::DevArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(cmd) => sim_cmd::run(cmd),
        Command::Bench(cmd) => bench_cmd::run(cmd),
        Command::Node(args) => node_cmd::run(*args),
        Command::Dev(args) => dev_cmd::run(args),
    }
}
