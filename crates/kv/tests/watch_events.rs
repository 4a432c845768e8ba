//! Watch events: the live log (`set_record_events`/`take_events`) and the history read
//! (`events_since`), checked by hand and against a brute-force model over random
//! operation sequences with compactions.

use kv::*;
use seedrng::Rng;
use std::collections::BTreeMap;

fn put_req(k: &[u8], v: &[u8], lease: i64) -> PutRequest {
    PutRequest {
        key: k.to_vec(),
        value: v.to_vec(),
        lease,
        ..Default::default()
    }
}

fn del_req(k: &[u8], end: &[u8]) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: k.to_vec(),
        range_end: end.to_vec(),
        prev_kv: false,
    }
}

fn kv(key: &str, create: i64, rev: i64, version: i64, value: &str, lease: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        create_revision: create,
        mod_revision: rev,
        version,
        value: value.into(),
        lease,
    }
}

fn deleted(key: &str, rev: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        mod_revision: rev,
        ..Default::default()
    }
}

fn ev(kind: EventKind, kv: KeyValue, prev_kv: Option<KeyValue>) -> Event {
    Event { kind, kv, prev_kv }
}

#[test]
fn the_live_log_is_off_by_default_and_records_puts_deletes_and_txns_in_op_order() {
    use EventKind::{Delete, Put};
    let mut s = Store::new();
    s.put(&put_req(b"z", b"0", 0)).unwrap();
    assert!(!s.records_events());
    assert!(s.take_events().is_empty(), "off by default");
    s.set_record_events(true);
    s.put(&put_req(b"k", b"1", 0)).unwrap();
    s.put(&put_req(b"k", b"2", 0)).unwrap();
    s.delete_range(&del_req(b"a", b"zz")).unwrap();
    let t = TxnRequest {
        success: vec![
            RequestOp::Put(put_req(b"m", b"x", 0)),
            RequestOp::Range(RangeRequest {
                key: b"m".to_vec(),
                ..Default::default()
            }),
            RequestOp::Put(put_req(b"b", b"y", 0)),
        ],
        ..Default::default()
    };
    s.txn(&t).unwrap();
    let k1 = kv("k", 3, 3, 1, "1", 0);
    let k2 = kv("k", 3, 4, 2, "2", 0);
    let expect = vec![
        ev(Put, k1.clone(), None),
        ev(Put, k2.clone(), Some(k1)),
        ev(Delete, deleted("k", 5), Some(k2)),
        ev(Delete, deleted("z", 5), Some(kv("z", 2, 2, 1, "0", 0))),
        ev(Put, kv("m", 6, 6, 1, "x", 0), None),
        ev(Put, kv("b", 6, 6, 1, "y", 0), None),
    ];
    assert_eq!(s.take_events(), expect);
    assert!(s.take_events().is_empty(), "taken once");
    // Requests that fail or change nothing add nothing.
    let failing = TxnRequest {
        success: vec![
            RequestOp::Put(put_req(b"q", b"1", 0)),
            RequestOp::Put(put_req(b"r", b"1", 42)),
        ],
        ..Default::default()
    };
    assert_eq!(s.txn(&failing), Err(KvError::LeaseNotFound));
    s.delete_range(&del_req(b"nothing", b"")).unwrap();
    assert!(s.put(&put_req(b"", b"v", 0)).is_err());
    assert!(s.take_events().is_empty());
    // Turning it off drops what was not taken.
    s.put(&put_req(b"k", b"3", 0)).unwrap();
    s.set_record_events(false);
    s.set_record_events(true);
    assert!(s.take_events().is_empty());
}

