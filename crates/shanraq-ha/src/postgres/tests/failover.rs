//! Unplanned failover: detection thresholds, fencing before promotion, election, routing only
//! after promotion, the recorded timeline, and a second failure right after the first.

use std::time::Duration;

use super::fixtures::*;
use crate::events::Lifecycle;
use crate::postgres::{
    Command, CommandError, EventKind, FailoverKind, HaState, Millis, Phase, PodSignal,
    ReplicationMode,
};

/// Detection, then both standbys answer their detach: pg-1 is promoted (and pg-2 follows it).
fn fail_over_to_pg1(sim: &mut Sim) {
    for _ in 0..3 {
        sim.round(failing_round());
    }
    sim.detached("pg-1", 2, 1000, 990);
    sim.detached("pg-2", 2, 995, 995);
    let out = sim.step();
    assert_eq!(
        out.commands,
        vec![promote("pg-1", 2), repoint("pg-2", "pg-1", 2)]
    );
    sim.advance(1);
    sim.done(&repoint("pg-2", "pg-1", 2), Ok(()));
}

fn failing_round() -> Vec<Probe> {
    vec![
        down("pg-0"),
        up(replica("pg-1").epoch(1).at_lsn(1000, 990)),
        up(replica("pg-2").epoch(1).at_lsn(995, 995)),
    ]
}

#[test]
fn dead_primary_is_fenced_then_most_advanced_sync_standby_promoted_then_routed() {
    let mut sim = Sim::healthy(SYNC);
    let first_failure = sim.now;
    assert!(
        sim.round(failing_round()).commands.is_empty(),
        "one failed probe is not a failure"
    );
    assert!(
        sim.round(failing_round()).commands.is_empty(),
        "two failed probes are not a failure"
    );
    let out = sim.round(failing_round());
    assert_eq!(
        out.commands,
        vec![fence("pg-0", 2), detach("pg-1", 2), detach("pg-2", 2)],
        "fence the primary and detach its synchronous set at once"
    );
    assert_eq!(
        sim.ha.state().epoch,
        2,
        "the epoch is bumped before anyone acts"
    );
    assert_eq!(sim.ha.state().phase, Phase::Fencing);
    sim.detached("pg-1", 2, 1000, 990);
    assert!(
        sim.step().commands.is_empty(),
        "one of two detached: ANY 1 over two standbys may still be met by pg-2"
    );
    sim.detached("pg-2", 2, 995, 995);
    assert_eq!(
        sim.step().commands,
        vec![promote("pg-1", 2), repoint("pg-2", "pg-1", 2)],
        "the most advanced is promoted while the other follows it"
    );
    assert_eq!(sim.ha.state().phase, Phase::Promoting);
    assert_eq!(sim.ha.state().target_primary, Some(node("pg-1")));

    sim.done(
        &fence("pg-0", 2),
        Err(CommandError::Failed("connection refused".into())),
    );
    sim.advance(100); // a failed target is retried one probe period later
    sim.done(&repoint("pg-2", "pg-1", 2), Ok(()));
    let out = sim.step();
    assert!(
        out.commands.is_empty(),
        "no route before the promotion is confirmed: {:?}",
        out.commands
    );
    sim.done(&promote("pg-1", 2), Ok(()));
    assert_eq!(sim.step().commands, vec![route("pg-1", 2)]);
    sim.advance(20);
    sim.done(&route("pg-1", 2), Ok(()));
    let routed_at = sim.now;
    assert!(
        sim.step().commands.is_empty(),
        "pg-2 already follows pg-1: nothing to re-point after routing"
    );
    assert_eq!(sim.ha.state().phase, Phase::Healthy);
    assert_eq!(sim.ha.state().current_primary, Some(node("pg-1")));
    assert_eq!(sim.ha.routed_primary(), Some(&node("pg-1")));

    let record = sim
        .ha
        .state()
        .last_failover
        .clone()
        .expect("the failover is recorded");
    assert_eq!(record.kind, FailoverKind::Failover);
    assert_eq!(
        (record.from.as_str(), record.to.as_ref().map(|n| n.as_str())),
        ("pg-0", Some("pg-1"))
    );
    assert_eq!(
        record.detected_at, first_failure,
        "RTO counts from the first failed probe"
    );
    assert!(
        record.fenced_at.is_none() && record.detail.fence_error.is_some(),
        "an unreachable primary is not claimed fenced"
    );
    assert!(record.promoted_at.is_some());
    assert_eq!(record.routed_at, Some(routed_at));
    assert_eq!(record.rto_ms, Some(routed_at.since(first_failure)));
    assert_eq!(
        record.lost_bytes,
        Some(0),
        "pg-1 had received everything the primary reported"
    );
    assert!(sim.ha.state().in_flight.is_none());
    let reasons = sim.reasons();
    for expected in [
        "PrimarySuspected",
        "FailoverStarted",
        "Fenced",
        "QuorumFenced",
        "Elected",
        "Promoted",
        "Routed",
        "FailoverCompleted",
    ] {
        assert!(
            reasons.iter().any(|told| told == expected),
            "missing event {expected} in {reasons:?}"
        );
    }

    // The old primary is demoted once it is back.
    let out = sim.round(vec![
        up(fenced("pg-0").epoch(1)),
        up(primary("pg-1").epoch(2).lsn(1200).quorum(&["pg-2"])),
        up(replica("pg-2").epoch(2).at_lsn(1200, 1200)),
    ]);
    assert_eq!(
        out.commands,
        vec![demote("pg-0", "pg-1", 2)],
        "the old primary rejoins through demote (pg_rewind)"
    );
}

