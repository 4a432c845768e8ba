//! `synod dev`: a local cluster of real member processes on loopback.

use clap::Args;
use harness::{Cluster, MemberPorts, Output, Spec};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Flags of `synod dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// Number of members.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Where members keep their data (one sub-directory each); reused on the next run.
    #[arg(long, default_value = "synod-dev-data")]
    pub data_dir: PathBuf,
    /// First port: member i listens for clients on base+3i, peers on base+3i+1 and admin
    /// HTTP on base+3i+2. Without it, etcd's local layout: clients on 2379, 22379, 32379,
    /// ..., peers on the next port, admin HTTP on the one after
    #[arg(long)]
    pub base_port: Option<u16>,
    /// Applied entries between snapshots, passed to every member.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
}

static STOP: std::sync::LazyLock<std::sync::Arc<AtomicBool>> =
    std::sync::LazyLock::new(Default::default);

/// etcd's local layout (clients on 2379, 22379, 32379, …; peers and admin HTTP on the
/// two ports after each) or, with `--base-port`, three consecutive ports per member.
fn layout(args: &DevArgs) -> Result<Vec<MemberPorts>, String> {
    if args.nodes == 0 || (args.nodes > 6 && args.base_port.is_none()) {
        return Err("--nodes must be between 1 and 6 (more need --base-port)".into());
    }
    (0..args.nodes)
        .map(|i| {
            let client = match args.base_port {
                Some(b) => b as u32 + 3 * i as u32,
                None if i == 0 => 2379,
                None => 2379 + 10_000 * (i as u32 + 1),
            };
            if client + 2 > 65_535 {
                return Err(format!("port {client} is out of range"));
            }
            Ok(MemberPorts {
                client: client as u16,
                peer: client as u16 + 1,
                admin: client as u16 + 2,
            })
        })
        .collect()
}

/// The cluster `synod dev` runs: members' output on our stdout, prefixed.
fn cluster(args: &DevArgs) -> Result<Cluster, String> {
    let ports = layout(args)?;
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let mut spec = Spec::new(exe, args.data_dir.clone(), Output::Prefixed);
    spec.token = "synod-dev".into();
    spec.snapshot_count = args.snapshot_count;
    spec.flags = args.log.to_args().to_vec();
    spec.parent_death_signal = libc::SIGTERM;
    Ok(Cluster::new(spec, &ports))
}

/// Runs the local cluster until SIGINT or SIGTERM.
pub fn run(args: DevArgs) -> ExitCode {
    let mut cluster = match cluster(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    harness::signals::stop_on(&STOP);
    if let Err(e) = cluster.spawn_all() {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let code = match cluster.leader_within(Duration::from_secs(30), &STOP) {
        Ok(leader) => {
            announce(&cluster, leader, &args);
            watch(&mut cluster);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    };
    for (i, status) in cluster.terminate_all(Duration::from_secs(10)) {
        match status {
            Some(s) => println!("synod dev: {} stopped ({s})", cluster.members[i].name),
            None => println!("synod dev: {} killed after 10 s", cluster.members[i].name),
        }
    }
    code
}

fn announce(cluster: &Cluster, leader: usize, args: &DevArgs) {
    let ep = cluster.endpoints();
    println!("leader: {}", cluster.members[leader].name);
    println!("endpoints: {ep}");
    println!(
        "admin: {} (/health /metrics /status /version)",
        cluster.admin_urls().join(",")
    );
    println!("data: {}", args.data_dir.display());
    println!("try:");
    println!("  etcdctl --endpoints={ep} put greeting hello");
    println!("  etcdctl --endpoints={ep} get greeting -w json");
    println!("  etcdctl --endpoints={ep} endpoint status -w table");
    println!("press Ctrl-C to stop every member");
}

/// Reports members that exit on their own until SIGINT or SIGTERM.
fn watch(cluster: &mut Cluster) {
    while !STOP.load(Ordering::SeqCst) {
        for (i, s) in cluster.reap_exited() {
            println!("synod dev: {} exited ({s})", cluster.members[i].name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("synod dev: stopping");
}
