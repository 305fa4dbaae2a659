//! Continuous writes as a careful Redis client makes them: `SET` a new key, then `WAIT 1`; a
//! write counts as acknowledged only when `WAIT` says a replica has it. The writer follows the
//! engine's routing (as a client of the `-redis-master` Service does). The split-brain watch
//! probes every node the same way each round, and records any round in which two nodes took
//! an acknowledged write.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use shanraq_ha::adapters::driver::Clock;
use shanraq_ha::redis::{Millis, NodeId, RedisMember};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::RedisDrillError;

/// The writer's bound on one write, its WAIT and a connect.
const WRITE_TIMEOUT: Duration = Duration::from_millis(300);
/// How long `WAIT 1` waits for a replica.
const WAIT_MS: u64 = 200;
/// After a failed write, before the next.
const BACKOFF: Duration = Duration::from_millis(5);
/// The longest any writer or watch runs, whatever its caller does.
const MAX_RUN: Duration = Duration::from_secs(900);
/// Keys the writer sets: `shanraq:w:<id>`.
pub const KEY_PREFIX: &str = "shanraq:w:";

/// One write acknowledged by `WAIT 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisAck {
    pub id: u64,
    pub node: NodeId,
    /// When the acknowledgement came back.
    pub at: Millis,
}

#[derive(Clone, Debug, Default)]
pub struct WriterReport {
    pub acks: Vec<RedisAck>,
    pub attempts: u64,
    /// Writes that failed or were not acknowledged by a replica.
    pub unacknowledged: u64,
}

impl WriterReport {
    /// The first acknowledgement by `node` at or after `since`.
    pub fn first_ack_on_other(&self, not: &NodeId, since: Millis) -> Option<&RedisAck> {
        self.acks
            .iter()
            .find(|ack| &ack.node != not && ack.at >= since)
    }
}

