//! The Watch service's route and response type, written by hand instead of generated,
//! so that an event is encoded once per member rather than once per watcher.
//!
//! Under fan-out the same event goes to many watchers. The generated service would
//! take a `WatchResponse` per watcher and encode every event of it again (cloning the
//! key and value first). Here a response is a [`WatchOut`]: either an ordinary
//! `WatchResponse` (creates, cancels, progress) or an [`EventsOut`] whose events are
//! already protobuf-encoded `mvccpb.Event`s shared by reference count, which the codec
//! only copies into the frame. The bytes on the wire are those of a `WatchResponse`.
//! Measured in `docs/benchmarks.md` (watch fan-out).

use crate::watch_svc::WatchService;
use etcdpb::etcdserverpb as pb;
use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{http, BoxFuture, StdError};
use tonic::{Status, Streaming};

/// `WatchResponse`'s field numbers this module writes.
const HEADER: u32 = 1;
const WATCH_ID: u32 = 2;
const FRAGMENT: u32 = 7;
const EVENTS: u32 = 11;

/// Room tonic's encoder allocates for a stream's responses at a time, and how much it
/// gathers before it hands them to HTTP/2 (its default).
const FRAME_BUFFER: usize = 128 << 10;
const YIELD_AT: usize = 32 << 10;

/// The stream of answers one Watch call returns.
pub type OutStream = ReceiverStream<Result<WatchOut, Status>>;

/// One response on a watch stream.
#[derive(Debug)]
pub enum WatchOut {
    /// Anything but events: created, canceled, progress.
    Plain(pb::WatchResponse),
    /// Events for one watcher, encoded already.
    Events(EventsOut),
}

/// A `WatchResponse` carrying events (and nothing of created/canceled/compaction).
#[derive(Debug)]
pub struct EventsOut {
    /// The response header (its revision: the last one of these events).
    pub header: Option<pb::ResponseHeader>,
    /// The watcher.
    pub watch_id: i64,
    /// More fragments of this response follow.
    pub fragment: bool,
    /// Each an encoded `mvccpb.Event` (its fields, without tag or length).
    pub events: Vec<Bytes>,
    /// More events, after `events`, framed already as `WatchResponse.events` fields
    /// (tag, length, event): one buffer that every watcher of the same selection on a
    /// stream shares.
    pub framed: Bytes,
}

/// Appends `event` (an encoded `mvccpb.Event`) to `buf` as a `WatchResponse.events`
/// field, as [`EventsOut::framed`] holds them.
pub fn frame_event(event: &[u8], buf: &mut impl BufMut) {
    encoding::encode_key(EVENTS, WireType::LengthDelimited, buf);
    encoding::encode_varint(event.len() as u64, buf);
    buf.put_slice(event);
}

impl EventsOut {
    fn encode_fields(&self, buf: &mut impl BufMut) {
        if let Some(h) = &self.header {
            encoding::message::encode(HEADER, h, buf);
        }
        if self.watch_id != 0 {
            encoding::int64::encode(WATCH_ID, &self.watch_id, buf);
        }
        if self.fragment {
            encoding::bool::encode(FRAGMENT, &self.fragment, buf);
        }
        for e in &self.events {
            frame_event(e, buf);
        }
        buf.put_slice(&self.framed);
    }

    fn fields_len(&self) -> usize {
        let header = self
            .header
            .as_ref()
            .map_or(0, |h| encoding::message::encoded_len(HEADER, h));
        let id = if self.watch_id != 0 {
            encoding::int64::encoded_len(WATCH_ID, &self.watch_id)
        } else {
            0
        };
        let fragment = if self.fragment {
            encoding::bool::encoded_len(FRAGMENT, &self.fragment)
        } else {
            0
        };
        let events: usize = self
            .events
            .iter()
            .map(|e| {
                encoding::key_len(EVENTS) + encoding::encoded_len_varint(e.len() as u64) + e.len()
            })
            .sum();
        header + id + fragment + events + self.framed.len()
    }
}

