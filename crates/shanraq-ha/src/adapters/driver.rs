//! Runs the sans-IO engine against real instance managers: probes every member each probe
//! period (concurrently, each probe bounded below the period, the round in a task of its own so
//! that a member that does not answer never holds back a command's result), feeds the engine,
//! secures its state (`Custody`: authority checked, state written by compare-and-swap or read
//! back) and only then executes its commands (concurrently across nodes; the engine never
//! issues two at once for one node), each carrying the engine's token (epoch and identity).
//! Results go back through `command_done`, and everything the engine decides is published on a
//! broadcast channel for the demo's timeline or the Kubernetes controller's Events. An engine
//! that finds another's claim (in the store, on a member, in a refusal) stands down: the loop
//! ends and acts no more.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::custody::{Authority, Custody, Lapse};
use super::instance_client::{BearerToken, ClientTimeouts, InstanceClient, InstanceClientError};
use super::state_store::{StateStore, StateStoreError};
use crate::postgres::{
    Command, CommandError, Event, HaState, Member, Millis, NodeId, Observation, PodSignal,
    PostgresHa, PostgresHaConfig, SwitchoverError,
};
use crate::wire::InstanceStatus;

/// Sends writes to the new primary (HAProxy runtime API, a Service selector, ...).
pub trait Router: Send + Sync + 'static {
    fn route(
        &self,
        primary: &Member,
        epoch: u64,
    ) -> impl Future<Output = Result<(), String>> + Send;
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
    async fn route(&self, primary: &Member, epoch: u64) -> Result<(), String> {
        let client = self
            .clients
            .get(&primary.name)
            .ok_or_else(|| format!("no instance manager for {}", primary.name))?;
        match client.is_primary().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "{} does not answer /primary yet (epoch {epoch})",
                primary.name
            )),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// The wall clock, injectable for tests.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// Unix milliseconds from the system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Millis(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    })
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

/// What the driver publishes.
#[derive(Clone, Debug, PartialEq)]
pub enum DriverEvent {
    /// Something the engine decided (timeline steps, failover started/completed, refusals).
    Engine(Event),
    /// A command was sent.
    CommandStarted { at: Millis, command: Command },
    /// A command finished; `error` is `None` on success.
    CommandFinished {
        at: Millis,
        command: Command,
        took: Duration,
        error: Option<String>,
    },
    /// The state was persisted.
    StateSaved { at: Millis, state: Box<HaState> },
    /// The state could not be persisted; the step's commands were not executed.
    StoreFailed { at: Millis, error: String },
    /// The store moved on under this engine's own identity: it resumed from what it holds.
    Resumed { at: Millis, state: Box<HaState> },
    /// Another engine holds the claim, or this process lost its authority: the driver acts no
    /// more and its loop ends.
    SteppedDown { at: Millis, reason: String },
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

enum Control {
    Stop,
    Pod(PodSignal),
    Switchover {
        target: Option<NodeId>,
        reply: oneshot::Sender<Result<NodeId, SwitchoverError>>,
    },
}

/// Controls a running driver.
#[derive(Clone, Debug)]
pub struct DriverHandle {
    control: mpsc::Sender<Control>,
    events: broadcast::Sender<DriverEvent>,
    state: watch::Receiver<HaState>,
    statuses: watch::Receiver<Vec<InstanceStatus>>,
    stepped_down: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Stop => f.write_str("Stop"),
            Control::Pod(signal) => write!(f, "Pod({signal:?})"),
            Control::Switchover { target, .. } => write!(f, "Switchover({target:?})"),
        }
    }
}

impl DriverHandle {
    /// Asks the loop to stop after its current step; `run` then returns the last state.
    pub async fn stop(&self) {
        let _ = self.control.send(Control::Stop).await;
    }

    /// Starts a planned switchover (to the best replica when `target` is `None`).
    pub async fn request_switchover(&self, target: Option<NodeId>) -> Result<NodeId, DriverError> {
        let (reply, answer) = oneshot::channel();
        self.control
            .send(Control::Switchover { target, reply })
            .await
            .map_err(|_| DriverError::Stopped)?;
        Ok(answer.await.map_err(|_| DriverError::Stopped)??)
    }

