//! One Redis node as the engine talks to it, with redis-rs. Every call opens its own connection
//! with a connect and a response timeout (and an outer bound): a frozen node costs one timeout,
//! never a wedged pooled connection. A refused connection is told apart (the server is down,
//! not slow). The password is only ever handed to redis-rs: it is not in `Debug`, errors or logs.

use std::time::Duration;

use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use crate::redis::{
    DETACHED_HOST, DETACHED_PORT, InfoError, ReplicationInfo, parse_replication_info,
};

/// The `requirepass` of the group.
#[derive(Clone)]
pub struct RedisPassword(String);

impl RedisPassword {
    pub fn new(password: impl Into<String>) -> RedisPassword {
        RedisPassword(password.into())
    }
}

impl std::fmt::Debug for RedisPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisPassword(redacted)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisClientError {
    #[error("redis node {node} ({address}) refused the connection")]
    Refused { node: String, address: String },
    #[error("redis node {node} ({address}) did not answer {command} within {timeout_ms} ms")]
    Timeout {
        node: String,
        address: String,
        command: &'static str,
        timeout_ms: u128,
    },
    #[error("redis node {node} ({address}) failed {command}: {message}")]
    Redis {
        node: String,
        address: String,
        command: &'static str,
        message: String,
    },
    #[error(
        "redis node {node} ({address}) sent an INFO replication reply that is not valid: {source}"
    )]
    Info {
        node: String,
        address: String,
        #[source]
        source: InfoError,
    },
}

impl RedisClientError {
    pub fn is_refused(&self) -> bool {
        matches!(self, RedisClientError::Refused { .. })
    }
}

/// How to reach one node.
#[derive(Clone, Debug)]
pub struct NodeClient {
    name: String,
    host: String,
    port: u16,
    password: Option<RedisPassword>,
    timeout: Duration,
}

impl NodeClient {
    pub fn new(
        name: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        password: Option<RedisPassword>,
        timeout: Duration,
    ) -> NodeClient {
        NodeClient {
            name: name.into(),
            host: host.into(),
            port,
            password,
            timeout,
        }
    }

    /// The same node with another timeout (commands wait longer than probes).
    pub fn with_timeout(&self, timeout: Duration) -> NodeClient {
        NodeClient {
            timeout,
            ..self.clone()
        }
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn error(&self, command: &'static str, error: &redis::RedisError) -> RedisClientError {
        if error.is_connection_refusal() {
            return RedisClientError::Refused {
                node: self.name.clone(),
                address: self.address(),
            };
        }
        if error.is_timeout() {
            return self.timeout_error(command);
        }
        RedisClientError::Redis {
            node: self.name.clone(),
            address: self.address(),
            command,
            message: error.to_string(),
        }
    }

    fn timeout_error(&self, command: &'static str) -> RedisClientError {
        RedisClientError::Timeout {
            node: self.name.clone(),
            address: self.address(),
            command,
            timeout_ms: self.timeout.as_millis(),
        }
    }

    async fn connection(
        &self,
        command: &'static str,
    ) -> Result<redis::aio::MultiplexedConnection, RedisClientError> {
        let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(password) = &self.password {
            settings = settings.set_password(&password.0);
        }
        let info = ConnectionAddr::Tcp(self.host.clone(), self.port)
            .into_connection_info()
            .map_err(|error| self.error(command, &error))?
            .set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|error| self.error(command, &error))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|error| self.error(command, &error))
    }

    /// Runs `cmd` on a fresh connection, the whole exchange bounded by the timeout.
    async fn run<T: redis::FromRedisValue>(
        &self,
        command: &'static str,
        cmd: redis::Cmd,
    ) -> Result<T, RedisClientError> {
        let exchange = async {
            let mut connection = self.connection(command).await?;
            cmd.query_async::<T>(&mut connection)
                .await
                .map_err(|error| self.error(command, &error))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| self.timeout_error(command))?
    }

    /// `INFO replication persistence keyspace` (several sections at once: Redis 7), parsed.
    /// The keyspace and persistence sections tell a node restarted from its append-only file
    /// from one restarted empty: both report a new replication id and offset 0.
    pub async fn info_replication(&self) -> Result<ReplicationInfo, RedisClientError> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("replication").arg("persistence").arg("keyspace");
        let text: String = self.run("INFO replication", cmd).await?;
        parse_replication_info(&text).map_err(|source| RedisClientError::Info {
            node: self.name.clone(),
            address: self.address(),
            source,
        })
    }

    /// `CLUSTER INFO` and `CLUSTER NODES`, parsed (cluster mode).
    pub async fn cluster_view(
        &self,
    ) -> Result<crate::redis::cluster::ClusterView, RedisClientError> {
        let mut info = redis::cmd("CLUSTER");
        info.arg("INFO");
        let info: String = self.run("CLUSTER INFO", info).await?;
        let mut nodes = redis::cmd("CLUSTER");
        nodes.arg("NODES");
        let nodes: String = self.run("CLUSTER NODES", nodes).await?;
        crate::redis::cluster::parse_cluster(&info, &nodes).map_err(|error| {
            RedisClientError::Redis {
                node: self.name.clone(),
                address: self.address(),
                command: "CLUSTER NODES",
                message: error.to_string(),
            }
        })
    }

    /// `REPLICAOF host port`.
    pub async fn replicate_from(&self, host: &str, port: u16) -> Result<(), RedisClientError> {
        let mut cmd = redis::cmd("REPLICAOF");
        cmd.arg(host).arg(port);
        let _: String = self.run("REPLICAOF", cmd).await?;
        Ok(())
    }

    /// Points the node at the address that refuses (see `DETACHED_HOST`).
    pub async fn detach(&self) -> Result<(), RedisClientError> {
        self.replicate_from(DETACHED_HOST, DETACHED_PORT).await
    }

    /// `REPLICAOF NO ONE`.
    pub async fn promote(&self) -> Result<(), RedisClientError> {
        let mut cmd = redis::cmd("REPLICAOF");
        cmd.arg("NO").arg("ONE");
        let _: String = self.run("REPLICAOF NO ONE", cmd).await?;
        Ok(())
    }

    /// `CLIENT PAUSE ms WRITE`.
    pub async fn pause_writes(&self, timeout_ms: u64) -> Result<(), RedisClientError> {
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("PAUSE").arg(timeout_ms).arg("WRITE");
        let _: String = self.run("CLIENT PAUSE", cmd).await?;
        Ok(())
    }

    /// `CLIENT UNPAUSE`.
    pub async fn unpause(&self) -> Result<(), RedisClientError> {
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("UNPAUSE");
        let _: String = self.run("CLIENT UNPAUSE", cmd).await?;
        Ok(())
    }
}
