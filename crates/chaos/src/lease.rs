//! The lease clients. Each loops: grant a lease, put a key under it, keep it alive
//! over a KeepAlive stream for a random while (every acknowledged keep-alive recorded
//! with its send time, ack time and TTL) while reading the key now and then with
//! linearizable Ranges; then either revoke the lease (and read the key once more) or
//! stop the keep-alives and poll until the key is gone. `lease_check.rs` judges the
//! records. The keep-alive loop is shared with the lock clients.

use super::workload::{connect, Recording, OP_TIMEOUT};
use etcdpb::etcdserverpb as pb;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Every lease client's keys start with this.
pub const PREFIX: &str = "lease/";
/// The TTL the lease clients ask for, in seconds (the server's minimum is 2 s with the
/// default 1 s election timeout: 1.5 election timeouts rounded up to seconds).
pub const TTL_S: i64 = 3;
/// How often a key is read while its lease is kept alive.
const READ_EVERY: Duration = Duration::from_millis(300);
/// How often a key is polled once its lease is left to expire.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// How long a key is polled for after its lease was left to expire.
const POLL_FOR: Duration = Duration::from_secs(25);

type LeaseClient = pb::lease_client::LeaseClient<tonic::transport::Channel>;

/// A lease service client on `endpoint`.
pub fn lease_client(endpoint: &str) -> LeaseClient {
    let ch = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .expect("valid endpoint")
        .connect_timeout(Duration::from_millis(300))
        .connect_lazy();
    LeaseClient::new(ch)
}

/// One acknowledged keep-alive (or the grant, the first of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub sent_us: u64,
    pub acked_us: u64,
    pub ttl_s: i64,
}

/// One linearizable read of a lease's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    pub call_us: u64,
    pub ret_us: u64,
    pub present: bool,
}

/// Everything one lease's holder saw.
#[derive(Clone, Debug, Default)]
pub struct Track {
    pub client: u64,
    pub id: i64,
    pub key: String,
    /// The grant, then every acknowledged keep-alive, in ack order.
    pub acks: Vec<Ack>,
    /// When the put of the key under the lease was acknowledged.
    pub put_acked_us: Option<u64>,
    pub reads: Vec<Read>,
    /// When the holder stopped sending keep-alives.
    pub stopped_us: Option<u64>,
    /// When a keep-alive was answered with TTL 0 (the lease was gone).
    pub gone_reported_us: Option<u64>,
    /// The revoke: when it was sent, and acknowledged.
    pub revoke_sent_us: Option<u64>,
    pub revoke_acked_us: Option<u64>,
}

/// What the lease clients share.
#[derive(Default)]
pub struct LeaseLog {
    pub tracks: Vec<Arc<Mutex<Track>>>,
}

impl LeaseLog {
    /// A copy of every track.
    pub fn snapshot(&self) -> Vec<Track> {
        self.tracks
            .iter()
            .map(|t| t.lock().unwrap().clone())
            .collect()
    }
}

