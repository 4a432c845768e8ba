//! Snapshot files: `snap-<index>-<epoch>.snap` (16 hex digits each), holding
//! `magic | index | epoch | len | data crc32c | header crc32c | data`. The data's CRC
//! travels with InstallSnapshot chunks read straight from the file, so the receiver can
//! check the whole snapshot end to end. Written to a temporary file, fsynced, renamed,
//! then the directory is fsynced; only then are snapshots older than the previous one
//! removed (the previous one may still be in transfer to a lagging follower).

use crate::backend::{Backend, IoError};
use crate::error::StorageError;
use crate::SnapshotChunk;

/// Names a stored snapshot: the index it covers and the engine's epoch at that index
/// (Raft's term), both engine-neutral words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId {
    /// The last index the snapshot covers.
    pub index: u64,
    /// The epoch of that index.
    pub epoch: u64,
}

/// A stored snapshot, verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// What it is.
    pub id: SnapshotId,
    /// The state machine's bytes.
    pub data: Vec<u8>,
}

const MAGIC: &[u8; 8] = b"SYNSNAP2";
pub(crate) const HEADER_BYTES: usize = 40;

pub(crate) fn name(meta: SnapshotId) -> String {
    format!("snap-{:016x}-{:016x}.snap", meta.index, meta.epoch)
}

fn parse_name(name: &str) -> Option<SnapshotId> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    let (i, t) = rest.split_once('-')?;
    Some(SnapshotId {
        index: u64::from_str_radix(i, 16).ok()?,
        epoch: u64::from_str_radix(t, 16).ok()?,
    })
}

/// The file's header (the data follows it).
fn header(meta: SnapshotId, data: &[u8]) -> Vec<u8> {
    header_for(meta, data.len() as u64, crc32c::crc32c(data))
}

/// The header of a file whose data has `len` bytes with CRC32C `crc`.
pub(crate) fn header_for(meta: SnapshotId, len: u64, crc: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&meta.index.to_le_bytes());
    out.extend_from_slice(&meta.epoch.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out
}

/// A header that passed its checks: the data's length and CRC.
struct Header {
    len: u64,
    data_crc: u32,
}

/// Checks magic, header CRC and the name's index and epoch.
fn parse_header(file: &str, meta: SnapshotId, d: &[u8]) -> Result<Header, StorageError> {
    let bad = |offset: u64, reason: &str| StorageError::corrupt(file, offset, reason);
    if d.len() < HEADER_BYTES || &d[..8] != MAGIC {
        return Err(bad(0, "snapshot header missing or wrong magic"));
    }
    let u = |at: usize| u64::from_le_bytes(d[at..at + 8].try_into().unwrap_or([0; 8]));
    let w = |at: usize| u32::from_le_bytes(d[at..at + 4].try_into().unwrap_or([0; 4]));
    if crc32c::crc32c(&d[..36]) != w(36) {
        return Err(bad(36, "snapshot header checksum mismatch"));
    }
    if u(8) != meta.index || u(16) != meta.epoch {
        return Err(bad(8, "snapshot header does not match its file name"));
    }
    Ok(Header {
        len: u(24),
        data_crc: w(32),
    })
}

/// Writes snapshot `meta` durably, then removes older snapshot files.
pub fn save<B: Backend>(b: &mut B, meta: SnapshotId, data: &[u8]) -> Result<(), StorageError> {
    save_durable(b, meta, data)?;
    remove_older(b, meta.index)
}

/// Writes snapshot `meta` durably under its final name (older snapshots stay).
pub fn save_durable<B: Backend>(
    b: &mut B,
    meta: SnapshotId,
    data: &[u8],
) -> Result<(), StorageError> {
    let final_name = name(meta);
    let tmp = format!("{final_name}.tmp");
    b.write_file(&tmp, &[&header(meta, data), data])?;
    b.rename(&tmp, &final_name)?;
    b.sync_dir()?;
    Ok(())
}

