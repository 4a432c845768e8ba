//! The fault schedule: during the fault phase, picks a fault of an enabled class at
//! random intervals, applies it, and schedules its healing (transient faults),
//! repeats it (intermittent) or leaves it until the liveness phase (permanent).
//! Faults are bounded so that a correct cluster can always recover afterwards: at
//! most a minority is crashed at once and at most one node is stopped for good.

use crate::host::HostState;
use crate::options::FaultKind;
use crate::world::{Event, Simulation};
use engine::NodeId;

/// The end of a transient fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HealAction {
    /// Loss, duplication and delay back to normal.
    NetworkNormal,
    /// All partitions healed.
    Partitions,
    /// Re-isolate a node (an intermittent, flapping link); `left` flips remain.
    Flap { node: usize, left: u32 },
    /// Restart a crashed node.
    Restart(usize),
    /// Resume a paused node.
    Resume(usize),
    /// Disk latency back to normal.
    DiskNormal,
    /// I/O error injection on a node's disk stops.
    DiskFaultsOff(usize),
}

/// A moment worth crashing at: right after a node sent a promise of durability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// After sending a granted vote.
    VoteGranted,
    /// After sending an append acknowledgement.
    AppendAcked,
    /// After a leader sent entries (it dies mid-replication).
    EntriesSent,
}

impl CrashPoint {
    pub(crate) fn matches(self, m: &crate::raft_engine::Msg) -> bool {
        crate::raft_engine::crash_point_matches(self, m)
    }
}

#[derive(Debug, Default)]
pub(crate) struct NemesisState {
    pub(crate) stopped_for_good: usize,
    /// A node armed to crash right after it sends a matching message.
    pub(crate) crash_point: Option<(usize, CrashPoint)>,
    /// The target of the latest leadership transfer, until another node than the
    /// leader that started it leads.
    pub(crate) transfer_to: Option<NodeId>,
    /// The leader that started it.
    pub(crate) transfer_from: Option<NodeId>,
    /// Nodes a leader accepted to remove: never added again (a removed member's
    /// durable state is not wiped, so it may not rejoin under its old id).
    pub(crate) retired: Vec<NodeId>,
}

impl Simulation {
    /// Starts the fault schedule (no-op when no fault class is enabled).
    pub(crate) fn start_nemesis(&mut self) {
        if self.opts.faults.kinds().is_empty() {
            return;
        }
        let d = self.rng.range(200_000, 1_000_000);
        self.schedule(d, Event::Nemesis);
    }

    pub(crate) fn on_nemesis(&mut self) {
        if self.liveness.is_some() {
            return;
        }
        let kinds = self.opts.faults.kinds().to_vec();
        if let Some(kind) = self.rng.pick(&kinds).copied() {
            self.inject(kind);
        }
        let (lo, hi) = self.opts.fault_interval_us;
        let d = self.rng.range(lo, hi);
        self.schedule(d, Event::Nemesis);
    }

    /// Whether one more node may go down: faults stay bounded so that a majority can
    /// always recover (at most a minority is down or stopped at once).
    fn may_take_down(&self) -> bool {
        let down = self
            .hosts
            .iter()
            .filter(|h| matches!(h.state, HostState::Down | HostState::Stopped))
            .count();
        // Counted against the founding group's size: the membership changes keep at
        // least that many voters, so a majority of voters stays up.
        down < (self.opts.nodes - 1) / 2
    }

    /// A node to hit: the leader half of the time (leaders are where the bugs are).
    fn target_node(&mut self) -> usize {
        match self.leader() {
            Some(l) if self.rng.chance(1, 2) => (l.0 - 1) as usize,
            _ => self.random_node(),
        }
    }

    fn inject(&mut self, kind: FaultKind) {
        match kind {
            FaultKind::Drop => self.inject_drop(),
            FaultKind::Delay => {
                self.net.spike_per_mille = self.rng.range(100, 600);
                self.net.spike_us = (2_000, self.rng.range(10_000, 200_000));
                self.log(|| "nemesis: delay spikes".into());
                self.heal_later(HealAction::NetworkNormal, 500_000, 4_000_000);
            }
            FaultKind::Duplicate => {
                self.net.duplicate_per_mille = self.rng.range(50, 400);
                self.log(|| "nemesis: duplication".into());
                self.heal_later(HealAction::NetworkNormal, 500_000, 4_000_000);
            }
            FaultKind::Partition => self.inject_partition(),
            FaultKind::Crash if self.rng.chance(1, 3) => {
                let node = self.target_node();
                let points = [
                    CrashPoint::VoteGranted,
                    CrashPoint::AppendAcked,
                    CrashPoint::EntriesSent,
                ];
                let point = self
                    .rng
                    .pick(&points)
                    .copied()
                    .unwrap_or(CrashPoint::VoteGranted);
                self.nemesis.crash_point = Some((node, point));
                self.log(|| format!("nemesis: n{} will crash right after {point:?}", node + 1));
            }
            FaultKind::Crash => self.inject_crash(false),
            FaultKind::Pause => self.inject_pause(),
            FaultKind::Disk => self.inject_disk(),
            FaultKind::Transfer => self.inject_transfer(),
            FaultKind::Membership => self.inject_membership(),
        }
    }

