//! `etcdserverpb.Watch`: many watchers on one bidirectional stream, served on every
//! member from its applied state.
//!
//! Each stream is one task. It listens to the member's [`WatchHub`] feed and keeps,
//! per watcher, the next revision the watcher is owed. A revision from the feed is
//! delivered to the watchers that expect exactly it; a watcher that expects an earlier
//! one (a replay from `start_revision`, a stream that lagged behind the feed, a gap
//! after a snapshot install) first reads what it missed from the store's history, in
//! batches that never split a revision. So a watcher sees every event once, in
//! revision order, whatever happened in between — or is canceled as compacted.
//!
//! [`WatchHub`]: crate::watch_hub::WatchHub

use crate::api::{errors, Api};
use crate::convert;
use crate::watch_hub::{Feed, Revision};
use crate::watch_wire::{frame_event, EventsOut, OutStream, WatchOut};
use etcdpb::etcdserverpb as pb;
use etcdpb::mvccpb;
use prost::bytes::{Bytes, BytesMut};
use prost::Message as _;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses a stream may have queued for a slow client before it waits.
const OUT_CAPACITY: usize = 16;
/// Most events one history read returns (a revision is never split).
const HISTORY_BATCH: usize = 1_000;
/// Most revisions a stream takes from the feed at once; a watcher hears all of them
/// (that concern it) in one response. (256 measured no faster in the fan-out bench.)
const FEED_BATCH: usize = 64;
/// A watcher's response stops growing once its events reach this many bytes (a
/// revision is never split, so one response may exceed it by one revision). Far under
/// the 4 MiB a gRPC client accepts by default; with [`OUT_CAPACITY`] it bounds what a
/// stream queues for a slow client to about 4 MiB.
const BATCH_BYTES: usize = 256 << 10;
/// How often `progress_notify` watchers hear the revision when nothing happens
/// (etcd's default).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

/// etcd's reasons for refusing a create.
const EMPTY_RANGE: &str = "mvcc: watcher range is empty";
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
const NEGATIVE_ID: &str = "synod: a watch id must be 0 (chosen by the server) or positive";
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// The Watch service.
pub struct WatchService {
    api: Api,
}

impl WatchService {
    /// A Watch service over `api`.
    pub fn new(api: Api) -> WatchService {
        WatchService { api }
    }
}

