//! Hostile traffic on a real member's listeners: a flood of idle connections, clients
//! that send their request a byte at a time or never finish it, a process out of file
//! descriptors, and malformed HTTP/2. Each time the member closes what misbehaves,
//! holds no more connections than its limit, does not spin, and keeps serving
//! everyone else.

mod common;

use common::{http_get, ok, Cluster};
use etcdpb::etcdserverpb::{RangeRequest, RangeResponse};
use prost::Message;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The connection limit and header deadline the flood member runs with.
const LIMIT: u64 = 32;
const HEADER_MS: &str = "1000";

/// Polls `f` every 20 ms until it gives a value; panics naming `what` after `timeout`.
fn until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(x) = f() {
            return x;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("connect")
}

/// Whether the member has closed `s` (or answered on it and closed), without waiting.
fn hung_up_now(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 64];
    let r = s.peek(&mut b);
    s.set_nonblocking(false).unwrap();
    match r {
        Ok(_) => true, // EOF, or an answer (an error status) before the close
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// Whether the member closes `s` within `within` (reading and dropping what it sends).
fn hung_up_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut sink = Vec::new();
    match s.read_to_end(&mut sink) {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// A series of member 0's /metrics (`name{labels}`), read on the metrics listener.
fn series(c: &Cluster, name: &str) -> Option<u64> {
    c.metric(0, name).map(|v| v as u64)
}

fn pid(c: &Cluster) -> i32 {
    c.members[0].child.as_ref().expect("running").id() as i32
}

/// User and system CPU seconds a process has used (/proc/PID/stat).
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which is in parentheses and may hold spaces):
    // state is the first, utime the 12th and stime the 13th.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .count()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn an_idle_flood_is_held_to_the_limit_and_cut_at_the_deadline_while_others_are_served() {
    common::ensure_etcdctl();
    let limit = LIMIT.to_string();
    let flags = [
        "--max-client-connections",
        &limit,
        "--unsafe-header-timeout",
        HEADER_MS,
    ];
    let c = common::start_with(1, 10_000, &flags);
    let (port, admin) = (c.members[0].client, c.members[0].admin);
    // A client connected before the flood.
    let rt = runtime();
    let url = format!("http://127.0.0.1:{port}");
    let mut kv = rt
        .block_on(etcdpb::etcdserverpb::kv_client::KvClient::connect(url))
        .unwrap();
    // Sample the client listener's open connections all along, from another thread.
    let (stop, peak) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let name = r#"synod_listener_connections{listener="client"}"#;
            while !stop.load(Ordering::SeqCst) {
                if let Some((200, body)) = http_get(admin, "/metrics") {
                    let open = body
                        .lines()
                        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                        .unwrap_or(0);
                    peak.fetch_max(open, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // Stops the sampler however this ends (a failed assertion too).
        let _stop = StopOnDrop(&stop);
        let flood: Vec<TcpStream> = (0..3 * LIMIT).map(|_| connect(port)).collect();
        let full = r#"synod_listener_connections{listener="client"}"#;
        until("the listener filled up", Duration::from_secs(10), || {
            (series(&c, full) >= Some(LIMIT)).then_some(())
        });
        // The client connected before keeps being served, and so is the metrics
        // listener, which has slots of its own.
        let during = rt.block_on(async {
            let put = etcdpb::etcdserverpb::PutRequest {
                key: b"during".to_vec(),
                value: b"flood".to_vec(),
                ..Default::default()
            };
            tokio::time::timeout(Duration::from_secs(5), kv.put(put)).await
        });
        assert!(matches!(during, Ok(Ok(_))), "{during:?}");
        assert_eq!(http_get(admin, "/health").map(|(code, _)| code), Some(200));
        // A new client gets in once the deadline has cut the idle connections ahead
        // of it (32 a second).
        let one = format!("127.0.0.1:{port}");
        let patient = ["--dial-timeout=20s", "--command-timeout=20s"];
        let put = [&patient[..], &["put", "fresh", "v"]].concat();
        ok(c.etcdctl_at(&one, &put, None), &c);
        let get = [&patient[..], &["get", "fresh", "--print-value-only"]].concat();
        assert_eq!(ok(c.etcdctl_at(&one, &get, None), &c), "v\n");
        assert_eq!(http_get(port, "/health").map(|(code, _)| code), Some(200));
        until("every idle connection cut", Duration::from_secs(10), || {
            flood.iter().all(hung_up_now).then_some(())
        });
    });
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= LIMIT,
        "{peak} connections open at once, limit {LIMIT}"
    );
    assert_eq!(peak, LIMIT, "the flood never filled the listener");
}

