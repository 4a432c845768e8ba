//! The segmented write-ahead log.
//!
//! Segments are named `wal-<seq>-<first index>.log` (16 hex digits each). Records are
//! buffered by `push` and written with one write and one fdatasync by `sync` (group
//! commit). A segment rotates once it passes the size limit; every segment starts with
//! the current hard state, so dropping old segments never loses it.

use crate::backend::Backend;
use crate::error::StorageError;
use crate::record::{decode, encode, Decoded, Record};
use raft::{Entry, HardState, LogIndex};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) seq: u64,
    pub(crate) first: LogIndex,
}

impl Segment {
    pub(crate) fn name(&self) -> String {
        format!("wal-{:016x}-{:016x}.log", self.seq, self.first.0)
    }

    pub(crate) fn parse(name: &str) -> Option<Segment> {
        let rest = name.strip_prefix("wal-")?.strip_suffix(".log")?;
        let (seq, first) = rest.split_once('-')?;
        Some(Segment {
            seq: u64::from_str_radix(seq, 16).ok()?,
            first: LogIndex(u64::from_str_radix(first, 16).ok()?),
        })
    }
}

/// A zero-filled, synced segment made ahead of time by [`prepare_segment`]; the next
/// rotation renames it into place instead of zero-filling on the commit path. The name
/// is not a segment name, so recovery ignores a leftover one.
pub const PREPARED_SEGMENT: &str = "wal-prepared.tmp";
/// Where [`prepare_segment`] fills the file before renaming it to [`PREPARED_SEGMENT`].
const PREPARING_SEGMENT: &str = "wal-preparing.tmp";

/// Makes [`PREPARED_SEGMENT`]: `bytes` zeros, synced every 4 MiB (so the flush never
/// holds the disk long against the log's own fdatasyncs), renamed into place and the
/// directory synced. Runs on any backend of the log's directory, off the commit path;
/// the owner of the log is told with `DiskStorage::segment_prepared` once it returns.
pub fn prepare_segment<B: Backend>(b: &mut B, bytes: u64) -> Result<(), StorageError> {
    // A leftover from an interrupted preparation is simply overwritten.
    write_zeros(b, PREPARING_SEGMENT, bytes, Some(4 << 20))?;
    b.sync(PREPARING_SEGMENT)?;
    b.rename(PREPARING_SEGMENT, PREPARED_SEGMENT)?;
    b.sync_dir()?;
    Ok(())
}

/// What replay found.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    pub(crate) hard_state: HardState,
    pub(crate) entries: Vec<Entry>,
}

/// The log's writer state.
#[derive(Debug)]
pub(crate) struct Wal {
    segments: Vec<Segment>,
    /// Bytes of the current (last) segment on disk.
    len: u64,
    buf: Vec<u8>,
    hard_state: HardState,
    last_index: LogIndex,
    segment_bytes: u64,
    /// New segments are filled with zeros up to `segment_bytes` before use, so appends
    /// overwrite allocated space and fdatasync need not commit a file-size change.
    preallocate: bool,
    /// The current segment was created and its directory entry is not yet durable.
    new_segment: bool,
    /// [`PREPARED_SEGMENT`] exists, complete and durable.
    prepared: bool,
    /// Someone was asked to make it and has not reported back.
    preparing: bool,
}

