//! Between the etcd wire messages (`etcdpb`) and the state machine's types (`kv`).

use etcdpb::etcdserverpb as pb;
use etcdpb::mvccpb;

/// A wire RangeRequest as the store's.
pub fn range_in(r: &pb::RangeRequest) -> kv::RangeRequest {
    kv::RangeRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        limit: r.limit,
        revision: r.revision,
        sort_order: match r.sort_order {
            1 => kv::SortOrder::Ascend,
            2 => kv::SortOrder::Descend,
            _ => kv::SortOrder::None,
        },
        sort_target: match r.sort_target {
            1 => kv::SortTarget::Version,
            2 => kv::SortTarget::Create,
            3 => kv::SortTarget::Mod,
            4 => kv::SortTarget::Value,
            _ => kv::SortTarget::Key,
        },
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

/// A wire PutRequest as the store's.
pub fn put_in(p: &pb::PutRequest) -> kv::PutRequest {
    put_into(p.clone())
}

/// [`put_in`] of a request the caller gives up.
pub fn put_into(p: pb::PutRequest) -> kv::PutRequest {
    kv::PutRequest {
        key: p.key,
        value: p.value,
        lease: p.lease,
        prev_kv: p.prev_kv,
        ignore_value: p.ignore_value,
        ignore_lease: p.ignore_lease,
    }
}

/// A wire DeleteRangeRequest as the store's.
pub fn delete_in(d: &pb::DeleteRangeRequest) -> kv::DeleteRangeRequest {
    kv::DeleteRangeRequest {
        key: d.key.clone(),
        range_end: d.range_end.clone(),
        prev_kv: d.prev_kv,
    }
}

fn compare_in(c: &pb::Compare) -> kv::Compare {
    use pb::compare::TargetUnion as U;
    // The target enum says which union member counts; a missing member compares as 0
    // (or an empty value), as etcd's generated getters do.
    let u = c.target_union.as_ref();
    let int = |want: fn(&U) -> Option<i64>| u.and_then(want).unwrap_or(0);
    let target = match c.target {
        0 => kv::CompareTarget::Version(int(|u| match u {
            U::Version(v) => Some(*v),
            _ => None,
        })),
        1 => kv::CompareTarget::Create(int(|u| match u {
            U::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        2 => kv::CompareTarget::Mod(int(|u| match u {
            U::ModRevision(v) => Some(*v),
            _ => None,
        })),
        4 => kv::CompareTarget::Lease(int(|u| match u {
            U::Lease(v) => Some(*v),
            _ => None,
        })),
        _ => kv::CompareTarget::Value(match u {
            Some(U::Value(v)) => v.clone(),
            _ => Vec::new(),
        }),
    };
    kv::Compare {
        result: match c.result {
            1 => kv::CompareResult::Greater,
            2 => kv::CompareResult::Less,
            3 => kv::CompareResult::NotEqual,
            _ => kv::CompareResult::Equal,
        },
        target,
        key: c.key.clone(),
        range_end: c.range_end.clone(),
    }
}

fn op_in(op: &pb::RequestOp) -> Option<kv::RequestOp> {
    use pb::request_op::Request as R;
    Some(match op.request.as_ref()? {
        R::RequestRange(r) => kv::RequestOp::Range(range_in(r)),
        R::RequestPut(p) => kv::RequestOp::Put(put_in(p)),
        R::RequestDeleteRange(d) => kv::RequestOp::DeleteRange(delete_in(d)),
        R::RequestTxn(t) => kv::RequestOp::Txn(txn_in(t)),
    })
}

/// A wire TxnRequest as the store's (empty ops are dropped, as etcd ignores them).
pub fn txn_in(t: &pb::TxnRequest) -> kv::TxnRequest {
    kv::TxnRequest {
        compare: t.compare.iter().map(compare_in).collect(),
        success: t.success.iter().filter_map(op_in).collect(),
        failure: t.failure.iter().filter_map(op_in).collect(),
    }
}

/// A store KeyValue on the wire.
pub fn kv_out(k: kv::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: k.key,
        create_revision: k.create_revision,
        mod_revision: k.mod_revision,
        version: k.version,
        value: k.value,
        lease: k.lease,
    }
}

/// A header with only the revision (txn sub-responses).
fn rev_header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// A store RangeResponse on the wire; `header` is the top-level header or None.
pub fn range_out(r: kv::RangeResponse, header: Option<pb::ResponseHeader>) -> pb::RangeResponse {
    pb::RangeResponse {
        header: header.or_else(|| rev_header(r.revision)),
        kvs: r.kvs.into_iter().map(kv_out).collect(),
        more: r.more,
        count: r.count,
    }
}

/// A store PutResponse on the wire.
pub fn put_out(p: kv::PutResponse, header: Option<pb::ResponseHeader>) -> pb::PutResponse {
    pb::PutResponse {
        header: header.or_else(|| rev_header(p.revision)),
        prev_kv: p.prev_kv.map(kv_out),
    }
}

/// A store DeleteRangeResponse on the wire.
pub fn delete_out(
    d: kv::DeleteRangeResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: header.or_else(|| rev_header(d.revision)),
        deleted: d.deleted,
        prev_kvs: d.prev_kvs.into_iter().map(kv_out).collect(),
    }
}

/// A store TxnResponse on the wire.
pub fn txn_out(t: kv::TxnResponse, header: Option<pb::ResponseHeader>) -> pb::TxnResponse {
    use pb::response_op::Response as R;
    let responses = t
        .responses
        .into_iter()
        .map(|op| pb::ResponseOp {
            response: Some(match op {
                kv::ResponseOp::Range(r) => R::ResponseRange(range_out(r, None)),
                kv::ResponseOp::Put(p) => R::ResponsePut(put_out(p, None)),
                kv::ResponseOp::DeleteRange(d) => R::ResponseDeleteRange(delete_out(d, None)),
                kv::ResponseOp::Txn(t) => R::ResponseTxn(txn_out(t, None)),
            }),
        })
        .collect();
    pb::TxnResponse {
        header: header.or_else(|| rev_header(t.revision)),
        succeeded: t.succeeded,
        responses,
    }
}