#[test]
fn detection_honours_threshold_delay_and_recovery() {
    struct Case {
        name: &'static str,
        threshold: u32,
        delay_ms: u64,
        /// Each round: whether the primary answers.
        rounds: Vec<bool>,
        failover: bool,
    }
    let cases = vec![
        Case {
            name: "below threshold",
            threshold: 3,
            delay_ms: 0,
            rounds: vec![false, false],
            failover: false,
        },
        Case {
            name: "at threshold",
            threshold: 3,
            delay_ms: 0,
            rounds: vec![false, false, false],
            failover: true,
        },
        Case {
            name: "streak broken",
            threshold: 3,
            delay_ms: 0,
            rounds: vec![false, false, true, false, false],
            failover: false,
        },
        Case {
            name: "delay not over",
            threshold: 2,
            delay_ms: 500,
            rounds: vec![false, false, false, false],
            failover: false,
        },
        Case {
            name: "delay over",
            threshold: 2,
            delay_ms: 500,
            rounds: vec![false; 8],
            failover: true,
        },
        Case {
            name: "recovers during delay",
            threshold: 2,
            delay_ms: 500,
            rounds: vec![false, false, false, true, false],
            failover: false,
        },
    ];
    for case in cases {
        let mut sim = Sim::healthy(SYNC);
        let mut config = sim.ha.config().clone();
        config.failure_threshold = case.threshold;
        config.failover_delay = Duration::from_millis(case.delay_ms);
        sim.ha = crate::postgres::PostgresHa::new(config, members(), sim.ha.state().clone());
        for answers in &case.rounds {
            let mut probes = healthy_round(1, 1000);
            if !answers {
                probes[0] = down("pg-0");
            }
            sim.round(probes);
        }
        let started = sim.saw("FailoverStarted");
        assert_eq!(
            started,
            case.failover,
            "case {}: events {:?}",
            case.name,
            sim.reasons()
        );
        assert_eq!(
            sim.ha.state().epoch == 2,
            case.failover,
            "case {}: epoch only moves with a failover",
            case.name
        );
    }
}

#[test]
fn deleted_primary_pod_starts_detection_at_once_and_a_reachable_primary_is_fenced_before_promotion()
{
    let mut sim = Sim::healthy(SYNC);
    sim.ha.signal(PodSignal {
        node: node("pg-0"),
        at: sim.now,
        ready: false,
        deleted: true,
    });
    // The instance still answers while its pod terminates: it must be unable to commit
    // before anyone is promoted.
    let out = sim.round(healthy_round(1, 1000));
    assert_eq!(
        out.commands,
        vec![fence("pg-0", 2), detach("pg-1", 2), detach("pg-2", 2)],
        "fence and detach, promotion waits for either"
    );
    let out = sim.round(healthy_round(1, 1000));
    assert!(out.commands.is_empty(), "still waiting");
    sim.done(&fence("pg-0", 2), Ok(()));
    for name in ["pg-1", "pg-2"] {
        sim.done(
            &detach(name, 2),
            Err(CommandError::Failed("timed out".into())),
        );
    }
    sim.advance(100);
    let out = sim.round(vec![
        up(fenced("pg-0").epoch(2)),
        up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
        up(replica("pg-2").epoch(1).at_lsn(1000, 1000)),
    ]);
    assert_eq!(
        out.commands,
        vec![promote("pg-1", 2), repoint("pg-2", "pg-1", 2)],
        "a confirmed fence is enough: the old primary stopped"
    );
    let record = sim.ha.state().in_flight.clone().expect("in flight");
    assert!(record.fenced_at.is_some(), "the fence is on the timeline");
}

