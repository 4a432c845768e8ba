//! Crash-point tests: run a scripted sequence of writes and syncs, crash after every
//! step (each crash keeping a random prefix of unsynced writes, tearing the last), and
//! check that everything reported durable is there and nothing past a torn record is
//! returned. Also: fail-stop on I/O errors, misdirected writes.

use raft::{
    Entry, EntryKind, EntryWrite, HardState, IoId, LogIndex, PersistRequest, Snapshot,
    SnapshotMeta, SnapshotWrite, Term,
};
use raft_storage::{DiskStorage, RaftStorage};
use storage::{DiskFaults, SimDisk, StorageError, StorageOptions};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        kind: EntryKind::Command(vec![index as u8; 40].into()),
    }
}

#[derive(Clone)]
enum Step {
    Write { term: u64, from: u64, to: u64 },
    Snapshot(u64),
    Sync,
}

fn script() -> Vec<Step> {
    use Step::*;
    vec![
        Write {
            term: 1,
            from: 1,
            to: 3,
        },
        Sync,
        Write {
            term: 1,
            from: 4,
            to: 5,
        },
        Write {
            term: 2,
            from: 6,
            to: 9,
        },
        Sync,
        Write {
            term: 2,
            from: 10,
            to: 14,
        },
        Snapshot(8),
        Write {
            term: 3,
            from: 15,
            to: 20,
        },
        Sync,
        Write {
            term: 3,
            from: 21,
            to: 40,
        },
        Write {
            term: 4,
            from: 41,
            to: 41,
        },
        Sync,
        Write {
            term: 4,
            from: 42,
            to: 60,
        },
    ]
}

fn request(step: &Step) -> Option<PersistRequest> {
    match step {
        Step::Write { term, from, to } => Some(PersistRequest {
            io: IoId(1),
            hard_state: Some(HardState {
                term: Term(*term),
                vote: None,
                commit: LogIndex(0),
            }),
            snapshot: None,
            entries: Some(EntryWrite {
                from: LogIndex(*from),
                entries: (*from..=*to).map(|i| entry(i, *term)).collect(),
            }),
        }),
        Step::Snapshot(i) => Some(PersistRequest {
            io: IoId(1),
            hard_state: None,
            snapshot: Some(SnapshotWrite::Store(Snapshot {
                meta: SnapshotMeta {
                    index: LogIndex(*i),
                    term: Term(2),
                },
                data: vec![7; 100].into(),
            })),
            entries: None,
        }),
        Step::Sync => None,
    }
}

/// What a crash after `steps` may legitimately leave: at least the synced state, at
/// most the issued one.
struct Bounds {
    synced_last: u64,
    synced_term: u64,
    issued_last: u64,
    issued_term: u64,
    snapshot: u64,
}

fn run_until(steps: &[Step], s: &mut DiskStorage<SimDisk>) -> Bounds {
    let mut b = Bounds {
        synced_last: 0,
        synced_term: 0,
        issued_last: 0,
        issued_term: 0,
        snapshot: 0,
    };
    for step in steps {
        match step {
            Step::Sync => {
                s.sync().unwrap();
                b.synced_last = b.issued_last;
                b.synced_term = b.issued_term;
            }
            Step::Snapshot(i) => {
                s.write(&request(step).unwrap()).unwrap();
                // Saving a snapshot syncs the WAL first and makes the snapshot durable.
                b.synced_last = b.issued_last;
                b.synced_term = b.issued_term;
                b.snapshot = *i;
            }
            Step::Write { term, to, .. } => {
                s.write(&request(step).unwrap()).unwrap();
                b.issued_last = *to;
                b.issued_term = *term;
            }
        }
    }
    b
}

