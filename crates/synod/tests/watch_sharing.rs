//! Many watchers on one stream, with equal and different selections, under writes that
//! arrive many revisions at a time: each watcher receives exactly its events, in
//! revision order, decoded by the generated `WatchResponse` — whether the member served
//! it together with the watchers of the same selection or on its own (one of them
//! replays history first).

mod common;

use etcdpb::etcdserverpb as pb;
use pb::kv_client::KvClient;
use pb::watch_client::WatchClient;
use pb::watch_create_request::FilterType;
use pb::watch_request::RequestUnion;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// What a watcher asks for.
#[derive(Clone, Debug)]
struct Ask {
    key: &'static [u8],
    end: &'static [u8],
    prev_kv: bool,
    no_put: bool,
    from: i64,
}

/// One write as the test made it: revision, key, a put (or a delete), the value.
#[derive(Clone, Debug)]
struct Write {
    rev: i64,
    key: Vec<u8>,
    put: bool,
    value: Vec<u8>,
}

/// What a watcher must receive: (revision, key, put?, value, the previous value when
/// it asked for it and there was one).
type Seen = (i64, Vec<u8>, bool, Vec<u8>, Option<Vec<u8>>);

/// What `ask` must receive of `writes`.
fn expected(ask: &Ask, writes: &[Write]) -> Vec<Seen> {
    let mut last: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut out = Vec::new();
    for w in writes {
        let prev = if w.put {
            last.insert(w.key.clone(), w.value.clone())
        } else {
            last.remove(&w.key)
        };
        let in_range = if ask.end.is_empty() {
            w.key == ask.key
        } else {
            w.key.as_slice() >= ask.key && w.key.as_slice() < ask.end
        };
        if in_range && w.rev >= ask.from && !(ask.no_put && w.put) {
            let prev = if ask.prev_kv { prev } else { None };
            out.push((w.rev, w.key.clone(), w.put, w.value.clone(), prev));
        }
    }
    out
}

async fn write_burst(url: String, writer: usize, rounds: usize) -> Vec<Write> {
    let mut kv = KvClient::connect(url).await.unwrap();
    let mut out = Vec::new();
    for i in 0..rounds {
        // Keys inside and outside the watched prefix; now and then a delete.
        let key = match (writer + i) % 4 {
            3 => format!("/t/{writer}"),
            _ => format!("/s/{}", (writer * 7 + i) % 5),
        }
        .into_bytes();
        if i % 6 == 5 {
            let r = kv
                .delete_range(pb::DeleteRangeRequest {
                    key: key.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            if r.deleted > 0 {
                let rev = r.header.unwrap().revision;
                out.push(Write {
                    rev,
                    key,
                    put: false,
                    value: Vec::new(),
                });
            }
            continue;
        }
        let value = format!("v{writer}-{i}").into_bytes();
        let r = kv
            .put(pb::PutRequest {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let rev = r.header.unwrap().revision;
        out.push(Write {
            rev,
            key,
            put: true,
            value,
        });
    }
    out
}

#[test]
fn every_watcher_of_a_stream_gets_exactly_its_events_shared_or_not() {
    let c = common::start(3, 10_000);
    // A follower serves the watches; the writes go through every member.
    let urls: Vec<String> = c
        .members
        .iter()
        .map(|m| format!("http://127.0.0.1:{}", m.client))
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // History the replaying watcher will read: revisions before the stream opens.
        let early = write_burst(urls[0].clone(), 9, 6).await;
        let from = early[0].rev;
        let now = early[early.len() - 1].rev + 1;
        let prefix = Ask {
            key: b"/s/",
            end: b"/s0",
            prev_kv: false,
            no_put: false,
            // Explicit, as the watching follower may not have applied `early` yet.
            from: now,
        };
        let asks = [
            prefix.clone(),
            prefix.clone(),
            Ask {
                prev_kv: true,
                ..prefix.clone()
            },
            Ask {
                no_put: true,
                ..prefix.clone()
            },
            Ask {
                key: b"/s/1",
                end: b"",
                ..prefix.clone()
            },
            Ask {
                from,
                ..prefix.clone()
            },
        ];
        let mut client = WatchClient::connect(urls[1].clone()).await.unwrap();
        let (tx, rx) = mpsc::channel(16);
        let mut stream = client
            .watch(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let mut ids = Vec::new();
        // Answers to earlier watchers (the replay) may come before a create's.
        let mut got: BTreeMap<i64, Vec<Seen>> = BTreeMap::new();
        for a in &asks {
            let create = pb::WatchCreateRequest {
                key: a.key.to_vec(),
                range_end: a.end.to_vec(),
                prev_kv: a.prev_kv,
                filters: if a.no_put {
                    vec![FilterType::Noput as i32]
                } else {
                    Vec::new()
                },
                start_revision: a.from,
                ..Default::default()
            };
            let req = pb::WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            };
            tx.send(req).await.unwrap();
            loop {
                let r = stream.message().await.unwrap().unwrap();
                if r.created {
                    ids.push(r.watch_id);
                    break;
                }
                record(&mut got, r);
            }
        }
        // Eight writers at once, so that the member's runs hold many revisions.
        let writers: Vec<_> = (0..8)
            .map(|w| tokio::spawn(write_burst(urls[w % 3].clone(), w, 30)))
            .collect();
        let mut writes = early;
        for w in writers {
            writes.extend(w.await.unwrap());
        }
        writes.sort_by_key(|w| w.rev);
        let want: Vec<Vec<Seen>> = asks.iter().map(|a| expected(a, &writes)).collect();
        let done = |got: &BTreeMap<i64, Vec<Seen>>| {
            ids.iter()
                .zip(&want)
                .all(|(id, w)| got.get(id).map_or(0, Vec::len) >= w.len())
        };
        while !done(&got) {
            let next = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
            let r = next.expect("every event within 10 s").unwrap().unwrap();
            record(&mut got, r);
        }
        for ((id, w), a) in ids.iter().zip(&want).zip(&asks) {
            let g = got.get(id).cloned().unwrap_or_default();
            let first_wrong = g.iter().zip(w).position(|(x, y)| x != y);
            assert!(
                g.len() == w.len() && first_wrong.is_none(),
                "watcher {id} {a:?}: {} events, {} expected; first difference at {first_wrong:?}: \
                 {:?} vs {:?}",
                g.len(),
                w.len(),
                first_wrong.map(|i| &g[i]),
                first_wrong.map(|i| &w[i]),
            );
        }
        drop(tx);
    });
}

/// Adds the events of `r` to its watcher's list, checking the response's header.
fn record(got: &mut BTreeMap<i64, Vec<Seen>>, r: pb::WatchResponse) {
    assert!(!r.canceled, "{r:?}");
    let header = r.header.expect("every response has a header").revision;
    for e in r.events {
        let kv = e.kv.expect("an event has its key-value");
        assert!(
            kv.mod_revision <= header,
            "event above its header's revision"
        );
        let put = e.r#type == 0;
        let value = if put { kv.value } else { Vec::new() };
        let prev = e.prev_kv.map(|p| p.value);
        got.entry(r.watch_id)
            .or_default()
            .push((kv.mod_revision, kv.key, put, value, prev));
    }
}
