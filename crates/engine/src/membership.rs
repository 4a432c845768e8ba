//! Group membership in engine-neutral words: who votes, who only learns, and the
//! opaque context a driver attaches to each member (the server keeps a member's name
//! and URLs there). A membership change moves the group from one [`Membership`] to the
//! next by one [`ConfChange`]; an engine orders changes like commands, so every member
//! agrees on the membership in force at every index.
//!
//! The binary form (used in log entries, WAL records and snapshots) is little endian:
//! `count u32`, then per member `id u64 | learner u8 | context_len u32 | context`,
//! members in id order.

use crate::ids::{NodeId, Payload};
use crate::DecodeError;
use std::collections::BTreeMap;
use std::fmt;

/// One member's place in a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// A learner receives the log but never votes and never counts in a quorum.
    pub learner: bool,
    /// The driver's bytes about this member (name, URLs), opaque to engines.
    pub context: Payload,
}

/// The members of a group at one point in its order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    members: BTreeMap<NodeId, Member>,
}

/// One step from a membership to the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfChange {
    /// A new voting member.
    AddVoter {
        /// Its id.
        id: NodeId,
        /// The driver's bytes about it.
        context: Payload,
    },
    /// A new non-voting member.
    AddLearner {
        /// Its id.
        id: NodeId,
        /// The driver's bytes about it.
        context: Payload,
    },
    /// A learner becomes a voter.
    Promote {
        /// The learner.
        id: NodeId,
    },
    /// A member leaves.
    Remove {
        /// The member.
        id: NodeId,
    },
    /// A member's context changes (its URLs, say); votes are unchanged.
    Update {
        /// The member.
        id: NodeId,
        /// Its new context.
        context: Payload,
    },
}

impl ConfChange {
    /// The member the change is about.
    pub fn id(&self) -> NodeId {
        match self {
            ConfChange::AddVoter { id, .. }
            | ConfChange::AddLearner { id, .. }
            | ConfChange::Promote { id }
            | ConfChange::Remove { id }
            | ConfChange::Update { id, .. } => *id,
        }
    }
}

impl ConfChange {
    /// Appends the binary form: `kind u8 (1 add voter, 2 add learner, 3 promote,
    /// 4 remove, 5 update) | id u64 | context` (context only for 1, 2 and 5).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (kind, context) = match self {
            ConfChange::AddVoter { context, .. } => (1, Some(context)),
            ConfChange::AddLearner { context, .. } => (2, Some(context)),
            ConfChange::Promote { .. } => (3, None),
            ConfChange::Remove { .. } => (4, None),
            ConfChange::Update { context, .. } => (5, Some(context)),
        };
        out.push(kind);
        out.extend_from_slice(&self.id().0.to_le_bytes());
        if let Some(c) = context {
            out.extend_from_slice(c);
        }
    }

    /// Reads the binary form; the whole of `bytes` must be one change.
    pub fn decode(bytes: &[u8]) -> Result<ConfChange, DecodeError> {
        let mut r = Reader(bytes);
        let kind = r.take(1)?[0];
        let id = NodeId(r.u64()?);
        let context = || Payload::from(r.0);
        let change = match kind {
            1 => ConfChange::AddVoter {
                id,
                context: context(),
            },
            2 => ConfChange::AddLearner {
                id,
                context: context(),
            },
            3 if r.0.is_empty() => ConfChange::Promote { id },
            4 if r.0.is_empty() => ConfChange::Remove { id },
            5 => ConfChange::Update {
                id,
                context: context(),
            },
            _ => return Err(DecodeError("unknown membership change")),
        };
        Ok(change)
    }
}

/// Why a change cannot apply to a membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChangeError {
    /// The member is not in the group.
    UnknownMember(NodeId),
    /// The member is in the group already.
    AlreadyMember(NodeId),
    /// Only a learner can be promoted.
    NotALearner(NodeId),
    /// The change would leave the group without a voter.
    NoVoterLeft,
    /// Node id 0 means "none".
    ZeroId,
}

