//! Requests, responses and errors, mirroring the etcd v3 messages (without protobuf).

use std::fmt;

/// A key's state at some revision (etcd `mvccpb.KeyValue`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// Revision at which the key was (re)created.
    pub create_revision: i64,
    /// Revision of the last modification.
    pub mod_revision: i64,
    /// 1 on creation, +1 per put.
    pub version: i64,
    /// The value.
    pub value: Vec<u8>,
    /// Attached lease, 0 for none.
    pub lease: i64,
}

/// Sort order of a range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// Key order, ascending.
    #[default]
    None,
    /// Ascending by the target.
    Ascend,
    /// Descending by the target.
    Descend,
}

/// Sort target of a range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortTarget {
    /// By key.
    #[default]
    Key,
    /// By version.
    Version,
    /// By create revision.
    Create,
    /// By mod revision.
    Mod,
    /// By value.
    Value,
}

/// etcd `RangeRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// First key.
    pub key: Vec<u8>,
    /// End of the range (exclusive); empty: just `key`; `[0]`: every key from `key`.
    pub range_end: Vec<u8>,
    /// At most this many keys (0: no limit).
    pub limit: i64,
    /// Read at this revision (0 or less: the latest).
    pub revision: i64,
    /// Sort order.
    pub sort_order: SortOrder,
    /// Sort target.
    pub sort_target: SortTarget,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Filters (0: unset).
    pub min_mod_revision: i64,
    /// Filters (0: unset).
    pub max_mod_revision: i64,
    /// Filters (0: unset).
    pub min_create_revision: i64,
    /// Filters (0: unset).
    pub max_create_revision: i64,
}

/// etcd `RangeResponse` (without header; `revision` is the header's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// Matching keys.
    pub kvs: Vec<KeyValue>,
    /// Whether the limit cut the result.
    pub more: bool,
    /// Keys in the range, before the limit.
    pub count: i64,
    /// The store's current revision.
    pub revision: i64,
}

/// etcd `PutRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// Key.
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
    /// Lease (0: none).
    pub lease: i64,
    /// Return the previous key-value.
    pub prev_kv: bool,
    /// Keep the current value.
    pub ignore_value: bool,
    /// Keep the current lease.
    pub ignore_lease: bool,
}

/// etcd `PutResponse`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// The previous key-value, if asked for and present.
    pub prev_kv: Option<KeyValue>,
    /// Store revision after the put.
    pub revision: i64,
}

/// etcd `DeleteRangeRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    /// First key.
    pub key: Vec<u8>,
    /// End of the range, as in [`RangeRequest`].
    pub range_end: Vec<u8>,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

/// etcd `DeleteRangeResponse`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    /// Number of keys deleted.
    pub deleted: i64,
    /// The deleted key-values, if asked for.
    pub prev_kvs: Vec<KeyValue>,
    /// Store revision after the delete.
    pub revision: i64,
}

/// What a compare looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The version.
    Version(i64),
    /// The create revision.
    Create(i64),
    /// The mod revision.
    Mod(i64),
    /// The value.
    Value(Vec<u8>),
    /// The lease.
    Lease(i64),
}

/// How a compare compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareResult {
    /// `=`.
    Equal,
    /// `>`.
    Greater,
    /// `<`.
    Less,
    /// `!=`.
    NotEqual,
}

/// etcd `Compare`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// Comparison.
    pub result: CompareResult,
    /// Target and the operand.
    pub target: CompareTarget,
    /// Key.
    pub key: Vec<u8>,
    /// Optional range end (every key in the range must satisfy the compare).
    pub range_end: Vec<u8>,
}

/// One operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    /// A read.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested transaction.
    Txn(TxnRequest),
}

/// The answer to one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    /// To a read.
    Range(RangeResponse),
    /// To a put.
    Put(PutResponse),
    /// To a delete.
    DeleteRange(DeleteRangeResponse),
    /// To a nested transaction.
    Txn(TxnResponse),
}

/// etcd `TxnRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// All must hold for `success` to run.
    pub compare: Vec<Compare>,
    /// Runs when every compare holds.
    pub success: Vec<RequestOp>,
    /// Runs otherwise.
    pub failure: Vec<RequestOp>,
}

/// etcd `TxnResponse`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// Which branch ran.
    pub succeeded: bool,
    /// One response per operation of that branch.
    pub responses: Vec<ResponseOp>,
    /// Store revision after the transaction.
    pub revision: i64,
}

/// A refused request; the store is unchanged. `Display` gives etcd's exact message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvError {
    /// Empty key.
    KeyNotProvided,
    /// `ignore_value`/`ignore_lease` on a missing key.
    KeyNotFound,
    /// A value together with `ignore_value`.
    ValueProvided,
    /// A lease together with `ignore_lease`.
    LeaseProvided,
    /// More than the allowed operations in a transaction branch.
    TooManyOps,
    /// The same key written twice in one transaction branch.
    DuplicateKey,
    /// The revision asked for has been compacted away.
    Compacted,
    /// The revision asked for is in the future.
    FutureRevision,
    /// The lease does not exist.
    LeaseNotFound,
    /// A lease with the requested id is already granted.
    LeaseExists,
    /// A lease TTL above [`crate::MAX_LEASE_TTL`].
    LeaseTtlTooLarge,
    /// A replicated command or snapshot does not decode (damaged, or written by
    /// another version); refused identically on every member.
    Corrupt,
}

impl KvError {
    /// The gRPC status code etcd uses.
    pub fn grpc_code(self) -> i32 {
        match self {
            KvError::Compacted | KvError::FutureRevision | KvError::LeaseTtlTooLarge => 11,
            KvError::LeaseNotFound => 5,
            KvError::LeaseExists => 9,
            KvError::Corrupt => 13,
            _ => 3,
        }
    }
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KvError::KeyNotProvided => "etcdserver: key is not provided",
            KvError::KeyNotFound => "etcdserver: key not found",
            KvError::ValueProvided => "etcdserver: value is provided",
            KvError::LeaseProvided => "etcdserver: lease is provided",
            KvError::TooManyOps => "etcdserver: too many operations in txn request",
            KvError::DuplicateKey => "etcdserver: duplicate key given in txn request",
            KvError::Compacted => "etcdserver: mvcc: required revision has been compacted",
            KvError::FutureRevision => "etcdserver: mvcc: required revision is a future revision",
            KvError::LeaseNotFound => "etcdserver: requested lease not found",
            KvError::LeaseExists => "etcdserver: lease already exists",
            KvError::LeaseTtlTooLarge => "etcdserver: too large lease TTL",
            KvError::Corrupt => "synod: replicated command does not decode",
        })
    }
}

impl std::error::Error for KvError {}
