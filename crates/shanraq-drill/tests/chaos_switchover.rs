//! A planned switchover under continuous writes: no acknowledged commit is lost, the old
//! primary becomes a streaming replica of the new one, two instances never answer `/primary`
//! or take writes at once, and the writer's longest pause is printed (not asserted).

mod common;
use common::BOUND;

use std::time::Duration;

use shanraq_drill::ClusterOptions;
use shanraq_drill::ledger::{self};
use shanraq_drill::scenario;
use shanraq_ha::postgres::FailoverKind;
use shanraq_ha::wire::InstanceRole;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_under_load_loses_nothing_and_the_old_primary_becomes_a_replica() {
    let cluster = common::converged(ClusterOptions::synchronous(3)).await;
    let watch = cluster
        .watch(Duration::from_millis(50), Duration::from_secs(120))
        .await
        .expect("watch starts");
    let writer = common::writing(&cluster).await;

    let planned = scenario::switchover(&cluster, &writer, None, BOUND)
        .await
        .expect("the switchover completes and writes resume");
    let outcome = &planned.outcome;
    println!(
        "{}",
        outcome.timeline.lines("switchover requested").join("\n")
    );
    println!(
        "measured: write pause {} ms (longest gap between acknowledged commits)",
        planned.pause_ms.unwrap_or_default()
    );
    assert_eq!(outcome.record.kind, FailoverKind::Switchover);
    assert_eq!(outcome.record.aborted, None);
    assert_eq!(outcome.old_primary, 0);
    assert_ne!(outcome.new_primary, 0);
    assert_eq!(outcome.record.lost_bytes, Some(0));

    let state = cluster
        .wait_converged(&[0, 1, 2], BOUND)
        .await
        .expect("the old primary rejoins as a replica");
    assert_eq!(
        state.current_primary,
        Some(cluster.node(outcome.new_primary).expect("node"))
    );
    let status = cluster.instance_status(0).await.expect("status");
    assert_eq!(status.role, InstanceRole::Replica, "{status:?}");
    assert_eq!(status.streaming, Some(true), "{status:?}");

    let resumed_from = writer.acknowledged();
    writer
        .wait_for_acks(resumed_from + 50, BOUND)
        .await
        .expect("writes continue");
    let report = writer.stop().await;
    let seen = watch.stop().await;
    println!(
        "measured: {} commits acknowledged, {} failed attempts, {} split-brain samples",
        report.acks.len(),
        report.failed_attempts,
        seen.samples
    );
    let missing = ledger::missing_on(
        &cluster
            .member_app_options(outcome.new_primary)
            .expect("member"),
        &report,
    )
    .await
    .expect("read");
    assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
    common::assert_one_primary_at_a_time(&seen);
}
