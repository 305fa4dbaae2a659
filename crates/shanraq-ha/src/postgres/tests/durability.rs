//! `dataDurability: preferred`: the engine lowers the primary's synchronous setting only after
//! a detection period of missing standbys, only on a report of the primary itself, and only
//! after the fallback is in the state it persists; it restores `ANY number` once standbys are
//! back. A failover while fallen back waits out the old primary's lease and records that
//! commits may be lost; a failover while not fallen back is the synchronous one.

use super::fixtures::*;
use crate::postgres::{Command, Millis, Phase, PostgresHa, lowered_standby_names};

/// pg-0 answers as the primary with nobody streaming; pg-1 and pg-2 do not answer.
fn alone(lsn: u64) -> Vec<Probe> {
    vec![
        up(primary("pg-0").epoch(1).lsn(lsn)),
        down("pg-1"),
        down("pg-2"),
    ]
}

fn synchronous_commands(commands: &[Command]) -> Vec<Command> {
    commands
        .iter()
        .filter(|command| matches!(command, Command::Synchronous { .. }))
        .cloned()
        .collect()
}

/// A preferred cluster whose standbys stopped: the fallback to `''`, after the detection
/// period (probe period 100 ms x threshold 3), with its command answered. Returns when the
/// fallback was decided.
fn fallen_back(number: u32) -> (Sim, Millis) {
    let mut sim = Sim::healthy_with(preferred(number));
    for _ in 0..3 {
        let out = sim.round(alone(1100));
        assert!(
            synchronous_commands(&out.commands).is_empty(),
            "a shortfall shorter than the detection period changes nothing"
        );
        assert!(sim.ha.state().detail.fallback.is_none());
    }
    let decided = sim.now;
    let out = sim.round(alone(1100));
    let lower = synchronous("pg-0", Some(""), 1);
    assert_eq!(synchronous_commands(&out.commands), vec![lower.clone()]);
    let fallback = sim
        .ha
        .state()
        .detail
        .fallback
        .clone()
        .expect("the fallback is in the state the driver persists before the command");
    assert_eq!(fallback.since, decided);
    assert_eq!(fallback.standby_names, "");
    assert_eq!(fallback.missing, vec![node("pg-1"), node("pg-2")]);
    assert!(sim.saw("SynchronousFallback"));
    sim.done(&lower, Ok(()));
    sim.round(vec![
        up(primary("pg-0").epoch(1).lsn(1200).standby_names("")),
        down("pg-1"),
        down("pg-2"),
    ]);
    (sim, decided)
}

#[test]
fn preferred_falls_back_after_the_detection_period_with_the_mark_persisted_first() {
    let (mut sim, _) = fallen_back(1);
    // Persisted: an engine restarted from the stored state still knows.
    sim.restart();
    assert!(sim.ha.fallback().is_some());
    // Nothing more while the lowered setting is in effect.
    let out = sim.round(vec![
        up(primary("pg-0").epoch(1).lsn(1300).standby_names("")),
        down("pg-1"),
        down("pg-2"),
    ]);
    assert!(synchronous_commands(&out.commands).is_empty());
}

#[test]
fn a_short_shortfall_changes_nothing() {
    let mut sim = Sim::healthy_with(preferred(1));
    sim.round(alone(1100));
    sim.round(alone(1100));
    sim.round(healthy_round(1, 1200));
    sim.round(alone(1300));
    sim.round(alone(1300));
    assert!(synchronous_commands(&sim.commands).is_empty());
    assert!(sim.ha.fallback().is_none());
}

#[test]
fn required_never_lowers_the_primary() {
    let mut sim = Sim::healthy(SYNC);
    for _ in 0..20 {
        sim.round(alone(1100));
    }
    assert!(synchronous_commands(&sim.commands).is_empty());
    assert!(sim.ha.fallback().is_none());
}

