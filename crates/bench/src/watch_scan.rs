//! The watch fan-out client's reader: a gRPC codec that walks each `WatchResponse`
//! in place and keeps only what the client counts (created, canceled, and each event's
//! send time, the first 8 bytes of its value), allocating one small vector per
//! response and decoding nothing else.
//!
//! A thousand watchers receive every event, so the load generator reads a thousand
//! copies of each; on a two-core machine that reading competes with the servers it
//! measures. prost, even with a response type of only the counted fields, allocates
//! and copies per event; this scan does not. Both systems of `--compare-etcd` get this
//! client. Measured in `docs/benchmarks.md` (watch fan-out).

use bytes::{Buf, BytesMut};
use etcdpb::etcdserverpb as pb;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio_stream::Stream;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::Status;

/// `WatchResponse.created`, `.canceled` and `.events`.
const CREATED: u64 = 3;
const CANCELED: u64 = 4;
const EVENTS: u64 = 11;
/// `mvccpb.Event.kv` and `mvccpb.KeyValue.value`.
const EVENT_KV: u64 = 2;
const KV_VALUE: u64 = 5;

/// What the fan-out client reads from one `WatchResponse`.
#[derive(Debug, Default, PartialEq)]
pub struct Seen {
    pub created: bool,
    pub canceled: bool,
    /// Per event: the send time its value carries (ns since the run's origin), or
    /// `None` for an event whose value holds no send time.
    pub sent: Vec<Option<u64>>,
}

/// A protobuf field as the scan meets it.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Reads a varint at the front of `b`, advancing past it.
#[inline(always)]
fn varint(b: &mut &[u8]) -> Option<u64> {
    if let Some((&byte, rest)) = b.split_first() {
        if byte < 0x80 {
            *b = rest;
            return Some(u64::from(byte));
        }
    }
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Reads the next field at the front of `b`: its number and contents.
#[inline(always)]
fn next_field<'a>(b: &mut &'a [u8]) -> Option<(u64, Field<'a>)> {
    let key = varint(b)?;
    let field = match key & 7 {
        0 => Field::Varint(varint(b)?),
        1 | 5 => {
            let n = if key & 7 == 1 { 8 } else { 4 };
            *b = b.get(n..)?;
            Field::Fixed
        }
        2 => {
            let n = usize::try_from(varint(b)?).ok()?;
            let (body, rest) = (b.get(..n)?, b.get(n..)?);
            *b = rest;
            Field::Bytes(body)
        }
        _ => return None,
    };
    Some((key >> 3, field))
}

/// The first field numbered `want` of length-delimited type in `msg`.
fn find_bytes(mut msg: &[u8], want: u64) -> Option<&[u8]> {
    while !msg.is_empty() {
        if let (n, Field::Bytes(b)) = next_field(&mut msg)? {
            if n == want {
                return Some(b);
            }
        }
    }
    None
}

/// Scans one encoded `WatchResponse`; `None` if it is not well-formed protobuf.
pub fn scan(mut msg: &[u8]) -> Option<Seen> {
    let mut seen = Seen::default();
    while !msg.is_empty() {
        match next_field(&mut msg)? {
            (CREATED, Field::Varint(v)) => seen.created = v != 0,
            (CANCELED, Field::Varint(v)) => seen.canceled = v != 0,
            (EVENTS, Field::Bytes(event)) => {
                let value = find_bytes(event, EVENT_KV).and_then(|kv| find_bytes(kv, KV_VALUE));
                let sent = value
                    .and_then(|v| v.get(..8))
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
                seen.sent.push(sent);
            }
            _ => {}
        }
    }
    Some(seen)
}

/// Sends `WatchRequest`s as prost encodes them and reads answers with [`scan`].
#[derive(Default)]
pub struct ScanCodec;

/// The decoding half of [`ScanCodec`].
pub struct ScanDecoder;

impl Decoder for ScanDecoder {
    type Item = Seen;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Seen>, Status> {
        let len = buf.remaining();
        // A decode buffer holds one message, contiguous.
        let seen = scan(&buf.chunk()[..len]);
        buf.advance(len);
        seen.map(Some)
            .ok_or_else(|| Status::internal("a malformed WatchResponse"))
    }
}

impl Codec for ScanCodec {
    type Encode = pb::WatchRequest;
    type Decode = Seen;
    type Encoder = tonic_prost::ProstEncoder<pb::WatchRequest>;
    type Decoder = ScanDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ScanDecoder
    }
}

/// Cuts a gRPC response body, as HTTP/2 DATA chunks arrive, into its messages
/// (1 flag byte, 4-byte big-endian length, the message), reading each in place in its
/// chunk and copying only a message that spans chunks.
#[derive(Default)]
pub struct Messages {
    /// The start of a message whose end has not arrived yet.
    partial: BytesMut,
}

impl Messages {
    /// Calls `each` with every message `chunk` completes, in order.
    pub fn feed(
        &mut self,
        mut chunk: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<(), Status>,
    ) -> Result<(), Status> {
        if !self.partial.is_empty() {
            // Complete the header first, then the message it announces.
            let head = 5usize.saturating_sub(self.partial.len()).min(chunk.len());
            self.partial.extend_from_slice(&chunk[..head]);
            chunk = &chunk[head..];
            let Some(total) = message_len(&self.partial)? else {
                return Ok(());
            };
            let take = (total - self.partial.len()).min(chunk.len());
            self.partial.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.partial.len() < total {
                return Ok(());
            }
            each(&self.partial[5..])?;
            self.partial.clear();
        }
        while let Some(total) = message_len(chunk)? {
            if chunk.len() < total {
                break;
            }
            each(&chunk[5..total])?;
            chunk = &chunk[total..];
        }
        self.partial.extend_from_slice(chunk);
        Ok(())
    }
}

