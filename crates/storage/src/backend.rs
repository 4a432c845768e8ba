//! The tiny seam between the log and the medium: a flat directory of named files.

use std::fmt;

/// An I/O failure reported by a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoError {
    /// A generic I/O error (EIO), with the operation and file.
    Io(String),
    /// The medium is full (ENOSPC).
    NoSpace(String),
    /// The named file does not exist.
    NotFound(String),
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::Io(m) => write!(f, "I/O error: {m}"),
            IoError::NoSpace(m) => write!(f, "no space left on device: {m}"),
            IoError::NotFound(m) => write!(f, "file not found: {m}"),
        }
    }
}

impl std::error::Error for IoError {}

/// A directory of files, as the log sees it.
///
/// To ensure correctness, implementations guarantee:
/// - data written to a file is durable only after `sync(name)` returns `Ok`;
/// - file creation, `rename` and `remove` are durable only after `sync_dir` returns `Ok`;
/// - `rename` replaces the target atomically (a crash leaves the old or the new file);
/// - after an error from `sync`, nothing is known about what is durable: callers stop
///   (fail-stop) and never retry the sync.
pub trait Backend {
    /// Names of the files in the directory, sorted.
    fn list(&mut self) -> Result<Vec<String>, IoError>;
    /// The file's whole content.
    fn read(&mut self, name: &str) -> Result<Vec<u8>, IoError>;
    /// Up to `len` bytes of the file from `offset` (fewer at the end of the file).
    fn read_at(&mut self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, IoError> {
        let all = self.read(name)?;
        let start = (offset as usize).min(all.len());
        let end = start.saturating_add(len).min(all.len());
        Ok(all[start..end].to_vec())
    }
    /// The file's size in bytes.
    fn len(&mut self, name: &str) -> Result<u64, IoError>;
    /// Writes `data` at `offset`, creating the file if needed (extending it with zeros).
    fn write(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), IoError>;
    /// Makes the file's data durable (fdatasync).
    fn sync(&mut self, name: &str) -> Result<(), IoError>;
    /// Cuts the file to `len` bytes.
    fn truncate(&mut self, name: &str, len: u64) -> Result<(), IoError>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), IoError>;
    /// Deletes the file.
    fn remove(&mut self, name: &str) -> Result<(), IoError>;
    /// Makes creations, renames and removals durable (fsync of the directory).
    fn sync_dir(&mut self) -> Result<(), IoError>;
    /// Writes a new file `name` holding `parts` one after the other, and makes its
    /// data durable (its creation still needs `sync_dir`). For large files written
    /// once, such as snapshots: a backend may bypass its cache. The default writes
    /// with `write` and syncs every [`BULK_SYNC_EVERY`] bytes and at the end.
    fn write_file(&mut self, name: &str, parts: &[&[u8]]) -> Result<(), IoError> {
        write_file_buffered(self, name, parts)
    }
}

/// A bulk file written through the cache is synced this often, so that it never
/// leaves hundreds of MiB dirty, which the WAL's next fdatasync would otherwise wait
/// behind (ext4 commits ordered data of other files with its journal).
pub const BULK_SYNC_EVERY: usize = 8 << 20;

/// [`Backend::write_file`] through `write` and `sync`.
pub(crate) fn write_file_buffered<B: Backend + ?Sized>(
    b: &mut B,
    name: &str,
    parts: &[&[u8]],
) -> Result<(), IoError> {
    let mut at = 0u64;
    let mut unsynced = 0;
    for part in parts {
        for chunk in part.chunks(BULK_SYNC_EVERY) {
            b.write(name, at, chunk)?;
            at += chunk.len() as u64;
            unsynced += chunk.len();
            if unsynced >= BULK_SYNC_EVERY {
                b.sync(name)?;
                unsynced = 0;
            }
        }
    }
    if at == 0 {
        b.write(name, 0, &[])?;
    }
    if unsynced > 0 || at == 0 {
        b.sync(name)?;
    }
    Ok(())
}
