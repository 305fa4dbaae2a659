//! The writer of one hash slot (`SET` then `WAIT 1`, following `MOVED`) and the read-back of
//! what it got acknowledged: the lost writes of a cluster-mode failover.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use shanraq_ha::adapters::driver::Clock;
use shanraq_ha::redis::RedisMember;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::keys::owner;
use super::{HASH_TAG, MAX_RUN, POLL, WRITE_TIMEOUT};
use crate::redis::error::RedisDrillError;
use crate::redis::writer::{RedisAck, WriterReport, connect};

/// A writer of keys in one hash slot: `SET` then `WAIT 1`, following `MOVED`.
#[derive(Debug)]
pub struct SlotWriter {
    stop: watch::Sender<bool>,
    join: JoinHandle<WriterReport>,
}

impl SlotWriter {
    pub fn start(
        members: Vec<RedisMember>,
        password: String,
        clock: Clock,
        progress: watch::Sender<usize>,
    ) -> SlotWriter {
        let (stop, stopped) = watch::channel(false);
        let join = tokio::spawn(slot_write_loop(members, password, clock, stopped, progress));
        SlotWriter { stop, join }
    }

    pub async fn stop(self) -> WriterReport {
        let _ = self.stop.send(true);
        self.join.await.unwrap_or_default()
    }
}

async fn slot_write_loop(
    members: Vec<RedisMember>,
    password: String,
    clock: Clock,
    stopped: watch::Receiver<bool>,
    progress: watch::Sender<usize>,
) -> WriterReport {
    let mut report = WriterReport::default();
    let mut target: Option<RedisMember> = members.first().cloned();
    let mut next_guess = 0_usize;
    let mut connection: Option<MultiplexedConnection> = None;
    let mut id = 0_u64;
    let started = tokio::time::Instant::now();
    while !*stopped.borrow() && started.elapsed() < MAX_RUN {
        let Some(member) = target.clone() else {
            break;
        };
        if connection.is_none() {
            match connect(&member, &password, WRITE_TIMEOUT).await {
                Ok(made) => connection = Some(made),
                Err(_) => {
                    next_guess = (next_guess + 1) % members.len().max(1);
                    target = members.get(next_guess).cloned();
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            }
        }
        let Some(conn) = connection.as_mut() else {
            continue;
        };
        id += 1;
        report.attempts += 1;
        let key = format!("{HASH_TAG}:{id}");
        let set: Result<(), redis::RedisError> = tokio::time::timeout(
            WRITE_TIMEOUT,
            redis::cmd("SET").arg(&key).arg(id).query_async(conn),
        )
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))
        });
        match set {
            Ok(()) => {
                let waited: Result<i64, redis::RedisError> = tokio::time::timeout(
                    WRITE_TIMEOUT,
                    redis::cmd("WAIT").arg(1).arg(200).query_async(conn),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(redis::RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::TimedOut,
                    )))
                });
                if waited.is_ok_and(|replicas| replicas >= 1) {
                    report.acks.push(RedisAck {
                        id,
                        node: member.name.clone(),
                        at: clock(),
                    });
                    progress.send_replace(report.acks.len());
                } else {
                    report.unacknowledged += 1;
                }
            }
            Err(error) => {
                report.unacknowledged += 1;
                if let Some((address, _)) = error.redirect_node() {
                    target = members
                        .iter()
                        .find(|m| format!("{}:{}", m.host, m.port) == address)
                        .cloned()
                        .or(target);
                } else if matches!(error.kind(), redis::ErrorKind::Io) || error.is_timeout() {
                    next_guess = (next_guess + 1) % members.len().max(1);
                    target = members.get(next_guess).cloned();
                }
                connection = None;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    report
}

/// Ids of `acks` whose keys the node serving the writer's slot does not hold.
pub async fn missing_in_cluster(
    members: &[RedisMember],
    password: &str,
    acks: &[RedisAck],
) -> Result<Vec<u64>, RedisDrillError> {
    let owner = owner(members, password)
        .await
        .ok_or_else(|| RedisDrillError::ReadBack {
            node: "the Redis Cluster".to_owned(),
            message: "no node answered for the writer's slot".to_owned(),
        })?;
    crate::redis::writer::missing_with_prefix(&owner, password, acks, &format!("{HASH_TAG}:")).await
}
