//! Backups: `Maintenance.Snapshot` streams a consistent copy of the store, and
//! [`restore`] builds a member's data dir of a new cluster from one (what `synod
//! snapshot restore` runs).
//!
//! The file etcdctl writes (`etcdctl snapshot save`) is the stream's bytes: a body that
//! is a multiple of 512 bytes, then the SHA-256 of the body (etcdctl checks both). The
//! body is `SYNODSNP | store | head | head_len u32 | store_len u64 | SNPEND01 | zeros`.
//! `store` is the key-value store's snapshot (`kv::SnapshotWriter`) as it streams out,
//! with the first `head_len` bytes (its key count, known only at the end) zero; `head`
//! is those bytes as they should be. So the copy streams in 32 KiB messages and is never
//! whole in memory on the member, and it reads the store a few thousand keys at a time
//! under its read lock, holding the store's history back meanwhile, as a member's own
//! snapshots do.

use crate::state::Shared;
use etcdpb::etcdserverpb as pb;
use kv::{SnapshotWriter, Store};
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tonic::Status;

const MAGIC: &[u8; 8] = b"SYNODSNP";
const END: &[u8; 8] = b"SNPEND01";
/// Bytes per message, as etcd sends.
const CHUNK: usize = 32 << 10;
/// Keys serialized per hold of the read lock.
const KEYS_PER_STEP: usize = 4096;

/// What a stream sends: messages, or the error that ends it.
pub type Chunks = mpsc::Receiver<Result<pb::SnapshotResponse, Status>>;

/// Starts streaming a copy of the store as it is now.
pub fn stream(shared: std::sync::Arc<Shared>, header: Option<pb::ResponseHeader>) -> Chunks {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut out = Out {
            tx,
            header,
            sha: Sha256::new(),
            len: 0,
        };
        if let Err(e) = produce(&shared, &mut out).await {
            let _ = out.tx.send(Err(e)).await;
        }
    });
    rx
}

struct Out {
    tx: mpsc::Sender<Result<pb::SnapshotResponse, Status>>,
    header: Option<pb::ResponseHeader>,
    sha: Sha256,
    len: u64,
}

impl Out {
    async fn send(&mut self, blob: Vec<u8>) -> Result<(), Status> {
        self.sha.update(&blob);
        self.len += blob.len() as u64;
        let msg = pb::SnapshotResponse {
            header: self.header,
            remaining_bytes: 1,
            blob,
        };
        // The client went away: stop reading the store.
        self.tx
            .send(Ok(msg))
            .await
            .map_err(|_| Status::cancelled("snapshot receiver gone"))
    }
}

fn interrupted() -> Status {
    Status::unavailable(
        "etcdserver: snapshot interrupted: the member installed a snapshot from the leader; retry",
    )
}

async fn produce(shared: &Shared, out: &mut Out) -> Result<(), Status> {
    let generation = shared.store_generation.load(Ordering::SeqCst);
    let mut writer = {
        let mut store = shared.store.write();
        let w = SnapshotWriter::begin(&store);
        store.hold_history();
        w
    };
    let result = serialize(shared, &mut writer, generation, out).await;
    {
        let mut store = shared.store.write();
        // A store installed meanwhile holds nothing of ours.
        if shared.store_generation.load(Ordering::SeqCst) == generation {
            store.release_history();
        }
    }
    result?;
    let head_len = writer.head_len();
    let store_len = out.len - MAGIC.len() as u64;
    let end = writer.finish_streamed();
    let store_len = store_len + end.tail.len() as u64;
    let mut footer = end.tail;
    footer.extend_from_slice(&end.head);
    footer.extend_from_slice(&(head_len as u32).to_le_bytes());
    footer.extend_from_slice(&store_len.to_le_bytes());
    footer.extend_from_slice(END);
    let body = out.len + footer.len() as u64;
    footer.resize(footer.len() + (512 - body % 512) as usize % 512, 0);
    out.send(footer).await?;
    let sum = std::mem::take(&mut out.sha).finalize().to_vec();
    let last = pb::SnapshotResponse {
        header: out.header,
        remaining_bytes: 0,
        blob: sum,
    };
    out.tx
        .send(Ok(last))
        .await
        .map_err(|_| Status::cancelled("snapshot receiver gone"))
}