/// Sleeps `d` in slices, returning early (false) once `flag` is set.
pub async fn sleep_unless(d: Duration, flag: &AtomicBool) -> bool {
    let until = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < until {
        if flag.load(Ordering::Relaxed) {
            return false;
        }
        let left = until - tokio::time::Instant::now();
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
    !flag.load(Ordering::Relaxed)
}

/// Keeps `lease` alive through `endpoint` every `every` until `halt` is set: one
/// keep-alive in flight at a time, each acknowledgement recorded in `track` (so an
/// answer always pairs with its own request; a stream whose answer is late is
/// dropped for a fresh one). Returns when halted or when the lease is gone.
pub async fn keep_alive(
    rec: Arc<Recording>,
    endpoint: String,
    lease: i64,
    every: Duration,
    halt: Arc<AtomicBool>,
    track: Arc<Mutex<Track>>,
) {
    let mut client = lease_client(&endpoint);
    while !halt.load(Ordering::Relaxed) {
        let (tx, rx) = mpsc::channel(1);
        let opened =
            tokio::time::timeout(OP_TIMEOUT, client.lease_keep_alive(ReceiverStream::new(rx)))
                .await;
        let Ok(Ok(answers)) = opened else {
            sleep_unless(Duration::from_millis(100), &halt).await;
            client = lease_client(&endpoint);
            continue;
        };
        let mut answers = answers.into_inner();
        while !halt.load(Ordering::Relaxed) {
            let sent_us = rec.now_us();
            if tx
                .send(pb::LeaseKeepAliveRequest { id: lease })
                .await
                .is_err()
            {
                break;
            }
            match tokio::time::timeout(OP_TIMEOUT, answers.message()).await {
                Ok(Ok(Some(r))) if r.ttl > 0 => track.lock().unwrap().acks.push(Ack {
                    sent_us,
                    acked_us: rec.now_us(),
                    ttl_s: r.ttl,
                }),
                Ok(Ok(Some(_))) => {
                    track.lock().unwrap().gone_reported_us = Some(rec.now_us());
                    return;
                }
                _ => break,
            }
            let next = Duration::from_micros(
                (sent_us + every.as_micros() as u64).saturating_sub(rec.now_us()),
            );
            sleep_unless(next, &halt).await;
        }
    }
}

/// Grants a lease of `ttl_s`; (id, the grant as the first ack).
pub async fn grant(rec: &Recording, client: &mut LeaseClient, ttl_s: i64) -> Option<(i64, Ack)> {
    let sent_us = rec.now_us();
    let r = tokio::time::timeout(
        OP_TIMEOUT,
        client.lease_grant(pb::LeaseGrantRequest { ttl: ttl_s, id: 0 }),
    )
    .await
    .ok()?
    .ok()?
    .into_inner();
    let ack = Ack {
        sent_us,
        acked_us: rec.now_us(),
        ttl_s: r.ttl,
    };
    Some((r.id, ack))
}

/// Revokes `lease`; whether it was acknowledged.
pub async fn revoke(client: &mut LeaseClient, lease: i64) -> bool {
    let r = tokio::time::timeout(
        OP_TIMEOUT,
        client.lease_revoke(pb::LeaseRevokeRequest { id: lease }),
    )
    .await;
    matches!(r, Ok(Ok(_)))
}

/// A linearizable read of `key`: whether it exists, or None when the read failed.
async fn read(rec: &Recording, kv: &mut super::workload::Kv, key: &str) -> Option<Read> {
    let call_us = rec.now_us();
    let kvs = super::workload::get_key(kv, key).await?;
    Some(Read {
        call_us,
        ret_us: rec.now_us(),
        present: !kvs.is_empty(),
    })
}

/// A KV connection that is made anew after a failure, so a restarted member is not
/// waited for through the old channel's reconnect backoff.
struct Conn {
    kv: super::workload::Kv,
    endpoint: String,
}

/// Reads the key and records the read; Some(present) when the read succeeded.
async fn read_into(rec: &Recording, c: &mut Conn, t: &Mutex<Track>) -> Option<bool> {
    let key = t.lock().unwrap().key.clone();
    let Some(r) = read(rec, &mut c.kv, &key).await else {
        c.kv = connect(&c.endpoint);
        return None;
    };
    t.lock().unwrap().reads.push(r);
    Some(r.present)
}

/// Puts `key` under `lease`; whether it was acknowledged.
async fn put(kv: &mut super::workload::Kv, key: &str, lease: i64) -> bool {
    let req = pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"held".to_vec(),
        lease,
        ..Default::default()
    };
    matches!(
        tokio::time::timeout(OP_TIMEOUT, kv.put(req)).await,
        Ok(Ok(_))
    )
}

