//! A fault-injecting, in-memory backend for the simulator and crash tests.
//!
//! Every file has a durable image and a list of writes not yet synced; the directory
//! has a durable namespace and the operations (create, rename, remove) not yet synced.
//! A crash keeps a random prefix of the unsynced operations, may tear the last write
//! at an arbitrary byte, and drops the rest. Faults: EIO or "no space" on write or
//! sync, bit flips in stored data, misdirected writes.

use crate::backend::{Backend, IoError};
use seedrng::Rng;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    Truncate(u64),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<FileOp>,
}

fn apply(buf: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { offset, data } => {
            let end = *offset as usize + data.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[*offset as usize..end].copy_from_slice(data);
        }
        FileOp::Truncate(len) => buf.resize(*len as usize, 0),
    }
}

#[derive(Clone, Debug)]
enum DirOp {
    Link(String, u64),
    Unlink(String),
    /// Atomic: a crash leaves the old name or the new one, never neither.
    Rename(String, String, u64),
}

fn apply_dir(names: &mut BTreeMap<String, u64>, op: DirOp) {
    match op {
        DirOp::Link(name, ino) => {
            names.insert(name, ino);
        }
        DirOp::Unlink(name) => {
            names.remove(&name);
        }
        DirOp::Rename(from, to, ino) => {
            names.remove(&from);
            names.insert(to, ino);
        }
    }
}

/// Per-operation fault probabilities, per mille.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskFaults {
    /// A write fails with EIO.
    pub write_eio: u64,
    /// A write fails with "no space".
    pub write_nospace: u64,
    /// A sync fails with EIO.
    pub sync_eio: u64,
    /// A write lands 4 KiB away from where it was aimed.
    pub misdirect: u64,
}

/// An in-memory disk with crash semantics and injectable faults.
#[derive(Clone, Debug)]
pub struct SimDisk {
    rng: Rng,
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    dir_pending: Vec<DirOp>,
    /// Fault rates in force.
    pub faults: DiskFaults,
    syncs: u64,
}

impl SimDisk {
    /// An empty disk whose random choices come from `seed`.
    pub fn new(seed: u64) -> SimDisk {
        SimDisk {
            rng: Rng::new(seed),
            next_inode: 0,
            inodes: BTreeMap::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            dir_pending: Vec::new(),
            faults: DiskFaults::default(),
            syncs: 0,
        }
    }

    /// Power loss: keeps a random prefix of unsynced operations (tearing the last
    /// write at a random byte) and forgets the rest.
    pub fn crash(&mut self) {
        let keep_dir = self.rng.range(0, self.dir_pending.len() as u64 + 1) as usize;
        for op in self.dir_pending.drain(..).take(keep_dir) {
            apply_dir(&mut self.durable_names, op);
        }
        let mut rng = self.rng.fork(self.syncs);
        for inode in self.inodes.values_mut() {
            let pending = std::mem::take(&mut inode.pending);
            let keep = rng.range(0, pending.len() as u64 + 1) as usize;
            for (i, op) in pending.into_iter().enumerate().take(keep) {
                let op = match op {
                    FileOp::Write { offset, mut data } if i + 1 == keep && rng.chance(1, 2) => {
                        data.truncate(rng.range(0, data.len() as u64 + 1) as usize);
                        FileOp::Write { offset, data }
                    }
                    other => other,
                };
                apply(&mut inode.durable, &op);
            }
            inode.current = inode.durable.clone();
        }
        self.names = self.durable_names.clone();
        let live: std::collections::BTreeSet<u64> = self.names.values().copied().collect();
        self.inodes.retain(|ino, _| live.contains(ino));
    }

