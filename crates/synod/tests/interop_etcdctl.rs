//! etcdctl 3.4 against a real 3-member `synod node` cluster: every command must
//! print what it prints for etcd 3.4 (etcdctl does the formatting; these tests
//! check that the values the server returns are the ones etcd would return).

mod common;

use common::{ensure_etcdctl, ok, Cluster};
use std::process::Output;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

/// `127.0.0.1:<client port>` of member `i`.
fn ep(c: &Cluster, i: usize) -> String {
    format!("127.0.0.1:{}", c.members[i].client)
}

/// stdout of a successful etcdctl run against every member.
fn ctl(c: &Cluster, args: &[&str]) -> String {
    ok(c.etcdctl(args), c)
}

/// stdout of a successful etcdctl run against member `i` only.
fn ctl_at(c: &Cluster, i: usize, args: &[&str]) -> String {
    ok(c.etcdctl_at(&ep(c, i), args, None), c)
}

/// stdout of a successful `etcdctl txn` fed `script` on stdin.
fn txn(c: &Cluster, endpoints: &str, script: &str) -> String {
    ok(c.etcdctl_at(endpoints, &["txn"], Some(script)), c)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that a command failed with `msg` on stderr.
fn assert_fails_with(o: Output, msg: &str, what: &str) {
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "{what}: expected failure, got stdout {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(err.contains(msg), "{what}: stderr lacks {msg:?}:\n{err}");
}

/// Polls `f` until it returns `Ok` or `timeout` passes; the last failure
/// description goes into the panic message.
fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("{what} within {timeout:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Standard base64 with padding, as Go's encoding/json prints []byte.
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A server version clientv3 accepts for etcdctl 3.4: `3.x.y` with x >= 4.
fn is_3_4_or_later(v: &str) -> bool {
    let n: Vec<u32> = v.split('.').filter_map(|p| p.parse().ok()).collect();
    n.len() == 3 && n[0] == 3 && n[1] >= 4
}

// ------------------------------------------------------- etcdctl's `-w json`

/// etcdctl's `-w json` output (serde_json keeps uint64 ids exact).
type Json = serde_json::Value;

/// Reading etcdctl's JSON the way Go wrote it: `omitempty` drops zeros and falses, so an
/// absent number is 0 and an absent bool false.
trait GoJson {
    fn u64(&self) -> u64;
    fn str(&self) -> &str;
    fn bool(&self) -> bool;
    fn arr(&self) -> &[Json];
}

impl GoJson for Json {
    fn u64(&self) -> u64 {
        match self {
            Json::Null => 0,
            v => v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}")),
        }
    }

    fn str(&self) -> &str {
        self.as_str()
            .unwrap_or_else(|| panic!("not a string: {self}"))
    }

    fn bool(&self) -> bool {
        self.as_bool() == Some(true)
    }

    fn arr(&self) -> &[Json] {
        self.as_array().map_or(&[], |a| a.as_slice())
    }
}

fn parse_json(text: &str) -> Json {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `get -w json` of `key` on `endpoints`.
fn get_json(c: &Cluster, endpoints: &str, args: &[&str]) -> Json {
    let mut full = vec!["get"];
    full.extend(args);
    full.extend(["-w", "json"]);
    parse_json(&ok(c.etcdctl_at(endpoints, &full, None), c))
}

/// Asserts one kv of a `-w json` range result.
fn assert_kv(kv: &Json, key: &str, value: &str, create: u64, modr: u64, version: u64) {
    assert_eq!(kv["key"].str(), b64(key.as_bytes()), "key of {kv:?}");
    assert_eq!(kv["value"].str(), b64(value.as_bytes()), "value of {kv:?}");
    assert_eq!(
        kv["create_revision"].u64(),
        create,
        "create_revision of {kv:?}"
    );
    assert_eq!(kv["mod_revision"].u64(), modr, "mod_revision of {kv:?}");
    assert_eq!(kv["version"].u64(), version, "version of {kv:?}");
}

/// The `member list` lines as (hex id, status, name, peer url, client url, learner).
fn member_list(c: &Cluster) -> Vec<Vec<String>> {
    let out = ctl(c, &["member", "list"]);
    let rows: Vec<Vec<String>> = out
        .lines()
        .map(|l| l.split(", ").map(str::to_string).collect())
        .collect();
    assert!(rows.iter().all(|r| r.len() == 6), "member list: {out}");
    rows
}

/// Hex member id (as `member list` prints it) of member `i`.
fn member_hex(members: &[Vec<String>], c: &Cluster, i: usize) -> String {
    let url = format!("http://{}", ep(c, i));
    members
        .iter()
        .find(|m| m[4] == url)
        .unwrap_or_else(|| panic!("no member with client url {url} in {members:?}"))[0]
        .clone()
}

// ------------------------------------------------------------------ tests

#[test]
fn put_get_del_and_range_options_print_what_etcd_prints() {
    ensure_etcdctl();
    let c = common::start(3, 10_000);

    // A fresh store is at revision 1: the puts get revisions 2, 3, 4, 5.
    assert_eq!(ctl(&c, &["put", "foo", "bar"]), "OK\n");
    assert_eq!(ctl(&c, &["put", "foo", "baz"]), "OK\n");
    assert_eq!(ctl(&c, &["put", "fop", "x"]), "OK\n");
    assert_eq!(ctl(&c, &["put", "zzz", "last"]), "OK\n");

    assert_eq!(ctl(&c, &["get", "foo"]), "foo\nbaz\n");
    assert_eq!(ctl(&c, &["get", "missing"]), "");
    assert_eq!(ctl(&c, &["get", "fo", "--prefix"]), "foo\nbaz\nfop\nx\n");
    assert_eq!(
        ctl(&c, &["get", "", "--prefix", "--keys-only"]),
        "foo\n\nfop\n\nzzz\n\n"
    );
    assert_eq!(ctl(&c, &["get", "foo", "--print-value-only"]), "baz\n");
    assert_eq!(
        ctl(&c, &["get", "fop", "--from-key"]),
        "fop\nx\nzzz\nlast\n"
    );

    // History: foo was "bar" at revision 2 and did not exist at revision 1.
    assert_eq!(ctl(&c, &["get", "foo", "--rev=2"]), "foo\nbar\n");
    assert_eq!(ctl(&c, &["get", "foo", "--rev=1"]), "");
    assert_eq!(ctl(&c, &["get", "fo", "--prefix", "--rev=3"]), "foo\nbaz\n");
    let old = get_json(&c, &c.endpoints(), &["foo", "--rev=2"]);
    assert_eq!(
        old["header"]["revision"].u64(),
        5,
        "a history read reports the current revision in its header: {old:?}"
    );
    assert_kv(&old["kvs"][0], "foo", "bar", 2, 2, 1);

    // Newest first by mod revision, only two of the three keys.
    let all = [
        "",
        "--prefix",
        "--limit=2",
        "--sort-by=MODIFY",
        "--order=DESCEND",
    ];
    let mut args = vec!["get"];
    args.extend(all);
    assert_eq!(ctl(&c, &args), "zzz\nlast\nfop\nx\n");
    args[5] = "--order=ASCEND";
    assert_eq!(ctl(&c, &args), "foo\nbaz\nfop\nx\n");
    let limited = get_json(&c, &c.endpoints(), &all);
    assert_eq!(limited["kvs"].arr().len(), 2, "{limited:?}");
    assert_eq!(
        limited["count"].u64(),
        3,
        "count is before the limit: {limited:?}"
    );
    assert!(limited["more"].bool(), "more must be true: {limited:?}");
    assert_eq!(
        ctl(
            &c,
            &["get", "", "--prefix", "--sort-by=KEY", "--order=DESCEND"]
        ),
        "zzz\nlast\nfop\nx\nfoo\nbaz\n"
    );

    // -w json metadata.
    let j = get_json(&c, &c.endpoints(), &["foo"]);
    let h = &j["header"];
    assert_ne!(h["cluster_id"].u64(), 0, "cluster_id: {j:?}");
    assert_ne!(h["member_id"].u64(), 0, "member_id: {j:?}");
    assert_ne!(h["raft_term"].u64(), 0, "raft_term: {j:?}");
    assert_eq!(h["revision"].u64(), 5, "revision: {j:?}");
    assert_eq!(j["count"].u64(), 1, "{j:?}");
    assert_eq!(j["kvs"].arr().len(), 1, "{j:?}");
    assert_kv(&j["kvs"][0], "foo", "baz", 2, 3, 2);
    let p = get_json(&c, &c.endpoints(), &["fo", "--prefix"]);
    assert_eq!(p["count"].u64(), 2, "{p:?}");
    assert!(!p["more"].bool(), "{p:?}");
    assert_kv(&p["kvs"][0], "foo", "baz", 2, 3, 2);
    assert_kv(&p["kvs"][1], "fop", "x", 4, 4, 1);

    // A put of the same value still bumps revision and version.
    assert_eq!(ctl(&c, &["put", "foo", "baz"]), "OK\n");
    let j = get_json(&c, &c.endpoints(), &["foo"]);
    assert_eq!(j["header"]["revision"].u64(), 6, "{j:?}");
    assert_kv(&j["kvs"][0], "foo", "baz", 2, 6, 3);

    // del prints the number of deleted keys; a no-op delete is not a write.
    assert_eq!(ctl(&c, &["del", "fop"]), "1\n");
    assert_eq!(ctl(&c, &["del", "fop"]), "0\n");
    assert_eq!(ctl(&c, &["get", "fo", "--prefix"]), "foo\nbaz\n");
    let j = get_json(&c, &c.endpoints(), &["fop"]);
    assert_eq!(j["header"]["revision"].u64(), 7, "{j:?}");
    assert_eq!(j["count"].u64(), 0, "{j:?}");
    assert!(j["kvs"].arr().is_empty(), "{j:?}");

    // Re-creating a deleted key starts a new generation.
    assert_eq!(ctl(&c, &["put", "fop", "y"]), "OK\n");
    let j = get_json(&c, &c.endpoints(), &["fop"]);
    assert_kv(&j["kvs"][0], "fop", "y", 8, 8, 1);
    assert_eq!(ctl(&c, &["get", "fop", "--rev=5"]), "fop\nx\n");
    assert_eq!(ctl(&c, &["get", "fop", "--rev=7"]), "");

    assert_eq!(ctl(&c, &["del", "fo", "--prefix"]), "2\n");
    assert_eq!(ctl(&c, &["del", "", "--prefix"]), "1\n");
    assert_eq!(ctl(&c, &["get", "", "--prefix"]), "");
    let j = get_json(&c, &c.endpoints(), &["", "--prefix"]);
    assert_eq!(j["header"]["revision"].u64(), 10, "{j:?}");
}

#[test]
fn txn_on_stdin_runs_the_right_branch() {
    ensure_etcdctl();
    let c = common::start(3, 10_000);
    let eps = c.endpoints();
    // Non-interactive txn: compares, blank line, success ops, blank line, failure ops, blank line.
    let t = |script: &str| txn(&c, &eps, script);
    let get = |key: &str| ctl(&c, &["get", key]);
    let kv = |key: &str| get_json(&c, &eps, &[key])["kvs"][0].clone();
    assert_eq!(ctl(&c, &["put", "k", "v"]), "OK\n"); // revision 2

    // value compare, success branch: a put and a read that sees it.
    let out = t("value(\"k\") = \"v\"\n\nput k v2\nget k\n\nput wrong 1\n\n");
    assert_eq!(out, "SUCCESS\n\nOK\n\nk\nv2\n"); // revision 3
    assert_eq!(get("wrong"), "");
    assert_eq!(get("k"), "k\nv2\n");

    // value compare, failure branch.
    let out = t("value(\"k\") = \"v\"\n\nput wrong 1\n\nput k v3\nget k\n\n");
    assert_eq!(out, "FAILURE\n\nOK\n\nk\nv3\n"); // revision 4
    assert_eq!(get("wrong"), "");
    assert_kv(&kv("k"), "k", "v3", 2, 4, 3);

    // A value compare on a missing key is false, whatever the operator.
    let out = t("value(\"nokey\") != \"x\"\n\nput wrong 1\n\nput vmiss yes\n\n");
    assert_eq!(out, "FAILURE\n\nOK\n"); // revision 5
    assert_eq!(get("wrong"), "");
    assert_eq!(get("vmiss"), "vmiss\nyes\n");

    // mod revision compares, both ways (a missing key has mod revision 0).
    let out = t("mod(\"k\") > \"0\"\n\nput m yes\n\nput m no\n\n");
    assert_eq!(out, "SUCCESS\n\nOK\n"); // revision 6
    assert_eq!(get("m"), "m\nyes\n");
    let out = t("mod(\"nokey\") > \"0\"\n\nput m2 yes\n\nput m2 no\n\n");
    assert_eq!(out, "FAILURE\n\nOK\n"); // revision 7
    assert_eq!(get("m2"), "m2\nno\n");
    let out = t("mod(\"k\") = \"4\"\n\nput m3 yes\n\nput m3 no\n\n");
    assert_eq!(out, "SUCCESS\n\nOK\n"); // revision 8
    assert_eq!(get("m3"), "m3\nyes\n");

    // create revision compares: k was created at revision 2.
    let out = t("create(\"k\") = \"2\"\n\ndel m\n\nput c no\n\n");
    assert_eq!(out, "SUCCESS\n\n1\n"); // revision 9
    assert_eq!(get("m"), "");
    assert_eq!(get("c"), "");
    let out = t("create(\"k\") = \"3\"\n\ndel k\n\nput c no\n\n");
    assert_eq!(out, "FAILURE\n\nOK\n"); // revision 10
    assert_eq!(get("k"), "k\nv3\n");
    assert_eq!(get("c"), "c\nno\n");

    // Compares are ANDed; a version compare; all ops of a branch share one revision.
    let out = t("version(\"k\") = \"3\"\ncreate(\"c\") = \"10\"\n\nput a 1\nput b 2\ndel c\n\nput wrong 1\n\n");
    assert_eq!(out, "SUCCESS\n\nOK\n\nOK\n\n1\n"); // revision 11
    assert_kv(&kv("a"), "a", "1", 11, 11, 1);
    assert_kv(&kv("b"), "b", "2", 11, 11, 1);
    assert_eq!(get("c"), "");
    let out = t("version(\"k\") = \"3\"\ncreate(\"a\") = \"2\"\n\nput wrong 1\n\nget a\n\n");
    assert_eq!(out, "FAILURE\n\na\n1\n");
    assert_eq!(get("wrong"), "");

    // A read-only txn does not create a revision.
    let j = get_json(&c, &eps, &["k"]);
    assert_eq!(j["header"]["revision"].u64(), 11, "{j:?}");

    // -w json of a txn carries succeeded and the sub-responses.
    let script = Some("mod(\"k\") = \"4\"\n\nget k\n\n\n");
    let j = parse_json(&ok(c.etcdctl_at(&eps, &["txn", "-w", "json"], script), &c));
    assert!(j["succeeded"].bool(), "{j:?}");
    assert_ne!(j["header"]["member_id"].u64(), 0, "{j:?}");
    let range = &j["responses"][0]["Response"]["ResponseRange"];
    assert_kv(&range["kvs"][0], "k", "v3", 2, 4, 3);
}

#[test]
fn compaction_refuses_older_revisions() {
    ensure_etcdctl();
    let c = common::start(3, 10_000);
    for v in ["1", "2", "3", "4"] {
        assert_eq!(ctl(&c, &["put", "c", v]), "OK\n"); // revisions 2..=5
    }
    assert_eq!(ctl(&c, &["get", "c", "--rev=2"]), "c\n1\n");
    assert_eq!(ctl(&c, &["compaction", "4"]), "compacted revision 4\n");

    const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
    const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";
    // Every member, linearizable reads: the compaction has been applied.
    for i in 0..3 {
        let at = ep(&c, i);
        for rev in ["--rev=2", "--rev=3"] {
            let o = c.etcdctl_at(&at, &["get", "c", rev], None);
            assert_fails_with(o, COMPACTED, &format!("get c {rev} on {at}"));
        }
        // Reading exactly at the compaction revision is allowed.
        assert_eq!(ctl_at(&c, i, &["get", "c", "--rev=4"]), "c\n3\n");
        assert_eq!(ctl_at(&c, i, &["get", "c", "--rev=5"]), "c\n4\n");
        assert_eq!(ctl_at(&c, i, &["get", "c"]), "c\n4\n");
        let o = c.etcdctl_at(&at, &["get", "c", "--rev=99"], None);
        assert_fails_with(o, FUTURE, &format!("get c --rev=99 on {at}"));
    }

    // Compacting again at or below the compaction revision, or in the future.
    assert_fails_with(
        c.etcdctl(&["compaction", "4"]),
        COMPACTED,
        "compaction 4 twice",
    );
    assert_fails_with(c.etcdctl(&["compaction", "3"]), COMPACTED, "compaction 3");
    assert_fails_with(c.etcdctl(&["compaction", "99"]), FUTURE, "compaction 99");

    // Compaction does not create a revision.
    let j = get_json(&c, &c.endpoints(), &["c"]);
    assert_eq!(j["header"]["revision"].u64(), 5, "{j:?}");
    assert_kv(&j["kvs"][0], "c", "4", 2, 5, 4);

    // Physical compaction (waits until applied) works too.
    assert_eq!(ctl(&c, &["put", "c", "5"]), "OK\n"); // revision 6
    assert_eq!(
        ctl(&c, &["compaction", "6", "--physical"]),
        "compacted revision 6\n"
    );
    let o = c.etcdctl(&["get", "c", "--rev=5"]);
    assert_fails_with(o, COMPACTED, "get c --rev=5 after compaction 6");
    assert_eq!(ctl(&c, &["get", "c", "--rev=6"]), "c\n5\n");
}

#[test]
fn member_list_and_endpoint_commands_describe_the_cluster() {
    ensure_etcdctl();
    let c = common::start(3, 10_000);

    // member list: one line per member with the real URLs.
    let members = member_list(&c);
    assert_eq!(members.len(), 3, "{members:?}");
    for (i, m) in c.members.iter().enumerate() {
        let line = members
            .iter()
            .find(|l| l[2] == m.name)
            .unwrap_or_else(|| panic!("member {} missing from {members:?}", m.name));
        assert_eq!(line[1], "started", "{line:?}");
        assert_eq!(line[3], format!("http://127.0.0.1:{}", m.peer), "{line:?}");
        assert_eq!(line[4], format!("http://{}", ep(&c, i)), "{line:?}");
        assert_eq!(line[5], "false", "{line:?}");
        assert!(
            !line[0].is_empty() && u64::from_str_radix(&line[0], 16).is_ok_and(|v| v != 0),
            "member id must be non-zero hex: {line:?}"
        );
    }
    let mut ids: Vec<&String> = members.iter().map(|m| &m[0]).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "member ids must differ: {members:?}");

    // The same list from every member.
    for i in 0..3 {
        let mut here: Vec<String> = ctl_at(&c, i, &["member", "list"])
            .lines()
            .map(str::to_string)
            .collect();
        here.sort();
        let mut all: Vec<String> = members.iter().map(|m| m.join(", ")).collect();
        all.sort();
        assert_eq!(here, all, "member list on {}", ep(&c, i));
    }

    // Some data, so that status and hashkv have something to report.
    for i in 0..5 {
        assert_eq!(ctl(&c, &["put", &format!("k{i}"), "v"]), "OK\n");
    }

    // endpoint status -w json: one leader, one term, ids that match member list.
    // A re-election between the three Status calls would show two terms; retry.
    let statuses = eventually(Duration::from_secs(10), "a stable endpoint status", || {
        let j = parse_json(&ctl(&c, &["endpoint", "status", "-w", "json"]));
        let st = j.arr().to_vec();
        if st.len() != 3 {
            return Err(format!("expected 3 statuses: {j:?}"));
        }
        let terms: Vec<u64> = st.iter().map(|s| s["Status"]["raftTerm"].u64()).collect();
        let leaders: Vec<u64> = st.iter().map(|s| s["Status"]["leader"].u64()).collect();
        if terms.iter().any(|t| *t != terms[0]) || leaders.iter().any(|l| *l != leaders[0]) {
            return Err(format!("terms {terms:?} leaders {leaders:?}"));
        }
        Ok(st)
    });
    let cluster_id = statuses[0]["Status"]["header"]["cluster_id"].u64();
    assert_ne!(cluster_id, 0);
    let term = statuses[0]["Status"]["raftTerm"].u64();
    assert_ne!(term, 0);
    let leader = statuses[0]["Status"]["leader"].u64();
    let mut leaders = 0;
    for s in &statuses {
        let at = s["Endpoint"].str();
        let i = (0..3).find(|&i| ep(&c, i) == at).expect("known endpoint");
        let st = &s["Status"];
        let h = &st["header"];
        assert_eq!(h["cluster_id"].u64(), cluster_id, "{s:?}");
        assert_eq!(h["raft_term"].u64(), term, "{s:?}");
        assert_eq!(
            format!("{:x}", h["member_id"].u64()),
            member_hex(&members, &c, i),
            "Status header.member_id of {at} must be its member list id"
        );
        assert!(is_3_4_or_later(st["version"].str()), "{s:?}");
        assert_ne!(st["raftIndex"].u64(), 0, "{s:?}");
        assert!(st["dbSize"].u64() > 0, "{s:?}");
        if h["member_id"].u64() == leader {
            leaders += 1;
        }
    }
    assert_eq!(
        leaders, 1,
        "exactly one member is its own leader: {statuses:?}"
    );
    assert!(
        members.iter().any(|m| m[0] == format!("{leader:x}")),
        "leader {leader:x} is not a member: {members:?}"
    );
    // The harness's view of the leader agrees.
    let li = c.wait_leader(Duration::from_secs(5));
    assert_eq!(format!("{leader:x}"), member_hex(&members, &c, li));

    // Default (simple) output: `ep, id, version, size, leader, learner, term, index, applied, errors`.
    let out = ctl(&c, &["endpoint", "status"]);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split(", ").collect()).collect();
    assert_eq!(rows.len(), 3, "{out}");
    for r in &rows {
        assert!(r.len() >= 9, "{out}");
        let i = (0..3).find(|&i| ep(&c, i) == r[0]).expect("known endpoint");
        assert_eq!(r[1], member_hex(&members, &c, i), "{out}");
        assert!(is_3_4_or_later(r[2]), "{out}");
        assert_eq!(r[4] == "true", r[1] == format!("{leader:x}"), "{out}");
        assert_eq!(r[5], "false", "{out}");
        assert_eq!(r[6], term.to_string(), "{out}");
    }

    // endpoint health: etcdctl 3.4 prints the healthy lines on stderr.
    let o = c.etcdctl(&["endpoint", "health"]);
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "{text}");
    for i in 0..3 {
        let prefix = format!(
            "{} is healthy: successfully committed proposal: took = ",
            ep(&c, i)
        );
        assert_eq!(
            text.lines().filter(|l| l.starts_with(&prefix)).count(),
            1,
            "{text}"
        );
    }
    assert_eq!(text.lines().count(), 3, "{text}");

    // endpoint hashkv: one hash on all members once followers have applied.
    let hashes = |extra: &[&str]| {
        let mut args = vec!["endpoint", "hashkv"];
        args.extend(extra);
        let out = ctl(&c, &args);
        let mut seen = Vec::new();
        for l in out.lines() {
            let (at, hash) = l.split_once(", ").expect("`ep, hash` line");
            seen.push((at.to_string(), hash.parse::<u32>().expect("a u32 hash")));
        }
        seen
    };
    let agreed = |extra: &'static [&'static str]| {
        eventually(Duration::from_secs(5), "one hashkv on all members", || {
            let seen = hashes(extra);
            if seen.len() == 3 && seen.iter().all(|(_, h)| *h == seen[0].1) {
                Ok(seen[0].1)
            } else {
                Err(format!("{seen:?}"))
            }
        })
    };
    let before = agreed(&[]);
    assert_eq!(ctl(&c, &["put", "k9", "changed"]), "OK\n");
    let after = agreed(&[]);
    assert_ne!(before, after, "a write must change the hash");
    // Hash at an old revision is still the old hash.
    let at_old = agreed(&["--rev=6"]);
    assert_eq!(at_old, before, "hashkv --rev=6 (before the last write)");
}

