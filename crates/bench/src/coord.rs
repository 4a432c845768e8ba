//! The coordination workloads: lease keep-alives, lease cycles and watch fan-out. Each
//! yields the same [`Outcome`] as the key-value workloads, so `--compare-etcd` runs and
//! reports them alike:
//!
//! - `keepalive-CxN`: C clients, each with its own lease and keep-alive stream, over N
//!   connections; an operation is one keep-alive answered.
//! - `lease-CxN`: C clients over N connections; an operation is a cycle of grant (60 s),
//!   put of a key under the lease, and revoke.
//! - `watch-WxN`: W watchers on one prefix, spread over N watch streams on every
//!   member, while 64 clients put under the prefix on the leader; an operation is one
//!   event delivered to one watcher, and its latency is from the put's send to the
//!   event's arrival (the put's value carries its send time).

use crate::load::{dial, Live, Outcome, Spec, Workload, STOP};
use etcdpb::etcdserverpb as pb;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Putters of a watch fan-out case.
const WATCH_PUTTERS: usize = 64;
/// The prefix the fan-out case writes and watches, and its range end.
const WATCH_PREFIX: &[u8] = b"/wf/";
const WATCH_END: &[u8] = b"/wf0";

/// What one task measured: latencies (µs), operations, errors and their kinds.
struct Tally {
    hist: Histogram<u64>,
    ops: u64,
    errors: u64,
    kinds: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            ops: 0,
            errors: 0,
            kinds: BTreeMap::new(),
        }
    }

    fn ok(&mut self, live: &Live, since: Instant) {
        self.record(since.elapsed());
        live.ops.fetch_add(1, Ordering::Relaxed);
    }

    /// One operation of latency `took`, not yet counted in the live figures.
    fn record(&mut self, took: Duration) {
        let us = took.as_micros().clamp(1, 60_000_000) as u64;
        let _ = self.hist.record(us);
        self.ops += 1;
    }

    fn failed(&mut self, live: &Live, why: String) {
        self.errors += 1;
        live.errors.fetch_add(1, Ordering::Relaxed);
        *self.kinds.entry(why).or_default() += 1;
    }
}

fn merge(tallies: Vec<Tally>, elapsed: Duration) -> Outcome {
    let mut out = Outcome {
        hist: Tally::new().hist,
        ops: 0,
        errors: 0,
        cas_failed: 0,
        elapsed,
        error_kinds: BTreeMap::new(),
    };
    for t in tallies {
        out.hist.add(t.hist).expect("same bounds");
        out.ops += t.ops;
        out.errors += t.errors;
        for (k, n) in t.kinds {
            *out.error_kinds.entry(k).or_default() += n;
        }
    }
    out
}

/// Whether `w` is one of these workloads.
pub fn is_coordination(w: Workload) -> bool {
    matches!(
        w,
        Workload::KeepAlive | Workload::LeaseCycle | Workload::WatchFanout
    )
}

/// Runs `spec` (a coordination workload) against `endpoints` (the leader's first).
pub async fn run(
    spec: &Spec,
    endpoints: &[String],
    connect: Duration,
    request: Duration,
    live: Arc<Live>,
) -> Result<Outcome, String> {
    let mut chans = Vec::with_capacity(spec.conns);
    for i in 0..spec.conns {
        chans.push(dial(&endpoints[i % endpoints.len()], connect, request).await?);
    }
    let start = Instant::now();
    let deadline = start + spec.duration;
    let tallies = match spec.workload {
        Workload::KeepAlive => keep_alives(spec, &chans, deadline, &live).await?,
        Workload::LeaseCycle => lease_cycles(spec, &chans, deadline, &live).await,
        Workload::WatchFanout => {
            let leader = dial(&endpoints[0], connect, request).await?;
            watch_fanout(spec, &chans, leader, deadline, &live).await?
        }
        other => return Err(format!("{} is not a coordination workload", other.name())),
    };
    Ok(merge(tallies, start.elapsed()))
}

