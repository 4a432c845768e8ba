//! Cluster membership as a member sees it. The engine orders membership changes; each
//! member's name and peer URLs ride in the engine's membership as that member's
//! context (`name\npeer-url,peer-url`), so every member agrees on them at every index.
//! Founding members have no context until one is set: their names and URLs come from
//! `--initial-cluster`.
//!
//! Before a change is ordered, the leader runs etcd's checks (`--strict-reconfig-check`,
//! on by default in etcd): they keep a change from costing the cluster its quorum.

use crate::config::{url_addr, MemberInfo};
use engine::{ConfChange, Index, Membership, NodeId, Payload};
use tonic::{Code, Status};

/// What a client asked for, before it is checked and made a [`ConfChange`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberRequest {
    /// `MemberAdd`.
    Add {
        /// The new member's peer URLs.
        peer_urls: Vec<String>,
        /// Added as a learner.
        learner: bool,
    },
    /// `MemberRemove`.
    Remove(NodeId),
    /// `MemberUpdate`.
    Update {
        /// The member.
        id: NodeId,
        /// Its new peer URLs.
        peer_urls: Vec<String>,
    },
    /// `MemberPromote`.
    Promote(NodeId),
}

/// Why etcd refuses a membership change, with its error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberError {
    /// `etcdserver: member not found`.
    NotFound,
    /// `etcdserver: member ID already exist`.
    Exists,
    /// `etcdserver: Peer URLs already exists`.
    PeerUrlExists,
    /// `etcdserver: given member URLs are invalid`.
    BadUrls,
    /// `etcdserver: can only promote a learner member`.
    NotLearner,
    /// `etcdserver: can only promote a learner member which is in sync with leader`.
    LearnerNotReady,
    /// `etcdserver: too many learner members in cluster`.
    TooManyLearners,
    /// `etcdserver: re-configuration failed due to not enough started members`.
    NotEnoughStarted,
    /// `etcdserver: unhealthy cluster`.
    Unhealthy,
}