    /// Feeds a pod-level signal (a Kubernetes watch saw the pod deleted or not ready); the
    /// engine steps at once instead of waiting for the next probe.
    pub async fn observe_pod(&self, signal: PodSignal) -> Result<(), DriverError> {
        self.control
            .send(Control::Pod(signal))
            .await
            .map_err(|_| DriverError::Stopped)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<DriverEvent> {
        self.events.subscribe()
    }

    /// What every instance that answered the last probe round reported. Callers that need the
    /// instances' status (objectives, `status.postgres.instances`) read it here instead of
    /// probing the instances a second time.
    pub fn statuses(&self) -> Vec<InstanceStatus> {
        self.statuses.borrow().clone()
    }

    /// The last persisted state.
    pub fn state(&self) -> HaState {
        self.state.borrow().clone()
    }

    /// Why the driver stood down, once it has (another engine's claim, lost authority).
    pub fn stepped_down(&self) -> Option<String> {
        self.stepped_down.borrow().clone()
    }

    /// Waits until the persisted state satisfies `done`, or `timeout` passes.
    pub async fn wait_for_state(
        &self,
        timeout: Duration,
        done: impl Fn(&HaState) -> bool,
    ) -> Option<HaState> {
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

/// A switchover asked for while the primary had not confirmed its epoch yet, or no replica was
/// seen streaming yet (just after a start, a failover or an adoption): retried at every step
/// until the deadline, so a request right after convergence waits instead of failing.
struct PendingSwitchover {
    target: Option<NodeId>,
    reply: oneshot::Sender<Result<NodeId, SwitchoverError>>,
    deadline: Instant,
}

/// How long a switchover request may wait for the primary's confirmation: a few probe rounds.
fn confirmation_wait(probe_period: Duration) -> Duration {
    (probe_period * 20).max(Duration::from_secs(5))
}

/// A finished command.
struct Done {
    command: Command,
    result: Result<(), CommandError>,
    status: Option<InstanceStatus>,
    took: Duration,
}

/// The loop. Build with `Driver::start`, run with `run`.
pub struct Driver<S: StateStore<HaState>, R: Router> {
    engine: PostgresHa,
    clients: BTreeMap<NodeId, InstanceClient>,
    custody: Custody<HaState, S>,
    router: Arc<R>,
    clock: Clock,
    events: broadcast::Sender<DriverEvent>,
    state_tx: watch::Sender<HaState>,
    statuses_tx: watch::Sender<Vec<InstanceStatus>>,
    stepped_down_tx: watch::Sender<Option<String>>,
    control: mpsc::Receiver<Control>,
    running: JoinSet<Done>,
    /// The probe round in flight, at most one.
    probing: JoinSet<Vec<Observation>>,
    pending_switchover: Option<PendingSwitchover>,
}

impl<S: StateStore<HaState>, R: Router> std::fmt::Debug for Driver<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("state", self.engine.state())
            .finish_non_exhaustive()
    }
}

impl<S: StateStore<HaState>, R: Router> Driver<S, R> {
    /// Loads the state (or takes `initial_state`) and prepares the clients.
    pub async fn start(
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
        Self::start_with_clients(config, clients, store, router, clock).await
    }

