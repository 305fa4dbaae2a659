//! One cluster's HA task: reads the instance token, starts the engine's driver with the
//! Kubernetes state store and router, and until stopped forwards the driver's events (Events on
//! the ShanraqCluster, failover metrics), feeds pod watch transitions to the engine, labels
//! recreated pods with their role. The objectives read what the driver's probes last saw.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Secret};
use kube::api::ListParams;
use kube::runtime::events::Recorder;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use shanraq_api::ShanraqCluster;
use shanraq_api::names::{LABEL_CLUSTER, LABEL_COMPONENT};
use shanraq_ha::adapters::driver::{Driver, DriverConfig, DriverEvent, DriverHandle, system_clock};
use shanraq_ha::adapters::instance_client::{BearerToken, ClientTimeouts, InstanceClient};
use shanraq_ha::postgres::{EventKind, HaState, NodeId, ReplicationMode};
use shanraq_ha::wire::InstanceStatus;
use tokio::sync::watch;

use super::pods::{PodTracker, label_fix};
use super::restart::{RestartStep, next_step};
use super::router::KubeRouter;
use super::spec::{InstanceAddress, TaskSpec, manager_url};
use crate::controller::events::{self, Notice};
use crate::engines::role_label::label_role;
use crate::engines::start_error::{StartError, secret_value};
use crate::engines::state_store::{KubeStateStore, PostgresSlot};
use crate::metrics::Metrics;

/// Reason of the Events of a configuration roll-out.
pub const CONFIG_RESTART: &str = "ConfigRestart";

/// Wait before retrying a start that failed (token Secret missing, API unreachable).
const START_RETRY: Duration = Duration::from_secs(5);
/// How long a stop waits for the driver's loop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the task shares with the reconcile.
#[derive(Debug, Default)]
pub struct Shared {
    /// The running driver, once started.
    pub handle: Mutex<Option<DriverHandle>>,
    /// The instance managers' clients (following pod IPs), once started: backups use them.
    pub clients: Mutex<Clients>,
    /// The RPO measurement last published in the status.
    pub published_rpo: super::objectives::Published<bool, shanraq_ha::objectives::RpoMeasurement>,
    /// The `shanraq.org/config-hash` the pods should run.
    pub desired_hash: Mutex<Option<String>>,
}

impl Shared {
    pub fn handle(&self) -> Option<DriverHandle> {
        self.handle.lock().ok().and_then(|h| h.clone())
    }

    /// What the instances reported in the driver's last probe round (no second probe).
    pub fn sample(&self) -> Vec<InstanceStatus> {
        self.handle()
            .map(|handle| handle.statuses())
            .unwrap_or_default()
    }
}

/// What the task needs from the operator.
#[derive(Clone)]
pub struct Deps {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// The ShanraqCluster, for Events.
    pub reference: ObjectReference,
    /// Who the engine acts as (the owner of its epochs), and the leadership it checks before
    /// every command.
    pub identity: String,
    pub leadership: crate::engines::leadership::Leadership,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

async fn read_token(client: &Client, spec: &TaskSpec) -> Result<BearerToken, StartError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &spec.namespace);
    let token = secret_value(&secrets, &spec.token_secret, "token").await?;
    Ok(BearerToken::new(token.trim().to_owned()))
}

fn clients(
    spec: &TaskSpec,
    token: &BearerToken,
    timeouts: ClientTimeouts,
) -> Result<Clients, StartError> {
    spec.members
        .iter()
        .map(|m| {
            InstanceClient::new(
                m.member.name.0.clone(),
                &m.manager_url,
                token.clone(),
                timeouts,
            )
            .map(|client| (m.member.name.clone(), client))
            .map_err(|error| StartError::Client {
                member: m.member.name.to_string(),
                source: error,
            })
        })
        .collect()
}

