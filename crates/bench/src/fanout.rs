//! The watch fan-out workload (`watch-WxN`): W watchers on one prefix, spread over N
//! watch streams on every member, while 64 clients put under the prefix on the
//! leader. An operation is one event delivered to one watcher; its latency runs from
//! the put's send to the event's arrival (the put's value carries its send time).
//!
//! With `--grpc-client h2` (the default) the watch streams and the putters are raw
//! HTTP/2 streams and the answers are read in place ([`crate::watch_scan`]); with
//! `tonic`, tonic's streaming client and `KvClient`. Both systems of `--compare-etcd`
//! get the same client.

use crate::coord::{join, Tally};
use crate::h2::{dial_h2, frame, GrpcClient, H2Conn, Kv};
use crate::load::{dial, Live, Spec, STOP};
use crate::watch_scan::{ScanCodec, Seen, SeenStream};
use etcdpb::etcdserverpb as pb;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::Status;

/// Putters of a watch fan-out case.
const WATCH_PUTTERS: usize = 64;
/// The prefix the fan-out case writes and watches, and its range end.
const WATCH_PREFIX: &[u8] = b"/wf/";
const WATCH_END: &[u8] = b"/wf0";

/// One watch stream's connection.
enum StreamConn {
    Tonic(Channel),
    H2(H2Conn),
}

/// Runs the fan-out against `endpoints` (the leader's first) until `deadline`.
pub async fn run(
    spec: &Spec,
    endpoints: &[String],
    connect: Duration,
    request: Duration,
    deadline: Instant,
    live: &Arc<Live>,
) -> Result<Vec<Tally>, String> {
    let mut conns = Vec::with_capacity(spec.conns);
    for i in 0..spec.conns {
        let ep = &endpoints[i % endpoints.len()];
        conns.push(match spec.client {
            GrpcClient::Tonic => StreamConn::Tonic(dial(ep, connect, request).await?),
            GrpcClient::H2 => StreamConn::H2(dial_h2(ep, connect, request).await?),
        });
    }
    let mut leader = match spec.client {
        GrpcClient::Tonic => Kv::Tonic(pb::kv_client::KvClient::new(
            dial(&endpoints[0], connect, request).await?,
        )),
        GrpcClient::H2 => Kv::H2(dial_h2(&endpoints[0], connect, request).await?),
    };
    let probe = pb::RangeRequest {
        key: b"/wf-probe".to_vec(),
        ..Default::default()
    };
    let rev = leader.range(probe).await.map_err(|e| e.to_string())?;
    let from = rev.header.map_or(0, |h| h.revision) + 1;
    let origin = Instant::now();
    let mut tasks = Vec::new();
    for (s, conn) in conns.into_iter().enumerate() {
        let n = spec.clients / spec.conns + usize::from(s < spec.clients % spec.conns);
        if n == 0 {
            continue; // more streams than watchers
        }
        let at = Counting {
            origin,
            deadline,
            live: live.clone(),
        };
        tasks.push(match conn {
            StreamConn::Tonic(ch) => watch_tonic(ch, n, from, at).await?,
            StreamConn::H2(c) => watch_h2(c, n, from, at).await?,
        });
    }
    // Putters count nothing: the watchers count what arrives.
    let putters: Vec<_> = (0..WATCH_PUTTERS)
        .map(|i| {
            let mut kv = leader.clone();
            let size = spec.value_size.max(8);
            tokio::spawn(async move {
                let key = [WATCH_PREFIX, format!("{i}").as_bytes()].concat();
                while Instant::now() < deadline && !STOP.load(Ordering::Relaxed) {
                    let mut value = vec![b'w'; size];
                    let ns = origin.elapsed().as_nanos() as u64;
                    value[..8].copy_from_slice(&ns.to_le_bytes());
                    let put = pb::PutRequest {
                        key: key.clone(),
                        value,
                        ..Default::default()
                    };
                    if kv.put(put).await.is_err() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            })
        })
        .collect();
    for p in putters {
        let _ = p.await;
    }
    Ok(join(tasks).await)
}

fn create(from: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: WATCH_PREFIX.to_vec(),
                range_end: WATCH_END.to_vec(),
                start_revision: from,
                ..Default::default()
            },
        )),
    }
}

