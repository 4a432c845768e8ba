//! The watch clients: one Watch stream each over the whole key space (every workload's
//! keys) with `prev_kv`, every response recorded with its time. A stream that ends —
//! an error, a killed member, `etcdserver: no leader` on a stream that requires a
//! leader — is opened again on the next member, resuming at the revision after the
//! last event it delivered. At the end the authoritative history (a watch from
//! revision 1 on the leader) is fetched for the checker (`watch_check.rs`).

use super::workload::Recording;
use etcdpb::etcdserverpb as pb;
use etcdpb::mvccpb;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// How long opening a stream (up to its `created` answer) may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a waiting stream looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);
/// The largest watch response accepted.
const MAX_RESPONSE: usize = 256 << 20;

/// One thing that happened on a watcher's streams.
#[derive(Clone, Debug)]
pub enum Entry {
    /// A stream was created: it is owed events from `start_rev` on (the revision after
    /// the create's header revision when it asked for 0, "from now").
    Start {
        at_us: u64,
        member: usize,
        requested: i64,
        start_rev: i64,
    },
    /// A response with events (or a bare header).
    Response {
        at_us: u64,
        header_rev: i64,
        fragment: bool,
        events: Vec<mvccpb::Event>,
    },
    /// The stream ended, and why.
    End { at_us: u64, why: String },
}

/// What one watch client saw.
#[derive(Clone, Debug, Default)]
pub struct WatchLog {
    /// Which watcher (0, 1, …).
    pub id: usize,
    /// Whether its streams ask for a leader (`hasleader=true`).
    pub require_leader: bool,
    pub entries: Vec<Entry>,
    /// The revision it is owed next (0 before the first stream: from now).
    pub next: i64,
    /// The highest event revision it has seen.
    pub last_rev: i64,
}

impl WatchLog {
    /// Streams opened after the first.
    pub fn reconnects(&self) -> usize {
        let starts = self
            .entries
            .iter()
            .filter(|e| matches!(e, Entry::Start { .. }))
            .count();
        starts.saturating_sub(1)
    }
}

/// A create request for the whole key space from `start_rev`, with `prev_kv`.
fn create(start_rev: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: vec![0],
                range_end: vec![0],
                start_revision: start_rev,
                prev_kv: true,
                ..Default::default()
            },
        )),
    }
}

/// Opens a watch stream on `endpoint` from `start_rev`; the sender must be kept for
/// as long as the stream is used.
async fn open(
    endpoint: &str,
    start_rev: i64,
    require_leader: bool,
) -> Result<
    (
        mpsc::Sender<pb::WatchRequest>,
        tonic::Streaming<pb::WatchResponse>,
    ),
    String,
> {
    let ch = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_millis(300))
        .connect_lazy();
    // A replay of history carries up to a thousand events with their previous values,
    // and the append workload's lists grow long: more than tonic's default 4 MiB.
    let mut client = pb::watch_client::WatchClient::new(ch).max_decoding_message_size(MAX_RESPONSE);
    let (tx, rx) = mpsc::channel(4);
    tx.send(create(start_rev))
        .await
        .map_err(|_| "request channel closed".to_string())?;
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    if require_leader {
        req.metadata_mut().insert(
            "hasleader",
            tonic::metadata::MetadataValue::from_static("true"),
        );
    }
    let stream = client
        .watch(req)
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    Ok((tx, stream))
}

/// Records one response; an error when it ends the stream (a cancel).
fn on_response(rec: &Recording, log: &Mutex<WatchLog>, r: pb::WatchResponse) -> Result<(), String> {
    let at_us = rec.now_us();
    let header_rev = r.header.as_ref().map_or(0, |h| h.revision);
    let mut log = log.lock().unwrap();
    if r.canceled {
        return Err(format!("canceled: {}", r.cancel_reason));
    }
    if let Some(max) = r
        .events
        .iter()
        .filter_map(|e| e.kv.as_ref())
        .map(|kv| kv.mod_revision)
        .max()
    {
        log.last_rev = log.last_rev.max(max);
        if !r.fragment {
            log.next = log.next.max(max + 1);
        }
    }
    log.entries.push(Entry::Response {
        at_us,
        header_rev,
        fragment: r.fragment,
        events: r.events,
    });
    Ok(())
}

