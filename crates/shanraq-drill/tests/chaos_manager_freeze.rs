//! The primary is alive but unseen: only its instance manager is frozen (SIGSTOP), its
//! postgres keeps running and keeps serving an application connection held straight to it and
//! the standbys streaming from it. The engine cannot tell this from a dead primary, so it must
//! make the old primary unable to commit before it promotes anyone: it detaches the synchronous
//! set first. Under writes through HAProxy and straight to the old primary, no acknowledged
//! commit may be lost, no two members may acknowledge a write at once, and once the manager is
//! thawed every member, the old primary included, streams from the new primary again.

mod common;
use common::BOUND;

use std::time::Duration;

use shanraq_drill::ClusterOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_whose_manager_hangs_loses_no_acknowledged_commit_and_every_member_rejoins() {
    let cluster = common::converged(ClusterOptions::synchronous(3)).await;
    let watch = cluster
        .watch(Duration::from_millis(50), Duration::from_secs(180))
        .await
        .expect("watch starts");
    let through_haproxy = common::writing(&cluster).await;
    let direct = common::writing_straight_to(&cluster, 0).await;
    let epoch = cluster.state().expect("state").epoch;

    cluster
        .topology()
        .freeze_manager(0)
        .expect("freeze pg-0's manager");
    let (_, record) = cluster
        .wait_for_completion(epoch, BOUND)
        .await
        .expect("the engine fails over away from the unseen primary");
    assert_eq!(record.from.as_str(), "pg-0");
    let new_primary = cluster
        .index_of(record.to.as_ref().expect("a new primary"))
        .expect("member");
    println!(
        "measured: failover away from a primary whose manager hangs: RTO {} ms",
        record.rto_ms.unwrap_or_default()
    );
    // The old postgres is still up and the direct writer still holds its connection: let it
    // try for a while before the manager wakes up.
    let before = direct.report().acks.len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = direct.report().acks.len();
    println!(
        "direct commits acknowledged by the old primary after the failover: {}",
        during - before
    );

    cluster
        .topology()
        .thaw_manager(0)
        .expect("thaw pg-0's manager");
    cluster
        .wait_converged(&[0, 1, 2], BOUND)
        .await
        .expect("the old primary and the other standby stream from the new primary");

    let direct_report = direct.stop().await;
    let report = through_haproxy.stop().await;
    common::assert_nothing_lost(&cluster, new_primary, &report).await;
    common::assert_nothing_lost(&cluster, new_primary, &direct_report).await;
    let seen = watch.stop().await;
    common::assert_one_primary_at_a_time(&seen);
}
