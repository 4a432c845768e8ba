//! Fault injection on a seeded schedule: which fault, on whom, for how long, and
//! whether it is transient (one window), intermittent (flapping) or permanent (left in
//! place until the final heal).

use super::cluster::Cluster;
use super::proxy::LinkState;
use seedrng::Rng;
use std::time::Duration;

/// The fault classes `--faults` selects from.
pub const KINDS: [&str; 7] = [
    "kill",
    "pause",
    "partition",
    "delay",
    "drop",
    "disk",
    "membership",
];

/// One injected fault, for the timeline.
#[derive(Clone, Debug)]
pub struct FaultEvent {
    /// Fault class.
    pub kind: &'static str,
    /// What exactly was done.
    pub detail: String,
    /// Seconds since the start.
    pub start_s: f64,
    /// When it was healed (seconds since the start).
    pub end_s: f64,
    /// Whether the leader at the time was hit (failover is measured for these).
    pub hit_leader: bool,
}

/// What must be undone at the end of a window.
pub enum Undo {
    /// Restart these killed (or fail-stopped) members.
    Restart(Vec<usize>),
    /// SIGCONT this member.
    Resume(usize),
    /// Heal every link.
    Links,
    /// Restart this member with the base disk spec.
    Disk(usize),
    /// Promote this learner (member index, member id) once it caught up.
    Promote(usize, u64),
    /// Nothing to undo.
    Nothing,
}

/// Members running and not paused.
pub(crate) fn live(c: &Cluster) -> Vec<usize> {
    (0..c.procs.members.len())
        .filter(|&i| c.procs.members[i].child.is_some() && !c.procs.members[i].paused)
        .collect()
}

/// A target: the leader with probability 1/3 (when known), else a random live member.
fn target(c: &Cluster, rng: &mut Rng, leader: Option<usize>) -> Option<usize> {
    match leader {
        Some(l) if rng.chance(1, 3) => Some(l),
        _ => rng.pick(&live(c)).copied(),
    }
}

/// Injects one fault of `kind`; returns what it did and how to undo it. `nth` counts
/// earlier faults of the same kind (the disk class alternates power loss and fsync
/// errors, starting with power loss).
pub fn inject(
    c: &mut Cluster,
    kind: &str,
    nth: usize,
    rng: &mut Rng,
    leader: Option<usize>,
    disk_base: &str,
) -> Option<(String, bool, Undo)> {
    let n = c.procs.members.len();
    match kind {
        "disk" if nth.is_multiple_of(2) => Some((
            kill_all(c, "power loss: every member killed, unsynced writes torn"),
            false, // not a failover: the whole cluster is down for the window
            Undo::Restart((0..n).collect()),
        )),
        "kill" if rng.chance(1, 8) => Some((
            kill_all(c, "kill all members"),
            false,
            Undo::Restart((0..n).collect()),
        )),
        "kill" => {
            let t = target(c, rng, leader)?;
            c.procs.kill(t);
            Some((
                format!("kill {}", c.procs.members[t].name),
                Some(t) == leader,
                Undo::Restart(vec![t]),
            ))
        }
        "pause" => {
            let t = target(c, rng, leader)?;
            c.procs.pause(t);
            Some((
                format!("pause {}", c.procs.members[t].name),
                Some(t) == leader,
                Undo::Resume(t),
            ))
        }
        "partition" => partition(c, rng, leader),
        "membership" => crate::membership::inject(c, rng, leader),
        "delay" => {
            let delay = Duration::from_millis(rng.range(20, 200));
            let jitter = Duration::from_millis(rng.range(0, 100));
            set_all(
                c,
                LinkState {
                    delay,
                    jitter,
                    ..Default::default()
                },
            );
            Some((
                format!("delay {delay:?} ± {jitter:?} on every link"),
                false,
                Undo::Links,
            ))
        }
        "drop" => {
            let drop = rng.range(5, 40) as f64 / 100.0;
            set_all(
                c,
                LinkState {
                    drop,
                    reset: 0.002,
                    ..Default::default()
                },
            );
            Some((
                format!("drop {:.0}% of frames, occasional resets", drop * 100.0),
                false,
                Undo::Links,
            ))
        }
        "disk" => {
            let t = target(c, rng, leader)?;
            c.procs.kill(t);
            c.disk[t] = format!("{disk_base},fsync-eio=30,seed={}", rng.next_u64());
            c.start(t).ok()?;
            Some((
                format!(
                    "{}: fsync errors (3%) until it fail-stops",
                    c.procs.members[t].name
                ),
                Some(t) == leader,
                Undo::Disk(t),
            ))
        }
        _ => None,
    }
}

