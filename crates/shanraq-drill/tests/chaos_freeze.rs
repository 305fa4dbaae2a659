//! A frozen primary (SIGSTOP of its instance manager and postgres: sockets stay open,
//! nothing answers) under continuous writes: the engine fails over to a synchronous standby
//! without losing an acknowledged commit; once thawed, the old primary acknowledges no write,
//! is fenced, and rejoins through pg_rewind as a streaming replica of the new primary. A watch
//! checks that two instances never answer `/primary` at once nor both acknowledge a write.

mod common;
use common::BOUND;

use std::time::{Duration, Instant};

use shanraq_drill::ledger::{self};
use shanraq_drill::scenario;
use shanraq_drill::{ClusterOptions, LocalCluster};
use shanraq_ha::adapters::driver::system_clock;
use shanraq_ha::wire::InstanceRole;
use sqlx::{Connection, PgConnection};

const MARKER_ID: i64 = -1;

/// Tries one commit straight on member `index`, bounded; `Ok` only if it was acknowledged.
async fn direct_write(cluster: &LocalCluster, index: usize, id: i64) -> Result<(), String> {
    let options = cluster.member_app_options(index).expect("member");
    let write = async {
        let mut connection = PgConnection::connect_with(&options)
            .await
            .map_err(|error| format!("connect: {error}"))?;
        sqlx::query("INSERT INTO ledger (id) VALUES ($1)")
            .bind(id)
            .execute(&mut connection)
            .await
            .map_err(|error| format!("insert: {error}"))?;
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .map_err(|_| "no acknowledgement within 5 s".to_owned())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_is_failed_over_then_fenced_and_rejoins_through_pg_rewind() {
    let cluster = common::converged(ClusterOptions::synchronous(3)).await;
    let watch = cluster
        .watch(Duration::from_millis(50), Duration::from_secs(120))
        .await
        .expect("watch starts");
    let writer = common::writing(&cluster).await;

    let epoch = cluster.state().expect("state").epoch;
    let mark = cluster.event_mark();
    let frozen_at = system_clock()();
    cluster.topology().stop(0).expect("SIGSTOP pg-0");
    let outcome = scenario::finish(&cluster, &writer, 0, epoch, mark, frozen_at, BOUND)
        .await
        .expect("the engine fails over away from the frozen primary");
    let new = outcome.new_primary;
    println!(
        "{}",
        outcome.timeline.lines("pg-0 frozen (SIGSTOP)").join("\n")
    );
    println!(
        "measured: RTO {} ms (freeze -> first commit on pg-{new})",
        outcome.timeline.rto_ms().unwrap_or_default()
    );
    assert_ne!(new, 0);
    assert_eq!(outcome.state.epoch, epoch + 1);
    assert!(
        outcome.record.detail.fence_error.is_some(),
        "a frozen primary cannot confirm its fence: {:?}",
        outcome.record
    );
    assert!(
        ledger::missing_on(
            &cluster.member_app_options(new).expect("member"),
            &writer.report()
        )
        .await
        .expect("read")
        .is_empty(),
        "acknowledged commits lost"
    );

    // Thawed, the old primary must not acknowledge a write: it has no standby any more (its
    // commit waits) and the engine fences it as a stale primary.
    cluster.topology().cont(0).expect("SIGCONT pg-0");
    let thawed = Instant::now();
    let attempt = direct_write(&cluster, 0, MARKER_ID).await;
    println!("write straight to the thawed pg-0: {attempt:?}");
    assert!(
        attempt.is_err(),
        "the thawed old primary acknowledged a write"
    );

    cluster
        .wait_converged(&[0, 1, 2], BOUND)
        .await
        .expect("pg-0 rejoins as a replica of the new primary");
    println!(
        "measured: pg-0 streams from pg-{new} {} ms after SIGCONT",
        thawed.elapsed().as_millis()
    );
    let status = cluster.instance_status(0).await.expect("status");
    assert_eq!(status.role, InstanceRole::Replica, "{status:?}");
    assert_eq!(status.streaming, Some(true), "{status:?}");
    // The manager logs the demote once it returns, a moment after postgres already streams.
    let deadline = Instant::now() + BOUND;
    while !cluster.topology().log(0).contains("demoted") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = cluster.topology().log(0);
    let demoted: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("demoted"))
        .collect();
    println!("pg-0 manager: {}", demoted.join("\n"));
    assert!(
        demoted
            .iter()
            .any(|line| line.contains("rewound with pg_rewind")),
        "pg-0 should rejoin through pg_rewind:\n{}",
        demoted.join("\n")
    );
    let refused = direct_write(&cluster, 0, MARKER_ID).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|error| error.contains("read-only")),
        "a replica must refuse writes: {refused:?}"
    );

    let report = writer.stop().await;
    let seen = watch.stop().await;
    println!(
        "measured: {} commits acknowledged, {} failed attempts, {} split-brain samples",
        report.acks.len(),
        report.failed_attempts,
        seen.samples
    );
    // The thawed old primary stays out of recovery until it is fenced, but cannot commit:
    // the write probe, not pg_is_in_recovery(), says whether two members took writes.
    common::assert_one_primary_at_a_time(&seen);
    let on_new = cluster.member_app_options(new).expect("member");
    assert!(
        ledger::missing_on(&on_new, &report)
            .await
            .expect("read")
            .is_empty(),
        "acknowledged commits lost"
    );
    let mut connection = PgConnection::connect_with(&on_new).await.expect("connect");
    let marker: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger WHERE id = $1")
        .bind(MARKER_ID)
        .fetch_one(&mut connection)
        .await
        .expect("count");
    assert_eq!(
        marker, 0,
        "the old primary's unacknowledged write must not survive"
    );
}
