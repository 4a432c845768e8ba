//! The lock clients, Jepsen-style. Each loops: grant a lease and keep it alive,
//! `Lock(chaos-lock, lease)` (the lock is held by key K; its create revision Rk is the
//! fencing token), then in the critical section increment two counters:
//!
//! - unfenced: read `lockctr-unfenced`, then a plain Put of the value + 1;
//! - fenced: read `lockctr-fenced`, then a Txn that puts the value + 1 only if
//!   `create_revision(K) == Rk`.
//!
//! Now and then the client "pauses" in the critical section, as a process does in a
//! long GC pause: having read both counters it stops its keep-alives and sleeps past
//! its TTL, then writes as if it still held the lock. By then its lease expired, K was
//! deleted and another client may hold the lock: the unfenced write lands outside the
//! lock (the unsafety of a lease-based lock that Jepsen and Kleppmann describe), the
//! fenced one is refused. Then it unlocks and revokes. `lock_check.rs` judges every
//! acknowledged write against the authoritative history.

use super::lease::{self, sleep_unless, Track};
use super::workload::{connect, Kv, Recording, OP_TIMEOUT};
use etcdpb::etcdserverpb as pb;
use etcdpb::v3lockpb;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The lock's name: contenders' keys are `chaos-lock/LEASE`.
pub const NAME: &str = "chaos-lock";
/// The counter written without a fence.
pub const UNFENCED: &str = "lockctr-unfenced";
/// The counter written only while the lock key still exists as it was created.
pub const FENCED: &str = "lockctr-fenced";
/// The lock's lease TTL (the server's minimum with the default election timeout).
const TTL_S: i64 = 2;
/// How long a client waits for the lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// One acquisition in this many pauses.
const PAUSE_ONE_IN: u64 = 4;
/// How much longer than the TTL a pause lasts.
const PAUSE_PAST_TTL: Duration = Duration::from_millis(2000);

/// Which counter a write went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    Unfenced,
    Fenced,
}

/// How a write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged, at this revision.
    Acked(i64),
    /// The fence refused it (the Txn's compare failed).
    Refused,
    /// Unknown (a timeout or a broken connection).
    Unknown,
}

/// One counter write made in a critical section.
#[derive(Clone, Debug)]
pub struct LockWrite {
    pub client: u64,
    /// The lock key the client believed it held, and its create revision.
    pub lock_key: String,
    pub rk: i64,
    pub fence: Fence,
    /// The value written (the value read + 1).
    pub value: u64,
    pub call_us: u64,
    pub outcome: Outcome,
    /// Made after a simulated pause.
    pub after_pause: bool,
}

/// What the lock clients share.
#[derive(Clone, Debug, Default)]
pub struct LockLog {
    pub writes: Vec<LockWrite>,
    pub acquisitions: u64,
    pub pauses: u64,
}

type LockClient = v3lockpb::lock_client::LockClient<tonic::transport::Channel>;

/// Runs `f` unless `stop` is set first (checked every 50 ms).
async fn unless_stopped<T>(f: impl Future<Output = T>, stop: &AtomicBool) -> Option<T> {
    tokio::pin!(f);
    loop {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        if let Ok(x) = tokio::time::timeout(Duration::from_millis(50), &mut f).await {
            return Some(x);
        }
    }
}

/// A counter's value (0 when absent); None when the read failed.
async fn read_counter(kv: &mut Kv, key: &str) -> Option<u64> {
    match super::workload::get_key(kv, key).await?.first() {
        None => Some(0),
        Some(kv) => String::from_utf8_lossy(&kv.value).parse().ok(),
    }
}

fn put_req(key: &str, value: u64) -> pb::PutRequest {
    pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.to_string().into_bytes(),
        ..Default::default()
    }
}

