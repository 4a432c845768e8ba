//! `FaultyBackend`: a pass-through wrapper over a real backend that can inject the disk
//! faults the chaos lab needs against real processes — fsync errors, and unsynced
//! writes that a process kill loses or tears (as a power cut would).
//!
//! With `tear_unsynced`, each write reaches the inner backend only as a random prefix;
//! the whole write is kept in memory until the file's next `sync`, which writes it in
//! full before the real fsync. A SIGKILL between the two leaves exactly what a crash
//! leaves on a real disk: synced data intact, the unsynced tail missing or torn.

use crate::backend::{Backend, IoError};
use seedrng::Rng;
use std::collections::BTreeMap;

/// Which faults to inject. `FaultPlan::default()` injects none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Each sync fails with EIO with this probability, per mille.
    pub sync_eio_per_mille: u32,
    /// Keep unsynced writes in memory (lost at a kill), with a random prefix of each
    /// already on disk (torn at a kill).
    pub tear_unsynced: bool,
    /// Seed for the fault decisions.
    pub seed: u64,
}

impl FaultPlan {
    /// Parses `fsync-eio=N,tear,seed=S` (N per mille); an empty string injects nothing.
    pub fn parse(spec: &str) -> Result<FaultPlan, String> {
        let mut p = FaultPlan::default();
        for part in spec.split(',').filter(|s| !s.is_empty()) {
            match part.split_once('=') {
                Some(("fsync-eio", n)) => {
                    p.sync_eio_per_mille =
                        n.parse().map_err(|_| format!("bad number in `{part}`"))?
                }
                Some(("seed", n)) => {
                    p.seed = n.parse().map_err(|_| format!("bad number in `{part}`"))?
                }
                None if part == "tear" => p.tear_unsynced = true,
                _ => {
                    return Err(format!(
                        "unknown disk fault `{part}` (fsync-eio=N, tear, seed=S)"
                    ))
                }
            }
        }
        Ok(p)
    }

    /// Whether anything is injected.
    pub fn is_active(&self) -> bool {
        self.sync_eio_per_mille > 0 || self.tear_unsynced
    }
}

/// A backend that injects the faults of a [`FaultPlan`].
#[derive(Debug)]
pub struct FaultyBackend<B: Backend> {
    inner: B,
    plan: FaultPlan,
    rng: Rng,
    pending: BTreeMap<String, Vec<(u64, Vec<u8>)>>,
}

impl<B: Backend> FaultyBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, plan: FaultPlan) -> FaultyBackend<B> {
        FaultyBackend {
            inner,
            rng: Rng::new(plan.seed),
            plan,
            pending: BTreeMap::new(),
        }
    }

    /// The wrapped backend.
    pub fn inner_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Writes every buffered write of `name` in full (without syncing).
    fn flush(&mut self, name: &str) -> Result<(), IoError> {
        for (off, data) in self.pending.remove(name).unwrap_or_default() {
            self.inner.write(name, off, &data)?;
        }
        Ok(())
    }
}

impl<B: Backend> Backend for FaultyBackend<B> {
    fn list(&mut self) -> Result<Vec<String>, IoError> {
        self.inner.list()
    }

    fn read(&mut self, name: &str) -> Result<Vec<u8>, IoError> {
        self.flush(name)?;
        self.inner.read(name)
    }

    fn read_at(&mut self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, IoError> {
        self.flush(name)?;
        self.inner.read_at(name, offset, len)
    }

    fn len(&mut self, name: &str) -> Result<u64, IoError> {
        self.flush(name)?;
        self.inner.len(name)
    }

    fn write(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), IoError> {
        if !self.plan.tear_unsynced {
            return self.inner.write(name, offset, data);
        }
        let torn = self.rng.range(0, data.len() as u64 + 1) as usize;
        self.inner.write(name, offset, &data[..torn])?;
        self.pending
            .entry(name.to_string())
            .or_default()
            .push((offset, data.to_vec()));
        Ok(())
    }

    fn sync(&mut self, name: &str) -> Result<(), IoError> {
        if self.plan.sync_eio_per_mille > 0
            && self.rng.chance(self.plan.sync_eio_per_mille as u64, 1000)
        {
            return Err(IoError::Io(format!("injected fsync error on {name}")));
        }
        self.flush(name)?;
        self.inner.sync(name)
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), IoError> {
        self.flush(name)?;
        self.inner.truncate(name, len)
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), IoError> {
        self.flush(from)?;
        self.inner.rename(from, to)
    }

    fn remove(&mut self, name: &str) -> Result<(), IoError> {
        self.pending.remove(name);
        self.inner.remove(name)
    }

    fn sync_dir(&mut self) -> Result<(), IoError> {
        self.inner.sync_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimDisk;

    #[test]
    fn unsynced_writes_are_torn_until_sync() {
        let plan = FaultPlan::parse("tear,seed=3").unwrap();
        let mut b = FaultyBackend::new(SimDisk::new(1), plan);
        b.write("f", 0, b"synced").unwrap();
        b.sync("f").unwrap();
        b.write("f", 6, b"unsynced-tail").unwrap();
        // What a kill would leave: the synced part and at most a prefix of the tail.
        let on_disk = b.inner_mut().read("f").unwrap();
        assert!(on_disk.starts_with(b"synced"));
        assert!(b"syncedunsynced-tail".starts_with(&on_disk));
        b.sync("f").unwrap();
        assert_eq!(b.inner_mut().read("f").unwrap(), b"syncedunsynced-tail");
    }

    #[test]
    fn fsync_errors_are_injected_and_plans_parse() {
        let mut b =
            FaultyBackend::new(SimDisk::new(1), FaultPlan::parse("fsync-eio=1000").unwrap());
        b.write("f", 0, b"x").unwrap();
        assert!(matches!(b.sync("f"), Err(IoError::Io(_))));
        assert!(FaultPlan::parse("bogus").is_err());
        assert!(!FaultPlan::parse("").unwrap().is_active());
        let mut clean = FaultyBackend::new(SimDisk::new(1), FaultPlan::default());
        clean.write("f", 0, b"x").unwrap();
        assert_eq!(clean.inner_mut().read("f").unwrap(), b"x");
    }
}