#[test]
fn not_ready_pod_alone_does_not_fail_over_a_primary_that_answers() {
    let mut sim = Sim::healthy(SYNC);
    for _ in 0..5 {
        sim.ha.signal(PodSignal {
            node: node("pg-0"),
            at: sim.now,
            ready: false,
            deleted: false,
        });
        sim.round(healthy_round(1, 1000));
    }
    assert!(
        !sim.saw("FailoverStarted"),
        "the database's answer wins over a pod flap"
    );
    assert_eq!(sim.ha.state().epoch, 1);
}

#[test]
fn a_reachable_primary_that_never_answers_the_fence_is_fenced_through_its_standbys() {
    let mut sim = Sim::healthy(SYNC);
    sim.ha.signal(PodSignal {
        node: node("pg-0"),
        at: sim.now,
        ready: false,
        deleted: true,
    });
    sim.round(healthy_round(1, 1000));
    // Long past fence_timeout: a primary that still streams to its standbys could still
    // acknowledge commits, so nobody is promoted.
    for _ in 0..20 {
        let out = sim.round(healthy_round(1, 1000));
        assert!(
            !out.commands
                .iter()
                .any(|c| matches!(c, Command::Promote { .. })),
            "no promotion while the synchronous set follows the old primary"
        );
    }
    assert!(sim.saw("FencingBlocked"));
    sim.detached("pg-1", 2, 1000, 1000);
    assert!(sim.step().commands.is_empty(), "one of two is not enough");
    sim.detached("pg-2", 2, 1000, 1000);
    assert_eq!(
        sim.step().commands,
        vec![promote("pg-1", 2), repoint("pg-2", "pg-1", 2)],
        "with both standbys detached ANY 1 cannot be met: promote"
    );
}

#[test]
fn second_failure_right_after_the_first_fails_over_again_with_a_new_epoch() {
    let mut sim = Sim::healthy(SYNC);
    fail_over_to_pg1(&mut sim);
    sim.done(
        &fence("pg-0", 2),
        Err(CommandError::Failed("refused".into())),
    );
    sim.done(&promote("pg-1", 2), Ok(()));
    sim.step();
    sim.done(&route("pg-1", 2), Ok(()));
    assert_eq!(sim.ha.state().current_primary, Some(node("pg-1")));

    // pg-1 dies before any standby streamed from it: nothing proves pg-2 has pg-1's commits,
    // and pg-1's synchronous set is unknown, so it cannot be fenced through it either.
    let before_stream = vec![
        down("pg-0"),
        down("pg-1"),
        up(replica("pg-2").epoch(2).at_lsn(995, 995)),
    ];
    for _ in 0..3 {
        sim.round(before_stream.clone());
    }
    assert_eq!(
        sim.ha.state().epoch,
        3,
        "the second failure starts a second failover"
    );
    sim.detached("pg-2", 3, 995, 995);
    for _ in 0..15 {
        sim.round(before_stream.clone());
    }
    assert_eq!(sim.ha.state().phase, Phase::Fencing);
    let blocked: Vec<String> = sim
        .events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::Lifecycle(Lifecycle::FencingBlocked { reason }) => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(blocked.len(), 1, "said once, not every step: {blocked:?}");
    assert!(
        blocked[0].contains("synchronous set is unknown"),
        "{}",
        blocked[0]
    );
    assert!(!sim.commands.contains(&promote("pg-2", 3)));

    // Same story, but pg-2 was repointed and reported in quorum by pg-1 before it died.
    let mut sim = Sim::healthy(SYNC);
    fail_over_to_pg1(&mut sim);
    sim.done(
        &fence("pg-0", 2),
        Err(CommandError::Failed("refused".into())),
    );
    sim.done(&promote("pg-1", 2), Ok(()));
    sim.step();
    sim.done(&route("pg-1", 2), Ok(()));
    sim.round(vec![
        down("pg-0"),
        up(primary("pg-1").epoch(2).lsn(1200).quorum(&["pg-2"])),
        up(replica("pg-2").epoch(2).at_lsn(1200, 1200)),
    ]);
    let second_down = vec![
        down("pg-0"),
        down("pg-1"),
        up(replica("pg-2").epoch(2).at_lsn(1200, 1200)),
    ];
    sim.round(second_down.clone());
    sim.round(second_down.clone());
    let out = sim.round(second_down);
    assert_eq!(
        out.commands,
        vec![fence("pg-1", 3), detach("pg-0", 3), detach("pg-2", 3)]
    );
    sim.detached("pg-2", 3, 1200, 1200);
    assert_eq!(
        sim.step().commands,
        vec![promote("pg-2", 3)],
        "pg-2 is all of pg-1's synchronous set"
    );
    let completed = sim
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Lifecycle(Lifecycle::FailoverCompleted { .. })
            )
        })
        .count();
    assert_eq!(
        completed, 1,
        "the first failover completed, the second is under way"
    );
}