    /// Flips one bit of a file's stored bytes (durable and current); false if out of range.
    pub fn flip_bit(&mut self, name: &str, offset: u64, bit: u8) -> bool {
        let Some(inode) = self.names.get(name).and_then(|i| self.inodes.get_mut(i)) else {
            return false;
        };
        let o = offset as usize;
        if o >= inode.current.len() || o >= inode.durable.len() {
            return false;
        }
        inode.current[o] ^= 1 << (bit % 8);
        inode.durable[o] ^= 1 << (bit % 8);
        true
    }

    /// Overwrites the durable and current content of a file (tests: truncated or
    /// zeroed files).
    pub fn set_content(&mut self, name: &str, data: Vec<u8>) {
        if let Some(inode) = self.names.get(name).and_then(|i| self.inodes.get_mut(i)) {
            inode.durable = data.clone();
            inode.current = data;
            inode.pending.clear();
        }
    }

    fn roll(&mut self, per_mille: u64) -> bool {
        per_mille > 0 && self.rng.chance(per_mille, 1000)
    }

    fn inode_mut(&mut self, name: &str) -> Result<&mut Inode, IoError> {
        let ino = *self
            .names
            .get(name)
            .ok_or_else(|| IoError::NotFound(name.to_string()))?;
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| IoError::NotFound(name.to_string()))
    }

    fn create(&mut self, name: &str) -> u64 {
        if let Some(ino) = self.names.get(name) {
            return *ino;
        }
        self.next_inode += 1;
        let ino = self.next_inode;
        self.inodes.insert(ino, Inode::default());
        self.names.insert(name.to_string(), ino);
        self.dir_pending.push(DirOp::Link(name.to_string(), ino));
        ino
    }

    fn push_op(&mut self, name: &str, op: FileOp) -> Result<(), IoError> {
        let inode = self.inode_mut(name)?;
        apply(&mut inode.current, &op);
        inode.pending.push(op);
        Ok(())
    }
}

impl Backend for SimDisk {
    fn list(&mut self) -> Result<Vec<String>, IoError> {
        Ok(self.names.keys().cloned().collect())
    }

    fn read(&mut self, name: &str) -> Result<Vec<u8>, IoError> {
        Ok(self.inode_mut(name)?.current.clone())
    }

    fn len(&mut self, name: &str) -> Result<u64, IoError> {
        Ok(self.inode_mut(name)?.current.len() as u64)
    }

    fn write(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), IoError> {
        if self.roll(self.faults.write_eio) {
            return Err(IoError::Io(format!("injected EIO writing {name}")));
        }
        if self.roll(self.faults.write_nospace) {
            return Err(IoError::NoSpace(format!("injected ENOSPC writing {name}")));
        }
        self.create(name);
        let offset = if self.roll(self.faults.misdirect) {
            offset + 4096
        } else {
            offset
        };
        self.push_op(
            name,
            FileOp::Write {
                offset,
                data: data.to_vec(),
            },
        )
    }

    fn sync(&mut self, name: &str) -> Result<(), IoError> {
        if self.roll(self.faults.sync_eio) {
            return Err(IoError::Io(format!("injected EIO on fsync of {name}")));
        }
        self.syncs += 1;
        let inode = self.inode_mut(name)?;
        for op in std::mem::take(&mut inode.pending) {
            apply(&mut inode.durable, &op);
        }
        Ok(())
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), IoError> {
        self.push_op(name, FileOp::Truncate(len))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), IoError> {
        let ino = self
            .names
            .remove(from)
            .ok_or_else(|| IoError::NotFound(from.to_string()))?;
        self.names.insert(to.to_string(), ino);
        self.dir_pending
            .push(DirOp::Rename(from.to_string(), to.to_string(), ino));
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), IoError> {
        self.names
            .remove(name)
            .ok_or_else(|| IoError::NotFound(name.to_string()))?;
        self.dir_pending.push(DirOp::Unlink(name.to_string()));
        Ok(())
    }

    fn sync_dir(&mut self) -> Result<(), IoError> {
        for op in self.dir_pending.drain(..) {
            apply_dir(&mut self.durable_names, op);
        }
        Ok(())
    }
}