#[test]
fn events_since_reads_history_by_revision_then_key_with_prev_kv() {
    use EventKind::{Delete, Put};
    let mut s = Store::new();
    s.put(&put_req(b"b", b"1", 0)).unwrap(); // 2
    s.put(&put_req(b"a", b"1", 0)).unwrap(); // 3
    let t = TxnRequest {
        success: vec![
            RequestOp::Put(put_req(b"c", b"2", 0)),
            RequestOp::Put(put_req(b"a", b"2", 0)),
        ],
        ..Default::default()
    };
    s.txn(&t).unwrap(); // 4
    s.delete_range(&del_req(b"b", b"")).unwrap(); // 5
    let all = s.events_since(&[0], &[0], 0, 0).unwrap();
    let a1 = kv("a", 3, 3, 1, "1", 0);
    let b1 = kv("b", 2, 2, 1, "1", 0);
    assert_eq!(
        all.events,
        vec![
            ev(Put, b1.clone(), None),
            ev(Put, a1.clone(), None),
            ev(Put, kv("a", 3, 4, 2, "2", 0), Some(a1)),
            ev(Put, kv("c", 4, 4, 1, "2", 0), None),
            ev(Delete, deleted("b", 5), Some(b1)),
        ]
    );
    assert_eq!(all.next_rev, 6);
    // One key; a range; from a revision on.
    let one = s.events_since(b"b", b"", 1, 0).unwrap();
    assert_eq!(one.events.len(), 2);
    let range = s.events_since(b"b", b"d", 4, 0).unwrap();
    let keys: Vec<_> = range.events.iter().map(|e| e.kv.key.clone()).collect();
    assert_eq!(keys, [b"c".to_vec(), b"b".to_vec()]);
    // Past the current revision: nothing yet, resume there.
    let future = s.events_since(&[0], &[0], 9, 0).unwrap();
    assert_eq!((future.events.len(), future.next_rev), (0, 9));
    let next = s.events_since(&[0], &[0], 6, 0).unwrap();
    assert_eq!((next.events.len(), next.next_rev), (0, 6));
}

#[test]
fn max_events_cuts_between_revisions_only() {
    let mut s = Store::new();
    // Revision 2: one event; 3: three; 4: one; 5: two.
    s.put(&put_req(b"a", b"", 0)).unwrap();
    let three = TxnRequest {
        success: [b"x", b"y", b"z"]
            .iter()
            .map(|k| RequestOp::Put(put_req(*k, b"", 0)))
            .collect(),
        ..Default::default()
    };
    s.txn(&three).unwrap();
    s.put(&put_req(b"b", b"", 0)).unwrap();
    s.delete_range(&del_req(b"x", b"z")).unwrap();
    let revs = |b: &EventBatch| b.events.iter().map(|e| e.revision()).collect::<Vec<_>>();
    let cases: [(usize, &[i64], i64); 7] = [
        (1, &[2], 3),
        (2, &[2], 3),
        (3, &[2], 3),
        (4, &[2, 3, 3, 3], 4),
        (5, &[2, 3, 3, 3, 4], 5),
        (6, &[2, 3, 3, 3, 4], 5),
        (7, &[2, 3, 3, 3, 4, 5, 5], 6),
    ];
    for (max, expect, next) in cases {
        let b = s.events_since(&[0], &[0], 2, max).unwrap();
        assert_eq!(
            (revs(&b).as_slice(), b.next_rev),
            (expect, next),
            "max {max}"
        );
    }
    // A revision larger than the limit comes whole, alone.
    let b = s.events_since(&[0], &[0], 3, 1).unwrap();
    assert_eq!((revs(&b), b.next_rev), (vec![3, 3, 3], 4));
    let b = s.events_since(&[0], &[0], 5, 1).unwrap();
    assert_eq!((revs(&b), b.next_rev), (vec![5, 5], 6));
}