async fn join(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Vec<Tally> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("client task"));
    }
    out
}

async fn keep_alives(
    spec: &Spec,
    chans: &[Channel],
    deadline: Instant,
    live: &Arc<Live>,
) -> Result<Vec<Tally>, String> {
    let mut tasks = Vec::new();
    for i in 0..spec.clients {
        let mut lease = pb::lease_client::LeaseClient::new(chans[i % chans.len()].clone());
        let grant = pb::LeaseGrantRequest { ttl: 60, id: 0 };
        let id = lease.lease_grant(grant).await.map_err(|e| e.to_string())?;
        let id = id.into_inner().id;
        let live = live.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::new();
            let (tx, rx) = mpsc::channel(1);
            // The first keep-alive goes before the call: a server may send the
            // stream's headers only with its first answer (etcd's does).
            let mut sent = Instant::now();
            if tx.send(pb::LeaseKeepAliveRequest { id }).await.is_err() {
                return t;
            }
            let Ok(answers) = lease.lease_keep_alive(ReceiverStream::new(rx)).await else {
                t.failed(&live, "keep-alive stream refused".into());
                return t;
            };
            let mut answers = answers.into_inner();
            loop {
                match answers.message().await {
                    Ok(Some(a)) if a.ttl > 0 => t.ok(&live, sent),
                    Ok(Some(_)) => t.failed(&live, "lease gone".into()),
                    Ok(None) => break,
                    Err(e) => t.failed(&live, e.message().to_string()),
                }
                if Instant::now() >= deadline || STOP.load(Ordering::Relaxed) {
                    break;
                }
                sent = Instant::now();
                if tx.send(pb::LeaseKeepAliveRequest { id }).await.is_err() {
                    break;
                }
            }
            let _ = lease.lease_revoke(pb::LeaseRevokeRequest { id }).await;
            t
        }));
    }
    Ok(join(tasks).await)
}

async fn lease_cycles(
    spec: &Spec,
    chans: &[Channel],
    deadline: Instant,
    live: &Arc<Live>,
) -> Vec<Tally> {
    let tasks = (0..spec.clients)
        .map(|i| {
            let ch = chans[i % chans.len()].clone();
            let (live, value) = (live.clone(), vec![b'l'; spec.value_size]);
            tokio::spawn(async move {
                let mut lease = pb::lease_client::LeaseClient::new(ch.clone());
                let mut kv = pb::kv_client::KvClient::new(ch);
                let mut t = Tally::new();
                let key = format!("/lease-cycle/{i}").into_bytes();
                while Instant::now() < deadline && !STOP.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let cycle = async {
                        let g = pb::LeaseGrantRequest { ttl: 60, id: 0 };
                        let id = lease.lease_grant(g).await?.into_inner().id;
                        let put = pb::PutRequest {
                            key: key.clone(),
                            value: value.clone(),
                            lease: id,
                            ..Default::default()
                        };
                        kv.put(put).await?;
                        lease.lease_revoke(pb::LeaseRevokeRequest { id }).await?;
                        Ok::<(), tonic::Status>(())
                    };
                    match cycle.await {
                        Ok(()) => t.ok(&live, sent),
                        Err(e) => t.failed(&live, e.message().to_string()),
                    }
                }
                t
            })
        })
        .collect();
    join(tasks).await
}