#[test]
fn writes_through_a_follower_are_readable_on_every_member() {
    ensure_etcdctl();
    let c = common::start(3, 10_000);
    let leader = c.wait_leader(Duration::from_secs(5));
    let f1 = (leader + 1) % 3;
    let f2 = (leader + 2) % 3;
    let members = member_list(&c);

    // Writes go to followers only; they forward to the leader.
    assert_eq!(ctl_at(&c, f1, &["put", "fw", "1"]), "OK\n"); // revision 2
    assert_eq!(ctl_at(&c, f2, &["put", "fw", "2"]), "OK\n"); // revision 3
    assert_eq!(ctl_at(&c, f1, &["put", "other", "x"]), "OK\n"); // revision 4
    assert_eq!(ctl_at(&c, f2, &["del", "other"]), "1\n"); // revision 5
    let script = "value(\"fw\") = \"2\"\n\nput fw 3\nput tx yes\n\nput fw bad\n\n";
    let out = txn(&c, &ep(&c, f1), script);
    assert_eq!(out, "SUCCESS\n\nOK\n\nOK\n"); // revision 6

    for i in 0..3 {
        let at = ep(&c, i);
        // Linearizable (default) reads must see every acknowledged write at once.
        assert_eq!(ctl_at(&c, i, &["get", "fw"]), "fw\n3\n", "on {at}");
        assert_eq!(ctl_at(&c, i, &["get", "other"]), "", "on {at}");
        assert_eq!(ctl_at(&c, i, &["get", "tx"]), "tx\nyes\n", "on {at}");
        let j = get_json(&c, &at, &["fw"]);
        assert_eq!(j["header"]["revision"].u64(), 6, "on {at}: {j:?}");
        assert_eq!(
            format!("{:x}", j["header"]["member_id"].u64()),
            member_hex(&members, &c, i),
            "header.member_id on {at}"
        );
        assert_kv(&j["kvs"][0], "fw", "3", 2, 6, 3);

        // Serializable (local) reads catch up within a moment.
        let j = eventually(
            Duration::from_secs(5),
            "a serializable read catches up",
            || {
                let j = get_json(&c, &at, &["", "--prefix", "--consistency=s"]);
                if j["header"]["revision"].u64() == 6 {
                    Ok(j)
                } else {
                    Err(format!("on {at}: {j:?}"))
                }
            },
        );
        assert_eq!(j["count"].u64(), 2, "on {at}: {j:?}");
        assert_kv(&j["kvs"][0], "fw", "3", 2, 6, 3);
        assert_kv(&j["kvs"][1], "tx", "yes", 6, 6, 1);
        assert_eq!(
            ctl_at(&c, i, &["get", "fw", "--consistency=s"]),
            "fw\n3\n",
            "on {at}"
        );
        assert_eq!(
            ctl_at(&c, i, &["get", "fw", "--consistency=s", "--rev=3"]),
            "fw\n2\n",
            "on {at}"
        );
    }

    // A compaction sent to a follower applies everywhere.
    assert_eq!(
        ctl_at(&c, f2, &["compaction", "3"]),
        "compacted revision 3\n"
    );
    for i in 0..3 {
        let o = c.etcdctl_at(&ep(&c, i), &["get", "fw", "--rev=2"], None);
        assert_fails_with(
            o,
            "etcdserver: mvcc: required revision has been compacted",
            &format!("get fw --rev=2 on {}", ep(&c, i)),
        );
    }
}
