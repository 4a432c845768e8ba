//! `synod bench null-server`: an etcd v3 endpoint that stores nothing and answers at
//! once, to measure what a load generator itself can reach on this machine.
//!
//! A client's throughput against a real server is bounded by the client's own CPU and
//! pacing; this endpoint removes the server's work (no Raft, no disk, no store) but
//! keeps its gRPC and HTTP/2 handling, so a figure measured against it is a ceiling no
//! server on the same machine can beat. Put answers with a fresh revision, Range with
//! no keys, DeleteRange with nothing deleted, Status as a leader of a one-member
//! cluster; everything else is refused with `Unimplemented`.

use etcdpb::etcdserverpb as pb;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tonic::{Request, Response, Status};

const MEMBER_ID: u64 = 1;
const TERM: u64 = 1;

/// The shared state of every listener: the revision the next Put answers with.
#[derive(Clone)]
struct Null {
    revision: Arc<AtomicI64>,
}

impl Null {
    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            cluster_id: MEMBER_ID,
            member_id: MEMBER_ID,
            revision,
            raft_term: TERM,
        })
    }

    fn current(&self) -> Option<pb::ResponseHeader> {
        self.header(self.revision.load(Ordering::Relaxed))
    }
}

fn refused(what: &str) -> Status {
    Status::unimplemented(format!("synod bench null-server does not serve {what}"))
}

#[tonic::async_trait]
impl pb::kv_server::Kv for Null {
    async fn range(
        &self,
        _: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        Ok(Response::new(pb::RangeResponse {
            header: self.current(),
            ..Default::default()
        }))
    }

    async fn put(&self, _: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let revision = self.revision.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Response::new(pb::PutResponse {
            header: self.header(revision),
            prev_kv: None,
        }))
    }

    async fn delete_range(
        &self,
        _: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        Ok(Response::new(pb::DeleteRangeResponse {
            header: self.current(),
            ..Default::default()
        }))
    }

    async fn txn(&self, _: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        Err(refused("Txn"))
    }

    async fn compact(
        &self,
        _: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        Err(refused("Compact"))
    }
}

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for Null {
    type SnapshotStream = tokio_stream::Empty<Result<pb::SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(refused("Snapshot"))
    }

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse {
            header: self.current(),
            version: "3.4.0".into(),
            leader: MEMBER_ID,
            raft_term: TERM,
            ..Default::default()
        }))
    }

    async fn alarm(
        &self,
        _: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        Err(refused("Alarm"))
    }

    async fn defragment(
        &self,
        _: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        Err(refused("Defragment"))
    }

    async fn hash(
        &self,
        _: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        Err(refused("Hash"))
    }

    async fn hash_kv(
        &self,
        _: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        Err(refused("HashKV"))
    }

    async fn move_leader(
        &self,
        _: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        Err(refused("MoveLeader"))
    }
}

/// Serves every address in `listen` until Ctrl-C, on a runtime of `threads` workers.
pub fn serve(listen: &[SocketAddr], threads: usize) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async {
        let null = Null {
            revision: Arc::new(AtomicI64::new(1)),
        };
        let mut servers = tokio::task::JoinSet::new();
        for &addr in listen {
            // Bind here, so that a taken port fails before anything is announced.
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let incoming = accepted(l);
            let null = null.clone();
            servers.spawn(async move {
                tonic::transport::Server::builder()
                    .tcp_nodelay(true)
                    .add_service(pb::kv_server::KvServer::new(null.clone()))
                    .add_service(pb::maintenance_server::MaintenanceServer::new(null))
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await
                    .map_err(|e| format!("serving {addr}: {e}"))
            });
        }
        eprintln!(
            "info: null server (stores nothing) answering on {}; Ctrl-C stops it",
            listen
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        while let Some(done) = servers.join_next().await {
            done.map_err(|e| format!("a listener failed: {e}"))??;
        }
        Ok(())
    })
}

/// Accepted connections with Nagle's algorithm off (the builder's `tcp_nodelay` does not
/// reach sockets accepted outside it).
fn accepted(
    l: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(l), |s| {
        s.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    })
}
