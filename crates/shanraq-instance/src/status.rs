//! What postgres itself says about its role and WAL positions, queried over a small pool on
//! loopback, turned into the wire's `InstanceStatus` pieces. Every query is bounded in time so
//! a hung server makes `/status` report "not answering" instead of hanging HAProxy's checks.

use std::time::Duration;

use shanraq_ha::wire::{Lsn, ReplicationPeer};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{PgConnection, Row};

use crate::args::Settings;
use crate::error::InstanceError;

pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

pub fn connect_options(settings: &Settings) -> PgConnectOptions {
    PgConnectOptions::new_without_pgpass()
        .host(settings.local_host())
        .port(settings.pg_port)
        .username("postgres")
        .password(settings.superuser_password.expose())
        .database("postgres")
        .application_name("shanraq-instance")
        .ssl_mode(PgSslMode::Disable)
}

/// A lazily connecting pool to the local postgres; one per postmaster start, so connections
/// never outlive the server they were opened to.
pub fn pool(settings: &Settings) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .min_connections(0)
        .acquire_timeout(QUERY_TIMEOUT)
        .idle_timeout(Some(Duration::from_secs(60)))
        .connect_lazy_with(connect_options(settings))
}

/// Postgres' answer about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub in_recovery: bool,
    pub timeline: Option<u32>,
    pub current_lsn: Option<Lsn>,
    pub received_lsn: Option<Lsn>,
    pub replayed_lsn: Option<Lsn>,
    pub replay_paused: Option<bool>,
    pub streaming: Option<bool>,
    pub replay_lag_seconds: Option<f64>,
    pub synchronous_standby_names: Option<String>,
    pub replication: Vec<ReplicationPeer>,
}

const SELF_QUERY: &str = "SELECT pg_is_in_recovery(),
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
  pg_last_wal_receive_lsn()::text,
  pg_last_wal_replay_lsn()::text,
  CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,
  CASE WHEN pg_is_in_recovery()
    THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver),
                  (SELECT timeline_id FROM pg_control_checkpoint()))
    ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
  END,
  (SELECT status FROM pg_stat_wal_receiver),
  CASE WHEN pg_is_in_recovery() THEN
    CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0.0
         ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 END
  END,
  current_setting('synchronous_standby_names')";

const REPLICATION_QUERY: &str = "SELECT application_name, COALESCE(state, ''),
  COALESCE(sync_state, ''), sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text
  FROM pg_stat_replication ORDER BY application_name";

fn lsn(text: Option<String>) -> Option<Lsn> {
    text.as_deref().and_then(Lsn::parse)
}

