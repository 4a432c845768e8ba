//! The segmented write-ahead log.
//!
//! Segments are named `wal-<seq>-<first index>.log` (16 hex digits each). Records are
//! buffered by `push` and written with one write and one fdatasync by `sync` (group
//! commit). A segment rotates once it passes the size limit. Every segment starts with a
//! header naming the log format and the engine that wrote it, then the engine's
//! *anchor* record (Raft's hard state), so dropping old segments never loses it.
//!
//! The log knows no engine: records are a type byte and the engine adapter's payload;
//! the adapter reports the highest index its records hold so far, which names segments
//! and decides which ones a snapshot makes useless.

use crate::backend::Backend;
use crate::error::StorageError;
use crate::record::{decode, encode, Decoded, KIND_SEGMENT_HEADER};

/// The version of the segment layout, written in every segment's header.
pub const WAL_FORMAT: u32 = 4;
/// What a segment header's payload starts with.
const SEGMENT_MAGIC: &[u8; 8] = b"SYNODWAL";

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) seq: u64,
    pub(crate) first: u64,
}

impl Segment {
    pub(crate) fn name(&self) -> String {
        format!("wal-{:016x}-{:016x}.log", self.seq, self.first)
    }

    pub(crate) fn parse(name: &str) -> Option<Segment> {
        let rest = name.strip_prefix("wal-")?.strip_suffix(".log")?;
        let (seq, first) = rest.split_once('-')?;
        Some(Segment {
            seq: u64::from_str_radix(seq, 16).ok()?,
            first: u64::from_str_radix(first, 16).ok()?,
        })
    }
}

/// Tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageOptions {
    /// A WAL segment rotates once it reaches this size.
    pub segment_bytes: u64,
    /// Fill each new segment with zeros up to `segment_bytes` (made durable with the
    /// segment's first fdatasync), so appends never change the file size and each
    /// fdatasync commits data only.
    pub preallocate: bool,
}

impl Default for StorageOptions {
    fn default() -> StorageOptions {
        StorageOptions {
            segment_bytes: 64 << 20,
            preallocate: true,
        }
    }
}

/// Checks what replay hands the engine's adapter: `Err(reason)` names the corruption
/// (the log adds the file and offset).
pub type Replay<'a> = dyn FnMut(u8, &[u8]) -> Result<(), &'static str> + 'a;

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

