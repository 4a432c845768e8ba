//! The storage error type: environmental failures that stop the node.

use crate::backend::IoError;
use std::fmt;

/// A storage failure. Either kind stops the node (fail-stop); a failed sync is never
/// retried, because after it nothing is known about what reached the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// The medium failed (EIO, no space, ...).
    Io(String),
    /// Stored data failed validation; the node refuses to start.
    Corrupt {
        /// The file.
        file: String,
        /// Byte offset of the first bad byte or record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

impl StorageError {
    /// Stored data in `file` at `offset` failed validation for `reason`.
    pub fn corrupt(file: &str, offset: u64, reason: &str) -> StorageError {
        StorageError::Corrupt {
            file: file.to_string(),
            offset,
            reason: reason.to_string(),
        }
    }
}

impl From<IoError> for StorageError {
    fn from(e: IoError) -> StorageError {
        StorageError::Io(e.to_string())
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io(m) => write!(f, "storage I/O failure: {m}"),
            StorageError::Corrupt {
                file,
                offset,
                reason,
            } => {
                write!(f, "corrupt storage: {file} at byte offset {offset}: {reason}; refusing to start (repair from a peer)")
            }
        }
    }
}

impl std::error::Error for StorageError {}
