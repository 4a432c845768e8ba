//! Piecewise snapshots taken while writes, deletes and compactions keep arriving.

use kv::*;

fn put(k: &str, v: &str) -> Request {
    Request::Put(PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    })
}

fn del(k: &str) -> Request {
    Request::DeleteRange(DeleteRangeRequest {
        key: k.into(),
        ..Default::default()
    })
}

/// Applies `r` to every store in `to` at the next index.
fn apply_all(to: &mut [&mut Store], index: &mut u64, r: Request) {
    *index += 1;
    for s in to.iter_mut() {
        s.apply(*index, r.clone());
    }
}

#[test]
fn piecewise_snapshot_is_the_store_as_it_began_while_writes_continue() {
    let mut live = Store::new();
    let mut replay = Store::new();
    let mut i = 0;
    for k in 0..120 {
        apply_all(
            &mut [&mut live, &mut replay],
            &mut i,
            put(&format!("k{k:03}"), "a"),
        );
    }
    for k in (0..120).step_by(3) {
        apply_all(
            &mut [&mut live, &mut replay],
            &mut i,
            del(&format!("k{k:03}")),
        );
    }
    for k in (0..120).step_by(2) {
        apply_all(
            &mut [&mut live, &mut replay],
            &mut i,
            put(&format!("k{k:03}"), "b"),
        );
    }
    let rev = live.revision();
    apply_all(
        &mut [&mut live, &mut replay],
        &mut i,
        Request::Compact(rev - 50),
    );
    // The compaction's history is not dropped yet in `live`; the snapshot leaves it out
    // all the same.
    assert!(live.compaction_pending());
    let mut at_start = live.clone();
    assert!(at_start.compact_step(usize::MAX));

    live.hold_history();
    let mut w = SnapshotWriter::begin(&live);
    assert_eq!(w.applied_index(), i);
    let mut round = 0;
    while !w.step(&live, 7) {
        // Between pieces: new keys (some before the cursor), overwrites, deletes, and a
        // compaction past the snapshot's revision every few rounds.
        round += 1;
        let stores = &mut [&mut live, &mut replay];
        apply_all(stores, &mut i, put(&format!("a{round}"), "new"));
        // The cursor is near key 7 * round: touch keys behind and ahead of it.
        for k in [round * 5, round * 7 + 20, round * 7 + 31] {
            apply_all(stores, &mut i, put(&format!("k{:03}", k % 120), "c"));
        }
        apply_all(
            stores,
            &mut i,
            del(&format!("k{:03}", (round * 7 + 40) % 120)),
        );
        if round % 4 == 0 {
            let rev = stores[0].revision();
            apply_all(stores, &mut i, Request::Compact(rev));
        }
    }
    assert!(round > 10, "the snapshot took several pieces ({round})");
    let snap = w.finish();
    assert_eq!(snap, at_start.snapshot(), "exactly the store as it began");
    let back = Store::restore(&snap).unwrap();
    assert_eq!(back, at_start);

    // Compaction was only deferred: once released, the live store is the same as one
    // that applied everything without a snapshot in progress.
    assert!(
        !live.compact_step(usize::MAX),
        "no step while history is held"
    );
    assert!(replay.compact_step(usize::MAX));
    assert_ne!(
        live.approx_bytes(),
        replay.approx_bytes(),
        "history was held"
    );
    assert_eq!(live.hash(live.revision()), replay.hash(replay.revision()));
    live.release_history();
    // Dropped in small steps, as a member does between rounds.
    while !live.compact_step(3) {}
    assert_eq!(live, replay);
}

#[test]
fn reads_below_a_deferred_compaction_still_fail() {
    let mut s = Store::new();
    let mut i = 0;
    for v in ["1", "2", "3"] {
        apply_all(&mut [&mut s], &mut i, put("k", v));
    }
    s.hold_history();
    let rev = s.revision();
    apply_all(&mut [&mut s], &mut i, Request::Compact(rev));
    let old = RangeRequest {
        key: b"k".to_vec(),
        revision: rev - 1,
        ..Default::default()
    };
    assert_eq!(s.range(&old), Err(KvError::Compacted));
    assert_eq!(s.compact_revision(), rev);
}
