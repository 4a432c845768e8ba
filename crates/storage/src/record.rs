//! The WAL record format, little endian:
//! `crc u32 | len u32 | type u8 | header_crc u16 | payload[len] | 0xA5`.
//! `crc` is CRC32C over `len`, `type` and the payload; `header_crc` is the low 16 bits
//! of CRC32C over `len` and `type`. The header checksum is what lets recovery tell a
//! torn write (header incomplete, or payload cut short) from a damaged length field,
//! which would otherwise look like a record running past the end of the file and get
//! a synced suffix of the log silently cut off.

use raft::{Entry, EntryKind, HardState, LogIndex, NodeId, Term};

/// Header size in bytes.
pub const HEADER_BYTES: usize = 11;
/// Every record ends with this byte. A complete record therefore never ends in a zero,
/// so a record that runs into the zeros at the end of a file is a torn write, while a
/// complete record with a bad checksum is damage (see [`decode`]).
pub const TRAILER: u8 = 0xA5;
/// Largest payload accepted (a larger length field is corruption, not a huge record).
pub const MAX_PAYLOAD_BYTES: usize = 64 << 20;

const TYPE_ENTRY: u8 = 1;
const TYPE_HARD_STATE: u8 = 2;
const TYPE_TRUNCATE: u8 = 3;

/// One logical WAL record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A log entry; replay drops any entry at or after its index first.
    Entry(Entry),
    /// The hard state; the last one replayed wins.
    HardState(HardState),
    /// Drop every entry at or after this index.
    Truncate(LogIndex),
}

