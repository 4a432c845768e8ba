//! The peer wire format: any engine's messages as checksummed frames over one TCP
//! stream per direction.
//!
//! A connection opens with a handshake — `MAGIC | cluster_id u64 | from u64 | to u64 |
//! engine [u8; 8]` (integers little-endian, the engine's name NUL-padded) — followed by
//! frames `len u32 | crc32c u32 | group u32 | body`, where `len` and the checksum cover
//! the group and the body. The group names the consensus group the message is for (one
//! today; sharding adds more); the body is one message in the engine's own codec
//! ([`engine::Engine::encode_message`]). A frame of group [`PING_GROUP`] is the
//! transport's own heartbeat, sent to every peer at a steady cadence for the failure
//! detector; its body is an 8-byte token (the sender's clock, opaque to the receiver),
//! which the receiver sends back at once in a frame of group [`PONG_GROUP`], so the
//! sender measures the round trip. Anything that does not parse (wrong magic,
//! another cluster or engine, a bad checksum, an oversized frame, an unknown group, a
//! body the engine's codec refuses) is answered by closing the connection.

use engine::{Engine, NodeId};
use std::fmt;

/// First bytes of every peer connection (the 4 is the format's version: 4 since pings
/// carry a token and are answered by pongs, 3 when Raft's messages became Protocol
/// Buffers; a member of another format is refused at the handshake, before it would
/// close the connection at the first frame it does not know).
pub const MAGIC: &[u8; 8] = b"SYNODP4\0";
/// Handshake length in bytes.
pub const HANDSHAKE_LEN: usize = 8 + 24 + ENGINE_NAME_LEN;
/// Bytes of the engine's name in the handshake.
const ENGINE_NAME_LEN: usize = 8;
/// Bytes before a frame's body: length, checksum, group.
pub const FRAME_HEADER: usize = 8;
/// The one consensus group of a member today.
pub const GROUP: u32 = 0;
/// The group of a transport ping (body: an 8-byte token): a heartbeat for the failure
/// detector, and the first half of a round-trip measurement.
pub const PING_GROUP: u32 = u32::MAX;
/// The group of the answer to a ping (body: the ping's token).
pub const PONG_GROUP: u32 = u32::MAX - 1;
/// Longest hello (`len u32 | name and client URLs`, after the handshake) accepted.
pub const MAX_HELLO: usize = 4096;
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
    /// The peer runs another consensus engine.
    WrongEngine(String),
    /// The frame is for a group this member does not run.
    UnknownGroup(u32),
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
            WireError::WrongEngine(e) => write!(f, "peer runs engine {e:?}"),
            WireError::UnknownGroup(g) => write!(f, "frame for unknown group {g}"),
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
    /// The sender's engine ([`Engine::NAME`]).
    pub engine: &'static str,
}