/// A segmented write-ahead log of typed, checksummed records for one engine. After an
/// error the owner stops the node; a failed sync is never retried.
#[derive(Debug)]
pub struct Wal {
    engine: String,
    segments: Vec<Segment>,
    /// Bytes of the current (last) segment on disk.
    len: u64,
    buf: Vec<u8>,
    /// The anchor record (type, payload) every new segment repeats.
    anchor: Option<(u8, Vec<u8>)>,
    last_index: u64,
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
    /// Replays every record of the log in `b` written by `engine`, in order, through
    /// `replay`, and returns the writer positioned at its end. A torn or zeroed tail of
    /// the last segment is cut off; anything else that fails validation (including a
    /// segment of another format or engine) refuses to start, naming the file and
    /// offset. The owner then calls [`Wal::resume`].
    pub fn open<B: Backend>(
        b: &mut B,
        engine: &str,
        opts: StorageOptions,
        replay: &mut Replay<'_>,
    ) -> Result<Wal, StorageError> {
        let mut segments: Vec<Segment> =
            b.list()?.iter().filter_map(|n| Segment::parse(n)).collect();
        segments.sort_by_key(|s| s.seq);
        // Every segment still present is replayed: compaction deletes the ones a
        // snapshot made useless, and starting later could skip the only durable copy of
        // the anchor when the newest segment's first sync never completed.
        let mut len = 0;
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let mut reader = SegmentReader {
                engine,
                last,
                preallocate: opts.preallocate,
                replay: &mut *replay,
            };
            len = reader.replay(b, seg)?;
        }
        Ok(Wal {
            engine: engine.to_string(),
            segments,
            len,
            buf: Vec::new(),
            anchor: None,
            last_index: 0,
            segment_bytes: opts.segment_bytes,
            preallocate: opts.preallocate,
            new_segment: false,
            prepared: false,
            preparing: false,
        })
    }

    /// After replay: the highest index the replayed records hold, and the anchor record
    /// new segments must start with (the newest one replayed).
    pub fn resume(&mut self, last_index: u64, anchor: Option<(u8, Vec<u8>)>) {
        self.last_index = last_index;
        self.anchor = anchor;
    }

    /// Buffers one record of type `kind` (1..=255), whose payload `payload` writes;
    /// after it the log holds indexes up to `last_index`. Nothing is written before
    /// [`Wal::sync`].
    pub fn push(&mut self, kind: u8, last_index: u64, payload: impl FnOnce(&mut Vec<u8>)) {
        debug_assert_ne!(kind, KIND_SEGMENT_HEADER, "type 0 is the log's own");
        // A batch that starts on a full segment starts a new one; its first index is
        // the one after everything written so far.
        if self.buf.is_empty() {
            if self.segments.is_empty() || self.len >= self.segment_bytes {
                self.rotate();
            } else if self.len == 0 {
                // The newest segment holds nothing valid: its first write was lost or
                // torn in a crash. It starts over, header first.
                self.start_segment();
            }
        }
        self.last_index = last_index;
        encode(kind, &mut self.buf, payload);
    }

    /// Buffers the engine's anchor record (Raft's hard state): like `push`, and every
    /// later segment starts with it, so deleting old segments never loses it.
    pub fn push_anchor(&mut self, kind: u8, payload: &[u8]) {
        self.push(kind, self.last_index, |o| o.extend_from_slice(payload));
        match &mut self.anchor {
            Some((k, p)) => {
                *k = kind;
                p.clear();
                p.extend_from_slice(payload);
            }
            None => self.anchor = Some((kind, payload.to_vec())),
        }
    }

    /// Bytes buffered and not yet written.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Writes the buffered records and makes them durable with one fdatasync.
    pub fn sync<B: Backend>(&mut self, b: &mut B) -> Result<(), StorageError> {
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
    pub fn segment_to_prepare(&mut self) -> Option<u64> {
        let due = self.preallocate
            && !self.prepared
            && !self.preparing
            && !self.segments.is_empty()
            && self.len >= self.segment_bytes / 2;
        self.preparing |= due;
        due.then_some(self.segment_bytes)
    }

    /// The preparation asked for by `segment_to_prepare` ended (`ok`: the file is ready).
    pub fn segment_prepared(&mut self, ok: bool) {
        if self.preparing {
            self.preparing = false;
            self.prepared = ok;
        }
    }

    /// Starts a new segment.
    fn rotate(&mut self) {
        let seq = self.segments.last().map_or(1, |s| s.seq + 1);
        self.segments.push(Segment {
            seq,
            first: self.last_index + 1,
        });
        self.len = 0;
        self.new_segment = true;
        self.start_segment();
    }

    /// Buffers what every segment begins with: its header, then the anchor record.
    fn start_segment(&mut self) {
        debug_assert!(self.buf.is_empty() && self.len == 0);
        encode(KIND_SEGMENT_HEADER, &mut self.buf, |o| {
            segment_header(&self.engine, o)
        });
        if let Some((kind, payload)) = &self.anchor {
            encode(*kind, &mut self.buf, |o| o.extend_from_slice(payload));
        }
    }

    /// Deletes segments that hold only records of indexes at or below `index` (call
    /// once a snapshot covering `index` is durable).
    pub fn compact<B: Backend>(&mut self, b: &mut B, index: u64) -> Result<(), StorageError> {
        let keep_from = self
            .segments
            .iter()
            .rposition(|s| s.first <= index + 1)
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

    /// Segment count (for tests and metrics).
    pub fn segment_count(&self) -> usize {
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

/// A segment header's payload: magic, format, engine name.
fn segment_header(engine: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(SEGMENT_MAGIC);
    out.extend_from_slice(&WAL_FORMAT.to_le_bytes());
    out.extend_from_slice(engine.as_bytes());
}

/// Checks a segment header against this log's format and engine.
fn check_header(engine: &str, payload: &[u8]) -> Result<(), String> {
    let (Some(magic), Some(format)) = (payload.get(..8), payload.get(8..12)) else {
        return Err("segment header too short".into());
    };
    let format = u32::from_le_bytes(format.try_into().unwrap_or_default());
    if magic != SEGMENT_MAGIC || format != WAL_FORMAT {
        return Err(format!(
            "segment of WAL format {format}; this version reads format {WAL_FORMAT} only"
        ));
    }
    let written_by = String::from_utf8_lossy(&payload[12..]);
    if written_by != engine {
        return Err(format!(
            "segment written by the `{written_by}` engine; this member runs `{engine}`"
        ));
    }
    Ok(())
}

fn no_header() -> String {
    format!(
        "segment without a header: written by WAL format 2 or older; this version reads format {WAL_FORMAT} only"
    )
}

/// Reads one segment into the engine adapter's replay.
struct SegmentReader<'a, 'r> {
    engine: &'a str,
    /// The newest segment: only its tail may be torn.
    last: bool,
    preallocate: bool,
    replay: &'a mut Replay<'r>,
}

impl SegmentReader<'_, '_> {
    /// Replays `seg`; returns its valid length.
    fn replay<B: Backend>(&mut self, b: &mut B, seg: &Segment) -> Result<u64, StorageError> {
        let name = seg.name();
        let data = b.read(&name)?;
        let mut at = 0usize;
        while at < data.len() {
            match decode(&data[at..]) {
                Decoded::Record {
                    kind,
                    payload,
                    size,
                } => {
                    let checked = if at == 0 {
                        (kind == KIND_SEGMENT_HEADER)
                            .then_some(())
                            .ok_or_else(no_header)
                            .and_then(|()| check_header(self.engine, payload))
                    } else if kind == KIND_SEGMENT_HEADER {
                        Err("segment header in the middle of a segment".into())
                    } else {
                        (self.replay)(kind, payload).map_err(str::to_string)
                    };
                    checked.map_err(|reason| StorageError::corrupt(&name, at as u64, &reason))?;
                    at += size;
                }
                // Zeros to the end: unused preallocated space, or a zeroed tail.
                Decoded::TornTail if data[at..].iter().all(|x| *x == 0) => break,
                Decoded::TornTail if self.last => {
                    // A write that never finished: remove it, so that later appends
                    // cannot be read as its continuation.
                    cut_torn_tail(b, &name, at as u64, &data[at..], self.preallocate)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimDisk;

    const OPTS: StorageOptions = StorageOptions {
        segment_bytes: 256,
        preallocate: true,
    };

    fn replay_all(b: &mut SimDisk, engine: &str) -> Result<Vec<(u8, Vec<u8>)>, StorageError> {
        let mut seen = Vec::new();
        Wal::open(b, engine, OPTS, &mut |k, p| {
            seen.push((k, p.to_vec()));
            Ok(())
        })?;
        Ok(seen)
    }

    #[test]
    fn every_segment_starts_with_the_header_and_the_anchor() {
        let mut b = SimDisk::new(7);
        let mut wal = Wal::open(&mut b, "raft", OPTS, &mut |_, _| Ok(())).unwrap();
        wal.push_anchor(2, b"vote-1");
        for i in 1..=40u64 {
            wal.push(1, i, |o| o.extend_from_slice(&[i as u8; 20]));
            wal.sync(&mut b).unwrap();
        }
        assert!(wal.segment_count() > 3);
        // Dropping the segments a snapshot at 30 covers keeps the anchor.
        wal.compact(&mut b, 30).unwrap();
        let seen = replay_all(&mut b, "raft").unwrap();
        assert_eq!(seen[0], (2, b"vote-1".to_vec()));
        let first = seen.iter().find(|(k, _)| *k == 1).unwrap().1[0];
        assert!(first > 1 && first <= 31, "kept from {first}");
        assert_eq!(seen.last().unwrap().1[0], 40);
    }

    /// A crash that loses (or tears) a new segment's first write leaves a segment with
    /// nothing valid in it; appending there must start with the header again.
    #[test]
    fn a_segment_whose_first_write_was_lost_starts_over_with_its_header() {
        let mut b = SimDisk::new(11);
        let mut wal = Wal::open(&mut b, "raft", OPTS, &mut |_, _| Ok(())).unwrap();
        wal.push_anchor(2, b"vote-1");
        wal.push(1, 1, |o| o.push(1));
        wal.sync(&mut b).unwrap();
        // What a crash can leave of a rotation: the next segment, preallocated and
        // durable, and none of the batch written into it.
        let next = Segment { seq: 2, first: 2 }.name();
        b.write(&next, 0, &[0; 256]).unwrap();
        b.sync(&next).unwrap();
        b.sync_dir().unwrap();
        b.crash();
        let mut wal = Wal::open(&mut b, "raft", OPTS, &mut |_, _| Ok(())).unwrap();
        assert_eq!(wal.segment_count(), 2);
        wal.resume(1, Some((2, b"vote-1".to_vec())));
        wal.push(1, 2, |o| o.push(2));
        wal.sync(&mut b).unwrap();
        b.crash();
        let seen = replay_all(&mut b, "raft").unwrap();
        let entries: Vec<u8> = seen
            .iter()
            .filter(|(k, _)| *k == 1)
            .map(|(_, p)| p[0])
            .collect();
        assert_eq!(entries, vec![1, 2]);
        // The restarted segment repeats the anchor after its header.
        assert_eq!(seen.iter().filter(|(k, _)| *k == 2).count(), 2);
    }

    #[test]
    fn another_engine_or_an_old_format_is_refused_with_the_reason() {
        let mut b = SimDisk::new(1);
        let mut wal = Wal::open(&mut b, "paxos", OPTS, &mut |_, _| Ok(())).unwrap();
        wal.push(1, 1, |o| o.push(1));
        wal.sync(&mut b).unwrap();
        let err = replay_all(&mut b, "raft").unwrap_err().to_string();
        assert!(err.contains("written by the `paxos` engine"), "{err}");

        // A format-2 segment: records but no header.
        let mut old = SimDisk::new(2);
        let mut bytes = Vec::new();
        encode(2, &mut bytes, |o| o.extend_from_slice(&[0; 24]));
        old.write("wal-0000000000000001-0000000000000001.log", 0, &bytes)
            .unwrap();
        old.sync("wal-0000000000000001-0000000000000001.log")
            .unwrap();
        let err = replay_all(&mut old, "raft").unwrap_err().to_string();
        assert!(err.contains("WAL format 2 or older"), "{err}");
    }

    #[test]
    fn an_adapter_refusal_names_the_file_and_offset() {
        let mut b = SimDisk::new(3);
        let mut wal = Wal::open(&mut b, "raft", OPTS, &mut |_, _| Ok(())).unwrap();
        wal.push(1, 1, |o| o.push(1));
        wal.push(9, 1, |o| o.push(2));
        wal.sync(&mut b).unwrap();
        let got = Wal::open(&mut b, "raft", OPTS, &mut |k, _| {
            if k == 9 {
                Err("unknown record")
            } else {
                Ok(())
            }
        });
        match got {
            Err(StorageError::Corrupt { file, reason, .. }) => {
                assert!(file.starts_with("wal-"));
                assert_eq!(reason, "unknown record");
            }
            other => panic!("{other:?}"),
        }
    }
}
