//! Watch, lease, lock and election through the `etcd-client` crate; exits non-zero
//! with a message on the first check that fails. Usage: `CLIENT ENDPOINT,ENDPOINT,…`.

use etcd_client::{
    Client, EventType, GetOptions, LeaseTimeToLiveOptions, LockOptions, PutOptions, WatchOptions,
};
use std::time::Duration;

type Result<T> = std::result::Result<T, String>;

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn err(e: etcd_client::Error) -> String {
    e.to_string()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .map_err(|_| format!("{what}: no answer within 10 s"))
}

async fn watch(c: &mut Client) -> Result<()> {
    let rev = c
        .get("nothing", None)
        .await
        .map_err(err)?
        .header()
        .unwrap()
        .revision();
    let opts = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_start_revision(rev + 1);
    let mut stream = c.watch("/rw/", Some(opts)).await.map_err(err)?;
    c.put("/rw/a", "1", None).await.map_err(err)?;
    c.put("/rw/a", "2", None).await.map_err(err)?;
    c.delete("/rw/a", None).await.map_err(err)?;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let resp = within("watch", stream.message()).await?.map_err(err)?;
        let resp = resp.ok_or("the watch stream ended")?;
        for e in resp.events() {
            let kv = e.kv().ok_or("an event without its key")?;
            let prev = e.prev_kv().map(|p| p.value().to_vec());
            seen.push((e.event_type(), kv.value().to_vec(), prev));
        }
    }
    let want = vec![
        (EventType::Put, b"1".to_vec(), None),
        (EventType::Put, b"2".to_vec(), Some(b"1".to_vec())),
        (EventType::Delete, Vec::new(), Some(b"2".to_vec())),
    ];
    check!(seen == want, "watch events {seen:?}, want {want:?}");
    Ok(())
}

async fn lease(c: &mut Client) -> Result<()> {
    let l = c.lease_grant(30, None).await.map_err(err)?;
    check!(l.ttl() == 30, "granted TTL {}", l.ttl());
    let opts = PutOptions::new().with_lease(l.id());
    c.put("/rl/k", "v", Some(opts)).await.map_err(err)?;
    let (mut keeper, mut answers) = c.lease_keep_alive(l.id()).await.map_err(err)?;
    keeper.keep_alive().await.map_err(err)?;
    let a = within("keep-alive", answers.message())
        .await?
        .map_err(err)?;
    let a = a.ok_or("the keep-alive stream ended")?;
    check!(a.ttl() == 30, "keep-alive TTL {}", a.ttl());
    let opts = LeaseTimeToLiveOptions::new().with_keys();
    let t = c
        .lease_time_to_live(l.id(), Some(opts))
        .await
        .map_err(err)?;
    check!(t.granted_ttl() == 30, "granted {}", t.granted_ttl());
    check!(t.ttl() > 0 && t.ttl() <= 30, "remaining {}", t.ttl());
    check!(t.keys() == [b"/rl/k".to_vec()], "keys {:?}", t.keys());
    let leases = c.leases().await.map_err(err)?;
    check!(
        leases.leases().iter().any(|s| s.id() == l.id()),
        "lease not listed"
    );
    c.lease_revoke(l.id()).await.map_err(err)?;
    let left = c
        .get("/rl/", Some(GetOptions::new().with_prefix()))
        .await
        .map_err(err)?;
    check!(
        left.kvs().is_empty(),
        "a revoked lease's key is still there"
    );
    Ok(())
}

async fn lock(c: &mut Client) -> Result<()> {
    let first = c.lease_grant(30, None).await.map_err(err)?.id();
    let second = c.lease_grant(30, None).await.map_err(err)?.id();
    let held = c
        .lock("rlock", Some(LockOptions::new().with_lease(first)))
        .await
        .map_err(err)?;
    let mut other = c.clone();
    let waiting = tokio::spawn(async move {
        other
            .lock("rlock", Some(LockOptions::new().with_lease(second)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    check!(
        !waiting.is_finished(),
        "a second holder got the lock while the first held it"
    );
    c.unlock(held.key()).await.map_err(err)?;
    let got = within("lock", waiting)
        .await?
        .map_err(|e| e.to_string())?
        .map_err(err)?;
    check!(got.key() != held.key(), "both holders got the same key");
    c.unlock(got.key()).await.map_err(err)?;
    Ok(())
}

async fn election(c: &mut Client) -> Result<()> {
    let lease = c.lease_grant(30, None).await.map_err(err)?.id();
    let won = c.campaign("relect", "alice", lease).await.map_err(err)?;
    let leader = won.leader().ok_or("no leader key")?.clone();
    let now = c.leader("relect").await.map_err(err)?;
    let kv = now.kv().ok_or("no leader kv")?;
    check!(kv.value() == b"alice", "leader value {:?}", kv.value());
    let opts = etcd_client::ProclaimOptions::new().with_leader(leader.clone());
    c.proclaim("alice-2", Some(opts)).await.map_err(err)?;
    let now = c.leader("relect").await.map_err(err)?;
    check!(
        now.kv().map(|k| k.value()) == Some(&b"alice-2"[..]),
        "proclaim not seen"
    );
    let opts = etcd_client::ResignOptions::new().with_leader(leader);
    c.resign(Some(opts)).await.map_err(err)?;
    check!(
        c.leader("relect").await.is_err(),
        "a leader after the only one resigned"
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let endpoints: Vec<String> = std::env::args()
        .nth(1)
        .unwrap_or_default()
        .split(',')
        .map(|e| format!("http://{e}"))
        .collect();
    let mut c = match Client::connect(&endpoints, None).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("connect: {e}");
            std::process::exit(1);
        }
    };
    for (name, result) in [
        ("watch", watch(&mut c).await),
        ("lease", lease(&mut c).await),
        ("lock", lock(&mut c).await),
        ("election", election(&mut c).await),
    ] {
        match result {
            Ok(()) => println!("{name}: ok"),
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::exit(1);
            }
        }
    }
}