impl WatchService {
    /// One Watch call: the stream's task, and the responses it sends.
    pub async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<OutStream>, Status> {
        // clientv3's WithRequireLeader: refuse now, and end the stream when the leader
        // is lost.
        let require_leader = request
            .metadata()
            .get("hasleader")
            .is_some_and(|v| v.as_bytes() == b"true");
        if require_leader && self.api.shared.status.borrow().leader.is_none() {
            return Err(errors::no_leader());
        }
        let (out, rx) = mpsc::channel(OUT_CAPACITY);
        let stream = WatchStream {
            feed: self.api.shared.watch_hub.subscribe(),
            api: self.api.clone(),
            out,
            watchers: BTreeMap::new(),
            next_id: 0,
        };
        tokio::spawn(stream.run(request.into_inner(), require_leader));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A watcher's range, `prev_kv`, and filters (no puts, no deletes).
type Selection<'a> = (&'a [u8], &'a [u8], bool, bool, bool);

/// One watcher of a stream.
struct Watcher {
    key: Vec<u8>,
    end: Vec<u8>,
    /// The next revision this watcher is owed.
    next_rev: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    fragment: bool,
    progress_notify: bool,
}

impl Watcher {
    fn wants(&self, e: &kv::Event) -> bool {
        let key = e.kv.key.as_slice();
        let in_range = match self.end.as_slice() {
            [] => key == self.key.as_slice(),
            [0] => key >= self.key.as_slice(),
            end => key >= self.key.as_slice() && key < end,
        };
        let filtered = match e.kind {
            kv::EventKind::Put => self.no_put,
            kv::EventKind::Delete => self.no_delete,
        };
        in_range && !filtered
    }

    /// Appends the events of an applied revision this watcher wants, encoded (shared
    /// with every other watcher on the member), to `out`; returns their bytes.
    fn select_into(&self, r: &Revision, out: &mut Vec<Bytes>) -> usize {
        let mut bytes = 0;
        for (i, e) in r.events.iter().enumerate() {
            if self.wants(e) {
                let b = r.encoded(i, self.prev_kv);
                bytes += b.len();
                out.push(b);
            }
        }
        bytes
    }

    /// What decides which events of a revision this watcher receives, and how.
    fn selection(&self) -> Selection<'_> {
        (
            &self.key,
            &self.end,
            self.prev_kv,
            self.no_put,
            self.no_delete,
        )
    }

    /// The events of `run` (consecutive revisions) this watcher wants, framed as a
    /// response's events, in parts cut at a revision once a part reaches
    /// [`BATCH_BYTES`]: each the revision it runs through and its framed events. The
    /// last part runs through the run's last revision; there is none when nothing in
    /// the run concerns the watcher.
    fn frame_run(&self, run: &[Arc<Revision>]) -> Vec<(i64, Bytes)> {
        let mut parts = Vec::new();
        let mut buf = BytesMut::new();
        for r in run {
            for (i, e) in r.events.iter().enumerate() {
                if self.wants(e) {
                    frame_event(&r.encoded(i, self.prev_kv), &mut buf);
                }
            }
            if buf.len() >= BATCH_BYTES {
                parts.push((r.revision, buf.split().freeze()));
            }
        }
        if !buf.is_empty() {
            parts.push((run[run.len() - 1].revision, buf.freeze()));
        }
        parts
    }

    /// The events of a history read this watcher wants, encoded for it alone.
    fn select_history(&self, events: &[kv::Event]) -> Vec<Bytes> {
        events
            .iter()
            .filter(|e| self.wants(e))
            .map(|e| encode_event(e, self.prev_kv))
            .collect()
    }
}

/// `e` as an encoded `mvccpb.Event`, with its previous key-value if `prev_kv`.
pub fn encode_event(e: &kv::Event, prev_kv: bool) -> Bytes {
    let out = mvccpb::Event {
        r#type: match e.kind {
            kv::EventKind::Put => mvccpb::event::EventType::Put as i32,
            kv::EventKind::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(convert::kv_out(e.kv.clone())),
        prev_kv: match (&e.prev_kv, prev_kv) {
            (Some(p), true) => Some(convert::kv_out(p.clone())),
            _ => None,
        },
    };
    Bytes::from(out.encode_to_vec())
}

/// The client went away: the stream ends.
struct Gone;

/// One client stream and its watchers.
struct WatchStream {
    api: Api,
    out: mpsc::Sender<Result<WatchOut, Status>>,
    feed: broadcast::Receiver<Feed>,
    watchers: BTreeMap<i64, Watcher>,
    /// Where the search for a server-chosen id starts.
    next_id: i64,
}

impl WatchStream {
    async fn run(mut self, mut inbound: Streaming<pb::WatchRequest>, require_leader: bool) {
        let mut status = self.api.shared.status.subscribe();
        let mut progress = tokio::time::interval(PROGRESS_INTERVAL);
        progress.tick().await;
        // A client that half-closes keeps receiving (the JSON gateway does that).
        let mut reading = true;
        loop {
            let step = tokio::select! {
                msg = inbound.message(), if reading => match msg {
                    Ok(Some(req)) => self.on_request(req).await,
                    Ok(None) => {
                        reading = false;
                        Ok(())
                    }
                    Err(_) => Err(Gone),
                },
                feed = self.feed.recv() => match feed {
                    Ok(Feed::Revision(r)) => self.on_feed(r).await,
                    Ok(Feed::Reset) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.catch_up_all().await
                    }
                    Err(broadcast::error::RecvError::Closed) => Err(Gone),
                },
                changed = status.changed(), if require_leader => match changed {
                    Ok(()) if status.borrow().leader.is_some() => Ok(()),
                    _ => {
                        let _ = self.out.send(Err(errors::no_leader())).await;
                        Err(Gone)
                    }
                },
                _ = progress.tick() => self.notify_progress().await,
                () = self.out.closed() => Err(Gone),
            };
            if step.is_err() {
                return;
            }
        }
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        self.api.header(revision)
    }