#[test]
fn compacted_history_is_refused_even_before_it_is_dropped() {
    let mut s = Store::new();
    for v in [b"1", b"2", b"3", b"4"] {
        s.put(&put_req(b"k", v, 0)).unwrap();
    }
    s.delete_range(&del_req(b"k", b"")).unwrap(); // 6
    s.put(&put_req(b"k", b"5", 0)).unwrap(); // 7
    s.hold_history();
    s.begin_compaction(6).unwrap();
    for held in [true, false] {
        for start in [1, 5] {
            assert_eq!(
                s.events_since(b"k", b"", start, 0),
                Err(KvError::Compacted),
                "start {start}"
            );
        }
        // From the compact revision itself, as etcd: its deletion went with the
        // compaction, so only the put after it remains.
        for start in [6, 7] {
            let b = s.events_since(b"k", b"", start, 0).unwrap();
            assert_eq!(b.events.len(), 1, "start {start}");
            assert_eq!(b.events[0].revision(), 7);
            assert_eq!(b.events[0].prev_kv, None, "the key was deleted before");
            assert_eq!(b.next_rev, 8);
        }
        if held {
            assert!(!s.compact_step(usize::MAX), "held");
            s.release_history();
            assert!(s.compact_step(usize::MAX));
        }
    }
    assert_eq!(
        KvError::Compacted.to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
}

/// The brute-force model: the live keys, and every event in the order it happened.
#[derive(Default)]
struct Model {
    rev: i64,
    compact: i64,
    live: BTreeMap<Vec<u8>, KeyValue>,
    leases: Vec<i64>,
    events: Vec<Event>,
}

/// Whether `k` is in etcd's `[key, end)`.
fn in_range(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    match end {
        [] => k == key,
        [0] => k >= key,
        _ => k >= key && k < end,
    }
}

impl Model {
    fn put(&mut self, key: &[u8], value: &[u8], lease: i64, rev: i64) {
        let prev = self.live.get(key).cloned();
        let (create, version) = prev
            .as_ref()
            .map_or((rev, 1), |p| (p.create_revision, p.version + 1));
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: create,
            mod_revision: rev,
            version,
            value: value.to_vec(),
            lease,
        };
        self.live.insert(key.to_vec(), kv.clone());
        self.events.push(ev(EventKind::Put, kv, prev));
    }

    fn delete_where(&mut self, rev: i64, which: impl Fn(&KeyValue) -> bool) -> bool {
        let gone: Vec<Vec<u8>> = self
            .live
            .values()
            .filter(|kv| which(kv))
            .map(|kv| kv.key.clone())
            .collect();
        for k in &gone {
            let prev = self.live.remove(k);
            let kv = KeyValue {
                key: k.clone(),
                mod_revision: rev,
                ..Default::default()
            };
            self.events.push(ev(EventKind::Delete, kv, prev));
        }
        !gone.is_empty()
    }

    fn events_since(
        &self,
        key: &[u8],
        end: &[u8],
        start: i64,
        max: usize,
    ) -> Result<EventBatch, KvError> {
        if start < self.compact {
            return Err(KvError::Compacted);
        }
        if start > self.rev {
            return Ok(EventBatch {
                events: vec![],
                next_rev: start,
            });
        }
        let mut evs: Vec<Event> = self
            .events
            .iter()
            .filter(|e| e.revision() >= start && in_range(&e.kv.key, key, end))
            // A compaction drops the deletions at its own revision, and what its
            // puts replaced (no prev_kv there, as etcd reads it below the compaction).
            .filter(|e| !(e.revision() == self.compact && e.kind == EventKind::Delete))
            .cloned()
            .map(|mut e| {
                if e.revision() == self.compact {
                    e.prev_kv = None;
                }
                e
            })
            .collect();
        evs.sort_by(|a, b| (a.revision(), &a.kv.key).cmp(&(b.revision(), &b.kv.key)));
        // Whole revisions while they fit; the first one in any case.
        let mut take = 0;
        while take < evs.len() {
            let rev = evs[take].revision();
            let end = take
                + evs[take..]
                    .iter()
                    .take_while(|e| e.revision() == rev)
                    .count();
            if max > 0 && take > 0 && end > max {
                break;
            }
            take = end;
        }
        let next_rev = evs.get(take).map_or(self.rev + 1, |e| e.revision());
        evs.truncate(take);
        Ok(EventBatch {
            events: evs,
            next_rev,
        })
    }
}

fn random_key(rng: &mut Rng) -> Vec<u8> {
    let mut k = vec![b'a' + rng.range(0, 5) as u8];
    if rng.chance(1, 2) {
        k.push(b'0' + rng.range(0, 3) as u8);
    }
    k
}

/// A random `(key, range_end)`: one key, a range (maybe empty or inverted), from a
/// key on, or everything.
fn random_range(rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    match rng.range(0, 4) {
        0 => (random_key(rng), vec![]),
        1 => (random_key(rng), random_key(rng)),
        2 => (random_key(rng), vec![0]),
        _ => (vec![0], vec![0]),
    }
}

