//! A partitioned primary that comes back still claiming the role must be fenced at once and
//! never routed (CloudNativePG #7407); a fenced instance is promoted again only when it is the
//! current primary of the current epoch with no failover in flight.

use super::fixtures::*;
use crate::postgres::{Command, CommandError, EventKind, HaState, Phase};

fn failed_over_to_pg1() -> Sim {
    let mut sim = Sim::healthy(SYNC);
    let failing = vec![
        down("pg-0"),
        up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
        up(replica("pg-2").epoch(1).at_lsn(990, 990)),
    ];
    for _ in 0..3 {
        sim.round(failing.clone());
    }
    sim.detached("pg-1", 2, 1000, 1000);
    sim.detached("pg-2", 2, 990, 990);
    sim.step();
    sim.advance(1);
    sim.done(&repoint("pg-2", "pg-1", 2), Ok(()));
    sim.done(
        &fence("pg-0", 2),
        Err(CommandError::Failed("timed out".into())),
    );
    sim.advance(100); // a failed target is retried one probe period later
    sim.done(&promote("pg-1", 2), Ok(()));
    sim.step();
    sim.done(&route("pg-1", 2), Ok(()));
    assert_eq!(sim.ha.state().phase, Phase::Healthy);
    sim
}

#[test]
fn partitioned_primary_coming_back_as_primary_is_fenced_not_routed_then_demoted() {
    let mut sim = failed_over_to_pg1();
    let out = sim.round(vec![
        up(primary("pg-0").epoch(1).lsn(1050)),
        up(primary("pg-1").epoch(2).lsn(1100).quorum(&["pg-2"])),
        up(replica("pg-2").epoch(2).at_lsn(1100, 1100)),
    ]);
    assert_eq!(
        out.commands,
        vec![fence("pg-0", 2)],
        "the stale primary is fenced at once"
    );
    assert!(out.events.iter().any(|e| matches!(&e.kind, EventKind::StalePrimaryFenced { node, instance_epoch: 1 } if node.as_str() == "pg-0")));
    // Until the fence lands it keeps claiming the role: one fence, one event, never a route.
    let out = sim.round(vec![
        up(primary("pg-0").epoch(1).lsn(1050)),
        up(primary("pg-1").epoch(2).lsn(1100).quorum(&["pg-2"])),
    ]);
    assert!(out.commands.is_empty(), "{:?}", out.commands);
    assert!(out.events.is_empty());
    sim.done(&fence("pg-0", 2), Ok(()));
    let out = sim.round(vec![
        up(fenced("pg-0").epoch(2)),
        up(primary("pg-1").epoch(2).lsn(1100).quorum(&["pg-2"])),
    ]);
    assert_eq!(out.commands, vec![demote("pg-0", "pg-1", 2)]);
    assert!(
        !sim.commands.iter().any(
            |c| matches!(c, Command::Route { primary, epoch: 2 } if primary.as_str() == "pg-0")
        )
    );
    assert!(
        !sim.commands
            .iter()
            .any(|c| matches!(c, Command::Promote { node, .. } if node.as_str() == "pg-0"))
    );
}

#[test]
fn a_second_primary_during_the_failover_is_fenced_even_mid_election() {
    let mut sim = Sim::healthy(ASYNC);
    sim.round(vec![
        up(primary("pg-0").epoch(1).lsn(5000)),
        up(replica("pg-1").epoch(1).at_lsn(5000, 5000)),
        up(replica("pg-2").epoch(1).at_lsn(10, 10)),
    ]);
    // Async mode and pg-2 far behind: the election refuses, and meanwhile pg-2 claims primary
    // (promoted by hand, say). It is fenced, not adopted.
    let failing = vec![
        down("pg-0"),
        down("pg-1"),
        up(replica("pg-2").epoch(1).at_lsn(10, 10)),
    ];
    for _ in 0..3 {
        sim.round(failing.clone());
    }
    assert_eq!(
        sim.ha.state().phase,
        Phase::Fencing,
        "pg-1 cannot be detached, so the old primary is not shown unable to commit"
    );
    sim.done(
        &detach("pg-2", 2),
        Err(CommandError::Failed("timed out".into())),
    );
    sim.advance(100);
    let out = sim.round(vec![
        down("pg-0"),
        down("pg-1"),
        up(primary("pg-2").epoch(1).lsn(10)),
    ]);
    assert_eq!(out.commands, vec![fence("pg-2", 2)]);
}