impl MemberError {
    /// The gRPC status etcd answers with.
    pub fn status(self) -> Status {
        let (code, msg) = match self {
            MemberError::NotFound => (Code::NotFound, "etcdserver: member not found"),
            MemberError::Exists => (
                Code::FailedPrecondition,
                "etcdserver: member ID already exist",
            ),
            MemberError::PeerUrlExists => (
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            MemberError::BadUrls => (
                Code::InvalidArgument,
                "etcdserver: given member URLs are invalid",
            ),
            MemberError::NotLearner => (
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            MemberError::LearnerNotReady => (
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            MemberError::TooManyLearners => (
                Code::FailedPrecondition,
                "etcdserver: too many learner members in cluster",
            ),
            MemberError::NotEnoughStarted => (
                Code::FailedPrecondition,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
            MemberError::Unhealthy => (Code::Unavailable, "etcdserver: unhealthy cluster"),
        };
        Status::new(code, msg)
    }
}

impl From<engine::ConfChangeError> for MemberError {
    fn from(e: engine::ConfChangeError) -> MemberError {
        match e {
            engine::ConfChangeError::UnknownMember(_) | engine::ConfChangeError::ZeroId => {
                MemberError::NotFound
            }
            engine::ConfChangeError::AlreadyMember(_) => MemberError::Exists,
            engine::ConfChangeError::NotALearner(_) => MemberError::NotLearner,
            engine::ConfChangeError::NoVoterLeft => MemberError::NotEnoughStarted,
        }
    }
}

/// At most this many learners at once (etcd 3.4's limit).
pub const MAX_LEARNERS: usize = 1;

/// A learner is in sync once it holds this share of the leader's log (etcd's 90 %).
const READY_PERCENT: f64 = 0.9;

/// A member's context: its name and peer URLs.
pub fn context(name: &str, peer_urls: &[String]) -> Payload {
    Payload::from(format!("{name}\n{}", peer_urls.join(",")).into_bytes())
}

/// The name and peer URLs in a context (`None`: empty or not ours).
pub fn parse_context(c: &[u8]) -> Option<(String, Vec<String>)> {
    let text = std::str::from_utf8(c).ok()?;
    let (name, urls) = text.split_once('\n')?;
    let urls = urls.split(',').filter(|u| !u.is_empty()).map(String::from);
    Some((name.to_string(), urls.collect()))
}

/// Every member of `m`, with name and URLs from its context or else from the founding
/// members (`founders`, from `--initial-cluster`); `dial` overrides the address to
/// dial by name (the chaos lab's proxies).
pub fn directory(
    m: &Membership,
    founders: &[MemberInfo],
    dial: &[(String, String)],
) -> Vec<MemberInfo> {
    m.members()
        .map(|(id, member)| {
            let founder = founders.iter().find(|f| f.id == id);
            let (name, peer_urls) = match parse_context(&member.context) {
                Some(c) => c,
                None => {
                    founder.map_or_else(Default::default, |f| (f.name.clone(), f.peer_urls.clone()))
                }
            };
            let peer_url = peer_urls.first().cloned().unwrap_or_default();
            let dialled = |n: &String| (!name.is_empty() && *n == name) || peer_urls.contains(n);
            let peer_addr = dial
                .iter()
                .find(|(n, _)| dialled(n))
                .map(|(_, a)| a.clone())
                .or_else(|| url_addr(&peer_url).ok())
                .unwrap_or_default();
            MemberInfo {
                id,
                name,
                peer_url,
                peer_urls,
                peer_addr,
                learner: member.learner,
            }
        })
        .collect()
}

/// What the leader knows when it checks a change.
pub struct ClusterView<'a> {
    /// The membership in force.
    pub membership: &'a Membership,
    /// Every member's name and URLs.
    pub directory: &'a [MemberInfo],
    /// This member (the leader).
    pub me: NodeId,
    /// Members this one hears from (its failure detector's verdict), itself included.
    pub alive: &'a dyn Fn(NodeId) -> bool,
    /// The leader's view of each member's log.
    pub progress: &'a dyn Fn(NodeId) -> Option<Index>,
    /// The leader's last index.
    pub last_index: Index,
}

fn quorum(n: usize) -> usize {
    n / 2 + 1
}

impl ClusterView<'_> {
    fn started_voters(&self, except: Option<NodeId>) -> usize {
        let voters = self.membership.voters().filter(|v| Some(*v) != except);
        voters.filter(|v| (self.alive)(*v)).count()
    }

    fn all_voters_connected(&self) -> bool {
        self.membership.voters().all(|v| (self.alive)(v))
    }

    fn url_taken(&self, urls: &[String], except: Option<NodeId>) -> bool {
        let others = self.directory.iter().filter(|m| Some(m.id) != except);
        others
            .flat_map(|m| m.peer_urls.iter())
            .any(|u| urls.contains(u))
    }

    fn member(&self, id: NodeId) -> Result<&engine::Member, MemberError> {
        self.membership.get(id).ok_or(MemberError::NotFound)
    }

    /// etcd's checks for `request`; `new_id` names a member being added.
    pub fn check(
        &self,
        request: &MemberRequest,
        new_id: NodeId,
    ) -> Result<ConfChange, MemberError> {
        match request {
            MemberRequest::Add { peer_urls, learner } => {
                self.check_add(peer_urls, *learner, new_id)
            }
            MemberRequest::Remove(id) => self.check_remove(*id),
            MemberRequest::Update { id, peer_urls } => {
                let m = self.member(*id)?;
                check_urls(peer_urls)?;
                if self.url_taken(peer_urls, Some(*id)) {
                    return Err(MemberError::PeerUrlExists);
                }
                let name = self.directory.iter().find(|d| d.id == *id);
                let name = name.map_or("", |d| d.name.as_str());
                let _ = m;
                let context = context(name, peer_urls);
                Ok(ConfChange::Update { id: *id, context })
            }
            MemberRequest::Promote(id) => self.check_promote(*id),
        }
    }

    fn check_add(
        &self,
        urls: &[String],
        learner: bool,
        id: NodeId,
    ) -> Result<ConfChange, MemberError> {
        check_urls(urls)?;
        if self.url_taken(urls, None) {
            return Err(MemberError::PeerUrlExists);
        }
        if learner && self.membership.learners().count() >= MAX_LEARNERS {
            return Err(MemberError::TooManyLearners);
        }
        let voters = self.membership.voter_count();
        if !learner && self.started_voters(None) < quorum(voters + 1) {
            return Err(MemberError::NotEnoughStarted);
        }
        if !self.all_voters_connected() {
            return Err(MemberError::Unhealthy);
        }
        // The name is not known yet: the member sets it when it first starts.
        let context = context("", urls);
        Ok(if learner {
            ConfChange::AddLearner { id, context }
        } else {
            ConfChange::AddVoter { id, context }
        })
    }

    fn check_remove(&self, id: NodeId) -> Result<ConfChange, MemberError> {
        if self.member(id)?.learner {
            return Ok(ConfChange::Remove { id });
        }
        let voters = self.membership.voter_count();
        if self.started_voters(Some(id)) < quorum(voters - 1) {
            return Err(MemberError::NotEnoughStarted);
        }
        // A member that is down is not part of the active quorum: safe to remove.
        if id != self.me && !(self.alive)(id) {
            return Ok(ConfChange::Remove { id });
        }
        let active = self.started_voters(None);
        if active - 1 < quorum(voters) {
            return Err(MemberError::Unhealthy);
        }
        Ok(ConfChange::Remove { id })
    }

    fn check_promote(&self, id: NodeId) -> Result<ConfChange, MemberError> {
        if !self.member(id)?.learner {
            return Err(MemberError::NotLearner);
        }
        let matched = (self.progress)(id).unwrap_or_default();
        if (matched.0 as f64) < self.last_index.0 as f64 * READY_PERCENT {
            return Err(MemberError::LearnerNotReady);
        }
        let voters = self.membership.voter_count();
        if self.started_voters(None) < quorum(voters + 1) {
            return Err(MemberError::NotEnoughStarted);
        }
        Ok(ConfChange::Promote { id })
    }
}

/// Peer URLs must be `http://host:port`, and at least one.
fn check_urls(urls: &[String]) -> Result<(), MemberError> {
    if urls.is_empty() || urls.iter().any(|u| url_addr(u).is_err()) {
        return Err(MemberError::BadUrls);
    }
    Ok(())
}

/// A new member's id: from its peer URLs, the cluster token and `salt` (different for
/// every add), never 0 and never one in use.
pub fn new_member_id(peer_urls: &[String], token: &str, salt: u64, taken: &Membership) -> NodeId {
    let urls = peer_urls.join(",");
    let mut salt = salt;
    loop {
        let id = crate::config::fnv64(&[urls.as_bytes(), token.as_bytes(), &salt.to_le_bytes()]);
        let id = NodeId(id.max(1));
        if !taken.contains(id) {
            return id;
        }
        salt = salt.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(p: u16) -> Vec<String> {
        vec![format!("http://127.0.0.1:{p}")]
    }

    fn founders() -> Vec<MemberInfo> {
        (1..=3)
            .map(|i| MemberInfo {
                id: NodeId(i),
                name: format!("m{i}"),
                peer_url: url(i as u16)[0].clone(),
                peer_urls: url(i as u16),
                peer_addr: String::new(),
                learner: false,
            })
            .collect()
    }

    fn check(m: &Membership, alive: &[u64], req: MemberRequest) -> Result<ConfChange, MemberError> {
        let dir = directory(m, &founders(), &[]);
        let alive = |id: NodeId| alive.contains(&id.0);
        let progress = |id: NodeId| Some(Index(if id.0 == 9 { 50 } else { 100 }));
        let view = ClusterView {
            membership: m,
            directory: &dir,
            me: NodeId(1),
            alive: &alive,
            progress: &progress,
            last_index: Index(100),
        };
        view.check(&req, NodeId(9))
    }

    #[test]
    fn contexts_round_trip_and_fill_the_directory() {
        let c = context("n", &url(7));
        assert_eq!(parse_context(&c), Some(("n".into(), url(7))));
        assert_eq!(parse_context(b""), None);
        let m = Membership::of_voters([NodeId(1), NodeId(2)]);
        let m = m
            .apply(&ConfChange::AddLearner {
                id: NodeId(9),
                context: c,
            })
            .unwrap();
        let dir = directory(&m, &founders(), &[("n".into(), "proxy:1".into())]);
        let names: Vec<_> = dir.iter().map(|d| (d.name.as_str(), d.learner)).collect();
        assert_eq!(names, vec![("m1", false), ("m2", false), ("n", true)]);
        assert_eq!(dir[2].peer_addr, "proxy:1");
        assert_eq!(dir[0].peer_addr, "127.0.0.1:1");
    }

    #[test]
    fn etcds_checks() {
        let three = Membership::of_voters((1..=3).map(NodeId));
        let add = |p, learner| MemberRequest::Add {
            peer_urls: url(p),
            learner,
        };
        assert!(matches!(
            check(&three, &[1, 2, 3], add(9, true)),
            Ok(ConfChange::AddLearner { .. })
        ));
        assert_eq!(
            check(&three, &[1, 2, 3], add(2, true)),
            Err(MemberError::PeerUrlExists)
        );
        let bad = MemberRequest::Add {
            peer_urls: vec!["nope".into()],
            learner: false,
        };
        assert_eq!(check(&three, &[1, 2, 3], bad), Err(MemberError::BadUrls));
        // Adding a voter to three with one down: four need three started; two are.
        assert_eq!(
            check(&three, &[1, 2], add(9, false)),
            Err(MemberError::NotEnoughStarted)
        );
        // A learner needs no quorum, but every voter connected.
        assert_eq!(
            check(&three, &[1, 2], add(9, true)),
            Err(MemberError::Unhealthy)
        );
        assert_eq!(
            check(&three, &[1, 2, 3], MemberRequest::Remove(NodeId(7))),
            Err(MemberError::NotFound)
        );
        // Removing a live member of three with another down leaves one of two.
        assert_eq!(
            check(&three, &[1, 2], MemberRequest::Remove(NodeId(2))),
            Err(MemberError::NotEnoughStarted)
        );
        // A down member may go.
        assert!(check(&three, &[1, 2], MemberRequest::Remove(NodeId(3))).is_ok());
        assert_eq!(
            check(&three, &[1, 2, 3], MemberRequest::Promote(NodeId(2))),
            Err(MemberError::NotLearner)
        );
        let with_learner = three
            .apply(&ConfChange::AddLearner {
                id: NodeId(9),
                context: context("", &url(9)),
            })
            .unwrap();
        assert_eq!(
            check(&with_learner, &[1, 2, 3], add(8, true)),
            Err(MemberError::TooManyLearners)
        );
        assert_eq!(
            check(
                &with_learner,
                &[1, 2, 3, 9],
                MemberRequest::Promote(NodeId(9))
            ),
            Err(MemberError::LearnerNotReady)
        );
        let update = MemberRequest::Update {
            id: NodeId(2),
            peer_urls: url(3),
        };
        assert_eq!(
            check(&three, &[1, 2, 3], update),
            Err(MemberError::PeerUrlExists)
        );
        let update = MemberRequest::Update {
            id: NodeId(2),
            peer_urls: url(22),
        };
        assert!(matches!(
            check(&three, &[1, 2, 3], update),
            Ok(ConfChange::Update { .. })
        ));
    }

    #[test]
    fn new_ids_avoid_members() {
        let m = Membership::of_voters([NodeId(1)]);
        let a = new_member_id(&url(1), "t", 5, &m);
        let m2 = Membership::of_voters([NodeId(1), a]);
        assert_ne!(new_member_id(&url(1), "t", 5, &m2), a);
    }
}
