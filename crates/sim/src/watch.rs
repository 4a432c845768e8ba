//! Watchers: each is connected to one member, any member (followers included), and
//! reads that member's history with `kv::Store::events_since` from where its watch
//! stands, in bounded batches, every few milliseconds. A watch covers one key, a
//! range or every key, may filter out puts or deletes and may ask for prev_kv. Now
//! and then a watcher reconnects to another member and resumes from its progress (the
//! last revision delivered + 1, or further if the member said so), or starts a new
//! watch: from now, from a recent revision, or from an old one that compaction may
//! have removed (the read must then be refused as compacted, ending the watch). Every
//! read is checked at once against the committed history (`watch_check`).

use crate::host::HostState;
use crate::kv::key_bytes;
use crate::watch_check::{Read, WatchProgress, WatchSpec};
use crate::world::{Event, Simulation};
use kv::KvError;
use seedrng::Rng;

/// Reads per poll, at most.
const READS_PER_POLL: usize = 4;

#[derive(Debug)]
pub(crate) struct Watcher {
    member: usize,
    watch: Option<WatchProgress>,
    /// Most events per read of the current watch.
    batch: usize,
    /// Watches started and events delivered, for traces.
    pub(crate) watches: u64,
}

impl Watcher {
    fn new(member: usize) -> Watcher {
        Watcher {
            member,
            watch: None,
            batch: 1,
            watches: 0,
        }
    }
}

/// A random watch over the workload's keys (`k0`.. for the clients, `k100`.. for the
/// lease holders): every key, one key, or a prefix range; with random filters.
fn random_spec(rng: &mut Rng, keys: u8) -> WatchSpec {
    let (key, range_end) = match rng.range(0, 4) {
        0 => (vec![0], vec![0]),
        1 => (
            key_bytes(rng.range(0, u64::from(keys.max(1))) as u8),
            Vec::new(),
        ),
        // "k1" up to "k2": k1, k10.., k100.. (some lease holders' keys).
        2 => (b"k1".to_vec(), b"k2".to_vec()),
        _ => (b"k".to_vec(), vec![0]),
    };
    let filter = rng.range(0, 6);
    WatchSpec {
        key,
        range_end,
        no_put: filter == 0,
        no_delete: filter == 1,
        prev_kv: rng.chance(1, 2),
    }
}

impl Simulation {
    pub(crate) fn start_watchers(&mut self) {
        for w in 0..self.opts.watchers {
            let member = self.aux_rng.range(0, self.hosts.len() as u64) as usize;
            self.watchers.push(Watcher::new(member));
            let d = self.aux_rng.range(0, 50_000);
            self.schedule(d, Event::WatchPoll { watcher: w });
        }
    }

    /// A watcher's turn: maybe reconnect or restart, then read what is new.
    pub(crate) fn on_watch_poll(&mut self, w: usize) {
        let d = self.aux_rng.range(5_000, 30_000);
        self.schedule(d, Event::WatchPoll { watcher: w });
        let n = self.hosts.len() as u64;
        let reconnect = self.aux_rng.chance(1, 40);
        let watcher = &mut self.watchers[w];
        if reconnect {
            watcher.member =
                ((watcher.member as u64 + self.aux_rng.range(1, n.max(2))) % n) as usize;
        }
        let member = watcher.member;
        let host = &self.hosts[member];
        let store = match (&host.node, host.state) {
            (Some(node), HostState::Up) => &node.machine().store,
            _ => return,
        };
        if watcher.watch.is_none() || self.aux_rng.chance(1, 100) {
            let rev = store.revision();
            let start = match self.aux_rng.range(0, 6) {
                0..=2 => rev + 1,
                3 | 4 => (rev - self.aux_rng.range(0, 10) as i64).max(1),
                _ => self.aux_rng.range(1, rev as u64 + 1) as i64,
            };
            let spec = random_spec(&mut self.aux_rng, self.opts.keys);
            watcher.batch = *self.aux_rng.pick(&[1, 2, 4, 16]).unwrap_or(&4);
            watcher.watch = Some(WatchProgress::new(spec, start));
            watcher.watches += 1;
        }
        let Some(watch) = watcher.watch.as_mut() else {
            return;
        };
        let mut result = Ok(());
        let mut cancelled = false;
        for _ in 0..READS_PER_POLL {
            let from = watch.next;
            let spec = &watch.spec;
            let compacted = store.compact_revision();
            let read = store.events_since(&spec.key, &spec.range_end, from, watcher.batch);
            result = match read {
                Ok(batch) => {
                    let more = !batch.events.is_empty();
                    let events = spec.deliver(batch.events);
                    self.stats.watch_events += events.len() as u64;
                    let next_rev = batch.next_rev;
                    let read = Read::Events {
                        events: &events,
                        next_rev,
                    };
                    let r = self.watch_history.check_read(watch, read, compacted);
                    if r.is_err() || !more {
                        r
                    } else {
                        continue;
                    }
                }
                Err(KvError::Compacted) => {
                    cancelled = true;
                    self.watch_history
                        .check_read(watch, Read::Compacted, compacted)
                }
                Err(e) => {
                    crate::invariants::violated("watch-read", format!("events_since refused: {e}"))
                }
            };
            break;
        }
        if cancelled {
            watcher.watch = None;
            self.stats.watches_compacted += 1;
        }
        if let Err(v) = result {
            self.fail(v);
        }
    }
}
