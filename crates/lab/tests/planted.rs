//! Each checker catches what it claims to: planted protocol bugs and hand-built bad
//! outcomes are reported, the correct variants are not.

use lab::sim::Trace;

fn quiet() -> Trace {
    Trace::new(false)
}

#[test]
fn two_generals_checker() {
    use lab::two_generals::{battle, check_agreement, Decision};
    assert!(check_agreement([Decision::Attack, Decision::Hold]).is_some());
    assert!(check_agreement([Decision::Hold, Decision::Hold]).is_none());
    assert!((0..50).all(|s| check_agreement(battle(s, 3, 0, &mut quiet())).is_none()));
}

#[test]
fn flooding_checkers_and_the_f_round_bug() {
    use lab::flooding::{check_agreement, check_all, check_validity, execute, Crash, Outcome};
    let bad = Outcome {
        proposals: vec![1, 2, 3],
        decisions: vec![Some(1), Some(2), None],
        crashes: vec![Crash {
            pid: 2,
            round: 1,
            reaches: vec![0],
        }],
    };
    assert!(check_agreement(&bad).is_some());
    let invented = Outcome {
        decisions: vec![Some(9), Some(9), None],
        ..bad.clone()
    };
    assert!(check_agreement(&invented).is_none());
    assert!(check_validity(&invented).is_some());
    // Deciding after f rounds instead of f + 1 is caught at some seed; f + 1 never is.
    assert!((0..500).any(|s| check_agreement(&execute(s, 4, 1, 1, &mut quiet())).is_some()));
    assert!((0..200).all(|s| check_all(&execute(s, 4, 1, 2, &mut quiet())).is_none()));
}

#[test]
fn om_with_one_round_too_few_is_caught() {
    use lab::byzantine::{check_generals, om_trial, Order};
    assert!((0..200).any(|s| om_trial(s, 4, 1, 1, &mut quiet()).is_some()));
    assert!((0..200).all(|s| om_trial(s, 4, 1, 2, &mut quiet()).is_none()));
    let split = [None, Some(Order::Attack), Some(Order::Retreat)];
    assert!(check_generals(Order::Attack, true, &split).is_some());
    let disobey = [None, Some(Order::Retreat), Some(Order::Retreat)];
    assert_eq!(
        check_generals(Order::Attack, true, &disobey).map(|v| v.property),
        Some("IC2 validity")
    );
    assert!(check_generals(Order::Attack, false, &disobey).is_none());
}

#[test]
fn paxos_safety_checker_catches_a_proposer_that_ignores_promises() {
    use lab::paxos::{check_safety, execute, Ballot, Outcome, ProposerConfig, Setup};
    use lab::sim::Faults;
    let b = |round| Ballot { round, proposer: 3 };
    let two = Outcome {
        acceptances: vec![
            (0, b(1), 100),
            (1, b(1), 100),
            (1, b(2), 200),
            (2, b(2), 200),
        ],
        proposed: vec![100, 200],
        ..Outcome::default()
    };
    assert!(check_safety(&two).is_some());
    let setup = |ignore| Setup {
        faults: Faults::lossy(100, (1, 5)),
        cfg: ProposerConfig {
            accept_delay_ticks: 1,
            backoff_ticks: 20,
            retry_timeout_ticks: 30,
            ignore_promised_values: ignore,
        },
        start_ticks: [0, 15],
        crash: None,
        amnesia: false,
        horizon_ticks: 1_000,
    };
    assert!((0..2_000).any(|s| check_safety(&execute(s, &setup(true), &mut quiet())).is_some()));
    assert!((0..300).all(|s| check_safety(&execute(s, &setup(false), &mut quiet())).is_none()));
}

#[test]
fn two_pc_committing_without_every_vote_is_caught() {
    use lab::sim::Faults;
    use lab::two_pc::{check_atomicity, execute, Setup};
    // Participant 2 would vote abort but crashes before it can; it restarts in INIT,
    // times out and aborts. A coordinator that commits on partial votes splits them.
    let setup = |bug| Setup {
        n: 3,
        votes: vec![true, false, true],
        faults: Faults::reliable(2),
        participant_crash: Some((2, 1)),
        participant_restart_after: Some(50),
        commit_on_partial_votes: bug,
        ..Setup::default()
    };
    let v = check_atomicity(&execute(1, &setup(true), &mut quiet())).expect("planted bug caught");
    assert_eq!(v.property, "atomicity");
    assert!(check_atomicity(&execute(1, &setup(false), &mut quiet())).is_none());
}

