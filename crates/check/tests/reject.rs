//! Planted bugs must be caught and attributed to the right key.

mod common;

use check::{check, Budget, KvModel, KvOutput, Verdict};
use common::*;

#[test]
fn stale_read() {
    let h = [
        done(1, put("x", 1), 0, 10, KvOutput::Put),
        done(2, get("x"), 20, 30, read(None)),
    ];
    let v = assert_bad(&h, "x");
    assert_eq!(v.linearized, vec![0]);
    assert_eq!(v.stuck, vec![1]);
    assert_eq!(v.deadline, Some(1));
    assert_eq!(v.state, Some(1));
    // Also when the write was not the first thing that happened.
    assert_bad(
        &[
            done(1, put("x", 1), 0, 10, KvOutput::Put),
            done(1, put("x", 2), 11, 12, KvOutput::Put),
            done(2, get("x"), 20, 30, read(Some(1))),
        ],
        "x",
    );
}

#[test]
fn stale_read_just_after_touching() {
    // One tick later than `touching_intervals_are_concurrent`: now illegal.
    assert_bad(
        &[
            done(1, put("x", 1), 0, 10, KvOutput::Put),
            done(2, get("x"), 11, 20, read(None)),
        ],
        "x",
    );
}

#[test]
fn lost_write() {
    assert_bad(
        &[
            done(1, put("x", 1), 0, 10, KvOutput::Put),
            done(2, put("x", 2), 20, 30, KvOutput::Put),
            done(3, get("x"), 40, 50, read(Some(1))),
            done(3, get("x"), 60, 70, read(Some(1))),
        ],
        "x",
    );
}

#[test]
fn read_of_value_never_written() {
    let v = assert_bad(&[done(1, get("x"), 0, 1, read(Some(42)))], "x");
    assert!(v.linearized.is_empty());
    assert_eq!(v.stuck, vec![0]);
    assert_bad(
        &[
            done(1, put("x", 1), 0, 10, KvOutput::Put),
            done(2, get("x"), 0, 10, read(Some(7))),
        ],
        "x",
    );
}

#[test]
fn cas_succeeded_when_it_should_not_have() {
    assert_bad(
        &[
            done(1, put("x", 1), 0, 10, KvOutput::Put),
            done(2, cas("x", Some(2), 3), 20, 30, OK),
        ],
        "x",
    );
    // Two racing CASes from the same expected value cannot both win.
    assert_bad(
        &[
            done(1, cas("x", None, 1), 0, 10, OK),
            done(2, cas("x", None, 2), 0, 10, OK),
        ],
        "x",
    );
}

#[test]
fn cas_failed_when_it_should_have_succeeded() {
    assert_bad(
        &[
            done(1, put("x", 1), 0, 10, KvOutput::Put),
            done(2, cas("x", Some(1), 3), 20, 30, FAIL),
        ],
        "x",
    );
}

#[test]
fn reads_new_then_old() {
    assert_bad(
        &[
            done(1, put("x", 1), 0, 100, KvOutput::Put),
            done(2, get("x"), 10, 20, read(Some(1))),
            done(3, get("x"), 30, 40, read(None)),
        ],
        "x",
    );
}

#[test]
fn indeterminate_write_seen_before_its_invocation() {
    assert_bad(
        &[
            done(2, get("x"), 0, 10, read(Some(5))),
            lost(1, put("x", 5), 20),
        ],
        "x",
    );
}

#[test]
fn wrong_kind_of_response() {
    assert_bad(&[done(1, put("x", 1), 0, 10, read(None))], "x");
}

#[test]
fn first_failing_key_in_key_order() {
    let h = [
        done(1, put("z", 1), 0, 10, KvOutput::Put),
        done(2, get("z"), 20, 30, read(None)),
        done(1, put("a", 1), 0, 10, KvOutput::Put),
        done(2, get("a"), 20, 30, read(Some(1))),
        done(3, get("m"), 0, 1, read(Some(9))),
    ];
    let v = assert_bad(&h, "m");
    assert_eq!(v.stuck, vec![4]);
    // Same answer whatever order the history is listed in.
    let mut rev = h.to_vec();
    rev.reverse();
    assert_bad(&rev, "m");
}

#[test]
fn violation_display_lists_operations() {
    let h = [
        done(7, put("x", 1), 0, 10, KvOutput::Put),
        done(8, get("x"), 20, 30, read(None)),
    ];
    let v = assert_bad(&h, "x");
    let text = v.to_string();
    assert!(text.contains("\"x\""), "{text}");
    assert!(text.contains("#0 client 7: Put"), "{text}");
    assert!(text.contains("#1 client 8: Get"), "{text}");
    assert!(text.contains("Get(None)"), "{text}");
    assert!(text.contains("[call 20, ret 30]"), "{text}");
    assert_eq!(v.operation(1).map(|o| o.client), Some(8));
}

#[test]
fn deterministic_result() {
    let h = [
        done(1, put("x", 1), 0, 50, KvOutput::Put),
        done(2, put("x", 2), 0, 50, KvOutput::Put),
        done(3, put("x", 3), 0, 50, KvOutput::Put),
        done(4, get("x"), 60, 70, read(Some(4))),
    ];
    let a = format!("{:?}", check(&KvModel, &h, Budget::default()));
    for _ in 0..5 {
        assert_eq!(a, format!("{:?}", check(&KvModel, &h, Budget::default())));
    }
}

#[test]
fn odd_input_does_not_panic() {
    // Return before call.
    let h = [done(1, put("x", 1), 10, 5, KvOutput::Put)];
    assert!(matches!(
        check(&KvModel, &h, Budget::default()),
        Verdict::Unknown { .. }
    ));
    // Extreme times.
    assert_ok(&[
        done(1, put("x", 1), u64::MAX, u64::MAX, KvOutput::Put),
        done(2, get("x"), 0, u64::MAX, read(Some(1))),
    ]);
    // An output without a return time: it happened, at some point after its call.
    let mut odd = lost(1, put("x", 1), 5);
    odd.output = Some(KvOutput::Put);
    assert_ok(&[odd.clone(), done(2, get("x"), 10, 11, read(Some(1)))]);
    assert_ok(&[odd.clone(), done(2, get("x"), 10, 11, read(None))]);
    assert_bad(&[odd, done(2, get("x"), 0, 1, read(Some(1)))], "x");
    // A zero budget.
    let h = [done(1, get("x"), 0, 1, read(None))];
    assert!(matches!(
        check(&KvModel, &h, Budget { max_steps: 0 }),
        Verdict::Unknown { .. }
    ));
}
