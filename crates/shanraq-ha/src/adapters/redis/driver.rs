//! Redis's adapter for the one driver loop (`crate::driver`): probes every redis-server with
//! `INFO replication` (each bounded below the probe period), executes commands with redis-rs
//! (`REPLICAOF`, `CLIENT PAUSE`) or the router, each followed by the node's `INFO replication`,
//! and reports every node's replication info to callers. Redis nodes cannot check a fencing
//! token, so the driver's check against the store right before every command is what keeps a
//! stale engine out. `start` builds the driver.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::client::{NodeClient, RedisPassword};
use crate::driver::custody::{Authority, Unconditional};
use crate::driver::state_store::{StateStore, StateStoreError};
use crate::driver::{Acting, Adapter, Clock, RequestError};
use crate::redis::{
    Command, CommandError, NodeId, Observation, RedisHa, RedisHaConfig, RedisHaState, RedisMember,
    ReplicationInfo, SwitchoverError,
};

/// The Redis driver, its handle and its events.
pub type RedisDriver<S, R> = crate::driver::Driver<RedisHa, S, RedisAdapter<R>>;
pub type RedisDriverHandle = crate::driver::Handle<RedisHa, BTreeMap<NodeId, ReplicationInfo>>;
pub type RedisDriverEvent = crate::driver::EventOf<RedisHa>;

/// Sends writes to the new master (HAProxy's runtime API, the pods' role label, ...).
pub trait RedisRouter: Send + Sync + 'static {
    fn route(
        &self,
        master: &RedisMember,
        epoch: u64,
    ) -> impl Future<Output = Result<(), crate::adapters::route::RouteError>> + Send;
}

#[derive(Clone, Debug)]
pub struct RedisDriverConfig {
    pub ha: RedisHaConfig,
    pub members: Vec<RedisMember>,
    pub password: Option<RedisPassword>,
    /// Bound on one probe; below the probe period so rounds do not pile up.
    pub probe_timeout: Duration,
    /// Bound on one command (connect, command, and the INFO after it).
    pub command_timeout: Duration,
    /// Used when the store holds no state yet.
    pub initial_state: RedisHaState,
    /// This engine's identity: the owner of the epochs it claims (see `DriverConfig`).
    pub identity: String,
    /// Checked before every round of commands.
    pub authority: Arc<dyn Authority>,
}

