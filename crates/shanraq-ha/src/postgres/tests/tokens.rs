//! Epochs are fencing tokens that belong to one engine: an engine resuming another's state
//! claims a new epoch before it acts, a new epoch passes every epoch seen anywhere, and a
//! member seen holding a newer claim is reported so that the driver stops and reloads
//! (the paused-controller case: ANCHORS, "where they break" 8).

use super::fixtures::*;
use crate::postgres::{CommandError, HaState, Phase, PostgresHa};

fn owned(epoch: u64, owner: &str) -> HaState {
    HaState {
        owner: Some(owner.to_owned()),
        ..HaState::with_primary(node("pg-0"), epoch)
    }
}

fn engine(state: HaState, identity: &str) -> Sim {
    let mut sim = Sim::new(config(SYNC), state);
    sim.ha =
        PostgresHa::new(config(SYNC), members(), sim.ha.state().clone()).with_identity(identity);
    sim
}

#[test]
fn an_engine_resuming_another_engines_state_claims_the_next_epoch_and_re_grants_it() {
    let mut sim = engine(owned(1, "engine-a"), "engine-b");
    assert!(
        sim.ha.take_office(),
        "the claim changed: it must be persisted"
    );
    assert_eq!(sim.ha.state().epoch, 2);
    assert_eq!(sim.ha.state().owner.as_deref(), Some("engine-b"));
    // Every member still holds engine-a's epoch 1: the first commands carry epoch 2 to them,
    // after which they refuse engine-a's.
    let out = sim.round(healthy_round(1, 1000));
    assert_eq!(out.commands, vec![promote("pg-0", 2)], "the primary first");
    sim.done(&promote("pg-0", 2), Ok(()));
    let out = sim.round(vec![
        up(primary("pg-0")
            .epoch(2)
            .owned_by("engine-b")
            .lsn(1000)
            .quorum(&["pg-1", "pg-2"])),
        up(replica("pg-1")
            .epoch(1)
            .owned_by("engine-a")
            .at_lsn(1000, 1000)),
        up(replica("pg-2")
            .epoch(1)
            .owned_by("engine-a")
            .at_lsn(1000, 1000)),
    ]);
    assert!(
        out.commands.contains(&route("pg-0", 2)),
        "{:?}",
        out.commands
    );
    assert!(
        out.commands.contains(&repoint("pg-1", "pg-0", 2)),
        "{:?}",
        out.commands
    );
    assert!(
        out.commands.contains(&repoint("pg-2", "pg-0", 2)),
        "{:?}",
        out.commands
    );
    assert_eq!(
        sim.ha.take_newer_claim(),
        None,
        "older claims are no threat"
    );
}

#[test]
fn the_same_identity_resumes_its_own_claim_at_the_same_epoch() {
    let mut sim = engine(owned(4, "engine-a"), "engine-a");
    assert!(!sim.ha.take_office());
    assert_eq!(sim.ha.state().epoch, 4);
}

#[test]
fn a_state_that_names_no_owner_is_claimed_at_its_epoch() {
    let mut sim = engine(HaState::with_primary(node("pg-0"), 3), "engine-a");
    assert!(sim.ha.take_office());
    assert_eq!(
        (sim.ha.state().epoch, sim.ha.state().owner.as_deref()),
        (3, Some("engine-a"))
    );
    let mut fresh = engine(HaState::default(), "engine-a");
    assert!(
        !fresh.ha.take_office(),
        "a new cluster claims at its first adoption"
    );
    assert_eq!(fresh.ha.state().owner, None);
}

#[test]
fn a_failover_taken_over_mid_way_goes_on_at_the_new_epoch() {
    let mut sim = Sim::healthy(SYNC);
    for _ in 0..3 {
        sim.round(vec![
            down("pg-0"),
            up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
            up(replica("pg-2").epoch(1).at_lsn(990, 990)),
        ]);
    }
    assert_eq!(sim.ha.state().phase, Phase::Fencing);
    let state = sim.ha.state().clone();
    assert_eq!(
        state.owner.as_deref(),
        Some(crate::postgres::DEFAULT_IDENTITY)
    );
    let mut next = engine(state.clone(), "engine-b");
    assert!(next.ha.take_office());
    let taken = next.ha.state();
    assert_eq!(taken.epoch, state.epoch + 1);
    assert_eq!(taken.phase, Phase::Fencing, "the same failover");
    assert_eq!(
        taken.in_flight.as_ref().map(|r| (r.epoch, r.from.clone())),
        Some((state.epoch + 1, node("pg-0")))
    );
}

#[test]
fn a_new_epoch_passes_every_epoch_seen_on_a_member() {
    let mut sim = engine(owned(1, "engine-a"), "engine-a");
    // pg-2 holds epoch 7 (from a store that was reset, say): a newer claim to check first.
    sim.round(vec![
        up(primary("pg-0")
            .epoch(1)
            .owned_by("engine-a")
            .lsn(1000)
            .quorum(&["pg-1", "pg-2"])),
        up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
        up(replica("pg-2")
            .epoch(7)
            .owned_by("engine-z")
            .at_lsn(1000, 1000)),
    ]);
    assert_eq!(
        sim.ha.take_newer_claim(),
        Some((7, Some("engine-z".to_owned())))
    );
    assert_eq!(sim.ha.take_newer_claim(), None, "taken once");
    for _ in 0..3 {
        sim.round(vec![
            down("pg-0"),
            up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
            up(replica("pg-2")
                .epoch(7)
                .owned_by("engine-z")
                .at_lsn(1000, 1000)),
        ]);
    }
    assert_eq!(
        sim.ha.state().epoch,
        8,
        "above the highest epoch seen, not 2"
    );
}

#[test]
fn a_member_holding_this_epoch_for_another_owner_is_a_newer_claim() {
    let mut sim = engine(owned(2, "engine-a"), "engine-a");
    sim.observe(up(replica("pg-1")
        .epoch(2)
        .owned_by("engine-b")
        .at_lsn(1000, 1000)));
    assert_eq!(
        sim.ha.take_newer_claim(),
        Some((2, Some("engine-b".to_owned())))
    );
    sim.observe(up(replica("pg-2")
        .epoch(2)
        .owned_by("engine-a")
        .at_lsn(1000, 1000)));
    sim.observe(up(replica("pg-2").epoch(2).at_lsn(1000, 1000)));
    assert_eq!(
        sim.ha.take_newer_claim(),
        None,
        "its own claim, or an unowned one"
    );
}

#[test]
fn a_refusal_naming_another_owner_is_a_newer_claim() {
    let mut sim = engine(owned(2, "engine-a"), "engine-a");
    sim.done(
        &repoint("pg-1", "pg-0", 2),
        Err(CommandError::StaleEpoch {
            instance_epoch: 2,
            holder: Some("engine-b".to_owned()),
        }),
    );
    assert_eq!(
        sim.ha.take_newer_claim(),
        Some((2, Some("engine-b".to_owned())))
    );
    sim.step();
    assert!(sim.saw("EpochConflict"), "{:?}", sim.reasons());
}
