//! The load generator behind `synod bench`: closed-loop clients (or an open-loop fixed
//! rate) over a number of gRPC connections to any etcd v3 endpoint, Synod or etcd.
//!
//! Clients go round-robin over connections, connections round-robin over endpoints (the
//! leader's first). Latency is the time from a request's start to its answer, in
//! microseconds, recorded per client in an HdrHistogram and merged at the end; failed
//! requests are counted, not timed.

use crate::h2::{GrpcClient, Kv};
use etcdpb::etcdserverpb::{
    self as pb, compare, kv_client::KvClient, maintenance_client::MaintenanceClient, request_op,
    response_op,
};
use hdrhistogram::Histogram;
use seedrng::Rng;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// Set by SIGINT/SIGTERM: every run ends early and clusters are stopped.
pub static STOP: std::sync::LazyLock<std::sync::Arc<AtomicBool>> =
    std::sync::LazyLock::new(Default::default);

/// Distinct error messages kept per run.
const MAX_ERROR_KINDS: usize = 16;
/// Highest latency the histograms hold, in microseconds (one hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// What every request of a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Put a random key.
    Put,
    /// Linearizable Range of one random key.
    Get,
    /// Serializable Range of one random key (served by the member it reaches).
    Sget,
    /// Compare-and-set: put a random key if its mod revision is the one last seen.
    Txn,
    /// Linearizable gets (`--read-ratio` of requests) and puts.
    Mixed,
    /// Lease keep-alives, one lease and stream per client (see `coord`).
    #[value(name = "keepalive")]
    KeepAlive,
    /// Lease cycles: grant, put under the lease, revoke.
    #[value(name = "lease")]
    LeaseCycle,
    /// Watch fan-out: CLIENTS watchers on one prefix while 64 clients put under it.
    #[value(name = "watch")]
    WatchFanout,
}

impl Workload {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Sget => "sget",
            Workload::Txn => "txn",
            Workload::Mixed => "mixed",
            Workload::KeepAlive => "keepalive",
            Workload::LeaseCycle => "lease",
            Workload::WatchFanout => "watch",
        }
    }
}

/// The shape of one run.
#[derive(Clone, Debug)]
pub struct Spec {
    pub workload: Workload,
    pub clients: usize,
    pub conns: usize,
    pub duration: Duration,
    /// Requests per second over all clients (open loop); `None`: closed loop.
    pub rate: Option<u64>,
    pub key_size: usize,
    pub value_size: usize,
    pub key_space: u64,
    pub read_ratio: f64,
    pub seed: u64,
    /// The gRPC client the requests go through.
    pub client: GrpcClient,
}

/// Counters the progress bar reads while a run goes on.
#[derive(Default)]
pub struct Live {
    pub ops: AtomicU64,
    pub errors: AtomicU64,
}

/// What one run measured.
pub struct Outcome {
    /// Latency of successful requests, in microseconds.
    pub hist: Histogram<u64>,
    pub ops: u64,
    pub errors: u64,
    /// Compare-and-sets whose compare failed (answered, so not errors).
    pub cas_failed: u64,
    /// From the first request's start to the last answer.
    pub elapsed: Duration,
    /// Error message -> count.
    pub error_kinds: BTreeMap<String, u64>,
}

/// Keys as zero-padded decimal indices of exactly `size` bytes.
pub fn key(size: usize, i: u64) -> Vec<u8> {
    format!("{i:0size$}").into_bytes()
}