#[test]
fn a_client_dribbling_its_request_head_is_cut_at_the_deadline_while_others_are_served() {
    // A 2 s deadline: room for the other clients to be served before it.
    let c = common::start_with(1, 10_000, &["--unsafe-header-timeout", "2000"]);
    let (port, admin) = (c.members[0].client, c.members[0].admin);
    let started = Instant::now();
    let mut slow = connect(port);
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // A byte every 50 ms: the whole head would take 10 s.
    let dribbler = std::thread::spawn(move || {
        for _ in 0..200 {
            if hung_up_now(&slow) || slow.write_all(b"a").is_err() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    });
    // A request head without the first bytes of either protocol finished, and a
    // body that never completes.
    let mut partial_preface = connect(port);
    partial_preface.write_all(b"PR").unwrap();
    let mut short_body = connect(port);
    short_body
        .write_all(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        .unwrap();
    // Meanwhile everyone else is served, on both listeners.
    assert_eq!(http_get(port, "/health").map(|(code, _)| code), Some(200));
    assert_eq!(http_get(admin, "/health").map(|(code, _)| code), Some(200));
    assert!(
        !dribbler.is_finished(),
        "cut off before the others were served"
    );
    let cut = dribbler.join().unwrap();
    let cut = cut.expect("the dribbling client was never cut off");
    assert!(cut < Duration::from_secs(6), "cut off only after {cut:?}");
    let within = Duration::from_secs(5);
    assert!(
        hung_up_within(&mut partial_preface, within),
        "partial preface"
    );
    assert!(hung_up_within(&mut short_body, within), "unfinished body");
}

/// Sets the soft RLIMIT_NOFILE of process `pid` to `n`.
fn limit_fds(pid: i32, n: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reads `new` and writes `old`, both valid for the call.
    let got = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(got, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: n,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn out_of_file_descriptors_the_member_backs_off_counts_and_serves_again() {
    common::ensure_etcdctl();
    let c = common::start(1, 10_000);
    let m = &c.members[0];
    let pid = pid(&c);
    let started = Instant::now();
    let ceiling = open_fds(pid) as u64 + 12;
    limit_fds(pid, ceiling);
    // More connections than descriptors left: the rest wait in the backlog, and the
    // listener stays readable while every accept fails with EMFILE.
    let mut held: Vec<TcpStream> = (0..40).map(|_| connect(m.client)).collect();
    until("descriptors exhausted", Duration::from_secs(10), || {
        (open_fds(pid) as u64 >= ceiling).then_some(())
    });
    held.push(connect(m.peer));
    held.push(connect(m.admin));
    let cpu_before = cpu_seconds(pid);
    let window = Instant::now();
    until(
        "a 2 s window out of descriptors",
        Duration::from_secs(10),
        || (window.elapsed() >= Duration::from_secs(2)).then_some(()),
    );
    let cpu = cpu_seconds(pid) - cpu_before;
    assert!(
        cpu < 0.5,
        "{cpu:.2} s of CPU in 2 s out of descriptors: spinning"
    );
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(held);
    until("serving again", Duration::from_secs(10), || {
        http_get(m.client, "/health").filter(|(code, _)| *code == 200)
    });
    let elapsed = started.elapsed().as_secs_f64();
    for listener in ["client", "metrics", "peer"] {
        let name = format!(r#"synod_accept_errors_total{{listener="{listener}"}}"#);
        let errors = series(&c, &name).expect("the accept error counter") as f64;
        // One failed accept per 100 ms pause (half that, to leave room): spinning
        // would fail millions of times.
        assert!(errors >= 1.0, "no accept error counted on {listener}");
        assert!(
            errors <= elapsed * 20.0,
            "{errors} on {listener} in {elapsed:.1} s"
        );
    }
    let one = format!("127.0.0.1:{}", m.client);
    ok(c.etcdctl_at(&one, &["put", "after", "emfile"], None), &c);
    let got = ok(
        c.etcdctl_at(&one, &["get", "after", "--print-value-only"], None),
        &c,
    );
    assert_eq!(got, "emfile\n");
    assert!(c.log_of(0).contains("accept_failed"), "{}", c.log_of(0));
}

/// A serializable Range of `key` over an HTTP/2 connection, by hand: the revision.
async fn range(send: &h2::client::SendRequest<bytes::Bytes>, key: &[u8]) -> Result<i64, String> {
    let e = |e: h2::Error| e.to_string();
    let req = http::Request::post("http://127.0.0.1/etcdserverpb.KV/Range")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut send = send.clone().ready().await.map_err(e)?;
    let (response, mut stream) = send.send_request(req, false).map_err(e)?;
    let msg = RangeRequest {
        key: key.to_vec(),
        serializable: true,
        ..Default::default()
    }
    .encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(&msg);
    stream.send_data(framed.into(), true).map_err(e)?;
    let mut body = response.await.map_err(e)?.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(e)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.map_err(e)?.unwrap_or_default();
    let status = trailers.get("grpc-status").map(|v| v.as_bytes().to_vec());
    if status.as_deref() != Some(b"0") || data.len() < 5 {
        return Err(format!("grpc-status {status:?}, {} bytes", data.len()));
    }
    let r = RangeResponse::decode(&data[5..]).map_err(|e| e.to_string())?;
    Ok(r.header.map_or(0, |h| h.revision))
}

#[test]
fn malformed_http2_closes_only_its_own_connection() {
    let c = common::start(1, 10_000);
    let port = c.members[0].client;
    let rt = runtime();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (send, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(conn);
        range(&send, b"k")
            .await
            .expect("a range on a sound connection");
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        // A broken preface, and a sound one followed by a frame larger than allowed.
        let hostile = [b"PRI garbage, not a preface\r\n\r\n".to_vec(), {
            let mut b = preface.to_vec();
            b.extend_from_slice(&[0xff; 64]);
            b
        }];
        for bytes in hostile {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            s.write_all(&bytes).await.unwrap();
            let mut sink = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut sink));
            assert!(closed.await.is_ok(), "{:?}: not closed", &bytes[..8]);
        }
        assert!(!conn.is_finished(), "the sound connection was closed too");
        range(&send, b"k")
            .await
            .expect("the sound connection still serves");
    });
    // The broken connections gave their slots back; the sound one holds its own.
    let open = r#"synod_listener_connections{listener="client"}"#;
    until(
        "one connection (the sound one) open",
        Duration::from_secs(5),
        || (series(&c, open) == Some(1)).then_some(()),
    );
}
