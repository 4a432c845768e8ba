//! Keep-alives on real members: a follower forwards its keep-alive streams to the
//! leader, the leader answers most of a busy stream from memory (a keep-alive through
//! the log only now and then), and a keep-alive after the revoke, through either path,
//! finds the lease gone.

mod common;

use etcdpb::etcdserverpb as pb;
use pb::lease_client::LeaseClient;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A keep-alive stream: one request, one answer (within 10 s).
struct KeepAlive {
    tx: mpsc::Sender<pb::LeaseKeepAliveRequest>,
    rx: tonic::Streaming<pb::LeaseKeepAliveResponse>,
}

impl KeepAlive {
    async fn open(lease: &mut LeaseClient<tonic::transport::Channel>) -> KeepAlive {
        let (tx, requests) = mpsc::channel(4);
        let rx = lease
            .lease_keep_alive(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        KeepAlive { tx, rx }
    }

    async fn ask(&mut self, id: i64) -> pb::LeaseKeepAliveResponse {
        self.tx
            .send(pb::LeaseKeepAliveRequest { id })
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("an answer within 10 s")
            .expect("the stream is open")
            .expect("an answer")
    }
}

#[test]
fn followers_forward_keepalives_and_the_leader_renews_most_from_memory() {
    let c = common::start(3, 10_000);
    let leader = c.wait_leader(Duration::from_secs(10));
    let follower = (leader + 1) % 3;
    let url = |i: usize| format!("http://127.0.0.1:{}", c.members[i].client);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut on_follower = LeaseClient::connect(url(follower)).await.unwrap();
        let mut on_leader = LeaseClient::connect(url(leader)).await.unwrap();
        let grant = pb::LeaseGrantRequest { id: 77, ttl: 30 };
        on_follower.lease_grant(grant).await.unwrap();
        let before = c.status_field(leader, "commit_index").unwrap();
        let mut via_follower = KeepAlive::open(&mut on_follower).await;
        let mut via_leader = KeepAlive::open(&mut on_leader).await;
        const ROUNDS: u64 = 300;
        for _ in 0..ROUNDS {
            for ka in [&mut via_follower, &mut via_leader] {
                let a = ka.ask(77).await;
                assert_eq!((a.id, a.ttl), (77, 30));
                assert!(a.header.is_some());
            }
        }
        // Every keep-alive was answered, and the log grew by far fewer entries than
        // there were keep-alives: the leader answered most from memory.
        let grown = c.status_field(leader, "commit_index").unwrap() - before;
        assert!(
            grown < ROUNDS / 2,
            "{grown} entries for {} keep-alives",
            2 * ROUNDS
        );
        // The revoke ends the lease for both paths, at once.
        on_leader
            .lease_revoke(pb::LeaseRevokeRequest { id: 77 })
            .await
            .unwrap();
        assert_eq!(via_leader.ask(77).await.ttl, 0);
        assert_eq!(via_follower.ask(77).await.ttl, 0);
        // A lease the cluster never granted, through the follower: TTL 0 as well.
        assert_eq!(via_follower.ask(78).await.ttl, 0);
    });
}
