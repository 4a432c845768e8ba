//! Reliable multicast with negative acknowledgements (notes 000, "scalability of
//! reliable multicast").
//!
//! Glossary: the *sender* multicasts numbered *packets* and, after the last, a periodic
//! *session* message with the highest number so that receivers notice a lost tail; a
//! receiver that sees a *gap* sends a *NACK* and the sender *retransmits*. Without care
//! every receiver that lost a packet NACKs it: *feedback implosion*. With *feedback
//! suppression* a receiver waits a random delay and multicasts its NACK to the group;
//! whoever hears someone else's NACK first stays quiet. In *hierarchical* multicast
//! receivers NACK a local *coordinator*, which repairs from its own copy or, if it lost
//! the packet too, asks the sender once for its whole group.

use crate::report::{Expect, Figure, Report, Violation};
use crate::sim::{Event, Faults, Pid, Sim, Trace};
use crate::sweep::sweep;
use seedrng::Rng;
use std::collections::{BTreeMap, BTreeSet};

/// The scenario's name.
pub const NAME: &str = "reliable-multicast";
const SUMMARY: &str = "NACK-based reliable multicast, plain, with feedback suppression, and hierarchical: every receiver gets every packet; NACKs reaching the sender per lost packet against group size (to 1,000) and loss rate.";
const PACKETS: u64 = 20;
const SEND_INTERVAL: u64 = 2;
const RETRY_TICKS: u64 = 40;
const SESSION_TICKS: u64 = 10;
const HORIZON: u64 = 1_500;

/// How receivers ask for repairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feedback {
    /// Every receiver unicasts its NACK to the sender at once.
    Plain,
    /// Random delay in `[0, window)` ticks, NACK multicast, others suppress.
    Suppression {
        /// The random-delay window in ticks.
        window_ticks: u64,
    },
    /// NACK to the group's coordinator; coordinators alone NACK the sender.
    Hierarchical,
}

/// Multicast messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// A packet (original or repair).
    Data(u64),
    /// The sender's highest packet number.
    Session(u64),
    /// A request for a packet.
    Nack(u64),
}

/// One run's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// Number of receivers (pids 1..=n).
    pub receivers: usize,
    /// Per-message loss, per mille.
    pub loss_per_mille: u64,
    /// The feedback scheme.
    pub feedback: Feedback,
    /// Planted bug: the sender sends no session messages, so a lost tail goes unnoticed.
    pub no_session: bool,
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Receivers missing packets at the horizon, with the first missing number.
    pub incomplete: Vec<(Pid, u64)>,
    /// NACKs that reached the sender.
    pub nacks_at_sender: u64,
    /// Packets at least one receiver lost in the original multicast.
    pub lost_packets: u64,
    /// All messages sent.
    pub messages: u64,
}

impl Outcome {
    /// NACKs reaching the sender per packet lost somewhere.
    pub fn nacks_per_lost(&self) -> f64 {
        self.nacks_at_sender as f64 / self.lost_packets.max(1) as f64
    }
}

struct Receiver {
    got: Vec<bool>,
    highest_seen: u64,
    pending: BTreeSet<u64>,
    suppressed: BTreeSet<u64>,
    waiting: BTreeMap<u64, Vec<Pid>>,
}

struct World {
    setup: Setup,
    sim: Sim<Msg>,
    rx: Vec<Receiver>,
    rng: Rng,
    group_size: usize,
    last_repair: BTreeMap<u64, u64>,
    first_loss: BTreeSet<u64>,
    nacks: u64,
}

impl World {
    fn coordinator_of(&self, p: Pid) -> Pid {
        (p - 1) / self.group_size * self.group_size + 1
    }

    fn is_coordinator(&self, p: Pid) -> bool {
        self.coordinator_of(p) == p
    }

    fn nack_target_is_sender(&self, p: Pid) -> bool {
        self.setup.feedback != Feedback::Hierarchical || self.is_coordinator(p)
    }

