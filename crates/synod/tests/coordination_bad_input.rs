//! Bad input on the Watch and Lease services gets etcd's answer, the stream stays open
//! for its other watches, and nothing else changes.

mod common;

use etcdpb::etcdserverpb as pb;
use pb::lease_client::LeaseClient;
use pb::watch_client::WatchClient;
use pb::watch_request::RequestUnion;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn create(key: &[u8], end: &[u8], id: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.to_vec(),
            range_end: end.to_vec(),
            watch_id: id,
            ..Default::default()
        })),
    }
}

/// A watch stream: requests in, responses out, each response within 10 s.
struct Stream {
    tx: mpsc::Sender<pb::WatchRequest>,
    rx: tonic::Streaming<pb::WatchResponse>,
}

impl Stream {
    async fn open(url: String) -> Stream {
        let mut client = WatchClient::connect(url).await.unwrap();
        let (tx, requests) = mpsc::channel(16);
        let rx = client
            .watch(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        Stream { tx, rx }
    }

    async fn ask(&mut self, r: pb::WatchRequest) -> pb::WatchResponse {
        self.tx.send(r).await.unwrap();
        self.next().await
    }

    async fn next(&mut self) -> pb::WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("an answer within 10 s")
            .expect("the stream is open")
            .expect("a response")
    }
}

#[test]
fn watch_refusals_leave_the_stream_serving_its_other_watches() {
    let c = common::start(1, 10_000);
    let url = format!("http://127.0.0.1:{}", c.members[0].client);
    runtime().block_on(async {
        let mut s = Stream::open(url.clone()).await;
        let refused = s.ask(create(b"b", b"a", 0)).await;
        assert_eq!(
            (refused.watch_id, refused.created, refused.canceled),
            (-1, true, true)
        );
        assert_eq!(refused.cancel_reason, "mvcc: watcher range is empty");
        let ok = s.ask(create(b"k", b"", 7)).await;
        assert_eq!((ok.watch_id, ok.created, ok.canceled), (7, true, false));
        let dup = s.ask(create(b"other", b"", 7)).await;
        assert_eq!((dup.watch_id, dup.canceled), (-1, true));
        assert_eq!(
            dup.cancel_reason,
            "mvcc: duplicate watch ID provided on the WatchStream"
        );
        let negative = s.ask(create(b"k", b"", -5)).await;
        assert_eq!((negative.watch_id, negative.canceled), (-1, true));
        // A cancel of an id the stream does not have is answered with nothing (as
        // etcd does); the progress request after it is answered.
        let cancel = pb::WatchRequest {
            request_union: Some(RequestUnion::CancelRequest(pb::WatchCancelRequest {
                watch_id: 99,
            })),
        };
        s.tx.send(cancel).await.unwrap();
        let progress = pb::WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
        };
        let p = s.ask(progress).await;
        assert_eq!(p.watch_id, -1);
        assert!(p.events.is_empty());
        // Watch 7 still delivers.
        let mut kv = pb::kv_client::KvClient::connect(url).await.unwrap();
        let put = pb::PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        kv.put(put).await.unwrap();
        let e = s.next().await;
        assert_eq!(e.watch_id, 7);
        assert_eq!(e.events.len(), 1);
        assert_eq!(e.events[0].kv.as_ref().unwrap().key, b"k");
    });
}

#[test]
fn lease_refusals_carry_etcds_errors_and_change_nothing() {
    let c = common::start(1, 10_000);
    let url = format!("http://127.0.0.1:{}", c.members[0].client);
    runtime().block_on(async {
        let mut lease = LeaseClient::connect(url).await.unwrap();
        let grant = |id, ttl| pb::LeaseGrantRequest { id, ttl };
        let e = lease
            .lease_grant(grant(0, 9_000_000_001))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::OutOfRange, "etcdserver: too large lease TTL")
        );
        let g = lease.lease_grant(grant(42, 30)).await.unwrap().into_inner();
        assert_eq!((g.id, g.ttl), (42, 30));
        let e = lease.lease_grant(grant(42, 30)).await.unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::FailedPrecondition, "etcdserver: lease already exists")
        );
        let e = lease
            .lease_revoke(pb::LeaseRevokeRequest { id: 43 })
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::NotFound, "etcdserver: requested lease not found")
        );
        // TimeToLive of an unknown lease is -1 (etcd 3.4), not an error.
        let ttl = lease
            .lease_time_to_live(pb::LeaseTimeToLiveRequest { id: 43, keys: true })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ttl.ttl, -1);
        // A keep-alive of an unknown lease is answered TTL 0 on a stream that stays
        // open for the known one.
        let (tx, rx) = mpsc::channel(4);
        let mut answers = lease
            .lease_keep_alive(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        for id in [43, 42] {
            tx.send(pb::LeaseKeepAliveRequest { id }).await.unwrap();
            let a = tokio::time::timeout(Duration::from_secs(10), answers.message())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!((a.id, a.ttl), (id, if id == 42 { 30 } else { 0 }));
        }
        let leases = lease
            .lease_leases(pb::LeaseLeasesRequest {})
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<i64> = leases.leases.iter().map(|l| l.id).collect();
        assert_eq!(ids, vec![42]);
    });
}