#[test]
fn routing_never_lags_promotion_and_a_failed_route_is_retried() {
    let mut sim = Sim::healthy(SYNC);
    fail_over_to_pg1(&mut sim);
    sim.done(
        &fence("pg-0", 2),
        Err(CommandError::Failed("refused".into())),
    );
    sim.done(&promote("pg-1", 2), Ok(()));
    assert_eq!(sim.step().commands, vec![route("pg-1", 2)]);
    assert!(sim.step().commands.is_empty(), "one route at a time");
    sim.done(
        &route("pg-1", 2),
        Err(CommandError::Failed("haproxy runtime api down".into())),
    );
    assert_eq!(
        sim.ha.state().phase,
        Phase::Routing,
        "not complete until routing succeeded"
    );
    assert!(sim.step().commands.is_empty(), "no hot retry loop");
    sim.advance(100);
    assert_eq!(
        sim.step().commands,
        vec![route("pg-1", 2)],
        "routing is retried one probe period later"
    );
    sim.done(&route("pg-1", 2), Ok(()));
    assert_eq!(sim.ha.state().phase, Phase::Healthy);
    let routed: Vec<_> = sim
        .commands
        .iter()
        .filter(|c| matches!(c, Command::Route { .. }))
        .cloned()
        .collect();
    assert!(
        routed.iter().all(|c| c != &route("pg-0", 2)),
        "the old primary is never routed with the new epoch"
    );
    assert_eq!(
        sim.ha
            .state()
            .last_failover
            .as_ref()
            .and_then(|r| r.routed_at),
        Some(sim.now)
    );
    let _ = Millis(0);
}

#[test]
fn a_refused_probe_confirms_detection_one_probe_sooner_than_a_timeout() {
    let refused_round = || {
        vec![
            Probe::Refused("pg-0"),
            up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
            up(replica("pg-2").epoch(1).at_lsn(1000, 1000)),
        ]
    };
    // Threshold 3: two refusals (no manager listens) are enough...
    let mut sim = Sim::healthy(SYNC);
    sim.round(refused_round());
    assert!(!sim.saw("PrimarySuspected"), "one is not");
    sim.round(refused_round());
    assert!(sim.saw("FailoverStarted"), "{:?}", sim.reasons());
    // ... while two timeouts are not.
    let mut sim = Sim::healthy(SYNC);
    sim.round(failing_round());
    sim.round(failing_round());
    assert!(!sim.saw("PrimarySuspected"));
    // A third failed probe of any kind reaches the threshold.
    sim.round(refused_round());
    assert!(
        sim.saw("FailoverStarted"),
        "three failed probes: {:?}",
        sim.reasons()
    );
}