/// Checks that the key space fits the key size.
pub fn check_spec(spec: &Spec) -> Result<(), String> {
    let digits = spec.key_space.saturating_sub(1).to_string().len();
    if spec.key_size < digits {
        return Err(format!(
            "--key-size {} cannot hold {} distinct keys (needs {digits} bytes)",
            spec.key_size, spec.key_space
        ));
    }
    if spec.clients == 0 || spec.conns == 0 || spec.key_space == 0 {
        return Err("--clients, --conns and --key-space must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&spec.read_ratio) {
        return Err("--read-ratio must be between 0 and 1".into());
    }
    Ok(())
}

/// An error with its whole chain of causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// One gRPC connection to `ep` (`host:port` or a URL), established now.
pub async fn dial(ep: &str, connect: Duration, request: Duration) -> Result<Channel, String> {
    let url = if ep.contains("://") {
        ep.to_string()
    } else {
        format!("http://{ep}")
    };
    let endpoint = Endpoint::from_shared(url)
        .map_err(|e| format!("endpoint {ep}: {}", chain(&e)))?
        .tcp_nodelay(true)
        .connect_timeout(connect)
        .timeout(request);
    // Corked writes: requests issued in one scheduler pass leave in one write.
    let connector = tower::service_fn(|uri: tonic::transport::Uri| async move {
        let host = uri.host().unwrap_or("127.0.0.1");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(80);
        let s = tokio::net::TcpStream::connect((host, port)).await?;
        s.set_nodelay(true)?;
        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(server::corked::Corked::new(s)))
    });
    match tokio::time::timeout(connect, endpoint.connect_with_connector(connector)).await {
        Err(_) => Err(format!("endpoint {ep}: no connection within {connect:?}")),
        Ok(Err(e)) => Err(format!("endpoint {ep}: cannot connect: {}", chain(&e))),
        Ok(Ok(ch)) => Ok(ch),
    }
}

/// One endpoint's member id, the leader it reports and its Raft term.
async fn status(ep: &str, connect: Duration) -> Result<(u64, u64, u64), String> {
    let ch = dial(ep, connect, connect * 2).await?;
    let mut client = MaintenanceClient::new(ch);
    let resp = match tokio::time::timeout(connect, client.status(pb::StatusRequest {})).await {
        Err(_) => {
            return Err(format!(
                "endpoint {ep}: connected, but no answer to a status request within {connect:?} \
                 (not an etcd v3 gRPC endpoint?)"
            ))
        }
        Ok(Err(s)) => return Err(format!("endpoint {ep}: status: {}", s.message())),
        Ok(Ok(r)) => r.into_inner(),
    };
    let member = resp.header.map_or(0, |h| h.member_id);
    Ok((member, resp.leader, resp.raft_term))
}

/// What the endpoints said about the cluster.
pub struct Probe {
    /// The endpoints, the leader's first (the given order otherwise).
    pub ordered: Vec<String>,
    /// The endpoint that answered as leader, if one did.
    pub leader: Option<String>,
    /// The highest Raft term any endpoint reported.
    pub term: u64,
}

/// Asks every endpoint for its status (so an endpoint that does not answer fails here,
/// with a clear message, before any load starts).
pub async fn probe(endpoints: &[String], connect: Duration) -> Result<Probe, String> {
    let (mut leader, mut term) = (None, 0);
    for ep in endpoints {
        let (member, lead, t) = status(ep, connect).await?;
        if lead != 0 && member == lead {
            leader = Some(ep.clone());
        }
        term = term.max(t);
    }
    let mut ordered: Vec<String> = leader.iter().cloned().collect();
    ordered.extend(
        endpoints
            .iter()
            .filter(|e| Some(*e) != leader.as_ref())
            .cloned(),
    );
    Ok(Probe {
        ordered,
        leader,
        term,
    })
}

/// The highest Raft term the endpoints report now (0 if none answers).
pub async fn term_now(endpoints: &[String], connect: Duration) -> u64 {
    let mut term = 0;
    for ep in endpoints {
        if let Ok((_, _, t)) = status(ep, connect).await {
            term = term.max(t);
        }
    }
    term
}

/// `conns` connections, round-robin over `endpoints`.
pub async fn connect_all(
    endpoints: &[String],
    conns: usize,
    connect: Duration,
    request: Duration,
) -> Result<Vec<Channel>, String> {
    let mut out = Vec::with_capacity(conns);
    for i in 0..conns {
        out.push(dial(&endpoints[i % endpoints.len()], connect, request).await?);
    }
    Ok(out)
}

/// `conns` KV connections of `spec.client`'s kind, round-robin over `endpoints`.
pub async fn connect_kv(
    endpoints: &[String],
    spec: &Spec,
    connect: Duration,
    request: Duration,
) -> Result<Vec<Kv>, String> {
    let mut out = Vec::with_capacity(spec.conns);
    for i in 0..spec.conns {
        let ep = &endpoints[i % endpoints.len()];
        out.push(match spec.client {
            GrpcClient::Tonic => Kv::Tonic(KvClient::new(dial(ep, connect, request).await?)),
            GrpcClient::H2 => Kv::H2(crate::h2::dial_h2(ep, connect, request).await?),
        });
    }
    Ok(out)
}