/// The length of the message (with its 5-byte header) `b` starts with, once the
/// header is there.
fn message_len(b: &[u8]) -> Result<Option<usize>, Status> {
    let Some(head) = b.get(..5) else {
        return Ok(None);
    };
    if head[0] != 0 {
        return Err(Status::internal("a compressed WatchResponse"));
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    Ok(Some(5 + len as usize))
}

/// The answers of a Watch call opened on a raw HTTP/2 stream, read with [`scan`].
pub struct SeenStream {
    recv: h2::RecvStream,
    messages: Messages,
    ready: VecDeque<Seen>,
    /// The call ended (or failed): nothing more comes.
    ended: bool,
}

impl SeenStream {
    pub fn new(recv: h2::RecvStream) -> SeenStream {
        SeenStream {
            recv,
            messages: Messages::default(),
            ready: VecDeque::new(),
            ended: false,
        }
    }

    /// Reads a DATA chunk's messages into `ready`.
    fn take(&mut self, chunk: &[u8]) -> Result<(), Status> {
        let _ = self.recv.flow_control().release_capacity(chunk.len());
        let ready = &mut self.ready;
        self.messages.feed(chunk, |m| {
            let seen = scan(m).ok_or_else(|| Status::internal("a malformed WatchResponse"))?;
            ready.push_back(seen);
            Ok(())
        })
    }

    /// The call's end: `None` for status OK, else its error.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Seen, Status>>> {
        let trailers = ready!(self.recv.poll_trailers(cx));
        self.ended = true;
        match trailers {
            Ok(Some(t)) => Poll::Ready(crate::h2::grpc_status(&t).err().map(Err)),
            Ok(None) => Poll::Ready(Some(Err(Status::internal(
                "a Watch call ended without a status",
            )))),
            Err(e) => Poll::Ready(Some(Err(crate::h2::h2_status(e)))),
        }
    }
}

/// Answers in order, as tonic's `Streaming` yields them; an error ends the stream.
impl Stream for SeenStream {
    type Item = Result<Seen, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(seen) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(seen)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let chunk = match ready!(this.recv.poll_data(cx)) {
                None => return this.poll_end(cx),
                Some(Err(e)) => Err(crate::h2::h2_status(e)),
                Some(Ok(chunk)) => this.take(&chunk),
            };
            if let Err(e) = chunk {
                this.ended = true;
                return Poll::Ready(Some(Err(e)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcdpb::mvccpb;
    use prost::Message;

    fn event(value: Vec<u8>) -> mvccpb::Event {
        mvccpb::Event {
            r#type: 0,
            kv: Some(mvccpb::KeyValue {
                key: b"/wf/1".to_vec(),
                create_revision: 300,
                mod_revision: 70_000,
                version: 9,
                value,
                lease: 5,
            }),
            prev_kv: Some(mvccpb::KeyValue {
                key: b"/wf/1".to_vec(),
                value: 9u64.to_le_bytes().to_vec(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn reads_what_prost_would_and_nothing_more() {
        let mut long = 123_456_789u64.to_le_bytes().to_vec();
        long.extend_from_slice(&[b'w'; 300]);
        let r = pb::WatchResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: u64::MAX,
                member_id: 1,
                revision: 70_000,
                raft_term: 4,
            }),
            watch_id: 17,
            created: true,
            compact_revision: -1,
            events: vec![event(long), event(vec![1, 2, 3]), event(vec![])],
            ..Default::default()
        };
        let seen = scan(&r.encode_to_vec()).unwrap();
        assert_eq!(
            seen,
            Seen {
                created: true,
                canceled: false,
                sent: vec![Some(123_456_789), None, None],
            }
        );
        let canceled = pb::WatchResponse {
            canceled: true,
            cancel_reason: "x".into(),
            ..Default::default()
        };
        let seen = scan(&canceled.encode_to_vec()).unwrap();
        assert!(seen.canceled && !seen.created && seen.sent.is_empty());
    }

    #[test]
    fn refuses_truncated_or_malformed_input() {
        let r = pb::WatchResponse {
            events: vec![event(vec![7; 40])],
            ..Default::default()
        };
        let bytes = r.encode_to_vec();
        for cut in 1..bytes.len() {
            assert_eq!(scan(&bytes[..cut]), None, "cut at {cut}");
        }
        assert_eq!(scan(&[0x0b]), None, "wire type 3 (groups) is refused");
        assert_eq!(scan(&[0x80; 11]), None, "a varint longer than 10 bytes");
    }

    #[test]
    fn messages_come_out_whole_however_the_chunks_cut_them() {
        let bodies: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; usize::from(i) * 13]).collect();
        let mut stream = Vec::new();
        for b in &bodies {
            stream.push(0u8);
            stream.extend_from_slice(&(b.len() as u32).to_be_bytes());
            stream.extend_from_slice(b);
        }
        for size in 1..=stream.len() {
            let mut m = Messages::default();
            let mut got = Vec::new();
            for chunk in stream.chunks(size) {
                m.feed(chunk, |msg| {
                    got.push(msg.to_vec());
                    Ok(())
                })
                .unwrap();
            }
            assert_eq!(got, bodies, "chunks of {size}");
            assert!(m.partial.is_empty());
        }
        let mut m = Messages::default();
        assert!(m.feed(&[1, 0, 0, 0, 0], |_| Ok(())).is_err(), "compressed");
    }
}