/// The unfenced write: a plain Put.
async fn write_unfenced(kv: &mut Kv, value: u64) -> Outcome {
    match tokio::time::timeout(OP_TIMEOUT, kv.put(put_req(UNFENCED, value))).await {
        Ok(Ok(r)) => Outcome::Acked(r.into_inner().header.map_or(0, |h| h.revision)),
        _ => Outcome::Unknown,
    }
}

/// The fenced write: a Put only if the lock key still has its create revision.
async fn write_fenced(kv: &mut Kv, lock_key: &str, rk: i64, value: u64) -> Outcome {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let txn = pb::TxnRequest {
        compare: vec![pb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: lock_key.as_bytes().to_vec(),
            target_union: Some(TargetUnion::CreateRevision(rk)),
            ..Default::default()
        }],
        success: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(put_req(FENCED, value))),
        }],
        failure: vec![],
    };
    match tokio::time::timeout(OP_TIMEOUT, kv.txn(txn)).await {
        Ok(Ok(r)) => {
            let r = r.into_inner();
            if r.succeeded {
                Outcome::Acked(r.header.map_or(0, |h| h.revision))
            } else {
                Outcome::Refused
            }
        }
        _ => Outcome::Unknown,
    }
}

/// One lock client's connections and state.
struct Client {
    rec: Arc<Recording>,
    log: Arc<Mutex<LockLog>>,
    id: u64,
    endpoint: String,
    rng: seedrng::Rng,
    kv: Kv,
    leases: pb::lease_client::LeaseClient<tonic::transport::Channel>,
    locks: LockClient,
}

/// A held lock: its key, fencing token, and the keep-alive that holds its lease.
struct Held {
    lease: i64,
    key: String,
    rk: i64,
    halt: Arc<AtomicBool>,
    keep_alive: Option<tokio::task::JoinHandle<()>>,
}

impl Held {
    async fn stop_keep_alive(&mut self) {
        self.halt.store(true, Ordering::Relaxed);
        if let Some(ka) = self.keep_alive.take() {
            let _ = ka.await;
        }
    }
}

impl Client {
    fn reconnect(&mut self) {
        self.kv = connect(&self.endpoint);
        self.leases = lease::lease_client(&self.endpoint);
        self.locks = lock_client(&self.endpoint);
    }

    /// Grants a lease, keeps it alive and takes the lock; None when any step failed
    /// (the lease is revoked then).
    async fn acquire(&mut self) -> Option<Held> {
        let (lease, first) = lease::grant(&self.rec, &mut self.leases, TTL_S).await?;
        let halt = Arc::new(AtomicBool::new(false));
        let track = Arc::new(Mutex::new(Track::default()));
        let every = Duration::from_millis(first.ttl_s as u64 * 1000 / 3);
        let ka = lease::keep_alive(
            self.rec.clone(),
            self.endpoint.clone(),
            lease,
            every,
            halt.clone(),
            track,
        );
        let mut held = Held {
            lease,
            key: String::new(),
            rk: 0,
            halt,
            keep_alive: Some(tokio::spawn(ka)),
        };
        let req = v3lockpb::LockRequest {
            name: NAME.as_bytes().to_vec(),
            lease,
        };
        let got = unless_stopped(
            tokio::time::timeout(LOCK_WAIT, self.locks.lock(req)),
            &self.rec.stop,
        )
        .await;
        let key = match got {
            Some(Ok(Ok(r))) => String::from_utf8_lossy(&r.into_inner().key).to_string(),
            _ => {
                self.release(&mut held).await;
                return None;
            }
        };
        let found = super::workload::get_key(&mut self.kv, &key).await;
        let rk = found.and_then(|kvs| kvs.first().map(|kv| kv.create_revision));
        held.key = key;
        let Some(rk) = rk else {
            self.release(&mut held).await;
            return None;
        };
        held.rk = rk;
        self.log.lock().unwrap().acquisitions += 1;
        Some(held)
    }