/// Appends the encoding of `r` to `out`.
pub fn encode(r: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_BYTES]);
    let kind = match r {
        Record::Entry(e) => {
            out.extend_from_slice(&e.index.0.to_le_bytes());
            out.extend_from_slice(&e.term.0.to_le_bytes());
            match &e.kind {
                EntryKind::Noop => out.push(0),
                EntryKind::Command(p) => {
                    out.push(1);
                    out.extend_from_slice(p);
                }
            }
            TYPE_ENTRY
        }
        Record::HardState(h) => {
            out.extend_from_slice(&h.term.0.to_le_bytes());
            out.extend_from_slice(&h.vote.map_or(0, |v| v.0).to_le_bytes());
            out.extend_from_slice(&h.commit.0.to_le_bytes());
            TYPE_HARD_STATE
        }
        Record::Truncate(i) => {
            out.extend_from_slice(&i.0.to_le_bytes());
            TYPE_TRUNCATE
        }
    };
    let len = (out.len() - start - HEADER_BYTES) as u32;
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    out[start + 8] = kind;
    let head_crc = crc32c::crc32c(&out[start + 4..start + 9]);
    out[start + 9..start + 11].copy_from_slice(&(head_crc as u16).to_le_bytes());
    let crc = crc32c::crc32c_append(head_crc, &out[start + HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    out.push(TRAILER);
}

/// What lies at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid record and its encoded size.
    Record(Record, usize),
    /// Nothing more: end of file, or an incomplete or zeroed tail (a torn write).
    TornTail,
    /// A complete record that fails its checksum or cannot be parsed.
    Corrupt(&'static str),
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

/// Decodes the record at the start of `b`.
pub fn decode(b: &[u8]) -> Decoded {
    // Where the trailing run of zeros starts: a write that was cut short (torn) leaves
    // zeros (preallocated space) or the end of the file right after what it wrote.
    let zeros_from = || b.iter().rposition(|x| *x != 0).map_or(0, |p| p + 1);
    let torn_or = |end: usize, reason| {
        if zeros_from() < end {
            Decoded::TornTail
        } else {
            Decoded::Corrupt(reason)
        }
    };
    if b.len() < HEADER_BYTES {
        return Decoded::TornTail;
    }
    let crc = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let head_crc = crc32c::crc32c(&b[4..9]);
    if head_crc as u16 != u16::from_le_bytes([b[9], b[10]]) {
        return torn_or(HEADER_BYTES, "record header checksum mismatch");
    }
    let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
    if len > MAX_PAYLOAD_BYTES {
        return Decoded::Corrupt("record length out of range");
    }
    let end = HEADER_BYTES + len + 1;
    let Some(payload) = b.get(HEADER_BYTES..end - 1) else {
        // A valid header whose payload was cut short by the end of the file.
        return Decoded::TornTail;
    };
    if b.get(end - 1) != Some(&TRAILER) || crc32c::crc32c_append(head_crc, payload) != crc {
        return torn_or(end, "checksum mismatch");
    }
    let record = match b[8] {
        TYPE_ENTRY => decode_entry(payload),
        TYPE_HARD_STATE => decode_hard_state(payload),
        TYPE_TRUNCATE if payload.len() == 8 => {
            u64_at(payload, 0).map(|i| Record::Truncate(LogIndex(i)))
        }
        _ => None,
    };
    match record {
        Some(r) => Decoded::Record(r, end),
        None => Decoded::Corrupt("malformed record payload"),
    }
}

fn decode_entry(p: &[u8]) -> Option<Record> {
    let index = u64_at(p, 0)?;
    let term = u64_at(p, 8)?;
    let kind = match *p.get(16)? {
        0 if p.len() == 17 => EntryKind::Noop,
        1 => EntryKind::Command(p[17..].into()),
        _ => return None,
    };
    Some(Record::Entry(Entry {
        term: Term(term),
        index: LogIndex(index),
        kind,
    }))
}

fn decode_hard_state(p: &[u8]) -> Option<Record> {
    if p.len() != 24 {
        return None;
    }
    let vote = u64_at(p, 8)?;
    Some(Record::HardState(HardState {
        term: Term(u64_at(p, 0)?),
        vote: (vote != 0).then_some(NodeId(vote)),
        commit: LogIndex(u64_at(p, 16)?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        vec![
            Record::Entry(Entry {
                term: Term(3),
                index: LogIndex(7),
                kind: EntryKind::Command(vec![1, 2, 3].into()),
            }),
            Record::Entry(Entry {
                term: Term(4),
                index: LogIndex(8),
                kind: EntryKind::Noop,
            }),
            Record::HardState(HardState {
                term: Term(4),
                vote: Some(NodeId(2)),
                commit: LogIndex(6),
            }),
            Record::HardState(HardState::default()),
            Record::Truncate(LogIndex(5)),
        ]
    }

    #[test]
    fn records_round_trip() {
        for r in samples() {
            let mut b = Vec::new();
            encode(&r, &mut b);
            assert_eq!(decode(&b), Decoded::Record(r, b.len()));
        }
    }

    #[test]
    fn every_truncation_is_a_torn_tail_and_every_bit_flip_is_caught() {
        for r in samples() {
            let mut b = Vec::new();
            encode(&r, &mut b);
            for cut in 0..b.len() {
                assert_eq!(decode(&b[..cut]), Decoded::TornTail, "cut at {cut}");
            }
            for byte in 0..b.len() {
                for bit in 0..8 {
                    let mut c = b.clone();
                    c[byte] ^= 1 << bit;
                    assert!(
                        matches!(decode(&c), Decoded::Corrupt(_)),
                        "flip {byte}:{bit} not reported as corruption"
                    );
                }
            }
        }
        assert_eq!(decode(&[0u8; 64]), Decoded::TornTail);
        // Torn inside preallocated (zero-filled) space: a prefix, then zeros.
        for r in samples() {
            let mut b = Vec::new();
            encode(&r, &mut b);
            for cut in 0..b.len() {
                let mut t = b[..cut].to_vec();
                t.resize(b.len() + 100, 0);
                assert_eq!(decode(&t), Decoded::TornTail, "zero-filled cut at {cut}");
            }
            // A bit flip in a complete record followed by zeros is damage, not a tear.
            let mut c = b.clone();
            c[b.len() / 2] ^= 0x04;
            c.resize(b.len() + 100, 0);
            assert!(matches!(decode(&c), Decoded::Corrupt(_)));
        }
        let mut z = vec![0u8; 32];
        z.push(1);
        assert!(matches!(decode(&z), Decoded::Corrupt(_)));
    }
}