#[test]
fn every_crash_point_keeps_what_was_synced_and_nothing_torn() {
    let steps = script();
    for k in 0..=steps.len() {
        for seed in 0..40 {
            let opts = StorageOptions {
                segment_bytes: 700,
                preallocate: seed % 2 == 0,
            };
            let (mut s, _) = DiskStorage::open(SimDisk::new(seed), opts).unwrap();
            let b = run_until(&steps[..k], &mut s);
            s.backend_mut().crash();
            let r = s
                .recover()
                .unwrap_or_else(|e| panic!("crash after step {k}, seed {seed}: {e}"));
            let ctx = format!("crash after step {k}, seed {seed}");
            let first = r.snapshot.as_ref().map_or(0, |x| x.meta.index.0);
            assert!(first >= b.snapshot, "{ctx}: durable snapshot lost");
            let last = r.entries.last().map_or(first, |e| e.index.0);
            assert!(
                last >= b.synced_last,
                "{ctx}: synced entries lost ({last} < {})",
                b.synced_last
            );
            assert!(
                last <= b.issued_last.max(first),
                "{ctx}: entries that were never written"
            );
            for (i, e) in r.entries.iter().enumerate() {
                assert_eq!(e.index.0, first + 1 + i as u64, "{ctx}: gap");
                let term = match e.index.0 {
                    1..=5 => 1,
                    6..=14 => 2,
                    15..=40 => 3,
                    _ => 4,
                };
                assert_eq!(
                    *e,
                    entry(e.index.0, term),
                    "{ctx}: wrong content at {}",
                    e.index
                );
            }
            let t = r.hard_state.term.0;
            assert!(
                t >= b.synced_term && t <= b.issued_term,
                "{ctx}: hard state term {t}"
            );
            assert!(
                r.entries.iter().all(|e| e.term.0 <= t),
                "{ctx}: entry newer than the durable term"
            );
        }
    }
}

#[test]
fn a_failed_sync_stops_the_storage_for_good() {
    let (mut s, _) = DiskStorage::open(
        SimDisk::new(3),
        StorageOptions {
            segment_bytes: 64 << 10,
            preallocate: true,
        },
    )
    .unwrap();
    let step = Step::Write {
        term: 1,
        from: 1,
        to: 2,
    };
    s.write(&request(&step).unwrap()).unwrap();
    s.sync().unwrap();
    s.backend_mut().faults = DiskFaults {
        sync_eio: 1000,
        ..DiskFaults::default()
    };
    s.write(
        &request(&Step::Write {
            term: 1,
            from: 3,
            to: 3,
        })
        .unwrap(),
    )
    .unwrap();
    let err = s.sync().unwrap_err();
    assert!(matches!(err, StorageError::Io(_)), "{err}");
    s.backend_mut().faults = DiskFaults::default();
    // Never retried: every later call reports the same failure.
    assert_eq!(s.sync(), Err(err.clone()));
    assert_eq!(
        s.write(
            &request(&Step::Write {
                term: 1,
                from: 4,
                to: 4
            })
            .unwrap()
        ),
        Err(err)
    );
    // A restarted node sees at least what was synced before the failure.
    s.backend_mut().crash();
    let r = s.recover().unwrap();
    assert!(r.entries.len() >= 2);
}

#[test]
fn no_space_is_a_clear_error() {
    let (mut s, _) = DiskStorage::open(
        SimDisk::new(4),
        StorageOptions {
            segment_bytes: 64 << 10,
            preallocate: true,
        },
    )
    .unwrap();
    s.backend_mut().faults = DiskFaults {
        write_nospace: 1000,
        ..DiskFaults::default()
    };
    s.write(
        &request(&Step::Write {
            term: 1,
            from: 1,
            to: 2,
        })
        .unwrap(),
    )
    .unwrap();
    let err = s.sync().unwrap_err();
    assert!(err.to_string().contains("no space"), "{err}");
}

#[test]
fn a_misdirected_write_is_detected_not_returned() {
    let (mut s, _) = DiskStorage::open(
        SimDisk::new(5),
        StorageOptions {
            segment_bytes: 64 << 10,
            preallocate: true,
        },
    )
    .unwrap();
    s.write(
        &request(&Step::Write {
            term: 1,
            from: 1,
            to: 3,
        })
        .unwrap(),
    )
    .unwrap();
    s.sync().unwrap();
    s.backend_mut().faults = DiskFaults {
        misdirect: 1000,
        ..DiskFaults::default()
    };
    s.write(
        &request(&Step::Write {
            term: 1,
            from: 4,
            to: 6,
        })
        .unwrap(),
    )
    .unwrap();
    s.sync().unwrap();
    s.backend_mut().faults = DiskFaults::default();
    s.write(
        &request(&Step::Write {
            term: 1,
            from: 7,
            to: 7,
        })
        .unwrap(),
    )
    .unwrap();
    s.sync().unwrap();
    match s.recover() {
        Err(StorageError::Corrupt { file, offset, .. }) => {
            assert!(file.starts_with("wal-") && offset > 0)
        }
        Ok(r) => panic!(
            "a misdirected write went unnoticed: {} entries",
            r.entries.len()
        ),
        Err(e) => panic!("unexpected error {e}"),
    }
}
