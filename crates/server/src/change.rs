//! The driver's side of membership: ordering the changes clients ask for (etcd's
//! checks first, one change at a time, answered once applied), and following the
//! membership in force (the peer links, the failure detector, `Shared::members`).

use crate::config::MemberInfo;
use crate::driver::Driver;
use crate::members::{self, ClusterView, MemberRequest};
use crate::state::Metrics;
use engine::{ChangeRefused, ConfChange, Engine, Index, Membership, NodeId, Role};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tonic::Status;

/// What a change's client gets: the member it was about, and every member after it.
pub type ChangeReply = oneshot::Sender<Result<ChangeDone, Status>>;

/// A membership change applied.
#[derive(Clone, Debug)]
pub struct ChangeDone {
    /// The member the change was about.
    pub id: NodeId,
    /// Every member afterwards.
    pub members: Vec<MemberInfo>,
}

/// A change waiting for its turn, or for its entry to apply.
pub(crate) struct PendingChange {
    request: MemberRequest,
    reply: ChangeReply,
    /// Where it was ordered, once it was, and the member it is about.
    ordered: Option<(Index, NodeId)>,
    /// When it stops waiting for an earlier change to commit.
    deadline: Instant,
}

/// How long a change waits for an earlier one to commit before it gives up.
const WAIT_FOR_TURN: Duration = Duration::from_secs(5);

impl Driver {
    /// A client asked for a change: queued behind any other.
    pub(crate) fn on_change_request(&mut self, request: MemberRequest, reply: ChangeReply) {
        let deadline = Instant::now() + WAIT_FOR_TURN;
        self.changes.push_back(PendingChange {
            request,
            reply,
            ordered: None,
            deadline,
        });
    }

    /// Orders the first waiting change once it may go, and answers changes whose
    /// entry applied (or whose slot another entry took).
    pub(crate) fn advance_changes(&mut self) {
        for done in self.replica.take_changes() {
            if let ConfChange::Remove { id } = done.change {
                if id == self.shared.member_id {
                    // etcd's behaviour: a member removed from the cluster stops.
                    self.removed = true;
                } else {
                    self.shared.removed.lock().unwrap().insert(id);
                    self.dropped.push(id);
                }
            }
            self.applied_membership = done.membership.clone();
            let ordered = self.changes.front().and_then(|p| p.ordered);
            if let Some((index, id)) = ordered.filter(|(i, _)| *i == done.index) {
                let members = self.directory(&done.membership);
                let p = self.changes.pop_front().expect("front checked");
                let _ = p.reply.send(Ok(ChangeDone { id, members }));
                tracing::info!(event = "membership_changed", index = index.0, change = ?done.change, "membership change applied");
            }
        }
        let applied = self.replica.applied();
        if let Some(p) = self.changes.front() {
            if p.ordered.is_some_and(|(i, _)| applied >= i) {
                // Another leader's entry took the slot: the change was lost.
                let p = self.changes.pop_front().expect("front checked");
                let _ = p.reply.send(Err(crate::api::errors::leader_changed()));
            }
        }
        while let Some(p) = self.changes.front() {
            if p.ordered.is_some() {
                return;
            }
            let deadline = p.deadline;
            match self.try_order() {
                Ok(Some(ordered)) => {
                    if let Some(p) = self.changes.front_mut() {
                        p.ordered = Some(ordered);
                    }
                    return;
                }
                Ok(None) if Instant::now() < deadline => return,
                Ok(None) => self.fail_front(crate::api::errors::timeout()),
                Err(e) => self.fail_front(e),
            }
        }
    }

    fn fail_front(&mut self, e: Status) {
        if let Some(p) = self.changes.pop_front() {
            let _ = p.reply.send(Err(e));
        }
    }

    /// Orders the first waiting change: `Ok(None)` while an earlier one is not
    /// committed yet.
    fn try_order(&mut self) -> Result<Option<(Index, NodeId)>, Status> {
        let status = self.replica.status();
        if status.role != Role::Leader {
            return Err(match status.leader {
                Some(_) => crate::api::errors::leader_changed(),
                None => crate::api::errors::no_leader(),
            });
        }
        let request = self.changes.front().map(|p| p.request.clone());
        let Some(request) = request else {
            return Ok(None);
        };
        let change = self.checked(&request)?;
        let id = change.id();
        match self.replica.change_membership(change) {
            Ok(index) => Ok(Some((index, id))),
            Err(ChangeRefused::InProgress) => Ok(None),
            Err(ChangeRefused::NotLeader(_)) => Err(crate::api::errors::leader_changed()),
            Err(ChangeRefused::Invalid(e)) => Err(members::MemberError::from(e).status()),
        }
    }

    /// etcd's checks, against what this leader knows now.
    fn checked(&self, request: &MemberRequest) -> Result<ConfChange, Status> {
        let engine = self.replica.engine();
        let membership = engine.membership();
        let directory = self.shared.members();
        let me = self.shared.member_id;
        let health = self.shared.health.lock().unwrap();
        let alive = |id: NodeId| id == me || health.alive(id);
        let progress = |id: NodeId| engine.peer_progress(id);
        let view = ClusterView {
            membership,
            directory: &directory,
            me,
            alive: &alive,
            progress: &progress,
            last_index: engine.status().last_index,
        };
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let urls = match request {
            MemberRequest::Add { peer_urls, .. } => peer_urls.clone(),
            _ => Vec::new(),
        };
        let token = self.shared.cluster_id.to_string();
        let new_id = members::new_member_id(&urls, &token, salt, membership);
        view.check(request, new_id).map_err(|e| e.status())
    }

    /// Every member of `m`, with names and URLs.
    fn directory(&self, m: &Membership) -> Vec<MemberInfo> {
        let dir = members::directory(m, &self.shared.founders, &self.peer_dial);
        self.shared.named(dir)
    }

    /// Follows the membership in force: links to its members, detectors and round-trip
    /// histograms for them. Links to members of the last applied membership stay too:
    /// a leader that removes itself needs its followers' answers until the change
    /// commits. A member that joined and has not yet heard its group (an empty
    /// membership) keeps the links it started with.
    pub(crate) fn follow_membership(&mut self) {
        let m = self.replica.engine().membership();
        let unchanged = *m == self.membership && self.linked == self.applied_membership;
        if m.is_empty() || unchanged {
            return;
        }
        let m = m.clone();
        let dir = self.directory(&m);
        let mut links = dir.clone();
        for old in self.directory(&self.applied_membership) {
            if !links.iter().any(|l| l.id == old.id) {
                links.push(old);
            }
        }
        self.peers.set_peers(&links);
        let me = self.shared.member_id;
        let others: Vec<NodeId> = dir.iter().map(|d| d.id).filter(|id| *id != me).collect();
        let mut health = self.shared.health.lock().unwrap();
        let cfg = health.cfg;
        health.set_peers(&others, cfg);
        drop(health);
        self.round_trips.retain(|id, _| others.contains(id));
        for id in &others {
            self.round_trips.entry(*id).or_insert_with(|| {
                let to = Metrics::peer_label(*id);
                let h = &self.shared.metrics.peer_round_trip_seconds;
                h.with_label_values(&[&to])
            });
        }
        tracing::info!(event = "membership", members = %m, "membership in force");
        self.membership = m;
        self.linked = self.applied_membership.clone();
        *self.shared.members.write() = dir;
    }
}