/// What a stream's task needs to count what it receives.
struct Counting {
    origin: Instant,
    deadline: Instant,
    live: Arc<Live>,
}

impl Counting {
    /// Counts what `answers` brings until the deadline or its end, in a task of its
    /// own; `keep_open` (the request side) stays open until then.
    fn count(
        self,
        mut answers: impl Stream<Item = Result<Seen, Status>> + Unpin + Send + 'static,
        keep_open: impl Send + 'static,
    ) -> JoinHandle<Tally> {
        tokio::spawn(async move {
            let _keep_open = keep_open;
            let mut t = Tally::new();
            loop {
                let left = self.deadline.saturating_duration_since(Instant::now());
                let Ok(next) = tokio::time::timeout(left, answers.next()).await else {
                    return t;
                };
                if !self.answer(&mut t, next) {
                    return t;
                }
            }
        })
    }

    /// Counts one answer's events into `t`; `false` once the stream is over.
    fn answer(&self, t: &mut Tally, next: Option<Result<Seen, Status>>) -> bool {
        match next {
            Some(Ok(r)) => {
                let now = Instant::now();
                for &sent in &r.sent {
                    match sent {
                        Some(ns) => t.record(now - (self.origin + Duration::from_nanos(ns))),
                        None => t.failed(&self.live, "an event without a send time".into()),
                    }
                }
                // One shared counter update per answer, not per event.
                self.live
                    .ops
                    .fetch_add(r.sent.len() as u64, Ordering::Relaxed);
                true
            }
            None => false,
            Some(Err(e)) => {
                t.failed(&self.live, e.message().to_string());
                false
            }
        }
    }
}

/// Creates the watchers of a stream whose first create went with the call, one at a
/// time as clientv3 does (each create waits for the previous one's answer); `send`
/// sends one more create.
async fn create_all(
    watchers: usize,
    answers: &mut (impl Stream<Item = Result<Seen, Status>> + Unpin),
    mut send: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    for i in 0..watchers {
        if i > 0 {
            send()?;
        }
        match answers.next().await {
            Some(Ok(r)) if r.created && !r.canceled => {}
            other => return Err(format!("a watch was not created: {other:?}")),
        }
    }
    Ok(())
}

/// Opens one tonic watch stream carrying `watchers` watchers of the prefix from
/// `from`, and the task that counts its events.
async fn watch_tonic(
    ch: Channel,
    watchers: usize,
    from: i64,
    at: Counting,
) -> Result<JoinHandle<Tally>, String> {
    let mut client = tonic::client::Grpc::new(ch);
    client.ready().await.map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(watchers);
    // The first create goes before the call: a server may send the stream's headers
    // only with its first answer (etcd's does).
    tx.send(create(from)).await.map_err(|e| e.to_string())?;
    let path = http::uri::PathAndQuery::from_static("/etcdserverpb.Watch/Watch");
    let mut answers = client
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            path,
            ScanCodec,
        )
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    // The channel holds every create: sending never waits.
    create_all(watchers, &mut answers, || {
        tx.try_send(create(from)).map_err(|e| e.to_string())
    })
    .await?;
    Ok(at.count(answers, tx))
}

/// As [`watch_tonic`], on a raw HTTP/2 stream.
async fn watch_h2(
    conn: H2Conn,
    watchers: usize,
    from: i64,
    at: Counting,
) -> Result<JoinHandle<Tally>, String> {
    let (mut body, recv) = conn
        .open_watch(&create(from))
        .await
        .map_err(|e| e.to_string())?;
    let mut answers = SeenStream::new(recv);
    create_all(watchers, &mut answers, || {
        body.send_data(frame(&create(from)), false)
            .map_err(|e| e.to_string())
    })
    .await?;
    Ok(at.count(answers, body))
}
