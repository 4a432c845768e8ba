//! Bad input gets etcd's error (or a closed connection for garbage), changes nothing,
//! and the member keeps serving.

mod common;

use etcdpb::etcdserverpb::kv_client::KvClient;
use etcdpb::etcdserverpb::{request_op, PutRequest, RangeRequest, RequestOp, TxnRequest};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Code;

fn put(key: &[u8], value: Vec<u8>) -> PutRequest {
    PutRequest {
        key: key.to_vec(),
        value,
        ..Default::default()
    }
}

/// A runtime for a test's gRPC clients.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn revision(kv: &mut KvClient<Channel>) -> i64 {
    let r = kv
        .range(RangeRequest {
            key: b"probe".to_vec(),
            ..Default::default()
        })
        .await
        .expect("the member keeps serving")
        .into_inner();
    r.header.unwrap().revision
}

async fn expect_err<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    message: &str,
) {
    let s = r.expect_err("must fail");
    assert_eq!((s.code(), s.message()), (code, message));
}

/// Writes garbage to a port; the member must close the connection (or answer with an
/// error and close), never hang and never crash.
fn garbage(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = s.write_all(&junk);
    let mut sink = Vec::new();
    // Returns at EOF or on a reset: either way the member hung up.
    let r = s.read_to_end(&mut sink);
    assert!(
        r.is_ok()
            || r.as_ref()
                .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
        "connection neither closed nor reset: {r:?}"
    );
}

#[test]
fn bad_requests_get_etcds_errors_and_change_nothing() {
    let c = common::start(3, 100_000);
    let rt = runtime();
    rt.block_on(async {
        let leader = c.wait_leader(Duration::from_secs(5));
        let url = format!("http://127.0.0.1:{}", c.members[leader].client);
        let mut kv = KvClient::connect(url).await.unwrap();
        kv.put(put(b"a", b"1".to_vec())).await.unwrap();
        let before = revision(&mut kv).await;

        let big = put(b"big", vec![b'x'; 1_600_000]);
        expect_err(
            kv.put(big).await,
            Code::InvalidArgument,
            "etcdserver: request is too large",
        )
        .await;
        expect_err(
            kv.put(put(b"", b"v".to_vec())).await,
            Code::InvalidArgument,
            "etcdserver: key is not provided",
        )
        .await;
        let ops = (0..129)
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(put(
                    format!("t{i}").as_bytes(),
                    vec![],
                ))),
            })
            .collect();
        let txn = TxnRequest {
            success: ops,
            ..Default::default()
        };
        expect_err(
            kv.txn(txn).await,
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        )
        .await;
        let dup = TxnRequest {
            success: vec![
                RequestOp {
                    request: Some(request_op::Request::RequestPut(put(b"d", vec![]))),
                },
                RequestOp {
                    request: Some(request_op::Request::RequestPut(put(b"d", vec![]))),
                },
            ],
            ..Default::default()
        };
        expect_err(
            kv.txn(dup).await,
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request",
        )
        .await;
        let leased = PutRequest {
            lease: 0x1234,
            ..put(b"l", b"v".to_vec())
        };
        expect_err(
            kv.put(leased).await,
            Code::NotFound,
            "etcdserver: requested lease not found",
        )
        .await;
        let future = RangeRequest {
            key: b"a".to_vec(),
            revision: before + 100,
            ..Default::default()
        };
        expect_err(
            kv.range(future).await,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        )
        .await;
        // range_end below key: etcd answers an empty range, not an error.
        let inverted = RangeRequest {
            key: b"b".to_vec(),
            range_end: b"a".to_vec(),
            ..Default::default()
        };
        let r = kv.range(inverted).await.unwrap().into_inner();
        assert_eq!((r.count, r.kvs.len()), (0, 0));

        assert_eq!(
            revision(&mut kv).await,
            before,
            "a failed request changed the store"
        );

        for m in &c.members {
            garbage(m.client);
            garbage(m.peer);
        }
        kv.put(put(b"a", b"2".to_vec()))
            .await
            .expect("still serving after garbage");
        assert_eq!(revision(&mut kv).await, before + 1);
        for i in 0..3 {
            assert!(c.status(i).is_some(), "member {i} died\n{}", c.logs());
        }
    });
}

