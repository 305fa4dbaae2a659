//! A new cluster: the engine adopts the one instance that reports itself primary, grants it an
//! epoch, and routes to it only once it confirmed that epoch.

use super::fixtures::*;
use crate::postgres::{HaState, Phase};

#[test]
fn single_primary_is_adopted_granted_an_epoch_then_routed() {
    let mut sim = Sim::new(config(SYNC), HaState::default());
    let out = sim.round(vec![
        up(primary("pg-0").lsn(100)),
        up(replica("pg-1").at_lsn(100, 100)),
        down("pg-2"),
    ]);
    assert_eq!(
        out.commands,
        vec![promote("pg-0", 1)],
        "grant before routing"
    );
    assert_eq!(sim.ha.state().phase, Phase::Healthy);
    assert_eq!(sim.ha.state().current_primary, Some(node("pg-0")));
    assert!(sim.saw("PrimaryAdopted"));
    sim.done(&promote("pg-0", 1), Ok(()));
    let out = sim.round(vec![
        up(primary("pg-0").epoch(1).lsn(100).quorum(&["pg-1"])),
        up(replica("pg-1").at_lsn(100, 100)),
        down("pg-2"),
    ]);
    assert_eq!(
        out.commands,
        vec![route("pg-0", 1), repoint("pg-1", "pg-0", 1)]
    );
    assert_eq!(sim.ha.state().detail.sync_set, vec![node("pg-1")]);
}

#[test]
fn ambiguous_primaries_are_not_adopted() {
    let mut sim = Sim::new(config(SYNC), HaState::default());
    let out = sim.round(vec![
        up(primary("pg-0").epoch(3)),
        up(primary("pg-1").epoch(3)),
        up(replica("pg-2")),
    ]);
    assert!(out.commands.is_empty());
    assert_eq!(sim.ha.state().phase, Phase::Bootstrapping);
    assert_eq!(sim.ha.state().epoch, 0);

    // A higher epoch decides: the other one is stale and fenced.
    let mut sim = Sim::new(config(SYNC), HaState::default());
    let out = sim.round(vec![
        up(primary("pg-0").epoch(3)),
        up(primary("pg-1").epoch(4)),
        up(replica("pg-2")),
    ]);
    assert_eq!(sim.ha.state().current_primary, Some(node("pg-1")));
    assert_eq!(sim.ha.state().epoch, 5);
    assert_eq!(out.commands, vec![promote("pg-1", 5), fence("pg-0", 5)]);
}

#[test]
fn persisted_state_serialises_in_camel_case() {
    let sim = Sim::healthy(SYNC);
    let json = serde_json::to_value(sim.ha.state()).expect("serialises");
    for key in [
        "epoch",
        "currentPrimary",
        "targetPrimary",
        "phase",
        "inFlight",
        "lastFailover",
        "syncSet",
    ] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    assert_eq!(json["phase"], "Healthy");
    assert_eq!(json["syncSet"], serde_json::json!(["pg-1", "pg-2"]));
}