pub type Clients = BTreeMap<NodeId, InstanceClient>;
type Started = (
    Driver<KubeStateStore<PostgresSlot>, KubeRouter>,
    DriverHandle,
    Clients,
);

fn pod_selector(spec: &TaskSpec) -> String {
    format!("{LABEL_CLUSTER}={},{LABEL_COMPONENT}=postgres", spec.name)
}

/// Points `node`'s client at its pod's IP, when the operator reaches instances by pod IP and
/// the pod has one; logs a move.
fn follow_pod_ip(spec: &TaskSpec, clients: &Clients, pod: &Pod) {
    if spec.address != InstanceAddress::PodIp {
        return;
    }
    let Some(ip) = pod
        .status
        .as_ref()
        .and_then(|status| status.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
    else {
        return;
    };
    let name = pod.name_any();
    if let Some(client) = clients.get(&NodeId::new(name.clone())) {
        let url = manager_url(ip);
        if client.set_base_url(&url) {
            tracing::info!(cluster = %spec.key(), pod = %name, %url, "instance manager address");
        }
    }
}

async fn start(spec: &TaskSpec, deps: &Deps) -> Result<Started, StartError> {
    let client = &deps.client;
    let token = read_token(client, spec).await?;
    let timeouts = ClientTimeouts::for_probe_period(spec.engine.probe_period);
    let clients = clients(spec, &token, timeouts)?;
    let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), &spec.namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &spec.namespace);
    if spec.address == InstanceAddress::PodIp {
        // The first probe round already goes to the pods' IPs; the pod watch follows changes.
        let listed = pods
            .list(&ListParams::default().labels(&pod_selector(spec)))
            .await
            .map_err(|source| StartError::ListPods {
                component: "PostgreSQL",
                cluster: spec.key(),
                source,
            })?;
        for pod in &listed.items {
            follow_pod_ip(spec, &clients, pod);
        }
    }
    let members: Vec<NodeId> = spec.members.iter().map(|m| m.member.name.clone()).collect();
    let config = DriverConfig {
        ha: spec.engine.clone(),
        members: spec.members.clone(),
        token,
        timeouts,
        initial_state: HaState::default(),
        identity: deps.identity.clone(),
        authority: Arc::new(deps.leadership.clone()),
    };
    let (driver, handle) = shanraq_ha::adapters::driver::start_with_clients(
        config,
        clients.clone(),
        KubeStateStore::new(clusters, &spec.name),
        KubeRouter::new(pods, members, clients.clone()),
        system_clock(),
    )
    .await
    .map_err(|error| StartError::Driver {
        source: Box::new(error),
    })?;
    Ok((driver, handle, clients))
}

/// How one run of the driver ended.
enum Ended {
    /// Stopped (asked to, or the cluster is gone): the task ends.
    Stopped,
    /// The engine stood down (another engine's claim, or leadership lost).
    SteppedDown(String),
}

/// Runs until `stop` turns true. An engine that stood down starts again once this operator
/// leads (it then claims the state anew): a stand-down at a lapsed renewal does not leave the
/// cluster without an engine until the next reconcile.
pub async fn run(spec: TaskSpec, deps: Deps, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let key = spec.key();
    loop {
        match run_driver(&spec, &deps, &shared, &mut stop).await {
            Ended::Stopped => return,
            Ended::SteppedDown(reason) => {
                tracing::warn!(cluster = %key, %reason, "the HA engine stood down; it starts again once this operator leads");
                let mut leading = deps.leadership.subscribe();
                tokio::select! {
                    _ = leading.wait_for(|leading| *leading) => {}
                    () = async { let _ = stop.wait_for(|s| *s).await; } => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(START_RETRY) => {}
                    () = async { let _ = stop.wait_for(|s| *s).await; } => return,
                }
            }
        }
    }
}

