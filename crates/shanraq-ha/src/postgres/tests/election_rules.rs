//! Election rules as a table: quorum in synchronous mode, the lag limit in async mode.

use super::fixtures::*;
use crate::events::Lifecycle;
use crate::postgres::{Candidate, ElectionRules, NodeId, ReplicationMode, elect};
use crate::wire::Lsn;

struct Case {
    name: &'static str,
    replication: ReplicationMode,
    sync_set: &'static [&'static str],
    primary_lsn: Option<u64>,
    /// Reachable replicas: (name, received, replayed).
    replicas: &'static [(&'static str, u64, u64)],
    expect: Result<&'static str, &'static str>,
}

#[test]
fn election_table() {
    let any1 = ReplicationMode::Synchronous { number: 1 };
    let any2 = ReplicationMode::Synchronous { number: 2 };
    let cases = [
        Case {
            name: "highest received wins",
            replication: any1,
            sync_set: &["pg-1", "pg-2"],
            primary_lsn: Some(100),
            replicas: &[("pg-1", 90, 80), ("pg-2", 100, 50)],
            expect: Ok("pg-2"),
        },
        Case {
            name: "tie broken by replayed",
            replication: any1,
            sync_set: &["pg-1", "pg-2"],
            primary_lsn: Some(100),
            replicas: &[("pg-1", 100, 99), ("pg-2", 100, 90)],
            expect: Ok("pg-1"),
        },
        Case {
            name: "full tie broken by name",
            replication: any1,
            sync_set: &["pg-1", "pg-2"],
            primary_lsn: Some(100),
            replicas: &[("pg-2", 100, 100), ("pg-1", 100, 100)],
            expect: Ok("pg-1"),
        },
        Case {
            name: "ANY 1 of 2 needs both",
            replication: any1,
            sync_set: &["pg-1", "pg-2"],
            primary_lsn: Some(100),
            replicas: &[("pg-1", 100, 100)],
            expect: Err("only 1 of the synchronous set [pg-1, pg-2] reachable"),
        },
        Case {
            name: "ANY 2 of 2 needs one",
            replication: any2,
            sync_set: &["pg-1", "pg-2"],
            primary_lsn: Some(100),
            replicas: &[("pg-2", 100, 100)],
            expect: Ok("pg-2"),
        },
        Case {
            name: "ANY 1 of 1",
            replication: any1,
            sync_set: &["pg-1"],
            primary_lsn: Some(100),
            replicas: &[("pg-1", 100, 100), ("pg-2", 200, 200)],
            expect: Ok("pg-1"),
        },
        Case {
            name: "non-sync replica never wins",
            replication: any1,
            sync_set: &["pg-1"],
            primary_lsn: Some(100),
            replicas: &[("pg-2", 200, 200)],
            expect: Err("needs 1"),
        },
        Case {
            name: "unknown sync set",
            replication: any1,
            sync_set: &[],
            primary_lsn: Some(100),
            replicas: &[("pg-1", 100, 100)],
            expect: Err("no synchronous standby"),
        },
        Case {
            name: "nobody reachable",
            replication: any1,
            sync_set: &["pg-1"],
            primary_lsn: Some(100),
            replicas: &[],
            expect: Err("no replica is reachable"),
        },
        Case {
            name: "async within limit",
            replication: ReplicationMode::Asynchronous,
            sync_set: &[],
            primary_lsn: Some(5000),
            replicas: &[("pg-1", 4000, 4000), ("pg-2", 4500, 4000)],
            expect: Ok("pg-2"),
        },
        Case {
            name: "async at the limit",
            replication: ReplicationMode::Asynchronous,
            sync_set: &[],
            primary_lsn: Some(5000),
            replicas: &[("pg-1", 4000, 4000)],
            expect: Ok("pg-1"),
        },
        Case {
            name: "async beyond the limit",
            replication: ReplicationMode::Asynchronous,
            sync_set: &[],
            primary_lsn: Some(5000),
            replicas: &[("pg-1", 3999, 3999)],
            expect: Err("1001 bytes behind"),
        },
        Case {
            name: "async unknown primary lsn",
            replication: ReplicationMode::Asynchronous,
            sync_set: &[],
            primary_lsn: None,
            replicas: &[("pg-1", 3999, 3999)],
            expect: Err("cannot be bounded"),
        },
    ];
    for case in cases {
        let reports: Vec<(NodeId, crate::wire::InstanceStatus)> = case
            .replicas
            .iter()
            .map(|(name, received, replayed)| {
                (
                    node(name),
                    replica(name).epoch(1).at_lsn(*received, *replayed).0,
                )
            })
            .collect();
        let candidates: Vec<Candidate<'_>> = reports
            .iter()
            .map(|(node, status)| Candidate { node, status })
            .collect();
        let sync_set: Vec<NodeId> = case.sync_set.iter().map(|name| node(name)).collect();
        let rules = ElectionRules {
            replication: case.replication,
            maximum_lag_on_failover: 1000,
            sync_set: &sync_set,
            primary_lsn: case.primary_lsn.map(Lsn),
            fallen_back: false,
        };
        match (elect(&rules, &candidates), case.expect) {
            (Ok(elected), Ok(winner)) => {
                assert_eq!(elected.node.as_str(), winner, "case {}", case.name)
            }
            (Err(reason), Err(fragment)) => {
                assert!(reason.contains(fragment), "case {}: {reason}", case.name)
            }
            (got, want) => panic!("case {}: got {got:?}, want {want:?}", case.name),
        }
    }
}

