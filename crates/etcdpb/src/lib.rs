//! Synod's own protobuf definitions of the etcd v3 gRPC wire format.
//!
//! The `.proto` files under `proto/` were written for Synod from the etcd v3
//! interface facts (package names, service names, message names and field
//! numbers match etcd so that unmodified etcd clients such as `etcdctl` can
//! talk to Synod). They are plain proto3 without etcd's gogoproto or HTTP
//! annotations, and cover only the subset of the API Synod serves so far:
//!
//! * [`mvccpb`]: `KeyValue` and `Event`.
//! * [`etcdserverpb`]: the `KV`, `Watch`, `Lease`, `Cluster` and `Maintenance`
//!   services with their messages.
//! * [`v3lockpb`]: the `Lock` service; [`v3electionpb`]: the `Election` service.
//!
//! The code is generated at build time by `protox` and `tonic-prost-build`;
//! no system `protoc` is required.

/// Generated from `proto/mvccpb/kv.proto` (protobuf package `mvccpb`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// Generated from `proto/etcdserverpb/rpc.proto` (protobuf package
/// `etcdserverpb`). Refers to [`crate::mvccpb`] as `super::mvccpb`.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// Generated from `proto/v3lockpb/v3lock.proto` (protobuf package `v3lockpb`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// Generated from `proto/v3electionpb/v3election.proto` (protobuf package
/// `v3electionpb`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