async fn run_driver(
    spec: &TaskSpec,
    deps: &Deps,
    shared: &Arc<Shared>,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let key = spec.key();
    let started = loop {
        match start(spec, deps).await {
            Ok(started) => break started,
            Err(error) => {
                tracing::warn!(cluster = %key, %error, retry_in = ?START_RETRY, "cannot start the HA task");
                let wait = tokio::time::sleep(START_RETRY);
                tokio::select! {
                    () = wait => {}
                    () = async { let _ = stop.wait_for(|s| *s).await; } => return Ended::Stopped,
                }
            }
        }
    };
    let (driver, handle, clients) = started;
    if let Ok(mut slot) = shared.handle.lock() {
        *slot = Some(handle.clone());
    }
    if let Ok(mut slot) = shared.clients.lock() {
        slot.clone_from(&clients);
    }
    tracing::info!(cluster = %key, members = spec.members.len(), "HA task started");

    let mut helpers = tokio::task::JoinSet::new();
    helpers.spawn(forward_events(
        handle.subscribe(),
        deps.clone(),
        spec.clone(),
    ));
    helpers.spawn(watch_pods(
        spec.clone(),
        deps.clone(),
        handle.clone(),
        shared.clone(),
        clients,
    ));
    let mut running = tokio::spawn(driver.run());

    let gone = cluster_gone(
        deps.client.clone(),
        spec.namespace.clone(),
        spec.name.clone(),
    );
    let mut ended = Ended::Stopped;
    tokio::select! {
        _ = &mut running => {
            let reason = handle
                .stepped_down()
                .unwrap_or_else(|| "the HA driver stopped by itself".to_owned());
            ended = Ended::SteppedDown(reason);
        }
        () = gone => {
            tracing::info!(cluster = %key, "ShanraqCluster deleted: stopping the HA task");
            handle.stop().await;
            if tokio::time::timeout(STOP_GRACE, &mut running).await.is_err() {
                running.abort();
            }
        }
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            handle.stop().await;
            if tokio::time::timeout(STOP_GRACE, &mut running).await.is_err() {
                running.abort();
            }
        }
    }
    helpers.abort_all();
    if let Ok(mut slot) = shared.handle.lock() {
        *slot = None;
    }
    tracing::info!(cluster = %key, "HA task stopped");
    ended
}

/// Completes once the ShanraqCluster is deleted (a watch on that one object).
async fn cluster_gone(client: Client, namespace: String, name: String) {
    let api: Api<ShanraqCluster> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut seen_in_listing = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Delete(_)) => return,
            Ok(watcher::Event::Init) => seen_in_listing = false,
            Ok(watcher::Event::InitApply(_)) => seen_in_listing = true,
            Ok(watcher::Event::InitDone) if !seen_in_listing => return,
            Ok(_) => {}
            Err(error) => tracing::debug!(cluster = %name, %error, "cluster watch error"),
        }
    }
}

