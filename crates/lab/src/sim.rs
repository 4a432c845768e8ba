//! The lab's discrete-event core: a virtual clock in ticks and one message queue whose
//! faults (loss, delay, duplication, partitions, crashes) are drawn from a seeded
//! generator.
//!
//! Every scenario drives its sans-IO protocol cores with this loop:
//!
//! ```
//! use lab::sim::{Event, Faults, Sim};
//! let mut sim: Sim<&str> = Sim::new(seedrng::Rng::new(7), Faults::reliable(1), false);
//! sim.send(0, 1, "ping");
//! while let Some(event) = sim.step(100) {
//!     if let Event::Deliver { from, to, msg } = event {
//!         assert_eq!((from, to, msg), (0, 1, "ping"));
//!     }
//! }
//! assert_eq!(sim.now(), 1);
//! ```
//!
//! Glossary: a *tick* is the unit of virtual time; a *link* is the directed pair
//! (from, to); a *partition* blocks links; a *crashed* process neither sends nor
//! receives and its pending timers are discarded.

use seedrng::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

/// A process index inside one scenario run.
pub type Pid = usize;

/// Network fault knobs for one run; probabilities are per mille.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Probability that a message is lost.
    pub loss_per_mille: u64,
    /// Probability that a delivered message is delivered a second time.
    pub duplicate_per_mille: u64,
    /// One-way delay range in ticks, inclusive; the low end must be at least 1.
    pub delay_ticks: (u64, u64),
    /// Deliver the messages of each link in sending order (a FIFO channel).
    pub fifo: bool,
}

impl Faults {
    /// A network that loses nothing and delivers after exactly `delay_ticks`.
    pub fn reliable(delay_ticks: u64) -> Faults {
        Faults {
            loss_per_mille: 0,
            duplicate_per_mille: 0,
            delay_ticks: (delay_ticks, delay_ticks),
            fifo: true,
        }
    }

    /// A network that loses `loss_per_mille` of messages, with delays in `delay_ticks`.
    pub fn lossy(loss_per_mille: u64, delay_ticks: (u64, u64)) -> Faults {
        Faults {
            loss_per_mille,
            duplicate_per_mille: 0,
            delay_ticks,
            fifo: false,
        }
    }
}

/// What the queue hands to the scenario next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<M> {
    /// A message arrives at `to`.
    Deliver {
        /// The sender.
        from: Pid,
        /// The receiver.
        to: Pid,
        /// The payload.
        msg: M,
    },
    /// A timer set by `node` fires; `tag` is whatever the node passed.
    Timer {
        /// The process that set the timer.
        node: Pid,
        /// The caller's label for the timer.
        tag: u64,
    },
}

/// Counters a run reports alongside its verdicts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages handed to [`Sim::send`] by live processes.
    pub sent: u64,
    /// Messages handed to a live receiver.
    pub delivered: u64,
    /// Messages lost to the loss rate.
    pub lost: u64,
    /// Messages cut by a partition.
    pub cut: u64,
    /// Extra copies created by duplication.
    pub duplicated: u64,
}

/// The deterministic discrete-event core.
pub struct Sim<M> {
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event<M>>,
    rng: Rng,
    faults: Faults,
    blocked: BTreeSet<(Pid, Pid)>,
    crashed: BTreeSet<Pid>,
    last_arrival: BTreeMap<(Pid, Pid), u64>,
    trace: Trace,
    stats: Stats,
}

