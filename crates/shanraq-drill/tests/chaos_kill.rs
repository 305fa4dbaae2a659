//! Chaos on a synchronous three-instance cluster driven by the HA engine, under a writer that
//! commits one ledger row at a time through HAProxy: the primary is SIGKILLed (the engine
//! promotes a synchronous standby and no acknowledged commit is lost), the new primary is
//! killed right after (the cluster fails over again to the last eligible member), and the
//! old primary comes back (fenced, demoted, rejoining) while a watch checks that no two
//! instances ever answer `/primary` or take writes at once. Figures are printed, never
//! asserted: the machine is noisy. The tests of this file run one at a time.

mod common;
use common::BOUND;

use std::time::{Duration, Instant};

use shanraq_drill::ClusterOptions;
use shanraq_drill::ledger::{self};
use shanraq_drill::scenario;
use shanraq_ha::adapters::driver::system_clock;
use shanraq_ha::postgres::Phase;
use shanraq_ha::wire::InstanceRole;

const WATCH_PERIOD: Duration = Duration::from_millis(50);

/// Two clusters at once would overload two cores and skew every figure.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_primary_promotes_a_sync_standby_and_loses_no_acknowledged_commit() {
    let _serial = SERIAL.lock().await;
    let mut cluster = common::converged(ClusterOptions::synchronous(3)).await;
    let sync_set = cluster.state().expect("state").detail.sync_set;
    let writer = common::writing(&cluster).await;

    let outcome = scenario::kill_primary(&mut cluster, &writer, BOUND)
        .await
        .expect("the engine fails over and writes resume on the new primary");
    let new = outcome.new_primary;
    let new_name = cluster.node(new).expect("node");
    let resumed_from = writer.acknowledged();
    writer
        .wait_for_acks(resumed_from + 100, BOUND)
        .await
        .expect("writes keep being acknowledged after the failover");
    let report = writer.stop().await;

    println!(
        "{}",
        outcome.timeline.lines("pg-0 killed (SIGKILL)").join("\n")
    );
    println!(
        "measured: RTO {} ms; {} commits acknowledged, {} failed attempts",
        outcome.timeline.rto_ms().unwrap_or_default(),
        report.acks.len(),
        report.failed_attempts
    );
    assert_eq!(outcome.old_primary, 0);
    assert_ne!(new, 0);
    assert!(
        sync_set.contains(&new_name),
        "{new_name} was not in the synchronous set {sync_set:?}"
    );
    assert_eq!(
        outcome.state.epoch, 2,
        "one failover takes exactly one epoch"
    );
    assert_eq!(outcome.state.current_primary.as_ref(), Some(&new_name));
    let (before, after) = report.split_at(outcome.timeline.origin);
    assert!(
        before >= 100 && after >= 100,
        "{before} before, {after} after"
    );
    common::assert_nothing_lost(&cluster, new, &report).await;
    let other = 3 - new;
    let status = cluster.instance_status(other).await.expect("status");
    assert_eq!(status.role, InstanceRole::Replica, "{status:?}");
    assert_eq!(
        status.epoch, 2,
        "the other replica was re-pointed: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_failure_right_after_the_first_fails_over_again_without_loss() {
    let _serial = SERIAL.lock().await;
    let mut cluster = common::converged(ClusterOptions::synchronous(3)).await;
    let writer = common::writing(&cluster).await;
    let first = scenario::kill_primary(&mut cluster, &writer, BOUND)
        .await
        .expect("first failover");
    let a = first.new_primary;
    let b = 3 - a;
    let a_name = cluster.node(a).expect("node");
    let b_name = cluster.node(b).expect("node");
    // As soon as the engine knows the new primary's synchronous standby, kill it too.
    cluster
        .wait_for_state("the synchronous set of the new primary", BOUND, |s| {
            s.current_primary.as_ref() == Some(&a_name) && s.detail.sync_set == vec![b_name.clone()]
        })
        .await
        .expect("the new primary reports its synchronous standby");
    let epoch = cluster.state().expect("state").epoch;
    let mark = cluster.event_mark();
    let killed_at = system_clock()();
    cluster
        .topology_mut()
        .kill(a)
        .expect("kill the new primary");
    // The survivor is promoted, but it has no standby left: it cannot commit (synchronous,
    // RPO 0), so it is not routed until a standby rejoins.
    cluster
        .wait_for_state("the survivor promoted", BOUND, |s| {
            s.epoch == epoch + 1 && s.current_primary.as_ref() == Some(&b_name)
        })
        .await
        .expect("the survivor is promoted");
    common::assert_nothing_lost(&cluster, b, &writer.report()).await;
    cluster.topology_mut().restart(0).expect("restart pg-0");
    cluster
        .topology_mut()
        .restart(a)
        .expect("restart the second victim");
    let (state, record) = cluster
        .wait_for_completion(epoch, BOUND)
        .await
        .expect("the second failover completes once a standby is back");
    println!(
        "measured: second failover {} -> {} completed {} ms after the kill",
        record.from,
        record.to.as_ref().map_or("?", |to| to.as_str()),
        record.routed_at.map_or(0, |at| at.since(killed_at))
    );
    assert_eq!(record.from, a_name);
    assert_eq!(
        record.to.as_ref(),
        Some(&b_name),
        "the last eligible member"
    );
    assert_eq!(state.epoch, epoch + 1);
    cluster
        .wait_converged(&[0, 1, 2], BOUND)
        .await
        .expect("both victims rejoin as replicas of the survivor");
    let resumed = writer
        .wait_for_ack_on(cluster.pg_addr(b).expect("address"), killed_at, BOUND)
        .await
        .expect("writes resume on the survivor");
    println!(
        "measured: writes resumed on {b_name} {} ms after the second kill (after a standby rejoined)",
        resumed.at.since(killed_at)
    );
    let report = writer.stop().await;
    common::assert_nothing_lost(&cluster, b, &report).await;
    let events = cluster.events_since(mark);
    println!("events after the second kill: {}", events.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_primary_returns_fenced_is_demoted_and_two_primaries_never_coexist() {
    let _serial = SERIAL.lock().await;
    let mut cluster = common::converged(ClusterOptions::synchronous(3)).await;
    let watch = cluster
        .watch(WATCH_PERIOD, Duration::from_secs(120))
        .await
        .expect("watch starts");
    let writer = common::writing(&cluster).await;
    let outcome = scenario::kill_primary(&mut cluster, &writer, BOUND)
        .await
        .expect("failover");
    let new = outcome.new_primary;

    let restarted = Instant::now();
    cluster.topology_mut().restart(0).expect("restart pg-0");
    let mut saw_fenced = false;
    let deadline = Instant::now() + BOUND;
    loop {
        if let Ok(status) = cluster.instance_status(0).await {
            if status.role == InstanceRole::Fenced {
                saw_fenced = true;
                assert!(
                    !status.running,
                    "a returning primary must not run postgres: {status:?}"
                );
                assert_eq!(
                    cluster
                        .topology()
                        .get(0, "/primary")
                        .await
                        .expect("GET /primary"),
                    503,
                    "a returning primary must not answer /primary"
                );
            }
            if status.role == InstanceRole::Replica {
                break;
            }
        }
        assert!(Instant::now() < deadline, "pg-0 never became a replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        saw_fenced,
        "pg-0 should come back fenced, waiting for the engine"
    );
    let state = cluster
        .wait_converged(&[0, 1, 2], BOUND)
        .await
        .expect("pg-0 streams from the new primary");
    println!(
        "measured: pg-0 rejoined {} ms after its restart",
        restarted.elapsed().as_millis()
    );
    assert_eq!(state.phase, Phase::Healthy);
    assert_eq!(
        state.current_primary,
        Some(cluster.node(new).expect("node"))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = writer.stop().await;
    let seen = watch.stop().await;
    println!(
        "measured: {} split-brain samples every {} ms",
        seen.samples,
        WATCH_PERIOD.as_millis()
    );
    assert!(
        seen.samples >= 20,
        "the watch sampled too little: {}",
        seen.samples
    );
    common::assert_one_primary_at_a_time(&seen);
    common::assert_nothing_lost(&cluster, new, &report).await;
    // The returned member has every acknowledged commit too once it caught up.
    let deadline = Instant::now() + BOUND;
    loop {
        let missing = ledger::missing_on(&cluster.member_app_options(0).expect("member"), &report)
            .await
            .expect("read pg-0");
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pg-0 never caught up: {} missing",
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
