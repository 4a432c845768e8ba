//! `etcdserverpb.Lease`: Grant, Revoke, KeepAlive, TimeToLive, Leases.
//!
//! Grants and revokes are replicated commands, so every member knows every lease and
//! its keys. Expiry and the remaining TTLs are the leader's alone (`kv::Lessor`, driven
//! by the replica's ticks); a follower asks the leader for a TimeToLive over the
//! leader's client port.
//!
//! A keep-alive reaches the leader: a follower forwards each keep-alive stream to the
//! leader's client port (marked, so it is never forwarded twice). The leader answers
//! from memory, after a ReadIndex round confirms it still leads, while a keep-alive of
//! that lease it put in its log was applied less than half a promotion grace ago
//! (`kv::Lessor::renew_local` says why that is safe across leader changes and
//! pauses); otherwise the keep-alive goes through the log, ordered against the
//! expiry revoke: one ordered after it finds the lease gone (TTL 0).

use crate::api::{kv_status, Api};
use etcdpb::etcdserverpb as pb;
use kv::KvError;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// Keep-alive answers a stream may have queued for a slow client.
const OUT_CAPACITY: usize = 64;
/// The metadata key that marks a keep-alive stream a follower forwarded.
const FORWARDED: &str = "synod-forwarded";

/// The leader's client channel, dialled once per leader.
type LeaderCache = Arc<Mutex<Option<(engine::NodeId, Channel)>>>;

/// The Lease service.
pub struct LeaseService {
    api: Api,
    /// A channel to the leader's client port, for TimeToLive and keep-alives on a
    /// follower.
    leader: LeaderCache,
}