impl Handshake {
    /// Encodes the handshake.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        for v in [self.cluster_id, self.from.0, self.to.0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let mut name = [0u8; ENGINE_NAME_LEN];
        let n = self.engine.len().min(ENGINE_NAME_LEN);
        name[..n].copy_from_slice(&self.engine.as_bytes()[..n]);
        b.extend_from_slice(&name);
        b
    }

    /// Parses and checks a handshake against our cluster id and engine `E`.
    pub fn decode<E: Engine>(
        b: &[u8; HANDSHAKE_LEN],
        cluster_id: u64,
    ) -> Result<Handshake, WireError> {
        if &b[..8] != MAGIC {
            return Err(WireError::BadMagic);
        }
        let word = |i: usize| u64::from_le_bytes(b[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        let h = Handshake {
            cluster_id: word(0),
            from: NodeId(word(1)),
            to: NodeId(word(2)),
            engine: E::NAME,
        };
        if h.cluster_id != cluster_id {
            return Err(WireError::WrongCluster(h.cluster_id));
        }
        let name = &b[32..32 + ENGINE_NAME_LEN];
        let theirs = name.split(|c| *c == 0).next().unwrap_or_default();
        let ours = &E::NAME.as_bytes()[..E::NAME.len().min(ENGINE_NAME_LEN)];
        if theirs != ours {
            return Err(WireError::WrongEngine(
                String::from_utf8_lossy(theirs).into_owned(),
            ));
        }
        Ok(h)
    }
}

/// Appends one framed message for group [`GROUP`] to `out`.
pub fn encode_frame<E: Engine>(msg: &E::Message, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&GROUP.to_le_bytes());
    E::encode_message(msg, out);
    let body = &out[start + 8..];
    let len = body.len() as u32;
    let crc = crc32c::crc32c(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Bytes of a ping or pong frame.
pub const PING_FRAME: usize = FRAME_HEADER + 4 + 8;

/// Appends a frame of `group` whose body is `token`.
fn encode_token(group: u32, token: u64, out: &mut Vec<u8>) {
    let mut body = [0u8; 12];
    body[..4].copy_from_slice(&group.to_le_bytes());
    body[4..].copy_from_slice(&token.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
}

/// Appends one ping frame carrying `token` to `out`.
pub fn encode_ping(token: u64, out: &mut Vec<u8>) {
    encode_token(PING_GROUP, token, out);
}

/// Appends the answer to a ping that carried `token` to `out`.
pub fn encode_pong(token: u64, out: &mut Vec<u8>) {
    encode_token(PONG_GROUP, token, out);
}

/// What one frame carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<M> {
    /// An engine message.
    Message(M),
    /// A transport ping with its token.
    Ping(u64),
    /// The answer to a ping, with the ping's token.
    Pong(u64),
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

/// Checks a frame body (group and message) against its checksum and decodes it.
pub fn decode_frame<E: Engine>(body: &[u8], crc: u32) -> Result<Frame<E::Message>, WireError> {
    if crc32c::crc32c(body) != crc {
        return Err(WireError::Checksum);
    }
    let Some((group, message)) = body.split_first_chunk::<4>() else {
        return Err(WireError::Malformed("frame shorter than its group"));
    };
    match u32::from_le_bytes(*group) {
        GROUP => E::decode_message(message)
            .map(Frame::Message)
            .map_err(|e| WireError::Malformed(e.0)),
        PING_GROUP | PONG_GROUP => {
            let token = <[u8; 8]>::try_from(message)
                .map_err(|_| WireError::Malformed("a ping or pong without its 8-byte token"))?;
            let token = u64::from_le_bytes(token);
            Ok(if u32::from_le_bytes(*group) == PING_GROUP {
                Frame::Ping(token)
            } else {
                Frame::Pong(token)
            })
        }
        g => Err(WireError::UnknownGroup(g)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::PeerMessage as Message;
    use crate::raft_engine::MemberEngine;
    use raft::{LogIndex, Term};

    /// The framing only: the engine's codec has its own tests.
    fn samples() -> Vec<Message> {
        vec![
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
                ctx: 78,
                index: Some(LogIndex(12)),
            },
        ]
    }

    fn frame(m: &Message) -> Vec<u8> {
        let mut b = Vec::new();
        encode_frame::<MemberEngine>(m, &mut b);
        b
    }

    #[test]
    fn pings_and_pongs_are_frames_of_their_own_groups_carrying_a_token() {
        let token = 0x0102_0304_0506_0708;
        let mut b = Vec::new();
        encode_ping(token, &mut b);
        encode_pong(token, &mut b);
        assert_eq!(b.len(), 2 * PING_FRAME);
        let (ping, pong) = b.split_at(PING_FRAME);
        let decode = |f: &[u8]| {
            let (len, crc) = frame_len(f[..8].try_into().unwrap()).unwrap();
            assert_eq!(len, f.len() - 8);
            decode_frame::<MemberEngine>(&f[8..], crc)
        };
        assert_eq!(decode(ping), Ok(Frame::Ping(token)));
        assert_eq!(decode(pong), Ok(Frame::Pong(token)));
        let mut longer = ping[8..].to_vec();
        longer.push(0);
        for body in [&ping[8..12], &ping[8..19], &longer[..]] {
            let got = decode_frame::<MemberEngine>(body, crc32c::crc32c(body));
            assert!(got.is_err(), "{} bytes: {got:?}", body.len());
        }
    }

    #[test]
    fn every_frame_round_trips() {
        for m in samples() {
            let b = frame(&m);
            let (len, crc) = frame_len(b[..8].try_into().unwrap()).unwrap();
            assert_eq!(len, b.len() - FRAME_HEADER);
            assert_eq!(
                decode_frame::<MemberEngine>(&b[8..], crc).unwrap(),
                Frame::Message(m)
            );
        }
    }

    #[test]
    fn damage_and_truncation_are_refused() {
        for m in samples() {
            let b = frame(&m);
            let crc = u32::from_le_bytes(b[4..8].try_into().unwrap());
            for cut in 8..b.len() {
                let body = &b[8..cut];
                let crc = crc32c::crc32c(body);
                assert!(
                    decode_frame::<MemberEngine>(body, crc).is_err(),
                    "{m:?} cut {cut}"
                );
            }
            let mut flipped = b.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            let got = decode_frame::<MemberEngine>(&flipped[8..], crc);
            assert_eq!(got, Err(WireError::Checksum));
        }
    }

    #[test]
    fn frames_for_another_group_are_refused() {
        let mut b = frame(&samples()[0]);
        b[8] = 7;
        let crc = crc32c::crc32c(&b[8..]);
        let got = decode_frame::<MemberEngine>(&b[8..], crc);
        assert_eq!(got, Err(WireError::UnknownGroup(7)));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            frame_len(&[0xff; 8]),
            Err(WireError::Oversized(u32::MAX as usize))
        );
        let junk = [0u8, 0, 0, 0, 9, 1, 2, 3];
        let got = decode_frame::<MemberEngine>(&junk, crc32c::crc32c(&junk));
        assert!(matches!(got, Err(WireError::Malformed(_))), "{got:?}");
    }

    #[test]
    fn handshakes_name_the_cluster_and_the_engine() {
        let h = Handshake {
            cluster_id: 5,
            from: NodeId(1),
            to: NodeId(2),
            engine: "raft",
        };
        let b: [u8; HANDSHAKE_LEN] = h.encode().try_into().unwrap();
        assert_eq!(Handshake::decode::<MemberEngine>(&b, 5), Ok(h));
        let other = Handshake::decode::<MemberEngine>(&b, 6);
        assert_eq!(other, Err(WireError::WrongCluster(5)));
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(
            Handshake::decode::<MemberEngine>(&bad, 5),
            Err(WireError::BadMagic)
        );
        let paxos = Handshake {
            engine: "paxos",
            ..h
        };
        let b: [u8; HANDSHAKE_LEN] = paxos.encode().try_into().unwrap();
        let got = Handshake::decode::<MemberEngine>(&b, 5);
        assert_eq!(got, Err(WireError::WrongEngine("paxos".into())));
    }
}
