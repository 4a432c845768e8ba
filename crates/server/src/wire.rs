//! The peer wire format: Raft messages as checksummed frames over one TCP stream per
//! direction.
//!
//! A connection opens with a handshake — `MAGIC | cluster_id u64 | from u64 | to u64`,
//! all little-endian — followed by frames `len u32 | crc32c u32 | body`. A body is one
//! message. Anything that does not parse (wrong magic, another cluster, a bad checksum,
//! an oversized frame, an unknown tag) is answered by closing the connection.

use raft::{
    AppendOutcome, Entry, EntryKind, LogIndex, Message, NodeId, Payload, SnapshotMeta, Term,
};
use std::fmt;

/// First bytes of every peer connection.
pub const MAGIC: &[u8; 8] = b"SYNODP1\0";
/// Handshake length in bytes.
pub const HANDSHAKE_LEN: usize = 8 + 24;
/// Largest frame body accepted (an append carries at most ~1 MiB of entries).
pub const MAX_FRAME: usize = 64 << 20;

/// Why bytes from a peer were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The handshake did not start with [`MAGIC`].
    BadMagic,
    /// The peer belongs to another cluster.
    WrongCluster(u64),
    /// A frame announced more than [`MAX_FRAME`] bytes.
    Oversized(usize),
    /// The frame checksum did not match.
    Checksum,
    /// The body ended early or held an unknown tag.
    Malformed(&'static str),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadMagic => f.write_str("not a synod peer (bad magic)"),
            WireError::WrongCluster(c) => write!(f, "peer is in cluster {c:x}"),
            WireError::Oversized(n) => write!(f, "frame of {n} bytes exceeds the limit"),
            WireError::Checksum => f.write_str("frame checksum mismatch"),
            WireError::Malformed(why) => write!(f, "malformed message: {why}"),
        }
    }
}

impl std::error::Error for WireError {}

/// A parsed handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The cluster both ends must share.
    pub cluster_id: u64,
    /// Sender.
    pub from: NodeId,
    /// Intended receiver.
    pub to: NodeId,
}