#[test]
fn three_pc_termination_table_and_planted_unilateral_abort() {
    use lab::three_pc::{check_atomicity, termination_rule, Outcome, State};
    use State::{Abort, Commit, Init, PreCommit, Ready};
    assert_eq!(termination_rule(&[PreCommit], 3), Some(Commit));
    assert_eq!(termination_rule(&[Ready, Ready], 3), Some(Abort));
    assert_eq!(termination_rule(&[Ready], 3), None);
    assert_eq!(termination_rule(&[Ready, Init], 3), Some(Abort));
    assert_eq!(
        termination_rule(&[Ready, PreCommit, Ready], 3),
        Some(Commit)
    );
    assert_eq!(termination_rule(&[Ready, Commit], 3), Some(Commit));
    let split = Outcome {
        states: vec![Commit, Abort, Abort],
        crashed: vec![false; 3],
    };
    assert!(check_atomicity(&split).is_some());
    let r = lab::run("three-phase-commit", 1, false).expect("known");
    assert!(r.verdict("planted bug").expect("verdict").as_expected());
}

#[test]
fn multicast_checkers() {
    use lab::multicast::{
        check_no_implosion, check_reliability, execute, Feedback, Outcome, Setup,
    };
    let setup = |no_session| Setup {
        receivers: 20,
        loss_per_mille: 100,
        feedback: Feedback::Plain,
        no_session,
    };
    assert!((0..50).any(|s| check_reliability(&execute(s, setup(true), &mut quiet())).is_some()));
    assert!((0..20).all(|s| check_reliability(&execute(s, setup(false), &mut quiet())).is_none()));
    let implosion = Outcome {
        nacks_at_sender: 50,
        lost_packets: 5,
        ..Outcome::default()
    };
    assert!(check_no_implosion(&implosion, 4.0).is_some());
    assert!(check_no_implosion(&implosion, 10.0).is_none());
}

#[test]
fn tmr_voter_and_output_checker() {
    use lab::tmr::{check_outputs, compute, vote, Outcome};
    assert_eq!(vote(&[5, 5, 7]), Some(5));
    assert_eq!(vote(&[5, 6, 7]), None);
    assert_eq!(vote(&[4, 4]), Some(4));
    let wrong = Outcome {
        accepted: vec![(1, 10, compute(10)), (2, 11, compute(11) + 1)],
    };
    assert!(check_outputs(&wrong).is_some());
}

#[test]
fn a_detector_that_resets_on_probes_is_caught_by_completeness() {
    use lab::detectors as fd;
    let buggy = fd::Detector::Fixed {
        timeout: 40,
        last: 0,
        reset_on_probe: true,
    };
    assert!(fd::check_completeness(&fd::execute(1, buggy, &mut quiet())).is_some());
    assert!(
        fd::check_completeness(&fd::execute(1, fd::Detector::fixed(40), &mut quiet())).is_none()
    );
}

#[test]
fn checkpointing_checkers() {
    use lab::checkpointing::cut::{check_no_orphans, recovery_line, Ev};
    use lab::checkpointing::{coordinated, domino, snapshot};
    let h = domino::notes_example();
    assert_eq!(recovery_line(&h, &[0]).1, vec![3, u32::MAX, u32::MAX]);
    assert_eq!(recovery_line(&h, &[1]).1, vec![2, 2, u32::MAX]);
    assert_eq!(recovery_line(&h, &[2]).1, vec![1, 1, 1]);
    // A hand-built orphan: P2 keeps the receipt of a message P1's state never sent.
    let orphan = vec![
        vec![Ev::Ckpt(1), Ev::Send(1, 1)],
        vec![Ev::Ckpt(1), Ev::Recv(1, 0)],
    ];
    assert!(check_no_orphans(&orphan, &vec![1, 2]).is_some());
    assert!(check_no_orphans(&orphan, &vec![2, 2]).is_none());
    assert!((0..500).any(|s| {
        let o = coordinated::execute(s, true, &mut quiet());
        check_no_orphans(&o.histories, &o.cut).is_some()
    }));
    assert!((0..100)
        .any(|s| snapshot::check_snapshot(&snapshot::execute(s, false, &mut quiet())).is_some()));
    assert!((0..100)
        .all(|s| snapshot::check_snapshot(&snapshot::execute(s, true, &mut quiet())).is_none()));
}
