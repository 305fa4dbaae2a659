//! One Redis HA task per ShanraqCluster with Redis (in cluster mode it only observes, see
//! `cluster_observer`): started and restarted
//! by the reconcile (`RedisHaRegistry::ensure`), stopped when Redis is disabled or the operator
//! loses leadership. The task reads the Redis password from its Secret, reaches the nodes by
//! pod IP (a failover must not depend on cluster DNS), runs the Redis engine's driver with the
//! state in `status.redis` and routing by role label, and turns the engine's events into Events
//! on the ShanraqCluster. A pod recreated with another IP restarts the driver with the new
//! address; the state it resumes from is in the status.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use shanraq_ha::objectives::RpoMeasurement;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use shanraq_api::names::{Component, LABEL_CLUSTER, LABEL_COMPONENT};
use shanraq_api::redis::RedisMode;
use shanraq_api::{ShanraqCluster, ValidCluster};
use shanraq_ha::adapters::driver::system_clock;
use shanraq_ha::adapters::redis::{
    RedisDriverConfig, RedisDriverEvent, RedisDriverHandle, RedisPassword,
};
use shanraq_ha::redis::{Event, EventKind, RedisHaConfig, RedisMember};
use tokio::sync::watch;

use super::config::engine_config;
use super::restart::{RestartStep, next_step};
use super::router::KubeRedisRouter;
use crate::controller::events::{self, Notice};
use crate::engines::postgres::task::Deps;
use crate::engines::start_error::{StartError, secret_value};
use crate::engines::state_store::{KubeStateStore, RedisSlot};
use crate::engines::tasks::Tasks;

const RETRY: Duration = Duration::from_secs(5);
/// How often the task checks the pods' addresses.
const POD_CHECK: Duration = Duration::from_secs(5);

/// What a task runs with; a change restarts it.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisTaskSpec {
    pub mode: RedisMode,
    pub namespace: String,
    pub name: String,
    pub workload: String,
    pub secret: String,
    pub instances: usize,
    pub port: u16,
    pub ha: RedisHaConfig,
}

/// The task of `cluster`, or `None` when Redis is off. In cluster mode the task only observes
/// (Redis Cluster fails over on its own).
pub fn task_spec(cluster: &ValidCluster) -> Option<RedisTaskSpec> {
    let spec = &cluster.spec.redis;
    if !spec.enabled {
        return None;
    }
    Some(RedisTaskSpec {
        mode: spec.mode,
        namespace: cluster.namespace.clone(),
        name: cluster.name.clone(),
        workload: cluster.names.workload(Component::Redis),
        secret: cluster.names.redis_secret(),
        instances: usize::try_from(spec.instances.max(1)).unwrap_or(1),
        port: u16::try_from(shanraq_render::redis::PORT).unwrap_or(6379),
        ha: engine_config(cluster),
    })
}

/// What a Redis task shares with the reconcile.
#[derive(Clone, Default)]
pub(crate) struct Shared {
    handle: Arc<Mutex<Option<RedisDriverHandle>>>,
    /// The `shanraq.org/config-hash` the pods should run (replication mode roll-outs).
    desired_hash: Arc<Mutex<Option<String>>>,
    /// Cluster mode: the RPO the cluster observer last sampled (the worst shard).
    cluster_rpo: Arc<Mutex<Option<RpoMeasurement>>>,
}

/// The running Redis HA tasks, keyed by `namespace/name`.
#[derive(Debug)]
pub struct RedisHaRegistry {
    enabled: bool,
    pub(crate) tasks: Tasks<RedisTaskSpec, Shared>,
}

impl RedisHaRegistry {
    /// `enabled: false` never talks to a Redis node (mocked-API tests).
    pub fn new(enabled: bool) -> RedisHaRegistry {
        RedisHaRegistry {
            enabled,
            tasks: Tasks::new("redis"),
        }
    }

    /// Starts, restarts (changed spec, or ended) or stops the task of `cluster`. A restarted
    /// task waits for its predecessor first, so two drivers never run for one group.
    pub fn ensure(&self, cluster: &ValidCluster, deps: impl FnOnce() -> Deps) {
        let wanted = if self.enabled {
            task_spec(cluster)
        } else {
            None
        };
        self.tasks.ensure(
            &cluster.key(),
            wanted,
            Shared::default,
            |spec, shared, stopped| {
                run(
                    spec,
                    deps(),
                    shared.handle,
                    shared.desired_hash,
                    shared.cluster_rpo,
                    stopped,
                )
            },
        );
    }

