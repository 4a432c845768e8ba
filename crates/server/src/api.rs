//! What the client-facing services share: routing to the leader, proposals, read
//! barriers, response headers and etcd's error statuses.

use crate::driver::{DriverError, Input};
use crate::state::Shared;
use engine::NodeId;
use etcdpb::etcdserverpb as pb;

use crate::inbox::InboxSender;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tonic::{Code, Status};

/// etcd's error statuses.
pub mod errors {
    use tonic::{Code, Status};

    /// `etcdserver: no leader`.
    pub fn no_leader() -> Status {
        Status::new(Code::Unavailable, "etcdserver: no leader")
    }
    /// `etcdserver: leader changed`.
    pub fn leader_changed() -> Status {
        Status::new(Code::Unavailable, "etcdserver: leader changed")
    }
    /// `etcdserver: request timed out`.
    pub fn timeout() -> Status {
        Status::new(Code::Unavailable, "etcdserver: request timed out")
    }
    /// `etcdserver: request is too large`.
    pub fn too_large() -> Status {
        Status::new(Code::InvalidArgument, "etcdserver: request is too large")
    }
    /// `etcdserver: too many operations in txn request`.
    pub fn too_many_ops() -> Status {
        Status::new(
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        )
    }
    /// `etcdserver: mvcc: database space exceeded`.
    pub fn no_space() -> Status {
        Status::new(
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded",
        )
    }
    /// `etcdserver: server stopped`.
    pub fn stopped() -> Status {
        Status::new(Code::Unavailable, "etcdserver: server stopped")
    }
    /// `etcdserver: not leader` (a request only the leader serves).
    pub fn not_leader() -> Status {
        Status::new(Code::FailedPrecondition, "etcdserver: not leader")
    }
    /// `etcdserver: bad leader transferee`.
    pub fn bad_transferee() -> Status {
        Status::new(
            Code::FailedPrecondition,
            "etcdserver: bad leader transferee",
        )
    }
    /// `etcdserver: request timed out, leader transfer took too long`.
    pub fn transfer_timeout() -> Status {
        Status::new(
            Code::Unavailable,
            "etcdserver: request timed out, leader transfer took too long",
        )
    }
}

/// A proposal counted in `etcd_server_proposals_pending` for as long as it lives: until
/// its answer, its failure or its caller giving up.
struct Pending<'a>(&'a prometheus::IntGauge);

impl<'a> Pending<'a> {
    fn count(gauge: &'a prometheus::IntGauge) -> Pending<'a> {
        gauge.inc();
        Pending(gauge)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Shared by the gRPC services and the admin endpoints.
#[derive(Clone)]
pub struct Api {
    /// Shared state.
    pub shared: Arc<Shared>,
    driver: InboxSender,
}

/// A state machine error as etcd's status.
pub fn kv_status(e: kv::KvError) -> Status {
    Status::new(Code::from(e.grpc_code()), e.to_string())
}

fn driver_status(e: DriverError) -> Status {
    match e {
        DriverError::NotLeader(_) => errors::no_leader(),
        DriverError::LeaderChanged => errors::leader_changed(),
        DriverError::Kv(e) => kv_status(e),
        DriverError::Stopped => errors::stopped(),
    }
}

impl Api {
    /// A handle for services.
    pub fn new(shared: Arc<Shared>, driver: InboxSender) -> Api {
        Api { shared, driver }
    }

    /// Whether the store has outgrown `--quota-backend-bytes` (0 means 2 GiB, etcd's
    /// default).
    pub fn over_quota(&self) -> bool {
        let quota = match self.shared.quota_backend_bytes {
            0 => 2 << 30,
            q => q,
        };
        self.shared.store.read().approx_bytes() >= quota
    }

    /// A full response header at `revision`.
    pub fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            cluster_id: self.shared.cluster_id,
            member_id: self.shared.member_id.0,
            revision,
            raft_term: self.shared.status.borrow().term,
        })
    }

    /// Waits (up to two election timeouts) until a leader is known. Writes and
    /// linearizable reads go through the leader from any member: writes are handed to
    /// it over the peer link, reads ask it for a read index.
    pub async fn await_leader(&self) -> Result<(), Status> {
        if self.shared.status.borrow().leader.is_none() {
            self.wait_for_leader().await?;
        }
        Ok(())
    }

    /// The leader, once one is known (waiting as [`Api::await_leader`] does).
    pub async fn leader(&self) -> Result<NodeId, Status> {
        self.await_leader().await?;
        self.shared
            .status
            .borrow()
            .leader
            .ok_or_else(errors::no_leader)
    }

