//! Linearizable histories must be accepted.

mod common;

use check::{check, Budget, KvModel, KvOutput, Operation, Verdict};
use common::*;

#[test]
fn empty_history() {
    assert_ok(&[]);
}

#[test]
fn sequential() {
    assert_ok(&[
        done(1, get("x"), 0, 1, read(None)),
        done(1, put("x", 1), 2, 3, KvOutput::Put),
        done(2, get("x"), 4, 5, read(Some(1))),
        done(1, put("x", 2), 6, 7, KvOutput::Put),
        done(2, get("x"), 8, 9, read(Some(2))),
        done(3, cas("x", Some(2), 3), 10, 11, OK),
        done(2, get("x"), 12, 13, read(Some(3))),
    ]);
}

#[test]
fn concurrent_writes_reads_see_either() {
    // Both writes overlap; concurrent reads may see them in either order.
    let writes = [
        done(1, put("x", 1), 0, 10, KvOutput::Put),
        done(2, put("x", 2), 0, 10, KvOutput::Put),
    ];
    for (a, b) in [(1, 2), (2, 1)] {
        let mut h = writes.to_vec();
        h.push(done(3, get("x"), 1, 9, read(Some(a))));
        h.push(done(4, get("x"), 1, 9, read(Some(b))));
        h.push(done(3, get("x"), 20, 21, read(Some(b))));
        assert_ok(&h);
    }
    // After both writes complete, either value may be the final one.
    for v in [1, 2] {
        let mut h = writes.to_vec();
        h.push(done(3, get("x"), 20, 21, read(Some(v))));
        h.push(done(4, get("x"), 30, 31, read(Some(v))));
        assert_ok(&h);
    }
}

#[test]
fn reads_concurrent_with_a_write() {
    assert_ok(&[
        done(1, put("x", 1), 0, 100, KvOutput::Put),
        done(2, get("x"), 10, 20, read(None)),
        done(2, get("x"), 30, 40, read(Some(1))),
        done(3, get("x"), 35, 45, read(Some(1))),
        done(2, get("x"), 110, 120, read(Some(1))),
    ]);
}

#[test]
fn touching_intervals_are_concurrent() {
    // The read starts at the very instant the write returns: closed
    // intervals make them concurrent, so the old value is allowed.
    assert_ok(&[
        done(1, put("x", 1), 0, 10, KvOutput::Put),
        done(2, get("x"), 10, 20, read(None)),
    ]);
    // Zero-length operations are fine too.
    assert_ok(&[
        done(1, put("x", 1), 5, 5, KvOutput::Put),
        done(2, get("x"), 5, 5, read(Some(1))),
        done(3, get("x"), 5, 5, read(None)),
    ]);
}

#[test]
fn cas_chains() {
    assert_ok(&[
        done(1, cas("x", None, 1), 0, 1, OK),
        done(1, cas("x", Some(1), 2), 2, 3, OK),
        done(2, cas("x", Some(1), 3), 2, 10, FAIL),
        done(1, cas("x", Some(2), 4), 4, 5, OK),
        done(3, get("x"), 11, 12, read(Some(4))),
    ]);
    // Racing CASes from the absent state: exactly one wins.
    for w in [1, 2] {
        assert_ok(&[
            done(1, cas("x", None, 1), 0, 10, if w == 1 { OK } else { FAIL }),
            done(2, cas("x", None, 2), 0, 10, if w == 2 { OK } else { FAIL }),
            done(3, get("x"), 20, 21, read(Some(w))),
        ]);
    }
}

#[test]
fn indeterminate_write_that_took_effect() {
    assert_ok(&[
        done(1, put("x", 1), 0, 10, KvOutput::Put),
        lost(2, put("x", 2), 5),
        done(3, get("x"), 20, 25, read(Some(2))),
    ]);
    // ... possibly much later than its call.
    assert_ok(&[
        done(1, put("x", 1), 0, 10, KvOutput::Put),
        lost(2, put("x", 2), 5),
        done(3, get("x"), 20, 25, read(Some(1))),
        done(3, get("x"), 30, 35, read(Some(2))),
    ]);
}

#[test]
fn indeterminate_write_that_did_not_take_effect() {
    assert_ok(&[
        done(1, put("x", 1), 0, 10, KvOutput::Put),
        lost(2, put("x", 2), 5),
        done(3, get("x"), 20, 25, read(Some(1))),
        done(3, get("x"), 30, 35, read(Some(1))),
    ]);
    assert_ok(&[
        lost(2, put("x", 2), 5),
        done(3, get("x"), 20, 25, read(None)),
    ]);
}

#[test]
fn indeterminate_write_seen_by_overlapping_read() {
    // The read was invoked before the write, but ends after the write's call.
    assert_ok(&[
        done(3, get("x"), 0, 10, read(Some(2))),
        lost(2, put("x", 2), 5),
    ]);
}

#[test]
fn indeterminate_cas_and_reads() {
    assert_ok(&[
        done(1, put("x", 1), 0, 1, KvOutput::Put),
        lost(2, cas("x", Some(1), 5), 2),
        lost(3, get("x"), 2),
        done(4, get("x"), 10, 11, read(Some(5))),
    ]);
}

#[test]
fn completed_with_unknown_output_took_effect() {
    let mut h = vec![
        Operation {
            client: 1,
            input: put("x", 1),
            call: 0,
            ret: Some(5),
            output: None,
        },
        done(2, get("x"), 10, 11, read(Some(1))),
    ];
    assert_ok(&h);
    h[1] = done(2, get("x"), 10, 11, read(None));
    assert_bad(&h, "x");
}

#[test]
fn many_keys_interleaved() {
    let mut h = Vec::new();
    for i in 0..50u64 {
        for (k, key) in ["a", "b", "c", "d"].iter().enumerate() {
            let t = i * 10 + k as u64;
            h.push(done(k as u64, put(key, i), t, t + 15, KvOutput::Put));
            h.push(done(10 + k as u64, get(key), t + 16, t + 20, read(Some(i))));
        }
    }
    assert_ok(&h);
}

#[test]
fn recorder_builds_histories() {
    let mut rec = check::Recorder::<KvModel>::new();
    assert!(rec.is_empty());
    let a = rec.invoke(1, put("x", 1), 0);
    let b = rec.invoke(2, put("x", 2), 1);
    let c = rec.invoke(3, get("x"), 2);
    assert!(rec.complete(a, KvOutput::Put, 3));
    assert!(
        !rec.complete(a, KvOutput::Put, 4),
        "double completion ignored"
    );
    assert!(
        !rec.complete(check::OpId(99), KvOutput::Put, 4),
        "unknown id ignored"
    );
    assert!(rec.complete(c, read(Some(2)), 5));
    let _ = b; // never completed: indeterminate
    let h = rec.into_history();
    assert_eq!(h.len(), 3);
    assert!(h[1].is_indeterminate() && !h[0].is_indeterminate());
    assert_eq!(
        (h[0].ret, h[2].output.clone()),
        (Some(3), Some(read(Some(2))))
    );
    assert!(check(&KvModel, &h, Budget::default()).is_linearizable());
}

#[test]
fn verdict_helpers() {
    let v: Verdict<KvModel> = check(&KvModel, &[], Budget::default());
    assert!(v.is_linearizable() && v.violation().is_none());
}
