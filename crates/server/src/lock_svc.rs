//! `v3lockpb.Lock`: Lock and Unlock, etcd's mutex recipe run by the server (see
//! [`crate::recipe`]). The lock is held by the key `NAME/LEASE` for as long as it
//! exists; its create revision is a fencing token.

use crate::api::Api;
use crate::recipe;
use etcdpb::v3lockpb as pb;
use tonic::{Request, Response, Status};

/// The Lock service.
pub struct LockService {
    api: Api,
}

impl LockService {
    /// A Lock service over `api`.
    pub fn new(api: Api) -> LockService {
        LockService { api }
    }
}

#[tonic::async_trait]
impl pb::lock_server::Lock for LockService {
    async fn lock(
        &self,
        request: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        let r = request.into_inner();
        let mut prefix = r.name;
        prefix.push(b'/');
        let entered = recipe::enter(&self.api, &prefix, r.lease, b"").await?;
        let withdraw = recipe::Withdraw::new(&self.api, entered.key.clone());
        recipe::wait_turn(&self.api, &prefix, entered.rev, &entered.key).await?;
        withdraw.disarm();
        let rev = self.api.shared.store.read().revision();
        Ok(Response::new(pb::LockResponse {
            header: self.api.header(rev),
            key: entered.key,
        }))
    }

    async fn unlock(
        &self,
        request: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        let delete = kv::DeleteRangeRequest {
            key: request.into_inner().key,
            ..Default::default()
        };
        self.api.await_leader().await?;
        match self.api.write(kv::Request::DeleteRange(delete)).await? {
            kv::Response::DeleteRange(d) => Ok(Response::new(pb::UnlockResponse {
                header: self.api.header(d.revision),
            })),
            other => Err(Status::internal(format!("unexpected response {other:?}"))),
        }
    }
}
