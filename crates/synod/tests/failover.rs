//! SIGKILL of the leader during a stream of puts: a new leader serves within 3 s, every
//! acknowledged put survives, and the killed member catches up after restart — by log
//! when close behind, by snapshot when it fell behind the compaction point.

mod common;

use common::{http_get, Cluster};
use etcdpb::etcdserverpb::kv_client::KvClient;
use etcdpb::etcdserverpb::{PutRequest, RangeRequest};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

struct Writer {
    clients: Vec<(usize, KvClient<Channel>)>,
    next: usize,
    acked: BTreeMap<String, String>,
    seq: u64,
}

impl Writer {
    async fn new(c: &Cluster) -> Writer {
        let mut clients = Vec::new();
        for (i, m) in c.members.iter().enumerate() {
            let ch =
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", m.client))
                    .unwrap()
                    .connect_timeout(Duration::from_millis(500))
                    .connect_lazy();
            clients.push((i, KvClient::new(ch)));
        }
        Writer {
            clients,
            next: 0,
            acked: BTreeMap::new(),
            seq: 0,
        }
    }

    /// One put through the next member that is not `avoid`; true when acknowledged.
    async fn put_once(&mut self, avoid: Option<usize>) -> bool {
        self.seq += 1;
        let (key, value) = (format!("k{:06}", self.seq % 500), format!("v{}", self.seq));
        self.next = (self.next + 1) % self.clients.len();
        let (i, client) = &mut self.clients[self.next];
        if Some(*i) == avoid {
            return false;
        }
        let mut req = tonic::Request::new(PutRequest {
            key: key.clone().into_bytes(),
            value: value.clone().into_bytes(),
            ..Default::default()
        });
        req.set_timeout(Duration::from_secs(2));
        match tokio::time::timeout(Duration::from_secs(2), client.put(req)).await {
            Ok(Ok(_)) => {
                self.acked.insert(key, value);
                true
            }
            _ => false,
        }
    }

    async fn put_n(&mut self, n: usize, avoid: Option<usize>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut done = 0;
        while done < n {
            assert!(
                Instant::now() < deadline,
                "only {done} of {n} puts succeeded in 60 s"
            );
            if self.put_once(avoid).await {
                done += 1;
            }
        }
    }

    /// Reads every acknowledged key from member `i` (serializable: local state).
    async fn check_member(&mut self, i: usize, serializable: bool) {
        let client = &mut self.clients[i].1;
        for (k, v) in &self.acked {
            let r = client
                .range(RangeRequest {
                    key: k.clone().into_bytes(),
                    serializable,
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("get {k} on member {i}: {e}"))
                .into_inner();
            let got = r
                .kvs
                .first()
                .map(|kv| String::from_utf8_lossy(&kv.value).to_string());
            assert_eq!(got.as_deref(), Some(v.as_str()), "member {i}, key {k}");
        }
    }
}

fn metric(c: &Cluster, i: usize, name: &str) -> u64 {
    c.metric(i, name)
        .unwrap_or_else(|| panic!("no metric {name}")) as u64
}

/// Waits until member `i` has applied everything the leader committed.
fn wait_caught_up(c: &Cluster, i: usize, leader: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let want = c.status_field(leader, "commit_index").unwrap_or(u64::MAX);
        let have = c.status_field(i, "applied_index").unwrap_or(0);
        if have >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {i} stuck at {have} < {want}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn leader_sigkill_fails_over_within_3s_and_loses_nothing() {
    let mut c = common::start(3, 100_000);
    let rt = runtime();
    rt.block_on(async {
        let mut w = Writer::new(&c).await;
        w.put_n(200, None).await;
        let leader = c.wait_leader(Duration::from_secs(5));
        let killed_at = Instant::now();
        c.kill(leader);
        // Keep writing through the survivors; the first acknowledged put is the failover.
        w.put_n(1, Some(leader)).await;
        let failover = killed_at.elapsed();
        assert!(
            failover < Duration::from_secs(3),
            "failover took {failover:?}\n{}",
            c.logs()
        );
        eprintln!("failover after SIGKILL of the leader: {failover:?}");
        w.put_n(100, Some(leader)).await;
        let survivor = (leader + 1) % 3;
        w.check_member(survivor, false).await;
        // Close behind: the restarted member catches up from the log.
        c.spawn(leader).unwrap();
        let new_leader = c.wait_leader(Duration::from_secs(5));
        wait_caught_up(&c, leader, new_leader);
        w.check_member(leader, true).await;
        assert_eq!(
            metric(&c, leader, "synod_raft_snapshots_installed_total"),
            0
        );
    });
}

#[test]
fn member_behind_the_compaction_point_catches_up_by_snapshot() {
    let mut c = common::start(3, 50);
    let rt = runtime();
    rt.block_on(async {
        let mut w = Writer::new(&c).await;
        w.put_n(20, None).await;
        let leader = c.wait_leader(Duration::from_secs(5));
        let follower = (leader + 1) % 3;
        c.kill(follower);
        w.put_n(300, Some(follower)).await;
        assert!(
            c.status_field(leader, "snapshot_index").unwrap() > 50,
            "leader compacted"
        );
        c.spawn(follower).unwrap();
        wait_caught_up(&c, follower, leader);
        w.check_member(follower, true).await;
        assert!(
            metric(&c, follower, "synod_raft_snapshots_installed_total") >= 1,
            "{}",
            c.logs()
        );
        // And the cluster still takes writes with the caught-up member in it.
        w.put_n(20, None).await;
        w.check_member(follower, false).await;
    });
}

#[test]
fn health_and_metrics_follow_quorum() {
    let mut c = common::start(3, 100_000);
    for i in 0..3 {
        let (code, body) = http_get(c.members[i].admin, "/health").expect("health");
        assert_eq!(
            (code, body.as_str()),
            (200, r#"{"health":"true","reason":""}"#)
        );
        let (_, metrics) = http_get(c.members[i].admin, "/metrics").unwrap();
        assert!(
            metric(&c, i, "process_resident_memory_bytes") > 1 << 20,
            "{metrics}"
        );
        assert_eq!(metric(&c, i, "etcd_server_has_leader"), 1);
    }
    // Without a quorum there is no leader: health fails and writes get etcd's error.
    c.kill(1);
    c.kill(2);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = http_get(c.members[0].admin, "/health").unwrap();
        if code == 503 {
            assert!(body.starts_with(r#"{"health":"false","reason":"#), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still healthy without a quorum: {body}"
        );
    }
    let rt = runtime();
    rt.block_on(async {
        let url = format!("http://127.0.0.1:{}", c.members[0].client);
        let mut kv = KvClient::connect(url).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = kv
                .put(PutRequest {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })
                .await
                .expect_err("no quorum, no write");
            if s.message() == "etcdserver: no leader" {
                assert_eq!(s.code(), tonic::Code::Unavailable);
                break;
            }
            assert!(Instant::now() < deadline, "last error: {s:?}");
        }
    });
    assert_eq!(metric(&c, 0, "etcd_server_has_leader"), 0);
}