async fn serialize(
    shared: &Shared,
    writer: &mut SnapshotWriter,
    generation: u64,
    out: &mut Out,
) -> Result<(), Status> {
    out.send(MAGIC.to_vec()).await?;
    let head_len = writer.head_len();
    let mut first = true;
    loop {
        let done = {
            let store = shared.store.read();
            if shared.store_generation.load(Ordering::SeqCst) != generation {
                return Err(interrupted());
            }
            writer.step(&store, KEYS_PER_STEP)
        };
        while let Some(mut chunk) = writer.take_pending(CHUNK, Vec::new()) {
            if first {
                // The head goes at the end, once the key count is known.
                chunk[..head_len].fill(0);
                first = false;
            }
            out.send(chunk).await?;
        }
        if done {
            if first {
                // Nothing was taken: the whole store is pending, head included.
                if let Some(mut chunk) = writer.take_pending(0, Vec::new()) {
                    chunk[..head_len].fill(0);
                    out.send(chunk).await?;
                }
            }
            return Ok(());
        }
        tokio::task::yield_now().await;
    }
}

/// A snapshot file read back: the store's bytes, whole, and what describes the file.
pub struct Backup {
    /// The store, as `kv::Store::restore` reads it.
    pub store: Vec<u8>,
    /// The file's size.
    pub size: u64,
    /// The SHA-256 the file ends with, as hex.
    pub sha256: String,
}

/// Reads and checks a snapshot file (`etcdctl snapshot save`'s output).
pub fn read(bytes: &[u8]) -> Result<Backup, String> {
    let n = bytes.len();
    if n < 32 + MAGIC.len() + 20 || !(n - 32).is_multiple_of(512) {
        return Err(
            "not a Synod snapshot: its size is not a multiple of 512 plus a SHA-256".into(),
        );
    }
    let (body, sum) = bytes.split_at(n - 32);
    let got = Sha256::digest(body);
    if got.as_slice() != sum {
        return Err(
            "snapshot file checksum mismatch: the file is damaged (SHA-256 differs)".into(),
        );
    }
    if &body[..8] != MAGIC {
        return Err("not a Synod snapshot (no SYNODSNP header)".into());
    }
    let end = body.len() - body.iter().rev().take_while(|b| **b == 0).count();
    let bad = || "snapshot file is malformed".to_string();
    if end < 8 + 12 || &body[end - 8..end] != END {
        return Err(bad());
    }
    let store_len =
        u64::from_le_bytes(body[end - 16..end - 8].try_into().map_err(|_| bad())?) as usize;
    let head_len =
        u32::from_le_bytes(body[end - 20..end - 16].try_into().map_err(|_| bad())?) as usize;
    let head_at = (end - 20).checked_sub(head_len).ok_or_else(bad)?;
    if 8 + store_len != head_at || head_len > store_len {
        return Err(bad());
    }
    let mut store = body[8..8 + store_len].to_vec();
    store[..head_len].copy_from_slice(&body[head_at..head_at + head_len]);
    Ok(Backup {
        store,
        size: n as u64,
        sha256: got.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// What `synod snapshot status` prints about a file.
pub struct Summary {
    /// The store's revision.
    pub revision: i64,
    /// Keys with a live value.
    pub keys: usize,
    /// The file's size.
    pub size: u64,
    /// The store's hash at its revision (HashKV's).
    pub hash: u32,
}

/// Reads, checks and describes a snapshot file.
pub fn summarize(bytes: &[u8]) -> Result<(Backup, Store, Summary), String> {
    let b = read(bytes)?;
    let store =
        Store::restore(&b.store).map_err(|_| "snapshot file holds a damaged store".to_string())?;
    let summary = Summary {
        revision: store.revision(),
        keys: store.stored_keys(),
        size: b.size,
        hash: store.hash(store.revision()),
    };
    Ok((b, store, summary))
}
