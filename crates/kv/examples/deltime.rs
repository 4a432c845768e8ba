use kv::*;
use std::time::Instant;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300_000);
    let mut s = Store::new();
    let mut x: u64 = 88172645463325252;
    let t = Instant::now();
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut key = b"/etcdctl-check-perf/".to_vec();
        key.extend_from_slice(&x.to_le_bytes());
        key.resize(256, 0);
        s.put_owned(PutRequest {
            key,
            value: vec![0; 1024],
            ..Default::default()
        })
        .unwrap();
    }
    eprintln!("{n} puts {:?}", t.elapsed());
    let t = Instant::now();
    s.compact(s.revision()).unwrap();
    eprintln!("compact with nothing to drop {:?}", t.elapsed());
    let t = Instant::now();
    let r = s
        .delete_range(&DeleteRangeRequest {
            key: b"/etcdctl-check-perf/".to_vec(),
            range_end: b"/etcdctl-check-perf0".to_vec(),
            ..Default::default()
        })
        .unwrap();
    eprintln!("delete {} keys {:?}", r.deleted, t.elapsed());
    let t = Instant::now();
    s.compact(s.revision()).unwrap();
    eprintln!("compact {:?}", t.elapsed());
}