/// One stream's life on member `member`; why it ended.
async fn session(
    rec: &Recording,
    log: &Mutex<WatchLog>,
    stop: &AtomicBool,
    member: usize,
    endpoint: &str,
) -> String {
    let (requested, require_leader) = {
        let l = log.lock().unwrap();
        (l.next, l.require_leader)
    };
    let opened = tokio::time::timeout(OPEN_TIMEOUT, async {
        let (tx, mut stream) = open(endpoint, requested, require_leader).await?;
        match stream.message().await {
            Ok(Some(r)) if r.created && !r.canceled => Ok((tx, stream, r)),
            Ok(Some(r)) => Err(format!("create refused: {}", r.cancel_reason)),
            Ok(None) => Err("stream ended before its create was answered".into()),
            Err(s) => Err(s.message().to_string()),
        }
    })
    .await;
    let (_tx, mut stream, created) = match opened {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return e,
        Err(_) => return "timeout opening the stream".into(),
    };
    {
        let mut l = log.lock().unwrap();
        let header_rev = created.header.map_or(0, |h| h.revision);
        let start_rev = if requested > 0 {
            requested
        } else {
            header_rev + 1
        };
        l.next = start_rev;
        l.entries.push(Entry::Start {
            at_us: rec.now_us(),
            member,
            requested,
            start_rev,
        });
    }
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(POLL, stream.message()).await {
            Err(_) => {}
            Ok(Ok(Some(r))) => {
                if let Err(why) = on_response(rec, log, r) {
                    return why;
                }
            }
            Ok(Ok(None)) => return "stream ended by the member".into(),
            Ok(Err(s)) => return format!("{:?}: {}", s.code(), s.message()),
        }
    }
    "stopped".into()
}

/// One watch client until `stop`, starting on member `first` of `endpoints`.
pub async fn client(
    rec: Arc<Recording>,
    log: Arc<Mutex<WatchLog>>,
    stop: Arc<AtomicBool>,
    endpoints: Vec<String>,
    first: usize,
) {
    let mut member = first;
    while !stop.load(Ordering::Relaxed) {
        let why = session(&rec, &log, &stop, member, &endpoints[member]).await;
        log.lock().unwrap().entries.push(Entry::End {
            at_us: rec.now_us(),
            why,
        });
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Resume on the next member: followers serve watches too.
        member = (member + 1) % endpoints.len();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The authoritative history: every event from revision 1 through at least `upto`,
/// as a watch on `endpoint` replays it (with `prev_kv`).
pub async fn history(endpoint: &str, upto: i64) -> Result<Vec<mvccpb::Event>, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (_tx, mut stream) = tokio::time::timeout(OPEN_TIMEOUT, open(endpoint, 1, false))
        .await
        .map_err(|_| "history: timeout opening the watch".to_string())??;
    let mut events = Vec::new();
    let mut last = 0;
    while last < upto {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = match tokio::time::timeout(left, stream.message()).await {
            Err(_) => {
                return Err(format!(
                    "history: only through revision {last} of {upto} in 30 s"
                ))
            }
            Ok(Err(s)) => return Err(format!("history: {}", s.message())),
            Ok(Ok(None)) => return Err("history: the stream ended".into()),
            Ok(Ok(Some(r))) => r,
        };
        if r.canceled {
            return Err(format!("history: canceled: {}", r.cancel_reason));
        }
        for e in r.events {
            last = last.max(e.kv.as_ref().map_or(0, |kv| kv.mod_revision));
            events.push(e);
        }
    }
    Ok(events)
}

/// The current revision as `endpoint` answers a linearizable read.
pub async fn current_revision(endpoint: &str) -> Result<i64, String> {
    let mut kv = super::workload::connect(endpoint);
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        kv.range(pb::RangeRequest {
            key: b"\0".to_vec(),
            count_only: true,
            ..Default::default()
        }),
    )
    .await
    .map_err(|_| "revision: timeout".to_string())?
    .map_err(|s| format!("revision: {}", s.message()))?;
    Ok(r.into_inner().header.map_or(0, |h| h.revision))
}

/// One line of `watch.jsonl` per entry.
pub fn jsonl(logs: &[WatchLog]) -> String {
    let mut out = String::new();
    for l in logs {
        for e in &l.entries {
            let v = match e {
                Entry::Start {
                    at_us,
                    member,
                    requested,
                    start_rev,
                } => {
                    serde_json::json!({"watcher": l.id, "t_us": at_us, "start": {"member": member, "requested": requested, "start_rev": start_rev}})
                }
                Entry::Response {
                    at_us,
                    header_rev,
                    fragment,
                    events,
                } => {
                    serde_json::json!({"watcher": l.id, "t_us": at_us, "header_rev": header_rev, "fragment": fragment, "events": events.iter().map(event_json).collect::<Vec<_>>()})
                }
                Entry::End { at_us, why } => {
                    serde_json::json!({"watcher": l.id, "t_us": at_us, "end": why})
                }
            };
            out.push_str(&v.to_string());
            out.push('\n');
        }
    }
    out
}

fn kv_json(kv: &mvccpb::KeyValue) -> serde_json::Value {
    serde_json::json!({
        "key": String::from_utf8_lossy(&kv.key),
        "value": String::from_utf8_lossy(&kv.value),
        "create": kv.create_revision,
        "mod": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    })
}

fn event_json(e: &mvccpb::Event) -> serde_json::Value {
    serde_json::json!({
        "type": if e.r#type == mvccpb::event::EventType::Delete as i32 { "delete" } else { "put" },
        "kv": e.kv.as_ref().map(kv_json),
        "prev_kv": e.prev_kv.as_ref().map(kv_json),
    })
}
