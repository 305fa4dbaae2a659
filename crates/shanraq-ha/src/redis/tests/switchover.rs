//! Planned switchover: pause, drain, promote, demote, unpause; and the abort on timeout.

use super::fixtures::Sim;
use crate::redis::{Command, NodeId, Phase, RedisHaConfig, Role, SwitchoverError};

#[test]
fn a_switchover_pauses_writes_waits_for_the_target_and_demotes_the_old_master() {
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], RedisHaConfig::default());
    let target = sim
        .engine
        .request_switchover(Some(NodeId::new("r2")), sim.now)
        .expect("accepted");
    assert_eq!(target.as_str(), "r2");
    sim.rounds(8);
    assert_eq!(sim.master(), Some("r2"), "{:?}", sim.kinds());
    let pause = sim
        .executed
        .iter()
        .position(|c| matches!(c, Command::PauseWrites { node, .. } if node.as_str() == "r0"))
        .expect("paused");
    let promote = sim
        .executed
        .iter()
        .position(|c| matches!(c, Command::Promote { node, .. } if node.as_str() == "r2"))
        .expect("promoted");
    let unpause = sim
        .executed
        .iter()
        .position(|c| matches!(c, Command::Unpause { node, .. } if node.as_str() == "r0"))
        .expect("unpaused");
    assert!(pause < promote && promote < unpause, "{:?}", sim.executed);
    assert_eq!(sim.nodes["r0"].role, Role::Replica);
    assert!(!sim.nodes["r0"].paused);
    let record = sim.engine.state().last_failover.clone().expect("recorded");
    assert_eq!(record.lost_bytes, Some(0));
    assert_eq!(sim.engine.state().switchovers, 1);
    assert_eq!(sim.engine.state().failovers, 0);
    assert_eq!(sim.masters_up(), vec!["r2"]);
}

#[test]
fn a_target_that_never_catches_up_aborts_and_the_old_master_is_unpaused() {
    let config = RedisHaConfig {
        switchover_timeout: std::time::Duration::from_secs(2),
        ..RedisHaConfig::default()
    };
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config);
    sim.frozen_offsets.push("r1".to_owned());
    sim.rounds(1);
    sim.engine
        .request_switchover(Some(NodeId::new("r1")), sim.now)
        .expect("accepted");
    sim.rounds(12);
    assert_eq!(sim.master(), Some("r0"));
    assert!(!sim.nodes["r0"].paused, "unpaused after the abort");
    assert!(sim.saw("RedisSwitchoverAborted"), "{:?}", sim.kinds());
    assert_eq!(sim.engine.state().phase, Phase::Healthy);
}

#[test]
fn a_switchover_to_the_master_or_a_stranger_is_refused() {
    let mut sim = Sim::healthy(&["r0", "r1"], RedisHaConfig::default());
    assert!(matches!(
        sim.engine
            .request_switchover(Some(NodeId::new("r0")), sim.now),
        Err(SwitchoverError::TargetIsPrimary { .. })
    ));
    assert!(matches!(
        sim.engine
            .request_switchover(Some(NodeId::new("nobody")), sim.now),
        Err(SwitchoverError::UnknownMember { .. })
    ));
    sim.rounds(1);
}
