//! One set of named tests, run against every backend: the real files and the
//! fault-injecting in-memory disk. Corruption is applied through the `Backend` API so
//! that each test means the same thing on both.

use raft::{
    Entry, EntryKind, EntryWrite, HardState, IoId, LogIndex, NodeId, PersistRequest, Recovered,
    Snapshot, SnapshotMeta, SnapshotWrite, Term,
};
use raft_storage::{save_snapshot_file, DiskStorage, RaftStorage};
use storage::{Backend, FileBackend, SimDisk, StorageError, StorageOptions};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        kind: EntryKind::Command(format!("cmd-{index}-{term}").into_bytes().into()),
    }
}

fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
    (from..=to).map(|i| entry(i, term)).collect()
}

fn hs(term: u64, vote: Option<u64>, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: vote.map(NodeId),
        commit: LogIndex(commit),
    }
}

fn req(h: Option<HardState>, from: u64, es: Vec<Entry>) -> PersistRequest {
    PersistRequest {
        io: IoId(1),
        hard_state: h,
        snapshot: None,
        entries: Some(EntryWrite {
            from: LogIndex(from),
            entries: es,
        }),
    }
}

fn meta(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta {
        index: LogIndex(index),
        term: Term(term),
    }
}

fn saved_req(index: u64, term: u64) -> PersistRequest {
    PersistRequest {
        io: IoId(1),
        hard_state: None,
        snapshot: Some(SnapshotWrite::Saved(meta(index, term))),
        entries: None,
    }
}

fn snap_req(index: u64, term: u64, data: &[u8]) -> PersistRequest {
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            index: LogIndex(index),
            term: Term(term),
        },
        data: data.to_vec().into(),
    };
    PersistRequest {
        io: IoId(1),
        hard_state: None,
        snapshot: Some(SnapshotWrite::Store(snapshot)),
        entries: None,
    }
}

fn small() -> StorageOptions {
    StorageOptions {
        segment_bytes: 512,
        preallocate: true,
    }
}

/// Test-sized segments, preallocated as in production.
fn opts() -> StorageOptions {
    StorageOptions {
        segment_bytes: 64 << 10,
        preallocate: true,
    }
}

/// Names of WAL segments in a backend.
fn segments<B: Backend>(b: &mut B) -> Vec<String> {
    b.list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("wal-"))
        .collect()
}

/// Each conformance test, generic over the backend.
mod suite {
    use super::*;

    pub fn empty_storage_recovers_nothing<B: Backend>(b: B) {
        let (_, r) = DiskStorage::open(b, opts()).unwrap();
        assert_eq!(r.hard_state, HardState::default());
        assert!(r.snapshot.is_none() && r.entries.is_empty());
    }

    pub fn synced_entries_and_hard_state_survive_reopen<B: Backend>(b: B) {
        let (mut s, _) = DiskStorage::open(b, opts()).unwrap();
        s.write(&req(Some(hs(1, Some(2), 0)), 1, entries(1, 3, 1)))
            .unwrap();
        s.write(&req(Some(hs(2, None, 3)), 4, entries(4, 5, 2)))
            .unwrap();
        s.sync().unwrap();
        let r = s.recover().unwrap();
        assert_eq!(r.hard_state, hs(2, None, 3));
        assert_eq!(r.entries, [entries(1, 3, 1), entries(4, 5, 2)].concat());
    }

