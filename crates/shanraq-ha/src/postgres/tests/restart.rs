//! An engine rebuilt from persisted state mid-failover resumes where it stopped: same epoch,
//! same target, no new election, no revert (CloudNativePG #6091, #11346).

use super::fixtures::*;
use crate::postgres::{Command, CommandError, Phase};

/// Runs a failover up to `stop_at`, restarts the engine from its persisted state, then checks
/// that it finishes with pg-1 under epoch 2.
#[test]
fn failover_resumes_after_restart_at_every_phase() {
    for stop_at in [Phase::Detecting, Phase::Promoting, Phase::Routing] {
        let mut sim = Sim::healthy(SYNC);
        let mut config = sim.ha.config().clone();
        config.failover_delay = std::time::Duration::from_millis(300);
        sim.ha = crate::postgres::PostgresHa::new(config, members(), sim.ha.state().clone());
        let failing = vec![
            down("pg-0"),
            up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
            up(replica("pg-2").epoch(1).at_lsn(900, 900)),
        ];
        for _ in 0..12 {
            if sim.ha.state().phase == stop_at {
                break;
            }
            if sim.ha.state().phase == Phase::Fencing {
                sim.detached("pg-1", 2, 1000, 1000);
                sim.detached("pg-2", 2, 900, 900);
                sim.step();
                continue;
            }
            if sim.ha.state().phase == Phase::Promoting {
                sim.done(&promote("pg-1", 2), Ok(()));
                sim.step();
                continue;
            }
            sim.round(failing.clone());
        }
        assert_eq!(sim.ha.state().phase, stop_at, "reached {stop_at}");
        let epoch_before = sim.ha.state().epoch;
        sim.restart();
        assert_eq!(
            sim.ha.state().phase,
            stop_at,
            "the phase survives the restart"
        );
        // After the restart pg-2 looks more advanced (it caught up from the archive): a resumed
        // failover must not re-elect.
        let after = vec![
            down("pg-0"),
            up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
            up(replica("pg-2").epoch(1).at_lsn(1500, 1500)),
        ];
        let out = sim.round(after.clone());
        match stop_at {
            Phase::Detecting => {
                // Detection resumes (no new threshold wait), then the delay elapses.
                for _ in 0..5 {
                    sim.round(after.clone());
                }
                sim.detached("pg-1", 2, 1000, 1000);
                sim.detached("pg-2", 2, 1500, 1500);
                sim.step();
                assert_eq!(sim.ha.state().epoch, 2);
                assert_eq!(
                    sim.ha.state().target_primary,
                    Some(node("pg-2")),
                    "elected on fresh data"
                );
            }
            Phase::Promoting => {
                assert_eq!(
                    out.commands.first(),
                    Some(&promote("pg-1", 2)),
                    "same target, same epoch"
                );
                assert_eq!(sim.ha.state().epoch, epoch_before);
                sim.done(&promote("pg-1", 2), Ok(()));
                assert_eq!(sim.step().commands, vec![route("pg-1", 2)]);
            }
            Phase::Routing => {
                assert_eq!(
                    out.commands.first(),
                    Some(&route("pg-1", 2)),
                    "routing is re-issued after a restart"
                );
                sim.done(&route("pg-1", 2), Ok(()));
                assert_eq!(sim.ha.state().phase, Phase::Healthy);
                assert_eq!(sim.ha.state().current_primary, Some(node("pg-1")));
            }
            _ => unreachable!(),
        }
        assert!(
            sim.ha.state().epoch <= 2,
            "no second epoch bump for one failover ({stop_at})"
        );
    }
}

#[test]
fn promotion_confirmed_by_the_instance_itself_completes_a_resumed_failover() {
    let mut sim = Sim::healthy(SYNC);
    let failing = vec![
        down("pg-0"),
        up(replica("pg-1").epoch(1).at_lsn(1000, 1000)),
        up(replica("pg-2").epoch(1).at_lsn(900, 900)),
    ];
    for _ in 0..3 {
        sim.round(failing.clone());
    }
    sim.detached("pg-1", 2, 1000, 1000);
    sim.detached("pg-2", 2, 900, 900);
    sim.step();
    assert_eq!(sim.ha.state().phase, Phase::Promoting);
    // The promote ran but the engine restarted before its answer arrived.
    sim.restart();
    let out = sim.round(vec![
        down("pg-0"),
        up(primary("pg-1").epoch(2).lsn(1001)),
        up(replica("pg-2").epoch(1).at_lsn(900, 900)),
    ]);
    assert!(
        out.commands.contains(&route("pg-1", 2)),
        "{:?}",
        out.commands
    );
    assert!(
        !out.commands
            .iter()
            .any(|c| matches!(c, Command::Promote { .. }))
    );
    sim.done(&route("pg-1", 2), Ok(()));
    assert_eq!(sim.ha.state().phase, Phase::Healthy);
}

#[test]
fn switchover_resumes_after_restart_while_draining() {
    let mut sim = Sim::healthy(SYNC);
    sim.ha
        .request_switchover(Some(node("pg-1")), sim.now)
        .expect("accepted");
    sim.round(healthy_round(1, 1000));
    sim.done(&fence("pg-0", 2), Ok(()));
    sim.round(vec![
        up(fenced("pg-0").epoch(2).final_lsn(1200)),
        up(replica("pg-1").epoch(1).at_lsn(1200, 1100)),
    ]);
    assert_eq!(sim.ha.state().phase, Phase::SwitchoverDraining);
    sim.restart();
    let out = sim.round(vec![
        up(fenced("pg-0").epoch(2).final_lsn(1200)),
        up(replica("pg-1").epoch(1).at_lsn(1200, 1200)),
    ]);
    assert_eq!(out.commands, vec![promote("pg-1", 2)]);
    let _ = CommandError::Failed(String::new());
}

#[test]
fn healthy_engine_restart_routes_again_before_anything_else() {
    let mut sim = Sim::healthy(SYNC);
    sim.restart();
    let out = sim.round(healthy_round(1, 1000));
    assert_eq!(
        out.commands,
        vec![route("pg-0", 1)],
        "the router may have lost its state too"
    );
}
