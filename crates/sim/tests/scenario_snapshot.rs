//! Snapshot scenarios (6.5840 lab 3D) on the deterministic simulator. Nodes compact
//! every [`SNAPSHOT_EVERY`] applied entries and InstallSnapshot travels in 16-byte
//! chunks, so a lagging follower can only catch up through a chunked snapshot transfer.

mod common;

use common::*;
use raft::NodeId;
use sim::SimOptions;

/// Chunk size of [`snap_opts`].
const CHUNK: usize = 16;

/// Most entries a node may hold past its snapshot: the compaction interval plus the
/// commands a test has in flight (6.5840 bounds the persisted log size instead).
const MAX_LOG_ENTRIES: u64 = 2 * SNAPSHOT_EVERY + 20;

fn check_log_bounded(h: &Harness) {
    for node in h.all() {
        if let Some(s) = h.sim.status(node) {
            let held = s.last_index.0 - s.snapshot.index.0;
            assert!(
                held <= MAX_LOG_ENTRIES,
                "seed {}: node {node} holds {held} log entries past its snapshot at {}",
                h.seed,
                s.snapshot.index
            );
        }
    }
}

/// The lowest compaction point among running nodes other than `victim`.
fn others_compacted(h: &Harness, victim: NodeId) -> u64 {
    h.all()
        .into_iter()
        .filter(|x| *x != victim)
        .filter_map(|x| h.sim.snapshot_index(x))
        .min()
        .unwrap_or(0)
}

/// Reconnects a follower that may be behind the others' compaction point; returns
/// whether it could only have caught up through a snapshot (and checks that it did).
fn reconnect_victim(h: &mut Harness, seed: u64, victim: NodeId) -> bool {
    let behind = h.sim.status(victim).expect("victim up").last_index.0;
    let compacted = others_compacted(h, victim);
    h.connect(victim);
    let v = h.rand_value();
    h.one(v, 3, true);
    // Nobody holds the entries after `behind` anymore: the victim caught up through a
    // snapshot covering at least `compacted`.
    caught_up_by_snapshot(h, seed, victim, compacted, behind)
}

/// Restarts a crashed follower; returns whether it needed a snapshot (and checks it).
fn restart_victim(h: &mut Harness, seed: u64, victim: NodeId, victim_last: u64) -> bool {
    let compacted = others_compacted(h, victim);
    h.restart(victim);
    let v = h.rand_value();
    h.one(v, 3, true);
    caught_up_by_snapshot(h, seed, victim, compacted, victim_last)
}

fn caught_up_by_snapshot(h: &Harness, seed: u64, victim: NodeId, compacted: u64, had: u64) -> bool {
    if compacted <= had {
        return false;
    }
    let got = h.sim.snapshot_index(victim).expect("victim up");
    assert!(
        got >= compacted,
        "seed {seed}: victim's snapshot {got} < {compacted}"
    );
    true
}