    fn current_revision(&self) -> i64 {
        self.api.shared.store.read().revision()
    }

    async fn send(&self, r: pb::WatchResponse) -> Result<(), Gone> {
        self.out
            .send(Ok(WatchOut::Plain(r)))
            .await
            .map_err(|_| Gone)
    }

    async fn on_request(&mut self, req: pb::WatchRequest) -> Result<(), Gone> {
        use pb::watch_request::RequestUnion as U;
        match req.request_union {
            Some(U::CreateRequest(c)) => self.create(c).await,
            Some(U::CancelRequest(c)) => {
                // etcd answers a cancel of an unknown id with nothing.
                if self.watchers.remove(&c.watch_id).is_none() {
                    return Ok(());
                }
                let rev = self.current_revision();
                self.send(pb::WatchResponse {
                    header: self.header(rev),
                    watch_id: c.watch_id,
                    canceled: true,
                    ..Default::default()
                })
                .await
            }
            Some(U::ProgressRequest(_)) => {
                let rev = self.synced_revision();
                self.send(pb::WatchResponse {
                    header: self.header(rev),
                    watch_id: -1,
                    ..Default::default()
                })
                .await
            }
            None => Ok(()),
        }
    }

    /// The revision through which every watcher of this stream has been served.
    fn synced_revision(&self) -> i64 {
        let current = self.current_revision();
        self.watchers
            .values()
            .map(|w| w.next_rev - 1)
            .fold(current, i64::min)
    }

