//! Replicated lease state: grant, revoke, renew, checkpoint, attachments, snapshots and
//! digests, with etcd's error strings and codes.

use engine::{Index, StateMachine};
use kv::command::{decode, encode};
use kv::*;
use seedrng::Rng;

fn put_req(k: &str, v: &str, lease: i64) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        lease,
        ..Default::default()
    }
}

fn put(s: &mut Store, k: &str, v: &str, lease: i64) -> i64 {
    s.put(&put_req(k, v, lease)).unwrap().revision
}

fn keys_of(s: &Store, id: i64) -> Vec<String> {
    let info = s.lease(id).expect("lease granted");
    info.keys
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

fn get(s: &Store, k: &str) -> Option<KeyValue> {
    let r = RangeRequest {
        key: k.into(),
        ..Default::default()
    };
    s.range(&r).unwrap().kvs.pop()
}

/// Every lease's keys are exactly the live keys whose current version names it.
fn assert_attachments_match_keys(s: &Store) {
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    let kvs = s.range(&all).unwrap().kvs;
    for id in s.lease_ids() {
        let expect: Vec<Vec<u8>> = kvs
            .iter()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key.clone())
            .collect();
        assert_eq!(s.lease(id).unwrap().keys, expect, "lease {id}");
    }
    for kv in &kvs {
        assert!(kv.lease == 0 || s.has_lease(kv.lease), "{kv:?}");
    }
}

#[test]
fn grant_errors_carry_etcds_messages_and_codes() {
    let mut s = Store::new();
    assert_eq!(s.lease_grant(7, 60), Ok(7));
    assert_eq!(s.revision(), 1, "a grant makes no revision");
    let exists = s.lease_grant(7, 30).unwrap_err();
    assert_eq!(exists, KvError::LeaseExists);
    assert_eq!(exists.to_string(), "etcdserver: lease already exists");
    assert_eq!(exists.grpc_code(), 9);
    let large = s.lease_grant(8, MAX_LEASE_TTL + 1).unwrap_err();
    assert_eq!(large.to_string(), "etcdserver: too large lease TTL");
    assert_eq!(large.grpc_code(), 11);
    // The TTL is checked first, as etcd does, even for an id in use.
    assert_eq!(s.lease_grant(7, i64::MAX), Err(KvError::LeaseTtlTooLarge));
    assert_eq!(s.lease_grant(8, MAX_LEASE_TTL), Ok(8));
    assert_eq!(s.lease_ids(), vec![7, 8]);
    assert_eq!(
        s.lease(7),
        Some(LeaseInfo {
            id: 7,
            ttl: 60,
            remaining_ttl: 0,
            keys: vec![]
        })
    );
    assert_eq!(s.lease(9), None);
    let missing = s.lease_revoke(9).unwrap_err();
    assert_eq!(missing.to_string(), "etcdserver: requested lease not found");
    assert_eq!(missing.grpc_code(), 5);
    assert_eq!(s.lease_renew(9), Err(KvError::LeaseNotFound));
}

#[test]
fn a_grant_of_id_zero_picks_the_same_positive_id_on_every_replica() {
    let mut a = Store::new();
    let mut b = Store::new();
    let grant = Request::LeaseGrant { id: 0, ttl: 5 };
    let mut ids = Vec::new();
    for index in 1..=20 {
        let ra = a.apply(index, grant.clone()).unwrap().unwrap();
        let rb = b.apply(index, grant.clone()).unwrap().unwrap();
        assert_eq!(ra, rb);
        let Response::LeaseGranted { id, ttl, revision } = ra else {
            panic!("{ra:?}")
        };
        assert!(id > 0);
        assert_eq!((ttl, revision), (5, 1));
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "distinct ids");
    assert_eq!(a.lease_ids(), ids);
    // Another index, another id; an id already taken is passed over.
    let mut c = Store::new();
    let first = match c.apply(1, grant.clone()) {
        Some(Ok(Response::LeaseGranted { id, .. })) => id,
        other => panic!("{other:?}"),
    };
    let mut d = Store::new();
    d.lease_grant(first, 1).unwrap();
    match d.apply(1, grant) {
        Some(Ok(Response::LeaseGranted { id, .. })) => assert!(id > 0 && id != first),
        other => panic!("{other:?}"),
    }
}

