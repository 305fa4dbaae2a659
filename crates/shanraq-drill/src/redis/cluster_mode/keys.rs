//! Reading and writing keys through the cluster, following `MOVED` redirections, and finding
//! the node that serves the writer's hash slot.

use shanraq_ha::redis::RedisMember;

use super::{HASH_TAG, WRITE_TIMEOUT, address};
use crate::redis::error::RedisDrillError;
use crate::redis::writer::connect;

/// The node serving the writer's slot: a `GET` of a key in it is served there or redirected
/// there (`MOVED slot address`).
pub(super) async fn owner(members: &[RedisMember], password: &str) -> Option<RedisMember> {
    for member in members {
        let Ok(mut connection) = connect(member, password, WRITE_TIMEOUT).await else {
            continue;
        };
        let probe: Result<Option<String>, redis::RedisError> = redis::cmd("GET")
            .arg(format!("{HASH_TAG}:probe"))
            .query_async(&mut connection)
            .await;
        match probe {
            Ok(_) => return Some(member.clone()),
            Err(error) => {
                if let Some((address, _)) = error.redirect_node() {
                    return members
                        .iter()
                        .find(|m| format!("{}:{}", m.host, m.port) == address)
                        .cloned();
                }
            }
        }
    }
    None
}

/// `GET key` through the cluster, following `MOVED` (at most a few hops).
pub async fn cluster_get(
    members: &[RedisMember],
    password: &str,
    key: &str,
) -> Result<Option<String>, RedisDrillError> {
    let mut target = members
        .first()
        .cloned()
        .ok_or(RedisDrillError::UnknownNode { index: 0, len: 0 })?;
    for _ in 0..4 {
        let mut connection = connect(&target, password, WRITE_TIMEOUT)
            .await
            .map_err(|error| RedisDrillError::Node {
                node: target.name.to_string(),
                message: error.to_string(),
            })?;
        let reply: Result<Option<String>, redis::RedisError> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await;
        match reply {
            Ok(value) => return Ok(value),
            Err(error) => {
                let Some((moved_to, _)) = error.redirect_node() else {
                    return Err(RedisDrillError::Node {
                        node: target.name.to_string(),
                        message: format!("GET {key}: {error}"),
                    });
                };
                target = members
                    .iter()
                    .find(|m| address(m) == moved_to)
                    .cloned()
                    .ok_or_else(|| RedisDrillError::Node {
                        node: target.name.to_string(),
                        message: format!("{key} moved to an unknown node {moved_to}"),
                    })?;
            }
        }
    }
    Err(RedisDrillError::Render(format!(
        "GET {key}: too many redirections"
    )))
}

/// `SET key value` through the cluster, following `MOVED`.
pub async fn cluster_set(
    members: &[RedisMember],
    password: &str,
    key: &str,
    value: &str,
) -> Result<(), RedisDrillError> {
    let mut target = members
        .first()
        .cloned()
        .ok_or(RedisDrillError::UnknownNode { index: 0, len: 0 })?;
    for _ in 0..4 {
        let mut connection = connect(&target, password, WRITE_TIMEOUT)
            .await
            .map_err(|error| RedisDrillError::Node {
                node: target.name.to_string(),
                message: error.to_string(),
            })?;
        let reply: Result<(), redis::RedisError> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut connection)
            .await;
        match reply {
            Ok(()) => return Ok(()),
            Err(error) => {
                let Some((moved_to, _)) = error.redirect_node() else {
                    return Err(RedisDrillError::Node {
                        node: target.name.to_string(),
                        message: format!("SET {key}: {error}"),
                    });
                };
                target = members
                    .iter()
                    .find(|m| address(m) == moved_to)
                    .cloned()
                    .ok_or_else(|| RedisDrillError::Node {
                        node: target.name.to_string(),
                        message: format!("{key} moved to an unknown node {moved_to}"),
                    })?;
            }
        }
    }
    Err(RedisDrillError::Render(format!(
        "SET {key}: too many redirections"
    )))
}