#[test]
fn the_lowered_setting_waits_for_the_standbys_that_stream() {
    assert_eq!(lowered_standby_names(&[]), "");
    assert_eq!(
        lowered_standby_names(&[node("pg-1"), node("pg-2")]),
        "ANY 2 (\"pg-1\", \"pg-2\")"
    );
    // ANY 2 over three standbys, one left: lowered to that one.
    let mut sim = Sim::healthy_with(preferred(2));
    let one_left = || {
        vec![
            up(primary("pg-0")
                .epoch(1)
                .lsn(1100)
                .standby_names("ANY 2 (*)")
                .quorum(&["pg-1"])),
            up(replica("pg-1").epoch(1).at_lsn(1100, 1100)),
            down("pg-2"),
        ]
    };
    for _ in 0..3 {
        assert!(synchronous_commands(&sim.round(one_left()).commands).is_empty());
    }
    let out = sim.round(one_left());
    assert_eq!(
        synchronous_commands(&out.commands),
        vec![synchronous("pg-0", Some("ANY 1 (\"pg-1\")"), 1)]
    );
    assert_eq!(
        sim.ha.fallback().map(|f| f.missing.clone()),
        Some(vec![node("pg-2")])
    );
}

#[test]
fn standbys_back_restore_any_number_and_the_mark_clears_once_they_have_every_commit() {
    let (mut sim, _) = fallen_back(1);
    let out = sim.round(vec![
        up(primary("pg-0")
            .epoch(1)
            .lsn(1300)
            .standby_names("")
            .async_peers(&["pg-1", "pg-2"])),
        up(replica("pg-1").epoch(1).at_lsn(1300, 1300)),
        up(replica("pg-2").epoch(1).at_lsn(1300, 1300)),
    ]);
    let restore = synchronous("pg-0", None, 1);
    assert_eq!(synchronous_commands(&out.commands), vec![restore.clone()]);
    assert!(
        sim.ha.fallback().is_some_and(|f| f.restoring),
        "the mark stays until the primary shows its quorum"
    );
    sim.done(&restore, Ok(()));
    // In effect, but the standbys have not flushed what was committed before it.
    sim.round(vec![
        up(primary("pg-0")
            .epoch(1)
            .lsn(1400)
            .standby_names("ANY 1 (*)")
            .quorum_at(&["pg-1", "pg-2"], 1390)),
        up(replica("pg-1").epoch(1).at_lsn(1390, 1390)),
        up(replica("pg-2").epoch(1).at_lsn(1390, 1390)),
    ]);
    assert!(sim.ha.fallback().is_some(), "{:?}", sim.ha.fallback());
    assert!(!sim.saw("SynchronousRestored"));
    let out = sim.round(vec![
        up(primary("pg-0")
            .epoch(1)
            .lsn(1450)
            .standby_names("ANY 1 (*)")
            .quorum_at(&["pg-1", "pg-2"], 1400)),
        up(replica("pg-1").epoch(1).at_lsn(1400, 1400)),
        up(replica("pg-2").epoch(1).at_lsn(1400, 1400)),
    ]);
    assert!(synchronous_commands(&out.commands).is_empty());
    assert!(sim.ha.fallback().is_none());
    assert!(sim.saw("SynchronousRestored"));
    assert_eq!(
        sim.ha.state().detail.sync_set,
        vec![node("pg-1"), node("pg-2")]
    );
}

#[test]
fn switching_to_required_while_fallen_back_restores_any_number_even_without_standbys() {
    let (sim, _) = fallen_back(1);
    let state = sim.ha.state().clone();
    // The spec changed: the task restarts with `required` from the persisted state.
    let mut sim = Sim {
        ha: PostgresHa::new(config(SYNC), members(), state),
        ..sim
    };
    let mark = sim.commands.len();
    let out = sim.round(vec![
        up(primary("pg-0").epoch(1).lsn(1300).standby_names("")),
        down("pg-1"),
        down("pg-2"),
    ]);
    let restore = synchronous("pg-0", None, 1);
    assert_eq!(synchronous_commands(&out.commands), vec![restore.clone()]);
    sim.done(&restore, Ok(()));
    for _ in 0..10 {
        sim.round(vec![
            up(primary("pg-0")
                .epoch(1)
                .lsn(1300)
                .standby_names("ANY 1 (*)")),
            down("pg-1"),
            down("pg-2"),
        ]);
    }
    assert!(
        sim.ha.fallback().is_some(),
        "without a quorum that has the fallback's commits, a failover must still wait the lease"
    );
    assert!(
        synchronous_commands(&sim.commands[mark..])
            .iter()
            .all(|command| command == &restore),
        "required never lowers: {:?}",
        sim.commands
    );
}

