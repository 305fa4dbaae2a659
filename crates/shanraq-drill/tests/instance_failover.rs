//! Failover and switchover driven through the instance managers' commands, as the operator
//! drives them: fence, promote, repoint, demote. A former primary whose timeline diverged
//! rejoins through pg_rewind and loses exactly its unreplicated writes; a planned switchover
//! loses nothing and re-points the other replica without a restart.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use shanraq_testkit::{LocalTopology, TopologyOptions, free_port};
use sqlx::{Connection, PgConnection};

const BOUND: Duration = Duration::from_secs(30);

async fn connect(topology: &LocalTopology, index: usize) -> PgConnection {
    PgConnection::connect_with(&topology.member_options(index).expect("member"))
        .await
        .expect("connect to member")
}

async fn ids(connection: &mut PgConnection) -> Vec<i32> {
    sqlx::query_scalar("SELECT id FROM ledger ORDER BY id")
        .fetch_all(connection)
        .await
        .expect("select ids")
}

/// Waits until member `index` shows exactly `expected` ids.
async fn wait_for_ids(topology: &LocalTopology, index: usize, expected: &[i32]) {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Ok(mut connection) =
            PgConnection::connect_with(&topology.member_options(index).expect("member")).await
            && let Ok(found) = sqlx::query_scalar::<_, i32>("SELECT id FROM ledger ORDER BY id")
                .fetch_all(&mut connection)
                .await
            && found == expected
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pg-{index} never showed ids {expected:?}; log:\n{}",
            topology.log(index)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_diverged_former_primary_rejoins_through_pg_rewind() {
    let topology = LocalTopology::start(common::binary(), TopologyOptions::asynchronous(2))
        .await
        .expect("topology starts");
    let mut primary = connect(&topology, 0).await;
    sqlx::query("CREATE TABLE ledger (id int PRIMARY KEY)")
        .execute(&mut primary)
        .await
        .expect("create");
    sqlx::query("INSERT INTO ledger VALUES (1)")
        .execute(&mut primary)
        .await
        .expect("insert");
    wait_for_ids(&topology, 1, &[1]).await;

    // Cut pg-1 off from pg-0: stop it and point it at a port where nothing listens.
    common::command_ok(
        &topology,
        1,
        "/fence",
        json!({ "epoch": 2, "timeout_ms": 5000 }),
    )
    .await;
    let nowhere =
        json!({ "host": "127.0.0.1", "port": free_port().expect("port"), "name": "nowhere" });
    common::command_ok(
        &topology,
        1,
        "/repoint",
        json!({ "epoch": 2, "upstream": nowhere }),
    )
    .await;
    // pg-0 keeps writing: this row never reaches pg-1.
    sqlx::query("INSERT INTO ledger VALUES (2)")
        .execute(&mut primary)
        .await
        .expect("insert diverging row");
    primary.close().await.expect("close");

    // Fail over to pg-1 while pg-0 is fenced.
    let fenced = common::command_ok(
        &topology,
        0,
        "/fence",
        json!({ "epoch": 2, "timeout_ms": 5000 }),
    )
    .await;
    assert_eq!(fenced["status"]["role"], "fenced", "{fenced}");
    assert!(
        fenced["status"]["final_lsn"].as_u64().is_some(),
        "clean stop records final_lsn: {fenced}"
    );
    assert_eq!(topology.get(0, "/primary").await.expect("get"), 503);
    let started = Instant::now();
    let promoted = common::command_ok(&topology, 1, "/promote", json!({ "epoch": 2 })).await;
    println!(
        "measured: promote of a fenced replica (start + pg_promote) {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(promoted["status"]["role"], "primary", "{promoted}");
    assert_eq!(promoted["status"]["timeline"], 2, "{promoted}");
    assert_eq!(topology.get(1, "/primary").await.expect("get"), 200);
    topology
        .wait_routed(1, Instant::now() + BOUND)
        .await
        .expect("HAProxy rw follows the promoted instance");
    let mut rw = PgConnection::connect_with(&topology.rw_options())
        .await
        .expect("connect rw");
    sqlx::query("INSERT INTO ledger VALUES (3)")
        .execute(&mut rw)
        .await
        .expect("write on new primary");

    // The old primary rejoins: its timeline diverged, so pg_rewind has real work.
    let started = Instant::now();
    let demoted = common::command_ok(
        &topology,
        0,
        "/demote",
        json!({ "epoch": 2, "upstream": common::upstream(&topology, 1) }),
    )
    .await;
    println!(
        "measured: demote with pg_rewind {} ms",
        started.elapsed().as_millis()
    );
    let message = demoted["message"].as_str().unwrap_or_default();
    assert!(message.contains("rewound with pg_rewind"), "{demoted}");
    assert_eq!(demoted["status"]["role"], "replica", "{demoted}");
    assert_eq!(demoted["status"]["fenced"], false, "{demoted}");
    // Row 2 was never replicated: rewound away. Row 3 arrives from the new primary.
    wait_for_ids(&topology, 0, &[1, 3]).await;
    sqlx::query("INSERT INTO ledger VALUES (4)")
        .execute(&mut rw)
        .await
        .expect("write");
    wait_for_ids(&topology, 0, &[1, 3, 4]).await;
    let status = topology.status(0).await.expect("status");
    assert_eq!(status["timeline"], 2, "{status}");
    assert_eq!(status["streaming"], true, "{status}");
    assert_eq!(topology.get(0, "/replica").await.expect("get"), 200);
    assert_eq!(topology.get(0, "/primary").await.expect("get"), 503);
}

#[tokio::test]
async fn a_switchover_loses_nothing_and_repoints_the_other_replica() {
    let topology = LocalTopology::start(common::binary(), TopologyOptions::default())
        .await
        .expect("topology starts");
    let mut rw = PgConnection::connect_with(&topology.rw_options())
        .await
        .expect("connect rw");
    sqlx::query("CREATE TABLE ledger (id int PRIMARY KEY)")
        .execute(&mut rw)
        .await
        .expect("create");
    sqlx::query("INSERT INTO ledger SELECT generate_series(1, 100)")
        .execute(&mut rw)
        .await
        .expect("insert");
    rw.close().await.expect("close");

    // Stop writes on the old primary; its clean stop gives the last LSN it wrote.
    let fenced = common::command_ok(
        &topology,
        0,
        "/fence",
        json!({ "epoch": 2, "timeout_ms": 10000 }),
    )
    .await;
    let final_lsn = fenced["status"]["final_lsn"]
        .as_u64()
        .expect("final_lsn after a clean stop");
    let deadline = Instant::now() + BOUND;
    loop {
        let status = topology.status(1).await.expect("status");
        if status["replayed_lsn"]
            .as_u64()
            .is_some_and(|lsn| lsn >= final_lsn)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pg-1 never replayed {final_lsn}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let promoted = common::command_ok(&topology, 1, "/promote", json!({ "epoch": 2 })).await;
    println!(
        "measured: pg_promote of a running replica {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(promoted["status"]["role"], "primary", "{promoted}");
    // pg-2 follows the new primary without a restart.
    let started = Instant::now();
    common::command_ok(
        &topology,
        2,
        "/repoint",
        json!({ "epoch": 2, "upstream": common::upstream(&topology, 1) }),
    )
    .await;
    let deadline = Instant::now() + BOUND;
    loop {
        let status = topology.status(1).await.expect("status");
        let streaming = status["replication"].as_array().is_some_and(|peers| {
            peers
                .iter()
                .any(|peer| peer["application_name"] == "pg-2" && peer["state"] == "streaming")
        });
        if streaming {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pg-2 never streamed from pg-1: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "measured: repoint until streaming from the new primary {} ms",
        started.elapsed().as_millis()
    );
    common::command_ok(
        &topology,
        0,
        "/demote",
        json!({ "epoch": 2, "upstream": common::upstream(&topology, 1) }),
    )
    .await;

    topology
        .wait_routed(1, Instant::now() + BOUND)
        .await
        .expect("rw follows pg-1");
    let mut rw = PgConnection::connect_with(&topology.rw_options())
        .await
        .expect("connect rw");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(&mut rw)
        .await
        .expect("count");
    assert_eq!(count, 100, "a switchover loses nothing");
    // Synchronous commit on the new primary needs one of the re-pointed standbys: it returns.
    sqlx::query("INSERT INTO ledger VALUES (101)")
        .execute(&mut rw)
        .await
        .expect("write after switchover");
    let all: Vec<i32> = (1..=101).collect();
    for index in [0, 2] {
        wait_for_ids(&topology, index, &all).await;
    }
    let mut old = connect(&topology, 0).await;
    assert_eq!(ids(&mut old).await.len(), 101);
}