#[test]
fn a_round_where_every_probe_timed_out_counts_for_nobody() {
    let mut sim = Sim::healthy(SYNC);
    let silent = || vec![down("pg-0"), down("pg-1"), down("pg-2")];
    for _ in 0..10 {
        let out = sim.round_at_once(silent());
        assert!(out.commands.is_empty(), "{:?}", out.commands);
    }
    assert!(
        !sim.saw("PrimarySuspected"),
        "the engine's own side is at fault: {:?}",
        sim.reasons()
    );
    // As soon as a replica answers, the primary's silence counts again.
    for _ in 0..3 {
        sim.round_at_once(failing_round());
    }
    assert!(sim.saw("FailoverStarted"));
}

/// `synchronous.number` raised from 1 to 2 while the primary still runs `ANY 1` (its pod has
/// not restarted with the new setting): the quorum argument counts on what the primary has in
/// effect. Detaching one of its two standbys leaves it a standby to commit with, so nobody is
/// promoted until both are detached.
#[test]
fn a_raised_number_not_yet_in_effect_is_not_counted_on() {
    let two = ReplicationMode::Synchronous { number: 2 };
    let mut sim = Sim::new(config(two), HaState::with_primary(node("pg-0"), 1));
    let healthy = || {
        vec![
            up(primary("pg-0")
                .epoch(1)
                .lsn(1000)
                .standby_names("ANY 1 (*)")
                .quorum(&["pg-1", "pg-2"])),
            up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
            up(replica("pg-2").epoch(1).at_lsn(1000, 1000)),
        ]
    };
    sim.round(healthy());
    sim.done(
        &Command::Route {
            primary: node("pg-0"),
            epoch: 1,
        },
        Ok(()),
    );
    sim.round(healthy());
    assert_eq!(sim.ha.state().detail.sync_quorum, Some(1));
    for _ in 0..3 {
        sim.round(vec![
            down("pg-0"),
            up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
            up(replica("pg-2").epoch(1).at_lsn(1000, 1000)),
        ]);
    }
    assert_eq!(sim.ha.state().epoch, 2, "the failover started");
    sim.detached("pg-1", 2, 1000, 1000);
    for _ in 0..5 {
        let out = sim.round(vec![
            down("pg-0"),
            up(replica("pg-1").epoch(2).at_lsn(1000, 1000).detached()),
            up(replica("pg-2").epoch(1).at_lsn(1000, 1000)),
        ]);
        assert!(
            !out.commands
                .iter()
                .any(|command| matches!(command, Command::Promote { .. })),
            "promoted while the old primary's ANY 1 could still commit with pg-2: {:?}",
            out.commands
        );
        assert_eq!(sim.ha.state().phase, Phase::Fencing);
    }
    sim.detached("pg-2", 2, 1000, 1000);
    let out = sim.step();
    assert!(
        out.commands
            .iter()
            .any(|command| matches!(command, Command::Promote { .. })),
        "both detached: ANY 1 is out of reach: {:?}",
        out.commands
    );
}

/// The target answers as a primary out of recovery at the new epoch, but took office at an
/// older one (its promotion failed after postgres came up): it is not taken as promoted and
/// never routed to (its `/primary` would never answer at the new epoch); the engine deals with
/// it as with any primary it did not promote.
#[test]
fn a_primary_that_has_not_taken_office_at_the_new_epoch_is_not_taken_as_promoted() {
    let mut sim = Sim::healthy(SYNC);
    fail_over_to_pg1(&mut sim);
    // While the promotion is in flight, postgres is up out of recovery; then the command fails.
    for round in 0..20 {
        if round == 3 {
            sim.done(
                &promote("pg-1", 2),
                Err(CommandError::Failed(
                    "postgres query `pg_is_in_recovery`: pool timed out".into(),
                )),
            );
        }
        let out = sim.round(vec![
            down("pg-0"),
            up(primary("pg-1")
                .epoch(2)
                .in_office_at(1)
                .lsn(1000)
                .quorum(&["pg-2"])),
            up(replica("pg-2").epoch(2).at_lsn(995, 995)),
        ]);
        assert!(
            !out.commands
                .iter()
                .any(|command| matches!(command, Command::Route { .. })),
            "routed to a primary that had not taken office at epoch 2: {:?}",
            out.commands
        );
        sim.advance(250);
    }
    assert!(
        !sim.reasons().iter().any(|reason| reason == "Promoted"),
        "recorded as promoted: {:?}",
        sim.reasons()
    );
    assert_ne!(sim.ha.state().phase, Phase::Routing);
}