impl prost::Message for WatchOut {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            WatchOut::Plain(r) => r.encode_raw(buf),
            WatchOut::Events(e) => e.encode_fields(buf),
        }
    }

    /// Never decoded here: every field is skipped.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        match self {
            WatchOut::Plain(r) => r.encoded_len(),
            WatchOut::Events(e) => e.fields_len(),
        }
    }

    fn clear(&mut self) {
        *self = WatchOut::Plain(pb::WatchResponse::default());
    }
}

/// Decodes `WatchRequest`s as prost does; encodes [`WatchOut`]s into room reserved
/// for the whole response first, in a frame buffer of [`FRAME_BUFFER`]. tonic's
/// default buffer starts at 8 KiB and grows by reallocation (a copy of everything
/// encoded so far, each time) while it gathers responses up to its 32 KiB yield point.
struct WatchCodec;

/// The encoding half of [`WatchCodec`].
struct WatchEncoder;

impl tonic::codec::Encoder for WatchEncoder {
    type Item = WatchOut;
    type Error = Status;

    fn encode(
        &mut self,
        item: WatchOut,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        let len = prost::Message::encoded_len(&item);
        buf.reserve(len);
        prost::Message::encode_raw(&item, buf);
        Ok(())
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        tonic::codec::BufferSettings::new(FRAME_BUFFER, YIELD_AT)
    }
}

impl tonic::codec::Codec for WatchCodec {
    type Encode = WatchOut;
    type Decode = pb::WatchRequest;
    type Encoder = WatchEncoder;
    type Decoder = tonic_prost::ProstDecoder<pb::WatchRequest>;

    fn encoder(&mut self) -> WatchEncoder {
        WatchEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// The `etcdserverpb.Watch` service as the gRPC server routes it.
#[derive(Clone)]
pub struct WatchRoute {
    svc: Arc<WatchService>,
}

impl WatchRoute {
    /// Routes `/etcdserverpb.Watch/Watch` to `svc`.
    pub fn new(svc: WatchService) -> WatchRoute {
        WatchRoute { svc: Arc::new(svc) }
    }
}

impl tonic::server::NamedService for WatchRoute {
    const NAME: &'static str = "etcdserverpb.Watch";
}

/// One Watch call, as tonic's streaming server drives it.
struct Call(Arc<WatchService>);

impl tonic::server::StreamingService<pb::WatchRequest> for Call {
    type Response = WatchOut;
    type ResponseStream = OutStream;
    type Future = BoxFuture<tonic::Response<OutStream>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<pb::WatchRequest>>) -> Self::Future {
        let svc = self.0.clone();
        Box::pin(async move { svc.watch(request).await })
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for WatchRoute
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let svc = self.svc.clone();
        Box::pin(async move {
            if req.uri().path() != "/etcdserverpb.Watch/Watch" {
                return Ok(Status::unimplemented("").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(WatchCodec);
            Ok(grpc.streaming(Call(svc), req).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcdpb::mvccpb;
    use prost::Message as _;

    #[test]
    fn encoded_events_make_the_bytes_of_the_ordinary_response() {
        let events: Vec<mvccpb::Event> = (0..3u8)
            .map(|i| mvccpb::Event {
                r#type: i32::from(i % 2),
                kv: Some(mvccpb::KeyValue {
                    key: vec![b'k', i],
                    value: vec![i; 300],
                    mod_revision: 40 + i64::from(i),
                    ..Default::default()
                }),
                prev_kv: None,
            })
            .collect();
        let header = Some(pb::ResponseHeader {
            cluster_id: 7,
            member_id: 9,
            revision: 42,
            raft_term: 3,
        });
        let plain = pb::WatchResponse {
            header,
            watch_id: 5,
            fragment: true,
            events: events.clone(),
            ..Default::default()
        };
        let out = WatchOut::Events(EventsOut {
            header,
            watch_id: 5,
            fragment: true,
            events: events[..1]
                .iter()
                .map(|e| Bytes::from(e.encode_to_vec()))
                .collect(),
            framed: {
                let mut framed = Vec::new();
                for e in &events[1..] {
                    frame_event(&e.encode_to_vec(), &mut framed);
                }
                Bytes::from(framed)
            },
        });
        assert_eq!(out.encoded_len(), plain.encoded_len());
        assert_eq!(out.encode_to_vec(), plain.encode_to_vec());
        let back = pb::WatchResponse::decode(out.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, plain);
    }
}
