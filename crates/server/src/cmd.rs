//! Log entry payloads: a client write as it travels through Raft.
//!
//! Layout: `version u8 (1) | request id u64 LE | kind u8 | protobuf body`, where the body
//! is the etcd wire message of that kind (our own definitions in `etcdpb`). Every member
//! decodes the same bytes into the same `kv::Request`, so apply is deterministic.

use crate::convert;
use etcdpb::etcdserverpb as pb;
use prost::Message as _;

const VERSION: u8 = 1;

/// A replicated write.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// `KV/Put`.
    Put(pb::PutRequest),
    /// `KV/DeleteRange`.
    DeleteRange(pb::DeleteRangeRequest),
    /// `KV/Txn`.
    Txn(pb::TxnRequest),
    /// `KV/Compact`.
    Compact(pb::CompactionRequest),
}

/// A payload that does not decode: the log is damaged or from another version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPayload(pub &'static str);

impl std::fmt::Display for BadPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "undecodable log payload: {}", self.0)
    }
}

impl Write {
    /// Encodes with the proposer's request id.
    pub fn encode(&self, id: u64) -> Vec<u8> {
        let (kind, len) = match self {
            Write::Put(p) => (1, p.encoded_len()),
            Write::DeleteRange(d) => (2, d.encoded_len()),
            Write::Txn(t) => (3, t.encoded_len()),
            Write::Compact(c) => (4, c.encoded_len()),
        };
        // One allocation of the final size: the body is encoded in place.
        let mut b = Vec::with_capacity(10 + len);
        b.push(VERSION);
        b.extend_from_slice(&id.to_le_bytes());
        b.push(kind);
        let encoded = match self {
            Write::Put(p) => p.encode(&mut b),
            Write::DeleteRange(d) => d.encode(&mut b),
            Write::Txn(t) => t.encode(&mut b),
            Write::Compact(c) => c.encode(&mut b),
        };
        encoded.expect("a Vec grows as needed");
        b
    }

    /// Decodes a payload into (request id, write).
    pub fn decode(b: &[u8]) -> Result<(u64, Write), BadPayload> {
        if b.len() < 10 || b[0] != VERSION {
            return Err(BadPayload("short or unknown version"));
        }
        let id = u64::from_le_bytes(b[1..9].try_into().unwrap());
        let body = &b[10..];
        let bad = |_| BadPayload("protobuf");
        let w = match b[9] {
            1 => Write::Put(pb::PutRequest::decode(body).map_err(bad)?),
            2 => Write::DeleteRange(pb::DeleteRangeRequest::decode(body).map_err(bad)?),
            3 => Write::Txn(pb::TxnRequest::decode(body).map_err(bad)?),
            4 => Write::Compact(pb::CompactionRequest::decode(body).map_err(bad)?),
            _ => return Err(BadPayload("unknown kind")),
        };
        Ok((id, w))
    }

    /// The state machine's request (a put's key and value move, not copied).
    pub fn into_kv(self) -> kv::Request {
        match self {
            Write::Put(p) => kv::Request::Put(convert::put_into(p)),
            Write::DeleteRange(d) => kv::Request::DeleteRange(convert::delete_in(&d)),
            Write::Txn(t) => kv::Request::Txn(convert::txn_in(&t)),
            Write::Compact(c) => kv::Request::Compact(c.revision),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let w = Write::Put(pb::PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        });
        let b = w.encode(42);
        assert_eq!(Write::decode(&b).unwrap(), (42, w));
        assert!(Write::decode(&b[..5]).is_err());
        let mut bad = b.clone();
        bad[9] = 9;
        assert!(Write::decode(&bad).is_err());
    }
}
