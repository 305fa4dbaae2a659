//! Planned switchover: the old primary stops before anyone is promoted, the target replays the
//! old primary's final LSN first (CloudNativePG #11114, #11293), the right replica is chosen
//! (#4284), and a stuck switchover resumes the old primary instead of leaving none.

use super::fixtures::*;
use crate::events::Lifecycle;
use crate::postgres::{Command, EventKind, FailoverKind, Phase, SwitchoverError};

#[test]
fn switchover_promotes_only_after_the_old_primary_stopped_and_the_target_replayed_its_final_lsn() {
    let mut sim = Sim::healthy(SYNC);
    let target = sim
        .ha
        .request_switchover(Some(node("pg-2")), sim.now)
        .expect("switchover accepted");
    assert_eq!(target, node("pg-2"));
    assert_eq!(sim.ha.state().epoch, 2);
    let out = sim.round(healthy_round(1, 1000));
    assert_eq!(
        out.commands,
        vec![fence("pg-0", 2)],
        "switchover starts by stopping the old primary"
    );

    // The old primary has not stopped yet: the target is not promoted, however advanced.
    let out = sim.round(vec![
        up(primary("pg-0").epoch(1).lsn(1010)),
        up(replica("pg-2").epoch(1).at_lsn(1010, 1010)),
    ]);
    assert!(out.commands.is_empty(), "{:?}", out.commands);
    sim.done(&fence("pg-0", 2), Ok(()));
    // Stopped at 1200; the target has received but not replayed it all.
    let out = sim.round(vec![
        up(fenced("pg-0").epoch(2).final_lsn(1200)),
        up(replica("pg-2").epoch(1).at_lsn(1200, 1150)),
    ]);
    assert!(
        out.commands.is_empty(),
        "waits for replay: {:?}",
        out.commands
    );
    assert_eq!(sim.ha.state().phase, Phase::SwitchoverDraining);
    let out = sim.round(vec![
        up(fenced("pg-0").epoch(2).final_lsn(1200)),
        up(replica("pg-2").epoch(1).at_lsn(1200, 1200)),
    ]);
    assert_eq!(
        out.commands,
        vec![promote("pg-2", 2), repoint("pg-1", "pg-2", 2)],
        "the other replica follows the target while it promotes"
    );
    sim.done(&promote("pg-2", 2), Ok(()));
    // Routed, and the old primary becomes a replica of the new one at the same time: the new
    // primary needs a standby before it can commit.
    assert_eq!(
        sim.step().commands,
        vec![route("pg-2", 2), demote("pg-0", "pg-2", 2)]
    );
    sim.done(&route("pg-2", 2), Ok(()));
    assert!(sim.step().commands.is_empty());
    let record = sim.ha.state().last_failover.clone().expect("recorded");
    assert_eq!(record.kind, FailoverKind::Switchover);
    assert_eq!(record.detail.final_lsn.map(|l| l.0), Some(1200));
    assert_eq!(record.lost_bytes, Some(0));
    assert!(record.aborted.is_none());
    assert!(sim.saw("SwitchoverCompleted"));
}

#[test]
fn switchover_without_target_chooses_the_most_advanced_synchronous_standby() {
    let mut sim = Sim::healthy(SYNC);
    // pg-2 is async and ahead on paper; pg-1 is the synchronous standby.
    sim.round(vec![
        up(primary("pg-0")
            .epoch(1)
            .lsn(2000)
            .quorum(&["pg-1"])
            .async_peers(&["pg-2"])),
        up(replica("pg-1").epoch(1).at_lsn(1900, 1900)),
        up(replica("pg-2").epoch(1).at_lsn(1950, 1950)),
    ]);
    assert_eq!(sim.ha.state().detail.sync_set, vec![node("pg-1")]);
    assert_eq!(sim.ha.request_switchover(None, sim.now), Ok(node("pg-1")));

    let mut sim = Sim::healthy(ASYNC);
    sim.round(vec![
        up(primary("pg-0")
            .epoch(1)
            .lsn(2000)
            .async_peers(&["pg-1", "pg-2"])),
        up(replica("pg-1").epoch(1).at_lsn(1900, 1900)),
        up(replica("pg-2").epoch(1).at_lsn(1950, 1940)),
    ]);
    assert_eq!(
        sim.ha.request_switchover(None, sim.now),
        Ok(node("pg-2")),
        "async: the most advanced replica"
    );
}

#[test]
fn switchover_requests_that_cannot_be_honoured_are_refused_with_the_reason() {
    let mut sim = Sim::healthy(SYNC);
    sim.round(vec![
        up(primary("pg-0").epoch(1).lsn(1000).quorum(&["pg-1"])),
        up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
        down("pg-2"),
    ]);
    let now = sim.now;
    assert_eq!(
        sim.ha.request_switchover(Some(node("pg-0")), now),
        Err(SwitchoverError::TargetIsPrimary {
            target: node("pg-0")
        })
    );
    assert_eq!(
        sim.ha.request_switchover(Some(node("pg-9")), now),
        Err(SwitchoverError::UnknownMember {
            target: node("pg-9")
        })
    );
    assert_eq!(
        sim.ha.request_switchover(Some(node("pg-2")), now),
        Err(SwitchoverError::TargetNotReplica {
            target: node("pg-2")
        })
    );
    assert_eq!(sim.ha.state().epoch, 1, "a refused request changes nothing");
    assert_eq!(
        sim.ha.request_switchover(Some(node("pg-1")), now),
        Ok(node("pg-1"))
    );
    assert!(matches!(
        sim.ha.request_switchover(Some(node("pg-1")), now),
        Err(SwitchoverError::NotHealthy { .. })
    ));
}

#[test]
fn switchover_that_cannot_drain_in_time_resumes_the_old_primary_with_the_new_epoch() {
    let mut sim = Sim::healthy(SYNC);
    sim.ha
        .request_switchover(Some(node("pg-1")), sim.now)
        .expect("accepted");
    sim.round(healthy_round(1, 1000));
    sim.done(&fence("pg-0", 2), Ok(()));
    // pg-1 stops replaying (paused, broken): it never reaches the final LSN.
    for _ in 0..60 {
        let out = sim.round(vec![
            up(fenced("pg-0").epoch(2).final_lsn(1200)),
            up(replica("pg-1").epoch(1).at_lsn(1100, 1100)),
        ]);
        assert!(
            !out.commands.contains(&promote("pg-1", 2)),
            "never promote a target that has not replayed everything"
        );
    }
    assert!(sim.events.iter().any(|e| matches!(&e.kind, EventKind::Lifecycle(Lifecycle::SwitchoverAborted { reason }) if reason.contains("did not replay"))));
    assert!(
        sim.commands.contains(&promote("pg-0", 2)),
        "the old primary is resumed with the new epoch"
    );
    sim.done(&promote("pg-0", 2), Ok(()));
    assert_eq!(sim.step().commands, vec![route("pg-0", 2)]);
    sim.done(&route("pg-0", 2), Ok(()));
    let record = sim.ha.state().last_failover.clone().expect("recorded");
    assert!(record.aborted.is_some());
    assert_eq!(record.to, Some(node("pg-0")));
    assert_eq!(sim.ha.state().current_primary, Some(node("pg-0")));
    assert_eq!(sim.ha.state().epoch, 2);
    let _ = Command::Route {
        primary: node("pg-0"),
        epoch: 2,
    };
}