    /// The configuration hash the Redis pods of `key` should run; stale pods are restarted
    /// by the task, replicas first, with a switchover before the master's turn.
    pub fn set_desired_hash(&self, key: &str, hash: Option<String>) {
        if let Some(shared) = self.tasks.shared(key)
            && let Ok(mut slot) = shared.desired_hash.lock()
        {
            *slot = hash;
        }
    }

    /// The running driver of `key`.
    pub fn handle(&self, key: &str) -> Option<RedisDriverHandle> {
        self.tasks.shared(key)?.handle.lock().ok()?.clone()
    }

    /// Cluster mode: the RPO of `key`'s Redis Cluster as its observer last sampled it.
    pub fn cluster_rpo(&self, key: &str) -> Option<RpoMeasurement> {
        self.tasks.shared(key)?.cluster_rpo.lock().ok()?.clone()
    }
}

/// A completed failover or switchover in `shanraq_failovers_total` and its RTO histogram,
/// with `component="redis"`.
fn count_failover(spec: &RedisTaskSpec, deps: &Deps, event: &Event) {
    if let EventKind::Lifecycle(lifecycle) = &event.kind
        && let Some(record) = lifecycle.record()
    {
        deps.metrics
            .count_completed(&spec.name, &spec.namespace, "redis", record);
    }
}

/// One step of a configuration roll-out, if one is due (see `restart::next_step`).
async fn roll_out(
    spec: &RedisTaskSpec,
    deps: &Deps,
    members: &[RedisMember],
    handle: &RedisDriverHandle,
    hash: &str,
) {
    let pods: Api<Pod> = Api::namespaced(deps.client.clone(), &spec.namespace);
    let selector = format!("{LABEL_CLUSTER}={},{LABEL_COMPONENT}=redis", spec.name);
    let Ok(listed) = pods.list(&ListParams::default().labels(&selector)).await else {
        return;
    };
    let by_name: BTreeMap<String, Pod> = listed
        .items
        .into_iter()
        .map(|pod| (pod.name_any(), pod))
        .collect();
    let step = next_step(
        members,
        &by_name,
        &handle.state(),
        &handle.infos(),
        hash,
        spec.ha.min_replicas_to_write,
    );
    let notice = match step {
        None => return,
        Some(RestartStep::DeleteReplica(name)) => {
            match pods.delete(&name, &DeleteParams::default()).await {
                Ok(_) => Notice::normal(
                    crate::engines::postgres::task::CONFIG_RESTART,
                    format!("restarting Redis replica {name} to pick up the new configuration"),
                ),
                Err(error) => {
                    tracing::warn!(pod = %name, %error, "cannot restart a stale Redis pod");
                    return;
                }
            }
        }
        Some(RestartStep::Switchover { master }) => match handle.request_switchover(None).await {
            Ok(target) => Notice::normal(
                crate::engines::postgres::task::CONFIG_RESTART,
                format!(
                    "every Redis replica runs the new configuration: switching over from {master} to {target} before restarting it"
                ),
            ),
            Err(error) => {
                tracing::info!(%master, %error, "roll-out switchover not started");
                return;
            }
        },
    };
    events::publish(&deps.recorder, &deps.reference, &[notice]).await;
}

pub(super) async fn read_password(
    client: &Client,
    spec: &RedisTaskSpec,
) -> Result<RedisPassword, StartError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &spec.namespace);
    secret_value(&secrets, &spec.secret, "password")
        .await
        .map(RedisPassword::new)
}

/// Every node by pod IP, in ordinal order; `Err` while a pod has no IP yet.
pub(super) async fn pod_members(
    client: &Client,
    spec: &RedisTaskSpec,
) -> Result<Vec<RedisMember>, StartError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &spec.namespace);
    let selector = format!("{LABEL_CLUSTER}={},{LABEL_COMPONENT}=redis", spec.name);
    let listed = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| StartError::ListPods {
            component: "Redis",
            cluster: format!("{}/{}", spec.namespace, spec.name),
            source,
        })?;
    let ips: BTreeMap<String, String> = listed
        .items
        .iter()
        .filter_map(|pod| {
            let ip = pod.status.as_ref()?.pod_ip.clone()?;
            Some((pod.name_any(), ip))
        })
        .collect();
    (0..spec.instances)
        .map(|ordinal| {
            let name = format!("{}-{ordinal}", spec.workload);
            let ip = ips.get(&name).ok_or_else(|| StartError::NoPodIp {
                component: "Redis",
                pod: name.clone(),
            })?;
            Ok(RedisMember::new(name, ip.clone(), spec.port))
        })
        .collect()
}