/// An async cluster whose primary pg-0 (at 10 000) stops answering; the replicas report the
/// given received LSNs and are detached.
fn async_failover(pg1: u64, pg2: u64) -> Sim {
    let mut sim = Sim::healthy(ASYNC);
    let healthy = vec![
        up(primary("pg-0")
            .epoch(1)
            .lsn(10_000)
            .async_peers(&["pg-1", "pg-2"])),
        up(replica("pg-1").epoch(1).at_lsn(pg1, pg1)),
        up(replica("pg-2").epoch(1).at_lsn(pg2, pg2)),
    ];
    sim.round(healthy);
    let failing = vec![
        down("pg-0"),
        up(replica("pg-1").epoch(1).at_lsn(pg1, pg1)),
        up(replica("pg-2").epoch(1).at_lsn(pg2, pg2)),
    ];
    for _ in 0..3 {
        sim.round(failing.clone());
    }
    assert_eq!(sim.ha.state().epoch, 2, "the failover started");
    sim.detached("pg-1", 2, pg1, pg1);
    sim.detached("pg-2", 2, pg2, pg2);
    sim
}

#[test]
fn async_failover_waits_for_the_old_primary_lease_to_run_out() {
    let mut sim = async_failover(9_990, 5_000);
    let detached = |sim: &mut Sim| {
        sim.round(vec![
            down("pg-0"),
            up(replica("pg-1").epoch(2).at_lsn(9_990, 9_990).detached()),
            up(replica("pg-2").epoch(2).at_lsn(5_000, 5_000).detached()),
        ])
    };
    // lease 1.5 s + reply slack 2 s + one probe period: nobody promoted before.
    for _ in 0..30 {
        let out = detached(&mut sim);
        assert!(
            !out.commands.contains(&promote("pg-1", 2)),
            "promoted while the old primary may still hold its lease"
        );
    }
    let blocked = sim.events.iter().any(|event| {
        matches!(&event.kind, crate::postgres::EventKind::Lifecycle(Lifecycle::FencingBlocked { reason }) if reason.contains("lease"))
    });
    assert!(blocked, "the wait is explained: {:?}", sim.reasons());
    let mut promoted = false;
    for _ in 0..10 {
        promoted |= detached(&mut sim).commands.contains(&promote("pg-1", 2));
    }
    assert!(
        promoted,
        "promoted once the lease ran out: {:?}",
        sim.reasons()
    );
    assert_eq!(
        sim.ha.state().in_flight.as_ref().and_then(|r| r.lost_bytes),
        Some(10)
    );
}

#[test]
fn lagging_replica_in_async_mode_is_never_promoted_and_the_lag_is_reported() {
    let mut sim = async_failover(5_000, 4_000);
    for _ in 0..60 {
        sim.round(vec![
            down("pg-0"),
            up(replica("pg-1").epoch(2).at_lsn(5_000, 5_000).detached()),
            up(replica("pg-2").epoch(2).at_lsn(4_000, 4_000).detached()),
        ]);
    }
    assert!(
        !sim.commands
            .iter()
            .any(|c| matches!(c, crate::postgres::Command::Promote { .. })),
        "never beyond maximumLagOnFailover"
    );
    let refusals = sim.refusals();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(refusals[0].contains("5000 bytes behind"), "{}", refusals[0]);
    let record = sim.ha.state().in_flight.clone().expect("in flight");
    assert!(
        record.refusal.is_some(),
        "the refusal is in the persisted state for RPOMet"
    );
}

#[test]
fn quorum_not_reachable_refuses_then_the_returning_old_primary_is_taken_back() {
    let mut sim = Sim::healthy(SYNC);
    for _ in 0..5 {
        sim.round(vec![
            down("pg-0"),
            up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
            down("pg-2"),
        ]);
    }
    assert!(
        !sim.commands
            .iter()
            .any(|c| matches!(c, crate::postgres::Command::Promote { .. }))
    );
    for _ in 0..10 {
        sim.round(vec![
            down("pg-0"),
            up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
            down("pg-2"),
        ]);
    }
    sim.detached("pg-1", 2, 1000, 1000);
    sim.round(vec![
        down("pg-0"),
        up(replica("pg-1").epoch(2).at_lsn(1000, 1000).detached()),
        down("pg-2"),
    ]);
    assert!(
        !sim.commands
            .iter()
            .any(|c| matches!(c, crate::postgres::Command::Promote { .. })),
        "pg-2 may still acknowledge the old primary's commits"
    );
    let blocked = sim.events.iter().any(|event| {
        matches!(&event.kind, crate::postgres::EventKind::Lifecycle(Lifecycle::FencingBlocked { reason })
            if reason.contains("only 1 of its synchronous set"))
    });
    assert!(blocked, "{:?}", sim.reasons());
    sim.done(
        &crate::postgres::Command::Fence {
            node: node("pg-0"),
            epoch: 2,
        },
        Err(crate::postgres::CommandError::Failed("refused".into())),
    );
    sim.advance(100); // a failed target is retried one probe period later
    // The old primary restarts (fenced, it never promotes itself): it has every commit.
    let out = sim.round(vec![
        up(fenced("pg-0").epoch(1)),
        up(replica("pg-1").epoch(2).at_lsn(1000, 1000).detached()),
        down("pg-2"),
    ]);
    assert!(
        out.commands.contains(&promote("pg-0", 2)),
        "{:?}",
        out.commands
    );
}