    /// Why a create is refused, if it is.
    fn refusal(&self, c: &pb::WatchCreateRequest) -> Option<&'static str> {
        let end = c.range_end.as_slice();
        if !end.is_empty() && end != [0] && c.key.as_slice() >= end {
            return Some(EMPTY_RANGE);
        }
        if c.watch_id < 0 {
            return Some(NEGATIVE_ID);
        }
        if c.watch_id > 0 && self.watchers.contains_key(&c.watch_id) {
            return Some(DUPLICATE_ID);
        }
        None
    }

    async fn create(&mut self, mut c: pb::WatchCreateRequest) -> Result<(), Gone> {
        if c.key.is_empty() {
            c.key = vec![0];
        }
        let current = self.current_revision();
        if let Some(reason) = self.refusal(&c) {
            return self
                .send(pb::WatchResponse {
                    header: self.header(current),
                    watch_id: -1,
                    created: true,
                    canceled: true,
                    cancel_reason: reason.into(),
                    ..Default::default()
                })
                .await;
        }
        let id = match c.watch_id {
            0 => self.free_id(),
            id => id,
        };
        let filters = |f: pb::watch_create_request::FilterType| c.filters.contains(&(f as i32));
        let watcher = Watcher {
            no_put: filters(pb::watch_create_request::FilterType::Noput),
            no_delete: filters(pb::watch_create_request::FilterType::Nodelete),
            key: c.key,
            end: c.range_end,
            next_rev: if c.start_revision > 0 {
                c.start_revision
            } else {
                current + 1
            },
            prev_kv: c.prev_kv,
            fragment: c.fragment,
            progress_notify: c.progress_notify,
        };
        let replay = watcher.next_rev <= current;
        self.watchers.insert(id, watcher);
        self.send(pb::WatchResponse {
            header: self.header(current),
            watch_id: id,
            created: true,
            ..Default::default()
        })
        .await?;
        if replay {
            self.catch_up(id).await?;
        }
        Ok(())
    }

    /// The lowest id from `next_id` on that no watcher of this stream has.
    fn free_id(&mut self) -> i64 {
        while self.watchers.contains_key(&self.next_id) {
            self.next_id += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Takes `first` and whatever else the feed already holds (up to [`FEED_BATCH`]
    /// revisions), serves every watcher from that run, then handles a reset or a lag
    /// met on the way. Under load one response carries many revisions to a watcher,
    /// as etcd's responses to an unsynced watcher do.
    async fn on_feed(&mut self, first: Arc<Revision>) -> Result<(), Gone> {
        let mut run = vec![first];
        let mut lost_place = false;
        while run.len() < FEED_BATCH {
            match self.feed.try_recv() {
                Ok(Feed::Revision(r)) => run.push(r),
                Ok(Feed::Reset) | Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    lost_place = true;
                    break;
                }
                Err(_) => break,
            }
        }
        self.on_revisions(&run).await?;
        if lost_place {
            self.catch_up_all().await?;
        }
        Ok(())
    }

    /// Serves each watcher the revisions of `run` (consecutive in the feed's order) it
    /// is owed, in as few responses as [`BATCH_BYTES`] allows. Watchers owed exactly
    /// this run (the usual case: caught-up watchers) share the framing of their events
    /// with every other watcher of the same selection on the stream, so a run costs a
    /// stream one pass over its events per distinct selection rather than per watcher.
    async fn on_revisions(&mut self, run: &[Arc<Revision>]) -> Result<(), Gone> {
        let first = run[0].revision;
        let last = run[run.len() - 1].revision;
        let contiguous = last - first + 1 == run.len() as i64;
        let mut shared = Vec::new();
        let mut own = Vec::new();
        let mut by_selection = HashMap::new();
        for (&id, w) in &self.watchers {
            if contiguous && w.next_rev == first && !w.fragment {
                let parts = by_selection
                    .entry(w.selection())
                    .or_insert_with(|| w.frame_run(run));
                shared.push((id, parts.clone()));
            } else {
                own.push(id);
            }
        }
        drop(by_selection);
        for (id, parts) in shared {
            if let Some(w) = self.watchers.get_mut(&id) {
                w.next_rev = last + 1;
            }
            for (through, framed) in parts {
                self.deliver_framed(id, through, framed).await?;
            }
        }
        for id in own {
            self.serve_one(id, run).await?;
        }
        Ok(())
    }

    /// Serves watcher `id` what it is owed of `run` on its own, reading the store's
    /// history first when it is owed revisions from before the run.
    async fn serve_one(&mut self, id: i64, run: &[Arc<Revision>]) -> Result<(), Gone> {
        let mut events = Vec::new();
        let mut bytes = 0;
        let mut through = 0;
        for r in run {
            let Some(w) = self.watchers.get_mut(&id) else {
                break;
            };
            if w.next_rev > r.revision {
                continue;
            }
            if w.next_rev < r.revision {
                // It missed revisions (or subscribed before they were recorded):
                // what it has so far goes first, then the store's history.
                let fragment = w.fragment;
                self.deliver(id, through, std::mem::take(&mut events), fragment)
                    .await?;
                return self.catch_up(id).await;
            }
            w.next_rev = r.revision + 1;
            bytes += w.select_into(r, &mut events);
            through = r.revision;
            if bytes >= BATCH_BYTES {
                let fragment = w.fragment;
                self.deliver(id, through, std::mem::take(&mut events), fragment)
                    .await?;
                bytes = 0;
            }
        }
        let fragment = self.watchers.get(&id).is_some_and(|w| w.fragment);
        self.deliver(id, through, events, fragment).await
    }

    async fn catch_up_all(&mut self) -> Result<(), Gone> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            self.catch_up(id).await?;
        }
        Ok(())
    }

    /// Serves watcher `id` from the store's history up to the current revision, or
    /// cancels it when what it is owed has been compacted.
    async fn catch_up(&mut self, id: i64) -> Result<(), Gone> {
        loop {
            let Some(w) = self.watchers.get(&id) else {
                return Ok(());
            };
            let (batch, current, compacted) = {
                let store = self.api.shared.store.read();
                let batch = store.events_since(&w.key, &w.end, w.next_rev, HISTORY_BATCH);
                (batch, store.revision(), store.compact_revision())
            };
            let batch = match batch {
                Ok(b) => b,
                Err(_) => return self.cancel_compacted(id, current, compacted).await,
            };
            let events = w.select_history(&batch.events);
            let fragment = w.fragment;
            let done = batch.next_rev > current || batch.events.is_empty();
            if let Some(w) = self.watchers.get_mut(&id) {
                w.next_rev = w.next_rev.max(batch.next_rev);
            }
            self.deliver(id, current, events, fragment).await?;
            if done {
                return Ok(());
            }
        }
    }

    async fn cancel_compacted(
        &mut self,
        id: i64,
        current: i64,
        compacted: i64,
    ) -> Result<(), Gone> {
        self.watchers.remove(&id);
        self.send(pb::WatchResponse {
            header: self.header(current),
            watch_id: id,
            canceled: true,
            compact_revision: compacted,
            cancel_reason: COMPACTED.into(),
            ..Default::default()
        })
        .await
    }

    /// Sends `events` to watcher `id` (nothing when there are none), in fragments
    /// when it asked for them and the response is over the request size limit.
    async fn deliver(
        &self,
        id: i64,
        revision: i64,
        events: Vec<Bytes>,
        fragment: bool,
    ) -> Result<(), Gone> {
        if events.is_empty() {
            return Ok(());
        }
        let limit = self.api.shared.max_request_bytes;
        let parts = if fragment {
            split(events, limit)
        } else {
            vec![events]
        };
        let last = parts.len() - 1;
        for (i, events) in parts.into_iter().enumerate() {
            let out = WatchOut::Events(EventsOut {
                header: self.header(revision),
                watch_id: id,
                fragment: i < last,
                events,
                framed: Bytes::new(),
            });
            self.out.send(Ok(out)).await.map_err(|_| Gone)?;
        }
        Ok(())
    }

    /// Sends watcher `id` events framed already (see [`Watcher::frame_run`]).
    async fn deliver_framed(&self, id: i64, revision: i64, framed: Bytes) -> Result<(), Gone> {
        let out = WatchOut::Events(EventsOut {
            header: self.header(revision),
            watch_id: id,
            fragment: false,
            events: Vec::new(),
            framed,
        });
        self.out.send(Ok(out)).await.map_err(|_| Gone)
    }

    /// An event-less response to every `progress_notify` watcher that is caught up.
    async fn notify_progress(&mut self) -> Result<(), Gone> {
        let current = self.current_revision();
        let due: Vec<i64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.progress_notify && w.next_rev > current)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.send(pb::WatchResponse {
                header: self.header(current),
                watch_id: id,
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }
}

