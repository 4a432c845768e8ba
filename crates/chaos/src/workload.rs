//! The client workload: registers with read, write and compare-and-set over a small key
//! set, clients spread over every member, every operation's invocation and completion
//! recorded. A write whose fate is unknown (timeout, broken connection, lost leader) is
//! recorded as indeterminate; only `etcdserver: no leader` proves a write never happened.

use check::{KvInput, KvOutput};
use etcdpb::etcdserverpb as pb;
use pb::kv_client::KvClient;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Registers in use at any time.
pub const KEYS_PER_EPOCH: u64 = 5;
/// Clients move to fresh keys every this many seconds, so each key's history stays
/// small enough to check exhaustively (as Jepsen's independent keys do).
pub const EPOCH_SECS: u64 = 5;
/// Pause between a client's operations.
pub const THINK: Duration = Duration::from_millis(15);
/// How long a client waits for one operation.
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);

/// One recorded operation.
#[derive(Clone, Debug)]
pub struct OpRecord {
    /// Client id.
    pub client: u64,
    /// Member the client talks to.
    pub member: usize,
    /// What was asked.
    pub input: KvInput,
    /// Invocation, µs since the run started.
    pub call_us: u64,
    /// Completion, if the client saw one.
    pub ret_us: Option<u64>,
    /// The answer, if any.
    pub output: Option<KvOutput>,
    /// Error text when it failed.
    pub error: Option<String>,
    /// Failed in a way that proves it had no effect (dropped from the history).
    pub definite_failure: bool,
    /// The response header's revision.
    pub revision: i64,
}

impl OpRecord {
    /// A write (put, or a compare-and-set that could change the key).
    pub fn is_write(&self) -> bool {
        !matches!(self.input, KvInput::Get { .. })
    }

    /// Completed successfully.
    pub fn ok(&self) -> bool {
        self.output.is_some()
    }
}

/// What every client shares.
pub struct Recording {
    /// When the run started.
    pub start: Instant,
    /// Every operation.
    pub ops: Mutex<Vec<OpRecord>>,
    /// Set to stop the clients.
    pub stop: AtomicBool,
    /// Revisions that went backwards, as text.
    pub regressions: Mutex<Vec<String>>,
}

impl Recording {
    /// A new recording starting now.
    pub fn new() -> Arc<Recording> {
        Arc::new(Recording {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            regressions: Mutex::new(Vec::new()),
        })
    }

    /// Microseconds since the start.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// A KV client.
pub type Kv = KvClient<Channel>;

/// A client connection to `endpoint`.
pub fn connect(endpoint: &str) -> Kv {
    let ch = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .expect("valid endpoint")
        .connect_timeout(Duration::from_millis(300))
        .tcp_nodelay(true)
        .connect_lazy();
    KvClient::new(ch)
}

/// A linearizable read of one key within [`OP_TIMEOUT`]: its key-values (none or one),
/// or None when the read failed or timed out.
pub async fn get_key(
    kv: &mut KvClient<Channel>,
    key: &str,
) -> Option<Vec<etcdpb::mvccpb::KeyValue>> {
    let req = pb::RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    let r = tokio::time::timeout(OP_TIMEOUT, kv.range(req))
        .await
        .ok()?
        .ok()?;
    Some(r.into_inner().kvs)
}

fn value_of(kvs: &[etcdpb::mvccpb::KeyValue]) -> Result<Option<u64>, String> {
    match kvs.first() {
        None => Ok(None),
        Some(kv) => String::from_utf8_lossy(&kv.value)
            .parse()
            .map(Some)
            .map_err(|_| format!("unparsable value {:?}", kv.value)),
    }
}

fn put_op(key: &str, value: u64) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.to_string().into_bytes(),
            ..Default::default()
        })),
    }
}