    fn on_sender(&mut self, msg: Msg) {
        let Msg::Nack(seq) = msg else { return };
        self.nacks += 1;
        let recent = self
            .last_repair
            .get(&seq)
            .is_some_and(|t| self.sim.now() < t + 10);
        if recent {
            return;
        }
        self.last_repair.insert(seq, self.sim.now());
        let targets: Vec<Pid> = match self.setup.feedback {
            Feedback::Hierarchical => (1..=self.setup.receivers)
                .filter(|p| self.is_coordinator(*p))
                .collect(),
            _ => (1..=self.setup.receivers).collect(),
        };
        for p in targets {
            self.sim.send(0, p, Msg::Data(seq));
        }
    }

    fn on_data(&mut self, p: Pid, seq: u64) {
        let r = &mut self.rx[p - 1];
        if r.got[seq as usize] {
            return;
        }
        r.got[seq as usize] = true;
        r.pending.remove(&seq);
        if let Some(waiters) = r.waiting.remove(&seq) {
            for w in waiters {
                self.sim.send(p, w, Msg::Data(seq));
            }
        }
        self.notice_gaps(p, seq);
    }

    fn notice_gaps(&mut self, p: Pid, upto: u64) {
        let r = &mut self.rx[p - 1];
        let from = r.highest_seen + 1;
        r.highest_seen = r.highest_seen.max(upto);
        let missing: Vec<u64> = (from..=upto)
            .filter(|s| !r.got[*s as usize] && !r.pending.contains(s))
            .collect();
        for seq in missing {
            self.rx[p - 1].pending.insert(seq);
            let delay = self.nack_delay();
            self.sim.set_timer(p, delay, 2 * seq);
        }
    }

    fn nack_delay(&mut self) -> u64 {
        match self.setup.feedback {
            Feedback::Suppression { window_ticks } => self.rng.range(0, window_ticks.max(1)),
            _ => 0,
        }
    }

    /// Timer tags: `2 * seq` fires a NACK, `2 * seq + 1` ends the wait for a repair.
    fn on_timer(&mut self, p: Pid, tag: u64) {
        let seq = tag / 2;
        if self.rx[p - 1].got[seq as usize] {
            return;
        }
        if tag % 2 == 1 {
            // Still missing after the wait: ask again, after a fresh random delay.
            let delay = self.nack_delay();
            self.sim.set_timer(p, delay, 2 * seq);
            return;
        }
        if !self.rx[p - 1].suppressed.remove(&seq) {
            self.send_nack(p, seq);
        }
        self.sim.set_timer(p, RETRY_TICKS, 2 * seq + 1);
    }

    fn send_nack(&mut self, p: Pid, seq: u64) {
        match self.setup.feedback {
            Feedback::Suppression { .. } => {
                for q in (0..=self.setup.receivers).filter(|q| *q != p) {
                    self.sim.send(p, q, Msg::Nack(seq));
                }
            }
            _ if self.nack_target_is_sender(p) => self.sim.send(p, 0, Msg::Nack(seq)),
            _ => {
                let c = self.coordinator_of(p);
                self.sim.send(p, c, Msg::Nack(seq));
            }
        }
    }

    fn on_peer_nack(&mut self, p: Pid, from: Pid, seq: u64) {
        if self.setup.feedback == Feedback::Hierarchical {
            if self.rx[p - 1].got[seq as usize] {
                self.sim.send(p, from, Msg::Data(seq));
            } else {
                self.rx[p - 1].waiting.entry(seq).or_default().push(from);
                self.notice_gaps(p, seq);
            }
            return;
        }
        let r = &mut self.rx[p - 1];
        if r.pending.contains(&seq) {
            r.suppressed.insert(seq);
        }
    }

    fn on_receiver(&mut self, p: Pid, from: Pid, msg: Msg) {
        match msg {
            Msg::Data(seq) => self.on_data(p, seq),
            Msg::Session(h) => self.notice_gaps(p, h),
            Msg::Nack(seq) => self.on_peer_nack(p, from, seq),
        }
    }
}