#[test]
fn revoke_deletes_every_attached_key_at_one_revision_with_delete_events() {
    let mut s = Store::new();
    s.lease_grant(1, 10).unwrap();
    s.lease_grant(2, 10).unwrap();
    put(&mut s, "a", "1", 1);
    put(&mut s, "c", "3", 1);
    put(&mut s, "b", "2", 1);
    put(&mut s, "x", "other lease", 2);
    put(&mut s, "y", "no lease", 0);
    let before = s.revision();
    s.set_record_events(true);
    assert_eq!(s.lease_revoke(1), Ok(before + 1));
    assert_eq!(s.revision(), before + 1, "exactly one revision");
    assert!(!s.has_lease(1));
    for k in ["a", "b", "c"] {
        assert_eq!(get(&s, k), None, "{k}");
    }
    assert!(get(&s, "x").is_some() && get(&s, "y").is_some());
    let events = s.take_events();
    let keys: Vec<&[u8]> = events.iter().map(|e| e.kv.key.as_slice()).collect();
    assert_eq!(keys, [b"a", b"b", b"c"], "key order");
    for e in &events {
        assert_eq!(e.kind, EventKind::Delete);
        let expect = KeyValue {
            key: e.kv.key.clone(),
            mod_revision: before + 1,
            ..Default::default()
        };
        assert_eq!(e.kv, expect, "only key and mod_revision");
        let prev = e.prev_kv.as_ref().expect("prev_kv");
        assert_eq!((prev.lease, prev.version), (1, 1));
    }
    // The lease is gone: puts naming it fail, and so does a second revoke.
    let e = s.put(&put_req("a", "again", 1)).unwrap_err();
    assert_eq!(e, KvError::LeaseNotFound);
    assert_eq!(s.lease_revoke(1), Err(KvError::LeaseNotFound));
    // A lease without keys goes without a revision.
    s.lease_grant(3, 10).unwrap();
    let rev = s.revision();
    assert_eq!(s.lease_revoke(3), Ok(rev));
    assert!(s.take_events().is_empty());
    assert_attachments_match_keys(&s);
}

#[test]
fn renew_and_checkpoint_set_the_remaining_ttl() {
    let mut s = Store::new();
    s.lease_grant(1, 30).unwrap();
    s.lease_grant(2, 40).unwrap();
    s.lease_checkpoint(&[(1, 12), (99, 5), (2, -4)]);
    assert_eq!(s.lease(1).unwrap().remaining_ttl, 12);
    assert_eq!(
        s.lease(2).unwrap().remaining_ttl,
        0,
        "negative counts as none"
    );
    assert!(!s.has_lease(99), "a checkpoint grants nothing");
    assert_eq!(s.lease_renew(1), Ok(30));
    assert_eq!(s.lease(1).unwrap().remaining_ttl, 0);
    assert_eq!(s.revision(), 1);
    // Through apply.
    let r = s.apply(
        1,
        Request::LeaseCheckpoint {
            checkpoints: vec![(2, 7)],
        },
    );
    assert_eq!(r, Some(Ok(Response::LeaseCheckpointed)));
    assert_eq!(s.lease(2).unwrap().remaining_ttl, 7);
    let r = s.apply(2, Request::LeaseRenew { id: 2 });
    assert_eq!(r, Some(Ok(Response::LeaseRenewed { id: 2, ttl: 40 })));
    assert_eq!(s.lease(2).unwrap().remaining_ttl, 0);
    let r = s.apply(3, Request::LeaseRenew { id: 5 });
    assert_eq!(r, Some(Err(KvError::LeaseNotFound)));
    let r = s.apply(4, Request::LeaseRevoke { id: 2 });
    assert_eq!(r, Some(Ok(Response::LeaseRevoked { revision: 1 })));
}