    /// A channel to member `id`'s client port (its first advertised client URL), for
    /// requests only the leader serves.
    pub async fn dial(&self, id: NodeId) -> Result<tonic::transport::Channel, Status> {
        let url = self.shared.client_urls_of(id).into_iter().next();
        let url = url.ok_or_else(errors::no_leader)?;
        tonic::transport::Endpoint::from_shared(url)
            .map_err(|_| errors::no_leader())?
            .connect_timeout(self.shared.election)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|_| errors::no_leader())
    }

    /// Waits up to two election timeouts for a leader to be known.
    async fn wait_for_leader(&self) -> Result<NodeId, Status> {
        let mut rx = self.shared.status.subscribe();
        let wait = self.shared.election * 2;
        tokio::time::timeout(wait, async {
            loop {
                if let Some(l) = rx.borrow_and_update().leader {
                    return Some(l);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(errors::no_leader)
    }

    /// Waits until this member's store has dropped the history of every Compact it
    /// applied (the driver does that in slices between rounds). A Compact with
    /// `physical` answers then, as etcd's does once its backend has compacted.
    pub async fn compacted_here(&self) {
        let mut rx = self.shared.status.subscribe();
        let store = &self.shared.store;
        // The store is the truth; status changes (the driver publishes `compacting`
        // flipping, and the round that applied the Compact) are the wake-ups.
        let _ = rx.wait_for(|_| !store.read().compaction_pending()).await;
    }

    /// Hands this leader's leadership to member `to` and waits (up to `within`) until
    /// this member sees `to` lead.
    pub async fn move_leader(&self, to: NodeId, within: Duration) -> Result<(), Status> {
        let (tx, rx) = oneshot::channel();
        self.driver
            .send(Input::TransferLeader(to, tx))
            .map_err(|_| errors::stopped())?;
        match rx.await {
            Err(_) => return Err(errors::stopped()),
            Ok(Err(engine::TransferRefused::NotLeader(_))) => return Err(errors::not_leader()),
            Ok(Err(engine::TransferRefused::NotAVoter(_))) => return Err(errors::bad_transferee()),
            Ok(Ok(())) => {}
        }
        let mut status = self.shared.status.subscribe();
        let moved = async { status.wait_for(|s| s.leader == Some(to)).await.is_ok() };
        match tokio::time::timeout(within, moved).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(errors::stopped()),
            Err(_) => Err(errors::transfer_timeout()),
        }
    }

    /// Defragments this member (a snapshot now, the log compacted through it, older
    /// snapshot files deleted); answers once done.
    pub async fn defragment(&self) -> Result<(), Status> {
        let (tx, rx) = oneshot::channel();
        self.driver
            .send(Input::Defragment(tx))
            .map_err(|_| errors::stopped())?;
        rx.await.map_err(|_| errors::stopped())?
    }

    /// Orders a membership change on this (leader) member; answers once it applied.
    pub async fn change_membership(
        &self,
        ask: crate::members::MemberRequest,
    ) -> Result<crate::change::ChangeDone, Status> {
        let (tx, rx) = oneshot::channel();
        self.driver
            .send(Input::ChangeMembership(ask, tx))
            .map_err(|_| errors::stopped())?;
        rx.await.map_err(|_| errors::stopped())?
    }

    /// Replicates a write on this (leader) member and returns the store's response.
    pub async fn write(&self, w: kv::Request) -> Result<kv::Response, Status> {
        // Encoded here, on the client's task: the driver thread only checks it.
        let command = kv::command::encode(&w);
        let _pending = Pending::count(&self.shared.metrics.proposals_pending);
        let (tx, rx) = oneshot::channel();
        self.driver
            .send(Input::Propose(command, tx))
            .map_err(|_| errors::stopped())?;
        self.await_driver(rx).await
    }

    /// A linearizable read barrier on this (leader) member.
    pub async fn read_barrier(&self) -> Result<(), Status> {
        let (tx, rx) = oneshot::channel();
        self.driver
            .send(Input::ReadIndex(tx))
            .map_err(|_| errors::stopped())?;
        self.await_driver(rx).await
    }

    async fn await_driver<T>(
        &self,
        rx: oneshot::Receiver<Result<T, DriverError>>,
    ) -> Result<T, Status> {
        match tokio::time::timeout(Duration::from_secs(7), rx).await {
            Err(_) => Err(errors::timeout()),
            Ok(Err(_)) => Err(errors::stopped()),
            Ok(Ok(r)) => r.map_err(driver_status),
        }
    }
}