impl<M: Debug> Sim<M> {
    /// A new run at tick 0; `rng` drives every network draw, `trace` turns on the log.
    pub fn new(rng: Rng, faults: Faults, trace: bool) -> Sim<M> {
        assert!(
            faults.delay_ticks.0 >= 1,
            "a message takes at least one tick"
        );
        assert!(
            faults.delay_ticks.0 <= faults.delay_ticks.1,
            "delay range inverted"
        );
        Sim {
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            rng,
            faults,
            blocked: BTreeSet::new(),
            crashed: BTreeSet::new(),
            last_arrival: BTreeMap::new(),
            trace: Trace::new(trace),
            stats: Stats::default(),
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Replaces the fault knobs from now on (already queued messages keep their fate).
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Sends `msg`; loss, partition, delay and duplication are decided here.
    pub fn send(&mut self, from: Pid, to: Pid, msg: M)
    where
        M: Clone,
    {
        if self.crashed.contains(&from) {
            return;
        }
        self.stats.sent += 1;
        if self.blocked.contains(&(from, to)) {
            self.stats.cut += 1;
            self.trace
                .line(self.now, || format!("cut   {from}->{to} {msg:?}"));
            return;
        }
        if self.rng.chance(self.faults.loss_per_mille, 1000) {
            self.stats.lost += 1;
            self.trace
                .line(self.now, || format!("lost  {from}->{to} {msg:?}"));
            return;
        }
        let copies = if self.rng.chance(self.faults.duplicate_per_mille, 1000) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.arrival_tick(from, to);
            self.trace
                .line(self.now, || format!("send  {from}->{to} @{at} {msg:?}"));
            self.push(
                at,
                Event::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn arrival_tick(&mut self, from: Pid, to: Pid) -> u64 {
        let (low, high) = self.faults.delay_ticks;
        let mut at = self.now + self.rng.range(low, high + 1);
        if self.faults.fifo {
            let last = self.last_arrival.entry((from, to)).or_insert(0);
            at = at.max(*last);
            *last = at;
        }
        at
    }

    fn push(&mut self, at: u64, event: Event<M>) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    /// Fires `Event::Timer { node, tag }` after `after_ticks` (at least one tick).
    pub fn set_timer(&mut self, node: Pid, after_ticks: u64, tag: u64) {
        let at = self.now + after_ticks.max(1);
        self.push(at, Event::Timer { node, tag });
    }

    /// The next event no later than `horizon`, skipping those addressed to crashed
    /// processes; `None` when the queue is empty or the horizon is reached.
    pub fn step(&mut self, horizon: u64) -> Option<Event<M>> {
        loop {
            let (&key, _) = self.queue.iter().next()?;
            if key.0 > horizon {
                return None;
            }
            let event = self.queue.remove(&key)?;
            self.now = key.0;
            let target = match &event {
                Event::Deliver { to, .. } => *to,
                Event::Timer { node, .. } => *node,
            };
            if self.crashed.contains(&target) {
                continue;
            }
            if let Event::Deliver { from, to, msg } = &event {
                self.stats.delivered += 1;
                self.trace
                    .line(self.now, || format!("recv  {from}->{to} {msg:?}"));
            }
            return Some(event);
        }
    }

    /// Whether `pid` is crashed.
    pub fn is_crashed(&self, pid: Pid) -> bool {
        self.crashed.contains(&pid)
    }

    /// Crashes `pid`: from now on it sends and receives nothing.
    pub fn crash(&mut self, pid: Pid) {
        self.crashed.insert(pid);
        self.trace.line(self.now, || format!("CRASH {pid}"));
    }

    /// Restarts `pid`; the scenario rebuilds its volatile state from stable storage.
    pub fn restart(&mut self, pid: Pid) {
        self.crashed.remove(&pid);
        self.trace.line(self.now, || format!("RESTART {pid}"));
    }

    /// Cuts every link between `a` and `b`, both ways.
    pub fn partition(&mut self, a: &[Pid], b: &[Pid]) {
        for x in a {
            for y in b {
                self.blocked.insert((*x, *y));
                self.blocked.insert((*y, *x));
            }
        }
        self.trace
            .line(self.now, || format!("PARTITION {a:?} | {b:?}"));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.trace.line(self.now, || "HEAL".to_string());
    }

    /// Whether `from` can reach `to` now.
    pub fn connected(&self, from: Pid, to: Pid) -> bool {
        !self.blocked.contains(&(from, to))
    }

    /// Adds a scenario-level line to the trace (a decision, a state change).
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        self.trace.line(self.now, line);
    }

    /// The trace so far (empty when tracing is off).
    pub fn take_trace(&mut self) -> String {
        std::mem::take(&mut self.trace.text)
    }
}

/// An append-only text log, formatted only when switched on.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    on: bool,
    text: String,
}

impl Trace {
    /// A log that records when `on`.
    pub fn new(on: bool) -> Trace {
        Trace {
            on,
            text: String::new(),
        }
    }

    /// Whether lines are recorded.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Appends `[t=TICK] LINE` when recording.
    pub fn line(&mut self, tick: u64, line: impl FnOnce() -> String) {
        if self.on {
            self.text.push_str(&format!("[t={tick:>6}] {}\n", line()));
        }
    }

    /// Appends a line without a tick (a header between runs).
    pub fn header(&mut self, line: impl FnOnce() -> String) {
        if self.on {
            self.text.push_str(&line());
            self.text.push('\n');
        }
    }

    /// Appends another run's text.
    pub fn append(&mut self, text: &str) {
        if self.on {
            self.text.push_str(text);
        }
    }

    /// The recorded text.
    pub fn into_text(self) -> Option<String> {
        self.on.then_some(self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_links_keep_order_and_crashed_receivers_get_nothing() {
        let mut faults = Faults::lossy(0, (1, 9));
        faults.fifo = true;
        let mut sim: Sim<u32> = Sim::new(Rng::new(3), faults, false);
        for i in 0..20 {
            sim.send(0, 1, i);
        }
        sim.send(0, 2, 99);
        sim.crash(2);
        let mut got = Vec::new();
        while let Some(Event::Deliver { msg, .. }) = sim.step(1000) {
            got.push(msg);
        }
        assert_eq!(got, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn partitions_cut_and_heal_restores() {
        let mut sim: Sim<u8> = Sim::new(Rng::new(1), Faults::reliable(2), false);
        sim.partition(&[0], &[1, 2]);
        sim.send(0, 1, 1);
        sim.send(2, 0, 2);
        assert_eq!(sim.stats().cut, 2);
        sim.heal();
        sim.send(0, 1, 3);
        assert_eq!(
            sim.step(10),
            Some(Event::Deliver {
                from: 0,
                to: 1,
                msg: 3
            })
        );
    }
}
