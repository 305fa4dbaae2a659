//! Unplanned failover: who is detached before anyone is promoted, who wins, when the engine
//! refuses, and that a returning or emptied old master never comes back as master.

use super::fixtures::Sim;
use crate::events::Lifecycle;
use crate::redis::{Command, DETACHED_HOST, DETACHED_PORT, EventKind, Phase, RedisHaConfig, Role};

fn config() -> RedisHaConfig {
    RedisHaConfig::default()
}

fn promote_index(sim: &Sim) -> usize {
    sim.executed
        .iter()
        .position(|c| matches!(c, Command::Promote { .. }))
        .expect("a promotion")
}

#[test]
fn a_dead_master_is_replaced_by_the_most_advanced_replica_after_every_replica_is_detached() {
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config());
    sim.frozen_offsets.push("r2".to_owned());
    sim.rounds(1);
    sim.frozen_offsets.clear();
    sim.nodes.get_mut("r0").expect("r0").up = false;
    sim.rounds(8);
    assert_eq!(sim.master(), Some("r1"), "{:?}", sim.kinds());
    let promote = promote_index(&sim);
    for replica in ["r1", "r2"] {
        let detached = sim
            .executed
            .iter()
            .position(|c| matches!(c, Command::Detach { node, .. } if node.as_str() == replica));
        assert!(
            detached.is_some_and(|at| at < promote),
            "{replica} detached before the promotion: {:?}",
            sim.executed
        );
    }
    assert_eq!(sim.failovers_completed(), 1);
    assert_eq!(sim.engine.state().failovers, 1);
    assert_eq!(sim.engine.state().phase, Phase::Healthy);
    let r2 = &sim.nodes["r2"];
    assert_eq!(
        r2.master,
        Some(("r1.host".to_owned(), 6379)),
        "r2 follows r1"
    );
    assert_eq!(sim.engine.routed_primary().map(|n| n.as_str()), Some("r1"));
    let record = sim.engine.state().last_failover.clone().expect("recorded");
    assert!(record.rto_ms.is_some());
    assert_eq!(record.epoch, sim.engine.state().epoch);
}

#[test]
fn a_returning_old_master_is_made_a_replica_and_nothing_fails_over_again() {
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config());
    sim.nodes.get_mut("r0").expect("r0").up = false;
    sim.rounds(8);
    let new_master = sim.master().expect("a master").to_owned();
    // It comes back as it went: a master of its old history.
    sim.nodes.get_mut("r0").expect("r0").up = true;
    sim.rounds(10);
    assert_eq!(sim.master(), Some(new_master.as_str()));
    assert_eq!(sim.masters_up(), vec![new_master.as_str()]);
    assert_eq!(sim.nodes["r0"].role, Role::Replica);
    assert!(sim.saw("RedisStaleMasterDemoted"), "{:?}", sim.kinds());
    assert_eq!(sim.failovers_completed(), 1, "{:?}", sim.kinds());
    assert!(
        !sim.saw("RedisDatasetLost"),
        "a member that resynced from the new master kept its data: {:?}",
        sim.kinds()
    );
}

#[test]
fn a_master_back_without_its_data_is_failed_over_at_once() {
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config());
    // Restarted between two probes with an empty data set, as a master.
    let r0 = sim.nodes.get_mut("r0").expect("r0");
    r0.offset = 0;
    r0.replid = "fresh".to_owned();
    sim.frozen_offsets = vec!["r1".to_owned(), "r2".to_owned()];
    sim.rounds(1);
    assert!(
        sim.executed
            .iter()
            .any(|c| matches!(c, Command::Detach { .. })),
        "one round is enough to detach its replicas: {:?}",
        sim.kinds()
    );
    sim.frozen_offsets.clear();
    sim.rounds(6);
    assert_ne!(sim.master(), Some("r0"));
    assert!(
        sim.nodes["r1"].offset >= 100 && sim.nodes["r2"].offset >= 100,
        "nobody emptied"
    );
    assert!(sim.saw("RedisDatasetLost"), "{:?}", sim.kinds());
    let record = sim.last_failover();
    assert_eq!(record.detail.data_lost, None, "a replica held the history");
}

