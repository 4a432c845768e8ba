//! The multi-key append workload: each transaction appends one unique element to two
//! list keys at once (read both, then a Txn guarded by both mod revisions). The checks
//! need no search: lists only grow, so every read must be a prefix of the final list,
//! every acknowledged append must be in the final lists, no element may appear twice
//! or out of nowhere, and any two lists must order their common elements alike.

use super::workload::{connect, Recording, OP_TIMEOUT};
use etcdpb::etcdserverpb as pb;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// List keys.
pub const LISTS: [&str; 4] = ["a0", "a1", "a2", "a3"];

/// What the append clients saw.
#[derive(Default)]
pub struct AppendLog {
    /// Elements whose append was acknowledged, with the keys they went to.
    pub acked: Vec<(u64, [String; 2])>,
    /// Elements ever attempted.
    pub attempted: BTreeSet<u64>,
    /// Every list observed by a read: (key, elements).
    pub reads: Vec<(String, Vec<u64>)>,
}

fn parse(v: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(v)
        .split(',')
        .filter_map(|x| x.parse().ok())
        .collect()
}

type Kv = pb::kv_client::KvClient<tonic::transport::Channel>;

async fn read(kv: &mut Kv, key: &str) -> Result<(Vec<u64>, i64, Vec<u8>), tonic::Status> {
    let r = kv
        .range(pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(match r.kvs.first() {
        Some(k) => (parse(&k.value), k.mod_revision, k.value.clone()),
        None => (Vec::new(), 0, Vec::new()),
    })
}

/// One append attempt of `elem` to `keys`; Some(true) when acknowledged.
async fn append(
    kv: &mut Kv,
    keys: &[String; 2],
    elem: u64,
    log: &Mutex<AppendLog>,
) -> Option<bool> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let mut compare = Vec::new();
    let mut success = Vec::new();
    for k in keys {
        let (list, rev, raw) = read(kv, k).await.ok()?;
        log.lock().unwrap().reads.push((k.clone(), list));
        compare.push(pb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: k.as_bytes().to_vec(),
            target_union: Some(TargetUnion::ModRevision(rev)),
            ..Default::default()
        });
        let mut value = raw;
        if !value.is_empty() {
            value.push(b',');
        }
        value.extend_from_slice(elem.to_string().as_bytes());
        success.push(pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: k.as_bytes().to_vec(),
                value,
                ..Default::default()
            })),
        });
    }
    log.lock().unwrap().attempted.insert(elem);
    let txn = pb::TxnRequest {
        compare,
        success,
        failure: vec![],
    };
    kv.txn(txn).await.ok().map(|r| r.into_inner().succeeded)
}

/// One append client until `rec.stop`.
pub async fn client(
    rec: Arc<Recording>,
    log: Arc<Mutex<AppendLog>>,
    id: u64,
    endpoint: String,
    seed: u64,
) {
    let mut kv = connect(&endpoint);
    let mut rng = seedrng::Rng::new(seed);
    let mut seq = 0;
    while !rec.stop.load(Ordering::Relaxed) {
        seq += 1;
        let elem = (id << 32) | seq;
        let a = rng.range(0, LISTS.len() as u64) as usize;
        let b = (a + 1 + rng.range(0, LISTS.len() as u64 - 1) as usize) % LISTS.len();
        let keys = [LISTS[a].to_string(), LISTS[b].to_string()];
        let r = tokio::time::timeout(OP_TIMEOUT, append(&mut kv, &keys, elem, &log)).await;
        match r {
            Ok(Some(true)) => log.lock().unwrap().acked.push((elem, keys)),
            Ok(Some(false)) => {}
            _ => {
                kv = connect(&endpoint);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// Reads the final lists (through `endpoint`).
pub async fn finals(endpoint: &str) -> Result<BTreeMap<String, Vec<u64>>, String> {
    let mut kv = connect(endpoint);
    let mut out = BTreeMap::new();
    for k in LISTS {
        let (list, _, _) = read(&mut kv, k)
            .await
            .map_err(|e| format!("final read of {k}: {}", e.message()))?;
        out.insert(k.to_string(), list);
    }
    Ok(out)
}

/// Every anomaly found (empty when the history is consistent).
pub fn check(log: &AppendLog, finals: &BTreeMap<String, Vec<u64>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (k, list) in finals {
        let unique: BTreeSet<_> = list.iter().collect();
        if unique.len() != list.len() {
            bad.push(format!("append: {k} holds an element twice"));
        }
        if let Some(x) = list.iter().find(|x| !log.attempted.contains(x)) {
            bad.push(format!("append: {k} holds {x}, which nobody appended"));
        }
    }
    for (elem, keys) in &log.acked {
        for k in keys {
            if !finals.get(k).is_some_and(|l| l.contains(elem)) {
                bad.push(format!(
                    "append: acknowledged element {elem} is missing from {k}"
                ));
            }
        }
    }
    for (k, seen) in &log.reads {
        let fin = finals.get(k).map_or(&[][..], |v| v.as_slice());
        if !fin.starts_with(seen) {
            bad.push(format!(
                "append: a read of {k} ({} elements) is not a prefix of its final list",
                seen.len()
            ));
        }
    }
    for (i, a) in LISTS.iter().enumerate() {
        for b in &LISTS[i + 1..] {
            let (la, lb) = (&finals[*a], &finals[*b]);
            let in_b: BTreeSet<_> = lb.iter().collect();
            let common_a: Vec<_> = la.iter().filter(|x| in_b.contains(x)).collect();
            let in_a: BTreeSet<_> = la.iter().collect();
            let common_b: Vec<_> = lb.iter().filter(|x| in_a.contains(x)).collect();
            if common_a != common_b {
                bad.push(format!(
                    "append: {a} and {b} order their common elements differently"
                ));
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finals(lists: [&[u64]; 4]) -> BTreeMap<String, Vec<u64>> {
        LISTS
            .iter()
            .zip(lists)
            .map(|(k, l)| (k.to_string(), l.to_vec()))
            .collect()
    }

    #[test]
    fn consistent_lists_pass_and_each_anomaly_is_caught() {
        let mut log = AppendLog::default();
        log.attempted.extend([1, 2, 3]);
        log.acked.push((1, ["a0".into(), "a1".into()]));
        log.acked.push((2, ["a0".into(), "a1".into()]));
        log.reads.push(("a0".into(), vec![1]));
        assert!(check(&log, &finals([&[1, 2], &[1, 2], &[], &[]])).is_empty());
        assert_eq!(
            check(&log, &finals([&[1], &[1, 2], &[], &[]])).len(),
            1,
            "lost append"
        );
        assert!(
            !check(&log, &finals([&[1, 2], &[2, 1], &[], &[]])).is_empty(),
            "order"
        );
        assert!(
            !check(&log, &finals([&[2, 1], &[2, 1], &[], &[]])).is_empty(),
            "read not a prefix"
        );
        assert!(
            !check(&log, &finals([&[1, 2, 9], &[1, 2], &[], &[]])).is_empty(),
            "phantom"
        );
        assert!(
            !check(&log, &finals([&[1, 2, 2], &[1, 2], &[], &[]])).is_empty(),
            "duplicate"
        );
    }
}