/// One random write, applied to the store (at log `index`) and the model alike.
fn random_write(rng: &mut Rng, s: &mut Store, m: &mut Model, index: u64) {
    let rev = m.rev + 1;
    let lease = match rng.range(0, 3) {
        0 => rng.pick(&m.leases).copied().unwrap_or(0),
        _ => 0,
    };
    let value = vec![rng.range(0, 256) as u8];
    let (req, changed) = match rng.range(0, 12) {
        0..=4 => {
            let key = random_key(rng);
            m.put(&key, &value, lease, rev);
            (Request::Put(put_req(&key, &value, lease)), true)
        }
        5 | 6 => {
            let (key, end) = random_range(rng);
            let changed = m.delete_where(rev, |kv| in_range(&kv.key, &key, &end));
            (Request::DeleteRange(del_req(&key, &end)), changed)
        }
        7 | 8 => random_txn(rng, m, rev, lease),
        9 => {
            let id = m.leases.last().map_or(1, |l| l + 1);
            m.leases.push(id);
            (Request::LeaseGrant { id, ttl: 5 }, false)
        }
        _ => match rng.pick(&m.leases).copied() {
            Some(id) => {
                m.leases.retain(|&l| l != id);
                let changed = m.delete_where(rev, |kv| kv.lease == id);
                (Request::LeaseRevoke { id }, changed)
            }
            None => (Request::Compact(0), false),
        },
    };
    let out = s.apply(index, req.clone()).expect("a new index");
    assert!(
        out.is_ok() || matches!(req, Request::Compact(0)),
        "{req:?}: {out:?}"
    );
    if changed {
        m.rev = rev;
    }
    assert_eq!(s.revision(), m.rev, "{req:?}");
}

/// A txn of two puts and a one-key delete of three different keys, in random order.
fn random_txn(rng: &mut Rng, m: &mut Model, rev: i64, lease: i64) -> (Request, bool) {
    let mut keys = Vec::new();
    while keys.len() < 3 {
        let k = random_key(rng);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut ops = vec![
        RequestOp::Put(put_req(&keys[0], b"t", lease)),
        RequestOp::Put(put_req(&keys[1], b"u", 0)),
        RequestOp::DeleteRange(del_req(&keys[2], b"")),
    ];
    let turn = rng.range(0, 3) as usize;
    ops.rotate_left(turn);
    for op in &ops {
        match op {
            RequestOp::Put(p) => m.put(&p.key, &p.value, p.lease, rev),
            RequestOp::DeleteRange(d) => {
                m.delete_where(rev, |kv| kv.key == d.key);
            }
            _ => unreachable!(),
        }
    }
    let t = TxnRequest {
        success: ops,
        ..Default::default()
    };
    (Request::Txn(t), true)
}

/// Random writes, compactions (some while a snapshot holds the history, some carried
/// out a few keys at a time), and reads of the history after each step.
#[test]
fn events_since_and_the_live_log_match_a_brute_force_model() {
    let mut checked = 0;
    for seed in 0..24 {
        let mut rng = Rng::new(seed);
        let (mut s, mut m) = (Store::new(), Model::default());
        m.rev = 1;
        s.set_record_events(true);
        let mut taken: Vec<Event> = Vec::new();
        for index in 1..=250u64 {
            let logged = m.events.len();
            if rng.chance(1, 25) && m.rev > m.compact {
                if rng.chance(1, 2) {
                    s.hold_history();
                }
                let rev = rng.range(m.compact as u64 + 1, m.rev as u64 + 1) as i64;
                let out = s.apply(index, Request::Compact(rev)).unwrap();
                assert!(out.is_ok(), "{out:?}");
                m.compact = rev;
            } else {
                random_write(&mut rng, &mut s, &mut m, index);
            }
            match rng.range(0, 6) {
                0 => s.release_history(),
                1 => drop(s.compact_step(rng.range(1, 4) as usize)),
                _ => {}
            }
            // The live log: exactly this step's events, in the order they happened.
            let new = s.take_events();
            assert_eq!(new, m.events[logged..], "seed {seed} index {index}");
            taken.extend(new);
            for _ in 0..3 {
                let (key, end) = random_range(&mut rng);
                let start = rng.range(0, m.rev as u64 + 3) as i64;
                let max = rng.range(0, 6) as usize;
                let got = s.events_since(&key, &end, start, max);
                assert_eq!(got, m.events_since(&key, &end, start, max), "seed {seed}");
                checked += 1;
            }
        }
        // The history from just past the compaction is the live log over the same
        // revisions, each revision's events in key order.
        let from = m.compact + 1;
        let mut live: Vec<Event> = taken.into_iter().filter(|e| e.revision() >= from).collect();
        live.sort_by(|a, b| (a.revision(), &a.kv.key).cmp(&(b.revision(), &b.kv.key)));
        let history = s.events_since(&[0], &[0], from, 0).unwrap();
        assert_eq!(history.events, live, "seed {seed}");
        assert_eq!(history.next_rev, m.rev + 1);
    }
    assert_eq!(checked, 24 * 250 * 3);
}