impl RedisDriverConfig {
    /// Timeouts that follow the probe period: a probe gets 80 % of it, a command a second.
    pub fn new(
        ha: RedisHaConfig,
        members: Vec<RedisMember>,
        password: Option<RedisPassword>,
    ) -> Self {
        let probe_timeout = (ha.probe_period * 4 / 5).max(Duration::from_millis(20));
        RedisDriverConfig {
            ha,
            members,
            password,
            probe_timeout,
            command_timeout: Duration::from_secs(1),
            initial_state: RedisHaState::default(),
            identity: crate::postgres::DEFAULT_IDENTITY.to_owned(),
            authority: Arc::new(Unconditional),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisDriverError {
    #[error("cannot load the Redis HA state: {0}")]
    Load(#[source] StateStoreError),
    #[error("the Redis driver is not running")]
    Stopped,
    #[error(transparent)]
    Switchover(#[from] SwitchoverError),
}

impl From<RequestError<SwitchoverError>> for RedisDriverError {
    fn from(error: RequestError<SwitchoverError>) -> RedisDriverError {
        match error {
            RequestError::Stopped => RedisDriverError::Stopped,
            RequestError::Refused(refusal) => RedisDriverError::Switchover(refusal),
        }
    }
}

impl RedisDriverHandle {
    /// What every node that answered the last probe round reported.
    pub fn infos(&self) -> BTreeMap<NodeId, ReplicationInfo> {
        self.report()
    }
}

/// The nodes (probe clients) and the router.
#[derive(Debug)]
pub struct RedisAdapter<R: RedisRouter> {
    clients: BTreeMap<NodeId, NodeClient>,
    command_timeout: Duration,
    router: Arc<R>,
}

impl<R: RedisRouter> Adapter<RedisHa> for RedisAdapter<R> {
    type Report = BTreeMap<NodeId, ReplicationInfo>;

    fn probe_round(&self, _engine: &RedisHa, clock: Clock) -> BoxFuture<'static, Vec<Observation>> {
        let probes: Vec<_> = self
            .clients
            .iter()
            .map(|(node, client)| {
                let at = clock();
                let node = node.clone();
                let client = client.clone();
                async move {
                    match client.info_replication().await {
                        Ok(info) => Observation::reachable(node, at, info),
                        Err(error) if error.is_refused() => {
                            Observation::refused(node, at, error.to_string())
                        }
                        Err(error) => Observation::unreachable(node, at, error.to_string()),
                    }
                }
            })
            .collect();
        Box::pin(futures::future::join_all(probes))
    }

    fn report(&self, round: &[Observation]) -> BTreeMap<NodeId, ReplicationInfo> {
        round
            .iter()
            .filter_map(|o| o.info().map(|info| (o.node.clone(), info.clone())))
            .collect()
    }

    fn execute(
        &self,
        engine: &RedisHa,
        command: Command,
    ) -> BoxFuture<'static, Result<Option<ReplicationInfo>, CommandError>> {
        let member = engine
            .members()
            .iter()
            .find(|m| &m.name == command.node())
            .cloned();
        let client = self
            .clients
            .get(command.node())
            .map(|client| client.with_timeout(self.command_timeout));
        let router = Arc::clone(&self.router);
        Box::pin(async move { run_command(&command, client, member, router.as_ref()).await })
    }
}

/// Loads the state (or takes `initial_state`) and builds the driver.
pub async fn start<S: StateStore<RedisHaState>, R: RedisRouter>(
    config: RedisDriverConfig,
    store: S,
    router: R,
    clock: Clock,
) -> Result<(RedisDriver<S, R>, RedisDriverHandle), RedisDriverError> {
    let clients = config
        .members
        .iter()
        .map(|member| {
            (
                member.name.clone(),
                NodeClient::new(
                    member.name.as_str(),
                    member.host.clone(),
                    member.port,
                    config.password.clone(),
                    config.probe_timeout,
                ),
            )
        })
        .collect();
    let identity = config.identity.clone();
    let (ha, members) = (config.ha, config.members);
    crate::driver::Driver::start(
        store,
        Acting {
            identity: config.identity,
            authority: config.authority,
        },
        config.initial_state,
        move |state| RedisHa::new(ha, members, state).with_identity(identity),
        RedisAdapter {
            clients,
            command_timeout: config.command_timeout,
            router: Arc::new(router),
        },
        clock,
    )
    .await
    .map_err(RedisDriverError::Load)
}

async fn run_command<R: RedisRouter>(
    command: &Command,
    client: Option<NodeClient>,
    member: Option<RedisMember>,
    router: &R,
) -> Result<Option<ReplicationInfo>, CommandError> {
    if let Command::Route { master, epoch } = command {
        let member =
            member.ok_or_else(|| CommandError::Failed(format!("{master} is not a member")))?;
        return router
            .route(&member, *epoch)
            .await
            .map(|()| None)
            .map_err(|error| CommandError::Failed(error.to_string()));
    }
    let client = client.ok_or_else(|| {
        CommandError::Failed(format!("no client for redis node {}", command.node()))
    })?;
    let done = match command {
        Command::Detach { .. } => client.detach().await,
        Command::Promote { .. } => client.promote().await,
        Command::Replicate { master, .. } => client.replicate_from(&master.host, master.port).await,
        Command::PauseWrites { timeout_ms, .. } => client.pause_writes(*timeout_ms).await,
        Command::Unpause { .. } => client.unpause().await,
        Command::Route { .. } => Ok(()),
    };
    done.map_err(|error| CommandError::Failed(error.to_string()))?;
    // What the node looks like right after: a detach's final offset, a promotion's new id.
    Ok(client.info_replication().await.ok())
}