/// Sends one operation; the output and header revision, or the error text.
pub async fn execute(
    kv: &mut KvClient<Channel>,
    input: &KvInput,
) -> Result<(KvOutput, i64), tonic::Status> {
    let rev = |h: Option<pb::ResponseHeader>| h.map_or(0, |h| h.revision);
    match input {
        KvInput::Get { key } => {
            let r = kv
                .range(pb::RangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            let v = value_of(&r.kvs).map_err(tonic::Status::internal)?;
            Ok((KvOutput::Get(v), rev(r.header)))
        }
        KvInput::Put { key, value } => {
            let r = kv
                .put(pb::PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: value.to_string().into_bytes(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok((KvOutput::Put, rev(r.header)))
        }
        KvInput::Cas { key, expected, new } => {
            use pb::compare::{CompareResult, CompareTarget, TargetUnion};
            let compare = match expected {
                Some(v) => pb::Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Value as i32,
                    key: key.as_bytes().to_vec(),
                    target_union: Some(TargetUnion::Value(v.to_string().into_bytes())),
                    ..Default::default()
                },
                None => pb::Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Create as i32,
                    key: key.as_bytes().to_vec(),
                    target_union: Some(TargetUnion::CreateRevision(0)),
                    ..Default::default()
                },
            };
            let r = kv
                .txn(pb::TxnRequest {
                    compare: vec![compare],
                    success: vec![put_op(key, *new)],
                    failure: vec![],
                })
                .await?
                .into_inner();
            Ok((KvOutput::Cas { ok: r.succeeded }, rev(r.header)))
        }
        KvInput::Delete { key } => {
            let r = kv
                .delete_range(pb::DeleteRangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok((
                KvOutput::Delete {
                    deleted: r.deleted > 0,
                },
                rev(r.header),
            ))
        }
    }
}

/// Runs one operation with the timeout and records it.
pub async fn record(
    rec: &Recording,
    kv: &mut KvClient<Channel>,
    client: u64,
    member: usize,
    input: KvInput,
) -> OpRecord {
    let call_us = rec.now_us();
    let result = tokio::time::timeout(OP_TIMEOUT, execute(kv, &input)).await;
    let ret = rec.now_us();
    let mut op = OpRecord {
        client,
        member,
        input,
        call_us,
        ret_us: None,
        output: None,
        error: None,
        definite_failure: false,
        revision: 0,
    };
    match result {
        Ok(Ok((out, revision))) => {
            op.ret_us = Some(ret);
            op.output = Some(out);
            op.revision = revision;
        }
        Ok(Err(s)) => {
            op.definite_failure = s.message() == "etcdserver: no leader" || !op.is_write();
            op.error = Some(format!("{:?}: {}", s.code(), s.message()));
        }
        Err(_) => {
            op.definite_failure = !op.is_write();
            op.error = Some("timeout".into());
        }
    }
    rec.ops.lock().unwrap().push(op.clone());
    op
}

/// One closed-loop client until `rec.stop`.
pub async fn client(rec: Arc<Recording>, id: u64, member: usize, endpoint: String, seed: u64) {
    let mut kv = connect(&endpoint);
    let mut rng = seedrng::Rng::new(seed);
    let mut seen: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut max_rev = 0i64;
    let mut seq = 0u64;
    while !rec.stop.load(Ordering::Relaxed) {
        let epoch = rec.start.elapsed().as_secs() / EPOCH_SECS;
        let key = format!("e{epoch}-r{}", rng.range(0, KEYS_PER_EPOCH));
        seq += 1;
        let fresh = (id << 32) | seq;
        let input = match rng.range(0, 10) {
            0..=4 => KvInput::Get { key: key.clone() },
            5..=7 => KvInput::Put {
                key: key.clone(),
                value: fresh,
            },
            _ => KvInput::Cas {
                key: key.clone(),
                expected: seen.get(&key).copied().flatten(),
                new: fresh,
            },
        };
        let op = record(&rec, &mut kv, id, member, input).await;
        match (&op.input, &op.output) {
            (KvInput::Get { .. }, Some(KvOutput::Get(v))) => {
                seen.insert(key, *v);
            }
            (KvInput::Put { value, .. }, Some(_)) => {
                seen.insert(key, Some(*value));
            }
            _ => {}
        }
        tokio::time::sleep(THINK).await;
        if op.ok() {
            if op.revision < max_rev {
                rec.regressions.lock().unwrap().push(format!(
                    "client {id} on member {member}: revision {} after {max_rev}",
                    op.revision
                ));
            }
            max_rev = max_rev.max(op.revision);
        } else {
            // Back off a little so a dead member is not hammered; after a transport
            // failure start a fresh channel, so the client does not sit out the
            // channel's own reconnect backoff once the member is back.
            if op
                .error
                .as_ref()
                .is_some_and(|e| !e.contains("etcdserver:"))
            {
                kv = connect(&endpoint);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