/// Every node restarted with an empty directory while the failover waited for its detach
/// commands: none holds the old master's history, so nobody can come back with more. The most
/// advanced is promoted, and the failover says the data was lost, never that nothing was.
#[test]
fn every_member_back_without_its_data_is_said_and_never_counted_as_nothing_lost() {
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config());
    sim.nodes.get_mut("r0").expect("r0").up = false;
    sim.failing_detach = vec!["r1".to_owned(), "r2".to_owned()];
    sim.rounds(6);
    assert_eq!(
        sim.engine.state().phase,
        Phase::Fencing,
        "{:?}",
        sim.kinds()
    );
    for (index, name) in ["r0", "r1", "r2"].iter().enumerate() {
        let node = sim.nodes.get_mut(*name).expect("node");
        node.up = true;
        node.role = Role::Replica;
        node.master = Some((DETACHED_HOST.to_owned(), DETACHED_PORT));
        node.offset = 1;
        node.replid = format!("fresh-{index}");
    }
    sim.failing_detach.clear();
    sim.rounds(10);
    let record = sim.last_failover();
    assert!(record.routed_at.is_some(), "{record:?}");
    assert_ne!(record.lost_bytes, Some(0), "{record:?}");
    assert!(
        record.lost_bytes.is_some_and(|bytes| bytes >= 100),
        "{record:?}"
    );
    assert!(
        record
            .detail
            .data_lost
            .as_deref()
            .is_some_and(|why| why.contains("history")),
        "{record:?}"
    );
    assert!(sim.saw("RedisDatasetLost"), "{:?}", sim.kinds());
}

/// A full outage with persistence: every node restarted from its own append-only file, so each
/// reports a new replication id and offset 0 like an empty node, but with its keys. Nothing is
/// said lost, and the old master, whose file holds at least what any replica's does, is taken
/// back; only with `appendfsync always` does the failover claim it lost nothing.
#[test]
fn every_member_back_from_its_append_only_file_takes_the_old_master_back_and_loses_nothing() {
    for fsync_always in [true, false] {
        let mut sim = Sim::healthy(
            &["r0", "r1", "r2"],
            RedisHaConfig {
                fsync_always,
                ..config()
            },
        );
        for node in sim.nodes.values_mut() {
            node.aof = true;
            node.keys = Some(40);
        }
        sim.rounds(1);
        sim.nodes.get_mut("r0").expect("r0").up = false;
        sim.failing_detach = vec!["r1".to_owned(), "r2".to_owned()];
        sim.rounds(6);
        for (index, name) in ["r0", "r1", "r2"].iter().enumerate() {
            let node = sim.nodes.get_mut(*name).expect("node");
            node.up = true;
            node.role = Role::Replica;
            node.master = Some((DETACHED_HOST.to_owned(), DETACHED_PORT));
            node.offset = 1;
            node.replid = format!("fresh-{index}");
            node.keys = Some(40);
            node.aof = true;
        }
        sim.failing_detach.clear();
        sim.rounds(10);
        assert_eq!(sim.master(), Some("r0"), "{:?}", sim.kinds());
        let record = sim.last_failover();
        assert!(record.routed_at.is_some(), "{record:?}");
        assert_eq!(record.detail.data_lost, None, "{record:?}");
        assert_eq!(
            record.lost_bytes,
            fsync_always.then_some(0),
            "only appendfsync always holds every acknowledged write: {record:?}"
        );
        assert!(!sim.saw("RedisDatasetLost"), "{:?}", sim.kinds());
        assert!(sim.saw("RedisDatasetRestored"), "{:?}", sim.kinds());
        assert_eq!(sim.masters_up(), ["r0"]);
    }
}

/// A node that restarted empty under persistence (a lost volume) has no keys: it is still said
/// to have lost its data.
#[test]
fn a_node_back_empty_with_persistence_on_is_still_said_to_have_lost_its_data() {
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config());
    let node = sim.nodes.get_mut("r2").expect("r2");
    node.role = Role::Replica;
    node.master = Some((DETACHED_HOST.to_owned(), DETACHED_PORT));
    node.offset = 1;
    node.replid = "fresh".to_owned();
    node.keys = Some(0);
    node.aof = true;
    sim.rounds(1);
    assert!(sim.saw("RedisDatasetLost"), "{:?}", sim.kinds());
    assert!(!sim.saw("RedisDatasetRestored"), "{:?}", sim.kinds());
}

/// A node back with keys from a file the engine never saw up to date in the history it was
/// killed in (a replica killed before the rewrite that follows its full sync finished): its
/// keys are an older data set, so it is said to have lost its data.
#[test]
fn keys_from_a_file_never_seen_up_to_date_do_not_count_as_the_history() {
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config());
    let node = sim.nodes.get_mut("r2").expect("r2");
    node.role = Role::Replica;
    node.master = Some((DETACHED_HOST.to_owned(), DETACHED_PORT));
    node.offset = 1;
    node.replid = "fresh".to_owned();
    node.keys = Some(7);
    node.aof = true;
    sim.rounds(1);
    assert!(sim.saw("RedisDatasetLost"), "{:?}", sim.kinds());
    assert!(!sim.saw("RedisDatasetRestored"), "{:?}", sim.kinds());
}