    /// Stops the keep-alives, unlocks and revokes (best effort).
    async fn release(&mut self, held: &mut Held) {
        held.stop_keep_alive().await;
        if !held.key.is_empty() {
            let unlock = v3lockpb::UnlockRequest {
                key: held.key.as_bytes().to_vec(),
            };
            let _ = tokio::time::timeout(OP_TIMEOUT, self.locks.unlock(unlock)).await;
        }
        lease::revoke(&mut self.leases, held.lease).await;
    }

    fn record(
        &self,
        held: &Held,
        fence: Fence,
        value: u64,
        call_us: u64,
        outcome: Outcome,
        after_pause: bool,
    ) {
        self.log.lock().unwrap().writes.push(LockWrite {
            client: self.id,
            lock_key: held.key.clone(),
            rk: held.rk,
            fence,
            value,
            call_us,
            outcome,
            after_pause,
        });
    }

    /// One round of the critical section: read both counters, maybe pause, write
    /// both. False when a write's fate is unknown (the client gives the lock up).
    async fn round(&mut self, held: &mut Held, pause: bool) -> bool {
        let Some(u) = read_counter(&mut self.kv, UNFENCED).await else {
            return false;
        };
        let Some(f) = read_counter(&mut self.kv, FENCED).await else {
            return false;
        };
        if pause {
            held.stop_keep_alive().await;
            self.log.lock().unwrap().pauses += 1;
            let d = Duration::from_secs(TTL_S as u64) + PAUSE_PAST_TTL;
            sleep_unless(d, &self.rec.stop).await;
        }
        let call_us = self.rec.now_us();
        let out = write_unfenced(&mut self.kv, u + 1).await;
        self.record(held, Fence::Unfenced, u + 1, call_us, out, pause);
        if out == Outcome::Unknown {
            return false;
        }
        let call_us = self.rec.now_us();
        let out = write_fenced(&mut self.kv, &held.key, held.rk, f + 1).await;
        self.record(held, Fence::Fenced, f + 1, call_us, out, pause);
        out != Outcome::Unknown
    }

    /// One acquisition, critical section and release.
    async fn cycle(&mut self) {
        let Some(mut held) = self.acquire().await else {
            self.reconnect();
            sleep_unless(Duration::from_millis(100), &self.rec.stop).await;
            return;
        };
        let pause = self.rng.chance(1, PAUSE_ONE_IN);
        let rounds = self.rng.range(1, 4);
        for i in 0..rounds {
            let paused = pause && i == 0;
            if !self.round(&mut held, paused).await {
                self.reconnect();
                break;
            }
            if paused {
                break;
            }
        }
        self.release(&mut held).await;
    }
}

fn lock_client(endpoint: &str) -> LockClient {
    let ch = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .expect("valid endpoint")
        .connect_timeout(Duration::from_millis(300))
        .connect_lazy();
    LockClient::new(ch)
}

/// One lock client until `rec.stop`.
pub async fn client(
    rec: Arc<Recording>,
    log: Arc<Mutex<LockLog>>,
    id: u64,
    endpoint: String,
    seed: u64,
) {
    let mut c = Client {
        kv: connect(&endpoint),
        leases: lease::lease_client(&endpoint),
        locks: lock_client(&endpoint),
        rec,
        log,
        id,
        endpoint,
        rng: seedrng::Rng::new(seed),
    };
    while !c.rec.stop.load(Ordering::Relaxed) {
        c.cycle().await;
    }
}

/// `locks.txt`: every counter write.
pub fn text(log: &LockLog) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "# acquisitions {} pauses {}\n# client lock_key rk counter value call_us outcome after_pause\n",
        log.acquisitions, log.pauses
    );
    for w in &log.writes {
        let counter = match w.fence {
            Fence::Unfenced => UNFENCED,
            Fence::Fenced => FENCED,
        };
        let _ = writeln!(
            out,
            "{} {} {} {counter} {} {} {:?} {}",
            w.client, w.lock_key, w.rk, w.value, w.call_us, w.outcome, w.after_pause
        );
    }
    out
}
