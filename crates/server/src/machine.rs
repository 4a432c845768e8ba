//! The member's state machine and client tokens, as the replica sees them.
//!
//! The store lives in [`Shared`] behind a lock so that the gRPC tasks read it directly
//! (ranges, serializable reads, status); [`ServerMachine`] is the replica's handle on
//! it, and the only writer.

use crate::state::{Metrics, Shared};
use engine::{Applied, Index, StateMachine};
use kv::{KvError, Store};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Why the driver could not serve a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverError {
    /// This member is not the leader (the leader, if known).
    NotLeader(Option<engine::NodeId>),
    /// Leadership changed while the request waited: it may or may not have happened.
    LeaderChanged,
    /// The state machine refused the request.
    Kv(KvError),
    /// The driver has stopped.
    Stopped,
}

/// Replies to a proposal.
pub type WriteReply = oneshot::Sender<Result<kv::Response, DriverError>>;
/// Replies to a read barrier.
pub type ReadReply = oneshot::Sender<Result<(), DriverError>>;

/// A client waiting on the replica.
#[derive(Debug)]
pub enum Client {
    /// A write.
    Write(WriteReply),
    /// A linearizable read barrier.
    Read(ReadReply),
}

impl Client {
    /// The caller stopped waiting.
    pub fn is_closed(&self) -> bool {
        match self {
            Client::Write(tx) => tx.is_closed(),
            Client::Read(tx) => tx.is_closed(),
        }
    }

    /// Answers with an error.
    pub fn fail(self, e: DriverError) {
        match self {
            Client::Write(tx) => drop(tx.send(Err(e))),
            Client::Read(tx) => drop(tx.send(Err(e))),
        }
    }

    /// Answers with the replica's outcome. True when it was a failure.
    pub fn answer(self, outcome: replica::Outcome<ServerMachine>) -> bool {
        use replica::Outcome;
        let (client, error) = match (self, outcome) {
            (Client::Write(tx), Outcome::Applied { response, .. }) => {
                let _ = tx.send(Ok(response));
                return false;
            }
            (Client::Read(tx), Outcome::ReadReady) => {
                let _ = tx.send(Ok(()));
                return false;
            }
            (c, Outcome::Refused(e)) => (c, DriverError::Kv(e)),
            (c, Outcome::Redirect(leader)) => (c, DriverError::NotLeader(leader)),
            // Unknown, or an answer of the other kind (which the replica never gives).
            (c, _) => (c, DriverError::LeaderChanged),
        };
        client.fail(error);
        true
    }
}

/// The replica's handle on the shared store.
pub struct ServerMachine {
    shared: Arc<Shared>,
    /// A Compact was applied whose history the store has not all dropped yet.
    compaction_started: bool,
    /// A snapshot replaced the store since the driver last asked.
    restored: bool,
    /// Entries applied since the driver last asked.
    applied: u64,
}

impl ServerMachine {
    /// A handle on `shared.store`.
    pub fn new(shared: Arc<Shared>) -> ServerMachine {
        ServerMachine {
            shared,
            compaction_started: false,
            restored: false,
            applied: 0,
        }
    }

    /// Whether a Compact began since the last call.
    pub fn take_compaction_started(&mut self) -> bool {
        std::mem::take(&mut self.compaction_started)
    }

    /// Whether a snapshot replaced the store since the last call.
    pub fn take_restored(&mut self) -> bool {
        std::mem::take(&mut self.restored)
    }

    /// Entries applied since the last call.
    pub fn take_applied(&mut self) -> u64 {
        std::mem::take(&mut self.applied)
    }
}

impl StateMachine for ServerMachine {
    type Response = kv::Response;
    type Error = KvError;

    fn validate(&self, command: &[u8]) -> Result<(), KvError> {
        kv::command::decode(command).map(drop)
    }

    fn apply(&mut self, index: Index, command: &[u8]) -> Option<Applied<ServerMachine>> {
        self.applied += 1;
        Metrics::add(&self.shared.metrics.applied_entries, 1);
        // Decoded outside the lock: readers wait only for the change itself.
        let request = kv::command::decode(command);
        let lease_request = request.as_ref().ok().filter(|r| r.is_lease()).cloned();
        let mut store = self.shared.store.write();
        // Events are recorded only while some watch stream listens.
        let hub = &self.shared.watch_hub;
        store.set_record_events(hub.has_listeners());
        let result = kv::command::apply_decoded(&mut store, index, request);
        let events = store.take_events();
        if !events.is_empty() {
            hub.publish(events);
        }
        if let (Some(req), Some(res)) = (&lease_request, &result) {
            let mut lessor = self.shared.lessor.lock();
            lessor.on_applied(&store, req, res);
            if matches!(req, kv::Request::LeaseRenew { .. }) {
                lessor.on_applied_index(index.0);
            }
        }
        self.compaction_started |= store.compaction_pending();
        result
    }

    fn apply_noop(&mut self, index: Index) {
        self.applied += 1;
        Metrics::add(&self.shared.metrics.applied_entries, 1);
        self.shared.store.write().mark_applied(index.0);
    }

    fn applied_index(&self) -> Index {
        Index(self.shared.store.read().applied_index())
    }

    fn snapshot(&self) -> Vec<u8> {
        self.shared.store.read().snapshot()
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), KvError> {
        let store = Store::restore(data).map_err(|_| KvError::Corrupt)?;
        let mut guard = self.shared.store.write();
        *guard = store;
        (self.shared.store_generation).fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Watchers read what the snapshot skipped from its history.
        self.shared.watch_hub.reset();
        let mut lessor = self.shared.lessor.lock();
        if lessor.is_leader() {
            lessor.promote(&guard);
        }
        drop(guard);
        self.restored = true;
        Ok(())
    }

    fn digest(&self) -> u64 {
        StateMachine::digest(&*self.shared.store.read())
    }

    /// The leader's lease duties: expiry revokes and checkpoints.
    fn on_tick(&mut self, leader: bool) -> Vec<Vec<u8>> {
        let store = self.shared.store.read();
        let proposals = self.shared.lessor.lock().tick(&store);
        if !leader {
            // Nothing, unless a bug is planted: then the driver hands it to the leader.
            #[cfg(feature = "planted-bugs")]
            self.shared
                .planted_forward
                .lock()
                .unwrap()
                .extend(proposals.iter().map(kv::command::encode));
            return Vec::new();
        }
        proposals.iter().map(kv::command::encode).collect()
    }

    fn on_leadership(&mut self, leader: bool) {
        let store = self.shared.store.read();
        let mut lessor = self.shared.lessor.lock();
        if leader {
            lessor.promote(&store);
        } else {
            lessor.demote();
        }
    }

    /// A keep-alive counts from when the leader orders it.
    fn on_ordered(&mut self, index: Option<Index>, command: &[u8]) {
        if !kv::command::is_lease_renew(command) {
            return;
        }
        if let Ok(req) = kv::command::decode(command) {
            let store = self.shared.store.read();
            let index = index.map(|i| i.0);
            self.shared.lessor.lock().on_ordered(&store, &req, index);
        }
    }
}