    pub fn a_prepared_segment_is_renamed_into_place_at_rotation<B: Backend>(b: B) {
        let log_files = |b: &mut B| {
            let mut n = segments(b);
            n.retain(|n| n.ends_with(".log"));
            n
        };
        let (mut s, _) = DiskStorage::open(b, small()).unwrap();
        let mut next = 1;
        let asked = loop {
            s.write(&req(None, next, entries(next, next, 1))).unwrap();
            s.sync().unwrap();
            next += 1;
            if let Some(bytes) = s.segment_to_prepare() {
                break bytes;
            }
        };
        assert_eq!(asked, 512);
        assert_eq!(s.segment_to_prepare(), None, "asked once until it reports");
        storage::prepare_segment(s.backend_mut(), asked).unwrap();
        s.segment_prepared(true);
        let files = log_files(s.backend_mut()).len();
        while log_files(s.backend_mut()).len() == files {
            s.write(&req(None, next, entries(next, next, 1))).unwrap();
            s.sync().unwrap();
            next += 1;
        }
        let names = s.backend_mut().list().unwrap();
        assert!(
            !names.iter().any(|n| n == storage::PREPARED_SEGMENT),
            "the rotation zero-filled a new file instead of using the prepared one"
        );
        assert_eq!(s.recover().unwrap().entries, entries(1, next - 1, 1));
        // A prepared file nobody used yet (a crash before the rotation) is no segment.
        storage::prepare_segment(s.backend_mut(), asked).unwrap();
        assert_eq!(s.recover().unwrap().entries, entries(1, next - 1, 1));
    }

    pub fn conflicting_suffix_is_replaced<B: Backend>(b: B) {
        let (mut s, _) = DiskStorage::open(b, opts()).unwrap();
        s.write(&req(None, 1, entries(1, 10, 1))).unwrap();
        s.sync().unwrap();
        s.write(&req(Some(hs(3, None, 5)), 6, entries(6, 7, 3)))
            .unwrap();
        s.sync().unwrap();
        let r = s.recover().unwrap();
        assert_eq!(r.entries, [entries(1, 5, 1), entries(6, 7, 3)].concat());
    }

    pub fn empty_write_truncates<B: Backend>(b: B) {
        let (mut s, _) = DiskStorage::open(b, opts()).unwrap();
        s.write(&req(None, 1, entries(1, 6, 1))).unwrap();
        s.write(&req(None, 4, vec![])).unwrap();
        s.sync().unwrap();
        assert_eq!(s.recover().unwrap().entries, entries(1, 3, 1));
    }

    pub fn snapshot_compacts_the_log<B: Backend>(b: B) {
        let (mut s, _) = DiskStorage::open(b, small()).unwrap();
        for i in 1..=60 {
            s.write(&req(Some(hs(1, None, i - 1)), i, vec![entry(i, 1)]))
                .unwrap();
            s.sync().unwrap();
        }
        let before = segments(s.backend_mut()).len();
        assert!(before > 3, "small segments rotate: {before}");
        s.write(&snap_req(50, 1, b"state at 50")).unwrap();
        s.sync().unwrap();
        let after = segments(s.backend_mut()).len();
        assert!(
            after < before,
            "segments covered by the snapshot are removed ({before} -> {after})"
        );
        let r = s.recover().unwrap();
        assert_eq!(r.snapshot.map(|x| x.meta.index), Some(LogIndex(50)));
        assert_eq!(r.entries, entries(51, 60, 1));
        assert_eq!(
            r.hard_state,
            hs(1, None, 59),
            "hard state survives segment removal"
        );
        let chunk = s.read_snapshot_chunk(meta(50, 1), 6, 5).unwrap().unwrap();
        assert_eq!(chunk.data, b"at 50".to_vec());
        assert_eq!(chunk.checksum, crc32c::crc32c(b"state at 50"));
        let tail = s.read_snapshot_chunk(meta(50, 1), 9, 100).unwrap().unwrap();
        assert_eq!(
            tail.data,
            b"50".to_vec(),
            "a chunk stops at the end of the data"
        );
    }

    /// The newest snapshot replaces the log; the one before it stays readable for a
    /// transfer under way, and older ones go.
    pub fn newer_snapshot_replaces_older<B: Backend>(b: B) {
        let (mut s, _) = DiskStorage::open(b, opts()).unwrap();
        s.write(&req(None, 1, entries(1, 30, 1))).unwrap();
        s.write(&snap_req(10, 1, b"ten")).unwrap();
        s.write(&snap_req(20, 1, b"twenty")).unwrap();
        s.write(&snap_req(30, 1, b"thirty")).unwrap();
        s.sync().unwrap();
        let snaps = snapshot_files(s.backend_mut());
        assert_eq!(snaps.len(), 2, "{snaps:?}");
        assert_eq!(s.read_snapshot_chunk(meta(10, 1), 0, 9).unwrap(), None);
        let previous = s.read_snapshot_chunk(meta(20, 1), 0, 9).unwrap().unwrap();
        assert_eq!(previous.data, b"twenty".to_vec());
        let r = s.recover().unwrap();
        assert_eq!(r.snapshot.unwrap().data.to_vec(), b"thirty".to_vec());
        assert!(r.entries.is_empty());
    }