/// The replicas restarted empty while the old master was unreachable; it comes back with all
/// its data. It is taken back rather than a replica that holds none of it.
#[test]
fn an_old_master_with_its_data_wins_over_replicas_back_without_theirs() {
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config());
    sim.nodes.get_mut("r0").expect("r0").up = false;
    sim.failing_detach = vec!["r1".to_owned(), "r2".to_owned()];
    sim.rounds(6);
    for (index, name) in ["r1", "r2"].iter().enumerate() {
        let node = sim.nodes.get_mut(*name).expect("node");
        node.role = Role::Replica;
        node.master = Some((DETACHED_HOST.to_owned(), DETACHED_PORT));
        node.offset = 1;
        node.replid = format!("fresh-{index}");
    }
    sim.nodes.get_mut("r0").expect("r0").up = true;
    sim.failing_detach.clear();
    sim.rounds(10);
    assert_eq!(sim.master(), Some("r0"), "{:?}", sim.kinds());
    let record = sim.last_failover();
    assert_eq!(record.detail.data_lost, None, "{record:?}");
    assert_eq!(record.lost_bytes, Some(0), "{record:?}");
    assert!(sim.saw("RedisDatasetLost"), "{:?}", sim.kinds());
}

/// A master changes its replication id when its first replica attaches and it has no backlog
/// yet; a failover can start before the engine saw the new id. The replicas, which took it,
/// still hold the master's history: the most advanced wins, and nothing is counted as lost.
#[test]
fn a_master_id_the_engine_never_saw_does_not_hide_the_replicas_history() {
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config());
    sim.frozen_offsets = vec!["r1".to_owned()];
    sim.nodes.get_mut("r0").expect("r0").replid = "changed-on-attach".to_owned();
    sim.write();
    sim.write();
    sim.nodes.get_mut("r0").expect("r0").up = false;
    sim.frozen_offsets.clear();
    sim.rounds(10);
    assert_eq!(
        sim.master(),
        Some("r2"),
        "the most advanced: {:?}",
        sim.kinds()
    );
    let record = sim.last_failover();
    assert_eq!(record.detail.data_lost, None);
    assert!(!sim.saw("RedisDatasetLost"), "{:?}", sim.kinds());
}

#[test]
fn an_unreachable_master_with_an_unreachable_replica_is_not_fenced_and_nobody_is_promoted() {
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config());
    sim.nodes.get_mut("r0").expect("r0").up = false;
    sim.nodes.get_mut("r2").expect("r2").up = false;
    sim.rounds(40);
    assert!(
        !sim.executed
            .iter()
            .any(|c| matches!(c, Command::Promote { .. })),
        "r0 may still take writes acknowledged by r2: {:?}",
        sim.executed
    );
    assert_eq!(sim.engine.state().phase, Phase::Fencing);
    assert!(sim.saw("RedisFencingBlocked"), "{:?}", sim.kinds());
    // The replica comes back: it is detached and the failover completes.
    sim.nodes.get_mut("r2").expect("r2").up = true;
    sim.rounds(6);
    assert_eq!(sim.failovers_completed(), 1, "{:?}", sim.kinds());
}

#[test]
fn with_two_of_four_required_one_unreachable_replica_does_not_block_the_failover() {
    let config = RedisHaConfig {
        min_replicas_to_write: 2,
        ..RedisHaConfig::default()
    };
    let mut sim = Sim::healthy(&["r0", "r1", "r2", "r3"], config);
    sim.nodes.get_mut("r0").expect("r0").up = false;
    sim.nodes.get_mut("r3").expect("r3").up = false;
    sim.rounds(8);
    assert_eq!(sim.failovers_completed(), 1, "{:?}", sim.kinds());
}

#[test]
fn a_candidate_beyond_the_loss_bound_is_refused_with_an_event() {
    let config = RedisHaConfig {
        max_lag_bytes: 15,
        ..RedisHaConfig::default()
    };
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config);
    sim.frozen_offsets = vec!["r1".to_owned(), "r2".to_owned()];
    sim.rounds(3);
    sim.nodes.get_mut("r0").expect("r0").up = false;
    sim.rounds(10);
    assert!(
        !sim.executed
            .iter()
            .any(|c| matches!(c, Command::Promote { .. })),
        "{:?}",
        sim.executed
    );
    let refusal = sim.events.iter().find_map(|e| match &e.kind {
        EventKind::Lifecycle(Lifecycle::FailoverRefused { reason }) => Some(reason.clone()),
        _ => None,
    });
    let refusal = refusal.expect("a refusal event");
    assert!(refusal.contains("loss bound of 15 bytes"), "{refusal}");
    assert_eq!(
        sim.engine
            .state()
            .in_flight
            .as_ref()
            .and_then(|r| r.refusal.clone()),
        Some(refusal)
    );
}

