//! `synod snapshot status|restore`: etcdutl's snapshot commands for the files that
//! `etcdctl snapshot save` writes from a Synod member.

use clap::{Args, Subcommand};
use server::restore::{restore, RestoreOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// `synod snapshot …`.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Print a snapshot file's hash, revision, key count and size (checksum verified).
    Status(StatusArgs),
    /// Build a member's data dir of a new cluster from a snapshot file.
    Restore(RestoreArgs),
}

/// Flags of `synod snapshot status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The file `etcdctl snapshot save` wrote.
    pub file: PathBuf,
    /// Output format: simple, table or json (etcdutl's).
    #[arg(short = 'w', long, default_value = "simple")]
    pub write_out: String,
}

/// Flags of `synod snapshot restore` (etcdutl's names).
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The file `etcdctl snapshot save` wrote.
    pub file: PathBuf,
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Where to build the data dir (default: <name>.synod); must not exist.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The new cluster: name=peer-url,...
    #[arg(long, default_value = "default=http://127.0.0.1:2380")]
    pub initial_cluster: String,
    /// This member's peer URLs.
    #[arg(long, default_value = "http://127.0.0.1:2380")]
    pub initial_advertise_peer_urls: String,
    /// The new cluster's token.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
}

fn read(file: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))
}

fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn status(a: &StatusArgs) -> Result<(), String> {
    let bytes = read(&a.file)?;
    let (_, _, s) = server::backup::summarize(&bytes)?;
    match a.write_out.as_str() {
        "simple" => println!(
            "{:x}, {}, {}, {}",
            s.hash,
            s.revision,
            s.keys,
            human(s.size)
        ),
        "json" => println!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
            s.hash, s.revision, s.keys, s.size
        ),
        "table" => {
            println!("+----------+----------+------------+------------+");
            println!("|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |");
            println!("+----------+----------+------------+------------+");
            println!(
                "| {:>8x} | {:>8} | {:>10} | {:>10} |",
                s.hash,
                s.revision,
                s.keys,
                human(s.size)
            );
            println!("+----------+----------+------------+------------+");
        }
        other => return Err(format!("-w: `{other}` is not one of simple, table, json")),
    }
    Ok(())
}

fn restore_cmd(a: &RestoreArgs) -> Result<(), String> {
    let bytes = read(&a.file)?;
    let opts = RestoreOptions {
        name: a.name.clone(),
        data_dir: (a.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(format!("{}.synod", a.name))),
        initial_cluster: a.initial_cluster.clone(),
        advertise_peer_urls: a
            .initial_advertise_peer_urls
            .split(',')
            .map(String::from)
            .collect(),
        token: a.initial_cluster_token.clone(),
    };
    let s = restore(&bytes, &opts)?;
    println!(
        "restored snapshot (revision {}, {} keys) into {} for member {}",
        s.revision,
        s.keys,
        opts.data_dir.display(),
        a.name
    );
    Ok(())
}

/// Runs a snapshot command.
pub fn run(cmd: SnapshotCommand) -> ExitCode {
    let r = match &cmd {
        SnapshotCommand::Status(a) => status(a),
        SnapshotCommand::Restore(a) => restore_cmd(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}