/// A watch response as the fan-out client reads it: only what it counts (prost skips
/// the other fields without allocating), the value shared with the receive buffer.
/// Both systems get this client, so their figures measure the servers more and the
/// load generator's own decoding less.
#[derive(Clone, PartialEq, prost::Message)]
struct LiteResponse {
    #[prost(bool, tag = "3")]
    created: bool,
    #[prost(bool, tag = "4")]
    canceled: bool,
    #[prost(message, repeated, tag = "11")]
    events: Vec<LiteEvent>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LiteEvent {
    #[prost(message, optional, tag = "2")]
    kv: Option<LiteKv>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LiteKv {
    #[prost(bytes = "bytes", tag = "5")]
    value: bytes::Bytes,
}

/// Opens one watch stream carrying `watchers` watchers of the prefix from `from`; the
/// task counts each event's latency from the send time its value carries.
async fn watch_stream(
    ch: Channel,
    watchers: usize,
    from: i64,
    origin: Instant,
    deadline: Instant,
    live: Arc<Live>,
) -> Result<tokio::task::JoinHandle<Tally>, String> {
    if watchers == 0 {
        return Ok(tokio::spawn(async { Tally::new() }));
    }
    let mut client = tonic::client::Grpc::new(ch);
    client.ready().await.map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(watchers);
    let create = || pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: WATCH_PREFIX.to_vec(),
                range_end: WATCH_END.to_vec(),
                start_revision: from,
                ..Default::default()
            },
        )),
    };
    // The first create goes before the call: a server may send the stream's headers
    // only with its first answer (etcd's does).
    tx.send(create()).await.map_err(|e| e.to_string())?;
    let path = http::uri::PathAndQuery::from_static("/etcdserverpb.Watch/Watch");
    let codec = tonic_prost::ProstCodec::<pb::WatchRequest, LiteResponse>::default();
    let mut events = client
        .streaming(tonic::Request::new(ReceiverStream::new(rx)), path, codec)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    for i in 0..watchers {
        if i > 0 {
            tx.send(create()).await.map_err(|e| e.to_string())?;
        }
        // clientv3 waits for each create's answer before the next.
        match events.message().await {
            Ok(Some(r)) if r.created && !r.canceled => {}
            other => return Err(format!("a watch was not created: {other:?}")),
        }
    }
    Ok(tokio::spawn(async move {
        let _keep_open = tx;
        let mut t = Tally::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(next) = tokio::time::timeout(left, events.message()).await else {
                return t;
            };
            match next {
                Ok(Some(r)) => {
                    let now = Instant::now();
                    for e in &r.events {
                        let sent = e.kv.as_ref().and_then(|kv| kv.value.get(..8));
                        let sent = sent.map(|b| u64::from_le_bytes(b.try_into().unwrap()));
                        match sent {
                            Some(ns) => t.record(now - (origin + Duration::from_nanos(ns))),
                            None => t.failed(&live, "an event without a send time".into()),
                        }
                    }
                    // One shared counter update per response, not per event.
                    live.ops.fetch_add(r.events.len() as u64, Ordering::Relaxed);
                }
                Ok(None) => return t,
                Err(e) => {
                    t.failed(&live, e.message().to_string());
                    return t;
                }
            }
        }
    }))
}

async fn watch_fanout(
    spec: &Spec,
    chans: &[Channel],
    leader: Channel,
    deadline: Instant,
    live: &Arc<Live>,
) -> Result<Vec<Tally>, String> {
    let mut kv = pb::kv_client::KvClient::new(leader.clone());
    let probe = pb::RangeRequest {
        key: b"/wf-probe".to_vec(),
        ..Default::default()
    };
    let rev = kv.range(probe).await.map_err(|e| e.to_string())?;
    let from = rev.into_inner().header.map_or(0, |h| h.revision) + 1;
    let origin = Instant::now();
    let mut tasks = Vec::new();
    for (s, ch) in chans.iter().enumerate() {
        let n = spec.clients / chans.len() + usize::from(s < spec.clients % chans.len());
        let stream = watch_stream(ch.clone(), n, from, origin, deadline, live.clone());
        tasks.push(stream.await?);
    }
    // Putters count nothing: the watchers count what arrives.
    let putters: Vec<_> = (0..WATCH_PUTTERS)
        .map(|i| {
            let mut kv = pb::kv_client::KvClient::new(leader.clone());
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