#[test]
fn puts_attach_move_keep_and_detach_keys() {
    let mut s = Store::new();
    s.lease_grant(1, 10).unwrap();
    s.lease_grant(2, 10).unwrap();
    put(&mut s, "k", "v", 1);
    put(&mut s, "j", "v", 1);
    assert_eq!(keys_of(&s, 1), ["j", "k"]);
    put(&mut s, "k", "v", 2);
    assert_eq!(
        (keys_of(&s, 1), keys_of(&s, 2)),
        (vec!["j".into()], vec!["k".into()])
    );
    // ignore_lease keeps the key's lease.
    let keep = PutRequest {
        key: "k".into(),
        value: "w".into(),
        ignore_lease: true,
        ..Default::default()
    };
    s.put(&keep).unwrap();
    assert_eq!(
        (get(&s, "k").unwrap().lease, keys_of(&s, 2)),
        (2, vec!["k".into()])
    );
    // A put without a lease detaches.
    put(&mut s, "k", "v", 0);
    assert!(keys_of(&s, 2).is_empty());
    // A delete detaches.
    s.delete_range(&DeleteRangeRequest {
        key: "j".into(),
        ..Default::default()
    })
    .unwrap();
    assert!(keys_of(&s, 1).is_empty());
    // Revoking lease 2 now deletes nothing: "k" left it.
    let rev = s.revision();
    assert_eq!(s.lease_revoke(2), Ok(rev));
    assert!(get(&s, "k").is_some());
    assert_attachments_match_keys(&s);
}

#[test]
fn txn_puts_and_deletes_attach_and_a_failed_txn_restores_attachments() {
    let mut s = Store::new();
    s.lease_grant(1, 10).unwrap();
    s.lease_grant(2, 10).unwrap();
    put(&mut s, "a", "1", 1);
    put(&mut s, "b", "1", 1);
    let ok = TxnRequest {
        success: vec![
            RequestOp::Put(put_req("a", "2", 2)),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: "b".into(),
                ..Default::default()
            }),
            RequestOp::Put(put_req("c", "1", 1)),
        ],
        ..Default::default()
    };
    s.txn(&ok).unwrap();
    assert_eq!(
        (keys_of(&s, 1), keys_of(&s, 2)),
        (vec!["c".into()], vec!["a".into()])
    );
    let before = (s.lease(1), s.lease(2), s.digest());
    // Moves "a" to lease 1, deletes "c", attaches "d", then fails on an unknown
    // lease: all of it undone.
    let bad = TxnRequest {
        success: vec![
            RequestOp::Put(put_req("a", "3", 1)),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: "c".into(),
                ..Default::default()
            }),
            RequestOp::Put(put_req("d", "1", 2)),
            RequestOp::Put(put_req("e", "1", 77)),
        ],
        ..Default::default()
    };
    assert_eq!(s.txn(&bad), Err(KvError::LeaseNotFound));
    assert_eq!((s.lease(1), s.lease(2), s.digest()), before);
    assert_attachments_match_keys(&s);
}

#[test]
fn attachments_and_lease_state_survive_snapshot_and_restore() {
    let mut s = Store::new();
    s.lease_grant(1, 10).unwrap();
    s.lease_grant(-4, 20).unwrap();
    s.lease_grant(9, 30).unwrap();
    s.lease_checkpoint(&[(9, 17)]);
    for (k, l) in [("a", 1), ("b", -4), ("c", 1), ("d", 0), ("e", 9)] {
        put(&mut s, k, "v", l);
    }
    put(&mut s, "c", "moved", 9);
    s.delete_range(&DeleteRangeRequest {
        key: "e".into(),
        ..Default::default()
    })
    .unwrap();
    let back = Store::restore(&s.snapshot()).unwrap();
    assert_eq!(back, s);
    for id in [1, -4, 9] {
        assert_eq!(back.lease(id), s.lease(id));
    }
    assert_eq!(keys_of(&back, 9), ["c"]);
    assert_eq!(back.lease(9).unwrap().remaining_ttl, 17);
    assert_eq!(StateMachine::digest(&back), StateMachine::digest(&s));
    // A restored store revokes as the original does.
    let (mut x, mut y) = (s.clone(), back);
    assert_eq!(x.lease_revoke(1), y.lease_revoke(1));
    assert_eq!(x, y);
}

