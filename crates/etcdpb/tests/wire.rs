//! Wire-format checks: the generated messages must encode exactly as etcd's.

use etcdpb::etcdserverpb::{
    cluster_server::ClusterServer, compare, kv_client::KvClient, kv_server::KvServer,
    maintenance_server::MaintenanceServer, Compare, PutRequest,
};
use prost::Message;

#[test]
fn put_request_bytes() {
    let req = PutRequest {
        key: b"foo".to_vec(),
        value: b"bar".to_vec(),
        lease: 5,
        prev_kv: true,
        ..Default::default()
    };
    let bytes = req.encode_to_vec();
    assert_eq!(
        bytes,
        vec![
            0x0a, 0x03, b'f', b'o', b'o', // field 1, length-delimited
            0x12, 0x03, b'b', b'a', b'r', // field 2, length-delimited
            0x18, 0x05, // field 3, varint
            0x20, 0x01, // field 4, varint
        ]
    );
    assert_eq!(PutRequest::decode(bytes.as_slice()).unwrap(), req);
}

#[test]
fn compare_range_end_is_field_64() {
    let cmp = Compare {
        result: compare::CompareResult::Greater as i32,
        target: compare::CompareTarget::Mod as i32,
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
        target_union: Some(compare::TargetUnion::ModRevision(7)),
    };
    let bytes = cmp.encode_to_vec();
    assert_eq!(
        bytes,
        vec![
            0x08, 0x01, // result = GREATER
            0x10, 0x02, // target = MOD
            0x1a, 0x01, b'a', // key
            0x30, 0x07, // mod_revision = 7 (field 6)
            0x82, 0x04, 0x01, b'b', // range_end (field 64, length-delimited)
        ]
    );
    assert_eq!(Compare::decode(bytes.as_slice()).unwrap(), cmp);
}

#[test]
fn service_names() {
    struct S;
    fn name<T: tonic::server::NamedService>() -> &'static str {
        T::NAME
    }
    assert_eq!(name::<KvServer<S>>(), "etcdserverpb.KV");
    assert_eq!(name::<ClusterServer<S>>(), "etcdserverpb.Cluster");
    assert_eq!(name::<MaintenanceServer<S>>(), "etcdserverpb.Maintenance");
    assert_eq!(
        etcdpb::etcdserverpb::kv_server::SERVICE_NAME,
        "etcdserverpb.KV"
    );
    assert_eq!(
        <KvServer<S> as tonic::server::NamedService>::NAME,
        "etcdserverpb.KV"
    );
}

/// Only has to compile: the generated server and client types exist.
#[allow(dead_code)]
fn _types_exist() {
    let _kv: Option<KvServer<()>> = None;
    let _maint: Option<MaintenanceServer<()>> = None;
    let _cluster: Option<ClusterServer<()>> = None;
    let _client: Option<KvClient<tonic::transport::Channel>> = None;
}