    /// Like `start`, with clients made by the caller (one per member, keyed by its name). The
    /// caller keeps clones of them to move an instance to a new address (`set_base_url`) while
    /// the driver runs.
    pub async fn start_with_clients(
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
        let (custody, loaded) = Custody::open(store, config.identity.clone(), config.authority)
            .await
            .map_err(DriverError::Load)?;
        let state = loaded.unwrap_or_else(|| config.initial_state.clone());
        let members = config.members.iter().map(|m| m.member.clone()).collect();
        let mut engine =
            PostgresHa::new(config.ha, members, state).with_identity(config.identity.clone());
        // A state another engine claimed is claimed anew before anything is sent; the first
        // step persists the claim by compare-and-swap.
        if engine.take_office() {
            tracing::info!(
                identity = %config.identity,
                epoch = engine.state().epoch,
                "claimed the HA state"
            );
        }
        let clients = clients
            .into_iter()
            .map(|(node, client)| (node, client.owned_by(config.identity.clone())))
            .collect();
        let (events, _) = broadcast::channel(1024);
        let (state_tx, state_rx) = watch::channel(engine.state().clone());
        let (statuses_tx, statuses_rx) = watch::channel(Vec::new());
        let (stepped_down_tx, stepped_down_rx) = watch::channel(None);
        let (control_tx, control) = mpsc::channel(16);
        let handle = DriverHandle {
            control: control_tx,
            events: events.clone(),
            state: state_rx,
            statuses: statuses_rx,
            stepped_down: stepped_down_rx,
        };
        let driver = Driver {
            engine,
            clients,
            custody,
            router: Arc::new(router),
            clock,
            events,
            state_tx,
            statuses_tx,
            stepped_down_tx,
            control,
            running: JoinSet::new(),
            probing: JoinSet::new(),
            pending_switchover: None,
        };
        Ok((driver, handle))
    }