/// Kills every member at once (with `tear`, unsynced writes are lost or torn, as in a
/// power cut); returns `what`.
fn kill_all(c: &mut Cluster, what: &str) -> String {
    for i in 0..c.procs.members.len() {
        c.procs.kill(i);
    }
    what.to_string()
}

fn set_all(c: &Cluster, s: LinkState) {
    let n = c.procs.members.len();
    for a in 0..n {
        for b in (0..n).filter(|b| *b != a) {
            c.links.set(a, b, s);
        }
    }
}

fn cut(c: &Cluster, a: usize, b: usize) {
    c.links.set(
        a,
        b,
        LinkState {
            cut: true,
            ..Default::default()
        },
    );
}

fn partition(
    c: &mut Cluster,
    rng: &mut Rng,
    leader: Option<usize>,
) -> Option<(String, bool, Undo)> {
    let n = c.procs.members.len();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    let names = |v: &[usize]| {
        v.iter()
            .map(|i| c.procs.members[*i].name.clone())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (detail, hit) = match rng.range(0, 4) {
        0 => {
            let (a, b) = order.split_at(n / 2);
            for &x in a {
                for &y in b {
                    cut(c, x, y);
                    cut(c, y, x);
                }
            }
            (
                format!("partition halves [{}] | [{}]", names(a), names(b)),
                leader.is_some_and(|l| a.contains(&l)),
            )
        }
        1 => {
            let l = leader.unwrap_or(order[0]);
            for o in (0..n).filter(|o| *o != l) {
                cut(c, l, o);
                cut(c, o, l);
            }
            (
                format!("isolate leader {}", c.procs.members[l].name),
                leader.is_some(),
            )
        }
        2 => {
            let l = leader.unwrap_or(order[0]);
            for o in (0..n).filter(|o| *o != l) {
                cut(c, l, o);
            }
            (
                format!("one-way: {} cannot send", c.procs.members[l].name),
                leader.is_some(),
            )
        }
        _ => {
            let bridge = order[0];
            let rest = &order[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            for &x in a {
                for &y in b {
                    cut(c, x, y);
                    cut(c, y, x);
                }
            }
            let hit = leader.is_some_and(|l| l != bridge);
            (
                format!(
                    "bridge {} between [{}] and [{}]",
                    c.procs.members[bridge].name,
                    names(a),
                    names(b)
                ),
                hit,
            )
        }
    };
    Some((detail, hit, Undo::Links))
}

/// Undoes a fault.
pub fn undo(c: &mut Cluster, u: &Undo, disk_base: &str) {
    match u {
        Undo::Restart(v) => {
            for &i in v {
                if c.procs.members[i].child.is_none() {
                    let _ = c.start(i);
                }
            }
        }
        Undo::Resume(i) => c.procs.resume(*i),
        Undo::Links => c.links.heal_all(),
        Undo::Disk(i) => {
            c.procs.kill(*i);
            c.disk[*i] = disk_base.to_string();
            let _ = c.start(*i);
        }
        Undo::Promote(i, id) => crate::membership::promote(c, *i, *id),
        Undo::Nothing => {}
    }
}
