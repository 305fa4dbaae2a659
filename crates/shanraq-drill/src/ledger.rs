//! The drill's application: a client that commits one ledger row at a time through HAProxy's
//! `rw` frontend, as the application owner would, and remembers exactly which ids were
//! acknowledged and when. A commit whose answer never came (connection lost, timeout) is not
//! counted: only an acknowledged commit is a promise to the user, so only those are checked on
//! the new primary afterwards. On any error the client drops its connection and reconnects
//! with a short bounded backoff, which is what makes "first write on the new primary" a fair
//! measure of how long writes were unavailable.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shanraq_ha::adapters::driver::system_clock;
use shanraq_ha::postgres::Millis;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::DrillError;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS ledger (\
     id bigint PRIMARY KEY, \
     written_at timestamptz NOT NULL DEFAULT clock_timestamp())";

/// How the writer behaves. Every loop is bounded by `max_rows` and `max_duration`.
#[derive(Clone, Debug)]
pub struct LedgerOptions {
    /// Pause after each acknowledged commit (zero: as fast as the cluster commits).
    pub interval: Duration,
    /// How long one commit may take before the connection is given up: dropped, never
    /// cancelled (no `statement_timeout` either). PostgreSQL reports a commit whose wait for
    /// synchronous replication was cancelled as committed, which would count an unreplicated
    /// commit as acknowledged; sqlx sends no CancelRequest when a connection is dropped.
    pub commit_timeout: Duration,
    pub connect_timeout: Duration,
    /// First and largest pause after a failed attempt.
    pub backoff_first: Duration,
    pub backoff_max: Duration,
    /// The writer stops by itself after this many acknowledged rows ...
    pub max_rows: u64,
    /// ... or after this long.
    pub max_duration: Duration,
    /// Added to the first id, so that two writers of one ledger (one through HAProxy, one
    /// straight to an instance) never take the same ids.
    pub id_offset: i64,
}

impl Default for LedgerOptions {
    fn default() -> LedgerOptions {
        LedgerOptions {
            interval: Duration::from_millis(5),
            commit_timeout: Duration::from_secs(2),
            // Short, as an application's pool would be on a local network: a connection that
            // HAProxy holds while no server is up must not hide when writes are possible again.
            connect_timeout: Duration::from_millis(250),
            backoff_first: Duration::from_millis(5),
            backoff_max: Duration::from_millis(50),
            max_rows: 1_000_000,
            max_duration: Duration::from_secs(600),
            id_offset: 0,
        }
    }
}

/// One acknowledged commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub id: i64,
    /// Wall-clock time the commit returned (same clock as the HA engine's events).
    pub at: Millis,
    /// The address and port of the instance that acknowledged it (`inet_server_addr()`,
    /// `inet_server_port()`): in a network lab every instance listens on the same port.
    pub server: SocketAddr,
}

#[derive(Debug, Default)]
struct Log {
    acks: Vec<Ack>,
    failed_attempts: u64,
    last_error: Option<String>,
}

/// What the writer did.
#[derive(Clone, Debug, Default)]
pub struct LedgerReport {
    pub acks: Vec<Ack>,
    /// Attempts that ended without an acknowledgement (connect or commit errors, timeouts).
    pub failed_attempts: u64,
    pub last_error: Option<String>,
    /// The first id this writer used: its rows are `first_id..`.
    pub first_id: i64,
}

impl LedgerReport {
    /// Acknowledged commits taken at or before `at` and after it. Acknowledgements are stamped
    /// to the millisecond, so one that arrived in the millisecond a fault was injected counts
    /// as before it: a writer that saw its 100th acknowledgement and then had the fault
    /// injected has 100 before, not 99.
    pub fn split_at(&self, at: Millis) -> (usize, usize) {
        let before = self.acks.iter().filter(|ack| ack.at <= at).count();
        (before, self.acks.len() - before)
    }

    /// The first commit acknowledged at or after `at` by the instance at `server`.
    pub fn first_ack_on(&self, server: SocketAddr, at: Millis) -> Option<Ack> {
        first_ack_on(&self.acks, server, at)
    }

    /// The longest time without an acknowledged commit around `[from, to]`: the gaps between
    /// consecutive acknowledgements where the later one came at or after `from` and the
    /// earlier one at or before `to`.
    pub fn max_gap(&self, from: Millis, to: Millis) -> Option<u64> {
        self.acks
            .windows(2)
            .filter(|pair| pair[1].at >= from && pair[0].at <= to)
            .map(|pair| pair[1].at.since(pair[0].at))
            .max()
    }
}

fn first_ack_on(acks: &[Ack], server: SocketAddr, at: Millis) -> Option<Ack> {
    acks.iter()
        .find(|ack| ack.at >= at && ack.server == server)
        .copied()
}

