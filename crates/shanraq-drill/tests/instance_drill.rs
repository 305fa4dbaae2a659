//! The unplanned failover drill on a synchronous three-instance topology: the primary's whole
//! instance is SIGKILLed, the operator's commands promote a synchronous replica and re-point
//! the other, HAProxy's rw follows, no acknowledged write is lost, and the old primary, started
//! again, waits fenced until it is demoted and then rejoins as a replica.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use shanraq_testkit::{LocalTopology, TopologyOptions};
use sqlx::{Connection, PgConnection};

const BOUND: Duration = Duration::from_secs(60);

#[tokio::test]
async fn killing_the_primary_then_promoting_a_sync_replica_loses_no_acknowledged_write() {
    let mut topology = LocalTopology::start(common::binary(), TopologyOptions::default())
        .await
        .expect("topology starts");
    let mut rw = PgConnection::connect_with(&topology.rw_options())
        .await
        .expect("connect rw");
    sqlx::query("CREATE TABLE ledger (id int PRIMARY KEY)")
        .execute(&mut rw)
        .await
        .expect("create");
    for id in 1..=50 {
        sqlx::query("INSERT INTO ledger VALUES ($1)")
            .bind(id)
            .execute(&mut rw)
            .await
            .expect("acknowledged write");
    }
    drop(rw);

    topology.kill(0).expect("kill pg-0");
    assert!(
        topology.get(0, "/health").await.is_err(),
        "the killed manager must not answer"
    );

    // Elect the replica that received the most WAL, as the operator does.
    let mut best = (1, 0_u64);
    for index in 1..3 {
        let status = topology.status(index).await.expect("status");
        let received = status["received_lsn"].as_u64().unwrap_or(0);
        if received > best.1 {
            best = (index, received);
        }
    }
    let (target, _) = best;
    let other = 3 - target;
    let killed_at = Instant::now();
    let promoted = common::command_ok(&topology, target, "/promote", json!({ "epoch": 2 })).await;
    let promote_ms = killed_at.elapsed().as_millis();
    assert_eq!(promoted["status"]["role"], "primary", "{promoted}");
    common::command_ok(
        &topology,
        other,
        "/repoint",
        json!({ "epoch": 2, "upstream": common::upstream(&topology, target) }),
    )
    .await;
    topology
        .wait_routed(target, Instant::now() + BOUND)
        .await
        .expect("rw follows the new primary");
    let routed_ms = killed_at.elapsed().as_millis();
    println!(
        "measured: promote returned after {promote_ms} ms; HAProxy rw routed to pg-{target} after {routed_ms} ms (both from the promote request)"
    );

    let mut rw = PgConnection::connect_with(&topology.rw_options())
        .await
        .expect("connect rw");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(&mut rw)
        .await
        .expect("count");
    assert_eq!(count, 50, "every acknowledged write survives (RPO 0)");
    // Synchronous commit on the new primary is acknowledged by the re-pointed replica.
    sqlx::query("INSERT INTO ledger VALUES (51)")
        .execute(&mut rw)
        .await
        .expect("write on the new primary");

    // The old primary comes back fenced, never writable on its own, then rejoins.
    topology.restart(0).expect("restart pg-0");
    let deadline = Instant::now() + BOUND;
    loop {
        let status = topology.status(0).await.ok();
        if status
            .as_ref()
            .is_some_and(|status| status["role"] == "fenced")
        {
            break;
        }
        assert!(Instant::now() < deadline, "pg-0 never reported fenced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(topology.get(0, "/primary").await.expect("get"), 503);
    let demoted = common::command_ok(
        &topology,
        0,
        "/demote",
        json!({ "epoch": 2, "upstream": common::upstream(&topology, target) }),
    )
    .await;
    assert_eq!(demoted["status"]["role"], "replica", "{demoted}");
    let deadline = Instant::now() + BOUND;
    loop {
        let mut old = PgConnection::connect_with(&topology.member_options(0).expect("member"))
            .await
            .expect("connect pg-0");
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger")
            .fetch_one(&mut old)
            .await
            .expect("count on pg-0");
        if count == 51 {
            break;
        }
        assert!(Instant::now() < deadline, "pg-0 never caught up: {count}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