/// What every client of a run shares.
struct Shared {
    spec: Spec,
    value: Vec<u8>,
    live: Arc<Live>,
    start: Instant,
    deadline: Instant,
    /// Open loop: the next request's slot in the schedule.
    next_slot: AtomicU64,
    error_kinds: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn note_error(&self, s: &tonic::Status) {
        self.live.errors.fetch_add(1, Ordering::Relaxed);
        let mut kinds = self.error_kinds.lock().unwrap();
        let msg = format!("{:?}: {}", s.code(), s.message());
        if kinds.len() < MAX_ERROR_KINDS || kinds.contains_key(&msg) {
            *kinds.entry(msg).or_default() += 1;
        } else {
            *kinds.entry("(other errors)".into()).or_default() += 1;
        }
    }

    /// When the next request starts, or `None` when the run is over. Open loop: the
    /// request's slot in the fixed schedule; it may go out up to 1 ms early (timer
    /// resolution) and its latency counts from the slot when it goes out late.
    async fn next_start(&self) -> Option<Instant> {
        if STOP.load(Ordering::Relaxed) {
            return None;
        }
        let Some(rate) = self.spec.rate else {
            let now = Instant::now();
            return (now < self.deadline).then_some(now);
        };
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let due = self.start + Duration::from_secs_f64(slot as f64 / rate as f64);
        if due >= self.deadline {
            return None;
        }
        let early = due.checked_sub(Duration::from_millis(1)).unwrap_or(due);
        if early > Instant::now() {
            tokio::time::sleep_until(early.into()).await;
        }
        Some(Instant::now().min(due))
    }
}

/// One closed-loop client (or one open-loop worker).
struct Client {
    kv: Kv,
    rng: Rng,
    /// Txn: the mod revision last seen per key index.
    revs: HashMap<u64, i64>,
    cas_failed: u64,
}

impl Client {
    fn put(&self, key: Vec<u8>, sh: &Shared) -> pb::PutRequest {
        pb::PutRequest {
            key,
            value: sh.value.clone(),
            ..Default::default()
        }
    }

    async fn op(&mut self, sh: &Shared) -> Result<(), tonic::Status> {
        let i = self.rng.range(0, sh.spec.key_space);
        let key = key(sh.spec.key_size, i);
        let range = |serializable| pb::RangeRequest {
            key: key.clone(),
            serializable,
            ..Default::default()
        };
        match sh.spec.workload {
            Workload::Put => self.kv.put(self.put(key, sh)).await.map(drop),
            Workload::Get => self.kv.range(range(false)).await.map(drop),
            Workload::Sget => self.kv.range(range(true)).await.map(drop),
            Workload::Mixed if self.rng.unit() < sh.spec.read_ratio => {
                self.kv.range(range(false)).await.map(drop)
            }
            Workload::Mixed => self.kv.put(self.put(key.clone(), sh)).await.map(drop),
            Workload::Txn => self.cas(i, key, sh).await,
            // Run by `coord`, never through this loop.
            Workload::KeepAlive | Workload::LeaseCycle | Workload::WatchFanout => Err(
                tonic::Status::unimplemented("a coordination workload in the key-value loop"),
            ),
        }
    }

    /// Puts `key` if its mod revision is the one this client last saw (0: absent);
    /// otherwise reads it to learn the current one.
    async fn cas(&mut self, i: u64, key: Vec<u8>, sh: &Shared) -> Result<(), tonic::Status> {
        let seen = self.revs.get(&i).copied().unwrap_or(0);
        let txn = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Mod as i32,
                key: key.clone(),
                target_union: Some(compare::TargetUnion::ModRevision(seen)),
                ..Default::default()
            }],
            success: vec![pb::RequestOp {
                request: Some(request_op::Request::RequestPut(self.put(key.clone(), sh))),
            }],
            failure: vec![pb::RequestOp {
                request: Some(request_op::Request::RequestRange(pb::RangeRequest {
                    key,
                    ..Default::default()
                })),
            }],
        };
        let resp = self.kv.txn(txn).await?;
        let rev = if resp.succeeded {
            resp.header.map_or(0, |h| h.revision)
        } else {
            self.cas_failed += 1;
            match resp.responses.first().and_then(|r| r.response.as_ref()) {
                Some(response_op::Response::ResponseRange(r)) => {
                    r.kvs.first().map_or(0, |kv| kv.mod_revision)
                }
                _ => 0,
            }
        };
        self.revs.insert(i, rev);
        Ok(())
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

