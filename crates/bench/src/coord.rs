//! The coordination workloads: lease keep-alives, lease cycles and watch fan-out. Each
//! yields the same [`Outcome`] as the key-value workloads, so `--compare-etcd` runs and
//! reports them alike:
//!
//! - `keepalive-CxN`: C clients, each with its own lease and keep-alive stream, over N
//!   connections; an operation is one keep-alive answered.
//! - `lease-CxN`: C clients over N connections; an operation is a cycle of grant (60 s),
//!   put of a key under the lease, and revoke.
//! - `watch-WxN`: watch fan-out, in [`crate::fanout`].

use crate::h2::GrpcClient;
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

/// What one task measured: latencies (µs), operations, errors and their kinds.
pub struct Tally {
    hist: Histogram<u64>,
    ops: u64,
    errors: u64,
    kinds: BTreeMap<String, u64>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::new()
    }
}

impl Tally {
    pub fn new() -> Tally {
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
    pub fn record(&mut self, took: Duration) {
        let us = took.as_micros().clamp(1, 60_000_000) as u64;
        let _ = self.hist.record(us);
        self.ops += 1;
    }

    pub fn failed(&mut self, live: &Live, why: String) {
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

/// The gRPC client `spec` runs with: the watch fan-out uses the one `--grpc-client`
/// names; the lease workloads use tonic's clients whatever it says.
pub fn client_used(spec: &Spec) -> GrpcClient {
    match spec.workload {
        Workload::WatchFanout => spec.client,
        _ => GrpcClient::Tonic,
    }
}

/// Runs `spec` (a coordination workload) against `endpoints` (the leader's first).
pub async fn run(
    spec: &Spec,
    endpoints: &[String],
    connect: Duration,
    request: Duration,
    live: Arc<Live>,
) -> Result<Outcome, String> {
    // The fan-out dials its own connections, of the `--grpc-client` kind.
    let mut chans = Vec::with_capacity(spec.conns);
    if spec.workload != Workload::WatchFanout {
        for i in 0..spec.conns {
            chans.push(dial(&endpoints[i % endpoints.len()], connect, request).await?);
        }
    }
    let start = Instant::now();
    let deadline = start + spec.duration;
    let tallies = match spec.workload {
        Workload::KeepAlive => keep_alives(spec, &chans, deadline, &live).await?,
        Workload::LeaseCycle => lease_cycles(spec, &chans, deadline, &live).await,
        Workload::WatchFanout => {
            crate::fanout::run(spec, endpoints, connect, request, deadline, &live).await?
        }
        other => return Err(format!("{} is not a coordination workload", other.name())),
    };
    Ok(merge(tallies, start.elapsed()))
}

pub async fn join(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Vec<Tally> {
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