    /// Chunks are read straight from the file: a damaged header is an error, and
    /// damaged data no longer matches the checksum that travels with it.
    pub fn damaged_snapshot_chunks_are_detectable<B: Backend>(b: B) {
        let (mut s, _) = DiskStorage::open(b, opts()).unwrap();
        s.write(&req(None, 1, entries(1, 5, 1))).unwrap();
        s.write(&snap_req(5, 1, b"snapshot body")).unwrap();
        s.sync().unwrap();
        let name = snapshot_files(s.backend_mut()).pop().unwrap();
        let at = |s: &mut DiskStorage<B>| s.read_snapshot_chunk(meta(5, 1), 0, 64);
        let good = at(&mut s).unwrap().unwrap();
        assert_eq!(good.checksum, crc32c::crc32c(&good.data));
        let original = s.backend_mut().read(&name).unwrap();
        for (offset, header) in [(original.len() - 1, false), (20, true)] {
            let mut data = original.clone();
            data[offset] ^= 4;
            s.backend_mut().write(&name, 0, &data).unwrap();
            match at(&mut s) {
                Err(StorageError::Corrupt { file, .. }) => assert!(header && file == name),
                Ok(Some(c)) => assert!(!header && c.checksum != crc32c::crc32c(&c.data)),
                other => panic!("offset {offset}: {other:?}"),
            }
        }
    }

    pub fn snapshot_saved_elsewhere_is_adopted<B: Backend>(b: B) {
        let (mut s, _) = DiskStorage::open(b, opts()).unwrap();
        s.write(&req(None, 1, entries(1, 20, 1))).unwrap();
        s.write(&snap_req(10, 1, b"ten")).unwrap();
        s.sync().unwrap();
        save_snapshot_file(s.backend_mut(), meta(15, 1), b"fifteen").unwrap();
        // A crash before the core adopts it: the newer file wins, the WAL still holds
        // what follows it.
        let r = s.recover().unwrap();
        assert_eq!(r.snapshot.unwrap().data.to_vec(), b"fifteen".to_vec());
        assert_eq!(r.entries, entries(16, 20, 1));
        // Adopting: the persist request only names it and compacts.
        s.write(&saved_req(15, 1)).unwrap();
        s.sync().unwrap();
        let snaps = snapshot_files(s.backend_mut());
        assert_eq!(snaps.len(), 2, "the previous one stays: {snaps:?}");
        let r = s.recover().unwrap();
        assert_eq!(r.snapshot.unwrap().data.to_vec(), b"fifteen".to_vec());
        assert_eq!(r.entries, entries(16, 20, 1));
    }

    /// A persist request naming a saved snapshot whose file is missing fails (and the
    /// storage with it) instead of compacting the log on its word.
    pub fn saved_snapshot_without_a_file_is_refused<B: Backend>(b: B) {
        let (mut s, _) = DiskStorage::open(b, opts()).unwrap();
        s.write(&req(None, 1, entries(1, 20, 1))).unwrap();
        s.sync().unwrap();
        let err = s.write(&saved_req(15, 1)).unwrap_err();
        assert!(err.to_string().contains("no file"), "{err}");
        assert!(s.sync().is_err(), "the storage stays failed");
        let r = s.recover().unwrap();
        assert_eq!(r.snapshot, None);
        assert_eq!(r.entries, entries(1, 20, 1));
    }