#[test]
fn a_failover_while_fallen_back_waits_out_the_lease_and_records_possible_loss() {
    let (mut sim, decided) = fallen_back(1);
    let failing = || {
        vec![
            down("pg-0"),
            up(replica("pg-1").epoch(1).at_lsn(900, 900).not_streaming()),
            up(replica("pg-2").epoch(1).at_lsn(950, 950).not_streaming()),
        ]
    };
    sim.round(failing());
    sim.round(failing());
    let out = sim.round(failing());
    assert_eq!(
        out.commands,
        vec![fence("pg-0", 2), detach("pg-1", 2), detach("pg-2", 2)]
    );
    let record = sim
        .ha
        .state()
        .in_flight
        .clone()
        .expect("failover in flight");
    assert_eq!(record.detail.fallback_since, Some(decided));
    sim.detached("pg-1", 2, 900, 900);
    // pg-2 answers but is not detached yet: the lease alone proves nothing while a replica may
    // still stream from the old primary.
    sim.advance(4000);
    let out = sim.round(vec![
        down("pg-0"),
        up(replica("pg-1").epoch(2).at_lsn(900, 900).detached()),
        up(replica("pg-2").epoch(1).at_lsn(950, 950)),
    ]);
    assert!(
        !out.commands
            .iter()
            .any(|command| matches!(command, Command::Promote { .. })),
        "promoted with pg-2 still attached: {:?}",
        out.commands
    );
    sim.detached("pg-2", 2, 950, 950);
    let detached_at = sim.now;
    // Every standby detached, which under ANY 1 would prove the old primary stuck: not here.
    for _ in 0..30 {
        let out = sim.round(vec![
            down("pg-0"),
            up(replica("pg-1").epoch(2).at_lsn(900, 900).detached()),
            up(replica("pg-2").epoch(2).at_lsn(950, 950).detached()),
        ]);
        assert!(
            !out.commands
                .iter()
                .any(|command| matches!(command, Command::Promote { .. })),
            "promoted {} ms after the detach, before the lease ran out",
            sim.now.since(detached_at)
        );
        assert_eq!(sim.ha.state().phase, Phase::Fencing);
    }
    // lease 1500 ms + reply slack 2000 ms + one probe period
    sim.advance(3600 - sim.now.since(detached_at));
    let out = sim.round(vec![
        down("pg-0"),
        up(replica("pg-1").epoch(2).at_lsn(900, 900).detached()),
        up(replica("pg-2").epoch(2).at_lsn(950, 950).detached()),
    ]);
    assert_eq!(
        out.commands,
        vec![promote("pg-2", 2), repoint("pg-1", "pg-2", 2)],
        "the most advanced replica"
    );
    sim.done(&promote("pg-2", 2), Ok(()));
    let out = sim.step();
    assert_eq!(out.commands, vec![route("pg-2", 2)]);
    sim.done(&route("pg-2", 2), Ok(()));
    sim.step();
    let record = sim
        .ha
        .state()
        .last_failover
        .clone()
        .expect("the failover is recorded");
    assert_eq!(record.to, Some(node("pg-2")));
    assert_eq!(
        record.lost_bytes, None,
        "the old primary may have committed past its last report: the loss is not known"
    );
    assert_eq!(record.detail.fallback_since, Some(decided));
}

#[test]
fn a_failover_while_not_fallen_back_is_the_synchronous_one() {
    let mut sim = Sim::healthy_with(preferred(1));
    let failing = || {
        vec![
            down("pg-0"),
            up(replica("pg-1").epoch(1).at_lsn(1000, 990)),
            up(replica("pg-2").epoch(1).at_lsn(995, 995)),
        ]
    };
    for _ in 0..3 {
        sim.round(failing());
    }
    assert_eq!(
        sim.ha
            .state()
            .in_flight
            .as_ref()
            .map(|r| r.detail.fallback_since),
        Some(None)
    );
    sim.detached("pg-1", 2, 1000, 990);
    sim.detached("pg-2", 2, 995, 995);
    assert_eq!(
        sim.step().commands,
        vec![promote("pg-1", 2), repoint("pg-2", "pg-1", 2)],
        "the detached synchronous set proves the old primary stuck: no lease wait"
    );
    sim.done(&promote("pg-1", 2), Ok(()));
    sim.step();
    sim.done(&route("pg-1", 2), Ok(()));
    sim.step();
    let record = sim.ha.state().last_failover.clone().expect("recorded");
    assert_eq!(record.lost_bytes, Some(0));
    assert_eq!(record.detail.fallback_since, None);
}