async fn forward_events(
    mut events: tokio::sync::broadcast::Receiver<DriverEvent>,
    deps: Deps,
    spec: TaskSpec,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = match events.recv().await {
            Ok(DriverEvent::Engine(event)) => event,
            Ok(_) => continue,
            Err(RecvError::Lagged(skipped)) => {
                tracing::warn!(cluster = %spec.key(), skipped, "HA events skipped");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if let EventKind::Lifecycle(lifecycle) = &event.kind
            && let Some(record) = lifecycle.record()
        {
            deps.metrics
                .count_completed(&spec.name, &spec.namespace, "postgres", record);
        }
        if let Some(notice) = events::notice_of(&event) {
            events::publish(&deps.recorder, &deps.reference, &[notice]).await;
        }
    }
}

/// How often a configuration roll-out is re-evaluated without a pod event.
const RESTART_CHECK: Duration = Duration::from_secs(5);
/// The least time between two roll-out actions (a deletion or a switchover request), so the
/// watch has shown the effect of one before the next is decided.
const RESTART_COOLDOWN: Duration = Duration::from_secs(10);

async fn watch_pods(
    spec: TaskSpec,
    deps: Deps,
    handle: DriverHandle,
    shared: Arc<Shared>,
    clients: Clients,
) {
    let pods: Api<Pod> = Api::namespaced(deps.client.clone(), &spec.namespace);
    let selector = pod_selector(&spec);
    let members: Vec<NodeId> = spec.members.iter().map(|m| m.member.name.clone()).collect();
    let names: Vec<String> = members.iter().map(|m| m.0.clone()).collect();
    let required = match spec.engine.replication {
        ReplicationMode::Synchronous { number } => number,
        ReplicationMode::Asynchronous => 0,
    };
    let mut tracker = PodTracker::new(members);
    let mut seen: BTreeMap<String, Pod> = BTreeMap::new();
    let mut last_action: Option<std::time::Instant> = None;
    let clock = system_clock();
    let mut stream = watcher(pods.clone(), watcher::Config::default().labels(&selector))
        .default_backoff()
        .boxed();
    let mut check = tokio::time::interval(RESTART_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            event = stream.next() => match event {
                Some(event) => Some(event),
                None => return,
            },
            _ = check.tick() => None,
        };
        let (pod, signal) = match event {
            Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                follow_pod_ip(&spec, &clients, &pod);
                seen.insert(pod.name_any(), pod.clone());
                let signal = tracker.seen(&pod, clock());
                (Some(pod), signal)
            }
            Some(Ok(watcher::Event::Delete(pod))) => {
                seen.remove(&pod.name_any());
                (None, tracker.gone(&pod, clock()))
            }
            Some(Ok(_)) | None => (None, None),
            Some(Err(error)) => {
                tracing::debug!(cluster = %spec.key(), %error, "pod watch error");
                (None, None)
            }
        };
        if let Some(signal) = signal
            && handle.observe_pod(signal).await.is_err()
        {
            return;
        }
        // A recreated pod comes without a role, and a label changed by hand would route
        // wrongly: give it the one the settled state says.
        if let Some(pod) = pod
            && let Some(role) = label_fix(&pod, &handle.state())
        {
            match label_role(&pods, &pod.name_any(), role).await {
                Ok(_) => tracing::info!(pod = %pod.name_any(), role, "pod role label set"),
                Err(error) => {
                    tracing::warn!(pod = %pod.name_any(), %error, "cannot label pod with its role")
                }
            }
        }
        let desired = shared.desired_hash.lock().ok().and_then(|h| h.clone());
        if last_action.is_some_and(|at| at.elapsed() < RESTART_COOLDOWN) {
            continue;
        }
        let Some(desired) = desired else { continue };
        let step = next_step(
            &names,
            &seen,
            &handle.state(),
            &desired,
            required,
            &shared.sample(),
        );
        let notice = match step {
            None => continue,
            Some(RestartStep::DeleteReplica(name)) => {
                last_action = Some(std::time::Instant::now());
                match pods.delete(&name, &Default::default()).await {
                    Ok(_) => Notice::normal(
                        CONFIG_RESTART,
                        format!(
                            "restarting replica {name} to apply the new PostgreSQL configuration"
                        ),
                    ),
                    Err(error) => {
                        tracing::warn!(pod = %name, %error, "cannot restart pod for the new configuration");
                        continue;
                    }
                }
            }
            Some(RestartStep::Switchover { primary }) => {
                last_action = Some(std::time::Instant::now());
                match handle.request_switchover(None).await {
                    Ok(to) => Notice::normal(
                        CONFIG_RESTART,
                        format!(
                            "switching over from {primary} to {to} so that the primary can be restarted with the new PostgreSQL configuration"
                        ),
                    ),
                    Err(error) => {
                        tracing::info!(%primary, %error, "switchover for the new configuration not possible yet");
                        continue;
                    }
                }
            }
        };
        events::publish(&deps.recorder, &deps.reference, &[notice]).await;
    }
}