    fn snapshot_files<B: Backend>(b: &mut B) -> Vec<String> {
        let names = b.list().unwrap().into_iter();
        names.filter(|n| n.contains("snap")).collect()
    }

    fn last_segment<B: Backend>(b: &mut B) -> String {
        segments(b).pop().expect("a segment")
    }

    fn three_synced<B: Backend>(b: B) -> DiskStorage<B> {
        let (mut s, _) = DiskStorage::open(b, opts()).unwrap();
        for i in 1..=3 {
            s.write(&req(Some(hs(1, None, i - 1)), i, vec![entry(i, 1)]))
                .unwrap();
            s.sync().unwrap();
        }
        s
    }

    /// End of the written data in a (possibly preallocated, zero-filled) segment.
    fn written_end<B: Backend>(b: &mut B, seg: &str) -> u64 {
        let data = b.read(seg).unwrap();
        data.iter()
            .rposition(|x| *x != 0)
            .map_or(0, |p| p as u64 + 1)
    }

    pub fn torn_tail_is_cut_off<B: Backend>(b: B) {
        let mut s = three_synced(b);
        let seg = last_segment(s.backend_mut());
        // The last 7 bytes of the final write never reached the disk.
        let end = written_end(s.backend_mut(), &seg);
        s.backend_mut().write(&seg, end - 7, &[0u8; 7]).unwrap();
        s.backend_mut().sync(&seg).unwrap();
        let r = s.recover().unwrap();
        assert_eq!(r.entries, entries(1, 2, 1));
        // And the log keeps working after the cut.
        s.write(&req(None, 3, vec![entry(3, 2)])).unwrap();
        s.sync().unwrap();
        assert_eq!(
            s.recover().unwrap().entries,
            [entries(1, 2, 1), vec![entry(3, 2)]].concat()
        );
    }

    pub fn zeroed_tail_is_cut_off<B: Backend>(b: B) {
        let mut s = three_synced(b);
        let seg = last_segment(s.backend_mut());
        let len = s.backend_mut().len(&seg).unwrap();
        s.backend_mut().write(&seg, len, &[0u8; 4096]).unwrap();
        s.backend_mut().sync(&seg).unwrap();
        assert_eq!(s.recover().unwrap().entries, entries(1, 3, 1));
        s.write(&req(None, 4, vec![entry(4, 1)])).unwrap();
        s.sync().unwrap();
        assert_eq!(
            s.recover().unwrap().entries,
            entries(1, 4, 1),
            "appends after a zeroed tail are found"
        );
    }

