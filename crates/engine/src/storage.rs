//! What a driver needs from durable storage for one engine, and the environmental
//! failure that stops a node.

use crate::Engine;
use std::fmt;

/// Part of a stored snapshot, read for a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The bytes.
    pub data: Vec<u8>,
    /// CRC32C of the snapshot's whole data, as recorded when it was stored.
    pub checksum: u32,
}

/// An environmental failure (a failed write or fsync, corrupt data): the node must stop.
/// Libraries return it; only the binary decides to exit, printing one `fatal:` line. A
/// failed fsync is never retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fatal {
    /// What was being done.
    pub what: String,
    /// What went wrong.
    pub cause: String,
}

impl Fatal {
    /// A fatal failure while doing `what`.
    pub fn new(what: impl Into<String>, cause: impl fmt::Display) -> Fatal {
        Fatal {
            what: what.into(),
            cause: cause.to_string(),
        }
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.cause)
    }
}

impl std::error::Error for Fatal {}

/// Durable storage for one node of engine `E`, as a driver writes it.
///
/// To ensure correctness:
/// - `write` may buffer; nothing it wrote is durable until a later `sync` returns `Ok`;
/// - after `sync` returns `Ok`, every earlier write survives any crash, and writes
///   become durable in the order they were made (a crash keeps a prefix);
/// - an error is final: the caller stops the node and never retries a failed sync.
pub trait Storage<E: Engine> {
    /// Buffers one write.
    fn write(&mut self, write: &E::Persist) -> Result<(), Fatal>;
    /// Makes every earlier write durable.
    fn sync(&mut self) -> Result<(), Fatal>;
    /// Reads what `request` names from a stored snapshot; `None` once storage no longer
    /// holds that snapshot.
    fn read_chunk(&mut self, request: &E::ChunkRequest) -> Result<Option<Chunk>, Fatal>;
}