impl Handshake {
    /// Encodes the handshake.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        for v in [self.cluster_id, self.from.0, self.to.0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parses and checks a handshake against our cluster id.
    pub fn decode(b: &[u8; HANDSHAKE_LEN], cluster_id: u64) -> Result<Handshake, WireError> {
        if &b[..8] != MAGIC {
            return Err(WireError::BadMagic);
        }
        let word = |i: usize| u64::from_le_bytes(b[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        let h = Handshake {
            cluster_id: word(0),
            from: NodeId(word(1)),
            to: NodeId(word(2)),
        };
        if h.cluster_id != cluster_id {
            return Err(WireError::WrongCluster(h.cluster_id));
        }
        Ok(h)
    }
}

/// Appends one framed message to `out`.
pub fn encode_frame(msg: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    encode_message(msg, out);
    let body = &out[start + 8..];
    let len = body.len() as u32;
    let crc = crc32c::crc32c(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a frame header; returns the body length.
pub fn frame_len(header: &[u8; 8]) -> Result<(usize, u32), WireError> {
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().unwrap());
    if len > MAX_FRAME {
        return Err(WireError::Oversized(len));
    }
    Ok((len, crc))
}

/// Checks a frame body against its checksum and decodes it.
pub fn decode_frame(body: &[u8], crc: u32) -> Result<Message, WireError> {
    if crc32c::crc32c(body) != crc {
        return Err(WireError::Checksum);
    }
    let mut r = Reader { b: body };
    let m = decode_message(&mut r)?;
    if !r.b.is_empty() {
        return Err(WireError::Malformed("trailing bytes"));
    }
    Ok(m)
}

fn put(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn encode_message(msg: &Message, out: &mut Vec<u8>) {
    match msg {
        Message::VoteRequest {
            term,
            last_index,
            last_term,
            pre_vote,
        } => {
            out.push(1);
            for v in [term.0, last_index.0, last_term.0, *pre_vote as u64] {
                put(out, v);
            }
        }
        Message::VoteResponse {
            term,
            granted,
            pre_vote,
        } => {
            out.push(2);
            for v in [term.0, *granted as u64, *pre_vote as u64] {
                put(out, v);
            }
        }
        Message::Append { .. } => encode_append(msg, out),
        Message::AppendResponse {
            term,
            outcome,
            read_seq,
        } => {
            out.push(4);
            put(out, term.0);
            put(out, *read_seq);
            match outcome {
                AppendOutcome::Accepted { match_index } => {
                    out.push(0);
                    put(out, match_index.0);
                }
                AppendOutcome::Rejected {
                    rejected_index,
                    conflict_term,
                    conflict_index,
                } => {
                    out.push(1);
                    put(out, rejected_index.0);
                    put(out, conflict_term.map_or(u64::MAX, |t| t.0));
                    put(out, conflict_index.0);
                }
            }
        }
        Message::Snapshot {
            term,
            meta,
            offset,
            total_len,
            data,
            checksum,
            read_seq,
        } => {
            out.push(5);
            for v in [
                term.0,
                meta.index.0,
                meta.term.0,
                *offset,
                *total_len,
                *read_seq,
                u64::from(*checksum),
            ] {
                put(out, v);
            }
            put_bytes(out, data);
        }
        Message::SnapshotResponse {
            term,
            index,
            next_offset,
            installed,
            read_seq,
        } => {
            out.push(6);
            for v in [term.0, index.0, *next_offset, *installed as u64, *read_seq] {
                put(out, v);
            }
        }
        Message::ReadIndex { term, ctx } => {
            out.push(7);
            put(out, term.0);
            put(out, *ctx);
        }
        Message::Propose { term, command } => {
            out.push(9);
            put(out, term.0);
            put_bytes(out, command);
        }
        Message::ReadIndexResponse { term, ctx, index } => {
            out.push(8);
            // Index 0 is never a read index (reads wait for an entry of the term).
            for v in [term.0, *ctx, index.map_or(0, |i| i.0)] {
                put(out, v);
            }
        }
    }
}

fn encode_append(msg: &Message, out: &mut Vec<u8>) {
    let Message::Append {
        term,
        prev_index,
        prev_term,
        entries,
        leader_commit,
        read_seq,
    } = msg
    else {
        return;
    };
    out.push(3);
    for v in [
        term.0,
        prev_index.0,
        prev_term.0,
        leader_commit.0,
        *read_seq,
    ] {
        put(out, v);
    }
    put(out, entries.len() as u64);
    for e in entries {
        encode_entry(e, out);
    }
}

fn encode_entry(e: &Entry, out: &mut Vec<u8>) {
    put(out, e.term.0);
    put(out, e.index.0);
    match &e.kind {
        EntryKind::Noop => out.push(0),
        EntryKind::Command(p) => {
            out.push(1);
            put_bytes(out, p);
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, WireError> {
        let (&first, rest) = self.b.split_first().ok_or(WireError::Malformed("short"))?;
        self.b = rest;
        Ok(first)
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        if self.b.len() < 8 {
            return Err(WireError::Malformed("short"));
        }
        let (head, rest) = self.b.split_at(8);
        self.b = rest;
        Ok(u64::from_le_bytes(head.try_into().unwrap()))
    }

    fn flag(&mut self) -> Result<bool, WireError> {
        match self.u64()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Malformed("bad flag")),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u64()?;
        if n > self.b.len() as u64 {
            return Err(WireError::Malformed("length past end"));
        }
        let (head, rest) = self.b.split_at(n as usize);
        self.b = rest;
        Ok(head)
    }
}

fn decode_message(r: &mut Reader<'_>) -> Result<Message, WireError> {
    Ok(match r.byte()? {
        1 => Message::VoteRequest {
            term: Term(r.u64()?),
            last_index: LogIndex(r.u64()?),
            last_term: Term(r.u64()?),
            pre_vote: r.flag()?,
        },
        2 => Message::VoteResponse {
            term: Term(r.u64()?),
            granted: r.flag()?,
            pre_vote: r.flag()?,
        },
        3 => decode_append(r)?,
        4 => {
            let term = Term(r.u64()?);
            let read_seq = r.u64()?;
            let outcome = match r.byte()? {
                0 => AppendOutcome::Accepted {
                    match_index: LogIndex(r.u64()?),
                },
                1 => AppendOutcome::Rejected {
                    rejected_index: LogIndex(r.u64()?),
                    conflict_term: Some(r.u64()?).filter(|t| *t != u64::MAX).map(Term),
                    conflict_index: LogIndex(r.u64()?),
                },
                _ => return Err(WireError::Malformed("bad append outcome")),
            };
            Message::AppendResponse {
                term,
                outcome,
                read_seq,
            }
        }
        5 => Message::Snapshot {
            term: Term(r.u64()?),
            meta: SnapshotMeta {
                index: LogIndex(r.u64()?),
                term: Term(r.u64()?),
            },
            offset: r.u64()?,
            total_len: r.u64()?,
            read_seq: r.u64()?,
            checksum: u32::try_from(r.u64()?)
                .map_err(|_| WireError::Malformed("snapshot checksum out of range"))?,
            data: Payload::from(r.bytes()?),
        },
        6 => Message::SnapshotResponse {
            term: Term(r.u64()?),
            index: LogIndex(r.u64()?),
            next_offset: r.u64()?,
            installed: r.flag()?,
            read_seq: r.u64()?,
        },
        7 => Message::ReadIndex {
            term: Term(r.u64()?),
            ctx: r.u64()?,
        },
        8 => Message::ReadIndexResponse {
            term: Term(r.u64()?),
            ctx: r.u64()?,
            index: Some(LogIndex(r.u64()?)).filter(|i| i.0 != 0),
        },
        9 => Message::Propose {
            term: Term(r.u64()?),
            command: Payload::from(r.bytes()?),
        },
        _ => return Err(WireError::Malformed("unknown message tag")),
    })
}

fn decode_append(r: &mut Reader<'_>) -> Result<Message, WireError> {
    let term = Term(r.u64()?);
    let prev_index = LogIndex(r.u64()?);
    let prev_term = Term(r.u64()?);
    let leader_commit = LogIndex(r.u64()?);
    let read_seq = r.u64()?;
    let n = r.u64()?;
    // Every entry takes at least 17 bytes: refuse counts the body cannot hold.
    if n > (r.b.len() / 17) as u64 {
        return Err(WireError::Malformed("entry count past end"));
    }
    let mut entries = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let term = Term(r.u64()?);
        let index = LogIndex(r.u64()?);
        let kind = match r.byte()? {
            0 => EntryKind::Noop,
            1 => EntryKind::Command(Payload::from(r.bytes()?)),
            _ => return Err(WireError::Malformed("bad entry kind")),
        };
        entries.push(Entry { term, index, kind });
    }
    Ok(Message::Append {
        term,
        prev_index,
        prev_term,
        entries,
        leader_commit,
        read_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        let e = |i, k| Entry {
            term: Term(3),
            index: LogIndex(i),
            kind: k,
        };
        vec![
            Message::VoteRequest {
                term: Term(4),
                last_index: LogIndex(9),
                last_term: Term(3),
                pre_vote: true,
            },
            Message::VoteResponse {
                term: Term(4),
                granted: false,
                pre_vote: false,
            },
            Message::Append {
                term: Term(3),
                prev_index: LogIndex(1),
                prev_term: Term(2),
                entries: vec![
                    e(2, EntryKind::Noop),
                    e(3, EntryKind::Command(b"x".to_vec().into())),
                ],
                leader_commit: LogIndex(2),
                read_seq: 7,
            },
            Message::AppendResponse {
                term: Term(3),
                outcome: AppendOutcome::Rejected {
                    rejected_index: LogIndex(5),
                    conflict_term: None,
                    conflict_index: LogIndex(2),
                },
                read_seq: 1,
            },
            Message::AppendResponse {
                term: Term(3),
                outcome: AppendOutcome::Accepted {
                    match_index: LogIndex(3),
                },
                read_seq: 0,
            },
            Message::Snapshot {
                term: Term(3),
                meta: SnapshotMeta {
                    index: LogIndex(10),
                    term: Term(2),
                },
                offset: 4,
                total_len: 9,
                data: b"abc".to_vec().into(),
                checksum: 0xdead_beef,
                read_seq: 2,
            },
            Message::SnapshotResponse {
                term: Term(3),
                index: LogIndex(10),
                next_offset: 7,
                installed: true,
                read_seq: 2,
            },
            Message::ReadIndex {
                term: Term(3),
                ctx: 77,
            },
            Message::Propose {
                term: Term(3),
                command: b"put k v".to_vec().into(),
            },
            Message::ReadIndexResponse {
                term: Term(3),
                ctx: 77,
                index: Some(LogIndex(12)),
            },
            Message::ReadIndexResponse {
                term: Term(3),
                ctx: 78,
                index: None,
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let mut b = Vec::new();
            encode_frame(&m, &mut b);
            let (len, crc) = frame_len(b[..8].try_into().unwrap()).unwrap();
            assert_eq!(len, b.len() - 8);
            assert_eq!(decode_frame(&b[8..], crc).unwrap(), m);
        }
    }

    #[test]
    fn damage_and_truncation_are_refused() {
        for m in samples() {
            let mut b = Vec::new();
            encode_frame(&m, &mut b);
            let crc = u32::from_le_bytes(b[4..8].try_into().unwrap());
            for cut in 8..b.len() {
                let body = &b[8..cut];
                assert!(
                    decode_frame(body, crc32c::crc32c(body)).is_err(),
                    "{m:?} cut {cut}"
                );
            }
            let mut flipped = b.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            assert_eq!(decode_frame(&flipped[8..], crc), Err(WireError::Checksum));
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            frame_len(&[0xff; 8]),
            Err(WireError::Oversized(u32::MAX as usize))
        );
        let junk = [9u8, 1, 2, 3];
        assert!(decode_frame(&junk, crc32c::crc32c(&junk)).is_err());
        let h = Handshake {
            cluster_id: 5,
            from: NodeId(1),
            to: NodeId(2),
        };
        let b: [u8; HANDSHAKE_LEN] = h.encode().try_into().unwrap();
        assert_eq!(Handshake::decode(&b, 5), Ok(h));
        assert_eq!(Handshake::decode(&b, 6), Err(WireError::WrongCluster(5)));
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(Handshake::decode(&bad, 5), Err(WireError::BadMagic));
    }
}