    pub fn bit_flip_in_synced_log_refuses_to_start<B: Backend>(b: B) {
        let mut s = three_synced(b);
        let seg = last_segment(s.backend_mut());
        let mut data = s.backend_mut().read(&seg).unwrap();
        let at = 20; // inside the first records, followed by more valid records
        data[at] ^= 0x10;
        s.backend_mut().write(&seg, 0, &data).unwrap();
        s.backend_mut().sync(&seg).unwrap();
        match s.recover() {
            Err(StorageError::Corrupt { file, offset, .. }) => {
                assert_eq!(file, seg);
                assert!(offset <= at as u64, "offset {offset} names the bad record");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    pub fn bit_flip_in_snapshot_refuses_to_start<B: Backend>(b: B) {
        let (mut s, _) = DiskStorage::open(b, opts()).unwrap();
        s.write(&req(None, 1, entries(1, 5, 1))).unwrap();
        s.write(&snap_req(5, 1, b"snapshot body")).unwrap();
        s.sync().unwrap();
        let name = s
            .backend_mut()
            .list()
            .unwrap()
            .into_iter()
            .find(|n| n.ends_with(".snap"))
            .unwrap();
        let mut data = s.backend_mut().read(&name).unwrap();
        let last = data.len() - 1;
        data[last] ^= 1;
        s.backend_mut().write(&name, 0, &data).unwrap();
        s.backend_mut().sync(&name).unwrap();
        let err = s.recover().unwrap_err();
        assert!(
            matches!(&err, StorageError::Corrupt { file, .. } if *file == name),
            "{err}"
        );
        assert!(
            err.to_string().contains(&name) && err.to_string().contains("offset"),
            "{err}"
        );
    }

    pub fn truncated_or_garbage_files_never_panic<B: Backend>(b: B) {
        let mut s = three_synced(b);
        let seg = last_segment(s.backend_mut());
        let mut data = s.backend_mut().read(&seg).unwrap();
        data.truncate(written_end(s.backend_mut(), &seg) as usize + 8);
        for cut in 0..data.len() {
            s.backend_mut().truncate(&seg, 0).unwrap();
            s.backend_mut().write(&seg, 0, &data[..cut]).unwrap();
            let r: Result<Recovered, StorageError> = s.recover();
            assert!(
                r.is_ok(),
                "a torn prefix of {cut} bytes must recover: {r:?}"
            );
        }
        for (i, junk) in [vec![0xff; 40], vec![1; 3], b"wal garbage".to_vec()]
            .into_iter()
            .enumerate()
        {
            let name = format!("wal-{:016x}-{:016x}.log", 100 + i, 1);
            s.backend_mut().write(&name, 0, &junk).unwrap();
            let _ = s.recover(); // an error or a truncation, never a panic
            s.backend_mut().remove(&name).unwrap();
        }
    }
}

/// A fresh temporary directory (the caller removes it once its test passed; a failing
/// test leaves it for a look).
fn fresh_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "synod-storage-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `test` on a backend in a [`fresh_dir`], removed once the test passed.
fn on_file_backend(test: fn(FileBackend)) {
    let dir = fresh_dir();
    test(FileBackend::open(&dir).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod file_backend {
            use super::*;
            $(#[test] fn $name() { on_file_backend(suite::$name); })*
        }
        mod sim_disk {
            use super::*;
            $(#[test] fn $name() { suite::$name(SimDisk::new(7)); })*
        }
    };
}

conformance!(
    empty_storage_recovers_nothing,
    synced_entries_and_hard_state_survive_reopen,
    a_prepared_segment_is_renamed_into_place_at_rotation,
    conflicting_suffix_is_replaced,
    empty_write_truncates,
    snapshot_compacts_the_log,
    newer_snapshot_replaces_older,
    damaged_snapshot_chunks_are_detectable,
    snapshot_saved_elsewhere_is_adopted,
    saved_snapshot_without_a_file_is_refused,
    torn_tail_is_cut_off,
    zeroed_tail_is_cut_off,
    bit_flip_in_synced_log_refuses_to_start,
    bit_flip_in_snapshot_refuses_to_start,
    truncated_or_garbage_files_never_panic,
);

/// A conflict overwrite at an index the snapshot later covers still removes the old
/// suffix: replay must not resurrect entries of the superseded history.
#[test]
fn overwrite_below_snapshot_still_truncates() {
    for backend in [0, 1] {
        let run = |s: &mut dyn FnMut(&PersistRequest)| {
            s(&req(Some(hs(4, None, 0)), 1, entries(1, 34, 4)));
            s(&req(Some(hs(5, None, 31)), 32, vec![entry(32, 5)]));
            s(&snap_req(32, 5, b"at 32"));
        };
        let r = if backend == 0 {
            let (mut st, _) = DiskStorage::open(SimDisk::new(1), opts()).unwrap();
            run(&mut |q| st.write(q).unwrap());
            st.sync().unwrap();
            st.recover().unwrap()
        } else {
            let dir = fresh_dir();
            let (mut st, _) = DiskStorage::open(FileBackend::open(&dir).unwrap(), opts()).unwrap();
            run(&mut |q| st.write(q).unwrap());
            st.sync().unwrap();
            let r = st.recover().unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            r
        };
        assert_eq!(r.snapshot.map(|x| x.meta.index), Some(LogIndex(32)));
        assert!(
            r.entries.is_empty(),
            "stale entries came back: {:?}",
            r.entries
                .iter()
                .map(|e| (e.index.0, e.term.0))
                .collect::<Vec<_>>()
        );
    }
}
