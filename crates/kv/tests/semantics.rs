//! etcd v3 semantics, one property per test (facts from the etcd API reference).

use kv::*;

fn put(s: &mut Store, k: &str, v: &str) -> PutResponse {
    s.put(&PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    })
    .unwrap()
}

fn get(s: &Store, k: &str) -> Option<KeyValue> {
    s.range(&RangeRequest {
        key: k.into(),
        ..Default::default()
    })
    .unwrap()
    .kvs
    .pop()
}

fn range(s: &Store, r: RangeRequest) -> RangeResponse {
    s.range(&r).unwrap()
}

fn keys(r: &RangeResponse) -> Vec<String> {
    r.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn prefix(p: &str) -> RangeRequest {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    RangeRequest {
        key: p.into(),
        range_end: end,
        ..Default::default()
    }
}

#[test]
fn revisions_start_at_one_and_each_write_adds_exactly_one() {
    let mut s = Store::new();
    assert_eq!(s.revision(), 1);
    assert_eq!(put(&mut s, "a", "1").revision, 2);
    assert_eq!(
        put(&mut s, "a", "1").revision,
        3,
        "an identical put still counts"
    );
    let d = s
        .delete_range(&DeleteRangeRequest {
            key: "zzz".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        (d.deleted, d.revision),
        (0, 3),
        "a delete of nothing adds nothing"
    );
    let t = s
        .txn(&TxnRequest {
            success: vec![RequestOp::Range(RangeRequest {
                key: "a".into(),
                ..Default::default()
            })],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(t.revision, 3, "a read-only txn adds nothing");
    let t = s
        .txn(&TxnRequest {
            success: vec![
                RequestOp::Put(PutRequest {
                    key: "b".into(),
                    value: "2".into(),
                    ..Default::default()
                }),
                RequestOp::Put(PutRequest {
                    key: "c".into(),
                    value: "3".into(),
                    ..Default::default()
                }),
            ],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(t.revision, 4, "all changes of one txn share one revision");
    assert_eq!(get(&s, "b").unwrap().mod_revision, 4);
    assert_eq!(get(&s, "c").unwrap().mod_revision, 4);
}

#[test]
fn per_key_create_mod_and_version() {
    let mut s = Store::new();
    put(&mut s, "k", "v1");
    put(&mut s, "k", "v2");
    let kv = get(&s, "k").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    s.delete_range(&DeleteRangeRequest {
        key: "k".into(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(get(&s, "k"), None);
    put(&mut s, "k", "v3");
    let kv = get(&s, "k").unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (5, 5, 1),
        "re-creation starts over"
    );
}

#[test]
fn ranges_prefixes_and_all_keys() {
    let mut s = Store::new();
    for k in ["a", "b/1", "b/2", "b/3", "c"] {
        put(&mut s, k, k);
    }
    assert_eq!(keys(&range(&s, prefix("b/"))), ["b/1", "b/2", "b/3"]);
    let from_b = RangeRequest {
        key: "b".into(),
        range_end: vec![0],
        ..Default::default()
    };
    assert_eq!(keys(&range(&s, from_b)), ["b/1", "b/2", "b/3", "c"]);
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    assert_eq!(range(&s, all).count, 5);
    let inverted = RangeRequest {
        key: "c".into(),
        range_end: "a".into(),
        ..Default::default()
    };
    assert_eq!(range(&s, inverted).count, 0);
}

/// Short keys are held inline and long ones on the heap: order, ranges, deletes and a
/// snapshot's round trip must not depend on which.
#[test]
fn keys_short_and_long_order_and_round_trip_alike() {
    let mut s = Store::new();
    let mut names: Vec<String> = Vec::new();
    for len in [2, 8, 15, 16, 17, 24, 40] {
        for last in ['a', 'b'] {
            names.push(format!("{}{last}", "k".repeat(len - 1)));
        }
    }
    for k in names.iter().rev() {
        put(&mut s, k, k);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(keys(&range(&s, prefix("k"))), sorted);
    for k in &names {
        assert_eq!(get(&s, k).unwrap().value, k.as_bytes());
    }
    // A delete whose range starts at a 16-byte key and ends inside the long ones.
    let del = DeleteRangeRequest {
        key: format!("{}a", "k".repeat(15)).into(),
        range_end: format!("{}b", "k".repeat(23)).into(),
        ..Default::default()
    };
    assert_eq!(s.delete_range(&del).unwrap().deleted, 5);
    let back = Store::restore(&s.snapshot()).unwrap();
    assert_eq!(
        keys(&range(&back, prefix("k"))),
        keys(&range(&s, prefix("k")))
    );
    assert_eq!(back.hash(back.revision()), s.hash(s.revision()));
}

#[test]
fn limit_more_count_keys_only_count_only() {
    let mut s = Store::new();
    for k in ["p1", "p2", "p3"] {
        put(&mut s, k, "value");
    }
    let r = range(
        &s,
        RangeRequest {
            limit: 2,
            ..prefix("p")
        },
    );
    assert_eq!(
        (keys(&r), r.more, r.count),
        (vec!["p1".to_string(), "p2".into()], true, 3)
    );
    let r = range(
        &s,
        RangeRequest {
            limit: 3,
            ..prefix("p")
        },
    );
    assert!(!r.more);
    let r = range(
        &s,
        RangeRequest {
            keys_only: true,
            ..prefix("p")
        },
    );
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()) && r.kvs.len() == 3);
    let r = range(
        &s,
        RangeRequest {
            count_only: true,
            ..prefix("p")
        },
    );
    assert_eq!((r.kvs.len(), r.count), (0, 3));
}

#[test]
fn sorting_by_every_target() {
    let mut s = Store::new();
    put(&mut s, "x1", "c");
    put(&mut s, "x2", "a");
    put(&mut s, "x3", "b");
    put(&mut s, "x1", "c2");
    let by = |t, o| {
        keys(&range(
            &s,
            RangeRequest {
                sort_target: t,
                sort_order: o,
                ..prefix("x")
            },
        ))
    };
    assert_eq!(by(SortTarget::Key, SortOrder::Descend), ["x3", "x2", "x1"]);
    assert_eq!(by(SortTarget::Value, SortOrder::Ascend), ["x2", "x3", "x1"]);
    assert_eq!(
        by(SortTarget::Value, SortOrder::None),
        ["x2", "x3", "x1"],
        "a non-key target defaults to ascending"
    );
    assert_eq!(by(SortTarget::Mod, SortOrder::Descend), ["x1", "x3", "x2"]);
    assert_eq!(
        by(SortTarget::Create, SortOrder::Ascend),
        ["x1", "x2", "x3"]
    );
    assert_eq!(by(SortTarget::Version, SortOrder::Descend)[0], "x1");
    let r = range(
        &s,
        RangeRequest {
            sort_target: SortTarget::Mod,
            sort_order: SortOrder::Descend,
            limit: 1,
            ..prefix("x")
        },
    );
    assert_eq!(
        (keys(&r), r.more),
        (vec!["x1".to_string()], true),
        "sort, then limit"
    );
}

#[test]
fn revision_filters() {
    let mut s = Store::new();
    for k in ["f1", "f2", "f3"] {
        put(&mut s, k, "v");
    }
    put(&mut s, "f1", "v2"); // f1 mod 5, create 2
    let r = range(
        &s,
        RangeRequest {
            min_mod_revision: 4,
            ..prefix("f")
        },
    );
    assert_eq!(keys(&r), ["f1", "f3"]);
    let r = range(
        &s,
        RangeRequest {
            max_create_revision: 3,
            ..prefix("f")
        },
    );
    assert_eq!(keys(&r), ["f1", "f2"]);
    let r = range(
        &s,
        RangeRequest {
            min_create_revision: 3,
            max_mod_revision: 3,
            ..prefix("f")
        },
    );
    assert_eq!(keys(&r), ["f2"]);
}

#[test]
fn reads_at_past_future_and_compacted_revisions() {
    let mut s = Store::new();
    put(&mut s, "k", "v1");
    put(&mut s, "k", "v2");
    put(&mut s, "k", "v3");
    let at = |s: &Store, rev| {
        s.range(&RangeRequest {
            key: "k".into(),
            revision: rev,
            ..Default::default()
        })
    };
    assert_eq!(at(&s, 2).unwrap().kvs[0].value, b"v1");
    assert_eq!(
        at(&s, 2).unwrap().revision,
        4,
        "the header carries the current revision"
    );
    assert_eq!(at(&s, 5).unwrap_err(), KvError::FutureRevision);
    s.compact(3).unwrap();
    assert_eq!(
        at(&s, 2).unwrap_err().to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(
        at(&s, 3).unwrap().kvs[0].value,
        b"v2",
        "reading exactly at the compaction point works"
    );
    assert_eq!(s.compact(3).unwrap_err(), KvError::Compacted);
    assert_eq!(s.compact(99).unwrap_err(), KvError::FutureRevision);
    assert_eq!(s.revision(), 4, "compaction creates no revision");
}

#[test]
fn compaction_keeps_latest_versions_and_drops_deleted_keys() {
    let mut s = Store::new();
    put(&mut s, "keep", "old");
    put(&mut s, "keep", "new");
    put(&mut s, "gone", "x");
    s.delete_range(&DeleteRangeRequest {
        key: "gone".into(),
        ..Default::default()
    })
    .unwrap();
    s.compact(s.revision()).unwrap();
    assert_eq!(get(&s, "keep").unwrap().value, b"new");
    assert_eq!(get(&s, "gone"), None);
    assert_eq!(
        range(
            &s,
            RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            }
        )
        .count,
        1
    );
    assert_eq!(
        s.stored_keys(),
        1,
        "a key deleted before the compaction point is forgotten"
    );
}

#[test]
fn put_options_and_their_errors() {
    let mut s = Store::new();
    let e = |r: PutRequest, s: &mut Store| s.put(&r).unwrap_err().to_string();
    assert_eq!(
        e(PutRequest::default(), &mut s),
        "etcdserver: key is not provided"
    );
    let ignore = PutRequest {
        key: "k".into(),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(e(ignore.clone(), &mut s), "etcdserver: key not found");
    assert_eq!(
        e(
            PutRequest {
                key: "k".into(),
                lease: 7,
                ..Default::default()
            },
            &mut s
        ),
        "etcdserver: requested lease not found"
    );
    assert_eq!(s.revision(), 1, "failed requests change nothing");
    s.lease_grant(7, 60).unwrap();
    put(&mut s, "k", "v");
    let r = s
        .put(&PutRequest {
            key: "k".into(),
            lease: 7,
            prev_kv: true,
            ..ignore.clone()
        })
        .unwrap();
    assert_eq!(r.prev_kv.unwrap().value, b"v");
    let kv = get(&s, "k").unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.lease),
        (&b"v"[..], 7),
        "ignore_value keeps the value"
    );
    let keep_lease = PutRequest {
        key: "k".into(),
        value: "w".into(),
        ignore_lease: true,
        ..Default::default()
    };
    s.put(&keep_lease).unwrap();
    assert_eq!(get(&s, "k").unwrap().lease, 7);
    assert_eq!(
        e(
            PutRequest {
                value: "x".into(),
                ..ignore
            },
            &mut s
        ),
        "etcdserver: value is provided"
    );
    assert_eq!(
        e(
            PutRequest {
                lease: 7,
                ..keep_lease
            },
            &mut s
        ),
        "etcdserver: lease is provided"
    );
}

#[test]
fn delete_returns_count_and_previous_values() {
    let mut s = Store::new();
    for k in ["d1", "d2", "e"] {
        put(&mut s, k, k);
    }
    let r = s
        .delete_range(&DeleteRangeRequest {
            prev_kv: true,
            key: "d".into(),
            range_end: "e".into(),
        })
        .unwrap();
    assert_eq!((r.deleted, r.prev_kvs.len(), r.revision), (2, 2, 5));
    assert_eq!(r.prev_kvs[0].value, b"d1");
}

fn cmp(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare {
        result,
        target,
        key: key.into(),
        range_end: vec![],
    }
}

fn put_op(k: &str, v: &str) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    })
}

#[test]
fn txn_compares_on_every_target() {
    let mut s = Store::new();
    put(&mut s, "k", "v1"); // create 2 mod 2 version 1
    put(&mut s, "k", "v2"); // mod 3 version 2
    let ok = |s: &mut Store, c: Compare| {
        s.txn(&TxnRequest {
            compare: vec![c],
            ..Default::default()
        })
        .unwrap()
        .succeeded
    };
    use CompareResult::*;
    use CompareTarget::*;
    assert!(ok(&mut s, cmp("k", Equal, Value("v2".into()))));
    assert!(ok(&mut s, cmp("k", Greater, Value("v1".into()))));
    assert!(ok(&mut s, cmp("k", Equal, Version(2))));
    assert!(ok(&mut s, cmp("k", Less, Version(3))));
    assert!(ok(&mut s, cmp("k", Equal, Create(2))));
    assert!(ok(&mut s, cmp("k", NotEqual, Mod(2))));
    assert!(ok(&mut s, cmp("k", Equal, Lease(0))));
    assert!(
        !ok(&mut s, cmp("missing", Equal, Value(vec![]))),
        "a value compare on a missing key is false"
    );
    assert!(!ok(&mut s, cmp("missing", NotEqual, Value("x".into()))));
    assert!(
        ok(&mut s, cmp("missing", Equal, Version(0))),
        "other targets compare a missing key as 0"
    );
    assert!(ok(&mut s, cmp("missing", Equal, Create(0))));
}

#[test]
fn txn_branches_nesting_and_read_your_writes() {
    let mut s = Store::new();
    put(&mut s, "lock", "me");
    let t = TxnRequest {
        compare: vec![cmp(
            "lock",
            CompareResult::Equal,
            CompareTarget::Value("other".into()),
        )],
        success: vec![put_op("never", "x")],
        failure: vec![
            put_op("q/1", "a"),
            RequestOp::Range(prefix("q/")),
            RequestOp::Txn(TxnRequest {
                compare: vec![cmp(
                    "q/1",
                    CompareResult::Equal,
                    CompareTarget::Value("a".into()),
                )],
                success: vec![put_op("q/2", "b")],
                failure: vec![],
            }),
        ],
    };
    let r = s.txn(&t).unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.revision, 3);
    match &r.responses[1] {
        ResponseOp::Range(rr) => assert_eq!(
            keys(rr),
            ["q/1"],
            "a read after a put in the same txn sees it"
        ),
        other => panic!("{other:?}"),
    }
    match &r.responses[2] {
        ResponseOp::Txn(n) => assert!(n.succeeded && n.revision == 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(get(&s, "q/2").unwrap().mod_revision, 3);
    assert_eq!(get(&s, "never"), None);
}

#[test]
fn txn_validation_errors_change_nothing() {
    let mut s = Store::new();
    put(&mut s, "k", "v");
    let dup = TxnRequest {
        success: vec![put_op("a", "1"), put_op("a", "2")],
        ..Default::default()
    };
    assert_eq!(
        s.txn(&dup).unwrap_err().to_string(),
        "etcdserver: duplicate key given in txn request"
    );
    let put_in_delete = TxnRequest {
        success: vec![
            put_op("b/1", "1"),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: "b/".into(),
                range_end: "b0".into(),
                prev_kv: false,
            }),
        ],
        ..Default::default()
    };
    assert_eq!(s.txn(&put_in_delete).unwrap_err(), KvError::DuplicateKey);
    let many = TxnRequest {
        success: (0..=MAX_TXN_OPS)
            .map(|i| put_op(&format!("m{i}"), "v"))
            .collect(),
        ..Default::default()
    };
    assert_eq!(
        s.txn(&many).unwrap_err().to_string(),
        "etcdserver: too many operations in txn request"
    );
    // A runtime failure halfway rolls back the earlier writes of the txn.
    let half = TxnRequest {
        success: vec![
            put_op("x", "1"),
            RequestOp::Put(PutRequest {
                key: "y".into(),
                lease: 99,
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    assert_eq!(s.txn(&half).unwrap_err(), KvError::LeaseNotFound);
    assert_eq!(get(&s, "x"), None);
    assert_eq!(s.revision(), 2);
    let future = TxnRequest {
        success: vec![RequestOp::Range(RangeRequest {
            key: "k".into(),
            revision: 50,
            ..Default::default()
        })],
        ..Default::default()
    };
    assert_eq!(s.txn(&future).unwrap_err(), KvError::FutureRevision);
}

/// A txn whose delete succeeded before a later operation failed puts every deleted key
/// back, with its history, bytes and the revision as they were.
#[test]
fn a_failed_txn_restores_the_keys_its_delete_removed() {
    let mut s = Store::new();
    for k in ["p/a", "p/b", "p/c"] {
        put(&mut s, k, "v");
    }
    put(&mut s, "p/b", "w");
    let (rev, bytes) = (s.revision(), s.approx_bytes());
    let before = range(&s, prefix("p/"));
    let t = TxnRequest {
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: "p/".into(),
                range_end: "p0".into(),
                ..Default::default()
            }),
            RequestOp::Put(PutRequest {
                key: "q".into(),
                lease: 7,
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    assert_eq!(s.txn(&t).unwrap_err(), KvError::LeaseNotFound);
    assert_eq!((s.revision(), s.approx_bytes()), (rev, bytes));
    assert_eq!(range(&s, prefix("p/")), before);
    let older = range(
        &s,
        RangeRequest {
            revision: rev - 1,
            ..prefix("p/b")
        },
    );
    assert_eq!(older.kvs[0].value, b"v", "the older version is still there");
    // The same delete on its own then removes all three at the next revision.
    let d = s
        .delete_range(&DeleteRangeRequest {
            key: "p/".into(),
            range_end: "p0".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((d.deleted, d.revision), (3, rev + 1));
    assert_eq!(range(&s, prefix("p/")).count, 0);
}

#[test]
fn hash_snapshot_and_idempotent_apply() {
    let reqs = [
        Request::Put(PutRequest {
            key: "a".into(),
            value: "1".into(),
            ..Default::default()
        }),
        Request::Put(PutRequest {
            key: "b".into(),
            value: "2".into(),
            ..Default::default()
        }),
        Request::DeleteRange(DeleteRangeRequest {
            key: "a".into(),
            ..Default::default()
        }),
        Request::Compact(3),
    ];
    let mut s1 = Store::new();
    let mut s2 = Store::new();
    for (i, r) in reqs.iter().enumerate() {
        assert!(s1.apply(i as u64 + 1, r.clone()).unwrap().is_ok());
        s2.apply(i as u64 + 1, r.clone());
        assert_eq!(
            s2.apply(i as u64 + 1, r.clone()),
            None,
            "an index applies once"
        );
    }
    assert_eq!(s1, s2);
    assert_eq!(s1.hash(s1.revision()), s2.hash(s2.revision()));
    // An applied Compact leaves its history to compact_step; what a snapshot holds and
    // the hash do not depend on whether it has run.
    assert!(s1.compaction_pending());
    let (snap, hash) = (s1.snapshot(), s1.hash(s1.revision()));
    assert!(s1.compact_step(usize::MAX));
    assert_eq!((s1.snapshot(), s1.hash(s1.revision())), (snap, hash));
    let restored = Store::restore(&s1.snapshot()).unwrap();
    assert_eq!(restored, s1);
    assert_eq!(restored.applied_index(), 4);
    let mut other = s1.clone();
    put(&mut other, "c", "3");
    assert_ne!(other.hash(other.revision()), s1.hash(s1.revision()));
    let mut bad = s1.snapshot();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    assert!(Store::restore(&bad).is_err());
    assert!(Store::restore(&[]).is_err());
    assert!(Store::restore(&s1.snapshot()[..10]).is_err());
}

#[test]
fn approx_bytes_follows_writes_rollbacks_compaction_and_restore() {
    let mut s = Store::new();
    assert_eq!(s.approx_bytes(), 0);
    put(&mut s, "a", "12345");
    let one = s.approx_bytes();
    assert!(one >= 6, "{one}");
    put(&mut s, "a", "12345");
    assert_eq!(s.approx_bytes(), 2 * one, "two versions of the same size");
    // A failed txn rolls its writes back, and their bytes with them.
    let dup = TxnRequest {
        success: vec![put_op("b", "x"), put_op("b", "y")],
        ..Default::default()
    };
    assert_eq!(s.txn(&dup), Err(KvError::DuplicateKey));
    assert_eq!(s.approx_bytes(), 2 * one);
    s.compact(s.revision()).unwrap();
    assert_eq!(s.approx_bytes(), one, "compaction dropped the old version");
    let back = Store::restore(&s.snapshot()).unwrap();
    assert_eq!(back.approx_bytes(), one);
}

/// A compaction dropped a few keys at a time, with writes and a second compaction
/// between the steps, ends with the store a whole compaction leaves; reads, hashes and
/// byte counts agree at every step.
#[test]
fn a_compaction_in_steps_ends_where_a_whole_one_does() {
    let all = || RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    for step in [1, 2, 7, 1000] {
        let (mut stepped, mut whole) = (Store::new(), Store::new());
        for s in [&mut stepped, &mut whole] {
            for round in 0..3 {
                for k in 0..30 {
                    put(s, &format!("k{k:02}"), &format!("{round}"));
                }
            }
            for k in (0..30).step_by(4) {
                s.delete_range(&DeleteRangeRequest {
                    key: format!("k{k:02}").into(),
                    ..Default::default()
                })
                .unwrap();
            }
        }
        let rev = stepped.revision() - 5;
        stepped.begin_compaction(rev).unwrap();
        whole.compact(rev).unwrap();
        let mut n = 0;
        while !stepped.compact_step(step) {
            n += 1;
            for s in [&mut stepped, &mut whole] {
                put(s, &format!("a{n:03}"), "new");
                put(s, &format!("k{:02}", (n * 3) % 30), "over");
                s.delete_range(&DeleteRangeRequest {
                    key: format!("k{:02}", (n * 7) % 30).into(),
                    ..Default::default()
                })
                .unwrap();
            }
            if n == 4 {
                let again = stepped.revision() - 1;
                stepped.begin_compaction(again).unwrap();
                whole.compact(again).unwrap();
            }
            assert_eq!(range(&stepped, all()), range(&whole, all()));
            let r = stepped.revision();
            assert_eq!(stepped.hash(r), whole.hash(r));
            assert_eq!(stepped.snapshot(), whole.snapshot());
        }
        assert!(n > 0 || step == 1000, "step {step}: took several steps");
        assert!(!stepped.compaction_pending());
        let recounted = Store::restore(&stepped.snapshot()).unwrap().approx_bytes();
        assert_eq!(stepped.approx_bytes(), recounted, "step {step}");
        assert_eq!(stepped, whole, "step {step}");
    }
}