/// One lease client until `rec.stop`.
pub async fn client(
    rec: Arc<Recording>,
    log: Arc<Mutex<LeaseLog>>,
    id: u64,
    endpoint: String,
    seed: u64,
) {
    let mut rng = seedrng::Rng::new(seed);
    let mut leases = lease_client(&endpoint);
    let mut c = Conn {
        kv: connect(&endpoint),
        endpoint: endpoint.clone(),
    };
    let mut n = 0;
    while !rec.stop.load(Ordering::Relaxed) {
        let Some((lease, first)) = grant(&rec, &mut leases, TTL_S).await else {
            leases = lease_client(&endpoint);
            sleep_unless(Duration::from_millis(200), &rec.stop).await;
            continue;
        };
        n += 1;
        let track = Arc::new(Mutex::new(Track {
            client: id,
            id: lease,
            key: format!("{PREFIX}c{id}-{n}"),
            acks: vec![first],
            ..Default::default()
        }));
        log.lock().unwrap().tracks.push(track.clone());
        let key = track.lock().unwrap().key.clone();
        if put(&mut c.kv, &key, lease).await {
            track.lock().unwrap().put_acked_us = Some(rec.now_us());
        } else {
            c.kv = connect(&endpoint);
        }
        let halt = Arc::new(AtomicBool::new(false));
        // Half the leases are kept alive as clients usually do (every TTL/3), half
        // every 150 ms, so that the leader answers most of theirs from memory.
        let every = if rng.range(0, 2) == 0 {
            Duration::from_millis(first.ttl_s as u64 * 1000 / 3)
        } else {
            Duration::from_millis(150)
        };
        let ka = tokio::spawn(keep_alive(
            rec.clone(),
            endpoint.clone(),
            lease,
            every,
            halt.clone(),
            track.clone(),
        ));
        let hold = Duration::from_millis(rng.range(1500, 6000));
        hold_and_read(&rec, &mut c, &track, hold).await;
        halt.store(true, Ordering::Relaxed);
        let _ = ka.await;
        track.lock().unwrap().stopped_us = Some(rec.now_us());
        if rng.chance(1, 3) {
            revoke_and_read(&rec, &mut leases, &mut c, &track, lease).await;
        } else {
            poll_until_gone(&rec, &mut c, &track).await;
        }
    }
}

/// Reads the key every [`READ_EVERY`] for `hold`, or until it reads as absent.
async fn hold_and_read(rec: &Recording, c: &mut Conn, t: &Mutex<Track>, hold: Duration) {
    let until = tokio::time::Instant::now() + hold;
    while tokio::time::Instant::now() < until && !rec.stop.load(Ordering::Relaxed) {
        if read_into(rec, c, t).await == Some(false) {
            return;
        }
        sleep_unless(READ_EVERY, &rec.stop).await;
    }
}

/// Revokes the lease; once acknowledged, the key must read as absent.
async fn revoke_and_read(
    rec: &Recording,
    leases: &mut LeaseClient,
    c: &mut Conn,
    t: &Mutex<Track>,
    lease: i64,
) {
    t.lock().unwrap().revoke_sent_us = Some(rec.now_us());
    if !revoke(leases, lease).await {
        return;
    }
    t.lock().unwrap().revoke_acked_us = Some(rec.now_us());
    for _ in 0..5 {
        if read_into(rec, c, t).await.is_some() {
            return;
        }
    }
}

/// Polls the key until it reads as absent (or for [`POLL_FOR`], or until the stop).
async fn poll_until_gone(rec: &Recording, c: &mut Conn, t: &Mutex<Track>) {
    let until = tokio::time::Instant::now() + POLL_FOR;
    while tokio::time::Instant::now() < until && !rec.stop.load(Ordering::Relaxed) {
        if read_into(rec, c, t).await == Some(false) {
            return;
        }
        sleep_unless(POLL_EVERY, &rec.stop).await;
    }
}

/// How many lease keys `endpoint` still holds (a linearizable count).
pub async fn keys_left(endpoint: &str) -> Result<i64, String> {
    let mut kv = connect(endpoint);
    let req = pb::RangeRequest {
        key: PREFIX.as_bytes().to_vec(),
        range_end: server::recipe::prefix_end(PREFIX.as_bytes()),
        count_only: true,
        ..Default::default()
    };
    match tokio::time::timeout(OP_TIMEOUT, kv.range(req)).await {
        Ok(Ok(r)) => Ok(r.into_inner().count),
        Ok(Err(s)) => Err(s.message().to_string()),
        Err(_) => Err("timeout".into()),
    }
}

/// `leases.txt`: one line per lease, then its acks and reads.
pub fn text(tracks: &[Track]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("# lease client key put_acked_us stopped_us revoke_sent_us revoke_acked_us gone_reported_us\n#   ack sent_us acked_us ttl_s | read call_us ret_us present\n");
    for t in tracks {
        let _ = writeln!(
            out,
            "lease {:x} {} {} {:?} {:?} {:?} {:?} {:?}",
            t.id,
            t.client,
            t.key,
            t.put_acked_us,
            t.stopped_us,
            t.revoke_sent_us,
            t.revoke_acked_us,
            t.gone_reported_us
        );
        for a in &t.acks {
            let _ = writeln!(out, "  ack {} {} {}", a.sent_us, a.acked_us, a.ttl_s);
        }
        for r in &t.reads {
            let _ = writeln!(out, "  read {} {} {}", r.call_us, r.ret_us, r.present);
        }
    }
    out
}
