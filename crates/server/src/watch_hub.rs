//! The member's watch hub: what the store applies, one revision at a time, for every
//! watch stream on this member.
//!
//! The state machine publishes each applied revision's events here while it still
//! holds the store's write lock, so the feed is in revision order. The feed is a
//! bounded broadcast ring: a stream that falls behind by more than its capacity loses
//! its place ([`Feed`] tells it so) and reads the missed revisions back from the
//! store's history, as etcd's unsynced watchers do. Memory per member is therefore
//! bounded by the ring, whatever the watchers' speed.
//!
//! Events are recorded only while some stream listens: with no watcher on a member,
//! applying a write costs nothing extra. A stream that subscribes between a write's
//! check and its apply sees a gap in revisions and fills it from history too.

use prost::bytes::Bytes;
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

/// How many revisions the ring holds before a slow stream loses its place.
pub const FEED_CAPACITY: usize = 4096;

/// The events of one revision.
#[derive(Debug)]
pub struct Revision {
    /// The revision.
    pub revision: i64,
    /// Its events, in the order they were applied.
    pub events: Vec<kv::Event>,
    /// The events encoded for the wire, without and with `prev_kv`: made by the first
    /// stream that needs them, shared by every watcher on the member.
    wire: [OnceLock<Vec<Bytes>>; 2],
}

impl Revision {
    /// The events of one revision.
    pub fn new(revision: i64, events: Vec<kv::Event>) -> Revision {
        Revision {
            revision,
            events,
            wire: Default::default(),
        }
    }

    /// Event `i` as a watcher with or without `prev_kv` receives it, encoded.
    pub fn encoded(&self, i: usize, prev_kv: bool) -> Bytes {
        let all = self.wire[usize::from(prev_kv)].get_or_init(|| {
            self.events
                .iter()
                .map(|e| crate::watch_svc::encode_event(e, prev_kv))
                .collect()
        });
        all[i].clone()
    }
}

/// What a watch stream hears from the hub.
#[derive(Clone, Debug)]
pub enum Feed {
    /// One applied revision.
    Revision(Arc<Revision>),
    /// A snapshot replaced the store: whatever a stream expects next, it reads from
    /// the store's history.
    Reset,
}

/// The member's feed of applied revisions.
#[derive(Debug)]
pub struct WatchHub {
    tx: broadcast::Sender<Feed>,
}

impl Default for WatchHub {
    fn default() -> WatchHub {
        WatchHub::new(FEED_CAPACITY)
    }
}

impl WatchHub {
    /// A hub whose ring holds `capacity` revisions.
    pub fn new(capacity: usize) -> WatchHub {
        WatchHub {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Whether any stream listens (the store records events only then).
    pub fn has_listeners(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// A new listener; it hears everything published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Feed> {
        self.tx.subscribe()
    }

    /// Publishes what one apply changed, grouped by revision.
    pub fn publish(&self, events: Vec<kv::Event>) {
        let mut rest = events.into_iter().peekable();
        while let Some(first) = rest.next() {
            let revision = first.revision();
            let mut events = vec![first];
            while let Some(e) = rest.next_if(|e| e.revision() == revision) {
                events.push(e);
            }
            // No receiver: nobody to tell, and the next one reads history.
            let _ = self
                .tx
                .send(Feed::Revision(Arc::new(Revision::new(revision, events))));
        }
    }

    /// Tells every stream the store was replaced.
    pub fn reset(&self) {
        let _ = self.tx.send(Feed::Reset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, rev: i64) -> kv::Event {
        kv::Event {
            kind: kv::EventKind::Put,
            kv: kv::KeyValue {
                key: key.as_bytes().to_vec(),
                mod_revision: rev,
                ..Default::default()
            },
            prev_kv: None,
        }
    }

    #[test]
    fn one_apply_is_published_one_revision_at_a_time() {
        let hub = WatchHub::new(8);
        assert!(!hub.has_listeners());
        let mut rx = hub.subscribe();
        assert!(hub.has_listeners());
        hub.publish(vec![put("a", 5), put("b", 5), put("c", 6)]);
        let revs: Vec<(i64, usize)> = (0..2)
            .map(|_| match rx.try_recv().unwrap() {
                Feed::Revision(r) => (r.revision, r.events.len()),
                Feed::Reset => panic!("no reset"),
            })
            .collect();
        assert_eq!(revs, vec![(5, 2), (6, 1)]);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_listener_that_falls_behind_is_told_it_lost_its_place() {
        let hub = WatchHub::new(2);
        let mut rx = hub.subscribe();
        for rev in 2..6 {
            hub.publish(vec![put("k", rev)]);
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(2))
        ));
    }
}