async fn run(
    spec: RedisTaskSpec,
    deps: Deps,
    slot: Arc<Mutex<Option<RedisDriverHandle>>>,
    desired: Arc<Mutex<Option<String>>>,
    cluster_rpo: Arc<Mutex<Option<RpoMeasurement>>>,
    mut stopped: watch::Receiver<bool>,
) {
    if spec.mode == RedisMode::Cluster {
        super::cluster_observer::run(spec, deps, cluster_rpo, stopped).await;
        return;
    }
    let cluster = format!("{}/{}", spec.namespace, spec.name);
    while !*stopped.borrow() {
        let prepared = async {
            let password = read_password(&deps.client, &spec).await?;
            let members = pod_members(&deps.client, &spec).await?;
            Ok::<_, StartError>((password, members))
        }
        .await;
        let (password, members) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::info!(%cluster, %error, "Redis HA task waiting");
                tokio::select! {
                    _ = stopped.changed() => return,
                    () = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        let api: Api<ShanraqCluster> = Api::namespaced(deps.client.clone(), &spec.namespace);
        let store = KubeStateStore::<RedisSlot>::new(api, spec.name.clone());
        let pods: Api<Pod> = Api::namespaced(deps.client.clone(), &spec.namespace);
        let router = KubeRedisRouter::new(pods, members.iter().map(|m| m.name.clone()).collect());
        let config = RedisDriverConfig {
            identity: deps.identity.clone(),
            authority: Arc::new(deps.leadership.clone()),
            ..RedisDriverConfig::new(spec.ha.clone(), members.clone(), Some(password))
        };
        let (driver, handle) =
            match shanraq_ha::adapters::redis::start(config, store, router, system_clock()).await {
                Ok(started) => started,
                Err(error) => {
                    tracing::warn!(%cluster, %error, "cannot start the Redis HA driver");
                    tokio::select! {
                        _ = stopped.changed() => return,
                        () = tokio::time::sleep(RETRY) => continue,
                    }
                }
            };
        let mut events = handle.subscribe();
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(handle.clone());
        }
        let mut join = tokio::spawn(driver.run());
        let mut check = tokio::time::interval(POD_CHECK);
        let mut stood_down = None;
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                _ = &mut join => {
                    stood_down = Some(handle.stepped_down().unwrap_or_else(|| "the Redis HA driver stopped by itself".to_owned()));
                    break;
                }
                received = events.recv() => match received {
                    Ok(RedisDriverEvent::Engine(event)) => {
                        count_failover(&spec, &deps, &event);
                        if let Some(notice) = events::notice_of(&event) {
                            events::publish(&deps.recorder, &deps.reference, &[notice]).await;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = check.tick() => {
                    if let Ok(now) = pod_members(&deps.client, &spec).await
                        && now != members
                    {
                        tracing::info!(%cluster, "a Redis pod changed address: restarting the HA driver");
                        break;
                    }
                    let hash = desired.lock().ok().and_then(|hash| hash.clone());
                    if let Some(hash) = hash {
                        roll_out(&spec, &deps, &members, &handle, &hash).await;
                    }
                }
            }
        }
        handle.stop().await;
        if !join.is_finished() {
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut join).await;
        }
        if let Ok(mut slot) = slot.lock() {
            *slot = None;
        }
        if let Some(reason) = stood_down {
            // Another engine's claim, or leadership lost: start again once this operator
            // leads (the new driver then claims the state anew).
            tracing::warn!(%cluster, %reason, "the Redis HA engine stood down; it starts again once this operator leads");
            let mut leading = deps.leadership.subscribe();
            tokio::select! {
                _ = leading.wait_for(|leading| *leading) => {}
                _ = stopped.changed() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                _ = stopped.changed() => return,
            }
        }
    }
}