#[test]
fn a_primary_the_engine_cannot_reach_is_never_lowered() {
    let mut sim = Sim::healthy_with(preferred(1));
    // The primary reported its standbys gone, then the engine lost it (a partition: the
    // standbys, cut off from it, look exactly like stopped ones).
    sim.round(alone(1100));
    let partitioned = || {
        vec![
            down("pg-0"),
            up(replica("pg-1").epoch(1).at_lsn(1000, 1000).not_streaming()),
            up(replica("pg-2").epoch(1).at_lsn(1000, 1000).not_streaming()),
        ]
    };
    for _ in 0..3 {
        sim.round(partitioned());
    }
    assert_eq!(sim.ha.state().phase, Phase::Fencing);
    assert!(sim.ha.fallback().is_none());
    assert_eq!(
        sim.ha
            .state()
            .in_flight
            .as_ref()
            .map(|r| r.detail.fallback_since),
        Some(None),
        "the failover counts on the synchronous set"
    );
    for _ in 0..20 {
        sim.round(partitioned());
    }
    assert!(
        synchronous_commands(&sim.commands).is_empty(),
        "{:?}",
        sim.commands
    );
}

#[test]
fn a_lowered_primary_without_the_mark_is_marked_then_restored() {
    let mut sim = Sim::healthy_with(preferred(1));
    // A late command of an earlier incarnation of the engine lowered the primary after the
    // mark was cleared.
    sim.round(vec![
        up(primary("pg-0")
            .epoch(1)
            .lsn(1100)
            .standby_names("")
            .async_peers(&["pg-1", "pg-2"])),
        up(replica("pg-1").epoch(1).at_lsn(1100, 1100)),
        up(replica("pg-2").epoch(1).at_lsn(1100, 1100)),
    ]);
    assert!(
        sim.ha.fallback().is_some(),
        "a failover from here waits out the lease"
    );
    let out = sim.round(vec![
        up(primary("pg-0")
            .epoch(1)
            .lsn(1100)
            .standby_names("")
            .async_peers(&["pg-1", "pg-2"])),
        up(replica("pg-1").epoch(1).at_lsn(1100, 1100)),
        up(replica("pg-2").epoch(1).at_lsn(1100, 1100)),
    ]);
    assert_eq!(
        synchronous_commands(&out.commands),
        vec![synchronous("pg-0", None, 1)]
    );
}

#[test]
fn a_new_primary_short_of_standbys_is_lowered_before_it_can_be_routed() {
    let (mut sim, _) = fallen_back(1);
    let failing = || {
        vec![
            down("pg-0"),
            up(replica("pg-1").epoch(1).at_lsn(900, 900).not_streaming()),
            down("pg-2"),
        ]
    };
    for _ in 0..3 {
        sim.round(failing());
    }
    sim.detached("pg-1", 2, 900, 900);
    sim.advance(3600);
    let out = sim.round(vec![
        down("pg-0"),
        up(replica("pg-1").epoch(2).at_lsn(900, 900).detached()),
        down("pg-2"),
    ]);
    assert_eq!(out.commands, vec![promote("pg-1", 2)]);
    sim.done(&promote("pg-1", 2), Ok(()));
    // Promoted with its configured ANY 1 and nobody to stream: it cannot commit, so routing
    // cannot be confirmed, until the engine lowers it in turn.
    let promoted_alone = || {
        vec![
            down("pg-0"),
            up(primary("pg-1")
                .epoch(2)
                .lsn(1000)
                .standby_names("ANY 1 (*)")),
            down("pg-2"),
        ]
    };
    let lower = synchronous("pg-1", Some(""), 2);
    let mut lowered = false;
    for _ in 0..10 {
        let out = sim.round(promoted_alone());
        assert_eq!(sim.ha.state().phase, Phase::Routing);
        if synchronous_commands(&out.commands) == vec![lower.clone()] {
            lowered = true;
            break;
        }
    }
    assert!(lowered, "{:?}", sim.commands);
    assert_eq!(
        sim.ha.fallback().map(|f| f.primary.clone()),
        Some(node("pg-1"))
    );
    sim.done(&lower, Ok(()));
    sim.done(&route("pg-1", 2), Ok(()));
    sim.step();
    assert_eq!(sim.ha.state().phase, Phase::Healthy);
}
