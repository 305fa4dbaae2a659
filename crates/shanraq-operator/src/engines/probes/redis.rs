//! Redis as a client sees it, with the Redis password, on a kept connection: in replication
//! mode through HAProxy's Redis port (the current master); in a Redis Cluster through a cluster
//! client seeded from the Redis Service, which sends each command to the master owning its key
//! (the probe's key lives on one shard; its `WAIT` goes to every master). Every round a `GET`
//! and a `SET` of one key, `shanraq:probe` (with a one-minute expiry, so it never outlives the
//! probes), followed by `WAIT` for the replicas the plan names when the Redis RPO needs a write
//! on a replica before it counts. A `WAIT` that returns fewer replicas than asked is a failed
//! write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, FromRedisValue, IntoConnectionInfo,
    RedisConnectionInfo, RedisResult,
};
use shanraq_api::objectives::ObjectiveComponent;

use super::plan::{ProbePath, RedisProbe};
use super::window::ProbeWindow;
use super::{
    PROBE_TIMEOUT, RETRY_PERIOD, SECRET_RETRY, error_text, next_round, resolves, retry_due, timed,
};
use crate::engines::start_error::secret_value;

const COMPONENT: ObjectiveComponent = ObjectiveComponent::Redis;
/// The key the probes read and write.
pub const PROBE_KEY: &str = "shanraq:probe";
const PROBE_KEY_TTL_MS: u64 = 60_000;

/// A connection to one server, or a cluster client's.
enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Connection {
    async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Connection::Single(connection) => cmd.query_async(connection).await,
            Connection::Cluster(connection) => cmd.query_async(connection).await,
        }
    }
}

/// Both paths on one kept connection, reopened after any failure (a connection to a demoted
/// master is never reused).
#[allow(missing_debug_implementations)] // the connection has none
pub struct RedisProber {
    target: RedisProbe,
    password: String,
    connection: Option<Connection>,
}

impl RedisProber {
    pub fn new(target: RedisProbe, password: String) -> Self {
        RedisProber {
            target,
            password,
            connection: None,
        }
    }

    async fn connect_cluster(&self) -> Result<Connection, String> {
        let seed = ConnectionAddr::Tcp(self.target.host.clone(), self.target.port)
            .into_connection_info()
            .map_err(|error| format!("connect: {}", error_text(&error)))?;
        let client = ClusterClientBuilder::new(vec![seed])
            .password(self.password.clone())
            .connection_timeout(PROBE_TIMEOUT)
            .response_timeout(PROBE_TIMEOUT)
            .build()
            .map_err(|error| format!("connect: {}", error_text(&error)))?;
        let connection = tokio::time::timeout(PROBE_TIMEOUT, client.get_async_connection())
            .await
            .map_err(|_| format!("connect: no answer within {PROBE_TIMEOUT:?}"))?
            .map_err(|error| format!("connect: {}", error_text(&error)))?;
        Ok(Connection::Cluster(connection))
    }