#[test]
fn fenced_instance_is_promoted_only_when_it_is_the_current_primary() {
    struct Case {
        name: &'static str,
        state: HaState,
        fenced_node: &'static str,
        expected: Vec<Command>,
    }
    let mut in_failover = HaState {
        phase: Phase::Promoting,
        ..HaState::with_primary(node("pg-0"), 2)
    };
    in_failover.target_primary = Some(node("pg-1"));
    in_failover.in_flight = Some(crate::postgres::FailoverRecord {
        kind: crate::postgres::FailoverKind::Failover,
        epoch: 2,
        from: node("pg-0"),
        to: Some(node("pg-1")),
        detected_at: crate::postgres::Millis(0),
        started_at: crate::postgres::Millis(0),
        fenced_at: None,
        promoted_at: None,
        routed_at: None,
        rto_ms: None,
        lost_bytes: None,
        detached: vec![node("pg-1"), node("pg-2")],
        refusal: None,
        aborted: None,
        detail: crate::postgres::RecordDetail {
            fence_error: Some("unreachable".into()),
            quorum_fenced_at: Some(crate::postgres::Millis(0)),
            ..crate::postgres::RecordDetail::default()
        },
    });
    let cases = vec![
        Case {
            name: "current primary restarted fenced",
            state: HaState::with_primary(node("pg-0"), 1),
            fenced_node: "pg-0",
            expected: vec![promote("pg-0", 1)],
        },
        Case {
            name: "former primary restarted fenced",
            state: HaState::with_primary(node("pg-1"), 2),
            fenced_node: "pg-0",
            expected: vec![route("pg-1", 2), demote("pg-0", "pg-1", 2)],
        },
        Case {
            name: "failover in progress",
            state: in_failover,
            fenced_node: "pg-0",
            expected: vec![promote("pg-1", 2)],
        },
    ];
    for case in cases {
        let mut sim = Sim::new(config(SYNC), case.state.clone());
        let epoch = case.state.epoch;
        let primary_name = case
            .state
            .current_primary
            .clone()
            .map(|n| n.0)
            .unwrap_or_default();
        let mut probes = vec![up(fenced(case.fenced_node).epoch(epoch.saturating_sub(1)))];
        if primary_name != case.fenced_node {
            probes.push(up(primary(&primary_name).epoch(epoch).lsn(100)));
        }
        let out = sim.round(probes);
        let mut got = out.commands.clone();
        got.retain(|c| !matches!(c, Command::Repoint { .. }));
        assert_eq!(got, case.expected, "case {}", case.name);
    }
}

#[test]
fn a_standby_that_streamed_past_the_fork_is_rewound_once_it_cannot_follow() {
    let mut sim = failed_over_to_pg1();
    let round = |sim: &mut Sim, pg2_timeline: u32| {
        sim.round(vec![
            down("pg-0"),
            up(primary("pg-1")
                .epoch(2)
                .lsn(1100)
                .timeline(2)
                .quorum(&["pg-2"])),
            up(replica("pg-2")
                .epoch(2)
                .at_lsn(1300, 1300)
                .timeline(pg2_timeline)
                .not_streaming()),
        ])
    };
    // Within the grace a replica may just be reconnecting: left alone.
    for _ in 0..40 {
        let out = round(&mut sim, 1);
        assert!(out.commands.is_empty(), "{:?}", out.commands);
    }
    let mut rewound = false;
    for _ in 0..20 {
        rewound |= round(&mut sim, 1)
            .commands
            .contains(&demote("pg-2", "pg-1", 2));
    }
    assert!(rewound, "rewound after the grace: {:?}", sim.reasons());
    assert!(sim.saw("Diverged"));

    // On the primary's timeline, a replica that does not stream is not rewound: it is cut off,
    // not diverged.
    let mut sim = failed_over_to_pg1();
    for _ in 0..100 {
        let out = round(&mut sim, 2);
        assert!(
            !out.commands
                .iter()
                .any(|c| matches!(c, Command::Demote { .. })),
            "{:?}",
            out.commands
        );
    }
}

#[test]
fn only_the_primary_the_engine_stands_behind_holds_the_lease() {
    let mut sim = Sim::healthy(SYNC);
    assert_eq!(
        sim.ha
            .lease_holder()
            .map(|(node, epoch)| (node.as_str(), epoch)),
        Some(("pg-0", 1))
    );
    let failing = vec![
        down("pg-0"),
        up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
        up(replica("pg-2").epoch(1).at_lsn(990, 990)),
    ];
    for _ in 0..3 {
        sim.round(failing.clone());
    }
    assert_eq!(
        sim.ha.lease_holder(),
        None,
        "from the epoch bump on, the old primary's lease runs out"
    );
    let mut sim = failed_over_to_pg1();
    assert_eq!(
        sim.ha
            .lease_holder()
            .map(|(node, epoch)| (node.as_str(), epoch)),
        Some(("pg-1", 2))
    );
    sim.round(vec![]);
}
