//! PostgreSQL's adapter for the one driver loop (`crate::driver`): probes every instance
//! manager's `/status` concurrently (each bounded below the probe period; the designated
//! primary's probe renews its lease, with the engine's epoch and identity), executes commands
//! against the instance managers (each carrying the engine's token) or the router, and reports
//! every instance's status to callers. `start` and `start_with_clients` build the driver.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::instance_client::{BearerToken, ClientTimeouts, InstanceClient, InstanceClientError};
use super::route::RouteError;
use crate::driver::custody::Authority;
use crate::driver::state_store::{StateStore, StateStoreError};
use crate::driver::{Acting, Adapter, RequestError};
use crate::postgres::{
    Command, CommandError, HaState, Member, NodeId, Observation, Outcome, PodSignal, PostgresHa,
    PostgresHaConfig, ProbeOutcome, SwitchoverError,
};
use crate::wire::InstanceStatus;

pub use crate::driver::{Clock, system_clock};

/// The PostgreSQL driver, its handle and its events.
pub type Driver<S, R> = crate::driver::Driver<PostgresHa, S, PostgresAdapter<R>>;
pub type DriverHandle = crate::driver::Handle<PostgresHa, Vec<InstanceStatus>>;
pub type DriverEvent = crate::driver::EventOf<PostgresHa>;

/// Sends writes to the new primary (HAProxy runtime API, a Service selector, ...).
pub trait Router: Send + Sync + 'static {
    fn route(
        &self,
        primary: &Member,
        epoch: u64,
    ) -> impl Future<Output = Result<(), RouteError>> + Send;
}

/// For HAProxy set up with `httpchk GET /primary`: routing follows the instance's own answer,
/// so routing is confirmed once the new primary answers `/primary` with 200.
#[derive(Clone, Debug)]
pub struct PrimaryCheckRouter {
    clients: BTreeMap<NodeId, InstanceClient>,
}

impl PrimaryCheckRouter {
    pub fn new(clients: BTreeMap<NodeId, InstanceClient>) -> PrimaryCheckRouter {
        PrimaryCheckRouter { clients }
    }
}

impl Router for PrimaryCheckRouter {
    async fn route(&self, primary: &Member, epoch: u64) -> Result<(), RouteError> {
        let client = self
            .clients
            .get(&primary.name)
            .ok_or_else(|| RouteError::Missing {
                member: primary.name.clone(),
                what: "its instance manager",
            })?;
        match client.is_primary().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(RouteError::NotConfirmed {
                member: primary.name.clone(),
                epoch,
                detail: "",
            }),
            Err(error) => Err(RouteError::Check {
                member: primary.name.clone(),
                source: Box::new(error),
            }),
        }
    }
}

/// One member and where its instance manager listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverMember {
    pub member: Member,
    /// For example `http://127.0.0.1:28001`.
    pub manager_url: String,
}

#[derive(Clone, Debug)]
pub struct DriverConfig {
    pub ha: PostgresHaConfig,
    pub members: Vec<DriverMember>,
    pub token: BearerToken,
    pub timeouts: ClientTimeouts,
    /// Used when the store holds no state yet.
    pub initial_state: HaState,
    /// This engine's identity: the owner of the epochs it claims. Stable across restarts of
    /// the same controller (a restarted engine resumes its own claim at the same epoch); two
    /// engines that may run at once must have different ones.
    pub identity: String,
    /// Checked before every round of commands.
    pub authority: Arc<dyn Authority>,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot load the HA state: {0}")]
    Load(#[source] StateStoreError),
    #[error("cannot create the client of instance {node}: {source}")]
    Client {
        node: String,
        #[source]
        source: InstanceClientError,
    },
    #[error("no instance client was given for member {node}")]
    MissingClient { node: String },
    #[error("the driver is not running")]
    Stopped,
    #[error(transparent)]
    Switchover(#[from] SwitchoverError),
}

impl From<RequestError<SwitchoverError>> for DriverError {
    fn from(error: RequestError<SwitchoverError>) -> DriverError {
        match error {
            RequestError::Stopped => DriverError::Stopped,
            RequestError::Refused(refusal) => DriverError::Switchover(refusal),
        }
    }
}

impl From<StateStoreError> for DriverError {
    fn from(error: StateStoreError) -> DriverError {
        DriverError::Load(error)
    }
}

impl DriverHandle {
    /// What every instance that answered the last probe round reported.
    pub fn statuses(&self) -> Vec<InstanceStatus> {
        self.report()
    }

    /// Feeds a pod-level signal (a Kubernetes watch saw the pod deleted or not ready); the
    /// engine steps at once instead of waiting for the next probe.
    pub async fn observe_pod(&self, signal: PodSignal) -> Result<(), DriverError> {
        self.signal(signal).await.map_err(DriverError::from)
    }
}

/// The instance managers (one client per member, carrying the engine's identity) and the
/// router.
#[derive(Debug)]
pub struct PostgresAdapter<R: Router> {
    clients: BTreeMap<NodeId, InstanceClient>,
    router: Arc<R>,
}

impl<R: Router> Adapter<PostgresHa> for PostgresAdapter<R> {
    type Report = Vec<InstanceStatus>;

    fn probe_round(
        &self,
        engine: &PostgresHa,
        clock: Clock,
    ) -> BoxFuture<'static, Vec<Observation>> {
        let lease = engine.config().lease_duration;
        let holder = engine
            .lease_holder()
            .map(|(node, epoch)| (node.clone(), epoch));
        let probes: Vec<_> = self
            .clients
            .iter()
            .map(|(node, client)| {
                let at = clock();
                // The primary's probe renews its lease: it stays writable only while this
                // engine (or its synchronous quorum) stands behind it.
                let renew = holder
                    .as_ref()
                    .filter(|(primary, _)| primary == node)
                    .map(|(_, epoch)| *epoch);
                let node = node.clone();
                let client = client.clone();
                async move {
                    let answer = match renew {
                        Some(epoch) => client.status_renewing(epoch, lease).await,
                        None => client.status().await,
                    };
                    match answer {
                        Ok(status) => Observation {
                            node,
                            at,
                            outcome: ProbeOutcome::Reachable(status),
                        },
                        Err(error) if error.is_connection_refused() => {
                            Observation::refused(node, at, error.to_string())
                        }
                        Err(error) => Observation::unreachable(node, at, error.to_string()),
                    }
                }
            })
            .collect();
        Box::pin(futures::future::join_all(probes))
    }

    fn report(&self, round: &[Observation]) -> Vec<InstanceStatus> {
        round
            .iter()
            .filter_map(|observation| match &observation.outcome {
                ProbeOutcome::Reachable(status) => Some(status.clone()),
                ProbeOutcome::Unreachable(_) | ProbeOutcome::Refused(_) => None,
            })
            .collect()
    }

    fn execute(&self, engine: &PostgresHa, command: Command) -> BoxFuture<'static, Outcome> {
        let fence_timeout = engine.config().fence_timeout;
        let member = engine
            .members()
            .iter()
            .find(|m| &m.name == command.node())
            .cloned();
        let client = self.clients.get(command.node()).cloned();
        let router = Arc::clone(&self.router);
        Box::pin(async move {
            let (result, status) =
                run_command(&command, client, member, router.as_ref(), fence_timeout).await;
            Outcome { result, status }
        })
    }
}

