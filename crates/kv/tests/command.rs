//! The command codec and the state-machine contract on `Store`.

use engine::{Index, StateMachine};
use kv::command::{decode, encode, MAX_NESTING};
use kv::*;

fn samples() -> Vec<Request> {
    let put = PutRequest {
        key: b"k".to_vec(),
        value: vec![7; 300],
        lease: -3,
        prev_kv: true,
        ignore_value: false,
        ignore_lease: true,
    };
    let range = RangeRequest {
        key: b"a".to_vec(),
        range_end: vec![0],
        limit: 10,
        revision: i64::MAX,
        sort_order: SortOrder::Descend,
        sort_target: SortTarget::Mod,
        keys_only: true,
        count_only: false,
        min_mod_revision: 1,
        max_mod_revision: 2,
        min_create_revision: 3,
        max_create_revision: i64::MIN,
    };
    let del = DeleteRangeRequest {
        key: b"x".to_vec(),
        range_end: b"y".to_vec(),
        prev_kv: true,
    };
    let inner = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::NotEqual,
            target: CompareTarget::Value(b"v".to_vec()),
            key: b"k".to_vec(),
            range_end: vec![],
        }],
        success: vec![RequestOp::Put(put.clone())],
        failure: vec![],
    };
    let txn = TxnRequest {
        compare: vec![
            Compare {
                result: CompareResult::Greater,
                target: CompareTarget::Mod(5),
                key: b"k".to_vec(),
                range_end: b"z".to_vec(),
            },
            Compare {
                result: CompareResult::Less,
                target: CompareTarget::Lease(-1),
                key: b"q".to_vec(),
                range_end: vec![],
            },
        ],
        success: vec![RequestOp::Range(range.clone()), RequestOp::Txn(inner)],
        failure: vec![RequestOp::DeleteRange(del.clone())],
    };
    vec![
        Request::Put(put),
        Request::Range(range),
        Request::DeleteRange(del),
        Request::Txn(txn),
        Request::Compact(42),
    ]
}

#[test]
fn every_request_round_trips() {
    for r in samples() {
        assert_eq!(decode(&encode(&r)).unwrap(), r);
    }
}

#[test]
fn truncation_trailing_bytes_and_garbage_are_refused() {
    for r in samples() {
        let b = encode(&r);
        for cut in 0..b.len() {
            assert_eq!(
                decode(&b[..cut]),
                Err(KvError::Corrupt),
                "{r:?} cut at {cut}"
            );
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(KvError::Corrupt));
    }
    for junk in [
        &b""[..],
        b"\x02\x01",
        b"\x01\x09",
        b"\x01\x03\xff\xff\xff\xff\x0f",
    ] {
        assert_eq!(decode(junk), Err(KvError::Corrupt), "{junk:?}");
    }
}

#[test]
fn nesting_is_bounded() {
    let mut t = TxnRequest::default();
    for _ in 1..MAX_NESTING {
        t = TxnRequest {
            success: vec![RequestOp::Txn(t)],
            ..TxnRequest::default()
        };
    }
    assert!(decode(&encode(&Request::Txn(t.clone()))).is_ok());
    let deeper = TxnRequest {
        success: vec![RequestOp::Txn(t)],
        ..TxnRequest::default()
    };
    assert_eq!(
        decode(&encode(&Request::Txn(deeper))),
        Err(KvError::Corrupt)
    );
}

#[test]
fn a_command_that_does_not_decode_changes_nothing_but_the_applied_index() {
    let mut s = Store::new();
    let put = encode(&Request::Put(PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    }));
    assert!(matches!(
        StateMachine::apply(&mut s, Index(1), &put),
        Some(Ok(Response::Put(_)))
    ));
    let before = s.digest();
    assert_eq!(s.validate(b"garbage"), Err(KvError::Corrupt));
    assert_eq!(s.validate(&[]), Err(KvError::Corrupt));
    assert_eq!(
        StateMachine::apply(&mut s, Index(2), b"garbage"),
        Some(Err(KvError::Corrupt))
    );
    assert_eq!(s.digest(), before);
    assert_eq!(StateMachine::applied_index(&s), Index(2));
    // Replays are refused as already applied.
    assert_eq!(StateMachine::apply(&mut s, Index(2), &put), None);
    s.apply_noop(Index(3));
    let mut t = Store::new();
    t.restore(&StateMachine::snapshot(&s)).unwrap();
    assert_eq!(
        (t.digest(), StateMachine::applied_index(&t)),
        (before, Index(3))
    );
    assert!(t.restore(b"not a snapshot").is_err());
    assert_eq!(
        t.digest(),
        before,
        "a refused restore leaves the state alone"
    );
}
