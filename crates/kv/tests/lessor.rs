//! The leader's lease clock: a table of scenarios (expiry, renew, promote, demote,
//! checkpoints, revoke retries), and a property for the TTL a new leader gives.

use kv::*;
use seedrng::Rng;

/// One member: its store (the replicated state, as applied) and its lessor.
struct Node {
    store: Store,
    lessor: Lessor,
    index: u64,
    /// Whether what the lessor proposes is lost instead of applied.
    lose: bool,
    /// Everything the lessor proposed, with the tick.
    proposed: Vec<(u64, Request)>,
}

impl Node {
    fn new(opts: LessorOptions) -> Node {
        Node {
            store: Store::new(),
            lessor: Lessor::new(opts),
            index: 0,
            lose: false,
            proposed: Vec::new(),
        }
    }

    /// Orders `req` in the log and applies it at once, telling the lessor both.
    fn commit(&mut self, req: Request) -> Result<Response, KvError> {
        self.index += 1;
        self.lessor.on_ordered(&self.store, &req, Some(self.index));
        let out = self
            .store
            .apply(self.index, req.clone())
            .expect("new index");
        self.lessor.on_applied(&self.store, &req, &out);
        self.lessor.on_applied_index(self.index);
        out
    }

    fn tick(&mut self) {
        for req in self.lessor.tick(&self.store) {
            self.proposed.push((self.lessor.now(), req.clone()));
            if !self.lose {
                self.commit(req).expect("a lessor's proposal applies");
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    Promote,
    Demote,
    Grant(i64, i64),
    Renew(i64),
    /// A client's revoke.
    Revoke(i64),
    Checkpoint(i64, i64),
    Ticks(u64),
    /// Lose the lessor's proposals from now on (true) or apply them (false).
    Lose(bool),
    /// `remaining_secs` of a lease now.
    Remaining(i64, Option<i64>),
}

/// What the lessor proposed: a revoke, or a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
enum P {
    Revoke(i64),
    Checkpoint(Vec<(i64, i64)>),
}

fn run(opts: LessorOptions, steps: &[Step]) -> Vec<(u64, P)> {
    let mut n = Node::new(opts);
    for step in steps {
        match step.clone() {
            Step::Promote => n.lessor.promote(&n.store),
            Step::Demote => n.lessor.demote(),
            Step::Grant(id, ttl) => drop(n.commit(Request::LeaseGrant { id, ttl }).unwrap()),
            Step::Renew(id) => drop(n.commit(Request::LeaseRenew { id })),
            Step::Revoke(id) => drop(n.commit(Request::LeaseRevoke { id })),
            Step::Checkpoint(id, secs) => drop(n.commit(Request::LeaseCheckpoint {
                checkpoints: vec![(id, secs)],
            })),
            Step::Ticks(k) => (0..k).for_each(|_| n.tick()),
            Step::Lose(lose) => n.lose = lose,
            Step::Remaining(id, want) => {
                assert_eq!(n.lessor.remaining_secs(id), want, "at {}", n.lessor.now())
            }
        }
    }
    n.proposed
        .into_iter()
        .map(|(at, r)| match r {
            Request::LeaseRevoke { id } => (at, P::Revoke(id)),
            Request::LeaseCheckpoint { checkpoints } => (at, P::Checkpoint(checkpoints)),
            other => panic!("a lessor proposed {other:?}"),
        })
        .collect()
}

/// A scenario: its name, the options, the steps, and every proposal with its tick.
type Scenario = (&'static str, LessorOptions, Vec<Step>, Vec<(u64, P)>);

/// 100 ms ticks, no checkpoints, 10 ticks of grace on promotion, retries after 30.
const OPTS: LessorOptions = LessorOptions {
    tick_ms: 100,
    checkpoint_interval_ticks: 0,
    promote_extend_ticks: 10,
    revoke_retry_ticks: 30,
};

#[test]
fn scenarios() {
    use Step::*;
    use P::{Checkpoint as Cp, Revoke as R};
    let every_10 = LessorOptions {
        checkpoint_interval_ticks: 10,
        ..OPTS
    };
    #[rustfmt::skip]
    let table: Vec<Scenario> = vec![
        ("expires after its ttl",
         OPTS, vec![Promote, Grant(1, 2), Remaining(1, Some(2)), Ticks(19), Remaining(1, Some(1)),
                    Ticks(30)],
         vec![(20, R(1))]),
        ("leases expire independently, in id order at one tick",
         OPTS, vec![Promote, Grant(2, 1), Grant(1, 1), Grant(3, 3), Ticks(40)],
         vec![(10, R(1)), (10, R(2)), (30, R(3))]),
        ("a renew restarts the ttl",
         OPTS, vec![Promote, Grant(1, 2), Ticks(15), Renew(1), Remaining(1, Some(2)), Ticks(30)],
         vec![(35, R(1))]),
        ("a renew after expiry does not save the lease",
         OPTS, vec![Promote, Grant(1, 2), Lose(true), Ticks(20), Renew(1), Remaining(1, Some(0)),
                    Lose(false), Ticks(40)],
         vec![(20, R(1)), (50, R(1))]),
        ("a lost revoke is proposed again every retry interval, not every tick",
         OPTS, vec![Promote, Grant(1, 1), Lose(true), Ticks(75)],
         vec![(10, R(1)), (40, R(1)), (70, R(1))]),
        ("an applied revoke is not proposed again",
         OPTS, vec![Promote, Grant(1, 1), Ticks(100), Remaining(1, None)],
         vec![(10, R(1))]),
        ("a client's revoke is forgotten",
         OPTS, vec![Promote, Grant(1, 2), Ticks(5), Revoke(1), Ticks(50)],
         vec![]),
        ("a follower expires nothing",
         OPTS, vec![Grant(1, 1), Ticks(100), Remaining(1, None)],
         vec![]),
        ("demote stops expiry",
         OPTS, vec![Promote, Grant(1, 2), Ticks(5), Demote, Ticks(100), Remaining(1, None)],
         vec![]),
        ("promote without a checkpoint: the whole ttl plus the grace",
         OPTS, vec![Grant(1, 2), Ticks(50), Promote, Remaining(1, Some(3)), Ticks(40)],
         vec![(80, R(1))]),
        ("promote with a checkpoint: the remaining ttl plus the grace",
         OPTS, vec![Grant(1, 10), Checkpoint(1, 3), Ticks(5), Promote, Ticks(50)],
         vec![(45, R(1))]),
        ("a renew clears the checkpoint for the next leader",
         OPTS, vec![Grant(1, 10), Checkpoint(1, 3), Renew(1), Promote, Ticks(150)],
         vec![(110, R(1))]),
        ("promote again re-proposes a lost revoke at the new deadline",
         OPTS, vec![Promote, Grant(1, 1), Lose(true), Ticks(12), Promote, Ticks(25)],
         vec![(10, R(1)), (32, R(1))]),
        ("demote, then promote: clocks start over",
         OPTS, vec![Promote, Grant(1, 2), Ticks(15), Demote, Ticks(100), Promote, Ticks(40)],
         vec![(145, R(1))]),
        ("checkpoints every interval, remaining rounded up to seconds",
         every_10, vec![Promote, Grant(1, 5), Grant(2, 100), Ticks(35)],
         vec![(10, Cp(vec![(1, 4), (2, 99)])), (20, Cp(vec![(1, 3), (2, 98)])),
              (30, Cp(vec![(1, 2), (2, 97)]))]),
        ("rounding up: 25 ticks left is 3 seconds",
         every_10, vec![Promote, Ticks(5), Grant(1, 3), Ticks(5)],
         vec![(10, Cp(vec![(1, 3)]))]),
        ("no checkpoint without leases, nor as a follower",
         every_10, vec![Ticks(30), Grant(1, 100), Ticks(30), Promote, Revoke(1), Ticks(30)],
         vec![]),
        ("checkpoints leave out expired leases",
         every_10, vec![Promote, Grant(1, 1), Grant(2, 100), Lose(true), Ticks(10)],
         vec![(10, R(1)), (10, Cp(vec![(2, 99)]))]),
        ("the cadence restarts on promotion",
         every_10, vec![Ticks(7), Grant(1, 100), Promote, Ticks(12)],
         vec![(17, Cp(vec![(1, 100)]))]),
        ("checkpoints reach the store and shorten the next leader's deadline",
         every_10, vec![Promote, Grant(1, 10), Ticks(60), Demote, Promote, Ticks(60)],
         vec![(10, Cp(vec![(1, 9)])), (20, Cp(vec![(1, 8)])), (30, Cp(vec![(1, 7)])),
              (40, Cp(vec![(1, 6)])), (50, Cp(vec![(1, 5)])), (60, Cp(vec![(1, 4)])),
              (70, Cp(vec![(1, 4)])), (80, Cp(vec![(1, 3)])), (90, Cp(vec![(1, 2)])),
              (100, Cp(vec![(1, 1)])), (110, R(1))]),
    ];
    for (name, opts, steps, expect) in table {
        assert_eq!(run(opts, &steps), expect, "{name}");
    }
}

#[test]
fn a_grant_of_id_zero_is_clocked_under_the_id_the_store_picked() {
    let mut n = Node::new(OPTS);
    n.lessor.promote(&n.store);
    let Ok(Response::LeaseGranted { id, .. }) = n.commit(Request::LeaseGrant { id: 0, ttl: 1 })
    else {
        panic!("grant refused")
    };
    assert_eq!(n.lessor.remaining_secs(id), Some(1));
    (0..10).for_each(|_| n.tick());
    assert_eq!(n.proposed, [(10, Request::LeaseRevoke { id })]);
    assert!(!n.store.has_lease(id));
}

#[test]
fn leases_the_lessor_was_not_told_of_are_caught_up_with() {
    let mut n = Node::new(OPTS);
    n.lessor.promote(&n.store);
    // Granted and revoked behind the lessor's back (as by a restored snapshot).
    n.store.lease_grant(4, 1).unwrap();
    n.tick();
    assert_eq!(n.lessor.remaining_secs(4), Some(2), "1 s plus the grace");
    n.store.lease_revoke(4).unwrap();
    n.tick();
    assert_eq!(n.lessor.remaining_secs(4), None);
}

/// A keep-alive that the previous leader ordered and committed, but that the new
/// leader applies only after its promotion, restarts the lease from when it applies: the
/// promotion clocked the lease from a checkpoint older than the keep-alive (found by the
/// simulator's lease safety checker).
#[test]
fn a_keepalive_applied_after_a_promotion_restarts_the_lease() {
    let mut n = Node::new(OPTS);
    n.commit(Request::LeaseGrant { id: 3, ttl: 4 }).unwrap();
    n.commit(Request::LeaseCheckpoint {
        checkpoints: vec![(3, 1)],
    })
    .unwrap();
    n.lessor.promote(&n.store);
    let promoted = revoke_tick(&n.lessor, &n.store);
    (0..5).for_each(|_| n.tick());
    // Applied, not ordered here.
    n.index += 1;
    let req = Request::LeaseRenew { id: 3 };
    let out = n.store.apply(n.index, req.clone()).expect("new index");
    n.lessor.on_applied(&n.store, &req, &out);
    assert_eq!(revoke_tick(&n.lessor, &n.store), 5 + 40);
    assert!(promoted < 5 + 40);
}

/// The deadline a lessor has for the lease: the tick its revoke would be proposed at
/// if nothing else happened (found by running copies forward).
fn revoke_tick(lessor: &Lessor, store: &Store) -> u64 {
    let (mut l, s) = (lessor.clone(), store.clone());
    for _ in 0..1_000_000 {
        let out = l.tick(&s);
        if out.iter().any(|r| matches!(r, Request::LeaseRevoke { .. })) {
            return l.now();
        }
    }
    panic!("never expires")
}

/// A leader keeps a lease alive with renews while checkpointing, then stops; another
/// member takes over after a gap. Its deadline is never earlier than the old leader's
/// and never later than it by more than the grace, the time since the last checkpoint
/// or renew, and a second of rounding.
#[test]
fn a_new_leader_never_expires_a_lease_early_nor_much_late() {
    let mut rng = Rng::new(5);
    let mut promoted = 0;
    for case in 0..300 {
        let opts = LessorOptions {
            tick_ms: *rng.pick(&[10, 100, 250, 1000]).unwrap(),
            checkpoint_interval_ticks: rng.range(0, 60),
            promote_extend_ticks: rng.range(0, 20),
            revoke_retry_ticks: 30,
        };
        let ticks_per_sec = 1000u64.div_ceil(opts.tick_ms);
        let mut old = Node::new(opts);
        let mut new = Lessor::new(opts);
        old.lessor.promote(&old.store);
        let ttl = rng.range(1, 30) as i64;
        old.commit(Request::LeaseGrant { id: 1, ttl }).unwrap();
        let mut fresh = old.lessor.now();
        for _ in 0..rng.range(0, 400) {
            if rng.chance(1, 15) && old.lessor.remaining_secs(1) > Some(0) {
                old.commit(Request::LeaseRenew { id: 1 }).unwrap();
                fresh = old.lessor.now();
            }
            let before = old.proposed.len();
            old.tick();
            new.tick(&old.store);
            let checkpointed = old.proposed[before..]
                .iter()
                .any(|(_, r)| matches!(r, Request::LeaseCheckpoint { .. }));
            if checkpointed {
                fresh = old.lessor.now();
            }
            if !old.store.has_lease(1) {
                break;
            }
        }
        if !old.store.has_lease(1) {
            continue;
        }
        let true_deadline = revoke_tick(&old.lessor, &old.store);
        for _ in 0..rng.range(0, 50) {
            new.tick(&old.store);
        }
        new.promote(&old.store);
        let promoted_at = new.now();
        let deadline = revoke_tick(&new, &old.store);
        let stale = promoted_at - fresh;
        promoted += 1;
        assert!(
            deadline >= true_deadline,
            "case {case}: {deadline} < {true_deadline}"
        );
        let slack = opts.promote_extend_ticks + stale + ticks_per_sec;
        assert!(
            deadline <= true_deadline.max(promoted_at) + slack,
            "case {case}: {deadline} > {true_deadline} + {slack}"
        );
    }
    assert!(promoted > 150, "only {promoted} cases got to a promotion");
}

#[test]
fn a_leader_renews_from_memory_only_shortly_after_a_keepalive_of_its_own_applied() {
    let mut n = Node::new(OPTS);
    n.lessor.promote(&n.store);
    n.commit(Request::LeaseGrant { id: 7, ttl: 5 }).unwrap();
    // Granted, but no keep-alive of this leader applied yet: through the log.
    assert!(!n.lessor.can_renew_local(7));
    assert_eq!(n.lessor.renew_local(&n.store, 7), None);
    n.commit(Request::LeaseRenew { id: 7 }).unwrap();
    assert!(n.lessor.can_renew_local(7));
    let window = n.lessor.local_renew_window();
    assert_eq!(window, OPTS.promote_extend_ticks / 2);
    for _ in 0..window {
        n.tick();
    }
    // A renew from memory gives the whole TTL from now.
    assert_eq!(n.lessor.renew_local(&n.store, 7), Some(5));
    assert_eq!(n.lessor.remaining_secs(7), Some(5));
    n.tick();
    // Past the window: the next keep-alive goes through the log again.
    assert!(!n.lessor.can_renew_local(7));
    n.commit(Request::LeaseRenew { id: 7 }).unwrap();
    assert!(n.lessor.can_renew_local(7));
    // A follower never renews from memory, nor a new leader from what an earlier
    // leadership ordered.
    n.lessor.demote();
    assert!(!n.lessor.can_renew_local(7));
    n.lessor.promote(&n.store);
    assert!(!n.lessor.can_renew_local(7));
}

#[test]
fn a_keepalive_ordered_without_an_index_or_not_yet_applied_allows_no_renew_from_memory() {
    let mut n = Node::new(OPTS);
    n.lessor.promote(&n.store);
    n.commit(Request::LeaseGrant { id: 7, ttl: 5 }).unwrap();
    // Ordered (a peer's forward: no index) and applied: not enough.
    let renew = Request::LeaseRenew { id: 7 };
    n.lessor.on_ordered(&n.store, &renew, None);
    n.index += 1;
    let out = n.store.apply(n.index, renew.clone()).unwrap();
    n.lessor.on_applied(&n.store, &renew, &out);
    n.lessor.on_applied_index(n.index);
    assert!(!n.lessor.can_renew_local(7));
    // Ordered at index i, but only an earlier entry applied: not yet.
    let ordered_at = n.index + 2;
    n.lessor.on_ordered(&n.store, &renew, Some(ordered_at));
    n.lessor.on_applied_index(ordered_at - 1);
    assert!(!n.lessor.can_renew_local(7));
    n.lessor.on_applied_index(ordered_at);
    assert!(n.lessor.can_renew_local(7));
}

#[test]
fn an_expired_or_revoked_lease_is_never_renewed_from_memory() {
    let mut n = Node::new(OPTS);
    n.lessor.promote(&n.store);
    n.commit(Request::LeaseGrant { id: 7, ttl: 1 }).unwrap();
    n.commit(Request::LeaseGrant { id: 8, ttl: 60 }).unwrap();
    n.commit(Request::LeaseRenew { id: 7 }).unwrap();
    n.commit(Request::LeaseRenew { id: 8 }).unwrap();
    // The expiry revoke is proposed (and lost): lease 7 stays in the store, expired.
    n.lose = true;
    for _ in 0..OPTS.promote_extend_ticks / 2 {
        n.tick();
    }
    let lease_ticks = 1000 / OPTS.tick_ms;
    for _ in 0..lease_ticks {
        n.tick();
    }
    assert!(n
        .proposed
        .iter()
        .any(|(_, r)| *r == Request::LeaseRevoke { id: 7 }));
    assert_eq!(n.lessor.renew_local(&n.store, 7), None);
    n.lose = false;
    n.commit(Request::LeaseRenew { id: 8 }).unwrap();
    n.commit(Request::LeaseRevoke { id: 8 }).unwrap();
    assert_eq!(n.lessor.renew_local(&n.store, 8), None);
}
