//! `v3electionpb.Election`: Campaign, Proclaim, Leader, Observe and Resign, etcd's
//! election recipe run by the server (see [`crate::recipe`]). The leader is the
//! campaigner whose key `NAME/LEASE` has the lowest create revision; its value is
//! what it proclaimed.

use crate::api::Api;
use crate::convert;
use crate::recipe::{self, created_at};
use crate::watch_hub::Feed;
use etcdpb::v3electionpb as pb;
use kv::{RequestOp, TxnRequest};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

/// Observations a stream may have queued for a slow client.
const OUT_CAPACITY: usize = 16;

fn not_leader() -> Status {
    // etcd's server hands the recipe's error through as is (code Unknown).
    Status::new(Code::Unknown, "election: not leader")
}

fn no_leader() -> Status {
    Status::new(Code::Unknown, "election: no leader")
}

/// The prefix of election `name`.
fn prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// The current leader's key of election `name` in this member's applied store.
fn leader_kv(api: &Api, name: &[u8]) -> Option<kv::KeyValue> {
    let p = prefix(name);
    let first = kv::RangeRequest {
        key: p.clone(),
        range_end: recipe::prefix_end(&p),
        limit: 1,
        sort_order: kv::SortOrder::Ascend,
        sort_target: kv::SortTarget::Create,
        ..Default::default()
    };
    let store = api.shared.store.read();
    store.range(&first).ok()?.kvs.into_iter().next()
}

/// The Election service.
pub struct ElectionService {
    api: Api,
}

impl ElectionService {
    /// An Election service over `api`.
    pub fn new(api: Api) -> ElectionService {
        ElectionService { api }
    }

    /// Runs `op` in a Txn that succeeds only while `l` is still that leadership (its key
    /// exists with the create revision it had).
    async fn while_leading(
        &self,
        l: &pb::LeaderKey,
        op: RequestOp,
    ) -> Result<kv::TxnResponse, Status> {
        recipe::txn(
            &self.api,
            TxnRequest {
                compare: vec![created_at(&l.key, l.rev)],
                success: vec![op],
                failure: Vec::new(),
            },
        )
        .await
    }

    /// Writes `value` to the leader's key if it is still that leadership.
    async fn proclaim_as(&self, l: &pb::LeaderKey, value: Vec<u8>) -> Result<i64, Status> {
        let put = kv::PutRequest {
            key: l.key.clone(),
            value,
            lease: l.lease,
            ..Default::default()
        };
        let r = self.while_leading(l, RequestOp::Put(put)).await?;
        if !r.succeeded {
            return Err(not_leader());
        }
        Ok(r.revision)
    }
}

/// Sends the leader of `name` whenever it (or its value) changes, until the client
/// goes away.
async fn observe(api: Api, name: Vec<u8>, out: mpsc::Sender<Result<pb::LeaderResponse, Status>>) {
    let mut feed = api.shared.watch_hub.subscribe();
    let mut last: Option<(Vec<u8>, i64)> = None;
    loop {
        if let Some(kv) = leader_kv(&api, &name) {
            let seen = Some((kv.key.clone(), kv.mod_revision));
            if seen != last {
                last = seen;
                let rev = api.shared.store.read().revision();
                let r = pb::LeaderResponse {
                    header: api.header(rev),
                    kv: Some(convert::kv_out(kv)),
                };
                if out.send(Ok(r)).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            got = feed.recv() => match got {
                Ok(Feed::Revision(_) | Feed::Reset) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = out.closed() => return,
        }
    }
}

#[tonic::async_trait]
impl pb::election_server::Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<pb::CampaignRequest>,
    ) -> Result<Response<pb::CampaignResponse>, Status> {
        let r = request.into_inner();
        let p = prefix(&r.name);
        let entered = recipe::enter(&self.api, &p, r.lease, &r.value).await?;
        let withdraw = recipe::Withdraw::new(&self.api, entered.key.clone());
        let leader = pb::LeaderKey {
            name: r.name,
            key: entered.key.clone(),
            rev: entered.rev,
            lease: r.lease,
        };
        // Campaigning again with the same lease and a new value proclaims it.
        if entered.existing.is_some_and(|v| v != r.value) {
            self.proclaim_as(&leader, r.value).await?;
        }
        recipe::wait_turn(&self.api, &p, entered.rev, &entered.key).await?;
        withdraw.disarm();
        let rev = self.api.shared.store.read().revision();
        Ok(Response::new(pb::CampaignResponse {
            header: self.api.header(rev),
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<pb::ProclaimRequest>,
    ) -> Result<Response<pb::ProclaimResponse>, Status> {
        let r = request.into_inner();
        let leader = r.leader.ok_or_else(not_leader)?;
        let rev = self.proclaim_as(&leader, r.value).await?;
        Ok(Response::new(pb::ProclaimResponse {
            header: self.api.header(rev),
        }))
    }

    async fn leader(
        &self,
        request: Request<pb::LeaderRequest>,
    ) -> Result<Response<pb::LeaderResponse>, Status> {
        self.api.await_leader().await?;
        self.api.read_barrier().await?;
        let name = request.into_inner().name;
        let kv = leader_kv(&self.api, &name).ok_or_else(no_leader)?;
        let rev = self.api.shared.store.read().revision();
        Ok(Response::new(pb::LeaderResponse {
            header: self.api.header(rev),
            kv: Some(convert::kv_out(kv)),
        }))
    }

    type ObserveStream = ReceiverStream<Result<pb::LeaderResponse, Status>>;

    async fn observe(
        &self,
        request: Request<pb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let (out, rx) = mpsc::channel(OUT_CAPACITY);
        let name = request.into_inner().name;
        tokio::spawn(observe(self.api.clone(), name, out));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn resign(
        &self,
        request: Request<pb::ResignRequest>,
    ) -> Result<Response<pb::ResignResponse>, Status> {
        let leader = request.into_inner().leader.ok_or_else(not_leader)?;
        let delete = kv::DeleteRangeRequest {
            key: leader.key.clone(),
            ..Default::default()
        };
        // Only while it is still that leadership; otherwise nothing happens, as in etcd.
        let r = self
            .while_leading(&leader, RequestOp::DeleteRange(delete))
            .await?;
        Ok(Response::new(pb::ResignResponse {
            header: self.api.header(r.revision),
        }))
    }
}