async fn client_loop(mut c: Client, sh: Arc<Shared>) -> (Histogram<u64>, u64, u64, u64) {
    let mut hist = histogram();
    let (mut ops, mut errors) = (0, 0);
    while let Some(start) = sh.next_start().await {
        match c.op(&sh).await {
            Ok(()) => {
                let us = start.elapsed().as_micros() as u64;
                hist.saturating_record(us.max(1));
                ops += 1;
                sh.live.ops.fetch_add(1, Ordering::Relaxed);
            }
            Err(s) => {
                errors += 1;
                sh.note_error(&s);
            }
        }
    }
    (hist, ops, errors, c.cas_failed)
}

/// Runs `spec` over `channels` until its duration is over (or [`STOP`]).
pub async fn run(spec: &Spec, conns: &[Kv], live: Arc<Live>) -> Outcome {
    let mut value = vec![0u8; spec.value_size];
    let mut rng = Rng::new(spec.seed);
    value
        .iter_mut()
        .for_each(|b| *b = b'a' + rng.range(0, 26) as u8);
    let start = Instant::now();
    let sh = Arc::new(Shared {
        spec: spec.clone(),
        value,
        live,
        start,
        deadline: start + spec.duration,
        next_slot: AtomicU64::new(0),
        error_kinds: Mutex::new(BTreeMap::new()),
    });
    let tasks: Vec<_> = (0..spec.clients)
        .map(|i| {
            let c = Client {
                kv: conns[i % conns.len()].clone(),
                rng: rng.fork(i as u64),
                revs: HashMap::new(),
                cas_failed: 0,
            };
            tokio::spawn(client_loop(c, sh.clone()))
        })
        .collect();
    let mut out = Outcome {
        hist: histogram(),
        ops: 0,
        errors: 0,
        cas_failed: 0,
        elapsed: Duration::ZERO,
        error_kinds: BTreeMap::new(),
    };
    for t in tasks {
        let (h, ops, errors, cas_failed) = t.await.expect("client task");
        out.hist.add(h).expect("same bounds");
        out.ops += ops;
        out.errors += errors;
        out.cas_failed += cas_failed;
    }
    out.elapsed = start.elapsed();
    out.error_kinds = std::mem::take(&mut *sh.error_kinds.lock().unwrap());
    out
}

/// Writes every key of the key space once (not measured), `clients` at a time.
pub async fn preload(spec: &Spec, conns: &[Kv], live: Arc<Live>) -> Result<(), String> {
    let value = Arc::new(vec![b'p'; spec.value_size]);
    let tasks: Vec<_> = (0..spec.clients)
        .map(|c| {
            let mut kv = conns[c % conns.len()].clone();
            let (value, live, spec) = (value.clone(), live.clone(), spec.clone());
            tokio::spawn(async move {
                let step = spec.clients as u64;
                for i in (c as u64..spec.key_space).step_by(step as usize) {
                    if STOP.load(Ordering::Relaxed) {
                        return Err("interrupted".to_string());
                    }
                    let req = pb::PutRequest {
                        key: key(spec.key_size, i),
                        value: value.to_vec(),
                        ..Default::default()
                    };
                    put_retrying(&mut kv, req).await?;
                    live.ops.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| format!("preload task: {e}"))??;
    }
    Ok(())
}

/// A put that rides out a leader change or a stalled member (preloading is not
/// measured, and writing the same key twice changes nothing that matters); each retry is
/// reported on stderr.
async fn put_retrying(kv: &mut Kv, req: pb::PutRequest) -> Result<(), String> {
    use tonic::Code;
    let mut attempt = 0;
    loop {
        match kv.put(req.clone()).await {
            Ok(_) => return Ok(()),
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded
                ) && attempt < 10 =>
            {
                attempt += 1;
                eprintln!(
                    "preload: put failed ({:?}: {}); retrying",
                    s.code(),
                    s.message()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => return Err(format!("preload put: {}", s.message())),
        }
    }
}