/// Runs one multicast session of [`PACKETS`] packets.
pub fn execute(seed: u64, setup: Setup, trace: &mut Trace) -> Outcome {
    let rng = Rng::new(seed);
    let mut faults = Faults::lossy(setup.loss_per_mille, (1, 5));
    faults.fifo = true;
    let n = setup.receivers;
    let mut w = World {
        setup,
        sim: Sim::new(rng.fork(1), faults, trace.is_on()),
        rx: (0..n)
            .map(|_| Receiver {
                got: vec![false; PACKETS as usize + 1],
                highest_seen: 0,
                pending: BTreeSet::new(),
                suppressed: BTreeSet::new(),
                waiting: BTreeMap::new(),
            })
            .collect(),
        rng: rng.fork(2),
        group_size: (n as f64).sqrt().ceil() as usize,
        last_repair: BTreeMap::new(),
        first_loss: BTreeSet::new(),
        nacks: 0,
    };
    w.sim.set_timer(0, 1, 1);
    let mut next_packet = 1;
    while let Some(event) = w.sim.step(HORIZON) {
        match event {
            Event::Timer { node: 0, .. } => {
                if next_packet <= PACKETS {
                    send_original(&mut w, next_packet);
                    next_packet += 1;
                    w.sim.set_timer(0, SEND_INTERVAL, 1);
                } else if !setup.no_session && !all_complete(&w) {
                    for p in 1..=n {
                        w.sim.send(0, p, Msg::Session(PACKETS));
                    }
                    w.sim.set_timer(0, SESSION_TICKS, 1);
                }
            }
            Event::Timer { node, tag } => w.on_timer(node, tag),
            Event::Deliver { to: 0, msg, .. } => w.on_sender(msg),
            Event::Deliver { from, to, msg } => w.on_receiver(to, from, msg),
        }
    }
    let incomplete: Vec<(Pid, u64)> = (1..=n)
        .filter_map(|p| {
            (1..=PACKETS)
                .find(|s| !w.rx[p - 1].got[*s as usize])
                .map(|s| (p, s))
        })
        .collect();
    let out = Outcome {
        incomplete,
        nacks_at_sender: w.nacks,
        lost_packets: w.first_loss.len() as u64,
        messages: w.sim.stats().sent,
    };
    w.sim.note(|| {
        format!(
            "nacks_at_sender={} lost_packets={} incomplete={:?}",
            out.nacks_at_sender, out.lost_packets, out.incomplete
        )
    });
    trace.append(&w.sim.take_trace());
    out
}

fn send_original(w: &mut World, seq: u64) {
    let lost_before = w.sim.stats().lost;
    for p in 1..=w.setup.receivers {
        w.sim.send(0, p, Msg::Data(seq));
    }
    if w.sim.stats().lost > lost_before {
        w.first_loss.insert(seq);
    }
}

fn all_complete(w: &World) -> bool {
    w.rx.iter().all(|r| r.got[1..].iter().all(|g| *g))
}

/// Reliability: every receiver has every packet at the horizon.
pub fn check_reliability(o: &Outcome) -> Option<Violation> {
    let (p, s) = o.incomplete.first()?;
    Some(Violation::new(
        "reliable delivery",
        format!(
            "receiver {p} never got packet {s} ({} receivers incomplete)",
            o.incomplete.len()
        ),
    ))
}

/// No implosion: NACKs reaching the sender per lost packet stay within `bound`.
pub fn check_no_implosion(o: &Outcome, bound: f64) -> Option<Violation> {
    (o.nacks_per_lost() > bound).then(|| {
        Violation::new(
            "no feedback implosion",
            format!(
                "{:.1} NACKs reached the sender per lost packet (bound {bound})",
                o.nacks_per_lost()
            ),
        )
    })
}

/// A checker over one run's outcome.
type Checker = fn(&Outcome) -> Option<Violation>;

const SUPPRESSION: Feedback = Feedback::Suppression { window_ticks: 60 };
const VARIANTS: [(&str, Feedback); 3] = [
    ("plain NACKs", Feedback::Plain),
    ("feedback suppression", SUPPRESSION),
    ("hierarchical", Feedback::Hierarchical),
];

fn setup(receivers: usize, loss_per_mille: u64, feedback: Feedback) -> Setup {
    Setup {
        receivers,
        loss_per_mille,
        feedback,
        no_session: false,
    }
}

