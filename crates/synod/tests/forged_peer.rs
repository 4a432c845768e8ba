//! A peer that forges traffic: a `Propose` whose command does not decode, and frames
//! that do not parse. The member refuses them, none exits, the forged command never
//! enters the log, and the cluster keeps serving writes (also after a restart).

mod common;

use common::{ok, Cluster};
use raft::{Message, RaftNode, Term};
use server::config::{fnv64, member_id};
use server::wire::{encode_frame, Handshake};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn ids(c: &Cluster) -> Vec<u64> {
    let id = |m: &common::Member| member_id(&m.name, &url(m.peer), &c.spec.token);
    c.members.iter().map(id).collect()
}

fn cluster_id(ids: &[u64], token: &str) -> u64 {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let bytes: Vec<u8> = sorted.iter().flat_map(|i| i.to_le_bytes()).collect();
    fnv64(&[&bytes, token.as_bytes()])
}

/// Opens a peer connection to member `to` that claims to come from member `from`.
fn impersonate(c: &Cluster, from: usize, to: usize) -> TcpStream {
    let ids = ids(c);
    let mut s = TcpStream::connect(("127.0.0.1", c.members[to].peer)).unwrap();
    let mut b = Handshake {
        cluster_id: cluster_id(&ids, &c.spec.token),
        from: engine::NodeId(ids[from]),
        to: engine::NodeId(ids[to]),
        engine: "raft",
    }
    .encode();
    let hello = format!("{}\n{}", c.members[from].name, url(c.members[from].client));
    b.extend_from_slice(&(hello.len() as u32).to_le_bytes());
    b.extend_from_slice(hello.as_bytes());
    s.write_all(&b).unwrap();
    s
}

fn wait_metric(c: &Cluster, i: usize, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = c.metric(i, name).unwrap_or(0.0) as u64;
        if v >= at_least || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn all_running(c: &mut Cluster) {
    for m in &mut c.members {
        let exited = m.child.as_mut().unwrap().try_wait().unwrap();
        assert!(exited.is_none(), "{} exited: {exited:?}", m.name);
    }
}

#[test]
fn a_forged_propose_is_refused_and_the_cluster_keeps_serving() {
    common::ensure_etcdctl();
    let mut c = common::start(3, 1000);
    ok(c.etcdctl(&["put", "before", "1"]), &c);
    let leader = c.wait_leader(Duration::from_secs(10));
    let from = (leader + 1) % 3;
    let term = c.status_field(leader, "term").unwrap();
    let last = c.status_field(leader, "last_index").unwrap();

    // A Propose whose command is not a command (long enough to carry a request id).
    let mut s = impersonate(&c, from, leader);
    let forged = Message::Propose {
        term: Term(term),
        command: b"\xffnot a command, but long enough".to_vec().into(),
    };
    let mut frames = Vec::new();
    encode_frame::<RaftNode>(&forged, &mut frames);
    s.write_all(&frames).unwrap();
    let refused = wait_metric(&c, leader, "synod_commands_refused_total", 1);
    assert_eq!(refused, 1, "{}", c.logs());

    // Frames that do not parse: the connection is closed, nothing else happens.
    let mut junk = impersonate(&c, from, leader);
    let _ = junk.write_all(&[0x10, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]);
    let _ = junk.write_all(&[0u8; 16]);

    ok(c.etcdctl(&["put", "after", "2"]), &c);
    assert_eq!(
        ok(c.etcdctl(&["get", "after", "--print-value-only"]), &c),
        "2\n"
    );
    all_running(&mut c);
    // The forged command never reached the log: only the puts' entries follow.
    let now = c.status_field(leader, "last_index").unwrap();
    assert!(now <= last + 2, "last index {last} -> {now}");
    assert!(c.logs().contains("refused a command a peer forwarded"));

    // Every member restarts past it.
    for i in 0..3 {
        c.kill(i);
        c.spawn(i).unwrap();
    }
    c.wait_leader(Duration::from_secs(20));
    c.wait_all_serving(Duration::from_secs(20));
    ok(c.etcdctl(&["put", "restarted", "3"]), &c);
    let got = ok(c.etcdctl(&["get", "before", "--print-value-only"]), &c);
    assert_eq!(got, "1\n");
    all_running(&mut c);
}