#[test]
fn over_quota_writes_fail_with_nospace_until_compaction_makes_room() {
    common::ensure_etcdctl();
    let c = common::start_with(3, 100_000, &["--quota-backend-bytes", "65536"]);
    let rt = runtime();
    rt.block_on(async {
        let leader = c.wait_leader(Duration::from_secs(5));
        let url = format!("http://127.0.0.1:{}", c.members[leader].client);
        let mut kv = KvClient::connect(url).await.unwrap();
        let mut refused = None;
        for i in 0..20 {
            if let Err(s) = kv.put(put(b"big", vec![b'0' + i; 8192])).await {
                refused = Some(s);
                break;
            }
        }
        let s = refused.expect("a 64 KiB quota refuses the ninth 8 KiB version");
        assert_eq!(
            (s.code(), s.message()),
            (
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded"
            )
        );
        let alarms = common::ok(
            c.etcdctl_at(
                &format!("127.0.0.1:{}", c.members[leader].client),
                &["alarm", "list"],
                None,
            ),
            &c,
        );
        assert!(alarms.contains("alarm:NOSPACE"), "{alarms}");
        // Compaction drops the old versions and makes room again.
        let rev = revision(&mut kv).await;
        kv.compact(etcdpb::etcdserverpb::CompactionRequest {
            revision: rev,
            physical: true,
        })
        .await
        .unwrap();
        kv.put(put(b"big", b"small".to_vec()))
            .await
            .expect("room after compaction");
    });
}

/// A member drops a compaction's history in slices between Raft rounds; a Compact with
/// `physical` answers only once that member has dropped all of it.
#[test]
fn a_physical_compaction_answers_once_the_history_is_gone() {
    use etcdpb::etcdserverpb::maintenance_client::MaintenanceClient;
    use etcdpb::etcdserverpb::{CompactionRequest, DeleteRangeRequest, StatusRequest};
    let c = common::start(3, 100_000);
    let rt = runtime();
    rt.block_on(async {
        c.wait_leader(Duration::from_secs(5));
        // A follower or the leader alike: the wait is for the member answering.
        let url = format!("http://127.0.0.1:{}", c.members[1].client);
        let mut kv = KvClient::connect(url.clone()).await.unwrap();
        let mut maint = MaintenanceClient::connect(url).await.unwrap();
        // 25,600 keys, many compaction steps' worth.
        for batch in 0..200 {
            let success = (0..128)
                .map(|i| RequestOp {
                    request: Some(request_op::Request::RequestPut(put(
                        format!("k{batch:03}-{i:03}").as_bytes(),
                        vec![b'v'; 64],
                    ))),
                })
                .collect();
            kv.txn(TxnRequest {
                success,
                ..Default::default()
            })
            .await
            .expect("a txn of 128 puts");
        }
        kv.delete_range(DeleteRangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
        // In use: the store's size (`dbSize` is the bytes on disk, which only a
        // defragmentation returns).
        let size = |s: tonic::Response<etcdpb::etcdserverpb::StatusResponse>| {
            s.into_inner().db_size_in_use
        };
        let before = size(maint.status(StatusRequest {}).await.unwrap());
        assert!(before > 25_600 * 64, "{before}");
        let rev = revision(&mut kv).await;
        kv.compact(CompactionRequest {
            revision: rev,
            physical: true,
        })
        .await
        .unwrap();
        let after = size(maint.status(StatusRequest {}).await.unwrap());
        assert_eq!(after, 0, "every key was deleted, then compacted away");
    });
}