    /// Runs until stopped, or until it stands down (see `DriverHandle::stepped_down`); returns
    /// the last state. Commands still running are abandoned.
    pub async fn run(mut self) -> HaState {
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
                    if !self.check_claims().await {
                        break;
                    }
                }
                Some(joined) = self.running.join_next() => {
                    if let Ok(done) = joined {
                        self.finish(done);
                    }
                    if !self.check_claims().await {
                        break;
                    }
                }
                control = self.control.recv() => match control {
                    None | Some(Control::Stop) => break,
                    Some(Control::Pod(signal)) => self.engine.observe_pod(signal),
                    Some(Control::Switchover { target, reply }) => {
                        if let Some(earlier) = self.pending_switchover.take() {
                            let _ = earlier.reply.send(Err(SwitchoverError::Superseded));
                        }
                        let deadline =
                            Instant::now() + confirmation_wait(self.engine.config().probe_period);
                        self.pending_switchover = Some(PendingSwitchover { target, reply, deadline });
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

    /// Starts the pending switchover, or keeps it pending while the primary has not confirmed
    /// its epoch (until its deadline); any other answer goes back to the caller.
    fn try_switchover(&mut self) {
        let Some(pending) = self.pending_switchover.take() else {
            return;
        };
        let now = (self.clock)();
        match self.engine.request_switchover(pending.target.clone(), now) {
            // Right after a start or a failover the engine may not have seen the primary
            // confirm its epoch, nor a replica stream, yet: wait for that, bounded.
            Err(
                SwitchoverError::PrimaryNotConfirmed { .. }
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

    /// Starts a probe round in its own task, unless the last one is still out (a member that
    /// does not answer holds a round for the probe timeout; commands that finish meanwhile
    /// must not wait for it).
    fn start_probe_round(&mut self) {
        if !self.probing.is_empty() {
            return;
        }
        let lease = self.engine.config().lease_duration;
        let holder = self
            .engine
            .lease_holder()
            .map(|(node, epoch)| (node.clone(), epoch));
        let clock = Arc::clone(&self.clock);
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
                            outcome: crate::postgres::ProbeOutcome::Reachable(status),
                        },
                        Err(error) if error.is_connection_refused() => {
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
        let statuses = observations
            .iter()
            .filter_map(|observation| match &observation.outcome {
                crate::postgres::ProbeOutcome::Reachable(status) => Some(status.clone()),
                crate::postgres::ProbeOutcome::Unreachable(_)
                | crate::postgres::ProbeOutcome::Refused(_) => None,
            })
            .collect();
        self.statuses_tx.send_replace(statuses);
        self.engine.observe_round(observations);
    }

    fn finish(&mut self, done: Done) {
        let now = (self.clock)();
        let error = done.result.as_ref().err().map(ToString::to_string);
        match &error {
            None => {
                tracing::info!(command = %done.command, took_ms = done.took.as_millis(), "command done")
            }
            Some(error) => tracing::warn!(command = %done.command, %error, "command failed"),
        }
        self.engine.command_done(&done.command, done.result, now);
        if let Some(status) = done.status {
            self.engine.observe(Observation {
                node: done.command.node().clone(),
                at: now,
                outcome: crate::postgres::ProbeOutcome::Reachable(status),
            });
        }
        let _ = self.events.send(DriverEvent::CommandFinished {
            at: now,
            command: done.command,
            took: done.took,
            error,
        });
    }

    /// One step: decide, secure the state, execute. False once the driver stood down.
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
                tracing::info!(reason = event.reason(), message = %event.message(), "ha event");
                let _ = self.events.send(DriverEvent::Engine(event));
            }
        }
        match secured {
            Ok(true) => {
                let _ = self.state_tx.send(state.clone());
                let _ = self.events.send(DriverEvent::StateSaved {
                    at: now,
                    state: Box::new(state),
                });
            }
            Ok(false) => {}
            Err(Lapse::Store(error)) => {
                let error = error.to_string();
                tracing::error!(%error, "cannot persist HA state; commands of this step not executed");
                for command in &out.commands {
                    self.engine.command_done(
                        command,
                        Err(CommandError::NotExecuted(error.clone())),
                        now,
                    );
                }
                let _ = self
                    .events
                    .send(DriverEvent::StoreFailed { at: now, error });
                return true;
            }
            Err(lapse) => return self.lapse(lapse, now),
        }
        for command in out.commands {
            let _ = self.events.send(DriverEvent::CommandStarted {
                at: now,
                command: command.clone(),
            });
            self.execute(command);
        }
        true
    }

    /// A member holds a newer claim than the engine's (seen in a probe or a refusal): the
    /// store decides whether this engine may go on. False once it stood down.
    async fn check_claims(&mut self) -> bool {
        let Some((epoch, owner)) = self.engine.take_newer_claim() else {
            return true;
        };
        tracing::warn!(
            epoch,
            owner = owner.as_deref().unwrap_or("unknown"),
            "a member holds a newer claim than this engine: checking the HA state"
        );
        match self.custody.confirm().await {
            Ok(()) => true,
            Err(Lapse::Store(error)) => {
                tracing::warn!(%error, "cannot check the HA state");
                true
            }
            Err(lapse) => self.lapse(lapse, (self.clock)()),
        }
    }

    /// Another writer moved the store on. The same identity: resume from it. Anyone else, or
    /// lost authority: stand down. False once it stood down.
    fn lapse(&mut self, lapse: Lapse<HaState>, now: Millis) -> bool {
        match lapse {
            Lapse::Resume(state) => {
                tracing::warn!(
                    epoch = state.epoch,
                    "the HA state moved on; resuming from the store"
                );
                self.running.abort_all();
                self.engine.resume_from(state.clone());
                let _ = self.state_tx.send(state.clone());
                let _ = self.events.send(DriverEvent::Resumed {
                    at: now,
                    state: Box::new(state),
                });
                true
            }
            lapse => {
                let reason = lapse.to_string();
                tracing::warn!(%reason, "standing down: this engine acts no more");
                self.running.abort_all();
                self.stepped_down_tx.send_replace(Some(reason.clone()));
                let _ = self
                    .events
                    .send(DriverEvent::SteppedDown { at: now, reason });
                false
            }
        }
    }

    fn execute(&mut self, command: Command) {
        let fence_timeout = self.engine.config().fence_timeout;
        let member = self
            .engine
            .members()
            .iter()
            .find(|m| &m.name == command.node())
            .cloned();
        let client = self.clients.get(command.node()).cloned();
        let router = Arc::clone(&self.router);
        self.running.spawn(async move {
            let started = Instant::now();
            let (result, status) =
                run_command(&command, client, member, router.as_ref(), fence_timeout).await;
            Done {
                command,
                result,
                status,
                took: started.elapsed(),
            }
        });
    }
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
                .map_err(CommandError::Failed),
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