/// A running writer. Stop it with [`Ledger::stop`]; dropping it stops the task too.
#[derive(Debug)]
pub struct Ledger {
    log: Arc<Mutex<Log>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    first_id: i64,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Creates the ledger table (idempotent) through `options`.
/// How long a setup connection (before any write is counted) is retried: on a saturated machine
/// HAProxy's health check may take a member out for a moment, closing a new connection.
const SETUP_CONNECT_BOUND: Duration = Duration::from_secs(15);

/// A connection for the ledger's setup, retried within `SETUP_CONNECT_BOUND` (nothing is
/// acknowledged yet, so a retry changes no figure).
async fn setup_connection(
    options: &PgConnectOptions,
    what: &'static str,
) -> Result<PgConnection, DrillError> {
    let deadline = Instant::now() + SETUP_CONNECT_BOUND;
    loop {
        match PgConnection::connect_with(options).await {
            Ok(connection) => return Ok(connection),
            Err(source) if Instant::now() >= deadline => {
                return Err(DrillError::sql(what, source));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub async fn create_table(options: &PgConnectOptions) -> Result<(), DrillError> {
    let mut connection = setup_connection(options, "connecting to create the ledger table").await?;
    sqlx::query(CREATE_TABLE)
        .execute(&mut connection)
        .await
        .map_err(|source| DrillError::sql("creating the ledger table", source))?;
    let _ = connection.close().await;
    Ok(())
}

impl Ledger {
    /// Creates the table if needed and starts writing with ids above every existing row.
    pub async fn start(
        connect: PgConnectOptions,
        options: LedgerOptions,
    ) -> Result<Ledger, DrillError> {
        create_table(&connect).await?;
        let mut connection = setup_connection(&connect, "connecting the ledger writer").await?;
        let highest: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM ledger")
            .fetch_one(&mut connection)
            .await
            .map_err(|source| DrillError::sql("reading the highest ledger id", source))?;
        let _ = connection.close().await;
        let first_id = highest + 1 + options.id_offset;
        let log = Arc::new(Mutex::new(Log::default()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(write_loop(
            connect,
            options,
            first_id,
            Arc::clone(&log),
            stopped,
        ));
        Ok(Ledger {
            log,
            stop,
            task: Some(task),
            first_id,
        })
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many commits were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.log().acks.len()
    }

    /// What the writer did so far, for error messages.
    fn describe(&self) -> String {
        let log = self.log();
        let last_ack = log.acks.last().map_or_else(
            || "none".to_owned(),
            |ack| format!("id {} on {} at {}", ack.id, ack.server, ack.at),
        );
        format!(
            "{} acknowledged (last: {last_ack}), {} failed attempts, last error: {}",
            log.acks.len(),
            log.failed_attempts,
            log.last_error.as_deref().unwrap_or("none")
        )
    }

    /// A copy of what was written so far.
    pub fn report(&self) -> LedgerReport {
        let log = self.log();
        LedgerReport {
            acks: log.acks.clone(),
            failed_attempts: log.failed_attempts,
            last_error: log.last_error.clone(),
            first_id: self.first_id,
        }
    }

    /// Waits until at least `count` commits were acknowledged.
    pub async fn wait_for_acks(&self, count: usize, timeout: Duration) -> Result<(), DrillError> {
        let deadline = Instant::now() + timeout;
        while self.acknowledged() < count {
            if Instant::now() >= deadline {
                return Err(DrillError::timeout_with(
                    format!("{count} acknowledged ledger commits"),
                    timeout,
                    self.describe(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Waits for the first commit acknowledged at or after `at` by the instance at `server`.
    pub async fn wait_for_ack_on(
        &self,
        server: SocketAddr,
        at: Millis,
        timeout: Duration,
    ) -> Result<Ack, DrillError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ack) = first_ack_on(&self.log().acks, server, at) {
                return Ok(ack);
            }
            if Instant::now() >= deadline {
                return Err(DrillError::timeout_with(
                    format!("a commit acknowledged by the instance at {server}"),
                    timeout,
                    self.describe(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the writer and returns everything it did.
    pub async fn stop(mut self) -> LedgerReport {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.report()
    }
}

async fn write_loop(
    connect: PgConnectOptions,
    options: LedgerOptions,
    first_id: i64,
    log: Arc<Mutex<Log>>,
    mut stopped: watch::Receiver<bool>,
) {
    let clock = system_clock();
    let deadline = Instant::now() + options.max_duration;
    let mut next_id = first_id;
    let mut connection: Option<(PgConnection, SocketAddr)> = None;
    let mut backoff = options.backoff_first;
    let mut acknowledged: u64 = 0;
    let record_failure = |error: WriteError| {
        let mut log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        log.failed_attempts += 1;
        log.last_error = Some(error.to_string());
    };
    while !*stopped.borrow() && acknowledged < options.max_rows && Instant::now() < deadline {
        let attempt = async {
            let (mut conn, server) = match connection.take() {
                Some(open) => open,
                None => connect_writer(&connect, options.connect_timeout).await?,
            };
            let id = next_id;
            next_id += 1;
            let insert = sqlx::query("INSERT INTO ledger (id) VALUES ($1)")
                .bind(id)
                .execute(&mut conn);
            match tokio::time::timeout(options.commit_timeout, insert).await {
                Ok(Ok(_)) => Ok((conn, server, id)),
                // The connection is dropped here: the next attempt reconnects.
                Ok(Err(error)) => Err(WriteError::Commit { id, error }),
                Err(_) => Err(WriteError::CommitTimeout {
                    id,
                    timeout: options.commit_timeout,
                }),
            }
        };
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            _ = stopped.changed() => break,
        };
        match outcome {
            Ok((conn, server, id)) => {
                let at = clock();
                log.lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .acks
                    .push(Ack { id, at, server });
                acknowledged += 1;
                connection = Some((conn, server));
                backoff = options.backoff_first;
                if !options.interval.is_zero() {
                    tokio::time::sleep(options.interval).await;
                }
            }
            Err(error) => {
                record_failure(error);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.backoff_max);
            }
        }
    }
}

/// Why one attempt of the writer failed: kept as the report's `last_error`.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("connect: {0}")]
    Connect(sqlx::Error),
    #[error("connect: no answer within {0:?}")]
    ConnectTimeout(Duration),
    #[error("inet_server_addr(), inet_server_port(): {0}")]
    ServerAddress(sqlx::Error),
    #[error("server address {host:?}: {error}")]
    BadAddress {
        host: String,
        error: std::net::AddrParseError,
    },
    #[error("server port {port} out of range")]
    BadPort { port: i32 },
    #[error("commit of id {id}: {error}")]
    Commit { id: i64, error: sqlx::Error },
    #[error("commit of id {id}: no answer within {timeout:?}")]
    CommitTimeout { id: i64, timeout: Duration },
}

async fn connect_writer(
    options: &PgConnectOptions,
    timeout: Duration,
) -> Result<(PgConnection, SocketAddr), WriteError> {
    let connect = async {
        let mut connection = PgConnection::connect_with(options)
            .await
            .map_err(WriteError::Connect)?;
        let (host, port): (String, i32) =
            sqlx::query_as("SELECT host(inet_server_addr()), inet_server_port()")
                .fetch_one(&mut connection)
                .await
                .map_err(WriteError::ServerAddress)?;
        let host: IpAddr = host
            .parse()
            .map_err(|error| WriteError::BadAddress { host, error })?;
        let port = u16::try_from(port).map_err(|_| WriteError::BadPort { port })?;
        Ok((connection, SocketAddr::new(host, port)))
    };
    tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| WriteError::ConnectTimeout(timeout))?
}

/// Acknowledged ids of `report` that the instance behind `options` does not have. Must be
/// empty after any failover in synchronous mode.
pub async fn missing_on(
    options: &PgConnectOptions,
    report: &LedgerReport,
) -> Result<Vec<i64>, DrillError> {
    let Some(last) = report.acks.iter().map(|ack| ack.id).max() else {
        return Ok(Vec::new());
    };
    let mut connection = PgConnection::connect_with(options)
        .await
        .map_err(|source| DrillError::sql("connecting to verify the ledger", source))?;
    let present: Vec<i64> = sqlx::query_scalar("SELECT id FROM ledger WHERE id BETWEEN $1 AND $2")
        .bind(report.first_id)
        .bind(last)
        .fetch_all(&mut connection)
        .await
        .map_err(|source| DrillError::sql("reading the ledger to verify it", source))?;
    let _ = connection.close().await;
    let present: HashSet<i64> = present.into_iter().collect();
    Ok(report
        .acks
        .iter()
        .map(|ack| ack.id)
        .filter(|id| !present.contains(id))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: i64, at: u64, port: u16) -> Ack {
        Ack {
            id,
            at: Millis(at),
            server: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    #[test]
    fn gaps_and_first_acks_are_read_from_the_acknowledgements() {
        let report = LedgerReport {
            acks: vec![
                ack(1, 100, 5000),
                ack(2, 110, 5000),
                ack(3, 900, 5001),
                ack(4, 905, 5001),
            ],
            failed_attempts: 3,
            last_error: None,
            first_id: 1,
        };
        assert_eq!(report.split_at(Millis(500)), (2, 2));
        assert_eq!(
            report.split_at(Millis(110)),
            (2, 2),
            "same millisecond counts as before"
        );
        assert_eq!(report.split_at(Millis(109)), (1, 3));
        assert_eq!(
            report
                .first_ack_on(SocketAddr::from(([127, 0, 0, 1], 5001)), Millis(500))
                .map(|a| a.id),
            Some(3)
        );
        assert_eq!(
            report.first_ack_on(SocketAddr::from(([127, 0, 0, 1], 5000)), Millis(500)),
            None
        );
        assert_eq!(report.max_gap(Millis(500), Millis(600)), Some(790));
        assert_eq!(report.max_gap(Millis(901), Millis(1000)), Some(5));
    }
}