async fn bounded<T>(
    query: &'static str,
    future: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, InstanceError> {
    match tokio::time::timeout(QUERY_TIMEOUT, future).await {
        Ok(result) => result.map_err(|source| InstanceError::Sql { query, source }),
        Err(_) => Err(InstanceError::Timeout {
            what: format!("postgres query `{query}`"),
            seconds: QUERY_TIMEOUT.as_secs(),
        }),
    }
}

pub async fn observe(pool: &PgPool) -> Result<Observed, InstanceError> {
    let row = bounded("self status", sqlx::query(SELF_QUERY).fetch_one(pool)).await?;
    let get = |index: usize| -> Result<Option<String>, InstanceError> {
        row.try_get(index).map_err(|source| InstanceError::Sql {
            query: "self status",
            source,
        })
    };
    let in_recovery: bool = row.try_get(0).map_err(|source| InstanceError::Sql {
        query: "self status",
        source,
    })?;
    let timeline: Option<i32> = row.try_get(5).map_err(|source| InstanceError::Sql {
        query: "self status",
        source,
    })?;
    let paused: Option<bool> = row.try_get(4).map_err(|source| InstanceError::Sql {
        query: "self status",
        source,
    })?;
    let lag: Option<f64> = row.try_get(7).map_err(|source| InstanceError::Sql {
        query: "self status",
        source,
    })?;
    let receiver = get(6)?;
    let mut observed = Observed {
        in_recovery,
        timeline: timeline.and_then(|tli| u32::try_from(tli).ok()),
        current_lsn: lsn(get(1)?),
        received_lsn: lsn(get(2)?),
        replayed_lsn: lsn(get(3)?),
        replay_paused: paused,
        streaming: in_recovery.then(|| receiver.as_deref() == Some("streaming")),
        replay_lag_seconds: lag,
        synchronous_standby_names: get(8)?,
        replication: Vec::new(),
    };
    if !in_recovery {
        let rows = bounded(
            "pg_stat_replication",
            sqlx::query(REPLICATION_QUERY).fetch_all(pool),
        )
        .await?;
        for row in rows {
            let text = |index: usize| -> Option<String> { row.try_get(index).ok().flatten() };
            observed.replication.push(ReplicationPeer {
                application_name: text(0).unwrap_or_default(),
                state: text(1).unwrap_or_default(),
                sync_state: text(2).unwrap_or_default(),
                sent_lsn: lsn(text(3)),
                write_lsn: lsn(text(4)),
                flush_lsn: lsn(text(5)),
                replay_lsn: lsn(text(6)),
            });
        }
    }
    Ok(observed)
}

/// `pg_is_in_recovery()`, for `/primary` and `/replica`.
pub async fn in_recovery(pool: &PgPool) -> Result<bool, InstanceError> {
    bounded(
        "pg_is_in_recovery",
        sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(pool),
    )
    .await
}

/// Waits until no WAL receiver runs (`pg_stat_wal_receiver` is empty), after
/// `primary_conninfo` was emptied: only then has the replica acknowledged its last byte.
pub async fn wait_wal_receiver_gone(pool: &PgPool, timeout: Duration) -> Result<(), InstanceError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let receivers: i64 = bounded(
            "pg_stat_wal_receiver",
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_wal_receiver").fetch_one(pool),
        )
        .await?;
        if receivers == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(InstanceError::Timeout {
                what: "waiting for the WAL receiver to stop after detaching".to_string(),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `SELECT 1`, for `/health` and for waiting until postgres accepts connections.
pub async fn ping(pool: &PgPool) -> Result<(), InstanceError> {
    bounded("SELECT 1", sqlx::query("SELECT 1").execute(pool))
        .await
        .map(|_| ())
}

/// `CHECKPOINT` on another instance of the cluster (same superuser password).
pub async fn checkpoint_remote(
    settings: &Settings,
    host: &str,
    port: u16,
) -> Result<(), InstanceError> {
    use sqlx::Connection;
    let options = connect_options(settings).host(host).port(port);
    let mut connection =
        bounded("connect to upstream", PgConnection::connect_with(&options)).await?;
    tokio::time::timeout(
        Duration::from_secs(30),
        sqlx::query("CHECKPOINT").execute(&mut connection),
    )
    .await
    .map_err(|_| InstanceError::Timeout {
        what: "CHECKPOINT on the upstream".to_string(),
        seconds: 30,
    })?
    .map_err(|source| InstanceError::Sql {
        query: "CHECKPOINT",
        source,
    })?;
    let _ = connection.close().await;
    Ok(())
}

/// One connection on its own, for statements that must not share a session.
pub async fn connect(settings: &Settings) -> Result<PgConnection, InstanceError> {
    use sqlx::Connection;
    bounded(
        "connect",
        PgConnection::connect_with(&connect_options(settings)),
    )
    .await
}

/// `ALTER SYSTEM SET name = 'value'` then `pg_reload_conf()`: a setting that takes effect without
/// a restart (primary_conninfo since PostgreSQL 13, synchronous_standby_names). `name` is one of
/// the manager's own setting names, never user input; the value is quoted.
pub async fn alter_system(
    pool: &sqlx::PgPool,
    name: &'static str,
    value: &str,
) -> Result<(), InstanceError> {
    let statement = format!(
        "ALTER SYSTEM SET {name} = {}",
        crate::config::quote_conf(value)
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(pool)
        .await
        .map_err(|source| InstanceError::Sql {
            query: "ALTER SYSTEM",
            source,
        })?;
    reload(pool).await
}

/// `pg_reload_conf()`: what `ALTER SYSTEM` wrote takes effect.
async fn reload(pool: &PgPool) -> Result<(), InstanceError> {
    sqlx::query("SELECT pg_reload_conf()")
        .execute(pool)
        .await
        .map_err(|source| InstanceError::Sql {
            query: "pg_reload_conf()",
            source,
        })?;
    Ok(())
}

const ARCHIVER_QUERY: &str = "SELECT archived_count, last_archived_wal,
  to_char(last_archived_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
  failed_count, last_failed_wal,
  to_char(last_failed_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
  FROM pg_stat_archiver";

/// `pg_stat_archiver`: the last WAL segment `archive_command` pushed, and the last failure.
pub async fn archiver(pool: &PgPool) -> Result<shanraq_ha::wire::ArchiverStatus, InstanceError> {
    let row = bounded("archiver", sqlx::query(ARCHIVER_QUERY).fetch_one(pool)).await?;
    let sql = |source| InstanceError::Sql {
        query: "pg_stat_archiver",
        source,
    };
    Ok(shanraq_ha::wire::ArchiverStatus {
        archived_count: row.try_get(0).map_err(sql)?,
        last_archived_wal: row.try_get(1).map_err(sql)?,
        last_archived_at: row.try_get(2).map_err(sql)?,
        failed_count: row.try_get(3).map_err(sql)?,
        last_failed_wal: row.try_get(4).map_err(sql)?,
        last_failed_at: row.try_get(5).map_err(sql)?,
    })
}

/// `ALTER SYSTEM RESET` of each setting, then one reload.
pub async fn reset_system(
    pool: &sqlx::PgPool,
    names: &[&'static str],
) -> Result<(), InstanceError> {
    for name in names {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER SYSTEM RESET {name}")))
            .execute(pool)
            .await
            .map_err(|source| InstanceError::Sql {
                query: "ALTER SYSTEM RESET",
                source,
            })?;
    }
    reload(pool).await
}
