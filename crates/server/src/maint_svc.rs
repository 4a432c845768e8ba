//! `etcdserverpb.Cluster` (MemberList) and `etcdserverpb.Maintenance` (Status, Alarm,
//! Defragment, Hash, HashKV, MoveLeader).

use crate::api::{errors, Api};
use crate::change::ChangeDone;
use crate::members::MemberRequest;
use engine::NodeId;
use etcdpb::etcdserverpb as pb;
use pb::cluster_client::ClusterClient;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// The etcd API version Synod speaks (what `endpoint status` prints as VERSION).
pub const API_VERSION: &str = "3.4.0";

/// The Cluster service.
pub struct ClusterService {
    api: Api,
}

impl ClusterService {
    /// A Cluster service over `api`.
    pub fn new(api: Api) -> ClusterService {
        ClusterService { api }
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let members = self.api.shared.members();
        Ok(Response::new(pb::MemberListResponse {
            header: self.header(),
            members: self.described(&members),
        }))
    }

    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let r = request.into_inner();
        let ask = MemberRequest::Add {
            peer_urls: r.peer_ur_ls.clone(),
            learner: r.is_learner,
        };
        let Some(done) = self.change(ask).await? else {
            let mut c = self.leader_client().await?;
            return c.member_add(r).await;
        };
        let added = done.members.iter().find(|m| m.id == done.id);
        Ok(Response::new(pb::MemberAddResponse {
            header: self.header(),
            member: added.map(|m| self.described(std::slice::from_ref(m)).remove(0)),
            members: self.described(&done.members),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let r = request.into_inner();
        let Some(done) = self.change(MemberRequest::Remove(NodeId(r.id))).await? else {
            let mut c = self.leader_client().await?;
            return c.member_remove(r).await;
        };
        Ok(Response::new(pb::MemberRemoveResponse {
            header: self.header(),
            members: self.described(&done.members),
        }))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let r = request.into_inner();
        let ask = MemberRequest::Update {
            id: NodeId(r.id),
            peer_urls: r.peer_ur_ls.clone(),
        };
        let Some(done) = self.change(ask).await? else {
            let mut c = self.leader_client().await?;
            return c.member_update(r).await;
        };
        Ok(Response::new(pb::MemberUpdateResponse {
            header: self.header(),
            members: self.described(&done.members),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let r = request.into_inner();
        let Some(done) = self.change(MemberRequest::Promote(NodeId(r.id))).await? else {
            let mut c = self.leader_client().await?;
            return c.member_promote(r).await;
        };
        Ok(Response::new(pb::MemberPromoteResponse {
            header: self.header(),
            members: self.described(&done.members),
        }))
    }
}

impl ClusterService {
    fn header(&self) -> Option<pb::ResponseHeader> {
        let rev = self.api.shared.store.read().revision();
        self.api.header(rev)
    }

    /// Members as etcd lists them: a member that never started has no name and no
    /// client URLs.
    fn described(&self, members: &[crate::config::MemberInfo]) -> Vec<pb::Member> {
        let shared = &self.api.shared;
        members
            .iter()
            .map(|m| pb::Member {
                id: m.id.0,
                name: m.name.clone(),
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: shared.client_urls_of(m.id),
                is_learner: m.learner,
            })
            .collect()
    }

    /// Orders `ask` here if this member leads (`Some`), or says to hand it to the
    /// leader (`None`).
    async fn change(&self, ask: MemberRequest) -> Result<Option<ChangeDone>, Status> {
        self.api.await_leader().await?;
        let shared = &self.api.shared;
        if shared.status.borrow().leader != Some(shared.member_id) {
            return Ok(None);
        }
        self.api.change_membership(ask).await.map(Some)
    }

    /// A client of the leader's Cluster service.
    async fn leader_client(&self) -> Result<ClusterClient<Channel>, Status> {
        let leader = self.api.leader().await?;
        Ok(ClusterClient::new(self.api.dial(leader).await?))
    }
}

/// The Maintenance service.
pub struct MaintenanceService {
    api: Api,
}

impl MaintenanceService {
    /// A Maintenance service over `api`.
    pub fn new(api: Api) -> MaintenanceService {
        MaintenanceService { api }
    }

    fn revision(&self) -> i64 {
        self.api.shared.store.read().revision()
    }
}

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceService {
    type SnapshotStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let header = self.api.header(self.revision());
        let chunks = crate::backup::stream(self.api.shared.clone(), header);
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            chunks,
        )))
    }

    async fn alarm(
        &self,
        _request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        // The one alarm Synod raises: NOSPACE while this member is over its quota. It
        // clears by itself once compaction brings the store back under the quota.
        let alarms = if self.api.over_quota() {
            vec![pb::AlarmMember {
                member_id: self.api.shared.member_id.0,
                alarm: pb::AlarmType::Nospace as i32,
            }]
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::AlarmResponse {
            header: self.api.header(self.revision()),
            alarms,
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let st = self.api.shared.status();
        let (rev, in_use) = {
            let store = self.api.shared.store.read();
            (store.revision(), store.approx_bytes() as i64)
        };
        let on_disk = self.api.shared.disk_bytes() as i64;
        let me = self.api.shared.member_id;
        let learner = (self.api.shared.members().iter()).any(|m| m.id == me && m.learner);
        let mut errors = Vec::new();
        if st.leader.is_none() {
            errors.push("etcdserver: no leader".to_string());
        }
        if self.api.over_quota() {
            errors.push(format!(
                "memberID:{} alarm:NOSPACE ",
                self.api.shared.member_id.0
            ));
        }
        Ok(Response::new(pb::StatusResponse {
            header: self.api.header(rev),
            version: API_VERSION.to_string(),
            db_size: on_disk,
            leader: st.leader.map_or(0, |l| l.0),
            raft_index: st.commit,
            raft_term: st.term,
            raft_applied_index: st.applied,
            errors,
            db_size_in_use: in_use,
            is_learner: learner,
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.api.defragment().await?;
        Ok(Response::new(pb::DefragmentResponse {
            header: self.api.header(self.revision()),
        }))
    }

    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        let (rev, hash) = {
            let store = self.api.shared.store.read();
            (store.revision(), store.hash(store.revision()))
        };
        Ok(Response::new(pb::HashResponse {
            header: self.api.header(rev),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        let store = self.api.shared.store.read();
        let current = store.revision();
        let want = request.get_ref().revision;
        let rev = if want <= 0 { current } else { want };
        if rev > current {
            return Err(crate::api::kv_status(kv::KvError::FutureRevision));
        }
        if rev < store.compact_revision() {
            return Err(crate::api::kv_status(kv::KvError::Compacted));
        }
        Ok(Response::new(pb::HashKvResponse {
            header: self.api.header(current),
            hash: store.hash(rev),
            compact_revision: store.compact_revision(),
            hash_revision: rev,
        }))
    }

    /// etcd's MoveLeader: only the leader hands over, only to a member; the answer
    /// comes once the target leads (as this member sees it), or etcd's timeout error.
    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let shared = &self.api.shared;
        let me = shared.member_id;
        if shared.status.borrow().leader != Some(me) {
            return Err(errors::not_leader());
        }
        let target = NodeId(request.get_ref().target_id);
        if !shared.members().iter().any(|m| m.id == target) {
            return Err(errors::bad_transferee());
        }
        if target != me {
            // etcdctl's default command timeout is 5 s; the transfer itself is dropped
            // after an election timeout, so waiting much longer gains nothing.
            let within = (shared.election * 3).max(Duration::from_secs(2));
            self.api.move_leader(target, within).await?;
        }
        let revision = shared.store.read().revision();
        Ok(Response::new(pb::MoveLeaderResponse {
            header: self.api.header(revision),
        }))
    }
}
