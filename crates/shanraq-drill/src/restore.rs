//! `shanraq drill restore`: backup verification on 127.0.0.1. Starts a real S3-compatible
//! store (SeaweedFS with TLS and access keys), a local cluster whose ShanraqCluster has
//! `spec.backup`, writes rows, takes a full backup, writes more and waits until the WAL holding
//! them is archived; then restores the latest backup and WAL into a scratch cluster bootstrapped
//! through `spec.bootstrap.recovery`, checks that it holds exactly the source's rows, and
//! reports the backup, archive and restore times. Every process is gone when it returns.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use shanraq_api::backup::RecoverySpec;
use shanraq_ha::wire::BackupKind;
use shanraq_testkit::S3Server;
use sqlx::{Connection, PgConnection};

use super::backup::{self, DrillBackup, ObjectStore};
use super::error::DrillError;
use super::local::{ClusterOptions, LocalCluster, check_dependencies};

const STEP_TIMEOUT: Duration = Duration::from_secs(120);
const SOURCE: &str = "drill";
const SCRATCH: &str = "drill-restore";

/// What the drill measured.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    /// Rows written before and after the backup, each its own commit.
    pub rows: u32,
    pub backup_label: String,
    /// The instance that took the backup, and whether it was a replica (`backup-standby`).
    pub backup_instance: String,
    pub backup_from_standby: bool,
    /// `POST /backup` until pgBackRest finished.
    pub backup_ms: u64,
    /// `pg_switch_wal()` until the primary had archived the segment.
    pub archive_ms: u64,
    /// Start of the scratch cluster until its restored primary took writes.
    pub restore_ms: u64,
    /// The scratch cluster's `count(*)` and `md5` of the rows, equal to the source's.
    pub restored_rows: i64,
    pub checksum: String,
    pub verified: bool,
}

fn timeout(what: &str) -> DrillError {
    DrillError::Timeout {
        what: what.to_owned(),
        seconds: STEP_TIMEOUT.as_secs(),
        detail: String::new(),
    }
}

fn sql(what: &str) -> impl FnOnce(sqlx::Error) -> DrillError + '_ {
    move |source| DrillError::Sql {
        what: what.to_owned(),
        source,
    }
}

fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn rows_and_checksum(connection: &mut PgConnection) -> Result<(i64, String), DrillError> {
    sqlx::query_as(
        "SELECT count(*), coalesce(md5(string_agg(id::text, ',' ORDER BY id)), '') FROM drill_restore",
    )
    .fetch_one(connection)
    .await
    .map_err(sql("checksum of drill_restore"))
}

async fn insert(
    connection: &mut PgConnection,
    ids: std::ops::RangeInclusive<u32>,
) -> Result<(), DrillError> {
    for id in ids {
        sqlx::query("INSERT INTO drill_restore (id) VALUES ($1)")
            .bind(i64::from(id))
            .execute(&mut *connection)
            .await
            .map_err(sql("insert into drill_restore"))?;
    }
    Ok(())
}

/// Runs the drill; `say` gets one line per step.
pub async fn run(
    binary: &Path,
    rows: u32,
    say: impl Fn(&str),
) -> Result<RestoreReport, DrillError> {
    check_dependencies()?;
    say("starting the S3 store (SeaweedFS, TLS, random access keys)");
    let s3 = S3Server::start("shanraq-drill").await?;
    let store = ObjectStore::of(&s3);
    say("starting a 3-instance cluster with spec.backup (pgBackRest, WAL archiving)");
    let source = LocalCluster::start(
        binary,
        ClusterOptions::synchronous(3).with_backup(DrillBackup::new(SOURCE, store.clone())),
    )
    .await?;
    let primary = source.primary_index()?;
    let mut connection = PgConnection::connect_with(&source.member_app_options(primary)?)
        .await
        .map_err(sql("connect to the primary"))?;
    sqlx::query("CREATE TABLE drill_restore (id bigint PRIMARY KEY)")
        .execute(&mut connection)
        .await
        .map_err(sql("create drill_restore"))?;
    insert(&mut connection, 1..=rows).await?;

    say("taking a full backup (from a streaming replica, with the primary's help)");
    let started = Instant::now();
    let (plan, reply) = backup::take_planned(source.topology(), BackupKind::Full).await?;
    say(&format!("the backup ran on {}", plan.instance));
    let backup_ms = millis(started);
    let taken = match (reply.ok, reply.backup) {
        (true, Some(taken)) => taken,
        _ => {
            return Err(DrillError::Operator {
                problem: format!("the backup failed: {}", reply.message),
            });
        }
    };
    insert(&mut connection, rows + 1..=rows * 2).await?;
    let (source_rows, source_checksum) = rows_and_checksum(&mut connection).await?;

    say("switching the WAL segment and waiting until it is archived");
    let started = Instant::now();
    let segment: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .fetch_one(&mut connection)
        .await
        .map_err(sql("pg_switch_wal"))?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let archived = source
            .instance_status(primary)
            .await
            .ok()
            .and_then(|status| status.archiver)
            .and_then(|archiver| archiver.last_archived_wal);
        if archived.is_some_and(|wal| wal >= segment) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(timeout(&format!("archiving {segment}")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let archive_ms = millis(started);
    drop(connection);

    say("restoring the latest backup and WAL into a scratch cluster (spec.bootstrap.recovery)");
    let started = Instant::now();
    let scratch = LocalCluster::start(
        binary,
        ClusterOptions::synchronous(2).with_backup(DrillBackup::new(SCRATCH, store).recovering(
            RecoverySpec {
                source: SOURCE.to_owned(),
                target_time: None,
                target_lsn: None,
                latest: Some(true),
            },
        )),
    )
    .await?;
    let restore_ms = millis(started);
    let mut restored = PgConnection::connect_with(&scratch.member_app_options(0)?)
        .await
        .map_err(sql("connect to the restored primary"))?;
    let (restored_rows, checksum) = rows_and_checksum(&mut restored).await?;
    drop(restored);
    drop(scratch);
    drop(source);
    drop(s3);
    Ok(RestoreReport {
        rows: rows * 2,
        backup_label: taken.label,
        backup_from_standby: plan.from_standby(),
        backup_instance: plan.instance,
        backup_ms,
        archive_ms,
        restore_ms,
        verified: restored_rows == source_rows && checksum == source_checksum,
        restored_rows,
        checksum,
    })
}