impl LeaseService {
    /// A Lease service over `api`.
    pub fn new(api: Api) -> LeaseService {
        LeaseService {
            api,
            leader: LeaderCache::default(),
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
        let (_, ch) = leader_channel(&self.api, &self.leader).await?;
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

/// The current leader and a channel to its client port (dialled once per leader).
async fn leader_channel(
    api: &Api,
    cache: &LeaderCache,
) -> Result<(engine::NodeId, Channel), Status> {
    let leader = api.leader().await?;
    if let Some((id, ch)) = cache.lock().unwrap().as_ref() {
        if *id == leader {
            return Ok((leader, ch.clone()));
        }
    }
    let ch = api.dial(leader).await?;
    *cache.lock().unwrap() = Some((leader, ch.clone()));
    Ok((leader, ch))
}

/// A keep-alive the leader answers from memory, when its lessor allows.
fn renew_here(api: &Api, id: i64) -> Option<pb::LeaseKeepAliveResponse> {
    let store = api.shared.store.read();
    let ttl = api.shared.lessor.lock().renew_local(&store, id)?;
    Some(pb::LeaseKeepAliveResponse {
        header: api.header(store.revision()),
        id,
        ttl,
    })
}

/// A keep-alive's answer: the granted TTL, or 0 when the lease is gone (etcd answers
/// an unknown or expired lease so, without an error). From the leader's memory when
/// it can, through the log otherwise.
async fn keep_alive_once(api: &Api, id: i64) -> Result<pb::LeaseKeepAliveResponse, Status> {
    // From memory only once a quorum confirmed, since it arrived, that this member
    // leads (`kv::Lessor::renew_local` says why).
    if api.shared.lessor.lock().can_renew_local(id) {
        api.read_barrier().await?;
        if let Some(answer) = renew_here(api, id) {
            return Ok(answer);
        }
    }
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

type Out = mpsc::Sender<Result<pb::LeaseKeepAliveResponse, Status>>;

/// Answers keep-alive `id` here (memory or log) on a task of its own.
fn answer_here(api: &Api, out: &Out, id: i64, permit: tokio::sync::OwnedSemaphorePermit) {
    let (api, out) = (api.clone(), out.clone());
    tokio::spawn(async move {
        let answer = keep_alive_once(&api, id).await;
        let _ = out.send(answer).await;
        drop(permit);
    });
}

/// A follower's forwarded keep-alive stream to the leader.
struct Upstream {
    leader: engine::NodeId,
    tx: mpsc::Sender<pb::LeaseKeepAliveRequest>,
    /// Ids sent and not answered yet (each once per keep-alive).
    pending: Arc<Mutex<Vec<i64>>>,
}

impl Upstream {
    /// Opens a keep-alive stream to the leader; its answers go to `out`. If it fails,
    /// the keep-alives still unanswered are answered here, through the log.
    async fn open(api: &Api, cache: &LeaderCache, out: &Out) -> Result<Upstream, Status> {
        let (leader, ch) = leader_channel(api, cache).await?;
        let (tx, rx) = mpsc::channel(OUT_CAPACITY);
        let mut req = Request::new(ReceiverStream::new(rx));
        req.metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        let pending: Arc<Mutex<Vec<i64>>> = Arc::default();
        let (api, out, waiting) = (api.clone(), out.clone(), pending.clone());
        tokio::spawn(async move {
            let mut client = pb::lease_client::LeaseClient::new(ch);
            if let Ok(answers) = client.lease_keep_alive(req).await {
                let mut answers = answers.into_inner();
                while let Ok(Some(a)) = answers.message().await {
                    take_one(&waiting, a.id);
                    // Our header, as for any answer of this member.
                    let rev = api.shared.store.read().revision();
                    let answer = pb::LeaseKeepAliveResponse {
                        header: api.header(rev),
                        ..a
                    };
                    if out.send(Ok(answer)).await.is_err() {
                        return;
                    }
                }
            }
            let left = std::mem::take(&mut *waiting.lock().unwrap());
            for id in left {
                let _ = out.send(keep_alive_once(&api, id).await).await;
            }
        });
        Ok(Upstream {
            leader,
            tx,
            pending,
        })
    }

    /// Sends keep-alive `id` to the leader; false if this stream is closed.
    async fn send(&self, id: i64) -> bool {
        self.pending.lock().unwrap().push(id);
        if self.tx.send(pb::LeaseKeepAliveRequest { id }).await.is_ok() {
            return true;
        }
        take_one(&self.pending, id);
        false
    }
}

/// Removes one `id` from `pending`, if there.
fn take_one(pending: &Mutex<Vec<i64>>, id: i64) {
    let mut p = pending.lock().unwrap();
    if let Some(i) = p.iter().position(|x| *x == id) {
        p.swap_remove(i);
    }
}

/// Serves one keep-alive stream: on the leader (or for a stream a follower forwarded)
/// each request is answered on its own, so a slow round for one lease does not hold
/// up the others, with at most [`OUT_CAPACITY`] in flight per stream, so a client that
/// floods keep-alives waits instead of growing the member's memory; on a follower the
/// requests go to the leader over one forwarded stream.
async fn keep_alive_stream(
    api: Api,
    cache: LeaderCache,
    forwarded: bool,
    mut inbound: Streaming<pb::LeaseKeepAliveRequest>,
    out: Out,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(OUT_CAPACITY));
    let mut up: Option<Upstream> = None;
    while let Ok(Some(req)) = inbound.message().await {
        let leader = api.shared.status.borrow().leader;
        let here = forwarded || api.shared.lessor.lock().is_leader() || leader.is_none();
        if !here {
            if up.as_ref().is_some_and(|u| Some(u.leader) != leader) {
                up = None;
            }
            if up.is_none() {
                up = Upstream::open(&api, &cache, &out).await.ok();
            }
            if let Some(u) = &up {
                if u.send(req.id).await {
                    continue;
                }
                up = None;
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        answer_here(&api, &out, req.id, permit);
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
        let forwarded = request.metadata().get(FORWARDED).is_some();
        let (out, rx) = mpsc::channel(OUT_CAPACITY);
        tokio::spawn(keep_alive_stream(
            self.api.clone(),
            self.leader.clone(),
            forwarded,
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