pub(super) async fn connect(
    member: &RedisMember,
    password: &str,
    timeout: Duration,
) -> Result<MultiplexedConnection, redis::RedisError> {
    let settings = RedisConnectionInfo::default()
        .set_skip_set_lib_name()
        .set_password(password);
    let info = ConnectionAddr::Tcp(member.host.clone(), member.port)
        .into_connection_info()?
        .set_redis_settings(settings);
    let client = redis::Client::open(info)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// `SET key value` then `WAIT 1 WAIT_MS`: `Ok(true)` when a replica acknowledged it.
async fn set_and_wait(
    connection: &mut MultiplexedConnection,
    key: &str,
    value: u64,
    wait_ms: u64,
) -> Result<bool, redis::RedisError> {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(connection)
        .await?;
    let replicas: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(wait_ms)
        .query_async(connection)
        .await?;
    Ok(replicas >= 1)
}

/// A writer running until `stop`.
#[derive(Debug)]
pub struct WaitWriter {
    stop: watch::Sender<bool>,
    join: JoinHandle<WriterReport>,
}

impl WaitWriter {
    /// Starts writing ids from `first_id` on the current runtime (the client namespace's in a
    /// lab); `progress` counts the acknowledged writes as they come.
    pub fn start(
        routed: watch::Receiver<Option<(RedisMember, u64)>>,
        password: String,
        clock: Clock,
        first_id: u64,
        progress: watch::Sender<usize>,
    ) -> WaitWriter {
        let (stop, stopped) = watch::channel(false);
        let join = tokio::spawn(write_loop(
            routed, password, clock, first_id, stopped, progress,
        ));
        WaitWriter { stop, join }
    }

    pub async fn stop(self) -> WriterReport {
        let _ = self.stop.send(true);
        self.join.await.unwrap_or_default()
    }
}

async fn write_loop(
    routed: watch::Receiver<Option<(RedisMember, u64)>>,
    password: String,
    clock: Clock,
    first_id: u64,
    stopped: watch::Receiver<bool>,
    progress: watch::Sender<usize>,
) -> WriterReport {
    let mut report = WriterReport::default();
    let mut connection: Option<(NodeId, MultiplexedConnection)> = None;
    let mut id = first_id;
    let started = tokio::time::Instant::now();
    while !*stopped.borrow() && started.elapsed() < MAX_RUN {
        let Some((master, _)) = routed.borrow().clone() else {
            tokio::time::sleep(BACKOFF).await;
            continue;
        };
        if connection
            .as_ref()
            .is_none_or(|(node, _)| node != &master.name)
        {
            connection = match connect(&master, &password, WRITE_TIMEOUT).await {
                Ok(made) => Some((master.name.clone(), made)),
                Err(_) => {
                    report.unacknowledged += 1;
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            };
        }
        let Some((node, conn)) = connection.as_mut() else {
            continue;
        };
        id += 1;
        report.attempts += 1;
        let key = format!("{KEY_PREFIX}{id}");
        let outcome = tokio::time::timeout(
            WRITE_TIMEOUT + Duration::from_millis(WAIT_MS),
            set_and_wait(conn, &key, id, WAIT_MS),
        )
        .await;
        match outcome {
            Ok(Ok(true)) => {
                report.acks.push(RedisAck {
                    id,
                    node: node.clone(),
                    at: clock(),
                });
                progress.send_replace(report.acks.len());
            }
            Ok(Ok(false)) => report.unacknowledged += 1,
            Ok(Err(_)) | Err(_) => {
                report.unacknowledged += 1;
                connection = None;
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
    report
}

/// Ids of `acks` whose keys `master` does not hold.
pub async fn missing_on(
    master: &RedisMember,
    password: &str,
    acks: &[RedisAck],
) -> Result<Vec<u64>, RedisDrillError> {
    missing_with_prefix(master, password, acks, KEY_PREFIX).await
}

/// Ids of `acks` whose keys (`prefix` + id) `master` does not hold.
pub async fn missing_with_prefix(
    master: &RedisMember,
    password: &str,
    acks: &[RedisAck],
    prefix: &str,
) -> Result<Vec<u64>, RedisDrillError> {
    let read_back = |message: String| RedisDrillError::ReadBack {
        node: master.name.to_string(),
        message,
    };
    let mut connection = connect(master, password, Duration::from_secs(5))
        .await
        .map_err(|e| read_back(e.to_string()))?;
    let mut missing = Vec::new();
    for chunk in acks.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|a| format!("{prefix}{}", a.id)).collect();
        let values: Vec<Option<u64>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut connection)
            .await
            .map_err(|e| read_back(e.to_string()))?;
        for (ack, value) in chunk.iter().zip(values) {
            if value != Some(ack.id) {
                missing.push(ack.id);
            }
        }
    }
    Ok(missing)
}

/// How many nodes took an acknowledged write in the same round, at most, and the rounds in
/// which more than one did.
#[derive(Clone, Debug, Default)]
pub struct SplitBrainReport {
    pub rounds: u64,
    pub max_writable_at_once: usize,
    pub violations: Vec<(Millis, Vec<NodeId>)>,
    /// Rounds in which each node took an acknowledged probe write.
    pub writable_rounds: BTreeMap<NodeId, u64>,
}

#[derive(Debug)]
pub struct SplitBrainWatch {
    stop: watch::Sender<bool>,
    join: JoinHandle<SplitBrainReport>,
}

/// A probe round every this often.
const WATCH_PERIOD: Duration = Duration::from_millis(25);
const WATCH_TIMEOUT: Duration = Duration::from_millis(100);

impl SplitBrainWatch {
    pub fn start(members: Vec<RedisMember>, password: String, clock: Clock) -> SplitBrainWatch {
        let (stop, stopped) = watch::channel(false);
        let join = tokio::spawn(watch_loop(members, password, clock, stopped));
        SplitBrainWatch { stop, join }
    }

    pub async fn stop(self) -> SplitBrainReport {
        let _ = self.stop.send(true);
        self.join.await.unwrap_or_default()
    }
}

async fn probe_write(
    member: RedisMember,
    connection: Option<MultiplexedConnection>,
    password: String,
    round: u64,
) -> (bool, Option<MultiplexedConnection>) {
    let attempt = async {
        let mut connection = match connection {
            Some(connection) => connection,
            None => connect(&member, &password, WATCH_TIMEOUT).await.ok()?,
        };
        let key = format!("shanraq:probe:{}", member.name);
        let accepted = set_and_wait(&mut connection, &key, round, 20).await;
        match accepted {
            Ok(accepted) => Some((accepted, Some(connection))),
            // A refusal (READONLY, NOREPLICAS) keeps the connection; a broken one is dropped.
            Err(error) if !matches!(error.kind(), redis::ErrorKind::Io) => {
                Some((false, Some(connection)))
            }
            Err(_) => Some((false, None)),
        }
    };
    match tokio::time::timeout(WATCH_TIMEOUT * 2, attempt).await {
        Ok(Some(outcome)) => outcome,
        Ok(None) | Err(_) => (false, None),
    }
}

async fn watch_loop(
    members: Vec<RedisMember>,
    password: String,
    clock: Clock,
    stopped: watch::Receiver<bool>,
) -> SplitBrainReport {
    let mut report = SplitBrainReport::default();
    let mut connections: Vec<Option<MultiplexedConnection>> = vec![None; members.len()];
    let started = tokio::time::Instant::now();
    while !*stopped.borrow() && started.elapsed() < MAX_RUN {
        report.rounds += 1;
        let round = report.rounds;
        let at = clock();
        let probes = members
            .iter()
            .cloned()
            .zip(connections.drain(..))
            .map(|(member, connection)| probe_write(member, connection, password.clone(), round));
        let outcomes = futures::future::join_all(probes).await;
        let mut writable = Vec::new();
        for (member, (accepted, connection)) in members.iter().zip(outcomes) {
            connections.push(connection);
            if accepted {
                writable.push(member.name.clone());
                *report
                    .writable_rounds
                    .entry(member.name.clone())
                    .or_default() += 1;
            }
        }
        report.max_writable_at_once = report.max_writable_at_once.max(writable.len());
        if writable.len() > 1 {
            report.violations.push((at, writable));
        }
        tokio::time::sleep(WATCH_PERIOD).await;
    }
    report
}