    /// The leader hands leadership to another node, picked at random: up, down, paused
    /// or cut off (then the transfer is dropped after an election timeout).
    fn inject_transfer(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let Some(l) = self.ids.iter().position(|id| *id == leader) else {
            return;
        };
        let others: Vec<NodeId> = self
            .ids
            .iter()
            .copied()
            .filter(|id| *id != leader)
            .collect();
        // Half the time the follower furthest behind: catching the target up before it
        // campaigns is what a transfer must get right.
        let behind = self.hosts[l].node.as_ref().and_then(|r| {
            let progress = |id: &NodeId| engine::Engine::peer_progress(r.engine(), *id);
            others.iter().copied().min_by_key(progress)
        });
        let to = match behind {
            Some(b) if self.rng.chance(1, 2) => b,
            _ => match self.rng.pick(&others).copied() {
                Some(t) => t,
                None => return,
            },
        };
        let mut refused = None;
        self.with_host(l, |h, _, _| {
            if let Some(r) = h.node.as_mut() {
                refused = r.transfer_leadership(to).err();
            }
            Ok(())
        });
        if refused.is_none() {
            self.stats.transfers_started += 1;
            self.nemesis.transfer_to = Some(to);
            self.nemesis.transfer_from = Some(leader);
        }
        self.log(|| format!("nemesis: n{leader} hands leadership to n{to} ({refused:?})"));
    }

    /// After host `i` ran: a transfer under way ends when a node other than the old
    /// leader leads, and counts as done if that node is its target.
    pub(crate) fn note_transfer(&mut self, i: usize) {
        let Some(to) = self.nemesis.transfer_to else {
            return;
        };
        let leads = self.hosts[i]
            .engine_status()
            .is_some_and(|s| s.role == engine::Role::Leader && s.leader == Some(self.ids[i]));
        let was_leader = self.nemesis.transfer_from == Some(self.ids[i]);
        if leads && !was_leader {
            self.stats.transfers_done += u64::from(self.ids[i] == to);
            self.nemesis.transfer_to = None;
        }
    }

    fn inject_disk(&mut self) {
        match self.rng.range(0, 6) {
            0 | 1 => self.inject_io_errors(),
            2 => self.inject_corruption(),
            _ => {
                if self.rng.chance(1, 2) {
                    self.disk_latency_us = (1_000, self.rng.range(5_000, 60_000));
                    self.log(|| "nemesis: slow disk".into());
                    self.heal_later(HealAction::DiskNormal, 500_000, 4_000_000);
                } else {
                    self.inject_crash(true);
                }
            }
        }
    }

    /// EIO or ENOSPC on a node's writes and syncs for a while: the node must stop
    /// (fail-stop, never retrying a failed sync) and is restarted later.
    fn inject_io_errors(&mut self) {
        let i = self.target_node();
        if self.hosts[i].state != HostState::Up {
            return;
        }
        let faults = match self.rng.range(0, 3) {
            0 => storage::DiskFaults {
                sync_eio: 300,
                ..Default::default()
            },
            1 => storage::DiskFaults {
                write_eio: 300,
                ..Default::default()
            },
            _ => storage::DiskFaults {
                write_nospace: 300,
                ..Default::default()
            },
        };
        if self.hosts[i].storage.set_faults(faults) {
            self.log(|| format!("nemesis: I/O errors on n{}'s disk ({faults:?})", i + 1));
            self.heal_later(HealAction::DiskFaultsOff(i), 20_000, 500_000);
        }
    }