/// `snap` with `bytes` written at `at` and the checksum made right again.
fn patched(snap: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut b = snap.to_vec();
    b[at..at + bytes.len()].copy_from_slice(bytes);
    let n = b.len() - 4;
    let crc = crc32c(&b[..n]);
    b[n..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// CRC32C, bit by bit (the snapshot's checksum), so that tests can forge snapshots.
fn crc32c(b: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in b {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                crc >> 1 ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn snapshots_of_other_versions_or_with_orphan_keys_are_refused() {
    let mut s = Store::new();
    s.lease_grant(5, 10).unwrap();
    put(&mut s, "k", "v", 5);
    let snap = s.snapshot();
    assert_eq!(&snap[..8], b"SYNKV002");
    assert!(
        Store::restore(&patched(&snap, 0, b"SYNKV002")).is_ok(),
        "forging works"
    );
    // Version 1 had no leases: a version-2 body with one is not a version-1 snapshot.
    for other in [b"SYNKV001", b"SYNKV003"] {
        assert_eq!(
            Store::restore(&patched(&snap, 0, other)),
            Err(SnapshotError)
        );
    }
    // Head: magic, revision, compact revision, applied index, lease count, then the
    // leases (id, ttl, remaining). A key naming a lease that is not there is refused.
    assert_eq!(snap[40..48], 5i64.to_le_bytes());
    assert_eq!(
        Store::restore(&patched(&snap, 40, &6i64.to_le_bytes())),
        Err(SnapshotError)
    );
    assert_eq!(
        Store::restore(&patched(&snap, 40, &0i64.to_le_bytes())),
        Err(SnapshotError),
        "lease id 0"
    );
}

#[test]
fn the_digest_covers_lease_state() {
    let mut a = Store::new();
    a.lease_grant(1, 10).unwrap();
    let mut b = a.clone();
    assert_eq!(a.digest(), b.digest());
    b.lease_checkpoint(&[(1, 4)]);
    assert_ne!(a.digest(), b.digest(), "remaining TTL");
    let mut c = a.clone();
    c.lease_grant(2, 10).unwrap();
    assert_ne!(a.digest(), c.digest(), "another lease");
    let mut d = Store::new();
    d.lease_grant(1, 11).unwrap();
    assert_ne!(a.digest(), d.digest(), "another TTL");
}

#[test]
fn lease_commands_round_trip_and_garbage_is_refused() {
    let samples = [
        Request::LeaseGrant { id: 0, ttl: 60 },
        Request::LeaseGrant {
            id: i64::MAX,
            ttl: i64::MIN,
        },
        Request::LeaseRevoke { id: -1 },
        Request::LeaseRenew { id: 12345 },
        Request::LeaseCheckpoint {
            checkpoints: vec![],
        },
        Request::LeaseCheckpoint {
            checkpoints: vec![(1, 2), (i64::MIN, i64::MAX), (7, 0)],
        },
    ];
    for r in &samples {
        let b = encode(r);
        assert_eq!(decode(&b).as_ref(), Ok(r));
        let renew = matches!(r, Request::LeaseRenew { .. });
        assert_eq!(kv::command::is_lease_renew(&b), renew, "{r:?}");
        for cut in 0..b.len() {
            assert_eq!(decode(&b[..cut]), Err(KvError::Corrupt), "{r:?} at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(KvError::Corrupt));
    }
    assert!(!kv::command::is_lease_renew(&encode(&Request::Compact(8))));
    assert!(!kv::command::is_lease_renew(&[8]));
    // The existing kinds keep their bytes.
    assert_eq!(encode(&Request::Compact(1)), [1, 4, 2]);
    assert_eq!(encode(&Request::LeaseRevoke { id: 1 }), [1, 7, 2]);
    // A checkpoint count the bytes cannot hold is refused before any allocation.
    let huge = [1, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert_eq!(decode(&huge), Err(KvError::Corrupt));
    assert_eq!(
        decode(&[1, 9, 2, 2, 4, 6]),
        Err(KvError::Corrupt),
        "2 pairs, 3 varints"
    );
    assert_eq!(decode(&[1, 10]), Err(KvError::Corrupt), "unknown kind");
    // Random garbage after each new kind byte never panics.
    let mut rng = Rng::new(11);
    for _ in 0..20_000 {
        let len = rng.range(0, 24) as usize;
        let mut b = vec![1, rng.range(6, 10) as u8];
        b.extend((0..len).map(|_| rng.next_u64() as u8));
        let _ = decode(&b);
    }
}

/// Random lease and key operations applied as commands on two replicas: same digest,
/// and every lease's keys always match the keys that name it.
#[test]
fn replicas_agree_and_attachments_stay_consistent_over_random_commands() {
    for seed in 0..20 {
        let mut rng = Rng::new(seed);
        let mut a = Store::new();
        let mut b = Store::new();
        for index in 1..=300u64 {
            let ids = a.lease_ids();
            let lease = match rng.range(0, 3) {
                0 => 0,
                _ => rng.pick(&ids).copied().unwrap_or(0),
            };
            let key = vec![b'a' + rng.range(0, 8) as u8];
            let req = match rng.range(0, 10) {
                0 => Request::LeaseGrant {
                    id: rng.range(0, 4) as i64,
                    ttl: 10,
                },
                1 => Request::LeaseRevoke {
                    id: rng.range(0, 5) as i64,
                },
                2 => Request::LeaseCheckpoint {
                    checkpoints: vec![(rng.range(0, 5) as i64, rng.range(0, 9) as i64)],
                },
                3 => Request::DeleteRange(DeleteRangeRequest {
                    key,
                    range_end: vec![b'a' + rng.range(0, 9) as u8],
                    prev_kv: false,
                }),
                4 => Request::Txn(TxnRequest {
                    success: vec![
                        RequestOp::Put(PutRequest {
                            key: b"t".to_vec(),
                            lease,
                            ..Default::default()
                        }),
                        RequestOp::Put(PutRequest {
                            key,
                            lease: rng.range(0, 5) as i64,
                            ..Default::default()
                        }),
                    ],
                    ..Default::default()
                }),
                _ => Request::Put(PutRequest {
                    key,
                    value: vec![index as u8],
                    lease,
                    ignore_lease: lease == 0 && rng.chance(1, 4),
                    ..Default::default()
                }),
            };
            let cmd = encode(&req);
            let ra = StateMachine::apply(&mut a, Index(index), &cmd);
            let rb = StateMachine::apply(&mut b, Index(index), &cmd);
            assert_eq!(ra, rb);
            assert_eq!(a.digest(), b.digest());
            assert_attachments_match_keys(&a);
        }
        let back = Store::restore(&a.snapshot()).unwrap();
        assert_eq!(back, a, "seed {seed}");
    }
}

#[test]
fn a_version_1_snapshot_without_leases_still_restores() {
    let mut s = Store::new();
    put(&mut s, "k", "v", 0);
    let v2 = s.snapshot();
    // Version 1 is version 2 without the leases: its lease count (0) is all there is.
    let mut v1 = b"SYNKV001".to_vec();
    v1.extend_from_slice(&v2[8..v2.len() - 4]);
    v1.extend_from_slice(&crc32c::crc32c(&v1).to_le_bytes());
    let back = Store::restore(&v1).expect("a version-1 snapshot restores");
    assert_eq!(back.revision(), s.revision());
    assert_eq!(back.snapshot(), v2);
}
