//! `etcdserverpb.Lease`: Grant, Revoke, KeepAlive, TimeToLive, Leases.
//!
//! Grants, revokes and keep-alives are replicated commands, so every member knows
//! every lease and its keys, and a keep-alive is ordered against the leader's expiry
//! revoke: one ordered after it finds the lease gone (TTL 0). Expiry and the remaining
//! TTLs are the leader's alone (`kv::Lessor`, driven by the replica's ticks); a
//! follower asks the leader for a TimeToLive over the leader's client port.

use crate::api::{errors, kv_status, Api};
use etcdpb::etcdserverpb as pb;
use kv::KvError;
use std::sync::Mutex;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

/// Keep-alive answers a stream may have queued for a slow client.
const OUT_CAPACITY: usize = 64;

/// The Lease service.
pub struct LeaseService {
    api: Api,
    /// A channel to the leader's client port, for TimeToLive on a follower.
    leader: Mutex<Option<(engine::NodeId, Channel)>>,
}

impl LeaseService {
    /// A Lease service over `api`.
    pub fn new(api: Api) -> LeaseService {
        LeaseService {
            api,
            leader: Mutex::new(None),
        }
    }

    /// The smallest TTL a lease gets: 1.5 election timeouts, rounded up to seconds (2 s
    /// with etcd's defaults), so a lease outlives one leader election.
    fn min_ttl(&self) -> i64 {
        let ms = self.api.shared.election.as_millis() as u64;
        (3 * ms).div_ceil(2 * 1000).max(1) as i64
    }

    async fn write(&self, r: kv::Request) -> Result<kv::Response, Status> {
        self.api.await_leader().await?;
        self.api.write(r).await
    }

    /// A client to the leader's client port (dialled once per leader).
    async fn leader_client(&self) -> Result<pb::lease_client::LeaseClient<Channel>, Status> {
        self.api.await_leader().await?;
        let leader = self
            .api
            .shared
            .status
            .borrow()
            .leader
            .ok_or_else(errors::no_leader)?;
        if let Some((id, ch)) = self.leader.lock().unwrap().as_ref() {
            if *id == leader {
                return Ok(pb::lease_client::LeaseClient::new(ch.clone()));
            }
        }
        let url = self
            .api
            .shared
            .client_urls_of(leader)
            .into_iter()
            .next()
            .ok_or_else(errors::no_leader)?;
        let ch = Endpoint::from_shared(url)
            .map_err(|_| errors::no_leader())?
            .connect_timeout(self.api.shared.election)
            .connect()
            .await
            .map_err(|_| errors::no_leader())?;
        *self.leader.lock().unwrap() = Some((leader, ch.clone()));
        Ok(pb::lease_client::LeaseClient::new(ch))
    }

    /// TimeToLive as this (leader) member's lessor knows it.
    fn time_to_live_here(&self, r: &pb::LeaseTimeToLiveRequest) -> pb::LeaseTimeToLiveResponse {
        let (info, rev) = {
            let store = self.api.shared.store.read();
            (store.lease(r.id), store.revision())
        };
        let Some(info) = info else {
            // etcd 3.4: an unknown lease is TTL -1, not an error.
            return pb::LeaseTimeToLiveResponse {
                header: self.api.header(rev),
                id: r.id,
                ttl: -1,
                ..Default::default()
            };
        };
        let remaining = self.api.shared.lessor.lock().remaining_secs(r.id);
        pb::LeaseTimeToLiveResponse {
            header: self.api.header(rev),
            id: r.id,
            ttl: remaining.unwrap_or(info.ttl).max(0),
            granted_ttl: info.ttl,
            keys: if r.keys { info.keys } else { Vec::new() },
        }
    }
}

/// A keep-alive's answer: the granted TTL, or 0 when the lease is gone (etcd answers
/// an unknown or expired lease so, without an error).
async fn keep_alive_once(api: &Api, id: i64) -> Result<pb::LeaseKeepAliveResponse, Status> {
    api.await_leader().await?;
    let (ttl, rev) = match api.write(kv::Request::LeaseRenew { id }).await {
        Ok(kv::Response::LeaseRenewed { ttl, .. }) => (ttl, api.shared.store.read().revision()),
        Ok(other) => return Err(Status::internal(format!("unexpected response {other:?}"))),
        Err(s) if s.message() == KvError::LeaseNotFound.to_string() => {
            (0, api.shared.store.read().revision())
        }
        Err(s) => return Err(s),
    };
    Ok(pb::LeaseKeepAliveResponse {
        header: api.header(rev),
        id,
        ttl,
    })
}

/// Serves one keep-alive stream: each request is answered on its own, so a slow
/// round for one lease does not hold up the others; at most [`OUT_CAPACITY`] are in
/// flight per stream, so a client that floods keep-alives waits instead of growing
/// the member's memory.
async fn keep_alive_stream(
    api: Api,
    mut inbound: Streaming<pb::LeaseKeepAliveRequest>,
    out: mpsc::Sender<Result<pb::LeaseKeepAliveResponse, Status>>,
) {
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(OUT_CAPACITY));
    while let Ok(Some(req)) = inbound.message().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (api, out) = (api.clone(), out.clone());
        tokio::spawn(async move {
            let answer = keep_alive_once(&api, req.id).await;
            let _ = out.send(answer).await;
            drop(permit);
        });
    }
}

#[tonic::async_trait]
impl pb::lease_server::Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let r = request.into_inner();
        if r.ttl > kv::MAX_LEASE_TTL {
            return Err(kv_status(KvError::LeaseTtlTooLarge));
        }
        let ttl = r.ttl.max(self.min_ttl());
        match self
            .write(kv::Request::LeaseGrant { id: r.id, ttl })
            .await?
        {
            kv::Response::LeaseGranted { id, ttl, revision } => {
                Ok(Response::new(pb::LeaseGrantResponse {
                    header: self.api.header(revision),
                    id,
                    ttl,
                    error: String::new(),
                }))
            }
            other => Err(Status::internal(format!("unexpected response {other:?}"))),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = request.into_inner().id;
        match self.write(kv::Request::LeaseRevoke { id }).await? {
            kv::Response::LeaseRevoked { revision } => Ok(Response::new(pb::LeaseRevokeResponse {
                header: self.api.header(revision),
            })),
            other => Err(Status::internal(format!("unexpected response {other:?}"))),
        }
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<pb::LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let (out, rx) = mpsc::channel(OUT_CAPACITY);
        tokio::spawn(keep_alive_stream(
            self.api.clone(),
            request.into_inner(),
            out,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        if self.api.shared.lessor.lock().is_leader() {
            return Ok(Response::new(self.time_to_live_here(&r)));
        }
        let mut leader = self.leader_client().await?;
        leader.lease_time_to_live(r).await
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.api.await_leader().await?;
        self.api.read_barrier().await?;
        let (ids, rev) = {
            let store = self.api.shared.store.read();
            (store.lease_ids(), store.revision())
        };
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.api.header(rev),
            leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }))
    }
}
