//! The `membership` fault class against real members, through the etcd Cluster and
//! Maintenance APIs as an operator would use them:
//! - **replace** a member (the leader a third of the time): `MemberRemove` (the member
//!   stops itself), its data dir wiped, `MemberAdd` of the same peer URL (as a learner
//!   half the time), the member started again with `--initial-cluster-state existing`;
//!   a learner is promoted once it has caught up, when the window ends;
//! - **move the leader** to another member (`MoveLeader`);
//! - **rolling restart**: each member in turn stopped with SIGTERM (a leader hands over
//!   first), started again, and waited for until it serves.

use crate::cluster::Cluster;
use crate::faults::{live, Undo};
use etcdpb::etcdserverpb as pb;
use pb::cluster_client::ClusterClient;
use pb::maintenance_client::MaintenanceClient;
use seedrng::Rng;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const CALL: Duration = Duration::from_secs(5);

async fn channel(endpoint: String) -> Result<Channel, String> {
    let ep = tonic::transport::Endpoint::from_shared(endpoint).map_err(|e| e.to_string())?;
    let ep = ep.connect_timeout(CALL).timeout(CALL);
    ep.connect().await.map_err(|e| e.to_string())
}

/// Runs `f` on the cluster's runtime, against member `i`'s client endpoint.
fn call<T, F>(c: &Cluster, i: usize, f: impl FnOnce(Channel) -> F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let endpoint = c.endpoint(i);
    c.runtime.block_on(async move {
        let ch = channel(endpoint).await?;
        f(ch).await.map_err(|s| s.message().to_string())
    })
}

fn member_id(c: &Cluster, i: usize) -> Option<u64> {
    let v = c.procs.status_json(i)?;
    u64::from_str_radix(v["member_id"].as_str()?, 16).ok()
}

/// One membership operation; what it did, whether it hit the leader, what the window's
/// end must finish.
pub fn inject(
    c: &mut Cluster,
    rng: &mut Rng,
    leader: Option<usize>,
) -> Option<(String, bool, Undo)> {
    match rng.range(0, 6) {
        0 | 1 => move_leader(c, rng, leader),
        2 => Some((rolling_restart(c), leader.is_some(), Undo::Nothing)),
        _ => replace(c, rng, leader),
    }
}

fn move_leader(
    c: &mut Cluster,
    rng: &mut Rng,
    leader: Option<usize>,
) -> Option<(String, bool, Undo)> {
    let l = leader?;
    let others: Vec<usize> = live(c).into_iter().filter(|i| *i != l).collect();
    let to = *rng.pick(&others)?;
    let target_id = member_id(c, to)?;
    let r = call(c, l, |ch| async move {
        MaintenanceClient::new(ch)
            .move_leader(pb::MoveLeaderRequest { target_id })
            .await
    });
    let name = &c.procs.members[to].name;
    Some((
        format!("move the leader to {name}: {}", outcome(&r)),
        true,
        Undo::Nothing,
    ))
}

fn outcome<T>(r: &Result<T, String>) -> String {
    match r {
        Ok(_) => "done".into(),
        Err(e) => format!("refused ({e})"),
    }
}

