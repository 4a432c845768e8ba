//! The `membership` fault class: the nemesis asks the leader for membership changes
//! while every other fault goes on. Three spare nodes run from the start knowing no
//! group; they are added (as learners, or straight as voters), promoted, and voters
//! are removed (the leader a third of the time) so that the group moves between its
//! founding size and two more. A removed node keeps running outside the group, as a
//! machine taken out of service but not yet switched off would.
//!
//! Half the time a member is replaced the hasty way, two changes back to back
//! (add the new one as a voter, remove an old one), half the time with a partition
//! that splits the old voters' majority from the leader's side: a correct leader
//! refuses the second change while the first is uncommitted; with the planted bug
//! `overlapping-config-change` it accepts it, and the two memberships, two voters
//! apart, then elect and commit on both sides of the partition.

use crate::nemesis::HealAction;
use crate::options::FaultKind;
use crate::world::Simulation;
use engine::{ChangeRefused, ConfChange, Membership, NodeId, Payload};

/// Nodes beyond `--nodes` that a membership run starts with, to be added.
pub(crate) const SPARES: usize = 3;

impl Simulation {
    /// One membership step at the current leader.
    pub(crate) fn inject_membership(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let l = (leader.0 - 1) as usize;
        let Some(members) = self.leader_membership() else {
            return;
        };
        if self.rng.chance(1, 2) {
            if let Some((add, remove)) = self.replacement(&members, leader) {
                // Replace a member the hasty way: add the new one and remove the old
                // one at once, without waiting for the first change to commit.
                let last = members.apply(&add).and_then(|m| m.apply(&remove));
                self.ask_change(l, add);
                self.ask_change(l, remove);
                if self.opts.faults.has(FaultKind::Partition) && self.rng.chance(1, 2) {
                    let last = last.unwrap_or_else(|_| members.clone());
                    self.split_old_majority(leader, &members, &last);
                }
                return;
            }
        }
        if let Some(change) = self.next_change(&members, leader) {
            self.ask_change(l, change);
        }
    }

    /// A spare to add as a voter and a founding voter other than the leader to remove.
    fn replacement(
        &mut self,
        members: &Membership,
        leader: NodeId,
    ) -> Option<(ConfChange, ConfChange)> {
        if members.learners().next().is_some() || members.voter_count() > self.opts.nodes {
            return None;
        }
        let id = *self.rng.pick(&self.spares(members))?;
        let old: Vec<NodeId> = members.voters().filter(|v| *v != leader).collect();
        let gone = *self.rng.pick(&old)?;
        let context = Payload::from(format!("n{id}").into_bytes());
        Some((
            ConfChange::AddVoter { id, context },
            ConfChange::Remove { id: gone },
        ))
    }

    /// Spares that were never members.
    fn spares(&self, members: &Membership) -> Vec<NodeId> {
        (self.ids.iter().skip(self.opts.nodes))
            .copied()
            .filter(|id| !members.contains(*id) && !self.nemesis.retired.contains(id))
            .collect()
    }

    /// A partition at the worst moment for two overlapping changes: the leader, the
    /// nodes the changes added and a minority of the old voters on one side, the old
    /// voters' majority on the other. One change at a time keeps the two sides from
    /// both having a majority; two at once may not.
    fn split_old_majority(&mut self, leader: NodeId, before: &Membership, after: &Membership) {
        let old: Vec<NodeId> = (before.voters())
            .filter(|v| *v != leader && after.is_voter(*v))
            .collect();
        // The old voters' majority (counting the removed one) stays on the far side.
        let keep = before.voter_count().saturating_sub(1) / 2 - 1;
        let mut side: Vec<NodeId> = vec![leader];
        side.extend(after.voters().filter(|v| !before.is_voter(*v)));
        side.extend(old.iter().take(keep).copied());
        let rest: Vec<NodeId> = self
            .ids
            .iter()
            .copied()
            .filter(|i| !side.contains(i))
            .collect();
        self.net.split(&side, &rest);
        self.log(|| format!("nemesis: partition {side:?} | {rest:?} (around a change)"));
        self.heal_later(HealAction::Partitions, 200_000, 3_000_000);
    }

    /// What the group should do next, from `members`.
    fn next_change(&mut self, members: &Membership, leader: NodeId) -> Option<ConfChange> {
        let voters: Vec<NodeId> = members.voters().collect();
        if let Some(id) = members.learners().next() {
            return Some(ConfChange::Promote { id });
        }
        if voters.len() > self.opts.nodes {
            let id = if self.rng.chance(1, 3) {
                leader
            } else {
                *self.rng.pick(&voters)?
            };
            return Some(ConfChange::Remove { id });
        }
        let never = self.spares(members);
        let Some(&id) = self.rng.pick(&never) else {
            // No spare left: a context update exercises the last kind of change.
            let id = *self.rng.pick(&voters)?;
            let context = Payload::from(self.rng.range(0, 1000).to_le_bytes().to_vec());
            return Some(ConfChange::Update { id, context });
        };
        let context = Payload::from(format!("n{id}").into_bytes());
        Some(if self.rng.chance(1, 4) {
            ConfChange::AddVoter { id, context }
        } else {
            ConfChange::AddLearner { id, context }
        })
    }

    /// Asks host `l` (the leader) for `change`.
    fn ask_change(&mut self, l: usize, change: ConfChange) {
        let mut outcome: Option<Result<engine::Index, ChangeRefused>> = None;
        self.with_host(l, |h, _, _| {
            if let Some(r) = h.node.as_mut() {
                outcome = Some(r.change_membership(change.clone()));
            }
            Ok(())
        });
        self.stats.changes_asked += 1;
        match &outcome {
            Some(Ok(_)) => {
                if let ConfChange::Remove { id } = &change {
                    self.nemesis.retired.push(*id);
                }
            }
            _ => self.stats.changes_refused += 1,
        }
        let leader = self.ids[l];
        self.log(|| format!("nemesis: n{leader} asked for {change:?}: {outcome:?}"));
    }

    /// The membership in force at the current leader, if one leads.
    pub(crate) fn leader_membership(&self) -> Option<Membership> {
        let leader = self.leader()?;
        let h = &self.hosts[(leader.0 - 1) as usize];
        h.node.as_ref().map(|r| r.engine().membership().clone())
    }
}
