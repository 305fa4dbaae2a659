//! The HA engine dies in the middle of a failover (right after it persisted the election, and
//! at every other step in turn) and a new one starts from the persisted file state: it resumes
//! the same failover, to the same target, with no further epoch, and no acknowledged commit is
//! lost. And an engine that is
//! merely down, for several lease periods, takes no writes down: the primary keeps its
//! synchronous quorum, so it keeps serving and does not fence itself.

mod common;
use common::BOUND;

use std::time::Duration;

/// One cluster at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

use shanraq_drill::ClusterOptions;
use shanraq_drill::ledger::{self};
use shanraq_drill::scenario;
use shanraq_ha::adapters::driver::{DriverEvent, system_clock};
use shanraq_ha::driver::state_store::{FileStateStore, StateStore};
use shanraq_ha::postgres::{HaState, Phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_restarted_mid_failover_resumes_the_same_failover_without_loss() {
    let _serial = SERIAL.lock().await;
    let mut cluster = common::converged(ClusterOptions::synchronous(3)).await;
    let writer = common::writing(&cluster).await;

    let epoch = cluster.state().expect("state").epoch;
    let mut events = cluster.handle().expect("driver").subscribe();
    let mark = cluster.event_mark();
    let killed_at = system_clock()();
    cluster.topology_mut().kill(0).expect("kill pg-0");
    let bumped = tokio::time::timeout(BOUND, async {
        loop {
            match events.recv().await {
                // Stopped once the election chose a target: the fencing before it is quick.
                Ok(DriverEvent::StateSaved { state, .. })
                    if state.epoch > epoch && state.target_primary.is_some() =>
                {
                    return *state;
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(error) => panic!("driver events ended: {error}"),
            }
        }
    })
    .await
    .expect("the engine bumps the epoch");
    cluster.stop_driver().await.expect("the driver stops");

    let persisted: HaState = FileStateStore::new(cluster.store_path())
        .load()
        .await
        .expect("read the state file")
        .expect("a state was persisted")
        .state;
    println!(
        "engine stopped in phase {} at epoch {} (target {:?}); persisted: phase {}, target {:?}",
        bumped.phase,
        bumped.epoch,
        bumped.target_primary,
        persisted.phase,
        persisted.target_primary
    );
    assert_eq!(persisted.epoch, epoch + 1);
    let in_flight = persisted
        .in_flight
        .clone()
        .expect("the engine was stopped mid-failover");
    let target = in_flight
        .to
        .clone()
        .expect("the persisted failover already has a target");
    assert!(
        persisted.last_failover.is_none()
            || persisted
                .last_failover
                .as_ref()
                .is_some_and(|r| r.epoch <= epoch)
    );

    // The engine stays down for a while, then a new one starts from the file.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.start_driver().await.expect("a new driver starts");
    let outcome = scenario::finish(&cluster, &writer, 0, epoch, mark, killed_at, BOUND)
        .await
        .expect("the new engine completes the failover");
    println!(
        "{}",
        outcome.timeline.lines("pg-0 killed (SIGKILL)").join("\n")
    );
    println!(
        "measured: RTO {} ms with an engine restart in the middle",
        outcome.timeline.rto_ms().unwrap_or_default()
    );
    assert_eq!(outcome.record.to.as_ref(), Some(&target), "the same target");
    assert_eq!(outcome.record.epoch, epoch + 1, "the same failover");
    assert_eq!(outcome.state.epoch, epoch + 1, "no second epoch bump");

    let resumed_from = writer.acknowledged();
    writer
        .wait_for_acks(resumed_from + 50, BOUND)
        .await
        .expect("writes continue");
    let report = writer.stop().await;
    let missing = ledger::missing_on(
        &cluster
            .member_app_options(outcome.new_primary)
            .expect("member"),
        &report,
    )
    .await
    .expect("read");
    assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_that_is_down_for_several_leases_does_not_take_writes_down() {
    let _serial = SERIAL.lock().await;
    let mut cluster = common::converged(ClusterOptions::synchronous(3)).await;
    let writer = common::writing(&cluster).await;
    let lease = cluster.cluster().spec.failover.lease();
    cluster.stop_driver().await.expect("the driver stops");
    // Nobody renews the primary's lease now; its synchronous quorum keeps it writable.
    let acked = writer.report().acks.len();
    let until = std::time::Instant::now() + lease * 4;
    while std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = writer.report().acks.len() - acked;
    println!(
        "commits acknowledged while the engine was down for {} ms: {during}",
        (lease * 4).as_millis()
    );
    assert!(during > 0, "writes stopped while only the engine was down");
    assert!(
        !cluster.topology().log(0).contains("fenced itself"),
        "the primary fenced itself although its quorum was there"
    );
    cluster
        .start_driver()
        .await
        .expect("the driver starts again");
    cluster
        .wait_converged(&[0, 1, 2], BOUND)
        .await
        .expect("still converged on pg-0");
    let report = writer.stop().await;
    common::assert_nothing_lost(&cluster, 0, &report).await;
}

/// Where an engine is aborted in the middle of a failover: the first persisted state that
/// satisfies the predicate (then a few milliseconds more, different each time, so the abort
/// falls between steps as well as on them).
struct StopPoint {
    name: &'static str,
    reached: fn(&HaState) -> bool,
}

const STOP_POINTS: [StopPoint; 4] = [
    StopPoint {
        name: "epoch bumped, fencing",
        reached: |s| s.phase == Phase::Fencing,
    },
    StopPoint {
        name: "quorum detached, electing",
        reached: |s| {
            s.in_flight
                .as_ref()
                .is_some_and(|r| r.detail.quorum_fenced_at.is_some())
        },
    },
    StopPoint {
        name: "target chosen, promoting",
        reached: |s| s.phase == Phase::Promoting,
    },
    StopPoint {
        name: "promoted, routing",
        reached: |s| s.phase == Phase::Routing,
    },
];

/// The engine is aborted at every step of a failover in turn (each time on a fresh failure of
/// the current primary, the old one rejoined in between), and a new engine with the same
/// identity (a restarted controller) starts from the persisted state: it resumes the same
/// failover at the same epoch, one failover per failure, nothing acknowledged lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_aborted_at_any_step_of_a_failover_resumes_it_at_the_same_epoch() {
    let _serial = SERIAL.lock().await;
    let mut cluster = common::converged(ClusterOptions::synchronous(3)).await;
    let mut jitter = 7_u64;
    for point in &STOP_POINTS {
        let primary = cluster.primary_index().expect("a primary");
        let alive: Vec<usize> = (0..3).collect();
        let writer = common::writing(&cluster).await;
        let epoch = cluster.state().expect("state").epoch;
        let mut events = cluster.handle().expect("driver").subscribe();
        let mark = cluster.event_mark();
        let killed_at = system_clock()();
        cluster
            .topology_mut()
            .kill(primary)
            .expect("kill the primary");
        let reached = tokio::time::timeout(BOUND, async {
            loop {
                match events.recv().await {
                    Ok(DriverEvent::StateSaved { state, .. })
                        if state.epoch > epoch && (point.reached)(&state) =>
                    {
                        return *state;
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(error) => panic!("driver events ended: {error}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the failover reaches '{}'", point.name));
        // Between 0 and 40 ms later: on the step or past it.
        jitter = jitter
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        tokio::time::sleep(Duration::from_millis((jitter >> 33) % 41)).await;
        let stopped = cluster.stop_driver().await.expect("the driver stops");
        println!(
            "aborted at '{}' (phase {} when persisted, {} when stopped)",
            point.name, reached.phase, stopped.phase
        );
        cluster.start_driver().await.expect("a new driver starts");
        let outcome = scenario::finish(&cluster, &writer, primary, epoch, mark, killed_at, BOUND)
            .await
            .unwrap_or_else(|error| panic!("resumed after '{}': {error}", point.name));
        println!(
            "resumed after '{}': RTO {} ms, epoch {}",
            point.name,
            outcome.timeline.rto_ms().unwrap_or_default(),
            outcome.record.epoch
        );
        assert_eq!(outcome.record.epoch, epoch + 1, "the same failover");
        assert_eq!(outcome.state.epoch, epoch + 1, "no second epoch bump");
        assert_eq!(
            scenario::unplanned_failovers(&cluster.events_since(mark)),
            1,
            "one failover for one failure"
        );
        let resumed_from = writer.acknowledged();
        writer
            .wait_for_acks(resumed_from + 50, BOUND)
            .await
            .expect("writes continue");
        let report = writer.stop().await;
        common::assert_nothing_lost(&cluster, outcome.new_primary, &report).await;
        scenario::rejoin(&mut cluster, primary, &alive, BOUND)
            .await
            .expect("the old primary rejoins");
    }
}