#[test]
fn a_master_that_answers_again_during_detection_is_kept() {
    let config = RedisHaConfig {
        failover_delay: std::time::Duration::from_secs(2),
        ..RedisHaConfig::default()
    };
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config);
    sim.nodes.get_mut("r0").expect("r0").up = false;
    sim.rounds(4);
    assert_eq!(sim.engine.state().phase, Phase::Detecting);
    sim.nodes.get_mut("r0").expect("r0").up = true;
    sim.rounds(3);
    assert_eq!(sim.engine.state().phase, Phase::Healthy);
    assert_eq!(sim.master(), Some("r0"));
    assert!(sim.saw("RedisMasterRecovered"));
}

#[test]
fn a_round_in_which_nobody_answers_counts_for_nobody() {
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config());
    for node in sim.nodes.values_mut() {
        node.up = false;
    }
    sim.rounds(20);
    assert_eq!(
        sim.engine.state().phase,
        Phase::Healthy,
        "{:?}",
        sim.kinds()
    );
}

#[test]
fn nodes_that_all_start_detached_get_the_most_advanced_promoted() {
    use crate::redis::{DETACHED_HOST, DETACHED_PORT, RedisHa, RedisHaState};
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config());
    for (name, offset) in [("r0", 50), ("r1", 70), ("r2", 70)] {
        let node = sim.nodes.get_mut(name).expect("node");
        node.role = Role::Replica;
        node.master = Some((DETACHED_HOST.to_owned(), DETACHED_PORT));
        node.offset = offset;
    }
    sim.engine = RedisHa::new(
        config(),
        super::fixtures::members(&["r0", "r1", "r2"]),
        RedisHaState::default(),
    );
    sim.rounds(5);
    assert_eq!(sim.master(), Some("r1"), "{:?}", sim.kinds());
    assert_eq!(sim.masters_up(), vec!["r1"]);
    assert_eq!(sim.nodes["r0"].master, Some(("r1.host".to_owned(), 6379)));
    assert_eq!(sim.engine.state().failovers, 0);
}

#[test]
fn a_hundred_back_to_back_failovers_each_fail_over_exactly_once() {
    let names = ["r0", "r1", "r2"];
    let mut sim = Sim::healthy(&names, config());
    for fault in 1..=100_usize {
        let master = sim.master().expect("a master").to_owned();
        sim.nodes.get_mut(&master).expect("master").up = false;
        sim.rounds(8);
        assert_eq!(
            sim.failovers_completed(),
            fault,
            "fault {fault}: {:?}",
            sim.kinds()
        );
        sim.nodes.get_mut(&master).expect("old master").up = true;
        sim.rounds(8);
        assert_eq!(sim.masters_up().len(), 1, "fault {fault}");
        assert_eq!(
            sim.failovers_completed(),
            fault,
            "no failover without a fault ({fault})"
        );
    }
    assert_eq!(sim.engine.state().failovers, 100);
}

#[test]
fn the_election_waits_for_every_answering_replica_even_when_the_old_master_was_detached() {
    // The old master restarted empty and answers (it is detached at once), redis r1 lags, and
    // r2, the most advanced, is slow to detach: electing r1 would lose what only r2 has.
    let mut sim = Sim::healthy(&["r0", "r1", "r2"], config());
    sim.frozen_offsets.push("r1".to_owned());
    sim.rounds(2);
    let r0 = sim.nodes.get_mut("r0").expect("r0");
    r0.role = Role::Replica;
    r0.master = None;
    r0.offset = 0;
    r0.replid = "fresh".to_owned();
    sim.failing_detach.push("r2".to_owned());
    sim.rounds(6);
    assert!(
        !sim.executed
            .iter()
            .any(|c| matches!(c, Command::Promote { .. })),
        "nobody promoted while r2 answers and is not detached: {:?}",
        sim.kinds()
    );
    sim.failing_detach.clear();
    sim.frozen_offsets.clear();
    sim.rounds(6);
    assert_eq!(sim.master(), Some("r2"), "{:?}", sim.kinds());
    assert_eq!(sim.failovers_completed(), 1);
}

#[test]
fn a_replica_that_stops_answering_is_not_waited_for() {
    let mut sim = Sim::healthy(
        &["r0", "r1", "r2", "r3"],
        RedisHaConfig {
            min_replicas_to_write: 2,
            ..RedisHaConfig::default()
        },
    );
    sim.nodes.get_mut("r0").expect("r0").up = false;
    sim.nodes.get_mut("r3").expect("r3").up = false;
    sim.rounds(8);
    assert_eq!(sim.failovers_completed(), 1, "{:?}", sim.kinds());
}