#[test]
fn lock_and_election_services_order_contenders_by_create_revision() {
    use etcdpb::v3electionpb as epb;
    use etcdpb::v3lockpb as lpb;
    let c = common::start(3, 10_000);
    // Through a follower: its applied state decides whose turn it is.
    let leader = c.wait_leader(Duration::from_secs(10));
    let url = format!("http://127.0.0.1:{}", c.members[(leader + 1) % 3].client);
    runtime().block_on(async {
        let mut lease = LeaseClient::connect(url.clone()).await.unwrap();
        let grant = |id| pb::LeaseGrantRequest { id, ttl: 60 };
        for id in [1, 2] {
            lease.lease_grant(grant(id)).await.unwrap();
        }
        let mut lock = lpb::lock_client::LockClient::connect(url.clone())
            .await
            .unwrap();
        let lock_req = |lease| lpb::LockRequest {
            name: b"l".to_vec(),
            lease,
        };
        let first = lock.lock(lock_req(1)).await.unwrap().into_inner();
        assert_eq!(first.key, b"l/1");
        // The second waits while the first holds the lock.
        let mut waiting = lock.clone();
        let second = tokio::spawn(async move { waiting.lock(lock_req(2)).await });
        let still = tokio::time::timeout(Duration::from_millis(500), async {
            while !second.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            still.is_err(),
            "the second holder got the lock while the first held it"
        );
        lock.unlock(lpb::UnlockRequest { key: first.key })
            .await
            .unwrap();
        let got = second.await.unwrap().unwrap().into_inner();
        assert_eq!(got.key, b"l/2");
        // A lock on a lease that does not exist is refused with etcd's error.
        let e = lock.lock(lock_req(99)).await.unwrap_err();
        assert_eq!(e.message(), "etcdserver: requested lease not found");

        let mut el = epb::election_client::ElectionClient::connect(url)
            .await
            .unwrap();
        let e = el
            .leader(epb::LeaderRequest {
                name: b"e".to_vec(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.message(), "election: no leader");
        let campaign = |lease, value: &str| epb::CampaignRequest {
            name: b"e".to_vec(),
            lease,
            value: value.as_bytes().to_vec(),
        };
        let won = el
            .campaign(campaign(1, "alice"))
            .await
            .unwrap()
            .into_inner();
        let key = won.leader.unwrap();
        let mut observe = el
            .observe(epb::LeaderRequest {
                name: b"e".to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        let seen = observe.message().await.unwrap().unwrap().kv.unwrap();
        assert_eq!(
            (seen.key.as_slice(), seen.value.as_slice()),
            (&b"e/1"[..], &b"alice"[..])
        );
        el.proclaim(epb::ProclaimRequest {
            leader: Some(key.clone()),
            value: b"alice-2".to_vec(),
        })
        .await
        .unwrap();
        let seen = observe.message().await.unwrap().unwrap().kv.unwrap();
        assert_eq!(seen.value, b"alice-2");
        let mut bob = el.clone();
        let bob_wins = tokio::spawn(async move { bob.campaign(campaign(2, "bob")).await });
        el.resign(epb::ResignRequest {
            leader: Some(key.clone()),
        })
        .await
        .unwrap();
        let bob_key = bob_wins
            .await
            .unwrap()
            .unwrap()
            .into_inner()
            .leader
            .unwrap();
        assert_eq!(bob_key.key, b"e/2");
        let seen = observe.message().await.unwrap().unwrap().kv.unwrap();
        assert_eq!(seen.value, b"bob");
        // The old leadership can no longer proclaim.
        let e = el
            .proclaim(epb::ProclaimRequest {
                leader: Some(key),
                value: b"late".to_vec(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.message(), "election: not leader");
    });
}