/// 6.5840's `snapcommon`: 30 rounds of pushing enough commands through to trigger
/// compaction, optionally with a follower (or the leader) disconnected or crashed
/// meanwhile. Returns how many times the victim came back behind every other node's
/// compaction point, i.e. could only catch up by installing a snapshot.
fn snapcommon(
    seed: u64,
    disconnect: bool,
    reliable: bool,
    crash: bool,
    chunk_bytes: usize,
) -> usize {
    let iters = 30;
    let n = 3;
    let mut h = Harness::new(
        seed,
        SimOptions {
            snapshot_chunk_bytes: chunk_bytes,
            ..snap_opts(n)
        },
    );
    h.sim.set_unreliable(!reliable);
    let v = h.rand_value();
    h.one(v, n, true);
    let mut leader1 = idx(h.check_one_leader());
    let mut installs = 0;

    for i in 0..iters {
        let (victim, sender) = if i % 3 == 1 {
            (id(leader1), id((leader1 + 1) % n))
        } else {
            (id((leader1 + 1) % n), id(leader1))
        };
        let mut victim_last = 0;
        if disconnect {
            h.disconnect(victim);
            let v = h.rand_value();
            h.one(v, n - 1, true);
        }
        if crash {
            // An upper bound of what it will recover: its in-memory log.
            victim_last = h.sim.status(victim).expect("victim up").last_index.0;
            h.crash(victim);
            let v = h.rand_value();
            h.one(v, n - 1, true);
        }

        // Perhaps send enough to get a snapshot.
        let nn = SNAPSHOT_EVERY / 2 + h.rng.range(0, SNAPSHOT_EVERY);
        for _ in 0..nn {
            let v = h.rand_value();
            h.start(sender, v);
        }

        // Let applier threads catch up with the Start()'s.
        let v = h.rand_value();
        if !disconnect && !crash {
            // Make sure all followers have caught up, so that an InstallSnapshot RPC
            // isn't required for TestSnapshotBasic3D().
            h.one(v, n, true);
        } else {
            h.one(v, n - 1, true);
        }
        check_log_bounded(&h);

        if disconnect {
            installs += usize::from(reconnect_victim(&mut h, seed, victim));
            leader1 = idx(h.check_one_leader());
        }
        if crash {
            installs += usize::from(restart_victim(&mut h, seed, victim, victim_last));
            leader1 = idx(h.check_one_leader());
        }
    }
    for node in h.all() {
        let s = h.sim.snapshot_index(node).expect("up");
        assert!(s > 0, "seed {seed}: node {node} never took a snapshot");
    }
    check_log_bounded(&h);
    h.assert_safe();
    installs
}

/// Compaction keeps every log short while 30 rounds of commands go through a healthy
/// cluster.
#[test]
fn snapshot_basic() {
    for seed in [301, 302] {
        snapcommon(seed, false, true, false, CHUNK);
    }
}

/// A disconnected follower (every third round: the leader) returns behind the others'
/// compaction point and catches up through a chunked InstallSnapshot.
#[test]
fn snapshot_install() {
    for seed in [311, 312] {
        let installs = snapcommon(seed, true, true, false, CHUNK);
        assert!(
            installs >= 5,
            "seed {seed}: only {installs} rounds needed a snapshot"
        );
    }
}

/// [`snapshot_install`] over an unreliable network: lost, delayed and reordered chunks.
///
/// Fails on seed 322 (and about half of seeds 320..332): a lagging follower never
/// catches up. Each 16-byte chunk is stop-and-wait and a lost chunk or reply is only
/// resent at a later heartbeat round (40-80 ms), so a ~5 KB snapshot takes ~7 s at 10%
/// loss; meanwhile the leader compacts again and `send_snapshot_chunk` restarts the
/// transfer from offset 0 for the new snapshot (seen at 84% done), so the follower can
/// livelock. See [`snapshot_install_unreliable_128b_chunks`] for the same scenario with
/// transfers short enough to finish.
#[test]
fn snapshot_install_unreliable() {
    // Seeds 320..332 include ones where a transfer used to restart from offset 0 each
    // time the leader compacted again, livelocking the follower.
    for seed in 320..332 {
        let installs = snapcommon(seed, true, false, false, CHUNK);
        assert!(
            installs >= 5,
            "seed {seed}: only {installs} rounds needed a snapshot"
        );
    }
}

/// A crashed follower (every third round: the leader) restarts behind the others'
/// compaction point and catches up through a snapshot.
#[test]
fn snapshot_install_crash() {
    for seed in [331, 332] {
        let installs = snapcommon(seed, false, true, true, CHUNK);
        assert!(
            installs >= 5,
            "seed {seed}: only {installs} rounds needed a snapshot"
        );
    }
}

/// [`snapshot_install_crash`] over an unreliable network.
///
/// Fails on seed 341 for the same reason as [`snapshot_install_unreliable`].
#[test]
fn snapshot_install_unreliable_crash() {
    for seed in 336..348 {
        let installs = snapcommon(seed, false, false, true, CHUNK);
        assert!(
            installs >= 5,
            "seed {seed}: only {installs} rounds needed a snapshot"
        );
    }
}

