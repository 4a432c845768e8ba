//! Raft's message codec: how a [`Message`] travels as bytes (the transport adds the
//! framing and checksum), in Protocol Buffers from prost-derived types. One
//! [`pb::Envelope`] carries one message as a oneof; the field numbers are ours and belong
//! to no published schema. A hand-written fixed-width codec measured 4.3× faster per
//! message but no faster end to end (`docs/benchmarks.md`), so the generated types won.
//!
//! Garbage decodes to a [`DecodeError`], never a panic: prost checks every length
//! against the bytes left before it allocates (a repeated field has no count to lie
//! about), and the envelope must be exactly one field spanning the whole buffer, so a
//! truncated message or trailing bytes are refused. Inside a
//! message, unknown fields are skipped and a `bool` is any varint (protobuf's rules).

use crate::message::{AppendOutcome, Message};
use crate::types::{Entry, EntryKind, LogIndex, Payload, SnapshotMeta, Term};
use engine::DecodeError;
use prost::bytes::Bytes;
use prost::Message as _;

/// The wire types. A payload travels as [`Bytes`] so that encoding borrows the
/// message's `Arc` instead of copying it.
mod pb {
    use prost::bytes::Bytes;

    /// One Raft message.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Envelope {
        #[prost(oneof = "Body", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
        pub body: Option<Body>,
    }

    /// Which message, one field number per [`crate::Message`] variant.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Body {
        #[prost(message, tag = "1")]
        VoteRequest(VoteRequest),
        #[prost(message, tag = "2")]
        VoteResponse(VoteResponse),
        #[prost(message, tag = "3")]
        Append(Append),
        #[prost(message, tag = "4")]
        AppendResponse(AppendResponse),
        #[prost(message, tag = "5")]
        Snapshot(Snapshot),
        #[prost(message, tag = "6")]
        SnapshotResponse(SnapshotResponse),
        #[prost(message, tag = "7")]
        ReadIndex(ReadIndex),
        #[prost(message, tag = "8")]
        ReadIndexResponse(ReadIndexResponse),
        #[prost(message, tag = "9")]
        Propose(Propose),
        #[prost(message, tag = "10")]
        TimeoutNow(TimeoutNow),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeoutNow {
        #[prost(uint64, tag = "1")]
        pub term: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VoteRequest {
        #[prost(uint64, tag = "1")]
        pub term: u64,
        #[prost(uint64, tag = "2")]
        pub last_index: u64,
        #[prost(uint64, tag = "3")]
        pub last_term: u64,
        #[prost(bool, tag = "4")]
        pub pre_vote: bool,
        #[prost(bool, tag = "5")]
        pub transfer: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VoteResponse {
        #[prost(uint64, tag = "1")]
        pub term: u64,
        #[prost(bool, tag = "2")]
        pub granted: bool,
        #[prost(bool, tag = "3")]
        pub pre_vote: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Append {
        #[prost(uint64, tag = "1")]
        pub term: u64,
        #[prost(uint64, tag = "2")]
        pub prev_index: u64,
        #[prost(uint64, tag = "3")]
        pub prev_term: u64,
        #[prost(uint64, tag = "4")]
        pub leader_commit: u64,
        #[prost(uint64, tag = "5")]
        pub read_seq: u64,
        #[prost(message, repeated, tag = "6")]
        pub entries: Vec<Entry>,
    }

    /// A log entry; no command means a no-op (an empty command is still a command).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(uint64, tag = "1")]
        pub term: u64,
        #[prost(uint64, tag = "2")]
        pub index: u64,
        #[prost(bytes = "bytes", optional, tag = "3")]
        pub command: Option<Bytes>,
        /// A membership change (`engine::ConfChange`'s binary form).
        #[prost(bytes = "vec", optional, tag = "4")]
        pub config: Option<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AppendResponse {
        #[prost(uint64, tag = "1")]
        pub term: u64,
        #[prost(uint64, tag = "2")]
        pub read_seq: u64,
        #[prost(oneof = "Outcome", tags = "3, 4")]
        pub outcome: Option<Outcome>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Outcome {
        #[prost(message, tag = "3")]
        Accepted(Accepted),
        #[prost(message, tag = "4")]
        Rejected(Rejected),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Accepted {
        #[prost(uint64, tag = "1")]
        pub match_index: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Rejected {
        #[prost(uint64, tag = "1")]
        pub rejected_index: u64,
        #[prost(uint64, optional, tag = "2")]
        pub conflict_term: Option<u64>,
        #[prost(uint64, tag = "3")]
        pub conflict_index: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Snapshot {
        #[prost(uint64, tag = "1")]
        pub term: u64,
        #[prost(uint64, tag = "2")]
        pub meta_index: u64,
        #[prost(uint64, tag = "3")]
        pub meta_term: u64,
        #[prost(uint64, tag = "4")]
        pub offset: u64,
        #[prost(uint64, tag = "5")]
        pub total_len: u64,
        #[prost(bytes = "bytes", tag = "6")]
        pub data: Bytes,
        #[prost(fixed32, tag = "7")]
        pub checksum: u32,
        #[prost(uint64, tag = "8")]
        pub read_seq: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SnapshotResponse {
        #[prost(uint64, tag = "1")]
        pub term: u64,
        #[prost(uint64, tag = "2")]
        pub index: u64,
        #[prost(uint64, tag = "3")]
        pub next_offset: u64,
        #[prost(bool, tag = "4")]
        pub installed: bool,
        #[prost(uint64, tag = "5")]
        pub read_seq: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ReadIndex {
        #[prost(uint64, tag = "1")]
        pub term: u64,
        #[prost(uint64, tag = "2")]
        pub ctx: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ReadIndexResponse {
        #[prost(uint64, tag = "1")]
        pub term: u64,
        #[prost(uint64, tag = "2")]
        pub ctx: u64,
        #[prost(uint64, optional, tag = "3")]
        pub index: Option<u64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Propose {
        #[prost(uint64, tag = "1")]
        pub term: u64,
        #[prost(bytes = "bytes", tag = "2")]
        pub command: Bytes,
    }
}

/// Messages longer than this are decoded from one shared copy (see [`decode`]).
const SHARE_ABOVE: usize = 512;

/// Appends the encoding of `msg` to `out`.
pub fn encode(msg: &Message, out: &mut Vec<u8>) {
    let envelope = pb::Envelope {
        body: Some(to_pb(msg)),
    };
    // Only a full fixed-size buffer can refuse; a Vec grows.
    envelope
        .encode(out)
        .expect("a Vec has room for any message");
}

/// Decodes one message; the bytes must hold exactly one.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    one_field(bytes)?;
    // A large message (one with payloads, in practice) is copied whole first, so that
    // prost's payloads are slices of that copy rather than an allocation each (each is
    // copied once more into its `Arc` either way); a small one is read in place.
    let envelope = if bytes.len() > SHARE_ABOVE {
        pb::Envelope::decode(Bytes::copy_from_slice(bytes))
    } else {
        pb::Envelope::decode(bytes)
    }
    .map_err(|_| DecodeError("malformed protobuf message"))?;
    from_pb(envelope.body.ok_or(DecodeError("unknown message tag"))?)
}

/// Checks that `bytes` is one length-delimited field that ends where the bytes end.
/// Protobuf would accept a cut at a field boundary and merge whatever follows; this
/// refuses both, without a pass over the body.
fn one_field(bytes: &[u8]) -> Result<(), DecodeError> {
    let (&key, mut rest) = bytes.split_first().ok_or(DecodeError("short"))?;
    // The envelope's field numbers fit one key byte; wire type 2 is length-delimited.
    if key & 0x80 != 0 || key & 0x07 != 2 {
        return Err(DecodeError("unknown message tag"));
    }
    let len = prost::decode_length_delimiter(&mut rest).map_err(|_| DecodeError("short"))?;
    match len.cmp(&rest.len()) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(DecodeError("trailing bytes")),
        std::cmp::Ordering::Greater => Err(DecodeError("length past end")),
    }
}

/// Shares the payload's allocation: no copy on the way out.
fn shared(p: &Payload) -> Bytes {
    Bytes::from_owner(p.clone())
}

fn to_pb(msg: &Message) -> pb::Body {
    use pb::Body as B;
    match msg {
        Message::VoteRequest {
            term,
            last_index,
            last_term,
            pre_vote,
            transfer,
        } => B::VoteRequest(pb::VoteRequest {
            term: term.0,
            last_index: last_index.0,
            last_term: last_term.0,
            pre_vote: *pre_vote,
            transfer: *transfer,
        }),
        Message::TimeoutNow { term } => B::TimeoutNow(pb::TimeoutNow { term: term.0 }),
        Message::VoteResponse {
            term,
            granted,
            pre_vote,
        } => B::VoteResponse(pb::VoteResponse {
            term: term.0,
            granted: *granted,
            pre_vote: *pre_vote,
        }),
        Message::Append { .. } => B::Append(append_to_pb(msg)),
        Message::AppendResponse {
            term,
            outcome,
            read_seq,
        } => B::AppendResponse(pb::AppendResponse {
            term: term.0,
            read_seq: *read_seq,
            outcome: Some(outcome_to_pb(outcome)),
        }),
        Message::Snapshot { .. } => B::Snapshot(snapshot_to_pb(msg)),
        Message::SnapshotResponse {
            term,
            index,
            next_offset,
            installed,
            read_seq,
        } => B::SnapshotResponse(pb::SnapshotResponse {
            term: term.0,
            index: index.0,
            next_offset: *next_offset,
            installed: *installed,
            read_seq: *read_seq,
        }),
        Message::ReadIndex { term, ctx } => B::ReadIndex(pb::ReadIndex {
            term: term.0,
            ctx: *ctx,
        }),
        Message::ReadIndexResponse { term, ctx, index } => {
            B::ReadIndexResponse(pb::ReadIndexResponse {
                term: term.0,
                ctx: *ctx,
                index: index.map(|i| i.0),
            })
        }
        Message::Propose { term, command } => B::Propose(pb::Propose {
            term: term.0,
            command: shared(command),
        }),
    }
}

fn append_to_pb(msg: &Message) -> pb::Append {
    let Message::Append {
        term,
        prev_index,
        prev_term,
        entries,
        leader_commit,
        read_seq,
    } = msg
    else {
        unreachable!("called for appends only");
    };
    pb::Append {
        term: term.0,
        prev_index: prev_index.0,
        prev_term: prev_term.0,
        leader_commit: leader_commit.0,
        read_seq: *read_seq,
        entries: entries
            .iter()
            .map(|e| pb::Entry {
                term: e.term.0,
                index: e.index.0,
                command: match &e.kind {
                    EntryKind::Command(p) => Some(shared(p)),
                    _ => None,
                },
                config: match &e.kind {
                    EntryKind::Config(c) => {
                        let mut b = Vec::new();
                        c.encode(&mut b);
                        Some(b)
                    }
                    _ => None,
                },
            })
            .collect(),
    }
}

fn outcome_to_pb(outcome: &AppendOutcome) -> pb::Outcome {
    match outcome {
        AppendOutcome::Accepted { match_index } => pb::Outcome::Accepted(pb::Accepted {
            match_index: match_index.0,
        }),
        AppendOutcome::Rejected {
            rejected_index,
            conflict_term,
            conflict_index,
        } => pb::Outcome::Rejected(pb::Rejected {
            rejected_index: rejected_index.0,
            conflict_term: conflict_term.map(|t| t.0),
            conflict_index: conflict_index.0,
        }),
    }
}

fn snapshot_to_pb(msg: &Message) -> pb::Snapshot {
    let Message::Snapshot {
        term,
        meta,
        offset,
        total_len,
        data,
        checksum,
        read_seq,
    } = msg
    else {
        unreachable!("called for snapshots only");
    };
    pb::Snapshot {
        term: term.0,
        meta_index: meta.index.0,
        meta_term: meta.term.0,
        offset: *offset,
        total_len: *total_len,
        data: shared(data),
        checksum: *checksum,
        read_seq: *read_seq,
    }
}

fn from_pb(body: pb::Body) -> Result<Message, DecodeError> {
    use pb::Body as B;
    Ok(match body {
        B::VoteRequest(m) => Message::VoteRequest {
            term: Term(m.term),
            last_index: LogIndex(m.last_index),
            last_term: Term(m.last_term),
            pre_vote: m.pre_vote,
            transfer: m.transfer,
        },
        B::TimeoutNow(m) => Message::TimeoutNow { term: Term(m.term) },
        B::VoteResponse(m) => Message::VoteResponse {
            term: Term(m.term),
            granted: m.granted,
            pre_vote: m.pre_vote,
        },
        B::Append(m) => append_from_pb(m)?,
        B::AppendResponse(m) => Message::AppendResponse {
            term: Term(m.term),
            outcome: outcome_from_pb(m.outcome.ok_or(DecodeError("bad append outcome"))?),
            read_seq: m.read_seq,
        },
        B::Snapshot(m) => Message::Snapshot {
            term: Term(m.term),
            meta: SnapshotMeta {
                index: LogIndex(m.meta_index),
                term: Term(m.meta_term),
            },
            offset: m.offset,
            total_len: m.total_len,
            data: Payload::from(&m.data[..]),
            checksum: m.checksum,
            read_seq: m.read_seq,
        },
        B::SnapshotResponse(m) => Message::SnapshotResponse {
            term: Term(m.term),
            index: LogIndex(m.index),
            next_offset: m.next_offset,
            installed: m.installed,
            read_seq: m.read_seq,
        },
        B::ReadIndex(m) => Message::ReadIndex {
            term: Term(m.term),
            ctx: m.ctx,
        },
        B::ReadIndexResponse(m) => Message::ReadIndexResponse {
            term: Term(m.term),
            ctx: m.ctx,
            index: m.index.map(LogIndex),
        },
        B::Propose(m) => Message::Propose {
            term: Term(m.term),
            command: Payload::from(&m.command[..]),
        },
    })
}

fn append_from_pb(m: pb::Append) -> Result<Message, DecodeError> {
    let entries = m.entries.into_iter().map(entry_from_pb);
    Ok(Message::Append {
        term: Term(m.term),
        prev_index: LogIndex(m.prev_index),
        prev_term: Term(m.prev_term),
        entries: entries.collect::<Result<_, _>>()?,
        leader_commit: LogIndex(m.leader_commit),
        read_seq: m.read_seq,
    })
}

fn entry_from_pb(e: pb::Entry) -> Result<Entry, DecodeError> {
    let kind = match (e.command, e.config) {
        (None, None) => EntryKind::Noop,
        (Some(c), None) => EntryKind::Command(Payload::from(&c[..])),
        (None, Some(c)) => EntryKind::Config(crate::types::ConfigEntry::decode(&c)?),
        (Some(_), Some(_)) => return Err(DecodeError("entry is both a command and a change")),
    };
    Ok(Entry {
        term: Term(e.term),
        index: LogIndex(e.index),
        kind,
    })
}

fn outcome_from_pb(o: pb::Outcome) -> AppendOutcome {
    match o {
        pb::Outcome::Accepted(a) => AppendOutcome::Accepted {
            match_index: LogIndex(a.match_index),
        },
        pb::Outcome::Rejected(r) => AppendOutcome::Rejected {
            rejected_index: LogIndex(r.rejected_index),
            conflict_term: r.conflict_term.map(Term),
            conflict_index: LogIndex(r.conflict_index),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seedrng::Rng;

    fn base_samples() -> Vec<Message> {
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
                transfer: false,
            },
            Message::VoteRequest {
                term: Term(5),
                last_index: LogIndex(9),
                last_term: Term(4),
                pre_vote: false,
                transfer: true,
            },
            Message::TimeoutNow { term: Term(6) },
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

    /// Every variant, edge values (the largest integers, zero indexes in optional
    /// fields), an empty command, an all-zero message and a heartbeat.
    fn samples() -> Vec<Message> {
        let mut v = base_samples();
        v.extend([
            Message::AppendResponse {
                term: Term(u64::MAX),
                outcome: AppendOutcome::Rejected {
                    rejected_index: LogIndex(u64::MAX),
                    conflict_term: Some(Term(u64::MAX)),
                    conflict_index: LogIndex(0),
                },
                read_seq: u64::MAX,
            },
            Message::ReadIndexResponse {
                term: Term(1),
                ctx: 0,
                index: Some(LogIndex(0)),
            },
            Message::Propose {
                term: Term(2),
                command: Payload::from(&b""[..]),
            },
            Message::VoteResponse {
                term: Term(0),
                granted: false,
                pre_vote: false,
            },
            Message::Append {
                term: Term(5),
                prev_index: LogIndex(9),
                prev_term: Term(5),
                entries: vec![Entry {
                    term: Term(5),
                    index: LogIndex(10),
                    kind: EntryKind::Command(Payload::from(&b""[..])),
                }],
                leader_commit: LogIndex(9),
                read_seq: 3,
            },
            Message::Append {
                term: Term(5),
                prev_index: LogIndex(10),
                prev_term: Term(5),
                entries: Vec::new(),
                leader_commit: LogIndex(10),
                read_seq: 4,
            },
        ]);
        v
    }

    fn encoded(m: &Message) -> Vec<u8> {
        let mut b = Vec::new();
        encode(m, &mut b);
        b
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            assert_eq!(decode(&encoded(&m)).unwrap(), m, "{m:?}");
        }
    }

    #[test]
    fn the_engine_contract_speaks_protobuf() {
        use engine::Engine;
        for m in samples() {
            let mut b = Vec::new();
            crate::RaftNode::encode_message(&m, &mut b);
            assert_eq!(b, encoded(&m));
            assert_eq!(crate::RaftNode::decode_message(&b).unwrap(), m);
        }
    }

    #[test]
    fn encoding_appends() {
        let m = &samples()[2];
        let mut b = b"head".to_vec();
        encode(m, &mut b);
        assert_eq!(&b[..4], b"head");
        assert_eq!(decode(&b[4..]).unwrap(), *m);
    }

    #[test]
    fn truncation_and_trailing_bytes_are_refused() {
        for m in samples() {
            let mut b = encoded(&m);
            for cut in 0..b.len() {
                assert!(decode(&b[..cut]).is_err(), "{m:?} cut {cut}");
            }
            let whole = b.clone();
            b.push(0);
            assert_eq!(decode(&b), Err(DecodeError("trailing bytes")));
            // Two messages back to back would merge under plain protobuf.
            let twice = [whole.clone(), whole].concat();
            assert_eq!(decode(&twice), Err(DecodeError("trailing bytes")));
        }
    }

    #[test]
    fn garbage_is_refused() {
        for g in [
            &[][..],
            &[0xee],
            &[9, 1, 2, 3],
            &[0x0a],                         // a key without its length
            &[0x0a, 0xff, 0xff, 0xff, 0xff], // a length cut short
            &[0x08, 0x00],                   // a varint where the envelope has none
            &[0x5a, 0x00],                   // field 11: no such message
            &[0x22, 0x02, 0x08, 0x01],       // an append response with no outcome
            &[0x0a, 0x02, 0x08, 0xff],       // a term cut inside its varint
            &[0x0a, 0x02, 0x0f, 0x00],       // wire type 7 does not exist
        ] {
            assert!(decode(g).is_err(), "{g:?}");
        }
        assert_eq!(
            decode(&[0x22, 0x02, 0x08, 0x01]),
            Err(DecodeError("bad append outcome"))
        );
    }

    #[test]
    fn a_length_past_the_end_is_refused_before_allocating() {
        // An append that claims 4 GiB, and an entry inside one that claims as much.
        let mut b = vec![0x1a];
        prost::encode_length_delimiter(u32::MAX as usize, &mut b).unwrap();
        assert_eq!(decode(&b), Err(DecodeError("length past end")));
        let mut body = vec![0x32];
        prost::encode_length_delimiter(u32::MAX as usize, &mut body).unwrap();
        let mut b = vec![0x1a, body.len() as u8];
        b.extend_from_slice(&body);
        assert!(decode(&b).is_err());
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let mut rng = Rng::new(7);
        let encodings: Vec<Vec<u8>> = samples().iter().map(encoded).collect();
        for _ in 0..20_000 {
            let mut b = rng.pick(&encodings).unwrap().clone();
            for _ in 0..rng.range(1, 4) {
                let i = rng.range(0, b.len() as u64) as usize;
                b[i] = rng.next_u64() as u8;
            }
            let _ = decode(&b);
            let len = rng.range(0, 40) as usize;
            let noise: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let _ = decode(&noise);
        }
    }
}
