//! `synod dev`: a local cluster of real member processes on loopback.

use clap::Args;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

struct Member {
    name: String,
    client: u16,
    peer: u16,
    admin: u16,
}

fn layout(args: &DevArgs) -> Result<Vec<Member>, String> {
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
            Ok(Member {
                name: format!("m{}", i + 1),
                client: client as u16,
                peer: client as u16 + 1,
                admin: client as u16 + 2,
            })
        })
        .collect()
}

fn spawn(m: &Member, cluster: &str, args: &DevArgs) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let mut child = Command::new(exe);
    child
        .arg("node")
        .args(["--name", &m.name])
        .arg("--data-dir")
        .arg(args.data_dir.join(&m.name))
        .args(["--listen-client-urls", &url(m.client)])
        .args(["--advertise-client-urls", &url(m.client)])
        .args(["--listen-peer-urls", &url(m.peer)])
        .args(["--initial-advertise-peer-urls", &url(m.peer)])
        .args(["--initial-cluster", cluster])
        .args(["--initial-cluster-token", "synod-dev"])
        .args(["--listen-metrics-urls", &url(m.admin)])
        .args(["--snapshot-count", &args.snapshot_count.to_string()])
        .args(args.log.to_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal
    // so members never outlive a `synod dev` that was killed.
    unsafe {
        child.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = child.spawn()?;
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
        let prefix = format!("[{}] ", m.name);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{prefix}{line}");
            }
        });
    }
    Ok(child)
}

/// GET a path on a local admin port; the body on success.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().ok()?,
        Duration::from_millis(300),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn wait_for_leader(members: &[Member], children: &mut [Child]) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !STOP.load(Ordering::SeqCst) {
        for (m, c) in members.iter().zip(children.iter_mut()) {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!("member {} exited early ({status})", m.name));
            }
            if http_get(m.admin, "/status").is_some_and(|b| b.contains("\"role\":\"leader\"")) {
                return Ok(m.name.clone());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("no leader was elected within 30 s".into())
}

fn stop_all(members: &[Member], children: &mut [Child]) {
    for c in children.iter() {
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (m, c) in members.iter().zip(children.iter_mut()) {
        loop {
            match c.try_wait() {
                Ok(Some(s)) => {
                    println!("synod dev: {} stopped ({s})", m.name);
                    break;
                }
                _ if Instant::now() > deadline => {
                    let _ = c.kill();
                    let _ = c.wait();
                    println!("synod dev: {} killed after 10 s", m.name);
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// Runs the local cluster until SIGINT or SIGTERM.
pub fn run(args: DevArgs) -> ExitCode {
    let members = match layout(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    crate::bench_cmd::stop_on_signals(&STOP);
    let cluster: Vec<String> = members
        .iter()
        .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
        .collect();
    let cluster = cluster.join(",");
    let mut children = Vec::new();
    for m in &members {
        match spawn(m, &cluster, &args) {
            Ok(c) => children.push(c),
            Err(e) => {
                eprintln!("error: cannot start {}: {e}", m.name);
                stop_all(&members[..children.len()], &mut children);
                return ExitCode::from(1);
            }
        }
    }
    let code = match wait_for_leader(&members, &mut children) {
        Ok(leader) => {
            announce(&members, &leader, &args);
            watch(&members, &mut children);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    };
    stop_all(&members, &mut children);
    code
}

fn announce(members: &[Member], leader: &str, args: &DevArgs) {
    let endpoints: Vec<String> = members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.client))
        .collect();
    let admin: Vec<String> = members
        .iter()
        .map(|m| format!("http://127.0.0.1:{}", m.admin))
        .collect();
    let ep = endpoints.join(",");
    println!("leader: {leader}");
    println!("endpoints: {ep}");
    println!(
        "admin: {} (/health /metrics /status /version)",
        admin.join(",")
    );
    println!("data: {}", args.data_dir.display());
    println!("try:");
    println!("  etcdctl --endpoints={ep} put greeting hello");
    println!("  etcdctl --endpoints={ep} get greeting -w json");
    println!("  etcdctl --endpoints={ep} endpoint status -w table");
    println!("press Ctrl-C to stop every member");
}

fn watch(members: &[Member], children: &mut [Child]) {
    let mut reported = vec![false; children.len()];
    while !STOP.load(Ordering::SeqCst) {
        for (i, c) in children.iter_mut().enumerate() {
            if let Ok(Some(s)) = c.try_wait() {
                if !reported[i] {
                    println!("synod dev: {} exited ({s})", members[i].name);
                    reported[i] = true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("synod dev: stopping");
}
