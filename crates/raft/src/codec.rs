//! Raft's message codec: how a [`Message`] travels as bytes (the transport adds the
//! framing and checksum). Every integer is little-endian `u64`, every byte string is
//! length-prefixed; a message is one tag byte and its fields. Garbage decodes to a
//! [`DecodeError`], never a panic, and a count that the bytes cannot hold is refused
//! before anything is allocated for it.

use crate::message::{AppendOutcome, Message};
use crate::types::{Entry, EntryKind, LogIndex, Payload, SnapshotMeta, Term};
use engine::DecodeError;

/// Appends the encoding of `msg` to `out`.
pub fn encode(msg: &Message, out: &mut Vec<u8>) {
    encode_message(msg, out)
}

/// Decodes one message; the bytes must hold exactly one.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader { b: bytes };
    let m = decode_message(&mut r)?;
    if !r.b.is_empty() {
        return Err(DecodeError("trailing bytes"));
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
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&first, rest) = self.b.split_first().ok_or(DecodeError("short"))?;
        self.b = rest;
        Ok(first)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        if self.b.len() < 8 {
            return Err(DecodeError("short"));
        }
        let (head, rest) = self.b.split_at(8);
        self.b = rest;
        Ok(u64::from_le_bytes(head.try_into().unwrap()))
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u64()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad flag")),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u64()?;
        if n > self.b.len() as u64 {
            return Err(DecodeError("length past end"));
        }
        let (head, rest) = self.b.split_at(n as usize);
        self.b = rest;
        Ok(head)
    }
}

fn decode_message(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
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
                _ => return Err(DecodeError("bad append outcome")),
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
                .map_err(|_| DecodeError("snapshot checksum out of range"))?,
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
        _ => return Err(DecodeError("unknown message tag")),
    })
}

fn decode_append(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let term = Term(r.u64()?);
    let prev_index = LogIndex(r.u64()?);
    let prev_term = Term(r.u64()?);
    let leader_commit = LogIndex(r.u64()?);
    let read_seq = r.u64()?;
    let n = r.u64()?;
    // Every entry takes at least 17 bytes: refuse counts the body cannot hold.
    if n > (r.b.len() / 17) as u64 {
        return Err(DecodeError("entry count past end"));
    }
    let mut entries = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let term = Term(r.u64()?);
        let index = LogIndex(r.u64()?);
        let kind = match r.byte()? {
            0 => EntryKind::Noop,
            1 => EntryKind::Command(Payload::from(r.bytes()?)),
            _ => return Err(DecodeError("bad entry kind")),
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn samples() -> Vec<Message> {
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
            encode(&m, &mut b);
            assert_eq!(decode(&b).unwrap(), m);
        }
    }

    #[test]
    fn truncation_and_garbage_are_refused() {
        for m in samples() {
            let mut b = Vec::new();
            encode(&m, &mut b);
            for cut in 0..b.len() {
                assert!(decode(&b[..cut]).is_err(), "{m:?} cut {cut}");
            }
            b.push(0);
            assert_eq!(decode(&b), Err(DecodeError("trailing bytes")));
        }
        assert!(decode(&[9u8, 1, 2, 3]).is_err());
        assert!(decode(&[0xee]).is_err());
        // An append that claims more entries than its bytes can hold.
        let mut b = vec![3u8];
        for v in [1u64, 0, 0, 0, 0, u64::MAX] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(decode(&b), Err(DecodeError("entry count past end")));
    }
}
