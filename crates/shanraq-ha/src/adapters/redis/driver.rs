//! Runs the Redis engine against real redis-server processes: probes every node each probe
//! period (concurrently, each probe bounded below the period, the round in a task of its own so
//! a node that does not answer never holds back a command's result), feeds the engine,
//! persists its state whenever it changed, and only then executes its commands (concurrently
//! across nodes; the engine never issues two at once for one node). Results go back through
//! `command_done` with the node's `INFO replication` right after, and everything the engine
//! decides is published on a broadcast channel (the demo's timeline, Kubernetes Events).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::client::{NodeClient, RedisPassword};
use crate::adapters::custody::{Authority, Custody, Lapse, Unconditional};
use crate::adapters::driver::Clock;
use crate::adapters::state_store::{StateStore, StateStoreError};
use crate::redis::{
    Command, CommandError, Event, Millis, NodeId, Observation, RedisHa, RedisHaConfig,
    RedisHaState, RedisMember, ReplicationInfo, SwitchoverError,
};

/// Sends writes to the new master (HAProxy's runtime API, the pods' role label, ...).
pub trait RedisRouter: Send + Sync + 'static {
    fn route(
        &self,
        master: &RedisMember,
        epoch: u64,
    ) -> impl Future<Output = Result<(), String>> + Send;
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

#[derive(Clone, Debug, PartialEq)]
pub enum RedisDriverEvent {
    Engine(Event),
    CommandStarted {
        at: Millis,
        command: Command,
    },
    CommandFinished {
        at: Millis,
        command: Command,
        took: Duration,
        error: Option<String>,
    },
    StateSaved {
        at: Millis,
        state: Box<RedisHaState>,
    },
    StoreFailed {
        at: Millis,
        error: String,
    },
    /// The store moved on under this engine's own identity: it resumed from what it holds.
    Resumed {
        at: Millis,
        state: Box<RedisHaState>,
    },
    /// Another engine holds the claim, or this process lost its authority: the driver acts no
    /// more and its loop ends.
    SteppedDown {
        at: Millis,
        reason: String,
    },
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

enum Control {
    Stop,
    Switchover {
        target: Option<NodeId>,
        reply: oneshot::Sender<Result<NodeId, SwitchoverError>>,
    },
}

/// Controls a running driver.
#[derive(Clone, Debug)]
pub struct RedisDriverHandle {
    control: mpsc::Sender<Control>,
    events: broadcast::Sender<RedisDriverEvent>,
    state: watch::Receiver<RedisHaState>,
    infos: watch::Receiver<BTreeMap<NodeId, ReplicationInfo>>,
    stepped_down: watch::Receiver<Option<String>>,
}

impl RedisDriverHandle {
    pub async fn stop(&self) {
        let _ = self.control.send(Control::Stop).await;
    }

