//! Point-in-time recovery end to end, on real PostgreSQL 15 and a real S3-compatible store
//! (SeaweedFS with TLS and access keys): a three-instance cluster whose ShanraqCluster has
//! `spec.backup` archives WAL with pgBackRest from its primary, takes a backup on a
//! streaming replica (`backup-standby`, the primary's pgBackRest reached over TLS), keeps writing, fails over once (SIGKILL of the primary; the HA engine
//! promotes a synchronous standby onto timeline 2) and keeps writing. Two new clusters then
//! bootstrap from its backups through `spec.bootstrap.recovery`: one to a time T noted before
//! the failover holds exactly the rows committed at or before T; one to `latest` holds every
//! acknowledged commit, the ones after the failover's timeline switch included. Backup,
//! archive and restore times are printed, never asserted.

mod common;
use common::BOUND;

use std::time::{Duration, Instant};

use shanraq_api::backup::RecoverySpec;
use shanraq_drill::backup::{self, DrillBackup, ObjectStore};
use shanraq_drill::{ClusterOptions, LocalCluster, ledger, scenario};
use shanraq_ha::wire::BackupKind;
use shanraq_testkit::S3Server;
use sqlx::{Connection, PgConnection};

const SOURCE: &str = "payments";

async fn connect_rw(cluster: &LocalCluster) -> PgConnection {
    let deadline = Instant::now() + BOUND;
    loop {
        match PgConnection::connect_with(&cluster.topology().app_rw_options()).await {
            Ok(connection) => return connection,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "no connection through rw: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One commit per row, each acknowledged before the next.
async fn insert(connection: &mut PgConnection, ids: std::ops::RangeInclusive<i32>) {
    for id in ids {
        sqlx::query("INSERT INTO pitr (id) VALUES ($1)")
            .bind(id)
            .execute(&mut *connection)
            .await
            .expect("insert a row");
    }
}

async fn pitr_ids(cluster: &LocalCluster) -> Vec<i32> {
    let mut connection =
        PgConnection::connect_with(&cluster.member_app_options(0).expect("member"))
            .await
            .expect("connect to the restored primary");
    sqlx::query_scalar("SELECT id FROM pitr ORDER BY id")
        .fetch_all(&mut connection)
        .await
        .expect("read pitr")
}

/// Starts a two-instance cluster restored from `SOURCE`, and the time it took until the
/// engine routed writes to its recovered primary.
async fn restored(store: &ObjectStore, name: &str, recovery: RecoverySpec) -> (LocalCluster, u128) {
    let started = Instant::now();
    let cluster = LocalCluster::start(
        common::binary(),
        ClusterOptions::synchronous(2)
            .with_backup(DrillBackup::new(name, store.clone()).recovering(recovery)),
    )
    .await
    .expect("the restored cluster comes up as a normal cluster");
    let elapsed = started.elapsed().as_millis();
    cluster
        .wait_converged(&[0, 1], BOUND)
        .await
        .expect("the replica of the restored cluster clones from its primary");
    (cluster, elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_to_a_time_and_to_the_latest_wal_across_a_failover() {
    let s3 = S3Server::start("shanraq-backups")
        .await
        .expect("the S3 store starts (scripts/install-s3-server builds it)");
    let store = ObjectStore::of(&s3);
    let mut source = common::converged(
        ClusterOptions::synchronous(3).with_backup(DrillBackup::new(SOURCE, store.clone())),
    )
    .await;

    let mut rw = connect_rw(&source).await;
    sqlx::query("CREATE TABLE pitr (id int PRIMARY KEY)")
        .execute(&mut rw)
        .await
        .expect("create pitr");
    insert(&mut rw, 1..=100).await;

    let (code, _) = source
        .topology()
        .command_with_token(
            0,
            "/backup",
            &serde_json::json!({ "type": "full" }),
            Some("wrong"),
        )
        .await
        .expect("POST /backup answers");
    assert_eq!(code, 401, "a backup needs the bearer token");

    // Where the ShanraqBackup controller takes it: on a streaming replica, whose pgBackRest
    // copies the data while the primary's, reached through its TLS server, starts and stops
    // the backup. pgBackRest on a standby cannot back up without the primary, so a completed
    // backup there proves the TLS server, the certificates and the standby options work.
    let started = Instant::now();
    let (plan, reply) = backup::take_planned(source.topology(), BackupKind::Full)
        .await
        .expect("POST /backup answers");
    let backup_ms = started.elapsed().as_millis();
    assert!(reply.ok, "the backup failed: {}", reply.message);
    assert!(plan.from_standby(), "a replica takes the backup: {plan:?}");
    let primary_name = source.topology().member(0).expect("member").name.clone();
    assert_ne!(plan.instance, primary_name, "not the primary");
    let taken = reply.backup.expect("the reply names the backup");
    assert_eq!(taken.kind, "full");
    assert_eq!(taken.instance.as_deref(), Some(plan.instance.as_str()));

    insert(&mut rw, 101..=200).await;
    // pgBackRest keeps a backup's stop time in whole seconds and restores to T from a backup
    // that stopped before T: T must lie past the second the backup ended.
    let deadline = Instant::now() + BOUND;
    loop {
        let past: bool =
            sqlx::query_scalar("SELECT clock_timestamp() >= $1::timestamptz + interval '1 second'")
                .bind(&taken.completed_at)
                .fetch_one(&mut rw)
                .await
                .expect("compare with the backup's stop time");
        if past {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the clock did not pass the backup's stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // T: after row 200's commit was acknowledged, before row 201 is sent.
    let target: String = sqlx::query_scalar(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .fetch_one(&mut rw)
    .await
    .expect("note T");
    insert(&mut rw, 201..=300).await;
    drop(rw);

    let writer = common::writing(&source).await;
    let outcome = scenario::kill_primary(&mut source, &writer, BOUND)
        .await
        .expect("the engine fails over");
    let resumed = writer.acknowledged();
    writer
        .wait_for_acks(resumed + 50, BOUND)
        .await
        .expect("writes resume on the new primary");
    let report = writer.stop().await;
    let mut rw = connect_rw(&source).await;
    insert(&mut rw, 301..=400).await;
    drop(rw);

    // Everything acknowledged is archived once the current segment is: switch it and wait
    // until the new primary has pushed it.
    let new = outcome.new_primary;
    let mut primary = PgConnection::connect_with(&source.member_app_options(new).expect("member"))
        .await
        .expect("connect to the new primary");
    let timeline: i64 = sqlx::query_scalar("SELECT timeline_id::int8 FROM pg_control_checkpoint()")
        .fetch_one(&mut primary)
        .await
        .expect("timeline");
    let started = Instant::now();
    let segment: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .fetch_one(&mut primary)
        .await
        .expect("pg_switch_wal");
    let deadline = Instant::now() + BOUND;
    loop {
        let status = source.instance_status(new).await.expect("status");
        let archived = status
            .archiver
            .as_ref()
            .and_then(|archiver| archiver.last_archived_wal.clone());
        if archived
            .as_deref()
            .is_some_and(|wal| wal >= segment.as_str())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{segment} was never archived: {:?}\n{}",
            status.archiver,
            source.topology().log(new)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let archive_ms = started.elapsed().as_millis();
    drop(primary);

    let (at_t, restore_t_ms) = restored(
        &store,
        "payments-at-t",
        RecoverySpec {
            source: SOURCE.to_owned(),
            target_time: Some(target.clone()),
            target_lsn: None,
            latest: None,
        },
    )
    .await;
    assert_eq!(
        pitr_ids(&at_t).await,
        (1..=200).collect::<Vec<_>>(),
        "the restore to {target} holds exactly the rows committed at or before it"
    );
    drop(at_t);

    let (latest, restore_latest_ms) = restored(
        &store,
        "payments-latest",
        RecoverySpec {
            source: SOURCE.to_owned(),
            target_time: None,
            target_lsn: None,
            latest: Some(true),
        },
    )
    .await;
    assert_eq!(pitr_ids(&latest).await, (1..=400).collect::<Vec<_>>());
    let missing = ledger::missing_on(&latest.member_app_options(0).expect("member"), &report)
        .await
        .expect("read the ledger");
    assert!(
        missing.is_empty(),
        "{} acknowledged commits missing after the restore to latest: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let status = latest.instance_status(0).await.expect("status");
    assert!(
        status.timeline.is_some_and(|tli| i64::from(tli) > timeline),
        "the restored primary runs on a new timeline after {timeline}: {status:?}"
    );

    // The key pair reached pgBackRest through the environment only: no log holds it.
    for (cluster, members) in [(&source, 3), (&latest, 2)] {
        for index in 0..members {
            let log = cluster.topology().log(index);
            assert!(!log.is_empty(), "pg-{index} has a log");
            assert!(
                !log.contains(s3.access_key()) && !log.contains(s3.secret_key()),
                "an S3 key appears in the log of pg-{index}"
            );
        }
    }

    println!(
        "measured: backup {} ({}, on the replica {}) {backup_ms} ms; archive of {segment} after pg_switch_wal {archive_ms} ms; \
         restore to T {restore_t_ms} ms; restore to latest {restore_latest_ms} ms (each until the engine routed writes); \
         {} ledger commits acknowledged across the failover (RTO {} ms)",
        taken.label,
        taken.kind,
        plan.instance,
        report.acks.len(),
        outcome.timeline.rto_ms().unwrap_or_default()
    );
    drop(latest);
    drop(source);
    drop(s3);
}
