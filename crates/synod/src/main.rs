//! `synod`: the command-line entry point.

mod dev_cmd;
mod lab_cmd;
mod logging;
mod node_cmd;
mod sim_cmd;
mod snapshot_cmd;

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
    Bench(Box<bench::BenchArgs>),
    /// Run one cluster member (etcd's flag names).
    Node(Box<node_cmd::NodeArgs>),
    /// Run a local cluster of member processes on loopback.
    Dev(dev_cmd::DevArgs),
    /// Fault injection against real member processes, with linearizability checking.
    Chaos(chaos::ChaosArgs),
    /// The notes' classic algorithms (two generals, flooding, Byzantine generals, Paxos,
    /// 2PC/3PC, reliable multicast, checkpointing, TMR, failure detectors), run on a
    /// seeded simulator, checked and plotted.
    Lab(lab_cmd::LabArgs),
    /// Check a backup (`etcdctl snapshot save`'s file) and restore it into a new
    /// cluster's data dirs (etcdutl's `snapshot status` and `snapshot restore`).
    #[command(subcommand)]
    Snapshot(snapshot_cmd::SnapshotCommand),
}

/// mimalloc instead of glibc's malloc: the server allocates per request on several
/// threads, and glibc's arenas showed up in the leader's profile (docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process. mimalloc asks for them on its arenas,
/// and then every fault on fresh or purged memory zeroes 2 MiB: under 256 clients of
/// puts that was over a third of the Raft thread's samples (`clear_page_erms`), and
/// turning it off cut member CPU per put by about 4–7 % (docs/benchmarks.md, "Tried").
fn no_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only; failure
    // leaves the process as it was.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(cmd) => sim_cmd::run(cmd),
        Command::Bench(args) => bench::run(*args),
        Command::Node(args) => node_cmd::run(*args),
        Command::Dev(args) => dev_cmd::run(args),
        Command::Chaos(args) => chaos::run(args),
        Command::Lab(args) => lab_cmd::run(args),
        Command::Snapshot(cmd) => snapshot_cmd::run(cmd),
    }
}
