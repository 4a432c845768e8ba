//! Watch events: the live log of the writes as they apply ([`Store::set_record_events`])
//! and the history of a key range read back from the versions the store holds
//! ([`Store::events_since`]).

use crate::store::{bounds, key_value, retained, Store, Version};
use crate::types::{KeyValue, KvError};

/// What happened to a key (etcd `mvccpb.Event.EventType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was written.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change of one key (etcd `mvccpb.Event`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put, the key as written. For a delete, only the key and `mod_revision`
    /// (the deletion's revision) are set, the rest zero, as etcd sends it.
    pub kv: KeyValue,
    /// The key just before this event, if it was live then.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The revision the event happened at.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// A piece of history ([`Store::events_since`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventBatch {
    /// The events, by revision.
    pub events: Vec<Event>,
    /// The first revision not covered: where the next read resumes.
    pub next_rev: i64,
}

/// The event of version `hist[i]` of `key`.
fn event_of(key: &[u8], hist: &[Version], i: usize) -> Event {
    let v = &hist[i];
    let prev_kv = i.checked_sub(1).and_then(|p| key_value(key, &hist[p]));
    match key_value(key, v) {
        Some(kv) => Event {
            kind: EventKind::Put,
            kv,
            prev_kv,
        },
        None => Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.to_vec(),
                mod_revision: v.rev,
                ..KeyValue::default()
            },
            prev_kv,
        },
    }
}

impl Store {
    /// Plants a deliberate bug (`None`: none), for checker self-tests.
    #[cfg(feature = "planted-bugs")]
    pub fn plant(&mut self, bug: Option<crate::KvBug>) {
        self.bug = bug;
    }

    /// Turns the live event log on or off. While on, every write that applies (put,
    /// delete, the operations of a transaction's branch, a lease revoke's deletes)
    /// appends its events for [`Store::take_events`]; a request that fails adds none.
    /// Off by default, and then it costs nothing; turning it off drops the events not
    /// yet taken. Not replicated: a restored store starts with it off.
    pub fn set_record_events(&mut self, on: bool) {
        match (on, &self.events) {
            (true, None) => self.events = Some(Vec::new()),
            (false, _) => self.events = None,
            (true, Some(_)) => {}
        }
    }

    /// Whether the live event log is on.
    pub fn records_events(&self) -> bool {
        self.events.is_some()
    }

    /// The events recorded since the last take, in revision order and, within a
    /// revision, in the order the operations applied (a transaction's op order; key
    /// order within one delete or revoke).
    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The history of the keys in `[key, range_end)` (etcd's conventions: an empty
    /// `range_end` is `key` alone, `[0]` every key from `key`) from `start_rev` through
    /// the current revision, each event with its `prev_kv`.
    ///
    /// Ordered by revision and, within one revision, by key: etcd orders a revision's
    /// events by the transaction's op order, which the stored history does not keep
    /// (the live log, [`Store::take_events`], does).
    ///
    /// At most `max_events` (0: no limit), cut only between revisions: a revision
    /// with more events than that comes whole, alone. `next_rev` is the first revision
    /// not returned. A `start_rev` past the current revision gives no events and
    /// `next_rev = start_rev`; one below the compact revision is
    /// [`KvError::Compacted`]. From the compact revision itself, as etcd, a watch is
    /// served with what the compaction kept: that revision's puts, not its deletions
    /// (clients that were canceled as compacted resume from the compact revision). A
    /// compaction not yet carried out ([`Store::compact_step`], a held history) makes
    /// no difference.
    pub fn events_since(
        &self,
        key: &[u8],
        range_end: &[u8],
        start_rev: i64,
        max_events: usize,
    ) -> Result<EventBatch, KvError> {
        #[cfg(feature = "planted-bugs")]
        let start_rev = match self.bug {
            // Planted bug: a compacted start quietly moves up to the oldest kept revision.
            Some(crate::KvBug::WatchSkipCompacted) => start_rev.max(self.compact_revision),
            _ => start_rev,
        };
        if start_rev < self.compact_revision {
            return Err(KvError::Compacted);
        }
        if start_rev > self.revision {
            return Ok(EventBatch {
                events: Vec::new(),
                next_rev: start_rev,
            });
        }
        // Every matching version, found first by reference: (revision, key, history,
        // index). Keys come in key order, so a stable sort by revision leaves each
        // revision's events in key order.
        let mut found = Vec::new();
        for (k, hist) in self.keys.range::<[u8], _>(bounds(key, range_end)) {
            let hist = retained(hist, self.compact_revision);
            let from = hist.partition_point(|v| v.rev < start_rev);
            found.extend((from..hist.len()).map(|i| (hist[i].rev, k, hist, i)));
        }
        found.sort_by_key(|f| f.0);
        let mut take = found.len();
        if max_events > 0 && found.len() > max_events {
            // Back off to the start of the revision the limit falls in, unless that
            // would leave nothing: then that first revision comes whole.
            let cut_rev = found[max_events].0;
            take = found.partition_point(|f| f.0 < cut_rev);
            if take == 0 {
                take = found.partition_point(|f| f.0 <= cut_rev);
            }
        }
        let next_rev = found.get(take).map_or(self.revision + 1, |f| f.0);
        let events = found[..take]
            .iter()
            .map(|&(_, k, hist, i)| event_of(k, hist, i))
            .collect();
        Ok(EventBatch { events, next_rev })
    }
}