/// Whether the file of snapshot `meta` is there.
pub fn exists<B: Backend>(b: &mut B, meta: SnapshotId) -> Result<bool, StorageError> {
    Ok(b.list()?.contains(&name(meta)))
}

/// Removes snapshot files older than the newest one before `index` (that one stays, as
/// a transfer to a lagging follower may still be reading it).
pub fn remove_older<B: Backend>(b: &mut B, index: u64) -> Result<(), StorageError> {
    let names = b.list()?;
    let previous = names
        .iter()
        .filter_map(|n| parse_name(n))
        .map(|m| m.index)
        .filter(|i| *i < index)
        .max();
    let mut removed = false;
    for n in names {
        if parse_name(&n).is_some_and(|m| Some(m.index) < previous) {
            b.remove(&n)?;
            removed = true;
        }
    }
    if removed {
        b.sync_dir()?;
    }
    Ok(())
}

/// Removes every snapshot older than `index` (a defragmentation: only the newest
/// is kept).
pub fn remove_before<B: Backend>(b: &mut B, index: u64) -> Result<(), StorageError> {
    let mut removed = false;
    for n in b.list()? {
        if parse_name(&n).is_some_and(|m| m.index < index) {
            b.remove(&n)?;
            removed = true;
        }
    }
    if removed {
        b.sync_dir()?;
    }
    Ok(())
}

/// The newest snapshot, verified; stray temporary files are removed. A newest snapshot
/// that fails verification refuses to start.
pub fn load_latest<B: Backend>(b: &mut B) -> Result<Option<StoredSnapshot>, StorageError> {
    let names = b.list()?;
    for n in names.iter().filter(|n| n.ends_with(".snap.tmp")) {
        b.remove(n)?;
    }
    let Some((meta, file)) = names
        .iter()
        .filter_map(|n| parse_name(n).map(|m| (m, n)))
        .max_by_key(|(m, _)| m.index)
    else {
        return Ok(None);
    };
    let data = b.read(file)?;
    verify(file, meta, &data).map(Some)
}

fn verify(file: &str, meta: SnapshotId, d: &[u8]) -> Result<StoredSnapshot, StorageError> {
    let bad = |offset: usize, reason: &str| StorageError::corrupt(file, offset as u64, reason);
    let h = parse_header(file, meta, d)?;
    let len = h.len as usize;
    if d.len() != HEADER_BYTES + len {
        return Err(bad(
            d.len().min(HEADER_BYTES + len),
            "snapshot length does not match its header",
        ));
    }
    if crc32c::crc32c(&d[HEADER_BYTES..]) != h.data_crc {
        return Err(bad(HEADER_BYTES, "snapshot checksum mismatch"));
    }
    Ok(StoredSnapshot {
        id: meta,
        data: d[HEADER_BYTES..].to_vec(),
    })
}

/// Up to `max` bytes of snapshot `meta`'s data from `offset`, with the whole data's CRC
/// (for InstallSnapshot chunks); `None` if no file holds that snapshot any more. The
/// header is checked on every read; the data is checked by the receiver against the CRC.
pub fn read_chunk<B: Backend>(
    b: &mut B,
    meta: SnapshotId,
    offset: u64,
    max: usize,
) -> Result<Option<SnapshotChunk>, StorageError> {
    let file = name(meta);
    let head = match b.read_at(&file, 0, HEADER_BYTES) {
        Err(IoError::NotFound(_)) => return Ok(None),
        r => r?,
    };
    let h = parse_header(&file, meta, &head)?;
    let max = max.min(h.len.saturating_sub(offset) as usize);
    let data = b.read_at(&file, HEADER_BYTES as u64 + offset, max)?;
    if data.len() != max {
        let at = HEADER_BYTES as u64 + offset + data.len() as u64;
        return Err(StorageError::corrupt(
            &file,
            at,
            "snapshot file shorter than its header says",
        ));
    }
    Ok(Some(SnapshotChunk {
        data,
        checksum: h.data_crc,
    }))
}
