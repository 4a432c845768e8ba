//! The server side of etcd's concurrency recipes, shared by `v3lockpb.Lock` and
//! `v3electionpb.Election`: a contender owns the key `PREFIX/LEASE` (lease id in hex)
//! under its lease, and its turn comes once no key under the prefix has a lower create
//! revision. The create revision is the fencing token a client can compare in a Txn.
//!
//! Waiting reads this member's applied store, woken by its watch hub. That is safe on
//! a follower too: the contender's key was applied here before the write was
//! answered, and no key created after it can have a lower create revision, so once no
//! lower one is left none can come back.

use crate::api::{errors, kv_status, Api};
use crate::watch_hub::Feed;
use kv::{Compare, CompareResult, CompareTarget, KvError, RequestOp, TxnRequest};
use tonic::Status;

/// etcd's range end for every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A contender's key for `lease` under `prefix` (which ends with `/`).
pub fn contender_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// A contender's key as created or found.
pub struct Entered {
    /// `PREFIX/LEASE`.
    pub key: Vec<u8>,
    /// Its create revision: the contender's place in line.
    pub rev: i64,
    /// Its value when it already existed.
    pub existing: Option<Vec<u8>>,
}

/// Replicates a write and returns the transaction's response.
pub async fn txn(api: &Api, t: TxnRequest) -> Result<kv::TxnResponse, Status> {
    api.await_leader().await?;
    match api.write(kv::Request::Txn(t)).await? {
        kv::Response::Txn(r) => Ok(r),
        other => Err(Status::internal(format!("unexpected response {other:?}"))),
    }
}

/// A compare that `key` was created at `rev` (0: does not exist).
pub fn created_at(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Create(rev),
        key: key.to_vec(),
        range_end: Vec::new(),
    }
}

/// Creates `prefix/lease` with `value` under `lease`, or finds it (a retry of the same
/// contender).
pub async fn enter(api: &Api, prefix: &[u8], lease: i64, value: &[u8]) -> Result<Entered, Status> {
    let key = contender_key(prefix, lease);
    let put = kv::PutRequest {
        key: key.clone(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    };
    let get = kv::RangeRequest {
        key: key.clone(),
        ..Default::default()
    };
    let r = txn(
        api,
        TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![RequestOp::Put(put)],
            failure: vec![RequestOp::Range(get)],
        },
    )
    .await?;
    if r.succeeded {
        return Ok(Entered {
            key,
            rev: r.revision,
            existing: None,
        });
    }
    let found = match r.responses.into_iter().next() {
        Some(kv::ResponseOp::Range(g)) => g.kvs.into_iter().next(),
        _ => None,
    };
    // Gone again between the compare and now: its lease expired.
    let kv = found.ok_or_else(|| kv_status(KvError::LeaseNotFound))?;
    Ok(Entered {
        key,
        rev: kv.create_revision,
        existing: Some(kv.value),
    })
}

/// Whether some key under `prefix` was created before `rev`, and whether `key` still
/// exists, in this member's applied store.
fn line_ahead(api: &Api, prefix: &[u8], rev: i64, key: &[u8]) -> (bool, bool) {
    let store = api.shared.store.read();
    // Not `count`: etcd counts a range before its revision filters.
    let ahead = kv::RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        max_create_revision: rev - 1,
        keys_only: true,
        limit: 1,
        ..Default::default()
    };
    let mine = kv::RangeRequest {
        key: key.to_vec(),
        keys_only: true,
        ..Default::default()
    };
    let any = |r| store.range(&r).is_ok_and(|x| !x.kvs.is_empty());
    (any(ahead), any(mine))
}

/// Waits until no key under `prefix` has a create revision below `rev`. Fails when
/// `key` itself disappears meanwhile (its lease expired or was revoked).
pub async fn wait_turn(api: &Api, prefix: &[u8], rev: i64, key: &[u8]) -> Result<(), Status> {
    // Subscribed before the first look, so no change between the two is missed.
    let mut feed = api.shared.watch_hub.subscribe();
    loop {
        match line_ahead(api, prefix, rev, key) {
            (_, false) => return Err(kv_status(KvError::LeaseNotFound)),
            (false, true) => return Ok(()),
            (true, true) => {}
        }
        match feed.recv().await {
            Ok(Feed::Revision(_) | Feed::Reset)
            | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return Err(errors::stopped()),
        }
    }
}

/// Deletes a contender's key if the request that created it is dropped before its
/// turn came (the client canceled or went away), as etcd's clients do.
pub struct Withdraw {
    api: Api,
    key: Option<Vec<u8>>,
}

impl Withdraw {
    /// Armed for `key`.
    pub fn new(api: &Api, key: Vec<u8>) -> Withdraw {
        Withdraw {
            api: api.clone(),
            key: Some(key),
        }
    }

    /// The contender got its turn: keep the key.
    pub fn disarm(mut self) {
        self.key = None;
    }
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        // Outside a runtime (the member is shutting down) there is no one to tell.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let api = self.api.clone();
        runtime.spawn(async move {
            let delete = kv::DeleteRangeRequest {
                key,
                ..Default::default()
            };
            let _ = api.write(kv::Request::DeleteRange(delete)).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_and_contender_keys_are_etcds() {
        assert_eq!(prefix_end(b"lock/"), b"lock0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(contender_key(b"lock/", 0x694d), b"lock/694d");
    }
}