/// The scenario.
pub fn run(seed: u64, trace_on: bool) -> Report {
    let mut report = Report::new(NAME, SUMMARY, seed);
    let mut trace = Trace::new(trace_on);
    let mut quiet = Trace::new(false);
    let mut cases: Vec<(String, Expect, Setup, Checker)> = Vec::new();
    for (name, fb) in VARIANTS {
        cases.push((
            format!("{name}: every receiver gets every packet (100 receivers, loss 10%)"),
            Expect::Holds,
            setup(100, 100, fb),
            check_reliability,
        ));
    }
    let bounded: Checker = |o| check_no_implosion(o, 4.0);
    cases.push((
        "feedback suppression: at most 4 NACKs reach the sender per lost packet".into(),
        Expect::Holds,
        setup(100, 100, SUPPRESSION),
        bounded,
    ));
    cases.push((
        "hierarchical: at most 4 NACKs reach the sender per lost packet".into(),
        Expect::Holds,
        setup(100, 100, Feedback::Hierarchical),
        bounded,
    ));
    cases.push((
        "plain NACKs: feedback implosion at the sender".into(),
        Expect::Breaks,
        setup(100, 100, Feedback::Plain),
        bounded,
    ));
    cases.push((
        "suppression with no random delay (1-tick window): receivers NACK together, implosion returns".into(),
        Expect::Breaks,
        setup(100, 100, Feedback::Suppression { window_ticks: 1 }),
        bounded,
    ));
    let mut no_session = setup(100, 100, SUPPRESSION);
    no_session.no_session = true;
    cases.push((
        "planted bug: no session messages, a lost tail goes unnoticed".into(),
        Expect::Breaks,
        no_session,
        check_reliability,
    ));
    for (claim, expect, s, check) in cases {
        let v = sweep(&claim, expect, seed, 30, |sd| {
            check(&execute(sd, s, &mut quiet))
        });
        if expect == Expect::Breaks {
            trace.header(|| format!("== {claim}: seed {}", v.seed));
            execute(v.seed, s, &mut trace);
        } else {
            // Claims are sweeps; the trace shows one run at a tenth of the group size.
            trace.header(|| {
                format!(
                    "== {claim}: illustration, seed {} with 10 receivers",
                    v.seed
                )
            });
            execute(v.seed, Setup { receivers: 10, ..s }, &mut trace);
        }
        report.verdicts.push(v);
    }
    report.figures.push(size_figure(seed));
    report.figures.push(loss_figure(seed));
    report.trace = trace.into_text();
    report
}

fn mean_nacks(seed: u64, s: Setup, runs: u64) -> f64 {
    (0..runs)
        .map(|i| execute(seed + i, s, &mut Trace::new(false)).nacks_per_lost())
        .sum::<f64>()
        / runs as f64
}

fn size_figure(seed: u64) -> Figure {
    let mut fig = Figure::new(
        "nacks-vs-group-size",
        "NACKs reaching the sender per lost packet (loss 2%)",
        "receivers",
        "NACKs per lost packet",
    );
    fig.log_x = true;
    fig.log_y = true;
    for (name, fb) in VARIANTS {
        let pts = [10usize, 30, 100, 300, 1000]
            .iter()
            .map(|n| (*n as f64, mean_nacks(seed, setup(*n, 20, fb), 2)))
            .collect();
        fig = fig.with_series(name, pts);
    }
    fig
}

fn loss_figure(seed: u64) -> Figure {
    let mut fig = Figure::new(
        "nacks-vs-loss",
        "NACKs reaching the sender per lost packet (300 receivers)",
        "loss rate",
        "NACKs per lost packet",
    );
    fig.log_y = true;
    for (name, fb) in VARIANTS {
        let pts = [5u64, 10, 20, 50, 100, 200]
            .iter()
            .map(|l| (*l as f64 / 1000.0, mean_nacks(seed, setup(300, *l, fb), 2)))
            .collect();
        fig = fig.with_series(name, pts);
    }
    fig
}
