//! Asynchronous replication with a replica that falls behind in what it RECEIVES (its WAL
//! receiver is frozen with SIGSTOP; pausing replay would not do, the received LSN would still
//! advance). The primary writes well past `maximum_lag_on_failover` and is killed: the engine
//! elects the caught-up replica, never the lagging one. Then the new primary is killed too:
//! with only the lagging replica left, the engine refuses to promote it and says why.

mod common;
use common::BOUND;

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shanraq_drill::ledger::{self};
use shanraq_drill::scenario;
use shanraq_drill::{ClusterOptions, LocalCluster};
use shanraq_ha::adapters::driver::DriverEvent;
use shanraq_ha::events::Lifecycle;
use shanraq_ha::postgres::{EventKind, NodeId, Phase};
use shanraq_ha::wire::InstanceRole;
use sqlx::{Connection, PgConnection};

const MAX_LAG: u64 = 256 * 1024;

async fn lsn(cluster: &LocalCluster, index: usize, received: bool) -> u64 {
    let status = cluster.instance_status(index).await.expect("status");
    let lsn = if received {
        status.received_lsn
    } else {
        status.current_lsn
    };
    lsn.unwrap_or_default().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_lagging_past_the_limit_is_never_elected_and_alone_is_refused() {
    let mut cluster = common::converged(ClusterOptions::asynchronous(3, MAX_LAG)).await;
    let writer = common::writing(&cluster).await;

    // Freeze pg-2's WAL receiver: it stays a reachable replica that receives nothing more.
    let mut replica =
        PgConnection::connect_with(&cluster.topology().member_options(2).expect("member"))
            .await
            .expect("connect pg-2");
    let receiver: i32 = sqlx::query_scalar("SELECT pid FROM pg_stat_wal_receiver")
        .fetch_one(&mut replica)
        .await
        .expect("pg-2 has a WAL receiver");
    drop(replica);
    kill(Pid::from_raw(receiver), Signal::SIGSTOP).expect("SIGSTOP the WAL receiver");

    // Write well past the lag limit.
    let mut primary = PgConnection::connect_with(&cluster.topology().rw_options())
        .await
        .expect("connect rw");
    sqlx::query("CREATE TABLE IF NOT EXISTS filler (payload text)")
        .execute(&mut primary)
        .await
        .expect("create filler");
    let mut lag = 0;
    for _ in 0..40 {
        sqlx::query(
            "INSERT INTO filler SELECT repeat(md5(g::text), 30) FROM generate_series(1, 500) g",
        )
        .execute(&mut primary)
        .await
        .expect("bulk write");
        lag = lsn(&cluster, 0, false)
            .await
            .saturating_sub(lsn(&cluster, 2, true).await);
        if lag > 4 * MAX_LAG {
            break;
        }
    }
    drop(primary);
    assert!(lag > 4 * MAX_LAG, "pg-2 did not fall behind: {lag} bytes");
    // pg-1 keeps up.
    let target = lsn(&cluster, 0, false).await;
    let deadline = Instant::now() + BOUND;
    while lsn(&cluster, 1, true).await < target {
        assert!(Instant::now() < deadline, "pg-1 never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("measured: pg-2 is {lag} bytes behind the primary (limit {MAX_LAG})");

    let mark = cluster.event_mark();
    let first = scenario::kill_primary(&mut cluster, &writer, BOUND)
        .await
        .expect("the engine fails over to the caught-up replica");
    println!(
        "{}",
        first.timeline.lines("pg-0 killed (SIGKILL)").join("\n")
    );
    assert_eq!(first.new_primary, 1, "only pg-1 is within the lag limit");
    let lost_bytes = first
        .record
        .lost_bytes
        .expect("loss is measured in async mode");
    assert!(lost_bytes <= MAX_LAG, "lost {lost_bytes} bytes > {MAX_LAG}");
    let missing = ledger::missing_on(
        &cluster.member_app_options(1).expect("member"),
        &writer.report(),
    )
    .await
    .expect("read");
    println!(
        "measured: RTO {} ms; WAL not received {lost_bytes} bytes; acknowledged commits missing on pg-1: {}",
        first.timeline.rto_ms().unwrap_or_default(),
        missing.len()
    );

    // Only the lagging replica is left once pg-1 dies.
    let pg2 = NodeId::new("pg-2");
    let epoch = cluster.state().expect("state").epoch;
    let second_mark = cluster.event_mark();
    cluster.topology_mut().kill(1).expect("kill pg-1");
    let deadline = Instant::now() + BOUND;
    let refusal = loop {
        let refused = cluster
            .events_since(second_mark)
            .into_iter()
            .find_map(|event| match event {
                DriverEvent::Engine(event) => match event.kind {
                    EventKind::Lifecycle(Lifecycle::FailoverRefused { reason }) => Some(reason),
                    _ => None,
                },
                _ => None,
            });
        if let Some(reason) = refused {
            break reason;
        }
        assert!(
            Instant::now() < deadline,
            "the engine never refused: {:?}",
            cluster.state()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("engine: failover refused: {refusal}");
    assert!(
        refusal.contains("pg-2") && refusal.contains("maximumLagOnFailover"),
        "the refusal names the replica and the limit: {refusal}"
    );
    // It keeps refusing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = cluster.state().expect("state");
    assert_eq!(state.phase, Phase::Electing, "{state:?}");
    assert_eq!(state.epoch, epoch + 1);
    assert!(
        state
            .in_flight
            .as_ref()
            .and_then(|record| record.refusal.as_deref())
            .is_some_and(|reason| reason.contains("maximumLagOnFailover")),
        "{state:?}"
    );
    let promoted_pg2 = cluster.events_since(mark).into_iter().any(|event| {
        matches!(
            event,
            DriverEvent::Engine(ref e) if matches!(
                &e.kind,
                EventKind::Elected { node, .. } | EventKind::Lifecycle(Lifecycle::Promoted { node }) if *node == pg2
            )
        )
    });
    assert!(!promoted_pg2, "the lagging replica was elected");
    let status = cluster.instance_status(2).await.expect("status");
    assert_eq!(status.role, InstanceRole::Replica, "{status:?}");
    let report = writer.stop().await;
    println!(
        "measured: {} commits acknowledged, {} failed attempts",
        report.acks.len(),
        report.failed_attempts
    );
}
