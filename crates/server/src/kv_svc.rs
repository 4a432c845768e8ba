//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact.

use crate::api::{errors, kv_status, Api};
use crate::convert;
use etcdpb::etcdserverpb as pb;
use prost::Message as _;
use tonic::{Request, Response, Status};

/// The KV service.
pub struct KvService {
    api: Api,
}

impl KvService {
    /// A KV service over `api`.
    pub fn new(api: Api) -> KvService {
        KvService { api }
    }

    fn check_size(&self, len: usize) -> Result<(), Status> {
        if len > self.api.shared.max_request_bytes {
            return Err(errors::too_large());
        }
        Ok(())
    }

    /// Writes that add data are refused while the store is over its quota (deletes and
    /// compaction still go through, so an operator can make room).
    fn check_quota(&self) -> Result<(), Status> {
        if self.api.over_quota() {
            return Err(errors::no_space());
        }
        Ok(())
    }

    /// Proposes a write (handed to the leader when this member follows).
    async fn write(&self, w: kv::Request) -> Result<kv::Response, Status> {
        self.api.await_leader().await?;
        self.api.write(w).await
    }

    fn local_range(&self, req: &pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        let store = self.api.shared.store.read();
        let r = store.range(&convert::range_in(req)).map_err(kv_status)?;
        let rev = r.revision;
        Ok(convert::range_out(r, self.api.header(rev)))
    }
}

/// A write's response as the gRPC reply of its kind.
macro_rules! reply {
    ($self:ident, $res:expr, $variant:ident, $conv:path) => {
        match $res? {
            kv::Response::$variant(r) => {
                let rev = r.revision;
                Ok(Response::new($conv(r, $self.api.header(rev))))
            }
            other => Err(Status::internal(format!("unexpected response {other:?}"))),
        }
    };
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        #[cfg(feature = "planted-bugs")]
        if self
            .api
            .shared
            .bug(crate::config::ServerBug::StaleLocalRead)
        {
            return self.local_range(request.get_ref()).map(Response::new);
        }
        if !request.get_ref().serializable {
            // On a follower too: the leader names a read index (after confirming its
            // leadership with a quorum) and the read is served here once applied.
            self.api.await_leader().await?;
            self.api.read_barrier().await?;
        }
        self.local_range(request.get_ref()).map(Response::new)
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        self.check_size(request.get_ref().encoded_len())?;
        self.check_quota()?;
        let res = self
            .write(kv::Request::Put(convert::put_into(request.into_inner())))
            .await;
        reply!(self, res, Put, convert::put_out)
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        self.check_size(request.get_ref().encoded_len())?;
        let res = self
            .write(kv::Request::DeleteRange(convert::delete_in(
                request.get_ref(),
            )))
            .await;
        reply!(self, res, DeleteRange, convert::delete_out)
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let t = request.get_ref();
        self.check_size(t.encoded_len())?;
        if [t.compare.len(), t.success.len(), t.failure.len()]
            .iter()
            .any(|n| *n > kv::MAX_TXN_OPS)
        {
            return Err(errors::too_many_ops());
        }
        let writes = |ops: &[pb::RequestOp]| {
            ops.iter().any(|o| {
                !matches!(
                    o.request,
                    Some(pb::request_op::Request::RequestRange(_)) | None
                )
            })
        };
        if writes(&t.success) || writes(&t.failure) {
            self.check_quota()?;
        }
        let res = self
            .write(kv::Request::Txn(convert::txn_in(request.get_ref())))
            .await;
        reply!(self, res, Txn, convert::txn_out)
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let physical = request.get_ref().physical;
        match self
            .write(kv::Request::Compact(request.get_ref().revision))
            .await?
        {
            kv::Response::Compacted { revision } => {
                if physical {
                    self.api.compacted_here().await;
                }
                Ok(Response::new(pb::CompactionResponse {
                    header: self.api.header(revision),
                }))
            }
            other => Err(Status::internal(format!("unexpected response {other:?}"))),
        }
    }
}