/// Loads the state (or takes `initial_state`) and prepares the clients.
pub async fn start<S: StateStore<HaState>, R: Router>(
    config: DriverConfig,
    store: S,
    router: R,
    clock: Clock,
) -> Result<(Driver<S, R>, DriverHandle), DriverError> {
    let mut clients = BTreeMap::new();
    for member in &config.members {
        let name = member.member.name.clone();
        let client = InstanceClient::new(
            name.0.clone(),
            &member.manager_url,
            config.token.clone(),
            config.timeouts,
        )
        .map_err(|source| DriverError::Client {
            node: name.0.clone(),
            source,
        })?;
        clients.insert(name, client);
    }
    start_with_clients(config, clients, store, router, clock).await
}

/// Like `start`, with clients made by the caller (one per member, keyed by its name). The
/// caller keeps clones of them to move an instance to a new address (`set_base_url`) while the
/// driver runs.
pub async fn start_with_clients<S: StateStore<HaState>, R: Router>(
    config: DriverConfig,
    clients: BTreeMap<NodeId, InstanceClient>,
    store: S,
    router: R,
    clock: Clock,
) -> Result<(Driver<S, R>, DriverHandle), DriverError> {
    if let Some(member) = config
        .members
        .iter()
        .find(|member| !clients.contains_key(&member.member.name))
    {
        return Err(DriverError::MissingClient {
            node: member.member.name.0.clone(),
        });
    }
    let clients = clients
        .into_iter()
        .map(|(node, client)| (node, client.owned_by(config.identity.clone())))
        .collect();
    let members: Vec<Member> = config.members.iter().map(|m| m.member.clone()).collect();
    let identity = config.identity.clone();
    let ha = config.ha;
    Ok(crate::driver::Driver::start(
        store,
        Acting {
            identity: config.identity,
            authority: config.authority,
        },
        config.initial_state,
        move |state| PostgresHa::new(ha, members, state).with_identity(identity),
        PostgresAdapter {
            clients,
            router: Arc::new(router),
        },
        clock,
    )
    .await?)
}

async fn run_command<R: Router>(
    command: &Command,
    client: Option<InstanceClient>,
    member: Option<Member>,
    router: &R,
    fence_timeout: Duration,
) -> (Result<(), CommandError>, Option<InstanceStatus>) {
    if let Command::Route { primary, epoch } = command {
        let Some(member) = member else {
            return (
                Err(CommandError::Failed(format!("{primary} is not a member"))),
                None,
            );
        };
        return (
            router
                .route(&member, *epoch)
                .await
                .map_err(|error| CommandError::Failed(error.to_string())),
            None,
        );
    }
    let Some(client) = client else {
        return (
            Err(CommandError::Failed(format!(
                "no instance manager for {}",
                command.node()
            ))),
            None,
        );
    };
    let reply = match command {
        Command::Fence { epoch, .. } => client.fence(*epoch, fence_timeout).await,
        Command::Promote { epoch, .. } => client.promote(*epoch).await,
        Command::Repoint {
            upstream, epoch, ..
        } => client.repoint(*epoch, upstream.clone()).await,
        Command::Demote {
            upstream, epoch, ..
        } => client.demote(*epoch, upstream.clone()).await,
        Command::Detach { epoch, .. } => client.detach(*epoch).await,
        Command::Synchronous {
            standby_names,
            epoch,
            ..
        } => client.synchronous(*epoch, standby_names.clone()).await,
        Command::Route { .. } => return (Ok(()), None),
    };
    match reply {
        Ok(reply) => (Ok(()), reply.status),
        Err(InstanceClientError::StaleEpoch {
            instance_epoch,
            holder,
            ..
        }) => (
            Err(CommandError::StaleEpoch {
                instance_epoch,
                holder,
            }),
            None,
        ),
        Err(error) => (Err(CommandError::Failed(error.to_string())), None),
    }
}