    /// Silent corruption of stored data (a bit flip, or a misdirected write), found by
    /// checksums at the next restart: the node refuses to start. Counts as the run's one
    /// permanently failed node.
    fn inject_corruption(&mut self) {
        if self.nemesis.stopped_for_good > 0 || !self.may_take_down() {
            return;
        }
        let i = self.random_node();
        if self.hosts[i].state != HostState::Up {
            return;
        }
        if self.rng.chance(1, 2) {
            // Misdirected writes for a moment: the data lands elsewhere, the sync succeeds.
            let faults = storage::DiskFaults {
                misdirect: 1000,
                ..Default::default()
            };
            if !self.hosts[i].storage.set_faults(faults) {
                return;
            }
            self.nemesis.stopped_for_good += 1;
            self.hosts[i].corrupted = true;
            self.log(|| format!("nemesis: misdirected writes on n{}'s disk", i + 1));
            self.heal_later(HealAction::DiskFaultsOff(i), 1_000, 30_000);
            return;
        }
        self.crash_host(i, false);
        let mut rng = self.rng.fork(self.stats.events ^ 0xc0);
        let Some(file) = self.hosts[i].storage.flip_random_bit(&mut rng) else {
            self.heal_later(HealAction::Restart(i), 50_000, 1_000_000);
            return;
        };
        self.nemesis.stopped_for_good += 1;
        self.hosts[i].corrupted = true;
        self.log(|| format!("nemesis: bit flip in n{}'s {file}", i + 1));
        self.heal_later(HealAction::Restart(i), 50_000, 1_000_000);
    }

    /// A node whose disk failed stops at once (fail-stop) and is restarted later.
    pub(crate) fn fail_stop(&mut self, i: usize, why: &str) {
        self.log(|| format!("n{} stops: {why}", i + 1));
        self.crash_host(i, true);
        self.heal_later(HealAction::Restart(i), 100_000, 2_000_000);
    }

    pub(crate) fn heal_later(&mut self, action: HealAction, min_us: u64, max_us: u64) {
        let d = self.rng.range(min_us, max_us);
        self.schedule(d, Event::Heal(action));
    }

    fn random_node(&mut self) -> usize {
        self.rng.range(0, self.hosts.len() as u64) as usize
    }

    fn inject_drop(&mut self) {
        let ni = self.random_node();
        let node = self.ids[ni];
        match self.rng.range(0, 3) {
            0 => {
                self.net.drop_per_mille = self.rng.range(50, 400);
                self.log(|| "nemesis: message loss on every link".into());
            }
            1 => {
                let rate = self.rng.range(300, 1001);
                self.net.send_omission.push((node, rate));
                self.log(|| format!("nemesis: send omission at n{node}"));
            }
            _ => {
                let rate = self.rng.range(300, 1001);
                self.net.receive_omission.push((node, rate));
                self.log(|| format!("nemesis: receive omission at n{node}"));
            }
        }
        self.heal_later(HealAction::NetworkNormal, 300_000, 4_000_000);
    }