impl fmt::Display for ConfChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfChangeError::UnknownMember(id) => write!(f, "member {id} not found"),
            ConfChangeError::AlreadyMember(id) => write!(f, "member {id} exists already"),
            ConfChangeError::NotALearner(id) => write!(f, "member {id} is not a learner"),
            ConfChangeError::NoVoterLeft => f.write_str("the change would leave no voter"),
            ConfChangeError::ZeroId => f.write_str("member id 0 is reserved"),
        }
    }
}

impl std::error::Error for ConfChangeError {}

impl Membership {
    /// A group of voters with empty contexts.
    pub fn of_voters(ids: impl IntoIterator<Item = NodeId>) -> Membership {
        let empty: Payload = Payload::from(&[][..]);
        let members = ids
            .into_iter()
            .map(|id| {
                let m = Member {
                    learner: false,
                    context: empty.clone(),
                };
                (id, m)
            })
            .collect();
        Membership { members }
    }

    /// Every member with its place, in id order.
    pub fn members(&self) -> impl Iterator<Item = (NodeId, &Member)> + '_ {
        self.members.iter().map(|(id, m)| (*id, m))
    }

    /// One member.
    pub fn get(&self, id: NodeId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// Voting members, in id order.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members().filter(|(_, m)| !m.learner).map(|(id, _)| id)
    }

    /// Learners, in id order.
    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members().filter(|(_, m)| m.learner).map(|(id, _)| id)
    }

    /// How many members vote.
    pub fn voter_count(&self) -> usize {
        self.voters().count()
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.members.get(&id).is_some_and(|m| !m.learner)
    }

    /// Whether `id` is a member (voter or learner).
    pub fn contains(&self, id: NodeId) -> bool {
        self.members.contains_key(&id)
    }

    /// No members at all (a member that joins learns its group from the leader).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The membership after `change`.
    pub fn apply(&self, change: &ConfChange) -> Result<Membership, ConfChangeError> {
        let id = change.id();
        if id == NodeId(0) {
            return Err(ConfChangeError::ZeroId);
        }
        let mut next = self.clone();
        let add = |next: &mut Membership, learner: bool, context: &Payload| {
            if next.contains(id) {
                return Err(ConfChangeError::AlreadyMember(id));
            }
            let context = context.clone();
            next.members.insert(id, Member { learner, context });
            Ok(())
        };
        match change {
            ConfChange::AddVoter { context, .. } => add(&mut next, false, context)?,
            ConfChange::AddLearner { context, .. } => add(&mut next, true, context)?,
            ConfChange::Promote { .. } => match next.members.get_mut(&id) {
                None => return Err(ConfChangeError::UnknownMember(id)),
                Some(m) if !m.learner => return Err(ConfChangeError::NotALearner(id)),
                Some(m) => m.learner = false,
            },
            ConfChange::Remove { .. } => {
                next.members
                    .remove(&id)
                    .ok_or(ConfChangeError::UnknownMember(id))?;
                if next.voter_count() == 0 {
                    return Err(ConfChangeError::NoVoterLeft);
                }
            }
            ConfChange::Update { context, .. } => match next.members.get_mut(&id) {
                None => return Err(ConfChangeError::UnknownMember(id)),
                Some(m) => m.context = context.clone(),
            },
        }
        Ok(next)
    }

    /// Appends the binary form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.members.len() as u32).to_le_bytes());
        for (id, m) in &self.members {
            out.extend_from_slice(&id.0.to_le_bytes());
            out.push(u8::from(m.learner));
            out.extend_from_slice(&(m.context.len() as u32).to_le_bytes());
            out.extend_from_slice(&m.context);
        }
    }

    /// The binary form as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Reads the binary form; the whole of `bytes` must be one membership.
    pub fn decode(bytes: &[u8]) -> Result<Membership, DecodeError> {
        let mut r = Reader(bytes);
        let count = r.u32()?;
        let mut members = BTreeMap::new();
        let mut last = 0u64;
        for _ in 0..count {
            let id = r.u64()?;
            if id <= last {
                return Err(DecodeError("membership ids out of order"));
            }
            last = id;
            let learner = match r.take(1)?[0] {
                0 => false,
                1 => true,
                _ => return Err(DecodeError("membership learner flag not 0 or 1")),
            };
            let len = r.u32()? as usize;
            let context = Payload::from(r.take(len)?);
            members.insert(NodeId(id), Member { learner, context });
        }
        if !r.0.is_empty() {
            return Err(DecodeError("trailing bytes after a membership"));
        }
        Ok(Membership { members })
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .members()
            .map(|(id, m)| {
                if m.learner {
                    format!("{id}(learner)")
                } else {
                    id.to_string()
                }
            })
            .collect();
        write!(f, "{{{}}}", names.join(", "))
    }
}

