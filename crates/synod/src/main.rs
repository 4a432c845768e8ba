//! `synod`: the command-line entry point.

mod bench_cluster;
mod bench_cmd;
mod bench_compare;
mod bench_load;
mod bench_mem;
mod bench_report;
mod bench_wal;
mod chaos;
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
    /// Load generator for any etcd v3 endpoint (`--compare-etcd`: Synod next to etcd
    /// 3.4), and benchmarks of the real storage path (`wal`).
    Bench(Box<bench_cmd::BenchArgs>),
    /// Run one cluster member (etcd's flag names).
    Node(Box<node_cmd::NodeArgs>),
    /// Run a local cluster of member processes on loopback.
    Dev(dev_cmd::DevArgs),
    /// Fault injection against real member processes, with linearizability checking.
    Chaos(chaos::ChaosArgs),
}

/// mimalloc instead of glibc's malloc: the server allocates per request on several
/// threads, and glibc's arenas showed up in the leader's profile (docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(cmd) => sim_cmd::run(cmd),
        Command::Bench(args) => bench_cmd::run(*args),
        Command::Node(args) => node_cmd::run(*args),
        Command::Dev(args) => dev_cmd::run(args),
        Command::Chaos(args) => chaos::run(args),
    }
}