    async fn connection(&mut self) -> Result<&mut Connection, String> {
        if self.connection.is_none() && self.target.cluster {
            self.connection = Some(self.connect_cluster().await?);
        }
        if self.connection.is_none() {
            let settings = RedisConnectionInfo::default()
                .set_skip_set_lib_name()
                .set_password(&self.password);
            let info = ConnectionAddr::Tcp(self.target.host.clone(), self.target.port)
                .into_connection_info()
                .map_err(|error| format!("connect: {}", error_text(&error)))?
                .set_redis_settings(settings);
            let client = redis::Client::open(info)
                .map_err(|error| format!("connect: {}", error_text(&error)))?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(PROBE_TIMEOUT))
                .set_response_timeout(Some(PROBE_TIMEOUT));
            let connection = tokio::time::timeout(
                PROBE_TIMEOUT,
                client.get_multiplexed_async_connection_with_config(&config),
            )
            .await
            .map_err(|_| format!("connect: no answer within {PROBE_TIMEOUT:?}"))?
            .map_err(|error| format!("connect: {}", error_text(&error)))?;
            self.connection = Some(Connection::Single(connection));
        }
        self.connection
            .as_mut()
            .ok_or_else(|| "connect: no connection".to_owned())
    }

    /// `GET`: its latency, or why it failed.
    pub async fn get(&mut self) -> Result<Duration, String> {
        let connection = self.connection().await?;
        let started = Instant::now();
        let mut cmd = redis::cmd("GET");
        cmd.arg(PROBE_KEY);
        timed("GET", started, connection.query::<Option<String>>(&cmd))
            .await
            .map(|(latency, _)| latency)
            .inspect_err(|_| self.connection = None)
    }

    /// `SET` (and `WAIT` when the plan asks): its latency, or why it failed.
    pub async fn set(&mut self) -> Result<Duration, String> {
        let wait = self.target.wait_replicas;
        let connection = self.connection().await?;
        let started = Instant::now();
        let value = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let mut set = redis::cmd("SET");
        set.arg(PROBE_KEY)
            .arg(value.to_string())
            .arg("PX")
            .arg(PROBE_KEY_TTL_MS);
        let result = timed("SET", started, connection.query::<()>(&set)).await;
        let result = match (result, wait) {
            (Ok(_), Some(replicas)) => {
                let timeout_ms = PROBE_TIMEOUT.saturating_sub(started.elapsed()).as_millis();
                let mut cmd = redis::cmd("WAIT");
                cmd.arg(replicas)
                    .arg(u64::try_from(timeout_ms).unwrap_or(u64::MAX).max(1));
                match timed("WAIT", started, connection.query::<u32>(&cmd)).await {
                    Ok((latency, acknowledged)) if acknowledged >= replicas => Ok(latency),
                    Ok((_, acknowledged)) => Err(format!(
                        "WAIT: {acknowledged} of {replicas} replicas acknowledged within {PROBE_TIMEOUT:?}"
                    )),
                    Err(error) => Err(error),
                }
            }
            (result, _) => result.map(|(latency, ())| latency),
        };
        result.inspect_err(|_| self.connection = None)
    }
}

/// Reads the password, then probes every round until the task is aborted.
pub async fn run(client: Client, namespace: String, target: RedisProbe, window: Arc<ProbeWindow>) {
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    let mut warned = false;
    let password = loop {
        match secret_value(&secrets, &target.secret, "password").await {
            Ok(password) => break password,
            Err(error) => {
                if !warned {
                    tracing::warn!(%namespace, secret = %target.secret, %error, "no Redis probes until the Redis Secret can be read");
                    warned = true;
                }
                window.set_not_running(
                    COMPONENT,
                    Some(format!("the Redis Secret cannot be read: {error}")),
                );
                tokio::time::sleep(SECRET_RETRY).await;
            }
        }
    };
    window.set_not_running(COMPONENT, None);
    let mut prober = RedisProber::new(target.clone(), password);
    let mut password_read = Instant::now();
    let mut round = Instant::now();
    loop {
        tokio::time::sleep_until(round.into()).await;
        round = Instant::now();
        // A rotated password fails every connection: read it again while they fail.
        if prober.connection.is_none()
            && window.failing(ProbePath::RedisSet)
            && password_read.elapsed() >= SECRET_RETRY
        {
            password_read = Instant::now();
            if let Ok(fresh) = secret_value(&secrets, &target.secret, "password").await {
                prober.password = fresh;
            }
        }
        if prober.connection.is_none()
            && let Err(why) = resolves(&target.host, target.port).await
        {
            window.set_not_running(COMPONENT, Some(why));
            round = next_round(round);
            continue;
        }
        window.set_not_running(COMPONENT, None);
        for path in [ProbePath::RedisGet, ProbePath::RedisSet] {
            let started = Instant::now();
            let result = match path {
                ProbePath::RedisGet => prober.get().await,
                _ => prober.set().await,
            };
            if let Err(error) = &result {
                window.note_error(COMPONENT, error.clone());
            }
            window.record(path, started, result.ok());
        }
        round = next_round(round);
        while retry_due(&window, ProbePath::RedisSet, round) {
            tokio::time::sleep(RETRY_PERIOD).await;
            let started = Instant::now();
            let ok = prober.set().await.is_ok();
            window.retried(ProbePath::RedisSet, started, ok);
        }
    }
}