/// A cursor that refuses to read past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("membership truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(s: &str) -> Payload {
        Payload::from(s.as_bytes())
    }

    #[test]
    fn changes_apply_and_refuse() {
        let m = Membership::of_voters([NodeId(1), NodeId(2)]);
        let add = ConfChange::AddLearner {
            id: NodeId(3),
            context: ctx("c"),
        };
        let m2 = m.apply(&add).unwrap();
        assert_eq!(m2.learners().collect::<Vec<_>>(), vec![NodeId(3)]);
        assert_eq!(m2.voter_count(), 2);
        assert_eq!(
            m2.apply(&add),
            Err(ConfChangeError::AlreadyMember(NodeId(3)))
        );
        let p = ConfChange::Promote { id: NodeId(3) };
        let m3 = m2.apply(&p).unwrap();
        assert!(m3.is_voter(NodeId(3)));
        assert_eq!(m3.apply(&p), Err(ConfChangeError::NotALearner(NodeId(3))));
        let r = ConfChange::Remove { id: NodeId(9) };
        assert_eq!(m3.apply(&r), Err(ConfChangeError::UnknownMember(NodeId(9))));
        let one = Membership::of_voters([NodeId(1)]);
        let last = ConfChange::Remove { id: NodeId(1) };
        assert_eq!(one.apply(&last), Err(ConfChangeError::NoVoterLeft));
        let u = ConfChange::Update {
            id: NodeId(2),
            context: ctx("new"),
        };
        assert_eq!(
            &m3.apply(&u).unwrap().get(NodeId(2)).unwrap().context[..],
            b"new"
        );
    }

    #[test]
    fn changes_round_trip() {
        let id = NodeId(5);
        for c in [
            ConfChange::AddVoter {
                id,
                context: ctx("a"),
            },
            ConfChange::AddLearner {
                id,
                context: ctx(""),
            },
            ConfChange::Promote { id },
            ConfChange::Remove { id },
            ConfChange::Update {
                id,
                context: ctx("xyz"),
            },
        ] {
            let mut b = Vec::new();
            c.encode(&mut b);
            assert_eq!(ConfChange::decode(&b), Ok(c));
            assert!(ConfChange::decode(&b[..b.len().min(8)]).is_err());
        }
        assert!(ConfChange::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(ConfChange::decode(&[3, 1, 0, 0, 0, 0, 0, 0, 0, 7]).is_err());
    }

    #[test]
    fn binary_form_round_trips_and_refuses_garbage() {
        let m = Membership::of_voters([NodeId(1), NodeId(7)])
            .apply(&ConfChange::AddLearner {
                id: NodeId(4),
                context: ctx("name=d"),
            })
            .unwrap();
        let bytes = m.to_bytes();
        assert_eq!(Membership::decode(&bytes).unwrap(), m);
        for cut in 0..bytes.len() {
            assert!(Membership::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Membership::decode(&trailing).is_err());
        let mut huge = bytes.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Membership::decode(&huge).is_err());
    }
}