/// Waits (up to `secs`) until member `i` runs no more.
fn wait_exit(c: &mut Cluster, i: usize, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        c.procs.reap_exited();
        if c.procs.members[i].child.is_none() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Waits (up to `secs`) until member `i` has applied what the leader had committed
/// when the wait began.
fn wait_caught_up(c: &Cluster, i: usize, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut target = None;
    while Instant::now() < deadline {
        if target.is_none() {
            let leader = c.procs.leader();
            target = leader.and_then(|l| c.procs.status_field(l, "commit_index"));
        }
        let applied = c.procs.status_field(i, "applied_index");
        if let (Some(target), Some(applied)) = (target, applied) {
            if applied >= target {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn rolling_restart(c: &mut Cluster) -> String {
    let mut done = Vec::new();
    for i in 0..c.procs.members.len() {
        if !live(c).contains(&i) {
            continue;
        }
        c.procs.signal(i, libc::SIGTERM);
        if !wait_exit(c, i, 10) {
            c.procs.kill(i);
        }
        if c.start(i).is_err() {
            continue;
        }
        let caught_up = wait_caught_up(c, i, 10);
        done.push(format!(
            "{}{}",
            c.procs.members[i].name,
            if caught_up { "" } else { " (still behind)" }
        ));
    }
    format!("rolling restart: {}", done.join(", "))
}

/// Some live member other than `not`, to ask.
fn asked(c: &Cluster, not: usize) -> Option<usize> {
    live(c).into_iter().find(|i| *i != not)
}

fn replace(c: &mut Cluster, rng: &mut Rng, leader: Option<usize>) -> Option<(String, bool, Undo)> {
    let t = match leader {
        Some(l) if rng.chance(1, 3) => l,
        _ => *rng.pick(&live(c))?,
    };
    let id = member_id(c, t)?;
    let via = asked(c, t)?;
    let name = c.procs.members[t].name.clone();
    let removed = call(c, via, |ch| async move {
        ClusterClient::new(ch)
            .member_remove(pb::MemberRemoveRequest { id })
            .await
    });
    // The answer may be lost with the member that removed itself: ask the others.
    if let Err(e) = removed.map(|_| ()).or_else(|e| still_member(c, t, id, e)) {
        return Some((
            format!("remove {name}: refused ({e})"),
            false,
            Undo::Nothing,
        ));
    }
    if !wait_exit(c, t, 10) {
        c.procs.kill(t);
    }
    let _ = std::fs::remove_dir_all(c.dir().join(&name));
    let learner = rng.chance(1, 2);
    let peer_ur_ls = vec![format!("http://127.0.0.1:{}", c.procs.members[t].peer)];
    let deadline = Instant::now() + Duration::from_secs(15);
    let added = loop {
        let Some(via) = asked(c, t) else {
            break Err("no member to ask".to_string());
        };
        let urls = peer_ur_ls.clone();
        let r = call(c, via, |ch| async move {
            let req = pb::MemberAddRequest {
                peer_ur_ls: urls,
                is_learner: learner,
            };
            ClusterClient::new(ch).member_add(req).await
        });
        match r {
            Ok(resp) => break Ok(resp.into_inner().member.map_or(0, |m| m.id)),
            Err(e) if Instant::now() > deadline => break Err(e),
            // Refused while the cluster is not healthy yet (the removal settling).
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let new_id = match added {
        Ok(id) => id,
        Err(e) => {
            let what = format!("remove {name}, then add it again: refused ({e})");
            return Some((what, Some(t) == leader, Undo::Nothing));
        }
    };
    c.joining[t] = true;
    let _ = c.start(t);
    let kind = if learner { "a learner" } else { "a voter" };
    let what = format!("replace {name}: removed {id:x}, added {new_id:x} as {kind}");
    let undo = if learner {
        Undo::Promote(t, new_id)
    } else {
        Undo::Nothing
    };
    Some((what, Some(t) == leader, undo))
}

/// `Ok` if member `id` is no longer listed (the removal happened after all), else
/// the removal's error `e`.
fn still_member(c: &Cluster, t: usize, id: u64, e: String) -> Result<(), String> {
    std::thread::sleep(Duration::from_secs(2));
    let via = asked(c, t).ok_or_else(|| e.clone())?;
    let list = call(c, via, |ch| async move {
        let req = pb::MemberListRequest {
            linearizable: false,
        };
        ClusterClient::new(ch).member_list(req).await
    })?;
    let members = list.into_inner().members;
    if members.iter().any(|m| m.id == id) {
        Err(e)
    } else {
        Ok(())
    }
}

/// The window ends: a learner added by a replacement is promoted once it caught up.
pub fn promote(c: &mut Cluster, t: usize, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Some(via) = asked(c, t) else { return };
        let r = call(c, via, |ch| async move {
            ClusterClient::new(ch)
                .member_promote(pb::MemberPromoteRequest { id })
                .await
        });
        match r {
            Ok(_) => return,
            Err(e) if e.contains("can only promote a learner member") && !e.contains("in sync") => {
                return
            }
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}
