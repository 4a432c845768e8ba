//! `synod snapshot restore`: a member's data dir of a new cluster, built from a backup
//! (`etcdctl snapshot save`'s file), as `etcdutl snapshot restore` builds etcd's. Every
//! member of the new cluster is restored from the same file with the same
//! `--initial-cluster`; each then starts with `--initial-cluster-state new` and holds
//! the backup's keys, leases and revision.
//!
//! The data dir gets the new cluster's identity, and a Raft snapshot at the store's
//! applied index (term 1) whose membership is the new cluster's founding members.

use crate::backup::{summarize, Summary};
use crate::config::{cluster_id_of, member_id, parse_initial_cluster};
use crate::members::context;
use engine::{IoId, NodeId};
use raft::{HardState, LogIndex, PersistRequest, Snapshot, SnapshotMeta, SnapshotWrite, Term};
use raft_storage::{DiskStorage, RaftStorage};
use std::path::PathBuf;
use storage::{FileBackend, StorageOptions};

/// What a restore needs (etcdutl's flags).
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The member this data dir is for (`--name`).
    pub name: String,
    /// Where to build it; must not exist yet, or be empty (`--data-dir`).
    pub data_dir: PathBuf,
    /// The new cluster (`--initial-cluster`, `name=peer-url,...`).
    pub initial_cluster: String,
    /// The member's peer URLs (`--initial-advertise-peer-urls`).
    pub advertise_peer_urls: Vec<String>,
    /// `--initial-cluster-token`.
    pub token: String,
}

/// Builds the data dir from the snapshot file's bytes; returns what the file held.
pub fn restore(file: &[u8], o: &RestoreOptions) -> Result<Summary, String> {
    let (backup, store, summary) = summarize(file)?;
    let cluster = parse_initial_cluster(&o.initial_cluster).map_err(|e| e.0)?;
    let Some((_, url)) = cluster.iter().find(|(n, _)| *n == o.name) else {
        return Err(format!(
            "--initial-cluster has no member named `{}`",
            o.name
        ));
    };
    if !o.advertise_peer_urls.contains(url) {
        return Err(format!(
            "--initial-cluster has {}={url}, but --initial-advertise-peer-urls is {}",
            o.name,
            o.advertise_peer_urls.join(",")
        ));
    }
    if std::fs::read_dir(&o.data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!("data-dir {} exists", o.data_dir.display()));
    }
    let ids: Vec<(NodeId, String, String)> = (cluster.iter())
        .map(|(n, u)| (NodeId(member_id(n, u, &o.token)), n.clone(), u.clone()))
        .collect();
    let me = ids
        .iter()
        .find(|(_, n, _)| *n == o.name)
        .map(|(id, _, _)| *id);
    let me = me.ok_or("--name is not in --initial-cluster")?;
    let voters: Vec<NodeId> = ids.iter().map(|(id, _, _)| *id).collect();
    let mut membership = engine::Membership::of_voters(voters.iter().copied());
    for (id, name, url) in &ids {
        let context = context(name, std::slice::from_ref(url));
        let update = engine::ConfChange::Update { id: *id, context };
        membership = membership.apply(&update).map_err(|e| e.to_string())?;
    }
    let member_dir = o.data_dir.join("member");
    let wal_dir = member_dir.join("wal");
    std::fs::create_dir_all(&wal_dir).map_err(|e| format!("{}: {e}", wal_dir.display()))?;
    crate::check_identity(&member_dir, cluster_id_of(&voters, &o.token), me.0).map_err(|e| e.0)?;
    let backend = FileBackend::open(&wal_dir).map_err(|e| e.to_string())?;
    let (mut disk, _) =
        DiskStorage::open(backend, StorageOptions::default()).map_err(|e| e.to_string())?;
    // The store skips commands at or below its applied index: the new log starts there.
    let index = LogIndex(store.applied_index().max(1));
    let meta = SnapshotMeta {
        index,
        term: Term(1),
    };
    let data = raft::stored_snapshot(&backup.store, &membership);
    let write = PersistRequest {
        io: IoId(1),
        hard_state: Some(HardState {
            term: Term(1),
            vote: None,
            commit: index,
        }),
        snapshot: Some(SnapshotWrite::Store(Snapshot { meta, data })),
        entries: None,
    };
    disk.write(&write).map_err(|e| e.to_string())?;
    disk.sync().map_err(|e| e.to_string())?;
    Ok(summary)
}