/// `events` in runs whose encoded size stays under `limit` (one event over it goes
/// alone).
fn split(events: Vec<Bytes>, limit: usize) -> Vec<Vec<Bytes>> {
    let mut parts: Vec<Vec<Bytes>> = vec![Vec::new()];
    let mut size = 0;
    for e in events {
        let len = e.len() + 4;
        let current = parts.last_mut().expect("one part at least");
        if !current.is_empty() && size + len > limit {
            parts.push(Vec::new());
            size = 0;
        }
        size += len;
        parts.last_mut().expect("one part at least").push(e);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &[u8], value_len: usize) -> Bytes {
        let e = mvccpb::Event {
            kv: Some(mvccpb::KeyValue {
                key: key.to_vec(),
                value: vec![7; value_len],
                ..Default::default()
            }),
            ..Default::default()
        };
        Bytes::from(e.encode_to_vec())
    }

    #[test]
    fn fragments_stay_under_the_limit_and_keep_every_event_in_order() {
        let events: Vec<_> = (0..10u8).map(|i| event(&[i], 100)).collect();
        let parts = split(events.clone(), 350);
        assert!(parts.len() > 1);
        assert!(parts
            .iter()
            .all(|p| p.iter().map(|e| e.len() + 4).sum::<usize>() <= 350));
        assert_eq!(parts.concat(), events);
        // One event larger than the limit still goes, alone.
        let big = vec![event(b"a", 1000), event(b"b", 1)];
        assert_eq!(split(big, 100).len(), 2);
    }

    #[test]
    fn a_watcher_sees_its_range_less_what_it_filters() {
        let w = Watcher {
            key: b"a".to_vec(),
            end: b"c".to_vec(),
            next_rev: 1,
            prev_kv: false,
            no_put: false,
            no_delete: true,
            fragment: false,
            progress_notify: false,
        };
        let e = |key: &[u8], kind| kv::Event {
            kind,
            kv: kv::KeyValue {
                key: key.to_vec(),
                ..Default::default()
            },
            prev_kv: None,
        };
        assert!(w.wants(&e(b"a", kv::EventKind::Put)));
        assert!(w.wants(&e(b"bz", kv::EventKind::Put)));
        assert!(!w.wants(&e(b"c", kv::EventKind::Put)));
        assert!(!w.wants(&e(b"b", kv::EventKind::Delete)));
    }

    #[test]
    fn a_framed_run_is_what_the_watcher_would_get_alone_cut_at_revisions() {
        let w = Watcher {
            key: b"k".to_vec(),
            end: b"l".to_vec(),
            next_rev: 10,
            prev_kv: true,
            no_put: false,
            no_delete: false,
            fragment: false,
            progress_notify: false,
        };
        let put = |key: &[u8], rev: i64, len: usize| kv::Event {
            kind: kv::EventKind::Put,
            kv: kv::KeyValue {
                key: key.to_vec(),
                value: vec![1; len],
                mod_revision: rev,
                ..Default::default()
            },
            prev_kv: Some(kv::KeyValue {
                key: key.to_vec(),
                ..Default::default()
            }),
        };
        // Revision 11 concerns the watcher not at all; 12 is over a part's size.
        let run: Vec<Arc<Revision>> = vec![
            Arc::new(Revision::new(
                10,
                vec![put(b"k1", 10, 10), put(b"x", 10, 10)],
            )),
            Arc::new(Revision::new(11, vec![put(b"x", 11, 10)])),
            Arc::new(Revision::new(12, vec![put(b"k2", 12, BATCH_BYTES)])),
            Arc::new(Revision::new(
                13,
                vec![put(b"k3", 13, 5), put(b"k4", 13, 5)],
            )),
            Arc::new(Revision::new(14, vec![put(b"z", 14, 5)])),
        ];
        let parts = w.frame_run(&run);
        let through: Vec<i64> = parts.iter().map(|p| p.0).collect();
        assert_eq!(through, vec![12, 14]);
        let mut alone = Vec::new();
        for r in &run {
            w.select_into(r, &mut alone);
        }
        let sent = |framed: Vec<u8>| {
            pb::WatchResponse::decode(
                WatchOut::Events(EventsOut {
                    header: None,
                    watch_id: 1,
                    fragment: false,
                    events: Vec::new(),
                    framed: Bytes::from(framed),
                })
                .encode_to_vec()
                .as_slice(),
            )
            .unwrap()
            .events
        };
        let framed: Vec<u8> = parts.iter().flat_map(|p| p.1.to_vec()).collect();
        let mut one_by_one = Vec::new();
        for e in &alone {
            frame_event(e, &mut one_by_one);
        }
        assert_eq!(sent(framed), sent(one_by_one));
        let keys: Vec<Vec<u8>> = sent(parts[1].1.to_vec())
            .into_iter()
            .map(|e| e.kv.unwrap().key)
            .collect();
        assert_eq!(keys, vec![b"k3".to_vec(), b"k4".to_vec()]);
    }
}