    fn inject_partition(&mut self) {
        let ids = self.ids.clone();
        let n = ids.len();
        match self.rng.range(0, 5) {
            0 => {
                let mut shuffled = ids.clone();
                for i in (1..n).rev() {
                    let j = self.rng.range(0, i as u64 + 1) as usize;
                    shuffled.swap(i, j);
                }
                let cut = self.rng.range(1, n as u64) as usize;
                self.net.split(&shuffled[..cut], &shuffled[cut..]);
                self.log(|| {
                    format!(
                        "nemesis: partition {:?} | {:?}",
                        &shuffled[..cut],
                        &shuffled[cut..]
                    )
                });
            }
            1 => {
                let ai = self.random_node();
                let a = ids[ai];
                for b in ids.clone() {
                    if self.rng.chance(1, 2) {
                        self.net.block(a, b);
                    }
                }
                self.log(|| format!("nemesis: one-way partition from n{a}"));
            }
            2 => {
                if let Some(l) = self.leader() {
                    self.net.isolate(l, &ids);
                    self.log(|| format!("nemesis: isolate leader n{l}"));
                }
            }
            3 => {
                let bridge = self.random_node();
                let others: Vec<NodeId> = ids
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != bridge)
                    .map(|(_, id)| *id)
                    .collect();
                let half = others.len() / 2;
                self.net.split(&others[..half], &others[half..]);
                self.log(|| format!("nemesis: bridge through n{}", ids[bridge]));
            }
            _ => {
                let node = self.random_node();
                let left = self.rng.range(2, 8) as u32;
                self.log(|| format!("nemesis: flapping links at n{}", ids[node]));
                self.on_heal(HealAction::Flap { node, left });
                return;
            }
        }
        if self.rng.chance(1, 10) {
            self.log(|| "nemesis: partition stays until the fault phase ends".into());
            return;
        }
        self.heal_later(HealAction::Partitions, 200_000, 5_000_000);
    }

    fn inject_crash(&mut self, torn: bool) {
        let i = self.target_node();
        if !matches!(self.hosts[i].state, HostState::Up | HostState::Paused) {
            return;
        }
        if !self.may_take_down() {
            return;
        }
        let forever = !torn && self.nemesis.stopped_for_good == 0 && self.rng.chance(1, 15);
        self.crash_host(i, torn);
        if forever {
            self.nemesis.stopped_for_good += 1;
            self.hosts[i].state = HostState::Stopped;
            self.log(|| format!("nemesis: n{} stopped for good", i + 1));
        } else {
            self.heal_later(HealAction::Restart(i), 50_000, 3_000_000);
        }
    }

    /// Crashes an armed node right after it sent a durability promise; restarts it soon,
    /// so that it can be asked again in the same term.
    pub(crate) fn crash_at_point(&mut self, i: usize) {
        if !self.may_take_down() || self.liveness.is_some() {
            return;
        }
        self.crash_host(i, false);
        self.heal_later(HealAction::Restart(i), 1_000, 60_000);
    }

    /// Crashes host `i`: volatile state lost, unsynced writes lost (or torn).
    pub(crate) fn crash_host(&mut self, i: usize, torn: bool) {
        let mode = if torn {
            crate::raft_engine::mem::CrashMode::TearUnsynced
        } else {
            self.crash_mode
        };
        let mut rng = self.rng.fork(self.stats.events);
        let h = &mut self.hosts[i];
        h.storage.crash(mode, &mut rng);
        h.lose_volatile();
        h.state = HostState::Down;
        self.stats.crashes += 1;
        self.log(|| format!("nemesis: crash n{} ({mode:?})", i + 1));
    }

    fn inject_pause(&mut self) {
        let i = self.target_node();
        if self.hosts[i].state != HostState::Up {
            return;
        }
        self.hosts[i].state = HostState::Paused;
        self.log(|| format!("nemesis: pause n{}", i + 1));
        self.heal_later(HealAction::Resume(i), 50_000, 3_000_000);
    }

    pub(crate) fn on_heal(&mut self, action: HealAction) {
        match action {
            HealAction::NetworkNormal => {
                let blocked = std::mem::take(&mut self.net);
                self.net.latency_us = blocked.latency_us;
                // Keep partitions; they have their own healing.
                self.net.restore_partitions_from(&blocked);
                self.log(|| "heal: network loss/delay/duplication back to normal".into());
            }
            HealAction::Partitions => {
                self.net.heal_partitions();
                self.log(|| "heal: partitions".into());
            }
            HealAction::Flap { node, left } => {
                let id = self.ids[node];
                if left % 2 == 0 && self.liveness.is_none() {
                    let ids = self.ids.clone();
                    self.net.isolate(id, &ids);
                } else {
                    self.net.reconnect(id);
                }
                if left > 0 && self.liveness.is_none() {
                    let d = self.rng.range(30_000, 400_000);
                    self.schedule(
                        d,
                        Event::Heal(HealAction::Flap {
                            node,
                            left: left - 1,
                        }),
                    );
                }
            }
            HealAction::Restart(i) => self.restart_host(i),
            HealAction::Resume(i) => self.resume_host(i),
            HealAction::DiskFaultsOff(i) => {
                self.hosts[i]
                    .storage
                    .set_faults(storage::DiskFaults::default());
            }
            HealAction::DiskNormal => {
                self.disk_latency_us = (50, 400);
                self.log(|| "heal: disk latency normal".into());
            }
        }
    }

    /// Restarts a crashed host from its durable state.
    pub(crate) fn restart_host(&mut self, i: usize) {
        if self.hosts[i].state != HostState::Down {
            return;
        }
        let cfg = self.engine_config(self.ids[i]);
        self.log(|| format!("restart n{}", i + 1));
        self.with_host(i, |h, _, inv| h.restart(cfg, inv));
        let incarnation = self.hosts[i].incarnation;
        let offset = self.rng.range(0, self.opts.tick_us);
        self.schedule(
            offset,
            Event::Tick {
                node: i,
                incarnation,
            },
        );
    }

    /// Resumes a paused host: queued messages are processed in arrival order.
    pub(crate) fn resume_host(&mut self, i: usize) {
        if self.hosts[i].state != HostState::Paused {
            return;
        }
        self.hosts[i].state = HostState::Up;
        self.log(|| format!("resume n{}", i + 1));
        let inbox = std::mem::take(&mut self.hosts[i].paused_inbox);
        for (from, msg) in inbox {
            self.with_host(i, |h, _, _| h.step(from, msg));
        }
        self.hosts[i].sync_scheduled = false;
        self.schedule_sync(i);
    }
}