/// [`snapshot_install_unreliable`] with 128-byte chunks: the chunked transfer over a
/// lossy, reordering network completes, and followers catch up through it.
#[test]
fn snapshot_install_unreliable_128b_chunks() {
    for seed in [321, 322, 324] {
        let installs = snapcommon(seed, true, false, false, 128);
        assert!(
            installs >= 5,
            "seed {seed}: only {installs} rounds needed a snapshot"
        );
    }
}

/// [`snapshot_install_unreliable_crash`] with 128-byte chunks.
#[test]
fn snapshot_install_unreliable_crash_128b_chunks() {
    for seed in [341, 342, 327] {
        let installs = snapcommon(seed, false, false, true, 128);
        assert!(
            installs >= 5,
            "seed {seed}: only {installs} rounds needed a snapshot"
        );
    }
}

/// Crash and restart all nodes after snapshots were taken: they restart from their
/// snapshots and logs, and the log keeps growing from where it was.
#[test]
fn snapshot_all_crash() {
    for seed in [351, 352] {
        let n = 3;
        let iters = 5;
        let mut h = Harness::new(seed, snap_opts(n));
        let v = h.rand_value();
        h.one(v, n, true);

        for _ in 0..iters {
            // Perhaps enough to get a snapshot.
            let nn = SNAPSHOT_EVERY / 2 + h.rng.range(0, SNAPSHOT_EVERY);
            for _ in 0..nn {
                let v = h.rand_value();
                h.one(v, 1, true);
            }
            let v = h.rand_value();
            let index1 = h.one(v, n, true);

            // Crash all.
            for i in 0..n {
                h.crash(id(i));
            }
            for i in 0..n {
                h.restart(id(i));
            }

            let v = h.rand_value();
            let index2 = h.one(v, n, true);
            assert!(
                index2 > index1,
                "seed {seed}: index decreased from {index1} to {index2}"
            );
        }
        for node in h.all() {
            let s = h.sim.snapshot_index(node).expect("up");
            assert!(s > 0, "seed {seed}: node {node} never took a snapshot");
        }
        h.assert_safe();
    }
}

/// Nodes correctly initialize from a snapshot on restart: after compaction and a full
/// crash, each restarted node's state starts at its durable snapshot, and the cluster
/// keeps agreeing across two more full crashes.
#[test]
fn snapshot_init() {
    for seed in [361, 362] {
        let n = 3;
        let mut h = Harness::new(seed, snap_opts(n));
        let v = h.rand_value();
        h.one(v, n, true);

        // Enough ops to make a snapshot.
        for _ in 0..=SNAPSHOT_EVERY {
            let v = h.rand_value();
            h.one(v, 1, true);
        }
        // Let every node apply (and compact) everything, and the disks sync.
        let v = h.rand_value();
        h.one(v, n, true);
        h.sleep(50 * MS);
        let before: Vec<u64> = h
            .all()
            .iter()
            .map(|x| h.sim.snapshot_index(*x).expect("up"))
            .collect();
        assert!(
            before.iter().all(|s| *s > 0),
            "seed {seed}: no snapshot taken: {before:?}"
        );

        // Crash all; each node must come back with its snapshot.
        for i in 0..n {
            h.crash(id(i));
        }
        for i in 0..n {
            h.restart(id(i));
        }
        for (i, b) in before.iter().enumerate() {
            let s = h.sim.snapshot_index(id(i)).expect("up");
            assert_eq!(
                s,
                *b,
                "seed {seed}: node {} restarted without its snapshot",
                id(i)
            );
        }

        // A single op, to get something to be written back to persistent storage.
        let v = h.rand_value();
        h.one(v, n, true);

        // Crash all again.
        for i in 0..n {
            h.crash(id(i));
        }
        for i in 0..n {
            h.restart(id(i));
        }

        // Do another op to trigger potential bug.
        let v = h.rand_value();
        h.one(v, n, true);
        h.assert_safe();
    }
}