    /// Starts a planned switchover (to the most advanced replica when `target` is `None`).
    pub async fn request_switchover(
        &self,
        target: Option<NodeId>,
    ) -> Result<NodeId, RedisDriverError> {
        let (reply, answer) = oneshot::channel();
        self.control
            .send(Control::Switchover { target, reply })
            .await
            .map_err(|_| RedisDriverError::Stopped)?;
        Ok(answer.await.map_err(|_| RedisDriverError::Stopped)??)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RedisDriverEvent> {
        self.events.subscribe()
    }

    pub fn state(&self) -> RedisHaState {
        self.state.borrow().clone()
    }

    /// Why the driver stood down, once it has (another engine's claim, lost authority).
    pub fn stepped_down(&self) -> Option<String> {
        self.stepped_down.borrow().clone()
    }

    /// What every node that answered the last probe round reported.
    pub fn infos(&self) -> BTreeMap<NodeId, ReplicationInfo> {
        self.infos.borrow().clone()
    }

    /// Waits until the persisted state satisfies `done`, or `timeout` passes.
    pub async fn wait_for_state(
        &self,
        timeout: Duration,
        done: impl Fn(&RedisHaState) -> bool,
    ) -> Option<RedisHaState> {
        let mut state = self.state.clone();
        let wait = async {
            loop {
                if done(&state.borrow_and_update()) {
                    return Some(state.borrow().clone());
                }
                if state.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

/// A switchover asked for before the engine could take it (master not yet routed just after a
/// start or a failover): retried every step until its deadline.
struct PendingSwitchover {
    target: Option<NodeId>,
    reply: oneshot::Sender<Result<NodeId, SwitchoverError>>,
    deadline: Instant,
}

struct Done {
    command: Command,
    result: Result<Option<ReplicationInfo>, CommandError>,
    took: Duration,
}

pub struct RedisDriver<S: StateStore<RedisHaState>, R: RedisRouter> {
    engine: RedisHa,
    clients: BTreeMap<NodeId, NodeClient>,
    command_timeout: Duration,
    custody: Custody<RedisHaState, S>,
    router: Arc<R>,
    clock: Clock,
    events: broadcast::Sender<RedisDriverEvent>,
    state_tx: watch::Sender<RedisHaState>,
    infos_tx: watch::Sender<BTreeMap<NodeId, ReplicationInfo>>,
    stepped_down_tx: watch::Sender<Option<String>>,
    control: mpsc::Receiver<Control>,
    running: JoinSet<Done>,
    probing: JoinSet<Vec<Observation>>,
    pending_switchover: Option<PendingSwitchover>,
}

impl<S: StateStore<RedisHaState>, R: RedisRouter> std::fmt::Debug for RedisDriver<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDriver")
            .field("state", self.engine.state())
            .finish_non_exhaustive()
    }
}

impl<S: StateStore<RedisHaState>, R: RedisRouter> RedisDriver<S, R> {
    pub async fn start(
        config: RedisDriverConfig,
        store: S,
        router: R,
        clock: Clock,
    ) -> Result<(RedisDriver<S, R>, RedisDriverHandle), RedisDriverError> {
        let (custody, loaded) = Custody::open(store, config.identity.clone(), config.authority)
            .await
            .map_err(RedisDriverError::Load)?;
        let state = loaded.unwrap_or_else(|| config.initial_state.clone());
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
        let mut engine =
            RedisHa::new(config.ha, config.members, state).with_identity(config.identity.clone());
        // A state another engine claimed is claimed anew before anything is sent.
        if engine.take_office() {
            tracing::info!(
                identity = %config.identity,
                epoch = engine.state().epoch,
                "claimed the Redis HA state"
            );
        }
        let (events, _) = broadcast::channel(1024);
        let (state_tx, state_rx) = watch::channel(engine.state().clone());
        let (infos_tx, infos_rx) = watch::channel(BTreeMap::new());
        let (stepped_down_tx, stepped_down_rx) = watch::channel(None);
        let (control_tx, control) = mpsc::channel(16);
        let handle = RedisDriverHandle {
            control: control_tx,
            events: events.clone(),
            state: state_rx,
            infos: infos_rx,
            stepped_down: stepped_down_rx,
        };
        let driver = RedisDriver {
            engine,
            clients,
            command_timeout: config.command_timeout,
            custody,
            router: Arc::new(router),
            clock,
            events,
            state_tx,
            infos_tx,
            stepped_down_tx,
            control,
            running: JoinSet::new(),
            probing: JoinSet::new(),
            pending_switchover: None,
        };
        Ok((driver, handle))
    }

    /// Runs until stopped, or until it stands down (see `RedisDriverHandle::stepped_down`);
    /// returns the last state. Commands still running are abandoned.
    pub async fn run(mut self) -> RedisHaState {
        let mut ticker = tokio::time::interval(
            self.engine
                .config()
                .probe_period
                .max(Duration::from_millis(10)),
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    self.start_probe_round();
                    continue;
                }
                Some(joined) = self.probing.join_next() => {
                    if let Ok(observations) = joined {
                        self.apply_probes(observations);
                    }
                }
                Some(joined) = self.running.join_next() => {
                    if let Ok(done) = joined {
                        self.finish(done);
                    }
                }
                control = self.control.recv() => match control {
                    None | Some(Control::Stop) => break,
                    Some(Control::Switchover { target, reply }) => {
                        if let Some(earlier) = self.pending_switchover.take() {
                            let _ = earlier.reply.send(Err(SwitchoverError::Superseded));
                        }
                        let wait = (self.engine.config().probe_period * 20).max(Duration::from_secs(5));
                        self.pending_switchover = Some(PendingSwitchover {
                            target,
                            reply,
                            deadline: Instant::now() + wait,
                        });
                    }
                },
            }
            self.try_switchover();
            if !self.step().await {
                break;
            }
        }
        self.running.abort_all();
        self.probing.abort_all();
        self.engine.state().clone()
    }

    fn try_switchover(&mut self) {
        let Some(pending) = self.pending_switchover.take() else {
            return;
        };
        let now = (self.clock)();
        match self.engine.request_switchover(pending.target.clone(), now) {
            Err(
                SwitchoverError::NotHealthy { .. }
                | SwitchoverError::MasterNotReady { .. }
                | SwitchoverError::TargetNotReplica { .. }
                | SwitchoverError::NoReplica,
            ) if Instant::now() < pending.deadline => {
                self.pending_switchover = Some(pending);
            }
            answer => {
                let _ = pending.reply.send(answer);
            }
        }
    }

    fn start_probe_round(&mut self) {
        if !self.probing.is_empty() {
            return;
        }
        let clock = Arc::clone(&self.clock);
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
        self.probing.spawn(futures::future::join_all(probes));
    }

    fn apply_probes(&mut self, observations: Vec<Observation>) {
        let infos = observations
            .iter()
            .filter_map(|o| o.info().map(|info| (o.node.clone(), info.clone())))
            .collect();
        self.infos_tx.send_replace(infos);
        self.engine.observe_round(observations);
    }

    fn finish(&mut self, done: Done) {
        let now = (self.clock)();
        let error = done.result.as_ref().err().map(ToString::to_string);
        match &error {
            None => {
                tracing::info!(command = %done.command, took_ms = done.took.as_millis(), "redis command done")
            }
            Some(error) => tracing::warn!(command = %done.command, %error, "redis command failed"),
        }
        self.engine.command_done(&done.command, done.result, now);
        let _ = self.events.send(RedisDriverEvent::CommandFinished {
            at: now,
            command: done.command,
            took: done.took,
            error,
        });
    }

    /// One step: decide, secure the state, execute. False once the driver stood down. Redis
    /// nodes cannot refuse a stale token, so the check right before the commands (authority,
    /// then the store by compare-and-swap or read-back) is what keeps a stale engine out.
    async fn step(&mut self) -> bool {
        let now = (self.clock)();
        let out = self.engine.step(now);
        let state = self.engine.state().clone();
        let secured = self.custody.secure(&state, !out.commands.is_empty()).await;
        // What an engine that may not act decided is not published: it will not happen.
        if !matches!(
            secured,
            Err(Lapse::Superseded { .. } | Lapse::Unauthorized(_) | Lapse::Resume(_))
        ) {
            for event in out.events {
                tracing::info!(reason = event.reason(), message = %event.message(), "redis ha event");
                let _ = self.events.send(RedisDriverEvent::Engine(event));
            }
        }
        match secured {
            Ok(true) => {
                let _ = self.state_tx.send(state.clone());
                let _ = self.events.send(RedisDriverEvent::StateSaved {
                    at: now,
                    state: Box::new(state),
                });
            }
            Ok(false) => {}
            Err(Lapse::Store(error)) => {
                let error = error.to_string();
                tracing::error!(%error, "cannot persist the Redis HA state; commands of this step not executed");
                for command in &out.commands {
                    self.engine.command_done(
                        command,
                        Err(CommandError::NotExecuted(error.clone())),
                        now,
                    );
                }
                let _ = self
                    .events
                    .send(RedisDriverEvent::StoreFailed { at: now, error });
                return true;
            }
            Err(Lapse::Resume(state)) => {
                tracing::warn!(
                    epoch = state.epoch,
                    "the Redis HA state moved on; resuming from the store"
                );
                self.running.abort_all();
                self.engine.resume_from(state.clone());
                let _ = self.state_tx.send(state.clone());
                let _ = self.events.send(RedisDriverEvent::Resumed {
                    at: now,
                    state: Box::new(state),
                });
                return true;
            }
            Err(lapse) => {
                let reason = lapse.to_string();
                tracing::warn!(%reason, "standing down: this Redis engine acts no more");
                self.running.abort_all();
                self.stepped_down_tx.send_replace(Some(reason.clone()));
                let _ = self
                    .events
                    .send(RedisDriverEvent::SteppedDown { at: now, reason });
                return false;
            }
        }
        for command in out.commands {
            let _ = self.events.send(RedisDriverEvent::CommandStarted {
                at: now,
                command: command.clone(),
            });
            self.execute(command);
        }
        true
    }

    fn execute(&mut self, command: Command) {
        let member = self
            .engine
            .members()
            .iter()
            .find(|m| &m.name == command.node())
            .cloned();
        let client = self
            .clients
            .get(command.node())
            .map(|client| client.with_timeout(self.command_timeout));
        let router = Arc::clone(&self.router);
        self.running.spawn(async move {
            let started = Instant::now();
            let result = run_command(&command, client, member, router.as_ref()).await;
            Done {
                command,
                result,
                took: started.elapsed(),
            }
        });
    }
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
            .map_err(CommandError::Failed);
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