impl Wal {
    /// Replays the log after `snapshot_index` and returns the writer positioned at its
    /// end. A torn or zeroed tail of the last segment is cut off; anything else that
    /// fails validation refuses to start, naming the file and offset.
    pub(crate) fn open<B: Backend>(
        b: &mut B,
        snapshot_index: LogIndex,
        segment_bytes: u64,
        preallocate: bool,
    ) -> Result<(Wal, Replayed), StorageError> {
        let mut segments: Vec<Segment> =
            b.list()?.iter().filter_map(|n| Segment::parse(n)).collect();
        segments.sort_by_key(|s| s.seq);
        // Every segment still present is replayed: compaction deletes the ones a
        // snapshot made useless, and starting later could skip the only durable copy of
        // the hard state when the newest segment's first sync never completed.
        let mut out = Replayed::default();
        let mut len = 0;
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            len = replay_segment(b, seg, last, snapshot_index, preallocate, &mut out)?;
        }
        let last_index = out.entries.last().map_or(snapshot_index, |e| e.index);
        let wal = Wal {
            segments,
            len,
            buf: Vec::new(),
            hard_state: out.hard_state,
            last_index,
            segment_bytes,
            preallocate,
            new_segment: false,
            prepared: false,
            preparing: false,
        };
        Ok((wal, out))
    }

    pub(crate) fn push(&mut self, r: &Record) {
        // A batch that starts on a full segment starts a new one; its first index is
        // the one after everything written so far.
        if self.buf.is_empty() && (self.segments.is_empty() || self.len >= self.segment_bytes) {
            self.rotate();
        }
        match r {
            Record::HardState(h) => self.hard_state = *h,
            Record::Entry(e) => self.last_index = e.index,
            Record::Truncate(i) => self.last_index = self.last_index.min(i.prev()),
        }
        encode(r, &mut self.buf);
    }

    /// Writes the buffered records and makes them durable with one fdatasync.
    pub(crate) fn sync<B: Backend>(&mut self, b: &mut B) -> Result<(), StorageError> {
        if self.buf.is_empty() && !self.new_segment {
            return Ok(());
        }
        let Some(seg) = self.segments.last() else {
            return Err(StorageError::Io("no WAL segment".into()));
        };
        let name = seg.name();
        if self.new_segment && self.preallocate {
            if std::mem::take(&mut self.prepared) {
                // Already zero-filled and durable: only its name is new (the directory
                // sync below makes that durable).
                b.rename(PREPARED_SEGMENT, &name)?;
            } else {
                preallocate(b, &name, self.segment_bytes)?;
            }
        }
        b.write(&name, self.len, &self.buf)?;
        b.sync(&name)?;
        if self.new_segment {
            b.sync_dir()?;
            self.new_segment = false;
        }
        self.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// The size of a segment to prepare now, if one is due: segments are preallocated,
    /// the current one is half full, and none is prepared or being prepared.
    pub(crate) fn segment_to_prepare(&mut self) -> Option<u64> {
        let due = self.preallocate
            && !self.prepared
            && !self.preparing
            && !self.segments.is_empty()
            && self.len >= self.segment_bytes / 2;
        self.preparing |= due;
        due.then_some(self.segment_bytes)
    }

    /// The preparation asked for by `segment_to_prepare` ended (`ok`: the file is ready).
    pub(crate) fn segment_prepared(&mut self, ok: bool) {
        if self.preparing {
            self.preparing = false;
            self.prepared = ok;
        }
    }

    /// Starts a new segment whose first record is the current hard state.
    fn rotate(&mut self) {
        let seq = self.segments.last().map_or(1, |s| s.seq + 1);
        self.segments.push(Segment {
            seq,
            first: self.last_index.next(),
        });
        self.len = 0;
        self.new_segment = true;
        debug_assert!(self.buf.is_empty());
        encode(&Record::HardState(self.hard_state), &mut self.buf);
    }

    /// Deletes segments that hold only entries at or below `index` (call once a
    /// snapshot covering `index` is durable).
    pub(crate) fn compact<B: Backend>(
        &mut self,
        b: &mut B,
        index: LogIndex,
    ) -> Result<(), StorageError> {
        let keep_from = self
            .segments
            .iter()
            .rposition(|s| s.first <= index.next())
            .unwrap_or(0);
        if keep_from == 0 {
            return Ok(());
        }
        for seg in self.segments.drain(..keep_from) {
            b.remove(&seg.name())?;
        }
        b.sync_dir()?;
        Ok(())
    }

    /// The newest hard state pushed.
    pub(crate) fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Segment count (for tests and metrics).
    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

/// Fills a new segment with zeros (one fdatasync later covers it with the first batch).
fn preallocate<B: Backend>(b: &mut B, name: &str, bytes: u64) -> Result<(), StorageError> {
    write_zeros(b, name, bytes, None)
}

/// Writes `bytes` zeros to `name` from offset 0, 1 MiB at a time, syncing after every
/// `sync_every` bytes when given.
fn write_zeros<B: Backend>(
    b: &mut B,
    name: &str,
    bytes: u64,
    sync_every: Option<u64>,
) -> Result<(), StorageError> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < bytes {
        let n = (bytes - at).min(zeros.len() as u64) as usize;
        b.write(name, at, &zeros[..n])?;
        at += n as u64;
        if sync_every.is_some_and(|every| at % every == 0) {
            b.sync(name)?;
        }
    }
    Ok(())
}

/// Replays one segment into `out`; returns the valid length.
fn replay_segment<B: Backend>(
    b: &mut B,
    seg: &Segment,
    last: bool,
    snapshot_index: LogIndex,
    preallocate: bool,
    out: &mut Replayed,
) -> Result<u64, StorageError> {
    let name = seg.name();
    let data = b.read(&name)?;
    let mut at = 0usize;
    while at < data.len() {
        match decode(&data[at..]) {
            Decoded::Record(r, size) => {
                apply(r, snapshot_index, out)
                    .map_err(|reason| StorageError::corrupt(&name, at as u64, reason))?;
                at += size;
            }
            // Zeros to the end: unused preallocated space, or a zeroed tail.
            Decoded::TornTail if data[at..].iter().all(|x| *x == 0) => break,
            Decoded::TornTail if last => {
                // A write that never finished: remove it, so that later appends cannot
                // be read as its continuation.
                cut_torn_tail(b, &name, at as u64, &data[at..], preallocate)?;
                break;
            }
            Decoded::TornTail => {
                return Err(StorageError::corrupt(
                    &name,
                    at as u64,
                    "incomplete record in a sealed segment",
                ))
            }
            Decoded::Corrupt(reason) => {
                return Err(StorageError::corrupt(&name, at as u64, reason))
            }
        }
    }
    Ok(at as u64)
}

/// Truncates a torn tail, or zeroes it in a preallocated segment (keeping the space).
fn cut_torn_tail<B: Backend>(
    b: &mut B,
    name: &str,
    at: u64,
    tail: &[u8],
    preallocate: bool,
) -> Result<(), StorageError> {
    if preallocate {
        let dirty = tail.iter().rposition(|x| *x != 0).map_or(0, |p| p + 1);
        b.write(name, at, &vec![0u8; dirty])?;
    } else {
        b.truncate(name, at)?;
    }
    b.sync(name)?;
    Ok(())
}

fn apply(r: Record, snapshot_index: LogIndex, out: &mut Replayed) -> Result<(), &'static str> {
    match r {
        Record::HardState(h) => out.hard_state = h,
        Record::Truncate(i) => out.entries.retain(|e| e.index < i),
        Record::Entry(e) => {
            // Writing index i replaces the log from i on, even when i is covered by the
            // snapshot (then only the truncation matters: the entry itself is not kept).
            out.entries.retain(|x| x.index < e.index);
            if e.index <= snapshot_index {
                return Ok(());
            }
            let expected = out
                .entries
                .last()
                .map_or(snapshot_index.next(), |x| x.index.next());
            if e.index != expected {
                return Err("entry index leaves a gap in the log");
            }
            out.entries.push(e);
        }
    }
    Ok(())
}
